/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Taking pages away from the guest, and the staging areas (drop.c). Pass
 * thread only.
 */
#ifndef OVC_ENGINE_DROP_H
#define OVC_ENGINE_DROP_H

#include "engine/internal.h"

/* Set up / tear down e->stage.area (MOVE engines only). */
int staging_init(ovc_engine *e);
void staging_fini(ovc_engine *e);
/* Map fresh anonymous memory over [addr, addr+len) and register it
 * write-protect only: frees whatever the range held (e->stage.area, and the
 * swap-out ring's areas, swapout.c). */
int staging_map_fresh(ovc_engine *e, void *addr, size_t len);
/* staging_map_fresh() over e->stage.area. */
int staging_reset(ovc_engine *e);
/* Drop runs of @r with MADV_DONTNEED (process_madvise batches; MADV_REMOVE
 * on shmem), marking the pages PST_OWN_DROP first when swap is on. Returns
 * the number of leading runs dropped; the rest are as they were. Pass
 * thread, with the engine's threads (the drop raises UFFD_EVENT_REMOVE). */
uint32_t drop_runs(ovc_engine *e, struct region *r, const struct page_run *runs, uint32_t n);
/* UFFDIO_MOVE guest pages [p, end) of @r to @stage (empty: mapped fresh
 * since its last use), setting moved[] (from p) for the pages that went;
 * after a failed move, a staging slot that holds a page counts as moved,
 * whatever the ioctl reported (uffd.c, uffd_slots_filled). A page refused
 * with EBUSY (pinned, shared) stays and counts in pinned_pages_kept, the
 * rest go on. EAGAIN is waited out when @wait (never under r->lock), else
 * returned, as is any other error. Pass thread. */
int move_to_stage(ovc_engine *e, struct region *r, uint32_t p, uint32_t end, uint8_t *stage,
		  uint8_t *moved, bool wait);
/* The write-protect paths' drop where the kernel has UFFDIO_MOVE: move the
 * runs (at most BATCH_PAGES pages, in transit and write-protected) into
 * staging, look at them there, free staging. Pages are numbered in run
 * order. MOVE refuses a page the kernel holds pinned: it stays. A moved
 * page that is not what the caller checked — want[i] (want NULL: all
 * zeros; MOVE_OUT_ANY: anything) — was written through a pin released
 * after the check: it goes back. kept[i] is set for the pages that stay;
 * both kinds count in pinned_pages_kept. Raises no UFFD_EVENT_REMOVE.
 * Returns 0 or -errno (staging unusable or a MOVE failed: the pages not
 * taken are kept). Pass thread. */
#define MOVE_OUT_ANY ((const uint8_t *)1)
int move_out_runs(ovc_engine *e, struct region *r, const struct page_run *runs, uint32_t n,
		  const uint8_t *const *want, uint8_t *kept);

#endif
