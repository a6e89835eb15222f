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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "balloon-checks.h"

struct fixture {
	const char *skip;
	struct harness_image img;
	struct harness_libvirtd lvd;
	struct harness_guest good, nodrv;
	ovcd_balloon *b;
	struct balloon_events ev;
};

/* Such a handle once it listed both guests (its worker thread asks
 * libvirtd). */
static int open_driver_listed(struct fixture *f, unsigned confirm_msec, ovcd_balloon **ret)
{
	struct ovcd_balloon_opts o = balloon_test_opts(OVC_BALLOON_LIBVIRT, confirm_msec, &f->ev);

	o.uri = "qemu:///system";
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
	if (harness_image(&f.img, &why) < 0 || harness_libvirtd_start(&f.lvd, &why) < 0) {
		f.skip = why;
		return 0;
	}
	/* No <stats period> in the XML: the driver must turn polling on. */
	int r = harness_domain_start(&f.lvd, &f.img, &go, &f.good);
	if (r == -EOPNOTSUPP) {
		f.skip = HARNESS_NO_NAMESPACE_WHY;
		return 0;
	}
	if (r < 0)
		return -1;
	go.mem_mib = 512;
	go.no_balloon_driver = true;
	if (harness_domain_start(&f.lvd, &f.img, &go, &f.nodrv) < 0)
		return -1;
	if (harness_guest_wait_ready(&f.good, 120000) < 0 || harness_guest_wait_ready(&f.nodrv, 120000) < 0)
		return -1;
	return open_driver_listed(&f, 60000, &f.b) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ovcd_balloon_free(f->b);
	harness_guest_stop(&f->good);
	harness_guest_stop(&f->nodrv);
	harness_libvirtd_stop(&f->lvd);
	return 0;
}

static void test_list_and_real_stats(void **state)
{
	struct fixture *f = *state;
	struct ovcd_balloon_guest *gs = NULL, g;
	size_t n = 0;
	bool found = false;

	SKIP_IF(f->skip);
	assert_ovc_ok(ovcd_balloon_list(f->b, &gs, &n));
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
	assert_ovc_ok(ovcd_balloon_guest(f->b, f->good.name, &g));
	assert_true(ovcd_known(g.stats.rss_bytes)); /* QEMU's RSS on the host */
	assert_true(g.stats.rss_bytes > 0);
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
	/* 512 MiB + 1000 bytes: libvirt gets whole KiB, rounded down. */
	check_inflate_deflate(f->b, &f->ev, &f->good, 512 * MIB + 1000, GIB);
}

static void test_caps_from_the_domain(void **state)
{
	struct fixture *f = *state;
	struct harness_guest_opts go = {
		.mem_mib = 256, .deflate_on_oom = true, .free_page_reporting = true, .stats_period_sec = 5,
	};
	struct harness_guest g3 = { .serial_fd = -1 };
	struct ovcd_balloon_guest g;

	SKIP_IF(f->skip);
	/* autodeflate, freePageReporting and <stats period> from the live
	 * XML; no need to wait for the guest to boot. */
	assert_ovc_ok(harness_domain_start(&f->lvd, &f->img, &go, &g3));
	assert_true(balloon_wait_listed(f->b, g3.name, 60000));
	assert_ovc_ok(ovcd_balloon_guest(f->b, g3.name, &g));
	harness_guest_stop(&g3);
	assert_int_equal(g.caps, OVC_BALLOON_CAP_DEVICE | OVC_BALLOON_CAP_DEFLATE_ON_OOM |
					 OVC_BALLOON_CAP_FREE_PAGE_REPORTING | OVC_BALLOON_CAP_STATS_POLLING);
	assert_int_equal(g.stats.max_bytes, 256 * MIB);
}

