#!/bin/sh
# Runs the test suites: each C unit test binary, each Bats file and the
# Python package's CPU tests (python/tests/test_cpu.py) is one suite, and up
# to $JOBS suites run at once (default: the number of CPUs).
# A line per suite as it finishes, then every skipped test with its reason,
# the counts per kind, and last one line "N passed, N failed, N skipped"
# (CI greps for it).  Counts are test cases: a C test function, a Bats test
# or a Python unittest; the C assertions inside them are shown beside, not
# added in.
#
#   sh tests/run.sh            every suite            (make test)
#   QUICK=1 sh tests/run.sh    a subset under 30 s    (make test-quick): no
#                              NVRTC compiles but one per compiling suite
#
# Exits non-zero if anything failed.  The worker mode, "run.sh --one RESDIR
# KIND PATH", runs one suite and writes its counts into RESDIR.
BUILD=${BUILD:-build}
SPATTN=${SPATTN:-"$(pwd)/$BUILD/spattn"}
export SPATTN

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

if [ "${1:-}" = "--one" ]; then
    dir=$2 kind=$3 path=$4
    name=$(basename "$path")
    res="$dir/$kind-$name"
    t0=$(now)
    if [ "$kind" = unit ]; then
        # QUICK: leave out the cases that compile with NVRTC (their names say
        # "compile"); TEST_QUICK is read by tests/check.h.
        SPATTN_TEST_QUICK=${QUICK:-} "$path" >"$res.out" 2>"$res.log"
        rc=$?
        # "cases: P passed, F failed" then "N passed, N failed" (assertions).
        cases=$(grep -E '^cases: [0-9]+ passed, [0-9]+ failed' "$res.out" | tail -n 1)
        checks=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$res.out" | tail -n 1)
        p=$(echo "$cases" | sed -nE 's/^cases: ([0-9]+) passed.*/\1/p')
        f=$(echo "$cases" | sed -nE 's/^cases: [0-9]+ passed, ([0-9]+) failed.*/\1/p')
        a=$(echo "$checks" | sed -nE 's/^([0-9]+) passed.*/\1/p')
        [ -n "$p" ] || { p=0; f=1; }           # crashed before counting
        [ -n "$a" ] || a=0
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        s=0
        detail="$a checks"
    elif [ "$kind" = py ]; then
        # The package over this build's library and CLI; the script ends with
        # "P passed, F failed, S skipped" and lists its skips as "skipped: NAME (REASON)".
        # A sanitized library (make asan) needs its runtime preloaded into python.
        lib="$(pwd)/$BUILD/libspattn.so" pre=""
        if readelf -d "$lib" 2>/dev/null | grep -q 'libasan'; then
            pre="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
        fi
        LD_PRELOAD="$pre" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" SPATTN_LIB="$lib" \
            SPATTN_CLI="$SPATTN" python3 "$path" >"$res.out" 2>"$res.log"
        rc=$?
        counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$res.out" | tail -n 1)
        p=$(echo "$counts" | sed -nE 's/^([0-9]+) passed.*/\1/p')
        f=$(echo "$counts" | sed -nE 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/p')
        s=$(echo "$counts" | sed -nE 's/.* ([0-9]+) skipped$/\1/p')
        [ -n "$p" ] || { p=0; f=1; s=0; }      # died before counting
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        a=0
        detail=""
        grep -E '^skipped: ' "$res.out" | sed -E "s/^skipped: (.*)/  skipped: $name: \\1/" >"$res.skips"
    else
        if [ -n "${QUICK:-}" ] && [ "$name" = compile.bats ]; then
            bats --tap --filter 'prints a row per kernel' "$path" >"$res.log" 2>&1
        else
            bats --tap "$path" >"$res.log" 2>&1
        fi
        rc=$?
        p=$(grep -cE '^ok ' "$res.log")
        s=$(grep -cE '^ok .*# skip' "$res.log")
        f=$(grep -cE '^not ok ' "$res.log")
        p=$((p - s))
        grep -qE '^1\.\.[0-9]+' "$res.log" || f=$((f + 1))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        detail=""
        grep -E '^ok .*# skip' "$res.log" |
            sed -E "s/^ok [0-9]+ (.*) # skip ?(.*)/  skipped: $name: \\1 (\\2)/" >"$res.skips"
    fi
    echo "$kind $p $f $s $a" >"$res.count"
    line="$kind $name: $p passed, $f failed"
    [ "$s" -eq 0 ] || line="$line, $s skipped"
    [ -z "$detail" ] || line="$line ($detail)"
    echo "$line [$(secs "$t0" "$(now)") s]"
    exit 0
fi

[ -n "${JOBS:-}" ] || JOBS=$(nproc 2>/dev/null || echo 2)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
t0=$(now)

# The slowest suites first, so they do not start last.
{
    for t in "$BUILD"/tests/test_codegen "$BUILD"/tests/test_codegen_bwd "$BUILD"/tests/test_*; do
        case $t in *.d) continue ;; esac
        [ -x "$t" ] && echo "unit $t"
    done
    if command -v bats >/dev/null 2>&1; then
        for b in tests/bats/compile.bats tests/bats/*.bats; do echo "bats $b"; done
    fi
    echo "py python/tests/test_cpu.py"
} | awk '!seen[$0]++' >"$dir/suites"

n=$(wc -l <"$dir/suites" | tr -d ' ')
mode="every suite"; [ -z "${QUICK:-}" ] || mode="quick subset"
echo "running $n suites, $JOBS at a time ($mode)"
# Each line is "KIND PATH"; xargs -P runs up to JOBS workers at once.
xargs -n 2 -P "$JOBS" sh "$0" --one "$dir" <"$dir/suites"

passed=0 failed=0 skipped=0
up=0 uf=0 ua=0 bp=0 bf=0 bs=0 nu=0 nb=0 pp=0 pf=0 ps=0 np=0
for c in "$dir"/*.count; do
    [ -f "$c" ] || continue
    read -r kind p f s a <"$c"
    if [ "$kind" = unit ]; then
        up=$((up + p)); uf=$((uf + f)); ua=$((ua + a)); nu=$((nu + 1))
    elif [ "$kind" = py ]; then
        pp=$((pp + p)); pf=$((pf + f)); ps=$((ps + s)); np=$((np + 1))
    else
        bp=$((bp + p)); bf=$((bf + f)); bs=$((bs + s)); nb=$((nb + 1))
    fi
done
# A suite that left no counts (the worker itself died) is a failure.
missing=$((n - nu - nb - np))
[ "$missing" -le 0 ] || echo "$missing suites left no result"
[ "$missing" -ge 0 ] || missing=0

# What failed, suite by suite, after the progress lines so it is not interleaved.
for c in "$dir"/*.count; do
    [ -f "$c" ] || continue
    read -r kind p f s a <"$c"
    [ "$f" -ne 0 ] || continue
    base=${c%.count}
    echo
    echo "--- $kind $(basename "$base" | sed "s/^$kind-//"): $f failed"
    if [ "$kind" = unit ]; then
        grep -E '^FAIL' "$base.log" | head -n 20
        tail -n 5 "$base.log"
    elif [ "$kind" = py ]; then
        grep -E '^(FAIL|ERROR):|Error|^AssertionError' "$base.log" | head -n 40
        tail -n 5 "$base.log"
    else
        grep -E '^not ok' -A 12 "$base.log" | head -n 120
        grep -qE '^1\.\.[0-9]+' "$base.log" || tail -n 20 "$base.log"
    fi
done

cat "$dir"/*.skips 2>/dev/null | sort
[ -n "${QUICK:-}" ] && echo "quick: NVRTC unit cases and all but one compile.bats test left out; 'make test' runs them"
py="python: $pp passed, $pf failed, $ps skipped"
if command -v bats >/dev/null 2>&1; then
    echo "unit: $up passed, $uf failed ($nu binaries, $ua checks); bats: $bp passed, $bf failed, $bs skipped ($nb files); $py [$(secs "$t0" "$(now)") s]"
else
    echo "unit: $up passed, $uf failed ($nu binaries, $ua checks); bats: not installed, the CLI suites did not run; $py"
    bf=$((bf + 1))
fi
passed=$((up + bp + pp)); failed=$((uf + bf + pf + missing)); skipped=$((bs + ps))
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
