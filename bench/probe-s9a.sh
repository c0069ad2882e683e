#!/usr/bin/env bash
# Session 9, call 1: branches dq-writer and dq-writer-packed on the GPU host.
#   build/spattn      dq-writer-packed (dQ writer + packed sequences on the ws kernel)
#   build/dqw/spattn  dq-writer alone
#   build/old/spattn  main (dQ by the consumers' own TMA reduce-adds)
# 1. first checks under short timeouts, both new builds (a hang in the handshake shows here);
# 2. matrix bwd-ws (with packed cases) + regressions, four sanitizers (with packed), build/spattn;
# 3. spattn bench --pass fwdbwd, default and --deterministic, the three builds interleaved.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s9a}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null)"
for bin in build/dqw/spattn build/spattn; do
  for t in "olmoe-1b-7b 64x128:s2:ws" "llama-8h-d64 64x64:s3:ws" "gqa-32q-8kv 64x128:s2:ws"; do
    set -- $t
    for det in "" --deterministic; do
        SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $(dirname $bin)) timeout 60 $bin check configs/$1.yaml --pass bwd --tile $2 --batch 2 --seq-len 1000 $det >"$OUT/first.txt" 2>&1
        stamp "first $bin $1 $2 $det rc=$?: $(grep -E 'dQ|FAIL|rror' "$OUT/first.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
    done
  done
done
timeout 300 build/spattn check configs/llama-8h-d64.yaml --pass bwd --tile 64x64:s3:ws --seq-lens 1000,1,65,333 --json >"$OUT/packed.txt" 2>&1
stamp "packed check rc=$?"
timeout 280 python3 bench/check_matrix.py sanitize --filter bwd-ws --out "$OUT/s" --jobs 6 --timeout 240 >"$OUT/sanitize.txt" 2>&1 &
for f in bwd-ws regress; do
    timeout 240 python3 bench/check_matrix.py run --filter $f --out "$OUT/m-$f" --jobs 8 --timeout 150 >"$OUT/matrix-$f.txt" 2>&1
    stamp "matrix $f: $(tail -n 1 "$OUT/matrix-$f.txt")"; grep -i "FAIL" "$OUT/matrix-$f.txt" | head -n 8
done
wait
stamp "sanitize: $(tail -n 1 "$OUT/sanitize.txt")"
grep -h "SUMMARY" "$OUT"/s/sanitize-*.log 2>/dev/null | sort | uniq -c
tar czf "$OUT/checks.tgz" -C "$OUT" s m-bwd-ws m-regress 2>/dev/null; rm -rf "$OUT/s" "$OUT/m-bwd-ws" "$OUT/m-regress"
b1() {   # binary spec batch N extra...
    local bin=$1 spec=$2 B=$3 N=$4; shift 4
    r=$(timeout 60 $bin bench "configs/$spec.yaml" --batch "$B" --seq-len "$N" --pass fwdbwd --iters 100 --json "$@" 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %s" % (d["spattn_ms"], d.get("kernel_bwd", d.get("kernel",""))))' 2>/dev/null)
    echo "bench $bin $spec B=$B N=$N $*: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}
{
for rep in 1 2; do
    for s in "olmoe-1b-7b 1 16384" "olmoe-1b-7b 4 4096" "gqa-32q-8kv 1 16384" "llama-8h-d64 4 4096"; do
        for bin in build/old/spattn build/dqw/spattn build/spattn; do
            SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $(dirname $bin)) b1 $bin $s
            SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $(dirname $bin)) b1 $bin $s --deterministic
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
