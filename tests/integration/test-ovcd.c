/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the real ovcd binary against real QEMU guests (TCG, the
 * guest image of scripts/build-guest-image) through the QMP driver, driven
 * and observed with the real ovcctl binary.
 *
 * The host squeeze is real: the config puts [host] low 1 GiB under the
 * MemAvailable measured at setup, and a hog process then allocates and
 * touches 2 GiB, so MemAvailable really falls under low. Nothing in ovcd is
 * mocked. One guest is fake, and says so: a process in the QMP directory
 * that speaks QMP like QEMU 7.2 and reports impossible and wildly changing
 * balloon statistics (the malicious-guest test); it records every target
 * ovcd asks for.
 *
 * Assertions count ticks, never time; the times are printed as figures.
 * The tests run in order and share one daemon (cmocka group).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ovc/ovc.h>

#include "guest-harness.h"
#include "host/guest.h"
#include "json-get.h"
#include "host/host.h"
#include "host/ksm.h"
#include "ovcd-test.h"
#include "ovc-test.h"
#include "peer-fakes.h"
#include "common/util.h"

#ifndef OVCD_BIN
#error OVCD_BIN must be defined by the build
#endif

#define HOG_BYTES (3 * GIB)
#define FAKE_MAX_BYTES GIB
#define FAKE_FLOOR_BYTES (GIB / 2)

struct fixture {
	const char *skip;
	struct harness_image img;
	struct ovcd_fixture d;
	struct harness_guest a, b;
	pid_t ovcd, hog, fake;
	int notify_fd;
	struct fake_peer_record *fake_st;
	uint64_t avail0;
	char conf_text[4096];
	unsigned bad_line;
};

static struct fixture F;

/* ---- helpers ---- */

static uint64_t mono_ms(void)
{
	return now_usec(CLOCK_MONOTONIC) / 1000;
}

static void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* `ovcctl --json CMD` as root; NULL when it fails. */
static struct json_object *ctl_json(const char *cmd)
{
	return ovcctl_json(OVCD_BIN, F.d.sock, cmd);
}

/* The invariant checked on every observation: never below the floor. */
static unsigned floor_checks;
static void check_floors(struct json_object *guests)
{
	struct json_object *arr = json_get(guests, "guests");

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *g = json_object_array_get_idx(arr, i);
		uint64_t floor = json_get_u64(g, "floor_bytes"), target = json_get_u64(g, "target_bytes"), cur = json_get_u64(g, "current_bytes");

		if (ovcd_known(target) && target < floor)
			fail_msg("guest %s: target %lu below floor %lu", json_object_get_string(json_get(g, "name")),
				 (unsigned long)target, (unsigned long)floor);
		/* current may lag a deflate to a raised floor, never an inflate. */
		if (ovcd_known(cur) && cur + MIB < floor && target >= floor &&
		    strcmp(json_object_get_string(json_get(g, "last_action")), "inflate") == 0)
			fail_msg("guest %s: current %lu below floor %lu after an inflate",
				 json_object_get_string(json_get(g, "name")), (unsigned long)cur, (unsigned long)floor);
		floor_checks++;
	}
}

/* The tick of ovcd's first inflate of a real guest, from its log
 * ("tick N: inflate 'NAME' ..."); 0 if none. */
static uint64_t log_first_inflate_tick(void)
{
	char buf[4096];
	FILE *f = fopen(F.d.log, "re");
	uint64_t first = 0;

	if (!f)
		return 0;
	while (fgets(buf, sizeof(buf), f)) {
		unsigned long t;
		char name[128];

		if (sscanf(buf, "ovcd: info: tick %lu: inflate '%127[^']'", &t, name) == 2 &&
		    (strcmp(name, F.a.name) == 0 || strcmp(name, F.b.name) == 0) && (!first || t < first))
			first = t;
	}
	fclose(f);
	return first;
}

static bool log_contains(const char *needle)
{
	return file_has(F.d.log, needle);
}

/* systemd reads its notify socket all the time, and so must we: ovcd's
 * sd_notify() blocks when the socket's queue is full. */
static volatile int seen_ready, seen_stopping, seen_reloading;

static void *notify_reader(void *arg)
{
	char buf[4096];

	for (;;) {
		ssize_t n = recv(F.notify_fd, buf, sizeof(buf) - 1, 0);

		if (n < 0)
			return NULL;
		buf[n] = '\0';
		if (strstr(buf, "READY=1"))
			seen_ready = 1;
		if (strstr(buf, "STOPPING=1"))
			seen_stopping = 1;
		if (strstr(buf, "RELOADING=1"))
			seen_reloading = 1;
	}
}

static bool notify_wait(volatile int *flag, unsigned timeout_ms)
{
	uint64_t end = mono_ms() + timeout_ms;

	while (!*flag && mono_ms() < end)
		msleep(50);
	return *flag;
}

/* ---- the fake guest: QMP like QEMU 7.2 (peer-fakes.h), its balloon at
 * every target at once, stats that cannot be true ---- */

static struct json_object *fake_stats(uint64_t k, uint64_t actual)
{
	struct json_object *o = json_object_new_object(), *s = json_object_new_object();
	int64_t now = (int64_t)time(NULL);
	uint64_t avail, total = actual, faults = k * 7;

