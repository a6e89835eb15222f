/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/host/host.c: /proc/meminfo, memory PSI and PSI triggers.
 * `test-host unit` runs on fixture trees (tests/fixtures/host);
 * `test-host integration` reads the real /proc of this machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <ovc/common.h>

#include "host/collect.h"
#include "host/host.h"
#include "host/procfs.h"
#include "host/policy.h"
#include "ovc-test.h"
#include "common/util.h"

#define FIX OVC_FIXTURES_DIR "/host/"

static void test_meminfo_fixture(void **state)
{
	struct ovcd_meminfo m;

	assert_ovc_ok(ovcd_meminfo_read(FIX "normal", &m));
	assert_int_equal(m.total_bytes, UINT64_C(24684096) * 1024);
	assert_int_equal(m.free_bytes, UINT64_C(20122360) * 1024);
	assert_int_equal(m.available_bytes, 2 * GIB);
	assert_int_equal(m.buffers_bytes, 6976 * KIB);
	assert_int_equal(m.cached_bytes, 330780 * KIB);
	assert_int_equal(m.swap_total_bytes, 8 * GIB);
	assert_int_equal(m.swap_free_bytes, 8000000 * KIB);
	assert_int_equal(m.anon_bytes, 57640 * KIB);
	assert_int_equal(m.shmem_bytes, 8788 * KIB);
	assert_int_equal(m.commit_limit_bytes, 12342048 * KIB);
	assert_int_equal(m.committed_as_bytes, 505560 * KIB);

	/* Absent optional fields are 0. */
	assert_ovc_ok(ovcd_meminfo_read(FIX "nopsi", &m));
	assert_int_equal(m.swap_total_bytes, 0);
	assert_int_equal(m.available_bytes, 2 * GIB);

	/* A missing required field: refused, result untouched. */
	m.total_bytes = 42;
	assert_int_equal(ovcd_meminfo_read(FIX "bad-meminfo", &m), -EBADMSG);
	assert_int_equal(m.total_bytes, 42);
	assert_int_equal(ovcd_meminfo_read(FIX "absent", &m), -ENOENT);
}

static void test_meminfo_parse_errors(void **state)
{
	static const char *const bad[] = {
		"",
		"MemTotal: 10 kB\nMemFree: 5 kB\n",                       /* no MemAvailable */
		"MemTotal: 10 kB\nMemFree: 5 kB\nMemAvailable: x kB\n",
		"MemTotal: 10 kB\nMemFree: 5 kB\nMemAvailable: 5\n",      /* no unit */
		"MemTotal: 10 kB\nMemFree: 5 kB\nMemAvailable: 5 kB\nMemFree: 5 kB\n", /* twice */
		"MemTotal: 10 kB\nMemFree: 5 kB\nMemAvailable: 11 kB\n",  /* > total */
		"MemTotal: 10 kB\nno colon here\nMemFree: 5 kB\nMemAvailable: 5 kB\n",
		"MemTotal: 99999999999999999999 kB\nMemFree: 5 kB\nMemAvailable: 5 kB\n",
		"MemTotal: 18014398509481984 kB\nMemFree: 5 kB\nMemAvailable: 5 kB\n", /* overflows bytes */
	};
	struct ovcd_meminfo m;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (ovcd_meminfo_parse(bad[i], &m) != -EBADMSG)
			fail_msg("accepted: %s", bad[i]);
	assert_ovc_ok(ovcd_meminfo_parse("MemTotal: 10 kB\nMemFree: 5 kB\nMemAvailable: 6 kB", &m));
	assert_int_equal(m.available_bytes, 6 * KIB);
}

static void test_psi_fixture(void **state)
{
	struct ovcd_psi p;

	assert_ovc_ok(ovcd_psi_read(FIX "normal", &p));
	assert_int_equal(p.some.avg10_basis_points, 1234);
	assert_int_equal(p.some.avg60_basis_points, 500);
	assert_int_equal(p.some.avg300_basis_points, 10);
	assert_int_equal(p.some.total_usec, 123456789);
	assert_int_equal(p.full.avg10_basis_points, 150);
	assert_int_equal(p.full.avg300_basis_points, 10000);
	assert_int_equal(p.full.total_usec, 4567);

	assert_int_equal(ovcd_psi_read(FIX "nopsi", &p), -ENOENT);
	assert_int_equal(ovcd_psi_read(FIX "bad-psi", &p), -EBADMSG);
}

