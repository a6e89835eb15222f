/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's manager: lifecycle, the one event loop, the tick (collect →
 * policy → act → record), the policy's checks between ticks, the metrics
 * outputs and reload. See manager.h. The guest table is guests.c's, the
 * balloon drivers drivers.c's, the control socket control-server.c's,
 * which hands each request back here (control_request()).
 *
 * ovcd's main thread only; no locks.
 *
 * A guest's error never stops the daemon: it is logged once where it is
 * handled, rate-limited per guest, and the guest is retried at the next
 * tick.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "control-server.h"
#include "control.h"
#include "host/collect.h"
#include "host/host.h"
#include "host/ksm.h"
#include "state.h"
#include "metrics.h"

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
		struct ovcd_guest_settings s;

		guest_settings(m, g, &s);
		g->v.floor_bytes = ovcd_conf_size_bytes(&s.floor, g->v.max_bytes);
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
		g->v.stats_age_usec = ovcd_known(g->stats.guest_update_sec) && g->stats.guest_update_sec > 0 &&
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
	r = ovcd_ksm_restore(NULL, &m->ksm_saved);
	if (r < 0)
		dlog_err("failed to restore the KSM settings: %s", strerror(-r));
	else
		dlog_info("KSM settings restored (run=%u pages_to_scan=%u sleep_millisecs=%u)",
			  m->ksm_saved.run, m->ksm_saved.pages_to_scan, m->ksm_saved.sleep_millisecs);
	m->ksm_touched = false;
	memset(&m->ksm_state, 0, sizeof(m->ksm_state));
}

/* ---- tick ---- */

/* Set an engine's reclaim target as the policy decided. */
static void act_engine(struct manager *m, struct mguest *g, const struct ovcd_policy_decision *d, uint64_t now)
{
	struct mdriver *e = g->engine_drv ? g->engine_drv : g->drv;
	uint64_t from = ovcd_known(g->stats.engine_target_bytes) ? g->stats.engine_target_bytes : 0;
	uint64_t to = d->reclaim_target_bytes;
	const char *verb = ovcd_policy_action_name(d->reclaim_action);
	int r;

	if (d->reclaim_action == OVC_ACTION_NONE || to == from)
		return;
	if (m->opts.dry_run) {
		dlog_info("tick %" PRIu64 ": would %s '%s' reclaim target %s -> %s: %s", m->ticks, verb,
			  g->v.name, SIZE_SHORT(from), SIZE_SHORT(to), d->reason);
		return;
	}
	r = ovcd_balloon_set_reclaim(e->b, g->v.name, to, 0);
	if (r < 0) {
		const char *err = ovcd_balloon_error(e->b);

		g->v.errors++;
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
					   "tick %" PRIu64 ": failed to set the reclaim target of '%s' to %s: %s",
					   m->ticks, g->v.name, SIZE_SHORT(to), err[0] ? err : strerror(-r));
		return;
	}
	dlog_info("tick %" PRIu64 ": %s '%s' reclaim target %s -> %s: %s", m->ticks, verb, g->v.name, SIZE_SHORT(from),
		  SIZE_SHORT(to), d->reason);
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

static void act_guest(struct manager *m, struct mguest *g, const struct ovcd_policy_decision *d,
		      enum ovcd_policy_action action, uint64_t target, const char *reason, uint64_t now)
{
	const char *verb = ovcd_policy_action_name(action);
	uint64_t from = g->v.target_bytes;
	int r;

