/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd.conf: parsing, validation, per-guest overrides, printing.
 *
 * Runs on the daemon's main thread (start, SIGHUP, --check-config); pure
 * apart from ovcd_config_load() reading the file. No locks: a parse builds a
 * private struct and hands it out only when every check passed.
 *
 * libinih splits "key = value" lines, trims them and drops comments. The
 * line reader we give it does the rest, for reasons inih cannot serve:
 *  - section headers: a guest pattern is a glob and may hold ']' ("web[12]"),
 *    which inih would cut; inih also never reports empty or repeated
 *    sections, so duplicates would go unnoticed;
 *  - line numbers: the Debian build has INI_HANDLER_LINENO off, so the
 *    handler cannot know its line; the reader counts real lines;
 *  - leading whitespace is stripped, so an indented key is a key and never
 *    an inih continuation line of the previous value;
 *  - over-long lines (INI_MAX_LINE) are refused instead of being split.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "host/config.h"
#include "host/units.h"
#include "common/util.h"

#define CONFIG_MAX_BYTES (UINT64_C(1) << 20)
#define CONFIG_MAX_GUESTS 1024
#define SIZE_MAX_BYTES (16 * TIB)

enum key_type {
	T_SIZE,        /* bytes only */
	T_SIZE_PCT,    /* bytes or % */
	T_SIZE_AUTO,   /* bytes, % or auto */
	T_PERCENT,     /* % only, stored as basis points (uint32_t) */
	T_DURATION,    /* usec */
	T_BOOL,
	T_UINT,        /* uint64_t, or uint32_t for the guest priority */
	T_PATH,        /* absolute path, required */
	T_PATH_OPT,    /* absolute path or "" */
	T_LISTEN,      /* "" or loopback host:port */
	T_GROUP,       /* "" or a group name */
};

enum section {
	S_HOST,
	S_BALLOON,
	S_KSM,
	S_SWAP,
	S_ENGINE,
	S_METRICS,
	S_CONTROL,
	S_GUEST,
	_S_MAX,
	S_NONE = -1,  /* before the first section */
	S_SKIP = -2,  /* inside a section that had an error: keys ignored */
};

static const char *const section_names[_S_MAX] = {
	"host", "balloon", "ksm", "swap", "engine", "metrics", "control", "guest",
};

struct key_def {
	enum section section;
	const char *key;
	enum key_type type;
	size_t offset;            /* in struct ovcd_config, or ovcd_guest_conf for S_GUEST */
	const char *def;          /* default, in the file's syntax; NULL: inherited */
	uint64_t min, max;        /* bytes, usec, integer, or basis points for T_PERCENT */
	uint32_t pmin, pmax;      /* T_SIZE_PCT given as %: basis points */
	unsigned guest_bit;       /* S_GUEST: OVC_GUEST_SET_* */
	const char *inherit;      /* S_GUEST: the key it overrides */
};

#define C(f) offsetof(struct ovcd_config, f)
#define G(f) offsetof(struct ovcd_guest_conf, f)
#define PCT(x) ((uint32_t)((x) * 100))

