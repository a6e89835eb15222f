/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit (short) / slow (long): every writer a VMM has, against a shadow copy,
 * while the engine reclaims without pause.
 *
 * A vCPU and the VMM's threads write guest RAM with the CPU (the torture
 * covers those). The kernel also writes it on the VMM's behalf, through a
 * pin it took before the write (GUP), which no write protection stops:
 * O_DIRECT pread/preadv into guest RAM (virtio-blk with cache=none),
 * io_uring reads (buffered and O_DIRECT), process_vm_writev from a second
 * process (a vhost-user backend, a debugger). And it reads guest RAM for
 * the VMM: io_uring and write(2) writes from it, vmsplice/splice,
 * process_vm_readv. Each writer thread owns a slice of guest RAM, zeroes
 * runs of it now and then (the pages the engine is taking away right then)
 * and has the kernel fill them again; after every call it checks the run
 * against its shadow, and the data that reached a file or a pipe against
 * the shadow too. At the end every page is compared, with the engine
 * alive and again after it is freed. A page lost is counted for the
 * writer that wrote it last, so each mode prints a row of pages lost per
 * writer.
 *
 * Also here: fault injection (each syscall of a reclaim fails in turn
 * while kernel writers run), ovc_engine_free() with a pass in flight and
 * writers running (many lives per mode), OVC_REGION_NO_SHARE with every
 * reclaim path, and the list of access paths the engine serves, each
 * tried on a reclaimed page (docs/engine.md, "Which accesses are served").
 *
 * Every mode of the engine: own threads or the VMM's loop; write-protect
 * (default with threads), OVC_ENGINE_MOVE, OVC_ENGINE_SYNC_WP; anonymous
 * and memfd; with and without swap. The mode is each test's cmocka state.
 * Real kernel features throughout; nothing is mocked. The files live in
 * /var/tmp (O_DIRECT needs a real file system).
 *
 * Threads: the test's (cmocka's main thread) drives; WRITERS writer threads
 * each own a slice of guest RAM, its shadow, its last_op entries, its pipe,
 * io_uring and helper process, so no locks; the engine's threads, or the
 * loop thread standing for the VMM's event loop; the reclaim driver thread.
 * Counters are read after the threads are joined.
 *
 * Usage: test-writers [SECONDS_PER_MODE [LIVES]]  (default 1, 40)
 */
#include <inttypes.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "engine-test.h"
#include "fault-inject.h"
#include "pin-writer.h"
#include "engine/swapdev.h"
#include "common/util.h"

#define PG 4096u
#define WRITERS 4u
#define RUN_PAGES 16u          /* the longest call: 16 pages, as virtio-blk's */
#define SRC_BLOCKS 1024u       /* the source file: 4 MiB, a quarter zero blocks */

/* The writers, in the order of the table printed per mode. */
enum wop {
	W_CPU,            /* memset by the VMM thread (zeroing a run) */
	W_PREAD_DIRECT,   /* O_DIRECT pread into guest RAM */
	W_PREADV_DIRECT,  /* O_DIRECT preadv, one page per iovec, scattered */
	W_URING_READ,     /* io_uring read, buffered */
	W_URING_READ_DIRECT,
	W_URING_WRITE,    /* io_uring write from guest RAM (buffered or O_DIRECT) */
	W_PVM_WRITE,      /* process_vm_writev from a second process */
	W_PVM_READ,       /* process_vm_readv from a second process */
	W_VMSPLICE,       /* vmsplice guest RAM into a pipe, splice it to a file */
	W_WRITE,          /* pwrite(2) from guest RAM */
	W_NOPS,
};

static const char *const wop_name[W_NOPS] = {
	"cpu", "pread-direct", "preadv-direct", "uring-read", "uring-read-direct", "uring-write",
	"pvm-write", "pvm-read", "vmsplice", "write",
};

/* The second process (process_vm_writev/readv) and the content: pin-writer.h. */
_Static_assert(RUN_PAGES * PG <= KW_MAX_BYTES, "a run fits a helper's call");

/* ---- files ---------------------------------------------------------------- */

struct files {
	int src, src_direct;     /* SRC_BLOCKS blocks, never written after setup */
	int sink, sink_direct;   /* RUN_PAGES blocks per writer */
	uint8_t *src_shadow;
};

static bool src_block_zero(unsigned b)
{
	return b % 4 == 0;
}

static void files_open(struct files *f)
{
	if (!kw_open_pair("src", &f->src, &f->src_direct) || !kw_open_pair("sink", &f->sink, &f->sink_direct))
		skip_because("no O_DIRECT in /var/tmp: %s", strerror(errno));
	f->src_shadow = malloc((size_t)SRC_BLOCKS * PG);
	for (unsigned b = 0; b < SRC_BLOCKS; b++)
		pattern_fill(f->src_shadow + (size_t)b * PG, PG, src_block_zero(b) ? 0 : 0x5eed0000u + b);
	assert_int_equal(pwrite(f->src, f->src_shadow, (size_t)SRC_BLOCKS * PG, 0), (ssize_t)SRC_BLOCKS * PG);
	assert_int_equal(ftruncate(f->sink, (off_t)WRITERS * RUN_PAGES * PG), 0);
	assert_int_equal(fsync(f->src), 0);
}

static void files_close(struct files *f)
{
	close(f->src);
	close(f->src_direct);
	close(f->sink);
	close(f->sink_direct);
	free(f->src_shadow);
}

/* ---- the writers ------------------------------------------------------------ */

struct wctx {
	uint8_t *guest, *shadow;
	uint8_t *last_op;        /* per page: the writer that wrote it last */
	size_t npages;
	struct files *f;
	unsigned ops_mask;       /* 1 << enum wop */
	atomic_bool stop;
};

struct writer {
	struct wctx *t;
	unsigned idx;
	uint64_t rng;
	struct kw_helper *h;
	struct io_uring ring;
	int pipe[2];
	uint8_t *buf;            /* RUN_PAGES, page aligned: data read back */
	struct kw_reply *rep;
	long ops[W_NOPS];
	long lost[W_NOPS];       /* guest pages that lost this writer's data */
	long stale[W_NOPS];      /* calls whose output differed from the shadow */
	long failed[W_NOPS];     /* calls that returned an error or short */
	int last_err[W_NOPS];
	pthread_t th;
};

static void writer_init(struct writer *w, struct wctx *t, unsigned idx, struct kw_helper *h)
{
	memset(w, 0, sizeof(*w));
	w->t = t;
	w->idx = idx;
	w->h = h;
	w->rng = 0x9e3779b97f4a7c15ull * (idx + 1);
	assert_int_equal(io_uring_queue_init(4, &w->ring, 0), 0);
	assert_int_equal(pipe2(w->pipe, O_CLOEXEC), 0);
	w->buf = aligned_alloc(PG, (size_t)RUN_PAGES * PG);
	w->rep = malloc(sizeof(*w->rep));
}

