/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: ovc_strerror() and the version calls. */
#include <errno.h>
#include <limits.h>
#include <string.h>

#include <ovc/ovc.h>

#include "common/error.h"
#include "ovc-test.h"

static void test_version(void **state)
{
	assert_int_equal(ovc_version(), OVC_VERSION_NUMBER);
	assert_string_equal(ovc_version_string(), OVC_VERSION_STRING);
	char buf[32];
	snprintf(buf, sizeof(buf), "%d.%d.%d", OVC_VERSION_MAJOR, OVC_VERSION_MINOR,
		 OVC_VERSION_PATCH);
	assert_string_equal(buf, ovc_version_string());
}

/* Every error the API documents has its own text in ovc's words, and the
 * sign does not matter. */
static void test_strerror_table(void **state)
{
	unsigned n = 0;

	for (const struct error_text *t = error_texts; t->text; t++, n++) {
		const char *s = ovc_strerror(-t->err);
		assert_non_null(s);
		assert_ptr_equal(s, t->text);
		assert_ptr_equal(ovc_strerror(t->err), s);
		/* ovc's text starts with the C library's name of the error. */
		const char *libc = strerror(t->err);
		size_t len = strlen(libc);
		if (strncmp(s, libc, len) != 0)
			fail_msg("text for errno %d does not start with '%s': %s", t->err, libc, s);
		assert_true(strlen(s) > len + 10);
		for (const struct error_text *u = t + 1; u->text; u++)
			assert_int_not_equal(t->err, u->err);
	}
	assert_true(n >= 15);
}

/* The errnos that the public headers promise are all covered. */
static void test_strerror_covers_api(void **state)
{
	static const int api_errors[] = {
		EINVAL, EPERM, ENOSYS, ENOMEM, EEXIST, ENOENT, EFAULT, EBUSY,
		ENOSPC, EIO, EOPNOTSUPP, EAGAIN, ECANCELED,
	};
	for (size_t i = 0; i < sizeof(api_errors) / sizeof(api_errors[0]); i++) {
		const char *s = ovc_strerror(-api_errors[i]);
		assert_ptr_not_equal(s, strerror(api_errors[i]));
	}
	assert_string_equal(ovc_strerror(0), "Success");
	/* Not an API error: the C library's text, never NULL. */
	assert_non_null(ovc_strerror(-EXDEV));
	assert_non_null(ovc_strerror(-99999));
}

/* The edges of the int range: no overflow in taking the magnitude (UBSan
 * reports one under the sanitizer build), and one static sentence for
 * every value that is no errno, the same pointer from every thread and
 * call (never a buffer a later call rewrites). */
static void test_strerror_edges(void **state)
{
	const char *unknown = ovc_strerror(INT_MIN);
	assert_non_null(unknown);
	assert_true(strncmp(unknown, "Unknown error", 13) == 0);
	assert_ptr_equal(ovc_strerror(INT_MAX), unknown);
	assert_ptr_equal(ovc_strerror(-INT_MAX), unknown);
	assert_ptr_equal(ovc_strerror(99999), unknown);
	assert_ptr_equal(ovc_strerror(-99999), unknown);
	assert_ptr_equal(ovc_strerror(INT_MIN + 1), unknown);
	assert_string_equal(ovc_strerror(0), "Success");
	/* Positive and negative alike, for ovc's errors and the C library's. */
	assert_ptr_equal(ovc_strerror(EIO), ovc_strerror(-EIO));
	assert_ptr_equal(ovc_strerror(EXDEV), ovc_strerror(-EXDEV));
	assert_string_equal(ovc_strerror(-EXDEV), strerror(EXDEV));
	assert_ptr_not_equal(ovc_strerror(-EXDEV), unknown);
	/* 1 (EPERM) and the largest errno the C library names. */
	assert_ptr_not_equal(ovc_strerror(1), unknown);
	assert_ptr_not_equal(ovc_strerror(-EHWPOISON), unknown);
	assert_ptr_equal(ovc_strerror(-(EHWPOISON + 1)), unknown);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_strerror_table),
		cmocka_unit_test(test_strerror_covers_api),
		cmocka_unit_test(test_strerror_edges),
	};
	return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
