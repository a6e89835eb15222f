/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The metrics port's HTTP transport: libmicrohttpd in its external epoll
 * mode, driven from ovcd's event loop (see metrics.h). Main thread only;
 * no locks: MHD runs no thread of its own here, every callback below runs
 * inside ovcd_metrics_server_process() on the caller's thread.
 *
 * Why MHD and not our own parser: the transport is where a slow or hostile
 * client holds a server, and MHD (GNU, in Debian, fuzzed by OSS-Fuzz) has
 * the whole state machine already: non-blocking sockets, requests parsed as
 * they trickle in, connection and per-address limits, inactivity timeouts,
 * HEAD, bounded per-connection memory. What stays ours is the routing
 * (ovcd_metrics_route) and one overall deadline per connection, which MHD
 * does not have (its timeout restarts on every byte, so a client sending
 * one byte a second would keep its slot forever).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "metrics.h"
#include "common/util.h"

struct tracked {
	struct MHD_Connection *conn;
	int fd;
	uint64_t deadline_usec;   /* CLOCK_MONOTONIC */
	bool cut;                 /* shut down once already */
};

struct ovcd_metrics_server {
	struct MHD_Daemon *d;
	struct ovcd_metrics_limits lim;
	ovcd_metrics_body_fn body_fn;
	void *userdata;
	struct tracked *conns;    /* lim.max_connections slots */
	size_t n_conns;
	uint64_t served, refused, cut;
};

enum ovcd_metrics_route ovcd_metrics_route(const char *method, const char *url)
{
	if (!method || !url)
		return OVCD_METRICS_ROUTE_NOT_FOUND;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return OVCD_METRICS_ROUTE_BAD_METHOD;
	/* MHD hands over the path without its query string. */
	if (strcmp(url, "/metrics") == 0 || strcmp(url, "/") == 0)
		return OVCD_METRICS_ROUTE_METRICS;
	return OVCD_METRICS_ROUTE_NOT_FOUND;
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status, const char *type, const char *body,
			     size_t len, bool allow)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	/* One request per connection, as before: a scraper's connection
	 * never lingers between scrapes holding a slot. */
	(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
	if (type)
		(void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (allow)
		(void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	struct ovcd_metrics_server *s = cls;
	const char *text = "";
	size_t len = 0;

	(void)version;
	(void)upload_data;
	(void)con_cls;
	/* The first call, when the headers are in: answer at once. A body,
	 * which no GET has, is never read (MHD closes the connection after
	 * the reply instead). */
	*upload_data_size = 0;
	switch (ovcd_metrics_route(method, url)) {
	case OVCD_METRICS_ROUTE_BAD_METHOD:
		return queue(conn, MHD_HTTP_METHOD_NOT_ALLOWED, NULL, "", 0, true);
	case OVCD_METRICS_ROUTE_NOT_FOUND:
		return queue(conn, MHD_HTTP_NOT_FOUND, NULL, "", 0, false);
	case OVCD_METRICS_ROUTE_METRICS:
		break;
	}
	/* Whatever the Accept header asks for (OpenMetrics included), the
	 * text format 0.0.4, which OpenMetrics scrapers read as well. */
	s->body_fn(s->userdata, &text, &len);
	s->served++;
	return queue(conn, MHD_HTTP_OK, OVCD_METRICS_CONTENT_TYPE, text ? text : "", text ? len : 0, false);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct ovcd_metrics_server *s = cls;
	const union MHD_ConnectionInfo *ci;

	(void)socket_context;
	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		for (size_t i = 0; i < s->n_conns; i++)
			if (s->conns[i].conn == conn) {
				s->conns[i] = s->conns[--s->n_conns];
				break;
			}
		return;
	}
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	/* MHD never has more than max_connections: there is a slot. */
	if (!ci || s->n_conns >= s->lim.max_connections)
		return;
	s->conns[s->n_conns++] = (struct tracked){
		.conn = conn,
		.fd = ci->connect_fd,
		.deadline_usec = now_usec(CLOCK_MONOTONIC) + s->lim.deadline_usec,
	};
}

int ovcd_metrics_server_new(int listen_fd, const struct ovcd_metrics_limits *lim, ovcd_metrics_body_fn body_fn,
			    void *userdata, struct ovcd_metrics_server **ret)
{
	struct ovcd_metrics_server *s;
	unsigned flags = MHD_USE_EPOLL | MHD_USE_ITC;
	struct MHD_OptionItem opts[] = {
		{ MHD_OPTION_CONNECTION_LIMIT, lim ? lim->max_connections : 0, NULL },
		{ MHD_OPTION_PER_IP_CONNECTION_LIMIT, lim ? lim->max_per_address : 0, NULL },
		{ MHD_OPTION_CONNECTION_TIMEOUT, lim ? lim->idle_timeout_sec : 0, NULL },
		/* A request is one line and a few headers. */
		{ MHD_OPTION_CONNECTION_MEMORY_LIMIT, 16384, NULL },
		{ MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL },
		{ MHD_OPTION_END, 0, NULL },
	};

	if (!lim || !body_fn || !ret || lim->max_connections == 0 || lim->deadline_usec == 0)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lim = *lim;
	s->body_fn = body_fn;
	s->userdata = userdata;
	s->conns = calloc(lim->max_connections, sizeof(*s->conns));
	if (!s->conns) {
		free(s);
		return -ENOMEM;
	}
	if (listen_fd < 0) {
		/* Connections come from ovcd_metrics_server_add_connection(). */
		flags |= MHD_USE_NO_LISTEN_SOCKET;
		opts[4].option = MHD_OPTION_END;
	}
	/* On success MHD owns @listen_fd and closes it when stopped. */
	s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, opts,
				MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
	if (!s->d) {
		free(s->conns);
		free(s);
		return -EIO;
	}
	*ret = s;
	return 0;
}

int ovcd_metrics_server_fd(const struct ovcd_metrics_server *s)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD);

	return di ? di->epoll_fd : -EINVAL;
}

