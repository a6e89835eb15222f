/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The "ovc" backend: engines embedded in VMMs (libovc's ovc_engine_publish)
 * reached through their control sockets in one directory, watched with
 * inotify. One connection per engine, kept open: the engine closing it (the
 * VMM exited or unpublished) is how a guest stops. Each connection is a
 * state machine that never waits: one request in flight
 * (docs/engine-protocol.md) with one deadline for its reply line; the
 * engine never speaks unasked, so anything read between requests is end of
 * stream or a protocol error. The protocol has no request ids, so a
 * connection whose request timed out is closed and opened again before the
 * next one, and a late reply is never taken for the next request's.
 *
 * Identity: an engine's name is its socket's name (NAME.sock), never what
 * it says; the socket is opened without following symlinks, its listener
 * must own it, and its pid is the kernel's (balloon_connect). A socket that
 * does not answer its first request is remembered by device and inode and
 * not tried again before its back-off, however often the directory
 * changes; a listed engine that stops answering trips its circuit breaker.
 *
 * An engine has no balloon: a guest of this backend has actual = max, no
 * balloon capability, no guest-side figures (OVC_UNKNOWN), and the engine's
 * own figures, clamped (engine-figures.c): its maximum never exceeds the
 * RAM it registered nor the VMM's address space. Its memory is steered with
 * ovcd_balloon_set_reclaim().
 *
 * Threads: none of its own; everything runs in the thread that owns the
 * ovcd_balloon handle. No locks (the event queue has its own).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common/endpoint-proto.h"
#include "engine-figures.h"
#include "internal.h"
#include "common/util.h"

/* An engine answers from its own thread at once; a VMM so starved that it
 * cannot answer in this long is treated as not answering this request. */
#define REPLY_TIMEOUT_MSEC 2000

/* A socket that did not answer its first request, or refused us. */
#define FIRST_RETRY_MIN_MSEC 5000
#define FIRST_RETRY_MAX_MSEC 300000

/* Figures are asked for at most this often per engine. */
#define REFRESH_MIN_MSEC 250

enum req {
	R_NONE,
	R_STATS,
	R_RECLAIM,
};

struct eng {
	char file[NAME_MAX + 1];        /* under the directory */
	char path[PATH_MAX];            /* for messages */
	char id[OVC_BALLOON_ID_MAX];    /* the socket file's name */
	char name[OVC_BALLOON_NAME_MAX]; /* the file's name without ".sock" */
	int fd;                         /* -1 between connections */
	dev_t dev;
	ino_t ino;
	pid_t pid;
	uint64_t vm_bytes; /* the VMM's address space when connected */
	bool listed;       /* answered once: in the cache, STARTED queued */
	bool dead;         /* STOPPED queued; removed at the next sweep */
	enum req inflight;
	uint64_t deadline_usec;
	uint64_t sent_reclaim;
	struct balloon_breaker brk;
	bool want_refresh;
	uint64_t last_refresh_usec;
	bool want_reclaim;
	uint64_t reclaim_bytes;
	struct ep_lines rd;
	char rd_buf[EP_REPLY_MAX];
};

struct ovcd_backend {
	const char *dir;
	int dir_fd; /* O_PATH|O_DIRECTORY */
	struct eng **v;
	size_t n, cap;
	int inotify_fd;
	bool rescan;
};

static struct ovcd_backend *be(const ovcd_balloon *b)
{
	return b->backend;
}

static void eng_close(ovcd_balloon *b, struct eng *g)
{
	if (g->fd >= 0) {
		balloon_unwatch_fd(b, g->fd);
		close(g->fd);
		g->fd = -1;
	}
	g->inflight = R_NONE;
	ep_lines_init(&g->rd, g->rd_buf, sizeof(g->rd_buf));
}

static void eng_free(ovcd_balloon *b, struct eng *g)
{
	if (!g)
		return;
	eng_close(b, g);
	free(g);
}

/* The VMM's address space (VmSize), or OVC_UNKNOWN. */
static uint64_t vm_bytes_of(pid_t pid)
{
	char path[64], buf[128];
	unsigned long long pages;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return OVC_UNKNOWN;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return OVC_UNKNOWN;
	buf[n] = '\0';
	if (sscanf(buf, "%llu", &pages) != 1 || pages > UINT64_MAX / OVC_PAGE_SIZE)
		return OVC_UNKNOWN;
	return (uint64_t)pages * OVC_PAGE_SIZE;
}

/* The engine is gone: tell the caller (if it knew it), remember the socket
 * (if it never answered). */
static void eng_lost(ovcd_balloon *b, struct eng *g, int err, const char *why)
{
	if (g->dead)
		return;
	g->dead = true;
	log_debug(b->opts.logger, "engine socket %s: %s", g->path, why);
	if (g->inflight == R_RECLAIM)
		balloon_request_done(b, g->name, OVC_BALLOON_REQ_RECLAIM, g->sent_reclaim, err, why);
	if (g->want_reclaim)
		balloon_request_done(b, g->name, OVC_BALLOON_REQ_RECLAIM, g->reclaim_bytes, err, why);
	g->want_reclaim = false;
	if (g->listed) {
		balloon_cache_drop(b, g->name);
		balloon_queue_event(b, OVC_BALLOON_EVENT_STOPPED, g->name, OVC_UNKNOWN);
	} else {
		balloon_fail_note(b, g->dev, g->ino, FIRST_RETRY_MIN_MSEC, FIRST_RETRY_MAX_MSEC);
	}
	eng_close(b, g);
}

/* (Re)connect to the same socket file: it must still be that inode. */
static int eng_connect(ovcd_balloon *b, struct eng *g)
{
	struct balloon_peer p;
	int r = balloon_connect(be(b)->dir_fd, g->file, &p);

	if (r < 0)
		return r;
	if (p.dev != g->dev || p.ino != g->ino) {
		close(p.fd);
		return -ESTALE;
	}
	r = balloon_watch_fd(b, p.fd);
	if (r < 0) {
		close(p.fd);
		return r;
	}
	g->fd = p.fd;
	g->pid = p.pid;
	g->vm_bytes = vm_bytes_of(p.pid);
	ep_lines_init(&g->rd, g->rd_buf, sizeof(g->rd_buf));
	return 0;
}

static int send_req(ovcd_balloon *b, struct eng *g, enum req k)
{
	char line[96];
	ssize_t n;
	size_t len;

	if (g->fd < 0) {
		/* Closed after a timeout or a drop: one fresh connection. */
		int r = eng_connect(b, g);

		if (r < 0)
			return r;
	}
	if (k == R_STATS)
		snprintf(line, sizeof(line), EP_VERSION_TOKEN " stats\n");
	else
		snprintf(line, sizeof(line), EP_VERSION_TOKEN " reclaim target_bytes=%" PRIu64 "\n",
			 g->sent_reclaim);
	len = strlen(line);
	n = send(g->fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0 || (size_t)n != len)
		return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? -ETIMEDOUT : -ENOTCONN;
	g->inflight = k;
	g->deadline_usec = now_usec(CLOCK_MONOTONIC) + REPLY_TIMEOUT_MSEC * 1000ull;
	return 0;
}

static void publish(ovcd_balloon *b, struct eng *g, const struct ep_reply *rp)
{
	struct ovcd_balloon_guest out;

	if (ovcd_known(rp->st.max_bytes) && rp->st.max_bytes != engine_max_bytes(rp, g->vm_bytes) && !g->listed)
		log_warning(b->opts.logger,
			    "engine '%s' (pid %d) claims a maximum of %" PRIu64 " MiB; counted as %" PRIu64
			    " MiB, the RAM it registered and its address space",
			    g->name, (int)g->pid, rp->st.max_bytes / MIB, engine_max_bytes(rp, g->vm_bytes) / MIB);
	if ((rp->have & EP_HAVE_NAME) && strcmp(rp->st.name, g->name) != 0 && !g->listed)
		log_debug(b->opts.logger, "engine socket %s says it is '%s'; its socket's name counts", g->path,
			  rp->st.name);
	memset(&out, 0, sizeof(out));
	snprintf(out.name, sizeof(out.name), "%s", g->name);
	snprintf(out.id, sizeof(out.id), "%s", g->id);
	out.pid = g->pid;
	out.caps = 0; /* no balloon device */
	out.driver = OVC_BALLOON_DRIVER_UNKNOWN;
	engine_figures(rp, g->vm_bytes, &out.stats);
	out.stats.collected_usec = now_usec(CLOCK_MONOTONIC);
	if (balloon_cache_put(b, &out) < 0)
		return;
	if (!g->listed) {
		g->listed = true;
		balloon_fail_clear(b, g->dev, g->ino);
		balloon_queue_event(b, OVC_BALLOON_EVENT_STARTED, g->name, OVC_UNKNOWN);
	}
}

static void on_reply(ovcd_balloon *b, struct eng *g, const char *line, size_t len)
{
	enum req k = g->inflight;
	struct ep_reply rp;

	g->inflight = R_NONE;
	if (ep_parse_reply(line, len, &rp) < 0) {
		if (!g->listed) {
			eng_lost(b, g, -EPROTO, "its reply is not " EP_VERSION_TOKEN);
			return;
		}
		balloon_breaker_fail(&g->brk, now_usec(CLOCK_MONOTONIC));
		eng_close(b, g);
		if (k == R_RECLAIM)
			balloon_request_done(b, g->name, OVC_BALLOON_REQ_RECLAIM, g->sent_reclaim, -EPROTO,
					     "the engine's reply is not " EP_VERSION_TOKEN);
		return;
	}
	balloon_breaker_ok(&g->brk);
	if (k == R_RECLAIM) {
		char why[EP_MSG_MAX + 1];

		snprintf(why, sizeof(why), "%s", rp.ok ? "" : rp.msg[0] ? rp.msg : ovc_strerror(rp.err));
		balloon_request_done(b, g->name, OVC_BALLOON_REQ_RECLAIM, g->sent_reclaim, rp.ok ? 0 : rp.err,
				     why);
		if (rp.ok) {
			struct ovcd_balloon_guest *c = balloon_cache_get(b, g->name);

			if (c)
				c->stats.engine_target_bytes = MIN(g->sent_reclaim, c->stats.max_bytes);
		}
		return;
	}
	if (!rp.ok || (rp.have & EP_HAVE_STATS_REQUIRED) != EP_HAVE_STATS_REQUIRED) {
		if (!g->listed)
			eng_lost(b, g, -EPROTO, "its stats lack a required figure");
		return;
	}
	publish(b, g, &rp);
}

static void eng_input(ovcd_balloon *b, struct eng *g)
{
	for (;;) {
		const char *line;
		size_t room, len;
		char *at;
		ssize_t n;
		int r;

		if (g->fd < 0 || g->dead)
			return;
		at = ep_lines_space(&g->rd, &room);
		n = room ? recv(g->fd, at, room, MSG_DONTWAIT) : 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0 || g->inflight == R_NONE) {
			/* End of stream, an error, or bytes nobody asked for.
			 * A full engine may have dropped us for a newer
			 * client: one new connection decides. */
			enum req k = g->inflight;

			eng_close(b, g);
			if (!g->listed) {
				eng_lost(b, g, -ENOTCONN, n == 0 ? "it closed the connection" : "it spoke unasked");
				return;
			}
			if (eng_connect(b, g) < 0) {
				eng_lost(b, g, -ENOTCONN, "the engine closed its socket");
				return;
			}
			if (k == R_RECLAIM)
				g->want_reclaim = true, g->reclaim_bytes = g->sent_reclaim;
			else if (k == R_STATS)
				g->want_refresh = true;
			return;
		}
		ep_lines_added(&g->rd, (size_t)n);
		r = ep_lines_next(&g->rd, &line, &len);
		if (r < 0) {
			eng_lost(b, g, -EPROTO, "its reply line is too long");
			return;
		}
		if (r == 1)
			on_reply(b, g, line, len);
	}
}

