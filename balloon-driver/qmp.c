/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP backend: QEMU processes reached directly through their monitor
 * sockets, found in a directory (watched with inotify) and/or listed by
 * path. One connection per QEMU; commands are sent one at a time, tagged
 * with an "id" so that a late reply to a timed-out command is never taken
 * for the answer to the next one. Events (BALLOON_CHANGE) that arrive while
 * waiting for a reply, or through ovc_balloon_process(), become driver
 * events; a closed socket means the guest stopped.
 *
 * Threads: none of its own. Everything runs in the thread that owns the
 * ovc_balloon handle; no locks (the event queue has its own).
 *
 * QEMU 7.2 facts used here (reference.md §2): sizes in bytes; `balloon`
 * returns {} even without a guest driver; guest-stats-polling-interval
 * lives on /machine/peripheral/<id>; a stat the guest did not send is
 * u64 -1 and last-update is 0 until the guest first answers.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <json-c/json.h>

#include "internal.h"
#include "util.h"

/* QEMU answers monitor commands from its main loop; under TCG on a busy
 * two-core host that can take seconds. */
#define QMP_REPLY_TIMEOUT_MSEC 15000

/* A free monitor greets at once; one that another client holds (QEMU
 * serves one at a time) says nothing. Don't wait the full reply timeout. */
#define QMP_GREETING_TIMEOUT_MSEC 3000

/* A socket whose QEMU did not set up (held by another client, or not QMP)
 * is not tried again for this long, so that lists do not stall on it. */
#define SETUP_RETRY_SEC 30

/* How long a new socket in the directory that refuses connections is
 * retried before it counts as left behind by a dead QEMU. */
#define PENDING_SEC 10

struct qmp_guest {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char id[OVC_BALLOON_ID_MAX];
	char name[OVC_BALLOON_NAME_MAX];
	int fd;
	struct qmp_reader rd;
	uint64_t next_cmd_id;
	unsigned timeout_msec; /* per reply: short until the greeting came */
	char balloon_path[160]; /* "" when the guest has no balloon device */
	unsigned caps;
	uint64_t max_bytes;
	uint64_t polling_since_usec; /* CLOCK_MONOTONIC; 0 when polling is off */
	bool seen_update;            /* the guest's driver answered at least once */
	bool absent;                 /* a confirmed target never moved */
	bool dead;                   /* socket closed; removed at the next sweep */
};

struct qmp_retry {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	uint64_t at_usec; /* CLOCK_MONOTONIC */
};

struct qmp_backend {
	struct qmp_guest **guests;
	size_t n, cap;
	struct qmp_retry *retry; /* sockets that failed set-up */
	size_t n_retry;
	int inotify_fd;
	bool rescan;  /* the directory changed */
	bool pending; /* a new socket did not accept yet: retry soon */
};

static struct qmp_backend *be(const ovc_balloon *b)
{
	return b->backend;
}

/* strlcpy: cut to fit, always terminated. */
static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void guest_free(ovc_balloon *b, struct qmp_guest *g)
{
	if (!g)
		return;
	if (g->fd >= 0) {
		balloon_unwatch_fd(b, g->fd);
		close(g->fd);
	}
	qmp_reader_done(&g->rd);
	free(g);
}

/* The guest's socket closed or sent garbage: forget it, tell the caller. */
static int guest_lost(ovc_balloon *b, struct qmp_guest *g, int err, const char *why)
{
	if (!g->dead) {
		g->dead = true;
		balloon_queue_event(b, OVC_BALLOON_EVENT_STOPPED, g->name, OVC_UNKNOWN);
	}
	return balloon_error(b, err, "%s (%s)", why, g->path);
}

