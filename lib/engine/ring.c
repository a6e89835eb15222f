/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The swap file's io_uring rings (swapdev.h: swapdev_ring_*, queue,
 * submit, wait, read_sync), with the encryption of what they write and the
 * decryption of what they read.
 *
 * Threads and locks: a struct swapdev_ring belongs to the thread that
 * created it and has no lock: one submitter per io_uring (the kernel
 * enforces it with IORING_SETUP_SINGLE_ISSUER, which also lets it skip its
 * own locking; the engine's in ring is used under e->sw.in_lock, its out
 * ring by the pass thread); its cipher contexts and encryption pool are
 * its own too. Callbacks run on the ring's thread with no lock held. Of
 * the shared struct swapdev it reads only what swapdev_new() wrote (fd,
 * slots, key) and stamps last_read_nsec (an atomic), never sd->lock.
 *
 * What is registered with io_uring, and why:
 *  - the file (one fd lookup less per request);
 *  - only the ring's own bounce buffer, used by swapdev_read_sync(). Pages
 *    that swap-out writes are never registered: the engine moves guest pages
 *    to a staging area with UFFDIO_MOVE and drops them after the write, and
 *    UFFDIO_MOVE fails with EBUSY on a pinned page (docs/engine.md, "Pages
 *    the kernel holds pinned"), while a
 *    registered buffer that gets MADV_DONTNEED'd keeps pinning the old
 *    physical pages behind the mapping's back. Writes therefore go out with
 *    writev from whatever the caller hands in. Swap-in reads land in the
 *    pinned bounce buffer and are installed with UFFDIO_COPY (a 4 KiB copy,
 *    ~1 us, against ~50 us of disk); a caller that wants UFFDIO_MOVE of the
 *    read page instead uses swapdev_queue_read() into unregistered memory.
 *  - If registering the bounce buffer fails (RLIMIT_MEMLOCK), reads use the
 *    plain read opcode from the same buffer: slower by a page-pinning per
 *    request, not wrong.
 */
#include <assert.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#ifdef OVC_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

#include "engine/swapdev.h"
#include "engine/swapfile.h"
#include "common/util.h"

enum req_kind { REQ_WRITE, REQ_READ, REQ_SYNC_READ };

struct swapdev_req {
	swapdev_done_fn fn;
	void *user;
	uint32_t bytes;     /* expected result */
	uint32_t slot;      /* first slot: the tweak of encryption */
	int32_t cpool_at;   /* an encrypted write's pages in the ring's pool, or -1 */
	uint8_t kind;
	uint8_t niov;       /* entries of iov in use (reads: decrypted at the end) */
	int32_t next_free;  /* free list link, -1 = end */
	struct iovec iov[SWAPDEV_MAX_IOV];
};

struct swapdev_ring {
	struct swapdev *sd;
	const struct sys_ops *sys;
	struct io_uring ring;
	bool ring_ok;
	bool buf_registered;
	int efd;
	unsigned depth;
	struct swapdev_req *reqs; /* depth entries */
	int32_t free_head;
	unsigned nr_busy;
	void *bounce;
	size_t bounce_bytes;
	/* The synchronous read in flight, if any: its request index, or -1. A
	 * read_sync whose submit failed stays here until its completion is
	 * reaped, so that the bounce buffer is never read into twice at once. */
	int32_t sync_idx;
	int sync_res;
	bool sync_done;
	struct swapdev_ring_stats st;
	/* Encryption (the swapdev's key): one context per direction, the
	 * ring's thread only; writes are encrypted into the pool, a page
	 * bitmap with first-fit runs, mapped at the first write. */
	void *enc, *dec;          /* EVP_CIPHER_CTX */
	uint8_t *cpool;
	uint32_t cpool_pages;
	uint64_t *cpool_map;
};

/*
 * Why AES-256-XTS with the slot number as tweak: it is the standard
 * construction for data at rest in fixed-size units (IEEE 1619; dm-crypt's
 * aes-xts-plain64 with the sector number as tweak, which this mirrors per
 * 4 KiB slot). Ciphertext is the size of the plaintext, so a slot stays a
 * slot and a page is still one O_DIRECT write; the same page in two slots
 * gives unrelated ciphertext. It does not authenticate: a page changed on
 * disk by someone with write access to the file decrypts to garbage,
 * not an error — what this guards against is reading guest RAM from the
 * file or the disk, during and after the engine's life. The key is fresh
 * per swap file and never written anywhere, so a fresh file never needs
 * tweak-reuse protection beyond the slot number.
 */
#ifdef OVC_HAVE_LIBCRYPTO
static int ring_crypt_init(struct swapdev_ring *r)
{
	struct swapdev *sd = r->sd;
	EVP_CIPHER_CTX *enc = EVP_CIPHER_CTX_new(), *dec = EVP_CIPHER_CTX_new();

	r->enc = enc;
	r->dec = dec;
	if (!enc || !dec)
		return -ENOMEM;
	if (EVP_CipherInit_ex2(enc, sd->xts, sd->key, NULL, 1, NULL) != 1 ||
	    EVP_CipherInit_ex2(dec, sd->xts, sd->key, NULL, 0, NULL) != 1)
		return -EIO;
	return 0;
}

static void ring_crypt_free(struct swapdev_ring *r)
{
	/* Frees and wipes the expanded keys. */
	EVP_CIPHER_CTX_free(r->enc);
	EVP_CIPHER_CTX_free(r->dec);
	r->enc = r->dec = NULL;
}

/* One slot through @ctx, @out may be @in. The tweak is the slot number,
 * 64-bit little-endian in a 16-byte block (dm-crypt's plain64). */
static int xts_slot(void *ctx, uint32_t slot, uint8_t *out, const uint8_t *in)
{
	uint8_t iv[16] = { 0 };
	int outl = 0;

	for (unsigned i = 0; i < 4; i++)
		iv[i] = (uint8_t)(slot >> (8 * i));
	if (EVP_CipherInit_ex2(ctx, NULL, NULL, iv, -1, NULL) != 1 ||
	    EVP_CipherUpdate(ctx, out, &outl, in, SWAPDEV_SLOT_BYTES) != 1 || outl != SWAPDEV_SLOT_BYTES)
		return -EIO;
	return 0;
}
#else
static int ring_crypt_init(struct swapdev_ring *r)
{
	(void)r;
	return -EOPNOTSUPP;
}

static void ring_crypt_free(struct swapdev_ring *r)
{
	(void)r;
}

static int xts_slot(void *ctx, uint32_t slot, uint8_t *out, const uint8_t *in)
{
	(void)ctx, (void)slot, (void)out, (void)in;
	return -EOPNOTSUPP;
}
#endif

/* Decrypt in place what a read brought into @iov (@n entries) from @slot. */
static int decrypt_iov(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		for (size_t off = 0; off < iov[i].iov_len; off += SWAPDEV_SLOT_BYTES) {
			uint8_t *p = (uint8_t *)iov[i].iov_base + off;
			if (xts_slot(r->dec, slot++, p, p) < 0)
				return -EIO;
		}
	return 0;
}

/* A run of @np free pages in the pool (mapped at the first call), or -1
 * (-ENOMEM in *err when it cannot be mapped). */
static int32_t cpool_get(struct swapdev_ring *r, uint32_t np, int *err)
{
	if (!r->cpool) {
		size_t len = (size_t)r->cpool_pages * SWAPDEV_SLOT_BYTES;
		void *p = SYS(r->sys, mmap, NULL, len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			*err = negative_errno();
			return -1;
		}
		r->cpool = p;
	}
	for (uint32_t s = 0; s + np <= r->cpool_pages;) {
		uint32_t k = 0;
		while (k < np && !((r->cpool_map[(s + k) / 64] >> ((s + k) % 64)) & 1))
			k++;
		if (k == np) {
			set_bits(r->cpool_map, s, np, true);
			return (int32_t)s;
		}
		s += k + 1;
	}
	*err = -EAGAIN;
	return -1;
}

static void cpool_put(struct swapdev_ring *r, int32_t at, uint32_t np)
{
	if (at >= 0)
		set_bits(r->cpool_map, (uint32_t)at, np, false);
}

/* ---------------------------------------------------------------- ring -- */

int swapdev_ring_new(struct swapdev *sd, const struct swapdev_ring_opts *opts,
		     struct swapdev_ring **ret)
{
	struct swapdev_ring *r;
	unsigned depth = 64, bounce_pages = 64, flags = 0, crypt_pages = 1024;
	int err;

	if (!sd || !ret)
		return -EINVAL;
	if (opts) {
		if (opts->size != sizeof(*opts))
			return -EINVAL;
		if (opts->depth)
			depth = opts->depth;
		if (opts->bounce_pages)
			bounce_pages = opts->bounce_pages;
		if (opts->crypt_pages)
			crypt_pages = opts->crypt_pages;
		flags = opts->flags;
	}
	if (flags & ~SWAPDEV_RING_ANY_THREAD)
		return -EINVAL;
	if (depth > 4096 || bounce_pages > 4096 || crypt_pages > 65536)
		return -EINVAL;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->sd = sd;
	r->sys = sd->sys;
	r->efd = -1;
	r->sync_idx = -1;
	r->depth = depth;
	r->bounce = MAP_FAILED;
	r->reqs = calloc(depth, sizeof(*r->reqs));
	if (!r->reqs) {
		err = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < depth; i++)
		r->reqs[i].next_free = i + 1 < depth ? (int32_t)i + 1 : -1;
	r->free_head = 0;
	if (sd->key) {
		r->cpool_pages = crypt_pages;
		r->cpool_map = calloc((crypt_pages + 63) / 64, sizeof(uint64_t));
		if (!r->cpool_map) {
			err = -ENOMEM;
			goto fail;
		}
		err = ring_crypt_init(r);
		if (err < 0)
			goto fail;
	}

	r->bounce_bytes = (size_t)bounce_pages * SWAPDEV_SLOT_BYTES;
	r->bounce = SYS(r->sys, mmap, NULL, r->bounce_bytes, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (r->bounce == MAP_FAILED) {
		err = negative_errno();
		goto fail;
	}

	/* SINGLE_ISSUER (6.0) lets the kernel skip the ring lock; the ring is
	 * ours alone anyway. Older kernels refuse the flag: go without. CQ is
	 * twice the SQ by default and at most depth requests are in flight, so
	 * it cannot overflow. */
	err = SYS(r->sys, uring_init, depth, &r->ring,
		  (flags & SWAPDEV_RING_ANY_THREAD) ? 0 : IORING_SETUP_SINGLE_ISSUER);
	if (err == -EINVAL && !(flags & SWAPDEV_RING_ANY_THREAD))
		err = SYS(r->sys, uring_init, depth, &r->ring, 0);
	if (err < 0)
		goto fail;
	r->ring_ok = true;

	err = io_uring_register_files(&r->ring, &sd->fd, 1);
	if (err < 0)
		goto fail;
	struct iovec biov = { r->bounce, r->bounce_bytes };
	err = io_uring_register_buffers(&r->ring, &biov, 1);
	if (err == 0)
		r->buf_registered = true;
	else if (err == -ENOMEM || err == -EPERM)
		log_info(sd->log, "swap: bounce buffer not registered (%s); reads pin per request",
			 strerror(-err));
	else
		goto fail;

	r->efd = SYS(r->sys, eventfd, 0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->efd < 0) {
		err = negative_errno();
		goto fail;
	}
	err = io_uring_register_eventfd(&r->ring, r->efd);
	if (err < 0)
		goto fail;
	*ret = r;
	return 0;
fail:
	swapdev_ring_free(r);
	return err;
}

int swapdev_fd(const struct swapdev_ring *r)
{
	return r->efd;
}

unsigned swapdev_inflight(const struct swapdev_ring *r)
{
	return r->nr_busy;
}

void swapdev_ring_stats(const struct swapdev_ring *r, struct swapdev_ring_stats *ret)
{
	*ret = r->st;
}

static struct swapdev_req *req_get(struct swapdev_ring *r)
{
	if (r->free_head < 0)
		return NULL;
	struct swapdev_req *q = &r->reqs[r->free_head];
	r->free_head = q->next_free;
	r->nr_busy++;
	return q;
}

static void req_put(struct swapdev_ring *r, struct swapdev_req *q)
{
	q->next_free = r->free_head;
	r->free_head = (int32_t)(q - r->reqs);
	r->nr_busy--;
}

/* An SQE, submitting what is queued first if the SQ is full. */
static struct io_uring_sqe *get_sqe(struct swapdev_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	if (!sqe && swapdev_submit(r) >= 0)
		sqe = io_uring_get_sqe(&r->ring);
	return sqe;
}

static int check_iov(const struct swapdev_ring *r, uint32_t slot, const struct iovec *iov,
		     unsigned n, uint32_t *ret_bytes)
{
	uint64_t bytes = 0;

	if (!iov || n == 0 || n > SWAPDEV_MAX_IOV)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (!IS_ALIGNED((uintptr_t)iov[i].iov_base, SWAPDEV_SLOT_BYTES) ||
		    iov[i].iov_len == 0 || !IS_ALIGNED(iov[i].iov_len, SWAPDEV_SLOT_BYTES))
			return -EINVAL;
		bytes += iov[i].iov_len;
	}
	/* One request stays under 2 GiB so that its result fits the CQE. */
	if (bytes > SWAPDEV_MAX_IOV * 256 * SWAPDEV_SLOT_BYTES ||
	    (uint64_t)slot + bytes / SWAPDEV_SLOT_BYTES > r->sd->nr_slots)
		return -EINVAL;
	*ret_bytes = (uint32_t)bytes;
	return 0;
}

/* A free request and its SQE, filled in and tagged; NULL when the ring is
 * at depth or the SQ cannot be emptied (the caller returns -EAGAIN). */
static struct io_uring_sqe *start_req(struct swapdev_ring *r, enum req_kind kind, uint32_t bytes,
				      swapdev_done_fn fn, void *user, struct swapdev_req **ret_q)
{
	struct swapdev_req *q = req_get(r);
	struct io_uring_sqe *sqe;

	if (!q)
		return NULL;
	sqe = get_sqe(r);
	if (!sqe) {
		req_put(r, q);
		return NULL;
	}
	q->fn = fn;
	q->user = user;
	q->bytes = bytes;
	q->kind = kind;
	q->cpool_at = -1;
	*ret_q = q;
	return sqe;
}

/* After the prep: the file is the registered one, user_data the request. */
static void finish_sqe(struct swapdev_ring *r, struct io_uring_sqe *sqe, struct swapdev_req *q)
{
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, (uint64_t)(q - r->reqs) + 1);
}

