/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: sizes, durations, percentages, booleans and integers, parsed and
 * formatted (lib/host/units.c). */
#include <errno.h>
#include <stdint.h>

#include <ovc/common.h>

#include "common/util.h"
#include "host/units.h"
#include "ovc-test.h"

/* A text, what the parser returns, and the value when that is 0. */
struct parse_case {
	const char *in;
	int r;
	uint64_t v;
};

static void test_size_parser(void **state)
{
	static const struct {
		const char *in;
		int r;
		bool percent;
		uint64_t v; /* bytes or basis points */
	} t[] = {
		{ "512MiB", 0, false, 512 * MIB },
		{ "1GiB", 0, false, GIB },
		{ "1.5GiB", 0, false, 1536 * MIB },
		{ "1 GiB", 0, false, GIB },
		{ "4097B", 0, false, 4097 },
		{ "2KiB", 0, false, 2048 },
		{ "1TiB", 0, false, UINT64_C(1) << 40 },
		{ "0", 0, false, 0 },
		{ "0.0", 0, false, 0 },
		{ "10%", 0, true, 1000 },
		{ "2.5%", 0, true, 250 },
		{ "0.25%", 0, true, 25 },
		{ "100%", 0, true, 10000 },
		{ "0.001%", 0, true, 0 },
		{ "101%", -ERANGE },
		{ "16777216TiB", -ERANGE },
		{ "99999999999999999999B", -EINVAL },
		{ "12XB", -EINVAL },
		{ "1GB", -EINVAL },
		{ "1gib", -EINVAL },
		{ "10", -EINVAL },
		{ "-1MiB", -EINVAL },
		{ "", -EINVAL },
		{ "MiB", -EINVAL },
		{ "1.MiB", -EINVAL },
		{ "1.5.5MiB", -EINVAL },
		{ "%", -EINVAL },
		{ "10%%", -EINVAL },
		{ "1MiB x", -EINVAL },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		struct ovcd_conf_size s = { .bytes = 777 };
		int r = ovcd_parse_size(t[i].in, true, &s);
		if (r != t[i].r)
			fail_msg("'%s': %d, expected %d", t[i].in, r, t[i].r);
		if (r < 0) {
			assert_int_equal(s.bytes, 777);
			continue;
		}
		assert_int_equal(s.percent, t[i].percent);
		assert_int_equal(s.percent ? s.basis_points : s.bytes, t[i].v);
	}
	struct ovcd_conf_size s;
	assert_int_equal(ovcd_parse_size("10%", false, &s), -EINVAL);
	assert_int_equal(ovcd_conf_size_bytes(&(struct ovcd_conf_size){ .percent = true, .basis_points = 2500 },
					     4 * GIB), GIB);
	assert_int_equal(ovcd_conf_size_bytes(&(struct ovcd_conf_size){ .bytes = 5 }, 4 * GIB), 5);
}

static void test_duration_parser(void **state)
{
	static const struct parse_case t[] = {
		{ "5s", 0, 5000000 },     { "500ms", 0, 500000 }, { "2min", 0, 120000000 },
		{ "1h", 0, 3600000000 },  { "1.5s", 0, 1500000 }, { "250us", 0, 250 },
		{ "0", 0, 0 },            { "5 s", 0, 5000000 },  { "5", -EINVAL },
		{ "5x", -EINVAL },        { "s", -EINVAL },       { "5 sec", -EINVAL },
		{ "5m", -EINVAL },        { "", -EINVAL },        { "99999999999999h", -ERANGE },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		uint64_t v = 777;
		int r = ovcd_parse_duration(t[i].in, &v);
		if (r != t[i].r)
			fail_msg("'%s': %d, expected %d", t[i].in, r, t[i].r);
		assert_int_equal(v, r == 0 ? t[i].v : 777);
	}
}

static void test_bool_parser(void **state)
{
	static const char *const yes[] = { "yes", "YES", "true", "on", "1" };
	static const char *const no[] = { "no", "False", "off", "0" };
	static const char *const bad[] = { "", "2", "y", "maybe", "yess" };
	bool b;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		b = false;
		assert_ovc_ok(ovcd_parse_bool(yes[i], &b));
		assert_true(b);
	}
	for (size_t i = 0; i < ARRAY_SIZE(no); i++) {
		b = true;
		assert_ovc_ok(ovcd_parse_bool(no[i], &b));
		assert_false(b);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		assert_int_equal(ovcd_parse_bool(bad[i], &b), -EINVAL);
}

static void test_formatting(void **state)
{
	char b[32];

	assert_string_equal(ovcd_format_size(0, b, sizeof(b)), "0B");
	assert_string_equal(ovcd_format_size(4097, b, sizeof(b)), "4097B");
	assert_string_equal(ovcd_format_size(1536 * MIB, b, sizeof(b)), "1536MiB");
	assert_string_equal(ovcd_format_size(GIB, b, sizeof(b)), "1GiB");
	assert_string_equal(ovcd_format_size(UINT64_C(3) << 40, b, sizeof(b)), "3TiB");
	assert_string_equal(ovcd_format_size(UINT64_C(2048) << 40, b, sizeof(b)), "2048TiB");
	assert_string_equal(ovcd_format_duration(0, b, sizeof(b)), "0s");
	assert_string_equal(ovcd_format_duration(250, b, sizeof(b)), "250us");
	assert_string_equal(ovcd_format_duration(500000, b, sizeof(b)), "500ms");
	assert_string_equal(ovcd_format_duration(1500000, b, sizeof(b)), "1500ms");
	assert_string_equal(ovcd_format_duration(120 * USEC_PER_SEC, b, sizeof(b)), "2min");
	assert_string_equal(ovcd_format_duration(7200 * USEC_PER_SEC, b, sizeof(b)), "2h");
}

