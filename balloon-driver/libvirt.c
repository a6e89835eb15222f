/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt backend: every running domain of one connection (qemu:///system by
 * default). Bulk stats with virConnectGetAllDomainStats(BALLOON) — libvirt
 * 9.0 field names as literals, KiB — polling turned on with
 * virDomainSetMemoryStatsPeriod for domains that have it off, targets set
 * with virDomainSetMemoryFlags(AFFECT_LIVE) in whole KiB (rounded down),
 * lifecycle and BALLOON_CHANGE events, keepalive, a close callback, and
 * reconnection with exponential back-off after libvirtd restarts.
 *
 * Threads. libvirt calls can block for as long as libvirtd takes (a slow
 * or hung libvirtd, a domain busy with a job), so none of them runs in the
 * caller's thread once the handle is open: one worker thread per handle
 * makes them all, one at a time (libvirt's API is thread-safe per
 * connection; the worker is its only user), and owns the connection,
 * reconnection with back-off and the per-domain state (lv_guest). The
 * caller's thread only exchanges work and results with it through the
 * mailbox (struct lv_mailbox, under its mutex): refresh() asks for fresh
 * bulk stats, set_target() queues a target; process() takes the figures
 * into the handle's cache and the answers to balloon_request_done().
 * ovcd_balloon_new() connects in the caller's thread, before the worker
 * starts, so that an unreachable libvirtd is -ENOTCONN at once.
 *
 * libvirt delivers events, keepalive and close notifications only from an
 * event loop, and its default implementation is process-wide. We use it
 * (virEventRegisterDefaultImpl, once per process) and run
 * virEventRunDefaultImpl in one thread shared by every libvirt handle of the
 * process, started by the first and stopped by the last (loop_lock
 * protects loop_users/loop_thread). The loop thread only runs the callbacks
 * below; they touch nothing but the handle's event queue (under its lock)
 * and the atomic `lost` flag.
 *
 * Lock order: lv_mailbox.lock, then ovcd_balloon.lock (the event queue);
 * neither is held across a libvirt call.
 *
 * libvirt's default error handler prints to stderr; a library must not,
 * so it is replaced by a silent one (process-wide too) and errors are read
 * with virGetLastError, which is thread-local.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "internal.h"
#include "common/util.h"

/* Keepalive: a probe every 5 s, the connection counts as dead after 3
 * unanswered ones (~20 s), so a hung libvirtd is noticed too, not only a
 * dead one (whose socket EOF the close callback reports at once). */
#define KEEPALIVE_INTERVAL_SEC 5
#define KEEPALIVE_COUNT 3

/* NOWAIT: a domain busy with a job (migration, snapshot) gives what needs
 * no job — balloon.current and .maximum — and its guest-side figures are
 * missing, i.e. unknown, instead of holding up the stats of every guest. */
#define STATS_FLAGS (VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)

struct lv_guest {
	char uuid[VIR_UUID_STRING_BUFLEN];
	pid_t pid; /* QEMU's, from libvirt's pid file; 0 unknown */
	unsigned caps;
	bool caps_known;
	uint64_t polling_since_usec; /* 0: polling off */
	bool seen_update;
	bool absent;
	bool listed; /* in the last list; the others are gone and dropped */
};

/* A target for the worker, or its answer for the caller. */
struct lv_req {
	char name[OVC_BALLOON_NAME_MAX];
	uint64_t bytes;
	int err;
	char why[400];
};

/* What the caller's thread and the worker exchange; all under lock. */
struct lv_mailbox {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool quit;
	/* to the worker */
	bool want_refresh;
	struct lv_req *todo;  /* targets, oldest first */
	size_t todo_n;
	char (*absent)[OVC_BALLOON_NAME_MAX]; /* names to mark absent */
	size_t absent_n;
	/* to the caller */
	bool have_list;
	struct ovcd_balloon_guest *list;
	size_t list_n;
	struct lv_req *done;
	size_t done_n;
	bool connected;
	char conn_why[400]; /* why not, for -ENOTCONN */
};

