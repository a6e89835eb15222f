/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The swap cache (swapcache.c): a page swapped in keeps its slot (RESIDENT
 * | CACHED, or ZERO | CACHED) until its content changes, so that evicting
 * it again needs no write (docs/swap.md, "Swap cache"). Page words change
 * by compare-and-swap; slots are freed through swapdev (its sd->lock, a
 * leaf).
 */
#ifndef OVC_ENGINE_SWAPCACHE_H
#define OVC_ENGINE_SWAPCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/internal.h"

/* Give up the cached slot of @page, if it has one. Only in RESIDENT or
 * ZERO, or in SWAPPING_OUT when @own_transit (the pass thread's own
 * batch). Returns whether a slot was freed. Any thread. */
bool cache_drop(ovc_engine *e, struct region *r, uint64_t page, bool own_transit);
/* After a tracking scan of @r (@scanned: it succeeded): free the slots of
 * cached pages written since, or ZERO now. Pass thread. */
void cache_sweep(ovc_engine *e, struct region *r, bool scanned);
/* Free cached slots of resident pages, up to @want, in every region.
 * Pass thread, regions_lock held. Returns how many were freed. */
uint64_t cache_shrink(ovc_engine *e, uint64_t want);

#endif
