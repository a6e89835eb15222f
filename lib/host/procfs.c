/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Files of /proc and /sys under a root prefix, so that the host and KSM
 * readers run on fixture trees in tests. One read(2) for a small file, so
 * a line is never torn. Any thread; no state.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "host/procfs.h"

int ovcd_root_path(const char *root, const char *rel, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s%s", root ? root : "", rel);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int ovcd_read_root_file(const char *root, const char *rel, char *buf, size_t size)
{
	_cleanup_(closep) int fd = -1;
	char path[PATH_MAX];
	size_t n = 0;
	int r = ovcd_root_path(root, rel, path, sizeof(path));

	if (r < 0)
		return r;
	if (size < 2)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	/* procfs and sysfs give a small file in one read; loop for fixtures
	 * and to see the end of file. */
	for (;;) {
		ssize_t k = read(fd, buf + n, size - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return negative_errno();
		if (k == 0)
			break;
		n += (size_t)k;
		if (n == size - 1) {
			char extra;
			if (read(fd, &extra, 1) > 0)
				return -EFBIG;
			break;
		}
	}
	buf[n] = '\0';
	return (int)n;
}

int ovcd_write_root_file(const char *root, const char *rel, const char *text)
{
	_cleanup_(closep) int fd = -1;
	char path[PATH_MAX];
	size_t len = strlen(text);
	int r = ovcd_root_path(root, rel, path, sizeof(path));

	if (r < 0)
		return r;
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	ssize_t k = write(fd, text, len);
	if (k < 0)
		return negative_errno();
	return (size_t)k == len ? 0 : -EIO;
}
