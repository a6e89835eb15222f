/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the real ovcd binary against hostile peers, while it manages
 * a real QEMU guest (TCG, the image of scripts/build-guest-image, through
 * the QMP driver) and a real engine published by this process (libovc,
 * real userfaultfd).
 *
 * Each test mounts one attack a local user, a rogue VMM or a compromised
 * QEMU could: three silent engine sockets; a publisher whose listen queue
 * is full and never accepts; a QMP monitor that stops answering
 * query-balloon; an impostor monitor answering query-name with the real
 * guest's name; an engine claiming a 64 TiB maximum; a symlink in the
 * engine directory; an engine squatting the real guest's name. The peers
 * are fakes and say so: sockets this process makes, and children speaking
 * QMP or the engine protocol — that is what an attacker would run.
 *
 * During each attack the test shows, with the real guest running short
 * (it allocates until ovcd's stats show it short): ovcd's ticks keep coming
 * (the largest gap between ticks, as a status reply counts them, within one
 * interval of the interval), its control socket answers a status request in
 * under 100 ms every time (a connection of this process, sampled every
 * 100 ms by a thread), and the guest's emergency deflate comes at most one
 * tick after ovcd's figures first showed it short. The impostor and the
 * squatter are refused with a warning and never steer the real guest. The
 * figures are printed (FIGURE lines) for the report; OVCD_PEERS_BIN runs
 * the same attacks against another build's ovcd for comparison.
 *
 * The tests share one daemon (a cmocka group) and run in order; the one
 * that fills a listen queue comes last, since an ovcd that blocks in it
 * answers nothing more. A second group runs a daemon of its own on a host
 * made short by a memory cgroup, beside a QMP guest that accepts every
 * balloon target and never moves (a fake) and one that obeys (a fake too):
 * the stuck one is marked non-compliant and the other inflated instead.
 * OVC_TEST_FILTER runs only the tests it names.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ovc/ovc.h>

#include "json-get.h"
#include "guest-harness.h"
#include "host/host.h"
#include "ovcd-test.h"
#include "peer-fakes.h"
#include "ovc-test.h"
#include "common/util.h"

#ifndef OVCD_BIN
#error OVCD_BIN must be defined by the build
#endif

#define INTERVAL_MS 1000
/* What a control reply may take during an attack. */
#define REPLY_MAX_USEC (100 * 1000)
#define GUEST_MIB 1024
#define SQUEEZED_MIB 512

struct fixture {
	const char *skip;
	struct harness_image img;
	struct ovcd_fixture d;
	struct harness_guest g;
	pid_t ovcd;
	const char *bin;
	ovc_engine *engine;
	void *engine_ram;
	struct fake_peer_record *shared;
	pid_t kids[8];
	int fds[8];
	size_t n_kids, n_fds;
	char files[8][256];
	size_t n_files;
};

static struct fixture F;

/* ---- the status sampler: ticks and reply times, all the time ---- */

struct sampler {
	pthread_mutex_t lock;
	bool stop;
	uint64_t max_reply_usec, replies, failures;
	uint64_t last_ticks, last_tick_change_usec, max_tick_gap_usec;
};

static struct sampler S = { .lock = PTHREAD_MUTEX_INITIALIZER };
static pthread_t sampler_thread;

/* One request on a fresh connection to ovcd's control socket, one reply
 * line back (parsed), in at most 5 s; its round trip in *ret_usec. */
static struct json_object *ctl(const char *command, uint64_t *ret_usec)
{
	return ovcd_ctl(F.d.sock, command, 5000, 0, ret_usec);
}

static void *sampler_main(void *arg)
{
	for (;;) {
		uint64_t usec = 0, now;
		struct json_object *st = ctl("status", &usec);
		uint64_t ticks = st ? json_get_u64(st, "ticks") : 0;
		struct timespec ts = { 0, 100 * 1000 * 1000 };

		json_object_put(st);
		now = now_usec(CLOCK_MONOTONIC);
		pthread_mutex_lock(&S.lock);
		if (S.stop) {
			pthread_mutex_unlock(&S.lock);
			return NULL;
		}
		if (st) {
			S.replies++;
			S.max_reply_usec = MAX(S.max_reply_usec, usec);
			if (ticks != S.last_ticks) {
				if (S.last_tick_change_usec)
					S.max_tick_gap_usec = MAX(S.max_tick_gap_usec, now - S.last_tick_change_usec);
				S.last_ticks = ticks;
				S.last_tick_change_usec = now;
			}
		} else {
			S.failures++;
		}
		/* A tick overdue counts too, not only one that came late. */
		if (S.last_tick_change_usec)
			S.max_tick_gap_usec = MAX(S.max_tick_gap_usec, now - S.last_tick_change_usec);
		pthread_mutex_unlock(&S.lock);
		nanosleep(&ts, NULL);
	}
}

static void sampler_reset(void)
{
	pthread_mutex_lock(&S.lock);
	S.max_reply_usec = S.replies = S.failures = 0;
	S.max_tick_gap_usec = 0;
	S.last_tick_change_usec = 0;
	pthread_mutex_unlock(&S.lock);
}

/* ---- ovcd's guests, as it reports them ---- */

static bool listed(const char *name)
{
	struct json_object *gs = ctl("guests", NULL);
	bool yes = ovcd_guest_of(gs, name) != NULL;

	json_object_put(gs);
	return yes;
}

static bool listed_arg(void *name)
{
	return listed(name);
}

static bool real_guest_listed(void *arg)
{
	return listed(F.g.name);
}

static bool engine_listed(void *arg)
{
	return listed("real-engine");
}

static bool log_has(const char *needle)
{
	return file_has(F.d.log, needle);
}

static bool log_has_arg(void *needle)
{
	return log_has(needle);
}

static int ovcctl(const char *fmt, ...) _printf_(1, 2);
static int ovcctl(const char *fmt, ...)
{
	char args[512], cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "%s/ovcctl -s %s %s >/dev/null 2>&1", F.bin, F.d.sock, args);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint64_t guest_u64(const char *name, const char *field)
{
	struct json_object *gs = ctl("guests", NULL);
	uint64_t v = gs && ovcd_guest_of(gs, name) ? json_get_u64(ovcd_guest_of(gs, name), field) : OVC_UNKNOWN;

	json_object_put(gs);
	return v;
}

/* ovcd moved the pinned target and the guest got there. */
static bool squeezed(void *arg)
{
	uint64_t cur = guest_u64(F.g.name, "current_bytes");

	return guest_u64(F.g.name, "target_bytes") == SQUEEZED_MIB * MIB && ovcd_known(cur) &&
	       cur <= (SQUEEZED_MIB + 8) * MIB;
}

/* The guest has room again after the last attack's allocation was freed
 * (as ovcd's figures show it), so that no emergency of that one is left. */
static bool recovered(void *arg)
{
	uint64_t avail = guest_u64(F.g.name, "available_bytes"), cur = guest_u64(F.g.name, "current_bytes");

	return ovcd_known(avail) && ovcd_known(cur) && avail > cur / 2;
}

/* ---- fake peers ---- */

static void remember_kid(pid_t pid)
{
	assert_true(pid > 0 && F.n_kids < ARRAY_SIZE(F.kids));
	F.kids[F.n_kids++] = pid;
}

static void remember_file(const char *path)
{
	assert_true(F.n_files < ARRAY_SIZE(F.files));
	snprintf(F.files[F.n_files++], sizeof(F.files[0]), "%s", path);
}

/* fake_listen_at(), removed when the attack stops. */
static int listen_at(const char *path, int backlog)
{
	int fd = fake_listen_at(path, backlog);

	if (fd >= 0)
		remember_file(path);
	return fd;
}

/* A process speaking QMP like QEMU 7.2 on @fd (listening), in @mode, with
 * a guest of @max bytes whose balloon is at its maximum; records what it
 * is asked in @sh (reset here). */
static void fake_qmp_of(const char *file, enum fake_qmp_mode mode, const char *name, uint64_t max,
			struct fake_peer_record *sh)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", F.d.qmp_dir, file);
	fd = listen_at(path, 4);
	assert_true(fd >= 0);
	remember_kid(fake_qmp_start(fd, mode, name, max, sh, NULL));
}