static void test_psi_parse_errors(void **state)
{
	static const char *const bad[] = {
		"",
		"some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", /* no full line */
		"full avg10=0.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=0.00 avg60=0.00 avg300=0.00 total=\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=100.01 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=0.00 avg60=0.00 avg300=0.00 total=1x\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
		"some avg10=-1.00 avg60=0.00 avg300=0.00 total=1\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
	};
	struct ovcd_psi p;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (ovcd_psi_parse(bad[i], &p) != -EBADMSG)
			fail_msg("accepted: %s", bad[i]);
}

static void test_trigger_args(void **state)
{
	assert_int_equal(ovcd_psi_trigger_open(NULL, false, 100000, 400000), -EINVAL);
	assert_int_equal(ovcd_psi_trigger_open(NULL, false, 100000, 11 * USEC_PER_SEC), -EINVAL);
	assert_int_equal(ovcd_psi_trigger_open(NULL, false, 2 * USEC_PER_SEC, USEC_PER_SEC), -EINVAL);
	assert_int_equal(ovcd_psi_trigger_open(NULL, true, 0, USEC_PER_SEC), -EINVAL);
	assert_int_equal(ovcd_psi_trigger_open(FIX "nopsi", false, 100000, USEC_PER_SEC), -ENOENT);
	char root[5000];
	memset(root, 'a', sizeof(root) - 1);
	root[sizeof(root) - 1] = 0;
	assert_int_equal(ovcd_psi_trigger_open(root, false, 100000, USEC_PER_SEC), -ENAMETOOLONG);
	struct ovcd_meminfo m;
	assert_int_equal(ovcd_meminfo_read(root, &m), -ENAMETOOLONG);
}

static void test_root_file(void **state)
{
	char buf[8];

	/* A file longer than the buffer is refused, not cut. */
	assert_int_equal(ovcd_read_root_file(FIX "normal", "/proc/meminfo", buf, sizeof(buf)), -EFBIG);
	assert_int_equal(ovcd_read_root_file(FIX "normal", "/proc/meminfo", buf, 1), -EINVAL);
	assert_int_equal(ovcd_write_root_file(FIX "absent", "/x", "1"), -ENOENT);
}

static void test_collect_fixture(void **state)
{
	struct ovcd_host_collect_errors errs;
	struct ovcd_policy_host h;

	assert_ovc_ok(ovcd_host_collect(FIX "full", NULL, 1234, &h, &errs));
	assert_int_equal(h.now_usec, 1234);
	assert_int_equal(h.page_size, (uint64_t)sysconf(_SC_PAGESIZE));
	assert_int_equal(h.mem.available_bytes, 2 * GIB);
	assert_true(h.psi_valid);
	assert_int_equal(h.psi.some.avg10_basis_points, 1234);
	assert_true(h.ksm_valid);
	assert_int_equal(h.ksm.pages_sharing, 25000);
	assert_int_equal(h.ksm_knobs.run, 1);
	assert_int_equal(errs.meminfo, 0);
	assert_int_equal(errs.cgroup, 0);
	assert_int_equal(errs.psi, 0);
	assert_int_equal(errs.ksm, 0);

	/* Optional sources absent: collected without them. */
	assert_ovc_ok(ovcd_host_collect(FIX "nopsi", NULL, 1, &h, &errs));
	assert_false(h.psi_valid);
	assert_false(h.ksm_valid);
	assert_int_equal(errs.psi, -ENOENT);
	assert_int_equal(errs.ksm, -ENOENT);
	/* A broken optional source never stops a tick: it is left out, and
	 * the caller is told why. */
	assert_ovc_ok(ovcd_host_collect(FIX "bad-psi", NULL, 1, &h, &errs));
	assert_false(h.psi_valid);
	assert_int_equal(errs.psi, -EBADMSG);
	assert_int_equal(errs.meminfo, 0);
	/* meminfo is required: an error, *ret untouched. */
	h.now_usec = 77;
	assert_int_equal(ovcd_host_collect(FIX "bad-meminfo", NULL, 1, &h, &errs), -EBADMSG);
	assert_int_equal(h.now_usec, 77);
	assert_int_equal(errs.meminfo, -EBADMSG);
	assert_int_equal(ovcd_host_collect(FIX "bad-meminfo", NULL, 1, &h, NULL), -EBADMSG);
}

/* The guests' memory cgroup limits what the policy sees; a cgroup that
 * cannot be read stops the tick (the host's figures would overstate what
 * the guests may have). */
