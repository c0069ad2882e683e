#!/usr/bin/env bash
# Session 13, call 3 (commit of the final backward kernels): d64 first checks (its consumer no
# longer tests for a warpgroup skip), the bwd-ws matrix and regressions beside the four
# sanitizers of bwd-ws (persistent cases included), the Python GPU tests (the C API's workspace
# now holds the work counter), then the four sanitizers of the forward families (fwd-mma and
# fwd-wgmma were not rerun in session 12).
source "$(dirname "$0")/probe-lib.sh"
for mode in "" --deterministic; do
    FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s3:ws $mode
    FIRST_TIMEOUT=40 first_check build/spattn configs/llama-8h-d64.yaml 64x64:s2:ws $mode
done
checks bwd-ws 200
export SPATTN_LIB=$PWD/build/libspattn.so SPATTN_CLI=$PWD/build/spattn PYTHONPATH=$PWD/python
timeout 90 python3 python/tests/test_gpu.py >"$OUT/test_gpu.out" 2>"$OUT/test_gpu.log"
stamp "test_gpu rc=$?: $(tail -n 3 "$OUT/test_gpu.log" | tr '\n' ' ')"
grep -E '^(FAIL|ERROR):' "$OUT/test_gpu.log" | head
mkdir -p "$OUT/f"
timeout $(( $(left) - 10 )) python3 bench/check_matrix.py sanitize --filter fwd- --out "$OUT/f" --jobs 8 --timeout 150 >"$OUT/sanitize-fwd.txt" 2>&1
stamp "sanitize fwd: $(tail -n 1 "$OUT/sanitize-fwd.txt")"
grep -h "SUMMARY" "$OUT"/f/sanitize-*.log 2>/dev/null | sort | uniq -c
tar czf "$OUT/fwd-san.tgz" -C "$OUT" f && rm -rf "$OUT/f"
stamp done
