/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The policy (see policy.h for the rules). Pure: no I/O, no clock, no
 * allocation, no globals; any thread, no locks. Costs a few passes over the
 * guests per tick (one per priority level in use, and under host pressure
 * at most 64 more over the inflate candidates of each priority and tier to
 * find the water-filling level), and one snprintf per guest for its
 * reason. ovcd_policy_guest_check() costs one guest's share of a tick.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "host/policy.h"
#include "host/units.h"
#include "common/util.h"

#define PRIORITY_LEVELS 101
/* No inflate for this many intervals after an emergency deflate, doubled
 * for each further emergency of the same streak (6, 12, 24, 48 intervals:
 * at most EMERGENCY_BACKOFF_MAX_SHIFT doublings). A streak ends once the
 * guest has gone twice its cooldown without an emergency. */
#define EMERGENCY_COOLDOWN_INTERVALS 6
#define EMERGENCY_BACKOFF_MAX_SHIFT 3
#define EMERGENCY_COUNT_MAX 1000

const char *ovcd_policy_action_name(enum ovcd_policy_action a)
{
	switch (a) {
	case OVC_ACTION_NONE:
		return "none";
	case OVC_ACTION_INFLATE:
		return "inflate";
	case OVC_ACTION_DEFLATE:
		return "deflate";
	case OVC_ACTION_EMERGENCY:
		return "emergency";
	case OVC_ACTION_RESTORE:
		return "restore";
	case OVC_ACTION_RECLAIM:
		return "reclaim";
	case OVC_ACTION_RELEASE:
		return "release";
	}
	return "?";
}

const char *ovcd_host_level_name(enum ovcd_host_level l)
{
	switch (l) {
	case OVC_HOST_STEADY:
		return "steady";
	case OVC_HOST_PRESSURE:
		return "pressure";
	case OVC_HOST_ROOM:
		return "room";
	}
	return "?";
}

/* Reasons are for people: a cut one is fine, and gcc cannot see through
 * a va_list to warn about it. */
_printf_(3, 4) static void reasonf(char *buf, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, n, fmt, ap);
	va_end(ap);
}

_printf_(2, 3) static void reason_append(char *buf, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf + len, OVC_POLICY_REASON_MAX - len, fmt, ap);
	va_end(ap);
}


static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/* Per-guest figures the passes share; recomputed from the guest and its
 * state (as learn() left it this call), never stored. */
struct view {
	uint64_t max, target, actual, step, min_change;
	uint64_t floor;            /* the configured one: a hard minimum */
	uint64_t raised_floor;     /* at least floor: raised after it ran short, decaying */
	uint64_t avail;            /* clamped; OVC_UNKNOWN when not fresh */
	uint64_t guest_free;       /* of its current memory */
	uint64_t headroom;         /* learned burst or [balloon] headroom */
	uint64_t keep;             /* never inflated into: guest_free + headroom + margin */
	uint64_t fpr;              /* free memory free page reporting gave back */
	uint64_t spare;            /* above keep, less pending and fpr, at most resident_free */
	uint64_t resident_free;    /* the VMM's RSS beyond the guest's used memory, or OVC_UNKNOWN */
	bool fresh;
	bool settling;
	bool cooling;              /* after an emergency deflate */
	bool oom_cooling;          /* after an OOM kill */
	bool idle, growing, noncompliant;
	uint32_t streak;           /* emergencies in the current streak; 0: none */
	uint64_t cooldown_usec;    /* of the current streak */
	uint64_t margin;           /* kept above guest_free while in a streak */
	bool pressure;
	char why[96];              /* the guest's pressure, when it has one */
};

/* What one new statistics update showed, beyond the state it leaves:
 * only the call that learns from the update sees these. */
struct events {
	bool new_sample;
	uint64_t rate;             /* used memory's growth per second */
	bool oom;                  /* an OOM kill since the last update */
	bool oom_counted;          /* ... from the guest's own counter */
	uint64_t freed;            /* what the kill freed, when guessed */
	uint64_t stalls;           /* allocation stalls per second, or OVC_UNKNOWN */
	uint64_t reclaim;          /* pages reclaimed directly per second, or OVC_UNKNOWN */
};

/* Events per second from two cumulative counters, or OVC_UNKNOWN when the
 * figures are missing, went backwards (reboot, lie) or the time did. */
static uint64_t rate(uint64_t cur, uint64_t prev, uint64_t dt_usec)
{
	if (!ovcd_known(cur) || !ovcd_known(prev) || cur < prev || dt_usec == 0)
		return OVC_UNKNOWN;
	return (uint64_t)(((unsigned __int128)(cur - prev) * USEC_PER_SEC) / dt_usec);
}

/* @v halved every @half_usec over @elapsed_usec (straight lines between
 * the halvings: no floating point, and never below the true curve by more
 * than 6%). */
static uint64_t decay(uint64_t v, uint64_t elapsed_usec, uint64_t half_usec)
{
	if (!half_usec)
		return 0;
	uint64_t k = elapsed_usec / half_usec;
	if (k >= 64)
		return 0;
	v >>= k;
	uint64_t part = elapsed_usec % half_usec;
	return v - (uint64_t)(((unsigned __int128)(v / 2) * part) / half_usec);
}

/* A maximum the policy can work with: known, not 0, and no more than a VM
 * can have (a larger one is garbage from a peer, and every sum of sizes
 * below stays far from overflowing with it). */
static bool max_ok(const struct ovcd_policy_guest *g)
{
	uint64_t max = g->stats.max_bytes;
	return ovcd_known(max) && max && max <= OVC_GUEST_BYTES_MAX;
}

static uint64_t target_of(const struct ovcd_policy_guest *g)
{
	uint64_t max = g->stats.max_bytes;
	return g->target_bytes && ovcd_known(g->target_bytes) ? MIN(g->target_bytes, max) : max;
}

static uint64_t actual_of(const struct ovcd_policy_guest *g)
{
	const struct ovcd_guest_stats *st = &g->stats;
	return ovcd_known(st->actual_bytes) ? MIN(st->actual_bytes, st->max_bytes) : target_of(g);
}

/* A guest's memory grew when its used memory rose by more than this. */
static uint64_t noise_of(uint64_t max)
{
	return MAX(4 * MIB, max / 100);
}

/* The learned burst as it has decayed by @now. */
static uint64_t burst_now(const struct ovcd_config *cfg, const struct ovcd_policy_guest_state *s,
			  uint64_t now)
{
	return decay(s->burst_bytes, sat_sub(now, s->burst_usec), cfg->balloon.headroom_decay_usec);
}

/* How far ahead distress is projected, in whole seconds: relief comes
 * about a stats period after an update (the deflate has to reach a guest
 * that frees the balloon's pages while it allocates), and the next update
 * may show a fall only a period later. */
static uint64_t relief_secs(const struct ovcd_config *cfg)
{
	return 2 * MAX(cfg->balloon.stats_period_usec / USEC_PER_SEC, 1);
}

/* The fastest growth learned, as it has decayed by @now. */
static uint64_t peak_rate_now(const struct ovcd_config *cfg, const struct ovcd_policy_guest_state *s,
			      uint64_t now)
{
	return decay(s->peak_rate_bytes, sat_sub(now, s->peak_rate_usec), cfg->balloon.headroom_decay_usec);
}

/*
 * What a guest growing at its fastest learned rate uses before relief can
 * come: the update that shows the growth is up to one stats period late,
 * and the deflate that answers it takes about as long again to reach the
 * guest. So a guest seen growing at R per second keeps 2 x R x stats_period.
 */
static uint64_t reaction_need(const struct ovcd_config *cfg, const struct ovcd_policy_guest_state *s,
			      uint64_t now)
{
	uint64_t r = peak_rate_now(cfg, s, now);
	uint64_t period = MAX(cfg->balloon.stats_period_usec, USEC_PER_SEC);
	if (r > OVC_GUEST_BYTES_MAX)
		return OVC_GUEST_BYTES_MAX;
	return (uint64_t)(((unsigned __int128)r * 2 * period) / USEC_PER_SEC);
}

static bool has_engine(const struct ovcd_policy_guest *g)
{
	return g->kind == OVC_DRIVER_ENGINE || g->engine;
}

/* An engine's reclaim target and what it gives back, clamped. */
static void engine_held(const struct ovcd_policy_guest *g, uint64_t *zero, uint64_t *held, uint64_t *target)
{
	const struct ovcd_guest_stats *st = &g->stats;
	uint64_t max = st->max_bytes;

	*zero = ovcd_known(st->engine_zero_bytes) ? MIN(st->engine_zero_bytes, max) : 0;
	*held = *zero + (ovcd_known(st->engine_swap_bytes) ? MIN(st->engine_swap_bytes, max - *zero) : 0);
	*target = ovcd_known(st->engine_target_bytes) ? st->engine_target_bytes : 0;
}

