/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench zero [--size 1GiB] [--json] [--repeat N] [-- --wp]
 *
 * Zero-page reclaim on three layouts (all zero; 50% zero in runs of 64
 * pages; 50% zero, alternating single pages), each with a busy "vCPU"
 * thread of this process on the other core (that is when dropping pages is
 * dear: every TLB flush interrupts it). Measured in the same run:
 *   ovc     the engine: one ovc_engine_scan_sync() from start until every
 *           zero page is reclaimed; wall rate and CPU seconds (process CPU
 *           minus the vCPU thread's);
 *   limit   the same work without any atomicity, well batched: vectorised
 *           zero check, MADV_DONTNEED of whole runs, process_madvise of
 *           512 scattered pages per call — the practical limit here;
 *   ksm     Linux KSM, use_zero_pages=1, pages_to_scan=10000,
 *           sleep_millisecs=20, merging the same memory: time until every
 *           zero page is merged, ksmd's CPU from /proc. KSM's settings are
 *           restored afterwards, also on failure and on SIGINT/SIGTERM.
 * Plus the engine's metadata per page, and the latency of the first read
 * and first write of a reclaimed page beside the kernel's own anonymous
 * faults (read: zero-page map; write: allocate), p50/p99.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <ovc/ovc.h>

#include "bench.h"
#include "engine/internal.h"
#include "engine/scan.h"

#define PAGE 4096ul

enum layout { ALL_ZERO, RUNS_64, ALTERNATING, NLAYOUTS };
static const char *const layout_names[] = { "all-zero", "runs-64", "alternating" };

static bool is_zero_page(enum layout l, size_t i)
{
	switch (l) {
	case ALL_ZERO:
		return true;
	case RUNS_64:
		return (i / 64) % 2 == 0;
	default:
		return i % 2 == 0;
	}
}

static uint8_t *region_new(size_t len, enum layout l, size_t *nzero)
{
	uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	*nzero = 0;
	for (size_t i = 0; i < len / PAGE; i++) {
		uint8_t *pg = p + i * PAGE;
		if (is_zero_page(l, i)) {
			memset(pg, 0, PAGE); /* present, private, zero */
			++*nzero;
		} else {
			memset(pg, 0, PAGE);
			pg[(i * 2654435761u) % PAGE] = (uint8_t)(i | 1);
		}
	}
	return p;
}

/* --- the busy vCPU ------------------------------------------------------ */

struct vcpu {
	pthread_t th;
	atomic_bool stop;
	clockid_t clock;
	uint8_t *mem;
};

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	bench_pin(1);
	size_t len = 8u << 20;
	for (uint64_t k = 0; !atomic_load_explicit(&v->stop, memory_order_relaxed); k++)
		for (size_t i = 0; i < len; i += 64)
			v->mem[i] = (uint8_t)k;
	return NULL;
}

static void vcpu_start(struct vcpu *v)
{
	memset(v, 0, sizeof(*v));
	v->mem = malloc(8u << 20);
	memset(v->mem, 1, 8u << 20);
	pthread_create(&v->th, NULL, vcpu_main, v);
	pthread_getcpuclockid(v->th, &v->clock);
}

