#!/usr/bin/env bash
# Session 7, device call 4: the final build's Python package on the GPU
# (test_gpu.py, test_cpu.py and the op's overhead, python/tests/run_gpu.sh:
# the decode tuning changed the C structs the package mirrors) and the decode
# cases of the check matrix (the split heuristic changed).  Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s7d}; mkdir -p "$OUT"
export PATH=$PWD/build/tools/bin:$PATH LD_LIBRARY_PATH=$PWD/build/tools/lib:${LD_LIBRARY_PATH:-}
T0=$(date +%s)
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
timeout 100 python3 bench/check_matrix.py run --filter decode --out "$OUT/m-decode" --jobs 14 --timeout 90 >"$OUT/matrix-decode.txt" 2>&1
echo "== [$(( $(date +%s) - T0 ))s] matrix decode: $(tail -n 1 "$OUT/matrix-decode.txt")"; grep FAILED "$OUT/matrix-decode.txt" | head
OUT=$OUT timeout 200 bash python/tests/run_gpu.sh 2>&1 | tail -n 30
echo "== [$(( $(date +%s) - T0 ))s] done"