static const struct key_def keys[] = {
	{ S_HOST, "reserve", T_SIZE_PCT, C(host.reserve), "1GiB", 0, SIZE_MAX_BYTES, 0, PCT(50) },
	{ S_HOST, "low", T_SIZE_AUTO, C(host.low), "auto", 0, SIZE_MAX_BYTES, 0, PCT(90) },
	{ S_HOST, "high", T_SIZE_AUTO, C(host.high), "auto", 0, SIZE_MAX_BYTES, 0, PCT(90) },
	{ S_HOST, "keep_headroom", T_BOOL, C(host.keep_headroom), "yes" },
	{ S_HOST, "interval", T_DURATION, C(host.interval_usec), "5s", 100 * 1000, 600 * USEC_PER_SEC },
	{ S_HOST, "psi_some", T_PERCENT, C(host.psi_some_basis_points), "10%", 0, PCT(100) },
	{ S_HOST, "psi_full", T_PERCENT, C(host.psi_full_basis_points), "5%", 0, PCT(100) },
	{ S_HOST, "psi_trigger_stall", T_DURATION, C(host.psi_trigger_stall_usec), "100ms", 0,
	  10 * USEC_PER_SEC },
	{ S_HOST, "psi_trigger_window", T_DURATION, C(host.psi_trigger_window_usec), "1s",
	  500 * 1000, 10 * USEC_PER_SEC },

	{ S_BALLOON, "enable", T_BOOL, C(balloon.enable), "yes" },
	{ S_BALLOON, "step", T_SIZE_PCT, C(balloon.step), "1GiB", MIB, SIZE_MAX_BYTES, 1, PCT(100) },
	{ S_BALLOON, "floor", T_SIZE_PCT, C(balloon.floor), "25%", 0, SIZE_MAX_BYTES, 0, PCT(100) },
	{ S_BALLOON, "guest_free", T_SIZE_PCT, C(balloon.guest_free), "20%", 0, SIZE_MAX_BYTES, 0,
	  PCT(90) },
	{ S_BALLOON, "min_change", T_SIZE_PCT, C(balloon.min_change), "0.25%", 0, SIZE_MAX_BYTES, 0,
	  PCT(50) },
	{ S_BALLOON, "stats_period", T_DURATION, C(balloon.stats_period_usec), "1s", USEC_PER_SEC,
	  3600 * USEC_PER_SEC },
	{ S_BALLOON, "stale_after", T_DURATION, C(balloon.stale_after_usec), "10s", USEC_PER_SEC,
	  3600 * USEC_PER_SEC },
	{ S_BALLOON, "emergency_available", T_SIZE_PCT, C(balloon.emergency_available), "64MiB", 0,
	  SIZE_MAX_BYTES, 0, PCT(50) },
	{ S_BALLOON, "emergency_major_faults", T_UINT, C(balloon.emergency_major_faults), "200", 0,
	  1000000000 },
	{ S_BALLOON, "emergency_swap_in", T_SIZE, C(balloon.emergency_swap_in), "1MiB", 0,
	  SIZE_MAX_BYTES },
	{ S_BALLOON, "emergency_step", T_SIZE_PCT, C(balloon.emergency_step), "25%", MIB,
	  SIZE_MAX_BYTES, 1, PCT(100) },
	{ S_BALLOON, "emergency_stalls", T_UINT, C(balloon.emergency_stalls), "1", 0, 1000000000 },
	{ S_BALLOON, "emergency_direct_reclaim", T_UINT, C(balloon.emergency_direct_reclaim), "256", 0,
	  1000000000 },
	{ S_BALLOON, "headroom", T_SIZE_PCT, C(balloon.headroom), "20%", 0, SIZE_MAX_BYTES, 0,
	  PCT(100) },
	{ S_BALLOON, "headroom_decay", T_DURATION, C(balloon.headroom_decay_usec), "10min",
	  USEC_PER_SEC, 24 * 3600 * USEC_PER_SEC },
	{ S_BALLOON, "idle_after", T_DURATION, C(balloon.idle_after_usec), "30s", 0,
	  24 * 3600 * USEC_PER_SEC },
	{ S_BALLOON, "short_decay", T_DURATION, C(balloon.short_decay_usec), "10min", USEC_PER_SEC,
	  7 * 24 * 3600 * USEC_PER_SEC },
	{ S_BALLOON, "oom_cooldown", T_DURATION, C(balloon.oom_cooldown_usec), "1h", 0,
	  7 * 24 * 3600 * USEC_PER_SEC },
	{ S_BALLOON, "pending_timeout", T_DURATION, C(balloon.pending_timeout_usec), "30s",
	  USEC_PER_SEC, 3600 * USEC_PER_SEC },

	{ S_KSM, "enable", T_BOOL, C(ksm.enable), "yes" },
	{ S_KSM, "use_zero_pages", T_BOOL, C(ksm.use_zero_pages), "yes" },
	{ S_KSM, "min_pages_to_scan", T_UINT, C(ksm.min_pages_to_scan), "64", 1, 100000 },
	{ S_KSM, "max_pages_to_scan", T_UINT, C(ksm.max_pages_to_scan), "1250", 1, 100000 },
	{ S_KSM, "pages_boost", T_UINT, C(ksm.pages_boost), "300", 0, 100000 },
	{ S_KSM, "pages_decay", T_UINT, C(ksm.pages_decay), "50", 0, 100000 },
	{ S_KSM, "threshold", T_SIZE_PCT, C(ksm.threshold), "20%", 0, SIZE_MAX_BYTES, 0, PCT(90) },
	{ S_KSM, "min_profit", T_SIZE, C(ksm.min_profit), "16MiB", 0, SIZE_MAX_BYTES },
	{ S_KSM, "idle_ticks", T_UINT, C(ksm.idle_ticks), "12", 1, 100000 },
	{ S_KSM, "retry_after", T_DURATION, C(ksm.retry_after_usec), "10min", 0,
	  24 * 3600 * USEC_PER_SEC },

	{ S_SWAP, "enable", T_BOOL, C(swap.enable), "yes" },
	{ S_SWAP, "max", T_SIZE_PCT, C(swap.max), "25%", 0, SIZE_MAX_BYTES, 0, PCT(100) },
	{ S_SWAP, "step", T_SIZE_PCT, C(swap.step), "2%", 0, SIZE_MAX_BYTES, 0, PCT(100) },

	/* Where VMMs that embed libovc publish their engines
	 * (OVC_PUBLISH_DIR); "" turns the ovc driver off. */
	{ S_ENGINE, "dir", T_PATH_OPT, C(engine.dir), "/run/ovc/engines" },

	{ S_METRICS, "listen", T_LISTEN, C(metrics.listen), "" },
	{ S_METRICS, "textfile", T_PATH_OPT, C(metrics.textfile), "" },

	{ S_CONTROL, "socket", T_PATH, C(control.socket), "/run/ovcd/ovcd.sock" },
	{ S_CONTROL, "group", T_GROUP, C(control.group), "" },

	{ S_GUEST, "floor", T_SIZE_PCT, G(floor), NULL, 0, SIZE_MAX_BYTES, 0, PCT(100),
	  OVC_GUEST_SET_FLOOR, "balloon.floor" },
	{ S_GUEST, "step", T_SIZE_PCT, G(step), NULL, MIB, SIZE_MAX_BYTES, 1, PCT(100),
	  OVC_GUEST_SET_STEP, "balloon.step" },
	{ S_GUEST, "guest_free", T_SIZE_PCT, G(guest_free), NULL, 0, SIZE_MAX_BYTES, 0, PCT(90),
	  OVC_GUEST_SET_GUEST_FREE, "balloon.guest_free" },
	{ S_GUEST, "never_balloon", T_BOOL, G(never_balloon), "no", 0, 0, 0, 0,
	  OVC_GUEST_SET_NEVER_BALLOON },
	{ S_GUEST, "never_swap", T_BOOL, G(never_swap), "no", 0, 0, 0, 0, OVC_GUEST_SET_NEVER_SWAP },
	{ S_GUEST, "priority", T_UINT, G(priority), "50", 0, 100, 0, 0, OVC_GUEST_SET_PRIORITY },
	{ S_GUEST, "ksm", T_BOOL, G(ksm), "yes", 0, 0, 0, 0, OVC_GUEST_SET_KSM },
};

