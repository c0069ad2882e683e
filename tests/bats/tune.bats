#!/usr/bin/env bats
# spattn tune (spattn-tune(1)).  The database side runs anywhere on the
# deterministic fake GPU (SPATTN_TUNE_FAKE=1) against the real SQLite: rows
# written, the wrong candidate rejected, skip and --force, two writers at
# once, damaged and newer files refused untouched, Ctrl-C.  One real tune
# runs on the GPU host.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    OLMOE="$ROOT/configs/olmoe-1b-7b.yaml"
    T=$(mktemp -d)
    unset SPATTN_TUNE_FAKE XDG_CACHE_HOME
    export HOME="$T/home" SPATTN_CACHE_DIR="$T/kernels"
    DB="$T/tune.db"
    export SPATTN_DB="$DB"
}

teardown() { rm -rf "$T"; }

have_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1; }
fake() { SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$@"; }
# fake --json ARGS: run, stdout only, and its rows' tiles must be the database's (of kind $KIND, default all)
fake_json() {
    run bash -c "SPATTN_TUNE_FAKE=1 '$SPATTN' tune $* --json 2>/dev/null"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq -s -c '[.[].tile]')" = "$("$SPATTN" db export ${KIND:+--kind $KIND} | jq -s -c '[.[].tile]')" ]
}
rows() { "$SPATTN" db export --db "${1:-$DB}" | jq -s length; }

# ---- usage ------------------------------------------------------------------

@test "tune --help lists every option, exit 0" {
    run "$SPATTN" tune --help
    [ "$status" -eq 0 ]
    for o in --batch --seq-len --kind --decode --kv-len --new-tokens --budget --force --threads --iters --layer-index \
             --db --gpu --json; do
        [[ "$output" == *"$o"* ]] || { echo "missing $o"; false; }
    done
}

@test "tune: bad --kind, exit 2" {
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$OLMOE" --kind sideways
    [ "$status" -eq 2 ]
    [[ "$output" == *"--kind: 'sideways' is not fwd, bwd, bwd-det or all"* ]]
    [ ! -e "$DB" ]
}

@test "tune: --budget nan (and nan in any case), exit 2" {
    for b in nan NaN -nan; do
        run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$OLMOE" --budget "$b"
        [ "$status" -eq 2 ] || { echo "--budget $b: exit $status"; false; }
        [[ "$output" == *"--budget must be a positive number of seconds"* ]]
    done
}

@test "tune: --budget 0 and a negative budget, exit 2" {
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$OLMOE" --budget 0
    [ "$status" -eq 2 ]
    [[ "$output" == *"--budget must be a positive number of seconds"* ]]
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$OLMOE" --budget -5
    [ "$status" -eq 2 ]
    [ ! -e "$DB" ]
}

@test "tune: a missing or invalid spec, exit 2, nothing written" {
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$T/nope.yaml"
    [ "$status" -eq 2 ]
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$ROOT/tests/fixtures/bad/heads-zero.yaml"
    [ "$status" -eq 2 ]
    [[ "$output" == *"heads-zero.yaml:"*"error:"* ]]
    [ ! -e "$DB" ]
}

@test "tune: without a GPU (and without the fake), exit 3, no database created" {
    have_gpu && skip "a GPU is present"
    run "$SPATTN" tune "$OLMOE" --seq-len 64
    [ "$status" -eq 3 ]
    [[ "$output" == *"libcuda.so.1"* ]]
    [ ! -e "$DB" ]
    # SPATTN_TUNE_FAKE=0 is "off"
    run env SPATTN_TUNE_FAKE=0 "$SPATTN" tune "$OLMOE" --seq-len 64
    [ "$status" -eq 3 ]
}

# ---- the fake GPU: what lands in the database --------------------------------

