/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef OVC_HOST_COLLECT_H
#define OVC_HOST_COLLECT_H

#include <stdint.h>

struct ovcd_policy_host;

/* What each reader of ovcd_host_collect() said: 0, or its -errno. */
struct ovcd_host_collect_errors {
	int meminfo;
	int cgroup;
	int psi;
	int ksm;
};

/*
 * Everything a policy tick needs from the host, read under @root: meminfo
 * (required), limited to what the memory cgroup directory @memory_cgroup
 * leaves its members when it is not NULL (required then too:
 * ovcd_meminfo_limit_to_cgroup()); memory PSI and the KSM counters and
 * knobs, both optional: any error of theirs, absent or broken, only makes
 * psi_valid or ksm_valid false, so that a tick never stops for them. Sets
 * now_usec to @now_usec and the page size.
 *
 * Returns 0, or the meminfo or cgroup reader's -errno (*ret untouched
 * then). @ret_errors, when not NULL, is always filled: each reader's
 * result, 0 for a reader not run.
 */
int ovcd_host_collect(const char *root, const char *memory_cgroup, uint64_t now_usec,
		     struct ovcd_policy_host *ret, struct ovcd_host_collect_errors *ret_errors);

#endif
