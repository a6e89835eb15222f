/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* unit: ovcd.conf parsing, validation, guest overrides, printing (lib/host/config.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ovc/common.h>

#include "host/config.h"
#include "ovc-test.h"
#include "common/util.h"

static struct ovcd_config *parse_ok(const char *text)
{
	struct ovcd_config *c = NULL;
	char *errors = NULL;
	int r = ovcd_config_parse("t.conf", text, strlen(text), &c, &errors);

	if (r != 0)
		fail_msg("parse failed (%d): %s", r, errors ? errors : "(no text)");
	assert_null(errors);
	assert_non_null(c);
	return c;
}

/* Parse @text as @path and check the exact error text (all lines). */
static void expect_errors_at(const char *path, const char *text, const char *expected)
{
	struct ovcd_config *c = (struct ovcd_config *)0x1;
	char *errors = NULL;
	int r = ovcd_config_parse(path, text, strlen(text), &c, &errors);

	assert_int_equal(r, -EINVAL);
	assert_ptr_equal(c, (struct ovcd_config *)0x1); /* untouched on failure */
	assert_non_null(errors);
	if (strcmp(errors, expected) != 0)
		fail_msg("for:\n%s\ngot:\n%s\nexpected:\n%s", text, errors, expected);
	free(errors);
}

static void expect_errors(const char *text, const char *expected)
{
	expect_errors_at("t.conf", text, expected);
}

static void test_defaults(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = NULL;

	assert_ovc_ok(ovcd_config_new_default(&c));
	assert_false(c->host.reserve.percent);
	assert_int_equal(c->host.reserve.bytes, GIB);
	assert_true(c->host.low.automatic);
	assert_true(c->host.high.automatic);
	assert_int_equal(ovcd_conf_size_bytes(&c->host.low, 16 * GIB), 0); /* only its resolver knows */
	assert_int_equal(c->host.interval_usec, 5 * USEC_PER_SEC);
	assert_int_equal(c->host.psi_some_basis_points, 1000);
	assert_int_equal(c->host.psi_full_basis_points, 500);
	assert_int_equal(c->host.psi_trigger_stall_usec, 100000);
	assert_int_equal(c->host.psi_trigger_window_usec, USEC_PER_SEC);
	assert_true(c->balloon.enable);
	assert_false(c->balloon.step.percent);
	assert_int_equal(c->balloon.step.bytes, GIB);
	assert_int_equal(c->balloon.floor.basis_points, 2500);
	assert_int_equal(c->balloon.guest_free.basis_points, 2000);
	assert_int_equal(c->balloon.min_change.basis_points, 25);
	assert_int_equal(c->balloon.stats_period_usec, USEC_PER_SEC);
	assert_int_equal(c->balloon.stale_after_usec, 10 * USEC_PER_SEC);
	assert_false(c->balloon.emergency_available.percent);
	assert_int_equal(c->balloon.emergency_available.bytes, 64 * MIB);
	assert_int_equal(c->balloon.emergency_stalls, 1);
	assert_int_equal(c->balloon.emergency_direct_reclaim, 256);
	assert_int_equal(c->balloon.headroom.basis_points, 2000);
	assert_int_equal(c->balloon.headroom_decay_usec, 600 * USEC_PER_SEC);
	assert_int_equal(c->balloon.idle_after_usec, 30 * USEC_PER_SEC);
	assert_int_equal(c->balloon.short_decay_usec, 600 * USEC_PER_SEC);
	assert_int_equal(c->balloon.oom_cooldown_usec, 3600 * USEC_PER_SEC);
	assert_int_equal(c->balloon.pending_timeout_usec, 30 * USEC_PER_SEC);
	struct ovcd_guest_settings gs;
	ovcd_config_guest_settings(c, "any", &gs);
	assert_true(gs.ksm);
	/* The watermarks resolve: on 24GiB, minimum free 624MiB
	 * (128MiB × 4.9, the square root rounded down in MiB). */
	uint64_t reserve, low, high;
	ovcd_config_watermarks(c, 24 * GIB, &reserve, &low, &high);
	assert_int_equal(reserve, GIB);
	assert_int_equal(low, GIB + 312 * MIB);
	assert_int_equal(high, GIB + 624 * MIB);
	ovcd_config_watermarks(c, 512 * MIB, &reserve, &low, &high);
	assert_int_equal(reserve, 0); /* not below MemTotal: none */
	assert_int_equal(low, 44 * MIB);
	assert_int_equal(high, 88 * MIB);
	assert_int_equal(c->balloon.emergency_major_faults, 200);
	assert_int_equal(c->balloon.emergency_swap_in.bytes, MIB);
	assert_int_equal(c->balloon.emergency_step.basis_points, 2500);
	assert_true(c->ksm.enable);
	assert_true(c->ksm.use_zero_pages);
	assert_int_equal(c->ksm.min_pages_to_scan, 64);
	assert_int_equal(c->ksm.max_pages_to_scan, 1250);
	assert_int_equal(c->ksm.pages_boost, 300);
	assert_int_equal(c->ksm.pages_decay, 50);
	assert_int_equal(c->ksm.threshold.basis_points, 2000);
	assert_int_equal(c->ksm.min_profit.bytes, 16 * MIB);
	assert_int_equal(c->ksm.idle_ticks, 12);
	assert_int_equal(c->ksm.retry_after_usec, 600 * USEC_PER_SEC);
	assert_true(c->swap.enable);
	assert_int_equal(c->swap.max.basis_points, 2500);
	assert_int_equal(c->swap.step.basis_points, 200);
	assert_string_equal(c->engine.dir, "/run/ovc/engines");
	assert_string_equal(c->metrics.listen, "");
	assert_string_equal(c->metrics.textfile, "");
	assert_string_equal(c->control.socket, "/run/ovcd/ovcd.sock");
	assert_string_equal(c->control.group, "");
	assert_int_equal(c->n_guests, 0);
	assert_string_equal(c->path, "(defaults)");

	/* An empty file is the defaults. */
	ovcd_config_free(parse_ok(""));
}

static const char full_text[] =
	"\xef\xbb\xbf# a comment\n"
	"; another\n"
	"[host]\n"
	"reserve = 2GiB\n"
	"  low = 1.5GiB ; indented, with an inline comment\n"
	"high = 4GiB\r\n"
	"interval: 2s\n"
	"psi_some = 20%\n"
	"psi_full = 7.5%\n"
	"psi_trigger_stall = 0\n"
	"psi_trigger_window = 2s\n"
	"\n"
	"[balloon]\n"
	"enable = on\n"
	"step = 128MiB\n"
	"floor = 30%\n"
	"guest_free = 15%\n"
	"min_change = 4MiB\n"
	"stats_period = 1s\n"
	"stale_after = 5s\n"
	"emergency_available = 64MiB\n"
	"emergency_major_faults = 0\n"
	"emergency_swap_in = 0\n"
	"emergency_step = 100%\n"
	"[ksm]\n"
	"enable = no\n"
	"use_zero_pages = false\n"
	"min_pages_to_scan = 100\n"
	"max_pages_to_scan = 5000\n"
	"pages_boost = 1000\n"
	"pages_decay = 10\n"
	"threshold = 3GiB\n"
	"min_profit = 0\n"
	"idle_ticks = 3\n"
	"retry_after = 1h\n"
	"[swap]\n"
	"enable = 0\n"
	"max = 1GiB\n"
	"step = 0\n"
	"[metrics]\n"
	"listen = 127.0.0.1:9848\n"
	"textfile = \"/var/lib/node_exporter/ovcd.prom\"\n"
	"[control]\n"
	"socket = /run/ovc.sock\n"
	"group = kvm\n"
	"[guest \"db-*\"]\n"
	"floor = 4GiB\n"
	"never_swap = yes\n"
	"priority = 90\n"
	"[ guest  \"web[12]\" ] ; brackets in the glob\n"
	"step = 10%\n"
	"never_balloon = true\n"
	"[guest \"*\"]\n"
	"floor = 512MiB\n"
	"guest_free = 10%\n"
	"step = 64MiB\n"
	"priority = 10\n";

static void test_full_config(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = parse_ok(full_text);

	assert_string_equal(c->path, "t.conf");
	assert_int_equal(c->host.reserve.bytes, 2 * GIB);
	assert_false(c->host.low.percent);
	assert_int_equal(c->host.low.bytes, 1536 * MIB);
	assert_int_equal(c->host.high.bytes, 4 * GIB);
	assert_int_equal(c->host.interval_usec, 2 * USEC_PER_SEC);
	assert_int_equal(c->host.psi_some_basis_points, 2000);
	assert_int_equal(c->host.psi_full_basis_points, 750);
	assert_int_equal(c->host.psi_trigger_stall_usec, 0);
	assert_int_equal(c->host.psi_trigger_window_usec, 2 * USEC_PER_SEC);
	assert_true(c->balloon.enable);
	assert_int_equal(c->balloon.step.bytes, 128 * MIB);
	assert_int_equal(c->balloon.floor.basis_points, 3000);
	assert_int_equal(c->balloon.guest_free.basis_points, 1500);
	assert_int_equal(c->balloon.min_change.bytes, 4 * MIB);
	assert_int_equal(c->balloon.stats_period_usec, USEC_PER_SEC);
	assert_int_equal(c->balloon.stale_after_usec, 5 * USEC_PER_SEC);
	assert_int_equal(c->balloon.emergency_available.bytes, 64 * MIB);
	assert_int_equal(c->balloon.emergency_major_faults, 0);
	assert_int_equal(c->balloon.emergency_swap_in.bytes, 0);
	assert_int_equal(c->balloon.emergency_step.basis_points, 10000);
	assert_false(c->ksm.enable);
	assert_false(c->ksm.use_zero_pages);
	assert_int_equal(c->ksm.min_pages_to_scan, 100);
	assert_int_equal(c->ksm.max_pages_to_scan, 5000);
	assert_int_equal(c->ksm.pages_boost, 1000);
	assert_int_equal(c->ksm.pages_decay, 10);
	assert_int_equal(c->ksm.threshold.bytes, 3 * GIB);
	assert_int_equal(c->ksm.min_profit.bytes, 0);
	assert_int_equal(c->ksm.idle_ticks, 3);
	assert_int_equal(c->ksm.retry_after_usec, 3600 * USEC_PER_SEC);
	assert_false(c->swap.enable);
	assert_int_equal(c->swap.max.bytes, GIB);
	assert_int_equal(c->swap.step.bytes, 0);
	assert_string_equal(c->metrics.listen, "127.0.0.1:9848");
	assert_string_equal(c->metrics.textfile, "/var/lib/node_exporter/ovcd.prom");
	assert_string_equal(c->control.socket, "/run/ovc.sock");
	assert_string_equal(c->control.group, "kvm");
	assert_int_equal(c->n_guests, 3);
	assert_string_equal(c->guests[0].pattern, "db-*");
	assert_int_equal(c->guests[0].line, 46);
	assert_int_equal(c->guests[0].set,
			 OVC_GUEST_SET_FLOOR | OVC_GUEST_SET_NEVER_SWAP | OVC_GUEST_SET_PRIORITY);
	assert_string_equal(c->guests[1].pattern, "web[12]");
	assert_string_equal(c->guests[2].pattern, "*");
}

static void test_guest_settings(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = parse_ok(full_text);
	struct ovcd_guest_settings s;

	/* db-1: floor, never_swap, priority from "db-*"; guest_free and step
	 * from "*" (the first section that sets them); never_balloon default. */
	ovcd_config_guest_settings(c, "db-1", &s);
	assert_int_equal(s.floor.bytes, 4 * GIB);
	assert_false(s.floor.percent);
	assert_true(s.never_swap);
	assert_false(s.never_balloon);
	assert_int_equal(s.priority, 90);
	assert_int_equal(s.guest_free.basis_points, 1000);
	assert_int_equal(s.step.bytes, 64 * MIB);

	ovcd_config_guest_settings(c, "web2", &s);
	assert_true(s.never_balloon);
	assert_int_equal(s.step.basis_points, 1000);
	assert_true(s.step.percent);
	assert_int_equal(s.floor.bytes, 512 * MIB);
	assert_int_equal(s.priority, 10);
	assert_false(s.never_swap);

	ovcd_config_guest_settings(c, "web3", &s); /* only "*" */
	assert_false(s.never_balloon);
	assert_int_equal(s.step.bytes, 64 * MIB);

	/* No [guest] section: [balloon] values and priority 50. */
	_cleanup_(ovcd_config_freep) struct ovcd_config *d = NULL;
	assert_ovc_ok(ovcd_config_new_default(&d));
	ovcd_config_guest_settings(d, "anything", &s);
	assert_int_equal(s.floor.basis_points, 2500);
	assert_int_equal(s.step.bytes, GIB);
	assert_int_equal(s.guest_free.basis_points, 2000);
	assert_int_equal(s.priority, 50);
	assert_false(s.never_balloon || s.never_swap);
}

static char *print_to_string(const struct ovcd_config *c)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);

	assert_non_null(f);
	assert_ovc_ok(ovcd_config_print(c, f));
	fclose(f);
	return buf;
}

