/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: the policy (lib/host/policy.c). Known-answer tables: one guest per row,
 * inputs → exact outputs; multi-guest cases (proportional shares,
 * priorities); KSM steering over several ticks; and replay of the recorded
 * traces in tests/fixtures/policy with invariants checked every tick.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ovc/common.h>

#include "host/config.h"
#include "host/guest.h"
#include "ovc-test.h"
#include "host/policy.h"
#include "common/util.h"

#define U OVC_UNKNOWN
#define SEC USEC_PER_SEC
#define NOW (10000 * SEC)

/* The rules tested by the tables below came before the learned headroom
 * and the absolute emergency_available: these configs set headroom to 0 and
 * emergency_available to its old 5%, so that each row still shows one rule
 * alone. The rows of the newer rules use the defaults. */
#define OLD_RULES "headroom = 0\nemergency_available = 5%\n"

/* low 2GiB, high 4GiB, step 256MiB; the rest are the defaults: floor 25%,
 * guest_free 20%, min_change 0.25%, emergency_available 5%, 200 major
 * faults/s, 1MiB/s swap-in, emergency_step 25%, interval 5s. */
static const char base_conf[] = "[host]\nlow = 2GiB\nhigh = 4GiB\nkeep_headroom = no\n[balloon]\n" OLD_RULES "step = 256MiB\n";

static struct ovcd_config *conf(const char *text)
{
	struct ovcd_config *c = NULL;
	char *errors = NULL;

	if (ovcd_config_parse("test", text, strlen(text), &c, &errors) != 0)
		fail_msg("config: %s", errors);
	return c;
}

static struct ovcd_policy_host host_at(uint64_t avail)
{
	struct ovcd_policy_host h = {
		.now_usec = NOW,
		.mem = { .total_bytes = 16 * GIB, .free_bytes = avail, .available_bytes = avail },
		.page_size = 4096,
	};
	return h;
}

/* A 4GiB guest at max with fresh stats. */
static struct ovcd_policy_guest guest(const struct ovcd_config *c, uint64_t target, uint64_t avail)
{
	struct ovcd_policy_guest g = { .name = "g", .kind = OVC_DRIVER_LIBVIRT, .target_bytes = target };

	ovcd_guest_stats_reset(&g.stats);
	g.stats.collected_usec = NOW;
	g.stats.guest_update_sec = 1000;
	g.stats.max_bytes = 4 * GIB;
	g.stats.actual_bytes = target;
	g.stats.total_bytes = target;
	g.stats.available_bytes = avail;
	g.stats.major_faults = 100;
	g.stats.swap_in_bytes = 0;
	g.prev = g.stats;
	g.prev.collected_usec = NOW - 2 * SEC;
	ovcd_config_guest_settings(c, "g", &g.settings);
	return g;
}

enum tweak {
	T_NONE,
	T_STALE,
	T_NO_AVAIL,
	T_ACTUAL_4G,       /* balloon not converged: actual 4GiB */
	T_MAJFLT_2000,     /* +2000 major faults in 2 s */
	T_SWAPIN_10M,      /* +10MiB swapped in in 2 s */
	T_MAJFLT_BACK,     /* counter went backwards */
	T_NEVER_BALLOON,
	T_FLOOR_1G_ABS,
	T_SETTLING,        /* acted 1 s ago */
	T_COOLING,         /* emergency deflate 20 s ago */
	T_PSI_SOME_15,
	T_PSI_FULL_6,
	T_ENGINE,          /* engine only: 1GiB zero-shared, nothing swapped */
	T_ENGINE_NEVER_SWAP,
	T_ENGINE_SWAPPED_1G,
	T_ENGINE_THRASH,   /* engine swapped 10MiB back in in 2 s */
	T_ENGINE_SWAP_OFF, /* [swap] enable = no */
	T_MERGED,          /* libvirt balloon and an engine: T_ENGINE's figures */
	T_NO_MAX,
	T_BALLOON_OFF,
	T_TARGET_ZERO,
	T_NO_PREV,
};

static const struct kat {
	const char *what;
	uint64_t host_avail;
	uint64_t target, avail;
	enum tweak tweak;
	enum ovcd_policy_action action;
	uint64_t new_target;
	/* Engine: the reclaim target decided, and the one in force before
	 * (engine_target_bytes); 0, 0 for balloon-only guests. */
	uint64_t reclaim, engine_target;
	const char *reason; /* exact, or NULL */
	const char *reason_part;
	uint32_t count;     /* the decision's emergency_count */
	/* The guest's emergency streak: emergency_count in, and its last
	 * emergency (and action) this long ago; 0: none. */
	uint32_t streak;
	uint64_t streak_ago_sec;
} kats[] = {
	{ "steady", 3 * GIB, 4 * GIB, 2 * GIB, T_NONE, OVC_ACTION_NONE, 4 * GIB, 0, 0,
	  "host steady (MemAvailable 3GiB between low 2GiB and high 4GiB)" },
	{ "pressure, spare: one step", GIB, 4 * GIB, 2 * GIB, T_NONE, OVC_ACTION_INFLATE, 3840 * MIB, 0, 0,
	  "inflate by 256MiB to 3.7GiB: host pressure (MemAvailable 1GiB < low 2GiB); spare 1.2GiB" },
	{ "pressure, spare below a step", GIB, 4 * GIB, 900 * MIB, T_NONE, OVC_ACTION_INFLATE,
	  4016 * MIB, 0, 0, NULL, "inflate by 80MiB" },
	{ "pressure, no spare", GIB, 4 * GIB, 800 * MIB, T_NONE, OVC_ACTION_NONE, 4 * GIB, 0, 0,
	  "host pressure, no spare: available 800MiB, keeps 819MiB" },
	{ "pressure, stale stats: never inflated", GIB, 4 * GIB, 2 * GIB, T_STALE, OVC_ACTION_NONE,
	  4 * GIB, 0, 0, "host pressure, but stale stats: never inflated" },
	{ "pressure, no available figure", GIB, 4 * GIB, 2 * GIB, T_NO_AVAIL, OVC_ACTION_NONE, 4 * GIB,
	  0, 0, "host pressure, but no stats: never inflated" },
	{ "pressure, stops exactly at the floor", GIB, 1100 * MIB, 1000 * MIB, T_NONE,
	  OVC_ACTION_INFLATE, GIB, 0, 0, NULL, "inflate by 76MiB to 1GiB" },
	{ "pressure, at the floor", GIB, GIB, 900 * MIB, T_NONE, OVC_ACTION_NONE, GIB, 0, 0,
	  "host pressure, at floor 1GiB" },
	{ "lying: available above max, clamped; still one step", GIB, 4 * GIB, 100 * GIB, T_NONE,
	  OVC_ACTION_INFLATE, 3840 * MIB, 0, 0, NULL, "spare 3.2GiB" },
	{ "balloon still inflating: its pending part is not spare", GIB, 3 * GIB, 2 * GIB,
	  T_ACTUAL_4G, OVC_ACTION_INFLATE, 3 * GIB - 204 * MIB, 0, 0, NULL, "spare 204MiB" },
	{ "emergency: available under 5%, even under host pressure", GIB, 2 * GIB, 50 * MIB, T_NONE,
	  OVC_ACTION_EMERGENCY, 3 * GIB, 0, 0, "emergency deflate by 1GiB to 3GiB: available 50MiB < 102MiB",
	  .count = 1 },
	{ "emergency: major faults", 3 * GIB, 3 * GIB, 2 * GIB, T_MAJFLT_2000, OVC_ACTION_EMERGENCY,
	  4 * GIB, 0, 0, "emergency deflate by 1GiB to 4GiB: major faults 1000/s > 200/s", .count = 1 },
	{ "emergency: swap-in", GIB, 3584 * MIB, 2 * GIB, T_SWAPIN_10M, OVC_ACTION_EMERGENCY, 4 * GIB,
	  0, 0, "emergency deflate by 512MiB to 4GiB: swap-in 5MiB/s > 1MiB/s", .count = 1 },
	{ "fault counter backwards: no rate, no emergency", 3 * GIB, 3 * GIB, 2 * GIB, T_MAJFLT_BACK,
	  OVC_ACTION_NONE, 3 * GIB, 0, 0, NULL, "host steady" },
	{ "no previous tick: no rate", 3 * GIB, 3 * GIB, 2 * GIB, T_NO_PREV, OVC_ACTION_NONE, 3 * GIB,
	  0, 0, NULL, "host steady" },
	{ "guest pressure at max", GIB, 4 * GIB, 10 * MIB, T_NONE, OVC_ACTION_NONE, 4 * GIB, 0, 0,
	  "guest pressure (available 10MiB < 204MiB), already at max 4GiB" },
	{ "never_balloon: back to max at once", GIB, 2 * GIB, GIB, T_NEVER_BALLOON, OVC_ACTION_RESTORE,
	  4 * GIB, 0, 0, "class never_balloon: back to max 4GiB" },
	{ "never_balloon at max", GIB, 4 * GIB, 3 * GIB, T_NEVER_BALLOON, OVC_ACTION_NONE, 4 * GIB, 0,
	  0, "class never_balloon" },
	{ "below floor: raised at once", GIB, 512 * MIB, 400 * MIB, T_NONE, OVC_ACTION_RESTORE, GIB, 0,
	  0, "target 512MiB below floor 1GiB: raised to the floor" },
	{ "absolute floor from a [guest] section", GIB, 1100 * MIB, 1000 * MIB, T_FLOOR_1G_ABS,
	  OVC_ACTION_INFLATE, GIB, 0, 0, NULL, "inflate by 76MiB to 1GiB" },
	{ "room: deflate one step", 8 * GIB, 2 * GIB, GIB, T_NONE, OVC_ACTION_DEFLATE, 2304 * MIB, 0, 0,
	  "deflate by 256MiB to 2.2GiB: host has room (MemAvailable 8GiB > high 4GiB)" },
	{ "room too small for min_change", 4 * GIB + 5 * MIB, 2 * GIB, GIB, T_NONE, OVC_ACTION_NONE,
	  2 * GIB, 0, 0, NULL, "; share 5MiB below min_change 10MiB" },
	{ "room: the last bit to max is taken", 8 * GIB, 4 * GIB - 4 * MIB, GIB, T_NONE,
	  OVC_ACTION_DEFLATE, 4 * GIB, 0, 0, NULL, "deflate by 4MiB to 4GiB" },
	{ "room: stale guests may deflate", 8 * GIB, 2 * GIB, GIB, T_STALE, OVC_ACTION_DEFLATE,
	  2304 * MIB, 0, 0, NULL, NULL },
	{ "room at max", 8 * GIB, 4 * GIB, GIB, T_NONE, OVC_ACTION_NONE, 4 * GIB, 0, 0, "at max 4GiB" },
	{ "settling after an action", GIB, 4 * GIB, 2 * GIB, T_SETTLING, OVC_ACTION_NONE, 4 * GIB, 0, 0,
	  "host pressure, settling: last action 1000ms ago" },
	{ "cooling down after an emergency", GIB, 4 * GIB, 2 * GIB, T_COOLING, OVC_ACTION_NONE, 4 * GIB,
	  0, 0, "host pressure, cooling down: emergency deflate 20s ago", .count = 1 },
	/* Ping-pong: back-off and hysteresis after emergencies. guest_free is
	 * 819MiB and the margin (emergency_step) 1GiB on these 4GiB guests. */
	{ "one emergency 8 intervals ago: cooled down, but spare above guest_free + margin only",
	  GIB, 4 * GIB, 2 * GIB, T_NONE, OVC_ACTION_INFLATE, 4 * GIB - 204 * MIB, 0, 0, NULL,
	  "inflate by 204MiB to 3.8GiB: host pressure (MemAvailable 1GiB < low 2GiB); spare 204MiB",
	  .count = 1, .streak = 1, .streak_ago_sec = 40 },
	{ "one emergency 8 intervals ago: available within the margin, not inflated", GIB, 4 * GIB,
	  1800 * MIB, T_NONE, OVC_ACTION_NONE, 4 * GIB, 0, 0,
	  "host pressure, recovering from 1 emergency deflate: available 1.7GiB, margin 1GiB above guest_free",
	  NULL, .count = 1, .streak = 1, .streak_ago_sec = 40 },
	/* In a streak the guest needs guest_free (409MiB of 2GiB) + the
	 * margin (1GiB): more than emergency_step, so it gets that. */
	{ "second emergency within the window: the streak counts it; deflated to what it needs",
	  GIB, 2 * GIB, 50 * MIB, T_NONE, OVC_ACTION_EMERGENCY, 3432 * MIB, 0, 0,
	  "emergency deflate by 1.3GiB to 3.3GiB: available 50MiB < 102MiB", NULL, .count = 2,
	  .streak = 1, .streak_ago_sec = 40 },
	{ "two emergencies in a row: cooldown doubled to 12 intervals", GIB, 4 * GIB, 2 * GIB,
	  T_NONE, OVC_ACTION_NONE, 4 * GIB, 0, 0,
	  "host pressure, cooling down: emergency deflate 40s ago, 2 in a row: cooldown 60s", NULL,
	  .count = 2, .streak = 2, .streak_ago_sec = 40 },
	{ "quiet for twice the cooldown: streak over, normal spare", GIB, 4 * GIB, 2 * GIB,
	  T_NONE, OVC_ACTION_INFLATE, 3840 * MIB, 0, 0, NULL, "spare 1.2GiB", .count = 0,
	  .streak = 1, .streak_ago_sec = 60 },
	{ "emergency after the streak ended: a new streak of one", GIB, 2 * GIB, 50 * MIB,
	  T_NONE, OVC_ACTION_EMERGENCY, 3 * GIB, 0, 0, NULL, NULL, .count = 1,
	  .streak = 1, .streak_ago_sec = 60 },
	{ "two in a row, 20 intervals ago: cooled down, still in the streak", GIB, 4 * GIB, 2 * GIB,
	  T_NONE, OVC_ACTION_INFLATE, 4 * GIB - 204 * MIB, 0, 0, NULL, "spare 204MiB",
	  .count = 2, .streak = 2, .streak_ago_sec = 100 },
	{ "four in a row: cooldown 48 intervals", GIB, 4 * GIB, 2 * GIB, T_NONE,
	  OVC_ACTION_NONE, 4 * GIB, 0, 0, NULL, "4 in a row: cooldown 240s",
	  .count = 4, .streak = 4, .streak_ago_sec = 200 },
	{ "nine in a row: cooldown capped at 48 intervals", GIB, 4 * GIB, 2 * GIB, T_NONE,
	  OVC_ACTION_INFLATE, 4 * GIB - 204 * MIB, 0, 0, NULL, "spare 204MiB",
	  .count = 9, .streak = 9, .streak_ago_sec = 250 },
	{ "a count without a last emergency is no streak", GIB, 4 * GIB, 2 * GIB, T_NONE,
	  OVC_ACTION_INFLATE, 3840 * MIB, 0, 0, NULL, "spare 1.2GiB", .count = 0, .streak = 2 },
	{ "PSI some above threshold, MemAvailable above high", 5 * GIB, 4 * GIB, 2 * GIB,
	  T_PSI_SOME_15, OVC_ACTION_INFLATE, 3840 * MIB, 0, 0, NULL,
	  "host pressure (PSI some avg10 15.00% >= 10.00%)" },
	{ "PSI full above threshold", 3 * GIB, 4 * GIB, 2 * GIB, T_PSI_FULL_6, OVC_ACTION_INFLATE,
	  3840 * MIB, 0, 0, NULL, "PSI full avg10 6.00% >= 5.00%" },
	/* Engines: 4GiB, 1GiB zero-shared; [swap] step 2% = 81MiB, max 25%:
	 * at most 1GiB swapped, so the target never exceeds 2GiB. */
	{ "engine: pressure raises the target a swap step above what it gives back", GIB, 4 * GIB,
	  2 * GIB, T_ENGINE, OVC_ACTION_RECLAIM, 4 * GIB, 1105 * MIB, 0,
	  "engine: reclaim: target 0KiB -> 1GiB: host pressure (MemAvailable 1GiB < low 2GiB)" },
	{ "engine: pressure, never_swap: zero sharing only", GIB, 4 * GIB, 2 * GIB, T_ENGINE_NEVER_SWAP,
	  OVC_ACTION_NONE, 4 * GIB, 0, 0, "engine: zero sharing only (class never_swap)" },
	{ "engine: pressure, swap cap reached", GIB, 4 * GIB, 2 * GIB, T_ENGINE_SWAPPED_1G,
	  OVC_ACTION_NONE, 4 * GIB, 2 * GIB, 2 * GIB, NULL, "swap cap reached" },
	{ "engine: pressure, target not reached yet: no more", GIB, 4 * GIB, 2 * GIB, T_ENGINE,
	  OVC_ACTION_NONE, 4 * GIB, 1536 * MIB, 1536 * MIB, NULL, "reaching target 1.5GiB (gives back 1GiB)" },
	{ "engine: steady keeps the target (hysteresis)", 3 * GIB, 4 * GIB, 2 * GIB, T_ENGINE,
	  OVC_ACTION_NONE, 4 * GIB, 1536 * MIB, 1536 * MIB,
	  "engine: target 1.5GiB, gives back 1GiB; host steady" },
	{ "engine: room lowers the target by a swap step", 5 * GIB, 4 * GIB, 2 * GIB, T_ENGINE,
	  OVC_ACTION_RELEASE, 4 * GIB, 1455 * MIB, 1536 * MIB, NULL, "release: target 1.5GiB -> 1.4GiB" },
	{ "engine: room, within zero sharing: to 0", 5 * GIB, 4 * GIB, 2 * GIB, T_ENGINE,
	  OVC_ACTION_RELEASE, 4 * GIB, 0, 1050 * MIB, NULL, "-> 0KiB" },
	{ "engine: room, target 0 stays", 5 * GIB, 4 * GIB, 2 * GIB, T_ENGINE, OVC_ACTION_NONE, 4 * GIB,
	  0, 0, "engine: host has room, target 0 (zero sharing only)" },
	{ "engine: thrashing is an emergency, even under host pressure", GIB, 4 * GIB, 2 * GIB,
	  T_ENGINE_THRASH, OVC_ACTION_EMERGENCY, 4 * GIB, 0, 1536 * MIB,
	  "engine: emergency: target 1.5GiB -> 0KiB: swap-in 5MiB/s > 1MiB/s", .count = 1 },
	{ "engine: cooling down after an emergency: no raise", GIB, 4 * GIB, 2 * GIB, T_ENGINE,
	  OVC_ACTION_NONE, 4 * GIB, 0, 0, NULL, "cooling down", .count = 1, .streak = 1,
	  .streak_ago_sec = 20 },
	{ "engine: swap turned off: target back to 0 at once", 3 * GIB, 4 * GIB, 2 * GIB,
	  T_ENGINE_SWAP_OFF, OVC_ACTION_RESTORE, 4 * GIB, 0, 1536 * MIB, NULL, "[swap] enable = no" },
	{ "balloon and engine: the balloon first, the engine for the rest", GIB, 4 * GIB, 2 * GIB,
	  T_MERGED, OVC_ACTION_INFLATE, 3840 * MIB, 1105 * MIB, 0, NULL,
	  "; engine: reclaim: target 0KiB -> 1GiB" },
	{ "no maximum known", GIB, 4 * GIB, 2 * GIB, T_NO_MAX, OVC_ACTION_NONE, 4 * GIB, 0, 0,
	  "no maximum memory known: left alone" },
	{ "ballooning disabled", GIB, 2 * GIB, 2 * GIB, T_BALLOON_OFF, OVC_ACTION_NONE, 2 * GIB, 0, 0,
	  "ballooning disabled ([balloon] enable = no)" },
	{ "target 0 means max", GIB, 0, 2 * GIB, T_TARGET_ZERO, OVC_ACTION_INFLATE, 3840 * MIB, 0, 0,
	  NULL, NULL },
};

