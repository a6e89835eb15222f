/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Regions of guest RAM and their page-state table.
 *
 * Six bytes per 4 KiB page, and nothing else per page: a 32-bit state word
 * (atomic) and the high half of the swap slot (16 bits, beside it). The
 * per-page metadata of the engine is these two arrays plus a fixed tail
 * (the HyperLogLog registers and struct region); the budget is 8 bytes
 * per page with swap's tracker included (docs/engine.md, "Page states";
 * tests/engine/test-region.c and test-swap.c check it). The word:
 *
 *   bits  0..2   state: RESIDENT, ZERO, SWAPPED, SHARING, SWAPPING_OUT,
 *                SWAPPING_IN (enum pst_state)
 *   bit   3      WAITERS: a fault on this page arrived while it was in
 *                transit and was left waiting; whoever ends the transit
 *                must wake the page (UFFDIO_WAKE) if its own ioctl did not
 *   bit   4      DISCARDED: the VMM discarded the page (UFFD_EVENT_REMOVE)
 *                while it was in transit; its old content must not come back
 *   bit   5      DISCARD_PENDING: the VMM discarded the page while it was
 *                not in transit, and neither the handler nor a transit's end
 *                installed a page there since; its kernel zap may still be
 *                pending, so any content moved out now is pre-discard data
 *                (regions that can move, and with swap: fault.c,
 *                discard_mark; kept through
 *                a zero-path MOVE batch's mark, which reads it)
 *   bit   6      CACHED (swap only): a RESIDENT page that came back from
 *                swap and has not been seen written since keeps its slot
 *                (the slot field stays valid), so evicting it again needs
 *                no write if its content still matches (swapout.c)
 *   bit   7      OWN_DROP (swap only): the engine is dropping this page
 *                itself (MADV_DONTNEED on the write-protect paths); the
 *                first UFFD_EVENT_REMOVE covering the page is taken as that
 *                drop's own event and only clears the bit (swapin.c,
 *                swap_discard). Never cleared by state changes
 *                (pst_transition keeps it): the event may be read after the
 *                page left its transit
 *   bits  8..15  age: scan passes since the page was last seen written
 *                (saturating; swap's cold-page choice)
 *   bits 16..31  low half of the swap slot; the high half is slot_hi[page].
 *                The slot (2^32 slots of 4 KiB = 16 TiB of swap per engine)
 *                is valid in SWAPPED, SWAPPING_OUT and SWAPPING_IN, and with CACHED.
 *
 * The slot is split because only the thread that owns a page's transit (or
 * holds region->lock) sets it: it stores slot_hi first, then publishes the
 * low half with the state in one release CAS of the word; a reader loads the
 * word (acquire) in a state where the slot is valid and then slot_hi, which
 * cannot change until the state does. pst_slot()/pst_with_slot() hide this.
 *
 * States. RESIDENT: the kernel owns the page as usual (present, or a hole
 * that faults to the handler, which answers with the zero page). ZERO: the
 * engine dropped it and installed the shared zero page; the guest may have
 * written it since (a write is a silent kernel COW), so ZERO means "was
 * zero", and the scanner looks at ZERO pages again. SWAPPED: content lives
 * in a swap slot: swapout.c put it there, and a fault on it is served by
 * swap_fault(), which reads the slot (with readahead) and installs the
 * page. SHARING/SWAPPING_*: in transit; a fault on such a page waits until
 * the transit ends.
 *
 * Pages the kernel holds pinned. The kernel writes into guest RAM through
 * a pin (O_DIRECT and io_uring reads, process_vm_writev, vhost) without a
 * fault, so no state here stops it. A page may leave the guest (ZERO,
 * SWAPPED) only by a means that refuses a pinned page — UFFDIO_MOVE, which
 * fails with EBUSY — and with its content checked after it left; a page
 * refused stays RESIDENT. MADV_DONTNEED and a punched hole do not refuse:
 * used only on regions the VMM added with OVC_REGION_UNPINNED (shared
 * memory, or anonymous memory on an engine without MOVE); without it such
 * a region keeps its pages (may_drop false: found and counted, never
 * dropped, shared or swapped out). docs/engine.md, "Pages the kernel
 * holds pinned".
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

#include "common/util.h"

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

#define PST_STATE_MASK UINT32_C(0x7)
#define PST_WAITERS (UINT32_C(1) << 3)
#define PST_DISCARDED (UINT32_C(1) << 4)
#define PST_DISCARD_PENDING (UINT32_C(1) << 5)
#define PST_CACHED (UINT32_C(1) << 6)
#define PST_OWN_DROP (UINT32_C(1) << 7)
#define PST_AGE_SHIFT 8
#define PST_AGE_MASK (UINT32_C(0xff) << PST_AGE_SHIFT)
#define PST_SLOT_SHIFT 16
#define PST_SLOT_LO_MASK (UINT32_C(0xffff) << PST_SLOT_SHIFT)

/* A state word as loaded; pst_t is the table's atomic cell. */
typedef uint32_t pst_word;
typedef _Atomic pst_word pst_t;

static inline enum pst_state pst_state(pst_word w)
{
	return (enum pst_state)(w & PST_STATE_MASK);
}

static inline bool pst_in_transit(pst_word w)
{
	return pst_state(w) >= PST_SHARING;
}

static inline pst_word pst_with_state(pst_word w, enum pst_state s)
{
	return (w & ~PST_STATE_MASK) | (pst_word)s;
}

