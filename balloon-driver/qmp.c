/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP backend: QEMU processes reached directly through their monitor
 * sockets, found in a directory (watched with inotify) and/or listed by
 * path. One connection per QEMU, and each is a state machine that never
 * waits: a command goes out only when none is in flight, with one deadline
 * for its whole answer; process() reads what has come and runs the
 * deadlines; refresh() asks for fresh figures. Commands are tagged with an
 * "id" so that a late reply to a timed-out command is never taken for the
 * answer to the next one. Events (BALLOON_CHANGE) become driver events; a
 * closed socket means the guest stopped.
 *
 * A guest is set up once (capabilities, name, memory size, balloon device,
 * polling), then refreshed (query-balloon, qom-get guest-stats) and sent
 * targets (balloon); its figures go to the handle's cache, and a target's
 * answer to balloon_request_done(). A QEMU that stops answering trips its
 * circuit breaker (driver.c): its figures go stale and it is only probed
 * once per back-off, instead of costing a deadline per request. A socket
 * whose set-up fails is remembered by device and inode and not tried again
 * before its back-off, however often the directory changes.
 *
 * Identity: the socket is opened without following symlinks and the
 * listener must own it (balloon_connect); the pid behind it is the
 * kernel's word. query-name is believed only when no other socket holds
 * the name or is named after it (names.c); a monitor refused so is logged
 * as a warning once and never steers anyone.
 *
 * Threads: none of its own. Everything runs in the thread that owns the
 * ovcd_balloon handle; no locks (the event queue has its own).
 *
 * QEMU 7.2 facts used here: sizes in bytes; `balloon` returns {} even
 * without a guest driver; guest-stats-polling-interval lives on
 * /machine/peripheral/<id>; a stat the guest did not send is u64 -1 and
 * last-update is 0 until the guest first answers.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <json-c/json.h>

#include "internal.h"
#include "names.h"
#include "common/util.h"

/* QEMU answers monitor commands from its main loop; under TCG on a busy
 * two-core host that can take seconds. Nothing waits for it meanwhile. */
#define QMP_REPLY_TIMEOUT_MSEC 15000

/* A free monitor greets at once; one that another client holds (QEMU
 * serves one at a time) says nothing. */
#define QMP_GREETING_TIMEOUT_MSEC 3000

/* A socket whose set-up failed (held by another client, not QMP, full
 * listen queue, an impostor) is not tried again for this long, doubling. */
#define SETUP_RETRY_MIN_MSEC 5000
#define SETUP_RETRY_MAX_MSEC 300000

/* How long a new socket in the directory that refuses connections is
 * retried (every 250 ms) before it counts as left behind by a dead QEMU. */
#define PENDING_SEC 10

/* Figures are asked for at most this often per guest, whatever calls. */
#define REFRESH_MIN_MSEC 250

/* What one process() reads from one monitor at most: a QEMU flooding
 * events cannot keep the caller's loop to itself. */
#define READ_BUDGET (256 * 1024)

enum cmd {
	C_NONE,
	C_CAPS, /* set-up, in this order */
	C_NAME,
	C_MEM,
	C_LIST,
	C_DOO,
	C_FPR,
	C_POLL_GET,
	C_POLL_SET,
	C_QUERY, /* refresh */
	C_STATS,
	C_TARGET,
};

enum gstate {
	G_GREETING, /* connected, waiting for QEMU's greeting */
	G_SETUP,    /* the set-up commands */
	G_READY,    /* listed once its first figures came */
};

struct qmp_guest {
	char path[PATH_MAX];           /* for messages, control bytes escaped */
	char file[NAME_MAX + 1];       /* under the directory; "" for a listed path */
	char id[OVC_BALLOON_ID_MAX];   /* the socket file's name */
	char stem[OVC_BALLOON_NAME_MAX];
	char name[OVC_BALLOON_NAME_MAX]; /* "" until admitted */
	int fd;
	dev_t dev;
	ino_t ino;
	pid_t pid;
	bool listed_path; /* from qmp_sockets */
	enum gstate state;
	struct qmp_reader rd;
	uint64_t next_cmd_id;
	enum cmd inflight;
	uint64_t inflight_id;
	uint64_t deadline_usec; /* CLOCK_MONOTONIC, of what is awaited */
	struct balloon_breaker brk;

