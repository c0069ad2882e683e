#!/usr/bin/env bats
# spattn cache: the compiled-kernel cache (spattn-cache(1)).  The entries
# here are crafted by hand (header as in runtime/kcache.h); real compiles and
# damaged-entry rebuilds are covered by tests/unit/test_kcache.c.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    TMP=$(mktemp -d)
    export SPATTN_CACHE_DIR="$TMP/kernels"
}

teardown() { rm -rf "$TMP"; }

KEY1=0123456789abcdef0123456789abcdef
KEY2=fedcba9876543210fedcba9876543210

# entry DIR KEY ARCH LABEL CUBIN_BYTES: a well-formed entry (list does not
# check the payload hash; use does).
entry() {
    mkdir -p "$1"
    python3 - "$1/$2.cubin" "$2" "$3" "$4" "$5" <<'EOF'
import struct, sys
path, key, arch, label, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                      9650029242287828579, 2870177450012600261)
def rotl(x, r): return ((x << r) | (x >> (64 - r))) & M
def rnd(acc, v): return (rotl((acc + v * P2) & M, 31) * P1) & M
def u64(b, i): return int.from_bytes(b[i:i + 8], "little")
def xxh64(b):  # XXH64, seed 0: the entry's checksum (runtime/kcache.h)
    n, i = len(b), 0
    if n >= 32:
        v = [(P1 + P2) & M, P2, 0, (-P1) & M]
        while i + 32 <= n:
            v = [rnd(v[k], u64(b, i + 8 * k)) for k in range(4)]
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for k in range(4): h = ((h ^ rnd(0, v[k])) * P1 + P4) & M
    else:
        h = P5
    h = (h + n) & M
    while i + 8 <= n: h = (rotl(h ^ rnd(0, u64(b, i)), 27) * P1 + P4) & M; i += 8
    if i + 4 <= n: h = (rotl(h ^ (int.from_bytes(b[i:i + 4], "little") * P1 & M), 23) * P2 + P3) & M; i += 4
    while i < n: h = (rotl(h ^ (b[i] * P5 & M), 11) * P1) & M; i += 1
    h ^= h >> 33; h = h * P2 & M; h ^= h >> 29; h = h * P3 & M; h ^= h >> 32
    return h
log = b"ptxas info    : Used 8 registers\n"
tail = struct.pack("<QQII", n, len(log), 13000, 13000)
tail += key.encode() + arch.encode().ljust(16, b"\0") + label.encode().ljust(160, b"\0")
body = tail + b"\x7fELF" + b"\0" * (n - 4) + log
h = b"SPATTNK1" + struct.pack("<IIQ", 1, 256, xxh64(body))
assert len(h) + len(tail) == 256
open(path, "wb").write(h + body)
EOF
}

@test "cache path: honours SPATTN_CACHE_DIR" {
    run "$SPATTN" cache path
    [ "$status" -eq 0 ]
    [ "$output" = "$TMP/kernels" ]
}

@test "cache path: a trailing slash is dropped" {
    SPATTN_CACHE_DIR="$TMP/k/" run "$SPATTN" cache path
    [ "$output" = "$TMP/k" ]
}

@test "cache path: XDG_CACHE_HOME, then HOME" {
    run env -u SPATTN_CACHE_DIR XDG_CACHE_HOME="$TMP/xdg" HOME="$TMP/home" "$SPATTN" cache path
    [ "$output" = "$TMP/xdg/spattn/kernels" ]
    run env -u SPATTN_CACHE_DIR -u XDG_CACHE_HOME HOME="$TMP/home" "$SPATTN" cache path
    [ "$output" = "$TMP/home/.cache/spattn/kernels" ]
}

@test "cache path: no directory can be formed: exit 2 with a hint" {
    run env -u SPATTN_CACHE_DIR -u XDG_CACHE_HOME -u HOME "$SPATTN" cache path
    [ "$status" -eq 2 ]
    [[ "$output" == *"no kernel cache directory"* ]]
    [[ "$output" == *"hint: set SPATTN_CACHE_DIR"* ]]
}

@test "cache path --json" {
    run "$SPATTN" cache path --json
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq -r .path)" = "$TMP/kernels" ]
}

@test "cache list: a missing directory is an empty cache" {
    run "$SPATTN" cache list
    [ "$status" -eq 0 ]
    [ "$output" = "no cached kernels in $TMP/kernels" ]
    [ ! -e "$TMP/kernels" ]
}

@test "cache list: entries newest first, with arch, size, age and kernel name" {
    entry "$SPATTN_CACHE_DIR" $KEY1 sm_90a spattn_fwd_bf16_d128_bm128_bn64_w8_s2 4000
    entry "$SPATTN_CACHE_DIR" $KEY2 sm_80 spattn_bwd_fp16_d64_bm64_bn64_w4_s2 2000
    touch -d '3 hours ago' "$SPATTN_CACHE_DIR/$KEY1.cubin"
    echo "not a cache entry" >"$SPATTN_CACHE_DIR/README"
    run "$SPATTN" cache list
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "$(printf '%-32s  %-7s  %10s  %5s  %s' KEY ARCH SIZE AGE KERNEL)" ]
    [[ "${lines[1]}" == "$KEY2  sm_80 "*"spattn_bwd_fp16_d64_bm64_bn64_w4_s2" ]]
    [[ "${lines[2]}" == "$KEY1  sm_90a "*" 3h  spattn_fwd_bf16_d128_bm128_bn64_w8_s2" ]]
    [[ "${lines[2]}" == *"4.2 KiB"* ]]   # 256 + 4000 + 33 bytes
    [[ "${lines[3]}" == "2 entries, "*" in $SPATTN_CACHE_DIR" ]]
    [ "${#lines[@]}" -eq 4 ]
}

