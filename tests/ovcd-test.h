/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by the tests that run the real ovcd binary (test-ovcd.c,
 * test-ovcd-attacks.c): sleeping, the monotonic clock in ms, a shell
 * command's output, a guest in a `guests` reply, starting ovcd. Static;
 * any thread but sh() and ovcd_spawn() on the test's main thread.
 */
#ifndef OVC_OVCD_TEST_H
#define OVC_OVCD_TEST_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <json-c/json.h>

#include "../daemon/json-get.h"
#include "ovc-test.h"
#include "util.h"

static inline uint64_t mono_ms(void)
{
	return now_usec(CLOCK_MONOTONIC) / 1000;
}

static inline void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Run a shell command, capture stdout+stderr; returns the exit status. */
static int sh(char *out, size_t size, const char *fmt, ...) _printf_(3, 4);
static inline int sh(char *out, size_t size, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *p;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	assert_non_null(p);
	if (out && size) {
		n = fread(out, 1, size - 1, p);
		out[n] = '\0';
	} else {
		char buf[4096];
		while (fread(buf, 1, sizeof(buf), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Each test's first line: skip with the fixture's reason (a global F
 * with a const char *skip). */
#define SKIP_IF_NEEDED()                                                       \
	do {                                                                   \
		if (F.skip)                                                    \
			skip_because("%s", F.skip);                            \
	} while (0)

/* The entry of guest @name in a `guests` reply, or NULL. */
static inline struct json_object *guest_of(struct json_object *guests, const char *name)
{
	struct json_object *arr = json_get(guests, "guests");

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *g = json_object_array_get_idx(arr, i);
		if (strcmp(json_object_get_string(json_get(g, "name")), name) == 0)
			return g;
	}
	return NULL;
}

/* Start @dir/ovcd with @argv (argv[0] included), its stderr to @log
 * (truncated), sd_notify to @notify (NULL: none), killed with this
 * process. The child's pid, or -1. */
static inline pid_t ovcd_spawn(const char *dir, char *const argv[], const char *log, const char *notify)
{
	pid_t pid = fork();

	if (pid == 0) {
		char bin[512];
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, STDERR_FILENO);
		if (notify)
			setenv("NOTIFY_SOCKET", notify, 1);
		else
			unsetenv("NOTIFY_SOCKET");
		unsetenv("JOURNAL_STREAM");
		snprintf(bin, sizeof(bin), "%s/ovcd", dir);
		execv(bin, argv);
		_exit(127);
	}
	return pid;
}

#endif
