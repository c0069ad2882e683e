#!/usr/bin/env bash
# Issue 18's packed target: the forward on a mixed batch of packed sequences
# (one 16384, three 4096, four 1000, eight 100; the OLMoE spec) against a
# uniform batch of the same total work (allowed pairs), effective TF/s of
# both (allowed pairs only), and their ratio (target >= 0.90).
#
#   bash bench/packed-bench.sh                      # forward
#   PASS=fwdbwd bash bench/packed-bench.sh          # forward+backward
#   TUNE=1 bash bench/packed-bench.sh               # tune both keys first
#
# Environment: SPEC (configs/olmoe-1b-7b.yaml), LENS (the mixed batch),
# UNIFORM_N (4096: the uniform batch's length; its batch size is chosen so
# its allowed pairs match the mixed batch's), ITERS (50), SPATTN
# (build/spattn), LOGS (/tmp/packed-bench).  One JSON line per run in
# $LOGS/packed-bench.jsonl, the summary on stdout and in $LOGS/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
SPATTN=${SPATTN:-./build/spattn}
SPEC=${SPEC:-configs/olmoe-1b-7b.yaml}
LENS=${LENS:-16384,4096,4096,4096,1000,1000,1000,1000,100,100,100,100,100,100,100,100}
UNIFORM_N=${UNIFORM_N:-4096}
ITERS=${ITERS:-50}
PASS=${PASS:-fwd}
LOGS=${LOGS:-/tmp/packed-bench}
mkdir -p "$LOGS"
export SPATTN_CACHE_DIR=${SPATTN_CACHE_DIR:-/tmp/spattn-kernels} SPATTN_DB=${SPATTN_DB:-/tmp/spattn-tune.db}

# Allowed pairs of one sequence of length N (all heads), from the plan.
pairs_of() { "$SPATTN" plan "$SPEC" --seq-len "$1" --json | python3 -c 'import json,sys; print(sum(h["pairs"] for h in json.load(sys.stdin)["per_head"]))'; }

mixed_pairs=0
for n in $(echo "$LENS" | tr ',' ' '); do mixed_pairs=$((mixed_pairs + $(pairs_of "$n"))); done
one=$(pairs_of "$UNIFORM_N")
ub=$(python3 -c "print(max(1, round($mixed_pairs / $one)))")
nseq=$(echo "$LENS" | tr ',' '\n' | wc -l)
maxlen=$(echo "$LENS" | tr ',' '\n' | sort -n | tail -1)
echo "mixed: $nseq sequences ($LENS), $mixed_pairs allowed pairs; uniform: $ub x $UNIFORM_N, $((ub * one)) pairs" |
    tee "$LOGS/summary.txt"

if [ "${TUNE:-0}" = 1 ]; then   # the tuning keys: (sequences, longest) and the uniform batch
    kinds=fwd; [ "$PASS" = fwdbwd ] && kinds=all
    "$SPATTN" tune "$SPEC" --kind "$kinds" --batch "$nseq" --seq-len "$maxlen" >"$LOGS/tune-mixed.txt" 2>&1
    "$SPATTN" tune "$SPEC" --kind "$kinds" --batch "$ub" --seq-len "$UNIFORM_N" >"$LOGS/tune-uniform.txt" 2>&1
fi

"$SPATTN" bench "$SPEC" --seq-lens "$LENS" --pass "$PASS" --iters "$ITERS" --json >"$LOGS/mixed.json"
"$SPATTN" bench "$SPEC" --seq-len "$UNIFORM_N" --batch "$ub" --pass "$PASS" --iters "$ITERS" --json >"$LOGS/uniform.json"
cat "$LOGS/mixed.json" "$LOGS/uniform.json" >>"$LOGS/packed-bench.jsonl"
python3 - "$LOGS/mixed.json" "$LOGS/uniform.json" "$PASS" <<'PY' | tee -a "$LOGS/summary.txt"
import json, sys
m, u = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
print(f"pass {sys.argv[3]}")
for name, r in (("mixed (packed)", m), ("uniform", u)):
    print(f"  {name:15s} {r['spattn_ms']:8.3f} ms  {r['spattn_eff_tflops']:7.1f} eff TF/s  "
          f"dense {r['dense_ms']:8.3f} ms  ratio {r['work_ratio']:.4f}  {r['kernel']} ({r['config_source']})")
share = m["spattn_eff_tflops"] / u["spattn_eff_tflops"]
print(f"  packed / uniform effective TF/s: {share:.3f} (target >= 0.90: {'met' if share >= 0.90 else 'MISSED'})")
PY
