#!/usr/bin/env bash
# Session 16, call 4: the head-by-head default order (build/, WS_HEAD_MAJOR) against main before
# it (build/old/, tile-major) in the fair harness's own timing (bench/peers.py: both GPU states,
# L2 flushed, outputs checked), spattn alone (--peers none), at (1,16,16,16384,128), the two
# libraries alternating, one process each.
source "$(dirname "$0")/probe-lib.sh"
export PYTHONPATH=$PWD/python SPATTN_CLI=$PWD/build/spattn
for rep in 1 2 3 4; do
    for lib in build/old/libspattn.so build/libspattn.so; do
        [ "$(left)" -gt 35 ] || break 2
        SPATTN_LIB=$PWD/$lib timeout 60 python3 bench/peers.py --shapes 1 --peers none --out "$OUT/p.md" 2>"$OUT/p.log"
        python3 - "$OUT/p.log" "$lib" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    if line.startswith("{") and '"state"' in line:
        r = json.loads(line); rows[(r["state"], r["pass"])] = r
for st in ("sustained", "cool"):
    f, b = rows[(st, "fwd")], rows[(st, "fwdbwd")]
    fm, bm = f["ms"]["spattn"], b["ms"]["spattn"]
    print(f"{sys.argv[2]:24s} {st:9s} fwd {fm:.4f} fwdbwd {bm:.4f} det {b['ms']['spattn det']:.4f} "
          f"bwd TF/s {2.5 * f['eff_tflops']['spattn'] * fm / (bm - fm):.1f} sm {b['sm_mhz'].get('spattn')}")
PY
    done
done 2>&1 | tee "$OUT/ab.txt"
stamp done
