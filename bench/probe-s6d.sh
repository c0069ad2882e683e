#!/usr/bin/env bash
# Session 6, device call 4: decoding (issue 18 item 2) on the GPU: its
# correctness call (bench/gpu-decode.sh: check matrix, the four sanitizers,
# decode.bats, the Python decode tests) and its benchmark (decode-bench.sh).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s6d}; mkdir -p "$OUT"
T0=$(date +%s)
export SPATTN_CACHE_DIR=/tmp/spk-d-$T0 SPATTN_DB=/tmp/spattn-tune-d.db
LOGS=/tmp/gpu-decode OUT=$OUT/correct LIMIT=${LIMIT:-170} bash bench/gpu-decode.sh
echo "== [$(( $(date +%s) - T0 ))s]"
OUT=$OUT/bench timeout 120 bash bench/decode-bench.sh --measure-copy 2>&1 | tail -n 25
echo "== [$(( $(date +%s) - T0 ))s] done"