static void test_percent_uint_parsers(void **state)
{
	static const struct parse_case t[] = {
		{ "10%", 0, 1000 },   { "0.25%", 0, 25 },     { "100%", 0, 10000 }, { "0%", 0, 0 },
		{ "5 %", 0, 500 },    { "101%", -ERANGE },     { "0", -EINVAL },     { "5MiB", -EINVAL },
		{ "10", -EINVAL },    { "", -EINVAL },         { "%", -EINVAL },     { "auto", -EINVAL },
	};
	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		uint32_t v = 777;
		int r = ovcd_parse_percent(t[i].in, &v);
		if (r != t[i].r)
			fail_msg("'%s': %d, expected %d", t[i].in, r, t[i].r);
		assert_int_equal(v, r == 0 ? t[i].v : 777);
	}

	uint64_t u = 777;
	assert_ovc_ok(ovcd_parse_uint("0", &u));
	assert_int_equal(u, 0);
	assert_ovc_ok(ovcd_parse_uint("18446744073709551609", &u));
	assert_int_equal(u, UINT64_C(18446744073709551609));
	u = 777;
	assert_int_equal(ovcd_parse_uint("18446744073709551616", &u), -ERANGE);
	assert_int_equal(ovcd_parse_uint("", &u), -EINVAL);
	assert_int_equal(ovcd_parse_uint("-1", &u), -EINVAL);
	assert_int_equal(ovcd_parse_uint("12 ", &u), -EINVAL);
	assert_int_equal(ovcd_parse_uint("1k", &u), -EINVAL);
	assert_int_equal(u, 777);
}

/* What a format writes, the parser reads back as the same value. */
static void test_round_trip(void **state)
{
	static const uint64_t sizes[] = { 0, 1, 4097, KIB, 1536 * MIB, GIB, 3 * TIB, 16 * TIB };
	static const uint64_t durations[] = { 0, 1, 250, 1000, 1500000, 60 * USEC_PER_SEC, 7200 * USEC_PER_SEC };
	static const uint32_t percents[] = { 0, 1, 10, 25, 250, 1000, 9999, 10000 };
	char b[32];

	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct ovcd_conf_size s;
		assert_ovc_ok(ovcd_parse_size(ovcd_format_size(sizes[i], b, sizeof(b)), false, &s));
		assert_false(s.percent);
		assert_int_equal(s.bytes, sizes[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(durations); i++) {
		uint64_t us;
		assert_ovc_ok(ovcd_parse_duration(ovcd_format_duration(durations[i], b, sizeof(b)), &us));
		assert_int_equal(us, durations[i]);
	}
	for (size_t i = 0; i < ARRAY_SIZE(percents); i++) {
		uint32_t bp;
		assert_ovc_ok(ovcd_parse_percent(ovcd_format_percent(percents[i], b, sizeof(b)), &bp));
		assert_int_equal(bp, percents[i]);
	}
	assert_string_equal(ovcd_format_percent(25, b, sizeof(b)), "0.25%");
	assert_string_equal(ovcd_format_percent(250, b, sizeof(b)), "2.5%");
	assert_string_equal(ovcd_format_percent(10000, b, sizeof(b)), "100%");
	assert_string_equal(ovcd_format_conf_size(&(struct ovcd_conf_size){ .automatic = true }, b, sizeof(b)),
			    "auto");
	assert_string_equal(ovcd_format_conf_size(&(struct ovcd_conf_size){ .percent = true, .basis_points = 2000 },
						 b, sizeof(b)),
			    "20%");
	assert_string_equal(ovcd_format_conf_size(&(struct ovcd_conf_size){ .bytes = GIB }, b, sizeof(b)), "1GiB");
}

/* The short form of reasons and logs: rounded down, one decimal in GiB. */
static void test_format_short(void **state)
{
	char b[24];

	assert_string_equal(ovcd_format_size_short(1536 * MIB, b, sizeof(b)), "1.5GiB");
	assert_string_equal(ovcd_format_size_short(512 * KIB, b, sizeof(b)), "512KiB");
	assert_string_equal(ovcd_format_size_short(0, b, sizeof(b)), "0KiB");
	assert_string_equal(ovcd_format_size_short(GIB, b, sizeof(b)), "1GiB");
	assert_string_equal(ovcd_format_size_short(2 * GIB - 1, b, sizeof(b)), "1.9GiB");
	assert_string_equal(ovcd_format_size_short(MIB + KIB, b, sizeof(b)), "1MiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_size_parser),
		cmocka_unit_test(test_duration_parser),
		cmocka_unit_test(test_bool_parser),
		cmocka_unit_test(test_percent_uint_parsers),
		cmocka_unit_test(test_formatting),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_format_short),
	};

	return cmocka_run_group_tests_name("units", tests, NULL, NULL);
}
