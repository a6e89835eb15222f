/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: ovcd's control protocol (daemon/control.c): the request parser with
 * its exact error messages, the permission rule, and the replies rendered
 * from a view (parsed back with json-c, as ovcctl does).
 */
#include <errno.h>
#include <string.h>

#include <json-c/json.h>

#include "control.h"
#include "ovc-test.h"
#include "common/util.h"

static int parse(const char *line, struct ovcd_request *req, char *err)
{
	return ovcd_request_parse(line, strlen(line), req, err, OVCD_ERROR_MAX);
}

#define assert_refused(line, code, msg)                                        \
	do {                                                                   \
		struct ovcd_request _req;                                      \
		char _err[OVCD_ERROR_MAX] = "";                                \
		assert_int_equal(parse(line, &_req, _err), code);              \
		assert_string_equal(_err, msg);                                \
	} while (0)

static void test_good_requests(void **state)
{
	struct ovcd_request req;
	char err[OVCD_ERROR_MAX];

	assert_int_equal(parse("{\"version\":1,\"command\":\"status\"}", &req, err), 0);
	assert_int_equal(req.command, OVCD_CMD_STATUS);
	assert_int_equal(parse(" {\"command\":\"guests\", \"version\":1} \r", &req, err), 0);
	assert_int_equal(req.command, OVCD_CMD_GUESTS);
	assert_int_equal(parse("{\"version\":1,\"command\":\"reload\"}", &req, err), 0);
	assert_int_equal(req.command, OVCD_CMD_RELOAD);

	assert_int_equal(parse("{\"version\":1,\"command\":\"set\",\"guest\":\"web1\",\"what\":\"floor\","
			       "\"size\":\"512MiB\"}", &req, err), 0);
	assert_int_equal(req.command, OVCD_CMD_SET);
	assert_string_equal(req.guest, "web1");
	assert_int_equal(req.what, OVCD_SET_FLOOR);
	assert_false(req.clear);
	assert_false(req.size.percent);
	assert_int_equal(req.size.bytes, 512 * MIB);

	assert_int_equal(parse("{\"version\":1,\"command\":\"set\",\"guest\":\"db\",\"what\":\"target\","
			       "\"size\":\"62.5%\"}", &req, err), 0);
	assert_int_equal(req.what, OVCD_SET_TARGET);
	assert_true(req.size.percent);
	assert_int_equal(req.size.basis_points, 6250);

	assert_int_equal(parse("{\"version\":1,\"command\":\"set\",\"guest\":\"db\",\"what\":\"target\","
			       "\"size\":\"none\"}", &req, err), 0);
	assert_true(req.clear);
	assert_true(ovcd_command_mutates(OVCD_CMD_SET));
	assert_true(ovcd_command_mutates(OVCD_CMD_RELOAD));
	assert_false(ovcd_command_mutates(OVCD_CMD_STATUS));
	assert_false(ovcd_command_mutates(OVCD_CMD_GUESTS));
}

static void test_malformed(void **state)
{
	assert_refused("{\"version\":1,", -EINVAL, "malformed JSON: unexpected end of input");
	assert_refused("{version:1}", -EINVAL, "malformed JSON: quoted object property name expected");
	assert_refused("", -EINVAL, "malformed JSON: unexpected end of input");
	assert_refused("[1,2]", -EINVAL, "request must be a JSON object, not array");
	assert_refused("{\"version\":1,\"command\":\"status\"} x", -EINVAL,
		       "malformed JSON: trailing data after the request object");
	assert_refused("{\"command\":\"status\"}", -EINVAL, "missing \"version\" (this ovcd speaks version 1)");
	assert_refused("{\"version\":\"1\",\"command\":\"status\"}", -EINVAL,
		       "\"version\" must be an integer, not string");
	assert_refused("{\"version\":1}", -EINVAL, "missing \"command\"");
	assert_refused("{\"version\":1,\"command\":7}", -EINVAL, "\"command\" must be a string, not int");
}

static void test_unknown_and_version(void **state)
{
	assert_refused("{\"version\":1,\"command\":\"shutdown\"}", -EINVAL,
		       "unknown command \"shutdown\" (status, guests, reload, set)");
	assert_refused("{\"version\":2,\"command\":\"status\"}", -EPROTO,
		       "unsupported protocol version 2 (this ovcd speaks version 1)");
	assert_refused("{\"version\":-1,\"command\":\"status\"}", -EPROTO,
		       "unsupported protocol version -1 (this ovcd speaks version 1)");
}

