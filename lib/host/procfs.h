/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Files of /proc and /sys under a root prefix (procfs.c). */
#ifndef OVC_HOST_PROCFS_H
#define OVC_HOST_PROCFS_H

#include <stddef.h>

/* ROOT/REL into @buf (@root NULL: ""). 0 or -ENAMETOOLONG. */
int ovcd_root_path(const char *root, const char *rel, char *buf, size_t size);
/* Read ROOT/REL (REL starts with '/') into @buf (NUL-terminated, at most
 * @size - 1 bytes; a longer file is -EFBIG). Returns the length or -errno.
 * Shared by the host and KSM readers. */
int ovcd_read_root_file(const char *root, const char *rel, char *buf, size_t size);
/* Write @text to ROOT/REL in one write(2). 0 or -errno. */
int ovcd_write_root_file(const char *root, const char *rel, const char *text);

#endif
