/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control protocol's pure half: request parser, permission rule, reply
 * rendering (see control.h). Any thread, no state. json-c does the JSON, as
 * in the QMP driver; requests come from local users and are checked field
 * by field here before anything acts on them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "control.h"
#include "host/units.h"
#include "common/util.h"

const char *ovcd_command_name(enum ovcd_command c)
{
	switch (c) {
	case OVCD_CMD_STATUS:
		return "status";
	case OVCD_CMD_GUESTS:
		return "guests";
	case OVCD_CMD_RELOAD:
		return "reload";
	case OVCD_CMD_SET:
		return "set";
	}
	return "?";
}

bool ovcd_command_mutates(enum ovcd_command c)
{
	return c == OVCD_CMD_RELOAD || c == OVCD_CMD_SET;
}

bool ovcd_peer_may_mutate(uid_t uid, gid_t gid, const gid_t *groups, size_t n, bool has_group,
			  gid_t control_gid)
{
	if (uid == 0)
		return true;
	if (!has_group)
		return false;
	if (gid == control_gid)
		return true;
	for (size_t i = 0; i < n; i++)
		if (groups[i] == control_gid)
			return true;
	return false;
}

#define fail(r, ...)                                                           \
	do {                                                                   \
		snprintf(err, err_size, __VA_ARGS__);                          \
		ret_r = (r);                                                   \
		goto out;                                                      \
	} while (0)

static const char *type_name(struct json_object *o)
{
	return o ? json_type_to_name(json_object_get_type(o)) : "null";
}

int ovcd_request_parse(const char *line, size_t len, struct ovcd_request *ret, char *err,
		       size_t err_size)
{
	struct json_tokener *tok = NULL;
	struct json_object *o = NULL, *v;
	struct ovcd_request req = { 0 };
	const char *s;
	int64_t version;
	int ret_r = 0;

	if (len > OVCD_REQUEST_MAX)
		fail(-EMSGSIZE, "request longer than %u bytes", OVCD_REQUEST_MAX);
	if (memchr(line, '\0', len))
		fail(-EINVAL, "malformed JSON: NUL byte in request");
	tok = json_tokener_new();
	if (!tok)
		fail(-ENOMEM, "out of memory");
	o = json_tokener_parse_ex(tok, line, (int)len);
	if (!o) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		/* A complete line that leaves the tokener waiting is cut short. */
		fail(-EINVAL, "malformed JSON: %s",
		     e == json_tokener_continue ? "unexpected end of input" : json_tokener_error_desc(e));
	}
	if (json_tokener_get_parse_end(tok) < len) {
		size_t end = json_tokener_get_parse_end(tok);

		while (end < len && (line[end] == ' ' || line[end] == '\t' || line[end] == '\r'))
			end++;
		if (end < len)
			fail(-EINVAL, "malformed JSON: trailing data after the request object");
	}
	if (!json_object_is_type(o, json_type_object))
		fail(-EINVAL, "request must be a JSON object, not %s", type_name(o));

	if (!json_object_object_get_ex(o, "version", &v))
		fail(-EINVAL, "missing \"version\" (this ovcd speaks version %d)", OVCD_PROTOCOL_VERSION);
	if (!json_object_is_type(v, json_type_int))
		fail(-EINVAL, "\"version\" must be an integer, not %s", type_name(v));
	version = json_object_get_int64(v);
	if (version != OVCD_PROTOCOL_VERSION)
		fail(-EPROTO, "unsupported protocol version %" PRId64 " (this ovcd speaks version %d)",
		     version, OVCD_PROTOCOL_VERSION);

	if (!json_object_object_get_ex(o, "command", &v))
		fail(-EINVAL, "missing \"command\"");
	if (!json_object_is_type(v, json_type_string))
		fail(-EINVAL, "\"command\" must be a string, not %s", type_name(v));
	s = json_object_get_string(v);
	if (strcmp(s, "status") == 0)
		req.command = OVCD_CMD_STATUS;
	else if (strcmp(s, "guests") == 0)
		req.command = OVCD_CMD_GUESTS;
	else if (strcmp(s, "reload") == 0)
		req.command = OVCD_CMD_RELOAD;
	else if (strcmp(s, "set") == 0)
		req.command = OVCD_CMD_SET;
	else
		fail(-EINVAL, "unknown command \"%.64s\" (status, guests, reload, set)", s);

	if (req.command == OVCD_CMD_SET) {
		if (!json_object_object_get_ex(o, "guest", &v) || !json_object_is_type(v, json_type_string))
			fail(-EINVAL, "set: \"guest\" must be a string");
		s = json_object_get_string(v);
		if (!*s || strlen(s) >= sizeof(req.guest))
			fail(-EINVAL, "set: \"guest\" must be 1 to %zu bytes", sizeof(req.guest) - 1);
		strcpy(req.guest, s);
		if (!json_object_object_get_ex(o, "what", &v) || !json_object_is_type(v, json_type_string))
			fail(-EINVAL, "set: \"what\" must be \"floor\" or \"target\"");
		s = json_object_get_string(v);
		if (strcmp(s, "floor") == 0)
			req.what = OVCD_SET_FLOOR;
		else if (strcmp(s, "target") == 0)
			req.what = OVCD_SET_TARGET;
		else
			fail(-EINVAL, "set: \"what\" must be \"floor\" or \"target\", not \"%.32s\"", s);
		if (!json_object_object_get_ex(o, "size", &v) || !json_object_is_type(v, json_type_string))
			fail(-EINVAL, "set: \"size\" must be a string such as \"512MiB\", \"50%%\" or \"none\"");
		s = json_object_get_string(v);
		if (strcmp(s, "none") == 0)
			req.clear = true;
		else if (ovcd_parse_size(s, true, &req.size) < 0 ||
			 (!req.size.percent && req.size.bytes == 0) ||
			 (req.size.percent && req.size.basis_points == 0))
			fail(-EINVAL,
			     "set: bad size \"%.32s\": give bytes with a unit (512MiB), a share of the "
			     "guest's maximum (50%%) or \"none\"",
			     s);
	}
	*ret = req;
