/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What ovc knows about one guest's memory, normalised from every balloon
 * driver (libvirt, QMP, an embedded ovc engine). Shared by the drivers (which
 * fill it) and the policy (which reads it).
 *
 * Everything a guest reports is untrusted. A figure the guest did not send,
 * sent as "unavailable" (QMP's u64 -1), sent too long ago, or that cannot be
 * true (free > total) is OVC_UNKNOWN, never 0. Units are in the field names.
 */
#ifndef OVC_GUEST_H
#define OVC_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#define OVC_UNKNOWN UINT64_MAX
/* No VM has more than 64 TiB of RAM; a figure above is garbage. */
#define OVC_GUEST_BYTES_MAX (UINT64_C(64) << 40)

static inline bool ovcd_known(uint64_t v)
{
	return v != OVC_UNKNOWN;
}

/* An embedded engine's swap health (ovc driver): every figure OVC_UNKNOWN
 * elsewhere, and also from an engine too old to report it
 * (docs/engine-protocol.md). */
struct ovcd_engine_swap_stats {
	uint64_t out_bytes;      /* cumulative: pages written out */
	uint64_t cache_bytes;    /* back in memory, still owning a slot */
	uint64_t cache_hits;     /* cumulative: evictions without a write */
	uint64_t refaults;       /* cumulative: swapped in soon after going out */
	uint64_t write_errors;   /* cumulative */
	uint64_t read_errors;    /* cumulative */
	uint64_t fault_p50_usec; /* fault service time since the engine */
	uint64_t fault_p99_usec; /* started (upper bound of its bucket) */
};

struct ovcd_guest_stats {
	/* When the driver collected these (CLOCK_MONOTONIC, µs). */
	uint64_t collected_usec;
	/* When the guest last answered, as the guest reported it (seconds
	 * since the epoch, CLOCK_REALTIME), or OVC_UNKNOWN. */
	uint64_t guest_update_sec;
	/* true when every guest-side figure below is OVC_UNKNOWN because the
	 * stats are stale (last update older than the staleness limit). */
	bool stale;

	/* Host side: always known for a running guest. */
	uint64_t max_bytes;         /* configured maximum memory */
	uint64_t actual_bytes;      /* memory the guest has now (max - balloon) */
	uint64_t rss_bytes;         /* RSS of the VMM process, or OVC_UNKNOWN */

	/* Guest side (virtio-balloon stats). */
	uint64_t total_bytes;       /* guest MemTotal */
	uint64_t free_bytes;        /* guest MemFree */
	uint64_t available_bytes;   /* guest MemAvailable */
	uint64_t disk_caches_bytes; /* guest page cache that can be dropped */
	uint64_t swap_in_bytes;     /* cumulative */
	uint64_t swap_out_bytes;    /* cumulative */
	uint64_t major_faults;      /* cumulative count */
	uint64_t minor_faults;      /* cumulative count */
	/* Reclaim in the guest (virtio-balloon stats of Linux 6.12 and
	 * later; OVC_UNKNOWN from older guests, QEMU before 9.2 and libvirt,
	 * which does not pass them on). Cumulative; the scans and reclaims
	 * count pages of the guest's own size. */
	uint64_t oom_kills;         /* tasks killed by the guest's OOM killer */
	uint64_t alloc_stalls;      /* allocations that stalled in direct reclaim */
	uint64_t async_scans;       /* pages scanned by kswapd */
	uint64_t direct_scans;      /* pages scanned by allocating tasks */
	uint64_t async_reclaims;    /* pages reclaimed by kswapd */
	uint64_t direct_reclaims;   /* pages reclaimed by allocating tasks */

	/* Embedded engine (ovc driver), OVC_UNKNOWN elsewhere. Reported by
	 * the VMM, so untrusted like the rest: clamped where they are used. */
	uint64_t engine_zero_bytes;   /* given back by zero sharing now */
	uint64_t engine_swap_bytes;   /* given back by swapping now */
	uint64_t engine_target_bytes; /* the reclaim target in force */
	uint64_t engine_swap_in_bytes; /* cumulative: pages swapped back in */
	uint64_t engine_region_bytes; /* guest RAM registered with the engine */
	struct ovcd_engine_swap_stats engine_swap;
};

/* Set every field to OVC_UNKNOWN (and stale = false, collected_usec = 0). */
void ovcd_guest_stats_reset(struct ovcd_guest_stats *st);

/* Apply the rules above after a driver filled @st from raw values: drop what
 * cannot be true, mark everything guest-side unknown when the guest's
 * last update is older than @max_age_sec at @now_sec (CLOCK_REALTIME).
 * Returns the number of figures that were turned to OVC_UNKNOWN. */
unsigned ovcd_guest_stats_sanitize(struct ovcd_guest_stats *st, uint64_t now_sec,
				  uint64_t max_age_sec);

#endif
