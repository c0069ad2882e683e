#!/usr/bin/env bats
# The public C API as a user gets it: `make install`, then the example built
# against the installed header and library with pkg-config, run on the CPU
# (man 3 spattn).  The GPU path of the same calls runs in bench/peers.py on
# the GPU host.

setup() {
    ROOT="$BATS_TEST_DIRNAME/../.."
    BUILD=${BUILD:-build}
    T=$(mktemp -d)
    export SPATTN_CACHE_DIR="$T/kernels" SPATTN_DB="$T/tune.db"
}

teardown() { rm -rf "$T"; }

# Under `make asan` the library is instrumented: the programs built here are too.
san() { [[ "$BUILD" == *asan* ]] && echo "-fsanitize=address,undefined" || true; }

install_it() {
    make -s -C "$ROOT" BUILD="$BUILD" install PREFIX="$T/inst" >"$T/install.log" 2>&1 || { cat "$T/install.log"; false; }
    export PKG_CONFIG_PATH="$T/inst/lib/pkgconfig"
}

@test "make install: binary, header, both libraries, pkg-config file, man pages 1, 3 and 5" {
    install_it
    [ -x "$T/inst/bin/spattn" ]
    [ -f "$T/inst/include/spattn.h" ]
    [ -f "$T/inst/lib/libspattn.so.0" ] && [ -L "$T/inst/lib/libspattn.so" ] && [ -f "$T/inst/lib/libspattn.a" ]
    [ -f "$T/inst/share/man/man3/spattn.3" ] && [ -f "$T/inst/share/man/man1/spattn-run.1" ] && [ -f "$T/inst/share/man/man5/spattn-spec.5" ]
    run pkg-config --cflags --libs spattn
    [ "$status" -eq 0 ]
    [[ "$output" == *"-I$T/inst/include"* && "$output" == *"-lspattn"* ]]
    man -l "$T/inst/share/man/man3/spattn.3" >/dev/null 2>"$T/man.err"
    [ ! -s "$T/man.err" ]
}

@test "libspattn.so exports the API and nothing else" {
    run bash -c "nm -D --defined-only '$ROOT/$BUILD/libspattn.so' | awk '\$2 ~ /[TDBR]/ {print \$3}'"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -ge 16 ]
    for s in "${lines[@]}"; do [[ "$s" == spattn_* ]] || { echo "exported: $s"; false; }; done
    [[ "$output" == *spattn_forward* && "$output" == *spattn_backward* && "$output" == *spattn_plan_from_params* ]]
}

@test "the example builds against the installed library and runs forward and backward on the CPU" {
    install_it
    cc $(san) -std=c11 -Wall -Wextra -Werror "$ROOT/examples/band_attention.c" $(pkg-config --cflags --libs spattn) -lm -o "$T/ba"
    run "$T/ba"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "plan: batch 2, N 300, 12 heads (4 kv), head_dim 64: work ratio "*"(cpu-float64)" ]]
    [[ "$output" == *"rows have no key, 0 of them not zero"* ]]
    run "$T/ba" "$ROOT/configs/gqa-32q-8kv.yaml"
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == *"32 heads (8 kv), head_dim 128"* ]]
}

@test "the example links statically too (pkg-config --static)" {
    install_it
    cc $(san) -std=c11 "$ROOT/examples/band_attention.c" -I"$T/inst/include" "$T/inst/lib/libspattn.a" \
        $(pkg-config --static --libs-only-other --libs-only-l spattn | sed 's/-lspattn//') -lm -o "$T/ba-static"
    run "$T/ba-static"
    [ "$status" -eq 0 ]
    ! ldd "$T/ba-static" | grep -q libspattn
}

@test "a bad spec through the API: status 2 and the file:line:col message, nothing printed by the library" {
    install_it
    cc $(san) -std=c11 "$ROOT/examples/band_attention.c" $(pkg-config --cflags --libs spattn) -lm -o "$T/ba"
    printf 'heads: 8\nhead_dims: 64\n' >"$T/bad.yaml"
    run "$T/ba" "$T/bad.yaml"
    [ "$status" -eq 2 ]
    [ "${#lines[@]}" -eq 1 ]
    [[ "$output" == "band_attention: plan: $T/bad.yaml:2:1: unknown key 'head_dims'"* ]]
}
