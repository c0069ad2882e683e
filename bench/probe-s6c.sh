#!/usr/bin/env bash
# Session 6, device call 3: the forward's L2 sections (kernels/scheduler.cuh).
# fwd-ws check matrix and the four sanitizers; if both pass, forward tuning
# and the fair benchmark (bench/gpu-bench.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s6c}; mkdir -p "$OUT"
export PATH=$PWD/build/tools/bin:$PATH LD_LIBRARY_PATH=$PWD/build/tools/lib:${LD_LIBRARY_PATH:-}
T0=$(date +%s)
LIMIT=${LIMIT:-570}
export SPATTN_CACHE_DIR=/tmp/spk-c-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
FAMILY=fwd-ws OUT=$OUT/ws bash bench/ws-probe.sh check sanitize
ok=$(grep -c "passed" "$OUT/ws/matrix.txt" "$OUT/ws/sanitize.txt" | wc -l)
if ! grep -q "FAILED\|failed: [1-9]" "$OUT/ws/matrix.txt" "$OUT/ws/sanitize.txt" && [ -z "${NO_BENCH:-}" ]; then
    LOGS=$OUT/bench OUT=$OUT LIMIT=$((LIMIT - ($(date +%s) - T0))) TUNE_KIND=fwd BENCH_SHAPES=default bash bench/gpu-bench.sh
fi
echo "== [$(( $(date +%s) - T0 ))s] done"
