/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench swap, the kernel peer: Linux swap on a swapfile in the same
 * directory as the engine's swap file, over a copy of the same pages.
 * Measures MADV_PAGEOUT until the writeback is done (kswap_out_gib_s) and
 * the madvise call alone (kswap_pageout_call_gib_s), then random and
 * sequential swap-ins once the swap cache is dropped through a v1 memory
 * cgroup of its own (kswap_in_*); the engine's swap-out and swap-in
 * (bench-swap.c) are compared against these. Null figures and kswap_note
 * where swapon or the cgroup is refused.
 *
 * Runs on the driver's thread (bench-swap.c). No locks: the swapfile and
 * cgroup to undo are process-global so that atexit() and the SIGINT/SIGTERM
 * handler (async-signal context) can swapoff, unlink and leave them.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <unistd.h>

#include "bench-swap.h"
#include "common/util.h"

/*
 * Process-global state for the way out (bench program, not library): the
 * swapfile to swapoff and unlink, and the temporary memory cgroup to leave
 * and remove, on return, exit() or SIGINT/SIGTERM.
 *
 * Why a cgroup: MADV_PAGEOUT writes pages to swap but leaves them in the swap
 * cache (clean, unmapped) until memory pressure frees them, so touching them
 * again is a minor fault with no I/O (measured: 3-8 us). To time real
 * swap-ins the swap cache must go, and the only way without pressuring the
 * whole host is reclaiming one memory cgroup: v1 memory.force_empty on a
 * child cgroup of our own, which this process joins for the kernel-swap
 * phase only (charges do not move with a task on 6.x, so the pages are
 * allocated after joining).
 */
static char kswap_path[512];
static volatile sig_atomic_t kswap_on;
static char cg_parent[512], cg_child[600];

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t _unused_ r = write(fd, text, strlen(text));
		close(fd);
	}
}

static void kswap_cleanup(void)
{
	if (kswap_on) {
		swapoff(kswap_path);
		kswap_on = 0;
	}
	if (kswap_path[0]) {
		unlink(kswap_path);
		kswap_path[0] = 0;
	}
	if (cg_child[0]) {
		char path[700], pid[32];
		snprintf(path, sizeof(path), "%s/cgroup.procs", cg_parent);
		snprintf(pid, sizeof(pid), "%d\n", getpid());
		write_file(path, pid);
		rmdir(cg_child);
		cg_child[0] = 0;
	}
}

static void kswap_signal(int sig)
{
	kswap_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Join a fresh child of our memory cgroup (v1). false if there is none. */
static bool cg_join(void)
{
	char line[600], path[700], pid[32];
	FILE *f = fopen("/proc/self/cgroup", "re");
	bool found = false;
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, ":memory:");
		if (p) {
			p += strlen(":memory:");
			p[strcspn(p, "\n")] = 0;
			snprintf(cg_parent, sizeof(cg_parent), "/sys/fs/cgroup/memory%s",
				 strcmp(p, "/") ? p : "");
			found = true;
		}
	}
	fclose(f);
	if (!found)
		return false;
	snprintf(cg_child, sizeof(cg_child), "%s/ovc-bench-swap-%d", cg_parent, getpid());
	if (mkdir(cg_child, 0700) < 0) {
		cg_child[0] = 0;
		return false;
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg_child);
	snprintf(pid, sizeof(pid), "%d\n", getpid());
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	bool ok = fd >= 0 && write(fd, pid, strlen(pid)) > 0;
	if (fd >= 0)
		close(fd);
	if (!ok) {
		rmdir(cg_child);
		cg_child[0] = 0;
	}
	return ok;
}

/* Reclaim everything our cgroup holds: drops the swap cache. */
static bool cg_drop(void)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/memory.force_empty", cg_child);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool ok = write(fd, "0\n", 2) == 2;
	close(fd);
	return ok;
}

static long vmstat(const char *key)
{
	char line[128];
	long v = -1;
	size_t kl = strlen(key);
	FILE *f = fopen("/proc/vmstat", "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
			v = atol(line + kl + 1);
			break;
		}
	fclose(f);
	return v;
}

static uint64_t vm_swap_bytes(void)
{
	char line[128];
	uint64_t kib = 0;
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "VmSwap:", 7) == 0)
			kib = strtoull(line + 7, NULL, 10);
	fclose(f);
	return kib * KIB;
}

static uint64_t resident_pages(char *mem, uint64_t bytes)
{
	size_t n = bytes / PG;
	unsigned char *vec = malloc(n);
	uint64_t r = 0;
	if (!vec || mincore(mem, bytes, vec) < 0) {
		free(vec);
		return UINT64_MAX;
	}
	for (size_t i = 0; i < n; i++)
		r += vec[i] & 1;
	free(vec);
	return r;
}

/* MADV_PAGEOUT the region and wait until the writes are done: the madvise
 * returns with swap writes in flight, so the clock runs until nr_writeback
 * is back where it was. Rate over the bytes that went to swap. */
static double kswap_pageout(char *mem, uint64_t bytes, long wb0, double *ret_call_gib_s)
{
	uint64_t sw0 = vm_swap_bytes();
	uint64_t t0 = bench_now_ns();
	if (madvise(mem, bytes, MADV_PAGEOUT) < 0)
		return NOVAL;
	double call_secs = (double)(bench_now_ns() - t0) / 1e9;
	for (unsigned spins = 0; spins < 300000; spins++) {
		if (vmstat("nr_writeback") <= wb0)
			break;
		usleep(100);
	}
	double secs = (double)(bench_now_ns() - t0) / 1e9;
	uint64_t out = vm_swap_bytes() - sw0;
	if (out < bytes / 2) /* the kernel kept most: no figure */
		return NOVAL;
	if (ret_call_gib_s)
		*ret_call_gib_s = (double)out / GIB / call_secs;
	return (double)out / GIB / secs;
}

