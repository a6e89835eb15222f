/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine object, shared by every file of lib/engine: engine.c (API),
 * pass.c (pass thread), fault.c (handler), uffd.c, drop.c, share.c, swap.c,
 * swapcache.c, swapin.c, swapout.c, swapout-wp.c, endpoint.c. Each part of struct ovc_engine below says
 * which file and thread owns it.
 *
 * Threads of one engine:
 *   - fault handler (own thread, or the VMM's loop thread inside
 *     ovc_engine_process()): reads the userfaultfd, answers faults, reads
 *     UFFD_EVENT_REMOVE. Never touches guest memory through the guest
 *     mapping and never calls madvise on registered memory.
 *   - pass thread: the worker, or a caller of ovc_engine_scan_sync(), or in
 *     NO_THREADS mode the VMM's loop thread. One at a time (pass_lock).
 *   - swapdev's fill thread (swapfile.c), with threads and swap.
 *   - API callers.
 *
 * Locks of one engine, outermost first. Take them only in this order and
 * never hold two regions' locks at once. Take and release every one of
 * them through lock.h's wrappers: no callback of the VMM (log_fn,
 * io_error_fn) runs while any of them is held; what is logged meanwhile is
 * delivered by the last unlock (common/log.h).
 *
 *  1. pass_lock (e->pass.lock, mutex): one pass at a time. The pass thread
 *     (worker, ovc_engine_process, ovc_engine_scan_sync, the tests'
 *     engine_test_swap_tick) holds it across a batch or a swap tick
 *     (pass_begin/pass_end); ovc_region_add/remove and ovc_engine_free's
 *     bring-back hold it so that no batch is in flight.
 *  2. regions_lock (e->regions_lock, rwlock): the region array. Written by
 *     ovc_region_add and ovc_region_remove (under 1); read by the handler
 *     (handle_fault, handle_remove, fault_sweep), a pass (share_step,
 *     swap_tick), ovc_engine_reclaim, ovc_engine_stats, bring-back and
 *     testing.c. The NO_THREADS loop thread read-locks it recursively (a
 *     pass -> uffd_await_event -> fault_drain -> handle_fault), so it
 *     stays glibc's default kind, which prefers readers: a writer waiting
 *     in ovc_region_remove never blocks the handler that a pass waits for.
 *  3. region->lock (r->lock, mutex, one per region; it is also the
 *     tracker's lock, track_opts.lock): "read the page state, then
 *     resolve" (handler) against "mark in transit, then protect or move
 *     out" (share.c hold_batch and reclaim_move, swapout.c move_out,
 *     swapout-wp.c mark_protect); the sync tracker's protect-and-take
 *     (track.c protect_take); bring-back, per run. A resolve under it must
 *     not read the uffd: uffd_handler_enter/leave around it.
 *  4. sw.in_lock (e->sw.in_lock, mutex): the swap-in ring and the
 *     readahead windows (swapin.c; swapin_run and ra_fill: under 3;
 *     swap_discard: under 2 only).
 * Leaves, nothing taken while held:
 *  5. swapdev's sd->lock (swapfile.c): slot bitmaps, counts, the fill
 *     thread's state. Slot alloc/free and scrub take it under 1-2 (pass
 *     thread) or 2 (handler: swap_discard -> cache_drop), never under 3
 *     or 4; ovc_engine_stats and the fill thread take it alone; it is
 *     dropped around file I/O.
 *  6. wake_lock (e->worker.wake_lock, mutex): the worker's sleep
 *     (wake_cond, wake_pending); taken with no other lock held.
 * No lock of their own: the tracker (it borrows 3), the io_uring rings
 * (one submitter each: out_ring the pass thread, in_ring under 4), the
 * endpoint (its own thread), the counters (atomics), the page words
 * (compare-and-swap, region.h), struct engine_events (atomics).
 */
#ifndef OVC_ENGINE_INTERNAL_H
#define OVC_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include <ovc/engine.h>
#include <ovc/endpoint.h>

#include "common/log.h"
#include "engine/region.h"
#include "engine/scan.h"
#include "engine/sizes.h"
#include "engine/sys.h"

