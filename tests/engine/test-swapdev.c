/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the swap backend on a real file with real io_uring and
 * O_DIRECT. The swap file goes to $OVC_TEST_SWAPDIR, else /var/tmp (it must
 * be a file system that takes O_DIRECT; tmpfs before 6.6 does not).
 * Failures are injected through tests/helpers/fault-inject.h: the kernel is never
 * mocked, only the result it hands back is replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <linux/fiemap.h>
#include <linux/fs.h>

#include <ovc/common.h>

#include "fault-inject.h"
#include "ovc-test.h"
#include "engine/swapdev.h"
#include "common/util.h"

#define PG SWAPDEV_SLOT_BYTES

static const char *swapdir(void)
{
	const char *d = getenv("OVC_TEST_SWAPDIR");
	return d && *d ? d : "/var/tmp";
}

static int new_dev_fill(const struct sys_ops *sys, uint64_t bytes, uint64_t fill_ahead,
			struct swapdev **ret)
{
	struct swapdev_opts o = {
		.size = sizeof(o), .dir = swapdir(), .size_bytes = bytes, .sys = sys,
		.fill_ahead_bytes = fill_ahead,
	};
	return swapdev_new(&o, ret);
}

static int new_dev(const struct sys_ops *sys, uint64_t bytes, struct swapdev **ret)
{
	return new_dev_fill(sys, bytes, 0, ret);
}

