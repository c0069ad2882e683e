#!/usr/bin/env bash
# Session 13, call 1: the ws backward's warpgroup skip (a consumer warpgroup with no allowed
# pair in the step skips its products) and programmatic dependent launches of main and convert,
# in build/spattn (3a008ca), against build/skip (23393a0: the skip alone) and build/old
# (784dc94): first checks under short timeouts (band, dense, d64, GQA at odd N, packed
# sequences with empty query tiles, both modes), the bwd-ws matrix (bwd-ws and bwd-ws-det) and
# the regressions beside the four sanitizers of bwd-ws, then spattn bench --pass fwdbwd at the
# four shapes, the three builds interleaved, and --pass fwd once (the backward = the difference).
source "$(dirname "$0")/probe-lib.sh"
for mode in "" --deterministic; do
    FIRST_TIMEOUT=40 first_check build/spattn configs/olmoe-1b-7b.yaml 64x128:s2:ws $mode
    FIRST_TIMEOUT=40 first_check build/spattn configs/olmoe-1b-7b.yaml 64x128:s2:ws --pattern dense $mode
    FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s3:ws $mode
    FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s2:ws $mode
    FIRST_BATCH=1 FIRST_TIMEOUT=40 first_check build/spattn configs/gqa-32q-8kv.yaml 64x128:s2:ws --seq-len 1025 $mode
done
for mode in "" --deterministic; do
    timeout 40 build/spattn check configs/exclusive-16h.yaml --pass bwd --bwd-tile 64x128:s2:ws --seq-lens 129,64,63,700,1 $mode \
        >"$OUT/first-packed.txt" 2>&1
    stamp "first packed exclusive $mode rc=$?: $(grep -E 'dQ|FAIL|rror' "$OUT/first-packed.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
done
checks bwd-ws 250
ab_fwdbwd build/old/spattn build/skip/spattn build/spattn
stamp done
