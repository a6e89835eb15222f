/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP message reader: bytes from a QEMU monitor socket in, one JSON
 * object per message out. Parsing is json-c's (Debian's libjson-c, the
 * JSON library libvirt-free C daemons use, fuzzed upstream by OSS-Fuzz);
 * this file only frames lines and classifies them. Input is untrusted:
 * a QEMU process may be compromised by its guest.
 *
 * Runs in whichever thread owns the reader; no locks.
 */
#include <limits.h>
#include <string.h>

#include <json-c/json.h>

#include "internal.h"
#include "common/util.h"

void qmp_reader_init(struct qmp_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void qmp_reader_done(struct qmp_reader *r)
{
	free(r->buf);
	memset(r, 0, sizeof(*r));
}

int qmp_reader_feed(struct qmp_reader *r, const char *data, size_t len)
{
	if (len > QMP_LINE_MAX || r->len + len > QMP_LINE_MAX * 2)
		return -EPROTO;
	if (r->len + len + 1 > r->cap) {
		size_t cap = MAX(r->cap * 2, r->len + len + 1);
		char *p;

		cap = MAX(cap, (size_t)4096);
		p = realloc(r->buf, cap);
		if (!p)
			return -ENOMEM;
		r->buf = p;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, data, len);
	r->len += len;
	/* A message without a newline that is already too long will never
	 * become valid: refuse it now rather than buffering without end. */
	if (!memchr(r->buf, '\n', r->len) && r->len > QMP_LINE_MAX)
		return -EPROTO;
	return 0;
}

static int classify(struct json_object *o, enum qmp_kind *ret)
{
	struct json_object *v;

	if (!json_object_is_type(o, json_type_object))
		return -EPROTO;
	if (json_object_object_get_ex(o, "return", &v)) {
		*ret = QMP_RETURN;
		return 0;
	}
	if (json_object_object_get_ex(o, "error", &v)) {
		*ret = QMP_ERROR;
		return json_object_is_type(v, json_type_object) ? 0 : -EPROTO;
	}
	if (json_object_object_get_ex(o, "event", &v)) {
		*ret = QMP_EVENT;
		return json_object_is_type(v, json_type_string) ? 0 : -EPROTO;
	}
	if (json_object_object_get_ex(o, "QMP", &v)) {
		*ret = QMP_GREETING;
		return 0;
	}
	return -EPROTO;
}

int qmp_reader_next(struct qmp_reader *r, struct json_object **ret, enum qmp_kind *ret_kind)
{
	for (;;) {
		char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
		struct json_tokener *tok;
		struct json_object *o;
		enum qmp_kind kind;
		size_t line_len, skip;
		int r2;

		if (!nl)
			return 0;
		line_len = (size_t)(nl - r->buf);
		skip = line_len + 1;
		while (line_len && (r->buf[line_len - 1] == '\r' || r->buf[line_len - 1] == ' '))
			line_len--;
		if (line_len == 0) { /* empty line: ignore */
			memmove(r->buf, r->buf + skip, r->len - skip);
			r->len -= skip;
			continue;
		}
		if (line_len > QMP_LINE_MAX) {
			memmove(r->buf, r->buf + skip, r->len - skip);
			r->len -= skip;
			return -EPROTO;
		}
		tok = json_tokener_new();
		if (!tok)
			return -ENOMEM;
		o = json_tokener_parse_ex(tok, r->buf, (int)line_len);
		/* The whole line must be one object: nothing after it. */
		r2 = (!o || json_tokener_get_error(tok) != json_tokener_success ||
		      json_tokener_get_parse_end(tok) != line_len) ? -EPROTO : 0;
		json_tokener_free(tok);
		memmove(r->buf, r->buf + skip, r->len - skip);
		r->len -= skip;
		if (r2 == 0)
			r2 = classify(o, &kind);
		if (r2 < 0) {
			json_object_put(o);
			return r2;
		}
		*ret = o;
		*ret_kind = kind;
		return 1;
	}
}
