#!/usr/bin/env bash
# A short re-check of the final session-3 build on the GPU host: backward
# checks over the edge cases (d128 and the new d64 default), then
# forward+backward time at two shapes.
set -uo pipefail
cd "$(dirname "$0")/.."
S=./build/spattn fails=0
export SPATTN_CACHE_DIR=/tmp/spk
echo "build: $(cat build/COMMIT)"
while read -r cfg args; do
  if out=$($S check "$cfg" --pass bwd $args 2>&1); then r=PASS; else r=FAIL; fails=$((fails+1)); fi
  echo "$r $cfg $args: $(echo "$out" | grep -oE 'spattn_bwd_main_[a-z0-9_]+' | head -1) $(echo "$out" | grep -E '^  (dQ|dK|dV|repeat) ' | awk '{printf "%s %s ", $1, $2}')"
done <<'LIST'
configs/olmoe-1b-7b.yaml --batch 1 --seq-len 113
configs/olmoe-1b-7b.yaml --batch 1 --seq-len 1000 --dtype fp16
configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --reference gpu
configs/olmoe-1b-7b.yaml --batch 1 --seq-len 600 --pattern exclusive
configs/gqa-32q-8kv.yaml --batch 1 --seq-len 513 --deterministic --dtype fp16
configs/llama-8h-d64.yaml --batch 1 --seq-len 1001 --dtype fp16
configs/llama-8h-d64.yaml --batch 1 --seq-len 5 --pattern exclusive
configs/llama-8h-d64.yaml --batch 4 --seq-len 4096 --reference gpu
LIST
echo "checks: $fails failed"
for a in "olmoe-1b-7b.yaml --batch 1 --seq-len 16384" "llama-8h-d64.yaml --batch 4 --seq-len 4096"; do
  $S run configs/$a --pass fwdbwd --no-dense --iters 30 2>&1 | grep -E "^kernel|^time"
done
