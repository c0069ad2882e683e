#!/usr/bin/env bash
# Session 8, device call 5: the ws backward's dQ added by TMA tensor reduce-adds (two per
# warp, lane 0) instead of a bulk reduce-add per row from lanes 0..15 (serialized by ptxas).
#   1. a first check per head_dim and mode, then the bwd-ws matrix cases at N >= 4096 and the
#      det-order ones (the full matrix and the sanitizers come with the fair benchmark);
#   2. spattn bench fwdbwd as call 3 (default, --deterministic, the :wgmma tile), d64 :ws;
#   3. python/tests/test_gpu.py.
source "$(dirname "$0")/probe-lib.sh"
for t in "olmoe-1b-7b 64x128:s2:ws" "llama-8h-d64 64x64:s3:ws" "gqa-32q-8kv 64x128:s2:ws"; do
    set -- $t
    FIRST_TIMEOUT=90 first_check build/spattn configs/$1.yaml $2
    FIRST_TIMEOUT=90 first_check build/spattn configs/$1.yaml $2 --deterministic
done
matrix bwd-ws
b1() { local spec=$1; shift; bench_line build/spattn configs/$spec.yaml "$@" --pass fwdbwd; }   # spec batch N extra...
{
for s in "olmoe-1b-7b 1 16384" "olmoe-1b-7b 4 4096" "gqa-32q-8kv 1 16384"; do
    b1 $s; b1 $s --deterministic
done
b1 llama-8h-d64 4 4096; b1 llama-8h-d64 4 4096 --bwd-tile 64x64:s3:ws; b1 llama-8h-d64 4 4096 --bwd-tile 64x64:s2:ws
b1 llama-8h-d64 4 4096 --bwd-tile 64x64:s3:ws --deterministic
} 2>&1 | tee "$OUT/bench.txt"
stamp "bench done"
export SPATTN_LIB=$PWD/build/libspattn.so SPATTN_CLI=$PWD/build/spattn PYTHONPATH=$PWD/python
timeout 120 python3 python/tests/test_gpu.py >"$OUT/test_gpu.txt" 2>&1
stamp "test_gpu rc=$?: $(tail -n 1 "$OUT/test_gpu.txt")"
stamp done
