/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: zero-page sharing end to end on real userfaultfd, in every
 * combination the engine has: own threads or the VMM's loop, private
 * anonymous or memfd memory, the UFFDIO_MOVE path or the write-protect path.
 */
#include <stdio.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "engine-test.h"
#include "engine/scan.h"
#include "lying-move.h"
#include "pin-writer.h"

struct mode {
	const char *name;
	unsigned flags;
	enum backing backing;
	bool needs_move;
};

static const struct mode modes[] = {
	{ "threads/anon/move", OVC_ENGINE_MOVE, BACK_ANON, true },
	{ "threads/anon/default", 0, BACK_ANON, false },
	{ "threads/anon/nomove", OVC_ENGINE_NO_MOVE, BACK_ANON, false },
	{ "threads/memfd/wp", 0, BACK_MEMFD, false },
	{ "loop/anon/move", OVC_ENGINE_NO_THREADS, BACK_ANON, true },
};

#define NPAGES 2048u

/* Layout: pages 0..511 zero in one run; 512..1023 alternate zero/data;
 * 1024..1535 zero in runs of 7 between runs of 9 data pages; the rest data
 * (one byte set at a page-dependent offset, the last byte sometimes). */
static bool page_is_zero_in_layout(unsigned i)
{
	if (i < 512)
		return true;
	if (i < 1024)
		return i % 2 == 0;
	if (i < 1536)
		return (i - 1024) % 16 < 7;
	return false;
}

static void fill(uint8_t *p)
{
	for (unsigned i = 0; i < NPAGES; i++) {
		uint8_t *pg = p + (size_t)i * 4096;
		memset(pg, 0, 4096);
		if (!page_is_zero_in_layout(i))
			pg[i % 3 ? (i * 37) % 4096 : 4095] = (uint8_t)(i | 1);
	}
}

static void check(const uint8_t *p)
{
	for (unsigned i = 0; i < NPAGES; i++) {
		const uint8_t *pg = p + (size_t)i * 4096;
		size_t at = i % 3 ? (i * 37) % 4096 : 4095;
		for (size_t b = 0; b < 4096; b++) {
			uint8_t want = (!page_is_zero_in_layout(i) && b == at) ? (uint8_t)(i | 1) : 0;
			if (pg[b] != want)
				fail_msg("page %u byte %zu: %u, expected %u", i, b, pg[b], want);
		}
	}
}

/* The "@key %ld" line of a /proc file, in KiB; -1 if there is none. */
static long proc_kib(const char *path, const char *key)
{
	FILE *f = fopen(path, "re");
	char line[256];
	size_t klen = strlen(key);
	long v = -1;
	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, key, klen) == 0 && sscanf(line + klen, "%ld", &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

/* Anonymous KiB of the mapping that holds @addr (/proc/self/smaps), -1 if
 * none. Not the process's RssAnon: under TSan its shadow memory grows
 * while the engine scans, by more than the zero pages give back. */
static long region_anon_kib(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	long v = -1;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && sscanf(line, "Anonymous: %ld", &v) == 1)
			break;
	}
	if (f)
		fclose(f);
	return v;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Distinct contents among the data pages of the layout, counted exactly. */
static uint64_t distinct_data_pages(const uint8_t *p)
{
	uint64_t *h = calloc(NPAGES, sizeof(*h)), n = 0, d = 0;
	for (unsigned i = 0; i < NPAGES; i++)
		if (!page_is_zero_in_layout(i))
			h[n++] = XXH3_64bits(p + (size_t)i * 4096, 4096);
	qsort(h, n, sizeof(*h), cmp_u64);
	for (uint64_t i = 0; i < n; i++)
		d += i == 0 || h[i] != h[i - 1];
	free(h);
	return d;
}

static unsigned expected_zero(void)
{
	unsigned n = 0;
	for (unsigned i = 0; i < NPAGES; i++)
		n += page_is_zero_in_layout(i);
	return n;
}

