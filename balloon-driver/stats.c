/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Normalising what libvirt and QMP say about a guest's balloon into
 * struct ovcd_guest_stats (bytes, OVC_UNKNOWN for anything not sent or not
 * believable). Pure functions, any thread; no libvirt headers here so that
 * the fuzzer and the unit tests need no connection.
 */
#include <limits.h>
#include <string.h>

#include <json-c/json.h>

#include "driver.h"
#include "internal.h"
#include "common/util.h"

int ovcd_balloon_bytes_to_kib(uint64_t bytes, unsigned long *ret_kib)
{
	uint64_t kib = bytes / KIB;

	if (kib == 0)
		return -EINVAL; /* libvirt rejects 0: "memory size cannot be zero" */
	if (kib > ULONG_MAX)
		return -ERANGE;
	*ret_kib = (unsigned long)kib;
	return 0;
}

/* KiB to bytes, unknown on overflow (a garbage value from the guest). */
static uint64_t kib_to_bytes(uint64_t kib)
{
	if (kib > UINT64_MAX / KIB)
		return OVC_UNKNOWN;
	return kib * KIB;
}

enum field_unit { UNIT_KIB, UNIT_COUNT, UNIT_SEC };

struct field {
	const char *name;
	size_t offset;
	enum field_unit unit;
};

#define F(n, member, u) { n, offsetof(struct ovcd_guest_stats, member), u }

/* libvirt 9.0 names (virsh(1) "--balloon returns"; the
 * VIR_DOMAIN_STATS_BALLOON_* macros only exist from 11.2). "available" is
 * the guest's MemTotal, "usable" its MemAvailable, "unused" its MemFree.
 * libvirt passes on none of the reclaim counters (OOM kills, allocation
 * stalls, scans) that QEMU 9.2 reports, up to 11.2 at least: they stay
 * unknown for libvirt guests. */
static const struct field libvirt_fields[] = {
	F("balloon.current", actual_bytes, UNIT_KIB),
	F("balloon.maximum", max_bytes, UNIT_KIB),
	F("balloon.rss", rss_bytes, UNIT_KIB),
	F("balloon.available", total_bytes, UNIT_KIB),
	F("balloon.unused", free_bytes, UNIT_KIB),
	F("balloon.usable", available_bytes, UNIT_KIB),
	F("balloon.disk_caches", disk_caches_bytes, UNIT_KIB),
	F("balloon.swap_in", swap_in_bytes, UNIT_KIB),
	F("balloon.swap_out", swap_out_bytes, UNIT_KIB),
	F("balloon.major_fault", major_faults, UNIT_COUNT),
	F("balloon.minor_fault", minor_faults, UNIT_COUNT),
	F("balloon.last-update", guest_update_sec, UNIT_SEC),
};

/* QEMU 7.2 guest-stats names; all bytes or counts. */
static const struct field qmp_fields[] = {
	F("stat-total-memory", total_bytes, UNIT_COUNT),
	F("stat-free-memory", free_bytes, UNIT_COUNT),
	F("stat-available-memory", available_bytes, UNIT_COUNT),
	F("stat-disk-caches", disk_caches_bytes, UNIT_COUNT),
	F("stat-swap-in", swap_in_bytes, UNIT_COUNT),
	F("stat-swap-out", swap_out_bytes, UNIT_COUNT),
	F("stat-major-faults", major_faults, UNIT_COUNT),
	F("stat-minor-faults", minor_faults, UNIT_COUNT),
	/* QEMU 9.2 and later, from guests with Linux 6.12 and later. */
	F("stat-oom-kills", oom_kills, UNIT_COUNT),
	F("stat-alloc-stalls", alloc_stalls, UNIT_COUNT),
	F("stat-async-scans", async_scans, UNIT_COUNT),
	F("stat-direct-scans", direct_scans, UNIT_COUNT),
	F("stat-async-reclaims", async_reclaims, UNIT_COUNT),
	F("stat-direct-reclaims", direct_reclaims, UNIT_COUNT),
};

