/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The policy: a pure function (host state, guest states, config) →
 * (balloon targets, reclaim requests to embedded engines, KSM settings).
 * No I/O, no clocks (time comes in the input), no allocation, no globals:
 * the same input always gives the same output, so it is tested with
 * known-answer tables and replayed from recorded traces. Internal to ovcd.
 *
 * Any thread; the caller owns every buffer. State that must live from tick
 * to tick (KSM steering) comes in and goes out explicitly.
 *
 * What the policy learns about a guest (its bursts, idleness, reclaim
 * counters, OOM kills, a floor raised after it ran short, whether its
 * balloon follows its target) goes out in each decision's state and comes
 * back with the guest's next call (struct ovcd_policy_guest_state).
 *
 * Rules, in the order they are applied to each guest (docs/policy.md):
 *  1. class never_balloon: target back to max at once; nothing else.
 *  2. target below the guest's floor (config changed, ovcctl set): raised
 *     to the floor at once. No rule ever sets a target below the floor, nor
 *     inflates below the floor raised after an emergency (the target it
 *     was deflated to, halving back toward the floor every short_decay).
 *  3. distress (fresh stats only): an OOM kill (the guest's counter, or
 *     its used memory falling sharply while it was nearly out), available
 *     below emergency_available, available falling fast enough to get
 *     there within two updates (growth rate x 2 x stats_period), allocation
 *     stalls or direct reclaim while it has less available than it keeps,
 *     major faults or swap-in per second above their thresholds: emergency deflate at once, whatever the host's
 *     state, in one step to what the guest needs (guest_free + headroom +
 *     its growth by the next update, at least emergency_step, at most max);
 *     the raised floor is that target. Statistics older than the last
 *     emergency deflate do not call for another.
 *  4. after an OOM kill: no inflate (nor engine reclaim) for oom_cooldown.
 *  5. host pressure (MemAvailable below low, or memory PSI avg10 at or above
 *     psi_some / psi_full): inflate guests with spare memory until
 *     MemAvailable would be back at high, counting what balloons were
 *     asked for and have not taken yet. A guest keeps guest_free plus its
 *     headroom (the largest of its learned burst, twice what it uses in a
 *     stats period at its fastest growth seen, both halving every
 *     headroom_decay and forgotten once it is back where its run began,
 *     and [balloon] headroom); spare is what it has
 *     available above that, less its balloon's pending part, less free
 *     memory free page reporting gave back, at most its VMM's RSS beyond
 *     its used memory. Lowest priority first; idle guests before busy
 *     ones; the most spare first, down to an equal level (water-filling);
 *     at most step each. Never inflated: stale or missing stats; within
 *     90% of an interval of the last action (the stats do not show it
 *     yet); within the cooldown of an emergency deflate (six intervals,
 *     doubled for each further emergency of a streak: 6, 12, 24, 48 at
 *     most; a streak ends after twice its cooldown without one; while it
 *     lasts, the guest also keeps emergency_step above guest_free, so that
 *     a guest still allocating is not squeezed back: ping-pong); a
 *     non-compliant balloon (not moved toward its target for
 *     pending_timeout: its debt no longer counts as pending either).
 *  6. host room (MemAvailable above high, no PSI pressure): deflate
 *     ballooned guests by at most step each, highest priority first, within
 *     the room above high.
 * Changes smaller than min_change are skipped (except 1-3). Targets move in
 * whole MiB. ovcd_policy_guest_check() applies 1-4 to one guest between
 * ticks.
 *
 * Embedded engines (a guest of kind OVC_DRIVER_ENGINE, which has no balloon,
 * or any guest with .engine set, which has both) get a reclaim target: the
 * bytes the engine keeps given back, zero-shared plus swapped. Zero sharing
 * is free and always on (target 0); a target above what zero sharing gives
 * makes the engine swap. Balloons go first: a balloon lets the guest choose
 * what to give up (free memory, page cache), while host swap is blind (it
 * may evict what the guest uses, and the guest pays a disk read per fault).
 * So the engine's target rises only for the part of the host's need that
 * balloons did not cover this tick. The same watermarks and the same
 * backoff apply:
 *  E1. swap off ([swap] enable = no, class never_swap), or a target above
 *      the swap cap (zero shared + [swap] max, and never past the guest RAM
 *      the engine registered, which it would refuse): back to what is
 *      allowed, at once, whatever the host's state.
 *  E2. engine thrashing (its swap-in rate above emergency_swap_in):
 *      emergency, the target falls by emergency_step at once, and the
 *      guest's emergency streak and cooldown start as for a balloon.
 *  E3. host pressure: raise the target from what the engine holds now by at
 *      most [swap] step, lowest priority first, within the need left after
 *      balloons and what engines were asked for and have not reached yet
 *      (an engine below its target for pending_timeout without moving is
 *      non-compliant: what it owes no longer counts); never while settling,
 *      cooling down or after an OOM kill, never above the swap cap.
 *  E4. host room: lower the target by [swap] step (to 0 once it is within
 *      what zero sharing gives); swapped pages come back as the guest
 *      touches them, so room is not reserved for them.
 *  E5. steady: the target stays (the band between low and high is the
 *      hysteresis).
 */
