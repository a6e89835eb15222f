/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the libvirt balloon driver (balloon-driver/libvirt.c) against
 * a real libvirtd 9.0 (started by the harness if none runs) and real
 * transient domains (type qemu, TCG) booting the guest of
 * scripts/build-guest-image: one with virtio_balloon, one booted with
 * ovc.noballoon. Stats are compared with the guest's own /proc/meminfo read
 * through ovc-guest-workload; libvirtd is killed and restarted under the
 * driver; a domain is destroyed while a call waits on it. Nothing is mocked.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "balloon-checks.h"

struct fixture {
	const char *skip;
	struct harness_image img;
	struct harness_libvirtd lvd;
	struct harness_guest good, nodrv;
	ovc_balloon *b;
	struct balloon_events ev;
};

static int open_driver(struct fixture *f, unsigned confirm_msec, ovc_balloon **ret)
{
	struct ovc_balloon_opts o = balloon_test_opts(OVC_BALLOON_LIBVIRT, confirm_msec, &f->ev);

	o.uri = "qemu:///system";
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
	if (harness_image(&f.img, &why) < 0 || harness_libvirtd_start(&f.lvd, &why) < 0) {
		f.skip = why;
		return 0;
	}
	/* No <stats period> in the XML: the driver must turn polling on. */
	if (harness_domain_start(&f.lvd, &f.img, &go, &f.good) < 0)
		return -1;
	go.mem_mib = 512;
	go.no_balloon_driver = true;
	if (harness_domain_start(&f.lvd, &f.img, &go, &f.nodrv) < 0)
		return -1;
	if (harness_guest_wait_ready(&f.good, 120000) < 0 || harness_guest_wait_ready(&f.nodrv, 120000) < 0)
		return -1;
	return open_driver(&f, 60000, &f.b) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ovc_balloon_free(f->b);
	harness_guest_stop(&f->good);
	harness_guest_stop(&f->nodrv);
	harness_libvirtd_stop(&f->lvd);
	return 0;
}

static void test_list_and_real_stats(void **state)
{
	struct fixture *f = *state;
	struct ovc_balloon_guest *gs = NULL, g;
	size_t n = 0;
	bool found = false;

	SKIP_IF_NEEDED(f);
	assert_ovc_ok(ovc_balloon_list(f->b, &gs, &n));
	for (size_t i = 0; i < n; i++) {
		if (strcmp(gs[i].name, f->good.name) != 0)
			continue;
		found = true;
		assert_int_equal(strlen(gs[i].id), 36); /* the UUID */
		assert_int_equal(gs[i].stats.max_bytes, GIB);
		assert_true(gs[i].caps & OVC_BALLOON_CAP_DEVICE);
		assert_true(gs[i].caps & OVC_BALLOON_CAP_STATS_POLLING); /* turned on by the driver */
		assert_false(gs[i].caps & OVC_BALLOON_CAP_DEFLATE_ON_OOM);
		assert_false(gs[i].caps & OVC_BALLOON_CAP_FREE_PAGE_REPORTING);
	}
	free(gs);
	assert_true(found);

	check_real_stats(f->b, &f->good, GIB);
	assert_ovc_ok(ovc_balloon_guest(f->b, f->good.name, &g));
	assert_true(ovc_known(g.stats.rss_bytes)); /* QEMU's RSS on the host */
	assert_true(g.stats.rss_bytes > 0);
}

static void test_inflate_deflate(void **state)
{
	struct fixture *f = *state;

	SKIP_IF_NEEDED(f);
	/* 512 MiB + 1000 bytes: libvirt gets whole KiB, rounded down. */
	check_inflate_deflate(f->b, &f->ev, &f->good, 512 * MIB + 1000, GIB);
}

static void test_errors_name_the_guest(void **state)
{
	struct fixture *f = *state;

	SKIP_IF_NEEDED(f);
	assert_ovc(ovc_balloon_set_target(f->b, "ovc-no-such-domain", GIB, 0), -ENOENT);
	assert_string_equal(ovc_balloon_error(f->b),
			    "failed to set balloon of 'ovc-no-such-domain' to 1024MiB: No such domain");
	assert_ovc(ovc_balloon_set_target(f->b, f->good.name, 2 * GIB, 0), -ERANGE);
	assert_non_null(strstr(ovc_balloon_error(f->b), f->good.name));
	assert_ovc(ovc_balloon_set_target(f->b, f->good.name, 1000, 0), -EINVAL);
	assert_non_null(strstr(ovc_balloon_error(f->b), "less than 1 KiB"));
}

