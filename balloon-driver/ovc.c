/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The "ovc" backend: engines embedded in VMMs (libovc's ovc_engine_publish)
 * reached through their control sockets in one directory, watched with
 * inotify. One connection per engine, kept open: the engine closing it (the
 * VMM exited or unpublished) is how a guest stops. Requests go one at a time
 * and wait for their reply line (docs/engine-protocol.md); the engine never
 * speaks unasked, so anything read between requests is end of stream or a
 * protocol error.
 *
 * An engine has no balloon: a guest of this backend has actual = max, no
 * balloon capability, no guest-side figures (OVC_UNKNOWN), and the engine's
 * own figures (engine_zero_bytes, engine_swap_bytes, engine_target_bytes,
 * and the swap counters an engine may send: engine_swap).
 * Its memory is steered with ovc_balloon_set_reclaim().
 *
 * Threads: none of its own; everything runs in the thread that owns the
 * ovc_balloon handle. No locks (the event queue has its own).
 */
#include <dirent.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "endpoint-proto.h"
#include "internal.h"
#include "util.h"

/* An engine answers from its own thread at once; a VMM so starved that it
 * cannot answer in this long is treated as gone for this request. */
#define REPLY_TIMEOUT_MSEC 2000

struct eng {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char id[OVC_BALLOON_ID_MAX];
	char name[OVC_BALLOON_NAME_MAX];
	int fd;
	bool dead; /* STOPPED queued; removed at the next sweep */
	struct ep_lines rd;
	char rd_buf[EP_REPLY_MAX];
};

struct ovc_backend {
	const char *dir;
	struct eng **v;
	size_t n, cap;
	int inotify_fd;
	bool rescan;
};

static struct ovc_backend *be(const ovc_balloon *b)
{
	return b->backend;
}

static void eng_close(ovc_balloon *b, struct eng *g)
{
	if (g->fd >= 0) {
		balloon_unwatch_fd(b, g->fd);
		close(g->fd);
		g->fd = -1;
	}
}

static void eng_free(ovc_balloon *b, struct eng *g)
{
	if (!g)
		return;
	eng_close(b, g);
	free(g);
}

static int eng_lost(ovc_balloon *b, struct eng *g, int err, const char *why_in)
{
	char why[sizeof(b->error)];

	/* @why_in may be b->error itself. */
	snprintf(why, sizeof(why), "%s", why_in);
	if (!g->dead) {
		g->dead = true;
		balloon_queue_event(b, OVC_BALLOON_EVENT_STOPPED, g->name, OVC_UNKNOWN);
	}
	eng_close(b, g);
	return balloon_error(b, err, "%s (%s)", why, g->path);
}

static int eng_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = negative_errno();

		close(fd);
		return r;
	}
	return fd;
}

/* Send @line, wait for the reply line, parse it. The connection is not
 * declared lost here: the caller decides (a fresh connection may follow). */