#ifndef OVC_POLICY_H
#define OVC_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/config.h"
#include "host/guest.h"
#include "host/host.h"
#include "host/ksm.h"

#define OVC_POLICY_REASON_MAX 192

enum ovcd_driver_kind {
	OVC_DRIVER_LIBVIRT,
	OVC_DRIVER_QMP,
	OVC_DRIVER_ENGINE,    /* an embedded ovc engine: reclaim requests */
};

enum ovcd_host_level {
	OVC_HOST_STEADY,      /* between the watermarks: no balloon moves */
	OVC_HOST_PRESSURE,    /* inflate */
	OVC_HOST_ROOM,        /* deflate */
};

struct ovcd_policy_host {
	uint64_t now_usec;            /* CLOCK_MONOTONIC of this tick */
	struct ovcd_meminfo mem;
	bool psi_valid;               /* false: no PSI on this host */
	struct ovcd_psi psi;
	bool ksm_valid;               /* false: no KSM (then no KSM output) */
	struct ovcd_ksm_counters ksm;
	struct ovcd_ksm_knobs ksm_knobs; /* as they are now */
	uint64_t page_size;
};

/*
 * What the policy learned about one guest and needs again. The caller
 * carries it from each decision (ovcd_policy_decision.state) into the guest's
 * next call (ovcd_policy_guest.state), whether the decision came from
 * ovcd_policy_tick() or ovcd_policy_guest_check(); zero it for a new guest.
 * The policy only learns from statistics newer than seen_usec, so giving it
 * the same statistics twice (a tick after a check) changes nothing. All of
 * it is derived from untrusted guest figures and is clamped where used.
 */
struct ovcd_policy_guest_state {
	uint64_t seen_usec;           /* when the policy first saw the update it
				       * learned from last (its collected_usec); 0: none */
	uint64_t seen_update_sec;     /* that update's guest_update_sec: the same
				       * figures read again are not a new update */
	uint64_t seen_used_bytes;     /* the guest's used memory then (its
				       * MemTotal, else its memory now, less
				       * what it has available) */
	uint64_t seen_actual_bytes;   /* its memory then (the balloon moved when
				       * this changes: no growth is measured) */
	uint64_t seen_avail_bytes;    /* its available memory then */
	uint64_t seen_oom_kills;      /* guest counters then (OVC_UNKNOWN: not reported) */
	uint64_t seen_alloc_stalls;
	uint64_t seen_direct_reclaims;
	uint64_t rate_bytes;          /* used memory's growth per second then */
	uint64_t run_bytes;           /* rise of used memory since its last low point */
	uint64_t low_used_bytes;      /* used memory at that low point (followed in
				       * updates with the balloon still only) */
	uint64_t burst_bytes;         /* learned headroom: the largest run, decaying */
	uint64_t burst_usec;          /* when burst_bytes was last raised */
	uint64_t peak_rate_bytes;     /* the fastest growth per second seen, decaying
				       * like burst_bytes: a guest that grew this fast
				       * keeps what it would use before relief came */
	uint64_t peak_rate_usec;      /* when peak_rate_bytes was last raised */
	uint8_t moved_before;         /* nonzero: the balloon moved at the update before
				       * the last one learned from: the guest's
				       * figures may still be catching up */
	uint64_t busy_usec;           /* when used memory last rose; 0: never seen */
	uint64_t short_floor_bytes;   /* floor raised after the guest ran short */
	uint64_t short_usec;          /* when it ran short (the raised floor decays from then) */
	uint64_t oom_usec;            /* the last OOM kill seen; 0: none */
	uint32_t oom_kills;           /* OOM kills ovcd has seen in this guest */
	uint64_t stuck_usec;          /* balloon pending and not moving since; 0: not stuck */
	uint64_t stuck_actual_bytes;  /* its actual memory then */
	uint64_t engine_stuck_usec;   /* engine below its target and not moving since */
	uint64_t engine_stuck_held_bytes;
	uint64_t still_actual_bytes;  /* the guest's memory at the last update where its
				       * balloon was still (before an inflate began) */
	uint64_t still_rss_bytes;     /* the VMM's RSS then (OVC_UNKNOWN: none) */
	uint64_t cold_usec;           /* when an inflate was seen to lower the VMM's RSS
				       * by less than a quarter of what it took: its free
				       * memory is not resident; 0: not seen */
};

