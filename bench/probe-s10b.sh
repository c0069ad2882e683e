#!/usr/bin/env bash
# Session 10, call 2: the ws backward's warpgroups out of lock step (build/c2: commit 4d4c455),
# plus dq_full by one arrival per warp (build/spattn), [plus the tile-major block order
# (build/c3, if present)], against main (build/old): first checks under short timeouts, the
# bwd-ws matrix and regressions with the four sanitizers beside them (build/spattn), then
# spattn bench --pass fwdbwd, default and --deterministic, at the four shapes, interleaved.
source "$(dirname "$0")/probe-lib.sh"
printf 'name: gqa-d64\nheads: 16\nkv_heads: 4\nhead_dim: 64\npattern: spattn\n' >/tmp/gqa-d64.yaml
for spec in configs/olmoe-1b-7b.yaml configs/gqa-32q-8kv.yaml configs/llama-8h-d64.yaml /tmp/gqa-d64.yaml; do
    t=64x128:s2:ws; case $spec in *d64*) t=64x64:s3:ws;; esac
    FIRST_TIMEOUT=40 first_check build/spattn $spec $t
    FIRST_TIMEOUT=40 first_check build/spattn $spec $t --deterministic
done
[ -x build/c3/spattn ] && FIRST_TIMEOUT=40 first_check build/c3/spattn configs/olmoe-1b-7b.yaml 64x128:s2:ws
sanitize_bg bwd-ws 230
matrix bwd-ws regress -t 210
wait
sanitize_report
pack_checks s m-bwd-ws m-regress
BINS="build/old/spattn build/c2/spattn build/spattn"; [ -x build/c3/spattn ] && BINS="$BINS build/c3/spattn"
{
for rep in 1 2; do
    for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
        for bin in $BINS; do
            [ "$(left)" -gt 15 ] || break 3
            bench_line $bin $shape --pass fwdbwd
            [ $rep = 1 ] && bench_line $bin $shape --pass fwdbwd --deterministic
        done
    done
    [ $rep = 1 ] && for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
        bench_line build/old/spattn $shape --pass fwd
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
