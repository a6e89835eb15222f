/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine API: create/free, regions, the two drive modes, stats.
 *
 * Threads: API calls come from any VMM thread. With threads, the engine
 * runs a fault-handler thread (fault.c) and a worker that scans and swaps
 * within the CPU budget (pass.c). With OVC_ENGINE_NO_THREADS both run
 * inside ovc_engine_process() on the VMM's loop thread. Locks: see
 * internal.h.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

#include "engine/abi.h"
#include "engine/compat.h"
#include "engine/drop.h"
#include "engine/internal.h"
#include "engine/lock.h"
#include "engine/pass.h"
#include "engine/swapdev.h"
#include "engine/testing.h"
#include "engine/track.h"

#define KNOWN_ENGINE_FLAGS \
	(OVC_ENGINE_NO_THREADS | OVC_ENGINE_NO_MOVE | OVC_ENGINE_NO_AUTOSCAN | OVC_ENGINE_MOVE | \
	 OVC_ENGINE_SYNC_WP | OVC_ENGINE_SWAP_ENCRYPT)
#define KNOWN_REGION_FLAGS (OVC_REGION_NO_SWAP | OVC_REGION_NO_SHARE | OVC_REGION_UNPINNED)

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif

static void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

static int copy_opts(const struct ovc_engine_opts *in, struct ovc_engine_opts *out)
{
	memset(out, 0, sizeof(*out));
	if (!in)
		return 0;
	int r = abi_copy_in(out, sizeof(*out), in, OVC_ENGINE_OPTS_SIZE_VER0);
	if (r < 0)
		return r;
	if (out->reserved0 || out->reserved1)
		return -EINVAL;
	if (out->flags & ~KNOWN_ENGINE_FLAGS)
		return -EINVAL;
	if (out->log_level && (out->log_level < OVC_LOG_ERR || out->log_level > OVC_LOG_DEBUG))
		return -EINVAL;
	if (out->scan_cpu_permille > 1000)
		return -EINVAL;
	if ((out->flags & OVC_ENGINE_MOVE) && (out->flags & (OVC_ENGINE_NO_MOVE | OVC_ENGINE_SYNC_WP)))
		return -EINVAL;
	return 0;
}

