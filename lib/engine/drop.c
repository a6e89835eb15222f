/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Taking pages away from the guest, the two ways share.c, swapout.c and
 * swapout-wp.c use: UFFDIO_MOVE into a staging area (it refuses a page the
 * kernel holds pinned, and what it moved is looked at again where nothing
 * writes it), and MADV_DONTNEED / MADV_REMOVE runs (only on regions the
 * VMM added with OVC_REGION_UNPINNED). Also the staging areas themselves:
 * anonymous memory registered write-protect-only on the engine's uffd (a
 * MOVE destination must be registered on the same uffd).
 *
 * Pass thread only (pass_lock held); move_to_stage() with @wait false may
 * run under region->lock. Below: uffd.c. Above: share.c, swapout.c,
 * swapout-wp.c. The no-lost-write argument of each path is at the top of
 * share.c and swapout-wp.c.
 */
#include <assert.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "engine/compat.h"
#include "engine/drop.h"
#include "engine/internal.h"
#include "engine/uffd.h"

#define STAGING_BYTES ((size_t)BATCH_PAGES * PAGE_SIZE)

/* Map fresh anonymous memory over [addr, addr+len) and register it
 * write-protect only. Frees whatever the range held. (Also the swap-out
 * staging ring's reset, swapout.c.) */