	if (m->opts.dry_run) {
		dlog_info("tick %" PRIu64 ": would %s '%s' %s -> %s: %s", m->ticks, verb, g->v.name, SIZE_SHORT(from),
			  SIZE_SHORT(target), reason);
		return;
	}
	r = ovcd_balloon_set_target(g->drv->b, g->v.name, target, 0);
	if (r < 0) {
		const char *e = ovcd_balloon_error(g->drv->b);

		g->v.errors++;
		if (e[0])
			ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING, "tick %" PRIu64 ": %s", m->ticks, e);
		else
			ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
						   "tick %" PRIu64 ": failed to %s balloon of '%s' to %s: %s",
						   m->ticks, verb, g->v.name, SIZE_SHORT(target), strerror(-r));
		return;
	}
	dlog_info("tick %" PRIu64 ": %s '%s' %s -> %s: %s", m->ticks, verb, g->v.name, SIZE_SHORT(from), SIZE_SHORT(target),
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

static void record(struct manager *m, const struct ovcd_policy_host *host, const struct ovcd_policy_out *out)
{
	struct ovcd_overcommit_guest *og = calloc(m->n_guests ? m->n_guests : 1, sizeof(*og));
	struct ovcd_overcommit_input in = {
		.host_total_bytes = host->mem.total_bytes,
		.host_reserve_bytes = ovcd_conf_size_bytes(&m->cfg->host.reserve, host->mem.total_bytes),
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
		const struct ovcd_guest_stats *s = &m->guests[i].stats;

		og[i] = (struct ovcd_overcommit_guest){ s->max_bytes, s->actual_bytes, s->rss_bytes,
						       s->engine_zero_bytes, s->engine_swap_bytes };
	}
	if (in.host_reserve_bytes >= in.host_total_bytes)
		in.host_reserve_bytes = 0; /* a 1GiB reserve on a tiny test VM */
	r = ovcd_overcommit_compute(&in, &m->view.oc);
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
		m->view.ksm_profit_bytes = ovcd_ksm_profit_bytes(&host->ksm, host->page_size);
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
	const struct ovcd_overcommit *oc = &m->view.oc;
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	char text[256];

	snprintf(text, sizeof(text),
		 "STATUS=%s; ratio provisioned %" PRIu64 ".%02" PRIu64 " effective %" PRIu64 ".%02" PRIu64
		 "; %zu guests; balloon saves %s",
		 ovcd_host_level_name(m->view.level), oc->provisioned_ratio_permille / 1000,
		 oc->provisioned_ratio_permille % 1000 / 10, oc->effective_ratio_permille / 1000,
		 oc->effective_ratio_permille % 1000 / 10, m->n_guests, SIZE_SHORT(oc->savings.balloon_bytes));
	if (strcmp(text, m->last_status) == 0 ||
	    (!level_changed && now - m->last_status_usec < 5 * USEC_PER_SEC))
		return;
	snprintf(m->last_status, sizeof(m->last_status), "%s", text);
	m->last_status_usec = now;
	sd_notify(0, text);
}

/* ---- a guest's policy input and what its decisions teach ---- */

static void guest_policy_input(struct manager *m, struct mguest *g, struct ovcd_policy_guest *pg)
{
	*pg = (struct ovcd_policy_guest){
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
static void guest_decision_keep(struct manager *m, struct mguest *g, const struct ovcd_policy_decision *d)
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
static void guest_compliance_keep(struct manager *m, struct mguest *g, const struct ovcd_policy_decision *d,
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
					   g->v.name, SIZE_SHORT(g->v.target_bytes),
					   (now - d->state.stuck_usec) / USEC_PER_SEC, SIZE_SHORT(g->v.actual_bytes));
	else
		ovcd_log_guest_ratelimited(&g->rl, OVC_LOG_WARNING,
					   "guest '%s' is non-compliant: its engine has not moved toward its "
					   "reclaim target %s for %" PRIu64 "s (it shares %s, swaps %s); no "
					   "longer counted as relief, the others are asked instead",
					   g->v.name, SIZE_SHORT(g->v.engine_target_bytes),
					   d->state.engine_stuck_usec && now >= d->state.engine_stuck_usec
						   ? (now - d->state.engine_stuck_usec) / USEC_PER_SEC : 0,
					   SIZE_SHORT(g->v.engine_zero_bytes), SIZE_SHORT(g->v.engine_swap_bytes));
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
	struct ovcd_balloon_guest bg;
	struct ovcd_policy_decision d;
	uint64_t now = now_usec(CLOCK_MONOTONIC);
	struct ovcd_policy_host host = {
		.now_usec = now,
		.page_size = (uint64_t)sysconf(_SC_PAGESIZE),
	};
	struct ovcd_policy_guest pg;
	char reason[OVC_POLICY_REASON_MAX + 32];
	int r;

	if (!g->drv->list_ok || g->drv == m->engines || m->ticks == 0)
		return;
	r = ovcd_balloon_guest(g->drv->b, g->v.name, &bg);
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
	r = ovcd_policy_guest_check(m->cfg, &host, &pg, &d);
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
					   SIZE_SHORT(d.target_bytes), g->v.name, SIZE_SHORT(d.floor_bytes), SIZE_SHORT(g->stats.max_bytes));
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
		struct ovcd_balloon_guest *list = NULL;
		size_t n = 0;

		if (d == m->engines || !d->list_ok)
			continue;
		if (ovcd_balloon_list(d->b, &list, &n) == 0)
			free(list);
	}
}