/* Features on a throwaway fd: a second UFFDIO_API on one fd fails. */
static int probe_features(const struct sys_ops *sys, uint64_t *ret)
{
	_cleanup_(closep) int fd = sys_open_uffd(sys, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return fd;
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	if (SYS(sys, ioctl, fd, UFFDIO_API, &api) < 0)
		return negative_errno();
	*ret = api.features;
	return 0;
}

/* Swap on this kernel: async tracking with the MOVE path, or the sync
 * write-protect mode (OVC_ENGINE_SYNC_WP). Sets e->features / e->sync_wp. */
static int choose_swap_mode(ovc_engine *e, const struct ovc_engine_opts *o, uint64_t avail)
{
	const char *why = NULL;
	bool async_ok = (e->features & UFFD_FEATURE_MOVE) && (avail & UFFD_FEATURE_WP_ASYNC) &&
			!(o->flags & OVC_ENGINE_SYNC_WP) && track_probe(e->sys, &why) == 0;

	if (async_ok) {
		e->features |= UFFD_FEATURE_WP_ASYNC;
		return 0;
	}
	/* The write-protect path's own drops raise REMOVE events that only
	 * the handler thread can read. */
	if (o->flags & OVC_ENGINE_NO_THREADS) {
		log_err(&e->log, "swap without UFFDIO_MOVE and WP_ASYNC tracking needs the engine's threads");
		return -EOPNOTSUPP;
	}
	if (!(avail & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		log_err(&e->log, "swap needs userfaultfd write-protect");
		return -EOPNOTSUPP;
	}
	if (!(o->flags & OVC_ENGINE_SYNC_WP))
		log_notice(&e->log, "swap: %s; tracking writes with write-protect faults instead",
			   why ? why : "no UFFDIO_MOVE");
	e->sync_wp = true;
	/* MOVE stays enabled where the kernel has it: the write-protect
	 * paths drop through it, since it refuses pinned pages (drop.c,
	 * move_out_runs). */
	return 0;
}

static void region_free(struct region *r)
{
	if (!r)
		return;
	region_fini(r);
	free(r);
}

/* Unregister a region and give up its pages: ZERO pages keep the shared
 * zero page, which stays valid without the engine. */
static void region_detach(ovc_engine *e, struct region *r)
{
	struct uffdio_range range = { (uint64_t)(uintptr_t)r->host, r->len_bytes };
	/* Not through the ops table: teardown must not fail half way, and
	 * UNREGISTER also wakes every thread still waiting in the range. */
	if (ioctl(e->uffd, UFFDIO_UNREGISTER, &range) < 0)
		log_warning(&e->log, "cannot unregister guest RAM at 0x%" PRIx64 ": %s", r->guest_phys,
			    ovc_strerror(negative_errno()));
	swap_region_del(e, r);
	madvise(r->host, r->len_bytes, MADV_DOFORK);
	uint64_t zero = 0;
	for (uint64_t i = 0; i < r->npages; i++)
		zero += pst_state(atomic_load(&r->pst[i])) == PST_ZERO;
	atomic_fetch_sub(&e->c.zero_pages_now, (int64_t)zero);
}

ovc_engine *ovc_engine_free(ovc_engine *e)
{
	if (!e)
		return NULL;
	/* The endpoint thread calls into the engine: stop it first. */
	if (e->on_free)
		e->on_free(e);
	/* The worker first, the handler last: a pass in flight (or the swap
	 * tick of an ovc_engine_reclaim() just before) may be waiting in
	 * madvise for the handler to read the REMOVE event of its own drop;
	 * a handler gone first left it, and this join, waiting for ever. */
	atomic_store(&e->worker.stop, true);
	if (e->worker.started) {
		pass_wake(e);
		pthread_join(e->worker.thread, NULL);
	}
	/* Swapped pages come back while the handler still runs (it reads the
	 * REMOVE events a bring-back may wait behind). */
	if (swap_enabled(e)) {
		lock_mutex(&e->pass.lock);
		for (size_t i = 0; i < e->nregions; i++)
			if (swap_region_bring_back(e, e->regions[i]) < 0)
				log_err(&e->log, "engine freed with unreadable swapped pages in guest 0x%" PRIx64,
					e->regions[i]->guest_phys);
		unlock_mutex(&e->pass.lock);
	}
	atomic_store(&e->handler.stop, true);
	if (e->handler.started) {
		uint64_t one = 1;
		if (write(e->event_fd, &one, sizeof(one)) < 0) {
			/* cannot fail with a fresh counter */
		}
		pthread_join(e->handler.thread, NULL);
	}
	for (size_t i = 0; i < e->nregions; i++) {
		region_detach(e, e->regions[i]);
		region_free(e->regions[i]);
	}
	free(e->regions);
	staging_fini(e);
	swap_fini(e);
	if (e->pass.scan_buf)
		munmap(e->pass.scan_buf, (size_t)BATCH_PAGES * PAGE_SIZE);
	closep(&e->uffd);
	closep(&e->mem_fd);
	closep(&e->pagemap_fd);
	closep(&e->event_fd);
	closep(&e->poll_fd);
	closep(&e->timer_fd);
	closep(&e->pidfd);
	pthread_rwlock_destroy(&e->regions_lock);
	pthread_mutex_destroy(&e->pass.lock);
	pthread_mutex_destroy(&e->worker.wake_lock);
	pthread_cond_destroy(&e->worker.wake_cond);
	free(e);
	return NULL;
}

static void engine_freep(ovc_engine **e)
{
	ovc_engine_free(*e);
}

int engine_test_new_with_sys(const struct ovc_engine_opts *opts_in, const struct sys_ops *sys, ovc_engine **ret)
{
	_cleanup_(engine_freep) ovc_engine *e = NULL;
	struct ovc_engine_opts o;
	uint64_t avail;
	int r;

	if (!ret || !sys)
		return -EINVAL;
	r = copy_opts(opts_in, &o);
	if (r < 0)
		return r;
	bool want_swap = o.swap_path || o.swap_size_bytes;

	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->uffd = e->mem_fd = e->pagemap_fd = e->event_fd = e->poll_fd = e->timer_fd = e->pidfd = -1;
	e->sys = sys;
	e->drain_events = fault_drain;
	e->flags = o.flags;
	e->log = (struct logger){ o.log_fn, o.log_userdata, o.log_level ? o.log_level : OVC_LOG_NOTICE };
	e->scan_interval_usec = o.scan_interval_usec ? o.scan_interval_usec : USEC_PER_SEC;
	e->scan_cpu_permille = o.scan_cpu_permille ? o.scan_cpu_permille : 100;
	e->pass.cand.runs = e->pass.cand_store;
	e->pass.cand.cap = BATCH_PAGES;
	pthread_rwlock_init(&e->regions_lock, NULL);
	pthread_mutex_init(&e->pass.lock, NULL);
	pthread_mutex_init(&e->worker.wake_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->worker.wake_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&e->sw.in_lock, NULL);

	r = probe_features(sys, &avail);
	if (r < 0)
		return r;
	uint64_t need = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_THREAD_ID;
	if ((avail & need) != need)
		return -ENOSYS;
	e->features = UFFD_FEATURE_THREAD_ID |
		      (avail & (UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM));
	if ((avail & UFFD_FEATURE_MOVE) && !(o.flags & OVC_ENGINE_NO_MOVE))
		e->features |= UFFD_FEATURE_MOVE;
	/* Discard events only where someone reads them for something: the
	 * MOVE path (DISCARDED, so that staged content of a discarded page
	 * does not come back) and swap (freeing the slot). On the
	 * write-protect path they are pure cost: every madvise range raises
	 * one and blocks until the handler has read it, and the path's own
	 * drops are madvise ranges — on scattered zero pages that was two
	 * context switches per dropped page (ovc-bench zero, alternating:
	 * 65k switches for 32k pages). Without them a discard is the kernel's
	 * business alone: a hole faults to the handler, which fills zeros. */
	if (want_swap || (e->features & UFFD_FEATURE_MOVE))
		e->features |= UFFD_FEATURE_EVENT_REMOVE;
	/* Swap tracks writes on this same uffd (docs/swap.md). With WP_ASYNC
	 * (and PAGEMAP_SCAN), UFFDIO_WRITEPROTECT becomes a hint, so every
	 * region takes the MOVE path. Without them (or MOVE, or when asked)
	 * the sync mode: write-protect faults tell the tracker, and both zero
	 * sharing and swap-out take the write-protect path. */
	if (want_swap) {
		r = choose_swap_mode(e, &o, avail);
		if (r < 0)
			return r;
	}

	e->uffd = sys_open_uffd(sys, O_CLOEXEC | O_NONBLOCK);
	if (e->uffd < 0)
		return e->uffd;
	struct uffdio_api api = { .api = UFFD_API, .features = e->features };
	if (SYS(sys, ioctl, e->uffd, UFFDIO_API, &api) < 0)
		return negative_errno();
	e->have_move = e->features & UFFD_FEATURE_MOVE;
	if (e->have_move) {
		/* A UFFDIO_MOVE can fail after moving pages it does not
		 * report; only the page tables tell where they went (uffd.c,
		 * uffd_slots_filled). Without that, a moved page could end
		 * RESIDENT over a hole. */
		e->pagemap_fd = SYS(sys, open, "/proc/self/pagemap", O_RDONLY | O_CLOEXEC, 0);
		if (e->pagemap_fd < 0) {
			r = negative_errno();
			log_err(&e->log, "engine: cannot open /proc/self/pagemap, which UFFDIO_MOVE needs "
				"here: %s", ovc_strerror(r));
			return r;
		}
	}

	e->pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (e->pidfd < 0)
		return negative_errno();
	e->event_fd = SYS(sys, eventfd, 0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->event_fd < 0)
		return negative_errno();
	r = staging_init(e);
	if (r < 0)
		return r;
	r = swap_init(e, &o);
	if (r < 0)
		return r;

	if (o.flags & OVC_ENGINE_NO_THREADS) {
		e->mem_fd = SYS(sys, open, "/proc/self/mem", O_RDONLY | O_CLOEXEC, 0);
		if (e->mem_fd < 0)
			return negative_errno();
		void *b = SYS(sys, mmap, NULL, (size_t)BATCH_PAGES * PAGE_SIZE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b == MAP_FAILED)
			return negative_errno();
		e->pass.scan_buf = b;
		e->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		e->poll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (e->timer_fd < 0 || e->poll_fd < 0)
			return negative_errno();
		int fds[] = { e->uffd, e->event_fd, e->timer_fd };
		for (size_t i = 0; i < ARRAY_SIZE(fds); i++) {
			struct epoll_event ev = { .events = EPOLLIN, .data.fd = fds[i] };
			if (epoll_ctl(e->poll_fd, EPOLL_CTL_ADD, fds[i], &ev) < 0)
				return negative_errno();
		}
		if (!(o.flags & OVC_ENGINE_NO_AUTOSCAN))
			pass_arm_timer(e, e->scan_interval_usec * NSEC_PER_USEC);
	} else {
		r = -pthread_create(&e->handler.thread, NULL, fault_thread_main, e);
		if (r < 0)
			return r;
		e->handler.started = true;
		r = -pthread_create(&e->worker.thread, NULL, pass_thread_main, e);
		if (r < 0)
			return r;
		e->worker.started = true;
	}
	log_debug(&e->log, "engine: uffd features 0x%" PRIx64 ", %s%s", e->features,
		  !e->have_move ? "write-protect path" :
		  e->sync_wp ? "write-protect path dropping through UFFDIO_MOVE" : "UFFDIO_MOVE path",
		  e->sync_wp ? ", sync write tracking" : "");
	if (!e->have_move)
		log_notice(&e->log, "engine: no UFFDIO_MOVE (%s): nothing here refuses a page the kernel "
			   "holds pinned, so regions keep their pages (nothing dropped, shared or swapped "
			   "out) unless added with OVC_REGION_UNPINNED; set it only on a region that "
			   "nothing writes through a pin (no O_DIRECT or io_uring reads into it, no "
			   "process_vm_writev, no vhost); see ovc_region_add(3)",
			   (o.flags & OVC_ENGINE_NO_MOVE) ? "OVC_ENGINE_NO_MOVE" : "kernel before 6.8");
	*ret = e;
	e = NULL;
	return 0;
}

OVC_EXPORT int ovc_engine_new(const struct ovc_engine_opts *opts, ovc_engine **ret)
{
	return engine_test_new_with_sys(opts, &sys_default, ret);
}

/* --- regions ------------------------------------------------------------ */

/* What kind of memory backs [addr, addr+len): every byte mapped read-write,
 * all private anonymous (*shmem = false) or all shared memory (memfd,
 * /dev/zero, SysV: *shmem = true). -EFAULT otherwise. /proc/self/maps, not
 * smaps: smaps walks the page tables of every mapping, which for a VMM is
 * its whole guest RAM. Hugetlb memfds pass here and are refused after
 * UFFDIO_REGISTER, which offers no UFFDIO_ZEROPAGE on hugetlb. */
static int mapping_kind(uint64_t addr, uint64_t len, bool *shmem)
{
	_cleanup_(fclosep) FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	uint64_t covered = addr, end = addr + len;
	int kind = -1; /* 0 anon, 1 shmem */

	if (!f)
		return negative_errno();
	while (fgets(line, sizeof(line), f) && covered < end) {
		unsigned long long s, t;
		char perms[8];
		int path_at = 0;
		if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &s, &t, perms, &path_at) == 3) {
			if (t <= covered || s >= end)
				continue;
			if (s > covered)
				return -EFAULT; /* a gap */
			const char *path = path_at ? line + path_at : "";
			path += strspn(path, " ");
			bool anon = perms[3] == 'p' && (path[0] == '\n' || path[0] == 0 ||
							strncmp(path, "[heap]", 6) == 0 ||
							strncmp(path, "[anon:", 6) == 0);
			bool shm = perms[3] == 's' && (strncmp(path, "/memfd:", 7) == 0 ||
						       strncmp(path, "/dev/zero", 9) == 0 ||
						       strncmp(path, "/SYSV", 5) == 0 ||
						       strncmp(path, "/dev/shm/", 9) == 0);
			if (perms[0] != 'r' || perms[1] != 'w' || (!anon && !shm))
				return -EFAULT;
			if (kind >= 0 && kind != shm)
				return -EFAULT; /* mixed */
			kind = shm;
			covered = t;
		}
	}
	if (covered < end)
		return -EFAULT;
	*shmem = kind == 1;
	return 0;
}

