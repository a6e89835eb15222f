/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Swap-in: a fault on a SWAPPED page, readahead, bring-back of a region
 * being removed, and the VMM's discards of swapped pages.
 *
 * Threads and locks:
 *   - swap_fault() and swap_discard(): the fault handler (its thread, or
 *     the VMM's loop thread in NO_THREADS mode), regions_lock read (and
 *     r->lock for swap_fault).
 *   - swap_region_bring_back(): a VMM thread in ovc_region_remove() or
 *     ovc_engine_free(), pass_lock held, takes regions_lock read and r->lock
 *     per page run.
 *   e->sw.in_ring and the readahead windows are used under e->sw.in_lock
 *   (handler and bring-back); the readahead streams are the handler's.
 *   Page words change by compare-and-swap only (region.h).
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
#include <sys/mman.h>

#include "engine/compat.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/uffd.h"
#include "engine/swapcache.h"
#include "engine/swapdev.h"
#include "engine/swapin.h"
#include "engine/track.h"

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

int ra_init(struct engine_swap *sw)
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

void ra_fini(struct engine_swap *sw)
{
	if (sw->ra && sw->ra->mem)
		munmap(sw->ra->mem, (size_t)RA_WINDOWS * RA_WIN_PAGES * PAGE_SIZE);
	free(sw->ra);
	sw->ra = NULL;
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
