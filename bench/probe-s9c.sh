#!/usr/bin/env bash
# Session 9, call 3:
#   1. the d64 backward at two blocks per SM (commit 889f4c5): bwd-ws matrix (with packed and
#      deterministic-order cases), issue-13 regressions, the four sanitizers on bwd-ws;
#   2. an experiment (build/c2/spattn, not committed): the d64 forward at two blocks per SM
#      (consumers at 112 registers, so BN 64; persistent grid 2 x SMs), checked, then timed
#      against main's forward.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s9c}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null)"
timeout 200 python3 bench/check_matrix.py sanitize --filter bwd-ws --out "$OUT/s" --jobs 6 --timeout 180 >"$OUT/sanitize.txt" 2>&1 &
for f in bwd-ws regress; do
    timeout 200 python3 bench/check_matrix.py run --filter $f --out "$OUT/m-$f" --jobs 8 --timeout 150 >"$OUT/matrix-$f.txt" 2>&1
    stamp "matrix $f: $(tail -n 1 "$OUT/matrix-$f.txt")"; grep -i "FAIL" "$OUT/matrix-$f.txt" | head -n 8
done
wait
stamp "sanitize: $(tail -n 1 "$OUT/sanitize.txt")"
grep -h "SUMMARY" "$OUT"/s/sanitize-*.log 2>/dev/null | sort | uniq -c
tar czf "$OUT/checks.tgz" -C "$OUT" s m-bwd-ws m-regress 2>/dev/null; rm -rf "$OUT/s" "$OUT/m-bwd-ws" "$OUT/m-regress"
for t in 128x64:s2:ws 128x64:s3:ws; do
    for a in "--seq-len 1000 --batch 2" "--seq-len 4096 --batch 4"; do
        SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-c2 timeout 60 build/c2/spattn check configs/llama-8h-d64.yaml --pass fwd --tile $t $a >"$OUT/first.txt" 2>&1
        stamp "c2 fwd check $t $a rc=$?: $(grep -E '^ *O |FAIL|rror' "$OUT/first.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
    done
done
b1() {   # binary spec batch N extra...
    local bin=$1 spec=$2 B=$3 N=$4; shift 4
    r=$(SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $(dirname $bin)) timeout 60 $bin bench "$spec" --batch "$B" --seq-len "$N" --iters 200 --json "$@" 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %s" % (d["spattn_ms"], d.get("kernel","")))' 2>/dev/null)
    echo "bench $bin $(basename $spec) B=$B N=$N $*: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}
{
for rep in 1 2; do
    b1 build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd
    b1 build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile 128x64:s2:ws
    b1 build/c2/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile 128x64:s2:ws
    b1 build/c2/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwd --tile 128x64:s3:ws
    b1 build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd
    b1 build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd --deterministic
    b1 build/c2/spattn configs/llama-8h-d64.yaml 1 16384 --pass fwd --tile 128x64:s2:ws
    b1 build/spattn configs/llama-8h-d64.yaml 1 16384 --pass fwd
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