static void *pages_alloc(size_t n)
{
	void *p = mmap(NULL, n * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	return p;
}

/* xorshift: reproducible random content per seed. */
static void fill_random(void *p, size_t bytes, uint64_t seed)
{
	uint64_t *w = p, s = seed | 1;
	for (size_t i = 0; i < bytes / 8; i++)
		w[i] = xorshift64(&s);
}

static void shuffle(uint32_t *v, size_t n, uint64_t *s)
{
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = xorshift64(s) % (i + 1);
		uint32_t t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

struct done {
	int res;
	int calls;
	unsigned seq;      /* completion order */
	unsigned *counter; /* shared completion counter */
};

static void on_done(void *user, int res)
{
	struct done *d = user;
	d->res = res;
	d->calls++;
	d->seq = (*d->counter)++;
}

/* Wait on the eventfd like an engine loop would, until nothing is in flight. */
static void drain(struct swapdev_ring *r)
{
	while (swapdev_inflight(r) > 0) {
		struct pollfd p = { .fd = swapdev_fd(r), .events = POLLIN };
		assert_true(poll(&p, 1, 10000) == 1);
		swapdev_process(r);
	}
}

/* ---------------------------------------------------------------- tests -- */

static void test_bad_args(void **state)
{
	struct swapdev *sd = NULL;
	struct swapdev_opts o = { .size = sizeof(o), .dir = swapdir(), .size_bytes = 0 };

	assert_int_equal(swapdev_new(&o, &sd), -EINVAL);
	o.size_bytes = 4095;
	assert_int_equal(swapdev_new(&o, &sd), -EINVAL);
	o.size_bytes = PG;
	o.size = 8;
	assert_int_equal(swapdev_new(&o, &sd), -EINVAL);
	o.size = sizeof(o);
	o.dir = "/nonexistent-ovc-dir";
	assert_int_equal(swapdev_new(&o, &sd), -ENOENT);
	assert_null(sd);
	swapdev_free(NULL);
	swapdev_ring_free(NULL);

	assert_ovc_ok(new_dev(NULL, 8 * PG, &sd));
	struct swapdev_ring *r;
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	void *buf = pages_alloc(2);
	struct iovec iov = { buf, PG };
	struct done d = { 0 };
	unsigned c = 0;
	d.counter = &c;
	assert_int_equal(swapdev_queue_write(r, 8, &iov, 1, on_done, &d), -EINVAL); /* past end */
	assert_int_equal(swapdev_queue_write(r, 0, &iov, 0, on_done, &d), -EINVAL);
	iov.iov_base = (char *)buf + 512;
	assert_int_equal(swapdev_queue_write(r, 0, &iov, 1, on_done, &d), -EINVAL); /* misaligned */
	iov = (struct iovec){ buf, 100 };
	assert_int_equal(swapdev_queue_write(r, 0, &iov, 1, on_done, &d), -EINVAL);
	const void *p;
	assert_int_equal(swapdev_read_sync(r, 7, 2, 0, &p), -EINVAL);
	assert_int_equal(swapdev_read_sync(r, 0, 0, 0, &p), -EINVAL);
	uint32_t f, n;
	assert_int_equal(swapdev_slot_alloc(sd, 0, &f, &n), -EINVAL);
	assert_int_equal(d.calls, 0);
	swapdev_ring_free(r);
	swapdev_free(sd);
	munmap(buf, 2 * PG);
}

/* Runs are contiguous, next-fit, and exhaustion is -ENOSPC with nothing
 * else changed; freed slots come back. */
static void test_alloc(void **state)
{
	struct swapdev *sd;
	uint32_t f, n, total = 1000;

	assert_ovc_ok(new_dev(NULL, (uint64_t)total * PG, &sd));
	assert_int_equal(swapdev_slots_total(sd), total);
	assert_ovc_ok(swapdev_slot_alloc(sd, 16, &f, &n));
	assert_int_equal(f, 0);
	assert_int_equal(n, 16);
	assert_ovc_ok(swapdev_slot_alloc(sd, 16, &f, &n));
	assert_int_equal(f, 16); /* the next batch follows on disk */
	assert_int_equal(n, 16);
	swapdev_slot_free(sd, 4, 4); /* a hole behind the cursor */
	uint32_t got = 32 - 4;
	while (got < total - 4) {
		assert_ovc_ok(swapdev_slot_alloc(sd, 100, &f, &n));
		assert_true(n >= 1 && n <= 100);
		got += n;
	}
	assert_int_equal(got, total - 4);
	/* Only the hole is left: the run is cut to it. */
	assert_ovc_ok(swapdev_slot_alloc(sd, 100, &f, &n));
	assert_int_equal(f, 4);
	assert_int_equal(n, 4);
	assert_int_equal(swapdev_slots_free(sd), 0);
	uint32_t f2 = 77, n2 = 77;
	assert_int_equal(swapdev_slot_alloc(sd, 1, &f2, &n2), -ENOSPC);
	assert_int_equal(f2, 77); /* out-params untouched on failure */
	assert_int_equal(n2, 77);
	swapdev_slot_free(sd, 500, 3);
	assert_int_equal(swapdev_slots_free(sd), 3);
	assert_ovc_ok(swapdev_slot_alloc(sd, 8, &f, &n));
	assert_int_equal(f, 500);
	assert_int_equal(n, 3);
	swapdev_free(sd);
}

/* Many slots with random content, written as scattered pages in batches
 * (many SQEs, one submit), read back in random order both asynchronously
 * and through read_sync with readahead, compared byte for byte. */
static void test_roundtrip(void **state)
{
	const uint32_t npages = 4096; /* 16 MiB */
	struct swapdev *sd;
	struct swapdev_ring *r;
	uint64_t s = 12345;

	assert_ovc_ok(new_dev(NULL, (uint64_t)npages * PG, &sd));
	struct swapdev_ring_opts ro = { .size = sizeof(ro), .depth = 32, .bounce_pages = 16 };
	assert_ovc_ok(swapdev_ring_new(sd, &ro, &r));

	char *mem = pages_alloc(npages);
	fill_random(mem, (size_t)npages * PG, 99);
	/* Pages go out in a random order: the engine evicts scattered pages. */
	uint32_t *order = malloc(npages * sizeof(*order));
	uint32_t *slot_of = malloc(npages * sizeof(*slot_of));
	struct done *d = calloc(npages, sizeof(*d));
	unsigned counter = 0, queued = 0, batches = 0;
	for (uint32_t i = 0; i < npages; i++)
		order[i] = i;
	shuffle(order, npages, &s);

	for (uint32_t i = 0; i < npages;) {
		uint32_t first, n;
		uint32_t want = 1 + (uint32_t)(xorshift64(&s) % SWAPDEV_MAX_IOV);
		assert_ovc_ok(swapdev_slot_alloc(sd, MIN(want, npages - i), &first, &n));
		struct iovec iov[SWAPDEV_MAX_IOV];
		for (uint32_t k = 0; k < n; k++) {
			iov[k] = (struct iovec){ mem + (size_t)order[i + k] * PG, PG };
			slot_of[order[i + k]] = first + k;
		}
		struct done *dd = &d[queued];
		dd->counter = &counter;
		int err;
		while ((err = swapdev_queue_write(r, first, iov, n, on_done, dd)) == -EAGAIN) {
			assert_true(swapdev_submit(r) >= 0);
			drain(r);
			batches++;
		}
		assert_ovc_ok(err);
		queued++;
		i += n;
	}
	assert_true(swapdev_submit(r) >= 0);
	drain(r);
	unsigned ooo = 0;
	for (unsigned i = 0; i < queued; i++) {
		assert_int_equal(d[i].calls, 1);
		assert_int_equal(d[i].res, 0);
		if (i && d[i].seq < d[i - 1].seq)
			ooo++;
	}
	assert_int_equal(swapdev_slots_free(sd), 0);
	struct swapdev_ring_stats st;
	swapdev_ring_stats(r, &st);
	assert_int_equal(st.bytes_written, (uint64_t)npages * PG);
	assert_int_equal(st.errors, 0);
	print_message("wrote %u pages in %u requests, %llu submits; %u completions out of order\n",
		      npages, queued, (unsigned long long)st.submits, ooo);
	assert_true(st.submits < queued); /* batched: many SQEs per enter */

	/* Async reads, random order, into a second buffer. */
	char *back = pages_alloc(npages);
	memset(back, 0xa5, (size_t)npages * PG);
	shuffle(order, npages, &s);
	memset(d, 0, npages * sizeof(*d));
	for (uint32_t i = 0; i < npages; i++) {
		uint32_t p = order[i];
		struct iovec iov = { back + (size_t)p * PG, PG };
		d[i].counter = &counter;
		int err;
		while ((err = swapdev_queue_read(r, slot_of[p], &iov, 1, on_done, &d[i])) == -EAGAIN) {
			assert_true(swapdev_submit(r) >= 0);
			swapdev_process(r);
		}
		assert_ovc_ok(err);
	}
	assert_true(swapdev_submit(r) >= 0);
	drain(r);
	for (uint32_t i = 0; i < npages; i++)
		assert_int_equal(d[i].res, 0);
	assert_memory_equal(mem, back, (size_t)npages * PG);

	/* Sync reads with readahead of up to 16 neighbouring slots: each slot
	 * holds the page that slot_of says. */
	uint32_t *page_at = malloc(npages * sizeof(*page_at));
	for (uint32_t p = 0; p < npages; p++)
		page_at[slot_of[p]] = p;
	for (unsigned k = 0; k < 500; k++) {
		uint32_t slot = (uint32_t)(xorshift64(&s) % npages);
		unsigned n = 1 + (unsigned)(xorshift64(&s) % 16);
		n = MIN(n, npages - slot);
		const void *buf;
		assert_ovc_ok(swapdev_read_sync(r, slot, n, k % 2 ? 30 : 0, &buf));
		for (unsigned j = 0; j < n; j++)
			assert_memory_equal((const char *)buf + (size_t)j * PG,
					    mem + (size_t)page_at[slot + j] * PG, PG);
	}

	swapdev_ring_free(r);
	swapdev_free(sd);
	free(order);
	free(slot_of);
	free(page_at);
	free(d);
	munmap(mem, (size_t)npages * PG);
	munmap(back, (size_t)npages * PG);
}

/* Out of order on purpose: a 64-page write ahead of single-page reads of
 * slots written before. Each callback gets its own request's result,
 * whatever the order the kernel finishes them in. */
static void test_out_of_order(void **state)
{
	struct swapdev *sd;
	struct swapdev_ring *r;
	const unsigned nreq = 33;

	assert_ovc_ok(new_dev(NULL, 4096 * PG, &sd));
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	char *mem = pages_alloc(64 + nreq);
	char *back = pages_alloc(nreq);
	fill_random(mem, (size_t)(64 + nreq) * PG, 7);
	struct done d[33] = { 0 };
	unsigned counter = 0, ooo_runs = 0;
	for (unsigned i = 1; i < nreq; i++) {
		struct iovec one = { mem + (size_t)(63 + i) * PG, PG };
		d[i].counter = &counter;
		assert_ovc_ok(swapdev_queue_write(r, 100 + i * 7, &one, 1, on_done, &d[i]));
	}
	assert_int_equal(swapdev_submit(r), nreq - 1);
	drain(r);
	for (unsigned round = 0; round < 20; round++) {
		struct iovec big = { mem, 64 * PG };
		memset(d, 0, sizeof(d));
		memset(back, 0, (size_t)nreq * PG);
		for (unsigned i = 0; i < nreq; i++)
			d[i].counter = &counter;
		counter = 0;
		assert_ovc_ok(swapdev_queue_write(r, 0, &big, 1, on_done, &d[0]));
		for (unsigned i = 1; i < nreq; i++) {
			struct iovec one = { back + (size_t)i * PG, PG };
			assert_ovc_ok(swapdev_queue_read(r, 100 + i * 7, &one, 1, on_done, &d[i]));
		}
		assert_int_equal(swapdev_submit(r), nreq);
		drain(r);
		bool ooo = false;
		for (unsigned i = 0; i < nreq; i++) {
			assert_int_equal(d[i].calls, 1);
			assert_int_equal(d[i].res, 0);
			if (d[i].seq != i)
				ooo = true;
			if (i)
				assert_memory_equal(back + (size_t)i * PG, mem + (size_t)(63 + i) * PG, PG);
		}
		ooo_runs += ooo;
	}
	print_message("rounds with completions out of order: %u of 20\n", ooo_runs);
	const void *buf;
	assert_ovc_ok(swapdev_read_sync(r, 0, 64, 0, &buf));
	assert_memory_equal(buf, mem, 64 * PG);
	swapdev_ring_free(r);
	swapdev_free(sd);
	munmap(mem, (size_t)(64 + nreq) * PG);
	munmap(back, (size_t)nreq * PG);
}

/* Fail each completion in turn, with -EIO and then with a short count:
 * exactly that request reports the failure, the others land and read back
 * right, and the failed request's slots read back as whatever was there
 * before — never as a success. */
static void run_cqe_injection(bool short_count)
{
	const unsigned nreq = 8, per = 4;
	char *mem = pages_alloc(nreq * per);
	fill_random(mem, (size_t)nreq * per * PG, 3);

	for (unsigned k = 1; k <= nreq; k++) {
		struct fault_inject fi;
		struct swapdev *sd;
		struct swapdev_ring *r;
		struct done d[8] = { 0 };
		unsigned counter = 0;

		fault_inject_init(&fi, k, EIO, 1u << OVC_SYS_URING_CQE);
		if (short_count)
			fi.short_res = 512;
		assert_ovc_ok(new_dev(&fi.sys, nreq * per * PG, &sd));
		assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
		for (unsigned i = 0; i < nreq; i++) {
			struct iovec iov[4];
			for (unsigned j = 0; j < per; j++)
				iov[j] = (struct iovec){ mem + (size_t)(i * per + j) * PG, PG };
			d[i].counter = &counter;
			assert_ovc_ok(swapdev_queue_write(r, i * per, iov, per, on_done, &d[i]));
		}
		assert_int_equal(swapdev_submit(r), nreq);
		drain(r);
		unsigned failed = 0;
		for (unsigned i = 0; i < nreq; i++) {
			assert_int_equal(d[i].calls, 1);
			if (d[i].res) {
				assert_int_equal(d[i].res, -EIO);
				assert_int_equal(d[i].seq, k - 1); /* the k-th completion */
				failed++;
			}
		}
		assert_int_equal(failed, 1);
		struct swapdev_ring_stats st;
		swapdev_ring_stats(r, &st);
		assert_int_equal(st.errors, 1);
		assert_int_equal(st.short_io, short_count ? 1 : 0);
		assert_int_equal(st.writes, nreq - 1);
		for (unsigned i = 0; i < nreq; i++) {
			if (d[i].res)
				continue;
			const void *buf;
			assert_ovc_ok(swapdev_read_sync(r, i * per, per, 0, &buf));
			assert_memory_equal(buf, mem + (size_t)i * per * PG, per * PG);
		}
		swapdev_ring_free(r);
		swapdev_free(sd);
	}

	/* A failed synchronous read returns the error, not a buffer. */
	for (int shortc = 0; shortc <= 1; shortc++) {
		struct fault_inject fi;
		struct swapdev *sd;
		struct swapdev_ring *r;
		const void *buf = NULL;
		fault_inject_init(&fi, 1, EIO, 1u << OVC_SYS_URING_CQE);
		fi.short_res = shortc ? 4096 : 0;
		assert_ovc_ok(new_dev(&fi.sys, 16 * PG, &sd));
		assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
		assert_int_equal(swapdev_read_sync(r, 0, 4, 5, &buf), -EIO);
		assert_null(buf);
		assert_ovc_ok(swapdev_read_sync(r, 0, 4, 5, &buf)); /* the next one works */
		assert_non_null(buf);
		swapdev_ring_free(r);
		swapdev_free(sd);
	}
	munmap(mem, (size_t)nreq * per * PG);
}

static void test_inject_cqe_error(void **state)
{
	run_cqe_injection(false);
}

static void test_inject_cqe_short(void **state)
{
	run_cqe_injection(true);
}

/* Every syscall of set-up fails once in turn: the error comes back, nothing
 * leaks (ASan), and the run after works. fallocate gets ENOSPC, as from a
 * full disk. */
static void test_inject_setup(void **state)
{
	struct fault_inject fi;
	long calls;

	fault_inject_init(&fi, 0, 0, 0);
	{
		struct swapdev *sd;
		struct swapdev_ring *r;
		assert_ovc_ok(new_dev(&fi.sys, 64 * PG, &sd));
		assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
		swapdev_ring_free(r);
		swapdev_free(sd);
	}
	calls = atomic_load(&fi.calls);
	assert_true(calls >= 5); /* open, fallocate, mmap, uring_init, eventfd */
	for (long n = 1; n <= calls; n++) {
		struct swapdev *sd = NULL;
		struct swapdev_ring *r = NULL;
		int e = ENOMEM;
		fault_inject_init(&fi, n, e, 0);
		int err = new_dev(&fi.sys, 64 * PG, &sd);
		if (err == 0) {
			err = swapdev_ring_new(sd, NULL, &r);
			swapdev_ring_free(r);
			swapdev_free(sd);
		}
		assert_int_equal(fi.injected, 1);
		assert_int_equal(err, -ENOMEM);
	}
	fault_inject_init(&fi, 1, ENOSPC, 1u << OVC_SYS_FALLOCATE);
	struct swapdev *sd = (void *)0x1;
	assert_int_equal(new_dev(&fi.sys, 64 * PG, &sd), -ENOSPC);
	assert_ptr_equal(sd, (void *)0x1);
	/* No real ENOSPC here: ext4 fallocate would fill the shared disk
	 * before failing. Over 2^32-1 slots is refused before any I/O. */
	assert_int_equal(new_dev(NULL, UINT64_C(17) * 1024 * GIB, &sd), -EINVAL);
}

/* A failed submit leaves the requests queued; the next submit sends them and
 * every callback runs once. A failed submit of read_sync returns the error
 * and the next read_sync still gives the right data. */
static void test_inject_submit(void **state)
{
	struct fault_inject fi;
	struct swapdev *sd;
	struct swapdev_ring *r;
	struct done d[4] = { 0 };
	unsigned counter = 0;
	char *mem = pages_alloc(4);
	fill_random(mem, 4 * PG, 5);

	fault_inject_init(&fi, 1, EBUSY, 1u << OVC_SYS_URING_SUBMIT);
	assert_ovc_ok(new_dev(&fi.sys, 16 * PG, &sd));
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	for (unsigned i = 0; i < 4; i++) {
		struct iovec iov = { mem + (size_t)i * PG, PG };
		d[i].counter = &counter;
		assert_ovc_ok(swapdev_queue_write(r, i, &iov, 1, on_done, &d[i]));
	}
	assert_int_equal(swapdev_submit(r), -EBUSY);
	assert_int_equal(swapdev_inflight(r), 4);
	assert_int_equal(swapdev_submit(r), 4);
	drain(r);
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(d[i].calls, 1);
		assert_int_equal(d[i].res, 0);
	}
	const void *buf;
	fault_inject_init(&fi, 1, EBUSY, 1u << OVC_SYS_URING_SUBMIT);
	assert_int_equal(swapdev_read_sync(r, 0, 4, 0, &buf), -EBUSY);
	assert_ovc_ok(swapdev_read_sync(r, 2, 2, 0, &buf));
	assert_memory_equal(buf, mem + 2 * PG, 2 * PG);
	swapdev_ring_free(r);
	swapdev_free(sd);
	munmap(mem, 4 * PG);
}

/* swapdev_wait: queued reads into the caller's pages are submitted and
 * waited for, spinning first or not; nothing queued returns 0 at once. */
static void test_wait(void **state)
{
	struct swapdev *sd;
	struct swapdev_ring *r;
	char *mem = pages_alloc(8), *back = pages_alloc(8);
	struct done d[8] = { 0 };
	unsigned counter = 0;

	fill_random(mem, 8 * PG, 21);
	assert_ovc_ok(new_dev(NULL, 8 * PG, &sd));
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	assert_int_equal(swapdev_wait(r, 10), 0);
	struct iovec all = { mem, 8 * PG };
	d[0].counter = &counter;
	assert_ovc_ok(swapdev_queue_write(r, 0, &all, 1, on_done, &d[0]));
	assert_int_equal(swapdev_wait(r, 0), 1); /* submits, sleeps */
	assert_int_equal(d[0].res, 0);
	for (unsigned round = 0; round < 2; round++) {
		memset(back, 0, 8 * PG);
		memset(d, 0, sizeof(d));
		for (unsigned i = 0; i < 8; i++) {
			struct iovec one = { back + (size_t)i * PG, PG };
			d[i].counter = &counter;
			assert_ovc_ok(swapdev_queue_read(r, 7 - i, &one, 1, on_done, &d[i]));
		}
		unsigned ended = 0;
		while (ended < 8) {
			int n = swapdev_wait(r, round ? 50 : 0);
			assert_true(n > 0);
			ended += (unsigned)n;
		}
		assert_int_equal(swapdev_inflight(r), 0);
		for (unsigned i = 0; i < 8; i++) {
			assert_int_equal(d[i].calls, 1);
			assert_memory_equal(back + (size_t)i * PG, mem + (size_t)(7 - i) * PG, PG);
		}
	}
	swapdev_ring_free(r);
	swapdev_free(sd);
	munmap(mem, 8 * PG);
	munmap(back, 8 * PG);
}

/* Freeing a ring with requests queued or in flight waits for them and runs
 * every callback; the queue is bounded (-EAGAIN at depth). Slot exhaustion
 * while writing stops at -ENOSPC with every written page intact. */
static void test_free_inflight_and_exhaustion(void **state)
{
	struct swapdev *sd;
	struct swapdev_ring *r;
	const unsigned n = 40;
	struct done d[40] = { 0 };
	unsigned counter = 0;
	char *mem = pages_alloc(n);
	fill_random(mem, (size_t)n * PG, 11);

	assert_ovc_ok(new_dev(NULL, 32 * PG, &sd));
	struct swapdev_ring_opts ro = { .size = sizeof(ro), .depth = 9 };
	assert_ovc_ok(swapdev_ring_new(sd, &ro, &r));
	unsigned written = 0, again = 0;
	for (unsigned i = 0; i < n; i++) {
		uint32_t slot, got;
		int err = swapdev_slot_alloc(sd, 1, &slot, &got);
		if (err == -ENOSPC)
			break;
		assert_ovc_ok(err);
		struct iovec iov = { mem + (size_t)i * PG, PG };
		d[i].counter = &counter;
		while ((err = swapdev_queue_write(r, slot, &iov, 1, on_done, &d[i])) == -EAGAIN) {
			again++;
			swapdev_submit(r);
			drain(r);
		}
		assert_ovc_ok(err);
		written++;
	}
	assert_int_equal(written, 32);
	assert_true(again > 0);
	swapdev_submit(r); /* some in flight, */
	struct iovec iov = { mem, PG };
	d[written].counter = &counter;
	assert_ovc_ok(swapdev_queue_write(r, 0, &iov, 1, on_done, &d[written])); /* one only queued */
	swapdev_ring_free(r);
	for (unsigned i = 0; i <= written; i++) {
		assert_int_equal(d[i].calls, 1);
		assert_int_equal(d[i].res, 0);
	}
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	for (unsigned i = 0; i < written; i++) {
		const void *buf;
		assert_ovc_ok(swapdev_read_sync(r, i, 1, 0, &buf));
		assert_memory_equal(buf, mem + (size_t)i * PG, PG);
	}
	swapdev_ring_free(r);
	swapdev_free(sd);
	munmap(mem, (size_t)n * PG);
}

/* Registering the bounce buffer can be refused by RLIMIT_MEMLOCK for an
 * unprivileged VMM; reads still work through the plain opcode. Only
 * testable without CAP_IPC_LOCK, which ignores the limit. */
static void test_unregistered_bounce(void **state)
{
	struct rlimit old, lim;
	struct swapdev *sd;
	struct swapdev_ring *r;

	if (geteuid() == 0)
		skip_because("root (CAP_IPC_LOCK) is not limited by RLIMIT_MEMLOCK");
	getrlimit(RLIMIT_MEMLOCK, &old);
	lim = (struct rlimit){ 0, old.rlim_max };
	assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &lim), 0);
	assert_ovc_ok(new_dev(NULL, 16 * PG, &sd));
	int err = swapdev_ring_new(sd, NULL, &r);
	setrlimit(RLIMIT_MEMLOCK, &old);
	assert_ovc_ok(err);
	const void *buf;
	assert_ovc_ok(swapdev_read_sync(r, 0, 4, 0, &buf));
	swapdev_ring_free(r);
	swapdev_free(sd);
}

