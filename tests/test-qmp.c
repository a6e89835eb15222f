/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the QMP balloon driver (balloon-driver/qmp.c) against real
 * QEMU 7.2 processes (TCG) booting the real Linux guest of
 * scripts/build-guest-image. Two guests are shared by the tests: one with
 * virtio_balloon loaded, one booted with ovc.noballoon. The guest's own view
 * (MemTotal from /proc/meminfo) is read through ovc-guest-workload on its
 * second serial port. Nothing is mocked.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "guest-harness.h"
#include "ovc-test.h"
#include "util.h"

struct fixture {
	const char *skip;
	struct harness_image img;
	char qmp_dir[128];
	struct harness_guest good, nodrv;
	ovc_balloon *b;
	/* events seen through ovc_balloon_process() */
	unsigned changed, stopped, started;
	uint64_t last_actual;
	char last_stopped[64];
};

static void on_event(void *userdata, const struct ovc_balloon_event *ev)
{
	struct fixture *f = userdata;

	switch (ev->type) {
	case OVC_BALLOON_EVENT_CHANGED:
		f->changed++;
		f->last_actual = ev->actual_bytes;
		break;
	case OVC_BALLOON_EVENT_STOPPED:
		f->stopped++;
		snprintf(f->last_stopped, sizeof(f->last_stopped), "%s", ev->guest ? ev->guest : "");
		break;
	case OVC_BALLOON_EVENT_STARTED:
		f->started++;
		break;
	default:
		break;
	}
}

static int open_driver(struct fixture *f, unsigned confirm_msec, ovc_balloon **ret)
{
	struct ovc_balloon_opts o = {
		.size = sizeof(o),
		.backend = OVC_BALLOON_QMP,
		.qmp_dir = f->qmp_dir,
		.stats_period_sec = 1,
		.confirm_timeout_msec = confirm_msec,
		.event_fn = on_event,
		.event_userdata = f,
	};

	return ovc_balloon_new(&o, ret);
}

static int setup(void **state)
{
	static struct fixture f;
	struct harness_guest_opts go = { .mem_mib = 1024 };
	const char *why = NULL;

	memset(&f, 0, sizeof(f));
	f.good.serial_fd = f.nodrv.serial_fd = -1;
	*state = &f;
	if ((f.skip = harness_qemu_missing()))
		return 0;
	if (harness_image(&f.img, &why) < 0) {
		f.skip = why;
		return 0;
	}
	harness_cleanup_leftovers(NULL);
	snprintf(f.qmp_dir, sizeof(f.qmp_dir), "/tmp/ovc-test-%d-qmp", (int)getpid());
	if (mkdir(f.qmp_dir, 0755) < 0)
		return -1;
	go.qmp_dir = f.qmp_dir;
	if (harness_qemu_start(&f.img, &go, &f.good) < 0)
		return -1;
	go.mem_mib = 512;
	go.no_balloon_driver = true;
	if (harness_qemu_start(&f.img, &go, &f.nodrv) < 0)
		return -1;
	if (harness_guest_wait_ready(&f.good, 120000) < 0 || harness_guest_wait_ready(&f.nodrv, 120000) < 0)
		return -1;
	/* Confirmation timeout generous for TCG on a shared host; the
	 * no-driver test opens its own handle with a short one. */
	return open_driver(&f, 60000, &f.b) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ovc_balloon_free(f->b);
	harness_guest_stop(&f->good);
	harness_guest_stop(&f->nodrv);
	if (f->qmp_dir[0])
		rmdir(f->qmp_dir);
	return 0;
}

#define SKIP_IF_NEEDED(f)                                                      \
	do {                                                                   \
		if ((f)->skip)                                                 \
			skip_because("%s", (f)->skip);                         \
	} while (0)

static bool stats_fresh(void *arg)
{
	struct fixture *f = arg;
	struct ovc_balloon_guest g;

	return ovc_balloon_guest(f->b, f->good.name, &g) == 0 && !g.stats.stale &&
	       ovc_known(g.stats.total_bytes);
}