#define N_KEYS ARRAY_SIZE(keys)

/* ---- parser state ---- */

struct parser {
	const char *path;
	const char *text;
	size_t len, pos;
	unsigned lineno;
	int inih_error_line;     /* a line the reader replaced; inih must not fail on it */

	struct ovcd_config *c;
	int section;             /* enum section, S_NONE or S_SKIP */
	struct ovcd_guest_conf *guest;
	unsigned section_line[_S_MAX];
	unsigned key_line[N_KEYS];     /* main sections; for S_GUEST see guest_key_line */
	unsigned (*guest_key_line)[N_KEYS];

	char *errors;
	size_t errors_len;
	unsigned n_errors;
	bool oom;
};

_printf_(3, 4) static void error_at(struct parser *p, unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	char head[64 + 256];
	if (line)
		snprintf(head, sizeof(head), "%s:%u: ", p->path, line);
	else
		snprintf(head, sizeof(head), "%s: ", p->path);
	n = (int)(strlen(head) + strlen(msg) + 1);
	char *e = realloc(p->errors, p->errors_len + (size_t)n + 1);
	if (!e) {
		p->oom = true;
		return;
	}
	p->errors = e;
	snprintf(e + p->errors_len, (size_t)n + 1, "%s%s\n", head, msg);
	p->errors_len += (size_t)n;
	p->n_errors++;
}

static void free_strings(struct ovcd_config *c)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		if (keys[i].section == S_GUEST)
			continue;
		switch (keys[i].type) {
		case T_PATH:
		case T_PATH_OPT:
		case T_LISTEN:
		case T_GROUP: {
			char **sp = (char **)((char *)c + keys[i].offset);
			free(*sp);
			*sp = NULL;
			break;
		}
		default:
			break;
		}
	}
}

void ovcd_config_free(struct ovcd_config *c)
{
	if (!c)
		return;
	free_strings(c);
	for (size_t i = 0; i < c->n_guests; i++)
		free(c->guests[i].pattern);
	free(c->guests);
	free(c->path);
	free(c);
}

static bool is_loopback_listen(const char *v)
{
	const char *port;
	char host[64];
	size_t hl;

	if (v[0] == '[') {
		const char *close = strchr(v, ']');
		if (!close || close[1] != ':')
			return false;
		hl = (size_t)(close - v - 1);
		if (hl >= sizeof(host))
			return false;
		memcpy(host, v + 1, hl);
		host[hl] = 0;
		port = close + 2;
		if (strcmp(host, "::1") != 0)
			return false;
	} else {
		const char *colon = strrchr(v, ':');
		if (!colon)
			return false;
		hl = (size_t)(colon - v);
		if (hl >= sizeof(host))
			return false;
		memcpy(host, v, hl);
		host[hl] = 0;
		port = colon + 1;
		if (strcmp(host, "localhost") != 0) {
			unsigned a, b, c, d;
			char extra;
			if (sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &extra) != 4 || a != 127 ||
			    b > 255 || c > 255 || d > 255)
				return false;
		}
	}
	uint64_t pn;
	return ovcd_parse_uint(port, &pn) == 0 && pn >= 1 && pn <= 65535;
}

static bool is_group_name(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > 32 || !(v[0] == '_' || (v[0] >= 'a' && v[0] <= 'z')))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(v[i] == '_' || v[i] == '-' || (v[i] >= 'a' && v[i] <= 'z') ||
		      (v[i] >= '0' && v[i] <= '9') || (v[i] == '$' && i == n - 1)))
			return false;
	return true;
}

static const char *size_expect(bool pct)
{
	return pct ? "expected a number with B, KiB, MiB, GiB, TiB or %"
		   : "expected a number with B, KiB, MiB, GiB or TiB";
}

/* Parse @value for key @k into @base (config or guest conf). Reports its own
 * error. Returns 0 or -EINVAL. */
