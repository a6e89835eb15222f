/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovcctl: the command line of ovcd, over its control socket
 * (docs/control-protocol.md). One thread; one connection per request.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>

#include <json-c/json.h>

#include "host/config.h"
#include "control.h"
#include "json-get.h"
#include "host/policy.h"
#include "host/units.h"
#include "common/util.h"

#define DEFAULT_SOCKET "/run/ovcd/ovcd.sock"
#define REPLY_MAX (16u << 20)

static volatile sig_atomic_t interrupted;

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: ovcctl [OPTIONS] COMMAND\n"
		"Talk to ovcd.\n\n"
		"Commands:\n"
		"  status                      host summary: overcommit ratios, savings, headroom, KSM\n"
		"  guests                      one line per guest\n"
		"  top                         status and guests, refreshed every second (q to quit)\n"
		"  reload                      reload ovcd's configuration\n"
		"  set GUEST floor|target SIZE override a guest's floor or pin its balloon target\n"
		"                              until reload or restart (SIZE: 512MiB, 50%%, none)\n\n"
		"Options:\n"
		"  -s, --socket PATH   control socket (default " DEFAULT_SOCKET ")\n"
		"  -j, --json          print ovcd's JSON reply\n"
		"  -n, --iterations N  top: stop after N refreshes\n"
		"  -h, --help          this text\n");
}

/* ---- transport ---- */

static int request(const char *sock, const char *line, struct json_object **ret, char **ret_raw)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char *buf = NULL;
	size_t n = 0, cap = 0;
	int fd, r = 0;

	if (strlen(sock) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "ovcctl: socket path too long: %s\n", sock);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = negative_errno();
		fprintf(stderr, "ovcctl: cannot connect to ovcd at %s: %s%s\n", sock, strerror(-r),
			r == -ENOENT || r == -ECONNREFUSED ? " (is ovcd running?)"
			: r == -EACCES ? " (the socket is for root and ovcd's [control] group)" : "");
		if (fd >= 0)
			close(fd);
		return r;
	}
	if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0) {
		r = negative_errno();
		fprintf(stderr, "ovcctl: cannot send to ovcd: %s\n", strerror(-r));
		goto out;
	}
	for (;;) {
		ssize_t k;

		if (n + 4096 + 1 > cap) {
			char *p;

			cap = cap ? cap * 2 : 65536;
			if (cap > REPLY_MAX) {
				fprintf(stderr, "ovcctl: reply from ovcd too long\n");
				r = -EMSGSIZE;
				goto out;
			}
			p = realloc(buf, cap);
			if (!p) {
				r = -ENOMEM;
				goto out;
			}
			buf = p;
		}
		k = recv(fd, buf + n, cap - n - 1, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		if (memchr(buf + n - (size_t)k, '\n', (size_t)k))
			break;
	}
	if (!buf || n == 0 || !memchr(buf, '\n', n)) {
		fprintf(stderr, "ovcctl: ovcd closed the connection without a reply\n");
		r = -EPROTO;
		goto out;
	}
	buf[n] = '\0';
	*ret = json_tokener_parse(buf);
	if (!*ret || !json_object_is_type(*ret, json_type_object)) {
		fprintf(stderr, "ovcctl: ovcd sent something that is not a JSON object\n");
		json_object_put(*ret);
		*ret = NULL;
		r = -EPROTO;
		goto out;
	}
	if (ret_raw) {
		*ret_raw = buf;
		buf = NULL;
	}
out:
	free(buf);
	close(fd);
	return r;
}

/* ---- JSON access ---- */

static int64_t get_i64(struct json_object *o, const char *key)
{
	struct json_object *v = json_get(o, key);

	return v ? json_object_get_int64(v) : 0;
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v = json_get(o, key);

	return v ? json_object_get_string(v) : "";
}

static const char *size_text(uint64_t v, char *buf, size_t n)
{
	if (!ovcd_known(v))
		return "-";
	if (v == 0)
		return "0";
	return ovcd_format_size_short(v, buf, n);
}
#define SZ(v) size_text((v), (char[24]){ 0 }, 24)

static const char *ssize_text(int64_t v, char *buf, size_t n)
{
	char tmp[24];

	snprintf(buf, n, "%s%s", v < 0 ? "-" : "+",
		 ovcd_format_size_short(v < 0 ? (uint64_t)-v : (uint64_t)v, tmp, sizeof(tmp)));
	return buf;
}
#define SSZ(v) ssize_text((v), (char[32]){ 0 }, 32)