@test "fake tune writes one row per (batch, bucket); db list and export show them" {
    run fake "$OLMOE" --batch 1,2 --seq-len 64,1000
    [ "$status" -eq 0 ]
    [[ "$output" == *"4 result(s) saved to $DB"* ]]
    [ "$(rows)" -eq 4 ]
    run bash -c "'$SPATTN' db list 2>/dev/null"      # through SPATTN_DB
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 5 ]
    [[ "$output" == *"spattn fake GPU"*"fwd"*"spattn/h16kv16/d128/bf16/L=N"* ]]
    "$SPATTN" db export >"$T/x.jsonl"
    # 1000 is stored under its power-of-two bucket; every row has a tile
    [ "$(jq -s -c '[.[] | [.batch, .seq_bucket]] | sort' "$T/x.jsonl")" = "[[1,64],[1,1024],[2,64],[2,1024]]" ]
    jq -s -e 'all(.[]; (.tile | test("^[0-9]+x[0-9]+:w[0-9]+:s[0-9]+$")) and .kind == "fwd"
                 and .gpu_name == "spattn fake GPU" and .candidates > 1 and .median_ms > 0 and .eff_tflops > 0
                 and .tile == "\(.bm)x\(.bn):w\(.warps):s\(.stages)")' "$T/x.jsonl"
}

@test "fake tune: --db wins over SPATTN_DB" {
    run fake "$OLMOE" --seq-len 128 --db "$T/other.db"
    [ "$status" -eq 0 ]
    [ "$(rows "$T/other.db")" -eq 1 ]
    [ ! -e "$DB" ]
}

@test "fake tune: the wrong candidate is rejected, logged, and never wins" {
    run fake "$OLMOE" --batch 1 --seq-len 256
    [ "$status" -eq 0 ]
    line=$(echo "$output" | grep 'rejected' | grep -v 'candidates timed' | head -n 1)
    [[ "$line" == "tune: rejected "*": wrong result (fake backend)" ]]
    wrong=$(echo "$line" | sed -E 's/^tune: rejected ([^:]+:[^:]+:[^:]+): .*/\1/')
    [[ "$wrong" =~ ^[0-9]+x[0-9]+:w[0-9]+:s[0-9]+$ ]]
    [[ "$output" == *"1 rejected"* ]]
    winner=$("$SPATTN" db export | jq -r .tile)
    [ -n "$winner" ] && [ "$winner" != "$wrong" ]
    # The rejected one was the fastest on paper: the winner is the runner-up,
    # and the rejected config is nowhere in the database.
    [ "$("$SPATTN" db export | jq -r --arg w "$wrong" 'select(.tile == $w)' | wc -l)" -eq 0 ]
}

@test "fake tune: the same run twice skips every key as up to date; --force re-tunes" {
    fake "$OLMOE" --batch 1 --seq-len 512,2048 2>/dev/null
    before=$("$SPATTN" db list --json | jq -c -s '[.[] | {id, created_at}]')
    run fake "$OLMOE" --batch 1 --seq-len 512,2048
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | grep -c 'up to date, skipped')" -eq 2 ]
    [[ "$output" == *"0 result(s) saved"*"2 up to date"* ]]
    [[ "$output" != *"best "* ]]
    # a length in the same bucket is the same key
    run fake "$OLMOE" --batch 1 --seq-len 2000
    [[ "$output" == *"batch 1 N 2000: up to date"* ]]
    sleep 1   # created_at has one-second resolution
    run fake "$OLMOE" --batch 1 --seq-len 512,2048 --force
    [ "$status" -eq 0 ]
    [[ "$output" == *"2 result(s) saved"* ]]
    [ "$(echo "$output" | grep -c 'up to date, skipped')" -eq 0 ]
    after=$("$SPATTN" db list --json | jq -c -s '[.[] | {id, created_at}]')
    [ "$(rows)" -eq 2 ]
    # same rows (ids kept), replaced (newer timestamps)
    [ "$(echo "$before" | jq -c '[.[].id]')" = "$(echo "$after" | jq -c '[.[].id]')" ]
    [ "$before" != "$after" ]
}

@test "fake tune: only the missing keys are tuned" {
    fake "$OLMOE" --batch 1 --seq-len 512 2>/dev/null
    run fake "$OLMOE" --batch 1 --seq-len 512,4096
    [ "$status" -eq 0 ]
    [[ "$output" == *"1 result(s) saved"*"1 up to date"* ]]
    [ "$(rows)" -eq 2 ]
}