struct lv_backend {
	/* The worker's (and, before it starts, the opener's). */
	virConnectPtr conn;
	int cb_lifecycle, cb_balloon;
	atomic_bool lost;         /* set by the close callback (loop thread) */
	bool was_connected;       /* the next successful connect is a RE-connect */
	unsigned backoff_msec;
	uint64_t retry_at_usec;
	struct lv_guest *guests;
	size_t n, cap;
	char why[400]; /* the last error's reason */
	/* Shared. */
	struct lv_mailbox mb;
	int wake_fd;   /* eventfd: the worker has something for process() */
	pthread_t worker;
	bool worker_running;
};

static struct lv_backend *be(const ovcd_balloon *b)
{
	return b->backend;
}

static const char *uri_of(const ovcd_balloon *b)
{
	return b->opts.uri ? b->opts.uri : "qemu:///system";
}

/* --- The process-wide event loop thread --- */

static pthread_mutex_t loop_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned loop_users;
static bool loop_registered;
static atomic_bool loop_quit;
static pthread_t loop_thread;

static void silent_error(void *userdata, virErrorPtr err)
{
	(void)userdata;
	(void)err;
}

static void *loop_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&loop_quit))
		if (virEventRunDefaultImpl() < 0)
			break;
	return NULL;
}

static void wake_loop(int timer, void *opaque)
{
	(void)timer;
	(void)opaque;
}

static int loop_get(void)
{
	int r = 0;

	pthread_mutex_lock(&loop_lock);
	if (!loop_registered) {
		virSetErrorFunc(NULL, silent_error);
		if (virEventRegisterDefaultImpl() < 0) {
			r = -EIO;
			goto out;
		}
		loop_registered = true;
	}
	if (loop_users == 0) {
		atomic_store(&loop_quit, false);
		r = -pthread_create(&loop_thread, NULL, loop_main, NULL);
		if (r < 0)
			goto out;
	}
	loop_users++;
out:
	pthread_mutex_unlock(&loop_lock);
	return r;
}

static void loop_put(void)
{
	pthread_mutex_lock(&loop_lock);
	if (--loop_users == 0) {
		int timer;

		atomic_store(&loop_quit, true);
		/* A timer due now wakes the loop out of poll(). */
		timer = virEventAddTimeout(0, wake_loop, NULL, NULL);
		pthread_join(loop_thread, NULL);
		if (timer >= 0)
			virEventRemoveTimeout(timer);
	}
	pthread_mutex_unlock(&loop_lock);
}

/* --- Callbacks, run by the loop thread --- */

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
	ovcd_balloon *b = opaque;

	(void)conn;
	if (!atomic_exchange(&be(b)->lost, true)) {
		log_debug(b->opts.logger, "connection to libvirtd at %s closed (reason %d)", uri_of(b), reason);
		balloon_queue_event(b, OVC_BALLOON_EVENT_DISCONNECTED, NULL, OVC_UNKNOWN);
		/* The worker reconnects: wake it. */
		pthread_mutex_lock(&be(b)->mb.lock);
		pthread_cond_signal(&be(b)->mb.cond);
		pthread_mutex_unlock(&be(b)->mb.lock);
	}
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	ovcd_balloon *b = opaque;

	(void)conn;
	(void)detail;
	if (event == VIR_DOMAIN_EVENT_STARTED)
		balloon_queue_event(b, OVC_BALLOON_EVENT_STARTED, virDomainGetName(dom), OVC_UNKNOWN);
	else if (event == VIR_DOMAIN_EVENT_STOPPED)
		balloon_queue_event(b, OVC_BALLOON_EVENT_STOPPED, virDomainGetName(dom), OVC_UNKNOWN);
	return 0;
}

static void on_balloon(virConnectPtr conn, virDomainPtr dom, unsigned long long actual_kib, void *opaque)
{
	ovcd_balloon *b = opaque;

	(void)conn;
	balloon_queue_event(b, OVC_BALLOON_EVENT_CHANGED, virDomainGetName(dom),
			    actual_kib <= UINT64_MAX / KIB ? actual_kib * KIB : OVC_UNKNOWN);
}

/* --- Errors (worker) --- */