/* Two threads, each with its own ring, share one swapdev: allocation runs
 * race on the allocator, writes and reads run concurrently, every page
 * reads back as written, and every slot is free again at the end. */
struct worker {
	struct swapdev *sd;
	uint64_t seed;
	unsigned rounds, pages_checked;
	int failed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct swapdev_ring *r;
	const unsigned batch = 48;
	char *mem = pages_alloc(batch);
	uint32_t first[48], len[48];

	if (swapdev_ring_new(w->sd, NULL, &r) < 0) {
		w->failed = 1;
		return NULL;
	}
	for (unsigned round = 0; round < w->rounds && !w->failed; round++) {
		unsigned counter = 0, nruns = 0, pages = 0;
		struct done d[48] = { 0 };
		fill_random(mem, (size_t)batch * PG, w->seed + round);
		/* Take runs until the batch is covered; write each run. */
		while (pages < batch) {
			uint32_t f, n;
			int err = swapdev_slot_alloc(w->sd, MIN(8u, batch - pages), &f, &n);
			if (err == -ENOSPC)
				break; /* the other thread holds the rest: write less */
			struct iovec iov[8];
			for (uint32_t k = 0; k < n; k++)
				iov[k] = (struct iovec){ mem + (size_t)(pages + k) * PG, PG };
			d[nruns].counter = &counter;
			if (swapdev_queue_write(r, f, iov, n, on_done, &d[nruns]) < 0) {
				w->failed = 2;
				break;
			}
			first[nruns] = f;
			len[nruns++] = n;
			pages += n;
		}
		swapdev_submit(r);
		while (swapdev_inflight(r) > 0) {
			struct pollfd p = { .fd = swapdev_fd(r), .events = POLLIN };
			poll(&p, 1, 10000);
			swapdev_process(r);
		}
		for (unsigned i = 0, off = 0; i < nruns; off += len[i], i++) {
			const void *buf;
			if (d[i].res != 0 || swapdev_read_sync(r, first[i], len[i], 10, &buf) < 0 ||
			    memcmp(buf, mem + (size_t)off * PG, (size_t)len[i] * PG) != 0)
				w->failed = 3;
			w->pages_checked += len[i];
			swapdev_slot_free(w->sd, first[i], len[i]);
		}
	}
	swapdev_ring_free(r);
	munmap(mem, (size_t)batch * PG);
	return NULL;
}

