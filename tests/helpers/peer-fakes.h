/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fake peers for the daemon and driver tests (test-ovc-driver.c,
 * test-ovcd.c, test-ovcd-peers.c): what a rogue VMM or QEMU would run.
 * Header-only, for the test binaries; a fake runs in a child process of
 * its own, started by fake_engine_start() or fake_qmp_start(), and shares
 * only its struct fake_peer_record (MAP_SHARED) with the test.
 */
#ifndef OVC_PEER_FAKES_H
#define OVC_PEER_FAKES_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

/* A listening unix socket at @path, bound under a hidden name beside it
 * (".NAME.tmp") and renamed into place, as engines publish: a peer never
 * finds it half made. The fd, or -1. */
static inline int fake_listen_at(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[sizeof(sa.sun_path)];
	const char *slash = strrchr(path, '/');
	int n = slash ? snprintf(tmp, sizeof(tmp), "%.*s/.%s.tmp", (int)(slash - path), path, slash + 1)
		      : snprintf(tmp, sizeof(tmp), ".%s.tmp", path);
	int fd;

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -1;
	memcpy(sa.sun_path, tmp, (size_t)n + 1);
	unlink(tmp);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0 ||
	    rename(tmp, path) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* An engine that answers every request line on @lfd (listening) with
 * @reply, one client at a time, forever. */
static inline void fake_engine_serve(int lfd, const char *reply)
{
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		char buf[256];
		ssize_t n;

		while (c >= 0 && (n = read(c, buf, sizeof(buf))) > 0)
			for (ssize_t i = 0; i < n; i++)
				if (buf[i] == '\n')
					(void)!write(c, reply, strlen(reply));
		if (c >= 0)
			close(c);
	}
}

/* What QEMU 7.2 says first on a monitor. */
static inline void fake_qmp_greeting(FILE *f)
{
	fprintf(f, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
		   "\"package\": \"\"}, \"capabilities\": [\"oob\"]}}\r\n");
	fflush(f);
}

/* A QMP reply: {"return": @ret (taken; NULL: {}), "id": @id}. */
static inline void fake_qmp_reply(FILE *f, struct json_object *id, struct json_object *ret)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "return", ret ? ret : json_object_new_object());
	if (id)
		json_object_object_add(o, "id", json_object_get(id));
	fprintf(f, "%s\r\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(f);
	json_object_put(o);
}

/* Answer the set-up questions a driver asks a monitor: query-name with
 * @name, query-memory-size-summary with @max_bytes, qom-list with one
 * virtio-balloon-pci "balloon0". false if @cmd is none of them. */
static inline bool fake_qmp_setup(FILE *f, const char *cmd, struct json_object *id, const char *name,
				  uint64_t max_bytes)
{
	struct json_object *r, *e;

	if (strcmp(cmd, "query-name") == 0) {
		r = json_object_new_object();
		json_object_object_add(r, "name", json_object_new_string(name));
	} else if (strcmp(cmd, "query-memory-size-summary") == 0) {
		r = json_object_new_object();
		json_object_object_add(r, "base-memory", json_object_new_uint64(max_bytes));
	} else if (strcmp(cmd, "qom-list") == 0) {
		r = json_object_new_array();
		e = json_object_new_object();
		json_object_object_add(e, "name", json_object_new_string("balloon0"));
		json_object_object_add(e, "type", json_object_new_string("child<virtio-balloon-pci>"));
		json_object_array_add(r, e);
	} else {
		return false;
	}
	fake_qmp_reply(f, id, r);
	return true;
}

/* What a fake peer was asked (MAP_SHARED between test and fake; reset by
 * fake_qmp_start()). */
struct fake_peer_record {
	atomic_uint targets;  /* "balloon" commands */
	atomic_uint balloons; /* query-balloon commands */
	atomic_uint stats;    /* guest-stats reads */
	_Atomic uint64_t last_target; /* the last "balloon" value; 0: none */
	_Atomic uint64_t min_target;  /* the lowest "balloon" value (0 if not a
				       * positive number); UINT64_MAX: none */
};

enum fake_qmp_mode {
	QMP_IMPOSTOR,       /* answers everything; query-name says @name (a neighbour's) */
	QMP_MUTE_BALLOON,   /* answers set-up and one query-balloon, then nothing */
	/* With guest statistics (polling on, FAKE_QMP_USED_BYTES used, the
	 * rest available): */
	QMP_STUCK_BALLOON,  /* accepts every target, its balloon never moves */
	QMP_OBEY_BALLOON,   /* its balloon reaches every target at once */
};

/* What a guest of the statistics modes uses; the rest of what it has is
 * available (no page cache). */
#define FAKE_QMP_USED_BYTES (256ull << 20)

/* guest-stats of a guest that has @actual bytes, updated now. */
static inline struct json_object *fake_qmp_stats(uint64_t actual)
{
	struct json_object *r = json_object_new_object(), *st = json_object_new_object();
	uint64_t avail = actual > FAKE_QMP_USED_BYTES ? actual - FAKE_QMP_USED_BYTES : 0;

	json_object_object_add(st, "stat-total-memory", json_object_new_uint64(actual));
	json_object_object_add(st, "stat-free-memory", json_object_new_uint64(avail));
	json_object_object_add(st, "stat-available-memory", json_object_new_uint64(avail));
	json_object_object_add(st, "stat-disk-caches", json_object_new_uint64(0));
	json_object_object_add(st, "stat-swap-in", json_object_new_uint64(0));
	json_object_object_add(st, "stat-swap-out", json_object_new_uint64(0));
	json_object_object_add(st, "stat-major-faults", json_object_new_uint64(0));
	json_object_object_add(st, "stat-minor-faults", json_object_new_uint64(0));
	json_object_object_add(r, "stats", st);
	json_object_object_add(r, "last-update", json_object_new_int64((int64_t)time(NULL)));
	return r;
}

