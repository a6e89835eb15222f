/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Real-guest test harness; see guest-harness.h. Test main thread only. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/virterror.h>

#include "guest-harness.h"

#ifndef OVC_SOURCE_DIR
#error OVC_SOURCE_DIR must be defined by the build
#endif
#ifndef OVC_BUILD_DIR
#error OVC_BUILD_DIR must be defined by the build
#endif

#define QEMU "qemu-system-x86_64"
#define NAME_PREFIX "ovc-test-"

static unsigned guest_counter;

/* snprintf into an array, aborting the test on truncation: a cut path
 * would send QEMU or libvirt to the wrong file. */
static void check_fmt(int n, size_t size)
{
	if (n < 0 || (size_t)n >= size)
		abort();
}
#define fmt_path(buf, ...) check_fmt(snprintf(buf, sizeof(buf), __VA_ARGS__), sizeof(buf))

static uint64_t mono_msec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_msec(unsigned ms)
{
	poll(NULL, 0, (int)ms);
}

bool harness_wait_until(bool (*cond)(void *), void *arg, unsigned timeout_msec)
{
	uint64_t deadline = mono_msec() + timeout_msec;

	for (;;) {
		if (cond(arg))
			return true;
		if (mono_msec() >= deadline)
			return false;
		sleep_msec(100);
	}
}

static bool in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[1024];

	if (!path)
		path = "/usr/bin:/bin:/usr/sbin:/sbin";
	for (const char *p = path; *p;) {
		const char *colon = strchrnul(p, ':');

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)(colon - p), p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		p = *colon ? colon + 1 : colon;
	}
	/* libvirtd and virtlogd live in /usr/sbin, which a test's PATH may lack. */
	snprintf(buf, sizeof(buf), "/usr/sbin/%s", prog);
	return access(buf, X_OK) == 0;
}

const char *harness_qemu_missing(void)
{
	if (!in_path(QEMU))
		return QEMU " is not installed (apt-get install qemu-system-x86)";
	return NULL;
}

/* In a child before exec: close every fd but 0-2. The harness opens its
 * own fds O_CLOEXEC, but the test may have inherited others without it:
 * `flock FILE CMD` hands CMD the lock's fd. A daemon started from here
 * (libvirtd, virtlogd) outlives the test and would hold such an fd, and the
 * lock with it, after the test was killed. */
static void close_inherited_fds(void)
{
	if (close_range(3, ~0u, 0) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
}

/* Run a command, wait, return its exit status (or -errno). Output goes to
 * @out (if non-NULL, first line only, trailing newline cut). The command
 * gets stdin, stdout (@out's pipe) and stderr, and no other fd of this
 * process (close_inherited_fds()): it may be a daemon that stays. */
static int run(char *const argv[], char *out, size_t out_size)
{
	int pipefd[2];
	pid_t pid;
	int status;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		dup2(pipefd[1], STDOUT_FILENO);
		close_inherited_fds();
		execvp(argv[0], argv);
		_exit(127);
	}
	close(pipefd[1]);
	if (out && out_size) {
		size_t len = 0;
		ssize_t n;

		while (len < out_size - 1 && (n = read(pipefd[0], out + len, out_size - 1 - len)) > 0)
			len += (size_t)n;
		out[len] = '\0';
		out[strcspn(out, "\n")] = '\0';
	}
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -EIO;
}

int harness_image(struct harness_image *img, const char **why)
{
	const char *dir = getenv("OVC_GUEST_IMAGE_DIR");
	char outdir[512];

	if (!dir) {
		char script[512], target[512];
		char *argv[] = { script, target, NULL };
		int r;

		snprintf(script, sizeof(script), "%s/scripts/build-guest-image", OVC_SOURCE_DIR);
		snprintf(target, sizeof(target), "%s/guest-image", OVC_BUILD_DIR);
		r = run(argv, outdir, sizeof(outdir));
		if (r != 0) {
			*why = "scripts/build-guest-image failed (needs linux-image-cloud-amd64, "
			       "busybox-static, gcc with static glibc)";
			return -ENOENT;
		}
		dir = outdir;
	}
	fmt_path(img->kernel, "%s/vmlinuz", dir);
	fmt_path(img->initrd, "%s/initramfs.img", dir);
	if (access(img->kernel, R_OK) < 0 || access(img->initrd, R_OK) < 0) {
		*why = "guest image (vmlinuz, initramfs.img) not readable";
		return -ENOENT;
	}
	return 0;
}

