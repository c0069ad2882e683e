#!/usr/bin/env bash
# Session 7, device call 2: the kernels changed this session, checked and timed.
#   1. fwd-ws (the partial tiles' mask as bits) and bwd-wgmma (dV issued before dS^T;
#      the deterministic backward by ordered semaphores): their check-matrix cases and
#      the four sanitizers;
#   2. `spattn bench` of this build against build/old (commit 387f7a0, session 6's
#      kernels), interleaved, forward and forward+backward, default configs;
#   3. decode: tuned at the issue's shape, then bench/decode_bench.py --tune;
#   4. the op's overhead (python/tests/bench_overhead.py).
# Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s7b}; mkdir -p "$OUT"
export PATH=$PWD/build/tools/bin:$PATH LD_LIBRARY_PATH=$PWD/build/tools/lib:${LD_LIBRARY_PATH:-}
T0=$(date +%s); LIMIT=${LIMIT:-560}
left() { echo $((LIMIT - ($(date +%s) - T0))); }
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
# bwd-wgmma also selects the bwd-wgmma-det cases (now the ordered main_sem kernel, with the
# 20 det-order regressions).  The sanitizers (mostly CPU) run in the background while the
# matrices run; the timings come after both.
for fam in ${FAMILIES:-fwd-ws bwd-wgmma}; do
    timeout 330 python3 bench/check_matrix.py sanitize --filter "$fam" --out "$OUT/s-$fam" --jobs 6 --timeout 300 \
        >"$OUT/sanitize-$fam.txt" 2>&1 &
done
for fam in ${FAMILIES:-fwd-ws bwd-wgmma}; do
    timeout 200 python3 bench/check_matrix.py run --filter "$fam" --out "$OUT/m-$fam" --jobs 8 --timeout 150 >"$OUT/matrix-$fam.txt" 2>&1
    stamp "matrix $fam: $(tail -n 1 "$OUT/matrix-$fam.txt")"; grep FAILED "$OUT/matrix-$fam.txt" | head -n 8
done
wait
for fam in ${FAMILIES:-fwd-ws bwd-wgmma}; do
    stamp "sanitize $fam: $(tail -n 1 "$OUT/sanitize-$fam.txt")"
    grep -h "SUMMARY" "$OUT/s-$fam"/sanitize-*.log 2>/dev/null | sort | uniq -c
done
bench_pair() {   # spec batch N pass
    for rep in 1; do
        for side in old new; do
            if [ $side = old ]; then b=build/old/spattn; c=/tmp/spk-old-$T0; else b=build/spattn; c=$SPATTN_CACHE_DIR; fi
            r=$(SPATTN_CACHE_DIR=$c $b bench "$1" --batch "$2" --seq-len "$3" --pass "$4" --iters 100 --json 2>"$OUT/bench-err.txt" | tail -n 1)
            ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %.0f TF/s %s" % (d["spattn_ms"], d["spattn_eff_tflops"], d.get("kernel", "")))' 2>/dev/null)
            echo "bench $(basename "$1" .yaml) B=$2 N=$3 $4 $side rep$rep: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
        done
    done
}
{
bench_pair configs/olmoe-1b-7b.yaml 1 16384 fwd
bench_pair configs/llama-8h-d64.yaml 4 4096 fwd
bench_pair configs/olmoe-1b-7b.yaml 1 16384 fwdbwd
bench_pair configs/llama-8h-d64.yaml 4 4096 fwdbwd
} 2>&1 | tee "$OUT/bench-old-new.txt"
stamp "bench done"
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
if [ -n "${DECODE:-}" ]; then
    timeout 200 bash -c "$DECODE" >"$OUT/decode.txt" 2>&1; stamp "decode rc=$?"; tail -n 25 "$OUT/decode.txt"
fi
# The fair harness without Flex (no compiles): spattn, its deterministic backward (outputs
# checked against the default's), spattn dense and cuDNN, at DESIGN.md's four shapes.
timeout $(( $(left) - 40 )) python3 bench/peers.py --peers cudnn --out "$OUT/peers-cudnn.md" >"$OUT/peers.txt" 2>"$OUT/peers.err"
stamp "peers (cudnn only) rc=$?"; cat "$OUT/peers-cudnn.md"
timeout 35 python3 python/tests/bench_overhead.py --shapes small,olmoe >"$OUT/overhead.md" 2>&1
stamp "overhead rc=$?"; cat "$OUT/overhead.md"
stamp done
