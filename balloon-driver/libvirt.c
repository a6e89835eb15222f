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
 * Threads. libvirt delivers events, keepalive and close notifications only
 * from an event loop, and its default implementation is process-wide. We
 * use it (virEventRegisterDefaultImpl, once per process) and run
 * virEventRunDefaultImpl in one thread shared by every libvirt handle of the
 * process, started by the first and stopped by the last (loop_lock
 * protects loop_users/loop_thread). Our own event loop implementation would
 * have to serve libvirt's timers and fds through the caller's loop, which
 * a daemon blocked in a slow libvirt call could not do, and keepalive would
 * then drop the connection. The loop thread only runs the callbacks below;
 * they touch nothing but the handle's event queue (under its lock) and the
 * atomic `lost` flag. Everything else runs in the caller's thread;
 * reconnecting too, from the next call or ovc_balloon_process() once the
 * back-off has passed (ovc_balloon_timeout_msec says when).
 *
 * libvirt's default error handler prints to stderr; a library must not,
 * so it is replaced by a silent one (process-wide too) and errors are read
 * with virGetLastError, which is thread-local.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "internal.h"
#include "util.h"

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
	unsigned caps;
	bool caps_known;
	uint64_t polling_since_usec; /* 0: polling off */
	bool seen_update;
	bool absent;
	bool listed; /* in the last list; the others are gone and dropped */
};

struct lv_backend {
	virConnectPtr conn;
	int cb_lifecycle, cb_balloon;
	atomic_bool lost;         /* set by the close callback (loop thread) */
	bool was_connected;       /* the next successful connect is a RE-connect */
	unsigned backoff_msec;
	uint64_t retry_at_usec;
	struct lv_guest *guests;
	size_t n, cap;
};

static struct lv_backend *be(const ovc_balloon *b)
{
	return b->backend;
}

static const char *uri_of(const ovc_balloon *b)
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
	ovc_balloon *b = opaque;

	(void)conn;
	if (!atomic_exchange(&be(b)->lost, true)) {
		log_debug(b->opts.logger, "connection to libvirtd at %s closed (reason %d)", uri_of(b), reason);
		balloon_queue_event(b, OVC_BALLOON_EVENT_DISCONNECTED, NULL, OVC_UNKNOWN);
	}
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	ovc_balloon *b = opaque;

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
	ovc_balloon *b = opaque;

	(void)conn;
	balloon_queue_event(b, OVC_BALLOON_EVENT_CHANGED, virDomainGetName(dom),
			    actual_kib <= UINT64_MAX / KIB ? actual_kib * KIB : OVC_UNKNOWN);
}

/* --- Errors --- */

/* libvirt's last error as -errno, with its text in @reason. */
static int lv_errno(ovc_balloon *b, char *reason, size_t size)
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

/* "failed to <what> of '<guest>': <libvirt's reason>"; only the reason if
 * @what is NULL (ovc_balloon_set_target wraps it). */
static int lv_error(ovc_balloon *b, const char *what, const char *guest)
{
	char reason[300];
	int r = lv_errno(b, reason, sizeof(reason));

	if (!what)
		return balloon_error(b, r, "%s", reason);
	return balloon_error(b, r, "failed to %s of '%s': %s", what, guest, reason);
}

/* --- Connection --- */

static void disconnect(ovc_balloon *b)
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

static int try_connect(ovc_balloon *b)
{
	struct lv_backend *l = be(b);
	char reason[300];
	int r;

	l->conn = virConnectOpen(uri_of(b));
	if (!l->conn) {
		lv_errno(b, reason, sizeof(reason));
		return balloon_error(b, -ENOTCONN, "cannot connect to libvirtd at %s: %s", uri_of(b), reason);
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
	r = balloon_error(b, -ENOTCONN, "cannot subscribe to events of libvirtd at %s: %s", uri_of(b), reason);
	disconnect(b);
	return r;
}

/* Connected, or -ENOTCONN. Reconnects when the back-off has passed. */
static int ensure_conn(ovc_balloon *b)
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
		return balloon_error(b, -ENOTCONN, "connection to libvirtd at %s lost; next attempt in %" PRIu64 " ms",
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

/* --- Guests --- */

static struct lv_guest *guest_state(ovc_balloon *b, virDomainPtr dom)
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

/* Value of attribute @attr inside the element text [el, end). */
static bool attr_is(const char *el, const char *end, const char *attr, const char *value)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), " %s='%s'", attr, value);
	p = strstr(el, pat);
	if (p && p < end)
		return true;
	snprintf(pat, sizeof(pat), " %s=\"%s\"", attr, value);
	p = strstr(el, pat);
	return p && p < end;
}

