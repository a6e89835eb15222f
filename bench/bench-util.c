/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common/util.h"

uint64_t bench_parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	static const struct {
		const char *suffix;
		uint64_t mult;
	} units[] = {
		{ "", 1 }, { "B", 1 }, { "K", 1024 }, { "KiB", 1024 }, { "M", 1 << 20 },
		{ "MiB", 1 << 20 }, { "G", 1 << 30 }, { "GiB", 1 << 30 },
	};
	if (end == s)
		return 0;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(end, units[i].suffix) == 0)
			return v * units[i].mult;
	return 0;
}

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_proc_cpu_ns(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* Fields after the command name (which may hold spaces): utime is the
	 * 14th field overall, the 12th after ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	unsigned long long utime = 0, stime = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
		   &stime) != 2)
		return 0;
	return (utime + stime) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double bench_percentile(double *v, size_t n, double pct)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	size_t i = (size_t)(pct / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static void cpu_model(char *buf, size_t len)
{
	char line[256];
	FILE *f = fopen("/proc/cpuinfo", "re");
	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10) == 0) {
			char *p = strchr(line, ':');
			if (p) {
				p += 2;
				p[strcspn(p, "\n")] = 0;
				snprintf(buf, len, "%s", p);
			}
			break;
		}
	}
	fclose(f);
}

static void machine(char *kernel, size_t klen, char *cpu, size_t clen, char *date, size_t dlen,
		    long *cores, unsigned long long *mem_mib)
{
	struct utsname u;
	time_t t = time(NULL);
	struct tm tm;

	uname(&u);
	snprintf(kernel, klen, "%s", u.release);
	cpu_model(cpu, clen);
	gmtime_r(&t, &tm);
	strftime(date, dlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
	*cores = sysconf(_SC_NPROCESSORS_ONLN);
	*mem_mib = (unsigned long long)sysconf(_SC_PHYS_PAGES) * (unsigned long long)sysconf(_SC_PAGESIZE) >> 20;
}

void bench_json_machine(FILE *f)
{
	char kernel[128], cpu[128], date[32];
	long cores;
	unsigned long long mem;

	machine(kernel, sizeof(kernel), cpu, sizeof(cpu), date, sizeof(date), &cores, &mem);
	fprintf(f, "\"machine\":{\"kernel\":\"%s\",\"cpu\":\"%s\",\"cores\":%ld,\"mem_mib\":%llu,\"date\":\"%s\"}",
		kernel, cpu, cores, mem, date);
}

void bench_print_machine(FILE *f)
{
	char kernel[128], cpu[128], date[32];
	long cores;
	unsigned long long mem;

	machine(kernel, sizeof(kernel), cpu, sizeof(cpu), date, sizeof(date), &cores, &mem);
	fprintf(f, "machine: Linux %s, %s, %ld cores, %llu MiB, %s\n", kernel, cpu, cores, mem, date);
}

void bench_pin(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

double bench_median(double *v, unsigned n)
{
	return bench_percentile(v, n, 50);
}

void bench_settle(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		syncfs(fd);
		close(fd);
	}
}

const double bench_cdf_pct[BENCH_CDF_N] = { 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9 };

void bench_cdf_of(double *lat, size_t n, double *out)
{
	for (unsigned i = 0; i < BENCH_CDF_N; i++)
		out[i] = bench_percentile(lat, n, bench_cdf_pct[i]);
}

void bench_rand_touch(const char *mem, uint64_t npages, unsigned n, double *p50, double *p99, double *cdf)
{
	double *lat = calloc(n, sizeof(*lat));
	uint64_t s = 4242;
	volatile char sink = 0;
	for (unsigned i = 0; lat && i < n; i++) {
		uint64_t p = xorshift64(&s) % npages;
		uint64_t t0 = bench_now_ns();
		sink += ((const volatile char *)mem)[p * 4096 + 1];
		lat[i] = (double)(bench_now_ns() - t0) / 1e3;
	}
	(void)sink;
	if (lat) {
		*p99 = bench_percentile(lat, n, 99);
		*p50 = bench_percentile(lat, n, 50);
		bench_cdf_of(lat, n, cdf);
	}
	free(lat);
}
