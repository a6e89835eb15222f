/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness for the metrics port (daemon/metrics-http.c): what any
 * local user, or a guest on QEMU user-mode networking, can send to it. The
 * input is written as one request stream to a real connection served by
 * the real server (libmicrohttpd, external epoll mode) and the server is
 * driven until it closes. Properties beyond "no crash, no leak, no UB":
 *  - process() never blocks (a blocked call hangs the run: -timeout);
 *  - a connection whose peer has gone is closed at the next process();
 *  - a reply, if any, starts "HTTP/1."; the metrics (200) go only to a GET
 *    or HEAD of /metrics or / and carry the body whole, once;
 *  - ovcd_metrics_route() itself, on the input cut into method and path,
 *    routes to the metrics only for GET/HEAD of /metrics or /.
 * Main thread only, like the server.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char BODY[] = "# HELP ovc_guests Guests.\n# TYPE ovc_guests gauge\novc_guests 2\n# EOF\n";

static void body(void *userdata, const char **text, size_t *len)
{
	(void)userdata;
	*text = BODY;
	*len = sizeof(BODY) - 1;
}

static void check_route(const uint8_t *data, size_t size)
{
	char buf[256], *method = buf, *url;
	size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;

	memcpy(buf, data, n);
	buf[n] = '\0';
	url = strchr(buf, ' ');
	if (!url)
		return;
	*url++ = '\0';
	if (ovcd_metrics_route(method, url) == OVCD_METRICS_ROUTE_METRICS &&
	    !((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
	      (strcmp(url, "/metrics") == 0 || strcmp(url, "/") == 0)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ovcd_metrics_limits lim = {
		.max_connections = 64, .max_per_address = 64, .idle_timeout_sec = 5, .deadline_usec = 10 * USEC_PER_SEC,
	};
	static struct ovcd_metrics_server *s;
	static char out[1 << 16];
	size_t n = 0, off = 0, open_conns;
	int sv[2];
	const char *ok;

	check_route(data, size);
	if (!s) {
		signal(SIGPIPE, SIG_IGN);
		if (ovcd_metrics_server_new(-1, &lim, body, NULL, &s) < 0)
			abort();
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		return 0;
	if (ovcd_metrics_server_add_connection(s, sv[0]) < 0) {
		close(sv[1]);
		return 0;
	}
	/* Feed the input as the socket takes it, then end the stream; drive
	 * the server until it closes or a bound of rounds has passed (it
	 * may wait for more of a request: that is allowed, not a hang). */
	for (int round = 0; round < 256; round++) {
		ssize_t k;

		if (off < size) {
			k = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
			if (k > 0)
				off += (size_t)k;
			if (off == size)
				(void)shutdown(sv[1], SHUT_WR);
		} else if (size == 0 && round == 0) {
			(void)shutdown(sv[1], SHUT_WR);
		}
		ovcd_metrics_server_process(s);
		k = recv(sv[1], out + n, sizeof(out) - 1 - n, 0);
		if (k == 0 || (k < 0 && errno != EAGAIN))
			break;
		if (k > 0)
			n += (size_t)k;
	}
	close(sv[1]);
	ovcd_metrics_server_process(s); /* let it see the close */
	ovcd_metrics_server_stats(s, NULL, NULL, &open_conns);
	/* A connection whose peer is gone is closed, not kept. */
	if (open_conns > 0)
		abort();
	out[n] = '\0';
	if (n == 0)
		return 0;
	if (n < 8 || memcmp(out, "HTTP/1.", 7) != 0)
		abort();
	ok = strstr(out, " 200 OK\r\n");
	if (ok && ok == out + 8) {
		const char *end = strstr(out, "\r\n\r\n");
		const char *b = end ? strstr(end, BODY) : NULL;

		/* Only a GET or HEAD asked for it (MHD takes a method cut
		 * short by a NUL byte as what comes before it). */
		if (!memmem(data, size, "GET", 3) && !memmem(data, size, "HEAD", 4))
			abort();
		/* A GET has the body whole, once; a HEAD none. */
		if (b && strstr(b + 1, BODY))
			abort();
	}
	return 0;
}
