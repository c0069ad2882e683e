#!/usr/bin/env bash
# Session 15, call 4 (timing only; the variants' dQ is wrong by design): is the d128 default
# backward held by its dQ writer?  Variants of main's kernels (build/old = main), built in
# worktrees by one-line edits of bwd_ws_writer: w0 frees the staging buffer as soon as its adds
# are issued (no cp.async.bulk.wait_group.read: what a second buffer would buy at most); w1 adds
# two of the tile's four boxes (half the L2 reduce traffic).
source "$(dirname "$0")/probe-lib.sh"
for rep in 1 2; do
    for bin in build/old/spattn build/w0/spattn build/w1/spattn; do
        [ "$(left)" -gt 8 ] || break 2
        bench_line $bin configs/olmoe-1b-7b.yaml 1 16384 --pass fwdbwd
    done
done 2>&1 | tee "$OUT/bench.txt"
for bin in build/old/spattn build/w0/spattn build/w1/spattn; do
    [ "$(left)" -gt 8 ] || break
    bench_line $bin configs/olmoe-1b-7b.yaml 4 4096 --pass fwdbwd
done 2>&1 | tee -a "$OUT/bench.txt"
stamp done
