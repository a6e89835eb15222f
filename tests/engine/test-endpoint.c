/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The engine's control endpoint: the protocol's grammar (unit: requests and
 * replies, garbage, long lines, other versions), and ovc_engine_publish()
 * with a real engine over real anonymous memory in this process, talked to
 * through its real unix socket (integration-level, in the same file).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/endpoint-proto.h"
#include "engine-test.h"

/* --- grammar --- */

static int req(const char *s, struct ep_request *r, char *msg)
{
	return ep_parse_request(s, strlen(s), r, msg, EP_MSG_MAX);
}

static void test_request_ok(void **state)
{
	struct ep_request r;
	char msg[EP_MSG_MAX];

	assert_ovc_ok(req("OVC1 stats", &r, msg));
	assert_int_equal(r.cmd, EP_CMD_STATS);
	assert_ovc_ok(req("OVC1   stats  \r", &r, msg));
	assert_int_equal(r.cmd, EP_CMD_STATS);
	assert_ovc_ok(req("OVC1 reclaim target_bytes=1073741824", &r, msg));
	assert_int_equal(r.cmd, EP_CMD_RECLAIM);
	assert_int_equal(r.target_bytes, 1073741824);
	assert_ovc_ok(req("OVC1 reclaim target_bytes=18446744073709551615", &r, msg));
	assert_true(r.target_bytes == UINT64_MAX);
	assert_ovc_ok(req("OVC1 reclaim target_bytes=0", &r, msg));
	assert_int_equal(r.target_bytes, 0);
}

static void test_request_errors(void **state)
{
	static const struct {
		const char *line;
		int err;
		const char *in_msg;
	} cases[] = {
		{ "", -EPROTO, "empty" },
		{ "   ", -EPROTO, "empty" },
		{ "GET / HTTP/1.1", -EPROTO, "not an ovc" },
		{ "ovc1 stats", -EPROTO, "not an ovc" },
		{ "OVC stats", -EPROTO, "not an ovc" },
		{ "OVC1x stats", -EPROTO, "not an ovc" },
		{ "OVC2 stats", -EPROTONOSUPPORT, "speaks OVC1" },
		{ "OVC10 stats", -EPROTONOSUPPORT, "OVC10" },
		{ "OVC1", -EINVAL, "missing command" },
		{ "OVC1 reboot", -EINVAL, "unknown command" },
		{ "OVC1 stats now", -EINVAL, "no arguments" },
		{ "OVC1 reclaim", -EINVAL, "usage" },
		{ "OVC1 reclaim 5", -EINVAL, "usage" },
		{ "OVC1 reclaim target_bytes=", -EINVAL, "decimal" },
		{ "OVC1 reclaim target_bytes=-1", -EINVAL, "decimal" },
		{ "OVC1 reclaim target_bytes=+1", -EINVAL, "decimal" },
		{ "OVC1 reclaim target_bytes=0x10", -EINVAL, "decimal" },
		{ "OVC1 reclaim target_bytes=18446744073709551616", -ERANGE, "2^64" },
		{ "OVC1 reclaim target_bytes=999999999999999999999999", -ERANGE, "2^64" },
		{ "OVC1 reclaim target_bytes=1 x", -EINVAL, "too many" },
		{ "OVC1 reclaim x=1", -EINVAL, "usage" },
		{ "OVC1 a b c d e f", -EINVAL, "too many" },
		{ "OVC1 st\tats", -EPROTO, "control" },
	};
	char msg[EP_MSG_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct ep_request r = { .cmd = 77, .target_bytes = 42 };
		int e = req(cases[i].line, &r, msg);

		if (e != cases[i].err || !strstr(msg, cases[i].in_msg))
			fail_msg("'%s': %d '%s', expected %d with '%s'", cases[i].line, e, msg,
				 cases[i].err, cases[i].in_msg);
		/* untouched on failure */
		assert_int_equal(r.cmd, 77);
		assert_int_equal(r.target_bytes, 42);
	}
	/* A NUL byte in the middle is no terminator: it is refused. */
	struct ep_request r;
	assert_int_equal(ep_parse_request("OVC1 stats\0x", 12, &r, msg, sizeof(msg)), -EPROTO);
	/* A NULL msg buffer is allowed. */
	assert_int_equal(ep_parse_request("OVC2 x", 6, &r, NULL, 0), -EPROTONOSUPPORT);
}

