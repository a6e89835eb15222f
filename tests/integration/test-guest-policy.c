/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * slow: the guest-safety scenario. Three real Linux guests (libvirt domains
 * of the test image, TCG, 1 GiB each, no swap in the guest, virtio-balloon
 * with a 1 s stats period as libvirt's default <memballoon> has it) run
 * three workloads while ovcd manages them with its shipped defaults:
 *
 *   A allocates 300 MiB, holds 20 s, frees 200 MiB, idles 60 s, then
 *     allocates 450 MiB within about a second and holds it;
 *   B allocates 600 MiB, holds 30 s, frees everything and idles;
 *   C idles 60 s, allocates 350 MiB within about a second, holds 30 s,
 *     allocates 350 MiB more (within about a second) and holds it.
 *
 * Every page is written with data of its own (ovc-guest-workload), and
 * checked at the end.
 *
 * The host: the test must not squeeze a shared 24 GiB machine to make it
 * short of memory (that would take it from other people's work). It gives
 * ovcd a host whose memory for guests is small the way real hosts do: the
 * guests' QEMU processes run in a memory cgroup of their own (v1 or v2) with
 * a limit of 3 GiB, and ovcd is told so with --memory-cgroup. With ovcd's
 * default reserve of 1 GiB that leaves the three guests 2 GiB, while without
 * a manager their QEMUs grow to about 2.4 GiB (measured: what B freed stays
 * in its QEMU without a balloon), 400 MiB into the reserve: the shortage of
 * the host this scenario was first seen on (440 MiB). The limit is real: a
 * QEMU that pushes the cgroup past it is OOM-killed by the host kernel.
 *
 * ovcd's config says only what describes this test host: the control
 * socket, and KSM left alone (KSM is host-wide, the machine is shared).
 * Every policy key keeps its shipped default.
 *
 * Assertions (per run): no guest OOM kill (/proc/vmstat oom_kill read in
 * each guest); the cgroup's MemAvailable, sampled every 500 ms, never below
 * ovcd's resolved reserve; at least 80% of what B freed taken back by its
 * balloon within 60 s of the free; every held page intact. With
 * deflate-on-oom on: no self-deflate either (a kprobe on
 * virtio_balloon_oom_notify in the guest, as scripts/demo counts them).
 *
 * A third run times ovcd's relief between ticks: one guest (D) frees the
 * 650 MiB it allocated and idles in a 1.25 GiB cgroup while ovcd balloons
 * it, then bursts 600 MiB within a second; no OOM kill, and the time from
 * the burst to ovcd's raised target is printed (sampled every 250 ms).
 *
 * `test-guest-policy NAME` runs one: no-deflate-on-oom, deflate-on-oom or
 * burst. OVC_TEST_NO_MANAGER=1 runs the same guests and workloads without ovcd
 * (the peer measured for comparison): the figures are printed, nothing is
 * asserted but that the run completes.
 *
 * Figures go to stdout (PASS or FAIL alike), times in seconds since the
 * workloads started.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include <ovc/ovc.h>

#include "guest-harness.h"
#include "host/guest.h"
#include "json-get.h"
#include "host/host.h"
#include "ovcd-test.h"
#include "ovc-test.h"
#include "common/util.h"

#ifndef OVCD_BIN
#error OVCD_BIN must be defined by the build
#endif

#define MAX_GUESTS 3
#define TAKEN_WINDOW_MS 60000

/* STEP_FREED: a free whose memory must be taken back (spec.idle);
 * STEP_BURST: an allocation whose deflate is timed (spec.burst). */
enum step_kind { STEP_END, STEP_ALLOC, STEP_FREE, STEP_SLEEP, STEP_FREED, STEP_BURST };

struct step {
	enum step_kind kind;
	uint64_t bytes;    /* ALLOC, FREE (0: everything) */
	unsigned msec;     /* SLEEP; ALLOC: pace (0: as fast as it goes) */
};

struct gstate {
	const char *label;
	const struct step *script;
	struct harness_guest g;
	pid_t qemu_pid;
	/* Written by the guest's thread, read by the main thread after join
	 * (or as a plain flag while it runs). */
	char error[512];
	uint64_t held;         /* what the workload holds, from its replies */
	uint64_t freed_at_ms;  /* STEP_FREED: when its free returned */
	uint64_t freed_bytes;
	volatile uint64_t burst_at_ms; /* STEP_BURST: when its allocation was sent */
	volatile bool done;
	/* The main thread's observations through ovcctl. */
	uint64_t target, balloon; /* at the last sample */
	uint64_t target_at_burst, balloon_at_burst, deflated_after_ms;
	bool burst_seen;
};

/* A: 300, hold 20, free 200, idle 60, 450 within a second, hold. */
static const struct step script_a[] = {
	{ STEP_ALLOC, 300 * MIB, 0 }, { STEP_SLEEP, 0, 20000 }, { STEP_FREE, 200 * MIB, 0 },
	{ STEP_SLEEP, 0, 60000 }, { STEP_ALLOC, 450 * MIB, 1000 }, { STEP_END, 0, 0 },
};
/* B: 600, hold 30, free everything, idle. */
static const struct step script_b[] = {
	{ STEP_ALLOC, 600 * MIB, 0 }, { STEP_SLEEP, 0, 30000 }, { STEP_FREED, 0, 0 },
	{ STEP_END, 0, 0 },
};
/* C: idle 60, 350 within a second, hold 30, 350 more, hold. */
static const struct step script_c[] = {
	{ STEP_SLEEP, 0, 60000 }, { STEP_ALLOC, 350 * MIB, 1000 }, { STEP_SLEEP, 0, 30000 },
	{ STEP_ALLOC, 350 * MIB, 1000 }, { STEP_END, 0, 0 },
};
/* D, alone: 650, free everything, idle 60 s (ovcd balloons what it freed),
 * then 600 within a second and hold: more than it has available once
 * ballooned, so ovcd must deflate it in time. */
static const struct step script_d[] = {
	{ STEP_ALLOC, 650 * MIB, 0 }, { STEP_SLEEP, 0, 5000 }, { STEP_FREE, 0, 0 },
	{ STEP_SLEEP, 0, 60000 }, { STEP_BURST, 600 * MIB, 1000 }, { STEP_SLEEP, 0, 15000 },
	{ STEP_END, 0, 0 },
};

struct spec {
	size_t n;
	const char *labels[MAX_GUESTS];
	const struct step *scripts[MAX_GUESTS];
	uint64_t limit;        /* of the guests' memory cgroup */
	bool check_reserve;    /* the cgroup's MemAvailable never below the reserve */
	int idle;              /* the guest whose freed memory must come back, or -1 */
	int burst;             /* the guest whose burst is timed, or -1 */
};

/* The three workloads in 3 GiB (see the top of the file). */
static const struct spec three_guests = {
	.n = 3, .labels = { "A", "B", "C" }, .scripts = { script_a, script_b, script_c },
	.limit = 3 * GIB, .check_reserve = true, .idle = 1, .burst = -1,
};

/* One guest in 1.25 GiB: ovcd's watermarks there are low 640 MiB and high
 * 711 MiB (half and a bit of the limit: its 1 GiB reserve does not fit),
 * and the 800 MiB the guest's QEMU holds after its first allocation put
 * the host under pressure, so ovcd balloons what the guest freed once its
 * learned headroom lets it; then the guest bursts. */
static const struct spec burst_guest = {
	.n = 1, .labels = { "D" }, .scripts = { script_d },
	.limit = 1280 * MIB, .check_reserve = false, .idle = -1, .burst = 0,
};

struct run {
	const char *skip;
	bool manager, deflate_on_oom;
	struct harness_image img;
	struct harness_libvirtd lvd;
	char cgroup[256];      /* absolute, under /sys/fs/cgroup */
	bool cgroup_v2;
	struct ovcd_fixture d;
	pid_t ovcd;
	const struct spec *spec;
	struct gstate gs[MAX_GUESTS];
	uint64_t t0_ms;
	/* Observations (main thread). */
	uint64_t reserve_bytes, min_avail_bytes, min_avail_at_ms, peak_usage_bytes;
	uint64_t samples;
	uint64_t b_balloon_at_free, b_balloon_max_in_window, b_taken_80_ms;
	bool b_window_seen;
	uint64_t rss_b_at_free, rss_b_after_window;
};

static uint64_t mono_ms(void)
{
	return now_usec(CLOCK_MONOTONIC) / 1000;
}

static void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static double secs(const struct run *r, uint64_t ms)
{
	return ms >= r->t0_ms ? (double)(ms - r->t0_ms) / 1000.0 : 0.0;
}

static int write_str(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* ---- the guests' cgroup ---- */

static const char *cgroup_create(struct run *r)
{
	char path[320], limit[32];

	snprintf(limit, sizeof(limit), "%" PRIu64 "\n", r->spec->limit);
	if (access("/sys/fs/cgroup/memory/memory.limit_in_bytes", F_OK) == 0 ||
	    access("/sys/fs/cgroup/memory/memory.stat", F_OK) == 0) {
		snprintf(r->cgroup, sizeof(r->cgroup), "/sys/fs/cgroup/memory/ovc-test-%d", (int)getpid());
		if (mkdir(r->cgroup, 0755) < 0)
			return "cannot create a v1 memory cgroup (not root?)";
		snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", r->cgroup);
		if (write_str(path, limit) < 0)
			return "cannot set the cgroup's memory.limit_in_bytes";
		/* The guests' memory follows them in. */
		snprintf(path, sizeof(path), "%s/memory.move_charge_at_immigrate", r->cgroup);
		write_str(path, "3\n");
		return NULL;
	}
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
		r->cgroup_v2 = true;
		snprintf(r->cgroup, sizeof(r->cgroup), "/sys/fs/cgroup/ovc-test-%d", (int)getpid());
		if (mkdir(r->cgroup, 0755) < 0)
			return "cannot create a v2 cgroup (not root, or memory not delegated?)";
		snprintf(path, sizeof(path), "%s/memory.max", r->cgroup);
		if (write_str(path, limit) < 0)
			return "cannot set the cgroup's memory.max";
		return NULL;
	}
	return "no memory cgroup controller mounted under /sys/fs/cgroup";
}

static int cgroup_join(struct run *r, pid_t pid)
{
	char path[320], text[32];

	snprintf(path, sizeof(path), "%s/cgroup.procs", r->cgroup);
	snprintf(text, sizeof(text), "%d\n", (int)pid);
	return write_str(path, text);
}

static void cgroup_remove(struct run *r)
{
	if (!r->cgroup[0])
		return;
	/* Its processes are gone (guests stopped first); the kernel may take
	 * a moment to let go of the last charges. */
	for (int i = 0; i < 50 && rmdir(r->cgroup) < 0 && errno == EBUSY; i++)
		msleep(100);
	r->cgroup[0] = '\0';
}

/* MemAvailable as ovcd sees it with --memory-cgroup. */
static int cgroup_available(struct run *r, uint64_t *avail, uint64_t *usage)
{
	struct ovcd_cgroup_mem cg;
	struct ovcd_meminfo mi;
	int e = ovcd_meminfo_read(NULL, &mi);

	if (e == 0)
		e = ovcd_cgroup_mem_read(NULL, r->cgroup, &cg);
	if (e < 0)
		return e;
	ovcd_meminfo_limit_to_cgroup(&mi, &cg);
	*avail = mi.available_bytes;
	*usage = cg.usage_bytes;
	return 0;
}

/* ---- ovcd ---- */

static struct json_object *ctl_json(struct run *r, const char *cmd)
{
	return ovcctl_json(OVCD_BIN, r->d.sock, cmd);
}

static void ovcd_start(struct run *r)
{
	char only[128], bin[256];
	FILE *f = fopen(r->d.conf, "we");
	uint64_t end;

	assert_non_null(f);
	/* Only what describes the test host; every policy key is the
	 * shipped default. */
	fprintf(f, "# written by test-guest-policy: this test host, shipped policy defaults\n"
		   "[ksm]\n# KSM is host-wide and the machine is shared: left alone.\nenable = no\n"
		   "[engine]\ndir =\n"
		   "[control]\nsocket = %s\n", r->d.sock);
	fclose(f);
	snprintf(only, sizeof(only), "ovc-test-%d-*", (int)getpid());
	snprintf(bin, sizeof(bin), "%s/ovcd", OVCD_BIN);
	/* SIGTERM if the test dies: ovcd then puts back what it changed. */
	r->ovcd = spawn_logged(bin, (char *[]){ "ovcd", "-c", r->d.conf, "--libvirt", "qemu:///system", "--only",
						only, "--memory-cgroup", r->cgroup, NULL },
			       r->d.log, NULL, SIGTERM);
	assert_true(r->ovcd >= 0);
	end = mono_ms() + 60000;
	for (;;) {
		struct json_object *st = ctl_json(r, "status");
		uint64_t n = st ? json_get_u64(st, "guests") : 0, ticks = st ? json_get_u64(st, "ticks") : 0;

		if (st && ovcd_known(n) && n >= r->spec->n && ovcd_known(ticks) && ticks >= 2) {
			r->reserve_bytes = json_get_u64(st, "host_total_bytes") -
					   json_get_u64(st, "host_for_guests_bytes");
			json_object_put(st);
			break;
		}
		json_object_put(st);
		if (mono_ms() > end)
			fail_msg("ovcd did not manage the %zu guests within 60 s; see %s", r->spec->n, r->d.log);
		assert_int_equal(waitpid(r->ovcd, NULL, WNOHANG), 0);
		msleep(500);
	}
}

/* ---- the workloads, one thread per guest ---- */

static void *workload(void *arg)
{
	struct gstate *s = arg;
	char cmd[64], reply[256];

	for (const struct step *st = s->script; st->kind != STEP_END && !s->error[0]; st++) {
		int e = 0;

		switch (st->kind) {
		case STEP_SLEEP:
			msleep(st->msec);
			continue;
		case STEP_ALLOC:
		case STEP_BURST:
			snprintf(cmd, sizeof(cmd), "alloc %" PRIu64 "M %u", st->bytes / MIB, st->msec);
			if (st->kind == STEP_BURST)
				s->burst_at_ms = mono_ms();
			e = harness_guest_cmd(&s->g, cmd, reply, sizeof(reply), 120000);
			if (e == 0)
				printf("    %s: %s -> %s\n", s->label, cmd, reply);
			break;
		case STEP_FREE:
		case STEP_FREED:
			if (st->bytes)
				snprintf(cmd, sizeof(cmd), "free %" PRIu64 "M", st->bytes / MIB);
			else
				snprintf(cmd, sizeof(cmd), "free");
			e = harness_guest_cmd(&s->g, cmd, reply, sizeof(reply), 120000);
			if (e == 0 && st->kind == STEP_FREED) {
				unsigned long long now_held;

				s->freed_at_ms = mono_ms();
				if (sscanf(reply, "ok held=%llu", &now_held) == 1 && now_held <= s->held)
					s->freed_bytes = s->held - now_held;
			}
			break;
		case STEP_END:
			break;
		}
		if (e == 0) {
			unsigned long long held;

			if (sscanf(reply, "ok held=%llu", &held) == 1)
				s->held = held;
		}
		if (e < 0)
			snprintf(s->error, sizeof(s->error), "'%s': %s (OOM-killed workload?)", cmd, strerror(-e));
		else if (strncmp(reply, "ok ", 3) != 0)
			snprintf(s->error, sizeof(s->error), "'%s': %s", cmd, reply);
	}
	s->done = true;
	return NULL;
}

static uint64_t rss_of(pid_t pid)
{
	char path[64], line[256];
	uint64_t v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %" SCNu64, &v) == 1)
			break;
	fclose(f);
	return v * 1024;
}

static pid_t domain_pid(const char *name)
{
	char path[256], buf[32] = "";
	int fd, n;

	snprintf(path, sizeof(path), "/run/libvirt/qemu/%s.pid", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return (pid_t)atoi(buf);
}

/* The idle guest's freed memory coming back through its balloon. */
static void observe_taken(struct run *r, struct gstate *b, uint64_t now)
{
	if (now - b->freed_at_ms > TAKEN_WINDOW_MS) {
		if (!r->rss_b_after_window)
			r->rss_b_after_window = rss_of(b->qemu_pid);
		return;
	}
	if (!r->rss_b_at_free)
		r->rss_b_at_free = rss_of(b->qemu_pid);
	if (!r->manager || !ovcd_known(b->balloon))
		return;
	if (!r->b_window_seen) {
		r->b_window_seen = true;
		r->b_balloon_at_free = b->balloon;
	}
	r->b_balloon_max_in_window = MAX(r->b_balloon_max_in_window, b->balloon);
	if (!r->b_taken_80_ms && b->balloon >= r->b_balloon_at_free &&
	    (b->balloon - r->b_balloon_at_free) * 10 >= b->freed_bytes * 8)
		r->b_taken_80_ms = now - b->freed_at_ms;
}

/* The bursting guest: its balloon when the burst began, and how long
 * until ovcd raised its target. */
static void observe_burst(struct gstate *s, uint64_t now, uint64_t prev_target, uint64_t prev_balloon)
{
	if (!s->burst_at_ms || !ovcd_known(s->target))
		return;
	if (!s->burst_seen) {
		s->burst_seen = true;
		s->target_at_burst = prev_target;   /* the sample before the burst */
		s->balloon_at_burst = prev_balloon;
	}
	if (!s->deflated_after_ms && ovcd_known(s->target_at_burst) && s->target > s->target_at_burst)
		s->deflated_after_ms = now - s->burst_at_ms;
}

/* One observation: the cgroup's available memory, the guests' balloons. */
static void observe(struct run *r)
{
	const struct spec *sp = r->spec;
	uint64_t avail, usage, now = mono_ms();
	struct json_object *gj = r->manager ? ctl_json(r, "guests") : NULL;

	for (size_t i = 0; i < sp->n; i++) {
		struct gstate *s = &r->gs[i];
		struct json_object *g = ovcd_guest_of(gj, s->g.name);
		uint64_t cur = g ? json_get_u64(g, "current_bytes") : OVC_UNKNOWN,
			 max = g ? json_get_u64(g, "max_bytes") : OVC_UNKNOWN;
		uint64_t prev_target = s->target, prev_balloon = s->balloon;

		if (kill(s->qemu_pid, 0) < 0)
			fail_msg("guest %s (%s): its QEMU (pid %d) is gone: the host's OOM killer (cgroup limit)?",
				 s->label, s->g.name, (int)s->qemu_pid);
		s->target = g ? json_get_u64(g, "target_bytes") : OVC_UNKNOWN;
		s->balloon = ovcd_known(cur) && ovcd_known(max) && cur <= max ? max - cur : OVC_UNKNOWN;
		if ((int)i == sp->idle && s->freed_at_ms)
			observe_taken(r, s, now);
		if ((int)i == sp->burst)
			observe_burst(s, now, prev_target, prev_balloon);
	}
	json_object_put(gj);
	if (cgroup_available(r, &avail, &usage) == 0) {
		if (!r->samples || avail < r->min_avail_bytes) {
			r->min_avail_bytes = avail;
			r->min_avail_at_ms = now;
		}
		r->peak_usage_bytes = MAX(r->peak_usage_bytes, usage);
		r->samples++;
	}
}

/* ---- one run ---- */

static void run_teardown(struct run *r)
{
	child_kill_wait(&r->ovcd, SIGTERM);
	for (size_t i = 0; i < r->spec->n; i++)
		harness_guest_stop(&r->gs[i].g);
	harness_libvirtd_stop(&r->lvd);
	cgroup_remove(r);
	ovcd_fixture_rm(&r->d);
}

/* What a guest says about itself at the end, and its pages checked. */
static void guest_report(struct gstate *s, uint64_t *oom, uint64_t *self_deflate)
{
	char reply[256];
	long long total, freek, avail, k, held, sd = -1;

	*oom = OVC_UNKNOWN;
	*self_deflate = OVC_UNKNOWN;
	if (harness_guest_cmd(&s->g, "meminfo", reply, sizeof(reply), 30000) == 0 &&
	    sscanf(reply, "ok MemTotal=%lld MemFree=%lld MemAvailable=%lld oom_kill=%lld held=%lld oom_deflate=%lld",
		   &total, &freek, &avail, &k, &held, &sd) >= 5) {
		*oom = (uint64_t)k;
		*self_deflate = sd < 0 ? OVC_UNKNOWN : (uint64_t)sd;
	}
	if (!s->error[0] &&
	    (harness_guest_cmd(&s->g, "verify", reply, sizeof(reply), 120000) != 0 || strncmp(reply, "ok ", 3) != 0))
		snprintf(s->error, sizeof(s->error), "verify: %s", reply);
}

static void print_ovcd_view(struct run *r, uint64_t *emerg)
{
	struct json_object *gj = ctl_json(r, "guests"), *st = ctl_json(r, "status");

	for (size_t i = 0; i < r->spec->n; i++) {
		struct json_object *g = ovcd_guest_of(gj, r->gs[i].g.name);

		emerg[i] = g ? json_get_u64(g, "emergencies") : 0;
		if (g)
			printf("    %s: ovcd: current %" PRIu64 " MiB, floor %" PRIu64 " MiB, headroom %" PRIu64
			       " MiB, keeps %" PRIu64 " MiB available; %" PRIu64 " inflates, %" PRIu64
			       " deflates, %" PRIu64 " emergencies (%" PRIu64 " between ticks); last: %s\n",
			       r->gs[i].label, json_get_u64(g, "current_bytes") / MIB,
			       json_get_u64(g, "floor_bytes") / MIB, json_get_u64(g, "headroom_bytes") / MIB,
			       json_get_u64(g, "keep_available_bytes") / MIB, json_get_u64(g, "inflates"),
			       json_get_u64(g, "deflates"), emerg[i], json_get_u64(g, "quick_deflates"),
			       json_object_get_string(json_get(g, "last_reason")));
	}
	if (st)
		printf("    ovcd: %" PRIu64 " ticks, %" PRIu64 " per-guest checks between ticks\n",
		       json_get_u64(st, "ticks"), json_get_u64(st, "checks"));
	json_object_put(gj);
	json_object_put(st);
}

static void scenario(const struct spec *sp, bool deflate_on_oom)
{
	const char *no_mgr = getenv("OVC_TEST_NO_MANAGER");
	struct run r = { .deflate_on_oom = deflate_on_oom, .spec = sp };
	struct harness_guest_opts go = { .mem_mib = 1024, .deflate_on_oom = deflate_on_oom, .stats_period_sec = 1 };
	pthread_t th[MAX_GUESTS];
	const char *why = NULL;
	uint64_t oom[MAX_GUESTS], self_deflate[MAX_GUESTS], emerg[MAX_GUESTS] = { 0 };
	struct gstate *idle = sp->idle >= 0 ? &r.gs[sp->idle] : NULL;
	struct gstate *burst = sp->burst >= 0 ? &r.gs[sp->burst] : NULL;
	bool failed = false;
	char failures[1024] = "";
	size_t fl = 0;

	r.manager = !(no_mgr && strcmp(no_mgr, "1") == 0);
	if (geteuid() != 0)
		skip_because("needs root (cgroups, libvirtd)");
	if ((why = harness_qemu_missing()) || harness_image(&r.img, &why) < 0)
		skip_because("%s", why);
	if ((why = cgroup_create(&r))) {
		cgroup_remove(&r);
		skip_because("%s", why);
	}
	if (harness_libvirtd_start(&r.lvd, &why) < 0) {
		cgroup_remove(&r);
		skip_because("%s", why);
	}
	(void)ovcd_fixture_dirs(&r.d, "policy", 0700, 0);

	printf("scenario: %zu guest(s), %s, deflate-on-oom %s; guests' cgroup %s, limit %" PRIu64 " MiB\n", sp->n,
	       r.manager ? "ovcd (shipped defaults)" : "no manager", deflate_on_oom ? "on" : "off", r.cgroup,
	       sp->limit / MIB);
	for (size_t i = 0; i < sp->n; i++) {
		struct gstate *s = &r.gs[i];
		int e;

		s->label = sp->labels[i];
		s->script = sp->scripts[i];
		s->target = s->balloon = OVC_UNKNOWN;
		e = harness_domain_start(&r.lvd, &r.img, &go, &s->g);
		if (e == -EOPNOTSUPP) {
			run_teardown(&r);
			skip_because(HARNESS_NO_NAMESPACE_WHY);
		}
		assert_ovc_ok(e);
		s->qemu_pid = domain_pid(s->g.name);
		assert_true(s->qemu_pid > 0);
		assert_ovc_ok(cgroup_join(&r, s->qemu_pid));
	}
	for (size_t i = 0; i < sp->n; i++)
		assert_ovc_ok(harness_guest_wait_ready(&r.gs[i].g, 240000));
	if (r.manager)
		ovcd_start(&r);
	else
		r.reserve_bytes = GIB; /* the default, for comparison */

	r.t0_ms = mono_ms();
	for (size_t i = 0; i < sp->n; i++)
		assert_int_equal(pthread_create(&th[i], NULL, workload, &r.gs[i]), 0);
	/* Until every script ended, the idle guest's window closed, and 10 s
	 * more; a sample every 250 ms. */
	for (uint64_t all_done_ms = 0;;) {
		bool done = true;

		observe(&r);
		for (size_t i = 0; i < sp->n; i++)
			done &= r.gs[i].done;
		if (done && !all_done_ms)
			all_done_ms = mono_ms();
		if (done && mono_ms() - all_done_ms >= 10000 &&
		    (!idle || !idle->freed_at_ms || mono_ms() - idle->freed_at_ms > TAKEN_WINDOW_MS + 1000))
			break;
		msleep(250);
	}
	for (size_t i = 0; i < sp->n; i++)
		pthread_join(th[i], NULL);

	for (size_t i = 0; i < sp->n; i++)
		guest_report(&r.gs[i], &oom[i], &self_deflate[i]);
	if (r.manager)
		print_ovcd_view(&r, emerg);

	/* The figures, then the verdict. */
	printf("  guest OOM kills:");
	for (size_t i = 0; i < sp->n; i++)
		printf(" %s %" PRIu64, r.gs[i].label, oom[i]);
	printf(" (/proc/vmstat oom_kill in each guest)\n");
	if (deflate_on_oom) {
		printf("  self-deflates:");
		for (size_t i = 0; i < sp->n; i++)
			printf(" %s %" PRIu64, r.gs[i].label, self_deflate[i]);
		printf(" (kprobe on virtio_balloon_oom_notify)\n");
	}
	printf("  host (cgroup) MemAvailable: min %" PRIu64 " MiB at %.1f s, reserve %" PRIu64
	       " MiB; peak cgroup usage %" PRIu64 " MiB of %" PRIu64 " (%" PRIu64 " samples)\n",
	       r.min_avail_bytes / MIB, secs(&r, r.min_avail_at_ms), r.reserve_bytes / MIB,
	       r.peak_usage_bytes / MIB, sp->limit / MIB, r.samples);
	if (idle) {
		printf("  %s freed %" PRIu64 " MiB at %.1f s; its QEMU's RSS %" PRIu64 " MiB then, %" PRIu64
		       " MiB 60 s later\n", idle->label, idle->freed_bytes / MIB, secs(&r, idle->freed_at_ms),
		       r.rss_b_at_free / MIB, r.rss_b_after_window / MIB);
		if (r.manager)
			printf("  %s's balloon: %" PRIu64 " MiB at the free, %" PRIu64 " MiB at most within 60 s: "
			       "%" PRIu64 "%% of what it freed taken back; 80%% %s %.1f s after the free\n",
			       idle->label, r.b_balloon_at_free / MIB, r.b_balloon_max_in_window / MIB,
			       idle->freed_bytes ? (r.b_balloon_max_in_window -
						    MIN(r.b_balloon_max_in_window, r.b_balloon_at_free)) * 100 /
							   idle->freed_bytes
						 : 0,
			       r.b_taken_80_ms ? "reached" : "not reached within",
			       r.b_taken_80_ms ? (double)r.b_taken_80_ms / 1000.0 : 60.0);
	}
	if (burst && r.manager)
		printf("  %s's burst at %.1f s: balloon %" PRIu64 " MiB, target %" PRIu64 " MiB before it; "
		       "target raised %s %.2f s after the burst began (samples every 250 ms)\n",
		       burst->label, secs(&r, burst->burst_at_ms),
		       ovcd_known(burst->balloon_at_burst) ? burst->balloon_at_burst / MIB : 0,
		       ovcd_known(burst->target_at_burst) ? burst->target_at_burst / MIB : 0,
		       burst->deflated_after_ms ? "" : "never:", (double)burst->deflated_after_ms / 1000.0);
	for (size_t i = 0; i < sp->n; i++)
		if (r.gs[i].error[0])
			printf("  guest %s: %s\n", r.gs[i].label, r.gs[i].error);

#define FAILED(...) (failed = true, fl += (size_t)snprintf(failures + fl, sizeof(failures) - MIN(fl, sizeof(failures)), __VA_ARGS__))
	for (size_t i = 0; i < sp->n; i++) {
		if (oom[i] != 0)
			FAILED("guest %s: %" PRIu64 " OOM kills; ", r.gs[i].label, oom[i]);
		if (deflate_on_oom && self_deflate[i] != 0)
			FAILED("guest %s: %" PRIu64 " self-deflates; ", r.gs[i].label, self_deflate[i]);
		if (r.gs[i].error[0])
			FAILED("guest %s: %s; ", r.gs[i].label, r.gs[i].error);
	}
	if (sp->check_reserve && r.min_avail_bytes < r.reserve_bytes)
		FAILED("host MemAvailable %" PRIu64 " MiB below the reserve %" PRIu64 " MiB; ",
		       r.min_avail_bytes / MIB, r.reserve_bytes / MIB);
	if (idle && r.manager && !r.b_taken_80_ms)
		FAILED("less than 80%% of what %s freed taken back within 60 s; ", idle->label);
	/* A burst into a guest ovcd had not ballooned proves nothing. */
	if (burst && r.manager && !(ovcd_known(burst->balloon_at_burst) && burst->balloon_at_burst >= 128 * MIB))
		FAILED("guest %s was not ballooned (by 128 MiB at least) when it burst; ", burst->label);
	if (r.manager && !failed)
		printf("  PASS\n");
	else if (!r.manager)
		printf("  (no manager: figures only)\n");
	if (failed && r.manager)
		ovcd_keep_log(&r.d, "policy");
	fflush(stdout);
	run_teardown(&r);
	if (failed && r.manager)
		fail_msg("%s", failures);
}

static void test_no_deflate_on_oom(void **state)
{
	(void)state;
	scenario(&three_guests, false);
}

static void test_deflate_on_oom(void **state)
{
	(void)state;
	scenario(&three_guests, true);
}

static void test_burst_while_ballooned(void **state)
{
	(void)state;
	scenario(&burst_guest, false);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_deflate_on_oom),
		cmocka_unit_test(test_deflate_on_oom),
		cmocka_unit_test(test_burst_while_ballooned),
	};
	static const char *names[] = { "no-deflate-on-oom", "deflate-on-oom", "burst" };

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A crashed earlier run's guests and cgroups must not skew this one. */
	harness_cleanup_leftovers(NULL);
	/* One run by name: no-deflate-on-oom, deflate-on-oom, burst. */
	for (size_t i = 0; argc > 1 && i < ARRAY_SIZE(names); i++)
		if (strcmp(argv[1], names[i]) == 0)
			return _cmocka_run_group_tests("guest-policy", tests + i, 1, NULL, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
