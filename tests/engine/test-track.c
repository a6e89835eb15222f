/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: cold-page tracking on real userfaultfd WP_ASYNC and real
 * PAGEMAP_SCAN. Skips with the reason where the kernel lacks them (< 6.7)
 * or userfaultfd is not permitted. The "kernel facts" test pins down what
 * the engine integration relies on (see track.c's top comment).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <ovc/common.h>

#include "engine/compat.h"
#include "fault-inject.h"
#include "ovc-test.h"
#include "engine/track.h"
#include "common/util.h"

#define PG 4096u

static void need_tracking(void)
{
	const char *why;
	int err = track_probe(NULL, &why);
	if (err < 0)
		skip_because("%s (%s)", why, ovc_strerror(err));
}

static char *map_pages(size_t n, bool populate)
{
	char *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0), -1, 0);
	assert_true(p != MAP_FAILED);
	if (populate)
		for (size_t i = 0; i < n; i++)
			p[i * PG] = 1; /* private anonymous pages, not the zero page */
	return p;
}

static struct track *new_track(char *mem, size_t n, unsigned flags, unsigned hot,
			       const struct sys_ops *sys, int *ret_err)
{
	struct track_opts o = {
		.size = sizeof(o), .start = mem, .len_bytes = n * PG, .flags = flags,
		.hot_intervals = hot, .sys = sys,
	};
	struct track *t = NULL;
	*ret_err = track_new(&o, &t);
	return t;
}

static void test_probe(void **state)
{
	const char *why = NULL;
	int err = track_probe(NULL, &why);
	assert_non_null(why);
	print_message("probe: %d, %s\n", err, why);
	if (err < 0)
		skip_because("%s", why);
	assert_int_equal(err, 0);
}

/* Kernels without the features: the probe reports -ENOSYS and says which.
 * Emulated by hiding WP_ASYNC from UFFDIO_API, or failing PAGEMAP_SCAN with
 * ENOTTY the way a pre-6.7 kernel answers an unknown ioctl. */
struct hide {
	struct sys_ops sys;
	unsigned long fail_req; /* this ioctl fails with ENOTTY */
	bool strip_wp_async;    /* UFFDIO_API does not report WP_ASYNC */
};

static int hide_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct hide *h = ctx;
	if (req == h->fail_req) {
		errno = ENOTTY;
		return -1;
	}
	int r = ioctl(fd, req, arg);
	if (r == 0 && req == UFFDIO_API && h->strip_wp_async)
		((struct uffdio_api *)arg)->features &= ~(uint64_t)UFFD_FEATURE_WP_ASYNC;
	return r;
}

static void test_probe_fallback(void **state)
{
	struct hide h = { .sys = sys_default, .strip_wp_async = true };
	const char *why;

	need_tracking();
	h.sys.ctx = &h;
	h.sys.ioctl = hide_ioctl;
	assert_int_equal(track_probe(&h.sys, &why), -ENOSYS);
	print_message("without WP_ASYNC: %s\n", why);
	assert_non_null(strstr(why, "WP_ASYNC"));
	char *mem = map_pages(4, true);
	int err;
	assert_null(new_track(mem, 4, 0, 0, &h.sys, &err));
	assert_int_equal(err, -ENOSYS);

	h = (struct hide){ .sys = sys_default, .fail_req = PAGEMAP_SCAN };
	h.sys.ctx = &h;
	h.sys.ioctl = hide_ioctl;
	assert_int_equal(track_probe(&h.sys, &why), -ENOSYS);
	print_message("without PAGEMAP_SCAN: %s\n", why);
	assert_non_null(strstr(why, "PAGEMAP_SCAN"));
	assert_null(new_track(mem, 4, 0, 0, &h.sys, &err));
	assert_int_equal(err, -ENOSYS);
	munmap(mem, 4 * PG);
}

