#!/usr/bin/env bash
# One device call while developing a kernel family: its part of the check
# matrix, the four sanitizers on it, and `spattn bench` of its tiles against
# the family it is to replace, at the benchmark's shapes.  Logs under $OUT.
#
#   FAMILY=fwd-ws TILES="128x128:s2:ws 128x96:s2:ws" bash bench/ws-probe.sh [check] [sanitize] [bench]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ws-probe}
mkdir -p "$OUT"
# A fresh kernel cache: a warm machine keeps /tmp between calls.
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels-$(date +%s)} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}
FAMILY=${FAMILY:-fwd-ws}
steps=${*:-check sanitize bench}
want() { [[ " $steps " == *" $1 "* ]]; }
S=./build/spattn
echo "== build $(cat build/COMMIT 2>/dev/null)"
if want check; then
    python3 bench/check_matrix.py run --filter "$FAMILY" --out "$OUT" --jobs "${JOBS:-12}" >"$OUT/matrix.txt" 2>&1
    echo "== $(tail -n 1 "$OUT/matrix.txt")"
    grep FAILED "$OUT/matrix.txt" | head -n 12
fi
if want sanitize; then
    python3 bench/check_matrix.py sanitize --filter "$FAMILY" --out "$OUT" --jobs 8 >"$OUT/sanitize.txt" 2>&1
    echo "== $(tail -n 1 "$OUT/sanitize.txt")"
    grep -h "SUMMARY" "$OUT"/sanitize-*"$FAMILY"*.log 2>/dev/null | sort | uniq -c
fi
if want bench; then
    # The dense causal baseline (pattern: dense) at the olmoe shape, on the same kernels.
    printf 'name: dense-16h\nheads: 16\nhead_dim: 128\npattern: dense\n' >"$OUT/dense-16h.yaml"
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" \
                 "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384" \
                 "$OUT/dense-16h.yaml 1 16384" "$OUT/dense-16h.yaml 4 4096"; do
        set -- $shape
        for tile in default ${TILES:-}; do
            t=(); [ "$tile" != default ] && t=(--tile "$tile")
            r=$($S bench "$1" --batch "$2" --seq-len "$3" --pass fwd --iters 50 --json "${t[@]}" 2>"$OUT/bench-err.txt" | tail -n 1)
            echo "bench $(basename "$1" .yaml) B=$2 N=$3 tile=$tile: ${r:-$(tail -n 1 "$OUT/bench-err.txt")}" | cut -c1-400
        done
    done
fi
