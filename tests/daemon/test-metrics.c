/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: ovcd's metrics (daemon/metrics.c): the text exposition format
 * (every sample line preceded by its HELP and TYPE, label values escaped,
 * unknown values left out, "# EOF" last), the atomic textfile writer, the
 * loopback-only listener, and the HTTP server (metrics-http.c) on real
 * sockets: routing, the reply's headers, a client that sends its request a
 * byte at a time never makes process() wait, and the overall deadline cuts
 * a connection that is still busy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "ovc-test.h"
#include "common/util.h"

#define U OVC_UNKNOWN

static void test_render(void **state)
{
	struct ovcd_guest_view g[2] = {
		{ .name = "we\"b\\1\n", .max_bytes = GIB, .actual_bytes = 512 * MIB, .target_bytes = 512 * MIB,
		  .available_bytes = OVC_UNKNOWN, .floor_bytes = 256 * MIB, .inflates = 2,
		  .engine_zero_bytes = OVC_UNKNOWN, .engine_swap_bytes = OVC_UNKNOWN,
		  .engine_target_bytes = OVC_UNKNOWN, .engine_swap_in_bytes = OVC_UNKNOWN,
		  .engine_swap = { U, U, U, U, U, U, U, U }, .headroom_bytes = 64 * MIB, .keep_bytes = U,
		  .oom_kills = 1, .quick_deflates = 3, .fpr_bytes = U, .raised_floor_bytes = 300 * MIB },
		{ .name = "db", .max_bytes = 2 * GIB, .actual_bytes = 2 * GIB, .target_bytes = 2 * GIB,
		  .available_bytes = GIB, .floor_bytes = GIB, .engine = true, .engine_zero_bytes = 5 * MIB,
		  .engine_swap_bytes = 0, .engine_target_bytes = 7 * MIB, .engine_swap_in_bytes = 3 * MIB,
		  /* an engine that sent everything but the percentiles */
		  .engine_swap = { .out_bytes = 9 * MIB, .cache_bytes = 2 * MIB, .cache_hits = 4, .refaults = 5,
				   .write_errors = 1, .read_errors = 0, .fault_p50_usec = U, .fault_p99_usec = U },
		  .headroom_bytes = U, .keep_bytes = U, .free_page_reporting = true, .fpr_bytes = 32 * MIB,
		  .raised_floor_bytes = U, .noncompliant = true },
	};
	struct ovcd_view v = {
		.ticks = 9, .checks = 17, .level = OVC_HOST_ROOM, .guests = g, .n_guests = 2,
		.oc = { .host_total_bytes = 8 * GIB, .provisioned_ratio_permille = 1375,
			.effective_ratio_permille = 2001, .savings = { .balloon_bytes = 512 * MIB },
			.headroom_low_bytes = -5 },
	};
	char *text = NULL, *p, *save = NULL;
	size_t len = 0;
	char last_type[128] = "";

	assert_int_equal(ovcd_metrics_render(&v, &text, &len), 0);
	assert_int_equal(strlen(text), len);
	assert_non_null(strstr(text, "\novc_provisioned_ratio 1.375\n"));
	assert_non_null(strstr(text, "\novc_effective_ratio 2.001\n"));
	assert_non_null(strstr(text, "\novc_savings_bytes{mechanism=\"balloon\"} 536870912\n"));
	assert_non_null(strstr(text, "\novc_savings_bytes{mechanism=\"swap\"} 0\n"));
	assert_non_null(strstr(text, "\novc_headroom_low_bytes -5\n"));
	assert_non_null(strstr(text, "\novc_host_level{level=\"room\"} 1\n"));
	assert_non_null(strstr(text, "\novc_host_level{level=\"pressure\"} 0\n"));
	assert_non_null(strstr(text, "\novc_ticks_total 9\n"));
	assert_non_null(strstr(text, "\novc_policy_checks_total 17\n"));
	assert_non_null(strstr(text, "\novc_guest_headroom_bytes{guest=\"we\\\"b\\\\1\\n\"} 67108864\n"));
	assert_null(strstr(text, "ovc_guest_headroom_bytes{guest=\"db\"}"));
	assert_non_null(strstr(text, "\novc_guest_raised_floor_bytes{guest=\"we\\\"b\\\\1\\n\"} 314572800\n"));
	assert_null(strstr(text, "ovc_guest_raised_floor_bytes{guest=\"db\"}"));
	assert_non_null(strstr(text, "\novc_guest_oom_kills{guest=\"we\\\"b\\\\1\\n\"} 1\n"));
	assert_non_null(strstr(text, "\novc_guest_quick_deflates{guest=\"we\\\"b\\\\1\\n\"} 3\n"));
	/* Non-compliance: 0 or 1 for every guest. */
	assert_non_null(strstr(text, "\novc_guest_noncompliant{guest=\"we\\\"b\\\\1\\n\"} 0\n"));
	assert_non_null(strstr(text, "\novc_guest_noncompliant{guest=\"db\"} 1\n"));
	/* Free page reporting: only the guest that has it. */
	assert_non_null(strstr(text, "\novc_guest_free_page_reporting_bytes{guest=\"db\"} 33554432\n"));
	assert_null(strstr(text, "ovc_guest_free_page_reporting_bytes{guest=\"we"));
	assert_non_null(strstr(text, "\novc_guest_current_bytes{guest=\"we\\\"b\\\\1\\n\"} 536870912\n"));
	assert_non_null(strstr(text, "\novc_guest_available_bytes{guest=\"db\"} 1073741824\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_shared_bytes{guest=\"db\"} 5242880\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_swapped_bytes{guest=\"db\"} 0\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_reclaim_target_bytes{guest=\"db\"} 7340032\n"));
	assert_null(strstr(text, "ovc_guest_engine_shared_bytes{guest=\"we"));
	assert_non_null(strstr(text, "\novc_guest_engine_swapped_in_bytes{guest=\"db\"} 3145728\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_swapped_out_bytes{guest=\"db\"} 9437184\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_swap_cache_bytes{guest=\"db\"} 2097152\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_swap_cache_hits{guest=\"db\"} 4\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_refaults{guest=\"db\"} 5\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_swap_write_errors{guest=\"db\"} 1\n"));
	assert_non_null(strstr(text, "\novc_guest_engine_swap_read_errors{guest=\"db\"} 0\n"));
	assert_non_null(strstr(text, "# TYPE ovc_guest_engine_fault_p50_microseconds gauge\n"));
	assert_null(strstr(text, "ovc_guest_engine_fault_p50_microseconds{"));
	assert_null(strstr(text, "ovc_guest_engine_swap_cache_bytes{guest=\"we"));
	assert_null(strstr(text, "ovc_guest_engine_swapped_in_bytes{guest=\"we"));
	assert_non_null(strstr(text, "\novc_zero_savings_bytes{source=\"ksm\"} 0\n"));
	/* unknown: absent, never 0 */
	assert_null(strstr(text, "ovc_guest_available_bytes{guest=\"we"));
	assert_int_equal(strcmp(text + len - 6, "# EOF\n"), 0);

	/* Every sample belongs to the family of the last TYPE line. */
	for (p = strtok_r(text, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
		if (strncmp(p, "# TYPE ", 7) == 0) {
			snprintf(last_type, sizeof(last_type), "%.*s", (int)strcspn(p + 7, " "), p + 7);
			continue;
		}
		if (p[0] == '#')
			continue;
		assert_true(last_type[0]);
		assert_int_equal(strncmp(p, last_type, strlen(last_type)), 0);
	}
	free(text);
}

static void test_textfile_atomic(void **state)
{
	char dir[] = "/tmp/ovc-test-metrics-XXXXXX", path[64], buf[64];
	struct stat st;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ovc.prom", dir);
	assert_int_equal(ovcd_metrics_write_textfile(path, "a 1\n", 4), 0);
	assert_int_equal(ovcd_metrics_write_textfile(path, "b 22\n", 5), 0);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "b 22\n", 5);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	close(fd);
	unlink(path);
	assert_int_equal(rmdir(dir), 0); /* no temporary left behind */
	assert_int_equal(ovcd_metrics_write_textfile("/nonexistent-dir/x.prom", "x", 1), -ENOENT);
}