static void handle_event(ovc_balloon *b, struct qmp_guest *g, struct json_object *o)
{
	struct json_object *ev, *data, *actual;
	const char *name;

	if (!json_object_object_get_ex(o, "event", &ev))
		return;
	name = json_object_get_string(ev);
	if (strcmp(name, "BALLOON_CHANGE") == 0 && json_object_object_get_ex(o, "data", &data) &&
	    json_object_object_get_ex(data, "actual", &actual)) {
		uint64_t v = balloon_json_u64(actual);

		/* A moving balloon proves the guest driver is there. */
		if (ovc_known(v))
			g->seen_update = true;
		balloon_queue_event(b, OVC_BALLOON_EVENT_CHANGED, g->name, v);
	}
	/* SHUTDOWN/STOP are followed by the socket closing (or not, with
	 * -no-shutdown); the close is what makes a guest "stopped". */
}

/* Read what the socket has; 0 on EAGAIN, -ENOTCONN on EOF. */
static int guest_read(ovc_balloon *b, struct qmp_guest *g)
{
	char buf[8192];

	for (;;) {
		ssize_t n = recv(g->fd, buf, sizeof(buf), MSG_DONTWAIT);
		int r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0)
			return guest_lost(b, g, -ENOTCONN, strerror(errno));
		if (n == 0)
			return guest_lost(b, g, -ENOTCONN, "QEMU closed the monitor socket");
		r = qmp_reader_feed(&g->rd, buf, (size_t)n);
		if (r < 0)
			return guest_lost(b, g, r, "the monitor sent a line too long to be QMP");
		if ((size_t)n < sizeof(buf))
			return 0;
	}
}

static int send_all(int fd, const char *s, size_t len, uint64_t deadline_usec)
{
	while (len) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			uint64_t now = now_usec(CLOCK_MONOTONIC);

			if (now >= deadline_usec)
				return -ETIMEDOUT;
			poll(&p, 1, (int)((deadline_usec - now) / 1000 + 1));
			continue;
		}
		if (n < 0)
			return -ENOTCONN;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* "failed to <what> of '<guest>': <reason>", or only the reason when @what
 * is NULL (the caller wraps it, as ovc_balloon_set_target() does). */
static int exec_error(ovc_balloon *b, int err, const struct qmp_guest *g, const char *what,
		      const char *fmt, ...) _printf_(5, 6);
