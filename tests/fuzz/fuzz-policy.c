/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness: properties of the policy (lib/host/policy.c) whatever the
 * figures. The input drives a config (keys of the policy with values from
 * the whole range the parser accepts), the host's state, and up to eight
 * guests with arbitrary statistics, targets, times and carried state (a
 * guest writes its own statistics; the state comes back from the last
 * decision but is checked as if it could be anything). Each input runs two
 * ticks (the second with the first's state and targets) and a check of
 * every guest between them. Checked beyond "no crash, no UB (unsigned
 * wrap-around included, see meson.build), no leak":
 *  - no balloon target above the guest's maximum;
 *  - no target lowered below the guest's floor (the configured one, and
 *    the floor the decision reports), nor lowered by more than a step;
 *  - nothing lowered on stale or missing statistics, nor under pressure;
 *  - ovcd_policy_guest_check() never lowers a target: it returns 1 with a
 *    higher target (at most the maximum) or 0 with the target unchanged;
 *  - an engine's raised reclaim target stays within the guest's maximum;
 *  - every reason is a terminated string.
 * Single-threaded; no state between inputs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/config.h"
#include "host/guest.h"
#include "host/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_GUESTS 8
#define MIB (UINT64_C(1) << 20)

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

static uint64_t add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v = v << 8 | (in->n ? *in->p : 0);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

/* A size: often a realistic one, sometimes anything at all. */
static uint64_t size_of(struct in *in)
{
	uint8_t how = (uint8_t)take(in, 1);
	if (how < 16)
		return take(in, 8);                          /* anything, OVC_UNKNOWN included */
	if (how < 32)
		return OVC_UNKNOWN;
	return take(in, 2) * MIB + take(in, 2) * 4096;       /* up to 64GiB */
}

static const char *const keys[] = {
	"[host]\nlow = %u%%\n", "[host]\nhigh = %uMiB\n", "[host]\nreserve = %uMiB\n",
	"[host]\npsi_some = %u%%\n", "[balloon]\nstep = %u%%\n", "[balloon]\nfloor = %u%%\n",
	"[balloon]\nfloor = %uMiB\n", "[balloon]\nguest_free = %u%%\n", "[balloon]\nheadroom = %u%%\n",
	"[balloon]\nheadroom = %uMiB\n", "[balloon]\nemergency_available = %uMiB\n",
	"[balloon]\nemergency_step = %u%%\n", "[balloon]\nmin_change = %uMiB\n",
	"[balloon]\nheadroom_decay = %us\n", "[balloon]\nshort_decay = %us\n",
	"[balloon]\noom_cooldown = %us\n", "[balloon]\npending_timeout = %us\n",
	"[balloon]\nidle_after = %us\n", "[balloon]\nemergency_stalls = %u\n",
	"[balloon]\nenable = %u\n", "[swap]\nmax = %u%%\n", "[swap]\nstep = %uMiB\n",
	"[guest \"g*\"]\nfloor = %u%%\npriority = 3\n", "[guest \"g1\"]\nnever_balloon = %u\n",
	"[guest \"g2\"]\nksm = %u\n", "[guest \"g3\"]\nstep = %uMiB\nnever_swap = yes\n",
};

/* One key, in its own section: a config of sections that each appear
 * once is made by parsing them one at a time into one text only when the
 * section is new; a repeated section keeps the defaults (still valid). */
static struct ovcd_config *make_config(struct in *in)
{
	char text[2048] = "", line[128];
	unsigned used = 0, n = (unsigned)take(in, 1) % 6;

	for (unsigned i = 0; i < n; i++) {
		unsigned k = (unsigned)take(in, 1) % (sizeof(keys) / sizeof(keys[0]));
		if (used & (1u << k))
			continue;
		/* Sections must not repeat: allow one key per section name. */
		const char *sect_end = strchr(keys[k], '\n');
		char sect[64];
		snprintf(sect, sizeof(sect), "%.*s", (int)(sect_end - keys[k]), keys[k]);
		if (strstr(text, sect))
			continue;
		used |= 1u << k;
		snprintf(line, sizeof(line), keys[k], (unsigned)take(in, 2) % 20000);
		strncat(text, line, sizeof(text) - strlen(text) - 1);
	}
	struct ovcd_config *c = NULL;
	if (ovcd_config_parse("fuzz", text, strlen(text), &c, NULL) < 0 &&
	    ovcd_config_new_default(&c) < 0)
		abort();
	return c;
}

