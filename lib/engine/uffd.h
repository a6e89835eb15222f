/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * userfaultfd primitives below every file of the engine (uffd.c). Any
 * thread; they take no lock. Each resolving call retries until it succeeds
 * or the error is one it may return.
 */
#ifndef OVC_ENGINE_UFFD_H
#define OVC_ENGINE_UFFD_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/internal.h"

/* Retry a resolving uffd ioctl (ZEROPAGE, MOVE back, WRITEPROTECT off,
 * COPY, WAKE) until it succeeds: a resolving op that gives up leaves a
 * faulting thread asleep for ever. EAGAIN means a REMOVE event is unread:
 * uffd_await_event(), then retry; on the handler (or between
 * uffd_handler_enter/leave) -EAGAIN is returned instead. Returns the
 * ioctl's final result (0 or -errno, -EEXIST passes through). */
int uffd_resolve(ovc_engine *e, unsigned long req, void *arg);
/* Resolve as the handler does while holding locks the handler takes: a
 * uffd_resolve() between these returns -EAGAIN on an unread event instead
 * of reading the uffd (which would run the handler on this thread, inside
 * our locks). Calls nest; same thread. */
void uffd_handler_enter(void);
void uffd_handler_leave(void);
/* UFFDIO_WAKE a page range, retried. */
void uffd_wake(ovc_engine *e, uint64_t start, uint64_t len);
/* UFFDIO_ZEROPAGE over [start, start+len), past pages someone populated
 * (left as they are, woken). Never gives up. */
void uffd_zeropage_range(ovc_engine *e, uint64_t start, uint64_t len);
/* UFFDIO_MOVE staging -> guest (or UFFDIO_COPY) until done. 0, or -EEXIST
 * when the guest page is populated and the staged page still there (a
 * bug: staging keeps the data). */
int uffd_move_back(ovc_engine *e, uint64_t dst, uint64_t src, uint64_t len);
/* After a failed UFFDIO_MOVE, which of the @n pages from @addr (at most
 * BATCH_PAGES) hold a page, present or swapped: filled[i] 1 or 0. The
 * kernel may move pages and still fail without counting them; a staging
 * slot is the truth (uffd.c). Reads /proc/self/pagemap (engines with
 * MOVE); when it cannot be read, says "filled" rather than guess empty
 * (logged). The pass thread, any lock held. */
void uffd_slots_filled(ovc_engine *e, const void *addr, uint32_t n, uint8_t *filled);
/* UFFDIO_WRITEPROTECT on (may fail: -errno) or off (resolving, retried). */
int uffd_writeprotect(ovc_engine *e, uint64_t start, uint64_t len, bool on);

/* An unread UFFD_EVENT_REMOVE blocks the caller's ioctl (EAGAIN): in
 * NO_THREADS mode this thread is the reader and reads it
 * (e->drain_events); otherwise the handler thread does, and the caller
 * yields (@nap_usec 0) or sleeps that long. Never on the handler. */
void uffd_await_event(ovc_engine *e, unsigned nap_usec);
/* NO_THREADS: read what is pending now (a pass does it between batches,
 * being the reader); with threads, nothing. */
void uffd_drain_if_reader(ovc_engine *e);

/* Ordering of REMOVE events against installs (the handler's reads): a
 * reader calls uffd_read_begin() before each read of the uffd and
 * uffd_events_done() with its number once that read's events are handled.
 * uffd_events_settle() waits until every read begun so far is handled: a
 * discard read before now is marked on its pages then (fault.c,
 * discard_mark). A pass calls it between installing pages and ending
 * their transit. Returns at once on the thread that reads (NO_THREADS):
 * it is not inside a read when it gets here. */
uint64_t uffd_read_begin(ovc_engine *e);
void uffd_events_done(ovc_engine *e, uint64_t seq);
void uffd_events_settle(ovc_engine *e);

/* The span a write-protect batch holds (share.c, hold_batch/unhold):
 * pages [start, end) of @r are write-protected by the batch in progress,
 * which lifts the protection of all of them at its end; the handler leaves
 * write faults there asleep until then (fault.c, fault_unprotect). The
 * pass thread sets the span before the protection and clears it after the
 * protection is lifted; the handler asks. */
void uffd_hold_set(ovc_engine *e, struct region *r, uint64_t start, uint64_t end);
void uffd_hold_clear(ovc_engine *e);
bool uffd_hold_covers(ovc_engine *e, const struct region *r, uint64_t page);

#endif