static void test_bad_args(void **state)
{
	struct track *t = (void *)0x1;
	char *mem = map_pages(4, true);
	struct track_opts o = { .size = sizeof(o), .start = mem + 1, .len_bytes = PG };

	assert_int_equal(track_new(&o, &t), -EINVAL);
	o.start = mem;
	o.len_bytes = 100;
	assert_int_equal(track_new(&o, &t), -EINVAL);
	o.len_bytes = 0;
	assert_int_equal(track_new(&o, &t), -EINVAL);
	o.len_bytes = PG;
	o.flags = 1u << 7;
	assert_int_equal(track_new(&o, &t), -EINVAL);
	o.flags = 0;
	o.size = 8;
	assert_int_equal(track_new(&o, &t), -EINVAL);
	assert_ptr_equal(t, (void *)0x1);
	track_free(NULL);

	need_tracking();
	/* The caller says it registered the range but did not. */
	o.size = sizeof(o);
	o.flags = TRACK_F_REGISTERED;
	int err = track_new(&o, &t);
	print_message("unregistered range with TRACK_F_REGISTERED: %s\n", ovc_strerror(err));
	assert_true(err < 0);
	assert_ptr_equal(t, (void *)0x1);
	munmap(mem, 4 * PG);
}

/* A known hot set (20%, written every interval) and a cold set (80%, only
 * read): after a few intervals track_cold() names at least 90% of the cold
 * set and under 5% of the hot set. Reads must not make pages hot. */
static void test_hot_cold(void **state)
{
	const size_t n = 8192; /* 32 MiB */
	const unsigned intervals = 6, min_age = 3;
	uint64_t s = 0x9e3779b97f4a7c15;
	int err;

	need_tracking();
	char *mem = map_pages(n, true);
	bool *hot = calloc(n, sizeof(*hot));
	size_t nhot = 0;
	while (nhot < n / 5) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		size_t i = s % n;
		if (!hot[i])
			hot[i] = true, nhot++;
	}
	struct track *t = new_track(mem, n, 0, 0, NULL, &err);
	assert_ovc_ok(err);
	for (unsigned k = 0; k < intervals; k++) {
		volatile char sink = 0;
		for (size_t i = 0; i < n; i++) {
			if (hot[i])
				mem[i * PG + (k * 64) % PG] = (char)k;
			else
				sink += mem[i * PG + 8];
		}
		(void)sink;
		int w = track_scan(t);
		assert_true(w >= 0);
		assert_int_equal((size_t)w, nhot); /* exactly the hot set was written */
	}
	uint64_t *cold = malloc(n * sizeof(*cold));
	size_t nc = track_cold(t, min_age, cold, n, NULL, NULL);
	size_t cold_found = 0, hot_found = 0;
	for (size_t i = 0; i < nc; i++) {
		if (hot[cold[i]])
			hot_found++;
		else
			cold_found++;
		if (i)
			assert_true(track_age(t, cold[i]) <= track_age(t, cold[i - 1])); /* oldest first */
	}
	print_message("after %u intervals: %zu of %zu cold pages found (%.1f%%), %zu of %zu hot pages "
		      "(%.1f%%)\n",
		      intervals, cold_found, n - nhot, 100.0 * cold_found / (n - nhot), hot_found, nhot,
		      100.0 * hot_found / nhot);
	assert_true(cold_found * 10 >= (n - nhot) * 9);
	assert_true(hot_found * 20 < nhot);
	/* max cuts the list, oldest first. */
	assert_int_equal(track_cold(t, min_age, cold, 10, NULL, NULL), 10);
	track_free(t);
	free(cold);
	free(hot);
	munmap(mem, n * PG);
}

/* A page reported as refaulted stays out of the cold list for K intervals,
 * then ages again like any page. Reported from another thread. */
static void *refault_thread(void *arg)
{
	struct track *t = arg;
	track_refault(t, 5);
	track_refault(t, 1u << 30); /* out of range: ignored */
	return NULL;
}

