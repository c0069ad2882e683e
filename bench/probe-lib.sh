# Sourced by the bench/probe-*.sh scripts of a device call (bash).  On sourcing: cd to the
# repository root, $OUT (default /tmp/<script name>) made, a fresh kernel cache and tuning
# database for the call, the build's commit printed.  Then:
#   stamp TEXT                 a progress line with the seconds since the start
#   left                       seconds left of $LIMIT (default 585)
#   first_check BIN SPEC TILE [check options]
#                              one backward check under a short timeout (a hang in a kernel's
#                              handshake shows here; N = 1000, batch $FIRST_BATCH or 2): rc and the dQ line
#   sanitize_bg FILTER [T]     the four sanitizers of the check matrix's FILTER, in the
#                              background (T: its timeout, default 240); sanitize_report after `wait`
#   matrix FILTER... [-t T]    the check matrix's run of each FILTER, one after the other
#   pack_checks DIRS...        the matrix and sanitizer directories into $OUT/checks.tgz
#   checks FILTER T            the usual set: sanitize_bg FILTER T beside matrix FILTER regress
#                              -t (T - 10), then the report and pack_checks
#   bench_line BIN SPEC B N [bench options]
#                              one `spattn bench --json` (median of $BENCH_ITERS, default 100): ms, eff TF/s, kernels
#   fwd_first SPEC [check options]
#                              one forward check of build/spattn under a short timeout: rc, the O and LSE lines
#   fwd_first_checks           session 11's forward set: the ws tile on band and dense at d128 and d64, packed
#                              sequences (dense; exclusive, whose first query tiles have no key), GQA at odd N
#   bench_fwd BIN SPEC B N     one `spattn bench --pass fwd --json`: the spec's kernel and the dense one at that shape
#   ab_fwdbwd BIN...           the four shapes of DESIGN.md section 5, two rounds: `--pass fwd` of build/spattn
#                              once per shape, then `--pass fwdbwd` of each BIN in turn (the backward = the
#                              difference), until $LIMIT; into $OUT/bench.txt too
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/$(basename "$0" .sh)}; mkdir -p "$OUT"
T0=$(date +%s); LIMIT=${LIMIT:-585}
export SPATTN_CACHE_DIR=/tmp/spk-$T0 SPATTN_DB=/tmp/spattn-tune-$T0.db
echo "== build $(cat build/COMMIT 2>/dev/null), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"

stamp() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
left() { echo $((LIMIT - ($(date +%s) - T0))); }

# A binary other than build/spattn gets a kernel cache of its own (the cache is keyed by the
# code, but two builds of one kernel would otherwise share the cache's name).
cache_for() { [ "$1" = build/spattn ] && echo "$SPATTN_CACHE_DIR" || echo "$SPATTN_CACHE_DIR-$(basename "$(dirname "$1")")"; }

first_check() {
    local bin=$1 spec=$2 tile=$3; shift 3
    SPATTN_CACHE_DIR=$(cache_for "$bin") timeout "${FIRST_TIMEOUT:-60}" "$bin" check "$spec" --pass bwd --tile "$tile" \
        --batch "${FIRST_BATCH:-2}" --seq-len 1000 "$@" >"$OUT/first.txt" 2>&1
    stamp "first $bin $(basename "$spec" .yaml) $tile $* rc=$?: $(grep -E 'dQ|FAIL|rror' "$OUT/first.txt" | head -n 2 | tr -s ' ' | tr '\n' ' ')"
}

sanitize_bg() {
    local t=${2:-240}
    timeout "$t" python3 bench/check_matrix.py sanitize --filter "$1" --out "$OUT/s" --jobs 6 --timeout $((t - 20)) \
        >"$OUT/sanitize.txt" 2>&1 &
}
sanitize_report() {
    stamp "sanitize: $(tail -n 1 "$OUT/sanitize.txt")"
    grep -h "SUMMARY" "$OUT"/s/sanitize-*.log 2>/dev/null | sort | uniq -c
}

