#!/usr/bin/env bats
# run --decode and check --decode (issue 18 item 2): one decoding step from
# a KV cache.  On the CPU reference: the report, --json, the tie to the full
# forward (the decode's O and LSE are the last T rows of the forward's,
# bitwise), paged == contiguous, per-sequence lengths, and the usage errors.
# On the GPU host (skipped elsewhere, with the reason): check --decode over
# T = 1 and T > 1, GQA, empty rows, kv_lens, paged caches and forced splits.

bats_require_minimum_version 1.5.0

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    OLMOE="$ROOT/configs/olmoe-1b-7b.yaml"
    GQA="$ROOT/configs/gqa-32q-8kv.yaml"
    LLAMA="$ROOT/configs/llama-8h-d64.yaml"
    TMP=$(mktemp -d)
}

teardown() { rm -rf "$TMP"; }
have_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1; }
need_gpu() { have_gpu || skip "no GPU: runs on the GPU host"; }

# npy_f32 FILE B N H D EXPR: a float32 .npy of shape [B, N, H, D], element i = EXPR(i).
npy_f32() {
    python3 - "$@" <<'PY'
import math, struct, sys
path, B, N, H, D, expr = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
n = B * N * H * D
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }" % (B, N, H, D)
hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    f.write(struct.pack("<%df" % n, *[eval(expr) for i in range(n)]))
PY
}

# last_rows IN OUT B N T: the last T rows (axis 1) of a float32 [B, N, H, D] .npy.
last_rows() {
    python3 - "$@" <<'PY'
import struct, sys, ast
src, dst, B, N, T = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
b = open(src, "rb").read()
hl = struct.unpack("<H", b[8:10])[0]
shape = ast.literal_eval(b[10:10 + hl].decode())["shape"]
H, D = shape[2], shape[3]
body = b[10 + hl:]
row = H * D * 4
out = b"".join(body[((bb * N) + N - T) * row:((bb * N) + N) * row] for bb in range(B))
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }" % (B, T, H, D)
hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
open(dst, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + out)
PY
}

# lse_last LSE.npy B H N T: the last T values of each [b, h] row, one per line.
lse_last() {
    python3 - "$@" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
B, H, N, T = map(int, sys.argv[2:6])
hl = struct.unpack("<H", b[8:10])[0]
v = struct.unpack("<%df" % (B * H * N), b[10 + hl:])
for bb in range(B):
    for h in range(H):
        for x in v[(bb * H + h) * N + N - T:(bb * H + h) * N + N]: print(repr(x))
PY
}

npy_vals() {
    python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
hl = struct.unpack("<H", b[8:10])[0]
body = b[10 + hl:]
for x in struct.unpack("<%df" % (len(body) // 4), body): print(repr(x))
PY
}

@test "run --decode on the CPU: the report lines" {
    run "$SPATTN" run "$GQA" --decode --kv-len 300 --batch 2 --new-tokens 2 --device cpu
    [ "$status" -eq 0 ]
    [[ "$output" == *"decode: B=2 N=300 T=2 H=32 KVH=8 D=128, kv_lens all 300"* ]]
    [[ "$output" == *"cache: contiguous [B, N, KVH, D]"* ]]
    [[ "$output" == *"pattern: spattn, bands at each sequence's length"* ]]
    [[ "$output" == *"device: cpu (float64 reference)"* ]]
    [[ "$output" =~ K/V\ read:\ [0-9.e+-]+\ GB\ of\ a\ dense\ decode\'s\ [0-9.e+-]+\ GB ]]
    [[ "$output" =~ bandwidth:\ [0-9]+\.[0-9]\ GB/s ]]
    [[ "$output" =~ checksum:\ sum ]]
}

@test "run --decode --json: shape, lengths, bytes read below a dense decode's" {
    run "$SPATTN" run "$OLMOE" --decode --kv-len 4096 --batch 2 --kv-lens 4096,1000 --device cpu --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.mode == "decode" and .kv_len == 4096 and .new_tokens == 1 and .kv_lens == [4096, 1000]
        and .page_size == null and .device == "cpu" and .kv_bytes_read > 0 and .kv_bytes_read < .kv_bytes_dense
        and .kv_bytes_dense == (4096 + 1000) * 16 * 128 * 4 and .read_ratio < 0.25 and (.checksum.sum | type) == "number"'
}

@test "decode == the last T rows of the forward over N, bitwise (CPU; GQA and a fixed band basis)" {
    cat >"$TMP/fixed.yaml" <<'Y'
heads: 8
kv_heads: 2
head_dim: 64
pattern: spattn
band_basis: 40
Y
    for spec in "$LLAMA" "$TMP/fixed.yaml" "$GQA"; do
        heads=$(case "$spec" in *gqa*) echo 32;; *) echo 8;; esac)
        kvh=$(case "$spec" in *gqa*) echo 8;; *fixed*) echo 2;; *) echo 8;; esac)
        d=$(case "$spec" in *gqa*) echo 128;; *) echo 64;; esac)
        for T in 1 4; do
            npy_f32 "$TMP/q.npy" 2 53 "$heads" "$d" 'math.sin(i * 0.37)'
            npy_f32 "$TMP/k.npy" 2 53 "$kvh" "$d" 'math.cos(i * 0.11)'
            npy_f32 "$TMP/v.npy" 2 53 "$kvh" "$d" '((i * 7919) % 13) / 6.0 - 1'
            "$SPATTN" run "$spec" --device cpu --q "$TMP/q.npy" --k "$TMP/k.npy" --v "$TMP/v.npy" \
                -o "$TMP/o.npy" --lse-out "$TMP/lse.npy" >/dev/null
            last_rows "$TMP/q.npy" "$TMP/qt.npy" 2 53 "$T"
            last_rows "$TMP/o.npy" "$TMP/ot.npy" 2 53 "$T"
            "$SPATTN" run "$spec" --decode --device cpu --q "$TMP/qt.npy" --k "$TMP/k.npy" --v "$TMP/v.npy" \
                -o "$TMP/od.npy" --lse-out "$TMP/ld.npy" >/dev/null
            cmp <(npy_vals "$TMP/ot.npy") <(npy_vals "$TMP/od.npy") || { echo "$spec T=$T: O differs"; false; }
            cmp <(lse_last "$TMP/lse.npy" 2 "$heads" 53 "$T") <(npy_vals "$TMP/ld.npy") ||
                { echo "$spec T=$T: LSE differs"; false; }
        done
    done
}

