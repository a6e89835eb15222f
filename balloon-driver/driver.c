/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The backend-independent half of a balloon driver: option checks, the
 * event queue, the pollable fd, error sentences, the cache of every guest's
 * last figures, requests that complete later, sockets connected without
 * trusting their path, the memory of sockets that failed, and waiting for a
 * balloon to reach its target. See driver.h for the threading rules; the
 * queue is the only state other threads touch, under b->lock. The cache,
 * the failure memory and the waiter belong to the handle's thread.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "internal.h"
#include "common/util.h"

uint64_t balloon_stale_sec(const ovcd_balloon *b)
{
	if (b->opts.stale_sec)
		return b->opts.stale_sec;
	/* Three missed periods plus slack for QEMU's timer and libvirt's
	 * one-second granularity. */
	return 3 * (uint64_t)MAX(b->opts.stats_period_sec, 1u) + 5;
}

unsigned balloon_confirm_msec(const ovcd_balloon *b)
{
	return b->opts.confirm_timeout_msec ? b->opts.confirm_timeout_msec : 30000;
}

void balloon_escape(char *dst, size_t size, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (size == 0)
		return;
	for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
		if (*p >= 0x20 && *p != 0x7f) {
			if (o + 1 >= size)
				break;
			dst[o++] = (char)*p;
			continue;
		}
		if (o + 4 >= size)
			break;
		dst[o++] = '\\';
		dst[o++] = 'x';
		dst[o++] = hex[*p >> 4];
		dst[o++] = hex[*p & 15];
	}
	dst[o] = '\0';
}