@test "cache list: a damaged entry is listed as such" {
    mkdir -p "$SPATTN_CACHE_DIR"
    head -c 1000 /dev/urandom >"$SPATTN_CACHE_DIR/$KEY1.cubin"
    run "$SPATTN" cache list
    [ "$status" -eq 0 ]
    [[ "${lines[1]}" == "$KEY1  ?"*"(damaged: rebuilt on next use)" ]]
    [[ "${lines[2]}" == "1 entry, 1000 B in "* ]]
}

@test "cache list --json: one object with every entry" {
    entry "$SPATTN_CACHE_DIR" $KEY1 sm_90a kern_a 4000
    printf 'SPATTNK1' >"$SPATTN_CACHE_DIR/$KEY2.cubin"
    run "$SPATTN" cache list --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e --arg d "$SPATTN_CACHE_DIR" '.path == $d and .count == 2 and (.entries | length) == 2'
    echo "$output" | jq -e --arg k $KEY1 '.entries[] | select(.key == $k) |
        .valid and .label == "kern_a" and .arch == "sm_90a" and .bytes == 4289 and .nvrtc_version == 13000
        and .driver_version == 13000 and .age_s >= 0 and .mtime > 0'
    echo "$output" | jq -e --arg k $KEY2 '.entries[] | select(.key == $k) | .valid == false and .bytes == 8'
    echo "$output" | jq -e '.bytes == 4297'
}

@test "cache clear: removes entries and leftover temp files, nothing else" {
    entry "$SPATTN_CACHE_DIR" $KEY1 sm_90a a 100
    entry "$SPATTN_CACHE_DIR" $KEY2 sm_80 b 100
    echo half >"$SPATTN_CACHE_DIR/$KEY1.cubin.tmp.Ab12Cd"
    echo half >"$SPATTN_CACHE_DIR/.spattn-Xy12Zw"
    echo mine >"$SPATTN_CACHE_DIR/notes.txt"
    echo upper >"$SPATTN_CACHE_DIR/0123456789ABCDEF0123456789ABCDEF.cubin"
    run "$SPATTN" cache clear
    [ "$status" -eq 0 ]
    [ "$output" = "removed 2 cached kernels from $SPATTN_CACHE_DIR" ]
    [ ! -e "$SPATTN_CACHE_DIR/$KEY1.cubin" ] && [ ! -e "$SPATTN_CACHE_DIR/$KEY2.cubin" ]
    [ ! -e "$SPATTN_CACHE_DIR/$KEY1.cubin.tmp.Ab12Cd" ] && [ ! -e "$SPATTN_CACHE_DIR/.spattn-Xy12Zw" ]
    [ -f "$SPATTN_CACHE_DIR/notes.txt" ]
    [ -f "$SPATTN_CACHE_DIR/0123456789ABCDEF0123456789ABCDEF.cubin" ]
    run "$SPATTN" cache list
    [ "$output" = "no cached kernels in $SPATTN_CACHE_DIR" ]
}

@test "cache clear: one entry, and a missing directory" {
    entry "$SPATTN_CACHE_DIR" $KEY1 sm_90a a 100
    run "$SPATTN" cache clear
    [ "$output" = "removed 1 cached kernel from $SPATTN_CACHE_DIR" ]
    rm -rf "$SPATTN_CACHE_DIR"
    run "$SPATTN" cache clear
    [ "$status" -eq 0 ]
    [ "$output" = "removed 0 cached kernels from $SPATTN_CACHE_DIR" ]
}

@test "cache clear --json" {
    entry "$SPATTN_CACHE_DIR" $KEY1 sm_90a a 100
    run "$SPATTN" cache clear --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e --arg d "$SPATTN_CACHE_DIR" '.removed == 1 and .path == $d'
}

@test "cache: unknown or missing action is a usage error" {
    run "$SPATTN" cache purge
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown action 'purge' (path, list or clear)"* ]]
    run "$SPATTN" cache
    [ "$status" -eq 2 ]
    [[ "$output" == *"missing argument"* ]]
    run "$SPATTN" cache list extra
    [ "$status" -eq 2 ]
}

@test "cache list: an unreadable path is an error, exit 1" {
    echo file >"$TMP/plain"
    SPATTN_CACHE_DIR="$TMP/plain" run "$SPATTN" cache list
    [ "$status" -eq 1 ]
    [[ "$output" == *"cannot read the kernel cache directory"* ]]
}

@test "cache list: control bytes in a label are escaped; a flipped byte lists as damaged" {
    entry "$SPATTN_CACHE_DIR" $KEY1 sm_90a $'kern\e[31mred' 100
    run "$SPATTN" cache list
    [ "$status" -eq 0 ]
    [[ "$output" == *'kern\x1b[31mred'* ]]
    [[ "$output" != *$'\e'* ]]
}