static void run_kat(const struct kat *k)
{
	const char *extra = "";
	if (k->tweak == T_FLOOR_1G_ABS)
		extra = "[guest \"g\"]\nfloor = 1GiB\n";
	else if (k->tweak == T_NEVER_BALLOON)
		extra = "[guest \"g\"]\nnever_balloon = yes\n";
	else if (k->tweak == T_ENGINE_NEVER_SWAP)
		extra = "[guest \"g\"]\nnever_swap = yes\n";
	else if (k->tweak == T_ENGINE_SWAP_OFF)
		extra = "[swap]\nenable = no\n";
	char text[512];
	if (k->tweak == T_BALLOON_OFF)
		snprintf(text, sizeof(text), "%s", "[host]\nlow = 2GiB\nhigh = 4GiB\n[balloon]\n" OLD_RULES "step = 256MiB\nenable = no\n");
	else
		snprintf(text, sizeof(text), "%s%s", base_conf, extra);
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = conf(text);
	struct ovcd_policy_host h = host_at(k->host_avail);
	struct ovcd_policy_guest g = guest(c, k->target, k->avail);
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_decision d;
	struct ovcd_policy_out out;

	if (k->streak_ago_sec)
		g.last_action_usec = g.last_emergency_usec = NOW - k->streak_ago_sec * SEC;
	g.emergency_count = k->streak;
	switch (k->tweak) {
	case T_STALE:
		g.stats.stale = true;
		g.stats.available_bytes = g.stats.total_bytes = g.stats.major_faults = U;
		g.stats.swap_in_bytes = U;
		break;
	case T_NO_AVAIL:
		g.stats.available_bytes = U;
		break;
	case T_ACTUAL_4G:
		g.stats.actual_bytes = g.stats.total_bytes = 4 * GIB;
		break;
	case T_MAJFLT_2000:
		g.stats.major_faults = g.prev.major_faults + 2000;
		break;
	case T_SWAPIN_10M:
		g.stats.swap_in_bytes = 10 * MIB;
		break;
	case T_MAJFLT_BACK:
		g.prev.major_faults = 50000;
		break;
	case T_NO_PREV:
		g.stats.major_faults += 100000;
		g.prev.collected_usec = 0;
		break;
	case T_SETTLING:
		g.last_action_usec = NOW - SEC;
		break;
	case T_COOLING:
		g.last_action_usec = g.last_emergency_usec = NOW - 20 * SEC;
		break;
	case T_PSI_SOME_15:
		h.psi_valid = true;
		h.psi.some.avg10_basis_points = 1500;
		break;
	case T_PSI_FULL_6:
		h.psi_valid = true;
		h.psi.some.avg10_basis_points = 600;
		h.psi.full.avg10_basis_points = 600;
		break;
	case T_ENGINE:
	case T_ENGINE_NEVER_SWAP:
	case T_ENGINE_SWAP_OFF:
	case T_ENGINE_SWAPPED_1G:
	case T_ENGINE_THRASH:
	case T_MERGED:
		/* What an engine-only guest looks like (balloon-driver/ovc.c):
		 * no guest-side figures, actual = max. */
		if (k->tweak != T_MERGED) {
			g.kind = OVC_DRIVER_ENGINE;
			g.stats.actual_bytes = g.stats.max_bytes;
			g.stats.total_bytes = g.stats.available_bytes = g.stats.major_faults = U;
			g.stats.swap_in_bytes = U;
			g.prev = g.stats;
			g.prev.collected_usec = NOW - 2 * SEC;
		} else {
			g.engine = true;
		}
		g.stats.engine_zero_bytes = GIB;
		g.stats.engine_swap_bytes = k->tweak == T_ENGINE_SWAPPED_1G ? GIB : 0;
		g.stats.engine_target_bytes = k->engine_target;
		g.prev.engine_swap_in_bytes = 0;
		g.stats.engine_swap_in_bytes = k->tweak == T_ENGINE_THRASH ? 10 * MIB : 0;
		break;
	case T_NO_MAX:
		g.stats.max_bytes = U;
		break;
	case T_TARGET_ZERO:
		g.stats.actual_bytes = g.stats.total_bytes = 4 * GIB;
		break;
	default:
		break;
	}
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	if (d.action != k->action || d.target_bytes != k->new_target ||
	    d.reclaim_target_bytes != k->reclaim)
		fail_msg("%s: got %s target %llu reclaim %llu (%s), expected %s target %llu reclaim %llu",
			 k->what, ovcd_policy_action_name(d.action), (unsigned long long)d.target_bytes,
			 (unsigned long long)d.reclaim_target_bytes, d.reason,
			 ovcd_policy_action_name(k->action), (unsigned long long)k->new_target,
			 (unsigned long long)k->reclaim);
	if (g.kind == OVC_DRIVER_ENGINE)
		assert_int_equal(d.reclaim_action, d.action);
	if (k->tweak == T_MERGED)
		assert_int_equal(d.reclaim_action, OVC_ACTION_RECLAIM);
	if (k->reason && strcmp(d.reason, k->reason) != 0)
		fail_msg("%s: reason '%s', expected '%s'", k->what, d.reason, k->reason);
	if (k->reason_part && !strstr(d.reason, k->reason_part))
		fail_msg("%s: reason '%s' lacks '%s'", k->what, d.reason, k->reason_part);
	if (d.emergency_count != k->count)
		fail_msg("%s: emergency_count %u, expected %u", k->what, d.emergency_count, k->count);
	/* Invariants every row must keep. */
	if (g.stats.max_bytes != U) {
		assert_true(d.target_bytes <= g.stats.max_bytes);
		assert_true(d.target_bytes >= d.floor_bytes || d.target_bytes >= k->target);
	}
	if (g.stats.stale || !ovcd_known(g.stats.available_bytes))
		assert_int_not_equal(d.action, OVC_ACTION_INFLATE);
}

static void test_known_answers(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(kats); i++) {
		print_message("row %zu: %s\n", i, kats[i].what);
		run_kat(&kats[i]);
	}
}