int ovcd_metrics_server_timeout_msec(const struct ovcd_metrics_server *s)
{
	MHD_UNSIGNED_LONG_LONG t;
	uint64_t now = now_usec(CLOCK_MONOTONIC), ms = UINT64_MAX;

	if (MHD_get_timeout(s->d, &t) == MHD_YES)
		ms = t;
	for (size_t i = 0; i < s->n_conns; i++) {
		const struct tracked *c = &s->conns[i];
		uint64_t left = c->cut ? UINT64_MAX : c->deadline_usec > now ? (c->deadline_usec - now + 999) / 1000 : 0;

		if (left < ms)
			ms = left;
	}
	return ms == UINT64_MAX ? -1 : (int)MIN(ms, (uint64_t)INT32_MAX);
}

void ovcd_metrics_server_process(struct ovcd_metrics_server *s)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	bool cut = false;

	(void)MHD_run(s->d);
	/* Past its deadline, whatever it is doing: shut the socket down and
	 * let MHD see the end and close it (its fd stays MHD's). */
	for (size_t i = 0; i < s->n_conns; i++) {
		struct tracked *c = &s->conns[i];

		if (!c->cut && now >= c->deadline_usec) {
			(void)shutdown(c->fd, SHUT_RDWR);
			c->cut = cut = true;
			s->cut++;
		}
	}
	if (cut)
		(void)MHD_run(s->d);
}

int ovcd_metrics_server_add_connection(struct ovcd_metrics_server *s, int fd)
{
	/* MHD's per-address count wants an IP address: say loopback, which
	 * is where the listener's clients come from too. */
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	return MHD_add_connection(s->d, fd, (const struct sockaddr *)&sin, sizeof(sin)) == MHD_YES
		       ? 0
		       : -EIO;
}

void ovcd_metrics_server_stats(const struct ovcd_metrics_server *s, uint64_t *served, uint64_t *cut,
			       size_t *open)
{
	if (served)
		*served = s->served;
	if (cut)
		*cut = s->cut;
	if (open)
		*open = s->n_conns;
}

void ovcd_metrics_server_free(struct ovcd_metrics_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	free(s->conns);
	free(s);
}
