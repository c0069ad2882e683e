#!/usr/bin/env bash
# Session 16, call 1 (timing of order and cache-hint variants of the default backward; their
# output is not checked here): is the d128 default backward held by L2 misses?  Variants of
# main (build/spattn), built in worktrees by edits of bwd_ws_item_at (the default mode's item
# order) and of the producer's K and V loads:
#   g1, g2, g4  items in groups of G (sequence, kv head) pairs, tile-major inside a group
#               (main: tile-major over all pairs); g1 = head by head
#   e1          K and V loaded with an L2 evict_first policy (read once per item)
#   g1e1        both
# ncu (DRAM bytes, L2 hit rate) of main and g1 at (1,16,16,16384,128), then interleaved rounds
# of `spattn bench --pass fwdbwd` at that shape; the two fastest variants then at the other
# three shapes of DESIGN.md section 5.
source "$(dirname "$0")/probe-lib.sh"
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct
M=$M,lts__t_sectors_op_red.sum,lts__t_sectors_op_read.sum
for bin in build/spattn build/g1/spattn build/e1/spattn; do
    SPATTN_CACHE_DIR=$(cache_for $bin) timeout 100 ncu --clock-control none -k "regex:spattn_bwd_main" --launch-skip 1 --launch-count 1 \
        --metrics "$M" $bin bench configs/olmoe-1b-7b.yaml --batch 1 --seq-len 16384 --pass fwdbwd --iters 2 \
        >"$OUT/ncu-$(basename $(dirname $bin)).log" 2>&1
    stamp "ncu $bin rc=$?"
    grep -E "^\s+(gpu__time|dram__bytes|lts__t)" "$OUT/ncu-$(basename $(dirname $bin)).log"
done
VARIANTS="build/spattn build/g1/spattn build/g2/spattn build/g4/spattn build/e1/spattn build/g1e1/spattn"
bench_line build/spattn configs/olmoe-1b-7b.yaml 1 16384 --pass fwd | tee -a "$OUT/bench.txt"
for rep in 1 2 3 4; do
    for bin in $VARIANTS; do
        [ "$(left)" -gt 240 ] || break 2
        bench_line $bin configs/olmoe-1b-7b.yaml 1 16384 --pass fwdbwd
    done
done 2>&1 | tee -a "$OUT/bench.txt"
best=$(python3 - "$OUT/bench.txt" <<'PY'
import re, sys, collections
t = collections.defaultdict(list)
for l in open(sys.argv[1]):
    m = re.match(r"bench (\S+) olmoe-1b-7b B=1 N=16384 --pass fwdbwd: ([\d.]+) ms", l)
    if m and m.group(1) != "build/spattn": t[m.group(1)].append(float(m.group(2)))
print(" ".join(sorted(t, key=lambda k: sum(t[k]) / len(t[k]))[:2]))
PY
)
stamp "best at 16384: $best"
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
        [ $rep = 1 ] && bench_line build/spattn $shape --pass fwd
        for bin in build/spattn $best; do
            [ "$(left)" -gt 10 ] || break 3
            bench_line $bin $shape --pass fwdbwd
        done
    done
done 2>&1 | tee -a "$OUT/bench.txt"
stamp done
