/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit (short) / slow (long): the no-lost-write torture.
 *
 * Four writer threads make random writes — whole pages of zeros, single
 * non-zero bytes, words at the page edges — to guest RAM while the engine
 * reclaims zero pages without pause (scan passes back to back). Writers
 * favour pages they just zeroed, which are exactly the pages the engine is
 * taking away at that moment. Each writer owns the pages p with
 * p % WRITERS == its index, so its shadow copy is exact without locks; it
 * verifies pages against the shadow as it goes, and at the end every page
 * is compared with its shadow, with the engine alive and again after it is
 * freed. Every mode: own threads or the VMM's loop, anonymous or memfd,
 * MOVE or write-protect path, swap on the MOVE path or the sync
 * write-protect path, swap encrypted (OVC_ENGINE_SWAP_ENCRYPT). Freed
 * slots are cleared by every swap interval and by swapdev's thread all
 * along, so scrubbing races the allocator too.
 *
 * Usage: test-torture [SECONDS_PER_MODE]  (default 1)
 */
#include <stdio.h>

#include "engine-test.h"
#include "engine/swapdev.h"
#include "common/util.h"

#define WRITERS 4

struct torture {
	uint8_t *guest;
	uint8_t *shadow;
	size_t npages;
	atomic_bool stop;
	atomic_long checks;
	atomic_long writes;
	atomic_long bad;
	atomic_long discards;
	bool shmem;
};

struct writer {
	struct torture *t;
	unsigned idx;
	uint64_t rng;
	pthread_t th;
};

static bool quiet_page(size_t page)
{
	return (page / WRITERS) % 4 == 0;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct torture *t = w->t;
	size_t mine = t->npages / WRITERS;
	size_t recent[16] = { 0 };
	unsigned nrecent = 0;
	long checks = 0, writes = 0;

	while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
		uint64_t r = xorshift64(&w->rng);
		size_t page;
		/* Half the time a page we zeroed lately: the engine's prey. */
		if ((r & 1) && nrecent)
			page = recent[(r >> 1) % MIN(nrecent, 16u)];
		else
			page = ((r >> 8) % mine) * WRITERS + w->idx;
		uint8_t *g = t->guest + page * 4096, *s = t->shadow + page * 4096;
		/* A quarter of each writer's pages is nearly read-only: the
		 * reader faults them back from swap, they stay unwritten for
		 * intervals and go out again as swap-cache hits (no write);
		 * now and then one is written after all (tracker or content
		 * check must see it). Here they are only checked. */
		bool check_only = quiet_page(page) && xorshift64(&w->rng) % 4096 != 0;
		/* Now and then the VMM discards one of our pages, as a balloon
		 * would: UFFD_EVENT_REMOVE, possibly while the page is in
		 * transit; it must read as zeros afterwards. */
		if (!check_only && (r >> 56) % 64 == 0) {
			madvise(g, 4096, t->shmem ? MADV_REMOVE : MADV_DONTNEED);
			memset(s, 0, 4096);
			atomic_fetch_add_explicit(&t->discards, 1, memory_order_relaxed);
			continue;
		}
		switch (check_only ? 7 : (r >> 40) % 8) {
		case 0:
		case 1:
		case 2:
			memset(g, 0, 4096);
			memset(s, 0, 4096);
			recent[nrecent++ % 16] = page;
			writes++;
			break;
		case 3:
		case 4: {
			size_t off = (r >> 20) % 4096;
			uint8_t v = (uint8_t)((r >> 50) | 1);
			g[off] = v;
			s[off] = v;
			writes++;
			break;
		}
		case 5: {
			uint32_t v = (uint32_t)(r >> 16) | 1;
			memcpy(g, &v, 4);
			memcpy(s, &v, 4);
			memcpy(g + 4092, &v, 4);
			memcpy(s + 4092, &v, 4);
			writes++;
			break;
		}
		default:
			if (memcmp(g, s, 4096) != 0) {
				atomic_fetch_add(&t->bad, 1);
				for (size_t b = 0; b < 4096; b++)
					if (g[b] != s[b]) {
						fprintf(stderr, "writer %u: page %zu byte %zu is %u, shadow %u\n",
							w->idx, page, b, g[b], s[b]);
						break;
					}
				memcpy(s, g, 4096); /* report once */
			}
			checks++;
			break;
		}
	}
	atomic_fetch_add(&t->checks, checks);
	atomic_fetch_add(&t->writes, writes);
	return NULL;
}

/* Reads every page in order, over and over: sequential fault-ins of
 * swapped pages (readahead) racing the writers and eviction. Contents are
 * the writers' to check (each owns its shadow); this only touches. */
struct reader {
	struct torture *t;
	pthread_t th;
	long reads;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct torture *t = rd->t;
	while (!atomic_load_explicit(&t->stop, memory_order_relaxed))
		for (size_t p = 0; p < t->npages && !atomic_load_explicit(&t->stop, memory_order_relaxed); p++) {
			(void)*(volatile uint8_t *)(t->guest + p * 4096 + 2048);
			rd->reads++;
		}
	return NULL;
}

