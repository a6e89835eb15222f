/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The userfaultfd handler: MISSING and write-protect faults on registered
 * guest RAM, and UFFD_EVENT_REMOVE (the VMM's own discards: balloon,
 * free-page reporting, and our write-protect path's drops).
 *
 * Runs on the handler thread, or in NO_THREADS mode on the VMM's loop
 * thread inside ovc_engine_process(). It never reads or writes guest memory
 * through the guest mapping (a fault there would wait for itself), never
 * calls madvise on registered memory (that raises an event only this thread
 * can read), never allocates and logs at debug level at most.
 *
 * Takes engine->regions_lock for reading and region->lock around "read the
 * page state, then resolve": see region.h and share.c for why.
 *
 * Decisions for a MISSING fault, by page state:
 *   RESIDENT, ZERO  UFFDIO_ZEROPAGE. The page is a hole because it was never
 *                   touched, or the VMM discarded it, or we dropped it and
 *                   the zero page went away again (e.g. the VMM discarded
 *                   the zero page): zeros are its content in every case.
 *                   EEXIST (a stale message, someone filled it) just wakes.
 *   in transit      leave the thread asleep and set WAITERS; whoever ends
 *                   the transit resolves the page, which wakes it. Except
 *                   the pass thread itself (THREAD_ID tells): it can only
 *                   fault on a page of its batch when the VMM discarded it
 *                   under a write-protect batch, and then zeros are right —
 *                   but installed write-protected (UFFDIO_COPY, MODE_WP, of
 *                   a zero page), because any resolve wakes every thread
 *                   waiting on the page: a writer woken onto a writable
 *                   page could write after the pass looked and before it
 *                   drops (found by the torture test with discards). On a
 *                   region that can move the pass thread never touches a
 *                   page in transit (it works in staging): its message
 *                   there is a stale one of its hint scan, and filling
 *                   the hole would make the move back fail (EEXIST).
 *   SWAPPED         swapin.c: read the slot (with readahead), UFFDIO_COPY.
 * A write-protect fault on a page not in transit: with OVC_ENGINE_SYNC_WP
 * first a write for the tracker (track_wrote). Then, inside the span a
 * write-protect batch holds, left asleep until the batch lifts the span's
 * protection (which wakes it); elsewhere a stale protection, or the sync
 * tracker's, lifted (see fault_unprotect: whole huge pages stay whole).
 */
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <string.h>

#include "engine/compat.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/uffd.h"
#include "engine/track.h"

static const uint8_t zero_page[PAGE_SIZE] __attribute__((aligned(PAGE_SIZE)));

/* A fault served, from @t0 (the read that returned it) to now; @swapin:
 * served from swap, counted in its own histogram too. */
static void lat_record(ovc_engine *e, uint64_t t0, bool swapin)
{
	uint64_t us = (now_nsec(CLOCK_MONOTONIC) - t0) / NSEC_PER_USEC;
	unsigned b = 0;
	while (b < OVC_LAT_BUCKETS - 1 && (UINT64_C(1) << b) <= us)
		b++;
	atomic_fetch_add_explicit(&e->c.fault_lat_hist[b], 1, memory_order_relaxed);
	if (swapin)
		atomic_fetch_add_explicit(&e->c.swapin_lat_hist[b], 1, memory_order_relaxed);
}

/* SWAPPED pages: swapin.c reads the slot and installs the page. After a
 * served swap-in the handler thread keeps reading a while before it
 * sleeps in poll() (fault_thread_main). */
static void fault_swapin(ovc_engine *e, struct region *r, uint64_t page, uint64_t addr)
{
	if (swap_fault(e, r, page, addr))
		e->handler.saw_swapin = true;
}

#define HUGE_BYTES (UINT64_C(2) << 20)

/* @addr's 2 MiB block, within @r: [*lo, *hi). Returns whether a page of
 * it is in transit. */
static bool huge_block(struct region *r, uint64_t addr, uint64_t *lo, uint64_t *hi)
{
	uint64_t host = (uint64_t)(uintptr_t)r->host;
	*lo = MAX(ALIGN_DOWN(addr, HUGE_BYTES), host);
	*hi = MIN(ALIGN_DOWN(addr, HUGE_BYTES) + HUGE_BYTES, host + r->len_bytes);
	for (uint64_t p = region_page_of(r, *lo); p < region_page_of(r, *hi); p++)
		if (pst_in_transit(atomic_load_explicit(&r->pst[p], memory_order_relaxed)))
			return true;
	return false;
}

/* A write-protect fault on a page not in transit. Lifting the protection
 * of one page inside a transparent huge page splits it, so:
 *  - inside the span that a write-protect batch holds right now (it
 *    checked this page already): nothing; the batch lifts the protection
 *    of the whole span at its end, which wakes the thread. A wait of at
 *    most one batch (~0.3 ms) instead of splitting every huge page that a
 *    guest writes while a pass goes over it.
 *  - elsewhere, a stale protection (a batch that is over, a stale
 *    message): lift it over the page's 2 MiB block if no page of the
 *    block is in transit, else over the page alone;
 *  - with sync tracking (OVC_ENGINE_SYNC_WP), over the page alone. */
static void fault_unprotect(ovc_engine *e, struct region *r, uint64_t page, uint64_t addr)
{
	if (uffd_hold_covers(e, r, page))
		return;
	uint64_t lo, hi;
	/* Sync tracking: the block's other pages hold the tracker's
	 * protection, and lifting it would hide their writes. */
	if (e->sync_wp || huge_block(r, addr, &lo, &hi)) {
		lo = addr;
		hi = addr + PAGE_SIZE;
	}
	struct uffdio_writeprotect u = { .range = { lo, hi - lo }, .mode = 0 };
	if (uffd_resolve(e, UFFDIO_WRITEPROTECT, &u) < 0)
		uffd_wake(e, addr, PAGE_SIZE);
}

static void handle_fault(ovc_engine *e, const struct uffd_msg *m, uint64_t t0)
{
	uint64_t addr = ALIGN_DOWN((uint64_t)m->arg.pagefault.address, PAGE_SIZE);
	bool wp = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;
	pid_t tid = (pid_t)m->arg.pagefault.feat.ptid;
	bool swapin = false;

	lock_read(&e->regions_lock);
	struct region *r = engine_region_of(e, addr);
	if (!r) {
		/* A region removed since (unregister woke everyone) or the
		 * staging area (WP-only, nothing protects it): just wake. */
		unlock_rw(&e->regions_lock);
		uffd_wake(e, addr, PAGE_SIZE);
		return;
	}
	uint64_t page = region_page_of(r, addr);
	pst_t *p = &r->pst[page];

	lock_mutex(&r->lock);
	uffd_handler_enter();
	pst_word w = atomic_load(p);
	bool transit = pst_in_transit(w);
	bool own = transit && tid && tid == atomic_load(&e->pass.tid) && !r->can_move;
	/* Leave it waiting only if the mark lands while the page is still in
	 * transit; if the transit ended in between, resolve it below. */
	if (transit && !own && pst_mark_if_transit(p, PST_WAITERS) < PST_SHARING) {
		transit = false;
		w = atomic_load(p);
	}
	if (transit && !own) {
		/* waits for the end of the transit */
	} else if (own) {
		struct uffdio_copy c = { .dst = addr, .src = (uint64_t)(uintptr_t)zero_page,
					 .len = PAGE_SIZE, .mode = UFFDIO_COPY_MODE_WP };
		if (uffd_resolve(e, UFFDIO_COPY, &c) < 0)
			uffd_wake(e, addr, PAGE_SIZE); /* filled (EEXIST) or EAGAIN: retry */
	} else if (wp) {
		/* A write. Sync tracking: track.c takes the bit at its next
		 * scan, under this lock, after protecting again. */
		if (e->sync_wp && r->track)
			track_wrote(r->track, page);
		fault_unprotect(e, r, page, addr);
	} else if (pst_state(w) == PST_SWAPPED) {
		fault_swapin(e, r, page, addr);
		swapin = true;
	} else {
		struct uffdio_zeropage z = { .range = { addr, PAGE_SIZE } };
		int ret = uffd_resolve(e, UFFDIO_ZEROPAGE, &z);
		if (ret == 0) {
			/* Installed into a hole, after every discard read
			 * before: whatever the page holds from now on is
			 * newer than them (DISCARD_PENDING, discard_mark).
			 * Not on EEXIST: then the page holds what was there
			 * before, which a zap still pending may take. */
			if (w & PST_DISCARD_PENDING)
				atomic_fetch_and(p, ~PST_DISCARD_PENDING);
			atomic_fetch_add_explicit(&e->c.zero_faults, 1, memory_order_relaxed);
		} else
			/* EEXIST: filled already. EAGAIN: a REMOVE event is
			 * queued behind this message; wake the thread, it
			 * faults again and we answer after the event. */
			uffd_wake(e, addr, PAGE_SIZE);
	}
	uffd_handler_leave();
	unlock_mutex(&r->lock);
	unlock_rw(&e->regions_lock);
	lat_record(e, t0, swapin);
}

/* The VMM discarded pages [first, end) of @r, a region that can move.
 * read() completes the event and the kernel zaps the pages only after it,
 * so a MOVE batch (share.c, swapout.c) may have moved their old content out
 * before the zap, which then found a hole: the batch must not put that
 * content back. Marks, whatever batch is in progress:
 *  - in transit: DISCARDED. What the batch staged is from before the zap
 *    or a hole, never newer: newer data needs a page installed after the
 *    zap, and neither this thread (it answers faults only after this) nor
 *    an earlier batch can have done that before this batch took the page
 *    (a batch waits, uffd_events_settle, between installing pages and
 *    ending their transit: a page it installed after a zap is still in
 *    its transit when the discard's read is handled).
 *  - not in transit: DISCARD_PENDING, until this thread installs a page
 *    there (handle_fault) or a batch ends a transit of it. A batch that
 *    takes the page meanwhile moves out its pre-zap content or a hole (by
 *    the same argument) and takes it for discarded: its mark keeps the bit.
 * No sequence number of the batch decides (one did): a batch that began
 * while this read was in flight can hold data of before the zap (the
 * torture's "byte 0 is 85, shadow 0", 3 runs in 20 of 5 s on
 * threads/anon/move; test-share's discard_races_move stages it).
 * With swap on the sync write-protect path (a region that cannot move):
 * the same for SWAPPING_OUT (swapout-wp.c copies the page out before it
 * drops it), nothing for SHARING (the zero path re-reads the page itself).
 * A page with OWN_DROP is left alone: the event is the engine's own drop
 * (swap_discard takes the bit). */
static void discard_mark(struct region *r, uint64_t first, uint64_t end)
{
	for (uint64_t pg = first; pg < end && pg < r->npages; pg++) {
		pst_t *p = &r->pst[pg];
		pst_word w = atomic_load(p), bit;
		do {
			if (w & PST_OWN_DROP)
				break;
			if (!pst_in_transit(w))
				bit = PST_DISCARD_PENDING;
			else if (r->can_move || pst_state(w) == PST_SWAPPING_OUT)
				bit = PST_DISCARDED;
			else
				break;
		} while (!(w & bit) && !atomic_compare_exchange_weak(p, &w, w | bit));
	}
}

/* The VMM (or our write-protect path) discarded [start, end). Pages not
 * in a region that can move need nothing unless swap is on (the sync
 * write-protect path, discard_mark; slots to free, swap_discard): a hole
 * reads as zero through the handler, a ZERO page stays zero, and the
 * write-protect zero path re-reads the guest page itself (its own drops
 * raise these events too). */
static void handle_remove(ovc_engine *e, uint64_t start, uint64_t end)
{
	lock_read(&e->regions_lock);
	for (size_t i = 0; i < e->nregions; i++) {
		struct region *r = e->regions[i];
		uint64_t rs = (uint64_t)(uintptr_t)r->host, re = rs + r->len_bytes;
		uint64_t s = MAX(start, rs), t = MIN(end, re);
		if (s >= t || (!r->can_move && !swap_enabled(e)))
			continue;
		uint64_t first = (s - rs) >> PAGE_SHIFT, last = ALIGN_UP(t - rs, PAGE_SIZE) >> PAGE_SHIFT;
		discard_mark(r, first, last);
		/* SWAPPED pages discarded: their slots are free, the hole
		 * reads as zeros (a page can only be SWAPPED here if it was
		 * moved out before the discard: a discarded page stays a hole
		 * until this thread answers its next fault). */
		swap_discard(e, r, first, last);
	}
	unlock_rw(&e->regions_lock);
}

int fault_drain(ovc_engine *e)
{
	struct uffd_msg msgs[64];
	int handled = 0;

	for (;;) {
		uint64_t seq = uffd_read_begin(e);
		ssize_t n = SYS(e->sys, read, e->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			uffd_events_done(e, seq);
			if (errno == EAGAIN)
				return handled;
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
		uint64_t t0 = now_nsec(CLOCK_MONOTONIC);
		size_t nmsg = (size_t)n / sizeof(msgs[0]);
		/* Events first. The kernel hands out pending faults before
		 * pending events in one read, but a discard goes on (zaps) as
		 * soon as its event is read: serving a fault of the same read
		 * first could install a swapped page's old content (swap-in,
		 * readahead) after that zap, undoing the discard. The swap
		 * torture found it (about 2 runs in 25 under load: "byte is
		 * 217, shadow 0"). */
		for (size_t i = 0; i < nmsg; i++)
			if (msgs[i].event == UFFD_EVENT_REMOVE) {
				handle_remove(e, msgs[i].arg.remove.start, msgs[i].arg.remove.end);
				e->handler.saw_remove = true;
			}
		uffd_events_done(e, seq);
		for (size_t i = 0; i < nmsg; i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				handle_fault(e, &msgs[i], t0);
		handled += (int)nmsg;
		if ((size_t)n < sizeof(msgs))
			return handled;
	}
}

#define SPIN_AFTER_REMOVE_NSEC (50 * NSEC_PER_USEC)
#define SWEEP_NSEC (100 * NSEC_PER_USEC * 1000)

/* A safety net against a lost wake-up: every 100 ms, wake every thread
 * waiting anywhere in our regions. A spurious wake is harmless — the
 * thread retries its access; if the page is still in transit or
 * protected it faults again and its new message is handled as usual.
 * Without it, a wake-up missed by a bug would hang a vCPU for ever; with
 * it, for at most 100 ms. (A 30 s torture once hung a writer on the
 * write-protect path; the cause was not found before this was added.) */
void fault_sweep(ovc_engine *e)
{
	lock_read(&e->regions_lock);
	for (size_t i = 0; i < e->nregions; i++)
		uffd_wake(e, (uint64_t)(uintptr_t)e->regions[i]->host, e->regions[i]->len_bytes);
	unlock_rw(&e->regions_lock);
}

void *fault_thread_main(void *arg)
{
	ovc_engine *e = arg;
	struct pollfd pfd[2] = {
		{ .fd = e->uffd, .events = POLLIN },
		{ .fd = e->event_fd, .events = POLLIN },
	};

	atomic_store(&e->handler.tid, engine_gettid());
	uint64_t last_sweep = now_nsec(CLOCK_MONOTONIC);
	while (!atomic_load(&e->handler.stop)) {
		int pr = poll(pfd, 2, (int)(SWEEP_NSEC / 1000000));
		if (pr < 0 && errno != EINTR)
			break;
		uint64_t now = now_nsec(CLOCK_MONOTONIC);
		if (now - last_sweep >= SWEEP_NSEC) {
			fault_sweep(e);
			last_sweep = now;
		}
		if (pr <= 0)
			continue;
		if (pfd[0].revents & (POLLERR | POLLHUP))
			break;
		if (!(pfd[0].revents & POLLIN))
			continue;
		/* A drop by a pass raises one REMOVE event per range and waits
		 * until it is read. While such a burst lasts, keep reading for
		 * a short while instead of sleeping in poll(): that saves the
		 * discarding thread a cross-CPU wake-up of this thread per
		 * range (20-40 us here, against 0.3 us per page to drop). */
		uint64_t spin_until = 0;
		for (;;) {
			e->handler.saw_remove = e->handler.saw_swapin = false;
			int r = fault_drain(e);
			if (r < 0)
				log_debug(&e->log, "reading userfaultfd: %s", ovc_strerror(r));
			/* After a swap-in too: the next fault of a scan comes
			 * within a disk read's time, and sleeping in poll()
			 * would add a cross-CPU wake-up to each. */
			if (e->handler.saw_remove || e->handler.saw_swapin)
				spin_until = now_nsec(CLOCK_MONOTONIC) + SPIN_AFTER_REMOVE_NSEC;
			/* Look (poll with no timeout) until the next message or
			 * the end of the spin; read only when there is one. */
			struct pollfd u = { .fd = e->uffd, .events = POLLIN };
			while (poll(&u, 1, 0) == 0 && now_nsec(CLOCK_MONOTONIC) < spin_until &&
			       !atomic_load(&e->handler.stop)) {
#if defined(__x86_64__) || defined(__i386__)
				__builtin_ia32_pause();
#endif
			}
			if (!(u.revents & POLLIN) || atomic_load(&e->handler.stop))
				break;
		}
	}
	return NULL;
}
