#!/usr/bin/env bash
# Session 6, device call 1: the forward with the rescale in FlashAttention-3's
# order (check matrix of fwd-ws, the four sanitizers, `spattn bench` of the
# candidate tiles), then Nsight Compute digests of the forward (fwd-ws) and
# the backward main kernel at (1,16,16,16384,128).  Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s6}; mkdir -p "$OUT"
export PATH=$PWD/build/tools/bin:$PATH LD_LIBRARY_PATH=$PWD/build/tools/lib:${LD_LIBRARY_PATH:-}
export SPATTN_CACHE_DIR=/tmp/spk-$(date +%s) SPATTN_DB=/tmp/spattn-tune-probe.db
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 ))s]"; }
FAMILY=fwd-ws TILES="128x96:s3:ws 192x128:w12:s2:ws 192x128:w12:s3:ws" OUT=$OUT/ws bash bench/ws-probe.sh ${STEPS:-check sanitize bench}
el
S=./build/spattn
if [ -n "${NCU:-1}" ]; then
    A=(configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384)
    $S bench "${A[@]}" --pass fwdbwd --iters 3 >/dev/null 2>&1
    sec=(--section SpeedOfLight --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis)
    ncu --clock-control none -k regex:spattn_fwd --launch-skip 2 --launch-count 1 "${sec[@]}" \
        $S bench "${A[@]}" --pass fwd --iters 3 >"$OUT/ncu-fwd.txt" 2>&1
    ncu --clock-control none -k regex:bwd_main --launch-skip 1 --launch-count 1 "${sec[@]}" --section SourceCounters \
        $S bench "${A[@]}" --pass fwdbwd --iters 2 >"$OUT/ncu-bwd.txt" 2>&1
    for f in fwd bwd; do
        echo "== ncu $f"
        grep -E "spattn_|Duration|Compute \(SM\) Throughput|Memory Throughput|L2 Cache Throughput|Issue Slots Busy|Issued Warp Per|No Eligible|Active Warps Per|Eligible Warps|Warp Cycles Per Issued|Registers Per|Shared Memory Config|Stall|stall" "$OUT/ncu-$f.txt" | head -40
    done
    el
fi
