#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# unit: scripts/bench-report renders the hand-made results in
# tests/fixtures/bench (no benchmark runs): every section is there, each
# target gets the verdict its fixture figures call for, the latency CDF and
# the other plots are real PNGs labelled with machine, kernel and date; and
# with the CDF arrays (or the whole swap run) missing it says "not measured"
# instead of drawing or inventing anything.
set -eu
report=$1
fixtures=$2
command -v gnuplot >/dev/null || { echo "SKIP: gnuplot not installed (scripts/setup installs gnuplot-nox)"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
has() { grep -qF -- "$2" "$1" || fail "$1 lacks: $2"; }
is_png() {
	[ -s "$1" ] || fail "no $1"
	[ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$1 is not a PNG"
}

# 1. The full fixture.
python3 "$report" "$fixtures" "$tmp/full" || fail "bench-report failed on the fixture"
md=$tmp/full/report.md
for s in "## Targets" "## Zero-page reclaim" "## Swapping" "### Swap-in latency distribution" "## Daemon tick cost"; do
	has "$md" "$s"
done
# Verdicts follow from the fixture's figures (see tests/fixtures/bench).
has "$md" "| zero reclaim (all-zero): ovc >= 0.5x the batched limit | 0.75x | met |"
has "$md" "| zero reclaim (alternating): ovc >= 0.5x the batched limit | 0.25x | missed |"
has "$md" "| zero reclaim (all-zero): GiB per CPU-second >= 3x KSM's | 5.00x | met |"
has "$md" "| engine metadata <= 8 bytes per 4 KiB page | 8.0000 B | met |"
has "$md" "| first write of a reclaimed zero page, p50 <= 2x the kernel's anonymous fault | 2.25x | missed |"
has "$md" "| swap-out >= 0.5x raw O_DIRECT disk write | 0.67x | met |"
has "$md" "| swap-out >= 1.5x kernel swap-out | 1.33x | missed |"
has "$md" "| sequential swap-in >= 2x kernel's | 3.00x | met |"
has "$md" "| random swap-in fault p50 <= 1.2x kernel's | 1.40x | missed |"
has "$md" "7 met, 6 missed, 0 not measured"
has "$md" "ovc engine p50 70.00 µs, p99 300.00 µs, kernel swap p50 50.00 µs, p99 120.00 µs"
has "$md" "*Measured on Linux 6.18.0-fixture, Fixture CPU at 2.50GHz, 2 cores, 24105 MiB, 2026-01-02T03:04:05Z.*"
if grep -q "Not measured" "$md"; then fail "full fixture reported something as not measured"; fi
for png in reclaim swapout swapin swapin-cdf policy; do
	is_png "$tmp/full/$png.png"
	has "$md" "($png.png)"
done

# 2. No latency distributions: a clear line each, no CDF plot.
mkdir "$tmp/nocdf"
cp "$fixtures"/*.json "$tmp/nocdf/"
python3 - "$tmp/nocdf/swap.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
del j["swapin_rand_cdf_us"], j["kswap_in_rand_cdf_us"]
json.dump(j, open(sys.argv[1], "w"))
PY
python3 "$report" "$tmp/nocdf" "$tmp/nocdf-out" || fail "bench-report failed without the CDF arrays"
has "$tmp/nocdf-out/report.md" "Not measured: the ovc engine's random swap-in latency distribution"
has "$tmp/nocdf-out/report.md" "Not measured: the kernel swap's random swap-in latency distribution"
[ ! -e "$tmp/nocdf-out/swapin-cdf.png" ] || fail "a CDF plot was drawn without data"
is_png "$tmp/nocdf-out/swapout.png"

# 3. A malformed distribution counts as not measured, not as a plot.
mkdir "$tmp/bad"
cp "$fixtures"/*.json "$tmp/bad/"
python3 - "$tmp/bad/swap.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["swapin_rand_cdf_us"] = [[50, "fast"], [150, -1]]
json.dump(j, open(sys.argv[1], "w"))
PY
python3 "$report" "$tmp/bad" "$tmp/bad-out" || fail "bench-report failed on a malformed distribution"
has "$tmp/bad-out/report.md" "Not measured: the ovc engine's random swap-in latency distribution"
is_png "$tmp/bad-out/swapin-cdf.png" # the kernel's still plotted

# 4. Just over a limit is missed, and shown with the digits that say why.
mkdir "$tmp/meta"
cp "$fixtures"/*.json "$tmp/meta/"
python3 - "$tmp/meta/zero.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["meta_bytes_per_page"] = 8.0007
json.dump(j, open(sys.argv[1], "w"))
PY
python3 "$report" "$tmp/meta" "$tmp/meta-out" || fail "bench-report failed on the metadata case"
has "$tmp/meta-out/report.md" "| engine metadata <= 8 bytes per 4 KiB page | 8.0007 B | missed |"

# 5. The swap benchmark did not run at all: its targets are not measured.
mkdir "$tmp/noswap"
cp "$fixtures"/zero.json "$fixtures"/policy-*.json "$tmp/noswap/"
python3 "$report" "$tmp/noswap" "$tmp/noswap-out" || fail "bench-report failed without swap.json"
has "$tmp/noswap-out/report.md" "| swap-out >= 1.5x kernel swap-out | n/a | not measured |"
has "$tmp/noswap-out/report.md" "4 not measured"
echo "bench-report: fixture rendered, verdicts and plots as expected"