@test "decode with --kv-lens: a sequence of length L is the forward over its first L tokens" {
    npy_f32 "$TMP/q.npy" 2 2 8 64 'math.sin(i * 0.37)'
    npy_f32 "$TMP/k.npy" 2 60 8 64 'math.cos(i * 0.11)'
    npy_f32 "$TMP/v.npy" 2 60 8 64 '((i * 7919) % 13) / 6.0 - 1'
    "$SPATTN" run "$LLAMA" --decode --device cpu --q "$TMP/q.npy" --k "$TMP/k.npy" --v "$TMP/v.npy" \
        --kv-lens 60,31 -o "$TMP/od.npy" >/dev/null
    # sequence 1 alone, its first 31 tokens, the two queries as its last rows
    python3 - "$TMP" <<'PY'
import struct, sys
d = sys.argv[1]
def load(p):
    b = open(p, "rb").read(); hl = struct.unpack("<H", b[8:10])[0]
    return b[10 + hl:]
def save(p, shape, body):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % (tuple(shape),)
    hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
    open(p, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + body)
row = 8 * 64 * 4
k, v, q = load(d + "/k.npy"), load(d + "/v.npy"), load(d + "/q.npy")
save(d + "/k1.npy", (1, 31, 8, 64), k[60 * row:(60 + 31) * row])
save(d + "/v1.npy", (1, 31, 8, 64), v[60 * row:(60 + 31) * row])
save(d + "/q1.npy", (1, 31, 8, 64), b"\0" * (29 * row) + q[2 * row:4 * row])
PY
    "$SPATTN" run "$LLAMA" --device cpu --q "$TMP/q1.npy" --k "$TMP/k1.npy" --v "$TMP/v1.npy" -o "$TMP/o1.npy" >/dev/null
    last_rows "$TMP/o1.npy" "$TMP/o1t.npy" 1 31 2
    cmp <(npy_vals "$TMP/o1t.npy") <(npy_vals "$TMP/od.npy" | tail -n $((2 * 8 * 64)))
}

@test "decode: rows before a sequence's first token are O = 0, LSE = -inf" {
    run "$SPATTN" run "$LLAMA" --decode --device cpu --kv-len 40 --batch 2 --new-tokens 3 --kv-lens 40,1 \
        -o "$TMP/o.npy" --lse-out "$TMP/l.npy"
    [ "$status" -eq 0 ]
    # sequence 1 holds one token: its rows t = 0, 1 are positions -2, -1
    [ "$(npy_vals "$TMP/l.npy" | sed -n '25,48p' | sort -u | tr '\n' ' ')" != "" ]
    vals=$(npy_vals "$TMP/l.npy" | awk 'NR > 24 && (NR - 25) % 3 < 2' | sort -u)
    [ "$vals" = "-inf" ]
    zeros=$(npy_vals "$TMP/o.npy" | awk -v s=$((3 * 8 * 64)) 'NR > s && NR <= s + 2 * 8 * 64' | sort -u)
    [ "$zeros" = "0.0" ]
}

@test "decode: a paged cache (shuffled pages) gives the contiguous cache's output" {
    for p in 16 64 256; do
        a=$("$SPATTN" run "$GQA" --decode --device cpu --kv-len 300 --batch 3 --new-tokens 2 --kv-lens 300,77,5 --json | jq -c .checksum)
        b=$("$SPATTN" run "$GQA" --decode --device cpu --kv-len 300 --batch 3 --new-tokens 2 --kv-lens 300,77,5 --page-size $p --json | jq -c .checksum)
        [ "$a" = "$b" ] || { echo "page size $p: $a vs $b"; false; }
    done
}