static void eng_step(ovcd_balloon *b, struct eng *g, uint64_t now)
{
	int r;

	if (g->dead)
		return;
	if (g->inflight != R_NONE) {
		enum req k = g->inflight;

		if (now < g->deadline_usec)
			return;
		if (!g->listed) {
			eng_lost(b, g, -ETIMEDOUT, "it did not answer its first request");
			return;
		}
		/* No request ids: a late reply must not meet the next request. */
		eng_close(b, g);
		balloon_breaker_fail(&g->brk, now);
		if (g->brk.fails == BALLOON_BREAKER_FAILS)
			log_warning(b->opts.logger,
				    "engine '%s' (%s) did not answer %d requests in a row; asking again in %u ms",
				    g->name, g->path, BALLOON_BREAKER_FAILS, g->brk.backoff_msec);
		if (k == R_RECLAIM)
			balloon_request_done(b, g->name, OVC_BALLOON_REQ_RECLAIM, g->sent_reclaim, -ETIMEDOUT,
					     "the engine did not answer in time");
	}
	if (balloon_breaker_open(&g->brk, now))
		return;
	if (g->want_reclaim) {
		g->want_reclaim = false;
		g->sent_reclaim = g->reclaim_bytes;
		r = send_req(b, g, R_RECLAIM);
		if (r == -ENOENT || r == -ECONNREFUSED || r == -ESTALE) {
			eng_lost(b, g, -ENOTCONN, "the engine has gone");
		} else if (r < 0) {
			balloon_breaker_fail(&g->brk, now);
			balloon_request_done(b, g->name, OVC_BALLOON_REQ_RECLAIM, g->sent_reclaim, r,
					     "the engine does not take requests");
		}
		return;
	}
	if (g->want_refresh && now - g->last_refresh_usec >= REFRESH_MIN_MSEC * 1000ull) {
		g->want_refresh = false;
		g->last_refresh_usec = now;
		r = send_req(b, g, R_STATS);
		if (r == -ENOENT || r == -ECONNREFUSED || r == -ESTALE)
			eng_lost(b, g, -ENOTCONN, "the engine has gone");
		else if (r < 0)
			balloon_breaker_fail(&g->brk, now);
	}
}