/* libvirt's last error as -errno, with its text in @reason. */
static int lv_errno(ovcd_balloon *b, char *reason, size_t size)
{
	virErrorPtr e = virGetLastError();
	int code = e ? e->code : VIR_ERR_INTERNAL_ERROR;
	const char *msg = e && e->message ? e->message : "unknown libvirt error";

	snprintf(reason, size, "%s", msg);
	switch (code) {
	case VIR_ERR_NO_DOMAIN:
		snprintf(reason, size, "No such domain");
		return -ENOENT;
	case VIR_ERR_OPERATION_INVALID: /* e.g. "domain is not running" */
		return -ENOENT;
	case VIR_ERR_NO_SUPPORT:
	case VIR_ERR_ARGUMENT_UNSUPPORTED:
		return -EOPNOTSUPP;
	case VIR_ERR_OPERATION_TIMEOUT:
	case VIR_ERR_AGENT_UNRESPONSIVE:
		return -ETIMEDOUT;
	case VIR_ERR_INVALID_ARG:
		return -EINVAL;
	default:
		break;
	}
	/* Whatever the code, a dead connection is what the caller must
	 * know about: it will reconnect. */
	if (be(b)->conn && virConnectIsAlive(be(b)->conn) != 1) {
		atomic_store(&be(b)->lost, true);
		return -ENOTCONN;
	}
	return -EIO;
}

/* Keep the reason of a failure in l->why (the worker's), return @err. */
static int lv_fail(ovcd_balloon *b, int err, const char *fmt, ...) _printf_(3, 4);
static int lv_fail(ovcd_balloon *b, int err, const char *fmt, ...)
{
	struct lv_backend *l = be(b);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(l->why, sizeof(l->why), fmt, ap);
	va_end(ap);
	log_debug(b->opts.logger, "libvirt: %s", l->why);
	return err;
}

static int lv_error(ovcd_balloon *b)
{
	char reason[300];
	int r = lv_errno(b, reason, sizeof(reason));

	return lv_fail(b, r, "%s", reason);
}

/* --- Connection (worker; the opener before it starts) --- */

static void disconnect(ovcd_balloon *b)
{
	struct lv_backend *l = be(b);

	if (!l->conn)
		return;
	/* On a dead connection these fail; they still drop our references. */
	if (l->cb_lifecycle >= 0)
		virConnectDomainEventDeregisterAny(l->conn, l->cb_lifecycle);
	if (l->cb_balloon >= 0)
		virConnectDomainEventDeregisterAny(l->conn, l->cb_balloon);
	virConnectUnregisterCloseCallback(l->conn, on_close);
	virConnectClose(l->conn);
	l->conn = NULL;
	l->cb_lifecycle = l->cb_balloon = -1;
}

static int try_connect(ovcd_balloon *b)
{
	struct lv_backend *l = be(b);
	char reason[300];
	int r;

	l->conn = virConnectOpen(uri_of(b));
	if (!l->conn) {
		lv_errno(b, reason, sizeof(reason));
		return lv_fail(b, -ENOTCONN, "cannot connect to libvirtd at %s: %s", uri_of(b), reason);
	}
	atomic_store(&l->lost, false);
	/* 1 = the peer has no keepalive (test://): fine. */
	if (virConnectSetKeepAlive(l->conn, KEEPALIVE_INTERVAL_SEC, KEEPALIVE_COUNT) < 0)
		log_debug(b->opts.logger, "libvirt keepalive not available on %s", uri_of(b));
	if (virConnectRegisterCloseCallback(l->conn, on_close, b, NULL) < 0)
		goto fail;
	l->cb_lifecycle = virConnectDomainEventRegisterAny(l->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
							   VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), b, NULL);
	if (l->cb_lifecycle < 0)
		goto fail;
	l->cb_balloon = virConnectDomainEventRegisterAny(l->conn, NULL, VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
							 VIR_DOMAIN_EVENT_CALLBACK(on_balloon), b, NULL);
	if (l->cb_balloon < 0)
		goto fail;
	return 0;
fail:
	lv_errno(b, reason, sizeof(reason));
	r = lv_fail(b, -ENOTCONN, "cannot subscribe to events of libvirtd at %s: %s", uri_of(b), reason);
	disconnect(b);
	return r;
}

