// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Accessors for the engine's tests and the benchmark (testing.h). Any
 * thread but the handler; the region accessors take regions_lock for
 * reading, the others read fields set when the engine was created, or
 * atomics.
 */
#include "engine/testing.h"

#include "engine/internal.h"
#include "engine/pass.h"
#include "engine/lock.h"

int64_t engine_test_swap_tick(ovc_engine *e)
{
	pass_begin(e);
	int64_t r = swap_tick(e, true);
	pass_end(e);
	return r;
}

void engine_test_set_target(ovc_engine *e, uint64_t bytes)
{
	atomic_store(&e->c_reclaim_target, bytes);
}

struct region *engine_test_region(ovc_engine *e, size_t i)
{
	lock_read(&e->regions_lock);
	struct region *r = i < e->nregions ? e->regions[i] : NULL;
	unlock_rw(&e->regions_lock);
	return r;
}

struct region *engine_test_region_at(ovc_engine *e, const void *host)
{
	lock_read(&e->regions_lock);
	struct region *r = engine_region_of(e, (uint64_t)(uintptr_t)host);
	unlock_rw(&e->regions_lock);
	return r;
}

size_t engine_test_count_state(ovc_engine *e, enum pst_state s)
{
	size_t n = 0;
	lock_read(&e->regions_lock);
	for (size_t i = 0; i < e->nregions; i++)
		for (uint64_t p = 0; p < e->regions[i]->npages; p++)
			n += pst_state(atomic_load(&e->regions[i]->pst[p])) == s;
	unlock_rw(&e->regions_lock);
	return n;
}

uint64_t engine_test_features(const ovc_engine *e)
{
	return e->features;
}

bool engine_test_sync_wp(const ovc_engine *e)
{
	return e->sync_wp;
}

size_t engine_test_cand_cap(const ovc_engine *e)
{
	return e->sw.cand_cap;
}

struct swapdev *engine_test_swapdev(ovc_engine *e)
{
	return e->sw.sd;
}

struct swapdev_ring *engine_test_out_ring(ovc_engine *e)
{
	return e->sw.out_ring;
}

uint64_t engine_test_transit_aborts(const ovc_engine *e)
{
	return atomic_load(&e->c.transit_aborts);
}

uint64_t engine_test_moves_unreported(const ovc_engine *e)
{
	return atomic_load(&e->c.moves_unreported);
}
