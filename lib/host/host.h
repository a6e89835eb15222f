/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Host memory signals: /proc/meminfo and memory PSI (/proc/pressure/memory),
 * and PSI trigger fds. Internal to ovcd; not exported from libovc.so.
 *
 * Every reader takes @root, a prefix for the paths ("" or NULL: the real
 * files), so unit tests run against fixture trees. The parsers are pure and
 * exposed for tests and fuzzing. Any thread; no state.
 */
#ifndef OVC_HOST_H
#define OVC_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ovcd_meminfo {
	uint64_t total_bytes;        /* MemTotal */
	uint64_t free_bytes;         /* MemFree */
	uint64_t available_bytes;    /* MemAvailable */
	uint64_t buffers_bytes;
	uint64_t cached_bytes;
	uint64_t swap_total_bytes;
	uint64_t swap_free_bytes;
	uint64_t anon_bytes;         /* AnonPages */
	uint64_t shmem_bytes;
	uint64_t committed_as_bytes;
	uint64_t commit_limit_bytes;
};

/* One line of a PSI file; averages in basis points (avg10=1.23 → 123). */
struct ovcd_psi_line {
	uint32_t avg10_basis_points;
	uint32_t avg60_basis_points;
	uint32_t avg300_basis_points;
	uint64_t total_usec;         /* cumulative stall time */
};

struct ovcd_psi {
	struct ovcd_psi_line some;
	struct ovcd_psi_line full;
};

/* Parse /proc/meminfo text. MemTotal, MemFree and MemAvailable must be
 * there (-EBADMSG otherwise, or for a malformed line); other fields are 0
 * when absent. *ret untouched on failure. */
int ovcd_meminfo_parse(const char *text, struct ovcd_meminfo *ret);
/* Read ROOT/proc/meminfo. -errno of open/read, or as the parser. */
int ovcd_meminfo_read(const char *root, struct ovcd_meminfo *ret);

/* Parse PSI text ("some avg10=… total=…" and "full …"). -EBADMSG when a
 * line is malformed or missing. */
int ovcd_psi_parse(const char *text, struct ovcd_psi *ret);
/* Read ROOT/proc/pressure/memory. -ENOENT: kernel without PSI;
 * -EOPNOTSUPP: PSI built in but disabled (boot with psi=1). */
int ovcd_psi_read(const char *root, struct ovcd_psi *ret);

/*
 * Open a PSI trigger on ROOT/proc/pressure/memory: POLLPRI on the returned
 * fd (O_CLOEXEC|O_NONBLOCK) when tasks stalled for @stall_usec within
 * @window_usec ("some", or "full" when @full). The window must be 500 ms to
 * 10 s and stall ≤ window (-EINVAL). Without CAP_SYS_RESOURCE the kernel
 * takes only windows in multiples of 2 s; the window is then rounded up to
 * the next one and the stall scaled with it. POLLERR means the source went
 * away. Returns the fd or -errno.
 */
int ovcd_psi_trigger_open(const char *root, bool full, uint64_t stall_usec, uint64_t window_usec);

/*
 * A memory cgroup that holds the guests (v1: memory.limit_in_bytes,
 * memory.usage_in_bytes, total_inactive_file of memory.stat; v2:
 * memory.max, memory.current, inactive_file). limit_bytes is UINT64_MAX
 * when the cgroup has no limit.
 */
struct ovcd_cgroup_mem {
	uint64_t limit_bytes;
	uint64_t usage_bytes;
	uint64_t inactive_file_bytes; /* page cache the kernel drops first */
};

/* Read the memory cgroup directory ROOT/@dir (an absolute path such as
 * /sys/fs/cgroup/memory/machine): v2 when it has memory.max, else v1.
 * -errno of open/read, -EBADMSG for a value that is not a number. */
int ovcd_cgroup_mem_read(const char *root, const char *dir, struct ovcd_cgroup_mem *ret);

/*
 * Make @mem describe what the cgroup leaves its members: MemTotal at most
 * the limit, MemFree at most limit - usage, MemAvailable at most limit -
 * usage + inactive file cache (as the kernel's MemAvailable counts
 * reclaimable cache). The host's own figures stay where they are lower (a
 * limit above what the host has). No limit: @mem unchanged.
 */
void ovcd_meminfo_limit_to_cgroup(struct ovcd_meminfo *mem, const struct ovcd_cgroup_mem *cg);

#endif
