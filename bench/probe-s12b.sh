#!/usr/bin/env bash
# Session 12: the fair benchmark (bench/peers.py) with every time taken in two GPU states, cool
# and sustained (the H200's power cap, RESULTS.md S12.1), with nvidia-smi's clock, power and
# clock-event reasons sampled beside it.  PYTEST_AFTER=1 (session 14): then the Python GPU tests
# in what time is left, the kernel cache warm from the benchmark.
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so SPATTN_CLI=$PWD/build/spattn PYTHONPATH=$PWD/python
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active \
    --format=csv -lms 250 >"$OUT/smi.csv" 2>&1 &
SMI=$!
timeout $(( $(left) - 5 )) python3 bench/peers.py --shapes "${SHAPES:-default}" --out "$OUT/peers.md" 2>"$OUT/peers.log"
stamp "peers rc=$?"
kill $SMI
cat "$OUT/peers.md"
python3 - "$OUT/peers.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{") and '"state"' in line:
        r = json.loads(line)
        print(r["state"], r["shape"], r["pass"], " ".join(f"{k}={v}" for k, v in r["sm_mhz"].items()))
PY
if [ "${PYTEST_AFTER:-0}" = 1 ]; then
    timeout $(( $(left) - 3 )) python3 python/tests/test_gpu.py >"$OUT/pytest-gpu.txt" 2>&1
    stamp "python GPU tests rc=$?: $(tail -n 1 "$OUT/pytest-gpu.txt")"
fi
stamp done
