/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The balloon driver's "ovc" backend (balloon-driver/ovc.c) against real
 * engines: one in this process, one in a forked child that then exits, each
 * with real userfaultfd over real anonymous memory, published on real unix
 * sockets in a temporary directory the driver watches with inotify.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "driver.h"
#include "peer-fakes.h"
#include "engine-test.h"

#define RAM_BYTES (4 * MIB)

struct seen {
	int started, stopped;
	char last_started[64], last_stopped[64];
};

static void on_event(void *userdata, const struct ovcd_balloon_event *ev)
{
	struct seen *s = userdata;

	if (ev->type == OVC_BALLOON_EVENT_STARTED) {
		s->started++;
		snprintf(s->last_started, sizeof(s->last_started), "%s", ev->guest);
	} else if (ev->type == OVC_BALLOON_EVENT_STOPPED) {
		s->stopped++;
		snprintf(s->last_stopped, sizeof(s->last_stopped), "%s", ev->guest);
	}
}

/* Drive the driver's loop until *counter reaches @want (10 s bound: a
 * failure, not a timing claim). */
static void wait_event(ovcd_balloon *b, const int *counter, int want)
{
	for (int i = 0; i < 100 && *counter < want; i++) {
		struct pollfd p = { .fd = ovcd_balloon_fd(b), .events = POLLIN };

		poll(&p, 1, 100);
		assert_true(ovcd_balloon_process(b) >= 0);
	}
	assert_int_equal(*counter, want);
}

/* Drive the driver's loop, asking for fresh figures, until @name's cached
 * figures satisfy @ok (10 s bound: a failure, not a timing claim). The
 * driver never waits for an engine: answers come through its fd. */
static bool pump_until(ovcd_balloon *b, const char *name, bool (*ok)(const struct ovcd_balloon_guest *g))
{
	for (int i = 0; i < 100; i++) {
		struct ovcd_balloon_guest *v, g;
		size_t n;

		if (ovcd_balloon_guest(b, name, &g) == 0 && (!ok || ok(&g)))
			return true;
		assert_ovc_ok(ovcd_balloon_list(b, &v, &n)); /* asks for fresh figures */
		free(v);
		struct pollfd p = { .fd = ovcd_balloon_fd(b), .events = POLLIN };

		poll(&p, 1, 100);
		assert_true(ovcd_balloon_process(b) >= 0);
	}
	return false;
}

static void ram_with_zeros(struct guest_ram *g)
{
	guest_ram_alloc(g, RAM_BYTES, BACK_ANON);
	memset(g->p, 0x33, RAM_BYTES / 4);
	memset(g->p + RAM_BYTES / 4, 0, RAM_BYTES - RAM_BYTES / 4);
}

static ovc_engine *engine_published(struct guest_ram *g, const char *dir, const char *name,
				    uint64_t max_bytes)
{
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_NO_AUTOSCAN };
	struct ovc_publish_opts p = { .size = sizeof(p), .dir = dir, .name = name,
				      .max_bytes = max_bytes };
	ovc_engine *e;

	ram_with_zeros(g);
	assert_ovc_ok(ovc_engine_new(&o, &e));
	assert_ovc_ok(ovc_region_add(e, g->p, g->len, 0, 0));
	assert_true(ovc_engine_scan_sync(e, 0) > 0);
	assert_ovc_ok(ovc_engine_publish(e, &p));
	return e;
}

