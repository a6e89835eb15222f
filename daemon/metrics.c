/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Metrics: rendering (pure), the textfile writer and the loopback
 * listener; see metrics.h. Main thread only for the I/O parts. The HTTP
 * transport on that listener is metrics-http.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "metrics.h"
#include "common/util.h"

/* Label values: backslash, double quote and newline escaped (exposition
 * format); guest names come from libvirt or QEMU and may hold anything. */
static void put_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '"')
			fputs("\\\"", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge_u(FILE *f, const char *name, const char *help, uint64_t v)
{
	head(f, name, "gauge", help);
	fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void gauge_i(FILE *f, const char *name, const char *help, int64_t v)
{
	head(f, name, "gauge", help);
	fprintf(f, "%s %" PRId64 "\n", name, v);
}

static void gauge_ratio(FILE *f, const char *name, const char *help, uint64_t permille)
{
	head(f, name, "gauge", help);
	fprintf(f, "%s %" PRIu64 ".%03" PRIu64 "\n", name, permille / 1000, permille % 1000);
}

/* One gauge per guest; unknown values are left out (absent, not 0). */
static void per_guest(FILE *f, const struct ovcd_view *v, const char *name, const char *type,
		      const char *help, size_t offset)
{
	head(f, name, type, help);
	for (size_t i = 0; i < v->n_guests; i++) {
		const struct ovcd_guest_view *g = &v->guests[i];
		uint64_t val = *(const uint64_t *)((const char *)g + offset);

		if (!ovcd_known(val))
			continue;
		fprintf(f, "%s{guest=\"", name);
		put_label(f, g->name);
		fprintf(f, "\"} %" PRIu64 "\n", val);
	}
}

#define G(field) offsetof(struct ovcd_guest_view, field)

int ovcd_metrics_render(const struct ovcd_view *v, char **ret, size_t *ret_len)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return -ENOMEM;
	gauge_ratio(f, "ovc_provisioned_ratio", "Sum of guest maximum memory over host memory for guests.",
		    v->oc.provisioned_ratio_permille);
	gauge_ratio(f, "ovc_effective_ratio", "Sum of guest maximum memory over host memory backing guests now.",
		    v->oc.effective_ratio_permille);
	gauge_u(f, "ovc_host_total_bytes", "Host MemTotal.", v->oc.host_total_bytes);
	gauge_u(f, "ovc_host_for_guests_bytes", "Host memory for guests (MemTotal less the reserve).",
		v->oc.host_for_guests_bytes);
	gauge_u(f, "ovc_host_available_bytes", "Host MemAvailable at the last tick.", v->mem.available_bytes);
	gauge_u(f, "ovc_guests", "Guests ovcd manages.", v->n_guests);
	gauge_u(f, "ovc_guests_max_bytes", "Sum of guest maximum memory.", v->oc.guests_max_bytes);
	gauge_u(f, "ovc_guests_backing_bytes", "Host memory backing guests now.", v->oc.guests_backing_bytes);

	head(f, "ovc_savings_bytes", "gauge", "Memory saved, by mechanism.");
	fprintf(f, "ovc_savings_bytes{mechanism=\"balloon\"} %" PRIu64 "\n", v->oc.savings.balloon_bytes);
	fprintf(f, "ovc_savings_bytes{mechanism=\"zero\"} %" PRIu64 "\n", v->oc.savings.zero_bytes);
	fprintf(f, "ovc_savings_bytes{mechanism=\"ksm\"} %" PRIu64 "\n", v->oc.savings.ksm_bytes);
	fprintf(f, "ovc_savings_bytes{mechanism=\"swap\"} %" PRIu64 "\n", v->oc.savings.swap_bytes);

	head(f, "ovc_zero_savings_bytes", "gauge",
	     "Zero-page savings by source: embedded engines, or KSM (host-wide, any process).");
	fprintf(f, "ovc_zero_savings_bytes{source=\"engine\"} %" PRIu64 "\n", v->oc.savings.engine_zero_bytes);
	fprintf(f, "ovc_zero_savings_bytes{source=\"ksm\"} %" PRIu64 "\n", v->oc.savings.ksm_zero_bytes);

	gauge_i(f, "ovc_headroom_low_bytes", "MemAvailable minus the low watermark.", v->oc.headroom_low_bytes);
	gauge_i(f, "ovc_headroom_high_bytes", "MemAvailable minus the high watermark.", v->oc.headroom_high_bytes);
	gauge_u(f, "ovc_give_back_bytes", "Memory guests could claim back at once.", v->oc.give_back_bytes);

	head(f, "ovc_host_level", "gauge", "Host state: 1 for the current level.");
	for (int l = OVC_HOST_STEADY; l <= OVC_HOST_ROOM; l++)
		fprintf(f, "ovc_host_level{level=\"%s\"} %d\n", ovcd_host_level_name((enum ovcd_host_level)l),
			v->level == (enum ovcd_host_level)l);
	head(f, "ovc_ticks", "counter", "Policy ticks run.");
	fprintf(f, "ovc_ticks_total %" PRIu64 "\n", v->ticks);
	head(f, "ovc_policy_checks", "counter", "Per-guest policy checks between ticks.");
	fprintf(f, "ovc_policy_checks_total %" PRIu64 "\n", v->checks);
	if (v->psi_valid) {
		head(f, "ovc_host_psi_memory_avg10_ratio", "gauge", "Memory PSI avg10 as a ratio.");
		fprintf(f, "ovc_host_psi_memory_avg10_ratio{kind=\"some\"} %u.%04u\n",
			v->psi.some.avg10_basis_points / 10000, v->psi.some.avg10_basis_points % 10000);
		fprintf(f, "ovc_host_psi_memory_avg10_ratio{kind=\"full\"} %u.%04u\n",
			v->psi.full.avg10_basis_points / 10000, v->psi.full.avg10_basis_points % 10000);
	}
	if (v->ksm_valid) {
		gauge_u(f, "ovc_ksm_run", "KSM run knob.", v->ksm_knobs.run);
		gauge_u(f, "ovc_ksm_pages_to_scan", "KSM pages_to_scan knob.", v->ksm_knobs.pages_to_scan);
		gauge_i(f, "ovc_ksm_profit_bytes", "KSM profit net of its metadata.", v->ksm_profit_bytes);
	}

	per_guest(f, v, "ovc_guest_max_bytes", "gauge", "Guest maximum memory.", G(max_bytes));
	per_guest(f, v, "ovc_guest_current_bytes", "gauge", "Guest memory now (maximum less the balloon).",
		  G(actual_bytes));
	per_guest(f, v, "ovc_guest_target_bytes", "gauge", "Balloon target ovcd set.", G(target_bytes));
	per_guest(f, v, "ovc_guest_available_bytes", "gauge", "Guest MemAvailable as it reports it.",
		  G(available_bytes));
	per_guest(f, v, "ovc_guest_floor_bytes", "gauge", "Guest floor: never ballooned below.", G(floor_bytes));
	per_guest(f, v, "ovc_guest_inflates", "counter", "Balloon inflates.", G(inflates));
	per_guest(f, v, "ovc_guest_deflates", "counter", "Balloon deflates (emergencies included).",
		  G(deflates));
	per_guest(f, v, "ovc_guest_emergency_deflates", "counter", "Emergency deflates.", G(emergencies));
	per_guest(f, v, "ovc_guest_errors", "counter", "Failed balloon and reclaim requests.", G(errors));
	per_guest(f, v, "ovc_guest_quick_deflates", "counter",
		  "Emergency deflates done between ticks, on the guest's statistics as they arrived.",
		  G(quick_deflates));
	per_guest(f, v, "ovc_guest_raised_floor_bytes", "gauge",
		  "Floor the policy keeps after the guest ran short (halving back to the floor).",
		  G(raised_floor_bytes));
	per_guest(f, v, "ovc_guest_headroom_bytes", "gauge",
		  "Available memory the policy keeps in the guest for its bursts (learned).", G(headroom_bytes));
	per_guest(f, v, "ovc_guest_keep_available_bytes", "gauge",
		  "Available memory never ballooned: guest_free and the headroom.", G(keep_bytes));
	per_guest(f, v, "ovc_guest_growth_rate_bytes", "gauge", "Growth of the guest's used memory per second.",
		  G(growth_rate_bytes));
	per_guest(f, v, "ovc_guest_oom_kills", "counter", "OOM kills ovcd has seen in the guest.", G(oom_kills));
	per_guest(f, v, "ovc_guest_free_page_reporting_bytes", "gauge",
		  "Guest free memory back on the host through free page reporting, without a balloon.",
		  G(fpr_bytes));
	head(f, "ovc_guest_noncompliant", "gauge",
	     "1 while the guest's balloon (or engine) has not moved toward its target for pending_timeout.");
	for (size_t i = 0; i < v->n_guests; i++) {
		fprintf(f, "ovc_guest_noncompliant{guest=\"");
		put_label(f, v->guests[i].name);
		fprintf(f, "\"} %d\n", v->guests[i].noncompliant);
	}
	/* Engines only: absent for a guest without one. */
	per_guest(f, v, "ovc_guest_engine_shared_bytes", "gauge", "Guest memory the engine gives back by zero sharing.",
		  G(engine_zero_bytes));
	per_guest(f, v, "ovc_guest_engine_swapped_bytes", "gauge", "Guest memory the engine gives back by swapping.",
		  G(engine_swap_bytes));
	per_guest(f, v, "ovc_guest_engine_reclaim_target_bytes", "gauge", "The engine's reclaim target.",
		  G(engine_target_bytes));
	/* Its swapping; absent too from an engine too old to report it. */
	per_guest(f, v, "ovc_guest_engine_swapped_in_bytes", "counter", "Guest memory the engine swapped back in.",
		  G(engine_swap_in_bytes));
	per_guest(f, v, "ovc_guest_engine_swapped_out_bytes", "counter", "Guest memory the engine swapped out.",
		  G(engine_swap.out_bytes));
	per_guest(f, v, "ovc_guest_engine_swap_cache_bytes", "gauge",
		  "Guest memory swapped back in that still owns its swap slot.", G(engine_swap.cache_bytes));
	per_guest(f, v, "ovc_guest_engine_swap_cache_hits", "counter",
		  "Swap-outs that needed no write: the page's slot still held it.", G(engine_swap.cache_hits));
	per_guest(f, v, "ovc_guest_engine_refaults", "counter", "Pages swapped back in soon after going out.",
		  G(engine_swap.refaults));
	per_guest(f, v, "ovc_guest_engine_swap_write_errors", "counter", "Failed swap writes (the page was kept).",
		  G(engine_swap.write_errors));
	per_guest(f, v, "ovc_guest_engine_swap_read_errors", "counter", "Failed swap reads.",
		  G(engine_swap.read_errors));
	per_guest(f, v, "ovc_guest_engine_fault_p50_microseconds", "gauge",
		  "Median fault service time since the engine started (upper bound of a power-of-two bucket).",
		  G(engine_swap.fault_p50_usec));
	per_guest(f, v, "ovc_guest_engine_fault_p99_microseconds", "gauge",
		  "99th percentile fault service time since the engine started (upper bound of a power-of-two bucket).",
		  G(engine_swap.fault_p99_usec));
	fputs("# EOF\n", f);
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*ret = buf;
	*ret_len = len;
	return 0;
}

int ovcd_metrics_write_textfile(const char *path, const char *text, size_t len)
{
	char tmp[4096];
	size_t off = 0;
	int fd, r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			r = negative_errno();
			break;
		}
		off += (size_t)w;
	}
	/* node_exporter runs as its own user: the file must be readable. */
	if (r == 0 && fchmod(fd, 0644) < 0)
		r = negative_errno();
	if (r == 0 && fsync(fd) < 0)
		r = negative_errno();
	if (close(fd) < 0 && r == 0)
		r = negative_errno();
	if (r == 0 && rename(tmp, path) < 0)
		r = negative_errno();
	if (r < 0)
		unlink(tmp);
	return r;
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

int ovcd_metrics_listen(const char *listen_addr)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *ai = NULL;
	char host[256];
	const char *port;
	int fd = -1, r, one = 1;

	if (listen_addr[0] == '[') {
		const char *end = strchr(listen_addr, ']');

		if (!end || end[1] != ':' || (size_t)(end - listen_addr - 1) >= sizeof(host))
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(end - listen_addr - 1), listen_addr + 1);
		port = end + 2;
	} else {
		const char *colon = strrchr(listen_addr, ':');

		if (!colon || (size_t)(colon - listen_addr) >= sizeof(host))
			return -EINVAL;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen_addr), listen_addr);
		port = colon + 1;
	}
	if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
		return -EADDRNOTAVAIL;
	/* The config checked the text; check what it resolved to as well
	 * ("localhost" could be anything in /etc/hosts). */
	if (!addr_is_loopback(ai->ai_addr)) {
		r = -EADDRNOTAVAIL;
		goto out;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = negative_errno();
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0) {
		r = negative_errno();
		close(fd);
		goto out;
	}
	r = fd;
out:
	freeaddrinfo(ai);
	return r;
}