static int set_value(struct parser *p, unsigned line, const char *sect, const struct key_def *k,
		     void *base, const char *value)
{
	void *field = (char *)base + k->offset;
	char a[48], b[48], v[48];
	int r;

	switch (k->type) {
	case T_SIZE:
	case T_SIZE_PCT:
	case T_SIZE_AUTO: {
		struct ovcd_conf_size s;
		bool pct = k->type != T_SIZE;
		if (k->type == T_SIZE_AUTO && strcmp(value, "auto") == 0) {
			*(struct ovcd_conf_size *)field = (struct ovcd_conf_size){ .automatic = true };
			return 0;
		}
		r = ovcd_parse_size(value, pct, &s);
		if (r == -ERANGE && !pct) {
			error_at(p, line, "[%s] %s: '%s' is too large", sect, k->key, value);
			return -EINVAL;
		}
		if (r == -ERANGE) {
			error_at(p, line, "[%s] %s: '%s' is out of range (%s to %s)", sect, k->key,
				 value, ovcd_format_percent(k->pmin, a, sizeof(a)),
				 ovcd_format_percent(k->pmax, b, sizeof(b)));
			return -EINVAL;
		}
		if (r < 0) {
			error_at(p, line, "[%s] %s: bad size '%s' (%s%s)", sect, k->key, value,
				 size_expect(pct), k->type == T_SIZE_AUTO ? ", or auto" : "");
			return -EINVAL;
		}
		if (s.percent && (s.basis_points < k->pmin || s.basis_points > k->pmax)) {
			error_at(p, line, "[%s] %s: %s is out of range (%s to %s)", sect, k->key,
				 ovcd_format_percent(s.basis_points, v, sizeof(v)),
				 ovcd_format_percent(k->pmin, a, sizeof(a)),
				 ovcd_format_percent(k->pmax, b, sizeof(b)));
			return -EINVAL;
		}
		if (!s.percent && (s.bytes < k->min || s.bytes > k->max)) {
			error_at(p, line, "[%s] %s: %s is out of range (%s to %s)", sect, k->key,
				 ovcd_format_size(s.bytes, v, sizeof(v)),
				 ovcd_format_size(k->min, a, sizeof(a)),
				 ovcd_format_size(k->max, b, sizeof(b)));
			return -EINVAL;
		}
		*(struct ovcd_conf_size *)field = s;
		return 0;
	}
	case T_PERCENT: {
		uint32_t bp;
		r = ovcd_parse_percent(value, &bp);
		if (r == -ERANGE || (r == 0 && (bp < k->min || bp > k->max))) {
			error_at(p, line, "[%s] %s: '%s' is out of range (%s to %s)", sect, k->key,
				 value, ovcd_format_percent((uint32_t)k->min, a, sizeof(a)),
				 ovcd_format_percent((uint32_t)k->max, b, sizeof(b)));
			return -EINVAL;
		}
		if (r < 0) {
			error_at(p, line, "[%s] %s: bad percentage '%s' (expected a number with %%)",
				 sect, k->key, value);
			return -EINVAL;
		}
		*(uint32_t *)field = bp;
		return 0;
	}
	case T_DURATION: {
		uint64_t us;
		r = ovcd_parse_duration(value, &us);
		if (r == -ERANGE) {
			error_at(p, line, "[%s] %s: '%s' is too large", sect, k->key, value);
			return -EINVAL;
		}
		if (r < 0) {
			error_at(p, line,
				 "[%s] %s: bad duration '%s' (expected a number with us, ms, s, min or h)",
				 sect, k->key, value);
			return -EINVAL;
		}
		if (us < k->min || us > k->max) {
			error_at(p, line, "[%s] %s: %s is out of range (%s to %s)", sect, k->key,
				 ovcd_format_duration(us, v, sizeof(v)),
				 ovcd_format_duration(k->min, a, sizeof(a)),
				 ovcd_format_duration(k->max, b, sizeof(b)));
			return -EINVAL;
		}
		*(uint64_t *)field = us;
		return 0;
	}
	case T_BOOL: {
		bool bv;
		if (ovcd_parse_bool(value, &bv) < 0) {
			error_at(p, line,
				 "[%s] %s: bad boolean '%s' (expected yes, no, true, false, on, off, 1 or 0)",
				 sect, k->key, value);
			return -EINVAL;
		}
		*(bool *)field = bv;
		return 0;
	}
	case T_UINT: {
		uint64_t u;
		r = ovcd_parse_uint(value, &u);
		if (r == -EINVAL) {
			error_at(p, line, "[%s] %s: bad integer '%s' (expected digits 0-9)", sect,
				 k->key, value);
			return -EINVAL;
		}
		if (r < 0 || u < k->min || u > k->max) {
			error_at(p, line, "[%s] %s: %s is out of range (%llu to %llu)", sect, k->key,
				 value, (unsigned long long)k->min, (unsigned long long)k->max);
			return -EINVAL;
		}
		*(uint64_t *)field = u;
		return 0;
	}
	case T_PATH:
	case T_PATH_OPT:
	case T_LISTEN:
	case T_GROUP: {
		char *dup;
		const char *why = NULL;
		size_t n = strlen(value);

		/* Quotes are optional around strings; they allow an explicit "". */
		char tmp[INI_MAX_LINE + 1];
		if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
			memcpy(tmp, value + 1, n - 2);
			tmp[n - 2] = 0;
			value = tmp;
			n -= 2;
		}
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
				why = "control character";
		if (!why && k->type == T_PATH && n == 0)
			why = "expected an absolute path";
		if (!why && (k->type == T_PATH || k->type == T_PATH_OPT) && n > 0 && value[0] != '/')
			why = "expected an absolute path";
		/* A unix socket path must fit sockaddr_un.sun_path (108 with the NUL). */
		if (!why && k->type == T_PATH && n > 107)
			why = "longer than 107 bytes, the limit of a unix socket path";
		if (!why && k->type == T_LISTEN && n > 0 && !is_loopback_listen(value))
			why = "expected a loopback address and port: 127.0.0.1:PORT, [::1]:PORT or localhost:PORT";
		if (!why && k->type == T_GROUP && n > 0 && !is_group_name(value))
			why = "expected a group name";
		if (why) {
			error_at(p, line, "[%s] %s: bad value '%s' (%s)", sect, k->key, value, why);
			return -EINVAL;
		}
		dup = strdup(value);
		if (!dup) {
			p->oom = true;
			return -EINVAL;
		}
		free(*(char **)field);
		*(char **)field = dup;
		return 0;
	}
	}
	return -EINVAL;
}

