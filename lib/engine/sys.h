/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The syscall ops table. Every syscall the engine makes on a path that can
 * fail at run time goes through one of these, so that tests can fail the Nth
 * call of any of them (tests/helpers/fault-inject.h) and check a clean unwind.
 *
 * Each op behaves like its libc namesake (-1 and errno), except the io_uring
 * ones, which return -errno like liburing. The table is per engine (no global
 * state); sys_default is the real thing.
 */
#ifndef OVC_SYS_H
#define OVC_SYS_H

#include <liburing.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

enum sys_op {
	OVC_SYS_IOCTL,
	OVC_SYS_MADVISE,
	OVC_SYS_PROCESS_MADVISE,
	OVC_SYS_READ,
	OVC_SYS_WRITE,
	OVC_SYS_PREAD,
	OVC_SYS_PWRITE,
	OVC_SYS_OPEN,
	OVC_SYS_FALLOCATE,
	OVC_SYS_MMAP,
	OVC_SYS_MUNMAP,
	OVC_SYS_USERFAULTFD,
	OVC_SYS_EVENTFD,
	OVC_SYS_URING_INIT,
	OVC_SYS_URING_SUBMIT,
	OVC_SYS_URING_CQE,     /* filters each completion's res */
	_OVC_SYS_OP_MAX,
};

struct sys_ops {
	void *ctx;
	int (*ioctl)(void *ctx, int fd, unsigned long req, void *arg);
	int (*madvise)(void *ctx, void *addr, size_t len, int advice);
	ssize_t (*process_madvise)(void *ctx, int pidfd, const struct iovec *iov, size_t n,
				   int advice, unsigned flags);
	ssize_t (*read)(void *ctx, int fd, void *buf, size_t n);
	ssize_t (*write)(void *ctx, int fd, const void *buf, size_t n);
	ssize_t (*pread)(void *ctx, int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwrite)(void *ctx, int fd, const void *buf, size_t n, off_t off);
	int (*open)(void *ctx, const char *path, int flags, mode_t mode);
	int (*fallocate)(void *ctx, int fd, int mode, off_t off, off_t len);
	void *(*mmap)(void *ctx, void *addr, size_t len, int prot, int flags, int fd, off_t off);
	int (*munmap)(void *ctx, void *addr, size_t len);
	int (*userfaultfd)(void *ctx, int flags);
	int (*eventfd)(void *ctx, unsigned initval, int flags);
	int (*uring_init)(void *ctx, unsigned entries, struct io_uring *ring, unsigned flags);
	int (*uring_submit)(void *ctx, struct io_uring *ring);
	/* Called with each completion's result before the engine acts on it;
	 * returns the result to use. The default returns @res. */
	int (*uring_cqe)(void *ctx, int res);
};

extern const struct sys_ops sys_default;

/* Call op @op of table @s: SYS(s, ioctl, fd, req, arg). */
#define SYS(s, op, ...) ((s)->op((s)->ctx, __VA_ARGS__))

/* Opens a userfaultfd: /dev/userfaultfd when it can be opened read-write
 * (then faults from the kernel, KVM included, are served without
 * CAP_SYS_PTRACE), else the userfaultfd(2) syscall. Returns fd or -errno. */
int sys_open_uffd(const struct sys_ops *s, int flags);

#endif
