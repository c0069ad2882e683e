#!/usr/bin/env bash
# Session 10, call 1 (branch d64-bn128's build): bench/probe-bn128.sh (the d64 BN 128 backward:
# first checks, the bwd-ws matrix and regressions, the sanitizers, the d64 tiles' times), then
# ncu of the d128 backward at N = 16384 (its machine code is main's) and, if time is left, of
# the dense forward at N = 16384 (bench/NOTES-bwd.md and NOTES-fwd-ws.md, "Next").
set -u
cd "$(dirname "$0")/.."
ROOT_OUT=${OUT:-/tmp/probe-s10a}; T0=$(date +%s)
OUT=$ROOT_OUT/bn128 LIMIT=400 bash bench/probe-bn128.sh
echo "== [$(( $(date +%s) - T0 ))s] bn128 done"
OUT=$ROOT_OUT/ncu bash bench/probe-ncu.sh bwd16k bwd_main 1 configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --iters 2
echo "== [$(( $(date +%s) - T0 ))s] ncu bwd done"
if [ $(( $(date +%s) - T0 )) -lt 480 ]; then
    printf 'name: dense-16h\nheads: 16\nhead_dim: 128\npattern: dense\n' >/tmp/dense-16h.yaml
    OUT=$ROOT_OUT/ncu bash bench/probe-ncu.sh dense16k spattn_fwd 1 /tmp/dense-16h.yaml --batch 1 --seq-len 16384 --pass fwd --iters 2
fi
echo "== [$(( $(date +%s) - T0 ))s] all done"