static void set_defaults(struct parser *p)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (keys[i].section != S_GUEST && keys[i].def)
			/* The table's defaults go through the same parser; a bad
			 * default is a bug the unit test catches. */
			(void)set_value(p, 0, section_names[keys[i].section], &keys[i], p->c,
					keys[i].def);
}

static const struct key_def *find_key(enum section s, const char *name, size_t *ret_index)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (keys[i].section == s && strcmp(keys[i].key, name) == 0) {
			*ret_index = i;
			return &keys[i];
		}
	return NULL;
}

/* ---- sections (called from the reader) ---- */

static void open_guest(struct parser *p, unsigned line, const char *pattern)
{
	for (size_t i = 0; i < p->c->n_guests; i++)
		if (strcmp(p->c->guests[i].pattern, pattern) == 0) {
			error_at(p, line, "duplicate section [guest \"%s\"] (first at line %u)",
				 pattern, p->c->guests[i].line);
			p->section = S_SKIP;
			return;
		}
	if (p->c->n_guests >= CONFIG_MAX_GUESTS) {
		error_at(p, line, "too many [guest] sections (at most %d)", CONFIG_MAX_GUESTS);
		p->section = S_SKIP;
		return;
	}
	size_t n = p->c->n_guests + 1;
	struct ovcd_guest_conf *g = realloc(p->c->guests, n * sizeof(*g));
	if (!g) {
		p->oom = true;
		p->section = S_SKIP;
		return;
	}
	p->c->guests = g;
	unsigned (*kl)[N_KEYS] = realloc(p->guest_key_line, n * sizeof(*kl));
	if (!kl) {
		p->oom = true;
		p->section = S_SKIP;
		return;
	}
	p->guest_key_line = kl;
	memset(kl[n - 1], 0, sizeof(kl[n - 1]));
	char *pat = strdup(pattern);
	if (!pat) {
		p->oom = true;
		p->section = S_SKIP;
		return;
	}
	g[n - 1] = (struct ovcd_guest_conf){ .pattern = pat, .line = line, .priority = 50, .ksm = true };
	p->c->n_guests = n;
	p->guest = &g[n - 1];
	p->section = S_GUEST;
}

static const char *skip_blank(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static bool is_blank_or_comment(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	return *s == '\0' || *s == ';' || *s == '#';
}

/* @h: a NUL-terminated header line starting with '['. */
static void parse_section(struct parser *p, unsigned line, const char *h)
{
	const char *q = skip_blank(h + 1), *name = q;
	char shown[INI_MAX_LINE + 1];
	size_t hn = strcspn(h, "\r\n");

	/* The header as written, for messages. */
	snprintf(shown, sizeof(shown), "%.*s", (int)hn, h);
	while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
	       *q == '_' || *q == '-')
		q++;
	size_t name_len = (size_t)(q - name);
	q = skip_blank(q);

	if (name_len == 5 && strncmp(name, "guest", 5) == 0) {
		if (*q != '"') {
			error_at(p, line,
				 "bad section %s: the guest pattern must be in double quotes, as in [guest \"web-*\"]",
				 shown);
			p->section = S_SKIP;
			return;
		}
		const char *pat = q + 1, *end = strchr(pat, '"');
		if (!end) {
			error_at(p, line, "bad section %s: missing closing quote", shown);
			p->section = S_SKIP;
			return;
		}
		q = skip_blank(end + 1);
		if (*q != ']' || !is_blank_or_comment(q + 1)) {
			error_at(p, line, "bad section %s: expected ']' after the closing quote", shown);
			p->section = S_SKIP;
			return;
		}
		if (end == pat) {
			error_at(p, line, "bad section %s: empty guest pattern", shown);
			p->section = S_SKIP;
			return;
		}
		char pattern[INI_MAX_LINE + 1];
		snprintf(pattern, sizeof(pattern), "%.*s", (int)(end - pat), pat);
		open_guest(p, line, pattern);
		return;
	}
	if (*q != ']' || !is_blank_or_comment(q + 1) || name_len == 0) {
		if (!strchr(h, ']'))
			error_at(p, line, "bad section %s: missing ']'", shown);
		else
			error_at(p, line, "bad section %s: expected [NAME] or [guest \"PATTERN\"]",
				 shown);
		p->section = S_SKIP;
		return;
	}
	for (int s = 0; s < S_GUEST; s++)
		if (strlen(section_names[s]) == name_len && strncmp(name, section_names[s], name_len) == 0) {
			if (p->section_line[s]) {
				error_at(p, line, "duplicate section [%s] (first at line %u)",
					 section_names[s], p->section_line[s]);
				p->section = S_SKIP;
				return;
			}
			p->section_line[s] = line;
			p->section = s;
			return;
		}
	error_at(p, line,
		 "unknown section [%.*s] (expected host, balloon, ksm, swap, metrics, control or guest \"PATTERN\")",
		 (int)name_len, name);
	p->section = S_SKIP;
}

