/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc — common definitions: visibility, version query, errors, logging.
 *
 * Every call of the API that can fail returns 0 (or a non-negative count) on
 * success and a negative errno value on failure. ovc_strerror() turns that
 * value into a sentence that says what the library was doing.
 */
#ifndef OVC_COMMON_H
#define OVC_COMMON_H

#include <stdarg.h>
#include <stdint.h>

#include <ovc/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && defined(OVC_BUILDING_LIBRARY)
#define OVC_EXPORT __attribute__((visibility("default")))
#else
#define OVC_EXPORT
#endif

/*
 * ovc_version - version of the library at run time
 *
 * Returns OVC_VERSION_NUMBER of the library that is loaded, which may differ
 * from the headers the caller was compiled against. Thread-safe.
 */
OVC_EXPORT unsigned ovc_version(void);

/* The version as "MAJOR.MINOR.PATCH"; a static string, never NULL. */
OVC_EXPORT const char *ovc_version_string(void);

/*
 * ovc_strerror - describe an error returned by the API
 * @err: a value returned by an ovc call: a negative errno (positive values
 *       are accepted too and treated as their negation)
 *
 * Returns a static, NUL-terminated English sentence that names the error in
 * ovc's terms (for example why a userfaultfd could not be opened), never
 * NULL. Errors the API does not return get the C library's text; a value
 * that is no errno at all (INT_MIN, INT_MAX, 99999) gets one fixed sentence
 * that starts with "Unknown error". Thread-safe.
 */
OVC_EXPORT const char *ovc_strerror(int err);

/* Log levels, in syslog order so that they map to journald priorities. */
enum ovc_log_level {
	OVC_LOG_ERR = 3,
	OVC_LOG_WARNING = 4,
	OVC_LOG_NOTICE = 5,
	OVC_LOG_INFO = 6,
	OVC_LOG_DEBUG = 7,
};

/*
 * Log callback. The library never prints: it hands each message to this
 * callback, from whichever thread produced it (the caller's, the engine's
 * worker or its fault handler), never with a lock of the library held
 * (checked in debug builds): a message produced under one is delivered, on
 * the same thread, once the library releases its last lock. At most 16
 * messages wait so; past that they are counted and one warning says how
 * many were dropped. @msg has no trailing newline and is valid only during
 * the call. The callback may log through the library but must not call
 * into the engine.
 */
typedef void (*ovc_log_fn)(void *userdata, enum ovc_log_level level, const char *msg);

#ifdef __cplusplus
}
#endif

#endif
