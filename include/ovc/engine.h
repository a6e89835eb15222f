/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc engine — the part of libovc a VMM embeds.
 *
 * The VMM registers its guest RAM as regions. The engine then scans them,
 * gives back the memory of pages that hold only zeros (the guest keeps
 * reading zeros; its next write gets a private copy) and, when asked to
 * reclaim, writes cold pages to a swap file and drops them. No write is ever
 * lost.
 *
 * Accesses served (the engine's userfaultfd handler supplies the page and
 * the access completes): a vCPU through KVM; loads and stores of any thread
 * of the VMM; the kernel's accesses on the VMM's behalf that pin pages
 * first — O_DIRECT and buffered read/write/pread(v)/pwrite(v) into and from
 * guest RAM, io_uring reads and writes, vmsplice/splice, and
 * process_vm_readv/process_vm_writev from any process. Not served:
 * /proc/PID/mem, and ptrace's PTRACE_PEEKDATA and PTRACE_POKEDATA (so
 * debuggers, and anything else built on the kernel's access_process_vm),
 * cannot wait for the handler and fail with EIO on a page that is not
 * present — SWAPPED, in transit, a ZERO page of shared memory, or any hole
 * (discarded or never touched) — and, for writes, on a page under write
 * protection: with OVC_ENGINE_SYNC_WP every page left unwritten since the
 * last tracking interval, and on the write-protect path the pages of a
 * batch in progress. A VMM that needs such access goes through a served
 * path instead (process_vm_readv/writev on its own pid work). Details:
 * libovc(3), ACCESSES.
 *
 * Pages the kernel holds pinned: the kernel writes into guest RAM through a
 * pin, without a fault (O_DIRECT and io_uring reads into guest buffers,
 * process_vm_writev, vhost). A page it may still write is never dropped,
 * shared or written out with stale content: the engine takes pages away
 * only through UFFDIO_MOVE, which refuses pinned pages (they stay resident,
 * counted in pinned_pages_kept), and looks at them again once moved.
 * Where no such primitive exists — shared memory, and anonymous memory on
 * kernels without UFFDIO_MOVE (before 6.8) or with OVC_ENGINE_NO_MOVE —
 * a region keeps its pages (zero pages are found and counted, nothing is
 * dropped, shared or swapped out) unless added with OVC_REGION_UNPINNED;
 * ovc_region_add(3).
 *
 * Threads: an engine is driven either by its own threads (default) or by
 * the VMM's event loop (OVC_ENGINE_NO_THREADS, then poll ovc_engine_fd() and
 * call ovc_engine_process()). All calls on one engine are thread-safe unless
 * noted. Calls never block on disk I/O unless their name says so.
 */
#ifndef OVC_ENGINE_H
#define OVC_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <ovc/common.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ovc_engine ovc_engine;

/* Size of the page the engine manages. */
#define OVC_PAGE_SIZE 4096u

