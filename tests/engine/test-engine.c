/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: the ABI rules of engine.c and endpoint.c. The size rule of every
 * options and stats struct (below the first version, exact, larger with a
 * zero tail, larger with a non-zero tail, above one page, NULL), tested on
 * lib/engine/abi.c itself with a made-up struct that has a second version
 * (the case of an older caller, which the 0.1 structs cannot show yet) and
 * then through each public call that takes such a struct; the 0.1 layouts
 * pinned byte by byte; flags and reserved fields that must be 0; the
 * ovc_strerror() texts of the errors. A real engine (real userfaultfd) where
 * a call needs one; skipped without userfaultfd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ovc/endpoint.h>

#include "engine-test.h"
#include "engine/abi.h"

/* A caller's view of an ABI struct grown past what the library knows: the
 * library's struct, then fields of a future version. */
#define GROWN(type)                 \
	struct {                    \
		type s;             \
		uint64_t future[2]; \
	}

/* --- the rule itself, on a struct with two versions --- */

struct demo_v1 {
	uint32_t size;
	uint32_t flags;
	uint64_t a;
};
struct demo_v2 {
	uint32_t size;
	uint32_t flags;
	uint64_t a;
	uint64_t b; /* since v2 */
};
#define DEMO_VER0 sizeof(struct demo_v1)

static void test_rule_copy_in(void **state)
{
	struct demo_v2 lib = { .a = 7, .b = 7 };
	struct demo_v1 older = { .size = sizeof(older), .a = 1 };

	/* NULL, and sizes below the first version: -EINVAL, lib untouched. */
	assert_ovc(abi_copy_in(&lib, sizeof(lib), NULL, DEMO_VER0), -EINVAL);
	for (uint32_t n = 0; n < DEMO_VER0; n++) {
		older.size = n;
		assert_ovc(abi_copy_in(&lib, sizeof(lib), &older, DEMO_VER0), -EINVAL);
	}
	assert_int_equal(lib.a, 7);
	assert_int_equal(lib.b, 7);

	/* An older caller: its fields copied, the ones it lacks read 0. */
	older.size = sizeof(older);
	assert_ovc_ok(abi_copy_in(&lib, sizeof(lib), &older, DEMO_VER0));
	assert_int_equal(lib.size, sizeof(older));
	assert_int_equal(lib.a, 1);
	assert_int_equal(lib.b, 0);

	/* Exact. */
	struct demo_v2 same = { .size = sizeof(same), .a = 2, .b = 3 };
	assert_ovc_ok(abi_copy_in(&lib, sizeof(lib), &same, DEMO_VER0));
	assert_int_equal(lib.a, 2);
	assert_int_equal(lib.b, 3);

	/* A newer caller against the v1 library: zero tail fine, else -E2BIG
	 * with the library's copy untouched. */
	struct demo_v1 lib1 = { .a = 9 };
	same.b = 0;
	assert_ovc_ok(abi_copy_in(&lib1, sizeof(lib1), &same, DEMO_VER0));
	assert_int_equal(lib1.a, 2);
	lib1.a = 9;
	same.b = 1ull << 63; /* only the last byte set */
	assert_ovc(abi_copy_in(&lib1, sizeof(lib1), &same, DEMO_VER0), -E2BIG);
	assert_int_equal(lib1.a, 9);

	/* Above one page: -E2BIG even when all zero. */
	uint8_t *big = calloc(1, 2 * OVC_ABI_SIZE_MAX);
	assert_non_null(big);
	uint32_t n = OVC_ABI_SIZE_MAX;
	memcpy(big, &n, sizeof(n));
	assert_ovc_ok(abi_copy_in(&lib1, sizeof(lib1), big, DEMO_VER0));
	n = OVC_ABI_SIZE_MAX + 1;
	memcpy(big, &n, sizeof(n));
	assert_ovc(abi_copy_in(&lib1, sizeof(lib1), big, DEMO_VER0), -E2BIG);
	n = UINT32_MAX;
	memcpy(big, &n, sizeof(n));
	assert_ovc(abi_copy_in(&lib1, sizeof(lib1), big, DEMO_VER0), -E2BIG);
	free(big);
}