	char balloon_path[160]; /* "" when the guest has no balloon device */
	unsigned caps;
	uint64_t max_bytes;
	int64_t polling_sec; /* what QEMU said */
	uint64_t polling_since_usec; /* CLOCK_MONOTONIC; 0 when polling is off */
	bool seen_update;            /* the guest's driver answered at least once */
	bool absent;                 /* a confirmed target never moved */
	bool listed;                 /* in the cache; STARTED queued */
	bool dead;                   /* removed at the next sweep */

	bool want_refresh;
	uint64_t last_refresh_usec;
	uint64_t query_actual; /* C_QUERY's answer, for C_STATS */
	bool want_target;
	uint64_t target_bytes;   /* the latest asked; sent when nothing is in flight */
	uint64_t sent_target;    /* what C_TARGET in flight carries */
};

struct qmp_backend {
	struct qmp_guest **guests;
	size_t n, cap;
	int dir_fd; /* O_PATH|O_DIRECTORY of qmp_dir, or -1 */
	int inotify_fd;
	bool rescan;  /* the directory changed */
	bool pending; /* a new socket did not accept yet: retry soon */
	uint64_t next_list_retry_usec;
};

static struct qmp_backend *be(const ovcd_balloon *b)
{
	return b->backend;
}

static void guest_free(ovcd_balloon *b, struct qmp_guest *g)
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

static void fail_request(ovcd_balloon *b, struct qmp_guest *g, enum cmd c, int err, const char *why)
{
	if (c == C_TARGET)
		balloon_request_done(b, g->name, OVC_BALLOON_REQ_TARGET, g->sent_target, err, why);
}

/* The socket closed or sent garbage: forget the guest, tell the caller. A
 * guest never admitted is remembered as a failed socket instead. */
static void guest_lost(ovcd_balloon *b, struct qmp_guest *g, const char *why)
{
	if (g->dead)
		return;
	g->dead = true;
	log_debug(b->opts.logger, "QMP socket %s: %s", g->path, why);
	fail_request(b, g, g->inflight, -ENOTCONN, why);
	if (g->want_target && g->listed)
		balloon_request_done(b, g->name, OVC_BALLOON_REQ_TARGET, g->target_bytes, -ENOTCONN, why);
	g->inflight = C_NONE;
	g->want_target = false;
	if (g->listed) {
		balloon_cache_drop(b, g->name);
		balloon_queue_event(b, OVC_BALLOON_EVENT_STOPPED, g->name, OVC_UNKNOWN);
	} else {
		balloon_fail_note(b, g->dev, g->ino, SETUP_RETRY_MIN_MSEC, SETUP_RETRY_MAX_MSEC);
	}
	if (g->fd >= 0) {
		balloon_unwatch_fd(b, g->fd);
		close(g->fd);
		g->fd = -1;
	}
}

