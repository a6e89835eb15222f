/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's control endpoint (ovc_engine_publish): a unix socket served
 * by one thread of its own, speaking the line protocol of endpoint-proto.h.
 *
 * It is a client of the engine's public API only — ovc_engine_stats() and
 * ovc_engine_reclaim(), both thread-safe — and so runs the same beside an
 * engine with threads or one driven by the VMM's loop. Its links into the
 * engine are e->endpoint and e->on_free, set and cleared by
 * publish/unpublish in the engine owner's thread: ovc_engine_free() calls
 * e->on_free first, which unpublishes (engine.c never names this file).
 *
 * Threads: the endpoint thread owns the listening socket and every client;
 * nothing in struct endpoint is shared with other threads after start
 * except stop_fd (written by unpublish). No locks.
 *
 * It is an attack surface (anyone the socket's mode lets in): every socket is
 * non-blocking, a request line is at most EP_REQUEST_MAX bytes, at most one
 * reply is buffered per client and nothing more is read from a client until
 * it takes that reply, a client that leaves a request or reply half done for
 * STALL_USEC is dropped, and at most MAX_CLIENTS are served (when full, the
 * longest-idle client gives way to the new one).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ovc/endpoint.h>

#include "common/endpoint-proto.h"
#include "engine/abi.h"
#include "engine/internal.h"
#include "common/util.h"

#define MAX_CLIENTS 8
/* A client that sends half a line, or does not read its reply, for this
 * long holds a slot for nothing. */
#define STALL_USEC (10 * USEC_PER_SEC)
#define BACKLOG 16

struct ep_client {
	int fd; /* -1: free slot */
	bool may_set;       /* SO_PEERCRED: root or the VMM's uid */
	bool closing;       /* send what is buffered, then close */
	uint64_t since_usec; /* CLOCK_MONOTONIC of the last progress */
	struct ep_lines in;
	char in_buf[EP_REQUEST_MAX];
	char out[EP_REPLY_MAX];
	size_t out_len, out_off;
};

struct endpoint {
	ovc_engine *e;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char name[OVC_PUBLISH_NAME_MAX + 1];
	dev_t dev;
	ino_t ino;
	uint64_t max_bytes;
	uid_t owner;
	int listen_fd;
	int stop_fd;
	pthread_t thread;
	struct ep_client clients[MAX_CLIENTS];
};

static void client_close(struct ep_client *c)
{
	closep(&c->fd);
	c->fd = -1;
}

/* The engine's counters as the stats reply's figures; returns the
 * EP_HAVE_* of the optional ones it has. */
static unsigned stats_of(const struct endpoint *ep, const struct ovc_engine_stats *s,
			 struct ep_stats *st)
{
	unsigned have = EP_HAVE_SWAPPED_OUT | EP_HAVE_SWAP_CACHE | EP_HAVE_SWAP_CACHE_HITS |
			EP_HAVE_WRITE_ERRORS | EP_HAVE_READ_ERRORS;

	memset(st, 0, sizeof(*st));
	memcpy(st->name, ep->name, sizeof(st->name));
	st->pid = (uint64_t)getpid();
	st->max_bytes = ep->max_bytes ? ep->max_bytes : s->region_bytes;
	st->region_bytes = s->region_bytes;
	st->zero_bytes = s->zero_pages_now * OVC_PAGE_SIZE;
	st->swap_bytes = s->swapped_pages_now * OVC_PAGE_SIZE;
	st->target_bytes = s->reclaim_target_bytes;
	st->saved_bytes = s->saved_bytes;
	st->pages_swapped_in = s->pages_swapped_in;
	st->refaults = s->refaults;
	st->pages_swapped_out = s->pages_swapped_out;
	st->swap_cache_pages = s->swap_cache_pages_now;
	st->swap_cache_hits = s->swap_cache_hits;
	st->swap_write_errors = s->swap_write_errors;
	st->swap_read_errors = s->swap_read_errors;
	/* No fault served yet: no percentile, rather than a made-up 0. */
	if (ep_lat_percentile(s->fault_lat_hist, OVC_LAT_BUCKETS, 50, &st->fault_p50_usec) &&
	    ep_lat_percentile(s->fault_lat_hist, OVC_LAT_BUCKETS, 99, &st->fault_p99_usec))
		have |= EP_HAVE_FAULT_P50 | EP_HAVE_FAULT_P99;
	return have;
}

static void reply_stats(struct endpoint *ep, struct ep_client *c)
{
	struct ovc_engine_stats s = { .size = sizeof(s) };
	struct ep_stats st;
	unsigned have;
	int r = ovc_engine_stats(ep->e, &s);

	if (r < 0) {
		r = ep_format_error(c->out, sizeof(c->out), r, ovc_strerror(r));
	} else {
		have = stats_of(ep, &s, &st);
		r = ep_format_stats(c->out, sizeof(c->out), &st, have);
	}
	c->out_len = r > 0 ? (size_t)r : 0;
}

static void handle_line(struct endpoint *ep, struct ep_client *c, const char *line, size_t len)
{
	char msg[EP_MSG_MAX];
	struct ep_request req;
	int r = ep_parse_request(line, len, &req, msg, sizeof(msg));

	c->out_off = 0;
	if (r < 0) {
		r = ep_format_error(c->out, sizeof(c->out), r, msg);
	} else if (req.cmd == EP_CMD_STATS) {
		reply_stats(ep, c);
		return;
	} else if (!c->may_set) {
		r = ep_format_error(c->out, sizeof(c->out), -EPERM,
				    "setting a target needs root or the VMM's uid");
	} else {
		r = ovc_engine_reclaim(ep->e, req.target_bytes, 0);
		if (r < 0)
			r = ep_format_error(c->out, sizeof(c->out), r, ovc_strerror(r));
		else
			r = ep_format_reclaim_ok(c->out, sizeof(c->out), req.target_bytes);
	}
	c->out_len = r > 0 ? (size_t)r : 0;
}

/* Send what is buffered; false when the client is gone. */
static bool client_flush(struct ep_client *c, uint64_t now)
{
	while (c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return true;
		if (n <= 0)
			return false;
		c->out_off += (size_t)n;
		c->since_usec = now;
	}
	c->out_len = c->out_off = 0;
	return !c->closing;
}

/* Answer the buffered lines, one reply at a time. */
static bool client_serve(struct endpoint *ep, struct ep_client *c, uint64_t now)
{
	while (c->out_len == 0 && !c->closing) {
		const char *line;
		size_t len;
		int r = ep_lines_next(&c->in, &line, &len);

		if (r == 0)
			break;
		if (r < 0) {
			/* No way to find the next line start: say why, hang up. */
			r = ep_format_error(c->out, sizeof(c->out), -EMSGSIZE,
					    "request line longer than 255 bytes");
			c->out_len = r > 0 ? (size_t)r : 0;
			c->out_off = 0;
			c->closing = true;
			break;
		}
		handle_line(ep, c, line, len);
		if (!client_flush(c, now))
			return false;
	}
	return client_flush(c, now);
}

static bool client_read(struct endpoint *ep, struct ep_client *c, uint64_t now)
{
	for (;;) {
		size_t room;
		char *p = ep_lines_space(&c->in, &room);
		ssize_t n;

		if (room == 0)
			break;
		n = recv(c->fd, p, room, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return false;
		ep_lines_added(&c->in, (size_t)n);
		c->since_usec = now;
		if ((size_t)n < room)
			break;
	}
	return client_serve(ep, c, now);
}

static bool client_busy(const struct ep_client *c)
{
	return c->out_len > 0 || c->in.len > c->in.consumed;
}

static void accept_one(struct endpoint *ep, uint64_t now)
{
	struct ep_client *slot = NULL;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	int fd = accept4(ep->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	for (size_t i = 0; i < MAX_CLIENTS; i++) {
		struct ep_client *c = &ep->clients[i];

		if (c->fd < 0) {
			slot = c;
			break;
		}
		if (!slot || c->since_usec < slot->since_usec)
			slot = c;
	}
	if (slot->fd >= 0)
		client_close(slot); /* full: the longest-idle one gives way */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0) {
		close(fd);
		return;
	}
	slot->fd = fd;
	slot->may_set = cred.uid == 0 || cred.uid == ep->owner;
	slot->closing = false;
	slot->since_usec = now;
	slot->out_len = slot->out_off = 0;
	ep_lines_init(&slot->in, slot->in_buf, sizeof(slot->in_buf));
}

static void *endpoint_thread(void *arg)
{
	struct endpoint *ep = arg;

	for (;;) {
		struct pollfd p[2 + MAX_CLIENTS];
		size_t idx[MAX_CLIENTS], n = 2;
		uint64_t now;

		p[0] = (struct pollfd){ .fd = ep->stop_fd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = ep->listen_fd, .events = POLLIN };
		for (size_t i = 0; i < MAX_CLIENTS; i++) {
			struct ep_client *c = &ep->clients[i];

			if (c->fd < 0)
				continue;
			/* One reply at a time: read nothing more until it is taken. */
			p[n] = (struct pollfd){ .fd = c->fd,
						.events = c->out_len ? POLLOUT : POLLIN };
			idx[n - 2] = i;
			n++;
		}
		if (poll(p, n, 1000) < 0 && errno != EINTR)
			break; /* cannot happen with valid fds; stop serving */
		if (p[0].revents)
			break;
		now = now_usec(CLOCK_MONOTONIC);
		for (size_t k = 2; k < n; k++) {
			struct ep_client *c = &ep->clients[idx[k - 2]];
			bool alive = true;

			if (p[k].revents & (POLLERR | POLLNVAL))
				alive = false;
			else if (p[k].revents & POLLOUT)
				alive = client_serve(ep, c, now);
			else if (p[k].revents & (POLLIN | POLLHUP))
				alive = client_read(ep, c, now);
			else if (client_busy(c) && now - c->since_usec > STALL_USEC)
				alive = false;
			if (!alive)
				client_close(c);
		}
		if (p[1].revents & POLLIN)
			accept_one(ep, now);
	}
	return NULL;
}

/* mkdir -p for the endpoint directory: the components that are missing are
 * created 0755 (readable, so that the daemon can list it). */
static int make_dir(const char *dir)
{
	char buf[PATH_MAX];
	size_t len = strlen(dir);

	if (len == 0 || len >= sizeof(buf))
		return len ? -ENAMETOOLONG : -EINVAL;
	memcpy(buf, dir, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;

			*p = '\0';
			if (mkdir(buf, 0755) < 0 && errno != EEXIST)
				return negative_errno();
			*p = c;
			if (!c)
				break;
		}
	}
	return 0;
}

/* Is someone listening on @path? */
static bool socket_alive(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	bool alive;

	if (fd < 0)
		return false;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* A full backlog (EAGAIN) is a live listener too. */
	alive = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN;
	close(fd);
	return alive;
}

static struct endpoint *endpoint_free(struct endpoint *ep)
{
	if (!ep)
		return NULL;
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		client_close(&ep->clients[i]);
	closep(&ep->listen_fd);
	closep(&ep->stop_fd);
	free(ep);
	return NULL;
}

static void endpoint_freep(struct endpoint **ep)
{
	endpoint_free(*ep);
}

/* Put the bound, listening socket at @ep->path without ever replacing a
 * live one: link() fails on an existing name, and only a name nobody
 * listens on is unlinked and tried again. */
static int install(struct endpoint *ep, const char *tmp)
{
	for (int tries = 0; tries < 2; tries++) {
		struct stat st;

		if (link(tmp, ep->path) == 0)
			return 0;
		if (errno != EEXIST)
			return negative_errno();
		if (lstat(ep->path, &st) < 0)
			continue; /* went away meanwhile */
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (socket_alive(ep->path))
			return -EADDRINUSE;
		if (unlink(ep->path) < 0 && errno != ENOENT)
			return negative_errno();
	}
	return -EADDRINUSE;
}

/* ovc_engine_free()'s first step while published. */
static void unpublish_on_free(ovc_engine *e)
{
	(void)ovc_engine_unpublish(e, 0);
}

OVC_EXPORT int ovc_engine_publish(ovc_engine *e, const struct ovc_publish_opts *opts_in)
{
	_cleanup_(endpoint_freep) struct endpoint *ep = NULL;
	struct ovc_publish_opts o = { 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[sizeof(sa.sun_path)];
	sigset_t all, old;
	struct stat st;
	const char *dir;
	int r, n;

	if (!e)
		return -EINVAL;
	if (opts_in) {
		r = abi_copy_in(&o, sizeof(o), opts_in, OVC_PUBLISH_OPTS_SIZE_VER0);
		if (r < 0)
			return r;
	}
	if (o.flags || o.reserved || (o.mode & ~UINT32_C(0777)))
		return -EINVAL;
	if (e->endpoint)
		return -EALREADY;

	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	ep->listen_fd = ep->stop_fd = -1;
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		ep->clients[i].fd = -1;
	ep->e = e;
	ep->owner = geteuid();
	ep->max_bytes = o.max_bytes;
	if (o.name) {
		if (!ep_name_valid(o.name, strlen(o.name)))
			return -EINVAL;
		memcpy(ep->name, o.name, strlen(o.name) + 1);
	} else {
		snprintf(ep->name, sizeof(ep->name), "pid-%d", (int)getpid());
	}
	dir = o.dir ? o.dir : OVC_PUBLISH_DIR;
	n = snprintf(ep->path, sizeof(ep->path), "%s/%s.sock", dir, ep->name);
	if (n < 0 || (size_t)n >= sizeof(ep->path))
		return -ENAMETOOLONG;
	n = snprintf(tmp, sizeof(tmp), "%s/.%s.%d.tmp", dir, ep->name, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	r = make_dir(dir);
	if (r < 0)
		return r;

	ep->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ep->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ep->listen_fd < 0 || ep->stop_fd < 0)
		return negative_errno();
	memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
	(void)unlink(tmp); /* left by a crash of this pid's predecessor */
	if (bind(ep->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return negative_errno();
	if (chmod(tmp, o.mode ? o.mode : 0660) < 0 || listen(ep->listen_fd, BACKLOG) < 0 ||
	    stat(tmp, &st) < 0) {
		r = negative_errno();
		(void)unlink(tmp);
		return r;
	}
	ep->dev = st.st_dev;
	ep->ino = st.st_ino;
	r = install(ep, tmp);
	(void)unlink(tmp);
	if (r < 0)
		return r;

	/* The VMM's signal handlers must not run on this thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&ep->thread, NULL, endpoint_thread, ep);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		(void)unlink(ep->path);
		return r;
	}
	e->endpoint = ep;
	e->on_free = unpublish_on_free;
	ep = NULL;
	return 0;
}

OVC_EXPORT int ovc_engine_unpublish(ovc_engine *e, unsigned flags)
{
	struct endpoint *ep;
	uint64_t one = 1;
	struct stat st;

	if (!e || flags)
		return -EINVAL;
	ep = e->endpoint;
	if (!ep)
		return 0;
	/* Cannot fail on a fresh counter. */
	(void)!write(ep->stop_fd, &one, sizeof(one));
	pthread_join(ep->thread, NULL);
	/* Only our own socket: a successor may have replaced a name it found
	 * dead (it was not: we listened; but an admin may have moved it). */
	if (lstat(ep->path, &st) == 0 && st.st_dev == ep->dev && st.st_ino == ep->ino)
		(void)unlink(ep->path);
	e->endpoint = NULL;
	e->on_free = NULL;
	endpoint_free(ep);
	return 0;
}
