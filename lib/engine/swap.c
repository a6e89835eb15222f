/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Swapping inside the engine: cold pages out to the swap file through
 * io_uring, faulted back through userfaultfd.
 *
 * Threads and locks:
 *   - swap_tick() and the swap-out batches: the pass thread (worker, the
 *     VMM loop in NO_THREADS mode, a test), engine->pass_lock held,
 *     regions_lock held for reading. Uses e->sw.out_ring (created without
 *     SINGLE_ISSUER since the pass thread is not always the same thread)
 *     and its own ring of staging areas (sw->areas, reset with drop.c's
 *     staging_map_fresh); e->stage.broken is shared with share.c. The pass
 *     thread owns all of it.
 *   - swap_fault() and swap_discard(): the fault handler, regions_lock read
 *     (and r->lock for swap_fault).
 *   - swap_region_bring_back(): a VMM thread in ovc_region_remove() or
 *     ovc_engine_free(), pass_lock held, takes regions_lock read and r->lock
 *     per page run.
 *   e->sw.in_ring and the readahead windows are used under e->sw.in_lock
 *   (handler and bring-back); the readahead streams are the handler's.
 *   Page words change by compare-and-swap only (region.h).
 *
 * Two swap-out paths. With WP_ASYNC tracking on the engine's one uffd,
 * UFFDIO_WRITEPROTECT no longer stops writers (docs/swap.md), so the
 * write-protect-first path would lose writes: such an engine moves pages
 * out first (swapout_batch, below), refuses shared memory, and every
 * region takes share.c's MOVE path too. In the sync write-protect mode
 * (OVC_ENGINE_SYNC_WP, chosen where MOVE or WP_ASYNC is missing: engine.c,
 * choose_swap_mode) writes are tracked by write-protect faults and
 * swap-out is swapout-wp.c's write-protect path.
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
 *
 * Swap-in (swap_fault), r->lock held: the faulting page and its SWAPPED
 * neighbours whose slots follow its slot (readahead, one read) go
 * SWAPPED -> SWAPPING_IN; one read into the ring's bounce buffer (spins
 * before it sleeps: a cross-CPU wake-up costs as much as the read); one
 * UFFDIO_COPY (MODE_WP, so the tracker sees later writes; DONTWAKE) for the
 * whole run; then RESIDENT | CACHED keeping the slots (the swap cache), one
 * UFFDIO_WAKE over the run wakes every thread waiting in it, and the slots'
 * content hashes are taken from the bytes read. Faults in order also queue
 * asynchronous reads of the runs ahead into readahead windows; a fault on
 * a page of one waits for that read instead of reading (ra_fill, see the
 * comment at struct ra_win for why the pages may stay SWAPPED meanwhile). A failed read leaves the pages SWAPPED, calls the VMM's
 * io-error callback and leaves the faulting thread asleep: the handler's
 * 100 ms sweep wakes it, it faults again, and the read is retried. A page
 * never comes back as zeros because its read failed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/compat.h"
#include "engine/drop.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/uffd.h"
#include "engine/swapdev.h"
#include "engine/swap-knobs.h"
#include "engine/track.h"

/* Most pages read with a fault, the faulting page included (one request;
 * also the bounce buffer's size). The window starts at one page and doubles
 * while faults come in order, as the kernel's swap readahead does: random
 * faults read 4 KiB, a sequential scan soon reads 256 KiB per fault. */
#define SWAPIN_RA_PAGES 64u
/* Spin this long on the completion queue before sleeping in a read. */
#define SWAPIN_SPIN_USEC 60u
/* Asynchronous readahead: once faults come in order, up to RA_WINDOWS reads
 * of RA_WIN_PAGES slot-contiguous SWAPPED pages each are in flight ahead of
 * the faults, as the kernel's PG_readahead marker keeps its next window in
 * flight while the current one is consumed. */
#define RA_WINDOWS 8u
#define RA_WIN_PAGES SWAPIN_RA_PAGES
/* Faults in order before readahead starts: window size reached by doubling. */
#define RA_START_WIN 4u
/* Pages not swapped that a run in order may step over (faults in order,
 * readahead windows). */
#define RA_GAP_PAGES 8u

/* One readahead window. Its pages stay SWAPPED while it is read: a fault
 * on one of them finds the window (swapin_run) and waits for it instead of
 * reading again. The slots cannot change under it: a SWAPPED page leaves
 * that state only by a swap-in (swapin_run, which takes or forgets the
 * windows it covers) or a discard (swap_discard forgets them), both under
 * in_lock, like every access to this table. */
struct ra_win {
	struct region *r;      /* NULL: free */
	uint64_t first;            /* page */
	uint32_t slot;
	unsigned n;
	bool done, stale;          /* stale: forgotten, freed when done */
	int res;
	uint8_t *buf;              /* RA_WIN_PAGES pages */
};

/* A stream of faults in order (the fault handler's only: swap_fault).
 * Several, so that one thread's scan stays in order among other threads'
 * random faults. */
#define RA_STREAMS 4u
struct ra_stream {
	uint64_t next;             /* address where its next fault comes */
	unsigned win;              /* pages to read at that fault */
};