static void test_reply_roundtrip(void **state)
{
	struct ep_stats st;
	char buf[EP_REPLY_MAX];
	struct ep_reply rp;
	int n;

	/* memset: the struct has padding, and it is compared as memory */
	memset(&st, 0, sizeof(st));
	strcpy(st.name, "web-1.a_b");
	st.pid = 123;
	st.max_bytes = 1ull << 30;
	st.region_bytes = 1ull << 29;
	st.zero_bytes = 4096;
	st.swap_bytes = 8192;
	st.target_bytes = UINT64_MAX;
	st.saved_bytes = 12288;
	st.pages_swapped_in = 5;
	st.refaults = 6;
	/* The first engines' reply, byte for byte: the optional figures are
	 * left out unless asked for. */
	n = ep_format_stats(buf, sizeof(buf), &st, 0);
	assert_string_equal(buf, "OVC1 ok name=web-1.a_b pid=123 max_bytes=1073741824 "
				 "region_bytes=536870912 zero_bytes=4096 swap_bytes=8192 "
				 "target_bytes=18446744073709551615 saved_bytes=12288 "
				 "pages_swapped_in=5 refaults=6\n");
	assert_ovc_ok(ep_parse_reply(buf, (size_t)n - 1, &rp));
	assert_true(rp.ok);
	assert_int_equal(rp.have, EP_HAVE_STATS_BASE);
	assert_memory_equal(&rp.st, &st, sizeof(st));

	/* Every figure, the optional ones included. */
	st.pages_swapped_out = 7;
	st.swap_cache_pages = 8;
	st.swap_cache_hits = 9;
	st.swap_write_errors = 10;
	st.swap_read_errors = 11;
	st.fault_p50_usec = 16;
	st.fault_p99_usec = 1024;
	n = ep_format_stats(buf, sizeof(buf), &st, EP_HAVE_STATS_ALL);
	assert_true(n > 0 && buf[n - 1] == '\n');
	assert_non_null(strstr(buf, " swap_cache_pages=8 "));
	assert_ovc_ok(ep_parse_reply(buf, (size_t)n - 1, &rp));
	assert_int_equal(rp.have, EP_HAVE_STATS_ALL);
	assert_memory_equal(&rp.st, &st, sizeof(st));

	/* Some of them: only those, and the others stay unset. */
	n = ep_format_stats(buf, sizeof(buf), &st, EP_HAVE_SWAP_CACHE | EP_HAVE_FAULT_P99);
	assert_null(strstr(buf, "fault_p50_usec"));
	assert_ovc_ok(ep_parse_reply(buf, (size_t)n - 1, &rp));
	assert_int_equal(rp.have, EP_HAVE_STATS_BASE | EP_HAVE_SWAP_CACHE | EP_HAVE_FAULT_P99);
	assert_int_equal(rp.st.swap_cache_pages, 8);
	assert_int_equal(rp.st.fault_p99_usec, 1024);
	assert_int_equal(rp.st.fault_p50_usec, 0);

	/* The longest possible reply fits, in bytes and in the token count an
	 * OVC1 client accepts. */
	memset(st.name, 'n', OVC_PUBLISH_NAME_MAX);
	st.name[OVC_PUBLISH_NAME_MAX] = '\0';
	for (uint64_t *v = &st.pid; v <= &st.fault_p99_usec; v++)
		*v = UINT64_MAX;
	n = ep_format_stats(buf, sizeof(buf), &st, EP_HAVE_STATS_ALL);
	assert_true(n > 0 && n < EP_REPLY_MAX);
	assert_ovc_ok(ep_parse_reply(buf, (size_t)n - 1, &rp));
	assert_int_equal(rp.have, EP_HAVE_STATS_ALL);
	assert_memory_equal(&rp.st, &st, sizeof(st));

	n = ep_format_reclaim_ok(buf, sizeof(buf), 77);
	assert_string_equal(buf, "OVC1 ok target_bytes=77\n");
	assert_ovc_ok(ep_parse_reply(buf, (size_t)n - 1, &rp));
	assert_true(rp.ok && rp.have == EP_HAVE_TARGET && rp.st.target_bytes == 77);

	/* errors: positive or negative errno, spaces kept, control bytes not */
	n = ep_format_error(buf, sizeof(buf), -EPERM, "not\nyours, go away");
	assert_string_equal(buf, "OVC1 error errno=1 msg=not?yours, go away\n");
	assert_ovc_ok(ep_parse_reply(buf, (size_t)n - 1, &rp));
	assert_false(rp.ok);
	assert_int_equal(rp.err, -EPERM);
	assert_string_equal(rp.msg, "not?yours, go away");

	/* a long message is cut, and the reply still fits */
	char longmsg[1000];
	memset(longmsg, 'x', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	n = ep_format_error(buf, sizeof(buf), EINVAL, longmsg);
	assert_true(n > 0 && n < EP_REPLY_MAX);
	assert_ovc_ok(ep_parse_reply(buf, (size_t)n - 1, &rp));
	assert_int_equal(strlen(rp.msg), EP_MSG_MAX);

	/* too small a buffer */
	assert_int_equal(ep_format_stats(buf, 10, &st, 0), -ENOBUFS);
	assert_int_equal(ep_format_stats(buf, (size_t)n, &st, EP_HAVE_STATS_ALL), -ENOBUFS);
}

static void test_reply_garbage(void **state)
{
	static const char *bad[] = {
		"", "OVC1", "OVC2 ok", "OVC1 maybe", "ok name=x", "OVC1 ok max_bytes=12a",
		"OVC1 ok max_bytes=-1", "OVC1 ok =5", "OVC1 ok name=../etc", "OVC1 ok name=",
		"OVC1 ok zero_bytes=18446744073709551616", "OVC1 error", "OVC1 error errno=0",
		"OVC1 error errno=99999", "OVC1 error msg=x", "OVC1 ok noequals",
		"OVC1 ok name=a\x01",
		/* The optional figures are numbers like the rest. */
		"OVC1 ok swap_cache_pages=", "OVC1 ok swap_cache_pages=x", "OVC1 ok fault_p50_usec=-1",
		"OVC1 ok pages_swapped_out=18446744073709551616", "OVC1 ok swap_read_errors=0x10",
		"OVC1 ok fault_p99_usec=1e6", "OVC1 ok swap_write_errors=+1",
	};
	struct ep_reply rp;

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (ep_parse_reply(bad[i], strlen(bad[i]), &rp) != -EPROTO)
			fail_msg("'%s' was accepted", bad[i]);
	/* A newer engine's extra figures are skipped. */
	const char *newer = "OVC1 ok name=a future_bytes=9 max_bytes=4096 zero_bytes=0 swap_bytes=0 "
			    "target_bytes=0";
	assert_ovc_ok(ep_parse_reply(newer, strlen(newer), &rp));
	assert_int_equal(rp.have, EP_HAVE_STATS_REQUIRED);
	assert_int_equal(rp.st.max_bytes, 4096);
	/* So are up to 30 pairs; more is not a reply an OVC1 client takes. */
	{
		char line[EP_REPLY_MAX];
		int n = snprintf(line, sizeof(line), "OVC1 ok name=a max_bytes=1 zero_bytes=0 "
						      "swap_bytes=0 target_bytes=0");

		for (int i = 5; i < EP_REPLY_PAIRS_MAX; i++)
			n += snprintf(line + n, sizeof(line) - (size_t)n, " x%d=%d", i, i);
		assert_ovc_ok(ep_parse_reply(line, (size_t)n, &rp));
		n += snprintf(line + n, sizeof(line) - (size_t)n, " one=more");
		assert_int_equal(ep_parse_reply(line, (size_t)n, &rp), -EPROTO);
	}
	/* An error without msg is still an error. */
	assert_ovc_ok(ep_parse_reply("OVC1 error errno=22", 19, &rp));
	assert_int_equal(rp.err, -EINVAL);
	assert_string_equal(rp.msg, "");
}

static void test_lat_percentile(void **state)
{
	uint64_t h[OVC_LAT_BUCKETS] = { 0 }, us = 77;

	/* Nothing served: no percentile, and @ret untouched. */
	assert_false(ep_lat_percentile(h, OVC_LAT_BUCKETS, 50, &us));
	assert_int_equal(us, 77);
	/* 98 faults under 16 µs (bucket 4), 2 under 1024 µs (bucket 10). */
	h[4] = 98;
	h[10] = 2;
	assert_true(ep_lat_percentile(h, OVC_LAT_BUCKETS, 50, &us));
	assert_int_equal(us, 16);
	assert_true(ep_lat_percentile(h, OVC_LAT_BUCKETS, 98, &us));
	assert_int_equal(us, 16);
	assert_true(ep_lat_percentile(h, OVC_LAT_BUCKETS, 99, &us));
	assert_int_equal(us, 1024);
	assert_true(ep_lat_percentile(h, OVC_LAT_BUCKETS, 100, &us));
	assert_int_equal(us, 1024);
	/* Under 1 µs is bucket 0; the open last bucket reads 2^19. */
	memset(h, 0, sizeof(h));
	h[0] = 1;
	assert_true(ep_lat_percentile(h, OVC_LAT_BUCKETS, 50, &us));
	assert_int_equal(us, 1);
	h[OVC_LAT_BUCKETS - 1] = 3;
	assert_true(ep_lat_percentile(h, OVC_LAT_BUCKETS, 50, &us));
	assert_int_equal(us, 1u << (OVC_LAT_BUCKETS - 1));
	/* Counts that would overflow a u64 sum still give an answer. */
	h[0] = UINT64_MAX;
	h[1] = UINT64_MAX;
	h[OVC_LAT_BUCKETS - 1] = UINT64_MAX;
	assert_true(ep_lat_percentile(h, OVC_LAT_BUCKETS, 50, &us));
	assert_int_equal(us, 2);
	/* Nonsense arguments. */
	assert_false(ep_lat_percentile(h, OVC_LAT_BUCKETS, 0, &us));
	assert_false(ep_lat_percentile(h, OVC_LAT_BUCKETS, 101, &us));
	assert_false(ep_lat_percentile(h, 0, 50, &us));
}

static void test_lines(void **state)
{
	char buf[16];
	struct ep_lines l;
	const char *line;
	size_t len, room;
	char *p;

	ep_lines_init(&l, buf, sizeof(buf));
	assert_int_equal(ep_lines_next(&l, &line, &len), 0);
	p = ep_lines_space(&l, &room);
	assert_int_equal(room, 16);
	memcpy(p, "ab\ncd\nef", 8);
	ep_lines_added(&l, 8);
	assert_int_equal(ep_lines_next(&l, &line, &len), 1);
	assert_int_equal(len, 2);
	assert_string_equal(line, "ab");
	assert_int_equal(ep_lines_next(&l, &line, &len), 1);
	assert_string_equal(line, "cd");
	assert_int_equal(ep_lines_next(&l, &line, &len), 0); /* "ef" is partial */
	p = ep_lines_space(&l, &room);
	assert_int_equal(room, 14);
	memcpy(p, "g\n", 2);
	ep_lines_added(&l, 2);
	assert_int_equal(ep_lines_next(&l, &line, &len), 1);
	assert_string_equal(line, "efg");
	/* 16 bytes without a newline: a line too long, never a silent cut */
	p = ep_lines_space(&l, &room);
	memset(p, 'x', room);
	ep_lines_added(&l, room + 100); /* clamped */
	assert_int_equal(ep_lines_next(&l, &line, &len), -EMSGSIZE);
}

static void test_name_valid(void **state)
{
	char n65[66];

	assert_true(ep_name_valid("web1", 4));
	assert_true(ep_name_valid("ovc-vmm-1234", 12));
	assert_true(ep_name_valid("a.b_c-D9", 8));
	assert_false(ep_name_valid("", 0));
	assert_false(ep_name_valid(".hidden", 7));
	assert_false(ep_name_valid("a/b", 3));
	assert_false(ep_name_valid("a b", 3));
	assert_false(ep_name_valid("ä", strlen("ä")));
	memset(n65, 'a', 65);
	n65[65] = '\0';
	assert_true(ep_name_valid(n65, 64));
	assert_false(ep_name_valid(n65, 65));
}

/* --- the endpoint, with a real engine --- */

#define RAM_BYTES (4 * MIB)

struct fixture {
	char dir[64];
	struct guest_ram g;
	ovc_engine *e;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/ovc-test-endpoint-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	ovc_engine_free(f->e);
	if (f->g.p)
		guest_ram_free(&f->g);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	(void)!system(cmd);
	free(f);
	return 0;
}

/* An engine over RAM_BYTES of anonymous memory, half of it data. */
static void engine_up(struct fixture *f, unsigned flags)
{
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = flags | OVC_ENGINE_NO_AUTOSCAN };

	need_uffd();
	guest_ram_alloc(&f->g, RAM_BYTES, BACK_ANON);
	for (size_t i = 0; i < RAM_BYTES / 2; i += 4096)
		memset(f->g.p + i, 0x5a, 4096);
	memset(f->g.p + RAM_BYTES / 2, 0, RAM_BYTES / 2); /* present zero pages */
	assert_ovc_ok(ovc_engine_new(&o, &f->e));
	assert_ovc_ok(ovc_region_add(f->e, f->g.p, RAM_BYTES, 0, 0));
}

