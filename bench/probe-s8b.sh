#!/usr/bin/env bash
# Session 8, device call 2: what racecheck reports on bwd-ws (call 1: 0/2, ~20k hazards),
# and ncu of the bwd-ws main kernel at (1,16,16,16384,128).
source "$(dirname "$0")/probe-lib.sh"
timeout 200 python3 bench/check_matrix.py sanitize --filter bwd-ws --out "$OUT/s" --jobs 6 --timeout 180 >"$OUT/sanitize.txt" 2>&1
stamp "sanitize bwd-ws: $(tail -n 1 "$OUT/sanitize.txt")"
for f in "$OUT"/s/sanitize-racecheck-*.log; do
    echo "==== $f"; grep -c "Error: Race" "$f"
    # the distinct pairs of locations, most frequent first
    grep -A3 "Error: Race\|Warning: Race\|Race reported" "$f" | grep -E "Write|Read|at |by thread" | sed 's/thread ([0-9,]*)/thread (T)/; s/block ([0-9,]*)/block (B)/' | sort | uniq -c | sort -rn | head -n 20
    grep -m1 -B2 -A14 "Race reported\|Error: Race" "$f"
done
tar czf "$OUT/san.tgz" -C "$OUT" s 2>/dev/null; rm -rf "$OUT/s"
S=./build/spattn
A=(configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --bwd-tile 64x128:s2:ws)
sec=(--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis)
timeout 150 ncu --clock-control none -k regex:bwd_main --launch-skip 1 --launch-count 1 "${sec[@]}" --section SourceCounters \
    $S bench "${A[@]}" --pass fwdbwd --iters 2 >"$OUT/ncu-bwd-ws.txt" 2>&1
stamp "ncu rc=$?"
grep -E "spattn_|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Issue Slots Busy|Issued Warp Per|No Eligible|Active Warps Per|Eligible Warps|Warp Cycles Per Issued|Registers Per|Stall|stall" "$OUT/ncu-bwd-ws.txt" | head -40
stamp done
