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
source "$(dirname "$0")/probe-lib.sh"
sanitize_bg bwd-ws 300
matrix bwd-ws regress -t 250
timeout 60 build/spattn check configs/olmoe-1b-7b.yaml --pass bwd --seq-lens 1000,1,65,333 --json >"$OUT/packed.txt" 2>&1
stamp "packed default bwd rc=$?: $(grep -o '"config_source":"[^"]*"\|"kernel":"[^"]*"' "$OUT/packed.txt" | head -n 2 | tr '\n' ' ')"
wait
sanitize_report
for f in "$OUT"/s/sanitize-racecheck-*.log; do grep -m3 -A3 "hazard detected" "$f"; done | head -n 20
pack_checks s
b1() { local spec=$1; shift; bench_line build/spattn configs/$spec.yaml "$@" --pass fwdbwd; }   # spec batch N extra...
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
