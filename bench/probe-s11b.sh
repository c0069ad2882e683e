#!/usr/bin/env bash
# Session 11, call 2: the forward's tile kind off the path between the products (fwd-kind,
# ef2ed31) and the deterministic backward's own config (det-config: 64x64:s2:ws at d64) with
# the per-tile deterministic order, in build/spattn, against build/old (dbdabb1: the same
# backward, the forward before fwd-kind).  probe-s11-fwd.sh's first checks, then the fwd-ws,
# bwd-ws (and -det), bwd-wgmma-det families of the matrix and the regressions, with the four
# sanitizers of fwd-ws and of bwd-ws beside them; then spattn bench --pass fwd (band and
# dense) old/new interleaved, 2 rounds, and the d64 backward in both modes with its default
# configs.
LIMIT=${LIMIT:-560}
source "$(dirname "$0")/probe-lib.sh"
fwd_first_checks
FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s2:ws --deterministic
FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s3:ws --deterministic

for f in fwd-ws bwd-ws; do
    timeout 260 python3 bench/check_matrix.py sanitize --filter $f --out "$OUT/s-$f" --jobs 5 --timeout 240 \
        >"$OUT/sanitize-$f.txt" 2>&1 &
done
matrix fwd-ws bwd-ws bwd-wgmma-det regress -t 250
wait
for f in fwd-ws bwd-ws; do
    stamp "sanitize $f: $(tail -n 1 "$OUT/sanitize-$f.txt")"
    grep -h "SUMMARY" "$OUT"/s-$f/sanitize-*.log 2>/dev/null | sort | uniq -c
done
pack_checks s-fwd-ws s-bwd-ws m-fwd-ws m-bwd-ws m-bwd-wgmma-det m-regress

{
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" \
                 "configs/gqa-32q-8kv.yaml 1 16384"; do
        for bin in build/old/spattn build/spattn; do
            [ "$(left)" -gt 15 ] || break 3
            bench_fwd $bin $shape
        done
    done
    for mode in "" --deterministic; do
        [ "$(left)" -gt 15 ] || break 2
        bench_line build/spattn configs/llama-8h-d64.yaml 4 4096 --pass fwdbwd $mode
    done
    stamp "bench round $rep"
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