static void test_errors_name_the_guest(void **state)
{
	struct fixture *f = *state;

	SKIP_IF(f->skip);
	assert_ovc(ovcd_balloon_set_target(f->b, "ovc-no-such-domain", GIB, 0), -ENOENT);
	assert_string_equal(ovcd_balloon_error(f->b),
			    "failed to set balloon of 'ovc-no-such-domain' to 1024MiB: No such domain");
	assert_ovc(ovcd_balloon_set_target(f->b, f->good.name, 2 * GIB, 0), -ERANGE);
	assert_non_null(strstr(ovcd_balloon_error(f->b), f->good.name));
	assert_ovc(ovcd_balloon_set_target(f->b, f->good.name, 1000, 0), -EINVAL);
	assert_non_null(strstr(ovcd_balloon_error(f->b), "less than 1 KiB"));
}

static void test_no_balloon_driver(void **state)
{
	struct fixture *f = *state;
	ovcd_balloon *b = NULL;
	struct ovcd_balloon_guest g;

	SKIP_IF(f->skip);
	assert_ovc_ok(open_driver_listed(f, 8000, &b));
	/* libvirt, like QEMU, accepts the target; the driver must not. */
	assert_ovc(ovcd_balloon_set_target(b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT), -ENODEV);
	assert_non_null(strstr(ovcd_balloon_error(b), f->nodrv.name));
	assert_non_null(strstr(ovcd_balloon_error(b), "not loaded"));
	assert_ovc_ok(ovcd_balloon_guest(b, f->nodrv.name, &g));
	assert_int_equal(g.driver, OVC_BALLOON_DRIVER_ABSENT);
	/* Known absent now: refused without asking libvirt, even without WAIT. */
	assert_ovc(ovcd_balloon_set_target(b, f->nodrv.name, 256 * MIB, 0), -ENODEV);
	assert_non_null(strstr(ovcd_balloon_error(b), "not loaded"));
	assert_true(g.stats.stale);
	assert_false(ovcd_known(g.stats.available_bytes));
	ovcd_balloon_free(b);
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
	struct balloon_check c = { .ev = &f->ev };
	ovcd_balloon *b = NULL;
	const char *err;
	char expect[256];
	pthread_t t;
	int r;

	SKIP_IF(f->skip);
	/* A fresh handle has not yet concluded that the guest lacks a
	 * balloon driver, so the wait runs until the domain is gone. */
	assert_ovc_ok(open_driver_listed(f, 60000, &b));
	c.b = b;
	f->ev.watch = f->nodrv.name;
	f->ev.stopped_watched = 0;
	assert_int_equal(pthread_create(&t, NULL, destroy_later, f), 0);
	r = ovcd_balloon_set_target(b, f->nodrv.name, 256 * MIB, OVC_BALLOON_TARGET_WAIT);
	pthread_join(t, NULL);
	err = ovcd_balloon_error(b);
	assert_int_equal(r, -ENOENT);
	/* Depending on where the destroy lands: the lookup fails, or it
	 * finds the domain on its way out. */
	snprintf(expect, sizeof(expect), "failed to inflate balloon of '%s' to 256MiB: ", f->nodrv.name);
	assert_memory_equal(err, expect, strlen(expect));
	if (strcmp(err + strlen(expect), "No such domain") != 0)
		assert_string_equal(err + strlen(expect), "domain is not running");
	assert_true(harness_wait_until(balloon_got_stopped, &c, 10000));
	ovcd_balloon_free(b);
}

static bool back_again(void *arg)
{
	struct fixture *f = arg;
	struct ovcd_balloon_guest g;

	ovcd_balloon_process(f->b);
	return f->ev.reconnected > 0 && ovcd_balloon_guest(f->b, f->good.name, &g) == 0;
}

/* Whether process @pid has an fd open on @path. */
static bool process_holds(pid_t pid, const char *path)
{
	char dir[64], link[PATH_MAX], target[PATH_MAX];
	struct dirent *de;
	bool held = false;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	assert_non_null(d);
	while (!held && (de = readdir(d))) {
		ssize_t n;

		snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			held = strcmp(target, path) == 0;
		}
	}
	closedir(d);
	return held;
}

/* Also: the libvirtd this process starts holds none of its fds, not even
 * one without O_CLOEXEC (as `flock FILE CMD` hands its command): a daemon
 * that outlives the test must not keep a lock of the test's caller. */