static void test_host_levels(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = conf(base_conf);
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_host h = host_at(GIB);

	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.level, OVC_HOST_PRESSURE);
	assert_int_equal(out.need_bytes, 3 * GIB);
	assert_int_equal(out.low_bytes, 2 * GIB);
	assert_int_equal(out.high_bytes, 4 * GIB);
	assert_string_equal(out.reason, "host pressure: MemAvailable 1GiB < low 2GiB");
	h = host_at(6 * GIB);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.level, OVC_HOST_ROOM);
	assert_int_equal(out.room_bytes, 2 * GIB);
	h = host_at(4 * GIB);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.level, OVC_HOST_STEADY);
	/* PSI thresholds of 0 turn PSI off. */
	_cleanup_(ovcd_config_freep) struct ovcd_config *c0 =
		conf("[host]\nlow = 2GiB\nhigh = 4GiB\npsi_some = 0%\npsi_full = 0%\n[balloon]\n" OLD_RULES);
	h = host_at(6 * GIB);
	h.psi_valid = true;
	h.psi.some.avg10_basis_points = 9999;
	assert_ovc_ok(ovcd_policy_tick(c0, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.level, OVC_HOST_ROOM);
	/* The defaults are auto: on 16GiB, a minimum free size of 512MiB
	 * (128MiB × the square root of MemTotal in GiB); low is the 1GiB
	 * reserve plus half of it, high the other half above low. */
	_cleanup_(ovcd_config_freep) struct ovcd_config *d = conf("");
	h = host_at(GIB);
	assert_ovc_ok(ovcd_policy_tick(d, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.low_bytes, 1280 * MIB);
	assert_int_equal(out.high_bytes, 1536 * MIB);
	assert_int_equal(out.level, OVC_HOST_PRESSURE);
	assert_int_equal(out.need_bytes, 512 * MIB);
	/* On 256GiB: 2GiB of minimum free; on a 2GiB test VM the 1GiB
	 * reserve is more than half: low stops at half of MemTotal. */
	h.mem.total_bytes = 256 * GIB;
	assert_ovc_ok(ovcd_policy_tick(d, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.low_bytes, 2 * GIB);
	assert_int_equal(out.high_bytes, 3 * GIB);
	h.mem.total_bytes = 2 * GIB;
	assert_ovc_ok(ovcd_policy_tick(d, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.low_bytes, GIB);
	assert_int_equal(out.high_bytes, GIB + 90 * MIB);
	/* Percentages still resolve against MemTotal. */
	_cleanup_(ovcd_config_freep) struct ovcd_config *pc = conf("[host]\nlow = 10%\nhigh = 20%\n");
	h = host_at(GIB);
	assert_ovc_ok(ovcd_policy_tick(pc, &h, &ks, NULL, 0, NULL, &out));
	assert_int_equal(out.low_bytes, 16 * GIB / 10);
	assert_int_equal(out.high_bytes, 16 * GIB / 5);
	/* Misuse. */
	struct ovcd_policy_decision dec;
	assert_int_equal(ovcd_policy_tick(NULL, &h, &ks, NULL, 0, NULL, &out), -EINVAL);
	assert_int_equal(ovcd_policy_tick(c, &h, &ks, NULL, 1, &dec, &out), -EINVAL);
	h.page_size = 0;
	assert_int_equal(ovcd_policy_tick(c, &h, &ks, NULL, 0, NULL, &out), -EINVAL);
	assert_string_equal(ovcd_policy_action_name(OVC_ACTION_EMERGENCY), "emergency");
	assert_string_equal(ovcd_host_level_name(OVC_HOST_ROOM), "room");
}

/* A guest seen before, whose used memory has not grown for @quiet_sec. */
static void seen_quiet(struct ovcd_policy_guest *g, uint64_t quiet_sec)
{
	g->state.seen_usec = NOW - 2 * SEC;
	g->state.seen_avail_bytes = g->stats.available_bytes;
	g->state.seen_used_bytes = g->stats.actual_bytes - g->stats.available_bytes;
	g->state.low_used_bytes = g->state.seen_used_bytes;
	g->state.seen_actual_bytes = g->stats.actual_bytes;
	g->state.busy_usec = NOW - quiet_sec * SEC;
}

/* The guests' headroom is kept free on the host too: with MemAvailable
 * above high, the host is still short once what the guests may take
 * without asking is counted, and takes it from the guest with spare; with
 * keep_headroom = no, the same host has room. */
static void test_headroom_on_host(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 3GiB\n[balloon]\nstep = 2GiB\n");
	_cleanup_(ovcd_config_freep) struct ovcd_config *off =
		conf("[host]\nlow = 2GiB\nhigh = 3GiB\nkeep_headroom = no\n[balloon]\nstep = 1GiB\n");
	struct ovcd_policy_host h = host_at(3584 * MIB);
	/* a: 3GiB available, keeps 20% + 20% (1.6GiB): 1.4GiB spare; b: 1GiB
	 * available, no spare. Each may take its headroom, 819MiB. */
	struct ovcd_policy_guest g[2] = { guest(c, 4 * GIB, 3 * GIB), guest(c, 4 * GIB, GIB) };
	struct ovcd_policy_decision d[2];
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;

	seen_quiet(&g[0], 60);
	seen_quiet(&g[1], 60);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.headroom_bytes, 2 * (4 * GIB / 5));
	assert_int_equal(out.level, OVC_HOST_PRESSURE);
	/* Back to high with the headroom counted, 3GiB - (3.5GiB - 1.6GiB), from
	 * a alone: the need bounds the step, not a percentage. */
	assert_int_equal(out.need_bytes, 3 * GIB - (3584 * MIB - 2 * (4 * GIB / 5)));
	assert_int_equal(d[0].action, OVC_ACTION_INFLATE);
	assert_int_equal(d[0].target_bytes, 4 * GIB - ALIGN_DOWN(out.need_bytes, MIB));
	assert_non_null(strstr(d[0].reason, "MemAvailable 3.5GiB less guests' headroom 1.5GiB < low 2GiB"));
	assert_int_equal(d[1].action, OVC_ACTION_NONE);
	assert_non_null(strstr(d[1].reason, "no spare"));

	/* The squeeze ends by itself: with a at what it keeps, nobody has
	 * spare, and nothing is taken however short the host. */
	g[0] = guest(c, 2 * GIB, 1200 * MIB); /* keeps 410 + 819MiB */
	seen_quiet(&g[0], 60);
	h = host_at(512 * MIB);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.level, OVC_HOST_PRESSURE);
	assert_int_equal(d[0].action, OVC_ACTION_NONE);
	assert_int_equal(d[1].action, OVC_ACTION_NONE);
	assert_int_equal(out.inflate_bytes, 0);

	/* Room: only a guest with less available than it keeps gets memory
	 * back; one with more would have it taken again at the next shortage. */
	g[0] = guest(c, 3 * GIB, 2 * GIB); /* keeps 614 + 819MiB */
	g[1] = guest(c, 3 * GIB, GIB);
	seen_quiet(&g[0], 60);
	seen_quiet(&g[1], 60);
	h = host_at(8 * GIB);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.level, OVC_HOST_ROOM);
	assert_int_equal(d[0].action, OVC_ACTION_NONE);
	assert_non_null(strstr(d[0].reason, "host has room, but it has more than it keeps"));
	assert_int_equal(d[1].action, OVC_ACTION_DEFLATE);

	/* Without it: MemAvailable alone, above high: room, both at max. */
	g[0] = guest(off, 4 * GIB, 3 * GIB);
	h = host_at(3584 * MIB);
	assert_ovc_ok(ovcd_policy_tick(off, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.headroom_bytes, 0);
	assert_int_equal(out.level, OVC_HOST_ROOM);
	assert_int_equal(d[0].action, OVC_ACTION_NONE);
}

/* The need goes to the guests with the most spare first (water-filling),
 * not to everyone in proportion. */
static void test_water_filling(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 2100MiB\n[balloon]\n" OLD_RULES "step = 256MiB\nguest_free = 0\n");
	struct ovcd_policy_host h = host_at(2000 * MIB); /* need 100MiB */
	struct ovcd_policy_guest g[2] = { guest(c, 4 * GIB, 600 * MIB), guest(c, 4 * GIB, 300 * MIB) };
	struct ovcd_policy_decision d[2];
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;

	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.need_bytes, 100 * MIB);
	/* All of it from the guest with 600MiB spare: it still has more
	 * spare afterwards than the other. */
	assert_int_equal(d[0].action, OVC_ACTION_INFLATE);
	assert_int_equal(d[0].target_bytes, 4 * GIB - 100 * MIB);
	assert_int_equal(d[1].action, OVC_ACTION_NONE);
	assert_non_null(strstr(d[1].reason, "others have more spare"));
	assert_int_equal(out.inflate_bytes, 100 * MIB);

	/* 400MiB: the first gives its step (256MiB), the second down to the
	 * same level of spare, 156MiB: 144MiB. */
	h = host_at(1700 * MIB);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(d[0].target_bytes, 4 * GIB - 256 * MIB);
	assert_int_equal(d[1].target_bytes, 4 * GIB - 144 * MIB);
	assert_int_equal(out.inflate_bytes, 400 * MIB);

	/* A need beyond every cap: each gives its cap (step or spare). */
	h = host_at(GIB);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(d[0].target_bytes, 4 * GIB - 256 * MIB);
	assert_int_equal(d[1].target_bytes, 4 * GIB - 256 * MIB);

	/* An idle guest gives first, even with less spare than a busy one:
	 * the second has not grown for a minute (idle_after 30s). */
	h = host_at(2000 * MIB);
	seen_quiet(&g[1], 60);
	seen_quiet(&g[0], 10);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_true(d[1].idle);
	assert_false(d[0].idle);
	assert_int_equal(d[1].action, OVC_ACTION_INFLATE);
	assert_int_equal(d[1].target_bytes, 4 * GIB - 100 * MIB);
	assert_non_null(strstr(d[1].reason, "; idle, spare 300MiB"));
	assert_int_equal(d[0].action, OVC_ACTION_NONE);
	assert_non_null(strstr(d[0].reason, "need met by others first"));
}

/* What a balloon is still taking counts toward the host's need: others are
 * not asked for it again. */
static void test_pending_counts(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 2100MiB\n[balloon]\n" OLD_RULES "step = 256MiB\n");
	struct ovcd_policy_host h = host_at(1900 * MIB); /* need 200MiB */
	struct ovcd_policy_guest g[2] = { guest(c, 4 * GIB, 3 * GIB), guest(c, 4 * GIB, 3 * GIB) };
	struct ovcd_policy_decision d[2];
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;

	g[0].target_bytes = 4 * GIB - 150 * MIB; /* actual still 4GiB: 150MiB pending */
	g[0].last_action_usec = NOW - SEC;       /* settling */
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.need_bytes, 200 * MIB);
	assert_int_equal(out.pending_bytes, 150 * MIB);
	assert_int_equal(d[0].action, OVC_ACTION_NONE);
	assert_int_equal(d[1].action, OVC_ACTION_INFLATE);
	assert_int_equal(d[1].target_bytes, 4 * GIB - 50 * MIB);
}

/* Lower priorities give first; higher priorities get back first. */
static void test_priorities(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 2100MiB\nkeep_headroom = no\n[balloon]\n" OLD_RULES "step = 256MiB\n"
		     "[guest \"low\"]\npriority = 10\n[guest \"high\"]\npriority = 90\n");
	struct ovcd_policy_guest g[3] = { guest(c, 4 * GIB, 3 * GIB), guest(c, 4 * GIB, 3 * GIB),
					 guest(c, 4 * GIB, 3 * GIB) };
	g[0].name = "high";
	g[1].name = "low";
	g[2].name = "stale";
	g[2].stats.stale = true;
	g[2].stats.available_bytes = U;
	for (int i = 0; i < 3; i++)
		ovcd_config_guest_settings(c, g[i].name, &g[i].settings);
	struct ovcd_policy_decision d[3];
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_host h = host_at(2000 * MIB);

	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 3, d, &out));
	assert_int_equal(d[1].action, OVC_ACTION_INFLATE);
	assert_int_equal(d[1].target_bytes, 4 * GIB - 100 * MIB);
	assert_int_equal(d[0].action, OVC_ACTION_NONE);
	assert_non_null(strstr(d[0].reason, "need met by others first"));
	assert_int_equal(d[2].action, OVC_ACTION_NONE);

	/* Room of 300MiB: the high priority guest first (a step), the rest
	 * to the low one. */
	_cleanup_(ovcd_config_freep) struct ovcd_config *c2 =
		conf("[host]\nlow = 2GiB\nhigh = 4GiB\nkeep_headroom = no\n[balloon]\n" OLD_RULES "step = 256MiB\n"
		     "[guest \"low\"]\npriority = 10\n[guest \"high\"]\npriority = 90\n");
	for (int i = 0; i < 3; i++) {
		g[i].target_bytes = g[i].stats.actual_bytes = 2 * GIB;
		ovcd_config_guest_settings(c2, g[i].name, &g[i].settings);
	}
	h = host_at(4 * GIB + 300 * MIB);
	assert_ovc_ok(ovcd_policy_tick(c2, &h, &ks, g, 2, d, &out));
	assert_int_equal(d[0].action, OVC_ACTION_DEFLATE);
	assert_int_equal(d[0].target_bytes, 2 * GIB + 256 * MIB);
	assert_int_equal(d[1].action, OVC_ACTION_DEFLATE);
	assert_int_equal(d[1].target_bytes, 2 * GIB + 44 * MIB);
	assert_int_equal(out.deflate_bytes, 300 * MIB);
}

/* KSM over several ticks: on when needed, boost under pressure, off when it
 * does not pay, back after retry_after. */
/* An engine-only guest as balloon-driver/ovc.c gives it: 4GiB, no guest
 * figures, @zero shared, nothing swapped, target @target. */
static struct ovcd_policy_guest engine_guest(const struct ovcd_config *c, const char *name, uint64_t zero,
					    uint64_t target)
{
	struct ovcd_policy_guest g = guest(c, 4 * GIB, 0);

	g.name = name;
	g.kind = OVC_DRIVER_ENGINE;
	g.stats.actual_bytes = g.stats.max_bytes;
	g.stats.total_bytes = g.stats.available_bytes = g.stats.major_faults = g.stats.swap_in_bytes = U;
	g.stats.engine_zero_bytes = zero;
	g.stats.engine_swap_bytes = 0;
	g.stats.engine_target_bytes = target;
	g.stats.engine_swap_in_bytes = 0;
	g.prev = g.stats;
	g.prev.collected_usec = NOW - 2 * SEC;
	ovcd_config_guest_settings(c, name, &g.settings);
	return g;
}

/* Engines: the need left after balloons goes to the lowest priority
 * first; what balloons cover is not swapped; over ticks a target climbs
 * step by step as the engine reaches it, stops at the swap cap, holds in
 * the steady band and comes down with room. */
static void test_engines(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 2100MiB\n[balloon]\n" OLD_RULES "[swap]\nstep = 64MiB\nmax = 256MiB\n"
		     "[guest \"low\"]\npriority = 10\n[guest \"high\"]\npriority = 90\n");
	struct ovcd_policy_guest g[3] = { engine_guest(c, "high", GIB, 0), engine_guest(c, "low", GIB, 0),
					 guest(c, 4 * GIB, 3 * GIB) };
	struct ovcd_policy_decision d[3];
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_host h = host_at(2000 * MIB); /* need 100MiB to high */

	/* Engines alone: the low priority one gives a whole step first, the
	 * high one only the rest of the need. */
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(d[1].reclaim_action, OVC_ACTION_RECLAIM);
	assert_int_equal(d[1].reclaim_target_bytes, GIB + 64 * MIB);
	assert_int_equal(d[0].reclaim_action, OVC_ACTION_RECLAIM);
	assert_int_equal(d[0].reclaim_target_bytes, GIB + 36 * MIB);
	assert_int_equal(out.reclaim_bytes, 100 * MIB); /* the need, exactly */
	/* With a balloon guest beside them that covers the need: no swap. */
	g[2].name = "balloon";
	ovcd_config_guest_settings(c, "balloon", &g[2].settings);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 3, d, &out));
	assert_int_equal(d[2].action, OVC_ACTION_INFLATE);
	assert_int_equal(d[0].reclaim_action, OVC_ACTION_NONE);
	assert_int_equal(d[1].reclaim_action, OVC_ACTION_NONE);
	assert_non_null(strstr(d[1].reason, "balloons cover the need"));

	/* One engine over ticks under deep pressure: it climbs a step at a
	 * time as it gets there, never past zero + [swap] max. */
	struct ovcd_policy_guest e = engine_guest(c, "e", GIB, 0);
	h = host_at(GIB);
	uint64_t seen_max = 0;
	for (int tick = 0; tick < 10; tick++) {
		h.now_usec = NOW + (uint64_t)tick * 5 * SEC;
		e.stats.collected_usec = h.now_usec;
		assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &e, 1, d, &out));
		assert_true(d[0].reclaim_target_bytes <= GIB + 256 * MIB);
		assert_true(d[0].reclaim_target_bytes <= MAX(e.stats.engine_target_bytes,
							     GIB + e.stats.engine_swap_bytes + 64 * MIB));
		seen_max = MAX(seen_max, d[0].reclaim_target_bytes);
		/* The engine reaches its target by the next tick. */
		e.prev = e.stats;
		e.stats.engine_target_bytes = d[0].reclaim_target_bytes;
		e.stats.engine_swap_bytes = d[0].reclaim_target_bytes - GIB;
	}
	assert_int_equal(seen_max, GIB + 256 * MIB);
	assert_non_null(strstr(d[0].reason, "swap cap reached"));

	/* An engine whose regions are smaller than the max it publishes: the
	 * cap is its RAM (the engine refuses a target beyond, -ENOSPC), and a
	 * target above it comes back at once. */
	struct ovcd_policy_guest small = engine_guest(c, "small", GIB, 0);
	small.stats.engine_region_bytes = GIB + 100 * MIB + 4096;
	h = host_at(GIB);
	seen_max = 0;
	for (int tick = 0; tick < 10; tick++) {
		h.now_usec = NOW + (uint64_t)tick * 5 * SEC;
		small.stats.collected_usec = h.now_usec;
		assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &small, 1, d, &out));
		assert_true(d[0].reclaim_target_bytes <= small.stats.engine_region_bytes);
		seen_max = MAX(seen_max, d[0].reclaim_target_bytes);
		small.prev = small.stats;
		small.stats.engine_target_bytes = d[0].reclaim_target_bytes;
		small.stats.engine_swap_bytes = d[0].reclaim_target_bytes - GIB;
	}
	assert_int_equal(seen_max, GIB + 100 * MIB);
	small.stats.engine_target_bytes = 2 * GIB;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &small, 1, d, &out));
	assert_int_equal(d[0].reclaim_target_bytes, GIB + 100 * MIB);

	/* Steady: it holds. Room: it comes down a step per tick to 0. */
	h = host_at(2050 * MIB);
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &e, 1, d, &out));
	assert_int_equal(d[0].reclaim_action, OVC_ACTION_NONE);
	assert_int_equal(d[0].reclaim_target_bytes, GIB + 256 * MIB);
	h = host_at(8 * GIB);
	for (int tick = 0; tick < 10 && e.stats.engine_target_bytes; tick++) {
		assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &e, 1, d, &out));
		assert_int_equal(d[0].reclaim_action, OVC_ACTION_RELEASE);
		assert_true(d[0].reclaim_target_bytes < e.stats.engine_target_bytes);
		assert_true(e.stats.engine_target_bytes - d[0].reclaim_target_bytes <= 64 * MIB ||
			    d[0].reclaim_target_bytes == 0);
		e.stats.engine_target_bytes = d[0].reclaim_target_bytes;
	}
	assert_int_equal(e.stats.engine_target_bytes, 0);
}