/* Flags of struct ovc_engine_opts.flags. */
enum {
	/* Start no threads: the caller polls ovc_engine_fd() for POLLIN and
	 * calls ovc_engine_process(). The fault handler then runs in the
	 * caller's loop, which therefore must never touch guest memory. */
	OVC_ENGINE_NO_THREADS = 1u << 0,
	/* Never use UFFDIO_MOVE even where the kernel has it; always take the
	 * write-protect path, which drops with MADV_DONTNEED and so does not
	 * keep kernel writes through a pin: regions keep their pages unless
	 * added with OVC_REGION_UNPINNED (see above). For testing and for
	 * kernels with MOVE bugs. */
	OVC_ENGINE_NO_MOVE = 1u << 1,
	/* Do not scan on a timer; scan only on ovc_engine_scan_sync() and
	 * ovc_engine_reclaim(). */
	OVC_ENGINE_NO_AUTOSCAN = 1u << 2,
	/* Use UFFDIO_MOVE for private anonymous memory: the default wherever
	 * the kernel has it (it refuses pages the kernel holds pinned), with
	 * or without threads. Kept for callers written when the default with
	 * threads was the write-protect path. */
	OVC_ENGINE_MOVE = 1u << 3,
	/* With swap: track writes with synchronous write-protect faults and
	 * swap out by the write-protect path, as on kernels before 6.7 (no
	 * UFFDIO_MOVE, no UFFD_FEATURE_WP_ASYNC, no PAGEMAP_SCAN). Chosen
	 * automatically when the kernel lacks one of these or with
	 * OVC_ENGINE_NO_MOVE. Needs the engine's threads (not with
	 * OVC_ENGINE_NO_THREADS) and excludes OVC_ENGINE_MOVE. Where the
	 * kernel has UFFDIO_MOVE these paths drop through it (pinned pages);
	 * without it a region is swapped only with OVC_REGION_UNPINNED.
	 * Without swap it changes nothing. */
	OVC_ENGINE_SYNC_WP = 1u << 4,
	/* With swap: encrypt every page written to the swap file with
	 * AES-256-XTS (the slot number as tweak) under a random key made at
	 * ovc_engine_new(), held only in locked memory and wiped at
	 * ovc_engine_free(); pages are encrypted in the engine's own buffer,
	 * never in guest RAM, and decrypted when read back. What the file
	 * held is unreadable once the engine is gone. -EOPNOTSUPP when libovc
	 * was built without libcrypto; ovc_engine_new() fails with the errno
	 * of mlock() when the key cannot be locked (RLIMIT_MEMLOCK). Without
	 * swap it changes nothing. */
	OVC_ENGINE_SWAP_ENCRYPT = 1u << 5,
};

/*
 * A failed read of a swapped page cannot be hidden from the guest: the engine
 * calls this with the guest-physical address and the negative errno, then
 * keeps the faulting thread blocked until the page is retried successfully
 * or the region is removed. It runs on the thread that served the fault: the
 * engine's fault-handler thread, or with OVC_ENGINE_NO_THREADS the thread
 * inside ovc_engine_process() (or inside another call of the engine that
 * reads the userfaultfd while it waits). When ovc_region_remove() or
 * ovc_engine_free() cannot bring a swapped page back, it runs on their
 * caller's thread, once per page, before they return. Always after the
 * engine has released its locks (checked in debug builds), after the error
 * was logged. Must not call back into the engine.
 */
typedef void (*ovc_io_error_fn)(void *userdata, uint64_t guest_phys, int err);

/*
 * The size rule, the same for every options and stats struct of the ABI
 * (struct ovc_engine_opts, struct ovc_engine_stats, struct ovc_publish_opts;
 * the rule of openat2(2) and clone3(2)). Each starts with uint32_t size,
 * which the caller sets to sizeof the struct as its headers define it, and
 * zero-initialises the rest (= { .size = sizeof(x) }):
 *   - size smaller than the struct's first published size (its
 *     OVC_*_SIZE_VER0), or a NULL struct where one is required: -EINVAL;
 *   - size larger than this library's struct (a caller built against newer
 *     headers): accepted when every byte past this library's struct is zero,
 *     -E2BIG otherwise (the caller asks for something this library does not
 *     know), and -E2BIG for any size above 4096;
 *   - a smaller size (a caller built against older headers): the fields past
 *     it read as zero in options, and are not written in stats.
 * Stats are written up to the smaller of the two sizes. Fields are only ever
 * appended, each marked with the version that added it ("since X.Y") and a
 * new OVC_*_SIZE_VERn; reserved fields and unknown flag bits must be zero
 * (-EINVAL). Layouts use fixed-width types only, with no hole and no padded
 * tail, so they cannot change with the compiler.
 */

struct ovc_engine_opts {
	/* sizeof(struct ovc_engine_opts) as the caller knows it; the size
	 * rule above. */
	uint32_t size;
	/* OVC_ENGINE_*; unknown bits give -EINVAL. */
	uint32_t flags;