OVC_EXPORT int ovc_region_add(ovc_engine *e, void *host_addr, uint64_t len_bytes, uint64_t guest_phys,
			      unsigned flags)
{
	uint64_t host = (uint64_t)(uintptr_t)host_addr;
	bool shmem;
	int r;

	if (!e || !host_addr || !len_bytes || (flags & ~KNOWN_REGION_FLAGS) ||
	    !IS_ALIGNED(host, PAGE_SIZE) || !IS_ALIGNED(len_bytes, PAGE_SIZE) ||
	    !IS_ALIGNED(guest_phys, PAGE_SIZE) || host + len_bytes < host ||
	    guest_phys + len_bytes < guest_phys || (len_bytes >> PAGE_SHIFT) > UINT32_MAX)
		return -EINVAL;
	r = mapping_kind(host, len_bytes, &shmem);
	if (r < 0)
		return r;
	/* Which path: the MOVE path wherever the kernel has UFFDIO_MOVE
	 * (it refuses pages the kernel holds pinned: docs/engine.md, "Pages
	 * the kernel holds pinned"); the write-protect path for shared
	 * memory, in the sync write-protect mode and without MOVE, where a
	 * region gives pages back only with OVC_REGION_UNPINNED. */
	bool can_move = e->have_move && !shmem && !e->sync_wp;
	/* With swap the uffd has WP_ASYNC, under which the write-protect path
	 * would lose writes; in sync mode the write-protect path is the only
	 * one. Shared memory cannot be swapped in either. */
	if (swap_enabled(e) && (shmem || (!can_move && !e->sync_wp)))
		return -EOPNOTSUPP;
	/* In NO_THREADS mode only the MOVE path works: the write-protect path
	 * drops pages with madvise, which waits until the uffd is read — by
	 * the very thread that would be calling madvise. */
	if ((e->flags & OVC_ENGINE_NO_THREADS) && !can_move)
		return -EOPNOTSUPP;
	if (shmem && !(e->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
		return -EOPNOTSUPP;
	if (!can_move && !(e->features & UFFD_FEATURE_PAGEFAULT_FLAG_WP))
		return -EOPNOTSUPP;

	struct region *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return -ENOMEM;
	r = region_init(reg, host_addr, len_bytes, guest_phys, flags);
	if (r < 0) {
		free(reg);
		return r;
	}
	reg->shmem = shmem;
	reg->can_move = can_move;
	/* Dropping a page without UFFDIO_MOVE (MADV_DONTNEED, a punched
	 * hole) loses a write through a pin: only on the VMM's promise. */
	reg->may_drop = (e->have_move && !shmem) || (flags & OVC_REGION_UNPINNED);

	lock_mutex(&e->pass.lock);
	lock_write(&e->regions_lock);
	size_t at = 0;
	for (size_t i = 0; i < e->nregions; i++) {
		struct region *o = e->regions[i];
		uint64_t oh = (uint64_t)(uintptr_t)o->host;
		if ((host < oh + o->len_bytes && oh < host + len_bytes) ||
		    (guest_phys < o->guest_phys + o->len_bytes && o->guest_phys < guest_phys + len_bytes)) {
			r = -EEXIST;
			goto fail;
		}
		if (oh < host)
			at = i + 1;
	}
	struct region **n = realloc(e->regions, (e->nregions + 1) * sizeof(*n));
	if (!n) {
		r = -ENOMEM;
		goto fail;
	}
	e->regions = n;
	/* A fork must not copy guest RAM: without UFFD_EVENT_FORK the child
	 * would read zeros where we dropped pages. */
	if (SYS(e->sys, madvise, host_addr, len_bytes, MADV_DONTFORK) < 0) {
		r = negative_errno();
		goto fail;
	}
	struct uffdio_register reg_arg = {
		.range = { host, len_bytes },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};
	if (SYS(e->sys, ioctl, e->uffd, UFFDIO_REGISTER, &reg_arg) < 0) {
		r = negative_errno();
		if (r == -EINVAL || r == -EBUSY) /* wrong memory, or another uffd has it */
			r = r == -EBUSY ? -EBUSY : -EFAULT;
		madvise(host_addr, len_bytes, MADV_DOFORK);
		goto fail;
	}
	uint64_t want = (UINT64_C(1) << _UFFDIO_ZEROPAGE) | (UINT64_C(1) << _UFFDIO_WAKE) |
			(UINT64_C(1) << _UFFDIO_WRITEPROTECT) | (can_move ? UINT64_C(1) << _UFFDIO_MOVE : 0);
	if ((reg_arg.ioctls & want) != want) {
		struct uffdio_range range = { host, len_bytes };
		ioctl(e->uffd, UFFDIO_UNREGISTER, &range);
		madvise(host_addr, len_bytes, MADV_DOFORK);
		r = -EFAULT;
		goto fail;
	}
	r = swap_region_add(e, reg);
	if (r < 0) {
		struct uffdio_range range = { host, len_bytes };
		ioctl(e->uffd, UFFDIO_UNREGISTER, &range);
		madvise(host_addr, len_bytes, MADV_DOFORK);
		goto fail;
	}
	memmove(e->regions + at + 1, e->regions + at, (e->nregions - at) * sizeof(*n));
	e->regions[at] = reg;
	e->nregions++;
	unlock_rw(&e->regions_lock);
	unlock_mutex(&e->pass.lock);
	log_info(&e->log, "region guest 0x%" PRIx64 "+%" PRIu64 " MiB (%s, %s path%s)", guest_phys,
		 len_bytes >> 20, shmem ? "shared memory" : "anonymous", can_move ? "move" : "write-protect",
		 reg->may_drop ? "" : ", pages kept: no OVC_REGION_UNPINNED");
	pass_wake(e);
	return 0;
fail:
	unlock_rw(&e->regions_lock);
	unlock_mutex(&e->pass.lock);
	region_free(reg);
	return r;
}

OVC_EXPORT int ovc_region_remove(ovc_engine *e, uint64_t guest_phys, unsigned flags)
{
	struct region *r = NULL;

	if (!e || flags)
		return -EINVAL;
	/* pass_lock first: no batch is in flight on the region afterwards. */
	lock_mutex(&e->pass.lock);
	if (swap_enabled(e)) {
		/* Swapped pages come back first, while the region is still
		 * registered and the handler serves it; no swap-out can start
		 * (pass_lock). */
		lock_read(&e->regions_lock);
		for (size_t i = 0; i < e->nregions; i++)
			if (e->regions[i]->guest_phys == guest_phys)
				r = e->regions[i];
		int br = r ? swap_region_bring_back(e, r) : 0;
		unlock_rw(&e->regions_lock);
		r = NULL;
		if (br < 0) {
			unlock_mutex(&e->pass.lock);
			return br;
		}
	}
	lock_write(&e->regions_lock);
	for (size_t i = 0; i < e->nregions; i++)
		if (e->regions[i]->guest_phys == guest_phys) {
			r = e->regions[i];
			memmove(e->regions + i, e->regions + i + 1, (e->nregions - i - 1) * sizeof(r));
			e->nregions--;
			break;
		}
	unlock_rw(&e->regions_lock);
	if (r)
		region_detach(e, r);
	unlock_mutex(&e->pass.lock);
	if (!r)
		return -ENOENT;
	region_free(r);
	return 0;
}

/* --- drive -------------------------------------------------------------- */

OVC_EXPORT int ovc_engine_fd(ovc_engine *e, unsigned flags)
{
	if (!e || flags || !(e->flags & OVC_ENGINE_NO_THREADS))
		return -EINVAL;
	return e->poll_fd;
}

OVC_EXPORT int ovc_engine_process(ovc_engine *e, unsigned flags)
{
	uint64_t v;

	if (!e || flags || !(e->flags & OVC_ENGINE_NO_THREADS))
		return -EINVAL;
	int r = fault_drain(e);
	if (r < 0)
		return r;
	uint64_t now = now_nsec(CLOCK_MONOTONIC);
	if (now - e->handler.last_sweep_nsec >= 100 * NSEC_PER_USEC * 1000) {
		fault_sweep(e); /* see fault.c */
		e->handler.last_sweep_nsec = now;
	}
	bool due = read(e->timer_fd, &v, sizeof(v)) == sizeof(v);
	if (read(e->event_fd, &v, sizeof(v)) == sizeof(v))
		due = true;
	if (!due)
		return 0;
	if (e->flags & OVC_ENGINE_NO_AUTOSCAN) {
		if (atomic_exchange(&e->sw.kick, false))
			pass_swap_work(e, true);
		return 0;
	}
	uint64_t rest = pass_background_batch(e);
	pass_swap_work(e, false);
	pass_arm_timer(e, rest);
	r = fault_drain(e);
	return r < 0 ? r : 0;
}

OVC_EXPORT int64_t ovc_engine_scan_sync(ovc_engine *e, unsigned flags)
{
	if (!e || flags)
		return -EINVAL;
	pass_begin(e);
	int64_t r = share_full_pass(e);
	pass_end(e);
	return r;
}

OVC_EXPORT int ovc_engine_reclaim(ovc_engine *e, uint64_t target_bytes, unsigned flags)
{
	if (!e || (flags & ~OVC_RECLAIM_ZERO_ONLY))
		return -EINVAL;
	/* Without swap only zero sharing counts; the target is kept and
	 * reported. With swap the worker swaps out towards it. */
	if (swap_enabled(e) && !(flags & OVC_RECLAIM_ZERO_ONLY)) {
		uint64_t total = 0;
		lock_read(&e->regions_lock);
		for (size_t i = 0; i < e->nregions; i++)
			total += e->regions[i]->len_bytes;
		unlock_rw(&e->regions_lock);
		if (target_bytes > total)
			return -ENOSPC;
	}
	atomic_store(&e->sw.zero_only, (flags & OVC_RECLAIM_ZERO_ONLY) != 0);
	atomic_store(&e->c_reclaim_target, target_bytes);
	atomic_store(&e->sw.kick, swap_enabled(e));
	pass_wake(e);
	return 0;
}

OVC_EXPORT int ovc_engine_stats(ovc_engine *e, struct ovc_engine_stats *st)
{
	struct ovc_engine_stats s = { 0 };

	if (!e)
		return -EINVAL;
	int r = abi_check(st, sizeof(s), OVC_ENGINE_STATS_SIZE_VER0);
	if (r < 0)
		return r;
	if (st->flags)
		return -EINVAL;
	lock_read(&e->regions_lock);
	s.regions = e->nregions;
	for (size_t i = 0; i < e->nregions; i++) {
		s.region_bytes += e->regions[i]->len_bytes;
		s.meta_bytes += region_meta_bytes(e->regions[i]);
		if (e->regions[i]->track)
			s.meta_bytes += track_meta_bytes(e->regions[i]->track);
	}
	s.meta_bytes += e->sw.cand_cap * sizeof(*e->sw.cand);
	unlock_rw(&e->regions_lock);
	s.pages_scanned = atomic_load(&e->c.pages_scanned);
	s.zero_pages_found = atomic_load(&e->c.zero_pages_found);
	s.zero_pages_reclaimed = atomic_load(&e->c.zero_pages_reclaimed);
	int64_t now = atomic_load(&e->c.zero_pages_now);
	s.zero_pages_now = now > 0 ? (uint64_t)now : 0;
	s.zero_faults = atomic_load(&e->c.zero_faults);
	s.scan_bytes_per_sec = atomic_load(&e->c.scan_bytes_per_sec);
	s.scan_cpu_usec = atomic_load(&e->c.scan_cpu_usec);
	s.reclaim_usec = atomic_load(&e->c.reclaim_usec);
	s.distinct_hashes = atomic_load(&e->c.distinct_hashes);
	s.duplicate_pages = atomic_load(&e->c.duplicate_pages);
	for (unsigned i = 0; i < OVC_LAT_BUCKETS; i++)
		s.fault_lat_hist[i] = atomic_load(&e->c.fault_lat_hist[i]);
	int64_t sw_now = atomic_load(&e->c.swapped_pages_now);
	s.swapped_pages_now = sw_now > 0 ? (uint64_t)sw_now : 0;
	s.pages_swapped_out = atomic_load(&e->c.pages_swapped_out);
	s.pages_swapped_in = atomic_load(&e->c.pages_swapped_in);
	s.swap_bytes_on_disk = s.swapped_pages_now << PAGE_SHIFT;
	s.swap_bytes_total = swap_enabled(e) ? (uint64_t)swapdev_slots_total(e->sw.sd) << PAGE_SHIFT : 0;
	s.refaults = atomic_load(&e->c.refaults);
	s.swap_write_errors = atomic_load(&e->c.swap_write_errors);
	s.swap_read_errors = atomic_load(&e->c.swap_read_errors);
	s.swap_faults = atomic_load(&e->c.swap_faults);
	s.saved_bytes = (s.zero_pages_now + s.swapped_pages_now) << PAGE_SHIFT;
	s.reclaim_target_bytes = atomic_load(&e->c_reclaim_target);
	int64_t cached = atomic_load(&e->c.swap_cache_pages_now);
	s.swap_cache_pages_now = cached > 0 ? (uint64_t)cached : 0;
	s.swap_cache_hits = atomic_load(&e->c.swap_cache_hits);
	for (size_t i = 0; i < OVC_LAT_BUCKETS; i++)
		s.swapin_lat_hist[i] = atomic_load(&e->c.swapin_lat_hist[i]);
	if (swap_enabled(e)) {
		struct swapdev_fill_stats fs;
		swapdev_fill_stats(e->sw.sd, &fs);
		s.swap_bytes_filled = fs.slots_filled << PAGE_SHIFT;
		s.swap_fill_errors = fs.errors;
	}
	s.pinned_pages_kept = atomic_load(&e->c.pinned_pages_kept);
	return abi_copy_out(st, &s, sizeof(s), OVC_ENGINE_STATS_SIZE_VER0);
}
