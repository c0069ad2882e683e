#!/usr/bin/env bash
# Session 8, device call 5: the ws backward's dQ added by TMA tensor reduce-adds (two per
# warp, lane 0) instead of a bulk reduce-add per row from lanes 0..15 (serialized by ptxas).
#   1. a first check per head_dim and mode, then the bwd-ws matrix cases at N >= 4096 and the
#      det-order ones (the full matrix and the sanitizers come with the fair benchmark);
#   2. spattn bench fwdbwd as call 3 (default, --deterministic, the :wgmma tile), d64 :ws;
#   3. python/tests/test_gpu.py.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s8e}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null)"
for t in "olmoe-1b-7b 64x128:s2:ws" "llama-8h-d64 64x64:s3:ws" "gqa-32q-8kv 64x128:s2:ws"; do
    set -- $t
    for det in "" --deterministic; do
        timeout 90 build/spattn check configs/$1.yaml --pass bwd --tile $2 --batch 2 --seq-len 1000 $det >"$OUT/first.txt" 2>&1
        stamp "first check $1 $2 $det rc=$?: $(grep -E 'dQ|FAIL' "$OUT/first.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
    done
done
timeout 200 python3 bench/check_matrix.py run --filter bwd-ws --out "$OUT/m" --jobs 8 --timeout 150 >"$OUT/matrix.txt" 2>&1
stamp "matrix bwd-ws: $(tail -n 1 "$OUT/matrix.txt")"; grep -i "FAIL" "$OUT/matrix.txt" | head -n 8
b1() {   # spec batch N extra...
    local spec=$1 B=$2 N=$3; shift 3
    r=$(timeout 60 build/spattn bench "configs/$spec.yaml" --batch "$B" --seq-len "$N" --pass fwdbwd --iters 100 --json "$@" 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %.0f TF/s %s" % (d["spattn_ms"], d["spattn_eff_tflops"], d.get("kernel", "").split(" + ")[-1]))' 2>/dev/null)
    echo "bench $spec B=$B N=$N $*: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}
{
for s in "olmoe-1b-7b 1 16384" "olmoe-1b-7b 4 4096" "gqa-32q-8kv 1 16384"; do
    b1 $s; b1 $s --deterministic
done
b1 llama-8h-d64 4 4096; b1 llama-8h-d64 4 4096 --bwd-tile 64x64:s3:ws; b1 llama-8h-d64 4 4096 --bwd-tile 64x64:s2:ws
b1 llama-8h-d64 4 4096 --bwd-tile 64x64:s3:ws --deterministic
} 2>&1 | tee "$OUT/bench.txt"
stamp "bench done"
export SPATTN_LIB=$PWD/build/libspattn.so SPATTN_CLI=$PWD/build/spattn PYTHONPATH=$PWD/python
timeout 120 python3 python/tests/test_gpu.py >"$OUT/test_gpu.txt" 2>&1
stamp "test_gpu rc=$?: $(tail -n 1 "$OUT/test_gpu.txt")"
stamp done
