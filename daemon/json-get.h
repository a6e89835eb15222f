/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading members of ovcd's control replies (json-c), shared by ovcctl and
 * the tests that talk to ovcd. Any thread; no state.
 */
#ifndef OVC_JSON_GET_H
#define OVC_JSON_GET_H

#include <json-c/json.h>

#include "host/guest.h"

/* Member @key of @o, or NULL when @o is NULL, the key is absent or null. */
static inline struct json_object *json_get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	return o && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* Member @key as an unsigned number, OVC_UNKNOWN when absent or null. */
static inline uint64_t json_get_u64(struct json_object *o, const char *key)
{
	struct json_object *v = json_get(o, key);

	return v ? json_object_get_uint64(v) : OVC_UNKNOWN;
}

#endif
