#!/usr/bin/env bash
# One device call for decoding's correctness (issue 18 item 2): the decode
# cases of the check matrix, the four compute-sanitizer tools on the decode
# kernels, the GPU tests of tests/bats/decode.bats and the Python decode
# tests, side by side.  The benchmark is bench/decode-bench.sh (a second
# call).  Logs in $LOGS (default /tmp/gpu-decode), packed into
# $OUT/gpu-logs.tgz; the summary is printed last.
#
#   bash bench/gpu-decode.sh          (carry build/; build/tools holds bats and jq for the host)
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-/tmp/gpu-decode}
OUT=${OUT:-$LOGS}
LIMIT=${LIMIT:-480}
mkdir -p "$LOGS"/{matrix,sanitize}
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}
export SPATTN_LIB=${SPATTN_LIB:-$PWD/build/libspattn.so}
if [ -d build/tools ]; then
    export PATH="$PWD/build/tools/bin:$PWD/build/tools/usr/bin:$PATH" LD_LIBRARY_PATH="$PWD/build/tools/lib"
fi
timeout "$LIMIT" python3 bench/check_matrix.py run --filter decode --arch "${ARCH:-sm_90a}" --out "$LOGS/matrix" \
    --jobs "${JOBS:-10}" >"$LOGS/matrix/matrix.txt" 2>&1 &
timeout "$LIMIT" python3 bench/check_matrix.py sanitize --filter decode --arch "${ARCH:-sm_90a}" --out "$LOGS/sanitize" \
    --jobs 8 >"$LOGS/sanitize/sanitize.txt" 2>&1 &
if command -v bats >/dev/null && command -v jq >/dev/null; then
    timeout "$LIMIT" bats tests/bats/decode.bats >"$LOGS/bats-decode.txt" 2>&1 &
fi
timeout "$LIMIT" python3 python/tests/test_gpu.py TestDecode >"$LOGS/python-decode.txt" 2>&1 &
wait
{
    echo "== build $(cat build/COMMIT 2>/dev/null)"
    echo "== decode matrix: $(tail -n 1 "$LOGS/matrix/matrix.txt")"
    grep -h FAILED "$LOGS/matrix/matrix.txt" | head -n 20
    echo "== decode sanitizers: $(tail -n 1 "$LOGS/sanitize/sanitize.txt")"
    grep -h FAILED "$LOGS/sanitize/sanitize.txt" | head -n 20
    [ -f "$LOGS/bats-decode.txt" ] && echo "== bats decode.bats: $(grep -c '^ok' "$LOGS/bats-decode.txt") ok," \
        "$(grep -c '^not ok' "$LOGS/bats-decode.txt") not ok, $(grep -c '# skip' "$LOGS/bats-decode.txt") skipped"
    grep -A12 '^not ok' "$LOGS/bats-decode.txt" 2>/dev/null | head -n 40
    echo "== python TestDecode: $(tail -n 1 "$LOGS/python-decode.txt")"
    grep -B2 -A20 -E '^(FAIL|ERROR):' "$LOGS/python-decode.txt" | head -n 40
} | tee "$LOGS/summary.txt"
tar czf "$OUT/gpu-logs.tgz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")" 2>/dev/null
cp "$LOGS/summary.txt" "$OUT/" 2>/dev/null || true
