/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine control protocol's grammar (see endpoint-proto.h and
 * docs/engine-protocol.md). Pure functions: any thread, no locks.
 *
 * Everything a peer sends is hostile: lengths are explicit (a line may hold
 * NUL bytes), numbers are checked for overflow, and a parse error is a reply,
 * never a crash or an unbounded buffer.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/endpoint-proto.h"
#include "common/util.h"

bool ep_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > OVC_PUBLISH_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* A token: [p, p+n). */
struct tok {
	const char *p;
	size_t n;
};

static bool tok_is(struct tok t, const char *s)
{
	return t.n == strlen(s) && memcmp(t.p, s, t.n) == 0;
}

/* Split on runs of spaces. Returns the number of tokens (up to @max; one
 * more than @max means "too many"). */
static size_t split(const char *line, size_t len, struct tok *t, size_t max)
{
	size_t n = 0, i = 0;

	while (i < len) {
		size_t start;

		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && line[i] != ' ')
			i++;
		if (n == max)
			return max + 1;
		t[n++] = (struct tok){ line + start, i - start };
	}
	return n;
}

/* Unsigned decimal, 1..20 digits, no sign, no overflow. */
static int parse_u64(struct tok t, uint64_t *ret)
{
	uint64_t v = 0;

	if (t.n == 0 || t.n > 20)
		return t.n > 20 ? -ERANGE : -EPROTO;
	for (size_t i = 0; i < t.n; i++) {
		unsigned d = (unsigned char)t.p[i] - '0';

		if (d > 9)
			return -EPROTO;
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	*ret = v;
	return 0;
}

/* Strip the '\r' of a "\r\n" line; refuse control bytes (NUL included). */
static int clean_line(const char *line, size_t *len)
{
	if (*len && line[*len - 1] == '\r')
		(*len)--;
	for (size_t i = 0; i < *len; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] == 0x7f)
			return -EPROTO;
	return 0;
}