/* The same with a 1 GiB guest, recorded in F.shared. */
static void fake_qmp(const char *file, enum fake_qmp_mode mode, const char *name)
{
	fake_qmp_of(file, mode, name, GIB, F.shared);
}

/* A process answering every engine-protocol line with @reply. */
static void fake_engine(const char *path, const char *reply)
{
	int fd = listen_at(path, 4);

	assert_true(fd >= 0);
	remember_kid(fake_engine_start(fd, reply));
}

/* End the attack: its processes, sockets and files go. */
static void attack_stop(void)
{
	for (size_t i = 0; i < F.n_kids; i++) {
		kill(F.kids[i], SIGKILL);
		waitpid(F.kids[i], NULL, 0);
	}
	for (size_t i = 0; i < F.n_fds; i++)
		close(F.fds[i]);
	for (size_t i = 0; i < F.n_files; i++)
		unlink(F.files[i]);
	F.n_kids = F.n_fds = F.n_files = 0;
}

/* ---- what every attack must not stop ---- */

struct outcome {
	uint64_t low_tick, emergency_tick, max_gap_usec, max_reply_usec, replies, failures;
	uint64_t oom_before, oom_after, held;
};

/*
 * The real guest, squeezed to SQUEEZED_MIB before the attack, allocates
 * 8 MiB every 300 ms (as an application grows) until ovcd deflates it in
 * an emergency, then frees it all. Returns what was seen.
 */
