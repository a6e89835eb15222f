/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * swapdev — the engine's swap backend (internal, not exported).
 *
 * Two objects, struct swapdev in swapfile.c and struct swapdev_ring in
 * ring.c:
 *
 *  struct swapdev       one per engine: the swap file (O_TMPFILE or
 *                       created-and-unlinked, O_DIRECT, preallocated) and the
 *                       slot allocator. Thread-safe: the allocator has its
 *                       own mutex; the file is read and written through
 *                       rings, and zero-filled ahead of the allocator by
 *                       swapdev's own fill thread (when fill_ahead_bytes).
 *  struct swapdev_ring  one per thread that does I/O (the engine's worker
 *                       for swap-out, the fault handler for swap-in): an
 *                       io_uring with the file registered, a small
 *                       registered bounce buffer for synchronous reads, an
 *                       eventfd that becomes readable when completions wait.
 *                       Owned by the thread that created it: every call on a
 *                       ring comes from that thread (IORING_SETUP_SINGLE_ISSUER
 *                       enforces it where the kernel has it).
 *
 * A slot is 4096 bytes of the file; slot numbers are 32 bits so that they fit
 * the engine's 8-byte page-state entry. Runs of contiguous slots are handed
 * out together so that a batch of scattered pages is one sequential write
 * (writev) and a fault can read neighbours ahead in the same I/O.
 *
 * Asynchronous requests end in a callback, called from swapdev_process() (or
 * from swapdev_read_sync(), which reaps the ring while it waits) on the
 * ring's thread, never with a lock held. The callback gets 0, or -errno when
 * the request failed; a short read or write counts as failed (-EIO), since a
 * page is either entirely on disk or not there at all.
 *
 * Every syscall and every completion's result goes through the ops table
 * (lib/engine/sys.h), so tests inject failures anywhere.
 */
#ifndef OVC_SWAPDEV_H
#define OVC_SWAPDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/log.h"
#include "engine/sys.h"

#define SWAPDEV_SLOT_BYTES 4096u
/* Most pages one request carries (one writev / readv); a run longer than this
 * is split by the caller. 64 pages = 256 KiB, the size where this disk's
 * O_DIRECT throughput flattens out. */
#define SWAPDEV_MAX_IOV 64u
#define SWAPDEV_NO_SLOT UINT32_MAX

struct swapdev;
struct swapdev_ring;

struct swapdev_opts {
	size_t size;               /* sizeof(struct swapdev_opts) */
	const char *dir;           /* directory for the swap file (must allow O_DIRECT) */
	uint64_t size_bytes;       /* file size; rounded down to whole slots, > 0 */
	const struct sys_ops *sys; /* NULL: sys_default */
	const struct logger *log; /* may be NULL */
	/* Zero-fill the file in the background ahead of the allocator, so
	 * that swap-out writes overwrite written blocks instead of unwritten
	 * extents (see swapfile.c, "Fill"): keep this many bytes of written,
	 * free slots ready. 0: no fill. Only on file systems that have
	 * unwritten extents (ext4, xfs); elsewhere ignored. */
	uint64_t fill_ahead_bytes;
	unsigned flags;            /* SWAPDEV_F_* */
};

/* Encrypt every slot with AES-256-XTS (the slot number is the tweak) under
 * a key drawn from getrandom() at swapdev_new(), kept in one mlock'ed page
 * and wiped at swapdev_free(): what is in the file cannot be read once the
 * swapdev is gone. Writes are encrypted into a buffer of the ring's
 * (struct swapdev_ring_opts.crypt_pages), reads decrypted in place before
 * their callback or before swapdev_read_sync() returns. -EOPNOTSUPP when
 * the library was built without libcrypto (swapdev_encrypt_supported()). */
#define SWAPDEV_F_ENCRYPT (1u << 0)
/* Start no thread: no fill, and freed slots are cleared only by
 * swapdev_scrub(). */
#define SWAPDEV_F_NO_THREAD (1u << 1)

/* Never scrub freed slots (they keep their bytes until reused): only for
 * the benchmark's peer, to measure what scrubbing costs. */