static void publish(struct fixture *f, const char *name, uint64_t max_bytes, mode_t mode)
{
	struct ovc_publish_opts p = { .size = sizeof(p), .dir = f->dir, .name = name,
				      .max_bytes = max_bytes, .mode = mode };

	assert_ovc_ok(ovc_engine_publish(f->e, &p));
}

static void sock_path(const struct fixture *f, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s.sock", f->dir, name);
}

static int client(const struct fixture *f, const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sock_path(f, name, sa.sun_path, sizeof(sa.sun_path));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* Read one line (bounded wait: a failure, not a timing claim). Returns its
 * length, 0 when the endpoint closed the connection. */
static size_t read_line(int fd, char *buf, size_t size)
{
	size_t len = 0;

	while (len + 1 < size) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		assert_int_equal(poll(&p, 1, 30000), 1);
		n = recv(fd, buf + len, 1, 0);
		/* A peer that closes with our bytes unread resets: closed too. */
		if (n < 0 && errno == ECONNRESET)
			break;
		assert_true(n >= 0);
		if (n == 0)
			break;
		if (buf[len++] == '\n')
			break;
	}
	buf[len] = '\0';
	return len;
}

static void ask(int fd, const char *line, struct ep_reply *rp)
{
	char buf[EP_REPLY_MAX + 1];
	size_t n;

	assert_int_equal(send(fd, line, strlen(line), MSG_NOSIGNAL), (ssize_t)strlen(line));
	n = read_line(fd, buf, sizeof(buf));
	assert_true(n > 0 && buf[n - 1] == '\n');
	assert_ovc_ok(ep_parse_reply(buf, n - 1, rp));
}

