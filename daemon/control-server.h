/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's control socket server (docs/control-protocol.md): the listening
 * socket, made in [control] socket's directory where nobody else can swap
 * it, and its clients, each a non-blocking state machine with a deadline in
 * ovcd's one event loop. The server reads request lines, parses them and
 * checks the peer's right to mutate (control.c); it knows nothing of what
 * a request does. Each request it hands back to its owner, the loop's
 * manager, through struct control_server_ops, one at a time and in the
 * order the client sent them, and queues the reply it gets back.
 *
 * ovcd's main thread only; no locks.
 */
#ifndef OVCD_CONTROL_SERVER_H
#define OVCD_CONTROL_SERVER_H

#include <stdint.h>

#include "control.h"
#include "host/config.h"
#include "loop.h"

struct control_server;

struct control_server_ops {
	/* Answer @req, from a peer allowed to send it: a malloc'd reply line
	 * (control.h's ovcd_reply_*()), or NULL when out of memory (the
	 * client is then dropped). On the loop's thread, called from
	 * control_server_client_event(). */
	char *(*request)(void *userdata, const struct ovcd_request *req);
};

/*
 * Listen on cfg's [control] socket, with its [control] group, registering
 * the socket and later its clients in the epoll set @epfd (struct source
 * SRC_CONTROL and SRC_CLIENT). Refuses to steal the socket of a running
 * ovcd (-EADDRINUSE). -errno, logged; on failure nothing is left behind.
 */
int control_server_new(int epfd, const struct ovcd_config *cfg, const struct control_server_ops *ops,
		       void *userdata, struct control_server **ret);

/* A new config: resolve its [control] group again and apply it to the
 * socket file. A changed socket path takes effect at restart only. */
void control_server_reload(struct control_server *cs, const struct ovcd_config *cfg);

/* The socket's path, as it was opened. */
const char *control_server_path(const struct control_server *cs);

/* SRC_CONTROL is readable: take the waiting connections. */
void control_server_accept(struct control_server *cs);

/* An event of the client whose source is @src (SRC_CLIENT). */
void control_server_client_event(struct control_server *cs, struct source *src, uint32_t events);

/* Drop the clients past their deadline; the time until the next one's,
 * in ms, or -1. */
int control_server_expire(struct control_server *cs);

/* Closes the clients and removes the socket file, if it is still the one
 * ovcd made. Takes NULL. */
void control_server_free(struct control_server *cs);

#endif