static uint64_t vcpu_cpu_ns(struct vcpu *v)
{
	struct timespec ts;
	clock_gettime(v->clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void vcpu_stop(struct vcpu *v)
{
	atomic_store(&v->stop, true);
	pthread_join(v->th, NULL);
	free(v->mem);
}

/* --- ovc ---------------------------------------------------------------- */

struct result {
	double gib_s, cpu_s;
};

static double g_meta_per_page;

static int run_ovc(size_t len, enum layout l, bool use_wp, struct vcpu *v, struct result *res,
		   ovc_engine **keep, uint8_t **keep_mem)
{
	size_t nzero;
	uint8_t *p = region_new(len, l, &nzero);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o),
				     .flags = OVC_ENGINE_NO_AUTOSCAN | (use_wp ? OVC_ENGINE_NO_MOVE : 0) };
	int r = ovc_engine_new(&o, &e);
	if (r < 0 || !p) {
		fprintf(stderr, "ovc-bench zero: engine: %s\n", ovc_strerror(r));
		return 1;
	}
	/* Without MOVE the engine drops only on the VMM's promise that
	 * nothing writes the region through a pin: true here (CPU only). */
	r = ovc_region_add(e, p, len, 0, use_wp ? OVC_REGION_UNPINNED : 0);
	if (r < 0) {
		fprintf(stderr, "ovc-bench zero: region: %s\n", ovc_strerror(r));
		return 1;
	}
	uint64_t c0 = bench_cpu_ns(), v0 = vcpu_cpu_ns(v), t0 = bench_now_ns();
	int64_t n = ovc_engine_scan_sync(e, 0);
	uint64_t t1 = bench_now_ns(), c1 = bench_cpu_ns(), v1 = vcpu_cpu_ns(v);
	if (n != (int64_t)nzero) {
		fprintf(stderr, "ovc-bench zero: engine reclaimed %lld of %zu zero pages\n", (long long)n, nzero);
		return 1;
	}
	res->gib_s = (double)len / (1 << 30) / ((double)(t1 - t0) / 1e9);
	res->cpu_s = (double)((c1 - c0) - (v1 - v0)) / 1e9;
	struct ovc_engine_stats st = { .size = sizeof(st) };
	ovc_engine_stats(e, &st);
	if (!keep) /* the layouts' region, not the small latency one */
		g_meta_per_page = (double)st.meta_bytes / (double)(len / PAGE);
	if (keep) {
		*keep = e;
		*keep_mem = p;
	} else {
		ovc_engine_free(e);
		munmap(p, len);
	}
	return 0;
}

/* --- limit -------------------------------------------------------------- */

static int run_limit(size_t len, enum layout l, struct vcpu *v, struct result *res)
{
	size_t nzero;
	uint8_t *p = region_new(len, l, &nzero);
	int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	struct iovec iov[512];
	unsigned niov = 0;
	if (!p || pidfd < 0)
		return 1;
	uint64_t c0 = bench_cpu_ns(), v0 = vcpu_cpu_ns(v), t0 = bench_now_ns();
	size_t npages = len / PAGE, run = 0, i;
	for (i = 0; i <= npages; i++) {
		if (i < npages && scan_page_is_zero(p + i * PAGE)) {
			run++;
			continue;
		}
		if (run >= 2) {
			madvise(p + (i - run) * PAGE, run * PAGE, MADV_DONTNEED);
		} else if (run == 1) {
			iov[niov++] = (struct iovec){ p + (i - 1) * PAGE, PAGE };
			if (niov == 512) {
				syscall(SYS_process_madvise, pidfd, iov, niov, MADV_DONTNEED, 0);
				niov = 0;
			}
		}
		run = 0;
	}
	if (niov)
		syscall(SYS_process_madvise, pidfd, iov, niov, MADV_DONTNEED, 0);
	uint64_t t1 = bench_now_ns(), c1 = bench_cpu_ns(), v1 = vcpu_cpu_ns(v);
	res->gib_s = (double)len / (1 << 30) / ((double)(t1 - t0) / 1e9);
	res->cpu_s = (double)((c1 - c0) - (v1 - v0)) / 1e9;
	close(pidfd);
	munmap(p, len);
	return 0;
}

/* --- KSM ---------------------------------------------------------------- */

static const char *const ksm_knobs[] = { "run", "pages_to_scan", "sleep_millisecs", "use_zero_pages" };
static char ksm_saved[4][32];
static volatile sig_atomic_t ksm_dirty;