static struct eng *find_name(struct ovcd_backend *q, const char *name)
{
	for (size_t i = 0; i < q->n; i++)
		if (!q->v[i]->dead && q->v[i]->listed && strcmp(q->v[i]->name, name) == 0)
			return q->v[i];
	return NULL;
}

static bool is_engine_socket(const char *file, char *name, size_t size)
{
	size_t n = strlen(file);

	/* Engines bind under a hidden name and link the final one in place;
	 * the name is the published one, [A-Za-z0-9._-]. */
	if (file[0] == '.' || n <= 5 || strcmp(file + n - 5, ".sock") != 0 || !ep_name_valid(file, n - 5) ||
	    n - 5 >= size)
		return false;
	memcpy(name, file, n - 5);
	name[n - 5] = '\0';
	return true;
}

/* A socket file not known yet: connect and ask for its first stats; it is
 * listed once they come. */
static void eng_add(ovcd_balloon *b, const char *file, const char *name, const struct stat *st)
{
	struct ovcd_backend *q = be(b);
	struct balloon_peer p;
	struct eng *g;
	int r;

	if (balloon_fail_blocked(b, st->st_dev, st->st_ino))
		return;
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 8;
		struct eng **v = realloc(q->v, cap * sizeof(*v));

		if (!v)
			return;
		q->v = v;
		q->cap = cap;
	}
	r = balloon_connect(q->dir_fd, file, &p);
	if (r < 0) {
		bool first = p.ino && balloon_fail_note(b, p.dev, p.ino, FIRST_RETRY_MIN_MSEC, FIRST_RETRY_MAX_MSEC);

		/* A crashed VMM's socket (refused) is normal; a symlink or a
		 * socket its listener does not own is someone's trick. */
		if (first && (r == -ELOOP || r == -EPERM || r == -ENOTSOCK))
			log_warning(b->opts.logger, "engine socket %s/%s refused: %s", q->dir, file,
				    r == -ELOOP ? "a symlink is never followed"
				    : r == -EPERM ? "its listener does not own it"
						  : "not a socket");
		else
			log_debug(b->opts.logger, "engine socket %s/%s: %s", q->dir, file, strerror(-r));
		return;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		close(p.fd);
		return;
	}
	snprintf(g->file, sizeof(g->file), "%s", file);
	snprintf(g->path, sizeof(g->path), "%s/%s", q->dir, file);
	snprintf(g->id, sizeof(g->id), "%s", file);
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->fd = p.fd;
	g->dev = p.dev;
	g->ino = p.ino;
	g->pid = p.pid;
	g->vm_bytes = vm_bytes_of(p.pid);
	ep_lines_init(&g->rd, g->rd_buf, sizeof(g->rd_buf));
	if (balloon_watch_fd(b, g->fd) < 0) {
		eng_free(b, g);
		return;
	}
	q->v[q->n++] = g;
	g->want_refresh = true;
	eng_step(b, g, now_usec(CLOCK_MONOTONIC));
}

