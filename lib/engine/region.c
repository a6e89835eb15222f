/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The page-state table of a region (layout in region.h). Called by the
 * thread that adds or removes a region, with engine->regions_lock held for
 * writing, so no other thread sees a half-built region.
 */
#include <string.h>
#include <sys/mman.h>

#include "engine/region.h"

int region_init(struct region *r, void *host, uint64_t len, uint64_t gpa, unsigned flags)
{
	memset(r, 0, sizeof(*r));
	r->host = host;
	r->len_bytes = len;
	r->guest_phys = gpa;
	r->npages = len >> PAGE_SHIFT;
	r->flags = flags;
	/* mmap, not malloc: the table of a large region is megabytes, and an
	 * anonymous mapping is zero (all RESIDENT) without touching it. Not
	 * through the ops table: it is not on the reclaim path. */
	/* Up to 4096 registers (1.6% standard error), never more than pages;
	 * regions under 16 pages keep no estimate (hll_bits 0). */
	r->hll_bits = 0;
	while (r->hll_bits < 12 && (UINT64_C(1) << (r->hll_bits + 1)) <= r->npages)
		r->hll_bits++;
	if (r->hll_bits < 4)
		r->hll_bits = 0;
	uint64_t words = r->npages * sizeof(pst_t);
	uint64_t halves = r->npages * sizeof(*r->slot_hi);
	uint64_t regs = r->hll_bits ? UINT64_C(1) << r->hll_bits : 0;
	r->pst_map_bytes = ALIGN_UP(words + halves + regs, PAGE_SIZE);
	uint8_t *p = mmap(NULL, r->pst_map_bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	r->pst = (pst_t *)p;
	r->slot_hi = (_Atomic uint16_t *)(p + words);
	r->hll = (_Atomic uint8_t *)(p + words + halves);
	pthread_mutex_init(&r->lock, NULL);
	return 0;
}

void region_fini(struct region *r)
{
	if (r->pst)
		munmap((void *)r->pst, r->pst_map_bytes);
	r->pst = NULL;
	r->slot_hi = NULL;
	r->hll = NULL;
	pthread_mutex_destroy(&r->lock);
}

uint64_t region_meta_bytes(const struct region *r)
{
	return r->pst_map_bytes + sizeof(*r);
}
