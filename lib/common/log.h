/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal logging: the library hands messages to the caller's callback and
 * never prints. Safe from any thread; formats into a stack buffer.
 *
 * No callback of the caller (the log callback, an engine's io_error_fn)
 * runs while this thread holds a lock of the library: the engine's lock
 * wrappers (lib/engine/lock.h) count the locks each thread holds
 * (log_hold/log_release); a message or I/O error report produced while the
 * count is not 0 is queued on this thread and delivered by the unlock that
 * brings it back to 0. Debug builds (asserts on) check the count at every
 * delivery. Queued messages: at most LOG_QUEUE_MAX per hold, the rest are
 * counted and reported as dropped; I/O error reports are never dropped
 * unless memory runs out (then logged as lost).
 */
#ifndef OVC_LOG_H
#define OVC_LOG_H

#include <stdint.h>

#include <ovc/common.h>

#include "common/util.h"

struct logger {
	ovc_log_fn fn;
	void *userdata;
	enum ovc_log_level level;
};

#define LOG_QUEUE_MAX 16u

void log_emit(const struct logger *lg, enum ovc_log_level level, const char *fmt, ...)
	_printf_(3, 4);

/* Report a failed read to @fn (an engine's io_error_fn; NULL: nothing),
 * now or, under a lock, at the last unlock. @lg logs a report that could
 * not be queued. */
void log_io_error(const struct logger *lg, void (*fn)(void *, uint64_t, int), void *userdata,
		  uint64_t guest_phys, int err);

/* Library locks held by this thread: +1 after taking one, -1 after
 * releasing one; the release to 0 delivers what was queued. */
void log_hold(void);
void log_release(void);
/* Locks this thread holds now (tests, asserts). */
unsigned log_held(void);

#define log_err(lg, ...) log_emit(lg, OVC_LOG_ERR, __VA_ARGS__)
#define log_warning(lg, ...) log_emit(lg, OVC_LOG_WARNING, __VA_ARGS__)
#define log_notice(lg, ...) log_emit(lg, OVC_LOG_NOTICE, __VA_ARGS__)
#define log_info(lg, ...) log_emit(lg, OVC_LOG_INFO, __VA_ARGS__)
#define log_debug(lg, ...) log_emit(lg, OVC_LOG_DEBUG, __VA_ARGS__)

#endif
