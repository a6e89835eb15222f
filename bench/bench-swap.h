/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench swap: the figures of one run (struct swap_results, printed by
 * bench-swap.c as a table or one JSON object) and the measurements each of
 * its files contributes. Single-threaded driver; the measuring threads a
 * file starts are its own and joined before it returns. No locks.
 */
#ifndef OVC_BENCH_SWAP_H
#define OVC_BENCH_SWAP_H

#include <stdbool.h>
#include <stdint.h>

#include "bench.h"

struct swapdev;

#define PG 4096u
#define NOVAL (-1.0) /* printed as null */

struct swap_results {
	char dir[256], fs[64];
	double disk_write_gib_s, swapdev_write_gib_s;
	double raw_read_p50_us, raw_read_p99_us;
	double sync_read_p50_us, sync_read_p99_us, sync_read_spin_p50_us, sync_read_spin_p99_us;
	double kswap_out_gib_s, kswap_pageout_call_gib_s, kswap_in_rand_p50_us, kswap_in_rand_p99_us, kswap_in_seq_gib_s;
	char kswap_note[160];
	double fault_rtt_us, fault_rtt_other_cpu_us, fault_rtt_other_cpu_spin_us;
	double track_scan_ns_per_page, track_cold_ns_per_page;
	double track_first_write_ns, track_plain_write_ns;
	/* prototype handler (not the engine), see proto_swapin() */
	double proto_rand_same_p50_us, proto_rand_same_p99_us;
	double proto_rand_other_p50_us, proto_rand_other_p99_us;
	double proto_rand_spin_p50_us, proto_rand_spin_p99_us;
	double proto_seq_gib_s;
	/* the engine */
	double swap_fill_gib_s, swapout_unfilled_pct, swapout_nofill_gib_s;
	/* encryption (OVC_ENGINE_SWAP_ENCRYPT) and scrubbing, see reuse_run() */
	double swapout_crypt_gib_s, swapin_crypt_rand_p50_us, swapin_crypt_rand_p99_us, swapin_crypt_seq_gib_s;
	double swapin_crypt_rand_cdf[BENCH_CDF_N];
	double reuse_noscrub_gib_s, reuse_refilled_gib_s, reuse_holes_gib_s, scrub_ms, scrub_pages;
	double swapout_gib_s, swapin_rand_p50_us, swapin_rand_p99_us, swapin_seq_gib_s;
	double swapin_rand_cdf[BENCH_CDF_N], kswap_in_rand_cdf[BENCH_CDF_N];
	char engine_note[160];
};

/* --- bench-disk.c: the raw disk and lib/engine/swapdev --- */

/* GiB/s of @bytes from @mem written by io_uring O_DIRECT into a pre-touched
 * temporary file in @dir; NOVAL on failure. */
double raw_write(const char *dir, const char *mem, uint64_t bytes);
/* p50/p99 usec of 4 KiB O_DIRECT random reads at QD1 of a file of @bytes. */
void raw_read_lat(const char *dir, const char *mem, uint64_t bytes, double *p50, double *p99);
/* GiB/s of swapdev writing @mem's pages in the order @perm; the swapdev is
 * kept in *ret_sd (page perm[i] in slot i) if @ret_sd is not NULL. */
double swapdev_write(const char *dir, char *mem, uint64_t bytes, const uint32_t *perm, struct swapdev **ret_sd);
/* p50/p99 usec of swapdev_read_sync() of random single slots of @sd. */
void sync_read_lat(struct swapdev *sd, unsigned spin_usec, double *p50, double *p99);

/* --- peer-kswap.c: Linux swap, the engine's peer --- */

/* The kernel's swap-out (@repeat runs, median; the runs printed if
 * @print) and swap-in of a copy of @mem through a swapfile in @dir, into
 * res->kswap_*; swapoff and cleanup before it returns. */
void kernel_swap(const char *dir, const char *mem, uint64_t bytes, unsigned repeat, bool print,
		 struct swap_results *res);

/* --- bench-uffd.c: userfaultfd fault costs --- */

/* p50 usec of a userfaultfd round trip, the handler pinned to
 * @handler_cpu, polling or (@spin) spinning on the uffd. */
double fault_rtt(int handler_cpu, bool spin);
/* The prototype swap-in handler over @sd (page i in slot i, @mem the
 * expected content): random p50/p99 usec in *ret_a and *ret_b, or with @seq
 * the GiB/s of a sequential pass in *ret_a. */
void proto_swapin(struct swapdev *sd, const char *mem, uint32_t npages, int cpu, unsigned spin_usec, bool seq,
		  double *ret_a, double *ret_b);

/* --- bench-track.c: the cost of write tracking --- */

/* lib/engine/track over @mem, median of 5 intervals, into res->track_*. */
void track_cost(char *mem, uint64_t bytes, struct swap_results *res);

#endif