struct swap_ra {
	struct ra_stream stream[RA_STREAMS];
	unsigned stream_clock;     /* the next to replace */
	struct ra_win win[RA_WINDOWS];
	struct region *tail_r; /* where the last window ended */
	uint64_t tail;
	uint8_t *mem;
};

static int ra_init(struct engine_swap *sw)
{
	size_t len = (size_t)RA_WINDOWS * RA_WIN_PAGES * PAGE_SIZE;
	sw->ra = calloc(1, sizeof(*sw->ra));
	if (!sw->ra)
		return -ENOMEM;
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -ENOMEM;
	sw->ra->mem = m;
	for (unsigned i = 0; i < RA_WINDOWS; i++)
		sw->ra->win[i].buf = sw->ra->mem + (size_t)i * RA_WIN_PAGES * PAGE_SIZE;
	return 0;
}

static void ra_fini(struct engine_swap *sw)
{
	if (sw->ra && sw->ra->mem)
		munmap(sw->ra->mem, (size_t)RA_WINDOWS * RA_WIN_PAGES * PAGE_SIZE);
	free(sw->ra);
	sw->ra = NULL;
}

/* Swap-out pipeline (see "swap-out" below): staging areas of BATCH_PAGES
 * in the ring, requests in flight at most (SWAPOUT_REQ_PAGES pages
 * each). */
#define SWAPOUT_AREAS 8u
#define AREA_BYTES ((size_t)BATCH_PAGES * PAGE_SIZE)
#define SWAPOUT_RING_DEPTH (SWAPOUT_AREAS * BATCH_PAGES / SWAPOUT_REQ_PAGES)

static int swapout_init(ovc_engine *e);

/* Test and benchmark knobs (swap-knobs.h), read when an engine is created. */
static _Atomic uint64_t fill_ahead_bytes = SWAPDEV_FILL_AHEAD_DEFAULT;
static _Atomic bool no_scrub;

void engine_test_set_fill_ahead(uint64_t bytes)
{
	atomic_store(&fill_ahead_bytes, bytes);
}

void engine_test_set_no_scrub(bool on)
{
	atomic_store(&no_scrub, on);
}

void engine_test_set_clock(ovc_engine *e, uint64_t (*clock_nsec)(void))
{
	e->sw.clock_nsec = clock_nsec;
}

static uint64_t monotonic_nsec(void)
{
	return now_nsec(CLOCK_MONOTONIC);
}

int swap_init(ovc_engine *e, const struct ovc_engine_opts *o)
{
	struct engine_swap *sw = &e->sw;
	const char *why = NULL;
	int r;

	if (!o->swap_path && !o->swap_size_bytes)
		return 0;
	if (!o->swap_path || !o->swap_size_bytes)
		return -EINVAL;
	if (!e->have_move && !e->sync_wp) {
		log_err(&e->log, "swap needs UFFDIO_MOVE (Linux 6.8+), which this engine cannot use");
		return -EOPNOTSUPP;
	}
	r = e->sync_wp ? track_probe_sync(e->sys, &why) : track_probe(e->sys, &why);
	if (r < 0) {
		log_err(&e->log, "swap needs write tracking: %s", why ? why : ovc_strerror(r));
		return r == -ENOSYS ? -EOPNOTSUPP : r;
	}
	/* The zero-fill is a thread of swapdev's: none with NO_THREADS, where
	 * the engine promises to start no thread (its swap-outs then pay
	 * ext4's extent conversion). */
	struct swapdev_opts so = { .size = sizeof(so), .dir = o->swap_path,
				   .size_bytes = o->swap_size_bytes, .sys = e->sys, .log = &e->log,
				   .fill_ahead_bytes = (e->flags & OVC_ENGINE_NO_THREADS)
							       ? 0
							       : atomic_load(&fill_ahead_bytes),
				   .flags = ((e->flags & OVC_ENGINE_NO_THREADS) ? SWAPDEV_F_NO_THREAD : 0) |
					    ((o->flags & OVC_ENGINE_SWAP_ENCRYPT) ? SWAPDEV_F_ENCRYPT : 0) |
					    (atomic_load(&no_scrub) ? SWAPDEV_F_NO_SCRUB : 0) };
	r = swapdev_new(&so, &sw->sd);
	if (r < 0)
		return r;
	struct swapdev_ring_opts ro = { .size = sizeof(ro), .depth = 64, .bounce_pages = SWAPIN_RA_PAGES,
					.flags = SWAPDEV_RING_ANY_THREAD };
	r = swapdev_ring_new(sw->sd, &ro, &sw->in_ring);
	if (r < 0)
		return r;
	ro.depth = SWAPOUT_RING_DEPTH;
	ro.bounce_pages = 1; /* writes need none */
	r = swapdev_ring_new(sw->sd, &ro, &sw->out_ring);
	if (r < 0)
		return r;
	r = swapout_init(e);
	if (r < 0)
		return r;
	r = ra_init(sw);
	if (r < 0)
		return r;
	sw->clock_nsec = monotonic_nsec;
	if (e->sync_wp) {
		void *b = SYS(e->sys, mmap, NULL, (size_t)BATCH_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b == MAP_FAILED)
			return negative_errno();
		sw->wp_buf = b;
	}
	uint64_t interval = e->scan_interval_usec;
	uint64_t cold = o->cold_age_usec ? o->cold_age_usec : 30 * USEC_PER_SEC;
	sw->interval_usec = interval;
	sw->cold_age = (unsigned)MIN(MAX((cold + interval - 1) / interval, UINT64_C(1)), (uint64_t)TRACK_AGE_MAX);
	sw->rate_bytes_per_sec = o->swapout_rate_bytes_per_sec;
	sw->io_error_fn = o->io_error_fn;
	sw->io_error_userdata = o->io_error_userdata;
	log_info(&e->log, "swap: %" PRIu64 " MiB in %s, cold after %u intervals of %" PRIu64 " ms",
		 o->swap_size_bytes >> 20, o->swap_path, sw->cold_age, interval / 1000);
	return 0;
}