@test "fake tune --json: the rows written, as db export lines" {
    fake_json "'$OLMOE'" --batch 1 --seq-len 64,128
    [ "${#lines[@]}" -eq 2 ]
    echo "$output" | jq -s -e 'length == 2 and all(.[]; .gpu_name == "spattn fake GPU" and (.tile | length) > 0)'
}

@test "fake tune --json prints no blank lines and real timestamps" {
    run bash -c "SPATTN_TUNE_FAKE=1 '$SPATTN' tune '$OLMOE' --batch 1 --seq-len 64,128 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    [ "$(printf '%s\n' "$output" | grep -c '^$')" -eq 0 ]
    echo "$output" | jq -s -e 'all(.[]; .created_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$"))'
}

@test "fake tune --kind all: forward rows, backward tuned or skipped with a note" {
    run fake "$OLMOE" --batch 1 --seq-len 256 --kind all
    [ "$status" -eq 0 ]
    [ "$("$SPATTN" db export | jq -s '[.[] | select(.kind == "fwd")] | length')" -eq 1 ]
    nb=$("$SPATTN" db export | jq -s '[.[] | select(.kind == "bwd")] | length')
    [ "$nb" -eq 1 ] || [[ "$output" == *"no backward kernels for this spec yet; skipped"* ]]
    [ "$("$SPATTN" db export | jq -s '[.[] | select(.kind == "bwd-det")] | length')" -eq "$nb" ]
}

@test "fake tune --kind bwd: a row per backward mode, the deterministic one of kind bwd-det (issue 16)" {
    run fake "$ROOT/configs/llama-8h-d64.yaml" --batch 2 --seq-len 1000 --kind bwd
    [ "$status" -eq 0 ]
    [[ "$output" == *"tune: bwd batch 2 N 1000: best "* ]]
    [[ "$output" == *"tune: bwd-det batch 2 N 1000: best "* ]]
    [ "$("$SPATTN" db export | jq -s -c '[.[].kind]')" = '["bwd","bwd-det"]' ]
    # the fake charges the deterministic mode's turns per stage: another winner
    [ "$("$SPATTN" db export | jq -s '[.[].tile] | unique | length')" -eq 2 ]
    run "$SPATTN" db list --kind bwd-det
    [ "$status" -eq 0 ]
    [[ "${lines[1]}" == *" bwd-det "* ]]
    [ "${#lines[@]}" -eq 2 ]
    # --kind bwd-det alone: that key is up to date, the default mode's not touched
    run fake "$ROOT/configs/llama-8h-d64.yaml" --batch 2 --seq-len 1000 --kind bwd-det
    [ "$status" -eq 0 ]
    [[ "$output" == *"bwd-det batch 2 N 1000: up to date"* ]]
    [[ "$output" != *"tune: bwd batch"* ]]
    run fake "$ROOT/configs/llama-8h-d64.yaml" --batch 2 --seq-len 1000 --kind bwd-det --force --json
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | grep '^{' | jq -s -c '[.[].kind]')" = '["bwd-det"]' ]
}

@test "fake tune - (spec on stdin) with several shapes reads the spec once" {
    # Regression: the spec was read from stdin once per shape, so the second
    # shape found an empty spec and exited 2 (from a pipe; a redirected file
    # reopens through /dev/stdin).
    run bash -c "cat '$OLMOE' | SPATTN_TUNE_FAKE=1 '$SPATTN' tune - --batch 1,2 --seq-len 64,1000 --kind all"
    [ "$status" -eq 0 ]
    [[ "$output" == *"result(s) saved to $DB"* ]]
    [ "$(rows)" -ge 4 ]
    [ "$("$SPATTN" db export | jq -s '[.[] | select(.kind == "fwd")] | length')" -eq 4 ]
}

@test "fake tune: different specs and layers get different rows" {
    fake "$OLMOE" --batch 1 --seq-len 256 2>/dev/null
    fake "$ROOT/configs/llama-8h-d64.yaml" --batch 1 --seq-len 256 2>/dev/null
    fake "$ROOT/configs/hybrid-layers.yaml" --batch 1 --seq-len 256 --layer-index 5 2>/dev/null
    [ "$(rows)" -eq 3 ]
    [ "$("$SPATTN" db export | jq -s -c '[.[].signature] | sort')" = \
      '["exclusive/h16kv16/d128/bf16/L=8192","spattn/h16kv16/d128/bf16/L=N","spattn/h8kv8/d64/bf16/L=N"]' ]
}