	switch (k % 6) {
	case 0: avail = actual; break;                  /* all of it spare */
	case 1: avail = 64 * GIB; break;                /* more than it has */
	case 2: avail = actual - actual / 64; total = 4 * GIB; break; /* lies about total */
	case 3: avail = 0; faults = k * 100000; break;  /* sudden distress */
	case 4: avail = (uint64_t)-1; break;            /* "unavailable" */
	default: avail = actual / 2 + (k * 7919 % 300) * MIB; break; /* jumps */
	}
	json_object_object_add(s, "stat-total-memory", json_object_new_uint64(total));
	json_object_object_add(s, "stat-free-memory", json_object_new_uint64(avail));
	json_object_object_add(s, "stat-available-memory", json_object_new_uint64(avail));
	json_object_object_add(s, "stat-major-faults", json_object_new_uint64(faults));
	json_object_object_add(s, "stat-minor-faults", json_object_new_uint64(faults * 3));
	json_object_object_add(s, "stat-swap-in", json_object_new_uint64(0));
	json_object_object_add(s, "stat-swap-out", json_object_new_uint64(0));
	json_object_object_add(s, "stat-disk-caches", json_object_new_uint64(avail / 2));
	json_object_object_add(o, "stats", s);
	/* every seventh report claims to come from the future */
	json_object_object_add(o, "last-update", json_object_new_int64(k % 7 == 6 ? now + 86400 * 365 : now));
	return o;
}

/* ---- setup / teardown ---- */

static unsigned metrics_port(void)
{
	return 20000 + (unsigned)getpid() % 20000;
}

static void write_config(const char *extra_guest_b)
{
	FILE *f = fopen(F.d.conf, "we");
	/* Under MemAvailable now by a margin that other work on this shared
	 * host does not eat; the hog's 3 GiB goes well past it. */
	uint64_t low = F.avail0 - 3 * GIB / 2, high = F.avail0 - GIB;

	assert_non_null(f);
	snprintf(F.conf_text, sizeof(F.conf_text),
		 "# written by test-ovcd\n"
		 "[host]\n"
		 "interval = 1s\n"
		 "reserve = 1GiB\n"
		 "low = %luMiB\n"
		 "high = %luMiB\n"
		 "psi_some = 100%%\n"
		 "psi_full = 100%%\n"
		 "psi_trigger_stall = 0\n"
		 "[balloon]\n"
		 "step = 25%%\n"
		 "floor = 40%%\n"
		 "guest_free = 10%%\n"
		 "stats_period = 1s\n"
		 "stale_after = 5s\n"
		 "emergency_available = 20%%\n"
		 "emergency_step = 25%%\n"
		 "[ksm]\n"
		 "enable = no\n"
		 "[metrics]\n"
		 "textfile = %s\n"
		 "listen = 127.0.0.1:%u\n"
		 "[control]\n"
		 "socket = %s\n"
		 "group = kvm\n"
		 "[guest \"evil-*\"]\n"
		 "floor = 50%%\n"
		 "[guest \"%s\"]\n"
		 "%s\n",
		 (unsigned long)(low / MIB), (unsigned long)(high / MIB), F.d.prom, metrics_port(), F.d.sock, F.b.name,
		 extra_guest_b);
	fputs(F.conf_text, f);
	fclose(f);
}

