/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the QMP balloon driver (balloon-driver/qmp.c) against real
 * QEMU 7.2 processes (TCG) booting the real Linux guest of
 * scripts/build-guest-image. Two guests are shared by the tests: one with
 * virtio_balloon loaded, one booted with ovc.noballoon. The guest's own view
 * (MemTotal from /proc/meminfo) is read through ovc-guest-workload on its
 * second serial port. Nothing is mocked.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "balloon-checks.h"

struct fixture {
	const char *skip;
	struct harness_image img;
	char qmp_dir[128];
	struct harness_guest good, nodrv;
	ovcd_balloon *b;
	struct balloon_events ev;
};

/* A handle that has set both guests up. */
static int open_driver(struct fixture *f, unsigned confirm_msec, ovcd_balloon **ret)
{
	struct ovcd_balloon_opts o = balloon_test_opts(OVC_BALLOON_QMP, confirm_msec, &f->ev);

	o.qmp_dir = f->qmp_dir;
	return balloon_open_listed(&o, f->good.name, f->nodrv.name, ret);
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

	ovcd_balloon_free(f->b);
	harness_guest_stop(&f->good);
	harness_guest_stop(&f->nodrv);
	if (f->qmp_dir[0])
		rmdir(f->qmp_dir);
	return 0;
}

static void test_list_and_real_stats(void **state)
{
	struct fixture *f = *state;
	struct ovcd_balloon_guest *gs = NULL, g;
	size_t n = 0;
	bool found_good = false, found_nodrv = false;

	SKIP_IF(f->skip);
	assert_ovc_ok(ovcd_balloon_list(f->b, &gs, &n));
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
	assert_ovc_ok(ovcd_balloon_guest(f->b, f->good.name, &g));

	check_real_stats(f->b, &f->good, GIB);
	assert_false(ovcd_known(g.stats.rss_bytes)); /* QMP does not tell */
}

static void test_stats_follow_guest(void **state)
{
	struct fixture *f = *state;

	SKIP_IF(f->skip);
	check_stats_follow_guest(f->b, &f->good);
}

static void test_inflate_deflate(void **state)
{
	struct fixture *f = *state;

	SKIP_IF(f->skip);
	check_inflate_deflate(f->b, &f->ev, &f->good, 512 * MIB, GIB);
}

static void test_target_out_of_range(void **state)
{
	struct fixture *f = *state;

	SKIP_IF(f->skip);
	assert_ovc(ovcd_balloon_set_target(f->b, f->good.name, 2 * GIB, 0), -ERANGE);
	assert_non_null(strstr(ovcd_balloon_error(f->b), f->good.name));
	assert_ovc(ovcd_balloon_set_target(f->b, f->good.name, 0, 0), -ERANGE);
	assert_ovc(ovcd_balloon_set_target(f->b, f->good.name, GIB, 0x80), -EINVAL);
	assert_ovc(ovcd_balloon_set_target(f->b, "ovc-no-such-guest", GIB, 0), -ENOENT);
	assert_non_null(strstr(ovcd_balloon_error(f->b), "'ovc-no-such-guest'"));
}

static void test_monitor_held_by_another_client(void **state)
{
	struct fixture *f = *state;
	struct balloon_events ev2 = { 0 };
	struct ovcd_balloon_opts o = balloon_test_opts(OVC_BALLOON_QMP, 60000, &ev2);
	struct ovcd_balloon_guest *gs = NULL, g;
	ovcd_balloon *b2 = NULL;
	size_t n = 99;

	SKIP_IF(f->skip);
	/* f->b holds both monitors; QEMU serves one client at a time, so a
	 * second driver sees no greeting. It must give up on them, not hang
	 * or fail as a whole, and leave the first driver undisturbed. */
	o.qmp_dir = f->qmp_dir;
	assert_ovc_ok(ovcd_balloon_new(&o, &b2));
	assert_ovc_ok(ovcd_balloon_list(b2, &gs, &n));
	assert_int_equal(n, 0);
	free(gs);
	assert_ovc(ovcd_balloon_set_target(b2, f->good.name, GIB, 0), -ENOENT);
	assert_non_null(strstr(ovcd_balloon_error(b2), f->good.name));
	ovcd_balloon_free(b2);
	assert_ovc_ok(ovcd_balloon_guest(f->b, f->good.name, &g));
}