#define SWAPDEV_F_NO_SCRUB (1u << 2)

/* Whether this build can encrypt (it was built with libcrypto). */
bool swapdev_encrypt_supported(void);

/* What the engine asks for: 1 GiB ready (about 0.7 s of this disk's time
 * in the background), not the whole file. */
#define SWAPDEV_FILL_AHEAD_DEFAULT (UINT64_C(1) << 30)
/* One fill write: 1 MiB, one at a time, so that a fault's 4 KiB read never
 * queues behind more than one of them. */
#define SWAPDEV_FILL_CHUNK_SLOTS 256u

/*
 * Create the swap file in @opts->dir and preallocate it; start the
 * background thread (fill where asked for and useful, scrubbing) unless
 * SWAPDEV_F_NO_THREAD (a thread that cannot be started means no fill and
 * scrubbing by swapdev_scrub() only, logged, not an error). Returns 0 and the
 * handle in @ret, or -EINVAL (bad options, slot count over 2^32-1), -ENOSPC
 * (the file system cannot hold it), -EOPNOTSUPP (the file system refuses
 * O_DIRECT or needs an alignment over 4096, or SWAPDEV_F_ENCRYPT without
 * libcrypto), the -errno of mlock() for the key (SWAPDEV_F_ENCRYPT), or
 * another -errno of open or fallocate. The file never has a name: nothing
 * is left in the file system on failure, nor after swapdev_free().
 */
int swapdev_new(const struct swapdev_opts *opts, struct swapdev **ret);
/* Stop the thread (waiting for its write or clear in flight), close the
 * file and wipe the key. Every ring must have been freed. Takes NULL. */
void swapdev_free(struct swapdev *sd);

/* The swap file's descriptor, for tests that look at what is on disk (read
 * it through /proc/self/fd/N: the file has no name). */
int swapdev_file_fd(const struct swapdev *sd);

uint32_t swapdev_slots_total(const struct swapdev *sd);
uint32_t swapdev_slots_free(struct swapdev *sd);

/*
 * Allocate a run of contiguous free slots: at most @want, at least 1 (fewer
 * than @want when free space is fragmented or short). Next-fit from where the
 * last run ended, so consecutive batches lie one after the other on disk.
 * Returns 0 with the first slot in @ret_first and the run length in @ret_n, or
 * -ENOSPC when no slot is free (the caller stops swapping; nothing else
 * changes), -EINVAL when @want is 0. Thread-safe.
 */
int swapdev_slot_alloc(struct swapdev *sd, uint32_t want, uint32_t *ret_first, uint32_t *ret_n);
/* Give back @n slots from @first. Freeing a free slot is a bug (asserted).
 * The slots are "stale" until scrubbed (below): they still hold the bytes
 * of the page that had them. Thread-safe; never blocks on I/O. */
void swapdev_slot_free(struct swapdev *sd, uint32_t first, uint32_t n);

/*
 * Scrubbing: the bytes of a freed slot leave the file, one of three ways.
 *  - swapdev_scrub() clears every stale slot now, in runs: fallocate
 *    FALLOC_FL_ZERO_RANGE, which keeps the blocks allocated (the
 *    preallocation holds: no later write fails for space) and makes them
 *    unwritten extents that read as zeros (PUNCH_HOLE where the file system
 *    has no ZERO_RANGE, zeros where it has neither). The engine calls it at
 *    the end of each swap tick, with none of its writes in flight: on ext4
 *    a fallocate takes the inode lock and waits for the O_DIRECT I/O in
 *    flight on the file, so it is kept away from the swap-out pipeline.
 *  - The background thread (not with SWAPDEV_F_NO_THREAD), once the engine
 *    has neither allocated nor read for FILL_IDLE_NSEC, takes runs of
 *    stale slots: if the fill is short of written slots it writes zeros
 *    over them (they stay written, ready for the allocator), else it
 *    clears them as above (the fill rewrites cleared slots first when it
 *    is short later).
 *  - The allocator hands a stale slot out again; its new owner overwrites it.
 * A clear or write that fails stops scrubbing (logged once): freed slots
 * then keep their bytes until they are reused. Thread-safe; blocks for the
 * fallocate calls (4 us each here).
 */
