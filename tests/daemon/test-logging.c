/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: ovcd's logging (daemon/logging.c): plain "ovcd: LEVEL: text" lines,
 * "<N>" priority prefixes when stderr is the journal ($JOURNAL_STREAM names
 * it), level filtering, control characters escaped (a peer's text cannot
 * start a line or forge a journal priority), and the per-guest rate limit
 * with its count of suppressed messages.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "logging.h"
#include "ovc-test.h"

/* Run @fn with stderr sent to a temporary file; return what it wrote. */
static char *capture(void (*fn)(void), bool as_journal)
{
	char path[] = "/tmp/ovc-test-logging-XXXXXX";
	int fd = mkostemp(path, O_CLOEXEC), saved = dup(STDERR_FILENO);
	static char buf[8192];
	struct stat st;
	char js[64];
	ssize_t n;

	assert_true(fd >= 0 && saved >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	if (as_journal)
		setenv("JOURNAL_STREAM", js, 1);
	else
		unsetenv("JOURNAL_STREAM");
	dup2(fd, STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	unsetenv("JOURNAL_STREAM");
	return buf;
}

static void emit(void)
{
	ovcd_log_open("ovcd", OVC_LOG_INFO);
	dlog_warning("failed to inflate balloon of '%s' to %s: %s", "web1", "1536MiB", "No such domain");
	dlog_debug("not shown at info");
	dlog_info("shown");
}

static void test_plain_and_journal(void **state)
{
	char *out = capture(emit, false);

	assert_string_equal(out, "ovcd: warning: failed to inflate balloon of 'web1' to 1536MiB: No such domain\n"
				 "ovcd: info: shown\n");
	out = capture(emit, true);
	assert_string_equal(out, "<4>failed to inflate balloon of 'web1' to 1536MiB: No such domain\n"
				 "<6>shown\n");
}

static void emit_hostile(void)
{
	ovcd_log_open("ovcd", OVC_LOG_INFO);
	/* A guest name as a compromised QEMU could report it. */
	dlog_info("guest '%s' (qmp): max 1GiB", "web1'\n<0>forged emergency\r\x1b[2J\x7f\t\\");
}

static void test_escaped(void **state)
{
	static const char expect[] = "guest 'web1'\\n<0>forged emergency\\r\\x1b[2J\\x7f\\t\\' (qmp): max 1GiB\n";
	char *out = capture(emit_hostile, true);
	char small[8];

	assert_string_equal(out, "<6>" "guest 'web1'\\n<0>forged emergency\\r\\x1b[2J\\x7f\\t\\' (qmp): max 1GiB\n");
	out = capture(emit_hostile, false);
	assert_int_equal(strlen(out), strlen("ovcd: info: ") + sizeof(expect) - 1);
	assert_string_equal(out + strlen("ovcd: info: "), expect);
	assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1); /* one line */
	/* Cut before an escape, not in it. */
	assert_int_equal(ovcd_log_escape("abcdef\n", small, sizeof(small)), 6);
	assert_string_equal(small, "abcdef");
	assert_int_equal(ovcd_log_escape("abcd\x01", small, sizeof(small)), 4);
	assert_string_equal(small, "abcd");
	assert_int_equal(ovcd_log_escape("ab\x01", small, sizeof(small)), 6);
	assert_string_equal(small, "ab\\x01");
}

static void test_ratelimit(void **state)
{
	struct ovcd_ratelimit rl = { 0 };
	unsigned sup = 99;
	uint64_t t = 1000;

	for (int i = 0; i < 3; i++)
		assert_true(ovcd_ratelimit_check(&rl, t + (uint64_t)i, 60 * USEC_PER_SEC, 3, &sup));
	assert_int_equal(sup, 0);
	assert_false(ovcd_ratelimit_check(&rl, t + 10, 60 * USEC_PER_SEC, 3, &sup));
	assert_false(ovcd_ratelimit_check(&rl, t + 20, 60 * USEC_PER_SEC, 3, &sup));
	/* A new interval: the next one passes and says two were dropped. */
	assert_true(ovcd_ratelimit_check(&rl, t + 60 * USEC_PER_SEC, 60 * USEC_PER_SEC, 3, &sup));
	assert_int_equal(sup, 2);
	assert_true(ovcd_ratelimit_check(&rl, t + 60 * USEC_PER_SEC + 1, 60 * USEC_PER_SEC, 3, &sup));
	assert_int_equal(sup, 0);
}

static struct ovcd_ratelimit guest_rl;

static void emit_many(void)
{
	ovcd_log_open("ovcd", OVC_LOG_INFO);
	for (int i = 0; i < 5; i++)
		ovcd_log_guest_ratelimited(&guest_rl, OVC_LOG_WARNING, "guest 'db': attempt %d failed", i);
}

static void test_guest_ratelimited(void **state)
{
	char *out = capture(emit_many, false);

	/* Three pass, two are dropped (and counted for the next interval). */
	assert_string_equal(out, "ovcd: warning: guest 'db': attempt 0 failed\n"
				 "ovcd: warning: guest 'db': attempt 1 failed\n"
				 "ovcd: warning: guest 'db': attempt 2 failed\n");
	assert_int_equal(guest_rl.suppressed, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_and_journal),
		cmocka_unit_test(test_escaped),
		cmocka_unit_test(test_ratelimit),
		cmocka_unit_test(test_guest_ratelimited),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
