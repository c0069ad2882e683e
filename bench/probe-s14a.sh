#!/usr/bin/env bash
# Session 14, call 2: the deterministic ws backward
# persistent too, in build/spattn, against main's build in build/old: first checks under short
# timeouts (a deadlock in the turns shows here: both orders, d128 descending and d64 ascending,
# GQA, many items per block), the bwd-ws matrix (bwd-ws and bwd-ws-det, with the det-order
# cases' bitwise repeats) and regressions beside the four sanitizers of bwd-ws (persistent cases
# in both modes), then spattn bench --pass fwdbwd --deterministic at the four shapes, interleaved.
source "$(dirname "$0")/probe-lib.sh"
for spec_tile in "configs/olmoe-1b-7b.yaml 64x128:s2:ws" "configs/llama-8h-d64.yaml 64x64:s3:ws" "configs/llama-8h-d64.yaml 64x64:s2:ws" "configs/gqa-32q-8kv.yaml 64x128:s2:ws"; do
    FIRST_TIMEOUT=40 first_check build/spattn $spec_tile --deterministic
done
for args in "configs/olmoe-1b-7b.yaml --batch 2 --seq-len 4096" "configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384" \
            "configs/llama-8h-d64.yaml --batch 2 --seq-len 4095" "configs/exclusive-16h.yaml --batch 1 --seq-len 4096"; do
    timeout 60 build/spattn check $args --pass bwd --deterministic --reference gpu >"$OUT/big.txt" 2>&1
    stamp "big $args rc=$?: $(grep -E '^ *d[QKV] |repeat|FAIL|rror' "$OUT/big.txt" | tr -s ' ' | tr '\n' ' ')"
done
checks bwd-ws 270
{
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
        for bin in build/old/spattn build/spattn; do
            [ "$(left)" -gt 10 ] || break 3
            bench_line $bin $shape --pass fwdbwd --deterministic
            bench_line $bin $shape --pass fwdbwd
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
