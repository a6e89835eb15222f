/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's manager: event loop, tick (collect → policy → act → record),
 * guest table, control socket server, metrics outputs, reload. See
 * manager.h. Main thread only; no locks.
 *
 * A guest's error never stops the daemon: it is logged once where it is
 * handled, rate-limited per guest, and the guest is retried at the next
 * tick.
 *
 * Guests come from the balloon drivers in drivers[]: QMP directories,
 * libvirt, and last the "ovc" driver of [engine] dir (m->engines), whose
 * engines are guests of their own or, named like a balloon guest and in
 * the same process (the kernel's pid), part of it (mguest.engine_drv).
 * Listing the engines last each tick is what lets them join a balloon
 * guest listed before. The drivers never wait for a peer: a list is each
 * guest's last figures, and targets are queued (OVC_BALLOON_EVENT_FAILED
 * reports a later failure).
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "control.h"
#include "driver.h"
#include "host/collect.h"
#include "host/host.h"
#include "host/ksm.h"
#include "logging.h"
#include "manager.h"
#include "metrics.h"
#include "host/policy.h"
#include "host/stats.h"
#include "host/units.h"
#include "view.h"

/* QMP directories, libvirt, and the engines' directory. */
#define MAX_DRIVERS (OVCD_MAX_QMP_DIRS + 2)
/* Control clients: at most MAX_CLIENTS at once, CLIENTS_PER_UID of one
 * uid, and the last ROOT_SLOTS for root alone, so that root's ovcctl gets
 * in whoever else holds connections. Replies wait in a client's output
 * queue; above CLIENT_OUT_HIGH its requests are left unread until it
 * reads. A client is dropped when it sends nothing for CLIENT_IDLE_USEC,
 * takes longer than CLIENT_IO_USEC to finish a request line, or reads
 * nothing of a queued reply for CLIENT_IO_USEC (docs in ovcd(8)). */
#define MAX_CLIENTS 64
#define CLIENTS_PER_UID 16
#define ROOT_SLOTS 4
#define CLIENT_OUT_HIGH (256u << 10)
#define CLIENT_IDLE_USEC (60 * USEC_PER_SEC)
#define CLIENT_IO_USEC (5 * USEC_PER_SEC)
#define LIBVIRT_SOCKET "/run/libvirt/libvirt-sock"

enum source_type {
	SRC_TIMER,
	SRC_SIGNAL,
	SRC_CONTROL,
	SRC_CLIENT,
	SRC_METRICS,
	SRC_PSI,
	SRC_DRIVER,
	SRC_POLL,
};

struct source {
	enum source_type type;
};

struct mdriver {
	struct source src;
	struct manager *m;
	ovc_balloon *b;
	const char *kind;          /* "qmp", "libvirt", "ovc" */
	enum ovc_driver_kind policy_kind;
	bool list_ok;              /* the last list worked: its guests are current */
	struct ovcd_ratelimit rl;
};

struct mguest {
	struct ovcd_guest_view v;
	/* The driver that lists the guest; for a guest with both a balloon
	 * and an embedded engine, the balloon's, and the engines' driver in
	 * engine_drv (NULL: no engine, or engine-only: then drv is it). */
	struct mdriver *drv;
	struct mdriver *engine_drv;
	bool engine_seen;
	int32_t pid;               /* the process behind drv's guest (driver.h) */
	struct ovc_guest_stats stats, prev;
	uint64_t last_action_usec, last_emergency_usec;
	uint32_t emergency_count;  /* the policy's emergency streak (policy.h) */
	bool has_floor_override;
	struct ovc_conf_size floor_override;
	/* What the policy learned about the guest (headroom, raised floor,
	 * distress baselines): from each decision, tick or check, into the
	 * next one. */
	struct ovc_policy_guest_state pstate;
	bool free_page_reporting;  /* its balloon has free page reporting */
	bool seen;
	struct ovcd_ratelimit rl;
};

/* A control client: a non-blocking state machine in the loop. Requests
 * are read into buf and answered in order into out; nothing waits. */
struct client {
	struct source src;
	int fd;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	size_t n_groups;
	size_t n;                  /* bytes in buf: at most one partial line after processing */
	char buf[OVCD_REQUEST_MAX + 2];
	char *out;                 /* replies not yet sent: out[out_off, out_len) */
	size_t out_off, out_len, out_cap;
	uint32_t events;           /* what epoll watches for it now */
	bool eof;                  /* the peer shut its side: answer what came, then close */
	bool closing;              /* close once out is sent (a refused, too long line) */
	uint64_t deadline_usec;    /* CLOCK_MONOTONIC: dropped then, unless it moved */
	uint64_t line_start_usec;  /* when the first byte of the line in buf came */
};

struct manager {
	struct manager_opts opts;
	struct ovc_config *cfg;
	int epfd;
	struct source timer, sig, control, metrics, psi, poll;
	int timer_fd, signal_fd, control_fd, metrics_fd, psi_fd;
	int poll_fd;               /* every second: guests' stats between ticks */
	char control_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int control_dirfd;         /* its directory, O_PATH */
	const char *control_name;  /* its name in there (in control_path) */
	dev_t control_dev;         /* the socket file ovcd made, to know it again */
	ino_t control_ino;
	bool has_gid;
	gid_t gid;

	struct mdriver drivers[MAX_DRIVERS];
	size_t n_drivers;
	struct mdriver *engines;   /* the "ovc" driver in drivers[], or NULL */
	char *engine_dir;          /* what it watches (a copy: configs come and go) */

	struct mguest *guests;
	size_t n_guests, cap_guests;

	struct client *clients[MAX_CLIENTS];
	struct ovcd_ratelimit control_rl;

	bool ksm_saved_valid, ksm_touched;
	struct ovc_ksm_knobs ksm_saved;
	struct ovc_policy_ksm_state ksm_state;

	uint64_t start_usec, last_tick_usec, ticks;
	uint64_t checks;           /* guest_stats_arrived() runs of the policy */
	struct ovcd_view view;
	struct ovcd_guest_view *view_guests;
	struct ovcd_ratelimit host_rl;
	char *metrics_text;
	size_t metrics_len;
	struct ovcd_metrics_server *http; /* metrics_fd is its epoll fd */
	bool ready, quit;
	char last_status[256];
	uint64_t last_status_usec;
};

#define SZ(v) ovc_format_size_short((v), (char[24]){ 0 }, 24)

/* ---- guest table ---- */

static struct mguest *guest_find(struct manager *m, const char *name)
{
	for (size_t i = 0; i < m->n_guests; i++)
		if (strcmp(m->guests[i].v.name, name) == 0)
			return &m->guests[i];
	return NULL;
}

static struct mguest *guest_add(struct manager *m, struct mdriver *d, const struct ovc_balloon_guest *bg)
{
	struct mguest *g;

	if (m->n_guests == m->cap_guests) {
		size_t cap = m->cap_guests ? m->cap_guests * 2 : 16;
		struct mguest *p = realloc(m->guests, cap * sizeof(*p));

		if (!p)
			return NULL;
		m->guests = p;
		m->cap_guests = cap;
	}
	g = &m->guests[m->n_guests++];
	memset(g, 0, sizeof(*g));
	snprintf(g->v.name, sizeof(g->v.name), "%s", bg->name);
	g->v.driver = d->kind;
	g->drv = d;
	/* What the guest has when ovcd first sees it is the target it was
	 * given by whoever started it; ovcd moves it from there. */
	g->v.target_bytes = bg->stats.actual_bytes;
	g->v.headroom_bytes = g->v.keep_bytes = g->v.fpr_bytes = OVC_UNKNOWN; /* until the policy decides */
	g->v.raised_floor_bytes = OVC_UNKNOWN;
	ovc_guest_stats_reset(&g->prev);
	g->prev.collected_usec = 0;
	dlog_info("guest '%s' (%s): max %s, current %s", g->v.name, d->kind, SZ(bg->stats.max_bytes),
		  SZ(bg->stats.actual_bytes));
	return g;
}

static void guest_remove(struct manager *m, struct mguest *g, const char *why)
{
	size_t i = (size_t)(g - m->guests);

	dlog_info("guest '%s' %s", g->v.name, why);
	memmove(&m->guests[i], &m->guests[i + 1], (m->n_guests - i - 1) * sizeof(*g));
	m->n_guests--;
}

static void engine_stats_take(struct ovc_guest_stats *dst, const struct ovc_guest_stats *src)
{
	dst->engine_zero_bytes = src->engine_zero_bytes;
	dst->engine_swap_bytes = src->engine_swap_bytes;
	dst->engine_target_bytes = src->engine_target_bytes;
	dst->engine_swap_in_bytes = src->engine_swap_in_bytes;
	dst->engine_region_bytes = src->engine_region_bytes;
	dst->engine_swap = src->engine_swap;
}

static const char *merged_kind(const struct mdriver *d)
{
	return strcmp(d->kind, "libvirt") == 0 ? "libvirt+ovc" : "qmp+ovc";
}

/* A guest with both a balloon and an engine loses its engine (the VMM
 * unpublished it, or the engines are no longer watched): it stays a
 * balloon guest, with no engine figures. */
static void engine_detach(struct mguest *g, const char *why)
{
	struct ovc_guest_stats none;

	ovc_guest_stats_reset(&none);
	engine_stats_take(&g->stats, &none);
	engine_stats_take(&g->prev, &none);
	g->engine_drv = NULL;
	g->v.driver = g->drv->kind;
	dlog_info("guest '%s': its engine %s", g->v.name, why);
}

