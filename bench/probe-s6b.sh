#!/usr/bin/env bash
# Session 6, device call 2: the backward with dQ by bulk reduce-adds and
# S^T/dP^T issued together.  Its family's check matrix (bwd-wgmma and
# bwd-wgmma-det) and the four sanitizers; only if both pass, the tuning and
# the fair benchmark (bench/gpu-bench.sh, with the deterministic column).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s6b}; mkdir -p "$OUT"
export PATH=$PWD/build/tools/bin:$PATH LD_LIBRARY_PATH=$PWD/build/tools/lib:${LD_LIBRARY_PATH:-}
T0=$(date +%s)
LIMIT=${LIMIT:-570}
export SPATTN_CACHE_DIR=/tmp/spk-b-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT)"
python3 bench/check_matrix.py run --filter bwd-wgmma --out "$OUT/m" --jobs 12 >"$OUT/matrix.txt" 2>&1
m=$?; echo "== [$(( $(date +%s) - T0 ))s] $(tail -n 1 "$OUT/matrix.txt")"; grep FAILED "$OUT/matrix.txt" | head
python3 bench/check_matrix.py sanitize --filter bwd-wgmma --out "$OUT/m" --jobs 8 >"$OUT/sanitize.txt" 2>&1
z=$?; echo "== [$(( $(date +%s) - T0 ))s] $(tail -n 1 "$OUT/sanitize.txt")"
grep -h "SUMMARY" "$OUT"/m/sanitize-*.log 2>/dev/null | sort | uniq -c
if [ "$m" = 0 ] && [ "$z" = 0 ] && [ -z "${NO_BENCH:-}" ]; then
    LOGS=$OUT/bench OUT=$OUT LIMIT=$((LIMIT - ($(date +%s) - T0))) TUNE_KIND=all BENCH_SHAPES=default bash bench/gpu-bench.sh
fi
echo "== [$(( $(date +%s) - T0 ))s] done"
