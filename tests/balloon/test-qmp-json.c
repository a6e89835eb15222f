/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: the QMP message reader (balloon-driver/qmp-json.c) on a session
 * recorded from QEMU 7.2 (tests/fixtures/qmp-session.txt, "\r\n" line ends as
 * QEMU writes them), fed whole and byte by byte, plus malformed input.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "ovc-test.h"
#include "common/util.h"

static char *session(size_t *ret_len)
{
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/qmp-session.txt", FIXTURE_DIR);
	f = fopen(path, "re");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*ret_len = (size_t)n;
	return buf;
}

static const enum qmp_kind expected[] = {
	QMP_GREETING, QMP_RETURN, QMP_RETURN, QMP_EVENT, QMP_EVENT,
	QMP_EVENT, QMP_RETURN, QMP_RETURN, QMP_EVENT,
};

static void check_session(size_t chunk)
{
	size_t len, got = 0;
	char *text = session(&len);
	struct qmp_reader r;

	qmp_reader_init(&r);
	for (size_t off = 0; off < len; off += chunk) {
		struct json_object *o;
		enum qmp_kind kind;
		int n;

		assert_ovc_ok(qmp_reader_feed(&r, text + off, MIN(chunk, len - off)));
		while ((n = qmp_reader_next(&r, &o, &kind)) == 1) {
			assert_true(got < ARRAY_SIZE(expected));
			assert_int_equal(kind, expected[got]);
			if (got == 5) { /* the last BALLOON_CHANGE */
				struct json_object *data, *actual;

				assert_true(json_object_object_get_ex(o, "data", &data));
				assert_true(json_object_object_get_ex(data, "actual", &actual));
				assert_int_equal(json_object_get_uint64(actual), 536870912);
			}
			json_object_put(o);
			got++;
		}
		assert_int_equal(n, 0);
	}
	assert_int_equal(got, ARRAY_SIZE(expected));
	qmp_reader_done(&r);
	free(text);
}

static void test_session_whole(void **state)
{
	check_session(1 << 20);
}

static void test_session_bytewise(void **state)
{
	check_session(1);
}

static void test_malformed_lines(void **state)
{
	static const char *lines[] = {
		"not json\n", "[1,2]\n", "{\"hello\": 1}\n", "{\"error\": \"flat\"}\n",
		"{\"event\": 5}\n", "{\"return\": {}} {\"return\": {}}\n", "{\"return\": \n",
	};
	struct qmp_reader r;
	struct json_object *o;
	enum qmp_kind kind;

	qmp_reader_init(&r);
	for (size_t i = 0; i < ARRAY_SIZE(lines); i++) {
		assert_ovc_ok(qmp_reader_feed(&r, lines[i], strlen(lines[i])));
		assert_ovc(qmp_reader_next(&r, &o, &kind), -EPROTO);
	}
	/* The reader recovers on the next good line. */
	assert_ovc_ok(qmp_reader_feed(&r, "\r\n{\"return\": {}}\r\n", 18));
	assert_int_equal(qmp_reader_next(&r, &o, &kind), 1);
	assert_int_equal(kind, QMP_RETURN);
	json_object_put(o);
	assert_int_equal(qmp_reader_next(&r, &o, &kind), 0);
	qmp_reader_done(&r);
}

static void test_line_too_long(void **state)
{
	struct qmp_reader r;
	char *big = malloc(QMP_LINE_MAX);

	assert_non_null(big);
	memset(big, ' ', QMP_LINE_MAX);
	qmp_reader_init(&r);
	assert_ovc_ok(qmp_reader_feed(&r, big, QMP_LINE_MAX));
	/* One more byte without a newline: it can never become valid. */
	assert_ovc(qmp_reader_feed(&r, "x", 1), -EPROTO);
	qmp_reader_done(&r);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_whole),
		cmocka_unit_test(test_session_bytewise),
		cmocka_unit_test(test_malformed_lines),
		cmocka_unit_test(test_line_too_long),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
