/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a policy tick needs from the host, in one struct: meminfo (limited
 * to the guests' memory cgroup), memory PSI, KSM counters and knobs. Above
 * host.c and ksm.c, which know nothing of each other or of the policy.
 * ovcd's main thread (and tests); no state.
 */
#include <errno.h>
#include <unistd.h>

#include "host/collect.h"
#include "host/host.h"
#include "host/ksm.h"
#include "host/policy.h"

int ovcd_host_collect(const char *root, const char *memory_cgroup, uint64_t now_usec,
		     struct ovcd_policy_host *ret, struct ovcd_host_collect_errors *ret_errors)
{
	struct ovcd_host_collect_errors errs = { 0 };
	struct ovcd_policy_host h = { .now_usec = now_usec };
	long page = sysconf(_SC_PAGESIZE);
	int r;

	h.page_size = page > 0 ? (uint64_t)page : 4096;
	r = errs.meminfo = ovcd_meminfo_read(root, &h.mem);
	if (r < 0)
		goto out;
	if (memory_cgroup) {
		struct ovcd_cgroup_mem cg;

		/* Without it, the host's own figures would overstate what the
		 * guests may have: better no tick than a wrong one. */
		r = errs.cgroup = ovcd_cgroup_mem_read(root, memory_cgroup, &cg);
		if (r < 0)
			goto out;
		ovcd_meminfo_limit_to_cgroup(&h.mem, &cg);
	}
	/* PSI and KSM only add to what meminfo says: without them (absent,
	 * disabled or unreadable) the tick decides on memory alone. */
	errs.psi = ovcd_psi_read(root, &h.psi);
	h.psi_valid = errs.psi == 0;
	errs.ksm = ovcd_ksm_read_counters(root, &h.ksm);
	if (errs.ksm == 0)
		errs.ksm = ovcd_ksm_read_knobs(root, &h.ksm_knobs);
	h.ksm_valid = errs.ksm == 0;
	*ret = h;
	r = 0;
out:
	if (ret_errors)
		*ret_errors = errs;
	return r;
}
