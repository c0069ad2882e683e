#!/usr/bin/env bash
# Profile the backward's kernels with Nsight Compute on the GPU host: the
# main kernel's speed-of-light, warp-state, scheduler and source counters at
# (1,16,16384,128), and speed-of-light of every backward kernel.  Full
# reports go to $OUT (or ./gpu-logs); a digest is printed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-logs}; mkdir -p "$OUT"
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spk}
S=./build/spattn
A=(configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --no-dense)
$S run "${A[@]}" --iters 3 >/dev/null 2>&1   # compile and cache the kernels first
ncu --clock-control none -k regex:bwd_main --launch-skip 1 --launch-count 1 --section SpeedOfLight \
    --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
    --section ComputeWorkloadAnalysis --section LaunchStats --section Occupancy --section SourceCounters \
    --section InstructionStats $S run "${A[@]}" --iters 2 >"$OUT/ncu-bwd.txt" 2>&1
ncu --clock-control none -k regex:bwd_ --launch-count 6 --section SpeedOfLight $S run "${A[@]}" --iters 1 \
    >"$OUT/ncu-all.txt" 2>&1
grep -E "Duration|Throughput|spattn_bwd" "$OUT/ncu-all.txt" | head -60
sed -n '/Warp State Statistics/,$p' "$OUT/ncu-bwd.txt" | head -150