/* The word of a page that comes back to the guest from swap or from
 * swap-out staging (swapin.c, swapout.c): RESIDENT with no slot, keeping
 * the other fields but WAITERS/DISCARDED. Never for a CACHED word: its
 * slot would leak (cache_drop first). DISCARD_PENDING stays: a discarded
 * SWAPPED page is a hole until a fault is served on it. */
static inline pst_word resident_word(pst_word w)
{
	return pst_with_state(w, PST_RESIDENT) & ~(PST_SLOT_LO_MASK | PST_WAITERS | PST_DISCARDED | PST_CACHED);
}

static inline unsigned pst_age(pst_word w)
{
	return (unsigned)((w & PST_AGE_MASK) >> PST_AGE_SHIFT);
}

static inline pst_word pst_with_age(pst_word w, unsigned age)
{
	return (w & ~PST_AGE_MASK) | ((pst_word)MIN(age, 255u) << PST_AGE_SHIFT);
}

/* Atomically replace the state bits of *p: from @from to @to, keeping the
 * other fields (OWN_DROP too), clearing WAITERS, DISCARDED and
 * DISCARD_PENDING except the ones in @keep. Returns false (and leaves *p)
 * when the state was not @from. *old receives the word before the change. */
static inline bool pst_transition_keep(pst_t *p, enum pst_state from, enum pst_state to, pst_word keep,
				       pst_word *old)
{
	pst_word w = atomic_load_explicit(p, memory_order_acquire);
	for (;;) {
		if (pst_state(w) != from)
			break;
		pst_word n = pst_with_state(w, to) & ~((PST_WAITERS | PST_DISCARDED | PST_DISCARD_PENDING) & ~keep);
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

/* pst_transition_keep() keeping none of the three. */
static inline bool pst_transition(pst_t *p, enum pst_state from, enum pst_state to, pst_word *old)
{
	return pst_transition_keep(p, from, to, 0, old);
}

/* Set @bits in *p if its state is in transit; returns the state seen. */
static inline enum pst_state pst_mark_if_transit(pst_t *p, pst_word bits)
{
	pst_word w = atomic_load_explicit(p, memory_order_acquire);
	for (;;) {
		if (!pst_in_transit(w))
			return pst_state(w);
		if (atomic_compare_exchange_weak_explicit(p, &w, w | bits, memory_order_acq_rel,
							  memory_order_acquire))
			return pst_state(w);
	}
}

/* Replace the age field (scanner only). */
static inline void pst_set_age(pst_t *p, unsigned age)
{
	pst_word w = atomic_load_explicit(p, memory_order_relaxed);
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

struct region {
	uint8_t *host;             /* page aligned */
	uint64_t len_bytes;
	uint64_t guest_phys;
	uint64_t npages;
	unsigned flags;            /* OVC_REGION_* */
	bool shmem;                /* MAP_SHARED memfd/shmem: write-protect path */
	bool can_move;             /* UFFDIO_MOVE usable on this region */
	bool may_drop;             /* pages may leave the guest: anonymous with
				    * UFFDIO_MOVE (it refuses pinned pages), or
				    * OVC_REGION_UNPINNED */

	pst_t *pst;                /* npages words, mmap'd */
	_Atomic uint16_t *slot_hi; /* npages high slot halves, same mapping */
	_Atomic uint8_t *hll;      /* 1 << hll_bits HyperLogLog registers, same mapping */
	uint64_t pst_map_bytes;
	unsigned hll_bits;         /* 0: regions under 16 pages keep no estimate */

	pthread_mutex_t lock;      /* see the top of this file */
	struct track *track;       /* swap's write tracker (swap.c); NULL: none */

	/* Scanner only (one pass at a time, under engine->pass_lock). */
	uint64_t pass_nonzero;
	struct region_content cur; /* pass in progress */
	struct region_content last;/* last complete pass; read under pass_lock */
};

/* Allocate the table (all RESIDENT) and init the lock. -ENOMEM. */
int region_init(struct region *r, void *host, uint64_t len, uint64_t gpa, unsigned flags);
void region_fini(struct region *r);
/* Bytes of metadata this region costs: its mapping (words, slot halves,
 * registers, rounded up to pages) plus the struct. */
uint64_t region_meta_bytes(const struct region *r);

static inline bool region_contains(const struct region *r, uint64_t addr)
{
	return addr >= (uint64_t)(uintptr_t)r->host &&
	       addr - (uint64_t)(uintptr_t)r->host < r->len_bytes;
}

static inline uint64_t region_page_of(const struct region *r, uint64_t addr)
{
	return (addr - (uint64_t)(uintptr_t)r->host) >> PAGE_SHIFT;
}

/* The swap slot of @page whose word is @w (valid in SWAPPED, SWAPPING_OUT
 * and SWAPPING_IN; load @w with acquire order first). */
static inline uint32_t pst_slot(const struct region *r, uint64_t page, pst_word w)
{
	return (uint32_t)atomic_load_explicit(&r->slot_hi[page], memory_order_relaxed) << 16 |
	       w >> PST_SLOT_SHIFT;
}

/* Store the high half of @slot for @page now and return @w carrying the low
 * half: the caller owns the page's transit (or holds region->lock) and
 * publishes the result with a release CAS of the word. */
static inline pst_word pst_with_slot(struct region *r, uint64_t page, pst_word w, uint32_t slot)
{
	atomic_store_explicit(&r->slot_hi[page], (uint16_t)(slot >> 16), memory_order_relaxed);
	return (w & ~PST_SLOT_LO_MASK) | (pst_word)(slot & 0xffff) << PST_SLOT_SHIFT;
}

static inline uint8_t *region_addr(const struct region *r, uint64_t page)
{
	return r->host + (page << PAGE_SHIFT);
}

#endif