static void test_list_and_real_stats(void **state)
{
	struct fixture *f = *state;
	struct ovc_balloon_guest *gs = NULL, g;
	struct harness_meminfo mi;
	size_t n = 0;
	bool found_good = false, found_nodrv = false;

	SKIP_IF_NEEDED(f);
	assert_ovc_ok(ovc_balloon_list(f->b, &gs, &n));
	for (size_t i = 0; i < n; i++) {
		if (strcmp(gs[i].name, f->good.name) == 0) {
			found_good = true;
			assert_int_equal(gs[i].stats.max_bytes, GIB);
			assert_true(gs[i].caps & OVC_BALLOON_CAP_DEVICE);
			assert_true(gs[i].caps & OVC_BALLOON_CAP_STATS_POLLING);
			assert_false(gs[i].caps & OVC_BALLOON_CAP_DEFLATE_ON_OOM);
		}
		if (strcmp(gs[i].name, f->nodrv.name) == 0) {
			found_nodrv = true;
			assert_int_equal(gs[i].stats.max_bytes, 512 * MIB);
		}
	}
	free(gs);
	assert_true(found_good);
	assert_true(found_nodrv);

	/* Polling was turned on by the driver; the guest answers within a
	 * few periods. */
	assert_true(harness_wait_until(stats_fresh, f, 60000));
	assert_ovc_ok(ovc_balloon_guest(f->b, f->good.name, &g));
	assert_int_equal(g.driver, OVC_BALLOON_DRIVER_LOADED);
	assert_ovc_ok(harness_guest_meminfo(&f->good, &mi));
	/* virtio-balloon's total is the guest's totalram, which is what
	 * /proc/meminfo calls MemTotal. */
	assert_int_equal(g.stats.total_bytes, mi.total_kib * KIB);
	assert_true(ovc_known(g.stats.available_bytes));
	assert_true(g.stats.available_bytes <= g.stats.total_bytes);
	assert_true(g.stats.free_bytes <= g.stats.total_bytes);
	assert_int_equal(g.stats.actual_bytes, GIB);
	assert_false(ovc_known(g.stats.rss_bytes));
}

static bool reached_half(void *arg)
{
	struct fixture *f = arg;

	ovc_balloon_process(f->b);
	return f->changed > 0 && f->last_actual <= 512 * MIB + MIB;
}

static void test_inflate_deflate(void **state)
{
	struct fixture *f = *state;
	struct harness_meminfo before, inflated, after;
	struct ovc_balloon_guest g;

	SKIP_IF_NEEDED(f);
	assert_ovc_ok(harness_guest_meminfo(&f->good, &before));
	f->changed = 0;

	assert_ovc_ok(ovc_balloon_set_target(f->b, f->good.name, 512 * MIB, OVC_BALLOON_TARGET_WAIT));
	assert_ovc_ok(ovc_balloon_guest(f->b, f->good.name, &g));
	assert_true(g.stats.actual_bytes <= 512 * MIB + MIB);
	assert_ovc_ok(harness_guest_meminfo(&f->good, &inflated));
	/* Without deflate-on-oom the guest's MemTotal shrinks by the balloon. */
	assert_true(before.total_kib - inflated.total_kib >= (512 - 2) * 1024);
	assert_int_equal(inflated.oom_kill, before.oom_kill);

	/* BALLOON_CHANGE reached the caller through process(). QEMU
	 * throttles it to one a second, so the last one may still come. */
	assert_true(harness_wait_until(reached_half, f, 10000));
	assert_true(f->changed > 0);

	assert_ovc_ok(ovc_balloon_set_target(f->b, f->good.name, GIB, OVC_BALLOON_TARGET_WAIT));
	assert_ovc_ok(harness_guest_meminfo(&f->good, &after));
	assert_true(after.total_kib + 1024 >= before.total_kib);
	assert_ovc_ok(ovc_balloon_guest(f->b, f->good.name, &g));
	assert_true(g.stats.actual_bytes + MIB >= GIB);
}