/* ovcd's sd_notify socket, drained by a thread of its own. */
static int notify_start(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pthread_t t;

	F.notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", F.d.notify);
	if (F.notify_fd < 0 || bind(F.notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    pthread_create(&t, NULL, notify_reader, NULL) != 0)
		return -1;
	pthread_detach(t);
	return 0;
}

static int setup(void **state)
{
	const char *why = NULL;
	struct harness_guest_opts go = { .mem_mib = 1024 };
	struct ovcd_meminfo mi;
	char fake_path[256];
	int fd;

	memset(&F, 0, sizeof(F));
	F.a.serial_fd = F.b.serial_fd = F.notify_fd = -1;
	*state = &F;
	if ((F.skip = harness_qemu_missing()))
		return 0;
	if (harness_image(&F.img, &why) < 0) {
		F.skip = why;
		return 0;
	}
	if (!getgrnam("kvm")) {
		F.skip = "no group 'kvm' for the control socket";
		return 0;
	}
	harness_cleanup_leftovers(NULL);
	if (ovcd_fixture_dirs(&F.d, "ovcd", 0755, OVCD_FIXTURE_QMP) < 0)
		return -1;
	/* The dir must let 'nobody' reach the socket for the permission test. */
	chmod(F.d.dir, 0755);

	go.qmp_dir = F.d.qmp_dir;
	if (harness_qemu_start(&F.img, &go, &F.a) < 0)
		return -1;
	go.mem_mib = 768;
	if (harness_qemu_start(&F.img, &go, &F.b) < 0)
		return -1;
	if (harness_guest_wait_ready(&F.a, 180000) < 0 || harness_guest_wait_ready(&F.b, 180000) < 0)
		return -1;

	F.fake_st = mmap(NULL, sizeof(*F.fake_st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (F.fake_st == MAP_FAILED)
		return -1;
	snprintf(fake_path, sizeof(fake_path), "%s/evil-guest.qmp", F.d.qmp_dir);
	fd = fake_listen_at(fake_path, 4);
	if (fd < 0)
		return -1;
	F.fake = fake_qmp_start(fd, QMP_OBEY_BALLOON, "evil-guest", FAKE_MAX_BYTES, F.fake_st, fake_stats);
	if (F.fake < 0)
		return -1;

	if (notify_start() < 0)
		return -1;

	if (ovcd_meminfo_read(NULL, &mi) < 0)
		return -1;
	F.avail0 = mi.available_bytes;
	write_config("floor = 60%");

	F.ovcd = ovcd_spawn(OVCD_BIN, (char *[]){ "ovcd", "-c", F.d.conf, "--no-libvirt", "--qmp-dir", F.d.qmp_dir, NULL },
			    F.d.log, F.d.notify);
	return 0;
}

static void hog_stop(void)
{
	child_kill_wait(&F.hog, SIGKILL);
}

static int teardown(void **state)
{
	hog_stop();
	child_kill_wait(&F.ovcd, SIGKILL);
	child_kill_wait(&F.fake, SIGKILL);
	harness_guest_stop(&F.a);
	harness_guest_stop(&F.b);
	if (F.notify_fd >= 0)
		close(F.notify_fd);
	ovcd_fixture_rm(&F.d);
	return 0;
}

/* ---- tests ---- */

/* The drivers set guests up without holding the loop: the first ticks may
 * come before every guest answered. */
static bool three_guests(void *arg)
{
	struct json_object *st = ctl_json("status");
	bool ok = st && json_get_u64(st, "guests") == 3;

	json_object_put(st);
	return ok;
}

static void test_ready_and_status(void **state)
{
	struct json_object *st, *sav;
	struct ovcd_meminfo mi;
	char out[8192];

	SKIP_IF(F.skip);
	/* sd_notify READY=1 comes after the first tick. */
	assert_true(notify_wait(&seen_ready, 120000));
	assert_true(harness_wait_until(three_guests, NULL, 60000));
	st = ctl_json("status");
	assert_non_null(st);
	assert_true(json_object_get_boolean(json_get(st, "ok")));
	assert_int_equal(json_get_u64(st, "version"), 1);
	assert_ovc_ok(ovcd_meminfo_read(NULL, &mi));
	assert_int_equal(json_get_u64(st, "host_total_bytes"), mi.total_bytes);
	assert_true(json_get_u64(st, "ticks") >= 1);
	assert_non_null(json_get(st, "provisioned_ratio"));
	assert_non_null(json_get(st, "effective_ratio"));
	sav = json_get(st, "savings");
	assert_non_null(sav);
	assert_true(ovcd_known(json_get_u64(sav, "balloon_bytes")) && ovcd_known(json_get_u64(sav, "zero_bytes")) &&
		    ovcd_known(json_get_u64(sav, "ksm_bytes")) && ovcd_known(json_get_u64(sav, "swap_bytes")));
	/* Two real guests and the fake one: 1GiB + 768MiB + 1GiB. */
	assert_int_equal(json_get_u64(st, "guests"), 3);
	assert_int_equal(json_get_u64(st, "guests_max_bytes"), GIB + 768 * MIB + FAKE_MAX_BYTES);
	json_object_put(st);
	/* Human output. */
	assert_int_equal(sh(out, sizeof(out), "%s/ovcctl -s %s status", OVCD_BIN, F.d.sock), 0);
	assert_non_null(strstr(out, "Ratio:     provisioned "));
	assert_non_null(strstr(out, "Savings:   balloon "));
	print_message("ovcctl status:\n%s", out);
}

struct fresh_arg {
	const char *names[2];
};

static bool both_fresh(void *arg)
{
	struct json_object *gs = ctl_json("guests");
	bool ok = gs != NULL;

	for (int i = 0; ok && i < 2; i++) {
		struct json_object *g = ovcd_guest_of(gs, i ? F.b.name : F.a.name);
		ok = g && ovcd_known(json_get_u64(g, "available_bytes")) && !json_object_get_boolean(json_get(g, "stale"));
	}
	if (gs)
		check_floors(gs);
	json_object_put(gs);
	return ok;
}

static void test_squeeze_inflates_within_a_tick(void **state)
{
	struct json_object *st, *gs;
	uint64_t pressure_tick = 0, first_inflate_tick = 0, t_hog0, t_hog = 0, t_pressure = 0, t_inflate = 0;
	int pipefd[2];
	char c;

	SKIP_IF(F.skip);
	assert_true(harness_wait_until(both_fresh, NULL, 120000));
	/* Watermarks from MemAvailable as it is now (the guests have booted
	 * and the rest of the host moved on): reload, as an admin would. */
	{
		struct ovcd_meminfo mi;

		assert_ovc_ok(ovcd_meminfo_read(NULL, &mi));
		F.avail0 = mi.available_bytes;
		write_config("floor = 60%");
		assert_int_equal(kill(F.ovcd, SIGHUP), 0);
		msleep(1500);
	}
	/* Before the squeeze: MemAvailable is above high, nothing inflated. */
	st = ctl_json("status");
	assert_string_not_equal(json_object_get_string(json_get(st, "level")), "pressure");
	json_object_put(st);
	gs = ctl_json("guests");
	assert_int_equal(json_get_u64(ovcd_guest_of(gs, F.a.name), "inflates"), 0);
	assert_int_equal(json_get_u64(ovcd_guest_of(gs, F.b.name), "inflates"), 0);
	json_object_put(gs);

	/* The squeeze: a real process takes 2 GiB of real host memory. */
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	t_hog0 = mono_ms();
	F.hog = fork();
	if (F.hog == 0) {
		char *p = mmap(NULL, HOG_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (p == MAP_FAILED)
			_exit(1);
		for (uint64_t off = 0; off < HOG_BYTES; off += 4096)
			p[off] = 1;
		(void)!write(pipefd[1], "x", 1);
		pause();
		_exit(0);
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);
	t_hog = mono_ms();

	for (uint64_t end = mono_ms() + 60000; mono_ms() < end && !first_inflate_tick;) {
		st = ctl_json("status");
		gs = ctl_json("guests");
		assert_non_null(st);
		assert_non_null(gs);
		check_floors(gs);
		if (!pressure_tick && strcmp(json_object_get_string(json_get(st, "level")), "pressure") == 0) {
			pressure_tick = json_get_u64(st, "level_since_tick");
			t_pressure = mono_ms();
		}
		for (int i = 0; i < 2; i++) {
			struct json_object *g = ovcd_guest_of(gs, i ? F.b.name : F.a.name);

			if (json_get_u64(g, "inflates") > 0 && !t_inflate)
				t_inflate = mono_ms();
		}
		json_object_put(st);
		json_object_put(gs);
		if (t_inflate)
			first_inflate_tick = log_first_inflate_tick();
		msleep(100);
	}
	assert_true(pressure_tick > 0);
	assert_true(first_inflate_tick > 0);
	print_message("[  FIGURE  ] squeeze: pressure seen at tick %lu, first inflate at tick %lu; "
		      "seen by ovcctl %lu ms after the hog started (it held 3GiB after %lu ms; pressure seen after "
		      "%lu ms)\n",
		      (unsigned long)pressure_tick, (unsigned long)first_inflate_tick,
		      (unsigned long)(t_inflate - t_hog0), (unsigned long)(t_hog - t_hog0),
		      (unsigned long)(t_pressure - t_hog0));
	/* Within one interval: the tick that saw pressure, or the next. */
	assert_true(first_inflate_tick <= pressure_tick + 1);
	assert_true(log_contains(": inflate '"));

	/* Let the policy go on for a few ticks; floors hold throughout. */
	for (uint64_t end = mono_ms() + 8000; mono_ms() < end;) {
		gs = ctl_json("guests");
		check_floors(gs);
		json_object_put(gs);
		msleep(200);
	}
	gs = ctl_json("guests");
	assert_true(json_get_u64(ovcd_guest_of(gs, F.a.name), "current_bytes") < GIB);
	json_object_put(gs);
}

static void test_emergency_deflate_no_oom(void **state)
{
	struct harness_meminfo before, mi;
	struct json_object *gs, *g;
	uint64_t actual0, want, held = 0, t0, t_emerg = 0, emerg0, tick0, low_tick = 0, emerg_tick = 0;
	char reply[256];

	SKIP_IF(F.skip);
	gs = ctl_json("guests");
	g = ovcd_guest_of(gs, F.a.name);
	actual0 = json_get_u64(g, "current_bytes");
	emerg0 = json_get_u64(g, "emergencies");
	tick0 = json_get_u64(gs, "ticks");
	json_object_put(gs);
	assert_true(actual0 < GIB);
	assert_ovc_ok(harness_guest_meminfo(&F.a, &before));
	/* More than the ballooned guest can hold: only a deflate makes room.
	 * Allocated gradually, as an application grows (8 MiB per 300 ms). */
	want = actual0;
	t0 = mono_ms();
	while (held < want && mono_ms() - t0 < 180000) {
		unsigned long long h;

		assert_ovc_ok(harness_guest_cmd(&F.a, "alloc 8M", reply, sizeof(reply), 60000));
		if (sscanf(reply, "ok held=%llu", &h) == 1)
			held = h;
		assert_ovc_ok(harness_guest_meminfo(&F.a, &mi));
		assert_int_equal(mi.oom_kill, before.oom_kill);
		gs = ctl_json("guests");
		check_floors(gs);
		g = ovcd_guest_of(gs, F.a.name);
		/* The tick whose stats first showed the guest short (what
		 * ovcd saw, as ovcctl shows it), and the emergency's tick. */
		if (!low_tick && ovcd_known(json_get_u64(g, "available_bytes")) &&
		    json_get_u64(g, "available_bytes") < json_get_u64(g, "current_bytes") / 5)
			low_tick = json_get_u64(gs, "ticks");
		if (!t_emerg && json_get_u64(g, "emergencies") > emerg0) {
			t_emerg = mono_ms();
			emerg_tick = json_get_u64(g, "last_action_tick");
			if (!low_tick)
				low_tick = emerg_tick;
		}
		json_object_put(gs);
		msleep(300);
	}
	gs = ctl_json("guests");
	g = ovcd_guest_of(gs, F.a.name);
	print_message("[  FIGURE  ] emergency: guest at %luMiB allocated %luMiB; %lu emergency deflates, "
		      "first %lu ms after allocation began (tick %lu -> %lu); now %luMiB; oom_kill %lu -> %lu\n",
		      (unsigned long)(actual0 / MIB), (unsigned long)(held / MIB),
		      (unsigned long)(json_get_u64(g, "emergencies") - emerg0), (unsigned long)(t_emerg ? t_emerg - t0 : 0),
		      (unsigned long)tick0, (unsigned long)json_get_u64(gs, "ticks"),
		      (unsigned long)(json_get_u64(g, "current_bytes") / MIB), (unsigned long)before.oom_kill,
		      (unsigned long)mi.oom_kill);
	print_message("[  FIGURE  ] emergency: ovcd saw the guest short at tick %lu, deflated at tick %lu\n",
		      (unsigned long)low_tick, (unsigned long)emerg_tick);
	assert_true(held >= want);
	assert_true(json_get_u64(g, "emergencies") > emerg0);
	/* Within one interval of the first stats that showed it short. */
	assert_true(emerg_tick <= low_tick + 1);
	assert_int_equal(mi.oom_kill, before.oom_kill);
	json_object_put(gs);
	assert_true(log_contains(": emergency '"));
	assert_ovc_ok(harness_guest_cmd(&F.a, "free", reply, sizeof(reply), 60000));
}

static bool b_floor_is_70(void *arg)
{
	struct json_object *gs = ctl_json("guests");
	struct json_object *g = ovcd_guest_of(gs, F.b.name);
	bool ok = g && json_get_u64(g, "floor_bytes") == 768 * MIB * 70 / 100 && json_get_u64(g, "target_bytes") >= json_get_u64(g, "floor_bytes");

	json_object_put(gs);
	return ok;
}

static void test_sighup_bad_then_good(void **state)
{
	struct json_object *st;
	uint64_t ticks;
	char needle[256];
	FILE *f;

	SKIP_IF(F.skip);
	/* A bad file: the daemon logs file:line and keeps the last good one. */
	f = fopen(F.d.conf, "ae");
	assert_non_null(f);
	fputs("bogus_key = 1\n", f);
	fclose(f);
	{
		unsigned lines = 0;
		for (const char *p = F.conf_text; *p; p++)
			lines += *p == '\n';
		F.bad_line = lines + 1;
	}
	assert_int_equal(kill(F.ovcd, SIGHUP), 0);
	snprintf(needle, sizeof(needle), "%s:%u:", F.d.conf, F.bad_line);
	for (uint64_t end = mono_ms() + 20000; mono_ms() < end && !log_contains(needle);)
		msleep(100);
	assert_true(log_contains(needle));
	assert_true(log_contains("keeping the last good configuration"));
	st = ctl_json("status");
	assert_non_null(st);
	ticks = json_get_u64(st, "ticks");
	assert_int_equal(json_get_u64(st, "interval_usec"), USEC_PER_SEC);
	json_object_put(st);
	msleep(2500);
	st = ctl_json("status");
	assert_true(json_get_u64(st, "ticks") > ticks); /* still ticking */
	json_object_put(st);

	/* A good one takes effect: guest B's floor goes to 70%. */
	write_config("floor = 70%");
	assert_int_equal(kill(F.ovcd, SIGHUP), 0);
	assert_true(harness_wait_until(b_floor_is_70, NULL, 30000));
	assert_true(log_contains("configuration reloaded"));
}

static void test_ovcctl_permissions(void **state)
{
	char out[8192];
	const char *nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups";
	struct group *kvm = getgrnam("kvm");
	struct json_object *gs, *g;
	int r;

	SKIP_IF(F.skip);
	/* Socket 0660 root:kvm: a stranger cannot even connect. */
	r = sh(out, sizeof(out), "%s %s/ovcctl -s %s status 2>&1", nobody, OVCD_BIN, F.d.sock);
	assert_int_equal(r, 1);
	assert_non_null(strstr(out, "Permission denied"));
	/* A member of the [control] group may read and change. */
	r = sh(out, sizeof(out), "setpriv --reuid=65534 --regid=65534 --groups=%u %s/ovcctl -s %s set %s floor 45%% 2>&1",
	       (unsigned)kvm->gr_gid, OVCD_BIN, F.d.sock, F.a.name);
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "until reload or restart"));
	/* With the file mode loosened (as an admin may, for monitoring),
	 * SO_PEERCRED still keeps strangers to the read-only commands. */
	assert_int_equal(chmod(F.d.sock, 0666), 0);
	r = sh(out, sizeof(out), "%s %s/ovcctl -s %s status 2>&1", nobody, OVCD_BIN, F.d.sock);
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "Ratio:"));
	r = sh(out, sizeof(out), "%s %s/ovcctl -s %s set %s floor 90%% 2>&1", nobody, OVCD_BIN, F.d.sock, F.a.name);
	assert_int_equal(r, 1);
	assert_non_null(strstr(out, "permission denied: \"set\" is only for root and members of group kvm"));
	r = sh(out, sizeof(out), "%s %s/ovcctl -s %s reload 2>&1", nobody, OVCD_BIN, F.d.sock);
	assert_int_equal(r, 1);
	assert_non_null(strstr(out, "permission denied"));

	/* root: pin a target; never below the floor. */
	r = sh(out, sizeof(out), "%s/ovcctl -s %s set %s target 30%% 2>&1", OVCD_BIN, F.d.sock, F.a.name);
	assert_int_equal(r, 0);
	msleep(2500);
	gs = ctl_json("guests");
	g = ovcd_guest_of(gs, F.a.name);
	assert_true(json_object_get_boolean(json_get(g, "floor_override")));
	assert_int_equal(json_get_u64(g, "floor_bytes"), GIB * 45 / 100);
	assert_int_equal(json_get_u64(g, "pinned_target_bytes"), GIB * 30 / 100);
	/* pinned at 30% but the floor is 45% */
	assert_int_equal(json_get_u64(g, "target_bytes"), GIB * 45 / 100);
	check_floors(gs);
	json_object_put(gs);

	r = sh(out, sizeof(out), "%s/ovcctl -s %s set no-such-guest floor 1GiB 2>&1", OVCD_BIN, F.d.sock);
	assert_int_equal(r, 1);
	assert_non_null(strstr(out, "no guest named 'no-such-guest'"));
	r = sh(out, sizeof(out), "%s/ovcctl -s %s set %s floor 2GiB 2>&1", OVCD_BIN, F.d.sock, F.a.name);
	assert_int_equal(r, 1);
	assert_non_null(strstr(out, "is above the maximum"));

	/* guests table and top without a tty */
	r = sh(out, sizeof(out), "%s/ovcctl -s %s guests", OVCD_BIN, F.d.sock);
	assert_int_equal(r, 0);
	assert_non_null(strstr(out, "NAME"));
	assert_non_null(strstr(out, F.a.name));
	print_message("ovcctl guests:\n%s", out);
	r = sh(out, sizeof(out), "%s/ovcctl -s %s top --iterations 2 </dev/null", OVCD_BIN, F.d.sock);
	assert_int_equal(r, 0);
	assert_non_null(strstr(strstr(out, "Ratio:") + 1, "Ratio:")); /* two frames */
	/* root reload clears the overrides */
	r = sh(out, sizeof(out), "%s/ovcctl -s %s reload 2>&1", OVCD_BIN, F.d.sock);
	assert_int_equal(r, 0);
	gs = ctl_json("guests");
	g = ovcd_guest_of(gs, F.a.name);
	assert_false(json_object_get_boolean(json_get(g, "floor_override")));
	assert_null(json_get(g, "pinned_target_bytes"));
	json_object_put(gs);
}

