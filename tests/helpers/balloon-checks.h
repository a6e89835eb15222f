/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checks shared by the integration tests of every balloon backend
 * (test-qmp.c, test-libvirt.c): the same guest-visible behaviour is asserted
 * whichever way the guest is reached. Header-only, for the test binaries.
 */
#ifndef OVC_BALLOON_CHECKS_H
#define OVC_BALLOON_CHECKS_H

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "guest-harness.h"
#include "ovc-test.h"
#include "common/util.h"

/* What ovcd_balloon_process() delivered. CHANGED and stopped_watched count
 * only @watch's: other test processes may run guests on the same libvirtd. */
struct balloon_events {
	const char *watch;
	unsigned changed, started, stopped, stopped_watched, disconnected, reconnected, stats, failed;
	uint64_t last_actual;
	char last_started[64], last_stopped[64];
};

static inline void balloon_events_record(void *userdata, const struct ovcd_balloon_event *ev)
{
	struct balloon_events *e = userdata;

	switch (ev->type) {
	case OVC_BALLOON_EVENT_CHANGED:
		if (ev->guest && e->watch && strcmp(ev->guest, e->watch) == 0) {
			e->changed++;
			e->last_actual = ev->actual_bytes;
		}
		break;
	case OVC_BALLOON_EVENT_STARTED:
		e->started++;
		snprintf(e->last_started, sizeof(e->last_started), "%s", ev->guest ? ev->guest : "");
		break;
	case OVC_BALLOON_EVENT_STOPPED:
		e->stopped++;
		if (ev->guest && e->watch && strcmp(ev->guest, e->watch) == 0)
			e->stopped_watched++;
		snprintf(e->last_stopped, sizeof(e->last_stopped), "%s", ev->guest ? ev->guest : "");
		break;
	case OVC_BALLOON_EVENT_DISCONNECTED:
		e->disconnected++;
		break;
	case OVC_BALLOON_EVENT_RECONNECTED:
		e->reconnected++;
		break;
	case OVC_BALLOON_EVENT_STATS:
		e->stats++;
		break;
	case OVC_BALLOON_EVENT_FAILED:
		e->failed++;
		break;
	}
}

/* Options every backend's test uses: stats every second, quick reconnects. */
static inline struct ovcd_balloon_opts balloon_test_opts(enum ovcd_balloon_backend backend, unsigned confirm_msec,
							struct balloon_events *ev)
{
	struct ovcd_balloon_opts o = {
		.size = sizeof(o),
		.backend = backend,
		.stats_period_sec = 1,
		.confirm_timeout_msec = confirm_msec,
		.reconnect_min_msec = 200,
		.reconnect_max_msec = 2000,
		.event_fn = balloon_events_record,
		.event_userdata = ev,
	};

	return o;
}

/* One turn of the caller's loop: ask for fresh figures, wait for the
 * driver's fd (at most 100 ms), process what came. The drivers never wait
 * for a peer: figures and answers arrive through the fd. */
static inline void balloon_pump(ovcd_balloon *b)
{
	struct ovcd_balloon_guest *gs = NULL;
	struct pollfd p = { .fd = ovcd_balloon_fd(b), .events = POLLIN };
	size_t n;
	int t = ovcd_balloon_timeout_msec(b);

	if (ovcd_balloon_list(b, &gs, &n) == 0)
		free(gs);
	poll(&p, 1, t < 0 || t > 100 ? 100 : t);
	(void)ovcd_balloon_process(b);
}

/* Pump until @name is listed; false after @timeout_msec (a failure bound,
 * not a timing claim). */
static inline bool balloon_wait_listed(ovcd_balloon *b, const char *name, unsigned timeout_msec)
{
	uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_msec * 1000ull;
	struct ovcd_balloon_guest g;

	while (ovcd_balloon_guest(b, name, &g) < 0) {
		if (now_usec(CLOCK_MONOTONIC) >= deadline)
			return false;
		balloon_pump(b);
	}
	return true;
}

/* A handle on @o once it listed guests @a and @b (the drivers set guests
 * up and read figures through their fd, never in the call). */
static inline int balloon_open_listed(const struct ovcd_balloon_opts *o, const char *a, const char *b,
				      ovcd_balloon **ret)
{
	int r = ovcd_balloon_new(o, ret);

	if (r < 0)
		return r;
	if (!balloon_wait_listed(*ret, a, 60000) || !balloon_wait_listed(*ret, b, 60000)) {
		ovcd_balloon_free(*ret);
		*ret = NULL;
		return -ETIMEDOUT;
	}
	return 0;
}

struct balloon_check {
	ovcd_balloon *b;
	struct balloon_events *ev;
	const char *guest;
	uint64_t bytes;
};

static inline bool balloon_stats_fresh(void *arg)
{
	struct balloon_check *c = arg;
	struct ovcd_balloon_guest g;

	balloon_pump(c->b);
	return ovcd_balloon_guest(c->b, c->guest, &g) == 0 && !g.stats.stale &&
	       ovcd_known(g.stats.total_bytes);
}

static inline bool balloon_event_reached(void *arg)
{
	struct balloon_check *c = arg;

	ovcd_balloon_process(c->b);
	return c->ev->changed > 0 && c->ev->last_actual <= c->bytes + MIB;
}

static inline bool balloon_got_stopped(void *arg)
{
	struct balloon_check *c = arg;

	ovcd_balloon_process(c->b);
	return c->ev->stopped_watched > 0;
}