static void writer_fini(struct writer *w)
{
	io_uring_queue_exit(&w->ring);
	close(w->pipe[0]);
	close(w->pipe[1]);
	free(w->buf);
	free(w->rep);
}

static void note_fail(struct writer *w, enum wop op, long r)
{
	w->failed[op]++;
	w->last_err[op] = r < 0 ? (int)r : -EIO;
}

/* The VMM thread zeroing a guest page, as a guest frees memory: plain
 * stores that ThreadSanitizer does not instrument. They race with the
 * engine's scan by design (tests/tsan.supp); reported and suppressed, each
 * such race costs the sanitizer a search of every earlier one, which made
 * one pass take minutes. No other user-space code writes guest RAM here:
 * the kernel does, unseen by the sanitizer. */
__attribute__((no_sanitize("thread"))) static void guest_zero(uint8_t *g)
{
	volatile uint64_t *w = (volatile uint64_t *)(void *)g;
	for (size_t i = 0; i < PG / 8; i++)
		w[i] = 0;
}

/* pread(2) and preadv(2) into guest RAM by the raw syscall: the thread
 * sanitizer's wrappers of the libc calls take the kernel's write for one by
 * this thread, racing the engine's scan, and pay a report search each
 * time (see guest_zero). Same syscalls, same kernel path. */
static ssize_t kernel_pread(int fd, void *buf, size_t len, off_t off)
{
	return syscall(SYS_pread64, fd, buf, len, off);
}

static ssize_t kernel_preadv(int fd, const struct iovec *iov, int n, off_t off)
{
	return syscall(SYS_preadv, fd, iov, n, (unsigned long)off, 0ul);
}

/* Compare guest pages with the shadow after a call of @op wrote them;
 * mismatches are charged to whoever wrote the page last. */
static void check_pages(struct writer *w, const size_t *pages, unsigned k)
{
	struct wctx *t = w->t;
	for (unsigned i = 0; i < k; i++) {
		uint8_t *g = t->guest + pages[i] * PG, *s = t->shadow + pages[i] * PG;
		if (memcmp(g, s, PG) == 0)
			continue;
		unsigned by = t->last_op[pages[i]];
		size_t b = 0;
		while (g[b] == s[b])
			b++;
		fprintf(stderr, "writer %u: page %zu (last written by %s) byte %zu is %u, shadow %u\n", w->idx,
			pages[i], wop_name[by], b, g[b], s[b]);
		w->lost[by]++;
		memcpy(s, g, PG); /* report once */
	}
}

/* Data that left guest RAM through @op (into a file, a pipe, a second
 * process) against the shadow of the pages it came from. */
static void check_output(struct writer *w, enum wop op, const uint8_t *out, const size_t *pages, unsigned k)
{
	for (unsigned i = 0; i < k; i++)
		if (memcmp(out + (size_t)i * PG, w->t->shadow + pages[i] * PG, PG) != 0) {
			fprintf(stderr, "writer %u: %s carried page %zu, which differs from its shadow\n", w->idx,
				wop_name[op], pages[i]);
			w->stale[op]++;
			return;
		}
}

static void shadow_from_src(struct writer *w, enum wop op, const size_t *pages, unsigned k, unsigned blk)
{
	for (unsigned i = 0; i < k; i++) {
		memcpy(w->t->shadow + pages[i] * PG, w->t->f->src_shadow + (size_t)(blk + i) * PG, PG);
		w->t->last_op[pages[i]] = (uint8_t)op;
	}
}

static int64_t uring_rw(struct writer *w, bool write, int fd, void *addr, unsigned len, uint64_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	if (write)
		io_uring_prep_write(sqe, fd, addr, len, off);
	else
		io_uring_prep_read(sqe, fd, addr, len, off);
	int r = io_uring_submit(&w->ring);
	if (r != 1)
		return r < 0 ? r : -EIO;
	struct io_uring_cqe *cqe;
	r = io_uring_wait_cqe(&w->ring, &cqe);
	if (r < 0)
		return r;
	int64_t res = cqe->res;
	io_uring_cqe_seen(&w->ring, cqe);
	return res;
}

/* Read back what a call wrote to the sink file. */
static void check_sink(struct writer *w, enum wop op, uint64_t off, const size_t *pages, unsigned k)
{
	ssize_t n = pread(w->t->f->sink, w->buf, (size_t)k * PG, (off_t)off);
	if (n != (ssize_t)k * PG) {
		note_fail(w, op, n < 0 ? -errno : -EIO);
		return;
	}
	check_output(w, op, w->buf, pages, k);
}