/* Set-up failed: the socket is left alone for its back-off. */
static void setup_failed(ovcd_balloon *b, struct qmp_guest *g, const char *fmt, ...) _printf_(3, 4);
static void setup_failed(ovcd_balloon *b, struct qmp_guest *g, const char *fmt, ...)
{
	char why[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	(void)balloon_error(b, -EPROTO, "QMP socket %s: set-up failed, not retried for a while: %s", g->path,
			    why);
	guest_lost(b, g, why);
}

static void handle_event(ovcd_balloon *b, struct qmp_guest *g, struct json_object *o)
{
	struct json_object *ev, *data, *actual;
	const char *name;

	if (!json_object_object_get_ex(o, "event", &ev) || !(name = json_object_get_string(ev)))
		return;
	if (strcmp(name, "BALLOON_CHANGE") == 0 && json_object_object_get_ex(o, "data", &data) &&
	    json_object_object_get_ex(data, "actual", &actual)) {
		uint64_t v = balloon_json_u64(actual);
		struct ovcd_balloon_guest *c;

		if (!g->listed || !ovcd_known(v) || v > g->max_bytes)
			return;
		/* A moving balloon proves the guest driver is there. */
		g->seen_update = true;
		c = balloon_cache_get(b, g->name);
		if (c) {
			c->stats.actual_bytes = v;
			c->driver = OVC_BALLOON_DRIVER_LOADED;
		}
		balloon_queue_event(b, OVC_BALLOON_EVENT_CHANGED, g->name, v);
	}
	/* SHUTDOWN/STOP are followed by the socket closing (or not, with
	 * -no-shutdown); the close is what makes a guest "stopped". */
}

static int qmp_error_errno(const char *class)
{
	if (strcmp(class, "DeviceNotActive") == 0 || strcmp(class, "DeviceNotFound") == 0)
		return -ENODEV;
	if (strcmp(class, "CommandNotFound") == 0)
		return -EOPNOTSUPP;
	return -EIO;
}

static struct json_object *qom_args(const char *path, const char *property)
{
	struct json_object *a = json_object_new_object();

	json_object_object_add(a, "path", json_object_new_string(path));
	json_object_object_add(a, "property", json_object_new_string(property));
	return a;
}

/* Send one command; its answer comes to on_reply(). A command QEMU does not
 * take at once (its socket buffer full: it does not read) fails now. */
static int send_cmd(ovcd_balloon *b, struct qmp_guest *g, enum cmd c, const char *cmd, struct json_object *args)
{
	struct json_object *req = json_object_new_object();
	uint64_t id = ++g->next_cmd_id;
	const char *text;
	char *line = NULL;
	ssize_t n;
	size_t len;

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
	len = strlen(line);
	n = send(g->fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(line);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return -ETIMEDOUT;
	if (n < 0 || (size_t)n != len)
		return -ENOTCONN;
	g->inflight = c;
	g->inflight_id = id;
	g->deadline_usec = now_usec(CLOCK_MONOTONIC) + QMP_REPLY_TIMEOUT_MSEC * 1000ull;
	return 0;
}

static int send_setup(ovcd_balloon *b, struct qmp_guest *g, enum cmd c)
{
	struct json_object *a;

	switch (c) {
	case C_CAPS:
		return send_cmd(b, g, c, "qmp_capabilities", NULL);
	case C_NAME:
		return send_cmd(b, g, c, "query-name", NULL);
	case C_MEM:
		return send_cmd(b, g, c, "query-memory-size-summary", NULL);
	case C_LIST:
		a = json_object_new_object();
		json_object_object_add(a, "path", json_object_new_string("/machine/peripheral"));
		return send_cmd(b, g, c, "qom-list", a);
	case C_DOO:
		return send_cmd(b, g, c, "qom-get", qom_args(g->balloon_path, "deflate-on-oom"));
	case C_FPR:
		return send_cmd(b, g, c, "qom-get", qom_args(g->balloon_path, "free-page-reporting"));
	case C_POLL_GET:
		return send_cmd(b, g, c, "qom-get", qom_args(g->balloon_path, "guest-stats-polling-interval"));
	case C_POLL_SET:
		a = qom_args(g->balloon_path, "guest-stats-polling-interval");
		json_object_object_add(a, "value", json_object_new_int64(b->opts.stats_period_sec));
		return send_cmd(b, g, c, "qom-set", a);
	default:
		return -EINVAL;
	}
}

/* Which QMP sockets may take which names: the admitted ones keep theirs,
 * @g asks for @claim. */
static bool admit_name(ovcd_balloon *b, struct qmp_guest *g, const char *claim)
{
	struct qmp_backend *q = be(b);
	struct balloon_name_peer *v = calloc(q->n + 1, sizeof(*v));
	size_t n = 0, self;
	bool ok;

	if (!v)
		return false;
	for (size_t i = 0; i < q->n; i++) {
		struct qmp_guest *o = q->guests[i];

		if (o == g || o->dead)
			continue;
		v[n++] = (struct balloon_name_peer){ .stem = o->stem, .holds = o->name[0] != '\0',
						     .name = o->name[0] ? o->name : NULL };
	}
	self = n;
	v[n++] = (struct balloon_name_peer){ .stem = g->stem, .claim = claim };
	balloon_names_assign(v, n);
	ok = v[self].name != NULL;
	if (ok) {
		snprintf(g->name, sizeof(g->name), "%s", v[self].name);
	} else {
		char c[OVC_BALLOON_NAME_MAX + 64];

		balloon_escape(c, sizeof(c), claim && claim[0] ? claim : g->stem);
		/* Once per socket file: its back-off keeps it from coming back
		 * on every rescan. */
		log_warning(b->opts.logger, "QMP socket %s (pid %d) refused as guest '%s': %s", g->path,
			    (int)g->pid, c, v[self].why);
	}
	free(v);
	return ok;
}

/* Find the virtio-balloon device: the configured id, else "balloon0", else
 * the first child<virtio-balloon-*> under /machine/peripheral. */
static void find_balloon(ovcd_balloon *b, struct qmp_guest *g, struct json_object *list)
{
	const char *want = b->opts.qmp_balloon_id ? b->opts.qmp_balloon_id : "balloon0";
	bool found = false;

	for (size_t i = 0; json_object_is_type(list, json_type_array) && i < json_object_array_length(list); i++) {
		struct json_object *e = json_object_array_get_idx(list, i), *n, *t;
		const char *name, *type;

		if (!json_object_object_get_ex(e, "name", &n) || !json_object_object_get_ex(e, "type", &t))
			continue;
		name = json_object_get_string(n);
		type = json_object_get_string(t);
		if (!name || !type || strncmp(type, "child<virtio-balloon", 20) != 0)
			continue;
		if (strcmp(name, want) == 0 || (!found && !b->opts.qmp_balloon_id)) {
			snprintf(g->balloon_path, sizeof(g->balloon_path), "/machine/peripheral/%s", name);
			found = true;
			if (strcmp(name, want) == 0)
				break;
		}
	}
}

static enum ovcd_balloon_guest_driver driver_state(const ovcd_balloon *b, const struct qmp_guest *g)
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

/* A refresh ended: the figures go to the cache (the first time, the guest
 * is announced). @gs: guest-stats, or NULL without polling. */
static void publish(ovcd_balloon *b, struct qmp_guest *g, uint64_t actual, struct json_object *gs)
{
	struct ovcd_balloon_guest out;

	memset(&out, 0, sizeof(out));
	snprintf(out.name, sizeof(out.name), "%s", g->name);
	snprintf(out.id, sizeof(out.id), "%s", g->id);
	out.pid = g->pid;
	out.caps = g->caps;
	ovcd_guest_stats_reset(&out.stats);
	if (!gs || balloon_stats_from_qmp_obj(gs, actual, g->max_bytes, now_usec(CLOCK_REALTIME) / USEC_PER_SEC,
					      balloon_stale_sec(b), &out.stats) < 0) {
		ovcd_guest_stats_reset(&out.stats);
		out.stats.stale = gs != NULL;
	}
	out.stats.max_bytes = g->max_bytes;
	out.stats.actual_bytes = actual;
	if (ovcd_known(out.stats.guest_update_sec) && out.stats.guest_update_sec > 0)
		g->seen_update = true;
	out.stats.collected_usec = now_usec(CLOCK_MONOTONIC);
	out.driver = driver_state(b, g);
	if (balloon_cache_put(b, &out) < 0)
		return;
	if (!g->listed) {
		g->listed = true;
		balloon_queue_event(b, OVC_BALLOON_EVENT_STARTED, g->name, OVC_UNKNOWN);
	}
}

/* The answer to what was in flight: @v the "return" value, or @err with
 * @why from QEMU's error. Decides what comes next. */
static void on_reply(ovcd_balloon *b, struct qmp_guest *g, enum cmd c, struct json_object *v, int err,
		     const char *why)
{
	struct json_object *f;

	if (c >= C_CAPS && c <= C_POLL_SET && err < 0 && c != C_DOO && c != C_FPR) {
		setup_failed(b, g, "%s", why);
		return;
	}
	switch (c) {
	case C_CAPS:
		(void)send_setup(b, g, C_NAME);
		return;
	case C_NAME: {
		const char *claim = json_object_object_get_ex(v, "name", &f) ? json_object_get_string(f) : NULL;

		if (!admit_name(b, g, claim)) {
			guest_lost(b, g, "refused: its name is not its own");
			return;
		}
		(void)send_setup(b, g, C_MEM);
		return;
	}
	case C_MEM:
		g->max_bytes = json_object_object_get_ex(v, "base-memory", &f) ? balloon_json_u64(f) : OVC_UNKNOWN;
		if (!ovcd_known(g->max_bytes) || g->max_bytes == 0 || g->max_bytes > OVC_GUEST_BYTES_MAX) {
			setup_failed(b, g, "no plausible base-memory in query-memory-size-summary");
			return;
		}
		(void)send_setup(b, g, C_LIST);
		return;
	case C_LIST:
		find_balloon(b, g, v);
		if (!g->balloon_path[0])
			break; /* no balloon device: listed, nothing to move */
		g->caps |= OVC_BALLOON_CAP_DEVICE;
		(void)send_setup(b, g, C_DOO);
		return;
	case C_DOO:
		if (err == 0 && json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v))
			g->caps |= OVC_BALLOON_CAP_DEFLATE_ON_OOM;
		(void)send_setup(b, g, C_FPR);
		return;
	case C_FPR:
		if (err == 0 && json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v))
			g->caps |= OVC_BALLOON_CAP_FREE_PAGE_REPORTING;
		(void)send_setup(b, g, C_POLL_GET);
		return;
	case C_POLL_GET:
		g->polling_sec = json_object_get_int64(v);
		if (g->polling_sec <= 0 && b->opts.stats_period_sec) {
			(void)send_setup(b, g, C_POLL_SET);
			return;
		}
		if (g->polling_sec > 0) {
			g->polling_since_usec = now_usec(CLOCK_MONOTONIC);
			g->caps |= OVC_BALLOON_CAP_STATS_POLLING;
		}
		break;
	case C_POLL_SET:
		g->polling_since_usec = now_usec(CLOCK_MONOTONIC);
		g->caps |= OVC_BALLOON_CAP_STATS_POLLING;
		break;
	case C_QUERY:
		if (err < 0)
			return;
		g->query_actual = json_object_object_get_ex(v, "actual", &f) ? balloon_json_u64(f) : OVC_UNKNOWN;
		if (!ovcd_known(g->query_actual) || g->query_actual > g->max_bytes) {
			balloon_breaker_fail(&g->brk, now_usec(CLOCK_MONOTONIC));
			return;
		}
		balloon_breaker_ok(&g->brk);
		if (g->query_actual != g->max_bytes)
			g->seen_update = true; /* only the guest driver moves it */
		if (g->caps & OVC_BALLOON_CAP_STATS_POLLING) {
			if (send_cmd(b, g, C_STATS, "qom-get", qom_args(g->balloon_path, "guest-stats")) == 0)
				return;
		}
		publish(b, g, g->query_actual, NULL);
		return;
	case C_STATS:
		publish(b, g, g->query_actual, err < 0 ? NULL : v);
		return;
	case C_TARGET:
		if (err < 0)
			balloon_breaker_fail(&g->brk, now_usec(CLOCK_MONOTONIC));
		else
			balloon_breaker_ok(&g->brk);
		balloon_request_done(b, g->name, OVC_BALLOON_REQ_TARGET, g->sent_target, err, why);
		return;
	default:
		return;
	}
	/* Set-up done: ask for the first figures at once. */
	g->state = G_READY;
	g->want_refresh = true;
	balloon_fail_clear(b, g->dev, g->ino);
}

