#!/usr/bin/env bats
# spattn check (spattn-check(1)): usage and spec errors on any machine, the
# missing-GPU error where there is none, and real checks on the GPU host.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    OLMOE="$ROOT/configs/olmoe-1b-7b.yaml"
    BAD="$ROOT/tests/fixtures/bad"
    TMP=$(mktemp -d)
    # Never touch the user's kernel cache or tuning database.
    export SPATTN_CACHE_DIR="$TMP/kernels" SPATTN_DB="$TMP/tune.db"
}

teardown() { rm -rf "$TMP"; }

have_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1; }
need_gpu() { have_gpu || skip "no GPU: runs on the GPU host"; }

# ---- anywhere: usage and spec errors come before the GPU (exit 2, not 3) ----

@test "check --help: usage on stdout, exit 0, every documented option" {
    run "$SPATTN" check --help
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: spattn check SPEC"* ]]
    for o in --batch --seq-len --pass --reference --pattern --dtype --layout --tile --db --seed --gpu --json; do
        [[ "$output" == *"$o"* ]] || { echo "missing $o"; false; }
    done
}

@test "check: no SPEC is a usage error" {
    run "$SPATTN" check
    [ "$status" -eq 2 ]
}

@test "check: a missing spec file, exit 2 naming it" {
    run "$SPATTN" check "$TMP/nope.yaml"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/nope.yaml"*"error:"* ]]
}

@test "check: invalid specs, exit 2 with the file position" {
    for f in heads-zero malformed-yaml pattern-unknown kv-heads-not-dividing; do
        run "$SPATTN" check "$BAD/$f.yaml"
        [ "$status" -eq 2 ] || { echo "$f: exit $status: $output"; false; }
        [[ "$output" == *"$f.yaml:"*"error:"* ]] || { echo "$f: $output"; false; }
    done
}

@test "check: a layer index out of range, exit 2" {
    run "$SPATTN" check "$ROOT/configs/hybrid-layers.yaml" --layer-index 99
    [ "$status" -eq 2 ]
}

@test "check: bad --pass, exit 2" {
    run "$SPATTN" check "$OLMOE" --pass sideways
    [ "$status" -eq 2 ]
    [[ "$output" == *"--pass: 'sideways' is not fwd, bwd or both"* ]]
}

@test "check: bad --reference, exit 2" {
    run "$SPATTN" check "$OLMOE" --reference cpu64
    [ "$status" -eq 2 ]
    [[ "$output" == *"--reference: 'cpu64' is not auto, cpu or gpu"* ]]
}

@test "check: bad --pattern (custom included), exit 2" {
    run "$SPATTN" check "$OLMOE" --pattern spatn
    [ "$status" -eq 2 ]
    [[ "$output" == *"--pattern: 'spatn'"* ]]
    run "$SPATTN" check "$OLMOE" --pattern custom
    [ "$status" -eq 2 ]
}

@test "check: bad --dtype, exit 2" {
    run "$SPATTN" check "$OLMOE" --dtype fp32
    [ "$status" -eq 2 ]
    [[ "$output" == *"--dtype: 'fp32' is not bf16 or fp16"* ]]
}

@test "check: bad --layout, exit 2" {
    run "$SPATTN" check "$OLMOE" --layout nhbd
    [ "$status" -eq 2 ]
    [[ "$output" == *"--layout: 'nhbd' is not bnhd or bhnd"* ]]
}

@test "check: malformed --tile or --bwd-tile, exit 2 before any GPU work" {
    for t in 12x x64 128x64:w 128x64:q3 abc; do
        run "$SPATTN" check "$OLMOE" --seq-len 64 --tile "$t"
        [ "$status" -eq 2 ] || { echo "--tile $t: exit $status: $output"; false; }
        run "$SPATTN" check "$OLMOE" --seq-len 64 --pass both --bwd-tile "$t"
        [ "$status" -eq 2 ] || { echo "--bwd-tile $t: exit $status: $output"; false; }
    done
}

@test "check: --seq-len and --batch out of range, exit 2" {
    run "$SPATTN" check "$OLMOE" --seq-len 0
    [ "$status" -eq 2 ]
    run "$SPATTN" check "$OLMOE" --batch -1
    [ "$status" -eq 2 ]
    run "$SPATTN" check "$OLMOE" --seq-len 33554432
    [ "$status" -eq 2 ]
}