/*
 * The guest's state after this call: whether its balloon (and engine)
 * follow their targets, and, from a statistics update newer than the last
 * one learned from, how its used memory moved (burst, idle, rate) and
 * what its reclaim counters say. @s starts as the guest's state.
 */
static void learn(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
		  const struct ovcd_policy_guest *g, struct ovcd_policy_guest_state *s, struct events *e)
{
	const struct ovcd_guest_stats *st = &g->stats;
	uint64_t now = h->now_usec, max = st->max_bytes;

	*s = g->state;
	*e = (struct events){ .stalls = OVC_UNKNOWN, .reclaim = OVC_UNKNOWN };
	if (!max_ok(g))
		return;
	uint64_t actual = actual_of(g), target = target_of(g);

	/* A balloon owing memory (actual above its target) must move toward
	 * its target; the clock restarts each time it moves a MiB. */
	if (g->kind != OVC_DRIVER_ENGINE && ovcd_known(st->actual_bytes) && actual >= target + MIB) {
		if (!s->stuck_usec || sat_sub(s->stuck_actual_bytes, actual) >= MIB || now < s->stuck_usec) {
			s->stuck_usec = now ? now : 1;
			s->stuck_actual_bytes = actual;
		}
	} else {
		s->stuck_usec = 0;
		s->stuck_actual_bytes = 0;
	}
	/* Likewise an engine below its reclaim target. */
	if (has_engine(g)) {
		uint64_t zero, held, etarget;
		engine_held(g, &zero, &held, &etarget);
		if (etarget > zero && etarget >= held + MIB) {
			if (!s->engine_stuck_usec || sat_sub(held, s->engine_stuck_held_bytes) >= MIB ||
			    now < s->engine_stuck_usec) {
				s->engine_stuck_usec = now ? now : 1;
				s->engine_stuck_held_bytes = held;
			}
		} else {
			s->engine_stuck_usec = 0;
			s->engine_stuck_held_bytes = 0;
		}
	}

	if (st->stale || !ovcd_known(st->available_bytes) || st->collected_usec == 0 ||
	    st->collected_usec <= s->seen_usec ||
	    (ovcd_known(st->guest_update_sec) && s->seen_usec && st->guest_update_sec == s->seen_update_sec))
		return; /* nothing new to learn from: the same update read again */
	uint64_t t = st->collected_usec;
	uint64_t avail = MIN(st->available_bytes, actual);
	if (ovcd_known(st->total_bytes))
		avail = MIN(avail, st->total_bytes);
	/* Used memory from the guest's own figures where it sent them (its
	 * MemTotal and MemAvailable come from one moment, while the balloon's
	 * size is read live and may be ahead of them). */
	uint64_t used = (ovcd_known(st->total_bytes) ? MIN(st->total_bytes, actual) : actual) - avail;
	/* While the balloon moves, what the guest counts as used moves with
	 * it (a guest with deflate-on-oom counts balloon pages as used; any
	 * guest's figures lag the balloon's size): no growth is measured in
	 * such an update, or inflating a guest would look like a burst. */
	bool moved = s->seen_usec && (actual > s->seen_actual_bytes ? actual - s->seen_actual_bytes
								    : s->seen_actual_bytes - actual) >= MIB;

	e->new_sample = true;
	if (s->seen_usec && !moved) {
		uint64_t dt = t - s->seen_usec;
		if (used > s->seen_used_bytes) {
			uint64_t rise = used - s->seen_used_bytes;
			e->rate = (uint64_t)(((unsigned __int128)rise * USEC_PER_SEC) / dt);
			if (rise >= noise_of(max))
				s->busy_usec = t;
		} else {
			uint64_t drop = s->seen_used_bytes - used;
			/* Without a counter, an OOM kill shows as a guest that
			 * was in distress at its last update (available below
			 * emergency_available, or falling fast enough to get
			 * there within two stats periods) and now uses much less,
			 * its available memory up by about what used fell by.
			 * A guest that frees memory by itself while merely
			 * ballooned tightly is not in distress. */
			uint64_t emerg = ovcd_conf_size_bytes(&cfg->balloon.emergency_available, actual);
			uint64_t period_s = relief_secs(cfg);
			uint64_t fell = s->rate_bytes > UINT64_MAX / period_s ? UINT64_MAX : s->rate_bytes * period_s;
			bool distressed = s->seen_avail_bytes < emerg ||
					  (s->rate_bytes && sat_sub(s->seen_avail_bytes, fell) < emerg);
			/* The update after a balloon move may show the guest's
			 * own figures catching up with it (a deflate-on-oom
			 * guest that deflated itself counts the returned
			 * pages as used until then): not a kill, not a free. */
			bool settled = !s->moved_before;
			if (settled && !ovcd_known(st->oom_kills) && distressed && drop >= MAX(64 * MIB, max / 16) &&
			    sat_sub(avail, s->seen_avail_bytes) >= drop - drop / 4) {
				e->oom = true;
				e->freed = drop;
			} else if (settled && drop >= noise_of(max)) {
				s->cold_usec = 0; /* what it freed was touched: resident */
			}
		}
		/* The run: used memory above its lowest point since the run
		 * began. Taken from the level, not summed from the steps, so
		 * that what the guest freed in an update the balloon moved in
		 * or right after (skipped: its figures may lag the balloon)
		 * still counts once an update with the balloon settled shows it. */
		if (used < s->low_used_bytes && !s->moved_before)
			s->low_used_bytes = used;
		s->run_bytes = MIN(sat_sub(used, s->low_used_bytes), max);
		if (ovcd_known(st->oom_kills) && ovcd_known(s->seen_oom_kills) &&
		    st->oom_kills > s->seen_oom_kills)
			e->oom = e->oom_counted = true;
		/* A guest back where its run began (within an eighth of its
		 * learned burst: a run also gathers the kernel's own small
		 * rises), by one free or several, seen in an update with the
		 * balloon still: the job is over, its burst and its fastest
		 * growth are forgotten and what it freed is spare at once. A
		 * guest that allocates it again is relieved between ticks, and
		 * after an emergency it keeps a raised floor. A guest that gave
		 * back only part of its run is still at work and keeps its
		 * burst: it may well take the same again (on real guests one
		 * whose partial free had lowered it deflated itself 99 times at
		 * its next burst). What an OOM kill taught stays for the
		 * cooldown. */
		if (!s->moved_before && (s->burst_bytes || s->peak_rate_bytes) && !e->oom &&
		    !(s->oom_usec && sat_sub(now, s->oom_usec) < cfg->balloon.oom_cooldown_usec) &&
		    s->run_bytes < MAX(noise_of(max), burst_now(cfg, s, t) / 8)) {
			s->burst_bytes = s->run_bytes;
			s->burst_usec = t;
			s->peak_rate_bytes = 0;
			s->peak_rate_usec = t;
		}
		e->stalls = rate(st->alloc_stalls, s->seen_alloc_stalls, dt);
		e->reclaim = rate(st->direct_reclaims, s->seen_direct_reclaims, dt);
	} else if (!s->seen_usec) {
		s->busy_usec = t; /* idle is counted from when ovcd first saw it */
		s->low_used_bytes = used;
		s->run_bytes = 0;
	}
	/* An update in which the balloon moved leaves the run as it was: the
	 * guest still holds what it took (forgetting it there let an inflate
	 * followed by a partial free pass for the end of the job). */
	if (moved && ovcd_known(st->oom_kills) && ovcd_known(s->seen_oom_kills) &&
	    st->oom_kills > s->seen_oom_kills)
		e->oom = e->oom_counted = true; /* the guest's own count is never wrong */
	/* An inflate that did not lower the VMM's RSS by a quarter of what
	 * the balloon took took memory the guest never touched (free pages
	 * first): ballooning it further gives the host nothing, and only
	 * leaves the guest less for its next burst. Until it grows or frees
	 * memory again, it has no spare. Measured from the last update
	 * before the balloon moved: the VMM drops the pages before the
	 * balloon's size says so, and one update may see only one of the
	 * two. */
	uint64_t rss = ovcd_known(st->rss_bytes) && g->kind != OVC_DRIVER_ENGINE
			       ? MIN(st->rss_bytes, OVC_GUEST_BYTES_MAX) : OVC_UNKNOWN;
	if (!moved) {
		s->still_actual_bytes = actual;
		s->still_rss_bytes = rss;
	} else if (actual < s->still_actual_bytes && ovcd_known(rss) && ovcd_known(s->still_rss_bytes) &&
		   s->still_actual_bytes - actual >= noise_of(max)) {
		uint64_t took = s->still_actual_bytes - actual, gave = sat_sub(s->still_rss_bytes, rss);
		s->cold_usec = gave < took / 4 ? t : 0;
	}
	s->rate_bytes = e->rate;
	/* Growth measured while the figures may still be catching up with a
	 * balloon move is not learned as a rate. */
	if (!s->moved_before && e->rate > peak_rate_now(cfg, s, t)) {
		s->peak_rate_bytes = MIN(e->rate, OVC_GUEST_BYTES_MAX);
		s->peak_rate_usec = t;
	}
	if (s->run_bytes > burst_now(cfg, s, t)) {
		s->burst_bytes = s->run_bytes;
		s->burst_usec = t;
	}
	if (e->oom) {
		s->oom_usec = now ? now : 1;
		s->oom_kills = s->oom_kills < UINT32_MAX ? s->oom_kills + 1 : UINT32_MAX;
		/* What the killed task held is what the guest wanted. */
		if (e->freed > burst_now(cfg, s, t)) {
			s->burst_bytes = MIN(e->freed, max);
			s->burst_usec = t;
		}
	}
	s->moved_before = moved ? 1 : 0;
	s->seen_usec = t;
	s->seen_update_sec = st->guest_update_sec;
	s->seen_actual_bytes = actual;
	s->seen_used_bytes = used;
	s->seen_avail_bytes = avail;
	s->seen_oom_kills = st->oom_kills;
	s->seen_alloc_stalls = st->alloc_stalls;
	s->seen_direct_reclaims = st->direct_reclaims;
}