void swap_fini(ovc_engine *e)
{
	struct engine_swap *sw = &e->sw;
	swapdev_ring_free(sw->out_ring);
	swapdev_ring_free(sw->in_ring); /* runs the readahead callbacks */
	ra_fini(sw);
	swapdev_free(sw->sd);
	sw->out_ring = sw->in_ring = NULL;
	sw->sd = NULL;
	free(sw->cand);
	sw->cand = NULL;
	if (sw->stage_map)
		munmap(sw->stage_map, sw->stage_map_len);
	sw->stage_map = sw->stage = NULL;
	free(sw->areas);
	sw->areas = NULL;
	if (sw->wp_buf)
		munmap(sw->wp_buf, (size_t)BATCH_PAGES * PAGE_SIZE);
	sw->wp_buf = NULL;
	pthread_mutex_destroy(&sw->in_lock);
}

/* --- swap cache ---------------------------------------------------------- */

/* Give up the cached slot of *p, if it has one. Only in RESIDENT or ZERO,
 * or in SWAPPING_OUT when @own_transit (the pass thread's own batch).
 * Returns whether a slot was freed. Any thread; compare-and-swap. */
static bool cache_drop(ovc_engine *e, struct region *r, uint64_t page, bool own_transit)
{
	pst_t *p = &r->pst[page];
	pst_word w = atomic_load(p);
	for (;;) {
		if (!(w & PST_CACHED) || (pst_in_transit(w) && !own_transit))
			return false;
		if (atomic_compare_exchange_weak(p, &w, w & ~(PST_CACHED | PST_SLOT_LO_MASK)))
			break;
	}
	swapdev_slot_free(e->sw.sd, pst_slot(r, page, w), 1);
	atomic_fetch_sub(&e->c.swap_cache_pages_now, 1);
	return true;
}

/* After a tracking scan of @r (@scanned: it succeeded): a cached page the
 * tracker saw written, or one that became ZERO (a zero-page pass took it,
 * or a swap batch found it zeros), holds a slot that no longer has its
 * content: free it. Pass thread. */
static void cache_sweep(ovc_engine *e, struct region *r, bool scanned)
{
	if (atomic_load(&e->c.swap_cache_pages_now) <= 0)
		return;
	for (uint64_t pg = 0; pg < r->npages; pg++) {
		pst_word w = atomic_load(&r->pst[pg]);
		if ((w & PST_CACHED) &&
		    (pst_state(w) == PST_ZERO || (scanned && track_written(r->track, pg))))
			cache_drop(e, r, pg, false);
	}
}

/* Free cached slots of resident pages, up to @want, in every region: the
 * swap file is full and colder pages wait. regions_lock held. Returns how
 * many were freed. */
static uint64_t cache_shrink(ovc_engine *e, uint64_t want)
{
	uint64_t freed = 0;
	for (size_t i = 0; i < e->nregions && freed < want; i++) {
		struct region *r = e->regions[i];
		for (uint64_t pg = 0; pg < r->npages && freed < want; pg++)
			freed += cache_drop(e, r, pg, false);
	}
	return freed;
}

int swap_region_add(ovc_engine *e, struct region *r)
{
	struct engine_swap *sw = &e->sw;

	/* Without UFFDIO_MOVE (sync write-protect mode with
	 * OVC_ENGINE_NO_MOVE or before 6.8) a swap-out drops pages with
	 * MADV_DONTNEED, pinned ones too: like NO_SWAP unless the VMM
	 * promised OVC_REGION_UNPINNED (region->may_drop). */
	if (!swap_enabled(e) || (r->flags & OVC_REGION_NO_SWAP) || !r->may_drop)
		return 0;
	size_t cap = (size_t)MIN(r->npages, MAX(r->npages / SWAP_CAND_DIV, (uint64_t)SWAP_CAND_MIN));
	if (cap > sw->cand_cap) {
		uint64_t *c = realloc(sw->cand, cap * sizeof(*c));
		if (!c)
			return -ENOMEM;
		sw->cand = c;
		sw->cand_cap = cap;
	}
	struct track_opts to = { .size = sizeof(to), .start = r->host, .len_bytes = r->len_bytes,
				 .flags = TRACK_F_REGISTERED | (e->sync_wp ? TRACK_F_SYNC : 0),
				 .hot_intervals = sw->cold_age + 2, .sys = e->sys, .log = &e->log,
				 .uffd = e->uffd, .lock = &r->lock };
	return track_new(&to, &r->track);
}

