/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The pass thread: the worker's loop (a background scan batch within the
 * CPU budget, then swap work), its sleep and wake-up, and in NO_THREADS
 * mode the timer that says when the next batch is due. A pass is one
 * thread at a time: pass_begin() takes pass_lock and publishes the tid
 * (the handler tells the pass's own faults by it, fault.c).
 *
 * Runs on the worker thread, or inside ovc_engine_process() on the VMM's
 * loop thread; pass_begin()/pass_end() also on callers of
 * ovc_engine_scan_sync(), tests and the benchmark. Below engine.c; calls
 * share.c and swap.c.
 */
#include <sys/timerfd.h>

#include "engine/compat.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/pass.h"

void pass_begin(ovc_engine *e)
{
	lock_mutex(&e->pass.lock);
	atomic_store(&e->pass.tid, engine_gettid());
}

void pass_end(ovc_engine *e)
{
	atomic_store(&e->pass.tid, 0);
	unlock_mutex(&e->pass.lock);
}

void pass_wake(ovc_engine *e)
{
	if (e->flags & OVC_ENGINE_NO_THREADS) {
		uint64_t one = 1;
		if (write(e->event_fd, &one, sizeof(one)) < 0) {
			/* counter full: it is readable anyway */
		}
		return;
	}
	lock_mutex(&e->worker.wake_lock);
	e->worker.wake_pending = true;
	pthread_cond_signal(&e->worker.wake_cond);
	unlock_mutex(&e->worker.wake_lock);
}

/* Sleep until @deadline (CLOCK_MONOTONIC ns) or a wake-up. */
static void worker_sleep(ovc_engine *e, uint64_t deadline)
{
	struct timespec ts = { (time_t)(deadline / NSEC_PER_SEC), (long)(deadline % NSEC_PER_SEC) };
	lock_mutex(&e->worker.wake_lock);
	while (!e->worker.wake_pending && !atomic_load(&e->worker.stop))
		if (pthread_cond_timedwait(&e->worker.wake_cond, &e->worker.wake_lock, &ts) == ETIMEDOUT)
			break;
	e->worker.wake_pending = false;
	unlock_mutex(&e->worker.wake_lock);
}

/* Nanoseconds to rest after a batch that used @cpu_ns of CPU in @wall_ns,
 * so that the scanner stays within scan_cpu_permille of one CPU. */
static uint64_t budget_rest(const ovc_engine *e, uint64_t cpu_ns, uint64_t wall_ns)
{
	uint64_t need = cpu_ns * 1000 / e->scan_cpu_permille;
	return need > wall_ns ? need - wall_ns : 0;
}

/* One background batch with bookkeeping; returns ns to rest afterwards. */
uint64_t pass_background_batch(ovc_engine *e)
{
	bool wrapped;
	uint64_t t0 = now_nsec(CLOCK_MONOTONIC), c0 = now_nsec(CLOCK_THREAD_CPUTIME_ID);

	pass_begin(e);
	if (e->pass.bg_cursor == 0) {
		e->pass.bg_t0_nsec = t0;
		e->pass.bg_scanned0 = atomic_load(&e->c.pages_scanned);
	}
	int r = share_step(e, &e->pass.bg_cursor, &wrapped);
	pass_end(e);
	if (r < 0)
		log_debug(&e->log, "scan batch: %s", ovc_strerror(r));

	uint64_t t1 = now_nsec(CLOCK_MONOTONIC);
	uint64_t rest = budget_rest(e, now_nsec(CLOCK_THREAD_CPUTIME_ID) - c0, t1 - t0);
	if (wrapped) {
		uint64_t bytes = (atomic_load(&e->c.pages_scanned) - e->pass.bg_scanned0) << PAGE_SHIFT;
		if (t1 > e->pass.bg_t0_nsec && bytes)
			atomic_store(&e->c.scan_bytes_per_sec,
				     (uint64_t)((double)bytes * 1e9 / (double)(t1 - e->pass.bg_t0_nsec)));
		rest = MAX(rest, e->scan_interval_usec * NSEC_PER_USEC);
	}
	return rest;
}

/* Swap work as the pass thread: a tracking interval when due (or @force),
 * then swap-out towards the reclaim target. */
void pass_swap_work(ovc_engine *e, bool force)
{
	if (!swap_enabled(e))
		return;
	pass_begin(e);
	int64_t r = swap_tick(e, force);
	pass_end(e);
	if (r < 0)
		log_debug(&e->log, "swap: %s", ovc_strerror((int)r));
}

void *pass_thread_main(void *arg)
{
	ovc_engine *e = arg;

	while (!atomic_load(&e->worker.stop)) {
		if (e->flags & OVC_ENGINE_NO_AUTOSCAN) {
			worker_sleep(e, UINT64_MAX / 2);
			/* Woken by ovc_engine_reclaim: one interval. Other
			 * wake-ups (a region added) are no interval: ages
			 * count intervals, and an extra one makes hot pages
			 * look cold. */
			if (!atomic_load(&e->worker.stop) && atomic_exchange(&e->sw.kick, false))
				pass_swap_work(e, true);
			continue;
		}
		uint64_t rest = pass_background_batch(e);
		pass_swap_work(e, false);
		if (rest)
			worker_sleep(e, now_nsec(CLOCK_MONOTONIC) + rest);
	}
	return NULL;
}

void pass_arm_timer(ovc_engine *e, uint64_t delay_ns)
{
	struct itimerspec its = { .it_value = { (time_t)(delay_ns / NSEC_PER_SEC),
						(long)(delay_ns % NSEC_PER_SEC) } };
	if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1;
	timerfd_settime(e->timer_fd, 0, &its, NULL);
}