static const char *guest_driver_state(enum ovc_balloon_guest_driver d)
{
	switch (d) {
	case OVC_BALLOON_DRIVER_LOADED:
		return "loaded";
	case OVC_BALLOON_DRIVER_ABSENT:
		return "absent";
	default:
		return "unknown";
	}
}

static void guest_settings(const struct manager *m, const struct mguest *g, struct ovc_guest_settings *s)
{
	ovc_config_guest_settings(m->cfg, g->v.name, s);
	if (g->has_floor_override)
		s->floor = g->floor_override;
}

/* ---- view ---- */

static void build_view(struct manager *m)
{
	struct ovcd_guest_view *vg = realloc(m->view_guests, (m->n_guests ? m->n_guests : 1) * sizeof(*vg));
	uint64_t now_real = now_usec(CLOCK_REALTIME);

	if (!vg)
		return; /* keep the last view */
	m->view_guests = vg;
	for (size_t i = 0; i < m->n_guests; i++) {
		struct mguest *g = &m->guests[i];
		struct ovc_guest_settings s;

		guest_settings(m, g, &s);
		g->v.floor_bytes = ovc_conf_size_bytes(&s.floor, g->v.max_bytes);
		g->v.floor_override = g->has_floor_override;
		g->v.engine = g->engine_drv || g->drv == m->engines;
		g->v.engine_zero_bytes = g->v.engine ? g->stats.engine_zero_bytes : OVC_UNKNOWN;
		g->v.engine_swap_bytes = g->v.engine ? g->stats.engine_swap_bytes : OVC_UNKNOWN;
		g->v.engine_target_bytes = g->v.engine ? g->stats.engine_target_bytes : OVC_UNKNOWN;
		g->v.engine_swap_in_bytes = g->v.engine ? g->stats.engine_swap_in_bytes : OVC_UNKNOWN;
		if (g->v.engine)
			g->v.engine_swap = g->stats.engine_swap;
		else
			memset(&g->v.engine_swap, 0xff, sizeof(g->v.engine_swap)); /* all OVC_UNKNOWN */
		g->v.stats_age_usec = ovc_known(g->stats.guest_update_sec) && g->stats.guest_update_sec > 0 &&
					      g->stats.guest_update_sec * USEC_PER_SEC <= now_real
				      ? now_real - g->stats.guest_update_sec * USEC_PER_SEC
				      : OVC_UNKNOWN;
		vg[i] = g->v;
	}
	m->view.guests = vg;
	m->view.n_guests = m->n_guests;
	m->view.config_path = m->cfg->path;
	m->view.interval_usec = m->cfg->host.interval_usec;
	m->view.dry_run = m->opts.dry_run;
	m->view.ticks = m->ticks;
	m->view.checks = m->checks;
	m->view.uptime_usec = now_usec(CLOCK_MONOTONIC) - m->start_usec;
}

/* ---- KSM ---- */

static void ksm_restore(struct manager *m)
{
	int r;

	if (!m->ksm_touched || !m->ksm_saved_valid)
		return;
	r = ovc_ksm_restore(NULL, &m->ksm_saved);
	if (r < 0)
		dlog_err("failed to restore the KSM settings: %s", strerror(-r));
	else
		dlog_info("KSM settings restored (run=%u pages_to_scan=%u sleep_millisecs=%u)",
			  m->ksm_saved.run, m->ksm_saved.pages_to_scan, m->ksm_saved.sleep_millisecs);
	m->ksm_touched = false;
	memset(&m->ksm_state, 0, sizeof(m->ksm_state));
}

/* ---- tick ---- */

/* A guest's figures fresh from its driver (a tick's list, or between ticks). */
static void guest_take_stats(struct manager *m, struct mguest *g, const struct ovc_balloon_guest *bg)
{
	struct ovc_guest_stats old = g->stats;
	uint64_t collected = bg->stats.collected_usec;

	/* The hypervisor's side (actual) is read at every refresh, the
	 * guest's side (available, faults) changes only when the guest
	 * reports, once a stats period. A refresh between two reports is no
	 * new sample of the guest: it keeps the collection time of the
	 * guest's last report, so that the policy never reads a balloon move
	 * (actual new, available not yet) over a fraction of a second as the
	 * guest's own memory rising fast. */
	if (ovc_known(bg->stats.guest_update_sec) && bg->stats.guest_update_sec == old.guest_update_sec &&
	    old.collected_usec && !bg->stats.stale && !old.stale)
		collected = old.collected_usec;
	/* The driver's cache: the same figures until fresh ones come, and
	 * only fresh ones move prev along. */
	if (g->stats.collected_usec && g->stats.collected_usec != collected)
		g->prev = g->stats;
	g->stats = bg->stats;
	g->stats.collected_usec = collected;
	g->pid = bg->pid;
	if (g->engine_drv) /* filled when the engines are listed */
		engine_stats_take(&g->stats, &old);
	g->free_page_reporting = (bg->caps & OVC_BALLOON_CAP_FREE_PAGE_REPORTING) != 0;
	g->v.max_bytes = bg->stats.max_bytes;
	g->v.actual_bytes = bg->stats.actual_bytes;
	g->v.available_bytes = bg->stats.available_bytes;
	g->v.stale = bg->stats.stale;
	g->v.balloon_driver = g->drv == m->engines ? "none" : guest_driver_state(bg->driver);
	g->v.free_page_reporting = g->free_page_reporting;
	if (!ovc_known(g->v.target_bytes) || g->v.target_bytes == 0 || g->v.target_bytes > g->v.max_bytes)
		g->v.target_bytes = g->v.actual_bytes;
}

static bool guest_wanted(const struct manager *m, const char *name)
{
	if (m->opts.n_only == 0)
		return true;
	for (size_t i = 0; i < m->opts.n_only; i++)
		if (fnmatch(m->opts.only[i], name, 0) == 0)
			return true;
	return false;
}

/* Whether the guests @g (ovcd's) and @e (a driver's), one a balloon guest
 * and the other an engine of the same name, are one guest: the kernel says
 * they are one process. */
static bool may_join(const struct mguest *g, const struct ovc_balloon_guest *e)
{
	struct ovc_balloon_guest balloon = { .pid = g->pid };

	snprintf(balloon.name, sizeof(balloon.name), "%s", g->v.name);
	return ovc_balloon_may_join(&balloon, e);
}

static void collect_guests(struct manager *m)
{
	for (size_t i = 0; i < m->n_guests; i++)
		m->guests[i].seen = m->guests[i].engine_seen = false;
	/* The engines' driver is the last one: balloon guests are known
	 * when an engine of the same name is merged into them. */
	for (size_t d = 0; d < m->n_drivers; d++) {
		struct mdriver *drv = &m->drivers[d];
		struct ovc_balloon_guest *list = NULL;
		size_t n = 0;
		int r = ovc_balloon_list(drv->b, &list, &n);

		drv->list_ok = r >= 0;
		if (r < 0) {
			ovcd_log_guest_ratelimited(&drv->rl, OVC_LOG_WARNING, "failed to list the %s guests: %s",
						   drv->kind,
						   ovc_balloon_error(drv->b)[0] ? ovc_balloon_error(drv->b)
										: strerror(-r));
			/* Its guests stay as they were, but are not acted on. */
			for (size_t i = 0; i < m->n_guests; i++) {
				if (m->guests[i].drv == drv)
					m->guests[i].seen = true;
				if (m->guests[i].engine_drv == drv)
					m->guests[i].engine_seen = true;
			}
			continue;
		}
		for (size_t i = 0; i < n; i++) {
			struct mguest *g;

			if (!guest_wanted(m, list[i].name))
				continue;
			g = guest_find(m, list[i].name);

			if (g && drv == m->engines && g->drv != drv && !g->engine_drv && !may_join(g, &list[i])) {
				/* Same name, another process: a squatter, not
				 * the guest's VMM. */
				ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
							   "engine '%s' (pid %d) refused: the %s guest of that name "
							   "runs in pid %d",
							   list[i].name, (int)list[i].pid, g->drv->kind, (int)g->pid);
				continue;
			}
			if (g && drv == m->engines && g->drv != drv) {
				/* The VMM of a balloon guest embeds an engine
				 * (the kernel says: the same pid): one guest
				 * with both. */
				if (!g->engine_drv)
					dlog_info("guest '%s': its VMM's engine joins its %s balloon", g->v.name,
						  g->drv->kind);
				g->engine_drv = drv;
				g->engine_seen = true;
				g->v.driver = merged_kind(g->drv);
				engine_stats_take(&g->stats, &list[i].stats);
				continue;
			}
			if (g && g->drv == m->engines && m->engines && drv != m->engines &&
			    !may_join(g, &list[i])) {
				/* An engine took the name of a balloon guest
				 * that started later, from another process:
				 * the balloon guest is the one the operator
				 * set up; the engine was squatting. */
				dlog_warning("engine '%s' (pid %d) refused: the %s guest of that name runs in pid %d",
					     g->v.name, (int)g->pid, drv->kind, (int)list[i].pid);
				guest_remove(m, g, "is no longer managed");
				g = NULL;
			}
			if (g && g->drv == m->engines && m->engines && drv != m->engines) {
				/* An engine first, its balloon now (a domain
				 * started after its VMM published). */
				dlog_info("guest '%s': its %s balloon joins its engine", g->v.name, drv->kind);
				g->engine_drv = g->drv;
				g->drv = drv;
				g->v.driver = merged_kind(drv);
				g->v.target_bytes = list[i].stats.actual_bytes;
			}
			if (g && g->drv != drv) {
				ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
							   "guest '%s' is reported by both %s and %s; "
							   "managing it through %s only",
							   g->v.name, g->drv->kind, drv->kind, g->drv->kind);
				continue;
			}
			if (!g && !(g = guest_add(m, drv, &list[i]))) {
				dlog_err("out of memory adding guest '%s'", list[i].name);
				continue;
			}
			guest_take_stats(m, g, &list[i]);
			g->seen = true;
		}
		free(list);
	}
	for (size_t i = m->n_guests; i-- > 0;) {
		struct mguest *g = &m->guests[i];

		if (!g->seen)
			guest_remove(m, g, "is gone");
		else if (g->engine_drv && !g->engine_seen)
			engine_detach(g, "is gone");
	}
}