static void test_rule_copy_out(void **state)
{
	const struct demo_v2 lib = { .size = 99, .flags = 0, .a = 5, .b = 6 };

	/* An older caller: written up to its size, nothing past it. */
	struct {
		struct demo_v1 s;
		uint64_t guard;
	} older = { .s = { .size = sizeof(older.s) }, .guard = 0xdead };
	assert_ovc_ok(abi_copy_out(&older.s, &lib, sizeof(lib), DEMO_VER0));
	assert_int_equal(older.s.size, sizeof(older.s)); /* the caller's size stays */
	assert_int_equal(older.s.a, 5);
	assert_int_equal(older.guard, 0xdead);

	/* Exact. */
	struct demo_v2 same = { .size = sizeof(same) };
	assert_ovc_ok(abi_copy_out(&same, &lib, sizeof(lib), DEMO_VER0));
	assert_int_equal(same.size, sizeof(same));
	assert_int_equal(same.a, 5);
	assert_int_equal(same.b, 6);

	/* A newer caller: the fields the v1 library does not know stay 0;
	 * a non-zero tail is -E2BIG and nothing is written. */
	const struct demo_v1 lib1 = { .a = 4 };
	same = (struct demo_v2){ .size = sizeof(same) };
	assert_ovc_ok(abi_copy_out(&same, &lib1, sizeof(lib1), DEMO_VER0));
	assert_int_equal(same.a, 4);
	assert_int_equal(same.b, 0);
	same = (struct demo_v2){ .size = sizeof(same), .a = 3, .b = 1 };
	assert_ovc(abi_copy_out(&same, &lib1, sizeof(lib1), DEMO_VER0), -E2BIG);
	assert_int_equal(same.a, 3);

	/* Below the first version, NULL. */
	same.size = DEMO_VER0 - 1;
	assert_ovc(abi_copy_out(&same, &lib, sizeof(lib), DEMO_VER0), -EINVAL);
	assert_ovc(abi_copy_out(NULL, &lib, sizeof(lib), DEMO_VER0), -EINVAL);
	assert_ovc(abi_check(NULL, sizeof(lib), DEMO_VER0), -EINVAL);
}

/* --- the 0.1 layouts, byte by byte (x86-64; the build's only target) --- */

static void test_layouts(void **state)
{
	assert_int_equal(offsetof(struct ovc_engine_opts, flags), 4);
	assert_int_equal(offsetof(struct ovc_engine_opts, log_fn), 8);
	assert_int_equal(offsetof(struct ovc_engine_opts, log_level), 24);
	assert_int_equal(sizeof(((struct ovc_engine_opts *)0)->log_level), 4);
	assert_int_equal(offsetof(struct ovc_engine_opts, reserved0), 28);
	assert_int_equal(offsetof(struct ovc_engine_opts, scan_interval_usec), 32);
	assert_int_equal(offsetof(struct ovc_engine_opts, scan_cpu_permille), 40);
	assert_int_equal(offsetof(struct ovc_engine_opts, reserved1), 44);
	assert_int_equal(offsetof(struct ovc_engine_opts, swap_path), 48);
	assert_int_equal(offsetof(struct ovc_engine_opts, io_error_userdata), 88);
	assert_int_equal(sizeof(struct ovc_engine_opts), 96);
	assert_int_equal(OVC_ENGINE_OPTS_SIZE_VER0, 96);

	assert_int_equal(offsetof(struct ovc_engine_stats, flags), 4);
	assert_int_equal(offsetof(struct ovc_engine_stats, regions), 8);
	assert_int_equal(offsetof(struct ovc_engine_stats, fault_lat_hist), 184);
	assert_int_equal(offsetof(struct ovc_engine_stats, swapin_lat_hist), 376);
	assert_int_equal(offsetof(struct ovc_engine_stats, pinned_pages_kept), 552);
	assert_int_equal(sizeof(struct ovc_engine_stats), 560);
	assert_int_equal(OVC_ENGINE_STATS_SIZE_VER0, 560);

	assert_int_equal(offsetof(struct ovc_publish_opts, dir), 8);
	assert_int_equal(offsetof(struct ovc_publish_opts, max_bytes), 24);
	assert_int_equal(offsetof(struct ovc_publish_opts, mode), 32);
	assert_int_equal(sizeof(((struct ovc_publish_opts *)0)->mode), 4);
	assert_int_equal(offsetof(struct ovc_publish_opts, reserved), 36);
	assert_int_equal(sizeof(struct ovc_publish_opts), 40);
	assert_int_equal(OVC_PUBLISH_OPTS_SIZE_VER0, 40);
}

