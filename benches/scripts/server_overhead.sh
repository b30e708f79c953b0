#!/usr/bin/env bash
# The ServerStack's overhead on the wire (not run in CI: it takes minutes and
# needs a quiet machine to mean much).
#
# Starts two release builds of `examples/examples/server_bench.rs` on
# 127.0.0.1, each on one tokio worker: a bare axum handler (`GET /` -> "ok")
# and the same handler behind the default `ServerStack`. Then, at 32 and at
# 256 connections, runs a closed-loop load generator (wrk: each connection
# sends its next request when the last is answered) against them in
# alternation, A B A B ..., RUNS times each for SECS seconds, after a warm-up
# of each. With 2 or more cores the servers are pinned to core 0 and the
# load generator to core 1 (taskset), so they do not take each other's core.
#
# Prints each run, then per connection count the median requests/s and
# p99 of each server, the ratio of the medians, the median of the per-pair
# ratios (run i of the stack over run i of the bare server, which cancels
# slow drifts of a shared machine), and the server's CPU time (user +
# system, from /proc) per request: on a machine shared with other work,
# requests/s measure how much CPU the server was given as much as what it
# does with it, and CPU per request only the latter.
#
# The load generator is wrk, from Debian's packages (installed with apt-get
# if missing): a packaged binary installs in seconds, where `cargo install
# oha` compiles for minutes; wrk's --latency gives the percentiles.
#
# Usage: benches/scripts/server_overhead.sh [RUNS] [SECS]
set -euo pipefail

RUNS=${1:-7}
SECS=${2:-5}
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "installing wrk (Debian package)" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

cargo build --release -p bulwark-examples --example server_bench >&2
BIN="${CARGO_TARGET_DIR:-target}/release/examples/server_bench"
[ -x "$BIN" ] || { echo "no $BIN" >&2; exit 1; }

SERVER_CPU=() CLIENT_CPU=()
if command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
fi

BARE_PORT=${BARE_PORT:-18481}
STACK_PORT=${STACK_PORT:-18482}
"${SERVER_CPU[@]}" "$BIN" bare "$BARE_PORT" & BARE_PID=$!
"${SERVER_CPU[@]}" "$BIN" stack "$STACK_PORT" & STACK_PID=$!
trap 'kill $BARE_PID $STACK_PID 2>/dev/null || true' EXIT
for port in "$BARE_PORT" "$STACK_PORT"; do
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
done

OUT=$(mktemp)
# CPU time (user + system, in clock ticks) a process has used.
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

# wrk's output -> "requests/s p99_ms requests"
load() { # port conns secs
    "${CLIENT_CPU[@]}" wrk -t1 -c"$2" -d"$3"s --latency "http://127.0.0.1:$1/" | awk '
        / requests in / { n = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "99%" {
            v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
            f = (u == "us") ? 0.001 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1
            p99 = v * f
        }
        END { printf "%.1f %.3f %d\n", rps, p99, n }'
}

printf '%-6s %-5s %-4s %12s %10s %12s\n' conns mode run "requests/s" "p99 (ms)" "CPU us/req"
for conns in 32 256; do
    load "$BARE_PORT" "$conns" 2 >/dev/null
    load "$STACK_PORT" "$conns" 2 >/dev/null
    for run in $(seq "$RUNS"); do
        for mode in bare stack; do
            port=$BARE_PORT pid=$BARE_PID
            [ "$mode" = stack ] && port=$STACK_PORT pid=$STACK_PID
            t0=$(ticks "$pid")
            read -r rps p99 n < <(load "$port" "$conns" "$SECS")
            t1=$(ticks "$pid")
            cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$n" 'BEGIN { printf "%.2f", (n > 0) ? d * 1e6 / hz / n : 0 }')
            printf '%-6s %-5s %-4s %12s %10s %12s\n' "$conns" "$mode" "$run" "$rps" "$p99" "$cpu"
            echo "$conns $mode $run $rps $p99 $cpu" >>"$OUT"
        done
    done
done

echo
awk '
    function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { c = $1; m = $2; r = $3; rps[c, m, r] = $4; p99[c, m, r] = $5; cpu[c, m, r] = $6; runs[c] = (r > runs[c]) ? r : runs[c]; conns[c] = 1 }
    END {
        printf "%-6s %11s %11s %6s %10s %10s %6s %10s %10s %11s %11s %6s\n", "conns", "bare req/s", "stack req/s", "ratio", "bare p99", "stack p99", "ratio", "pair req/s", "pair p99", "bare us/req", "stack us/req", "ratio"
        for (c in conns) {
            n = runs[c]
            for (i = 1; i <= n; i++) {
                a[i] = rps[c, "bare", i]; b[i] = rps[c, "stack", i]
                pa[i] = p99[c, "bare", i]; pb[i] = p99[c, "stack", i]
                qr[i] = rps[c, "stack", i] / rps[c, "bare", i]
                qp[i] = (p99[c, "bare", i] > 0) ? p99[c, "stack", i] / p99[c, "bare", i] : 0
                ca[i] = cpu[c, "bare", i]; cb[i] = cpu[c, "stack", i]
            }
            ma = median(a, n); mb = median(b, n); mpa = median(pa, n); mpb = median(pb, n); mca = median(ca, n); mcb = median(cb, n)
            printf "%-6s %11.0f %11.0f %6.3f %8.2fms %8.2fms %6.3f %10.3f %10.3f %11.2f %11.2f %6.3f\n", c, ma, mb, mb / ma, mpa, mpb, mpb / mpa, median(qr, n), median(qp, n), mca, mcb, (mca > 0) ? mcb / mca : 0
        }
        print "goal: requests/s ratio >= 0.98, p99 ratio <= 1.10"
    }' "$OUT" | sort -n
rm -f "$OUT"
