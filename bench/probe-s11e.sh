#!/usr/bin/env bash
# Session 11, call 5: is the memory layout or the L2 flush the fair harness's gap?  peers.py
# passes PyTorch's [B, H, N, D] tensors (bhnd) and flushes L2 before each call; spattn bench
# passes [B, N, H, D] (bnhd) back to back.  The forward at (1,16,16,16384,128) ran 0.450 ms in
# the harness (S11.3) against 0.391 in spattn bench (call 2).  bench/layout_probe.py: both
# layouts, with and without the flush, forward, forward+backward and deterministic.
source "$(dirname "$0")/probe-lib.sh"
SPATTN_LIB=$PWD/build/libspattn.so timeout 200 python3 bench/layout_probe.py 2>&1 | tee "$OUT/layout.txt"
stamp done