	ovc_log_fn log_fn;               /* NULL: no messages */
	void *log_userdata;
	uint32_t log_level;              /* enum ovc_log_level; 0: OVC_LOG_NOTICE */
	uint32_t reserved0;              /* must be 0 */

	/* Time between scan passes; 0: 1 s. */
	uint64_t scan_interval_usec;
	/* CPU budget of the scanner, in permille of one CPU; 0: 100 (10%). */
	uint32_t scan_cpu_permille;
	uint32_t reserved1;              /* must be 0 */

	/* Swapping. swap_path names a directory (the engine creates an
	 * unlinked O_TMPFILE there) or NULL for no swapping; both or neither
	 * of swap_path and swap_size_bytes. Writes are tracked with WP_ASYNC
	 * and PAGEMAP_SCAN and pages swap out through UFFDIO_MOVE (Linux
	 * 6.8+); where one of them is missing, or with OVC_ENGINE_SYNC_WP,
	 * by write-protect faults and the write-protect path, which needs the
	 * engine's threads and userfaultfd write-protect (-EOPNOTSUPP
	 * otherwise). Shared-memory regions are then refused (-EOPNOTSUPP). */
	const char *swap_path;
	uint64_t swap_size_bytes;        /* preallocated; 0: no swapping */
	uint64_t cold_age_usec;          /* unwritten for this long = cold; 0: 30 s */
	uint64_t swapout_rate_bytes_per_sec; /* 0: unlimited */

	ovc_io_error_fn io_error_fn;     /* NULL: errors are only logged */
	void *io_error_userdata;
	/* Fields appended later go here, each with "since X.Y". */
};

/* Size of struct ovc_engine_opts in 0.1, its first published layout. */
#define OVC_ENGINE_OPTS_SIZE_VER0 \
	(offsetof(struct ovc_engine_opts, io_error_userdata) + sizeof(void *))

/*
 * ovc_engine_new - create an engine
 * @opts: options; NULL means all defaults
 * @ret: receives the engine, untouched on failure
 *
 * Opens the engine's userfaultfd (through /dev/userfaultfd when readable,
 * else the syscall, which needs CAP_SYS_PTRACE or vm.unprivileged_userfaultfd
 * for faults raised by KVM) and, unless OVC_ENGINE_NO_THREADS, starts its
 * threads.
 *
 * Returns 0, or -EINVAL (bad option or flag, opts->size below
 * OVC_ENGINE_OPTS_SIZE_VER0, a reserved field not 0), -E2BIG (opts->size
 * larger than this library's struct with a non-zero byte past it, or above
 * 4096: see the size rule above), -EPERM (no userfaultfd
 * permission), -ENOSYS (kernel without userfaultfd), -ENOMEM, or the errno
 * of opening the swap file.
 */
OVC_EXPORT int ovc_engine_new(const struct ovc_engine_opts *opts, ovc_engine **ret);

/* Stop the threads, wait for I/O in flight, put every dropped page back
 * (so the guest RAM stays valid after the engine is gone) and free. Takes
 * NULL. Returns NULL. */
OVC_EXPORT ovc_engine *ovc_engine_free(ovc_engine *e);

/* Flags of ovc_region_add(). */
enum {
	/* Never swap pages of this region (zero sharing still applies). */
	OVC_REGION_NO_SWAP = 1u << 0,
	/* Never share zero pages of this region: neither a scan pass nor a
	 * swap-out maps the shared zero page (or, on shared memory, leaves a
	 * hole) for one. With swap, its cold zero pages are written to the
	 * swap file like any other page. */
	OVC_REGION_NO_SHARE = 1u << 1,
	/* The VMM promises that nothing writes this region through a pin or
	 * another mapping: no O_DIRECT or io_uring read into it, no
	 * process_vm_writev(), no vhost, no vhost-user backend mapping it;
	 * only CPUs through page faults. It lets the engine reclaim where no
	 * kernel primitive refuses a pinned page: shared memory (memfd,
	 * shmem: pages leave by a punched hole) and anonymous memory on an
	 * engine without UFFDIO_MOVE (kernel before 6.8, OVC_ENGINE_NO_MOVE:
	 * pages leave by MADV_DONTNEED). Both drop a pinned page, and a write
	 * through the pin is lost. Without this flag such a region keeps its
	 * pages: zero pages are found and counted (zero_pages_found) but not
	 * dropped or shared, and nothing is swapped out. No effect where the
	 * engine has UFFDIO_MOVE on anonymous memory, which refuses pinned
	 * pages. */
	OVC_REGION_UNPINNED = 1u << 2,
};

