#!/usr/bin/env bash
# Session 8, device call 1: the two branches written in session 7 without a GPU.
#   det-early: main_sem releases a step's dQ turn at the end of the step that made the adds;
#   bwd-ws:    the producer-warpgroup TMA backward, opt-in tile suffix :ws.
# 1. a first check of each :ws tile (a hang shows here, under a short timeout);
# 2. the check matrices (bwd-wgmma incl. -det, bwd-ws) with the four sanitizers in the background;
# 3. spattn bench fwd / fwdbwd of :ws against :wgmma tiles (the backward = the difference);
# 4. peers.py --peers cudnn (the det / default column).
LIMIT=${LIMIT:-580}
source "$(dirname "$0")/probe-lib.sh"
for t in "olmoe-1b-7b 64x128:s2:ws" "llama-8h-d64 64x64:s2:ws" "llama-8h-d64 64x64:s3:ws"; do
    set -- $t
    FIRST_TIMEOUT=90 FIRST_BATCH=1 first_check build/spattn configs/$1.yaml $2 --reference gpu
done
for fam in ${FAMILIES:-bwd-wgmma bwd-ws}; do
    timeout 330 python3 bench/check_matrix.py sanitize --filter "$fam" --out "$OUT/s-$fam" --jobs 6 --timeout 300 \
        >"$OUT/sanitize-$fam.txt" 2>&1 &
done
matrix ${FAMILIES:-bwd-wgmma bwd-ws}
wait
for fam in ${FAMILIES:-bwd-wgmma bwd-ws}; do
    stamp "sanitize $fam: $(tail -n 1 "$OUT/sanitize-$fam.txt")"
    grep -h "SUMMARY" "$OUT/s-$fam"/sanitize-*.log 2>/dev/null | sort | uniq -c
done
b1() { bench_line build/spattn configs/$1.yaml $2 $3 --pass $4 --bwd-tile $5; }   # spec batch N pass tile
{
for rep in 1 2; do
    b1 olmoe-1b-7b 1 16384 fwdbwd 64x128:s2:wgmma; b1 olmoe-1b-7b 1 16384 fwdbwd 64x128:s2:ws
    b1 olmoe-1b-7b 4 4096 fwdbwd 64x128:s2:wgmma;  b1 olmoe-1b-7b 4 4096 fwdbwd 64x128:s2:ws
    b1 gqa-32q-8kv 1 16384 fwdbwd 64x128:s2:wgmma;  b1 gqa-32q-8kv 1 16384 fwdbwd 64x128:s2:ws
    b1 llama-8h-d64 4 4096 fwdbwd 64x64:s3:wgmma; b1 llama-8h-d64 4 4096 fwdbwd 64x64:s3:ws; b1 llama-8h-d64 4 4096 fwdbwd 64x64:s2:ws
done
b1 olmoe-1b-7b 1 16384 fwd 64x128:s2:wgmma; b1 olmoe-1b-7b 4 4096 fwd 64x128:s2:wgmma; b1 gqa-32q-8kv 1 16384 fwd 64x128:s2:wgmma; b1 llama-8h-d64 4 4096 fwd 64x64:s3:wgmma
} 2>&1 | tee "$OUT/bench-ws.txt"
stamp "bench done"
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
timeout $(( $(left) - 10 )) python3 bench/peers.py --peers cudnn --out "$OUT/peers-cudnn.md" >"$OUT/peers.txt" 2>"$OUT/peers.err"
stamp "peers (cudnn only) rc=$?"; cat "$OUT/peers-cudnn.md"; tail -n 5 "$OUT/peers.err"
stamp done
