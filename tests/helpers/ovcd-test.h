/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Helpers shared by the tests that run the real ovcd binary (test-ovcd.c,
 * test-ovcd-attacks.c), besides ovcd-client.h's: the skip macro, starting
 * ovcd. Test main thread.
 */
#ifndef OVC_OVCD_TEST_H
#define OVC_OVCD_TEST_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "ovcd-client.h"
#include "ovc-test.h"

/* Each test's first line: skip with the fixture's reason (a global F
 * with a const char *skip). */
#define SKIP_IF_NEEDED()                                                       \
	do {                                                                   \
		if (F.skip)                                                    \
			skip_because("%s", F.skip);                            \
	} while (0)

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