static void test_fake_guest_never_below_floor(void **state)
{
	struct json_object *gs, *g;

	SKIP_IF(F.skip);
	gs = ctl_json("guests");
	g = ovcd_guest_of(gs, "evil-guest");
	assert_non_null(g);
	assert_int_equal(json_get_u64(g, "floor_bytes"), FAKE_FLOOR_BYTES);
	print_message("[  FIGURE  ] fake guest: %lu stats reads, %lu targets set, lowest %luMiB (floor %luMiB)\n",
		      (unsigned long)F.fake_st->stats, (unsigned long)F.fake_st->targets,
		      (unsigned long)(F.fake_st->min_target == UINT64_MAX ? 0 : F.fake_st->min_target / MIB),
		      (unsigned long)(FAKE_FLOOR_BYTES / MIB));
	/* It was read all along and the host was squeezed: it was a candidate. */
	assert_true(F.fake_st->stats > 20);
	if (F.fake_st->targets)
		assert_true(F.fake_st->min_target >= FAKE_FLOOR_BYTES);
	json_object_put(gs);
	/* ovcd is alive and well */
	assert_int_equal(waitpid(F.ovcd, NULL, WNOHANG), 0);
}

static void test_metrics_textfile(void **state)
{
	char out[1 << 16], needle[256];

	SKIP_IF(F.skip);
	assert_int_equal(sh(out, sizeof(out), "cat %s", F.d.prom), 0);
	assert_non_null(strstr(out, "# TYPE ovc_provisioned_ratio gauge\n"));
	snprintf(needle, sizeof(needle), "ovc_guest_max_bytes{guest=\"%s\"} 1073741824\n", F.a.name);
	assert_non_null(strstr(out, needle));
	assert_non_null(strstr(out, "# EOF\n"));

	/* The same over loopback HTTP. */
	{
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)metrics_port()),
					   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		size_t n = 0;
		ssize_t k;

		assert_true(fd >= 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
		assert_true(write(fd, "GET /metrics HTTP/1.0\r\n\r\n", 26) == 26);
		while ((k = read(fd, out + n, sizeof(out) - 1 - n)) > 0)
			n += (size_t)k;
		out[n] = '\0';
		close(fd);
		/* HTTP/1.1 to a 1.0 request: a server says its own version. */
		assert_int_equal(strncmp(out, "HTTP/1.1 200 OK\r\n", 17), 0);
		assert_non_null(strstr(out, "Content-Type: text/plain; version=0.0.4"));
		assert_non_null(strstr(out, needle));
		assert_non_null(strstr(out, "# EOF\n"));
	}
}

