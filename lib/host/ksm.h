/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Linux KSM (/sys/kernel/mm/ksm): read its counters, save the knobs ovcd
 * changes, apply settings, and put the saved knobs back when ovcd stops.
 * Internal to ovcd; not exported from libovc.so.
 *
 * @root prefixes every path ("" or NULL: the real sysfs) so tests run on
 * fixture trees. No state; runs on ovcd's main thread.
 */
#ifndef OVC_KSM_H
#define OVC_KSM_H

#include <stdbool.h>
#include <stdint.h>

#define OVC_KSM_DIR "/sys/kernel/mm/ksm"

struct ovcd_ksm_counters {
	uint64_t pages_shared;     /* KSM pages in use */
	uint64_t pages_sharing;    /* mappings of them: the pages saved */
	uint64_t pages_unshared;
	uint64_t pages_volatile;
	uint64_t pages_scanned;    /* cumulative; 0 before 6.1 */
	uint64_t full_scans;
	uint64_t ksm_zero_pages;   /* with use_zero_pages; 0 before 6.10 */
	int64_t general_profit;    /* bytes, may be negative */
	bool has_general_profit;   /* 6.4+; else the profit is computed */
};

/* The knobs ovcd sets (and saves and restores). */
struct ovcd_ksm_knobs {
	uint32_t run;              /* 0 stop, 1 run (2, unmerge all, never set by ovcd) */
	uint32_t pages_to_scan;
	uint32_t sleep_millisecs;
	int32_t use_zero_pages;    /* 0, 1, or -1 when the kernel lacks the knob */
	bool advisor_scan_time;    /* read only: advisor_mode is scan-time, which owns
				    * pages_to_scan; it is then left alone */
};

/* -ENOENT when the kernel has no KSM (no directory), -EBADMSG for garbage. */
int ovcd_ksm_read_counters(const char *root, struct ovcd_ksm_counters *ret);
int ovcd_ksm_read_knobs(const char *root, struct ovcd_ksm_knobs *ret);

/* The memory KSM saves net of its own metadata, in bytes: general_profit
 * when the kernel has it, else the same formula (ksm.rst): saved pages
 * minus 64 bytes of rmap_item per tracked page. Counters are untrusted:
 * every sum and product saturates, and the result is clamped to
 * [INT64_MIN, INT64_MAX] (never wraps). */
int64_t ovcd_ksm_profit_bytes(const struct ovcd_ksm_counters *c, uint64_t page_size);

/*
 * Write the knobs of @want that differ from @have (all of them when @have
 * is NULL). pages_to_scan is skipped while the advisor owns it; a knob the
 * kernel lacks (use_zero_pages -1) is skipped. Turning KSM on writes the
 * rate first and run last; turning it off writes run first. Returns 0 or
 * the first -errno (the other knobs are still written).
 */
int ovcd_ksm_apply(const char *root, const struct ovcd_ksm_knobs *want,
		  const struct ovcd_ksm_knobs *have);

/* ovcd_ksm_read_knobs() at start, ovcd_ksm_apply(saved, NULL) at stop. */
static inline int ovcd_ksm_save(const char *root, struct ovcd_ksm_knobs *ret)
{
	return ovcd_ksm_read_knobs(root, ret);
}
static inline int ovcd_ksm_restore(const char *root, const struct ovcd_ksm_knobs *saved)
{
	return ovcd_ksm_apply(root, saved, NULL);
}

#endif
