/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's control socket server (control-server.h): the socket made safely,
 * the clients' state machines, their limits and deadlines. What a request
 * does is the owner's (struct control_server_ops: the manager).
 *
 * ovcd's main thread only (the loop's); no locks. Nothing here waits: a
 * client's replies queue in its output buffer, and its reads stop while
 * they pile up.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "control-server.h"
#include "logging.h"

/* Control clients: at most MAX_CLIENTS at once, CLIENTS_PER_UID of one
 * uid, and the last ROOT_SLOTS for root alone, so that root's ovcctl gets
 * in whoever else holds connections. Replies wait in a client's output
 * queue; above CLIENT_OUT_HIGH its requests are left unread until it
 * reads. A client is dropped when it sends nothing for CLIENT_IDLE_USEC,
 * takes longer than CLIENT_IO_USEC to finish a request line, or reads
 * nothing of a queued reply for CLIENT_IO_USEC (docs in ovcd(8)). */
#define MAX_CLIENTS 64
#define CLIENTS_PER_UID 16
#define ROOT_SLOTS 4
#define CLIENT_OUT_HIGH (256u << 10)
#define CLIENT_IDLE_USEC (60 * USEC_PER_SEC)
#define CLIENT_IO_USEC (5 * USEC_PER_SEC)

/* A control client: a non-blocking state machine in the loop. Requests
 * are read into buf and answered in order into out; nothing waits. */
struct client {
	struct source src;
	int fd;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	size_t n_groups;
	size_t n;                  /* bytes in buf: at most one partial line after processing */
	char buf[OVCD_REQUEST_MAX + 2];
	char *out;                 /* replies not yet sent: out[out_off, out_len) */
	size_t out_off, out_len, out_cap;
	uint32_t events;           /* what epoll watches for it now */
	bool eof;                  /* the peer shut its side: answer what came, then close */
	bool closing;              /* close once out is sent (a refused, too long line) */
	uint64_t deadline_usec;    /* CLOCK_MONOTONIC: dropped then, unless it moved */
	uint64_t line_start_usec;  /* when the first byte of the line in buf came */
};

struct control_server {
	struct source src;         /* SRC_CONTROL: the listening socket */
	int epfd;                  /* the loop's */
	int fd;                    /* the listening socket */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int dirfd;                 /* its directory, O_PATH */
	const char *name;          /* its name in there (in path) */
	dev_t dev;                 /* the socket file ovcd made, to know it again */
	ino_t ino;
	bool has_gid;              /* [control] group resolved: its members may mutate */
	gid_t gid;
	char group[64];            /* its name, for messages */
	struct control_server_ops ops;
	void *userdata;
	struct client *clients[MAX_CLIENTS];
	struct ovcd_ratelimit rl;  /* refused connections */
};

static int watch(struct control_server *cs, int fd, uint32_t events, struct source *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(cs->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? negative_errno() : 0;
}

static void unwatch_close(struct control_server *cs, int *fd)
{
	if (*fd < 0)
		return;
	(void)epoll_ctl(cs->epfd, EPOLL_CTL_DEL, *fd, NULL);
	close(*fd);
	*fd = -1;
}

static int resolve_group(struct control_server *cs, const struct ovcd_config *cfg)
{
	struct group *gr;

	cs->has_gid = false;
	if (!cfg->control.group[0])
		return 0;
	gr = getgrnam(cfg->control.group);
	if (!gr) {
		dlog_err("%s: [control] group: no group named '%s'; only root may change settings", cfg->path,
			 cfg->control.group);
		return -ENOENT;
	}
	cs->gid = gr->gr_gid;
	cs->has_gid = true;
	snprintf(cs->group, sizeof(cs->group), "%s", cfg->control.group);
	return 0;
}

/* Mode 0660, owner root, group [control] group, applied to the socket
 * file @name in @dirfd only if it is a socket and (once ovcd made one) the
 * one ovcd made: never through a symlink or onto a file someone swapped in. */
static void control_chown_at(struct control_server *cs, int dirfd, const char *name)
{
	char proc[64];
	struct stat st;
	int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		dlog_warning("control socket %s: %s", cs->path, strerror(errno));
		goto out;
	}
	if (!S_ISSOCK(st.st_mode) ||
	    (cs->ino && (st.st_dev != cs->dev || st.st_ino != cs->ino))) {
		dlog_warning("control socket %s is no longer the socket ovcd made: its mode and owner are left "
			     "alone (restart ovcd to make a new one)",
			     cs->path);
		goto out;
	}
	/* On the inode the O_PATH fd holds, never a path looked up again. */
	if (fchownat(fd, "", 0, cs->has_gid ? cs->gid : 0, AT_EMPTY_PATH) < 0)
		dlog_warning("chown %s: %s", cs->path, strerror(errno));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (chmod(proc, 0660) < 0)
		dlog_warning("chmod %s: %s", cs->path, strerror(errno));
out:
	if (fd >= 0)
		close(fd);
}