void swapdev_scrub(struct swapdev *sd);

/*
 * Content hashes per slot, for the engine's swap cache: the engine records
 * what a slot holds when it reads the slot back, and before it skips
 * rewriting a slot it checks that the page it would write still hashes the
 * same. swapdev_page_hash() is XXH3-64 with a seed drawn from getrandom()
 * per swap file (a guest cannot aim a collision at a value it does not
 * know), never 0; a slot's hash reads 0 ("unknown", matches nothing) until
 * set. 8 bytes per slot, allocated with the bitmap. Any thread; the engine
 * writes a slot's hash only from the thread that owns the slot's page.
 */
uint64_t swapdev_page_hash(const struct swapdev *sd, const void *page);
void swapdev_slot_set_hash(struct swapdev *sd, uint32_t slot, uint64_t hash);
uint64_t swapdev_slot_hash(const struct swapdev *sd, uint32_t slot);

/*
 * The fill. Slots below fill_next were written by the fill (or were handed
 * out before it got there, and written by their owner); slots from
 * fill_next on were never handed out and are still unwritten extents.
 * Slots below fill_next that were cleared (scrubbing) are unwritten again
 * until the fill rewrites them. The allocator hands out written free slots
 * below fill_next first, then cleared ones, and only then slots at
 * fill_next (and moves it): correct, but those writes pay ext4's extent
 * conversion. Slots under a background write or clear are never handed
 * out; an allocation that finds nothing else free waits for them.
 */
struct swapdev_fill_stats {
	bool active;              /* the thread fills (fill asked for, fs needs it) */
	bool failed;              /* a fill write failed: the fill stopped */
	uint32_t fill_next;       /* see above */
	uint64_t slots_filled;    /* slots zero-filled OK */
	uint64_t slots_unfilled;  /* slots handed out from fill_next on (not filled) */
	uint64_t errors;          /* fill writes that failed (short ones included) */
	uint64_t write_nsec;      /* time spent in fill writes */
	/* Scrubbing (see swapdev_scrub()). */
	uint32_t slots_stale;     /* freed, bytes still in the file, now */
	uint32_t slots_holes;     /* cleared and free, now */
	uint64_t slots_cleared;   /* scrubbed by fallocate (zero range or punch) */
	uint64_t slots_zeroed;    /* scrubbed by zeros */
	uint64_t slots_reused;    /* stale slots handed out again (overwritten) */
	uint64_t scrub_errors;    /* clears or zero writes that failed */
	uint64_t scrub_nsec;      /* time spent in clears and scrub writes */
};
void swapdev_fill_stats(struct swapdev *sd, struct swapdev_fill_stats *ret);
/* Block until the fill has nothing to do (its target is met, the file is
 * filled, it failed, or there is none) and no fill write is in flight. For
 * tests and the benchmark. */
void swapdev_fill_wait_idle(struct swapdev *sd);

/* Called on the ring's thread when a request ends; @res is 0 or -errno. */
typedef void (*swapdev_done_fn)(void *user, int res);

struct swapdev_ring_opts {
	size_t size;            /* sizeof(struct swapdev_ring_opts) */
	unsigned depth;         /* requests in flight at most; 0: 64 */
	unsigned bounce_pages;  /* registered bounce buffer for read_sync, in
				 * pages; 0: 64 (256 KiB; charged to RLIMIT_MEMLOCK) */
	unsigned flags;         /* SWAPDEV_RING_* */
	unsigned crypt_pages;   /* with SWAPDEV_F_ENCRYPT: the buffer writes are
				 * encrypted into, in pages, allocated at the
				 * first write; 0: 1024 (4 MiB). A write larger
				 * is -EINVAL, one that does not fit now -EAGAIN. */
};

/* The ring is used by more than one thread, one at a time under the caller's
 * lock (the engine's pass ring: worker, ovc_engine_scan_sync callers, the
 * VMM loop). Leaves out IORING_SETUP_SINGLE_ISSUER, which would refuse a
 * submit from any thread but the creator. */