@test "without a GPU: the hint fits the command; only run is told --device cpu (issue 19)" {
    have_gpu && skip "a GPU is present"
    for c in check bench tune; do
        run "$SPATTN" "$c" "$OLMOE" --batch 1 --seq-len 64
        [ "$status" -eq 3 ] || { echo "$c: exit $status"; false; }
        [[ "$output" != *"--device cpu"* || "$output" == *"spattn run SPEC --device cpu"* ]] || { echo "$c: $output"; false; }
        [[ "$output" == *"hint: $c "* ]] || { echo "$c: $output"; false; }
    done
    run "$SPATTN" run "$OLMOE" --batch 1 --seq-len 64 --device gpu
    [ "$status" -eq 3 ]
    [[ "$output" == *"hint: without a GPU, run the CPU reference: spattn run SPEC --device cpu"* ]]
}

@test "check: without a GPU, exit 3 naming the missing driver" {
    have_gpu && skip "a GPU is present"
    run "$SPATTN" check "$OLMOE" --batch 1 --seq-len 64
    [ "$status" -eq 3 ]
    [[ "$output" == *"libcuda.so.1"* ]]
    [[ "$output" == *"error:"* ]]
    # --json changes nothing: the error is on stderr, stdout stays empty
    run bash -c "'$SPATTN' check '$OLMOE' --seq-len 64 --json 2>/dev/null"
    [ "$status" -eq 3 ]
    [ -z "$output" ]
}

# ---- on the GPU host -------------------------------------------------------

@test "gpu: OLMoE at a small shape passes against the CPU reference (--json)" {
    need_gpu
    run bash -c "'$SPATTN' check '$OLMOE' --batch 2 --seq-len 512 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok == true and .pass == "fwd" and .reference == "cpu-float64"'
    echo "$output" | jq -e '[.tensors[].name] == ["O", "LSE", "O=0"]'
    echo "$output" | jq -e 'all(.tensors[]; .pass and .nan == 0 and .inf_mismatch == 0 and .nonzero == 0 and (.exact or .bound == 0.01) and .rel_l2 <= 0.01)'
    echo "$output" | jq -e '.batch == 2 and .seq_len == 512 and .heads == 16 and .head_dim == 128 and .dtype == "bf16"'
    echo "$output" | jq -e '.layout == "bnhd" and .pattern == "spattn" and (.kernel | startswith("spattn_fwd_bf16_d128"))'
    echo "$output" | jq -e '.config_source == "heuristic"'   # the fresh, empty SPATTN_DB
}

@test "gpu: the text report: a row per tensor and PASS" {
    need_gpu
    run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len 256 2>/dev/null"
    [ "$status" -eq 0 ]
    [[ "$output" == *"check olmoe-1b-7b fwd: B=1 N=256 H=16 KVH=16 D=128 bf16 spattn bnhd"* ]]
    echo "$output" | grep -qE '^  O +[0-9.e+-]+ +[0-9.e+-]+ +0 +1e-02 +PASS$'
    echo "$output" | grep -qE '^  LSE +.* PASS$'
    [ "${lines[${#lines[@]}-1]}" = "PASS" ]
}

@test "gpu: fp16 passes its tighter bound" {
    need_gpu
    run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len 384 --dtype fp16 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .dtype == "fp16" and all(.tensors[]; (.exact or .bound == 0.002) and .rel_l2 <= 0.002)'
}

@test "gpu: ragged N (not a multiple of any tile) and N = 1" {
    need_gpu
    for n in 1 77 1000; do
        run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len $n --json 2>/dev/null"
        [ "$status" -eq 0 ] || { echo "N=$n: exit $status: $output"; false; }
        echo "$output" | jq -e ".ok and .seq_len == $n"
    done
}

@test "gpu: exclusive bands with rows that have no key (O = 0, LSE = -inf)" {
    need_gpu
    # At N = 300 head h's band starts at about 18 h: its first rows see nothing.
    run bash -c "'$SPATTN' check '$ROOT/configs/exclusive-16h.yaml' --batch 1 --seq-len 300 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .pattern == "exclusive" and all(.tensors[]; .nan == 0 and .inf_mismatch == 0)'
    run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len 200 --pattern gapped --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .pattern == "gapped"'
}

