/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef OVC_HOST_COLLECT_H
#define OVC_HOST_COLLECT_H

#include <stdint.h>

struct ovc_policy_host;

/*
 * Everything a policy tick needs from the host, read under @root: meminfo
 * (required), memory PSI (psi_valid false when the kernel has none or it is
 * disabled), KSM counters and knobs (ksm_valid false without KSM); sets
 * now_usec to @now_usec and the page size. Returns 0 or the meminfo
 * error, or another reader's error other than "absent"; *ret untouched on
 * failure.
 */
int ovc_host_collect(const char *root, uint64_t now_usec, struct ovc_policy_host *ret);

#endif
