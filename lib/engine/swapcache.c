/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The swap cache: slots that swapped-in pages keep while their content is
 * unchanged (swapcache.h). cache_drop runs on any thread (the handler's
 * swap_discard, the pass thread's batches and sweeps, region removal) and
 * changes the page word by compare-and-swap only; cache_sweep and
 * cache_shrink are the pass thread's, regions_lock held for reading. No
 * lock of its own; freeing a slot takes swapdev's sd->lock (a leaf).
 */
#include "engine/swapcache.h"
#include "engine/swapdev.h"
#include "engine/track.h"

/* Give up the cached slot of *p, if it has one. Only in RESIDENT or ZERO,
 * or in SWAPPING_OUT when @own_transit (the pass thread's own batch).
 * Returns whether a slot was freed. Any thread; compare-and-swap. */
bool cache_drop(ovc_engine *e, struct region *r, uint64_t page, bool own_transit)
{
	pst_t *p = &r->pst[page];
	pst_word w = atomic_load(p);
	for (;;) {
		if (!(w & PST_CACHED) || (pst_in_transit(w) && !own_transit))
			return false;
		if (atomic_compare_exchange_weak(p, &w, w & ~(PST_CACHED | PST_SLOT_LO_MASK)))
			break;
	}
	swapdev_slot_free(e->sw.sd, pst_slot(r, page, w), 1);
	atomic_fetch_sub(&e->c.swap_cache_pages_now, 1);
	return true;
}

/* After a tracking scan of @r (@scanned: it succeeded): a cached page the
 * tracker saw written, or one that became ZERO (a zero-page pass took it,
 * or a swap batch found it zeros), holds a slot that no longer has its
 * content: free it. Pass thread. */
void cache_sweep(ovc_engine *e, struct region *r, bool scanned)
{
	if (atomic_load(&e->c.swap_cache_pages_now) <= 0)
		return;
	for (uint64_t pg = 0; pg < r->npages; pg++) {
		pst_word w = atomic_load(&r->pst[pg]);
		if ((w & PST_CACHED) &&
		    (pst_state(w) == PST_ZERO || (scanned && track_written(r->track, pg))))
			cache_drop(e, r, pg, false);
	}
}

/* Free cached slots of resident pages, up to @want, in every region: the
 * swap file is full and colder pages wait. regions_lock held. Returns how
 * many were freed. */
uint64_t cache_shrink(ovc_engine *e, uint64_t want)
{
	uint64_t freed = 0;
	for (size_t i = 0; i < e->nregions && freed < want; i++) {
		struct region *r = e->regions[i];
		for (uint64_t pg = 0; pg < r->npages && freed < want; pg++)
			freed += cache_drop(e, r, pg, false);
	}
	return freed;
}
