/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Swap-out by the write-protect path (OVC_ENGINE_SYNC_WP: kernels without
 * UFFDIO_MOVE or WP_ASYNC tracking, or when asked). The sibling of
 * swapout.c's swapout_batch, which moves pages out instead.
 *
 * Runs on the pass thread (pass_lock, regions_lock read), like
 * swapout_batch. The engine's uffd has no WP_ASYNC here, so
 * UFFDIO_WRITEPROTECT stops writers: a write to a protected page raises a
 * write-protect fault that the handler answers (fault.c).
 *
 * One batch, the no-lost-write argument:
 *   1. under r->lock: RESIDENT -> SWAPPING_OUT for the candidates that were
 *      not written since the tracking scan (track_wrote_since_scan), then
 *      UFFDIO_WRITEPROTECT the span from the first to the last. We never
 *      rely on the tracker's protection: the zero path unprotects spans,
 *      the handler unprotects written pages. Under the lock so that a
 *      stale write-protect message cannot make the handler unprotect a
 *      page we just protected (the handler decides under the lock). From
 *      here a write to a candidate waits in the kernel (the handler sees
 *      SWAPPING_OUT and sets WAITERS); a non-candidate in the span that
 *      faults is unprotected by the handler as usual.
 *   2. copy each candidate through the guest mapping into our buffer. The
 *      page cannot change now. If the VMM discarded it meanwhile, the read
 *      faults on the hole; the handler sees our own thread (pass_tid) and
 *      installs a write-protected zero page. Writing the swap file from the
 *      buffer, not from guest memory, is what makes that safe: the O_DIRECT
 *      write's own page pinning would fault on such a hole from an io_uring
 *      worker thread, which the handler would leave waiting on our transit
 *      while we wait for the write.
 *   3. zero content, DISCARD_PENDING at step 1 (a VMM discard read before
 *      the mark whose zap may still come; see swapout.c) -> drop, ZEROPAGE,
 *      ZERO, like the MOVE path.
 *   4. the rest: write to slot runs, wait for every write.
 *   5. pages whose write failed, or that someone waits for, or that the VMM
 *      discarded (DISCARDED) -> RESIDENT, slot freed; they stay protected,
 *      and a woken writer faults again and is unprotected by the handler.
 *   6. drop the written pages and the zero ones; then SWAPPED with the
 *      slot (or ZERO after ZEROPAGE), waking waiters. No CPU wrote between
 *      1 and 6. The kernel may have, through a pin taken before step 1
 *      (an O_DIRECT or io_uring read into the page, process_vm_writev):
 *      so where the kernel has MOVE (kept enabled in this mode for this)
 *      the drop is UFFDIO_MOVE into staging (drop.c, move_out_runs),
 *      which refuses a page still pinned, and each moved page is compared
 *      there with the copy written out (zeros for a zero page); one that
 *      differs was written through a pin since step 2 and goes back
 *      (step 5's RESIDENT, slot freed). Then the content on disk is the
 *      content dropped. Without MOVE, process_madvise(MADV_DONTNEED):
 *      such a write is lost, or the old content comes back from disk
 *      (docs/engine.md, "Pages the kernel holds pinned").
 *
 * Our own MADV_DONTNEED drop (without MOVE) raises UFFD_EVENT_REMOVE, and swap_discard() takes REMOVE
 * on a SWAPPING_OUT page for a VMM discard (DISCARDED: the data on disk
 * would be thrown away) and on a SWAPPED page too (slot freed). So each page
 * gets PST_OWN_DROP just before the drop (drop.c, drop_runs), and the first
 * event covering a page with the bit clears it and does nothing else,
 * whatever the state: the handler may read our event before madvise
 * returns and handle it after we set SWAPPED. A VMM discard of the same
 * page raises a second event, handled as a discard, in whichever order the
 * two come: both leave the page zero (DISCARDED -> RESIDENT hole here, or
 * SWAPPED -> RESIDENT in swap_discard). A page whose drop failed raised no
 * event; drop_runs clears its bit, and if it was gone already a VMM event
 * took it, so the page is marked DISCARDED and goes to step 5's RESIDENT
 * with DISCARD_PENDING.
 */
#include <inttypes.h>
#include <string.h>
#include <sys/uio.h>

#include "engine/compat.h"
#include "engine/drop.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/uffd.h"
#include "engine/swapdev.h"
#include "engine/track.h"

/* Step 1. Returns pages marked and protected (into @sel, with their
 * DISCARD_PENDING into @pending), or -errno (none left in transit). */
static int mark_protect(ovc_engine *e, struct region *r, const uint64_t *pages, unsigned n,
			uint64_t *sel, uint8_t *pending)
{
	unsigned nsel = 0;

	lock_mutex(&r->lock);
	for (unsigned i = 0; i < n; i++) {
		pst_word old;
		if (r->track && track_wrote_since_scan(r->track, pages[i]))
			continue;
		if (pst_transition(&r->pst[pages[i]], PST_RESIDENT, PST_SWAPPING_OUT, &old)) {
			pending[nsel] = (old & PST_DISCARD_PENDING) != 0;
			sel[nsel++] = pages[i];
		}
	}
	if (!nsel) {
		unlock_mutex(&r->lock);
		return 0;
	}
	uint64_t span = (uint64_t)(uintptr_t)region_addr(r, sel[0]);
	struct uffdio_writeprotect wp = {
		.range = { span, ((sel[nsel - 1] - sel[0]) + 1) << PAGE_SHIFT },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	int err = SYS(e->sys, ioctl, e->uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? negative_errno() : 0;
	unlock_mutex(&r->lock);
	if (err < 0) {
		/* Part of the span may be protected: the handler unprotects a
		 * page when it is written, as after a tracking scan. */
		for (unsigned i = 0; i < nsel; i++) {
			pst_word old;
			if (pst_transition(&r->pst[sel[i]], PST_SWAPPING_OUT, PST_RESIDENT, &old) &&
			    (old & PST_WAITERS))
				uffd_wake(e, (uint64_t)(uintptr_t)region_addr(r, sel[i]), PAGE_SIZE);
		}
		atomic_fetch_add(&e->c.transit_aborts, nsel);
		return err;
	}
	return (int)nsel;
}

struct swap_wreq {
	int *res;
	unsigned first, n;
};

/* The batch's writes: copies of the pages (src), their results (res). */
struct wp_writes {
	uint8_t *const *src;
	int *res;
	struct swap_wreq reqs[BATCH_PAGES];
	unsigned nreq;
};

static void swap_write_done(void *user, int res)
{
	struct swap_wreq *q = user;
	for (unsigned i = 0; i < q->n; i++)
		q->res[q->first + i] = res;
}

static uint8_t *wp_src(void *ctx, unsigned d)
{
	struct wp_writes *w = ctx;
	return w->src[d];
}

static void *wp_req(void *ctx, unsigned first, unsigned n)
{
	struct wp_writes *w = ctx;
	struct swap_wreq *q = &w->reqs[w->nreq++];
	*q = (struct swap_wreq){ w->res, first, n };
	for (unsigned i = 0; i < n; i++)
		w->res[first + i] = -EINPROGRESS;
	return q;
}

static void wp_ring_wait(ovc_engine *e)
{
	swapdev_wait(e->sw.out_ring, 0);
}

/* Step 4: write pages src[0..nd) to freshly allocated slot runs
 * (swapout-runs.c, as swapout.c's pipelined MOVE path), all queued before
 * the wait. res[d] is 0 or -errno (-ENOSPC: no slot; sw->full is set),
 * slot[d] the slot or SWAPDEV_NO_SLOT. Pass thread. */
static void write_pages(ovc_engine *e, uint8_t *const *src, unsigned nd, int *res, uint32_t *slot)
{
	struct engine_swap *sw = &e->sw;
	struct wp_writes w = { .src = src, .res = res };
	const struct swapout_writer wr = { &w, wp_src, wp_req, swap_write_done, wp_ring_wait };

	for (unsigned d = 0; d < nd; d++) {
		res[d] = -ENOSPC;
		slot[d] = SWAPDEV_NO_SLOT;
	}
	swapout_queue_runs(e, nd, slot, &wr);
	/* A failed submit leaves the requests queued; they reference the
	 * caller's pages, so the only way on is to wait. */
	for (unsigned tries = 0; swapdev_inflight(sw->out_ring);) {
		if (swapdev_wait(sw->out_ring, 0) >= 0)
			continue;
		if (++tries % 1000 == 0)
			log_err(&e->log, "swap write submit failing; retrying");
		usleep(100);
	}
}

/* Leave SWAPPING_OUT for @to (SWAPPED with @slot and the eviction epoch),
 * waking the page if a fault waits. A page the VMM discarded meanwhile
 * (DISCARDED) goes to RESIDENT instead, with DISCARD_PENDING since its
 * zap may still come; decided in the same CAS, so a discard read before it
 * is never missed (one read after it finds SWAPPED: swap_discard). Returns
 * the state set. */
static enum pst_state end_out(ovc_engine *e, struct region *r, uint64_t page, enum pst_state to,
			      uint32_t slot)
{
	pst_t *p = &r->pst[page];
	pst_word w = atomic_load(p), nw;
	enum pst_state st;
	do {
		st = (w & PST_DISCARDED) ? PST_RESIDENT : to;
		nw = pst_with_state(w, st) & ~(PST_WAITERS | PST_DISCARDED | PST_DISCARD_PENDING);
		if (st == PST_SWAPPED)
			nw = pst_with_age(pst_with_slot(r, page, nw, slot), atomic_load(&e->sw.epoch) & 0xff);
		else
			nw &= ~PST_SLOT_LO_MASK;
		if (w & PST_DISCARDED)
			nw |= PST_DISCARD_PENDING;
	} while (!atomic_compare_exchange_weak(p, &w, nw));
	if (w & PST_WAITERS)
		uffd_wake(e, (uint64_t)(uintptr_t)region_addr(r, page), PAGE_SIZE);
	return st;
}

/* Step 5 for one page: back to RESIDENT (still protected), slot freed. */
static void abort_page(ovc_engine *e, struct region *r, uint64_t page, uint32_t slot)
{
	end_out(e, r, page, PST_RESIDENT, 0);
	if (slot != SWAPDEV_NO_SLOT)
		swapdev_slot_free(e->sw.sd, slot, 1);
	atomic_fetch_add(&e->c.transit_aborts, 1);
}

/* Append the runs of @sel (sorted) whose kind[i] is @want to @runs; run[i]
 * becomes that run's index + 1 for those pages. Returns the new count. */
static uint32_t make_runs(const uint64_t *sel, unsigned n, const uint8_t *kind, uint8_t want,
			  uint16_t *run, struct page_run *runs, uint32_t nruns)
{
	uint32_t first = nruns;
	for (unsigned i = 0; i < n; i++) {
		if (kind[i] != want)
			continue;
		if (nruns == first || runs[nruns - 1].start + runs[nruns - 1].len != sel[i])
			runs[nruns++] = (struct page_run){ (uint32_t)sel[i], 0 };
		runs[nruns - 1].len++;
		run[i] = (uint16_t)nruns;
	}
	return nruns;
}

enum { K_ZERO = 1, K_DATA = 2, K_ABORTED = 3 };

int swapout_wp_batch(ovc_engine *e, struct region *r, const uint64_t *pages, unsigned n)
{
	struct engine_swap *sw = &e->sw;
	uint64_t sel[BATCH_PAGES];
	uint8_t pending[BATCH_PAGES], kind[BATCH_PAGES];
	uint32_t slot[BATCH_PAGES];  /* by selected page */
	unsigned didx[BATCH_PAGES];  /* buffer page -> selected page */
	unsigned dpos[BATCH_PAGES];  /* selected page -> buffer page (K_DATA) */
	uint8_t *src[BATCH_PAGES];   /* buffer pages */
	unsigned nd = 0;

	int ns = mark_protect(e, r, pages, MIN(n, BATCH_PAGES), sel, pending);
	if (ns <= 0)
		return ns;
	unsigned nsel = (unsigned)ns;

	/* 2-3. Copy out; zero and discarded pages are shared, not swapped. */
	for (unsigned i = 0; i < nsel; i++) {
		uint8_t *dst = sw->wp_buf + ((uint64_t)nd << PAGE_SHIFT);
		kind[i] = K_ZERO;
		slot[i] = SWAPDEV_NO_SLOT;
		if (pending[i] || (atomic_load(&r->pst[sel[i]]) & PST_DISCARDED))
			continue;
		memcpy(dst, region_addr(r, sel[i]), PAGE_SIZE);
		if (scan_page_is_zero(dst) && !(r->flags & OVC_REGION_NO_SHARE))
			continue; /* NO_SHARE: written like any page */
		kind[i] = K_DATA;
		src[nd] = dst;
		dpos[i] = nd;
		didx[nd++] = i;
	}

	/* 4-5. Write; give back what failed or is waited for. */
	int res[BATCH_PAGES], werr = 0;
	uint32_t dslot[BATCH_PAGES];
	write_pages(e, src, nd, res, dslot);
	for (unsigned d = 0; d < nd; d++) {
		unsigned i = didx[d];
		slot[i] = dslot[d];
		if (res[d] < 0 && res[d] != -ENOSPC) {
			atomic_fetch_add(&e->c.swap_write_errors, 1);
			werr = res[d];
		}
		if (res[d] < 0 || (atomic_load(&r->pst[sel[i]]) & PST_WAITERS)) {
			abort_page(e, r, sel[i], slot[i]);
			kind[i] = K_ABORTED;
		}
	}

	/* 6. Drop zero runs and written runs (kept apart), one call; where the
	 * kernel has MOVE, through it, each page checked in staging against
	 * what was decided (zeros, or the copy written out): it refuses a
	 * page still pinned, and a page written through a pin released since
	 * the copy goes back (docs/engine.md, pinned pages). */
	struct page_run runs[BATCH_PAGES];
	uint16_t run[BATCH_PAGES];
	uint32_t nr = make_runs(sel, nsel, kind, K_ZERO, run, runs, 0);
	nr = make_runs(sel, nsel, kind, K_DATA, run, runs, nr);
	uint8_t kept[BATCH_PAGES];
	uint32_t at[BATCH_PAGES]; /* run -> its first page's number in run order */
	for (uint32_t k = 0, j = 0; k < nr; j += runs[k].len, k++)
		at[k] = j;
	if (e->have_move) {
		const uint8_t *want[BATCH_PAGES];
		for (unsigned i = 0; i < nsel; i++) {
			if (kind[i] == K_ABORTED)
				continue;
			uint32_t j = at[run[i] - 1] + (uint32_t)(sel[i] - runs[run[i] - 1].start);
			/* Discarded: the VMM's zap wins whatever it holds. */
			want[j] = kind[i] == K_DATA ? sw->wp_buf + ((uint64_t)dpos[i] << PAGE_SHIFT)
				  : (pending[i] || (atomic_load(&r->pst[sel[i]]) & PST_DISCARDED)) ? MOVE_OUT_ANY : NULL;
		}
		move_out_runs(e, r, runs, nr, want, kept);
	} else {
		uint32_t dropped = drop_runs(e, r, runs, nr);
		for (uint32_t k = 0; k < nr; k++)
			memset(kept + at[k], k >= dropped, runs[k].len);
	}

	int out = 0, zeros = 0;
	for (unsigned i = 0, zero_run = 0; i < nsel; i++) {
		if (kind[i] == K_ABORTED)
			continue;
		if (kept[at[run[i] - 1] + (uint32_t)(sel[i] - runs[run[i] - 1].start)]) {
			abort_page(e, r, sel[i], slot[i]);
			continue;
		}
		if (kind[i] == K_ZERO) {
			if (run[i] != zero_run) { /* one UFFDIO_ZEROPAGE per run */
				const struct page_run *z = &runs[run[i] - 1];
				uffd_zeropage_range(e, (uint64_t)(uintptr_t)region_addr(r, z->start),
					       (uint64_t)z->len << PAGE_SHIFT);
				/* Installed: see fault.c, discard_mark. */
				uffd_events_settle(e);
				zero_run = run[i];
			}
			zeros += end_out(e, r, sel[i], PST_ZERO, 0) == PST_ZERO;
		} else if (end_out(e, r, sel[i], PST_SWAPPED, slot[i]) == PST_SWAPPED) {
			out++;
		} else {
			swapdev_slot_free(sw->sd, slot[i], 1); /* discarded: a hole */
		}
	}
	if (zeros) {
		atomic_fetch_add(&e->c.zero_pages_reclaimed, (uint64_t)zeros);
		atomic_fetch_add(&e->c.zero_pages_now, zeros);
	}
	if (out) {
		atomic_fetch_add(&e->c.pages_swapped_out, (uint64_t)out);
		atomic_fetch_add(&e->c.swapped_pages_now, out);
	}
	if (werr)
		log_warning(&e->log, "swap write failed: %s; pages stay in memory", ovc_strerror(werr));
	return out ? out : werr;
}