/* Set an engine's reclaim target as the policy decided. */
static void act_engine(struct manager *m, struct mguest *g, const struct ovc_policy_decision *d, uint64_t now)
{
	struct mdriver *e = g->engine_drv ? g->engine_drv : g->drv;
	uint64_t from = ovc_known(g->stats.engine_target_bytes) ? g->stats.engine_target_bytes : 0;
	uint64_t to = d->reclaim_target_bytes;
	const char *verb = ovc_policy_action_name(d->reclaim_action);
	int r;

	if (d->reclaim_action == OVC_ACTION_NONE || to == from)
		return;
	if (m->opts.dry_run) {
		dlog_info("tick %" PRIu64 ": would %s '%s' reclaim target %s -> %s: %s", m->ticks, verb,
			  g->v.name, SZ(from), SZ(to), d->reason);
		return;
	}
	r = ovc_balloon_set_reclaim(e->b, g->v.name, to, 0);
	if (r < 0) {
		const char *err = ovc_balloon_error(e->b);

		g->v.errors++;
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
					   "tick %" PRIu64 ": failed to set the reclaim target of '%s' to %s: %s",
					   m->ticks, g->v.name, SZ(to), err[0] ? err : strerror(-r));
		return;
	}
	dlog_info("tick %" PRIu64 ": %s '%s' reclaim target %s -> %s: %s", m->ticks, verb, g->v.name, SZ(from),
		  SZ(to), d->reason);
	g->stats.engine_target_bytes = to;
	g->v.last_action = d->reclaim_action;
	g->v.last_action_tick = m->ticks;
	snprintf(g->v.last_reason, sizeof(g->v.last_reason), "%.*s", (int)sizeof(g->v.last_reason) - 1,
		 d->reason);
	g->last_action_usec = now;
	if (to > from)
		g->v.reclaims++;
	else
		g->v.releases++;
	if (d->reclaim_action == OVC_ACTION_EMERGENCY) {
		g->v.emergencies++;
		g->last_emergency_usec = now;
		g->emergency_count = d->emergency_count;
	}
}

static void act_guest(struct manager *m, struct mguest *g, const struct ovc_policy_decision *d,
		      enum ovc_policy_action action, uint64_t target, const char *reason, uint64_t now)
{
	const char *verb = ovc_policy_action_name(action);
	uint64_t from = g->v.target_bytes;
	int r;

	if (m->opts.dry_run) {
		dlog_info("tick %" PRIu64 ": would %s '%s' %s -> %s: %s", m->ticks, verb, g->v.name, SZ(from),
			  SZ(target), reason);
		return;
	}
	r = ovc_balloon_set_target(g->drv->b, g->v.name, target, 0);
	if (r < 0) {
		const char *e = ovc_balloon_error(g->drv->b);

		g->v.errors++;
		if (e[0])
			ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING, "tick %" PRIu64 ": %s", m->ticks, e);
		else
			ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
						   "tick %" PRIu64 ": failed to %s balloon of '%s' to %s: %s",
						   m->ticks, verb, g->v.name, SZ(target), strerror(-r));
		return;
	}
	dlog_info("tick %" PRIu64 ": %s '%s' %s -> %s: %s", m->ticks, verb, g->v.name, SZ(from), SZ(target),
		  reason);
	g->v.target_bytes = target;
	g->v.last_action = action;
	g->v.last_action_tick = m->ticks;
	snprintf(g->v.last_reason, sizeof(g->v.last_reason), "%.*s", (int)sizeof(g->v.last_reason) - 1, reason);
	g->last_action_usec = now;
	if (target < from)
		g->v.inflates++;
	else
		g->v.deflates++;
	if (action == OVC_ACTION_EMERGENCY) {
		g->v.emergencies++;
		g->last_emergency_usec = now;
		g->emergency_count = d->emergency_count;
	}
}

static void record(struct manager *m, const struct ovc_policy_host *host, const struct ovc_policy_out *out)
{
	struct ovc_overcommit_guest *og = calloc(m->n_guests ? m->n_guests : 1, sizeof(*og));
	struct ovc_overcommit_input in = {
		.host_total_bytes = host->mem.total_bytes,
		.host_reserve_bytes = ovc_conf_size_bytes(&m->cfg->host.reserve, host->mem.total_bytes),
		.host_available_bytes = host->mem.available_bytes,
		.low_bytes = out->low_bytes,
		.high_bytes = out->high_bytes,
		.ksm_pages_sharing = host->ksm_valid ? host->ksm.pages_sharing : 0,
		.ksm_zero_pages = host->ksm_valid ? host->ksm.ksm_zero_pages : 0,
		.page_size = host->page_size,
		.guests = og,
		.n_guests = m->n_guests,
	};
	int r;

	if (!og)
		return;
	for (size_t i = 0; i < m->n_guests; i++) {
		const struct ovc_guest_stats *s = &m->guests[i].stats;

		og[i] = (struct ovc_overcommit_guest){ s->max_bytes, s->actual_bytes, s->rss_bytes,
						       s->engine_zero_bytes, s->engine_swap_bytes };
	}
	if (in.host_reserve_bytes >= in.host_total_bytes)
		in.host_reserve_bytes = 0; /* a 1GiB reserve on a tiny test VM */
	r = ovc_overcommit_compute(&in, &m->view.oc);
	free(og);
	if (r < 0)
		ovcd_log_guest_ratelimited(&m->host_rl, OVC_LOG_WARNING, "cannot compute the overcommit ratio: %s",
					   strerror(-r));

	m->view.mem = host->mem;
	m->view.psi_valid = host->psi_valid;
	m->view.psi = host->psi;
	m->view.ksm_valid = host->ksm_valid;
	m->view.ksm = host->ksm;
	m->view.ksm_knobs = host->ksm_knobs;
	if (host->ksm_valid)
		m->view.ksm_profit_bytes = ovc_ksm_profit_bytes(&host->ksm, host->page_size);
	snprintf(m->view.host_reason, sizeof(m->view.host_reason), "%s", out->reason);
	snprintf(m->view.ksm_reason, sizeof(m->view.ksm_reason), "%s", out->ksm_reason);
	build_view(m);

	free(m->metrics_text);
	m->metrics_text = NULL;
	m->metrics_len = 0;
	if (ovcd_metrics_render(&m->view, &m->metrics_text, &m->metrics_len) < 0) {
		dlog_err("out of memory rendering the metrics");
		return;
	}
	if (m->cfg->metrics.textfile[0]) {
		r = ovcd_metrics_write_textfile(m->cfg->metrics.textfile, m->metrics_text, m->metrics_len);
		if (r < 0)
			ovcd_log_guest_ratelimited(&m->host_rl, OVC_LOG_WARNING, "cannot write metrics to %s: %s",
						   m->cfg->metrics.textfile, strerror(-r));
	}
}

/* STATUS= for systemctl status: when it says something new, and at most
 * every 5 s unless the host's level changed (each tick would flood the
 * manager's notify socket with near-identical lines). */
static void notify_status(struct manager *m, bool level_changed)
{
	const struct ovc_overcommit *oc = &m->view.oc;
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	char text[256];

	snprintf(text, sizeof(text),
		 "STATUS=%s; ratio provisioned %" PRIu64 ".%02" PRIu64 " effective %" PRIu64 ".%02" PRIu64
		 "; %zu guests; balloon saves %s",
		 ovc_host_level_name(m->view.level), oc->provisioned_ratio_permille / 1000,
		 oc->provisioned_ratio_permille % 1000 / 10, oc->effective_ratio_permille / 1000,
		 oc->effective_ratio_permille % 1000 / 10, m->n_guests, SZ(oc->savings.balloon_bytes));
	if (strcmp(text, m->last_status) == 0 ||
	    (!level_changed && now - m->last_status_usec < 5 * USEC_PER_SEC))
		return;
	snprintf(m->last_status, sizeof(m->last_status), "%s", text);
	m->last_status_usec = now;
	sd_notify(0, text);
}

/* ---- a guest's policy input and what its decisions teach ---- */

static void guest_policy_input(struct manager *m, struct mguest *g, struct ovc_policy_guest *pg)
{
	*pg = (struct ovc_policy_guest){
		.name = g->v.name,
		.kind = g->drv->policy_kind,
		.stats = g->stats,
		.prev = g->prev,
		.target_bytes = g->v.target_bytes,
		.last_action_usec = g->last_action_usec,
		.last_emergency_usec = g->last_emergency_usec,
		.emergency_count = g->emergency_count,
		.engine = g->engine_drv != NULL,
		.free_page_reporting = g->free_page_reporting,
		.state = g->pstate,
	};
	guest_settings(m, g, &pg->settings);
}

