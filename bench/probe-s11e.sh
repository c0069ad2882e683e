#!/usr/bin/env bash
# Session 11, call 5: is the memory layout the fair harness's gap?  peers.py passes PyTorch's
# [B, H, N, D] tensors (bhnd); spattn bench defaults to [B, N, H, D] (bnhd).  The forward at
# (1,16,16,16384,128) ran 0.450 ms in the harness (S11.3) against 0.391 in spattn bench (call 2).
# spattn bench --pass fwd and fwdbwd in both layouts, interleaved, two rounds.
source "$(dirname "$0")/probe-lib.sh"
{
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/gqa-32q-8kv.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096"; do
        for pass in fwd fwdbwd; do
            for layout in bnhd bhnd; do
                [ "$(left)" -gt 10 ] || break 4
                bench_line build/spattn $shape --pass $pass --layout $layout
            done
        done
    done
    bench_line build/spattn configs/gqa-32q-8kv.yaml 1 16384 --pass fwdbwd --layout bhnd --deterministic
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
