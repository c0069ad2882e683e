#!/usr/bin/env bats
# spattn db: the tuning database from the command line.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    T=$(mktemp -d)
    unset SPATTN_DB XDG_CACHE_HOME
    export HOME="$T/home"
    DB="$T/tune.db"
    cat >"$T/rows.jsonl" <<'EOF'
{"gpu_name":"NVIDIA H100 80GB HBM3","sm":90,"sm_count":132,"driver_version":13000,"nvrtc_version":13000,"spattn_version":"0.1.0","kind":"fwd","heads":16,"kv_heads":16,"head_dim":128,"dtype":"bf16","pattern":"spattn","bands_hash":"","band_basis":0,"batch":4,"seq_bucket":4096,"tile":"128x64:w4:s2","bm":128,"bn":64,"warps":4,"stages":2,"median_ms":0.25,"eff_tflops":190.5,"candidates":24,"created_at":"2026-11-25T10:00:00Z"}
{"gpu_name":"NVIDIA H100 80GB HBM3","sm":90,"sm_count":132,"driver_version":13000,"nvrtc_version":13000,"spattn_version":"0.1.0","kind":"bwd","heads":16,"kv_heads":16,"head_dim":128,"dtype":"bf16","pattern":"spattn","bands_hash":"","band_basis":0,"batch":1,"seq_bucket":16384,"tile":"64x128:w8:s2","bm":64,"bn":128,"warps":8,"stages":2,"median_ms":1.9,"eff_tflops":240,"candidates":30,"created_at":"2026-11-25T10:05:00Z"}
{"gpu_name":"NVIDIA L4","sm":89,"sm_count":58,"driver_version":13000,"nvrtc_version":13000,"spattn_version":"0.1.0","kind":"fwd","heads":8,"kv_heads":2,"head_dim":64,"dtype":"fp16","pattern":"exclusive","bands_hash":"","band_basis":4096,"batch":2,"seq_bucket":2048,"tile":"64x64:w4:s3","bm":64,"bn":64,"warps":4,"stages":3,"median_ms":0.0123456789,"eff_tflops":45.25,"candidates":9,"created_at":"2026-11-24T08:00:00Z"}
EOF
}

teardown() { rm -rf "$T"; }

@test "db path: --db, then SPATTN_DB, then XDG_CACHE_HOME, then HOME" {
    run "$SPATTN" db path --db /some/where.db
    [ "$status" -eq 0 ] && [ "$output" = "/some/where.db" ]
    SPATTN_DB=/env/tune.db run "$SPATTN" db path
    [ "$output" = "/env/tune.db" ]
    SPATTN_DB=/env/tune.db run "$SPATTN" db path --db /flag.db
    [ "$output" = "/flag.db" ]
    XDG_CACHE_HOME=/xdg run "$SPATTN" db path
    [ "$output" = "/xdg/spattn/tune.db" ]
    run "$SPATTN" db path
    [ "$output" = "$T/home/.cache/spattn/tune.db" ]
    [ ! -e "$T/home/.cache" ]   # path only prints
}

@test "db path --json reports the file's state" {
    run "$SPATTN" db path --db "$DB" --json
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq -r .state)" = missing ]
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    [ "$("$SPATTN" db path --db "$DB" --json | jq -r .state)" = ok ]
}

@test "db list on a missing database: empty, exit 0, nothing created" {
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 0 ]
    [[ "$output" == *"no tuned configs"* ]]
    run bash -c "'$SPATTN' db list --db '$DB' 2>/dev/null"
    [ -z "$output" ]
    run bash -c "'$SPATTN' db list --db '$DB' --json 2>/dev/null"
    [ "$status" -eq 0 ] && [ -z "$output" ]
    [ ! -e "$DB" ]
}