/* One call of @op on pages[0..k) (contiguous except for preadv). */
static void do_op(struct writer *w, enum wop op, size_t *pages, unsigned k)
{
	struct wctx *t = w->t;
	struct files *f = t->f;
	uint8_t *g = t->guest + pages[0] * PG;
	unsigned len = k * PG;
	uint64_t r = xorshift64(&w->rng);
	unsigned blk = (unsigned)(r % (SRC_BLOCKS - RUN_PAGES));
	uint64_t sink_off = (uint64_t)w->idx * RUN_PAGES * PG;
	int64_t res;

	w->ops[op]++;
	switch (op) {
	case W_PREAD_DIRECT:
		res = kernel_pread(f->src_direct, g, len, (off_t)blk * PG);
		goto read_done;
	case W_PREADV_DIRECT: {
		struct iovec iov[RUN_PAGES];
		for (unsigned i = 0; i < k; i++)
			iov[i] = (struct iovec){ t->guest + pages[i] * PG, PG };
		res = kernel_preadv(f->src_direct, iov, (int)k, (off_t)blk * PG);
		goto read_done;
	}
	case W_URING_READ:
	case W_URING_READ_DIRECT:
		res = uring_rw(w, false, op == W_URING_READ ? f->src : f->src_direct, g, len, (uint64_t)blk * PG);
		goto read_done;
	case W_URING_WRITE:
		res = uring_rw(w, true, (r >> 40) & 1 ? f->sink_direct : f->sink, g, len, sink_off);
		if (res != len) {
			note_fail(w, op, res);
			return;
		}
		check_sink(w, op, sink_off, pages, k);
		return;
	case W_PVM_WRITE: {
		/* An eighth of them writes zeros: pages the engine may share. */
		uint64_t seed = (r >> 20) % 8 ? (r | 1) : 0;
		res = kw_helper_call(w->h, KW_PVM_WRITE, g, len, seed, w->rep);
		if (res != len) {
			note_fail(w, op, res);
			/* A partial write: the shadow no longer knows. */
			if (res > 0)
				memcpy(t->shadow + pages[0] * PG, g, len);
			return;
		}
		pattern_fill(t->shadow + pages[0] * PG, len, seed);
		for (unsigned i = 0; i < k; i++)
			t->last_op[pages[i]] = (uint8_t)op;
		check_pages(w, pages, k);
		return;
	}
	case W_PVM_READ:
		res = kw_helper_call(w->h, KW_PVM_READ, g, len, 0, w->rep);
		if (res != len) {
			note_fail(w, op, res);
			return;
		}
		check_output(w, op, w->rep->data, pages, k);
		return;
	case W_VMSPLICE: {
		/* vmsplice takes references to the guest pages into the
		 * pipe: they are read only when spliced on to the file, by
		 * which time the engine may have dropped them. */
		struct iovec iov = { g, len };
		size_t in = 0;
		while (in < len) {
			ssize_t n = vmsplice(w->pipe[1], &iov, 1, 0);
			if (n <= 0) {
				note_fail(w, op, -errno);
				return;
			}
			in += (size_t)n;
			iov.iov_base = (uint8_t *)iov.iov_base + n;
			iov.iov_len -= (size_t)n;
			/* Splice what is in the pipe on to the file. */
			loff_t off = (loff_t)(sink_off + in - (size_t)n);
			for (ssize_t left = n; left > 0;) {
				ssize_t s = splice(w->pipe[0], NULL, f->sink, &off, (size_t)left, 0);
				if (s <= 0) {
					note_fail(w, op, -errno);
					return;
				}
				left -= s;
			}
		}
		check_sink(w, op, sink_off, pages, k);
		return;
	}
	case W_WRITE:
		res = pwrite(f->sink, g, len, (off_t)sink_off);
		if (res != len) {
			note_fail(w, op, res < 0 ? -errno : res);
			return;
		}
		check_sink(w, op, sink_off, pages, k);
		return;
	case W_CPU:
	case W_NOPS:
		break;
	}
	return;
read_done:
	if (res < 0)
		res = op == W_URING_READ || op == W_URING_READ_DIRECT ? res : -errno;
	if (res != len) {
		note_fail(w, op, res);
		/* Whatever a failed or partial read left is unknown: take it. */
		for (unsigned i = 0; i < k; i++)
			memcpy(t->shadow + pages[i] * PG, t->guest + pages[i] * PG, PG);
		return;
	}
	shadow_from_src(w, op, pages, k, blk);
	check_pages(w, pages, k);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct wctx *t = w->t;
	size_t chunk = t->npages / WRITERS, base = w->idx * chunk;
	enum wop enabled[W_NOPS];
	unsigned nen = 0;

	for (unsigned op = W_CPU + 1; op < W_NOPS; op++)
		if (t->ops_mask & (1u << op))
			enabled[nen++] = op;
	while (!atomic_load_explicit(&t->stop, memory_order_relaxed) && nen) {
		uint64_t r = xorshift64(&w->rng);
		enum wop op = enabled[r % nen];
		unsigned k = 1 + (unsigned)((r >> 8) % RUN_PAGES);
		size_t pages[RUN_PAGES];
		size_t start = base + (size_t)((r >> 16) % (chunk - RUN_PAGES + 1));
		for (unsigned i = 0; i < k; i++)
			pages[i] = start + i;
		if (op == W_PREADV_DIRECT) {
			/* Distinct pages spread over the slice (chunk is a
			 * power of two, the stride odd). */
			size_t stride = (size_t)((r >> 32) % chunk) | 1;
			for (unsigned i = 0; i < k; i++)
				pages[i] = base + (start - base + i * stride) % chunk;
		}
		/* Half the time zero the pages first, as a guest frees
		 * memory before it reads into it: the engine takes such pages
		 * away while the kernel is about to fill them. */
		if ((r >> 48) & 1) {
			for (unsigned i = 0; i < k; i++) {
				guest_zero(t->guest + pages[i] * PG);
				memset(t->shadow + pages[i] * PG, 0, PG);
				t->last_op[pages[i]] = W_CPU;
			}
			w->ops[W_CPU]++;
			if ((r >> 49) & 1)
				sched_yield(); /* let a pass see them zero */
		}
		do_op(w, op, pages, k);
	}
	return NULL;
}

/* ---- one run of a mode --------------------------------------------------- */

struct params {
	double seconds;
	unsigned lives;
};

struct wcase {
	struct engine_mode mode;
	const struct params *params;
};

#define ALL_KERNEL_OPS (((1u << W_NOPS) - 1) & ~(1u << W_CPU))

struct rig {
	struct files f;
	struct kw_helper h[WRITERS];
	struct guest_ram g;
	struct wctx t;
	struct writer w[WRITERS];
};

/* Helpers and files first (the fork before any thread), then guest RAM
 * with every page written, a third of them data. */
static void rig_init(struct rig *rg, const struct engine_mode *m, size_t npages, unsigned ops_mask)
{
	memset(rg, 0, sizeof(*rg));
	files_open(&rg->f);
	for (unsigned i = 0; i < WRITERS; i++)
		kw_helper_start(&rg->h[i]);
	guest_ram_alloc(&rg->g, npages * PG, m->backing);
	rg->t = (struct wctx){ .guest = rg->g.p, .npages = npages, .f = &rg->f, .ops_mask = ops_mask };
	rg->t.shadow = calloc(npages, PG);
	rg->t.last_op = calloc(npages, 1);
	for (size_t p = 0; p < npages; p++) {
		memset(rg->g.p + p * PG, 0, PG);
		if (p % 3 == 0)
			rg->g.p[p * PG + p % PG] = rg->t.shadow[p * PG + p % PG] = 0xee;
	}
	for (unsigned i = 0; i < WRITERS; i++)
		writer_init(&rg->w[i], &rg->t, i, &rg->h[i]);
}

static void rig_start(struct rig *rg)
{
	atomic_store(&rg->t.stop, false);
	for (unsigned i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_create(&rg->w[i].th, NULL, writer_main, &rg->w[i]), 0);
}

static void rig_stop(struct rig *rg)
{
	atomic_store(&rg->t.stop, true);
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(rg->w[i].th, NULL);
}

/* Pages lost or stale, all writers; prints the mode's row. */
static long rig_report(struct rig *rg, const char *name, const char *what)
{
	long ops[W_NOPS] = { 0 }, lost[W_NOPS] = { 0 }, stale[W_NOPS] = { 0 }, failed[W_NOPS] = { 0 }, total = 0;
	int err[W_NOPS] = { 0 };
	for (unsigned i = 0; i < WRITERS; i++)
		for (unsigned op = 0; op < W_NOPS; op++) {
			ops[op] += rg->w[i].ops[op];
			lost[op] += rg->w[i].lost[op];
			stale[op] += rg->w[i].stale[op];
			failed[op] += rg->w[i].failed[op];
			if (rg->w[i].last_err[op])
				err[op] = rg->w[i].last_err[op];
		}
	char line[1024];
	int n = snprintf(line, sizeof(line), "writers %s%s%s: calls/pages lost (or stale output)", name,
			 *what ? " " : "", what);
	for (unsigned op = 0; op < W_NOPS; op++) {
		n += snprintf(line + n, sizeof(line) - (size_t)n, " %s=%ld/%ld", wop_name[op], ops[op],
			      lost[op] + stale[op]);
		total += lost[op] + stale[op];
	}
	print_message("%s\n", line);
	for (unsigned op = 0; op < W_NOPS; op++)
		if (failed[op])
			print_message("writers %s: %ld %s calls failed, the last: %s\n", name, failed[op],
				      wop_name[op], ovc_strerror(err[op]));
	return total;
}

