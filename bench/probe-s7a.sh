#!/usr/bin/env bash
# Session 7, device call 1: the forward's exp2 emulation (tile field :eE,
# kernels/ptx.cuh exp2_poly) against the same tiles without it; the training
# step at N = 16384 (issue 17); the op's overhead with its PyTorch floor; the
# fwd-ws check matrix with :e4 in the time left.  Logs under $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s7a}; mkdir -p "$OUT"
export PATH=$PWD/build/tools/bin:$PATH LD_LIBRARY_PATH=$PWD/build/tools/lib:${LD_LIBRARY_PATH:-}
T0=$(date +%s); LIMIT=${LIMIT:-560}
left() { echo $((LIMIT - ($(date +%s) - T0))); }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
S=./build/spattn
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
bench() {   # spec batch N tile...
    local spec=$1 b=$2 n=$3; shift 3
    for tile in "$@"; do
        r=$($S bench "$spec" --batch "$b" --seq-len "$n" --pass fwd --iters 100 --json --tile "$tile" 2>"$OUT/bench-err.txt" | tail -n 1)
        echo "bench $(basename "$spec" .yaml) B=$b N=$n tile=$tile: ${r:-$(tail -n 1 "$OUT/bench-err.txt")}" | cut -c1-330
    done
}
{
bench configs/llama-8h-d64.yaml 4 4096 128x128:s3:ws 128x128:s3:e8:ws 128x128:s3:e4:ws 128x128:s3:e2:ws \
      128x176:s2:ws 128x176:s2:e4:ws 192x128:s2:ws 192x128:s2:e4:ws 128x128:s3:ws
bench configs/olmoe-1b-7b.yaml 1 16384 128x128:s2:ws 128x128:s2:e8:ws 128x128:s2:e4:ws 128x128:s2:e2:ws 128x128:s2:ws
bench configs/olmoe-1b-7b.yaml 4 4096 128x128:s2:ws 128x128:s2:e8:ws 128x128:s2:e4:ws
} 2>&1 | tee "$OUT/exp2-bench.txt"
echo "== [$(( $(date +%s) - T0 ))s] exp2 bench done"
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
timeout $(( $(left) - 200 )) python3 bench/train_step.py --seq-lens 16384 --steps 10 --out "$OUT/train_step.md" \
    >"$OUT/train_step.txt" 2>"$OUT/train_step.err"; echo "== [$(( $(date +%s) - T0 ))s] train_step rc=$?"
cat "$OUT/train_step.txt"
timeout 120 python3 python/tests/bench_overhead.py --shapes small,olmoe >"$OUT/overhead.md" 2>&1
echo "== [$(( $(date +%s) - T0 ))s] overhead rc=$?"; cat "$OUT/overhead.md"
if [ "$(left)" -gt 60 ]; then
    timeout $(( $(left) - 20 )) python3 bench/check_matrix.py run --filter fwd-ws --exp2-emu 4 --out "$OUT/e4" --jobs 12 >"$OUT/e4-matrix.txt" 2>&1
    echo "== [$(( $(date +%s) - T0 ))s] e4 matrix: $(tail -n 1 "$OUT/e4-matrix.txt")"; grep FAILED "$OUT/e4-matrix.txt" | head
fi
echo "== [$(( $(date +%s) - T0 ))s] done"
