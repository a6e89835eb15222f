/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: fault injection over the syscall table (tests/helpers/fault-inject.h).
 *
 * Reclaim: one pass is run counting every syscall the engine makes through
 * its ops table (the pass and the handler), then the pass is run again
 * once per call number, failing that call. After each, with injection off:
 * every page still holds what it held, every page can be read and written
 * (nothing stays write-protected or stuck in staging), and a clean pass
 * reclaims every zero page (the engine recovered). Setup: engine creation
 * and region registration fail at every call in turn; nothing is leaked
 * (ASan build) or left registered. Swap-out on the sync write-protect
 * path: one swap tick fails at every call in turn. Real userfaultfd; only
 * the one failing call is fake.
 */
#include <stdio.h>

#include "engine-test.h"
#include "fault-inject.h"

#define NPAGES 640u

static bool layout_zero(unsigned i)
{
	if (i < 128)
		return true;           /* one long run */
	if (i < 384)
		return i % 2 == 0;     /* scattered */
	return i % 5 == 0;
}

static unsigned n_zero(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < NPAGES; i++)
		n += layout_zero(i);
	return n;
}

static void fill(uint8_t *p)
{
	for (unsigned i = 0; i < NPAGES; i++) {
		memset(p + (size_t)i * 4096, 0, 4096);
		if (!layout_zero(i))
			memcpy(p + (size_t)i * 4096 + (i * 13) % 4000, &i, sizeof(i));
	}
}

static void check(const uint8_t *p, unsigned n, const char *when)
{
	static uint8_t want[4096];
	for (unsigned i = 0; i < NPAGES; i++) {
		memset(want, 0, sizeof(want));
		if (!layout_zero(i))
			memcpy(want + (i * 13) % 4000, &i, sizeof(i));
		if (memcmp(p + (size_t)i * 4096, want, 4096) != 0)
			fail_msg("failing call %u: page %u wrong %s", n, i, when);
	}
}

/* Count calls from here and fail call @n of those (0: none). */
static void count_from_here(struct fault_inject *fi, long n)
{
	atomic_store(&fi->calls, 0);
	for (int op = 0; op < _OVC_SYS_OP_MAX; op++)
		atomic_store(&fi->per_op[op], 0);
	fi->fail_at = n;
}

struct fmode {
	const char *name;
	unsigned flags;
	enum backing backing;
};

static void inject_reclaim(const struct fmode *m)
{
	need_uffd();
	if (m->backing == BACK_ANON && !(m->flags & OVC_ENGINE_NO_MOVE) && !kernel_has_move())
		skip_because("kernel without UFFDIO_MOVE (Linux < 6.8)");
	struct guest_ram g;
	guest_ram_alloc(&g, (size_t)NPAGES * 4096, m->backing);
	long count = -1;

	for (long n = 0; n <= count || count < 0; n++) {
		struct fault_inject fi;
		fault_inject_init(&fi, 0, EIO, 0);
		fill(g.p);
		ovc_engine *e = NULL;
		struct ovc_engine_opts o = { .size = sizeof(o), .flags = m->flags | OVC_ENGINE_NO_AUTOSCAN };
		assert_ovc_ok(engine_test_new_with_sys(&o, &fi.sys, &e));
		/* memfd and the path without MOVE drop zero pages only when
		 * asked (no pinned writers here). */
		assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, mode_cpu_only_flags(m->flags, m->backing)));
		struct loop l;
		bool loop = m->flags & OVC_ENGINE_NO_THREADS;
		if (loop)
			loop_start(&l, e, false);

		/* Count from here: the reclaim path only. */
		count_from_here(&fi, n);
		if (getenv("OVC_TEST_VERBOSE"))
			fprintf(stderr, "%s: failing call %ld\n", m->name, n);
		int64_t r = ovc_engine_scan_sync(e, 0);
		fi.fail_at = 0;
		if (n == 0) {
			count = atomic_load(&fi.calls);
			print_message("%s: a clean pass makes %ld syscalls (ioctl %ld, madvise %ld, "
				      "process_madvise %ld, mmap %ld, read %ld, pread %ld)\n",
				      m->name, count, (long)fi.per_op[OVC_SYS_IOCTL],
				      (long)fi.per_op[OVC_SYS_MADVISE], (long)fi.per_op[OVC_SYS_PROCESS_MADVISE],
				      (long)fi.per_op[OVC_SYS_MMAP], (long)fi.per_op[OVC_SYS_READ],
				      (long)fi.per_op[OVC_SYS_PREAD]);
			assert_int_equal(r, n_zero());
			assert_true(count > 0);
		} else {
			assert_true(r >= 0 || r == -EIO);
		}
		check(g.p, (unsigned)n, "after the failing pass");
		/* Recovered: a clean pass gets every zero page. */
		int64_t r2 = ovc_engine_scan_sync(e, 0);
		assert_true(r2 >= 0);
		if (engine_stat_zero_now(e) != n_zero())
			fail_msg("failing call %ld: %llu zero pages after recovery, expected %u (pass %lld, %lld)",
				 n, (unsigned long long)engine_stat_zero_now(e), n_zero(), (long long)r,
				 (long long)r2);
		check(g.p, (unsigned)n, "after the clean pass");
		/* Nothing is left protected or half-moved: write every page. */
		for (unsigned i = 0; i < NPAGES; i++)
			g.p[(size_t)i * 4096 + 4095] ^= 0xff;
		for (unsigned i = 0; i < NPAGES; i++)
			g.p[(size_t)i * 4096 + 4095] ^= 0xff;
		if (loop)
			loop_stop(&l);
		ovc_engine_free(e);
		check(g.p, (unsigned)n, "after the engine is gone");
	}
	print_message("%s: failed each of %ld calls in turn; every page right each time\n", m->name, count);
	guest_ram_free(&g);
}