struct engine_counters {
	atomic_uint_fast64_t pages_scanned;
	atomic_uint_fast64_t zero_pages_found;
	atomic_uint_fast64_t zero_pages_reclaimed;
	atomic_int_fast64_t zero_pages_now;
	atomic_uint_fast64_t zero_faults;
	atomic_uint_fast64_t scan_bytes_per_sec;
	atomic_uint_fast64_t scan_cpu_usec;
	atomic_uint_fast64_t reclaim_usec;
	atomic_uint_fast64_t distinct_hashes;
	atomic_uint_fast64_t duplicate_pages;
	atomic_uint_fast64_t fault_lat_hist[OVC_LAT_BUCKETS];
	atomic_uint_fast64_t swapin_lat_hist[OVC_LAT_BUCKETS];
	atomic_uint_fast64_t transit_aborts;   /* candidates that changed under us */
	atomic_uint_fast64_t pinned_pages_kept; /* not dropped: pinned, or written through a pin */
	atomic_uint_fast64_t moves_unreported;  /* moved by a UFFDIO_MOVE that reported less (uffd.c) */
	/* Swapping (swap.c). */
	atomic_int_fast64_t swapped_pages_now;
	atomic_uint_fast64_t pages_swapped_out;
	atomic_uint_fast64_t pages_swapped_in;
	atomic_uint_fast64_t refaults;
	atomic_uint_fast64_t swap_write_errors;
	atomic_uint_fast64_t swap_read_errors;
	atomic_uint_fast64_t swap_faults;
	atomic_uint_fast64_t swap_cache_hits;  /* re-evictions that needed no write */
	atomic_int_fast64_t swap_cache_pages_now; /* RESIDENT | CACHED (and ZERO | CACHED) */
};

/* Swap state of an engine (swap.c); NULL-able parts when swap is off. */
struct swapdev;
struct swapdev_ring;
struct swapout_area;
struct engine_swap {
	struct swapdev *sd;
	struct swapdev_ring *out_ring; /* pass thread, under pass_lock */
	struct swapdev_ring *in_ring;  /* under in_lock: handler, region removal */
	pthread_mutex_t in_lock;
	unsigned cold_age;             /* intervals unwritten to be cold, >= 1 */
	uint64_t interval_usec;        /* tracking interval */
	uint64_t rate_bytes_per_sec;   /* swap-out limit, 0: none */
	uint64_t last_tick_nsec;       /* pass thread */
	uint64_t rate_t0_nsec, rate_bytes; /* pass thread: rate window */
	atomic_uint epoch;             /* tracking intervals done (mod 256 in pages) */
	bool full;                     /* pass thread: the last alloc found no slot */
	atomic_bool zero_only;         /* OVC_RECLAIM_ZERO_ONLY: swap nothing */
	struct swap_ra *ra;            /* readahead (swapin.c): streams (handler), windows (in_lock) */
	atomic_bool kick;              /* ovc_engine_reclaim called: one interval now
					* (NO_AUTOSCAN: the only intervals there are) */
	ovc_io_error_fn io_error_fn;
	void *io_error_userdata;
	uint8_t *wp_buf;               /* sync WP: BATCH_PAGES copied out (pass thread) */
	uint64_t *cand;                /* pass thread: candidate pages */
	size_t cand_cap;               /* entries: see SWAP_CAND_DIV */
	/* Swap-out pipeline (swapout.c), pass thread: a ring of staging areas
	 * in one mapping, registered write-protect only like e->stage.area. */
	struct swapout_area *areas;
	uint8_t *stage, *stage_map;
	size_t stage_map_len;
	unsigned next_area;            /* the area the next batch takes */
	int64_t inflight_pages;        /* queued for writing, not ended */
	int64_t out_pages;             /* this tick: pages SWAPPED */
	int werr;                      /* this tick: a write's error */
	uint64_t (*clock_nsec)(void);  /* the rate limit's clock (tests set it) */
};

/* uffd.c's: the ordering of REMOVE events against installs, and the span
 * a write-protect batch holds. Atomics; no lock. */
struct engine_events {
	/* uffd_read_begin, uffd_events_done, uffd_events_settle: read_seq
	 * counts uffd reads, bumped before each read (by the reader: handler
	 * thread or NO_THREADS loop); events_done rises to a read's number
	 * once the events of that read are handled. Below read_seq: a read is
	 * in flight, and a discard it returned may not be marked on its pages
	 * yet. */
	atomic_uint_fast64_t read_seq;
	atomic_uint_fast64_t events_done;
	/* uffd_hold_set/clear (pass thread), uffd_hold_covers (handler). */
	_Atomic(struct region *) hold_region;
	atomic_uint_fast64_t hold_start, hold_end;
};

/* The fault handler's (fault.c): its thread, or the loop thread in
 * NO_THREADS mode. */
struct engine_handler {
	pthread_t thread;             /* ovc_engine_new / ovc_engine_free */
	bool started;
	atomic_bool stop;             /* set by ovc_engine_free, last */
	atomic_int tid;               /* the handler thread's tid (0: none) */
	bool saw_remove;              /* this drain read a REMOVE event */
	bool saw_swapin;              /* this drain served a swap fault */
	uint64_t last_sweep_nsec;     /* NO_THREADS: last fault_sweep() */
};