/* Drop the dead, mark as stopped those whose socket file is gone or was
 * replaced, add the new ones. Never waits for a peer. */
static void rescan(ovcd_balloon *b)
{
	struct ovcd_backend *q = be(b);
	size_t k = 0;
	DIR *d;
	int fd;

	for (size_t i = 0; i < q->n; i++) {
		struct eng *g = q->v[i];
		struct stat st;

		if (!g->dead && (fstatat(q->dir_fd, g->file, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
				 st.st_dev != g->dev || st.st_ino != g->ino))
			eng_lost(b, g, -ENOENT, "the engine's socket was removed");
		if (g->dead)
			eng_free(b, g);
		else
			q->v[k++] = g;
	}
	q->n = k;
	q->rescan = false;

	fd = openat(q->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	balloon_fail_sweep_begin(b);
	for (struct dirent *de; (de = readdir(d));) {
		char name[OVC_BALLOON_NAME_MAX];
		struct stat st;
		bool known = false;

		if (!is_engine_socket(de->d_name, name, sizeof(name)) ||
		    fstatat(q->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		for (size_t i = 0; i < q->n && !known; i++)
			known = q->v[i]->dev == st.st_dev && q->v[i]->ino == st.st_ino;
		if (!known)
			eng_add(b, de->d_name, name, &st);
	}
	closedir(d);
	balloon_fail_sweep_end(b);
}

static int ovcd_refresh(ovcd_balloon *b)
{
	struct ovcd_backend *q = be(b);
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	if (q->rescan)
		rescan(b);
	for (size_t i = 0; i < q->n; i++) {
		q->v[i]->want_refresh = true;
		eng_step(b, q->v[i], now);
	}
	return 0;
}

static int ovcd_set_target(ovcd_balloon *b, const char *name, uint64_t target_bytes)
{
	return balloon_error(b, -ENODEV, "an embedded engine has no balloon device");
}

static int ovcd_set_reclaim(ovcd_balloon *b, const char *name, uint64_t reclaim_bytes)
{
	struct eng *g = find_name(be(b), name);

	if (!g)
		return balloon_error(b, -ENOENT, "no engine publishes a guest of that name in %s", be(b)->dir);
	if (g->want_reclaim)
		balloon_request_done(b, name, OVC_BALLOON_REQ_RECLAIM, g->reclaim_bytes, -ECANCELED,
				     "replaced by a newer target before the engine got it");
	g->want_reclaim = true;
	g->reclaim_bytes = reclaim_bytes;
	eng_step(b, g, now_usec(CLOCK_MONOTONIC));
	return 0;
}

static void ovcd_mark_absent(ovcd_balloon *b, const char *name)
{
	/* No balloon, so nothing to mark. */
}

static int ovcd_process(ovcd_balloon *b)
{
	struct ovcd_backend *q = be(b);
	uint64_t now;
	bool any_dead = false;

	if (balloon_drain_inotify(q->inotify_fd))
		q->rescan = true;
	for (size_t i = 0; i < q->n; i++)
		eng_input(b, q->v[i]);
	now = now_usec(CLOCK_MONOTONIC);
	for (size_t i = 0; i < q->n; i++) {
		eng_step(b, q->v[i], now);
		any_dead |= q->v[i]->dead;
	}
	if (q->rescan || any_dead)
		rescan(b);
	return 0;
}

static int ovcd_timeout_msec(const ovcd_balloon *b)
{
	const struct ovcd_backend *q = be(b);
	uint64_t now = now_usec(CLOCK_MONOTONIC), next = UINT64_MAX;

	for (size_t i = 0; i < q->n; i++) {
		const struct eng *g = q->v[i];

		if (g->dead)
			continue;
		if (g->inflight != R_NONE)
			next = MIN(next, g->deadline_usec);
		else if (g->want_reclaim || g->want_refresh)
			next = MIN(next, MAX(g->brk.open_until_usec,
					     g->want_reclaim ? now : g->last_refresh_usec + REFRESH_MIN_MSEC * 1000ull));
	}
	if (next == UINT64_MAX)
		return -1; /* inotify and the sockets wake us */
	return next <= now ? 0 : (int)MIN((next - now) / 1000 + 1, (uint64_t)INT32_MAX);
}

static void ovcd_close(ovcd_balloon *b)
{
	struct ovcd_backend *q = be(b);

	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++)
		eng_free(b, q->v[i]);
	free(q->v);
	if (q->inotify_fd >= 0)
		close(q->inotify_fd);
	if (q->dir_fd >= 0)
		close(q->dir_fd);
	free(q);
	b->backend = NULL;
}

static int ovcd_open(ovcd_balloon *b)
{
	struct ovcd_backend *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->inotify_fd = q->dir_fd = -1;
	q->dir = b->opts.engine_dir ? b->opts.engine_dir : OVC_PUBLISH_DIR;
	b->backend = q;
	/* Engines create it too; the daemon makes it so that it can watch it
	 * before the first engine comes. The parent must exist (/run/ovc is
	 * the daemon's runtime directory). */
	if (mkdir(q->dir, 0755) < 0 && errno != EEXIST) {
		r = balloon_error(b, negative_errno(), "cannot create engine directory %s: %s", q->dir,
				  strerror(errno));
		goto fail;
	}
	/* The directory itself is not followed either if it is a symlink. */
	q->dir_fd = open(q->dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (q->dir_fd < 0) {
		r = balloon_error(b, negative_errno(), "cannot open engine directory %s: %s", q->dir,
				  errno == ENOTDIR ? "not a directory (a symlink is never followed)"
						   : strerror(errno));
		goto fail;
	}
	r = balloon_watch_dir(b, q->dir, q->dir_fd, "engine", &q->inotify_fd);
	if (r < 0)
		goto fail;
	rescan(b);
	return 0;
fail:
	ovcd_close(b);
	return r;
}

const struct balloon_ops balloon_ovc_ops = {
	.name = "ovc",
	.no_such_guest = "no engine publishes a guest of that name",
	.open = ovcd_open,
	.close = ovcd_close,
	.refresh = ovcd_refresh,
	.set_target = ovcd_set_target,
	.mark_absent = ovcd_mark_absent,
	.process = ovcd_process,
	.timeout_msec = ovcd_timeout_msec,
	.set_reclaim = ovcd_set_reclaim,
};
