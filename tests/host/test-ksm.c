/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lib/host/ksm.c: KSM counters and knobs.
 * `test-ksm unit` reads fixture trees (tests/fixtures/ksm) and writes knobs
 * in a scratch tree; `test-ksm integration` reads the real counters and
 * changes real knobs, then puts them back: in the group teardown, and from
 * atexit() should the run end early.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ovc/common.h>

#include "host/host.h"
#include "host/procfs.h"
#include "host/ksm.h"
#include "ovc-test.h"
#include "common/util.h"

#define FIX OVC_FIXTURES_DIR "/ksm/"

static void test_counters_fixture(void **state)
{
	struct ovcd_ksm_counters c;

	assert_ovc_ok(ovcd_ksm_read_counters(FIX "6.18", &c));
	assert_int_equal(c.pages_shared, 1000);
	assert_int_equal(c.pages_sharing, 25000);
	assert_int_equal(c.pages_unshared, 3000);
	assert_int_equal(c.pages_volatile, 100);
	assert_int_equal(c.pages_scanned, 987654);
	assert_int_equal(c.full_scans, 7);
	assert_int_equal(c.ksm_zero_pages, 2048);
	assert_true(c.has_general_profit);
	assert_int_equal(c.general_profit, 110000000);
	assert_int_equal(ovcd_ksm_profit_bytes(&c, 4096), 110000000);

	/* An old kernel: no pages_scanned, ksm_zero_pages, general_profit. */
	assert_ovc_ok(ovcd_ksm_read_counters(FIX "5.10", &c));
	assert_false(c.has_general_profit);
	assert_int_equal(c.pages_scanned, 0);
	assert_int_equal(c.ksm_zero_pages, 0);
	/* (30 + 0) * 4096 - (30 + 10 + 5 + 1) * 64 */
	assert_int_equal(ovcd_ksm_profit_bytes(&c, 4096), 30 * 4096 - 46 * 64);

	c = (struct ovcd_ksm_counters){ .pages_unshared = 1000 };
	assert_int_equal(ovcd_ksm_profit_bytes(&c, 4096), -64000);

	assert_int_equal(ovcd_ksm_read_counters(FIX "absent", &c), -ENOENT);
}

/* Absurd counters (a broken kernel, a fake sysfs, a peer's figures):
 * saturated, never wrapped. Known answers at the edges; UBSan checks that
 * nothing overflows on the way. */
static void test_profit_saturates(void **state)
{
	struct ovcd_ksm_counters c;
	(void)state;

	/* The sum of pages overflows 64 bits: saved saturates, cost too. */
	c = (struct ovcd_ksm_counters){ .pages_sharing = UINT64_MAX, .ksm_zero_pages = 1 };
	assert_int_equal(ovcd_ksm_profit_bytes(&c, 4096), 0); /* both UINT64_MAX */
	/* Saved far above cost: clamped to INT64_MAX, not negative. */
	c = (struct ovcd_ksm_counters){ .ksm_zero_pages = UINT64_MAX / 4096 };
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == INT64_MAX);
	c = (struct ovcd_ksm_counters){ .ksm_zero_pages = (UINT64_C(1) << 51) };
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == INT64_MAX); /* 2^63 bytes */
	c = (struct ovcd_ksm_counters){ .ksm_zero_pages = (UINT64_C(1) << 51) - 1 };
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == INT64_MAX - 4095);
	/* Cost far above saved: INT64_MIN, not positive. */
	c = (struct ovcd_ksm_counters){ .pages_unshared = UINT64_MAX / 64 };
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == INT64_MIN);
	c = (struct ovcd_ksm_counters){ .pages_unshared = UINT64_MAX, .pages_volatile = UINT64_MAX,
				       .pages_shared = UINT64_MAX };
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == INT64_MIN);
	c = (struct ovcd_ksm_counters){ .pages_volatile = UINT64_C(1) << 57 }; /* cost 2^63 */
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == INT64_MIN);
	c = (struct ovcd_ksm_counters){ .pages_volatile = (UINT64_C(1) << 57) - 1 };
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == -INT64_MAX + 63);
	/* An absurd page size. */
	c = (struct ovcd_ksm_counters){ .pages_sharing = 2 };
	assert_true(ovcd_ksm_profit_bytes(&c, UINT64_MAX) == INT64_MAX);
	assert_int_equal(ovcd_ksm_profit_bytes(&c, 0), -128);
	/* Ordinary values are exact. */
	c = (struct ovcd_ksm_counters){ .pages_sharing = 10, .pages_shared = 2, .ksm_zero_pages = 3 };
	assert_int_equal(ovcd_ksm_profit_bytes(&c, 4096), 13 * 4096 - 12 * 64);
	/* The kernel's own figure is passed through, extremes included. */
	c = (struct ovcd_ksm_counters){ .has_general_profit = true, .general_profit = INT64_MIN,
				       .pages_sharing = UINT64_MAX };
	assert_true(ovcd_ksm_profit_bytes(&c, 4096) == INT64_MIN);
}