/* One message from the monitor. */
static void on_message(ovcd_balloon *b, struct qmp_guest *g, struct json_object *o, enum qmp_kind kind)
{
	struct json_object *rid, *v, *err, *class, *desc;
	enum cmd c;

	if (kind == QMP_EVENT) {
		handle_event(b, g, o);
		return;
	}
	if (kind == QMP_GREETING) {
		if (g->state == G_GREETING) {
			g->state = G_SETUP;
			if (send_setup(b, g, C_CAPS) < 0)
				setup_failed(b, g, "QEMU does not read its monitor socket");
		}
		return;
	}
	/* Not ours (a late reply to a command that timed out): skip. */
	if (g->inflight == C_NONE || !json_object_object_get_ex(o, "id", &rid) ||
	    balloon_json_u64(rid) != g->inflight_id)
		return;
	c = g->inflight;
	g->inflight = C_NONE;
	if (json_object_object_get_ex(o, "return", &v)) {
		on_reply(b, g, c, v, 0, NULL);
		return;
	}
	json_object_object_get_ex(o, "error", &err);
	json_object_object_get_ex(err, "class", &class);
	json_object_object_get_ex(err, "desc", &desc);
	on_reply(b, g, c, NULL, qmp_error_errno(class && json_object_get_string(class) ? json_object_get_string(class) : ""),
		 desc && json_object_get_string(desc) ? json_object_get_string(desc) : "QEMU returned an error");
}

