/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pass thread, its budget and the NO_THREADS timer (pass.c). */
#ifndef OVC_ENGINE_PASS_H
#define OVC_ENGINE_PASS_H

#include "engine/internal.h"

/* Take pass_lock and publish this thread as the pass thread; undo. */
void pass_begin(ovc_engine *e);
void pass_end(ovc_engine *e);
/* Wake the worker (threads) or make the loop's fd readable (NO_THREADS). */
void pass_wake(ovc_engine *e);
/* One background scan batch with bookkeeping; returns ns to rest after. */
uint64_t pass_background_batch(ovc_engine *e);
/* Swap work as the pass thread: an interval when due (or @force), then
 * swap-out towards the reclaim target. */
void pass_swap_work(ovc_engine *e, bool force);
/* The worker thread. */
void *pass_thread_main(void *arg);
/* NO_THREADS: the next batch is due in @delay_ns. */
void pass_arm_timer(ovc_engine *e, uint64_t delay_ns);

#endif
