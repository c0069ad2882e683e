#!/usr/bin/env bats
# spattn plan: band plans of a spec (spattn-plan(1)).

bats_require_minimum_version 1.5.0

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    OLMOE="$ROOT/configs/olmoe-1b-7b.yaml"
    LLAMA="$ROOT/configs/llama-8h-d64.yaml"
    TMP=$(mktemp -d)
}

teardown() { rm -rf "$TMP"; }

@test "plan: the paper's spec at N = 4096 has work ratio 0.176441" {
    run "$SPATTN" plan "$OLMOE" --seq-len 4096
    [ "$status" -eq 0 ]
    [[ "$output" == *"work ratio 0.176441"* ]]
    [[ "$output" == *"ideal speedup 5.67x"* ]]
    # 16 head rows; head 1's local window touches its band and merges
    [ "$(echo "$output" | grep -cE '^ +[0-9]+ +[0-9]+ +0\.[0-9]{6} ')" -eq 16 ]
    echo "$output" | grep -qE '^ +1 .*\[0,512\)$'
    echo "$output" | grep -qE '^ +15 .*\[0,257\) \[3840,4096\)$'
}

@test "plan: 8 heads at N = 4096 has work ratio 0.330429" {
    run "$SPATTN" plan "$LLAMA" --seq-len 4096
    [ "$status" -eq 0 ]
    [[ "$output" == *"work ratio 0.330429"* ]]
}

@test "plan: --seq-len defaults to the spec's first seq_len" {
    a=$("$SPATTN" plan "$OLMOE")
    b=$("$SPATTN" plan "$OLMOE" --seq-len 4096)
    [ "$a" = "$b" ]
}

@test "plan: --json parses and carries the totals" {
    run "$SPATTN" plan "$OLMOE" --seq-len 4096 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.totals.work_ratio > 0.1764405 and .totals.work_ratio < 0.1764415'
    echo "$output" | jq -e '.heads == 16 and .seq_len == 4096 and .pattern == "spattn"'
    echo "$output" | jq -e '.tile.bm == 128 and .tile.bn == 128 and .arch == "sm_90a"'
    echo "$output" | jq -e '.per_head | length == 16'
    echo "$output" | jq -e '.per_head[2].intervals == [[0,257],[512,768]]'
    # every head: tiles = full + partial; totals add up over heads
    echo "$output" | jq -e 'all(.per_head[]; .tiles == .full + .partial)'
    echo "$output" | jq -e '.totals.tiles == ([.per_head[].tiles] | add)'
    echo "$output" | jq -e '.totals.pairs == ([.per_head[].pairs] | add)'
    echo "$output" | jq -e '.totals.dense_pairs == 16 * 4096 * 4097 / 2'
}

@test "plan: --tile changes the tile counts, not the ratio" {
    a=$("$SPATTN" plan "$OLMOE" --seq-len 4096 --tile 64x64 --json)
    b=$("$SPATTN" plan "$OLMOE" --seq-len 4096 --tile 128x128 --json)
    [ "$(echo "$a" | jq .totals.work_ratio)" = "$(echo "$b" | jq .totals.work_ratio)" ]
    [ "$(echo "$a" | jq .totals.dense_tiles)" -eq $((16 * 64 * 65 / 2)) ]
    [ "$(echo "$b" | jq .totals.dense_tiles)" -eq $((16 * 32 * 33 / 2)) ]
}

@test "plan: N = 1 and N below the head count" {
    run "$SPATTN" plan "$OLMOE" --seq-len 1 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.totals.work_ratio == 1 and .totals.tiles == 16'
    run "$SPATTN" plan "$OLMOE" --seq-len 7
    [ "$status" -eq 0 ]
    [[ "$output" == *"work ratio "* ]]
}

@test "plan: --layer-index picks a layer's pattern" {
    run "$SPATTN" plan "$ROOT/configs/hybrid-layers.yaml" --seq-len 4096 --layer-index 0 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.pattern == "dense" and .totals.work_ratio == 1 and .layer_index == 0'
    run "$SPATTN" plan "$ROOT/configs/hybrid-layers.yaml" --seq-len 4096 --layer-index 99
    [ "$status" -eq 2 ]
}

