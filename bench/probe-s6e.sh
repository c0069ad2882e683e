#!/usr/bin/env bash
# Session 6, device call 5: the merged build (packed sequences, decoding and
# the session's kernel changes).  In parallel: the packed cases of the check
# matrix, the four sanitizers on packed sequences (every family), the matrix
# at N = 1000 for every family (the packed changes touched every kernel) and
# the Python GPU tests; then the packed benchmark alone.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s6e}; mkdir -p "$OUT"
export PATH=$PWD/build/tools/bin:$PWD/build/tools/usr/bin:$PATH LD_LIBRARY_PATH=$PWD/build/tools/lib:${LD_LIBRARY_PATH:-}
export SPATTN_LIB=$PWD/build/libspattn.so
T0=$(date +%s)
export SPATTN_CACHE_DIR=/tmp/spk-e-$T0 SPATTN_DB=/tmp/spattn-tune-e.db
L=${LIMIT:-140}
timeout $L python3 bench/check_matrix.py run --filter packed --out "$OUT/packed" --jobs 5 >"$OUT/packed-matrix.txt" 2>&1 &
timeout $L python3 bench/check_matrix.py sanitize --filter packed --out "$OUT/packed" --jobs 5 >"$OUT/packed-sanitize.txt" 2>&1 &
timeout $L python3 bench/check_matrix.py run --filter "N=1000 " --out "$OUT/n1000" --jobs 5 >"$OUT/n1000-matrix.txt" 2>&1 &
timeout $L python3 python/tests/test_gpu.py >"$OUT/python-gpu.txt" 2>&1 &
wait
echo "== [$(( $(date +%s) - T0 ))s] build $(cat build/COMMIT)"
for f in packed-matrix packed-sanitize n1000-matrix python-gpu; do echo "== $f: $(tail -n 1 "$OUT/$f.txt")"; grep -h "FAILED\|^FAIL\|^ERROR" "$OUT/$f.txt" | head -n 8; done
grep -h "SUMMARY" "$OUT"/packed/sanitize-*.log 2>/dev/null | sort | uniq -c
LOGS=$OUT/pbench timeout 60 bash bench/packed-bench.sh 2>&1 | tail -n 8
echo "== [$(( $(date +%s) - T0 ))s] done"
