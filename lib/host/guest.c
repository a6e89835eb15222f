/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Normalising guest statistics. Pure functions; any thread. */
#include <string.h>

#include "host/guest.h"

void ovcd_guest_stats_reset(struct ovcd_guest_stats *st)
{
	memset(st, 0xff, sizeof(*st));
	st->collected_usec = 0;
	st->stale = false;
}

static unsigned forget(uint64_t *v)
{
	if (!ovcd_known(*v))
		return 0;
	*v = OVC_UNKNOWN;
	return 1;
}

#define GUEST_BYTES_LIMIT OVC_GUEST_BYTES_MAX
#define GUEST_COUNTER_LIMIT (UINT64_C(1) << 48)

unsigned ovcd_guest_stats_sanitize(struct ovcd_guest_stats *st, uint64_t now_sec,
				  uint64_t max_age_sec)
{
	uint64_t *guest_bytes[] = {
		&st->total_bytes, &st->free_bytes, &st->available_bytes, &st->disk_caches_bytes,
	};
	unsigned n = 0;

	for (unsigned i = 0; i < sizeof(guest_bytes) / sizeof(guest_bytes[0]); i++)
		if (ovcd_known(*guest_bytes[i]) && *guest_bytes[i] > GUEST_BYTES_LIMIT)
			n += forget(guest_bytes[i]);

	/* The guest cannot see more memory than it was given. */
	if (ovcd_known(st->total_bytes) && ovcd_known(st->max_bytes) && st->total_bytes > st->max_bytes)
		n += forget(&st->total_bytes);
	if (ovcd_known(st->free_bytes) &&
	    ((ovcd_known(st->total_bytes) && st->free_bytes > st->total_bytes) ||
	     (ovcd_known(st->max_bytes) && st->free_bytes > st->max_bytes)))
		n += forget(&st->free_bytes);
	if (ovcd_known(st->available_bytes) &&
	    ((ovcd_known(st->total_bytes) && st->available_bytes > st->total_bytes) ||
	     (ovcd_known(st->max_bytes) && st->available_bytes > st->max_bytes)))
		n += forget(&st->available_bytes);
	if (ovcd_known(st->disk_caches_bytes) && ovcd_known(st->total_bytes) &&
	    st->disk_caches_bytes > st->total_bytes)
		n += forget(&st->disk_caches_bytes);

	/* A guest has far fewer pages than 2^48, and no counter of events
	 * grows past 2^48 in its lifetime (a million a second for eight
	 * years); a figure above is garbage, not a huge rate. */
	uint64_t *counters[] = {
		&st->oom_kills,   &st->alloc_stalls,   &st->async_scans,
		&st->direct_scans, &st->async_reclaims, &st->direct_reclaims,
	};
	for (unsigned i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		if (ovcd_known(*counters[i]) && *counters[i] > GUEST_COUNTER_LIMIT)
			n += forget(counters[i]);

	/* Staleness: no update at all, an update from the future, or an old one. */
	bool stale = !ovcd_known(st->guest_update_sec) || st->guest_update_sec == 0 ||
		     st->guest_update_sec > now_sec + 60 ||
		     (now_sec > st->guest_update_sec && now_sec - st->guest_update_sec > max_age_sec);
	if (stale) {
		n += forget(&st->total_bytes);
		n += forget(&st->free_bytes);
		n += forget(&st->available_bytes);
		n += forget(&st->disk_caches_bytes);
		n += forget(&st->swap_in_bytes);
		n += forget(&st->swap_out_bytes);
		n += forget(&st->major_faults);
		n += forget(&st->minor_faults);
		n += forget(&st->oom_kills);
		n += forget(&st->alloc_stalls);
		n += forget(&st->async_scans);
		n += forget(&st->direct_scans);
		n += forget(&st->async_reclaims);
		n += forget(&st->direct_reclaims);
	}
	st->stale = stale;
	return n;
}
