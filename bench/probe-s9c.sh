#!/usr/bin/env bash
# Session 9, call 3:
#   1. the d64 backward at two blocks per SM (commit 889f4c5): bwd-ws matrix (with packed and
#      deterministic-order cases), issue-13 regressions, the four sanitizers on bwd-ws;
#   2. an experiment (build/c2/spattn, not committed): the d64 forward at two blocks per SM
#      (consumers at 112 registers, so BN 64; persistent grid 2 x SMs), checked, then timed
#      against main's forward.
source "$(dirname "$0")/probe-lib.sh"
BENCH_ITERS=200
sanitize_bg bwd-ws 200
matrix bwd-ws regress
wait
sanitize_report
pack_checks s m-bwd-ws m-regress
for t in 128x64:s2:ws 128x64:s3:ws; do
    for a in "--seq-len 1000 --batch 2" "--seq-len 4096 --batch 4"; do
        SPATTN_CACHE_DIR=$(cache_for build/c2/spattn) timeout 60 build/c2/spattn check configs/llama-8h-d64.yaml --pass fwd --tile $t $a >"$OUT/first.txt" 2>&1
        stamp "c2 fwd check $t $a rc=$?: $(grep -E '^ *O |FAIL|rror' "$OUT/first.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
    done
done
{
for rep in 1 2; do
    bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd
    bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile 128x64:s2:ws
    bench_line build/c2/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile 128x64:s2:ws
    bench_line build/c2/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile 128x64:s3:ws
    bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd
    bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --deterministic
    bench_line build/c2/spattn configs/llama-8h-d64.yaml 1 16384 --pass fwd --tile 128x64:s2:ws
    bench_line build/spattn configs/llama-8h-d64.yaml 1 16384 --pass fwd
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
