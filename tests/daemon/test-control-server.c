/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * unit: ovcd's control socket server (daemon/control-server.c) with a fake
 * owner instead of the manager: each request reaches the owner once, in
 * the order the client sent it, and its reply comes back in that order;
 * requests that do not parse or that the peer may not send never reach
 * it; an owner out of memory drops the client; the socket is never stolen
 * from a running server and is removed at the end. Real unix sockets in a
 * temporary directory, driven by this test's own epoll loop (single
 * thread, as in ovcd).
 */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ovc/common.h>

#include "control-server.h"
#include "common/util.h"
#include "control.h"
#include "host/config.h"
#include "ovc-test.h"

#define MAX_SEEN 16

/* The fake owner: what it was asked, in order. */
struct owner {
	enum ovcd_command seen[MAX_SEEN];
	unsigned n_seen;
	bool oom;                  /* answer NULL: out of memory */
};

static char *owner_request(void *userdata, const struct ovcd_request *req)
{
	struct owner *o = userdata;
	char msg[64];

	if (o->oom)
		return NULL;
	assert_true(o->n_seen < MAX_SEEN);
	o->seen[o->n_seen++] = req->command;
	snprintf(msg, sizeof(msg), "answer %u: %s", o->n_seen, ovcd_command_name(req->command));
	return ovcd_reply_ok(msg);
}

static const struct control_server_ops ops = { .request = owner_request };