static void test_ksm_steering(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 4GiB\n[balloon]\n" OLD_RULES "[ksm]\nidle_ticks = 3\nretry_after = 60s\n");
	struct ovcd_policy_guest g = guest(c, 4 * GIB, 3 * GIB);
	struct ovcd_policy_decision d;
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_host h = host_at(12 * GIB);

	h.ksm_valid = true;
	h.ksm_knobs = (struct ovcd_ksm_knobs){ .run = 1, .pages_to_scan = 100, .sleep_millisecs = 20 };
	/* 4GiB committed on 16GiB, 12GiB available: not needed → off. */
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(out.ksm.run, 0);
	assert_int_equal(out.ksm.use_zero_pages, 1); /* config: on */
	assert_true(out.ksm_change);
	assert_false(out.ksm_state.on);
	assert_non_null(strstr(out.ksm_reason, "KSM off: not needed"));

	/* 15GiB committed: on, at the minimum rate (decay from min). */
	h.ksm_knobs.use_zero_pages = 0;
	g.stats.actual_bytes = 15 * GIB;
	g.stats.max_bytes = 15 * GIB;
	g.target_bytes = 15 * GIB;
	h.mem.available_bytes = 5 * GIB; /* threshold 20% = 3.2GiB */
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(out.ksm.run, 1);
	assert_int_equal(out.ksm.pages_to_scan, 64);
	assert_int_equal(out.ksm.sleep_millisecs, 10);
	assert_int_equal(out.ksm.use_zero_pages, 1);
	assert_true(out.ksm_state.on);
	ks = out.ksm_state;

	/* MemAvailable under the threshold: boost by 300 per tick. */
	h.mem.available_bytes = 3 * GIB;
	h.ksm_knobs = out.ksm;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(out.ksm.pages_to_scan, 364);
	ks = out.ksm_state;
	h.ksm_knobs = out.ksm;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(out.ksm.pages_to_scan, 664);
	ks = out.ksm_state;
	h.ksm_knobs = out.ksm;
	assert_false(out.ksm_change == false && out.ksm.pages_to_scan != 664);

	/* Full scans go by with no profit: off after idle_ticks (3). */
	h.ksm.full_scans = 5;
	h.ksm.has_general_profit = true;
	h.ksm.general_profit = 0;
	for (int t = 0; t < 2; t++) {
		assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
		assert_int_equal(out.ksm.run, 1);
		assert_int_equal(out.ksm_state.idle_ticks, (uint32_t)t + 1);
		ks = out.ksm_state;
		h.ksm_knobs = out.ksm;
	}
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(out.ksm.run, 0);
	assert_true(out.ksm_change);
	assert_int_equal(out.ksm_state.off_until_usec, NOW + 60 * SEC);
	assert_non_null(strstr(out.ksm_reason, "KSM off: does not pay"));
	ks = out.ksm_state;
	h.ksm_knobs = out.ksm;

	/* Backing off, then back on after retry_after. */
	h.now_usec = NOW + 30 * SEC;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(out.ksm.run, 0);
	assert_false(out.ksm_change);
	assert_non_null(strstr(out.ksm_reason, "30s left"));
	ks = out.ksm_state;
	h.now_usec = NOW + 61 * SEC;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(out.ksm.run, 1);
	assert_int_equal(out.ksm_state.full_scans_at_on, 5);
	ks = out.ksm_state;
	h.ksm_knobs = out.ksm;

	/* Profit that grows, or is above min_profit, keeps it on. */
	h.ksm.full_scans = 6;
	for (int t = 0; t < 5; t++) {
		h.ksm.general_profit += 1 * MIB; /* growing, though small */
		assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
		assert_int_equal(out.ksm.run, 1);
		assert_int_equal(out.ksm_state.idle_ticks, 0);
		ks = out.ksm_state;
	}
	h.ksm.general_profit = 64 * MIB; /* steady but worth it */
	for (int t = 0; t < 5; t++) {
		assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
		assert_int_equal(out.ksm.run, 1);
		ks = out.ksm_state;
	}

	/* The advisor owns pages_to_scan: a different rate is no change. */
	h.ksm_knobs = out.ksm;
	h.ksm_knobs.advisor_scan_time = true;
	h.ksm_knobs.pages_to_scan = 5000;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_false(out.ksm_change);

	/* Not managed: no change, whatever the state. */
	_cleanup_(ovcd_config_freep) struct ovcd_config *off = conf("[ksm]\nenable = no\n");
	assert_ovc_ok(ovcd_policy_tick(off, &h, &ks, &g, 1, &d, &out));
	assert_false(out.ksm_change);
	assert_string_equal(out.ksm_reason, "KSM not managed ([ksm] enable = no)");
	h.ksm_valid = false;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_false(out.ksm_change);
	assert_string_equal(out.ksm_reason, "no KSM on this host");
}

/* Random hosts, guests and garbage statistics, deterministic seed: the
 * invariants hold for every decision, whatever the input. */
static uint64_t rand_size(uint64_t *s, uint64_t max)
{
	switch (xorshift64(s) % 8) {
	case 0:
		return U;
	case 1:
		return xorshift64(s); /* garbage */
	case 2:
		return 0;
	default:
		return max ? xorshift64(s) % (max + max / 4 + 1) : 0;
	}
}

static void test_random_invariants(void **state)
{
	static const char *const confs[] = {
		base_conf,
		"[balloon]\n" OLD_RULES "step = 1%\nfloor = 90%\nemergency_step = 100%\n"
		"[guest \"g3*\"]\nnever_balloon = yes\n[guest \"g4*\"]\nfloor = 0\npriority = 0\n",
		"[host]\nlow = 50%\nhigh = 60%\n[balloon]\n" OLD_RULES "guest_free = 0\nmin_change = 0\n"
		"[guest \"g1*\"]\nstep = 100%\npriority = 100\n",
	};
	uint64_t seed = 0x1234567887654321u;
	enum { N = 8 };

	for (size_t ci = 0; ci < ARRAY_SIZE(confs); ci++) {
		_cleanup_(ovcd_config_freep) struct ovcd_config *c = conf(confs[ci]);
		struct ovcd_policy_ksm_state ks = { 0 };
		for (unsigned iter = 0; iter < 3000; iter++) {
			struct ovcd_policy_host h = host_at(xorshift64(&seed) % (17 * GIB));
			h.now_usec = NOW + iter * 5 * SEC;
			h.psi_valid = xorshift64(&seed) % 2;
			h.psi.some.avg10_basis_points = (uint32_t)(xorshift64(&seed) % 3000);
			h.psi.full.avg10_basis_points = (uint32_t)(xorshift64(&seed) % 1000);
			h.ksm_valid = xorshift64(&seed) % 2;
			h.ksm.full_scans = iter / 3;
			h.ksm.general_profit = (int64_t)(xorshift64(&seed) % (64 * MIB)) - (int64_t)(8 * MIB);
			h.ksm.has_general_profit = true;
			h.ksm_knobs.use_zero_pages = (int32_t)(xorshift64(&seed) % 3) - 1;
			struct ovcd_policy_guest g[N];
			struct ovcd_policy_decision d[N];
			char names[N][8];
			for (int i = 0; i < N; i++) {
				uint64_t max = (xorshift64(&seed) % 4 == 0) ? rand_size(&seed, 8 * GIB)
									 : (1 + xorshift64(&seed) % 8) * GIB;
				snprintf(names[i], sizeof(names[i]), "g%d", i);
				g[i] = guest(c, 0, 0);
				g[i].name = names[i];
				g[i].kind = xorshift64(&seed) % 5 == 0 ? OVC_DRIVER_ENGINE : OVC_DRIVER_LIBVIRT;
				g[i].stats.max_bytes = max;
				g[i].target_bytes = rand_size(&seed, ovcd_known(max) ? max : GIB);
				g[i].stats.actual_bytes = rand_size(&seed, ovcd_known(max) ? max : GIB);
				g[i].stats.total_bytes = rand_size(&seed, ovcd_known(max) ? max : GIB);
				g[i].stats.available_bytes = rand_size(&seed, ovcd_known(max) ? max : GIB);
				g[i].stats.major_faults = rand_size(&seed, 100000);
				g[i].stats.swap_in_bytes = rand_size(&seed, GIB);
				g[i].engine = g[i].kind == OVC_DRIVER_LIBVIRT && xorshift64(&seed) % 4 == 0;
				g[i].stats.engine_swap_bytes = rand_size(&seed, GIB);
				g[i].stats.engine_zero_bytes = rand_size(&seed, 2 * GIB);
				g[i].stats.engine_target_bytes = rand_size(&seed, 3 * GIB);
				g[i].stats.engine_swap_in_bytes = rand_size(&seed, GIB);
				g[i].prev.engine_swap_in_bytes = rand_size(&seed, GIB);
				g[i].stats.rss_bytes = rand_size(&seed, 8 * GIB);
				g[i].stats.stale = xorshift64(&seed) % 4 == 0;
				g[i].prev.major_faults = rand_size(&seed, 100000);
				g[i].prev.swap_in_bytes = rand_size(&seed, GIB);
				g[i].prev.collected_usec = xorshift64(&seed) % 3 ? h.now_usec - 5 * SEC : 0;
				g[i].stats.collected_usec = h.now_usec;
				g[i].last_action_usec = xorshift64(&seed) % 3 ? 0 : h.now_usec - xorshift64(&seed) % (60 * SEC);
				g[i].last_emergency_usec = xorshift64(&seed) % 3 ? 0 : g[i].last_action_usec;
				g[i].emergency_count = (uint32_t)(xorshift64(&seed) % 3 ? xorshift64(&seed) % 6 : xorshift64(&seed));
				ovcd_config_guest_settings(c, names[i], &g[i].settings);
			}
			struct ovcd_policy_out out, out2;
			struct ovcd_policy_decision d2[N];
			struct ovcd_policy_guest g_copy[N];
			struct ovcd_policy_host h_copy = h;
			struct ovcd_policy_ksm_state ks_copy = ks;
			memcpy(g_copy, g, sizeof(g));
			memset(d, 0xa5, sizeof(d));
			memset(d2, 0x5a, sizeof(d2));
			memset(&out, 0xa5, sizeof(out));
			memset(&out2, 0x5a, sizeof(out2));
			assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, N, d, &out));
			/* Pure: inputs untouched, and the same inputs give the
			 * same outputs, whatever was in the output buffers. */
			assert_memory_equal(g, g_copy, sizeof(g));
			assert_memory_equal(&h, &h_copy, sizeof(h));
			assert_memory_equal(&ks, &ks_copy, sizeof(ks));
			assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, N, d2, &out2));
			for (int i = 0; i < N; i++) {
				assert_int_equal(d[i].action, d2[i].action);
				assert_int_equal(d[i].target_bytes, d2[i].target_bytes);
				assert_int_equal(d[i].reclaim_action, d2[i].reclaim_action);
				assert_int_equal(d[i].reclaim_target_bytes, d2[i].reclaim_target_bytes);
				assert_int_equal(d[i].emergency_count, d2[i].emergency_count);
				assert_string_equal(d[i].reason, d2[i].reason);
			}
			assert_string_equal(out.reason, out2.reason);
			assert_string_equal(out.ksm_reason, out2.ksm_reason);
			assert_memory_equal(&out.ksm, &out2.ksm, sizeof(out.ksm));
			assert_memory_equal(&out.ksm_state, &out2.ksm_state, sizeof(out.ksm_state));
			assert_int_equal(out.need_bytes, out2.need_bytes);
			assert_int_equal(out.inflate_bytes, out2.inflate_bytes);
			ks = out.ksm_state;
			for (int i = 0; i < N; i++) {
				uint64_t max = g[i].stats.max_bytes;
				/* No maximum, or one no VM can have: left alone. */
				if (!ovcd_known(max) || max == 0 || max > OVC_GUEST_BYTES_MAX) {
					assert_int_equal(d[i].action, OVC_ACTION_NONE);
					continue;
				}
				uint64_t old = g[i].target_bytes && ovcd_known(g[i].target_bytes)
						       ? MIN(g[i].target_bytes, max) : max;
				uint64_t step = MAX(ovcd_conf_size_bytes(&g[i].settings.step, max), MIB);
				assert_true(d[i].action <= OVC_ACTION_RELEASE);
				assert_true(d[i].reclaim_action <= OVC_ACTION_RELEASE);
				assert_true(d[i].target_bytes <= max);
				assert_true(d[i].reason[0] != '\0');
				if (d[i].target_bytes < old) {
					assert_int_equal(d[i].action, OVC_ACTION_INFLATE);
					assert_true(d[i].target_bytes >= d[i].floor_bytes);
					assert_true(old - d[i].target_bytes <= step);
					assert_false(g[i].stats.stale);
					assert_true(ovcd_known(g[i].stats.available_bytes));
					assert_false(d[i].guest_pressure);
					assert_true(g[i].kind != OVC_DRIVER_ENGINE);
				}
				if (d[i].action == OVC_ACTION_EMERGENCY && g[i].kind != OVC_DRIVER_ENGINE)
					assert_true(d[i].target_bytes > old && d[i].emergency_count >= 1);
				/* The streak only grows by an emergency; no last
				 * emergency, no streak. */
				if (d[i].action != OVC_ACTION_EMERGENCY && d[i].reclaim_action != OVC_ACTION_EMERGENCY)
					assert_true(d[i].emergency_count <= MAX(g[i].emergency_count, 1));
				if (!g[i].last_emergency_usec)
					assert_true(d[i].emergency_count <= 1);
				if (g[i].settings.never_balloon && g[i].kind != OVC_DRIVER_ENGINE &&
				    c->balloon.enable)
					assert_int_equal(d[i].target_bytes, max);
				/* An engine's target rises only under host
				 * pressure, by at most a swap step over what it
				 * gives back, never past the swap cap, never for
				 * never_swap; only engines get one. */
				uint64_t etarget = ovcd_known(g[i].stats.engine_target_bytes) ? g[i].stats.engine_target_bytes : 0;
				if (!g[i].engine && g[i].kind != OVC_DRIVER_ENGINE)
					assert_int_equal(d[i].reclaim_action, OVC_ACTION_NONE);
				if (d[i].reclaim_action == OVC_ACTION_NONE && (g[i].engine || g[i].kind == OVC_DRIVER_ENGINE))
					assert_int_equal(d[i].reclaim_target_bytes, etarget);
				if (d[i].reclaim_target_bytes > etarget) {
					uint64_t zero = ovcd_known(g[i].stats.engine_zero_bytes) ? MIN(g[i].stats.engine_zero_bytes, max) : 0;
					uint64_t held = zero + (ovcd_known(g[i].stats.engine_swap_bytes) ? MIN(g[i].stats.engine_swap_bytes, max - zero) : 0);
					assert_int_equal(d[i].reclaim_action, OVC_ACTION_RECLAIM);
					assert_int_equal(out.level, OVC_HOST_PRESSURE);
					assert_false(g[i].settings.never_swap);
					assert_false(d[i].guest_pressure);
					assert_true(d[i].reclaim_target_bytes <= held + MAX(ovcd_conf_size_bytes(&c->swap.step, max), MIB));
					assert_true(d[i].reclaim_target_bytes <= zero + ovcd_conf_size_bytes(&c->swap.max, max));
				}
				if (d[i].reclaim_action == OVC_ACTION_RELEASE)
					assert_true(d[i].reclaim_target_bytes < etarget && out.level == OVC_HOST_ROOM);
				if (g[i].kind == OVC_DRIVER_ENGINE)
					assert_int_equal(d[i].target_bytes, old);
			}
			if (out.ksm_change)
				assert_true(h.ksm_valid && c->ksm.enable);
			assert_true(out.ksm_state.pages_to_scan <= c->ksm.max_pages_to_scan);
		}
	}
}