# ---- --decode: the decode kernels' tile and splits ----------------------------

GQA="$BATS_TEST_DIRNAME/../../configs/gqa-32q-8kv.yaml"

@test "tune --decode: flags that do not go with it, or without it, exit 2, nothing written" {
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$GQA" --decode --kind bwd
    [ "$status" -eq 2 ]
    [[ "$output" == *"--decode: --kind"*"does not apply"* ]]
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$GQA" --decode --seq-len 4096
    [ "$status" -eq 2 ]
    [[ "$output" == *"--seq-len (the cache's length is --kv-len)"* ]]
    for flag in "--kv-len 4096" "--new-tokens 2"; do
        run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$GQA" $flag
        [ "$status" -eq 2 ] || { echo "$flag: exit $status"; false; }
        [[ "$output" == *"--kv-len and --new-tokens go with --decode"* ]]
    done
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$GQA" --decode --kv-len 4 --new-tokens 8
    [ "$status" -eq 2 ]
    [[ "$output" == *"--new-tokens 8: more than the cache's length 4"* ]]
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$GQA" --decode --new-tokens 0
    [ "$status" -eq 2 ]
    run env SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$T/nope.yaml" --decode
    [ "$status" -eq 2 ]
    [ ! -e "$DB" ]
}

@test "tune --decode without a GPU (and without the fake): exit 3, no database created" {
    have_gpu && skip "a GPU is present"
    run "$SPATTN" tune "$GQA" --decode --kv-len 4096 --batch 4
    [ "$status" -eq 3 ]
    [[ "${lines[0]}" == "spattn: error: "*"libcuda.so.1"* ]]
    [ ! -e "$DB" ]
}

@test "fake tune --decode: one dec row per (batch, bucket, T), tiles with their splits" {
    run fake "$GQA" --decode --batch 64 --kv-len 32768,4000 --new-tokens 1,4
    [ "$status" -eq 0 ]
    [[ "$output" == *"4 result(s) saved to $DB"* ]]
    [[ "$output" == *"dec batch 64 N 32768 T 1: best 16x"*" ms ("*" GB/s of K and V) of "*" candidates, 1 rejected"* ]]
    "$SPATTN" db export >"$T/x.jsonl"
    [ "$(jq -s -c '[.[] | [.batch, .seq_bucket, .new_tokens]] | sort' "$T/x.jsonl")" = \
      "[[64,4096,1],[64,4096,4],[64,32768,1],[64,32768,4]]" ]
    jq -s -e 'all(.[]; .kind == "dec" and .signature == "spattn/h32kv8/d128/bf16/L=N" and .bm == 16
                 and (.tile | test("^16x[0-9]+:w[0-9]:s[0-9]:k[0-9]+$"))
                 and (.tile | startswith("16x128:w4:s2:k") or startswith("16x64:"))
                 and .tile == "\(.bm)x\(.bn):w\(.warps):s\(.stages):k\(.tile | split(":k")[1])"
                 and .candidates > 10 and .median_ms > 0)' "$T/x.jsonl"
    # the fake's ordering: the fastest on paper (BN 128, 3 stages, 2 splits) is its wrong one; next comes 2 stages
    [ "$(jq -r 'select(.seq_bucket == 32768 and .new_tokens == 1) | .tile' "$T/x.jsonl")" = "16x128:w4:s2:k2" ]
    [[ "$output" == *"rejected 16x128:w4:s3:k2: wrong result (fake backend)"* ]]
    run "$SPATTN" db list --kind dec
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 5 ]
    [[ "${lines[0]}" == *BUCKET*" T "*TILE* ]]
    [[ "${lines[1]}" == *" dec "*"spattn/h32kv8/d128/bf16/L=N"*" 64 "*" 4096 "*" 1 "*" 16x"* ]]
    run "$SPATTN" db show --kind dec
    [[ "$output" == *"new_tokens      4"* ]]
}

