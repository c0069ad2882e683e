#!/usr/bin/env bash
# Session 8, device call 6: the final build's backward checked, then the fair benchmark.
#   1. the check matrix of bwd-ws and bwd-ws-det (96 cases) and the issue-13 regressions
#      (the default deterministic backward), the four sanitizers on bwd-ws (in the
#      background, done before any timing), a packed backward at d64 with the default config;
#   2. bench/peers.py (DESIGN.md section 5: Flex and Flex tuned, cuDNN, spattn dense and
#      deterministic, forward+backward by torch.autograd.grad, outputs checked; spattn's
#      configs from the heuristic: no tuning in this call).
source "$(dirname "$0")/probe-lib.sh"
sanitize_bg bwd-ws 200
matrix bwd-ws regress -t 170
timeout 60 build/spattn check configs/llama-8h-d64.yaml --pass bwd --seq-lens 1000,1,65,333 --json >"$OUT/packed.txt" 2>&1
stamp "packed default bwd d64 rc=$?: $(grep -o '"config_source":"[^"]*"\|"kernel":"[^"]*"' "$OUT/packed.txt" | head -n 2 | tr '\n' ' ')"
wait
sanitize_report
pack_checks s m-bwd-ws m-regress
export SPATTN_LIB=$PWD/build/libspattn.so PYTHONPATH=$PWD/python
timeout $(( $(left) - 5 )) python3 bench/peers.py --shapes default --out "$OUT/peers.md" 2>"$OUT/peers.log"
stamp "peers rc=$?"
grep -E "^# " "$OUT/peers.log"; cat "$OUT/peers.md"
stamp done