/* Connected, or -ENOTCONN. Reconnects when the back-off has passed. */
static int ensure_conn(ovcd_balloon *b)
{
	struct lv_backend *l = be(b);
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	unsigned min = b->opts.reconnect_min_msec ? b->opts.reconnect_min_msec : 250;
	unsigned max = b->opts.reconnect_max_msec ? b->opts.reconnect_max_msec : 30000;
	int r;

	if (l->conn && !atomic_load(&l->lost))
		return 0;
	if (l->conn) { /* lost: drop it, and retry at once the first time */
		disconnect(b);
		l->retry_at_usec = now;
	}
	if (now < l->retry_at_usec)
		return lv_fail(b, -ENOTCONN, "connection to libvirtd at %s lost; next attempt in %" PRIu64 " ms",
			       uri_of(b), (l->retry_at_usec - now) / 1000);
	r = try_connect(b);
	if (r < 0) {
		l->backoff_msec = l->backoff_msec ? MIN(l->backoff_msec * 2, max) : min;
		l->retry_at_usec = now + (uint64_t)l->backoff_msec * 1000;
		return r;
	}
	l->backoff_msec = 0;
	if (l->was_connected) {
		log_info(b->opts.logger, "reconnected to libvirtd at %s", uri_of(b));
		balloon_queue_event(b, OVC_BALLOON_EVENT_RECONNECTED, NULL, OVC_UNKNOWN);
	}
	l->was_connected = true;
	return 0;
}

/* --- Guests (worker) --- */

static struct lv_guest *guest_state(ovcd_balloon *b, virDomainPtr dom)
{
	struct lv_backend *l = be(b);
	char uuid[VIR_UUID_STRING_BUFLEN];

	if (virDomainGetUUIDString(dom, uuid) < 0)
		return NULL;
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->guests[i].uuid, uuid) == 0)
			return &l->guests[i];
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct lv_guest *p = realloc(l->guests, cap * sizeof(*p));

		if (!p)
			return NULL;
		l->guests = p;
		l->cap = cap;
	}
	memset(&l->guests[l->n], 0, sizeof(l->guests[0]));
	snprintf(l->guests[l->n].uuid, sizeof(l->guests[0].uuid), "%s", uuid);
	return &l->guests[l->n++];
}

/* QEMU's pid as libvirt's QEMU driver writes it for a running domain
 * (root-owned, /run/libvirt/qemu/NAME.pid); 0 when there is none (another
 * driver, a session daemon). Never through a symlink. */
static pid_t qemu_pid(const char *name)
{
	char path[PATH_MAX], buf[32];
	long v;
	ssize_t n;
	int fd;

	if (strchr(name, '/') || snprintf(path, sizeof(path), "/run/libvirt/qemu/%s.pid", name) >= (int)sizeof(path))
		return 0;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	v = strtol(buf, NULL, 10);
	return v > 0 && v <= INT32_MAX ? (pid_t)v : 0;
}

static int refresh_caps(ovcd_balloon *b, virDomainPtr dom, struct lv_guest *s)
{
	char *xml;

	if (s->caps_known)
		return 0;
	xml = virDomainGetXMLDesc(dom, 0);
	if (!xml)
		return lv_error(b);
	s->caps = ovcd_balloon_caps_from_xml(xml);
	free(xml);
	s->caps_known = true;
	if (s->caps & OVC_BALLOON_CAP_STATS_POLLING)
		s->polling_since_usec = now_usec(CLOCK_MONOTONIC);
	return 0;
}

static void enable_polling(ovcd_balloon *b, virDomainPtr dom, struct lv_guest *s)
{
	if (!(s->caps & OVC_BALLOON_CAP_DEVICE) || (s->caps & OVC_BALLOON_CAP_STATS_POLLING) ||
	    !b->opts.stats_period_sec)
		return;
	if (virDomainSetMemoryStatsPeriod(dom, (int)b->opts.stats_period_sec, VIR_DOMAIN_AFFECT_LIVE) < 0) {
		char reason[300];

		lv_errno(b, reason, sizeof(reason));
		log_debug(b->opts.logger, "cannot turn on balloon stats of '%s': %s", virDomainGetName(dom), reason);
		return;
	}
	s->caps |= OVC_BALLOON_CAP_STATS_POLLING;
	s->polling_since_usec = now_usec(CLOCK_MONOTONIC);
}

