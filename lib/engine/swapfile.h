/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * struct swapdev, shared by swapfile.c (the file, its slots, the fill
 * thread, the key) and ring.c (the io_uring rings, which read the file's
 * fd, size and key); the API of both is swapdev.h. Locks: sd->lock
 * protects the fields below it; those above it are written only by
 * swapdev_new() and read by anyone. Not for anyone else to include.
 */
#ifndef OVC_ENGINE_SWAPFILE_H
#define OVC_ENGINE_SWAPFILE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#ifdef OVC_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

#include "common/util.h"
#include "engine/swapdev.h"

/* How freed slots are cleared, best first (scrub_one). */
enum clear_how { CLEAR_ZERO_RANGE, CLEAR_PUNCH, CLEAR_WRITE };

struct swapdev {
	const struct sys_ops *sys;
	const struct logger *log;
	int fd;
	uint32_t nr_slots;
	uint64_t hash_seed;
	uint64_t *hash;       /* per slot, see swapdev_slot_hash(); atomic access */
	/* SWAPDEV_F_ENCRYPT: the AES-256-XTS key (two 256-bit halves) in a
	 * page of its own, mlock'ed, not in core dumps, zeros in a fork
	 * child; wiped at swapdev_free(). NULL: no encryption. Written once
	 * in swapdev_new(), read by rings when they are made. */
	uint8_t *key;
#ifdef OVC_HAVE_LIBCRYPTO
	EVP_CIPHER *xts;
#endif

	pthread_mutex_t lock; /* protects everything below */
	uint64_t *bitmap;     /* bit set = slot in use (or reserved by the thread) */
	uint64_t *stale;      /* bit set = free slot still holding a page's bytes */
	uint64_t *hole;       /* bit set = free slot below fill_next, cleared (unwritten) */
	uint32_t cursor;      /* next-fit start */
	uint32_t nr_free;     /* reserved slots (bg_busy_n) still count as free */
	uint32_t nr_stale, nr_hole;
	uint32_t scrub_cursor;
	bool scrub_failed;    /* a clear failed: scrubbing stopped */
	enum clear_how clear_how; /* how stale runs are cleared (scrub_one) */
	bool no_scrub;        /* SWAPDEV_F_NO_SCRUB */

	/* The fill (see the top of the file). With no fill, fill_next is
	 * nr_slots from the start. */
	uint32_t fill_next;
	uint32_t bg_busy_n;       /* slots reserved by background writes and clears */
	uint32_t fill_ahead;                   /* slots; 0: no fill */
	bool fill_stop;
	bool fill_thread_ok;
	uint64_t last_alloc_nsec;
	_Atomic uint64_t last_read_nsec; /* without the lock: the fault path's */
	pthread_cond_t fill_cond; /* the fill thread waits here */
	pthread_cond_t busy_cond; /* a background write or clear ended */
	pthread_t fill_thread;
	void *zeros;              /* SWAPDEV_FILL_CHUNK_SLOTS pages of zeros, read only */
	struct swapdev_fill_stats fst;
};

/* The fill waits this long after the last allocation or read: a swap-out
 * is a burst of allocations a few ms apart, swap-ins a stream of reads
 * whose latency a 1 MiB fill write in front of them would add to (random
 * swap-in p99 went from 46 to 540 us with the fill running behind the
 * faults), and the disk is the guest's then. */
#define FILL_IDLE_NSEC (20000 * NSEC_PER_USEC)

/* A read is about to go out: hold the fill off for FILL_IDLE_NSEC. */
static inline void fill_note_read(struct swapdev *sd)
{
	if (sd->fill_thread_ok)
		atomic_store_explicit(&sd->last_read_nsec, now_nsec(CLOCK_MONOTONIC), memory_order_relaxed);
}

/* Bits [first, first + n) of bitmap @bm on or off: slot bitmaps (under
 * sd->lock) and ring.c's encryption pool (the ring's thread). */
static inline void set_bits(uint64_t *bm, uint32_t first, uint32_t n, bool on)
{
	for (uint32_t s = first; s < first + n; s++) {
		if (on)
			bm[s / 64] |= UINT64_C(1) << (s % 64);
		else
			bm[s / 64] &= ~(UINT64_C(1) << (s % 64));
	}
}

#endif