static void derive(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
		   const struct ovcd_policy_guest *g, const struct ovcd_policy_guest_state *s,
		   struct view *v)
{
	const struct ovcd_guest_stats *st = &g->stats, *pv = &g->prev;
	uint64_t now = h->now_usec;

	*v = (struct view){ .max = st->max_bytes, .target = target_of(g), .actual = actual_of(g),
			    .avail = OVC_UNKNOWN, .resident_free = OVC_UNKNOWN };
	if (!max_ok(g))
		return; /* the guest is left alone */
	uint64_t floor = MIN(ovcd_conf_size_bytes(&g->settings.floor, v->max), v->max);
	/* A guest that ran short keeps what it needed, less and less. */
	uint64_t raised = floor + decay(sat_sub(MIN(s->short_floor_bytes, v->max), floor),
					sat_sub(now, s->short_usec), cfg->balloon.short_decay_usec);
	v->floor = floor;
	v->raised_floor = MAX(ALIGN_DOWN(MIN(raised, v->max), MIB), floor);
	v->step = MAX(ovcd_conf_size_bytes(&g->settings.step, v->max), MIB);
	v->min_change = ovcd_conf_size_bytes(&cfg->balloon.min_change, v->max);
	v->fresh = !st->stale && ovcd_known(st->available_bytes);
	v->avail = OVC_UNKNOWN;
	v->spare = v->fpr = v->keep = 0;
	v->resident_free = OVC_UNKNOWN;
	v->guest_free = ovcd_conf_size_bytes(&g->settings.guest_free, v->actual);
	v->headroom = MIN(MAX(MAX(ovcd_conf_size_bytes(&cfg->balloon.headroom, v->max), burst_now(cfg, s, now)),
			      reaction_need(cfg, s, now)),
			  v->max);
	v->pressure = false;
	v->why[0] = '\0';
	v->settling = g->last_action_usec && now >= g->last_action_usec &&
		      now - g->last_action_usec < cfg->host.interval_usec / 10 * 9;
	v->oom_cooling = s->oom_usec && sat_sub(now, s->oom_usec) < cfg->balloon.oom_cooldown_usec;
	v->idle = s->busy_usec && sat_sub(now, s->busy_usec) >= cfg->balloon.idle_after_usec;
	v->growing = s->busy_usec && s->rate_bytes && sat_sub(now, s->busy_usec) < 2 * cfg->balloon.stats_period_usec;
	v->noncompliant = (s->stuck_usec && sat_sub(now, s->stuck_usec) >= cfg->balloon.pending_timeout_usec);
	/* A last emergency with no count is one emergency (a caller that does
	 * not carry the count gets the plain six intervals). A clock that went
	 * backwards counts as "just now": the careful side. */
	v->streak = g->last_emergency_usec ? MIN(MAX(g->emergency_count, 1), EMERGENCY_COUNT_MAX) : 0;
	v->cooldown_usec = 0;
	v->cooling = false;
	v->margin = 0;
	if (v->streak) {
		uint64_t since = sat_sub(now, g->last_emergency_usec);
		v->cooldown_usec = EMERGENCY_COOLDOWN_INTERVALS * cfg->host.interval_usec
				   << MIN(v->streak - 1, EMERGENCY_BACKOFF_MAX_SHIFT);
		if (since >= 2 * v->cooldown_usec)
			v->streak = 0; /* quiet for long enough: the streak is over */
		else
			v->cooling = since < v->cooldown_usec;
	}
	/* Hysteresis: a guest that ran short is not squeezed back to the edge
	 * where it ran short; while its streak lasts, it keeps what the
	 * emergency gave it above guest_free. */
	if (v->streak)
		v->margin = MAX(ovcd_conf_size_bytes(&cfg->balloon.emergency_step, v->max), MIB);
	v->keep = v->guest_free + v->headroom + v->margin;
	if (!v->fresh)
		return;

	/* A guest cannot have more available than the memory it has now. */
	v->avail = MIN(st->available_bytes, v->actual);
	if (ovcd_known(st->total_bytes))
		v->avail = MIN(v->avail, st->total_bytes);
	/* Memory free page reporting gave back is on the host already: a
	 * balloon taking it first gains the host nothing. */
	if (g->free_page_reporting && ovcd_known(st->free_bytes))
		v->fpr = MIN(st->free_bytes, v->avail);
	/* What the balloon was asked for but has not taken yet is not spare. */
	v->spare = sat_sub(sat_sub(sat_sub(v->avail, v->keep), sat_sub(v->actual, v->target)), v->fpr);
	/* Guest memory never touched is not resident on the host either:
	 * ballooning it gains the host nothing. Where the VMM's RSS is known,
	 * only what it holds beyond the guest's used memory can come back. */
	v->resident_free = OVC_UNKNOWN;
	if (ovcd_known(st->rss_bytes) && g->kind != OVC_DRIVER_ENGINE) {
		v->resident_free = sat_sub(MIN(st->rss_bytes, OVC_GUEST_BYTES_MAX), v->actual - v->avail);
		/* RSS also holds the VMM's own memory: an inflate that did
		 * not lower it showed the free memory is not resident. */
		if (s->cold_usec && s->busy_usec <= s->cold_usec)
			v->resident_free = 0;
		v->spare = MIN(v->spare, v->resident_free);
	}

	uint64_t emergency_avail = ovcd_conf_size_bytes(&cfg->balloon.emergency_available, v->actual);
	bool have_prev = pv->collected_usec && !pv->stale && st->collected_usec > pv->collected_usec;
	uint64_t dt = have_prev ? st->collected_usec - pv->collected_usec : 0;
	uint64_t majflt = have_prev ? rate(st->major_faults, pv->major_faults, dt) : OVC_UNKNOWN;
	uint64_t swapin = have_prev ? rate(st->swap_in_bytes, pv->swap_in_bytes, dt) : OVC_UNKNOWN;

	if (v->avail < emergency_avail) {
		v->pressure = true;
		reasonf(v->why, sizeof(v->why), "available %s < %s", SIZE_SHORT(v->avail), SIZE_SHORT(emergency_avail));
	} else if (cfg->balloon.emergency_major_faults && ovcd_known(majflt) &&
		   majflt > cfg->balloon.emergency_major_faults) {
		v->pressure = true;
		reasonf(v->why, sizeof(v->why), "major faults %" PRIu64 "/s > %" PRIu64 "/s", majflt,
			 cfg->balloon.emergency_major_faults);
	} else if (cfg->balloon.emergency_swap_in.bytes && ovcd_known(swapin) &&
		   swapin > cfg->balloon.emergency_swap_in.bytes) {
		v->pressure = true;
		reasonf(v->why, sizeof(v->why), "swap-in %s/s > %s/s", SIZE_SHORT(swapin),
			 SIZE_SHORT(cfg->balloon.emergency_swap_in.bytes));
	}
}

/* The distress only a new update shows (the rules that come before the
 * ones derive() knows): an OOM kill, available memory falling fast enough
 * to run out before the next update, allocation stalls, direct reclaim. */