/* --- through the public calls --- */

static void test_engine_opts_rule(void **state)
{
	need_uffd();
	ovc_engine *const untouched = (ovc_engine *)0x1;
	ovc_engine *e = untouched;
	GROWN(struct ovc_engine_opts) g = { .s = { .size = sizeof(g), .flags = OVC_ENGINE_NO_AUTOSCAN } };

	g.s.size = OVC_ENGINE_OPTS_SIZE_VER0 - 1;
	assert_ovc(ovc_engine_new(&g.s, &e), -EINVAL);
	g.s.size = 0;
	assert_ovc(ovc_engine_new(&g.s, &e), -EINVAL);
	g.s.size = sizeof(g);
	g.future[1] = 1;
	assert_ovc(ovc_engine_new(&g.s, &e), -E2BIG);
	assert_ptr_equal(e, untouched);
	g.s.size = OVC_ABI_SIZE_MAX + 8;
	assert_ovc(ovc_engine_new(&g.s, &e), -E2BIG);
	assert_ptr_equal(e, untouched);

	/* Larger with a zero tail, exact, first version, NULL. */
	g.future[1] = 0;
	g.s.size = sizeof(g);
	assert_ovc_ok(ovc_engine_new(&g.s, &e));
	e = ovc_engine_free(e);
	g.s.size = sizeof(g.s);
	assert_ovc_ok(ovc_engine_new(&g.s, &e));
	e = ovc_engine_free(e);
	g.s.size = OVC_ENGINE_OPTS_SIZE_VER0;
	assert_ovc_ok(ovc_engine_new(&g.s, &e));
	e = ovc_engine_free(e);
	assert_ovc_ok(ovc_engine_new(NULL, &e));
	e = ovc_engine_free(e);
	assert_ovc(ovc_engine_new(&g.s, NULL), -EINVAL);

	/* Reserved fields, flags, the log level held in a uint32_t. */
	e = untouched;
	struct ovc_engine_opts o = { .size = sizeof(o), .reserved0 = 1 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	o = (struct ovc_engine_opts){ .size = sizeof(o), .reserved1 = 1u << 31 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	o = (struct ovc_engine_opts){ .size = sizeof(o), .flags = 1u << 31 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	o = (struct ovc_engine_opts){ .size = sizeof(o), .log_level = OVC_LOG_DEBUG + 1 };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	o = (struct ovc_engine_opts){ .size = sizeof(o), .log_level = UINT32_MAX };
	assert_ovc(ovc_engine_new(&o, &e), -EINVAL);
	assert_ptr_equal(e, untouched);
	o = (struct ovc_engine_opts){ .size = sizeof(o), .flags = OVC_ENGINE_NO_AUTOSCAN,
				      .log_level = OVC_LOG_ERR };
	e = NULL;
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_null(ovc_engine_free(e));
}

static ovc_engine *engine(void)
{
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_NO_AUTOSCAN };
	ovc_engine *e = NULL;

	need_uffd();
	assert_ovc_ok(ovc_engine_new(&o, &e));
	return e;
}

static void test_stats_rule(void **state)
{
	ovc_engine *e = engine();
	struct guest_ram g;
	guest_ram_alloc(&g, 16 * OVC_PAGE_SIZE, BACK_ANON);
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));

	GROWN(struct ovc_engine_stats) st = { .s = { .size = sizeof(st) } };

	assert_ovc(ovc_engine_stats(e, NULL), -EINVAL);
	assert_ovc(ovc_engine_stats(NULL, &st.s), -EINVAL);
	st.s.size = OVC_ENGINE_STATS_SIZE_VER0 - 8;
	assert_ovc(ovc_engine_stats(e, &st.s), -EINVAL);
	st.s.size = 8;
	assert_ovc(ovc_engine_stats(e, &st.s), -EINVAL);
	assert_int_equal(st.s.regions, 0); /* nothing written on failure */

	/* Larger with a non-zero tail: -E2BIG, nothing written. */
	st.s.size = sizeof(st);
	st.future[0] = 1;
	assert_ovc(ovc_engine_stats(e, &st.s), -E2BIG);
	assert_int_equal(st.s.regions, 0);
	st.s.size = OVC_ABI_SIZE_MAX + 8;
	st.future[0] = 0;
	assert_ovc(ovc_engine_stats(e, &st.s), -E2BIG);

	/* flags: none yet. */
	st.s.size = sizeof(st.s);
	st.s.flags = 1;
	assert_ovc(ovc_engine_stats(e, &st.s), -EINVAL);
	assert_int_equal(st.s.regions, 0);
	st.s.flags = 0;

	/* Exact, and larger with a zero tail: filled, tail left zero, the
	 * caller's size kept. */
	assert_ovc_ok(ovc_engine_stats(e, &st.s));
	assert_int_equal(st.s.size, sizeof(st.s));
	assert_int_equal(st.s.regions, 1);
	assert_int_equal(st.s.region_bytes, g.len);
	memset(&st, 0, sizeof(st));
	st.s.size = sizeof(st);
	assert_ovc_ok(ovc_engine_stats(e, &st.s));
	assert_int_equal(st.s.size, sizeof(st));
	assert_int_equal(st.s.flags, 0);
	assert_int_equal(st.s.regions, 1);
	assert_int_equal(st.future[0], 0);
	assert_int_equal(st.future[1], 0);
	/* The same struct again, as a caller polling it would. */
	assert_ovc_ok(ovc_engine_stats(e, &st.s));

	assert_ovc_ok(ovc_region_remove(e, 0, 0));
	assert_null(ovc_engine_free(e));
	guest_ram_free(&g);
}