static void check_stats_and_reclaim(struct fixture *f)
{
	struct ovc_engine_stats st = { .size = sizeof(st) };
	struct ep_reply rp;
	int fd;

	assert_true(ovc_engine_scan_sync(f->e, 0) > 0);
	fd = client(f, "web1");
	assert_true(fd >= 0);

	ask(fd, "OVC1 stats\n", &rp);
	assert_true(rp.ok);
	assert_int_equal(rp.have & EP_HAVE_STATS_REQUIRED, EP_HAVE_STATS_REQUIRED);
	assert_string_equal(rp.st.name, "web1");
	assert_int_equal(rp.st.pid, getpid());
	assert_int_equal(rp.st.max_bytes, 64 * MIB);
	assert_int_equal(rp.st.region_bytes, RAM_BYTES);
	assert_ovc_ok(ovc_engine_stats(f->e, &st));
	assert_true(st.zero_pages_now > 0);
	assert_int_equal(rp.st.zero_bytes, st.zero_pages_now * 4096);
	assert_int_equal(rp.st.swap_bytes, st.swapped_pages_now * 4096);
	assert_int_equal(rp.st.target_bytes, 0);
	/* The swap figures, as the engine counts them (nothing faults here:
	 * the counters stand still). */
	assert_int_equal(rp.have & EP_HAVE_STATS_ALL & ~(EP_HAVE_FAULT_P50 | EP_HAVE_FAULT_P99),
			 EP_HAVE_STATS_ALL & ~(EP_HAVE_FAULT_P50 | EP_HAVE_FAULT_P99));
	assert_int_equal(rp.st.pages_swapped_out, st.pages_swapped_out);
	assert_int_equal(rp.st.swap_cache_pages, st.swap_cache_pages_now);
	assert_int_equal(rp.st.swap_cache_hits, st.swap_cache_hits);
	assert_int_equal(rp.st.swap_write_errors, st.swap_write_errors);
	assert_int_equal(rp.st.swap_read_errors, st.swap_read_errors);
	{
		uint64_t p50;
		bool served = ep_lat_percentile(st.fault_lat_hist, OVC_LAT_BUCKETS, 50, &p50);

		assert_int_equal(!!(rp.have & EP_HAVE_FAULT_P50), served);
		assert_int_equal(!!(rp.have & EP_HAVE_FAULT_P99), served);
		if (served)
			assert_int_equal(rp.st.fault_p50_usec, p50);
	}

	ask(fd, "OVC1 reclaim target_bytes=1048576\n", &rp);
	assert_true(rp.ok);
	assert_int_equal(rp.st.target_bytes, MIB);
	assert_ovc_ok(ovc_engine_stats(f->e, &st));
	assert_int_equal(st.reclaim_target_bytes, MIB);
	ask(fd, "OVC1 stats\n", &rp);
	assert_int_equal(rp.st.target_bytes, MIB);

	/* Wrong version, garbage: an error naming what the engine speaks, and
	 * the connection stays usable. */
	ask(fd, "OVC7 stats\n", &rp);
	assert_false(rp.ok);
	assert_int_equal(rp.err, -EPROTONOSUPPORT);
	assert_non_null(strstr(rp.msg, "OVC1"));
	ask(fd, "\x01\xff garbage\n", &rp);
	assert_int_equal(rp.err, -EPROTO);
	/* Two requests in one write: two replies, in order. */
	{
		char buf[EP_REPLY_MAX + 1];
		const char *two = "OVC1 reclaim target_bytes=0\nOVC1 stats\n";

		assert_int_equal(send(fd, two, strlen(two), MSG_NOSIGNAL), (ssize_t)strlen(two));
		assert_true(read_line(fd, buf, sizeof(buf)) > 0);
		assert_string_equal(buf, "OVC1 ok target_bytes=0\n");
		assert_true(read_line(fd, buf, sizeof(buf)) > 0);
		assert_non_null(strstr(buf, "OVC1 ok name=web1 "));
	}
	close(fd);
}