static void distress(const struct ovcd_config *cfg, const struct events *e, struct view *v)
{
	if (!v->fresh || !e->new_sample)
		return;
	uint64_t emergency_avail = ovcd_conf_size_bytes(&cfg->balloon.emergency_available, v->actual);
	/* A guest that would run out before relief can come is in distress now. */
	uint64_t period_s = relief_secs(cfg);
	uint64_t fall = e->rate > UINT64_MAX / period_s ? UINT64_MAX : e->rate * period_s;

	if (e->oom) {
		v->pressure = true;
		if (e->oom_counted)
			reasonf(v->why, sizeof(v->why), "OOM kill in the guest");
		else
			reasonf(v->why, sizeof(v->why), "OOM kill in the guest (used memory fell by %s)",
				SIZE_SHORT(e->freed));
	} else if (v->pressure) {
		return; /* derive() has the reason already */
	} else if (e->rate && sat_sub(v->avail, fall) < emergency_avail) {
		v->pressure = true;
		reasonf(v->why, sizeof(v->why), "available %s falling %s/s, below %s within %" PRIu64 "s",
			SIZE_SHORT(v->avail), SIZE_SHORT(e->rate), SIZE_SHORT(emergency_avail), period_s);
	} else if (v->avail >= v->keep) {
		return; /* stalls and reclaim with enough available: the guest's
			 * own business (fragmentation, cache churn), and a balloon
			 * that gives back memory does not cure them */
	} else if (cfg->balloon.emergency_stalls && ovcd_known(e->stalls) &&
		   e->stalls >= cfg->balloon.emergency_stalls) {
		v->pressure = true;
		reasonf(v->why, sizeof(v->why), "allocation stalls %" PRIu64 "/s >= %" PRIu64 "/s", e->stalls,
			cfg->balloon.emergency_stalls);
	} else if (cfg->balloon.emergency_direct_reclaim && ovcd_known(e->reclaim) &&
		   e->reclaim >= cfg->balloon.emergency_direct_reclaim) {
		v->pressure = true;
		reasonf(v->why, sizeof(v->why), "direct reclaim %" PRIu64 " pages/s >= %" PRIu64 "/s",
			e->reclaim, cfg->balloon.emergency_direct_reclaim);
	}
}

/* Host level and its cause. */
static void host_level(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
		       struct ovcd_policy_out *out, char *cause, size_t cause_n)
{
	uint64_t total = h->mem.total_bytes;
	/* The guests' headroom is memory they take without asking: it must
	 * be free on the host before they take it, not found after. */
	uint64_t avail = sat_sub(h->mem.available_bytes, out->headroom_bytes);
	uint64_t low, high;
	bool psi_some = false, psi_full = false;
	char less[64] = "";

	ovcd_config_watermarks(cfg, total, NULL, &low, &high);
	if (h->psi_valid) {
		psi_some = cfg->host.psi_some_basis_points &&
			   h->psi.some.avg10_basis_points >= cfg->host.psi_some_basis_points;
		psi_full = cfg->host.psi_full_basis_points &&
			   h->psi.full.avg10_basis_points >= cfg->host.psi_full_basis_points;
	}
	out->low_bytes = low;
	out->high_bytes = high;
	if (out->headroom_bytes)
		reasonf(less, sizeof(less), " less guests' headroom %s", SIZE_SHORT(out->headroom_bytes));
	if (avail < low) {
		out->level = OVC_HOST_PRESSURE;
		out->need_bytes = high - avail;
		reasonf(cause, cause_n, "MemAvailable %s%s < low %s", SIZE_SHORT(h->mem.available_bytes), less, SIZE_SHORT(low));
	} else if (psi_some || psi_full) {
		/* Stalls with MemAvailable above low (a cgroup limit, a burst):
		 * get back to high, or one watermark gap if already above. */
		out->level = OVC_HOST_PRESSURE;
		out->need_bytes = avail < high ? high - avail : MAX(high - low, MIB);
		const struct ovcd_psi_line *l = psi_full ? &h->psi.full : &h->psi.some;
		uint32_t thr = psi_full ? cfg->host.psi_full_basis_points : cfg->host.psi_some_basis_points;
		reasonf(cause, cause_n, "PSI %s avg10 %u.%02u%% >= %u.%02u%%", psi_full ? "full" : "some",
			 l->avg10_basis_points / 100, l->avg10_basis_points % 100, thr / 100, thr % 100);
	} else if (avail > high) {
		out->level = OVC_HOST_ROOM;
		out->room_bytes = avail - high;
		reasonf(cause, cause_n, "MemAvailable %s%s > high %s", SIZE_SHORT(h->mem.available_bytes), less,
			SIZE_SHORT(high));
	} else {
		out->level = OVC_HOST_STEADY;
		reasonf(cause, cause_n, "MemAvailable %s%s between low %s and high %s",
			SIZE_SHORT(h->mem.available_bytes), less, SIZE_SHORT(low), SIZE_SHORT(high));
	}
	reasonf(out->reason, sizeof(out->reason), "host %s: %s", ovcd_host_level_name(out->level),
		 cause);
}

/* Bitmap of the priorities in use by candidates of one kind. */
struct prio_set {
	uint64_t bits[2];
};

static void prio_add(struct prio_set *s, uint32_t p)
{
	p = MIN(p, PRIORITY_LEVELS - 1);
	s->bits[p / 64] |= UINT64_C(1) << (p % 64);
}

static bool prio_has(const struct prio_set *s, uint32_t p)
{
	return s->bits[p / 64] & (UINT64_C(1) << (p % 64));
}

static uint32_t prio_of(const struct ovcd_policy_guest *g)
{
	return MIN(g->settings.priority, PRIORITY_LEVELS - 1);
}

/* While a tick runs, a candidate for a later pass carries one of these in
 * its decision's action (no allocation is allowed for a side array); every
 * pass turns them into a public action before the tick returns. */
enum cand {
	CAND_NONE = OVC_ACTION_NONE,
	CAND_INFLATE = 100,
	CAND_DEFLATE,
	CAND_ENGINE,       /* in reclaim_action: raise its target (E3) */
};

/* Inflate capacity: spare, at most step, never below the floor. */
static uint64_t inflate_cap(const struct view *v)
{
	return ALIGN_DOWN(MIN(MIN(v->spare, v->step), sat_sub(v->target, v->raised_floor)), MIB);
}

static uint64_t deflate_cap(const struct view *v)
{
	return MIN(v->step, v->max - v->target);
}

static enum cand classify(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
			  const struct ovcd_policy_out *out, const struct ovcd_policy_guest *g,
			  struct ovcd_policy_decision *d, const char *cause, bool check)
{
	struct ovcd_policy_guest_state s;
	struct events e;
	struct view v;

