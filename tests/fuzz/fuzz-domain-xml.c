/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness: the balloon capability scan of a libvirt domain's XML
 * (ovcd_balloon_caps_from_xml, balloon-driver/domain-xml.c). Parts of that
 * XML are whatever whoever defined the domain wrote. The input is the XML
 * (NUL-terminated here, as libvirt hands it out). Checked: no read outside
 * the string (ASan), only the four capability bits, no capability without
 * the device, and a look-alike <memballoon> placed before the device's (as
 * in <metadata>) changes nothing.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ALL_CAPS                                                                                   \
	(OVC_BALLOON_CAP_DEVICE | OVC_BALLOON_CAP_FREE_PAGE_REPORTING | OVC_BALLOON_CAP_DEFLATE_ON_OOM | \
	 OVC_BALLOON_CAP_STATS_POLLING)

static const char decoy[] = "<metadata><memballoon model='virtio' autodeflate='on' freePageReporting='on'>"
			    "<stats period='5'/></memballoon></metadata>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *xml = malloc(size + 1), *with_decoy;
	unsigned caps, caps2;

	if (!xml)
		return 0;
	memcpy(xml, data, size);
	xml[size] = '\0';
	caps = ovcd_balloon_caps_from_xml(xml);
	assert((caps & ~ALL_CAPS) == 0);
	assert(caps == 0 || (caps & OVC_BALLOON_CAP_DEVICE));

	/* The decoy before the document: only the last <memballoon> counts,
	 * so whenever the input has one of its own, the answer is the same. */
	with_decoy = malloc(sizeof(decoy) + strlen(xml));
	if (with_decoy) {
		strcpy(with_decoy, decoy);
		strcat(with_decoy, xml);
		caps2 = ovcd_balloon_caps_from_xml(with_decoy);
		if (caps != 0)
			assert(caps2 == caps);
		free(with_decoy);
	}
	free(xml);
	return 0;
}