/* The pass thread's (pass.c, share.c, drop.c, swap.c): one at a time,
 * under lock (pass_lock). */
struct engine_pass {
	pthread_mutex_t lock;         /* pass_lock: see the lock order above */
	atomic_int tid;               /* tid running a pass now, 0: none */
	/* Scratch of one batch. */
	struct run_list cand;
	struct page_run cand_store[BATCH_PAGES];
	struct iovec drop_iov[DROP_IOV_MAX];
	unsigned char mincore_vec[BATCH_PAGES];
	uint8_t *scan_buf;            /* NO_THREADS: copy of a batch via mem_fd */
	uint64_t bg_cursor;           /* background pass position */
	uint64_t bg_t0_nsec, bg_scanned0; /* the background pass's start */
};

/* Staging for UFFDIO_MOVE (drop.c): BATCH_PAGES, 2 MiB aligned, registered
 * write-protect-only on uffd (a MOVE destination must be registered on the
 * same uffd; WP-only so that reading a hole in it is an ordinary zero-page
 * fault, never a userfault). Pass thread only. */
struct engine_stage {
	uint8_t *area;
	uint8_t *map;                 /* the mapping, with alignment slack */
	size_t map_len;
	bool dirty;                   /* a reset failed: reset before next use */
	bool broken;                  /* holds data that could not go back (share.c, swap.c read it) */
};

/* The worker thread (pass.c): it sleeps on wake_cond until pass_wake() or
 * its next batch is due. */
struct engine_worker {
	pthread_t thread;
	bool started;
	atomic_bool stop;             /* set by ovc_engine_free, first */
	pthread_mutex_t wake_lock;    /* wake_cond, wake_pending; a leaf */
	pthread_cond_t wake_cond;
	bool wake_pending;
};

struct ovc_engine {
	/* Set by ovc_engine_new before any thread starts, read-only after. */
	const struct sys_ops *sys;
	struct logger log;
	unsigned flags;
	uint64_t scan_interval_usec;
	uint32_t scan_cpu_permille;
	int uffd;
	uint64_t features;          /* enabled on uffd */
	bool have_move;             /* MOVE enabled and not OVC_ENGINE_NO_MOVE */
	bool sync_wp;               /* swap with sync WP tracking (OVC_ENGINE_SYNC_WP) */
	int mem_fd;                 /* /proc/self/mem: reads that never fault */
	int pagemap_fd;             /* /proc/self/pagemap (MOVE engines): where a
				     * UFFDIO_MOVE that failed left each page (uffd.c) */
	int event_fd;               /* stop (threads) / reclaim request (NO_THREADS) */
	int poll_fd;                /* NO_THREADS: epoll over uffd + event_fd */
	int timer_fd;               /* NO_THREADS: next scan batch due (pass.c arms it) */
	int pidfd;                  /* this process, for process_madvise() */
	/* The handler's read of the uffd (fault_drain): uffd.c reaches the
	 * handler only through it. */
	int (*drain_events)(ovc_engine *e);

	/* The owner's thread (the one that calls ovc_engine_publish/free). */
	struct endpoint *endpoint; /* ovc_engine_publish (endpoint.c) */
	/* Called first by ovc_engine_free(): set by ovc_engine_publish() (it
	 * stops the endpoint), so that engine.c never names endpoint.c.
	 * NULL: nothing to stop. */
	void (*on_free)(ovc_engine *e);

	/* The regions, under regions_lock (see the lock order above). */
	pthread_rwlock_t regions_lock;
	struct region **regions; /* sorted by host address */
	size_t nregions;

	/* ovc_engine_free() stops the two threads in turn: the worker first
	 * (worker.stop; a swap tick under way ends after its batch), then,
	 * once the worker is gone and the swapped pages are back, the
	 * handler (handler.stop). The handler must outlive every pass: a
	 * pass's own drops on the write-protect paths wait in madvise until
	 * the handler has read their UFFD_EVENT_REMOVE. */
	struct engine_events ev;
	struct engine_handler handler;
	struct engine_pass pass;
	struct engine_stage stage;
	struct engine_worker worker;

	/* Any thread: ovc_engine_reclaim writes it, the pass thread reads it. */
	atomic_uint_fast64_t c_reclaim_target;
	struct engine_counters c; /* atomics, read without locks */
	struct engine_swap sw;        /* swap.c: see struct engine_swap */
};

/* --- share.c --- */

/* Scan pages [first, first + n) of @r (n <= BATCH_PAGES) and reclaim the
 * zero ones. Pass thread, regions_lock held for reading. Returns pages
 * reclaimed or -errno (the batch is undone: every page RESIDENT or ZERO,
 * none left protected or in staging). */
