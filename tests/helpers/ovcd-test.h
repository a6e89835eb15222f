/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the tests that run the real ovcd share (tests/integration/
 * test-ovcd*.c, test-guest-policy.c): the fixture's directory and paths,
 * starting and stopping ovcd (or any logged child), its control socket
 * spoken to directly or through the real ovcctl, and reading its replies.
 *
 * Threads: any; nothing here keeps state but ovcd_ctl()'s reply buffer,
 * which is per thread (a sampler thread and the test's main thread may
 * ask at the same time). No locks.
 */
#ifndef OVC_OVCD_TEST_H
#define OVC_OVCD_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "common/util.h"

/* ---- the fixture's files ---- */

/* Where one ovcd of a test keeps its files: /tmp/ovc-test-PID-WHAT and,
 * in it, qmp/ and engines/ (its --qmp-dir and [engine] dir), ovcd.conf,
 * ovcd.sock, ovcd.log, notify (its sd_notify socket) and ovc.prom (its
 * [metrics] textfile). */
struct ovcd_fixture {
	char dir[128], qmp_dir[160], engines[160], conf[192], sock[192], log[192], notify[192], prom[192];
};

#define OVCD_FIXTURE_QMP     (1u << 0) /* make qmp/ */
#define OVCD_FIXTURE_ENGINES (1u << 1) /* make engines/ */

/* Fill @f's paths for /tmp/ovc-test-PID-@what and make the directory
 * with @mode, then the subdirectories of @make (OVCD_FIXTURE_*, 0755).
 * 0, or -1 with errno (an existing directory is an error). */
int ovcd_fixture_dirs(struct ovcd_fixture *f, const char *what, mode_t mode, unsigned make);

/* Remove @f's directory, unless OVC_TEST_KEEP is set (to read it after a
 * run). */
void ovcd_fixture_rm(const struct ovcd_fixture *f);

/* Copy ovcd's log to /tmp/ovc-test-@name-PID-ovcd.log, out of the
 * directory the teardown removes, and say where it is on stdout: what a
 * failed run leaves to read. */
void ovcd_keep_log(const struct ovcd_fixture *f, const char *name);

/* Whether a line of the file @path (ovcd's log) contains @needle. */
bool file_has(const char *path, const char *needle);

/* ---- processes ---- */

/* Start @path with @argv (argv[0] included) in a child that dies with
 * this process by @deathsig, stdout and stderr to @log (truncated),
 * sd_notify to @notify (NULL: none), not to the journal. The child's pid,
 * or -1. Every fd of the test is O_CLOEXEC: the child inherits none. */
pid_t spawn_logged(const char *path, char *const argv[], const char *log, const char *notify, int deathsig);

/* spawn_logged() of @bin_dir/ovcd, killed with this process. */
pid_t ovcd_spawn(const char *bin_dir, char *const argv[], const char *log, const char *notify);

/* Send @sig to *@pid if it is a child (> 0), reap it, and set *@pid to 0. */
void child_kill_wait(pid_t *pid, int sig);

/* Poll every 50 ms, for at most @timeout_ms, until @sock exists; true if
 * it does (ovcd made its control socket). */
bool ovcd_wait_socket(const char *sock, unsigned timeout_ms);

/* ---- the control socket, directly ---- */

/* unix_connect(), unix_ask() flag: connect without waiting; a full listen queue (ovcd not
 * accepting) fails at once with EAGAIN instead of waiting its turn. */
#define UNIX_ASK_NOWAIT (1u << 0)

/* A stream socket connected to @path (blocking once connected), each way
 * bounded by @timeout_ms (0: no bound); -1 with errno. */
int unix_connect(const char *path, unsigned timeout_ms, unsigned flags);

/* One @line on a fresh connection to the unix stream socket @path, one
 * reply line back into @out (NUL-terminated, with its '\n'), each way in
 * at most @timeout_ms; the round trip in *@usec unless NULL. 0, or -1
 * (errno set when the connection failed). */
int unix_ask(const char *path, const char *line, char *out, size_t size, unsigned timeout_ms, unsigned flags,
	     uint64_t *usec);

/* ovcd's reply to {"version":1,"command":@command} on @sock through
 * unix_ask(), parsed; NULL when none came or it is not JSON. */
struct json_object *ovcd_ctl(const char *sock, const char *command, unsigned timeout_ms, unsigned flags,
			     uint64_t *usec);

/* ---- the real ovcctl, and its replies ---- */

/* Run a shell command, capture its stdout into @out (NUL-terminated, may
 * be NULL); returns its exit status, -1 when it could not run. */
int sh(char *out, size_t size, const char *fmt, ...) _printf_(3, 4);

/* `@bin_dir/ovcctl -s @sock --json @cmd`; NULL when it fails. Main
 * thread only (one reply buffer). */
struct json_object *ovcctl_json(const char *bin_dir, const char *sock, const char *cmd);

/* The entry of guest @name in a "guests" reply, or NULL. */
struct json_object *ovcd_guest_of(struct json_object *guests, const char *name);

#endif
