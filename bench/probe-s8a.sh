#!/usr/bin/env bash
# Session 8, device call 1: the two branches written in session 7 without a GPU.
#   det-early: main_sem releases a step's dQ turn at the end of the step that made the adds;
#   bwd-ws:    the producer-warpgroup TMA backward, opt-in tile suffix :ws.
# 1. a first check of each :ws tile (a hang shows here, under a short timeout);
# 2. the check matrices (bwd-wgmma incl. -det, bwd-ws) with the four sanitizers in the background;
# 3. spattn bench fwd / fwdbwd of :ws against :wgmma tiles (the backward = the difference);
# 4. peers.py --peers cudnn (the det / default column).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s8a}; mkdir -p "$OUT"
T0=$(date +%s); LIMIT=${LIMIT:-580}
left() { echo $((LIMIT - ($(date +%s) - T0))); }
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
for t in "olmoe-1b-7b 64x128:s2:ws" "llama-8h-d64 64x64:s2:ws" "llama-8h-d64 64x64:s3:ws"; do
    set -- $t
    timeout 90 build/spattn check configs/$1.yaml --pass bwd --tile $2 --batch 1 --seq-len 1000 --reference gpu >"$OUT/first-$1-$2.txt" 2>&1
    stamp "first check $1 $2 rc=$?: $(tail -n 2 "$OUT/first-$1-$2.txt" | tr '\n' ' ')"
done
for fam in ${FAMILIES:-bwd-wgmma bwd-ws}; do
    timeout 330 python3 bench/check_matrix.py sanitize --filter "$fam" --out "$OUT/s-$fam" --jobs 6 --timeout 300 \
        >"$OUT/sanitize-$fam.txt" 2>&1 &
done
for fam in ${FAMILIES:-bwd-wgmma bwd-ws}; do
    timeout 200 python3 bench/check_matrix.py run --filter "$fam" --out "$OUT/m-$fam" --jobs 8 --timeout 150 >"$OUT/matrix-$fam.txt" 2>&1
    stamp "matrix $fam: $(tail -n 1 "$OUT/matrix-$fam.txt")"; grep FAILED "$OUT/matrix-$fam.txt" | head -n 8
done
wait
for fam in ${FAMILIES:-bwd-wgmma bwd-ws}; do
    stamp "sanitize $fam: $(tail -n 1 "$OUT/sanitize-$fam.txt")"
    grep -h "SUMMARY" "$OUT/s-$fam"/sanitize-*.log 2>/dev/null | sort | uniq -c
done
b1() {   # spec batch N pass tile
    r=$(build/spattn bench "configs/$1.yaml" --batch "$2" --seq-len "$3" --pass "$4" --bwd-tile "$5" --iters 100 --json 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %.0f TF/s %s" % (d["spattn_ms"], d["spattn_eff_tflops"], d.get("kernel", "")))' 2>/dev/null)
    echo "bench $1 B=$2 N=$3 $4 $5: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}
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