	learn(cfg, h, g, &s, &e);
	derive(cfg, h, g, &s, &v);
	/* Statistics first seen before the last emergency deflate (the same
	 * guest update read again counts from when it was first seen) do not
	 * show it: they do not call for another. */
	bool relieved = g->last_emergency_usec &&
			g->last_emergency_usec >= (s.seen_usec ? MIN(s.seen_usec, g->stats.collected_usec)
							       : g->stats.collected_usec);
	if (relieved)
		v.pressure = false;
	else
		distress(cfg, &e, &v);
	*d = (struct ovcd_policy_decision){
		.action = OVC_ACTION_NONE,
		.target_bytes = v.target,
		.floor_bytes = v.floor,
		.raised_floor_bytes = v.raised_floor,
		.spare_bytes = v.spare,
		.guest_pressure = v.pressure,
		.emergency_count = v.streak,
		.headroom_bytes = v.headroom,
		.keep_bytes = v.keep,
		.fpr_bytes = v.fpr,
		.growth_rate_bytes = s.rate_bytes,
		.idle = v.idle,
		.growing = v.growing,
		.oom_kill = e.oom,
		.noncompliant = v.noncompliant,
		.state = s,
	};
	if (!max_ok(g)) {
		d->target_bytes = g->target_bytes;
		reasonf(d->reason, sizeof(d->reason), "no maximum memory known: left alone");
		return CAND_NONE;
	}
	if (g->kind == OVC_DRIVER_ENGINE) {
		/* No balloon: engine_classify() decides and gives the reason. */
		d->noncompliant = s.engine_stuck_usec &&
				  sat_sub(h->now_usec, s.engine_stuck_usec) >= cfg->balloon.pending_timeout_usec;
		if (check)
			reasonf(d->reason, sizeof(d->reason), "engine: decided at the tick");
		return CAND_NONE;
	}
	if (g->settings.never_balloon) {
		if (v.target < v.max) {
			d->action = OVC_ACTION_RESTORE;
			d->target_bytes = v.max;
			reasonf(d->reason, sizeof(d->reason), "class never_balloon: back to max %s",
				 SIZE_SHORT(v.max));
		} else {
			reasonf(d->reason, sizeof(d->reason), "class never_balloon");
		}
		return CAND_NONE;
	}
	if (!cfg->balloon.enable) {
		reasonf(d->reason, sizeof(d->reason), "ballooning disabled ([balloon] enable = no)");
		return CAND_NONE;
	}
	if (v.target < v.floor) {
		d->action = OVC_ACTION_RESTORE;
		d->target_bytes = v.floor;
		reasonf(d->reason, sizeof(d->reason), "target %s below floor %s: raised to the floor",
			 SIZE_SHORT(v.target), SIZE_SHORT(v.floor));
		return CAND_NONE;
	}
	if (v.pressure) {
		if (v.target >= v.max) {
			reasonf(d->reason, sizeof(d->reason), "guest pressure (%s), already at max %s",
				 v.why, SIZE_SHORT(v.max));
			return CAND_NONE;
		}
		/* In one step to what it needs: what it keeps for bursts (its
		 * learned burst includes this fall), plus what it will use
		 * by the next update at the rate it grows; at least
		 * emergency_step, from where the balloon is or is going. */
		uint64_t period_s = MAX(cfg->balloon.stats_period_usec / USEC_PER_SEC, 1);
		uint64_t grow = e.new_sample ? MIN(e.rate, v.max) * period_s : 0;
		uint64_t base = MAX(v.target, v.actual);
		uint64_t want = sat_sub(MIN(v.keep + grow, v.max), v.avail);
		uint64_t by = MIN(ALIGN_UP(MAX(want, MAX(ovcd_conf_size_bytes(&cfg->balloon.emergency_step, v.max), MIB)), MIB),
				  v.max - base);
		if (by == 0) {
			reasonf(d->reason, sizeof(d->reason), "guest pressure (%s), its balloon already deflating to %s",
				v.why, SIZE_SHORT(v.actual));
			return CAND_NONE;
		}
		d->action = OVC_ACTION_EMERGENCY;
		d->target_bytes = base + by;
		d->emergency_count = MIN(v.streak + 1, EMERGENCY_COUNT_MAX);
		/* It needed this: its floor stays there, then decays. */
		d->state.short_floor_bytes = d->target_bytes;
		d->state.short_usec = h->now_usec ? h->now_usec : 1;
		d->raised_floor_bytes = MAX(d->raised_floor_bytes, MIN(ALIGN_DOWN(d->target_bytes, MIB), v.max));
		reasonf(d->reason, sizeof(d->reason), "emergency deflate by %s to %s: %s", SIZE_SHORT(d->target_bytes - v.target),
			 SIZE_SHORT(d->target_bytes), v.why);
		return CAND_NONE;
	}
	if (check) {
		reasonf(d->reason, sizeof(d->reason), "no distress: available %s", SIZE_SHORT(v.avail));
		if (!v.fresh)
			reasonf(d->reason, sizeof(d->reason), "no fresh stats");
		return CAND_NONE;
	}
	switch (out->level) {
	case OVC_HOST_PRESSURE:
		if (!v.fresh) {
			reasonf(d->reason, sizeof(d->reason), "host pressure, but %s stats: never inflated",
				 g->stats.stale ? "stale" : "no");
			return CAND_NONE;
		}
		if (v.noncompliant) {
			reasonf(d->reason, sizeof(d->reason),
				"host pressure, non-compliant: balloon at %s, target %s, not moved for %" PRIu64
				"s: not counted, not inflated",
				SIZE_SHORT(v.actual), SIZE_SHORT(v.target), sat_sub(h->now_usec, s.stuck_usec) / USEC_PER_SEC);
			return CAND_NONE;
		}
		if (v.oom_cooling) {
			reasonf(d->reason, sizeof(d->reason),
				"host pressure, OOM kill %" PRIu64 "s ago: not inflated for %" PRIu64 "s",
				sat_sub(h->now_usec, s.oom_usec) / USEC_PER_SEC,
				cfg->balloon.oom_cooldown_usec / USEC_PER_SEC);
			return CAND_NONE;
		}
		if (v.settling) {
			reasonf(d->reason, sizeof(d->reason),
				 "host pressure, settling: last action %" PRIu64 "ms ago",
				 (h->now_usec - g->last_action_usec) / 1000);
			return CAND_NONE;
		}
		if (v.cooling) {
			reasonf(d->reason, sizeof(d->reason),
				"host pressure, cooling down: emergency deflate %" PRIu64 "s ago",
				sat_sub(h->now_usec, g->last_emergency_usec) / USEC_PER_SEC);
			if (v.streak > 1)
				reason_append(d->reason, ", %" PRIu32 " in a row: cooldown %" PRIu64 "s",
					      v.streak, v.cooldown_usec / USEC_PER_SEC);
			return CAND_NONE;
		}
		if (inflate_cap(&v) == 0) {
			if (v.target <= v.floor)
				reasonf(d->reason, sizeof(d->reason), "host pressure, at floor %s", SIZE_SHORT(v.floor));
			else if (v.target <= v.raised_floor)
				reasonf(d->reason, sizeof(d->reason),
					"host pressure, at floor %s raised after it ran short", SIZE_SHORT(v.raised_floor));
			else if (v.margin)
				reasonf(d->reason, sizeof(d->reason),
					"host pressure, recovering from %" PRIu32 " emergency deflate%s: "
					"available %s, margin %s above guest_free",
					v.streak, v.streak > 1 ? "s" : "", SIZE_SHORT(v.avail), SIZE_SHORT(v.margin));
			else if (v.fpr && sat_sub(sat_sub(v.avail, v.keep), sat_sub(v.actual, v.target)))
				reasonf(d->reason, sizeof(d->reason),
					"host pressure, its free %s already back through free page reporting",
					SIZE_SHORT(v.fpr));
			else if (ovcd_known(v.resident_free) && v.resident_free < MIB &&
				 sat_sub(sat_sub(v.avail, v.keep), sat_sub(v.actual, v.target)))
				reasonf(d->reason, sizeof(d->reason),
					"host pressure, its free memory is not resident on the host (RSS %s)",
					SIZE_SHORT(g->stats.rss_bytes));
			else
				reasonf(d->reason, sizeof(d->reason), "host pressure, no spare: available %s, keeps %s",
					 SIZE_SHORT(v.avail), SIZE_SHORT(v.keep));
			return CAND_NONE;
		}
		reasonf(d->reason, sizeof(d->reason), "host pressure (%s)", cause);
		return CAND_INFLATE;
	case OVC_HOST_ROOM:
		if (v.target >= v.max) {
			reasonf(d->reason, sizeof(d->reason), "at max %s", SIZE_SHORT(v.max));
			return CAND_NONE;
		}
		/* Room counted after the guests' headroom: a guest with more
		 * available than it keeps needs nothing back, and what it got
		 * would be taken again at the next shortage (room and
		 * pressure alternating). */
		if (cfg->host.keep_headroom && v.fresh && v.avail >= v.keep + v.min_change) {
			reasonf(d->reason, sizeof(d->reason),
				"host has room, but it has more than it keeps: available %s, keeps %s",
				SIZE_SHORT(v.avail), SIZE_SHORT(v.keep));
			return CAND_NONE;
		}
		reasonf(d->reason, sizeof(d->reason), "host has room (%s)", cause);
		return CAND_DEFLATE;
	case OVC_HOST_STEADY:
		break;
	}
	reasonf(d->reason, sizeof(d->reason), "host steady (%s)", cause);
	return CAND_NONE;
}

/* The level L at which taking min(cap, spare - L) from every candidate of
 * one group gives at most @want: those with the most spare give first,
 * down to the same level, instead of everyone a share (water-filling).
 * Each candidate's cap is in its decision's reclaim_target_bytes and its
 * spare in spare_bytes while the pass runs. */