/* The host as the policy sees it (collect.c), the guests' memory cgroup
 * (--memory-cgroup) included. 0, or -errno of meminfo or the cgroup,
 * logged (rate-limited): the tick is skipped. */
static int host_collect(struct manager *m, uint64_t now, struct ovcd_policy_host *host)
{
	struct ovcd_host_collect_errors errs;
	int r = ovcd_host_collect(NULL, m->opts.memory_cgroup, now, host, &errs);

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
	struct ovcd_policy_host host = { 0 };
	struct ovcd_policy_guest *pg = NULL;
	struct ovcd_policy_decision *dec = NULL;
	struct ovcd_policy_out out = { 0 };
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
	r = ovcd_policy_tick(m->cfg, &host, &m->ksm_state, pg, n, dec, &out);
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
		const struct ovcd_policy_decision *d = &dec[i];
		enum ovcd_policy_action action = d->action;
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
				snprintf(reason, sizeof(reason), "pinned by ovcctl at %s", SIZE_SHORT(pinned));
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
						   m->ticks, SIZE_SHORT(target), g->v.name, SIZE_SHORT(d->floor_bytes),
						   SIZE_SHORT(g->stats.max_bytes));
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
				r = ovcd_ksm_apply(NULL, &out.ksm, &host.ksm_knobs);
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

/* The one-second timer of poll_guests(). */
static int poll_open(struct manager *m)
{
	struct itimerspec its = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	int r;

	m->poll_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (m->poll_fd < 0 || timerfd_settime(m->poll_fd, 0, &its, NULL) < 0 ||
	    (r = loop_watch(m->epfd, m->poll_fd, EPOLLIN, &m->poll)) < 0) {
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
	fd = ovcd_psi_trigger_open(NULL, false, m->cfg->host.psi_trigger_stall_usec,
				  m->cfg->host.psi_trigger_window_usec);
	if (fd < 0) {
		dlog_notice("no memory PSI trigger (%s): pressure is seen at the next tick only", strerror(-fd));
		return;
	}
	m->psi_fd = fd;
	if (loop_watch(m->epfd, fd, EPOLLPRI, &m->psi) < 0)
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
	if (m->metrics_fd < 0 || loop_watch(m->epfd, m->metrics_fd, EPOLLIN, &m->metrics) < 0) {
		dlog_err("cannot serve metrics on %s: no epoll fd", m->cfg->metrics.listen);
		m->metrics_fd = -1;
		metrics_close(m);
		return;
	}
	dlog_info("metrics on http://%s/metrics", m->cfg->metrics.listen);
}

/* ---- reload ---- */

static int reload(struct manager *m, char **ret_errors)
{
	struct ovcd_config *cfg = NULL, *old;
	char *errors = NULL;
	int r;

	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_usec(CLOCK_MONOTONIC));
	r = ovcd_config_load(m->cfg->path, &cfg, &errors);
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
			     cfg->control.socket, control_server_path(m->control));
	control_server_reload(m->control, cfg);
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
		m->ksm_saved_valid = ovcd_ksm_save(NULL, &m->ksm_saved) == 0;
	ovcd_config_free(old);
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

