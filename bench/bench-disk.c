/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench swap, the disk: what the swap file's device gives, measured
 * with no engine around it.
 *
 *   raw_write       the peer: io_uring O_DIRECT writes of the region's
 *                   bytes, 1 MiB at QD16, into a pre-touched file
 *                   (disk_write_gib_s)
 *   raw_read_lat    the peer: 4 KiB O_DIRECT random reads at QD1
 *                   (raw_read_*_us)
 *   swapdev_write   lib/engine/swapdev writing the same bytes as scattered
 *                   pages, 64 per writev, against raw_write
 *                   (swapdev_write_gib_s)
 *   sync_read_lat   swapdev_read_sync() of one slot, sleeping vs spinning,
 *                   against raw_read_lat (sync_read_*_us)
 *
 * Runs on the driver's thread (bench-swap.c); swapdev's completions come
 * back on it through the ring's eventfd. No locks; an error counter that
 * completions bump is atomic.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "bench-swap.h"
#include "engine/swapdev.h"
#include "common/util.h"

static int open_direct_tmp(const char *dir, uint64_t bytes)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (fallocate(fd, 0, 0, (off_t)bytes) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* ------------------------------------------------------- raw disk write -- */

double raw_write(const char *dir, const char *mem, uint64_t bytes)
{
	/* 1 MiB at QD16 was the best of 1 MiB/QD16, 256 KiB/QD64 and
	 * 128 KiB/QD32 here. */
	const unsigned qd = 16, chunk = 1u << 20;
	struct io_uring ring;
	int fd = open_direct_tmp(dir, bytes);
	if (fd < 0) {
		fprintf(stderr, "swap bench: raw file in %s: %s\n", dir, strerror(-fd));
		return NOVAL;
	}
	/* Pre-touched: written once, untimed, so that the timed pass pays
	 * for the disk and not for ext4 turning unwritten extents into
	 * written ones (worth 10-25% here). This is the disk's best rate. */
	for (uint64_t off = 0; off < bytes; off += chunk)
		if (pwrite(fd, mem + off, (size_t)MIN((uint64_t)chunk, bytes - off), (off_t)off) < 0) {
			close(fd);
			return NOVAL;
		}
	bench_settle(dir);
	if (io_uring_queue_init(qd * 2, &ring, 0) < 0) {
		close(fd);
		return NOVAL;
	}
	uint64_t off = 0, done = 0;
	unsigned inflight = 0;
	uint64_t t0 = bench_now_ns();
	while (done < bytes) {
		while (inflight < qd && off < bytes) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			unsigned len = (unsigned)MIN((uint64_t)chunk, bytes - off);
			io_uring_prep_write(sqe, fd, mem + off, len, off);
			off += len;
			inflight++;
		}
		io_uring_submit(&ring);
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&ring, &cqe) < 0)
			break;
		if (cqe->res <= 0) {
			fprintf(stderr, "swap bench: raw write: %s\n", strerror(-cqe->res));
			io_uring_cqe_seen(&ring, cqe);
			break;
		}
		done += (unsigned)cqe->res;
		inflight--;
		io_uring_cqe_seen(&ring, cqe);
	}
	double secs = (double)(bench_now_ns() - t0) / 1e9;
	io_uring_queue_exit(&ring);
	close(fd);
	return done == bytes ? (double)bytes / GIB / secs : NOVAL;
}

/* ------------------------------------------------------ raw QD1 reads -- */

void raw_read_lat(const char *dir, const char *mem, uint64_t bytes, double *p50, double *p99)
{
	const unsigned n = 2000;
	struct io_uring ring;
	double *lat = calloc(n, sizeof(*lat));
	void *buf = NULL;
	uint64_t s = 77;
	int fd = open_direct_tmp(dir, bytes);

	*p50 = *p99 = NOVAL;
	if (fd < 0 || !lat || posix_memalign(&buf, PG, PG) || io_uring_queue_init(4, &ring, 0) < 0)
		goto out;
	/* Written first: reads of unwritten extents return zeros without I/O. */
	for (uint64_t off = 0; off < bytes; off += 1u << 20)
		if (pwrite(fd, mem + off, (size_t)MIN((uint64_t)(1u << 20), bytes - off), (off_t)off) < 0)
			goto out_ring;
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = (xorshift64(&s) % (bytes / PG)) * PG;
		struct io_uring_cqe *cqe;
		uint64_t t0 = bench_now_ns();
		io_uring_prep_read(io_uring_get_sqe(&ring), fd, buf, PG, off);
		io_uring_submit_and_wait(&ring, 1);
		if (io_uring_wait_cqe(&ring, &cqe) < 0 || cqe->res != (int)PG)
			goto out_ring;
		io_uring_cqe_seen(&ring, cqe);
		lat[i] = (double)(bench_now_ns() - t0) / 1e3;
	}
	*p99 = bench_percentile(lat, n, 99);
	*p50 = bench_percentile(lat, n, 50);
