/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Zero check, page hash, HyperLogLog. See scan.h. Any thread, no locks. */
#include <math.h>
#include <string.h>

#define XXH_INLINE_ALL
#if defined(__x86_64__)
/* Also build xxhash's AVX2 kernels (as its own xxh_x86dispatch.c does),
 * behind a target attribute: see scan_page_hash(). */
#include <immintrin.h>
#define XXH_DISPATCH_AVX2 1
#define XXH_TARGET_AVX2 __attribute__((target("avx2")))
#endif
#include <xxhash.h>

#include "engine/scan.h"

/* Several 64-byte lines per step OR-ed together, one branch per 256 bytes:
 * the loop is memory bound, so the branch costs nothing while a zero page
 * still gets a full compare. An AVX2 build of the loop is picked per call
 * with __builtin_cpu_supports() (one load and test of libgcc's CPU model):
 * target_clones would do it once through an ifunc resolver, but that
 * resolver runs before the sanitizers' runtimes start and crashes TSan
 * builds. The first lines of the next page are prefetched: the hardware
 * prefetcher stops at page boundaries. */
typedef uint64_t v4u64 __attribute__((vector_size(32), aligned(32)));

#define ZERO_LOOP(p)                                                                   \
	do {                                                                           \
		const v4u64 *v = (p);                                                  \
		__builtin_prefetch((const char *)(p) + PAGE_SIZE, 0, 0);               \
		__builtin_prefetch((const char *)(p) + PAGE_SIZE + 64, 0, 0);          \
		for (size_t i = 0; i < PAGE_SIZE / sizeof(v4u64); i += 8) {            \
			v4u64 acc = v[i] | v[i + 1] | v[i + 2] | v[i + 3] | v[i + 4] | \
				    v[i + 5] | v[i + 6] | v[i + 7];                    \
			if (acc[0] | acc[1] | acc[2] | acc[3])                         \
				return false;                                          \
		}                                                                      \
		return true;                                                           \
	} while (0)

#if defined(__x86_64__)
__attribute__((target("avx2"))) static bool page_is_zero_avx2(const void *p)
{
	ZERO_LOOP(p);
}
#endif

static bool page_is_zero_generic(const void *p)
{
	ZERO_LOOP(p);
}

bool scan_page_is_zero(const void *p)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2"))
		return page_is_zero_avx2(p);
#endif
	return page_is_zero_generic(p);
}

/* xxhash picks its vector code at build time (SSE2 for a generic x86-64
 * build); the AVX2 kernels hash a page in about half the time, and the
 * hash of every non-zero page was a fifth of a pass's CPU (perf, ovc-bench
 * zero, alternating layout). Same result bit for bit (test-scan). The
 * internal entry point is 0.8.1's; other versions take the generic path. */
#if defined(__x86_64__) && XXH_VERSION_NUMBER == 801
__attribute__((target("avx2"))) static uint64_t page_hash_avx2(const void *p)
{
	return XXH3_hashLong_64b_internal(p, PAGE_SIZE, XXH3_kSecret, sizeof(XXH3_kSecret),
					  XXH3_accumulate_512_avx2, XXH3_scrambleAcc_avx2);
}
#define HAVE_PAGE_HASH_AVX2 1
#endif

uint64_t scan_page_hash(const void *p)
{
	__builtin_prefetch((const char *)p + PAGE_SIZE, 0, 0);
#ifdef HAVE_PAGE_HASH_AVX2
	if (__builtin_cpu_supports("avx2"))
		return page_hash_avx2(p);
#endif
	return XXH3_64bits(p, PAGE_SIZE);
}

void scan_hll_reset(struct region *r)
{
	if (!r->hll_bits)
		return;
	for (uint64_t i = 0; i < (UINT64_C(1) << r->hll_bits); i++)
		atomic_store_explicit(&r->hll[i], 0, memory_order_relaxed);
}

void scan_hll_add(struct region *r, uint64_t hash)
{
	if (!r->hll_bits)
		return;
	uint64_t idx = hash >> (64 - r->hll_bits);
	uint64_t rest = hash << r->hll_bits;
	unsigned rank = rest ? (unsigned)__builtin_clzll(rest) + 1 : 64 - r->hll_bits + 1;
	if (rank > atomic_load_explicit(&r->hll[idx], memory_order_relaxed))
		atomic_store_explicit(&r->hll[idx], (uint8_t)rank, memory_order_relaxed);
}

/* The standard estimator with the small-range (linear counting) correction. */
uint64_t scan_hll_estimate(const struct region *r)
{
	if (!r->hll_bits)
		return 0;
	uint64_t m = UINT64_C(1) << r->hll_bits;
	double sum = 0;
	uint64_t zeros = 0;
	for (uint64_t i = 0; i < m; i++) {
		unsigned reg = atomic_load_explicit(&r->hll[i], memory_order_relaxed);
		sum += ldexp(1.0, -(int)reg);
		zeros += reg == 0;
	}
	double alpha = m == 16 ? 0.673 : m == 32 ? 0.697 : m == 64 ? 0.709 : 0.7213 / (1.0 + 1.079 / (double)m);
	double est = alpha * (double)m * (double)m / sum;
	if (est <= 2.5 * (double)m && zeros)
		est = (double)m * log((double)m / (double)zeros);
	return (uint64_t)(est + 0.5);
}