static const struct ovcd_balloon_guest *find(const struct ovcd_balloon_guest *v, size_t n,
					    const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

/* A child process that will run an engine published as vm-b. It is forked
 * while this process has no threads yet (an engine's threads must not be
 * started in the child of a multi-threaded process), waits for 'p' to
 * publish, answers 'r', and on the next byte _exits without
 * unpublishing, as a crashed VMM would: the socket file stays behind and
 * nobody listens on it. */
struct child {
	pid_t pid;
	int go, ready;
};

static void child_spawn(struct child *c, const char *dir)
{
	int go[2], ready[2];
	char ch;

	assert_int_equal(pipe2(go, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	c->pid = fork();
	assert_true(c->pid >= 0);
	if (c->pid == 0) {
		struct guest_ram g;

		close(go[1]);
		close(ready[0]);
		if (read(go[0], &ch, 1) != 1)
			_exit(0);
		(void)engine_published(&g, dir, "vm-b", 0);
		(void)!write(ready[1], "r", 1);
		(void)!read(go[0], &ch, 1);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	c->go = go[1];
	c->ready = ready[0];
}

static void child_publish(struct child *c)
{
	char ch;

	assert_int_equal(write(c->go, "p", 1), 1);
	assert_int_equal(read(c->ready, &ch, 1), 1);
}

static void child_exit(struct child *c)
{
	int status;

	/* A byte, not EOF: a later child holds a copy of this pipe's end. */
	assert_int_equal(write(c->go, "x", 1), 1);
	close(c->go);
	close(c->ready);
	assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static bool target_2mib(const struct ovcd_balloon_guest *g)
{
	return g->stats.engine_target_bytes == 2 * MIB;
}

static bool has_fault_p50(const struct ovcd_balloon_guest *g)
{
	return ovcd_known(g->stats.engine_swap.fault_p50_usec);
}

static void test_engines(void **state)
{
	char dir[] = "/tmp/ovc-test-ovc-driver-XXXXXX", cmd[128];
	struct seen seen = { 0 };
	struct ovcd_balloon_opts bo = { .size = sizeof(bo), .backend = OVC_BALLOON_ENGINE,
				       .event_fn = on_event, .event_userdata = &seen };
	struct ovc_engine_stats st = { .size = sizeof(st) };
	struct ovcd_balloon_guest *v, one;
	const struct ovcd_balloon_guest *a;
	struct guest_ram ga;
	ovcd_balloon *b;
	ovc_engine *e;
	size_t n;
	struct child c1, c2;

	need_uffd();
	assert_non_null(mkdtemp(dir));
	child_spawn(&c1, dir);
	child_spawn(&c2, dir);
	bo.engine_dir = dir;
	assert_ovc_ok(ovcd_balloon_new(&bo, &b));
	assert_ovc_ok(ovcd_balloon_list(b, &v, &n));
	assert_int_equal(n, 0);
	free(v);

	/* A new engine: STARTED, through inotify. */
	e = engine_published(&ga, dir, "vm-a", 64 * MIB);
	wait_event(b, &seen.started, 1);
	assert_string_equal(seen.last_started, "vm-a");

	assert_ovc_ok(ovcd_balloon_list(b, &v, &n));
	assert_int_equal(n, 1);
	a = find(v, n, "vm-a");
	assert_non_null(a);
	assert_string_equal(a->id, "vm-a.sock");
	assert_int_equal(a->caps, 0);
	assert_int_equal(a->pid, getpid()); /* the kernel's word */
	/* It claims 64 MiB and registered 4: the RAM it registered counts. */
	assert_int_equal(a->stats.max_bytes, RAM_BYTES);
	assert_int_equal(a->stats.actual_bytes, RAM_BYTES);
	assert_ovc_ok(ovc_engine_stats(e, &st));
	assert_true(st.zero_pages_now > 0);
	assert_int_equal(a->stats.engine_zero_bytes, st.zero_pages_now * OVC_PAGE_SIZE);
	assert_int_equal(a->stats.engine_swap_bytes, st.swapped_pages_now * OVC_PAGE_SIZE);
	assert_int_equal(a->stats.engine_target_bytes, 0);
	/* The swap figures of an engine without swap: known, and 0. */
	assert_int_equal(a->stats.engine_swap.out_bytes, st.pages_swapped_out * OVC_PAGE_SIZE);
	assert_int_equal(a->stats.engine_swap_in_bytes, 0);
	assert_int_equal(a->stats.engine_swap.cache_bytes, 0);
	assert_int_equal(a->stats.engine_swap.cache_hits, 0);
	assert_int_equal(a->stats.engine_swap.refaults, 0);
	assert_int_equal(a->stats.engine_swap.write_errors, 0);
	assert_int_equal(a->stats.engine_swap.read_errors, 0);
	assert_false(ovcd_known(a->stats.free_bytes));
	assert_false(ovcd_known(a->stats.available_bytes));
	assert_false(ovcd_known(a->stats.total_bytes));
	free(v);

	/* The reclaim target reaches the engine: queued, it goes out at
	 * once and its answer comes through the loop. */
	assert_ovc_ok(ovcd_balloon_set_reclaim(b, "vm-a", 2 * MIB, 0));
	assert_true(pump_until(b, "vm-a", target_2mib));
	assert_ovc_ok(ovc_engine_stats(e, &st));
	assert_int_equal(st.reclaim_target_bytes, 2 * MIB);

	/* A fault served (reading a page the VMM discarded): the latency
	 * percentiles appear, as the engine's histogram says. */
	assert_int_equal(madvise(ga.p + RAM_BYTES - OVC_PAGE_SIZE, OVC_PAGE_SIZE, MADV_DONTNEED), 0);
	assert_int_equal(*(volatile uint8_t *)(ga.p + RAM_BYTES - 1), 0);
	{
		uint64_t faults = 0, lowest = 0;

		/* The handler counts a fault after waking its thread: wait for
		 * it (a bound for a failure, not a timing claim). */
		for (int tries = 0; tries < 5000 && !faults; tries++) {
			assert_ovc_ok(ovc_engine_stats(e, &st));
			for (int i = 0; i < OVC_LAT_BUCKETS; i++)
				faults += st.fault_lat_hist[i];
			if (!faults)
				usleep(1000);
		}
		assert_true(faults > 0);
		assert_true(pump_until(b, "vm-a", has_fault_p50));
		assert_ovc_ok(ovcd_balloon_guest(b, "vm-a", &one));
		/* The median is no lower than the bound of the first bucket. */
		for (int i = 0; i < OVC_LAT_BUCKETS && !lowest; i++)
			if (st.fault_lat_hist[i])
				lowest = UINT64_C(1) << i;
		assert_true(ovcd_known(one.stats.engine_swap.fault_p50_usec));
		assert_true(one.stats.engine_swap.fault_p50_usec >= lowest);
		assert_true(one.stats.engine_swap.fault_p50_usec <= one.stats.engine_swap.fault_p99_usec);
		assert_true(one.stats.engine_swap.fault_p99_usec <= UINT64_C(1) << (OVC_LAT_BUCKETS - 1));
	}

	/* Misuse and absent guests: clear errors naming the guest. */
	assert_int_equal(ovcd_balloon_set_reclaim(b, "vm-a", MIB, 1), -EINVAL);
	assert_int_equal(ovcd_balloon_set_reclaim(b, "nope", MIB, 0), -ENOENT);
	assert_non_null(strstr(ovcd_balloon_error(b), "'nope'"));
	assert_int_equal(ovcd_balloon_set_target(b, "vm-a", 2 * MIB, 0), -ENODEV);
	assert_non_null(strstr(ovcd_balloon_error(b), "no balloon device"));

	/* A second engine in another process: STARTED; it exits: STOPPED,
	 * and its left-behind socket is not listed. */
	child_publish(&c1);
	wait_event(b, &seen.started, 2);
	assert_string_equal(seen.last_started, "vm-b");
	assert_ovc_ok(ovcd_balloon_list(b, &v, &n));
	assert_int_equal(n, 2);
	assert_non_null(find(v, n, "vm-b"));
	assert_int_equal(find(v, n, "vm-b")->stats.max_bytes, RAM_BYTES);
	free(v);
	child_exit(&c1);
	wait_event(b, &seen.stopped, 1);
	assert_string_equal(seen.last_stopped, "vm-b");
	assert_ovc_ok(ovcd_balloon_list(b, &v, &n));
	assert_int_equal(n, 1);
	assert_null(find(v, n, "vm-b"));
	free(v);
	assert_int_equal(ovcd_balloon_guest(b, "vm-b", &one), -ENOENT);

	/* A new engine under the dead one's name replaces its stale socket. */
	child_publish(&c2);
	wait_event(b, &seen.started, 3);
	assert_string_equal(seen.last_started, "vm-b");
	child_exit(&c2);
	wait_event(b, &seen.stopped, 2);

	/* Unpublishing: STOPPED too. */
	assert_ovc_ok(ovc_engine_unpublish(e, 0));
	wait_event(b, &seen.stopped, 3);
	assert_string_equal(seen.last_stopped, "vm-a");
	assert_ovc_ok(ovcd_balloon_list(b, &v, &n));
	assert_int_equal(n, 0);
	free(v);

	ovcd_balloon_free(b);
	ovc_engine_free(e);
	guest_ram_free(&ga);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* An engine of our making: a socket in @dir answering every line with
 * @reply, served by a child (the driver's requests block on the reply). */
static pid_t fake_engine(const char *dir, const char *name, const char *reply)
{
	char path[108];
	pid_t pid;
	int fd;

	/* Listening before it appears under its name, as engines do. */
	snprintf(path, sizeof(path), "%s/%s.sock", dir, name);
	fd = fake_listen_at(path, 4);
	assert_true(fd >= 0);
	pid = fake_engine_start(fd, reply);
	assert_true(pid >= 0);
	return pid;
}

/* What a VMM says is untrusted: figures an older engine does not send are
 * unknown, figures that cannot be true are unknown, never 0 or clamped
 * into something plausible. */
static void test_untrusted_engines(void **state)
{
	char dir[] = "/tmp/ovc-test-ovc-driver-XXXXXX", cmd[128];
	struct ovcd_balloon_opts bo = { .size = sizeof(bo), .backend = OVC_BALLOON_ENGINE };
	struct ovcd_balloon_guest g;
	ovcd_balloon *b;
	pid_t old, liar, slow;
	int status;

	assert_non_null(mkdtemp(dir));
	/* The first engines' reply: no swap counters at all. */
	old = fake_engine(dir, "old", "OVC1 ok name=old pid=1 max_bytes=67108864 region_bytes=67108864 "
				      "zero_bytes=0 swap_bytes=4096 target_bytes=0 saved_bytes=4096 "
				      "pages_swapped_in=3 refaults=1\n");
	/* Overflowing pages, a swap cache bigger than the guest, a median
	 * above its 99th percentile. */
	liar = fake_engine(dir, "liar", "OVC1 ok name=liar max_bytes=1048576 zero_bytes=0 swap_bytes=0 "
					"target_bytes=0 pages_swapped_out=18446744073709551615 "
					"swap_cache_pages=1000 swap_cache_hits=5 swap_write_errors=2 "
					"swap_read_errors=3 fault_p50_usec=2048 fault_p99_usec=16\n");
	/* Faults that take days, and a 99th percentile alone. */
	slow = fake_engine(dir, "slow", "OVC1 ok name=slow max_bytes=1048576 zero_bytes=0 swap_bytes=0 "
					"target_bytes=0 swap_cache_pages=256 fault_p50_usec=8 "
					"fault_p99_usec=999999999999\n");
	bo.engine_dir = dir;
	assert_ovc_ok(ovcd_balloon_new(&bo, &b));
	assert_true(pump_until(b, "old", NULL));
	assert_true(pump_until(b, "liar", NULL));
	assert_true(pump_until(b, "slow", NULL));

	assert_ovc_ok(ovcd_balloon_guest(b, "old", &g));
	assert_int_equal(g.stats.engine_swap_bytes, 4096);
	assert_int_equal(g.stats.engine_swap_in_bytes, 3 * OVC_PAGE_SIZE);
	assert_int_equal(g.stats.engine_swap.refaults, 1);
	assert_false(ovcd_known(g.stats.engine_swap.out_bytes));
	assert_false(ovcd_known(g.stats.engine_swap.cache_bytes));
	assert_false(ovcd_known(g.stats.engine_swap.cache_hits));
	assert_false(ovcd_known(g.stats.engine_swap.write_errors));
	assert_false(ovcd_known(g.stats.engine_swap.read_errors));
	assert_false(ovcd_known(g.stats.engine_swap.fault_p50_usec));
	assert_false(ovcd_known(g.stats.engine_swap.fault_p99_usec));

	assert_ovc_ok(ovcd_balloon_guest(b, "liar", &g));
	assert_false(ovcd_known(g.stats.engine_swap_in_bytes)); /* not sent */
	assert_false(ovcd_known(g.stats.engine_swap.refaults));
	assert_false(ovcd_known(g.stats.engine_swap.out_bytes));
	assert_false(ovcd_known(g.stats.engine_swap.cache_bytes));
	assert_int_equal(g.stats.engine_swap.cache_hits, 5);
	assert_int_equal(g.stats.engine_swap.write_errors, 2);
	assert_int_equal(g.stats.engine_swap.read_errors, 3);
	assert_false(ovcd_known(g.stats.engine_swap.fault_p50_usec));
	assert_false(ovcd_known(g.stats.engine_swap.fault_p99_usec));

	assert_ovc_ok(ovcd_balloon_guest(b, "slow", &g));
	assert_int_equal(g.stats.engine_swap.cache_bytes, MIB); /* all of it: possible */
	assert_false(ovcd_known(g.stats.engine_swap.fault_p50_usec));
	assert_false(ovcd_known(g.stats.engine_swap.fault_p99_usec));

	ovcd_balloon_free(b);
	for (pid_t *p = (pid_t[]){ old, liar, slow, 0 }; *p; p++) {
		kill(*p, SIGKILL);
		assert_int_equal(waitpid(*p, &status, 0), *p);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* Pump @b for @msec, touching a file in @dir every 100 ms when @touch (so
 * that inotify keeps asking for rescans). */
static void pump_for(ovcd_balloon *b, const char *dir, unsigned msec, bool touch)
{
	uint64_t end = now_usec(CLOCK_MONOTONIC) + msec * 1000ull;

	while (now_usec(CLOCK_MONOTONIC) < end) {
		struct pollfd p = { .fd = ovcd_balloon_fd(b), .events = POLLIN };
		struct ovcd_balloon_guest *v;
		size_t n;

		if (touch) {
			char f[256];

			snprintf(f, sizeof(f), "%s/.touch", dir);
			close(open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
			unlink(f);
		}
		assert_ovc_ok(ovcd_balloon_list(b, &v, &n));
		free(v);
		poll(&p, 1, 100);
		assert_true(ovcd_balloon_process(b) >= 0);
	}
}

static int listening(const char *path, int backlog)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	return fd;
}

/* This process's address space (VmSize), from /proc/self/statm. */
static uint64_t self_vm_bytes(void)
{
	unsigned long long pages = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu", &pages), 1);
	fclose(f);
	return pages * OVC_PAGE_SIZE;
}

static atomic_int silent_accepts;

/* A socket that takes connections and never says a word. */
static void *silent_main(void *arg)
{
	int lfd = *(int *)arg;

	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			return NULL;
		atomic_fetch_add(&silent_accepts, 1);
		/* kept open, never answered */
	}
}

/* What a local user or a rogue VMM can put in the engine directory: the
 * driver never waits on it, never follows it, never believes its name or
 * its maximum, and does not knock again on every directory change. */
static void test_hostile_sockets(void **state)
{
	char dir[] = "/tmp/ovc-test-ovc-driver-XXXXXX", elsewhere[] = "/tmp/ovc-test-ovc-driver-XXXXXX";
	char path[256], target[256], cmd[160];
	struct ovcd_balloon_opts bo = { .size = sizeof(bo), .backend = OVC_BALLOON_ENGINE };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ovcd_balloon_guest g;
	pthread_t silent_thread;
	int silent, stuck, filler, foreign;
	pid_t liar, real;
	ovcd_balloon *b;

	assert_non_null(mkdtemp(dir));
	assert_non_null(mkdtemp(elsewhere));
	/* Takes connections, never answers. */
	snprintf(path, sizeof(path), "%s/silent.sock", dir);
	silent = listening(path, 16);
	assert_int_equal(pthread_create(&silent_thread, NULL, silent_main, &silent), 0);
	/* A full listen queue that is never served: a blocking connect
	 * would never return. */
	snprintf(path, sizeof(path), "%s/stuck.sock", dir);
	stuck = listening(path, 0);
	filler = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", path);
	assert_int_equal(connect(filler, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* A real-looking engine elsewhere, reached only by a symlink. */
	snprintf(target, sizeof(target), "%s", elsewhere);
	real = fake_engine(elsewhere, "real", "OVC1 ok name=real max_bytes=1048576 zero_bytes=0 swap_bytes=0 "
					      "target_bytes=0\n");
	snprintf(target, sizeof(target), "%s/real.sock", elsewhere);
	snprintf(path, sizeof(path), "%s/evil.sock", dir);
	assert_int_equal(symlink(target, path), 0);
	/* A socket whose file belongs to another user than its listener. */
	snprintf(path, sizeof(path), "%s/foreign.sock", dir);
	foreign = listening(path, 4);
	assert_int_equal(chown(path, 65534, 65534), 0);
	/* It says it is "other" and has 64 TiB. */
	liar = fake_engine(dir, "liar", "OVC1 ok name=other pid=1 max_bytes=70368744177664 "
					"region_bytes=70368744177664 zero_bytes=70368744177664 swap_bytes=0 "
					"target_bytes=70368744177664\n");

	bo.engine_dir = dir;
	/* Returns at once: nothing is waited for. */
	assert_ovc_ok(ovcd_balloon_new(&bo, &b));
	assert_true(pump_until(b, "liar", NULL));
	assert_ovc_ok(ovcd_balloon_guest(b, "liar", &g));
	/* The kernel's word: the listener (this process bound and listened
	 * before forking the child that answers), not "pid=1". */
	assert_int_equal(g.pid, getpid());
	/* At most the listener's address space (this process's; under ASan
	 * that is tens of TiB of shadow, still less than the claim). */
	assert_true(g.stats.max_bytes < UINT64_C(70368744177664));
	assert_true(g.stats.max_bytes <= self_vm_bytes());
	assert_true(g.stats.engine_zero_bytes <= g.stats.max_bytes);
	assert_true(g.stats.engine_target_bytes <= g.stats.max_bytes);
	assert_int_equal(ovcd_balloon_guest(b, "other", &g), -ENOENT);

	/* Past the silent socket's deadline, with the directory changing
	 * all the time: none of the others is listed, and the silent one
	 * was asked once, not on every change. */
	pump_for(b, dir, 4000, true);
	for (const char *const *n = (const char *const[]){ "silent", "stuck", "evil", "foreign", "real", NULL };
	     *n; n++)
		assert_int_equal(ovcd_balloon_guest(b, *n, &g), -ENOENT);
	assert_int_equal(atomic_load(&silent_accepts), 1);

	ovcd_balloon_free(b);
	for (pid_t *p = (pid_t[]){ liar, real, 0 }; *p; p++) {
		kill(*p, SIGKILL);
		waitpid(*p, NULL, 0);
	}
	shutdown(silent, SHUT_RDWR);
	close(silent);
	pthread_cancel(silent_thread);
	pthread_join(silent_thread, NULL);
	close(stuck);
	close(filler);
	close(foreign);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", dir, elsewhere);
	(void)!system(cmd);
}

/* A fake QMP monitor at @dir/@file (listening before it appears), served
 * by a child. */
static pid_t fake_monitor(const char *dir, const char *file, enum fake_qmp_mode mode, const char *name,
			  struct fake_peer_record *rec)
{
	char path[256];
	int fd;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = fake_listen_at(path, 4);
	assert_true(fd >= 0);
	pid = fake_qmp_start(fd, mode, name, GIB, rec, NULL);
	assert_true(pid >= 0);
	return pid;
}

/* QMP monitors that lie or stop answering: a second monitor saying it is
 * a neighbour is refused and never asked to move a balloon, whichever
 * comes first; one that stops answering costs the caller nothing (every
 * call returns at once) and goes stale. */
static void test_qmp_impostor_and_mute(void **state)
{
	char dir[] = "/tmp/ovc-test-ovc-driver-XXXXXX", cmd[128];
	struct ovcd_balloon_opts bo = { .size = sizeof(bo), .backend = OVC_BALLOON_QMP, .stats_period_sec = 1,
				       .stale_sec = 3 };
	struct fake_peer_record *rec = mmap(NULL, 3 * sizeof(*rec), PROT_READ | PROT_WRITE,
					    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct ovcd_balloon_guest g;
	pid_t impostor, web1, mute;
	ovcd_balloon *b;

	assert_true(rec != MAP_FAILED);
	memset(rec, 0, 3 * sizeof(*rec));
	assert_non_null(mkdtemp(dir));
	/* The impostor is there first, under another file name. */
	impostor = fake_monitor(dir, "aaa.qmp", QMP_IMPOSTOR, "web1", &rec[0]);
	web1 = fake_monitor(dir, "web1.qmp", QMP_IMPOSTOR, "web1", &rec[1]);
	mute = fake_monitor(dir, "mute.qmp", QMP_MUTE_BALLOON, "mute", &rec[2]);
	bo.qmp_dir = dir;
	assert_ovc_ok(ovcd_balloon_new(&bo, &b));
	assert_true(pump_until(b, "web1", NULL));
	assert_true(pump_until(b, "mute", NULL));
	assert_ovc_ok(ovcd_balloon_guest(b, "web1", &g));
	assert_string_equal(g.id, "web1.qmp"); /* the monitor named after it */

	/* A target for web1 reaches web1's monitor only. */
	assert_ovc_ok(ovcd_balloon_set_target(b, "web1", GIB / 2, 0));
	pump_for(b, dir, 1000, false);
	assert_int_equal(atomic_load(&rec[1].targets), 1);
	assert_int_equal(atomic_load(&rec[0].targets), 0);

	/* The mute monitor answered one query-balloon and then nothing:
	 * its figures go stale, the driver never waits for it. */
	pump_for(b, dir, 4000, false);
	assert_ovc_ok(ovcd_balloon_guest(b, "mute", &g));
	assert_true(g.stats.stale);
	assert_true(atomic_load(&rec[2].balloons) >= 2); /* asked again, never answered */

	ovcd_balloon_free(b);
	for (pid_t *p = (pid_t[]){ impostor, web1, mute, 0 }; *p; p++) {
		kill(*p, SIGKILL);
		waitpid(*p, NULL, 0);
	}
	munmap(rec, 3 * sizeof(*rec));
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
}

/* The other backends have no engines. */
static void test_qmp_has_no_reclaim(void **state)
{
	char dir[] = "/tmp/ovc-test-ovc-driver-XXXXXX";
	struct ovcd_balloon_opts bo = { .size = sizeof(bo), .backend = OVC_BALLOON_QMP };
	ovcd_balloon *b;

	assert_non_null(mkdtemp(dir));
	bo.qmp_dir = dir;
	assert_ovc_ok(ovcd_balloon_new(&bo, &b));
	assert_int_equal(ovcd_balloon_set_reclaim(b, "web1", MIB, 0), -EOPNOTSUPP);
	assert_non_null(strstr(ovcd_balloon_error(b), "'web1'"));
	ovcd_balloon_free(b);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engines),
		cmocka_unit_test(test_untrusted_engines),
		cmocka_unit_test(test_hostile_sockets),
		cmocka_unit_test(test_qmp_impostor_and_mute),
		cmocka_unit_test(test_qmp_has_no_reclaim),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