int share_batch(ovc_engine *e, struct region *r, uint64_t first, uint32_t n);
/* One batch at host address *cursor (0: the start); advances it. Sets
 * *wrapped and resets the cursor when no region lies at or after it.
 * Takes regions_lock. pass_lock held. Returns pages reclaimed or -errno. */
int share_step(ovc_engine *e, uint64_t *cursor, bool *wrapped);
/* One pass over every region now, ignoring the CPU budget. pass_lock held.
 * Returns pages reclaimed, or the first error when none were. */
int64_t share_full_pass(ovc_engine *e);

/* --- fault.c --- */

/* Read and handle every pending message on the uffd. Handler thread, or
 * the loop thread in NO_THREADS mode. Returns messages handled or -errno. */
int fault_drain(ovc_engine *e);
/* Wake every thread waiting in any region (the lost-wake-up net). */
void fault_sweep(ovc_engine *e);
/* Handler thread main loop. */
void *fault_thread_main(void *arg);

/* Find the region holding host address @addr; regions_lock held. */
static inline struct region *engine_region_of(ovc_engine *e, uint64_t addr)
{
	size_t lo = 0, hi = e->nregions;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct region *r = e->regions[mid];
		if (addr < (uint64_t)(uintptr_t)r->host)
			hi = mid;
		else if (region_contains(r, addr))
			return r;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* --- swap.c (swap_fault, swap_region_bring_back, swap_discard: swapin.c) --- */

/* Open the swap file and rings from the options; 0 and nothing done when
 * the options ask for no swap. -EOPNOTSUPP when the tracking mode chosen
 * by choose_swap_mode() (engine.c) cannot run here (no MOVE in the async
 * mode, the tracker's probe failing). Called by ovc_engine_new before threads start. */
int swap_init(ovc_engine *e, const struct ovc_engine_opts *o);
/* Wait for I/O, free rings and the file. Threads stopped. */
void swap_fini(ovc_engine *e);
static inline bool swap_enabled(const ovc_engine *e)
{
	return e->sw.sd != NULL;
}
/* Region gained/lost: start/stop its tracker (regions_lock held for
 * writing, or the region not yet published). */
int swap_region_add(ovc_engine *e, struct region *r);
void swap_region_del(ovc_engine *e, struct region *r);
/* Bring every SWAPPED page of @r back into memory. pass_lock held, the
 * region still registered and listed. 0, or -EIO (some page unreadable;
 * those stay SWAPPED). */
int swap_region_bring_back(ovc_engine *e, struct region *r);
/* One tracking interval when due (or @force): scan writes, then swap out
 * cold pages until the reclaim target is met. pass_lock held. Returns pages
 * swapped out or -errno. */
int64_t swap_tick(ovc_engine *e, bool force);
/* Handler: a MISSING fault on a SWAPPED page. r->lock held. Returns true
 * when pages were read in and installed. */
bool swap_fault(ovc_engine *e, struct region *r, uint64_t page, uint64_t addr);
/* Handler: the VMM discarded pages [first, end) of @r: free their slots. */
void swap_discard(ovc_engine *e, struct region *r, uint64_t first, uint64_t end);

/* --- swapout-wp.c --- */

/* OVC_ENGINE_SYNC_WP: swap out @n pages (sorted, RESIDENT when listed) of
 * @r by the write-protect path. Pass thread, as swapout.c's batches. Returns
 * pages swapped out, or -errno when none was. */
int swapout_wp_batch(ovc_engine *e, struct region *r, const uint64_t *pages, unsigned n);

/* --- swapout-runs.c --- */

/* What a swap-out path hands the slot-run writer. */
struct swapout_writer {
	void *ctx;
	/* Entry @d's page (PAGE_SIZE bytes, unchanged until its write ends). */
	uint8_t *(*src)(void *ctx, unsigned d);
	/* A request of entries [first, first + n) is about to be queued: the
	 * cookie its done() gets. */
	void *(*req)(void *ctx, unsigned first, unsigned n);
	/* swapdev's callback: the request ended with @res (0 or -errno); also
	 * called at once when it cannot be queued. */
	void (*done)(void *cookie, int res);
	/* The ring is full: let a request end. */
	void (*wait)(ovc_engine *e);
};

/* Give entries [0, nd) freshly allocated slot runs (slot[d]) and queue
 * their writes, one writev per SWAPOUT_REQ_PAGES entries of a run; nothing
 * is submitted. Returns the entries [0, ret) that got a slot; when it is
 * less than @nd the swap file is full (sw->full set). Pass thread. */
unsigned swapout_queue_runs(ovc_engine *e, unsigned nd, uint32_t *slot, const struct swapout_writer *w);

static inline pid_t engine_gettid(void)
{
	return gettid();
}

#endif