/* With encryption: @iov encrypted into a run of the ring's pool, returned
 * in *ret_at; -EINVAL when the pool cannot ever hold it, -EAGAIN when not
 * now. */
static int encrypt_write(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
			 uint32_t bytes, int32_t *ret_at)
{
	uint32_t np = bytes / SWAPDEV_SLOT_BYTES;
	int err = 0;

	if (np > r->cpool_pages)
		return -EINVAL;
	int32_t at = cpool_get(r, np, &err);
	if (at < 0)
		return err;
	uint8_t *dst = r->cpool + (size_t)at * SWAPDEV_SLOT_BYTES;
	for (unsigned i = 0; i < n; i++)
		for (size_t off = 0; off < iov[i].iov_len; off += SWAPDEV_SLOT_BYTES) {
			if (xts_slot(r->enc, slot++, dst, (const uint8_t *)iov[i].iov_base + off) < 0) {
				cpool_put(r, at, np);
				return -EIO;
			}
			dst += SWAPDEV_SLOT_BYTES;
		}
	*ret_at = at;
	return 0;
}

static int queue_rw(struct swapdev_ring *r, bool write, uint32_t slot, const struct iovec *iov,
		    unsigned n, swapdev_done_fn fn, void *user)
{
	struct swapdev_req *q;
	struct io_uring_sqe *sqe;
	uint32_t bytes;
	int32_t at = -1;
	int err;

	err = check_iov(r, slot, iov, n, &bytes);
	if (err < 0)
		return err;
	if (!write)
		fill_note_read(r->sd);
	/* Encrypted before the SQE is taken: an SQE taken must be sent. */
	if (write && r->enc) {
		err = encrypt_write(r, slot, iov, n, bytes, &at);
		if (err < 0)
			return err;
	}
	sqe = start_req(r, write ? REQ_WRITE : REQ_READ, bytes, fn, user, &q);
	if (!sqe) {
		cpool_put(r, at, bytes / SWAPDEV_SLOT_BYTES);
		return -EAGAIN;
	}
	q->slot = slot;
	q->cpool_at = at;
	/* The kernel reads the iovec array at submission or, if the request
	 * goes async, later: keep our own copy alive until the completion. */
	if (at >= 0) {
		q->iov[0] = (struct iovec){ r->cpool + (size_t)at * SWAPDEV_SLOT_BYTES, bytes };
		n = 1;
	} else {
		memcpy(q->iov, iov, n * sizeof(*iov));
	}
	q->niov = (uint8_t)n;
	off_t off = (off_t)slot * SWAPDEV_SLOT_BYTES;
	if (write)
		io_uring_prep_writev(sqe, 0, q->iov, n, off);
	else
		io_uring_prep_readv(sqe, 0, q->iov, n, off);
	finish_sqe(r, sqe, q);
	return 0;
}

