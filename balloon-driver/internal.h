/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Inside the balloon drivers: the backend ops table, the shared handle, the
 * event queue, the figures cache, sockets and their failures, and the QMP
 * JSON reader. Not for the daemon.
 *
 * Locking: struct ovcd_balloon.lock protects only the event queue (queue,
 * queue_n, queue_cap) and the eventfd counter; backend threads take it to
 * push, ovcd_balloon_process() to pop. It is never held across a call into
 * libvirt, QEMU or a user callback. Everything else of the handle (cache,
 * fail, waiter, error) belongs to the thread that owns the handle.
 *
 * The backends never wait for a peer: each peer is a state machine with
 * one request in flight and one deadline for it, driven by process() and
 * refresh(); results land in the cache (balloon_cache_put) and requests
 * end in balloon_request_done().
 */
#ifndef OVC_BALLOON_INTERNAL_H
#define OVC_BALLOON_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>

#include "driver.h"

struct json_object;

struct balloon_ops {
	const char *name;
	/* The reason of -ENOENT for a name no guest of this backend has. */
	const char *no_such_guest;
	int (*open)(ovcd_balloon *b);
	void (*close)(ovcd_balloon *b);
	/* Start refreshing every guest's figures (and look for new guests)
	 * where no request is in flight; never waits for a peer. */
	int (*refresh)(ovcd_balloon *b);
	/* Queue the target for the hypervisor (no waiting); it ends in
	 * balloon_request_done(). On an immediate failure b->error holds
	 * only the reason; the caller names guest and target. */
	int (*set_target)(ovcd_balloon *b, const char *name, uint64_t target_bytes);
	/* The guest's balloon driver did not move within the timeout. */
	void (*mark_absent)(ovcd_balloon *b, const char *name);
	/* Read pending input, run deadlines, retry connections; may queue
	 * events. Never waits for a peer. */
	int (*process)(ovcd_balloon *b);
	/* ms until process() wants to run again, or -1. */
	int (*timeout_msec)(const ovcd_balloon *b);
	/* Optional (NULL: -EOPNOTSUPP): an embedded engine's reclaim target,
	 * queued like set_target. */
	int (*set_reclaim)(ovcd_balloon *b, const char *name, uint64_t reclaim_bytes);
};

struct balloon_event {
	enum ovcd_balloon_event_type type;
	char *guest;
	uint64_t actual_bytes;
	enum ovcd_balloon_request request; /* FAILED only */
	uint64_t request_bytes;
	int err;
	char *error;
};

/* A caller inside ovcd_balloon_set_target(OVC_BALLOON_TARGET_WAIT). */
struct balloon_waiter {
	bool active, done;
	enum ovcd_balloon_request request;
	uint64_t bytes;
	char name[OVC_BALLOON_NAME_MAX];
	int err;
	char error[512];
};

/* A socket file (by device and inode) that failed, and when to try again. */
struct balloon_fail {
	dev_t dev;
	ino_t ino;
	uint64_t retry_usec; /* CLOCK_MONOTONIC */
	unsigned backoff_msec;
	bool seen; /* still in the directory at this rescan */
};

struct ovcd_balloon {
	struct ovcd_balloon_opts opts; /* copied; strings are the caller's */
	const struct balloon_ops *ops;
	void *backend;
	int epoll_fd; /* what ovcd_balloon_fd() hands out: event_fd + backend fds */
	int event_fd; /* counts queued events */
	pthread_mutex_t lock;
	struct balloon_event *queue;
	size_t queue_n, queue_cap;
	char error[512];
	struct ovcd_balloon_guest *cache; /* every guest's last figures */
	size_t cache_n, cache_cap;
	struct balloon_fail *fail;
	size_t fail_n, fail_cap;
	struct balloon_waiter waiter;
};

extern const struct balloon_ops balloon_libvirt_ops;
extern const struct balloon_ops balloon_qmp_ops;
extern const struct balloon_ops balloon_ovc_ops;

/* Queue an event (any thread). Drops it, with a debug log, on ENOMEM. */
void balloon_queue_event(ovcd_balloon *b, enum ovcd_balloon_event_type type, const char *guest,
			 uint64_t actual_bytes);
/* Queue OVC_BALLOON_EVENT_FAILED for a request of @guest that failed
 * after its call returned; @error is the sentence naming the guest. */
void balloon_queue_failed(ovcd_balloon *b, const char *guest, enum ovcd_balloon_request request,
			  uint64_t request_bytes, int err, const char *error);
/* Cache @g's figures as the guest's last (by name) and queue
 * OVC_BALLOON_EVENT_STATS. -ENOMEM leaves the cache as it was. */
