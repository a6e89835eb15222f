/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: zero check, XXH3 known answers, HyperLogLog estimate, run coalescing. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "ovc-test.h"
#include "engine/scan.h"

static void test_zero_check(void **state)
{
	uint8_t *p = aligned_alloc(4096, 4096);
	memset(p, 0, 4096);
	assert_true(scan_page_is_zero(p));
	/* Every single byte position counts: the check is a full compare. */
	for (int i = 0; i < 4096; i++) {
		p[i] = 0x80;
		assert_false(scan_page_is_zero(p));
		p[i] = 0;
	}
	assert_true(scan_page_is_zero(p));
	free(p);
}

static void test_hash_known_answer(void **state)
{
	uint8_t *p = aligned_alloc(4096, 4096);
	memset(p, 0, 4096);
	/* XXH3_64bits of 4096 zero bytes (xxhash 0.8.1, Debian 12's). */
	assert_true(scan_page_hash(p) == UINT64_C(0x93d76fe148c689ba));
	assert_true(SCAN_ZERO_PAGE_HASH == UINT64_C(0x93d76fe148c689ba));
	for (int i = 0; i < 4096; i++)
		p[i] = (uint8_t)(i * 7 + 3);
	/* The inline build equals the library's exported one. */
	assert_true(scan_page_hash(p) == XXH3_64bits(p, 4096));
	p[4095] ^= 1;
	assert_true(scan_page_hash(p) != XXH3_64bits(p, 4095));
	free(p);
}

/* The estimate over N distinct hashes is within 5% (m = 4096: 1.6% std). */
static void test_hll(void **state)
{
	size_t pages = 1 << 16;
	void *mem = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(mem != MAP_FAILED);
	struct region r;
	assert_int_equal(region_init(&r, mem, pages * 4096, 0, 0), 0);
	assert_int_equal(r.hll_bits, 12);
	static const uint64_t ns[] = { 10, 1000, 20000, 200000 };
	for (size_t k = 0; k < 4; k++) {
		scan_hll_reset(&r);
		for (uint64_t i = 0; i < ns[k]; i++) {
			uint64_t v = i;
			scan_hll_add(&r, XXH3_64bits(&v, sizeof(v)));
			scan_hll_add(&r, XXH3_64bits(&v, sizeof(v))); /* duplicates do not count */
		}
		uint64_t est = scan_hll_estimate(&r);
		print_message("distinct %llu estimated %llu\n", (unsigned long long)ns[k],
			      (unsigned long long)est);
		assert_true(est >= ns[k] * 95 / 100 && est <= ns[k] * 105 / 100 + 1);
	}
	/* The registers live beside the table: state, age, slot untouched. */
	r.pst[5] = pst_with_slot(&r, 5, pst_with_age(PST_ZERO, 9), 1234);
	scan_hll_add(&r, UINT64_C(5) << 52); /* register 5, rank 64-12+1 */
	assert_int_equal(atomic_load(&r.hll[5]), 64 - 12 + 1);
	assert_int_equal(pst_state(r.pst[5]), PST_ZERO);
	assert_int_equal(pst_age(r.pst[5]), 9);
	assert_int_equal(pst_slot(&r, 5, r.pst[5]), 1234);
	region_fini(&r);
	munmap(mem, pages * 4096);
}

static void test_runs(void **state)
{
	struct page_run store[4];
	struct run_list l = { .runs = store, .cap = 4 };
	assert_true(runs_add(&l, 10));
	assert_true(runs_add(&l, 11));
	assert_true(runs_add(&l, 12));
	assert_true(runs_add(&l, 20));
	assert_true(runs_add(&l, 22));
	assert_true(runs_add(&l, 23));
	assert_true(runs_add(&l, 30));
	assert_int_equal(l.n, 4);
	assert_int_equal(l.pages, 7);
	assert_int_equal(store[0].start, 10);
	assert_int_equal(store[0].len, 3);
	assert_int_equal(store[2].start, 22);
	assert_int_equal(store[2].len, 2);
	assert_true(runs_add(&l, 31));  /* extends the last run: fits */
	assert_false(runs_add(&l, 40)); /* would start a fifth: full */
	assert_int_equal(l.pages, 8);
	runs_clear(&l);
	assert_int_equal(l.n, 0);
	assert_true(runs_add(&l, 40));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_check),
		cmocka_unit_test(test_hash_known_answer),
		cmocka_unit_test(test_hll),
		cmocka_unit_test(test_runs),
	};
	return cmocka_run_group_tests_name("scan", tests, NULL, NULL);
}