@test "db import then list: a table with every row" {
    run "$SPATTN" db import --db "$DB" "$T/rows.jsonl"
    [ "$status" -eq 0 ]
    [[ "$output" == *"imported 3 rows"* ]]
    run bash -c "'$SPATTN' db list --db '$DB' 2>/dev/null"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 4 ]
    [[ "${lines[0]}" == *GPU*KIND*SPEC*BATCH*BUCKET*TILE*MS*TF/S*WHEN* ]]
    [[ "$output" == *"spattn/h16kv16/d128/bf16/L=N"* ]]
    [[ "$output" == *"exclusive/h8kv2/d64/fp16/L=4096"* ]]
    [[ "$output" == *"128x64:w4:s2"* ]]
}

@test "db list --json: one object per line, with ids; filters narrow it" {
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    run "$SPATTN" db list --db "$DB" --json
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq -s length)" -eq 3 ]
    [ "$(echo "$output" | jq -s '[.[].id] | sort | join(",")' -r)" = "1,2,3" ]
    [ "$("$SPATTN" db list --db "$DB" --json --gpu h100 | jq -s length)" -eq 2 ]
    [ "$("$SPATTN" db list --db "$DB" --json --kind bwd | jq -r .tile)" = "64x128:w8:s2" ]
    [ "$("$SPATTN" db list --db "$DB" --json --pattern exclusive | jq -r .gpu_name)" = "NVIDIA L4" ]
    [ "$("$SPATTN" db list --db "$DB" --json --signature spattn/h16kv16/d128/bf16/L=N | jq -s length)" -eq 2 ]
    run "$SPATTN" db list --db "$DB" --kind sideways
    [ "$status" -eq 2 ]
    [[ "$output" == *"--kind: expected fwd, bwd, bwd-det or dec, got 'sideways'"* ]]
}

@test "db: bwd-det rows (the deterministic backward's) import, list and filter apart from bwd (issue 16)" {
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    jq -c 'select(.kind == "bwd") | .kind = "bwd-det" | .tile = "64x128:w8:s2:ws"' "$T/rows.jsonl" |
        "$SPATTN" db import --db "$DB" - 2>/dev/null
    [ "$("$SPATTN" db export --db "$DB" | jq -s length)" -eq 4 ]
    [ "$("$SPATTN" db list --db "$DB" --json --kind bwd-det | jq -r .tile)" = "64x128:w8:s2:ws" ]
    [ "$("$SPATTN" db list --db "$DB" --json --kind bwd | jq -r .tile)" = "64x128:w8:s2" ]
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 0 ]
    # the KIND column is as wide as its longest value
    [[ "${lines[0]}" == *"KIND     SPEC"* ]]
    [[ "$output" == *"  bwd-det  "* && "$output" == *"  bwd      "* ]]
}

@test "db export -> import -> export round trip is identical" {
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    "$SPATTN" db export --db "$DB" >"$T/a.jsonl"
    [ "$(jq -s length "$T/a.jsonl")" -eq 3 ]
    [ "$(jq -s 'map(select(.gpu_name == "NVIDIA L4"))[0].median_ms' "$T/a.jsonl")" = "0.0123456789" ]
    [ "$(jq -s 'map(has("id")) | any' "$T/a.jsonl")" = false ]
    [ "$(jq -s 'map(.signature) | unique | length' "$T/a.jsonl")" -eq 2 ]
    "$SPATTN" db import --db "$T/b.db" "$T/a.jsonl" 2>/dev/null
    "$SPATTN" db export --db "$T/b.db" -o "$T/b.jsonl"
    cmp "$T/a.jsonl" "$T/b.jsonl"
    # Same rows against the input, field by field (jq normalises numbers).
    # (rows.jsonl is an export from before decode rows: no new_tokens, which reads as 0)
    diff <(jq -S -c 'del(.signature)' "$T/a.jsonl" | sort) <(jq -S -c '.new_tokens = 0' "$T/rows.jsonl" | sort)
}

