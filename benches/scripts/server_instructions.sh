#!/usr/bin/env bash
# Instructions per request on the server path, counted by callgrind (not run
# in CI: it needs valgrind and takes a minute).
#
# Builds the `server_path` bench target in release mode and runs each mode
# (a bare axum Router, the same router with a no-op Router::layer, and with
# the ServerStack) under `valgrind --tool=callgrind` twice, with N1 and N2
# requests. The difference of the two totals divided by N2 - N1 is the cost
# of one request, without the start-up both runs share. Then prints the
# sizes of the response futures.
#
# Usage: benches/scripts/server_instructions.sh [N1] [N2]
set -euo pipefail

N1=${1:-2000}
N2=${2:-12000}
cd "$(dirname "$0")/../.."

BIN=$(cargo build --release -p bulwark-benches --bench server_path --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*server_path[^"]*"' | tail -1 | cut -d'"' -f4)
[ -x "$BIN" ] || { echo "build failed" >&2; exit 1; }

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

total() { # mode n -> instructions
    valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.out" "$BIN" "$1" "$2" >/dev/null 2>"$OUT/log"
    grep -o 'Collected : [0-9]*' "$OUT/log" | grep -o '[0-9]*$'
}

declare -A PER
for mode in bare noop-layer stack; do
    a=$(total "$mode" "$N1")
    b=$(total "$mode" "$N2")
    PER[$mode]=$(( (b - a) / (N2 - N1) ))
done

bare=${PER[bare]} noop=${PER[noop-layer]} stack=${PER[stack]}
printf '%-34s %8s\n' "mode" "instr/request"
printf '%-34s %8d\n' "bare Router" "$bare"
printf '%-34s %8d  (+%d: axum'"'"'s own Router::layer cost)\n' "Router + no-op layer" "$noop" $((noop - bare))
printf '%-34s %8d  (+%d over bare, +%d over no-op layer)\n' "Router + ServerStack" "$stack" $((stack - bare)) $((stack - noop))
awk -v s="$stack" -v n="$noop" -v b="$bare" 'BEGIN {
    printf "ServerStack vs bare: %+.1f%%; vs Router + no-op layer: %+.1f%% (goal: <= +5%%)\n", 100*(s-b)/b, 100*(s-n)/n }'
"$BIN" sizes
