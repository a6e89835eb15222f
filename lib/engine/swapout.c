/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The move-out-first swap-out pipeline: a batch of cold pages moves into a
 * staging area with UFFDIO_MOVE, its zero pages are shared, cached pages
 * whose content is on disk end without a write, the rest is written
 * through io_uring while the next batch moves out.
 *
 * Threads and locks: the pass thread only (swap.c's swap_tick), pass_lock
 * held, regions_lock held for reading; r->lock while pages are marked and
 * moved (move_out). Uses e->sw.out_ring (created without SINGLE_ISSUER
 * since the pass thread is not always the same thread) and its own ring of
 * staging areas (sw->areas, reset with drop.c's staging_map_fresh);
 * e->stage.broken is shared with share.c. The pass thread owns all of it;
 * page words change by compare-and-swap only (region.h).
 *
 * Swap-out of one batch (swapout_batch), the no-lost-write argument:
 *   1. under r->lock: RESIDENT -> SWAPPING_OUT, then UFFDIO_MOVE into the
 *      staging area. From here any access to the guest page is a MISSING
 *      fault; the handler sees SWAPPING_OUT and leaves the thread asleep
 *      (WAITERS). No writer can change the content now: it sits in staging
 *      where nobody else maps it.
 *   2. zero content (or DISCARDED): UFFDIO_ZEROPAGE, state ZERO — zero
 *      pages are shared rather than swapped, except in a region with
 *      OVC_REGION_NO_SHARE, whose zero pages are written like any other.
 *   3. the rest: slot runs, one writev per SWAPOUT_REQ_PAGES, queued and
 *      submitted; the next batch moves out into another staging area of
 *      the ring while these are written.
 *   4. per page, when its request completes: write OK and nobody waiting
 *      -> SWAPPED with its slot (the page word's age byte keeps the
 *      tracking epoch of the eviction, for refault feedback). Write OK but
 *      a fault waits -> move it back (cheaper than a read), RESIDENT, free
 *      the slot. Write failed (EIO, short) or no slot -> move back,
 *      RESIDENT, counted. The move back never gives up (uffd.c, uffd_move_back).
 *   5. reset a staging area (frees its pages) only after every write from
 *      it ended; every write ends before swap_tick() returns.
 *   A CACHED page (swapped in, its slot kept) whose staged content still
 *   hashes as its slot's skips 3 and becomes SWAPPED with that slot
 *   (cache_settle; why a content check: docs/swap.md, "Swap cache").
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/compat.h"
#include "engine/drop.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/uffd.h"
#include "engine/swap-knobs.h"
#include "engine/swapcache.h"
#include "engine/swapdev.h"
#include "engine/swapout.h"

#define AREA_BYTES ((size_t)BATCH_PAGES * PAGE_SIZE)

/* --- swap-out ----------------------------------------------------------- */

/*
 * Pipelining. A batch moves its pages into one area of a ring of
 * SWAPOUT_AREAS staging areas, queues its writes and returns; the next
 * batch moves out and queues while the disk writes the earlier ones (one
 * batch at a time left the disk idle while the CPU worked, and the CPU idle
 * while the last requests of a batch drained). Each write request ends its
 * own pages when it completes (write_done), so a fault on one of them waits
 * for that request only. An area is reset (mapped fresh: its pages freed)
 * when every request of it has ended, before it is used again, and the
 * whole ring once at the end of a tick. Every request ends before
 * swap_tick() returns, so nothing is in flight outside a tick (pass_lock):
 * region removal and share passes never see a batch in transit.
 */

struct swapout_area;

struct wreq {
	struct swapout_area *a;
	unsigned first, n; /* write list entries a->off[first, first+n) */
};

struct swapout_area {
	ovc_engine *e;
	struct region *r;
	uint8_t *stage;              /* BATCH_PAGES pages of the ring */
	unsigned inflight;           /* requests queued, not ended */
	bool used;                   /* holds pages: map fresh before reuse */
	uint64_t page[BATCH_PAGES];  /* guest page at each staging offset */
	uint16_t off[BATCH_PAGES];   /* write list: staging offsets */
	uint32_t slot[BATCH_PAGES];  /* write list: slot of each entry */
	struct wreq reqs[BATCH_PAGES];
	unsigned nreq;               /* reqs used by the batch's writes */
};

int swapout_init(ovc_engine *e)
{
	struct engine_swap *sw = &e->sw;
	size_t len = (size_t)SWAPOUT_AREAS * AREA_BYTES;

	sw->areas = calloc(SWAPOUT_AREAS, sizeof(*sw->areas));
	if (!sw->areas)
		return -ENOMEM;
	/* 2 MiB aligned, as drop.c's staging: a whole-THP run moves as one PMD. */
	void *p = SYS(e->sys, mmap, NULL, len + AREA_BYTES, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return negative_errno();
	sw->stage_map = p;
	sw->stage_map_len = len + AREA_BYTES;
	sw->stage = (uint8_t *)ALIGN_UP((uintptr_t)p, AREA_BYTES);
	for (unsigned i = 0; i < SWAPOUT_AREAS; i++) {
		sw->areas[i].e = e;
		sw->areas[i].stage = sw->stage + i * AREA_BYTES;
	}
	return staging_map_fresh(e, sw->stage, len);
}

unsigned engine_test_areas(void)
{
	return SWAPOUT_AREAS;
}

unsigned engine_test_areas_used(const ovc_engine *e)
{
	unsigned n = 0;
	for (unsigned i = 0; e->sw.areas && i < SWAPOUT_AREAS; i++)
		n += e->sw.areas[i].used;
	return n;
}

/* Give one page @page (content at @src in a swap-out staging area) back to
 * the guest, RESIDENT (zeros if the VMM discarded it meanwhile). Not
 * share.c's give_back_run, which gives back a run of the zero path's
 * staging and ends its pages ZERO or RESIDENT. */
static void give_back_page(ovc_engine *e, struct region *r, uint64_t page, const uint8_t *src)
{
	pst_word w = atomic_load(&r->pst[page]);
	uint64_t gaddr = (uint64_t)(uintptr_t)region_addr(r, page);
	if (w & PST_DISCARDED)
		uffd_zeropage_range(e, gaddr, PAGE_SIZE); /* discarded while out: zeros */
	else if (uffd_move_back(e, gaddr, (uint64_t)(uintptr_t)src, PAGE_SIZE) < 0) {
		log_err(&e->log, "guest page 0x%" PRIx64 " filled while in transit; reclaim stopped",
			r->guest_phys + (page << PAGE_SHIFT));
		e->stage.broken = true;
	}
	uffd_events_settle(e); /* installed: see fault.c, discard_mark */
	pst_word nw;
	do
		nw = resident_word(w);
	while (!atomic_compare_exchange_weak(&r->pst[page], &w, nw));
	/* move_back and ZEROPAGE woke the page, but a discard in between may
	 * have made a thread fault again and wait on the transit: wake it
	 * (see end_transit in share.c). */
	if (w & PST_WAITERS)
		uffd_wake(e, gaddr, PAGE_SIZE);
}

/* A CACHED page of the batch whose staged content (@src) is its slot's:
 * SWAPPED with that slot, no write. Unless a fault waits or the VMM
 * discarded it: then it goes back as a written page would. Returns whether
 * it is out. */
static bool cache_hit(ovc_engine *e, struct region *r, uint64_t page, const uint8_t *src)
{
	pst_t *p = &r->pst[page];
	pst_word w = atomic_load(p);
	for (;;) {
		if (w & (PST_WAITERS | PST_DISCARDED)) {
			cache_drop(e, r, page, true);
			give_back_page(e, r, page, src);
			atomic_fetch_add(&e->c.transit_aborts, 1);
			return false;
		}
		pst_word nw = pst_with_age(pst_with_state(w & ~PST_CACHED, PST_SWAPPED),
					   atomic_load(&e->sw.epoch) & 0xff);
		if (atomic_compare_exchange_weak(p, &w, nw))
			return true;
	}
}

/*
 * The swap cache's part of a batch, after the move to staging: of the pages
 * on @a's write list a->off[0, nd), the CACHED ones whose staged content
 * still hashes as their slot's go to SWAPPED with that slot and no write (a
 * hit); the others give their slot up and are written with the batch into a
 * fresh run, so that the batch stays one sequential run on disk. Why the
 * hash and not the tracker alone: UFFDIO_MOVE does not carry the uffd-wp
 * bit (measured, docs/swap.md), so a write after the last scan and before
 * the move is invisible to the tracker; the content in staging is frozen,
 * and comparing it is the check that cannot race. Returns the pages left to
 * write (the write list compacted).
 */
static unsigned cache_settle(ovc_engine *e, struct swapout_area *a, unsigned nd)
{
	struct swapdev *sd = e->sw.sd;
	struct region *r = a->r;
	unsigned keep = 0, hits = 0;

	for (unsigned d = 0; d < nd; d++) {
		unsigned i = a->off[d];
		uint64_t page = a->page[i];
		pst_word w = atomic_load(&r->pst[page]);
		if (w & PST_CACHED) {
			const uint8_t *staged = a->stage + ((uint64_t)i << PAGE_SHIFT);
			if (swapdev_slot_hash(sd, pst_slot(r, page, w)) == swapdev_page_hash(sd, staged)) {
				hits += cache_hit(e, r, page, staged);
				continue;
			}
			cache_drop(e, r, page, true);
		}
		a->off[keep++] = (uint16_t)i;
	}
	if (hits) {
		atomic_fetch_sub(&e->c.swap_cache_pages_now, hits);
		atomic_fetch_add(&e->c.swap_cache_hits, hits);
		atomic_fetch_add(&e->c.pages_swapped_out, hits);
		atomic_fetch_add(&e->c.swapped_pages_now, hits);
		e->sw.out_pages += hits;
	}
	return keep;
}

/* The write of write-list entry @d of @a ended with @res: SWAPPED with its
 * slot, or back to the guest (failed, no slot, or someone waits). */
static void end_write(struct swapout_area *a, unsigned d, int res)
{
	ovc_engine *e = a->e;
	struct engine_swap *sw = &e->sw;
	struct region *r = a->r;
	const uint8_t *src = a->stage + ((size_t)a->off[d] << PAGE_SHIFT);
	uint64_t page = a->page[a->off[d]];
	pst_t *p = &r->pst[page];

	if (res < 0) {
		if (res != -ENOSPC) {
			atomic_fetch_add(&e->c.swap_write_errors, 1);
			sw->werr = res;
		}
		give_back_page(e, r, page, src);
		if (a->slot[d] != SWAPDEV_NO_SLOT)
			swapdev_slot_free(sw->sd, a->slot[d], 1);
		return;
	}
	pst_word w = atomic_load(p), nw;
	for (;;) {
		if (w & (PST_WAITERS | PST_DISCARDED)) {
			/* Someone waits (or the VMM discarded it): give it back
			 * from staging rather than read it again. */
			give_back_page(e, r, page, src);
			swapdev_slot_free(sw->sd, a->slot[d], 1);
			atomic_fetch_add(&e->c.transit_aborts, 1);
			return;
		}
		nw = pst_with_age(pst_with_slot(r, page, pst_with_state(w, PST_SWAPPED), a->slot[d]),
				  atomic_load(&sw->epoch) & 0xff);
		if (atomic_compare_exchange_weak(p, &w, nw))
			break;
	}
	sw->out_pages++;
	atomic_fetch_add(&e->c.pages_swapped_out, 1);
	atomic_fetch_add(&e->c.swapped_pages_now, 1);
}

/* swapdev callback, on the pass thread: the request's pages end. */
static void write_done(void *user, int res)
{
	struct wreq *q = user;
	struct swapout_area *a = q->a;
	for (unsigned i = 0; i < q->n; i++)
		end_write(a, q->first + i, res);
	a->e->sw.inflight_pages -= q->n;
	a->inflight--;
}

/* Wait for at least one write to end (its callback runs). */
static void out_wait(ovc_engine *e)
{
	struct engine_swap *sw = &e->sw;
	for (unsigned tries = 0; swapdev_inflight(sw->out_ring);) {
		int wr = swapdev_wait(sw->out_ring, 0);
		if (wr >= 0)
			return;
		/* The submit failed: the requests stay queued. They reference
		 * staging, so we can only wait. */
		if (++tries % 1000 == 0)
			log_err(&e->log, "swap write submit: %s; retrying", ovc_strerror(wr));
		usleep(100);
	}
}

/* The next area of the ring, once its writes ended, mapped fresh; NULL and
 * *err when the reset failed (it is tried again next time). */
static struct swapout_area *area_get(ovc_engine *e, int *err)
{
	struct engine_swap *sw = &e->sw;
	struct swapout_area *a = &sw->areas[sw->next_area];
	while (a->inflight)
		out_wait(e);
	if (a->used) {
		*err = staging_map_fresh(e, a->stage, AREA_BYTES);
		if (*err < 0)
			return NULL;
		a->used = false;
	}
	sw->next_area = (sw->next_area + 1) % SWAPOUT_AREAS;
	return a;
}

/* End every write in flight, then free the whole ring in one go. */
void swapout_drain(ovc_engine *e)
{
	struct engine_swap *sw = &e->sw;
	bool used = false;
	while (swapdev_inflight(sw->out_ring))
		out_wait(e);
	for (unsigned i = 0; i < SWAPOUT_AREAS; i++)
		used |= sw->areas[i].used;
	if (!used || e->stage.broken)
		return; /* broken: staging holds a page that could not go back */
	if (staging_map_fresh(e, sw->stage, (size_t)SWAPOUT_AREAS * AREA_BYTES) == 0)
		for (unsigned i = 0; i < SWAPOUT_AREAS; i++)
			sw->areas[i].used = false;
}

/* Move @n pages (sorted, RESIDENT when listed) of @r into @a: SWAPPING_OUT,
 * then UFFDIO_MOVE of each guest-contiguous run, packed side by side.
 * @pending: DISCARD_PENDING at the mark, per staging offset. Returns pages
 * marked; moved[i] tells which of them are in staging. */
static unsigned move_out(ovc_engine *e, struct swapout_area *a, const uint64_t *pages, unsigned n,
			 uint8_t *pending, uint8_t *moved, int *err)
{
	struct region *r = a->r;
	unsigned nsel = 0;

	lock_mutex(&r->lock);
	for (unsigned i = 0; i < n; i++) {
		pst_word old;
		/* DISCARD_PENDING stays on the word too: a page that is not
		 * moved goes back RESIDENT with it (sort_staged). */
		if (pst_transition_keep(&r->pst[pages[i]], PST_RESIDENT, PST_SWAPPING_OUT, PST_DISCARD_PENDING,
					&old)) {
			pending[nsel] = (old & PST_DISCARD_PENDING) != 0;
			a->page[nsel++] = pages[i];
		}
	}
	memset(moved, 0, nsel);
	for (unsigned i = 0; i < nsel && !*err;) {
		unsigned j = i + 1;
		while (j < nsel && a->page[j] == a->page[j - 1] + 1)
			j++;
		/* A pinned page stays in the guest and the run goes on past
		 * it; EAGAIN (an event unread, we hold r->lock) ends the
		 * batch. */
		*err = move_to_stage(e, r, (uint32_t)a->page[i], (uint32_t)a->page[j - 1] + 1,
				     a->stage + ((uint64_t)i << PAGE_SHIFT), moved + i, false);
		i = j;
	}
	unlock_mutex(&r->lock);
	return nsel;
}

/* Pages not moved stay (RESIDENT again); zero or discarded content is
 * shared, not swapped (ZERO). The rest make the write list a->off.
 * Returns its length. */
static unsigned sort_staged(ovc_engine *e, struct swapout_area *a, unsigned nsel, const uint8_t *pending,
			    const uint8_t *moved)
{
	struct region *r = a->r;
	unsigned nd = 0, zeros = 0;

	for (unsigned i = 0; i < nsel; i++) {
		pst_t *p = &r->pst[a->page[i]];
		pst_word old;
		if (!moved[i]) {
			if (pst_transition_keep(p, PST_SWAPPING_OUT, PST_RESIDENT, PST_DISCARD_PENDING, &old) &&
			    (old & PST_WAITERS))
				uffd_wake(e, (uint64_t)(uintptr_t)region_addr(r, a->page[i]), PAGE_SIZE);
			atomic_fetch_add(&e->c.transit_aborts, 1);
			continue;
		}
		a->used = true;
		/* Zero content is shared, not written, unless the region says
		 * OVC_REGION_NO_SHARE: then it goes to disk like any cold
		 * page. A discarded page is a hole whatever the flag. */
		if (pending[i] || (atomic_load(p) & PST_DISCARDED) ||
		    (!(r->flags & OVC_REGION_NO_SHARE) && scan_page_is_zero(a->stage + ((uint64_t)i << PAGE_SHIFT)))) {
			uffd_zeropage_range(e, (uint64_t)(uintptr_t)region_addr(r, a->page[i]), PAGE_SIZE);
			uffd_events_settle(e); /* see fault.c, discard_mark */
			pst_transition(p, PST_SWAPPING_OUT, PST_ZERO, NULL);
			zeros++;
			continue;
		}
		a->off[nd++] = (uint16_t)i;
	}
	if (zeros) {
		atomic_fetch_add(&e->c.zero_pages_reclaimed, zeros);
		atomic_fetch_add(&e->c.zero_pages_now, zeros);
	}
	return nd;
}

/* Queue the writes of the write list a->off[0, nd): slot runs, at most
 * SWAPOUT_REQ_PAGES per request. Entries that get no slot end at once. */
static uint8_t *area_src(void *ctx, unsigned d)
{
	struct swapout_area *a = ctx;
	return a->stage + ((uint64_t)a->off[d] << PAGE_SHIFT);
}

static void *area_req(void *ctx, unsigned first, unsigned n)
{
	struct swapout_area *a = ctx;
	struct wreq *q = &a->reqs[a->nreq++];
	*q = (struct wreq){ a, first, n };
	a->inflight++;
	a->e->sw.inflight_pages += n;
	return q;
}

static void queue_writes(ovc_engine *e, struct swapout_area *a, unsigned nd)
{
	struct engine_swap *sw = &e->sw;
	const struct swapout_writer w = { a, area_src, area_req, write_done, out_wait };

	a->nreq = 0;
	unsigned assigned = swapout_queue_runs(e, nd, a->slot, &w);
	for (unsigned d = assigned; d < nd; d++) {
		a->slot[d] = SWAPDEV_NO_SLOT;
		end_write(a, d, -ENOSPC);
	}
	int sr = swapdev_submit(sw->out_ring);
	(void)sr; /* on failure the requests stay queued; out_wait submits them */
}

/* Start swapping out @n pages (sorted, RESIDENT when listed) of @r: move
 * them to a staging area, queue their writes; they end in write_done.
 * Returns pages queued for writing (charged to the rate limit), or -errno
 * when no page could be moved out. */
int swapout_batch(ovc_engine *e, struct region *r, const uint64_t *pages, unsigned n)
{
	uint8_t pending[BATCH_PAGES], moved[BATCH_PAGES];
	int err = 0;

	if (e->stage.broken)
		return -EIO;
	struct swapout_area *a = area_get(e, &err);
	if (!a)
		return err;
	a->r = r;
	unsigned nsel = move_out(e, a, pages, n, pending, moved, &err);
	unsigned nd = sort_staged(e, a, nsel, pending, moved);
	/* Before slots are allocated: pages whose content is on disk already
	 * (the swap cache) leave the write list and end without a write. */
	nd = cache_settle(e, a, nd);
	queue_writes(e, a, nd);
	return nd ? (int)nd : err;
}
