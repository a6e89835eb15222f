/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Host memory signals. Runs on ovcd's main thread once per tick (and in
 * tests); no state, no locks. The files are read in one read(2) each, so a
 * line is never torn between two reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "host/host.h"
#include "host/procfs.h"

/* "Name:   12345 kB" → bytes. Lines without " kB" (HugePages_Total) and
 * unknown names are skipped. */
int ovcd_meminfo_parse(const char *text, struct ovcd_meminfo *ret)
{
	static const struct {
		const char *name;
		size_t offset;
		bool required;
	} fields[] = {
		{ "MemTotal", offsetof(struct ovcd_meminfo, total_bytes), true },
		{ "MemFree", offsetof(struct ovcd_meminfo, free_bytes), true },
		{ "MemAvailable", offsetof(struct ovcd_meminfo, available_bytes), true },
		{ "Buffers", offsetof(struct ovcd_meminfo, buffers_bytes) },
		{ "Cached", offsetof(struct ovcd_meminfo, cached_bytes) },
		{ "SwapTotal", offsetof(struct ovcd_meminfo, swap_total_bytes) },
		{ "SwapFree", offsetof(struct ovcd_meminfo, swap_free_bytes) },
		{ "AnonPages", offsetof(struct ovcd_meminfo, anon_bytes) },
		{ "Shmem", offsetof(struct ovcd_meminfo, shmem_bytes) },
		{ "Committed_AS", offsetof(struct ovcd_meminfo, committed_as_bytes) },
		{ "CommitLimit", offsetof(struct ovcd_meminfo, commit_limit_bytes) },
	};
	struct ovcd_meminfo m = { 0 };
	unsigned seen = 0;

	for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		const char *colon = strchr(line, ':'), *nl = strchr(line, '\n');
		if (!colon || (nl && colon > nl))
			return -EBADMSG;
		size_t name_len = (size_t)(colon - line);
		for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
			if (strlen(fields[i].name) != name_len ||
			    strncmp(line, fields[i].name, name_len) != 0)
				continue;
			char *end;
			errno = 0;
			unsigned long long kb = strtoull(colon + 1, &end, 10);
			if (errno || end == colon + 1 || strncmp(end, " kB", 3) != 0 ||
			    kb > UINT64_MAX / 1024 || (seen & (1u << i)))
				return -EBADMSG;
			*(uint64_t *)((char *)&m + fields[i].offset) = kb * 1024;
			seen |= 1u << i;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
		if (fields[i].required && !(seen & (1u << i)))
			return -EBADMSG;
	/* What the kernel never reports; a fixture or a future format might. */
	if (m.available_bytes > m.total_bytes || m.free_bytes > m.total_bytes)
		return -EBADMSG;
	*ret = m;
	return 0;
}

int ovcd_meminfo_read(const char *root, struct ovcd_meminfo *ret)
{
	char buf[8192];
	int r = ovcd_read_root_file(root, "/proc/meminfo", buf, sizeof(buf));

	if (r < 0)
		return r;
	return ovcd_meminfo_parse(buf, ret);
}

/* A file holding one number (or "max", v2's no limit: UINT64_MAX). */
static int read_u64_file(const char *root, const char *dir, const char *file, uint64_t *ret)
{
	char rel[PATH_MAX], buf[64], *end;
	unsigned long long v;
	int n = snprintf(rel, sizeof(rel), "%s/%s", dir, file);

	if (n < 0 || (size_t)n >= sizeof(rel))
		return -ENAMETOOLONG;
	n = ovcd_read_root_file(root, rel, buf, sizeof(buf));
	if (n < 0)
		return n;
	if (strncmp(buf, "max", 3) == 0 && (buf[3] == '\n' || buf[3] == '\0')) {
		*ret = UINT64_MAX;
		return 0;
	}
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n'))
		return -EBADMSG;
	*ret = v;
	return 0;
}

int ovcd_cgroup_mem_read(const char *root, const char *dir, struct ovcd_cgroup_mem *ret)
{
	struct ovcd_cgroup_mem cg = { 0 };
	char rel[PATH_MAX], buf[8192];
	/* v1 counts the hierarchy under total_*; v2's memory.stat always does. */
	const char *inactive = "total_inactive_file ";
	int r, n;

	r = read_u64_file(root, dir, "memory.max", &cg.limit_bytes);
	if (r == 0) {
		r = read_u64_file(root, dir, "memory.current", &cg.usage_bytes);
		inactive = "inactive_file ";
	} else if (r == -ENOENT) {
		r = read_u64_file(root, dir, "memory.limit_in_bytes", &cg.limit_bytes);
		if (r == 0)
			r = read_u64_file(root, dir, "memory.usage_in_bytes", &cg.usage_bytes);
		/* v1 says "no limit" with a huge page-aligned number. */
		if (r == 0 && cg.limit_bytes >= (UINT64_C(1) << 62))
			cg.limit_bytes = UINT64_MAX;
	}
	if (r < 0)
		return r;
	n = snprintf(rel, sizeof(rel), "%s/memory.stat", dir);
	if (n < 0 || (size_t)n >= sizeof(rel))
		return -ENAMETOOLONG;
	r = ovcd_read_root_file(root, rel, buf, sizeof(buf));
	if (r < 0)
		return r;
	for (const char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		if (strncmp(line, inactive, strlen(inactive)) == 0) {
			char *end;

			errno = 0;
			cg.inactive_file_bytes = strtoull(line + strlen(inactive), &end, 10);
			if (errno || (*end && *end != '\n'))
				return -EBADMSG;
			break;
		}
	}
	*ret = cg;
	return 0;
}

