/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's balloon drivers (balloon-driver/): one per QMP directory, libvirt,
 * and last the "ovc" driver that watches [engine] dir for engines, which
 * reload may move or close. Their events (a guest stopped, fresh
 * statistics, a request that failed later) land here. The drivers never
 * wait for a peer: a list is each guest's last figures, and targets are
 * queued (OVC_BALLOON_EVENT_FAILED reports a later failure).
 *
 * ovcd's main thread only; no locks. (The drivers may run threads of their
 * own; they only ever call back from ovcd_balloon_process(), on this
 * thread.)
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"

#define LIBVIRT_SOCKET "/run/libvirt/libvirt-sock"

static void on_balloon_event(void *userdata, const struct ovcd_balloon_event *ev)
{
	struct mdriver *d = userdata;
	struct manager *m = d->m;
	struct mguest *g = ev->guest ? guest_find(m, ev->guest) : NULL;

	switch (ev->type) {
	case OVC_BALLOON_EVENT_CHANGED:
		if (g && g->drv == d && ovcd_known(ev->actual_bytes))
			g->v.actual_bytes = ev->actual_bytes;
		break;
	case OVC_BALLOON_EVENT_STARTED:
		dlog_debug("%s: guest '%s' started", d->kind, ev->guest ? ev->guest : "?");
		break;
	case OVC_BALLOON_EVENT_STOPPED:
		if (g && g->drv == d)
			guest_remove(m, g, "stopped");
		else if (g && g->engine_drv == d)
			engine_detach(g, "stopped");
		break;
	case OVC_BALLOON_EVENT_DISCONNECTED:
		dlog_warning("%s: connection to the hypervisor lost; retrying", d->kind);
		d->list_ok = false;
		break;
	case OVC_BALLOON_EVENT_RECONNECTED:
		dlog_notice("%s: connection to the hypervisor is back", d->kind);
		break;
	case OVC_BALLOON_EVENT_STATS:
		if (g && g->drv == d)
			m->stats_arrived(m, g);
		break;
	case OVC_BALLOON_EVENT_FAILED:
		if (!g || ev->err == -ECANCELED)
			break; /* a newer request of ours replaced it */
		g->v.errors++;
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING, "%s", ev->error ? ev->error : "");
		/* The target ovcd counted on is not in force: start again
		 * from what the guest has. */
		if (ev->request == OVC_BALLOON_REQ_TARGET && g->drv == d && g->v.target_bytes == ev->request_bytes)
			g->v.target_bytes = g->v.actual_bytes;
		break;
	}
}

void driver_process(struct mdriver *d)
{
	int r = ovcd_balloon_process(d->b);

	if (r < 0)
		ovcd_log_guest_ratelimited(&d->rl, OVC_LOG_WARNING, "%s driver: %s", d->kind,
					   ovcd_balloon_error(d->b)[0] ? ovcd_balloon_error(d->b) : strerror(-r));
}

/* A balloon handle whose events go to slot @d. */
static int driver_new(struct manager *m, struct mdriver *d, enum ovcd_balloon_backend backend, const char *uri,
		      const char *qmp_dir, const char *engine_dir, ovcd_balloon **ret)
{
	struct ovcd_balloon_opts o = {
		.size = sizeof(o),
		.backend = backend,
		.uri = uri,
		.qmp_dir = qmp_dir,
		.engine_dir = engine_dir,
		.stats_period_sec = (unsigned)MAX(m->cfg->balloon.stats_period_usec / USEC_PER_SEC, 1),
		.stale_sec = (unsigned)MAX(m->cfg->balloon.stale_after_usec / USEC_PER_SEC, 1),
		.logger = ovcd_logger(),
		.event_fn = on_balloon_event,
		.event_userdata = d,
	};

	return ovcd_balloon_new(&o, ret);
}

static int driver_open(struct manager *m, enum ovcd_balloon_backend backend, const char *uri, const char *qmp_dir)
{
	struct mdriver *d = &m->drivers[m->n_drivers];
	int r;

	memset(d, 0, sizeof(*d));
	d->src.type = SRC_DRIVER;
	d->m = m;
	d->kind = backend == OVC_BALLOON_QMP ? "qmp" : backend == OVC_BALLOON_ENGINE ? "ovc" : "libvirt";
	d->policy_kind = backend == OVC_BALLOON_QMP ? OVC_DRIVER_QMP
			 : backend == OVC_BALLOON_ENGINE ? OVC_DRIVER_ENGINE
							 : OVC_DRIVER_LIBVIRT;
	r = driver_new(m, d, backend, uri, qmp_dir, m->engine_dir, &d->b);
	if (r < 0)
		return r;
	r = loop_watch(m->epfd, ovcd_balloon_fd(d->b), EPOLLIN, &d->src);
	if (r < 0) {
		ovcd_balloon_free(d->b);
		return r;
	}
	m->n_drivers++;
	return 0;
}

/* mkdir -p, each missing level root's and 0755 whatever the umask: VMMs
 * must be able to look the directory up, only root may add sockets. */
static int mkdir_parents(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, 0755) == 0) {
			if (chmod(buf, 0755) < 0)
				return negative_errno();
		} else if (errno != EEXIST) {
			return negative_errno();
		}
		*p = c;
		if (c == '\0')
			return 0;
	}
}

