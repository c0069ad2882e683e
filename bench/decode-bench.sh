#!/usr/bin/env bash
# The decode benchmark of issue 18 on the GPU host (bench/decode_bench.py):
# T = 1, B = 64, N = 32768, olmoe and gqa-32q-8kv; spattn's decode kernels
# against SDPA dense decoding, bytes read / time against the copy bandwidth.
# First the GPU decode checks (check --decode, a few cases), then the
# benchmark.  Builds nothing: build/ comes from the development machine.
# Logs in $OUT (default gpu-logs); the table is printed last.
#
#   bash bench/decode-bench.sh [decode_bench.py options, e.g. --measure-copy, or --tune:
#                               tune each spec's decode kernels at the benchmark's shape first]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}
export SPATTN_LIB=${SPATTN_LIB:-$PWD/build/libspattn.so}
S=./build/spattn
fails=0
for args in "configs/olmoe-1b-7b.yaml --kv-len 4096 --batch 4" \
            "configs/gqa-32q-8kv.yaml --kv-len 4096 --batch 4 --new-tokens 4 --kv-lens 4096,100,3,2000 --page-size 64"; do
    $S check $args --decode >>"$OUT/decode-checks.log" 2>&1 || { fails=$((fails + 1)); echo "FAILED: check $args --decode"; }
done
echo "== decode checks: $fails failed (log: $OUT/decode-checks.log)"
python3 bench/decode_bench.py --json "$OUT/decode-bench.jsonl" "$@" 2>&1 | tee "$OUT/decode-bench.log"
exit $(( fails > 0 || ${PIPESTATUS[0]} != 0 ))