/* The printout is a config file that parses back to the same config. */
static void test_print_round_trip(void **state)
{
	_cleanup_(ovcd_config_freep) struct ovcd_config *c = parse_ok(full_text);
	_cleanup_(freep) char *out1 = print_to_string(c);
	_cleanup_(ovcd_config_freep) struct ovcd_config *c2 = parse_ok(out1);
	_cleanup_(freep) char *out2 = print_to_string(c2);
	/* Only the first line (the source path) differs. */
	assert_string_equal(strchr(out1, '\n'), strchr(out2, '\n'));
	assert_non_null(strstr(out1, "\n[host]\nreserve = 2GiB\nlow = 1536MiB\nhigh = 4GiB\nkeep_headroom = yes\n"
				     "interval = 2s\npsi_some = 20%\npsi_full = 7.5%\n"));
	assert_non_null(strstr(out1, "\n[guest \"web[12]\"]\nstep = 10%\nnever_balloon = yes\n\n"));
	assert_non_null(strstr(out1, "\nmin_change = 4MiB\n"));

	_cleanup_(ovcd_config_freep) struct ovcd_config *d = NULL;
	assert_ovc_ok(ovcd_config_new_default(&d));
	_cleanup_(freep) char *dflt = print_to_string(d);
	assert_non_null(strstr(dflt, "\n[metrics]\nlisten = \"\"\ntextfile = \"\"\n"));
	assert_non_null(strstr(dflt, "\nmin_change = 0.25%\n"));
	_cleanup_(ovcd_config_freep) struct ovcd_config *d2 = parse_ok(dflt);
	_cleanup_(freep) char *dflt2 = print_to_string(d2);
	assert_string_equal(strchr(dflt, '\n'), strchr(dflt2, '\n'));
}