static void test_knobs_fixture(void **state)
{
	struct ovcd_ksm_knobs k;

	assert_ovc_ok(ovcd_ksm_read_knobs(FIX "6.18", &k));
	assert_int_equal(k.run, 1);
	assert_int_equal(k.pages_to_scan, 100);
	assert_int_equal(k.sleep_millisecs, 20);
	assert_int_equal(k.use_zero_pages, 1);
	assert_true(k.advisor_scan_time);

	assert_ovc_ok(ovcd_ksm_read_knobs(FIX "5.10", &k));
	assert_int_equal(k.run, 0);
	assert_int_equal(k.use_zero_pages, -1);
	assert_false(k.advisor_scan_time);
}

/* A scratch tree with the writable knobs. */
static char scratch[64];

static void put(const char *name, const char *text)
{
	char rel[128];
	snprintf(rel, sizeof(rel), OVC_KSM_DIR "/%s", name);
	assert_ovc_ok(ovcd_write_root_file(scratch, rel, text));
}

static void get(const char *name, char *buf, size_t n)
{
	char rel[128];
	snprintf(rel, sizeof(rel), OVC_KSM_DIR "/%s", name);
	assert_true(ovcd_read_root_file(scratch, rel, buf, n) >= 0);
}

static int scratch_setup(void **state)
{
	char path[256];

	snprintf(scratch, sizeof(scratch), "/tmp/ovc-test-ksm-XXXXXX");
	if (!mkdtemp(scratch))
		return -1;
	snprintf(path, sizeof(path), "%s/sys", scratch);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/sys/kernel", scratch);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/sys/kernel/mm", scratch);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s" OVC_KSM_DIR, scratch);
	mkdir(path, 0755);
	static const char *const files[] = { "run", "pages_to_scan", "sleep_millisecs",
					     "use_zero_pages", "advisor_mode" };
	for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
		snprintf(path, sizeof(path), "%s" OVC_KSM_DIR "/%s", scratch, files[i]);
		int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
		if (fd < 0)
			return -1;
		close(fd);
	}
	return 0;
}

static int scratch_teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_apply_scratch(void **state)
{
	char b[32];
	struct ovcd_ksm_knobs k;

	put("run", "0\n");
	put("pages_to_scan", "100\n");
	put("sleep_millisecs", "20\n");
	put("use_zero_pages", "0\n");
	put("advisor_mode", "[none] scan-time\n");
	struct ovcd_ksm_knobs saved;
	assert_ovc_ok(ovcd_ksm_save(scratch, &saved));

	struct ovcd_ksm_knobs want = { .run = 1, .pages_to_scan = 300, .sleep_millisecs = 20,
				      .use_zero_pages = 1 };
	/* Only what differs is written: sleep_millisecs stays as it was
	 * (we make it a marker the code must not overwrite). */
	put("sleep_millisecs", "marker");
	assert_ovc_ok(ovcd_ksm_apply(scratch, &want, &saved));
	get("sleep_millisecs", b, sizeof(b));
	assert_string_equal(b, "marker");
	get("run", b, sizeof(b));
	assert_string_equal(b, "1");
	get("pages_to_scan", b, sizeof(b));
	assert_string_equal(b, "300");
	get("use_zero_pages", b, sizeof(b));
	assert_string_equal(b, "1");

	/* Restore writes everything back. */
	assert_ovc_ok(ovcd_ksm_restore(scratch, &saved));
	assert_ovc_ok(ovcd_ksm_read_knobs(scratch, &k));
	assert_int_equal(k.run, 0);
	assert_int_equal(k.pages_to_scan, 100);
	assert_int_equal(k.sleep_millisecs, 20);
	assert_int_equal(k.use_zero_pages, 0);

	/* The advisor owns pages_to_scan: left alone. */
	put("advisor_mode", "none [scan-time]\n");
	assert_ovc_ok(ovcd_ksm_read_knobs(scratch, &k));
	assert_true(k.advisor_scan_time);
	want.advisor_scan_time = true;
	assert_ovc_ok(ovcd_ksm_apply(scratch, &want, NULL));
	get("pages_to_scan", b, sizeof(b));
	assert_string_equal(b, "100");

	/* A knob the kernel lacks (-1) is not written; bad values refused. */
	want.use_zero_pages = -1;
	put("use_zero_pages", "x");
	assert_ovc_ok(ovcd_ksm_apply(scratch, &want, NULL));
	get("use_zero_pages", b, sizeof(b));
	assert_string_equal(b, "x");
	assert_int_equal(ovcd_ksm_read_knobs(scratch, &k), -EBADMSG);
	want.run = 3;
	assert_int_equal(ovcd_ksm_apply(scratch, &want, NULL), -EINVAL);
	want.run = 1;
	want.use_zero_pages = 2;
	assert_int_equal(ovcd_ksm_apply(scratch, &want, NULL), -EINVAL);

	/* A failed write is reported, and the other knobs are still written. */
	char path[256];
	snprintf(path, sizeof(path), "%s" OVC_KSM_DIR "/run", scratch);
	unlink(path);
	put("pages_to_scan", "5");
	want = (struct ovcd_ksm_knobs){ .run = 0, .pages_to_scan = 77, .sleep_millisecs = 9,
				       .use_zero_pages = 1 };
	assert_int_equal(ovcd_ksm_apply(scratch, &want, NULL), -ENOENT);
	get("pages_to_scan", b, sizeof(b));
	assert_string_equal(b, "77");
	assert_int_equal(ovcd_ksm_read_knobs(scratch, &k), -ENOENT);
}

