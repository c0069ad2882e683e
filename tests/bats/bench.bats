#!/usr/bin/env bats
# spattn bench (spattn-bench(1)): usage and spec errors anywhere, the
# missing-GPU error where there is none, and short sweeps on the GPU host.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    OLMOE="$ROOT/configs/olmoe-1b-7b.yaml"
    TMP=$(mktemp -d)
    export SPATTN_CACHE_DIR="$TMP/kernels" SPATTN_DB="$TMP/tune.db"
}

teardown() { rm -rf "$TMP"; }

have_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1; }
need_gpu() { have_gpu || skip "no GPU: runs on the GPU host"; }

# ---- anywhere ----------------------------------------------------------------

@test "bench --help lists every option, exit 0" {
    run "$SPATTN" bench --help
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: spattn bench SPEC"* ]]
    for o in --seq-len --batch --pass --iters --json --csv --svg --layer-index --tile --bwd-tile --deterministic --db --gpu; do
        [[ "$output" == *"$o"* ]] || { echo "missing $o"; false; }
    done
}

@test "bench: bad --pass, exit 2" {
    run "$SPATTN" bench "$OLMOE" --pass bwd
    [ "$status" -eq 2 ]
    [[ "$output" == *"--pass: 'bwd' is not fwd or fwdbwd"* ]]
}

@test "bench: --json with --csv, exit 2" {
    run "$SPATTN" bench "$OLMOE" --json --csv
    [ "$status" -eq 2 ]
    [[ "$output" == *"--json and --csv exclude each other"* ]]
}

@test "bench: a missing or invalid spec, exit 2 (before any GPU work)" {
    run "$SPATTN" bench "$TMP/nope.yaml"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/nope.yaml"*"error:"* ]]
    run "$SPATTN" bench "$ROOT/tests/fixtures/bad/dtype-unknown.yaml"
    [ "$status" -eq 2 ]
    [[ "$output" == *"dtype-unknown.yaml:"*"error:"* ]]
    run "$SPATTN" bench "$ROOT/configs/hybrid-layers.yaml" --layer-index 12
    [ "$status" -eq 2 ]
}

@test "bench: bad --seq-len lists and --iters, exit 2" {
    run "$SPATTN" bench "$OLMOE" --seq-len 1024,0
    [ "$status" -eq 2 ]
    run "$SPATTN" bench "$OLMOE" --seq-len 1024,abc
    [ "$status" -eq 2 ]
    run "$SPATTN" bench "$OLMOE" --iters 0
    [ "$status" -eq 2 ]
}

@test "bench: a malformed --tile, exit 2 before any GPU work" {
    run "$SPATTN" bench "$OLMOE" --seq-len 64 --tile 12x
    [ "$status" -eq 2 ]
}

@test "bench: a malformed --bwd-tile, exit 2 before any GPU work, naming the tile" {
    for t in 12x abc 64x128:q3; do
        run "$SPATTN" bench "$OLMOE" --seq-len 64 --pass fwdbwd --bwd-tile "$t"
        [ "$status" -eq 2 ] || { echo "--bwd-tile $t: exit $status: $output"; false; }
        [[ "$output" == *"$t"* ]]
    done
}

@test "bench: without a GPU, exit 3 naming the missing driver, nothing on stdout" {
    have_gpu && skip "a GPU is present"
    run "$SPATTN" bench "$OLMOE" --seq-len 64
    [ "$status" -eq 3 ]
    [[ "$output" == *"libcuda.so.1"* ]]
    run bash -c "'$SPATTN' bench '$OLMOE' --seq-len 64 --csv --svg '$TMP/b.svg' 2>/dev/null"
    [ "$status" -eq 3 ]
    [ -z "$output" ]
    [ ! -e "$TMP/b.svg" ]
}

# ---- on the GPU host -----------------------------------------------------------

@test "gpu: --json, one object per point with every field" {
    need_gpu
    run bash -c "'$SPATTN' bench '$OLMOE' --batch 1 --seq-len 256,1000,2048 --iters 5 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -s -e 'length == 3 and ([.[].seq_len] == [256, 1000, 2048])'
    echo "$output" | jq -s -e 'all(.[];
        .spattn_ms > 0 and .dense_ms > 0 and .work_ratio > 0 and .work_ratio <= 1
        and (.speedup - .dense_ms / .spattn_ms | fabs) < 1e-6 * .speedup
        and (.ideal_speedup * .work_ratio - 1 | fabs) < 1e-9
        and (.share_of_ideal - .speedup / .ideal_speedup | fabs) < 1e-6
        and .spattn_eff_tflops > 0 and .dense_tflops > 0
        and (.kernel | startswith("spattn_fwd_bf16_d128")) and .config_source == "heuristic")'
    # the paper's ratio at 2048 is below 1/4 (16 heads)
    echo "$output" | jq -s -e '.[2].work_ratio < 0.25'
}

