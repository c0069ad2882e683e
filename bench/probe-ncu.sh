#!/usr/bin/env bash
# One kernel under ncu on the GPU host: where its warps stall (ncu's source page, digested per
# SASS instruction and per opcode by bench/ncu_source.py), its stall reasons as raw metrics,
# and the speed-of-light and warp-state summaries.
#     bash bench/probe-ncu.sh NAME KERNEL_REGEX SKIP SPEC [spattn bench options...]
# profiles the launch after SKIP launches of kernels matching KERNEL_REGEX in
# `build/spattn bench SPEC options...` (run once before, so that NVRTC's compile is not
# profiled); files in $OUT: ncu-NAME.log, digest-NAME.txt, src-NAME.csv.gz.  For example:
#     bash bench/probe-ncu.sh bwd16k bwd_main 1 configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --iters 2
#     bash bench/probe-ncu.sh dense16k spattn_fwd 1 /tmp/dense-16h.yaml --batch 1 --seq-len 16384 --pass fwd --iters 2
source "$(dirname "$0")/probe-lib.sh"
[ $# -ge 4 ] || { echo "usage: bash bench/probe-ncu.sh NAME KERNEL_REGEX SKIP SPEC [bench options...]" >&2; exit 2; }
name=$1 regex=$2 skip=$3
shift 3
timeout 120 build/spattn bench "$@" >/dev/null 2>&1   # compile first
timeout 300 ncu --clock-control none -k "regex:$regex" --launch-skip "$skip" --launch-count 1 --import-source no \
    --section SourceCounters --section WarpStateStats --section SpeedOfLight -o "$OUT/rep-$name" \
    build/spattn bench "$@" >"$OUT/ncu-$name.log" 2>&1
stamp "ncu $name rc=$?"
ncu -i "$OUT/rep-$name.ncu-rep" --page source --print-source sass --csv >"$OUT/src-$name.csv" 2>"$OUT/src-$name.err" ||
    ncu -i "$OUT/rep-$name.ncu-rep" --page source --csv >"$OUT/src-$name.csv" 2>>"$OUT/src-$name.err"
python3 bench/ncu_source.py "$OUT/src-$name.csv" 45 >"$OUT/digest-$name.txt" 2>&1; head -n 75 "$OUT/digest-$name.txt"
ncu -i "$OUT/rep-$name.ncu-rep" --page raw --csv 2>/dev/null | python3 -c '
import csv, sys
r = list(csv.reader(sys.stdin))
if len(r) >= 3:
    for name, unit, val in zip(r[0], r[1], r[2]):
        if "issue_stalled" in name and "ratio" in name:
            try: v = float(val.replace(",", ""))
            except ValueError: continue
            if v > 0.05: print("  %-90s %8.3f" % (name, v))
' | sort -k2 -rn | head -n 25
ncu -i "$OUT/rep-$name.ncu-rep" --print-details all 2>/dev/null | grep -iE "Duration|Issue Slots|Eligible|Stall|Tensor" | head -n 20
gzip -f "$OUT/src-$name.csv"; rm -f "$OUT/rep-$name.ncu-rep"
stamp "done $name"