static void run_mode(const struct mode *m)
{
	need_uffd();
	if (m->needs_move && !kernel_has_move())
		skip_because("kernel without UFFDIO_MOVE (Linux < 6.8)");
	print_message("mode %s\n", m->name);
	struct guest_ram g;
	guest_ram_alloc(&g, (size_t)NPAGES * 4096, m->backing);
	fill(g.p);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = m->flags | OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	/* Shared memory and the path without MOVE drop zero pages only when
	 * asked (nothing here writes through a pin); test_memfd_kept checks
	 * the default. */
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0x100000, mode_cpu_only_flags(m->flags, m->backing)));
	struct loop l;
	bool loop = m->flags & OVC_ENGINE_NO_THREADS;
	if (loop)
		loop_start(&l, e, false);

	long rss0 = region_anon_kib(g.p);
	int64_t n = ovc_engine_scan_sync(e, 0);
	assert_int_equal(n, expected_zero());
	long rss1 = region_anon_kib(g.p);
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	assert_int_equal(st.zero_pages_now, expected_zero());
	assert_int_equal(st.zero_pages_reclaimed, expected_zero());
	assert_int_equal(st.pages_scanned, NPAGES);
	assert_int_equal(st.zero_pages_found, expected_zero());
	assert_int_equal(st.saved_bytes, (uint64_t)expected_zero() * 4096);
	/* 6 bytes per page + 2048 HyperLogLog registers, page-rounded, + the struct. */
	assert_int_equal(st.meta_bytes, 16384 + sizeof(struct region));
	/* Every data page has its own content: all distinct (an estimate). */
	uint64_t data = NPAGES - expected_zero(), distinct = distinct_data_pages(g.p);
	print_message("distinct contents %llu (estimated %llu) of %llu data pages\n",
		      (unsigned long long)distinct, (unsigned long long)st.distinct_hashes,
		      (unsigned long long)data);
	assert_true(st.distinct_hashes >= distinct * 95 / 100 && st.distinct_hashes <= distinct * 105 / 100);
	assert_int_equal(st.duplicate_pages, data - st.distinct_hashes);
	if (m->backing == BACK_ANON) {
		/* The memory really went back: the region's anonymous memory
		 * fell by the zero pages (the shared zero page is not counted). */
		print_message("region Anonymous %ld -> %ld KiB\n", rss0, rss1);
		/* In loop mode the engine's 2 MiB read buffer fills in too. */
		long slack = loop ? 2048 : 0;
		assert_true(rss0 - rss1 >= (long)expected_zero() * 4 * 9 / 10 - slack);
	} else {
		assert_int_equal(resident_pages(g.p, g.len), NPAGES - expected_zero());
	}
	check(g.p);

	/* Second pass: nothing lost, and nothing new to reclaim — except on
	 * shared memory, where check() reading a hole allocated a zero-filled
	 * page again (shmem has no shared zero page); those go back again. */
	assert_int_equal(ovc_engine_scan_sync(e, 0), m->backing == BACK_MEMFD ? expected_zero() : 0);
	check(g.p);

	/* Write every zero page (COW of the zero page, or a hole filled). */
	for (unsigned i = 0; i < NPAGES; i++)
		if (page_is_zero_in_layout(i))
			g.p[(size_t)i * 4096 + 100] = 0x5a;
	for (unsigned i = 0; i < NPAGES; i++)
		assert_int_equal(g.p[(size_t)i * 4096 + 100], page_is_zero_in_layout(i) ? 0x5a : (i % 3 && (i * 37) % 4096 == 100 ? (i | 1) : 0));
	/* The next pass sees them written: ZERO -> RESIDENT, nothing reclaimed. */
	assert_int_equal(ovc_engine_scan_sync(e, 0), 0);
	assert_int_equal(engine_stat_zero_now(e), 0);
	/* Make them zero again: reclaimed again. */
	for (unsigned i = 0; i < NPAGES; i++)
		if (page_is_zero_in_layout(i))
			g.p[(size_t)i * 4096 + 100] = 0;
	assert_int_equal(ovc_engine_scan_sync(e, 0), expected_zero());
	check(g.p);

	/* The VMM discards (balloon): UFFD_EVENT_REMOVE, read by the handler
	 * while madvise waits; the pages then read zero via the handler. */
	assert_int_equal(madvise(g.p, 1024 * 4096, m->backing == BACK_ANON ? MADV_DONTNEED : MADV_REMOVE), 0);
	for (unsigned i = 0; i < 1024; i++) {
		uint8_t *pg = g.p + (size_t)i * 4096;
		assert_true(scan_page_is_zero(pg)); /* discarded: zeros */
		if (!page_is_zero_in_layout(i))
			pg[i % 3 ? (i * 37) % 4096 : 4095] = (uint8_t)(i | 1);
	}
	check(g.p);
	assert_ovc_ok(ovc_engine_stats(e, &st));
	print_message("after discard: zero now %llu, zero faults %llu\n",
		      (unsigned long long)st.zero_pages_now, (unsigned long long)st.zero_faults);
	/* Discarded ZERO pages stay ZERO (they read as zeros either way);
	 * every discarded page faulted once and got the zero page. */
	assert_int_equal(st.zero_pages_now, expected_zero());
	assert_true(st.zero_faults >= 1024);

	if (loop)
		loop_stop(&l);
	/* Freeing the engine leaves guest RAM valid and unchanged. */
	ovc_engine_free(e);
	check(g.p);
	guest_ram_free(&g);
}

