#!/usr/bin/env bash
# Session 12, call A: the forward's work list (runtime/fwd_sched.c, kernels/scheduler.cuh
# item_walk): first checks of the new build under short timeouts (band and dense at d128 and
# d64, packed sequences on the static order, exclusive with empty query tiles, GQA at odd N),
# then the fwd-ws family of the check matrix and the forward's issue-13 regression with the
# four sanitizers of fwd-ws beside them.  The fair benchmark follows in its own call
# (probe-s12b.sh) only if these are clean.
LIMIT=${LIMIT:-240}
source "$(dirname "$0")/probe-lib.sh"
fwd_first_checks
grep -c "FAIL\|rror" "$OUT/first.txt" | sed 's/^/first checks with FAIL or error lines: /'
sanitize_bg fwd-ws 170
matrix fwd-ws "regress-13 fwd-empty" -t 165
wait
sanitize_report
pack_checks s m-fwd-ws "m-regress-13 fwd-empty"
stamp done