/* inih's line reader: one real line per call (see the top of the file). */
static char *reader(char *str, int num, void *stream)
{
	struct parser *p = stream;

	if (p->pos >= p->len)
		return NULL;
	const char *line = p->text + p->pos;
	const char *nl = memchr(line, '\n', p->len - p->pos);
	size_t n = nl ? (size_t)(nl - line) + 1 : p->len - p->pos;
	p->pos += n;
	p->lineno++;

	/* A UTF-8 byte order mark on the first line is allowed. */
	if (p->lineno == 1 && n >= 3 && memcmp(line, "\xef\xbb\xbf", 3) == 0) {
		line += 3;
		n -= 3;
	}
	while (n > 0 && (*line == ' ' || *line == '\t')) {
		line++;
		n--;
	}
	str[0] = '\0';
	if (memchr(line, '\0', n)) {
		error_at(p, p->lineno, "line contains a NUL byte");
		return str;
	}
	/* Our own buffers are sized by the header's INI_MAX_LINE; a library
	 * built with a larger one must not overrun them. */
	size_t limit = MIN((size_t)num, (size_t)INI_MAX_LINE);
	if (n > limit - 1) {
		error_at(p, p->lineno, "line too long (at most %zu characters)", limit - 2);
		return str;
	}
	memcpy(str, line, n);
	str[n] = '\0';
	if (str[0] == '[') {
		parse_section(p, p->lineno, str);
		str[0] = '\0';
		return str;
	}
	if (!is_blank_or_comment(str) && !strpbrk(str, "=:")) {
		/* inih would stop counting this as a key: say what is wrong. */
		error_at(p, p->lineno, "syntax error: expected [SECTION] or KEY = VALUE");
		str[0] = '\0';
	}
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	unsigned line = p->lineno;
	size_t idx;

	if (p->oom)
		return 1;
	if (name[0] == '\0') {
		error_at(p, line, "syntax error: empty key name");
		return 1;
	}
	if (p->section == S_SKIP)
		return 1;
	if (p->section == S_NONE) {
		error_at(p, line, "key '%s' outside any section", name);
		return 1;
	}

	char sect[INI_MAX_LINE + 16];
	if (p->section == S_GUEST)
		snprintf(sect, sizeof(sect), "guest \"%s\"", p->guest->pattern);
	else
		snprintf(sect, sizeof(sect), "%s", section_names[p->section]);

	const struct key_def *k = find_key(p->section, name, &idx);
	if (!k) {
		error_at(p, line, "[%s] %s: unknown key", sect, name);
		return 1;
	}
	unsigned *first = p->section == S_GUEST
				  ? &p->guest_key_line[p->guest - p->c->guests][idx]
				  : &p->key_line[idx];
	if (*first) {
		error_at(p, line, "[%s] %s: duplicate key (first at line %u)", sect, name, *first);
		return 1;
	}
	*first = line;
	if (p->section == S_GUEST) {
		if (set_value(p, line, sect, k, p->guest, value) == 0)
			p->guest->set |= k->guest_bit;
	} else {
		(void)set_value(p, line, sect, k, p->c, value);
	}
	return 1;
}

static unsigned key_line(const struct parser *p, const char *sect, const char *key)
{
	size_t idx = 0;
	for (int s = 0; s < S_GUEST; s++)
		if (strcmp(section_names[s], sect) == 0 && find_key(s, key, &idx))
			return p->key_line[idx];
	return 0;
}

/* Checks between keys, once every key is known. */
static void cross_check(struct parser *p)
{
	const struct ovcd_config *c = p->c;
	char a[48], b[48];

	if (!c->host.low.automatic && !c->host.high.automatic &&
	    c->host.low.percent == c->host.high.percent &&
	    (c->host.low.percent ? c->host.low.basis_points >= c->host.high.basis_points
				 : c->host.low.bytes >= c->host.high.bytes)) {
		unsigned lh = key_line(p, "host", "high"), ll = key_line(p, "host", "low");
		error_at(p, MAX(lh, ll), "[host] %s: high (%s) must be above low (%s)",
			 lh >= ll ? "high" : "low", ovcd_format_conf_size(&c->host.high, a, sizeof(a)),
			 ovcd_format_conf_size(&c->host.low, b, sizeof(b)));
	}
	if (c->balloon.stats_period_usec % USEC_PER_SEC)
		error_at(p, key_line(p, "balloon", "stats_period"),
			 "[balloon] stats_period: %s is not a whole number of seconds",
			 ovcd_format_duration(c->balloon.stats_period_usec, a, sizeof(a)));
	if (c->balloon.stale_after_usec <= c->balloon.stats_period_usec) {
		unsigned ls = key_line(p, "balloon", "stale_after"),
			 lp = key_line(p, "balloon", "stats_period");
		error_at(p, MAX(ls, lp),
			 "[balloon] %s: stale_after (%s) must be longer than stats_period (%s)",
			 ls >= lp ? "stale_after" : "stats_period",
			 ovcd_format_duration(c->balloon.stale_after_usec, a, sizeof(a)),
			 ovcd_format_duration(c->balloon.stats_period_usec, b, sizeof(b)));
	}
	if (c->ksm.min_pages_to_scan > c->ksm.max_pages_to_scan) {
		unsigned l1 = key_line(p, "ksm", "min_pages_to_scan"),
			 l2 = key_line(p, "ksm", "max_pages_to_scan");
		error_at(p, MAX(l1, l2),
			 "[ksm] %s: min_pages_to_scan (%llu) must not exceed max_pages_to_scan (%llu)",
			 l1 >= l2 ? "min_pages_to_scan" : "max_pages_to_scan",
			 (unsigned long long)c->ksm.min_pages_to_scan,
			 (unsigned long long)c->ksm.max_pages_to_scan);
	}
	if (c->host.psi_trigger_stall_usec > c->host.psi_trigger_window_usec) {
		unsigned l1 = key_line(p, "host", "psi_trigger_stall"),
			 l2 = key_line(p, "host", "psi_trigger_window");
		error_at(p, MAX(l1, l2),
			 "[host] %s: psi_trigger_stall (%s) must not exceed psi_trigger_window (%s)",
			 l1 >= l2 ? "psi_trigger_stall" : "psi_trigger_window",
			 ovcd_format_duration(c->host.psi_trigger_stall_usec, a, sizeof(a)),
			 ovcd_format_duration(c->host.psi_trigger_window_usec, b, sizeof(b)));
	}
}

