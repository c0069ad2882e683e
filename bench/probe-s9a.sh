#!/usr/bin/env bash
# Session 9, call 1: branches dq-writer and dq-writer-packed on the GPU host.
#   build/spattn      dq-writer-packed (dQ writer + packed sequences on the ws kernel)
#   build/dqw/spattn  dq-writer alone
#   build/old/spattn  main (dQ by the consumers' own TMA reduce-adds)
# 1. first checks under short timeouts, both new builds (a hang in the handshake shows here);
# 2. matrix bwd-ws (with packed cases) + regressions, four sanitizers (with packed), build/spattn;
# 3. spattn bench --pass fwdbwd, default and --deterministic, the three builds interleaved.
source "$(dirname "$0")/probe-lib.sh"
for bin in build/dqw/spattn build/spattn; do
    for t in "olmoe-1b-7b 64x128:s2:ws" "llama-8h-d64 64x64:s3:ws" "gqa-32q-8kv 64x128:s2:ws"; do
        set -- $t
        first_check $bin configs/$1.yaml $2
        first_check $bin configs/$1.yaml $2 --deterministic
    done
done
timeout 300 build/spattn check configs/llama-8h-d64.yaml --pass bwd --tile 64x64:s3:ws --seq-lens 1000,1,65,333 --json >"$OUT/packed.txt" 2>&1
stamp "packed check rc=$?"
sanitize_bg bwd-ws 280
matrix bwd-ws regress -t 240
wait
sanitize_report
pack_checks s m-bwd-ws m-regress
{
for rep in 1 2; do
    for s in "olmoe-1b-7b 1 16384" "olmoe-1b-7b 4 4096" "gqa-32q-8kv 1 16384" "llama-8h-d64 4 4096"; do
        set -- $s
        for bin in build/old/spattn build/dqw/spattn build/spattn; do
            bench_line $bin configs/$1.yaml $2 $3 --pass fwdbwd
            bench_line $bin configs/$1.yaml $2 $3 --pass fwdbwd --deterministic
        done
    done
done
} 2>&1 | tee "$OUT/bench.txt"
stamp done