/* Stats polling is on (the driver turned it on): the guest answers within
 * a few periods, and what it says matches its own /proc/meminfo. */
static inline void check_real_stats(ovcd_balloon *b, struct harness_guest *hg, uint64_t max_bytes)
{
	struct balloon_check c = { .b = b, .guest = hg->name };
	struct ovcd_balloon_guest g;
	struct harness_meminfo mi;

	assert_true(harness_wait_until(balloon_stats_fresh, &c, 60000));
	assert_ovc_ok(ovcd_balloon_guest(b, hg->name, &g));
	assert_int_equal(g.driver, OVC_BALLOON_DRIVER_LOADED);
	assert_ovc_ok(harness_guest_meminfo(hg, &mi));
	/* virtio-balloon's total is the guest's totalram, which is what
	 * /proc/meminfo calls MemTotal (libvirt names it "available"). */
	assert_int_equal(g.stats.total_bytes, mi.total_kib * KIB);
	assert_true(ovcd_known(g.stats.available_bytes));
	assert_true(g.stats.available_bytes <= g.stats.total_bytes);
	assert_true(g.stats.free_bytes <= g.stats.total_bytes);
	assert_int_equal(g.stats.actual_bytes, max_bytes);
}

static inline bool balloon_available_below(void *arg)
{
	struct balloon_check *c = arg;
	struct ovcd_balloon_guest g;

	balloon_pump(c->b);
	return ovcd_balloon_guest(c->b, c->guest, &g) == 0 && ovcd_known(g.stats.available_bytes) &&
	       g.stats.available_bytes < c->bytes;
}

static inline bool balloon_available_above(void *arg)
{
	struct balloon_check *c = arg;
	struct ovcd_balloon_guest g;

	balloon_pump(c->b);
	return ovcd_balloon_guest(c->b, c->guest, &g) == 0 && ovcd_known(g.stats.available_bytes) &&
	       g.stats.available_bytes > c->bytes;
}

/* The stats follow the guest: ovc-guest-workload allocates and touches
 * 300 MiB, the guest's MemAvailable as the driver reports it drops by most
 * of that within a few polling periods, and comes back after "free". */
static inline void check_stats_follow_guest(ovcd_balloon *b, struct harness_guest *hg)
{
	struct balloon_check c = { .b = b, .guest = hg->name };
	struct ovcd_balloon_guest g;
	char reply[128];
	uint64_t before, held;

	assert_ovc_ok(ovcd_balloon_guest(b, hg->name, &g));
	assert_true(ovcd_known(g.stats.available_bytes));
	before = g.stats.available_bytes;
	assert_ovc_ok(harness_guest_cmd(hg, "alloc 300M", reply, sizeof(reply), 60000));
	/* "ok held=BYTES", maybe followed by how long the allocation took. */
	assert_true(sscanf(reply, "ok held=%" SCNu64, &held) == 1);
	assert_int_equal(held, 300 * MIB);
	c.bytes = before - 250 * MIB;
	assert_true(harness_wait_until(balloon_available_below, &c, 30000));
	assert_ovc_ok(harness_guest_cmd(hg, "free", reply, sizeof(reply), 10000));
	assert_true(sscanf(reply, "ok held=%" SCNu64, &held) == 1);
	assert_int_equal(held, 0);
	c.bytes = before - 50 * MIB;
	assert_true(harness_wait_until(balloon_available_above, &c, 30000));
}

/* Inflate to @half_bytes and see the guest's own MemTotal drop by it (the
 * guests run without deflate-on-oom, which would keep MemTotal as is), see
 * the BALLOON_CHANGE event, deflate to @max_bytes and see MemTotal return. */
static inline void check_inflate_deflate(ovcd_balloon *b, struct balloon_events *ev, struct harness_guest *hg,
					 uint64_t half_bytes, uint64_t max_bytes)
{
	struct balloon_check c = { .b = b, .ev = ev, .guest = hg->name, .bytes = half_bytes };
	struct harness_meminfo before, inflated, after;
	struct ovcd_balloon_guest g;

	assert_ovc_ok(harness_guest_meminfo(hg, &before));
	ev->changed = 0;
	ev->watch = hg->name;
	assert_ovc_ok(ovcd_balloon_set_target(b, hg->name, half_bytes, OVC_BALLOON_TARGET_WAIT));
	assert_ovc_ok(ovcd_balloon_guest(b, hg->name, &g));
	assert_true(g.stats.actual_bytes <= half_bytes + MIB);
	assert_ovc_ok(harness_guest_meminfo(hg, &inflated));
	assert_true(before.total_kib - inflated.total_kib >= (max_bytes - half_bytes) / KIB - 2048);
	assert_int_equal(inflated.oom_kill, before.oom_kill);
	/* The event reached the caller through process(). QEMU throttles
	 * BALLOON_CHANGE to one a second, so the last one may still come. */
	assert_true(harness_wait_until(balloon_event_reached, &c, 10000));

	assert_ovc_ok(ovcd_balloon_set_target(b, hg->name, max_bytes, OVC_BALLOON_TARGET_WAIT));
	assert_ovc_ok(harness_guest_meminfo(hg, &after));
	assert_true(after.total_kib + 1024 >= before.total_kib);
	assert_ovc_ok(ovcd_balloon_guest(b, hg->name, &g));
	assert_true(g.stats.actual_bytes + MIB >= max_bytes);
}

#endif
