#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (SECS each, 20 by default) with
# cargo-fuzz (libFuzzer, coverage-guided), starting from the seeds in
# fuzz/seeds/TARGET; fails on the first crash, whose input libFuzzer leaves
# in fuzz/artifacts/TARGET/. New corpus entries go to a scratch directory
# under the target dir, so the repository is not changed.
#
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use
# its unstable flags, and no sanitizer is built (the code has no `unsafe`).
# cargo-fuzz itself: `cargo install --locked cargo-fuzz` (CI does it).
#
# Usage: fuzz/run.sh [SECS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-20}
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(retry_after grpc_pushback grpc_timeout config_toml config_env)
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/fuzz
export RUSTC_BOOTSTRAP=1

cargo fuzz build --sanitizer none --debug-assertions --target-dir "$TARGET_DIR"
for t in "${TARGETS[@]}"; do
    corpus="$TARGET_DIR/corpus/$t"
    mkdir -p "$corpus"
    dict=()
    case $t in config_*) dict=(-dict=fuzz/config.dict) ;; esac
    echo "==> fuzz $t for ${SECS}s"
    log="$TARGET_DIR/$t.log"
    rc=0
    cargo fuzz run --sanitizer none --debug-assertions --target-dir "$TARGET_DIR" "$t" \
        "$corpus" "fuzz/seeds/$t" -- -max_total_time="$SECS" -max_len=4096 \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" >"$log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+.*DONE|stat::(number_of_executed_units|new_units_added|peak_rss_mb)|==[0-9]+==|SUMMARY|thread .* panicked)' "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "fuzz $t: failed (exit $rc); a crashing input is kept in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
echo "fuzz: ${#TARGETS[@]} targets, ${SECS}s each, 0 crashes"
