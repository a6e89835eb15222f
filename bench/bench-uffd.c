/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench swap, userfaultfd fault costs: what a missing-page fault
 * resolved from user space costs on this machine, below the engine.
 *
 *   fault_rtt      one round trip (fault, handler thread, UFFDIO_COPY,
 *                  wake) with the handler on the same CPU, on the other
 *                  CPU in poll(), and on the other CPU spinning; compared
 *                  with each other (fault_rtt_*_us)
 *   proto_swapin   the smallest swap-in handler swapdev allows (read_sync
 *                  + UFFDIO_COPY; not the engine), random and sequential,
 *                  against the kernel's swap-in from peer-kswap.c
 *                  (proto_swapin_*)
 *
 * The driver's thread faults; each measurement starts one handler thread
 * and joins it before returning. Shared with it: atomic stop/ready flags
 * and an error counter; no locks.
 */

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench-swap.h"
#include "engine/swapdev.h"
#include "common/util.h"

/* Wait for the next page fault on @uffd: poll() first, or with @spin
 * read the non-blocking uffd at once (the caller loops). false: none. */
static bool next_fault(int uffd, bool spin, struct uffd_msg *m)
{
	if (!spin) {
		struct pollfd p = { .fd = uffd, .events = POLLIN };
		if (poll(&p, 1, 100) <= 0)
			return false;
	}
	return read(uffd, m, sizeof(*m)) == sizeof(*m) && m->event == UFFD_EVENT_PAGEFAULT;
}

/* ---------------------------------------------------- userfaultfd RTT -- */

struct rtt {
	int uffd;
	int cpu;
	bool spin;
	atomic_bool stop;
	char *src;
};

static void *rtt_handler(void *arg)
{
	struct rtt *x = arg;
	bench_pin(x->cpu);
	while (!atomic_load(&x->stop)) {
		struct uffd_msg m;
		if (!next_fault(x->uffd, x->spin, &m))
			continue;
		struct uffdio_copy c = {
			.dst = m.arg.pagefault.address & ~(uint64_t)(PG - 1),
			.src = (uintptr_t)x->src,
			.len = PG,
		};
		ioctl(x->uffd, UFFDIO_COPY, &c);
	}
	return NULL;
}