static void check_reason(const char *r)
{
	if (!memchr(r, '\0', OVC_POLICY_REASON_MAX))
		abort();
}

/* The properties of one decision against its guest. */
static void check(const struct ovcd_config *c, const struct ovcd_policy_guest *g,
		  const struct ovcd_policy_decision *d)
{
	const struct ovcd_guest_stats *st = &g->stats;
	uint64_t max = st->max_bytes;

	check_reason(d->reason);
	/* No maximum, or one no VM can have: the guest is left alone. */
	if (!ovcd_known(max) || max == 0 || max > OVC_GUEST_BYTES_MAX) {
		if (d->action != OVC_ACTION_NONE || d->reclaim_action != OVC_ACTION_NONE)
			abort();
		return;
	}
	uint64_t old = g->target_bytes && ovcd_known(g->target_bytes) && g->target_bytes < max ? g->target_bytes
											       : max;
	uint64_t floor = ovcd_conf_size_bytes(&g->settings.floor, max);
	uint64_t step = ovcd_conf_size_bytes(&g->settings.step, max);
	floor = floor < max ? floor : max;
	if (g->kind != OVC_DRIVER_ENGINE) {
		if (d->target_bytes > max)
			abort();
		if (d->target_bytes < old) {
			if (d->action != OVC_ACTION_INFLATE)
				abort();
			if (d->target_bytes < floor || d->target_bytes < d->floor_bytes ||
			    d->target_bytes < d->raised_floor_bytes || d->raised_floor_bytes < d->floor_bytes)
				abort();
			if (old - d->target_bytes > (step > MIB ? step : MIB))
				abort();
			if (st->stale || !ovcd_known(st->available_bytes) || d->guest_pressure)
				abort();
			if (g->settings.never_balloon || !c->balloon.enable)
				abort();
		}
	}
	if (d->reclaim_action == OVC_ACTION_RECLAIM && d->reclaim_target_bytes > max)
		abort();
}