int staging_map_fresh(ovc_engine *e, void *addr, size_t len)
{
	void *p = SYS(e->sys, mmap, addr, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED)
		return negative_errno();
	/* A fork in the middle of a batch would make staged pages shared, and
	 * UFFDIO_MOVE refuses shared pages (EBUSY): the move back would fail. */
	if (SYS(e->sys, madvise, addr, len, MADV_DONTFORK) < 0)
		return negative_errno();
	struct uffdio_register reg = {
		.range = { (uint64_t)(uintptr_t)addr, len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (SYS(e->sys, ioctl, e->uffd, UFFDIO_REGISTER, &reg) < 0)
		return negative_errno();
	return 0;
}

/* Map fresh anonymous memory over staging. Frees whatever staging held. */
int staging_reset(ovc_engine *e)
{
	return staging_map_fresh(e, e->stage.area, STAGING_BYTES);
}

int staging_init(ovc_engine *e)
{
	if (!e->have_move)
		return 0;
	/* 2 MiB aligned so that a whole-THP batch moves as one PMD. */
	size_t len = STAGING_BYTES * 2;
	void *p = SYS(e->sys, mmap, NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return negative_errno();
	e->stage.map = p;
	e->stage.map_len = len;
	e->stage.area = (uint8_t *)ALIGN_UP((uintptr_t)p, STAGING_BYTES);
	return staging_reset(e);
}

void staging_fini(ovc_engine *e)
{
	if (e->stage.map)
		munmap(e->stage.map, e->stage.map_len);
	e->stage.map = e->stage.area = NULL;
}

/* --- UFFDIO_MOVE out ----------------------------------------------------- */

/* After a MOVE of guest pages [at, end) into @stage (slot at - p on) that
 * failed: the pages it moved without counting them, found where they are
 * (uffd.c, uffd_slots_filled). The staging slots were empty before the
 * call, so a slot that holds a page now holds this call's: moved, whatever
 * the guest slot shows (see there). Marks them in moved[] and counts them;
 * returns how many pages past @at the call got (through the last one
 * found; 0: none). Pages before that which it left are holes it passed
 * over or pages it did not take: not moved, they stay as they are. */
static uint32_t moved_unreported(ovc_engine *e, uint32_t p, uint32_t at, uint32_t end, const uint8_t *stage,
				 uint8_t *moved)
{
	uint8_t filled[BATCH_PAGES];
	uint32_t past = 0, found = 0;

	uffd_slots_filled(e, stage + ((uint64_t)(at - p) << PAGE_SHIFT), end - at, filled);
	for (uint32_t i = 0; i < end - at; i++)
		if (filled[i]) {
			moved[at - p + i] = 1;
			past = i + 1;
			found++;
		}
	if (found)
		atomic_fetch_add(&e->c.moves_unreported, found);
	return past;
}

/* UFFDIO_MOVE guest pages [p, end) of @r to @stage (page p at stage[0];
 * its slots empty: mapped fresh since last used), marking moved[] (by page
 * from p) for what went. A page the kernel refuses with EBUSY — pinned (an
 * O_DIRECT or io_uring read into it, process_vm_writev, vhost) or shared
 * (KSM, fork) — stays in the guest, untouched and counted, and the rest
 * goes on. EAGAIN (a discard event unread) is retried once read when
 * @wait, else returned; any other error is returned (the pages from there
 * stay). A failed call may have moved more than it says: staging is
 * looked at (moved_unreported) before its error is believed. Holes
 * (discarded by the VMM since it was looked at) are passed over and read
 * as zeros in staging. DONTWAKE: the pages are in transit, their waiters
 * the caller's. */
int move_to_stage(ovc_engine *e, struct region *r, uint32_t p, uint32_t end, uint8_t *stage,
			 uint8_t *moved, bool wait)
{
	assert(end - p <= BATCH_PAGES);
	for (uint32_t at = p; at < end;) {
		struct uffdio_move m = {
			.dst = (uint64_t)(uintptr_t)(stage + ((uint64_t)(at - p) << PAGE_SHIFT)),
			.src = (uint64_t)(uintptr_t)region_addr(r, at),
			.len = (uint64_t)(end - at) << PAGE_SHIFT,
			.mode = UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES | UFFDIO_MOVE_MODE_DONTWAKE,
		};
		int ret = SYS(e->sys, ioctl, e->uffd, UFFDIO_MOVE, &m);
		int err = errno;
		uint32_t done = ret == 0 ? end - at : m.move > 0 ? (uint32_t)(m.move >> PAGE_SHIFT) : 0;
		done = MIN(done, end - at);
		memset(moved + (at - p), 1, done);
		at += done;
		if (ret == 0 || at == end)
			continue;
		uint32_t more = moved_unreported(e, p, at, end, stage, moved);
		if (more) {
			/* Go on after them; the error was about a page
			 * already moved, or one further on that a new call
			 * meets again. */
			at += more;
			continue;
		}
		if (err == EBUSY) {
			atomic_fetch_add(&e->c.pinned_pages_kept, 1);
			at++;
		} else if (err == EAGAIN && !done && wait) {
			uffd_await_event(e, 0);
		} else if (!done) {
			return -err;
		}
	}
	return 0;
}

/* --- MADV_DONTNEED / MADV_REMOVE ------------------------------------------ */

/* With swap, our own drops must not look like the VMM's discards to
 * swap_discard(): PST_OWN_DROP on every page just before the drop (see
 * swapout-wp.c). Pages of runs [from, n) were not dropped and raised no
 * event: their bit goes; if a VMM event took it already, that discard is
 * kept as DISCARDED (the pages are in transit). */
static void own_drop_mark(ovc_engine *e, struct region *r, const struct page_run *runs, uint32_t from,
			  uint32_t n, bool set)
{
	if (!swap_enabled(e))
		return;
	for (uint32_t i = from; i < n; i++)
		for (uint32_t p = runs[i].start; p < runs[i].start + runs[i].len; p++) {
			if (set) {
				/* Still set: the event of our last drop of this
				 * page was read but not handled yet. One bit
				 * counts one event: wait for the handler, which
				 * needs nothing from us for that. */
				while (atomic_load(&r->pst[p]) & PST_OWN_DROP)
					sched_yield();
				atomic_fetch_or(&r->pst[p], PST_OWN_DROP);
				continue;
			}
			if (!(atomic_fetch_and(&r->pst[p], ~PST_OWN_DROP) & PST_OWN_DROP))
				pst_mark_if_transit(&r->pst[p], PST_DISCARDED);
		}
}

/* Drop runs [runs, runs+n) of @r; returns the number of leading runs that
 * were dropped completely (the rest stay as they were). Runs are done
 * whole or not at all: process_madvise() stops between iovecs. */
static uint32_t drop_runs_raw(ovc_engine *e, struct region *r, const struct page_run *runs, uint32_t n)
{
	uint32_t ok = 0;

	own_drop_mark(e, r, runs, 0, n, true);

	if (r->shmem) {
		for (; ok < n; ok++)
			if (SYS(e->sys, madvise, region_addr(r, runs[ok].start),
				(size_t)runs[ok].len << PAGE_SHIFT, MADV_REMOVE) < 0)
				break;
		return ok;
	}
	while (ok < n) {
		uint32_t k = MIN(n - ok, DROP_IOV_MAX);
		ssize_t want = 0, got;
		for (uint32_t i = 0; i < k; i++) {
			e->pass.drop_iov[i].iov_base = region_addr(r, runs[ok + i].start);
			e->pass.drop_iov[i].iov_len = (size_t)runs[ok + i].len << PAGE_SHIFT;
			want += (ssize_t)e->pass.drop_iov[i].iov_len;
		}
		/* One call, one TLB flush for all k runs (Linux 6.15+ batches
		 * process_madvise flushes); a single run goes to madvise. */
		if (k == 1)
			got = SYS(e->sys, madvise, e->pass.drop_iov[0].iov_base, e->pass.drop_iov[0].iov_len,
				  MADV_DONTNEED) < 0 ? -1 : want;
		else
			got = SYS(e->sys, process_madvise, e->pidfd, e->pass.drop_iov, k, MADV_DONTNEED, 0);
		if (got == want) {
			ok += k;
			continue;
		}
		/* Partial: iovecs are done in order; count whole runs done. A
		 * run done only in part has dropped zero pages that the
		 * handler refills with the zero page on the next access. */
		for (uint32_t i = 0; got > 0 && i < k; i++) {
			if (got < (ssize_t)e->pass.drop_iov[i].iov_len)
				break;
			got -= (ssize_t)e->pass.drop_iov[i].iov_len;
			ok++;
		}
		break;
	}
	return ok;
}

/* Give staged page @i (of guest page @page) back to the guest: it must not
 * be dropped after all. A page the VMM discarded meanwhile stays a hole. */
static void move_out_undo(ovc_engine *e, struct region *r, uint64_t page, uint32_t i)
{
	if (atomic_load(&r->pst[page]) & PST_DISCARDED)
		return;
	int mr = uffd_move_back(e, (uint64_t)(uintptr_t)region_addr(r, page),
			   (uint64_t)(uintptr_t)(e->stage.area + ((uint64_t)i << PAGE_SHIFT)), PAGE_SIZE);
	if (mr < 0) {
		/* Cannot happen (the page is in transit, nobody installs
		 * there); keep staging as it is rather than lose the data. */
		log_err(&e->log, "guest page 0x%" PRIx64 " filled while in transit: %s; reclaim stopped",
			r->guest_phys + (page << PAGE_SHIFT), ovc_strerror(mr));
		e->stage.broken = true;
	}
}

int move_out_runs(ovc_engine *e, struct region *r, const struct page_run *runs, uint32_t n,
		  const uint8_t *const *want, uint8_t *kept)
{
	uint32_t total = 0, i = 0;
	int err = 0;

	for (uint32_t k = 0; k < n; k++)
		total += runs[k].len;
	assert(total <= BATCH_PAGES);
	memset(kept, 1, total);
	if (e->stage.broken)
		return -EIO;
	if (e->stage.dirty) {
		err = staging_reset(e);
		if (err < 0)
			return err;
		e->stage.dirty = false;
	}
	uint8_t moved[BATCH_PAGES];
	memset(moved, 0, total);
	for (uint32_t k = 0; k < n && !err; i += runs[k].len, k++)
		err = move_to_stage(e, r, runs[k].start, runs[k].start + runs[k].len,
				    e->stage.area + ((uint64_t)i << PAGE_SHIFT), moved + i, true);
	/* Now nothing writes the staged pages: what a pin released before the
	 * move wrote is there to see. */
	for (uint32_t k = 0, j = 0; k < n; k++)
		for (uint32_t p = runs[k].start; p < runs[k].start + runs[k].len; p++, j++) {
			if (!moved[j])
				continue;
			const uint8_t *got = e->stage.area + ((uint64_t)j << PAGE_SHIFT);
			const uint8_t *w = want ? want[j] : NULL;
			bool same = w == MOVE_OUT_ANY || (w ? memcmp(got, w, PAGE_SIZE) == 0 : scan_page_is_zero(got));
			if (same) {
				kept[j] = 0;
				continue;
			}
			atomic_fetch_add(&e->c.pinned_pages_kept, 1);
			move_out_undo(e, r, p, j);
		}
	if (e->stage.broken)
		return -EIO;
	int sr = staging_reset(e);
	if (sr < 0)
		e->stage.dirty = true;
	return err;
}

uint32_t drop_runs(ovc_engine *e, struct region *r, const struct page_run *runs, uint32_t n)
{
	if (!n)
		return 0;
	uint32_t ok = drop_runs_raw(e, r, runs, n);
	own_drop_mark(e, r, runs, ok, n, false);
	return ok;
}