static int record_to_guest(ovcd_balloon *b, virDomainStatsRecordPtr rec, struct ovcd_balloon_guest *out)
{
	struct ovcd_balloon_kv kv[32];
	struct lv_guest *s;
	size_t n = 0;
	int r;

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", virDomainGetName(rec->dom));
	s = guest_state(b, rec->dom);
	if (!s)
		return -ENOMEM;
	snprintf(out->id, sizeof(out->id), "%s", s->uuid);
	r = refresh_caps(b, rec->dom, s);
	if (r < 0)
		return r;
	enable_polling(b, rec->dom, s);
	if (!s->pid)
		s->pid = qemu_pid(out->name);
	out->pid = s->pid;

	for (int i = 0; i < rec->nparams && n < ARRAY_SIZE(kv); i++)
		if (rec->params[i].type == VIR_TYPED_PARAM_ULLONG)
			kv[n++] = (struct ovcd_balloon_kv){ rec->params[i].field, rec->params[i].value.ul };
	r = ovcd_balloon_stats_from_libvirt(kv, n, now_usec(CLOCK_REALTIME) / USEC_PER_SEC,
					   balloon_stale_sec(b), &out->stats);
	if (r < 0) {
		/* No balloon group (no balloon device, or a job held the
		 * domain): the host side from virDomainGetInfo. */
		virDomainInfo info;

		if (virDomainGetInfo(rec->dom, &info) < 0)
			return lv_error(b);
		ovcd_guest_stats_reset(&out->stats);
		out->stats.max_bytes = (uint64_t)info.maxMem * KIB;
		out->stats.actual_bytes = (uint64_t)info.memory * KIB;
		out->stats.stale = true;
	}
	out->stats.collected_usec = now_usec(CLOCK_MONOTONIC);
	if (out->stats.actual_bytes != out->stats.max_bytes ||
	    (ovcd_known(out->stats.guest_update_sec) && out->stats.guest_update_sec > 0))
		s->seen_update = true;

	s->listed = true;
	out->caps = s->caps;
	if (!(s->caps & OVC_BALLOON_CAP_DEVICE) || (!s->seen_update && s->absent))
		out->driver = OVC_BALLOON_DRIVER_ABSENT;
	else if (s->seen_update)
		out->driver = OVC_BALLOON_DRIVER_LOADED;
	else if (s->polling_since_usec &&
		 now_usec(CLOCK_MONOTONIC) - s->polling_since_usec > balloon_confirm_msec(b) * 1000ull)
		out->driver = OVC_BALLOON_DRIVER_ABSENT;
	else
		out->driver = OVC_BALLOON_DRIVER_UNKNOWN;
	return 0;
}

/* Per-guest state of domains no longer running: a long-lived daemon on a
 * host with many short-lived domains must not grow without end. A domain
 * that starts again is a new boot and starts from UNKNOWN anyway. */
static void forget_unlisted(struct lv_backend *l)
{
	size_t j = 0;

	for (size_t i = 0; i < l->n; i++)
		if (l->guests[i].listed)
			l->guests[j++] = l->guests[i];
	l->n = j;
}

/* Every running domain's figures: a malloc'ed array. */
static int lv_list(ovcd_balloon *b, struct ovcd_balloon_guest **ret, size_t *ret_n)
{
	virDomainStatsRecordPtr *recs = NULL;
	struct ovcd_balloon_guest *out;
	size_t n = 0;
	int nrec, r;

	r = ensure_conn(b);
	if (r < 0)
		return r;
	nrec = virConnectGetAllDomainStats(be(b)->conn, VIR_DOMAIN_STATS_BALLOON, &recs, STATS_FLAGS);
	if (nrec < 0) {
		char reason[300];

		r = lv_errno(b, reason, sizeof(reason));
		return lv_fail(b, r, "failed to read balloon stats from libvirtd at %s: %s", uri_of(b), reason);
	}
	out = calloc(nrec ? (size_t)nrec : 1, sizeof(*out));
	if (!out) {
		virDomainStatsRecordListFree(recs);
		return -ENOMEM;
	}
	for (size_t i = 0; i < be(b)->n; i++)
		be(b)->guests[i].listed = false;
	for (int i = 0; i < nrec; i++) {
		/* A domain that stops between the two calls is left out; its
		 * STOPPED event is on the way. */
		if (record_to_guest(b, recs[i], &out[n]) == 0)
			n++;
	}
	virDomainStatsRecordListFree(recs);
	forget_unlisted(be(b));
	*ret = out;
	*ret_n = n;
	return 0;
}

