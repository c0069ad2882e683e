#!/usr/bin/env bash
# One device call for the numbers: the issue-13 regressions against the
# build before the fix (when build/old-spattn is carried: they must fail
# there) and optional re-checks (RECHECK="name filter"), then tune the
# benchmark shapes and run the fair benchmark (bench/peers.py).  Logs in
# $LOGS, packed into $OUT/gpu-logs.tgz; the table is printed last.
#
#   BENCH_SHAPES=all|default|0,1,.. RECHECK="N=1 " bash bench/gpu-bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-/tmp/gpu-bench}
OUT=${OUT:-$LOGS}
LIMIT=${LIMIT:-540}
mkdir -p "$LOGS"/{old,recheck}
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}
start=$(date +%s)
if [ -x build/old-spattn ]; then
    SPATTN=build/old-spattn python3 bench/check_matrix.py run --filter regress-13 --out "$LOGS/old" --jobs 9 \
        >"$LOGS/old/regress.txt" 2>&1
    python3 bench/check_matrix.py run --filter regress-13 --out "$LOGS/old/fixed" --jobs 9 >"$LOGS/old/regress-fixed.txt" 2>&1
fi
if [ -n "${RECHECK:-}" ]; then
    python3 bench/check_matrix.py run --filter "$RECHECK" --out "$LOGS/recheck" --jobs 12 >"$LOGS/recheck/matrix.txt" 2>&1
fi
left=$((LIMIT - ($(date +%s) - start)))
OUT="$LOGS" timeout "$left" bash bench/gpu-suite.sh tune-bench bench >"$LOGS/suite.txt" 2>&1
{
    echo "== build $(cat build/COMMIT 2>/dev/null), $(( $(date +%s) - start )) s"
    [ -f "$LOGS/old/regress.txt" ] && echo "== regressions, build before the fix: $(tail -n 1 "$LOGS/old/regress.txt")" &&
        echo "== regressions, this build: $(tail -n 1 "$LOGS/old/regress-fixed.txt")"
    [ -f "$LOGS/recheck/matrix.txt" ] && echo "== recheck '$RECHECK': $(tail -n 1 "$LOGS/recheck/matrix.txt")"
    grep -h '^== ' "$LOGS/suite.txt" | grep -v '== summary'
    grep -h '^# ' "$LOGS/peers.log" 2>/dev/null
    cat "$LOGS/peers.md" 2>/dev/null || grep -h '^{' "$LOGS/peers.log" 2>/dev/null | cut -c1-400
} | tee "$LOGS/summary.txt"
tar czf "$OUT/gpu-logs.tgz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")" 2>/dev/null
cp "$LOGS/summary.txt" "$OUT/" 2>/dev/null || true