struct ovcd_policy_guest {
	const char *name;
	enum ovcd_driver_kind kind;
	struct ovcd_guest_stats stats; /* this tick, sanitized (guest.h) */
	struct ovcd_guest_stats prev;  /* previous tick; collected_usec 0: none */
	uint64_t target_bytes;        /* balloon target now; 0 or unknown: max */
	uint64_t last_action_usec;    /* 0: never */
	uint64_t last_emergency_usec; /* last emergency deflate; 0: never */
	uint32_t emergency_count;     /* the previous tick's decision's
				       * emergency_count; 0 with a last
				       * emergency counts as 1 */
	bool engine;                  /* has an embedded engine too (its
				       * stats.engine_* are known); implied
				       * by kind OVC_DRIVER_ENGINE */
	struct ovcd_guest_settings settings; /* ovcd_config_guest_settings() */
	bool free_page_reporting;     /* its balloon negotiated free page
				       * reporting: freed memory goes back to
				       * the host without a balloon */
	struct ovcd_policy_guest_state state; /* the last decision's; zeroed at first */
};

enum ovcd_policy_action {
	OVC_ACTION_NONE,
	OVC_ACTION_INFLATE,
	OVC_ACTION_DEFLATE,
	OVC_ACTION_EMERGENCY,   /* deflate at once: the guest is under pressure */
	OVC_ACTION_RESTORE,     /* to the floor or to max because of its class */
	OVC_ACTION_RECLAIM,     /* engine: reclaim target raised */
	OVC_ACTION_RELEASE,     /* engine: reclaim target lowered */
};

struct ovcd_policy_decision {
	enum ovcd_policy_action action;
	uint64_t target_bytes;        /* the balloon target to set (== the old one for NONE) */
	/* Engine: what to do with its reclaim target, and the target to set
	 * (== the one in force for NONE). For a guest of kind
	 * OVC_DRIVER_ENGINE, action is reclaim_action as well. */
	enum ovcd_policy_action reclaim_action;
	uint64_t reclaim_target_bytes;
	/* What the policy saw, for ovcctl and logs. */
	uint64_t floor_bytes;         /* the configured floor: a hard minimum */
	uint64_t raised_floor_bytes;  /* at least floor_bytes: the floor the
				       * policy keeps after the guest ran short
				       * (the target it was deflated to, halving
				       * back every short_decay); it never
				       * inflates below it */
	uint64_t spare_bytes;
	bool guest_pressure;
	/* Emergencies in the guest's current streak, to give back next tick
	 * as ovcd_policy_guest.emergency_count (with last_emergency_usec set
	 * to now when the action is EMERGENCY and it was carried out). */
	uint32_t emergency_count;
	/* What the policy assumes about this guest, for ovcctl and the UI. */
	uint64_t headroom_bytes;      /* available kept for bursts: the learned
				       * burst or [balloon] headroom, the larger */
	uint64_t keep_bytes;          /* available never inflated into:
				       * guest_free + headroom (+ a streak's margin) */
	uint64_t fpr_bytes;           /* free memory assumed already back on the
				       * host through free page reporting */
	uint64_t growth_rate_bytes;   /* its used memory grows this much per
				       * second (0: not growing or unknown) */
	bool idle;                    /* used memory has not grown for idle_after */
	bool growing;                 /* used memory grew in the last update:
				       * poll it faster */
	bool oom_kill;                /* an OOM kill seen in this update: log a
				       * warning naming the guest */
	bool noncompliant;            /* its balloon (or engine) ignored its
				       * target for pending_timeout: what it
				       * owes no longer counts as relief */
	struct ovcd_policy_guest_state state; /* give back as guest.state */
	char reason[OVC_POLICY_REASON_MAX];
};

