#!/usr/bin/env bash
# Session 14, call 4: the final kernels.  The default mode's machine code is e34dcb8's again
# (session 13's measured kernel, but for the shared-memory base: the deterministic mode's
# fields are now last in bwd_ws_shared and its consumer alone stores the staged tile's KV
# tile).  So: first checks of both modes, the bwd-ws matrix and regressions beside the four
# sanitizers of bwd-ws (all done before the timing), then the fair
# benchmark's (1,16,16,16384,128) twice with cuDNN only (the backward alone >= 400 TF/s and
# the deterministic ratio, peers.py --shapes 1 --peers cudnn).
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so SPATTN_CLI=$PWD/build/spattn PYTHONPATH=$PWD/python
for spec_tile in "configs/olmoe-1b-7b.yaml 64x128:s2:ws" "configs/llama-8h-d64.yaml 64x64:s3:ws" "configs/gqa-32q-8kv.yaml 64x128:s2:ws"; do
    FIRST_TIMEOUT=40 first_check build/spattn $spec_tile --deterministic
    FIRST_TIMEOUT=40 first_check build/spattn $spec_tile
done
checks bwd-ws 150
for rep in 1 2; do
    [ "$(left)" -gt 90 ] || break
    timeout $(( $(left) - 5 )) python3 bench/peers.py --shapes 1 --peers cudnn --out "$OUT/rep$rep.md" 2>"$OUT/rep$rep.log"
    stamp "rep $rep rc=$?"; cat "$OUT/rep$rep.md"
done
stamp done