/* Call @fn with the contents of /proc/<pid>/@file of every process until it
 * returns true; returns that pid, or 0. */
static pid_t for_each_process(const char *file, bool (*fn)(pid_t pid, char *data, size_t len, void *arg),
			      void *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;

	if (!d)
		return 0;
	while (!found && (de = readdir(d))) {
		char path[300], buf[4096];
		int fd;
		ssize_t n;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fmt_path(path, "/proc/%s/%s", de->d_name, file);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		if (fn((pid_t)atoi(de->d_name), buf, (size_t)n, arg))
			found = (pid_t)atoi(de->d_name);
	}
	closedir(d);
	return found;
}

static bool comm_is(pid_t pid, char *data, size_t len, void *arg)
{
	data[strcspn(data, "\n")] = '\0';
	return strcmp(data, arg) == 0;
}

/* pid of a process whose comm is @comm, or 0. */
static pid_t find_comm(const char *comm)
{
	return for_each_process("comm", comm_is, (void *)comm);
}

bool harness_libvirtd_running(void)
{
	return find_comm("libvirtd") != 0;
}

pid_t harness_libvirtd_pid(void)
{
	return find_comm("libvirtd");
}

static void silent_error(void *userdata, virErrorPtr err)
{
	(void)userdata;
	(void)err;
}

static int start_daemon(const char *prog)
{
	char path[64];
	char *argv[] = { path, "-d", NULL };

	snprintf(path, sizeof(path), "/usr/sbin/%s", prog);
	return run(argv, NULL, 0);
}

static virConnectPtr open_system(unsigned timeout_msec)
{
	uint64_t deadline = mono_msec() + timeout_msec;

	for (;;) {
		virConnectPtr c = virConnectOpen("qemu:///system");

		if (c)
			return c;
		if (mono_msec() >= deadline)
			return NULL;
		sleep_msec(200);
	}
}

static void kill_and_wait(pid_t pid, int sig, unsigned timeout_msec)
{
	uint64_t deadline = mono_msec() + timeout_msec;

	if (pid <= 0)
		return;
	kill(pid, sig);
	while (kill(pid, 0) == 0 && mono_msec() < deadline) {
		/* Not our child (daemonised): poll until it is gone. */
		waitpid(pid, NULL, WNOHANG);
		sleep_msec(50);
	}
	if (kill(pid, 0) == 0) {
		kill(pid, SIGKILL);
		while (kill(pid, 0) == 0 && waitpid(pid, NULL, WNOHANG) >= 0)
			sleep_msec(50);
	}
}

/*
 * Several test processes may share one libvirtd (the balloon, daemon and
 * demo tests, run by hand side by side). Each holds a shared flock on
 * USE_LOCK while it uses libvirtd; MARK_PATH says that a harness started
 * the daemons (and which). Starting, stopping and restarting are decided
 * under an exclusive flock on DECIDE_LOCK, so that nobody starts using a
 * libvirtd that is being stopped. The last user (the one that then gets
 * USE_LOCK exclusively) stops the daemons; only a sole user may restart
 * libvirtd. A libvirtd started by anyone else has no mark and is never
 * stopped. scripts/demo.py follows the same rules on the same files: the
 * contract is in docs/demo.md ("One libvirtd for the demo and the
 * tests"); change both sides together.
 */
#define DECIDE_LOCK "/run/ovc-test-libvirtd.decide"
#define USE_LOCK "/run/ovc-test-libvirtd.lock"
#define MARK_PATH "/run/ovc-test-libvirtd.started"

