/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the real ovcd binary, managing a real QEMU guest (TCG, the
 * image of scripts/build-guest-image) through its QMP socket, attacked the
 * way a local user, or a guest on QEMU's user-mode network, can attack its
 * metrics port and its control socket:
 *  - slowloris on the metrics port (a request a byte every 0.8 s), while
 *    the guest runs short of memory and must be deflated in time;
 *  - a slow reader of the metrics body;
 *  - a control client that pipelines 5000 status requests and never reads,
 *    and one that sends its request a byte a second;
 *  - 64 idle control connections of a non-root uid, then root's reload;
 *  - symlinks planted at the control socket's path in a directory anybody
 *    may write (a second ovcd, without guests).
 * During each, a prober thread asks ovcd for its status every 50 ms over a
 * fresh control connection (as ovcctl does), as root: each reply's latency,
 * and the tick count it carries, give the control latency and the gaps
 * between ticks. Nothing is mocked; the attackers are real sockets.
 *
 * The assertions are the ones ovcd promises in ovcd(8): ticks no later
 * than one interval late, control replies within 100 ms, an emergency
 * deflate within one tick of the stats that show the guest short. The
 * figures are printed. OVC_TEST_OVCD=PATH runs another ovcd binary (an
 * older build, to measure it the same way).
 *
 * The tests run in order and share one daemon (cmocka group). Threads:
 * the main thread drives; the prober and the attackers run on their own
 * threads and share only the probe's counters (under probe.lock) and
 * their stop flags (atomic).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ovc/ovc.h>

#include "guest-harness.h"
#include "json-get.h"
#include "host/host.h"
#include "ovcd-test.h"
#include "ovc-test.h"
#include "common/util.h"

#ifndef OVCD_BIN
#error OVCD_BIN must be defined by the build
#endif

#define INTERVAL_MS 1000
#define ATTACK_MS 8000
#define LATENCY_MAX_MS 100
#define NOBODY 65534

struct fixture {
	const char *skip;
	struct harness_image img;
	struct ovcd_fixture d;
	struct harness_guest a;
	pid_t ovcd;
	gid_t kvm;
	unsigned port;
};

static struct fixture F;

/* ---- helpers ---- */

static uint64_t mono_us(void)
{
	return now_usec(CLOCK_MONOTONIC);
}

static void msleep(unsigned ms)
{
	(void)usleep(ms * 1000u);
}

static int tcp_connect(unsigned port, int rcvbuf)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && rcvbuf)
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One control request as root on a fresh connection: the reply line in
 * @out; its round trip in *us. -1 if no reply came within 30 s. The
 * connect never waits (EAGAIN: the listen queue is full, as when ovcd
 * stops accepting). */
static int ctl_raw(const char *req, char *out, size_t size, uint64_t *us)
{
	return unix_ask(F.d.sock, req, out, size, 30000, UNIX_ASK_NOWAIT, us);
}

static struct json_object *ctl_json(const char *command)
{
	return ovcd_ctl(F.d.sock, command, 30000, UNIX_ASK_NOWAIT, NULL);
}

static uint64_t guest_u64(const char *key)
{
	struct json_object *gs = ctl_json("guests");
	uint64_t v = gs ? json_get_u64(ovcd_guest_of(gs, F.a.name), key) : OVC_UNKNOWN;

	json_object_put(gs);
	return v;
}

/* ---- the prober ---- */

static struct {
	pthread_mutex_t lock;
	pthread_t thread;
	atomic_bool stop;
	uint64_t n, failed, lat_max_us, lat_sum_us;
	uint64_t ticks, tick_seen_us, gap_max_us, tick_changes;
} probe = { .lock = PTHREAD_MUTEX_INITIALIZER };
static bool probing; /* its thread runs */

static void *probe_main(void *arg)
{
	static const char req[] = "{\"version\":1,\"command\":\"status\"}\n";
	char out[16384];

	(void)arg;
	while (!atomic_load(&probe.stop)) {
		uint64_t us = 0, now;
		int r = ctl_raw(req, out, sizeof(out), &us);
		const char *t = strstr(out, "\"ticks\":");
		uint64_t ticks = r == 0 && t ? strtoull(t + 8, NULL, 10) : 0;

		now = mono_us();
		pthread_mutex_lock(&probe.lock);
		probe.n++;
		if (r < 0)
			probe.failed++;
		probe.lat_max_us = MAX(probe.lat_max_us, us);
		probe.lat_sum_us += us;
		if (ticks && ticks != probe.ticks) {
			/* A tick happened since the last reply: the gap since
			 * the last change, at this probe's resolution. */
			if (probe.ticks) {
				probe.gap_max_us = MAX(probe.gap_max_us, now - probe.tick_seen_us);
				probe.tick_changes++;
			}
			probe.ticks = ticks;
			probe.tick_seen_us = now;
		}
		pthread_mutex_unlock(&probe.lock);
		msleep(50);
	}
	return NULL;
}

