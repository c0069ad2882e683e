#!/usr/bin/env bats
# spattn compile: NVRTC compiles without a GPU, with registers, shared memory
# and spills from ptxas.  Each kernel takes about half a second.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    SPEC="$ROOT/configs/olmoe-1b-7b.yaml"
    HYBRID="$ROOT/configs/hybrid-layers.yaml"
    TMP=$(mktemp -d)
    export SPATTN_CACHE_DIR="$TMP/kernels"   # compile stores its cubins there
}

teardown() { rm -rf "$TMP"; }

@test "compile fills the kernel cache: cache list shows the entry, a second compile reads it (issue 19)" {
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind fwd
    [ "$status" -eq 0 ]
    run "$SPATTN" cache list --json
    # the kernel, and the helpers of check's GPU reference
    echo "$output" | jq -e '.count == 2 and all(.entries[]; .arch == "sm_90a" and .valid)
                            and ([.entries[].label] | sort | .[1]) == "spattn_ref_helpers"
                            and ([.entries[].label] | sort | .[0] | test("^spattn_fwd_bf16_d128_bm128_bn128_w8_s2_ws_[0-9a-f]{8}$"))'
    run "$SPATTN" compile "$SPEC" --arch sm_90 --kind fwd --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.kernels[0].cached == true and .kernels[0].regs > 0 and (.spec_path | endswith("olmoe-1b-7b.yaml"))'
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind fwd
    [[ "${lines[1]}" == *" cached" ]]
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind fwd --no-cache --json
    echo "$output" | jq -e '.kernels[0].cached == false'
    [ "$("$SPATTN" cache list --json | jq .count)" -eq 2 ]
}

@test "compile prints a row per kernel with registers and spills" {
    run "$SPATTN" compile "$SPEC" --kind fwd
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == kernel*pattern*arch*regs*"smem static+dyn"*stack*"spill st/ld"*time ]]
    [[ "${lines[1]}" =~ ^spattn_fwd_bf16_d128_bm128_bn128_w8_s2_ws_[0-9a-f]{8}\ +spattn\ +sm_90a\ +[0-9]+\ +[0-9]+\+197632\ +0\ +0/0\ +[0-9.]+s$ ]]
}

@test "compile --json parses and reports registers" {
    run "$SPATTN" compile "$SPEC" --json --arch sm_80,sm_90 --kind fwd
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.spec == "olmoe-1b-7b" and (.kernels | length) == 2 and .spills == false'
    echo "$output" | jq -e '[.kernels[].arch] == ["sm_80", "sm_90a"]'
    echo "$output" | jq -e 'all(.kernels[]; .regs > 0 and .regs <= 255 and .spill_stores == 0 and .spill_loads == 0
                              and .smem_dynamic > 0 and .kind == "fwd" and .pattern == "spattn"
                              and (.arch as $a | .name | test("^spattn_fwd_bf16_d128_" + (if $a == "sm_80" then "bm64_bn64_w4_s2" else "bm128_bn128_w8_s2_ws" end) + "_[0-9a-f]{8}$")))'
}

@test "compile --no-spills exits 0 for the OLMoE config on sm_80 and sm_90" {
    run "$SPATTN" compile "$SPEC" --no-spills --arch sm_80,sm_90
    [ "$status" -eq 0 ]
}