#define SECTIONS "(expected host, balloon, ksm, swap, metrics, control or guest \"PATTERN\")"

static void test_error_sections(void **state)
{
	expect_errors("[balon]\nstep = 5%\n",
		      "t.conf:1: unknown section [balon] " SECTIONS "\n");
	expect_errors("[host]\nlow = 5%\n\n[balloon]\n[host]\nhigh = 50%\n",
		      "t.conf:5: duplicate section [host] (first at line 1)\n");
	expect_errors("[guest \"web*]\nfloor = 1GiB\n",
		      "t.conf:1: bad section [guest \"web*]: missing closing quote\n");
	expect_errors("[guest web*]\n",
		      "t.conf:1: bad section [guest web*]: the guest pattern must be in double quotes, "
		      "as in [guest \"web-*\"]\n");
	expect_errors("[guest \"\"]\n", "t.conf:1: bad section [guest \"\"]: empty guest pattern\n");
	expect_errors("[guest \"a\" x]\n",
		      "t.conf:1: bad section [guest \"a\" x]: expected ']' after the closing quote\n");
	expect_errors("[guest \"a*\"]\nfloor = 1GiB\n[guest \"b\"]\n[guest \"a*\"]\n",
		      "t.conf:4: duplicate section [guest \"a*\"] (first at line 1)\n");
	expect_errors("[host\n", "t.conf:1: bad section [host: missing ']'\n");
	expect_errors("[host x]\n",
		      "t.conf:1: bad section [host x]: expected [NAME] or [guest \"PATTERN\"]\n");
	expect_errors("[]\n", "t.conf:1: bad section []: expected [NAME] or [guest \"PATTERN\"]\n");
	expect_errors("[host] junk\n",
		      "t.conf:1: bad section [host] junk: expected [NAME] or [guest \"PATTERN\"]\n");
	expect_errors("[ho\"st\"]\n",
		      "t.conf:1: bad section [ho\"st\"]: expected [NAME] or [guest \"PATTERN\"]\n");
	expect_errors("step = 5%\n[balloon]\n", "t.conf:1: key 'step' outside any section\n");
}