/* Keep what a decision (tick or check) learned and shows: its state for
 * the guest's next decision, and the figures ovcctl shows. */
static void guest_decision_keep(struct manager *m, struct mguest *g, const struct ovc_policy_decision *d)
{
	if (d->oom_kill)
		dlog_warning("guest '%s': its OOM killer killed a task (%u seen so far); deflating it and "
			     "not inflating it again for a long while: %s",
			     g->v.name, d->state.oom_kills, d->reason);
	g->pstate = d->state;
	g->v.floor_bytes = d->floor_bytes;
	g->v.raised_floor_bytes = d->raised_floor_bytes;
	g->v.headroom_bytes = d->headroom_bytes;
	g->v.keep_bytes = d->keep_bytes;
	g->v.fpr_bytes = g->free_page_reporting ? d->fpr_bytes : OVC_UNKNOWN;
	g->v.growth_rate_bytes = d->growth_rate_bytes;
	g->v.growing = d->growing;
	g->v.idle = d->idle;
	g->v.oom_kills = d->state.oom_kills;
}

/* Whether the guest ignores what it was asked: the tick's decision (a
 * check between ticks does not see an engine's part). A warning naming
 * what it ignores when it starts, a notice when it complies again, both
 * rate-limited with the guest's other messages. */
static void guest_compliance_keep(struct manager *m, struct mguest *g, const struct ovc_policy_decision *d,
				  uint64_t now)
{
	uint64_t timeout = m->cfg->balloon.pending_timeout_usec;
	bool balloon;

	if (d->noncompliant == g->v.noncompliant)
		return;
	g->v.noncompliant = d->noncompliant;
	if (!d->noncompliant) {
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_NOTICE,
					   "guest '%s' complies again: what it owes counts as relief on its way",
					   g->v.name);
		return;
	}
	balloon = g->drv != m->engines && d->state.stuck_usec && now >= d->state.stuck_usec &&
		  now - d->state.stuck_usec >= timeout;
	if (balloon)
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
					   "guest '%s' is non-compliant: its balloon has not moved toward its "
					   "target %s for %" PRIu64 "s (it has %s); no longer counted as relief, "
					   "the others are asked instead",
					   g->v.name, SZ(g->v.target_bytes),
					   (now - d->state.stuck_usec) / USEC_PER_SEC, SZ(g->v.actual_bytes));
	else
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
					   "guest '%s' is non-compliant: its engine has not moved toward its "
					   "reclaim target %s for %" PRIu64 "s (it shares %s, swaps %s); no "
					   "longer counted as relief, the others are asked instead",
					   g->v.name, SZ(g->v.engine_target_bytes),
					   d->state.engine_stuck_usec && now >= d->state.engine_stuck_usec
						   ? (now - d->state.engine_stuck_usec) / USEC_PER_SEC : 0,
					   SZ(g->v.engine_zero_bytes), SZ(g->v.engine_swap_bytes));
}

/* ---- between ticks: fresh statistics of one guest ---- */

/*
 * Fresh statistics of a guest arrived (the driver's STATS event): run the
 * policy's per-guest check on them and, when the guest is in distress,
 * deflate it at once, in one step, to what it needs. Never inflates (that
 * is the tick's, for the host's sake). Figures the tick already took (the
 * same collected_usec) are left alone.
 */
static void guest_stats_arrived(struct manager *m, struct mguest *g)
{
	struct ovc_balloon_guest bg;
	struct ovc_policy_decision d;
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	struct ovc_policy_host host = {
		.now_usec = now,
		.page_size = (uint64_t)sysconf(_SC_PAGESIZE),
	};
	struct ovc_policy_guest pg;
	char reason[OVC_POLICY_REASON_MAX + 32];
	int r;

	if (!g->drv->list_ok || g->drv == m->engines || m->ticks == 0)
		return;
	r = ovc_balloon_guest(g->drv->b, g->v.name, &bg);
	if (r < 0) {
		dlog_debug("guest '%s': no statistics between ticks: %s", g->v.name, strerror(-r));
		return;
	}
	if (bg.stats.collected_usec == g->stats.collected_usec)
		return; /* the tick took these already */
	guest_take_stats(m, g, &bg);
	if (g->stats.collected_usec != bg.stats.collected_usec)
		return; /* the guest has not reported since: nothing to check */
	m->checks++;
	guest_policy_input(m, g, &pg);
	r = ovc_policy_guest_check(m->cfg, &host, &pg, &d);
	if (r < 0) {
		dlog_err("policy check of '%s' failed: %s", g->v.name, strerror(-r));
		return;
	}
	guest_decision_keep(m, g, &d);
	if (r == 0)
		return;
	if (!(d.target_bytes > g->v.target_bytes && d.target_bytes <= g->stats.max_bytes &&
	      d.target_bytes >= d.floor_bytes)) {
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_ERR,
					   "refusing target %s for '%s' between ticks: not a deflate within "
					   "[floor %s, max %s]",
					   SZ(d.target_bytes), g->v.name, SZ(d.floor_bytes), SZ(g->stats.max_bytes));
		return;
	}
	snprintf(reason, sizeof(reason), "between ticks: %s", d.reason);
	act_guest(m, g, &d, d.action, d.target_bytes, reason, now);
	g->v.quick_deflates++;
	build_view(m); /* ovcctl sees it now, not at the next tick */
}

/* Every second, ask each balloon driver for its guests' fresh figures:
 * the drivers ask their peers only when listed, and no stats period is
 * shorter than a second, so every guest update reaches the check within a
 * second of the guest's sending it. The answers come as STATS events
 * (guest_stats_arrived); the list itself, the cached figures, is not
 * needed here. Never a round trip in this thread. */
static void poll_guests(struct manager *m)
{
	for (size_t i = 0; i < m->n_drivers; i++) {
		struct mdriver *d = &m->drivers[i];
		struct ovc_balloon_guest *list = NULL;
		size_t n = 0;

		if (d == m->engines || !d->list_ok)
			continue;
		if (ovc_balloon_list(d->b, &list, &n) == 0)
			free(list);
	}
}

/* The host as the policy sees it (collect.c), the guests' memory cgroup
 * (--memory-cgroup) included. 0, or -errno of meminfo or the cgroup,
 * logged (rate-limited): the tick is skipped. */
static int host_collect(struct manager *m, uint64_t now, struct ovc_policy_host *host)
{
	struct ovc_host_collect_errors errs;
	int r = ovc_host_collect(NULL, m->opts.memory_cgroup, now, host, &errs);

	if (errs.meminfo < 0)
		ovcd_log_guest_ratelimited(&m->host_rl, OVC_LOG_ERR, "cannot read /proc/meminfo: %s; tick skipped",
					   strerror(-errs.meminfo));
	else if (errs.cgroup < 0)
		ovcd_log_guest_ratelimited(&m->host_rl, OVC_LOG_ERR, "cannot read memory cgroup %s: %s; tick skipped",
					   m->opts.memory_cgroup, strerror(-errs.cgroup));
	return r;
}