int balloon_error(ovcd_balloon *b, int err, const char *fmt, ...)
{
	char raw[sizeof(b->error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* Names and reasons come from QEMU, libvirt and engines: nothing
	 * they say may forge a log line. */
	balloon_escape(b->error, sizeof(b->error), raw);
	log_debug(b->opts.logger, "%s", b->error);
	return err;
}

const char *ovcd_balloon_error(const ovcd_balloon *b)
{
	return b ? b->error : "";
}

static void queue_push(ovcd_balloon *b, const struct balloon_event *in)
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

void balloon_queue_event(ovcd_balloon *b, enum ovcd_balloon_event_type type, const char *guest,
			 uint64_t actual_bytes)
{
	queue_push(b, &(struct balloon_event){ .type = type, .guest = (char *)guest,
					       .actual_bytes = actual_bytes, .request_bytes = OVC_UNKNOWN });
}

void balloon_queue_failed(ovcd_balloon *b, const char *guest, enum ovcd_balloon_request request,
			  uint64_t request_bytes, int err, const char *error)
{
	queue_push(b, &(struct balloon_event){ .type = OVC_BALLOON_EVENT_FAILED, .guest = (char *)guest,
					       .actual_bytes = OVC_UNKNOWN, .request = request,
					       .request_bytes = request_bytes, .err = err,
					       .error = (char *)error });
}

int balloon_watch_fd(ovcd_balloon *b, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(b->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return negative_errno();
	return 0;
}

void balloon_unwatch_fd(ovcd_balloon *b, int fd)
{
	epoll_ctl(b->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

int balloon_watch_dir(ovcd_balloon *b, const char *dir, int dir_fd, const char *what, int *ret_fd)
{
	int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK), r;
	char at[64];

	if (fd < 0)
		return negative_errno();
	/* The directory already opened, not whatever the path names now. */
	snprintf(at, sizeof(at), "/proc/self/fd/%d", dir_fd);
	if (inotify_add_watch(fd, at, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ONLYDIR) < 0) {
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

int ovcd_balloon_new(const struct ovcd_balloon_opts *opts, ovcd_balloon **ret)
{
	ovcd_balloon *b;
	int r;

	if (!opts || !ret || opts->size < offsetof(struct ovcd_balloon_opts, event_userdata) +
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
	ovcd_balloon_free(b);
	return r;
}

static void drop_queue(ovcd_balloon *b)
{
	for (size_t i = 0; i < b->queue_n; i++) {
		free(b->queue[i].guest);
		free(b->queue[i].error);
	}
	free(b->queue);
	b->queue = NULL;
	b->queue_n = b->queue_cap = 0;
}

void ovcd_balloon_free(ovcd_balloon *b)
{
	if (!b)
		return;
	if (b->ops)
		b->ops->close(b);
	drop_queue(b);
	free(b->cache);
	free(b->fail);
	if (b->event_fd >= 0)
		close(b->event_fd);
	if (b->epoll_fd >= 0)
		close(b->epoll_fd);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* ---- the cache of every guest's last figures ---- */

struct ovcd_balloon_guest *balloon_cache_get(ovcd_balloon *b, const char *name)
{
	for (size_t i = 0; i < b->cache_n; i++)
		if (strcmp(b->cache[i].name, name) == 0)
			return &b->cache[i];
	return NULL;
}

int balloon_cache_put(ovcd_balloon *b, const struct ovcd_balloon_guest *g)
{
	struct ovcd_balloon_guest *c = balloon_cache_get(b, g->name);

	if (!c) {
		if (b->cache_n == b->cache_cap) {
			size_t cap = b->cache_cap ? b->cache_cap * 2 : 8;
			struct ovcd_balloon_guest *p = realloc(b->cache, cap * sizeof(*p));

			if (!p)
				return -ENOMEM;
			b->cache = p;
			b->cache_cap = cap;
		}
		c = &b->cache[b->cache_n++];
	}
	*c = *g;
	balloon_queue_event(b, OVC_BALLOON_EVENT_STATS, g->name, OVC_UNKNOWN);
	return 0;
}

void balloon_cache_drop(ovcd_balloon *b, const char *name)
{
	struct ovcd_balloon_guest *c = balloon_cache_get(b, name);

	if (!c)
		return;
	memmove(c, c + 1, (size_t)(b->cache + b->cache_n - (c + 1)) * sizeof(*c));
	b->cache_n--;
}

/* The cached figures as of now: guest-side figures whose guest stopped
 * answering go stale like any others, and figures nobody refreshed for the
 * staleness limit (a monitor that stopped answering) too. */
static void cache_read(const ovcd_balloon *b, const struct ovcd_balloon_guest *c, struct ovcd_balloon_guest *ret)
{
	uint64_t max_age = balloon_stale_sec(b);
	uint64_t now = now_usec(CLOCK_MONOTONIC);

	*ret = *c;
	if (ovcd_known(ret->stats.guest_update_sec))
		ovcd_guest_stats_sanitize(&ret->stats, now_usec(CLOCK_REALTIME) / USEC_PER_SEC, max_age);
	if (ret->stats.collected_usec && now - ret->stats.collected_usec > max_age * USEC_PER_SEC &&
	    !ret->stats.stale) {
		struct ovcd_guest_stats st;

		ovcd_guest_stats_reset(&st);
		st.collected_usec = ret->stats.collected_usec;
		st.max_bytes = ret->stats.max_bytes;
		st.actual_bytes = ret->stats.actual_bytes;
		st.rss_bytes = ret->stats.rss_bytes;
		st.guest_update_sec = ret->stats.guest_update_sec;
		st.stale = true;
		ret->stats = st;
	}
}

int ovcd_balloon_list(ovcd_balloon *b, struct ovcd_balloon_guest **ret, size_t *ret_n)
{
	struct ovcd_balloon_guest *out;
	int r;

	if (!b || !ret || !ret_n)
		return -EINVAL;
	b->error[0] = '\0';
	/* Ask for fresh figures; what comes back is there at the next call
	 * (and announced by OVC_BALLOON_EVENT_STATS). */
	r = b->ops->refresh(b);
	if (r < 0)
		return r;
	out = calloc(b->cache_n ? b->cache_n : 1, sizeof(*out));
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < b->cache_n; i++)
		cache_read(b, &b->cache[i], &out[i]);
	*ret = out;
	*ret_n = b->cache_n;
	return 0;
}

/* "failed to <what> of '<name>'<suffix>: <the backend's reason>" */
static int guest_error(ovcd_balloon *b, int r, const char *name, const char *what, const char *suffix)
{
	char why[sizeof(b->error)];

	snprintf(why, sizeof(why), "%s", b->error);
	return balloon_error(b, r, "failed to %s of '%s'%s: %s", what, name, suffix,
			     why[0] ? why : ovc_strerror(r));
}

static int lookup(ovcd_balloon *b, const char *name, struct ovcd_balloon_guest *ret)
{
	const struct ovcd_balloon_guest *c = balloon_cache_get(b, name);

	if (!c)
		return balloon_error(b, -ENOENT, "%s", b->ops->no_such_guest);
	cache_read(b, c, ret);
	return 0;
}

int ovcd_balloon_guest(ovcd_balloon *b, const char *name, struct ovcd_balloon_guest *ret)
{
	struct ovcd_balloon_guest g;
	int r;

	if (!b || !name || !ret)
		return -EINVAL;
	b->error[0] = '\0';
	r = lookup(b, name, &g);
	if (r < 0)
		return guest_error(b, r, name, "read the balloon", "");
	*ret = g;
	return 0;
}

/* "inflate" when the balloon grows (the guest gets less). */
static const char *verb(uint64_t from, uint64_t to)
{
	return to < from ? "inflate" : "deflate";
}

static void request_sentence(ovcd_balloon *b, char *buf, size_t size, const char *name,
			     enum ovcd_balloon_request req, uint64_t bytes, const char *why)
{
	const struct ovcd_balloon_guest *c = balloon_cache_get(b, name);
	char raw[sizeof(b->error)];

	if (req == OVC_BALLOON_REQ_RECLAIM)
		snprintf(raw, sizeof(raw), "failed to set the reclaim target of '%s' to %" PRIu64 "MiB: %s", name,
			 bytes / MIB, why);
	else
		snprintf(raw, sizeof(raw), "failed to %s balloon of '%s' to %" PRIu64 "MiB: %s",
			 c ? verb(c->stats.actual_bytes, bytes) : "set", name, bytes / MIB, why);
	balloon_escape(buf, size, raw);
}

void balloon_request_done(ovcd_balloon *b, const char *name, enum ovcd_balloon_request req, uint64_t bytes,
			  int err, const char *why)
{
	char sentence[sizeof(b->error)];
	struct balloon_waiter *w = &b->waiter;

	if (err < 0)
		request_sentence(b, sentence, sizeof(sentence), name, req, bytes,
				 why && why[0] ? why : ovc_strerror(err));
	if (w->active && !w->done && w->request == req && w->bytes == bytes && strcmp(w->name, name) == 0) {
		/* The caller waits for this one: it gets the answer itself. */
		w->done = true;
		w->err = err;
		if (err < 0)
			snprintf(w->error, sizeof(w->error), "%s", sentence);
		return;
	}
	if (err < 0) {
		log_debug(b->opts.logger, "%s", sentence);
		balloon_queue_failed(b, name, req, bytes, err, sentence);
	}
}

/* Run the backend until the waiter is answered, or until @deadline_usec
 * (CLOCK_MONOTONIC), in slices of at most @slice_msec, with queued events
 * left for the next ovcd_balloon_process(): callbacks run from there only.
 * The eventfd leaves the pollable set meanwhile, else the events queued
 * would keep it readable and this would spin. */
static void run_backend(ovcd_balloon *b, uint64_t deadline_usec, unsigned slice_msec)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = b->event_fd }, evs[16];
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	int t;

	if (now >= deadline_usec)
		return;
	t = (int)MIN((deadline_usec - now) / 1000 + 1, (uint64_t)slice_msec);
	{
		int bt = b->ops->timeout_msec ? b->ops->timeout_msec(b) : -1;

		if (bt >= 0 && bt < t)
			t = bt;
	}
	epoll_ctl(b->epoll_fd, EPOLL_CTL_DEL, b->event_fd, NULL);
	(void)epoll_wait(b->epoll_fd, evs, ARRAY_SIZE(evs), t);
	epoll_ctl(b->epoll_fd, EPOLL_CTL_ADD, b->event_fd, &ev);
	(void)b->ops->process(b);
}

static int target_error(ovcd_balloon *b, int r, const char *name, uint64_t from, uint64_t to)
{
	char what[32], target[48];

	snprintf(what, sizeof(what), "%s balloon", verb(from, to));
	snprintf(target, sizeof(target), " to %" PRIu64 "MiB", to / MIB);
	return guest_error(b, r, name, what, target);
}

/* OVC_BALLOON_TARGET_WAIT: the request queued; wait for the hypervisor's
 * answer and then for the balloon to get there. */
static int wait_target(ovcd_balloon *b, const char *name, uint64_t start, uint64_t target_bytes)
{
	struct balloon_waiter *w = &b->waiter;
	/* The guest balloons in 4 KiB pages and libvirt reports KiB, and
	 * QEMU's actual lags by up to a page batch: within 1 MiB is there. */
	const uint64_t tolerance = MIB;
	uint64_t deadline = now_usec(CLOCK_MONOTONIC) + (uint64_t)balloon_confirm_msec(b) * 1000;
	uint64_t next_refresh = 0;
	int r;

	for (;;) {
		uint64_t now = now_usec(CLOCK_MONOTONIC), actual;
		struct ovcd_balloon_guest g;

		if (w->done && w->err < 0) {
			r = w->err;
			w->active = false;
			return balloon_error(b, r, "%s", w->error);
		}
		if (lookup(b, name, &g) < 0) {
			w->active = false;
			return target_error(b, -ENOENT, name, start, target_bytes);
		}
		actual = g.stats.actual_bytes;
		if (w->done &&
		    (actual > target_bytes ? actual - target_bytes : target_bytes - actual) <= tolerance) {
			w->active = false;
			return 0;
		}
		if (now >= deadline) {
			w->active = false;
			if (!w->done)
				return balloon_error(b, -ETIMEDOUT,
						     "failed to %s balloon of '%s' to %" PRIu64 "MiB: "
						     "the hypervisor did not take the target in %u ms",
						     verb(start, target_bytes), name, target_bytes / MIB,
						     balloon_confirm_msec(b));
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
		if (w->done && now >= next_refresh) {
			(void)b->ops->refresh(b);
			next_refresh = now + 200 * 1000;
		}
		run_backend(b, deadline, 200);
	}
}

int ovcd_balloon_set_target(ovcd_balloon *b, const char *name, uint64_t target_bytes,
			   unsigned flags)
{
	struct ovcd_balloon_guest g;
	uint64_t start;
	int r;

	if (!b || !name)
		return -EINVAL;
	if (flags & ~OVC_BALLOON_TARGET_WAIT)
		return -EINVAL;
	b->error[0] = '\0';

	r = lookup(b, name, &g);
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
	if (flags & OVC_BALLOON_TARGET_WAIT) {
		b->waiter = (struct balloon_waiter){ .active = true, .request = OVC_BALLOON_REQ_TARGET,
						     .bytes = target_bytes };
		snprintf(b->waiter.name, sizeof(b->waiter.name), "%s", name);
	}
	r = b->ops->set_target(b, name, target_bytes);
	if (r < 0) {
		b->waiter.active = false;
		return target_error(b, r, name, start, target_bytes);
	}
	if (!(flags & OVC_BALLOON_TARGET_WAIT))
		return 0;
	return wait_target(b, name, start, target_bytes);
}

int ovcd_balloon_set_reclaim(ovcd_balloon *b, const char *name, uint64_t reclaim_bytes,
			    unsigned flags)
{
	struct ovcd_balloon_guest g;
	char target[48];
	int r;

	if (!b || !name || flags)
		return -EINVAL;
	b->error[0] = '\0';
	snprintf(target, sizeof(target), " to %" PRIu64 "MiB", reclaim_bytes / MIB);
	if (!b->ops->set_reclaim)
		r = balloon_error(b, -EOPNOTSUPP, "the %s driver reaches no embedded engines",
				  b->ops->name);
	else if ((r = lookup(b, name, &g)) == 0)
		r = b->ops->set_reclaim(b, name, reclaim_bytes);
	return r < 0 ? guest_error(b, r, name, "set the reclaim target", target) : 0;
}

/* ---- sockets: identity from the kernel, never from a path or a peer ---- */

int balloon_connect(int dirfd, const char *name, struct balloon_peer *ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct stat st;
	int pfd, fd, r;

	ret->fd = -1;
	ret->dev = 0;
	ret->ino = 0;
	ret->pid = 0;
	ret->uid = (uid_t)-1;
	/* O_PATH|O_NOFOLLOW opens a symlink itself, which is then no socket:
	 * nobody can point root's connect elsewhere through this directory. */
	pfd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0)
		return negative_errno();
	if (fstat(pfd, &st) < 0) {
		r = negative_errno();
		goto out;
	}
	ret->dev = st.st_dev;
	ret->ino = st.st_ino;
	if (S_ISLNK(st.st_mode)) {
		r = -ELOOP;
		goto out;
	}
	if (!S_ISSOCK(st.st_mode)) {
		r = -ENOTSOCK;
		goto out;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", pfd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = negative_errno();
		goto out;
	}
	/* Non-blocking: a listener whose queue is full gives EAGAIN at
	 * once instead of holding the caller until it accepts. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		r = negative_errno();
		close(fd);
		goto out;
	}
	/* The listener must own the file: a socket of one user linked into
	 * place under another's name is not that user's. */
	if (cred.uid != st.st_uid) {
		close(fd);
		r = -EPERM;
		goto out;
	}
	ret->fd = fd;
	ret->pid = cred.pid;
	ret->uid = cred.uid;
	r = 0;
out:
	close(pfd);
	return r;
}

/* ---- sockets that failed: not retried before their back-off ---- */

/* Bounded: a directory flooded with dead sockets costs a fixed amount. */
#define FAIL_MAX 1024

static struct balloon_fail *fail_find(ovcd_balloon *b, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < b->fail_n; i++)
		if (b->fail[i].dev == dev && b->fail[i].ino == ino)
			return &b->fail[i];
	return NULL;
}

bool balloon_fail_blocked(ovcd_balloon *b, dev_t dev, ino_t ino)
{
	struct balloon_fail *f = fail_find(b, dev, ino);

	if (f)
		f->seen = true;
	return f && now_usec(CLOCK_MONOTONIC) < f->retry_usec;
}

void balloon_fail_sweep_begin(ovcd_balloon *b)
{
	for (size_t i = 0; i < b->fail_n; i++)
		b->fail[i].seen = false;
}

void balloon_fail_sweep_end(ovcd_balloon *b)
{
	size_t k = 0;

	for (size_t i = 0; i < b->fail_n; i++)
		if (b->fail[i].seen)
			b->fail[k++] = b->fail[i];
	b->fail_n = k;
}

bool balloon_fail_note(ovcd_balloon *b, dev_t dev, ino_t ino, unsigned min_msec, unsigned max_msec)
{
	struct balloon_fail *f = fail_find(b, dev, ino);
	bool first = !f;

	if (!f) {
		if (b->fail_n == b->fail_cap) {
			size_t cap = b->fail_cap ? b->fail_cap * 2 : 16;
			struct balloon_fail *p;

			if (b->fail_cap >= FAIL_MAX) {
				/* Forget the one due soonest. */
				size_t k = 0;

				for (size_t i = 1; i < b->fail_n; i++)
					if (b->fail[i].retry_usec < b->fail[k].retry_usec)
						k = i;
				b->fail[k] = b->fail[--b->fail_n];
				goto add;
			}
			p = realloc(b->fail, cap * sizeof(*p));
			if (!p)
				return first; /* then it is simply tried again */
			b->fail = p;
			b->fail_cap = cap;
		}
add:
		f = &b->fail[b->fail_n++];
		*f = (struct balloon_fail){ .dev = dev, .ino = ino };
	}
	f->seen = true;
	f->backoff_msec = f->backoff_msec ? MIN(f->backoff_msec * 2, max_msec) : min_msec;
	f->retry_usec = now_usec(CLOCK_MONOTONIC) + (uint64_t)f->backoff_msec * 1000;
	return first;
}

void balloon_fail_clear(ovcd_balloon *b, dev_t dev, ino_t ino)
{
	struct balloon_fail *f = fail_find(b, dev, ino);

	if (f)
		*f = b->fail[--b->fail_n];
}

void balloon_breaker_fail(struct balloon_breaker *k, uint64_t now)
{
	if (++k->fails < BALLOON_BREAKER_FAILS)
		return;
	k->backoff_msec = k->backoff_msec ? MIN(k->backoff_msec * 2, BALLOON_BREAKER_MAX_MSEC)
					  : BALLOON_BREAKER_MIN_MSEC;
	k->open_until_usec = now + (uint64_t)k->backoff_msec * 1000;
}

void balloon_breaker_ok(struct balloon_breaker *k)
{
	*k = (struct balloon_breaker){ 0 };
}

bool balloon_breaker_open(const struct balloon_breaker *k, uint64_t now)
{
	return now < k->open_until_usec;
}

int ovcd_balloon_fd(const ovcd_balloon *b)
{
	return b ? b->epoll_fd : -EINVAL;
}

int ovcd_balloon_timeout_msec(const ovcd_balloon *b)
{
	return b && b->ops->timeout_msec ? b->ops->timeout_msec(b) : -1;
}

int ovcd_balloon_process(ovcd_balloon *b)
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

		if (ev.type == OVC_BALLOON_EVENT_CHANGED && ev.guest && ovcd_known(ev.actual_bytes)) {
			/* libvirt's event comes from its own thread: the cache
			 * learns the balloon's new size here. */
			struct ovcd_balloon_guest *c = balloon_cache_get(b, ev.guest);

			if (c && ev.actual_bytes <= c->stats.max_bytes)
				c->stats.actual_bytes = ev.actual_bytes;
		}
		if (b->opts.event_fn) {
			struct ovcd_balloon_event pub = { ev.type,	  ev.guest, ev.actual_bytes, ev.request,
							 ev.request_bytes, ev.err,   ev.error };

			b->opts.event_fn(b->opts.event_userdata, &pub);
		}
		free(ev.guest);
		free(ev.error);
		delivered++;
	}
	return r < 0 ? r : delivered;
}
