#!/usr/bin/env bash
# Session 9, call 2:
#   1. issue 17's training step at N = 4096 and 16384 in one run (the Flex block mask now in
#      closed form: bench/peers.py's band_block_mask);
#   2. the d64 backward with two CTAs per SM (build/c2/spattn: __launch_bounds__(THREADS, 2),
#      consumers at 232 registers) against main's one, default and deterministic;
#   3. forward tiles at d64 and dense d128 (issue 15's missing targets), spattn bench --pass fwd.
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
timeout ${TRAIN_LIMIT:-330} python3 bench/train_step.py --seq-lens 4096,16384 --steps 30 --out "$OUT/train_step.md" >"$OUT/train_step.log" 2>&1
stamp "train_step rc=$?"
cat "$OUT/train_step.md" 2>/dev/null || tail -n 20 "$OUT/train_step.log"
first_check build/c2/spattn configs/llama-8h-d64.yaml 64x64:s3:ws
first_check build/c2/spattn configs/llama-8h-d64.yaml 64x64:s3:ws --deterministic
printf 'name: dense-16h\nheads: 16\nhead_dim: 128\npattern: dense\n' >/tmp/dense-16h.yaml
{
for rep in 1 2; do
    for bin in build/spattn build/c2/spattn; do
        bench_line $bin configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd
        bench_line $bin configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --deterministic
    done
    for t in 128x128:s2:ws 128x128:s3:ws 192x128:s2:ws 128x96:s2:ws 128x176:s2:ws 192x64:s2:ws 192x96:s2:ws; do
        bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile $t
    done
    for s in "4 4096" "1 16384"; do
        for t in 128x128:s2:ws 128x176:s2:ws 192x128:s2:ws 128x128:s3:ws 192x96:s2:ws 128x96:s2:ws; do
            bench_line build/spattn /tmp/dense-16h.yaml $s --pass fwd --tile $t
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