/* Capabilities from the live XML. libvirt writes <memballoon> with single
 * quotes and one attribute per feature; a full XML parser would add
 * libxml2 for three attributes. */
static unsigned caps_from_xml(const char *xml)
{
	const char *el = strstr(xml, "<memballoon"), *end, *stats;
	unsigned caps = 0;

	if (!el)
		return 0;
	end = strstr(el, "</memballoon>");
	if (!end)
		end = strchr(el, '>');
	if (!end)
		return 0;
	if (attr_is(el, end, "model", "none"))
		return 0;
	caps |= OVC_BALLOON_CAP_DEVICE;
	if (attr_is(el, end, "autodeflate", "on"))
		caps |= OVC_BALLOON_CAP_DEFLATE_ON_OOM;
	if (attr_is(el, end, "freePageReporting", "on"))
		caps |= OVC_BALLOON_CAP_FREE_PAGE_REPORTING;
	stats = strstr(el, "<stats period=");
	if (stats && stats < end && strtoul(stats + 15, NULL, 10) > 0)
		caps |= OVC_BALLOON_CAP_STATS_POLLING;
	return caps;
}

static int refresh_caps(ovc_balloon *b, virDomainPtr dom, struct lv_guest *s)
{
	char *xml;

	if (s->caps_known)
		return 0;
	xml = virDomainGetXMLDesc(dom, 0);
	if (!xml)
		return lv_error(b, NULL, virDomainGetName(dom));
	s->caps = caps_from_xml(xml);
	free(xml);
	s->caps_known = true;
	if (s->caps & OVC_BALLOON_CAP_STATS_POLLING)
		s->polling_since_usec = now_usec(CLOCK_MONOTONIC);
	return 0;
}

static void enable_polling(ovc_balloon *b, virDomainPtr dom, struct lv_guest *s)
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