static void test_threads_anon_move(void **s) { run_mode(&modes[0]); }
static void test_threads_anon_wp(void **s) { run_mode(&modes[1]); }
static void test_threads_anon_nomove(void **s) { run_mode(&modes[2]); }
static void test_threads_memfd_wp(void **s) { run_mode(&modes[3]); }
static void test_loop_anon_move(void **s) { run_mode(&modes[4]); }

/* Never-touched memory is not read by the scanner (no fault storm) and
 * faults on it are answered with the zero page. */
static void test_untouched(void **state)
{
	need_uffd();
	struct guest_ram g;
	guest_ram_alloc(&g, 4096 * 4096, BACK_ANON);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	assert_int_equal(ovc_engine_scan_sync(e, 0), 0);
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	assert_int_equal(st.pages_scanned, 0);
	assert_int_equal(st.zero_faults, 0);
	for (size_t i = 0; i < 16; i++)
		assert_int_equal(g.p[i * 4096 * 7], 0);
	g.p[4096 * 100] = 1;
	assert_ovc_ok(ovc_engine_stats(e, &st));
	assert_true(st.zero_faults >= 16);
	unsigned long long hist = 0;
	for (int i = 0; i < OVC_LAT_BUCKETS; i++)
		hist += st.fault_lat_hist[i];
	assert_true(hist >= st.zero_faults);
	ovc_engine_free(e);
	assert_int_equal(g.p[4096 * 100], 1);
	guest_ram_free(&g);
}

struct thp_writer {
	pthread_t t;
	uint8_t *p;
	size_t len;
	atomic_bool stop;
	atomic_long writes;
};

/* A "vCPU" that keeps writing every page of the region, one byte each. */
static void *thp_writer_main(void *arg)
{
	struct thp_writer *w = arg;
	for (uint8_t k = 2; !atomic_load(&w->stop); k = (uint8_t)(k + 1) | 2)
		for (size_t i = 0; i < w->len && !atomic_load(&w->stop); i += 4096) {
			w->p[i + 100] = k;
			atomic_fetch_add_explicit(&w->writes, 1, memory_order_relaxed);
		}
	return NULL;
}

/* Passes over data in transparent huge pages leave them huge, also when
 * the region does not start on a 2 MiB boundary (the write-protect path
 * protects a whole batch; a batch that covered part of a huge page would
 * split it) and while a thread writes them (lifting the protection of the
 * one page written would split it too). */
