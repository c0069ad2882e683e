#!/usr/bin/env bash
# Session 11, call 8: under ncu both layouts run the forward at (1,16,16,16384,128) in 396 us
# (call 7); back to back [B, H, N, D] takes 8.6% longer (S11.4).  Is the host the gap?
# layout_probe.py --fwd-only with the host's enqueue time per call, three rounds.
source "$(dirname "$0")/probe-lib.sh"
for rep in 1 2 3; do
    SPATTN_LIB=$PWD/build/libspattn.so timeout 60 python3 bench/layout_probe.py --fwd-only 2>&1
done | tee "$OUT/host.txt"
stamp done
