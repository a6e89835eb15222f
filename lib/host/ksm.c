/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* KSM counters and knobs through sysfs. ovcd's main thread; no state. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "host/ksm.h"
#include "host/procfs.h"
#include "common/util.h"

/* rmap_item on 64-bit kernels (ksm.rst, "general_profit"). */
#define KSM_RMAP_ITEM_BYTES 64

static int read_u64(const char *root, const char *name, uint64_t *ret)
{
	char rel[128], buf[64], *end;
	int r;

	snprintf(rel, sizeof(rel), OVC_KSM_DIR "/%s", name);
	r = ovcd_read_root_file(root, rel, buf, sizeof(buf));
	if (r < 0)
		return r;
	if (buf[0] < '0' || buf[0] > '9')
		return -EBADMSG;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno || (*end != '\n' && *end != '\0'))
		return -EBADMSG;
	*ret = v;
	return 0;
}

static int read_s64(const char *root, const char *name, int64_t *ret)
{
	char rel[128], buf[64], *end;
	int r;

	snprintf(rel, sizeof(rel), OVC_KSM_DIR "/%s", name);
	r = ovcd_read_root_file(root, rel, buf, sizeof(buf));
	if (r < 0)
		return r;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || end == buf || (*end != '\n' && *end != '\0'))
		return -EBADMSG;
	*ret = v;
	return 0;
}

/* A counter that older kernels lack reads as 0. */
static int read_optional(const char *root, const char *name, uint64_t *ret, bool *present)
{
	int r = read_u64(root, name, ret);

	if (r == -ENOENT) {
		*ret = 0;
		if (present)
			*present = false;
		return 0;
	}
	if (present)
		*present = r == 0;
	return r;
}

int ovcd_ksm_read_counters(const char *root, struct ovcd_ksm_counters *ret)
{
	struct ovcd_ksm_counters c = { 0 };
	int r;

	if ((r = read_u64(root, "pages_shared", &c.pages_shared)) < 0 ||
	    (r = read_u64(root, "pages_sharing", &c.pages_sharing)) < 0 ||
	    (r = read_u64(root, "pages_unshared", &c.pages_unshared)) < 0 ||
	    (r = read_u64(root, "pages_volatile", &c.pages_volatile)) < 0 ||
	    (r = read_u64(root, "full_scans", &c.full_scans)) < 0 ||
	    (r = read_optional(root, "pages_scanned", &c.pages_scanned, NULL)) < 0 ||
	    (r = read_optional(root, "ksm_zero_pages", &c.ksm_zero_pages, NULL)) < 0)
		return r;
	r = read_s64(root, "general_profit", &c.general_profit);
	if (r < 0 && r != -ENOENT)
		return r;
	c.has_general_profit = r == 0;
	*ret = c;
	return 0;
}

int ovcd_ksm_read_knobs(const char *root, struct ovcd_ksm_knobs *ret)
{
	struct ovcd_ksm_knobs k = { 0 };
	uint64_t run, pts, sleep, uzp;
	bool has_uzp;
	char rel[128], buf[128];
	int r;

	if ((r = read_u64(root, "run", &run)) < 0 ||
	    (r = read_u64(root, "pages_to_scan", &pts)) < 0 ||
	    (r = read_u64(root, "sleep_millisecs", &sleep)) < 0 ||
	    (r = read_optional(root, "use_zero_pages", &uzp, &has_uzp)) < 0)
		return r;
	if (run > 2 || pts > UINT32_MAX || sleep > UINT32_MAX || uzp > 1)
		return -EBADMSG;
	k.run = (uint32_t)run;
	k.pages_to_scan = (uint32_t)pts;
	k.sleep_millisecs = (uint32_t)sleep;
	k.use_zero_pages = has_uzp ? (int32_t)uzp : -1;
	/* "[none] scan-time": the selected mode is in brackets (6.7+). */
	snprintf(rel, sizeof(rel), OVC_KSM_DIR "/advisor_mode");
	r = ovcd_read_root_file(root, rel, buf, sizeof(buf));
	if (r < 0 && r != -ENOENT)
		return r;
	k.advisor_scan_time = r >= 0 && strstr(buf, "[scan-time]") != NULL;
	*ret = k;
	return 0;
}

/* The counters come from sysfs, or from a fixture or a peer: a kernel bug,
 * a fake sysfs or garbage can make them anything up to 2^64-1. Every step
 * saturates, so that absurd counters give an absurd but ordered figure
 * (INT64_MAX or INT64_MIN) rather than a wrapped one of the wrong sign. */
static uint64_t sat_add(uint64_t a, uint64_t b)
{
	uint64_t s;
	return __builtin_add_overflow(a, b, &s) ? UINT64_MAX : s;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
	uint64_t p;
	return __builtin_mul_overflow(a, b, &p) ? UINT64_MAX : p;
}

int64_t ovcd_ksm_profit_bytes(const struct ovcd_ksm_counters *c, uint64_t page_size)
{
	if (c->has_general_profit)
		return c->general_profit;
	uint64_t saved = sat_mul(sat_add(c->pages_sharing, c->ksm_zero_pages), page_size);
	uint64_t items = sat_add(sat_add(c->pages_sharing, c->pages_shared),
				 sat_add(c->pages_unshared, c->pages_volatile));
	uint64_t cost = sat_mul(items, KSM_RMAP_ITEM_BYTES);
	/* saved - cost, clamped to int64_t. */
	if (saved >= cost)
		return saved - cost > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)(saved - cost);
	return cost - saved > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)(cost - saved);
}

static int write_knob(const char *root, const char *name, uint64_t v, int first_error)
{
	char rel[128], text[32];
	int r;

	snprintf(rel, sizeof(rel), OVC_KSM_DIR "/%s", name);
	snprintf(text, sizeof(text), "%" PRIu64, v);
	r = ovcd_write_root_file(root, rel, text);
	return first_error < 0 ? first_error : r;
}

int ovcd_ksm_apply(const char *root, const struct ovcd_ksm_knobs *want,
		  const struct ovcd_ksm_knobs *have)
{
	bool all = have == NULL;
	int err = 0;

	if (want->run > 2 || want->use_zero_pages > 1 || want->use_zero_pages < -1)
		return -EINVAL;
	/* Stop first, so that no batch runs with half-applied settings. */
	if (want->run != 1 && (all || have->run != want->run))
		err = write_knob(root, "run", want->run, err);
	if (!want->advisor_scan_time && (all || have->pages_to_scan != want->pages_to_scan))
		err = write_knob(root, "pages_to_scan", want->pages_to_scan, err);
	if (all || have->sleep_millisecs != want->sleep_millisecs)
		err = write_knob(root, "sleep_millisecs", want->sleep_millisecs, err);
	if (want->use_zero_pages >= 0 && (all || have->use_zero_pages != want->use_zero_pages))
		err = write_knob(root, "use_zero_pages", (uint64_t)want->use_zero_pages, err);
	if (want->run == 1 && (all || have->run != want->run))
		err = write_knob(root, "run", want->run, err);
	return err;
}
