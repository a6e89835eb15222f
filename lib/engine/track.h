/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * track — cold-page tracking for one range of guest RAM (internal).
 *
 * Write tracking through userfaultfd write-protect in async mode and
 * PAGEMAP_SCAN (Linux 6.7): every interval, one scan returns the pages
 * written since the previous scan and write-protects them again, atomically,
 * without a single uffd message. Each page has an 8-bit saturating age in
 * intervals since it was last seen written; pages older than N intervals
 * are the swap candidates, oldest first. A page the engine had to fault back
 * soon after evicting it is held hot for K intervals (refault feedback), so
 * pages that are read often — writes are all this tracker sees — do not
 * ping-pong between RAM and disk.
 *
 * How this shares the engine's userfaultfd: see the top of track.c and
 * docs/swap.md. In short, one uffd with MISSING|WP registration and
 * UFFD_FEATURE_WP_ASYNC serves both; only present pages are ever
 * write-protected, so the engine's holes stay plain holes.
 *
 * Threads: track_scan(), track_cold(), track_age() and track_free() run on
 * one thread (the engine's worker). track_refault() may be called from any
 * thread (the fault handler): it only sets a bit atomically, which the next
 * track_scan() picks up.
 */
#ifndef OVC_TRACK_H
#define OVC_TRACK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "engine/sys.h"

struct track;

/* Age of a page that is not present (never touched, dropped, swapped out,
 * moved away) or maps the shared zero page: nothing to swap there. */
#define TRACK_AGE_ABSENT 255u
/* Ages saturate here. */
#define TRACK_AGE_MAX 254u

/* The caller registered the range itself (UFFDIO_REGISTER_MODE_WP, with
 * MODE_MISSING or not) on a uffd opened with UFFD_FEATURE_WP_ASYNC; the
 * tracker then opens no uffd of its own. Without it the tracker opens one
 * and registers MODE_WP alone (for a range nobody else registers). */
#define TRACK_F_REGISTERED (1u << 0)
/* Synchronous mode, for kernels without WP_ASYNC or PAGEMAP_SCAN (before
 * Linux 6.7): the caller registered the range MODE_WP on @uffd (opened
 * without WP_ASYNC) and reads that uffd: on a write-protect fault it calls
 * track_wrote() and then unprotects the page, both under @lock. Each scan
 * re-protects the range with UFFDIO_WRITEPROTECT (under @lock, in chunks)
 * and takes the bits; presence comes from /proc/self/pagemap. Needs
 * TRACK_F_REGISTERED. */
#define TRACK_F_SYNC (1u << 1)

struct track_opts {
	size_t size;               /* sizeof(struct track_opts) */
	void *start;               /* page aligned */
	uint64_t len_bytes;        /* page aligned, > 0 */
	unsigned flags;            /* TRACK_F_* */
	/* One byte per page, owned by the caller (NULL: the tracker allocates
	 * its own). Ages start at TRACK_AGE_ABSENT; the first scan sets them. */
	uint8_t *ages;
	unsigned hot_intervals;    /* refault hold; 0: 4 intervals */
	const struct sys_ops *sys; /* NULL: sys_default */
	const struct logger *log;
	int uffd;                  /* TRACK_F_SYNC: the registering uffd */
	pthread_mutex_t *lock;     /* TRACK_F_SYNC: held by the fault handler */
};

/*
 * Can this kernel track writes this way? Probes at run time on a throwaway
 * userfaultfd and a one-page PAGEMAP_SCAN. Returns 0, or -ENOSYS (no
 * UFFD_FEATURE_WP_ASYNC or no PAGEMAP_SCAN: Linux < 6.7), -EPERM (no
 * permission for userfaultfd), with a sentence saying which in @ret_reason
 * (static string; may be NULL).
 */
int track_probe(const struct sys_ops *sys, const char **ret_reason);
/* The same for TRACK_F_SYNC: needs userfaultfd with
 * UFFD_FEATURE_PAGEFAULT_FLAG_WP (Linux 5.7) and /proc/self/pagemap. */
int track_probe_sync(const struct sys_ops *sys, const char **ret_reason);

/*
 * Start tracking. Does a first scan that write-protects every present page,
 * so that the first track_scan() reports writes since now. Returns 0, or
 * -EINVAL (options), -ENOSYS (see track_probe; the log says why), -EPERM,
 * -ENOMEM, or the -errno of UFFDIO_REGISTER or PAGEMAP_SCAN (EPERM there
 * means the range is not registered WP on an async uffd).
 */
int track_new(const struct track_opts *opts, struct track **ret);
/* Stop: unregisters the range if the tracker registered it. Takes NULL. */
void track_free(struct track *t);

/*
 * One interval: pages written since the last scan get age 0 and are
 * write-protected again; other present pages age by one; pages not present
 * or mapping the zero page get TRACK_AGE_ABSENT. Refaults reported since the
 * last scan start their hold. Returns the number of pages written, or -errno
 * of PAGEMAP_SCAN (ages unchanged then).
 */
int track_scan(struct track *t);

/* A caller's say on a cold page: false leaves it out of track_cold(). */
typedef bool (*track_keep_fn)(void *ctx, uint64_t page);

/*
 * Fill @ret_pages with up to @max page indices (from the start of the range)
 * whose age is at least @min_age, oldest first, leaving out held pages and,
 * with @keep, those it refuses (so that a short list is never filled with
 * pages the caller cannot use: a bounded list must not starve). Returns how
 * many were written. @min_age 0 is taken as 1: a page written in the last
 * interval is never cold.
 */
size_t track_cold(const struct track *t, uint8_t min_age, uint64_t *ret_pages, size_t max, track_keep_fn keep,
		  void *ctx);

/* Add to counts[a] the pages of age a >= @min_age that track_cold() would
 * list (not held, and kept by @keep): how old the cold pages are, for a
 * caller that chooses among several trackers. */
void track_cold_counts(const struct track *t, uint8_t min_age, size_t counts[TRACK_AGE_MAX + 1],
		       track_keep_fn keep, void *ctx);

/* Bytes of memory the tracker holds for its range (its per-page state). */
uint64_t track_meta_bytes(const struct track *t);

/* The age of page @page (index from the start); TRACK_AGE_ABSENT past the end. */
uint8_t track_age(const struct track *t, uint64_t page);

/* Was page @page seen written by the last track_scan()? (False past the
 * end, and for writes after that scan: those show at the next one.) */
bool track_written(const struct track *t, uint64_t page);

/*
 * The engine faulted page @page back soon after evicting it: keep it out of
 * track_cold() for hot_intervals intervals from the next scan. Any thread.
 */
void track_refault(struct track *t, uint64_t page);

/* TRACK_F_SYNC: page @page took a write-protect fault (a write) since the
 * last scan; the caller holds opts->lock and unprotects the page next. Any
 * thread. No-op in async mode. */
void track_wrote(struct track *t, uint64_t page);
/* A write to @page was reported since the last scan (sync mode; false in
 * async mode): the page is hot whatever its age says. Any thread. */
bool track_wrote_since_scan(const struct track *t, uint64_t page);

uint64_t track_nr_pages(const struct track *t);

#endif
