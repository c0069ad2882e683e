#!/usr/bin/env bash
# Session 11, call 6: the forward at (1,16,16,16384,128) is 10-14% slower on PyTorch's
# [B, H, N, D] layout than on [B, N, H, D] (call 5).  Two orders of the persistent forward's
# work items, as libraries built from this tree with kernels/scheduler.cuh changed:
#   build/v1: the dense baseline's L2 sections for band patterns too (K and V of the heads a
#             section runs at once within 32 MB);
#   build/v2: head-major (every query tile of a head, longest first, then the next head);
# against build/ (query tile major: one tile of every head at once), forward only, both
# layouts, three rounds.
source "$(dirname "$0")/probe-lib.sh"
for rep in 1 2 3; do
    for lib in build build/v1 build/v2; do
        echo "== $lib"
        SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $lib) SPATTN_LIB=$PWD/$lib/libspattn.so \
            timeout 100 python3 bench/layout_probe.py --fwd-only 2>&1
    done
done | tee "$OUT/orders.txt"
stamp done