static int exchange(ovc_balloon *b, struct eng *g, const char *line, struct ep_reply *rp)
{
	uint64_t deadline = now_usec(CLOCK_MONOTONIC) + REPLY_TIMEOUT_MSEC * 1000ull;
	size_t len = strlen(line), off = 0;
	const char *reply;
	size_t rlen;
	int r;

	if (g->fd < 0)
		return -ENOTCONN;
	while (off < len) {
		ssize_t n = send(g->fd, line + off, len - off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return balloon_error(b, -ENOTCONN, "the engine closed its socket");
		off += (size_t)n;
	}
	while ((r = ep_lines_next(&g->rd, &reply, &rlen)) == 0) {
		struct pollfd p = { .fd = g->fd, .events = POLLIN };
		uint64_t now = now_usec(CLOCK_MONOTONIC);
		size_t room;
		char *at;
		ssize_t n;

		if (now >= deadline)
			return balloon_error(b, -ETIMEDOUT, "the engine did not answer in %d ms",
					     REPLY_TIMEOUT_MSEC);
		if (poll(&p, 1, (int)((deadline - now) / 1000 + 1)) <= 0)
			continue;
		at = ep_lines_space(&g->rd, &room);
		n = recv(g->fd, at, room, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return balloon_error(b, -ENOTCONN, "the engine closed its socket");
		ep_lines_added(&g->rd, (size_t)n);
	}
	if (r < 0 || ep_parse_reply(reply, rlen, rp) < 0)
		return balloon_error(b, -EPROTO, "the engine's reply is not %s", EP_VERSION_TOKEN);
	if (!rp->ok)
		return balloon_error(b, rp->err, "%s", rp->msg[0] ? rp->msg : ovc_strerror(rp->err));
	return 0;
}

/* @rp: the figures, and in rp->have which of them the engine sent. */
static int ask_stats(ovc_balloon *b, struct eng *g, struct ep_reply *rp)
{
	int r = exchange(b, g, EP_VERSION_TOKEN " stats\n", rp);

	if (r < 0)
		return r;
	if ((rp->have & EP_HAVE_STATS_REQUIRED) != EP_HAVE_STATS_REQUIRED)
		return balloon_error(b, -EPROTO, "the engine's stats lack a required figure");
	return 0;
}

/* A request failed on the connection: the engine may only have dropped us
 * (all its slots taken). One new connection decides whether it is gone. */
static int reconnect(ovc_balloon *b, struct eng *g)
{
	struct ep_reply rp;
	int fd, r;

	eng_close(b, g);
	ep_lines_init(&g->rd, g->rd_buf, sizeof(g->rd_buf));
	fd = eng_connect(g->path);
	if (fd < 0)
		return fd;
	g->fd = fd;
	r = ask_stats(b, g, &rp);
	if (r < 0 || strcmp(rp.st.name, g->name) != 0) {
		close(g->fd);
		g->fd = -1;
		return r < 0 ? r : -ENOENT;
	}
	return balloon_watch_fd(b, g->fd);
}

/* Stats with one retry on a fresh connection; the engine counts as gone
 * (STOPPED) if that fails too. */
static int eng_stats(ovc_balloon *b, struct eng *g, struct ep_reply *rp)
{
	int r;

	if (g->dead)
		return balloon_error(b, -ENOENT, "the engine has gone (%s)", g->path);
	r = ask_stats(b, g, rp);
	if (r == -ENOTCONN || r == -ETIMEDOUT || r == -EPROTO) {
		if (reconnect(b, g) < 0)
			return eng_lost(b, g, r, b->error[0] ? b->error : "the engine has gone");
		r = ask_stats(b, g, rp);
	}
	return r;
}

static struct eng *find_path(struct ovc_backend *q, const char *path)
{
	for (size_t i = 0; i < q->n; i++)
		if (!q->v[i]->dead && strcmp(q->v[i]->path, path) == 0)
			return q->v[i];
	return NULL;
}

static struct eng *find_name(struct ovc_backend *q, const char *name)
{
	for (size_t i = 0; i < q->n; i++)
		if (!q->v[i]->dead && strcmp(q->v[i]->name, name) == 0)
			return q->v[i];
	return NULL;
}

/* A socket not known yet. One nobody listens on (an engine that crashed
 * without unlinking) is skipped quietly; a later engine of that name
 * replaces it. */
static int eng_add(ovc_balloon *b, const char *path, const char *base)
{
	struct ovc_backend *q = be(b);
	struct ep_reply rp;
	struct eng *g;
	int r;

	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 8;
		struct eng **p = realloc(q->v, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		q->v = p;
		q->cap = cap;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	snprintf(g->path, sizeof(g->path), "%s", path);
	snprintf(g->id, sizeof(g->id), "%s", base);
	ep_lines_init(&g->rd, g->rd_buf, sizeof(g->rd_buf));
	g->fd = eng_connect(path);
	if (g->fd < 0) {
		log_debug(b->opts.logger, "engine socket %s: %s", path, strerror(-g->fd));
		r = g->fd;
		goto fail;
	}
	r = ask_stats(b, g, &rp);
	if (r < 0) {
		log_debug(b->opts.logger, "engine socket %s: %s", path, b->error);
		goto fail;
	}
	snprintf(g->name, sizeof(g->name), "%s", rp.st.name);
	if (find_name(q, g->name)) {
		r = balloon_error(b, -EEXIST, "engine socket %s: a guest named '%s' is known already",
				  path, g->name);
		goto fail;
	}
	r = balloon_watch_fd(b, g->fd);
	if (r < 0)
		goto fail;
	q->v[q->n++] = g;
	balloon_queue_event(b, OVC_BALLOON_EVENT_STARTED, g->name, OVC_UNKNOWN);
	return 0;
fail:
	eng_free(b, g);
	return r;
}

static bool is_engine_socket(const char *base)
{
	size_t n = strlen(base);

	/* Engines bind under a hidden name and link the final one in place. */
	return base[0] != '.' && n > 5 && strcmp(base + n - 5, ".sock") == 0;
}

/* Drop the dead, mark as stopped those whose socket file is gone, add the
 * new ones. */
static void rescan(ovc_balloon *b)
{
	struct ovc_backend *q = be(b);
	size_t k = 0;
	DIR *d;

	for (size_t i = 0; i < q->n; i++) {
		struct eng *g = q->v[i];
		struct stat st;

		if (!g->dead && lstat(g->path, &st) < 0)
			eng_lost(b, g, -ENOENT, "the engine's socket was removed");
		if (g->dead)
			eng_free(b, g);
		else
			q->v[k++] = g;
	}
	q->n = k;
	q->rescan = false;

	d = opendir(q->dir);
	if (!d)
		return;
	for (struct dirent *de; (de = readdir(d));) {
		char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
		int n;

		if (!is_engine_socket(de->d_name))
			continue;
		n = snprintf(path, sizeof(path), "%s/%s", q->dir, de->d_name);
		if (n < 0 || (size_t)n >= sizeof(path) || find_path(q, path))
			continue;
		(void)eng_add(b, path, de->d_name);
	}
	closedir(d);
}

/* Pages (OVC_PAGE_SIZE) in bytes; a count that would overflow is a lie and
 * stays unknown. */
static uint64_t pages_bytes(uint64_t pages)
{
	return pages <= UINT64_MAX / OVC_PAGE_SIZE ? pages * OVC_PAGE_SIZE : OVC_UNKNOWN;
}

/* A fault that takes an hour is not a measurement. */
#define FAULT_USEC_MAX (UINT64_C(3600) * 1000000)

/* The optional swap figures (docs/engine-protocol.md): unknown unless the
 * engine sent them and they can be true. */
static void fill_swap(const struct ep_reply *rp, uint64_t max, struct ovc_engine_swap_stats *out)
{
	const struct ep_stats *st = &rp->st;
	unsigned have = rp->have;

	if (have & EP_HAVE_SWAPPED_OUT)
		out->out_bytes = pages_bytes(st->pages_swapped_out);
	/* Resident pages: never more than the guest has. */
	if ((have & EP_HAVE_SWAP_CACHE) && pages_bytes(st->swap_cache_pages) <= max)
		out->cache_bytes = pages_bytes(st->swap_cache_pages);
	if (have & EP_HAVE_SWAP_CACHE_HITS)
		out->cache_hits = st->swap_cache_hits;
	if (have & EP_HAVE_REFAULTS)
		out->refaults = st->refaults;
	if (have & EP_HAVE_WRITE_ERRORS)
		out->write_errors = st->swap_write_errors;
	if (have & EP_HAVE_READ_ERRORS)
		out->read_errors = st->swap_read_errors;
	/* Both or neither: a median above the 99th percentile is no pair. */
	if ((have & EP_HAVE_FAULT_P50) && (have & EP_HAVE_FAULT_P99) &&
	    st->fault_p50_usec <= st->fault_p99_usec && st->fault_p99_usec <= FAULT_USEC_MAX) {
		out->fault_p50_usec = st->fault_p50_usec;
		out->fault_p99_usec = st->fault_p99_usec;
	}
}

static void fill(const struct eng *g, const struct ep_reply *rp, struct ovc_balloon_guest *out)
{
	const struct ep_stats *st = &rp->st;

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", g->name);
	snprintf(out->id, sizeof(out->id), "%s", g->id);
	out->caps = 0; /* no balloon device */
	out->driver = OVC_BALLOON_DRIVER_UNKNOWN;
	ovc_guest_stats_reset(&out->stats);
	out->stats.collected_usec = now_usec(CLOCK_MONOTONIC);
	/* The VMM's figures are as untrusted as a guest's: it cannot give
	 * back more than it has. */
	uint64_t max = MIN(st->max_bytes, OVC_GUEST_BYTES_MAX);
	out->stats.max_bytes = max;
	out->stats.actual_bytes = max; /* an engine has no balloon */
	out->stats.engine_zero_bytes = MIN(st->zero_bytes, max);
	out->stats.engine_swap_bytes = MIN(st->swap_bytes, max - out->stats.engine_zero_bytes);
	out->stats.engine_target_bytes = st->target_bytes;
	if (rp->have & EP_HAVE_SWAPPED_IN)
		out->stats.engine_swap_in_bytes = pages_bytes(st->pages_swapped_in);
	if (rp->have & EP_HAVE_REGION)
		out->stats.engine_region_bytes = MIN(st->region_bytes, OVC_GUEST_BYTES_MAX);
	fill_swap(rp, max, &out->stats.engine_swap);
}

static int ovc_list(ovc_balloon *b, struct ovc_balloon_guest **ret, size_t *ret_n)
{
	struct ovc_backend *q = be(b);
	struct ovc_balloon_guest *out;
	size_t k = 0;

	rescan(b);
	out = calloc(q->n ? q->n : 1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < q->n; i++) {
		struct ep_reply rp;

		/* One that went away meanwhile is left out (STOPPED queued). */
		if (eng_stats(b, q->v[i], &rp) < 0)
			continue;
		fill(q->v[i], &rp, &out[k++]);
		balloon_queue_event(b, OVC_BALLOON_EVENT_STATS, q->v[i]->name, OVC_UNKNOWN);
	}
	b->error[0] = '\0';
	*ret = out;
	*ret_n = k;
	return 0;
}

static int lookup(ovc_balloon *b, const char *name, struct eng **ret)
{
	struct eng *g = find_name(be(b), name);

	if (!g) {
		rescan(b);
		g = find_name(be(b), name);
	}
	if (!g)
		return balloon_error(b, -ENOENT, "no engine publishes a guest of that name in %s",
				     be(b)->dir);
	*ret = g;
	return 0;
}

static int ovc_guest(ovc_balloon *b, const char *name, struct ovc_balloon_guest *ret)
{
	struct ep_reply rp;
	struct eng *g;
	int r = lookup(b, name, &g);

	if (r < 0)
		return r;
	r = eng_stats(b, g, &rp);
	if (r < 0)
		return r;
	fill(g, &rp, ret);
	balloon_queue_event(b, OVC_BALLOON_EVENT_STATS, g->name, OVC_UNKNOWN);
	return 0;
}

static int ovc_set_target(ovc_balloon *b, const char *name, uint64_t target_bytes)
{
	return balloon_error(b, -ENODEV, "an embedded engine has no balloon device");
}

static int ovc_set_reclaim(ovc_balloon *b, const char *name, uint64_t reclaim_bytes)
{
	char line[64];
	struct ep_reply rp;
	struct eng *g;
	int r = lookup(b, name, &g);

	if (r < 0)
		return r;
	snprintf(line, sizeof(line), EP_VERSION_TOKEN " reclaim target_bytes=%" PRIu64 "\n",
		 reclaim_bytes);
	r = exchange(b, g, line, &rp);
	if (r == -ENOTCONN || r == -ETIMEDOUT || r == -EPROTO) {
		if (reconnect(b, g) < 0)
			return eng_lost(b, g, r, "the engine has gone");
		r = exchange(b, g, line, &rp);
	}
	return r;
}

static void ovc_mark_absent(ovc_balloon *b, const char *name)
{
	/* No balloon, so nothing to mark. */
}

static int ovc_process(ovc_balloon *b)
{
	struct ovc_backend *q = be(b);

	if (balloon_drain_inotify(q->inotify_fd))
		q->rescan = true;
	for (size_t i = 0; i < q->n; i++) {
		struct eng *g = q->v[i];
		char junk[64];
		ssize_t n;

		if (g->dead || g->fd < 0)
			continue;
		n = recv(g->fd, junk, sizeof(junk), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		/* End of stream, an error, or bytes nobody asked for. A full
		 * engine may have dropped us for a newer client: retry once. */
		if (reconnect(b, g) < 0)
			eng_lost(b, g, -ENOTCONN, "the engine closed its socket");
		q->rescan = true;
	}
	if (q->rescan)
		rescan(b);
	return 0;
}

static int ovc_timeout_msec(const ovc_balloon *b)
{
	return -1; /* inotify and the sockets wake us */
}

static void ovc_close(ovc_balloon *b)
{
	struct ovc_backend *q = be(b);

	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++)
		eng_free(b, q->v[i]);
	free(q->v);
	if (q->inotify_fd >= 0)
		close(q->inotify_fd);
	free(q);
	b->backend = NULL;
}

static int ovc_open(ovc_balloon *b)
{
	struct ovc_backend *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->inotify_fd = -1;
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
	r = balloon_watch_dir(b, q->dir, "engine", &q->inotify_fd);
	if (r < 0)
		goto fail;
	rescan(b);
	return 0;
fail:
	ovc_close(b);
	return r;
}

const struct balloon_ops balloon_ovc_ops = {
	.name = "ovc",
	.open = ovc_open,
	.close = ovc_close,
	.list = ovc_list,
	.guest = ovc_guest,
	.set_target = ovc_set_target,
	.mark_absent = ovc_mark_absent,
	.process = ovc_process,
	.timeout_msec = ovc_timeout_msec,
	.set_reclaim = ovc_set_reclaim,
};