static int exec_error(ovc_balloon *b, int err, const struct qmp_guest *g, const char *what,
		      const char *fmt, ...)
{
	char reason[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (!what)
		return balloon_error(b, err, "%s", reason);
	return balloon_error(b, err, "failed to %s of '%s': %s", what, g->name, reason);
}

static int qmp_error_errno(const char *class)
{
	if (strcmp(class, "DeviceNotActive") == 0 || strcmp(class, "DeviceNotFound") == 0)
		return -ENODEV;
	if (strcmp(class, "CommandNotFound") == 0)
		return -EOPNOTSUPP;
	return -EIO;
}

/*
 * Run one command; on success *ret (if given) gets a reference to the
 * "return" value. Greeting and events are handled on the way. @what says
 * what we were doing, for the error sentence (NULL: give only the reason).
 */
static int qmp_exec(ovc_balloon *b, struct qmp_guest *g, const char *cmd,
		    struct json_object *args, struct json_object **ret, const char *what)
{
	struct json_object *req = json_object_new_object(), *reply = NULL;
	uint64_t id = ++g->next_cmd_id;
	uint64_t deadline = now_usec(CLOCK_MONOTONIC) + g->timeout_msec * 1000ull;
	const char *text;
	char *line = NULL;
	int r;

	if (g->dead) {
		json_object_put(args);
		json_object_put(req);
		return exec_error(b, -ENOTCONN, g, what, "QEMU closed the monitor socket");
	}
	if (!req) {
		json_object_put(args);
		return -ENOMEM;
	}
	json_object_object_add(req, "execute", json_object_new_string(cmd));
	if (args)
		json_object_object_add(req, "arguments", args);
	json_object_object_add(req, "id", json_object_new_uint64(id));
	text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	if (!text || asprintf(&line, "%s\n", text) < 0) {
		json_object_put(req);
		return -ENOMEM;
	}
	json_object_put(req);

	r = send_all(g->fd, line, strlen(line), deadline);
	free(line);
	if (r == -ETIMEDOUT)
		return exec_error(b, r, g, what, "QEMU did not accept the command in %u ms",
				  g->timeout_msec);
	if (r < 0)
		return guest_lost(b, g, r, "QEMU closed the monitor socket");

	for (;;) {
		struct json_object *o, *rid;
		enum qmp_kind kind;
		struct pollfd p = { .fd = g->fd, .events = POLLIN };
		uint64_t now;

		r = qmp_reader_next(&g->rd, &o, &kind);
		if (r < 0)
			return guest_lost(b, g, r, "the monitor sent a message that is not QMP");
		if (r == 1) {
			if (kind == QMP_EVENT) {
				handle_event(b, g, o);
				json_object_put(o);
				continue;
			}
			/* Not ours (the greeting, or a late reply to a command
			 * that timed out): skip. */
			if (kind == QMP_GREETING || !json_object_object_get_ex(o, "id", &rid) ||
			    balloon_json_u64(rid) != id) {
				json_object_put(o);
				continue;
			}
			reply = o;
			break;
		}
		now = now_usec(CLOCK_MONOTONIC);
		if (now >= deadline)
			return exec_error(b, -ETIMEDOUT, g, what, "QEMU did not answer in %u ms",
					  g->timeout_msec);
		r = poll(&p, 1, (int)((deadline - now) / 1000 + 1));
		if (r < 0 && errno != EINTR)
			return exec_error(b, negative_errno(), g, what, "poll: %s", strerror(errno));
		if (r > 0) {
			r = guest_read(b, g);
			if (r < 0 || g->dead)
				return exec_error(b, r < 0 ? r : -ENOTCONN, g, what,
						  "QEMU closed the monitor socket");
		}
	}

	{
		struct json_object *v, *err, *class, *desc;

		if (json_object_object_get_ex(reply, "return", &v)) {
			if (ret)
				*ret = json_object_get(v);
			json_object_put(reply);
			return 0;
		}
		json_object_object_get_ex(reply, "error", &err);
		json_object_object_get_ex(err, "class", &class);
		json_object_object_get_ex(err, "desc", &desc);
		r = qmp_error_errno(class ? json_object_get_string(class) : "");
		exec_error(b, r, g, what, "%s", desc ? json_object_get_string(desc) : "QEMU returned an error");
		json_object_put(reply);
		return r;
	}
}

static struct json_object *qom_args(const char *path, const char *property)
{
	struct json_object *a = json_object_new_object();

	json_object_object_add(a, "path", json_object_new_string(path));
	json_object_object_add(a, "property", json_object_new_string(property));
	return a;
}

static int qom_get(ovc_balloon *b, struct qmp_guest *g, const char *property,
		   struct json_object **ret, const char *what)
{
	return qmp_exec(b, g, "qom-get", qom_args(g->balloon_path, property), ret, what);
}

static int qom_get_bool(ovc_balloon *b, struct qmp_guest *g, const char *property, bool *ret)
{
	struct json_object *v = NULL;
	int r = qom_get(b, g, property, &v, "read the balloon device");

	if (r < 0)
		return r;
	*ret = json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
	json_object_put(v);
	return 0;
}

/* Find the virtio-balloon device: the configured id, else "balloon0", else
 * the first child<virtio-balloon-*> under /machine/peripheral. */
static int find_balloon(ovc_balloon *b, struct qmp_guest *g)
{
	const char *want = b->opts.qmp_balloon_id ? b->opts.qmp_balloon_id : "balloon0";
	struct json_object *list = NULL, *args = json_object_new_object();
	const char *found = NULL;
	int r;

	json_object_object_add(args, "path", json_object_new_string("/machine/peripheral"));
	r = qmp_exec(b, g, "qom-list", args, &list, "list the devices");
	if (r < 0)
		return r;
	for (size_t i = 0; json_object_is_type(list, json_type_array) &&
			   i < json_object_array_length(list); i++) {
		struct json_object *e = json_object_array_get_idx(list, i), *n, *t;
		const char *name, *type;

		if (!json_object_object_get_ex(e, "name", &n) || !json_object_object_get_ex(e, "type", &t))
			continue;
		name = json_object_get_string(n);
		type = json_object_get_string(t);
		if (!name || !type)
			continue;
		if (strncmp(type, "child<virtio-balloon", 20) != 0)
			continue;
		if (strcmp(name, want) == 0 || (!found && !b->opts.qmp_balloon_id)) {
			snprintf(g->balloon_path, sizeof(g->balloon_path), "/machine/peripheral/%s", name);
			found = name;
			if (strcmp(name, want) == 0)
				break;
		}
	}
	json_object_put(list);
	return 0;
}

static int guest_setup(ovc_balloon *b, struct qmp_guest *g)
{
	struct json_object *v = NULL, *f;
	bool on;
	int r;

	g->timeout_msec = QMP_GREETING_TIMEOUT_MSEC;
	r = qmp_exec(b, g, "qmp_capabilities", NULL, NULL, "negotiate QMP");
	g->timeout_msec = QMP_REPLY_TIMEOUT_MSEC;
	if (r < 0)
		return r;
	r = qmp_exec(b, g, "query-name", NULL, &v, "query the name");
	if (r < 0)
		return r;
	if (json_object_object_get_ex(v, "name", &f) && json_object_get_string_len(f) > 0)
		snprintf(g->name, sizeof(g->name), "%s", json_object_get_string(f));
	json_object_put(v);
	v = NULL;
	r = qmp_exec(b, g, "query-memory-size-summary", NULL, &v, "query the memory size");
	if (r < 0)
		return r;
	g->max_bytes = json_object_object_get_ex(v, "base-memory", &f) ? balloon_json_u64(f) : OVC_UNKNOWN;
	json_object_put(v);
	if (!ovc_known(g->max_bytes) || g->max_bytes == 0)
		return balloon_error(b, -EPROTO, "QEMU guest '%s': no base-memory in query-memory-size-summary",
				     g->name);

	r = find_balloon(b, g);
	if (r < 0)
		return r;
	if (!g->balloon_path[0])
		return 0; /* no balloon device: listed, but nothing to move */
	g->caps |= OVC_BALLOON_CAP_DEVICE;
	if (qom_get_bool(b, g, "deflate-on-oom", &on) == 0 && on)
		g->caps |= OVC_BALLOON_CAP_DEFLATE_ON_OOM;
	if (qom_get_bool(b, g, "free-page-reporting", &on) == 0 && on)
		g->caps |= OVC_BALLOON_CAP_FREE_PAGE_REPORTING;

	v = NULL;
	r = qom_get(b, g, "guest-stats-polling-interval", &v, "read the stats polling interval");
	if (r < 0)
		return r;
	if (json_object_get_int64(v) <= 0 && b->opts.stats_period_sec) {
		struct json_object *a = qom_args(g->balloon_path, "guest-stats-polling-interval");

		json_object_object_add(a, "value", json_object_new_int64(b->opts.stats_period_sec));
		r = qmp_exec(b, g, "qom-set", a, NULL, "turn on stats polling");
		if (r < 0) {
			json_object_put(v);
			return r;
		}
		g->polling_since_usec = now_usec(CLOCK_MONOTONIC);
	} else if (json_object_get_int64(v) > 0) {
		g->polling_since_usec = now_usec(CLOCK_MONOTONIC);
	}
	json_object_put(v);
	if (g->polling_since_usec)
		g->caps |= OVC_BALLOON_CAP_STATS_POLLING;
	return 0;
}

static struct qmp_guest *find_path(struct qmp_backend *q, const char *path)
{
	for (size_t i = 0; i < q->n; i++)
		if (!q->guests[i]->dead && strcmp(q->guests[i]->path, path) == 0)
			return q->guests[i];
	return NULL;
}

static struct qmp_guest *find_name(struct qmp_backend *q, const char *name)
{
	for (size_t i = 0; i < q->n; i++)
		if (!q->guests[i]->dead && strcmp(q->guests[i]->name, name) == 0)
			return q->guests[i];
	return NULL;
}

static struct qmp_retry *find_retry(struct qmp_backend *q, const char *path)
{
	for (size_t i = 0; i < q->n_retry; i++)
		if (strcmp(q->retry[i].path, path) == 0)
			return &q->retry[i];
	return NULL;
}

static bool retry_later(struct qmp_backend *q, const char *path)
{
	struct qmp_retry *r = find_retry(q, path);

	return r && now_usec(CLOCK_MONOTONIC) < r->at_usec;
}

static void remember_failure(struct qmp_backend *q, const char *path)
{
	struct qmp_retry *r = find_retry(q, path);

	if (!r) {
		struct qmp_retry *p = realloc(q->retry, (q->n_retry + 1) * sizeof(*p));

		if (!p)
			return; /* then it is simply tried again next time */
		q->retry = p;
		r = &q->retry[q->n_retry++];
		copy_str(r->path, sizeof(r->path), path);
	}
	r->at_usec = now_usec(CLOCK_MONOTONIC) + SETUP_RETRY_SEC * USEC_PER_SEC;
}

/* Connect to a socket not yet known. A stale socket in the directory (QEMU
 * gone) is skipped quietly: that is the normal state after a crash. */
static int guest_add(ovc_balloon *b, const char *path, bool quiet)
{
	struct qmp_backend *q = be(b);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct qmp_guest *g;
	const char *base, *dot;
	int r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return balloon_error(b, -ENAMETOOLONG, "QMP socket path too long: %s", path);
	if (retry_later(q, path))
		return -EAGAIN;
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 8;
		struct qmp_guest **p = realloc(q->guests, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		q->guests = p;
		q->cap = cap;
	}
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->fd = -1;
	g->timeout_msec = QMP_REPLY_TIMEOUT_MSEC;
	qmp_reader_init(&g->rd);
	snprintf(g->path, sizeof(g->path), "%s", path);
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	copy_str(g->id, sizeof(g->id), base);
	dot = strrchr(base, '.');
	snprintf(g->name, sizeof(g->name), "%.*s", (int)(dot && dot != base ? dot - base : (ptrdiff_t)strlen(base)),
		 base);
	strcpy(sa.sun_path, path);

	g->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (g->fd < 0) {
		r = negative_errno();
		goto fail;
	}
	if (connect(g->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = negative_errno();
		if (quiet)
			log_debug(b->opts.logger, "QMP socket %s: %s", path, strerror(-r));
		else
			balloon_error(b, r, "cannot connect to QMP socket %s: %s", path, strerror(-r));
		goto fail;
	}
	r = guest_setup(b, g);
	if (r < 0) {
		log_debug(b->opts.logger, "QMP socket %s: set-up failed, not retried for %d s: %s", path,
			  SETUP_RETRY_SEC, b->error);
		remember_failure(q, path);
		goto fail;
	}
	r = balloon_watch_fd(b, g->fd);
	if (r < 0)
		goto fail;
	q->guests[q->n++] = g;
	balloon_queue_event(b, OVC_BALLOON_EVENT_STARTED, g->name, OVC_UNKNOWN);
	return 0;
fail:
	if (g->fd >= 0)
		close(g->fd);
	g->fd = -1;
	guest_free(b, g);
	return r;
}

/* Drop dead guests, connect to new sockets. */
static void rescan(ovc_balloon *b)
{
	struct qmp_backend *q = be(b);
	size_t j = 0;

	for (size_t i = 0; i < q->n; i++) {
		if (q->guests[i]->dead)
			guest_free(b, q->guests[i]);
		else
			q->guests[j++] = q->guests[i];
	}
	q->n = j;
	q->pending = false;

	for (const char *const *s = b->opts.qmp_sockets; s && *s; s++)
		if (!find_path(q, *s))
			(void)guest_add(b, *s, false);

	if (b->opts.qmp_dir) {
		DIR *d = opendir(b->opts.qmp_dir);
		struct dirent *de;

		if (!d)
			return;
		while ((de = readdir(d))) {
			char path[PATH_MAX];
			struct stat st;

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", b->opts.qmp_dir, de->d_name);
			if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode) || find_path(q, path))
				continue;
			/* QEMU binds (inotify fires) before it listens; a young
			 * socket that refuses is retried, an old one is stale. */
			if (guest_add(b, path, true) < 0 &&
			    (uint64_t)st.st_mtime + PENDING_SEC > now_usec(CLOCK_REALTIME) / USEC_PER_SEC)
				q->pending = true;
		}
		closedir(d);
	}
	q->rescan = false;
}

