/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ovc-bench SUBCOMMAND [--json] [--size SIZE] [--repeat N] [args]
 *
 * Every benchmark measures its peer (Linux KSM, kernel swap, raw disk, memory
 * bandwidth) in the same run and prints the ratio. Machines are shared and
 * noisy: medians, not best runs.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const struct {
	const char *name;
	bench_fn fn;
	const char *help;
} cmds[] = {
	{ "zero", bench_zero, "zero-page reclaim: engine vs batched limit vs KSM; zero-fault latency" },
	{ "swap", bench_swap, "swap-out/in: engine vs raw io_uring disk vs kernel swap" },
#ifdef OVC_BENCH_HAVE_POLICY /* the policy is ovcd's: not in engine_only builds */
	{ "policy", bench_policy, "daemon tick cost with simulated guests" },
#endif
	{ "all", bench_all, "every benchmark, then docs/bench/report.md with plots" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ovc-bench SUBCOMMAND [--json] [--size SIZE] [--repeat N]\n\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "size", required_argument, NULL, 's' },
		{ "repeat", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct bench_opts o = { 0 };
	int c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	argv++, argc--;
	while ((c = getopt_long(argc, argv, "+js:r:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			o.json = true;
			break;
		case 's':
			o.size_bytes = bench_parse_size(optarg);
			if (!o.size_bytes) {
				fprintf(stderr, "ovc-bench: bad size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'r':
			o.repeat = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	o.argc = argc - optind;
	o.argv = argv + optind;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			return cmds[i].fn(&o);
	fprintf(stderr, "ovc-bench: unknown subcommand '%s'\n", cmd);
	usage(stderr);
	return 2;
}