static void test_sigterm(void **state)
{
	int status;

	SKIP_IF(F.skip);
	hog_stop();
	assert_int_equal(kill(F.ovcd, SIGTERM), 0);
	assert_int_equal(waitpid(F.ovcd, &status, 0), F.ovcd);
	F.ovcd = 0;
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(notify_wait(&seen_stopping, 5000));
	assert_int_equal(access(F.d.sock, F_OK), -1); /* socket removed */
	print_message("[  INFO    ] floor invariant checked %u times\n", floor_checks);
}

/* ---- libvirt: ovcd --libvirt against a real libvirtd ---- */

static struct harness_libvirtd LVD;
static char lv_glob[64];
static const char *const lv_args[] = { "--libvirt", "qemu:///system", "--only", lv_glob, NULL };

static int start_ovcd(const char *const *args)
{
	char *argv[16];
	size_t n = 0;

	argv[n++] = "ovcd";
	argv[n++] = "-c";
	argv[n++] = F.d.conf;
	for (; *args && n < ARRAY_SIZE(argv) - 1; args++)
		argv[n++] = (char *)*args;
	argv[n] = NULL;
	seen_ready = seen_stopping = seen_reloading = 0;
	F.ovcd = ovcd_spawn(OVCD_BIN, argv, F.d.log, F.d.notify);
	return F.ovcd > 0 ? 0 : -1;
}