static void rig_fini(struct rig *rg)
{
	for (unsigned i = 0; i < WRITERS; i++) {
		writer_fini(&rg->w[i]);
		kw_helper_stop(&rg->h[i]);
	}
	free(rg->t.shadow);
	free(rg->t.last_op);
	guest_ram_free(&rg->g);
	files_close(&rg->f);
}

static long rig_failed(struct rig *rg)
{
	long n = 0;
	for (unsigned i = 0; i < WRITERS; i++)
		for (unsigned op = 0; op < W_NOPS; op++)
			n += rg->w[i].failed[op];
	return n;
}

#define NPAGES 1024u

static void test_writers(void **state)
{
	const struct wcase *c = *state;
	const struct engine_mode *m = &c->mode;
	mode_need(m);
	struct rig rg;
	rig_init(&rg, m, NPAGES, ALL_KERNEL_OPS);
	ovc_engine *e = mode_engine_new(m, rg.g.len, NULL);
	assert_ovc_ok(ovc_region_add(e, rg.g.p, rg.g.len, 0, 0));
	if (m->swap) /* everything may go; the tracker picks what is cold */
		assert_ovc_ok(ovc_engine_reclaim(e, rg.g.len, 0));

	rig_start(&rg);
	struct reclaimer rc;
	reclaimer_start(&rc, e, m);
	usleep((useconds_t)(c->params->seconds * 1e6));
	rig_stop(&rg);
	/* Two more passes with the writers gone: the zero pages they left
	 * are reclaimed whatever the load did to the racing passes. */
	reclaimer_wait_passes(&rc, 2);
	long passes = reclaimer_passes(&rc), reclaimed, last_err;
	long errors = reclaimer_stop_scan(&rc, &reclaimed, &last_err);
	long bad_live = shadow_compare(rg.g.p, rg.t.shadow, NPAGES, m->name);
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	reclaimer_stop(&rc);
	uint64_t unreported = engine_test_moves_unreported(e);
	ovc_engine_free(e);
	long bad_after = shadow_compare(rg.g.p, rg.t.shadow, NPAGES, m->name);
	long lost = rig_report(&rg, m->name, "");
	print_message("writers %s: %.1f s, %ld passes, %" PRIu64 " zero pages found, %ld reclaimed, "
		      "%" PRIu64 " swapped out, %" PRIu64 " swapped in, %" PRIu64 " zero faults, "
		      "%" PRIu64 " pages moved by a UFFDIO_MOVE that failed\n",
		      m->name, c->params->seconds, passes, st.zero_pages_found, reclaimed, st.pages_swapped_out,
		      st.pages_swapped_in, st.zero_faults, unreported);
	long failed = rig_failed(&rg);
	long ran_all = 1;
	for (unsigned op = W_CPU; op < W_NOPS; op++) {
		long n = 0;
		for (unsigned i = 0; i < WRITERS; i++)
			n += rg.w[i].ops[op];
		ran_all &= n > 0;
	}
	rig_fini(&rg);
	if (errors)
		print_error("writers %s: %ld failed passes, the last: %s\n", m->name, errors,
			    ovc_strerror((int)last_err));
	assert_int_equal(lost, 0);
	assert_int_equal(bad_live, 0);
	assert_int_equal(bad_after, 0);
	assert_int_equal(failed, 0);
	assert_int_equal(errors, 0);
	assert_true(ran_all);
	assert_int_equal(st.swap_write_errors + st.swap_read_errors, 0);
	if (!mode_pin_safe(m->flags, m->backing)) {
		/* No primitive here refuses a pinned page (shared memory,
		 * anonymous memory without MOVE), and the region has no
		 * OVC_REGION_UNPINNED: the engine finds the zero pages but
		 * drops, shares and swaps out nothing. */
		assert_true(st.zero_pages_found > 0);
		assert_int_equal(reclaimed, 0);
		assert_int_equal(st.zero_pages_reclaimed, 0);
		assert_int_equal(st.zero_pages_now, 0);
		assert_int_equal(st.pages_swapped_out, 0);
		return;
	}
	/* The engine really reclaimed meanwhile. */
	assert_true(reclaimed > 0);
	if (m->swap)
		assert_true(st.pages_swapped_out > 0);
}

/* ---- fault injection ---------------------------------------------------- */

/* The syscalls of a reclaim (a scan pass and, with swap, a swap interval),
 * and of the handler serving faults meanwhile; not the uffd reads, whose
 * count follows the loop's idling. */
#define RECLAIM_OPS                                                                              \
	((1u << OVC_SYS_IOCTL) | (1u << OVC_SYS_MADVISE) | (1u << OVC_SYS_PROCESS_MADVISE) |     \
	 (1u << OVC_SYS_PREAD) | (1u << OVC_SYS_PWRITE) | (1u << OVC_SYS_MMAP) |                 \
	 (1u << OVC_SYS_MUNMAP) | (1u << OVC_SYS_FALLOCATE) | (1u << OVC_SYS_URING_SUBMIT) |     \
	 (1u << OVC_SYS_URING_CQE))

#define FI_PAGES 256u

/* One reclaim on @e while the writers run: one pass (and swap interval)
 * by the driver or the loop. */
static void one_reclaim(ovc_engine *e, const struct engine_mode *m, struct loop *l)
{
	if (m->flags & OVC_ENGINE_NO_THREADS) {
		atomic_store(&l->swap, m->swap);
		loop_one_pass(l);
		return;
	}
	(void)ovc_engine_scan_sync(e, 0);
	if (m->swap)
		(void)engine_test_swap_tick(e);
}

/* Each reclaim syscall fails in turn (EIO) while every kernel writer runs;
 * after each, no page is lost or stale, and a clean reclaim still works. */
