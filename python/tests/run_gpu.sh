#!/usr/bin/env bash
# The Python package's GPU tests and the overhead bench, on the GPU host, from
# the repository root, with build/libspattn.so and build/spattn made
# beforehand (make).  Logs go to $OUT (or gpu-logs/python/); a summary last.
#
#   bash python/tests/run_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-gpu-logs}/python
mkdir -p "$out"
export SPATTN_LIB=${SPATTN_LIB:-$PWD/build/libspattn.so}
export SPATTN_CLI=${SPATTN_CLI:-$PWD/build/spattn}
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
[ -f "$SPATTN_LIB" ] || { echo "run_gpu: $SPATTN_LIB is missing: run make first" >&2; exit 2; }
python3 -c 'import torch; print("# torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name())' 2>&1 | tee "$out/env.txt"
echo "# commit $(cat build/COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)" | tee -a "$out/env.txt"

t0=$(date +%s)
python3 python/tests/test_gpu.py >"$out/test_gpu.out" 2>"$out/test_gpu.log"; gpu_rc=$?
cpu_rc=0
python3 python/tests/test_cpu.py >"$out/test_cpu.out" 2>"$out/test_cpu.log" || cpu_rc=$?
python3 python/tests/bench_overhead.py >"$out/bench_overhead.md" 2>"$out/bench_overhead.log"; bench_rc=$?
t1=$(date +%s)

echo "== failures (test_gpu.log)"
grep -E '^(FAIL|ERROR):' "$out/test_gpu.log" "$out/test_cpu.log" | head -n 30
grep -E -A 12 '^(FAIL|ERROR):' "$out/test_gpu.log" | grep -E 'Error|assert|Assertion' | head -n 30
echo "== skips"
grep -h '^skipped:' "$out/test_gpu.out" "$out/test_cpu.out" | head -n 20
echo "== overhead (bench_overhead.md)"
cat "$out/bench_overhead.md"
tail -n 3 "$out/bench_overhead.log"
echo "== summary [$((t1 - t0)) s, logs in $out]"
echo "test_gpu.py: $(tail -n 1 "$out/test_gpu.out")"
echo "test_cpu.py: $(tail -n 1 "$out/test_cpu.out")"
echo "bench_overhead.py: exit $bench_rc"
[ "$gpu_rc" -eq 0 ] && [ "$cpu_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
