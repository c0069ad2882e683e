#!/usr/bin/env bash
# Session 8, device call 3: the warp-specialized backward as the d128 default on sm_90, with its
# deterministic mode (main_sem in bwd_ws.cuh) and racecheck's fix (every consumer thread arrives
# on the empty barrier).
#   1. the check matrix of bwd-ws and bwd-ws-det (96 cases, det-order included) and the
#      issue-13 regressions (the default deterministic backward), with the four sanitizers
#      in the background;
#   2. a packed backward with the default config (the plan takes the wgmma twin);
#   3. spattn bench fwdbwd: default (ws) against --bwd-tile :wgmma, and --deterministic;
#   4. python/tests/run_gpu.sh (the op now runs the ws backward).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s8c}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null)"
timeout 300 python3 bench/check_matrix.py sanitize --filter bwd-ws --out "$OUT/s" --jobs 6 --timeout 280 >"$OUT/sanitize.txt" 2>&1 &
for f in bwd-ws regress; do
    timeout 240 python3 bench/check_matrix.py run --filter $f --out "$OUT/m-$f" --jobs 8 --timeout 200 >"$OUT/matrix-$f.txt" 2>&1
    stamp "matrix $f: $(tail -n 1 "$OUT/matrix-$f.txt")"; grep -i "FAIL" "$OUT/matrix-$f.txt" | head -n 8
done
timeout 60 build/spattn check configs/olmoe-1b-7b.yaml --pass bwd --seq-lens 1000,1,65,333 --json >"$OUT/packed.txt" 2>&1
stamp "packed default bwd rc=$?: $(grep -o '"config_source":"[^"]*"\|"kernel":"[^"]*"' "$OUT/packed.txt" | head -n 2 | tr '\n' ' ')"
wait
stamp "sanitize: $(tail -n 1 "$OUT/sanitize.txt")"
grep -h "SUMMARY" "$OUT"/s/sanitize-*.log 2>/dev/null | sort | uniq -c
for f in "$OUT"/s/sanitize-racecheck-*.log; do grep -m3 -A3 "hazard detected" "$f"; done | head -n 20
tar czf "$OUT/san.tgz" -C "$OUT" s 2>/dev/null; rm -rf "$OUT/s"
b1() {   # spec batch N extra...
    local spec=$1 B=$2 N=$3; shift 3
    r=$(timeout 60 build/spattn bench "configs/$spec.yaml" --batch "$B" --seq-len "$N" --pass fwdbwd --iters 100 --json "$@" 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %.0f TF/s %s" % (d["spattn_ms"], d["spattn_eff_tflops"], d.get("kernel", "").split(" + ")[-1]))' 2>/dev/null)
    echo "bench $spec B=$B N=$N $*: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}
{
for s in "olmoe-1b-7b 1 16384" "olmoe-1b-7b 4 4096" "gqa-32q-8kv 1 16384" "llama-8h-d64 4 4096"; do
    b1 $s; b1 $s --deterministic
done
b1 olmoe-1b-7b 1 16384 --bwd-tile 64x128:s2:wgmma; b1 olmoe-1b-7b 1 16384 --bwd-tile 64x128:s2:wgmma --deterministic
} 2>&1 | tee "$OUT/bench.txt"
stamp "bench done"
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
timeout 150 bash python/tests/run_gpu.sh >"$OUT/python.txt" 2>&1
stamp "python rc=$?: $(tail -n 3 "$OUT/python.txt" | tr '\n' ' ')"
stamp done
