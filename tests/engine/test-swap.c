/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the engine's swap path (lib/engine/swap.c) on the real kernel —
 * userfaultfd with MOVE and WP_ASYNC, PAGEMAP_SCAN, and the sync
 * write-protect path (the *_sync tests), io_uring O_DIRECT on a
 * swap file in /var/tmp. Nothing mocked; failures are injected through the
 * ops table (tests/helpers/fault-inject.h) into io_uring completions.
 *
 * Intervals are driven by hand (engine_test_swap_tick) so that assertions
 * count intervals and page states, never time.
 */
#include <fcntl.h>
#include <stdio.h>

#include "engine-test.h"
#include "fault-inject.h"
#include "lying-move.h"
#include "pin-writer.h"
#include "engine/swapdev.h"
#include "engine/track.h"
#include "common/util.h"

#define SWAP_DIR "/var/tmp"

/* Page @p of version @v: random bytes, never all zero. */
static void fill(uint8_t *dst, size_t p, unsigned v)
{
	uint64_t s = (p + 1) * 0x9e3779b97f4a7c15ull + v * 0x632be59bd9b4e019ull;
	for (size_t i = 0; i < 4096; i += 8) {
		uint64_t x = xorshift64(&s);
		memcpy(dst + i, &x, 8);
	}
	dst[0] |= 1;
}

/* Fill @g with version @v and return its shadow copy (malloc'd). */
static uint8_t *fill_all(struct guest_ram *g, size_t npages, unsigned v)
{
	uint8_t *shadow = malloc(npages * 4096);
	assert_non_null(shadow);
	for (size_t p = 0; p < npages; p++) {
		fill(g->p + p * 4096, p, v);
		memcpy(shadow + p * 4096, g->p + p * 4096, 4096);
	}
	return shadow;
}

struct io_errs {
	atomic_int calls;
	atomic_int last_err;
	atomic_ullong last_gpa;
};

static void on_io_error(void *ud, uint64_t gpa, int err)
{
	struct io_errs *x = ud;
	atomic_store(&x->last_err, err);
	atomic_store(&x->last_gpa, gpa);
	atomic_fetch_add(&x->calls, 1);
}

static void log_stderr(void *ud, enum ovc_log_level lvl, const char *msg)
{
	(void)ud;
	if (getenv("OVC_TEST_LOG") || lvl <= OVC_LOG_ERR)
		fprintf(stderr, "engine: %s\n", msg);
}

/* Added to every engine's flags: OVC_ENGINE_SYNC_WP runs a test on the
 * sync write-protect path (the *_sync tests). */
static unsigned mode_flags;

static struct ovc_engine_opts engine_opts(unsigned flags, uint64_t swap_bytes, struct io_errs *ie)
{
	return (struct ovc_engine_opts){
		.size = sizeof(struct ovc_engine_opts),
		.flags = flags | mode_flags | OVC_ENGINE_NO_AUTOSCAN,
		.swap_path = SWAP_DIR,
		.swap_size_bytes = swap_bytes,
		.scan_interval_usec = 1000000,
		.cold_age_usec = 1000000, /* one interval unwritten = cold */
		.io_error_fn = ie ? on_io_error : NULL,
		.io_error_userdata = ie,
		.log_fn = log_stderr,
		.log_level = OVC_LOG_DEBUG,
	};
}

static int new_engine(unsigned flags, uint64_t swap_bytes, const struct sys_ops *sys, struct io_errs *ie,
		      ovc_engine **e)
{
	struct ovc_engine_opts o = engine_opts(flags, swap_bytes, ie);
	return engine_test_new_with_sys(&o, sys ? sys : &sys_default, e);
}

static void need_swap(void)
{
	need_uffd();
	ovc_engine *e = NULL;
	int r = new_engine(0, 1 << 20, NULL, NULL, &e);
	if (r == -EOPNOTSUPP)
		skip_because("kernel without UFFDIO_MOVE + WP_ASYNC/PAGEMAP_SCAN, or " SWAP_DIR
			     " without O_DIRECT");
	assert_ovc_ok(r);
	ovc_engine_free(e);
}

static struct ovc_engine_stats stats(ovc_engine *e)
{
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	return st;
}

static size_t count_state(ovc_engine *e, enum pst_state s)
{
	return engine_test_count_state(e, s);
}

static bool rg_word_cached(ovc_engine *e, uint64_t page)
{
	return (atomic_load(&engine_test_region(e, 0)->pst[page]) & PST_CACHED) != 0;
}

static size_t compare(const uint8_t *g, const uint8_t *shadow, size_t npages)
{
	size_t bad = 0;
	for (size_t p = 0; p < npages; p++)
		if (memcmp(g + p * 4096, shadow + p * 4096, 4096) != 0) {
			if (bad < 5)
				fprintf(stderr, "page %zu differs\n", p);
			bad++;
		}
	return bad;
}

/* Swap out all of @g: ticks until nothing more goes (bounded by count). */
static void swap_all(ovc_engine *e, size_t len)
{
	/* The target without ovc_engine_reclaim(), which would also wake the
	 * worker into a tick of its own, racing the counts asserted here. */
	engine_test_set_target(e, len);
	for (int i = 0; i < 4; i++)
		assert_true(engine_test_swap_tick(e) >= 0);
}

static void test_options(void **s)
{
	(void)s;
	need_swap();
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .swap_path = SWAP_DIR };
	assert_int_equal(ovc_engine_new(&o, &e), -EINVAL); /* path without size */
	o.swap_path = NULL;
	o.swap_size_bytes = 1 << 20;
	assert_int_equal(ovc_engine_new(&o, &e), -EINVAL); /* size without path */
	o.swap_path = SWAP_DIR;
	/* Without MOVE: the sync write-protect path, which needs threads. */
	o.flags = OVC_ENGINE_NO_MOVE | OVC_ENGINE_NO_THREADS;
	assert_int_equal(ovc_engine_new(&o, &e), -EOPNOTSUPP);
	o.flags = OVC_ENGINE_SYNC_WP | OVC_ENGINE_NO_THREADS;
	assert_int_equal(ovc_engine_new(&o, &e), -EOPNOTSUPP);
	o.flags = OVC_ENGINE_SYNC_WP | OVC_ENGINE_MOVE;
	assert_int_equal(ovc_engine_new(&o, &e), -EINVAL);
	o.flags = OVC_ENGINE_NO_MOVE;
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_true(engine_test_sync_wp(e));
	ovc_engine_free(e);
	e = NULL;
	o.flags = 0;
	o.swap_path = "/nonexistent-ovc-dir";
	assert_true(ovc_engine_new(&o, &e) < 0);
	assert_null(e);

	struct guest_ram m;
	guest_ram_alloc(&m, 64 * 4096, BACK_MEMFD);
	/* WP_ASYNC makes the write-protect path unsafe: no shared memory;
	 * and the sync path does not swap shared memory either. */
	assert_ovc_ok(new_engine(OVC_ENGINE_SYNC_WP, 1 << 20, NULL, NULL, &e));
	assert_int_equal(ovc_region_add(e, m.p, m.len, 0, 0), -EOPNOTSUPP);
	ovc_engine_free(e);
	assert_ovc_ok(new_engine(0, 1 << 20, NULL, NULL, &e));
	assert_int_equal(ovc_region_add(e, m.p, m.len, 0, 0), -EOPNOTSUPP);
	guest_ram_free(&m);
	struct guest_ram g;
	guest_ram_alloc(&g, 64 * 4096, BACK_ANON);
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	assert_int_equal(ovc_engine_reclaim(e, g.len + 4096, 0), -ENOSPC);
	assert_ovc_ok(ovc_engine_reclaim(e, g.len, 0));
	struct ovc_engine_stats st = stats(e);
	assert_int_equal(st.swap_bytes_total, 1 << 20);
	ovc_engine_free(e);
	guest_ram_free(&g);
}