static void tick(struct manager *m)
{
	struct ovc_policy_host host = { 0 };
	struct ovc_policy_guest *pg = NULL;
	struct ovc_policy_decision *dec = NULL;
	struct ovc_policy_out out = { 0 };
	size_t n = 0;
	bool level_changed;
	int r;

	m->ticks++;
	m->last_tick_usec = now_usec(CLOCK_MONOTONIC);
	r = host_collect(m, m->last_tick_usec, &host);
	if (r < 0)
		return; /* logged */

	collect_guests(m);

	pg = calloc(m->n_guests ? m->n_guests : 1, sizeof(*pg));
	dec = calloc(m->n_guests ? m->n_guests : 1, sizeof(*dec));
	struct mguest **map = calloc(m->n_guests ? m->n_guests : 1, sizeof(*map));
	if (!pg || !dec || !map) {
		dlog_err("out of memory in tick %" PRIu64, m->ticks);
		goto out;
	}
	for (size_t i = 0; i < m->n_guests; i++) {
		struct mguest *g = &m->guests[i];

		if (!g->drv->list_ok)
			continue; /* its driver lost the connection: nothing is known */
		map[n] = g;
		guest_policy_input(m, g, &pg[n]);
		n++;
	}
	r = ovc_policy_tick(m->cfg, &host, &m->ksm_state, pg, n, dec, &out);
	if (r < 0) {
		dlog_err("policy failed in tick %" PRIu64 ": %s", m->ticks, strerror(-r));
		goto out;
	}
	level_changed = out.level != m->view.level || m->ticks == 1;
	if (level_changed) {
		dlog_notice("tick %" PRIu64 ": %s", m->ticks, out.reason);
		m->view.level = out.level;
		m->view.level_since_tick = m->ticks;
	}

	for (size_t i = 0; i < n; i++) {
		struct mguest *g = map[i];
		const struct ovc_policy_decision *d = &dec[i];
		enum ovc_policy_action action = d->action;
		uint64_t target = d->target_bytes;
		char reason[OVC_POLICY_REASON_MAX + 64];

		snprintf(reason, sizeof(reason), "%s", d->reason);
		guest_decision_keep(m, g, d);
		guest_compliance_keep(m, g, d, host.now_usec);
		/* An emergency's count is kept only once its deflate is done
		 * (act_guest), with its time; any other decision may end a streak. */
		if (action != OVC_ACTION_EMERGENCY && d->reclaim_action != OVC_ACTION_EMERGENCY)
			g->emergency_count = d->emergency_count;
		if (g->engine_drv || g->drv == m->engines)
			act_engine(m, g, d, host.now_usec);
		if (g->drv == m->engines)
			continue; /* no balloon */
		if (g->v.pin_bytes && g->v.balloon_driver && strcmp(g->v.balloon_driver, "absent") != 0) {
			/* An operator's pin wins over the policy's balloon
			 * moves, but never over the floor, and a guest in
			 * trouble still gets its emergency deflate. */
			uint64_t pinned = MAX(g->v.pin_bytes, d->floor_bytes);

			if (!(action == OVC_ACTION_EMERGENCY && target > pinned)) {
				action = pinned == g->v.target_bytes ? OVC_ACTION_NONE : OVC_ACTION_RESTORE;
				target = pinned;
				snprintf(reason, sizeof(reason), "pinned by ovcctl at %s", SZ(pinned));
			}
		}
		if (action == OVC_ACTION_NONE || action == OVC_ACTION_RECLAIM || target == g->v.target_bytes)
			continue;
		if (!(g->stats.max_bytes && target <= g->stats.max_bytes && target >= d->floor_bytes)) {
			/* The policy promises this; check it anyway, a guest's
			 * floor is the one thing never to break. */
			ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_ERR,
						   "tick %" PRIu64 ": refusing target %s for '%s' outside "
						   "[floor %s, max %s]",
						   m->ticks, SZ(target), g->v.name, SZ(d->floor_bytes),
						   SZ(g->stats.max_bytes));
			continue;
		}
		act_guest(m, g, d, action, target, reason, host.now_usec);
	}

	if (m->cfg->ksm.enable && host.ksm_valid) {
		if (out.ksm_change) {
			if (m->opts.dry_run) {
				dlog_info("tick %" PRIu64 ": would set KSM run=%u pages_to_scan=%u: %s", m->ticks,
					  out.ksm.run, out.ksm.pages_to_scan, out.ksm_reason);
			} else {
				r = ovc_ksm_apply(NULL, &out.ksm, &host.ksm_knobs);
				m->ksm_touched = true;
				if (r < 0)
					ovcd_log_guest_ratelimited(&m->host_rl, OVC_LOG_WARNING,
								   "failed to set KSM knobs: %s", strerror(-r));
				else
					dlog_info("tick %" PRIu64 ": KSM run=%u pages_to_scan=%u sleep_millisecs=%u: %s",
						  m->ticks, out.ksm.run, out.ksm.pages_to_scan,
						  out.ksm.sleep_millisecs, out.ksm_reason);
				host.ksm_knobs = out.ksm;
			}
		}
		m->ksm_state = out.ksm_state;
	}
	record(m, &host, &out);
	notify_status(m, level_changed);
	if (!m->ready) {
		sd_notify(0, "READY=1");
		m->ready = true;
		dlog_notice("ready: %zu guests, tick every %" PRIu64 " ms%s", m->n_guests,
			    m->cfg->host.interval_usec / 1000, m->opts.dry_run ? " (dry run: nothing is changed)" : "");
	}
out:
	free(pg);
	free(dec);
	free(map);
}

/* ---- timer, PSI ---- */

static int arm_timer(struct manager *m, uint64_t first_usec)
{
	struct itimerspec its = {
		.it_interval = { .tv_sec = (time_t)(m->cfg->host.interval_usec / USEC_PER_SEC),
				 .tv_nsec = (long)(m->cfg->host.interval_usec % USEC_PER_SEC * 1000) },
		.it_value = { .tv_sec = (time_t)(first_usec / USEC_PER_SEC),
			      .tv_nsec = (long)(first_usec % USEC_PER_SEC * 1000) },
	};

	if (first_usec == 0)
		its.it_value.tv_nsec = 1;
	return timerfd_settime(m->timer_fd, 0, &its, NULL) < 0 ? negative_errno() : 0;
}

static int watch(struct manager *m, int fd, uint32_t events, struct source *src)
{
	struct epoll_event ev = { .events = events, .data.ptr = src };

	return epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? negative_errno() : 0;
}

/* The one-second timer of poll_guests(). */
static int poll_open(struct manager *m)
{
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	int r;

	m->poll_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (m->poll_fd < 0 || timerfd_settime(m->poll_fd, 0, &its, NULL) < 0 ||
	    (r = watch(m, m->poll_fd, EPOLLIN, &m->poll)) < 0) {
		r = negative_errno();
		dlog_err("cannot set up the stats poll timer: %s", strerror(-r));
		return r;
	}
	return 0;
}

static void unwatch_close(struct manager *m, int *fd)
{
	if (*fd < 0)
		return;
	(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, *fd, NULL);
	close(*fd);
	*fd = -1;
}

static void psi_open(struct manager *m)
{
	int fd;

	unwatch_close(m, &m->psi_fd);
	if (!m->cfg->host.psi_trigger_stall_usec)
		return;
	fd = ovc_psi_trigger_open(NULL, false, m->cfg->host.psi_trigger_stall_usec,
				  m->cfg->host.psi_trigger_window_usec);
	if (fd < 0) {
		dlog_notice("no memory PSI trigger (%s): pressure is seen at the next tick only", strerror(-fd));
		return;
	}
	m->psi_fd = fd;
	if (watch(m, fd, EPOLLPRI, &m->psi) < 0)
		unwatch_close(m, &m->psi_fd);
}

/* ---- metrics listener ---- */

/* The body of GET /metrics: the text the last tick rendered. */
static void metrics_body(void *userdata, const char **text, size_t *len)
{
	struct manager *m = userdata;

	*text = m->metrics_text ? m->metrics_text : "";
	*len = m->metrics_text ? m->metrics_len : 0;
}

static void metrics_close(struct manager *m)
{
	if (m->metrics_fd >= 0)
		(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, m->metrics_fd, NULL);
	m->metrics_fd = -1; /* the server's own */
	ovcd_metrics_server_free(m->http);
	m->http = NULL;
}

static void metrics_open(struct manager *m)
{
	static const struct ovcd_metrics_limits lim = {
		.max_connections = OVCD_METRICS_MAX_CONNECTIONS,
		.max_per_address = OVCD_METRICS_MAX_PER_ADDRESS,
		.idle_timeout_sec = OVCD_METRICS_IDLE_TIMEOUT_SEC,
		.deadline_usec = OVCD_METRICS_DEADLINE_USEC,
	};
	int fd, r;

	metrics_close(m);
	if (!m->cfg->metrics.listen[0])
		return;
	fd = ovcd_metrics_listen(m->cfg->metrics.listen);
	if (fd < 0) {
		dlog_err("cannot listen for metrics on %s: %s", m->cfg->metrics.listen,
			 fd == -EADDRNOTAVAIL ? "not a loopback address" : strerror(-fd));
		return;
	}
	r = ovcd_metrics_server_new(fd, &lim, metrics_body, m, &m->http);
	if (r < 0) {
		dlog_err("cannot serve metrics on %s: %s", m->cfg->metrics.listen, strerror(-r));
		close(fd);
		return;
	}
	m->metrics_fd = ovcd_metrics_server_fd(m->http);
	if (m->metrics_fd < 0 || watch(m, m->metrics_fd, EPOLLIN, &m->metrics) < 0) {
		dlog_err("cannot serve metrics on %s: no epoll fd", m->cfg->metrics.listen);
		m->metrics_fd = -1;
		metrics_close(m);
		return;
	}
	dlog_info("metrics on http://%s/metrics", m->cfg->metrics.listen);
}

/* ---- control socket ---- */

static int resolve_group(struct manager *m, const struct ovc_config *cfg)
{
	struct group *gr;

	m->has_gid = false;
	if (!cfg->control.group[0])
		return 0;
	gr = getgrnam(cfg->control.group);
	if (!gr) {
		dlog_err("%s: [control] group: no group named '%s'; only root may change settings", cfg->path,
			 cfg->control.group);
		return -ENOENT;
	}
	m->gid = gr->gr_gid;
	m->has_gid = true;
	return 0;
}

/* Mode 0660, owner root, group [control] group, applied to the socket
 * file @name in @dirfd only if it is a socket and (once ovcd made one) the
 * one ovcd made: never through a symlink or onto a file someone swapped in. */
static void control_chown_at(struct manager *m, int dirfd, const char *name)
{
	char proc[64];
	struct stat st;
	int fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		dlog_warning("control socket %s: %s", m->control_path, strerror(errno));
		goto out;
	}
	if (!S_ISSOCK(st.st_mode) ||
	    (m->control_ino && (st.st_dev != m->control_dev || st.st_ino != m->control_ino))) {
		dlog_warning("control socket %s is no longer the socket ovcd made: its mode and owner are left "
			     "alone (restart ovcd to make a new one)",
			     m->control_path);
		goto out;
	}
	/* On the inode the O_PATH fd holds, never a path looked up again. */
	if (fchownat(fd, "", 0, m->has_gid ? m->gid : 0, AT_EMPTY_PATH) < 0)
		dlog_warning("chown %s: %s", m->control_path, strerror(errno));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (chmod(proc, 0660) < 0)
		dlog_warning("chmod %s: %s", m->control_path, strerror(errno));
out:
	if (fd >= 0)
		close(fd);
}

static void control_chown(struct manager *m)
{
	control_chown_at(m, m->control_dirfd, m->control_name);
}