/* Forget the guests of the engines' driver @d and close its handle. */
static void engines_drop(struct manager *m, struct mdriver *d)
{
	for (size_t i = m->n_guests; i-- > 0;) {
		struct mguest *g = &m->guests[i];

		if (g->drv == d)
			guest_remove(m, g, "is gone: its engine directory is no longer watched");
		else if (g->engine_drv == d)
			engine_detach(g, "is no longer watched");
	}
	(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, ovcd_balloon_fd(d->b), NULL);
	ovcd_balloon_free(d->b);
	d->b = NULL;
}

/* Watch @dir for engines in the engines' slot (the last one). On failure
 * the old handle, if any, stays. */
int engines_open(struct manager *m, const char *dir)
{
	struct mdriver *d = m->engines ? m->engines : &m->drivers[m->n_drivers];
	char *copy = strdup(dir);
	ovcd_balloon *b = NULL;
	struct stat st;
	int r;

	if (!copy)
		return -ENOMEM;
	r = mkdir_parents(dir);
	if (r < 0) {
		dlog_err("cannot create the engine directory %s: %s", dir, strerror(-r));
		free(copy);
		return r;
	}
	/* Who may add sockets there may name guests: say so when that is
	 * more than root (and ovcd's own user). A symlink is not followed. */
	if (lstat(dir, &st) == 0) {
		if (S_ISLNK(st.st_mode))
			dlog_warning("engine directory %s is a symlink: it is not followed", dir);
		else if (st.st_uid != 0 && st.st_uid != geteuid())
			dlog_warning("engine directory %s belongs to uid %u: that user can publish an "
				     "engine under the name of any guest and remove others' sockets",
				     dir, (unsigned)st.st_uid);
		if ((st.st_mode & (S_IWOTH | S_IWGRP)) && !(st.st_mode & S_ISVTX))
			dlog_warning("engine directory %s is writable by %s without the sticky bit: "
				     "any such user can publish an engine under the name of any guest and "
				     "remove others' sockets",
				     dir, st.st_mode & S_IWOTH ? "everybody" : "its group");
		else if (st.st_mode & (S_IWOTH | S_IWGRP))
			dlog_warning("engine directory %s is writable by %s: any such user can publish an "
				     "engine under the name of a guest not published yet",
				     dir, st.st_mode & S_IWOTH ? "everybody" : "its group");
	}
	if (!m->engines) {
		memset(d, 0, sizeof(*d));
		d->src.type = SRC_DRIVER;
		d->m = m;
		d->kind = "ovc";
		d->policy_kind = OVC_DRIVER_ENGINE;
	}
	r = driver_new(m, d, OVC_BALLOON_ENGINE, NULL, NULL, copy, &b);
	if (r >= 0)
		r = loop_watch(m->epfd, ovcd_balloon_fd(b), EPOLLIN, &d->src);
	if (r < 0) {
		dlog_err("cannot watch the engine directory %s: %s", dir,
			 b && ovcd_balloon_error(b)[0] ? ovcd_balloon_error(b) : strerror(-r));
		ovcd_balloon_free(b);
		free(copy);
		return r;
	}
	if (m->engines) {
		/* The old directory's engines go; the new one's come at the
		 * next tick. */
		engines_drop(m, d);
	} else {
		m->engines = d;
		m->n_drivers++;
	}
	d->b = b;
	free(m->engine_dir);
	m->engine_dir = copy;
	dlog_info("ovc driver: engines published in %s", dir);
	return 0;
}

void engines_close(struct manager *m)
{
	struct mdriver *d = m->engines;

	if (!d)
		return;
	engines_drop(m, d);
	/* The engines' slot is always the last one. */
	m->n_drivers--;
	m->engines = NULL;
	free(m->engine_dir);
	m->engine_dir = NULL;
	dlog_info("ovc driver: engines are no longer watched");
}

int open_drivers(struct manager *m)
{
	int r;

	for (size_t i = 0; i < m->opts.n_qmp_dirs; i++) {
		r = driver_open(m, OVC_BALLOON_QMP, NULL, m->opts.qmp_dirs[i]);
		if (r < 0) {
			dlog_err("cannot open the QMP driver on %s: %s", m->opts.qmp_dirs[i], strerror(-r));
			return r;
		}
		dlog_info("QMP driver: guests from the sockets in %s", m->opts.qmp_dirs[i]);
	}
	if (m->opts.no_libvirt)
		return 0;
	if (!m->opts.libvirt_uri && access(LIBVIRT_SOCKET, F_OK) < 0) {
		dlog_info("no libvirtd socket at %s: libvirt guests are not managed", LIBVIRT_SOCKET);
		return 0;
	}
	r = driver_open(m, OVC_BALLOON_LIBVIRT, m->opts.libvirt_uri, NULL);
	if (r == -EOPNOTSUPP) {
		/* The libvirt backend of balloon-driver/ is not built in. */
		if (m->opts.libvirt_uri) {
			dlog_err("--libvirt %s: this ovcd has no libvirt balloon driver", m->opts.libvirt_uri);
			return r;
		}
		dlog_notice("this ovcd has no libvirt balloon driver: libvirt guests are not managed");
		return 0;
	}
	if (r < 0) {
		dlog_err("cannot connect to libvirt (%s): %s", m->opts.libvirt_uri ? m->opts.libvirt_uri : "qemu:///system",
			 strerror(-r));
		return r;
	}
	dlog_info("libvirt driver on %s", m->opts.libvirt_uri ? m->opts.libvirt_uri : "qemu:///system");
	return 0;
}