static int knob_rw(const char *name, char *buf, size_t len, bool write_it)
{
	char path[128];
	snprintf(path, sizeof(path), "/sys/kernel/mm/ksm/%s", name);
	int fd = open(path, (write_it ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write_it ? write(fd, buf, strlen(buf)) : read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	if (!write_it) {
		buf[n] = 0;
		buf[strcspn(buf, "\n")] = 0;
	}
	return 0;
}

/* Async-signal-safe: open/write/close only. run first (stop), then the
 * rest, then run's saved value. */
static void ksm_restore(void)
{
	if (!ksm_dirty)
		return;
	char stop[] = "0";
	knob_rw("run", stop, 0, true);
	for (int i = 3; i >= 0; i--)
		knob_rw(ksm_knobs[i], ksm_saved[i], 0, true);
	ksm_dirty = 0;
}

static void ksm_signal(int sig)
{
	ksm_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int ksm_setup(void)
{
	for (int i = 0; i < 4; i++)
		if (knob_rw(ksm_knobs[i], ksm_saved[i], sizeof(ksm_saved[i]), false) < 0)
			return -1;
	ksm_dirty = 1;
	atexit(ksm_restore);
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS };
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], ksm_signal);
	char a[] = "1", b[] = "10000", c[] = "20";
	if (knob_rw("use_zero_pages", a, 0, true) < 0 || knob_rw("pages_to_scan", b, 0, true) < 0 ||
	    knob_rw("sleep_millisecs", c, 0, true) < 0)
		return -1;
	return 0;
}

static int ksmd_pid(void)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int pid = 0;
	while (d && (de = readdir(d))) {
		char path[300], comm[32] = "";
		int n = atoi(de->d_name);
		if (n <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/comm", n);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && strcmp(comm, "ksmd\n") == 0)
			pid = n;
		fclose(f);
		if (pid)
			break;
	}
	if (d)
		closedir(d);
	return pid;
}

