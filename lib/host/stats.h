/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The overcommit ratio of a host (design.md, "Overcommit ratio"): what
 * `ovcctl status` and the metrics show. Pure arithmetic over figures the
 * daemon collected; any thread. Internal to ovcd.
 */
#ifndef OVC_STATS_H
#define OVC_STATS_H

#include <stddef.h>
#include <stdint.h>

struct ovcd_overcommit_guest {
	uint64_t max_bytes;          /* configured maximum */
	uint64_t actual_bytes;       /* max - balloon */
	uint64_t rss_bytes;          /* VMM process RSS, or OVC_UNKNOWN */
	uint64_t engine_zero_bytes;  /* embedded engine, or OVC_UNKNOWN */
	uint64_t engine_swap_bytes;  /* embedded engine, or OVC_UNKNOWN */
};

struct ovcd_overcommit_input {
	uint64_t host_total_bytes;     /* MemTotal */
	uint64_t host_reserve_bytes;   /* [host] reserve, resolved */
	uint64_t host_available_bytes; /* MemAvailable */
	uint64_t low_bytes, high_bytes; /* [host] low/high, resolved */
	/* KSM, host-wide: on a KVM host it merges guest memory. */
	uint64_t ksm_pages_sharing;
	uint64_t ksm_zero_pages;
	uint64_t page_size;
	const struct ovcd_overcommit_guest *guests;
	size_t n_guests;
};

struct ovcd_overcommit {
	uint64_t host_total_bytes;
	uint64_t host_for_guests_bytes;   /* MemTotal - reserve */
	uint64_t guests_max_bytes;        /* Σ max */
	uint64_t guests_backing_bytes;    /* host memory that backs guests now */
	/* Σ max ÷ (MemTotal - reserve), and Σ max ÷ backing, ×1000. */
	uint64_t provisioned_ratio_permille;
	uint64_t effective_ratio_permille; /* 0 without guests */
	struct {
		uint64_t balloon_bytes;   /* Σ (max - actual) */
		uint64_t zero_bytes;      /* engine zero pages + KSM zero pages */
		uint64_t engine_zero_bytes; /* the engines' part of zero_bytes */
		/* KSM, host-wide: it merges any process's mergeable memory,
		 * not only guests'; ovcd cannot tell them apart. */
		uint64_t ksm_zero_bytes;  /* KSM's part of zero_bytes */
		uint64_t ksm_bytes;       /* KSM pages_sharing */
		uint64_t swap_bytes;      /* engine swap */
		uint64_t total_bytes;
	} savings;
	/* MemAvailable minus the low / high watermark (negative: below). */
	int64_t headroom_low_bytes;
	int64_t headroom_high_bytes;
	/* What guests could claim back at once if each used its maximum
	 * (Σ max - backing), and MemAvailable after that. */
	uint64_t give_back_bytes;
	int64_t headroom_after_give_back_bytes;
};

/*
 * Backing memory per guest is its VMM's RSS when known (which already
 * excludes ballooned, engine-dropped, engine-swapped and KSM-zero pages),
 * else actual - engine zero - engine swap; minus KSM's pages_sharing
 * host-wide (RSS counts a merged page in every sharer), and minus KSM zero
 * pages for the guests whose RSS is unknown, proportionally. Unknown
 * figures count as 0 savings. Returns 0, -EINVAL (NULL, guests without
 * n), or -ERANGE when the reserve is not below MemTotal; *ret untouched
 * on failure.
 */
int ovcd_overcommit_compute(const struct ovcd_overcommit_input *in, struct ovcd_overcommit *ret);

struct ovcd_config;
struct ovcd_policy_host;
struct ovcd_policy_guest;

/*
 * The same from what a daemon tick already has: the config (reserve, low,
 * high), the host state and the guests given to ovcd_policy_tick().
 * @scratch holds @n entries. Errors as ovcd_overcommit_compute().
 */
int ovcd_overcommit_from_tick(const struct ovcd_config *cfg, const struct ovcd_policy_host *h,
			     const struct ovcd_policy_guest *guests, size_t n,
			     struct ovcd_overcommit_guest *scratch, struct ovcd_overcommit *ret);

#endif
