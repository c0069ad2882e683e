#!/usr/bin/env bash
# The head_dim-64 wgmma backward (64x64:s3:wgmma) over the d64 edge cases of
# gpu-suite.sh's check list, and one compute-sanitizer pass: the evidence for
# making it the d64 default on sm_90.
set -uo pipefail
cd "$(dirname "$0")/.."
S=./build/spattn T=64x64:s3:wgmma fails=0
export SPATTN_CACHE_DIR=/tmp/spk
while read -r cfg args; do
  if $S check "$cfg" --pass bwd --tile $T $args >"${OUT:-/tmp}/c.log" 2>&1; then r=PASS; else r=FAIL; fails=$((fails+1)); fi
  echo "$r $cfg $args: $(grep -E '^  (dQ|dK|dV) ' "${OUT:-/tmp}/c.log" | awk '{printf "%s %s ", $1, $2}')"
done <<'LIST'
configs/llama-8h-d64.yaml --batch 2 --seq-len 1024
configs/llama-8h-d64.yaml --batch 1 --seq-len 1001 --dtype fp16
configs/llama-8h-d64.yaml --batch 4 --seq-len 4096 --reference gpu
configs/llama-8h-d64.yaml --batch 1 --seq-len 333 --pattern exclusive --dtype fp16
configs/llama-8h-d64.yaml --batch 1 --seq-len 5 --pattern exclusive
configs/llama-8h-d64.yaml --batch 1 --seq-len 1 
configs/llama-8h-d64.yaml --batch 1 --seq-len 777 --layout bhnd
configs/custom-4h.yaml --batch 2 --seq-len 300
LIST
compute-sanitizer --tool memcheck --error-exitcode 9 $S check configs/llama-8h-d64.yaml --batch 1 --seq-len 300 --pass bwd --tile $T 2>&1 | grep -E "ERROR SUMMARY|^PASS|^FAIL"
echo "d64 wgmma checks: $fails failed"