static void probe_start(void)
{
	pthread_mutex_lock(&probe.lock);
	probe.n = probe.failed = probe.lat_max_us = probe.lat_sum_us = 0;
	probe.ticks = probe.tick_seen_us = probe.gap_max_us = probe.tick_changes = 0;
	pthread_mutex_unlock(&probe.lock);
	atomic_store(&probe.stop, false);
	assert_int_equal(pthread_create(&probe.thread, NULL, probe_main, NULL), 0);
	probing = true;
}

/* Stop the prober, print its figures for @what and check them. */
static void probe_stop_and_check(const char *what)
{
	uint64_t gap_ms, late_ms;

	atomic_store(&probe.stop, true);
	pthread_join(probe.thread, NULL);
	probing = false;
	/* The gap that was still open when it stopped counts too. */
	if (probe.tick_seen_us)
		probe.gap_max_us = MAX(probe.gap_max_us, mono_us() - probe.tick_seen_us);
	gap_ms = probe.gap_max_us / 1000;
	late_ms = gap_ms > INTERVAL_MS ? gap_ms - INTERVAL_MS : 0;
	print_message("[  FIGURE  ] %s: %lu control replies (%lu failed), latency max %.1f ms, mean %.1f ms; "
		      "%lu ticks seen, longest gap between ticks %lu ms (interval %u ms: %lu ms late)\n",
		      what, (unsigned long)probe.n, (unsigned long)probe.failed, probe.lat_max_us / 1000.0,
		      probe.n ? probe.lat_sum_us / 1000.0 / (double)probe.n : 0.0, (unsigned long)probe.tick_changes,
		      (unsigned long)gap_ms, INTERVAL_MS, (unsigned long)late_ms);
	assert_int_equal(probe.failed, 0);
	assert_true(probe.tick_changes >= ATTACK_MS / INTERVAL_MS / 2);
	assert_true(late_ms <= INTERVAL_MS);
	assert_true(probe.lat_max_us <= LATENCY_MAX_MS * 1000);
	/* ovcd is alive */
	assert_int_equal(waitpid(F.ovcd, NULL, WNOHANG), 0);
}

/* ---- attackers: threads of this process, or children as nobody ---- */

struct attacker {
	pthread_t thread;
	atomic_bool stop;
	uint64_t connections, bytes, cut;   /* read after join */
};

/* A request one byte every 0.8 s, never finished; a new one when the
 * server closes it (as an attacker would). */