static void guest_runs_short(const char *attack, struct outcome *o)
{
	struct harness_meminfo before, mi;
	uint64_t emerg0, t0 = now_usec(CLOCK_MONOTONIC) / 1000;
	char reply[256];

	memset(o, 0, sizeof(*o));
	assert_ovc_ok(harness_guest_meminfo(&F.g, &before));
	emerg0 = guest_u64(F.g.name, "emergencies");
	sampler_reset();
	while (!o->emergency_tick && now_usec(CLOCK_MONOTONIC) / 1000 - t0 < 120000) {
		struct json_object *gs, *g;
		unsigned long long h;

		assert_ovc_ok(harness_guest_cmd(&F.g, "alloc 8M", reply, sizeof(reply), 60000));
		if (sscanf(reply, "ok held=%llu", &h) == 1)
			o->held = h;
		gs = ctl("guests", NULL);
		g = gs ? ovcd_guest_of(gs, F.g.name) : NULL;
		/* The tick whose figures first showed the guest short, as
		 * ovcd reports them, and the emergency's tick. */
		if (g && !o->low_tick && ovcd_known(json_get_u64(g, "available_bytes")) &&
		    json_get_u64(g, "available_bytes") < json_get_u64(g, "current_bytes") / 5)
			o->low_tick = json_get_u64(gs, "ticks");
		if (g && json_get_u64(g, "emergencies") > emerg0) {
			o->emergency_tick = json_get_u64(g, "last_action_tick");
			if (!o->low_tick)
				o->low_tick = o->emergency_tick;
		}
		json_object_put(gs);
		usleep(300 * 1000);
	}
	assert_ovc_ok(harness_guest_meminfo(&F.g, &mi));
	o->oom_before = before.oom_kill;
	o->oom_after = mi.oom_kill;
	(void)harness_guest_cmd(&F.g, "free", reply, sizeof(reply), 60000);
	pthread_mutex_lock(&S.lock);
	o->max_gap_usec = S.max_tick_gap_usec;
	o->max_reply_usec = S.max_reply_usec;
	o->replies = S.replies;
	o->failures = S.failures;
	pthread_mutex_unlock(&S.lock);
	print_message("[  FIGURE  ] %s: largest tick gap %" PRIu64 " ms (interval %d ms), slowest of %" PRIu64
		      " status replies %" PRIu64 " us, %" PRIu64 " without reply; guest short at tick %" PRIu64
		      ", emergency deflate at tick %" PRIu64 "; held %" PRIu64 " MiB; oom_kill %" PRIu64
		      " -> %" PRIu64 "\n",
		      attack, o->max_gap_usec / 1000, INTERVAL_MS, o->replies, o->max_reply_usec, o->failures,
		      o->low_tick, o->emergency_tick, o->held / MIB, o->oom_before, o->oom_after);
}

static void check_outcome(const struct outcome *o)
{
	assert_true(o->replies > 0);
	assert_int_equal(o->failures, 0);
	assert_true(o->max_reply_usec < REPLY_MAX_USEC);
	/* Ticks on time: no gap longer than the interval plus one interval. */
	assert_true(o->max_gap_usec <= 2 * INTERVAL_MS * 1000ull);
	assert_true(o->emergency_tick > 0);
	assert_true(o->emergency_tick <= o->low_tick + 1);
	assert_int_equal(o->oom_after, o->oom_before);
}

/* Squeeze the real guest (an operator's pin, then released: between the
 * watermarks balloons stay where they are) so that it can run short. */
static void squeeze_guest(void)
{
	assert_true(harness_wait_until(recovered, NULL, 60000));
	assert_int_equal(ovcctl("set %s target %dMiB", F.g.name, SQUEEZED_MIB), 0);
	assert_true(harness_wait_until(squeezed, NULL, 120000));
	assert_int_equal(ovcctl("set %s target none", F.g.name), 0);
}

/* ---- setup / teardown ---- */

