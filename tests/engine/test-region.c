/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: the page-state table and region registration, good and bad input. */
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "engine/compat.h"
#include "engine-test.h"
#include "engine/region.h"

static void test_pst_layout(void **state)
{
	struct region r;
	static char mem[4096 * 100] __attribute__((aligned(4096)));
	assert_int_equal(region_init(&r, mem, sizeof(mem), 0, 0), 0);
	pst_word w = 0;
	w = pst_with_state(w, PST_SWAPPED);
	w = pst_with_age(w, 300); /* saturates */
	w = pst_with_slot(&r, 7, w, UINT32_MAX);
	w |= PST_WAITERS;
	assert_int_equal(pst_state(w), PST_SWAPPED);
	assert_int_equal(pst_age(w), 255);
	assert_true(pst_slot(&r, 7, w) == UINT32_MAX);
	assert_true(w & PST_WAITERS);
	assert_false(w & PST_DISCARDED);
	/* Fields do not overlap. */
	assert_int_equal(PST_STATE_MASK & PST_AGE_MASK, 0);
	assert_int_equal(PST_AGE_MASK & PST_SLOT_LO_MASK, 0);
	assert_int_equal((PST_WAITERS | PST_DISCARDED | PST_DISCARD_PENDING) &
			 (PST_STATE_MASK | PST_AGE_MASK | PST_SLOT_LO_MASK), 0);
	/* Both halves change; a neighbour's half does not. */
	pst_word w8 = pst_with_slot(&r, 8, PST_SWAPPED, 0x12345);
	w = pst_with_slot(&r, 7, w, 5);
	assert_true(pst_slot(&r, 7, w) == 5);
	assert_true(pst_slot(&r, 8, w8) == 0x12345);
	assert_int_equal(pst_age(w), 255);
	assert_int_equal(sizeof(pst_t), 4);
	assert_int_equal(sizeof(*r.slot_hi), 2);
	region_fini(&r);
}

static void test_pst_transition(void **state)
{
	pst_t p = pst_with_age(PST_RESIDENT, 7);
	pst_word old;
	assert_true(pst_transition(&p, PST_RESIDENT, PST_SHARING, &old));
	assert_int_equal(pst_state(p), PST_SHARING);
	assert_int_equal(pst_age(p), 7);
	assert_false(pst_transition(&p, PST_RESIDENT, PST_ZERO, &old));
	assert_int_equal(pst_state(old), PST_SHARING);
	assert_int_equal(pst_mark_if_transit(&p, PST_WAITERS), PST_SHARING);
	assert_true(p & PST_WAITERS);
	assert_true(pst_transition(&p, PST_SHARING, PST_ZERO, &old));
	assert_true(old & PST_WAITERS);          /* the ender sees the waiter */
	assert_false(p & PST_WAITERS);           /* and the flag is gone */
	assert_int_equal(pst_mark_if_transit(&p, PST_WAITERS), PST_ZERO);
	assert_false(p & PST_WAITERS);           /* not in transit: untouched */
}

/* A zero-path MOVE batch keeps DISCARD_PENDING through its mark and a page
 * it did not move keeps it at the end; everything else clears the flags. */
static void test_pst_transition_keep(void **state)
{
	pst_t p = pst_with_age(PST_RESIDENT, 3) | PST_DISCARD_PENDING;
	pst_word old;
	assert_true(pst_transition_keep(&p, PST_RESIDENT, PST_SHARING, PST_DISCARD_PENDING, &old));
	assert_int_equal(pst_state(p), PST_SHARING);
	assert_true(p & PST_DISCARD_PENDING);
	assert_int_equal(pst_age(p), 3);
	assert_int_equal(pst_mark_if_transit(&p, PST_WAITERS | PST_DISCARDED), PST_SHARING);
	assert_true(pst_transition_keep(&p, PST_SHARING, PST_RESIDENT, PST_DISCARD_PENDING, &old));
	assert_true(old & PST_WAITERS);
	assert_int_equal(p & (PST_WAITERS | PST_DISCARDED | PST_DISCARD_PENDING), PST_DISCARD_PENDING);
	assert_false(pst_transition_keep(&p, PST_ZERO, PST_RESIDENT, PST_DISCARD_PENDING, &old));
	assert_true(pst_transition(&p, PST_RESIDENT, PST_ZERO, NULL));
	assert_false(p & PST_DISCARD_PENDING);   /* keep 0: cleared */
	assert_int_equal(pst_age(p), 3);
}