static void test_refault(void **state)
{
	const size_t n = 64;
	const unsigned K = 4;
	uint64_t cold[64];
	int err;

	need_tracking();
	char *mem = map_pages(n, true);
	struct track *t = new_track(mem, n, 0, K, NULL, &err);
	assert_ovc_ok(err);
	for (int i = 0; i < 3; i++)
		assert_int_equal(track_scan(t), 0);
	assert_int_equal(track_age(t, 5), 3);
	assert_int_equal(track_cold(t, 2, cold, n, NULL, NULL), n);

	pthread_t th;
	pthread_create(&th, NULL, refault_thread, t);
	pthread_join(th, NULL);
	/* Held for K scans (age back to 0 at the K-th), then cold once it is
	 * min_age old again: out of the list for K + min_age - 1 scans. */
	for (unsigned k = 1; k <= K + 1; k++) {
		assert_true(track_scan(t) >= 0);
		size_t nc = track_cold(t, 2, cold, n, NULL, NULL);
		bool listed = false;
		for (size_t i = 0; i < nc; i++)
			listed |= cold[i] == 5;
		/* held for K scans, then age 0, 1, 2 ... */
		print_message("interval %u after refault: age %u, %s\n", k, track_age(t, 5),
			      listed ? "cold" : "held/hot");
		assert_false(listed);
	}
	assert_true(track_scan(t) >= 0);
	size_t nc = track_cold(t, 2, cold, n, NULL, NULL);
	bool listed = false;
	for (size_t i = 0; i < nc; i++)
		listed |= cold[i] == 5;
	assert_true(listed);
	track_free(t);
	munmap(mem, n * PG);
}

/* The ages can live in the caller's array (the engine's page table): the
 * tracker writes there and nowhere else. */
static void test_caller_ages(void **state)
{
	const size_t n = 16;
	uint8_t ages[16 + 1];

	need_tracking();
	char *mem = map_pages(n, false);
	for (size_t i = 0; i < n; i += 2)
		mem[i * PG] = 1; /* even pages present, odd ones holes */
	ages[n] = 0x5a; /* guard */
	struct track_opts o = { .size = sizeof(o), .start = mem, .len_bytes = n * PG, .ages = ages };
	struct track *t;
	assert_ovc_ok(track_new(&o, &t));
	assert_int_equal(track_scan(t), 0);
	mem[2 * PG] = 2;
	assert_int_equal(track_scan(t), 1);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ages[i], i % 2 ? TRACK_AGE_ABSENT : i == 2 ? 0 : 2);
	assert_int_equal(ages[n], 0x5a);
	track_free(t);
	assert_int_equal(ages[0], 2); /* still the caller's */
	munmap(mem, n * PG);
}

/* track_cold's filter: refused pages take no place in a bounded list; and a
 * filter that answers otherwise on the second pass (the caller's pages
 * changed state) leaves no duplicate, no gap and no page it refused. */
static bool keep_odd(void *ctx, uint64_t page)
{
	(void)ctx;
	return page % 2;
}

static bool keep_fickle(void *ctx, uint64_t page)
{
	unsigned *calls = ctx;
	/* First pass: all 64; then refuse every third. */
	return ++*calls <= 64 || (*calls % 3 && page != 63);
}

static void test_cold_keep(void **state)
{
	const size_t n = 64;
	uint8_t ages[64];
	uint64_t cold[64];

	need_tracking();
	char *mem = map_pages(n, true);
	struct track_opts o = { .size = sizeof(o), .start = mem, .len_bytes = n * PG, .ages = ages };
	struct track *t;
	assert_ovc_ok(track_new(&o, &t));
	for (size_t i = 0; i < n; i++)
		ages[i] = (uint8_t)(i % 8 + 1);
	/* Odd pages are 2, 4, 6, 8 old, 8 of each: the 10 oldest are the 8 of
	 * age 8 and 2 of age 6. Without the filter, even pages would take
	 * half of the places. */
	size_t k = track_cold(t, 2, cold, 10, keep_odd, NULL);
	assert_int_equal(k, 10);
	for (size_t i = 0; i < k; i++) {
		assert_true(cold[i] % 2);
		assert_int_equal(ages[cold[i]], i < 8 ? 8 : 6);
	}
	unsigned calls = 0;
	k = track_cold(t, 2, cold, 40, keep_fickle, &calls);
	assert_true(k > 0 && k <= 40);
	bool seen[64] = { false };
	for (size_t i = 0; i < k; i++) {
		assert_true(cold[i] < n && cold[i] != 63 && !seen[cold[i]]);
		seen[cold[i]] = true;
		assert_true(ages[cold[i]] >= 2);
		if (i)
			assert_true(ages[cold[i]] <= ages[cold[i - 1]]);
	}
	print_message("fickle filter: %zu of at most 40 listed\n", k);
	track_free(t);
	munmap(mem, n * PG);
}

