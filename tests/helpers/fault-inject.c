/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "fault-inject.h"

/* true when this call of @op is the one to fail. Thread-safe. */
static bool should_fail(struct fault_inject *fi, enum sys_op op)
{
	atomic_fetch_add(&fi->per_op[op], 1);
	if (fi->op_mask && !(fi->op_mask & (1u << op)))
		return false;
	long n = atomic_fetch_add(&fi->calls, 1) + 1;
	long at = atomic_load(&fi->fail_at);
	if (at <= 0 || n != at)
		return false;
	atomic_fetch_add(&fi->injected, 1);
	return true;
}

#define FI(ctx) ((struct fault_inject *)(ctx))
#define FAIL_LIBC(ctx, op, ret)                                                \
	do {                                                                   \
		if (should_fail(FI(ctx), op)) {                                \
			errno = FI(ctx)->fail_errno;                           \
			return ret;                                            \
		}                                                              \
	} while (0)

static int fi_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	FAIL_LIBC(ctx, OVC_SYS_IOCTL, -1);
	return SYS(FI(ctx)->real, ioctl, fd, req, arg);
}

static int fi_madvise(void *ctx, void *addr, size_t len, int advice)
{
	FAIL_LIBC(ctx, OVC_SYS_MADVISE, -1);
	return SYS(FI(ctx)->real, madvise, addr, len, advice);
}

static ssize_t fi_process_madvise(void *ctx, int pidfd, const struct iovec *iov, size_t n,
				  int advice, unsigned flags)
{
	FAIL_LIBC(ctx, OVC_SYS_PROCESS_MADVISE, -1);
	return SYS(FI(ctx)->real, process_madvise, pidfd, iov, n, advice, flags);
}

static ssize_t fi_read(void *ctx, int fd, void *buf, size_t n)
{
	FAIL_LIBC(ctx, OVC_SYS_READ, -1);
	return SYS(FI(ctx)->real, read, fd, buf, n);
}

static ssize_t fi_write(void *ctx, int fd, const void *buf, size_t n)
{
	FAIL_LIBC(ctx, OVC_SYS_WRITE, -1);
	return SYS(FI(ctx)->real, write, fd, buf, n);
}

static ssize_t fi_pread(void *ctx, int fd, void *buf, size_t n, off_t off)
{
	FAIL_LIBC(ctx, OVC_SYS_PREAD, -1);
	return SYS(FI(ctx)->real, pread, fd, buf, n, off);
}

static ssize_t fi_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	FAIL_LIBC(ctx, OVC_SYS_PWRITE, -1);
	return SYS(FI(ctx)->real, pwrite, fd, buf, n, off);
}

static int fi_open(void *ctx, const char *path, int flags, mode_t mode)
{
	FAIL_LIBC(ctx, OVC_SYS_OPEN, -1);
	return SYS(FI(ctx)->real, open, path, flags, mode);
}

static int fi_fallocate(void *ctx, int fd, int mode, off_t off, off_t len)
{
	FAIL_LIBC(ctx, OVC_SYS_FALLOCATE, -1);
	return SYS(FI(ctx)->real, fallocate, fd, mode, off, len);
}

static void *fi_mmap(void *ctx, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	FAIL_LIBC(ctx, OVC_SYS_MMAP, MAP_FAILED);
	return SYS(FI(ctx)->real, mmap, addr, len, prot, flags, fd, off);
}

static int fi_munmap(void *ctx, void *addr, size_t len)
{
	FAIL_LIBC(ctx, OVC_SYS_MUNMAP, -1);
	return SYS(FI(ctx)->real, munmap, addr, len);
}

static int fi_userfaultfd(void *ctx, int flags)
{
	FAIL_LIBC(ctx, OVC_SYS_USERFAULTFD, -1);
	return SYS(FI(ctx)->real, userfaultfd, flags);
}

static int fi_eventfd(void *ctx, unsigned initval, int flags)
{
	FAIL_LIBC(ctx, OVC_SYS_EVENTFD, -1);
	return SYS(FI(ctx)->real, eventfd, initval, flags);
}

static int fi_uring_init(void *ctx, unsigned entries, struct io_uring *ring, unsigned flags)
{
	if (should_fail(FI(ctx), OVC_SYS_URING_INIT))
		return -FI(ctx)->fail_errno;
	return SYS(FI(ctx)->real, uring_init, entries, ring, flags);
}

static int fi_uring_submit(void *ctx, struct io_uring *ring)
{
	if (should_fail(FI(ctx), OVC_SYS_URING_SUBMIT))
		return -FI(ctx)->fail_errno;
	return SYS(FI(ctx)->real, uring_submit, ring);
}

static int fi_uring_cqe(void *ctx, int res)
{
	if (should_fail(FI(ctx), OVC_SYS_URING_CQE)) {
		if (FI(ctx)->short_res > 0 && res > FI(ctx)->short_res)
			return FI(ctx)->short_res;
		return -FI(ctx)->fail_errno;
	}
	return SYS(FI(ctx)->real, uring_cqe, res);
}

void fault_inject_init(struct fault_inject *fi, long fail_at, int fail_errno, unsigned op_mask)
{
	memset(fi, 0, sizeof(*fi));
	fi->real = &sys_default;
	fi->fail_at = fail_at;
	fi->fail_errno = fail_errno;
	fi->op_mask = op_mask;
	fi->sys = (struct sys_ops){
		.ctx = fi,
		.ioctl = fi_ioctl,
		.madvise = fi_madvise,
		.process_madvise = fi_process_madvise,
		.read = fi_read,
		.write = fi_write,
		.pread = fi_pread,
		.pwrite = fi_pwrite,
		.open = fi_open,
		.fallocate = fi_fallocate,
		.mmap = fi_mmap,
		.munmap = fi_munmap,
		.userfaultfd = fi_userfaultfd,
		.eventfd = fi_eventfd,
		.uring_init = fi_uring_init,
		.uring_submit = fi_uring_submit,
		.uring_cqe = fi_uring_cqe,
	};
}