static void test_publish_threads(void **state)
{
	struct fixture *f = *state;

	engine_up(f, 0);
	publish(f, "web1", 64 * MIB, 0);
	check_stats_and_reclaim(f);
}

/* With OVC_ENGINE_NO_THREADS the endpoint still has its thread; the
 * engine's own work runs in the "VMM's" loop. */
static void test_publish_no_threads(void **state)
{
	struct fixture *f = *state;
	struct loop l;

	engine_up(f, OVC_ENGINE_NO_THREADS);
	loop_start(&l, f->e, false);
	publish(f, "web1", 64 * MIB, 0);
	check_stats_and_reclaim(f);
	loop_stop(&l);
}

static void test_socket_lifetime(void **state)
{
	struct fixture *f = *state;
	struct ovc_publish_opts p = { .size = sizeof(p), .dir = f->dir };
	char path[128], name[32];
	struct stat st;
	int fd;

	engine_up(f, 0);
	/* Default name pid-<pid>, mode 0660, a directory created on the way. */
	snprintf(path, sizeof(path), "%s/sub/dir", f->dir);
	p.dir = path;
	assert_ovc_ok(ovc_engine_publish(f->e, &p));
	snprintf(name, sizeof(name), "pid-%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/sub/dir/%s.sock", f->dir, name);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	assert_int_equal(ovc_engine_publish(f->e, &p), -EALREADY);
	/* A client connected at unpublish is closed, the socket removed. */
	snprintf(path, sizeof(path), "%s/sub/dir", f->dir);
	p.dir = path;
	{
		struct fixture g = *f;
		strcpy(g.dir, path);
		fd = client(&g, name);
	}
	assert_true(fd >= 0);
	assert_ovc_ok(ovc_engine_unpublish(f->e, 0));
	assert_ovc_ok(ovc_engine_unpublish(f->e, 0)); /* not published: nothing */
	snprintf(path, sizeof(path), "%s/sub/dir/%s.sock", f->dir, name);
	assert_int_equal(lstat(path, &st), -1);
	{
		char buf[8];
		assert_int_equal(read_line(fd, buf, sizeof(buf)), 0); /* EOF */
	}
	close(fd);

	/* ovc_engine_free removes it too. */
	publish(f, "web2", 0, 0600);
	sock_path(f, "web2", path, sizeof(path));
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	f->e = ovc_engine_free(f->e);
	assert_int_equal(lstat(path, &st), -1);
	assert_int_equal(errno, ENOENT);
}

