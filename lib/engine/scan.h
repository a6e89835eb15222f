/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The scanner's building blocks: a vectorised zero check, XXH3 per page,
 * a HyperLogLog estimate of distinct page contents (registers in the
 * region's table mapping), and run coalescing of candidate pages.
 *
 * Pure functions over memory the caller names; no locks. The pass that uses
 * them (share.c) runs on one thread at a time.
 */
#ifndef OVC_SCAN_H
#define OVC_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/region.h"

/* XXH3_64bits of 4096 zero bytes (xxhash 0.8.1; checked by test-scan). */
#define SCAN_ZERO_PAGE_HASH UINT64_C(0x93d76fe148c689ba)

/* true when the 4 KiB page at @p (64-byte aligned) holds only zeros. A full
 * compare: this is the check that decides a drop, not a hint. */
bool scan_page_is_zero(const void *p);
/* XXH3_64bits of one 4 KiB page (the inline build: Debian's exported symbol
 * is an SSE2-only build at ~60% of the speed). */
uint64_t scan_page_hash(const void *p);

/* HyperLogLog over a region's registers (r->hll). */
void scan_hll_reset(struct region *r);
void scan_hll_add(struct region *r, uint64_t hash);
uint64_t scan_hll_estimate(const struct region *r);

/* Runs of pages: [start, start + len) in page numbers of one region. */
struct page_run {
	uint32_t start;
	uint32_t len;
};

struct run_list {
	struct page_run *runs;
	uint32_t n, cap;
	uint64_t pages;            /* sum of len */
};

/* Append @page; extends the last run when contiguous. Returns false when
 * the list is full and @page starts a new run (the caller flushes first). */
static inline bool runs_add(struct run_list *l, uint32_t page)
{
	if (l->n && l->runs[l->n - 1].start + l->runs[l->n - 1].len == page) {
		l->runs[l->n - 1].len++;
		l->pages++;
		return true;
	}
	if (l->n == l->cap)
		return false;
	l->runs[l->n++] = (struct page_run){ page, 1 };
	l->pages++;
	return true;
}

static inline void runs_clear(struct run_list *l)
{
	l->n = 0;
	l->pages = 0;
}

#endif