static void test_libvirtd_restart(void **state)
{
	struct fixture *f = *state;
	struct ovcd_balloon_guest g;
	char probe[] = "/tmp/ovc-test-libvirt-fd-XXXXXX";
	int r, fd;

	SKIP_IF(f->skip);
	if (!f->lvd.started_libvirtd)
		skip_because("libvirtd was already running; not restarting a daemon the test did not start");
	f->ev.disconnected = f->ev.reconnected = 0;
	fd = mkstemp(probe); /* no O_CLOEXEC, on purpose */
	assert_true(fd >= 0);
	r = harness_libvirtd_restart(&f->lvd);
	if (r == -EBUSY) {
		close(fd);
		unlink(probe);
		skip_because("another test process uses this libvirtd; not restarting it under them");
	}
	assert_ovc_ok(r);
	assert_true(harness_libvirtd_pid() > 0);
	assert_false(process_holds(harness_libvirtd_pid(), probe));
	close(fd);
	unlink(probe);
	/* The close callback saw the EOF; the next calls reconnect with
	 * back-off and carry on against the same, still running, guest. */
	assert_true(harness_wait_until(back_again, f, 60000));
	assert_true(f->ev.disconnected >= 1);
	assert_int_equal(f->ev.reconnected, 1);
	assert_ovc_ok(ovcd_balloon_set_target(f->b, f->good.name, 768 * MIB, OVC_BALLOON_TARGET_WAIT));
	assert_ovc_ok(ovcd_balloon_guest(f->b, f->good.name, &g));
	assert_true(g.stats.actual_bytes <= 768 * MIB + MIB);
	assert_ovc_ok(ovcd_balloon_set_target(f->b, f->good.name, GIB, OVC_BALLOON_TARGET_WAIT));
}

/*
 * libvirt's in-process test:///default driver (no daemon):
 * its bulk stats have no balloon fields at all, which exercises the
 * virDomainGetInfo fallback, and it applies targets, which shows the KiB
 * rounding through the real API. Each connection gets a fresh "test"
 * domain: running, 8 GiB max, 2 GiB current.
 */
static void test_testdriver_without_bulk_stats(void **state)
{
	struct balloon_events ev = { 0 };
	struct ovcd_balloon_opts o = balloon_test_opts(OVC_BALLOON_LIBVIRT, 2000, &ev);
	struct ovcd_balloon_guest *gs = NULL, g;
	ovcd_balloon *b = NULL;
	size_t n = 0;

	o.uri = "test:///default";
	assert_ovc_ok(ovcd_balloon_new(&o, &b));
	assert_true(balloon_wait_listed(b, "test", 10000));
	assert_ovc_ok(ovcd_balloon_list(b, &gs, &n));
	assert_int_equal(n, 1);
	assert_string_equal(gs[0].name, "test");
	assert_int_equal(gs[0].stats.max_bytes, 8 * GIB);
	assert_int_equal(gs[0].stats.actual_bytes, 2 * GIB);
	assert_true(gs[0].stats.stale); /* no guest figures: unknown, not 0 */
	assert_false(ovcd_known(gs[0].stats.available_bytes));
	assert_true(gs[0].caps & OVC_BALLOON_CAP_DEVICE);
	free(gs);

	/* 1 GiB + 1023 bytes reaches libvirt as 1048576 KiB. */
	assert_ovc_ok(ovcd_balloon_set_target(b, "test", GIB + 1023, OVC_BALLOON_TARGET_WAIT));
	assert_ovc_ok(ovcd_balloon_guest(b, "test", &g));
	assert_int_equal(g.stats.actual_bytes, GIB);
	assert_ovc(ovcd_balloon_set_target(b, "test", 9 * GIB, 0), -ERANGE);
	assert_ovc(ovcd_balloon_set_target(b, "nope", GIB, 0), -ENOENT);
	assert_string_equal(ovcd_balloon_error(b), "failed to set balloon of 'nope' to 1024MiB: No such domain");
	assert_int_equal(ovcd_balloon_timeout_msec(b), -1); /* connected: no timer */
	ovcd_balloon_free(b);
}