/* Every syscall of track_new fails once in turn: the error comes back and
 * nothing leaks (ASan), the range is left unregistered (a later track_new
 * on it works). */
static void test_inject(void **state)
{
	struct fault_inject fi;
	const size_t n = 16;
	int err;

	need_tracking();
	char *mem = map_pages(n, true);
	fault_inject_init(&fi, 0, 0, 0);
	struct track *t = new_track(mem, n, 0, 0, &fi.sys, &err);
	assert_ovc_ok(err);
	track_free(t);
	long calls = atomic_load(&fi.calls);
	assert_true(calls >= 6);
	unsigned absorbed = 0;
	for (long k = 1; k <= calls; k++) {
		fault_inject_init(&fi, k, ENOMEM, 0);
		t = new_track(mem, n, 0, 0, &fi.sys, &err);
		if (err == 0) {
			/* Only the way to a uffd may fail harmlessly: when the
			 * open of /dev/userfaultfd or its USERFAULTFD_IOC_NEW
			 * fails, sys_open_uffd falls back to the syscall. */
			absorbed++;
			track_free(t);
			continue;
		}
		assert_null(t);
		assert_int_equal(err, -ENOMEM);
	}
	assert_true(absorbed <= 4); /* 2 calls x (probe + track_new) */
	/* A failing scan returns the error and leaves every age alone. */
	fault_inject_init(&fi, 0, EIO, 1u << OVC_SYS_IOCTL);
	t = new_track(mem, n, 0, 0, &fi.sys, &err);
	assert_ovc_ok(err);
	assert_int_equal(track_scan(t), 0);
	mem[3 * PG] = 1;
	fi.fail_at = atomic_load(&fi.calls) + 1;
	assert_int_equal(track_scan(t), -EIO);
	assert_int_equal(track_age(t, 3), 1);
	assert_int_equal(track_age(t, 4), 1);
	assert_int_equal(track_scan(t), 1); /* the write is still seen */
	assert_int_equal(track_age(t, 3), 0);
	assert_int_equal(track_age(t, 4), 2);
	track_free(t);
	munmap(mem, n * PG);
}

/* ------------------------------------------------------------------------
 * The engine's set-up: one uffd with WP_ASYNC, the range registered
 * MISSING | WP, a handler thread serving MISSING faults with the zero page.
 * Pins down the kernel facts the engine integration relies on.
 */
struct engine_sim {
	int uffd;
	char *mem;
	atomic_int faults, zeropage_eexist, other_msgs;
	atomic_bool stop;
};

static void *handler(void *arg)
{
	struct engine_sim *e = arg;
	static char zeros[PG] __attribute__((aligned(PG)));

	while (!atomic_load(&e->stop)) {
		struct pollfd p = { .fd = e->uffd, .events = POLLIN };
		if (poll(&p, 1, 50) <= 0)
			continue;
		struct uffd_msg m;
		if (read(e->uffd, &m, sizeof(m)) != sizeof(m))
			continue;
		if (m.event != UFFD_EVENT_PAGEFAULT) {
			atomic_fetch_add(&e->other_msgs, 1);
			continue;
		}
		atomic_fetch_add(&e->faults, 1);
		uint64_t addr = m.arg.pagefault.address & ~(uint64_t)(PG - 1);
		struct uffdio_zeropage z = { .range = { addr, PG } };
		if (ioctl(e->uffd, UFFDIO_ZEROPAGE, &z) < 0 && errno == EEXIST) {
			/* A pte marker (or a race): COPY works where ZEROPAGE does not. */
			atomic_fetch_add(&e->zeropage_eexist, 1);
			struct uffdio_copy c = { .dst = addr, .src = (uintptr_t)zeros, .len = PG };
			if (ioctl(e->uffd, UFFDIO_COPY, &c) < 0) {
				struct uffdio_range r = { addr, PG };
				ioctl(e->uffd, UFFDIO_WAKE, &r);
			}
		}
	}
	return NULL;
}

