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
 *   alloc <size>[K|M|G] [<msec>]
 *                      ok held=<bytes> msec=<elapsed>
 *                      mmap in 4 MiB chunks and write every page at once,
 *                      kept until "free"; with <msec>, paced so that the
 *                      whole allocation takes about that long (a workload
 *                      that grows at a given rate)
 *   free [<size>]      ok held=<bytes>   (the newest <size>, or everything)
 *   verify             ok pages=<n>      (every held page still has its data)
 *
 * Every page allocated is written with data of its own (a serial number
 * that is never 0, at its start and its end), so that neither the guest
 * nor the host can back it with the zero page or merge it with another,
 * and "verify" tells a lost write from a kept one.
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
#include <time.h>
#include <unistd.h>

#define MAX_CHUNKS 16384
#define CHUNK (4ULL << 20)

struct chunk {
	void *addr;
	uint64_t len;
	uint64_t first_serial;
};

static struct chunk chunks[MAX_CHUNKS];
static size_t nchunks;
static uint64_t held_bytes;
static uint64_t next_serial = 1; /* of the next page written; never 0 */

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

static uint64_t mono_msec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The serial of a page is stored at its start and (inverted) at its end. */
static void page_write(char *page, size_t size, uint64_t serial)
{
	*(volatile uint64_t *)page = serial;
	*(volatile uint64_t *)(page + size - 8) = ~serial;
}

static void do_alloc(int fd, char *arg)
{
	uint64_t len, pace_msec = 0, done = 0, t0 = mono_msec();
	long page = sysconf(_SC_PAGESIZE);
	char *second = arg;

	while (*second && !isspace((unsigned char)*second))
		second++;
	if (*second) {
		*second++ = '\0';
		if (parse_size(second, &pace_msec) < 0) {
			reply(fd, "err bad duration '%s'", second);
			return;
		}
	}
	if (parse_size(arg, &len) < 0 || len == 0) {
		reply(fd, "err bad size '%s'", arg);
		return;
	}
	len = (len + (uint64_t)page - 1) & ~((uint64_t)page - 1);
	while (done < len) {
		uint64_t n = len - done < CHUNK ? len - done : CHUNK;
		char *p;

		if (nchunks == MAX_CHUNKS) {
			reply(fd, "err too many allocations (held=%llu)", (unsigned long long)held_bytes);
			return;
		}
		p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			reply(fd, "err mmap: %s (held=%llu)", strerror(errno), (unsigned long long)held_bytes);
			return;
		}
		chunks[nchunks++] = (struct chunk){ p, n, next_serial };
		for (uint64_t off = 0; off < n; off += (uint64_t)page)
			page_write(p + off, (size_t)page, next_serial++);
		held_bytes += n;
		done += n;
		if (pace_msec) {
			uint64_t due = t0 + pace_msec * done / len, now = mono_msec();

			if (due > now)
				usleep((useconds_t)(due - now) * 1000);
		}
	}
	reply(fd, "ok held=%llu msec=%llu", (unsigned long long)held_bytes,
	      (unsigned long long)(mono_msec() - t0));
}

/* Free the newest @len bytes (all for 0): whole chunks, the last one cut. */
static void do_free(int fd, const char *arg)
{
	uint64_t len = 0;
	long page = sysconf(_SC_PAGESIZE);

	if (*arg && (parse_size(arg, &len) < 0 || len == 0)) {
		reply(fd, "err bad size '%s'", arg);
		return;
	}
	if (!*arg || len > held_bytes)
		len = held_bytes;
	len &= ~((uint64_t)page - 1);
	while (len && nchunks) {
		struct chunk *c = &chunks[nchunks - 1];
		uint64_t cut = len < c->len ? len : c->len;

		munmap((char *)c->addr + (c->len - cut), cut);
		c->len -= cut;
		held_bytes -= cut;
		len -= cut;
		if (c->len == 0)
			nchunks--;
	}
	reply(fd, "ok held=%llu", (unsigned long long)held_bytes);
}

static void do_verify(int fd)
{
	long page = sysconf(_SC_PAGESIZE);
	uint64_t pages = 0;

	for (size_t i = 0; i < nchunks; i++) {
		uint64_t serial = chunks[i].first_serial;

		for (uint64_t off = 0; off < chunks[i].len; off += (uint64_t)page, serial++, pages++) {
			const char *p = (const char *)chunks[i].addr + off;

			if (*(const uint64_t *)p != serial || *(const uint64_t *)(p + page - 8) != ~serial) {
				reply(fd, "err page %llu of allocation %zu lost its data",
				      (unsigned long long)(off / (uint64_t)page), i);
				return;
			}
		}
	}
	reply(fd, "ok pages=%llu", (unsigned long long)pages);
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
		do_free(fd, arg);
	else if (strcmp(line, "verify") == 0)
		do_verify(fd);
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