static void two_threads(uint32_t slots, uint64_t fill_ahead)
{
	struct swapdev *sd;
	struct worker w[2];
	pthread_t th[2];

	assert_ovc_ok(new_dev_fill(NULL, (uint64_t)slots * PG, fill_ahead, &sd));
	for (int i = 0; i < 2; i++) {
		w[i] = (struct worker){ .sd = sd, .seed = 1000u * (unsigned)(i + 1), .rounds = 200 };
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].failed, 0);
	}
	print_message("pages written, read back and checked: %u + %u\n", w[0].pages_checked,
		      w[1].pages_checked);
	assert_int_equal(swapdev_slots_free(sd), slots);
	swapdev_free(sd);
}

static void test_two_threads(void **state)
{
	/* Smaller than two batches: the threads run into each other. */
	two_threads(80, 0);
}

/* ---------------------------------------------------------------- fill -- */

/* The fill needs a file system with unwritten extents; elsewhere it does
 * not start, and these tests have nothing to check. */
static bool fill_runs_here(void)
{
	struct swapdev *sd;
	struct swapdev_fill_stats st;
	assert_ovc_ok(new_dev_fill(NULL, 256 * PG, 256 * PG, &sd));
	swapdev_fill_stats(sd, &st);
	swapdev_free(sd);
	if (!st.active)
		print_message("no fill on this file system (%s): skipped\n", swapdir());
	return st.active;
}

/* The same two threads racing while the fill runs under them and they take
 * unfilled slots from it: every page still reads back right (the fill never
 * writes over a slot that was handed out). */
static void test_two_threads_fill(void **state)
{
	if (!fill_runs_here())
		return;
	two_threads(4096, 2048 * PG);
}

/* A pwrite that stops at a gate: the test holds the fill's write in flight
 * for as long as it likes. Failures still injected through fi. */
struct gate {
	struct fault_inject fi; /* first: fi's ops get the gate as their ctx */
	struct sys_ops sys;
	sem_t entered, release;
	atomic_bool open;
};