int swapdev_queue_write(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
			swapdev_done_fn fn, void *user)
{
	return queue_rw(r, true, slot, iov, n, fn, user);
}

int swapdev_queue_read(struct swapdev_ring *r, uint32_t slot, const struct iovec *iov, unsigned n,
		       swapdev_done_fn fn, void *user)
{
	return queue_rw(r, false, slot, iov, n, fn, user);
}

int swapdev_submit(struct swapdev_ring *r)
{
	int n = SYS(r->sys, uring_submit, &r->ring);
	if (n > 0)
		r->st.submits++;
	return n;
}

/* Account one completion and run its callback (after the request slot is
 * free again, so the callback may queue the next request). */
static void complete(struct swapdev_ring *r, uint64_t data, int cqe_res)
{
	assert(data >= 1 && data <= r->depth);
	struct swapdev_req *q = &r->reqs[data - 1];
	int res = SYS(r->sys, uring_cqe, cqe_res);
	swapdev_done_fn fn = q->fn;
	void *user = q->user;
	uint8_t kind = q->kind;

	if (res >= 0 && (uint32_t)res != q->bytes) {
		r->st.short_io++;
		res = -EIO;
	}
	if (q->cpool_at >= 0)
		cpool_put(r, q->cpool_at, q->bytes / SWAPDEV_SLOT_BYTES);
	/* Decrypted here, on the ring's thread, before anyone sees the bytes:
	 * a page never comes back as ciphertext. */
	if (res >= 0 && r->dec && kind != REQ_WRITE) {
		struct iovec whole = { r->bounce, q->bytes };
		if (kind == REQ_SYNC_READ ? decrypt_iov(r, q->slot, &whole, 1) < 0
					  : decrypt_iov(r, q->slot, q->iov, q->niov) < 0)
			res = -EIO;
	}
	if (res < 0) {
		r->st.errors++;
	} else if (kind == REQ_WRITE) {
		r->st.writes++;
		r->st.bytes_written += q->bytes;
	} else {
		r->st.reads++;
		r->st.bytes_read += q->bytes;
	}
	if (res > 0)
		res = 0;
	req_put(r, q);
	if (kind == REQ_SYNC_READ) {
		assert(r->sync_idx == (int32_t)(data - 1));
		r->sync_idx = -1;
		r->sync_res = res;
		r->sync_done = true;
		return;
	}
	if (fn)
		fn(user, res);
}