/*
 * ovc_region_add - hand a range of guest RAM to the engine
 * @host_addr: start in this process, page aligned; private anonymous or
 *             shared memfd/shmem memory, mapped read-write
 * @len_bytes: length, a non-zero multiple of OVC_PAGE_SIZE
 * @guest_phys: guest-physical address of @host_addr, page aligned
 * @flags: OVC_REGION_*
 *
 * Marks the range MADV_DONTFORK and registers it with userfaultfd. Nothing is
 * left half-registered on failure.
 *
 * Returns 0, or -EINVAL (unaligned, zero length, unknown flag), -EEXIST
 * (overlaps a region, in host or guest-physical space), -EFAULT (not mapped,
 * or memory of a kind userfaultfd cannot register: file-backed, hugetlb,
 * read-only), -ENOMEM.
 */
OVC_EXPORT int ovc_region_add(ovc_engine *e, void *host_addr, uint64_t len_bytes,
			      uint64_t guest_phys, unsigned flags);

/*
 * ovc_region_remove - give a region back to the VMM
 * @guest_phys: the address the region was added with
 *
 * Waits for I/O in flight, brings every swapped page back into memory and
 * unregisters the range. May block on disk reads. Returns 0, -ENOENT (no
 * such region), -EIO (a swapped page could not be read; the region stays).
 */
OVC_EXPORT int ovc_region_remove(ovc_engine *e, uint64_t guest_phys, unsigned flags);

/*
 * ovc_engine_fd - the fd to poll in OVC_ENGINE_NO_THREADS mode
 * @flags: none yet, must be 0 (room for asking for one of several fds)
 *
 * Readable (POLLIN) when ovc_engine_process() has work. Owned by the engine.
 * Returns the fd, or -EINVAL when the engine runs its own threads, or
 * @flags is not 0.
 */
OVC_EXPORT int ovc_engine_fd(ovc_engine *e, unsigned flags);

/*
 * ovc_engine_process - do pending work in OVC_ENGINE_NO_THREADS mode
 *
 * Serves faults, completes I/O and runs a slice of scanning within the CPU
 * budget. Never blocks. Returns 0 or a negative errno.
 */
OVC_EXPORT int ovc_engine_process(ovc_engine *e, unsigned flags);

/*
 * ovc_engine_scan_sync - scan every region now and share its zero pages
 *
 * Blocks the caller until one full pass is done, ignoring the CPU budget.
 * Returns the number of pages reclaimed by this pass, or a negative errno.
 */
OVC_EXPORT int64_t ovc_engine_scan_sync(ovc_engine *e, unsigned flags);

/* Flags of ovc_engine_reclaim(). */
enum {
	OVC_RECLAIM_ZERO_ONLY = 1u << 0, /* share zero pages, swap nothing */
};

/*
 * ovc_engine_reclaim - set how many bytes the engine should give back
 * @target_bytes: bytes of guest RAM to keep reclaimed (zero-shared plus
 *                swapped); 0 returns to zero sharing only
 *
 * Zero pages go first, then cold pages oldest first, within the swap-out rate
 * limit. Returns at once; progress shows in ovc_engine_stats().
 * Returns 0, -EINVAL, -ENOSPC (with swap: target beyond the registered
 * guest RAM).
 */
OVC_EXPORT int ovc_engine_reclaim(ovc_engine *e, uint64_t target_bytes, unsigned flags);