static void test_error_keys(void **state)
{
	/* The example of the issue, to the byte. */
	expect_errors_at("/etc/ovc/ovcd.conf",
			 "# ovcd.conf\n\n[host]\nlow = 10%\nhigh = 20%\n\n[ksm]\nenable = yes\n\n"
			 "[balloon]\nfloor = 25%\nstep = 12XB\n",
			 "/etc/ovc/ovcd.conf:12: [balloon] step: bad size '12XB' "
			 "(expected a number with B, KiB, MiB, GiB, TiB or %)\n");
	expect_errors("[balloon]\nstepp = 5%\n", "t.conf:2: [balloon] stepp: unknown key\n");
	/* The keys of the learned headroom, relief and compliance. */
	expect_errors("[balloon]\n\nheadroom = 150%\n",
		      "t.conf:3: [balloon] headroom: '150%' is out of range (0% to 100%)\n");
	expect_errors("[balloon]\nheadroom = auto\n",
		      "t.conf:2: [balloon] headroom: bad size 'auto' "
		      "(expected a number with B, KiB, MiB, GiB, TiB or %)\n");
	expect_errors("[balloon]\nheadroom_decay = 0s\n",
		      "t.conf:2: [balloon] headroom_decay: 0s is out of range (1s to 24h)\n");
	expect_errors("[balloon]\nshort_decay = soon\n",
		      "t.conf:2: [balloon] short_decay: bad duration 'soon' "
		      "(expected a number with us, ms, s, min or h)\n");
	expect_errors("[balloon]\noom_cooldown = 8d\n",
		      "t.conf:2: [balloon] oom_cooldown: bad duration '8d' "
		      "(expected a number with us, ms, s, min or h)\n");
	expect_errors("[balloon]\noom_cooldown = 200h\n",
		      "t.conf:2: [balloon] oom_cooldown: 200h is out of range (0s to 168h)\n");
	expect_errors("[balloon]\npending_timeout = 500ms\n",
		      "t.conf:2: [balloon] pending_timeout: 500ms is out of range (1s to 1h)\n");
	expect_errors("[balloon]\nidle_after = 25h\n",
		      "t.conf:2: [balloon] idle_after: 25h is out of range (0s to 24h)\n");
	expect_errors("[balloon]\nemergency_stalls = -1\n",
		      "t.conf:2: [balloon] emergency_stalls: bad integer '-1' (expected digits 0-9)\n");
	expect_errors("[balloon]\nemergency_direct_reclaim = 2000000000\n",
		      "t.conf:2: [balloon] emergency_direct_reclaim: 2000000000 is out of range "
		      "(0 to 1000000000)\n");
	expect_errors("[guest \"web-*\"]\nksm = maybe\n",
		      "t.conf:2: [guest \"web-*\"] ksm: bad boolean 'maybe' "
		      "(expected yes, no, true, false, on, off, 1 or 0)\n");
	expect_errors("[balloon]\nstep = 5%\n\nstep = 6%\n",
		      "t.conf:4: [balloon] step: duplicate key (first at line 2)\n");
	expect_errors("[guest \"x\"]\nfloor = 1GiB\nfloor = 2GiB\n",
		      "t.conf:3: [guest \"x\"] floor: duplicate key (first at line 2)\n");
	expect_errors("[guest \"x\"]\nreserve = 1GiB\n",
		      "t.conf:2: [guest \"x\"] reserve: unknown key\n");
	expect_errors("[balloon]\nemergency_swap_in = 10%\n",
		      "t.conf:2: [balloon] emergency_swap_in: bad size '10%' "
		      "(expected a number with B, KiB, MiB, GiB or TiB)\n");
	expect_errors("[balloon]\nemergency_swap_in = 99999999TiB\n",
		      "t.conf:2: [balloon] emergency_swap_in: '99999999TiB' is too large\n");
	expect_errors("[balloon]\nemergency_swap_in = 17TiB\n",
		      "t.conf:2: [balloon] emergency_swap_in: 17TiB is out of range (0B to 16TiB)\n");
	expect_errors("[balloon]\nstep = 512KiB\n",
		      "t.conf:2: [balloon] step: 512KiB is out of range (1MiB to 16TiB)\n");
	expect_errors("[balloon]\nstep = 0%\n",
		      "t.conf:2: [balloon] step: 0% is out of range (0.01% to 100%)\n");
	expect_errors("[host]\nlow = 95%\n", "t.conf:2: [host] low: 95% is out of range (0% to 90%)\n");
	expect_errors("[host]\nlow = 150%\n",
		      "t.conf:2: [host] low: '150%' is out of range (0% to 90%)\n");
	expect_errors("[host]\ninterval = 50ms\n",
		      "t.conf:2: [host] interval: 50ms is out of range (100ms to 10min)\n");
	expect_errors("[host]\ninterval = 5\n",
		      "t.conf:2: [host] interval: bad duration '5' "
		      "(expected a number with us, ms, s, min or h)\n");
	expect_errors("[host]\ninterval = 99999999999h\n",
		      "t.conf:2: [host] interval: '99999999999h' is too large\n");
	expect_errors("[host]\npsi_some = 10\n",
		      "t.conf:2: [host] psi_some: bad percentage '10' (expected a number with %)\n");
	expect_errors("[host]\npsi_some = 1GiB\n",
		      "t.conf:2: [host] psi_some: bad percentage '1GiB' (expected a number with %)\n");
	expect_errors("[host]\npsi_full = 200%\n",
		      "t.conf:2: [host] psi_full: '200%' is out of range (0% to 100%)\n");
	expect_errors("[ksm]\nenable = maybe\n",
		      "t.conf:2: [ksm] enable: bad boolean 'maybe' "
		      "(expected yes, no, true, false, on, off, 1 or 0)\n");
	expect_errors("[ksm]\nidle_ticks = 3x\n",
		      "t.conf:2: [ksm] idle_ticks: bad integer '3x' (expected digits 0-9)\n");
	expect_errors("[ksm]\nidle_ticks = -1\n",
		      "t.conf:2: [ksm] idle_ticks: bad integer '-1' (expected digits 0-9)\n");
	expect_errors("[ksm]\nidle_ticks = 0\n",
		      "t.conf:2: [ksm] idle_ticks: 0 is out of range (1 to 100000)\n");
	expect_errors("[ksm]\nidle_ticks = 99999999999999999999999\n",
		      "t.conf:2: [ksm] idle_ticks: 99999999999999999999999 is out of range (1 to 100000)\n");
	expect_errors("[guest \"g\"]\npriority = 101\n",
		      "t.conf:2: [guest \"g\"] priority: 101 is out of range (0 to 100)\n");
	expect_errors("[control]\nsocket = run/ovcd.sock\n",
		      "t.conf:2: [control] socket: bad value 'run/ovcd.sock' (expected an absolute path)\n");
	expect_errors("[control]\nsocket = \"\"\n",
		      "t.conf:2: [control] socket: bad value '' (expected an absolute path)\n");
	expect_errors("[control]\nsocket = /run/"
		      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
		      "t.conf:2: [control] socket: bad value '/run/"
		      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' "
		      "(longer than 107 bytes, the limit of a unix socket path)\n");
	expect_errors("[control]\ngroup = Kvm!\n",
		      "t.conf:2: [control] group: bad value 'Kvm!' (expected a group name)\n");
	expect_errors("[engine]\n\ndir = run/ovc/engines\n",
		      "t.conf:3: [engine] dir: bad value 'run/ovc/engines' (expected an absolute path)\n");
	expect_errors("[metrics]\ntextfile = x.prom\n",
		      "t.conf:2: [metrics] textfile: bad value 'x.prom' (expected an absolute path)\n");
	static const char *const bad_listen[] = {
		"0.0.0.0:9848", "10.0.0.1:80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
		"[::]:80", "[::1]80", "localhost:", "127.0.0.256:80", "example.com:80",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad_listen); i++) {
		char text[128], expected[256];
		snprintf(text, sizeof(text), "[metrics]\nlisten = %s\n", bad_listen[i]);
		snprintf(expected, sizeof(expected),
			 "t.conf:2: [metrics] listen: bad value '%s' (expected a loopback address and "
			 "port: 127.0.0.1:PORT, [::1]:PORT or localhost:PORT)\n",
			 bad_listen[i]);
		expect_errors(text, expected);
	}
	static const char *const good_listen[] = { "127.0.0.1:1", "[::1]:9848", "localhost:65535",
						   "127.1.2.3:80" };
	for (size_t i = 0; i < ARRAY_SIZE(good_listen); i++) {
		char text[128];
		snprintf(text, sizeof(text), "[metrics]\nlisten = %s\n", good_listen[i]);
		_cleanup_(ovcd_config_freep) struct ovcd_config *c = parse_ok(text);
		assert_string_equal(c->metrics.listen, good_listen[i]);
	}
}