static void test_collect_cgroup(void **state)
{
	struct ovcd_host_collect_errors errs;
	struct ovcd_policy_host h, plain;

	assert_ovc_ok(ovcd_host_collect(FIX "full", NULL, 1, &plain, NULL));
	assert_ovc_ok(ovcd_host_collect(FIX "full", "/../cgroup/v1/vms", 1, &h, &errs));
	assert_int_equal(errs.cgroup, 0);
	assert_int_equal(h.mem.total_bytes, UINT64_C(3758096384)); /* the cgroup's limit */
	assert_true(h.mem.total_bytes < plain.mem.total_bytes);
	assert_true(h.mem.available_bytes <= plain.mem.available_bytes);
	assert_true(h.psi_valid);
	assert_true(h.ksm_valid);

	h.now_usec = 77;
	assert_int_equal(ovcd_host_collect(FIX "full", "/no-such-cgroup", 1, &h, &errs), -ENOENT);
	assert_int_equal(errs.meminfo, 0);
	assert_int_equal(errs.cgroup, -ENOENT);
	assert_int_equal(errs.psi, 0); /* not read */
	assert_int_equal(h.now_usec, 77);
	assert_int_equal(ovcd_host_collect(FIX "full", "/../cgroup/bad/vms", 1, &h, &errs), -EBADMSG);
	assert_int_equal(errs.cgroup, -EBADMSG);
}

/* ---- integration: the real files ---- */

static void test_real_collect(void **state)
{
	struct ovcd_policy_host h;

	assert_ovc_ok(ovcd_host_collect(NULL, NULL, 5, &h, NULL));
	assert_true(h.mem.total_bytes > 0);
	print_message("PSI %s, KSM %s\n", h.psi_valid ? "present" : "absent",
		      h.ksm_valid ? "present" : "absent");
}

/* The pieces fit on real data: the real host state through the policy
 * gives the level its MemAvailable and PSI say, and a KSM decision. */
static void test_real_tick(void **state)
{
	struct ovcd_config *c = NULL;
	struct ovcd_policy_host h;
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_guest g = { .name = "sim", .kind = OVC_DRIVER_LIBVIRT };

	assert_ovc_ok(ovcd_config_new_default(&c));
	assert_ovc_ok(ovcd_host_collect(NULL, NULL, 1000 * USEC_PER_SEC, &h, NULL));
	ovcd_guest_stats_reset(&g.stats);
	g.stats.max_bytes = g.stats.actual_bytes = g.target_bytes = GIB;
	ovcd_config_guest_settings(c, g.name, &g.settings);
	struct ovcd_policy_decision d;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	uint64_t low = h.mem.total_bytes / 10, high = h.mem.total_bytes / 5;
	bool psi = h.psi_valid && (h.psi.some.avg10_basis_points >= 1000 ||
				   h.psi.full.avg10_basis_points >= 500);
	enum ovcd_host_level want = h.mem.available_bytes < low || psi ? OVC_HOST_PRESSURE
				   : h.mem.available_bytes > high ? OVC_HOST_ROOM
								   : OVC_HOST_STEADY;
	assert_int_equal(out.level, want);
	assert_int_not_equal(d.action, OVC_ACTION_INFLATE); /* no stats: never */
	print_message("%s; %s\n", out.reason, out.ksm_reason);
	ovcd_config_free(c);
}

static void test_real_meminfo(void **state)
{
	struct ovcd_meminfo m;

	assert_ovc_ok(ovcd_meminfo_read(NULL, &m));
	assert_true(m.total_bytes > 64 * MIB);
	assert_true(m.available_bytes > 0 && m.available_bytes <= m.total_bytes);
	assert_true(m.free_bytes <= m.total_bytes);
	/* Agrees with sysconf within what moved between the two reads. */
	uint64_t pages = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
	assert_true(pages / 1024 == m.total_bytes / 1024 || pages == m.total_bytes);
	print_message("MemTotal %llu MiB, MemAvailable %llu MiB\n",
		      (unsigned long long)(m.total_bytes / MIB),
		      (unsigned long long)(m.available_bytes / MIB));
}

static void test_real_psi(void **state)
{
	struct ovcd_psi p;
	int r = ovcd_psi_read("", &p);

	if (r == -ENOENT)
		skip_because("kernel without PSI (CONFIG_PSI)");
	if (r == -EOPNOTSUPP)
		skip_because("PSI disabled (boot with psi=1)");
	assert_ovc_ok(r);
	assert_true(p.full.total_usec <= p.some.total_usec);

	int fd = ovcd_psi_trigger_open("", false, 150000, USEC_PER_SEC);
	if (fd == -EACCES || fd == -EPERM)
		skip_because("no permission to create a PSI trigger");
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	/* An idle host: the trigger is armed and quiet; no error event. */
	struct pollfd pfd = { .fd = fd, .events = POLLPRI };
	assert_true(poll(&pfd, 1, 0) >= 0);
	assert_false(pfd.revents & (POLLERR | POLLNVAL));
	close(fd);

	fd = ovcd_psi_trigger_open(NULL, true, 100000, 2 * USEC_PER_SEC);
	assert_true(fd >= 0);
	close(fd);
}