static void fill_guest(struct in *in, const struct ovcd_config *c, struct ovcd_policy_guest *g,
		       unsigned i, uint64_t now)
{
	static const char *const names[] = { "g1", "g2", "g3", "g4", "web", "db", "x", "g5" };
	struct ovcd_guest_stats *st = &g->stats;

	memset(g, 0, sizeof(*g));
	g->name = names[i % 8];
	uint8_t flags = (uint8_t)take(in, 1);
	g->kind = flags % 3 == 0 ? OVC_DRIVER_QMP : flags % 3 == 1 ? OVC_DRIVER_LIBVIRT : OVC_DRIVER_ENGINE;
	g->engine = flags & 4;
	g->free_page_reporting = flags & 8;
	ovcd_guest_stats_reset(st);
	st->collected_usec = flags & 16 ? sub(now, take(in, 2) * 1000) : take(in, 8);
	st->guest_update_sec = take(in, 1) ? now / 1000000 : take(in, 8);
	st->max_bytes = size_of(in);
	st->actual_bytes = size_of(in);
	st->rss_bytes = size_of(in);
	st->total_bytes = size_of(in);
	st->free_bytes = size_of(in);
	st->available_bytes = size_of(in);
	st->major_faults = take(in, 1) ? take(in, 2) : take(in, 8);
	st->swap_in_bytes = size_of(in);
	st->oom_kills = take(in, 1) ? take(in, 1) : take(in, 8);
	st->alloc_stalls = take(in, 1) ? take(in, 2) : take(in, 8);
	st->direct_reclaims = take(in, 1) ? take(in, 2) : take(in, 8);
	st->engine_zero_bytes = size_of(in);
	st->engine_swap_bytes = size_of(in);
	st->engine_target_bytes = size_of(in);
	st->engine_swap_in_bytes = size_of(in);
	st->engine_region_bytes = size_of(in);
	/* What the drivers do with what the guest sent. */
	ovcd_guest_stats_sanitize(st, now / 1000000, 10);
	g->prev = *st;
	g->prev.collected_usec = take(in, 1) ? sub(st->collected_usec, 1000000) : take(in, 8);
	g->prev.major_faults = take(in, 2);
	g->prev.engine_swap_in_bytes = size_of(in);
	g->target_bytes = take(in, 1) & 1 ? st->actual_bytes : size_of(in);
	g->last_action_usec = take(in, 1) & 1 ? 0 : sub(now, take(in, 3));
	g->last_emergency_usec = take(in, 1) & 1 ? 0 : sub(now, take(in, 4) * 1000);
	g->emergency_count = (uint32_t)take(in, 1);
	/* Carried state: as the last decision left it, or anything. */
	if (take(in, 1) < 64) {
		uint8_t *s = (uint8_t *)&g->state;
		for (size_t k = 0; k < sizeof(g->state); k++)
			s[k] = (uint8_t)take(in, 1);
	}
	ovcd_config_guest_settings(c, g->name, &g->settings);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	struct ovcd_config *c = make_config(&in);
	struct ovcd_policy_guest g[MAX_GUESTS];
	struct ovcd_policy_decision d[MAX_GUESTS], dc;
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	uint64_t now = 1000000000000 + take(&in, 4) * 1000;
	size_t n = take(&in, 1) % (MAX_GUESTS + 1);
	struct ovcd_policy_host h = {
		.now_usec = now,
		.mem = { .total_bytes = size_of(&in), .available_bytes = size_of(&in) },
		.psi_valid = take(&in, 1) & 1,
		.ksm_valid = take(&in, 1) & 1,
		.page_size = 4096,
	};
	h.psi.some.avg10_basis_points = (uint32_t)take(&in, 2);
	h.psi.full.avg10_basis_points = (uint32_t)take(&in, 2);
	/* KSM counters of a real host (at most 2^40 pages): absurd ones are
	 * lib/host/ksm.c's to refuse, not the policy's. */
	h.ksm.pages_sharing = take(&in, 5);
	h.ksm.pages_shared = take(&in, 5);
	h.ksm.full_scans = take(&in, 2);
	h.ksm_knobs.run = (uint32_t)take(&in, 1) % 3;
	h.ksm_knobs.pages_to_scan = (uint32_t)take(&in, 2);

	for (size_t i = 0; i < n; i++)
		fill_guest(&in, c, &g[i], (unsigned)i, now);
	if (ovcd_policy_tick(c, &h, &ks, g, n, d, &out) != 0)
		abort();
	check_reason(out.reason);
	check_reason(out.ksm_reason);
	for (size_t i = 0; i < n; i++)
		check(c, &g[i], &d[i]);

	/* The decisions carried out, statistics a second later, the checks
	 * between ticks, then the next tick. */
	h.now_usec = now + 1000000;
	for (size_t i = 0; i < n; i++) {
		g[i].state = d[i].state;
		if (d[i].target_bytes && ovcd_known(g[i].stats.max_bytes))
			g[i].target_bytes = d[i].target_bytes;
		g[i].prev = g[i].stats;
		g[i].stats.collected_usec = add(g[i].stats.collected_usec, 1000000);
		if (ovcd_known(g[i].stats.available_bytes))
			g[i].stats.available_bytes = size_of(&in);
		int r = ovcd_policy_guest_check(c, &h, &g[i], &dc);
		uint64_t max = g[i].stats.max_bytes;
		check_reason(dc.reason);
		if (r != 0 && r != 1)
			abort();
		if (ovcd_known(max) && max && max <= OVC_GUEST_BYTES_MAX && g[i].kind != OVC_DRIVER_ENGINE) {
			uint64_t old = g[i].target_bytes && ovcd_known(g[i].target_bytes) && g[i].target_bytes < max
					       ? g[i].target_bytes : max;
			if (r == 1 && (dc.target_bytes <= old || dc.target_bytes > max))
				abort();
			if (r == 0 && dc.target_bytes != old)
				abort();
		}
		g[i].state = dc.state;
	}
	h.now_usec = now + 5000000;
	ks = out.ksm_state;
	if (ovcd_policy_tick(c, &h, &ks, g, n, d, &out) != 0)
		abort();
	for (size_t i = 0; i < n; i++)
		check(c, &g[i], &d[i]);
	ovcd_config_free(c);
	return 0;
}