static void test_listen_loopback_only(void **state)
{
	int fd = ovcd_metrics_listen("127.0.0.1:0");

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ovcd_metrics_listen("0.0.0.0:0"), -EADDRNOTAVAIL);
	assert_int_equal(ovcd_metrics_listen("no-port"), -EINVAL);
}

/* ---- the HTTP server ---- */

static const char BODY[] = "# HELP ovc_guests x\n# TYPE ovc_guests gauge\novc_guests 3\n# EOF\n";
static unsigned body_calls;

static void body(void *userdata, const char **text, size_t *len)
{
	(void)userdata;
	body_calls++;
	*text = BODY;
	*len = sizeof(BODY) - 1;
}

static const struct ovcd_metrics_limits LIM = {
	.max_connections = 4, .max_per_address = 4, .idle_timeout_sec = 60, .deadline_usec = 60 * USEC_PER_SEC,
};

/* A server and one connection to it; *cfd is the client's end. */
static struct ovcd_metrics_server *server_with_client(const struct ovcd_metrics_limits *lim, int *cfd)
{
	struct ovcd_metrics_server *s = NULL;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(ovcd_metrics_server_new(-1, lim, body, NULL, &s), 0);
	assert_true(ovcd_metrics_server_fd(s) >= 0);
	assert_int_equal(ovcd_metrics_server_add_connection(s, sv[0]), 0);
	*cfd = sv[1];
	return s;
}