/* A cgroup that holds the guests: what it leaves them, never more than the
 * host has. */
static void test_cgroup_fixture(void **state)
{
	struct ovcd_cgroup_mem cg;
	struct ovcd_meminfo m;

	(void)state;
	assert_ovc_ok(ovcd_cgroup_mem_read(FIX "cgroup/v1", "/vms", &cg));
	assert_int_equal(cg.limit_bytes, UINT64_C(3584) * MIB);
	assert_int_equal(cg.usage_bytes, UINT64_C(3) * GIB);
	assert_int_equal(cg.inactive_file_bytes, 64 * MIB); /* total_, the hierarchy's */
	assert_ovc_ok(ovcd_meminfo_read(FIX "normal", &m));
	ovcd_meminfo_limit_to_cgroup(&m, &cg);
	assert_int_equal(m.total_bytes, UINT64_C(3584) * MIB);
	assert_int_equal(m.free_bytes, 512 * MIB);
	assert_int_equal(m.available_bytes, 576 * MIB);

	assert_ovc_ok(ovcd_cgroup_mem_read(FIX "cgroup/v2", "/vms", &cg));
	assert_int_equal(cg.limit_bytes, 2 * GIB);
	assert_int_equal(cg.usage_bytes, GIB);
	assert_int_equal(cg.inactive_file_bytes, 32 * MIB);
	/* The host has less available than the cgroup would leave: the host's. */
	assert_ovc_ok(ovcd_meminfo_read(FIX "normal", &m));
	ovcd_meminfo_limit_to_cgroup(&m, &cg);
	assert_int_equal(m.total_bytes, 2 * GIB);
	assert_int_equal(m.available_bytes, GIB + 32 * MIB);
	m.available_bytes = 100 * MIB;
	ovcd_meminfo_limit_to_cgroup(&m, &cg);
	assert_int_equal(m.available_bytes, 100 * MIB);

	/* No limit: the host's figures as they are. */
	assert_ovc_ok(ovcd_cgroup_mem_read(FIX "cgroup/v1", "/unlimited", &cg));
	assert_true(cg.limit_bytes == UINT64_MAX);
	assert_ovc_ok(ovcd_meminfo_read(FIX "normal", &m));
	ovcd_meminfo_limit_to_cgroup(&m, &cg);
	assert_int_equal(m.available_bytes, 2 * GIB);

	/* Usage above the limit (a limit lowered under running guests). */
	cg = (struct ovcd_cgroup_mem){ .limit_bytes = GIB, .usage_bytes = 2 * GIB, .inactive_file_bytes = 0 };
	ovcd_meminfo_limit_to_cgroup(&m, &cg);
	assert_int_equal(m.available_bytes, 0);
	assert_int_equal(m.free_bytes, 0);

	assert_int_equal(ovcd_cgroup_mem_read(FIX "cgroup/bad", "/vms", &cg), -EBADMSG);
	assert_int_equal(ovcd_cgroup_mem_read(FIX "cgroup", "/absent", &cg), -ENOENT);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest unit[] = {
		cmocka_unit_test(test_meminfo_fixture),
		cmocka_unit_test(test_meminfo_parse_errors),
		cmocka_unit_test(test_psi_fixture),
		cmocka_unit_test(test_psi_parse_errors),
		cmocka_unit_test(test_trigger_args),
		cmocka_unit_test(test_root_file),
		cmocka_unit_test(test_collect_fixture),
		cmocka_unit_test(test_collect_cgroup),
		cmocka_unit_test(test_cgroup_fixture),
	};
	const struct CMUnitTest integration[] = {
		cmocka_unit_test(test_real_collect),
		cmocka_unit_test(test_real_tick),
		cmocka_unit_test(test_real_meminfo),
		cmocka_unit_test(test_real_psi),
	};
	if (argc > 1 && strcmp(argv[1], "integration") == 0)
		return cmocka_run_group_tests_name("host-real", integration, NULL, NULL);
	return cmocka_run_group_tests_name("host", unit, NULL, NULL);
}