struct fixture {
	char dir[64];
	char path[128];
	struct ovcd_config *cfg;
	int epfd;
	struct control_server *cs;
	struct owner owner;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/ovc-cs-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/ovcd.sock", f->dir);
	assert_ovc_ok(ovcd_config_new_default(&f->cfg));
	free(f->cfg->control.socket);
	f->cfg->control.socket = strdup(f->path);
	assert_non_null(f->cfg->control.socket);
	f->epfd = epoll_create1(EPOLL_CLOEXEC);
	assert_true(f->epfd >= 0);
	assert_ovc_ok(control_server_new(f->epfd, f->cfg, &ops, &f->owner, &f->cs));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	control_server_free(f->cs);
	/* The server removed the socket file it made. */
	assert_int_equal(stat(f->path, &st), -1);
	close(f->epfd);
	ovcd_config_free(f->cfg);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* One round of the loop: what ovcd's manager_run() does for the server. */
static void pump(struct fixture *f, int timeout_msec)
{
	struct epoll_event evs[8];
	int n = epoll_wait(f->epfd, evs, 8, timeout_msec);

	for (int i = 0; i < n; i++) {
		struct source *src = evs[i].data.ptr;

		if (src->type == SRC_CONTROL)
			control_server_accept(f->cs);
		else if (src->type == SRC_CLIENT)
			control_server_client_event(f->cs, src, evs[i].events);
		else
			fail_msg("unexpected source %d", (int)src->type);
	}
	(void)control_server_expire(f->cs);
}

static int client_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* Run the loop until @n reply lines came to @fd, or it was closed; the
 * lines in @buf. Returns the number of lines; -1 when the server closed
 * the connection first. A hang fails on the cap of rounds, not on time. */
static int read_replies(struct fixture *f, int fd, unsigned n, char *buf, size_t size)
{
	size_t len = 0;
	unsigned lines = 0;

	for (int round = 0; round < 2000 && lines < n; round++) {
		ssize_t k;

		pump(f, 10);
		k = recv(fd, buf + len, size - 1 - len, MSG_DONTWAIT);
		if (k == 0)
			return -1;
		if (k < 0) {
			assert_true(errno == EAGAIN);
			continue;
		}
		for (ssize_t i = 0; i < k; i++)
			lines += buf[len + (size_t)i] == '\n';
		len += (size_t)k;
		buf[len] = '\0';
	}
	return (int)lines;
}

/* Append to @buf the reply line the server sends for @ok / @text. */
static void expect_line(char *buf, size_t size, bool ok, const char *text)
{
	char *line = ok ? ovcd_reply_ok(text) : ovcd_reply_error(text);

	assert_non_null(line);
	assert_true(strlen(buf) + strlen(line) < size);
	strcat(buf, line);
	free(line);
}

static void send_all(int fd, const char *text)
{
	assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

static char *request(enum ovcd_command c)
{
	char *line = ovcd_request_format(c, "web1", OVCD_SET_FLOOR, "1GiB");

	assert_non_null(line);
	return line;
}

/* Requests sent in one write: each reaches the owner once, in order, and
 * the replies come back in that order. */
static void test_order(void **state)
{
	struct fixture *f = *state;
	static const enum ovcd_command want[] = { OVCD_CMD_STATUS, OVCD_CMD_GUESTS, OVCD_CMD_SET,
						  OVCD_CMD_RELOAD, OVCD_CMD_STATUS };
	char text[4096] = "", buf[8192];
	int fd = client_connect(f->path);

	assert_true(fd >= 0);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		char *line = request(want[i]);
		strcat(text, line);
		free(line);
	}
	send_all(fd, text);
	assert_int_equal(read_replies(f, fd, ARRAY_SIZE(want), buf, sizeof(buf)), (int)ARRAY_SIZE(want));
	assert_int_equal(f->owner.n_seen, ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++)
		assert_int_equal(f->owner.seen[i], want[i]);
	char want_text[4096] = "";
	expect_line(want_text, sizeof(want_text), true, "answer 1: status");
	expect_line(want_text, sizeof(want_text), true, "answer 2: guests");
	expect_line(want_text, sizeof(want_text), true, "answer 3: set");
	expect_line(want_text, sizeof(want_text), true, "answer 4: reload");
	expect_line(want_text, sizeof(want_text), true, "answer 5: status");
	assert_string_equal(buf, want_text);
	close(fd);
}

/* A line that does not parse is answered by the server itself, in its
 * place among the others; the owner never sees it. */
static void test_bad_line_stays_in_place(void **state)
{
	struct fixture *f = *state;
	char *status = request(OVCD_CMD_STATUS), text[1024], buf[4096], want_text[4096] = "";
	char err[OVCD_ERROR_MAX];
	struct ovcd_request req;
	int fd = client_connect(f->path);

	assert_true(fd >= 0);
	snprintf(text, sizeof(text), "%snot json\n%s", status, status);
	free(status);
	send_all(fd, text);
	assert_int_equal(read_replies(f, fd, 3, buf, sizeof(buf)), 3);
	assert_int_equal(f->owner.n_seen, 2);
	assert_int_equal(ovcd_request_parse("not json", 8, &req, err, sizeof(err)), -EINVAL);
	expect_line(want_text, sizeof(want_text), true, "answer 1: status");
	expect_line(want_text, sizeof(want_text), false, err);
	expect_line(want_text, sizeof(want_text), true, "answer 2: status");
	assert_string_equal(buf, want_text);
	close(fd);
}

/* A peer that may not mutate gets "permission denied" from the server;
 * the owner sees only what it may ask. */
static void test_refused_never_reaches_owner(void **state)
{
	struct fixture *f = *state;
	int pipefd[2], status;
	pid_t pid;

	if (geteuid() != 0)
		skip_because("needs root to connect as another user");
	/* Let uid 65534 connect; the server's own rule still applies. */
	assert_int_equal(chmod(f->dir, 0755), 0);
	assert_int_equal(chmod(f->path, 0666), 0);
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *reload = request(OVCD_CMD_RELOAD), *st = request(OVCD_CMD_STATUS), text[1024];
		int fd;

		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		fd = client_connect(f->path);
		if (fd < 0)
			_exit(3);
		snprintf(text, sizeof(text), "%s%s", reload, st);
		send_all(fd, text);
		/* Hand the connected socket's replies to the parent. */
		for (;;) {
			char b[4096];
			ssize_t k = recv(fd, b, sizeof(b), 0);
			if (k <= 0)
				_exit(k == 0 ? 0 : 4);
			if (write(pipefd[1], b, (size_t)k) != k)
				_exit(5);
			if (memchr(b, '\n', (size_t)k) && strstr(b, "answer"))
				_exit(0);
		}
	}
	close(pipefd[1]);
	char buf[4096] = "";
	size_t len = 0;
	for (int round = 0; round < 2000; round++) {
		pump(f, 10);
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
	}
	ssize_t k;
	while ((k = read(pipefd[0], buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)k;
	buf[len] = '\0';
	close(pipefd[0]);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	char want_text[4096] = "";
	expect_line(want_text, sizeof(want_text), false,
		    "permission denied: \"reload\" is only for root (uid 65534 is not)");
	expect_line(want_text, sizeof(want_text), true, "answer 1: status");
	assert_string_equal(buf, want_text);
	assert_int_equal(f->owner.n_seen, 1);
	assert_int_equal(f->owner.seen[0], OVCD_CMD_STATUS);
}

/* An owner out of memory has no reply to give: the client is dropped,
 * the server goes on. */
static void test_owner_oom_drops_client(void **state)
{
	struct fixture *f = *state;
	char *status = request(OVCD_CMD_STATUS), buf[4096];
	int fd = client_connect(f->path);

	assert_true(fd >= 0);
	f->owner.oom = true;
	send_all(fd, status);
	assert_int_equal(read_replies(f, fd, 1, buf, sizeof(buf)), -1);
	close(fd);
	f->owner.oom = false;
	fd = client_connect(f->path);
	assert_true(fd >= 0);
	send_all(fd, status);
	assert_int_equal(read_replies(f, fd, 1, buf, sizeof(buf)), 1);
	assert_non_null(strstr(buf, "answer 1: status"));
	free(status);
	close(fd);
}

/* A second server on the same path finds the first one answering and
 * leaves its socket alone. */
static void test_never_steals(void **state)
{
	struct fixture *f = *state;
	struct control_server *other = NULL;
	struct owner o = { 0 };
	struct stat before, after;

	assert_int_equal(stat(f->path, &before), 0);
	assert_int_equal(control_server_new(f->epfd, f->cfg, &ops, &o, &other), -EADDRINUSE);
	assert_null(other);
	assert_int_equal(stat(f->path, &after), 0);
	assert_int_equal(before.st_ino, after.st_ino);
	assert_string_equal(control_server_path(f->cs), f->path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_line_stays_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_never_reaches_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner_oom_drops_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_never_steals, setup, teardown),
	};

	return cmocka_run_group_tests_name("control-server", tests, NULL, NULL);
}
