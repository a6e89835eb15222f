/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A kernel writer for the engine suites: the kernel writes into guest RAM
 * through a pin (GUP), not through a fault, while the engine reclaims.
 *
 *   PW_ODIRECT   pread(O_DIRECT) of 16-page chunks of a file of non-zero
 *                data into guest RAM (virtio-blk with cache=none): the
 *                block layer pins the pages, then the device writes them.
 *   PW_VMWRITEV  process_vm_writev() from a forked child (a vhost-user
 *                backend, a debugger): pins the pages in our mm, copies.
 *
 * Each chunk is made zero (or, with old_data, filled with other non-zero
 * content and left unwritten for a while, so that swap takes it as cold)
 * right before the write: exactly the pages the engine reclaims then.
 * After the call returns its full count, every page must hold the file's
 * data; a page that does not is lost (zeros: dropped while pinned) or
 * stale (old data: written out while pinned). Real syscalls, real engine;
 * runs on the test's own thread. Skips where O_DIRECT or fork is missing.
 */
#ifndef OVC_PIN_WRITER_H
#define OVC_PIN_WRITER_H

#include <sys/uio.h>
#include <sys/wait.h>

#include "engine-test.h"
#include "common/util.h"

#define PW_CHUNK_PAGES 16u
#define PW_FILE_CHUNKS 64u

enum pin_writer_kind { PW_ODIRECT, PW_VMWRITEV };

struct pin_writer {
	enum pin_writer_kind kind;
	uint8_t *guest;
	size_t npages;
	bool old_data;          /* chunks hold old non-zero data, not zeros */
	int fd;                 /* PW_ODIRECT: the data file */
	pid_t child;            /* PW_VMWRITEV: the writing process */
	int req[2], resp[2];    /* pipes to and from it */
	uint64_t rng;
	long calls, lost, stale;
};

/* Byte pattern of file page @fp: never zero, different per page. */
static inline uint64_t pw_word(size_t fp, size_t i)
{
	return ((uint64_t)(fp + 1) * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)i << 3) ^ 1;
}

static inline void pw_fill(uint8_t *dst, size_t fp)
{
	for (size_t i = 0; i < 4096 / 8; i++) {
		uint64_t w = pw_word(fp, i);
		memcpy(dst + i * 8, &w, 8);
	}
}

/* Old content of guest page @gp (PW old_data): non-zero, unlike any file page. */
static inline void pw_fill_old(uint8_t *dst, size_t gp)
{
	memset(dst, 0xa5, 4096);
	memcpy(dst, &gp, sizeof(gp));
}

struct pw_req {
	uint64_t addr;
	uint32_t fpage;
};

/* The child of PW_VMWRITEV: write the asked file pages into the parent. */
static inline void pw_child(int req, int resp)
{
	static uint8_t buf[PW_CHUNK_PAGES * 4096] __attribute__((aligned(4096)));
	struct pw_req q;
	pid_t parent = getppid();
	while (read(req, &q, sizeof(q)) == (ssize_t)sizeof(q)) {
		for (unsigned i = 0; i < PW_CHUNK_PAGES; i++)
			pw_fill(buf + i * 4096, q.fpage + i);
		struct iovec l = { buf, sizeof(buf) }, r = { (void *)(uintptr_t)q.addr, sizeof(buf) };
		ssize_t n = process_vm_writev(parent, &l, 1, &r, 1, 0);
		if (write(resp, &n, sizeof(n)) != (ssize_t)sizeof(n))
			break;
	}
	_exit(0);
}