@test "db import twice replaces rows with the same key" {
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    sed 's/"median_ms":0.25/"median_ms":0.2/' "$T/rows.jsonl" | "$SPATTN" db import --db "$DB" - 2>/dev/null
    [ "$("$SPATTN" db export --db "$DB" | jq -s length)" -eq 3 ]
    [ "$("$SPATTN" db list --db "$DB" --json --kind fwd --gpu h100 | jq .median_ms)" = "0.2" ]
    [ "$("$SPATTN" db list --db "$DB" --json --kind fwd --gpu h100 | jq .id)" = "1" ]
}

@test "db import: bad lines reported as FILE:LINE, good ones kept, exit 1" {
    {
        sed -n 1p "$T/rows.jsonl"
        echo '{"gpu_name": "x",'
        echo
        sed -n 2p "$T/rows.jsonl" | sed 's/"sm":90,//'
        sed -n 3p "$T/rows.jsonl" | sed 's/"bm":64/"bm":24/; s/"tile":"64x64/"tile":"24x64/'
        sed -n 3p "$T/rows.jsonl" | sed 's/"sm_count":58/"sm_count":"58"/'
        sed -n 3p "$T/rows.jsonl" | sed 's/"kind":"fwd"/"kind":"fwx"/'
        sed -n 3p "$T/rows.jsonl"
    } >"$T/mixed.jsonl"
    run "$SPATTN" db import --db "$DB" "$T/mixed.jsonl"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$T/mixed.jsonl:2: error: invalid JSON"* ]]
    [[ "$output" == *"$T/mixed.jsonl:4: error: missing field 'sm'"* ]]
    [[ "$output" == *"$T/mixed.jsonl:5: error: bm must be a multiple of 16"* ]]
    [[ "$output" == *"$T/mixed.jsonl:6: error: field 'sm_count' must be an integer"* ]]
    [[ "$output" == *"$T/mixed.jsonl:7: error: kind must be fwd, bwd, bwd-det or dec"* ]]
    [[ "$output" != *"mixed.jsonl:1:"* && "$output" != *"mixed.jsonl:3:"* && "$output" != *"mixed.jsonl:8:"* ]]
    [[ "$output" == *"imported 2 rows"*"skipped 5 bad lines"* ]]
    [ "$("$SPATTN" db export --db "$DB" | jq -s length)" -eq 2 ]
}

@test "db import --json and from stdin" {
    run bash -c "'$SPATTN' db import --db '$DB' --json - <'$T/rows.jsonl' 2>/dev/null"
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq .imported)" -eq 3 ]
    [ "$(echo "$output" | jq .rejected)" -eq 0 ]
    run bash -c "echo '[1]' | '$SPATTN' db import --db '$DB' -"
    [ "$status" -eq 1 ]
    [[ "$output" == *"<stdin>:1: error: expected a JSON object"* ]]
    run "$SPATTN" db import --db "$DB" "$T/no-such-file"
    [ "$status" -eq 2 ]
}

@test "db show: by id, by filter, and a missing id exits 1" {
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    run "$SPATTN" db show 3 --db "$DB"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "row 3" ]]
    [[ "$output" == *"gpu_name        NVIDIA L4"* ]]
    [[ "$output" == *"band_basis      4096"* ]]
    run "$SPATTN" db show --db "$DB" --gpu h100 --json
    [ "$(echo "$output" | jq -s length)" -eq 2 ]
    run "$SPATTN" db show 42 --db "$DB"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no row with id 42"* ]]
    run "$SPATTN" db show --db "$DB" --gpu A100
    [ "$status" -eq 1 ]
    run "$SPATTN" db show zero --db "$DB"
    [ "$status" -eq 2 ]
}

@test "db clear removes every row and says how many" {
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    run "$SPATTN" db clear --db "$DB"
    [ "$status" -eq 0 ]
    [[ "$output" == *"removed 3 rows"* ]]
    [ "$("$SPATTN" db clear --db "$DB" --json | jq .removed)" -eq 0 ]
    [ -z "$("$SPATTN" db export --db "$DB")" ]
}