static int config_alloc(const char *path, struct parser *p)
{
	*p = (struct parser){ .path = path, .section = S_NONE };
	p->c = calloc(1, sizeof(*p->c));
	if (!p->c)
		return -ENOMEM;
	p->c->path = strdup(path);
	if (!p->c->path)
		return -ENOMEM;
	set_defaults(p);
	if (p->oom)
		return -ENOMEM;
	/* Defaults that do not parse or cross-check are a bug in the table. */
	assert(p->n_errors == 0);
	return 0;
}

static void parser_done(struct parser *p)
{
	ovcd_config_free(p->c);
	free(p->guest_key_line);
	free(p->errors);
}

int ovcd_config_new_default(struct ovcd_config **ret)
{
	struct parser p;
	int r = config_alloc("(defaults)", &p);

	if (r == 0) {
		*ret = p.c;
		p.c = NULL;
	}
	parser_done(&p);
	return r;
}

int ovcd_config_parse(const char *path, const char *text, size_t len, struct ovcd_config **ret,
		     char **ret_errors)
{
	struct parser p;
	int r;

	if (!path || (!text && len) || !ret)
		return -EINVAL;
	r = config_alloc(path, &p);
	if (r < 0)
		goto out;
	if (len > CONFIG_MAX_BYTES) {
		error_at(&p, 0, "file too large (%zu bytes, at most %llu)", len,
			 (unsigned long long)CONFIG_MAX_BYTES);
		r = -EFBIG;
		goto out;
	}
	p.text = text;
	p.len = len;
	int e = ini_parse_stream(reader, &p, handler, &p);
	if (e == -2 || p.oom) {
		r = -ENOMEM;
		goto out;
	}
	/* Every line inih could reject was replaced by the reader, so this is
	 * a safety net for inih versions that reject more. */
	if (e > 0 && p.n_errors == 0)
		error_at(&p, (unsigned)e, "syntax error");
	if (p.n_errors == 0)
		cross_check(&p);
	if (p.oom) {
		r = -ENOMEM;
		goto out;
	}
	if (p.n_errors) {
		r = -EINVAL;
		goto out;
	}
	*ret = p.c;
	p.c = NULL;
	r = 0;
out:
	if (r < 0 && ret_errors && p.errors) {
		*ret_errors = p.errors;
		p.errors = NULL;
	}
	parser_done(&p);
	return r;
}

static int errors_text(char **ret_errors, const char *path, int err)
{
	if (ret_errors) {
		char buf[1024];
		snprintf(buf, sizeof(buf), "%s: cannot read: %s\n", path, strerror(-err));
		char *d = strdup(buf);
		if (d)
			*ret_errors = d;
	}
	return err;
}

int ovcd_config_load(const char *path, struct ovcd_config **ret, char **ret_errors)
{
	_cleanup_(closep) int fd = -1;
	_cleanup_(freep) char *buf = NULL;
	struct stat st;
	size_t n = 0;

	if (!path || !ret)
		return -EINVAL;
	/* O_NONBLOCK: a FIFO put at @path must not hang the open (and with
	 * it ovcd's loop on reload); it is refused below. Symlinks are
	 * followed: an admin may link /etc/ovc/ovcd.conf to where config
	 * management keeps it; the path is root's choice, on root's
	 * directories (ovcd.conf(5)). */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errors_text(ret_errors, path, negative_errno());
	if (fstat(fd, &st) < 0)
		return errors_text(ret_errors, path, negative_errno());
	if (S_ISDIR(st.st_mode))
		return errors_text(ret_errors, path, -EISDIR);
	if (!S_ISREG(st.st_mode)) {
		if (ret_errors && asprintf(ret_errors, "%s: cannot read: not a regular file\n", path) < 0)
			*ret_errors = NULL;
		return -EINVAL;
	}
	/* Read one byte past the limit so that the parser reports the size. */
	buf = malloc(CONFIG_MAX_BYTES + 1);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t k = read(fd, buf + n, CONFIG_MAX_BYTES + 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return errors_text(ret_errors, path, negative_errno());
		if (k == 0 || (n += (size_t)k) > CONFIG_MAX_BYTES)
			break;
	}
	return ovcd_config_parse(path, buf, n, ret, ret_errors);
}