static enum ovc_balloon_guest_driver driver_state(const ovc_balloon *b, const struct qmp_guest *g)
{
	if (!(g->caps & OVC_BALLOON_CAP_DEVICE))
		return OVC_BALLOON_DRIVER_ABSENT;
	if (g->seen_update)
		return OVC_BALLOON_DRIVER_LOADED;
	if (g->absent)
		return OVC_BALLOON_DRIVER_ABSENT;
	if (g->polling_since_usec &&
	    now_usec(CLOCK_MONOTONIC) - g->polling_since_usec > balloon_confirm_msec(b) * 1000ull)
		return OVC_BALLOON_DRIVER_ABSENT;
	return OVC_BALLOON_DRIVER_UNKNOWN;
}

static int guest_info(ovc_balloon *b, struct qmp_guest *g, struct ovc_balloon_guest *out)
{
	struct json_object *v = NULL, *a;
	uint64_t actual;
	int r;

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", g->name);
	snprintf(out->id, sizeof(out->id), "%s", g->id);
	out->caps = g->caps;
	ovc_guest_stats_reset(&out->stats);
	out->stats.max_bytes = g->max_bytes;
	out->stats.actual_bytes = g->max_bytes;

	if (g->caps & OVC_BALLOON_CAP_DEVICE) {
		r = qmp_exec(b, g, "query-balloon", NULL, &v, NULL);
		if (r < 0)
			return r;
		actual = json_object_object_get_ex(v, "actual", &a) ? balloon_json_u64(a) : OVC_UNKNOWN;
		json_object_put(v);
		v = NULL;
		if (!ovc_known(actual))
			return balloon_error(b, -EPROTO, "query-balloon without 'actual'");
		if (actual != g->max_bytes)
			g->seen_update = true; /* only the guest driver moves it */
		if (g->caps & OVC_BALLOON_CAP_STATS_POLLING) {
			r = qom_get(b, g, "guest-stats", &v, NULL);
			if (r < 0)
				return r;
			r = balloon_stats_from_qmp_obj(v, actual, g->max_bytes, now_usec(CLOCK_REALTIME) / USEC_PER_SEC,
						       balloon_stale_sec(b), &out->stats);
			json_object_put(v);
			if (r < 0)
				return balloon_error(b, r, "guest-stats is not an object");
			if (ovc_known(out->stats.guest_update_sec) && out->stats.guest_update_sec > 0)
				g->seen_update = true;
		} else {
			out->stats.actual_bytes = actual;
		}
	}
	out->stats.collected_usec = now_usec(CLOCK_MONOTONIC);
	out->driver = driver_state(b, g);
	balloon_queue_event(b, OVC_BALLOON_EVENT_STATS, g->name, OVC_UNKNOWN);
	return 0;
}

