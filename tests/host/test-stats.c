/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: overcommit ratio arithmetic (lib/host/stats.c), known answers. */
#include <errno.h>
#include <string.h>

#include <ovc/common.h>

#include "host/config.h"
#include "host/guest.h"
#include "host/policy.h"
#include "ovc-test.h"
#include "host/stats.h"
#include "common/util.h"

#define U OVC_UNKNOWN

static void test_balloon_only(void **state)
{
	const struct ovcd_overcommit_guest g[] = {
		{ 8 * GIB, 6 * GIB, U, U, U },
		{ 8 * GIB, 8 * GIB, U, U, U },
		{ 8 * GIB, 4 * GIB, U, U, U },
	};
	struct ovcd_overcommit_input in = {
		.host_total_bytes = 16 * GIB, .host_reserve_bytes = GIB,
		.host_available_bytes = 5 * GIB, .low_bytes = 2 * GIB, .high_bytes = 4 * GIB,
		.page_size = 4096, .guests = g, .n_guests = 3,
	};
	struct ovcd_overcommit o;

	assert_ovc_ok(ovcd_overcommit_compute(&in, &o));
	assert_int_equal(o.host_total_bytes, 16 * GIB);
	assert_int_equal(o.host_for_guests_bytes, 15 * GIB);
	assert_int_equal(o.guests_max_bytes, 24 * GIB);
	assert_int_equal(o.guests_backing_bytes, 18 * GIB);
	assert_int_equal(o.provisioned_ratio_permille, 1600);  /* 24 / 15 */
	assert_int_equal(o.effective_ratio_permille, 1333);    /* 24 / 18 */
	assert_int_equal(o.savings.balloon_bytes, 6 * GIB);
	assert_int_equal(o.savings.zero_bytes, 0);
	assert_int_equal(o.savings.ksm_bytes, 0);
	assert_int_equal(o.savings.swap_bytes, 0);
	assert_int_equal(o.savings.total_bytes, 6 * GIB);
	assert_int_equal(o.headroom_low_bytes, (int64_t)(3 * GIB));
	assert_int_equal(o.headroom_high_bytes, (int64_t)GIB);
	assert_int_equal(o.give_back_bytes, 6 * GIB);
	assert_int_equal(o.headroom_after_give_back_bytes, -(int64_t)GIB);
}

static void test_every_mechanism(void **state)
{
	const struct ovcd_overcommit_guest g[] = {
		/* measured by RSS */
		{ 4 * GIB, 4 * GIB, 3 * GIB, U, U },
		/* an embedded engine, no RSS: modelled */
		{ 4 * GIB, 2 * GIB, U, 512 * MIB, 512 * MIB },
	};
	struct ovcd_overcommit_input in = {
		.host_total_bytes = 8 * GIB, .host_reserve_bytes = 512 * MIB,
		.host_available_bytes = GIB, .low_bytes = 2 * GIB, .high_bytes = 3 * GIB,
		.ksm_pages_sharing = 262144, .ksm_zero_pages = 131072, .page_size = 4096,
		.guests = g, .n_guests = 2,
	};
	struct ovcd_overcommit o;

	assert_ovc_ok(ovcd_overcommit_compute(&in, &o));
	assert_int_equal(o.savings.balloon_bytes, 2 * GIB);
	assert_int_equal(o.savings.zero_bytes, GIB);          /* 512MiB engine + 512MiB KSM */
	assert_int_equal(o.savings.engine_zero_bytes, 512 * MIB);
	assert_int_equal(o.savings.ksm_zero_bytes, 512 * MIB);
	assert_int_equal(o.savings.ksm_bytes, GIB);
	assert_int_equal(o.savings.swap_bytes, 512 * MIB);
	assert_int_equal(o.savings.total_bytes, 4 * GIB + 512 * MIB);
	/* 3GiB RSS + (2GiB - 1GiB) modelled - 256MiB KSM zero (half of the
	 * max is modelled) - 1GiB KSM sharing */
	assert_int_equal(o.guests_backing_bytes, 2816 * MIB);
	assert_int_equal(o.provisioned_ratio_permille, 1067);  /* 8 / 7.5 */
	assert_int_equal(o.effective_ratio_permille, 2909);    /* 8192 / 2816 */
	assert_int_equal(o.headroom_low_bytes, -(int64_t)GIB);
	assert_int_equal(o.headroom_high_bytes, -2 * (int64_t)GIB);
	assert_int_equal(o.give_back_bytes, 8 * GIB - 2816 * MIB);
}