/* ---- the rules of the learned headroom, relief and compliance ---- */

/* The defaults, but for the watermarks and step of the other tables. */
static const char new_conf[] = "[host]\nlow = 2GiB\nhigh = 4GiB\nkeep_headroom = no\n[balloon]\nstep = 256MiB\n";

enum prep {
	P_NONE,
	P_BURST_1G,        /* learned a 1GiB burst just now */
	P_BURST_2G_600S,   /* learned a 2GiB burst ten minutes ago: halved */
	P_FALL_450,        /* used memory rose 450MiB since the update 1s ago */
	P_SEEN_SAME,       /* seen 1s ago with the same figures */
	P_OOM_COUNTED,     /* the guest's OOM kill counter went up */
	P_OOM_GUESSED,     /* 1s ago: 40MiB available, now ~1GiB more */
	P_OOM_600S,        /* OOM kill 10 minutes ago */
	P_OOM_3700S,       /* OOM kill an hour and more ago */
	P_STALLS,          /* 5 allocation stalls in 1s */
	P_RECLAIM,         /* 1000 pages reclaimed directly in 1s */
	P_SHORT_600S,      /* ran short 10 minutes ago at 3GiB */
	P_STUCK_40S,       /* balloon 1GiB above its target, not moved for 40s */
	P_MOVING,          /* ... but it moved 200MiB since */
	P_FPR,             /* free page reporting, 1.5GiB free */
	P_IDLE,            /* used memory flat for a minute */
	P_RELIEVED,        /* emergency deflate after these stats */
	P_RSS_600M,        /* the VMM holds 600MiB: 200MiB beyond what is used */
	P_FALL_MOVED,      /* as P_FALL_450, but the balloon moved 512MiB since */
	P_FREED_TIGHT,     /* 1s ago: 100MiB available, steady, a 1GiB burst learned;
			    * now 924MiB less used (a free, no OOM counter) */
	P_OOM_FALLING,     /* 1s ago: 300MiB available falling 400MiB/s; now
			    * 724MiB less used, available up as much */
	P_INFLATE_COLD,    /* the balloon took 512MiB since the update 1s ago,
			    * the VMM's RSS (3GiB) did not fall */
	P_INFLATE_WARM,    /* ... and the RSS fell by as much */
	P_BURST_2G_60S,    /* learned a 2GiB burst a minute ago: still held */
	P_FAST_500,        /* grew 500MiB/s 10s ago */
	P_SELF_DEFLATED,   /* 1s ago: 0 available, the balloon moved the update
			    * before; now 700MiB less used, available up as much */
	P_FREED_PART,      /* 1s ago 300MiB available; now 700MiB freed of a
			    * 1.2GiB run, burst 1.2GiB learned a minute ago */
	P_FREED_ALL,       /* ... the 700MiB freed were its whole run */
};

static const struct kat2 {
	const char *what;
	uint64_t host_avail, target, avail;
	enum prep prep;
	enum ovcd_policy_action action;
	uint64_t new_target;
	const char *reason;      /* exact, or NULL */
	const char *reason_part; /* or NULL */
} kats2[] = {
	/* guest_free 20% of 4GiB + headroom 20% of max: 1.6GiB kept. */
	{ "headroom: only what is above guest_free + headroom is spare", GIB, 4 * GIB, 2 * GIB, P_NONE,
	  OVC_ACTION_INFLATE, 3840 * MIB, NULL, "inflate by 256MiB to 3.7GiB: host pressure (MemAvailable 1GiB < low 2GiB); spare 409MiB" },
	{ "headroom: never inflated into it", GIB, 4 * GIB, 1600 * MIB, P_NONE, OVC_ACTION_NONE, 4 * GIB,
	  "host pressure, no spare: available 1.5GiB, keeps 1.5GiB", NULL },
	{ "a learned burst above headroom is kept", GIB, 4 * GIB, 2 * GIB, P_BURST_1G, OVC_ACTION_INFLATE,
	  4 * GIB - 204 * MIB, NULL, "spare 204MiB" },
	{ "a learned burst halves every headroom_decay", GIB, 4 * GIB, 2 * GIB, P_BURST_2G_600S,
	  OVC_ACTION_INFLATE, 4 * GIB - 204 * MIB, NULL, "spare 204MiB" },
	{ "falling fast: distress before it runs out, deflated to what it needs", 3 * GIB, 2 * GIB,
	  500 * MIB, P_FALL_450, OVC_ACTION_EMERGENCY, 3308 * MIB,
	  "emergency deflate by 1.2GiB to 3.2GiB: available 500MiB falling 450MiB/s, below 64MiB within 2s",
	  NULL },
	{ "available below the absolute emergency_available", 3 * GIB, 2 * GIB, 50 * MIB, P_SEEN_SAME,
	  OVC_ACTION_EMERGENCY, 3227 * MIB, "emergency deflate by 1.1GiB to 3.1GiB: available 50MiB < 64MiB",
	  NULL },
	{ "100MiB available and steady is no distress (it was under 5%)", 3 * GIB, 2 * GIB, 100 * MIB,
	  P_SEEN_SAME, OVC_ACTION_NONE, 2 * GIB, NULL, "host steady" },
	{ "OOM kill counted by the guest", 3 * GIB, 2 * GIB, GIB, P_OOM_COUNTED, OVC_ACTION_EMERGENCY,
	  3 * GIB, "emergency deflate by 1GiB to 3GiB: OOM kill in the guest", NULL },
	{ "OOM kill guessed: nearly out, then much less used", 3 * GIB, 2 * GIB, GIB, P_OOM_GUESSED,
	  OVC_ACTION_EMERGENCY, 3 * GIB,
	  "emergency deflate by 1GiB to 3GiB: OOM kill in the guest (used memory fell by 984MiB)", NULL },
	{ "OOM cooldown: not inflated for an hour", GIB, 4 * GIB, 3 * GIB, P_OOM_600S, OVC_ACTION_NONE,
	  4 * GIB, "host pressure, OOM kill 600s ago: not inflated for 3600s", NULL },
	{ "after the OOM cooldown: inflated again", GIB, 4 * GIB, 3 * GIB, P_OOM_3700S,
	  OVC_ACTION_INFLATE, 3840 * MIB, NULL, NULL },
	{ "allocation stalls", 3 * GIB, 2 * GIB, GIB, P_STALLS, OVC_ACTION_EMERGENCY, 3 * GIB,
	  "emergency deflate by 1GiB to 3GiB: allocation stalls 5/s >= 1/s", NULL },
	{ "allocation stalls with more available than it keeps: not distress", 3 * GIB, 2 * GIB,
	  1536 * MIB, P_STALLS, OVC_ACTION_NONE, 2 * GIB, NULL, "host steady" },
	{ "direct reclaim", 3 * GIB, 2 * GIB, GIB, P_RECLAIM, OVC_ACTION_EMERGENCY, 3 * GIB,
	  "emergency deflate by 1GiB to 3GiB: direct reclaim 1000 pages/s >= 256/s", NULL },
	{ "ran short: no inflate below the raised floor, which halves every short_decay", GIB,
	  2148 * MIB, 2 * GIB, P_SHORT_600S, OVC_ACTION_INFLATE, 2 * GIB, NULL, "inflate by 100MiB to 2GiB" },
	{ "at the raised floor: not inflated, but not raised to it either (the floor is the hard one)",
	  GIB, 2 * GIB, 2 * GIB, P_SHORT_600S, OVC_ACTION_NONE, 2 * GIB,
	  "host pressure, at floor 2GiB raised after it ran short", NULL },
	{ "below the raised floor (an operator's target): left there", 3 * GIB, 1536 * MIB, GIB,
	  P_SHORT_600S, OVC_ACTION_NONE, 1536 * MIB, NULL, "host steady" },
	{ "non-compliant balloon: not inflated, its debt not counted", GIB, 3 * GIB, 3 * GIB, P_STUCK_40S,
	  OVC_ACTION_NONE, 3 * GIB,
	  "host pressure, non-compliant: balloon at 4GiB, target 3GiB, not moved for 40s: not counted, not inflated",
	  NULL },
	{ "a balloon that moves is not non-compliant", GIB, 3 * GIB, 3 * GIB, P_MOVING, OVC_ACTION_INFLATE,
	  3 * GIB - 256 * MIB, NULL, NULL },
	{ "free page reporting: free memory already back is not spare", GIB, 4 * GIB, 2560 * MIB, P_FPR,
	  OVC_ACTION_NONE, 4 * GIB, "host pressure, its free 1.5GiB already back through free page reporting",
	  NULL },
	{ "idle for a minute: said so", GIB, 4 * GIB, 2 * GIB, P_IDLE, OVC_ACTION_INFLATE, 3840 * MIB, NULL,
	  "; idle, spare 409MiB" },
	{ "stats from before the last emergency call for no other", GIB, 2 * GIB, 50 * MIB, P_RELIEVED,
	  OVC_ACTION_NONE, 2 * GIB, NULL, "host pressure" },
	{ "the balloon moved since the last update: no growth measured (its own pages are not a burst)",
	  3 * GIB, 2 * GIB, 500 * MIB, P_FALL_MOVED, OVC_ACTION_NONE, 2 * GIB, NULL, "host steady" },
	{ "memory never touched is not resident: only RSS beyond used memory is spare", GIB, 2 * GIB,
	  1648 * MIB, P_RSS_600M, OVC_ACTION_INFLATE, 2 * GIB - 200 * MIB, NULL, "spare 200MiB" },
	{ "a tightly ballooned guest that frees memory by itself is no OOM kill; the free is spare at once",
	  3 * GIB, 2 * GIB, GIB, P_FREED_TIGHT, OVC_ACTION_NONE, 2 * GIB, NULL, "host steady" },
	{ "OOM kill guessed: falling fast at the last update, then used fell and available rose as much",
	  3 * GIB, 2 * GIB, GIB, P_OOM_FALLING, OVC_ACTION_EMERGENCY, 3 * GIB,
	  "emergency deflate by 1GiB to 3GiB: OOM kill in the guest (used memory fell by 724MiB)", NULL },
	{ "an inflate that did not lower the VMM's RSS: the rest is not resident either", GIB, 3 * GIB,
	  2 * GIB, P_INFLATE_COLD, OVC_ACTION_NONE, 3 * GIB,
	  "host pressure, its free memory is not resident on the host (RSS 3GiB)", NULL },
	{ "an inflate that lowered the VMM's RSS as much: inflated on", GIB, 3 * GIB, 2 * GIB,
	  P_INFLATE_WARM, OVC_ACTION_INFLATE, 3 * GIB - 256 * MIB, NULL, NULL },
	{ "a learned burst a minute old is still held (it halves over ten minutes)", GIB, 4 * GIB, 3 * GIB,
	  P_BURST_2G_60S, OVC_ACTION_INFLATE, 4 * GIB - 256 * MIB, NULL, "spare 307MiB" },
	{ "a guest seen growing 500MiB/s keeps two stats periods of it", GIB, 4 * GIB, 2 * GIB, P_FAST_500,
	  OVC_ACTION_INFLATE, 4 * GIB - 237 * MIB, NULL, "spare 237MiB" },
	{ "the update after a balloon move: used falling is the figures catching up, no OOM kill", 3 * GIB,
	  2 * GIB, 700 * MIB, P_SELF_DEFLATED, OVC_ACTION_NONE, 2 * GIB, NULL, "host steady" },
	{ "a free of part of its run: the guest keeps its learned burst", GIB, 4 * GIB, 3 * GIB, P_FREED_PART,
	  OVC_ACTION_INFLATE, 4 * GIB - 256 * MIB, NULL, "spare 1GiB" },
	{ "a free of its whole run: the burst goes with it, the free is spare", GIB, 4 * GIB, 3 * GIB,
	  P_FREED_ALL, OVC_ACTION_INFLATE, 4 * GIB - 256 * MIB, NULL, "spare 1.4GiB" },
	{ "nothing resident beyond used memory: nothing to gain", GIB, 2 * GIB, 1648 * MIB, P_RSS_600M,
	  OVC_ACTION_NONE, 2 * GIB, "host pressure, its free memory is not resident on the host (RSS 400MiB)",
	  NULL },
};

