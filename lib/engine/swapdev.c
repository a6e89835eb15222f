/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The swap file, its slot allocator and per-thread io_uring rings.
 *
 * Threads and locks: struct swapdev is shared; sd->lock protects the slot
 * bitmaps (in use, stale, cleared), the cursors, the counts and the
 * background thread's state, and nothing else is written after
 * swapdev_new() (the encryption key included). The background thread
 * ("fill", swapdev's own) and swapdev_scrub() callers take the lock and
 * drop it around their I/O. A struct swapdev_ring belongs to the thread
 * that created it and has no lock: one submitter per io_uring (the kernel
 * enforces it with IORING_SETUP_SINGLE_ISSUER, which also lets it skip its
 * own locking); its cipher contexts and encryption pool are its own too.
 * Callbacks run on the ring's thread with no lock held.
 *
 * What is registered with io_uring, and why:
 *  - the file (one fd lookup less per request);
 *  - only the ring's own bounce buffer, used by swapdev_read_sync(). Pages
 *    that swap-out writes are never registered: the engine moves guest pages
 *    to a staging area with UFFDIO_MOVE and drops them after the write, and
 *    UFFDIO_MOVE fails with EBUSY on a pinned page (docs/engine.md, "Pages
 *    the kernel holds pinned"), while a
 *    registered buffer that gets MADV_DONTNEED'd keeps pinning the old
 *    physical pages behind the mapping's back. Writes therefore go out with
 *    writev from whatever the caller hands in. Swap-in reads land in the
 *    pinned bounce buffer and are installed with UFFDIO_COPY (a 4 KiB copy,
 *    ~1 us, against ~50 us of disk); a caller that wants UFFDIO_MOVE of the
 *    read page instead uses swapdev_queue_read() into unregistered memory.
 *  - If registering the bounce buffer fails (RLIMIT_MEMLOCK), reads use the
 *    plain read opcode from the same buffer: slower by a page-pinning per
 *    request, not wrong.
 *
 * Fill. fallocate leaves the file as unwritten extents. On ext4 an O_DIRECT
 * write into an unwritten extent is not an overwrite: it takes the inode
 * lock exclusively and converts the extent when it completes, and
 * io_uring's non-blocking attempt gets EAGAIN and hands the write to an
 * io-wq worker; the swap-out writes then queue behind each other. A write
 * into written blocks is an overwrite: shared lock, issued inline, in
 * parallel. So a thread of ours writes zeros over the file, 1 MiB at a time
 * with one write in flight, from slot 0 up (fill_next), until
 * fill_ahead_bytes of free written slots are ready, and again whenever the
 * allocator has eaten into them, but not while it is busy (FILL_IDLE_NSEC
 * after the last allocation): zeros written while the engine swaps out
 * take the disk from the engine. The allocator prefers slots below
 * fill_next. Invariant: no slot at or above fill_next has ever been handed
 * out, so the fill never writes over a slot that holds a page; the chunk
 * being written is marked used in the bitmap (not counted in nr_free's
 * use) so that nobody gets it meanwhile.
 *
 * Scrub (swapdev.h, "Scrubbing"). A freed slot is stale until its bytes
 * are gone: cleared by fallocate (then it is a hole below fill_next, which
 * the fill rewrites first when it is short), written over with zeros by
 * the thread when the fill is short anyway (one write instead of a clear
 * and a refill), or handed out again. The same reservation as the fill's
 * chunk keeps a run being cleared from being handed out. Clears are kept
 * off the swap-out pipeline: on ext4 a fallocate takes the inode lock and waits for
 * every O_DIRECT request in flight on the file (inode_dio_wait).
 */
#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/statfs.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#ifdef OVC_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

#include "engine/lock.h"
#include "engine/swapdev.h"
#include "common/util.h"

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
static void fill_note_read(struct swapdev *sd)
{
	if (sd->fill_thread_ok)
		atomic_store_explicit(&sd->last_read_nsec, now_nsec(CLOCK_MONOTONIC), memory_order_relaxed);
}

enum req_kind { REQ_WRITE, REQ_READ, REQ_SYNC_READ };

struct swapdev_req {
	swapdev_done_fn fn;
	void *user;
	uint32_t bytes;     /* expected result */
	uint32_t slot;      /* first slot: the tweak of encryption */
	int32_t cpool_at;   /* an encrypted write's pages in the ring's pool, or -1 */
	uint8_t kind;
	uint8_t niov;       /* entries of iov in use (reads: decrypted at the end) */
	int32_t next_free;  /* free list link, -1 = end */
	struct iovec iov[SWAPDEV_MAX_IOV];
};

struct swapdev_ring {
	struct swapdev *sd;
	const struct sys_ops *sys;
	struct io_uring ring;
	bool ring_ok;
	bool buf_registered;
	int efd;
	unsigned depth;
	struct swapdev_req *reqs; /* depth entries */
	int32_t free_head;
	unsigned nr_busy;
	void *bounce;
	size_t bounce_bytes;
	/* The synchronous read in flight, if any: its request index, or -1. A
	 * read_sync whose submit failed stays here until its completion is
	 * reaped, so that the bounce buffer is never read into twice at once. */
	int32_t sync_idx;
	int sync_res;
	bool sync_done;
	struct swapdev_ring_stats st;
	/* Encryption (the swapdev's key): one context per direction, the
	 * ring's thread only; writes are encrypted into the pool, a page
	 * bitmap with first-fit runs, mapped at the first write. */
	void *enc, *dec;          /* EVP_CIPHER_CTX */
	uint8_t *cpool;
	uint32_t cpool_pages;
	uint64_t *cpool_map;
};

/* ---------------------------------------------------------------- file -- */

/* O_TMPFILE first: nothing can outlive us. O_EXCL with it: the file can
 * never be linked into the file system (linkat, also through
 * /proc/self/fd, fails with ENOENT), so guest RAM in it cannot be given a
 * name by anyone who gets hold of the fd. File systems without O_TMPFILE
 * get a named file that is unlinked at once; O_CREAT | O_EXCL | O_NOFOLLOW,
 * so a name planted in the directory (a symlink included) is never
 * opened. */
static int open_swapfile(struct swapdev *sd, const char *dir)
{
	const int flags = O_RDWR | O_DIRECT | O_CLOEXEC;
	char path[4096];
	int fd;

	fd = SYS(sd->sys, open, dir, O_TMPFILE | O_EXCL | flags, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != ENOENT)
		return negative_errno();
	if (errno == ENOENT) {
		/* ENOENT from O_TMPFILE means the directory itself is missing
		 * on kernels that know O_TMPFILE; check before falling back. */
		struct stat st;
		if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
			return -ENOENT;
	}
	for (unsigned attempt = 0; attempt < 16; attempt++) {
		int n = snprintf(path, sizeof(path), "%s/.ovc-swap-%d-%lx-%u", dir, getpid(),
				 (unsigned long)now_nsec(CLOCK_MONOTONIC), attempt);
		if (n < 0 || (size_t)n >= sizeof(path))
			return -ENAMETOOLONG;
		fd = SYS(sd->sys, open, path, O_CREAT | O_EXCL | O_NOFOLLOW | flags, 0600);
		if (fd >= 0) {
			if (unlink(path) < 0) {
				/* A file we cannot unlink would outlive us with
				 * guest RAM in it: refuse. */
				int err = negative_errno();
				close(fd);
				return err;
			}
			return fd;
		}
		if (errno != EEXIST)
			return negative_errno();
	}
	return -EEXIST;
}

/* O_DIRECT wants offsets and buffers aligned to what the file system says;
 * we use 4096 everywhere, so anything that needs more is refused. */
static int check_dio_align(struct swapdev *sd)
{
	struct statx stx;

	if (statx(sd->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) < 0)
		return 0; /* old kernel: no way to ask; 4096 is the safe bet */
	if (!(stx.stx_mask & STATX_DIOALIGN))
		return 0;
	if (stx.stx_dio_offset_align == 0) {
		log_err(sd->log, "swap file: the file system does not support O_DIRECT");
		return -EOPNOTSUPP;
	}
	if (stx.stx_dio_offset_align > SWAPDEV_SLOT_BYTES ||
	    stx.stx_dio_mem_align > SWAPDEV_SLOT_BYTES) {
		log_err(sd->log, "swap file: O_DIRECT needs %u-byte offsets, %u-byte buffers (> 4096)",
			stx.stx_dio_offset_align, stx.stx_dio_mem_align);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* ---------------------------------------------------------------- fill -- */

static void set_bits(uint64_t *bm, uint32_t first, uint32_t n, bool on)
{
	for (uint32_t s = first; s < first + n; s++) {
		if (on)
			bm[s / 64] |= UINT64_C(1) << (s % 64);
		else
			bm[s / 64] &= ~(UINT64_C(1) << (s % 64));
	}
}

static void set_used(struct swapdev *sd, uint32_t first, uint32_t n, bool used)
{
	set_bits(sd->bitmap, first, n, used);
}

static uint32_t count_bits(const uint64_t *bm, uint32_t first, uint32_t n)
{
	uint32_t c = 0;
	for (uint32_t s = first; s < first + n; s++)
		c += (uint32_t)((bm[s / 64] >> (s % 64)) & 1);
	return c;
}

/* What find_kind() looks for. */
enum slot_kind {
	K_FILLED, /* free, written blocks (zeros or a freed page's bytes) */
	K_HOLE,   /* free, cleared: unwritten again */
	K_STALE,  /* free, still holding the bytes of the page that had it */
};

static uint64_t kind_word(const struct swapdev *sd, size_t w, enum slot_kind k)
{
	switch (k) {
	case K_FILLED:
		return ~sd->bitmap[w] & ~sd->hole[w];
	case K_HOLE:
		return ~sd->bitmap[w] & sd->hole[w];
	case K_STALE:
		return sd->stale[w];
	}
	return 0;
}

static bool is_kind(const struct swapdev *sd, uint32_t s, enum slot_kind k)
{
	return (kind_word(sd, s / 64, k) >> (s % 64)) & 1;
}

/* First slot of kind @k at or after @from, below @end; @end if none. Skips
 * words without one 64 slots at a time. */
static uint32_t find_kind(const struct swapdev *sd, uint32_t from, uint32_t end, enum slot_kind k)
{
	uint32_t s = from;

	while (s < end) {
		uint64_t w = kind_word(sd, s / 64, k) & (~UINT64_C(0) << (s % 64));
		if (w) {
			s = (s & ~63u) + (uint32_t)__builtin_ctzll(w);
			return s < end ? s : end;
		}
		s = (s & ~63u) + 64;
	}
	return end;
}

/* The length of the run of kind @k from @s, at most @max, below @end. */
static uint32_t run_of(const struct swapdev *sd, uint32_t s, uint32_t end, uint32_t max, enum slot_kind k)
{
	uint32_t n = 0;
	while (n < max && s + n < end && is_kind(sd, s + n, k))
		n++;
	return n;
}

/* Free slots that are written, hold zeros and are nobody's: below
 * fill_next, not cleared, not stale, not reserved by a background write or
 * clear. Every slot from fill_next on is free. */
static uint32_t filled_free(const struct swapdev *sd)
{
	uint32_t other = sd->bg_busy_n + (sd->nr_slots - sd->fill_next) + sd->nr_hole + sd->nr_stale;
	assert(sd->nr_free >= other);
	return sd->nr_free - other;
}

/* Fewer filled free slots than the fill keeps ready (lock held). */
static bool fill_short(const struct swapdev *sd)
{
	return sd->fill_ahead && !sd->fst.failed && filled_free(sd) < sd->fill_ahead;
}

/* Whether the fill has work (lock held), timing aside. */
static bool fill_wanted(const struct swapdev *sd)
{
	return fill_short(sd) && (sd->fill_next < sd->nr_slots || sd->nr_hole > 0);
}

static bool scrub_wanted(const struct swapdev *sd)
{
	return sd->nr_stale > 0 && !sd->scrub_failed && !sd->no_scrub;
}

/* Write zeros over @n slots from @first, 1 MiB at a time. Lock not held.
 * Returns 0 or -errno (-EIO for a short write). */
static int write_zeros(struct swapdev *sd, uint32_t first, uint32_t n)
{
	for (uint32_t off = 0; off < n;) {
		uint32_t k = MIN(n - off, SWAPDEV_FILL_CHUNK_SLOTS);
		size_t bytes = (size_t)k * SWAPDEV_SLOT_BYTES;
		ssize_t w = SYS(sd->sys, pwrite, sd->fd, sd->zeros, bytes,
				(off_t)(first + off) * SWAPDEV_SLOT_BYTES);
		if (w != (ssize_t)bytes)
			return w < 0 ? negative_errno() : -EIO;
		off += k;
	}
	return 0;
}

/* One chunk from fill_next, or a run of cleared slots (refilled first: they
 * are where the file was in use), reserved in the bitmap meanwhile; on
 * failure the fill stops and the chunk goes back to what it was (from
 * fill_next: back to the unwritten part if nothing was handed out past it,
 * else it is handed out as it is: a slow write, not a wrong one). Lock
 * held; dropped for the write. */
static void fill_chunk(struct swapdev *sd)
{
	uint32_t first, n;
	bool refill = sd->nr_hole > 0;

	if (refill) {
		first = find_kind(sd, 0, sd->fill_next, K_HOLE);
		assert(first < sd->fill_next);
		n = run_of(sd, first, sd->fill_next, SWAPDEV_FILL_CHUNK_SLOTS, K_HOLE);
		set_bits(sd->hole, first, n, false);
		sd->nr_hole -= n;
	} else {
		first = sd->fill_next;
		n = MIN(SWAPDEV_FILL_CHUNK_SLOTS, sd->nr_slots - first);
		sd->fill_next = first + n;
	}
	set_used(sd, first, n, true);
	sd->bg_busy_n += n;
	unlock_mutex(&sd->lock);
	uint64_t t0 = now_nsec(CLOCK_MONOTONIC);
	int err = write_zeros(sd, first, n);
	lock_mutex(&sd->lock);
	sd->fst.write_nsec += now_nsec(CLOCK_MONOTONIC) - t0;
	set_used(sd, first, n, false);
	sd->bg_busy_n -= n;
	if (err == 0) {
		sd->fst.slots_filled += n;
	} else {
		sd->fst.errors++;
		sd->fst.failed = true;
		if (refill) {
			set_bits(sd->hole, first, n, true);
			sd->nr_hole += n;
		} else if (sd->fill_next == first + n) {
			sd->fill_next = first;
		}
	}
	pthread_cond_broadcast(&sd->busy_cond);
	if (err) {
		/* The logger is the embedder's code: not under our lock. */
		unlock_mutex(&sd->lock);
		log_err(sd->log, "swap file: zero-filling slots %u-%u failed (%s); the rest stays "
			"unfilled (slower writes, no data at risk)", first, first + n - 1, strerror(-err));
		lock_mutex(&sd->lock);
	}
}

/* How a stale run is cleared: see scrub_one(). */
static int clear_run(struct swapdev *sd, enum clear_how *how, uint32_t first, uint32_t n)
{
	off_t off = (off_t)first * SWAPDEV_SLOT_BYTES, len = (off_t)n * SWAPDEV_SLOT_BYTES;

	for (;;) {
		int mode = *how == CLEAR_ZERO_RANGE ? FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
			 : *how == CLEAR_PUNCH	    ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
						    : -1;
		if (mode < 0)
			return write_zeros(sd, first, n);
		if (SYS(sd->sys, fallocate, sd->fd, mode, off, len) == 0)
			return 0;
		int err = negative_errno();
		if (err != -EOPNOTSUPP)
			return err;
		/* This file system cannot: the next way. */
		*how = *how == CLEAR_ZERO_RANGE ? CLEAR_PUNCH : CLEAR_WRITE;
	}
}

/*
 * Scrub one run of stale slots (at most @max). Lock held; dropped for the
 * I/O. The run is reserved in the bitmap meanwhile, so that nobody gets it.
 *
 * How: with @zero (the fill is short of written slots) zeros are written
 * over it, which leaves it written and ready. Otherwise fallocate
 * FALLOC_FL_ZERO_RANGE: the blocks stay allocated (the file keeps its
 * preallocation, so a later write cannot fail for space) and become
 * unwritten extents, which read as zeros; a hole below fill_next for the
 * allocator and the fill. PUNCH_HOLE would also give the blocks back to
 * the file system, but costs 120 us per call here against 4 us (ext4
 * mounted with discard: the journal and the discard of the freed blocks),
 * and a write into it later must allocate, which can fail with ENOSPC.
 * Where ZERO_RANGE is not supported (EOPNOTSUPP: tmpfs), PUNCH_HOLE; where
 * neither is, zeros.
 *
 * On failure the slots stay stale (they are still overwritten when handed
 * out again), the error is logged once and scrubbing stops.
 */
static void scrub_one(struct swapdev *sd, bool zero, uint32_t max)
{
	uint32_t first = find_kind(sd, sd->scrub_cursor, sd->nr_slots, K_STALE);
	if (first == sd->nr_slots)
		first = find_kind(sd, 0, sd->scrub_cursor, K_STALE);
	assert(first < sd->fill_next); /* a stale slot was handed out */
	uint32_t n = run_of(sd, first, sd->nr_slots, max, K_STALE);
	set_bits(sd->stale, first, n, false);
	sd->nr_stale -= n;
	set_used(sd, first, n, true);
	sd->bg_busy_n += n;
	sd->scrub_cursor = first + n == sd->nr_slots ? 0 : first + n;
	enum clear_how how = zero ? CLEAR_WRITE : sd->clear_how;
	unlock_mutex(&sd->lock);
	uint64_t t0 = now_nsec(CLOCK_MONOTONIC);

	int err = clear_run(sd, &how, first, n);

	lock_mutex(&sd->lock);
	if (!zero && how > sd->clear_how)
		sd->clear_how = how;
	sd->fst.scrub_nsec += now_nsec(CLOCK_MONOTONIC) - t0;
	set_used(sd, first, n, false);
	sd->bg_busy_n -= n;
	if (err) {
		set_bits(sd->stale, first, n, true);
		sd->nr_stale += n;
		sd->fst.scrub_errors++;
	} else if (how != CLEAR_WRITE) {
		set_bits(sd->hole, first, n, true);
		sd->nr_hole += n;
		sd->fst.slots_cleared += n;
	} else {
		sd->fst.slots_zeroed += n;
	}
	pthread_cond_broadcast(&sd->busy_cond);
	if (err && !sd->scrub_failed) {
		sd->scrub_failed = true;
		unlock_mutex(&sd->lock);
		log_err(sd->log, "swap file: clearing freed slots %u-%u failed (%s); freed slots "
			"keep their bytes until they are used again", first, first + n - 1, strerror(-err));
		lock_mutex(&sd->lock);
	}
}

void swapdev_scrub(struct swapdev *sd)
{
	lock_mutex(&sd->lock);
	while (scrub_wanted(sd))
		scrub_one(sd, false, UINT32_MAX);
	unlock_mutex(&sd->lock);
}

/* The background thread: scrubs freed slots, then keeps fill_ahead slots
 * filled; both only once the engine has neither allocated nor read for
 * FILL_IDLE_NSEC. */
static void *fill_main(void *arg)
{
	struct swapdev *sd = arg;

	lock_mutex(&sd->lock);
	while (!sd->fill_stop) {
		bool scrub = scrub_wanted(sd);
		if (!scrub && !fill_wanted(sd)) {
			pthread_cond_wait(&sd->fill_cond, &sd->lock);
			continue;
		}
		uint64_t until = MAX(sd->last_alloc_nsec,
				     atomic_load_explicit(&sd->last_read_nsec, memory_order_relaxed)) +
				 FILL_IDLE_NSEC;
		if (now_nsec(CLOCK_MONOTONIC) < until) {
			struct timespec ts = { .tv_sec = (time_t)(until / NSEC_PER_SEC),
					       .tv_nsec = (long)(until % NSEC_PER_SEC) };
			pthread_cond_timedwait(&sd->fill_cond, &sd->lock, &ts);
			continue;
		}
		if (scrub)
			scrub_one(sd, fill_short(sd), SWAPDEV_FILL_CHUNK_SLOTS);
		else
			fill_chunk(sd);
	}
	unlock_mutex(&sd->lock);
	return NULL;
}

/* Only where fallocate leaves unwritten extents that a first write must
 * convert. btrfs writes new extents anyway (copy on write); tmpfs and
 * others have nothing to convert: zeros would be disk time for nothing. */
static bool fs_has_unwritten_extents(struct swapdev *sd)
{
	struct statfs sf;

	if (fstatfs(sd->fd, &sf) < 0)
		return false;
	return sf.f_type == 0xEF53 /* ext2/3/4 */ || sf.f_type == 0x58465342 /* xfs */;
}

/* Start the background thread (unless SWAPDEV_F_NO_THREAD): it scrubs
 * freed slots on every file system, and fills where that helps and was
 * asked for. Failing to start it is not an error: the file works unfilled,
 * only slower, and swapdev_scrub() still clears. */
static void fill_start(struct swapdev *sd, uint64_t ahead_bytes, bool no_thread)
{
	if (no_thread)
		return;
	if (ahead_bytes && fs_has_unwritten_extents(sd)) {
		sd->fill_ahead = (uint32_t)MIN(ahead_bytes / SWAPDEV_SLOT_BYTES, (uint64_t)sd->nr_slots);
		if (sd->fill_ahead)
			sd->fill_next = 0;
	}
	int err = pthread_create(&sd->fill_thread, NULL, fill_main, sd);
	if (err == 0) {
		sd->fill_thread_ok = true;
		sd->fst.active = sd->fill_ahead > 0;
		return;
	}
	log_info(sd->log, "swap file: no background thread (%s); first writes are slower",
		 strerror(err));
	sd->fill_next = sd->nr_slots;
	sd->fill_ahead = 0;
}

static void fill_stop(struct swapdev *sd)
{
	if (!sd->fill_thread_ok)
		return;
	lock_mutex(&sd->lock);
	sd->fill_stop = true;
	pthread_cond_signal(&sd->fill_cond);
	unlock_mutex(&sd->lock);
	pthread_join(sd->fill_thread, NULL);
	sd->fill_thread_ok = false;
}

void swapdev_fill_stats(struct swapdev *sd, struct swapdev_fill_stats *ret)
{
	lock_mutex(&sd->lock);
	*ret = sd->fst;
	ret->fill_next = sd->fill_next;
	ret->slots_stale = sd->nr_stale;
	ret->slots_holes = sd->nr_hole;
	unlock_mutex(&sd->lock);
}

void swapdev_fill_wait_idle(struct swapdev *sd)
{
	lock_mutex(&sd->lock);
	while (sd->bg_busy_n > 0 ||
	       (sd->fill_thread_ok && (fill_wanted(sd) || scrub_wanted(sd))))
		pthread_cond_wait(&sd->busy_cond, &sd->lock);
	unlock_mutex(&sd->lock);
}

/* ------------------------------------------------------------- crypto -- */

/*
 * Why AES-256-XTS with the slot number as tweak: it is the standard
 * construction for data at rest in fixed-size units (IEEE 1619; dm-crypt's
 * aes-xts-plain64 with the sector number as tweak, which this mirrors per
 * 4 KiB slot). Ciphertext is the size of the plaintext, so a slot stays a
 * slot and a page is still one O_DIRECT write; the same page in two slots
 * gives unrelated ciphertext. It does not authenticate: a page changed on
 * disk by someone with write access to the file decrypts to garbage,
 * not an error — what this guards against is reading guest RAM from the
 * file or the disk, during and after the engine's life. The key is fresh
 * per swap file and never written anywhere, so a fresh file never needs
 * tweak-reuse protection beyond the slot number.
 */
#ifdef OVC_HAVE_LIBCRYPTO
bool swapdev_encrypt_supported(void)
{
	return true;
}

#define XTS_KEY_BYTES 64

static int key_new(struct swapdev *sd)
{
	void *p = mmap(NULL, SWAPDEV_SLOT_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		return negative_errno();
	sd->key = p;
	if (mlock(p, SWAPDEV_SLOT_BYTES) < 0) {
		int err = negative_errno();
		log_err(sd->log, "swap encryption: cannot lock the key in memory (%s); raise "
			"RLIMIT_MEMLOCK", strerror(-err));
		return err;
	}
	(void)madvise(p, SWAPDEV_SLOT_BYTES, MADV_DONTDUMP);
	(void)madvise(p, SWAPDEV_SLOT_BYTES, MADV_WIPEONFORK);
	/* Blocking getrandom: only before the pool is seeded at boot. XTS
	 * wants two different halves (OpenSSL refuses equal ones). */
	do {
		for (size_t got = 0; got < XTS_KEY_BYTES;) {
			ssize_t n = getrandom(sd->key + got, XTS_KEY_BYTES - got, 0);
			if (n < 0 && errno != EINTR)
				return negative_errno();
			if (n > 0)
				got += (size_t)n;
		}
	} while (memcmp(sd->key, sd->key + XTS_KEY_BYTES / 2, XTS_KEY_BYTES / 2) == 0);
	sd->xts = EVP_CIPHER_fetch(NULL, "AES-256-XTS", NULL);
	if (!sd->xts) {
		log_err(sd->log, "swap encryption: libcrypto has no AES-256-XTS");
		return -EOPNOTSUPP;
	}
	return 0;
}

static void key_free(struct swapdev *sd)
{
	EVP_CIPHER_free(sd->xts);
	sd->xts = NULL;
	if (sd->key) {
		explicit_bzero(sd->key, XTS_KEY_BYTES);
		munlock(sd->key, SWAPDEV_SLOT_BYTES);
		munmap(sd->key, SWAPDEV_SLOT_BYTES);
		sd->key = NULL;
	}
}

static int ring_crypt_init(struct swapdev_ring *r)
{
	struct swapdev *sd = r->sd;
	EVP_CIPHER_CTX *enc = EVP_CIPHER_CTX_new(), *dec = EVP_CIPHER_CTX_new();

	r->enc = enc;
	r->dec = dec;
	if (!enc || !dec)
		return -ENOMEM;
	if (EVP_CipherInit_ex2(enc, sd->xts, sd->key, NULL, 1, NULL) != 1 ||
	    EVP_CipherInit_ex2(dec, sd->xts, sd->key, NULL, 0, NULL) != 1)
		return -EIO;
	return 0;
}

static void ring_crypt_free(struct swapdev_ring *r)
{
	/* Frees and wipes the expanded keys. */
	EVP_CIPHER_CTX_free(r->enc);
	EVP_CIPHER_CTX_free(r->dec);
	r->enc = r->dec = NULL;
}

/* One slot through @ctx, @out may be @in. The tweak is the slot number,
 * 64-bit little-endian in a 16-byte block (dm-crypt's plain64). */
static int xts_slot(void *ctx, uint32_t slot, uint8_t *out, const uint8_t *in)
{
	uint8_t iv[16] = { 0 };
	int outl = 0;

	for (unsigned i = 0; i < 4; i++)
		iv[i] = (uint8_t)(slot >> (8 * i));
	if (EVP_CipherInit_ex2(ctx, NULL, NULL, iv, -1, NULL) != 1 ||
	    EVP_CipherUpdate(ctx, out, &outl, in, SWAPDEV_SLOT_BYTES) != 1 || outl != SWAPDEV_SLOT_BYTES)
		return -EIO;
	return 0;
}
#else
bool swapdev_encrypt_supported(void)
{
	return false;
}

static int key_new(struct swapdev *sd)
{
	log_err(sd->log, "swap encryption: libovc was built without libcrypto");
	return -EOPNOTSUPP;
}

static void key_free(struct swapdev *sd)
{
	(void)sd;
}

static int ring_crypt_init(struct swapdev_ring *r)
{
	(void)r;
	return -EOPNOTSUPP;
}

static void ring_crypt_free(struct swapdev_ring *r)
{
	(void)r;
}

static int xts_slot(void *ctx, uint32_t slot, uint8_t *out, const uint8_t *in)
{
	(void)ctx, (void)slot, (void)out, (void)in;
	return -EOPNOTSUPP;
}
#endif

/* Decrypt in place what a read brought into @iov (@n entries) from @slot. */
static int decrypt_iov(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		for (size_t off = 0; off < iov[i].iov_len; off += SWAPDEV_SLOT_BYTES) {
			uint8_t *p = (uint8_t *)iov[i].iov_base + off;
			if (xts_slot(r->dec, slot++, p, p) < 0)
				return -EIO;
		}
	return 0;
}

/* A run of @np free pages in the pool (mapped at the first call), or -1
 * (-ENOMEM in *err when it cannot be mapped). */
static int32_t cpool_get(struct swapdev_ring *r, uint32_t np, int *err)
{
	if (!r->cpool) {
		size_t len = (size_t)r->cpool_pages * SWAPDEV_SLOT_BYTES;
		void *p = SYS(r->sys, mmap, NULL, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			*err = negative_errno();
			return -1;
		}
		r->cpool = p;
	}
	for (uint32_t s = 0; s + np <= r->cpool_pages;) {
		uint32_t k = 0;
		while (k < np && !((r->cpool_map[(s + k) / 64] >> ((s + k) % 64)) & 1))
			k++;
		if (k == np) {
			set_bits(r->cpool_map, s, np, true);
			return (int32_t)s;
		}
		s += k + 1;
	}
	*err = -EAGAIN;
	return -1;
}

static void cpool_put(struct swapdev_ring *r, int32_t at, uint32_t np)
{
	if (at >= 0)
		set_bits(r->cpool_map, (uint32_t)at, np, false);
}

int swapdev_new(const struct swapdev_opts *opts, struct swapdev **ret)
{
	struct swapdev *sd;
	uint64_t nr_slots;
	int r;

	if (!opts || opts->size != sizeof(*opts) || !opts->dir || !ret ||
	    (opts->flags & ~(SWAPDEV_F_ENCRYPT | SWAPDEV_F_NO_THREAD | SWAPDEV_F_NO_SCRUB)))
		return -EINVAL;
	nr_slots = opts->size_bytes / SWAPDEV_SLOT_BYTES;
	if (nr_slots == 0 || nr_slots >= SWAPDEV_NO_SLOT)
		return -EINVAL;

	sd = calloc(1, sizeof(*sd));
	if (!sd)
		return -ENOMEM;
	sd->sys = opts->sys ? opts->sys : &sys_default;
	sd->log = opts->log;
	sd->nr_slots = (uint32_t)nr_slots;
	sd->nr_free = sd->nr_slots;
	sd->fill_next = sd->nr_slots;
	sd->fd = -1;
	sd->no_scrub = opts->flags & SWAPDEV_F_NO_SCRUB;
	pthread_mutex_init(&sd->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sd->fill_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&sd->busy_cond, NULL);
	sd->bitmap = calloc((nr_slots + 63) / 64, sizeof(uint64_t));
	sd->stale = calloc((nr_slots + 63) / 64, sizeof(uint64_t));
	sd->hole = calloc((nr_slots + 63) / 64, sizeof(uint64_t));
	sd->hash = calloc(nr_slots, sizeof(uint64_t));
	if (getrandom(&sd->hash_seed, sizeof(sd->hash_seed), GRND_NONBLOCK) != sizeof(sd->hash_seed))
		sd->hash_seed = now_nsec(CLOCK_MONOTONIC) ^ (uint64_t)(uintptr_t)sd;
	sd->zeros = mmap(NULL, (size_t)SWAPDEV_FILL_CHUNK_SLOTS * SWAPDEV_SLOT_BYTES, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sd->zeros == MAP_FAILED)
		sd->zeros = NULL;
	if (!sd->bitmap || !sd->stale || !sd->hole || !sd->hash || !sd->zeros) {
		r = -ENOMEM;
		goto fail;
	}

	if (opts->flags & SWAPDEV_F_ENCRYPT) {
		r = key_new(sd);
		if (r < 0)
			goto fail;
	}

	sd->fd = open_swapfile(sd, opts->dir);
	if (sd->fd < 0) {
		r = sd->fd == -EINVAL ? -EOPNOTSUPP : sd->fd; /* EINVAL: O_DIRECT refused */
		log_err(sd->log, "cannot create swap file in %s: %s", opts->dir, strerror(-r));
		goto fail;
	}
	r = check_dio_align(sd);
	if (r < 0)
		goto fail;
	/* Preallocate: a write never fails for space, and extents are laid out
	 * now rather than under the guest's memory pressure. */
	if (SYS(sd->sys, fallocate, sd->fd, 0, 0, (off_t)(nr_slots * SWAPDEV_SLOT_BYTES)) < 0) {
		r = negative_errno();
		log_err(sd->log, "cannot preallocate %llu bytes of swap in %s: %s",
			(unsigned long long)(nr_slots * SWAPDEV_SLOT_BYTES), opts->dir, strerror(-r));
		goto fail;
	}
	fill_start(sd, opts->fill_ahead_bytes, opts->flags & SWAPDEV_F_NO_THREAD);
	*ret = sd;
	return 0;
fail:
	swapdev_free(sd);
	return r;
}

void swapdev_free(struct swapdev *sd)
{
	if (!sd)
		return;
	fill_stop(sd);
	if (sd->fd >= 0)
		close(sd->fd);
	key_free(sd);
	pthread_cond_destroy(&sd->fill_cond);
	pthread_cond_destroy(&sd->busy_cond);
	pthread_mutex_destroy(&sd->lock);
	if (sd->zeros)
		munmap(sd->zeros, (size_t)SWAPDEV_FILL_CHUNK_SLOTS * SWAPDEV_SLOT_BYTES);
	free(sd->bitmap);
	free(sd->stale);
	free(sd->hole);
	free(sd->hash);
	free(sd);
}

uint64_t swapdev_page_hash(const struct swapdev *sd, const void *page)
{
	uint64_t h = XXH3_64bits_withSeed(page, SWAPDEV_SLOT_BYTES, sd->hash_seed);
	return h ? h : 1;
}

void swapdev_slot_set_hash(struct swapdev *sd, uint32_t slot, uint64_t hash)
{
	assert(slot < sd->nr_slots);
	__atomic_store_n(&sd->hash[slot], hash, __ATOMIC_RELEASE);
}

uint64_t swapdev_slot_hash(const struct swapdev *sd, uint32_t slot)
{
	assert(slot < sd->nr_slots);
	return __atomic_load_n(&sd->hash[slot], __ATOMIC_ACQUIRE);
}

int swapdev_file_fd(const struct swapdev *sd)
{
	return sd->fd;
}

uint32_t swapdev_slots_total(const struct swapdev *sd)
{
	return sd->nr_slots;
}

uint32_t swapdev_slots_free(struct swapdev *sd)
{
	lock_mutex(&sd->lock);
	uint32_t n = sd->nr_free;
	unlock_mutex(&sd->lock);
	return n;
}

/* ----------------------------------------------------------- allocator -- */

/* A free written slot below fill_next (zeros or stale), next-fit from the
 * cursor; fill_next if none (reserved slots are marked used, so they are
 * never found). */
static uint32_t find_filled(const struct swapdev *sd)
{
	uint32_t cur = MIN(sd->cursor, sd->fill_next);
	uint32_t s = find_kind(sd, cur, sd->fill_next, K_FILLED);

	if (s < sd->fill_next)
		return s;
	s = find_kind(sd, 0, cur, K_FILLED);
	return s < cur ? s : sd->fill_next;
}

int swapdev_slot_alloc(struct swapdev *sd, uint32_t want, uint32_t *ret_first, uint32_t *ret_n)
{
	uint32_t s, n;

	if (want == 0)
		return -EINVAL;
	lock_mutex(&sd->lock);
	/* Only slots the thread has reserved are free: a millisecond away. */
	while (sd->nr_free > 0 && sd->nr_free == sd->bg_busy_n)
		pthread_cond_wait(&sd->busy_cond, &sd->lock);
	if (sd->nr_free == 0) {
		unlock_mutex(&sd->lock);
		return -ENOSPC;
	}
	s = find_filled(sd);
	if (s < sd->fill_next) {
		/* A run stays in the written part. */
		n = run_of(sd, s, sd->fill_next, want, K_FILLED);
	} else if ((s = find_kind(sd, 0, sd->fill_next, K_HOLE)) < sd->fill_next) {
		/* Nothing written is free: cleared slots first (they pay the
		 * conversion like unwritten ones, and keep the file compact). */
		n = run_of(sd, s, sd->fill_next, want, K_HOLE);
		set_bits(sd->hole, s, n, false);
		sd->nr_hole -= n;
		sd->fst.slots_unfilled += n;
	} else {
		/* Then unwritten slots, which the fill then skips. */
		s = sd->fill_next;
		assert(s < sd->nr_slots); /* nr_free > bg_busy_n */
		n = run_of(sd, s, sd->nr_slots, want, K_FILLED);
		sd->fill_next = s + n;
		sd->fst.slots_unfilled += n;
	}
	assert(n >= 1);
	/* Stale slots handed out are overwritten by their new owner. */
	uint32_t ns = sd->nr_stale ? count_bits(sd->stale, s, n) : 0;
	if (ns) {
		set_bits(sd->stale, s, n, false);
		sd->nr_stale -= ns;
		sd->fst.slots_reused += ns;
	}
	set_used(sd, s, n, true);
	sd->nr_free -= n;
	sd->cursor = s + n == sd->nr_slots ? 0 : s + n;
	if (sd->fill_thread_ok) {
		sd->last_alloc_nsec = now_nsec(CLOCK_MONOTONIC);
		pthread_cond_signal(&sd->fill_cond);
	}
	unlock_mutex(&sd->lock);
	*ret_first = s;
	*ret_n = n;
	return 0;
}

void swapdev_slot_free(struct swapdev *sd, uint32_t first, uint32_t n)
{
	assert((uint64_t)first + n <= sd->nr_slots);
	lock_mutex(&sd->lock);
	for (uint32_t s = first; s < first + n; s++)
		assert((sd->bitmap[s / 64] >> (s % 64)) & 1);
	set_used(sd, first, n, false);
	/* Its bytes stay in the file until the thread or swapdev_scrub()
	 * clears them, or the slot is handed out and overwritten. */
	set_bits(sd->stale, first, n, true);
	sd->nr_stale += n;
	sd->nr_free += n;
	if (sd->fill_thread_ok)
		pthread_cond_signal(&sd->fill_cond);
	unlock_mutex(&sd->lock);
}

/* ---------------------------------------------------------------- ring -- */

int swapdev_ring_new(struct swapdev *sd, const struct swapdev_ring_opts *opts,
		     struct swapdev_ring **ret)
{
	struct swapdev_ring *r;
	unsigned depth = 64, bounce_pages = 64, flags = 0, crypt_pages = 1024;
	int err;

	if (!sd || !ret)
		return -EINVAL;
	if (opts) {
		if (opts->size != sizeof(*opts))
			return -EINVAL;
		if (opts->depth)
			depth = opts->depth;
		if (opts->bounce_pages)
			bounce_pages = opts->bounce_pages;
		if (opts->crypt_pages)
			crypt_pages = opts->crypt_pages;
		flags = opts->flags;
	}
	if (flags & ~SWAPDEV_RING_ANY_THREAD)
		return -EINVAL;
	if (depth > 4096 || bounce_pages > 4096 || crypt_pages > 65536)
		return -EINVAL;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->sd = sd;
	r->sys = sd->sys;
	r->efd = -1;
	r->sync_idx = -1;
	r->depth = depth;
	r->bounce = MAP_FAILED;
	r->reqs = calloc(depth, sizeof(*r->reqs));
	if (!r->reqs) {
		err = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++)
		r->reqs[i].next_free = i + 1 < depth ? (int32_t)i + 1 : -1;
	r->free_head = 0;
	if (sd->key) {
		r->cpool_pages = crypt_pages;
		r->cpool_map = calloc((crypt_pages + 63) / 64, sizeof(uint64_t));
		if (!r->cpool_map) {
			err = -ENOMEM;
			goto fail;
		}
		err = ring_crypt_init(r);
		if (err < 0)
			goto fail;
	}

	r->bounce_bytes = (size_t)bounce_pages * SWAPDEV_SLOT_BYTES;
	r->bounce = SYS(r->sys, mmap, NULL, r->bounce_bytes, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (r->bounce == MAP_FAILED) {
		err = negative_errno();
		goto fail;
	}

	/* SINGLE_ISSUER (6.0) lets the kernel skip the ring lock; the ring is
	 * ours alone anyway. Older kernels refuse the flag: go without. CQ is
	 * twice the SQ by default and at most depth requests are in flight, so
	 * it cannot overflow. */
	err = SYS(r->sys, uring_init, depth, &r->ring,
		  (flags & SWAPDEV_RING_ANY_THREAD) ? 0 : IORING_SETUP_SINGLE_ISSUER);
	if (err == -EINVAL && !(flags & SWAPDEV_RING_ANY_THREAD))
		err = SYS(r->sys, uring_init, depth, &r->ring, 0);
	if (err < 0)
		goto fail;
	r->ring_ok = true;

	err = io_uring_register_files(&r->ring, &sd->fd, 1);
	if (err < 0)
		goto fail;
	struct iovec biov = { r->bounce, r->bounce_bytes };
	err = io_uring_register_buffers(&r->ring, &biov, 1);
	if (err == 0)
		r->buf_registered = true;
	else if (err == -ENOMEM || err == -EPERM)
		log_info(sd->log, "swap: bounce buffer not registered (%s); reads pin per request",
			 strerror(-err));
	else
		goto fail;

	r->efd = SYS(r->sys, eventfd, 0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0) {
		err = negative_errno();
		goto fail;
	}
	err = io_uring_register_eventfd(&r->ring, r->efd);
	if (err < 0)
		goto fail;
	*ret = r;
	return 0;
fail:
	swapdev_ring_free(r);
	return err;
}

int swapdev_fd(const struct swapdev_ring *r)
{
	return r->efd;
}

unsigned swapdev_inflight(const struct swapdev_ring *r)
{
	return r->nr_busy;
}

void swapdev_ring_stats(const struct swapdev_ring *r, struct swapdev_ring_stats *ret)
{
	*ret = r->st;
}

static struct swapdev_req *req_get(struct swapdev_ring *r)
{
	if (r->free_head < 0)
		return NULL;
	struct swapdev_req *q = &r->reqs[r->free_head];
	r->free_head = q->next_free;
	r->nr_busy++;
	return q;
}

static void req_put(struct swapdev_ring *r, struct swapdev_req *q)
{
	q->next_free = r->free_head;
	r->free_head = (int32_t)(q - r->reqs);
	r->nr_busy--;
}

/* An SQE, submitting what is queued first if the SQ is full. */
static struct io_uring_sqe *get_sqe(struct swapdev_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	if (!sqe && swapdev_submit(r) >= 0)
		sqe = io_uring_get_sqe(&r->ring);
	return sqe;
}

static int check_iov(const struct swapdev_ring *r, uint32_t slot, const struct iovec *iov,
		     unsigned n, uint32_t *ret_bytes)
{
	uint64_t bytes = 0;

	if (!iov || n == 0 || n > SWAPDEV_MAX_IOV)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (!IS_ALIGNED((uintptr_t)iov[i].iov_base, SWAPDEV_SLOT_BYTES) ||
		    iov[i].iov_len == 0 || !IS_ALIGNED(iov[i].iov_len, SWAPDEV_SLOT_BYTES))
			return -EINVAL;
		bytes += iov[i].iov_len;
	}
	/* One request stays under 2 GiB so that its result fits the CQE. */
	if (bytes > SWAPDEV_MAX_IOV * 256 * SWAPDEV_SLOT_BYTES ||
	    (uint64_t)slot + bytes / SWAPDEV_SLOT_BYTES > r->sd->nr_slots)
		return -EINVAL;
	*ret_bytes = (uint32_t)bytes;
	return 0;
}

/* A free request and its SQE, filled in and tagged; NULL when the ring is
 * at depth or the SQ cannot be emptied (the caller returns -EAGAIN). */
static struct io_uring_sqe *start_req(struct swapdev_ring *r, enum req_kind kind, uint32_t bytes,
				      swapdev_done_fn fn, void *user, struct swapdev_req **ret_q)
{
	struct swapdev_req *q = req_get(r);
	struct io_uring_sqe *sqe;

	if (!q)
		return NULL;
	sqe = get_sqe(r);
	if (!sqe) {
		req_put(r, q);
		return NULL;
	}
	q->fn = fn;
	q->user = user;
	q->bytes = bytes;
	q->kind = kind;
	q->cpool_at = -1;
	*ret_q = q;
	return sqe;
}

/* After the prep: the file is the registered one, user_data the request. */
static void finish_sqe(struct swapdev_ring *r, struct io_uring_sqe *sqe, struct swapdev_req *q)
{
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, (uint64_t)(q - r->reqs) + 1);
}

/* With encryption: @iov encrypted into a run of the ring's pool, returned
 * in *ret_at; -EINVAL when the pool cannot ever hold it, -EAGAIN when not
 * now. */
static int encrypt_write(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
			 uint32_t bytes, int32_t *ret_at)
{
	uint32_t np = bytes / SWAPDEV_SLOT_BYTES;
	int err = 0;

	if (np > r->cpool_pages)
		return -EINVAL;
	int32_t at = cpool_get(r, np, &err);
	if (at < 0)
		return err;
	uint8_t *dst = r->cpool + (size_t)at * SWAPDEV_SLOT_BYTES;
	for (unsigned i = 0; i < n; i++)
		for (size_t off = 0; off < iov[i].iov_len; off += SWAPDEV_SLOT_BYTES) {
			if (xts_slot(r->enc, slot++, dst, (const uint8_t *)iov[i].iov_base + off) < 0) {
				cpool_put(r, at, np);
				return -EIO;
			}
			dst += SWAPDEV_SLOT_BYTES;
		}
	*ret_at = at;
	return 0;
}

static int queue_rw(struct swapdev_ring *r, bool write, uint32_t slot, const struct iovec *iov,
		    unsigned n, swapdev_done_fn fn, void *user)
{
	struct swapdev_req *q;
	struct io_uring_sqe *sqe;
	uint32_t bytes;
	int32_t at = -1;
	int err;

	err = check_iov(r, slot, iov, n, &bytes);
	if (err < 0)
		return err;
	if (!write)
		fill_note_read(r->sd);
	/* Encrypted before the SQE is taken: an SQE taken must be sent. */
	if (write && r->enc) {
		err = encrypt_write(r, slot, iov, n, bytes, &at);
		if (err < 0)
			return err;
	}
	sqe = start_req(r, write ? REQ_WRITE : REQ_READ, bytes, fn, user, &q);
	if (!sqe) {
		cpool_put(r, at, bytes / SWAPDEV_SLOT_BYTES);
		return -EAGAIN;
	}
	q->slot = slot;
	q->cpool_at = at;
	/* The kernel reads the iovec array at submission or, if the request
	 * goes async, later: keep our own copy alive until the completion. */
	if (at >= 0) {
		q->iov[0] = (struct iovec){ r->cpool + (size_t)at * SWAPDEV_SLOT_BYTES, bytes };
		n = 1;
	} else {
		memcpy(q->iov, iov, n * sizeof(*iov));
	}
	q->niov = (uint8_t)n;
	off_t off = (off_t)slot * SWAPDEV_SLOT_BYTES;
	if (write)
		io_uring_prep_writev(sqe, 0, q->iov, n, off);
	else
		io_uring_prep_readv(sqe, 0, q->iov, n, off);
	finish_sqe(r, sqe, q);
	return 0;
}

int swapdev_queue_write(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
			swapdev_done_fn fn, void *user)
{
	return queue_rw(r, true, slot, iov, n, fn, user);
}

int swapdev_queue_read(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
		       swapdev_done_fn fn, void *user)
{
	return queue_rw(r, false, slot, iov, n, fn, user);
}

int swapdev_submit(struct swapdev_ring *r)
{
	int n = SYS(r->sys, uring_submit, &r->ring);
	if (n > 0)
		r->st.submits++;
	return n;
}

/* Account one completion and run its callback (after the request slot is
 * free again, so the callback may queue the next request). */
static void complete(struct swapdev_ring *r, uint64_t data, int cqe_res)
{
	assert(data >= 1 && data <= r->depth);
	struct swapdev_req *q = &r->reqs[data - 1];
	int res = SYS(r->sys, uring_cqe, cqe_res);
	swapdev_done_fn fn = q->fn;
	void *user = q->user;
	uint8_t kind = q->kind;

	if (res >= 0 && (uint32_t)res != q->bytes) {
		r->st.short_io++;
		res = -EIO;
	}
	if (q->cpool_at >= 0)
		cpool_put(r, q->cpool_at, q->bytes / SWAPDEV_SLOT_BYTES);
	/* Decrypted here, on the ring's thread, before anyone sees the bytes:
	 * a page never comes back as ciphertext. */
	if (res >= 0 && r->dec && kind != REQ_WRITE) {
		struct iovec whole = { r->bounce, q->bytes };
		if (kind == REQ_SYNC_READ ? decrypt_iov(r, q->slot, &whole, 1) < 0
					  : decrypt_iov(r, q->slot, q->iov, q->niov) < 0)
			res = -EIO;
	}
	if (res < 0) {
		r->st.errors++;
	} else if (kind == REQ_WRITE) {
		r->st.writes++;
		r->st.bytes_written += q->bytes;
	} else {
		r->st.reads++;
		r->st.bytes_read += q->bytes;
	}
	if (res > 0)
		res = 0;
	req_put(r, q);
	if (kind == REQ_SYNC_READ) {
		assert(r->sync_idx == (int32_t)(data - 1));
		r->sync_idx = -1;
		r->sync_res = res;
		r->sync_done = true;
		return;
	}
	if (fn)
		fn(user, res);
}

/* Reap what the CQ holds now; returns how many requests ended. */
static int reap(struct swapdev_ring *r)
{
	struct io_uring_cqe *cqe;
	int n = 0;

	while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
		uint64_t data = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		complete(r, data, res);
		n++;
	}
	return n;
}

int swapdev_process(struct swapdev_ring *r)
{
	uint64_t v;

	/* Clear the notification before reaping: a completion that lands
	 * after the reap sets it again, so none is slept through. */
	(void)SYS(r->sys, read, r->efd, &v, sizeof(v));
	return reap(r);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

int swapdev_wait(struct swapdev_ring *r, unsigned spin_usec)
{
	uint64_t deadline = now_nsec(CLOCK_MONOTONIC) + spin_usec * NSEC_PER_USEC;
	struct io_uring_cqe *cqe;
	int n;

	if (r->nr_busy == 0)
		return 0;
	if (io_uring_sq_ready(&r->ring) > 0) {
		n = swapdev_submit(r);
		if (n < 0)
			return n;
	}
	for (;;) {
		n = reap(r);
		if (n > 0)
			return n;
		if (spin_usec && now_nsec(CLOCK_MONOTONIC) < deadline) {
			cpu_relax();
			continue;
		}
		int err = io_uring_wait_cqe(&r->ring, &cqe);
		if (err < 0 && err != -EINTR && err != -EAGAIN)
			return err;
	}
}

/* Wait until the synchronous read is reaped; other completions reaped on
 * the way get their callbacks. */
static int wait_sync(struct swapdev_ring *r, unsigned spin_usec)
{
	while (!r->sync_done) {
		int err = swapdev_wait(r, spin_usec);
		if (err < 0)
			return err;
	}
	return 0;
}

int swapdev_read_sync(struct swapdev_ring *r, uint32_t slot, unsigned n, unsigned spin_usec,
		      const void **ret_buf)
{
	struct swapdev_req *q;
	struct io_uring_sqe *sqe;
	int err;

	if (n == 0 || (size_t)n * SWAPDEV_SLOT_BYTES > r->bounce_bytes ||
	    (uint64_t)slot + n > r->sd->nr_slots || !ret_buf)
		return -EINVAL;
	fill_note_read(r->sd);
	/* A previous read_sync whose submit failed is still queued and will
	 * write the bounce buffer: let it land first. */
	if (r->sync_idx >= 0) {
		err = swapdev_submit(r);
		if (err < 0)
			return err;
		r->sync_done = false;
		err = wait_sync(r, 0);
		if (err < 0)
			return err;
	}
	sqe = start_req(r, REQ_SYNC_READ, n * SWAPDEV_SLOT_BYTES, NULL, NULL, &q);
	if (!sqe)
		return -EAGAIN;
	q->slot = slot;
	off_t off = (off_t)slot * SWAPDEV_SLOT_BYTES;
	if (r->buf_registered)
		io_uring_prep_read_fixed(sqe, 0, r->bounce, q->bytes, off, 0);
	else
		io_uring_prep_read(sqe, 0, r->bounce, q->bytes, off);
	finish_sqe(r, sqe, q);
	r->sync_idx = (int32_t)(q - r->reqs);
	r->sync_done = false;

	err = swapdev_submit(r);
	if (err < 0)
		return err; /* stays queued; see sync_idx */
	err = wait_sync(r, spin_usec);
	if (err < 0)
		return err;
	if (r->sync_res < 0)
		return r->sync_res;
	*ret_buf = r->bounce;
	return 0;
}

void swapdev_ring_free(struct swapdev_ring *r)
{
	if (!r)
		return;
	if (r->ring_ok) {
		/* Teardown uses liburing directly, not the ops table: it must
		 * not be failed by injection, and every request queued must
		 * end (its callback tells the engine the page's fate). */
		struct io_uring_cqe *cqe;
		while (r->nr_busy > 0) {
			int err = io_uring_submit_and_wait(&r->ring, 1);
			if (err < 0 && err != -EINTR && err != -EAGAIN && err != -EBUSY)
				break;
			while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
				uint64_t data = io_uring_cqe_get_data64(cqe);
				int res = cqe->res;
				io_uring_cqe_seen(&r->ring, cqe);
				complete(r, data, res);
			}
		}
		/* Only if the kernel refused to wait: tell the owners. */
		for (unsigned i = 0; r->nr_busy > 0 && i < r->depth; i++) {
			bool is_free = false;
			for (int32_t f = r->free_head; f >= 0; f = r->reqs[f].next_free)
				if (f == (int32_t)i)
					is_free = true;
			if (!is_free) {
				struct swapdev_req *q = &r->reqs[i];
				req_put(r, q);
				if (q->fn)
					q->fn(q->user, -ECANCELED);
			}
		}
		if (r->efd >= 0)
			io_uring_unregister_eventfd(&r->ring);
		io_uring_queue_exit(&r->ring);
	}
	if (r->efd >= 0)
		close(r->efd);
	if (r->bounce != MAP_FAILED)
		munmap(r->bounce, r->bounce_bytes);
	ring_crypt_free(r);
	if (r->cpool)
		munmap(r->cpool, (size_t)r->cpool_pages * SWAPDEV_SLOT_BYTES);
	free(r->cpool_map);
	free(r->reqs);
	free(r);
}
