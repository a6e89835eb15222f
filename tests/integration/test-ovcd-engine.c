/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * integration: the real ovcd steering the engine of a real KVM VMM
 * (examples/ovc-vmm, a raw-KVM guest whose RAM is under libovc) that
 * publishes itself in ovcd's [engine] dir.
 *
 * Nothing is mocked. Host pressure comes from the config, as an admin would
 * set it: [host] low and high above the MemAvailable measured at setup, so
 * the real /proc/meminfo reads as pressure; relief is a real reload
 * (ovcctl reload) with watermarks far below it. What ovcd did is read back
 * from the engine itself, over its own endpoint (docs/engine-protocol.md),
 * not from ovcd. The VMM is killed with SIGKILL, as a crash, and must
 * vanish from `ovcctl guests`.
 *
 * Assertions wait for states with generous timeouts, never for a time.
 * Skips where /dev/kvm or userfaultfd cannot be used.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
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

#include "common/endpoint-proto.h"
#include "host/guest.h"
#include "json-get.h"
#include "host/host.h"
#include "ovcd-test.h"
#include "ovc-test.h"
#include "common/util.h"

#ifndef OVCD_BIN
#error OVCD_BIN must be defined by the build
#endif
#ifndef OVC_VMM
#error OVC_VMM must be defined by the build
#endif

#define VMM_MEM "512MiB"
#define VMM_MEM_BYTES (512 * MIB)
#define WAIT_MS 180000

static struct {
	const char *skip;
	struct ovcd_fixture d; /* engines: run/engines, made by ovcd */
	char vmm_log[192], name[64], endpoint[256];
	pid_t ovcd, vmm, qemu;
	bool vmm_swap;
	uint64_t avail0;
} T;

/* ---- helpers ---- */

static void pause_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Poll @ok until it holds or @ms pass; true if it held. */
static bool eventually(bool (*ok)(void), unsigned ms)
{
	uint64_t end = now_usec(CLOCK_MONOTONIC) + (uint64_t)ms * 1000;

	do {
		if (ok())
			return true;
		pause_ms(200);
	} while (now_usec(CLOCK_MONOTONIC) < end);
	return ok();
}

/* ovcd's guests reply, straight from its control socket. */
static struct json_object *ovcd_guests(void)
{
	return ovcd_ctl(T.d.sock, "guests", 10000, 0, NULL);
}

/* The VMM's entry in @guests, or NULL. */
static struct json_object *vmm_entry(struct json_object *guests)
{
	return ovcd_guest_of(guests, T.name);
}

/* The engine's own stats, from its endpoint. */
static bool engine_stats(struct ep_stats *st)
{
	char r[1 << 16];
	struct ep_reply rp;
	bool ok = unix_ask(T.endpoint, EP_VERSION_TOKEN " stats\n", r, sizeof(r), 10000, 0, NULL) == 0 &&
		  ep_parse_reply(r, strcspn(r, "\n"), &rp) == 0 && rp.ok &&
		  (rp.have & EP_HAVE_STATS_REQUIRED) == EP_HAVE_STATS_REQUIRED;

	if (ok)
		*st = rp.st;
	return ok;
}

static void write_conf(uint64_t low, uint64_t high, const char *engine_dir)
{
	FILE *f = fopen(T.d.conf, "we");

	assert_non_null(f);
	fprintf(f,
		"# written by test-ovcd-engine\n"
		"[host]\ninterval = 500ms\nreserve = 0\nlow = %lluMiB\nhigh = %lluMiB\n"
		"psi_some = 100%%\npsi_full = 100%%\npsi_trigger_stall = 0\n"
		"[ksm]\nenable = no\n"
		/* The VMM's guest reads all of its memory, so its swap-in
		 * rate can pass the default emergency_swap_in (1MiB/s) and an
		 * emergency would lower the target before the relief test
		 * does: out of the way, these tests are about pressure and
		 * room. */
		"[balloon]\nemergency_swap_in = 1GiB\n"
		"[swap]\nstep = 4%%\n"
		"[engine]\ndir = %s\n"
		"[control]\nsocket = %s\n",
		(unsigned long long)(low / MIB), (unsigned long long)(high / MIB), engine_dir, T.d.sock);
	fclose(f);
}