void ovcd_meminfo_limit_to_cgroup(struct ovcd_meminfo *mem, const struct ovcd_cgroup_mem *cg)
{
	uint64_t used, cache;

	if (cg->limit_bytes == UINT64_MAX)
		return;
	used = MIN(cg->usage_bytes, cg->limit_bytes);
	cache = MIN(cg->inactive_file_bytes, used);
	mem->total_bytes = MIN(mem->total_bytes, cg->limit_bytes);
	mem->free_bytes = MIN(mem->free_bytes, cg->limit_bytes - used);
	mem->available_bytes = MIN(mem->available_bytes, cg->limit_bytes - used + cache);
}

/* "12.34" → 1234 basis points; at most two decimals, at most 100%. */
static const char *parse_avg(const char *p, uint32_t *ret)
{
	uint32_t v = 0;
	unsigned digits = 0;

	for (; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
		v = v * 10 + (uint32_t)(*p - '0');
	if (!digits || *p != '.' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
		return NULL;
	v = v * 100 + (uint32_t)(p[1] - '0') * 10 + (uint32_t)(p[2] - '0');
	if (v > 10000)
		return NULL;
	*ret = v;
	return p + 3;
}

static int parse_psi_line(const char *line, const char *kind, struct ovcd_psi_line *ret)
{
	struct ovcd_psi_line l;
	size_t kl = strlen(kind);
	const char *p;

	if (strncmp(line, kind, kl) != 0 || strncmp(line + kl, " avg10=", 7) != 0)
		return -EBADMSG;
	p = parse_avg(line + kl + 7, &l.avg10_basis_points);
	if (!p || strncmp(p, " avg60=", 7) != 0)
		return -EBADMSG;
	p = parse_avg(p + 7, &l.avg60_basis_points);
	if (!p || strncmp(p, " avg300=", 8) != 0)
		return -EBADMSG;
	p = parse_avg(p + 8, &l.avg300_basis_points);
	if (!p || strncmp(p, " total=", 7) != 0 || p[7] < '0' || p[7] > '9')
		return -EBADMSG;
	char *end;
	errno = 0;
	unsigned long long t = strtoull(p + 7, &end, 10);
	if (errno || (*end != '\n' && *end != '\0'))
		return -EBADMSG;
	l.total_usec = t;
	*ret = l;
	return 0;
}

int ovcd_psi_parse(const char *text, struct ovcd_psi *ret)
{
	struct ovcd_psi psi;
	const char *nl = strchr(text, '\n');
	int r;

	if (!nl)
		return -EBADMSG;
	r = parse_psi_line(text, "some", &psi.some);
	if (r < 0)
		return r;
	r = parse_psi_line(nl + 1, "full", &psi.full);
	if (r < 0)
		return r;
	*ret = psi;
	return 0;
}

int ovcd_psi_read(const char *root, struct ovcd_psi *ret)
{
	char buf[512];
	int r = ovcd_read_root_file(root, "/proc/pressure/memory", buf, sizeof(buf));

	if (r < 0)
		return r;
	return ovcd_psi_parse(buf, ret);
}

static int psi_trigger_write(int fd, bool full, uint64_t stall_usec, uint64_t window_usec)
{
	char text[64];

	snprintf(text, sizeof(text), "%s %" PRIu64 " %" PRIu64, full ? "full" : "some", stall_usec,
		 window_usec);
	/* The trigger text goes with its NUL, as the kernel's example does. */
	return write(fd, text, strlen(text) + 1) < 0 ? negative_errno() : 0;
}

int ovcd_psi_trigger_open(const char *root, bool full, uint64_t stall_usec, uint64_t window_usec)
{
	_cleanup_(closep) int fd = -1;
	char path[PATH_MAX];
	int r = ovcd_root_path(root, "/proc/pressure/memory", path, sizeof(path));

	if (r < 0)
		return r;
	/* Limits of Documentation/accounting/psi.rst. */
	if (window_usec < 500000 || window_usec > 10 * USEC_PER_SEC || stall_usec == 0 ||
	    stall_usec > window_usec)
		return -EINVAL;
	fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return negative_errno();
	r = psi_trigger_write(fd, full, stall_usec, window_usec);
	/* Without CAP_SYS_RESOURCE (root in a container, or an unprivileged
	 * ovcd) the kernel takes only windows in multiples of 2 s: keep the
	 * stall share and use the next such window. */
	const uint64_t unpriv = 2 * USEC_PER_SEC;
	if (r == -EINVAL && window_usec % unpriv) {
		uint64_t w = MIN((window_usec / unpriv + 1) * unpriv, 10 * USEC_PER_SEC);
		r = psi_trigger_write(fd, full, MIN(stall_usec * w / window_usec, w), w);
	}
	if (r < 0)
		return r;
	return take_fd(&fd);
}