static void test_edges(void **state)
{
	struct ovcd_overcommit_input in = {
		.host_total_bytes = 8 * GIB, .host_reserve_bytes = GIB,
		.host_available_bytes = 7 * GIB, .page_size = 4096,
	};
	struct ovcd_overcommit o;

	/* No guests: ratios 0. */
	assert_ovc_ok(ovcd_overcommit_compute(&in, &o));
	assert_int_equal(o.provisioned_ratio_permille, 0);
	assert_int_equal(o.effective_ratio_permille, 0);
	assert_int_equal(o.guests_backing_bytes, 0);

	/* Lies: actual above max, engine figures above actual; clamped. */
	const struct ovcd_overcommit_guest liar[] = {
		{ 2 * GIB, 3 * GIB, U, U, U },
		{ 2 * GIB, GIB, U, 5 * GIB, 5 * GIB },
	};
	in.guests = liar;
	in.n_guests = 2;
	assert_ovc_ok(ovcd_overcommit_compute(&in, &o));
	assert_int_equal(o.savings.balloon_bytes, GIB);
	assert_int_equal(o.savings.zero_bytes, GIB);
	assert_int_equal(o.savings.swap_bytes, 0);
	assert_int_equal(o.guests_backing_bytes, 2 * GIB);
	assert_int_equal(o.effective_ratio_permille, 2000);

	/* KSM sharing larger than what backs the guests: backing 0, ratio 0
	 * rather than a division by zero. */
	in.ksm_pages_sharing = 1u << 30;
	assert_ovc_ok(ovcd_overcommit_compute(&in, &o));
	assert_int_equal(o.guests_backing_bytes, 0);
	assert_int_equal(o.effective_ratio_permille, 0);

	/* Misuse. */
	struct ovcd_overcommit untouched = { .host_total_bytes = 42 };
	in.host_reserve_bytes = 8 * GIB;
	assert_int_equal(ovcd_overcommit_compute(&in, &untouched), -ERANGE);
	assert_int_equal(untouched.host_total_bytes, 42);
	in.host_reserve_bytes = GIB;
	in.page_size = 0;
	assert_int_equal(ovcd_overcommit_compute(&in, &o), -EINVAL);
	in.page_size = 4096;
	in.guests = NULL;
	assert_int_equal(ovcd_overcommit_compute(&in, &o), -EINVAL);
	assert_int_equal(ovcd_overcommit_compute(NULL, &o), -EINVAL);
	assert_int_equal(ovcd_overcommit_compute(&in, NULL), -EINVAL);
}

/* From a tick's inputs: reserve, low and high resolved from the config. */
static void test_from_tick(void **state)
{
	struct ovcd_config *c = NULL;
	const char *text = "[host]\nreserve = 10%\nlow = 1GiB\nhigh = 2GiB\n";
	assert_ovc_ok(ovcd_config_parse("t", text, strlen(text), &c, NULL));
	struct ovcd_policy_host h = {
		.mem = { .total_bytes = 10 * GIB, .available_bytes = 3 * GIB },
		.ksm_valid = true, .ksm = { .pages_sharing = 1024 }, .page_size = 4096,
	};
	struct ovcd_policy_guest g[2] = { 0 };
	for (int i = 0; i < 2; i++) {
		ovcd_guest_stats_reset(&g[i].stats);
		g[i].stats.max_bytes = 6 * GIB;
	}
	g[0].stats.actual_bytes = 4 * GIB;
	g[1].stats.rss_bytes = 5 * GIB;   /* actual unknown: taken as max */
	struct ovcd_overcommit_guest scratch[2];
	struct ovcd_overcommit o;

	assert_ovc_ok(ovcd_overcommit_from_tick(c, &h, g, 2, scratch, &o));
	assert_int_equal(o.host_for_guests_bytes, 9 * GIB);
	assert_int_equal(o.guests_max_bytes, 12 * GIB);
	assert_int_equal(o.provisioned_ratio_permille, 1333);
	assert_int_equal(o.savings.balloon_bytes, 2 * GIB);
	assert_int_equal(o.savings.ksm_bytes, 4 * MIB);
	assert_int_equal(o.guests_backing_bytes, 9 * GIB - 4 * MIB);
	assert_int_equal(o.headroom_low_bytes, (int64_t)(2 * GIB));
	assert_int_equal(o.headroom_high_bytes, (int64_t)GIB);
	assert_int_equal(ovcd_overcommit_from_tick(c, &h, g, 2, NULL, &o), -EINVAL);
	ovcd_config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_balloon_only),
		cmocka_unit_test(test_every_mechanism),
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_from_tick),
	};
	return cmocka_run_group_tests_name("stats", tests, NULL, NULL);
}
