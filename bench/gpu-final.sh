#!/usr/bin/env bash
# A short device call for a build whose kernels were already checked in full
# (their machine code unchanged, tests/sass_same.sh): every kernel family
# through the check matrix at N = 1000, the issue-13 regressions, the GPU
# Bats tests of `spattn check`, the Python package's GPU tests, then the
# training step at N = 16384 in whatever time is left ($LIMIT seconds in
# all).  Logs in $OUT/final, packed into $OUT/final.tgz; a summary last.
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
LIMIT=${LIMIT:-240}
start=$(date +%s)
left() { echo $((LIMIT - ($(date +%s) - start))); }
for f in "N=1000 " "regress-13"; do
    timeout 110 python3 bench/check_matrix.py run --filter "$f" --out "$L" --jobs 12 >"$L/matrix-${f// /}.txt" 2>&1
done &
if command -v bats >/dev/null && command -v jq >/dev/null; then
    timeout 110 bats tests/bats/check.bats >"$L/bats-check.txt" 2>&1 &
fi
{   # the tuner and the layer pipeline, now in the library (runtime/tune.c, runtime/layer.c)
    timeout 100 ./build/spattn tune configs/olmoe-1b-7b.yaml --kind all --batch 1 --seq-len 2048 --json \
        >"$L/tune.json" 2>"$L/tune.log"; echo "tune olmoe --kind all N=2048: exit $?" >"$L/lib.txt"
    grep -E "best|saved" "$L/tune.log" >>"$L/lib.txt"
    timeout 60 ./build/spattn run configs/olmoe-1b-7b.yaml --layer --batch 1 --seq-len 512 --check \
        >"$L/layer.txt" 2>&1; echo "run --layer --check N=512: exit $?" >>"$L/lib.txt"
} &
wait
export SPATTN_LIB=$PWD/build/libspattn.so SPATTN_CLI=$PWD/build/spattn PYTHONPATH=$PWD/python
timeout 70 python3 python/tests/test_gpu.py >"$L/test_gpu.out" 2>"$L/test_gpu.log"
echo "test_gpu.py: $(tail -n 1 "$L/test_gpu.out")" >"$L/python.txt"
grep -E '^(FAIL|ERROR):' "$L/test_gpu.log" | head -n 10 >>"$L/python.txt"
t=$(left)
if [ "$t" -gt 60 ]; then
    timeout "$t" python3 bench/train_step.py --seq-lens 16384 --steps 5 --out "$L/train_step.md" \
        >"$L/train_step.txt" 2>"$L/train_step.log"
fi
{
    echo "== build $(cat build/COMMIT 2>/dev/null), $(( $(date +%s) - start )) s"
    for t in "$L"/matrix-*.txt; do echo "== $(basename "$t" .txt): $(tail -n 1 "$t")"; grep FAILED "$t" | head -n 10; done
    [ -f "$L/bats-check.txt" ] && echo "== bats check.bats: $(grep -c '^ok' "$L/bats-check.txt") ok," \
        "$(grep -c '^not ok' "$L/bats-check.txt") not ok, $(grep -c '# skip' "$L/bats-check.txt") skipped"
    grep '^not ok' "$L/bats-check.txt" 2>/dev/null
    echo "== library tuner and layer"; cat "$L/lib.txt"
    echo "== python"; cat "$L/python.txt"
    echo "== train_step (N = 16384)"; cat "$L/train_step.md" 2>/dev/null || tail -n 5 "$L/train_step.log" 2>/dev/null
} | tee "$L/summary.txt"
tar czf "$OUT/final.tgz" -C "$OUT" final 2>/dev/null