#define SWAPDEV_RING_ANY_THREAD (1u << 0)

struct swapdev_ring_stats {
	uint64_t writes, reads;            /* requests completed OK */
	uint64_t bytes_written, bytes_read;
	uint64_t errors;                   /* requests that failed, short ones included */
	uint64_t short_io;                 /* of which short counts */
	uint64_t submits;                  /* io_uring_enter calls that submitted */
};

/*
 * Create a ring for the calling thread (which owns it from now on). @opts
 * may be NULL for the defaults. Returns 0 or -errno (-ENOMEM, or the error of
 * io_uring_queue_init, eventfd, buffer/file registration).
 */
int swapdev_ring_new(struct swapdev *sd, const struct swapdev_ring_opts *opts,
		     struct swapdev_ring **ret);
/*
 * Submit what is queued, wait for every request in flight and run its
 * callback, then tear the ring down. Takes NULL. Owner thread only.
 */
void swapdev_ring_free(struct swapdev_ring *r);

/* The eventfd to poll (POLLIN) for completions; then call swapdev_process(). */
int swapdev_fd(const struct swapdev_ring *r);

/*
 * Queue a write of @n page-sized, page-aligned buffers @iov (each iov_len a
 * multiple of 4096) to the slots starting at @slot, contiguously: one writev.
 * The iovec array is copied; the pages must stay untouched until the
 * callback. Nothing reaches the kernel before swapdev_submit() (or until the
 * submission queue is full, when queueing submits by itself).
 * Returns 0, -EINVAL (alignment, n = 0 or > SWAPDEV_MAX_IOV, beyond the
 * file), -EAGAIN (depth requests in flight: process completions, then retry).
 * The callback is called only when 0 was returned.
 */
int swapdev_queue_write(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
			swapdev_done_fn fn, void *user);
/* The same for a readv from the slots into the buffers. */
int swapdev_queue_read(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
		       swapdev_done_fn fn, void *user);
/*
 * Hand every queued request to the kernel in one io_uring_enter. Returns the
 * number submitted or -errno; on failure the requests stay queued and go with
 * the next successful submit (their callbacks run then).
 */
int swapdev_submit(struct swapdev_ring *r);
/*
 * Reap completions without blocking and run their callbacks. Returns how
 * many requests ended (>= 0). Call when swapdev_fd() is readable.
 */
int swapdev_process(struct swapdev_ring *r);
/*
 * Block until at least one request ends, the way read_sync waits: submit
 * what is queued, spin up to @spin_usec on the completion queue, then
 * sleep. Runs the callbacks and returns how many requests ended (0 when
 * none was queued or in flight), or -errno of the submit or the wait. For a
 * fault handler that reads into its own (unregistered) pages, for instance
 * to install them with UFFDIO_MOVE.
 */
int swapdev_wait(struct swapdev_ring *r, unsigned spin_usec);
/* Requests queued or in flight whose callback has not run yet. */
unsigned swapdev_inflight(const struct swapdev_ring *r);

/*
 * Synchronous read for the fault handler: read @n contiguous slots from
 * @slot (the faulting page and its neighbours, readahead in the same I/O)
 * into the ring's registered bounce buffer and wait. The wait first spins
 * for @spin_usec polling the completion queue, then sleeps: sleeping costs a
 * cross-CPU wake-up (20-40 us here) once the disk answers. Completions of
 * other requests reaped meanwhile get their callbacks.
 * Returns 0 with @ret_buf pointing at n * 4096 bytes, valid until the next
 * read_sync on this ring; -EINVAL (n = 0 or over bounce_pages, beyond the
 * file), or the request's -errno (-EIO for a short read) — never zeros for a
 * failed read.
 */
int swapdev_read_sync(struct swapdev_ring *r, uint32_t slot, unsigned n, unsigned spin_usec,
		      const void **ret_buf);

void swapdev_ring_stats(const struct swapdev_ring *r, struct swapdev_ring_stats *ret);

#endif