@test "gpu: the text table, one row per point" {
    need_gpu
    run bash -c "'$SPATTN' bench '$OLMOE' --batch 1 --seq-len 512,1024 --iters 5 2>/dev/null"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 3 ]
    [[ "${lines[0]}" == N*ratio*"spattn ms"*"dense ms"*speedup*ideal*"of ideal"*"eff TF/s"*config* ]]
    [[ "${lines[1]}" =~ ^512\  ]]
    [[ "${lines[2]}" =~ ^1024\  ]]
}

@test "gpu: --csv, a header and one row per point" {
    need_gpu
    run bash -c "'$SPATTN' bench '$OLMOE' --batch 1 --seq-len 512,1024 --iters 5 --csv 2>/dev/null"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 3 ]
    [ "${lines[0]}" = "seq_len,work_ratio,spattn_ms,dense_ms,speedup,ideal_speedup,share_of_ideal,spattn_tflops,dense_tflops,kernel,config" ]
    for i in 1 2; do
        [ "$(echo "${lines[$i]}" | awk -F, '{print NF}')" -eq 11 ]
    done
    [ "$(echo "${lines[2]}" | cut -d, -f1)" = 1024 ]
}

@test "gpu: --csv stays 11 columns with a tuned config" {
    need_gpu
    "$SPATTN" tune "$OLMOE" --batch 1 --seq-len 512 --iters 3 2>/dev/null
    run bash -c "'$SPATTN' bench '$OLMOE' --batch 1 --seq-len 512 --iters 5 --csv 2>/dev/null"
    [ "$status" -eq 0 ]
    [[ "${lines[1]}" == *tuned* ]]
    # The config field is quoted if it holds a comma; parse it as CSV.
    n=$(echo "${lines[1]}" | python3 -c 'import csv,sys; print(len(next(csv.reader(sys.stdin))))')
    [ "$n" -eq 11 ]
}

@test "gpu: --svg writes a drawing with both panels" {
    need_gpu
    run "$SPATTN" bench "$OLMOE" --batch 1 --seq-len 512,1024,2048 --iters 5 --svg "$TMP/b.svg"
    [ "$status" -eq 0 ]
    [ -s "$TMP/b.svg" ]
    head -c 200 "$TMP/b.svg" | grep -q '^<svg xmlns="http://www.w3.org/2000/svg"'
    grep -q 'time per forward' "$TMP/b.svg"
    grep -q 'speedup over dense causal' "$TMP/b.svg"
    grep -q 'ideal (1 / work ratio)' "$TMP/b.svg"
    [ "$(grep -c '<polyline' "$TMP/b.svg")" -eq 4 ]
    if command -v xmllint >/dev/null; then xmllint --noout "$TMP/b.svg"; fi
    # no temporary file left beside it
    [ "$(ls "$TMP" | grep -c svg)" -eq 1 ]
}

@test "gpu: --bwd-tile times the backward named apart from the forward's tile, and --deterministic" {
    need_gpu
    run bash -c "'$SPATTN' bench '$OLMOE' --batch 1 --seq-len 700 --iters 3 --pass fwdbwd --bwd-tile 64x128:s2:wgmma --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '(.kernel | contains("_ws_")) and (.kernel | contains("bwd_main_bf16_d128_bm64_bn128_w8_s2_wg_"))'
    run bash -c "'$SPATTN' bench '$OLMOE' --batch 1 --seq-len 700 --iters 3 --pass fwdbwd --deterministic --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.spattn_ms > 0'
}

@test "gpu: a single point and --tile" {
    need_gpu
    run bash -c "'$SPATTN' bench '$OLMOE' --batch 1 --seq-len 700 --iters 3 --tile 64x64:w4:s2 --json --svg '$TMP/one.svg' 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.seq_len == 700 and .config_source == "--tile" and (.kernel | contains("bm64_bn64"))'
    [ -s "$TMP/one.svg" ]
}
