/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal logging: the library hands messages to the caller's callback and
 * never prints. Safe from any thread; formats into a stack buffer, so it
 * neither allocates nor locks (the fault handler may log at debug level).
 */
#ifndef OVC_LOG_H
#define OVC_LOG_H

#include <ovc/common.h>

#include "common/util.h"

struct ovc_logger {
	ovc_log_fn fn;
	void *userdata;
	enum ovc_log_level level;
};

void ovc_logf(const struct ovc_logger *lg, enum ovc_log_level level, const char *fmt, ...)
	_printf_(3, 4);

#define log_err(lg, ...) ovc_logf(lg, OVC_LOG_ERR, __VA_ARGS__)
#define log_warning(lg, ...) ovc_logf(lg, OVC_LOG_WARNING, __VA_ARGS__)
#define log_notice(lg, ...) ovc_logf(lg, OVC_LOG_NOTICE, __VA_ARGS__)
#define log_info(lg, ...) ovc_logf(lg, OVC_LOG_INFO, __VA_ARGS__)
#define log_debug(lg, ...) ovc_logf(lg, OVC_LOG_DEBUG, __VA_ARGS__)

#endif