static struct ovcd_policy_guest prep_guest(const struct ovcd_config *c, const struct kat2 *k)
{
	struct ovcd_policy_guest g = guest(c, k->target, k->avail);
	struct ovcd_policy_guest_state *s = &g.state;
	uint64_t used = k->target - k->avail;

	/* Seen 1s ago with the same figures, unless the row says otherwise. */
	if (k->prep != P_NONE) {
		s->seen_usec = NOW - SEC;
		s->seen_used_bytes = used;
		s->seen_avail_bytes = k->avail;
		s->seen_actual_bytes = k->target;
		s->busy_usec = NOW - 10 * SEC;
		s->seen_oom_kills = s->seen_alloc_stalls = s->seen_direct_reclaims = U;
		s->low_used_bytes = used; /* no run */
	}
	switch (k->prep) {
	case P_BURST_1G:
		s->burst_bytes = GIB;
		s->burst_usec = NOW;
		s->low_used_bytes = used - GIB; /* it holds the run */
		break;
	case P_BURST_2G_600S:
	case P_BURST_2G_60S:
		s->burst_bytes = 2 * GIB;
		s->burst_usec = NOW - (k->prep == P_BURST_2G_600S ? 600 : 60) * SEC;
		s->low_used_bytes = used - 256 * MIB; /* it holds part of the run */
		break;
	case P_FAST_500:
		s->peak_rate_bytes = 500 * MIB;
		s->peak_rate_usec = NOW - 10 * SEC;
		s->low_used_bytes = used - 512 * MIB; /* it holds what it took */
		break;
	case P_SELF_DEFLATED:
	case P_FREED_PART:
	case P_FREED_ALL:
		s->seen_avail_bytes = k->prep == P_SELF_DEFLATED ? 0 : 300 * MIB;
		s->seen_used_bytes = used + 700 * MIB;
		s->burst_bytes = 1200 * MIB;
		s->burst_usec = NOW - 60 * SEC;
		/* Its run began 1.2GiB (or 700MiB) below where it was. */
		s->low_used_bytes = used + 700 * MIB - (k->prep == P_FREED_PART ? 1200 * MIB : 700 * MIB);
		s->moved_before = k->prep == P_SELF_DEFLATED;
		break;
	case P_FALL_450:
	case P_FALL_MOVED:
		s->seen_used_bytes = s->low_used_bytes = used - 450 * MIB;
		s->seen_avail_bytes = k->avail + 450 * MIB;
		if (k->prep == P_FALL_MOVED)
			s->seen_actual_bytes = k->target + 512 * MIB;
		break;
	case P_OOM_COUNTED:
		s->seen_oom_kills = 0;
		g.stats.oom_kills = 1;
		break;
	case P_OOM_GUESSED:
		s->seen_avail_bytes = 40 * MIB;
		s->seen_used_bytes = k->target - 40 * MIB;
		break;
	case P_OOM_600S:
		s->oom_usec = NOW - 600 * SEC;
		break;
	case P_OOM_3700S:
		s->oom_usec = NOW - 3700 * SEC;
		break;
	case P_STALLS:
		s->seen_alloc_stalls = 10;
		g.stats.alloc_stalls = 15;
		break;
	case P_RECLAIM:
		s->seen_direct_reclaims = 5000;
		g.stats.direct_reclaims = 6000;
		break;
	case P_SHORT_600S:
		s->short_floor_bytes = 3 * GIB;
		s->short_usec = NOW - 600 * SEC;
		break;
	case P_STUCK_40S:
	case P_MOVING:
		g.stats.actual_bytes = g.stats.total_bytes = 4 * GIB;
		g.stats.available_bytes = 3 * GIB;
		s->seen_used_bytes = s->low_used_bytes = GIB;
		s->seen_actual_bytes = 4 * GIB;
		s->stuck_usec = NOW - 40 * SEC;
		s->stuck_actual_bytes = k->prep == P_MOVING ? 4 * GIB + 200 * MIB : 4 * GIB;
		break;
	case P_FPR:
		g.free_page_reporting = true;
		g.stats.free_bytes = 1536 * MIB;
		break;
	case P_IDLE:
		s->busy_usec = NOW - 60 * SEC;
		break;
	case P_RELIEVED:
		g.last_emergency_usec = g.last_action_usec = NOW;
		g.emergency_count = 1;
		break;
	case P_FREED_TIGHT:
		s->seen_avail_bytes = 100 * MIB;
		s->seen_used_bytes = k->target - 100 * MIB;
		s->burst_bytes = GIB;
		s->burst_usec = NOW;
		break;
	case P_OOM_FALLING:
		s->seen_avail_bytes = 300 * MIB;
		s->seen_used_bytes = k->target - 300 * MIB;
		s->rate_bytes = 400 * MIB;
		break;
	case P_INFLATE_COLD:
	case P_INFLATE_WARM:
		s->seen_actual_bytes = s->still_actual_bytes = k->target + 512 * MIB;
		g.stats.rss_bytes = 3 * GIB;
		s->still_rss_bytes = k->prep == P_INFLATE_COLD ? 3 * GIB : 3 * GIB + 512 * MIB;
		break;
	case P_RSS_600M:
		/* used: 400MiB; the second row's VMM holds only that */
		g.stats.rss_bytes = k->reason ? 400 * MIB : 600 * MIB;
		break;
	default:
		break;
	}
	return g;
}

static void test_known_answers_learned(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = conf(new_conf);

	for (size_t i = 0; i < ARRAY_SIZE(kats2); i++) {
		const struct kat2 *k = &kats2[i];
		struct ovcd_policy_host h = host_at(k->host_avail);
		struct ovcd_policy_guest g = prep_guest(c, k);
		struct ovcd_policy_ksm_state ks = { 0 };
		struct ovcd_policy_decision d, dc;
		struct ovcd_policy_out out;

		print_message("row %zu: %s\n", i, k->what);
		assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
		if (d.action != k->action || d.target_bytes != k->new_target)
			fail_msg("%s: got %s target %llu (%s), expected %s target %llu", k->what,
				 ovcd_policy_action_name(d.action), (unsigned long long)d.target_bytes, d.reason,
				 ovcd_policy_action_name(k->action), (unsigned long long)k->new_target);
		if (k->reason && strcmp(d.reason, k->reason) != 0)
			fail_msg("%s: reason '%s', expected '%s'", k->what, d.reason, k->reason);
		if (k->reason_part && !strstr(d.reason, k->reason_part))
			fail_msg("%s: reason '%s' lacks '%s'", k->what, d.reason, k->reason_part);
		assert_true(d.target_bytes <= g.stats.max_bytes);
		assert_true(d.target_bytes >= d.floor_bytes || d.target_bytes >= k->target);

		/* Between ticks the same guest gets the same emergency or
		 * restore, and nothing else: never an inflate. */
		int r = ovcd_policy_guest_check(c, &h, &g, &dc);
		if (d.action == OVC_ACTION_EMERGENCY || d.action == OVC_ACTION_RESTORE) {
			assert_int_equal(r, 1);
			assert_int_equal(dc.action, d.action);
			assert_int_equal(dc.target_bytes, d.target_bytes);
			assert_string_equal(dc.reason, d.reason);
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(dc.action, OVC_ACTION_NONE);
			assert_int_equal(dc.target_bytes, k->target);
		}
		assert_memory_equal(&dc.state, &d.state, sizeof(d.state));

		switch (k->prep) {
		case P_INFLATE_COLD:
			assert_int_equal(d.state.cold_usec, NOW);
			break;
		case P_INFLATE_WARM:
			assert_int_equal(d.state.cold_usec, 0);
			break;
		case P_FREED_TIGHT:
			/* What it freed is no longer a burst it keeps room for. */
			assert_false(d.oom_kill);
			assert_int_equal(d.state.oom_kills, 0);
			assert_int_equal(d.state.burst_bytes, 0);
			break;
		case P_SELF_DEFLATED:
			assert_false(d.oom_kill);
			assert_int_equal(d.state.oom_kills, 0);
			assert_int_equal(d.state.oom_usec, 0);
			break;
		case P_FREED_PART:
			/* Still holding most of its run: the burst stays. */
			assert_true(d.state.burst_bytes >= 1100 * MIB);
			break;
		case P_FREED_ALL:
			/* Its whole run given back: burst and growth forgotten. */
			assert_int_equal(d.state.burst_bytes, 0);
			assert_int_equal(d.state.peak_rate_bytes, 0);
			break;
		case P_OOM_COUNTED:
		case P_OOM_GUESSED:
		case P_OOM_FALLING:
			assert_true(d.oom_kill);
			assert_int_equal(d.state.oom_kills, 1);
			assert_int_equal(d.state.oom_usec, NOW);
			/* It needed that: its raised floor is there now. */
			assert_int_equal(d.raised_floor_bytes, 3 * GIB);
			assert_int_equal(d.floor_bytes, GIB);
			assert_int_equal(d.state.short_floor_bytes, 3 * GIB);
			break;
		case P_STUCK_40S:
			assert_true(d.noncompliant);
			assert_int_equal(out.pending_bytes, 0);
			assert_int_equal(out.n_noncompliant, 1);
			break;
		case P_MOVING:
			assert_false(d.noncompliant);
			assert_int_equal(d.state.stuck_usec, NOW);
			assert_int_equal(out.pending_bytes, GIB);
			break;
		case P_FPR:
			assert_int_equal(d.fpr_bytes, 1536 * MIB);
			break;
		case P_IDLE:
			assert_true(d.idle);
			break;
		case P_FALL_450:
			assert_int_equal(d.growth_rate_bytes, 450 * MIB);
			assert_true(d.growing);
			assert_int_equal(d.state.burst_bytes, 450 * MIB);
			break;
		case P_FALL_MOVED:
			assert_int_equal(d.growth_rate_bytes, 0);
			assert_int_equal(d.state.run_bytes, 0);
			assert_int_equal(d.state.seen_actual_bytes, k->target);
			break;
		case P_BURST_1G:
			assert_int_equal(d.headroom_bytes, GIB);
			assert_int_equal(d.keep_bytes, GIB + 4 * GIB / 5); /* + guest_free */
			break;
		default:
			break;
		}
	}
}

/* The entry point between ticks: its contract (policy.h). */
static void test_guest_check(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = conf(new_conf);
	struct ovcd_policy_host h = host_at(100 * MIB); /* the host is short: no matter */
	struct ovcd_policy_guest g = guest(c, 2 * GIB, 1200 * MIB);
	struct ovcd_policy_decision d;

	/* First sight: learns, does nothing, never inflates. */
	assert_int_equal(ovcd_policy_guest_check(c, &h, &g, &d), 0);
	assert_int_equal(d.action, OVC_ACTION_NONE);
	assert_int_equal(d.target_bytes, 2 * GIB);
	assert_int_equal(d.state.seen_usec, NOW);
	assert_int_equal(d.state.seen_used_bytes, 848 * MIB);
	assert_string_equal(d.reason, "no distress: available 1.1GiB");
	/* The same statistics again: nothing new learned. */
	g.state = d.state;
	assert_int_equal(ovcd_policy_guest_check(c, &h, &g, &d), 0);
	assert_memory_equal(&d.state, &g.state, sizeof(d.state));

	/* A second later it has allocated 700MiB: 500MiB left, falling
	 * 700MiB/s. Deflated at this update, in one step. */
	h.now_usec = NOW + SEC;
	g.stats.collected_usec = NOW + SEC;
	g.stats.guest_update_sec++;
	g.stats.available_bytes = 500 * MIB;
	assert_int_equal(ovcd_policy_guest_check(c, &h, &g, &d), 1);
	assert_int_equal(d.action, OVC_ACTION_EMERGENCY);
	assert_true(d.guest_pressure && d.growing);
	/* guest_free 409.6MiB + headroom 1400MiB (two stats periods of its
	 * 700MiB/s; its 700MiB burst and 20% of max are less) + 700MiB by
	 * the next update - 500MiB available: 2010MiB. */
	assert_int_equal(d.target_bytes, 2 * GIB + 2010 * MIB);
	assert_int_equal(d.emergency_count, 1);
	assert_int_equal(d.state.burst_bytes, 700 * MIB);
	/* Carried out: a tick on the same statistics does not repeat it. */
	g.state = d.state;
	g.target_bytes = d.target_bytes;
	g.last_emergency_usec = g.last_action_usec = h.now_usec;
	g.emergency_count = d.emergency_count;
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, &g, 1, &d, &out));
	assert_int_equal(d.action, OVC_ACTION_NONE);
	assert_int_equal(d.target_bytes, 2 * GIB + 2010 * MIB);
	assert_int_equal(out.n_emergency, 0);
	/* Nor does the same guest update read again later (the guest has
	 * not sent new figures yet): it is not a new update. */
	h.now_usec = g.stats.collected_usec = NOW + SEC + SEC / 2;
	assert_int_equal(ovcd_policy_guest_check(c, &h, &g, &d), 0);
	assert_int_equal(d.state.seen_usec, NOW + SEC);
	assert_int_equal(d.target_bytes, 2 * GIB + 2010 * MIB);
	/* Its next update, relieved: nothing to do. */
	h.now_usec = g.stats.collected_usec = NOW + 2 * SEC;
	g.stats.guest_update_sec++;
	g.stats.actual_bytes = g.stats.total_bytes = 2 * GIB + 2010 * MIB;
	g.stats.available_bytes = 2510 * MIB;
	assert_int_equal(ovcd_policy_guest_check(c, &h, &g, &d), 0);
	assert_int_equal(d.state.seen_usec, NOW + 2 * SEC);

	/* An engine-only guest: decided at the tick. */
	struct ovcd_policy_guest e = engine_guest(c, "e", GIB, 0);
	assert_int_equal(ovcd_policy_guest_check(c, &h, &e, &d), 0);
	assert_int_equal(d.action, OVC_ACTION_NONE);
	/* Misuse. */
	assert_int_equal(ovcd_policy_guest_check(NULL, &h, &g, &d), -EINVAL);
	assert_int_equal(ovcd_policy_guest_check(c, &h, NULL, &d), -EINVAL);
	assert_int_equal(ovcd_policy_guest_check(c, &h, &g, NULL), -EINVAL);
	h.page_size = 0;
	assert_int_equal(ovcd_policy_guest_check(c, &h, &g, &d), -EINVAL);
}