@test "plan: --svg writes an SVG drawing of every head" {
    run "$SPATTN" plan "$OLMOE" --seq-len 4096 --svg "$TMP/mask.svg"
    [ "$status" -eq 0 ]
    [ -s "$TMP/mask.svg" ]
    head -c 5 "$TMP/mask.svg" | grep -qE '^(<svg|<\?xml)'
    tail -n 1 "$TMP/mask.svg" | grep -q '</svg>'
    [ "$(grep -c '>head [0-9]*</text>' "$TMP/mask.svg")" -eq 16 ]
    grep -q 'work ratio 0.176441' "$TMP/mask.svg"
    # stdout still carries the plan
    [[ "$output" == *"work ratio 0.176441"* ]]
}

@test "plan: --svg with --json keeps stdout pure JSON" {
    "$SPATTN" plan "$OLMOE" --json --svg "$TMP/m.svg" >"$TMP/out.json"
    jq -e .totals.work_ratio "$TMP/out.json"
    [ -s "$TMP/m.svg" ]
}

@test "plan: --svg into a missing directory: exit 2 before planning" {
    run "$SPATTN" plan "$OLMOE" --svg "$TMP/no/such/dir/m.svg"
    [ "$status" -eq 2 ]
    [ "$output" = "$TMP/no/such/dir/m.svg: error: --svg: directory '$TMP/no/such/dir' does not exist" ]
}

@test "plan: bad --tile exits 2" {
    for t in 128 128x x64 100x64 128x8 512x64 0x0 128x64x2 abc -16x64; do
        run "$SPATTN" plan "$OLMOE" --tile "$t"
        [ "$status" -eq 2 ] || { echo "--tile $t exited $status"; false; }
        [[ "$output" == *"--tile"* ]]
    done
}

@test "plan: --seq-len 0 and junk exit 2" {
    run "$SPATTN" plan "$OLMOE" --seq-len 0
    [ "$status" -eq 2 ]
    run "$SPATTN" plan "$OLMOE" --seq-len 12abc
    [ "$status" -eq 2 ]
    run "$SPATTN" plan "$OLMOE" --seq-len 16777217
    [ "$status" -eq 2 ]
}

@test "plan: missing spec file exits 2 naming it" {
    run "$SPATTN" plan "$TMP/nope.yaml"
    [ "$status" -eq 2 ]
    [[ "$output" == *"nope.yaml"* ]]
}

@test "plan: no spec argument exits 2" {
    run "$SPATTN" plan --seq-len 4096
    [ "$status" -eq 2 ]
}

@test "plan: unknown flag exits 2 with a hint" {
    run "$SPATTN" plan "$OLMOE" --frobnicate
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown option"* ]]
    [[ "$output" == *"hint:"* ]]
}

@test "plan: --help exits 0 and lists the options" {
    run "$SPATTN" plan --help
    [ "$status" -eq 0 ]
    [[ "$output" == usage:* ]]
    [[ "$output" == *"--seq-len"* && "$output" == *"--tile"* && "$output" == *"--svg"* ]]
}

@test "plan: exclusive bands of a minimal spec, by hand" {
    printf 'name: tiny\nheads: 4\nhead_dim: 64\npattern: exclusive\n' >"$TMP/tiny.yaml"
    run "$SPATTN" plan "$TMP/tiny.yaml" --seq-len 64 --tile 16x16 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.per_head[3].intervals == [[48,64]] and .totals.work_ratio == 0.25'
    # head 0 = [0,16) at 16x16 tiles: query tile m visits tile m (d -15..15) and m-1
    # (d 1..31), both partial: 4 + 3 tiles
    echo "$output" | jq -e '.per_head[0] | .tiles == 7 and .full == 0 and .partial == 7'
    # head 1 = [16,32): tiles m-1 (d 1..31) and m-2 (d 17..47): 3 + 2, all partial
    echo "$output" | jq -e '.per_head[1] | .tiles == 5 and .partial == 5'
}

