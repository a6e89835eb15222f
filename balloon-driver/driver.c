/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The backend-independent half of a balloon driver: option checks, the
 * event queue, the pollable fd, error sentences, and waiting for a balloon
 * to reach its target. See driver.h for the threading rules; the queue is
 * the only state other threads touch, under b->lock.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>

#include "internal.h"
#include "util.h"

uint64_t balloon_stale_sec(const ovc_balloon *b)
{
	if (b->opts.stale_sec)
		return b->opts.stale_sec;
	/* Three missed periods plus slack for QEMU's timer and libvirt's
	 * one-second granularity. */
	return 3 * (uint64_t)MAX(b->opts.stats_period_sec, 1u) + 5;
}

unsigned balloon_confirm_msec(const ovc_balloon *b)
{
	return b->opts.confirm_timeout_msec ? b->opts.confirm_timeout_msec : 30000;
}

int balloon_error(ovc_balloon *b, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b->error, sizeof(b->error), fmt, ap);
	va_end(ap);
	log_debug(b->opts.logger, "%s", b->error);
	return err;
}

const char *ovc_balloon_error(const ovc_balloon *b)
{
	return b ? b->error : "";
}

static void queue_push(ovc_balloon *b, const struct balloon_event *in)
{
	struct balloon_event ev = *in;
	uint64_t one = 1;

	ev.guest = ev.error = NULL;
	if ((in->guest && !(ev.guest = strdup(in->guest))) || (in->error && !(ev.error = strdup(in->error))))
		goto fail;
	pthread_mutex_lock(&b->lock);
	if (b->queue_n == b->queue_cap) {
		size_t cap = b->queue_cap ? b->queue_cap * 2 : 16;
		struct balloon_event *q = realloc(b->queue, cap * sizeof(*q));

		if (!q) {
			pthread_mutex_unlock(&b->lock);
			goto fail;
		}
		b->queue = q;
		b->queue_cap = cap;
	}
	b->queue[b->queue_n++] = ev;
	pthread_mutex_unlock(&b->lock);
	/* Cannot fail short of counter overflow, which 2^64 events won't reach. */
	(void)!write(b->event_fd, &one, sizeof(one));
	return;
fail:
	free(ev.guest);
	free(ev.error);
	log_debug(b->opts.logger, "balloon event %d for '%s' dropped: out of memory", in->type,
		  in->guest ? in->guest : "");
}

void balloon_queue_event(ovc_balloon *b, enum ovc_balloon_event_type type, const char *guest,
			 uint64_t actual_bytes)
{
	queue_push(b, &(struct balloon_event){ .type = type, .guest = (char *)guest,
					       .actual_bytes = actual_bytes, .request_bytes = OVC_UNKNOWN });
}

void balloon_queue_failed(ovc_balloon *b, const char *guest, enum ovc_balloon_request request,
			  uint64_t request_bytes, int err, const char *error)
{
	queue_push(b, &(struct balloon_event){ .type = OVC_BALLOON_EVENT_FAILED, .guest = (char *)guest,
					       .actual_bytes = OVC_UNKNOWN, .request = request,
					       .request_bytes = request_bytes, .err = err,
					       .error = (char *)error });
}