out:
	json_object_put(o);
	if (tok)
		json_tokener_free(tok);
	return ret_r;
}

/* ---- replies ---- */

static struct json_object *reply_new(bool ok)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	json_object_object_add(o, "version", json_object_new_int(OVCD_PROTOCOL_VERSION));
	json_object_object_add(o, "ok", json_object_new_boolean(ok));
	return o;
}

static char *finish(struct json_object *o)
{
	const char *s;
	char *line = NULL;

	if (!o)
		return NULL;
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (!s || asprintf(&line, "%s\n", s) < 0)
		line = NULL;
	json_object_put(o);
	return line;
}

char *ovcd_reply_error(const char *msg)
{
	struct json_object *o = reply_new(false);

	if (o)
		json_object_object_add(o, "error", json_object_new_string(msg));
	return finish(o);
}

char *ovcd_reply_ok(const char *message)
{
	struct json_object *o = reply_new(true);

	if (o && message)
		json_object_object_add(o, "message", json_object_new_string(message));
	return finish(o);
}

/* An unknown figure is null, never 0. */
static struct json_object *u64_or_null(uint64_t v)
{
	return ovcd_known(v) ? json_object_new_uint64(v) : NULL;
}

static struct json_object *permille_json(uint64_t pm)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64 ".%03" PRIu64, pm / 1000, pm % 1000);
	return json_object_new_double_s((double)pm / 1000.0, buf);
}

static struct json_object *basis_points_json(uint32_t bp)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%u.%02u", bp / 100, bp % 100);
	return json_object_new_double_s((double)bp / 100.0, buf);
}

#define add(o, k, v) json_object_object_add((o), (k), (v))