@test "plan: tiles of the kernel that runs: --arch picks its default forward config (issue 19)" {
    run "$SPATTN" plan "$OLMOE" --seq-len 4096 --json
    echo "$output" | jq -e '.arch == "sm_90a" and .tile.bm == 128 and .tile.bn == 128 and (.tile.config | endswith(":ws"))'
    run "$SPATTN" plan "$OLMOE" --seq-len 4096 --arch sm_80 --json
    echo "$output" | jq -e '.arch == "sm_80" and .tile.bm == 64 and .tile.bn == 64'
    run "$SPATTN" plan "$OLMOE" --seq-len 4096 --arch sm_80
    [[ "${lines[0]}" == *"tile 64x64 (sm_80 forward kernel 64x64:"* ]]
    run "$SPATTN" plan "$OLMOE" --seq-len 4096 --tile 128x64 --json
    echo "$output" | jq -e '.tile.bm == 128 and .tile.bn == 64 and .tile.config == null'
    run "$SPATTN" plan "$OLMOE" --arch sm_70
    [ "$status" -eq 2 ]
}

@test "plan --svg: axis ticks, a title that fits, and - for stdout (issue 19)" {
    printf 'name: a-rather-long-spec-name-that-would-be-cut-off-at-560-px-wide-for-sure\nheads: 1\nhead_dim: 64\n' >"$TMP/long.yaml"
    run "$SPATTN" plan "$TMP/long.yaml" --seq-len 1000 --svg -
    [ "$status" -eq 0 ]
    [[ "$output" == "<svg"* ]]
    [ "$(echo "$output" | grep -o 'class="tk"' | wc -l)" -ge 6 ]
    echo "$output" | grep -q '>500</text>'
    w=$(echo "$output" | sed -nE '1s/.*width="([0-9]+)".*/\1/p')
    title=$(echo "$output" | sed -nE 's/.*class="t">([^<]*)<.*/\1/p')
    [ "$w" -ge $((40 + 10 * ${#title})) ]
    run "$SPATTN" plan "$OLMOE" --svg - --json
    [ "$status" -eq 2 ]
}

@test "plan: a warning on stderr when most heads attend nothing at N (issue 19)" {
    run --separate-stderr "$SPATTN" plan "$ROOT/configs/exclusive-16h.yaml" --seq-len 4096 --json
    [ "$status" -eq 0 ]
    [ -z "$stderr" ]
    printf 'heads: 8\nhead_dim: 64\npattern: exclusive\nband_basis: 65536\n' >"$TMP/far.yaml"
    run --separate-stderr "$SPATTN" plan "$TMP/far.yaml" --seq-len 1024 --json
    [ "$status" -eq 0 ]
    [[ "$stderr" == "warning: 7 of 8 heads attend nothing at N = 1024"* ]]
    echo "$output" | jq -e .heads
}

@test "plan --json: one vocabulary with run: spec_path, head_dim, kv_heads, dtype; band_basis seq_len / L / null (issue 19)" {
    run "$SPATTN" plan "$OLMOE" --seq-len 256 --json
    echo "$output" | jq -e '.spec_path | endswith("olmoe-1b-7b.yaml")'
    echo "$output" | jq -e 'has("path") == false and .head_dim == 128 and .kv_heads == 16 and .dtype == "bf16"'
    echo "$output" | jq -e '.band_basis == "seq_len"'
    r=$("$SPATTN" run "$OLMOE" --device cpu --batch 1 --seq-len 8 --json)
    [ "$(echo "$r" | jq -r .spec_path)" = "$(echo "$output" | jq -r .spec_path)" ]
    run "$SPATTN" plan "$ROOT/configs/hybrid-layers.yaml" --seq-len 256 --layer-index 0 --json
    echo "$output" | jq -e '.pattern == "dense" and .band_basis == null'
    run --separate-stderr "$SPATTN" plan "$ROOT/configs/hybrid-layers.yaml" --seq-len 256 --layer-index 5 --json
    echo "$output" | jq -e '.band_basis == 8192'
}
