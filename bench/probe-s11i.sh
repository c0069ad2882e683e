#!/usr/bin/env bash
# Session 11, call 9: the forward at (1,16,16,16384,128) back to back for 6 s in each layout,
# with nvidia-smi sampling the SM clock, the memory clock and the power every 100 ms: is the
# [B, H, N, D] layout's gap in sequence (S11.4; none under ncu, call 7) the sustained clock?
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so
timeout 60 python3 bench/layout_probe.py --only 0 bnhd >/dev/null 2>&1   # compile first
for rep in 1 2; do
    for layout in bnhd bhnd; do
        nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader,nounits -lms 100 \
            >"$OUT/smi-$layout-$rep.csv" &
        smi=$!
        timeout 30 python3 bench/layout_probe.py --only 0 $layout --seconds 6 >/dev/null 2>&1
        kill $smi
        sort -n "$OUT/smi-$layout-$rep.csv" | awk -F, -v l=$layout '$3 > 200 {n++; c+=$1; m+=$2; p+=$3; t=$4} END {if (n) printf "%s: %d samples, SM %.0f MHz, mem %.0f MHz, %.0f W, %d C\n", l, n, c/n, m/n, p/n, t}'
    done
done | tee "$OUT/clocks.txt"
stamp done
