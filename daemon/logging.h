/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's and ovcctl's log: one line per message on stderr, with a level.
 * When stderr is connected to the journal (systemd sets $JOURNAL_STREAM to
 * the device:inode of that stream) each line starts with the syslog
 * priority as "<N>", which journald turns into the entry's priority; in a
 * terminal or a file the line reads "ovcd: warning: ...".
 *
 * The log target is process-wide (one stderr per process): set once by
 * ovcd_log_open() on the main thread before any other thread exists.
 * ovcd_log() is safe from any thread (one write(2) per line).
 *
 * A message is always one line: control characters in it (newlines
 * included) are written escaped, as \n, \r, \t or \xNN, so that text from
 * a peer (a guest's name, QEMU's or libvirt's error) can neither start a
 * line of its own nor set a journal priority with "<N>".
 *
 * Rate limiting is per object (a guest): struct ovcd_ratelimit lives in the
 * object and is used on the main thread only.
 */
#ifndef OVCD_LOGGING_H
#define OVCD_LOGGING_H

#include <stdbool.h>
#include <stdint.h>

#include <ovc/common.h>

#include "common/log.h"
#include "common/util.h"

/* @ident prefixes plain-text lines; @level is the most verbose level shown. */
void ovcd_log_open(const char *ident, enum ovc_log_level level);
enum ovc_log_level ovcd_log_level(void);
bool ovcd_log_to_journal(void);

void ovcd_log(enum ovc_log_level level, const char *fmt, ...) _printf_(2, 3);

/* Copy @in to @out (@size bytes, NUL-terminated) with control characters
 * and DEL escaped as above; cut at @size, never inside an escape. Returns
 * the length written. */
size_t ovcd_log_escape(const char *in, char *out, size_t size);

/* A struct logger that sends library and driver messages here. */
const struct logger *ovcd_logger(void);

#define dlog_err(...) ovcd_log(OVC_LOG_ERR, __VA_ARGS__)
#define dlog_warning(...) ovcd_log(OVC_LOG_WARNING, __VA_ARGS__)
#define dlog_notice(...) ovcd_log(OVC_LOG_NOTICE, __VA_ARGS__)
#define dlog_info(...) ovcd_log(OVC_LOG_INFO, __VA_ARGS__)
#define dlog_debug(...) ovcd_log(OVC_LOG_DEBUG, __VA_ARGS__)

/* At most @burst messages per @interval_usec; what is dropped is counted
 * and said with the next message that passes. Zero it to start. */
struct ovcd_ratelimit {
	uint64_t begin_usec;
	unsigned n;
	unsigned suppressed;
};

#define OVCD_RATELIMIT_INTERVAL_USEC (60 * USEC_PER_SEC)
#define OVCD_RATELIMIT_BURST 3

/* true when a message may go out at @now_usec (CLOCK_MONOTONIC). On true,
 * *ret_suppressed (if not NULL) is the number of messages dropped since the
 * last one that passed. Pure apart from @rl. */
bool ovcd_ratelimit_check(struct ovcd_ratelimit *rl, uint64_t now_usec, uint64_t interval_usec,
			  unsigned burst, unsigned *ret_suppressed);

/* A warning about one guest, rate-limited by @rl: "WHAT (N similar
 * messages about this guest suppressed)". */
void ovcd_log_guest_ratelimited(struct ovcd_ratelimit *rl, enum ovc_log_level level,
				const char *fmt, ...) _printf_(3, 4);

#endif