static const struct fmode fmodes[] = {
	{ "threads/anon/move", OVC_ENGINE_MOVE, BACK_ANON },
	{ "threads/anon/wp", OVC_ENGINE_NO_MOVE, BACK_ANON },
	{ "threads/memfd/wp", 0, BACK_MEMFD },
	{ "loop/anon/move", OVC_ENGINE_NO_THREADS, BACK_ANON },
};

static void test_reclaim_move(void **s) { inject_reclaim(&fmodes[0]); }
static void test_reclaim_wp(void **s) { inject_reclaim(&fmodes[1]); }
static void test_reclaim_memfd(void **s) { inject_reclaim(&fmodes[2]); }
static void test_reclaim_loop(void **s) { inject_reclaim(&fmodes[3]); }

/* Creation and registration: fail every call in turn. */
static void test_setup(void **state)
{
	need_uffd();
	static const unsigned flags[] = { 0, OVC_ENGINE_NO_THREADS, OVC_ENGINE_NO_MOVE };
	for (size_t f = 0; f < ARRAY_SIZE(flags); f++) {
		struct guest_ram g;
		guest_ram_alloc(&g, 64 * 4096, BACK_ANON);
		long count = -1;
		for (long n = 0; n <= count || count < 0; n++) {
			struct fault_inject fi;
			fault_inject_init(&fi, n, ENOMEM, 0);
			ovc_engine *e = NULL;
			struct ovc_engine_opts o = { .size = sizeof(o), .flags = flags[f] };
			int r = engine_test_new_with_sys(&o, &fi.sys, &e);
			if (r == 0)
				r = ovc_region_add(e, g.p, g.len, 0, 0);
			if (n == 0) {
				assert_ovc_ok(r);
				count = atomic_load(&fi.calls);
			} else if (r < 0) {
				assert_true(r == -ENOMEM || r == -EFAULT);
			}
			ovc_engine_free(e);
			/* Nothing half-registered: a clean engine takes it. */
			ovc_engine *c = NULL;
			assert_ovc_ok(ovc_engine_new(&o, &c));
			assert_ovc_ok(ovc_region_add(c, g.p, g.len, 0, 0));
			ovc_engine_free(c);
		}
		print_message("setup with flags 0x%x: failed each of %ld calls in turn\n", flags[f], count);
		guest_ram_free(&g);
	}
}

/* Swap-out on the sync write-protect path (OVC_ENGINE_SYNC_WP): one swap
 * tick (a tracking scan: UFFDIO_WRITEPROTECT, pagemap preads; then the
 * batch: UFFDIO_WRITEPROTECT, io_uring, process_madvise, UFFDIO_ZEROPAGE),
 * failing each call in turn. After each: every page right (reading swaps
 * it back), every page writable, counters consistent, and a clean tick
 * swaps out again; nothing leaks (ASan build). */