static const char *age_text(uint64_t usec, char *buf, size_t n)
{
	if (!ovcd_known(usec))
		return "-";
	if (usec < 100 * USEC_PER_SEC)
		snprintf(buf, n, "%" PRIu64 "s", usec / USEC_PER_SEC);
	else
		snprintf(buf, n, "%" PRIu64 "min", usec / (60 * USEC_PER_SEC));
	return buf;
}

/* A latency in µs, at most 6 characters: 16us, 1.0ms, 524ms, 1.2s. */
static const char *usec_text(uint64_t us, char *buf, size_t n)
{
	if (!ovcd_known(us))
		return "-";
	if (us < 1000)
		snprintf(buf, n, "%" PRIu64 "us", us);
	else if (us < 10000)
		snprintf(buf, n, "%" PRIu64 ".%" PRIu64 "ms", us / 1000, us % 1000 / 100);
	else if (us < 1000000)
		snprintf(buf, n, "%" PRIu64 "ms", us / 1000);
	else
		snprintf(buf, n, "%" PRIu64 ".%" PRIu64 "s", us / 1000000, us % 1000000 / 100000);
	return buf;
}
#define USEC(v) usec_text((v), (char[32]){ 0 }, 32)

/* ---- human output ---- */

static void print_status(struct json_object *o)
{
	struct json_object *sav = json_get(o, "savings"), *head = json_get(o, "headroom"), *ksm = json_get(o, "ksm"),
			   *psi = json_get(o, "psi");

	printf("Host:      %s total, %s for guests, %s available; %s since tick %" PRIu64 "%s\n",
	       SZ(json_get_u64(o, "host_total_bytes")), SZ(json_get_u64(o, "host_for_guests_bytes")),
	       SZ(json_get_u64(o, "host_available_bytes")), get_str(o, "level"), json_get_u64(o, "level_since_tick"),
	       json_object_get_boolean(json_get(o, "dry_run")) ? " (dry run)" : "");
	printf("Guests:    %" PRIu64 ", %s max, %s backing them\n", json_get_u64(o, "guests"),
	       SZ(json_get_u64(o, "guests_max_bytes")), SZ(json_get_u64(o, "guests_backing_bytes")));
	printf("Ratio:     provisioned %s, effective %s\n", get_str(o, "provisioned_ratio"),
	       get_str(o, "effective_ratio"));
	/* KSM's counters are host-wide: they include whatever else on the
	 * host is mergeable, so they are labelled as such, not as guests'. */
	printf("Savings:   balloon %s, engines: shared %s, swapped %s; KSM (host-wide): zero %s, "
	       "sharing %s (total %s)\n",
	       SZ(json_get_u64(sav, "balloon_bytes")), SZ(json_get_u64(sav, "engine_zero_bytes")),
	       SZ(json_get_u64(sav, "swap_bytes")), SZ(json_get_u64(sav, "ksm_zero_bytes")), SZ(json_get_u64(sav, "ksm_bytes")),
	       SZ(json_get_u64(sav, "total_bytes")));
	printf("Headroom:  %s over low, %s over high; %s could come back at once (then %s)\n",
	       SSZ(get_i64(head, "low_bytes")), SSZ(get_i64(head, "high_bytes")),
	       SZ(json_get_u64(head, "give_back_bytes")), SSZ(get_i64(head, "after_give_back_bytes")));
	if (psi)
		printf("PSI:       some %s%%, full %s%% (avg10)\n", get_str(psi, "some_avg10"),
		       get_str(psi, "full_avg10"));
	if (ksm)
		printf("KSM:       run %" PRId64 ", pages_to_scan %" PRId64 ", sharing %" PRIu64
		       " pages, profit %s; %s\n",
		       get_i64(ksm, "run"), get_i64(ksm, "pages_to_scan"), json_get_u64(ksm, "pages_sharing"),
		       SSZ(get_i64(ksm, "profit_bytes")), get_str(ksm, "reason"));
	else
		printf("KSM:       not available\n");
	printf("State:     %s\n", get_str(o, "host_reason"));
}

/* Failed swap I/O is rare and serious: said on the guest's line, only
 * when it happened. */
