/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>

#include "common/log.h"

void ovc_logf(const struct ovc_logger *lg, enum ovc_log_level level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!lg || !lg->fn || level > lg->level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	lg->fn(lg->userdata, level, buf);
}