static void test_inject(void **state)
{
	const struct wcase *c = *state;
	const struct engine_mode *m = &c->mode;
	mode_need(m);
	struct rig rg;
	rig_init(&rg, m, FI_PAGES, ALL_KERNEL_OPS);
	long count = -1, injected = 0, unreported = 0;
	bool pin_safe = mode_pin_safe(m->flags, m->backing);

	for (long n = 0; n <= count || count < 0; n++) {
		struct fault_inject fi;
		fault_inject_init(&fi, 0, EIO, RECLAIM_OPS);
		ovc_engine *e = mode_engine_new(m, rg.g.len, &fi.sys);
		assert_ovc_ok(ovc_region_add(e, rg.g.p, rg.g.len, 0, 0));
		if (m->swap)
			engine_test_set_target(e, rg.g.len);
		struct loop l;
		if (m->flags & OVC_ENGINE_NO_THREADS)
			loop_start(&l, e, false);
		rig_start(&rg);
		/* The swap file's own thread zero-fills it as soon as the
		 * engine exists. Its writes are not the reclaim's, and whether
		 * they land in the window below depended on the load: in a
		 * mode whose reclaim makes no call, one pwrite of it there
		 * made a count of 1 that the next run never reached. */
		if (m->swap)
			swapdev_fill_wait_idle(engine_test_swapdev(e));
		atomic_store(&fi.calls, 0);
		atomic_store(&fi.fail_at, n);
		one_reclaim(e, m, &l);
		atomic_store(&fi.fail_at, 0);
		long calls = atomic_load(&fi.calls);
		injected += atomic_load(&fi.injected);
		/* A clean one after it: the engine recovered. */
		one_reclaim(e, m, &l);
		rig_stop(&rg);
		long bad = shadow_compare(rg.g.p, rg.t.shadow, FI_PAGES, m->name);
		if (m->flags & OVC_ENGINE_NO_THREADS)
			loop_stop(&l);
		unreported += (long)engine_test_moves_unreported(e);
		ovc_engine_free(e);
		bad += shadow_compare(rg.g.p, rg.t.shadow, FI_PAGES, m->name);
		if (bad)
			fail_msg("%s: failing reclaim call %ld: %ld pages differ from the shadow", m->name, n, bad);
		if (n == 0) {
			/* The calls of a clean reclaim: each fails in turn.
			 * Without a primitive refusing pinned pages (and
			 * without OVC_REGION_UNPINNED) the region keeps its
			 * pages: a pass makes no call at all there. */
			count = calls;
			if (!pin_safe) {
				assert_int_equal(count, 0);
				break;
			}
			assert_true(count > 0);
		}
	}
	long lost = rig_report(&rg, m->name, "(fault injection)");
	rig_fini(&rg);
	print_message("writers %s: failed each of %ld reclaim calls in turn (%ld injected); %ld pages lost; "
		      "%ld pages moved by a UFFDIO_MOVE that failed\n", m->name, count, injected, lost, unreported);
	assert_int_equal(lost, 0);
	/* Where the reclaim makes calls, its first one is failed at least
	 * (run 1: the reclaim's own calls come in the same order). */
	if (pin_safe)
		assert_true(injected > 0);
}

/* ---- free with a pass in flight ---------------------------------------- */

static void on_alarm(int sig)
{
	static const char msg[] = "test-writers: ovc_engine_free() did not return\n";
	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
		/* nothing left to do */
	}
	abort();
}

/* Many lives: create, reclaim, free with a pass in flight while the
 * writers run. Even lives scan on the engine's timer (every millisecond,
 * and with swap a swap interval as often); odd ones use NO_AUTOSCAN and
 * free right after ovc_engine_reclaim() woke the worker. The loop mode
 * stops its loop (with a pass maybe half done) first, as a VMM must.
 * A free that hangs aborts the test. */
static void test_lives(void **state)
{
	const struct wcase *c = *state;
	const struct engine_mode *m = &c->mode;
	mode_need(m);
	struct rig rg;
	rig_init(&rg, m, NPAGES, ALL_KERNEL_OPS);
	signal(SIGALRM, on_alarm);
	uint64_t seed = 0x1234567;

	for (unsigned life = 0; life < c->params->lives; life++) {
		struct ovc_engine_opts o = mode_opts(m, rg.g.len);
		if (life % 2 == 0) {
			o.flags &= ~OVC_ENGINE_NO_AUTOSCAN;
			o.scan_interval_usec = 1000;
			o.scan_cpu_permille = 1000;
			if (m->swap)
				o.cold_age_usec = 1000;
		}
		ovc_engine *e = NULL;
		assert_ovc_ok(ovc_engine_new(&o, &e));
		assert_ovc_ok(ovc_region_add(e, rg.g.p, rg.g.len, 0, 0));
		struct loop l;
		bool loop = m->flags & OVC_ENGINE_NO_THREADS;
		rig_start(&rg);
		if (loop) {
			loop_start(&l, e, true);
			atomic_store(&l.swap, m->swap);
		}
		/* Let it get under way, a different while each life. */
		usleep((useconds_t)(xorshift64(&seed) % 20000));
		if (m->swap || life % 2)
			assert_ovc_ok(ovc_engine_reclaim(e, m->swap ? rg.g.len / 2 : 0, 0));
		if (life % 2 && (xorshift64(&seed) & 1))
			sched_yield();
		if (loop)
			loop_stop(&l);
		alarm(120);
		ovc_engine_free(e);
		alarm(0);
		rig_stop(&rg);
		long bad = shadow_compare(rg.g.p, rg.t.shadow, NPAGES, m->name);
		if (bad)
			fail_msg("%s: life %u: %ld pages differ from the shadow after free", m->name, life, bad);
	}
	long lost = rig_report(&rg, m->name, "(lives)");
	long failed = rig_failed(&rg);
	rig_fini(&rg);
	signal(SIGALRM, SIG_DFL);
	print_message("writers %s: %u lives, each freed with writers running; %ld pages lost\n", m->name,
		      c->params->lives, lost);
	assert_int_equal(lost, 0);
	assert_int_equal(failed, 0);
}

/* ---- OVC_REGION_NO_SHARE ----------------------------------------------------- */

static uint64_t pagemap_entry(int pm, const void *addr)
{
	uint64_t v = 0;
	assert_int_equal(pread(pm, &v, 8, (off_t)((uintptr_t)addr / PG * 8)), 8);
	return v;
}

#define PM_PRESENT (UINT64_C(1) << 63)
#define PM_PFN(v) ((v) & ((UINT64_C(1) << 55) - 1))

/* Pages of [p, p+n pages) that map the shared zero page; 0 when this
 * process cannot see PFNs (not root). */
