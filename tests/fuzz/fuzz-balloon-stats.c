/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness: libvirt balloon stats normalisation
 * (ovcd_balloon_stats_from_libvirt) on arbitrary field sets. Input: records
 * of 9 bytes, a field selector (one of the libvirt 9.0 names, or an unknown
 * one) and a little-endian u64 value; then the clock from the last 8 bytes.
 * Guest-reported stats are untrusted: the output must never claim more
 * memory than the guest was given, and stale means guest-side unknown.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "driver.h"
#include "fuzz-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
	"balloon.current", "balloon.maximum", "balloon.swap_in", "balloon.swap_out",
	"balloon.major_fault", "balloon.minor_fault", "balloon.unused", "balloon.available",
	"balloon.rss", "balloon.usable", "balloon.last-update", "balloon.disk_caches",
	"balloon.hugetlb_pgalloc", "balloon.hugetlb_pgfail", "balloon.bogus", "state.state",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ovcd_balloon_kv kv[64];
	struct ovcd_guest_stats st;
	uint64_t now = 1795705210;
	size_t n = 0;

	if (size >= 8) {
		now = fuzz_le64(data + size - 8);
		size -= 8;
	}
	for (size_t off = 0; off + 9 <= size && n < 64; off += 9)
		kv[n++] = (struct ovcd_balloon_kv){ names[data[off] % 16], fuzz_le64(data + off + 1) };

	if (ovcd_balloon_stats_from_libvirt(kv, n, now, 30, &st) < 0) {
		assert(!ovcd_known(st.max_bytes) && !ovcd_known(st.total_bytes));
		return 0;
	}
	assert(ovcd_known(st.max_bytes) && ovcd_known(st.actual_bytes));
	assert(!ovcd_known(st.total_bytes) || st.total_bytes <= st.max_bytes);
	assert(!ovcd_known(st.free_bytes) || st.free_bytes <= st.max_bytes);
	assert(!ovcd_known(st.available_bytes) || st.available_bytes <= st.max_bytes);
	assert(!ovcd_known(st.free_bytes) || !ovcd_known(st.total_bytes) || st.free_bytes <= st.total_bytes);
	if (st.stale)
		assert(!ovcd_known(st.available_bytes) && !ovcd_known(st.swap_out_bytes) &&
		       !ovcd_known(st.major_faults));
	return 0;
}
