/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared helpers for the cmocka suites. */
#ifndef OVC_TEST_H
#define OVC_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

/* Skip the current test and say why; the reason shows in the test log. */
#define skip_because(...)                                                      \
	do {                                                                   \
		print_message("[  SKIP    ] reason: ");                        \
		print_message(__VA_ARGS__);                                    \
		print_message("\n");                                           \
		skip();                                                        \
	} while (0)

/* Each test's first line where a fixture may lack what it needs: skip
 * with @reason unless it is NULL. */
#define SKIP_IF(reason)                                                        \
	do {                                                                   \
		const char *_why = (reason);                                   \
		if (_why)                                                      \
			skip_because("%s", _why);                              \
	} while (0)

/* assert that an int-returning call gives @expect, printing ovc_strerror. */
#define assert_ovc(call, expect)                                               \
	do {                                                                   \
		int _r = (int)(call);                                          \
		if (_r != (expect))                                            \
			fail_msg("%s = %d (%s), expected %d", #call, _r,       \
				 ovc_strerror(_r), (int)(expect));             \
	} while (0)

#define assert_ovc_ok(call) assert_ovc(call, 0)

#endif