@test "gpu: the cuBLAS reference, GQA and the bhnd layout" {
    need_gpu
    run bash -c "'$SPATTN' check '$ROOT/configs/gqa-32q-8kv.yaml' --seq-len 1024 --reference gpu --layout bhnd --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .reference == "gpu-cublas-fp32" and .kv_heads == 8 and .layout == "bhnd"'
    # auto picks cuBLAS for a large shape
    run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len 8192 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .reference == "gpu-cublas-fp32"'
}

@test "gpu: head_dim 64 and a custom-band spec" {
    need_gpu
    run bash -c "'$SPATTN' check '$ROOT/configs/llama-8h-d64.yaml' --batch 1 --seq-len 700 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .head_dim == 64'
    run bash -c "'$SPATTN' check '$ROOT/configs/custom-4h.yaml' --batch 1 --seq-len 1500 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .pattern == "custom"'
}

@test "gpu: --tile is used and reported" {
    need_gpu
    run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len 300 --tile 64x64:w4:s2 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.ok and .config_source == "--tile" and (.kernel | contains("bm64_bn64_w4_s2"))'
}

@test "gpu: --pass both checks fwd and then bwd (where bwd exists)" {
    need_gpu
    run bash -c "'$SPATTN' check '$OLMOE' --batch 1 --seq-len 256 --pass both --json 2>'$TMP/err'"
    if [ "$status" -eq 2 ] && grep -qE 'not (available|supported)' "$TMP/err"; then
        skip "this build has no backward kernels"
    fi
    [ "$status" -eq 0 ]
    echo "$output" | jq -s -e 'length == 2 and .[0].pass == "fwd" and .[1].pass == "bwd" and all(.[]; .ok)'
    echo "$output" | jq -s -e '[.[1].tensors[].name] == ["dQ", "dK", "dV", "dQ=0", "dK=0", "dV=0"]'
}

# ---- issue 13: the async-copy races, as reported ---------------------------

spec13() {   # heads kv_heads head_dim dtype pattern -> a spec file
    printf 'heads: %s\nkv_heads: %s\nhead_dim: %s\ndtype: %s\npattern: %s\n' "$@" >"$TMP/s13.yaml"
    echo "$TMP/s13.yaml"
}

@test "gpu: regress-13 fwd-empty-qtile: O on whole query tiles with no key is exactly 0" {
    need_gpu
    s=$(spec13 16 4 128 bf16 exclusive)
    for seed in 1 2 3; do
        run bash -c "'$SPATTN' check '$s' --batch 1 --seq-len 4096 --seed $seed --reference gpu --json 2>/dev/null"
        [ "$status" -eq 0 ] || { echo "seed $seed: $output"; false; }
        echo "$output" | jq -e '.ok and (.tensors[] | select(.name == "O=0") | .exact and .nonzero == 0)'
    done
}

@test "gpu: regress-13 det-dq: the deterministic dQ with empty query tiles, bitwise repeatable" {
    need_gpu
    s=$(spec13 24 8 64 fp16 exclusive)
    run bash -c "'$SPATTN' check '$s' --pass bwd --deterministic --batch 1 --seq-len 6000 --reference gpu --json 2>/dev/null"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    echo "$output" | jq -e '.ok and ([.tensors[].name] | index("dQ=0") and index("repeat"))'
    s=$(spec13 8 2 128 bf16 gapped)
    run bash -c "'$SPATTN' check '$s' --pass bwd --deterministic --batch 1 --seq-len 8192 --reference gpu --json 2>/dev/null"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
}

@test "gpu: check --pass bwd --tile names a backward tile (the forward keeps its own config)" {
    need_gpu
    run bash -c "'$SPATTN' check '$OLMOE' --pass bwd --batch 1 --seq-len 300 --tile 64x128:w8:s2:wgmma --json 2>/dev/null"
    [ "$status" -eq 0 ] || { echo "$output"; false; }
    echo "$output" | jq -e '.ok and .config_source == "--tile" and (.kernel | contains("_wg"))'
}
