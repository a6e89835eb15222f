/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The userfaultfd primitives that every file of the engine shares, below
 * all of them: the resolving ioctls (retried: a resolve that gives up
 * leaves a faulting thread asleep, or data in staging), waiting out an
 * unread UFFD_EVENT_REMOVE (the one rule: the reader reads it, anyone
 * else lets the handler run), and the ordering of REMOVE events against
 * installs (read_seq, events_done).
 *
 * Also where a UFFDIO_MOVE that failed left its pages (uffd_slots_filled:
 * the kernel may have moved more than it reports).
 *
 * Calls no other file of the engine: reading the uffd is the handler's
 * (fault.c), reached only through e->drain_events, set once by
 * ovc_engine_new(). Any thread; no lock of its own. Logs only in
 * uffd_move_back() (an error that is retried for ever) and
 * uffd_slots_filled() (pagemap unreadable).
 */
#include <assert.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/compat.h"
#include "engine/internal.h"
#include "engine/uffd.h"

/* Depth of handle_fault() (or a caller acting as the handler) on this
 * thread. A resolving ioctl inside the
 * handler must not read the uffd again (it holds region->lock). */
static __thread int in_handler;

void uffd_handler_enter(void)
{
	in_handler++;
}

void uffd_handler_leave(void)
{
	in_handler--;
}

int uffd_resolve(ovc_engine *e, unsigned long req, void *arg)
{
	for (unsigned hard = 0;;) {
		if (SYS(e->sys, ioctl, e->uffd, req, arg) == 0)
			return 0;
		int err = errno;
		if (err == EEXIST)
			return -EEXIST;
		if (err == EAGAIN) {
			/* Partly done: the caller looks at the progress field
			 * and calls again for the rest. */
			if (req == UFFDIO_ZEROPAGE && ((struct uffdio_zeropage *)arg)->zeropage > 0)
				return -EAGAIN;
			if (req == UFFDIO_MOVE && ((struct uffdio_move *)arg)->move > 0)
				return -EAGAIN;
			if (req == UFFDIO_COPY && ((struct uffdio_copy *)arg)->copy > 0)
				return -EAGAIN;
			/* A REMOVE event is unread. The handler itself wakes
			 * the faulting thread instead (it faults again after
			 * the event). Anyone else waits it out, then retries. */
			if (in_handler || engine_gettid() == atomic_load(&e->handler.tid))
				return -EAGAIN;
			uffd_await_event(e, 0);
			continue;
		}
		/* ENOMEM, or an injected fault: try again a few times. A
		 * resolving op that gives up leaves a thread asleep. */
		if (++hard >= 8)
			return -err;
	}
}

void uffd_wake(ovc_engine *e, uint64_t start, uint64_t len)
{
	struct uffdio_range r = { start, len };
	for (unsigned i = 0; i < 8; i++)
		if (SYS(e->sys, ioctl, e->uffd, UFFDIO_WAKE, &r) == 0 || errno == EINVAL)
			return;
}

/* The events of read @seq are handled. Never lowers events_done: should
 * two threads ever read at once (against the rules), a late older read
 * must not leave it behind read_seq for good (uffd_events_settle would
 * wait for ever). */
void uffd_events_done(ovc_engine *e, uint64_t seq)
{
	uint64_t d = atomic_load(&e->ev.events_done);
	while (d < seq && !atomic_compare_exchange_weak(&e->ev.events_done, &d, seq))
		;
}

void uffd_events_settle(ovc_engine *e)
{
	while (atomic_load(&e->ev.events_done) < atomic_load(&e->ev.read_seq))
		sched_yield();
}

/* UFFDIO_ZEROPAGE over [start, start+len), page by page past EEXIST (a page
 * someone else populated is left as it is). Retried until done. */
void uffd_zeropage_range(ovc_engine *e, uint64_t start, uint64_t len)
{
	while (len) {
		struct uffdio_zeropage z = { .range = { start, len } };
		int r = uffd_resolve(e, UFFDIO_ZEROPAGE, &z);
		uint64_t done = z.zeropage > 0 ? (uint64_t)z.zeropage : 0;
		if (r == -EEXIST && !done) {
			/* Populated already: someone's data or a zero page. Wake
			 * in case a fault on it waits, and go on. */
			uffd_wake(e, start, PAGE_SIZE);
			done = PAGE_SIZE;
		} else if (r < 0 && !done) {
			/* uffd_resolve gave up on a hard error: leave the page
			 * a hole (it faults to the handler, which answers with
			 * the zero page) and wake its sleepers. */
			uffd_wake(e, start, PAGE_SIZE);
			done = PAGE_SIZE;
		}
		done = MIN(ALIGN_DOWN(done, PAGE_SIZE), len);
		if (!done && r == 0)
			done = len;
		start += done;
		len -= done;
	}
}

/* --- where a failed UFFDIO_MOVE left its pages -------------------------- */

/*
 * A UFFDIO_MOVE that fails may have moved pages it does not report. On
 * Linux 6.18, with other threads of the process busy, a move into empty
 * staging returns -1 with EEXIST (its move field not positive, or less
 * than what went) after it moved some or all of the pages: before the call
 * the guest pages were present and their staging slots empty, after it the
 * reverse. The move back (staging to guest) does the same. Its count is
 * then no evidence; the page tables are. A staging slot is the pass
 * thread's alone: nothing else moves a page into it or out of it, so a
 * slot that was empty before the call and holds a page after it was filled
 * by this call, and a staged page that is gone after a move back went to
 * the guest. The guest slot is no evidence either way: a hole there may be
 * the VMM's discard, and a present page there is the guest's own when the
 * call never reached it.
 */
