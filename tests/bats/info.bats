#!/usr/bin/env bats
# spattn info: versions, driver, GPUs, paths (spattn-info(1)).  Runs with
# or without a GPU; cases that need one or its absence skip accordingly.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    TMP=$(mktemp -d)
    export SPATTN_CACHE_DIR="$TMP/kernels" SPATTN_DB="$TMP/tune.db"
}

teardown() { rm -rf "$TMP"; }

have_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1; }

@test "info: versions and paths, exit 0" {
    run "$SPATTN" info
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "spattn: $("$SPATTN" --version | head -n 1 | cut -d' ' -f2)" ]
    [[ "${lines[1]}" =~ ^NVRTC:\ [0-9]+\.[0-9]+$ ]]
    [[ "$output" == *"kernel cache: $TMP/kernels"* ]]
    [[ "$output" == *"tuning db: $TMP/tune.db"* ]]
}

@test "info: the tuning db path falls back to XDG_CACHE_HOME, then HOME" {
    run env -u SPATTN_DB XDG_CACHE_HOME="$TMP/xdg" "$SPATTN" info
    [[ "$output" == *"tuning db: $TMP/xdg/spattn/tune.db"* ]]
    run env -u SPATTN_DB -u XDG_CACHE_HOME HOME="$TMP/home" "$SPATTN" info
    [[ "$output" == *"tuning db: $TMP/home/.cache/spattn/tune.db"* ]]
}

@test "info: without a GPU it says why, and exits 0" {
    have_gpu && skip "a GPU is present"
    run "$SPATTN" info
    [ "$status" -eq 0 ]
    echo "$output" | grep -qE '^GPU: none \(.+\)$'
}

@test "info --require-gpu: exit 3 without a GPU, the reason on stderr" {
    have_gpu && skip "a GPU is present"
    run "$SPATTN" info --require-gpu
    [ "$status" -eq 3 ]
    [[ "$output" == *"spattn: error: no usable GPU: "* ]]
}

@test "info: no driver library at all reads 'no CUDA driver', exit 0" {
    if ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1 '; then skip "a driver is installed"; fi
    run env LD_LIBRARY_PATH="$TMP" "$SPATTN" info
    [ "$status" -eq 0 ]
    [[ "$output" == *"CUDA driver: none"* ]]
    [[ "$output" == *"GPU: none (no CUDA driver (libcuda.so.1 not found): "* ]]
}

@test "info: a driver that cannot initialise names the CUDA error" {
    stub=${CUDA_HOME:-/usr/local/cuda}/lib64/stubs/libcuda.so
    [ -f "$stub" ] || skip "no CUDA stub library"
    mkdir -p "$TMP/drv" && ln -s "$stub" "$TMP/drv/libcuda.so.1"
    run env LD_LIBRARY_PATH="$TMP/drv" "$SPATTN" info
    [ "$status" -eq 0 ]
    [[ "$output" == *"CUDA driver: not usable"* ]]
    [[ "$output" == *"GPU: none (CUDA error CUDA_ERROR_STUB_LIBRARY ("*") while initialising the CUDA driver (cuInit))"* ]]
    run env LD_LIBRARY_PATH="$TMP/drv" "$SPATTN" info --require-gpu
    [ "$status" -eq 3 ]
}

@test "info --json: one object with the same facts" {
    run "$SPATTN" info --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e --arg c "$TMP/kernels" --arg d "$TMP/tune.db" \
        '.cache_dir == $c and .tune_db == $d and (.nvrtc_version | type) == "number" and (.gpus | type) == "array"
         and (.driver.available | type) == "boolean" and (.version | type) == "string"'
    if have_gpu; then
        echo "$output" | jq -e '(.gpus | length) >= 1 and .gpu_error == null and .gpus[0].sm >= 70
            and .gpus[0].sm_count > 0 and .gpus[0].total_mem > 0 and .gpus[0].smem_optin >= 49152
            and (.gpus[0].arch | startswith("sm_")) and .driver.version >= 12000'
    else
        echo "$output" | jq -e '(.gpus | length) == 0 and (.gpu_error | length) > 0'
    fi
}

@test "info: with a GPU, one line per GPU; --gpu N picks one" {
    have_gpu || skip "no GPU"
    run "$SPATTN" info --gpu 0
    [ "$status" -eq 0 ]
    echo "$output" | grep -qE '^GPU 0: .+, sm_[0-9]+ \(NVRTC target sm_[0-9]+a?\), [0-9]+ SMs, '
    [ "$(echo "$output" | grep -c '^GPU ')" -eq 1 ]
    run "$SPATTN" info --gpu 63
    [ "$status" -eq 3 ]
    [[ "$output" == *"--gpu 63: only "*" visible"* ]]
}

@test "info --gpu: out of range or not a number is a usage error" {
    run "$SPATTN" info --gpu 64
    [ "$status" -eq 2 ]
    run "$SPATTN" info --gpu x
    [ "$status" -eq 2 ]
    run "$SPATTN" info extra
    [ "$status" -eq 2 ]
}
