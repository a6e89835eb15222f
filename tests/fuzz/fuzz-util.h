/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers the libFuzzer harnesses share; header-only, any thread. */
#ifndef OVC_FUZZ_UTIL_H
#define OVC_FUZZ_UTIL_H

#include <stdint.h>

/* Eight input bytes as a little-endian u64. */
static inline uint64_t fuzz_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#endif
