/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine control protocol (docs/engine-protocol.md), as pure functions
 * both ends share: the engine's endpoint (lib/engine/endpoint.c) parses requests
 * and formats replies, the "ovc" balloon driver (balloon-driver/ovc.c)
 * formats requests and parses replies. No I/O, no allocation, no state:
 * callable from any thread, and fuzzed (tests/fuzz/fuzz-endpoint.c).
 *
 * One request or reply per line, ASCII, '\n'-terminated, tokens separated by
 * spaces, every number unsigned decimal. A line is bounded (EP_REQUEST_MAX,
 * EP_REPLY_MAX, the '\n' included) so neither end buffers without limit.
 */
#ifndef OVC_ENDPOINT_PROTO_H
#define OVC_ENDPOINT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ovc/endpoint.h>

#define EP_VERSION 1
#define EP_VERSION_TOKEN "OVC1"
#define EP_REQUEST_MAX 256
#define EP_REPLY_MAX 1024
/* Longest msg= text of an error reply. */
#define EP_MSG_MAX 200

enum ep_cmd {
	EP_CMD_STATS = 1,
	EP_CMD_RECLAIM = 2,
};

struct ep_request {
	enum ep_cmd cmd;
	uint64_t target_bytes; /* EP_CMD_RECLAIM */
};

/*
 * Parse one request line, without its '\n' (a trailing '\r' is allowed).
 * Returns 0 and fills *req, or a negative errno and a sentence in @msg:
 * -EPROTO (not a line of this protocol: no "OVC<n>" first, a control byte,
 * bad syntax), -EPROTONOSUPPORT (another version), -EINVAL (unknown
 * command, unknown, missing or repeated argument), -ERANGE (a number over
 * 2^64-1). *req is untouched on failure.
 */
int ep_parse_request(const char *line, size_t len, struct ep_request *req, char *msg,
		     size_t msg_size);

/* What "stats" reports; the reply's key names are the field names. */
struct ep_stats {
	char name[OVC_PUBLISH_NAME_MAX + 1];
	uint64_t pid;
	uint64_t max_bytes;
	uint64_t region_bytes;
	uint64_t zero_bytes;
	uint64_t swap_bytes;
	uint64_t target_bytes;
	uint64_t saved_bytes;
	uint64_t pages_swapped_in;
	uint64_t refaults;
	/* Optional (EP_HAVE_* below): an older engine does not send them. */
	uint64_t pages_swapped_out;
	uint64_t swap_cache_pages;   /* now */
	uint64_t swap_cache_hits;
	uint64_t swap_write_errors;
	uint64_t swap_read_errors;
	/* Percentiles of the fault service time since the engine started, as
	 * the upper bound of their histogram bucket (ep_lat_percentile());
	 * sent only once a fault was served. */
	uint64_t fault_p50_usec;
	uint64_t fault_p99_usec;
};

/* Which ep_stats fields a parsed reply carried (struct ep_reply.have). */
enum {
	EP_HAVE_NAME = 1u << 0,
	EP_HAVE_PID = 1u << 1,
	EP_HAVE_MAX = 1u << 2,
	EP_HAVE_REGION = 1u << 3,
	EP_HAVE_ZERO = 1u << 4,
	EP_HAVE_SWAP = 1u << 5,
	EP_HAVE_TARGET = 1u << 6,
	EP_HAVE_SAVED = 1u << 7,
	EP_HAVE_SWAPPED_IN = 1u << 8,
	EP_HAVE_REFAULTS = 1u << 9,
	EP_HAVE_SWAPPED_OUT = 1u << 10,
	EP_HAVE_SWAP_CACHE = 1u << 11,
	EP_HAVE_SWAP_CACHE_HITS = 1u << 12,
	EP_HAVE_WRITE_ERRORS = 1u << 13,
	EP_HAVE_READ_ERRORS = 1u << 14,
	EP_HAVE_FAULT_P50 = 1u << 15,
	EP_HAVE_FAULT_P99 = 1u << 16,
};
#define EP_HAVE_STATS_REQUIRED (EP_HAVE_NAME | EP_HAVE_MAX | EP_HAVE_ZERO | EP_HAVE_SWAP | EP_HAVE_TARGET)
/* What every engine since the first sends; the rest is optional. */
#define EP_HAVE_STATS_BASE ((1u << 10) - 1)
#define EP_HAVE_STATS_ALL ((1u << 17) - 1)

/*
 * An OVC1 client splits a reply into at most 32 tokens and refuses a longer
 * one, so a reply carries at most EP_REPLY_PAIRS_MAX key=value pairs: new
 * optional keys must fit under it (a static assertion in the formatter).
 */
#define EP_REPLY_PAIRS_MAX 30

/* Replies, '\n' included and NUL-terminated. Return the length, or -ENOBUFS
 * if @size is too small (never with EP_REPLY_MAX). ep_format_stats() sends
 * the optional figures whose bit is in @have (the required ones always). */
int ep_format_stats(char *buf, size_t size, const struct ep_stats *st, unsigned have);
int ep_format_reclaim_ok(char *buf, size_t size, uint64_t target_bytes);
/* @err is a negative or positive errno; control bytes of @msg become '?'
 * and it is cut to EP_MSG_MAX. */
int ep_format_error(char *buf, size_t size, int err, const char *msg);

struct ep_reply {
	bool ok;
	int err;                 /* error reply: the engine's errno, negative */
	char msg[EP_MSG_MAX + 1]; /* error reply: its text */
	unsigned have;           /* ok reply: EP_HAVE_* present */
	struct ep_stats st;      /* ok reply: figures present (target_bytes also for reclaim) */
};

/*
 * Parse one reply line, without its '\n'. Keys this version does not know
 * are skipped (an engine may report more). Returns 0 and fills *ret, or
 * -EPROTO (not a reply of this version, bad number, bad name, bad errno),
 * *ret then unspecified.
 */
int ep_parse_reply(const char *line, size_t len, struct ep_reply *ret);

/*
 * Percentile @pct (1..100) of a fault latency histogram laid out as
 * ovc_engine_stats' fault_lat_hist (bucket i: under 2^i µs, at least
 * 2^(i-1); the last open-ended): the upper bound of the bucket it falls in,
 * 2^i µs (for the open last bucket, 2^(n-1) stands for 2^(n-2) or more). Returns
 * false for an empty histogram. Sums saturate: any counts are accepted.
 */
bool ep_lat_percentile(const uint64_t *hist, size_t n, unsigned pct, uint64_t *ret_usec);

/* Whether @name is a valid published name (see struct ovc_publish_opts). */
bool ep_name_valid(const char *name, size_t len);

/*
 * A bounded line buffer for a byte stream. ep_lines_next() hands out the
 * next complete line (without '\n', NUL-terminated in place) and consumes
 * it at the following call; returns 1, 0 (no complete line yet) or
 * -EMSGSIZE (the buffer is full and holds no '\n': the peer sends a line
 * longer than allowed; the stream cannot be resynchronised).
 */
struct ep_lines {
	char *buf;
	size_t cap, len, consumed;
};

void ep_lines_init(struct ep_lines *l, char *buf, size_t cap);
/* Free space at the end after dropping consumed bytes; write there, then
 * ep_lines_added(). */
char *ep_lines_space(struct ep_lines *l, size_t *ret_len);
void ep_lines_added(struct ep_lines *l, size_t n);
int ep_lines_next(struct ep_lines *l, const char **ret_line, size_t *ret_len);

#endif
