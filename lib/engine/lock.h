/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Every lock the engine takes goes through these wrappers (any thread):
 * they keep this thread's count of library locks held (common/log.h), so
 * that the log callback and io_error_fn are never called under one: what
 * is logged or reported meanwhile is queued and delivered by the unlock
 * that releases the last lock. The lock order is internal.h's.
 */
#ifndef OVC_ENGINE_LOCK_H
#define OVC_ENGINE_LOCK_H

#include <pthread.h>
#include <time.h>

#include "common/log.h"

static inline void lock_mutex(pthread_mutex_t *m)
{
	pthread_mutex_lock(m);
	log_hold();
}

static inline void unlock_mutex(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
	log_release();
}

static inline void lock_read(pthread_rwlock_t *l)
{
	pthread_rwlock_rdlock(l);
	log_hold();
}

static inline void lock_write(pthread_rwlock_t *l)
{
	pthread_rwlock_wrlock(l);
	log_hold();
}

static inline void unlock_rw(pthread_rwlock_t *l)
{
	pthread_rwlock_unlock(l);
	log_release();
}

#endif
