/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging to stderr, journald-aware; see logging.h. The target is set once
 * on the main thread; writes are one write(2) per line from any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "logging.h"

static struct {
	const char *ident;
	enum ovc_log_level level;
	bool journal;
} target = { "ovcd", OVC_LOG_INFO, false };

static const char *level_name(enum ovc_log_level l)
{
	switch (l) {
	case OVC_LOG_ERR:
		return "error";
	case OVC_LOG_WARNING:
		return "warning";
	case OVC_LOG_NOTICE:
		return "notice";
	case OVC_LOG_INFO:
		return "info";
	case OVC_LOG_DEBUG:
		return "debug";
	}
	return "?";
}

/* systemd sets JOURNAL_STREAM=DEV:INODE for a stdout/stderr it connected to
 * the journal (systemd.exec(5)); compare it with what stderr really is, so
 * that a redirected stderr of a child of such a service gets plain text. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void ovcd_log_open(const char *ident, enum ovc_log_level level)
{
	target.ident = ident;
	target.level = level;
	target.journal = stderr_is_journal();
}

enum ovc_log_level ovcd_log_level(void)
{
	return target.level;
}

bool ovcd_log_to_journal(void)
{
	return target.journal;
}

size_t ovcd_log_escape(const char *in, char *out, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (size == 0)
		return 0;
	for (; *in; in++) {
		unsigned char c = (unsigned char)*in;
		char esc[5];
		size_t k = 0;

		if (c == '\n' || c == '\r' || c == '\t') {
			esc[k++] = '\\';
			esc[k++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20 || c == 0x7f) {
			esc[k++] = '\\';
			esc[k++] = 'x';
			esc[k++] = hex[c >> 4];
			esc[k++] = hex[c & 15];
		} else {
			esc[k++] = (char)c;
		}
		if (o + k >= size)
			break; /* cut before an escape, never inside one */
		memcpy(out + o, esc, k);
		o += k;
	}
	out[o] = '\0';
	return o;
}

static void log_va(enum ovc_log_level level, const char *suffix, const char *fmt, va_list ap)
{
	char raw[2048], msg[2048], line[2200];
	int n;

	if (level > target.level)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	/* Guest names and QEMU's, libvirt's and engines' error texts end up
	 * in here: one message is one line, whatever they hold. */
	ovcd_log_escape(raw, msg, sizeof(msg));
	if (target.journal)
		n = snprintf(line, sizeof(line), "<%d>%s%s\n", (int)level, msg, suffix);
	else
		n = snprintf(line, sizeof(line), "%s: %s: %s%s\n", target.ident, level_name(level), msg,
			     suffix);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

void ovcd_log(enum ovc_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_va(level, "", fmt, ap);
	va_end(ap);
}

static void logger_fn(void *userdata, enum ovc_log_level level, const char *msg)
{
	ovcd_log(level, "%s", msg);
}

const struct logger *ovcd_logger(void)
{
	static struct logger lg = { .fn = logger_fn };

	lg.level = target.level;
	return &lg;
}

bool ovcd_ratelimit_check(struct ovcd_ratelimit *rl, uint64_t now_usec, uint64_t interval_usec,
			  unsigned burst, unsigned *ret_suppressed)
{
	if (rl->begin_usec == 0 || now_usec - rl->begin_usec >= interval_usec) {
		rl->begin_usec = now_usec ? now_usec : 1;
		rl->n = 0;
	}
	if (rl->n >= burst) {
		rl->suppressed++;
		return false;
	}
	rl->n++;
	if (ret_suppressed)
		*ret_suppressed = rl->suppressed;
	rl->suppressed = 0;
	return true;
}

void ovcd_log_guest_ratelimited(struct ovcd_ratelimit *rl, enum ovc_log_level level,
				const char *fmt, ...)
{
	unsigned suppressed = 0;
	char suffix[96] = "";
	va_list ap;

	if (level > target.level)
		return;
	if (!ovcd_ratelimit_check(rl, now_usec(CLOCK_MONOTONIC), OVCD_RATELIMIT_INTERVAL_USEC,
				  OVCD_RATELIMIT_BURST, &suppressed))
		return;
	if (suppressed)
		snprintf(suffix, sizeof(suffix), " (%u similar messages about this guest suppressed)",
			 suppressed);
	va_start(ap, fmt);
	log_va(level, suffix, fmt, ap);
	va_end(ap);
}
