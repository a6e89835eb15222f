/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcd's guest table: who the guests are, from the balloon drivers' lists,
 * and which driver lists each. Guests come from the drivers in
 * m->drivers[]: QMP directories, libvirt, and last the "ovc" driver of
 * [engine] dir (m->engines), whose engines are guests of their own or,
 * named like a balloon guest and in the same process (the kernel's pid),
 * part of it (mguest.engine_drv). Listing the engines last each tick is
 * what lets them join a balloon guest listed before.
 *
 * ovcd's main thread only (the tick, and the drivers' events); no locks.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

struct mguest *guest_find(struct manager *m, const char *name)
{
	for (size_t i = 0; i < m->n_guests; i++)
		if (strcmp(m->guests[i].v.name, name) == 0)
			return &m->guests[i];
	return NULL;
}

static struct mguest *guest_add(struct manager *m, struct mdriver *d, const struct ovcd_balloon_guest *bg)
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
	ovcd_guest_stats_reset(&g->prev);
	g->prev.collected_usec = 0;
	dlog_info("guest '%s' (%s): max %s, current %s", g->v.name, d->kind, SIZE_SHORT(bg->stats.max_bytes),
		  SIZE_SHORT(bg->stats.actual_bytes));
	return g;
}

void guest_remove(struct manager *m, struct mguest *g, const char *why)
{
	size_t i = (size_t)(g - m->guests);

	dlog_info("guest '%s' %s", g->v.name, why);
	memmove(&m->guests[i], &m->guests[i + 1], (m->n_guests - i - 1) * sizeof(*g));
	m->n_guests--;
}

static void engine_stats_take(struct ovcd_guest_stats *dst, const struct ovcd_guest_stats *src)
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
void engine_detach(struct mguest *g, const char *why)
{
	struct ovcd_guest_stats none;

	ovcd_guest_stats_reset(&none);
	engine_stats_take(&g->stats, &none);
	engine_stats_take(&g->prev, &none);
	g->engine_drv = NULL;
	g->v.driver = g->drv->kind;
	dlog_info("guest '%s': its engine %s", g->v.name, why);
}

static const char *guest_driver_state(enum ovcd_balloon_guest_driver d)
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

void guest_settings(const struct manager *m, const struct mguest *g, struct ovcd_guest_settings *s)
{
	ovcd_config_guest_settings(m->cfg, g->v.name, s);
	if (g->has_floor_override)
		s->floor = g->floor_override;
}

/* A guest's figures fresh from its driver (a tick's list, or between ticks). */
void guest_take_stats(struct manager *m, struct mguest *g, const struct ovcd_balloon_guest *bg)
{
	struct ovcd_guest_stats old = g->stats;
	uint64_t collected = bg->stats.collected_usec;

	/* The hypervisor's side (actual) is read at every refresh, the
	 * guest's side (available, faults) changes only when the guest
	 * reports, once a stats period. A refresh between two reports is no
	 * new sample of the guest: it keeps the collection time of the
	 * guest's last report, so that the policy never reads a balloon move
	 * (actual new, available not yet) over a fraction of a second as the
	 * guest's own memory rising fast. */
	if (ovcd_known(bg->stats.guest_update_sec) && bg->stats.guest_update_sec == old.guest_update_sec &&
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
	if (!ovcd_known(g->v.target_bytes) || g->v.target_bytes == 0 || g->v.target_bytes > g->v.max_bytes)
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
static bool may_join(const struct mguest *g, const struct ovcd_balloon_guest *e)
{
	struct ovcd_balloon_guest balloon = { .pid = g->pid };

	snprintf(balloon.name, sizeof(balloon.name), "%s", g->v.name);
	return ovcd_balloon_may_join(&balloon, e);
}

void collect_guests(struct manager *m)
{
	for (size_t i = 0; i < m->n_guests; i++)
		m->guests[i].seen = m->guests[i].engine_seen = false;
	/* The engines' driver is the last one: balloon guests are known
	 * when an engine of the same name is merged into them. */
	for (size_t d = 0; d < m->n_drivers; d++) {
		struct mdriver *drv = &m->drivers[d];
		struct ovcd_balloon_guest *list = NULL;
		size_t n = 0;
		int r = ovcd_balloon_list(drv->b, &list, &n);

		drv->list_ok = r >= 0;
		if (r < 0) {
			ovcd_log_guest_ratelimited(&drv->rl, OVC_LOG_WARNING, "failed to list the %s guests: %s",
						   drv->kind,
						   ovcd_balloon_error(drv->b)[0] ? ovcd_balloon_error(drv->b)
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
