#!/usr/bin/env bash
# Instructions per call of one benchmark candidate, counted by callgrind (not
# run in CI: it needs valgrind). callgrind is deterministic, so this is the
# noise-free companion of the wall-clock medians on a shared machine.
#
# Runs the candidate named CANDIDATE (exactly as in the bench's table) of
# bench target BENCH twice under `valgrind --tool=callgrind`, with N1 and N2
# calls (BULWARK_BENCH_ONLY / BULWARK_BENCH_CALLS); the difference of the two
# totals over N2 - N1 is the cost of one call without the start-up.
#
# Usage: benches/scripts/instructions.sh BENCH "CANDIDATE" [GROUP FILTER] [N1] [N2]
# e.g.   benches/scripts/instructions.sh breaker "tower ConcurrencyLimit" "count window"
set -euo pipefail

BENCH=$1
CANDIDATE=$2
FILTER=${3:-}
N1=${4:-2000}
N2=${5:-22000}
cd "$(dirname "$0")/../.."

# BIN=path/to/binary runs an already built bench binary (say, one kept from
# before a change, to compare both in one sitting).
BIN=${BIN:-}
[ -n "$BIN" ] || BIN=$(cargo bench -p bulwark-benches --bench "$BENCH" --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*'"$BENCH"'-[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$BIN" ] || { echo "build failed" >&2; exit 1; }

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

total() { # n -> instructions
    BULWARK_BENCH_ONLY="$CANDIDATE" BULWARK_BENCH_CALLS="$1" \
        valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN" --bench "$FILTER" >/dev/null 2>"$OUT/log"
    grep -o 'Collected : [0-9]*' "$OUT/log" | grep -o '[0-9]*$'
}

a=$(total "$N1")
b=$(total "$N2")
awk -v a="$a" -v b="$b" -v n=$((N2 - N1)) -v c="$CANDIDATE" 'BEGIN { printf "%-60s %8.1f instr/call\n", c, (b - a) / n }'