static void test_publish_errors(void **state)
{
	struct fixture *f = *state;
	struct ovc_publish_opts p = { .size = sizeof(p), .dir = f->dir, .name = "dup" };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ovc_engine *e2;
	char path[128];
	int fd;

	engine_up(f, 0);
	assert_int_equal(ovc_engine_publish(NULL, &p), -EINVAL);
	assert_int_equal(ovc_engine_unpublish(NULL, 0), -EINVAL);
	p.flags = 1;
	assert_int_equal(ovc_engine_publish(f->e, &p), -EINVAL);
	p.flags = 0;
	p.size = 4;
	assert_int_equal(ovc_engine_publish(f->e, &p), -EINVAL);
	p.size = sizeof(p);
	p.mode = 04777;
	assert_int_equal(ovc_engine_publish(f->e, &p), -EINVAL);
	p.mode = 0;
	for (const char **n = (const char *[]){ "", ".x", "a/b", "a b", "../x", NULL }; *n; n++) {
		p.name = *n;
		assert_int_equal(ovc_engine_publish(f->e, &p), -EINVAL);
	}
	p.name = "dup";
	{
		char longdir[200];
		memset(longdir, 'd', sizeof(longdir) - 1);
		longdir[sizeof(longdir) - 1] = '\0';
		p.dir = longdir;
		assert_int_equal(ovc_engine_publish(f->e, &p), -ENAMETOOLONG);
		p.dir = f->dir;
	}

	/* Not a socket in the way: refused, and left alone. */
	sock_path(f, "dup", path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(ovc_engine_publish(f->e, &p), -EEXIST);
	unlink(path);

	/* A stale socket (its owner died) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, path);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	assert_ovc_ok(ovc_engine_publish(f->e, &p));

	/* A live one is not. */
	struct ovc_engine_opts o = { .size = sizeof(o), .flags = OVC_ENGINE_NO_AUTOSCAN };
	assert_ovc_ok(ovc_engine_new(&o, &e2));
	assert_int_equal(ovc_engine_publish(e2, &p), -EADDRINUSE);
	ovc_engine_free(e2);
	/* and the failed attempt left no temporary file behind */
	fd = client(f, "dup");
	assert_true(fd >= 0);
	close(fd);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "test $(ls -A '%s' | wc -l) -eq 1", f->dir);
	assert_int_equal(system(cmd), 0);
}

