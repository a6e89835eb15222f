/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Metrics in the Prometheus text exposition format (version 0.0.4, which
 * OpenMetrics parsers also read; the "# EOF" line ends an OpenMetrics
 * exposition and is a comment to Prometheus). Served on a loopback HTTP
 * port and/or written to a textfile for node_exporter's textfile
 * collector. Rendering is pure (any thread); the file writer and the
 * server run on ovcd's main thread, the server with no thread of its own.
 */
#ifndef OVCD_METRICS_H
#define OVCD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "view.h"

#define OVCD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Render @v. 0 and a malloc'd text in *ret (length *ret_len), or -ENOMEM. */
int ovcd_metrics_render(const struct ovcd_view *v, char **ret, size_t *ret_len);

/* Write @text to @path atomically: a temporary file in the same directory,
 * fsync'd, renamed over @path, so node_exporter never reads half a file.
 * 0 or -errno. */
int ovcd_metrics_write_textfile(const char *path, const char *text, size_t len);

/* Listen on @listen ("127.0.0.1:9101", "[::1]:9101", "localhost:9101").
 * Refuses (-EADDRNOTAVAIL) any address that is not loopback once
 * resolved. Returns a non-blocking, close-on-exec listening fd or -errno. */
int ovcd_metrics_listen(const char *listen);

/* ---- the HTTP server on that listener (metrics-http.c) ----
 *
 * libmicrohttpd without a thread of its own: the caller watches
 * ovcd_metrics_server_fd() for EPOLLIN in its own epoll and calls
 * ovcd_metrics_server_process() when it is readable or when
 * ovcd_metrics_server_timeout_msec() has passed. Nothing in it blocks: a
 * client that sends or reads slowly costs a connection slot, never the
 * caller's time, and loses the slot at its deadline. All on the caller's
 * thread. */

/* GET or HEAD of /metrics or / (any query string): the metrics; another
 * path: 404; another method: 405. The Accept header does not matter. */
enum ovcd_metrics_route {
	OVCD_METRICS_ROUTE_METRICS,
	OVCD_METRICS_ROUTE_NOT_FOUND,
	OVCD_METRICS_ROUTE_BAD_METHOD,
};
enum ovcd_metrics_route ovcd_metrics_route(const char *method, const char *url);

struct ovcd_metrics_limits {
	unsigned max_connections;  /* open at once; more wait in the listen queue */
	unsigned max_per_address;  /* from one client address (0: no limit) */
	unsigned idle_timeout_sec; /* no byte either way for this long: closed */
	uint64_t deadline_usec;    /* from accept to close, whatever happens */
};

/* The defaults ovcd uses (documented in ovcd(8)). */
#define OVCD_METRICS_MAX_CONNECTIONS 32
#define OVCD_METRICS_MAX_PER_ADDRESS 16
#define OVCD_METRICS_IDLE_TIMEOUT_SEC 5
#define OVCD_METRICS_DEADLINE_USEC (10 * USEC_PER_SEC)

/* The body of a reply to GET /metrics, asked for on the caller's thread
 * each time one is due: a text that stays valid until the call returns
 * (it is copied). */
typedef void (*ovcd_metrics_body_fn)(void *userdata, const char **text, size_t *len);

struct ovcd_metrics_server;

/* Serve on @listen_fd (from ovcd_metrics_listen(); the server owns it on
 * success), or with @listen_fd -1 only the connections given to
 * ovcd_metrics_server_add_connection(). 0 or -errno. */
int ovcd_metrics_server_new(int listen_fd, const struct ovcd_metrics_limits *lim, ovcd_metrics_body_fn body_fn,
			    void *userdata, struct ovcd_metrics_server **ret);
/* An epoll fd: readable when there is work for process(). */
int ovcd_metrics_server_fd(const struct ovcd_metrics_server *s);
/* Milliseconds until process() is due whatever the fd says; -1: none. */
int ovcd_metrics_server_timeout_msec(const struct ovcd_metrics_server *s);
/* Do what can be done now, without waiting: accept, read, answer, write,
 * close the idle and those past their deadline. */
void ovcd_metrics_server_process(struct ovcd_metrics_server *s);
/* Serve a connected stream socket (tests, the fuzzer). The server owns
 * @fd whatever the result. 0 or -EIO. */
int ovcd_metrics_server_add_connection(struct ovcd_metrics_server *s, int fd);
/* Requests answered with the metrics, connections cut at their deadline,
 * connections open now. */
void ovcd_metrics_server_stats(const struct ovcd_metrics_server *s, uint64_t *served, uint64_t *cut,
			       size_t *open);
/* Closes every connection and the listener. Takes NULL. */
void ovcd_metrics_server_free(struct ovcd_metrics_server *s);

#endif
