#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Run one libFuzzer binary for a short, fixed time (CI): new inputs go to a
# corpus in the build tree, the seeds in the source tree stay read-only.
# A finding exits 1: libFuzzer's own default, 77, is what meson reads as
# "skipped", which would hide it.
#   run-fuzzer.sh FUZZER CORPUS_DIR SEED_DIR SECONDS
set -eu
fuzzer=$1 corpus=$2 seeds=$3 secs=$4
mkdir -p "$corpus"
exec "$fuzzer" -max_total_time="$secs" -error_exitcode=1 -timeout_exitcode=1 -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
	"$corpus" "$seeds"