/* @npages of anonymous guest RAM filled with version @v; returns the
 * shadow (malloc'd). */
static uint8_t *guest_filled(struct guest_ram *g, size_t npages, unsigned v)
{
	guest_ram_alloc(g, npages * 4096, BACK_ANON);
	return fill_all(g, npages, v);
}

/* @npages of guest RAM filled with version @v (shadow in *shadow), in a
 * fresh engine with @swap_bytes of swap, as one region at 0. */
static ovc_engine *swap_guest_sys(struct guest_ram *g, uint8_t **shadow, size_t npages, uint64_t swap_bytes,
				  unsigned v, const struct sys_ops *sys, struct io_errs *ie)
{
	ovc_engine *e = NULL;
	*shadow = guest_filled(g, npages, v);
	assert_ovc_ok(new_engine(0, swap_bytes, sys, ie, &e));
	assert_ovc_ok(ovc_region_add(e, g->p, g->len, 0, 0));
	return e;
}

static ovc_engine *swap_guest(struct guest_ram *g, uint8_t **shadow, size_t npages, uint64_t swap_bytes,
			      unsigned v)
{
	return swap_guest_sys(g, shadow, npages, swap_bytes, v, NULL, NULL);
}

/* Out and back in: every page comes back exactly, counters agree. */
static void roundtrip(unsigned flags, bool seq)
{
	need_swap();
	const size_t npages = 4096;
	struct guest_ram g;
	guest_ram_alloc(&g, npages * 4096, BACK_ANON);
	uint8_t *shadow = fill_all(&g, npages, 1);
	/* A few zero pages: shared, never written to disk. */
	for (size_t p = 0; p < npages; p += 97) {
		memset(g.p + p * 4096, 0, 4096);
		memset(shadow + p * 4096, 0, 4096);
	}
	ovc_engine *e = NULL;
	assert_ovc_ok(new_engine(flags, 64 << 20, NULL, NULL, &e));
	struct loop l;
	if (flags & OVC_ENGINE_NO_THREADS)
		loop_start(&l, e, false);
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0x100000, 0));
	swap_all(e, g.len);
	struct ovc_engine_stats st = stats(e);
	size_t swapped = count_state(e, PST_SWAPPED);
	print_message("swapped out %llu pages (%zu SWAPPED), %llu zero, %zu resident\n",
		      (unsigned long long)st.pages_swapped_out, swapped,
		      (unsigned long long)st.zero_pages_now, resident_pages(g.p, g.len));
	assert_int_equal(st.swapped_pages_now, swapped);
	assert_true(swapped >= npages * 9 / 10);
	assert_true(st.zero_pages_now >= npages / 97);
	assert_int_equal(st.swap_bytes_on_disk, swapped * 4096);
	assert_int_equal(st.swap_write_errors, 0);
	/* The memory really went back. */
	assert_true(resident_pages(g.p, g.len) <= npages - swapped);

	if (seq) {
		assert_int_equal(compare(g.p, shadow, npages), 0);
	} else {
		uint64_t r = 12345;
		for (size_t i = 0; i < npages; i++) {
			size_t p = xorshift64(&r) % npages;
			assert_memory_equal(g.p + p * 4096, shadow + p * 4096, 4096);
		}
		assert_int_equal(compare(g.p, shadow, npages), 0);
	}
	st = stats(e);
	print_message("swapped in %llu pages by %llu faults, %llu refaults\n",
		      (unsigned long long)st.pages_swapped_in, (unsigned long long)st.swap_faults,
		      (unsigned long long)st.refaults);
	if (st.swapped_pages_now) {
		for (uint64_t p = 0; p < npages; p++) {
			pst_word w = atomic_load(&engine_test_region(e, 0)->pst[p]);
			if (pst_state(w) != PST_RESIDENT && pst_state(w) != PST_ZERO)
				fprintf(stderr, "page %llu word %llx\n", (unsigned long long)p, (unsigned long long)w);
		}
	}
	assert_int_equal(st.swapped_pages_now, 0);
	assert_int_equal(st.pages_swapped_in, st.pages_swapped_out);
	assert_true(st.swap_faults > 0 && st.swap_faults <= st.pages_swapped_in);
	/* Every swap fault is timed in both histograms. */
	uint64_t n_swapin = 0, n_fault = 0;
	for (unsigned i = 0; i < OVC_LAT_BUCKETS; i++) {
		n_swapin += st.swapin_lat_hist[i];
		n_fault += st.fault_lat_hist[i];
	}
	assert_true(n_swapin >= st.swap_faults && n_swapin <= n_fault);
	if (seq) /* readahead: far fewer faults than pages */
		assert_true(st.swap_faults * 4 <= st.pages_swapped_in);
	assert_int_equal(st.swap_read_errors, 0);

	/* Again, then remove the region with pages on disk: they come back. */
	for (size_t p = 0; p < npages; p += 3) {
		fill(g.p + p * 4096, p, 2);
		memcpy(shadow + p * 4096, g.p + p * 4096, 4096);
	}
	swap_all(e, g.len);
	assert_true(count_state(e, PST_SWAPPED) > 0);
	assert_ovc_ok(ovc_region_remove(e, 0x100000, 0));
	assert_int_equal(stats(e).swapped_pages_now, 0);
	if (flags & OVC_ENGINE_NO_THREADS)
		loop_stop(&l);
	ovc_engine_free(e);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	free(shadow);
	guest_ram_free(&g);
}

static void test_roundtrip_threads_rand(void **s) { (void)s; roundtrip(0, false); }
static void test_roundtrip_threads_seq(void **s) { (void)s; roundtrip(0, true); }
static void test_roundtrip_loop(void **s) { (void)s; roundtrip(OVC_ENGINE_NO_THREADS, false); }

/* Freeing the engine with pages on disk puts them back. Discarding a
 * swapped page frees its slot and it reads as zeros. NO_SWAP is honoured. */