char *ovcd_reply_status(const struct ovcd_view *v)
{
	struct json_object *o = reply_new(true), *sav, *head, *ksm, *psi;

	if (!o)
		return NULL;
	add(o, "config", json_object_new_string(v->config_path ? v->config_path : ""));
	add(o, "interval_usec", json_object_new_uint64(v->interval_usec));
	add(o, "dry_run", json_object_new_boolean(v->dry_run));
	add(o, "ticks", json_object_new_uint64(v->ticks));
	add(o, "checks", json_object_new_uint64(v->checks));
	add(o, "uptime_usec", json_object_new_uint64(v->uptime_usec));
	add(o, "level", json_object_new_string(ovcd_host_level_name(v->level)));
	add(o, "level_since_tick", json_object_new_uint64(v->level_since_tick));
	add(o, "host_reason", json_object_new_string(v->host_reason));
	add(o, "provisioned_ratio", permille_json(v->oc.provisioned_ratio_permille));
	add(o, "effective_ratio", permille_json(v->oc.effective_ratio_permille));
	add(o, "host_total_bytes", json_object_new_uint64(v->oc.host_total_bytes));
	add(o, "host_for_guests_bytes", json_object_new_uint64(v->oc.host_for_guests_bytes));
	add(o, "host_available_bytes", json_object_new_uint64(v->mem.available_bytes));
	add(o, "guests", json_object_new_uint64(v->n_guests));
	add(o, "guests_max_bytes", json_object_new_uint64(v->oc.guests_max_bytes));
	add(o, "guests_backing_bytes", json_object_new_uint64(v->oc.guests_backing_bytes));

	sav = json_object_new_object();
	add(sav, "balloon_bytes", json_object_new_uint64(v->oc.savings.balloon_bytes));
	add(sav, "zero_bytes", json_object_new_uint64(v->oc.savings.zero_bytes));
	add(sav, "engine_zero_bytes", json_object_new_uint64(v->oc.savings.engine_zero_bytes));
	add(sav, "ksm_zero_bytes", json_object_new_uint64(v->oc.savings.ksm_zero_bytes));
	add(sav, "ksm_bytes", json_object_new_uint64(v->oc.savings.ksm_bytes));
	add(sav, "swap_bytes", json_object_new_uint64(v->oc.savings.swap_bytes));
	add(sav, "total_bytes", json_object_new_uint64(v->oc.savings.total_bytes));
	add(o, "savings", sav);

	head = json_object_new_object();
	add(head, "low_bytes", json_object_new_int64(v->oc.headroom_low_bytes));
	add(head, "high_bytes", json_object_new_int64(v->oc.headroom_high_bytes));
	add(head, "give_back_bytes", json_object_new_uint64(v->oc.give_back_bytes));
	add(head, "after_give_back_bytes", json_object_new_int64(v->oc.headroom_after_give_back_bytes));
	add(o, "headroom", head);

	if (v->psi_valid) {
		psi = json_object_new_object();
		add(psi, "some_avg10", basis_points_json(v->psi.some.avg10_basis_points));
		add(psi, "full_avg10", basis_points_json(v->psi.full.avg10_basis_points));
		add(o, "psi", psi);
	} else {
		add(o, "psi", NULL);
	}

	if (v->ksm_valid) {
		ksm = json_object_new_object();
		add(ksm, "run", json_object_new_int(v->ksm_knobs.run));
		add(ksm, "pages_to_scan", json_object_new_int64(v->ksm_knobs.pages_to_scan));
		add(ksm, "sleep_millisecs", json_object_new_int64(v->ksm_knobs.sleep_millisecs));
		add(ksm, "use_zero_pages", json_object_new_int(v->ksm_knobs.use_zero_pages));
		add(ksm, "pages_sharing", json_object_new_uint64(v->ksm.pages_sharing));
		add(ksm, "ksm_zero_pages", json_object_new_uint64(v->ksm.ksm_zero_pages));
		add(ksm, "profit_bytes", json_object_new_int64(v->ksm_profit_bytes));
		add(ksm, "reason", json_object_new_string(v->ksm_reason));
		add(o, "ksm", ksm);
	} else {
		add(o, "ksm", NULL);
	}
	return finish(o);
}

/* The engine's swapping, null where it did not say (an older engine). */
static void add_engine_swap(struct json_object *eng, const struct ovcd_guest_view *g)
{
#define V(field) offsetof(struct ovcd_guest_view, field)
	static const struct {
		const char *key;
		size_t off;
	} keys[] = {
		{ "swapped_in_bytes", V(engine_swap_in_bytes) },
		{ "swapped_out_bytes", V(engine_swap.out_bytes) },
		{ "swap_cache_bytes", V(engine_swap.cache_bytes) },
		{ "swap_cache_hits", V(engine_swap.cache_hits) },
		{ "refaults", V(engine_swap.refaults) },
		{ "swap_write_errors", V(engine_swap.write_errors) },
		{ "swap_read_errors", V(engine_swap.read_errors) },
		{ "fault_p50_usec", V(engine_swap.fault_p50_usec) },
		{ "fault_p99_usec", V(engine_swap.fault_p99_usec) },
	};
#undef V

	for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
		uint64_t v;

		memcpy(&v, (const char *)g + keys[i].off, sizeof(v));
		add(eng, keys[i].key, u64_or_null(v));
	}
}