static void control_chown(struct control_server *cs)
{
	control_chown_at(cs, cs->dirfd, cs->name);
}

/* Bind the socket in a private directory (root's, 0700) next to its final
 * place, set its owner and mode there where nobody else can reach it, and
 * rename it into place: whoever may write [control] socket's directory
 * never gets a moment to swap the file under chmod/chown, and never sees
 * it with another mode. */
static int control_bind(struct control_server *cs, int dirfd, const char *name, int fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char priv[64], tmpl[96];
	struct stat st;
	int pfd = -1, r;

	snprintf(tmpl, sizeof(tmpl), "/proc/self/fd/%d/.ovcd-XXXXXX", dirfd);
	if (!mkdtemp(tmpl))
		return negative_errno();
	snprintf(priv, sizeof(priv), "%s", strrchr(tmpl, '/') + 1);
	pfd = openat(dirfd, priv, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0 || fstat(pfd, &st) < 0) {
		r = negative_errno();
		goto out;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		r = -EPERM; /* not the directory mkdtemp made */
		goto out;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/s", pfd);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fstatat(pfd, "s", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = negative_errno();
		goto out;
	}
	cs->dev = st.st_dev;
	cs->ino = st.st_ino;
	control_chown_at(cs, pfd, "s");
	r = listen(fd, 16) < 0 || renameat(pfd, "s", dirfd, name) < 0 ? negative_errno() : 0;
out:
	if (pfd >= 0) {
		(void)unlinkat(pfd, "s", 0);
		close(pfd);
	}
	(void)unlinkat(dirfd, priv, AT_REMOVEDIR);
	return r;
}

