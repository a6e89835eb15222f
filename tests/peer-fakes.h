/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fake peers for the daemon and driver tests (test-ovc-driver.c,
 * test-ovcd.c, test-ovcd-peers.c): what a rogue VMM or QEMU would run, and
 * reading ovcd's replies. Header-only, for the test binaries; a fake runs
 * in a child process of its own.
 */
#ifndef OVC_PEER_FAKES_H
#define OVC_PEER_FAKES_H

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

/* An engine that answers every request line on @lfd (listening) with
 * @reply, one client at a time, forever. */
static inline void fake_engine_serve(int lfd, const char *reply)
{
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		char buf[256];
		ssize_t n;

		while (c >= 0 && (n = read(c, buf, sizeof(buf))) > 0)
			for (ssize_t i = 0; i < n; i++)
				if (buf[i] == '\n')
					(void)!write(c, reply, strlen(reply));
		if (c >= 0)
			close(c);
	}
}

/* What QEMU 7.2 says first on a monitor. */
static inline void fake_qmp_greeting(FILE *f)
{
	fprintf(f, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
		   "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n");
	fflush(f);
}

/* A QMP reply: {"return": @ret (taken; NULL: {}), "id": @id}. */
static inline void fake_qmp_reply(FILE *f, struct json_object *id, struct json_object *ret)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "return", ret ? ret : json_object_new_object());
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	fprintf(f, "%s\r\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(f);
	json_object_put(o);
}

/* ovcd's "guests" reply: the entry of @name, or NULL. */
static inline struct json_object *ovcd_guest_of(struct json_object *guests, const char *name)
{
	struct json_object *arr = NULL;

	if (!guests || !json_object_object_get_ex(guests, "guests", &arr))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *g = json_object_array_get_idx(arr, i), *n;

		if (json_object_object_get_ex(g, "name", &n) && strcmp(json_object_get_string(n), name) == 0)
			return g;
	}
	return NULL;
}

#endif