/* ---- requests from the control server ---- */

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
	bytes = req->clear ? 0 : ovcd_conf_size_bytes(&req->size, g->v.max_bytes);
	if (!req->clear && bytes > g->v.max_bytes) {
		snprintf(msg, sizeof(msg), "%s %s is above the maximum %s of '%s'",
			 req->what == OVCD_SET_FLOOR ? "floor" : "target", SIZE_SHORT(bytes), SIZE_SHORT(g->v.max_bytes), g->v.name);
		return ovcd_reply_error(msg);
	}
	if (req->what == OVCD_SET_FLOOR) {
		g->has_floor_override = !req->clear;
		g->floor_override = req->size;
		if (req->clear)
			snprintf(msg, sizeof(msg), "floor of '%s' back to the config's", g->v.name);
		else
			snprintf(msg, sizeof(msg), "floor of '%s' set to %s until reload or restart", g->v.name,
				 SIZE_SHORT(bytes));
	} else {
		g->v.pin_bytes = bytes;
		if (req->clear)
			snprintf(msg, sizeof(msg), "target of '%s' unpinned", g->v.name);
		else
			snprintf(msg, sizeof(msg), "target of '%s' pinned at %s until reload or restart "
						   "(never below its floor)",
				 g->v.name, SIZE_SHORT(bytes));
	}
	dlog_notice("ovcctl: %s", msg);
	return ovcd_reply_ok(msg);
}

/* control-server.c hands each request here, in the order its client sent
 * them; the reply goes back to it. */
static char *control_request(void *userdata, const struct ovcd_request *req)
{
	struct manager *m = userdata;
	char *errors = NULL, *reply;

	switch (req->command) {
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
		return handle_set(m, req);
	}
	return ovcd_reply_error("unknown command");
}

static const struct control_server_ops control_ops = { .request = control_request };

/* ---- signals ---- */

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

/* ---- life cycle ---- */

int manager_new(const struct manager_opts *opts, struct ovcd_config *cfg, struct manager **ret)
{
	struct manager *m = calloc(1, sizeof(*m));
	sigset_t mask;
	int r;

	if (!m) {
		ovcd_config_free(cfg);
		return -ENOMEM;
	}
	m->opts = *opts;
	m->stats_arrived = guest_stats_arrived;
	m->cfg = cfg;
	m->timer_fd = m->signal_fd = m->metrics_fd = m->psi_fd = m->poll_fd = -1;
	m->poll.type = SRC_POLL;
	m->timer.type = SRC_TIMER;
	m->sig.type = SRC_SIGNAL;
	m->metrics.type = SRC_METRICS;
	m->psi.type = SRC_PSI;
	m->start_usec = now_usec(CLOCK_MONOTONIC);
	m->view.level = OVC_HOST_STEADY;

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
	if ((r = loop_watch(m->epfd, m->timer_fd, EPOLLIN, &m->timer)) < 0 ||
	    (r = loop_watch(m->epfd, m->signal_fd, EPOLLIN, &m->sig)) < 0)
		goto fail;
	r = poll_open(m);
	if (r < 0)
		goto fail;

	if (opts->memory_cgroup) {
		struct ovcd_cgroup_mem cg;

		r = ovcd_cgroup_mem_read(NULL, opts->memory_cgroup, &cg);
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
				    SIZE_SHORT(cg.limit_bytes), SIZE_SHORT(cg.usage_bytes));
	}
	r = control_server_new(m->epfd, cfg, &control_ops, m, &m->control);
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
		r = ovcd_ksm_save(NULL, &m->ksm_saved);
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
			int t = ovcd_balloon_timeout_msec(m->drivers[i].b);

			if (t >= 0 && (timeout < 0 || t < timeout))
				timeout = t;
		}
		if (m->http) {
			int t = ovcd_metrics_server_timeout_msec(m->http);

			if (t >= 0 && (timeout < 0 || t < timeout))
				timeout = t;
		}
		{
			int t = control_server_expire(m->control);

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
				if (ovcd_balloon_timeout_msec(m->drivers[i].b) >= 0)
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
				control_server_accept(m->control);
				break;
			case SRC_CLIENT:
				control_server_client_event(m->control, src, evs[i].events);
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
				if (ovcd_balloon_timeout_msec(m->drivers[i].b) == 0)
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
	for (size_t i = 0; i < m->n_drivers; i++)
		ovcd_balloon_free(m->drivers[i].b);
	control_server_free(m->control);
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
	ovcd_config_free(m->cfg);
	free(m);
}
