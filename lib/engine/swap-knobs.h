/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * swap.c's knobs for the engine's tests and the benchmark (through
 * testing.h): defined in swap.c (the staging areas' in swapout.c), never
 * exported (libovc.map). Set them before the engines they are meant for
 * are created; any thread.
 */
#ifndef OVC_ENGINE_SWAP_KNOBS_H
#define OVC_ENGINE_SWAP_KNOBS_H

#include <stdbool.h>
#include <stdint.h>

#include <ovc/engine.h>

/* The rate limit's clock; set it before the first tick. */
void engine_test_set_clock(ovc_engine *e, uint64_t (*clock_nsec)(void));
/* How far ahead the swap file of engines created from now on is
 * zero-filled (swapdev's fill_ahead_bytes; SWAPDEV_FILL_AHEAD_DEFAULT
 * unless set). The benchmark compares with 0 (no fill) in the same run. */
void engine_test_set_fill_ahead(uint64_t bytes);
/* The benchmark's peer: engines created while set never scrub freed slots. */
void engine_test_set_no_scrub(bool no_scrub);
/* Staging areas in the swap-out ring, and how many hold pages now (0
 * outside a tick unless a reset failed). */
unsigned engine_test_areas(void);
unsigned engine_test_areas_used(const ovc_engine *e);

#endif