static void write_config(void)
{
	FILE *f = fopen(F.d.conf, "we");

	assert_non_null(f);
	/* Between the watermarks all the time (256 MiB and 1 TiB): no
	 * balloon moves but the operator's and the emergencies. */
	fprintf(f,
		"[host]\ninterval = %dms\nlow = 256MiB\nhigh = 1TiB\n"
		"psi_some = 100%%\npsi_full = 100%%\npsi_trigger_stall = 0\n"
		"[balloon]\nfloor = 40%%\nstats_period = 1s\nstale_after = 5s\n"
		"emergency_available = 20%%\nemergency_step = 25%%\n"
		"[ksm]\nenable = no\n"
		"[engine]\ndir = %s\n"
		"[control]\nsocket = %s\n",
		INTERVAL_MS, F.d.engines, F.d.sock);
	fclose(f);
}

/* F's directory /tmp/ovc-test-PID-@what with its QMP and engine dirs. */
static int fixture_dirs(const char *what)
{
	return ovcd_fixture_dirs(&F.d, what, 0755, OVCD_FIXTURE_QMP | OVCD_FIXTURE_ENGINES);
}

/* ovcd on F's config and QMP dir, its log in F.d.log; told about the
 * guests' memory @cgroup unless NULL. */
static void ovcd_start(const char *cgroup)
{
	char *argv[] = { "ovcd", "-c", F.d.conf, "--no-libvirt", "--qmp-dir", F.d.qmp_dir, "--memory-cgroup",
			 (char *)cgroup, NULL };

	if (!cgroup)
		argv[6] = NULL;
	F.ovcd = ovcd_spawn(F.bin, argv, F.d.log, NULL);
}

