#!/usr/bin/env bash
# Session-3 probe (one device call): the wgmma backward's checks, a
# compute-sanitizer pass over it, then forward and forward+backward times of
# the issue's shapes for the default (wgmma on sm_90 d128) and for explicit
# tiles, so backward time = fwdbwd - fwd per tile.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-logs}; mkdir -p "$OUT"
S=./build/spattn
export SPATTN_CACHE_DIR=/tmp/spk SPATTN_DB=/tmp/spdb.db
echo "build: $(cat build/COMMIT)"; nvidia-smi -L
if [ "${PROBE_CHECKS:-1}" = 1 ]; then
  CHECK_PASS=bwd bash bench/gpu-suite.sh checks sanitize 2>&1 | tail -n 40
fi
t() { "$S" run "$@" --no-dense --iters 30 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.4f" % d.get("median_ms", d.get("time_ms", -1)))' 2>/dev/null || echo ERR; }
for shape in "olmoe-1b-7b 4 4096" "olmoe-1b-7b 1 16384" "gqa-32q-8kv 1 16384" "llama-8h-d64 4 4096" "olmoe-1b-7b 1 32768"; do
  set -- $shape
  for tile in ${PROBE_TILES:-default 64x128:w8:s2 64x128:w8:s3:wgmma 64x64:w4:s3:wgmma 64x64:w4:s2:wgmma}; do
    ta=(); [ "$tile" != default ] && ta=(--tile "$tile")
    f=$(t configs/$1.yaml --batch $2 --seq-len $3 "${ta[@]}")
    fb=$(t configs/$1.yaml --batch $2 --seq-len $3 --pass fwdbwd "${ta[@]}")
    echo "$1 B=$2 N=$3 tile=$tile fwd=$f fwdbwd=$fb"
  done
done
