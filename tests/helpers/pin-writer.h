/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel writers for the engine suites: the kernel writes into guest RAM
 * through a pin (GUP), not through a fault, while the engine reclaims.
 * One home for the parts test-share, test-swap and test-writers share:
 *
 *   pattern_fill()  content that is never zero on a page, the same in
 *                   every process for a seed (seed 0: zeros).
 *   kw_helper       a forked second process that runs process_vm_writev()
 *                   and process_vm_readv() on this one (a vhost-user
 *                   backend, a debugger): the kernel pins our pages, then
 *                   copies. Requests over a socket pair.
 *   kw_open_pair()  an unlinked file in /var/tmp, buffered and O_DIRECT
 *                   (virtio-blk with cache=none reads into guest RAM
 *                   through the block layer's pin).
 *
 * The pin writer below drives one of them chunk by chunk:
 *
 *   PW_ODIRECT   pread(O_DIRECT) of 16-page chunks of a file of non-zero
 *                data into guest RAM.
 *   PW_VMWRITEV  process_vm_writev() from the helper.
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

#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "engine-test.h"
#include "common/util.h"

/* ---- content ----------------------------------------------------------- */

/* Content of @len bytes for @seed: zeros for seed 0, else pseudo-random
 * words that are never all zero on a page. Both processes make it. */
static inline void pattern_fill(uint8_t *b, size_t len, uint64_t seed)
{
	if (!seed) {
		memset(b, 0, len);
		return;
	}
	uint64_t s = seed;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = xorshift64(&s) | 1;
		memcpy(b + i, &v, 8);
	}
}

/* ---- the second process: process_vm_writev/readv on our behalf ---------- */

#define KW_MAX_BYTES (16u * 4096u) /* the longest call: 16 pages, as virtio-blk's */

enum kw_op { KW_PVM_WRITE = 1, KW_PVM_READ };

struct kw_req {
	uint32_t op;             /* enum kw_op; anything else: exit */
	uint32_t len;            /* <= KW_MAX_BYTES */
	uint64_t addr;
	uint64_t seed;           /* content to write: see pattern_fill */
};

struct kw_reply {
	int64_t res;             /* bytes, or -errno */
	uint8_t data[KW_MAX_BYTES];
};

/* The helper's loop: requests on @sock until it closes. Async-signal-safe
 * calls only (it is forked from a test that may have run threads). */
static inline void kw_helper_main(int sock, pid_t target)
{
	static struct kw_req q;
	static struct kw_reply rep;
	for (;;) {
		ssize_t n = recv(sock, &q, sizeof(q), 0);
		if (n != sizeof(q) || (q.op != KW_PVM_WRITE && q.op != KW_PVM_READ) || q.len > KW_MAX_BYTES)
			_exit(0);
		struct iovec local = { rep.data, q.len }, remote = { (void *)(uintptr_t)q.addr, q.len };
		size_t out = sizeof(rep.res);
		if (q.op == KW_PVM_WRITE) {
			pattern_fill(rep.data, q.len, q.seed);
			rep.res = process_vm_writev(target, &local, 1, &remote, 1, 0);
		} else {
			rep.res = process_vm_readv(target, &local, 1, &remote, 1, 0);
			if (rep.res > 0)
				out += (size_t)rep.res;
		}
		if (rep.res < 0)
			rep.res = -errno;
		if (send(sock, &rep, out, 0) < 0)
			_exit(1);
	}
}

struct kw_helper {
	pid_t pid;
	int sock;
};

/* Fork before any thread where possible, and after guest RAM is
 * registered (MADV_DONTFORK keeps its pages ours alone). */
static inline void kw_helper_start(struct kw_helper *h)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid_t parent = getpid();
	h->pid = fork();
	assert_true(h->pid >= 0);
	if (h->pid == 0) {
		close(sv[0]);
		kw_helper_main(sv[1], parent);
	}
	close(sv[1]);
	h->sock = sv[0];
}

/* Told to go: a later child (another helper) may hold a copy of our
 * socket, so that closing it would not end the loop. */
static inline void kw_helper_stop(struct kw_helper *h)
{
	struct kw_req q = { 0 };
	if (send(h->sock, &q, sizeof(q), 0) < 0) {
		/* gone already */
	}
	close(h->sock);
	waitpid(h->pid, NULL, 0);
}

/* One call by the helper; returns its result, @out gets read data. */
static inline int64_t kw_helper_call(struct kw_helper *h, enum kw_op op, void *addr, uint32_t len, uint64_t seed,
				     struct kw_reply *out)
{
	struct kw_req q = { op, len, (uint64_t)(uintptr_t)addr, seed };
	if (send(h->sock, &q, sizeof(q), 0) != sizeof(q))
		return -errno;
	ssize_t n = recv(h->sock, out, sizeof(*out), 0);
	if (n < (ssize_t)sizeof(out->res))
		return -EPIPE;
	return out->res;
}