void swap_region_del(ovc_engine *e, struct region *r)
{
	if (swap_enabled(e))
		for (uint64_t pg = 0; pg < r->npages; pg++)
			cache_drop(e, r, pg, false);
	track_free(r->track);
	r->track = NULL;
}

/* --- swap-in ------------------------------------------------------------ */

/* RESIDENT with no slot, keeping the other fields but WAITERS/DISCARDED.
 * Never for a CACHED word: its slot would leak (cache_drop first). */
static pst_word resident_word(pst_word w)
{
	/* DISCARD_PENDING stays: a discarded SWAPPED page is a hole until a
	 * fault is served on it. */
	return pst_with_state(w, PST_RESIDENT) & ~(PST_SLOT_LO_MASK | PST_WAITERS | PST_DISCARDED | PST_CACHED);
}

/* --- readahead windows (in_lock held) ----------------------------------- */

/* The stream a fault at @addr continues, its window doubled; else a new
 * stream (replacing the oldest) reading one page. In order means at the
 * stream's next page, or a few further when the pages between are in
 * memory (refault-held or cached pages among swapped ones). Handler. */
static struct ra_stream *ra_stream_of(struct swap_ra *ra, uint64_t addr)
{
	for (unsigned i = 0; i < RA_STREAMS; i++) {
		struct ra_stream *st = &ra->stream[i];
		if (addr >= st->next && addr - st->next <= (uint64_t)RA_GAP_PAGES << PAGE_SHIFT && st->next) {
			st->win = MIN(MAX(st->win, 1u) * 2, SWAPIN_RA_PAGES);
			return st;
		}
	}
	struct ra_stream *st = &ra->stream[ra->stream_clock++ % RA_STREAMS];
	*st = (struct ra_stream){ .next = addr, .win = 1 };
	return st;
}

static void ra_done(void *user, int res)
{
	struct ra_win *w = user;
	w->done = true;
	w->res = res;
	if (w->stale)
		w->r = NULL;
}

/* The live window of @r holding page @page, or NULL. */
static struct ra_win *ra_find(struct swap_ra *ra, const struct region *r, uint64_t page)
{
	for (unsigned i = 0; i < RA_WINDOWS; i++) {
		struct ra_win *w = &ra->win[i];
		if (w->r == r && !w->stale && page >= w->first && page < w->first + w->n)
			return w;
	}
	return NULL;
}

/* Give a window up: free now if its read ended, else when it does. */
static void ra_drop(struct ra_win *w)
{
	w->stale = true;
	if (w->done)
		w->r = NULL;
}

/* Forget the live windows of @r overlapping [first, first + n) but @keep:
 * those pages were swapped in or discarded without them. */
static void ra_forget(struct swap_ra *ra, const struct region *r, uint64_t first, uint64_t n,
		      const struct ra_win *keep)
{
	for (unsigned i = 0; i < RA_WINDOWS; i++) {
		struct ra_win *w = &ra->win[i];
		if (w != keep && w->r == r && !w->stale && w->first < first + n && first < w->first + w->n)
			ra_drop(w);
	}
}

/* Pages from @page that one window (or read) can bring: SWAPPED, slots
 * consecutive from @slot, no other live window on them; at most @max. */
static unsigned run_len(struct swap_ra *ra, const struct region *r, uint64_t page, uint32_t slot,
			unsigned max, const struct ra_win *own)
{
	unsigned n = 0;
	for (; n < max && page + n < r->npages; n++) {
		pst_word wk = atomic_load(&r->pst[page + n]);
		if (pst_state(wk) != PST_SWAPPED || pst_slot(r, page + n, wk) != slot + n)
			break;
		const struct ra_win *w = ra_find(ra, r, page + n);
		if (w && w != own)
			break;
	}
	return n;
}

/* Queue reads of the SWAPPED runs after page @from of @r into the free
 * windows, and submit them: the faults to come find them read. */
static void ra_fill(ovc_engine *e, struct region *r, uint64_t from)
{
	struct swap_ra *ra = e->sw.ra;
	unsigned queued = 0;

	lock_mutex(&e->sw.in_lock);
	uint64_t next = from;
	if (ra->tail_r == r && ra->tail > from && ra->tail <= from + RA_WINDOWS * RA_WIN_PAGES)
		next = ra->tail; /* the windows before it are in flight */
	for (unsigned i = 0; i < 2 * RA_WINDOWS && next < r->npages; i++) {
		struct ra_win *h = ra_find(ra, r, next), *w = NULL;
		if (h) { /* read ahead already */
			next = h->first + h->n;
			continue;
		}
		for (unsigned k = 0; k < RA_WINDOWS && !w; k++)
			w = ra->win[k].r ? NULL : &ra->win[k];
		uint64_t w0 = atomic_load(&r->pst[next]);
		for (unsigned gap = 0; pst_state(w0) != PST_SWAPPED && gap < RA_GAP_PAGES && next + 1 < r->npages; gap++)
			w0 = atomic_load(&r->pst[++next]);
		if (!w || pst_state(w0) != PST_SWAPPED)
			break; /* all in flight, or the swapped run ends */
		uint32_t slot = pst_slot(r, next, w0);
		unsigned n = run_len(ra, r, next, slot, RA_WIN_PAGES, NULL);
		if (!n)
			continue; /* stepped onto a window: skip it above */
		struct iovec iov = { w->buf, (size_t)n << PAGE_SHIFT };
		if (swapdev_queue_read(e->sw.in_ring, slot, &iov, 1, ra_done, w) < 0)
			break;
		*w = (struct ra_win){ .r = r, .first = next, .slot = slot, .n = n, .buf = w->buf };
		next += n;
		queued++;
	}
	ra->tail_r = r;
	ra->tail = next;
	if (queued)
		(void)swapdev_submit(e->sw.in_ring); /* on failure: with the next wait */
	unlock_mutex(&e->sw.in_lock);
}