static void thp_kept(bool with_writer)
{
	need_uffd();
	const size_t huge = 2u << 20, len = 16 * huge;
	uint8_t *m = mmap(NULL, len + 2 * huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(m != MAP_FAILED);
	uint8_t *p = (uint8_t *)ALIGN_UP((uintptr_t)m, huge);
	if (madvise(p, len + huge, MADV_HUGEPAGE) < 0)
		skip_because("no transparent huge pages");
	memset(p, 1, len + huge);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	/* One page into a huge page: registering splits the two at the ends. */
	assert_ovc_ok(ovc_region_add(e, p + 4096, len, 0, 0));
	long before = proc_kib("/proc/self/smaps_rollup", "AnonHugePages:");
	if (before < (long)(8 * huge >> 10)) {
		ovc_engine_free(e);
		munmap(m, len + 2 * huge);
		skip_because("no transparent huge pages here (AnonHugePages %ld KiB)", before);
	}
	struct thp_writer w = { .p = p + 4096, .len = len };
	if (with_writer)
		assert_int_equal(pthread_create(&w.t, NULL, thp_writer_main, &w), 0);
	for (int pass = 0; pass < (with_writer ? 20 : 1); pass++)
		assert_int_equal(ovc_engine_scan_sync(e, 0), 0);
	if (with_writer) {
		atomic_store(&w.stop, true);
		pthread_join(w.t, NULL);
	}
	long after = proc_kib("/proc/self/smaps_rollup", "AnonHugePages:");
	print_message("AnonHugePages %ld -> %ld KiB, %ld writes during the passes\n", before, after,
		      (long)w.writes);
	assert_int_equal(after, before);
	ovc_engine_free(e);
	munmap(m, len + 2 * huge);
}

static void test_thp_kept(void **s) { thp_kept(false); }
static void test_thp_kept_written(void **s) { thp_kept(true); }

/* A discard that races a MOVE batch, staged step by step (the torture's
 * "byte 0 is 85, shadow 0" on threads/anon/move, about 1 run in 5 of 5 s).
 * The handler's uffd read is held just after it began (a fault on a hole
 * starts it); a pass begins meanwhile; its move out finds the victim page
 * written after the hint scan (nonzero, so the pass would move it back);
 * right after the move the VMM discards the victim. The held read is let
 * go once the discard's event waits, so it is the read that returns it,
 * and the move out returns only once the discard is over (the kernel zaps
 * after the event is read: here a hole). The victim must read as zeros:
 * its old content is in staging, and must not come back. */
struct discard_race {
	struct sys_ops sys;
	volatile uint8_t *victim;
	uint64_t probe;              /* a hole, for UFFDIO_ZEROPAGE: EAGAIN while an event waits */
	atomic_bool hold_read;       /* hold the next uffd read */
	atomic_bool read_held, release_read;
	atomic_bool arm_move;        /* act on the next UFFDIO_MOVE (the move out) */
	atomic_bool discarded, acted;
	pthread_t discarder;
};

static void wait_flag(atomic_bool *f)
{
	for (int i = 0; i < 100000 && !atomic_load(f); i++)
		usleep(100);
}

static void *race_discard_main(void *arg)
{
	struct discard_race *d = arg;
	madvise((void *)d->victim, 4096, MADV_DONTNEED); /* waits until its event is read */
	atomic_store(&d->discarded, true);
	return NULL;
}

static ssize_t race_read(void *ctx, int fd, void *buf, size_t n)
{
	struct discard_race *d = ctx;
	if (atomic_exchange(&d->hold_read, false)) {
		atomic_store(&d->read_held, true);
		wait_flag(&d->release_read);
	}
	return sys_default.read(sys_default.ctx, fd, buf, n);
}

static int race_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
	struct discard_race *d = ctx;
	const struct sys_ops *real = &sys_default;
	if (req != UFFDIO_MOVE || !atomic_exchange(&d->arm_move, false))
		return real->ioctl(real->ctx, fd, req, arg);
	d->victim[0] = 0x55; /* a write between the hint scan and the move */
	int ret = real->ioctl(real->ctx, fd, req, arg), err = errno;
	assert_int_equal(pthread_create(&d->discarder, NULL, race_discard_main, d), 0);
	/* The probe hole gets a zero page (then EEXIST) until the discard's
	 * event waits; then every uffd ioctl that installs fails EAGAIN. */
	struct uffdio_zeropage z = { .range = { d->probe, 4096 } };
	for (int i = 0; i < 100000; i++) {
		if (real->ioctl(real->ctx, fd, UFFDIO_ZEROPAGE, &z) < 0 && errno == EAGAIN)
			break;
		usleep(100);
	}
	atomic_store(&d->release_read, true);
	wait_flag(&d->discarded);
	atomic_store(&d->acted, true);
	errno = err;
	return ret;
}