static void test_error_syntax(void **state)
{
	expect_errors("[host]\nlow 10%\n",
		      "t.conf:2: syntax error: expected [SECTION] or KEY = VALUE\n");
	expect_errors("[host]\n= 10%\n", "t.conf:2: syntax error: empty key name\n");

	char text[400];
	memset(text, 0, sizeof(text));
	strcpy(text, "[host]\nlow = ");
	memset(text + strlen(text), '1', 250);
	strcat(text, "\nhigh = nonsense\n");
	expect_errors(text, "t.conf:2: line too long (at most 198 characters)\n"
			    "t.conf:3: [host] high: bad size 'nonsense' "
			    "(expected a number with B, KiB, MiB, GiB, TiB or %, or auto)\n");

	/* A NUL byte in the middle of the file. */
	static const char nul[] = "[host]\nlow = 1\0x\nhigh = 5%\n";
	struct ovcd_config *c = NULL;
	char *errors = NULL;
	assert_int_equal(ovcd_config_parse("t.conf", nul, sizeof(nul) - 1, &c, &errors), -EINVAL);
	assert_string_equal(errors, "t.conf:2: line contains a NUL byte\n");
	free(errors);
}

/* All errors of a file are reported, in line order; keys of a broken
 * section are skipped rather than reported one by one. */