/* The mark's content: "libvirtd" or "libvirtd virtlogd"; false if none. */
static bool read_mark(bool *ret_virtlogd)
{
	char buf[64] = "";
	int fd = open(MARK_PATH, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	*ret_virtlogd = strstr(buf, "virtlogd") != NULL;
	return true;
}

static void write_mark(bool virtlogd)
{
	int fd = open(MARK_PATH, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return;
	(void)!write(fd, virtlogd ? "libvirtd virtlogd\n" : "libvirtd\n", virtlogd ? 18 : 9);
	close(fd);
}

static int start_daemons(const char **why)
{
	bool virtlogd = false, old_virtlogd = false;

	mkdir("/var/log/libvirt", 0755);
	if (harness_libvirtd_running()) {
		/* A libvirtd that outlived the stop of an earlier test (it
		 * may take longer than the wait to exit) while its virtlogd
		 * did not: domains then fail to start ("virtlogd-sock: No
		 * such file"). Give it a virtlogd again. */
		if (!find_comm("virtlogd") && start_daemon("virtlogd") != 0) {
			*why = "virtlogd -d failed";
			return -EIO;
		}
		return 0;
	}
	if (!find_comm("virtlogd")) {
		if (start_daemon("virtlogd") != 0) {
			*why = "virtlogd -d failed";
			return -EIO;
		}
		virtlogd = true;
	}
	if (start_daemon("libvirtd") != 0) {
		*why = "libvirtd -d failed";
		if (virtlogd)
			kill_and_wait(find_comm("virtlogd"), SIGTERM, 5000);
		return -EIO;
	}
	/* A mark left by a crashed harness keeps its virtlogd claim. */
	if (read_mark(&old_virtlogd))
		virtlogd |= old_virtlogd;
	write_mark(virtlogd);
	return 0;
}

/* Taken for each start/stop/restart decision; -1 if /run is not ours. */
static int decide_lock(void)
{
	int fd = open(DECIDE_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd >= 0)
		flock(fd, LOCK_EX);
	return fd;
}

int harness_libvirtd_start(struct harness_libvirtd *d, const char **why)
{
	bool virtlogd;
	int r, decide;

	memset(d, 0, sizeof(*d));
	d->lock_fd = -1;
	virSetErrorFunc(NULL, silent_error);
	if (!in_path("libvirtd") || !in_path("virtlogd")) {
		*why = "libvirtd/virtlogd not installed (apt-get install libvirt-daemon-system)";
		return -ENOENT;
	}
	if (geteuid() != 0 && !harness_libvirtd_running()) {
		*why = "starting libvirtd for qemu:///system needs root";
		return -EPERM;
	}
	decide = decide_lock();
	r = start_daemons(why);
	d->lock_fd = open(USE_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (d->lock_fd >= 0)
		flock(d->lock_fd, LOCK_SH);
	if (decide >= 0)
		close(decide);
	if (r < 0) {
		harness_libvirtd_stop(d);
		return r;
	}
	d->started_libvirtd = read_mark(&virtlogd);
	d->started_virtlogd = d->started_libvirtd && virtlogd;
	d->conn = open_system(30000);
	if (!d->conn) {
		*why = "qemu:///system does not answer within 30 s";
		harness_libvirtd_stop(d);
		return -ETIMEDOUT;
	}
	harness_cleanup_leftovers(d);
	return 0;
}


static bool is_ours(const char *name)
{
	char mine[32];

	snprintf(mine, sizeof(mine), NAME_PREFIX "%d-", (int)getpid());
	return strncmp(name, mine, strlen(mine)) == 0;
}

/* ovc-test-<pid>-<n> whose <pid> is gone. */
static bool is_leftover(const char *name)
{
	long pid;
	char *end;

	if (strncmp(name, NAME_PREFIX, strlen(NAME_PREFIX)) != 0)
		return false;
	pid = strtol(name + strlen(NAME_PREFIX), &end, 10);
	if (*end != '-' || pid <= 0)
		return false;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

static void destroy_matching(virConnectPtr conn, bool (*match)(const char *))
{
	virDomainPtr *doms = NULL;
	int n;

	if (!conn)
		return;
	n = virConnectListAllDomains(conn, &doms, 0);
	for (int i = 0; i < n; i++) {
		const char *name = virDomainGetName(doms[i]);

		if (name && match(name)) {
			virDomainDestroy(doms[i]);
			virDomainUndefine(doms[i]); /* persistent leftovers; fails harmlessly if transient */
		}
		virDomainFree(doms[i]);
	}
	free(doms);
}

/* argv is NUL-separated: "-name" followed by a leftover's name. */
static bool kill_leftover_qemu(pid_t pid, char *data, size_t len, void *arg)
{
	if (!strstr(data, QEMU)) /* argv[0] */
		return false;
	for (char *p = data; p < data + len; p += strlen(p) + 1)
		if (strcmp(p, "-name") == 0 && p + strlen(p) + 1 < data + len &&
		    is_leftover(p + strlen(p) + 1))
			kill(pid, SIGKILL);
	return false;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);

void harness_cleanup_leftovers(struct harness_libvirtd *d)
{
	DIR *dir;
	struct dirent *de;

	if (d)
		destroy_matching(d->conn, is_leftover);
	/* Bare QEMU of dead test processes (PDEATHSIG covers most). */
	for_each_process("cmdline", kill_leftover_qemu, NULL);
	/* Their directories: consoles, sockets, kernel copies. */
	dir = opendir("/tmp");
	while (dir && (de = readdir(dir))) {
		char path[300];

		if (!is_leftover(de->d_name))
			continue;
		fmt_path(path, "/tmp/%s", de->d_name);
		nftw(path, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	}
	if (dir)
		closedir(dir);
}

/* The only user of a harness-started libvirtd? Then we hold LOCK_EX. */
static bool sole_user(struct harness_libvirtd *d)
{
	return d->started_libvirtd && d->lock_fd >= 0 && flock(d->lock_fd, LOCK_EX | LOCK_NB) == 0;
}

void harness_libvirtd_stop(struct harness_libvirtd *d)
{
	bool virtlogd;
	int decide;

	if (d->conn) {
		destroy_matching(d->conn, is_ours);
		virConnectClose(d->conn);
		d->conn = NULL;
	}
	decide = d->lock_fd >= 0 ? decide_lock() : -1;
	if (sole_user(d) && read_mark(&virtlogd)) {
		kill_and_wait(find_comm("libvirtd"), SIGTERM, 15000);
		if (virtlogd)
			kill_and_wait(find_comm("virtlogd"), SIGTERM, 5000);
		unlink(MARK_PATH);
	}
	if (d->lock_fd >= 0)
		close(d->lock_fd); /* drops the flock */
	if (decide >= 0)
		close(decide);
	d->lock_fd = -1;
	d->started_libvirtd = d->started_virtlogd = false;
}

int harness_libvirtd_restart(struct harness_libvirtd *d)
{
	int r = 0, decide;

	if (!d->started_libvirtd)
		return -EPERM;
	decide = decide_lock();
	if (!sole_user(d)) {
		if (decide >= 0)
			close(decide);
		return -EBUSY; /* another test process uses this libvirtd */
	}
	if (d->conn) {
		virConnectClose(d->conn);
		d->conn = NULL;
	}
	kill_and_wait(find_comm("libvirtd"), SIGTERM, 15000);
	if (start_daemon("libvirtd") != 0)
		r = -EIO;
	flock(d->lock_fd, LOCK_SH);
	if (decide >= 0)
		close(decide);
	if (r < 0)
		return r;
	d->conn = open_system(30000);
	return d->conn ? 0 : -ETIMEDOUT;
}

static int guest_init(struct harness_guest *g)
{
	memset(g, 0, sizeof(*g));
	g->serial_fd = -1;
	snprintf(g->name, sizeof(g->name), NAME_PREFIX "%d-%u", (int)getpid(), ++guest_counter);
	snprintf(g->dir, sizeof(g->dir), "/tmp/%s", g->name);
	if (mkdir(g->dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	/* libvirt's QEMU runs as libvirt-qemu and must reach the files. */
	chmod(g->dir, 0755);
	snprintf(g->serial_path, sizeof(g->serial_path), "%s/serial.sock", g->dir);
	snprintf(g->console_path, sizeof(g->console_path), "%s/console.log", g->dir);
	return 0;
}

static const char *cmdline(const struct harness_guest_opts *o)
{
	return o->no_balloon_driver ? "console=ttyS0 quiet ovc.noballoon" : "console=ttyS0 quiet";
}

int harness_qemu_start(const struct harness_image *img, const struct harness_guest_opts *opts,
		       struct harness_guest *g)
{
	char mem[32], serial0[400], serial1[400], qmp[400], balloon[160];
	pid_t pid;
	int r = guest_init(g);
	uint64_t deadline;

	if (r < 0)
		return r;
	fmt_path(g->qmp_path, "%s/%s.qmp", opts->qmp_dir ? opts->qmp_dir : g->dir,
		 g->name);
	snprintf(mem, sizeof(mem), "%u", opts->mem_mib ? opts->mem_mib : 1024);
	snprintf(serial0, sizeof(serial0), "file:%s", g->console_path);
	snprintf(serial1, sizeof(serial1), "unix:%s,server=on,wait=off", g->serial_path);
	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", g->qmp_path);
	snprintf(balloon, sizeof(balloon), "virtio-balloon-pci,id=balloon0,deflate-on-oom=%s,free-page-reporting=%s",
		 opts->deflate_on_oom ? "on" : "off", opts->free_page_reporting ? "on" : "off");
	unlink(g->qmp_path);

	char *argv[] = {
		QEMU, "-machine", "q35,accel=tcg", "-m", mem, "-smp", "1", "-nodefaults",
		"-nographic", "-no-user-config", "-name", g->name,
		"-kernel", (char *)img->kernel, "-initrd", (char *)img->initrd,
		"-append", (char *)cmdline(opts), "-serial", serial0, "-serial", serial1,
		"-device", balloon, "-qmp", qmp, NULL,
	};
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		/* Die with the test, even if it crashes; hold none of its fds
		 * meanwhile. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		close_inherited_fds();
		execvp(argv[0], argv);
		_exit(127);
	}
	g->pid = pid;
	deadline = mono_msec() + 30000;
	while (access(g->qmp_path, F_OK) < 0) {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			g->pid = 0;
			harness_guest_stop(g);
			return -EIO;
		}
		if (mono_msec() >= deadline) {
			harness_guest_stop(g);
			return -ETIMEDOUT;
		}
		sleep_msec(50);
	}
	return 0;
}

int harness_domain_start(struct harness_libvirtd *d, const struct harness_image *img,
			 const struct harness_guest_opts *opts, struct harness_guest *g)
{
	char *xml = NULL, kernel[400], initrd[400], cmd[600];
	char stats[64] = "";
	virDomainPtr dom;
	int r = guest_init(g);

	if (r < 0)
		return r;
	/* Copies in the guest's own directory: libvirt relabels them for
	 * libvirt-qemu, and the build tree may not be reachable by that user. */
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", g->dir);
	snprintf(initrd, sizeof(initrd), "%s/initramfs.img", g->dir);
	fmt_path(cmd, "cp '%s' '%s' && cp '%s' '%s'", img->kernel, kernel, img->initrd, initrd);
	if (system(cmd) != 0) {
		harness_guest_stop(g);
		return -EIO;
	}
	if (opts->stats_period_sec)
		snprintf(stats, sizeof(stats), "<stats period='%u'/>", opts->stats_period_sec);
	if (asprintf(&xml,
		     "<domain type='qemu'>"
		     "<name>%s</name>"
		     "<memory unit='MiB'>%u</memory><currentMemory unit='MiB'>%u</currentMemory>"
		     "<vcpu>1</vcpu>"
		     "<os><type arch='x86_64' machine='q35'>hvm</type>"
		     "<kernel>%s</kernel><initrd>%s</initrd><cmdline>%s</cmdline></os>"
		     "<on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>"
		     "<devices>"
		     "<serial type='file'><source path='%s'/><target port='0'/></serial>"
		     "<serial type='unix'><source mode='bind' path='%s'/><target port='1'/></serial>"
		     "<memballoon model='virtio' autodeflate='%s' freePageReporting='%s'>%s</memballoon>"
		     "</devices></domain>",
		     g->name, opts->mem_mib ? opts->mem_mib : 1024, opts->mem_mib ? opts->mem_mib : 1024,
		     kernel, initrd, cmdline(opts), g->console_path, g->serial_path,
		     opts->deflate_on_oom ? "on" : "off", opts->free_page_reporting ? "on" : "off",
		     stats) < 0) {
		harness_guest_stop(g);
		return -ENOMEM;
	}
	dom = virDomainCreateXML(d->conn, xml, 0);
	free(xml);
	if (!dom) {
		virErrorPtr e = virGetLastError();

		/* libvirt moves QEMU into a private mount namespace, which
		 * fails where / is not a mount point (a chroot such as the
		 * project's fresh-machine check): the host lacks what libvirt
		 * needs, so callers skip rather than fail. */
		bool no_ns = e && e->message && strstr(e->message, "mount propagation");

		fprintf(stderr, "harness: virDomainCreateXML(%s): %s\n", g->name,
			e && e->message ? e->message : "unknown error");
		harness_guest_stop(g);
		return no_ns ? -EOPNOTSUPP : -EIO;
	}
	virDomainFree(dom);
	g->lvd = d;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void harness_guest_stop(struct harness_guest *g)
{
	if (g->serial_fd >= 0)
		close(g->serial_fd);
	g->serial_fd = -1;
	if (g->pid > 0) {
		kill(g->pid, SIGKILL);
		waitpid(g->pid, NULL, 0);
		g->pid = 0;
	}
	if (g->lvd && g->lvd->conn) {
		virDomainPtr dom = virDomainLookupByName(g->lvd->conn, g->name);

		if (dom) { /* gone already if a test destroyed it */
			virDomainDestroy(dom);
			virDomainFree(dom);
		}
	}
	g->lvd = NULL;
	if (g->qmp_path[0])
		unlink(g->qmp_path); /* may live outside the guest's directory */
	if (g->dir[0]) {
		nftw(g->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
		g->dir[0] = '\0';
	}
}

static int serial_connect(struct harness_guest *g)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (g->serial_fd >= 0)
		return 0;
	fmt_path(sa.sun_path, "%s", g->serial_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	g->serial_fd = fd;
	return 0;
}

/* Read one line that starts with "ok " or "err " (skipping "ready" and noise). */
static int read_reply(struct harness_guest *g, char *reply, size_t size, uint64_t deadline)
{
	size_t len = 0;

	for (;;) {
		struct pollfd p = { .fd = g->serial_fd, .events = POLLIN };
		uint64_t now = mono_msec();
		char c;
		ssize_t n;

		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(deadline - now)) <= 0)
			continue;
		n = read(g->serial_fd, &c, 1);
		if (n <= 0) {
			close(g->serial_fd);
			g->serial_fd = -1;
			return -ECONNRESET;
		}
		if (c == '\r')
			continue;
		if (c != '\n') {
			if (len < size - 1)
				reply[len++] = c;
			continue;
		}
		reply[len] = '\0';
		if (strncmp(reply, "ok ", 3) == 0 || strncmp(reply, "err ", 4) == 0)
			return 0;
		len = 0;
	}
}

int harness_guest_cmd(struct harness_guest *g, const char *cmd, char *reply, size_t size,
		      unsigned timeout_msec)
{
	char line[256];
	int r = serial_connect(g);
	size_t len;

	if (r < 0)
		return r;
	/* Drop late replies to earlier commands that timed out. */
	for (;;) {
		struct pollfd p = { .fd = g->serial_fd, .events = POLLIN };
		char junk[256];

		if (poll(&p, 1, 0) <= 0 || read(g->serial_fd, junk, sizeof(junk)) <= 0)
			break;
	}
	/* A leading newline ends any half line the UART dropped bytes of. */
	len = (size_t)snprintf(line, sizeof(line), "\n%s\n", cmd);
	/* MSG_NOSIGNAL: a guest that died must fail the command, not kill
	 * the test with SIGPIPE before it can clean up. */
	if (send(g->serial_fd, line, len, MSG_NOSIGNAL) != (ssize_t)len) {
		close(g->serial_fd);
		g->serial_fd = -1;
		return -ECONNRESET;
	}
	return read_reply(g, reply, size, mono_msec() + timeout_msec);
}

int harness_guest_wait_ready(struct harness_guest *g, unsigned timeout_msec)
{
	uint64_t deadline = mono_msec() + timeout_msec;
	char reply[128];

	for (;;) {
		int r = harness_guest_cmd(g, "ping", reply, sizeof(reply), 1000);

		if (r == 0 && strcmp(reply, "ok pong") == 0)
			return 0;
		if (mono_msec() >= deadline)
			return r < 0 ? r : -EPROTO;
		if (r != -ETIMEDOUT)
			sleep_msec(200);
	}
}

int harness_guest_meminfo(struct harness_guest *g, struct harness_meminfo *ret)
{
	char reply[256];
	unsigned long long total, freek, avail, oom, held;
	int r = harness_guest_cmd(g, "meminfo", reply, sizeof(reply), 10000);

	if (r < 0)
		return r;
	if (sscanf(reply, "ok MemTotal=%llu MemFree=%llu MemAvailable=%llu oom_kill=%llu held=%llu",
		   &total, &freek, &avail, &oom, &held) != 5)
		return -EPROTO;
	ret->total_kib = total;
	ret->free_kib = freek;
	ret->available_kib = avail;
	ret->oom_kill = oom;
	return 0;
}