static void *touch_main(void *arg)
{
	return (void *)(uintptr_t)*(volatile uint8_t *)arg;
}

/* @npages of anonymous guest RAM, every page present and zero, for a test
 * of the MOVE path; skips where the kernel has no UFFDIO_MOVE. */
static void move_guest_zeroed(struct guest_ram *g, unsigned npages)
{
	need_uffd();
	if (!kernel_has_move())
		skip_because("kernel without UFFDIO_MOVE (Linux < 6.8)");
	guest_ram_alloc(g, (size_t)npages * 4096, BACK_ANON);
	memset(g->p, 0, g->len);
}

static void test_discard_races_move(void **state)
{
	const unsigned npages = 512;
	struct guest_ram g;
	move_guest_zeroed(&g, npages);
	uint8_t *hole = g.p + (size_t)(npages - 1) * 4096, *probe = g.p + (size_t)(npages - 2) * 4096;
	assert_int_equal(madvise(probe, 2 * 4096, MADV_DONTNEED), 0);
	struct discard_race d = { .victim = g.p, .probe = (uint64_t)(uintptr_t)probe };
	d.sys = sys_default;
	d.sys.ctx = &d;
	d.sys.read = race_read;
	d.sys.ioctl = race_ioctl;
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_MOVE | OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(engine_test_new_with_sys(&o, &d.sys, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));

	atomic_store(&d.hold_read, true);
	pthread_t toucher;
	assert_int_equal(pthread_create(&toucher, NULL, touch_main, hole), 0);
	wait_flag(&d.read_held);
	assert_true(atomic_load(&d.read_held));
	atomic_store(&d.arm_move, true);
	int64_t n = ovc_engine_scan_sync(e, 0);
	assert_true(atomic_load(&d.acted));
	pthread_join(d.discarder, NULL);
	pthread_join(toucher, NULL);
	for (size_t b = 0; b < 4096; b++)
		if (d.victim[b])
			fail_msg("discarded page byte %zu is %u after the pass (%lld reclaimed)", b, d.victim[b],
				 (long long)n);
	for (size_t b = 0; b < g.len; b++)
		assert_int_equal(g.p[b], 0);
	ovc_engine_free(e);
	assert_int_equal(d.victim[0], 0);
	guest_ram_free(&g);
}

/* Each UFFDIO_MOVE out (or back) moves and then says it failed, nothing
 * or half counted (lying-move.h); before each move out some pages of the
 * range are written, so the move out takes data that must come back. All
 * of it must: each page as in the shadow, none lost to the zero page (the
 * out lies without their handling: the written pages read zeros), and
 * reclaim goes on (the back lies without it: the pass fails with EIO and
 * reclaim stops). The engine counts every page it was not told of. */
static void move_lies(enum lie_dir dir, bool half)
{
	const unsigned npages = 512;
	struct guest_ram g;
	move_guest_zeroed(&g, npages);
	uint8_t *shadow = calloc(npages, 4096);
	struct lying_move lm;
	lying_move_init(&lm, g.p, shadow, g.len, dir, half, true);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_MOVE | OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(engine_test_new_with_sys(&o, &lm.sys, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));

	/* Every page is a zero candidate; the data pages written before the
	 * move go back, the rest are shared. */
	unsigned zero = 0;
	for (unsigned i = 0; i < npages; i++)
		zero += !LIE_TOUCHED(i);
	int64_t n = ovc_engine_scan_sync(e, 0);
	long lies = atomic_load(&lm.lies), hidden = atomic_load(&lm.hidden);
	uint64_t found = engine_test_moves_unreported(e);
	unsigned bad = 0;
	for (unsigned i = 0; i < npages; i++)
		bad += memcmp(g.p + (size_t)i * 4096, shadow + (size_t)i * 4096, 4096) != 0;
	print_message("%ld moves lied about %ld pages; the engine found %llu; %lld reclaimed; %u pages "
		      "differ from the shadow\n", lies, hidden, (unsigned long long)found, (long long)n, bad);
	assert_int_equal(bad, 0);
	assert_int_equal(n, zero);
	assert_true(lies > 0);
	assert_int_equal(found, hidden);
	/* Nothing new; the engine still works (no page left in staging). */
	assert_int_equal(ovc_engine_scan_sync(e, 0), 0);
	assert_int_equal(engine_stat_zero_now(e), zero);
	assert_int_equal(memcmp(g.p, shadow, g.len), 0);
	ovc_engine_free(e);
	assert_int_equal(memcmp(g.p, shadow, g.len), 0);
	free(shadow);
	guest_ram_free(&g);
}

