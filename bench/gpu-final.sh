#!/usr/bin/env bash
# A short device call for a build whose kernels were already checked in full
# (their machine code unchanged, tests/sass_same.sh): every kernel family
# once through the check matrix at N = 1000 and N = 65, the issue-13
# regressions, the GPU Bats tests of `spattn check`, and the Python
# package's GPU tests and overhead bench.  Logs in $OUT/final, packed into
# $OUT/final.tgz; a summary last.
#
#   bash bench/gpu-final.sh          (carry build/; build/tools holds bats and jq)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-logs}
L="$OUT/final"
mkdir -p "$L"
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels-$(date +%s)} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}
if [ -d build/tools ]; then
    export PATH="$PWD/build/tools/bin:$PWD/build/tools/usr/bin:$PATH" LD_LIBRARY_PATH="$PWD/build/tools/lib"
fi
start=$(date +%s)
for f in "N=1000 " "N=65 " "regress-13"; do
    python3 bench/check_matrix.py run --filter "$f" --out "$L" --jobs 12 >"$L/matrix-${f// /}.txt" 2>&1
done &
if command -v bats >/dev/null && command -v jq >/dev/null; then
    bats tests/bats/check.bats >"$L/bats-check.txt" 2>&1 &
fi
wait
OUT="$L" bash python/tests/run_gpu.sh >"$L/python.txt" 2>&1
{
    echo "== build $(cat build/COMMIT 2>/dev/null), $(( $(date +%s) - start )) s"
    for t in "$L"/matrix-*.txt; do echo "== $(basename "$t" .txt): $(tail -n 1 "$t")"; grep FAILED "$t" | head -n 10; done
    [ -f "$L/bats-check.txt" ] && echo "== bats check.bats: $(grep -c '^ok' "$L/bats-check.txt") ok," \
        "$(grep -c '^not ok' "$L/bats-check.txt") not ok, $(grep -c '# skip' "$L/bats-check.txt") skipped"
    grep '^not ok' "$L/bats-check.txt" 2>/dev/null
    echo "== python"; grep -A 20 '== failures' "$L/python.txt" | head -n 12; grep -A 8 '== summary' "$L/python.txt"
    grep '^|' "$L/python/bench_overhead.md" 2>/dev/null
} | tee "$L/summary.txt"
tar czf "$OUT/final.tgz" -C "$OUT" final 2>/dev/null
