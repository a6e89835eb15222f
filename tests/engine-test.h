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

#include "compat.h"
#include "engine-internal.h"
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
	int fd = ovc_sys_open_uffd(&ovc_sys_default, O_CLOEXEC);
	if (fd == -ENOSYS)
		skip_because("kernel without userfaultfd");
	if (fd < 0)
		skip_because("no userfaultfd permission: %s", ovc_strerror(fd));
	close(fd);
}

static inline bool kernel_has_move(void)
{
	int fd = ovc_sys_open_uffd(&ovc_sys_default, O_CLOEXEC);
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
	atomic_long passes;
	atomic_long reclaimed;
	atomic_long errors;
};

static inline void *loop_main(void *arg)
{
	struct loop *l = arg;
	struct pollfd pfd = { .fd = ovc_engine_fd(l->e), .events = POLLIN };
	while (!atomic_load(&l->stop)) {
		poll(&pfd, 1, atomic_load(&l->scan) ? 0 : 5);
		/* An error (an injected failed read) is the VMM's to log;
		 * the loop goes on, as a VMM's would. */
		if (ovc_engine_process(l->e, 0) < 0)
			atomic_fetch_add(&l->errors, 1);
		/* in_pass first, scan second (loop_stop_scan reads them the
		 * other way round): no pass begins once it saw in_pass off. */
		atomic_store(&l->in_pass, true);
		if (atomic_load(&l->scan)) {
			int64_t n = ovc_engine_scan_sync(l->e, 0);
			if (n > 0)
				atomic_fetch_add(&l->reclaimed, n);
			if (atomic_load(&l->swap) && ovc__engine_swap_tick(l->e) < 0)
				atomic_fetch_add(&l->errors, 1);
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