static ssize_t gate_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	struct gate *g = ctx;
	if (!atomic_load(&g->open)) {
		sem_post(&g->entered);
		sem_wait(&g->release);
	}
	return g->fi.sys.pwrite(ctx, fd, buf, n, off);
}

static void gate_init(struct gate *g)
{
	fault_inject_init(&g->fi, 0, 0, 0);
	g->sys = g->fi.sys;
	g->sys.ctx = g;
	g->sys.pwrite = gate_pwrite;
	sem_init(&g->entered, 0, 0);
	sem_init(&g->release, 0, 0);
	atomic_store(&g->open, false);
}

static void gate_fini(struct gate *g)
{
	sem_destroy(&g->entered);
	sem_destroy(&g->release);
}

static struct swapdev_fill_stats fill_stats(struct swapdev *sd)
{
	struct swapdev_fill_stats st;
	swapdev_fill_stats(sd, &st);
	return st;
}

/* Slots come from the fill's part only once it wrote them: while the first
 * chunk is in flight, an allocation gets unwritten slots past it, the fill
 * goes on after them, never over them, and the first chunk is handed out
 * once written. The fill stops at its target. */
static void test_fill_ahead(void **state)
{
	struct swapdev *sd;
	struct swapdev_ring *r;
	struct gate g;
	uint32_t f, n;
	const uint32_t C = SWAPDEV_FILL_CHUNK_SLOTS;

	if (!fill_runs_here())
		return;
	gate_init(&g);
	assert_ovc_ok(new_dev_fill(&g.sys, 4 * C * PG, 2 * C * PG, &sd));
	sem_wait(&g.entered); /* chunk [0, C) in flight */
	assert_true(fill_stats(sd).active);
	assert_int_equal(fill_stats(sd).fill_next, C);
	assert_int_equal(fill_stats(sd).slots_filled, 0);
	assert_int_equal(swapdev_slots_free(sd), 4 * C);

	/* Nothing written yet: unwritten slots past the chunk, counted. */
	assert_ovc_ok(swapdev_slot_alloc(sd, 100, &f, &n));
	assert_int_equal(f, C);
	assert_int_equal(n, 100);
	assert_int_equal(fill_stats(sd).slots_unfilled, 100);
	assert_int_equal(fill_stats(sd).fill_next, C + 100);
	/* Pages in them, before the fill goes on past them. */
	char *mem = pages_alloc(n);
	fill_random(mem, (size_t)n * PG, 77);
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	struct done d = { 0 };
	unsigned counter = 0;
	d.counter = &counter;
	struct iovec iov = { mem, (size_t)n * PG };
	assert_ovc_ok(swapdev_queue_write(r, f, &iov, 1, on_done, &d));
	swapdev_submit(r);
	drain(r);
	assert_int_equal(d.res, 0);

	sem_post(&g.release);
	sem_wait(&g.entered); /* chunk 0 written; the next starts after the 100 */
	assert_int_equal(fill_stats(sd).slots_filled, C);
	assert_int_equal(fill_stats(sd).fill_next, 2 * C + 100);
	/* Chunk 0 is handed out now, the chunk in flight is not. */
	assert_ovc_ok(swapdev_slot_alloc(sd, 2 * C, &f, &n));
	assert_int_equal(f, 0);
	assert_int_equal(n, C);

	atomic_store(&g.open, true);
	sem_post(&g.release);
	swapdev_fill_wait_idle(sd);
	struct swapdev_fill_stats st = fill_stats(sd);
	/* 2C free written slots ready: the one in flight, and one more. */
	assert_int_equal(st.slots_filled, 3 * C);
	assert_int_equal(st.fill_next, 3 * C + 100);
	assert_int_equal(st.errors, 0);
	assert_false(st.failed);
	/* The filled free slots go first, [C + 100, 3C + 100). */
	assert_ovc_ok(swapdev_slot_alloc(sd, 2 * C, &f, &n));
	assert_int_equal(f, C + 100);
	assert_int_equal(n, 2 * C);
	assert_int_equal(fill_stats(sd).slots_unfilled, 100);

	/* The pages in the slots taken from under the fill are intact. */
	const void *buf;
	for (uint32_t i = 0; i < 100; i += 50) {
		assert_ovc_ok(swapdev_read_sync(r, C + i, 50, 0, &buf));
		assert_memory_equal(buf, mem + (size_t)i * PG, 50 * PG);
	}
	/* And the fill wrote zeros. */
	assert_ovc_ok(swapdev_read_sync(r, 0, 64, 0, &buf));
	for (size_t i = 0; i < 64 * PG; i++)
		assert_int_equal(((const char *)buf)[i], 0);
	swapdev_ring_free(r);
	swapdev_free(sd);
	gate_fini(&g);
	munmap(mem, 100 * PG);
}

struct alloc_arg {
	struct swapdev *sd;
	uint32_t first, n;
	int err;
	atomic_bool done;
};

static void *alloc_thread(void *arg)
{
	struct alloc_arg *a = arg;
	a->err = swapdev_slot_alloc(a->sd, 8, &a->first, &a->n);
	atomic_store(&a->done, true);
	return NULL;
}

static void *free_thread(void *arg)
{
	struct alloc_arg *a = arg;
	swapdev_free(a->sd);
	atomic_store(&a->done, true);
	return NULL;
}

/* A file of one chunk: while it is being filled no slot is free but those;
 * an allocation waits for the write, then gets slot 0. And freeing the
 * device waits for a fill write in flight. */
static void test_fill_wait(void **state)
{
	struct swapdev *sd;
	struct gate g;
	pthread_t th;
	const uint32_t C = SWAPDEV_FILL_CHUNK_SLOTS;

	if (!fill_runs_here())
		return;
	gate_init(&g);
	assert_ovc_ok(new_dev_fill(&g.sys, C * PG, C * PG, &sd));
	sem_wait(&g.entered);
	struct alloc_arg a = { .sd = sd };
	pthread_create(&th, NULL, alloc_thread, &a);
	usleep(20000);
	assert_false(atomic_load(&a.done)); /* waits for the chunk */
	sem_post(&g.release);
	pthread_join(th, NULL);
	assert_ovc_ok(a.err);
	assert_int_equal(a.first, 0);
	assert_int_equal(a.n, 8);
	assert_int_equal(fill_stats(sd).slots_filled, C);
	assert_int_equal(fill_stats(sd).slots_unfilled, 0);
	swapdev_free(sd);

	/* Free with a write in flight: it returns only after the write. */
	assert_ovc_ok(new_dev_fill(&g.sys, 4 * C * PG, 4 * C * PG, &sd));
	sem_wait(&g.entered);
	struct alloc_arg fa = { .sd = sd };
	pthread_create(&th, NULL, free_thread, &fa);
	usleep(20000);
	assert_false(atomic_load(&fa.done));
	sem_post(&g.release);
	pthread_join(th, NULL);
	assert_true(atomic_load(&fa.done));
	gate_fini(&g);
}

/* A fill write that fails: counted, the fill stops, the failed chunk is
 * not counted as filled and goes back to the unwritten part, and every
 * slot is still handed out (the rest as unfilled) and works. Also a short
 * write. */
static ssize_t short_pwrite(void *ctx, int fd, const void *buf, size_t n, off_t off)
{
	(void)ctx;
	return pwrite(fd, buf, n / 2, off);
}