double fault_rtt(int handler_cpu, bool spin)
{
	const unsigned n = 3000;
	struct rtt x = { .cpu = handler_cpu, .spin = spin };
	double *lat = calloc(n, sizeof(*lat));
	double p50 = NOVAL;
	pthread_t th;

	x.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	char *mem = mmap(NULL, (size_t)n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	x.src = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .range = { (uintptr_t)mem, (uint64_t)n * PG },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (x.uffd < 0 || !lat || mem == MAP_FAILED || x.src == MAP_FAILED ||
	    ioctl(x.uffd, UFFDIO_API, &api) < 0 || ioctl(x.uffd, UFFDIO_REGISTER, &reg) < 0)
		goto out;
	memset(x.src, 1, PG);
	bench_pin(0);
	pthread_create(&th, NULL, rtt_handler, &x);
	usleep(10000);
	volatile char sink = 0;
	for (unsigned i = 0; i < n; i++) {
		uint64_t t0 = bench_now_ns();
		sink += mem[(size_t)i * PG];
		lat[i] = (double)(bench_now_ns() - t0) / 1e3;
		if (!spin)
			usleep(50); /* let the handler go back to sleep: the case to measure */
	}
	(void)sink;
	atomic_store(&x.stop, true);
	pthread_join(th, NULL);
	p50 = bench_percentile(lat, n, 50);
out:
	if (x.uffd >= 0)
		close(x.uffd);
	if (mem != MAP_FAILED)
		munmap(mem, (size_t)n * PG);
	if (x.src != MAP_FAILED)
		munmap(x.src, PG);
	free(lat);
	return p50;
}

/* ------------------------------------------- prototype swap-in path -- */

/*
 * Not the engine: the smallest fault handler that swapdev allows, to see
 * what the engine's swap-in can reach on this machine and how the handler's
 * placement and spinning change it. Page i of a region sits in slot i (the
 * engine writes runs of evicted neighbours contiguously); every page is
 * missing; a fault reads the page plus readahead neighbours with
 * swapdev_read_sync and installs them with one UFFDIO_COPY.
 */
struct proto {
	struct swapdev *sd;
	int uffd;
	char *guest;
	uint32_t npages;
	int cpu;
	unsigned spin_usec;   /* read_sync spin, and spin on the uffd instead of poll */
	unsigned readahead;   /* pages per read */
	atomic_bool stop, ready;
	atomic_int errors;
};

static void *proto_handler(void *arg)
{
	struct proto *x = arg;
	struct swapdev_ring *r;
	struct swapdev_ring_opts ro = { .size = sizeof(ro), .depth = 4, .bounce_pages = 64 };

	if (x->cpu >= 0)
		bench_pin(x->cpu);
	if (swapdev_ring_new(x->sd, &ro, &r) < 0) {
		atomic_fetch_add(&x->errors, 1);
		atomic_store(&x->ready, true);
		return NULL;
	}
	atomic_store(&x->ready, true);
	while (!atomic_load(&x->stop)) {
		struct uffd_msg m;
		if (!next_fault(x->uffd, x->spin_usec != 0, &m))
			continue;
		uint64_t addr = m.arg.pagefault.address & ~(uint64_t)(PG - 1);
		uint32_t page = (uint32_t)((addr - (uintptr_t)x->guest) / PG);
		unsigned n = MIN(x->readahead, x->npages - page);
		const void *buf;
		if (swapdev_read_sync(r, page, n, x->spin_usec, &buf) < 0) {
			atomic_fetch_add(&x->errors, 1);
			continue;
		}
		struct uffdio_copy c = { .dst = addr, .src = (uintptr_t)buf, .len = (uint64_t)n * PG };
		if (ioctl(x->uffd, UFFDIO_COPY, &c) < 0 && errno != EEXIST)
			atomic_fetch_add(&x->errors, 1);
	}
	swapdev_ring_free(r);
	return NULL;
}

/* Random: p50/p99 of single faults (readahead 1). Sequential: GiB/s of a
 * pass touching every page (readahead 16). Checks the content it reads. */
void proto_swapin(struct swapdev *sd, const char *mem, uint32_t npages, int cpu,
			 unsigned spin_usec, bool seq, double *ret_a, double *ret_b)
{
	const unsigned nrand = 3000;
	struct proto x = { .sd = sd, .npages = npages, .cpu = cpu, .spin_usec = spin_usec,
			   .readahead = seq ? 16 : 1 };
	double *lat = calloc(nrand, sizeof(*lat));
	uint8_t *seen = calloc(npages, 1);
	pthread_t th;
	bool started = false;

	*ret_a = *ret_b = NOVAL;
	x.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	x.guest = mmap(NULL, (size_t)npages * PG, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = { .range = { (uintptr_t)x.guest, (uint64_t)npages * PG },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (x.uffd < 0 || x.guest == MAP_FAILED || !lat || !seen ||
	    ioctl(x.uffd, UFFDIO_API, &api) < 0 || ioctl(x.uffd, UFFDIO_REGISTER, &reg) < 0)
		goto out;
	if (cpu >= 0)
		bench_pin(0);
	pthread_create(&th, NULL, proto_handler, &x);
	started = true;
	while (!atomic_load(&x.ready))
		usleep(100);
	volatile char sink = 0;
	bool bad = false;
	if (seq) {
		uint64_t t0 = bench_now_ns();
		for (uint32_t p = 0; p < npages; p++)
			sink += x.guest[(size_t)p * PG + 1];
		double secs = (double)(bench_now_ns() - t0) / 1e9;
		*ret_a = (double)npages * PG / GIB / secs;
		bad = memcmp(x.guest, mem, (size_t)npages * PG) != 0;
	} else {
		uint64_t s = 31337;
		for (unsigned i = 0; i < nrand; i++) {
			uint32_t p;
			do
				p = (uint32_t)(xorshift64(&s) % npages);
			while (seen[p]);
			seen[p] = 1;
			uint64_t t0 = bench_now_ns();
			sink += x.guest[(size_t)p * PG + 1];
			lat[i] = (double)(bench_now_ns() - t0) / 1e3;
			bad |= memcmp(x.guest + (size_t)p * PG, mem + (size_t)p * PG, PG) != 0;
			if (!spin_usec)
				usleep(50); /* the handler goes back to sleep, as between real faults */
		}
		*ret_b = bench_percentile(lat, nrand, 99);
		*ret_a = bench_percentile(lat, nrand, 50);
	}
	(void)sink;
	if (bad || atomic_load(&x.errors)) {
		fprintf(stderr, "swap bench: prototype swap-in read wrong data or failed (%d errors)\n",
			atomic_load(&x.errors));
		*ret_a = *ret_b = NOVAL;
	}
out:
	atomic_store(&x.stop, true);
	if (started)
		pthread_join(th, NULL);
	if (x.uffd >= 0)
		close(x.uffd);
	if (x.guest != MAP_FAILED)
		munmap(x.guest, (size_t)npages * PG);
	free(lat);
	free(seen);
}