/* Clients that stall, flood or send too long a line cost a slot each and
 * never keep the endpoint from answering someone else. */
static void test_hostile_clients(void **state)
{
	struct fixture *f = *state;
	struct ep_reply rp;
	char buf[EP_REPLY_MAX + 1];
	int stall[12], flood, fd;

	engine_up(f, 0);
	publish(f, "web1", 0, 0);

	/* A line longer than allowed: an error, then the endpoint hangs up. */
	fd = client(f, "web1");
	char big[600];
	memset(big, 'A', sizeof(big));
	assert_int_equal(send(fd, big, sizeof(big), MSG_NOSIGNAL), (ssize_t)sizeof(big));
	assert_true(read_line(fd, buf, sizeof(buf)) > 0);
	assert_ovc_ok(ep_parse_reply(buf, strlen(buf) - 1, &rp));
	assert_int_equal(rp.err, -EMSGSIZE);
	assert_int_equal(read_line(fd, buf, sizeof(buf)), 0);
	close(fd);

	/* A client that asks and asks but never reads. */
	flood = client(f, "web1");
	assert_true(flood >= 0);
	fcntl(flood, F_SETFL, O_NONBLOCK);
	for (int i = 0; i < 100000; i++)
		if (send(flood, "OVC1 stats\n", 11, MSG_NOSIGNAL) < 0)
			break; /* the endpoint stopped reading: as it should */

	/* More half-line stallers than there are slots. */
	for (size_t i = 0; i < ARRAY_SIZE(stall); i++) {
		stall[i] = client(f, "web1");
		assert_true(stall[i] >= 0);
		assert_int_equal(send(stall[i], "OVC1 st", 7, MSG_NOSIGNAL), 7);
	}

	/* Someone else is still answered. */
	fd = client(f, "web1");
	assert_true(fd >= 0);
	ask(fd, "OVC1 stats\n", &rp);
	assert_true(rp.ok);
	assert_int_equal(rp.st.region_bytes, RAM_BYTES);
	close(fd);
	for (size_t i = 0; i < ARRAY_SIZE(stall); i++)
		close(stall[i]);
	close(flood);
	/* and the engine is freed (teardown) without waiting on anyone */
}

