/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The balloon capabilities in a libvirt domain's live XML. Pure (no I/O, no
 * state), any thread; fuzzed by tests/fuzz/fuzz-domain-xml.c. The XML is
 * what libvirtd formats, but parts of it (metadata, descriptions) are
 * whatever whoever defined the domain wrote: nothing here reads outside
 * the string or believes a <memballoon> that is not the device's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

/* The start tag <name ...> or <name/> at @p: its end (the '>'), or NULL. */
static const char *tag_end(const char *p, const char *name)
{
	size_t n = strlen(name);

	if (p[0] != '<' || strncmp(p + 1, name, n) != 0)
		return NULL;
	p += 1 + n;
	if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != '/' && *p != '>')
		return NULL;
	return strchr(p, '>');
}

/* Whether the start tag [tag, end) has @attr='@value' or @attr="@value". */
static bool attr_is(const char *tag, const char *end, const char *attr, const char *value)
{
	size_t an = strlen(attr), vn = strlen(value);

	for (const char *p = tag; p + an + vn + 4 <= end; p++) {
		if ((*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') || strncmp(p + 1, attr, an) != 0 ||
		    p[1 + an] != '=')
			continue;
		const char *q = p + 2 + an;

		if ((*q == '\'' || *q == '"') && strncmp(q + 1, value, vn) == 0 && q[1 + vn] == *q)
			return true;
	}
	return false;
}

/* The last match of the start tag <@name> in [from, to): libvirt writes
 * <devices> after <metadata> and <description>, so the device's element
 * comes after any look-alike a domain's author put there. */
static const char *last_tag(const char *from, const char *to, const char *name, const char **ret_end)
{
	const char *found = NULL;

	for (const char *p = from; p < to && (p = strchr(p, '<')) && p < to; p++) {
		const char *e = tag_end(p, name);

		if (e && e < to) {
			found = p;
			*ret_end = e;
		}
	}
	return found;
}

unsigned ovcd_balloon_caps_from_xml(const char *xml)
{
	const char *xml_end = xml + strlen(xml);
	const char *tag_close, *el = last_tag(xml, xml_end, "memballoon", &tag_close), *body_end, *stats, *st_end;
	unsigned caps = 0;

	if (!el)
		return 0;
	if (attr_is(el, tag_close, "model", "none"))
		return 0;
	caps |= OVC_BALLOON_CAP_DEVICE;
	if (attr_is(el, tag_close, "autodeflate", "on"))
		caps |= OVC_BALLOON_CAP_DEFLATE_ON_OOM;
	if (attr_is(el, tag_close, "freePageReporting", "on"))
		caps |= OVC_BALLOON_CAP_FREE_PAGE_REPORTING;
	if (tag_close > el && tag_close[-1] == '/')
		return caps; /* <memballoon .../>: no children */
	body_end = strstr(tag_close, "</memballoon>");
	if (!body_end)
		return caps;
	stats = last_tag(tag_close, body_end, "stats", &st_end);
	if (stats) {
		const char *p = strstr(stats, "period=");

		if (p && p < st_end && (p[7] == '\'' || p[7] == '"') && p[8] >= '1' && p[8] <= '9')
			caps |= OVC_BALLOON_CAP_STATS_POLLING;
	}
	return caps;
}