static void *slowloris_main(void *arg)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Pad: ";
	struct attacker *a = arg;
	int fd = -1;
	size_t off = 0;

	while (!atomic_load(&a->stop)) {
		char c;

		if (fd < 0) {
			fd = tcp_connect(F.port, 0);
			off = 0;
			if (fd < 0) {
				msleep(100);
				continue;
			}
			a->connections++;
		}
		c = off < sizeof(req) - 1 ? req[off] : 'a';
		if (send(fd, &c, 1, MSG_NOSIGNAL) != 1 ||
		    recv(fd, &c, 1, MSG_DONTWAIT) == 0) {
			close(fd);
			fd = -1;
			a->cut++;
			continue;
		}
		off++;
		a->bytes++;
		msleep(800);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* A whole GET, then its reply read a byte every 0.8 s through the
 * smallest receive buffer there is. */
static void *slow_reader_main(void *arg)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
	struct attacker *a = arg;
	int fd = -1;

	while (!atomic_load(&a->stop)) {
		char c;
		ssize_t k;

		if (fd < 0) {
			fd = tcp_connect(F.port, 1);
			if (fd < 0 || send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1) {
				if (fd >= 0)
					close(fd);
				fd = -1;
				msleep(100);
				continue;
			}
			a->connections++;
		}
		k = recv(fd, &c, 1, 0);
		if (k <= 0) {
			close(fd);
			fd = -1;
			a->cut++;
			continue;
		}
		a->bytes++;
		msleep(800);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* A control request a byte a second, never finished (until ovcd hangs up:
 * then the time it took is in ->bytes, in ms, and ->cut is 1). */
static void *control_trickle_main(void *arg)
{
	static const char req[] = "{\"version\":1,\"command\":\"status\"";
	struct attacker *a = arg;
	uint64_t t0 = mono_us();
	int fd = unix_connect(F.d.sock, 0, UNIX_ASK_NOWAIT);

	for (size_t off = 0; fd >= 0 && !atomic_load(&a->stop); off++) {
		char c = req[off % (sizeof(req) - 1)];

		if (send(fd, &c, 1, MSG_NOSIGNAL) != 1 || recv(fd, &c, 1, MSG_DONTWAIT) == 0) {
			a->cut = 1;
			a->bytes = (mono_us() - t0) / 1000;
			break;
		}
		msleep(1000);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* What runs during a test, stopped by cleanup() if the test fails. */
static struct attacker *running[8];
static pid_t children[4];

static void attacker_start(struct attacker *a, void *(*fn)(void *))
{
	memset(a, 0, sizeof(*a));
	assert_int_equal(pthread_create(&a->thread, NULL, fn, a), 0);
	for (size_t i = 0; i < ARRAY_SIZE(running); i++)
		if (!running[i]) {
			running[i] = a;
			return;
		}
	fail_msg("too many attackers");
}

static void attacker_stop(struct attacker *a)
{
	atomic_store(&a->stop, true);
	pthread_join(a->thread, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(running); i++)
		if (running[i] == a)
			running[i] = NULL;
}

/* A child as uid nobody, in ovcd's [control] group (so that it may
 * connect to the 0660 socket as a member of that group would). */
static pid_t child_as_nobody(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (setgroups(1, &F.kvm) < 0 || setgid(F.kvm) < 0 || setuid(NOBODY) < 0)
			_exit(100);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(children); i++)
		if (!children[i]) {
			children[i] = pid;
			break;
		}
	return pid;
}

static void child_stop(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	for (size_t i = 0; i < ARRAY_SIZE(children); i++)
		if (children[i] == pid)
			children[i] = 0;
}

/* After each test, passed or failed: nothing of it goes on. */
static int cleanup(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(children); i++)
		if (children[i])
			child_stop(children[i]);
	for (size_t i = 0; i < ARRAY_SIZE(running); i++)
		if (running[i])
			attacker_stop(running[i]);
	if (probing) {
		atomic_store(&probe.stop, true);
		pthread_join(probe.thread, NULL);
		probing = false;
	}
	return 0;
}

/* ---- the guest running short ---- */

/* Allocate in the guest a step at a time, as an application grows, until
 * ovcd's emergency deflate comes (or @timeout_ms). The tick whose stats
 * first show the guest short and the emergency's tick, in *low and *emerg;
 * the guest's OOM kills in *ooms. */
static void guest_runs_short(unsigned timeout_ms, uint64_t *low, uint64_t *emerg, uint64_t *ooms)
{
	struct harness_meminfo before, mi;
	uint64_t emerg0 = guest_u64("emergencies"), end = mono_us() + timeout_ms * 1000ULL;
	char reply[256];

	*low = *emerg = 0;
	assert_ovc_ok(harness_guest_meminfo(&F.a, &before));
	while (mono_us() < end && !*emerg) {
		struct json_object *gs, *g;

		assert_ovc_ok(harness_guest_cmd(&F.a, "alloc 16M", reply, sizeof(reply), 60000));
		gs = ctl_json("guests");
		if (!gs)
			continue; /* no reply: the prober counts those */
		g = ovcd_guest_of(gs, F.a.name);
		if (!*low && ovcd_known(json_get_u64(g, "available_bytes")) &&
		    json_get_u64(g, "available_bytes") < json_get_u64(g, "current_bytes") / 5)
			*low = json_get_u64(gs, "ticks");
		if (json_get_u64(g, "emergencies") > emerg0) {
			*emerg = json_get_u64(g, "last_action_tick");
			if (!*low)
				*low = *emerg;
		}
		json_object_put(gs);
		msleep(250);
	}
	assert_ovc_ok(harness_guest_meminfo(&F.a, &mi));
	*ooms = mi.oom_kill - before.oom_kill;
	assert_ovc_ok(harness_guest_cmd(&F.a, "free", reply, sizeof(reply), 60000));
}

/* ---- setup / teardown ---- */

static int setup(void **state)
{
	const char *why = NULL, *bin = getenv("OVC_TEST_OVCD");
	struct harness_guest_opts go = { .mem_mib = 1024 };
	struct group *kvm = getgrnam("kvm");
	FILE *f;

	memset(&F, 0, sizeof(F));
	F.a.serial_fd = -1;
	*state = &F;
	if (geteuid() != 0) {
		F.skip = "needs root (a non-root attacker uid, the control socket's owner)";
		return 0;
	}
	if ((F.skip = harness_qemu_missing()))
		return 0;
	if (harness_image(&F.img, &why) < 0) {
		F.skip = why;
		return 0;
	}
	if (!kvm) {
		F.skip = "no group 'kvm' for the control socket";
		return 0;
	}
	F.kvm = kvm->gr_gid;
	F.port = 20000 + ((unsigned)getpid() + 7919) % 20000;
	harness_cleanup_leftovers(NULL);
	if (ovcd_fixture_dirs(&F.d, "attacks", 0755, OVCD_FIXTURE_QMP) < 0)
		return -1;
	go.qmp_dir = F.d.qmp_dir;
	if (harness_qemu_start(&F.img, &go, &F.a) < 0 || harness_guest_wait_ready(&F.a, 180000) < 0)
		return -1;

	/* The host has room: the policy leaves the guest alone, but for the
	 * pin the tests set and the emergency that overrides it. */
	f = fopen(F.d.conf, "we");
	if (!f)
		return -1;
	fprintf(f,
		"[host]\n"
		"interval = %ums\n"
		"reserve = 1GiB\n"
		"low = 1MiB\n"
		"high = 2MiB\n"
		"psi_some = 100%%\n"
		"psi_full = 100%%\n"
		"psi_trigger_stall = 0\n"
		"[balloon]\n"
		"floor = 30%%\n"
		"stats_period = 1s\n"
		"stale_after = 5s\n"
		"emergency_available = 20%%\n"
		"emergency_step = 25%%\n"
		"[ksm]\n"
		"enable = no\n"
		"[engine]\n"
		"dir =\n"
		"[metrics]\n"
		"listen = 127.0.0.1:%u\n"
		"[control]\n"
		"socket = %s\n"
		"group = kvm\n",
		INTERVAL_MS, F.port, F.d.sock);
	fclose(f);

	F.ovcd = ovcd_spawn(bin ? bin : OVCD_BIN,
			    (char *[]){ "ovcd", "-c", F.d.conf, "--no-libvirt", "--qmp-dir", F.d.qmp_dir, NULL }, F.d.log, NULL);
	if (F.ovcd < 0)
		return -1;
	(void)ovcd_wait_socket(F.d.sock, 10000);
	if (bin)
		print_message("[  INFO    ] ovcd from %s\n", bin);
	return 0;
}

static int teardown(void **state)
{
	child_kill_wait(&F.ovcd, SIGTERM);
	harness_guest_stop(&F.a);
	ovcd_fixture_rm(&F.d);
	return 0;
}

static bool guest_listed_fresh(void *arg)
{
	(void)arg;
	return ovcd_known(guest_u64("available_bytes")) && ovcd_known(guest_u64("current_bytes"));
}

static bool guest_at_pin(void *arg)
{
	uint64_t cur = guest_u64("current_bytes");

	(void)arg;
	return ovcd_known(cur) && cur <= GIB / 2 + 16 * MIB;
}

/* ---- tests ---- */

static void test_baseline(void **state)
{
	SKIP_IF(F.skip);
	assert_true(harness_wait_until(guest_listed_fresh, NULL, 60000));
	probe_start();
	msleep(ATTACK_MS);
	probe_stop_and_check("no attack");
}

static void test_slowloris_metrics_guest_deflated(void **state)
{
	struct attacker a;
	uint64_t low, emerg, ooms, t0, t_attack;
	char out[1 << 16];
	bool scraped;
	int r, scrape;

	SKIP_IF(F.skip);
	/* The guest ballooned to half its memory, by an operator's pin. */
	r = sh(out, sizeof(out), "%s/ovcctl -s %s set %s target 50%% 2>&1", OVCD_BIN, F.d.sock, F.a.name);
	assert_int_equal(r, 0);
	assert_true(harness_wait_until(guest_at_pin, NULL, 60000));

	attacker_start(&a, slowloris_main);
	probe_start();
	t_attack = mono_us();
	msleep(2000);
	/* A scraper still gets its metrics while the attack goes on. */
	t0 = mono_us();
	scrape = sh(out, sizeof(out), "curl -s -m 5 http://127.0.0.1:%u/metrics", F.port);
	scraped = strstr(out, "ovc_ticks_total ") != NULL;
	print_message("[  FIGURE  ] slowloris: a scrape during the attack took %.1f ms\n", (mono_us() - t0) / 1000.0);
	/* And the guest runs short: deflated within a tick of the stats
	 * showing it, whatever the port is fed. */
	guest_runs_short(60000, &low, &emerg, &ooms);
	/* Past the metrics deadline (10 s), to see the attacker cut. */
	while (mono_us() - t_attack < 13 * USEC_PER_SEC)
		msleep(100);
	attacker_stop(&a);
	print_message("[  FIGURE  ] slowloris: %lu connections, %lu bytes sent, %lu cut by ovcd; guest short at "
		      "tick %lu, emergency deflate at tick %lu, guest OOM kills %lu\n",
		      (unsigned long)a.connections, (unsigned long)a.bytes, (unsigned long)a.cut, (unsigned long)low,
		      (unsigned long)emerg, (unsigned long)ooms);
	probe_stop_and_check("slowloris on the metrics port");
	assert_int_equal(scrape, 0);
	assert_true(scraped);
	assert_true(emerg > 0);
	assert_true(emerg <= low + 1);
	assert_int_equal(ooms, 0);
	r = sh(out, sizeof(out), "%s/ovcctl -s %s set %s target none 2>&1", OVCD_BIN, F.d.sock, F.a.name);
	assert_int_equal(r, 0);
}

static void test_slow_metrics_reader(void **state)
{
	struct attacker a[4];

	SKIP_IF(F.skip);
	for (size_t i = 0; i < ARRAY_SIZE(a); i++)
		attacker_start(&a[i], slow_reader_main);
	probe_start();
	msleep(ATTACK_MS);
	for (size_t i = 0; i < ARRAY_SIZE(a); i++)
		attacker_stop(&a[i]);
	probe_stop_and_check("4 slow readers of the metrics body");
	for (size_t i = 0; i < ARRAY_SIZE(a); i++) {
		print_message("[  FIGURE  ] slow reader %zu: %lu connections, %lu bytes read, %lu closed by ovcd\n", i,
			      (unsigned long)a[i].connections, (unsigned long)a[i].bytes, (unsigned long)a[i].cut);
	}
}

static void test_control_pipelining(void **state)
{
	struct attacker trickle;
	pid_t pid;

	SKIP_IF(F.skip);
	pid = child_as_nobody();
	if (pid == 0) {
		static const char req[] = "{\"version\":1,\"command\":\"status\"}\n";
		size_t len = 5000 * (sizeof(req) - 1), off = 0;
		char *all = malloc(len);
		int fd = unix_connect(F.d.sock, 0, UNIX_ASK_NOWAIT);

		if (!all || fd < 0)
			_exit(101);
		for (size_t i = 0; i < 5000; i++)
			memcpy(all + i * (sizeof(req) - 1), req, sizeof(req) - 1);
		/* Everything it can write, never a byte read. */
		for (;;) {
			ssize_t k = off < len ? send(fd, all + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;

			if (k > 0)
				off += (size_t)k;
			else if (k < 0 && errno != EAGAIN)
				_exit(0); /* dropped by ovcd */
			msleep(20);
		}
	}
	/* And another that sends its request a byte a second. */
	attacker_start(&trickle, control_trickle_main);
	probe_start();
	msleep(ATTACK_MS);
	child_stop(pid);
	attacker_stop(&trickle);
	print_message("[  FIGURE  ] a control request sent a byte a second: %s after %lu ms\n",
		      trickle.cut ? "dropped by ovcd" : "still open", (unsigned long)trickle.bytes);
	probe_stop_and_check("a control client pipelining 5000 status requests, never reading");
	assert_true(trickle.cut);
}

static void test_idle_connections_then_root_reload(void **state)
{
	int pipefd[2];
	unsigned refused = 0;
	char out[4096];
	uint64_t t0, us;
	pid_t pid;
	int r;

	SKIP_IF(F.skip);
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	pid = child_as_nobody();
	if (pid == 0) {
		int fds[64];
		unsigned n_refused = 0;

		for (int i = 0; i < 64; i++)
			for (int try = 0; try < 100; try++) {
				fds[i] = unix_connect(F.d.sock, 0, UNIX_ASK_NOWAIT);
				if (fds[i] >= 0 || errno != EAGAIN)
					break;
				msleep(10); /* the listen queue is full: ovcd accepts soon */
			}
		msleep(500);
		/* A refused connection has its error line, or is closed. */
		for (int i = 0; i < 64; i++) {
			char c;

			if (fds[i] < 0 || recv(fds[i], &c, 1, MSG_DONTWAIT) >= 0)
				n_refused++;
		}
		(void)!write(pipefd[1], &n_refused, sizeof(n_refused));
		pause();
		_exit(0);
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &refused, sizeof(refused)), (ssize_t)sizeof(refused));
	close(pipefd[0]);
	probe_start();
	msleep(1000);
	/* Root's reload, with the real ovcctl. */
	t0 = mono_us();
	r = sh(out, sizeof(out), "%s/ovcctl -s %s reload 2>&1", OVCD_BIN, F.d.sock);
	us = mono_us() - t0;
	msleep(ATTACK_MS - 1000);
	print_message("[  FIGURE  ] 64 idle connections of uid %u: %u refused; root's ovcctl reload took %.1f ms: %s",
		      NOBODY, refused, us / 1000.0, out);
	child_stop(pid);
	probe_stop_and_check("64 idle control connections of a non-root uid");
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "configuration reloaded"));
	assert_true(us <= LATENCY_MAX_MS * 1000);
	/* A uid gets its share of the connections, not all of them. */
	assert_true(refused >= 64 - 16);
}

