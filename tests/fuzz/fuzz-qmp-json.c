/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness: the QMP message reader (balloon-driver/qmp-json.c) and
 * the guest-stats normaliser behind it, on bytes a compromised QEMU could
 * send. The first byte picks the chunk size, so that line framing across
 * reads is fuzzed too. Every "return" value is also run through the QMP
 * stats normaliser, whose output must obey the OVC_UNKNOWN rules.
 */
#include <assert.h>
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_stats(struct json_object *v)
{
	struct ovcd_guest_stats st;

	if (balloon_stats_from_qmp_obj(v, 1 << 30, 1 << 30, 1795705016, 30, &st) < 0)
		return;
	/* Whatever the guest said: nothing above what it was given. */
	assert(!ovcd_known(st.total_bytes) || st.total_bytes <= st.max_bytes);
	assert(!ovcd_known(st.free_bytes) || st.free_bytes <= st.max_bytes);
	assert(!ovcd_known(st.available_bytes) || st.available_bytes <= st.max_bytes);
	assert(!st.stale || !ovcd_known(st.minor_faults));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qmp_reader r;
	size_t chunk;

	if (size == 0)
		return 0;
	chunk = (size_t)data[0] + 1;
	data++;
	size--;
	qmp_reader_init(&r);
	for (size_t off = 0; off < size; off += chunk) {
		struct json_object *o;
		enum qmp_kind kind;
		int n;

		if (qmp_reader_feed(&r, (const char *)data + off, chunk < size - off ? chunk : size - off) < 0)
			break;
		while ((n = qmp_reader_next(&r, &o, &kind)) != 0) {
			struct json_object *v;

			if (n < 0)
				continue; /* the bad line is consumed; carry on */
			assert(kind >= QMP_GREETING && kind <= QMP_EVENT);
			if (kind == QMP_RETURN && json_object_object_get_ex(o, "return", &v))
				check_stats(v);
			json_object_put(o);
		}
	}
	qmp_reader_done(&r);
	return 0;
}
