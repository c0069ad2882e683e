#!/usr/bin/env bash
# For the next session (issue 15): the forward at (1,16,16,16384,128) is 7-9% slower on
# PyTorch's [B, H, N, D] layout than on [B, N, H, D] when launches follow each other, and as
# fast under ncu with its cache flush (RESULTS.md S11.4, NOTES-fwd-ws.md session 11).  Three
# views of launch 5 of a sequence, in both layouts (bench/layout_probe.py --only 0 LAYOUT):
#   1. ncu without the cache flush (--cache-control none): what the previous launches leave in
#      L2 is then in the measurement; memory metrics and the memory workload section;
#   2. the same with ncu's flush, for the pairing;
#   3. nsys: the timeline of 8 launches (gaps between kernels, the allocator's memsets).
#     bash bench/probe-layout.sh          # ~90 s
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct
M=$M,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_write.sum,lts__t_sectors_op_write.sum
M=$M,lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed
timeout 60 python3 bench/layout_probe.py --only 0 bnhd >/dev/null 2>&1   # compile first
for cache in none all; do
    for layout in bnhd bhnd; do
        timeout 120 ncu --clock-control none --cache-control $cache -k "regex:spattn_fwd" --launch-skip 4 --launch-count 1 \
            --metrics "$M" --section MemoryWorkloadAnalysis python3 bench/layout_probe.py --only 0 $layout \
            >"$OUT/ncu-$cache-$layout.log" 2>&1
        stamp "ncu cache-control $cache $layout rc=$?"
        grep -E "^\s+(gpu__|dram__|lts__)" "$OUT/ncu-$cache-$layout.log"
    done
done
if command -v nsys >/dev/null; then
    for layout in bnhd bhnd; do
        timeout 120 nsys profile -t cuda -o "$OUT/nsys-$layout" python3 bench/layout_probe.py --only 0 $layout >/dev/null 2>&1
        nsys stats -r cuda_gpu_trace -f csv "$OUT/nsys-$layout.nsys-rep" >"$OUT/trace-$layout.csv" 2>/dev/null
        stamp "nsys $layout: $(grep -c spattn_fwd "$OUT/trace-$layout.csv") forward launches"
        rm -f "$OUT/nsys-$layout.nsys-rep" "$OUT/nsys-$layout.sqlite"
    done
fi
stamp done