/* ---- integration: the real /sys/kernel/mm/ksm ---- */

static struct ovcd_ksm_knobs real_saved;
static bool real_saved_valid;

static void restore_real(void)
{
	if (real_saved_valid && ovcd_ksm_restore(NULL, &real_saved) == 0)
		real_saved_valid = false;
}

static int real_setup(void **state)
{
	if (access("/sys/kernel/mm/ksm/run", F_OK) != 0)
		return 0; /* the tests skip */
	if (ovcd_ksm_save(NULL, &real_saved) < 0)
		return -1;
	real_saved_valid = true;
	atexit(restore_real);
	return 0;
}

static int real_teardown(void **state)
{
	restore_real();
	return real_saved_valid ? -1 : 0;
}

static void test_real_counters(void **state)
{
	struct ovcd_ksm_counters c;
	int r = ovcd_ksm_read_counters(NULL, &c);

	if (r == -ENOENT)
		skip_because("kernel without KSM (CONFIG_KSM)");
	assert_ovc_ok(r);
	print_message("KSM: shared %llu sharing %llu zero %llu scans %llu profit %lld\n",
		      (unsigned long long)c.pages_shared, (unsigned long long)c.pages_sharing,
		      (unsigned long long)c.ksm_zero_pages, (unsigned long long)c.full_scans,
		      (long long)ovcd_ksm_profit_bytes(&c, 4096));
	/* Every sharing mapping points at a shared page. */
	assert_true(c.pages_sharing == 0 || c.pages_shared > 0);
}

static void test_real_apply_restore(void **state)
{
	struct ovcd_ksm_knobs now, want;

	if (!real_saved_valid)
		skip_because("kernel without KSM (CONFIG_KSM)");
	if (geteuid() != 0)
		skip_because("changing KSM knobs needs root");
	want = real_saved;
	/* Leave run alone: other work on this machine may rely on it. */
	want.pages_to_scan = real_saved.pages_to_scan == 123 ? 124 : 123;
	want.sleep_millisecs = real_saved.sleep_millisecs == 37 ? 38 : 37;
	if (real_saved.use_zero_pages >= 0)
		want.use_zero_pages = !real_saved.use_zero_pages;
	assert_ovc_ok(ovcd_ksm_apply(NULL, &want, &real_saved));
	assert_ovc_ok(ovcd_ksm_read_knobs(NULL, &now));
	if (!real_saved.advisor_scan_time)
		assert_int_equal(now.pages_to_scan, want.pages_to_scan);
	assert_int_equal(now.sleep_millisecs, want.sleep_millisecs);
	assert_int_equal(now.use_zero_pages, want.use_zero_pages);
	assert_int_equal(now.run, real_saved.run);

	assert_ovc_ok(ovcd_ksm_restore(NULL, &real_saved));
	assert_ovc_ok(ovcd_ksm_read_knobs(NULL, &now));
	assert_int_equal(now.pages_to_scan, real_saved.pages_to_scan);
	assert_int_equal(now.sleep_millisecs, real_saved.sleep_millisecs);
	assert_int_equal(now.use_zero_pages, real_saved.use_zero_pages);
	assert_int_equal(now.run, real_saved.run);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest unit[] = {
		cmocka_unit_test(test_counters_fixture),
		cmocka_unit_test(test_profit_saturates),
		cmocka_unit_test(test_knobs_fixture),
		cmocka_unit_test(test_apply_scratch),
	};
	const struct CMUnitTest integration[] = {
		cmocka_unit_test(test_real_counters),
		cmocka_unit_test(test_real_apply_restore),
	};
	if (argc > 1 && strcmp(argv[1], "integration") == 0)
		return cmocka_run_group_tests_name("ksm-real", integration, real_setup, real_teardown);
	return cmocka_run_group_tests_name("ksm", unit, scratch_setup, scratch_teardown);
}
