/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: ovc_strerror() and the version calls. */
#include <errno.h>
#include <string.h>

#include <ovc/ovc.h>

#include "error.h"
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

	for (const struct ovc_error_text *t = ovc_error_texts; t->text; t++, n++) {
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
		for (const struct ovc_error_text *u = t + 1; u->text; u++)
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_strerror_table),
		cmocka_unit_test(test_strerror_covers_api),
	};
	return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