#undef F

static uint64_t *field_ptr(struct ovcd_guest_stats *st, const struct field *f)
{
	return (uint64_t *)((char *)st + f->offset);
}

int ovcd_balloon_stats_from_libvirt(const struct ovcd_balloon_kv *kv, size_t n, uint64_t now_sec,
				   uint64_t max_age_sec, struct ovcd_guest_stats *st)
{
	ovcd_guest_stats_reset(st);
	for (size_t i = 0; i < n; i++) {
		if (!kv[i].name)
			continue;
		for (size_t j = 0; j < ARRAY_SIZE(libvirt_fields); j++) {
			const struct field *f = &libvirt_fields[j];

			if (strcmp(kv[i].name, f->name) != 0)
				continue;
			*field_ptr(st, f) = f->unit == UNIT_KIB ? kib_to_bytes(kv[i].value) : kv[i].value;
			break;
		}
	}
	/* The host side must be there for a running guest with a balloon. */
	if (!ovcd_known(st->actual_bytes) || !ovcd_known(st->max_bytes) || st->actual_bytes == 0 ||
	    st->max_bytes == 0) {
		ovcd_guest_stats_reset(st);
		return -EBADMSG;
	}
	ovcd_guest_stats_sanitize(st, now_sec, max_age_sec);
	return 0;
}

/* A JSON integer as u64, or OVC_UNKNOWN for anything else. QMP sends u64 -1
 * (18446744073709551615) for "not available", which is OVC_UNKNOWN as is. */
uint64_t balloon_json_u64(struct json_object *o)
{
	if (!o || !json_object_is_type(o, json_type_int))
		return OVC_UNKNOWN;
	/* json-c keeps values above INT64_MAX as unsigned; negative ones
	 * are signed and make no sense for any figure here. */
	if (json_object_get_int64(o) < 0)
		return OVC_UNKNOWN;
	return json_object_get_uint64(o);
}

int balloon_stats_from_qmp_obj(struct json_object *gs, uint64_t actual_bytes, uint64_t max_bytes,
			       uint64_t now_sec, uint64_t max_age_sec, struct ovcd_guest_stats *st)
{
	struct json_object *stats, *lu;

	ovcd_guest_stats_reset(st);
	if (!gs || !json_object_is_type(gs, json_type_object) ||
	    !json_object_object_get_ex(gs, "stats", &stats) ||
	    !json_object_is_type(stats, json_type_object))
		return -EBADMSG;
	st->actual_bytes = actual_bytes;
	st->max_bytes = max_bytes;
	for (size_t j = 0; j < ARRAY_SIZE(qmp_fields); j++) {
		struct json_object *v;

		if (json_object_object_get_ex(stats, qmp_fields[j].name, &v))
			*field_ptr(st, &qmp_fields[j]) = balloon_json_u64(v);
	}
	/* last-update is 0 until the guest has answered once. */
	if (json_object_object_get_ex(gs, "last-update", &lu))
		st->guest_update_sec = balloon_json_u64(lu);
	ovcd_guest_stats_sanitize(st, now_sec, max_age_sec);
	return 0;
}

int ovcd_balloon_stats_from_qmp(const char *json, size_t len, uint64_t actual_bytes,
			       uint64_t max_bytes, uint64_t now_sec, uint64_t max_age_sec,
			       struct ovcd_guest_stats *st)
{
	struct json_tokener *tok;
	struct json_object *o;
	int r;

	if (len > INT_MAX)
		return -EINVAL;
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	o = json_tokener_parse_ex(tok, json, (int)len);
	if (!o || json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(o);
		json_tokener_free(tok);
		ovcd_guest_stats_reset(st);
		return -EBADMSG;
	}
	json_tokener_free(tok);
	r = balloon_stats_from_qmp_obj(o, actual_bytes, max_bytes, now_sec, max_age_sec, st);
	json_object_put(o);
	return r;
}