/* Read what the socket has, within the budget, and handle each message. */
static void guest_input(ovcd_balloon *b, struct qmp_guest *g)
{
	char buf[8192];
	size_t total = 0;

	while (!g->dead && total < READ_BUDGET) {
		ssize_t n = recv(g->fd, buf, sizeof(buf), MSG_DONTWAIT);
		struct json_object *o;
		enum qmp_kind kind;
		int r;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			guest_lost(b, g, strerror(errno));
			return;
		}
		if (n == 0) {
			guest_lost(b, g, "QEMU closed the monitor socket");
			return;
		}
		total += (size_t)n;
		if (qmp_reader_feed(&g->rd, buf, (size_t)n) < 0) {
			guest_lost(b, g, "the monitor sent a line too long to be QMP");
			return;
		}
		while (!g->dead && (r = qmp_reader_next(&g->rd, &o, &kind)) != 0) {
			if (r < 0) {
				guest_lost(b, g, "the monitor sent a message that is not QMP");
				return;
			}
			on_message(b, g, o, kind);
			json_object_put(o);
		}
	}
}

/* Deadlines, and the next command when none is in flight. */
static void guest_step(ovcd_balloon *b, struct qmp_guest *g, uint64_t now)
{
	int r;

	if (g->dead)
		return;
	if (g->state == G_GREETING) {
		if (now >= g->deadline_usec)
			setup_failed(b, g, "no greeting in %d ms (another client holds the monitor?)",
				     QMP_GREETING_TIMEOUT_MSEC);
		return;
	}
	if (g->inflight != C_NONE) {
		enum cmd c = g->inflight;

		if (now < g->deadline_usec)
			return;
		g->inflight = C_NONE;
		if (g->state == G_SETUP) {
			setup_failed(b, g, "QEMU did not answer in %d ms", QMP_REPLY_TIMEOUT_MSEC);
			return;
		}
		balloon_breaker_fail(&g->brk, now);
		if (g->brk.open_until_usec > now && g->brk.fails == BALLOON_BREAKER_FAILS && g->listed)
			log_warning(b->opts.logger,
				    "QMP guest '%s' (%s) did not answer %d requests in a row; asking again in %u ms",
				    g->name, g->path, BALLOON_BREAKER_FAILS, g->brk.backoff_msec);
		if (c == C_TARGET) {
			char why[64];

			snprintf(why, sizeof(why), "QEMU did not answer in %d ms", QMP_REPLY_TIMEOUT_MSEC);
			balloon_request_done(b, g->name, OVC_BALLOON_REQ_TARGET, g->sent_target, -ETIMEDOUT, why);
		}
	}
	if (g->state != G_READY || balloon_breaker_open(&g->brk, now))
		return;
	if (g->want_target) {
		struct json_object *a = json_object_new_object();

		g->want_target = false;
		g->sent_target = g->target_bytes;
		/* Bytes, no rounding: QEMU rounds to its page size itself. */
		json_object_object_add(a, "value", json_object_new_uint64(g->target_bytes));
		r = send_cmd(b, g, C_TARGET, "balloon", a);
		if (r < 0) {
			balloon_breaker_fail(&g->brk, now);
			balloon_request_done(b, g->name, OVC_BALLOON_REQ_TARGET, g->sent_target, r,
					     "QEMU does not read its monitor socket");
		}
		return;
	}
	if (g->want_refresh && now - g->last_refresh_usec >= REFRESH_MIN_MSEC * 1000ull) {
		g->want_refresh = false;
		g->last_refresh_usec = now;
		if (!(g->caps & OVC_BALLOON_CAP_DEVICE)) {
			publish(b, g, g->max_bytes, NULL);
			return;
		}
		if (send_cmd(b, g, C_QUERY, "query-balloon", NULL) < 0)
			balloon_breaker_fail(&g->brk, now);
	}
}

