/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Metrics in the Prometheus text exposition format (version 0.0.4, which
 * OpenMetrics parsers also read; the "# EOF" line ends an OpenMetrics
 * exposition and is a comment to Prometheus). Served on a loopback HTTP
 * port and/or written to a textfile for node_exporter's textfile
 * collector. Rendering is pure; the server and the file writer are used on
 * ovcd's main thread.
 */
#ifndef OVCD_METRICS_H
#define OVCD_METRICS_H

#include <stddef.h>

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

/* Serve one accepted HTTP connection: read the request (a short timeout;
 * the peer is local), answer GET /metrics with @text, anything else with
 * 404/405, close. */
void ovcd_metrics_serve(int fd, const char *text, size_t len);

#endif
