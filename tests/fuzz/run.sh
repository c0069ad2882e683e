#!/bin/sh
# Builds the libFuzzer targets of tests/fuzz against BUILD/libspattn.a (made
# by `make fuzz` with -fsanitize=fuzzer-no-link,address,undefined) and runs
# each for SECONDS, starting from the seed corpus in tests/fuzz/corpus/NAME
# (new inputs go to BUILD/corpus/NAME, crashes to BUILD/crash-NAME-*).
# Prints one line per target, "fuzz NAME: ok, R runs in S s" or
# "fuzz NAME: FAILED ...", and exits 1 if any target found a crash, a leak
# or undefined behaviour.
#
#   sh tests/fuzz/run.sh BUILD SECONDS
BUILD=${1:-build-fuzz}
SECONDS_EACH=${2:-60}
CC=${FUZZ_CC:-clang}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
LIBS="-Wl,-Bstatic -lyaml -lsqlite3 -Wl,-Bdynamic -L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lnvrtc -ldl -lm -pthread"
failed=0
for t in spec npy jsonl; do
    bin="$BUILD/fuzz_$t"
    if ! $CC -O1 -g $SAN -std=c11 -D_GNU_SOURCE -I. -I"$CUDA_HOME/include" -o "$bin" "tests/fuzz/fuzz_$t.c" \
            "$BUILD/libspattn.a" $LIBS; then
        echo "fuzz $t: FAILED to build"
        failed=1
        continue
    fi
    mkdir -p "$BUILD/corpus/$t"
    log="$BUILD/fuzz_$t.log"
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$bin" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$BUILD/crash-$t-" "$BUILD/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    secs=$SECONDS_EACH
    if [ "$rc" -eq 0 ]; then
        echo "fuzz $t: ok, ${runs:-?} runs in $secs s"
    else
        echo "fuzz $t: FAILED (exit $rc; log $log; inputs $BUILD/crash-$t-*)"
        grep -E 'ERROR: |SUMMARY: |runtime error' "$log" | head -n 5 | sed "s/^/fuzz $t:   /"
        failed=1
    fi
done
exit $failed