char *ovcd_reply_guests(const struct ovcd_view *v)
{
	struct json_object *o = reply_new(true), *arr = json_object_new_array();

	if (!o || !arr) {
		json_object_put(o);
		json_object_put(arr);
		return NULL;
	}
	for (size_t i = 0; i < v->n_guests; i++) {
		const struct ovcd_guest_view *g = &v->guests[i];
		struct json_object *e = json_object_new_object();

		add(e, "name", json_object_new_string(g->name));
		add(e, "driver", json_object_new_string(g->driver ? g->driver : ""));
		add(e, "balloon_driver", json_object_new_string(g->balloon_driver ? g->balloon_driver : ""));
		add(e, "max_bytes", json_object_new_uint64(g->max_bytes));
		add(e, "current_bytes", u64_or_null(g->actual_bytes));
		add(e, "target_bytes", u64_or_null(g->target_bytes));
		add(e, "available_bytes", u64_or_null(g->available_bytes));
		add(e, "floor_bytes", json_object_new_uint64(g->floor_bytes));
		add(e, "floor_override", json_object_new_boolean(g->floor_override));
		add(e, "pinned_target_bytes", g->pin_bytes ? json_object_new_uint64(g->pin_bytes) : NULL);
		add(e, "stats_age_usec", u64_or_null(g->stats_age_usec));
		add(e, "stale", json_object_new_boolean(g->stale));
		add(e, "last_action", json_object_new_string(ovcd_policy_action_name(g->last_action)));
		add(e, "last_action_tick", json_object_new_uint64(g->last_action_tick));
		add(e, "last_reason", json_object_new_string(g->last_reason));
		add(e, "inflates", json_object_new_uint64(g->inflates));
		add(e, "deflates", json_object_new_uint64(g->deflates));
		add(e, "emergencies", json_object_new_uint64(g->emergencies));
		add(e, "quick_deflates", json_object_new_uint64(g->quick_deflates));
		add(e, "errors", json_object_new_uint64(g->errors));
		/* What the policy learned: null before its first decision. */
		add(e, "raised_floor_bytes", u64_or_null(g->raised_floor_bytes));
		add(e, "headroom_bytes", u64_or_null(g->headroom_bytes));
		add(e, "keep_available_bytes", u64_or_null(g->keep_bytes));
		add(e, "growth_rate_bytes", json_object_new_uint64(g->growth_rate_bytes));
		add(e, "growing", json_object_new_boolean(g->growing));
		add(e, "idle", json_object_new_boolean(g->idle));
		add(e, "oom_kills", json_object_new_uint64(g->oom_kills));
		add(e, "noncompliant", json_object_new_boolean(g->noncompliant));
		add(e, "free_page_reporting", json_object_new_boolean(g->free_page_reporting));
		add(e, "free_page_reporting_bytes", g->free_page_reporting ? u64_or_null(g->fpr_bytes) : NULL);
		/* What this guest gives back, by mechanism; null where the
		 * guest has no such mechanism. */
		struct json_object *sav = json_object_new_object();
		add(sav, "balloon_bytes", ovcd_known(g->actual_bytes) && g->actual_bytes <= g->max_bytes
						  ? json_object_new_uint64(g->max_bytes - g->actual_bytes) : NULL);
		add(sav, "shared_bytes", u64_or_null(g->engine_zero_bytes));
		add(sav, "swapped_bytes", u64_or_null(g->engine_swap_bytes));
		add(e, "savings", sav);
		if (g->engine) {
			struct json_object *eng = json_object_new_object();
			add(eng, "reclaim_target_bytes", u64_or_null(g->engine_target_bytes));
			add(eng, "reclaims", json_object_new_uint64(g->reclaims));
			add(eng, "releases", json_object_new_uint64(g->releases));
			add_engine_swap(eng, g);
			add(e, "engine", eng);
		} else {
			add(e, "engine", NULL);
		}
		json_object_array_add(arr, e);
	}
	add(o, "ticks", json_object_new_uint64(v->ticks));
	add(o, "guests", arr);
	return finish(o);
}

char *ovcd_request_format(enum ovcd_command c, const char *guest, enum ovcd_set_what what,
			  const char *size)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	add(o, "version", json_object_new_int(OVCD_PROTOCOL_VERSION));
	add(o, "command", json_object_new_string(ovcd_command_name(c)));
	if (c == OVCD_CMD_SET) {
		add(o, "guest", json_object_new_string(guest ? guest : ""));
		add(o, "what", json_object_new_string(what == OVCD_SET_FLOOR ? "floor" : "target"));
		add(o, "size", json_object_new_string(size ? size : ""));
	}
	return finish(o);
}
