/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench: one program, one subcommand per benchmark (bench-<name>.c),
 * each measuring ovc and its peer in the same run. Never run by meson test.
 * The swap subcommand is split by what each part measures; its parts
 * share bench-swap.h.
 */
#ifndef OVC_BENCH_H
#define OVC_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct bench_opts {
	bool json;            /* --json: one JSON object on stdout */
	uint64_t size_bytes;  /* --size: region size, 0 = the benchmark's default */
	unsigned repeat;      /* --repeat: runs per measurement for medians, 0 = default */
	int argc;             /* the rest, for the subcommand */
	char **argv;
};

/* Each subcommand: returns 0 or a process exit code; prints its table or,
 * with opts->json, one JSON object. */
typedef int (*bench_fn)(const struct bench_opts *opts);

int bench_zero(const struct bench_opts *opts);
int bench_swap(const struct bench_opts *opts);
int bench_policy(const struct bench_opts *opts);
int bench_all(const struct bench_opts *opts);

/* --- helpers (bench-util.c) --- */

/* Parse "1GiB", "256MiB", "4096" into bytes; 0 on error. */
uint64_t bench_parse_size(const char *s);
/* Monotonic wall clock and this process's CPU time (all threads), ns. */
uint64_t bench_now_ns(void);
uint64_t bench_cpu_ns(void);
/* CPU time of another process (all threads) from /proc, ns; 0 if gone. */
uint64_t bench_proc_cpu_ns(int pid);
/* Median / percentile (0..100) of @n doubles; sorts @v in place. */
double bench_percentile(double *v, size_t n, double pct);
/* Write "\"machine\":{...}" (no braces around, no trailing comma) with the
 * kernel, CPU model, cores, memory and date, to @f. */
void bench_json_machine(FILE *f);
/* The same as a human header line. */
void bench_print_machine(FILE *f);
/* Pin the calling thread to @cpu (ignored if it fails). */
void bench_pin(int cpu);
/* Median of @n doubles (bench_percentile at 50); sorts @v in place. */
double bench_median(double *v, unsigned n);
/* Commit the journal of @dir's file system (and with it the discards of
 * files just freed) so that one run does not pay for the previous one. */
void bench_settle(const char *dir);

/* Latency distributions in the JSON: [percentile, value] pairs at these
 * BENCH_CDF_N percentiles. */
#define BENCH_CDF_N 14
extern const double bench_cdf_pct[BENCH_CDF_N];
/* The BENCH_CDF_N percentiles of @n doubles into @out; sorts @lat. */
void bench_cdf_of(double *lat, size_t n, double *out);
/* Touch @n random 4 KiB pages of @mem (of @npages), each read timed from
 * the touching thread, in usec: p50, p99 and the CDF. The same seed every
 * call, so that a peer and the engine touch the same pages in the same
 * order. */
void bench_rand_touch(const char *mem, uint64_t npages, unsigned n, double *p50, double *p99, double *cdf);

#endif
