/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Overcommit ratio arithmetic. Pure; any thread. */
#include <errno.h>

#include "host/config.h"
#include "host/guest.h"
#include "host/policy.h"
#include "host/stats.h"
#include "common/util.h"

static uint64_t known_or_zero(uint64_t v)
{
	return ovcd_known(v) ? v : 0;
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

static int64_t signed_diff(uint64_t a, uint64_t b)
{
	/* Memory sizes stay far below 2^63. */
	return (int64_t)a - (int64_t)b;
}

static uint64_t permille(uint64_t num, uint64_t den)
{
	if (den == 0)
		return 0;
	return (uint64_t)(((unsigned __int128)num * 1000 + den / 2) / den);
}

int ovcd_overcommit_compute(const struct ovcd_overcommit_input *in, struct ovcd_overcommit *ret)
{
	struct ovcd_overcommit o = { 0 };
	uint64_t backing_rss = 0, backing_model = 0, max_model = 0;

	if (!in || !ret || (in->n_guests && !in->guests) || in->page_size == 0)
		return -EINVAL;
	if (in->host_reserve_bytes >= in->host_total_bytes)
		return -ERANGE;

	for (size_t i = 0; i < in->n_guests; i++) {
		const struct ovcd_overcommit_guest *g = &in->guests[i];
		/* A driver's actual above max is a transient or a lie: clamp. */
		uint64_t actual = MIN(g->actual_bytes, g->max_bytes);
		uint64_t zero = MIN(known_or_zero(g->engine_zero_bytes), actual);
		uint64_t swap = MIN(known_or_zero(g->engine_swap_bytes), actual - zero);

		o.guests_max_bytes += g->max_bytes;
		o.savings.balloon_bytes += g->max_bytes - actual;
		o.savings.zero_bytes += zero;
		o.savings.swap_bytes += swap;
		if (ovcd_known(g->rss_bytes)) {
			backing_rss += g->rss_bytes;
		} else {
			backing_model += actual - zero - swap;
			max_model += g->max_bytes;
		}
	}
	uint64_t ksm_sharing = in->ksm_pages_sharing * in->page_size;
	uint64_t ksm_zero = in->ksm_zero_pages * in->page_size;
	/* KSM zero pages are already out of an RSS; take the share of them
	 * that falls on guests measured by the model. */
	uint64_t ksm_zero_model =
		o.guests_max_bytes ? (uint64_t)((unsigned __int128)ksm_zero * max_model / o.guests_max_bytes) : 0;

	o.savings.engine_zero_bytes = o.savings.zero_bytes;
	o.savings.ksm_zero_bytes = ksm_zero;
	o.savings.zero_bytes += ksm_zero;
	o.savings.ksm_bytes = ksm_sharing;
	o.savings.total_bytes = o.savings.balloon_bytes + o.savings.zero_bytes + o.savings.ksm_bytes +
				o.savings.swap_bytes;

	o.host_total_bytes = in->host_total_bytes;
	o.host_for_guests_bytes = in->host_total_bytes - in->host_reserve_bytes;
	o.guests_backing_bytes = sat_sub(sat_sub(backing_rss + backing_model, ksm_zero_model), ksm_sharing);
	o.provisioned_ratio_permille = permille(o.guests_max_bytes, o.host_for_guests_bytes);
	o.effective_ratio_permille = permille(o.guests_max_bytes, o.guests_backing_bytes);
	o.headroom_low_bytes = signed_diff(in->host_available_bytes, in->low_bytes);
	o.headroom_high_bytes = signed_diff(in->host_available_bytes, in->high_bytes);
	o.give_back_bytes = sat_sub(o.guests_max_bytes, o.guests_backing_bytes);
	o.headroom_after_give_back_bytes = signed_diff(in->host_available_bytes, o.give_back_bytes);
	*ret = o;
	return 0;
}

int ovcd_overcommit_from_tick(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
			     const struct ovcd_policy_guest *guests, size_t n,
			     struct ovcd_overcommit_guest *scratch, struct ovcd_overcommit *ret)
{
	if (!cfg || !h || (n && (!guests || !scratch)))
		return -EINVAL;
	uint64_t total = h->mem.total_bytes, reserve, low, high;
	ovcd_config_watermarks(cfg, total, &reserve, &low, &high);
	struct ovcd_overcommit_input in = {
		.host_total_bytes = total,
		.host_reserve_bytes = reserve,
		.host_available_bytes = h->mem.available_bytes,
		.low_bytes = low,
		.high_bytes = high,
		.ksm_pages_sharing = h->ksm_valid ? h->ksm.pages_sharing : 0,
		.ksm_zero_pages = h->ksm_valid ? h->ksm.ksm_zero_pages : 0,
		.page_size = h->page_size,
		.guests = scratch,
		.n_guests = n,
	};
	for (size_t i = 0; i < n; i++) {
		const struct ovcd_guest_stats *st = &guests[i].stats;
		uint64_t max = ovcd_known(st->max_bytes) ? st->max_bytes : 0;
		scratch[i] = (struct ovcd_overcommit_guest){
			.max_bytes = max,
			.actual_bytes = ovcd_known(st->actual_bytes) ? st->actual_bytes : max,
			.rss_bytes = st->rss_bytes,
			.engine_zero_bytes = st->engine_zero_bytes,
			.engine_swap_bytes = st->engine_swap_bytes,
		};
	}
	return ovcd_overcommit_compute(&in, ret);
}
