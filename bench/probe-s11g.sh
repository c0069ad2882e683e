#!/usr/bin/env bash
# Session 11, call 7: the forward at (1,16,16,16384,128) in both layouts under ncu's memory
# metrics (launch 5 of 8, bench/layout_probe.py --only 0 LAYOUT): what makes [B, H, N, D] 8.6%
# slower (S11.4).
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
M=$M,lts__t_sectors.sum,lts__t_sector_hit_rate.pct,lts__throughput.avg.pct_of_peak_sustained_elapsed
M=$M,lts__t_sectors_lookup_miss.sum,sm__throughput.avg.pct_of_peak_sustained_elapsed
timeout 60 python3 bench/layout_probe.py --only 0 bnhd >/dev/null 2>&1   # compile first
for layout in bnhd bhnd; do
    timeout 120 ncu --clock-control none -k "regex:spattn_fwd" --launch-skip 4 --launch-count 1 --metrics "$M" \
        python3 bench/layout_probe.py --only 0 $layout >"$OUT/ncu-$layout.log" 2>&1
    stamp "ncu $layout rc=$?"
    grep -E "^\s+(gpu__|dram__|lts__|sm__)" "$OUT/ncu-$layout.log"
done
stamp done