static void test_swapout_syncwp(void **state)
{
	need_uffd();
	struct guest_ram g;
	guest_ram_alloc(&g, (size_t)NPAGES * 4096, BACK_ANON);
	long count = -1;

	for (long n = 0; n <= count || count < 0; n++) {
		struct fault_inject fi;
		fault_inject_init(&fi, 0, EIO, 0);
		fill(g.p);
		ovc_engine *e = NULL;
		struct ovc_engine_opts o = { .size = sizeof(o),
					     .flags = OVC_ENGINE_SYNC_WP | OVC_ENGINE_NO_AUTOSCAN,
					     .swap_path = "/var/tmp", .swap_size_bytes = (uint64_t)NPAGES * 4096,
					     .scan_interval_usec = 1000000, .cold_age_usec = 1000000 };
		int er = engine_test_new_with_sys(&o, &fi.sys, &e);
		if (er == -EOPNOTSUPP)
			skip_because("no swap here (O_DIRECT in /var/tmp?)");
		assert_ovc_ok(er);
		assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
		engine_test_set_target(e, g.len);

		count_from_here(&fi, n);
		int64_t r = engine_test_swap_tick(e);
		fi.fail_at = 0;
		struct ovc_engine_stats st = { .size = sizeof(st) };
		assert_ovc_ok(ovc_engine_stats(e, &st));
		if (n == 0) {
			count = atomic_load(&fi.calls);
			print_message("sync wp swap-out: a clean tick makes %ld syscalls (ioctl %ld, "
				      "process_madvise %ld, madvise %ld, pread %ld, read %ld, uring %ld)\n",
				      count, (long)fi.per_op[OVC_SYS_IOCTL], (long)fi.per_op[OVC_SYS_PROCESS_MADVISE],
				      (long)fi.per_op[OVC_SYS_MADVISE], (long)fi.per_op[OVC_SYS_PREAD],
				      (long)fi.per_op[OVC_SYS_READ], (long)fi.per_op[OVC_SYS_URING_SUBMIT]);
			assert_int_equal(st.swapped_pages_now, NPAGES - n_zero());
			assert_int_equal(st.zero_pages_now, n_zero());
		} else {
			assert_true(r >= 0 || r == -EIO);
		}
		assert_true(st.swapped_pages_now + st.zero_pages_now <= NPAGES);
		check(g.p, (unsigned)n, "after the failing tick");
		/* Nothing is left protected for good or in transit. */
		for (unsigned i = 0; i < NPAGES; i++)
			g.p[(size_t)i * 4096 + 4095] ^= 0xff;
		for (unsigned i = 0; i < NPAGES; i++)
			g.p[(size_t)i * 4096 + 4095] ^= 0xff;
		/* Recovered: clean ticks swap everything out again (after the
		 * refault hold of the pages just read back: 3 intervals). */
		for (int k = 0; k < 8 && st.swapped_pages_now != NPAGES - n_zero(); k++) {
			assert_true(engine_test_swap_tick(e) >= 0);
			assert_ovc_ok(ovc_engine_stats(e, &st));
		}
		if (st.swapped_pages_now != NPAGES - n_zero())
			fail_msg("failing call %ld: %lld swapped after recovery, expected %u", n,
				 (long long)st.swapped_pages_now, NPAGES - n_zero());
		check(g.p, (unsigned)n, "after the clean ticks");
		ovc_engine_free(e);
		check(g.p, (unsigned)n, "after the engine is gone");
	}
	print_message("sync wp swap-out: failed each of %ld calls in turn; every page right each time\n", count);
	guest_ram_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_setup),
		cmocka_unit_test(test_reclaim_move),
		cmocka_unit_test(test_reclaim_wp),
		cmocka_unit_test(test_reclaim_memfd),
		cmocka_unit_test(test_reclaim_loop),
		cmocka_unit_test(test_swapout_syncwp),
	};
	if (getenv("OVC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("OVC_TEST_FILTER"));
	return cmocka_run_group_tests_name("fault", tests, NULL, NULL);
}