int balloon_watch_fd(ovc_balloon *b, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(b->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return negative_errno();
	return 0;
}

void balloon_unwatch_fd(ovc_balloon *b, int fd)
{
	epoll_ctl(b->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

int balloon_watch_dir(ovc_balloon *b, const char *dir, const char *what, int *ret_fd)
{
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), r;

	if (fd < 0)
		return negative_errno();
	if (inotify_add_watch(fd, dir, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM) < 0) {
		r = balloon_error(b, negative_errno(), "cannot watch %s directory %s: %s", what, dir,
				  strerror(errno));
		close(fd);
		return r;
	}
	r = balloon_watch_fd(b, fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

bool balloon_drain_inotify(int fd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;

	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		any = true;
	return any;
}

int ovc_balloon_new(const struct ovc_balloon_opts *opts, ovc_balloon **ret)
{
	ovc_balloon *b;
	int r;

	if (!opts || !ret || opts->size < offsetof(struct ovc_balloon_opts, event_userdata) +
						     sizeof(opts->event_userdata) ||
	    opts->size > sizeof(*opts))
		return -EINVAL;
	if (opts->reconnect_min_msec && opts->reconnect_max_msec &&
	    opts->reconnect_min_msec > opts->reconnect_max_msec)
		return -EINVAL;

	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	memcpy(&b->opts, opts, opts->size);
	b->opts.size = sizeof(b->opts);
	b->epoll_fd = b->event_fd = -1;
	pthread_mutex_init(&b->lock, NULL);

	switch (opts->backend) {
	case OVC_BALLOON_LIBVIRT:
		b->ops = &balloon_libvirt_ops;
		break;
	case OVC_BALLOON_QMP:
		if (!opts->qmp_dir && !opts->qmp_sockets) {
			r = -EINVAL;
			goto fail;
		}
		b->ops = &balloon_qmp_ops;
		break;
	case OVC_BALLOON_ENGINE:
		b->ops = &balloon_ovc_ops;
		break;
	default:
		r = -EINVAL;
		goto fail;
	}

	b->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	b->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->epoll_fd < 0 || b->event_fd < 0) {
		r = negative_errno();
		goto fail;
	}
	r = balloon_watch_fd(b, b->event_fd);
	if (r < 0)
		goto fail;
	r = b->ops->open(b);
	if (r < 0) {
		b->ops = NULL; /* open cleans up after itself */
		goto fail;
	}
	*ret = b;
	return 0;
fail:
	ovc_balloon_free(b);
	return r;
}

static void drop_queue(ovc_balloon *b)
{
	for (size_t i = 0; i < b->queue_n; i++) {
		free(b->queue[i].guest);
		free(b->queue[i].error);
	}
	free(b->queue);
	b->queue = NULL;
	b->queue_n = b->queue_cap = 0;
}

void ovc_balloon_free(ovc_balloon *b)
{
	if (!b)
		return;
	if (b->ops)
		b->ops->close(b);
	drop_queue(b);
	if (b->event_fd >= 0)
		close(b->event_fd);
	if (b->epoll_fd >= 0)
		close(b->epoll_fd);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

int ovc_balloon_list(ovc_balloon *b, struct ovc_balloon_guest **ret, size_t *ret_n)
{
	if (!b || !ret || !ret_n)
		return -EINVAL;
	b->error[0] = '\0';
	return b->ops->list(b, ret, ret_n);
}

/* "failed to <what> of '<name>'<suffix>: <the backend's reason>" */
static int guest_error(ovc_balloon *b, int r, const char *name, const char *what, const char *suffix)
{
	char why[sizeof(b->error)];

	snprintf(why, sizeof(why), "%s", b->error);
	return balloon_error(b, r, "failed to %s of '%s'%s: %s", what, name, suffix,
			     why[0] ? why : ovc_strerror(r));
}

int ovc_balloon_guest(ovc_balloon *b, const char *name, struct ovc_balloon_guest *ret)
{
	struct ovc_balloon_guest g;
	int r;

	if (!b || !name || !ret)
		return -EINVAL;
	b->error[0] = '\0';
	/* Backends fill as they go; *ret stays untouched on failure. */
	r = b->ops->guest(b, name, &g);
	if (r < 0)
		return guest_error(b, r, name, "read the balloon", "");
	*ret = g;
	return 0;
}

static void sleep_msec(unsigned msec)
{
	poll(NULL, 0, (int)msec);
}

/* "inflate" when the balloon grows (the guest gets less). */
static const char *verb(uint64_t from, uint64_t to)
{
	return to < from ? "inflate" : "deflate";
}

static int target_error(ovc_balloon *b, int r, const char *name, uint64_t from, uint64_t to)
{
	char what[32], target[48];

	snprintf(what, sizeof(what), "%s balloon", verb(from, to));
	snprintf(target, sizeof(target), " to %" PRIu64 "MiB", to / MIB);
	return guest_error(b, r, name, what, target);
}

int ovc_balloon_set_target(ovc_balloon *b, const char *name, uint64_t target_bytes,
			   unsigned flags)
{
	struct ovc_balloon_guest g;
	uint64_t start, deadline, tolerance;
	int r;

	if (!b || !name)
		return -EINVAL;
	if (flags & ~OVC_BALLOON_TARGET_WAIT)
		return -EINVAL;
	b->error[0] = '\0';

	r = b->ops->guest(b, name, &g);
	if (r < 0) {
		char target[48];

		snprintf(target, sizeof(target), " to %" PRIu64 "MiB", target_bytes / MIB);
		return guest_error(b, r, name, "set balloon", target);
	}
	if (target_bytes == 0 || target_bytes > g.stats.max_bytes)
		return balloon_error(b, -ERANGE,
				     "failed to set balloon of '%s' to %" PRIu64 "MiB: "
				     "the target must be between 1 byte and the maximum %" PRIu64 "MiB",
				     name, target_bytes / MIB, g.stats.max_bytes / MIB);
	if (g.stats.actual_bytes != OVC_UNKNOWN && !(g.caps & OVC_BALLOON_CAP_DEVICE))
		return balloon_error(b, -ENODEV, "failed to %s balloon of '%s' to %" PRIu64 "MiB: %s",
				     verb(g.stats.actual_bytes, target_bytes), name,
				     target_bytes / MIB, "the guest has no balloon device");
	/* QEMU would take the target and nothing would happen: say so now
	 * rather than report success. ABSENT clears once the guest answers. */
	if (g.driver == OVC_BALLOON_DRIVER_ABSENT)
		return balloon_error(b, -ENODEV, "failed to %s balloon of '%s' to %" PRIu64 "MiB: %s",
				     verb(g.stats.actual_bytes, target_bytes), name, target_bytes / MIB,
				     "the guest never answered; its virtio_balloon driver is not loaded");
	start = g.stats.actual_bytes;
	r = b->ops->set_target(b, name, target_bytes);
	if (r < 0)
		return target_error(b, r, name, start, target_bytes);
	if (!(flags & OVC_BALLOON_TARGET_WAIT))
		return 0;

	/* The guest balloons in 4 KiB pages and libvirt reports KiB, and
	 * QEMU's actual lags by up to a page batch: within 1 MiB is there. */
	tolerance = MIB;
	deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t)balloon_confirm_msec(b) * 1000;
	for (;;) {
		uint64_t now = now_usec(CLOCK_MONOTONIC);
		uint64_t actual;

		r = b->ops->guest(b, name, &g);
		if (r < 0)
			return target_error(b, r, name, start, target_bytes);
		actual = g.stats.actual_bytes;
		if ((actual > target_bytes ? actual - target_bytes : target_bytes - actual) <= tolerance)
			return 0;
		if (now >= deadline) {
			if (actual == start && g.driver != OVC_BALLOON_DRIVER_LOADED) {
				b->ops->mark_absent(b, name);
				return balloon_error(b, -ENODEV,
						     "failed to %s balloon of '%s' to %" PRIu64 "MiB: "
						     "the balloon did not move in %u ms; the guest's "
						     "virtio_balloon driver is not loaded",
						     verb(start, target_bytes), name, target_bytes / MIB,
						     balloon_confirm_msec(b));
			}
			return balloon_error(b, -ETIMEDOUT,
					     "failed to %s balloon of '%s' to %" PRIu64 "MiB: "
					     "reached %" PRIu64 "MiB in %u ms",
					     verb(start, target_bytes), name, target_bytes / MIB,
					     actual / MIB, balloon_confirm_msec(b));
		}
		sleep_msec(200);
	}
}

int ovc_balloon_set_reclaim(ovc_balloon *b, const char *name, uint64_t reclaim_bytes,
			    unsigned flags)
{
	char target[48];
	int r;

	if (!b || !name || flags)
		return -EINVAL;
	b->error[0] = '\0';
	snprintf(target, sizeof(target), " to %" PRIu64 "MiB", reclaim_bytes / MIB);
	if (!b->ops->set_reclaim)
		r = balloon_error(b, -EOPNOTSUPP, "the %s driver reaches no embedded engines",
				  b->ops->name);
	else
		r = b->ops->set_reclaim(b, name, reclaim_bytes);
	return r < 0 ? guest_error(b, r, name, "set the reclaim target", target) : 0;
}

int ovc_balloon_fd(const ovc_balloon *b)
{
	return b ? b->epoll_fd : -EINVAL;
}

int ovc_balloon_timeout_msec(const ovc_balloon *b)
{
	return b && b->ops->timeout_msec ? b->ops->timeout_msec(b) : -1;
}

int ovc_balloon_process(ovc_balloon *b)
{
	struct epoll_event evs[16];
	uint64_t cnt;
	int r, delivered = 0;

	if (!b)
		return -EINVAL;
	/* Empty the epoll fd's readiness: the backend re-reads its own fds. */
	(void)epoll_wait(b->epoll_fd, evs, ARRAY_SIZE(evs), 0);
	(void)!read(b->event_fd, &cnt, sizeof(cnt));
	r = b->ops->process(b);

	for (;;) {
		struct balloon_event ev;

		pthread_mutex_lock(&b->lock);
		if (b->queue_n == 0) {
			pthread_mutex_unlock(&b->lock);
			break;
		}
		ev = b->queue[0];
		memmove(b->queue, b->queue + 1, (b->queue_n - 1) * sizeof(*b->queue));
		b->queue_n--;
		pthread_mutex_unlock(&b->lock);

		if (b->opts.event_fn) {
			struct ovc_balloon_event pub = { ev.type,	  ev.guest, ev.actual_bytes, ev.request,
							 ev.request_bytes, ev.err,   ev.error };

			b->opts.event_fn(b->opts.event_userdata, &pub);
		}
		free(ev.guest);
		free(ev.error);
		delivered++;
	}
	return r < 0 ? r : delivered;
}