static long compare_all(struct torture *t)
{
	return shadow_compare(t->guest, t->shadow, t->npages, "torture");
}

/* The run's length, from the command line: handed to each test with its
 * mode as cmocka state. */
struct run {
	double seconds;
	size_t pages;
};

struct torture_case {
	struct engine_mode mode;
	const struct run *run;
};

static void torture(const struct torture_case *tc)
{
	const struct engine_mode *m = &tc->mode;
	const char *name = m->name;
	size_t g_pages = tc->run->pages;
	bool swap = m->swap;
	mode_need(m);
	struct torture t = { .npages = g_pages, .shmem = m->backing == BACK_MEMFD };
	struct guest_ram g;
	guest_ram_alloc(&g, g_pages * 4096, m->backing);
	t.guest = g.p;
	t.shadow = calloc(g_pages, 4096);
	/* Start with every page written (present), a third of them data. */
	for (size_t p = 0; p < g_pages; p++) {
		memset(g.p + p * 4096, 0, 4096);
		if (p % 3 == 0)
			g.p[p * 4096 + p % 4096] = t.shadow[p * 4096 + p % 4096] = 0xee;
	}

	/* The swap file's zero-fill kept only 1 MiB ahead: it then races the
	 * swap-out all along, and slots come from both sides of fill_next. */
	engine_test_set_fill_ahead(UINT64_C(1) << 20);
	ovc_engine *e = mode_engine_new(m, g.len, NULL);
	engine_test_set_fill_ahead(SWAPDEV_FILL_AHEAD_DEFAULT);
	/* The writers here are CPUs only, so memfd and the paths without
	 * MOVE may drop pages too (OVC_REGION_UNPINNED); tests/engine/test-writers.c
	 * runs them without it against kernel writers. */
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, mode_cpu_only_flags(m->flags, m->backing)));
	if (swap) /* everything may go; the tracker picks what is cold */
		engine_test_set_target(e, g.len);

	struct writer w[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){ .t = &t, .idx = i, .rng = 0x9e3779b97f4a7c15ull * (i + 1) };
		assert_int_equal(pthread_create(&w[i].th, NULL, writer_main, &w[i]), 0);
	}
	struct reader rd = { .t = &t };
	if (swap)
		assert_int_equal(pthread_create(&rd.th, NULL, reader_main, &rd), 0);
	struct reclaimer rc;
	reclaimer_start(&rc, e, m);
	bool loop = rc.loop;

	usleep((useconds_t)(tc->run->seconds * 1e6));

	atomic_store(&t.stop, true);
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(w[i].th, NULL);
	if (swap)
		pthread_join(rd.th, NULL);
	/* Two more passes with the writers gone: the second one starts after
	 * every write, so the zero pages they left are reclaimed whatever the
	 * machine's load did to the passes that raced them (under TSan on a
	 * busy host every racing pass can lose its pages to the writers). */
	reclaimer_wait_passes(&rc, 2);
	/* Stop scanning but keep serving faults (the loop): the comparison
	 * below reads discarded pages, whose faults the loop answers; a swap
	 * interval still under way would swap pages out behind it. */
	long passes = reclaimer_passes(&rc), reclaimed, last_err;
	long errors = reclaimer_stop_scan(&rc, &reclaimed, &last_err);
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	long bad_live = compare_all(&t);
	/* The comparison faulted back whatever was still on disk. */
	struct ovc_engine_stats st2 = { .size = sizeof(st2) };
	assert_ovc_ok(ovc_engine_stats(e, &st2));
	uint64_t slots_used = 0, cached_words = 0;
	if (swap) {
		slots_used = swapdev_slots_total(engine_test_swapdev(e)) - swapdev_slots_free(engine_test_swapdev(e));
		for (size_t p = 0; p < g_pages; p++)
			cached_words += (atomic_load(&engine_test_region(e, 0)->pst[p]) & PST_CACHED) != 0;
	}
	reclaimer_stop(&rc);
	long checks = atomic_load(&t.checks) + (long)g_pages;
	print_message("torture %s: %.1f s, %ld writes, %ld discards, %ld checks, %ld passes, %ld pages reclaimed, "
		      "%llu changed under the engine, %llu zero faults, %ld bad\n",
		      name, tc->run->seconds, (long)t.writes, (long)t.discards, checks, passes, reclaimed,
		      (unsigned long long)engine_test_transit_aborts(e),
		      (unsigned long long)st.zero_faults, atomic_load(&t.bad) + bad_live);
	if (swap)
		print_message("torture %s: %llu pages swapped out, %llu swapped in by %llu faults, %llu refaults, "
			      "%ld sequential reads, %llu swap-cache hits, %llu write errors, %llu read errors\n",
			      name, (unsigned long long)st2.pages_swapped_out, (unsigned long long)st2.pages_swapped_in,
			      (unsigned long long)st2.swap_faults, (unsigned long long)st2.refaults, rd.reads,
			      (unsigned long long)st2.swap_cache_hits,
			      (unsigned long long)st2.swap_write_errors, (unsigned long long)st2.swap_read_errors);
	struct swapdev_fill_stats fst = { 0 };
	if (swap) {
		swapdev_fill_stats(engine_test_swapdev(e), &fst);
		print_message("torture %s: fill %s, %llu slots filled, %llu unfilled handed out, %llu errors; "
			      "scrub: %llu cleared, %llu zeroed, %llu reused, %u stale, %llu errors\n",
			      name, fst.active ? "on" : "off (NO_THREADS or file system)", (unsigned long long)fst.slots_filled,
			      (unsigned long long)fst.slots_unfilled, (unsigned long long)fst.errors,
			      (unsigned long long)fst.slots_cleared, (unsigned long long)fst.slots_zeroed,
			      (unsigned long long)fst.slots_reused, fst.slots_stale,
			      (unsigned long long)fst.scrub_errors);
	}
	ovc_engine_free(e);
	long bad_after = compare_all(&t);
	assert_int_equal(atomic_load(&t.bad), 0);
	assert_int_equal(bad_live, 0);
	assert_int_equal(bad_after, 0);
	if (errors && !loop)
		print_error("torture %s: %ld failed passes, the last: %s\n", name, errors,
			    ovc_strerror((int)last_err));
	assert_int_equal(errors, 0);
	/* The engine really worked: at the least, the quiet passes gave back
	 * the zero pages the writers left. */
	assert_true(reclaimed > 0);
	assert_true(t.writes > 0 && t.checks > 0);
	if (swap) {
		/* Pages really went out and came back while racing. */
		assert_true(st2.pages_swapped_out > 0);
		assert_true(st2.pages_swapped_in > 0);
		assert_int_equal(st2.swapped_pages_now, 0);
		assert_int_equal(st2.swap_write_errors + st2.swap_read_errors, 0);
		/* No slot leaked: the ones in use are the cached pages'. */
		assert_int_equal(slots_used, st2.swap_cache_pages_now);
		assert_int_equal(cached_words, st2.swap_cache_pages_now);
		assert_int_equal(fst.errors, 0);
		assert_int_equal(fst.scrub_errors, 0);
	}
	free(t.shadow);
	guest_ram_free(&g);
}

