#!/bin/sh
# Runs every test: the C unit test binaries, then the Bats suites.  Prints
# each suite's result and, last, one line "N passed, N failed, N skipped".
# Exits non-zero if anything failed.
BUILD=${BUILD:-build}
export SPATTN="$(pwd)/$BUILD/spattn"
passed=0 failed=0 skipped=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    "$t" >"$log" 2>"$log.err"
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    [ -n "$p" ] || { p=0; f=1; }
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi   # crashed without counting
    if [ "$f" -ne 0 ]; then
        echo "unit $(basename "$t"): $p passed, $f failed (exit $rc)"
        grep -E '^FAIL' "$log.err" | head -n 20
        tail -n 5 "$log.err"
    else
        echo "unit $(basename "$t"): $p passed"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    rm -f "$log.err"
done

if command -v bats >/dev/null 2>&1; then
    bats --tap tests/bats >"$log" 2>&1
    p=$(grep -cE '^ok ' "$log" | tr -d ' ')
    s=$(grep -cE '^ok .*# skip' "$log" | tr -d ' ')
    f=$(grep -cE '^not ok ' "$log" | tr -d ' ')
    p=$((p - s))
    if ! grep -qE '^1\.\.[0-9]+' "$log"; then f=$((f + 1)); cat "$log"; fi
    grep -E '^not ok' -A 12 "$log" | head -n 120
    echo "bats: $p passed, $f failed, $s skipped"
    grep -E '^ok .*# skip' "$log" | sed 's/^ok [0-9]* /  skipped: /' | sort | uniq -c | head -n 20
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
else
    echo "bats not installed: the CLI suites did not run"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
