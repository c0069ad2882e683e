#!/usr/bin/env bash
# Session-3 probe (one device call): the wgmma backward's checks and a
# compute-sanitizer pass over it, then forward+backward times of the issue's
# shapes, the new build against build/spattn-old (the previous commit) when
# it is there, so each ratio is measured in one run on one GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-logs}; mkdir -p "$OUT"
S=./build/spattn
export SPATTN_CACHE_DIR=/tmp/spk SPATTN_DB=/tmp/spdb.db
echo "build: $(cat build/COMMIT)"; nvidia-smi -L
if [ "${PROBE_CHECKS:-1}" = 1 ]; then
  CHECK_PASS=bwd bash bench/gpu-suite.sh checks sanitize 2>&1 | grep -E "^==|FAILED"
fi
t() { local bin=$1; shift; "$bin" run "$@" --no-dense --iters 30 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.4f" % d["median_ms"])' 2>/dev/null || echo ERR; }
for shape in "olmoe-1b-7b 4 4096" "olmoe-1b-7b 1 16384" "gqa-32q-8kv 1 16384" "llama-8h-d64 4 4096" "olmoe-1b-7b 1 32768"; do
  set -- $shape
  a=(configs/$1.yaml --batch $2 --seq-len $3)
  line="$1 B=$2 N=$3 fwd=$(t $S "${a[@]}") fwdbwd new=$(t $S "${a[@]}" --pass fwdbwd)"
  [ -x build/spattn-old ] && line="$line old=$(t build/spattn-old "${a[@]}" --pass fwdbwd)"
  for tile in ${PROBE_TILES:-64x128:s3:wgmma 64x64:s3:wgmma}; do line="$line $tile=$(t $S "${a[@]}" --pass fwdbwd --tile $tile)"; done
  echo "$line"
done
