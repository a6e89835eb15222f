/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A UFFDIO_MOVE that moves and then says it failed, as Linux 6.18 does
 * under load: -1/EEXIST after moving some or all of its pages, the move
 * field not counting them (docs/engine.md, "A UFFDIO_MOVE that fails
 * after moving"). Give lm->sys to the engine: each UFFDIO_MOVE in the
 * chosen direction is made for real and, when it succeeded, reported as
 * failed with EEXIST, its move field -EEXIST (nothing counted) or half the
 * pages (fewer than went). Every other call is the real syscall. Under a
 * fault injector: fault_inject_init(), then fi.real = &lm->sys.
 *
 * With @touch, before each move out the wrapper writes a byte into the
 * pages i of the range with LIE_TOUCHED(i), in guest RAM and the shadow,
 * as a guest would between the engine's look and its move: that content
 * is in staging when the lie is told and has to come back.
 *
 * Threads: the engine's (whichever thread moves); the counters are atomic.
 */
#ifndef OVC_TEST_LYING_MOVE_H
#define OVC_TEST_LYING_MOVE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/sys.h"

enum lie_dir { LIE_OUT, LIE_BACK }; /* guest -> staging, staging -> guest */

#define LIE_TOUCHED(i) ((i) % 8 < 3) /* runs of 3 pages of every 8 */

struct lying_move {
	struct sys_ops sys;          /* hand &lm->sys to the engine */
	uint8_t *guest, *shadow;
	size_t len;
	enum lie_dir dir;
	bool half;                   /* report half the pages, not none */
	bool touch;
	atomic_long lies;            /* calls that moved and reported failure */
	atomic_long hidden;          /* the pages they moved and did not report */
};

void lying_move_init(struct lying_move *lm, uint8_t *guest, uint8_t *shadow, size_t len, enum lie_dir dir,
		     bool half, bool touch);

#endif