/* A guest that opts out of KSM keeps it stopped; an engine's claimed
 * maximum never makes KSM "needed". */
static void test_ksm_opt_out(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 4GiB\n[guest \"secret\"]\nksm = no\n");
	struct ovcd_policy_guest g[2] = { guest(c, 4 * GIB, 3 * GIB), engine_guest(c, "liar", 0, 0) };
	struct ovcd_policy_decision d[2];
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_host h = host_at(12 * GIB);

	h.ksm_valid = true;
	h.ksm_knobs = (struct ovcd_ksm_knobs){ .run = 0 };
	/* The engine claims 64TiB: with its claim KSM would be "needed". */
	g[1].stats.max_bytes = g[1].stats.actual_bytes = OVC_GUEST_BYTES_MAX;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.ksm.run, 0);
	assert_non_null(strstr(out.ksm_reason, "KSM off: not needed (committed 4GiB"));
	/* Its RSS, measured by the kernel, does count. */
	g[1].stats.rss_bytes = 14 * GIB;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.ksm.run, 1);
	/* A guest that must not share: off, whatever else says on. */
	g[0].name = "secret";
	ovcd_config_guest_settings(c, "secret", &g[0].settings);
	assert_false(g[0].settings.ksm);
	ks = (struct ovcd_policy_ksm_state){ 0 };
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.ksm.run, 0);
	assert_string_equal(out.ksm_reason, "KSM off: guest 'secret' must not share pages ([guest] ksm = no)");
}

/* An engine that never reaches its target stops counting as pending. */
static void test_engine_noncompliant(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c =
		conf("[host]\nlow = 2GiB\nhigh = 2100MiB\n[swap]\nstep = 64MiB\nmax = 1GiB\n");
	struct ovcd_policy_guest g[2] = { engine_guest(c, "stuck", GIB, 1536 * MIB), engine_guest(c, "ok", GIB, 0) };
	struct ovcd_policy_decision d[2];
	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_host h = host_at(2000 * MIB); /* need 100MiB */

	/* Below its target for 10s: still on its way, its 512MiB count. */
	g[0].state.engine_stuck_usec = NOW - 10 * SEC;
	g[0].state.engine_stuck_held_bytes = GIB;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_int_equal(out.engine_pending_bytes, 512 * MIB);
	assert_int_equal(d[1].reclaim_action, OVC_ACTION_NONE);
	/* For 40s: non-compliant, the other is asked. */
	g[0].state.engine_stuck_usec = NOW - 40 * SEC;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_true(d[0].noncompliant);
	assert_non_null(strstr(d[0].reason, "non-compliant: target 1.5GiB, gives back 1GiB, not moved for 40s"));
	assert_int_equal(out.engine_pending_bytes, 0);
	assert_int_equal(out.n_noncompliant, 1);
	assert_int_equal(d[1].reclaim_action, OVC_ACTION_RECLAIM);
	assert_int_equal(d[1].reclaim_target_bytes, GIB + 64 * MIB);
	/* It moves: compliant again, its clock restarted. */
	g[0].stats.engine_swap_bytes = 100 * MIB;
	assert_ovc_ok(ovcd_policy_tick(c, &h, &ks, g, 2, d, &out));
	assert_false(d[0].noncompliant);
	assert_int_equal(d[0].state.engine_stuck_usec, NOW);
}

/* ---- trace replay ---- */

#define MAX_GUESTS 16

struct sim_guest {
	char name[64];
	uint64_t max, used, target, actual;
	uint64_t majflt, swapin;
	uint64_t last_action_usec;
	uint64_t last_emergency_usec;
	uint32_t emergency_count;
	struct ovcd_guest_stats prev;
	struct ovcd_policy_guest_state state;
	uint64_t resident;         /* budget model: guest memory the host backs */
	bool present, in_oom;
	bool stuck;                /* its balloon accepts targets and never moves */
};

struct sim {
	char conf_text[4096];
	struct ovcd_config *cfg;
	uint64_t total, base_avail;
	uint32_t psi_some, psi_full;
	struct sim_guest g[MAX_GUESTS];
	size_t n;
	unsigned ticks, inflates, deflates, emergencies;
	/* budget model (host budget=SIZE): MemAvailable is the budget less
	 * what backs the guests (each guest's touched memory, down to what
	 * its balloon leaves it), and the VMMs report it as their RSS */
	uint64_t budget;
	bool before;               /* replaying as before: ticks only, no checks */
	unsigned checks, ooms;     /* stats updates replayed; OOM kills simulated */
	uint64_t first_oom_sec, first_emergency_sec;
	uint64_t min_avail;        /* the lowest MemAvailable seen */
	uint64_t last_avail;       /* at the last tick */
};

static struct sim_guest *sim_find(struct sim *s, const char *name)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->g[i].name, name) == 0)
			return &s->g[i];
	assert_true(s->n < MAX_GUESTS);
	struct sim_guest *g = &s->g[s->n++];
	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", name);
	return g;
}

static uint64_t size_arg(const char *v)
{
	struct ovcd_conf_size sz;
	if (ovcd_parse_size(v, false, &sz) != 0)
		fail_msg("bad size in trace: %s", v);
	return sz.bytes;
}

/* One tick: build the inputs from the simulated state, run the policy,
 * check the invariants, apply the decisions (a balloon reaches its target
 * by the next tick). Guest lines of the tick: @lines. */
struct tick_guest {
	struct sim_guest *sg;
	bool stale, pressure_expected, noncompliant_expected;
	uint64_t lie_avail;
	const char *expect;
};

static uint64_t sim_host_avail(const struct sim *s)
{
	uint64_t ballooned = 0, resident = 0;

	for (size_t i = 0; i < s->n; i++) {
		ballooned += s->g[i].max - s->g[i].actual;
		resident += s->g[i].resident;
	}
	if (s->budget)
		return s->budget > resident ? s->budget - resident : 0;
	return MIN(s->base_avail + ballooned, s->total);
}

/* The guest at this item: its memory touched so far is backed by the host;
 * using more than it has is an OOM kill (its killer frees what the trace
 * says it uses next; until then it reports nothing available). */
static void sim_guest_step(struct sim *s, struct sim_guest *sg, uint64_t t_sec, const char *where)
{
	sg->resident = MAX(sg->resident, MIN(sg->used, sg->actual));
	if (sg->used > sg->actual) {
		if (!sg->in_oom) {
			s->ooms++;
			if (!s->first_oom_sec)
				s->first_oom_sec = t_sec;
			if (getenv("OVC_TRACE_VERBOSE"))
				print_message("%s: OOM kill: uses %llu MiB, has %llu MiB\n", where,
					      (unsigned long long)(sg->used / MIB),
					      (unsigned long long)(sg->actual / MIB));
		}
		sg->in_oom = true;
	} else {
		sg->in_oom = false;
	}
}

static void sim_input(const struct sim *s, uint64_t t_sec, const struct tick_guest *tg,
		      struct ovcd_policy_guest *g)
{
	const struct sim_guest *sg = tg->sg;

	*g = (struct ovcd_policy_guest){ .name = sg->name, .kind = OVC_DRIVER_LIBVIRT,
					.target_bytes = sg->target,
					.last_action_usec = sg->last_action_usec,
					.last_emergency_usec = sg->last_emergency_usec,
					.emergency_count = sg->emergency_count };
	ovcd_guest_stats_reset(&g->stats);
	g->stats.collected_usec = t_sec * SEC;
	g->stats.guest_update_sec = tg->stale ? 1 : t_sec;
	g->stats.max_bytes = sg->max;
	g->stats.actual_bytes = sg->actual;
	g->stats.total_bytes = sg->actual;
	g->stats.available_bytes = tg->lie_avail ? tg->lie_avail
			: (sg->actual > sg->used ? sg->actual - sg->used : 0);
	g->stats.free_bytes = g->stats.available_bytes;
	g->stats.major_faults = sg->majflt;
	g->stats.swap_in_bytes = sg->swapin;
	if (s->budget)
		g->stats.rss_bytes = sg->resident;
	/* The drivers sanitize; so does the replay. */
	ovcd_guest_stats_sanitize(&g->stats, t_sec, s->cfg->balloon.stale_after_usec / USEC_PER_SEC);
	g->prev = sg->prev;
	g->state = sg->state;
	ovcd_config_guest_settings(s->cfg, sg->name, &g->settings);
}

/* A statistics update between ticks: ovcd_policy_guest_check() for each
 * guest listed, its emergency carried out at once, as ovcd does. */
static void sim_check(struct sim *s, uint64_t t_sec, struct tick_guest *tg, size_t n, const char *file,
		      unsigned line)
{
	struct ovcd_policy_host h = { .now_usec = t_sec * SEC, .page_size = 4096 };

	for (size_t i = 0; i < n; i++) {
		struct sim_guest *sg = tg[i].sg;
		struct ovcd_policy_guest g;
		struct ovcd_policy_decision d;
		char where[128];

		snprintf(where, sizeof(where), "%s:%u: t=%llu %s", file, line, (unsigned long long)t_sec,
			 sg->name);
		sim_guest_step(s, sg, t_sec, where);
		s->min_avail = MIN(s->min_avail, sim_host_avail(s));
		if (s->before)
			continue; /* no relief between ticks */
		sim_input(s, t_sec, &tg[i], &g);
		int r = ovcd_policy_guest_check(s->cfg, &h, &g, &d);
		assert_true(r == 0 || r == 1);
		if (d.target_bytes > sg->max || d.target_bytes < sg->target)
			fail_msg("%s: check moved the target %llu -> %llu (%s)", where,
				 (unsigned long long)sg->target, (unsigned long long)d.target_bytes, d.reason);
		if ((r == 1) != (d.target_bytes > sg->target))
			fail_msg("%s: check returned %d for target %llu -> %llu (%s)", where, r,
				 (unsigned long long)sg->target, (unsigned long long)d.target_bytes, d.reason);
		if (tg[i].expect && strcmp(tg[i].expect, ovcd_policy_action_name(d.action)) != 0)
			fail_msg("%s: action %s, trace expects %s (%s)", where, ovcd_policy_action_name(d.action),
				 tg[i].expect, d.reason);
		if (tg[i].pressure_expected && !d.guest_pressure)
			fail_msg("%s: pressure expected, none seen (%s)", where, d.reason);
		if (getenv("OVC_TRACE_VERBOSE"))
			print_message("%s: check: target %llu MiB -> %llu MiB: %s\n", where,
				      (unsigned long long)(sg->target / MIB),
				      (unsigned long long)(d.target_bytes / MIB), d.reason);
		sg->state = d.state;
		if (r == 1) {
			sg->target = sg->actual = d.target_bytes;
			sg->last_action_usec = t_sec * SEC;
			if (d.action == OVC_ACTION_EMERGENCY) {
				sg->last_emergency_usec = t_sec * SEC;
				sg->emergency_count = d.emergency_count;
				s->emergencies++;
				if (!s->first_emergency_sec)
					s->first_emergency_sec = t_sec;
			}
		}
		sg->resident = MIN(sg->resident, sg->actual);
	}
	s->checks++;
}

