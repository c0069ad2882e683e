#!/usr/bin/env bash
# Session 8, device call 4: where the warps of the backward main kernels stall (ncu's source
# page: warp-state samples per SASS instruction), the ws kernel (default) and the wgmma one,
# at (1,16,16,16384,128); and the stall reasons as raw metrics (bench/probe-ncu.sh).
for v in ws wgmma; do
    bash "$(dirname "$0")/probe-ncu.sh" "$v" bwd_main 1 configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 \
        --pass fwdbwd --iters 2 --bwd-tile 64x128:s2:$v
done
