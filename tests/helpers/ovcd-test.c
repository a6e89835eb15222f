/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the tests that run the real ovcd share: see ovcd-test.h. Any
 * thread; ovcd_ctl()'s buffer is per thread, ovcctl_json()'s belongs to
 * the main thread. No locks.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ovcd-test.h"

int ovcd_fixture_dirs(struct ovcd_fixture *f, const char *what, mode_t mode, unsigned make)
{
	snprintf(f->dir, sizeof(f->dir), "/tmp/ovc-test-%d-%s", (int)getpid(), what);
	snprintf(f->qmp_dir, sizeof(f->qmp_dir), "%s/qmp", f->dir);
	snprintf(f->engines, sizeof(f->engines), "%s/engines", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/ovcd.conf", f->dir);
	snprintf(f->sock, sizeof(f->sock), "%s/ovcd.sock", f->dir);
	snprintf(f->log, sizeof(f->log), "%s/ovcd.log", f->dir);
	snprintf(f->notify, sizeof(f->notify), "%s/notify", f->dir);
	snprintf(f->prom, sizeof(f->prom), "%s/ovc.prom", f->dir);
	if (mkdir(f->dir, mode) < 0)
		return -1;
	if ((make & OVCD_FIXTURE_QMP) && mkdir(f->qmp_dir, 0755) < 0)
		return -1;
	if ((make & OVCD_FIXTURE_ENGINES) && mkdir(f->engines, 0755) < 0)
		return -1;
	return 0;
}

void ovcd_fixture_rm(const struct ovcd_fixture *f)
{
	if (f->dir[0] && !getenv("OVC_TEST_KEEP") && sh(NULL, 0, "rm -rf '%s'", f->dir) != 0)
		fprintf(stderr, "cannot remove %s\n", f->dir);
}

void ovcd_keep_log(const struct ovcd_fixture *f, const char *name)
{
	char keep[256];

	snprintf(keep, sizeof(keep), "/tmp/ovc-test-%s-%d-ovcd.log", name, (int)getpid());
	if (sh(NULL, 0, "cp '%s' '%s'", f->log, keep) == 0)
		printf("  ovcd's log kept in %s\n", keep);
	else
		printf("  ovcd's log %s could not be kept in %s\n", f->log, keep);
}

bool file_has(const char *path, const char *needle)
{
	char buf[1 << 16];
	FILE *f = fopen(path, "re");
	bool found = false;

	while (f && !found && fgets(buf, sizeof(buf), f))
		found = strstr(buf, needle) != NULL;
	if (f)
		fclose(f);
	return found;
}

pid_t spawn_logged(const char *path, char *const argv[], const char *log, const char *notify, int deathsig)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		prctl(PR_SET_PDEATHSIG, deathsig);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (notify)
			setenv("NOTIFY_SOCKET", notify, 1);
		else
			unsetenv("NOTIFY_SOCKET");
		unsetenv("JOURNAL_STREAM");
		execv(path, argv);
		_exit(127);
	}
	return pid;
}

pid_t ovcd_spawn(const char *bin_dir, char *const argv[], const char *log, const char *notify)
{
	char bin[512];

	snprintf(bin, sizeof(bin), "%s/ovcd", bin_dir);
	return spawn_logged(bin, argv, log, notify, SIGKILL);
}

void child_kill_wait(pid_t *pid, int sig)
{
	if (*pid > 0) {
		kill(*pid, sig);
		waitpid(*pid, NULL, 0);
	}
	*pid = 0;
}

bool ovcd_wait_socket(const char *sock, unsigned timeout_ms)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };

	for (unsigned waited = 0; access(sock, F_OK) < 0; waited += 50) {
		if (waited >= timeout_ms)
			return false;
		nanosleep(&ts, NULL);
	}
	return true;
}

int unix_connect(const char *path, unsigned timeout_ms, unsigned flags)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (long)(timeout_ms % 1000) * 1000 };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | ((flags & UNIX_ASK_NOWAIT) ? SOCK_NONBLOCK : 0), 0);

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	/* SO_SNDTIMEO also bounds a blocking connect to a full queue. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || fcntl(fd, F_SETFL, 0) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int unix_ask(const char *path, const char *line, char *out, size_t size, unsigned timeout_ms, unsigned flags,
	     uint64_t *usec)
{
	uint64_t t0 = now_usec(CLOCK_MONOTONIC);
	size_t n = 0;
	int fd = unix_connect(path, timeout_ms, flags);

	if (fd < 0)
		return -1;
	if (send(fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
		close(fd);
		return -1;
	}
	while (n < size - 1) {
		ssize_t k = recv(fd, out + n, size - 1 - n, 0);

		if (k <= 0)
			break;
		n += (size_t)k;
		if (memchr(out + n - (size_t)k, '\n', (size_t)k))
			break;
	}
	out[n] = '\0';
	if (usec)
		*usec = now_usec(CLOCK_MONOTONIC) - t0;
	close(fd);
	return n > 0 && out[n - 1] == '\n' ? 0 : -1;
}

struct json_object *ovcd_ctl(const char *sock, const char *command, unsigned timeout_ms, unsigned flags,
			     uint64_t *usec)
{
	static __thread char out[1 << 20];
	char req[128];

	snprintf(req, sizeof(req), "{\"version\":1,\"command\":\"%s\"}\n", command);
	return unix_ask(sock, req, out, sizeof(out), timeout_ms, flags, usec) == 0 ? json_tokener_parse(out) : NULL;
}

int sh(char *out, size_t size, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *p;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "re");
	if (!p)
		return -1;
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

struct json_object *ovcctl_json(const char *bin_dir, const char *sock, const char *cmd)
{
	static char out[1 << 20];

	if (sh(out, sizeof(out), "%s/ovcctl -s %s --json %s 2>/dev/null", bin_dir, sock, cmd) != 0)
		return NULL;
	return json_tokener_parse(out);
}

struct json_object *ovcd_guest_of(struct json_object *guests, const char *name)
{
	struct json_object *arr = NULL;

	if (!guests || !json_object_object_get_ex(guests, "guests", &arr))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *g = json_object_array_get_idx(arr, i), *n;

		if (json_object_object_get_ex(g, "name", &n) && strcmp(json_object_get_string(n), name) == 0)
			return g;
	}
	return NULL;
}