static void test_publish_opts_rule(void **state)
{
	ovc_engine *e = engine();
	char dir[] = "/tmp/ovc-test-engine-XXXXXX";
	assert_non_null(mkdtemp(dir));
	GROWN(struct ovc_publish_opts) p = { .s = { .size = sizeof(p), .dir = dir, .name = "abi" } };

	assert_ovc(ovc_engine_publish(NULL, &p.s), -EINVAL);
	p.s.size = OVC_PUBLISH_OPTS_SIZE_VER0 - 1;
	assert_ovc(ovc_engine_publish(e, &p.s), -EINVAL);
	p.s.size = sizeof(p);
	p.future[1] = 1;
	assert_ovc(ovc_engine_publish(e, &p.s), -E2BIG);
	p.future[1] = 0;
	p.s.size = OVC_ABI_SIZE_MAX + 1;
	assert_ovc(ovc_engine_publish(e, &p.s), -E2BIG);
	p.s.size = sizeof(p.s);
	p.s.reserved = 1;
	assert_ovc(ovc_engine_publish(e, &p.s), -EINVAL);
	p.s.reserved = 0;
	p.s.flags = 1;
	assert_ovc(ovc_engine_publish(e, &p.s), -EINVAL);
	p.s.flags = 0;
	p.s.mode = 01777;
	assert_ovc(ovc_engine_publish(e, &p.s), -EINVAL);
	p.s.mode = 0600;

	/* Nothing was created by the refused calls. */
	char path[sizeof(dir) + 16];
	snprintf(path, sizeof(path), "%s/abi.sock", dir);
	assert_int_equal(access(path, F_OK), -1);

	/* Exact, then larger with a zero tail; mode as given. */
	assert_ovc_ok(ovc_engine_publish(e, &p.s));
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_ovc_ok(ovc_engine_unpublish(e, 0));
	p.s.size = sizeof(p);
	assert_ovc_ok(ovc_engine_publish(e, &p.s));
	assert_int_equal(access(path, F_OK), 0);
	assert_ovc_ok(ovc_engine_unpublish(e, 0));
	assert_int_equal(access(path, F_OK), -1);

	assert_null(ovc_engine_free(e));
	assert_int_equal(rmdir(dir), 0);
}

