#!/usr/bin/env bash
# Session 10, call 4: the backward's tile kind without branches (and, if merged, branch det2:
# two dQ buffers and two writers at d64 s2) in build/spattn, against build/old (00c27b1):
# first checks under short timeouts, every backward family of the matrix and the regressions
# with the four sanitizers of every backward family beside them, then spattn bench --pass
# fwdbwd at the four shapes (and d64 deterministic at 64x64:s2:ws and :s3:ws), interleaved.
source "$(dirname "$0")/probe-lib.sh"
for spec in configs/olmoe-1b-7b.yaml configs/llama-8h-d64.yaml; do
    for t in 64x128:s2:ws 64x64:s2:ws 64x64:s3:ws 64x128:s2:wgmma; do
        case $spec:$t in *d64*:64x128*|*olmoe*:64x64*) continue;; esac
        FIRST_TIMEOUT=40 first_check build/spattn $spec $t
        FIRST_TIMEOUT=40 first_check build/spattn $spec $t --deterministic
    done
done
checks bwd 280
{
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
        for bin in build/old/spattn build/spattn; do
            [ "$(left)" -gt 10 ] || break 3
            bench_line $bin $shape --pass fwdbwd
        done
    done
    for t in 64x64:s3:ws 64x64:s2:ws; do
        for bin in build/old/spattn build/spattn; do
            [ "$(left)" -gt 10 ] || break 3
            bench_line $bin configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --bwd-tile $t --deterministic
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