static void *write_page(void *arg)
{
	*(volatile char *)arg = 42;
	return NULL;
}

static void test_engine_uffd(void **state)
{
	const size_t n = 32;
	struct engine_sim e = { 0 };
	int err;

	need_tracking();
	e.uffd = sys_open_uffd(&sys_default, O_CLOEXEC | O_NONBLOCK);
	assert_true(e.uffd >= 0);
	struct uffdio_api probe_api = { .api = UFFD_API };
	int pfd = sys_open_uffd(&sys_default, O_CLOEXEC);
	assert_int_equal(ioctl(pfd, UFFDIO_API, &probe_api), 0);
	close(pfd);
	bool have_move = probe_api.features & UFFD_FEATURE_MOVE;
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_EVENT_REMOVE |
			    (have_move ? UFFD_FEATURE_MOVE : 0),
	};
	assert_int_equal(ioctl(e.uffd, UFFDIO_API, &api), 0);
	/* mem: pages 0-7 holes, 8-31 present. staging: for UFFDIO_MOVE, which
	 * wants both ends registered on the same uffd. */
	e.mem = map_pages(n, false);
	char *staging = map_pages(4, false);
	for (size_t i = 8; i < n; i++)
		e.mem[i * PG] = (char)i;
	struct uffdio_register reg = {
		.range = { (uintptr_t)e.mem, n * PG },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	assert_int_equal(ioctl(e.uffd, UFFDIO_REGISTER, &reg), 0);
	assert_true(reg.ioctls & (UINT64_C(1) << _UFFDIO_WRITEPROTECT));
	struct uffdio_register sreg = {
		.range = { (uintptr_t)staging, 4 * PG }, .mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	assert_int_equal(ioctl(e.uffd, UFFDIO_REGISTER, &sreg), 0);
	pthread_t h;
	pthread_create(&h, NULL, handler, &e);

	struct track *t = new_track(e.mem, n, TRACK_F_REGISTERED, 0, NULL, &err);
	assert_ovc_ok(err);
	assert_int_equal(track_age(t, 0), TRACK_AGE_ABSENT); /* hole */
	assert_int_equal(track_age(t, 8), 0);                /* present */

	/* 1+4: a read of a hole after the reset scan is a MISSING fault and the
	 * zero page can be mapped there: no marker on holes. */
	volatile char c = e.mem[0];
	(void)c;
	assert_int_equal(atomic_load(&e.faults), 1);
	assert_int_equal(atomic_load(&e.zeropage_eexist), 0);
	/* 5: a zero page is ABSENT for the tracker; written, it is a page. */
	struct uffdio_zeropage z = { .range = { (uintptr_t)e.mem + PG, PG } };
	assert_int_equal(ioctl(e.uffd, UFFDIO_ZEROPAGE, &z), 0);
	assert_int_equal(track_scan(t), 0);
	assert_int_equal(track_age(t, 0), TRACK_AGE_ABSENT);
	assert_int_equal(track_age(t, 1), TRACK_AGE_ABSENT);
	assert_int_equal(track_age(t, 9), 1);
	e.mem[PG] = 1; /* silent copy-on-write, no message */
	assert_int_equal(track_scan(t), 1);
	assert_int_equal(track_age(t, 1), 0);
	assert_int_equal(atomic_load(&e.faults), 1);

	/* 2: UFFDIO_WRITEPROTECT does not stop a writer on a WP_ASYNC uffd. */
	struct uffdio_writeprotect wp = { .range = { (uintptr_t)e.mem + 10 * PG, PG },
					  .mode = UFFDIO_WRITEPROTECT_MODE_WP };
	assert_int_equal(ioctl(e.uffd, UFFDIO_WRITEPROTECT, &wp), 0);
	pthread_t w;
	pthread_create(&w, NULL, write_page, e.mem + 10 * PG);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	assert_int_equal(pthread_timedjoin_np(w, NULL, &ts), 0); /* did not block */
	assert_int_equal(atomic_load(&e.faults), 1);            /* no message */
	assert_int_equal(track_scan(t), 1);
	assert_int_equal(track_age(t, 10), 0);

	/* 6: UFFDIO_COPY into a hole: written at the next scan. */
	static char buf[PG] __attribute__((aligned(PG)));
	memset(buf, 7, PG);
	struct uffdio_copy cp = { .dst = (uintptr_t)e.mem + 2 * PG, .src = (uintptr_t)buf, .len = PG };
	assert_int_equal(ioctl(e.uffd, UFFDIO_COPY, &cp), 0);
	assert_int_equal(track_scan(t), 1);
	assert_int_equal(track_age(t, 2), 0);

	if (have_move) {
		/* Move out (swap-out's first step): the page becomes a hole,
		 * ABSENT; after another reset scan it can be moved back. */
		struct uffdio_move mv = { .dst = (uintptr_t)staging, .src = (uintptr_t)e.mem + 12 * PG,
					  .len = PG };
		assert_int_equal(ioctl(e.uffd, UFFDIO_MOVE, &mv), 0);
		assert_true(track_scan(t) >= 0);
		assert_int_equal(track_age(t, 12), TRACK_AGE_ABSENT);
		assert_true(track_scan(t) >= 0);
		struct uffdio_move back = { .dst = (uintptr_t)e.mem + 12 * PG,
					    .src = (uintptr_t)staging, .len = PG };
		assert_int_equal(ioctl(e.uffd, UFFDIO_MOVE, &back), 0);
		assert_int_equal(e.mem[12 * PG], 12);
		/* An unregistered staging area is refused. */
		char *plain = map_pages(1, true);
		struct uffdio_move bad = { .dst = (uintptr_t)plain, .src = (uintptr_t)e.mem + 13 * PG,
					   .len = PG };
		assert_int_equal(ioctl(e.uffd, UFFDIO_MOVE, &bad), -1);
		assert_int_equal(errno, EINVAL);
		munmap(plain, PG);
	}
	assert_int_equal(atomic_load(&e.zeropage_eexist), 0);
	atomic_store(&e.stop, true);
	pthread_join(h, NULL);
	track_free(t);
	close(e.uffd);
	munmap(e.mem, n * PG);
	munmap(staging, 4 * PG);
}

/* The reason the reset scan leaves holes alone: matching WRITTEN alone puts
 * uffd-wp markers on holes, and UFFDIO_ZEROPAGE then fails with EEXIST. If
 * this test ever fails, a kernel changed and track.c's point 3 can go. */
static void test_marker_fact(void **state)
{
	need_tracking();
	int uffd = sys_open_uffd(&sys_default, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC };
	assert_int_equal(ioctl(uffd, UFFDIO_API, &api), 0);
	char *mem = map_pages(4, false);
	struct uffdio_register reg = {
		.range = { (uintptr_t)mem, 4 * PG },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	assert_int_equal(ioctl(uffd, UFFDIO_REGISTER, &reg), 0);
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	struct page_region v[4];
	struct pm_scan_arg a = {
		.size = sizeof(a), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = (uintptr_t)mem, .end = (uintptr_t)mem + 4 * PG, .vec = (uintptr_t)v,
		.vec_len = 4, .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
	};
	assert_true(ioctl(pm, PAGEMAP_SCAN, &a) >= 0);
	struct uffdio_zeropage z = { .range = { (uintptr_t)mem, PG } };
	int r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
	print_message("ZEROPAGE onto a hole after a WRITTEN-only reset: %d (%s)\n", r,
		      r ? strerror(errno) : "ok");
	assert_int_equal(r, -1);
	assert_int_equal(errno, EEXIST);
	struct uffdio_copy cp = { .dst = (uintptr_t)mem, .src = (uintptr_t)mem + PG, .len = PG };
	static char src[PG] __attribute__((aligned(PG)));
	cp.src = (uintptr_t)src;
	assert_int_equal(ioctl(uffd, UFFDIO_COPY, &cp), 0); /* COPY still works */
	close(pm);
	close(uffd);
	munmap(mem, 4 * PG);
}

/* --- sync mode (TRACK_F_SYNC): write-protect faults, as before 6.7 ------ */

/* The caller's side of sync mode: a uffd without WP_ASYNC registered
 * MISSING | WP, and a handler thread that answers write-protect faults with
 * track_wrote() + unprotect under the lock, and holes with the zero page. */
struct sync_env {
	int uffd;
	pthread_mutex_t lock;
	_Atomic(struct track *) t;
	char *mem;
	size_t n;
	atomic_bool stop;
	atomic_long wp_faults;
	pthread_t th;
};

static void *sync_handler(void *arg)
{
	struct sync_env *v = arg;
	struct pollfd pfd = { .fd = v->uffd, .events = POLLIN };
	while (!atomic_load(&v->stop)) {
		struct uffd_msg m;
		if (poll(&pfd, 1, 10) <= 0 || read(v->uffd, &m, sizeof(m)) != sizeof(m) ||
		    m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t addr = m.arg.pagefault.address & ~(uint64_t)(PG - 1);
		pthread_mutex_lock(&v->lock);
		if (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
			struct track *t = atomic_load(&v->t);
			if (t)
				track_wrote(t, (addr - (uintptr_t)v->mem) / PG);
			/* Counted before the unprotect wakes the writer. */
			atomic_fetch_add(&v->wp_faults, 1);
			struct uffdio_writeprotect u = { .range = { addr, PG }, .mode = 0 };
			assert_int_equal(ioctl(v->uffd, UFFDIO_WRITEPROTECT, &u), 0);
		} else {
			struct uffdio_zeropage z = { .range = { addr, PG } };
			ioctl(v->uffd, UFFDIO_ZEROPAGE, &z);
		}
		pthread_mutex_unlock(&v->lock);
	}
	return NULL;
}

static void sync_env_start(struct sync_env *v, size_t n, size_t present)
{
	const char *why;
	if (track_probe_sync(NULL, &why) < 0)
		skip_because("%s", why);
	*v = (struct sync_env){ .n = n };
	pthread_mutex_init(&v->lock, NULL);
	v->mem = map_pages(n, false);
	for (size_t i = 0; i < present; i++)
		v->mem[i * PG] = 1;
	v->uffd = sys_open_uffd(&sys_default, O_CLOEXEC | O_NONBLOCK);
	assert_true(v->uffd >= 0);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	assert_int_equal(ioctl(v->uffd, UFFDIO_API, &api), 0);
	struct uffdio_register reg = { .range = { (uintptr_t)v->mem, n * PG },
				       .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP };
	assert_int_equal(ioctl(v->uffd, UFFDIO_REGISTER, &reg), 0);
	assert_int_equal(pthread_create(&v->th, NULL, sync_handler, v), 0);
}

static struct track *sync_track(struct sync_env *v, const struct sys_ops *sys, int *err)
{
	struct track_opts o = { .size = sizeof(o), .start = v->mem, .len_bytes = v->n * PG,
				.flags = TRACK_F_REGISTERED | TRACK_F_SYNC, .sys = sys,
				.uffd = v->uffd, .lock = &v->lock };
	struct track *t = NULL;
	*err = track_new(&o, &t);
	atomic_store(&v->t, t);
	return t;
}

static void sync_env_stop(struct sync_env *v)
{
	struct track *t = atomic_exchange(&v->t, NULL);
	atomic_store(&v->stop, true);
	pthread_join(v->th, NULL);
	track_free(t);
	close(v->uffd);
	munmap(v->mem, v->n * PG);
	pthread_mutex_destroy(&v->lock);
}

/* Written pages age 0, others age, holes are absent; the protection leaves
 * holes plain (UFFDIO_ZEROPAGE works on them: no markers). */
static void test_sync_mode(void **state)
{
	struct sync_env v;
	int err;
	sync_env_start(&v, 64, 48);
	struct track *t = sync_track(&v, NULL, &err);
	assert_int_equal(err, 0);
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(track_age(t, i), i < 48 ? 0 : TRACK_AGE_ABSENT);

	for (size_t i = 0; i < 8; i++)
		v.mem[i * PG + 5] = 2; /* write-protect faults, one each */
	assert_int_equal(atomic_load(&v.wp_faults), 8);
	assert_true(track_wrote_since_scan(t, 3));
	assert_false(track_wrote_since_scan(t, 30));
	assert_int_equal(track_scan(t), 8);
	assert_false(track_wrote_since_scan(t, 3));
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(track_age(t, i), i < 8 ? 0 : i < 48 ? 1 : TRACK_AGE_ABSENT);

	/* Holes stay plain holes under the range-wide protect. */
	struct uffdio_zeropage z = { .range = { (uintptr_t)v.mem + 60 * PG, PG } };
	assert_int_equal(ioctl(v.uffd, UFFDIO_ZEROPAGE, &z), 0);

	v.mem[0] = 3;
	v.mem[40 * PG] = 3;
	assert_int_equal(track_scan(t), 2);
	for (size_t i = 0; i < 48; i++)
		assert_int_equal(track_age(t, i), i == 0 || i == 40 ? 0 : i < 8 ? 1 : 2);
	/* The zero page: absent when pagemap shows PFNs (root), else a
	 * present page seen for the first time. */
	assert_true(track_age(t, 60) == TRACK_AGE_ABSENT || track_age(t, 60) == 0);
	assert_int_equal(track_age(t, 61), TRACK_AGE_ABSENT);
	uint64_t cold[64];
	size_t nc = track_cold(t, 2, cold, 64, NULL, NULL);
	assert_int_equal(nc, 48 - 8 - 1);
	for (size_t i = 0; i < nc; i++)
		assert_true(cold[i] >= 8 && cold[i] < 48 && cold[i] != 40);
	sync_env_stop(&v);
}

/* A failed protect or pagemap read fails the scan and loses no write: the
 * bits taken go back, and the next scan reports them. */
static void test_sync_inject(void **state)
{
	static const unsigned ops[] = { OVC_SYS_IOCTL, OVC_SYS_PREAD };
	for (size_t k = 0; k < ARRAY_SIZE(ops); k++) {
		struct sync_env v;
		struct fault_inject fi;
		int err;
		fault_inject_init(&fi, 0, EIO, 1u << ops[k]);
		sync_env_start(&v, 32, 32);
		struct track *t = sync_track(&v, &fi.sys, &err);
		assert_int_equal(err, 0);
		v.mem[4 * PG] = 9;
		fi.fail_at = atomic_load(&fi.calls) + 1;
		assert_int_equal(track_scan(t), -EIO);
		assert_int_equal(atomic_load(&fi.injected), 1);
		assert_true(track_wrote_since_scan(t, 4));
		assert_int_equal(track_scan(t), 1);
		assert_int_equal(track_age(t, 4), 0);
		assert_int_equal(track_age(t, 5), 1); /* aged once: the failed scan changed no age */
		sync_env_stop(&v);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe),
		cmocka_unit_test(test_probe_fallback),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_hot_cold),
		cmocka_unit_test(test_refault),
		cmocka_unit_test(test_caller_ages),
		cmocka_unit_test(test_cold_keep),
		cmocka_unit_test(test_inject),
		cmocka_unit_test(test_engine_uffd),
		cmocka_unit_test(test_marker_fact),
		cmocka_unit_test(test_sync_mode),
		cmocka_unit_test(test_sync_inject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