@test "fake tune --decode: skip when up to date, --force re-tunes, a new T is a new key; fwd rows apart" {
    fake "$GQA" --decode --batch 64 --kv-len 32768 2>/dev/null
    run fake "$GQA" --decode --batch 64 --kv-len 30000
    [ "$status" -eq 0 ]
    [[ "$output" == *"dec batch 64 N 30000 T 1: up to date, skipped"* ]]
    [[ "$output" == *"0 result(s) saved"*"1 up to date"* ]]
    run fake "$GQA" --decode --batch 64 --kv-len 32768 --force
    [[ "$output" == *"1 result(s) saved"* ]]
    run fake "$GQA" --decode --batch 64 --kv-len 32768 --new-tokens 1,2
    [[ "$output" == *"1 result(s) saved"*"1 up to date"* ]]
    fake "$GQA" --batch 64 --seq-len 32768 2>/dev/null    # the forward at the same shape: its own row
    [ "$("$SPATTN" db export | jq -s -c '[.[] | [.kind, .new_tokens]] | sort')" = '[["dec",1],["dec",2],["fwd",0]]' ]
}

@test "fake tune --decode --json: the rows written, as db export lines" {
    KIND=dec fake_json "'$GQA'" --decode --batch 8 --kv-len 4096 --new-tokens 1,2
    [ "${#lines[@]}" -eq 2 ]
    echo "$output" | jq -s -e 'length == 2 and ([.[].new_tokens] == [1, 2]) and all(.[]; .kind == "dec" and .batch == 8)'
}

@test "fake tune --decode: splits a launch would clamp are not tried (each split keeps 2 tiles)" {
    # N = 256: a block holds at most a few 128-key tiles, so few splits remain for BN 128
    run fake "$GQA" --decode --batch 1 --kv-len 256
    [ "$status" -eq 0 ]
    short=$("$SPATTN" db export | jq .candidates)
    run fake "$GQA" --decode --batch 1 --kv-len 32768
    long=$("$SPATTN" db export | jq -s 'map(select(.seq_bucket == 32768))[0].candidates')
    [ "$short" -lt "$long" ]
    [ "$long" -le 90 ]
}

@test "tune --decode --list-candidates: the decode tiles, no GPU" {
    run "$SPATTN" tune "$GQA" --decode --list-candidates sm_90a
    [ "$status" -eq 0 ]
    [ ! -e "$DB" ]
    [ "${#lines[@]}" -ge 10 ]
    echo "$output" | while read -r kind tile; do
        [ "$kind" = dec ] && [[ "$tile" =~ ^16x[0-9]+:w[0-9]:s[0-9]$ ]] || { echo "$kind $tile"; false; }
    done
}

@test "gpu: tune --decode at a small shape; run --decode then uses the row" {
    have_gpu || skip "no GPU: runs on the GPU host"
    run "$SPATTN" tune "$GQA" --decode --batch 4 --kv-len 4096 --iters 5 --budget 120
    [ "$status" -eq 0 ]
    [[ "$output" == *"best 16x"*" of "*" candidates"* ]]
    "$SPATTN" db export | jq -e '.kind == "dec" and .new_tokens == 1 and .gpu_name != "spattn fake GPU"'
    tile=$("$SPATTN" db export | jq -r .tile)
    run bash -c "'$SPATTN' check '$GQA' --decode --batch 4 --kv-len 4096 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e --arg t "$tile" '.ok and (.config_source == "tuned (batch 4, N<=4096, T=1)")
                                            and (.splits == ($t | split(":k")[1] | tonumber))'
}

# ---- reliability -------------------------------------------------------------

@test "two tunes writing one fresh database at once: both exit 0, every row there" {
    for round in 1 2 3; do
        rm -f "$DB" "$DB-wal" "$DB-shm"
        fake "$OLMOE" --batch 1,2,3,4 --seq-len 16,32,64,128,256 >"$T/a.out" 2>"$T/a.err" 3>&- &
        a=$!
        fake "$OLMOE" --batch 1,2,3,4 --seq-len 512,1024,2048,4096 >"$T/b.out" 2>"$T/b.err" 3>&- &
        b=$!
        sa=0; sb=0
        wait "$a" || sa=$?
        wait "$b" || sb=$?
        [ "$sa" -eq 0 ] || { echo "round $round: first exited $sa"; cat "$T/a.err"; false; }
        [ "$sb" -eq 0 ] || { echo "round $round: second exited $sb"; cat "$T/b.err"; false; }
        [ "$(rows)" -eq 36 ] || { echo "round $round: $(rows) rows"; false; }
    done
    run "$SPATTN" db path --json
    [ "$(echo "$output" | jq -r .state)" = ok ]
}