/* The bytes of pages [page, page + n) (slots from @slot): from window @w
 * when it read them, else by a synchronous read of at most the bounce
 * buffer. Returns pages available (*ret_buf) or -errno of the read. */
static int swapin_bytes(ovc_engine *e, struct ra_win *w, uint64_t page, uint32_t slot, unsigned n,
			const void **ret_buf)
{
	if (w) {
		int err = 0;
		while (!w->done && err >= 0 && swapdev_inflight(e->sw.in_ring))
			err = swapdev_wait(e->sw.in_ring, SWAPIN_SPIN_USEC);
		if (w->done && w->res == 0) {
			*ret_buf = w->buf + ((page - w->first) << PAGE_SHIFT);
			return (int)n;
		}
		/* The window's read failed: read again, now, as any fault. */
		ra_drop(w);
	}
	n = MIN(n, SWAPIN_RA_PAGES);
	int err = swapdev_read_sync(e->sw.in_ring, slot, n, SWAPIN_SPIN_USEC, ret_buf);
	return err < 0 ? err : (int)n;
}

/* --- swap-in -------------------------------------------------------------- */

/* Install pages [page, page+n) — SWAPPING_IN — from @buf. Returns pages
 * installed (a prefix). r->lock and in_lock held. */
static unsigned install(ovc_engine *e, struct region *r, uint64_t page, const void *buf, unsigned n,
			bool *eagain)
{
	unsigned done = 0;
	uint64_t dst = (uint64_t)(uintptr_t)region_addr(r, page);
	while (done < n) {
		struct uffdio_copy c = { .dst = dst + ((uint64_t)done << PAGE_SHIFT),
					 .src = (uint64_t)(uintptr_t)buf + ((uint64_t)done << PAGE_SHIFT),
					 .len = (uint64_t)(n - done) << PAGE_SHIFT,
					 .mode = UFFDIO_COPY_MODE_WP | UFFDIO_COPY_MODE_DONTWAKE };
		int rr = uffd_resolve(e, UFFDIO_COPY, &c);
		if (rr == 0) {
			done = n;
			break;
		}
		if (c.copy > 0) {
			done += (unsigned)((uint64_t)c.copy >> PAGE_SHIFT);
			continue;
		}
		/* EAGAIN: a REMOVE event waits to be read (by this very thread
		 * when it is the handler). EEXIST cannot happen: nobody
		 * installs a page in transit. Either way the rest stays
		 * SWAPPED and is read again on the next fault. */
		if (rr == -EAGAIN)
			*eagain = true;
		else
			log_err(&e->log, "installing swapped page 0x%" PRIx64 ": %s",
				r->guest_phys + ((page + done) << PAGE_SHIFT), ovc_strerror(rr));
		break;
	}
	return done;
}

/* Swap in the run starting at @page (SWAPPED): the rest of its readahead
 * window if one holds it, else up to @max slot-contiguous pages read now.
 * r->lock held. Returns 0 (page installed or no longer SWAPPED), -EAGAIN
 * (try again after the pending event), or the read's -errno. *ret_n: pages
 * installed. */
