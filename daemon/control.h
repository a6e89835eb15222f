/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control protocol (docs/control-protocol.md): one JSON object per line
 * each way over a unix stream socket. A request carries "version" and
 * "command"; every reply carries "version" and "ok", and "error" when ok is
 * false.
 *
 * Everything here is pure (no I/O, no clock): the request parser, the
 * permission rule, and the rendering of replies from a struct ovcd_view.
 * The server around it is in control-server.c. Any thread; no state.
 */
#ifndef OVCD_CONTROL_H
#define OVCD_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "host/config.h"
#include "view.h"

struct json_object;

#define OVCD_PROTOCOL_VERSION 1
/* The longest request line, newline excluded. Requests are tiny; a longer
 * line is refused and the connection closed. */
#define OVCD_REQUEST_MAX 4096
#define OVCD_ERROR_MAX 256

enum ovcd_command {
	OVCD_CMD_STATUS,
	OVCD_CMD_GUESTS,
	OVCD_CMD_RELOAD,
	OVCD_CMD_SET,
};

enum ovcd_set_what {
	OVCD_SET_FLOOR,
	OVCD_SET_TARGET,
};

struct ovcd_request {
	enum ovcd_command command;
	/* set only */
	char guest[OVCD_GUEST_NAME_MAX];
	enum ovcd_set_what what;
	bool clear;                  /* "size": "none": drop the override */
	struct ovcd_conf_size size;   /* bytes, or % of the guest's maximum */
};

/*
 * Parse one request line (@len bytes, without the newline; need not be
 * NUL-terminated). Returns 0 with *ret filled, or -EINVAL / -EMSGSIZE
 * (longer than OVCD_REQUEST_MAX) / -EPROTO (wrong version) with the exact
 * error text in @err (which is what the client is told). *ret untouched on
 * failure.
 */
int ovcd_request_parse(const char *line, size_t len, struct ovcd_request *ret, char *err,
		       size_t err_size);

const char *ovcd_command_name(enum ovcd_command c);
/* reload and set change what ovcd does; status and guests only read. */
bool ovcd_command_mutates(enum ovcd_command c);

/*
 * May a peer with @uid, primary @gid and supplementary @groups (@n of them)
 * run mutating commands? Root always; otherwise only a member (primary or
 * supplementary) of @control_gid, and nobody when @has_group is false.
 */
bool ovcd_peer_may_mutate(uid_t uid, gid_t gid, const gid_t *groups, size_t n, bool has_group,
			  gid_t control_gid);

/* Replies. Each returns a malloc'd line ending in "\n", or NULL on ENOMEM. */
char *ovcd_reply_error(const char *msg);
char *ovcd_reply_ok(const char *message);
char *ovcd_reply_status(const struct ovcd_view *v);
char *ovcd_reply_guests(const struct ovcd_view *v);

/* The requests ovcctl sends (also a fuzzing seed): a malloc'd line with
 * "\n", or NULL. @guest/@size only for set. */
char *ovcd_request_format(enum ovcd_command c, const char *guest, enum ovcd_set_what what,
			  const char *size);

#endif
