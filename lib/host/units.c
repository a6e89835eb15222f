/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sizes, durations, percentages, booleans and integers as ovcd's config,
 * the control protocol, ovcctl and the policy's reasons write them
 * (units.h). Pure: any thread, no state, no locks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"
#include "host/units.h"

uint64_t ovcd_conf_size_bytes(const struct ovcd_conf_size *s, uint64_t of_bytes)
{
	if (s->automatic)
		return 0;
	if (!s->percent)
		return s->bytes;
	/* of_bytes < 2^54 for any real memory size, so this cannot overflow. */
	return (uint64_t)(((unsigned __int128)of_bytes * s->basis_points) / 10000);
}

/* ---- typed value parsers ---- */

/* A decimal number with an optional fraction: *int_part, and the fraction
 * as *frac / 10^*frac_digits (at most 9 digits kept). Returns the end. */
static const char *parse_decimal(const char *s, uint64_t *int_part, uint64_t *frac,
				 unsigned *frac_digits)
{
	uint64_t v = 0, f = 0;
	unsigned fd = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return NULL;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return NULL;
		for (; *p >= '0' && *p <= '9'; p++)
			if (fd < 9) {
				f = f * 10 + (uint64_t)(*p - '0');
				fd++;
			}
	}
	*int_part = v;
	*frac = f;
	*frac_digits = fd;
	return p;
}

static uint64_t pow10u(unsigned n)
{
	uint64_t r = 1;
	for (; n; n--)
		r *= 10;
	return r;
}

/* int_part.frac * mult, rounded down; -ERANGE on overflow. */
static int scale(uint64_t int_part, uint64_t frac, unsigned frac_digits, uint64_t mult,
		 uint64_t *ret)
{
	unsigned __int128 v = (unsigned __int128)int_part * mult +
			      (unsigned __int128)frac * mult / pow10u(frac_digits);
	if (v > UINT64_MAX)
		return -ERANGE;
	*ret = (uint64_t)v;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mult;
};

/* "NUMBER UNIT" with one of @units, or a bare "0"; -EINVAL, -ERANGE.
 * With @allow_percent, "NUMBER%" gives *ret_percent and basis points. */
static int parse_with_units(const char *s, const struct unit *units, size_t n_units,
			    bool allow_percent, bool *ret_percent, uint64_t *ret)
{
	uint64_t ip, fr, v;
	unsigned fd;
	const char *p = parse_decimal(s, &ip, &fr, &fd);

	if (!p)
		return -EINVAL;
	p += strspn(p, " \t");
	if (*p == '%') {
		if (!allow_percent || p[1 + strspn(p + 1, " \t")])
			return -EINVAL;
		if (scale(ip, fr, fd, 100, &v) < 0 || v > 10000)
			return -ERANGE;
		*ret_percent = true;
		*ret = v;
		return 0;
	}
	if (*p == '\0') {
		/* A bare number is ambiguous, except nothing at all. */
		if (ip != 0 || fr != 0)
			return -EINVAL;
		*ret_percent = false;
		*ret = 0;
		return 0;
	}
	for (size_t i = 0; i < n_units; i++) {
		size_t n = strlen(units[i].name);
		if (strncmp(p, units[i].name, n) == 0 && p[n + strspn(p + n, " \t")] == '\0') {
			if (scale(ip, fr, fd, units[i].mult, &v) < 0)
				return -ERANGE;
			*ret_percent = false;
			*ret = v;
			return 0;
		}
	}
	return -EINVAL;
}

int ovcd_parse_size(const char *s, bool allow_percent, struct ovcd_conf_size *ret)
{
	static const struct unit units[] = {
		{ "B", 1 }, { "KiB", KIB }, { "MiB", MIB }, { "GiB", GIB }, { "TiB", TIB },
	};
	bool pct;
	uint64_t v;
	int r = parse_with_units(s, units, ARRAY_SIZE(units), allow_percent, &pct, &v);

	if (r < 0)
		return r;
	*ret = pct ? (struct ovcd_conf_size){ .percent = true, .basis_points = (uint32_t)v }
		   : (struct ovcd_conf_size){ .bytes = v };
	return 0;
}

int ovcd_parse_duration(const char *s, uint64_t *ret_usec)
{
	/* Units must match up to the end of the text, so "min" and "ms"
	 * never take each other's place. */
	static const struct unit units[] = {
		{ "us", 1 }, { "ms", 1000 }, { "s", USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
		{ "h", 3600 * USEC_PER_SEC },
	};
	bool pct;

	return parse_with_units(s, units, ARRAY_SIZE(units), false, &pct, ret_usec);
}

int ovcd_parse_percent(const char *s, uint32_t *ret_basis_points)
{
	struct ovcd_conf_size v;
	int r = ovcd_parse_size(s, true, &v);

	if (r < 0)
		return r;
	if (!v.percent)
		return -EINVAL;
	*ret_basis_points = v.basis_points;
	return 0;
}

int ovcd_parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int ovcd_parse_uint(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (*s)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* ---- formatting ---- */

char *ovcd_format_size(uint64_t bytes, char *buf, size_t n)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	unsigned u = 0;

	while (u + 1 < ARRAY_SIZE(units) && bytes != 0 && (bytes & 1023) == 0) {
		bytes >>= 10;
		u++;
	}
	snprintf(buf, n, "%llu%s", (unsigned long long)bytes, units[u]);
	return buf;
}

char *ovcd_format_duration(uint64_t usec, char *buf, size_t n)
{
	static const struct {
		const char *unit;
		uint64_t div;
	} units[] = {
		{ "h", 3600 * USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC }, { "s", USEC_PER_SEC },
		{ "ms", 1000 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(units) && usec; i++)
		if (usec % units[i].div == 0) {
			snprintf(buf, n, "%llu%s", (unsigned long long)(usec / units[i].div),
				 units[i].unit);
			return buf;
		}
	snprintf(buf, n, "%lluus", (unsigned long long)usec);
	if (usec == 0)
		snprintf(buf, n, "0s");
	return buf;
}

char *ovcd_format_percent(uint32_t bp, char *buf, size_t n)
{
	if (bp % 100 == 0)
		snprintf(buf, n, "%u%%", bp / 100);
	else if (bp % 10 == 0)
		snprintf(buf, n, "%u.%u%%", bp / 100, (bp % 100) / 10);
	else
		snprintf(buf, n, "%u.%02u%%", bp / 100, bp % 100);
	return buf;
}

char *ovcd_format_conf_size(const struct ovcd_conf_size *s, char *buf, size_t n)
{
	if (s->automatic) {
		snprintf(buf, n, "auto");
		return buf;
	}
	return s->percent ? ovcd_format_percent(s->basis_points, buf, n) : ovcd_format_size(s->bytes, buf, n);
}

char *ovcd_format_size_short(uint64_t bytes, char *buf, size_t n)
{
	if (bytes >= GIB) {
		uint64_t tenths = bytes / GIB * 10 + bytes % GIB * 10 / GIB;
		if (tenths % 10 == 0)
			snprintf(buf, n, "%" PRIu64 "GiB", tenths / 10);
		else
			snprintf(buf, n, "%" PRIu64 ".%" PRIu64 "GiB", tenths / 10, tenths % 10);
	} else if (bytes >= MIB) {
		snprintf(buf, n, "%" PRIu64 "MiB", bytes / MIB);
	} else {
		snprintf(buf, n, "%" PRIu64 "KiB", bytes / KIB);
	}
	return buf;
}