static uint64_t fill_level(const struct ovcd_policy_guest *guests, size_t n,
			   const struct ovcd_policy_decision *dec, uint32_t p, bool idle, uint64_t want)
{
	uint64_t lo = 0, hi = 0;

	for (size_t i = 0; i < n; i++)
		if ((int)dec[i].action == CAND_INFLATE && prio_of(&guests[i]) == p && dec[i].idle == idle)
			hi = MAX(hi, dec[i].spare_bytes);
	/* The smallest level whose takes fit in @want (at most 64 rounds). */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2, sum = 0;
		for (size_t i = 0; i < n && sum <= want; i++)
			if ((int)dec[i].action == CAND_INFLATE && prio_of(&guests[i]) == p && dec[i].idle == idle)
				sum += MIN(dec[i].reclaim_target_bytes, sat_sub(dec[i].spare_bytes, mid));
		if (sum <= want)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Inflate from candidates, lowest priority first, idle guests before busy
 * ones, the most spare first, until the host's need is met. */
static void inflate_pass(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
			 const struct ovcd_policy_guest *guests, size_t n,
			 struct ovcd_policy_decision *dec, const struct prio_set *prios,
			 struct ovcd_policy_out *out)
{
	/* Memory balloons are still taking will show in MemAvailable by
	 * itself; asking others for it too would overshoot. */
	uint64_t remaining = sat_sub(out->need_bytes, out->pending_bytes);
	struct view v;

	for (size_t i = 0; i < n; i++)
		if ((int)dec[i].action == CAND_INFLATE) {
			derive(cfg, h, &guests[i], &dec[i].state, &v);
			dec[i].reclaim_target_bytes = inflate_cap(&v);
		}
	for (uint32_t p = 0; p < PRIORITY_LEVELS && remaining; p++) {
		if (!prio_has(prios, p))
			continue;
		for (int tier = 0; tier < 2 && remaining; tier++) {
			bool idle = tier == 0;
			uint64_t level = fill_level(guests, n, dec, p, idle, remaining), taken = 0;
			for (size_t i = 0; i < n; i++) {
				struct ovcd_policy_decision *d = &dec[i];
				if ((int)d->action != CAND_INFLATE || prio_of(&guests[i]) != p || d->idle != idle)
					continue;
				derive(cfg, h, &guests[i], &d->state, &v);
				uint64_t take = ALIGN_DOWN(MIN(d->reclaim_target_bytes, sat_sub(d->spare_bytes, level)), MIB);
				take = MIN(take, ALIGN_DOWN(sat_sub(remaining, taken), MIB));
				if (take == 0 || take < v.min_change) {
					d->action = OVC_ACTION_NONE;
					if (level)
						reason_append(d->reason, "; others have more spare (%s each above)",
							      SIZE_SHORT(level));
					else
						reason_append(d->reason, "; share %s below min_change %s", SIZE_SHORT(take),
							      SIZE_SHORT(v.min_change));
					continue;
				}
				char cause[OVC_POLICY_REASON_MAX];
				reasonf(cause, sizeof(cause), "%s", d->reason);
				d->action = OVC_ACTION_INFLATE;
				d->target_bytes = v.target - take;
				reasonf(d->reason, sizeof(d->reason), "inflate by %s to %s: %s; %sspare %s",
					SIZE_SHORT(take), SIZE_SHORT(d->target_bytes), cause, idle ? "idle, " : "", SIZE_SHORT(v.spare));
				taken += take;
			}
			out->inflate_bytes += taken;
			remaining = sat_sub(remaining, taken);
		}
	}
	/* Candidates of priorities never reached keep their memory. */
	bool owed = out->need_bytes <= out->pending_bytes;
	for (size_t i = 0; i < n; i++)
		if ((int)dec[i].action == CAND_INFLATE) {
			dec[i].action = OVC_ACTION_NONE;
			if (owed)
				reason_append(dec[i].reason, "; balloons still inflating owe %s, the need",
					      SIZE_SHORT(out->pending_bytes));
			else
				reason_append(dec[i].reason, "; need met by others first");
		}
}

/* Deflate, highest priority first, within the host's room. */
static void deflate_pass(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
			 const struct ovcd_policy_guest *guests, size_t n,
			 struct ovcd_policy_decision *dec, const struct prio_set *prios,
			 struct ovcd_policy_out *out)
{
	uint64_t remaining = out->room_bytes;
	struct view v;

	for (int p = PRIORITY_LEVELS - 1; p >= 0; p--) {
		if (!prio_has(prios, (uint32_t)p))
			continue;
		uint64_t sum_cap = 0;
		for (size_t i = 0; i < n; i++)
			if ((int)dec[i].action == CAND_DEFLATE && prio_of(&guests[i]) == (uint32_t)p) {
				derive(cfg, h, &guests[i], &dec[i].state, &v);
				sum_cap += deflate_cap(&v);
			}
		bool all = remaining >= sum_cap;
		uint64_t given = 0;
		for (size_t i = 0; i < n; i++) {
			struct ovcd_policy_decision *d = &dec[i];
			if ((int)d->action != CAND_DEFLATE || prio_of(&guests[i]) != (uint32_t)p)
				continue;
			derive(cfg, h, &guests[i], &dec[i].state, &v);
			uint64_t cap = deflate_cap(&v);
			uint64_t give = all ? cap
					    : MIN(cap, ALIGN_UP((uint64_t)((unsigned __int128)remaining * cap /
								     MAX(sum_cap, 1)),
								MIB));
			give = MIN(give, sat_sub(remaining, given));
			bool to_max = v.target + give >= v.max;
			if (give == 0 || (give < v.min_change && !to_max)) {
				d->action = OVC_ACTION_NONE;
				reason_append(d->reason, "; share %s below min_change %s", SIZE_SHORT(give), SIZE_SHORT(v.min_change));
				continue;
			}
			char cause[OVC_POLICY_REASON_MAX];
			reasonf(cause, sizeof(cause), "%s", d->reason);
			d->action = OVC_ACTION_DEFLATE;
			d->target_bytes = v.target + give;
			reasonf(d->reason, sizeof(d->reason), "deflate by %s to %s: %s", SIZE_SHORT(give),
				 SIZE_SHORT(d->target_bytes), cause);
			given += give;
		}
		out->deflate_bytes += given;
		remaining = sat_sub(remaining, given);
	}
	for (size_t i = 0; i < n; i++)
		if ((int)dec[i].action == CAND_DEFLATE) {
			dec[i].action = OVC_ACTION_NONE;
			reason_append(dec[i].reason, "; room used by higher priorities");
		}
}

/* What an engine holds and may hold, from its untrusted figures. */
struct eview {
	uint64_t max, zero, held, target, cap, step;
	bool swap_ok;
	const char *no_swap;
};

static void engine_derive(const struct ovcd_config *cfg, const struct ovcd_policy_guest *g,
			  struct eview *e)
{
	const struct ovcd_guest_stats *st = &g->stats;

	e->max = st->max_bytes;
	e->zero = ovcd_known(st->engine_zero_bytes) ? MIN(st->engine_zero_bytes, e->max) : 0;
	e->held = e->zero + (ovcd_known(st->engine_swap_bytes)
				     ? MIN(st->engine_swap_bytes, e->max - e->zero) : 0);
	e->target = ovcd_known(st->engine_target_bytes) ? st->engine_target_bytes : 0;
	e->no_swap = !cfg->swap.enable ? "[swap] enable = no"
		     : g->settings.never_swap ? "class never_swap" : NULL;
	e->swap_ok = !e->no_swap;
	/* Zero sharing is not capped; swap is, by [swap] max, and by the RAM
	 * the engine has registered (it refuses a target beyond, -ENOSPC: a
	 * VMM may publish a max above its regions). */
	uint64_t room = ovcd_known(st->engine_region_bytes) ? MIN(e->max, st->engine_region_bytes) : e->max;
	e->cap = e->swap_ok ? ALIGN_DOWN(MIN(e->zero + ovcd_conf_size_bytes(&cfg->swap.max, e->max), room), MIB)
			    : 0;
	e->step = MAX(ALIGN_DOWN(ovcd_conf_size_bytes(&cfg->swap.step, e->max), MIB), MIB);
}

/* The engine's reason: the whole reason of an engine-only guest, appended
 * to the balloon's for a guest with both. */
_printf_(3, 4) static void engine_note(const struct ovcd_policy_guest *g,
				       struct ovcd_policy_decision *d, const char *fmt, ...)
{
	char buf[OVC_POLICY_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (g->kind == OVC_DRIVER_ENGINE)
		reasonf(d->reason, sizeof(d->reason), "engine: %s", buf);
	else
		reason_append(d->reason, "; engine: %s", buf);
}

/* Rules E1, E2, E4, E5 (policy.h) for one engine; under host pressure a
 * guest that may grow is left as CAND_ENGINE for engine_raise_pass(). */
static void engine_classify(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
			    const struct ovcd_policy_guest *g, struct ovcd_policy_decision *d,
			    struct ovcd_policy_out *out, const char *cause)
{
	struct eview e;
	struct view v;

	d->reclaim_action = OVC_ACTION_NONE;
	d->reclaim_target_bytes = ovcd_known(g->stats.engine_target_bytes) ? g->stats.engine_target_bytes : 0;
	if (!max_ok(g)) {
		engine_note(g, d, "no maximum memory known: left alone");
		return;
	}
	derive(cfg, h, g, &d->state, &v);
	engine_derive(cfg, g, &e);
	bool stuck = d->state.engine_stuck_usec &&
		     sat_sub(h->now_usec, d->state.engine_stuck_usec) >= cfg->balloon.pending_timeout_usec;

	/* E1: a target the config no longer allows. */
	if (e.target > e.zero && e.target > e.cap) {
		d->reclaim_action = OVC_ACTION_RESTORE;
		d->reclaim_target_bytes = e.swap_ok ? e.cap : 0;
		engine_note(g, d, "target %s above what is allowed (%s): to %s", SIZE_SHORT(e.target),
			    e.swap_ok ? "zero shared + [swap] max" : e.no_swap, SIZE_SHORT(d->reclaim_target_bytes));
		return;
	}
	/* E2: the engine swaps back in faster than a guest may. */
	const struct ovcd_guest_stats *st = &g->stats, *pv = &g->prev;
	bool have_prev = pv->collected_usec && st->collected_usec > pv->collected_usec;
	uint64_t swapin = have_prev ? rate(st->engine_swap_in_bytes, pv->engine_swap_in_bytes,
					   st->collected_usec - pv->collected_usec)
				    : OVC_UNKNOWN;
	if (cfg->balloon.emergency_swap_in.bytes && ovcd_known(swapin) &&
	    swapin > cfg->balloon.emergency_swap_in.bytes && e.target > e.zero) {
		uint64_t by = MAX(ovcd_conf_size_bytes(&cfg->balloon.emergency_step, e.max), MIB);
		uint64_t to = sat_sub(e.target, by);
		d->reclaim_action = OVC_ACTION_EMERGENCY;
		d->reclaim_target_bytes = to > e.zero ? to : 0;
		d->emergency_count = MAX(d->emergency_count, MIN(v.streak + 1, EMERGENCY_COUNT_MAX));
		d->guest_pressure = true;
		out->n_emergency++;
		/* A guest whose engine thrashes is short: its balloon does not
		 * take more this tick either. */
		if (d->action == OVC_ACTION_INFLATE) {
			out->inflate_bytes -= v.target - d->target_bytes;
			d->action = OVC_ACTION_NONE;
			d->target_bytes = v.target;
			reasonf(d->reason, sizeof(d->reason), "no inflate: the engine thrashes");
		}
		engine_note(g, d, "emergency: target %s -> %s: swap-in %s/s > %s/s", SIZE_SHORT(e.target),
			    SIZE_SHORT(d->reclaim_target_bytes), SIZE_SHORT(swapin), SIZE_SHORT(cfg->balloon.emergency_swap_in.bytes));
		return;
	}
	switch (out->level) {
	case OVC_HOST_PRESSURE:
		if (!e.swap_ok)
			engine_note(g, d, "zero sharing only (%s)", e.no_swap);
		else if (v.pressure)
			engine_note(g, d, "host pressure, but the guest is short itself: no swap");
		else if (v.oom_cooling)
			engine_note(g, d, "host pressure, OOM kill %" PRIu64 "s ago: no swap",
				    sat_sub(h->now_usec, d->state.oom_usec) / USEC_PER_SEC);
		else if (v.cooling)
			engine_note(g, d, "host pressure, cooling down: emergency %" PRIu64 "s ago",
				    sat_sub(h->now_usec, g->last_emergency_usec) / USEC_PER_SEC);
		else if (v.settling)
			engine_note(g, d, "host pressure, settling: last action %" PRIu64 "ms ago",
				    (h->now_usec - g->last_action_usec) / 1000);
		else if (e.target > e.held && stuck) {
			/* What it owes no longer counts: others are asked. */
			d->noncompliant = true;
			out->n_noncompliant++;
			engine_note(g, d, "non-compliant: target %s, gives back %s, not moved for %" PRIu64 "s",
				    SIZE_SHORT(e.target), SIZE_SHORT(e.held),
				    sat_sub(h->now_usec, d->state.engine_stuck_usec) / USEC_PER_SEC);
		} else if (e.target > e.held) {
			out->engine_pending_bytes += e.target - e.held;
			engine_note(g, d, "host pressure, reaching target %s (gives back %s)", SIZE_SHORT(e.target),
				    SIZE_SHORT(e.held));
		} else if (e.held >= e.cap)
			engine_note(g, d, "host pressure, swap cap reached (gives back %s)", SIZE_SHORT(e.held));
		else
			d->reclaim_action = (enum ovcd_policy_action)CAND_ENGINE;
		return;
	case OVC_HOST_ROOM:
		if (e.target == 0) {
			engine_note(g, d, "host has room, target 0 (zero sharing only)");
			return;
		}
		d->reclaim_action = OVC_ACTION_RELEASE;
		d->reclaim_target_bytes = sat_sub(e.target, e.step) > e.zero ? sat_sub(e.target, e.step) : 0;
		engine_note(g, d, "release: target %s -> %s: host has room (%s)", SIZE_SHORT(e.target),
			    SIZE_SHORT(d->reclaim_target_bytes), cause);
		return;
	case OVC_HOST_STEADY:
		break;
	}
	engine_note(g, d, "target %s, gives back %s; host steady", SIZE_SHORT(e.target), SIZE_SHORT(e.held));
}

/* E3: raise engine targets, lowest priority first, for what balloons did
 * not cover. */
static void engine_raise_pass(const struct ovcd_config *cfg, const struct ovcd_policy_guest *guests,
			      size_t n, struct ovcd_policy_decision *dec, struct ovcd_policy_out *out,
			      const char *cause)
{
	/* Not for the guests' headroom: swapping one guest's memory out so
	 * that another may burst into the host's free memory is blind, and
	 * balloons take only spare for it. */
	uint64_t remaining = sat_sub(sat_sub(out->need_bytes, out->headroom_bytes),
				     out->inflate_bytes + out->pending_bytes + out->engine_pending_bytes);

	for (uint32_t p = 0; p < PRIORITY_LEVELS; p++)
		for (size_t i = 0; i < n; i++) {
			const struct ovcd_policy_guest *g = &guests[i];
			struct ovcd_policy_decision *d = &dec[i];
			struct eview e;

			if ((int)d->reclaim_action != CAND_ENGINE || prio_of(g) != p)
				continue;
			d->reclaim_action = OVC_ACTION_NONE;
			engine_derive(cfg, g, &e);
			if (!remaining) {
				engine_note(g, d, "host pressure, balloons cover the need");
				continue;
			}
			uint64_t to = MIN(ALIGN_DOWN(e.held + MIN(e.step, ALIGN_UP(remaining, MIB)), MIB), e.cap);
			if (to <= e.target) {
				engine_note(g, d, "host pressure, less than 1MiB to gain");
				continue;
			}
			d->reclaim_action = OVC_ACTION_RECLAIM;
			d->reclaim_target_bytes = to;
			remaining = sat_sub(remaining, to - e.held);
			out->reclaim_bytes += to - e.held;
			engine_note(g, d, "reclaim: target %s -> %s: host pressure (%s)", SIZE_SHORT(e.target), SIZE_SHORT(to),
				    cause);
		}
}

/* ksmtuned's rule with KSM's own profit counters on top:
 * run while memory is committed near MemTotal or MemAvailable is below the
 * threshold, boost the scan rate under pressure and decay it otherwise, and
 * stop for retry_after when a full scan brought no profit for idle_ticks. */
static void ksm_step(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
		     const struct ovcd_policy_ksm_state *in, const struct ovcd_policy_guest *guests,
		     size_t n, struct ovcd_policy_out *out)
{
	struct ovcd_policy_ksm_state st = *in;
	struct ovcd_ksm_knobs want = h->ksm_knobs;
	uint64_t total = h->mem.total_bytes, free_b = h->mem.available_bytes;
	uint64_t thres = MAX(ovcd_conf_size_bytes(&cfg->ksm.threshold, total), 2 * MIB);
	uint64_t committed = 0;
	int64_t profit = ovcd_ksm_profit_bytes(&h->ksm, h->page_size);

	const char *opt_out = NULL;
	for (size_t i = 0; i < n; i++) {
		const struct ovcd_guest_stats *s = &guests[i].stats;
		/* An engine-only guest's actual memory is its VMM's claim:
		 * only what the kernel measured (its RSS) counts. */
		if (guests[i].kind == OVC_DRIVER_ENGINE)
			committed += ovcd_known(s->rss_bytes) ? MIN(s->rss_bytes, OVC_GUEST_BYTES_MAX) : 0;
		else
			committed += ovcd_known(s->rss_bytes) ? MIN(s->rss_bytes, OVC_GUEST_BYTES_MAX)
				     : ovcd_known(s->actual_bytes) ? MIN(s->actual_bytes, OVC_GUEST_BYTES_MAX) : 0;
		if (!guests[i].settings.ksm && !opt_out)
			opt_out = guests[i].name ? guests[i].name : "?";
	}
	if (cfg->ksm.use_zero_pages && want.use_zero_pages >= 0)
		want.use_zero_pages = 1;

	bool needed = !(committed < sat_sub(total, thres) && free_b > thres) || out->level == OVC_HOST_PRESSURE;
	if (st.on && h->ksm.full_scans > st.full_scans_at_on) {
		/* A full scan has completed since KSM was turned on: judge. */
		bool pays = profit >= (int64_t)cfg->ksm.min_profit.bytes || profit > st.last_profit_bytes;
		st.idle_ticks = pays ? 0 : st.idle_ticks + 1;
	}
	st.last_profit_bytes = profit;

	if (opt_out) {
		/* KSM cannot leave one running VMM's memory out (only the
		 * VMM itself can unmark it): while a guest that must not
		 * share runs, KSM merges nothing new. */
		st.on = false;
		st.idle_ticks = 0;
		want.run = 0;
		reasonf(out->ksm_reason, sizeof(out->ksm_reason),
			"KSM off: guest '%s' must not share pages ([guest] ksm = no)", opt_out);
	} else if (!needed) {
		st.on = false;
		st.idle_ticks = 0;
		want.run = 0;
		reasonf(out->ksm_reason, sizeof(out->ksm_reason),
			 "KSM off: not needed (committed %s + threshold %s < MemTotal, MemAvailable %s > threshold)",
			 SIZE_SHORT(committed), SIZE_SHORT(thres), SIZE_SHORT(free_b));
	} else if (st.on && st.idle_ticks >= cfg->ksm.idle_ticks) {
		st.on = false;
		st.idle_ticks = 0;
		st.off_until_usec = h->now_usec + cfg->ksm.retry_after_usec;
		want.run = 0;
		reasonf(out->ksm_reason, sizeof(out->ksm_reason),
			 "KSM off: does not pay (profit %s%s for %" PRIu64 " ticks); retry in %" PRIu64 "s",
			 profit < 0 ? "-" : "", SIZE_SHORT((uint64_t)(profit < 0 ? -profit : profit)),
			 cfg->ksm.idle_ticks, cfg->ksm.retry_after_usec / USEC_PER_SEC);
	} else if (!st.on && h->now_usec < st.off_until_usec) {
		want.run = 0;
		reasonf(out->ksm_reason, sizeof(out->ksm_reason),
			 "KSM off: backing off after no profit, %" PRIu64 "s left",
			 (st.off_until_usec - h->now_usec + USEC_PER_SEC - 1) / USEC_PER_SEC);
	} else {
		uint32_t lo = (uint32_t)cfg->ksm.min_pages_to_scan, hi = (uint32_t)cfg->ksm.max_pages_to_scan;
		int64_t pages = st.on ? st.pages_to_scan : lo;
		bool boost = free_b < thres || out->level == OVC_HOST_PRESSURE;
		pages += boost ? (int64_t)cfg->ksm.pages_boost : -(int64_t)cfg->ksm.pages_decay;
		pages = MIN(MAX(pages, (int64_t)lo), (int64_t)hi);
		if (!st.on) {
			st.on = true;
			st.idle_ticks = 0;
			st.full_scans_at_on = h->ksm.full_scans;
		}
		st.pages_to_scan = (uint32_t)pages;
		want.run = 1;
		want.pages_to_scan = st.pages_to_scan;
		/* ksmtuned: 10 ms per batch on a 16 GiB host, longer on smaller
		 * ones, never shorter than 10 ms. */
		uint64_t sleep = total ? 10 * 16 * GIB / total : 10;
		want.sleep_millisecs = (uint32_t)MIN(MAX(sleep, 10), 1000);
		reasonf(out->ksm_reason, sizeof(out->ksm_reason),
			 "KSM on: %s; pages_to_scan %u (%s), profit %s%s",
			 out->level == OVC_HOST_PRESSURE ? "host pressure"
			 : free_b < thres ? "MemAvailable below threshold"
					  : "guests committed near MemTotal",
			 st.pages_to_scan, boost ? "boost" : "decay", profit < 0 ? "-" : "",
			 SIZE_SHORT((uint64_t)(profit < 0 ? -profit : profit)));
	}
	out->ksm = want;
	out->ksm_state = st;
	out->ksm_change = want.run != h->ksm_knobs.run ||
			  (want.run == 1 && !want.advisor_scan_time &&
			   want.pages_to_scan != h->ksm_knobs.pages_to_scan) ||
			  (want.run == 1 && want.sleep_millisecs != h->ksm_knobs.sleep_millisecs) ||
			  want.use_zero_pages != h->ksm_knobs.use_zero_pages;
}

/* Σ over balloon guests with fresh statistics of min(available,
 * headroom): what they may take within a stats period without asking,
 * faster than any balloon gives it back. The host keeps it free as well
 * as its reserve, so that spare is taken from others before a burst, not
 * after. It stops squeezing by itself: a guest is never inflated into its
 * own headroom, so once nobody has spare, nothing more is taken. */
static uint64_t headroom_claims(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
				const struct ovcd_policy_guest *guests, size_t n)
{
	uint64_t sum = 0;

	if (!cfg->balloon.enable || !cfg->host.keep_headroom)
		return 0;
	for (size_t i = 0; i < n; i++) {
		const struct ovcd_policy_guest *g = &guests[i];
		struct ovcd_policy_guest_state s;
		struct events e;
		struct view v;

		if (!max_ok(g) || g->kind == OVC_DRIVER_ENGINE || g->settings.never_balloon)
			continue;
		learn(cfg, h, g, &s, &e);
		derive(cfg, h, g, &s, &v);
		if (v.fresh)
			sum += MIN(v.avail, v.headroom);
	}
	return sum;
}

int ovcd_policy_tick(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
		    const struct ovcd_policy_ksm_state *ksm_in, const struct ovcd_policy_guest *guests,
		    size_t n, struct ovcd_policy_decision *dec, struct ovcd_policy_out *out)
{
	char cause[OVC_POLICY_REASON_MAX];
	struct prio_set inflate_prios = { { 0 } }, deflate_prios = { { 0 } };

	if (!cfg || !h || !ksm_in || !out || (n && (!guests || !dec)) || h->page_size == 0)
		return -EINVAL;
	*out = (struct ovcd_policy_out){ .ksm_state = *ksm_in };
	out->headroom_bytes = headroom_claims(cfg, h, guests, n);
	host_level(cfg, h, out, cause, sizeof(cause));

	for (size_t i = 0; i < n; i++) {
		enum cand c = classify(cfg, h, out, &guests[i], &dec[i], cause, false);
		if (c == CAND_INFLATE)
			prio_add(&inflate_prios, prio_of(&guests[i]));
		else if (c == CAND_DEFLATE)
			prio_add(&deflate_prios, prio_of(&guests[i]));
		if (c != CAND_NONE)
			dec[i].action = (enum ovcd_policy_action)c;
		/* A balloon still inflating toward a target kept this tick. */
		const struct ovcd_guest_stats *st = &guests[i].stats;
		/* A balloon that has not moved for pending_timeout owes it for
		 * good: it no longer counts, and others are asked instead. */
		if (dec[i].noncompliant && guests[i].kind != OVC_DRIVER_ENGINE)
			out->n_noncompliant++;
		else if (guests[i].kind != OVC_DRIVER_ENGINE && max_ok(&guests[i]) &&
			 ovcd_known(st->actual_bytes) && dec[i].action != OVC_ACTION_EMERGENCY &&
			 dec[i].action != OVC_ACTION_RESTORE &&
			 MIN(st->actual_bytes, st->max_bytes) > dec[i].target_bytes)
			out->pending_bytes += MIN(st->actual_bytes, st->max_bytes) - dec[i].target_bytes;
		if (dec[i].action == OVC_ACTION_EMERGENCY || dec[i].action == OVC_ACTION_RESTORE) {
			uint64_t old = guests[i].target_bytes && ovcd_known(guests[i].target_bytes)
					       ? MIN(guests[i].target_bytes, guests[i].stats.max_bytes)
					       : guests[i].stats.max_bytes;
			if (dec[i].target_bytes > old)
				out->deflate_bytes += dec[i].target_bytes - old;
			out->n_emergency += dec[i].action == OVC_ACTION_EMERGENCY;
		}
	}
	if (out->level == OVC_HOST_PRESSURE)
		inflate_pass(cfg, h, guests, n, dec, &inflate_prios, out);
	if (out->level == OVC_HOST_ROOM)
		deflate_pass(cfg, h, guests, n, dec, &deflate_prios, out);
	bool raise = false;
	for (size_t i = 0; i < n; i++) {
		dec[i].reclaim_action = OVC_ACTION_NONE;
		dec[i].reclaim_target_bytes = 0;
		if (!has_engine(&guests[i]))
			continue;
		engine_classify(cfg, h, &guests[i], &dec[i], out, cause);
		raise |= (int)dec[i].reclaim_action == CAND_ENGINE;
	}
	if (raise)
		engine_raise_pass(cfg, guests, n, dec, out, cause);
	for (size_t i = 0; i < n; i++)
		if (guests[i].kind == OVC_DRIVER_ENGINE)
			dec[i].action = dec[i].reclaim_action;

	if (cfg->ksm.enable && h->ksm_valid)
		ksm_step(cfg, h, ksm_in, guests, n, out);
	else
		reasonf(out->ksm_reason, sizeof(out->ksm_reason), "%s",
			 cfg->ksm.enable ? "no KSM on this host" : "KSM not managed ([ksm] enable = no)");
	return 0;
}

int ovcd_policy_guest_check(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
			   const struct ovcd_policy_guest *g, struct ovcd_policy_decision *d)
{
	struct ovcd_policy_out out = { .level = OVC_HOST_STEADY };

	if (!cfg || !h || !g || !d || h->page_size == 0)
		return -EINVAL;
	classify(cfg, h, &out, g, d, "", true);
	d->reclaim_action = OVC_ACTION_NONE;
	d->reclaim_target_bytes = ovcd_known(g->stats.engine_target_bytes) && has_engine(g)
					  ? g->stats.engine_target_bytes : 0;
	bool act = (d->action == OVC_ACTION_EMERGENCY || d->action == OVC_ACTION_RESTORE) &&
		   d->target_bytes > target_of(g);
	if (!act && max_ok(g)) {
		d->action = OVC_ACTION_NONE;
		d->target_bytes = target_of(g);
	}
	return act ? 1 : 0;
}