/* Fault latency histogram: bucket i counts faults that took less than
 * 2^i microseconds (and at least 2^(i-1)); the last bucket is open-ended. */
#define OVC_LAT_BUCKETS 20

struct ovc_engine_stats {
	uint32_t size;                 /* caller sets sizeof(struct ovc_engine_stats) */
	uint32_t flags;                /* set by the caller; none yet, must be 0 */

	uint64_t regions;
	uint64_t region_bytes;         /* guest RAM registered */
	uint64_t meta_bytes;           /* engine metadata for all regions */

	/* Zero sharing. */
	uint64_t pages_scanned;        /* cumulative */
	uint64_t zero_pages_found;     /* cumulative */
	uint64_t zero_pages_reclaimed; /* cumulative */
	uint64_t zero_pages_now;       /* pages in state ZERO now */
	uint64_t zero_faults;          /* missing faults answered with a zero page */
	uint64_t scan_bytes_per_sec;   /* of the last full pass */
	uint64_t scan_cpu_usec;        /* cumulative CPU of scanning */
	uint64_t reclaim_usec;         /* cumulative wall time spent dropping pages */
	uint64_t distinct_hashes;      /* of the last full pass */
	uint64_t duplicate_pages;      /* non-zero pages whose hash was seen before */

	/* Swapping. */
	uint64_t swapped_pages_now;
	uint64_t pages_swapped_out;    /* cumulative */
	uint64_t pages_swapped_in;     /* cumulative */
	uint64_t swap_bytes_on_disk;
	uint64_t swap_bytes_total;
	uint64_t refaults;             /* swapped in soon after swap-out */
	uint64_t swap_write_errors;
	uint64_t swap_read_errors;
	uint64_t swap_faults;          /* missing faults served from swap */
	uint64_t fault_lat_hist[OVC_LAT_BUCKETS];

	/* What the engine gives back to the host now. */
	uint64_t saved_bytes;          /* (zero_pages_now + swapped_pages_now) * page */
	uint64_t reclaim_target_bytes;

	/* Swap cache: pages back in memory that still own their slot. */
	uint64_t swap_cache_pages_now;
	uint64_t swap_cache_hits;      /* evictions that needed no write */

	/* Swap-in latency: the faults of fault_lat_hist served from swap. */
	uint64_t swapin_lat_hist[OVC_LAT_BUCKETS];

	/* The swap file's zero-fill ahead of use, see ovc_engine_stats(3). */
	uint64_t swap_bytes_filled;    /* cumulative */
	uint64_t swap_fill_errors;     /* the fill stops at the first */

	/* Since 0.1 (appended after swap_fill_errors before 0.1.0 was
	 * released, so part of OVC_ENGINE_STATS_SIZE_VER0): pages a pass would
	 * have dropped (zero, or written to swap) but left in place because
	 * the kernel held them pinned (UFFDIO_MOVE refused them) or wrote them
	 * through a pin after they were checked. Cumulative. */
	uint64_t pinned_pages_kept;
	/* Fields appended later go here, each with "since X.Y". */
};

/* Size of struct ovc_engine_stats in 0.1, its first published layout. */
#define OVC_ENGINE_STATS_SIZE_VER0 \
	(offsetof(struct ovc_engine_stats, pinned_pages_kept) + sizeof(uint64_t))

/*
 * ovc_engine_stats - read the engine's counters
 * @st: the caller sets st->size and st->flags (0) and zeroes the rest; the
 *      size rule above. Fields past st->size are not written.
 *
 * Returns 0, or -EINVAL (NULL engine or @st, st->size below
 * OVC_ENGINE_STATS_SIZE_VER0, st->flags not 0), -E2BIG (st->size larger
 * than this library's struct with a non-zero byte past it, or above 4096).
 */
OVC_EXPORT int ovc_engine_stats(ovc_engine *e, struct ovc_engine_stats *st);

#ifdef __cplusplus
}
#endif

#endif
