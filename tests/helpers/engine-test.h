/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers for the engine suites: guest RAM of both backings, an engine in
 * either drive mode, and a stand-in for the VMM's event loop thread.
 * Real userfaultfd throughout; nothing here is mocked.
 */
#ifndef OVC_ENGINE_TEST_H
#define OVC_ENGINE_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ovc/ovc.h>

#include "engine/compat.h"
#include "engine/testing.h"
#include "ovc-test.h"

enum backing { BACK_ANON, BACK_MEMFD };

struct guest_ram {
	uint8_t *p;
	size_t len;
	enum backing kind;
};

static inline void guest_ram_alloc(struct guest_ram *g, size_t len, enum backing kind)
{
	g->len = len;
	g->kind = kind;
	if (kind == BACK_ANON) {
		g->p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else {
		int fd = memfd_create("ovc-test-guest", MFD_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, (off_t)len), 0);
		g->p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	}
	assert_true(g->p != MAP_FAILED);
}

static inline void guest_ram_free(struct guest_ram *g)
{
	munmap(g->p, g->len);
}

/* Skip unless this machine can run an engine at all. */
static inline void need_uffd(void)
{
	int fd = sys_open_uffd(&sys_default, O_CLOEXEC);
	if (fd == -ENOSYS)
		skip_because("kernel without userfaultfd");
	if (fd < 0)
		skip_because("no userfaultfd permission: %s", ovc_strerror(fd));
	close(fd);
}

static inline bool kernel_has_move(void)
{
	int fd = sys_open_uffd(&sys_default, O_CLOEXEC);
	struct uffdio_api api = { .api = UFFD_API };
	bool r = fd >= 0 && ioctl(fd, UFFDIO_API, &api) == 0 && (api.features & UFFD_FEATURE_MOVE);
	if (fd >= 0)
		close(fd);
	return r;
}

/* The VMM's loop for OVC_ENGINE_NO_THREADS: poll the engine fd, process. */
struct loop {
	ovc_engine *e;
	pthread_t t;
	atomic_bool stop;
	atomic_bool scan;        /* also run ovc_engine_scan_sync() back to back */
	atomic_bool swap;        /* and a swap interval after each scan */
	atomic_bool in_pass;     /* a scan (and swap interval) is under way */
	atomic_long once;        /* run this many passes, then idle (loop_one_pass) */
	atomic_long passes;
	atomic_long reclaimed;
	atomic_long errors;
};

static inline void *loop_main(void *arg)
{
	struct loop *l = arg;
	struct pollfd pfd = { .fd = ovc_engine_fd(l->e, 0), .events = POLLIN };
	while (!atomic_load(&l->stop)) {
		poll(&pfd, 1, atomic_load(&l->scan) ? 0 : 5);
		/* An error (an injected failed read) is the VMM's to log;
		 * the loop goes on, as a VMM's would. */
		if (ovc_engine_process(l->e, 0) < 0)
			atomic_fetch_add(&l->errors, 1);
		/* in_pass first, scan second (loop_stop_scan reads them the
		 * other way round): no pass begins once it saw in_pass off. */
		atomic_store(&l->in_pass, true);
		bool once = atomic_load(&l->once) > 0;
		if (atomic_load(&l->scan) || once) {
			int64_t n = ovc_engine_scan_sync(l->e, 0);
			if (n > 0)
				atomic_fetch_add(&l->reclaimed, n);
			if (atomic_load(&l->swap) && engine_test_swap_tick(l->e) < 0)
				atomic_fetch_add(&l->errors, 1);
			if (once)
				atomic_fetch_sub(&l->once, 1);
			atomic_fetch_add(&l->passes, 1);
		}
		atomic_store(&l->in_pass, false);
	}
	return NULL;
}

/* Stop scanning (the loop keeps serving faults) and wait for the pass under
 * way, if any: no page is swapped out or reclaimed after this returns. */
static inline void loop_stop_scan(struct loop *l)
{
	atomic_store(&l->scan, false);
	while (atomic_load(&l->in_pass))
		sched_yield();
}

/* Exactly one pass (and swap interval, with l->swap) on the loop thread,
 * which must not be scanning; returns when it is done. */