static size_t zero_pfn_pages(const uint8_t *p, size_t n)
{
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	assert_true(pm >= 0);
	uint8_t *z = mmap(NULL, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(z != MAP_FAILED);
	(void)*(volatile uint8_t *)z; /* maps the zero page */
	uint64_t zpfn = PM_PFN(pagemap_entry(pm, z));
	size_t c = 0;
	for (size_t i = 0; zpfn && i < n; i++) {
		uint64_t v = pagemap_entry(pm, p + i * PG);
		c += (v & PM_PRESENT) && PM_PFN(v) == zpfn;
	}
	munmap(z, PG);
	close(pm);
	return c;
}

static size_t pages_in_state(ovc_engine *e, const void *host, enum pst_state s)
{
	size_t c = 0;
	struct region *r = engine_test_region_at(e, host);
	for (uint64_t i = 0; r && i < r->npages; i++)
		c += pst_state(atomic_load(&r->pst[i])) == s;
	return c;
}

static enum pst_state page_state(ovc_engine *e, const void *addr)
{
	struct region *r = engine_test_region_at(e, addr);
	assert_non_null(r);
	return pst_state(atomic_load(&r->pst[region_page_of(r, (uint64_t)(uintptr_t)addr)]));
}

/* Two regions, one with OVC_REGION_NO_SHARE, each half zero pages; every
 * reclaim path of the mode runs over them (scan passes and, with swap,
 * swap intervals until everything cold is out). The NO_SHARE region ends
 * with no page ZERO and none mapping the shared zero page (with swap its
 * zero pages go to disk like any other); the other region shares its zero
 * pages, which shows reclaim did run. Contents are right throughout. */
static void test_no_share(void **state)
{
	const struct wcase *c = *state;
	const struct engine_mode *m = &c->mode;
	mode_need(m);
	const size_t n = 256;
	struct guest_ram a, b;
	guest_ram_alloc(&a, n * PG, m->backing);
	guest_ram_alloc(&b, n * PG, m->backing);
	uint8_t *shadow = calloc(n, PG);
	for (size_t p = 0; p < n; p++) {
		memset(a.p + p * PG, 0, PG);
		memset(b.p + p * PG, 0, PG);
		if (p % 2)
			a.p[p * PG + 7] = b.p[p * PG + 7] = shadow[p * PG + 7] = (uint8_t)(p | 1);
	}
	ovc_engine *e = mode_engine_new(m, 2 * n * PG, NULL);
	/* Shared memory and the path without MOVE: OVC_REGION_UNPINNED lets
	 * zero pages go (only the CPU writes here), and NO_SHARE must still
	 * win over it. */
	unsigned shm = mode_cpu_only_flags(m->flags, m->backing);
	assert_ovc_ok(ovc_region_add(e, a.p, a.len, 0, OVC_REGION_NO_SHARE | shm));
	assert_ovc_ok(ovc_region_add(e, b.p, b.len, 1u << 30, shm));
	if (m->swap)
		assert_ovc_ok(ovc_engine_reclaim(e, a.len + b.len, 0));
	struct reclaimer rc;
	reclaimer_start(&rc, e, m);
	/* Enough intervals for every page to turn cold and go out. */
	reclaimer_wait_passes(&rc, m->swap ? 6 : 2);
	long reclaimed, last_err;
	long errors = reclaimer_stop_scan(&rc, &reclaimed, &last_err);
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	size_t zero_a = pages_in_state(e, a.p, PST_ZERO), zero_b = pages_in_state(e, b.p, PST_ZERO);
	size_t swapped_a = pages_in_state(e, a.p, PST_SWAPPED);
	size_t zpfn_a = m->backing == BACK_ANON ? zero_pfn_pages(a.p, n) : 0;
	print_message("no-share %s: NO_SHARE region %zu ZERO, %zu SWAPPED, %zu on the zero page; "
		      "other region %zu ZERO; %" PRIu64 " swapped out\n",
		      m->name, zero_a, swapped_a, zpfn_a, zero_b, st.pages_swapped_out);
	long bad = shadow_compare(a.p, shadow, n, "no-share") + shadow_compare(b.p, shadow, n, "other");
	assert_int_equal(pages_in_state(e, a.p, PST_ZERO), 0);
	if (m->backing == BACK_ANON)
		assert_int_equal(zero_pfn_pages(a.p, n), 0);
	reclaimer_stop(&rc);
	ovc_engine_free(e);
	bad += shadow_compare(a.p, shadow, n, "no-share") + shadow_compare(b.p, shadow, n, "other");
	free(shadow);
	guest_ram_free(&a);
	guest_ram_free(&b);
	assert_int_equal(errors, 0);
	assert_int_equal(bad, 0);
	assert_int_equal(zero_a, 0);
	assert_int_equal(zpfn_a, 0);
	assert_true(zero_b > 0);
	if (m->swap)
		assert_true(swapped_a >= n / 2); /* the zero ones too, as data */
}

/* ---- which accesses are served ---------------------------------------------- */

/* How an access path fares on a reclaimed page. */
enum verdict { SERVED, FAILS_EIO };

static const char *verdict_name(enum verdict v)
{
	return v == SERVED ? "served" : "EIO";
}

/* The reclaimed states a page can be in, per mode. */
enum rstate { RS_RESIDENT, RS_ZERO, RS_SWAPPED, RS_HOLE, RS_NSTATES };

static const char *const rstate_name[RS_NSTATES] = { "RESIDENT", "ZERO", "SWAPPED", "HOLE" };

/*
 * /proc/PID/mem and ptrace peeks/pokes go through the kernel's
 * access_remote_vm(), whose page lookup cannot wait for a userfaultfd
 * handler (no FAULT_FLAG_ALLOW_RETRY): a page that is not present fails the
 * access with EIO instead of faulting to the engine, and so does a write
 * to a page under userfaultfd write protection. Not present: SWAPPED
 * pages, ZERO pages of shared memory (a hole; private anonymous ZERO
 * pages map the shared zero page, which reads and copies on write), and
 * any hole: a page the VMM discarded or never touched.
 * Write-protected: on the sync write-protect path every page the tracker
 * saw unwritten at its last interval, until its next write.
 */
static enum verdict mem_expect(const struct engine_mode *m, enum rstate s, bool write)
{
	if (s == RS_SWAPPED || s == RS_HOLE || (s == RS_ZERO && m->backing == BACK_MEMFD))
		return FAILS_EIO;
	if (write && s == RS_RESIDENT && (m->flags & OVC_ENGINE_SYNC_WP) && m->swap)
		return FAILS_EIO;
	return SERVED;
}

/* One reclaim pass of the mode: a scan for @s ZERO, else a swap interval
 * (a scan without swap); the loop does both. */
static void pass_for(ovc_engine *e, const struct engine_mode *m, struct loop *l, enum rstate s)
{
	if (m->flags & OVC_ENGINE_NO_THREADS) {
		loop_one_pass(l);
	} else if (s == RS_ZERO || !m->swap) {
		assert_true(ovc_engine_scan_sync(e, 0) >= 0);
	} else {
		assert_true(engine_test_swap_tick(e) >= 0);
	}
}

/* Put @page into state @s afresh, holding @want (filled here): written
 * with other data first and seen so (a ZERO page the CPU wrote zeros into
 * stays ZERO but is a private page), then reclaimed again. RESIDENT: data
 * written and one interval (pass) gone by since, so the sync tracker
 * protects it. HOLE: discarded by the VMM (MADV_DONTNEED, MADV_REMOVE on
 * shared memory), as a balloon does. Returns false when the mode has no
 * such state. */
static bool make_state(ovc_engine *e, const struct engine_mode *m, struct loop *l, uint8_t *page, enum rstate s,
		       uint8_t *want)
{
	if (s == RS_SWAPPED && !m->swap)
		return false;
	if (s == RS_HOLE) {
		memset(want, 0, PG);
		page[0] = 1;
		assert_int_equal(madvise(page, PG, m->backing == BACK_MEMFD ? MADV_REMOVE : MADV_DONTNEED), 0);
		unsigned char v;
		assert_int_equal(mincore(page, PG, &v), 0);
		assert_int_equal(v & 1, 0);
		return true;
	}
	if (s == RS_ZERO)
		memset(want, 0, PG);
	else
		pattern_fill(want, PG, (uint64_t)(uintptr_t)page + s);
	page[0] ^= 0xff;
	page[1] = 1;
	for (int i = 0; i < 50 && page_state(e, page) == PST_ZERO; i++)
		pass_for(e, m, l, RS_ZERO);
	assert_int_not_equal(page_state(e, page), PST_ZERO);
	memcpy(page, want, PG);
	if (s == RS_RESIDENT) {
		pass_for(e, m, l, s);
		assert_int_equal(page_state(e, page), PST_RESIDENT);
		return true;
	}
	enum pst_state goal = s == RS_ZERO ? PST_ZERO : PST_SWAPPED;
	for (int i = 0; i < 50 && page_state(e, page) != goal; i++)
		pass_for(e, m, l, s);
	assert_int_equal(page_state(e, page), goal);
	return true;
}

struct ptrace_result {
	long peek_errno;         /* 0: served */
	long poke_errno;
	uint64_t word;
};

/* PTRACE_PEEKDATA then PTRACE_POKEDATA (of the word it read, so the page
 * keeps its content) on @addr in this process's main thread, by a child
 * that seizes and interrupts it (a trap-stop of that thread alone, where
 * an attach's SIGSTOP would stop every thread, the engine's handler too). */
static struct ptrace_result ptrace_peek_poke(void *addr)
{
	int fd[2];
	struct ptrace_result res = { 0 };
	assert_int_equal(pipe2(fd, O_CLOEXEC), 0);
	pid_t target = getpid();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ptrace_result r = { -1, -1, 0 };
		int st;
		if (ptrace(PTRACE_SEIZE, target, 0, 0) == 0 && ptrace(PTRACE_INTERRUPT, target, 0, 0) == 0 &&
		    waitpid(target, &st, __WALL) == target) {
			errno = 0;
			long v = ptrace(PTRACE_PEEKDATA, target, addr, 0);
			r.peek_errno = errno;
			r.word = (uint64_t)v;
			/* Poke back what is there (zeros when the peek failed:
			 * the page is then a reclaimed one whose word 0 is known
			 * to the caller). */
			errno = 0;
			if (ptrace(PTRACE_POKEDATA, target, addr, r.peek_errno ? 0 : v) < 0)
				r.poke_errno = errno;
			else
				r.poke_errno = 0;
			ptrace(PTRACE_DETACH, target, 0, 0);
		}
		if (write(fd[1], &r, sizeof(r)) < 0)
			_exit(2);
		_exit(0);
	}
	close(fd[1]);
	/* The child interrupts this thread while it waits here. */
	ssize_t n;
	while ((n = read(fd[0], &res, sizeof(res))) < 0 && errno == EINTR)
		;
	assert_int_equal(n, sizeof(res));
	close(fd[0]);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	assert_true(res.peek_errno >= 0);
	return res;
}

