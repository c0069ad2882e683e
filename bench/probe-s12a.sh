#!/usr/bin/env bash
# Session 12, call 3: the forward's time against the SM clock (bench/clock_probe.py), with
# nvidia-smi's clocks, power and clock-event reasons sampled beside it.
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so
nvidia-smi -q -d PERFORMANCE,POWER,CLOCK | grep -vE "^\s*$" | head -70 >"$OUT/smi-before.txt"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,temperature.memory,clocks_event_reasons.active \
    --format=csv -lms 100 >"$OUT/smi.csv" 2>&1 &
SMI=$!
for s in 0 1 2; do
    timeout 60 python3 bench/clock_probe.py $s --seconds 3
    timeout 60 python3 bench/clock_probe.py $s --seconds 3 --flush
done
kill $SMI
grep -E "Power Limit|Clocks Event|Slowdown|Cap|Max Clocks|SM  " "$OUT/smi-before.txt" | head -30
python3 - "$OUT/smi.csv" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))[1:]
c = collections.Counter((r[1].strip(), r[6].strip()) for r in rows if len(r) > 6)
print("nvidia-smi samples (sm clock, event reasons):", c.most_common(12))
p = [float(r[3].split()[0]) for r in rows if len(r) > 6 and r[3].strip()[0].isdigit()]
print("power W: max %.0f median %.0f" % (max(p), sorted(p)[len(p)//2]) if p else "no power")
PY
stamp done
