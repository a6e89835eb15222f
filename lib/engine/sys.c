/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The real syscalls behind struct sys_ops. No state; any thread. */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/compat.h"
#include "engine/sys.h"
#include "common/util.h"

static int real_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg);
}

static int real_madvise(void *ctx, void *addr, size_t len, int advice)
{
	return madvise(addr, len, advice);
}

static ssize_t real_process_madvise(void *ctx, int pidfd, const struct iovec *iov, size_t n,
				    int advice, unsigned flags)
{
	return syscall(SYS_process_madvise, pidfd, iov, n, advice, flags);
}

static ssize_t real_read(void *ctx, int fd, void *buf, size_t n)
{
	return read(fd, buf, n);
}

static ssize_t real_write(void *ctx, int fd, const void *buf, size_t n)
{
	return write(fd, buf, n);
}

static ssize_t real_pread(void *ctx, int fd, void *buf, size_t n, off_t off)
{
	return pread(fd, buf, n, off);
}

static ssize_t real_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	return pwrite(fd, buf, n, off);
}

static int real_open(void *ctx, const char *path, int flags, mode_t mode)
{
	return open(path, flags, mode);
}

static int real_fallocate(void *ctx, int fd, int mode, off_t off, off_t len)
{
	return fallocate(fd, mode, off, len);
}

static void *real_mmap(void *ctx, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}

static int real_munmap(void *ctx, void *addr, size_t len)
{
	return munmap(addr, len);
}

static int real_userfaultfd(void *ctx, int flags)
{
	return (int)syscall(SYS_userfaultfd, flags);
}

static int real_eventfd(void *ctx, unsigned initval, int flags)
{
	return eventfd(initval, flags);
}

static int real_uring_init(void *ctx, unsigned entries, struct io_uring *ring, unsigned flags)
{
	return io_uring_queue_init(entries, ring, flags);
}

static int real_uring_submit(void *ctx, struct io_uring *ring)
{
	return io_uring_submit(ring);
}

static int real_uring_cqe(void *ctx, int res)
{
	return res;
}

const struct sys_ops sys_default = {
	.ctx = NULL,
	.ioctl = real_ioctl,
	.madvise = real_madvise,
	.process_madvise = real_process_madvise,
	.read = real_read,
	.write = real_write,
	.pread = real_pread,
	.pwrite = real_pwrite,
	.open = real_open,
	.fallocate = real_fallocate,
	.mmap = real_mmap,
	.munmap = real_munmap,
	.userfaultfd = real_userfaultfd,
	.eventfd = real_eventfd,
	.uring_init = real_uring_init,
	.uring_submit = real_uring_submit,
	.uring_cqe = real_uring_cqe,
};

int sys_open_uffd(const struct sys_ops *s, int flags)
{
	int dev, fd;

	dev = SYS(s, open, "/dev/userfaultfd", O_RDWR | O_CLOEXEC, 0);
	if (dev >= 0) {
		fd = SYS(s, ioctl, dev, USERFAULTFD_IOC_NEW, (void *)(long)flags);
		int err = errno;
		close(dev);
		if (fd >= 0)
			return fd;
		errno = err;
		/* fall through to the syscall */
	}
	fd = SYS(s, userfaultfd, flags);
	if (fd < 0)
		return negative_errno();
	return fd;
}
