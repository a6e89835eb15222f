/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the tests that run the real ovcd share: a shell command's output,
 * `ovcctl --json` replies and a guest's entry in them. Test main thread.
 */
#ifndef OVC_TEST_OVCD_CLIENT_H
#define OVC_TEST_OVCD_CLIENT_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include <json-c/json.h>

#include "json-get.h"
#include "common/util.h"

/* Run a shell command, capture its stdout into @out (NUL-terminated, may
 * be NULL); returns its exit status, -1 when it could not run. */
static int sh(char *out, size_t size, const char *fmt, ...) _printf_(3, 4);
static int sh(char *out, size_t size, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *p;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	if (out && size) {
		n = fread(out, 1, size - 1, p);
		out[n] = '\0';
	} else {
		char buf[4096];

		while (fread(buf, 1, sizeof(buf), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `BIN_DIR/ovcctl -s SOCK --json CMD`; NULL when it fails. */
static inline struct json_object *ovcctl_json(const char *bin_dir, const char *sock, const char *cmd)
{
	static char out[1 << 20];

	if (sh(out, sizeof(out), "%s/ovcctl -s %s --json %s 2>/dev/null", bin_dir, sock, cmd) != 0)
		return NULL;
	return json_tokener_parse(out);
}

/* The entry of guest @name in a `guests` reply, or NULL. */
static inline struct json_object *guest_of(struct json_object *guests, const char *name)
{
	struct json_object *arr = json_get(guests, "guests");

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *g = json_object_array_get_idx(arr, i);

		if (strcmp(json_object_get_string(json_get(g, "name")), name) == 0)
			return g;
	}
	return NULL;
}

#endif