static void sim_tick(struct sim *s, uint64_t t_sec, struct tick_guest *tg, size_t n, const char *file,
		     unsigned line)
{
	struct ovcd_policy_guest pg[MAX_GUESTS];
	struct ovcd_policy_decision d[MAX_GUESTS];
	struct ovcd_policy_out out;
	static struct ovcd_policy_ksm_state ks;

	memset(pg, 0, sizeof(pg));
	for (size_t i = 0; i < n; i++) {
		char where[128];
		snprintf(where, sizeof(where), "%s:%u: t=%llu %s", file, line, (unsigned long long)t_sec,
			 tg[i].sg->name);
		sim_guest_step(s, tg[i].sg, t_sec, where);
	}
	uint64_t avail = sim_host_avail(s);
	s->min_avail = MIN(s->min_avail, avail);
	s->last_avail = avail;
	struct ovcd_policy_host h = {
		.now_usec = t_sec * SEC,
		.mem = { .total_bytes = s->total, .available_bytes = avail, .free_bytes = avail },
		.psi_valid = true,
		.psi = { .some = { .avg10_basis_points = s->psi_some },
			 .full = { .avg10_basis_points = s->psi_full } },
		.page_size = 4096,
	};
	if (s->ticks == 0)
		memset(&ks, 0, sizeof(ks));
	for (size_t i = 0; i < n; i++)
		sim_input(s, t_sec, &tg[i], &pg[i]);
	assert_ovc_ok(ovcd_policy_tick(s->cfg, &h, &ks, pg, n, d, &out));
	ks = out.ksm_state;

	for (size_t i = 0; i < n; i++) {
		struct sim_guest *sg = tg[i].sg;
		const struct ovcd_policy_guest *g = &pg[i];
		const struct ovcd_policy_decision *dd = &d[i];
		uint64_t old = sg->target, floor = dd->floor_bytes;
		uint64_t step = MAX(ovcd_conf_size_bytes(&g->settings.step, sg->max), MIB);
		char where[128];
		snprintf(where, sizeof(where), "%s:%u: t=%llu %s", file, line, (unsigned long long)t_sec,
			 sg->name);

		/* Invariants. */
		if (dd->target_bytes > sg->max)
			fail_msg("%s: target above max (%s)", where, dd->reason);
		if (dd->target_bytes < floor && dd->target_bytes < old)
			fail_msg("%s: target %llu below floor %llu (%s)", where,
				 (unsigned long long)dd->target_bytes, (unsigned long long)floor, dd->reason);
		if (dd->target_bytes < dd->raised_floor_bytes && dd->target_bytes < old)
			fail_msg("%s: inflated to %llu, below the raised floor %llu (%s)", where,
				 (unsigned long long)dd->target_bytes,
				 (unsigned long long)dd->raised_floor_bytes, dd->reason);
		if (dd->target_bytes < old) {
			if (g->stats.stale || !ovcd_known(g->stats.available_bytes))
				fail_msg("%s: inflated with stale stats (%s)", where, dd->reason);
			if (old - dd->target_bytes > step)
				fail_msg("%s: inflated %llu, above step %llu (%s)", where,
					 (unsigned long long)(old - dd->target_bytes),
					 (unsigned long long)step, dd->reason);
			if (dd->guest_pressure)
				fail_msg("%s: inflated a guest under pressure (%s)", where, dd->reason);
			/* No ping-pong: within twelve intervals of an emergency
			 * (the shortest streak; computed here, not taken from
			 * the policy) a guest is inflated only while it keeps
			 * guest_free + emergency_step available afterwards. */
			uint64_t since = t_sec * SEC - sg->last_emergency_usec;
			uint64_t keep = ovcd_conf_size_bytes(&g->settings.guest_free, sg->actual) +
					ovcd_conf_size_bytes(&s->cfg->balloon.emergency_step, sg->max);
			if (sg->last_emergency_usec && since < 12 * s->cfg->host.interval_usec &&
			    g->stats.available_bytes < keep + (old - dd->target_bytes))
				fail_msg("%s: inflated by %llu MiB %llus after an emergency with %llu MiB "
					 "available, below guest_free + emergency_step %llu MiB (%s)",
					 where, (unsigned long long)((old - dd->target_bytes) / MIB),
					 (unsigned long long)(since / SEC),
					 (unsigned long long)(g->stats.available_bytes / MIB),
					 (unsigned long long)(keep / MIB), dd->reason);
		}
		if (dd->guest_pressure && old < sg->max && dd->action != OVC_ACTION_RESTORE &&
		    dd->target_bytes <= old)
			fail_msg("%s: guest under pressure not deflated within the tick (%s)", where,
				 dd->reason);
		if (tg[i].pressure_expected && !dd->guest_pressure)
			fail_msg("%s: pressure expected, none seen (%s)", where, dd->reason);
		if (g->settings.never_balloon && dd->target_bytes != sg->max)
			fail_msg("%s: never_balloon guest not at max (%s)", where, dd->reason);
		if (tg[i].expect && strcmp(tg[i].expect, ovcd_policy_action_name(dd->action)) != 0)
			fail_msg("%s: action %s, trace expects %s (%s)", where,
				 ovcd_policy_action_name(dd->action), tg[i].expect, dd->reason);
		if (tg[i].noncompliant_expected != dd->noncompliant)
			fail_msg("%s: %s non-compliant (%s)", where, dd->noncompliant ? "unexpectedly" : "not",
				 dd->reason);

		if (getenv("OVC_TRACE_VERBOSE"))
			print_message("%s: target %llu MiB -> %llu MiB: %s\n", where,
				      (unsigned long long)(old / MIB),
				      (unsigned long long)(dd->target_bytes / MIB), dd->reason);
		s->inflates += dd->action == OVC_ACTION_INFLATE;
		s->deflates += dd->action == OVC_ACTION_DEFLATE;
		s->emergencies += dd->action == OVC_ACTION_EMERGENCY;
		if (dd->target_bytes != old) {
			sg->target = dd->target_bytes;
			sg->last_action_usec = t_sec * SEC;
			if (dd->action == OVC_ACTION_EMERGENCY) {
				sg->last_emergency_usec = t_sec * SEC;
				sg->emergency_count = dd->emergency_count;
			}
		}
		/* As ovcd does: an emergency's count is kept with its deflate. */
		if (dd->action != OVC_ACTION_EMERGENCY)
			sg->emergency_count = dd->emergency_count;
		/* The balloon converges by the next tick (unless it is stuck). */
		if (!sg->stuck)
			sg->actual = sg->target;
		sg->resident = MIN(sg->resident, sg->actual);
		sg->prev = g->stats;
		sg->state = dd->state;
		if (dd->action == OVC_ACTION_EMERGENCY && !s->first_emergency_sec)
			s->first_emergency_sec = t_sec;
	}
	s->ticks++;
}

/*
 * Trace format, one item per line ('#' starts a comment):
 *   conf LINE                      a line of the config (INI)
 *   host total=SIZE                the host's MemTotal
 *   tick T avail=SIZE [psi_some=BP] [psi_full=BP]
 *                                  a tick at T seconds; avail is MemAvailable
 *                                  without any balloon (ballooned memory is
 *                                  added back by the replay)
 *   guest NAME max=SIZE used=SIZE [majflt=N] [swapin=SIZE] [stale]
 *         [lie_avail=SIZE] [pressure] [expect=ACTION]
 *                                  the guest during the last tick; its
 *                                  available memory is actual - used unless
 *                                  it lies; counters are cumulative
 */
/* Replay @name; with @before, as ovcd did before the learned rules: the
 * trace's config replaced by @before_conf, expectations ignored, and no
 * statistics update acted on between ticks. The caller frees the result. */
static struct sim *replay_run(const char *name, const char *before_conf)
{
	char path[512], line[512];
	snprintf(path, sizeof(path), "%s/policy/%s", OVC_FIXTURES_DIR, name);
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	struct sim *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	s->before = before_conf != NULL;
	s->min_avail = UINT64_MAX;
	if (before_conf)
		snprintf(s->conf_text, sizeof(s->conf_text), "%s", before_conf);
	struct tick_guest tg[MAX_GUESTS];
	size_t ntg = 0;
	uint64_t tick_t = 0;
	unsigned lineno = 0, tick_line = 0;
	bool in_tick = false, in_stats = false;

	for (;;) {
		bool eof = !fgets(line, sizeof(line), f);
		if (!eof)
			lineno++;
		char *hash = eof ? NULL : strchr(line, '#');
		if (hash && strncmp(line, "conf ", 5) != 0)
			*hash = 0;
		if (!eof)
			line[strcspn(line, "\n")] = 0;
		bool new_tick = !eof && strncmp(line, "tick ", 5) == 0;
		bool new_stats = !eof && strncmp(line, "stats ", 6) == 0;
		if ((eof || new_tick || new_stats) && (in_tick || in_stats)) {
			if (in_tick)
				sim_tick(s, tick_t, tg, ntg, name, tick_line);
			else
				sim_check(s, tick_t, tg, ntg, name, tick_line);
			ntg = 0;
		}
		if (eof)
			break;
		char *save, *tok = strtok_r(line, " \t", &save);
		if (!tok)
			continue;
		if (strcmp(tok, "conf") == 0) {
			const char *rest = line + 5;
			if (before_conf)
				continue;
			strncat(s->conf_text, rest, sizeof(s->conf_text) - strlen(s->conf_text) - 2);
			strcat(s->conf_text, "\n");
		} else if (strcmp(tok, "host") == 0) {
			while ((tok = strtok_r(NULL, " \t", &save)))
				if (strncmp(tok, "total=", 6) == 0)
					s->total = size_arg(tok + 6);
				else if (strncmp(tok, "budget=", 7) == 0)
					s->budget = size_arg(tok + 7);
				else
					fail_msg("%s:%u: unknown host field %s", name, lineno, tok);
		} else if (new_tick || new_stats) {
			if (!s->cfg)
				s->cfg = conf(s->conf_text);
			tok = strtok_r(NULL, " \t", &save);
			tick_t = strtoull(tok, NULL, 10);
			tick_line = lineno;
			in_tick = new_tick;
			in_stats = new_stats;
			if (new_tick)
				s->psi_some = s->psi_full = 0;
			while ((tok = strtok_r(NULL, " \t", &save))) {
				if (strncmp(tok, "avail=", 6) == 0 && new_tick)
					s->base_avail = size_arg(tok + 6);
				else if (strncmp(tok, "psi_some=", 9) == 0 && new_tick)
					s->psi_some = (uint32_t)strtoul(tok + 9, NULL, 10);
				else if (strncmp(tok, "psi_full=", 9) == 0 && new_tick)
					s->psi_full = (uint32_t)strtoul(tok + 9, NULL, 10);
				else
					fail_msg("%s:%u: unknown %s field %s", name, lineno,
						 new_tick ? "tick" : "stats", tok);
			}
		} else if (strcmp(tok, "guest") == 0) {
			assert_true(in_tick || in_stats);
			tok = strtok_r(NULL, " \t", &save);
			struct sim_guest *sg = sim_find(s, tok);
			struct tick_guest *t = &tg[ntg++];
			*t = (struct tick_guest){ .sg = sg };
			static char expects[MAX_GUESTS][32];
			while ((tok = strtok_r(NULL, " \t", &save))) {
				if (strncmp(tok, "max=", 4) == 0) {
					uint64_t m = size_arg(tok + 4);
					if (!sg->present)
						sg->target = sg->actual = m;
					sg->max = m;
					sg->present = true;
				} else if (strncmp(tok, "used=", 5) == 0) {
					sg->used = size_arg(tok + 5);
				} else if (strncmp(tok, "majflt=", 7) == 0) {
					sg->majflt = strtoull(tok + 7, NULL, 10);
				} else if (strncmp(tok, "swapin=", 7) == 0) {
					sg->swapin = size_arg(tok + 7);
				} else if (strcmp(tok, "stale") == 0) {
					t->stale = true;
				} else if (strcmp(tok, "pressure") == 0) {
					t->pressure_expected = !s->before;
				} else if (strcmp(tok, "stuck") == 0) {
					sg->stuck = true;
				} else if (strcmp(tok, "noncompliant") == 0) {
					t->noncompliant_expected = !s->before;
				} else if (strncmp(tok, "lie_avail=", 10) == 0) {
					t->lie_avail = size_arg(tok + 10);
				} else if (strncmp(tok, "expect=", 7) == 0) {
					snprintf(expects[ntg - 1], sizeof(expects[0]), "%s", tok + 7);
					t->expect = s->before ? NULL : expects[ntg - 1];
				} else {
					fail_msg("%s:%u: unknown guest field %s", name, lineno, tok);
				}
			}
		} else {
			fail_msg("%s:%u: unknown line '%s'", name, lineno, tok);
		}
	}
	fclose(f);
	print_message("%s%s: %u ticks, %u stats updates, %u inflates, %u deflates, %u emergencies, "
		      "%u OOM kills, lowest MemAvailable %llu MiB\n",
		      name, s->before ? " (as before)" : "", s->ticks, s->checks, s->inflates, s->deflates,
		      s->emergencies, s->ooms, (unsigned long long)(s->min_avail / MIB));
	assert_true(s->ticks > 0);
	ovcd_config_free(s->cfg);
	s->cfg = NULL;
	return s;
}

static void replay(const char *name)
{
	free(replay_run(name, NULL));
}

static void test_trace_squeeze(void **state)
{
	replay("squeeze.trace");
}

static void test_trace_liar(void **state)
{
	replay("liar.trace");
}

static void test_trace_classes(void **state)
{
	replay("classes.trace");
}

static void test_trace_pingpong(void **state)
{
	replay("pingpong.trace");
}

/* A balloon that never moves no longer counts as relief for good: after
 * pending_timeout the others are inflated instead. */
static void test_trace_noncompliant(void **state)
{
	struct sim *s = replay_run("noncompliant.trace", NULL);

	assert_int_equal(s->ticks, 40);
	assert_int_equal(s->inflates, 4);
	assert_true(s->last_avail >= 6 * GIB);
	free(s);

	/* As before (its debt counted for good): nobody else is ever asked,
	 * the host stays below low for all 40 ticks. */
	s = replay_run("noncompliant.trace", "[host]\nlow = 6GiB\nhigh = 6656MiB\nkeep_headroom = no\n[balloon]\nstep = 512MiB\n"
					     "pending_timeout = 1h\n[guest \"stuck\"]\npriority = 0\n"
					     "step = 1GiB\n");
	assert_int_equal(s->ticks, 40);
	assert_int_equal(s->inflates, 1);
	assert_true(s->last_avail < 6 * GIB);
	free(s);
}

/* What ovcd did before the learned rules, as a config of this policy:
 * the old watermarks and emergency_available, no headroom, and nothing
 * learned that lasts (the replay also skips the updates between ticks). */
static const char before_conf[] = "[host]\nlow = 10%\nhigh = 20%\nkeep_headroom = no\n"
				  "[balloon]\nheadroom = 0\nemergency_available = 5%\n"
				  "stats_period = 2s\nheadroom_decay = 1s\nshort_decay = 1s\n"
				  "oom_cooldown = 0\nidle_after = 24h\n";

static void test_trace_burst(void **state)
{
	struct sim *s = replay_run("burst.trace", NULL);

	/* Nobody OOM-killed; a and d deflated at the first update that shows
	 * them about to run out within two seconds (the trace expects it at
	 * t=81 and t=101), a's the first emergency of all: ballooned only by
	 * what it freed, a has 349MiB left after the first half of its burst. */
	assert_int_equal(s->ooms, 0);
	assert_int_equal(s->first_emergency_sec, 81);
	assert_true(s->inflates > 0);
	free(s);

	/* The same trace as before: d OOM-killed at t=101. (a was too, at
	 * t=81, until the policy learned that ballooning memory a guest never
	 * touched gives the host nothing; that rule has no switch, so the
	 * old config no longer squeezes a.) */
	s = replay_run("burst.trace", before_conf);
	assert_int_equal(s->ooms, 1);
	assert_int_equal(s->first_oom_sec, 101);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_known_answers_learned),
		cmocka_unit_test(test_guest_check),
		cmocka_unit_test(test_ksm_opt_out),
		cmocka_unit_test(test_engine_noncompliant),
		cmocka_unit_test(test_host_levels),
		cmocka_unit_test(test_headroom_on_host),
		cmocka_unit_test(test_water_filling),
		cmocka_unit_test(test_priorities),
		cmocka_unit_test(test_pending_counts),
		cmocka_unit_test(test_engines),
		cmocka_unit_test(test_ksm_steering),
		cmocka_unit_test(test_random_invariants),
		cmocka_unit_test(test_trace_squeeze),
		cmocka_unit_test(test_trace_liar),
		cmocka_unit_test(test_trace_classes),
		cmocka_unit_test(test_trace_pingpong),
		cmocka_unit_test(test_trace_burst),
		cmocka_unit_test(test_trace_noncompliant),
	};
	return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
