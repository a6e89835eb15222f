/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench swap, the cost of tracking writes: lib/engine/track's CPU time
 * per page and interval (one track_scan with 20% of the pages written, one
 * track_cold listing: track_scan_ns_per_page, track_cold_ns_per_page; no
 * peer, since soft-dirty, the kernel's other way, is not built in here),
 * and what it costs the guest: the first write to a page after a scan (a
 * write-protect fault the kernel resolves, WP_ASYNC) against the same
 * write again, unprotected (track_first_write_ns vs
 * track_plain_write_ns).
 *
 * Runs on the driver's thread (bench-swap.c). No locks.
 */

#include <stdlib.h>

#include "bench-swap.h"
#include "engine/track.h"
#include "common/util.h"

/* One track_scan() interval over the whole region with 20% of its pages
 * written, and one track_cold() listing: the worker's CPU cost per page per
 * interval. Median of 5. */
void track_cost(char *mem, uint64_t bytes, struct swap_results *res)
{
	double *ret_scan = &res->track_scan_ns_per_page, *ret_cold = &res->track_cold_ns_per_page;
	struct track_opts o = { .size = sizeof(o), .start = mem, .len_bytes = bytes };
	struct track *t;
	uint64_t npages = bytes / PG, s = 8;
	uint64_t *list = malloc(npages * sizeof(*list));
	double scan[5], cold[5], first[5], plain[5];

	*ret_scan = *ret_cold = NOVAL;
	res->track_first_write_ns = res->track_plain_write_ns = NOVAL;
	if (!list || track_new(&o, &t) < 0) {
		free(list);
		return;
	}
	for (unsigned k = 0; k < 5; k++) {
		/* The guest's side: the first write to a protected page is a
		 * write-protect fault the kernel resolves (WP_ASYNC); the same
		 * writes again, now unprotected, are the peer. */
		uint64_t s0 = s, n = npages / 5;
		volatile char *vm = mem; /* a self-assignment must not be optimised out */
		uint64_t w0 = bench_now_ns();
		for (uint64_t i = 0; i < n; i++) {
			uint64_t p = xorshift64(&s) % npages;
			vm[p * PG] = vm[p * PG]; /* a write that keeps the content */
		}
		uint64_t w1 = bench_now_ns();
		s = s0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t p = xorshift64(&s) % npages;
			vm[p * PG] = vm[p * PG];
		}
		uint64_t w2 = bench_now_ns();
		first[k] = (double)(w1 - w0) / (double)n;
		plain[k] = (double)(w2 - w1) / (double)n;
		uint64_t t0 = bench_now_ns();
		if (track_scan(t) < 0)
			goto out;
		uint64_t t1 = bench_now_ns();
		track_cold(t, 1, list, npages, NULL, NULL);
		uint64_t t2 = bench_now_ns();
		scan[k] = (double)(t1 - t0) / (double)npages;
		cold[k] = (double)(t2 - t1) / (double)npages;
	}
	*ret_scan = bench_percentile(scan, 5, 50);
	*ret_cold = bench_percentile(cold, 5, 50);
	res->track_first_write_ns = bench_percentile(first, 5, 50);
	res->track_plain_write_ns = bench_percentile(plain, 5, 50);
out:
	track_free(t);
	free(list);
}
