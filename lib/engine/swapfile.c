/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The swap file, its slot allocator, its zero-fill thread and its
 * encryption key (swapdev.h); the io_uring rings that read and write it
 * are ring.c's.
 *
 * Threads and locks: struct swapdev (swapfile.h) is shared;
 * sd->lock protects the slot bitmaps (in use, stale, cleared), the
 * cursors, the counts and the background thread's state, and nothing else
 * is written after swapdev_new() (the encryption key included). The
 * background thread ("fill", swapdev's own) and swapdev_scrub() callers
 * take the lock and drop it around their I/O. Slot alloc/free run on the
 * pass thread and the handler (sd->lock is a leaf of the engine's lock
 * order, lib/engine/internal.h).
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
#include "engine/swapfile.h"
#include "common/util.h"

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

#endif

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
