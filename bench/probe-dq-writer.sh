#!/usr/bin/env bash
# Branch dq-writer on the GPU host, one call (bench/NOTES-bwd.md, "Branch dq-writer"):
#   1. a first check per head_dim and mode (a hang in the new handshake shows here, under a
#      short timeout);
#   2. the bwd-ws and bwd-ws-det check matrix (96 cases) and the issue-13 regressions, the four
#      sanitizers on bwd-ws (racecheck: the staging handshake is new) in the background;
#   3. spattn bench --pass fwdbwd (default and --deterministic) of this build against
#      build/old (main's build, copied there before the call), interleaved.
# Set up here: git worktree of main -> make -> cp build/spattn to build/old/spattn of this tree;
# carry build/spattn build/libspattn.so build/tools build/COMMIT build/old.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-dq-writer}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null)"
for t in "olmoe-1b-7b 64x128:s2:ws" "llama-8h-d64 64x64:s3:ws" "gqa-32q-8kv 64x128:s2:ws"; do
    set -- $t
    for det in "" --deterministic; do
        timeout 60 build/spattn check configs/$1.yaml --pass bwd --tile $2 --batch 2 --seq-len 1000 $det >"$OUT/first.txt" 2>&1
        stamp "first check $1 $2 $det rc=$?: $(grep -E 'dQ|FAIL' "$OUT/first.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
    done
done
timeout 240 python3 bench/check_matrix.py sanitize --filter bwd-ws --out "$OUT/s" --jobs 6 --timeout 200 >"$OUT/sanitize.txt" 2>&1 &
for f in bwd-ws regress; do
    timeout 200 python3 bench/check_matrix.py run --filter $f --out "$OUT/m-$f" --jobs 8 --timeout 150 >"$OUT/matrix-$f.txt" 2>&1
    stamp "matrix $f: $(tail -n 1 "$OUT/matrix-$f.txt")"; grep -i "FAIL" "$OUT/matrix-$f.txt" | head -n 8
done
wait
stamp "sanitize: $(tail -n 1 "$OUT/sanitize.txt")"
grep -h "SUMMARY" "$OUT"/s/sanitize-*.log 2>/dev/null | sort | uniq -c
tar czf "$OUT/checks.tgz" -C "$OUT" s m-bwd-ws m-regress 2>/dev/null; rm -rf "$OUT/s" "$OUT/m-bwd-ws" "$OUT/m-regress"
b1() {   # binary spec batch N extra...
    local bin=$1 spec=$2 B=$3 N=$4; shift 4
    r=$(timeout 60 $bin bench "configs/$spec.yaml" --batch "$B" --seq-len "$N" --pass fwdbwd --iters 100 --json "$@" 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms" % d["spattn_ms"])' 2>/dev/null)
    echo "bench $bin $spec B=$B N=$N $*: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}
{
for rep in 1 2; do
    for s in "olmoe-1b-7b 1 16384" "olmoe-1b-7b 4 4096" "gqa-32q-8kv 1 16384" "llama-8h-d64 4 4096"; do
        for bin in build/old/spattn build/spattn; do
            SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $(dirname $bin)) b1 $bin $s
            SPATTN_CACHE_DIR=$SPATTN_CACHE_DIR-$(basename $(dirname $bin)) b1 $bin $s --deterministic
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