static bool log_has(const char *needle)
{
	return file_has(T.d.log, needle);
}

static const char *wanted_line;

static bool wanted_logged(void)
{
	return log_has(wanted_line);
}

static bool eventually_log(const char *needle, unsigned ms)
{
	wanted_line = needle;
	return eventually(wanted_logged, ms);
}

static int reload(void)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "%s/ovcctl -s %s reload >/dev/null 2>&1", OVCD_BIN, T.d.sock);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static pid_t spawn(const char *log, char *const argv[])
{
	return spawn_logged(argv[0], argv, log, NULL, SIGKILL);
}

/* Can an engine swap here? Not before lib/engine/swap.c is in; the VMM then
 * runs without swap (its target then only counts zero sharing). */
static bool engine_can_swap(void)
{
	struct ovc_engine_opts o = {
		.size = sizeof(o), .swap_path = T.d.dir, .swap_size_bytes = 64 * MIB,
	};
	ovc_engine *e = NULL;
	bool ok = ovc_engine_new(&o, &e) == 0;

	ovc_engine_free(e);
	return ok;
}

/* ---- setup / teardown ---- */

static bool ovcd_answers(void)
{
	struct json_object *o = ovcd_guests();
	bool ok = o != NULL;

	json_object_put(o);
	return ok;
}

static int setup(void **state)
{
	struct ovcd_meminfo mi;
	ovc_engine *probe = NULL;
	int r;

	memset(&T, 0, sizeof(T));
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		T.skip = "/dev/kvm is not usable here";
		return 0;
	}
	r = ovc_engine_new(&(struct ovc_engine_opts){ .size = sizeof(struct ovc_engine_opts) }, &probe);
	ovc_engine_free(probe);
	if (r == -EPERM || r == -ENOSYS) {
		T.skip = "no userfaultfd for an engine here";
		return 0;
	}
	if (ovcd_fixture_dirs(&T.d, "ovcd-engine", 0755, OVCD_FIXTURE_QMP) < 0 || ovcd_meminfo_read(NULL, &mi) < 0)
		return -1;
	snprintf(T.vmm_log, sizeof(T.vmm_log), "%s/vmm.log", T.d.dir);
	/* Two levels that do not exist: ovcd creates them. */
	snprintf(T.d.engines, sizeof(T.d.engines), "%s/run/engines", T.d.dir);
	T.avail0 = mi.available_bytes;
	T.vmm_swap = engine_can_swap();
	/* Pressure: low 1 GiB above what the host has available now. */
	write_conf(T.avail0 + GIB, T.avail0 + 2 * GIB, T.d.engines);

	T.ovcd = ovcd_spawn(OVCD_BIN, (char *[]){ "ovcd", "-c", T.d.conf, "--no-libvirt", "--qmp-dir", T.d.qmp_dir, NULL },
			    T.d.log, NULL);
	if (T.ovcd < 0 || !eventually(ovcd_answers, 30000))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	child_kill_wait(&T.vmm, SIGKILL);
	child_kill_wait(&T.qemu, SIGKILL);
	child_kill_wait(&T.ovcd, SIGKILL);
	ovcd_fixture_rm(&T.d);
	return 0;
}


/* ---- tests ---- */