static int record_to_guest(ovc_balloon *b, virDomainStatsRecordPtr rec, struct ovc_balloon_guest *out)
{
	struct ovc_balloon_kv kv[32];
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

	for (int i = 0; i < rec->nparams && n < ARRAY_SIZE(kv); i++)
		if (rec->params[i].type == VIR_TYPED_PARAM_ULLONG)
			kv[n++] = (struct ovc_balloon_kv){ rec->params[i].field, rec->params[i].value.ul };
	r = ovc_balloon_stats_from_libvirt(kv, n, now_usec(CLOCK_REALTIME) / USEC_PER_SEC,
					   balloon_stale_sec(b), &out->stats);
	if (r < 0) {
		/* No balloon group (no balloon device, or a job held the
		 * domain): the host side from virDomainGetInfo. */
		virDomainInfo info;

		if (virDomainGetInfo(rec->dom, &info) < 0)
			return lv_error(b, NULL, out->name);
		ovc_guest_stats_reset(&out->stats);
		out->stats.max_bytes = (uint64_t)info.maxMem * KIB;
		out->stats.actual_bytes = (uint64_t)info.memory * KIB;
		out->stats.stale = true;
	}
	out->stats.collected_usec = now_usec(CLOCK_MONOTONIC);
	if (out->stats.actual_bytes != out->stats.max_bytes ||
	    (ovc_known(out->stats.guest_update_sec) && out->stats.guest_update_sec > 0))
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
	balloon_queue_event(b, OVC_BALLOON_EVENT_STATS, out->name, OVC_UNKNOWN);
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

static int lv_list(ovc_balloon *b, struct ovc_balloon_guest **ret, size_t *ret_n)
{
	virDomainStatsRecordPtr *recs = NULL;
	struct ovc_balloon_guest *out;
	size_t n = 0;
	int nrec, r;

	r = ensure_conn(b);
	if (r < 0)
		return r;
	nrec = virConnectGetAllDomainStats(be(b)->conn, VIR_DOMAIN_STATS_BALLOON, &recs, STATS_FLAGS);
	if (nrec < 0) {
		char reason[300];

		r = lv_errno(b, reason, sizeof(reason));
		return balloon_error(b, r, "failed to read balloon stats from libvirtd at %s: %s", uri_of(b), reason);
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

/* A running domain by name, or an error naming it (reason only if !what). */
static int lookup(ovc_balloon *b, const char *name, const char *what, virDomainPtr *ret)
{
	virDomainPtr dom;
	int r = ensure_conn(b);

	if (r < 0)
		return r;
	dom = virDomainLookupByName(be(b)->conn, name);
	if (!dom)
		return lv_error(b, what, name);
	if (virDomainIsActive(dom) != 1) {
		virDomainFree(dom);
		if (!what)
			return balloon_error(b, -ENOENT, "domain is not running");
		return balloon_error(b, -ENOENT, "failed to %s of '%s': domain is not running", what, name);
	}
	*ret = dom;
	return 0;
}

static int lv_guest(ovc_balloon *b, const char *name, struct ovc_balloon_guest *ret)
{
	virDomainStatsRecordPtr *recs = NULL;
	virDomainPtr doms[2] = { NULL, NULL };
	int r, nrec;

	r = lookup(b, name, NULL, &doms[0]);
	if (r < 0)
		return r;
	nrec = virDomainListGetStats(doms, VIR_DOMAIN_STATS_BALLOON, &recs, STATS_FLAGS);
	if (nrec < 0)
		r = lv_error(b, NULL, name);
	else if (nrec == 0)
		r = balloon_error(b, -ENOENT, "No such domain");
	else
		r = record_to_guest(b, recs[0], ret);
	virDomainStatsRecordListFree(recs);
	virDomainFree(doms[0]);
	return r;
}

static int lv_set_target(ovc_balloon *b, const char *name, uint64_t target_bytes)
{
	virDomainPtr dom;
	unsigned long kib;
	int r = ovc_balloon_bytes_to_kib(target_bytes, &kib);

	if (r < 0)
		return balloon_error(b, r, "the target is less than 1 KiB");
	r = lookup(b, name, NULL, &dom);
	if (r < 0)
		return r;
	/* Returns once QEMU took the target; the guest gets there later. */
	if (virDomainSetMemoryFlags(dom, kib, VIR_DOMAIN_AFFECT_LIVE) < 0)
		r = lv_error(b, NULL, name);
	virDomainFree(dom);
	return r;
}

static void lv_mark_absent(ovc_balloon *b, const char *name)
{
	virDomainPtr dom;

	if (ensure_conn(b) < 0 || !(dom = virDomainLookupByName(be(b)->conn, name)))
		return;
	struct lv_guest *s = guest_state(b, dom);

	if (s)
		s->absent = true;
	virDomainFree(dom);
}

static int lv_process(ovc_balloon *b)
{
	struct lv_backend *l = be(b);

	if ((l->conn && !atomic_load(&l->lost)) || now_usec(CLOCK_MONOTONIC) < l->retry_at_usec)
		return 0;
	return ensure_conn(b);
}

static int lv_timeout_msec(const ovc_balloon *b)
{
	const struct lv_backend *l = be(b);
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	if (l->conn && !atomic_load(&l->lost))
		return -1;
	if (atomic_load(&l->lost) && l->conn)
		return 0; /* just lost: process() reconnects at once */
	return l->retry_at_usec > now ? (int)MIN((l->retry_at_usec - now) / 1000 + 1, (uint64_t)INT32_MAX) : 0;
}

static void lv_close(ovc_balloon *b)
{
	struct lv_backend *l = be(b);

	if (!l)
		return;
	disconnect(b);
	loop_put();
	free(l->guests);
	free(l);
	b->backend = NULL;
}

static int lv_open(ovc_balloon *b)
{
	struct lv_backend *l = calloc(1, sizeof(*l));
	int r;

	if (!l)
		return -ENOMEM;
	l->cb_lifecycle = l->cb_balloon = -1;
	b->backend = l;
	/* The event implementation must be in place before the connection
	 * is opened, or the connection gets no events and no keepalive. */
	r = loop_get();
	if (r < 0) {
		free(l);
		b->backend = NULL;
		return balloon_error(b, r, "cannot start the libvirt event loop");
	}
	r = ensure_conn(b);
	if (r < 0) {
		lv_close(b);
		return r;
	}
	return 0;
}

const struct balloon_ops balloon_libvirt_ops = {
	.name = "libvirt",
	.open = lv_open,
	.close = lv_close,
	.list = lv_list,
	.guest = lv_guest,
	.set_target = lv_set_target,
	.mark_absent = lv_mark_absent,
	.process = lv_process,
	.timeout_msec = lv_timeout_msec,
};