/* Drive the server until the client's end sees EOF; the reply in @out. */
static size_t exchange(struct ovcd_metrics_server *s, int cfd, char *out, size_t size)
{
	size_t n = 0;

	for (int i = 0; i < 2000; i++) {
		ssize_t k;

		ovcd_metrics_server_process(s);
		k = recv(cfd, out + n, size - 1 - n, 0);
		if (k == 0)
			break;
		if (k > 0)
			n += (size_t)k;
		else
			(void)poll(&(struct pollfd){ .fd = ovcd_metrics_server_fd(s), .events = POLLIN }, 1, 10);
	}
	out[n] = '\0';
	return n;
}

static void request(const char *req, char *out, size_t size)
{
	int cfd;
	struct ovcd_metrics_server *s = server_with_client(&LIM, &cfd);

	assert_int_equal(send(cfd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	(void)exchange(s, cfd, out, size);
	close(cfd);
	ovcd_metrics_server_free(s);
}

static void test_route(void **state)
{
	assert_int_equal(ovcd_metrics_route("GET", "/metrics"), OVCD_METRICS_ROUTE_METRICS);
	assert_int_equal(ovcd_metrics_route("HEAD", "/"), OVCD_METRICS_ROUTE_METRICS);
	assert_int_equal(ovcd_metrics_route("GET", "/metricsx"), OVCD_METRICS_ROUTE_NOT_FOUND);
	assert_int_equal(ovcd_metrics_route("GET", "/metrics/"), OVCD_METRICS_ROUTE_NOT_FOUND);
	assert_int_equal(ovcd_metrics_route("POST", "/metrics"), OVCD_METRICS_ROUTE_BAD_METHOD);
	assert_int_equal(ovcd_metrics_route("get", "/metrics"), OVCD_METRICS_ROUTE_BAD_METHOD);
	assert_int_equal(ovcd_metrics_route(NULL, NULL), OVCD_METRICS_ROUTE_NOT_FOUND);
}

static void test_server_replies(void **state)
{
	char out[8192];
	unsigned calls = body_calls;

	/* As Prometheus asks, OpenMetrics first: the text format it reads too. */
	request("GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,"
		"text/plain;version=0.0.4;q=0.5\r\n\r\n",
		out, sizeof(out));
	assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out, "Content-Type: " OVCD_METRICS_CONTENT_TYPE "\r\n"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_non_null(strstr(out, "\r\n\r\n# HELP ovc_guests x\n"));
	assert_string_equal(out + strlen(out) - 6, "# EOF\n");
	assert_int_equal(body_calls, calls + 1);

	request("GET / HTTP/1.0\r\n\r\n", out, sizeof(out));
	assert_non_null(strstr(out, " 200 OK\r\n"));
	request("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
	assert_non_null(strstr(out, " 200 OK\r\n"));
	assert_null(strstr(out, "# EOF"));
	request("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", out, sizeof(out));
	assert_non_null(strstr(out, " 404 Not Found\r\n"));
	request("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", out, sizeof(out));
	assert_non_null(strstr(out, " 405 Method Not Allowed\r\n"));
	assert_non_null(strstr(out, "Allow: GET, HEAD\r\n"));
	/* Not HTTP: closed, never the metrics. */
	request("garbage\r\n\r\n", out, sizeof(out));
	assert_null(strstr(out, "# EOF"));
	/* A request line longer than the connection's memory. */
	{
		char big[40000];

		memset(big, 'a', sizeof(big));
		memcpy(big, "GET /", 5);
		big[sizeof(big) - 1] = '\0';
		memcpy(big + sizeof(big) - 1 - strlen(" HTTP/1.1\r\n\r\n"), " HTTP/1.1\r\n\r\n",
		       strlen(" HTTP/1.1\r\n\r\n"));
		request(big, out, sizeof(out));
		assert_null(strstr(out, "# EOF"));
		assert_non_null(strstr(out, "HTTP/1.1 414 "));
	}
}

/* A request a byte at a time: process() handles what is there and
 * returns; the reply comes when the last byte does. */
static void test_server_slow_request(void **state)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
	char out[8192];
	int cfd;
	struct ovcd_metrics_server *s = server_with_client(&LIM, &cfd);
	size_t open_conns;

	for (size_t i = 0; i + 1 < sizeof(req) - 1; i++) {
		assert_int_equal(send(cfd, req + i, 1, MSG_NOSIGNAL), 1);
		ovcd_metrics_server_process(s);
		assert_int_equal(recv(cfd, out, sizeof(out), MSG_DONTWAIT), -1);
		assert_int_equal(errno, EAGAIN);
	}
	ovcd_metrics_server_stats(s, NULL, NULL, &open_conns);
	assert_int_equal(open_conns, 1);
	assert_int_equal(send(cfd, req + sizeof(req) - 2, 1, MSG_NOSIGNAL), 1);
	assert_true(exchange(s, cfd, out, sizeof(out)) > 0);
	assert_non_null(strstr(out, " 200 OK\r\n"));
	close(cfd);
	ovcd_metrics_server_free(s);
}

/* Past its deadline a connection is closed, however busy it keeps. */
static void test_server_deadline(void **state)
{
	struct ovcd_metrics_limits lim = LIM;
	struct ovcd_metrics_server *s;
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	uint64_t cut = 0;
	char out[64];
	int cfd;

	lim.deadline_usec = 20 * 1000;
	s = server_with_client(&lim, &cfd);
	assert_int_equal(send(cfd, "GET /met", 8, MSG_NOSIGNAL), 8);
	ovcd_metrics_server_process(s);
	assert_true(ovcd_metrics_server_timeout_msec(s) >= 0);
	nanosleep(&ts, NULL);
	assert_int_equal(ovcd_metrics_server_timeout_msec(s), 0);
	assert_int_equal(exchange(s, cfd, out, sizeof(out)), 0); /* EOF, no reply */
	ovcd_metrics_server_stats(s, NULL, &cut, NULL);
	assert_int_equal(cut, 1);
	close(cfd);
	ovcd_metrics_server_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_textfile_atomic),
		cmocka_unit_test(test_listen_loopback_only),
		cmocka_unit_test(test_route),
		cmocka_unit_test(test_server_replies),
		cmocka_unit_test(test_server_slow_request),
		cmocka_unit_test(test_server_deadline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
