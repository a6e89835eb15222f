/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What ovcd knows after a tick, as plain data: the control protocol's
 * status and guests replies and the metrics are rendered from it by pure
 * functions (control.c, metrics.c), so they are unit-tested without a
 * daemon. Built and read on ovcd's main thread.
 */
#ifndef OVCD_VIEW_H
#define OVCD_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "host/host.h"
#include "host/ksm.h"
#include "host/policy.h"
#include "host/stats.h"

#define OVCD_GUEST_NAME_MAX 256

struct ovcd_guest_view {
	char name[OVCD_GUEST_NAME_MAX];
	const char *driver;            /* "qmp", "libvirt", "ovc" (an engine only),
				        * "qmp+ovc", "libvirt+ovc" (both) */
	const char *balloon_driver;    /* the guest's own: "loaded", "absent", "unknown";
				        * "none" for an engine without a balloon */
	uint64_t max_bytes;
	uint64_t actual_bytes;         /* what the guest has now (max - balloon) */
	uint64_t target_bytes;         /* what ovcd last asked for */
	uint64_t available_bytes;      /* guest MemAvailable, or OVC_UNKNOWN */
	uint64_t floor_bytes;
	bool floor_override;           /* `ovcctl set GUEST floor` */
	uint64_t pin_bytes;            /* `ovcctl set GUEST target`; 0: none */
	uint64_t stats_age_usec;       /* since the guest last reported; OVC_UNKNOWN */
	bool stale;
	enum ovcd_policy_action last_action;
	uint64_t last_action_tick;     /* 0: never */
	char last_reason[OVC_POLICY_REASON_MAX];
	uint64_t inflates, deflates, emergencies, errors;
	/* Embedded engine: what it gives back now by zero sharing and by
	 * swap, and its reclaim target; all OVC_UNKNOWN without an engine. */
	bool engine;
	uint64_t engine_zero_bytes, engine_swap_bytes, engine_target_bytes;
	/* Its swapping: cumulative bytes swapped in, and the rest as the
	 * engine reports it (guest.h); OVC_UNKNOWN without an engine or from
	 * an engine too old to say. */
	uint64_t engine_swap_in_bytes;
	struct ovcd_engine_swap_stats engine_swap;
	uint64_t reclaims, releases;   /* engine target raised / lowered */
	/* What the policy learned and assumes (policy.h), from its last
	 * decision for the guest, at a tick or between ticks: */
	uint64_t raised_floor_bytes;   /* the floor the policy keeps after the
				        * guest ran short (>= floor_bytes, halving
				        * back); OVC_UNKNOWN before its first decision */
	uint64_t headroom_bytes;       /* available kept for its bursts (learned) */
	uint64_t keep_bytes;           /* available never inflated into */
	uint64_t growth_rate_bytes;    /* its used memory's growth per second */
	bool growing, idle;
	uint64_t oom_kills;            /* OOM kills ovcd has seen in the guest */
	/* Free page reporting: negotiated by its balloon, and the guest's free
	 * memory taken as back on the host without a balloon (OVC_UNKNOWN
	 * without it). */
	bool free_page_reporting;
	uint64_t fpr_bytes;
	uint64_t quick_deflates;       /* emergency deflates between ticks */
	bool noncompliant;             /* its balloon (or engine) has not moved
				        * toward its target for pending_timeout:
				        * what it owes no longer counts (the
				        * tick's decision) */
};

struct ovcd_view {
	const char *config_path;
	uint64_t interval_usec;
	bool dry_run;
	uint64_t ticks;
	uint64_t checks;               /* per-guest policy checks between ticks */
	uint64_t uptime_usec;
	enum ovcd_host_level level;
	uint64_t level_since_tick;
	char host_reason[OVC_POLICY_REASON_MAX];
	struct ovcd_meminfo mem;
	bool psi_valid;
	struct ovcd_psi psi;
	struct ovcd_overcommit oc;
	bool ksm_valid;
	struct ovcd_ksm_knobs ksm_knobs;
	struct ovcd_ksm_counters ksm;
	int64_t ksm_profit_bytes;
	char ksm_reason[OVC_POLICY_REASON_MAX];
	const struct ovcd_guest_view *guests;
	size_t n_guests;
};

#endif