static void test_error_many(void **state)
{
	expect_errors("[host]\nlow = 1XB\n[bogus]\na = 1\nb = 2\n[balloon]\nfloor = -1\nnope = 1\n",
		      "t.conf:2: [host] low: bad size '1XB' (expected a number with B, KiB, MiB, GiB, TiB or %, or auto)\n"
		      "t.conf:3: unknown section [bogus] " SECTIONS "\n"
		      "t.conf:7: [balloon] floor: bad size '-1' (expected a number with B, KiB, MiB, GiB, TiB or %)\n"
		      "t.conf:8: [balloon] nope: unknown key\n");
}

static void test_error_cross_checks(void **state)
{
	expect_errors("[host]\nlow = 30%\nhigh = 20%\n",
		      "t.conf:3: [host] high: high (20%) must be above low (30%)\n");
	/* auto against a fixed value needs MemTotal: high is then never
	 * below low (ovcd_config_watermarks). */
	ovcd_config_free(parse_ok("[host]\nlow = 30%\n"));
	ovcd_config_free(parse_ok("[host]\nhigh = 1GiB\nlow = auto\n"));
	expect_errors("[host]\nhigh = 2GiB\nlow = 2GiB\n",
		      "t.conf:3: [host] low: high (2GiB) must be above low (2GiB)\n");
	expect_errors("[host]\nlow = 4GiB\nhigh = 1GiB\n",
		      "t.conf:3: [host] high: high (1GiB) must be above low (4GiB)\n");
	/* A size against a percentage cannot be compared without MemTotal. */
	ovcd_config_free(parse_ok("[host]\nlow = 30GiB\nhigh = 20%\n"));
	expect_errors("[balloon]\nstats_period = 1500ms\nstale_after = 10s\n",
		      "t.conf:2: [balloon] stats_period: 1500ms is not a whole number of seconds\n");
	expect_errors("[balloon]\nstale_after = 1s\n",
		      "t.conf:2: [balloon] stale_after: stale_after (1s) must be longer than "
		      "stats_period (1s)\n");
	expect_errors("[balloon]\nstats_period = 20s\n",
		      "t.conf:2: [balloon] stats_period: stale_after (10s) must be longer than "
		      "stats_period (20s)\n");
	expect_errors("[ksm]\nmin_pages_to_scan = 2000\n",
		      "t.conf:2: [ksm] min_pages_to_scan: min_pages_to_scan (2000) must not exceed "
		      "max_pages_to_scan (1250)\n");
	expect_errors("[ksm]\nmin_pages_to_scan = 100\nmax_pages_to_scan = 50\n",
		      "t.conf:3: [ksm] max_pages_to_scan: min_pages_to_scan (100) must not exceed "
		      "max_pages_to_scan (50)\n");
	expect_errors("[host]\npsi_trigger_stall = 2s\n",
		      "t.conf:2: [host] psi_trigger_stall: psi_trigger_stall (2s) must not exceed "
		      "psi_trigger_window (1s)\n");
}