static struct qmp_guest *find_socket(struct qmp_backend *q, dev_t dev, ino_t ino, const char *path)
{
	for (size_t i = 0; i < q->n; i++) {
		struct qmp_guest *g = q->guests[i];

		if (g->dead)
			continue;
		if ((g->dev == dev && g->ino == ino) || (path && strcmp(g->path, path) == 0))
			return g;
	}
	return NULL;
}

static struct qmp_guest *find_name(struct qmp_backend *q, const char *name)
{
	for (size_t i = 0; i < q->n; i++)
		if (!q->guests[i]->dead && q->guests[i]->listed && strcmp(q->guests[i]->name, name) == 0)
			return q->guests[i];
	return NULL;
}

/* Connect to a socket not known yet: @file under the directory, or an
 * absolute @path (qmp_sockets). 0 when connected (set-up goes on in
 * process()), -errno else; a young socket nobody accepts on yet sets
 * *young. */
static int guest_add(ovcd_balloon *b, const char *file, const char *path, bool *young)
{
	struct qmp_backend *q = be(b);
	struct balloon_peer p;
	struct qmp_guest *g;
	struct stat st;
	int r;

	/* Known or failed before (same inode): nothing to do now. */
	if (file ? fstatat(q->dir_fd, file, &st, AT_SYMLINK_NOFOLLOW) < 0 : lstat(path, &st) < 0)
		return -ENOENT;
	if (find_socket(q, st.st_dev, st.st_ino, path))
		return 0;
	if (balloon_fail_blocked(b, st.st_dev, st.st_ino))
		return -EAGAIN;
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 8;
		struct qmp_guest **v = realloc(q->guests, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		q->guests = v;
		q->cap = cap;
	}
	r = balloon_connect(file ? q->dir_fd : AT_FDCWD, file ? file : path, &p);
	if (r < 0) {
		if ((r == -ECONNREFUSED || r == -ENOENT) &&
		    (uint64_t)st.st_mtime + PENDING_SEC > now_usec(CLOCK_REALTIME) / USEC_PER_SEC) {
			*young = true; /* QEMU binds (inotify fires) before it listens */
			return r;
		}
		if (p.ino) {
			bool first = balloon_fail_note(b, p.dev, p.ino, SETUP_RETRY_MIN_MSEC, SETUP_RETRY_MAX_MSEC);

			char shown[PATH_MAX + 8];

			/* A file name is anyone's who may write the directory. */
			balloon_escape(shown, sizeof(shown), file ? file : path);
			if (first && (r == -ELOOP || r == -EPERM || r == -ENOTSOCK))
				log_warning(b->opts.logger, "QMP socket %s%s%s refused: %s", file ? b->opts.qmp_dir : "",
					    file ? "/" : "", shown,
					    r == -ELOOP ? "a symlink is never followed"
					    : r == -EPERM ? "its listener does not own it"
							  : "not a socket");
			else
				log_debug(b->opts.logger, "QMP socket %s: %s", shown, strerror(-r));
		}
		return r;
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		close(p.fd);
		return -ENOMEM;
	}
	g->fd = p.fd;
	g->dev = p.dev;
	g->ino = p.ino;
	g->pid = p.pid;
	qmp_reader_init(&g->rd);
	if (file) {
		char shown[NAME_MAX * 4 + 1];

		/* For messages and the stem: a file name is anyone's who
		 * may write the directory, control bytes included. */
		balloon_escape(shown, sizeof(shown), file);
		snprintf(g->path, sizeof(g->path), "%s/%s", b->opts.qmp_dir, shown);
		snprintf(g->file, sizeof(g->file), "%s", file);
	} else {
		snprintf(g->path, sizeof(g->path), "%s", path);
		g->listed_path = true;
	}
	{
		const char *base = strrchr(g->path, '/');

		base = base ? base + 1 : g->path;
		snprintf(g->id, sizeof(g->id), "%.*s", (int)sizeof(g->id) - 1, base);
		balloon_socket_stem(base, g->stem, sizeof(g->stem));
	}
	g->state = G_GREETING;
	g->deadline_usec = now_usec(CLOCK_MONOTONIC) + QMP_GREETING_TIMEOUT_MSEC * 1000ull;
	r = balloon_watch_fd(b, g->fd);
	if (r < 0) {
		guest_free(b, g);
		return r;
	}
	q->guests[q->n++] = g;
	return 0;
}

