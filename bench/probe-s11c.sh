#!/usr/bin/env bash
# Session 11, call 3: the fair benchmark of the final build (bench/peers.py, DESIGN.md section
# 5: Flex, Flex tuned, cuDNN, spattn dense and deterministic, forward and forward+backward by
# torch.autograd.grad, L2 flushed, outputs checked), then the Python package's GPU tests.
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so SPATTN_CLI=$PWD/build/spattn PYTHONPATH=$PWD/python
timeout 420 python3 bench/peers.py --shapes default --out "$OUT/peers.md" 2>"$OUT/peers.log"
stamp "peers rc=$?"
cat "$OUT/peers.md"
t=$(( $(left) - 10 )); [ "$t" -gt 90 ] && t=90
if [ "$t" -gt 30 ]; then
    timeout "$t" python3 python/tests/test_gpu.py >"$OUT/test_gpu.out" 2>"$OUT/test_gpu.log"
    stamp "test_gpu rc=$?: $(tail -n 1 "$OUT/test_gpu.out") $(grep -E '^(FAIL|ERROR):' "$OUT/test_gpu.log" | head -n 5 | tr '\n' ' ')"
fi
stamp done