/* A second ovcd (no guests) whose control socket's directory anybody may
 * write: a symlink planted at the socket's path before it starts, and the
 * socket swapped for a symlink before a reload, never make it chmod or
 * chown the file they point to. */
static void test_control_socket_symlinks(void **state)
{
	char dir[192], sock[256], victim[256], conf[256], log[256], out[4096];
	struct stat st;
	pid_t pid;
	FILE *f;
	int fd;

	SKIP_IF(F.skip);
	snprintf(dir, sizeof(dir), "%s/open", F.d.dir);
	snprintf(sock, sizeof(sock), "%s/ovcd.sock", dir);
	snprintf(victim, sizeof(victim), "%s/victim", F.d.dir);
	snprintf(conf, sizeof(conf), "%s/second.conf", F.d.dir);
	snprintf(log, sizeof(log), "%s/second.log", F.d.dir);
	assert_int_equal(mkdir(dir, 0777), 0);
	assert_int_equal(chmod(dir, 0777), 0); /* no sticky bit: anyone may swap names */
	fd = open(victim, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(symlink(victim, sock), 0);
	f = fopen(conf, "we");
	assert_non_null(f);
	fprintf(f, "[ksm]\nenable = no\n[engine]\ndir =\n[control]\nsocket = %s\ngroup = kvm\n", sock);
	fclose(f);

	pid = ovcd_spawn(getenv("OVC_TEST_OVCD") ? getenv("OVC_TEST_OVCD") : OVCD_BIN,
			 (char *[]){ "ovcd", "-c", conf, "--no-libvirt", NULL }, log, NULL);
	assert_true(pid > 0);
	for (int i = 0; i < 100 && !(lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode)); i++)
		msleep(50);
	assert_int_equal(lstat(sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(st.st_gid, F.kvm);
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_gid, 0);

	/* The socket swapped for a symlink, then a reload. */
	assert_int_equal(unlink(sock), 0);
	assert_int_equal(symlink(victim, sock), 0);
	assert_int_equal(kill(pid, SIGHUP), 0);
	for (int i = 0; i < 100; i++) {
		if (sh(out, sizeof(out), "grep -c 'configuration reloaded' %s", log) == 0)
			break;
		msleep(50);
	}
	assert_int_equal(stat(victim, &st), 0);
	print_message("[  FIGURE  ] control socket swapped for a symlink, then reload: the target's mode %o, group %u\n",
		      (unsigned)(st.st_mode & 07777), (unsigned)st.st_gid);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_gid, 0);
	assert_int_equal(sh(out, sizeof(out), "grep -c 'is no longer the socket ovcd made' %s", log), 0);
	/* At exit ovcd removes its socket, not what took its name. */
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	assert_int_equal(lstat(sock, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_baseline, cleanup),
		cmocka_unit_test_teardown(test_slowloris_metrics_guest_deflated, cleanup),
		cmocka_unit_test_teardown(test_slow_metrics_reader, cleanup),
		cmocka_unit_test_teardown(test_control_pipelining, cleanup),
		cmocka_unit_test_teardown(test_idle_connections_then_root_reload, cleanup),
		cmocka_unit_test_teardown(test_control_socket_symlinks, cleanup),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