@test "SPATTN_DB selects the database for every subcommand" {
    export SPATTN_DB="$T/env.db"
    "$SPATTN" db import "$T/rows.jsonl" 2>/dev/null
    [ -f "$T/env.db" ]
    [ "$("$SPATTN" db export | jq -s length)" -eq 3 ]
}

@test "default path: parent directories are created on first write" {
    "$SPATTN" db import "$T/rows.jsonl" 2>/dev/null
    [ -f "$T/home/.cache/spattn/tune.db" ]
}

@test "a garbage database file: exit 2 with a clear message, file untouched" {
    head -c 5000 /dev/urandom >"$DB"
    cp "$DB" "$T/orig"
    for sub in list export "show 1" clear; do
        run "$SPATTN" db $sub --db "$DB"
        [ "$status" -eq 2 ] || { echo "db $sub: exit $status"; false; }
        [[ "$output" == *"$DB: error: not a spattn tuning database (file is not a database)"* ]]
        [[ "$output" == *"spattn db recover"* ]]
    done
    run "$SPATTN" db import --db "$DB" "$T/rows.jsonl"
    [ "$status" -eq 2 ]
    cmp "$DB" "$T/orig"
}

@test "a truncated database file: exit 2" {
    # Enough rows for several pages, then cut in half.
    for i in $(seq 1 200); do
        sed -n 1p "$T/rows.jsonl" | sed "s/NVIDIA H100 80GB HBM3/GPU $i with a long name to fill the pages/"
    done >"$T/many.jsonl"
    "$SPATTN" db import --db "$T/full.db" "$T/many.jsonl" 2>/dev/null
    size=$(stat -c %s "$T/full.db")
    [ "$size" -gt 16384 ]
    head -c $((size / 2)) "$T/full.db" >"$DB"
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 2 ]
    [[ "$output" == *"not a spattn tuning database"* ]]
    head -c 60 "$T/full.db" >"$DB"
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 2 ]
}

@test "db recover moves a bad file aside and starts fresh; a good one is left alone" {
    echo "not a database at all, just text that is long enough to look like a file" >"$DB"
    echo "wal" >"$DB-wal"
    run "$SPATTN" db recover --db "$DB"
    [ "$status" -eq 0 ]
    [[ "$output" == *"moved it aside to $DB.corrupt-"* ]]
    aside=$(ls "$T" | grep -E '^tune\.db\.corrupt-[0-9]{8}T[0-9]{6}Z$')
    [ -n "$aside" ]
    grep -q "not a database at all" "$T/$aside"
    [ "$(cat "$T/$aside-wal")" = wal ]
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 0 ]
    "$SPATTN" db import --db "$DB" "$T/rows.jsonl" 2>/dev/null
    cp "$DB" "$T/good"
    run "$SPATTN" db recover --db "$DB"
    [ "$status" -eq 0 ]
    [[ "$output" == *"database is fine, nothing to do"* ]]
    cmp "$DB" "$T/good"
    [ "$("$SPATTN" db export --db "$DB" | jq -s length)" -eq 3 ]
    [ "$("$SPATTN" db recover --db "$DB" --json | jq -r .state)" = ok ]
}

@test "a database from a newer spattn is refused and not rewritten" {
    command -v sqlite3 >/dev/null || skip "sqlite3 shell not installed"
    sqlite3 "$DB" "CREATE TABLE tuned (id INTEGER PRIMARY KEY, future TEXT); PRAGMA application_id = 1936749678; PRAGMA user_version = 9;"
    cp "$DB" "$T/orig"
    for sub in list "import $T/rows.jsonl" clear recover; do
        run "$SPATTN" db $sub --db "$DB"
        [ "$status" -eq 2 ] || { echo "db $sub: exit $status"; false; }
        [[ "$output" == *"schema version 9 is newer than this spattn knows (3); the file was not touched"* ]]
    done
    cmp "$DB" "$T/orig"
}