static void test_api_misuse_and_files(void **state)
{
	struct ovcd_config *c = NULL;
	char *errors = NULL;

	assert_int_equal(ovcd_config_parse(NULL, "", 0, &c, NULL), -EINVAL);
	assert_int_equal(ovcd_config_parse("x", NULL, 3, &c, NULL), -EINVAL);
	assert_int_equal(ovcd_config_parse("x", "", 0, NULL, NULL), -EINVAL);
	/* NULL text with length 0 is an empty file. */
	assert_ovc_ok(ovcd_config_parse("x", NULL, 0, &c, NULL));
	ovcd_config_free(c);
	c = NULL;
	ovcd_config_free(NULL);

	/* Errors without an errors pointer still fail cleanly. */
	assert_int_equal(ovcd_config_parse("x", "[x]\n", 4, &c, NULL), -EINVAL);
	assert_null(c);

	size_t big = (1u << 20) + 1;
	char *text = malloc(big);
	assert_non_null(text);
	memset(text, '#', big);
	assert_int_equal(ovcd_config_parse("big.conf", text, big, &c, &errors), -EFBIG);
	assert_string_equal(errors, "big.conf: file too large (1048577 bytes, at most 1048576)\n");
	free(errors);
	errors = NULL;

	assert_int_equal(ovcd_config_load("/nonexistent/ovcd.conf", &c, &errors), -ENOENT);
	assert_string_equal(errors, "/nonexistent/ovcd.conf: cannot read: No such file or directory\n");
	free(errors);
	errors = NULL;
	assert_int_equal(ovcd_config_load("/", &c, &errors), -EISDIR);
	free(errors);
	errors = NULL;
	/* A FIFO with no writer: refused at once (an open without
	 * O_NONBLOCK would wait for a writer forever). */
	{
		char fifo[] = "/tmp/ovc-test-config-fifo-XXXXXX", path_buf[64];

		assert_non_null(mkdtemp(fifo));
		assert_true(strlen(fifo) + 6 < sizeof(path_buf));
		snprintf(path_buf, sizeof(path_buf), "%s/conf", fifo);
		assert_int_equal(mkfifo(path_buf, 0600), 0);
		assert_int_equal(ovcd_config_load(path_buf, &c, &errors), -EINVAL);
		assert_null(c);
		assert_non_null(strstr(errors, "/conf: cannot read: not a regular file\n"));
		free(errors);
		errors = NULL;
		unlink(path_buf);
		rmdir(fifo);
	}

	char path[] = "/tmp/ovc-test-config-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, full_text, strlen(full_text)), (ssize_t)strlen(full_text));
	close(fd);
	assert_ovc_ok(ovcd_config_load(path, &c, &errors));
	assert_string_equal(c->path, path);
	assert_int_equal(c->n_guests, 3);
	ovcd_config_free(c);
	c = NULL;

	/* A big file is refused by size, from the file too. */
	FILE *f = fopen(path, "we");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, big, f), big);
	fclose(f);
	assert_int_equal(ovcd_config_load(path, &c, &errors), -EFBIG);
	assert_null(c);
	free(errors);
	unlink(path);
	free(text);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = 0;
	fclose(f);
	return buf;
}

/* The part of @text between the line @start and the next line starting
 * with @next_prefix (or the end); a malloc'd copy, or NULL. */
static char *block(const char *text, const char *start, const char *next_prefix)
{
	const char *b = strstr(text, start);
	if (!b)
		return NULL;
	b += strlen(start);
	const char *e = b;
	size_t np = strlen(next_prefix);
	while ((e = strchr(e, '\n')) && strncmp(e + 1, next_prefix, np) != 0)
		e++;
	return strndup(b, e ? (size_t)(e - b) : strlen(b));
}

