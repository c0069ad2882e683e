#!/usr/bin/env bash
# Session 13, call 2: the persistent ws backward (default mode on a uniform batch: a block per
# SM slot, KV tiles taken from a counter, the next K and V loaded while dK and dV are written)
# in build/spattn, against build/pdl (3a008ca: the warpgroup skip and the dependent launches)
# and build/old (784dc94): first checks under short timeouts (N = 1000, both modes), checks
# with many items per block (N = 4096 and 16384, the cuBLAS reference), the bwd-ws matrix and
# regressions beside the four sanitizers of bwd-ws (now with two persistent cases), then
# spattn bench --pass fwdbwd at the four shapes, the three builds interleaved.
source "$(dirname "$0")/probe-lib.sh"
for mode in "" --deterministic; do
    FIRST_TIMEOUT=40 first_check build/spattn configs/olmoe-1b-7b.yaml 64x128:s2:ws $mode
    FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s3:ws $mode
    FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s2:ws $mode
done
big() {
    timeout 60 build/spattn check "$@" --pass bwd --reference gpu >"$OUT/big.txt" 2>&1
    stamp "big $* rc=$?: $(grep -E '^ *d[QKV] |FAIL|rror' "$OUT/big.txt" | tr -s ' ' | tr '\n' ' ')"
}
big configs/olmoe-1b-7b.yaml --batch 2 --seq-len 4096
big configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384
big configs/llama-8h-d64.yaml --batch 2 --seq-len 4096 --tile 64x64:s3:ws
big configs/llama-8h-d64.yaml --batch 2 --seq-len 4095 --tile 64x64:s2:ws
big configs/gqa-32q-8kv.yaml --batch 1 --seq-len 4097
big configs/exclusive-16h.yaml --batch 1 --seq-len 4096
big configs/olmoe-1b-7b.yaml --batch 3 --seq-len 2000 --pattern dense
checks bwd-ws 270
ab_fwdbwd build/old/spattn build/pdl/spattn build/spattn
stamp done