/* A running domain by name. */
static int lookup(ovcd_balloon *b, const char *name, virDomainPtr *ret)
{
	virDomainPtr dom;
	int r = ensure_conn(b);

	if (r < 0)
		return r;
	dom = virDomainLookupByName(be(b)->conn, name);
	if (!dom)
		return lv_error(b);
	if (virDomainIsActive(dom) != 1) {
		virDomainFree(dom);
		return lv_fail(b, -ENOENT, "domain is not running");
	}
	*ret = dom;
	return 0;
}

static int do_set_target(ovcd_balloon *b, const char *name, uint64_t target_bytes)
{
	virDomainPtr dom = NULL;
	unsigned long kib;
	int r = ovcd_balloon_bytes_to_kib(target_bytes, &kib);

	if (r < 0)
		return lv_fail(b, r, "the target is less than 1 KiB");
	r = lookup(b, name, &dom);
	if (r < 0)
		return r;
	/* Returns once QEMU took the target; the guest gets there later. */
	if (virDomainSetMemoryFlags(dom, kib, VIR_DOMAIN_AFFECT_LIVE) < 0)
		r = lv_error(b);
	virDomainFree(dom);
	return r;
}

static void do_mark_absent(ovcd_balloon *b, const char *name)
{
	virDomainPtr dom;

	if (ensure_conn(b) < 0 || !(dom = virDomainLookupByName(be(b)->conn, name)))
		return;
	struct lv_guest *s = guest_state(b, dom);

	if (s)
		s->absent = true;
	virDomainFree(dom);
}

/* --- The worker --- */

static void wake_caller(struct lv_backend *l)
{
	uint64_t one = 1;

	(void)!write(l->wake_fd, &one, sizeof(one));
}

/* Say whether the connection is up, for refresh() in the caller's thread. */
static void post_conn_state(ovcd_balloon *b, int r)
{
	struct lv_backend *l = be(b);

	pthread_mutex_lock(&l->mb.lock);
	l->mb.connected = r != -ENOTCONN;
	if (r == -ENOTCONN)
		snprintf(l->mb.conn_why, sizeof(l->mb.conn_why), "%s", l->why);
	pthread_mutex_unlock(&l->mb.lock);
}

static void *worker_main(void *arg)
{
	ovcd_balloon *b = arg;
	struct lv_backend *l = be(b);
	struct lv_mailbox *mb = &l->mb;

	pthread_mutex_lock(&mb->lock);
	while (!mb->quit) {
		struct lv_req req;
		bool refresh = false, absent = false;
		char absent_name[OVC_BALLOON_NAME_MAX];

		if (mb->absent_n) {
			snprintf(absent_name, sizeof(absent_name), "%s", mb->absent[--mb->absent_n]);
			absent = true;
		} else if (mb->todo_n) {
			req = mb->todo[0];
			memmove(mb->todo, mb->todo + 1, (mb->todo_n - 1) * sizeof(*mb->todo));
			mb->todo_n--;
		} else if (mb->want_refresh) {
			mb->want_refresh = false;
			refresh = true;
		} else {
			/* Nothing asked: wake for a reconnect that is due, so
			 * that the caller learns the connection is back. */
			bool down = !l->conn || atomic_load(&l->lost);
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += down ? 0 : 3600;
			if (down) {
				uint64_t now = now_usec(CLOCK_MONOTONIC);
				uint64_t wait = l->retry_at_usec > now ? l->retry_at_usec - now : 0;

				ts.tv_sec += (time_t)(wait / USEC_PER_SEC);
				ts.tv_nsec += (long)(wait % USEC_PER_SEC) * 1000;
				if (ts.tv_nsec >= 1000000000L) {
					ts.tv_sec++;
					ts.tv_nsec -= 1000000000L;
				}
				if (wait == 0) {
					pthread_mutex_unlock(&mb->lock);
					post_conn_state(b, ensure_conn(b));
					wake_caller(l);
					pthread_mutex_lock(&mb->lock);
					continue;
				}
			}
			pthread_cond_timedwait(&mb->cond, &mb->lock, &ts);
			continue;
		}
		pthread_mutex_unlock(&mb->lock);

		/* libvirt calls: no lock held. */
		if (absent) {
			do_mark_absent(b, absent_name);
			pthread_mutex_lock(&mb->lock);
			continue;
		}
		if (refresh) {
			struct ovcd_balloon_guest *list = NULL;
			size_t n = 0;
			int r = lv_list(b, &list, &n);

			post_conn_state(b, r);
			pthread_mutex_lock(&mb->lock);
			if (r == 0) {
				free(mb->list);
				mb->list = list;
				mb->list_n = n;
				mb->have_list = true;
			}
		} else {
			struct lv_req *p;

			l->why[0] = '\0';
			req.err = do_set_target(b, req.name, req.bytes);
			snprintf(req.why, sizeof(req.why), "%s", l->why);
			post_conn_state(b, req.err);
			pthread_mutex_lock(&mb->lock);
			p = realloc(mb->done, (mb->done_n + 1) * sizeof(*p));
			if (p) {
				mb->done = p;
				mb->done[mb->done_n++] = req;
			}
		}
		wake_caller(l);
	}
	pthread_mutex_unlock(&mb->lock);
	return NULL;
}