static int swapin_run(ovc_engine *e, struct region *r, uint64_t page, unsigned max, unsigned *ret_n,
		      pst_word *ret_old)
{
	struct swap_ra *ra = e->sw.ra;
	pst_word w = atomic_load(&r->pst[page]);
	*ret_n = 0;
	if (pst_state(w) != PST_SWAPPED)
		return 0;
	uint32_t slot = pst_slot(r, page, w);
	lock_mutex(&e->sw.in_lock);
	struct ra_win *win = ra_find(ra, r, page);
	if (win && slot != win->slot + (page - win->first)) {
		ra_drop(win); /* cannot happen (see struct ra_win); never trust it */
		win = NULL;
	}
	if (win)
		max = (unsigned)(win->first + win->n - page);
	unsigned n = run_len(ra, r, page, slot, max, win);
	for (unsigned k = 0; k < n; k++)
		if (!pst_transition(&r->pst[page + k], PST_SWAPPED, PST_SWAPPING_IN, k ? NULL : ret_old)) {
			n = k;
			break;
		}
	if (!n) {
		unlock_mutex(&e->sw.in_lock);
		return 0;
	}
	ra_forget(ra, r, page, n, win);
	/* Until the content is hashed below, a cached slot matches nothing. */
	for (unsigned k = 0; k < n; k++)
		swapdev_slot_set_hash(e->sw.sd, slot + k, 0);
	bool eagain = false;
	const void *buf = NULL;
	int got = swapin_bytes(e, win, page, slot, n, &buf);
	unsigned done = got > 0 ? install(e, r, page, buf, (unsigned)got, &eagain) : 0;
	for (unsigned k = 0; k < n; k++) {
		pst_t *p = &r->pst[page + k];
		pst_word wk = atomic_load(p), nw;
		bool woke;
		do {
			/* Installed: RESIDENT, keeping its slot (swap cache). */
			nw = k < done ? pst_with_state(wk, PST_RESIDENT) | PST_CACHED
				      : pst_with_state(wk, PST_SWAPPED);
			nw &= ~(PST_WAITERS | PST_DISCARDED);
			woke = k < done; /* woken below with the run */
		} while (!atomic_compare_exchange_weak(p, &wk, nw));
		if ((wk & PST_WAITERS) && !woke)
			uffd_wake(e, (uint64_t)(uintptr_t)region_addr(r, page + k), PAGE_SIZE);
	}
	if (done) {
		atomic_fetch_add(&e->c.pages_swapped_in, done);
		atomic_fetch_sub(&e->c.swapped_pages_now, (int64_t)done);
		atomic_fetch_add(&e->c.swap_cache_pages_now, done);
		/* Installed with DONTWAKE: wake only now, so that a woken
		 * thread sees the page RESIDENT and the counters current. */
		uffd_wake(e, (uint64_t)(uintptr_t)region_addr(r, page), (uint64_t)done << PAGE_SHIFT);
		/* Off the faulting thread's path: what each slot holds. */
		for (unsigned k = 0; k < done; k++)
			swapdev_slot_set_hash(e->sw.sd, slot + k,
					      swapdev_page_hash(e->sw.sd, (const uint8_t *)buf + ((size_t)k << PAGE_SHIFT)));
	}
	if (win)
		ra_drop(win); /* used, or its pages are SWAPPED again for a fresh read */
	unlock_mutex(&e->sw.in_lock);
	*ret_n = done;
	if (got < 0)
		return got;
	return done ? 0 : (eagain ? -EAGAIN : -EIO);
}

bool swap_fault(ovc_engine *e, struct region *r, uint64_t page, uint64_t addr)
{
	unsigned n;
	pst_word old = 0;

	if (!swap_enabled(e)) {
		uffd_wake(e, addr, PAGE_SIZE);
		return false;
	}
	struct engine_swap *sw = &e->sw;
	struct ra_stream *st = ra_stream_of(sw->ra, addr);
	int err = swapin_run(e, r, page, st->win, &n, &old);
	if (n) {
		st->next = addr + ((uint64_t)n << PAGE_SHIFT);
		/* In order for a while: read the next windows ahead. */
		if (st->win >= RA_START_WIN)
			ra_fill(e, r, page + n);
		atomic_fetch_add(&e->c.swap_faults, 1);
		/* Refault: back within a hold's worth of intervals of its
		 * eviction (the age byte of a SWAPPED word holds the epoch). */
		unsigned since = (atomic_load(&e->sw.epoch) - pst_age(old)) & 0xff;
		if (since <= e->sw.cold_age + 1) {
			atomic_fetch_add(&e->c.refaults, 1);
			if (r->track)
				track_refault(r->track, page);
		}
		return true;
	}
	if (err == -EAGAIN || err == 0) {
		/* An event is queued behind this fault, or the page left
		 * SWAPPED meanwhile: the thread faults again and we answer
		 * then. */
		uffd_wake(e, addr, PAGE_SIZE);
		return false;
	}
	/* The read failed. Never zeros: tell the VMM and leave the thread
	 * asleep; the sweep wakes it and the read is tried again. The message
	 * and the report wait until the handler releases its locks (log.h). */
	atomic_fetch_add(&e->c.swap_read_errors, 1);
	log_err(&e->log, "reading swapped page 0x%" PRIx64 ": %s; the faulting thread waits",
		r->guest_phys + (page << PAGE_SHIFT), ovc_strerror(err));
	log_io_error(&e->log, e->sw.io_error_fn, e->sw.io_error_userdata, r->guest_phys + (page << PAGE_SHIFT),
		     err);
	return false;
}

int swap_region_bring_back(ovc_engine *e, struct region *r)
{
	int ret = 0;

	if (!swap_enabled(e))
		return 0;
	for (uint64_t p = 0; p < r->npages;) {
		if (pst_state(atomic_load(&r->pst[p])) != PST_SWAPPED) {
			p++;
			continue;
		}
		unsigned n = 0;
		pst_word old;
		int err = 0;
		for (unsigned tries = 0; tries < 1000; tries++) {
			/* As the handler: an unread event must not be read
			 * here, inside r->lock and in_lock (in NO_THREADS mode
			 * that would run the handler on this thread, which
			 * takes both). It is read below, outside them. */
			lock_mutex(&r->lock);
			uffd_handler_enter();
			err = swapin_run(e, r, p, SWAPIN_RA_PAGES, &n, &old);
			uffd_handler_leave();
			unlock_mutex(&r->lock);
			if (err != -EAGAIN)
				break;
			uffd_await_event(e, 1000);
		}
		if (err < 0) {
			atomic_fetch_add(&e->c.swap_read_errors, 1);
			log_err(&e->log, "bringing back swapped page 0x%" PRIx64 ": %s",
				r->guest_phys + (p << PAGE_SHIFT), ovc_strerror(err));
			log_io_error(&e->log, e->sw.io_error_fn, e->sw.io_error_userdata,
				     r->guest_phys + (p << PAGE_SHIFT), err);
			ret = -EIO;
			p++;
			continue;
		}
		p += n ? n : 1;
	}
	return ret;
}