static void test_no_balloon_driver(void **state)
{
	struct fixture *f = *state;
	ovcd_balloon *b = NULL;
	struct ovcd_balloon_guest g;
	struct harness_meminfo mi;

	SKIP_IF(f->skip);
	/* QEMU serves one QMP client at a time: hand the sockets over to a
	 * handle with a short confirmation timeout. */
	ovcd_balloon_free(f->b);
	f->b = NULL;
	assert_ovc_ok(open_driver(f, 8000, &b));
	/* QEMU says {} to "balloon" even here; the driver must not. */
	assert_ovc(ovcd_balloon_set_target(b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT), -ENODEV);
	assert_non_null(strstr(ovcd_balloon_error(b), f->nodrv.name));
	assert_non_null(strstr(ovcd_balloon_error(b), "not loaded"));
	assert_ovc_ok(ovcd_balloon_guest(b, f->nodrv.name, &g));
	assert_int_equal(g.driver, OVC_BALLOON_DRIVER_ABSENT);
	/* Known absent now: refused without asking QEMU, even without WAIT. */
	assert_ovc(ovcd_balloon_set_target(b, f->nodrv.name, 256 * MIB, 0), -ENODEV);
	assert_non_null(strstr(ovcd_balloon_error(b), "not loaded"));
	assert_int_equal(g.stats.actual_bytes, 512 * MIB);
	assert_true(g.stats.stale); /* no stats ever: unknown, not zero */
	assert_false(ovcd_known(g.stats.available_bytes));
	/* And the guest really kept its memory. */
	assert_ovc_ok(harness_guest_meminfo(&f->nodrv, &mi));
	assert_true(mi.total_kib > 400 * 1024);
	ovcd_balloon_free(b);
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

	SKIP_IF(f->skip);
	/* Count the killed guest's STOPPED events only: on a loaded machine
	 * the other guest may miss a reply deadline and be dropped and found
	 * again meanwhile, which is not what this test is about. */
	f->ev.watch = f->nodrv.name;
	f->ev.stopped_watched = 0;
	/* The no-driver guest never reaches the target, so the call is still
	 * waiting when QEMU dies under it. */
	assert_int_equal(pthread_create(&t, NULL, kill_later, &f->nodrv), 0);
	r = ovcd_balloon_set_target(f->b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT);
	pthread_join(t, NULL);
	assert_true(r == -ENOTCONN || r == -ENOENT);
	assert_non_null(strstr(ovcd_balloon_error(f->b), f->nodrv.name));
	ovcd_balloon_process(f->b);
	assert_int_equal(f->ev.stopped_watched, 1);
	f->ev.watch = NULL;
	/* The guest is gone from the list; the other one carries on. */
	assert_ovc(ovcd_balloon_set_target(f->b, f->nodrv.name, 256 * MIB, 0), -ENOENT);
	assert_ovc_ok(ovcd_balloon_set_target(f->b, f->good.name, GIB, 0));
}

/* Run the caller's side of the event loop: poll the driver's fd with its
 * timeout, process, until @name's STARTED (or STOPPED) event came. */
static bool wait_event_via_fd(struct fixture *f, const char *name, bool started, unsigned timeout_msec)
{
	uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_msec * 1000ull;

	while (now_usec(CLOCK_MONOTONIC) < deadline) {
		struct pollfd p = { .fd = ovcd_balloon_fd(f->b), .events = POLLIN };
		int t = ovcd_balloon_timeout_msec(f->b);

		poll(&p, 1, t < 0 || t > 1000 ? 1000 : t);
		assert_true(ovcd_balloon_process(f->b) >= 0);
		if (strcmp(started ? f->ev.last_started : f->ev.last_stopped, name) == 0)
			return true;
	}
	return false;
}

static void test_new_guest_discovered(void **state)
{
	struct fixture *f = *state;
	struct harness_guest_opts go = {
		.mem_mib = 256, .qmp_dir = f->qmp_dir, .deflate_on_oom = true, .free_page_reporting = true,
	};
	struct harness_guest g3 = { .serial_fd = -1 };
	struct ovcd_balloon_guest g;

	SKIP_IF(f->skip);
	/* A QEMU appearing in the directory is found through inotify and
	 * announced without the caller listing; its exit is announced too.
	 * Its device options show as capabilities. */
	assert_ovc_ok(harness_qemu_start(&f->img, &go, &g3));
	if (!wait_event_via_fd(f, g3.name, true, 30000)) {
		harness_guest_stop(&g3);
		fail_msg("no STARTED event for %s", g3.name);
	}
	assert_ovc_ok(ovcd_balloon_guest(f->b, g3.name, &g));
	assert_int_equal(g.stats.max_bytes, 256 * MIB);
	assert_int_equal(g.caps & ~OVC_BALLOON_CAP_STATS_POLLING,
			 OVC_BALLOON_CAP_DEVICE | OVC_BALLOON_CAP_DEFLATE_ON_OOM |
				 OVC_BALLOON_CAP_FREE_PAGE_REPORTING);
	harness_guest_stop(&g3);
	assert_true(wait_event_via_fd(f, g3.name, false, 30000));
	assert_ovc(ovcd_balloon_guest(f->b, g3.name, &g), -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_and_real_stats),
		cmocka_unit_test(test_stats_follow_guest),
		cmocka_unit_test(test_inflate_deflate),
		cmocka_unit_test(test_target_out_of_range),
		cmocka_unit_test(test_new_guest_discovered),
		cmocka_unit_test(test_monitor_held_by_another_client),
		cmocka_unit_test(test_no_balloon_driver),
		cmocka_unit_test(test_guest_killed_mid_call),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