struct doc_check {
	const char *conf;   /* daemon/ovcd.conf */
	const char *man;    /* docs/man/ovcd.conf.5 */
	unsigned keys;
};

static void check_key_documented(void *userdata, const char *section, const char *key,
				 const char *def)
{
	struct doc_check *dc = userdata;
	char head[64], line[256];
	bool guest = strcmp(section, "guest") == 0;

	dc->keys++;
	/* Shipped example: "#KEY = DEFAULT" inside its section (guest keys:
	 * inside the commented example, with the default when it has one). */
	snprintf(head, sizeof(head), guest ? "\n#[guest \"" : "\n[%s]\n", section);
	_cleanup_(freep) char *cb = block(dc->conf, head, guest ? "[" : "[");
	if (!cb)
		fail_msg("daemon/ovcd.conf: no section for [%s]", section);
	if (*def || !guest)
		snprintf(line, sizeof(line), "\n#%s =%s%s\n", key, *def ? " " : "", def);
	else
		snprintf(line, sizeof(line), "\n#%s = ", key);
	if (!strstr(cb, line))
		fail_msg("daemon/ovcd.conf: [%s] lacks '%s'", section, line + 1);

	/* Man page: "\fBKEY =\fR ... (default: DEFAULT)" in its section. */
	snprintf(head, sizeof(head), guest ? "\n.SS [guest" : "\n.SS [%s]\n", section);
	_cleanup_(freep) char *mb = block(dc->man, head, ".S");
	if (!mb)
		fail_msg("ovcd.conf.5: no .SS for [%s]", section);
	snprintf(line, sizeof(line), "\\fB%s =\\fR", key);
	const char *l = strstr(mb, line);
	if (!l)
		fail_msg("ovcd.conf.5: [%s] %s undocumented", section, key);
	char want[128];
	snprintf(want, sizeof(want), "(default: %s)", *def ? def : guest ? "from [balloon]" : "none");
	const char *eol = strchr(l, '\n');
	if (!eol || !memmem(l, (size_t)(eol - l), want, strlen(want)))
		fail_msg("ovcd.conf.5: [%s] %s: line lacks '%s'", section, key, want);
}

/* Docs move with code: every key of the table is in the shipped example
 * and in ovcd.conf(5) with its default, and the shipped example parses to
 * the defaults as it is and with every default line uncommented. */
static void test_docs_and_shipped_config(void **state)
{
	_cleanup_(freep) char *conf_text = slurp(OVC_SOURCE_ROOT "/daemon/ovcd.conf");
	_cleanup_(freep) char *man = slurp(OVC_SOURCE_ROOT "/docs/man/ovcd.conf.5");
	struct doc_check dc = { conf_text, man, 0 };

	ovcd_config_foreach_key(check_key_documented, &dc);
	assert_true(dc.keys >= 40);

	_cleanup_(ovcd_config_freep) struct ovcd_config *d = NULL;
	assert_ovc_ok(ovcd_config_new_default(&d));
	_cleanup_(freep) char *want = print_to_string(d);

	_cleanup_(ovcd_config_freep) struct ovcd_config *shipped = parse_ok(conf_text);
	_cleanup_(freep) char *got = print_to_string(shipped);
	assert_string_equal(strchr(got, '\n'), strchr(want, '\n'));

	/* Uncomment "#key = value" lines up to the guest example. */
	size_t n = strlen(conf_text);
	_cleanup_(freep) char *un = malloc(n + 1);
	assert_non_null(un);
	char *o = un;
	bool stop = false;
	for (const char *p = conf_text; *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) + 1 : strlen(p);
		if (strncmp(p, "#[guest", 7) == 0)
			stop = true;
		if (!stop && p[0] == '#' && p[1] >= 'a' && p[1] <= 'z' && memchr(p, '=', len)) {
			memcpy(o, p + 1, len - 1);
			o += len - 1;
		} else {
			memcpy(o, p, len);
			o += len;
		}
		p += len;
	}
	*o = 0;
	_cleanup_(ovcd_config_freep) struct ovcd_config *all = parse_ok(un);
	_cleanup_(freep) char *got2 = print_to_string(all);
	assert_string_equal(strchr(got2, '\n'), strchr(want, '\n'));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_config),
		cmocka_unit_test(test_guest_settings),
		cmocka_unit_test(test_print_round_trip),
		cmocka_unit_test(test_error_sections),
		cmocka_unit_test(test_error_keys),
		cmocka_unit_test(test_error_syntax),
		cmocka_unit_test(test_error_many),
		cmocka_unit_test(test_error_cross_checks),
		cmocka_unit_test(test_api_misuse_and_files),
		cmocka_unit_test(test_docs_and_shipped_config),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