static void test_torture(void **state)
{
	torture(*state);
}

int main(int argc, char **argv)
{
	struct run run = { .seconds = 1.0, .pages = 2048 };
	if (argc > 1)
		run.seconds = atof(argv[1]);
	if (argc > 2)
		run.pages = strtoul(argv[2], NULL, 0);
	/* The write-protect path on anonymous memory is the one of kernels
	 * without MOVE (OVC_ENGINE_NO_MOVE); swap on the sync write-protect
	 * path (kernels before 6.7): write-protect faults track writes, zero
	 * sharing and swap-out both protect and drop (through UFFDIO_MOVE
	 * where the kernel has it, else, syncwp-nomove, with MADV_DONTNEED). */
	struct torture_case cases[] = {
		{ { "threads/anon/move", OVC_ENGINE_MOVE, BACK_ANON, false }, &run },
		{ { "threads/anon/wp", OVC_ENGINE_NO_MOVE, BACK_ANON, false }, &run },
		{ { "threads/anon/default", 0, BACK_ANON, false }, &run },
		{ { "threads/memfd/wp", 0, BACK_MEMFD, false }, &run },
		{ { "loop/anon/move", OVC_ENGINE_NO_THREADS, BACK_ANON, false }, &run },
		{ { "threads/anon/swap", 0, BACK_ANON, true }, &run },
		{ { "loop/anon/swap", OVC_ENGINE_NO_THREADS, BACK_ANON, true }, &run },
		{ { "threads/anon/syncwp", OVC_ENGINE_SYNC_WP, BACK_ANON, true }, &run },
		{ { "threads/anon/syncwp-nomove", OVC_ENGINE_SYNC_WP | OVC_ENGINE_NO_MOVE, BACK_ANON, true }, &run },
		/* Encrypted swap: every page out is encrypted in the engine's
		 * buffer and decrypted on the way back (faults, readahead
		 * windows, swap-cache hits). */
		{ { "threads/anon/swap-crypt", OVC_ENGINE_SWAP_ENCRYPT, BACK_ANON, true }, &run },
		{ { "loop/anon/swap-crypt", OVC_ENGINE_SWAP_ENCRYPT | OVC_ENGINE_NO_THREADS, BACK_ANON, true },
		  &run },
	};
	struct CMUnitTest tests[ARRAY_SIZE(cases)];
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		tests[i] = (struct CMUnitTest){ cases[i].mode.name, test_torture, NULL, NULL, &cases[i] };
	if (getenv("OVC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("OVC_TEST_FILTER"));
	return _cmocka_run_group_tests("torture", tests, ARRAY_SIZE(tests), NULL, NULL);
}