@test "a garbage database file: exit 2, a clear error, the file unchanged" {
    head -c 8192 /dev/urandom >"$DB"
    cp "$DB" "$T/orig"
    run fake "$OLMOE" --seq-len 64
    [ "$status" -eq 2 ]
    [[ "$output" == *"$DB: error: not a spattn tuning database"* ]]
    [[ "$output" == *"spattn db recover"* ]]
    cmp "$DB" "$T/orig"
    [ ! -e "$DB-wal" ]
}

@test "a truncated database file: exit 2, unchanged; db recover then lets tune run" {
    fake "$OLMOE" --batch 1,2,4,8 --seq-len 64,128,256,512,1024 2>/dev/null
    size=$(stat -c %s "$DB")
    head -c $((size / 2)) "$DB" >"$T/half" && mv "$T/half" "$DB"
    cp "$DB" "$T/orig"
    run fake "$OLMOE" --seq-len 64 --force
    [ "$status" -eq 2 ]
    [[ "$output" == *"not a spattn tuning database"* ]]
    cmp "$DB" "$T/orig"
    run "$SPATTN" db recover
    [ "$status" -eq 0 ]
    run fake "$OLMOE" --batch 1 --seq-len 64
    [ "$status" -eq 0 ]
    [ "$(rows)" -eq 1 ]
    # the damaged file was kept aside, byte for byte
    cmp "$T/orig" "$(ls "$DB".corrupt-* | head -n 1)"
}

@test "a database from a newer schema is refused (exit 2) and not rewritten" {
    command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
    fake "$OLMOE" --seq-len 64 2>/dev/null
    sqlite3 "$DB" 'PRAGMA user_version = 99'
    [ "$(sqlite3 "$DB" 'PRAGMA user_version')" -eq 99 ]
    cp "$DB" "$T/orig"
    run fake "$OLMOE" --seq-len 128
    [ "$status" -eq 2 ]
    [[ "$output" == *"schema version 99 is newer than this spattn knows"* ]]
    [[ "$output" == *"not touched"* ]]
    cmp "$DB" "$T/orig"
    run fake "$OLMOE" --seq-len 64 --force
    [ "$status" -eq 2 ]
    cmp "$DB" "$T/orig"
    [ "$(sqlite3 "$DB" 'PRAGMA user_version')" -eq 99 ]
    # db recover refuses too: a newer file is not damaged
    run "$SPATTN" db recover
    [ "$status" -eq 2 ]
    cmp "$DB" "$T/orig"
}

@test "another program's SQLite file is refused, unchanged" {
    command -v sqlite3 >/dev/null || skip "sqlite3 CLI not installed"
    sqlite3 "$DB" 'CREATE TABLE notes(x); INSERT INTO notes VALUES (1)'
    cp "$DB" "$T/orig"
    run fake "$OLMOE" --seq-len 64
    [ "$status" -eq 2 ]
    [[ "$output" == *"another program"* ]]
    cmp "$DB" "$T/orig"
}

# Ctrl-C: stderr goes into a FIFO that nobody reads until after the signal,
# so the tuner blocks on its progress output part-way through a long run
# and the SIGINT lands while keys are left.  (The fake is far too fast to
# interrupt with a sleep alone.)
interrupt_long_tune() {
    local lens batches
    lens=$(seq 0 23 | awk '{printf "%s%d", (NR > 1 ? "," : ""), 2 ^ $1}')
    batches=$(seq -s, 1 32)
    TOTAL_KEYS=$((24 * 32))
    mkfifo "$T/err"
    SPATTN_TUNE_FAKE=1 "$SPATTN" tune "$OLMOE" --kind all --seq-len "$lens" --batch "$batches" \
        2>"$T/err" 3>&- &
    local pid=$!
    exec 5<"$T/err"           # the reader end, opened (so the tuner starts) but not read yet
    sleep 1                   # by now the pipe is full and the tuner waits in write()
    kill -INT "$pid"
    cat <&5 >"$T/err.txt" 3>&- 5<&- &
    local cat_pid=$!
    exec 5<&-
    TUNE_STATUS=0
    wait "$pid" || TUNE_STATUS=$?
    wait "$cat_pid"
}

