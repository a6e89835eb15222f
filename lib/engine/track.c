/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cold-page tracking with userfaultfd WP_ASYNC and PAGEMAP_SCAN, or (sync
 * mode, TRACK_F_SYNC, kernels before 6.7) with write-protect faults that
 * the caller's handler reports through track_wrote(), UFFDIO_WRITEPROTECT
 * and /proc/self/pagemap.
 *
 * Threads: one owner thread (the engine's worker) runs everything but
 * track_refault(), which any thread may call; it sets a bit in
 * t->refault_pending with an atomic OR, and track_scan() takes the bits with
 * an atomic exchange. No lock.
 *
 * Per page: one age byte (in the caller's array or ours) and one hold bit.
 *
 * What the kernel does, measured on Linux 6.18 (tests/engine/test-track.c checks
 * each point; docs/swap.md has the whole table):
 *
 *  1. One uffd serves the engine and the tracker. A range can be registered
 *     with one uffd only, so the engine opens its uffd with
 *     UFFD_FEATURE_WP_ASYNC (plus its own features: EVENT_REMOVE, MOVE) and
 *     registers MODE_MISSING | MODE_WP. MISSING faults still arrive as
 *     messages; writes to write-protected pages are resolved by the kernel
 *     and produce no message.
 *  2. Consequence: on that uffd UFFDIO_WRITEPROTECT no longer stops writers
 *     (a write to a protected page goes through at once), so the engine's
 *     "write-protect first" reclaim path cannot be used together with this
 *     tracker; reclaim must use "move out first" (UFFDIO_MOVE), or tracking
 *     must be off for that region.
 *  3. A PAGEMAP_SCAN with PM_SCAN_WP_MATCHING and category_mask WRITTEN
 *     write-protects holes too: it installs uffd-wp PTE markers on every
 *     non-present page (with or without UFFD_FEATURE_WP_UNPOPULATED). A
 *     marker is not pte_none: UFFDIO_ZEROPAGE and UFFDIO_MOVE onto it fail
 *     with EEXIST (UFFDIO_COPY still works), so the engine could no longer
 *     map the zero page or move a page back there. Therefore the reset scan
 *     here matches WRITTEN | PRESENT: only present pages are protected and
 *     the engine's holes stay holes. For the same reason the tracker does
 *     not ask for WP_UNPOPULATED.
 *  4. Holes (never touched, dropped, moved out) always report WRITTEN but
 *     never PRESENT; they get TRACK_AGE_ABSENT. A read of a hole still raises
 *     a MISSING fault with or without a marker.
 *  5. A page mapping the shared zero page (UFFDIO_ZEROPAGE) reports
 *     PRESENT | PFNZERO, is write-protected by the reset like any page, and
 *     after a write (a silent copy-on-write, no uffd message) reports
 *     PRESENT | WRITTEN without PFNZERO. PFNZERO pages are the engine's ZERO
 *     pages: TRACK_AGE_ABSENT, never swap candidates.
 *  6. A page installed by UFFDIO_COPY (swap-in) is not protected and reports
 *     WRITTEN at the next scan (age 0) unless copied with COPY_MODE_WP.
 *  7. Reads are invisible: only writes clear write-protection. Read-hot
 *     pages age like cold ones; refault feedback is what keeps them in.
 */
#include <assert.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine/compat.h"
#include "engine/lock.h"
#include "engine/track.h"
#include "common/util.h"

#define PAGE 4096u
#define VEC_LEN 512u /* regions per PAGEMAP_SCAN call: 12 KiB on the stack */
/* Sync mode: pages protected per UFFDIO_WRITEPROTECT under the caller's
 * lock (64 MiB: the fault handler waits for one chunk at most), and
 * pagemap entries per pread (4 KiB on the stack). */
#define SYNC_CHUNK_PAGES 16384u
#define PM_ENTRIES 512u
#define PM_PRESENT (UINT64_C(1) << 63)
#define PM_PFN_MASK ((UINT64_C(1) << 55) - 1)

struct track {
	const struct sys_ops *sys;
	const struct logger *log;
	uintptr_t start;
	uint64_t nr_pages;
	unsigned hot_intervals;
	int uffd;        /* ours, or -1 when the caller registered the range */
	int pagemap;
	uint8_t *ages;
	bool own_ages;
	uint64_t *hold;            /* bit set: held hot after a refault */
	uint64_t *refault_pending; /* set by track_refault(), any thread */
	uint64_t *written;         /* scratch for one scan */
	uint64_t cursor;           /* scan: first address not yet aged */
	/* TRACK_F_SYNC */
	bool sync;
	int wp_uffd;               /* the caller's */
	pthread_mutex_t *lock;     /* the caller's */
	uint64_t *wrote_pending;   /* set by track_wrote(), any thread */
	uint64_t zero_pfn;         /* PFN of the zero page; 0: PFNs unreadable */
};

static size_t words(uint64_t nr_pages)
{
	return (size_t)((nr_pages + 63) / 64);
}

static bool bit(const uint64_t *b, uint64_t i)
{
	return b[i / 64] & (UINT64_C(1) << (i % 64));
}

/* --------------------------------------------------------------- probe -- */

static int probe(const struct sys_ops *sys, bool sync, const char **ret_reason)
{
	const char *why = NULL;
	int err = 0, fd = -1, pm = -1;
	void *page = MAP_FAILED;

	if (!sys)
		sys = &sys_default;
	fd = sys_open_uffd(sys, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		err = fd == -EACCES ? -EPERM : fd;
		why = err == -EPERM    ? "no permission to open a userfaultfd"
		      : err == -ENOSYS ? "the kernel has no userfaultfd"
				       : "cannot open a userfaultfd";
		goto out;
	}
	/* Features = 0 asks what the kernel has; this fd is thrown away since
	 * a second UFFDIO_API on it would fail. */
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (SYS(sys, ioctl, fd, UFFDIO_API, &api) < 0) {
		err = errno == EINVAL ? -ENOSYS : negative_errno();
		why = "UFFDIO_API failed";
		goto out;
	}
	if (sync && !(api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		err = -ENOSYS;
		why = "the kernel lacks userfaultfd write-protect (Linux 5.7+)";
		goto out;
	}
	if (!sync && !(api.features & UFFD_FEATURE_WP_ASYNC)) {
		err = -ENOSYS;
		why = "the kernel lacks userfaultfd WP_ASYNC (Linux 6.7+): no cheap write tracking";
		goto out;
	}
	pm = SYS(sys, open, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	if (pm < 0) {
		err = errno == ENOENT ? -ENOSYS : negative_errno();
		why = "/proc/self/pagemap cannot be opened";
		goto out;
	}
	if (sync)
		goto out;
	page = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (page == MAP_FAILED) {
		err = -ENOMEM;
		why = "out of memory";
		goto out;
	}
	struct page_region v[1];
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.start = (uintptr_t)page,
		.end = (uintptr_t)page + PAGE,
		.vec = (uintptr_t)v,
		.vec_len = 1,
		.category_anyof_mask = PAGE_IS_PRESENT,
		.return_mask = PAGE_IS_PRESENT,
	};
	if (SYS(sys, ioctl, pm, PAGEMAP_SCAN, &a) < 0) {
		/* Kernels before 6.7 answer an unknown ioctl with ENOTTY. */
		err = errno == ENOTTY || errno == EINVAL ? -ENOSYS : negative_errno();
		why = err == -ENOSYS ? "the kernel lacks the PAGEMAP_SCAN ioctl (Linux 6.7+)"
				     : "PAGEMAP_SCAN failed";
		goto out;
	}
out:
	if (page != MAP_FAILED)
		munmap(page, PAGE);
	if (pm >= 0)
		close(pm);
	if (fd >= 0)
		close(fd);
	if (ret_reason)
		*ret_reason = why	? why
			      : sync ? "write tracking with write-protect faults works"
				     : "write tracking with WP_ASYNC and PAGEMAP_SCAN works";
	return err;
}

int track_probe(const struct sys_ops *sys, const char **ret_reason)
{
	return probe(sys, false, ret_reason);
}

int track_probe_sync(const struct sys_ops *sys, const char **ret_reason)
{
	return probe(sys, true, ret_reason);
}

/* ---------------------------------------------------------------- scan -- */

/*
 * Walk [start, end) with PAGEMAP_SCAN, calling @fn for each region returned,
 * continuing from walk_end whenever the vector fills up.
 */
static int walk(struct track *t, uint64_t flags, uint64_t mask, uint64_t anyof, uint64_t ret_mask,
		void (*fn)(struct track *t, const struct page_region *r))
{
	struct page_region v[VEC_LEN];
	uint64_t pos = t->start, end = t->start + t->nr_pages * PAGE;

	while (pos < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = flags,
			.start = pos,
			.end = end,
			.vec = (uintptr_t)v,
			.vec_len = VEC_LEN,
			.category_mask = mask,
			.category_anyof_mask = anyof,
			.return_mask = ret_mask,
		};
		int n = SYS(t->sys, ioctl, t->pagemap, PAGEMAP_SCAN, &a);
		if (n < 0)
			return negative_errno();
		for (int i = 0; i < n; i++)
			fn(t, &v[i]);
		if (a.walk_end <= pos) /* no progress: do not spin */
			return -EIO;
		pos = a.walk_end;
	}
	return 0;
}

static void mark_written(struct track *t, const struct page_region *r)
{
	/* A zero page the engine just mapped is not a write: it was not
	 * protected yet because it was installed after the last scan. */
	if (r->categories & PAGE_IS_PFNZERO)
		return;
	for (uint64_t a = r->start; a < r->end; a += PAGE) {
		uint64_t i = (a - t->start) / PAGE;
		t->written[i / 64] |= UINT64_C(1) << (i % 64);
	}
}

/* Present pages: written ones restart at 0, others grow older by one.
 * Held pages count their hold down instead. */
static void age_present(struct track *t, const struct page_region *r)
{
	/* Regions come in address order; the gap before this one is holes. */
	for (uint64_t a = t->cursor; a < r->start; a += PAGE)
		t->ages[(a - t->start) / PAGE] = TRACK_AGE_ABSENT;
	t->cursor = r->end;
	for (uint64_t a = r->start; a < r->end; a += PAGE) {
		uint64_t i = (a - t->start) / PAGE;
		uint8_t *age = &t->ages[i];

		if (r->categories & PAGE_IS_PFNZERO) {
			*age = TRACK_AGE_ABSENT;
			continue;
		}
		if (bit(t->written, i) || *age == TRACK_AGE_ABSENT) {
			*age = 0;
			continue;
		}
		if (*age < TRACK_AGE_MAX)
			(*age)++;
		if (bit(t->hold, i) && *age >= t->hot_intervals) {
			t->hold[i / 64] &= ~(UINT64_C(1) << (i % 64));
			*age = 0;
		}
	}
}

/* Sync mode, step 1: per chunk, under the caller's lock, protect the chunk
 * again and take the bits track_wrote() set. The handler sets a bit and
 * unprotects under the same lock, so a write faulting after our protect
 * has its bit taken by the next scan, and its unprotect cannot undo a
 * protect that comes later. Protect first, take second: a write between a
 * take and a protect would be invisible. Anonymous memory gets no markers
 * on holes (no WP_UNPOPULATED; tests/engine/test-track.c checks), so the engine's
 * ZEROPAGE and the handler's zero pages still work there. */
static int protect_take(struct track *t)
{
	for (uint64_t first = 0; first < t->nr_pages; first += SYNC_CHUNK_PAGES) {
		uint64_t n = MIN((uint64_t)SYNC_CHUNK_PAGES, t->nr_pages - first);
		struct uffdio_writeprotect wp = {
			.range = { t->start + first * PAGE, n * PAGE },
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};
		for (unsigned tries = 0;; tries++) {
			lock_mutex(t->lock);
			int err = SYS(t->sys, ioctl, t->wp_uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? negative_errno() : 0;
			for (size_t w = first / 64; !err && w < words(first + n); w++)
				t->written[w] = __atomic_exchange_n(&t->wrote_pending[w], 0, __ATOMIC_ACQ_REL);
			unlock_mutex(t->lock);
			if (!err)
				break;
			/* EAGAIN: a REMOVE event is unread; the caller's handler
			 * reads it (outside the lock). */
			if (err != -EAGAIN || tries >= 1000)
				return err;
			usleep(100);
		}
	}
	return 0;
}

/* Sync mode, step 3: presence (and the zero page, when PFNs are readable)
 * from /proc/self/pagemap, fed to age_present() as PAGEMAP_SCAN would. */
static int age_from_pagemap(struct track *t)
{
	uint64_t pm[PM_ENTRIES];

	for (uint64_t i = 0; i < t->nr_pages;) {
		size_t n = (size_t)MIN((uint64_t)PM_ENTRIES, t->nr_pages - i);
		ssize_t got = SYS(t->sys, pread, t->pagemap, pm, n * sizeof(pm[0]),
				  (off_t)((t->start / PAGE + i) * sizeof(pm[0])));
		if (got < 0)
			return negative_errno();
		if ((size_t)got < sizeof(pm[0]))
			return -EIO;
		n = (size_t)got / sizeof(pm[0]);
		for (size_t k = 0; k < n;) {
			bool zero = t->zero_pfn && (pm[k] & PM_PFN_MASK) == t->zero_pfn;
			size_t j = k + 1;
			if (!(pm[k] & PM_PRESENT)) {
				k++;
				continue;
			}
			while (j < n && (pm[j] & PM_PRESENT) &&
			       (t->zero_pfn && (pm[j] & PM_PFN_MASK) == t->zero_pfn) == zero)
				j++;
			struct page_region r = { .start = t->start + (i + k) * PAGE,
						 .end = t->start + (i + j) * PAGE,
						 .categories = PAGE_IS_PRESENT | (zero ? PAGE_IS_PFNZERO : 0) };
			age_present(t, &r);
			k = j;
		}
		i += n;
	}
	return 0;
}

/* Sync mode: a failed scan gives the taken bits back for the next one. */
static void untake(struct track *t)
{
	for (size_t w = 0; w < words(t->nr_pages); w++)
		if (t->written[w])
			__atomic_fetch_or(&t->wrote_pending[w], t->written[w], __ATOMIC_RELEASE);
}

int track_scan(struct track *t)
{
	int err, nr_written = 0;

	memset(t->written, 0, words(t->nr_pages) * sizeof(uint64_t));
	/* 1. Written present pages, re-protected in the same call (point 3 of
	 *    the top comment: PRESENT keeps holes free of markers). */
	if (t->sync)
		err = protect_take(t);
	else
		err = walk(t, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			   PAGE_IS_WRITTEN | PAGE_IS_PRESENT, 0, PAGE_IS_WRITTEN | PAGE_IS_PFNZERO, mark_written);
	if (err < 0) {
		if (t->sync)
			untake(t);
		return err;
	}
	for (size_t w = 0; w < words(t->nr_pages); w++)
		nr_written += __builtin_popcountll(t->written[w]);

	/* 2. Refaults reported since the last scan start their hold now. */
	for (size_t w = 0; w < words(t->nr_pages); w++) {
		uint64_t bits = __atomic_exchange_n(&t->refault_pending[w], 0, __ATOMIC_ACQ_REL);
		t->hold[w] |= bits;
		for (; bits; bits &= bits - 1) {
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(bits);
			t->ages[i] = 0;
		}
	}

	/* 3. Presence, zero pages and ages. A write between 1 and 3 is seen at
	 *    the next interval; nothing is lost, the page is just one older. */
	t->cursor = t->start;
	if (t->sync)
		err = age_from_pagemap(t);
	else
		err = walk(t, 0, 0, PAGE_IS_PRESENT, PAGE_IS_PRESENT | PAGE_IS_PFNZERO, age_present);
	if (err < 0) {
		if (t->sync)
			untake(t); /* the next scan sees these writes again */
		return err;
	}
	for (uint64_t a = t->cursor; a < t->start + t->nr_pages * PAGE; a += PAGE)
		t->ages[(a - t->start) / PAGE] = TRACK_AGE_ABSENT;
	return nr_written;
}

/* ------------------------------------------------------------- queries -- */

static bool cold_page(const struct track *t, uint64_t i, uint8_t min_age, track_keep_fn keep, void *ctx)
{
	uint8_t a = t->ages[i];
	return a >= min_age && a <= TRACK_AGE_MAX && !bit(t->hold, i) && (!keep || keep(ctx, i));
}

void track_cold_counts(const struct track *t, uint8_t min_age, size_t counts[TRACK_AGE_MAX + 1],
		       track_keep_fn keep, void *ctx)
{
	if (min_age == 0)
		min_age = 1;
	for (uint64_t i = 0; i < t->nr_pages; i++)
		if (cold_page(t, i, min_age, keep, ctx))
			counts[t->ages[i]]++;
}

size_t track_cold(const struct track *t, uint8_t min_age, uint64_t *ret_pages, size_t max, track_keep_fn keep,
		  void *ctx)
{
	size_t count[TRACK_AGE_MAX + 1] = { 0 }, pos[TRACK_AGE_MAX + 1], end[TRACK_AGE_MAX + 1], n = 0;

	if (min_age == 0)
		min_age = 1;
	if (min_age > TRACK_AGE_MAX || max == 0)
		return 0;
	/* Counting sort by age, oldest first: two passes, no allocation. */
	track_cold_counts(t, min_age, count, keep, ctx);
	for (int a = TRACK_AGE_MAX; a >= min_age; a--) {
		pos[a] = n;
		n += count[a];
		end[a] = MIN(n, max);
	}
	if (n > max)
		n = max;
	/* @keep may answer otherwise the second time (the caller's pages
	 * change state meanwhile): a bucket never grows past its end, and a
	 * slot one left empty is closed up below. */
	for (uint64_t i = 0; i < t->nr_pages; i++)
		if (cold_page(t, i, min_age, keep, ctx) && pos[t->ages[i]] < end[t->ages[i]])
			ret_pages[pos[t->ages[i]]++] = i;
	size_t k = 0, from = 0;
	for (int a = TRACK_AGE_MAX; a >= min_age && from < n; a--) {
		size_t to = MIN(from + count[a], n);
		for (size_t j = from; j < pos[a] && j < to; j++)
			ret_pages[k++] = ret_pages[j];
		from = to;
	}
	return k;
}

uint64_t track_meta_bytes(const struct track *t)
{
	uint64_t bits = t->sync ? 4 : 3; /* hold, refault_pending, written (, wrote_pending) */
	return sizeof(*t) + (t->own_ages ? t->nr_pages : 0) + bits * words(t->nr_pages) * sizeof(uint64_t);
}

uint8_t track_age(const struct track *t, uint64_t page)
{
	return page < t->nr_pages ? t->ages[page] : TRACK_AGE_ABSENT;
}

bool track_written(const struct track *t, uint64_t page)
{
	return page < t->nr_pages && bit(t->written, page);
}

uint64_t track_nr_pages(const struct track *t)
{
	return t->nr_pages;
}

void track_refault(struct track *t, uint64_t page)
{
	if (page >= t->nr_pages)
		return;
	__atomic_fetch_or(&t->refault_pending[page / 64], UINT64_C(1) << (page % 64),
			  __ATOMIC_RELEASE);
}

void track_wrote(struct track *t, uint64_t page)
{
	if (!t->sync || page >= t->nr_pages)
		return;
	__atomic_fetch_or(&t->wrote_pending[page / 64], UINT64_C(1) << (page % 64), __ATOMIC_RELEASE);
}

bool track_wrote_since_scan(const struct track *t, uint64_t page)
{
	return t->sync && page < t->nr_pages &&
	       (__atomic_load_n(&t->wrote_pending[page / 64], __ATOMIC_ACQUIRE) & (UINT64_C(1) << (page % 64)));
}

/* ------------------------------------------------------------ lifetime -- */

/* The PFN of the shared zero page as pagemap shows it: 0 when PFNs are
 * hidden (no CAP_SYS_ADMIN), and then zero pages count as present. */
static uint64_t zero_pfn(struct track *t)
{
	uint64_t e = 0;
	volatile uint8_t *p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	(void)p[0]; /* maps the zero page */
	if (SYS(t->sys, pread, t->pagemap, &e, sizeof(e), (off_t)((uintptr_t)p / PAGE * sizeof(e))) !=
	    (ssize_t)sizeof(e))
		e = 0;
	munmap((void *)p, PAGE);
	return (e & PM_PRESENT) ? e & PM_PFN_MASK : 0;
}

static int register_own(struct track *t)
{
	int fd = sys_open_uffd(t->sys, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return fd;
	t->uffd = fd;
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	if (SYS(t->sys, ioctl, fd, UFFDIO_API, &api) < 0)
		return errno == EINVAL ? -ENOSYS : negative_errno();
	struct uffdio_register reg = {
		.range = { .start = t->start, .len = t->nr_pages * PAGE },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (SYS(t->sys, ioctl, fd, UFFDIO_REGISTER, &reg) < 0)
		return negative_errno();
	return 0;
}

int track_new(const struct track_opts *opts, struct track **ret)
{
	const char *why;
	struct track *t;
	int err;

	if (!opts || opts->size != sizeof(*opts) || !ret || !opts->start || opts->len_bytes == 0 ||
	    !IS_ALIGNED((uintptr_t)opts->start, PAGE) || !IS_ALIGNED(opts->len_bytes, PAGE) ||
	    (opts->flags & ~(TRACK_F_REGISTERED | TRACK_F_SYNC)) || opts->hot_intervals > TRACK_AGE_MAX)
		return -EINVAL;
	bool sync = opts->flags & TRACK_F_SYNC;
	if (sync && (!(opts->flags & TRACK_F_REGISTERED) || opts->uffd < 0 || !opts->lock))
		return -EINVAL;
	err = sync ? track_probe_sync(opts->sys, &why) : track_probe(opts->sys, &why);
	if (err < 0) {
		log_warning(opts->log, "cold-page tracking unavailable: %s", why);
		return err;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->sys = opts->sys ? opts->sys : &sys_default;
	t->log = opts->log;
	t->start = (uintptr_t)opts->start;
	t->nr_pages = opts->len_bytes / PAGE;
	t->hot_intervals = opts->hot_intervals ? opts->hot_intervals : 4;
	t->uffd = -1;
	t->pagemap = -1;
	t->ages = opts->ages;
	if (!t->ages) {
		t->ages = malloc(t->nr_pages);
		t->own_ages = true;
	}
	t->hold = calloc(words(t->nr_pages), sizeof(uint64_t));
	t->refault_pending = calloc(words(t->nr_pages), sizeof(uint64_t));
	t->written = calloc(words(t->nr_pages), sizeof(uint64_t));
	t->sync = sync;
	t->wp_uffd = sync ? opts->uffd : -1;
	t->lock = opts->lock;
	if (sync)
		t->wrote_pending = calloc(words(t->nr_pages), sizeof(uint64_t));
	if (!t->ages || !t->hold || !t->refault_pending || !t->written || (sync && !t->wrote_pending)) {
		err = -ENOMEM;
		goto fail;
	}
	memset(t->ages, TRACK_AGE_ABSENT, t->nr_pages);

	if (!(opts->flags & TRACK_F_REGISTERED)) {
		err = register_own(t);
		if (err < 0) {
			log_err(t->log, "cannot register %llu bytes for write tracking: %s",
				(unsigned long long)opts->len_bytes, strerror(-err));
			goto fail;
		}
	}
	t->pagemap = SYS(t->sys, open, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
	if (t->pagemap < 0) {
		err = negative_errno();
		goto fail;
	}
	if (sync)
		t->zero_pfn = zero_pfn(t);
	/* Protect what is present now; ages start at 0 for present pages. */
	err = track_scan(t);
	if (err < 0) {
		log_err(t->log, "%s on the tracked range failed: %s%s",
			sync ? "write-protecting" : "PAGEMAP_SCAN", strerror(-err),
			err == -EPERM ? " (range not registered WP on a WP_ASYNC userfaultfd)" : "");
		goto fail;
	}
	*ret = t;
	return 0;
fail:
	track_free(t);
	return err;
}

void track_free(struct track *t)
{
	if (!t)
		return;
	if (t->uffd >= 0) {
		/* Closing the uffd unregisters and lifts every protection. */
		close(t->uffd);
	}
	if (t->pagemap >= 0)
		close(t->pagemap);
	if (t->own_ages)
		free(t->ages);
	free(t->hold);
	free(t->refault_pending);
	free(t->written);
	free(t->wrote_pending);
	free(t);
}