/* ---- files ---------------------------------------------------------------- */

/* An unlinked file in /var/tmp, buffered and O_DIRECT; false when the file
 * system there takes no O_DIRECT. */
static inline bool kw_open_pair(const char *tag, int *fd, int *direct)
{
	char path[64];
	snprintf(path, sizeof(path), "/var/tmp/ovc-kw-%s-XXXXXX", tag);
	*fd = mkostemp(path, O_CLOEXEC);
	assert_true(*fd >= 0);
	*direct = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	unlink(path);
	return *direct >= 0;
}

/* ---- the pin writer --------------------------------------------------------- */

#define PW_CHUNK_PAGES 16u
#define PW_FILE_CHUNKS 64u

enum pin_writer_kind { PW_ODIRECT, PW_VMWRITEV };

struct pin_writer {
	enum pin_writer_kind kind;
	uint8_t *guest;
	size_t npages;
	bool old_data;          /* chunks hold old non-zero data, not zeros */
	int fd;                 /* PW_ODIRECT: the data file, O_DIRECT */
	struct kw_helper h;     /* PW_VMWRITEV: the writing process */
	struct kw_reply *rep;
	uint64_t rng;
	long calls, lost, stale;
};

/* Content of file chunk @fc: never zero, different per page. */
static inline uint64_t pw_seed(size_t fc)
{
	return ((uint64_t)(fc + 1) * 0x9e3779b97f4a7c15ull) | 1;
}

/* Old content of guest page @gp (PW old_data): non-zero, unlike any file page. */
static inline void pw_fill_old(uint8_t *dst, size_t gp)
{
	memset(dst, 0xa5, 4096);
	memcpy(dst, &gp, sizeof(gp));
}

static inline void pin_writer_start(struct pin_writer *w, enum pin_writer_kind kind, uint8_t *guest,
				    size_t npages, bool old_data)
{
	*w = (struct pin_writer){ .kind = kind, .guest = guest, .npages = npages, .old_data = old_data,
				  .fd = -1, .h = { .pid = -1, .sock = -1 }, .rng = 0x2545f4914f6cdd1dull };
	if (kind == PW_ODIRECT) {
		int buffered;
		if (!kw_open_pair("pin", &buffered, &w->fd))
			skip_because("no O_DIRECT in /var/tmp: %s", strerror(errno));
		uint8_t *buf = malloc(PW_CHUNK_PAGES * 4096);
		assert_non_null(buf);
		for (unsigned c = 0; c < PW_FILE_CHUNKS; c++) {
			pattern_fill(buf, PW_CHUNK_PAGES * 4096, pw_seed(c));
			assert_int_equal(pwrite(buffered, buf, PW_CHUNK_PAGES * 4096,
						(off_t)c * PW_CHUNK_PAGES * 4096),
					 (ssize_t)(PW_CHUNK_PAGES * 4096));
		}
		assert_int_equal(fsync(buffered), 0);
		close(buffered);
		free(buf);
		return;
	}
	w->rep = malloc(sizeof(*w->rep));
	assert_non_null(w->rep);
	kw_helper_start(&w->h);
}

static inline void pin_writer_stop(struct pin_writer *w)
{
	if (w->fd >= 0)
		close(w->fd);
	if (w->h.pid > 0)
		kw_helper_stop(&w->h);
	free(w->rep);
}

/* One chunk: prepare it, let the engine at it for a random while, write it
 * through a pin, check it. Counts lost and stale pages. */
static inline void pin_writer_step(struct pin_writer *w)
{
	size_t nchunks = w->npages / PW_CHUNK_PAGES;
	uint64_t r = xorshift64(&w->rng);
	size_t c = r % nchunks;
	uint32_t fc = (uint32_t)((r >> 20) % PW_FILE_CHUNKS);
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
	if (w->kind == PW_ODIRECT)
		n = pread(w->fd, g, len, (off_t)fc * len);
	else
		n = kw_helper_call(&w->h, KW_PVM_WRITE, g, (uint32_t)len, pw_seed(fc), w->rep);
	if (n != (ssize_t)len)
		fail_msg("kernel write into guest RAM: %zd of %zu bytes (%s)", n, len,
			 strerror(n < 0 ? (int)-n : errno));
	w->calls++;

	static uint8_t want[PW_CHUNK_PAGES * 4096];
	pattern_fill(want, len, pw_seed(fc));
	for (unsigned i = 0; i < PW_CHUNK_PAGES; i++) {
		const uint8_t *pg = g + i * 4096;
		if (memcmp(pg, want + i * 4096, 4096) == 0)
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
