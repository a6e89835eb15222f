/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-guest-workload: runs inside the test guest (static, started by the
 * image's /init) and moves the guest's memory on command, so that tests, the
 * demo and the benchmarks can drive a real guest kernel from the host.
 *
 * One thread. Reads commands line by line from the tty or file given as
 * argv[1] (the guest's second serial port, /dev/ttyS1, so that kernel
 * messages on ttyS0 never mix with replies) and answers each with exactly one
 * line that starts with "ok " or "err ":
 *
 *   ping               ok pong
 *   meminfo            ok MemTotal=<KiB> MemFree=<KiB> MemAvailable=<KiB> oom_kill=<n> held=<bytes> oom_deflate=<n>
 *   alloc <size>[K|M|G] ok held=<bytes>   (mmap + touch every page, kept until "free")
 *   free               ok held=0
 *
 * A size is bytes unless it ends in K, M or G (binary units). The program
 * prints "ready" once when it starts, so that the host knows the channel works.
 *
 * oom_deflate counts how often the guest's balloon driver gave memory back
 * to the guest by itself at the edge of an OOM kill (deflate-on-oom, which
 * overrides the host's target): a kprobe on virtio_balloon_oom_notify, read
 * from tracefs' kprobe_profile. -1 where tracefs or kprobe events are
 * missing. It lets the host tell "no OOM kill because the host deflated in
 * time" from "no OOM kill because the guest deflated itself".
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <termios.h>
#include <unistd.h>

#define MAX_CHUNKS 4096

struct chunk {
	void *addr;
	size_t len;
};

static struct chunk chunks[MAX_CHUNKS];
static size_t nchunks;
static uint64_t held_bytes;

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int fd, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	for (int off = 0; off < n;) {
		ssize_t w = write(fd, buf + off, (size_t)(n - off));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (int)w;
	}
}

/* Value of "key" in a "key: value" or "key value" file, or -1. */
static long long read_key(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	long long v = -1;
	FILE *f = fopen(path, "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && (line[klen] == ':' || line[klen] == ' ')) {
			v = strtoll(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

static int parse_size(const char *s, uint64_t *ret)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 'G': v <<= 10; /* fall through */
	case 'M': v <<= 10; /* fall through */
	case 'K': v <<= 10; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end && !isspace((unsigned char)*end))
		return -EINVAL;
	*ret = v;
	return 0;
}

static void do_alloc(int fd, const char *arg)
{
	uint64_t len;
	long page = sysconf(_SC_PAGESIZE);

	if (parse_size(arg, &len) < 0 || len == 0) {
		reply(fd, "err bad size '%s'", arg);
		return;
	}
	if (nchunks == MAX_CHUNKS) {
		reply(fd, "err too many allocations");
		return;
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		reply(fd, "err mmap: %s", strerror(errno));
		return;
	}
	/* Touch every page with non-zero data so that neither the guest nor
	 * the host can satisfy it with the zero page. */
	for (uint64_t off = 0; off < len; off += (uint64_t)page)
		((volatile char *)p)[off] = 1;
	chunks[nchunks++] = (struct chunk){ p, len };
	held_bytes += len;
	reply(fd, "ok held=%llu", (unsigned long long)held_bytes);
}

static void do_free(int fd)
{
	while (nchunks) {
		nchunks--;
		munmap(chunks[nchunks].addr, chunks[nchunks].len);
	}
	held_bytes = 0;
	reply(fd, "ok held=0");
}

#define TRACEFS "/sys/kernel/tracing"

static int write_file(const char *path, const char *text, int flags)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | flags);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -errno : 0;
}

/* Best effort: a restarted workload finds the probe there already
 * (EEXIST/EBUSY are fine), a kernel without kprobe events reports -1. */
static void oom_deflate_probe_setup(void)
{
	if (access(TRACEFS "/kprobe_events", F_OK) < 0)
		mount("tracefs", TRACEFS, "tracefs", 0, NULL);
	/* O_APPEND: truncating kprobe_events would remove every probe. */
	write_file(TRACEFS "/kprobe_events", "p:ovc/oom_deflate virtio_balloon_oom_notify\n", O_APPEND);
	/* The probe is armed (and counts) only while its event is enabled. */
	write_file(TRACEFS "/events/ovc/oom_deflate/enable", "1\n", O_TRUNC);
}

/* Hits of the probe: "  oom_deflate   <hits>   <missed>" in kprobe_profile. */
static long long oom_deflates(void)
{
	char line[256], name[128];
	long long hits, v = -1;
	FILE *f = fopen(TRACEFS "/kprobe_profile", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%127s %lld", name, &hits) == 2 && strcmp(name, "oom_deflate") == 0) {
			v = hits;
			break;
		}
	fclose(f);
	return v;
}

static void do_meminfo(int fd)
{
	reply(fd, "ok MemTotal=%lld MemFree=%lld MemAvailable=%lld oom_kill=%lld held=%llu oom_deflate=%lld",
	      read_key("/proc/meminfo", "MemTotal"), read_key("/proc/meminfo", "MemFree"),
	      read_key("/proc/meminfo", "MemAvailable"), read_key("/proc/vmstat", "oom_kill"),
	      (unsigned long long)held_bytes, oom_deflates());
}

static void handle(int fd, char *line)
{
	char *arg;

	while (*line && isspace((unsigned char)*line))
		line++;
	arg = line;
	while (*arg && !isspace((unsigned char)*arg))
		arg++;
	if (*arg)
		*arg++ = '\0';
	while (*arg && isspace((unsigned char)*arg))
		arg++;

	if (!*line)
		return;
	if (strcmp(line, "ping") == 0)
		reply(fd, "ok pong");
	else if (strcmp(line, "meminfo") == 0)
		do_meminfo(fd);
	else if (strcmp(line, "alloc") == 0)
		do_alloc(fd, arg);
	else if (strcmp(line, "free") == 0)
		do_free(fd);
	else
		reply(fd, "err unknown command '%s'", line);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/ttyS1";
	char line[256];
	size_t len = 0;
	int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct termios tio;

	if (fd < 0) {
		fprintf(stderr, "ovc-guest-workload: %s: %s\n", path, strerror(errno));
		return 1;
	}
	/* Raw: no echo of the host's commands, no CR/LF rewriting. */
	if (tcgetattr(fd, &tio) == 0) {
		cfmakeraw(&tio);
		tcsetattr(fd, TCSANOW, &tio);
	}
	oom_deflate_probe_setup();
	reply(fd, "ready");

	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			/* No peer on the host side yet: wait and retry. */
			usleep(100000);
			continue;
		}
		if (c == '\r' || c == '\n') {
			line[len] = '\0';
			handle(fd, line);
			len = 0;
		} else if (len < sizeof(line) - 1) {
			line[len++] = c;
		}
	}
}