/* Reap what the CQ holds now; returns how many requests ended. */
static int reap(struct swapdev_ring *r)
{
	struct io_uring_cqe *cqe;
	int n = 0;

	while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
		uint64_t data = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		complete(r, data, res);
		n++;
	}
	return n;
}

int swapdev_process(struct swapdev_ring *r)
{
	uint64_t v;

	/* Clear the notification before reaping: a completion that lands
	 * after the reap sets it again, so none is slept through. */
	(void)SYS(r->sys, read, r->efd, &v, sizeof(v));
	return reap(r);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

int swapdev_wait(struct swapdev_ring *r, unsigned spin_usec)
{
	uint64_t deadline = now_nsec(CLOCK_MONOTONIC) + spin_usec * NSEC_PER_USEC;
	struct io_uring_cqe *cqe;
	int n;

	if (r->nr_busy == 0)
		return 0;
	if (io_uring_sq_ready(&r->ring) > 0) {
		n = swapdev_submit(r);
		if (n < 0)
			return n;
	}
	for (;;) {
		n = reap(r);
		if (n > 0)
			return n;
		if (spin_usec && now_nsec(CLOCK_MONOTONIC) < deadline) {
			cpu_relax();
			continue;
		}
		int err = io_uring_wait_cqe(&r->ring, &cqe);
		if (err < 0 && err != -EINTR && err != -EAGAIN)
			return err;
	}
}

/* Wait until the synchronous read is reaped; other completions reaped on
 * the way get their callbacks. */
static int wait_sync(struct swapdev_ring *r, unsigned spin_usec)
{
	while (!r->sync_done) {
		int err = swapdev_wait(r, spin_usec);
		if (err < 0)
			return err;
	}
	return 0;
}

int swapdev_read_sync(struct swapdev_ring *r, uint32_t slot, unsigned n, unsigned spin_usec,
		      const void **ret_buf)
{
	struct swapdev_req *q;
	struct io_uring_sqe *sqe;
	int err;

	if (n == 0 || (size_t)n * SWAPDEV_SLOT_BYTES > r->bounce_bytes ||
	    (uint64_t)slot + n > r->sd->nr_slots || !ret_buf)
		return -EINVAL;
	fill_note_read(r->sd);
	/* A previous read_sync whose submit failed is still queued and will
	 * write the bounce buffer: let it land first. */
	if (r->sync_idx >= 0) {
		err = swapdev_submit(r);
		if (err < 0)
			return err;
		r->sync_done = false;
		err = wait_sync(r, 0);
		if (err < 0)
			return err;
	}
	sqe = start_req(r, REQ_SYNC_READ, n * SWAPDEV_SLOT_BYTES, NULL, NULL, &q);
	if (!sqe)
		return -EAGAIN;
	q->slot = slot;
	off_t off = (off_t)slot * SWAPDEV_SLOT_BYTES;
	if (r->buf_registered)
		io_uring_prep_read_fixed(sqe, 0, r->bounce, q->bytes, off, 0);
	else
		io_uring_prep_read(sqe, 0, r->bounce, q->bytes, off);
	finish_sqe(r, sqe, q);
	r->sync_idx = (int32_t)(q - r->reqs);
	r->sync_done = false;

	err = swapdev_submit(r);
	if (err < 0)
		return err; /* stays queued; see sync_idx */
	err = wait_sync(r, spin_usec);
	if (err < 0)
		return err;
	if (r->sync_res < 0)
		return r->sync_res;
	*ret_buf = r->bounce;
	return 0;
}

void swapdev_ring_free(struct swapdev_ring *r)
{
	if (!r)
		return;
	if (r->ring_ok) {
		/* Teardown uses liburing directly, not the ops table: it must
		 * not be failed by injection, and every request queued must
		 * end (its callback tells the engine the page's fate). */
		struct io_uring_cqe *cqe;
		while (r->nr_busy > 0) {
			int err = io_uring_submit_and_wait(&r->ring, 1);
			if (err < 0 && err != -EINTR && err != -EAGAIN && err != -EBUSY)
				break;
			while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
				uint64_t data = io_uring_cqe_get_data64(cqe);
				int res = cqe->res;
				io_uring_cqe_seen(&r->ring, cqe);
				complete(r, data, res);
			}
		}
		/* Only if the kernel refused to wait: tell the owners. */
		for (unsigned i = 0; r->nr_busy > 0 && i < r->depth; i++) {
			bool is_free = false;
			for (int32_t f = r->free_head; f >= 0; f = r->reqs[f].next_free)
				if (f == (int32_t)i)
					is_free = true;
			if (!is_free) {
				struct swapdev_req *q = &r->reqs[i];
				req_put(r, q);
				if (q->fn)
					q->fn(q->user, -ECANCELED);
			}
		}
		if (r->efd >= 0)
			io_uring_unregister_eventfd(&r->ring);
		io_uring_queue_exit(&r->ring);
	}
	if (r->efd >= 0)
		close(r->efd);
	if (r->bounce != MAP_FAILED)
		munmap(r->bounce, r->bounce_bytes);
	ring_crypt_free(r);
	if (r->cpool)
		munmap(r->cpool, (size_t)r->cpool_pages * SWAPDEV_SLOT_BYTES);
	free(r->cpool_map);
	free(r->reqs);
	free(r);
}