@test "unknown subcommand and missing subcommand: exit 2" {
    run "$SPATTN" db frobnicate
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown subcommand 'frobnicate'"* ]]
    run "$SPATTN" db
    [ "$status" -eq 2 ]
    run "$SPATTN" db import
    [ "$status" -eq 2 ]
}

@test "each subcommand has --help" {
    for sub in list show export import clear path recover; do
        run "$SPATTN" db $sub --help
        [ "$status" -eq 0 ] && [[ "$output" == "usage: spattn db $sub"* ]]
    done
}

@test "db list/export --pattern with an unknown name: exit 2 naming the valid ones" {
    "$SPATTN" db import "$T/rows.jsonl" --db "$DB" >/dev/null
    for sub in list show export; do
        run "$SPATTN" db $sub --db "$DB" --pattern xyz
        [ "$status" -eq 2 ] || { echo "db $sub: exit $status"; false; }
        [[ "$output" == *"--pattern: 'xyz' is not dense, local, spattn, exclusive, gapped or custom"* ]]
    done
    run "$SPATTN" db list --db "$DB" --pattern exclusive
    [ "$status" -eq 0 ]
    [[ "$output" == *"exclusive"* ]]
}

@test "db import of a device or endless input: exit 2 at once" {
    run timeout 20 "$SPATTN" db import /dev/zero --db "$DB"
    [ "$status" -eq 2 ]
    [ "$output" = "/dev/zero: error: is a character device, not a regular file" ]
    run bash -c "head -c 300000 /dev/zero | timeout 20 '$SPATTN' db import - --db '$DB'"
    [ "$status" -eq 2 ]
    [ "$output" = "<stdin>:1:1: error: line 1 is longer than 65536 bytes" ]
    { cat "$T/rows.jsonl"; head -c 70000 /dev/zero | tr '\0' x; echo; } >"$T/long.jsonl"
    run "$SPATTN" db import "$T/long.jsonl" --db "$DB"
    [ "$status" -eq 2 ]
    [[ "$output" == *"long.jsonl:4:1: error: line 4 is longer than 65536 bytes"* ]]
    [ ! -e "$DB" ]
    SPATTN_MEM_LIMIT=1K run "$SPATTN" db import "$T/rows.jsonl" --db "$DB"
    [ "$status" -eq 2 ]
    [[ "$output" == *"importing this file: needed "*" vs available 1.0 KiB (SPATTN_MEM_LIMIT)"* ]]
}

@test "db import: a NUL in a JSON string (\\u0000) or a raw NUL byte rejects the line" {
    sed -n 1p "$T/rows.jsonl" | sed 's/"NVIDIA H100 80GB HBM3"/"NVIDIA\\u0000junk"/' >"$T/nul.jsonl"
    { sed -n 2p "$T/rows.jsonl" | tr -d '\n'; printf ' \0 \n'; } >>"$T/nul.jsonl"
    run "$SPATTN" db import "$T/nul.jsonl" --db "$DB"
    [ "$status" -eq 1 ]
    [[ "$output" == *"nul.jsonl:1: error: a NUL character in the line"* ]]
    [[ "$output" == *"nul.jsonl:2: error: a NUL character in the line"* ]]
    # an escaped backslash before u0000 is plain text, not a NUL
    sed -n 1p "$T/rows.jsonl" | sed 's/"NVIDIA H100 80GB HBM3"/"NVIDIA\\\\u0000"/' >"$T/ok.jsonl"
    run "$SPATTN" db import "$T/ok.jsonl" --db "$DB"
    [ "$status" -eq 0 ]
}

@test "a database with user_version -5: exit 2 (no out-of-bounds migration, UBSan)" {
    command -v sqlite3 >/dev/null || skip "sqlite3 shell not installed"
    sqlite3 "$DB" "PRAGMA application_id = 1936749678; PRAGMA user_version = -5; CREATE TABLE t (x);"
    for sub in list "import $T/rows.jsonl"; do
        run "$SPATTN" db $sub --db "$DB"
        [ "$status" -eq 2 ] || { echo "db $sub: exit $status"; false; }
        [[ "$output" == *"not a spattn tuning database (schema version -5 is not one spattn writes)"* ]]
    done
}

