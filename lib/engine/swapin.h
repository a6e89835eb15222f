/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Swap-in (swapin.c): swap_fault, swap_region_bring_back and swap_discard
 * (declared in internal.h), and the readahead state swap.c creates and
 * frees with the engine's swap.
 */
#ifndef OVC_ENGINE_SWAPIN_H
#define OVC_ENGINE_SWAPIN_H

#include "engine/internal.h"

/* Most pages read with a fault, the faulting page included (one request;
 * also the bounce buffer's size). The window starts at one page and doubles
 * while faults come in order, as the kernel's swap readahead does: random
 * faults read 4 KiB, a sequential scan soon reads 256 KiB per fault. */
#define SWAPIN_RA_PAGES 64u

/* The readahead windows and streams of e->sw (sw->ra). ovc_engine_new's
 * thread, before threads start; ra_fini after the in ring is freed. */
int ra_init(struct engine_swap *sw);
void ra_fini(struct engine_swap *sw);

#endif