/* Bind the socket in a private directory (root's, 0700) next to its final
 * place, set its owner and mode there where nobody else can reach it, and
 * rename it into place: whoever may write [control] socket's directory
 * never gets a moment to swap the file under chmod/chown, and never sees
 * it with another mode. */
static int control_bind(struct manager *m, int dirfd, const char *name, int fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char priv[64], tmpl[96];
	struct stat st;
	int pfd = -1, r;

	snprintf(tmpl, sizeof(tmpl), "/proc/self/fd/%d/.ovcd-XXXXXX", dirfd);
	if (!mkdtemp(tmpl))
		return negative_errno();
	snprintf(priv, sizeof(priv), "%s", strrchr(tmpl, '/') + 1);
	pfd = openat(dirfd, priv, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pfd < 0 || fstat(pfd, &st) < 0) {
		r = negative_errno();
		goto out;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		r = -EPERM; /* not the directory mkdtemp made */
		goto out;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/s", pfd);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    fstatat(pfd, "s", &st, AT_SYMLINK_NOFOLLOW) < 0) {
		r = negative_errno();
		goto out;
	}
	m->control_dev = st.st_dev;
	m->control_ino = st.st_ino;
	control_chown_at(m, pfd, "s");
	r = listen(fd, 16) < 0 || renameat(pfd, "s", dirfd, name) < 0 ? negative_errno() : 0;
out:
	if (pfd >= 0) {
		(void)unlinkat(pfd, "s", 0);
		close(pfd);
	}
	(void)unlinkat(dirfd, priv, AT_REMOVEDIR);
	return r;
}

static int control_open(struct manager *m)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = m->cfg->control.socket;
	char dir[sizeof(sa.sun_path)];
	char *slash;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		dlog_err("control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (!slash || !slash[1]) {
		dlog_err("control socket path is not absolute or names no file: %s", path);
		return -EINVAL;
	}
	*slash = '\0';
	if (dir[0] && mkdir(dir, 0755) < 0 && errno != EEXIST) {
		dlog_err("cannot create %s: %s", dir, strerror(errno));
		return negative_errno();
	}
	snprintf(m->control_path, sizeof(m->control_path), "%s", path);
	m->control_name = m->control_path + (slash - dir) + 1;
	m->control_dirfd = open(dir[0] ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (m->control_dirfd < 0) {
		r = negative_errno();
		dlog_err("cannot open %s: %s", dir, strerror(-r));
		return r;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return negative_errno();
	/* A socket that answers belongs to a running ovcd: never steal it. A
	 * dead one is left from a crash: the rename below replaces it. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		close(fd);
		dlog_err("another ovcd is running on %s", path);
		return -EADDRINUSE;
	}
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return negative_errno();
	r = control_bind(m, m->control_dirfd, m->control_name, fd);
	if (r < 0) {
		dlog_err("cannot listen on %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	m->control_fd = fd;
	return watch(m, fd, EPOLLIN, &m->control);
}

static void client_close(struct manager *m, struct client *c)
{
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		if (m->clients[i] == c)
			m->clients[i] = NULL;
	unwatch_close(m, &c->fd);
	free(c->out);
	free(c);
}

/* Watch for what the client's state needs: input while it may send more
 * and its replies are not piling up, output while replies wait. */
static int client_watch(struct manager *m, struct client *c)
{
	uint32_t ev = 0;
	struct epoll_event e = { .data.ptr = &c->src };

	if (!c->eof && !c->closing && c->out_len - c->out_off < CLIENT_OUT_HIGH && c->n < sizeof(c->buf))
		ev |= EPOLLIN | EPOLLRDHUP;
	if (c->out_len > c->out_off)
		ev |= EPOLLOUT;
	if (ev == c->events)
		return 0;
	e.events = ev;
	if (epoll_ctl(m->epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
		return negative_errno();
	c->events = ev;
	return 0;
}

/* Its deadline from its state now, called after each bit of progress: a
 * waiting reply must move within CLIENT_IO_USEC, a request line must end
 * within CLIENT_IO_USEC of its first byte, an idle connection may wait
 * CLIENT_IDLE_USEC. */
static void client_rearm(struct client *c, uint64_t now)
{
	if (c->out_len > c->out_off)
		c->deadline_usec = now + CLIENT_IO_USEC;
	else if (c->n > 0)
		c->deadline_usec = c->line_start_usec + CLIENT_IO_USEC;
	else
		c->deadline_usec = now + CLIENT_IDLE_USEC;
}

static void client_accept(struct manager *m)
{
	/* What one wakeup takes; the rest waits for the next round. */
	for (unsigned round = 0; round < MAX_CLIENTS; round++) {
		int fd = accept4(m->control_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		struct ucred cred;
		socklen_t len = sizeof(cred);
		struct client *c = NULL;
		size_t slot = MAX_CLIENTS, total = 0, same = 0, others = 0;
		const char *why = NULL;

		if (fd < 0)
			return;
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
			close(fd);
			continue;
		}
		for (size_t i = 0; i < MAX_CLIENTS; i++) {
			if (!m->clients[i]) {
				if (slot == MAX_CLIENTS)
					slot = i;
				continue;
			}
			total++;
			if (m->clients[i]->uid == cred.uid)
				same++;
			if (m->clients[i]->uid != 0)
				others++;
		}
		if (total >= MAX_CLIENTS)
			why = "too many control connections";
		else if (cred.uid != 0 && same >= CLIENTS_PER_UID)
			why = "too many control connections from this user";
		else if (cred.uid != 0 && others >= MAX_CLIENTS - ROOT_SLOTS)
			why = "too many control connections (the last ones are kept for root)";
		else if (!(c = calloc(1, sizeof(*c))))
			why = "out of memory";
		if (why) {
			char *e = ovcd_reply_error(why);
			unsigned suppressed = 0;

			/* A fresh socket's buffer takes one short line. */
			if (e)
				(void)!send(fd, e, strlen(e), MSG_NOSIGNAL | MSG_DONTWAIT);
			free(e);
			close(fd);
			if (ovcd_ratelimit_check(&m->control_rl, now_usec(CLOCK_MONOTONIC), OVCD_RATELIMIT_INTERVAL_USEC,
						 OVCD_RATELIMIT_BURST, &suppressed))
				dlog_warning("control: refused a connection from uid %u: %s (%u more refused)",
					     (unsigned)cred.uid, why, suppressed);
			continue;
		}
		c->src.type = SRC_CLIENT;
		c->fd = fd;
		c->uid = cred.uid;
		c->gid = cred.gid;
		/* The peer's supplementary groups as they were at connect()
		 * (SO_PEERGROUPS, Linux 4.13): no race with /proc. */
		len = sizeof(c->groups);
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
			c->n_groups = len / sizeof(gid_t);
		c->events = EPOLLIN | EPOLLRDHUP;
		client_rearm(c, now_usec(CLOCK_MONOTONIC));
		m->clients[slot] = c;
		if (watch(m, fd, c->events, &c->src) < 0)
			client_close(m, c);
	}
}

static int reload(struct manager *m, char **ret_errors);
static int engines_open(struct manager *m, const char *dir);
static void engines_close(struct manager *m);

static char *handle_set(struct manager *m, const struct ovcd_request *req)
{
	struct mguest *g = guest_find(m, req->guest);
	char msg[512];
	uint64_t bytes;

	if (!g) {
		snprintf(msg, sizeof(msg), "no guest named '%s'", req->guest);
		return ovcd_reply_error(msg);
	}
	if (g->drv == m->engines) {
		snprintf(msg, sizeof(msg), "'%s' is an embedded engine without a balloon: it has no %s",
			 g->v.name, req->what == OVCD_SET_FLOOR ? "floor" : "balloon target");
		return ovcd_reply_error(msg);
	}
	bytes = req->clear ? 0 : ovc_conf_size_bytes(&req->size, g->v.max_bytes);
	if (!req->clear && bytes > g->v.max_bytes) {
		snprintf(msg, sizeof(msg), "%s %s is above the maximum %s of '%s'",
			 req->what == OVCD_SET_FLOOR ? "floor" : "target", SZ(bytes), SZ(g->v.max_bytes), g->v.name);
		return ovcd_reply_error(msg);
	}
	if (req->what == OVCD_SET_FLOOR) {
		g->has_floor_override = !req->clear;
		g->floor_override = req->size;
		if (req->clear)
			snprintf(msg, sizeof(msg), "floor of '%s' back to the config's", g->v.name);
		else
			snprintf(msg, sizeof(msg), "floor of '%s' set to %s until reload or restart", g->v.name,
				 SZ(bytes));
	} else {
		g->v.pin_bytes = bytes;
		if (req->clear)
			snprintf(msg, sizeof(msg), "target of '%s' unpinned", g->v.name);
		else
			snprintf(msg, sizeof(msg), "target of '%s' pinned at %s until reload or restart "
						   "(never below its floor)",
				 g->v.name, SZ(bytes));
	}
	dlog_notice("ovcctl: %s", msg);
	return ovcd_reply_ok(msg);
}

static char *handle_request(struct manager *m, struct client *c, const char *line, size_t len)
{
	struct ovcd_request req;
	char err[OVCD_ERROR_MAX];
	char *errors = NULL, *reply;

	if (ovcd_request_parse(line, len, &req, err, sizeof(err)) < 0)
		return ovcd_reply_error(err);
	if (ovcd_command_mutates(req.command) &&
	    !ovcd_peer_may_mutate(c->uid, c->gid, c->groups, c->n_groups, m->has_gid, m->gid)) {
		snprintf(err, sizeof(err), "permission denied: \"%s\" is only for root%s%s (uid %u is not)",
			 ovcd_command_name(req.command), m->has_gid ? " and members of group " : "",
			 m->has_gid ? m->cfg->control.group : "", (unsigned)c->uid);
		dlog_notice("control: refused \"%s\" from uid %u", ovcd_command_name(req.command), (unsigned)c->uid);
		return ovcd_reply_error(err);
	}
	switch (req.command) {
	case OVCD_CMD_STATUS:
		build_view(m);
		return ovcd_reply_status(&m->view);
	case OVCD_CMD_GUESTS:
		build_view(m);
		return ovcd_reply_guests(&m->view);
	case OVCD_CMD_RELOAD:
		if (reload(m, &errors) < 0) {
			reply = ovcd_reply_error(errors ? errors : "reload failed");
			free(errors);
			return reply;
		}
		return ovcd_reply_ok("configuration reloaded");
	case OVCD_CMD_SET:
		return handle_set(m, &req);
	}
	return ovcd_reply_error("unknown command");
}

/* Queue @s (a reply line) after the replies already waiting. */
static int client_send(struct client *c, const char *s)
{
	size_t len = strlen(s);

	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + len > c->out_cap) {
		size_t cap = MAX(c->out_cap * 2, c->out_len + len);
		char *p;

		if (c->out_off > 0) {
			/* Make room at the front first. */
			memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
			c->out_len -= c->out_off;
			c->out_off = 0;
		}
		if (c->out_len + len > c->out_cap) {
			p = realloc(c->out, cap);
			if (!p)
				return -ENOMEM;
			c->out = p;
			c->out_cap = cap;
		}
	}
	memcpy(c->out + c->out_len, s, len);
	c->out_len += len;
	return 0;
}

/* Send what the socket takes now. 0, or -errno: drop the client. */
static int client_flush(struct client *c)
{
	while (c->out_off < c->out_len) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : negative_errno();
		}
		c->out_off += (size_t)w;
	}
	return 0;
}

/* Answer the complete lines in buf while the output queue has room.
 * -errno: drop the client. */
static int client_process_lines(struct manager *m, struct client *c)
{
	char *nl;

	while (c->out_len - c->out_off < CLIENT_OUT_HIGH && !c->closing && (nl = memchr(c->buf, '\n', c->n))) {
		size_t len = (size_t)(nl - c->buf);
		char *reply = handle_request(m, c, c->buf, len > 0 && c->buf[len - 1] == '\r' ? len - 1 : len);
		int r = reply ? client_send(c, reply) : -ENOMEM;

		free(reply);
		if (r < 0)
			return r;
		memmove(c->buf, nl + 1, c->n - len - 1);
		c->n -= len + 1;
		/* What is left came with the last read. */
		c->line_start_usec = now_usec(CLOCK_MONOTONIC);
	}
	if (c->n == sizeof(c->buf) && !memchr(c->buf, '\n', c->n) && !c->closing) {
		/* A line longer than any request: say so, then close. */
		char err[OVCD_ERROR_MAX];
		struct ovcd_request req;
		char *reply;
		int r;

		(void)ovcd_request_parse(c->buf, OVCD_REQUEST_MAX + 1, &req, err, sizeof(err));
		reply = ovcd_reply_error(err);
		r = reply ? client_send(c, reply) : -ENOMEM;
		free(reply);
		c->closing = true;
		c->n = 0;
		if (r < 0)
			return r;
	}
	return 0;
}

static void client_read(struct manager *m, struct client *c, uint32_t events)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	bool moved = false;
	unsigned reads = 0;
	int r = 0;

	if (events & EPOLLERR) {
		client_close(m, c);
		return;
	}
	if (events & EPOLLOUT) {
		size_t off = c->out_off;

		r = client_flush(c);
		moved = c->out_off != off;
	}
	/* Read while there is room for a line and for its reply, and not
	 * forever: a client that keeps sending waits for the next round. */
	while (r == 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && !c->eof && !c->closing &&
	       c->n < sizeof(c->buf) && c->out_len - c->out_off < CLIENT_OUT_HIGH && reads++ < 16) {
		ssize_t k;

		if (c->n == 0)
			c->line_start_usec = now;
		k = recv(c->fd, c->buf + c->n, sizeof(c->buf) - c->n, MSG_DONTWAIT);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			if (errno != EAGAIN)
				r = negative_errno();
			break;
		}
		moved = true;
		if (k == 0)
			c->eof = true;
		c->n += (size_t)k;
		r = client_process_lines(m, c);
	}
	/* Lines left unanswered while the queue was full. */
	if (r == 0)
		r = client_process_lines(m, c);
	if (r == 0)
		r = client_flush(c);
	if (r < 0 || ((c->eof || c->closing) && c->out_off == c->out_len)) {
		client_close(m, c);
		return;
	}
	if (moved)
		client_rearm(c, now);
	if (client_watch(m, c) < 0)
		client_close(m, c);
}

