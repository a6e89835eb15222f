/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Swapping inside the engine: cold pages out to the swap file through
 * io_uring, faulted back through userfaultfd. This file is the lifecycle
 * (swap_init, swap_fini, regions gained and lost) and the tick that picks
 * cold pages and hands them to a swap-out path; the rest is in
 *   swapcache.c  slots kept by swapped-in pages (the swap cache),
 *   swapin.c     fault-time swap-in, readahead, bring-back, discard,
 *   swapout.c    the move-out-first swap-out pipeline,
 *   swapout-wp.c the write-protect swap-out path,
 *   swapout-runs.c the slot-run writer both paths share,
 *   swapfile.c   the swap file, slots and fill thread; ring.c its io_uring
 *                rings (both behind swapdev.h).
 *
 * Threads and locks (each of the files above says its own):
 *   - swap_init() and swap_fini(): ovc_engine_new's and ovc_engine_free's
 *     thread, no other thread running.
 *   - swap_region_add() and swap_region_del(): ovc_region_add/remove,
 *     regions_lock held for writing (or the region not yet published).
 *   - swap_tick(): the pass thread (worker, the VMM loop in NO_THREADS
 *     mode, a test), engine->pass_lock held; it takes regions_lock for
 *     reading and hands batches to swapout.c or swapout-wp.c. The pass
 *     thread owns the candidate list, the rate window and sw->full.
 *   Page words change by compare-and-swap only (region.h).
 *
 * Two swap-out paths. With WP_ASYNC tracking on the engine's one uffd,
 * UFFDIO_WRITEPROTECT no longer stops writers (docs/swap.md), so the
 * write-protect-first path would lose writes: such an engine moves pages
 * out first (swapout.c, swapout_batch), refuses shared memory, and every
 * region takes share.c's MOVE path too. In the sync write-protect mode
 * (OVC_ENGINE_SYNC_WP, chosen where MOVE or WP_ASYNC is missing: engine.c,
 * choose_swap_mode) writes are tracked by write-protect faults and
 * swap-out is swapout-wp.c's write-protect path.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/compat.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/uffd.h"
#include "engine/swapcache.h"
#include "engine/swapdev.h"
#include "engine/swapin.h"
#include "engine/swapout.h"
#include "engine/swap-knobs.h"
#include "engine/track.h"

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
