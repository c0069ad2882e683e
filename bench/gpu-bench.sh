#!/usr/bin/env bash
# One device call for the numbers: optional re-checks (RECHECK="name
# filter" of bench/check_matrix.py), then tune the benchmark shapes and run
# the fair benchmark (bench/peers.py).  The regressions against an old build
# are bench/gpu-correctness.sh's.  Logs in
# $LOGS, packed into $OUT/gpu-logs.tgz; the table is printed last.
#
#   BENCH_SHAPES=all|default|0,1,.. RECHECK="N=1 " bash bench/gpu-bench.sh
#
# The peer run alone takes about 7 minutes on an H200 at the default shapes (every time in two
# GPU states since session 12, Flex tuned's autotuning about 5 of them); with tuning first, give
# it the device's whole call or fewer shapes.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-/tmp/gpu-bench}
OUT=${OUT:-$LOGS}
LIMIT=${LIMIT:-590}
mkdir -p "$LOGS"/recheck
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}
start=$(date +%s)
if [ -n "${RECHECK:-}" ]; then
    python3 bench/check_matrix.py run --filter "$RECHECK" --out "$LOGS/recheck" --jobs 12 >"$LOGS/recheck/matrix.txt" 2>&1
fi
left=$((LIMIT - ($(date +%s) - start)))
OUT="$LOGS" timeout "$left" bash bench/gpu-suite.sh tune-bench bench >"$LOGS/suite.txt" 2>&1
{
    echo "== build $(cat build/COMMIT 2>/dev/null), $(( $(date +%s) - start )) s"
    [ -f "$LOGS/recheck/matrix.txt" ] && echo "== recheck '$RECHECK': $(tail -n 1 "$LOGS/recheck/matrix.txt")"
    grep -h '^== ' "$LOGS/suite.txt" | grep -v '== summary'
    grep -h '^# ' "$LOGS/peers.log" 2>/dev/null
    cat "$LOGS/peers.md" 2>/dev/null || grep -h '^{' "$LOGS/peers.log" 2>/dev/null | cut -c1-400
} | tee "$LOGS/summary.txt"
tar czf "$OUT/gpu-logs.tgz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")" 2>/dev/null
cp "$LOGS/summary.txt" "$OUT/" 2>/dev/null || true