static int setup(void **state)
{
	struct harness_guest_opts go = { .mem_mib = GUEST_MIB };
	struct ovc_publish_opts po = { .size = sizeof(po), .name = "real-engine" };
	const char *why = NULL;

	memset(&F, 0, sizeof(F));
	F.g.serial_fd = -1;
	*state = &F;
	F.bin = getenv("OVCD_PEERS_BIN") ? getenv("OVCD_PEERS_BIN") : OVCD_BIN;
	if ((F.skip = harness_qemu_missing()))
		return 0;
	if (harness_image(&F.img, &why) < 0) {
		F.skip = why;
		return 0;
	}
	harness_cleanup_leftovers(NULL);
	if (fixture_dirs("peers") < 0)
		return -1;
	F.shared = mmap(NULL, sizeof(*F.shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (F.shared == MAP_FAILED)
		return -1;

	go.qmp_dir = F.d.qmp_dir;
	if (harness_qemu_start(&F.img, &go, &F.g) < 0 || harness_guest_wait_ready(&F.g, 180000) < 0)
		return -1;

	/* A real engine of this process, over real memory. */
	F.engine_ram = mmap(NULL, 16 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (F.engine_ram == MAP_FAILED ||
	    ovc_engine_new(&(struct ovc_engine_opts){ .size = sizeof(struct ovc_engine_opts) }, &F.engine) < 0 ||
	    ovc_region_add(F.engine, F.engine_ram, 16 * MIB, 0, 0) < 0)
		return -1;
	po.dir = F.d.engines;
	if (ovc_engine_publish(F.engine, &po) < 0)
		return -1;

	write_config();
	ovcd_start(NULL);
	if (!harness_wait_until(real_guest_listed, NULL, 60000) || !harness_wait_until(engine_listed, NULL, 30000))
		return -1;
	return pthread_create(&sampler_thread, NULL, sampler_main, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
	pthread_mutex_lock(&S.lock);
	S.stop = true;
	pthread_mutex_unlock(&S.lock);
	if (sampler_thread)
		pthread_join(sampler_thread, NULL);
	sampler_thread = 0;
	attack_stop();
	child_kill_wait(&F.ovcd, SIGKILL);
	ovc_engine_free(F.engine);
	harness_guest_stop(&F.g);
	ovcd_fixture_rm(&F.d);
	return 0;
}

/* ---- the attacks ---- */

/* Three engine sockets that take connections and never answer. */
static void test_three_silent_engine_sockets(void **state)
{
	struct outcome o;

	SKIP_IF(F.skip);
	squeeze_guest();
	for (int i = 0; i < 3; i++) {
		char path[256];

		snprintf(path, sizeof(path), "%s/silent%d.sock", F.d.engines, i);
		F.fds[F.n_fds] = listen_at(path, 16);
		assert_true(F.fds[F.n_fds++] >= 0);
	}
	guest_runs_short("3 silent engine sockets", &o);
	assert_false(listed("silent0"));
	attack_stop();
	check_outcome(&o);
}

/* A monitor that answers set-up and one query-balloon, then nothing, like
 * a QEMU stuck on NFS. */
static void test_qmp_monitor_stops_answering(void **state)
{
	struct outcome o;

	SKIP_IF(F.skip);
	squeeze_guest();
	fake_qmp("mute.qmp", QMP_MUTE_BALLOON, "mute");
	assert_true(harness_wait_until(listed_arg, "mute", 30000));
	guest_runs_short("a QMP monitor that stops answering query-balloon", &o);
	attack_stop();
	check_outcome(&o);
}

/* A second monitor that says it is the real guest. */
static void test_impostor_monitor(void **state)
{
	char warning[512];
	struct outcome o;

	SKIP_IF(F.skip);
	squeeze_guest();
	fake_qmp("impostor.qmp", QMP_IMPOSTOR, F.g.name);
	snprintf(warning, sizeof(warning), "warning: QMP socket %s/impostor.qmp (pid ", F.d.qmp_dir);
	assert_true(harness_wait_until(log_has_arg, warning, 30000));
	snprintf(warning, sizeof(warning), "refused as guest '%s': ", F.g.name);
	assert_true(log_has(warning));
	guest_runs_short("an impostor QMP socket with the neighbour's name", &o);
	/* The real guest is still the real one, and the impostor was never
	 * asked to move a balloon. */
	assert_int_equal(guest_u64(F.g.name, "max_bytes"), GUEST_MIB * MIB);
	assert_int_equal(atomic_load(&F.shared->targets), 0);
	attack_stop();
	check_outcome(&o);
}

/* An engine that claims a 64 TiB guest. */
static void test_engine_claims_64tib(void **state)
{
	char path[256];
	struct outcome o;
	struct json_object *st;
	uint64_t max;

	SKIP_IF(F.skip);
	squeeze_guest();
	snprintf(path, sizeof(path), "%s/big.sock", F.d.engines);
	fake_engine(path, "OVC1 ok name=big pid=1 max_bytes=70368744177664 region_bytes=70368744177664 "
			  "zero_bytes=0 swap_bytes=0 target_bytes=0 saved_bytes=0 pages_swapped_in=0 refaults=0\n");
	assert_true(harness_wait_until(listed_arg, "big", 30000));
	max = guest_u64("big", "max_bytes");
	st = ctl("status", NULL);
	print_message("[  FIGURE  ] 64 TiB claim: counted as %" PRIu64 " MiB; provisioned ratio %s\n", max / MIB,
		      st ? json_object_to_json_string(json_get(st, "provisioned_ratio")) : "?");
	/* At most the listener's address space: this process's. */
	{
		unsigned long long pages = 0;
		FILE *f = fopen("/proc/self/statm", "re");

		assert_non_null(f);
		assert_int_equal(fscanf(f, "%llu", &pages), 1);
		fclose(f);
		assert_true(max <= pages * OVC_PAGE_SIZE);
		assert_true(max < UINT64_C(70368744177664));
	}
	assert_true(log_has("warning: engine 'big' (pid "));
	json_object_put(st);
	guest_runs_short("an engine claiming a 64 TiB maximum", &o);
	attack_stop();
	check_outcome(&o);
}

/* A symlink in the engine directory to a socket elsewhere that answers
 * like an engine: root's ovcd must not connect through it. */
static void test_symlink_in_engine_dir(void **state)
{
	char target[256], link[256], warning[512];
	struct outcome o;

	SKIP_IF(F.skip);
	squeeze_guest();
	snprintf(target, sizeof(target), "%s/elsewhere.sock", F.d.dir);
	fake_engine(target, "OVC1 ok name=elsewhere max_bytes=1048576 zero_bytes=0 swap_bytes=0 "
			    "target_bytes=0\n");
	snprintf(link, sizeof(link), "%s/evil.sock", F.d.engines);
	assert_int_equal(symlink(target, link), 0);
	remember_file(link);
	snprintf(warning, sizeof(warning), "warning: engine socket %s refused: a symlink is never followed", link);
	assert_true(harness_wait_until(log_has_arg, warning, 30000));
	guest_runs_short("a symlink in the engine dir", &o);
	assert_false(listed("evil"));
	attack_stop();
	check_outcome(&o);
}

/* An engine of another process named like the real guest. */
static void test_engine_squats_guest_name(void **state)
{
	char path[256], reply[512], warning[512];
	struct outcome o;

	SKIP_IF(F.skip);
	squeeze_guest();
	snprintf(path, sizeof(path), "%s/%s.sock", F.d.engines, F.g.name);
	snprintf(reply, sizeof(reply),
		 "OVC1 ok name=%s max_bytes=1073741824 zero_bytes=0 swap_bytes=0 target_bytes=0\n", F.g.name);
	fake_engine(path, reply);
	/* The listener is this process (it listens, its child answers). */
	snprintf(warning, sizeof(warning), "warning: engine '%s' (pid %d) refused: the qmp guest of that name",
		 F.g.name, (int)getpid());
	assert_true(harness_wait_until(log_has_arg, warning, 30000));
	guest_runs_short("an engine squatting the guest's name", &o);
	{
		struct json_object *gs = ctl("guests", NULL);

		assert_string_equal(json_object_get_string(json_get(ovcd_guest_of(gs, F.g.name), "driver")), "qmp");
		json_object_put(gs);
	}
	attack_stop();
	check_outcome(&o);
}

/* A publisher whose listen queue is full and that never accepts. */
static void test_full_listen_queue(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[256], path[256];
	struct outcome o;
	int fd, c;

	SKIP_IF(F.skip);
	squeeze_guest();
	/* Listening with a queue of 0, filled by one connection of ours
	 * before it appears under its name: the next connect to it cannot
	 * complete, and a blocking one would never return. */
	snprintf(tmp, sizeof(tmp), "%s/.stuck.tmp", F.d.engines);
	snprintf(path, sizeof(path), "%s/stuck.sock", F.d.engines);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s", tmp);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 0), 0);
	F.fds[F.n_fds++] = fd;
	c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	assert_true(c >= 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	F.fds[F.n_fds++] = c;
	assert_int_equal(rename(tmp, path), 0);
	remember_file(path);
	guest_runs_short("a publisher with listen(fd, 0) that never accepts", &o);
	assert_false(listed("stuck"));
	attack_stop();
	check_outcome(&o);
}

/* ---- a guest that never inflates, on a host that is short ----
 *
 * A daemon of its own: the host made short for it honestly, with a memory
 * cgroup (v1 or v2) of NC_LIMIT that a process of this test fills with
 * NC_HOG of touched anonymous memory, and ovcd told so with
 * --memory-cgroup; the watermarks put the host's need at about 100 MiB.
 * Two QMP guests with statistics, both fakes (processes of this test, said
 * here): "stuck", 4 GiB, much spare, accepts every balloon target and
 * never moves; "obeys", 1 GiB, whose balloon reaches every target at once.
 * The stuck one has the most spare, so it is asked first; what it owes
 * covers the need, so the other is left alone until pending_timeout (the
 * default, 30 s) has passed. Then ovcd must mark it non-compliant (warning,
 * ovcctl, JSON) and inflate the other instead, never asking the stuck one
 * for more, with its ticks on time.
 */

#define NC_LIMIT (1024 * MIB)
#define NC_HOG (640 * MIB)

static char nc_cgroup[256];
static pid_t nc_hog;

/* The cgroup with its limit; NULL, or why not. */
static const char *nc_cgroup_create(void)
{
	char path[300];
	bool v1 = access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0;
	FILE *f;

	if (!v1 && access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0)
		return "no memory cgroup controller mounted under /sys/fs/cgroup";
	snprintf(nc_cgroup, sizeof(nc_cgroup), "/sys/fs/cgroup/%sovc-test-%d-nc", v1 ? "memory/" : "",
		 (int)getpid());
	if (mkdir(nc_cgroup, 0755) < 0) {
		nc_cgroup[0] = '\0';
		return "cannot create a memory cgroup (not root, or memory not delegated?)";
	}
	snprintf(path, sizeof(path), "%s/%s", nc_cgroup, v1 ? "memory.limit_in_bytes" : "memory.max");
	f = fopen(path, "we");
	if (!f || fprintf(f, "%llu\n", (unsigned long long)NC_LIMIT) < 0 || fclose(f) != 0)
		return "cannot set the cgroup's memory limit";
	return NULL;
}

/* A process in the cgroup holding NC_HOG of touched memory until killed. */
static int nc_hog_start(void)
{
	int p[2];
	char c;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	nc_hog = fork();
	if (nc_hog == 0) {
		char path[300];
		FILE *f;
		char *mem;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		snprintf(path, sizeof(path), "%s/cgroup.procs", nc_cgroup);
		f = fopen(path, "we");
		if (!f || fprintf(f, "0\n") < 0 || fclose(f) != 0)
			_exit(1);
		mem = mmap(NULL, NC_HOG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			_exit(1);
		memset(mem, 0x5a, NC_HOG);
		(void)!write(p[1], "r", 1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (nc_hog < 0 || read(p[0], &c, 1) != 1) {
		close(p[0]);
		return -1;
	}
	close(p[0]);
	return 0;
}

static bool both_listed(void *arg)
{
	return listed("stuck") && listed("obeys");
}

static int nc_setup(void **state)
{
	FILE *f;

	memset(&F, 0, sizeof(F));
	F.g.serial_fd = -1;
	*state = &F;
	F.bin = getenv("OVCD_PEERS_BIN") ? getenv("OVCD_PEERS_BIN") : OVCD_BIN;
	if ((F.skip = nc_cgroup_create()))
		return 0;
	if (fixture_dirs("nc") < 0)
		return -1;
	F.shared = mmap(NULL, 2 * sizeof(*F.shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (F.shared == MAP_FAILED || nc_hog_start() < 0)
		return -1;
	fake_qmp_of("stuck.qmp", QMP_STUCK_BALLOON, "stuck", 4 * GIB, &F.shared[0]);
	fake_qmp_of("obeys.qmp", QMP_OBEY_BALLOON, "obeys", GIB, &F.shared[1]);

	/* The host is the cgroup: 1 GiB, 640 MiB of it held, so MemAvailable
	 * about 380 MiB, under low; high 480 MiB: a need of about 100 MiB,
	 * below one step of the stuck guest (5% of 4 GiB). PSI is the whole
	 * machine's (shared): off. pending_timeout keeps its default. */
	f = fopen(F.d.conf, "we");
	if (!f)
		return -1;
	fprintf(f,
		"[host]\ninterval = %dms\nreserve = 128MiB\nlow = 448MiB\nhigh = 480MiB\n"
		"psi_some = 100%%\npsi_full = 100%%\npsi_trigger_stall = 0\n"
		"[balloon]\nstats_period = 1s\nstale_after = 5s\n"
		"[ksm]\nenable = no\n"
		"[engine]\ndir = %s\n"
		"[control]\nsocket = %s\n",
		INTERVAL_MS, F.d.engines, F.d.sock);
	fclose(f);
	ovcd_start(nc_cgroup);
	if (!harness_wait_until(both_listed, NULL, 30000))
		return -1;
	pthread_mutex_lock(&S.lock);
	S.stop = false;
	pthread_mutex_unlock(&S.lock);
	sampler_reset();
	return pthread_create(&sampler_thread, NULL, sampler_main, NULL) == 0 ? 0 : -1;
}

static int nc_teardown(void **state)
{
	if (nc_hog > 0) {
		kill(nc_hog, SIGKILL);
		waitpid(nc_hog, NULL, 0);
	}
	teardown(state);
	if (nc_cgroup[0] && rmdir(nc_cgroup) < 0)
		print_message("cannot remove %s: %s\n", nc_cgroup, strerror(errno));
	return 0;
}

/* The other guest's target in the last reply before the mark. */
static uint64_t nc_obeys_before;

static bool stuck_marked(void *arg)
{
	struct json_object *gs = ctl("guests", NULL);
	struct json_object *g = ovcd_guest_of(gs, "stuck"), *o = ovcd_guest_of(gs, "obeys");
	bool yes = g && json_object_get_boolean(json_get(g, "noncompliant"));

	if (!yes && o)
		nc_obeys_before = json_get_u64(o, "target_bytes");
	json_object_put(gs);
	return yes;
}

static bool obeys_below(void *arg)
{
	uint64_t t = guest_u64("obeys", "target_bytes");

	return ovcd_known(t) && t < *(const uint64_t *)arg;
}

/* What `ovcctl guests` prints, in @buf. */
static void ovcctl_guests_text(char *buf, size_t size)
{
	char cmd[512];
	FILE *p;
	size_t n;

	snprintf(cmd, sizeof(cmd), "%s/ovcctl -s %s guests", F.bin, F.d.sock);
	p = popen(cmd, "re");
	assert_non_null(p);
	n = fread(buf, 1, size - 1, p);
	buf[n] = '\0';
	pclose(p);
}

static void test_noncompliant_guest(void **state)
{
	uint64_t t0 = now_usec(CLOCK_MONOTONIC), stuck_target, obeys_target, marked_usec, first_ticks, mark_ticks;
	struct json_object *st;
	char text[8192], *line;

	SKIP_IF(F.skip);
	st = ctl("status", NULL);
	assert_non_null(st);
	first_ticks = json_get_u64(st, "ticks");
	json_object_put(st);
	/* Marked within the timeout and a few ticks (the first ask comes at
	 * a tick once both are listed with statistics). */
	assert_true(harness_wait_until(stuck_marked, NULL, 90000));
	marked_usec = now_usec(CLOCK_MONOTONIC);
	st = ctl("status", NULL);
	assert_non_null(st);
	mark_ticks = json_get_u64(st, "ticks");
	/* The host was short for ovcd (the cgroup), as it says. */
	assert_string_equal(json_object_get_string(json_get(st, "level")), "pressure");
	json_object_put(st);
	stuck_target = guest_u64("stuck", "target_bytes");
	obeys_target = guest_u64("obeys", "target_bytes");
	/* The stuck guest was asked, accepted, and never moved. */
	assert_true(atomic_load(&F.shared[0].targets) > 0);
	assert_int_equal(atomic_load(&F.shared[0].last_target), stuck_target);
	assert_true(stuck_target < 4 * GIB);
	assert_int_equal(guest_u64("stuck", "current_bytes"), 4 * GIB);
	/* While its debt counted, the other was not asked. */
	assert_int_equal(nc_obeys_before, GIB);
	/* Named: one warning saying what it ignores, ovcctl's mark. */
	assert_true(harness_wait_until(log_has_arg, "warning: guest 'stuck' is non-compliant: its balloon has not "
						    "moved toward its target", 5000));
	ovcctl_guests_text(text, sizeof(text));
	print_message("%s", text);
	line = strstr(text, "\nstuck ");
	assert_non_null(line);
	line = strtok(line + 1, "\n");
	assert_non_null(strstr(line, "[NON-COMPLIANT: ignores its target]"));
	ovcctl_guests_text(text, sizeof(text));
	line = strstr(text, "\nobeys ");
	assert_non_null(line);
	line = strtok(line + 1, "\n");
	assert_null(strstr(line, "NON-COMPLIANT"));

	/* The others are inflated instead; the stuck one is asked no more. */
	assert_true(harness_wait_until(obeys_below, &obeys_target, 15000));
	assert_int_equal(guest_u64("stuck", "target_bytes"), stuck_target);
	assert_int_equal(atomic_load(&F.shared[0].last_target), stuck_target);
	assert_true(atomic_load(&F.shared[1].last_target) < obeys_target);
	print_message("[  FIGURE  ] non-compliant guest: marked %" PRIu64 " s after ovcd listed it (ticks %" PRIu64
		      " -> %" PRIu64 "), its target %" PRIu64 " MiB of 4096 never taken; the other's target %" PRIu64
		      " MiB before the mark, %" PRIu64 " at it, %" PRIu64 " MiB %" PRIu64 " ms later\n",
		      (marked_usec - t0) / USEC_PER_SEC, first_ticks, mark_ticks, stuck_target / MIB,
		      nc_obeys_before / MIB, obeys_target / MIB, guest_u64("obeys", "target_bytes") / MIB,
		      (now_usec(CLOCK_MONOTONIC) - marked_usec) / 1000);
	pthread_mutex_lock(&S.lock);
	print_message("[  FIGURE  ] non-compliant guest: largest tick gap %" PRIu64 " ms (interval %d ms), slowest of %" PRIu64
		      " status replies %" PRIu64 " us, %" PRIu64 " without reply\n",
		      S.max_tick_gap_usec / 1000, INTERVAL_MS, S.replies, S.max_reply_usec, S.failures);
	assert_true(S.replies > 0);
	assert_int_equal(S.failures, 0);
	assert_true(S.max_reply_usec < REPLY_MAX_USEC);
	assert_true(S.max_tick_gap_usec <= 2 * INTERVAL_MS * 1000ull);
	pthread_mutex_unlock(&S.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_three_silent_engine_sockets),
		cmocka_unit_test(test_qmp_monitor_stops_answering),
		cmocka_unit_test(test_impostor_monitor),
		cmocka_unit_test(test_engine_claims_64tib),
		cmocka_unit_test(test_symlink_in_engine_dir),
		cmocka_unit_test(test_engine_squats_guest_name),
		cmocka_unit_test(test_full_listen_queue),
	};

	const struct CMUnitTest nc_tests[] = {
		cmocka_unit_test(test_noncompliant_guest),
	};
	int failed;

	signal(SIGPIPE, SIG_IGN);
	if (getenv("OVC_TEST_FILTER"))
		cmocka_set_test_filter(getenv("OVC_TEST_FILTER"));
	failed = cmocka_run_group_tests_name("ovcd-peers", tests, setup, teardown);
	return failed + cmocka_run_group_tests_name("ovcd-peers-noncompliant", nc_tests, nc_setup, nc_teardown);
}