static int setup_libvirt(void **state)
{
	const char *why = NULL;
	struct harness_guest_opts go = { .mem_mib = 1024, .stats_period_sec = 1 };
	struct ovcd_meminfo mi;
	FILE *f;

	memset(&F, 0, sizeof(F));
	memset(&LVD, 0, sizeof(LVD));
	F.a.serial_fd = F.b.serial_fd = F.notify_fd = -1;
	if ((F.skip = harness_qemu_missing()))
		return 0;
	if (harness_image(&F.img, &why) < 0 || harness_libvirtd_start(&LVD, &why) < 0) {
		F.skip = why;
		return 0;
	}
	if (ovcd_fixture_dirs(&F.d, "ovcd-lv", 0755, 0) < 0)
		return -1;
	int r = harness_domain_start(&LVD, &F.img, &go, &F.a);
	if (r == -EOPNOTSUPP) {
		F.skip = HARNESS_NO_NAMESPACE_WHY;
		return 0;
	}
	if (r < 0 || harness_guest_wait_ready(&F.a, 180000) < 0)
		return -1;
	if (notify_start() < 0)
		return -1;
	/* Pressure from the config against the real MemAvailable: low is
	 * 1 GiB above it. */
	if (ovcd_meminfo_read(NULL, &mi) < 0)
		return -1;
	f = fopen(F.d.conf, "we");
	if (!f)
		return -1;
	fprintf(f, "[host]\ninterval = 1s\nlow = %luMiB\nhigh = %luMiB\npsi_trigger_stall = 0\n"
		   "[balloon]\nstep = 25%%\nfloor = 50%%\nstats_period = 1s\nstale_after = 5s\n"
		   "[ksm]\nenable = no\n[control]\nsocket = %s\n",
		(unsigned long)((mi.available_bytes + GIB) / MIB), (unsigned long)((mi.available_bytes + 2 * GIB) / MIB),
		F.d.sock);
	fclose(f);
	/* Only this test's domains: other domains on this libvirtd are not ours. */
	snprintf(lv_glob, sizeof(lv_glob), "ovc-test-%d-*", (int)getpid());
	return start_ovcd(lv_args);
}