static inline void pin_writer_start(struct pin_writer *w, enum pin_writer_kind kind, uint8_t *guest,
				    size_t npages, bool old_data)
{
	*w = (struct pin_writer){ .kind = kind, .guest = guest, .npages = npages, .old_data = old_data,
				  .fd = -1, .child = -1, .rng = 0x2545f4914f6cdd1dull };
	if (kind == PW_ODIRECT) {
		w->fd = open("/var/tmp", O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
		if (w->fd < 0)
			skip_because("no O_DIRECT O_TMPFILE in /var/tmp: %s", strerror(errno));
		uint8_t *buf = aligned_alloc(4096, PW_CHUNK_PAGES * 4096);
		assert_non_null(buf);
		for (unsigned c = 0; c < PW_FILE_CHUNKS; c++) {
			for (unsigned i = 0; i < PW_CHUNK_PAGES; i++)
				pw_fill(buf + i * 4096, c * PW_CHUNK_PAGES + i);
			assert_int_equal(pwrite(w->fd, buf, PW_CHUNK_PAGES * 4096,
						(off_t)c * PW_CHUNK_PAGES * 4096),
					 (ssize_t)(PW_CHUNK_PAGES * 4096));
		}
		free(buf);
		return;
	}
	assert_int_equal(pipe2(w->req, O_CLOEXEC), 0);
	assert_int_equal(pipe2(w->resp, O_CLOEXEC), 0);
	w->child = fork();
	assert_true(w->child >= 0);
	if (w->child == 0) {
		close(w->req[1]); /* else our own write end keeps its read open */
		close(w->resp[0]);
		pw_child(w->req[0], w->resp[1]);
	}
	close(w->req[0]);
	close(w->resp[1]);
}

static inline void pin_writer_stop(struct pin_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->child > 0) {
		close(w->req[1]);
		close(w->resp[0]);
		waitpid(w->child, NULL, 0);
	}
}

/* One chunk: prepare it, let the engine at it for a random while, write it
 * through a pin, check it. Counts lost and stale pages. */
static inline void pin_writer_step(struct pin_writer *w)
{
	size_t nchunks = w->npages / PW_CHUNK_PAGES;
	uint64_t r = xorshift64(&w->rng);
	size_t c = r % nchunks;
	uint32_t fp = (uint32_t)((r >> 20) % PW_FILE_CHUNKS) * PW_CHUNK_PAGES;
	uint8_t *g = w->guest + c * PW_CHUNK_PAGES * 4096;
	size_t len = PW_CHUNK_PAGES * 4096;

	for (unsigned i = 0; i < PW_CHUNK_PAGES; i++) {
		if (w->old_data)
			pw_fill_old(g + i * 4096, c * PW_CHUNK_PAGES + i);
		else
			memset(g + i * 4096, 0, 4096);
	}
	/* 0-1 ms: the pin lands in any phase of the engine's batch. */
	struct timespec ts = { 0, (long)((r >> 40) % 1000) * 1000 };
	nanosleep(&ts, NULL);

	ssize_t n;
	if (w->kind == PW_ODIRECT) {
		n = pread(w->fd, g, len, (off_t)fp * 4096);
	} else {
		struct pw_req q = { (uint64_t)(uintptr_t)g, fp };
		assert_int_equal(write(w->req[1], &q, sizeof(q)), (ssize_t)sizeof(q));
		assert_int_equal(read(w->resp[0], &n, sizeof(n)), (ssize_t)sizeof(n));
	}
	if (n != (ssize_t)len)
		fail_msg("kernel write into guest RAM: %zd of %zu bytes (%s)", n, len, strerror(errno));
	w->calls++;

	uint8_t want[4096];
	for (unsigned i = 0; i < PW_CHUNK_PAGES; i++) {
		pw_fill(want, fp + i);
		const uint8_t *pg = g + i * 4096;
		if (memcmp(pg, want, 4096) == 0)
			continue;
		uint8_t old[4096];
		pw_fill_old(old, c * PW_CHUNK_PAGES + i);
		if (w->old_data && memcmp(pg, old, 4096) == 0)
			w->stale++;
		else
			w->lost++;
	}
}

/* The pass side: scan passes (and, with @swap, swap intervals) back to
 * back on a thread of its own, for engines with their own threads. */
struct pin_driver {
	ovc_engine *e;
	bool swap;
	atomic_bool stop;
	atomic_long passes, reclaimed, out;
	pthread_t th;
};

static inline void *pin_driver_main(void *arg)
{
	struct pin_driver *d = arg;
	while (!atomic_load(&d->stop)) {
		int64_t n = ovc_engine_scan_sync(d->e, 0);
		if (n > 0)
			atomic_fetch_add(&d->reclaimed, n);
		int64_t o = d->swap ? engine_test_swap_tick(d->e) : 0;
		if (o > 0)
			atomic_fetch_add(&d->out, o);
		atomic_fetch_add(&d->passes, 1);
	}
	return NULL;
}

static inline void pin_driver_start(struct pin_driver *d, ovc_engine *e, bool swap)
{
	memset(d, 0, sizeof(*d));
	d->e = e;
	d->swap = swap;
	assert_int_equal(pthread_create(&d->th, NULL, pin_driver_main, d), 0);
}

static inline void pin_driver_stop(struct pin_driver *d)
{
	atomic_store(&d->stop, true);
	pthread_join(d->th, NULL);
}

#endif
