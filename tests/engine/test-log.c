/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: the log queue (lib/common/log.c) that keeps the VMM's callbacks out
 * of the library's locks. Real engine locks (lib/engine/lock.h) on this
 * thread; the callbacks record what they see, including the held-lock
 * count at the time they run.
 */
#include <pthread.h>
#include <string.h>

#include <ovc/ovc.h>

#include "common/log.h"
#include "engine/lock.h"
#include "ovc-test.h"

struct seen {
	unsigned nmsg, nio;
	char msg[64][128];
	enum ovc_log_level level[64];
	uint64_t gpa[256];
	int err[256];
	unsigned held_at_call;       /* sum of log_held() seen by the callbacks */
	unsigned order[320];         /* 1: a message, 2: a report */
	unsigned n;
};

static void on_log(void *ud, enum ovc_log_level level, const char *msg)
{
	struct seen *s = ud;
	s->held_at_call += log_held();
	if (s->nmsg < 64) {
		snprintf(s->msg[s->nmsg], sizeof(s->msg[0]), "%s", msg);
		s->level[s->nmsg] = level;
	}
	s->nmsg++;
	if (s->n < 320)
		s->order[s->n++] = 1;
}

static void on_io_error(void *ud, uint64_t gpa, int err)
{
	struct seen *s = ud;
	s->held_at_call += log_held();
	if (s->nio < 256) {
		s->gpa[s->nio] = gpa;
		s->err[s->nio] = err;
	}
	s->nio++;
	if (s->n < 320)
		s->order[s->n++] = 2;
}

/* With no lock held, both callbacks run at once. */
static void test_direct(void **state)
{
	struct seen s = { 0 };
	struct logger lg = { on_log, &s, OVC_LOG_DEBUG };
	log_err(&lg, "now %d", 1);
	assert_int_equal(s.nmsg, 1);
	assert_string_equal(s.msg[0], "now 1");
	log_io_error(&lg, on_io_error, &s, 0x1000, -EIO);
	assert_int_equal(s.nio, 1);
	assert_int_equal(s.err[0], -EIO);
	log_io_error(&lg, NULL, NULL, 0x2000, -EIO); /* no callback: nothing */
	assert_int_equal(s.nio, 1);
	assert_int_equal(s.held_at_call, 0);
}

/* Under nested locks nothing is delivered; the last unlock delivers all
 * of it, in order, with the count at 0. Filtered levels are not queued. */
static void test_queued_until_last_unlock(void **state)
{
	struct seen s = { 0 };
	struct logger lg = { on_log, &s, OVC_LOG_NOTICE };
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

	lock_mutex(&m);
	lock_read(&rw);
	assert_int_equal(log_held(), 2);
	log_err(&lg, "first");
	log_debug(&lg, "filtered");
	log_io_error(&lg, on_io_error, &s, 0x3000, -EIO);
	log_warning(&lg, "second");
	unlock_rw(&rw);
	assert_int_equal(s.nmsg + s.nio, 0);
	unlock_mutex(&m);
	assert_int_equal(log_held(), 0);
	assert_int_equal(s.nmsg, 2);
	assert_string_equal(s.msg[0], "first");
	assert_int_equal(s.level[0], OVC_LOG_ERR);
	assert_string_equal(s.msg[1], "second");
	assert_int_equal(s.nio, 1);
	assert_int_equal(s.gpa[0], 0x3000);
	assert_int_equal(s.held_at_call, 0);
	/* Messages come before reports: the engine logs a read error, then
	 * reports it. */
	assert_int_equal(s.order[0], 1);
	assert_int_equal(s.order[1], 1);
	assert_int_equal(s.order[2], 2);
}

/* Past LOG_QUEUE_MAX messages under one lock the rest are counted and
 * reported as dropped; reports are never dropped. */
static void test_overflow(void **state)
{
	struct seen s = { 0 };
	struct logger lg = { on_log, &s, OVC_LOG_DEBUG };
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

	lock_mutex(&m);
	for (unsigned i = 0; i < LOG_QUEUE_MAX + 5; i++)
		log_info(&lg, "msg %u", i);
	for (unsigned i = 0; i < 200; i++)
		log_io_error(&lg, on_io_error, &s, (uint64_t)i << 12, -EIO);
	unlock_mutex(&m);
	assert_int_equal(s.nmsg, LOG_QUEUE_MAX + 1);
	assert_string_equal(s.msg[LOG_QUEUE_MAX - 1], "msg 15");
	assert_non_null(strstr(s.msg[LOG_QUEUE_MAX], "5 messages dropped"));
	assert_int_equal(s.level[LOG_QUEUE_MAX], OVC_LOG_WARNING);
	assert_int_equal(s.nio, 200);
	for (unsigned i = 0; i < 200; i++)
		assert_int_equal(s.gpa[i], (uint64_t)i << 12);
	assert_int_equal(s.held_at_call, 0);

	/* The queue is empty again: the next hold starts afresh. */
	memset(&s, 0, sizeof(s));
	lock_mutex(&m);
	log_err(&lg, "again");
	unlock_mutex(&m);
	assert_int_equal(s.nmsg, 1);
	assert_string_equal(s.msg[0], "again");
}

/* The count and the queue are per thread: another thread's hold does not
 * hold back this thread's messages. */
static void *other_thread(void *arg)
{
	struct seen *s = arg;
	struct logger lg = { on_log, s, OVC_LOG_DEBUG };
	log_err(&lg, "other");
	return NULL;
}

static void test_per_thread(void **state)
{
	struct seen s = { 0 };
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_t th;

	lock_mutex(&m);
	assert_int_equal(pthread_create(&th, NULL, other_thread, &s), 0);
	pthread_join(th, NULL);
	assert_int_equal(s.nmsg, 1);
	unlock_mutex(&m);
	assert_int_equal(s.held_at_call, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_direct),
		cmocka_unit_test(test_queued_until_last_unlock),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_per_thread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