/* kswap_out_gib_s: @repeat MADV_PAGEOUT runs of the same bytes, median.
 * Between runs every page is written again from @mem: a minor fault on
 * the page still in the swap cache, which makes it dirty, so the next
 * run writes it again. Also the madvise call's own rate (median). */
static double kswap_pageout_runs(char *kmem, const char *mem, uint64_t bytes, long wb0, unsigned repeat,
				 double *ret_call_gib_s, bool print)
{
	double *v = calloc(repeat, sizeof(*v)), *c = calloc(repeat, sizeof(*c)), out = NOVAL;
	for (unsigned i = 0; v && c && i < repeat; i++) {
		if (i)
			memcpy(kmem, mem, bytes);
		c[i] = NOVAL;
		v[i] = kswap_pageout(kmem, bytes, wb0, &c[i]);
		if (v[i] < 0) {
			repeat = 0;
			break;
		}
	}
	if (v && c && repeat) {
		if (print) {
			printf("runs (GiB/s, in order): kernel MADV_PAGEOUT");
			for (unsigned i = 0; i < repeat; i++)
				printf(" %.3f", v[i]);
			printf("\n");
		}
		out = bench_median(v, repeat);
		*ret_call_gib_s = bench_median(c, repeat);
	}
	free(v);
	free(c);
	return out;
}

void kernel_swap(const char *dir, const char *mem, uint64_t bytes, unsigned repeat, bool print,
			struct swap_results *res)
{
	char cmd[700];
	char *kmem = MAP_FAILED;
	int fd;
	const unsigned nrand = 4000;

	res->kswap_out_gib_s = res->kswap_in_rand_p50_us = res->kswap_in_rand_p99_us = NOVAL;
	res->kswap_pageout_call_gib_s = NOVAL;
	res->kswap_in_seq_gib_s = NOVAL;
	snprintf(kswap_path, sizeof(kswap_path), "%s/ovc-bench-swapfile-%d", dir, getpid());
	atexit(kswap_cleanup);
	signal(SIGINT, kswap_signal);
	signal(SIGTERM, kswap_signal);

	fd = open(kswap_path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(res->kswap_note, sizeof(res->kswap_note), "cannot create swapfile: %s",
			 strerror(errno));
		kswap_path[0] = 0;
		goto out;
	}
	/* Headroom over the region: the kernel clusters swap slots. */
	uint64_t fbytes = bytes + bytes / 8 + 16 * MIB;
	int ferr = fallocate(fd, 0, 0, (off_t)fbytes) < 0 ? errno : 0;
	close(fd);
	if (ferr) {
		snprintf(res->kswap_note, sizeof(res->kswap_note), "fallocate: %s", strerror(ferr));
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "mkswap -q '%s' >/dev/null 2>&1", kswap_path);
	if (system(cmd) != 0) {
		snprintf(res->kswap_note, sizeof(res->kswap_note), "mkswap failed");
		goto out;
	}
	if (swapon(kswap_path, 0) < 0) {
		snprintf(res->kswap_note, sizeof(res->kswap_note), "swapon refused: %s",
			 strerror(errno));
		goto out;
	}
	kswap_on = 1;
	bool cg = cg_join();
	/* The same bytes, in pages charged to our cgroup. */
	kmem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (kmem == MAP_FAILED)
		goto out;
	memcpy(kmem, mem, bytes);

	long wb0 = vmstat("nr_writeback");
	res->kswap_out_gib_s = kswap_pageout_runs(kmem, mem, bytes, wb0, repeat, &res->kswap_pageout_call_gib_s,
						  print);
	if (res->kswap_out_gib_s < 0) {
		snprintf(res->kswap_note, sizeof(res->kswap_note),
			 "MADV_PAGEOUT left most pages resident");
		goto out;
	}
	if (!cg || !cg_drop() || resident_pages(kmem, bytes) > bytes / PG / 100) {
		snprintf(res->kswap_note, sizeof(res->kswap_note),
			 "swap-in not measured: cannot drop the swap cache (needs a v1 memory cgroup)");
		goto out;
	}

	/* Random swap-in: one read per page, random pages, each timed. */
	uint64_t npages = bytes / PG;
	volatile char sink = 0;
	bench_rand_touch(kmem, npages, nrand, &res->kswap_in_rand_p50_us, &res->kswap_in_rand_p99_us,
		   res->kswap_in_rand_cdf);

	/* Sequential: out again (cheap: most pages kept their slot), drop the
	 * cache, then one pass touching every page in order. */
	madvise(kmem, bytes, MADV_PAGEOUT);
	for (unsigned spins = 0; spins < 300000 && vmstat("nr_writeback") > wb0; spins++)
		usleep(100);
	if (cg_drop() && resident_pages(kmem, bytes) <= bytes / PG / 100) {
		uint64_t t0 = bench_now_ns();
		for (uint64_t p = 0; p < npages; p++)
			sink += kmem[p * PG + 1];
		res->kswap_in_seq_gib_s = (double)bytes / GIB / ((double)(bench_now_ns() - t0) / 1e9);
	}
out:
	if (kmem != MAP_FAILED)
		munmap(kmem, bytes);
	kswap_cleanup();
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
}