static void test_bad_set(void **state)
{
	assert_refused("{\"version\":1,\"command\":\"set\",\"what\":\"floor\",\"size\":\"1GiB\"}", -EINVAL,
		       "set: \"guest\" must be a string");
	assert_refused("{\"version\":1,\"command\":\"set\",\"guest\":\"\",\"what\":\"floor\",\"size\":\"1GiB\"}",
		       -EINVAL, "set: \"guest\" must be 1 to 255 bytes");
	assert_refused("{\"version\":1,\"command\":\"set\",\"guest\":\"a\",\"what\":\"max\",\"size\":\"1GiB\"}",
		       -EINVAL, "set: \"what\" must be \"floor\" or \"target\", not \"max\"");
	assert_refused("{\"version\":1,\"command\":\"set\",\"guest\":\"a\",\"what\":\"floor\",\"size\":1024}",
		       -EINVAL, "set: \"size\" must be a string such as \"512MiB\", \"50%\" or \"none\"");
	assert_refused("{\"version\":1,\"command\":\"set\",\"guest\":\"a\",\"what\":\"floor\",\"size\":\"12\"}",
		       -EINVAL,
		       "set: bad size \"12\": give bytes with a unit (512MiB), a share of the guest's maximum "
		       "(50%) or \"none\"");
	assert_refused("{\"version\":1,\"command\":\"set\",\"guest\":\"a\",\"what\":\"floor\",\"size\":\"0\"}",
		       -EINVAL,
		       "set: bad size \"0\": give bytes with a unit (512MiB), a share of the guest's maximum "
		       "(50%) or \"none\"");
}

