#!/usr/bin/env bash
# Session 9, call 2:
#   1. issue 17's training step at N = 4096 and 16384 in one run (the Flex block mask now in
#      closed form: bench/peers.py's band_block_mask);
#   2. the d64 backward with two CTAs per SM (build/c2/spattn: __launch_bounds__(THREADS, 2),
#      consumers at 232 registers) against main's one, default and deterministic;
#   3. forward tiles at d64 and dense d128 (issue 15's missing targets), spattn bench --pass fwd.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s9b}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null)"
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
timeout ${TRAIN_LIMIT:-330} python3 bench/train_step.py --seq-lens 4096,16384 --steps 30 --out "$OUT/train_step.md" >"$OUT/train_step.log" 2>&1
stamp "train_step rc=$?"
cat "$OUT/train_step.md" 2>/dev/null || tail -n 20 "$OUT/train_step.log"
b1() {   # binary spec batch N extra...
    local bin=$1 spec=$2 B=$3 N=$4; shift 4
    r=$(SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $(dirname $bin)) timeout 60 $bin bench "$spec" --batch "$B" --seq-len "$N" --iters 100 --json "$@" 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %s" % (d["spattn_ms"], d.get("kernel","")))' 2>/dev/null)
    echo "bench $bin $(basename $spec) B=$B N=$N $*: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}
for det in "" --deterministic; do
    SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-c2 timeout 60 build/c2/spattn check configs/llama-8h-d64.yaml --pass bwd --batch 2 --seq-len 1000 $det >"$OUT/first.txt" 2>&1
    stamp "first c2 d64 $det rc=$?: $(grep -E 'dQ|FAIL|rror' "$OUT/first.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
done
printf 'name: dense-16h\nheads: 16\nhead_dim: 128\npattern: dense\n' >/tmp/dense-16h.yaml
{
for rep in 1 2; do
    for bin in build/spattn build/c2/spattn; do
        b1 $bin configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd
        b1 $bin configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --deterministic
    done
    for t in 128x128:s2:ws 128x128:s3:ws 192x128:s2:ws 128x96:s2:ws 128x176:s2:ws 192x64:s2:ws 192x96:s2:ws; do
        b1 build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile $t
    done
    for s in "4 4096" "1 16384"; do
        for t in 128x128:s2:ws 128x176:s2:ws 192x128:s2:ws 128x128:s3:ws 192x96:s2:ws 128x96:s2:ws; do
            b1 build/spattn /tmp/dense-16h.yaml $s --pass fwd --tile $t
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