@test "decode usage errors: exit 2, one line" {
    for args in "--page-size 24" "--page-size 512" "--new-tokens 301" "--kv-lens 1,2" "--kv-lens 300,301,1" \
                "--kv-lens 1,x,3" "--seq-len 10" "--layer" "--pass fwdbwd" "--no-dense" "--deterministic"; do
        run "$SPATTN" run "$GQA" --decode --kv-len 300 --batch 3 --device cpu $args
        [ "$status" -eq 2 ] || { echo "$args: status $status"; false; }
        [[ "${lines[0]}" == "spattn: error: "* ]] || { echo "$args: $output"; false; }
    done
    for args in "--kv-len 10" "--new-tokens 2" "--kv-lens 3" "--page-size 16" "--splits 2"; do
        run "$SPATTN" run "$GQA" --device cpu --seq-len 16 $args
        [ "$status" -eq 2 ] || { echo "$args without --decode: status $status"; false; }
        [[ "$output" == *"go with --decode"* ]]
    done
    npy_f32 "$TMP/q.npy" 1 2 8 64 '1'
    npy_f32 "$TMP/k.npy" 1 9 4 64 '1'
    run "$SPATTN" run "$LLAMA" --decode --device cpu --q "$TMP/q.npy" --k "$TMP/k.npy" --v "$TMP/k.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"[batch, kv_len, kv_heads, head_dim]"* ]]
}

@test "check --decode: usage errors before the GPU (exit 2); no GPU: exit 3" {
    for args in "--page-size 24" "--seq-len 10" "--pass bwd" "--reference gpu" "--layout bhnd" "--new-tokens 400"; do
        run "$SPATTN" check "$GQA" --decode --kv-len 300 $args
        [ "$status" -eq 2 ] || { echo "$args: status $status"; false; }
    done
    run "$SPATTN" check "$GQA" --kv-len 300
    [ "$status" -eq 2 ]
    have_gpu && skip "a GPU is present"
    run "$SPATTN" check "$GQA" --decode --kv-len 300
    [ "$status" -eq 3 ]
}

@test "compile --kind decode: the decode kernel and its combine, no spills at sm_80 and sm_90a" {
    run "$SPATTN" compile "$GQA" --kind decode --arch sm_80,sm_90a --no-spills --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '(.kernels | length) == 4 and all(.kernels[]; .kind == "dec" and .spill_stores == 0)
        and ([.kernels[].name | select(endswith("_combine"))] | length) == 2 and .spills == false'
    run "$SPATTN" gen "$GQA" --kind decode
    [ "$status" -eq 0 ]
    [[ "$output" == *"decode from a KV cache"* ]]
    run "$SPATTN" gen "$GQA" --kind decode --tile 16x48:w2
    [ "$status" -eq 2 ]
}

# ---- on the GPU host ----------------------------------------------------------

@test "gpu: check --decode, T = 1 and T = 4, GQA, kv_lens, paged, splits, fp16, empty rows" {
    need_gpu
    for args in "$OLMOE --kv-len 1000 --batch 2" \
                "$OLMOE --kv-len 4097 --batch 1 --new-tokens 4" \
                "$GQA --kv-len 1000 --batch 3 --new-tokens 4 --kv-lens 1000,17,2 --page-size 64" \
                "$GQA --kv-len 8193 --batch 2 --page-size 16 --splits 7" \
                "$GQA --kv-len 2000 --batch 1 --new-tokens 5 --dtype fp16" \
                "$LLAMA --kv-len 333 --batch 4 --pattern exclusive --new-tokens 3 --kv-lens 333,40,3,1" \
                "$LLAMA --kv-len 65 --batch 2 --pattern gapped --new-tokens 2"; do
        run "$SPATTN" check $args --decode --json
        [ "$status" -eq 0 ] || { echo "$args: $output"; false; }
        echo "$output" | jq -e '.ok and .mode == "decode"' >/dev/null
    done
}

@test "gpu: run --decode reports the bytes read and the bandwidth" {
    need_gpu
    run "$SPATTN" run "$OLMOE" --decode --kv-len 8192 --batch 8 --device gpu --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.device == "gpu" and .gbps > 0 and .kv_bytes_read < .kv_bytes_dense and (.kernel | startswith("spattn_dec_"))'
}

@test "the GPU check matrix has decode cases: T 1 and 4, GQA, kv_lens, paged, splits, tiles (issue 18)" {
    command -v python3 >/dev/null || skip "no python3"
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_80
    [ "$status" -eq 0 ]
    [[ "${lines[${#lines[@]}-1]}" == *"decode"*"coverage gaps: 0" ]]
    dec=$(echo "$output" | grep '^decode ')
    [ "$(echo "$dec" | wc -l)" -ge 70 ]
    for w in ' T=1 ' ' T=4 ' ' g4 ' ' kv_lens' ' page=16' ' page=256' ' splits=' ' N=1 ' ' N=8193 ' 'tile=16x32:w1:s2'; do
        echo "$dec" | grep -q -- "$w" || { echo "no decode case with '$w'"; false; }
    done
}