/* A client that leaves half a line is dropped (after STALL_USEC, 10 s);
 * an idle one with nothing pending is not. Waits about 11 s. */
static void test_stalled_client_dropped(void **state)
{
	struct fixture *f = *state;
	struct ep_reply rp;
	char buf[64];
	int half, idle;

	engine_up(f, 0);
	publish(f, "web1", 0, 0);
	half = client(f, "web1");
	idle = client(f, "web1");
	assert_true(half >= 0 && idle >= 0);
	ask(idle, "OVC1 stats\n", &rp);
	assert_int_equal(send(half, "OVC1 sta", 8, MSG_NOSIGNAL), 8);
	/* read_line waits up to 30 s: EOF must come within that */
	assert_int_equal(read_line(half, buf, sizeof(buf)), 0);
	ask(idle, "OVC1 stats\n", &rp);
	assert_true(rp.ok);
	close(half);
	close(idle);
}

/* Setting a target needs root or the VMM's uid; reading stats only needs
 * access to the socket. */
static void test_peer_check(void **state)
{
	struct fixture *f = *state;
	pid_t pid;
	int status;

	if (geteuid() != 0)
		skip_because("needs root to run a client under another uid");
	engine_up(f, 0);
	assert_int_equal(chmod(f->dir, 0755), 0);
	publish(f, "web1", 0, 0666);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct ep_reply rp;
		char buf[EP_REPLY_MAX + 1];
		int fd;
		size_t n;

		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(10);
		fd = client(f, "web1");
		if (fd < 0)
			_exit(11);
		if (send(fd, "OVC1 reclaim target_bytes=4096\n", 31, MSG_NOSIGNAL) != 31)
			_exit(12);
		n = read_line(fd, buf, sizeof(buf));
		if (!n || ep_parse_reply(buf, n - 1, &rp) < 0 || rp.ok || rp.err != -EPERM)
			_exit(13);
		if (send(fd, "OVC1 stats\n", 11, MSG_NOSIGNAL) != 11)
			_exit(14);
		n = read_line(fd, buf, sizeof(buf));
		if (!n || ep_parse_reply(buf, n - 1, &rp) < 0 || !rp.ok)
			_exit(15);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	struct ovc_engine_stats st = { .size = sizeof(st) };
	assert_ovc_ok(ovc_engine_stats(f->e, &st));
	assert_int_equal(st.reclaim_target_bytes, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_ok),
		cmocka_unit_test(test_request_errors),
		cmocka_unit_test(test_reply_roundtrip),
		cmocka_unit_test(test_reply_garbage),
		cmocka_unit_test(test_lat_percentile),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test_setup_teardown(test_publish_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_no_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_socket_lifetime, setup, teardown),
		cmocka_unit_test_setup_teardown(test_publish_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_clients, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_check, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stalled_client_dropped, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
