#!/usr/bin/env bash
# Session 11, one device call: the forward's tile kind off the path between the products (branch
# fwd-kind: kernels/fwd_ws.cuh ws_tile_of; bench/NOTES-fwd-ws.md "Session 11") in build/spattn,
# against build/old (main before it, carried), in ~500 s:
#   1. first checks of the new build under short timeouts (a wrong "no mask" shows here first):
#      the default tile on the band and the dense pattern at d128 and d64, odd N; packed sequences
#      (dense; exclusive, whose first query tiles have no key);
#   2. the fwd-ws family of the check matrix (79 cases: every pattern with dense among them, empty
#      query tiles, odd N, GQA, every tile of the tuner's space, packed sequences) and the
#      forward's issue-13 regression (empty query tiles, the default kernel), with the four
#      sanitizers of fwd-ws beside them;
#   3. spattn bench --pass fwd, old and new interleaved, 3 rounds, at (1,16,16,16384,128),
#      (4,16,16,4096,128), (4,8,8,4096,64) and (1,32,8,16384,128): each line has the spec's band
#      kernel and this engine's dense causal kernel at the same shape (bench's dense_ms: the ws
#      kernel with BANDS_DENSE, default tile), so the dense A/B comes with every shape.
# Logs under $OUT (default /tmp/probe-s11-fwd): first.txt, checks.tgz, bench.txt.
LIMIT=${LIMIT:-500}
source "$(dirname "$0")/probe-lib.sh"
[ -x build/old/spattn ] || echo "== no build/old/spattn: the A/B below has the new build only"

# First checks of the new build (probe-lib.sh: the check's own reference; rc, the O and LSE lines).
fwd_first_checks

sanitize_bg fwd-ws 200
matrix fwd-ws "regress-13 fwd-empty" -t 190
wait
sanitize_report
pack_checks s m-fwd-ws "m-regress-13 fwd-empty"

{
for rep in 1 2 3; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" \
                 "configs/gqa-32q-8kv.yaml 1 16384"; do
        for bin in build/old/spattn build/spattn; do
            [ -x "$bin" ] || continue
            [ "$(left)" -gt 15 ] || break 3
            # shellcheck disable=SC2086
            bench_fwd $bin $shape
        done
    done
    stamp "bench round $rep"
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
