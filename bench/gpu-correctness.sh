#!/usr/bin/env bash
# One device call for the correctness issue (13): the check matrix and the
# four sanitizers side by side, the regressions against the build before
# the fix (build/old-spattn, when carried: they must fail there), racecheck
# on that old build (it must report the hazard), and the GPU Bats tests.
# Logs go to $LOGS (default /tmp/gpu-correctness), packed into
# $OUT/gpu-logs.tgz; the summaries are printed last.
#
#   bash bench/gpu-correctness.sh          (carry build/; build/tools holds bats and jq for the host)
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-/tmp/gpu-correctness}
OUT=${OUT:-$LOGS}
LIMIT=${LIMIT:-520}                     # seconds for the whole run, packing excluded
mkdir -p "$LOGS"/{matrix,sanitize,old}
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}
if [ -d build/tools ]; then             # bats and jq (and jq's libraries), copied from the dev machine
    export PATH="$PWD/build/tools/bin:$PWD/build/tools/usr/bin:$PATH" LD_LIBRARY_PATH="$PWD/build/tools/lib"
fi

OUT="$LOGS/matrix" timeout "$LIMIT" bash bench/gpu-suite.sh matrix >"$LOGS/matrix/suite.txt" 2>&1 &
OUT="$LOGS/sanitize" timeout "$LIMIT" bash bench/gpu-suite.sh sanitize >"$LOGS/sanitize/suite.txt" 2>&1 &
if [ -x build/old-spattn ]; then
    (
        SPATTN=build/old-spattn timeout "$LIMIT" python3 bench/check_matrix.py run --filter regress-13 \
            --out "$LOGS/old" --jobs 3 >"$LOGS/old/regress.txt" 2>&1
        printf 'heads: 12\nkv_heads: 4\nhead_dim: 128\npattern: exclusive\n' >"$LOGS/old/ex12.yaml"
        timeout 200 compute-sanitizer --tool racecheck build/old-spattn check \
            "$LOGS/old/ex12.yaml" --pass fwd --batch 1 --seq-len 333 >"$LOGS/old/racecheck-fwd.log" 2>&1
        timeout 200 compute-sanitizer --tool racecheck ./build/spattn check \
            "$LOGS/old/ex12.yaml" --pass fwd --batch 1 --seq-len 333 >"$LOGS/old/racecheck-fwd-fixed.log" 2>&1
    ) &
fi
if command -v bats >/dev/null && command -v jq >/dev/null; then
    timeout "$LIMIT" bats tests/bats/check.bats >"$LOGS/bats-check.txt" 2>&1 &
fi
wait

{
    echo "== build $(cat build/COMMIT 2>/dev/null)"
    grep -h '^== ' "$LOGS/matrix/suite.txt" "$LOGS/sanitize/suite.txt" | grep -v '== summary'
    grep -h FAILED "$LOGS/matrix/matrix.txt" "$LOGS/sanitize/sanitize.txt" 2>/dev/null | head -n 30
    if [ -f "$LOGS/old/regress.txt" ]; then
        echo "== before the fix (build/old-spattn): $(tail -n 1 "$LOGS/old/regress.txt")"
        echo "== racecheck, old build: $(grep -h 'RACECHECK SUMMARY' "$LOGS/old/racecheck-fwd.log")"
        echo "== racecheck, this build: $(grep -h 'RACECHECK SUMMARY' "$LOGS/old/racecheck-fwd-fixed.log")"
    fi
    [ -f "$LOGS/bats-check.txt" ] && echo "== bats check.bats: $(grep -c '^ok' "$LOGS/bats-check.txt") ok," \
        "$(grep -c '^not ok' "$LOGS/bats-check.txt") not ok, $(grep -c '# skip' "$LOGS/bats-check.txt") skipped"
    grep '^not ok' "$LOGS/bats-check.txt" 2>/dev/null
} | tee "$LOGS/summary.txt"
tar czf "$OUT/gpu-logs.tgz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")" 2>/dev/null
cp "$LOGS/summary.txt" "$OUT/" 2>/dev/null || true