static void test_engine_dir_created_safely(void **state)
{
	struct stat st;

	SKIP_IF(T.skip);
	assert_int_equal(stat(T.d.engines, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	/* Only root may publish: nobody else can claim a guest's name. */
	assert_int_equal(st.st_mode & 07777, 0755);
	assert_int_equal(st.st_uid, 0);
}

static bool vmm_listed_with_shared(void)
{
	struct json_object *o = ovcd_guests();
	struct json_object *g = vmm_entry(o);
	bool ok = g && json_get_u64(json_get(g, "savings"), "shared_bytes") > 0 &&
		  json_get_u64(json_get(g, "savings"), "shared_bytes") != OVC_UNKNOWN;

	json_object_put(o);
	return ok;
}

static void test_vmm_listed_with_its_savings(void **state)
{
	char cmd[512], out[8192];
	struct json_object *o, *g;
	FILE *p;

	SKIP_IF(T.skip);
	char *argv[] = { OVC_VMM, "--mem", VMM_MEM, "--reclaim", "0", "--hot", "10", "--hold", "--publish",
			 T.d.engines, T.vmm_swap ? "--swap-dir" : "--no-swap", T.vmm_swap ? T.d.dir : NULL, NULL };
	T.vmm = spawn(T.vmm_log, argv);
	assert_true(T.vmm > 0);
	snprintf(T.name, sizeof(T.name), "ovc-vmm-%d", (int)T.vmm);
	snprintf(T.endpoint, sizeof(T.endpoint), "%s/%s.sock", T.d.engines, T.name);
	print_message("[  INFO    ] VMM %s, %s swap\n", T.name, T.vmm_swap ? "with" : "without");

	assert_true(eventually(vmm_listed_with_shared, WAIT_MS));
	o = ovcd_guests();
	g = vmm_entry(o);
	assert_non_null(g);
	assert_string_equal(json_object_get_string(json_get(g, "driver")), "ovc");
	assert_string_equal(json_object_get_string(json_get(g, "balloon_driver")), "none");
	assert_int_equal(json_get_u64(g, "max_bytes"), VMM_MEM_BYTES);
	assert_non_null(json_get(g, "engine"));
	/* Its swap figures, from this engine that sends them all: known, and
	 * no I/O error on a healthy swap file. */
	{
		struct json_object *eng = json_get(g, "engine");
		uint64_t p50 = json_get_u64(eng, "fault_p50_usec"), p99 = json_get_u64(eng, "fault_p99_usec");

		assert_true(ovcd_known(json_get_u64(eng, "swapped_in_bytes")));
		assert_true(ovcd_known(json_get_u64(eng, "swapped_out_bytes")));
		assert_true(ovcd_known(json_get_u64(eng, "swap_cache_bytes")));
		assert_true(ovcd_known(json_get_u64(eng, "swap_cache_hits")));
		assert_true(ovcd_known(json_get_u64(eng, "refaults")));
		assert_int_equal(json_get_u64(eng, "swap_write_errors"), 0);
		assert_int_equal(json_get_u64(eng, "swap_read_errors"), 0);
		/* Percentiles once a fault was served; both or neither. */
		assert_int_equal(ovcd_known(p50), ovcd_known(p99));
		assert_true(!ovcd_known(p50) || p50 <= p99);
	}
	/* No balloon: nothing saved that way. */
	assert_int_equal(json_get_u64(json_get(g, "savings"), "balloon_bytes"), 0);
	json_object_put(o);

	/* And the command an admin types shows it, with its shared memory. */
	snprintf(cmd, sizeof(cmd), "%s/ovcctl -s %s guests", OVCD_BIN, T.d.sock);
	p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	assert_int_equal(pclose(p), 0);
	print_message("%s", out);
	assert_non_null(strstr(out, "SHARED"));
	assert_non_null(strstr(out, "SWAPCACHE"));
	assert_non_null(strstr(out, "FLT-P50"));
	assert_non_null(strstr(out, T.name));

	/* No balloon, so nothing to pin: said so, not silently ignored. */
	snprintf(cmd, sizeof(cmd), "%s/ovcctl -s %s set %s target 100MiB 2>&1", OVCD_BIN, T.d.sock, T.name);
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	assert_int_not_equal(pclose(p), 0);
	assert_non_null(strstr(out, "embedded engine without a balloon"));
}

static bool status_counts_engine(void)
{
	struct json_object *o = ovcd_ctl(T.d.sock, "status", 10000, 0, NULL);
	bool ok = json_get_u64(json_get(o, "savings"), "engine_zero_bytes") > 0 &&
		  json_get_u64(json_get(o, "savings"), "engine_zero_bytes") != OVC_UNKNOWN &&
		  json_get_u64(o, "guests_max_bytes") >= VMM_MEM_BYTES;

	json_object_put(o);
	return ok;
}

static void test_status_counts_engine_savings(void **state)
{
	SKIP_IF(T.skip);
	assert_true(eventually(status_counts_engine, WAIT_MS));
}

static bool engine_target_raised(void)
{
	struct ep_stats st;

	return engine_stats(&st) && st.target_bytes > 0;
}

static bool ovcd_saw_swap_out(void)
{
	struct json_object *o = ovcd_guests();
	struct json_object *g = vmm_entry(o);
	uint64_t out = json_get_u64(json_get(g, "engine"), "swapped_out_bytes");
	bool ok = ovcd_known(out) && out > 0;

	json_object_put(o);
	return ok;
}

static void test_pressure_raises_the_engine_target(void **state)
{
	struct ep_stats st;

	SKIP_IF(T.skip);
	/* The config put the host under pressure from the start. */
	assert_true(eventually(engine_target_raised, WAIT_MS));
	assert_true(engine_stats(&st));
	print_message("[  INFO    ] engine: zero %llu MiB, swapped %llu MiB, target %llu MiB\n",
		      (unsigned long long)(st.zero_bytes / MIB), (unsigned long long)(st.swap_bytes / MIB),
		      (unsigned long long)(st.target_bytes / MIB));
	/* Never more than zero sharing plus [swap] max (25% of max). */
	assert_true(st.target_bytes <= st.zero_bytes + st.swap_bytes + VMM_MEM_BYTES / 4 + MIB);
	assert_true(log_has("reclaim 'ovc-vmm-"));
	/* What the engine swapped out shows in ovcd's guests reply. */
	if (T.vmm_swap)
		assert_true(eventually(ovcd_saw_swap_out, WAIT_MS));
}

static bool bad_reload_refused(void)
{
	return log_has("[engine] dir: bad value 'engines/relative'");
}

static void test_bad_engine_dir_keeps_the_daemon(void **state)
{
	SKIP_IF(T.skip);
	write_conf(T.avail0 + GIB, T.avail0 + 2 * GIB, "engines/relative");
	assert_int_not_equal(reload(), 0);
	assert_true(eventually(bad_reload_refused, 10000));
	assert_int_equal(waitpid(T.ovcd, NULL, WNOHANG), 0);
	assert_true(vmm_listed_with_shared());
}

static bool engine_target_zero(void)
{
	struct ep_stats st;

	return engine_stats(&st) && st.target_bytes == 0;
}

static bool release_logged(void)
{
	return log_has("release 'ovc-vmm-");
}

static void test_relief_lowers_the_engine_target(void **state)
{
	SKIP_IF(T.skip);
	/* Plenty of room: watermarks far below MemAvailable. */
	write_conf(0, 64 * MIB, T.d.engines);
	assert_int_equal(reload(), 0);
	assert_true(eventually(engine_target_zero, WAIT_MS));
	/* ovcd logs the release once the engine has answered: the engine
	 * may show its new target a moment before the line is written. */
	assert_true(eventually(release_logged, WAIT_MS));
	assert_true(vmm_listed_with_shared());
}

/* ---- an engine named like a QMP guest is that guest ---- */

#define MERGED "merge-me"

static const char *merged_driver;

static bool merged_shows(void)
{
	struct json_object *o = ovcd_guests(), *arr = json_get(o, "guests");
	unsigned n = 0;
	bool ok = false;

	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *g = json_object_array_get_idx(arr, i);

		if (strcmp(json_object_get_string(json_get(g, "name")), MERGED) != 0)
			continue;
		n++;
		ok = strcmp(json_object_get_string(json_get(g, "driver")), merged_driver) == 0 &&
		     (strcmp(merged_driver, "qmp") == 0) == !json_get(g, "engine");
	}
	json_object_put(o);
	return ok && n == 1; /* one guest, never two */
}

/* A real QEMU with a virtio-balloon, stopped before its first
 * instruction (-S): QMP answers, no guest runs, no image needed. */
static void qemu_start(const char *qmp)
{
	T.qemu = spawn("/dev/null", (char *[]){ "/usr/bin/qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m",
						"128", "-nodefaults", "-nographic", "-no-user-config", "-S",
						"-name", MERGED, "-device", "virtio-balloon-pci,id=balloon0",
						"-qmp", (char *)qmp, NULL });
	assert_true(T.qemu > 0);
}

static void qemu_stop(void)
{
	child_kill_wait(&T.qemu, SIGKILL);
}

/* An engine named like a QMP guest is part of that guest only when the
 * kernel says they are one process. Here the engine lives in this test
 * process and the guest in a real QEMU: the engine squats the name, and is
 * refused with a warning in either order; the guest stays a QMP guest. */
static void test_engine_squatting_a_qmp_guest_is_refused(void **state)
{
	char qmp[256], msg[160];
	struct ovc_publish_opts po = {
		.size = sizeof(po), .dir = T.d.engines, .name = MERGED, .max_bytes = 128 * MIB,
	};
	ovc_engine *e = NULL;
	void *ram;

	SKIP_IF(T.skip);
	if (access("/usr/bin/qemu-system-x86_64", X_OK) < 0)
		skip_because("qemu-system-x86_64 is not installed");
	snprintf(qmp, sizeof(qmp), "unix:%s/" MERGED ".qmp,server=on,wait=off", T.d.qmp_dir);
	qemu_start(qmp);
	merged_driver = "qmp";
	assert_true(eventually(merged_shows, 60000));

	/* Another process publishes an engine of the same name. */
	ram = mmap(NULL, 64 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(ram != MAP_FAILED);
	assert_ovc_ok(ovc_engine_new(&(struct ovc_engine_opts){ .size = sizeof(struct ovc_engine_opts) }, &e));
	assert_ovc_ok(ovc_region_add(e, ram, 64 * MIB, 0, 0));
	assert_ovc_ok(ovc_engine_publish(e, &po));
	snprintf(msg, sizeof(msg), "engine '%s' (pid %d) refused: the qmp guest of that name runs in pid %d", MERGED,
		 (int)getpid(), (int)T.qemu);
	assert_true(eventually_log(msg, 30000));
	assert_true(merged_shows()); /* still the QMP guest alone */
	assert_ovc_ok(ovc_engine_unpublish(e, 0));

	/* The other order: the engine alone first, then the real guest,
	 * which takes its name back. */
	qemu_stop();
	assert_ovc_ok(ovc_engine_publish(e, &po));
	merged_driver = "ovc";
	assert_true(eventually(merged_shows, 30000));
	qemu_start(qmp);
	merged_driver = "qmp";
	assert_true(eventually(merged_shows, 60000));
	snprintf(msg, sizeof(msg), "engine '%s' (pid %d) refused: the qmp guest of that name runs in pid %d", MERGED,
		 (int)getpid(), (int)T.qemu);
	assert_true(log_has(msg));

	qemu_stop();
	ovc_engine_free(e);
	munmap(ram, 64 * MIB);
}

static bool vmm_gone(void)
{
	struct json_object *o = ovcd_guests();
	bool gone = o && !vmm_entry(o);

	json_object_put(o);
	return gone;
}

static void test_killed_vmm_is_dropped(void **state)
{
	int status;

	SKIP_IF(T.skip);
	assert_int_equal(kill(T.vmm, SIGKILL), 0);
	assert_int_equal(waitpid(T.vmm, &status, 0), T.vmm);
	T.vmm = 0;
	/* It could not unlink its socket: ovcd must tell a dead one. */
	assert_true(eventually(vmm_gone, 30000));
	assert_int_equal(waitpid(T.ovcd, NULL, WNOHANG), 0);
	char stopped[128], gone[128];
	snprintf(stopped, sizeof(stopped), "guest '%s' stopped", T.name);
	snprintf(gone, sizeof(gone), "guest '%s' is gone", T.name);
	assert_true(log_has(stopped) || log_has(gone));
}

static void test_sigterm_clean(void **state)
{
	int status;

	SKIP_IF(T.skip);
	assert_int_equal(kill(T.ovcd, SIGTERM), 0);
	assert_int_equal(waitpid(T.ovcd, &status, 0), T.ovcd);
	T.ovcd = 0;
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_engine_dir_created_safely),
		cmocka_unit_test(test_vmm_listed_with_its_savings),
		cmocka_unit_test(test_status_counts_engine_savings),
		cmocka_unit_test(test_pressure_raises_the_engine_target),
		cmocka_unit_test(test_bad_engine_dir_keeps_the_daemon),
		cmocka_unit_test(test_relief_lowers_the_engine_target),
		cmocka_unit_test(test_engine_squatting_a_qmp_guest_is_refused),
		cmocka_unit_test(test_killed_vmm_is_dropped),
		cmocka_unit_test(test_sigterm_clean),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests_name("ovcd-engine", tests, setup, teardown);
}
