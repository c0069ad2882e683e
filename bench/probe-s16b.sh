#!/usr/bin/env bash
# Session 16, call 2: the default backward at d128 head by head (WS_HEAD_MAJOR, build/spattn)
# against main before it (build/old).  First checks (d128 band, exclusive bands whose first
# query tiles no add reaches, GQA at odd N, d64 whose order is unchanged), cuBLAS-referenced
# checks with many items per block, the bwd-ws matrix, regressions and the four sanitizers,
# then interleaved forward+backward timings with the time left.
source "$(dirname "$0")/probe-lib.sh"
for spec_tile in "configs/olmoe-1b-7b.yaml 64x128:s2:ws" "configs/exclusive-16h.yaml 64x128:s2:ws" \
                 "configs/llama-8h-d64.yaml 64x64:s3:ws"; do
    FIRST_TIMEOUT=40 first_check build/spattn $spec_tile
done
FIRST_TIMEOUT=40 first_check build/spattn configs/gqa-32q-8kv.yaml 64x128:s2:ws --seq-len 1025
for args in "configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384" "configs/exclusive-16h.yaml --batch 2 --seq-len 4096" \
            "configs/gqa-32q-8kv.yaml --batch 1 --seq-len 8191"; do
    timeout 60 build/spattn check $args --pass bwd --reference gpu >"$OUT/big.txt" 2>&1
    stamp "big $args rc=$?: $(grep -E '^ *d[QKV] |repeat|FAIL|rror' "$OUT/big.txt" | tr -s ' ' | tr '\n' ' ')"
done
checks bwd-ws 250
for rep in 1 2 3; do
    for bin in build/old/spattn build/spattn; do
        [ "$(left)" -gt 10 ] || break 2
        bench_line $bin configs/olmoe-1b-7b.yaml 1 16384 --pass fwdbwd
    done
done 2>&1 | tee -a "$OUT/bench.txt"
stamp done
