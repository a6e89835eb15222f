/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An engine's stats reply as guest figures: every number a VMM sends is as
 * untrusted as a guest's, and is clamped to what it can be. Pure (no I/O,
 * no state), any thread; fuzzed by tests/fuzz/fuzz-engine-figures.c.
 */
#include <string.h>

#include "engine-figures.h"
#include "common/util.h"

/* Pages (OVC_PAGE_SIZE) in bytes; a count that would overflow is a lie and
 * stays unknown. */
static uint64_t pages_bytes(uint64_t pages)
{
	return pages <= UINT64_MAX / OVC_PAGE_SIZE ? pages * OVC_PAGE_SIZE : OVC_UNKNOWN;
}

/* A fault that takes an hour is not a measurement. */
#define FAULT_USEC_MAX (UINT64_C(3600) * 1000000)

/* The optional swap figures (docs/engine-protocol.md): unknown unless the
 * engine sent them and they can be true. */
static void fill_swap(const struct ep_reply *rp, uint64_t max, struct ovcd_engine_swap_stats *out)
{
	const struct ep_stats *st = &rp->st;
	unsigned have = rp->have;

	if (have & EP_HAVE_SWAPPED_OUT)
		out->out_bytes = pages_bytes(st->pages_swapped_out);
	/* Resident pages: never more than the guest has. */
	if ((have & EP_HAVE_SWAP_CACHE) && pages_bytes(st->swap_cache_pages) <= max)
		out->cache_bytes = pages_bytes(st->swap_cache_pages);
	if (have & EP_HAVE_SWAP_CACHE_HITS)
		out->cache_hits = st->swap_cache_hits;
	if (have & EP_HAVE_REFAULTS)
		out->refaults = st->refaults;
	if (have & EP_HAVE_WRITE_ERRORS)
		out->write_errors = st->swap_write_errors;
	if (have & EP_HAVE_READ_ERRORS)
		out->read_errors = st->swap_read_errors;
	/* Both or neither: a median above the 99th percentile is no pair. */
	if ((have & EP_HAVE_FAULT_P50) && (have & EP_HAVE_FAULT_P99) &&
	    st->fault_p50_usec <= st->fault_p99_usec && st->fault_p99_usec <= FAULT_USEC_MAX) {
		out->fault_p50_usec = st->fault_p50_usec;
		out->fault_p99_usec = st->fault_p99_usec;
	}
}

uint64_t engine_max_bytes(const struct ep_reply *rp, uint64_t vm_bytes)
{
	uint64_t max = MIN(rp->st.max_bytes, OVC_GUEST_BYTES_MAX);

	/* A guest cannot have more RAM than the engine registered, nor more
	 * than the VMM's whole address space: a 64 TiB claim from a VMM of
	 * 1 GiB counts as at most 1 GiB in every ratio and sum. */
	if (rp->have & EP_HAVE_REGION)
		max = MIN(max, rp->st.region_bytes);
	if (ovcd_known(vm_bytes))
		max = MIN(max, vm_bytes);
	return max;
}

void engine_figures(const struct ep_reply *rp, uint64_t vm_bytes, struct ovcd_guest_stats *out)
{
	const struct ep_stats *st = &rp->st;
	uint64_t max = engine_max_bytes(rp, vm_bytes);

	ovcd_guest_stats_reset(out);
	out->max_bytes = max;
	out->actual_bytes = max; /* an engine has no balloon */
	out->engine_zero_bytes = MIN(st->zero_bytes, max);
	out->engine_swap_bytes = MIN(st->swap_bytes, max - out->engine_zero_bytes);
	out->engine_target_bytes = MIN(st->target_bytes, max);
	if (rp->have & EP_HAVE_SWAPPED_IN)
		out->engine_swap_in_bytes = pages_bytes(st->pages_swapped_in);
	if (rp->have & EP_HAVE_REGION)
		out->engine_region_bytes = MIN(st->region_bytes, OVC_GUEST_BYTES_MAX);
	fill_swap(rp, max, &out->engine_swap);
}