out_ring:
	io_uring_queue_exit(&ring);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(lat);
}

/* ------------------------------------------------------------ swapdev -- */

static void on_write(void *user, int res)
{
	if (res < 0)
		atomic_fetch_add((atomic_uint *)user, 1);
}

static int wait_ring(struct swapdev_ring *r)
{
	struct pollfd p = { .fd = swapdev_fd(r), .events = POLLIN };
	if (poll(&p, 1, 10000) != 1)
		return -ETIMEDOUT;
	return swapdev_process(r);
}

/* Scattered pages in random order, 64 per writev into contiguous slots,
 * QD64; one submit per 16 requests queued. */
double swapdev_write(const char *dir, char *mem, uint64_t bytes, const uint32_t *perm,
			    struct swapdev **ret_sd)
{
	struct swapdev_opts o = { .size = sizeof(o), .dir = dir, .size_bytes = bytes };
	struct swapdev_ring_opts ro = { .size = sizeof(ro), .depth = 64 };
	struct swapdev *sd;
	struct swapdev_ring *r;
	atomic_uint errors = 0;
	uint32_t npages = (uint32_t)(bytes / PG);
	int err;

	err = swapdev_new(&o, &sd);
	if (err < 0) {
		fprintf(stderr, "swap bench: swapdev in %s: %s\n", dir, strerror(-err));
		return NOVAL;
	}
	err = swapdev_ring_new(sd, &ro, &r);
	if (err < 0) {
		swapdev_free(sd);
		return NOVAL;
	}
	uint64_t t0 = bench_now_ns();
	unsigned queued = 0;
	for (uint32_t i = 0; i < npages;) {
		uint32_t first, n;
		struct iovec iov[SWAPDEV_MAX_IOV];
		if (swapdev_slot_alloc(sd, MIN(SWAPDEV_MAX_IOV, npages - i), &first, &n) < 0)
			break;
		for (uint32_t k = 0; k < n; k++)
			iov[k] = (struct iovec){ mem + (size_t)perm[i + k] * PG, PG };
		while ((err = swapdev_queue_write(r, first, iov, n, on_write, &errors)) == -EAGAIN) {
			swapdev_submit(r);
			wait_ring(r);
		}
		if (err < 0)
			break;
		i += n;
		if (++queued % 16 == 0)
			swapdev_submit(r);
	}
	swapdev_submit(r);
	while (swapdev_inflight(r) > 0)
		if (wait_ring(r) < 0)
			break;
	double secs = (double)(bench_now_ns() - t0) / 1e9;
	struct swapdev_ring_stats st;
	swapdev_ring_stats(r, &st);
	swapdev_ring_free(r);
	if (ret_sd)
		*ret_sd = sd;
	else
		swapdev_free(sd);
	if (errors || st.bytes_written != bytes)
		return NOVAL;
	return (double)bytes / GIB / secs;
}

/* swapdev_read_sync of random single slots, no spin vs 100 us spin. */
void sync_read_lat(struct swapdev *sd, unsigned spin_usec, double *p50, double *p99)
{
	const unsigned n = 2000;
	struct swapdev_ring *r;
	double *lat = calloc(n, sizeof(*lat));
	uint64_t s = 99 + spin_usec;

	*p50 = *p99 = NOVAL;
	if (!lat || swapdev_ring_new(sd, NULL, &r) < 0) {
		free(lat);
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		const void *buf;
		uint32_t slot = (uint32_t)(xorshift64(&s) % swapdev_slots_total(sd));
		uint64_t t0 = bench_now_ns();
		if (swapdev_read_sync(r, slot, 1, spin_usec, &buf) < 0)
			goto out;
		lat[i] = (double)(bench_now_ns() - t0) / 1e3;
	}
	*p99 = bench_percentile(lat, n, 99);
	*p50 = bench_percentile(lat, n, 50);
out:
	swapdev_ring_free(r);
	free(lat);
}