static void test_region_table(void **state)
{
	struct region r;
	static char mem[4096 * 100] __attribute__((aligned(4096)));
	assert_int_equal(region_init(&r, mem, sizeof(mem), 1 << 20, 0), 0);
	assert_int_equal(r.npages, 100);
	assert_int_equal(r.hll_bits, 6); /* 64 registers <= 100 pages */
	for (uint64_t i = 0; i < r.npages; i++)
		assert_int_equal(r.pst[i], 0);
	assert_true(region_contains(&r, (uint64_t)(uintptr_t)mem + 4096 * 99));
	assert_false(region_contains(&r, (uint64_t)(uintptr_t)mem + 4096 * 100));
	assert_int_equal(region_page_of(&r, (uint64_t)(uintptr_t)mem + 4096 * 3 + 5), 3);
	/* 6 bytes per page and 64 registers, rounded up to a page, plus one struct. */
	assert_int_equal(region_meta_bytes(&r), 4096 + sizeof(r));
	region_fini(&r);
}

/* The metadata budget: at most 8 bytes per page, all told, on the
 * benchmark's 1 GiB region (address space only; nothing is touched). */
static void test_region_meta_1gib(void **state)
{
	const uint64_t len = UINT64_C(1) << 30;
	void *mem = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(mem != MAP_FAILED);
	struct region r;
	assert_int_equal(region_init(&r, mem, len, 0, 0), 0);
	assert_int_equal(r.hll_bits, 12);
	uint64_t meta = region_meta_bytes(&r);
	print_message("1 GiB region: %llu bytes of metadata, %.4f per page\n",
		      (unsigned long long)meta, (double)meta / (double)r.npages);
	assert_true(meta <= r.npages * 8);
	assert_int_equal(meta, r.npages * 6 + 4096 + sizeof(r));
	region_fini(&r);
	munmap(mem, len);
}