static inline void loop_one_pass(struct loop *l)
{
	long p0 = atomic_load(&l->passes);
	atomic_store(&l->once, 1);
	while (atomic_load(&l->passes) < p0 + 1)
		sched_yield();
}

static inline void loop_start(struct loop *l, ovc_engine *e, bool scan)
{
	memset(l, 0, sizeof(*l));
	l->e = e;
	atomic_store(&l->scan, scan);
	assert_int_equal(pthread_create(&l->t, NULL, loop_main, l), 0);
}

static inline void loop_stop(struct loop *l)
{
	atomic_store(&l->stop, true);
	pthread_join(l->t, NULL);
}

static inline uint64_t engine_stat_zero_now(ovc_engine *e)
{
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_int_equal(ovc_engine_stats(e, &st), 0);
	return st.zero_pages_now;
}

/* One engine mode of the test matrix: drive (own threads or the VMM's
 * loop), path, backing, swap. Handed to each test as its state. */
struct engine_mode {
	const char *name;
	unsigned flags;          /* OVC_ENGINE_*; NO_AUTOSCAN is added */
	enum backing backing;
	bool swap;
};

/* Skip the mode where the kernel cannot run it. */
static inline void mode_need(const struct engine_mode *m)
{
	need_uffd();
	if (!(m->flags & OVC_ENGINE_NO_MOVE) && m->backing == BACK_ANON &&
	    (m->flags & (OVC_ENGINE_MOVE | OVC_ENGINE_NO_THREADS) || m->swap) && !kernel_has_move())
		skip_because("kernel without UFFDIO_MOVE (Linux < 6.8)");
}

/* Whether regions of @m give pages back without OVC_REGION_UNPINNED: only
 * anonymous memory on an engine with UFFDIO_MOVE (it refuses pinned
 * pages); shared memory and anonymous memory without MOVE keep them. */
static inline bool mode_pin_safe(unsigned engine_flags, enum backing backing)
{
	return backing == BACK_ANON && !(engine_flags & OVC_ENGINE_NO_MOVE) && kernel_has_move();
}

/* The region flag for a test whose only writers are CPUs (no pin, no other
 * mapping): OVC_REGION_UNPINNED where the engine needs that promise to
 * reclaim at all. */
static inline unsigned mode_cpu_only_flags(unsigned engine_flags, enum backing backing)
{
	return mode_pin_safe(engine_flags, backing) ? 0 : OVC_REGION_UNPINNED;
}

/* Options of @m for @guest_bytes of guest RAM: no timer; with swap, a swap
 * file as large as the guest RAM in /var/tmp and pages cold after one
 * interval (each forced tick is one). */
static inline struct ovc_engine_opts mode_opts(const struct engine_mode *m, size_t guest_bytes)
{
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = m->flags | OVC_ENGINE_NO_AUTOSCAN };
	if (m->swap) {
		o.swap_path = "/var/tmp";
		o.swap_size_bytes = guest_bytes;
		o.cold_age_usec = o.scan_interval_usec = 1000000;
	}
	return o;
}

/* Create the engine of @m through @sys (NULL: the real syscalls); skips
 * where this machine cannot swap. */
static inline ovc_engine *mode_engine_new(const struct engine_mode *m, size_t guest_bytes,
					  const struct sys_ops *sys)
{
	struct ovc_engine_opts o = mode_opts(m, guest_bytes);
	ovc_engine *e = NULL;
	int r = engine_test_new_with_sys(&o, sys ? sys : &sys_default, &e);
	if ((m->flags & OVC_ENGINE_SWAP_ENCRYPT) && r == -EOPNOTSUPP)
		skip_because("libovc built without libcrypto: no OVC_ENGINE_SWAP_ENCRYPT");
	if (m->swap && r == -EOPNOTSUPP)
		skip_because("no swap here: UFFDIO_MOVE, WP_ASYNC or O_DIRECT in /var/tmp missing");
	assert_ovc_ok(r);
	return e;
}

/* Reclaim without pause, as the VMM's own thread would drive it: scan
 * passes back to back, and with swap a forced swap interval after each
 * (pages unwritten since the last interval are cold and go out). */
struct driver {
	ovc_engine *e;
	bool swap;
	atomic_bool stop;
	atomic_long passes, reclaimed, errors;
	atomic_long last_err;    /* -errno of the last failed call, to report */
	pthread_t th;
};