/* Every call that takes flags refuses bits it does not know. */
static void test_flags_must_be_known(void **state)
{
	ovc_engine *e = engine();
	struct guest_ram g;
	guest_ram_alloc(&g, 16 * OVC_PAGE_SIZE, BACK_ANON);

	assert_ovc(ovc_region_add(e, g.p, g.len, 0, 1u << 31), -EINVAL);
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	assert_ovc(ovc_region_remove(e, 0, 1), -EINVAL);
	assert_ovc(ovc_engine_process(e, 1), -EINVAL);
	assert_ovc(ovc_engine_scan_sync(e, 1), -EINVAL);
	assert_ovc(ovc_engine_reclaim(e, 0, 1u << 1), -EINVAL);
	assert_ovc(ovc_engine_reclaim(e, 0, 1u << 31), -EINVAL);
	assert_ovc_ok(ovc_engine_reclaim(e, 0, OVC_RECLAIM_ZERO_ONLY));
	assert_ovc_ok(ovc_engine_reclaim(e, 0, 0));
	assert_ovc(ovc_engine_unpublish(e, 1), -EINVAL);
	assert_ovc_ok(ovc_engine_unpublish(e, 0)); /* not published: nothing */
	/* The region is still there: the refused remove did nothing. */
	assert_ovc_ok(ovc_region_remove(e, 0, 0));
	assert_null(ovc_engine_free(e));
	guest_ram_free(&g);

	/* ovc_engine_fd: flags refused even where the fd exists. */
	struct ovc_engine_opts o = { .size = sizeof(o),
				     .flags = OVC_ENGINE_NO_THREADS | OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	int fd = ovc_engine_fd(e, 0);
	assert_true(fd >= 0);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_ovc(ovc_engine_fd(e, 1), -EINVAL);
	assert_ovc(ovc_engine_fd(NULL, 0), -EINVAL);
	assert_null(ovc_engine_free(e));
}

/* The errors of the rule say what happened, in ovc's words. */
static void test_strerror_texts(void **state)
{
	const char *big = ovc_strerror(-E2BIG);
	assert_ptr_not_equal(big, strerror(E2BIG));
	assert_ptr_equal(ovc_strerror(E2BIG), big);
	assert_non_null(strstr(big, strerror(E2BIG)));
	assert_non_null(strstr(big, "larger than this library's"));
	assert_non_null(strstr(big, "not zero"));

	const char *inval = ovc_strerror(-EINVAL);
	assert_non_null(strstr(inval, "unknown flag"));
	assert_non_null(strstr(inval, "reserved field"));
	assert_non_null(strstr(inval, "smaller than its first version"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_copy_in),
		cmocka_unit_test(test_rule_copy_out),
		cmocka_unit_test(test_layouts),
		cmocka_unit_test(test_engine_opts_rule),
		cmocka_unit_test(test_stats_rule),
		cmocka_unit_test(test_publish_opts_rule),
		cmocka_unit_test(test_flags_must_be_known),
		cmocka_unit_test(test_strerror_texts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
