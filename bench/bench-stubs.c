/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Subcommands whose benchmark has not landed yet say so and fail, so that
 * nobody mistakes an empty run for a measurement. Each bench-<name>.c that
 * lands removes its entry here.
 */
#include "bench.h"

#define NOT_YET(name, issue)                                                          \
	int bench_##name(const struct bench_opts *opts)                                \
	{                                                                              \
		fprintf(stderr, "ovc-bench " #name ": not implemented yet (" issue ")\n"); \
		return 3;                                                              \
	}

NOT_YET(zero, "issue 3")
NOT_YET(swap, "issue 4")
#ifndef OVC_BENCH_HAVE_POLICY
/* engine_only builds have no policy (it lives with the daemon). */
NOT_YET(policy, "not in engine_only builds")
#endif