static int teardown_libvirt(void **state)
{
	child_kill_wait(&F.ovcd, SIGKILL);
	harness_guest_stop(&F.a);
	harness_libvirtd_stop(&LVD);
	if (F.notify_fd >= 0)
		close(F.notify_fd);
	ovcd_fixture_rm(&F.d);
	return 0;
}

static uint64_t domain_kib(void)
{
	virDomainPtr d = virDomainLookupByName(LVD.conn, F.a.name);
	virDomainInfo info;
	uint64_t kib = 0;

	if (d && virDomainGetInfo(d, &info) == 0)
		kib = info.memory;
	if (d)
		virDomainFree(d);
	return kib;
}

static bool lv_inflated(void *arg)
{
	struct json_object *gs = ctl_json("guests");
	struct json_object *g = ovcd_guest_of(gs, F.a.name);
	bool ok = g && json_get_u64(g, "inflates") > 0;

	if (gs)
		check_floors(gs);
	json_object_put(gs);
	return ok;
}

static uint64_t lv_target_kib;

static bool lv_at_target(void *arg)
{
	uint64_t kib = domain_kib();

	if (arg) {
		/* ovcd's target now: it may still be moving. */
		struct json_object *gs = ctl_json("guests");

		lv_target_kib = json_get_u64(ovcd_guest_of(gs, F.a.name), "target_bytes") / KIB;
		json_object_put(gs);
	}
	return kib + 1024 >= lv_target_kib && kib <= lv_target_kib + 1024;
}

static void test_libvirt_inflates(void **state)
{
	struct json_object *gs, *g;
	struct harness_meminfo mi;
	uint64_t target;

	SKIP_IF(F.skip);
	/* Other work on this shared host may restart libvirtd just as ovcd
	 * connects; ovcd then exits 1 and systemd (Restart=on-failure) would
	 * start it again. So does the test, at most twice. */
	for (int attempt = 0; !notify_wait(&seen_ready, 60000) && attempt < 2; attempt++) {
		const char *why = NULL;
		int status;

		assert_int_equal(waitpid(F.ovcd, &status, WNOHANG), F.ovcd);
		assert_true(log_contains("cannot connect to libvirt"));
		print_message("[  INFO    ] ovcd could not reach libvirtd (restarted by other work?); "
			      "starting it again\n");
		msleep(2000);
		assert_ovc_ok(harness_libvirtd_start(&LVD, &why));
		assert_int_equal(start_ovcd(lv_args), 0);
	}
	assert_true(seen_ready);
	assert_true(harness_wait_until(lv_inflated, NULL, 90000));
	gs = ctl_json("guests");
	g = ovcd_guest_of(gs, F.a.name);
	assert_string_equal(json_object_get_string(json_get(g, "driver")), "libvirt");
	target = json_get_u64(g, "target_bytes");
	assert_true(target < GIB);
	assert_true(target >= GIB / 2);
	json_object_put(gs);
	/* libvirt's own view: the domain's current memory reaches the
	 * target (libvirt updates it from QEMU's throttled BALLOON_CHANGE);
	 * and the guest really lost the memory. */
	assert_true(harness_wait_until(lv_at_target, "ovcd's target", 60000));
	assert_ovc_ok(harness_guest_meminfo(&F.a, &mi));
	assert_true(mi.total_kib * KIB < GIB - 64 * MIB);
	assert_int_equal(mi.oom_kill, 0);
}

static bool lv_pinned(void *arg)
{
	lv_target_kib = GIB * 90 / 100 / KIB;
	return lv_at_target(arg);
}

static void test_libvirtd_restart_under_ovcd(void **state)
{
	char out[4096];
	struct json_object *st;

	SKIP_IF(F.skip);
	if (!LVD.started_libvirtd)
		skip_because("libvirtd was already running; not restarting a daemon the test did not start");
	{
		int r = harness_libvirtd_restart(&LVD);

		if (r == -EBUSY)
			skip_because("another test process uses this libvirtd; not restarting it under them");
		assert_ovc_ok(r);
	}
	/* ovcd carries on, reconnects, and acts through the new libvirtd. */
	assert_int_equal(sh(out, sizeof(out), "%s/ovcctl -s %s set %s target 90%% 2>&1", OVCD_BIN, F.d.sock,
			    F.a.name), 0);
	assert_true(harness_wait_until(lv_pinned, NULL, 60000));
	st = ctl_json("status");
	assert_non_null(st);
	json_object_put(st);
	assert_int_equal(waitpid(F.ovcd, NULL, WNOHANG), 0);
	assert_true(log_contains("libvirt"));
}

