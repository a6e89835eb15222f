/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a policy tick needs from the host, in one struct: meminfo, memory
 * PSI, KSM counters and knobs. Above host.c and ksm.c, which know nothing
 * of each other or of the policy. ovcd's main thread (and tests); no state.
 */
#include <errno.h>
#include <unistd.h>

#include "host/collect.h"
#include "host/host.h"
#include "host/ksm.h"
#include "host/policy.h"

int ovc_host_collect(const char *root, uint64_t now_usec, struct ovc_policy_host *ret)
{
	struct ovc_policy_host h = { .now_usec = now_usec };
	long page = sysconf(_SC_PAGESIZE);
	int r;

	h.page_size = page > 0 ? (uint64_t)page : 4096;
	r = ovc_meminfo_read(root, &h.mem);
	if (r < 0)
		return r;
	r = ovc_psi_read(root, &h.psi);
	if (r < 0 && r != -ENOENT && r != -EOPNOTSUPP)
		return r;
	h.psi_valid = r == 0;
	r = ovc_ksm_read_counters(root, &h.ksm);
	if (r == 0)
		r = ovc_ksm_read_knobs(root, &h.ksm_knobs);
	if (r < 0 && r != -ENOENT)
		return r;
	h.ksm_valid = r == 0;
	*ret = h;
	return 0;
}