void ovcd_config_guest_settings(const struct ovcd_config *c, const char *name,
			       struct ovcd_guest_settings *ret)
{
	unsigned have = 0;

	*ret = (struct ovcd_guest_settings){
		.floor = c->balloon.floor,
		.step = c->balloon.step,
		.guest_free = c->balloon.guest_free,
		.priority = 50,
		.ksm = true,
	};
	for (size_t i = 0; i < c->n_guests; i++) {
		const struct ovcd_guest_conf *g = &c->guests[i];
		unsigned take = g->set & ~have;
		if (!take || fnmatch(g->pattern, name, 0) != 0)
			continue;
		if (take & OVC_GUEST_SET_FLOOR)
			ret->floor = g->floor;
		if (take & OVC_GUEST_SET_STEP)
			ret->step = g->step;
		if (take & OVC_GUEST_SET_GUEST_FREE)
			ret->guest_free = g->guest_free;
		if (take & OVC_GUEST_SET_NEVER_BALLOON)
			ret->never_balloon = g->never_balloon;
		if (take & OVC_GUEST_SET_NEVER_SWAP)
			ret->never_swap = g->never_swap;
		if (take & OVC_GUEST_SET_PRIORITY)
			ret->priority = (uint32_t)g->priority;
		if (take & OVC_GUEST_SET_KSM)
			ret->ksm = g->ksm;
		have |= take;
	}
}

static void format_value(const struct key_def *k, const void *base, char *buf, size_t n)
{
	const void *field = (const char *)base + k->offset;

	switch (k->type) {
	case T_SIZE:
	case T_SIZE_PCT:
	case T_SIZE_AUTO:
		ovcd_format_conf_size(field, buf, n);
		break;
	case T_PERCENT:
		ovcd_format_percent(*(const uint32_t *)field, buf, n);
		break;
	case T_DURATION:
		ovcd_format_duration(*(const uint64_t *)field, buf, n);
		break;
	case T_BOOL:
		snprintf(buf, n, "%s", *(const bool *)field ? "yes" : "no");
		break;
	case T_UINT:
		snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)field);
		break;
	default: {
		const char *s = *(char *const *)field;
		snprintf(buf, n, "%s", s && *s ? s : "\"\"");
		break;
	}
	}
}

int ovcd_config_print(const struct ovcd_config *c, FILE *f)
{
	char v[INI_MAX_LINE + 1];

	fprintf(f, "# effective configuration from %s\n", c->path);
	for (int s = 0; s < S_GUEST; s++) {
		fprintf(f, "\n[%s]\n", section_names[s]);
		for (size_t i = 0; i < N_KEYS; i++)
			if (keys[i].section == (enum section)s) {
				format_value(&keys[i], c, v, sizeof(v));
				fprintf(f, "%s = %s\n", keys[i].key, v);
			}
	}
	for (size_t g = 0; g < c->n_guests; g++) {
		fprintf(f, "\n[guest \"%s\"]\n", c->guests[g].pattern);
		for (size_t i = 0; i < N_KEYS; i++)
			if (keys[i].section == S_GUEST && (c->guests[g].set & keys[i].guest_bit)) {
				format_value(&keys[i], &c->guests[g], v, sizeof(v));
				fprintf(f, "%s = %s\n", keys[i].key, v);
			}
	}
	if (fflush(f) != 0 || ferror(f))
		return negative_errno();
	return 0;
}

/* Integer square root (floor). */
static uint64_t isqrt(uint64_t v)
{
	uint64_t r = 0, bit = UINT64_C(1) << 62;

	while (bit > v)
		bit >>= 2;
	for (; bit; bit >>= 2) {
		if (v >= r + bit) {
			v -= r + bit;
			r = (r >> 1) + bit;
		} else {
			r >>= 1;
		}
	}
	return r;
}

void ovcd_config_watermarks(const struct ovcd_config *c, uint64_t total, uint64_t *ret_reserve,
			   uint64_t *ret_low, uint64_t *ret_high)
{
	uint64_t reserve = ovcd_conf_size_bytes(&c->host.reserve, total);
	/* The host's minimum free memory grows with the square root of its
	 * size, as the kernel's own min_free_kbytes does, at a scale fit for
	 * a hypervisor: 128MiB at 1GiB, 512MiB at 16GiB, 2GiB at 256GiB. */
	uint64_t minfree = isqrt(total / MIB) * 4 * MIB;

	if (reserve >= total)
		reserve = 0; /* a 1GiB reserve on a tiny test VM */
	uint64_t low = c->host.low.automatic ? MIN(reserve + minfree / 2, total / 2)
					      : ovcd_conf_size_bytes(&c->host.low, total);
	uint64_t high = c->host.high.automatic ? MIN(low + minfree / 2, total - total / 4)
					        : ovcd_conf_size_bytes(&c->host.high, total);
	if (ret_reserve)
		*ret_reserve = reserve;
	if (ret_low)
		*ret_low = low;
	if (ret_high)
		*ret_high = MAX(high, low);
}

void ovcd_config_foreach_key(void (*fn)(void *userdata, const char *section, const char *key,
				       const char *default_text),
			    void *userdata)
{
	for (size_t i = 0; i < N_KEYS; i++)
		fn(userdata, section_names[keys[i].section], keys[i].key,
		   keys[i].def ? keys[i].def : "");
}