int balloon_cache_put(ovcd_balloon *b, const struct ovcd_balloon_guest *g);
struct ovcd_balloon_guest *balloon_cache_get(ovcd_balloon *b, const char *name);
void balloon_cache_drop(ovcd_balloon *b, const char *name);
/* A queued request of @name ended: @err 0 or -errno with @why, the reason
 * (the peer's words are escaped here). A caller waiting for it gets it;
 * else a failure becomes OVC_BALLOON_EVENT_FAILED. */
void balloon_request_done(ovcd_balloon *b, const char *name, enum ovcd_balloon_request req, uint64_t bytes,
			  int err, const char *why);
/* Copy @src with every control byte as \xNN, cut to fit @size. */
void balloon_escape(char *dst, size_t size, const char *src);

/* A connected peer. */
struct balloon_peer {
	int fd;       /* SOCK_NONBLOCK|SOCK_CLOEXEC */
	dev_t dev;    /* the socket file's, also after most failures (0: not opened) */
	ino_t ino;
	pid_t pid;    /* the listener's, SO_PEERCRED */
	uid_t uid;
};
/* Connect to the socket file @name under @dirfd (AT_FDCWD and an absolute
 * path for a listed socket) without following a symlink: opened
 * O_PATH|O_NOFOLLOW, checked to be a socket, connected non-blocking through
 * /proc/self/fd/N, and the listener (SO_PEERCRED) must own the file.
 * -ELOOP for a symlink, -ENOTSOCK, -EAGAIN for a full listen queue,
 * -ECONNREFUSED, -EPERM for an owner mismatch. */
int balloon_connect(int dirfd, const char *name, struct balloon_peer *ret);

/* Failed socket files: not tried again before their back-off (doubling
 * from @min_msec to @max_msec). note() returns true the first time (log
 * a warning once per file). */
bool balloon_fail_blocked(ovcd_balloon *b, dev_t dev, ino_t ino);
bool balloon_fail_note(ovcd_balloon *b, dev_t dev, ino_t ino, unsigned min_msec, unsigned max_msec);
void balloon_fail_clear(ovcd_balloon *b, dev_t dev, ino_t ino);
/* Around a rescan: begin, then blocked()/note() mark the files still
 * there, and end forgets the others — a file system reuses the inode of a
 * removed socket, and a new socket must not inherit its back-off. */
void balloon_fail_sweep_begin(ovcd_balloon *b);
void balloon_fail_sweep_end(ovcd_balloon *b);

/* A peer's circuit breaker: after BALLOON_BREAKER_FAILS requests in a row
 * failed, no request goes to it for a back-off doubling from 1 s to 60 s;
 * then one request probes it, and one success closes it again. */
#define BALLOON_BREAKER_FAILS 3
#define BALLOON_BREAKER_MIN_MSEC 1000
#define BALLOON_BREAKER_MAX_MSEC 60000
struct balloon_breaker {
	unsigned fails;
	unsigned backoff_msec;
	uint64_t open_until_usec;
};
void balloon_breaker_fail(struct balloon_breaker *k, uint64_t now_usec);
void balloon_breaker_ok(struct balloon_breaker *k);
bool balloon_breaker_open(const struct balloon_breaker *k, uint64_t now_usec);

/* Add/remove a backend fd to the pollable set (EPOLLIN). */
int balloon_watch_fd(ovcd_balloon *b, int fd);
void balloon_unwatch_fd(ovcd_balloon *b, int fd);
/* Watch the directory @dir_fd (opened, O_PATH is enough; @dir is its path
 * for the error sentence) for sockets coming and going (inotify, in the
 * pollable set); *ret_fd is the inotify fd, closed by the caller. @what
 * names the directory in the error sentence ("QMP socket"). */
int balloon_watch_dir(ovcd_balloon *b, const char *dir, int dir_fd, const char *what, int *ret_fd);
/* Read every pending inotify event of @fd (may be -1); true if any. */
bool balloon_drain_inotify(int fd);
/* Record the error sentence (and log it at debug level); returns @err. */
int balloon_error(ovcd_balloon *b, int err, const char *fmt, ...) _printf_(3, 4);

uint64_t balloon_stale_sec(const ovcd_balloon *b);
unsigned balloon_confirm_msec(const ovcd_balloon *b);

/* stats.c */
uint64_t balloon_json_u64(struct json_object *o);
int balloon_stats_from_qmp_obj(struct json_object *gs, uint64_t actual_bytes, uint64_t max_bytes,
			       uint64_t now_sec, uint64_t max_age_sec, struct ovcd_guest_stats *st);

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