static int qmp_list(ovc_balloon *b, struct ovc_balloon_guest **ret, size_t *ret_n)
{
	struct qmp_backend *q = be(b);
	struct ovc_balloon_guest *out;
	size_t n = 0;

	rescan(b);
	out = calloc(q->n ? q->n : 1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < q->n; i++) {
		/* A guest that goes away mid-list is left out (and its
		 * STOPPED event queued); the others are still reported. */
		if (q->guests[i]->dead || guest_info(b, q->guests[i], &out[n]) < 0)
			continue;
		n++;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

static int lookup(ovc_balloon *b, const char *name, struct qmp_guest **ret)
{
	struct qmp_backend *q = be(b);
	struct qmp_guest *g = find_name(q, name);

	if (!g) {
		rescan(b);
		g = find_name(q, name);
	}
	if (!g)
		return balloon_error(b, -ENOENT, "no QEMU guest by that name (no such QMP socket)");
	*ret = g;
	return 0;
}

static int qmp_guest(ovc_balloon *b, const char *name, struct ovc_balloon_guest *ret)
{
	struct qmp_guest *g = NULL;
	int r = lookup(b, name, &g);

	return r < 0 ? r : guest_info(b, g, ret);
}

static int qmp_set_target(ovc_balloon *b, const char *name, uint64_t target_bytes)
{
	struct qmp_guest *g = NULL;
	struct json_object *a;
	int r = lookup(b, name, &g);

	if (r < 0)
		return r;
	a = json_object_new_object();
	json_object_object_add(a, "value", json_object_new_uint64(target_bytes));
	/* Bytes, no rounding: QEMU rounds to its page size itself. */
	return qmp_exec(b, g, "balloon", a, NULL, NULL);
}

static void qmp_mark_absent(ovc_balloon *b, const char *name)
{
	struct qmp_guest *g = find_name(be(b), name);

	if (g)
		g->absent = true;
}

static int qmp_process(ovc_balloon *b)
{
	struct qmp_backend *q = be(b);

	if (balloon_drain_inotify(q->inotify_fd))
		q->rescan = true;
	for (size_t i = 0; i < q->n; i++) {
		struct qmp_guest *g = q->guests[i];
		struct json_object *o;
		enum qmp_kind kind;
		int r;

		if (g->dead || guest_read(b, g) < 0)
			continue;
		while ((r = qmp_reader_next(&g->rd, &o, &kind)) != 0) {
			if (r < 0) {
				guest_lost(b, g, r, "the monitor sent a message that is not QMP");
				break;
			}
			if (kind == QMP_EVENT)
				handle_event(b, g, o);
			json_object_put(o); /* late replies: nobody waits */
		}
	}
	if (q->rescan || q->pending)
		rescan(b);
	else {
		/* Sweep the dead ones so their fds leave the epoll set. */
		bool any = false;

		for (size_t i = 0; i < q->n; i++)
			any |= q->guests[i]->dead;
		if (any)
			rescan(b);
	}
	return 0;
}

static int qmp_timeout_msec(const ovc_balloon *b)
{
	/* Listed sockets that are not connected are retried once a second. */
	struct qmp_backend *q = be(b);

	if (q->pending)
		return 250;
	for (const char *const *s = b->opts.qmp_sockets; s && *s; s++)
		if (!find_path(q, *s))
			return 1000;
	return -1;
}

static void qmp_close(ovc_balloon *b)
{
	struct qmp_backend *q = be(b);

	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++)
		guest_free(b, q->guests[i]);
	free(q->guests);
	free(q->retry);
	if (q->inotify_fd >= 0)
		close(q->inotify_fd);
	free(q);
	b->backend = NULL;
}

static int qmp_open(ovc_balloon *b)
{
	struct qmp_backend *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->inotify_fd = -1;
	b->backend = q;
	if (b->opts.qmp_dir) {
		r = balloon_watch_dir(b, b->opts.qmp_dir, "QMP socket", &q->inotify_fd);
		if (r < 0)
			goto fail;
	}
	rescan(b);
	return 0;
fail:
	qmp_close(b);
	return r;
}

const struct balloon_ops balloon_qmp_ops = {
	.name = "qmp",
	.open = qmp_open,
	.close = qmp_close,
	.list = qmp_list,
	.guest = qmp_guest,
	.set_target = qmp_set_target,
	.mark_absent = qmp_mark_absent,
	.process = qmp_process,
	.timeout_msec = qmp_timeout_msec,
};