/* Drop dead guests, connect to new sockets. Never waits for a peer. */
static void rescan(ovcd_balloon *b)
{
	struct qmp_backend *q = be(b);
	size_t j = 0;
	bool young = false;

	for (size_t i = 0; i < q->n; i++) {
		if (q->guests[i]->dead)
			guest_free(b, q->guests[i]);
		else
			q->guests[j++] = q->guests[i];
	}
	q->n = j;

	balloon_fail_sweep_begin(b);
	for (const char *const *s = b->opts.qmp_sockets; s && *s; s++)
		if (strlen(*s) < sizeof(((struct sockaddr_un *)0)->sun_path))
			(void)guest_add(b, NULL, *s, &young);

	if (q->dir_fd >= 0) {
		int fd = openat(q->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		struct dirent *de;

		if (!d) {
			if (fd >= 0)
				close(fd);
			balloon_fail_sweep_end(b);
			return;
		}
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.' || (de->d_type != DT_SOCK && de->d_type != DT_LNK &&
						     de->d_type != DT_UNKNOWN))
				continue;
			(void)guest_add(b, de->d_name, NULL, &young);
		}
		closedir(d);
	}
	balloon_fail_sweep_end(b);
	q->pending = young;
	q->rescan = false;
}

static int qmp_refresh(ovcd_balloon *b)
{
	struct qmp_backend *q = be(b);
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	if (q->rescan || q->pending || now >= q->next_list_retry_usec) {
		rescan(b);
		q->next_list_retry_usec = now + 1000 * 1000ull;
	}
	for (size_t i = 0; i < q->n; i++) {
		q->guests[i]->want_refresh = true;
		guest_step(b, q->guests[i], now);
	}
	return 0;
}

