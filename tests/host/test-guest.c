/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: normalising untrusted guest statistics (lib/host/guest.c). */
#include <string.h>

#include "host/guest.h"
#include "ovc-test.h"
#include "common/util.h"

static struct ovcd_guest_stats good(void)
{
	struct ovcd_guest_stats st;

	ovcd_guest_stats_reset(&st);
	st.max_bytes = 1 * GIB;
	st.actual_bytes = 1 * GIB;
	st.total_bytes = 1000 * MIB;
	st.free_bytes = 600 * MIB;
	st.available_bytes = 700 * MIB;
	st.disk_caches_bytes = 50 * MIB;
	st.swap_in_bytes = 0;
	st.swap_out_bytes = 0;
	st.major_faults = 10;
	st.minor_faults = 1000;
	st.guest_update_sec = 1000;
	return st;
}

static void test_reset_is_unknown(void **state)
{
	struct ovcd_guest_stats st;

	memset(&st, 0, sizeof(st));
	ovcd_guest_stats_reset(&st);
	assert_false(ovcd_known(st.free_bytes));
	assert_false(ovcd_known(st.max_bytes));
	assert_false(ovcd_known(st.engine_zero_bytes));
	assert_int_equal(st.collected_usec, 0);
	assert_false(st.stale);
}

static void test_good_stats_kept(void **state)
{
	struct ovcd_guest_stats st = good();

	assert_int_equal(ovcd_guest_stats_sanitize(&st, 1005, 30), 0);
	assert_false(st.stale);
	assert_int_equal(st.available_bytes, 700 * MIB);
}

static void test_impossible_values(void **state)
{
	struct ovcd_guest_stats st = good();

	st.free_bytes = 2 * GIB;              /* more than total and max */
	st.available_bytes = 1001 * MIB;      /* more than total */
	st.disk_caches_bytes = UINT64_MAX - 1; /* garbage */
	assert_int_equal(ovcd_guest_stats_sanitize(&st, 1005, 30), 3);
	assert_false(ovcd_known(st.free_bytes));
	assert_false(ovcd_known(st.available_bytes));
	assert_false(ovcd_known(st.disk_caches_bytes));
	assert_int_equal(st.total_bytes, 1000 * MIB);

	/* Reclaim counters: kept when believable, garbage above 2^48. */
	st = good();
	st.oom_kills = 3;
	st.alloc_stalls = UINT64_C(1) << 48;
	st.direct_reclaims = (UINT64_C(1) << 48) + 1;
	assert_int_equal(ovcd_guest_stats_sanitize(&st, 1005, 30), 1);
	assert_int_equal(st.oom_kills, 3);
	assert_int_equal(st.alloc_stalls, UINT64_C(1) << 48);
	assert_false(ovcd_known(st.direct_reclaims));
	assert_false(ovcd_known(st.direct_scans)); /* never sent: unknown */

	st = good();
	st.total_bytes = 4 * GIB; /* above the configured maximum */
	ovcd_guest_stats_sanitize(&st, 1005, 30);
	assert_false(ovcd_known(st.total_bytes));
	assert_int_equal(st.free_bytes, 600 * MIB); /* still below max */
}

static void test_stale(void **state)
{
	struct ovcd_guest_stats st = good();

	ovcd_guest_stats_sanitize(&st, 1031, 30);
	assert_true(st.stale);
	assert_false(ovcd_known(st.available_bytes));
	assert_false(ovcd_known(st.major_faults));
	assert_int_equal(st.max_bytes, 1 * GIB); /* host side stays */
	st = good();
	st.oom_kills = 1;
	ovcd_guest_stats_sanitize(&st, 1031, 30);
	assert_false(ovcd_known(st.oom_kills)); /* a stale count is no news */

	st = good();
	st.guest_update_sec = 0; /* QMP before the first answer */
	ovcd_guest_stats_sanitize(&st, 1005, 30);
	assert_true(st.stale);

	st = good();
	st.guest_update_sec = 5000; /* from the future */
	ovcd_guest_stats_sanitize(&st, 1005, 30);
	assert_true(st.stale);

	st = good();
	st.guest_update_sec = 1010; /* slightly ahead: clocks differ, not stale */
	ovcd_guest_stats_sanitize(&st, 1005, 30);
	assert_false(st.stale);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reset_is_unknown),
		cmocka_unit_test(test_good_stats_kept),
		cmocka_unit_test(test_impossible_values),
		cmocka_unit_test(test_stale),
	};
	return cmocka_run_group_tests_name("guest", tests, NULL, NULL);
}