@test "Ctrl-C during a tune: finished keys saved in one go, the database reads fine" {
    interrupt_long_tune
    run "$SPATTN" db list
    [ "$status" -eq 0 ]
    n=$(rows)
    saved=$(grep -oE '[0-9]+ result\(s\) saved' "$T/err.txt" | grep -oE '^[0-9]+')
    [ "$n" -eq "$saved" ]
    if [ "$TUNE_STATUS" -eq 0 ]; then
        # The run ended before the signal: only consistency can be asserted.
        [ "$n" -eq "$TOTAL_KEYS" ]
    else
        [ "$TUNE_STATUS" -eq 1 ]
        grep -q '(interrupted)' "$T/err.txt"
        [ "$n" -gt 0 ] && [ "$n" -lt "$TOTAL_KEYS" ]
    fi
    run "$SPATTN" db path --json
    [ "$(echo "$output" | jq -r .state)" = ok ]
    if command -v sqlite3 >/dev/null; then [ "$(sqlite3 "$DB" 'PRAGMA integrity_check')" = ok ]; fi
    # a second run finishes the job: the saved keys are up to date
    run fake "$OLMOE" --seq-len 1,2,4 --batch 1
    [ "$status" -eq 0 ]
}

@test "Ctrl-C during a tune: a key interrupted half-way is not saved" {
    # Every saved row must come from a complete search (all candidates tried),
    # or a later tune would skip a key whose search never finished.
    full=$(fake "$OLMOE" --batch 1 --seq-len 64 --db "$T/full.db" --json 2>/dev/null | jq .candidates)
    [ "$full" -gt 1 ]
    interrupt_long_tune
    [ "$TUNE_STATUS" -eq 1 ] || skip "the tune finished before the signal"
    "$SPATTN" db export | jq -s -e --argjson full "$full" 'length > 0 and all(.[]; .candidates == $full)'
}

# ---- on the GPU host ---------------------------------------------------------

@test "gpu: a real tune at a small shape writes a checked row that check then uses" {
    have_gpu || skip "no GPU: runs on the GPU host"
    run "$SPATTN" tune "$OLMOE" --batch 1 --seq-len 1024 --iters 5 --budget 120
    [ "$status" -eq 0 ]
    [[ "$output" == *"best "*" of "*" candidates"* ]]
    [ "$(rows)" -eq 1 ]
    "$SPATTN" db export | jq -e '.kind == "fwd" and .batch == 1 and .seq_bucket == 1024 and .median_ms > 0
                                 and .eff_tflops > 0 and .candidates >= 1 and .gpu_name != "spattn fake GPU"'
    # run/check/bench take the nearest bucket: 1000 -> 1024
    run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len 1000 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and (.config_source | startswith("tuned"))'
    run "$SPATTN" tune "$OLMOE" --batch 1 --seq-len 1024
    [ "$status" -eq 0 ]
    [[ "$output" == *"up to date"* ]]
}

# ---- --list-candidates (no GPU) ---------------------------------------------

@test "tune --list-candidates: the search space per arch, no GPU, no database" {
    run "$SPATTN" tune "$OLMOE" --kind all --list-candidates sm_90a
    [ "$status" -eq 0 ]
    [ ! -e "$DB" ]
    echo "$output" | grep -qE '^fwd [0-9]+x[0-9]+:w[0-9]+:s[0-9]+:wgmma$'
    echo "$output" | grep -qE '^fwd [0-9]+x[0-9]+:w[0-9]+:s[0-9]+$'
    echo "$output" | grep -qE '^bwd 64x128:w[0-9]+:s[0-9]+:wgmma$'
    run "$SPATTN" tune "$OLMOE" --kind all --list-candidates sm_80
    [ "$status" -eq 0 ]
    ! echo "$output" | grep -q wgmma
    # every listed tile is a valid --tile for its kind
    "$SPATTN" tune "$OLMOE" --kind all --list-candidates sm_90a | while read -r kind tile; do
        "$SPATTN" gen "$OLMOE" --kind "$kind" --tile "$tile" >/dev/null || { echo "$kind $tile"; false; }
    done
    run "$SPATTN" tune "$OLMOE" --list-candidates sm_70
    [ "$status" -eq 2 ]
}