static inline void *driver_main(void *arg)
{
	struct driver *d = arg;
	while (!atomic_load(&d->stop)) {
		int64_t n = ovc_engine_scan_sync(d->e, 0);
		if (n < 0) { /* no cmocka asserts off the main thread */
			atomic_fetch_add(&d->errors, 1);
			atomic_store(&d->last_err, (long)n);
		} else
			atomic_fetch_add(&d->reclaimed, n);
		int64_t sw = d->swap ? engine_test_swap_tick(d->e) : 0;
		if (sw < 0) {
			atomic_fetch_add(&d->errors, 1);
			atomic_store(&d->last_err, (long)sw);
		}
		atomic_fetch_add(&d->passes, 1);
	}
	return NULL;
}

/* The reclaim of a mode: the driver thread, or in NO_THREADS mode the loop
 * thread, which scans and ticks itself (a pass there reads the uffd, which
 * only the loop thread may do). */
struct reclaimer {
	bool loop;
	struct driver d;
	struct loop l;
};

static inline void reclaimer_start(struct reclaimer *rc, ovc_engine *e, const struct engine_mode *m)
{
	memset(rc, 0, sizeof(*rc));
	rc->loop = m->flags & OVC_ENGINE_NO_THREADS;
	if (rc->loop) {
		loop_start(&rc->l, e, true);
		atomic_store(&rc->l.swap, m->swap);
	} else {
		rc->d.e = e;
		rc->d.swap = m->swap;
		assert_int_equal(pthread_create(&rc->d.th, NULL, driver_main, &rc->d), 0);
	}
}

static inline long reclaimer_passes(struct reclaimer *rc)
{
	return atomic_load(rc->loop ? &rc->l.passes : &rc->d.passes);
}

/* Wait for @n more passes: counted in passes, never in time. */
static inline void reclaimer_wait_passes(struct reclaimer *rc, long n)
{
	for (long p0 = reclaimer_passes(rc); reclaimer_passes(rc) < p0 + n;)
		sched_yield();
}

/* Stop reclaiming; the loop (NO_THREADS) keeps serving faults until
 * reclaimer_stop(). Returns failed passes; *reclaimed: pages reclaimed. */
static inline long reclaimer_stop_scan(struct reclaimer *rc, long *reclaimed, long *last_err)
{
	if (rc->loop) {
		loop_stop_scan(&rc->l);
		*reclaimed = atomic_load(&rc->l.reclaimed);
		*last_err = 0;
		return atomic_load(&rc->l.errors);
	}
	atomic_store(&rc->d.stop, true);
	pthread_join(rc->d.th, NULL);
	*reclaimed = atomic_load(&rc->d.reclaimed);
	*last_err = atomic_load(&rc->d.last_err);
	return atomic_load(&rc->d.errors);
}

/* After reclaimer_stop_scan(): the loop thread goes too. */
static inline void reclaimer_stop(struct reclaimer *rc)
{
	if (rc->loop)
		loop_stop(&rc->l);
}

/* Pages of @guest that differ from @shadow; the first few are printed. */
static inline long shadow_compare(const uint8_t *guest, const uint8_t *shadow, size_t npages, const char *what)
{
	long bad = 0;
	for (size_t p = 0; p < npages; p++)
		if (memcmp(guest + p * 4096, shadow + p * 4096, 4096) != 0) {
			if (bad < 10) {
				size_t b = 0;
				while (guest[p * 4096 + b] == shadow[p * 4096 + b])
					b++;
				fprintf(stderr, "%s: page %zu differs from its shadow: byte %zu is %u, shadow %u\n",
					what, p, b, guest[p * 4096 + b], shadow[p * 4096 + b]);
			}
			bad++;
		}
	return bad;
}

/* Pages of [p, p+len) present in memory (mincore). */
static inline size_t resident_pages(const void *p, size_t len)
{
	size_t n = len / 4096, c = 0;
	unsigned char *v = malloc(n);
	assert_int_equal(mincore((void *)p, len, v), 0);
	for (size_t i = 0; i < n; i++)
		c += v[i] & 1;
	free(v);
	return c;
}

#endif
