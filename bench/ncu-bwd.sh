export SPATTN_CACHE_DIR=/tmp/spk
S=./build/spattn
$S run configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --no-dense --iters 3 >/dev/null 2>&1
ncu --clock-control none -k regex:bwd_main --launch-skip 1 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section LaunchStats --section Occupancy --section SourceCounters --section InstructionStats $S run configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --no-dense --iters 2 > $OUT/ncu-bwd.txt 2>&1
ncu --clock-control none -k regex:bwd_ --launch-skip 0 --launch-count 6 --section SpeedOfLight $S run configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --no-dense --iters 1 > $OUT/ncu-all.txt 2>&1
grep -E "Duration|Throughput|spattn_bwd|Stall|Warp Cycles|Issued|Eligible" $OUT/ncu-all.txt | head -60
sed -n '/WarpStateStats/,$p' $OUT/ncu-bwd.txt | head -150