/* KSM steering state carried from one tick to the next; zero it at start. */
struct ovcd_policy_ksm_state {
	bool on;                      /* ovcd has KSM running */
	uint32_t pages_to_scan;
	uint32_t idle_ticks;          /* ticks in a row without profit */
	uint64_t off_until_usec;      /* backing off after no profit */
	uint64_t full_scans_at_on;
	int64_t last_profit_bytes;
};

struct ovcd_policy_out {
	enum ovcd_host_level level;
	uint64_t low_bytes, high_bytes; /* resolved watermarks */
	uint64_t need_bytes;          /* what the host wants back this tick */
	uint64_t headroom_bytes;      /* Σ over guests of min(available,
				       * headroom): what they may take without
				       * asking; the host keeps it free too */
	uint64_t pending_bytes;       /* balloons asked for and not yet taken:
				       * Σ (actual - target); counts toward the need */
	uint64_t room_bytes;          /* what it can give this tick */
	uint64_t inflate_bytes;       /* Σ of balloon inflates decided */
	uint64_t deflate_bytes;       /* Σ of deflates, emergencies included */
	uint64_t reclaim_bytes;       /* Σ of what raised engine targets ask
				       * beyond what those engines give back now */
	uint64_t engine_pending_bytes; /* engines asked for and not yet there:
				       * Σ (target - zero - swapped) */
	unsigned n_emergency;
	unsigned n_noncompliant;      /* balloons and engines whose debt no
				       * longer counts as pending */
	char reason[OVC_POLICY_REASON_MAX];  /* the host's state, for logs */

	bool ksm_change;              /* ksm differs from host->ksm_knobs */
	struct ovcd_ksm_knobs ksm;
	struct ovcd_policy_ksm_state ksm_state; /* give back next tick */
	char ksm_reason[OVC_POLICY_REASON_MAX];
};

/*
 * One tick. @guests and @decisions have @n entries (decision i for guest
 * i). @ksm_in is the previous tick's out->ksm_state (zeroed the first
 * time). Returns 0, or -EINVAL for NULL pointers or a page size of 0
 * (then nothing is written).
 */
int ovcd_policy_tick(const struct ovcd_config *cfg, const struct ovcd_policy_host *host,
		    const struct ovcd_policy_ksm_state *ksm_in, const struct ovcd_policy_guest *guests,
		    size_t n, struct ovcd_policy_decision *decisions, struct ovcd_policy_out *out);

/*
 * One guest between ticks, called on every new statistics update of that
 * guest (its stats period, 1-2 s), so that a guest running short is
 * deflated within a second of the figures that show it instead of at the
 * next tick. Pure, like ovcd_policy_tick().
 *
 * It applies only the guest's own rules, exactly as ovcd_policy_tick() would
 * to this guest: distress (available below emergency_available, available
 * falling fast enough to run out within two updates, an OOM kill,
 * allocation stalls, direct reclaim, major faults, swap-in) gives an
 * emergency deflate in one step to what the guest needs, at most its
 * maximum; a target below the guest's floor is raised to it; a
 * never_balloon guest goes back to its maximum. It never inflates and never
 * acts for the host's sake.
 *
 * @host: now_usec must be the current CLOCK_MONOTONIC time; the rest may be
 *   the last tick's figures (only now_usec and page_size are read).
 * @guest: as for a tick (stats fresh from the driver, state from the last
 *   decision for this guest, from a tick or a check).
 * @d: always filled. d->state must be stored as the guest's state for its
 *   next call (check or tick) whatever is returned; d->emergency_count and
 *   the emergency's time likewise when the deflate is carried out.
 *   d->growing says the guest's used memory grew: poll it faster.
 *   d->oom_kill says an OOM kill was seen: log a warning naming the guest.
 *
 * Returns 1 when d->action is OVC_ACTION_EMERGENCY or OVC_ACTION_RESTORE and
 * d->target_bytes (above the current target, at most the maximum) should be
 * set now; 0 when nothing is to be done (d->action OVC_ACTION_NONE,
 * d->target_bytes the current target); -EINVAL for NULL pointers or a page
 * size of 0 (then *d is untouched).
 */
int ovcd_policy_guest_check(const struct ovcd_config *cfg, const struct ovcd_policy_host *host,
			   const struct ovcd_policy_guest *guest, struct ovcd_policy_decision *d);

const char *ovcd_policy_action_name(enum ovcd_policy_action a);
const char *ovcd_host_level_name(enum ovcd_host_level l);

#endif
