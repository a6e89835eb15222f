/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What an event of ovcd's one epoll loop (manager.c) belongs to: every
 * object the loop watches starts with a struct source, and the loop
 * dispatches on its type. ovcd's main thread only.
 */
#ifndef OVCD_LOOP_H
#define OVCD_LOOP_H

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>

enum source_type {
	SRC_TIMER,
	SRC_SIGNAL,
	SRC_CONTROL,               /* control-server.c: the listening socket */
	SRC_CLIENT,                /* control-server.c: one client */
	SRC_METRICS,
	SRC_PSI,
	SRC_DRIVER,                /* drivers.c: one balloon driver */
	SRC_POLL,
};

struct source {
	enum source_type type;
};

/* Watch @fd on the loop's epoll instance @epfd; its events come back
 * tagged with @src. Returns 0 or -errno. */
static inline int loop_watch(int epfd, int fd, uint32_t events, struct source *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

#endif