static void test_engine_opts(void **state)
{
	ovc_engine *e = (ovc_engine *)0x1;
	need_uffd();
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = 1u << 20 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	assert_ptr_equal(e, (ovc_engine *)0x1); /* untouched on failure */
	o = (struct ovc_engine_opts){ .size = 4 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	struct {
		struct ovc_engine_opts o;
		uint64_t future;
	} big = { .o = { .size = sizeof(big) }, .future = 1 };
	assert_ovc(ovc_engine_new(&big.o, &e), -E2BIG);
	big.future = 0;
	e = NULL;
	assert_ovc_ok(ovc_engine_new(&big.o, &e));
	e = ovc_engine_free(e);
	o = (struct ovc_engine_opts){ .size = sizeof(o), .flags = OVC_ENGINE_MOVE | OVC_ENGINE_NO_MOVE };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	o = (struct ovc_engine_opts){ .size = sizeof(o), .scan_cpu_permille = 1001 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	/* A swap size without a directory (and the reverse) is a bad option;
	 * tests/engine/test-swap.c covers working swap options. */
	o = (struct ovc_engine_opts){ .size = sizeof(o), .swap_size_bytes = 1 << 20 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	assert_ovc(ovc_engine_new(NULL, NULL), -EINVAL);
	assert_ovc_ok(ovc_engine_new(NULL, &e));
	assert_ovc(ovc_engine_fd(e, 0), -EINVAL);           /* has threads */
	assert_ovc(ovc_engine_process(e, 0), -EINVAL);
	assert_ovc(ovc_engine_reclaim(e, 0, 1u << 9), -EINVAL);
	assert_ovc(ovc_engine_scan_sync(e, 1), -EINVAL);
	struct ovc_engine_stats st = { .size = 8 };
	assert_ovc(ovc_engine_stats(e, &st), -EINVAL);
	assert_null(ovc_engine_free(e));
	assert_null(ovc_engine_free(NULL));
}

static void test_region_bad_input(void **state)
{
	need_uffd();
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_NO_AUTOSCAN };
	ovc_engine *e = NULL;
	assert_ovc_ok(ovc_engine_new(&o, &e));
	struct guest_ram g;
	guest_ram_alloc(&g, 64 * 4096, BACK_ANON);

	assert_ovc(ovc_region_add(e, g.p + 1, 4096, 0, 0), -EINVAL);
	assert_ovc(ovc_region_add(e, g.p, 4095, 0, 0), -EINVAL);
	assert_ovc(ovc_region_add(e, g.p, 0, 0, 0), -EINVAL);
	assert_ovc(ovc_region_add(e, g.p, 4096, 17, 0), -EINVAL);
	assert_ovc(ovc_region_add(e, g.p, 4096, 0, 1u << 7), -EINVAL);
	assert_ovc(ovc_region_add(e, g.p, 4096, UINT64_MAX - 4095, 0), -EINVAL);
	assert_ovc(ovc_region_add(NULL, g.p, 4096, 0, 0), -EINVAL);

	/* Good, then overlaps in host and in guest-physical space. */
	assert_ovc_ok(ovc_region_add(e, g.p, 32 * 4096, 1 << 30, 0));
	assert_ovc(ovc_region_add(e, g.p + 16 * 4096, 32 * 4096, 2ull << 30, 0), -EEXIST);
	assert_ovc(ovc_region_add(e, g.p + 32 * 4096, 32 * 4096, (1 << 30) + 4096, 0), -EEXIST);
	assert_ovc_ok(ovc_region_add(e, g.p + 32 * 4096, 32 * 4096, 2ull << 30, 0));
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	assert_int_equal(st.regions, 2);
	assert_int_equal(st.region_bytes, 64 * 4096);
	assert_ovc(ovc_region_remove(e, 3ull << 30, 0), -ENOENT);
	assert_ovc(ovc_region_remove(e, 1 << 30, 1), -EINVAL);
	assert_ovc_ok(ovc_region_remove(e, 1 << 30, 0));
	assert_ovc_ok(ovc_region_remove(e, 2ull << 30, 0));
	assert_ovc(ovc_region_remove(e, 2ull << 30, 0), -ENOENT);

	/* Unmapped: a hole in the middle. */
	munmap(g.p + 8 * 4096, 4096);
	assert_ovc(ovc_region_add(e, g.p, 16 * 4096, 0, 0), -EFAULT);
	/* Read-only. */
	mprotect(g.p + 16 * 4096, 4096, PROT_READ);
	assert_ovc(ovc_region_add(e, g.p + 16 * 4096, 4096, 0, 0), -EFAULT);
	/* File-backed. */
	char path[] = "/tmp/ovc-test-region-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, 4 * 4096), 0);
	void *f = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(f != MAP_FAILED);
	assert_ovc(ovc_region_add(e, f, 4 * 4096, 0, 0), -EFAULT);
	munmap(f, 4 * 4096);
	close(fd);
	/* Nothing half-registered: a second uffd can take the whole range of
	 * the failed attempts. */
	int u = sys_open_uffd(&sys_default, O_CLOEXEC);
	struct uffdio_api api = { .api = UFFD_API };
	assert_int_equal(ioctl(u, UFFDIO_API, &api), 0);
	struct uffdio_register reg = { .range = { (uint64_t)(uintptr_t)g.p, 8 * 4096 },
				       .mode = UFFDIO_REGISTER_MODE_MISSING };
	assert_int_equal(ioctl(u, UFFDIO_REGISTER, &reg), 0);
	/* ... and then ours cannot: another uffd owns it. */
	assert_ovc(ovc_region_add(e, g.p, 8 * 4096, 0, 0), -EBUSY);
	close(u);
	ovc_engine_free(e);
	munmap(g.p, g.len);
}

static void test_region_kinds(void **state)
{
	need_uffd();
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_NO_THREADS };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	struct guest_ram a, m;
	guest_ram_alloc(&a, 16 * 4096, BACK_ANON);
	guest_ram_alloc(&m, 16 * 4096, BACK_MEMFD);
	/* NO_THREADS: shared memory needs the write-protect path, refused. */
	assert_ovc(ovc_region_add(e, m.p, m.len, 0, 0), -EOPNOTSUPP);
	if (kernel_has_move())
		assert_ovc_ok(ovc_region_add(e, a.p, a.len, 0, 0));
	else
		assert_ovc(ovc_region_add(e, a.p, a.len, 0, 0), -EOPNOTSUPP);
	ovc_engine_free(e);
	o.flags = OVC_ENGINE_NO_THREADS | OVC_ENGINE_NO_MOVE;
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_ovc(ovc_region_add(e, a.p, a.len, 0, 0), -EOPNOTSUPP);
	ovc_engine_free(e);
	o.flags = 0;
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_ovc_ok(ovc_region_add(e, m.p, m.len, 0, 0));
	assert_ovc_ok(ovc_region_add(e, a.p, a.len, 1 << 20, 0));
	/* Guest RAM is not inherited by fork. */
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL); /* cmocka catches it otherwise */
		_exit(*(volatile uint8_t *)a.p == 0 ? 1 : 0); /* must fault */
	}
	int status;
	waitpid(pid, &status, 0);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
	ovc_engine_free(e);
	guest_ram_free(&a);
	guest_ram_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pst_layout),
		cmocka_unit_test(test_pst_transition),
		cmocka_unit_test(test_pst_transition_keep),
		cmocka_unit_test(test_region_table),
		cmocka_unit_test(test_region_meta_1gib),
		cmocka_unit_test(test_engine_opts),
		cmocka_unit_test(test_region_bad_input),
		cmocka_unit_test(test_region_kinds),
	};
	return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