static int fail(int err, char *msg, size_t size, const char *fmt, ...) _printf_(4, 5);
static int fail(int err, char *msg, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (size) {
		va_start(ap, fmt);
		vsnprintf(msg, size, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* "OVC<digits>": 1 for this version, 0 for another, -1 for not a version. */
static int version_of(struct tok t)
{
	if (t.n < 4 || t.n > 12 || memcmp(t.p, "OVC", 3) != 0)
		return -1;
	for (size_t i = 3; i < t.n; i++)
		if (t.p[i] < '0' || t.p[i] > '9')
			return -1;
	return tok_is(t, EP_VERSION_TOKEN) ? 1 : 0;
}

int ep_parse_request(const char *line, size_t len, struct ep_request *req, char *msg,
		     size_t msg_size)
{
	struct tok t[4];
	struct ep_request r = { 0 };
	size_t n;
	int v;

	if (!line || !req)
		return -EINVAL;
	if (clean_line(line, &len) < 0)
		return fail(-EPROTO, msg, msg_size, "control byte in request");
	n = split(line, len, t, ARRAY_SIZE(t) - 1);
	if (n == 0)
		return fail(-EPROTO, msg, msg_size, "empty request");
	v = version_of(t[0]);
	if (v < 0)
		return fail(-EPROTO, msg, msg_size,
			    "not an ovc engine request; expected \"%s <command>\"", EP_VERSION_TOKEN);
	if (v == 0)
		return fail(-EPROTONOSUPPORT, msg, msg_size,
			    "protocol version %.*s not supported; this engine speaks %s", (int)t[0].n,
			    t[0].p, EP_VERSION_TOKEN);
	if (n > ARRAY_SIZE(t) - 1)
		return fail(-EINVAL, msg, msg_size, "too many arguments");
	if (n < 2)
		return fail(-EINVAL, msg, msg_size, "missing command");

	if (tok_is(t[1], "stats")) {
		if (n != 2)
			return fail(-EINVAL, msg, msg_size, "stats takes no arguments");
		r.cmd = EP_CMD_STATS;
	} else if (tok_is(t[1], "reclaim")) {
		static const char key[] = "target_bytes=";
		struct tok val;
		int e;

		if (n != 3 || t[2].n < sizeof(key) - 1 || memcmp(t[2].p, key, sizeof(key) - 1) != 0)
			return fail(-EINVAL, msg, msg_size, "usage: reclaim target_bytes=N");
		val = (struct tok){ t[2].p + sizeof(key) - 1, t[2].n - (sizeof(key) - 1) };
		e = parse_u64(val, &r.target_bytes);
		if (e == -ERANGE)
			return fail(-ERANGE, msg, msg_size, "target_bytes beyond 2^64-1");
		if (e < 0)
			return fail(-EINVAL, msg, msg_size, "target_bytes is not an unsigned decimal");
		r.cmd = EP_CMD_RECLAIM;
	} else {
		return fail(-EINVAL, msg, msg_size, "unknown command \"%.*s\"; known: stats, reclaim",
			    (int)MIN(t[1].n, (size_t)32), t[1].p);
	}
	*req = r;
	return 0;
}

static int done(int n, size_t size)
{
	return n < 0 || (size_t)n >= size ? -ENOBUFS : n;
}

/* The numeric figures of a stats reply, in the order they are sent. */
static const struct {
	const char *key;
	size_t off;
	unsigned bit;
} stats_keys[] = {
	{ "pid", offsetof(struct ep_stats, pid), EP_HAVE_PID },
	{ "max_bytes", offsetof(struct ep_stats, max_bytes), EP_HAVE_MAX },
	{ "region_bytes", offsetof(struct ep_stats, region_bytes), EP_HAVE_REGION },
	{ "zero_bytes", offsetof(struct ep_stats, zero_bytes), EP_HAVE_ZERO },
	{ "swap_bytes", offsetof(struct ep_stats, swap_bytes), EP_HAVE_SWAP },
	{ "target_bytes", offsetof(struct ep_stats, target_bytes), EP_HAVE_TARGET },
	{ "saved_bytes", offsetof(struct ep_stats, saved_bytes), EP_HAVE_SAVED },
	{ "pages_swapped_in", offsetof(struct ep_stats, pages_swapped_in), EP_HAVE_SWAPPED_IN },
	{ "refaults", offsetof(struct ep_stats, refaults), EP_HAVE_REFAULTS },
	{ "pages_swapped_out", offsetof(struct ep_stats, pages_swapped_out), EP_HAVE_SWAPPED_OUT },
	{ "swap_cache_pages", offsetof(struct ep_stats, swap_cache_pages), EP_HAVE_SWAP_CACHE },
	{ "swap_cache_hits", offsetof(struct ep_stats, swap_cache_hits), EP_HAVE_SWAP_CACHE_HITS },
	{ "swap_write_errors", offsetof(struct ep_stats, swap_write_errors), EP_HAVE_WRITE_ERRORS },
	{ "swap_read_errors", offsetof(struct ep_stats, swap_read_errors), EP_HAVE_READ_ERRORS },
	{ "fault_p50_usec", offsetof(struct ep_stats, fault_p50_usec), EP_HAVE_FAULT_P50 },
	{ "fault_p99_usec", offsetof(struct ep_stats, fault_p99_usec), EP_HAVE_FAULT_P99 },
};
/* name plus the numbers: an OVC1 client refuses more pairs. */
_Static_assert(1 + ARRAY_SIZE(stats_keys) <= EP_REPLY_PAIRS_MAX, "too many keys for OVC1 clients");

static uint64_t stats_get(const struct ep_stats *st, size_t i)
{
	uint64_t v;

	memcpy(&v, (const char *)st + stats_keys[i].off, sizeof(v));
	return v;
}

int ep_format_stats(char *buf, size_t size, const struct ep_stats *st, unsigned have)
{
	int n = snprintf(buf, size, EP_VERSION_TOKEN " ok name=%s", st->name);

	have |= EP_HAVE_STATS_BASE;
	for (size_t i = 0; i < ARRAY_SIZE(stats_keys) && n >= 0 && (size_t)n < size; i++)
		if (have & stats_keys[i].bit)
			n += snprintf(buf + n, size - (size_t)n, " %s=%" PRIu64, stats_keys[i].key,
				      stats_get(st, i));
	if (n >= 0 && (size_t)n < size)
		n += snprintf(buf + n, size - (size_t)n, "\n");
	return done(n, size);
}

bool ep_lat_percentile(const uint64_t *hist, size_t n, unsigned pct, uint64_t *ret_usec)
{
	unsigned __int128 total = 0, rank, seen = 0;

	if (n == 0 || n > 64 || pct == 0 || pct > 100)
		return false;
	for (size_t i = 0; i < n; i++)
		total += hist[i];
	if (total == 0)
		return false;
	/* The smallest bucket holding at least pct% of the faults. */
	rank = (total * pct + 99) / 100;
	for (size_t i = 0; i < n; i++) {
		seen += hist[i];
		if (seen >= rank) {
			*ret_usec = UINT64_C(1) << (i < 63 ? i : 63);
			return true;
		}
	}
	return false; /* not reached: seen ends at total >= rank */
}

int ep_format_reclaim_ok(char *buf, size_t size, uint64_t target_bytes)
{
	return done(snprintf(buf, size, EP_VERSION_TOKEN " ok target_bytes=%" PRIu64 "\n",
			     target_bytes),
		    size);
}

int ep_format_error(char *buf, size_t size, int err, const char *msg)
{
	char clean[EP_MSG_MAX + 1];
	size_t n = 0;

	for (; msg && msg[n] && n < EP_MSG_MAX; n++) {
		unsigned char c = (unsigned char)msg[n];

		clean[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	clean[n] = '\0';
	if (err < 0)
		err = -err;
	return done(snprintf(buf, size, EP_VERSION_TOKEN " error errno=%d msg=%s\n", err, clean),
		    size);
}

/* key=value of an ok reply into @r; unknown keys are skipped. */
static int reply_pair(struct tok t, struct ep_reply *r)
{
	const char *eq = memchr(t.p, '=', t.n);
	struct tok key, val;

	if (!eq || eq == t.p)
		return -EPROTO;
	key = (struct tok){ t.p, (size_t)(eq - t.p) };
	val = (struct tok){ eq + 1, t.n - key.n - 1 };
	if (tok_is(key, "name")) {
		if (!ep_name_valid(val.p, val.n))
			return -EPROTO;
		memcpy(r->st.name, val.p, val.n);
		r->st.name[val.n] = '\0';
		r->have |= EP_HAVE_NAME;
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(stats_keys); i++) {
		uint64_t v;

		if (!tok_is(key, stats_keys[i].key))
			continue;
		if (parse_u64(val, &v) < 0)
			return -EPROTO;
		memcpy((char *)&r->st + stats_keys[i].off, &v, sizeof(v));
		r->have |= stats_keys[i].bit;
		return 0;
	}
	return 0;
}

int ep_parse_reply(const char *line, size_t len, struct ep_reply *ret)
{
	struct tok t[32];
	size_t n;

	if (!line || !ret)
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	if (clean_line(line, &len) < 0)
		return -EPROTO;
	n = split(line, len, t, ARRAY_SIZE(t));
	if (n < 2 || !tok_is(t[0], EP_VERSION_TOKEN))
		return -EPROTO;
	if (tok_is(t[1], "ok")) {
		if (n > ARRAY_SIZE(t))
			return -EPROTO;
		for (size_t i = 2; i < n; i++)
			if (reply_pair(t[i], ret) < 0)
				return -EPROTO;
		ret->ok = true;
		return 0;
	}
	if (tok_is(t[1], "error")) {
		static const char key[] = "errno=";
		const char *m, *end = line + len;
		uint64_t v;

		if (n < 3 || t[2].n <= sizeof(key) - 1 || memcmp(t[2].p, key, sizeof(key) - 1) != 0)
			return -EPROTO;
		if (parse_u64((struct tok){ t[2].p + 6, t[2].n - 6 }, &v) < 0 || v == 0 || v > 4095)
			return -EPROTO;
		ret->err = -(int)v;
		/* msg= is the rest of the line, spaces included. */
		m = t[2].p + t[2].n;
		while (m < end && *m == ' ')
			m++;
		if (end - m >= 4 && memcmp(m, "msg=", 4) == 0) {
			size_t ml = MIN((size_t)(end - m - 4), (size_t)EP_MSG_MAX);

			memcpy(ret->msg, m + 4, ml);
			ret->msg[ml] = '\0';
		}
		return 0;
	}
	return -EPROTO;
}

void ep_lines_init(struct ep_lines *l, char *buf, size_t cap)
{
	*l = (struct ep_lines){ .buf = buf, .cap = cap };
}

static void compact(struct ep_lines *l)
{
	if (!l->consumed)
		return;
	memmove(l->buf, l->buf + l->consumed, l->len - l->consumed);
	l->len -= l->consumed;
	l->consumed = 0;
}

char *ep_lines_space(struct ep_lines *l, size_t *ret_len)
{
	compact(l);
	*ret_len = l->cap - l->len;
	return l->buf + l->len;
}

void ep_lines_added(struct ep_lines *l, size_t n)
{
	l->len += MIN(n, l->cap - l->len);
}

int ep_lines_next(struct ep_lines *l, const char **ret_line, size_t *ret_len)
{
	char *nl;

	compact(l);
	nl = memchr(l->buf, '\n', l->len);
	if (!nl)
		return l->len == l->cap ? -EMSGSIZE : 0;
	*nl = '\0';
	*ret_line = l->buf;
	*ret_len = (size_t)(nl - l->buf);
	l->consumed = *ret_len + 1;
	return 1;
}
