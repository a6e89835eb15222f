/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Inside the balloon drivers: the backend ops table, the shared handle, the
 * event queue and the QMP JSON reader. Not for the daemon.
 *
 * Locking: struct ovc_balloon.lock protects only the event queue (queue,
 * queue_n, queue_cap) and the eventfd counter; backend threads take it to
 * push, ovc_balloon_process() to pop. It is never held across a call into
 * libvirt, QEMU or a user callback.
 */
#ifndef OVC_BALLOON_INTERNAL_H
#define OVC_BALLOON_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "driver.h"

struct json_object;

struct balloon_ops {
	const char *name;
	int (*open)(ovc_balloon *b);
	void (*close)(ovc_balloon *b);
	/* Fill a malloc'ed array of every running guest. */
	int (*list)(ovc_balloon *b, struct ovc_balloon_guest **ret, size_t *ret_n);
	/* One guest; -ENOENT if none by that name. */
	int (*guest)(ovc_balloon *b, const char *name, struct ovc_balloon_guest *ret);
	/* Hand the target to the hypervisor (no waiting). On failure,
	 * b->error holds only the reason; the caller names guest and target. */
	int (*set_target)(ovc_balloon *b, const char *name, uint64_t target_bytes);
	/* The guest's balloon driver did not move within the timeout. */
	void (*mark_absent)(ovc_balloon *b, const char *name);
	/* Read pending input, retry connections; may queue events. */
	int (*process)(ovc_balloon *b);
	/* ms until process() wants to run again, or -1. */
	int (*timeout_msec)(const ovc_balloon *b);
	/* Optional (NULL: -EOPNOTSUPP): an embedded engine's reclaim target.
	 * On failure b->error holds only the reason, as for set_target. */
	int (*set_reclaim)(ovc_balloon *b, const char *name, uint64_t reclaim_bytes);
};

struct balloon_event {
	enum ovc_balloon_event_type type;
	char *guest;
	uint64_t actual_bytes;
	enum ovc_balloon_request request; /* FAILED only */
	uint64_t request_bytes;
	int err;
	char *error;
};

struct ovc_balloon {
	struct ovc_balloon_opts opts; /* copied; strings are the caller's */
	const struct balloon_ops *ops;
	void *backend;
	int epoll_fd; /* what ovc_balloon_fd() hands out: event_fd + backend fds */
	int event_fd; /* counts queued events */
	pthread_mutex_t lock;
	struct balloon_event *queue;
	size_t queue_n, queue_cap;
	char error[512];
};

extern const struct balloon_ops balloon_libvirt_ops;
extern const struct balloon_ops balloon_qmp_ops;
extern const struct balloon_ops balloon_ovc_ops;

/* Queue an event (any thread). Drops it, with a debug log, on ENOMEM. */
void balloon_queue_event(ovc_balloon *b, enum ovc_balloon_event_type type, const char *guest,
			 uint64_t actual_bytes);
/* Queue OVC_BALLOON_EVENT_FAILED for a request of @guest that failed
 * after its call returned; @error is the sentence naming the guest. */
void balloon_queue_failed(ovc_balloon *b, const char *guest, enum ovc_balloon_request request,
			  uint64_t request_bytes, int err, const char *error);
/* Add/remove a backend fd to the pollable set (EPOLLIN). */
int balloon_watch_fd(ovc_balloon *b, int fd);
void balloon_unwatch_fd(ovc_balloon *b, int fd);
/* Watch @dir for sockets coming and going (inotify, in the pollable set);
 * *ret_fd is the inotify fd, closed by the caller. @what names the
 * directory in the error sentence ("QMP socket"). */
int balloon_watch_dir(ovc_balloon *b, const char *dir, const char *what, int *ret_fd);
/* Read every pending inotify event of @fd (may be -1); true if any. */
bool balloon_drain_inotify(int fd);
/* Record the error sentence (and log it at debug level); returns @err. */
int balloon_error(ovc_balloon *b, int err, const char *fmt, ...) _printf_(3, 4);

uint64_t balloon_stale_sec(const ovc_balloon *b);
unsigned balloon_confirm_msec(const ovc_balloon *b);

/* stats.c */
uint64_t balloon_json_u64(struct json_object *o);
int balloon_stats_from_qmp_obj(struct json_object *gs, uint64_t actual_bytes, uint64_t max_bytes,
			       uint64_t now_sec, uint64_t max_age_sec, struct ovc_guest_stats *st);

/* qmp-json.c: splits a QMP byte stream into messages. QEMU writes one JSON
 * object per line ("\r\n"); a line longer than QMP_LINE_MAX is an error. */
#define QMP_LINE_MAX (1u << 20)

enum qmp_kind {
	QMP_GREETING = 1, /* {"QMP": ...} */
	QMP_RETURN = 2,   /* {"return": ...} */
	QMP_ERROR = 3,    /* {"error": {"class", "desc"}} */
	QMP_EVENT = 4,    /* {"event": NAME, "data": ...} */
};

struct qmp_reader {
	char *buf;
	size_t len, cap;
};

void qmp_reader_init(struct qmp_reader *r);
void qmp_reader_done(struct qmp_reader *r);
/* Append bytes read from the socket. -EPROTO if a line grows too long. */
int qmp_reader_feed(struct qmp_reader *r, const char *data, size_t len);
/* Take the next complete message: 1 and *ret (a reference the caller puts)
 * and *ret_kind, 0 if no complete line is buffered, -EPROTO for a line that
 * is not a JSON object of a known kind (the line is consumed). */
int qmp_reader_next(struct qmp_reader *r, struct json_object **ret, enum qmp_kind *ret_kind);

#endif
