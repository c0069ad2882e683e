#!/usr/bin/env bash
# Session 8, device call 6: the final build's backward checked, then the fair benchmark.
#   1. the check matrix of bwd-ws and bwd-ws-det (96 cases) and the issue-13 regressions
#      (the default deterministic backward), the four sanitizers on bwd-ws (in the
#      background, done before any timing), a packed backward at d64 with the default config;
#   2. bench/peers.py (DESIGN.md section 5: Flex and Flex tuned, cuDNN, spattn dense and
#      deterministic, forward+backward by torch.autograd.grad, outputs checked; spattn's
#      configs from the heuristic: no tuning in this call).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/probe-s8f}; mkdir -p "$OUT"
T0=$(date +%s); LIMIT=${LIMIT:-585}
left() { echo $((LIMIT - ($(date +%s) - T0))); }
stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
timeout 200 python3 bench/check_matrix.py sanitize --filter bwd-ws --out "$OUT/s" --jobs 6 --timeout 180 >"$OUT/sanitize.txt" 2>&1 &
for f in bwd-ws regress; do
    timeout 150 python3 bench/check_matrix.py run --filter $f --out "$OUT/m-$f" --jobs 8 --timeout 120 >"$OUT/matrix-$f.txt" 2>&1
    stamp "matrix $f: $(tail -n 1 "$OUT/matrix-$f.txt")"; grep -i "FAIL" "$OUT/matrix-$f.txt" | head -n 8
done
timeout 60 build/spattn check configs/llama-8h-d64.yaml --pass bwd --seq-lens 1000,1,65,333 --json >"$OUT/packed.txt" 2>&1
stamp "packed default bwd d64 rc=$?: $(grep -o '"config_source":"[^"]*"\|"kernel":"[^"]*"' "$OUT/packed.txt" | head -n 2 | tr '\n' ' ')"
wait
stamp "sanitize: $(tail -n 1 "$OUT/sanitize.txt")"
grep -h "SUMMARY" "$OUT"/s/sanitize-*.log 2>/dev/null | sort | uniq -c
tar czf "$OUT/checks.tgz" -C "$OUT" s m-bwd-ws m-regress 2>/dev/null; rm -rf "$OUT/s" "$OUT/m-bwd-ws" "$OUT/m-regress"
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
timeout $(( $(left) - 5 )) python3 bench/peers.py --shapes default --out "$OUT/peers.md" 2>"$OUT/peers.log"
stamp "peers rc=$?"
grep -E "^# " "$OUT/peers.log"; cat "$OUT/peers.md"
stamp done