static void expect_verdict(const struct engine_mode *m, const char *path, enum rstate s, enum verdict want,
			   long err)
{
	enum verdict got = err == 0 ? SERVED : err == EIO ? FAILS_EIO : (enum verdict)-1;
	print_message("access %s: %-22s on a %-7s page: %s%s%s\n", m->name, path, rstate_name[s],
		      err == 0 ? "served" : "fails: ", err ? strerror((int)err) : "",
		      got == want ? "" : "  <-- not as documented");
	if (got != want)
		fail_msg("%s: %s on a %s page: %s, documented as %s", m->name, path, rstate_name[s],
			 err ? strerror((int)err) : "served", verdict_name(want));
}

/* Every access path of docs/engine.md on a page in each reclaimed state
 * the mode has. Served paths must return the page's content (or write it);
 * the EIO ones must fail with exactly EIO and leave the page as it was, so
 * that this test fails if the kernel ever behaves otherwise. The vCPU path
 * (KVM's own page lookup, which waits for the handler) runs in the
 * ovc-vmm integration test. */
static void test_access(void **state)
{
	const struct wcase *c = *state;
	const struct engine_mode *m = &c->mode;
	mode_need(m);
	struct rig rg;
	rig_init(&rg, m, 64, 0);
	ovc_engine *e = mode_engine_new(m, rg.g.len, NULL);
	/* One access at a time here, no pin during a pass: every path may
	 * reclaim (OVC_REGION_UNPINNED where it needs the promise). */
	assert_ovc_ok(ovc_region_add(e, rg.g.p, rg.g.len, 0, mode_cpu_only_flags(m->flags, m->backing)));
	/* Everything may go, but only in the intervals this test runs (the
	 * kick of ovc_engine_reclaim() would run one more). */
	if (m->swap)
		engine_test_set_target(e, rg.g.len);
	struct loop l;
	if (m->flags & OVC_ENGINE_NO_THREADS) {
		loop_start(&l, e, false);
		atomic_store(&l.swap, m->swap);
	}
	int mem = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	assert_true(mem >= 0);
	struct writer *w = &rg.w[0];
	uint8_t *want = aligned_alloc(PG, PG), *got = aligned_alloc(PG, PG);
	unsigned tried = 0;

	for (enum rstate s = 0; s < RS_NSTATES; s++) {
		uint8_t *page = rg.g.p + (size_t)(8 + s) * PG;
		long err;
#define FRESH() assert_true(make_state(e, m, &l, page, s, want))
		if (s == RS_SWAPPED && !m->swap)
			continue;

		/* /proc/self/mem, read and write. */
		FRESH();
		err = pread(mem, got, PG, (off_t)(uintptr_t)page) == PG ? 0 : errno;
		if (!err)
			assert_memory_equal(got, want, PG);
		expect_verdict(m, "/proc/self/mem read", s, mem_expect(m, s, false), err);
		assert_memory_equal(page, want, PG); /* intact, and served to the CPU */
		FRESH();
		err = pwrite(mem, want, PG, (off_t)(uintptr_t)page) == PG ? 0 : errno;
		expect_verdict(m, "/proc/self/mem write", s, mem_expect(m, s, true), err);
		assert_memory_equal(page, want, PG);

		/* ptrace, from a second process. */
		FRESH();
		struct ptrace_result pr = ptrace_peek_poke(page);
		if (!pr.peek_errno)
			assert_memory_equal(&pr.word, want, 8);
		expect_verdict(m, "ptrace PEEKDATA", s, mem_expect(m, s, false), pr.peek_errno);
		assert_memory_equal(page, want, PG);
		FRESH();
		pr = ptrace_peek_poke(page);
		expect_verdict(m, "ptrace POKEDATA", s, mem_expect(m, s, true), pr.poke_errno);
		assert_memory_equal(page, want, PG);

		/* The kernel writing into the page: O_DIRECT, io_uring. */
		size_t pg_idx = (size_t)(page - rg.g.p) / PG;
		unsigned blk = 1 + 4 * s; /* a data block */
		FRESH();
		err = kernel_pread(rg.f.src_direct, page, PG, (off_t)blk * PG) == PG ? 0 : errno;
		expect_verdict(m, "O_DIRECT pread into", s, SERVED, err);
		assert_memory_equal(page, rg.f.src_shadow + (size_t)blk * PG, PG);
		FRESH();
		int64_t ur = uring_rw(w, false, rg.f.src_direct, page, PG, (uint64_t)blk * PG);
		expect_verdict(m, "io_uring read into", s, SERVED, ur == PG ? 0 : ur < 0 ? -ur : EIO);
		assert_memory_equal(page, rg.f.src_shadow + (size_t)blk * PG, PG);

		/* The kernel reading the page: O_DIRECT write, io_uring,
		 * write(2), vmsplice. */
		memcpy(rg.t.shadow + pg_idx * PG, want, PG);
		FRESH();
		err = pwrite(rg.f.sink_direct, page, PG, 0) == PG ? 0 : errno;
		expect_verdict(m, "O_DIRECT pwrite from", s, SERVED, err);
		assert_int_equal(pread(rg.f.sink, got, PG, 0), PG);
		assert_memory_equal(got, want, PG);
		FRESH();
		ur = uring_rw(w, true, rg.f.sink_direct, page, PG, PG);
		expect_verdict(m, "io_uring write from", s, SERVED, ur == PG ? 0 : ur < 0 ? -ur : EIO);
		assert_int_equal(pread(rg.f.sink, got, PG, PG), PG);
		assert_memory_equal(got, want, PG);
		FRESH();
		err = pwrite(rg.f.sink, page, PG, 2 * PG) == PG ? 0 : errno;
		expect_verdict(m, "write(2) from", s, SERVED, err);
		assert_int_equal(pread(rg.f.sink, got, PG, 2 * PG), PG);
		assert_memory_equal(got, want, PG);
		FRESH();
		struct iovec iov = { page, PG };
		err = vmsplice(w->pipe[1], &iov, 1, 0) == PG ? 0 : errno;
		expect_verdict(m, "vmsplice from", s, SERVED, err);
		if (!err) {
			assert_int_equal(read(w->pipe[0], got, PG), PG);
			assert_memory_equal(got, want, PG);
		}

		/* A second process: process_vm_readv/writev. */
		FRESH();
		int64_t hr = kw_helper_call(w->h, KW_PVM_READ, page, PG, 0, w->rep);
		expect_verdict(m, "process_vm_readv", s, SERVED, hr == PG ? 0 : hr < 0 ? -hr : EIO);
		assert_memory_equal(w->rep->data, want, PG);
		FRESH();
		hr = kw_helper_call(w->h, KW_PVM_WRITE, page, PG, 77, w->rep);
		expect_verdict(m, "process_vm_writev", s, SERVED, hr == PG ? 0 : hr < 0 ? -hr : EIO);
		pattern_fill(got, PG, 77);
		assert_memory_equal(page, got, PG);

		/* A VMM thread: this one. */
		FRESH();
		assert_memory_equal(page, want, PG);
		FRESH();
		page[100] ^= 0x5a;
		want[100] ^= 0x5a;
		assert_memory_equal(page, want, PG);
		expect_verdict(m, "VMM thread read+write", s, SERVED, 0);
		tried++;
#undef FRESH
	}
	close(mem);
	free(want);
	free(got);
	if (m->flags & OVC_ENGINE_NO_THREADS)
		loop_stop(&l);
	ovc_engine_free(e);
	rig_fini(&rg);
	assert_true(tried > 0);
}

