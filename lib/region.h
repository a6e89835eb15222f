/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Regions of guest RAM and their page-state table.
 *
 * One 64-bit word per 4 KiB page, and nothing else per page: the whole
 * per-page metadata of the engine is this table (8 bytes per page). Layout:
 *
 *   bits  0..2   state: RESIDENT, ZERO, SWAPPED, SHARING, SWAPPING_OUT,
 *                SWAPPING_IN (enum pst_state)
 *   bit   3      WAITERS: a fault on this page arrived while it was in
 *                transit and was left waiting; whoever ends the transit
 *                must wake the page (UFFDIO_WAKE) if its own ioctl did not
 *   bit   4      DISCARDED: the VMM discarded the page (UFFD_EVENT_REMOVE)
 *                while it was in transit; its old content must not come back
 *   bit   5      DISCARD_PENDING (swap only): the VMM discarded the page
 *                while it was not in transit and no fault has been served
 *                on it since; its kernel zap may still be pending, so any
 *                content moved out now is pre-discard data (see swap.c)
 *   bit   6      CACHED (swap only): a RESIDENT page that came back from
 *                swap and has not been seen written since keeps its slot
 *                (the slot field stays valid), so evicting it again needs
 *                no write if its content still matches (swap.c)
 *   bit   7      reserved (0)
 *   bits  8..15  age: scan passes since the page was last seen written
 *                (saturating; groundwork for swap's cold-page choice)
 *   bits 16..55  swap slot (40 bits: 2^40 slots of 4 KiB = 4 EiB), valid in
 *                SWAPPED, SWAPPING_OUT and SWAPPING_IN, and with CACHED
 *   bits 56..63  scratch byte of the scanner: entry i < hll_m holds register
 *                i of the region's HyperLogLog distinct-hash estimate, so
 *                the content statistics cost no memory beyond the table
 *
 * States. RESIDENT: the kernel owns the page as usual (present, or a hole
 * that faults to the handler, which answers with the zero page). ZERO: the
 * engine dropped it and installed the shared zero page; the guest may have
 * written it since (a write is a silent kernel COW), so ZERO means "was
 * zero", and the scanner looks at ZERO pages again. SWAPPED: content lives
 * in a swap slot (not produced yet; the fault handler dispatches it to the
 * swap-in hook). SHARING/SWAPPING_*: in transit; a fault on such a page
 * waits until the transit ends.
 *
 * Threads and locks. Words change with compare-and-swap only, from any
 * thread. region->lock orders the fault handler's "read state, then
 * resolve with an ioctl" against a pass's "mark in transit, then protect or
 * move out": whoever holds the lock sees the state the other left, so the
 * handler never installs a page at an address whose content is in transit
 * (the one way a write could be lost). Lock order: engine->regions_lock
 * (read) before region->lock.
 */
#ifndef OVC_REGION_H
#define OVC_REGION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

struct track;

#define PAGE_SHIFT 12
#define PAGE_SIZE (UINT64_C(1) << PAGE_SHIFT)

enum pst_state {
	PST_RESIDENT = 0,
	PST_ZERO = 1,
	PST_SWAPPED = 2,
	PST_SHARING = 3,
	PST_SWAPPING_OUT = 4,
	PST_SWAPPING_IN = 5,
};

#define PST_STATE_MASK UINT64_C(0x7)
#define PST_WAITERS (UINT64_C(1) << 3)
#define PST_DISCARDED (UINT64_C(1) << 4)
#define PST_DISCARD_PENDING (UINT64_C(1) << 5)
#define PST_CACHED (UINT64_C(1) << 6)
#define PST_AGE_SHIFT 8
#define PST_AGE_MASK (UINT64_C(0xff) << PST_AGE_SHIFT)
#define PST_SLOT_SHIFT 16
#define PST_SLOT_BITS 40
#define PST_SLOT_MASK (((UINT64_C(1) << PST_SLOT_BITS) - 1) << PST_SLOT_SHIFT)
#define PST_SCRATCH_SHIFT 56
#define PST_SCRATCH_MASK (UINT64_C(0xff) << PST_SCRATCH_SHIFT)

typedef _Atomic uint64_t pst_t;

static inline enum pst_state pst_state(uint64_t w)
{
	return (enum pst_state)(w & PST_STATE_MASK);
}

static inline bool pst_in_transit(uint64_t w)
{
	return pst_state(w) >= PST_SHARING;
}

static inline uint64_t pst_with_state(uint64_t w, enum pst_state s)
{
	return (w & ~PST_STATE_MASK) | (uint64_t)s;
}

static inline unsigned pst_age(uint64_t w)
{
	return (unsigned)((w & PST_AGE_MASK) >> PST_AGE_SHIFT);
}

static inline uint64_t pst_with_age(uint64_t w, unsigned age)
{
	return (w & ~PST_AGE_MASK) | ((uint64_t)MIN(age, 255u) << PST_AGE_SHIFT);
}

static inline uint64_t pst_slot(uint64_t w)
{
	return (w & PST_SLOT_MASK) >> PST_SLOT_SHIFT;
}

static inline uint64_t pst_with_slot(uint64_t w, uint64_t slot)
{
	return (w & ~PST_SLOT_MASK) | ((slot << PST_SLOT_SHIFT) & PST_SLOT_MASK);
}

static inline unsigned pst_scratch(uint64_t w)
{
	return (unsigned)(w >> PST_SCRATCH_SHIFT);
}

static inline uint64_t pst_with_scratch(uint64_t w, unsigned v)
{
	return (w & ~PST_SCRATCH_MASK) | ((uint64_t)(v & 0xff) << PST_SCRATCH_SHIFT);
}

/* Atomically replace the state bits of *p: from @from to @to, keeping the
 * other fields, clearing WAITERS, DISCARDED and DISCARD_PENDING. Returns false (and leaves *p)
 * when the state was not @from. *old receives the word before the change. */
static inline bool pst_transition(pst_t *p, enum pst_state from, enum pst_state to, uint64_t *old)
{
	uint64_t w = atomic_load_explicit(p, memory_order_acquire);
	for (;;) {
		if (pst_state(w) != from)
			break;
		uint64_t n = pst_with_state(w, to) & ~(PST_WAITERS | PST_DISCARDED | PST_DISCARD_PENDING);
		if (atomic_compare_exchange_weak_explicit(p, &w, n, memory_order_acq_rel,
							  memory_order_acquire)) {
			if (old)
				*old = w;
			return true;
		}
	}
	if (old)
		*old = w;
	return false;
}

/* Set @bits in *p if its state is in transit; returns the state seen. */
static inline enum pst_state pst_mark_if_transit(pst_t *p, uint64_t bits)
{
	uint64_t w = atomic_load_explicit(p, memory_order_acquire);
	for (;;) {
		if (!pst_in_transit(w))
			return pst_state(w);
		if (atomic_compare_exchange_weak_explicit(p, &w, w | bits, memory_order_acq_rel,
							  memory_order_acquire))
			return pst_state(w);
	}
}

/* Replace the scratch byte (scanner only). */
static inline void pst_set_scratch(pst_t *p, unsigned v)
{
	uint64_t w = atomic_load_explicit(p, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(p, &w, pst_with_scratch(w, v),
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/* Replace the age field (scanner only). */
static inline void pst_set_age(pst_t *p, unsigned age)
{
	uint64_t w = atomic_load_explicit(p, memory_order_relaxed);
	while (pst_age(w) != MIN(age, 255u) &&
	       !atomic_compare_exchange_weak_explicit(p, &w, pst_with_age(w, age),
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/* Per-region content statistics of the last full pass. */
struct region_content {
	uint64_t pages_scanned;
	uint64_t zero_pages;
	uint64_t distinct_hashes;  /* HyperLogLog estimate over non-zero pages */
	uint64_t duplicate_pages;  /* non-zero pages - distinct_hashes */
};

struct ovc_region {
	uint8_t *host;             /* page aligned */
	uint64_t len_bytes;
	uint64_t guest_phys;
	uint64_t npages;
	unsigned flags;            /* OVC_REGION_* */
	bool shmem;                /* MAP_SHARED memfd/shmem: write-protect path */
	bool can_move;             /* UFFDIO_MOVE usable on this region */

	pst_t *pst;                /* npages words, mmap'd */
	uint64_t pst_map_bytes;
	unsigned hll_bits;         /* HyperLogLog registers = 1 << hll_bits */

	pthread_mutex_t lock;      /* see the top of this file */
	struct track *track;       /* swap's write tracker (swap.c); NULL: none */

	/* Scanner only (one pass at a time, under engine->pass_lock). */
	uint64_t cursor;           /* next page of the background pass */
	uint64_t pass_nonzero;
	struct region_content cur; /* pass in progress */
	struct region_content last;/* last complete pass; read under pass_lock */
};

/* Allocate the table (all RESIDENT) and init the lock. -ENOMEM. */
int region_init(struct ovc_region *r, void *host, uint64_t len, uint64_t gpa, unsigned flags);
void region_fini(struct ovc_region *r);
/* Bytes of metadata this region costs: table plus the struct. */
uint64_t region_meta_bytes(const struct ovc_region *r);

static inline bool region_contains(const struct ovc_region *r, uint64_t addr)
{
	return addr >= (uint64_t)(uintptr_t)r->host &&
	       addr - (uint64_t)(uintptr_t)r->host < r->len_bytes;
}

static inline uint64_t region_page_of(const struct ovc_region *r, uint64_t addr)
{
	return (addr - (uint64_t)(uintptr_t)r->host) >> PAGE_SHIFT;
}

static inline uint8_t *region_addr(const struct ovc_region *r, uint64_t page)
{
	return r->host + (page << PAGE_SHIFT);
}

#endif