static void print_swap_errors(struct json_object *eng)
{
	uint64_t wr = json_get_u64(eng, "swap_write_errors"), rd = json_get_u64(eng, "swap_read_errors");

	wr = ovcd_known(wr) ? wr : 0;
	rd = ovcd_known(rd) ? rd : 0;
	if (wr || rd)
		printf(" [swap errors: %" PRIu64 " write, %" PRIu64 " read]", wr, rd);
}

/* What the policy sees in a guest, said only when there is something. */
static void print_guest_policy(struct json_object *g)
{
	uint64_t ooms = json_get_u64(g, "oom_kills"), quick = json_get_u64(g, "quick_deflates");

	if (json_object_get_boolean(json_get(g, "noncompliant")))
		printf(" [NON-COMPLIANT: ignores its target]");
	if (json_object_get_boolean(json_get(g, "growing")))
		printf(" [growing %s/s]", SZ(json_get_u64(g, "growth_rate_bytes")));
	if (ovcd_known(quick) && quick)
		printf(" [%" PRIu64 " deflates between ticks]", quick);
	if (ovcd_known(ooms) && ooms)
		printf(" [OOM kills seen: %" PRIu64 "]", ooms);
}

static void print_guests(struct json_object *o)
{
	struct json_object *arr = json_get(o, "guests");
	size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
	int w = 4;

	for (size_t i = 0; i < n; i++) {
		int l = (int)strlen(get_str(json_object_array_get_idx(arr, i), "name"));
		w = l > w ? l : w;
	}
	printf("%-*s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %7s %5s  %s\n", w, "NAME", "MAX", "CURRENT",
	       "TARGET", "AVAILABLE", "FLOOR", "HEADROOM", "FPR", "SHARED", "SWAPPED", "RECLAIM", "SWAPCACHE",
	       "FLT-P50", "AGE", "LAST ACTION");
	for (size_t i = 0; i < n; i++) {
		struct json_object *g = json_object_array_get_idx(arr, i);
		const char *floor_mark = json_object_get_boolean(json_get(g, "floor_override")) ? "*" : "";
		char floor[32], target[32];

		uint64_t raised = json_get_u64(g, "raised_floor_bytes");

		/* The policy's raised floor, marked ^, while it is above. */
		if (ovcd_known(raised) && raised > json_get_u64(g, "floor_bytes"))
			snprintf(floor, sizeof(floor), "^%s", SZ(raised));
		else
			snprintf(floor, sizeof(floor), "%s%s", floor_mark, SZ(json_get_u64(g, "floor_bytes")));
		snprintf(target, sizeof(target), "%s%s", json_get(g, "pinned_target_bytes") ? "=" : "",
			 SZ(json_get_u64(g, "target_bytes")));
		struct json_object *sav = json_get(g, "savings"), *eng = json_get(g, "engine");

		/* An engine without a balloon has no balloon target or floor. */
		if (eng && strcmp(get_str(g, "balloon_driver"), "none") == 0)
			snprintf(target, sizeof(target), "-"), snprintf(floor, sizeof(floor), "-");
		printf("%-*s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %7s %5s  %s", w, get_str(g, "name"),
		       SZ(json_get_u64(g, "max_bytes")), SZ(json_get_u64(g, "current_bytes")), target,
		       SZ(json_get_u64(g, "available_bytes")), floor, SZ(json_get_u64(g, "headroom_bytes")),
		       SZ(json_get_u64(g, "free_page_reporting_bytes")), SZ(json_get_u64(sav, "shared_bytes")),
		       SZ(json_get_u64(sav, "swapped_bytes")), SZ(json_get_u64(eng, "reclaim_target_bytes")),
		       SZ(json_get_u64(eng, "swap_cache_bytes")), USEC(json_get_u64(eng, "fault_p50_usec")),
		       age_text(json_get_u64(g, "stats_age_usec"), (char[16]){ 0 }, 16), get_str(g, "last_action"));
		if (json_get_u64(g, "last_action_tick"))
			printf(" (tick %" PRIu64 "): %s", json_get_u64(g, "last_action_tick"), get_str(g, "last_reason"));
		print_swap_errors(eng);
		print_guest_policy(g);
		printf("\n");
	}
	if (n == 0)
		printf("(no guests)\n");
}

static bool reply_ok(struct json_object *o)
{
	if (json_object_get_boolean(json_get(o, "ok")))
		return true;
	fprintf(stderr, "ovcctl: %s\n", json_get(o, "error") ? get_str(o, "error") : "ovcd refused the request");
	return false;
}

