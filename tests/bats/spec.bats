#!/usr/bin/env bats
# Spec files through the CLI (spattn-spec(5)): every shipped config is
# accepted, and every bad spec in tests/fixtures/bad/ makes `spattn plan`
# exit 2 with one compiler-style line "FILE:LINE:COL: error: MESSAGE" on
# stderr, at the position and with the message listed in
# tests/fixtures/bad/EXPECTED.

bats_require_minimum_version 1.5.0

setup() {
    cd "$BATS_TEST_DIRNAME/../.."
    SPATTN=${SPATTN:-$PWD/build/spattn}
    BAD=tests/fixtures/bad
}

@test "every shipped config is accepted" {
    for f in configs/*.yaml; do
        run --separate-stderr "$SPATTN" plan "$f" --seq-len 64
        [ "$status" -eq 0 ] || { echo "$f: exit $status: $stderr"; false; }
    done
}

@test "every bad spec: exit 2 and FILE:LINE:COL: error: naming the problem" {
    failures=0 count=0
    while IFS=$'\t' read -r file pos sub; do
        case "$file" in '' | \#*) continue ;; esac
        count=$((count + 1))
        run --separate-stderr "$SPATTN" plan "$BAD/$file" --seq-len 64
        first=${stderr%%$'\n'*}
        if [ "$status" -ne 2 ]; then
            echo "$file: exit $status (want 2): $stderr"; failures=$((failures + 1))
        elif [[ "$first" != "$BAD/$file:$pos: error: "*"$sub"* ]]; then
            echo "$file: got '$first', want '$BAD/$file:$pos: error: ...$sub...'"; failures=$((failures + 1))
        elif [ -n "$output" ]; then
            echo "$file: wrote to stdout: $output"; failures=$((failures + 1))
        fi
    done < "$BAD/EXPECTED"
    [ "$count" -ge 24 ] || { echo "only $count fixtures in EXPECTED"; false; }
    [ "$failures" -eq 0 ]
}

@test "every bad fixture is listed in EXPECTED" {
    for f in "$BAD"/*.yaml; do
        grep -q "^$(basename "$f")"$'\t' "$BAD/EXPECTED" || { echo "$f not in EXPECTED"; false; }
    done
}

@test "unknown key: the error is followed by a did-you-mean hint" {
    run --separate-stderr "$SPATTN" plan "$BAD/unknown-key.yaml" --seq-len 64
    [ "$status" -eq 2 ]
    [[ "$stderr" == *$'\n'"hint: did you mean 'head_dim'?"* ]]
}

@test "a missing spec file: exit 2, the error names the file" {
    run --separate-stderr "$SPATTN" plan "$BAD/no-such-spec.yaml" --seq-len 64
    [ "$status" -eq 2 ]
    [[ "$stderr" == "$BAD/no-such-spec.yaml: error: cannot open"* ]]
}

@test "a directory instead of a spec: exit 2" {
    run --separate-stderr "$SPATTN" plan configs --seq-len 64
    [ "$status" -eq 2 ]
    [[ "$stderr" == "configs: error:"* ]]
}

@test "a spec on a pipe is read like a file" {
    run --separate-stderr "$SPATTN" plan <(printf 'heads: 0\nhead_dim: 64\n') --seq-len 64
    [ "$status" -eq 2 ]
    [[ "$stderr" == *":1:8: error: heads: 0 is out of range"* ]]
}

@test "a spec that is a named FIFO: exit 2 at once, not a hang" {
    d=$(mktemp -d)
    mkfifo "$d/spec.yaml"
    run --separate-stderr timeout 20 "$SPATTN" plan "$d/spec.yaml" --seq-len 64
    rm -rf "$d"
    [ "$status" -eq 2 ]
    [[ "$stderr" == *"spec.yaml: error: is a FIFO, not a regular file"* ]]
}

@test "a NUL inside a YAML string or key: exit 2 at file:line:col" {
    d=$(mktemp -d)
    printf 'heads: 16\nhead_dim: 64\npattern: "dense\\0!!"\n' >"$d/value.yaml"
    printf 'heads: 16\nhead_dim: 64\n"pattern\\0x": dense\n' >"$d/key.yaml"
    run --separate-stderr "$SPATTN" plan "$d/value.yaml" --seq-len 64
    [ "$status" -eq 2 ]
    [ "$stderr" = "$d/value.yaml:3:10: error: a NUL character (\\0) inside a string" ]
    run --separate-stderr "$SPATTN" plan "$d/key.yaml" --seq-len 64
    [ "$status" -eq 2 ]
    [ "$stderr" = "$d/key.yaml:3:1: error: a NUL character (\\0) inside a string" ]
    rm -rf "$d"
}

@test "pattern window: W covers distances [0, W), the same as custom bands [[0, W]] for every head (issue 19)" {
    T=$(mktemp -d)
    printf 'heads: 4\nhead_dim: 64\npattern: window\nwindow: 100\n' >"$T/w.yaml"
    printf 'heads: 4\nhead_dim: 64\npattern: custom\nbands_all_heads: [[0, 100]]\n' >"$T/c.yaml"
    run "$SPATTN" plan "$T/w.yaml" --seq-len 1024 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.pattern == "window" and all(.per_head[]; .intervals == [[0, 100]])'
    a=$("$SPATTN" run "$T/w.yaml" --device cpu --batch 1 --seq-len 200 --json | jq -c .checksum)
    b=$("$SPATTN" run "$T/c.yaml" --device cpu --batch 1 --seq-len 200 --json | jq -c .checksum)
    [ -n "$a" ] && [ "$a" != null ] && [ "$a" = "$b" ]
    rm -rf "$T"
}

@test "bands_all_heads: one list for every head; bands: one list per head" {
    T=$(mktemp -d)
    printf 'heads: 3\nhead_dim: 64\npattern: custom\nbands_all_heads: [[0, 65], [256, 512]]\n' >"$T/a.yaml"
    run "$SPATTN" plan "$T/a.yaml" --seq-len 1024 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '(.per_head | length) == 3 and all(.per_head[]; .intervals == [[0, 65], [256, 512]])'
    rm -rf "$T"
}

@test "a spec from standard input: '-' (issue 19)" {
    run bash -c "printf 'heads: 2\nhead_dim: 64\n' | '$SPATTN' plan - --seq-len 64 --json"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.spec == "stdin" and .heads == 2'
    run --separate-stderr bash -c "printf 'heads: 2\nhead_dims: 64\n' | '$SPATTN' plan - --seq-len 64"
    [ "$status" -eq 2 ]
    [[ "$stderr" == "stdin:2:1: error: unknown key 'head_dims'"* ]]
}
