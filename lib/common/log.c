// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Logging and the callbacks' queue (log.h). Any thread; all state is the
 * calling thread's own (thread-local), so no lock. The queue is allocated
 * on the first message a thread produces under a lock and freed at its
 * exit (a pthread key's destructor); threads that never log under a lock
 * never allocate.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

struct queued_msg {
	ovc_log_fn fn;
	void *userdata;
	enum ovc_log_level level;
	char text[512];
};

struct queued_io_error {
	void (*fn)(void *, uint64_t, int);
	void *userdata;
	uint64_t guest_phys;
	int err;
};

struct log_queue {
	struct queued_msg msg[LOG_QUEUE_MAX];
	unsigned nmsg;
	unsigned long dropped;        /* messages past LOG_QUEUE_MAX */
	struct logger drop_lg;    /* where to say so: the first dropped one's */
	struct queued_io_error *io;   /* grows; never dropped */
	size_t nio, io_cap;
};

static __thread unsigned held;
static __thread struct log_queue *queue;
static pthread_key_t queue_key;
static pthread_once_t queue_once = PTHREAD_ONCE_INIT;
static bool queue_key_ok;

static void queue_free(void *p)
{
	struct log_queue *q = p;
	if (q)
		free(q->io);
	free(q);
}

static void queue_key_init(void)
{
	queue_key_ok = pthread_key_create(&queue_key, queue_free) == 0;
}

static struct log_queue *queue_get(void)
{
	if (queue)
		return queue;
	pthread_once(&queue_once, queue_key_init);
	if (!queue_key_ok)
		return NULL;
	struct log_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	if (pthread_setspecific(queue_key, q) != 0) {
		free(q);
		return NULL;
	}
	return queue = q;
}

/* Every call of a caller's callback goes through here. */
static void deliver_msg(ovc_log_fn fn, void *userdata, enum ovc_log_level level, const char *text)
{
	assert(held == 0);
	fn(userdata, level, text);
}

static void deliver_io_error(void (*fn)(void *, uint64_t, int), void *userdata, uint64_t gpa, int err)
{
	assert(held == 0);
	fn(userdata, gpa, err);
}

void log_emit(const struct logger *lg, enum ovc_log_level level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (!lg || !lg->fn || level > lg->level)
		return;
	if (held) {
		struct log_queue *q = queue_get();
		if (!q || q->nmsg == LOG_QUEUE_MAX) {
			if (q && !q->dropped++)
				q->drop_lg = *lg;
			return;
		}
		struct queued_msg *m = &q->msg[q->nmsg++];
		m->fn = lg->fn;
		m->userdata = lg->userdata;
		m->level = level;
		va_start(ap, fmt);
		vsnprintf(m->text, sizeof(m->text), fmt, ap);
		va_end(ap);
		return;
	}
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	deliver_msg(lg->fn, lg->userdata, level, buf);
}

void log_io_error(const struct logger *lg, void (*fn)(void *, uint64_t, int), void *userdata,
		  uint64_t guest_phys, int err)
{
	if (!fn)
		return;
	if (!held) {
		deliver_io_error(fn, userdata, guest_phys, err);
		return;
	}
	struct log_queue *q = queue_get();
	if (q && q->nio == q->io_cap) {
		size_t cap = q->io_cap ? 2 * q->io_cap : 8;
		struct queued_io_error *n = realloc(q->io, cap * sizeof(*n));
		if (n) {
			q->io = n;
			q->io_cap = cap;
		}
	}
	if (!q || q->nio == q->io_cap) {
		log_err(lg, "out of memory: the I/O error report of guest 0x%" PRIx64 " (%s) is lost",
			guest_phys, strerror(err < 0 ? -err : err));
		return;
	}
	q->io[q->nio++] = (struct queued_io_error){ fn, userdata, guest_phys, err };
}

void log_hold(void)
{
	held++;
}

/* Deliver in the order produced: messages first (the engine logs a read
 * error before it reports it), then the reports. A callback that logs
 * through the library again (it must not call back into the engine) finds
 * the count at 0 and is delivered at once. */
static void flush(struct log_queue *q)
{
	while (q->nmsg || q->dropped || q->nio) {
		struct queued_msg m;
		if (q->nmsg) {
			m = q->msg[0];
			memmove(q->msg, q->msg + 1, --q->nmsg * sizeof(q->msg[0]));
			deliver_msg(m.fn, m.userdata, m.level, m.text);
			continue;
		}
		if (q->dropped) {
			unsigned long n = q->dropped;
			struct logger lg = q->drop_lg;
			q->dropped = 0;
			snprintf(m.text, sizeof(m.text), "%lu messages dropped (more than %u logged under one lock)",
				 n, LOG_QUEUE_MAX);
			deliver_msg(lg.fn, lg.userdata, OVC_LOG_WARNING, m.text);
			continue;
		}
		struct queued_io_error r = q->io[0];
		memmove(q->io, q->io + 1, --q->nio * sizeof(q->io[0]));
		deliver_io_error(r.fn, r.userdata, r.guest_phys, r.err);
	}
}

void log_release(void)
{
	assert(held > 0);
	if (--held == 0 && queue)
		flush(queue);
}

unsigned log_held(void)
{
	return held;
}

/* libovc unloaded (dlclose): no thread may run queue_free from it later. */
__attribute__((destructor)) static void log_fini(void)
{
	if (queue_key_ok)
		pthread_key_delete(queue_key);
}