static void test_unreachable_libvirtd(void **state)
{
	struct ovcd_balloon_opts o = balloon_test_opts(OVC_BALLOON_LIBVIRT, 2000, NULL);
	ovcd_balloon *b = (ovcd_balloon *)0x1;

	/* A URI nobody answers: -ENOTCONN with the URI in the message, and
	 * the out-parameter untouched. */
	o.uri = "qemu+unix:///system?socket=/nonexistent/ovc-test.sock";
	assert_ovc(ovcd_balloon_new(&o, &b), -ENOTCONN);
	assert_ptr_equal(b, (ovcd_balloon *)0x1);
	o.size = 8;
	assert_ovc(ovcd_balloon_new(&o, &b), -EINVAL);
	o.size = sizeof(o);
	o.backend = 99;
	assert_ovc(ovcd_balloon_new(&o, &b), -EINVAL);
}

/* Child mode (--crash-with-guests): what a test that crashes leaves
 * behind — a domain and a bare QEMU, never stopped. Prints
 * "<domain name> <qemu pid>" and exits without any cleanup. */
static int crash_with_guests(void)
{
	struct harness_guest_opts go = { .mem_mib = 256 };
	struct harness_image img;
	struct harness_libvirtd d;
	struct harness_guest dg, qg;
	const char *why;

	if (harness_image(&img, &why) < 0 || harness_libvirtd_start(&d, &why) < 0)
		return 2;
	if (harness_domain_start(&d, &img, &go, &dg) < 0 || harness_qemu_start(&img, &go, &qg) < 0)
		return 3;
	printf("%s %d\n", dg.name, (int)qg.pid);
	fflush(stdout);
	_exit(0);
}

static bool pid_gone(void *arg)
{
	return kill(*(pid_t *)arg, 0) < 0 && errno == ESRCH;
}

static void test_leftovers_of_a_crash_cleaned(void **state)
{
	struct fixture *f = *state;
	char line[128] = "", name[64], dir[128];
	int pipefd[2], status, qemu_pid = 0;
	virDomainPtr dom;
	pid_t child;
	FILE *out;

	SKIP_IF(f->skip);
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		execl("/proc/self/exe", "test-libvirt", "--crash-with-guests", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	out = fdopen(pipefd[0], "r");
	assert_non_null(fgets(line, sizeof(line), out));
	fclose(out);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_int_equal(sscanf(line, "%63s %d", name, &qemu_pid), 2);

	/* The bare QEMU died with its parent (PR_SET_PDEATHSIG). */
	assert_true(harness_wait_until(pid_gone, &qemu_pid, 10000));
	/* The domain outlived it; the next run's cleanup removes it. */
	dom = virDomainLookupByName(f->lvd.conn, name);
	assert_non_null(dom);
	virDomainFree(dom);
	harness_cleanup_leftovers(&f->lvd);
	dom = virDomainLookupByName(f->lvd.conn, name);
	assert_null(dom);
	snprintf(dir, sizeof(dir), "/tmp/%s", name);
	assert_int_equal(access(dir, F_OK), -1);
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--crash-with-guests") == 0)
		return crash_with_guests();

	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list_and_real_stats),
		cmocka_unit_test(test_stats_follow_guest),
		cmocka_unit_test(test_inflate_deflate),
		cmocka_unit_test(test_caps_from_the_domain),
		cmocka_unit_test(test_errors_name_the_guest),
		cmocka_unit_test(test_no_balloon_driver),
		cmocka_unit_test(test_destroyed_mid_call),
		cmocka_unit_test(test_leftovers_of_a_crash_cleaned),
		cmocka_unit_test(test_libvirtd_restart),
	};

	const struct CMUnitTest no_daemon[] = {
		cmocka_unit_test(test_testdriver_without_bulk_stats),
		cmocka_unit_test(test_unreachable_libvirtd),
	};
	int failed = cmocka_run_group_tests_name("libvirt-no-daemon", no_daemon, NULL, NULL);

	return failed + cmocka_run_group_tests_name("libvirt-real-guests", tests, setup, teardown);
}
