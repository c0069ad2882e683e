#!/usr/bin/env bash
# Session 15, call 2: where convert-fold's time goes (call 1: +0.43 ms at (1,16,16,16384,128), both
# modes).  Timing variants of build/spattn (wrong dQ, timing only): v1 the converter pops its
# entries and converts nothing; v2 the writers neither count nor push (the converter idles);
# v4 v2 and pre writes no zero rows.  Against main's build (build/old).
# Run (call 2) with the variants built from branch convert-fold-s15 (commit 8c85443) in worktrees
# (v1, v2, v4: the edits above, made by hand there).  Result: RESULTS.md S15.1.
source "$(dirname "$0")/probe-lib.sh"
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/llama-8h-d64.yaml 4 4096"; do
        for bin in build/old/spattn build/spattn build/v1/spattn build/v2/spattn build/v4/spattn; do
            bench_line $bin $shape --pass fwdbwd
            bench_line $bin $shape --pass fwdbwd --deterministic
        done
    done
done 2>&1 | tee "$OUT/bench.txt"
stamp done
