/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness: the engine control protocol (lib/common/endpoint-proto.c) on
 * bytes any local client (requests) or a rogue socket in the engine
 * directory (replies) could send. The bytes go through the bounded line
 * splitter in chunks (the first byte picks the chunk size) exactly as the
 * endpoint reads a socket; each line is parsed both as a request and as a
 * reply. Checked: a parsed request re-parses the same after formatting; an
 * error reply of any message parses back to that errno; a parsed reply's
 * name is valid, and a parsed stats reply formats back into a reply that
 * fits and parses to the same figures.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/endpoint-proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_line(const char *line, size_t len)
{
	char msg[EP_MSG_MAX], buf[EP_REPLY_MAX];
	struct ep_request req;
	struct ep_reply rp;
	int r;

	assert(len < EP_REQUEST_MAX);
	r = ep_parse_request(line, len, &req, msg, sizeof(msg));
	if (r == 0) {
		struct ep_request again;

		assert(req.cmd == EP_CMD_STATS || req.cmd == EP_CMD_RECLAIM);
		if (req.cmd == EP_CMD_RECLAIM) {
			int n = snprintf(buf, sizeof(buf), "OVC1 reclaim target_bytes=%llu",
					 (unsigned long long)req.target_bytes);
			assert(ep_parse_request(buf, (size_t)n, &again, NULL, 0) == 0);
			assert(again.target_bytes == req.target_bytes);
		}
	} else {
		int n;

		assert(r == -EPROTO || r == -EPROTONOSUPPORT || r == -EINVAL || r == -ERANGE);
		/* The engine's answer to it must be a valid reply. */
		n = ep_format_error(buf, sizeof(buf), r, msg);
		assert(n > 0 && buf[n - 1] == '\n');
		assert(ep_parse_reply(buf, (size_t)n - 1, &rp) == 0 && !rp.ok && rp.err == r);
	}
	/* Any bytes as a message: still one valid line. */
	{
		char m[EP_MSG_MAX + 1];
		size_t ml = len < EP_MSG_MAX ? len : EP_MSG_MAX;
		int n;

		memcpy(m, line, ml);
		m[ml] = '\0';
		n = ep_format_error(buf, sizeof(buf), EINVAL, m);
		assert(n > 0 && memchr(buf, '\n', (size_t)n) == buf + n - 1);
		assert(ep_parse_reply(buf, (size_t)n - 1, &rp) == 0 && rp.err == -EINVAL);
	}
	if (ep_parse_reply(line, len, &rp) == 0 && rp.ok && (rp.have & EP_HAVE_NAME)) {
		struct ep_reply again;
		int n;

		assert(ep_name_valid(rp.st.name, strlen(rp.st.name)));
		assert((rp.have & ~EP_HAVE_STATS_ALL) == 0);
		n = ep_format_stats(buf, sizeof(buf), &rp.st, rp.have);
		assert(n > 0 && buf[n - 1] == '\n');
		assert(ep_parse_reply(buf, (size_t)n - 1, &again) == 0 && again.ok);
		assert(again.have == (rp.have | EP_HAVE_STATS_BASE));
		/* (a repeated name= may leave bytes after the NUL) */
		assert(strcmp(again.st.name, rp.st.name) == 0);
		assert(memcmp(&again.st.pid, &rp.st.pid,
			      sizeof(rp.st) - offsetof(struct ep_stats, pid)) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[EP_REQUEST_MAX];
	struct ep_lines l;
	size_t chunk, off = 0;

	if (size < 1)
		return 0;
	chunk = (size_t)data[0] % 64 + 1;
	data++, size--;
	ep_lines_init(&l, buf, sizeof(buf));
	while (off < size) {
		size_t room, n;
		char *at = ep_lines_space(&l, &room);
		const char *line;
		size_t len;
		int r;

		if (room == 0)
			break;
		n = size - off < chunk ? size - off : chunk;
		n = n < room ? n : room;
		memcpy(at, data + off, n);
		ep_lines_added(&l, n);
		off += n;
		while ((r = ep_lines_next(&l, &line, &len)) == 1)
			check_line(line, len);
		if (r < 0)
			return 0; /* the endpoint hangs up here */
	}
	return 0;
}
