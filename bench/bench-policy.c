/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench policy [--json] [--repeat TICKS] [GUESTS]
 *
 * CPU cost of one daemon tick's decision with GUESTS (default 1000)
 * simulated guests: the simulated driver's stats are sanitized as the
 * drivers do, then ovcd_policy_tick() decides for all of them. The host
 * cycles through pressure, steady and room so every path runs. The budget
 * is 20 ms of CPU per tick at 1000 guests. The peer measured in the same run is
 * what every tick must pay anyway: reading the host signals (/proc/meminfo,
 * memory PSI, KSM counters). Medians over the ticks.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "host/config.h"
#include "host/guest.h"
#include "host/host.h"
#include "host/ksm.h"
#include "host/policy.h"
#include "common/util.h"

#define BUDGET_MS 20.0

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Deterministic, so two runs simulate the same guests. */
struct sim {
	uint64_t used;
	uint64_t majflt, swapin;
};

static const char conf_text[] =
	"[host]\nlow = 10%\nhigh = 20%\n"
	"[guest \"db-*\"]\nfloor = 50%\npriority = 90\nnever_swap = yes\n"
	"[guest \"batch-*\"]\npriority = 0\nstep = 10%\n"
	"[guest \"vip-*\"]\nnever_balloon = yes\n"
	"[guest \"web-[0-4]*\"]\nguest_free = 15%\n"
	"[guest \"*\"]\nfloor = 512MiB\n";

static const char *const prefixes[] = { "web-", "db-", "batch-", "vip-", "misc-" };