static int qmp_set_target(ovcd_balloon *b, const char *name, uint64_t target_bytes)
{
	struct qmp_guest *g = find_name(be(b), name);

	if (!g)
		return balloon_error(b, -ENOENT, "no QEMU guest by that name (no such QMP socket)");
	if (g->want_target) /* a newer target replaces one not sent yet */
		balloon_request_done(b, name, OVC_BALLOON_REQ_TARGET, g->target_bytes, -ECANCELED,
				     "replaced by a newer target before QEMU got it");
	g->want_target = true;
	g->target_bytes = target_bytes;
	guest_step(b, g, now_usec(CLOCK_MONOTONIC));
	return 0;
}

static void qmp_mark_absent(ovcd_balloon *b, const char *name)
{
	struct qmp_guest *g = find_name(be(b), name);
	struct ovcd_balloon_guest *c = balloon_cache_get(b, name);

	if (g)
		g->absent = true;
	if (g && c)
		c->driver = driver_state(b, g);
}

static int qmp_process(ovcd_balloon *b)
{
	struct qmp_backend *q = be(b);
	uint64_t now;
	bool any_dead = false;

	if (balloon_drain_inotify(q->inotify_fd))
		q->rescan = true;
	for (size_t i = 0; i < q->n; i++)
		if (!q->guests[i]->dead)
			guest_input(b, q->guests[i]);
	now = now_usec(CLOCK_MONOTONIC);
	for (size_t i = 0; i < q->n; i++) {
		guest_step(b, q->guests[i], now);
		any_dead |= q->guests[i]->dead;
	}
	/* New sockets, and the dead ones' fds out of the epoll set. */
	if (q->rescan || q->pending || any_dead || (b->opts.qmp_sockets && now >= q->next_list_retry_usec)) {
		rescan(b);
		q->next_list_retry_usec = now + 1000 * 1000ull;
	}
	return 0;
}

static int qmp_timeout_msec(const ovcd_balloon *b)
{
	struct qmp_backend *q = be(b);
	uint64_t now = now_usec(CLOCK_MONOTONIC), next = UINT64_MAX;

	if (q->pending)
		next = now + 250 * 1000;
	for (const char *const *s = b->opts.qmp_sockets; s && *s; s++)
		next = MIN(next, MAX(q->next_list_retry_usec, now));
	for (size_t i = 0; i < q->n; i++) {
		const struct qmp_guest *g = q->guests[i];

		if (g->dead)
			continue;
		if (g->state == G_GREETING || g->inflight != C_NONE)
			next = MIN(next, g->deadline_usec);
		else if ((g->want_target || g->want_refresh) && g->state == G_READY)
			next = MIN(next, MAX(g->brk.open_until_usec,
					     g->want_target ? now : g->last_refresh_usec + REFRESH_MIN_MSEC * 1000ull));
	}
	if (next == UINT64_MAX)
		return -1;
	return next <= now ? 0 : (int)MIN((next - now) / 1000 + 1, (uint64_t)INT32_MAX);
}

static void qmp_close(ovcd_balloon *b)
{
	struct qmp_backend *q = be(b);

	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++)
		guest_free(b, q->guests[i]);
	free(q->guests);
	if (q->inotify_fd >= 0)
		close(q->inotify_fd);
	if (q->dir_fd >= 0)
		close(q->dir_fd);
	free(q);
	b->backend = NULL;
}

static int qmp_open(ovcd_balloon *b)
{
	struct qmp_backend *q = calloc(1, sizeof(*q));
	int r;

	if (!q)
		return -ENOMEM;
	q->inotify_fd = q->dir_fd = -1;
	b->backend = q;
	if (b->opts.qmp_dir) {
		q->dir_fd = open(b->opts.qmp_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (q->dir_fd < 0) {
			r = balloon_error(b, negative_errno(), "cannot open QMP socket directory %s: %s",
					  b->opts.qmp_dir, strerror(errno));
			goto fail;
		}
		r = balloon_watch_dir(b, b->opts.qmp_dir, q->dir_fd, "QMP socket", &q->inotify_fd);
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
	.no_such_guest = "no QEMU guest by that name (no such QMP socket)",
	.open = qmp_open,
	.close = qmp_close,
	.refresh = qmp_refresh,
	.set_target = qmp_set_target,
	.mark_absent = qmp_mark_absent,
	.process = qmp_process,
	.timeout_msec = qmp_timeout_msec,
};
