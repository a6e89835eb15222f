/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench all [--size SIZE] [OUTDIR]: run every benchmark with its
 * peers, each in its own process (a crash or a refused peer costs one
 * table, not the run), keep each one's JSON in DIR/data/, then render
 * DIR/report.md and its plots with scripts/bench-report (gnuplot).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#ifndef OVC_SOURCE_DIR
#error OVC_SOURCE_DIR must be set by the build
#endif

/* Run "ovc-bench ARGS... --json" with stdout into @path. Returns the exit
 * status, or -1 if it could not run. */
static int run_json(const char *path, char *const args[])
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(127);
		execv("/proc/self/exe", args);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int bench_all(const struct bench_opts *opts)
{
	const char *out = OVC_SOURCE_DIR "/docs/bench";
	char size[32], data[4096], path[4200];
	int failed = 0;

	if (opts->argc > 1) {
		fprintf(stderr, "ovc-bench all: takes one output directory at most\n");
		return 2;
	}
	if (opts->argc == 1)
		out = opts->argv[0];
	snprintf(size, sizeof(size), "%llu", (unsigned long long)(opts->size_bytes ? opts->size_bytes : (1ull << 30)));
	snprintf(data, sizeof(data), "%s/data", out);
	if (mkdir(out, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "ovc-bench all: cannot create %s: %m\n", out);
		return 1;
	}
	if (mkdir(data, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "ovc-bench all: cannot create %s: %m\n", data);
		return 1;
	}

	static const char *const guest_counts[] = { "10", "100", "1000", "5000" };
	struct {
		const char *file;
		char *args[8];
	} runs[4 + sizeof(guest_counts) / sizeof(guest_counts[0])];
	size_t n = 0;
	runs[n++] = (typeof(runs[0])){ "zero.json", { "ovc-bench", "zero", "--json", "--size", size, NULL } };
	runs[n++] = (typeof(runs[0])){ "swap.json", { "ovc-bench", "swap", "--json", "--size", size, NULL } };
	static char names[sizeof(guest_counts) / sizeof(guest_counts[0])][32];
	for (size_t i = 0; i < sizeof(guest_counts) / sizeof(guest_counts[0]); i++) {
		snprintf(names[i], sizeof(names[i]), "policy-%s.json", guest_counts[i]);
		runs[n++] = (typeof(runs[0])){ names[i],
			{ "ovc-bench", "policy", "--json", (char *)guest_counts[i], NULL } };
	}

	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", data, runs[i].file);
		fprintf(stderr, "ovc-bench all: %s %s ...\n", runs[i].args[1],
			runs[i].args[3] && strcmp(runs[i].args[1], "policy") == 0 ? runs[i].args[3] : "");
		int r = run_json(path, runs[i].args);
		if (r != 0) {
			fprintf(stderr, "ovc-bench all: %s exited with %d; its table will be missing\n",
				runs[i].file, r);
			unlink(path);
			failed++;
		}
	}

	char *const report[] = { "python3", OVC_SOURCE_DIR "/scripts/bench-report", data, (char *)out, NULL };
	pid_t pid = fork();
	if (pid == 0) {
		execvp(report[0], report);
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "ovc-bench all: rendering the report failed\n");
		return 1;
	}
	fprintf(stderr, "ovc-bench all: wrote %s/report.md%s\n", out,
		failed ? " (some benchmarks failed, see above)" : "");
	return failed ? 1 : 0;
}