static long self_ksm_zero_pages(void)
{
	FILE *f = fopen("/proc/self/ksm_stat", "re");
	char line[128];
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "ksm_zero_pages %ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static int run_ksm(size_t len, enum layout l, struct result *res)
{
	size_t nzero;
	int pid = ksmd_pid();
	uint8_t *p = region_new(len, l, &nzero);
	if (!p || !pid)
		return 1;
	long base = self_ksm_zero_pages();
	if (base < 0)
		return 1;
	if (madvise(p, len, MADV_MERGEABLE) < 0)
		return 1;
	char one[] = "1", zero[] = "0";
	uint64_t k0 = bench_proc_cpu_ns(pid), t0 = bench_now_ns();
	knob_rw("run", one, 0, true);
	int ok = 0;
	while (bench_now_ns() - t0 < 120ull * 1000000000u) {
		if (self_ksm_zero_pages() - base >= (long)nzero) {
			ok = 1;
			break;
		}
		usleep(1000);
	}
	uint64_t t1 = bench_now_ns(), k1 = bench_proc_cpu_ns(pid);
	knob_rw("run", zero, 0, true);
	madvise(p, len, MADV_UNMERGEABLE);
	munmap(p, len);
	if (!ok) {
		fprintf(stderr, "ovc-bench zero: KSM did not merge every zero page in 120 s\n");
		return 1;
	}
	res->gib_s = (double)len / (1 << 30) / ((double)(t1 - t0) / 1e9);
	res->cpu_s = (double)(k1 - k0) / 1e9;
	return 0;
}

/* --- zero-fault latency ------------------------------------------------- */

#define LAT_SAMPLES 16384

struct lat {
	double read_p50, read_p99, write_p50, write_p99;
};

static inline uint64_t ns_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* First read of each page in [p, p + n pages), then first write of each,
 * one access per page, timed one by one. */
static void measure(uint8_t *p, size_t n, struct lat *out)
{
	double *rd = malloc(n * sizeof(double)), *wr = malloc(n * sizeof(double));
	for (size_t i = 0; i < n; i++) {
		volatile uint8_t *q = p + i * PAGE;
		uint64_t a = ns_now();
		(void)*q;
		uint64_t b = ns_now();
		rd[i] = (double)(b - a);
	}
	for (size_t i = 0; i < n; i++) {
		volatile uint8_t *q = p + i * PAGE + 64;
		uint64_t a = ns_now();
		*q = 1;
		uint64_t b = ns_now();
		wr[i] = (double)(b - a);
	}
	out->read_p50 = bench_percentile(rd, n, 50);
	out->read_p99 = bench_percentile(rd, n, 99);
	out->write_p50 = bench_percentile(wr, n, 50);
	out->write_p99 = bench_percentile(wr, n, 99);
	free(rd);
	free(wr);
}

static int run_latency(bool use_wp, struct vcpu *v, struct lat *ovc, struct lat *kern, struct lat *handler)
{
	size_t len = (size_t)LAT_SAMPLES * PAGE * 2;
	ovc_engine *e;
	uint8_t *p;
	struct result r;
	/* Reclaimed pages: the first half of an all-zero region. The second
	 * half is discarded by "the VMM" first: holes in a registered region,
	 * whose first access goes through the handler (the path a swapped or
	 * shmem page takes). */
	if (run_ovc(len, ALL_ZERO, use_wp, v, &r, &e, &p))
		return 1;
	measure(p, LAT_SAMPLES, ovc);
	madvise(p + len / 2, len / 2, MADV_DONTNEED);
	measure(p + len / 2, LAT_SAMPLES, handler);
	ovc_engine_free(e);
	munmap(p, len);
	uint8_t *k = mmap(NULL, len / 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(k, len / 2, MADV_NOHUGEPAGE);
	measure(k, LAT_SAMPLES, kern);
	munmap(k, len / 2);
	return 0;
}

/* --- main --------------------------------------------------------------- */

static int cmp_res(const void *a, const void *b)
{
	double x = ((const struct result *)a)->gib_s, y = ((const struct result *)b)->gib_s;
	return x < y ? -1 : x > y;
}

static struct result median(struct result *r, unsigned n)
{
	qsort(r, n, sizeof(*r), cmp_res);
	return r[n / 2];
}

int bench_zero(const struct bench_opts *opts)
{
	size_t len = opts->size_bytes ? opts->size_bytes : (1ul << 30);
	unsigned rep = opts->repeat ? opts->repeat : 3;

	/* Whole 2 MiB blocks (the layouts' runs, the engine's batches). */
	len = ALIGN_DOWN(len, (size_t)2 << 20);
	if (len < (size_t)16 << 20) {
		fprintf(stderr, "ovc-bench zero: --size must be at least 16MiB (a number without a unit is bytes)\n");
		return 2;
	}
	/* The engine's default path (UFFDIO_MOVE where the kernel has it), or
	 * with --wp the write-protect path (OVC_ENGINE_NO_MOVE, the region
	 * added with OVC_REGION_UNPINNED: it drops pinned pages, so it
	 * reclaims only on that promise); --move is the default. */
	bool use_wp = false;
	struct result ovc[NLAYOUTS], lim[NLAYOUTS], ksm[NLAYOUTS];
	struct lat lo, lk, lh;
	struct vcpu v;

	for (int i = 0; i < opts->argc; i++) {
		if (strcmp(opts->argv[i], "--wp") == 0 || strcmp(opts->argv[i], "wp") == 0)
			use_wp = true;
		else if (strcmp(opts->argv[i], "--move") == 0 || strcmp(opts->argv[i], "move") == 0)
			use_wp = false;
		else {
			fprintf(stderr, "ovc-bench zero: unknown argument '%s'\n", opts->argv[i]);
			return 2;
		}
	}
	len = len / PAGE * PAGE;
	if (rep > 15)
		rep = 15;
	if (ksm_setup() < 0) {
		fprintf(stderr, "ovc-bench zero: cannot set KSM knobs (root needed): %m\n");
		ksm_restore();
		return 1;
	}
	bench_pin(0);
	vcpu_start(&v);
	int rc = 0;
	for (int l = 0; l < NLAYOUTS && !rc; l++) {
		struct result ro[15], rl[15];
		for (unsigned k = 0; k < rep && !rc; k++) {
			rc |= run_ovc(len, l, use_wp, &v, &ro[k], NULL, NULL);
			rc |= run_limit(len, l, &v, &rl[k]);
		}
		if (rc)
			break;
		ovc[l] = median(ro, rep);
		lim[l] = median(rl, rep);
		rc |= run_ksm(len, l, &ksm[l]);
	}
	if (!rc)
		rc = run_latency(use_wp, &v, &lo, &lk, &lh);
	vcpu_stop(&v);
	ksm_restore();
	if (rc)
		return 1;

	if (opts->json) {
		printf("{");
		bench_json_machine(stdout);
		printf(",\"size_bytes\":%zu,\"repeat\":%u,\"engine_path\":\"%s\",\"layouts\":[", len, rep,
		       use_wp ? "write-protect" : "move");
		for (int l = 0; l < NLAYOUTS; l++)
			printf("%s{\"layout\":\"%s\",\"ovc_gib_s\":%.3f,\"ovc_cpu_s\":%.4f,\"limit_gib_s\":%.3f,"
			       "\"limit_cpu_s\":%.4f,\"ksm_gib_s\":%.3f,\"ksm_cpu_s\":%.4f}",
			       l ? "," : "", layout_names[l], ovc[l].gib_s, ovc[l].cpu_s, lim[l].gib_s,
			       lim[l].cpu_s, ksm[l].gib_s, ksm[l].cpu_s);
		printf("],\"meta_bytes_per_page\":%.4f,\"zero_fault\":{\"read_p50_ns\":%.0f,\"write_p50_ns\":%.0f,"
		       "\"kernel_read_p50_ns\":%.0f,\"kernel_write_p50_ns\":%.0f,\"read_p99_ns\":%.0f,"
		       "\"write_p99_ns\":%.0f,\"kernel_read_p99_ns\":%.0f,\"kernel_write_p99_ns\":%.0f,"
		       "\"handler_read_p50_ns\":%.0f,\"handler_read_p99_ns\":%.0f}}\n",
		       g_meta_per_page, lo.read_p50, lo.write_p50, lk.read_p50, lk.write_p50, lo.read_p99,
		       lo.write_p99, lk.read_p99, lk.write_p99, lh.read_p50, lh.read_p99);
		return 0;
	}
	bench_print_machine(stdout);
	printf("zero-page reclaim, %zu MiB region, busy vCPU thread on the other core, median of %u "
	       "(KSM: 1 run), engine path: %s\n\n", len >> 20, rep, use_wp ? "write-protect" : "move");
	printf("%-12s %10s %9s %10s %9s %10s %9s %9s %9s %11s\n", "layout", "ovc GiB/s", "ovc CPUs",
	       "limit GiB/s", "limit CPUs", "KSM GiB/s", "KSM CPUs", "ovc/limit", "ovc/KSM", "GiB/CPUs x");
	for (int l = 0; l < NLAYOUTS; l++) {
		double eff_o = (double)len / (1 << 30) / ovc[l].cpu_s, eff_k = (double)len / (1 << 30) / ksm[l].cpu_s;
		printf("%-12s %10.2f %9.3f %10.2f %9.3f %10.2f %9.3f %9.2f %9.1f %11.1f\n", layout_names[l],
		       ovc[l].gib_s, ovc[l].cpu_s, lim[l].gib_s, lim[l].cpu_s, ksm[l].gib_s, ksm[l].cpu_s,
		       ovc[l].gib_s / lim[l].gib_s, ovc[l].gib_s / ksm[l].gib_s, eff_o / eff_k);
	}
	printf("\ntargets: ovc/limit >= 0.5, ovc/KSM >= 5, GiB per CPU-second vs KSM >= 3\n");
	printf("metadata: %.4f bytes per page (target <= 8)\n", g_meta_per_page);
	printf("\nfirst access, ns        p50      p99   (target: p50 within 2x of the kernel's)\n");
	printf("reclaimed, read    %8.0f %8.0f\n", lo.read_p50, lo.read_p99);
	printf("kernel anon, read  %8.0f %8.0f   ratio %.2f\n", lk.read_p50, lk.read_p99, lo.read_p50 / lk.read_p50);
	printf("reclaimed, write   %8.0f %8.0f\n", lo.write_p50, lo.write_p99);
	printf("kernel anon, write %8.0f %8.0f   ratio %.2f\n", lk.write_p50, lk.write_p99, lo.write_p50 / lk.write_p50);
	printf("hole via handler, read %5.0f %8.0f   (a discarded page: one trip through the handler)\n",
	       lh.read_p50, lh.read_p99);
	return 0;
}
