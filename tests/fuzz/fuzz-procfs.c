/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness for the host signal parsers (lib/host/host.c): /proc/meminfo
 * and memory PSI text. What they accept must be self-consistent.
 */
#include <stdlib.h>
#include <string.h>

#include "host/host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct ovcd_meminfo m;
	struct ovcd_psi p;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	if (ovcd_meminfo_parse(text, &m) == 0 &&
	    (m.available_bytes > m.total_bytes || m.free_bytes > m.total_bytes))
		abort();
	if (ovcd_psi_parse(text, &p) == 0 &&
	    (p.some.avg10_basis_points > 10000 || p.full.avg300_basis_points > 10000))
		abort();
	free(text);
	return 0;
}