static void fill_fails(const struct sys_ops *sys, uint32_t good_chunks)
{
	struct swapdev *sd;
	const uint32_t C = SWAPDEV_FILL_CHUNK_SLOTS, total = 4 * C;
	uint32_t f, n, got = 0;

	assert_ovc_ok(new_dev_fill(sys, (uint64_t)total * PG, (uint64_t)total * PG, &sd));
	swapdev_fill_wait_idle(sd);
	struct swapdev_fill_stats st = fill_stats(sd);
	assert_true(st.failed);
	assert_int_equal(st.errors, 1);
	assert_int_equal(st.slots_filled, good_chunks * C);
	assert_int_equal(st.fill_next, good_chunks * C);
	while (swapdev_slot_alloc(sd, 100, &f, &n) == 0)
		got += n;
	assert_int_equal(got, total);
	st = fill_stats(sd);
	assert_int_equal(st.slots_unfilled, total - good_chunks * C);
	assert_int_equal(st.fill_next, total);

	/* Written, read back: the unfilled slots work, only slower. */
	struct swapdev_ring *r;
	char *mem = pages_alloc(64);
	fill_random(mem, 64 * PG, 5);
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	struct done d = { 0 };
	unsigned counter = 0;
	d.counter = &counter;
	struct iovec iov = { mem, 64 * PG };
	assert_ovc_ok(swapdev_queue_write(r, total - 64, &iov, 1, on_done, &d));
	swapdev_submit(r);
	drain(r);
	assert_int_equal(d.res, 0);
	const void *buf;
	assert_ovc_ok(swapdev_read_sync(r, total - 64, 64, 0, &buf));
	assert_memory_equal(buf, mem, 64 * PG);
	swapdev_ring_free(r);
	swapdev_free(sd);
	munmap(mem, 64 * PG);
}

static void test_fill_error(void **state)
{
	struct fault_inject fi;

	if (!fill_runs_here())
		return;
	for (uint32_t k = 0; k < 3; k++) {
		fault_inject_init(&fi, k + 1, EIO, 1u << OVC_SYS_PWRITE);
		fill_fails(&fi.sys, k);
		assert_int_equal(atomic_load(&fi.injected), 1);
	}
	struct sys_ops s = sys_default;
	s.pwrite = short_pwrite;
	fill_fails(&s, 0);
}

/* The swap file has no name and can never get one: O_TMPFILE | O_EXCL
 * makes linkat() through /proc/self/fd fail (without O_EXCL it works, as
 * the control below shows), and the directory holds nothing of ours. */
static void test_file_unlinkable(void **state)
{
	struct swapdev *sd;
	char proc[64], name[4096];

	assert_ovc_ok(new_dev(NULL, 16 * PG, &sd));
	int fd = swapdev_file_fd(sd);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_nlink, 0);
	assert_true((st.st_mode & 0777) == 0600);
	int fl = fcntl(fd, F_GETFD);
	assert_true(fl >= 0 && (fl & FD_CLOEXEC));
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	snprintf(name, sizeof(name), "%s/ovc-test-link-%d", swapdir(), getpid());
	errno = 0;
	assert_int_equal(linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(access(name, F_OK), -1);
	swapdev_free(sd);

	/* The control: a plain O_TMPFILE can be linked (so the check above
	 * can fail). Needs a file system with O_TMPFILE. */
	int t = open(swapdir(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (t >= 0) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", t);
		assert_int_equal(linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW), 0);
		assert_int_equal(unlink(name), 0);
		close(t);
	}
}

/* ------------------------------------------------------------- scrub -- */

static int new_dev_flags(const struct sys_ops *sys, uint64_t bytes, uint64_t fill_ahead,
			 unsigned flags, struct swapdev **ret)
{
	struct swapdev_opts o = {
		.size = sizeof(o), .dir = swapdir(), .size_bytes = bytes, .sys = sys,
		.fill_ahead_bytes = fill_ahead, .flags = flags,
	};
	return swapdev_new(&o, ret);
}

/* The file as anyone holding its fd sees it: read through /proc/self/fd
 * (the file has no name), page cache and all, not through our O_DIRECT fd. */
static void read_raw(struct swapdev *sd, uint32_t slot, uint32_t n, void *buf)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", swapdev_file_fd(sd));
	int fd = open(proc, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, (size_t)n * PG, (off_t)slot * PG), (ssize_t)n * PG);
	close(fd);
}

static bool all_zero(const void *p, size_t bytes)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < bytes; i++)
		if (b[i])
			return false;
	return true;
}

/* Write @n slots from @slot with content of @seed, through a ring. */
static void write_slots(struct swapdev *sd, uint32_t slot, uint32_t n, uint64_t seed, char *mem)
{
	struct swapdev_ring *r;
	struct done d = { 0 };
	unsigned counter = 0;
	d.counter = &counter;
	fill_random(mem, (size_t)n * PG, seed);
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	for (uint32_t off = 0; off < n; off += SWAPDEV_MAX_IOV) {
		struct iovec iov = { mem + (size_t)off * PG, (size_t)MIN(n - off, SWAPDEV_MAX_IOV) * PG };
		assert_ovc_ok(swapdev_queue_write(r, slot + off, &iov, 1, on_done, &d));
		swapdev_submit(r);
		drain(r);
		assert_int_equal(d.res, 0);
	}
	swapdev_ring_free(r);
}

/* Whether @slot holds no written block: a hole or an unwritten extent
 * (FIEMAP), which is what clearing leaves on ext4 and xfs. */
static bool is_hole(struct swapdev *sd, uint32_t slot)
{
	struct {
		struct fiemap fm;
		struct fiemap_extent ext[1];
	} q = { .fm = { .fm_start = (uint64_t)slot * PG, .fm_length = PG, .fm_flags = FIEMAP_FLAG_SYNC,
			.fm_extent_count = 1 } };
	assert_int_equal(ioctl(swapdev_file_fd(sd), FS_IOC_FIEMAP, &q), 0);
	return q.fm.fm_mapped_extents == 0 || (q.ext[0].fe_flags & FIEMAP_EXTENT_UNWRITTEN);
}

/* swapdev_scrub() (what the engine calls after each tick, and the only
 * scrub with SWAPDEV_F_NO_THREAD): freed slots read zeros and are holes;
 * the slots around them keep their bytes; a stale slot handed out again is
 * not cleared afterwards; the allocator prefers written slots over cleared
 * ones. */
static void test_scrub_clear(void **state)
{
	struct swapdev *sd;
	struct swapdev_fill_stats st;
	uint32_t f, n;
	char *mem = pages_alloc(64), *raw = pages_alloc(64);

	assert_ovc_ok(new_dev_flags(NULL, 128 * PG, 0, SWAPDEV_F_NO_THREAD, &sd));
	assert_ovc_ok(swapdev_slot_alloc(sd, 64, &f, &n));
	assert_int_equal(f, 0);
	assert_int_equal(n, 64);
	write_slots(sd, 0, 64, 11, mem);
	read_raw(sd, 0, 64, raw);
	assert_memory_equal(raw, mem, 64 * PG); /* what the test looks at is there */

	swapdev_slot_free(sd, 8, 8);
	swapdev_slot_free(sd, 40, 1);
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.slots_stale, 9);
	read_raw(sd, 8, 1, raw);
	assert_memory_equal(raw, mem + 8 * PG, PG); /* not yet: no thread */
	swapdev_scrub(sd);
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.slots_stale, 0);
	assert_int_equal(st.slots_holes, 9);
	assert_int_equal(st.slots_cleared, 9);
	assert_int_equal(st.scrub_errors, 0);
	read_raw(sd, 0, 64, raw);
	for (uint32_t s = 0; s < 64; s++) {
		bool freed = (s >= 8 && s < 16) || s == 40;
		if (freed)
			assert_true(all_zero(raw + (size_t)s * PG, PG));
		else
			assert_memory_equal(raw + (size_t)s * PG, mem + (size_t)s * PG, PG);
	}
	struct statfs sf;
	assert_int_equal(fstatfs(swapdev_file_fd(sd), &sf), 0);
	if (sf.f_type == 0xEF53 || sf.f_type == 0x58465342) { /* ext4, xfs: 4 KiB blocks */
		assert_true(is_hole(sd, 8));
		assert_true(is_hole(sd, 40));
		assert_false(is_hole(sd, 7)); /* the check can fail */
	}

	/* Reuse: slot 20 freed and handed out again before any scrub is
	 * overwritten by its owner, not cleared after. Written free slots
	 * come first: 64..127 (never cleared), then 20, not the holes. */
	swapdev_slot_free(sd, 20, 1);
	assert_ovc_ok(swapdev_slot_alloc(sd, 64, &f, &n));
	assert_int_equal(f, 64);
	assert_int_equal(n, 64);
	assert_ovc_ok(swapdev_slot_alloc(sd, 64, &f, &n));
	assert_int_equal(f, 20);
	assert_int_equal(n, 1);
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.slots_reused, 1);
	assert_int_equal(st.slots_stale, 0);
	swapdev_scrub(sd);
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.slots_cleared, 9);
	read_raw(sd, 20, 1, raw);
	assert_memory_equal(raw, mem + 20 * PG, PG); /* never cleared: still its page */
	/* Then the holes: 8..15 as one run. */
	assert_ovc_ok(swapdev_slot_alloc(sd, 64, &f, &n));
	assert_int_equal(f, 8);
	assert_int_equal(n, 8);
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.slots_holes, 1);
	(void)state;
	swapdev_free(sd);
	munmap(mem, 64 * PG);
	munmap(raw, 64 * PG);
}

