/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fault injection over struct sys_ops: counts every call and fails the Nth
 * one (of all ops, or of one op) with a chosen errno. Give fi->sys to the
 * code under test; it forwards to the real syscalls otherwise.
 *
 * Typical loop: run once with fail_at = 0 to count the calls, then for
 * n = 1..count run again failing call n, and check a clean unwind.
 */
#ifndef OVC_FAULT_INJECT_H
#define OVC_FAULT_INJECT_H

#include <stdatomic.h>
#include <stdbool.h>

#include "engine/sys.h"

struct fault_inject {
	struct sys_ops sys;            /* hand &fi->sys to the code under test */
	const struct sys_ops *real;
	/* Fail call number fail_at (1-based) among those counted; 0: never.
	 * Atomic: a test may set it while the engine's threads make calls. */
	atomic_long fail_at;
	int fail_errno;                /* errno to set (io_uring ops: -errno) */
	/* Which ops count: bit (1 << OVC_SYS_*); 0 means all. */
	unsigned op_mask;
	/* For OVC_SYS_URING_CQE: a short count instead of an error when > 0. */
	int short_res;
	atomic_long calls;             /* counted calls so far */
	atomic_long per_op[_OVC_SYS_OP_MAX];
	atomic_long injected;          /* failures handed out */
};

void fault_inject_init(struct fault_inject *fi, long fail_at, int fail_errno, unsigned op_mask);

#endif