matrix() {
    local t=200 f
    [ "${*: -2:1}" = -t ] && { t=${*: -1}; set -- "${@:1:$#-2}"; }
    for f in "$@"; do
        timeout "$t" python3 bench/check_matrix.py run --filter "$f" --out "$OUT/m-$f" --jobs 8 --timeout $((t - 50)) \
            >"$OUT/matrix-$f.txt" 2>&1
        stamp "matrix $f: $(tail -n 1 "$OUT/matrix-$f.txt")"; grep -i "FAIL" "$OUT/matrix-$f.txt" | head -n 8
    done
}

pack_checks() {
    tar czf "$OUT/checks.tgz" -C "$OUT" "$@" 2>/dev/null; (cd "$OUT" && rm -rf "$@")
}

checks() {
    sanitize_bg "$1" "$2"
    matrix "$1" regress -t $(($2 - 10))
    wait
    sanitize_report
    pack_checks s "m-$1" m-regress
}

bench_line() {
    local bin=$1 spec=$2 B=$3 N=$4 r ms; shift 4
    r=$(SPATTN_CACHE_DIR=$(cache_for "$bin") timeout 60 "$bin" bench "$spec" --batch "$B" --seq-len "$N" --iters "${BENCH_ITERS:-100}" --json "$@" \
        2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("%.4f ms %.0f TF/s %s" % (d["spattn_ms"], d["spattn_eff_tflops"], d.get("kernel", "")))' 2>/dev/null)
    echo "bench $bin $(basename "$spec" .yaml) B=$B N=$N $*: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}

fwd_first() {
    local spec=$1; shift
    timeout "${FIRST_TIMEOUT:-45}" build/spattn check "$spec" --pass fwd "$@" >"$OUT/first-one.txt" 2>&1
    local rc=$?
    cat "$OUT/first-one.txt" >>"$OUT/first.txt"
    stamp "first $(basename "$spec" .yaml) $* rc=$rc: $(grep -E '^ *(O|LSE) |PASS|FAIL|rror' "$OUT/first-one.txt" | head -n 4 | tr -s ' ' | tr '\n' ' ')"
}

fwd_first_checks() {
    local spec pat
    : >"$OUT/first.txt"
    for spec in configs/olmoe-1b-7b.yaml configs/llama-8h-d64.yaml; do
        for pat in "" "--pattern dense"; do
            # shellcheck disable=SC2086
            fwd_first $spec --tile 128x128:w8:s2:ws --batch 2 --seq-len 1000 $pat
        done
    done
    fwd_first configs/olmoe-1b-7b.yaml --tile 128x128:w8:s2:ws --pattern dense --seq-lens 1000,1,65,333,2
    fwd_first configs/exclusive-16h.yaml --tile 128x128:w8:s2:ws --seq-lens 129,64,63,700,1
    fwd_first configs/gqa-32q-8kv.yaml --batch 1 --seq-len 1025
}

bench_fwd() {
    local bin=$1 spec=$2 B=$3 N=$4 r ms
    r=$(SPATTN_CACHE_DIR=$(cache_for "$bin") timeout 60 "$bin" bench "$spec" --batch "$B" --seq-len "$N" --pass fwd \
        --iters "${BENCH_ITERS:-100}" --json 2>"$OUT/bench-err.txt" | tail -n 1)
    ms=$(echo "$r" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("band %.4f ms %.0f TF/s, dense %.4f ms %.0f TF/s, %s" % (d["spattn_ms"], d["spattn_eff_tflops"], d["dense_ms"], d["dense_tflops"], d.get("kernel", "")))' 2>/dev/null)
    echo "bench $bin $(basename "$spec" .yaml) B=$B N=$N: ${ms:-$(tail -n 1 "$OUT/bench-err.txt")}"
}

ab_fwdbwd() {
    local rep shape bin
    {
    for rep in 1 2; do
        for shape in "configs/olmoe-1b-7b.yaml 1 16384" "configs/olmoe-1b-7b.yaml 4 4096" "configs/llama-8h-d64.yaml 4 4096" "configs/gqa-32q-8kv.yaml 1 16384"; do
            # shellcheck disable=SC2086
            [ $rep = 1 ] && bench_line build/spattn $shape --pass fwd
            for bin in "$@"; do
                [ "$(left)" -gt 10 ] || break 3
                # shellcheck disable=SC2086
                bench_line "$bin" $shape --pass fwdbwd
            done
        done
    done
    } 2>&1 | tee "$OUT/bench.txt"
}