static void test_libvirt_sigterm(void **state)
{
	int status;

	SKIP_IF(F.skip);
	assert_int_equal(kill(F.ovcd, SIGTERM), 0);
	assert_int_equal(waitpid(F.ovcd, &status, 0), F.ovcd);
	F.ovcd = 0;
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- KSM: steered while running, put back at SIGTERM, untouched in a dry run ---- */

static struct ovcd_ksm_knobs KSM_SAVED;
static bool ksm_saved;
static const struct ovcd_ksm_knobs KSM_START = {
	.run = 0, .pages_to_scan = 100, .sleep_millisecs = 20, .use_zero_pages = 0,
};

static int setup_ksm(void **state)
{
	struct ovcd_ksm_knobs k;
	struct ovcd_meminfo mi;
	FILE *f;

	memset(&F, 0, sizeof(F));
	F.a.serial_fd = F.b.serial_fd = F.notify_fd = -1;
	if (ovcd_ksm_read_knobs(NULL, &k) < 0) {
		F.skip = "no KSM on this kernel (/sys/kernel/mm/ksm)";
		return 0;
	}
	if (k.advisor_scan_time) {
		F.skip = "KSM's advisor owns pages_to_scan on this host";
		return 0;
	}
	/* Whatever happens, the test puts the host's knobs back. */
	if (ovcd_ksm_save(NULL, &KSM_SAVED) < 0)
		return -1;
	ksm_saved = true;
	if (ovcd_ksm_apply(NULL, &KSM_START, NULL) < 0)
		return -1;
	if (ovcd_fixture_dirs(&F.d, "ovcd-ksm", 0755, 0) < 0)
		return -1;
	if (notify_start() < 0)
		return -1;
	/* Host pressure from the config (low 1 GiB above the real
	 * MemAvailable): the policy wants KSM on. */
	if (ovcd_meminfo_read(NULL, &mi) < 0)
		return -1;
	f = fopen(F.d.conf, "we");
	if (!f)
		return -1;
	fprintf(f, "[host]\ninterval = 500ms\nlow = %luMiB\nhigh = %luMiB\npsi_trigger_stall = 0\n"
		   "[ksm]\nenable = yes\nuse_zero_pages = yes\n[control]\nsocket = %s\n",
		(unsigned long)((mi.available_bytes + GIB) / MIB), (unsigned long)((mi.available_bytes + 2 * GIB) / MIB),
		F.d.sock);
	fclose(f);
	return 0;
}

static int teardown_ksm(void **state)
{
	child_kill_wait(&F.ovcd, SIGKILL);
	if (ksm_saved)
		(void)ovcd_ksm_restore(NULL, &KSM_SAVED);
	if (F.notify_fd >= 0)
		close(F.notify_fd);
	ovcd_fixture_rm(&F.d);
	return 0;
}

static void assert_knobs_are_start(void)
{
	struct ovcd_ksm_knobs k;

	assert_ovc_ok(ovcd_ksm_read_knobs(NULL, &k));
	assert_int_equal(k.run, KSM_START.run);
	assert_int_equal(k.pages_to_scan, KSM_START.pages_to_scan);
	assert_int_equal(k.sleep_millisecs, KSM_START.sleep_millisecs);
	if (k.use_zero_pages >= 0)
		assert_int_equal(k.use_zero_pages, KSM_START.use_zero_pages);
}

static void stop_ovcd(void)
{
	int status;

	assert_int_equal(kill(F.ovcd, SIGTERM), 0);
	assert_int_equal(waitpid(F.ovcd, &status, 0), F.ovcd);
	F.ovcd = 0;
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_ksm_dry_run_changes_nothing(void **state)
{
	const char *args[] = { "--dry-run", "--no-libvirt", NULL };
	struct json_object *st;

	SKIP_IF(F.skip);
	assert_int_equal(start_ovcd(args), 0);
	assert_true(notify_wait(&seen_ready, 30000));
	msleep(2000);
	assert_knobs_are_start();
	assert_true(log_contains("would set KSM run=1"));
	st = ctl_json("status");
	assert_true(json_object_get_boolean(json_get(st, "dry_run")));
	json_object_put(st);
	stop_ovcd();
	assert_knobs_are_start();
}

static bool ksm_running(void *arg)
{
	struct ovcd_ksm_knobs k;

	return ovcd_ksm_read_knobs(NULL, &k) == 0 && k.run == 1;
}

static void test_ksm_steered_and_restored(void **state)
{
	const char *args[] = { "--no-libvirt", NULL };
	struct ovcd_ksm_knobs k;

	SKIP_IF(F.skip);
	assert_int_equal(start_ovcd(args), 0);
	assert_true(notify_wait(&seen_ready, 30000));
	assert_true(harness_wait_until(ksm_running, NULL, 10000));
	assert_ovc_ok(ovcd_ksm_read_knobs(NULL, &k));
	if (k.use_zero_pages >= 0)
		assert_int_equal(k.use_zero_pages, 1);
	assert_true(k.pages_to_scan >= 64 && k.pages_to_scan <= 1250);
	stop_ovcd();
	assert_true(log_contains("KSM settings restored"));
	assert_knobs_are_start();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ready_and_status),
		cmocka_unit_test(test_squeeze_inflates_within_a_tick),
		cmocka_unit_test(test_emergency_deflate_no_oom),
		cmocka_unit_test(test_sighup_bad_then_good),
		cmocka_unit_test(test_ovcctl_permissions),
		cmocka_unit_test(test_fake_guest_never_below_floor),
		cmocka_unit_test(test_metrics_textfile),
		cmocka_unit_test(test_sigterm),
	};

	const struct CMUnitTest ksm_tests[] = {
		cmocka_unit_test(test_ksm_dry_run_changes_nothing),
		cmocka_unit_test(test_ksm_steered_and_restored),
	};
	const struct CMUnitTest libvirt_tests[] = {
		cmocka_unit_test(test_libvirt_inflates),
		cmocka_unit_test(test_libvirtd_restart_under_ovcd),
		cmocka_unit_test(test_libvirt_sigterm),
	};
	/* ovcctl and ovcd may go away under a pipe; say so, do not die. */
	signal(SIGPIPE, SIG_IGN);
	/* OVCD_TEST_GROUP=qmp|ksm|libvirt runs one group (for development). */
	const char *only = getenv("OVCD_TEST_GROUP");
	int failed = 0;

	if (!only || strcmp(only, "qmp") == 0)
		failed += cmocka_run_group_tests_name("ovcd-qmp", tests, setup, teardown);
	if (!only || strcmp(only, "ksm") == 0)
		failed += cmocka_run_group_tests_name("ovcd-ksm", ksm_tests, setup_ksm, teardown_ksm);
	if (only && strcmp(only, "libvirt") != 0)
		return failed;

	return failed + cmocka_run_group_tests_name("ovcd-libvirt", libvirt_tests, setup_libvirt,
						     teardown_libvirt);
}