static int simple(const char *sock, bool json, enum ovcd_command c, const char *guest,
		  enum ovcd_set_what what, const char *size)
{
	char *line = ovcd_request_format(c, guest, what, size), *raw = NULL;
	struct json_object *o = NULL;
	int r;

	if (!line)
		return 1;
	r = request(sock, line, &o, &raw);
	free(line);
	if (r < 0)
		return 1;
	if (json)
		fputs(raw, stdout);
	if (!reply_ok(o)) {
		r = -1;
	} else if (!json) {
		if (c == OVCD_CMD_STATUS)
			print_status(o);
		else if (c == OVCD_CMD_GUESTS)
			print_guests(o);
		else
			printf("%s\n", get_str(o, "message"));
	}
	json_object_put(o);
	free(raw);
	return r < 0 ? 1 : 0;
}

static void on_sigint(int sig)
{
	interrupted = 1;
}

static int top(const char *sock, bool json, long iterations)
{
	bool tty_out = isatty(STDOUT_FILENO), tty_in = isatty(STDIN_FILENO);
	struct termios saved, raw;
	struct sigaction sa = { .sa_handler = on_sigint };
	int ret = 0;

	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (tty_in && tcgetattr(STDIN_FILENO, &saved) == 0) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	} else {
		tty_in = false;
	}
	for (long i = 0; !interrupted && (iterations <= 0 || i < iterations); i++) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		char c;

		if (tty_out && !json)
			fputs("\033[H\033[2J", stdout);
		else if (i > 0 && !json)
			fputs("\n", stdout);
		if (simple(sock, json, OVCD_CMD_STATUS, NULL, 0, NULL) != 0 ||
		    (!json && fputs("\n", stdout) < 0) || simple(sock, json, OVCD_CMD_GUESTS, NULL, 0, NULL) != 0) {
			ret = 1;
			break;
		}
		fflush(stdout);
		if (iterations > 0 && i + 1 >= iterations)
			break;
		if (poll(&p, tty_in ? 1 : 0, 1000) > 0 && read(STDIN_FILENO, &c, 1) == 1 && (c == 'q' || c == 'Q'))
			break;
	}
	if (tty_in)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *sock = getenv("OVCD_SOCKET") ? getenv("OVCD_SOCKET") : DEFAULT_SOCKET;
	bool json = false;
	long iterations = 0;
	const char *cmd;
	int c;

	while ((c = getopt_long(argc, argv, "+s:jn:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'n': {
			char *end;

			iterations = strtol(optarg, &end, 10);
			if (*end || iterations <= 0) {
				fprintf(stderr, "ovcctl: --iterations wants a positive number, not '%s'\n", optarg);
				return 2;
			}
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	/* Options may also follow the command ("ovcctl status --json"). */
	while ((c = getopt_long(argc, argv, "s:jn:h", longopts, NULL)) != -1) {
		if (c == 's')
			sock = optarg;
		else if (c == 'j')
			json = true;
		else if (c == 'n')
			iterations = strtol(optarg, NULL, 10);
		else {
			usage(stderr);
			return 2;
		}
	}
	if (strcmp(cmd, "status") == 0 || strcmp(cmd, "guests") == 0 || strcmp(cmd, "reload") == 0) {
		if (optind != argc) {
			fprintf(stderr, "ovcctl: %s takes no arguments\n", cmd);
			return 2;
		}
		return simple(sock, json,
			      cmd[0] == 's' ? OVCD_CMD_STATUS : cmd[0] == 'g' ? OVCD_CMD_GUESTS : OVCD_CMD_RELOAD,
			      NULL, 0, NULL);
	}
	if (strcmp(cmd, "top") == 0)
		return top(sock, json, iterations);
	if (strcmp(cmd, "set") == 0) {
		enum ovcd_set_what what;

		if (argc - optind != 3) {
			fprintf(stderr, "ovcctl: usage: ovcctl set GUEST floor|target SIZE\n");
			return 2;
		}
		if (strcmp(argv[optind + 1], "floor") == 0)
			what = OVCD_SET_FLOOR;
		else if (strcmp(argv[optind + 1], "target") == 0)
			what = OVCD_SET_TARGET;
		else {
			fprintf(stderr, "ovcctl: set: expected floor or target, not '%s'\n", argv[optind + 1]);
			return 2;
		}
		return simple(sock, json, OVCD_CMD_SET, argv[optind], what, argv[optind + 2]);
	}
	fprintf(stderr, "ovcctl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
