#!/usr/bin/env bash
# Session 7, device call 3: decoding at the issue's shape (tuned, then
# bench/decode_bench.py timing back-to-back calls), then the training step at
# N = 16384 (issue 17): spattn, Flex tuned and dense SDPA (cuDNN) in one run;
# Flex's max-autotune compile of the forward and backward takes most of it.
# Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s7c}; mkdir -p "$OUT"
T0=$(date +%s); LIMIT=${LIMIT:-580}
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
if [ -z "${NO_DECODE:-}" ]; then
    ./build/spattn tune configs/gqa-32q-8kv.yaml --decode --batch 64 --kv-len 32768 >"$OUT/decode-tune.txt" 2>&1
    ./build/spattn tune configs/olmoe-1b-7b.yaml --decode --batch 64 --kv-len 32768 >>"$OUT/decode-tune.txt" 2>&1
    grep "best" "$OUT/decode-tune.txt"
    timeout 120 python3 bench/decode_bench.py --measure-copy --json "$OUT/decode.jsonl" >"$OUT/decode.txt" 2>&1
    echo "== [$(( $(date +%s) - T0 ))s] decode rc=$?"; cat "$OUT/decode.txt"
fi
timeout $((LIMIT - 10 - ($(date +%s) - T0))) python3 bench/train_step.py --seq-lens 16384 --steps 10 ${TRAIN_ARGS:-} --out "$OUT/train_step.md" \
    >"$OUT/train_step.txt" 2>"$OUT/train_step.err"
echo "== [$(( $(date +%s) - T0 ))s] train_step rc=$?"
cat "$OUT/train_step.txt"
grep -v "triton_\|AUTOTUNE\|^  \|Warning\|warn" "$OUT/train_step.err" | tail -n 20
