/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness: an engine's stats reply as guest figures
 * (balloon-driver/engine-figures.c). What a VMM sends is untrusted. The
 * first byte picks the input: a reply line parsed as the driver parses it
 * (lib/common/endpoint-proto.c), or raw figures and a raw "have" mask, so that
 * every combination of claims is reached; the last 8 bytes are the VMM's
 * address space. Checked: the maximum is at most 64 TiB, the address space
 * and the registered RAM the engine reported; actual is the maximum; zero
 * plus swap and the target are within it; optional figures are known only
 * when sent; a swap cache is within the maximum; p50 <= p99.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine-figures.h"
#include "fuzz-util.h"
#include "common/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ep_reply rp;
	struct ovcd_guest_stats st;
	uint64_t vm = OVC_UNKNOWN, max;

	if (size < 1 + 8)
		return 0;
	vm = fuzz_le64(data + size - 8);
	if (vm == 0)
		vm = OVC_UNKNOWN;
	size -= 8;
	memset(&rp, 0, sizeof(rp));
	if (data[0] & 1) {
		char line[EP_REPLY_MAX];
		size_t n = MIN(size - 1, sizeof(line) - 1);

		memcpy(line, data + 1, n);
		line[n] = '\0';
		if (ep_parse_reply(line, n, &rp) < 0 || !rp.ok)
			return 0;
	} else {
		uint64_t f[16] = { 0 };

		for (size_t i = 0; i < 16 && 1 + 4 + 8 * (i + 1) <= size; i++)
			f[i] = fuzz_le64(data + 1 + 4 + 8 * i);
		rp.ok = true;
		rp.have = size >= 5 ? (unsigned)fuzz_le64((const uint8_t[8]){ data[1], data[2], data[3], data[4] }) : 0;
		rp.st.max_bytes = f[0];
		rp.st.region_bytes = f[1];
		rp.st.zero_bytes = f[2];
		rp.st.swap_bytes = f[3];
		rp.st.target_bytes = f[4];
		rp.st.pages_swapped_in = f[5];
		rp.st.refaults = f[6];
		rp.st.pages_swapped_out = f[7];
		rp.st.swap_cache_pages = f[8];
		rp.st.swap_cache_hits = f[9];
		rp.st.swap_write_errors = f[10];
		rp.st.swap_read_errors = f[11];
		rp.st.fault_p50_usec = f[12];
		rp.st.fault_p99_usec = f[13];
	}
	engine_figures(&rp, vm, &st);
	max = st.max_bytes;
	assert(max == engine_max_bytes(&rp, vm));
	assert(max <= OVC_GUEST_BYTES_MAX && max <= rp.st.max_bytes);
	assert(!ovcd_known(vm) || max <= vm);
	assert(!(rp.have & EP_HAVE_REGION) || max <= rp.st.region_bytes);
	assert(st.actual_bytes == max);
	assert(st.engine_zero_bytes <= max && st.engine_swap_bytes <= max - st.engine_zero_bytes);
	assert(st.engine_target_bytes <= max);
	assert(!ovcd_known(st.available_bytes) && !ovcd_known(st.total_bytes) && !ovcd_known(st.free_bytes));
	if (!(rp.have & EP_HAVE_SWAPPED_IN))
		assert(!ovcd_known(st.engine_swap_in_bytes));
	if (!(rp.have & EP_HAVE_SWAPPED_OUT))
		assert(!ovcd_known(st.engine_swap.out_bytes));
	if (!(rp.have & EP_HAVE_SWAP_CACHE))
		assert(!ovcd_known(st.engine_swap.cache_bytes));
	assert(!ovcd_known(st.engine_swap.cache_bytes) || st.engine_swap.cache_bytes <= max);
	assert(ovcd_known(st.engine_swap.fault_p50_usec) == ovcd_known(st.engine_swap.fault_p99_usec));
	assert(!ovcd_known(st.engine_swap.fault_p50_usec) ||
	       st.engine_swap.fault_p50_usec <= st.engine_swap.fault_p99_usec);
	return 0;
}