/* --- The caller's side --- */

static int lv_refresh(ovcd_balloon *b)
{
	struct lv_backend *l = be(b);
	int r = 0;

	pthread_mutex_lock(&l->mb.lock);
	l->mb.want_refresh = true;
	pthread_cond_signal(&l->mb.cond);
	if (!l->mb.connected)
		r = balloon_error(b, -ENOTCONN, "%s", l->mb.conn_why);
	pthread_mutex_unlock(&l->mb.lock);
	return r;
}

static int lv_set_target(ovcd_balloon *b, const char *name, uint64_t target_bytes)
{
	struct lv_backend *l = be(b);
	struct lv_mailbox *mb = &l->mb;
	unsigned long kib;
	struct lv_req *p;
	int r = ovcd_balloon_bytes_to_kib(target_bytes, &kib);

	if (r < 0)
		return balloon_error(b, r, "the target is less than 1 KiB");
	pthread_mutex_lock(&mb->lock);
	/* A newer target replaces one the worker has not taken yet. */
	for (size_t i = 0; i < mb->todo_n; i++) {
		if (strcmp(mb->todo[i].name, name) != 0)
			continue;
		struct lv_req old = mb->todo[i];

		mb->todo[i].bytes = target_bytes;
		pthread_mutex_unlock(&mb->lock);
		balloon_request_done(b, name, OVC_BALLOON_REQ_TARGET, old.bytes, -ECANCELED,
				     "replaced by a newer target before libvirtd got it");
		return 0;
	}
	p = realloc(mb->todo, (mb->todo_n + 1) * sizeof(*p));
	if (!p) {
		pthread_mutex_unlock(&mb->lock);
		return -ENOMEM;
	}
	mb->todo = p;
	memset(&p[mb->todo_n], 0, sizeof(*p));
	snprintf(p[mb->todo_n].name, sizeof(p->name), "%s", name);
	p[mb->todo_n++].bytes = target_bytes;
	pthread_cond_signal(&mb->cond);
	pthread_mutex_unlock(&mb->lock);
	return 0;
}

static void lv_mark_absent(ovcd_balloon *b, const char *name)
{
	struct lv_mailbox *mb = &be(b)->mb;
	struct ovcd_balloon_guest *c = balloon_cache_get(b, name);
	char(*p)[OVC_BALLOON_NAME_MAX];

	if (c)
		c->driver = OVC_BALLOON_DRIVER_ABSENT;
	pthread_mutex_lock(&mb->lock);
	p = realloc(mb->absent, (mb->absent_n + 1) * sizeof(*p));
	if (p) {
		mb->absent = p;
		snprintf(p[mb->absent_n++], sizeof(*p), "%s", name);
		pthread_cond_signal(&mb->cond);
	}
	pthread_mutex_unlock(&mb->lock);
}

