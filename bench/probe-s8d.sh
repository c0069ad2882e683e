#!/usr/bin/env bash
# Session 8, device call 4: where the warps of the backward main kernels stall (ncu's source
# page: warp-state samples per SASS instruction), the ws kernel (default) and the wgmma one,
# at (1,16,16,16384,128); and the stall reasons as raw metrics.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s8d}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
A=(configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --iters 2)
for v in ws wgmma; do
    timeout 60 build/spattn bench "${A[@]}" --bwd-tile 64x128:s2:$v >/dev/null 2>&1   # compile first
    timeout 200 ncu --clock-control none -k regex:bwd_main --launch-skip 1 --launch-count 1 --import-source no \
        --section SourceCounters --section WarpStateStats --section SpeedOfLight -o "$OUT/rep-$v" \
        build/spattn bench "${A[@]}" --bwd-tile 64x128:s2:$v >"$OUT/ncu-$v.log" 2>&1
    stamp "ncu $v rc=$?"
    ncu -i "$OUT/rep-$v.ncu-rep" --page source --print-source sass --csv >"$OUT/src-$v.csv" 2>"$OUT/src-$v.err" ||
        ncu -i "$OUT/rep-$v.ncu-rep" --page source --csv >"$OUT/src-$v.csv" 2>>"$OUT/src-$v.err"
    python3 bench/ncu_source.py "$OUT/src-$v.csv" 45 >"$OUT/digest-$v.txt" 2>&1; head -n 75 "$OUT/digest-$v.txt"
    ncu -i "$OUT/rep-$v.ncu-rep" --page raw --csv 2>/dev/null | python3 -c '
import csv, sys
r = list(csv.reader(sys.stdin))
if len(r) >= 3:
    for name, unit, val in zip(r[0], r[1], r[2]):
        if "issue_stalled" in name and "ratio" in name:
            try: v = float(val.replace(",", ""))
            except ValueError: continue
            if v > 0.05: print("  %-90s %8.3f" % (name, v))
' | sort -k2 -rn | head -n 25
    ncu -i "$OUT/rep-$v.ncu-rep" --print-details all 2>/dev/null | grep -iE "Duration|Issue Slots|Eligible|Stall|Tensor" | head -n 20
done
gzip -f "$OUT"/src-*.csv; rm -f "$OUT"/*.ncu-rep
stamp done