@test "a database of the wrong schema: exit 2 with the reason" {
    command -v sqlite3 >/dev/null || skip "sqlite3 shell not installed"
    sqlite3 "$DB" "PRAGMA application_id = 1936749678; CREATE TABLE tuned (id INTEGER PRIMARY KEY, other TEXT);"
    run "$SPATTN" db import "$T/rows.jsonl" --db "$DB"
    [ "$status" -eq 2 ]
    [[ "$output" == *"not a spattn tuning database (schema version 0, yet it already holds tables)"* ]]
    sqlite3 "$DB" "PRAGMA user_version = 1;"
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 2 ]
    [[ "$output" == *"the table 'tuned' has no column 'gpu_name'"* ]]
}

@test "a junk -journal beside a good database blocks nothing" {
    "$SPATTN" db import "$T/rows.jsonl" --db "$DB" 2>/dev/null
    echo junk >"$DB-journal"
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 0 ]
    [[ "$output" == *"NVIDIA L4"* ]]
    run "$SPATTN" db recover --db "$DB"
    [ "$status" -eq 0 ]
    [[ "$output" == *"database is fine, nothing to do"* ]]
    run "$SPATTN" db import "$T/rows.jsonl" --db "$DB"
    [ "$status" -eq 0 ]
    [ "$("$SPATTN" db export --db "$DB" | jq -s length)" -eq 3 ]
}

@test "read-only commands leave no -wal or -shm beside the database" {
    "$SPATTN" db import "$T/rows.jsonl" --db "$DB" 2>/dev/null
    [ ! -e "$DB-wal" ] && [ ! -e "$DB-shm" ]
    "$SPATTN" db list --db "$DB" >/dev/null
    "$SPATTN" db export --db "$DB" >/dev/null
    "$SPATTN" db show 1 --db "$DB" >/dev/null
    "$SPATTN" db recover --db "$DB" >/dev/null
    [ ! -e "$DB-wal" ] && [ ! -e "$DB-shm" ]
    # a refused file: the look that refuses it must not leave litter either
    command -v sqlite3 >/dev/null || skip "sqlite3 shell not installed"
    sqlite3 "$T/other.db" "PRAGMA journal_mode = WAL; CREATE TABLE x (a);" >/dev/null
    run "$SPATTN" db list --db "$T/other.db"
    [ "$status" -eq 2 ]
    [ ! -e "$T/other.db-wal" ] && [ ! -e "$T/other.db-shm" ]
}

@test "control bytes in the data are escaped by db list/show; export stays valid UTF-8 JSON" {
    command -v sqlite3 >/dev/null || skip "sqlite3 shell not installed"
    "$SPATTN" db import "$T/rows.jsonl" --db "$DB" 2>/dev/null
    sqlite3 "$DB" "UPDATE tuned SET gpu_name = 'GPU' || char(27) || '[2J' || CAST(X'FF' AS TEXT) WHERE id = 1"
    run "$SPATTN" db list --db "$DB"
    [ "$status" -eq 0 ]
    [[ "$output" == *'GPU\x1b[2J\xff'* ]]
    [[ "$output" != *$'\e'* ]]
    run "$SPATTN" db show 1 --db "$DB"
    [[ "$output" == *'gpu_name        GPU\x1b[2J\xff'* ]]
    "$SPATTN" db export --db "$DB" >"$T/out.jsonl"
    iconv -f UTF-8 -t UTF-8 "$T/out.jsonl" >/dev/null
    [ "$(jq -rs '.[0].gpu_name' "$T/out.jsonl")" = $'GPU\e[2J\uFFFD' ]
    "$SPATTN" db list --json --db "$DB" | iconv -f UTF-8 -t UTF-8 >/dev/null
}
