/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the engine's tests (tests/engine) and the benchmark (bench/) may see
 * of an engine besides the public API: a handful of accessors (testing.c)
 * and swap.c's knobs (swap-knobs.h, which swap.c includes itself: the
 * knobs live below the accessors, which call into swap.c). They are built into
 * libovc-core.a and libovc.so but never exported (libovc.map), and
 * struct ovc_engine stays opaque to their users: a test that needs more
 * adds an accessor here rather than reading a field.
 *
 * Threads: the accessors that read regions take regions_lock for reading
 * (any thread but the handler); the returned region stays valid until it
 * is removed. The knobs are read when an engine is created, or by the
 * pass thread (the clock), so set them before the engine runs.
 */
#ifndef OVC_ENGINE_TESTING_H
#define OVC_ENGINE_TESTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ovc/engine.h>

#include "engine/region.h"
#include "engine/sizes.h"
#include "engine/swap-knobs.h"
#include "engine/sys.h"

struct swapdev;
struct swapdev_ring;

/* ovc_engine_new() with another syscall table (fault injection). @sys
 * must outlive the engine. */
int engine_test_new_with_sys(const struct ovc_engine_opts *opts, const struct sys_ops *sys, ovc_engine **ret);
/* One forced swap interval (track scan + swap-out to the target) on the
 * calling thread, as the pass thread (pass_begin/pass_end). */
int64_t engine_test_swap_tick(ovc_engine *e);
/* Set the reclaim target without waking the pass thread (tests then drive
 * intervals by hand with engine_test_swap_tick()). */
void engine_test_set_target(ovc_engine *e, uint64_t bytes);

/* The @i-th region by host address (NULL past the last), and the region
 * holding host address @host (NULL: none). */
struct region *engine_test_region(ovc_engine *e, size_t i);
struct region *engine_test_region_at(ovc_engine *e, const void *host);
/* Pages of every region in state @s. */
size_t engine_test_count_state(ovc_engine *e, enum pst_state s);

/* What the engine chose at creation: uffd features enabled, sync
 * write-protect tracking, the swap candidate list's entries. */
uint64_t engine_test_features(const ovc_engine *e);
bool engine_test_sync_wp(const ovc_engine *e);
size_t engine_test_cand_cap(const ovc_engine *e);
/* The swap file and the swap-out ring (NULL without swap). */
struct swapdev *engine_test_swapdev(ovc_engine *e);
struct swapdev_ring *engine_test_out_ring(ovc_engine *e);
/* Candidates that changed under the engine (stats do not carry it). */
uint64_t engine_test_transit_aborts(const ovc_engine *e);
/* Pages a UFFDIO_MOVE moved though it failed without counting them (in
 * either direction), found in the page tables (uffd.c). */
uint64_t engine_test_moves_unreported(const ovc_engine *e);

#endif