/* ---- the matrix ---------------------------------------------------------------- */

/* The write-protect path on anonymous memory is the one of kernels
 * without UFFDIO_MOVE (OVC_ENGINE_NO_MOVE; with swap, the sync
 * write-protect mode dropping with MADV_DONTNEED); shared memory always
 * takes it. There a region keeps its pages unless OVC_REGION_UNPINNED says
 * that only CPUs write it: kernel writers run here, so the writers, inject
 * and lives tests add regions without it and check that nothing is
 * dropped; the CPU-only tests (no-share, access) set it, and
 * tests/engine/test-torture.c runs those modes with it against CPU writers. */
static const struct engine_mode modes[] = {
	{ "threads/anon/default", 0, BACK_ANON, false },
	{ "threads/anon/move", OVC_ENGINE_MOVE, BACK_ANON, false },
	{ "threads/anon/wp", OVC_ENGINE_NO_MOVE, BACK_ANON, false },
	{ "threads/memfd/wp", 0, BACK_MEMFD, false },
	{ "loop/anon/move", OVC_ENGINE_NO_THREADS, BACK_ANON, false },
	{ "threads/anon/swap", 0, BACK_ANON, true },
	{ "loop/anon/swap", OVC_ENGINE_NO_THREADS, BACK_ANON, true },
	{ "threads/anon/syncwp", OVC_ENGINE_SYNC_WP, BACK_ANON, true },
	{ "threads/anon/syncwp-nomove", OVC_ENGINE_SYNC_WP | OVC_ENGINE_NO_MOVE, BACK_ANON, true },
};

#define NMODES ARRAY_SIZE(modes)

int main(int argc, char **argv)
{
	struct params params = { .seconds = 1.0, .lives = 40 };
	if (argc > 1)
		params.seconds = atof(argv[1]);
	if (argc > 2)
		params.lives = (unsigned)strtoul(argv[2], NULL, 0);
	/* A writer whose pipe reader is gone must see EPIPE, not die. */
	signal(SIGPIPE, SIG_IGN);

	static const struct {
		const char *prefix;
		CMUnitTestFunction fn;
	} kinds[] = {
		{ "writers", test_writers },
		{ "inject", test_inject },
		{ "lives", test_lives },
		{ "no-share", test_no_share },
		{ "access", test_access },
	};
	struct wcase cases[NMODES];
	static char names[ARRAY_SIZE(kinds) * NMODES][64];
	struct CMUnitTest tests[ARRAY_SIZE(kinds) * NMODES];
	size_t nt = 0;
	for (size_t i = 0; i < NMODES; i++)
		cases[i] = (struct wcase){ modes[i], &params };
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++)
		for (size_t i = 0; i < NMODES; i++, nt++) {
			snprintf(names[nt], sizeof(names[nt]), "%s %s", kinds[k].prefix, modes[i].name);
			tests[nt] = (struct CMUnitTest){ names[nt], kinds[k].fn, NULL, NULL, &cases[i] };
		}
	if (getenv("OVC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("OVC_TEST_FILTER"));
	return _cmocka_run_group_tests("writers", tests, nt, NULL, NULL);
}