static int control_open(struct control_server *cs, const struct ovcd_config *cfg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = cfg->control.socket;
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		dlog_err("control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (!slash || !slash[1]) {
		dlog_err("control socket path is not absolute or names no file: %s", path);
		return -EINVAL;
	}
	*slash = '\0';
	if (dir[0] && mkdir(dir, 0755) < 0 && errno != EEXIST) {
		dlog_err("cannot create %s: %s", dir, strerror(errno));
		return negative_errno();
	}
	snprintf(cs->path, sizeof(cs->path), "%s", path);
	cs->name = cs->path + (slash - dir) + 1;
	cs->dirfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (cs->dirfd < 0) {
		r = negative_errno();
		dlog_err("cannot open %s: %s", dir, strerror(-r));
		return r;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return negative_errno();
	/* A socket that answers belongs to a running ovcd: never steal it. A
	 * dead one is left from a crash: the rename below replaces it. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		dlog_err("another ovcd is running on %s", path);
		return -EADDRINUSE;
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return negative_errno();
	r = control_bind(cs, cs->dirfd, cs->name, fd);
	if (r < 0) {
		dlog_err("cannot listen on %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	cs->fd = fd;
	return watch(cs, fd, EPOLLIN, &cs->src);
}

static void client_close(struct control_server *cs, struct client *c)
{
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		if (cs->clients[i] == c)
			cs->clients[i] = NULL;
	unwatch_close(cs, &c->fd);
	free(c->out);
	free(c);
}

/* Watch for what the client's state needs: input while it may send more
 * and its replies are not piling up, output while replies wait. */
static int client_watch(struct control_server *cs, struct client *c)
{
	uint32_t ev = 0;
	struct epoll_event e = { .data.ptr = &c->src };

	if (!c->eof && !c->closing && c->out_len - c->out_off < CLIENT_OUT_HIGH && c->n < sizeof(c->buf))
		ev |= EPOLLIN | EPOLLRDHUP;
	if (c->out_len > c->out_off)
		ev |= EPOLLOUT;
	if (ev == c->events)
		return 0;
	e.events = ev;
	if (epoll_ctl(cs->epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
		return negative_errno();
	c->events = ev;
	return 0;
}

/* Its deadline from its state now, called after each bit of progress: a
 * waiting reply must move within CLIENT_IO_USEC, a request line must end
 * within CLIENT_IO_USEC of its first byte, an idle connection may wait
 * CLIENT_IDLE_USEC. */
static void client_rearm(struct client *c, uint64_t now)
{
	if (c->out_len > c->out_off)
		c->deadline_usec = now + CLIENT_IO_USEC;
	else if (c->n > 0)
		c->deadline_usec = c->line_start_usec + CLIENT_IO_USEC;
	else
		c->deadline_usec = now + CLIENT_IDLE_USEC;
}

static void client_accept(struct control_server *cs)
{
	/* What one wakeup takes; the rest waits for the next round. */
	for (unsigned round = 0; round < MAX_CLIENTS; round++) {
		int fd = accept4(cs->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct client *c = NULL;
		size_t slot = MAX_CLIENTS, total = 0, same = 0, others = 0;
		const char *why = NULL;

		if (fd < 0)
			return;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			close(fd);
			continue;
		}
		for (size_t i = 0; i < MAX_CLIENTS; i++) {
			if (!cs->clients[i]) {
				if (slot == MAX_CLIENTS)
					slot = i;
				continue;
			}
			total++;
			if (cs->clients[i]->uid == cred.uid)
				same++;
			if (cs->clients[i]->uid != 0)
				others++;
		}
		if (total >= MAX_CLIENTS)
			why = "too many control connections";
		else if (cred.uid != 0 && same >= CLIENTS_PER_UID)
			why = "too many control connections from this user";
		else if (cred.uid != 0 && others >= MAX_CLIENTS - ROOT_SLOTS)
			why = "too many control connections (the last ones are kept for root)";
		else if (!(c = calloc(1, sizeof(*c))))
			why = "out of memory";
		if (why) {
			char *e = ovcd_reply_error(why);
			unsigned suppressed = 0;

			/* A fresh socket's buffer takes one short line. */
			if (e)
				(void)!send(fd, e, strlen(e), MSG_NOSIGNAL | MSG_DONTWAIT);
			free(e);
			close(fd);
			if (ovcd_ratelimit_check(&cs->rl, now_usec(CLOCK_MONOTONIC), OVCD_RATELIMIT_INTERVAL_USEC,
						 OVCD_RATELIMIT_BURST, &suppressed))
				dlog_warning("control: refused a connection from uid %u: %s (%u more refused)",
					     (unsigned)cred.uid, why, suppressed);
			continue;
		}
		c->src.type = SRC_CLIENT;
		c->fd = fd;
		c->uid = cred.uid;
		c->gid = cred.gid;
		/* The peer's supplementary groups as they were at connect()
		 * (SO_PEERGROUPS, Linux 4.13): no race with /proc. */
		len = sizeof(c->groups);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
			c->n_groups = len / sizeof(gid_t);
		c->events = EPOLLIN | EPOLLRDHUP;
		client_rearm(c, now_usec(CLOCK_MONOTONIC));
		cs->clients[slot] = c;
		if (watch(cs, fd, c->events, &c->src) < 0)
			client_close(cs, c);
	}
}

static char *handle_request(struct control_server *cs, struct client *c, const char *line, size_t len)
{
	struct ovcd_request req;
	char err[OVCD_ERROR_MAX];

	if (ovcd_request_parse(line, len, &req, err, sizeof(err)) < 0)
		return ovcd_reply_error(err);
	if (ovcd_command_mutates(req.command) &&
	    !ovcd_peer_may_mutate(c->uid, c->gid, c->groups, c->n_groups, cs->has_gid, cs->gid)) {
		snprintf(err, sizeof(err), "permission denied: \"%s\" is only for root%s%s (uid %u is not)",
			 ovcd_command_name(req.command), cs->has_gid ? " and members of group " : "",
			 cs->has_gid ? cs->group : "", (unsigned)c->uid);
		dlog_notice("control: refused \"%s\" from uid %u", ovcd_command_name(req.command), (unsigned)c->uid);
		return ovcd_reply_error(err);
	}
	/* The owner answers it: the server knows nothing of what it does. */
	return cs->ops.request(cs->userdata, &req);
}

/* Queue @s (a reply line) after the replies already waiting. */
static int client_send(struct client *c, const char *s)
{
	size_t len = strlen(s);

	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = MAX(c->out_cap * 2, c->out_len + len);
		char *p;

		if (c->out_off > 0) {
			/* Make room at the front first. */
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		if (c->out_len + len > c->out_cap) {
			p = realloc(c->out, cap);
			if (!p)
				return -ENOMEM;
			c->out = p;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, s, len);
	c->out_len += len;
	return 0;
}

/* Send what the socket takes now. 0, or -errno: drop the client. */
static int client_flush(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : negative_errno();
		}
		c->out_off += (size_t)w;
	}
	return 0;
}

/* Answer the complete lines in buf while the output queue has room.
 * -errno: drop the client. */
static int client_process_lines(struct control_server *cs, struct client *c)
{
	char *nl;

	while (c->out_len - c->out_off < CLIENT_OUT_HIGH && !c->closing && (nl = memchr(c->buf, '\n', c->n))) {
		size_t len = (size_t)(nl - c->buf);
		char *reply = handle_request(cs, c, c->buf, len > 0 && c->buf[len - 1] == '\r' ? len - 1 : len);
		int r = reply ? client_send(c, reply) : -ENOMEM;

		free(reply);
		if (r < 0)
			return r;
		memmove(c->buf, nl + 1, c->n - len - 1);
		c->n -= len + 1;
		/* What is left came with the last read. */
		c->line_start_usec = now_usec(CLOCK_MONOTONIC);
	}
	if (c->n == sizeof(c->buf) && !memchr(c->buf, '\n', c->n) && !c->closing) {
		/* A line longer than any request: say so, then close. */
		char err[OVCD_ERROR_MAX];
		struct ovcd_request req;
		char *reply;
		int r;

		(void)ovcd_request_parse(c->buf, OVCD_REQUEST_MAX + 1, &req, err, sizeof(err));
		reply = ovcd_reply_error(err);
		r = reply ? client_send(c, reply) : -ENOMEM;
		free(reply);
		c->closing = true;
		c->n = 0;
		if (r < 0)
			return r;
	}
	return 0;
}

static void client_read(struct control_server *cs, struct client *c, uint32_t events)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	bool moved = false;
	unsigned reads = 0;
	int r = 0;

	if (events & EPOLLERR) {
		client_close(cs, c);
		return;
	}
	if (events & EPOLLOUT) {
		size_t off = c->out_off;

		r = client_flush(c);
		moved = c->out_off != off;
	}
	/* Read while there is room for a line and for its reply, and not
	 * forever: a client that keeps sending waits for the next round. */
	while (r == 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !c->eof && !c->closing &&
	       c->n < sizeof(c->buf) && c->out_len - c->out_off < CLIENT_OUT_HIGH && reads++ < 16) {
		ssize_t k;

		if (c->n == 0)
			c->line_start_usec = now;
		k = recv(c->fd, c->buf + c->n, sizeof(c->buf) - c->n, MSG_DONTWAIT);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			if (errno != EAGAIN)
				r = negative_errno();
			break;
		}
		moved = true;
		if (k == 0)
			c->eof = true;
		c->n += (size_t)k;
		r = client_process_lines(cs, c);
	}
	/* Lines left unanswered while the queue was full. */
	if (r == 0)
		r = client_process_lines(cs, c);
	if (r == 0)
		r = client_flush(c);
	if (r < 0 || ((c->eof || c->closing) && c->out_off == c->out_len)) {
		client_close(cs, c);
		return;
	}
	if (moved)
		client_rearm(c, now);
	if (client_watch(cs, c) < 0)
		client_close(cs, c);
}

/* Drop the clients past their deadline; the time until the next one's,
 * in ms, or -1. */
static int clients_expire(struct control_server *cs)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC), next = UINT64_MAX;

	for (size_t i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = cs->clients[i];

		if (!c)
			continue;
		if (now >= c->deadline_usec) {
			dlog_debug("control: dropped a connection of uid %u: %s", (unsigned)c->uid,
				   c->out_len > c->out_off ? "it does not read its replies"
				   : c->n > 0		   ? "its request did not end"
							   : "idle");
			client_close(cs, c);
			continue;
		}
		next = MIN(next, c->deadline_usec - now);
	}
	return next == UINT64_MAX ? -1 : (int)MIN((next + 999) / 1000, (uint64_t)INT32_MAX);
}