/* What the statistics modes report for the @k-th guest-stats read (from
 * 0) of a guest that has @actual bytes: a fresh reference. */
typedef struct json_object *fake_qmp_stats_fn(uint64_t k, uint64_t actual);

/* The default: fake_qmp_stats(), true figures. */
static inline struct json_object *fake_qmp_true_stats(uint64_t k, uint64_t actual)
{
	(void)k;
	return fake_qmp_stats(actual);
}

/* A "balloon" command's value, or 0. */
static inline uint64_t balloon_value(struct json_object *v)
{
	int64_t x = json_object_get_int64(v);

	return json_object_is_type(v, json_type_int) && x > 0 ? (uint64_t)x : 0;
}

/* A monitor speaking QMP like QEMU 7.2 on @lfd (listening), one client at
 * a time, forever: a guest of @max_bytes at its maximum, no balloon
 * features, polling off (on, with statistics, in the modes that have
 * them, reported by @stats, NULL: fake_qmp_true_stats); counts what it
 * is asked in @sh. */
static inline void fake_qmp_serve(int lfd, enum fake_qmp_mode mode, const char *name, uint64_t max_bytes,
				  struct fake_peer_record *sh, fake_qmp_stats_fn *stats_fn)
{
	bool stats = mode == QMP_STUCK_BALLOON || mode == QMP_OBEY_BALLOON;
	uint64_t actual = max_bytes;

	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		char *line = NULL;
		size_t cap = 0;
		FILE *f;

		if (fd < 0)
			continue;
		f = fdopen(fd, "r+");
		fake_qmp_greeting(f);
		while (getline(&line, &cap, f) > 0) {
			struct json_object *req = json_tokener_parse(line), *ex, *id = NULL, *args = NULL, *v, *r;
			const char *cmd;

			if (!req || !json_object_object_get_ex(req, "execute", &ex)) {
				json_object_put(req);
				continue;
			}
			cmd = json_object_get_string(ex);
			json_object_object_get_ex(req, "id", &id);
			json_object_object_get_ex(req, "arguments", &args);
			if (fake_qmp_setup(f, cmd, id, name, max_bytes)) {
				/* answered */
			} else if (strcmp(cmd, "qom-get") == 0 && stats && args &&
				   json_object_object_get_ex(args, "property", &v) &&
				   strcmp(json_object_get_string(v), "guest-stats-polling-interval") == 0) {
				fake_qmp_reply(f, id, json_object_new_int(1));
			} else if (strcmp(cmd, "qom-get") == 0 && stats && args &&
				   json_object_object_get_ex(args, "property", &v) &&
				   strcmp(json_object_get_string(v), "guest-stats") == 0) {
				fake_qmp_reply(f, id, (stats_fn ? stats_fn : fake_qmp_true_stats)(
							      atomic_fetch_add(&sh->stats, 1), actual));
			} else if (strcmp(cmd, "qom-get") == 0) {
				/* Polling off, and no driver features. */
				fake_qmp_reply(f, id, json_object_new_boolean(0));
			} else if (strcmp(cmd, "query-balloon") == 0) {
				/* The monitor of a QEMU stuck on NFS: the first
				 * answer comes, then nothing. */
				if (atomic_fetch_add(&sh->balloons, 1) >= 1 && mode == QMP_MUTE_BALLOON) {
					json_object_put(req);
					continue;
				}
				r = json_object_new_object();
				json_object_object_add(r, "actual", json_object_new_uint64(actual));
				fake_qmp_reply(f, id, r);
			} else if (strcmp(cmd, "balloon") == 0 && args && json_object_object_get_ex(args, "value", &v)) {
				uint64_t t = balloon_value(v), min = atomic_load(&sh->min_target);

				atomic_fetch_add(&sh->targets, 1);
				atomic_store(&sh->last_target, t);
				if (t < min)
					atomic_store(&sh->min_target, t);
				/* A balloon that moves only within the guest. */
				if (mode == QMP_OBEY_BALLOON && balloon_value(v) && balloon_value(v) <= max_bytes)
					actual = balloon_value(v);
				fake_qmp_reply(f, id, NULL);
			} else {
				fake_qmp_reply(f, id, NULL); /* qmp_capabilities, qom-set */
			}
			json_object_put(req);
		}
		free(line);
		fclose(f);
	}
}

/* A child, killed with this process, that serves @lfd (listening; closed
 * here) as fake_engine_serve() does. Its pid, or -1. */
static inline pid_t fake_engine_start(int lfd, const char *reply)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fake_engine_serve(lfd, reply);
		_exit(0);
	}
	close(lfd);
	return pid;
}

/* A child, killed with this process, that serves @lfd (listening; closed
 * here) as fake_qmp_serve() does, after resetting @sh. Its pid, or -1. */
static inline pid_t fake_qmp_start(int lfd, enum fake_qmp_mode mode, const char *name, uint64_t max_bytes,
				   struct fake_peer_record *sh, fake_qmp_stats_fn *stats_fn)
{
	pid_t pid;

	memset(sh, 0, sizeof(*sh));
	atomic_store(&sh->min_target, UINT64_MAX);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fake_qmp_serve(lfd, mode, name, max_bytes, sh, stats_fn);
		_exit(0);
	}
	close(lfd);
	return pid;
}

#endif