static void test_target_out_of_range(void **state)
{
	struct fixture *f = *state;

	SKIP_IF_NEEDED(f);
	assert_ovc(ovc_balloon_set_target(f->b, f->good.name, 2 * GIB, 0), -ERANGE);
	assert_non_null(strstr(ovc_balloon_error(f->b), f->good.name));
	assert_ovc(ovc_balloon_set_target(f->b, f->good.name, 0, 0), -ERANGE);
	assert_ovc(ovc_balloon_set_target(f->b, f->good.name, GIB, 0x80), -EINVAL);
	assert_ovc(ovc_balloon_set_target(f->b, "ovc-no-such-guest", GIB, 0), -ENOENT);
	assert_non_null(strstr(ovc_balloon_error(f->b), "'ovc-no-such-guest'"));
}

static void test_no_balloon_driver(void **state)
{
	struct fixture *f = *state;
	ovc_balloon *b = NULL;
	struct ovc_balloon_guest g;
	struct harness_meminfo mi;

	SKIP_IF_NEEDED(f);
	/* QEMU serves one QMP client at a time: hand the sockets over to a
	 * handle with a short confirmation timeout. */
	ovc_balloon_free(f->b);
	f->b = NULL;
	assert_ovc_ok(open_driver(f, 8000, &b));
	/* QEMU says {} to "balloon" even here; the driver must not. */
	assert_ovc(ovc_balloon_set_target(b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT), -ENODEV);
	assert_non_null(strstr(ovc_balloon_error(b), f->nodrv.name));
	assert_non_null(strstr(ovc_balloon_error(b), "not loaded"));
	assert_ovc_ok(ovc_balloon_guest(b, f->nodrv.name, &g));
	assert_int_equal(g.driver, OVC_BALLOON_DRIVER_ABSENT);
	assert_int_equal(g.stats.actual_bytes, 512 * MIB);
	assert_true(g.stats.stale); /* no stats ever: unknown, not zero */
	assert_false(ovc_known(g.stats.available_bytes));
	/* And the guest really kept its memory. */
	assert_ovc_ok(harness_guest_meminfo(&f->nodrv, &mi));
	assert_true(mi.total_kib > 400 * 1024);
	ovc_balloon_free(b);
	assert_ovc_ok(open_driver(f, 60000, &f->b));
}

static void *kill_later(void *arg)
{
	struct harness_guest *g = arg;

	usleep(1500 * 1000);
	kill(g->pid, SIGKILL);
	return NULL;
}

static void test_guest_killed_mid_call(void **state)
{
	struct fixture *f = *state;
	pthread_t t;
	int r;

	SKIP_IF_NEEDED(f);
	f->stopped = 0;
	/* The no-driver guest never reaches the target, so the call is still
	 * waiting when QEMU dies under it. */
	assert_int_equal(pthread_create(&t, NULL, kill_later, &f->nodrv), 0);
	r = ovc_balloon_set_target(f->b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT);
	pthread_join(t, NULL);
	assert_true(r == -ENOTCONN || r == -ENOENT);
	assert_non_null(strstr(ovc_balloon_error(f->b), f->nodrv.name));
	ovc_balloon_process(f->b);
	assert_int_equal(f->stopped, 1);
	assert_string_equal(f->last_stopped, f->nodrv.name);
	/* The guest is gone from the list; the other one carries on. */
	assert_ovc(ovc_balloon_set_target(f->b, f->nodrv.name, 256 * MIB, 0), -ENOENT);
	assert_ovc_ok(ovc_balloon_set_target(f->b, f->good.name, GIB, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_and_real_stats),
		cmocka_unit_test(test_inflate_deflate),
		cmocka_unit_test(test_target_out_of_range),
		cmocka_unit_test(test_no_balloon_driver),
		cmocka_unit_test(test_guest_killed_mid_call),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