/* Drop the clients past their deadline; the time until the next one's,
 * in ms, or -1. */
static int clients_expire(struct manager *m)
{
	uint64_t now = now_usec(CLOCK_MONOTONIC), next = UINT64_MAX;

	for (size_t i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = m->clients[i];

		if (!c)
			continue;
		if (now >= c->deadline_usec) {
			dlog_debug("control: dropped a connection of uid %u: %s", (unsigned)c->uid,
				   c->out_len > c->out_off ? "it does not read its replies"
				   : c->n > 0		   ? "its request did not end"
							   : "idle");
			client_close(m, c);
			continue;
		}
		next = MIN(next, c->deadline_usec - now);
	}
	return next == UINT64_MAX ? -1 : (int)MIN((next + 999) / 1000, (uint64_t)INT32_MAX);
}

/* ---- reload ---- */

static int reload(struct manager *m, char **ret_errors)
{
	struct ovc_config *cfg = NULL, *old;
	char *errors = NULL;
	int r;

	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec(CLOCK_MONOTONIC));
	r = ovc_config_load(m->cfg->path, &cfg, &errors);
	if (r < 0) {
		/* Each line is PATH:LINE: [SECTION] KEY: REASON. */
		char *save = NULL, *copy = errors ? strdup(errors) : NULL;

		for (char *l = copy ? strtok_r(copy, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
			dlog_err("reload: %s", l);
		free(copy);
		dlog_err("reload of %s failed: keeping the last good configuration", m->cfg->path);
		if (ret_errors) {
			*ret_errors = errors;
			errors = NULL;
		}
		free(errors);
		sd_notify(0, "READY=1");
		return r;
	}
	old = m->cfg;
	m->cfg = cfg;
	if (strcmp(old->control.socket, cfg->control.socket) != 0)
		dlog_warning("reload: [control] socket changed to %s; it takes effect at restart (still on %s)",
			     cfg->control.socket, m->control_path);
	(void)resolve_group(m, cfg);
	if (m->control_fd >= 0)
		control_chown(m);
	if (strcmp(old->metrics.listen, cfg->metrics.listen) != 0)
		metrics_open(m);
	if (old->host.psi_trigger_stall_usec != cfg->host.psi_trigger_stall_usec ||
	    old->host.psi_trigger_window_usec != cfg->host.psi_trigger_window_usec)
		psi_open(m);
	if (!cfg->engine.dir[0])
		engines_close(m);
	else if (!m->engine_dir || strcmp(m->engine_dir, cfg->engine.dir) != 0)
		/* On failure the last directory stays watched (logged). */
		(void)engines_open(m, cfg->engine.dir);
	if (!cfg->ksm.enable)
		ksm_restore(m);
	else if (!old->ksm.enable && !m->opts.dry_run && !m->ksm_saved_valid)
		m->ksm_saved_valid = ovc_ksm_save(NULL, &m->ksm_saved) == 0;
	ovc_config_free(old);
	/* Overrides from ovcctl last until reload or restart. */
	for (size_t i = 0; i < m->n_guests; i++) {
		m->guests[i].has_floor_override = false;
		m->guests[i].v.pin_bytes = 0;
	}
	dlog_notice("configuration reloaded from %s", m->cfg->path);
	/* A tick on the new config at once, from the loop: the timer fires
	 * now and every interval from here. Whoever asked for the reload
	 * (ovcctl) has its reply before that tick runs. */
	(void)arm_timer(m, 0);
	sd_notify(0, "READY=1");
	return 0;
}

/* ---- signals, drivers ---- */

static void handle_signal(struct manager *m)
{
	struct signalfd_siginfo si;

	while (read(m->signal_fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			dlog_info("SIGHUP: reloading %s", m->cfg->path);
			(void)reload(m, NULL);
			break;
		case SIGTERM:
		case SIGINT:
			dlog_notice("%s: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			m->quit = true;
			break;
		default:
			break;
		}
	}
}

static void on_balloon_event(void *userdata, const struct ovc_balloon_event *ev)
{
	struct mdriver *d = userdata;
	struct manager *m = d->m;
	struct mguest *g = ev->guest ? guest_find(m, ev->guest) : NULL;

	switch (ev->type) {
	case OVC_BALLOON_EVENT_CHANGED:
		if (g && g->drv == d && ovc_known(ev->actual_bytes))
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
			guest_stats_arrived(m, g);
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

static void driver_process(struct mdriver *d)
{
	int r = ovc_balloon_process(d->b);

	if (r < 0)
		ovcd_log_guest_ratelimited(&d->rl, OVC_LOG_WARNING, "%s driver: %s", d->kind,
					   ovc_balloon_error(d->b)[0] ? ovc_balloon_error(d->b) : strerror(-r));
}

/* A balloon handle whose events go to slot @d. */
static int driver_new(struct manager *m, struct mdriver *d, enum ovc_balloon_backend backend, const char *uri,
		      const char *qmp_dir, const char *engine_dir, ovc_balloon **ret)
{
	struct ovc_balloon_opts o = {
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

	return ovc_balloon_new(&o, ret);
}

static int driver_open(struct manager *m, enum ovc_balloon_backend backend, const char *uri, const char *qmp_dir)
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
	r = watch(m, ovc_balloon_fd(d->b), EPOLLIN, &d->src);
	if (r < 0) {
		ovc_balloon_free(d->b);
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
	(void)epoll_ctl(m->epfd, EPOLL_CTL_DEL, ovc_balloon_fd(d->b), NULL);
	ovc_balloon_free(d->b);
	d->b = NULL;
}

/* Watch @dir for engines in the engines' slot (the last one). On failure
 * the old handle, if any, stays. */
static int engines_open(struct manager *m, const char *dir)
{
	struct mdriver *d = m->engines ? m->engines : &m->drivers[m->n_drivers];
	char *copy = strdup(dir);
	ovc_balloon *b = NULL;
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
		r = watch(m, ovc_balloon_fd(b), EPOLLIN, &d->src);
	if (r < 0) {
		dlog_err("cannot watch the engine directory %s: %s", dir,
			 b && ovc_balloon_error(b)[0] ? ovc_balloon_error(b) : strerror(-r));
		ovc_balloon_free(b);
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

static void engines_close(struct manager *m)
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

static int open_drivers(struct manager *m)
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

/* ---- life cycle ---- */

int manager_new(const struct manager_opts *opts, struct ovc_config *cfg, struct manager **ret)
{
	struct manager *m = calloc(1, sizeof(*m));
	sigset_t mask;
	int r;

	if (!m) {
		ovc_config_free(cfg);
		return -ENOMEM;
	}
	m->opts = *opts;
	m->cfg = cfg;
	m->timer_fd = m->signal_fd = m->control_fd = m->metrics_fd = m->psi_fd = m->poll_fd = -1;
	m->poll.type = SRC_POLL;
	m->timer.type = SRC_TIMER;
	m->sig.type = SRC_SIGNAL;
	m->control.type = SRC_CONTROL;
	m->metrics.type = SRC_METRICS;
	m->psi.type = SRC_PSI;
	m->start_usec = now_usec(CLOCK_MONOTONIC);
	m->view.level = OVC_HOST_STEADY;
	m->control_dirfd = -1;

	m->epfd = epoll_create1(EPOLL_CLOEXEC);
	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (m->epfd < 0 || m->timer_fd < 0 || sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (m->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
		r = negative_errno();
		dlog_err("cannot set up the event loop: %s", strerror(-r));
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((r = watch(m, m->timer_fd, EPOLLIN, &m->timer)) < 0 ||
	    (r = watch(m, m->signal_fd, EPOLLIN, &m->sig)) < 0)
		goto fail;
	r = poll_open(m);
	if (r < 0)
		goto fail;

	if (opts->memory_cgroup) {
		struct ovc_cgroup_mem cg;

		r = ovc_cgroup_mem_read(NULL, opts->memory_cgroup, &cg);
		if (r < 0) {
			dlog_err("--memory-cgroup %s: %s", opts->memory_cgroup,
				 r == -ENOENT ? "not a memory cgroup (no memory.max or memory.limit_in_bytes)"
					      : strerror(-r));
			goto fail;
		}
		if (cg.limit_bytes == UINT64_MAX)
			dlog_warning("memory cgroup %s has no limit: the host's memory counts", opts->memory_cgroup);
		else
			dlog_notice("guests' memory: cgroup %s, limit %s, %s in use", opts->memory_cgroup,
				    SZ(cg.limit_bytes), SZ(cg.usage_bytes));
	}
	(void)resolve_group(m, cfg);
	r = control_open(m);
	if (r < 0)
		goto fail;
	metrics_open(m);
	psi_open(m);
	r = open_drivers(m);
	if (r < 0)
		goto fail;
	/* Last, so that its slot is the last one (engines_close). */
	if (cfg->engine.dir[0] && (r = engines_open(m, cfg->engine.dir)) < 0)
		goto fail;
	if (m->n_drivers == 0)
		dlog_warning("no balloon driver: give --qmp-dir DIR or --libvirt URI; only host state "
			     "and KSM are managed");
	if (cfg->ksm.enable && !opts->dry_run) {
		r = ovc_ksm_save(NULL, &m->ksm_saved);
		m->ksm_saved_valid = r == 0;
		if (r < 0)
			dlog_notice("KSM not available (%s): not managed", strerror(-r));
	}
	*ret = m;
	return 0;
fail:
	manager_free(m);
	return r;
}

int manager_run(struct manager *m)
{
	int r = arm_timer(m, 0);

	if (r < 0)
		return r;
	while (!m->quit) {
		struct epoll_event evs[32];
		int timeout = -1, n;

		for (size_t i = 0; i < m->n_drivers; i++) {
			int t = ovc_balloon_timeout_msec(m->drivers[i].b);

			if (t >= 0 && (timeout < 0 || t < timeout))
				timeout = t;
		}
		if (m->http) {
			int t = ovcd_metrics_server_timeout_msec(m->http);

			if (t >= 0 && (timeout < 0 || t < timeout))
				timeout = t;
		}
		{
			int t = clients_expire(m);

			if (t >= 0 && (timeout < 0 || t < timeout))
				timeout = t;
		}
		n = epoll_wait(m->epfd, evs, ARRAY_SIZE(evs), timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = negative_errno();
			dlog_err("epoll_wait: %s", strerror(-r));
			return r;
		}
		if (n == 0)
			for (size_t i = 0; i < m->n_drivers; i++)
				if (ovc_balloon_timeout_msec(m->drivers[i].b) >= 0)
					driver_process(&m->drivers[i]);
		for (int i = 0; i < n; i++) {
			struct source *src = evs[i].data.ptr;
			uint64_t exp;

			switch (src->type) {
			case SRC_TIMER:
				if (read(m->timer_fd, &exp, sizeof(exp)) == sizeof(exp))
					tick(m);
				break;
			case SRC_SIGNAL:
				handle_signal(m);
				break;
			case SRC_CONTROL:
				client_accept(m);
				break;
			case SRC_CLIENT:
				client_read(m, (struct client *)src, evs[i].events);
				/* A reply may have freed other clients? No:
				 * only this one. Later events of it this round
				 * are impossible (one fd, one event). */
				break;
			case SRC_METRICS:
				/* Never waits: MHD's sockets are non-blocking. */
				if (m->http)
					ovcd_metrics_server_process(m->http);
				break;
			case SRC_PSI:
				if (evs[i].events & EPOLLERR) {
					dlog_warning("memory PSI trigger went away");
					unwatch_close(m, &m->psi_fd);
					break;
				}
				dlog_debug("memory PSI trigger fired: tick now");
				tick(m);
				(void)arm_timer(m, m->cfg->host.interval_usec);
				break;
			case SRC_DRIVER:
				driver_process((struct mdriver *)src);
				break;
			case SRC_POLL:
				if (read(m->poll_fd, &exp, sizeof(exp)) == sizeof(exp))
					poll_guests(m);
				break;
			}
		}
		/* Deadlines that fell due while other sources kept epoll
		 * busy: a peer's timeout must not wait for a quiet moment. */
		if (n > 0)
			for (size_t i = 0; i < m->n_drivers; i++)
				if (ovc_balloon_timeout_msec(m->drivers[i].b) == 0)
					driver_process(&m->drivers[i]);
		/* Its timeouts: idle connections, deadlines. */
		if (m->http && ovcd_metrics_server_timeout_msec(m->http) == 0)
			ovcd_metrics_server_process(m->http);
	}
	sd_notify(0, "STOPPING=1");
	return 0;
}

void manager_free(struct manager *m)
{
	if (!m)
		return;
	ksm_restore(m);
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		if (m->clients[i])
			client_close(m, m->clients[i]);
	for (size_t i = 0; i < m->n_drivers; i++)
		ovc_balloon_free(m->drivers[i].b);
	if (m->control_fd >= 0) {
		struct stat st;

		close(m->control_fd);
		/* Only the file ovcd made: another may have taken the name. */
		if (fstatat(m->control_dirfd, m->control_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_dev == m->control_dev && st.st_ino == m->control_ino)
			(void)unlinkat(m->control_dirfd, m->control_name, 0);
	}
	if (m->control_dirfd >= 0)
		close(m->control_dirfd);
	metrics_close(m);
	if (m->psi_fd >= 0)
		close(m->psi_fd);
	if (m->timer_fd >= 0)
		close(m->timer_fd);
	if (m->poll_fd >= 0)
		close(m->poll_fd);
	if (m->signal_fd >= 0)
		close(m->signal_fd);
	if (m->epfd >= 0)
		close(m->epfd);
	free(m->engine_dir);
	free(m->guests);
	free(m->view_guests);
	free(m->metrics_text);
	ovc_config_free(m->cfg);
	free(m);
}