static void test_oversized_and_nul(void **state)
{
	char *big = malloc(OVCD_REQUEST_MAX + 2);
	struct ovcd_request req;
	char err[OVCD_ERROR_MAX];

	memset(big, ' ', OVCD_REQUEST_MAX + 1);
	memcpy(big, "{\"version\":1,\"command\":\"status\"}", 32);
	assert_int_equal(ovcd_request_parse(big, OVCD_REQUEST_MAX + 1, &req, err, sizeof(err)), -EMSGSIZE);
	assert_string_equal(err, "request longer than 4096 bytes");
	/* Exactly the limit is fine (trailing blanks). */
	assert_int_equal(ovcd_request_parse(big, OVCD_REQUEST_MAX, &req, err, sizeof(err)), 0);
	free(big);
	assert_int_equal(ovcd_request_parse("{\"version\":1,\0}", 15, &req, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "malformed JSON: NUL byte in request");
}

static void test_untouched_on_failure(void **state)
{
	struct ovcd_request req;
	char err[OVCD_ERROR_MAX];

	memset(&req, 0x5a, sizeof(req));
	assert_int_equal(parse("{\"version\":1,\"command\":\"nope\"}", &req, err), -EINVAL);
	for (size_t i = 0; i < sizeof(req); i++)
		assert_int_equal(((unsigned char *)&req)[i], 0x5a);
}

static void test_permissions(void **state)
{
	gid_t groups[] = { 24, 27, 107 };

	/* root, whatever its groups */
	assert_true(ovcd_peer_may_mutate(0, 0, NULL, 0, false, 0));
	assert_true(ovcd_peer_may_mutate(0, 1000, NULL, 0, true, 107));
	/* no group configured: root only */
	assert_false(ovcd_peer_may_mutate(1000, 1000, groups, 3, false, 107));
	/* member by primary or supplementary group */
	assert_true(ovcd_peer_may_mutate(1000, 107, NULL, 0, true, 107));
	assert_true(ovcd_peer_may_mutate(1000, 1000, groups, 3, true, 107));
	/* not a member */
	assert_false(ovcd_peer_may_mutate(1000, 1000, groups, 2, true, 107));
	assert_false(ovcd_peer_may_mutate(65534, 65534, NULL, 0, true, 107));
}

static struct json_object *parse_reply(char *line)
{
	struct json_object *o;

	assert_non_null(line);
	assert_int_equal(line[strlen(line) - 1], '\n');
	assert_null(memchr(line, '\n', strlen(line) - 1)); /* one line */
	o = json_tokener_parse(line);
	assert_non_null(o);
	free(line);
	return o;
}

static struct json_object *field(struct json_object *o, const char *k)
{
	struct json_object *v = NULL;

	assert_true(json_object_object_get_ex(o, k, &v));
	return v;
}

static void test_replies(void **state)
{
	struct ovcd_guest_view g[2] = {
		{ .name = "web\"1", .driver = "qmp", .max_bytes = GIB, .actual_bytes = 768 * MIB,
		  .target_bytes = 768 * MIB, .available_bytes = OVC_UNKNOWN, .floor_bytes = 256 * MIB,
		  .stats_age_usec = OVC_UNKNOWN, .last_action = OVC_ACTION_INFLATE, .last_action_tick = 3,
		  .last_reason = "spare", .inflates = 1, .engine_zero_bytes = OVC_UNKNOWN,
		  .engine_swap_bytes = OVC_UNKNOWN, .engine_target_bytes = OVC_UNKNOWN,
		  .raised_floor_bytes = 512 * MIB, .headroom_bytes = 64 * MIB, .keep_bytes = 300 * MIB,
		  .growth_rate_bytes = 10 * MIB, .growing = true, .oom_kills = 1, .quick_deflates = 2,
		  .fpr_bytes = OVC_UNKNOWN },
		{ .name = "db", .driver = "libvirt+ovc", .max_bytes = 2 * GIB, .actual_bytes = 2 * GIB,
		  .target_bytes = 2 * GIB, .available_bytes = GIB, .floor_bytes = GIB, .pin_bytes = 2 * GIB,
		  .stats_age_usec = 2 * USEC_PER_SEC, .engine = true, .engine_zero_bytes = 300 * MIB,
		  .engine_swap_bytes = 0, .engine_target_bytes = 320 * MIB, .reclaims = 4, .releases = 1,
		  .headroom_bytes = OVC_UNKNOWN, .keep_bytes = OVC_UNKNOWN, .free_page_reporting = true,
		  .raised_floor_bytes = OVC_UNKNOWN, .noncompliant = true,
		  .fpr_bytes = 128 * MIB,
		  .engine_swap_in_bytes = 6 * MIB,
		  .engine_swap = { .out_bytes = 8 * MIB, .cache_bytes = MIB, .cache_hits = 3, .refaults = 2,
				   .write_errors = 0, .read_errors = 1, .fault_p50_usec = 16,
				   .fault_p99_usec = OVC_UNKNOWN } },
	};
	struct ovcd_view v = {
		.config_path = "/etc/ovc/ovcd.conf", .interval_usec = 5 * USEC_PER_SEC, .ticks = 7, .checks = 40,
		.level = OVC_HOST_PRESSURE, .guests = g, .n_guests = 2,
		.oc = { .host_total_bytes = 4 * GIB, .guests_max_bytes = 3 * GIB,
			.provisioned_ratio_permille = 1000, .effective_ratio_permille = 1333,
			.savings = { .balloon_bytes = 256 * MIB, .zero_bytes = 1, .ksm_bytes = 2,
				     .swap_bytes = 3, .total_bytes = 256 * MIB + 6 } },
	};
	struct json_object *o, *s, *arr, *e;

	o = parse_reply(ovcd_reply_status(&v));
	assert_int_equal(json_object_get_int(field(o, "version")), 1);
	assert_true(json_object_get_boolean(field(o, "ok")));
	assert_string_equal(json_object_to_json_string(field(o, "provisioned_ratio")), "1.000");
	assert_string_equal(json_object_to_json_string(field(o, "effective_ratio")), "1.333");
	assert_int_equal(json_object_get_uint64(field(o, "host_total_bytes")), 4 * GIB);
	assert_int_equal(json_object_get_uint64(field(o, "guests_max_bytes")), 3 * GIB);
	s = field(o, "savings");
	assert_int_equal(json_object_get_uint64(field(s, "balloon_bytes")), 256 * MIB);
	assert_int_equal(json_object_get_uint64(field(s, "zero_bytes")), 1);
	assert_int_equal(json_object_get_uint64(field(s, "ksm_bytes")), 2);
	assert_int_equal(json_object_get_uint64(field(s, "swap_bytes")), 3);
	assert_string_equal(json_object_get_string(field(o, "level")), "pressure");
	assert_int_equal(json_object_get_uint64(field(o, "checks")), 40);
	assert_null(field(o, "ksm")); /* not valid: null, not zeros */
	json_object_put(o);

	o = parse_reply(ovcd_reply_guests(&v));
	arr = field(o, "guests");
	assert_int_equal(json_object_array_length(arr), 2);
	e = json_object_array_get_idx(arr, 0);
	assert_string_equal(json_object_get_string(field(e, "name")), "web\"1");
	assert_null(field(e, "available_bytes")); /* unknown is null */
	assert_null(field(e, "stats_age_usec"));
	assert_null(field(e, "pinned_target_bytes"));
	assert_string_equal(json_object_get_string(field(e, "last_action")), "inflate");
	/* Savings by mechanism; no engine: its figures are null, not 0. */
	assert_int_equal(json_object_get_uint64(field(field(e, "savings"), "balloon_bytes")), 256 * MIB);
	assert_null(field(field(e, "savings"), "shared_bytes"));
	assert_null(field(field(e, "savings"), "swapped_bytes"));
	assert_null(field(e, "engine"));
	/* What the policy learned; no free page reporting: null, not 0. */
	assert_int_equal(json_object_get_uint64(field(e, "headroom_bytes")), 64 * MIB);
	assert_int_equal(json_object_get_uint64(field(e, "keep_available_bytes")), 300 * MIB);
	assert_int_equal(json_object_get_uint64(field(e, "floor_bytes")), 256 * MIB);
	assert_int_equal(json_object_get_uint64(field(e, "raised_floor_bytes")), 512 * MIB);
	assert_int_equal(json_object_get_uint64(field(e, "growth_rate_bytes")), 10 * MIB);
	assert_true(json_object_get_boolean(field(e, "growing")));
	assert_false(json_object_get_boolean(field(e, "idle")));
	assert_int_equal(json_object_get_uint64(field(e, "oom_kills")), 1);
	assert_int_equal(json_object_get_uint64(field(e, "quick_deflates")), 2);
	assert_false(json_object_get_boolean(field(e, "noncompliant")));
	assert_false(json_object_get_boolean(field(e, "free_page_reporting")));
	assert_null(field(e, "free_page_reporting_bytes"));
	e = json_object_array_get_idx(arr, 1);
	/* Before the policy's first decision: null. */
	assert_null(field(e, "headroom_bytes"));
	assert_null(field(e, "keep_available_bytes"));
	assert_null(field(e, "raised_floor_bytes"));
	assert_true(json_object_get_boolean(field(e, "free_page_reporting")));
	assert_int_equal(json_object_get_uint64(field(e, "free_page_reporting_bytes")), 128 * MIB);
	assert_int_equal(json_object_get_uint64(field(e, "available_bytes")), GIB);
	assert_int_equal(json_object_get_uint64(field(e, "pinned_target_bytes")), 2 * GIB);
	assert_string_equal(json_object_get_string(field(e, "driver")), "libvirt+ovc");
	assert_true(json_object_get_boolean(field(e, "noncompliant")));
	assert_int_equal(json_object_get_uint64(field(field(e, "savings"), "balloon_bytes")), 0);
	assert_int_equal(json_object_get_uint64(field(field(e, "savings"), "shared_bytes")), 300 * MIB);
	assert_int_equal(json_object_get_uint64(field(field(e, "savings"), "swapped_bytes")), 0);
	assert_int_equal(json_object_get_uint64(field(field(e, "engine"), "reclaim_target_bytes")), 320 * MIB);
	assert_int_equal(json_object_get_uint64(field(field(e, "engine"), "reclaims")), 4);
	/* The engine's swapping in full; what it did not say is null. */
	s = field(e, "engine");
	assert_int_equal(json_object_get_uint64(field(s, "swapped_in_bytes")), 6 * MIB);
	assert_int_equal(json_object_get_uint64(field(s, "swapped_out_bytes")), 8 * MIB);
	assert_int_equal(json_object_get_uint64(field(s, "swap_cache_bytes")), MIB);
	assert_int_equal(json_object_get_uint64(field(s, "swap_cache_hits")), 3);
	assert_int_equal(json_object_get_uint64(field(s, "refaults")), 2);
	assert_int_equal(json_object_get_uint64(field(s, "swap_write_errors")), 0);
	assert_int_equal(json_object_get_uint64(field(s, "swap_read_errors")), 1);
	assert_int_equal(json_object_get_uint64(field(s, "fault_p50_usec")), 16);
	assert_null(field(s, "fault_p99_usec"));
	json_object_put(o);

	o = parse_reply(ovcd_reply_error("no guest named 'x'"));
	assert_false(json_object_get_boolean(field(o, "ok")));
	assert_string_equal(json_object_get_string(field(o, "error")), "no guest named 'x'");
	json_object_put(o);
}

/* What ovcctl sends is what ovcd accepts. */
static void test_format_roundtrip(void **state)
{
	struct ovcd_request req;
	char err[OVCD_ERROR_MAX];
	char *line = ovcd_request_format(OVCD_CMD_SET, "vm 1", OVCD_SET_TARGET, "1.5GiB");

	assert_non_null(line);
	assert_int_equal(ovcd_request_parse(line, strlen(line) - 1, &req, err, sizeof(err)), 0);
	assert_int_equal(req.command, OVCD_CMD_SET);
	assert_string_equal(req.guest, "vm 1");
	assert_int_equal(req.what, OVCD_SET_TARGET);
	assert_int_equal(req.size.bytes, 3 * GIB / 2);
	free(line);
	for (int c = OVCD_CMD_STATUS; c <= OVCD_CMD_RELOAD; c++) {
		line = ovcd_request_format((enum ovcd_command)c, NULL, 0, NULL);
		assert_int_equal(ovcd_request_parse(line, strlen(line) - 1, &req, err, sizeof(err)), 0);
		assert_int_equal(req.command, c);
		free(line);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_requests),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_unknown_and_version),
		cmocka_unit_test(test_bad_set),
		cmocka_unit_test(test_oversized_and_nul),
		cmocka_unit_test(test_untouched_on_failure),
		cmocka_unit_test(test_permissions),
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_format_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