#define PM_PRESENT (UINT64_C(1) << 63)
#define PM_SWAPPED (UINT64_C(1) << 62) /* or another swap-type entry: migration, a marker */

void uffd_slots_filled(ovc_engine *e, const void *addr, uint32_t n, uint8_t *filled)
{
	uint64_t pm[BATCH_PAGES];
	off_t off = (off_t)((uintptr_t)addr >> PAGE_SHIFT) * (off_t)sizeof(pm[0]);
	size_t len = (size_t)n * sizeof(pm[0]);

	assert(n <= BATCH_PAGES);
	/* pread of pagemap fails only by ENOMEM (or an injected fault). */
	for (unsigned tries = 0; tries < 64; tries++)
		if (SYS(e->sys, pread, e->pagemap_fd, pm, len, off) == (ssize_t)len) {
			for (uint32_t i = 0; i < n; i++)
				filled[i] = (pm[i] & (PM_PRESENT | PM_SWAPPED)) != 0;
			return;
		}
	/* mincore() sees present pages, not a page the kernel swapped out
	 * meanwhile. If even it fails, "filled" everywhere: a page is then
	 * taken to be in staging (moved out: what staging holds is checked
	 * there; moved back: staging keeps it and reclaim stops), never to
	 * be gone. */
	log_err(&e->log, "cannot read /proc/self/pagemap after a failed UFFDIO_MOVE: %s",
		ovc_strerror(negative_errno()));
	if (mincore((void *)addr, (size_t)n << PAGE_SHIFT, filled) < 0)
		memset(filled, 1, n);
	for (uint32_t i = 0; i < n; i++)
		filled[i] &= 1;
}

/* UFFDIO_MOVE staging -> guest for pages whose content must come back.
 * This is the one step where giving up would lose data (it sits in
 * staging, the guest has a hole), so it never gives up: a failed MOVE is
 * tried as UFFDIO_COPY (a copy into a new page), and both are retried until
 * one works. A MOVE that failed but took the staged page (see
 * uffd_slots_filled) did the work. Returns 0, or -EEXIST when the guest
 * page is populated while the staged page is still there (a bug: the page
 * was in transit and nobody may install it; staging keeps it). */
int uffd_move_back(ovc_engine *e, uint64_t dst, uint64_t src, uint64_t len)
{
	for (unsigned tries = 0; len;) {
		struct uffdio_move m = { .dst = dst, .src = src, .len = len,
					 .mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES };
		int r = uffd_resolve(e, UFFDIO_MOVE, &m);
		uint64_t done = m.move > 0 ? (uint64_t)m.move : 0;
		if (r < 0 && !done) {
			/* Before any fallback: UFFDIO_COPY would read the
			 * staged slot, and a read of a hole there maps the
			 * zero page into it. */
			uint8_t staged, guest;
			uffd_slots_filled(e, (const void *)(uintptr_t)src, 1, &staged);
			if (!staged) {
				/* Gone to the guest by this call, or a hole
				 * staged (nothing to give back). */
				uffd_slots_filled(e, (const void *)(uintptr_t)dst, 1, &guest);
				if (guest)
					atomic_fetch_add(&e->c.moves_unreported, 1);
				done = PAGE_SIZE;
				r = 0;
			}
		}
		if (r < 0 && !done && r != -EEXIST) {
			struct uffdio_copy c = { .dst = dst, .src = src, .len = PAGE_SIZE };
			r = uffd_resolve(e, UFFDIO_COPY, &c);
			done = r == 0 ? PAGE_SIZE : 0;
			if (!done && r != -EEXIST) {
				if (++tries % 64 == 0)
					log_err(&e->log, "cannot give a page back to the guest: %s; retrying",
						ovc_strerror(r));
				usleep(1000);
				continue;
			}
		}
		if (r == -EEXIST && !done)
			return -EEXIST;
		if (r == 0 && !done)
			done = len;
		done = MIN(ALIGN_DOWN(done, PAGE_SIZE), len);
		dst += done;
		src += done;
		len -= done;
	}
	return 0;
}

int uffd_writeprotect(ovc_engine *e, uint64_t start, uint64_t len, bool on)
{
	struct uffdio_writeprotect wp = {
		.range = { start, len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	if (on)
		return SYS(e->sys, ioctl, e->uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? negative_errno() : 0;
	return uffd_resolve(e, UFFDIO_WRITEPROTECT, &wp);
}

void uffd_await_event(ovc_engine *e, unsigned nap_usec)
{
	if (e->flags & OVC_ENGINE_NO_THREADS)
		e->drain_events(e); /* this thread is the reader */
	else if (nap_usec)
		usleep(nap_usec);   /* the handler thread reads it */
	else
		sched_yield();
}

void uffd_drain_if_reader(ovc_engine *e)
{
	if (e->flags & OVC_ENGINE_NO_THREADS)
		e->drain_events(e);
}

uint64_t uffd_read_begin(ovc_engine *e)
{
	return atomic_fetch_add(&e->ev.read_seq, 1) + 1;
}

void uffd_hold_set(ovc_engine *e, struct region *r, uint64_t start, uint64_t end)
{
	atomic_store(&e->ev.hold_start, start);
	atomic_store(&e->ev.hold_end, end);
	atomic_store(&e->ev.hold_region, r);
}

void uffd_hold_clear(ovc_engine *e)
{
	atomic_store(&e->ev.hold_region, NULL);
}

bool uffd_hold_covers(ovc_engine *e, const struct region *r, uint64_t page)
{
	return atomic_load(&e->ev.hold_region) == r && page >= atomic_load(&e->ev.hold_start) &&
	       page < atomic_load(&e->ev.hold_end);
}