@test "tune --list-candidates: the deterministic backward searches the backward's tiles" {
    run "$SPATTN" tune "$OLMOE" --kind bwd-det --list-candidates sm_90a
    [ "$status" -eq 0 ]
    [ "$output" = "$("$SPATTN" tune "$OLMOE" --kind bwd --list-candidates sm_90a)" ]
    [[ "${lines[0]}" == "bwd "* ]]
}

@test "tune --list-candidates --json: one object per tile" {
    run "$SPATTN" tune "$OLMOE" --kind bwd --list-candidates sm_90a --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -s -e 'length > 10 and all(.[]; .kind == "bwd" and .arch == "sm_90a" and (.tile | test("^[0-9]+x[0-9]+")))'
}

@test "the GPU check matrix covers every value with every kernel family (issue 13)" {
    command -v python3 >/dev/null || skip "no python3"
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_90a
    [ "$status" -eq 0 ]
    [[ "${lines[${#lines[@]}-1]}" == *"coverage gaps: 0" ]]
    echo "$output" | grep -q '^regress-13 fwd-empty-qtile'
    echo "$output" | grep -q '^regress-13 det-dq'
    [ "$(echo "$output" | grep -c '^tiles ')" -ge 300 ]
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_80
    [ "$status" -eq 0 ]
    ! echo "$output" | grep -q 'wgmma'
}

@test "the GPU check matrix has the :ws backward (bwd-ws, bwd-ws-det), which the tuner tries" {
    command -v python3 >/dev/null || skip "no python3"
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_90a --filter bwd-ws
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | grep -c '^matrix bwd-ws .* tile=64x\(64\|128\):w[48]:s[23]:ws$')" -eq 35 ]
    [ "$(echo "$output" | grep -c '^matrix bwd-ws-det .* tile=64x\(64\|128\):w[48]:s[23]:ws$')" -eq 35 ]
    echo "$output" | grep -q 'matrix bwd-ws .* d64 .*tile=64x64:w4:s3:ws'
    echo "$output" | grep -q 'matrix bwd-ws .* d128 .*tile=64x128:w8:s2:ws'
    [ "$(echo "$output" | grep -c '^det-order bwd-ws-det ')" -eq 20 ]
    [ "$(echo "$output" | grep -c '^packed bwd-ws')" -eq 12 ]
    [[ "${lines[${#lines[@]}-1]}" == *"families bwd-ws, bwd-ws-det; coverage gaps: 0" ]]
    run "$SPATTN" tune "$ROOT/configs/olmoe-1b-7b.yaml" --kind bwd --list-candidates sm_90a
    [ "$status" -eq 0 ]
    [[ "$output" == *":wgmma"* ]]
    [[ "$output" == *"64x128:w8:s2:ws"* ]]
}

@test "the GPU check matrix has the deterministic wgmma backward's order cases (issue 16 item 2)" {
    command -v python3 >/dev/null || skip "no python3"
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_90a --filter det-order
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | grep -c '^det-order bwd-wgmma-det .* tile=64x[0-9]*:w[48]:s[23]:wgmma seed')" -eq 20 ]
    echo "$output" | grep -q 'det-order bwd-wgmma-det dense bf16 d128 g4 N=8193'
    echo "$output" | grep -q 'det-order bwd-wgmma-det exclusive bf16 d128 g4 N=333'
    echo "$output" | grep -q 'det-order bwd-wgmma-det spattn bf16 d128 g4 lens='
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_80 --filter det-order
    [[ "${lines[${#lines[@]}-1]}" == "0 cases"* ]]
}
