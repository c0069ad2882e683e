#!/usr/bin/env bash
# Session 11, call 1: the ws backward's deterministic mode in the mirror order (KV tiles
# ascending, each head's query tiles from the last, blocks longest first) and one proxy fence
# for the staged dQ and dS^T, in build/spattn, against build/old (1cd28b9): first checks under
# short timeouts (a deadlock in the turns shows here), every backward family of the matrix and
# the regressions with the four sanitizers of every backward family beside them, then
# spattn bench --pass fwdbwd at the four shapes, default and --deterministic (and d64 at
# 64x64:s2:ws), interleaved, and --pass fwd once per shape (the backward alone = the difference).
source "$(dirname "$0")/probe-lib.sh"
for spec in configs/olmoe-1b-7b.yaml configs/llama-8h-d64.yaml configs/gqa-32q-8kv.yaml; do
    for t in 64x128:s2:ws 64x64:s2:ws 64x64:s3:ws; do
        case $spec:$t in *d64*:64x128*|*olmoe*:64x64*|*gqa*:64x64*) continue;; esac
        FIRST_TIMEOUT=40 first_check build/spattn $spec $t --deterministic
        FIRST_TIMEOUT=40 first_check build/spattn $spec $t
    done
done
checks bwd 280
{
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
        [ $rep = 1 ] && bench_line build/spattn $shape --pass fwd
        for mode in "" --deterministic; do
            for bin in build/old/spattn build/spattn; do
                [ "$(left)" -gt 10 ] || break 4
                bench_line $bin $shape --pass fwdbwd $mode
            done
        done
    done
    for bin in build/old/spattn build/spattn; do
        [ "$(left)" -gt 10 ] || break 2
        bench_line $bin configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --bwd-tile 64x64:s2:ws --deterministic
        bench_line $bin configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --bwd-tile 64x64:s2:ws
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