static void test_move_out_lies_none(void **s) { move_lies(LIE_OUT, false); }
static void test_move_out_lies_half(void **s) { move_lies(LIE_OUT, true); }
static void test_move_back_lies_none(void **s) { move_lies(LIE_BACK, false); }
static void test_move_back_lies_half(void **s) { move_lies(LIE_BACK, true); }

/* The background worker finds zero pages by itself within its budget. */
static void test_autoscan(void **state)
{
	need_uffd();
	struct guest_ram g;
	guest_ram_alloc(&g, (size_t)NPAGES * 4096, BACK_ANON);
	fill(g.p);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .scan_interval_usec = 1000, .scan_cpu_permille = 500 };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	for (int i = 0; i < 2000 && engine_stat_zero_now(e) < expected_zero(); i++)
		usleep(1000);
	assert_int_equal(engine_stat_zero_now(e), expected_zero());
	struct ovc_engine_stats st = { .size = sizeof(st) };
	for (int i = 0; i < 2000; i++) { /* the rate is set when a pass wraps */
		assert_ovc_ok(ovc_engine_stats(e, &st));
		if (st.scan_bytes_per_sec)
			break;
		usleep(1000);
	}
	assert_true(st.scan_bytes_per_sec > 0);
	check(g.p);
	ovc_engine_free(e);
	guest_ram_free(&g);
}

/* Where nothing refuses a pinned page — shared memory, anonymous memory
 * without MOVE — a region without OVC_REGION_UNPINNED has its zero pages
 * found and counted, never dropped. */
static void kept(unsigned flags, enum backing backing)
{
	need_uffd();
	struct guest_ram g;
	guest_ram_alloc(&g, (size_t)NPAGES * 4096, backing);
	fill(g.p);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = flags | OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	assert_int_equal(ovc_engine_scan_sync(e, 0), 0);
	assert_int_equal(ovc_engine_scan_sync(e, 0), 0);
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	assert_int_equal(st.zero_pages_found, 2 * expected_zero());
	assert_int_equal(st.zero_pages_reclaimed, 0);
	assert_int_equal(st.zero_pages_now, 0);
	assert_int_equal(st.pinned_pages_kept, 0); /* no pin was seen */
	assert_int_equal(resident_pages(g.p, g.len), NPAGES);
	check(g.p);
	ovc_engine_free(e);
	guest_ram_free(&g);
}

static void test_memfd_kept(void **state) { (void)state; kept(0, BACK_MEMFD); }
static void test_nomove_kept(void **state) { (void)state; kept(OVC_ENGINE_NO_MOVE, BACK_ANON); }

/* The kernel writes into guest RAM through a pin (O_DIRECT read,
 * process_vm_writev) while passes run back to back: no page it writes may
 * be dropped meanwhile (docs/engine.md, "Pages the kernel holds pinned").
 * OVC_PIN_SECONDS sets the time per mode (default 0.3). */
