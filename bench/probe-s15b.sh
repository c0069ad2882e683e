#!/usr/bin/env bash
# Session 15, call 1: the convert-fold kernels (build/spattn: the persistent backward converts dQ
# itself) and convert-fold with the default mode head by head (build/hm: branch
# default-headmajor on top), against main's build in build/old.  First checks of both modes
# (d128, d64 at both stage counts, exclusive bands: query tiles no add reaches; GQA at odd N),
# cuBLAS-referenced checks with many items per block, then the A/B of forward+backward (the
# bench before the checks so that a slower branch costs no check time), then the bwd-ws matrix,
# regressions and the four sanitizers of build/spattn with the time left.
# Run (call 1, 2026-12-01) from branch convert-fold-s15 (convert-fold rebased onto main, commit
# e190316); main keeps the script as the record of that call.  Result: RESULTS.md S15.1.
source "$(dirname "$0")/probe-lib.sh"
for bin in build/spattn build/hm/spattn; do
    for spec_tile in "configs/olmoe-1b-7b.yaml 64x128:s2:ws" "configs/llama-8h-d64.yaml 64x64:s3:ws" \
                     "configs/llama-8h-d64.yaml 64x64:s2:ws" "configs/exclusive-16h.yaml 64x128:s2:ws"; do
        FIRST_TIMEOUT=40 first_check $bin $spec_tile
        FIRST_TIMEOUT=40 first_check $bin $spec_tile --deterministic
    done
    FIRST_TIMEOUT=40 first_check $bin configs/gqa-32q-8kv.yaml 64x128:s2:ws --seq-len 1025
done
for args in "configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384" "configs/llama-8h-d64.yaml --batch 2 --seq-len 4095" \
            "configs/exclusive-16h.yaml --batch 2 --seq-len 4096"; do
    for mode in "" --deterministic; do
        for bin in build/spattn build/hm/spattn; do
            SPATTN_CACHE_DIR=$(cache_for $bin) timeout 60 $bin check $args --pass bwd $mode --reference gpu >"$OUT/big.txt" 2>&1
            stamp "big $bin $args $mode rc=$?: $(grep -E '^ *d[QKV] |repeat|FAIL|rror' "$OUT/big.txt" | tr -s ' ' | tr '\n' ' ')"
        done
    done
done
{
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
        [ $rep = 1 ] && bench_line build/spattn $shape --pass fwd
        for bin in build/old/spattn build/spattn build/hm/spattn; do
            [ "$(left)" -gt 250 ] || break 3
            bench_line $bin $shape --pass fwdbwd
            [ "$shape" = "configs/olmoe-1b-7b.yaml 1 16384" ] && bench_line $bin $shape --pass fwdbwd --deterministic
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp "bench done"
checks bwd-ws $(( $(left) - 10 ))
stamp done
