/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The move-out-first swap-out pipeline (swapout.c). Pass thread, pass_lock
 * held; swap.c's tick calls it.
 */
#ifndef OVC_ENGINE_SWAPOUT_H
#define OVC_ENGINE_SWAPOUT_H

#include <stdint.h>

#include "engine/internal.h"

/* Swap-out pipeline (see "swap-out" below): staging areas of BATCH_PAGES
 * in the ring, requests in flight at most (SWAPOUT_REQ_PAGES pages
 * each). */
#define SWAPOUT_AREAS 8u
#define SWAPOUT_RING_DEPTH (SWAPOUT_AREAS * BATCH_PAGES / SWAPOUT_REQ_PAGES)

/* The ring of staging areas (e->sw.areas, stage, stage_map), mapped fresh.
 * ovc_engine_new's thread; swap_fini frees it. */
int swapout_init(ovc_engine *e);
/* Start swapping out @n pages (sorted, RESIDENT when listed) of @r: move
 * them to a staging area, queue their writes. Returns pages queued for
 * writing, or -errno when no page could be moved out. */
int swapout_batch(ovc_engine *e, struct region *r, const uint64_t *pages, unsigned n);
/* End every write in flight, then free the whole ring in one go. */
void swapout_drain(ovc_engine *e);

#endif