static void test_no_balloon_driver(void **state)
{
	struct fixture *f = *state;
	ovc_balloon *b = NULL;
	struct ovc_balloon_guest g;

	SKIP_IF_NEEDED(f);
	assert_ovc_ok(open_driver(f, 8000, &b));
	/* libvirt, like QEMU, accepts the target; the driver must not. */
	assert_ovc(ovc_balloon_set_target(b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT), -ENODEV);
	assert_non_null(strstr(ovc_balloon_error(b), f->nodrv.name));
	assert_non_null(strstr(ovc_balloon_error(b), "not loaded"));
	assert_ovc_ok(ovc_balloon_guest(b, f->nodrv.name, &g));
	assert_int_equal(g.driver, OVC_BALLOON_DRIVER_ABSENT);
	assert_true(g.stats.stale);
	assert_false(ovc_known(g.stats.available_bytes));
	ovc_balloon_free(b);
}

static void *destroy_later(void *arg)
{
	struct fixture *f = arg;
	virDomainPtr dom;

	usleep(1500 * 1000);
	dom = virDomainLookupByName(f->lvd.conn, f->nodrv.name);
	if (dom) {
		virDomainDestroy(dom);
		virDomainFree(dom);
	}
	return NULL;
}

static void test_destroyed_mid_call(void **state)
{
	struct fixture *f = *state;
	char expect[256];
	pthread_t t;
	int r;

	SKIP_IF_NEEDED(f);
	struct balloon_check c = { .b = f->b, .ev = &f->ev };

	f->ev.stopped = 0;
	/* Without a balloon driver the wait runs until the domain is gone. */
	assert_int_equal(pthread_create(&t, NULL, destroy_later, f), 0);
	r = ovc_balloon_set_target(f->b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT);
	pthread_join(t, NULL);
	assert_int_equal(r, -ENOENT);
	/* Depending on where the destroy lands: the lookup fails, or it
	 * finds the domain on its way out. */
	snprintf(expect, sizeof(expect), "failed to inflate balloon of '%s' to 256MiB: ", f->nodrv.name);
	assert_memory_equal(ovc_balloon_error(f->b), expect, strlen(expect));
	if (strcmp(ovc_balloon_error(f->b) + strlen(expect), "No such domain") != 0)
		assert_string_equal(ovc_balloon_error(f->b) + strlen(expect), "domain is not running");
	assert_true(harness_wait_until(balloon_got_stopped, &c, 10000));
	assert_string_equal(f->ev.last_stopped, f->nodrv.name);
}

static bool back_again(void *arg)
{
	struct fixture *f = arg;
	struct ovc_balloon_guest g;

	ovc_balloon_process(f->b);
	return f->ev.reconnected > 0 && ovc_balloon_guest(f->b, f->good.name, &g) == 0;
}

static void test_libvirtd_restart(void **state)
{
	struct fixture *f = *state;
	struct ovc_balloon_guest g;

	SKIP_IF_NEEDED(f);
	if (!f->lvd.started_libvirtd)
		skip_because("libvirtd was already running; not restarting a daemon the test did not start");
	f->ev.disconnected = f->ev.reconnected = 0;
	assert_ovc_ok(harness_libvirtd_restart(&f->lvd));
	/* The close callback saw the EOF; the next calls reconnect with
	 * back-off and carry on against the same, still running, guest. */
	assert_true(harness_wait_until(back_again, f, 60000));
	assert_true(f->ev.disconnected >= 1);
	assert_int_equal(f->ev.reconnected, 1);
	assert_ovc_ok(ovc_balloon_set_target(f->b, f->good.name, 768 * MIB, OVC_BALLOON_TARGET_WAIT));
	assert_ovc_ok(ovc_balloon_guest(f->b, f->good.name, &g));
	assert_true(g.stats.actual_bytes <= 768 * MIB + MIB);
	assert_ovc_ok(ovc_balloon_set_target(f->b, f->good.name, GIB, OVC_BALLOON_TARGET_WAIT));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_and_real_stats),
		cmocka_unit_test(test_inflate_deflate),
		cmocka_unit_test(test_errors_name_the_guest),
		cmocka_unit_test(test_no_balloon_driver),
		cmocka_unit_test(test_destroyed_mid_call),
		cmocka_unit_test(test_libvirtd_restart),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
