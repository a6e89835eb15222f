/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Zero-page sharing: scan a batch of pages, then give the memory of the zero
 * ones back with the kernel's shared zero page installed in their place.
 *
 * Runs on the pass thread only (the worker, a caller of
 * ovc_engine_scan_sync(), or the VMM's loop in NO_THREADS mode), with
 * engine->pass_lock held and engine->regions_lock held for reading.
 *
 * The no-lost-write rule. Looking at a page and dropping it are two steps;
 * a writer (vCPU through KVM, guest, VMM thread) may write in between. Both
 * reclaim paths take the page away from writers first and look second:
 *
 * Which path a region takes: engine.c (ovc_region_add): MOVE wherever the
 * kernel has it, the write-protect path for shared memory, in the sync
 * write-protect swap mode and without MOVE.
 *
 * Pages the kernel holds pinned. The kernel writes into guest RAM through
 * a pin (O_DIRECT and io_uring reads, process_vm_writev, vhost): it pins
 * first, writes later, and write protection does not stop it. So a page
 * leaves the guest only through UFFDIO_MOVE where the kernel has it: it
 * refuses a pinned (or shared) page with EBUSY, checking again after it
 * cleared the pte, and such a page stays where it is (move_to_stage; the
 * rest of the run goes on); and whatever is moved is looked at again in
 * staging, where nothing writes it, so a write through a pin released
 * before the move is seen. MADV_DONTNEED and a punched hole drop pinned
 * pages (the write lands in an orphaned page): used only on regions the
 * VMM added with OVC_REGION_UNPINNED (shared memory, and anonymous memory
 * without MOVE); without it such a region's zero pages are found and
 * counted but stay (region->may_drop; docs/engine.md, "Pages the kernel
 * holds pinned").
 *
 *  MOVE path (private anonymous, kernel with UFFDIO_MOVE):
 *   1. under region->lock: mark the candidates SHARING, then UFFDIO_MOVE
 *      them (in runs) into the staging area. The guest range is now a hole:
 *      any access raises a MISSING fault. The handler sees SHARING and
 *      leaves the faulting thread asleep (sets WAITERS).
 *   2. full compare in staging, where no one else can write.
 *   3. zero, or discarded by the VMM since the page was marked or before
 *      (DISCARDED, DISCARD_PENDING: fault.c, discard_mark): UFFDIO_ZEROPAGE
 *      into the guest range (wakes the sleepers; later reads are free, a
 *      later write is the kernel's own COW). Not zero (a writer came
 *      between the hint scan and the move): UFFDIO_MOVE it back (wakes
 *      too), looking at DISCARDED last just before (give_back_run). Then, once
 *      the handler has handled the events of every read begun
 *      (uffd_events_settle), the state leaves SHARING.
 *   4. drop the staging pages by mapping fresh memory over staging. Not
 *      MADV_DONTNEED: staging must be registered on the uffd (a MOVE
 *      destination must be), and madvise on registered memory raises
 *      UFFD_EVENT_REMOVE, which blocks until the uffd is read — by this very
 *      thread in NO_THREADS mode.
 *   Why the lock in step 1: the handler answers a MISSING fault on a
 *   non-transit page with UFFDIO_ZEROPAGE. Two vCPUs faulting on one hole
 *   queue two messages; the second is stale once the first is answered. If
 *   the handler read the state (RESIDENT) of that stale message, then we
 *   moved the now-present page out, then the handler's ZEROPAGE landed in
 *   the hole, the guest would read zeros while its data sat in staging, and
 *   our move-back would fail with EEXIST. Under the lock the handler either
 *   answers before we move (ZEROPAGE on a present page fails EEXIST,
 *   harmless) or sees SHARING.
 *
 *  Write-protect path (anonymous memory in the sync write-protect mode;
 *  shmem/memfd and anonymous memory without MOVE, both only with
 *  OVC_REGION_UNPINNED):
 *   1. under region->lock, before any page is read: mark every present
 *      RESIDENT page of the batch (and on shmem every present ZERO page)
 *      SHARING, zero or not, and UFFDIO_WRITEPROTECT the span from the
 *      first to the last (one ioctl, one TLB flush for the batch). A write
 *      to a held page now sleeps in the kernel; a write-protect fault on a
 *      page not (or no longer) held is unprotected by the handler at once
 *      (it is RESIDENT). Under the lock so that a stale write-protect
 *      message can never make the handler unprotect a page we just
 *      protected.
 *   2. the scan reads each page once through the guest mapping (nobody can
 *      write it now), and that read decides: a page that is not zero goes
 *      back to RESIDENT at once (the handler unprotects it on a fault;
 *      step 5 does otherwise), a zero page stays held.
 *   3. drop the zero ones. Anonymous memory, kernel with MOVE
 *      (move_out_runs): UFFDIO_MOVE them into staging (a pinned page is
 *      refused and stays RESIDENT; the pin was taken before step 1, since
 *      GUP for writing faults on a protected page), check them there
 *      again (a pin released before the move may have written one: it
 *      goes back), free staging; no event is raised. Without MOVE:
 *      process_madvise(MADV_DONTNEED) with up to 512 runs per call (the
 *      engine then asks for no UFFD_EVENT_REMOVE, so the drop does not
 *      wait for the handler); on shmem MADV_REMOVE (punch hole) per run.
 *      Neither refuses a pinned page.
 *   4. UFFDIO_WRITEPROTECT off over the span (wakes writers of the pages
 *      that were not zero). The dropped pages are holes now, which it
 *      passes over; done after step 5 it would re-write each fresh
 *      zero-page pte for nothing.
 *   5. anonymous: UFFDIO_ZEROPAGE the dropped runs. shmem: leave holes (a
 *      shmem "zero page" would be a freshly allocated page). State ZERO
 *      (wakes a fault that waits).
 *   A writer that hits a dropped page between 3 and 5 raises a MISSING
 *   fault; the page is SHARING, so it sleeps until 5 wakes it. The pass
 *   thread's own read (step 2) of a held page that the VMM discarded
 *   meanwhile faults too; the handler tells it by its tid and fills it
 *   with a write-protected zero page (fault.c).
 *
 * Every step that hands pages back (ZEROPAGE, MOVE back, unprotect, WAKE)
 * is retried until it succeeds (uffd_resolve): failing there would leave a
 * writer asleep or data in staging. Steps that take pages away (MOVE out,
 * WRITEPROTECT on, drop) may fail: the batch then undoes itself and the
 * pages stay where and what they were.
 */
#include <assert.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include "engine/compat.h"
#include "engine/drop.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/uffd.h"

/* Leave transit: SHARING -> @to; wakes the page if a fault waited. Always,
 * even when the ioctl that resolved the page (UFFDIO_ZEROPAGE, a move back)
 * woke it already: between that ioctl and this transition the VMM may
 * discard the page again, a thread woken then faults on the hole, finds
 * the page still in transit and sets WAITERS; skipping this wake left it
 * asleep until the sweep (the write-protect-path torture hang). */
static void end_transit_keep(ovc_engine *e, struct region *r, uint64_t page, enum pst_state to,
			     pst_word keep)
{
	pst_word old;
	if (!pst_transition_keep(&r->pst[page], PST_SHARING, to, keep, &old))
		return; /* cannot happen: only this thread ends a transit */
	if (old & PST_WAITERS)
		uffd_wake(e, (uint64_t)(uintptr_t)region_addr(r, page), PAGE_SIZE);
}

static void end_transit(ovc_engine *e, struct region *r, uint64_t page, enum pst_state to)
{
	end_transit_keep(e, r, page, to, 0);
}

/* Mark every candidate SHARING, keeping DISCARD_PENDING (fault.c,
 * discard_mark: what the batch moves out of such a page is pre-discard
 * data or a hole); drop from the list any that changed state since the
 * hint scan. region->lock held. */
static void mark_candidates(ovc_engine *e, struct region *r)
{
	struct run_list *c = &e->pass.cand;
	uint32_t nruns = c->n;
	struct page_run old[BATCH_PAGES];

	memcpy(old, c->runs, nruns * sizeof(*old));
	runs_clear(c);
	for (uint32_t i = 0; i < nruns; i++)
		for (uint32_t p = old[i].start; p < old[i].start + old[i].len; p++)
			if (pst_transition_keep(&r->pst[p], PST_RESIDENT, PST_SHARING, PST_DISCARD_PENDING, NULL))
				runs_add(c, p);
}

/* --- MOVE path ---------------------------------------------------------- */

/* Is moved page @page (batch from @first) to be zero: discarded since it
 * was marked or before (fault.c, discard_mark), or zero in staging? */
static bool staged_zero(ovc_engine *e, struct region *r, uint64_t first, uint32_t page)
{
	return (atomic_load(&r->pst[page]) & (PST_DISCARDED | PST_DISCARD_PENDING)) ||
	       scan_page_is_zero(e->stage.area + ((uint64_t)(page - first) << PAGE_SHIFT));
}

/* End the transit of pages [p, q), just installed (zero page or content
 * moved back), as @to. First wait until every read begun so far has had
 * its events handled: a discard whose read began before the install
 * completed may have zapped before it, and handle_remove must see such a
 * page in transit (it marks DISCARDED, which this clears) rather than
 * out of it (DISCARD_PENDING on a page that holds a post-zap install: the
 * next batch would take a write made since for discarded, a lost write
 * the torture found). */
static void end_installed(ovc_engine *e, struct region *r, uint32_t p, uint32_t q, enum pst_state to)
{
	uffd_events_settle(e);
	for (uint32_t k = p; k < q; k++)
		end_transit(e, r, k, to);
}

/* Give the staged content of moved pages [p, q) back to the guest and end
 * their transit, but the zero page to those the VMM discarded meanwhile.
 * Their DISCARDED bits are read last right before the move, once every
 * discard read so far is marked (uffd_events_settle): a discard read
 * after that look zaps only after its read returns, so almost always after
 * the move (which the zap then takes; if it zapped first, the old content
 * stays: a lost discard, docs/engine.md). An EAGAIN (a discard event
 * unread, maybe of these pages) is not retried blindly: the event is read,
 * then the pages are looked at again. Returns the pages that ended ZERO. */
static int give_back_run(ovc_engine *e, struct region *r, uint64_t first, uint32_t p, uint32_t q)
{
	int zeroed = 0;

	while (p < q) {
		uffd_events_settle(e);
		uint32_t k = p;
		while (k < q && !(atomic_load(&r->pst[k]) & PST_DISCARDED))
			k++;
		uint64_t gaddr = (uint64_t)(uintptr_t)region_addr(r, p);
		if (k == p) {
			uffd_zeropage_range(e, gaddr, PAGE_SIZE);
			end_installed(e, r, p, p + 1, PST_ZERO);
			zeroed++;
			p++;
			continue;
		}
		uint64_t src = (uint64_t)(uintptr_t)(e->stage.area + ((uint64_t)(p - first) << PAGE_SHIFT));
		struct uffdio_move m = { .dst = gaddr, .src = src, .len = (uint64_t)(k - p) << PAGE_SHIFT,
					 .mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES };
		uint32_t done = k - p;
		if (SYS(e->sys, ioctl, e->uffd, UFFDIO_MOVE, &m) < 0) {
			int err = errno;
			done = m.move > 0 ? (uint32_t)((uint64_t)m.move >> PAGE_SHIFT) : 0;
			if (!done && err == EAGAIN) {
				uffd_await_event(e, 0);
				continue;
			}
			/* Anything else: the path that never gives up, one page
			 * (it may wait on an event too: rare, see above). */
			int mr = done ? 0 : uffd_move_back(e, gaddr, src, PAGE_SIZE);
			if (mr < 0) {
				/* Cannot happen (see the top of this file); if it
				 * does, keep staging as it is rather than lose
				 * the data: no more batches until restart. */
				log_err(&e->log, "guest page 0x%" PRIx64 " filled while in transit: %s; "
					"reclaim stopped", r->guest_phys + ((uint64_t)p << PAGE_SHIFT),
					ovc_strerror(mr));
				e->stage.broken = true;
			}
			done = MAX(done, 1u);
		}
		end_installed(e, r, p, p + done, PST_RESIDENT);
		atomic_fetch_add(&e->c.transit_aborts, done);
		p += done;
	}
	return zeroed;
}

static int reclaim_move(ovc_engine *e, struct region *r, uint64_t first)
{
	struct run_list *c = &e->pass.cand;
	uint8_t moved[BATCH_PAGES]; /* by batch offset: 1 = content in staging */
	int err = 0, reclaimed = 0;

	memset(moved, 0, sizeof(moved));
	lock_mutex(&r->lock);
	mark_candidates(e, r);
	for (uint32_t i = 0; i < c->n && !err; i++) {
		struct page_run *run = &c->runs[i];
		err = move_to_stage(e, r, run->start, run->start + run->len,
				    e->stage.area + ((uint64_t)(run->start - first) << PAGE_SHIFT),
				    moved + (run->start - first), false);
	}
	unlock_mutex(&r->lock);

	/* Decide. Pages not moved are still in the guest, untouched: back to
	 * RESIDENT (no one can have faulted on a present page), still
	 * discard-pending if they were. */
	for (uint32_t i = 0; i < c->n; i++) {
		struct page_run *run = &c->runs[i];
		uint32_t p = run->start;
		while (p < run->start + run->len) {
			uint32_t off = p - (uint32_t)first;
			if (!moved[off]) {
				end_transit_keep(e, r, p, PST_RESIDENT, PST_DISCARD_PENDING);
				atomic_fetch_add(&e->c.transit_aborts, 1);
				p++;
				continue;
			}
			/* A stretch of moved pages with one verdict. */
			bool zero = staged_zero(e, r, first, p);
			uint32_t q = p + 1;
			while (q < run->start + run->len && moved[q - first] && staged_zero(e, r, first, q) == zero)
				q++;
			if (zero) {
				uffd_zeropage_range(e, (uint64_t)(uintptr_t)region_addr(r, p), (uint64_t)(q - p) << PAGE_SHIFT);
				end_installed(e, r, p, q, PST_ZERO);
				reclaimed += (int)(q - p);
			} else {
				reclaimed += give_back_run(e, r, first, p, q);
			}
			p = q;
		}
	}

	/* Free what staging holds (zero pages). If this fails, staging stays
	 * populated and the next batch's MOVE would fail with EEXIST, so the
	 * next batch resets it first. */
	if (e->stage.broken)
		return -EIO;
	int sr = staging_reset(e);
	if (sr < 0) {
		e->stage.dirty = true;
		if (!err)
			err = sr;
	}
	return reclaimed ? reclaimed : err;
}

/* --- write-protect path ------------------------------------------------- */

/* Lift the protection of the held @span, which wakes every write it
 * stopped (the handler leaves them asleep: fault.c, fault_unprotect), then
 * stop publishing the span. If the unprotect gave up, wake them by hand
 * after that: they fault again and the handler lifts what is left. */
static void unhold(ovc_engine *e, struct region *r, const struct page_run *span)
{
	uint64_t start = (uint64_t)(uintptr_t)region_addr(r, span->start);
	uint64_t len = (uint64_t)span->len << PAGE_SHIFT;

	int err = uffd_writeprotect(e, start, len, false);
	uffd_hold_clear(e);
	if (err < 0)
		uffd_wake(e, start, len);
}

/* Step 1 of the write-protect path, before any page is read: take every
 * present page that may be reclaimed away from writers — RESIDENT ones,
 * and on shared memory ZERO ones too (a present ZERO page there is real
 * memory again: a read of a shmem hole allocates one) — by marking it
 * SHARING and write-protecting the span from the first to the last with
 * one UFFDIO_WRITEPROTECT (one TLB flush). The scan then reads each page
 * once, and that read decides: a zero page is not read a second time
 * under protection. Sets held[i] for the pages taken; returns how many,
 * or -errno with none taken (nothing stays protected). */
static int hold_batch(ovc_engine *e, struct region *r, uint64_t first, uint32_t n, uint8_t *held,
		      struct page_run *span)
{
	uint32_t lo = n, hi = 0;
	int nheld = 0;

	memset(held, 0, n);
	lock_mutex(&r->lock);
	for (uint32_t i = 0; i < n; i++) {
		pst_t *p = &r->pst[first + i];
		if (!(e->pass.mincore_vec[i] & 1))
			continue;
		if (r->shmem && pst_transition(p, PST_ZERO, PST_SHARING, NULL))
			atomic_fetch_sub(&e->c.zero_pages_now, 1);
		else if (!pst_transition(p, PST_RESIDENT, PST_SHARING, NULL))
			continue;
		held[i] = 1;
		nheld++;
		lo = MIN(lo, i);
		hi = i + 1;
	}
	if (!nheld) {
		unlock_mutex(&r->lock);
		return 0;
	}
	*span = (struct page_run){ (uint32_t)first + lo, hi - lo };
	uffd_hold_set(e, r, span->start, span->start + span->len);
	int err = uffd_writeprotect(e, (uint64_t)(uintptr_t)region_addr(r, span->start),
			       (uint64_t)span->len << PAGE_SHIFT, true);
	unlock_mutex(&r->lock);
	if (err < 0) {
		for (uint32_t i = lo; i < hi; i++)
			if (held[i])
				end_transit(e, r, first + i, PST_RESIDENT);
		memset(held, 0, n);
		/* Part of the span may be protected: lift it all. */
		unhold(e, r, span);
		atomic_fetch_add(&e->c.transit_aborts, (uint64_t)nheld);
		span->len = 0;
		return err;
	}
	return nheld;
}

/* The rest of the write-protect path, after the scan: e->pass.cand holds the
 * held pages found zero (the others left SHARING already). Drop them,
 * lift the protection of @span, install the zero page, leave transit. */
static int release_batch(ovc_engine *e, struct region *r, const struct page_run *span)
{
	const struct run_list *c = &e->pass.cand;
	uint8_t kept[BATCH_PAGES];
	int reclaimed = 0;

	/* Where the kernel has MOVE, through it: it refuses pinned pages
	 * (see the top of this file). Else MADV_DONTNEED, whole runs. */
	if (e->have_move && !r->shmem) {
		move_out_runs(e, r, c->runs, c->n, NULL, kept);
	} else {
		uint32_t dropped = drop_runs(e, r, c->runs, c->n);
		for (uint32_t i = 0, j = 0; i < c->n; j += c->runs[i].len, i++)
			memset(kept + j, i >= dropped, c->runs[i].len);
	}
	/* Lift the protection before installing zero pages: the dropped pages
	 * are holes now, which the unprotect passes over, rather than fresh
	 * zero-page ptes that it would re-write one by one for nothing (they
	 * carry no protection; on an all-zero batch that was the whole cost
	 * of the unprotect). A writer on a dropped page that this wakes
	 * faults on the hole and waits, the page being SHARING still. */
	unhold(e, r, span);
	uint32_t nkept = 0;
	for (uint32_t i = 0, j = 0; i < c->n; i++) {
		const struct page_run *run = &c->runs[i];
		for (uint32_t p = run->start; p < run->start + run->len;) {
			/* A stretch of pages with one fate. */
			bool ok = !kept[j];
			uint32_t q = p + 1;
			while (q < run->start + run->len && !kept[j + (q - p)] == ok)
				q++;
			if (ok && !r->shmem)
				uffd_zeropage_range(e, (uint64_t)(uintptr_t)region_addr(r, p), (uint64_t)(q - p) << PAGE_SHIFT);
			for (uint32_t k = p; k < q; k++)
				end_transit(e, r, k, ok ? PST_ZERO : PST_RESIDENT);
			if (ok)
				reclaimed += (int)(q - p);
			else
				nkept += q - p;
			j += q - p;
			p = q;
		}
	}
	if (nkept)
		atomic_fetch_add(&e->c.transit_aborts, nkept);
	if (nkept && !reclaimed)
		return e->stage.broken ? -EIO : -EBUSY;
	return reclaimed;
}

/* --- the batch ---------------------------------------------------------- */

/* Which pages of the batch are present, and where to read them. With
 * threads, straight from the guest mapping (a page discarded meanwhile
 * faults to the handler thread, which fills it). In NO_THREADS mode this
 * thread is the handler, so it reads through /proc/self/mem, which fails
 * on a hole instead of waiting for a userfault. */
static const uint8_t *batch_source(ovc_engine *e, struct region *r, uint64_t first, uint32_t n)
{
	uint8_t *base = region_addr(r, first);

	if (!(e->flags & OVC_ENGINE_NO_THREADS)) {
		if (mincore(base, (size_t)n << PAGE_SHIFT, e->pass.mincore_vec) < 0)
			memset(e->pass.mincore_vec, 1, n);
		return base;
	}
	uint32_t off = 0;
	while (off < n) {
		ssize_t got = SYS(e->sys, pread, e->mem_fd, e->pass.scan_buf + ((size_t)off << PAGE_SHIFT),
				  (size_t)(n - off) << PAGE_SHIFT,
				  (off_t)(uintptr_t)(base + ((size_t)off << PAGE_SHIFT)));
		uint32_t pages = got > 0 ? (uint32_t)((size_t)got >> PAGE_SHIFT) : 0;
		memset(e->pass.mincore_vec + off, 1, pages);
		off += pages;
		if (off < n)
			e->pass.mincore_vec[off++] = 0; /* hole or error: skip it */
	}
	return e->pass.scan_buf;
}

int share_batch(ovc_engine *e, struct region *r, uint64_t first, uint32_t n)
{
	uint64_t cpu0 = now_nsec(CLOCK_THREAD_CPUTIME_ID);
	const uint8_t *src = batch_source(e, r, first, n);
	/* Without UFFDIO_MOVE (shared memory; anonymous memory on an engine
	 * without MOVE) zero pages are dropped only when the VMM says nothing
	 * writes the region through a pin (OVC_REGION_UNPINNED): a punched
	 * hole and MADV_DONTNEED drop pinned pages. */
	bool share = !(r->flags & OVC_REGION_NO_SHARE) && r->may_drop;
	bool wp = !r->can_move && share;
	uint8_t held[BATCH_PAGES];
	struct page_run span = { 0, 0 };
	uint64_t scanned = 0, zero = 0, wp_nsec = 0;
	int ret = 0;

	runs_clear(&e->pass.cand);
	if (wp) {
		uint64_t t0 = now_nsec(CLOCK_MONOTONIC);
		ret = hold_batch(e, r, first, n, held, &span);
		wp_nsec = now_nsec(CLOCK_MONOTONIC) - t0;
	} else {
		memset(held, 0, n);
	}
	for (uint32_t i = 0; i < n; i++) {
		if (!(e->pass.mincore_vec[i] & 1))
			continue;
		uint64_t page = first + i;
		pst_t *p = &r->pst[page];
		enum pst_state st = pst_state(atomic_load_explicit(p, memory_order_acquire));
		if (!held[i] && st != PST_RESIDENT && st != PST_ZERO)
			continue;
		const uint8_t *pg = src + ((size_t)i << PAGE_SHIFT);
		scanned++;
		if (scan_page_is_zero(pg)) {
			zero++;
			/* Held (write-protect path): final, it goes to the drop.
			 * Otherwise a MOVE-path candidate, checked again in
			 * staging. DISCARDED is not looked at: the page is. */
			if (held[i] || (r->can_move && share && st == PST_RESIDENT))
				runs_add(&e->pass.cand, (uint32_t)page);
		} else {
			scan_hll_add(r, scan_page_hash(pg));
			r->pass_nonzero++;
			if (held[i])
				end_transit(e, r, page, PST_RESIDENT);
			/* Written since it was reclaimed (a silent COW); a
			 * discard read since still pends (fault.c). */
			else if (st == PST_ZERO &&
				 pst_transition_keep(p, PST_ZERO, PST_RESIDENT, PST_DISCARD_PENDING, NULL))
				atomic_fetch_sub(&e->c.zero_pages_now, 1);
		}
	}
	r->cur.pages_scanned += scanned;
	r->cur.zero_pages += zero;
	atomic_fetch_add(&e->c.pages_scanned, scanned);
	atomic_fetch_add(&e->c.zero_pages_found, zero);
	atomic_fetch_add(&e->c.scan_cpu_usec, (now_nsec(CLOCK_THREAD_CPUTIME_ID) - cpu0) / NSEC_PER_USEC);

	uint64_t t0 = now_nsec(CLOCK_MONOTONIC);
	if (wp && span.len) {
		ret = release_batch(e, r, &span);
	} else if (r->can_move && e->pass.cand.pages) {
		if (e->stage.broken)
			return -EIO;
		if (e->stage.dirty) {
			ret = staging_reset(e);
			if (ret < 0)
				return ret;
			e->stage.dirty = false;
		}
		ret = reclaim_move(e, r, first);
	}
	atomic_fetch_add(&e->c.reclaim_usec, (now_nsec(CLOCK_MONOTONIC) - t0 + wp_nsec) / NSEC_PER_USEC);
	if (ret > 0) {
		atomic_fetch_add(&e->c.zero_pages_reclaimed, (uint64_t)ret);
		atomic_fetch_add(&e->c.zero_pages_now, ret);
	}
	return ret;
}

/* --- passes ------------------------------------------------------------- */

static void region_pass_begin(struct region *r)
{
	memset(&r->cur, 0, sizeof(r->cur));
	r->pass_nonzero = 0;
	scan_hll_reset(r);
}

static void region_pass_end(ovc_engine *e, struct region *r)
{
	r->cur.distinct_hashes = MIN(scan_hll_estimate(r), r->pass_nonzero);
	r->cur.duplicate_pages = r->pass_nonzero - r->cur.distinct_hashes;
	r->last = r->cur;
	uint64_t d = 0, dup = 0;
	for (size_t i = 0; i < e->nregions; i++) {
		d += e->regions[i]->last.distinct_hashes;
		dup += e->regions[i]->last.duplicate_pages;
	}
	atomic_store(&e->c.distinct_hashes, d);
	atomic_store(&e->c.duplicate_pages, dup);
}

int share_step(ovc_engine *e, uint64_t *cursor, bool *wrapped)
{
	int ret = 0;

	*wrapped = false;
	lock_read(&e->regions_lock);
	struct region *r = NULL;
	for (size_t i = 0; i < e->nregions; i++)
		if ((uint64_t)(uintptr_t)e->regions[i]->host + e->regions[i]->len_bytes > *cursor) {
			r = e->regions[i];
			break;
		}
	if (!r) {
		*cursor = 0;
		*wrapped = true;
		goto out;
	}
	uint64_t host = (uint64_t)(uintptr_t)r->host;
	uint64_t first = *cursor <= host ? 0 : (*cursor - host) >> PAGE_SHIFT;
	/* Batches end on 2 MiB boundaries of the host address, not of the
	 * region: a batch then covers whole transparent huge pages, which
	 * the write-protect path protects and unprotects as one PMD each
	 * (protecting a range that covers part of one splits it: every THP
	 * of a region that does not start on 2 MiB was split by the first
	 * pass) and the move path moves as one PMD into its 2 MiB aligned
	 * staging. */
	uint64_t hp = (host >> PAGE_SHIFT) + first;
	uint32_t n = (uint32_t)MIN((uint64_t)BATCH_PAGES - hp % BATCH_PAGES, r->npages - first);
	if (first == 0)
		region_pass_begin(r);
	ret = share_batch(e, r, first, n);
	if (first + n == r->npages)
		region_pass_end(e, r);
	*cursor = host + ((first + n) << PAGE_SHIFT);
out:
	unlock_rw(&e->regions_lock);
	return ret;
}

int64_t share_full_pass(ovc_engine *e)
{
	uint64_t cursor = 0, t0 = now_nsec(CLOCK_MONOTONIC), scanned0 = atomic_load(&e->c.pages_scanned);
	int64_t total = 0;
	int first_err = 0;
	bool wrapped;

	for (;;) {
		int r = share_step(e, &cursor, &wrapped);
		if (wrapped)
			break;
		/* EAGAIN (a discard event was unread) and EBUSY (a pinned or
		 * KSM page) only skip a batch; the next pass retries it. */
		if (r > 0)
			total += r;
		else if (r < 0 && r != -EAGAIN && r != -EBUSY && !first_err)
			first_err = r;
		uffd_drain_if_reader(e);
	}
	uint64_t dt = now_nsec(CLOCK_MONOTONIC) - t0;
	uint64_t bytes = (atomic_load(&e->c.pages_scanned) - scanned0) << PAGE_SHIFT;
	if (dt)
		atomic_store(&e->c.scan_bytes_per_sec, (uint64_t)((double)bytes * 1e9 / (double)dt));
	return total ? total : first_err;
}
