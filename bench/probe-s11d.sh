#!/usr/bin/env bash
# Session 11, call 4: why the fair harness measures the deterministic GQA backward at 1.17x of
# the default (S11.3) while spattn bench measures 1.07x: bench/peers.py with spattn alone
# (--peers none: forward+backward by the fair harness, L2 flushed, PyTorch's [B, H, N, D]
# tensors) on (1,32,8,16384,128) and (4,16,16,4096,128), the final build against build/asc
# (the same with the ascending deterministic order at head_dim 128 too), two rounds.
source "$(dirname "$0")/probe-lib.sh"
export PYTHONPATH=$PWD/python
for rep in 1 2; do
    for lib in build build/asc; do
        SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $lib) SPATTN_LIB=$PWD/$lib/libspattn.so SPATTN_CLI=$PWD/$lib/spattn \
            timeout 120 python3 bench/peers.py --peers none --shapes 3,0 --out "$OUT/peers-$(basename $lib)-$rep.md" \
            2>"$OUT/peers-$(basename $lib)-$rep.log"
        stamp "$lib round $rep rc=$?"
        grep fwd "$OUT/peers-$(basename $lib)-$rep.md"
    done
done
stamp done