/* The background thread scrubs by itself once the allocator is idle: with
 * the fill short of written slots it writes zeros (the slots stay written,
 * no hole), otherwise it clears them (unwritten extents). */
static void test_scrub_thread(void **state)
{
	if (!fill_runs_here())
		return;
	char *mem = pages_alloc(64), *raw = pages_alloc(64);
	for (int short_fill = 1; short_fill >= 0; short_fill--) {
		struct swapdev *sd;
		struct swapdev_fill_stats st;
		uint32_t f, n;
		/* Fill all 256 slots ready, or only 16: after 64 slots are
		 * handed out, 192 filled stay free, short of 256, not of 16. */
		assert_ovc_ok(new_dev_fill(NULL, 256 * PG, (short_fill ? 256 : 16) * PG, &sd));
		swapdev_fill_wait_idle(sd);
		assert_ovc_ok(swapdev_slot_alloc(sd, 64, &f, &n));
		assert_int_equal(n, 64);
		write_slots(sd, f, 64, 12, mem);
		swapdev_slot_free(sd, f + 4, 4);
		swapdev_fill_wait_idle(sd);
		swapdev_fill_stats(sd, &st);
		assert_int_equal(st.slots_stale, 0);
		read_raw(sd, f, 64, raw);
		for (uint32_t s = 0; s < 64; s++) {
			if (s >= 4 && s < 8)
				assert_true(all_zero(raw + (size_t)s * PG, PG));
			else
				assert_memory_equal(raw + (size_t)s * PG, mem + (size_t)s * PG, PG);
		}
		if (short_fill) {
			assert_int_equal(st.slots_zeroed, 4);
			assert_int_equal(st.slots_cleared, 0);
			assert_false(is_hole(sd, f + 4));
		} else {
			assert_int_equal(st.slots_cleared, 4);
			assert_int_equal(st.slots_zeroed, 0);
			assert_true(is_hole(sd, f + 4));
		}
		swapdev_free(sd);
	}
	(void)state;
	munmap(mem, 64 * PG);
	munmap(raw, 64 * PG);
}

static atomic_int refused;

/* fallocate of a file system without ZERO_RANGE, or without punching. */
static int no_zero_range(void *ctx, int fd, int mode, off_t off, off_t len)
{
	(void)ctx;
	if (mode & FALLOC_FL_ZERO_RANGE) {
		atomic_fetch_add(&refused, 1);
		errno = EOPNOTSUPP;
		return -1;
	}
	return fallocate(fd, mode, off, len);
}

static int no_zero_range_nor_punch(void *ctx, int fd, int mode, off_t off, off_t len)
{
	if (mode & FALLOC_FL_PUNCH_HOLE) {
		atomic_fetch_add(&refused, 1);
		errno = EOPNOTSUPP;
		return -1;
	}
	return no_zero_range(ctx, fd, mode, off, len);
}

/* A clear that fails (EIO injected): counted, scrubbing stops, the slots
 * stay stale but free, and handed out again they work. */
static void test_scrub_error(void **state)
{
	struct fault_inject fi;
	struct swapdev *sd;
	struct swapdev_fill_stats st;
	uint32_t f, n;
	char *mem = pages_alloc(8);

	/* The first fallocate is the preallocation; fail the second. */
	fault_inject_init(&fi, 2, EIO, 1u << OVC_SYS_FALLOCATE);
	assert_ovc_ok(new_dev_flags(&fi.sys, 8 * PG, 0, SWAPDEV_F_NO_THREAD, &sd));
	assert_ovc_ok(swapdev_slot_alloc(sd, 8, &f, &n));
	write_slots(sd, 0, 8, 13, mem);
	swapdev_slot_free(sd, 2, 2);
	swapdev_scrub(sd);
	assert_int_equal(atomic_load(&fi.injected), 1);
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.scrub_errors, 1);
	assert_int_equal(st.slots_stale, 2);
	assert_int_equal(st.slots_cleared, 0);
	swapdev_slot_free(sd, 5, 1);
	swapdev_scrub(sd); /* stopped: no second try */
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.slots_stale, 3);
	assert_int_equal(swapdev_slots_free(sd), 3);
	assert_ovc_ok(swapdev_slot_alloc(sd, 8, &f, &n));
	assert_int_equal(f, 2);
	assert_int_equal(n, 2);
	swapdev_fill_stats(sd, &st);
	assert_int_equal(st.slots_reused, 2);
	swapdev_free(sd);

	/* A file system without FALLOC_FL_ZERO_RANGE (EOPNOTSUPP, as
	 * tmpfs): punched instead; without punching either: zeros. */
	for (int fails = 1; fails <= 2; fails++) {
		char *raw = pages_alloc(8);
		struct sys_ops sys = sys_default;
		sys.fallocate = fails == 1 ? no_zero_range : no_zero_range_nor_punch;
		atomic_store(&refused, 0);
		assert_ovc_ok(new_dev_flags(&sys, 8 * PG, 0, SWAPDEV_F_NO_THREAD, &sd));
		assert_ovc_ok(swapdev_slot_alloc(sd, 8, &f, &n));
		write_slots(sd, 0, 8, 14, mem);
		swapdev_slot_free(sd, 2, 2);
		swapdev_scrub(sd);
		assert_int_equal(atomic_load(&refused), fails);
		swapdev_fill_stats(sd, &st);
		assert_int_equal(st.scrub_errors, 0);
		assert_int_equal(st.slots_stale, 0);
		assert_int_equal(fails == 1 ? st.slots_cleared : st.slots_zeroed, 2);
		read_raw(sd, 0, 8, raw);
		assert_true(all_zero(raw + 2 * PG, 2 * PG));
		assert_memory_equal(raw + 4 * PG, mem + 4 * PG, 4 * PG);
		swapdev_free(sd);
		munmap(raw, 8 * PG);
	}
	(void)state;
	munmap(mem, 8 * PG);
}

/* ------------------------------------------------------------ encrypt -- */

static long vm_locked_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "re");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld kB", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* SWAPDEV_F_ENCRYPT: every page reads back as written, through read_sync
 * (readahead runs) and queued reads; the file holds none of the plaintext,
 * equal pages in two slots differ on disk, and a second swap file (a new
 * key) holds other bytes for the same page in the same slot. The key page
 * is locked while the swapdev lives. */