void swap_discard(ovc_engine *e, struct region *r, uint64_t first, uint64_t end)
{
	if (!swap_enabled(e))
		return;
	lock_mutex(&e->sw.in_lock);
	ra_forget(e->sw.ra, r, first, end - first, NULL);
	unlock_mutex(&e->sw.in_lock);
	for (uint64_t p = first; p < end && p < r->npages; p++) {
		cache_drop(e, r, p, false); /* the cached content is gone */
		/* DISCARD_PENDING and DISCARDED are marked already (fault.c,
		 * discard_mark): a page moved out from now on, or being
		 * swapped out, holds pre-discard data or a hole. */
		pst_word w = atomic_load(&r->pst[p]);
		/* Our own drop's event (swapout-wp.c): the first event on a
		 * page with OWN_DROP only takes the bit (discard_mark left
		 * such a page alone). */
		while ((w & PST_OWN_DROP) && !atomic_compare_exchange_weak(&r->pst[p], &w, w & ~PST_OWN_DROP))
			;
		if (w & PST_OWN_DROP)
			continue;
		while (pst_state(w) == PST_SWAPPED) {
			if (atomic_compare_exchange_weak(&r->pst[p], &w, resident_word(w))) {
				swapdev_slot_free(e->sw.sd, pst_slot(r, p, w), 1);
				atomic_fetch_sub(&e->c.swapped_pages_now, 1);
				break;
			}
		}
	}
}

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

static int swapout_init(ovc_engine *e)
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
static void swapout_drain(ovc_engine *e)
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