static void test_free_discard_noswap(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 1024;
	struct guest_ram g, h;
	guest_ram_alloc(&g, npages * 4096, BACK_ANON);
	guest_ram_alloc(&h, npages * 4096, BACK_ANON);
	uint8_t *shadow = malloc(npages * 4096);
	for (size_t p = 0; p < npages; p++) {
		fill(g.p + p * 4096, p, 3);
		fill(h.p + p * 4096, p, 3);
		memcpy(shadow + p * 4096, g.p + p * 4096, 4096);
	}
	ovc_engine *e = NULL;
	assert_ovc_ok(new_engine(0, 64 << 20, NULL, NULL, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	assert_ovc_ok(ovc_region_add(e, h.p, h.len, 1ull << 30, OVC_REGION_NO_SWAP));
	swap_all(e, g.len);
	size_t swapped = count_state(e, PST_SWAPPED);
	assert_true(swapped >= npages * 9 / 10);
	/* Only region g's pages: h is NO_SWAP. */
	assert_true(swapped <= npages);
	assert_int_equal(resident_pages(h.p, h.len), npages);

	/* Discard a swapped page as a balloon would. */
	struct region *rg = engine_test_region_at(e, g.p);
	size_t victim = npages;
	for (size_t p = 0; p < npages && victim == npages; p++)
		if (pst_state(atomic_load(&rg->pst[p])) == PST_SWAPPED)
			victim = p;
	assert_true(victim < npages);
	uint64_t before = stats(e).swapped_pages_now;
	assert_int_equal(madvise(g.p + victim * 4096, 4096, MADV_DONTNEED), 0);
	memset(shadow + victim * 4096, 0, 4096);
	/* The handler frees the slot when it reads the event; reading the
	 * page goes through the handler after the event, in order. */
	static const uint8_t zeros[4096];
	assert_memory_equal(g.p + victim * 4096, zeros, 4096);
	assert_int_equal(stats(e).swapped_pages_now, before - 1);

	ovc_engine_free(e);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	free(shadow);
	guest_ram_free(&g);
	guest_ram_free(&h);
}

/* 20% hot (written every interval), 80% cold (never written again). */
static void test_cold_set(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 8192;
	struct guest_ram g;
	guest_ram_alloc(&g, npages * 4096, BACK_ANON);
	uint8_t *hot = calloc(npages, 1);
	uint8_t *ever = calloc(npages, 1);
	uint64_t r = 99;
	size_t nhot = 0;
	for (size_t p = 0; p < npages; p++) {
		fill(g.p + p * 4096, p, 4);
		if (xorshift64(&r) % 5 == 0) {
			hot[p] = 1;
			nhot++;
		}
	}
	ovc_engine *e = NULL;
	assert_ovc_ok(new_engine(0, 64 << 20, NULL, NULL, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	/* Ask for everything: the tracker decides what is cold. */
	engine_test_set_target(e, g.len);
	struct region *reg = engine_test_region(e, 0);
	for (int interval = 0; interval < 6; interval++) {
		for (size_t p = 0; p < npages; p++)
			if (hot[p])
				g.p[p * 4096 + 8] = (uint8_t)interval;
		assert_true(engine_test_swap_tick(e) >= 0);
		for (size_t p = 0; p < npages; p++)
			if (pst_state(atomic_load(&reg->pst[p])) == PST_SWAPPED)
				ever[p] = 1;
	}
	size_t cold_out = 0, hot_ever = 0;
	for (size_t p = 0; p < npages; p++) {
		if (hot[p])
			hot_ever += ever[p];
		else
			cold_out += pst_state(atomic_load(&reg->pst[p])) == PST_SWAPPED;
	}
	struct ovc_engine_stats st = stats(e);
	print_message("cold set: %zu/%zu on disk; hot set: %zu/%zu ever evicted; %llu refaults\n", cold_out,
		      npages - nhot, hot_ever, nhot, (unsigned long long)st.refaults);
	assert_true(cold_out * 10 >= (npages - nhot) * 9);
	assert_true(hot_ever * 20 < nhot);
	ovc_engine_free(e);
	free(hot);
	free(ever);
	guest_ram_free(&g);
}

/* io_uring completions fail (EIO, short counts): pages stay right. */
static void inject(int err, int short_res, bool on_read)
{
	need_swap();
	const size_t npages = 512;
	struct fault_inject fi;
	fault_inject_init(&fi, 0, err, 1u << OVC_SYS_URING_CQE);
	fi.short_res = short_res;
	struct io_errs ie = { 0 };
	struct guest_ram g;
	uint8_t *shadow;
	ovc_engine *e = swap_guest_sys(&g, &shadow, npages, 64 << 20, 5, &fi.sys, &ie);
	if (!on_read)
		fi.fail_at = atomic_load(&fi.calls) + 2; /* the second write */
	swap_all(e, g.len);
	struct ovc_engine_stats st = stats(e);
	if (!on_read) {
		assert_int_equal(atomic_load(&fi.injected), 1);
		/* Counted in pages: the one failed request carried a full
		 * request's worth. The pages stayed in memory; the next tick
		 * wrote them. */
		assert_int_equal(st.swap_write_errors, SWAPOUT_REQ_PAGES);
	}
	assert_true(st.swapped_pages_now > 0);
	if (on_read)
		fi.fail_at = atomic_load(&fi.calls) + 1; /* the first read */
	assert_int_equal(compare(g.p, shadow, npages), 0);
	st = stats(e);
	if (on_read) {
		assert_int_equal(atomic_load(&fi.injected), 1);
		assert_int_equal(st.swap_read_errors, 1);
		assert_int_equal(atomic_load(&ie.calls), 1);
		assert_int_equal(atomic_load(&ie.last_err), -EIO);
		assert_true(atomic_load(&ie.last_gpa) < g.len);
	}
	print_message("%s %s: %llu out, %llu in, %llu write errors, %llu read errors\n",
		      short_res ? "short" : "error", on_read ? "read" : "write",
		      (unsigned long long)st.pages_swapped_out, (unsigned long long)st.pages_swapped_in,
		      (unsigned long long)st.swap_write_errors, (unsigned long long)st.swap_read_errors);
	ovc_engine_free(e);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	free(shadow);
	guest_ram_free(&g);
}

/* Swap-out when UFFDIO_MOVE moves and then says it failed, nothing or
 * half counted (lying-move.h). Out: each move into staging lies; the
 * engine finds the pages there and writes them out. Back: the first write
 * fails (injected), and the moves that give its pages back lie. Every page
 * reads back as in the shadow, and the engine counts every page it was not
 * told of. */
static void swap_move_lies(enum lie_dir dir, bool half)
{
	need_swap();
	const size_t npages = 512;
	struct guest_ram g;
	uint8_t *shadow = guest_filled(&g, npages, 9);
	struct lying_move lm;
	lying_move_init(&lm, g.p, shadow, g.len, dir, half, false);
	struct fault_inject fi;
	fault_inject_init(&fi, 0, EIO, 1u << OVC_SYS_URING_CQE);
	fi.real = &lm.sys;
	ovc_engine *e = NULL;
	assert_ovc_ok(new_engine(0, 64 << 20, &fi.sys, NULL, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	if (dir == LIE_BACK)
		fi.fail_at = atomic_load(&fi.calls) + 1; /* the first write */
	swap_all(e, g.len);
	struct ovc_engine_stats st = stats(e);
	long lies = atomic_load(&lm.lies), hidden = atomic_load(&lm.hidden);
	uint64_t found = engine_test_moves_unreported(e);
	size_t out = count_state(e, PST_SWAPPED);
	size_t bad = compare(g.p, shadow, npages);
	print_message("%s %s: %ld moves lied about %ld pages; the engine found %llu; %zu pages swapped out, "
		      "%llu write errors; %zu pages differ from the shadow\n", dir == LIE_OUT ? "out" : "back",
		      half ? "half" : "none", lies, hidden, (unsigned long long)found, out,
		      (unsigned long long)st.swap_write_errors, bad);
	assert_int_equal(bad, 0);
	assert_true(lies > 0);
	assert_int_equal(found, hidden);
	assert_int_equal(out, npages); /* all out (the failed write's pages by a later tick) */
	if (dir == LIE_BACK)
		assert_int_equal(st.swap_write_errors, SWAPOUT_REQ_PAGES);
	ovc_engine_free(e);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	free(shadow);
	guest_ram_free(&g);
}

static void test_move_out_lies_none(void **s) { (void)s; swap_move_lies(LIE_OUT, false); }
static void test_move_out_lies_half(void **s) { (void)s; swap_move_lies(LIE_OUT, true); }
static void test_move_back_lies_none(void **s) { (void)s; swap_move_lies(LIE_BACK, false); }
static void test_move_back_lies_half(void **s) { (void)s; swap_move_lies(LIE_BACK, true); }

/* Oldest first across regions: the region registered first (the lower
 * address) holds the younger pages; a target of one region's worth takes
 * the other, older one, and nothing of the first. */
static void test_oldest_across_regions(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 1024;
	struct guest_ram a, b;
	guest_ram_alloc(&a, npages * 4096, BACK_ANON);
	guest_ram_alloc(&b, npages * 4096, BACK_ANON);
	struct guest_ram *young = a.p < b.p ? &a : &b, *old = a.p < b.p ? &b : &a;
	uint8_t *shadow = malloc(2 * npages * 4096);
	for (size_t p = 0; p < npages; p++) {
		fill(young->p + p * 4096, p, 4);
		fill(old->p + p * 4096, p, 5);
	}
	ovc_engine *e = NULL;
	assert_ovc_ok(new_engine(0, 64 << 20, NULL, NULL, &e));
	assert_ovc_ok(ovc_region_add(e, young->p, young->len, 0, 0));
	assert_ovc_ok(ovc_region_add(e, old->p, old->len, 1ull << 30, 0));
	assert_ptr_equal(engine_test_region(e, 0)->host, young->p); /* listed first */
	/* Intervals with no target: the old region ages, the young one is
	 * written and stays two intervals younger. */
	for (int i = 0; i < 3; i++)
		assert_true(engine_test_swap_tick(e) >= 0);
	for (size_t p = 0; p < npages; p++)
		fill(young->p + p * 4096, p, 6);
	for (int i = 0; i < 2; i++)
		assert_true(engine_test_swap_tick(e) >= 0);
	memcpy(shadow, young->p, young->len);
	memcpy(shadow + young->len, old->p, old->len);
	assert_true(track_age(engine_test_region(e, 0)->track, 0) >= 1); /* cold too */
	assert_true(track_age(engine_test_region(e, 1)->track, 0) > track_age(engine_test_region(e, 0)->track, 0));
	engine_test_set_target(e, old->len);
	assert_true(engine_test_swap_tick(e) > 0);
	print_message("young region: %zu of %zu resident, old region: %zu\n", resident_pages(young->p, young->len),
		      npages, resident_pages(old->p, old->len));
	assert_int_equal(resident_pages(young->p, young->len), npages);
	assert_int_equal(resident_pages(old->p, old->len), 0);
	assert_int_equal(compare(young->p, shadow, npages), 0);
	assert_int_equal(compare(old->p, shadow + young->len, npages), 0);
	ovc_engine_free(e);
	free(shadow);
	guest_ram_free(&a);
	guest_ram_free(&b);
}

/* The candidate list is bounded (a sixteenth of the region's pages, at
 * least SWAP_CAND_MIN): a region four lists long still goes out whole in
 * one tick, which lists again while that makes progress. */
static void test_cand_relist(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 4 * SWAP_CAND_MIN;
	struct guest_ram g;
	uint8_t *shadow;
	ovc_engine *e = swap_guest(&g, &shadow, npages, npages * 4096 + (1 << 20), 7);
	assert_int_equal(engine_test_cand_cap(e), SWAP_CAND_MIN);
	engine_test_set_target(e, g.len);
	uint64_t out = 0;
	for (int i = 0; i < 4 && !out; i++) {
		assert_true(engine_test_swap_tick(e) >= 0);
		out = stats(e).pages_swapped_out;
	}
	print_message("one tick: %llu of %zu pages out, list of %zu\n", (unsigned long long)out, npages,
		      engine_test_cand_cap(e));
	assert_int_equal(out, npages);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	ovc_engine_free(e);
	free(shadow);
	guest_ram_free(&g);
}

/* Metadata with swap on, all told (page states, the tracker, the candidate
 * list), on a 1 GiB region: under 8 bytes per page. */
static void test_meta_1gib(void **s)
{
	(void)s;
	need_swap();
	const size_t len = (size_t)1 << 30;
	ovc_engine *e = NULL;
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(mem != MAP_FAILED);
	assert_ovc_ok(new_engine(0, 1 << 20, NULL, NULL, &e));
	assert_ovc_ok(ovc_region_add(e, mem, len, 0, 0));
	struct ovc_engine_stats st = stats(e);
	double per_page = (double)st.meta_bytes / (double)(len / 4096);
	print_message("1 GiB with swap: %llu bytes of metadata, %.4f per page (tracker %llu, list %zu)\n",
		      (unsigned long long)st.meta_bytes, per_page,
		      (unsigned long long)track_meta_bytes(engine_test_region(e, 0)->track), engine_test_cand_cap(e) * 8);
	assert_true(st.meta_bytes > region_meta_bytes(engine_test_region(e, 0)) + track_meta_bytes(engine_test_region(e, 0)->track));
	assert_true(per_page <= 8.0);
	ovc_engine_free(e);
	munmap(mem, len);
}

/* Encrypted swap (OVC_ENGINE_SWAP_ENCRYPT): the same round trips. */
static void need_encrypt(void)
{
	if (!swapdev_encrypt_supported())
		skip_because("libovc built without libcrypto");
}
static void test_roundtrip_encrypt_rand(void **s) { (void)s; need_encrypt(); roundtrip(OVC_ENGINE_SWAP_ENCRYPT, false); }
static void test_roundtrip_encrypt_seq(void **s) { (void)s; need_encrypt(); roundtrip(OVC_ENGINE_SWAP_ENCRYPT, true); }
static void test_roundtrip_encrypt_loop(void **s)
{
	(void)s;
	need_encrypt();
	roundtrip(OVC_ENGINE_SWAP_ENCRYPT | OVC_ENGINE_NO_THREADS, false);
}
static void test_roundtrip_encrypt_sync(void **s)
{
	(void)s;
	need_encrypt();
	roundtrip(OVC_ENGINE_SWAP_ENCRYPT | OVC_ENGINE_SYNC_WP, false);
}

/* How many of the pages of @shadow the swap file holds, read as anyone with
 * its fd would (through /proc/self/fd: it has no name). */
static size_t pages_in_file(ovc_engine *e, const uint8_t *shadow, size_t npages)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", swapdev_file_fd(engine_test_swapdev(e)));
	int fd = open(proc, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	uint8_t *buf = malloc(1 << 20);
	bool *found = calloc(npages, 1);
	assert_true(buf && found);
	size_t n = 0;
	for (off_t off = 0;; off += 1 << 20) {
		ssize_t got = pread(fd, buf, 1 << 20, off);
		assert_true(got >= 0);
		for (ssize_t o = 0; o + 4096 <= got; o += 4096)
			for (size_t p = 0; p < npages; p++)
				if (!found[p] && memcmp(buf + o, shadow + p * 4096, 8) == 0 &&
				    memcmp(buf + o, shadow + p * 4096, 4096) == 0) {
					found[p] = true;
					n++;
				}
		if (got < 1 << 20)
			break;
	}
	close(fd);
	free(buf);
	free(found);
	return n;
}

/* What stays in the swap file. Plain: the pages swapped out are there (so
 * that the check can fail); brought back and written, their slots are
 * freed at the next tick and scrubbed by it: none of the old pages is left
 * in the file. Encrypted: none is ever there in the clear. */
static void scrubbed(unsigned flags)
{
	need_swap();
	const size_t npages = 256;
	struct guest_ram g;
	uint8_t *shadow;
	ovc_engine *e = NULL;
	guest_ram_alloc(&g, npages * 4096, BACK_ANON);
	shadow = fill_all(&g, npages, 5);
	assert_ovc_ok(new_engine(flags, 16 << 20, NULL, NULL, &e));
	struct loop l;
	if (flags & OVC_ENGINE_NO_THREADS)
		loop_start(&l, e, false);
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	swap_all(e, g.len);
	assert_int_equal(stats(e).swapped_pages_now, npages);
	size_t before = pages_in_file(e, shadow, npages);
	print_message("%zu of %zu swapped pages found in the file\n", before, npages);
	if (flags & OVC_ENGINE_SWAP_ENCRYPT)
		assert_int_equal(before, 0);
	else
		assert_int_equal(before, npages);

	/* Back in (cached: slots kept, still on disk), then written. */
	assert_int_equal(compare(g.p, shadow, npages), 0);
	if (!(flags & OVC_ENGINE_SWAP_ENCRYPT))
		assert_int_equal(pages_in_file(e, shadow, npages), npages);
	uint8_t *v6 = fill_all(&g, npages, 6);
	engine_test_set_target(e, 0);
	assert_true(engine_test_swap_tick(e) >= 0); /* sweep frees, scrub clears */
	assert_int_equal(stats(e).swap_cache_pages_now, 0);
	struct swapdev_fill_stats fs;
	swapdev_fill_stats(engine_test_swapdev(e), &fs);
	print_message("cleared %llu, zeroed %llu, stale %u\n", (unsigned long long)fs.slots_cleared,
		      (unsigned long long)fs.slots_zeroed, fs.slots_stale);
	assert_int_equal(fs.slots_stale, 0);
	assert_int_equal(pages_in_file(e, shadow, npages), 0);
	assert_int_equal(compare(g.p, v6, npages), 0);
	if (flags & OVC_ENGINE_NO_THREADS)
		loop_stop(&l);
	ovc_engine_free(e);
	free(shadow);
	free(v6);
	guest_ram_free(&g);
}
/* The flag: -EOPNOTSUPP from a build without libcrypto, an engine
 * otherwise; without swap it changes nothing. */
static void test_encrypt_option(void **s)
{
	(void)s;
	need_swap();
	ovc_engine *e = NULL;
	int r = new_engine(OVC_ENGINE_SWAP_ENCRYPT, 1 << 20, NULL, NULL, &e);
	if (swapdev_encrypt_supported()) {
		assert_ovc_ok(r);
	} else {
		assert_int_equal(r, -EOPNOTSUPP);
		assert_null(e);
	}
	ovc_engine_free(e);
	e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_SWAP_ENCRYPT };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	ovc_engine_free(e);
	o.flags = OVC_ENGINE_SWAP_ENCRYPT << 1;
	assert_int_equal(ovc_engine_new(&o, &e), -EINVAL);
}

static void test_freed_slots_scrubbed(void **s) { (void)s; scrubbed(0); }
static void test_freed_slots_scrubbed_loop(void **s) { (void)s; scrubbed(OVC_ENGINE_NO_THREADS); }
static void test_encrypted_file(void **s) { (void)s; need_encrypt(); scrubbed(OVC_ENGINE_SWAP_ENCRYPT); }

/* The same tests on the sync write-protect path (OVC_ENGINE_SYNC_WP). */
#define SYNC_TEST(name, call)                                                                      \
	static void name(void **s)                                                                 \
	{                                                                                          \
		(void)s;                                                                           \
		mode_flags = OVC_ENGINE_SYNC_WP;                                                   \
		call;                                                                              \
		mode_flags = 0;                                                                    \
	}
SYNC_TEST(test_roundtrip_rand_sync, roundtrip(0, false))
SYNC_TEST(test_roundtrip_seq_sync, roundtrip(0, true))
SYNC_TEST(test_free_discard_noswap_sync, test_free_discard_noswap(s))
SYNC_TEST(test_cold_set_sync, test_cold_set(s))
SYNC_TEST(test_write_eio_sync, inject(-EIO, 0, false))
SYNC_TEST(test_read_eio_sync, inject(-EIO, 0, true))

static void test_write_eio(void **s) { (void)s; inject(-EIO, 0, false); }
static void test_write_short(void **s) { (void)s; inject(-EIO, 4096, false); }
static void test_read_eio(void **s) { (void)s; inject(-EIO, 0, true); }
static void test_read_short(void **s) { (void)s; inject(-EIO, 4096, true); }

/* A swap file smaller than the cold set: swapping stops, the guest goes on,
 * every page stays right; freed slots are used again, cached ones too. */
static void test_swap_full(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 2048, slots = 256;
	struct guest_ram g;
	uint8_t *shadow;
	ovc_engine *e = swap_guest(&g, &shadow, npages, slots * 4096, 6);
	swap_all(e, g.len);
	struct ovc_engine_stats st = stats(e);
	assert_int_equal(st.swapped_pages_now, slots);
	assert_int_equal(st.swap_write_errors, 0);
	/* Read half of what is out back in; the slots free up and fill again. */
	for (size_t p = 0; p < npages / 2; p++)
		assert_memory_equal(g.p + p * 4096, shadow + p * 4096, 4096);
	uint64_t in = stats(e).pages_swapped_in;
	assert_true(in > 0);
	swap_all(e, g.len);
	st = stats(e);
	assert_int_equal(st.swapped_pages_now, slots);
	assert_int_equal(st.pages_swapped_out, slots + in);
	/* Everything on disk back in: every slot is a cached page's now.
	 * They are given back so that the colder pages can go out. */
	assert_int_equal(compare(g.p, shadow, npages), 0);
	st = stats(e);
	assert_int_equal(st.swap_cache_pages_now, slots);
	assert_int_equal(st.swapped_pages_now, 0);
	assert_int_equal(swapdev_slots_free(engine_test_swapdev(e)), 0);
	uint64_t out0 = st.pages_swapped_out;
	swap_all(e, g.len);
	st = stats(e);
	print_message("full of cached slots: %llu swapped now, %llu cached, %llu hits\n",
		      (unsigned long long)st.swapped_pages_now, (unsigned long long)st.swap_cache_pages_now,
		      (unsigned long long)st.swap_cache_hits);
	assert_int_equal(st.swapped_pages_now, slots);
	assert_int_equal(st.pages_swapped_out - out0, slots);
	assert_true(st.swap_cache_hits < slots); /* not just the cached pages back out */
	assert_int_equal(st.swap_write_errors, 0);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	ovc_engine_free(e);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	free(shadow);
	guest_ram_free(&g);
}

static uint64_t bytes_written(ovc_engine *e)
{
	struct swapdev_ring_stats rs;
	swapdev_ring_stats(engine_test_out_ring(e), &rs);
	return rs.bytes_written;
}

/* Write-protect @npages from @p again as the tracker's reset does, so that
 * writes before this call are invisible to the next scan: the race of a
 * write after the last scan and before the move to staging. */
static size_t hide_writes(void *p, size_t npages)
{
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	assert_true(pm >= 0);
	struct page_region v[16];
	uint64_t pos = (uint64_t)(uintptr_t)p, end = pos + npages * 4096;
	size_t hidden = 0;
	while (pos < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a), .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = pos, .end = end, .vec = (uint64_t)(uintptr_t)v, .vec_len = 16,
			.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT, .return_mask = PAGE_IS_WRITTEN,
		};
		int n = ioctl(pm, PAGEMAP_SCAN, &a);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++)
			hidden += (v[i].end - v[i].start) / 4096;
		pos = a.walk_end;
	}
	close(pm);
	return hidden;
}

/*
 * Swap cache: out, read back (pages keep their slots), out again. Pages
 * not written since go out with no write; pages written (seen by the
 * tracker, or hidden from it as in the race) are written again; every page
 * comes back right a third time.
 */
static void cache_roundtrip(size_t nwritten, bool hidden)
{
	need_swap();
	const size_t npages = 1024;
	struct guest_ram g;
	uint8_t *shadow;
	ovc_engine *e = swap_guest(&g, &shadow, npages, 64 << 20, 7);
	swap_all(e, g.len);
	size_t out = count_state(e, PST_SWAPPED);
	assert_int_equal(out, npages);
	uint64_t slots_free = swapdev_slots_free(engine_test_swapdev(e));
	assert_int_equal(compare(g.p, shadow, npages), 0);
	struct ovc_engine_stats st = stats(e);
	assert_int_equal(st.swap_cache_pages_now, npages);
	assert_int_equal(st.swapped_pages_now, 0);
	assert_int_equal(swapdev_slots_free(engine_test_swapdev(e)), slots_free); /* slots kept */

	if (hidden) {
		/* One interval before the writes, which are then hidden: the
		 * next scan misses them, as it misses a write that lands
		 * after it and before the move. */
		engine_test_set_target(e, 0);
		assert_true(engine_test_swap_tick(e) >= 0);
	}
	/* Every third page gets new content, up to nwritten of them. */
	size_t w = 0;
	for (size_t p = 0; p < npages && w < nwritten; p += 3, w++) {
		fill(g.p + p * 4096, p, 8);
		memcpy(shadow + p * 4096, g.p + p * 4096, 4096);
	}
	if (hidden)
		assert_int_equal(hide_writes(g.p, npages), w);
	uint64_t wb = bytes_written(e);
	swap_all(e, g.len);
	st = stats(e);
	print_message("cache: %zu written%s: %llu hits, %llu bytes written, %llu cached\n", w,
		      hidden ? " (hidden from the tracker)" : "", (unsigned long long)st.swap_cache_hits,
		      (unsigned long long)(bytes_written(e) - wb), (unsigned long long)st.swap_cache_pages_now);
	assert_int_equal(st.swapped_pages_now, npages);
	assert_int_equal(st.swap_cache_hits, npages - w);
	assert_int_equal(bytes_written(e) - wb, w * 4096);
	assert_int_equal(st.swap_cache_pages_now, 0);
	assert_int_equal(st.pages_swapped_out, 2 * npages);
	assert_int_equal(swapdev_slots_free(engine_test_swapdev(e)), slots_free);
	/* Third time in: the content is right, written pages new. */
	assert_int_equal(compare(g.p, shadow, npages), 0);
	assert_int_equal(stats(e).swap_read_errors, 0);
	ovc_engine_free(e);
	free(shadow);
	guest_ram_free(&g);
}

static void test_cache_clean(void **s) { (void)s; cache_roundtrip(0, false); }
static void test_cache_written(void **s) { (void)s; cache_roundtrip(100, false); }
static void test_cache_written_hidden(void **s) { (void)s; cache_roundtrip(100, true); }

/* A discarded cached page gives its slot back; a region removed with
 * cached pages gives back all of theirs. */
static void test_cache_discard(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 256;
	struct guest_ram g;
	uint8_t *shadow;
	ovc_engine *e = swap_guest(&g, &shadow, npages, 64 << 20, 9);
	uint64_t total = swapdev_slots_free(engine_test_swapdev(e));
	swap_all(e, g.len);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	assert_int_equal(stats(e).swap_cache_pages_now, npages);
	assert_int_equal(swapdev_slots_free(engine_test_swapdev(e)), total - npages);

	assert_int_equal(madvise(g.p + 5 * 4096, 2 * 4096, MADV_DONTNEED), 0);
	static const uint8_t zeros[4096];
	/* Read through the handler, after the event. */
	assert_memory_equal(g.p + 5 * 4096, zeros, 4096);
	assert_int_equal(stats(e).swap_cache_pages_now, npages - 2);
	assert_int_equal(swapdev_slots_free(engine_test_swapdev(e)), total - npages + 2);
	assert_int_equal(rg_word_cached(e, 5) | rg_word_cached(e, 6), 0);

	assert_ovc_ok(ovc_region_remove(e, 0, 0));
	assert_int_equal(stats(e).swap_cache_pages_now, 0);
	assert_int_equal(swapdev_slots_free(engine_test_swapdev(e)), total);
	ovc_engine_free(e);
	free(shadow);
	guest_ram_free(&g);
}

/*
 * Readahead windows read asynchronously: one whose read fails is read
 * again by the fault that needs it (never zeros, not an error), and one
 * that holds a page the VMM discards is forgotten (the page reads zeros,
 * its neighbours their content).
 */
static void test_readahead(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 2048;
	struct fault_inject fi;
	fault_inject_init(&fi, 0, -EIO, 1u << OVC_SYS_URING_CQE);
	struct io_errs ie = { 0 };
	struct guest_ram g;
	uint8_t *shadow;
	ovc_engine *e = swap_guest_sys(&g, &shadow, npages, 64 << 20, 11, &fi.sys, &ie);
	swap_all(e, g.len);
	assert_int_equal(count_state(e, PST_SWAPPED), npages);
	/* Three faults in order (1, 2, 4 pages read now), then the windows
	 * behind them go out; fail the second window read to complete. */
	fi.fail_at = atomic_load(&fi.calls) + 5;
	for (size_t p = 0; p < 7; p++)
		assert_memory_equal(g.p + p * 4096, shadow + p * 4096, 4096);
	/* A page of a later window is discarded while it is read. */
	size_t victim = 7 + 4 * 64 + 9;
	assert_int_equal(madvise(g.p + victim * 4096, 4096, MADV_DONTNEED), 0);
	memset(shadow + victim * 4096, 0, 4096);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	struct ovc_engine_stats st = stats(e);
	print_message("readahead: %llu pages in by %llu faults, %ld injected\n",
		      (unsigned long long)st.pages_swapped_in, (unsigned long long)st.swap_faults,
		      (long)atomic_load(&fi.injected));
	assert_int_equal(atomic_load(&fi.injected), 1);
	assert_int_equal(st.swap_read_errors, 0);
	assert_int_equal(atomic_load(&ie.calls), 0);
	assert_int_equal(st.pages_swapped_in, npages - 1);
	assert_true(st.swap_faults * 16 <= npages); /* windows, not page by page */
	ovc_engine_free(e);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	free(shadow);
	guest_ram_free(&g);
}

/* The swap-out staging ring is mapped fresh (mmap, madvise, register)
 * when an area is reused within a tick and once at its end. Each of those
 * mmap and madvise calls fails in turn: the batch that needed the area is
 * not started (its pages stay in place), a failed end-of-tick reset is
 * done again by the next tick, and every page stays right. */
static void test_stage_reset_fails(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 8192; /* 16 batches: every area used twice */
	struct guest_ram g;
	guest_ram_alloc(&g, npages * 4096, BACK_ANON);
	uint8_t *shadow = fill_all(&g, npages, 8);
	long count = 0;
	for (long n = 0; n <= count; n++) {
		struct fault_inject fi;
		fault_inject_init(&fi, 0, ENOMEM, (1u << OVC_SYS_MMAP) | (1u << OVC_SYS_MADVISE));
		ovc_engine *e = NULL;
		assert_ovc_ok(new_engine(0, 64 << 20, &fi.sys, NULL, &e));
		assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
		long base = atomic_load(&fi.calls);
		if (n)
			fi.fail_at = base + n;
		engine_test_set_target(e, g.len);
		assert_true(engine_test_swap_tick(e) > 0);
		if (!n)
			count = atomic_load(&fi.calls) - base; /* the calls of one tick */
		else
			assert_int_equal(atomic_load(&fi.injected), 1);
		assert_true(engine_test_swap_tick(e) >= 0); /* what was left, clean */
		assert_int_equal(count_state(e, PST_SWAPPED), npages);
		assert_int_equal(engine_test_areas_used(e), 0); /* the ring holds nothing */
		assert_int_equal(compare(g.p, shadow, npages), 0);
		ovc_engine_free(e);
	}
	print_message("failed each of %ld mmap/madvise calls of a swap-out tick\n", count);
	assert_true(count >= 2 * (long)(npages / BATCH_PAGES - engine_test_areas() + 1));
	free(shadow);
	guest_ram_free(&g);
}

static uint64_t fake_now_nsec;

static uint64_t fake_clock(void)
{
	return fake_now_nsec;
}

/* swapout_rate_bytes_per_sec: over intervals at known times on the
 * engine's own (here: the test's) clock, the bytes swapped out never exceed
 * what a token bucket of one second's worth allows, and the limit binds. */
static void test_rate_limit(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 8192;
	const uint64_t rate = 4 << 20; /* 1024 pages a second */
	const uint64_t cap = MAX(rate, (uint64_t)BATCH_PAGES * 4096);
	struct guest_ram g;
	guest_ram_alloc(&g, npages * 4096, BACK_ANON);
	uint8_t *shadow = fill_all(&g, npages, 7);
	struct ovc_engine_opts o = engine_opts(0, 64 << 20, NULL);
	o.swapout_rate_bytes_per_sec = rate;
	ovc_engine *e = NULL;
	assert_ovc_ok(engine_test_new_with_sys(&o, &sys_default, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	fake_now_nsec = 1000 * NSEC_PER_SEC;
	engine_test_set_clock(e, fake_clock); /* no tick has run: nobody reads it yet */
	engine_test_set_target(e, g.len);

	/* Milliseconds between intervals: some under a batch's worth of
	 * tokens, some over the bucket. */
	static const unsigned gaps_ms[] = { 0, 250, 250, 500, 100, 2000, 700, 300, 125, 1000 };
	double tokens = 0; /* bytes the bucket holds, as the engine's must */
	uint64_t out = 0;
	for (size_t i = 0; i < ARRAY_SIZE(gaps_ms); i++) {
		fake_now_nsec += (uint64_t)gaps_ms[i] * 1000000;
		tokens = i ? MIN((double)cap, tokens + (double)rate * gaps_ms[i] / 1000.0) : (double)cap;
		assert_true(engine_test_swap_tick(e) >= 0);
		uint64_t now_out = stats(e).pages_swapped_out, bytes = (now_out - out) * 4096;
		print_message("interval %zu (+%u ms): %llu KiB out, bucket held %.0f KiB\n", i, gaps_ms[i],
			      (unsigned long long)bytes >> 10, tokens / 1024);
		assert_true((double)bytes <= tokens);
		tokens -= (double)bytes;
		out = now_out;
	}
	/* Without a limit the first interval takes every page. With it, the
	 * refilled bucket let later intervals go on, and not all went. */
	assert_true(out * 4096 > cap);
	assert_true(out < npages);
	ovc_engine_free(e);
	assert_int_equal(compare(g.p, shadow, npages), 0);
	free(shadow);
	guest_ram_free(&g);
}

/* A kernel without WP_ASYNC (Linux < 6.7) or without UFFDIO_MOVE (< 6.8),
 * emulated by hiding the feature bit from UFFDIO_API: the engine picks the
 * sync write-protect path by itself, and pages go out and come back. */
static int hide_features(void *ctx, int fd, unsigned long req, void *arg)
{
	int r = ioctl(fd, req, arg);
	if (r == 0 && req == UFFDIO_API)
		((struct uffdio_api *)arg)->features &= ~*(const uint64_t *)ctx;
	return r;
}

static void test_auto_sync(void **s)
{
	(void)s;
	need_swap();
	static const uint64_t hide[] = { UFFD_FEATURE_WP_ASYNC, UFFD_FEATURE_MOVE };
	for (size_t k = 0; k < ARRAY_SIZE(hide); k++) {
		const size_t npages = 512;
		struct sys_ops sys = sys_default;
		sys.ctx = (void *)&hide[k];
		sys.ioctl = hide_features;
		struct guest_ram g;
		guest_ram_alloc(&g, npages * 4096, BACK_ANON);
		uint8_t *shadow = fill_all(&g, npages, 7);
		ovc_engine *e = NULL;
		assert_ovc_ok(new_engine(0, 64 << 20, &sys, NULL, &e));
		assert_true(engine_test_sync_wp(e));
		assert_false(engine_test_features(e) & UFFD_FEATURE_WP_ASYNC);
		/* MOVE stays where the kernel has it: the write-protect
		 * paths drop through it (pinned pages). */
		assert_int_equal(!!(engine_test_features(e) & UFFD_FEATURE_MOVE), hide[k] != UFFD_FEATURE_MOVE);
		/* Without MOVE nothing refuses a pinned page: the region is
		 * swapped only on the VMM's promise (nothing here pins). */
		assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0,
					     (engine_test_features(e) & UFFD_FEATURE_MOVE) ? 0 : OVC_REGION_UNPINNED));
		swap_all(e, g.len);
		assert_true(count_state(e, PST_SWAPPED) >= npages * 9 / 10);
		assert_int_equal(compare(g.p, shadow, npages), 0);
		assert_int_equal(stats(e).swapped_pages_now, 0);
		ovc_engine_free(e);
		free(shadow);
		guest_ram_free(&g);
	}
}

SYNC_TEST(test_swap_full_sync, test_swap_full(s))

/* The swap file is zero-filled ahead in the background (lib/engine/swapfile.c):
 * an engine that swaps out after its fill went idle writes only filled
 * slots; one whose first fill write fails still swaps, into unfilled
 * slots, counted, with every page right. Freeing an engine right after
 * creation, with a fill write in flight, waits for it. */
static void test_fill(void **s)
{
	(void)s;
	need_swap();
	const size_t npages = 4096;
	struct guest_ram g;
	uint8_t *shadow = guest_filled(&g, npages, 9);
	struct fault_inject fi;
	for (int fail = 0; fail < 2; fail++) {
		ovc_engine *e = NULL;
		struct swapdev_fill_stats st;
		fault_inject_init(&fi, fail, EIO, 1u << OVC_SYS_PWRITE);
		assert_ovc_ok(new_engine(0, 2 * npages * 4096, &fi.sys, NULL, &e));
		swapdev_fill_stats(engine_test_swapdev(e), &st);
		if (!st.active) {
			print_message("no fill on " SWAP_DIR "'s file system: skipped\n");
			ovc_engine_free(e);
			break;
		}
		swapdev_fill_wait_idle(engine_test_swapdev(e));
		assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
		swap_all(e, g.len);
		swapdev_fill_stats(engine_test_swapdev(e), &st);
		size_t out = stats(e).swapped_pages_now;
		print_message("%s: %zu pages out, %llu slots filled, %llu unfilled used\n",
			      fail ? "fill failing" : "fill", out, (unsigned long long)st.slots_filled,
			      (unsigned long long)st.slots_unfilled);
		assert_true(out >= npages * 9 / 10);
		assert_int_equal(stats(e).swap_write_errors, 0);
		assert_int_equal(stats(e).swap_fill_errors, fail);
		assert_int_equal(stats(e).swap_bytes_filled, st.slots_filled * 4096);
		if (!fail) {
			assert_int_equal(st.errors, 0);
			assert_int_equal(st.slots_unfilled, 0);
			assert_true(st.slots_filled >= out);
		} else {
			assert_true(st.failed);
			assert_int_equal(st.errors, 1);
			assert_int_equal(st.slots_filled, 0);
			assert_int_equal(st.slots_unfilled, out);
		}
		assert_int_equal(compare(g.p, shadow, npages), 0);
		ovc_engine_free(e);
	}
	ovc_engine *e = NULL;
	assert_ovc_ok(new_engine(0, 256 << 20, NULL, NULL, &e));
	ovc_engine_free(e);
	free(shadow);
	guest_ram_free(&g);
}

/* The kernel writes into guest RAM through a pin (O_DIRECT read,
 * process_vm_writev) over pages that hold old data and are going cold,
 * while swap intervals run back to back: no page may come back with the
 * content from before the write (written out while pinned), nor as zeros.
 * OVC_PIN_SECONDS sets the time (default 0.3). */
static void pin_swap(unsigned flags, enum pin_writer_kind kind)
{
	need_swap();
	const size_t npages = 512;
	double secs = getenv("OVC_PIN_SECONDS") ? atof(getenv("OVC_PIN_SECONDS")) : 0.3;
	struct guest_ram g;
	guest_ram_alloc(&g, npages * 4096, BACK_ANON);
	memset(g.p, 0x11, g.len);
	ovc_engine *e = NULL;
	assert_ovc_ok(new_engine(flags, npages * 4096, NULL, NULL, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	struct pin_writer w; /* after the region: MADV_DONTFORK keeps its pages ours alone */
	pin_writer_start(&w, kind, g.p, npages, true);
	engine_test_set_target(e, g.len);
	struct pin_driver d;
	pin_driver_start(&d, e, true);
	uint64_t t0 = now_nsec(CLOCK_MONOTONIC);
	while (now_nsec(CLOCK_MONOTONIC) - t0 < (uint64_t)(secs * 1e9))
		pin_writer_step(&w);
	pin_driver_stop(&d);
	struct ovc_engine_stats st = stats(e);
	print_message("%s %s: %.1f s, %ld writes of %u pages, %ld stale, %ld lost, %ld ticks, %ld pages out, "
		      "%llu kept pinned\n", (flags & OVC_ENGINE_SYNC_WP) ? "sync-wp" : "move",
		      kind == PW_ODIRECT ? "O_DIRECT pread" : "process_vm_writev", secs, w.calls, PW_CHUNK_PAGES,
		      w.stale, w.lost, (long)d.passes, (long)d.out, (unsigned long long)st.pinned_pages_kept);
	ovc_engine_free(e);
	pin_writer_stop(&w);
	guest_ram_free(&g);
	assert_int_equal(w.stale, 0);
	assert_int_equal(w.lost, 0);
	assert_true(w.calls > 0);
}

static void test_pin_odirect_sync(void **s) { (void)s; pin_swap(OVC_ENGINE_SYNC_WP, PW_ODIRECT); }
static void test_pin_vmwritev_sync(void **s) { (void)s; pin_swap(OVC_ENGINE_SYNC_WP, PW_VMWRITEV); }
static void test_pin_odirect_move(void **s) { (void)s; pin_swap(0, PW_ODIRECT); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_roundtrip_threads_rand),
		cmocka_unit_test(test_roundtrip_threads_seq),
		cmocka_unit_test(test_roundtrip_loop),
		cmocka_unit_test(test_free_discard_noswap),
		cmocka_unit_test(test_cold_set),
		cmocka_unit_test(test_write_eio),
		cmocka_unit_test(test_move_out_lies_none),
		cmocka_unit_test(test_move_out_lies_half),
		cmocka_unit_test(test_move_back_lies_none),
		cmocka_unit_test(test_move_back_lies_half),
		cmocka_unit_test(test_write_short),
		cmocka_unit_test(test_read_eio),
		cmocka_unit_test(test_read_short),
		cmocka_unit_test(test_swap_full),
		cmocka_unit_test(test_cache_clean),
		cmocka_unit_test(test_cache_written),
		cmocka_unit_test(test_cache_written_hidden),
		cmocka_unit_test(test_cache_discard),
		cmocka_unit_test(test_readahead),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_stage_reset_fails),
		cmocka_unit_test(test_cand_relist),
		cmocka_unit_test(test_oldest_across_regions),
		cmocka_unit_test(test_meta_1gib),
		cmocka_unit_test(test_roundtrip_rand_sync),
		cmocka_unit_test(test_roundtrip_seq_sync),
		cmocka_unit_test(test_free_discard_noswap_sync),
		cmocka_unit_test(test_cold_set_sync),
		cmocka_unit_test(test_write_eio_sync),
		cmocka_unit_test(test_read_eio_sync),
		cmocka_unit_test(test_swap_full_sync),
		cmocka_unit_test(test_auto_sync),
		cmocka_unit_test(test_pin_odirect_sync),
		cmocka_unit_test(test_pin_vmwritev_sync),
		cmocka_unit_test(test_pin_odirect_move),
		cmocka_unit_test(test_fill),
		cmocka_unit_test(test_roundtrip_encrypt_rand),
		cmocka_unit_test(test_roundtrip_encrypt_seq),
		cmocka_unit_test(test_roundtrip_encrypt_loop),
		cmocka_unit_test(test_roundtrip_encrypt_sync),
		cmocka_unit_test(test_encrypt_option),
		cmocka_unit_test(test_freed_slots_scrubbed),
		cmocka_unit_test(test_freed_slots_scrubbed_loop),
		cmocka_unit_test(test_encrypted_file),
	};
	if (getenv("OVC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("OVC_TEST_FILTER"));
	return cmocka_run_group_tests_name("swap", tests, NULL, NULL);
}
