#!/usr/bin/env bash
# Session 7, device call 3: the training step at N = 16384 (issue 17): spattn,
# Flex tuned and dense SDPA (cuDNN) in one run; Flex's max-autotune compile
# of the forward and backward takes most of the call.  Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s7c}; mkdir -p "$OUT"
T0=$(date +%s); LIMIT=${LIMIT:-580}
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
timeout $((LIMIT - 10)) python3 bench/train_step.py --seq-lens 16384 --steps 10 ${TRAIN_ARGS:-} --out "$OUT/train_step.md" \
    >"$OUT/train_step.txt" 2>"$OUT/train_step.err"
echo "== [$(( $(date +%s) - T0 ))s] train_step rc=$?"
cat "$OUT/train_step.txt"
grep -v "triton_\|AUTOTUNE\|^  \|Warning\|warn" "$OUT/train_step.err" | tail -n 20