int bench_policy(const struct bench_opts *opts)
{
	size_t n = 1000;
	unsigned ticks = opts->repeat ? opts->repeat : 300;
	struct ovcd_config *cfg = NULL;
	char *errors = NULL;
	int rc = 1;

	if (opts->argc > 0) {
		n = strtoul(opts->argv[0], NULL, 10);
		if (n == 0 || n > 1000000) {
			fprintf(stderr, "ovc-bench policy: bad guest count '%s'\n", opts->argv[0]);
			return 2;
		}
	}
	if (ovcd_config_parse("bench", conf_text, strlen(conf_text), &cfg, &errors) < 0) {
		fprintf(stderr, "ovc-bench policy: %s", errors);
		free(errors);
		return 1;
	}

	struct ovcd_policy_guest *g = calloc(n, sizeof(*g));
	struct ovcd_policy_decision *d = calloc(n, sizeof(*d));
	struct sim *sim = calloc(n, sizeof(*sim));
	char (*names)[32] = calloc(n, sizeof(*names));
	double *policy_ms = calloc(ticks, sizeof(double));
	double *collect_ms = calloc(ticks, sizeof(double));
	if (!g || !d || !sim || !names || !policy_ms || !collect_ms) {
		fprintf(stderr, "ovc-bench policy: out of memory\n");
		goto out;
	}

	uint64_t seed = 0x9e3779b97f4a7c15u, sum_max = 0;
	uint64_t t0 = thread_cpu_ns();
	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "%s%zu", prefixes[i % ARRAY_SIZE(prefixes)], i);
		g[i].name = names[i];
		g[i].kind = i % 10 == 9 ? OVC_DRIVER_ENGINE : OVC_DRIVER_LIBVIRT;
		ovcd_config_guest_settings(cfg, names[i], &g[i].settings);
		uint64_t max = (1 + xorshift64(&seed) % 16) * GIB;
		g[i].target_bytes = max;
		ovcd_guest_stats_reset(&g[i].stats);
		g[i].stats.max_bytes = max;
		sim[i].used = max / 8 + xorshift64(&seed) % (max / 2);
		sum_max += max;
	}
	double resolve_ms = (double)(thread_cpu_ns() - t0) / 1e6;

	struct ovcd_policy_ksm_state ks = { 0 };
	struct ovcd_policy_out out;
	struct ovcd_policy_host h = { .page_size = 4096, .psi_valid = true, .ksm_valid = true };
	h.mem.total_bytes = sum_max * 2 / 3; /* 1.5x provisioned */
	h.ksm_knobs = (struct ovcd_ksm_knobs){ .run = 0, .pages_to_scan = 100, .sleep_millisecs = 20 };
	unsigned counts[6] = { 0 };

	for (unsigned t = 0; t < ticks; t++) {
		uint64_t now_sec = 1000 + (uint64_t)t * 5;
		uint64_t ballooned = 0;

		/* The simulated driver: what libvirt would hand over this tick. */
		for (size_t i = 0; i < n; i++) {
			struct ovcd_guest_stats *st = &g[i].stats;
			uint64_t max = st->max_bytes;
			g[i].prev = *st;
			sim[i].used = MIN(max - max / 16, sim[i].used + xorshift64(&seed) % (64 * MIB)) -
				      xorshift64(&seed) % (64 * MIB);
			sim[i].used = MAX(sim[i].used, 128 * MIB);
			sim[i].majflt += xorshift64(&seed) % (i % 50 == 0 ? 5000 : 100);
			ovcd_guest_stats_reset(st);
			st->collected_usec = now_sec * USEC_PER_SEC;
			st->guest_update_sec = i % 20 == 19 ? 1 : now_sec; /* 5% stale */
			st->max_bytes = max;
			st->actual_bytes = g[i].target_bytes;
			st->total_bytes = g[i].target_bytes;
			st->available_bytes = g[i].target_bytes > sim[i].used ? g[i].target_bytes - sim[i].used : 0;
			st->free_bytes = st->available_bytes / 2;
			st->major_faults = sim[i].majflt;
			st->swap_in_bytes = sim[i].swapin;
			st->engine_swap_bytes = g[i].kind == OVC_DRIVER_ENGINE ? 0 : OVC_UNKNOWN;
			ovcd_guest_stats_sanitize(st, now_sec, 10);
			ballooned += max - g[i].target_bytes;
		}

		/* The peer: the host signals every tick reads. */
		uint64_t c0 = thread_cpu_ns();
		struct ovcd_meminfo mi;
		struct ovcd_ksm_counters kc = { 0 };
		if (ovcd_meminfo_read(NULL, &mi) < 0 || ovcd_psi_read(NULL, &h.psi) < 0)
			h.psi_valid = false;
		(void)ovcd_ksm_read_counters(NULL, &kc);
		collect_ms[t] = (double)(thread_cpu_ns() - c0) / 1e6;

		/* The host cycles: pressure, steady, room, 20 ticks each. */
		uint64_t base = h.mem.total_bytes / 100 * ((t / 20) % 3 == 0 ? 2 : (t / 20) % 3 == 1 ? 15 : 40);
		h.mem.available_bytes = MIN(base + ballooned / 4, h.mem.total_bytes);
		h.mem.free_bytes = h.mem.available_bytes;
		h.now_usec = now_sec * USEC_PER_SEC;
		h.psi.some.avg10_basis_points = (t / 20) % 3 == 0 ? 1500 : 0;
		h.psi.full.avg10_basis_points = 0;
		h.ksm.full_scans = t / 4;
		h.ksm.has_general_profit = true;
		h.ksm.general_profit = (int64_t)(t % 7) * (int64_t)MIB;

		uint64_t p0 = thread_cpu_ns();
		int r = ovcd_policy_tick(cfg, &h, &ks, g, n, d, &out);
		policy_ms[t] = (double)(thread_cpu_ns() - p0) / 1e6;
		if (r < 0) {
			fprintf(stderr, "ovc-bench policy: tick failed: %s\n", strerror(-r));
			goto out;
		}
		ks = out.ksm_state;
		h.ksm_knobs = out.ksm;

		/* The simulated balloons reach their targets by the next tick. */
		for (size_t i = 0; i < n; i++) {
			counts[d[i].action < 6 ? d[i].action : 0]++;
			/* As ovcd does: what the policy learned comes back. */
			g[i].state = d[i].state;
			if (d[i].action != OVC_ACTION_EMERGENCY)
				g[i].emergency_count = d[i].emergency_count;
			if (d[i].target_bytes != g[i].target_bytes) {
				g[i].target_bytes = d[i].target_bytes;
				g[i].last_action_usec = h.now_usec;
				if (d[i].action == OVC_ACTION_EMERGENCY) {
					g[i].last_emergency_usec = h.now_usec;
					g[i].emergency_count = d[i].emergency_count;
				}
			}
		}
	}

	double p50 = bench_percentile(policy_ms, ticks, 50), p99 = bench_percentile(policy_ms, ticks, 99);
	double c50 = bench_percentile(collect_ms, ticks, 50);
	if (opts->json) {
		printf("{\"bench\":\"policy\",\"guests\":%zu,\"ticks\":%u,\"tick_cpu_ms\":%.3f,"
		       "\"tick_cpu_ms_p99\":%.3f,\"budget_ms\":%.1f,\"budget_share\":%.4f,"
		       "\"peer\":\"host signal reads (meminfo, PSI, KSM counters)\",\"peer_cpu_ms\":%.3f,"
		       "\"ratio_to_peer\":%.2f,\"settings_resolve_ms\":%.3f,"
		       "\"actions\":{\"none\":%u,\"inflate\":%u,\"deflate\":%u,\"emergency\":%u,"
		       "\"restore\":%u,\"reclaim\":%u},",
		       n, ticks, p50, p99, BUDGET_MS, p50 / BUDGET_MS, c50, c50 > 0 ? p50 / c50 : 0.0,
		       resolve_ms, counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
		bench_json_machine(stdout);
		printf("}\n");
	} else {
		bench_print_machine(stdout);
		printf("policy tick, %zu guests, %u ticks (median CPU of one tick)\n", n, ticks);
		printf("  %-42s %9.3f ms  (p99 %.3f ms)\n", "ovc_policy_tick", p50, p99);
		printf("  %-42s %9.3f ms\n", "peer: host signal reads (meminfo, PSI, KSM)", c50);
		printf("  %-42s %9.2fx\n", "policy / peer", c50 > 0 ? p50 / c50 : 0.0);
		printf("  %-42s %9.1f%% of %.0f ms\n", "budget used", 100 * p50 / BUDGET_MS, BUDGET_MS);
		printf("  %-42s %9.3f ms (once per reload)\n", "resolving [guest] settings", resolve_ms);
		printf("  actions: none %u, inflate %u, deflate %u, emergency %u, restore %u, reclaim %u\n",
		       counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
	}
	rc = 0;
out:
	free(g);
	free(d);
	free(sim);
	free(names);
	free(policy_ms);
	free(collect_ms);
	ovcd_config_free(cfg);
	return rc;
}