static int lv_process(ovcd_balloon *b)
{
	struct lv_backend *l = be(b);
	struct lv_mailbox *mb = &l->mb;
	struct ovcd_balloon_guest *list = NULL;
	struct lv_req *done;
	size_t list_n = 0, done_n;
	bool have_list;
	uint64_t cnt;

	(void)!read(l->wake_fd, &cnt, sizeof(cnt));
	pthread_mutex_lock(&mb->lock);
	have_list = mb->have_list;
	if (have_list) {
		list = mb->list;
		list_n = mb->list_n;
		mb->list = NULL;
		mb->list_n = 0;
		mb->have_list = false;
	}
	done = mb->done;
	done_n = mb->done_n;
	mb->done = NULL;
	mb->done_n = 0;
	pthread_mutex_unlock(&mb->lock);

	if (have_list) {
		/* Domains no longer running leave the cache (their STOPPED
		 * event comes from libvirt). */
		for (size_t i = b->cache_n; i-- > 0;) {
			bool still = false;

			for (size_t j = 0; j < list_n && !still; j++)
				still = strcmp(list[j].name, b->cache[i].name) == 0;
			if (!still)
				balloon_cache_drop(b, b->cache[i].name);
		}
		for (size_t j = 0; j < list_n; j++) {
			/* A guest marked absent since the worker read it. */
			const struct ovcd_balloon_guest *c = balloon_cache_get(b, list[j].name);

			if (c && c->driver == OVC_BALLOON_DRIVER_ABSENT && list[j].driver == OVC_BALLOON_DRIVER_UNKNOWN)
				list[j].driver = OVC_BALLOON_DRIVER_ABSENT;
			(void)balloon_cache_put(b, &list[j]);
		}
		free(list);
	}
	for (size_t i = 0; i < done_n; i++)
		balloon_request_done(b, done[i].name, OVC_BALLOON_REQ_TARGET, done[i].bytes, done[i].err,
				     done[i].why);
	free(done);
	return 0;
}

static int lv_timeout_msec(const ovcd_balloon *b)
{
	return -1; /* the worker wakes us through the pollable set */
}

static void lv_close(ovcd_balloon *b)
{
	struct lv_backend *l = be(b);

	if (!l)
		return;
	if (l->worker_running) {
		/* Waits for a libvirt call in progress: at most until
		 * keepalive gives up on a hung libvirtd. */
		pthread_mutex_lock(&l->mb.lock);
		l->mb.quit = true;
		pthread_cond_signal(&l->mb.cond);
		pthread_mutex_unlock(&l->mb.lock);
		pthread_join(l->worker, NULL);
	}
	disconnect(b);
	loop_put();
	if (l->wake_fd >= 0) {
		balloon_unwatch_fd(b, l->wake_fd);
		close(l->wake_fd);
	}
	pthread_cond_destroy(&l->mb.cond);
	pthread_mutex_destroy(&l->mb.lock);
	free(l->mb.todo);
	free(l->mb.absent);
	free(l->mb.list);
	free(l->mb.done);
	free(l->guests);
	free(l);
	b->backend = NULL;
}

static int lv_open(ovcd_balloon *b)
{
	struct lv_backend *l = calloc(1, sizeof(*l));
	pthread_condattr_t ca;
	int r;

	if (!l)
		return -ENOMEM;
	l->cb_lifecycle = l->cb_balloon = -1;
	l->wake_fd = -1;
	pthread_mutex_init(&l->mb.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_cond_init(&l->mb.cond, &ca);
	pthread_condattr_destroy(&ca);
	b->backend = l;
	/* The event implementation must be in place before the connection
	 * is opened, or the connection gets no events and no keepalive. */
	r = loop_get();
	if (r < 0) {
		pthread_cond_destroy(&l->mb.cond);
		pthread_mutex_destroy(&l->mb.lock);
		free(l);
		b->backend = NULL;
		return balloon_error(b, r, "cannot start the libvirt event loop");
	}
	r = ensure_conn(b);
	if (r < 0) {
		r = balloon_error(b, r, "%s", l->why);
		lv_close(b);
		return r;
	}
	l->mb.connected = true;
	l->mb.want_refresh = true; /* the first figures at once */
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0 || (r = balloon_watch_fd(b, l->wake_fd)) < 0) {
		r = l->wake_fd < 0 ? negative_errno() : r;
		lv_close(b);
		return r;
	}
	r = -pthread_create(&l->worker, NULL, worker_main, b);
	if (r < 0) {
		lv_close(b);
		return balloon_error(b, r, "cannot start the libvirt worker thread");
	}
	l->worker_running = true;
	return 0;
}

const struct balloon_ops balloon_libvirt_ops = {
	.name = "libvirt",
	.no_such_guest = "No such domain",
	.open = lv_open,
	.close = lv_close,
	.refresh = lv_refresh,
	.set_target = lv_set_target,
	.mark_absent = lv_mark_absent,
	.process = lv_process,
	.timeout_msec = lv_timeout_msec,
};