@test "compile --no-spills: every shipped config, every pattern, sm_80 and sm_90a" {
    for f in "$ROOT"/configs/*.yaml; do
        run "$SPATTN" compile "$f" --no-spills --arch sm_80,sm_90a
        [ "$status" -eq 0 ] || { echo "$f: exit $status"; echo "$output"; false; }
    done
}

@test "compile covers every distinct pattern of a spec, or one layer's" {
    run "$SPATTN" compile "$HYBRID" --json --kind fwd
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '[.kernels[].pattern] == ["spattn", "dense", "local", "exclusive"]'
    run "$SPATTN" compile "$HYBRID" --json --kind fwd --layer-index 0
    echo "$output" | jq -e '[.kernels[].pattern] == ["dense"]'
    run "$SPATTN" compile "$SPEC" --json --kind fwd --dense
    echo "$output" | jq -e '[.kernels[].pattern] == ["dense"]'
}

@test "compile: a spilling tile warns, and --no-spills makes it exit 1" {
    run "$SPATTN" compile "$SPEC" --tile 128x128:w4:s2 --kind fwd
    [ "$status" -eq 0 ]
    [[ "$output" =~ "WARNING: spattn_fwd_bf16_d128_bm128_bn128_w4_s2_"[0-9a-f]{8}" for sm_90a spills" ]]
    run "$SPATTN" compile "$SPEC" --tile 128x128:w4:s2 --kind fwd --no-spills
    [ "$status" -eq 1 ]
    [[ "$output" == *"error: spattn_fwd_bf16_d128_bm128_bn128_w4_s2"* ]]
}

@test "compile --kind all covers the forward and the backward kernels" {
    run "$SPATTN" compile "$SPEC" --json --kind all
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '[.kernels[] | select(.kind == "fwd")] | length == 1'
    echo "$output" | jq -e 'all(.kernels[]; .regs > 0 and (.kind as $k | .name | startswith("spattn_" + $k)))'
}

@test "compile --kind bwd: the deterministic mode's own default too where it differs (sm_90a d64)" {
    run "$SPATTN" compile "$ROOT/configs/llama-8h-d64.yaml" --json --kind bwd --arch sm_90a --no-spills
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '[.kernels[] | select(.name | test("^spattn_bwd_main_[bf]"))] | map([.tile, .deterministic])
                            == [["64x64:w4:s3:ws", null], ["64x64:w4:s2:ws", true]]'
    # d128 and --tile: one unit, both modes share it
    run "$SPATTN" compile "$SPEC" --json --kind bwd --arch sm_90a
    echo "$output" | jq -e '[.kernels[] | select(.name | test("^spattn_bwd_main_[bf]"))] | length == 1'
    run "$SPATTN" compile "$ROOT/configs/llama-8h-d64.yaml" --json --kind bwd --arch sm_90a --tile 64x64:s3:ws
    echo "$output" | jq -e 'all(.kernels[]; .deterministic == null) and (.kernels | length == 4)'
}

@test "compile: bad arch, kind or tile exit 2" {
    run "$SPATTN" compile "$SPEC" --arch sm_70
    [ "$status" -eq 2 ]
    [[ "$output" == *"unsupported --arch 'sm_70'"* ]]
    run "$SPATTN" compile "$SPEC" --arch sm_80,
    [ "$status" -eq 0 ]
    run "$SPATTN" compile "$SPEC" --arch ,
    [ "$status" -eq 2 ]
    run "$SPATTN" compile "$SPEC" --kind sideways
    [ "$status" -eq 2 ]
    run "$SPATTN" compile "$SPEC" --tile 64x64:w3 --kind fwd
    [ "$status" -eq 2 ]
    [[ "$output" == *"16 or 32 query rows"* ]]
}

@test "compile: a wgmma tile for sm_80 or for the backward exits 2 and says why" {
    run "$SPATTN" compile "$SPEC" --arch sm_80 --kind fwd --tile 128x128:wgmma
    [ "$status" -eq 2 ]
    [[ "$output" == *"wgmma tiles need sm_90a"* ]]
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind bwd --tile 128x128:wgmma
    [ "$status" -eq 2 ]
    [[ "$output" == *"wgmma backward tile BM 128 must be 64"* ]]
}

@test "compile: the wgmma backward for sm_90a: main and main_sem on wgmma, no spills, not serialized" {
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind bwd --tile 64x128:s2:wgmma --no-spills
    [ "$status" -eq 0 ]
    [[ "$output" == *"spattn_bwd_main_bf16_d128_bm64_bn128_w8_s2_wg"* ]]
    [[ "$output" == *"spattn_bwd_main_sem_bf16_d128_bm64_bn128_w8_s2_wg"* ]]
    [[ "$output" != *"serialized"* ]]
    # deterministic mode on wgmma is pre -> main_sem -> convert: no main_det, no dq kernel
    [[ "$output" != *"spattn_bwd_main_det_"* ]]
    [[ "$output" != *"spattn_bwd_dq_"* ]]
    # 3 stages do not fit beside main's dQ staging (the bulk reduce-adds)
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind bwd --tile 64x128:s3:wgmma
    [ "$status" -eq 2 ]
    [[ "$output" == *"needs 236032 bytes of shared memory"* ]]
    run "$SPATTN" compile configs/llama-8h-d64.yaml --arch sm_90a --kind bwd --tile 64x64:s2:wgmma --no-spills
    [ "$status" -eq 0 ]
    [[ "$output" == *"spattn_bwd_main_bf16_d64_bm64_bn64_w4_s2_wg"* ]]
    [[ "$output" == *"spattn_bwd_main_sem_bf16_d64_bm64_bn64_w4_s2_wg"* ]]
    run "$SPATTN" compile configs/llama-8h-d64.yaml --arch sm_90a --kind bwd --tile 64x128:wgmma
    [ "$status" -eq 2 ]
    [[ "$output" == *"64 keys per 64 dims of head_dim"* ]]
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind bwd --tile 64x64:wgmma
    [ "$status" -eq 2 ]
    [[ "$output" == *"BN = head_dim"* ]]
}

@test "compile: the warp-specialized backward (:ws) for sm_90a: pre, main, main_sem, convert, no spills, not serialized" {
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind bwd --tile 64x128:s2:ws --no-spills
    [ "$status" -eq 0 ]
    [[ "$output" == *"spattn_bwd_main_bf16_d128_bm64_bn128_w8_s2_ws_"* ]]
    [[ "$output" == *"spattn_bwd_pre_bf16_d128_bm64_bn128_w8_s2_ws_"* ]]
    [[ "$output" == *"spattn_bwd_convert_bf16_d128_bm64_bn128_w8_s2_ws_"* ]]
    [[ "$output" != *"serialized"* ]]
    # deterministic mode: main_sem (ordered dQ adds), no main_det or dq kernel
    [[ "$output" == *"spattn_bwd_main_sem_bf16_d128_bm64_bn128_w8_s2_ws_"* ]]
    [[ "$output" != *"spattn_bwd_main_det_"* ]]
    [[ "$output" != *"spattn_bwd_dq_"* ]]
    run "$SPATTN" compile configs/gqa-32q-8kv.yaml --arch sm_90a --kind bwd --tile 64x128:w8:s2:ws --no-spills --json
    [ "$status" -eq 0 ]
    [[ "$output" == *'"name":"spattn_bwd_main_bf16_d128_bm64_bn128_w8_s2_ws_'* ]]
    for t in 64x64:s2:ws 64x64:s3:ws; do
        run "$SPATTN" compile configs/llama-8h-d64.yaml --arch sm_90a --kind bwd --tile "$t" --no-spills
        [ "$status" -eq 0 ]
        [[ "$output" == *"spattn_bwd_main_bf16_d64_bm64_bn64_w4_s"[23]"_ws_"* ]]
    done
    # the wgmma family's rules: 3 stages do not fit at d128, BN = head_dim, sm_90a only
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind bwd --tile 64x128:s3:ws
    [ "$status" -eq 2 ]
    [[ "$output" == *"needs 236032 bytes of shared memory"* ]]
    run "$SPATTN" compile "$SPEC" --arch sm_90a --kind bwd --tile 64x64:ws
    [ "$status" -eq 2 ]
    [[ "$output" == *"BN = head_dim"* ]]
    run "$SPATTN" compile "$SPEC" --arch sm_80 --kind bwd --tile 64x128:s2:ws
    [ "$status" -eq 2 ]
    [[ "$output" == *"sm_90a"* ]]
}

@test "gen: the default backward on sm_90a is the :ws kernel (producer, TMA maps), at d128 and d64" {
    run "$SPATTN" gen "$SPEC" --kind bwd --arch sm_90a
    [ "$status" -eq 0 ]
    [[ "$output" == *"bwd_ws_body<false>(p, tm)"* ]]
    [[ "$output" == *"bwd_ws_body<true>(p, tm)"* ]]
    [[ "$output" == *"_ws_"* ]]
    run "$SPATTN" gen configs/llama-8h-d64.yaml --kind bwd --arch sm_90a
    [ "$status" -eq 0 ]
    [[ "$output" == *"bwd_ws_body<true>(p, tm)"* ]]
    [[ "$output" == *"_bm64_bn64_w4_s3_ws_"* ]]
    run "$SPATTN" gen "$SPEC" --kind bwd --arch sm_90a --tile 64x128:s2:ws
    [ "$status" -eq 0 ]
    [[ "$output" == *"bwd_ws_body<false>(p, tm)"* ]]
    [[ "$output" == *"const __grid_constant__ bwd_tma_maps tm"* ]]
    [[ "$output" == *"PRODUCER_REGS = 24"* ]]
}

@test "compile: the deterministic backward's kernels: main_sem on ws and wgmma (GQA), main_det and dq on mma.sync" {
    run "$SPATTN" compile configs/gqa-32q-8kv.yaml --arch sm_90a --kind bwd --no-spills --json
    [ "$status" -eq 0 ]
    [[ "$output" == *'"name":"spattn_bwd_main_sem_bf16_d128_bm64_bn128_w8_s2_ws_'* ]]
    run "$SPATTN" compile configs/gqa-32q-8kv.yaml --arch sm_90a --kind bwd --tile 64x128:s2:wgmma --no-spills --json
    [ "$status" -eq 0 ]
    [[ "$output" == *'"name":"spattn_bwd_main_sem_bf16_d128_bm64_bn128_w8_s2_wg_'* ]]
    [[ "$output" != *'spattn_bwd_main_det_'* ]]
    run "$SPATTN" compile "$SPEC" --arch sm_80 --kind bwd --no-spills
    [ "$status" -eq 0 ]
    [[ "$output" == *"spattn_bwd_main_det_"* ]]
    [[ "$output" == *"spattn_bwd_dq_"* ]]
    [[ "$output" != *"spattn_bwd_main_sem_"* ]]
}

@test "compile: the wgmma kernel for sm_90a uses no spills and no serialized wgmma" {
    run "$SPATTN" compile configs/llama-8h-d64.yaml --arch sm_90a --kind fwd --tile 64x128:wgmma --no-spills
    [ "$status" -eq 0 ]
    [[ "$output" == *"spattn_fwd_bf16_d64_bm64_bn128_w4_s3_wg"* ]]
    [[ "$output" != *"serialized"* ]]
}