int control_server_new(int epfd, const struct ovcd_config *cfg, const struct control_server_ops *ops,
		       void *userdata, struct control_server **ret)
{
	struct control_server *cs = calloc(1, sizeof(*cs));
	int r;

	if (!cs)
		return -ENOMEM;
	cs->src.type = SRC_CONTROL;
	cs->epfd = epfd;
	cs->fd = cs->dirfd = -1;
	cs->ops = *ops;
	cs->userdata = userdata;
	(void)resolve_group(cs, cfg);
	r = control_open(cs, cfg);
	if (r < 0) {
		control_server_free(cs);
		return r;
	}
	*ret = cs;
	return 0;
}

void control_server_reload(struct control_server *cs, const struct ovcd_config *cfg)
{
	(void)resolve_group(cs, cfg);
	if (cs->fd >= 0)
		control_chown(cs);
}

const char *control_server_path(const struct control_server *cs)
{
	return cs->path;
}

void control_server_accept(struct control_server *cs)
{
	client_accept(cs);
}

void control_server_client_event(struct control_server *cs, struct source *src, uint32_t events)
{
	client_read(cs, (struct client *)src, events);
}

int control_server_expire(struct control_server *cs)
{
	return clients_expire(cs);
}

void control_server_free(struct control_server *cs)
{
	if (!cs)
		return;
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		if (cs->clients[i])
			client_close(cs, cs->clients[i]);
	if (cs->fd >= 0) {
		struct stat st;

		close(cs->fd);
		/* Only the file ovcd made: another may have taken the name. */
		if (fstatat(cs->dirfd, cs->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_dev == cs->dev &&
		    st.st_ino == cs->ino)
			(void)unlinkat(cs->dirfd, cs->name, 0);
	}
	if (cs->dirfd >= 0)
		close(cs->dirfd);
	free(cs);
}
