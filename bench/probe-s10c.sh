#!/usr/bin/env bash
# Session 10, call 3: the merged backward (warpgroups out of lock step, dq_full per warp, the
# tile-major order): the bwd-ws matrix and regressions with the four sanitizers beside them,
# ncu of the backward at N = 16384 and of the dense forward (source pages kept in ncu.tgz),
# and the deterministic d64 backward at 64x64:s2:ws against :s3:ws (for branch det2).
source "$(dirname "$0")/probe-lib.sh"
checks bwd-ws 210
{
for rep in 1 2; do
    for t in 64x64:s3:ws 64x64:s2:ws; do
        bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --bwd-tile $t
        bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --bwd-tile $t --deterministic
    done
done
} 2>&1 | tee "$OUT/bench.txt"
R=$OUT
OUT=$R/ncu bash bench/probe-ncu.sh bwd16k bwd_main 1 configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --iters 2 | head -n 40
printf 'name: dense-16h\nheads: 16\nhead_dim: 128\npattern: dense\n' >/tmp/dense-16h.yaml
OUT=$R/ncu bash bench/probe-ncu.sh dense16k spattn_fwd 1 /tmp/dense-16h.yaml --batch 1 --seq-len 16384 --pass fwd --iters 2 | head -n 5
(cd "$R" && tar czf ncu.tgz ncu && rm -rf ncu)
stamp done