static void kernel_writer(const struct mode *m, enum pin_writer_kind kind)
{
	need_uffd();
	if (m->needs_move && !kernel_has_move())
		skip_because("kernel without UFFDIO_MOVE (Linux < 6.8)");
	const size_t npages = 512;
	double secs = getenv("OVC_PIN_SECONDS") ? atof(getenv("OVC_PIN_SECONDS")) : 0.3;
	struct guest_ram g;
	guest_ram_alloc(&g, npages * 4096, m->backing);
	memset(g.p, 0, g.len);
	ovc_engine *e = NULL;
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = m->flags | OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_ovc_ok(ovc_region_add(e, g.p, g.len, 0, 0));
	/* After the region: MADV_DONTFORK keeps the pages ours alone (a page
	 * shared with the child would be refused by UFFDIO_MOVE for that). */
	struct pin_writer w;
	pin_writer_start(&w, kind, g.p, npages, false);
	bool loop = m->flags & OVC_ENGINE_NO_THREADS;
	struct loop l;
	struct pin_driver d;
	if (loop)
		loop_start(&l, e, true);
	else
		pin_driver_start(&d, e, false);

	uint64_t t0 = now_nsec(CLOCK_MONOTONIC);
	while (now_nsec(CLOCK_MONOTONIC) - t0 < (uint64_t)(secs * 1e9))
		pin_writer_step(&w);

	long passes, reclaimed;
	if (loop) {
		loop_stop_scan(&l);
		passes = l.passes;
		reclaimed = l.reclaimed;
	} else {
		pin_driver_stop(&d);
		passes = d.passes;
		reclaimed = d.reclaimed;
	}
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(e, &st));
	print_message("%s %s: %.1f s, %ld writes of %u pages, %ld pages lost, %ld passes, %ld reclaimed\n",
		      m->name, kind == PW_ODIRECT ? "O_DIRECT pread" : "process_vm_writev", secs, w.calls,
		      PW_CHUNK_PAGES, w.lost, passes, reclaimed);
	if (loop)
		loop_stop(&l);
	ovc_engine_free(e);
	pin_writer_stop(&w);
	guest_ram_free(&g);
	assert_int_equal(w.lost, 0);
	assert_true(w.calls > 0);
}

static void test_pin_odirect_move(void **s) { kernel_writer(&modes[0], PW_ODIRECT); }
static void test_pin_odirect_wp(void **s) { kernel_writer(&modes[1], PW_ODIRECT); }
static void test_pin_odirect_memfd(void **s) { kernel_writer(&modes[3], PW_ODIRECT); }
static void test_pin_odirect_loop(void **s) { kernel_writer(&modes[4], PW_ODIRECT); }
static void test_pin_vmwritev_move(void **s) { kernel_writer(&modes[0], PW_VMWRITEV); }
static void test_pin_vmwritev_wp(void **s) { kernel_writer(&modes[1], PW_VMWRITEV); }
static void test_pin_vmwritev_memfd(void **s) { kernel_writer(&modes[3], PW_VMWRITEV); }
static void test_pin_vmwritev_loop(void **s) { kernel_writer(&modes[4], PW_VMWRITEV); }

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threads_anon_move),
		cmocka_unit_test(test_threads_anon_wp),
		cmocka_unit_test(test_threads_anon_nomove),
		cmocka_unit_test(test_threads_memfd_wp),
		cmocka_unit_test(test_loop_anon_move),
		cmocka_unit_test(test_untouched),
		cmocka_unit_test(test_thp_kept),
		cmocka_unit_test(test_thp_kept_written),
		cmocka_unit_test(test_autoscan),
		cmocka_unit_test(test_discard_races_move),
		cmocka_unit_test(test_move_out_lies_none),
		cmocka_unit_test(test_move_out_lies_half),
		cmocka_unit_test(test_move_back_lies_none),
		cmocka_unit_test(test_move_back_lies_half),
		cmocka_unit_test(test_memfd_kept),
		cmocka_unit_test(test_nomove_kept),
		cmocka_unit_test(test_pin_odirect_move),
		cmocka_unit_test(test_pin_odirect_wp),
		cmocka_unit_test(test_pin_odirect_memfd),
		cmocka_unit_test(test_pin_odirect_loop),
		cmocka_unit_test(test_pin_vmwritev_move),
		cmocka_unit_test(test_pin_vmwritev_wp),
		cmocka_unit_test(test_pin_vmwritev_memfd),
		cmocka_unit_test(test_pin_vmwritev_loop),
	};
	if (getenv("OVC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("OVC_TEST_FILTER"));
	return cmocka_run_group_tests_name("share", tests, NULL, NULL);
}