/* track_cold's filter: a page swap-out can take now. */
static bool cand_resident(void *ctx, uint64_t page)
{
	struct region *r = ctx;
	return pst_state(atomic_load_explicit(&r->pst[page], memory_order_relaxed)) == PST_RESIDENT;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
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
static int swapout_batch(ovc_engine *e, struct region *r, const uint64_t *pages, unsigned n)
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

/* Pages still to reclaim for the target (<= 0: met); writes in flight
 * count as done. */
static int64_t reclaim_need(ovc_engine *e)
{
	if (atomic_load(&e->sw.zero_only))
		return 0;
	uint64_t target = atomic_load(&e->c_reclaim_target) >> PAGE_SHIFT;
	int64_t have = atomic_load(&e->c.zero_pages_now) + atomic_load(&e->c.swapped_pages_now);
	return (int64_t)target - have - e->sw.inflight_pages;
}

/* Rate limit: how many pages may go out now. Token bucket holding one
 * second's worth (at least one batch); a batch is started only once a
 * whole batch (or @want, if less) is allowed, so that a slow rate makes
 * fewer batches, not tiny ones. */
static unsigned rate_pages(struct engine_swap *sw, unsigned want)
{
	if (!sw->rate_bytes_per_sec)
		return want;
	uint64_t now = sw->clock_nsec();
	uint64_t cap = MAX(sw->rate_bytes_per_sec, (uint64_t)BATCH_PAGES * PAGE_SIZE);
	if (!sw->rate_t0_nsec)
		sw->rate_bytes = cap;
	else
		sw->rate_bytes = MIN(cap, sw->rate_bytes + (uint64_t)((double)(now - sw->rate_t0_nsec) *
								     (double)sw->rate_bytes_per_sec / 1e9));
	sw->rate_t0_nsec = now;
	uint64_t allowed = sw->rate_bytes >> PAGE_SHIFT;
	return allowed >= want ? want : 0;
}

/* The swap file was full: room again once slots were freed, or by giving
 * back cached slots (their pages stay; they are written when evicted). */
static void check_full(ovc_engine *e, int64_t need)
{
	struct engine_swap *sw = &e->sw;
	if (sw->full && (swapdev_slots_free(sw->sd) > 0 ||
			 cache_shrink(e, (uint64_t)MAX(need, (int64_t)BATCH_PAGES)) > 0))
		sw->full = false;
}

/* Swap out the listed candidates sw->cand[0, k) of @r, oldest first, in
 * batches; *need follows. Returns -1 when the tick must end (rate limit,
 * staging broken), else 0. */
static int swapout_list(ovc_engine *e, struct region *r, size_t k, int64_t *need, int *first_err)
{
	struct engine_swap *sw = &e->sw;

	for (size_t j = 0; j < k && *need > 0 && !sw->full;) {
		unsigned m = (unsigned)MIN((size_t)BATCH_PAGES, MIN(k - j, (size_t)*need));
		if (!rate_pages(sw, m))
			return -1;
		qsort(sw->cand + j, m, sizeof(uint64_t), cmp_u64);
		int br;
		if (e->sync_wp) {
			/* No swap cache on this path: a cached page is
			 * written again (its old slot freed first). */
			for (unsigned c = 0; c < m; c++)
				cache_drop(e, r, sw->cand[j + c], false);
			br = swapout_wp_batch(e, r, sw->cand + j, m);
			if (br > 0)
				sw->out_pages += br;
		} else {
			br = swapout_batch(e, r, sw->cand + j, m);
		}
		if (br > 0 && sw->rate_bytes_per_sec)
			sw->rate_bytes -= MIN(sw->rate_bytes, (uint64_t)br << PAGE_SHIFT);
		else if (br < 0 && !*first_err && br != -EAGAIN && br != -EBUSY)
			*first_err = br;
		uffd_drain_if_reader(e);
		/* ovc_engine_free() waits for this tick: end it after the
		 * batch rather than swap out the rest of the target only to
		 * read it all back. */
		if (e->stage.broken || atomic_load(&e->worker.stop))
			return -1;
		j += m;
		*need = reclaim_need(e);
		check_full(e, *need);
	}
	return 0;
}

/* Swap out cold pages of @r (age >= @min_age), oldest first, while *need
 * wants more. Only RESIDENT pages are listed: in a bounded list, pages in
 * other states (swapped since the last scan, or ZERO pages that are present
 * and age like any page in sync mode) would crowd the usable ones out until
 * the next scan, or for good (tests/engine/test-fault.c found that). A full list
 * may leave cold pages behind: list again while that makes progress.
 * Returns -1 when the tick must end, else 0. */
static int swapout_region(ovc_engine *e, struct region *r, uint8_t min_age, int64_t *need, int *first_err)
{
	struct engine_swap *sw = &e->sw;
	for (;;) {
		size_t want = (size_t)MIN((uint64_t)*need * 2, sw->cand_cap);
		size_t k = track_cold(r->track, min_age, sw->cand, want, cand_resident, r);
		int64_t before = *need;
		if (swapout_list(e, r, k, need, first_err) < 0)
			return -1;
		if (k < want || *need >= before || *need <= 0 || sw->full)
			return 0;
	}
}

/* The age floor of a tick: the highest age whose pages and older ones, in
 * all regions, make @need; @cold if there are too few or one region. So
 * that a tick takes the engine's oldest pages first, not the first
 * region's. One counting pass over each region's ages. */
static uint8_t age_floor(ovc_engine *e, uint8_t cold, int64_t need)
{
	size_t counts[TRACK_AGE_MAX + 1] = { 0 }, sum = 0;

	if (e->nregions < 2 || need <= 0 || cold > TRACK_AGE_MAX)
		return cold;
	for (size_t i = 0; i < e->nregions; i++)
		if (e->regions[i]->track)
			track_cold_counts(e->regions[i]->track, cold, counts, cand_resident, e->regions[i]);
	for (unsigned a = TRACK_AGE_MAX; a > cold; a--) {
		sum += counts[a];
		if (sum >= (uint64_t)need)
			return (uint8_t)a;
	}
	return cold;
}

int64_t swap_tick(ovc_engine *e, bool force)
{
	struct engine_swap *sw = &e->sw;
	int first_err = 0;

	if (!swap_enabled(e))
		return 0;
	uint64_t now = now_nsec(CLOCK_MONOTONIC);
	bool due = force || now - sw->last_tick_nsec >= sw->interval_usec * NSEC_PER_USEC;
	int64_t need = reclaim_need(e);
	if (!due && need <= 0)
		return 0;
	lock_read(&e->regions_lock);
	if (due) {
		sw->last_tick_nsec = now;
		atomic_fetch_add(&sw->epoch, 1);
		for (size_t i = 0; i < e->nregions; i++) {
			struct region *r = e->regions[i];
			if (r->track) {
				int tr = track_scan(r->track);
				if (tr < 0)
					log_debug(&e->log, "tracking scan: %s", ovc_strerror(tr));
				cache_sweep(e, r, tr >= 0);
			}
		}
	}
	check_full(e, need);
	sw->out_pages = 0;
	sw->werr = 0;
	/* Oldest first across the regions: first the pages at or above the
	 * age floor, then, if the target still wants more, every cold page. */
	uint8_t cold = (uint8_t)MIN(sw->cold_age, 255u);
	for (uint8_t floor = age_floor(e, cold, need);; floor = cold) {
		for (size_t i = 0; i < e->nregions && need > 0 && !sw->full; i++)
			if (e->regions[i]->track && swapout_region(e, e->regions[i], floor, &need, &first_err) < 0)
				goto out;
		if (floor == cold || need <= 0 || sw->full)
			break;
	}
out:
	swapout_drain(e);
	unlock_rw(&e->regions_lock);
	/* Freed slots leave the file now, with no write of ours in flight
	 * (swapdev.h, "Scrubbing"). */
	swapdev_scrub(sw->sd);
	if (sw->werr)
		log_warning(&e->log, "swap write failed: %s; pages stay in memory", ovc_strerror(sw->werr));
	return sw->out_pages ? sw->out_pages : (first_err ? first_err : sw->werr);
}