static void test_encrypt_roundtrip(void **state)
{
	if (!swapdev_encrypt_supported()) {
		print_message("built without libcrypto: skipped\n");
		skip();
	}
	const uint32_t np = 128;
	struct swapdev *sd, *sd2;
	struct swapdev_ring *r;
	char *mem = pages_alloc(np), *raw = pages_alloc(np), *back = pages_alloc(np);
	long locked0 = vm_locked_kib();

	assert_int_equal(new_dev_flags(NULL, 256 * PG, 0, 1u << 7, &sd), -EINVAL);
	assert_ovc_ok(new_dev_flags(NULL, 256 * PG, 0, SWAPDEV_F_ENCRYPT | SWAPDEV_F_NO_THREAD, &sd));
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) /* their mlock() does nothing */
	assert_true(vm_locked_kib() >= locked0 + 4);
#endif
	fill_random(mem, (size_t)np * PG, 21);
	memcpy(mem + PG, mem, PG); /* slots 0 and 1: the same page */
	assert_ovc_ok(swapdev_ring_new(sd, NULL, &r));
	struct done d[np];
	unsigned counter = 0;
	/* Scattered iovecs of 1..7 pages, as the engine's batches. */
	for (uint32_t off = 0, k = 1; off < np; off += k, k = k % 7 + 1) {
		k = MIN(k, np - off);
		struct iovec iov[7];
		for (uint32_t j = 0; j < k; j++)
			iov[j] = (struct iovec){ mem + (size_t)(off + j) * PG, PG };
		d[off] = (struct done){ .counter = &counter };
		assert_ovc_ok(swapdev_queue_write(r, off, iov, k, on_done, &d[off]));
	}
	swapdev_submit(r);
	drain(r);
	/* The caller's pages are untouched (encrypted into the ring's pool). */
	memcpy(mem + PG, mem, PG);
	fill_random(back, PG, 21);
	assert_memory_equal(mem, back, PG);

	read_raw(sd, 0, np, raw);
	for (uint32_t s = 0; s < np; s++) {
		assert_true(memcmp(raw + (size_t)s * PG, mem + (size_t)s * PG, PG) != 0);
		assert_false(all_zero(raw + (size_t)s * PG, PG));
	}
	assert_true(memcmp(raw, raw + PG, PG) != 0); /* the tweak */

	const void *buf;
	for (uint32_t s = 0; s < np; s += 16) {
		assert_ovc_ok(swapdev_read_sync(r, s, 16, 0, &buf));
		assert_memory_equal(buf, mem + (size_t)s * PG, 16 * PG);
	}
	memset(back, 0, (size_t)np * PG);
	for (uint32_t s = 0; s < np; s += 32) {
		struct iovec iov[2] = { { back + (size_t)s * PG, 8 * PG },
					{ back + (size_t)(s + 8) * PG, 24 * PG } };
		d[s] = (struct done){ .counter = &counter, .res = 1 };
		assert_ovc_ok(swapdev_queue_read(r, s, iov, 2, on_done, &d[s]));
	}
	swapdev_submit(r);
	drain(r);
	for (uint32_t s = 0; s < np; s += 32)
		assert_int_equal(d[s].res, 0);
	assert_memory_equal(back, mem, (size_t)np * PG);
	swapdev_ring_free(r);

	/* Another swap file, another key. */
	assert_ovc_ok(new_dev_flags(NULL, 16 * PG, 0, SWAPDEV_F_ENCRYPT | SWAPDEV_F_NO_THREAD, &sd2));
	write_slots(sd2, 0, 1, 21, back);
	assert_memory_equal(back, mem, PG);
	read_raw(sd2, 0, 1, back);
	assert_true(memcmp(back, raw, PG) != 0);
	swapdev_free(sd2);
	swapdev_free(sd);
	assert_int_equal(vm_locked_kib(), locked0);
	(void)state;
	munmap(mem, (size_t)np * PG);
	munmap(raw, (size_t)np * PG);
	munmap(back, (size_t)np * PG);
}

/* The ring's encryption pool: a write larger than it is refused, one that
 * does not fit while others are in flight is -EAGAIN and fits once they
 * ended; a failed write gives its pool pages back. */
static void test_encrypt_pool(void **state)
{
	if (!swapdev_encrypt_supported())
		skip();
	struct swapdev *sd;
	struct swapdev_ring *r;
	struct fault_inject fi;
	char *mem = pages_alloc(64);
	struct done d[3];
	unsigned counter = 0;

	fault_inject_init(&fi, 0, 0, 0);
	assert_ovc_ok(new_dev_flags(&fi.sys, 256 * PG, 0, SWAPDEV_F_ENCRYPT | SWAPDEV_F_NO_THREAD, &sd));
	struct swapdev_ring_opts ro = { .size = sizeof(ro), .crypt_pages = 48 };
	assert_ovc_ok(swapdev_ring_new(sd, &ro, &r));
	fill_random(mem, 64 * PG, 22);
	for (int i = 0; i < 3; i++)
		d[i] = (struct done){ .counter = &counter, .res = 1 };
	struct iovec big = { mem, 49 * PG }, half = { mem, 32 * PG };
	assert_int_equal(swapdev_queue_write(r, 0, &big, 1, on_done, &d[0]), -EINVAL);
	assert_ovc_ok(swapdev_queue_write(r, 0, &half, 1, on_done, &d[0]));
	assert_int_equal(swapdev_queue_write(r, 32, &half, 1, on_done, &d[1]), -EAGAIN);
	swapdev_submit(r);
	drain(r);
	assert_int_equal(d[0].res, 0);
	/* A write that fails (CQE error) frees its pool pages too. */
	fault_inject_init(&fi, 1, EIO, 1u << OVC_SYS_URING_CQE);
	assert_ovc_ok(swapdev_queue_write(r, 32, &half, 1, on_done, &d[1]));
	swapdev_submit(r);
	drain(r);
	assert_int_equal(d[1].res, -EIO);
	assert_ovc_ok(swapdev_queue_write(r, 32, &half, 1, on_done, &d[2]));
	swapdev_submit(r);
	drain(r);
	assert_int_equal(d[2].res, 0);
	const void *buf;
	assert_ovc_ok(swapdev_read_sync(r, 32, 32, 0, &buf));
	assert_memory_equal(buf, mem, 32 * PG);
	/* A failed read never hands back bytes, decrypted or not. */
	fault_inject_init(&fi, 1, EIO, 1u << OVC_SYS_URING_CQE);
	assert_int_equal(swapdev_read_sync(r, 0, 4, 0, &buf), -EIO);
	swapdev_ring_free(r);
	swapdev_free(sd);
	(void)state;
	munmap(mem, 64 * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_alloc),
		cmocka_unit_test(test_file_unlinkable),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_inject_cqe_error),
		cmocka_unit_test(test_inject_cqe_short),
		cmocka_unit_test(test_inject_setup),
		cmocka_unit_test(test_inject_submit),
		cmocka_unit_test(test_wait),
		cmocka_unit_test(test_free_inflight_and_exhaustion),
		cmocka_unit_test(test_unregistered_bounce),
		cmocka_unit_test(test_two_threads),
		cmocka_unit_test(test_two_threads_fill),
		cmocka_unit_test(test_fill_ahead),
		cmocka_unit_test(test_fill_wait),
		cmocka_unit_test(test_fill_error),
		cmocka_unit_test(test_scrub_clear),
		cmocka_unit_test(test_scrub_thread),
		cmocka_unit_test(test_scrub_error),
		cmocka_unit_test(test_encrypt_roundtrip),
		cmocka_unit_test(test_encrypt_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
