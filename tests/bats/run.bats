#!/usr/bin/env bats
# spattn run on the CPU reference: output lines, --json, .npy in and out,
# bad input files, seeds, flags.  Small shapes only: each run is milliseconds.

bats_require_minimum_version 1.5.0

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    SPEC="$ROOT/configs/olmoe-1b-7b.yaml"
    GQA="$ROOT/configs/gqa-32q-8kv.yaml"
    LLAMA="$ROOT/configs/llama-8h-d64.yaml"
    FIX="$ROOT/tests/fixtures/npy"
    TMP=$(mktemp -d)
}

teardown() { rm -rf "$TMP"; }
have_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1; }

checksum() { "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 32 "$@" | grep '^checksum:'; }

@test "cpu run: exit 0 and the report lines" {
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 64
    [ "$status" -eq 0 ]
    [[ "$output" == *"spec: olmoe-1b-7b"* ]]
    [[ "$output" == *"shape: B=1 N=64 H=16 KVH=16 D=128"* ]]
    [[ "$output" == *"pattern: spattn"* ]]
    [[ "$output" == *"dtype: bf16"* ]]
    [[ "$output" == *"device: cpu (float64 reference)"* ]]
    [[ "$output" == *"inputs: random normal(0, 1), seed 1"* ]]
    [[ "$output" =~ work\ ratio:\ 0\.[0-9]{6} ]]
    [[ "$output" =~ time:\ [0-9]+\.[0-9]+\ ms ]]
    [[ "$output" =~ effective:\ [0-9]+\.[0-9]+\ GFLOP/s ]]
    [[ "$output" =~ checksum:\ sum\ -?[0-9]\.[0-9]{6}e[-+][0-9]+,\ sum\|O\|\ [0-9]\.[0-9]{6}e[-+][0-9]+ ]]
}

@test "--device auto says why it chose the CPU" {
    have_gpu && skip "a GPU is present: auto picks it"
    run "$SPATTN" run "$SPEC" --batch 1 --seq-len 16
    [ "$status" -eq 0 ]
    [[ "$output" == *"device: cpu (float64 reference), auto: no GPU found"* ]]
}

@test "--json: one object with every field" {
    run "$SPATTN" run "$SPEC" --device cpu --batch 2 --seq-len 24 --seed 5 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '
        .spec == "olmoe-1b-7b" and .batch == 2 and .seq_len == 24 and .heads == 16 and .kv_heads == 16
        and .head_dim == 128 and .pattern == "spattn" and .dtype == "bf16" and .device == "cpu"
        and .device_detail == "float64 reference" and .device_reason == null and .inputs == "random"
        and .seed == 5 and .layer_index == null and (.work_ratio > 0 and .work_ratio <= 1)
        and (.allowed_pairs > 0) and .flops == 4 * 128 * .allowed_pairs and .iters == 1
        and (.median_ms >= 0) and has("time_ms") == false and (.gflops >= 0) and (.checksum.sum | type) == "number"
        and (.checksum.abs_sum > 0) and .output == null and .lse_output == null'
}

@test "--json with --device auto carries the reason" {
    have_gpu && skip "a GPU is present: auto picks it"
    run "$SPATTN" run "$SPEC" --batch 1 --seq-len 8 --json
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq -r .device_reason)" = "no GPU found" ]
}

@test "same --seed gives the same checksum, a different seed a different one" {
    a=$(checksum --seed 7)
    b=$(checksum --seed 7)
    c=$(checksum --seed 8)
    [ -n "$a" ]
    [ "$a" = "$b" ]
    [ "$a" != "$c" ]
}

@test "the checksum does not depend on the thread count" {
    [ "$(checksum --threads 1)" = "$(checksum --threads 3)" ]
}

@test "-o writes a valid .npy that reads back as q, k and v" {
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 16 -o "$TMP/o.npy" --lse-out "$TMP/lse.npy"
    [ "$status" -eq 0 ]
    [[ "$output" == *"output: $TMP/o.npy"* ]]
    [ -f "$TMP/o.npy" ] && [ -f "$TMP/lse.npy" ]
    # header: magic, version 1.0, float32 [1, 16, 16, 128]; 128 header bytes + data
    [ "$(head -c 6 "$TMP/o.npy" | tail -c 5)" = "NUMPY" ]
    head -c 128 "$TMP/o.npy" | grep -q "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 16, 16, 128), }"
    [ "$(stat -c %s "$TMP/o.npy")" -eq $((128 + 4 * 16 * 16 * 128)) ]
    head -c 128 "$TMP/lse.npy" | grep -q "'shape': (1, 16, 16), }"
    # The binary reads its own output back (B and N come from q's shape).
    run "$SPATTN" run "$SPEC" --device cpu --q "$TMP/o.npy" --k "$TMP/o.npy" --v "$TMP/o.npy"
    [ "$status" -eq 0 ]
    [[ "$output" == *"shape: B=1 N=16 H=16 KVH=16 D=128"* ]]
    [[ "$output" == *"inputs: $TMP/o.npy, $TMP/o.npy, $TMP/o.npy"* ]]
}

@test ".npy inputs: deterministic, and --seed does not change them" {
    # Write O of seed 3, feed it as q, k, v twice: same checksum both times.
    "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 12 --seed 3 -o "$TMP/o.npy" >/dev/null
    a=$("$SPATTN" run "$SPEC" --device cpu --q "$TMP/o.npy" --k "$TMP/o.npy" --v "$TMP/o.npy" | grep checksum)
    b=$("$SPATTN" run "$SPEC" --device cpu --seed 9 --q "$TMP/o.npy" --k "$TMP/o.npy" --v "$TMP/o.npy" | grep checksum)
    [ "$a" = "$b" ]
}

@test "a .npy of the wrong shape: exit 2 naming the file and both shapes" {
    "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/o.npy" >/dev/null
    # the GQA spec has 32 query heads and 8 kv heads: a 16-head q does not fit
    run "$SPATTN" run "$GQA" --device cpu --q "$TMP/o.npy" --k "$TMP/o.npy" --v "$TMP/o.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/o.npy: error: has shape (1, 8, 16, 128), expected (1, 8, 32, 128)"* ]]
    [[ "$output" == *"hint: --q takes [batch, seq_len, heads, head_dim]"* ]]
    # explicit --seq-len that disagrees with the file
    run "$SPATTN" run "$SPEC" --device cpu --seq-len 9 --q "$TMP/o.npy" --k "$TMP/o.npy" --v "$TMP/o.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"expected (1, 9, 16, 128)"* ]]
    # not 4-d at all, with B and N to be taken from it
    run "$SPATTN" run "$SPEC" --device cpu --q "$FIX/good_scalar.npy" --k "$TMP/o.npy" --v "$TMP/o.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"good_scalar.npy: error: expected a 4-d array"* ]]
}

@test "a truncated .npy: exit 2 naming the file" {
    "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/o.npy" >/dev/null
    head -c 1000 "$TMP/o.npy" >"$TMP/cut.npy"
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 --q "$TMP/o.npy" --k "$TMP/cut.npy" --v "$TMP/o.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/cut.npy: error: truncated data"* ]]
    head -c 50 "$TMP/o.npy" >"$TMP/cut.npy"
    run "$SPATTN" run "$SPEC" --device cpu --q "$TMP/cut.npy" --k "$TMP/o.npy" --v "$TMP/o.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/cut.npy: error: truncated .npy file"* ]]
}

@test "bad .npy fixtures: exit 2 with the file named" {
    for f in bad_big_endian bad_fortran bad_header_len bad_magic bad_int_dtype; do
        run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 2 --q "$FIX/$f.npy" --k "$FIX/$f.npy" --v "$FIX/$f.npy"
        [ "$status" -eq 2 ] || { echo "$f: exit $status"; false; }
        [[ "$output" == *"$FIX/$f.npy: error:"* ]] || { echo "$f: $output"; false; }
    done
}

@test "--q without --k and --v: exit 2" {
    run "$SPATTN" run "$SPEC" --device cpu --q "$FIX/good_f32_2x3.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--q, --k and --v go together (1 of 3 given)"* ]]
}

@test "a missing input file: exit 2" {
    run "$SPATTN" run "$SPEC" --device cpu --q "$TMP/nope.npy" --k "$TMP/nope.npy" --v "$TMP/nope.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/nope.npy: error: cannot open"* ]]
}

@test "--device gpu without a GPU: exit 3 naming the reason" {
    if "$SPATTN" info --require-gpu >/dev/null 2>&1; then skip "a GPU is present"; fi
    run "$SPATTN" run "$SPEC" --device gpu --batch 1 --seq-len 8
    [ "$status" -eq 3 ]
    [[ "$output" == *"error:"* ]]
    [[ "$output" == *"CUDA"* || "$output" == *"GPU"* ]]
}

@test "--device auto without a GPU picks the CPU and says why" {
    if "$SPATTN" info --require-gpu >/dev/null 2>&1; then skip "a GPU is present"; fi
    run "$SPATTN" run "$SPEC" --batch 1 --seq-len 8 --json
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq -r .device)" = cpu ]
    [ "$(echo "$output" | jq -r .device_reason)" = "no GPU found" ]
}

@test "GPU: run reports the kernel, time, TFLOP/s and the dense baseline" {
    "$SPATTN" info --require-gpu >/dev/null 2>&1 || skip "no GPU: GPU runs happen on the GPU host"
    run "$SPATTN" run "$SPEC" --device gpu --batch 1 --seq-len 1024 --iters 5 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.device == "gpu" and .median_ms > 0 and .dense_median_ms > 0 and (.kernel | startswith("spattn_fwd"))'
}

@test "--device with a bad value: exit 2" {
    run "$SPATTN" run "$SPEC" --device tpu
    [ "$status" -eq 2 ]
    [[ "$output" == *"'tpu' is not one of auto, cpu, gpu"* ]]
}

@test "unknown flag: exit 2 with a hint" {
    run "$SPATTN" run "$SPEC" --no-such-flag
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown option '--no-such-flag'"* ]]
    [[ "$output" == *"hint: see 'spattn run --help'"* ]]
}

@test "no spec: exit 2; bad values: exit 2" {
    run "$SPATTN" run
    [ "$status" -eq 2 ]
    run "$SPATTN" run "$SPEC" --seq-len 0
    [ "$status" -eq 2 ]
    run "$SPATTN" run "$SPEC" --batch x
    [ "$status" -eq 2 ]
    run "$SPATTN" run "$TMP/missing.yaml"
    [ "$status" -eq 2 ]
}

@test "--layer-index picks a layer's pattern; out of range is exit 2" {
    run "$SPATTN" run "$ROOT/configs/hybrid-layers.yaml" --device cpu --layer-index 0 --seq-len 16
    [ "$status" -eq 0 ]
    [[ "$output" == *"pattern: dense (layer 0)"* ]]
    [[ "$output" == *"work ratio: 1.000000"* ]]
    run "$SPATTN" run "$ROOT/configs/hybrid-layers.yaml" --device cpu --layer-index 99 --seq-len 16
    [ "$status" -eq 2 ]
}

@test "rows with no allowed key: LSE is -inf, no NaN anywhere" {
    # layer 5 is exclusive with band_basis 8192: at N = 64 every head but the
    # first has its band past the end, so most rows have no key.
    run "$SPATTN" run "$ROOT/configs/hybrid-layers.yaml" --device cpu --layer-index 5 --seq-len 64 --json \
        -o "$TMP/o.npy" --lse-out "$TMP/lse.npy"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.checksum.sum != null and .checksum.abs_sum != null'
    # the data start at byte 128 (64-byte aligned header)
    od -An -tf4 -v -j 128 "$TMP/lse.npy" | grep -q -- '-inf'
    [ -z "$(od -An -tf4 -v -j 128 "$TMP/lse.npy" | grep -i nan)" ]
    [ -z "$(od -An -tf4 -v -j 128 "$TMP/o.npy" | grep -i 'nan\|inf')" ]
}

@test "--iters runs several times and reports the median" {
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 --iters 3 --json
    [ "$status" -eq 0 ]
    [ "$(echo "$output" | jq .iters)" = "3" ]
}

# ---- output targets (issue 19): checked before any work, written all or none

@test "-o onto a device node or a FIFO: exit 2 before the run, the node stays" {
    mkfifo "$TMP/fifo"
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/fifo"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/fifo: error: -o: is a FIFO"* ]]
    [[ "$output" != *"checksum"* ]]
    [ -p "$TMP/fifo" ]
    if [ -c /dev/null ] && [ -w /dev/null ]; then
        run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 --lse-out /dev/null
        [ "$status" -eq 2 ]
        [[ "$output" == *"/dev/null: error: --lse-out: is a character device"* ]]
        [ -c /dev/null ]
    fi
}

@test "-o X --lse-out X (and ./X): exit 2, nothing written" {
    cd "$TMP"
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o X --lse-out X
    [ "$status" -eq 2 ]
    [[ "$output" == *"-o and --lse-out name the same file"* ]]
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o X --lse-out ./X
    [ "$status" -eq 2 ]
    [ ! -e X ]
}

@test "a bad --lse-out: exit 2 before the run and O is not written either" {
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/o.npy" --lse-out "$TMP/none/l.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/none/l.npy: error: --lse-out: directory '$TMP/none' does not exist"* ]]
    [ ! -e "$TMP/o.npy" ]
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/o.npy" --lse-out "$TMP"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--lse-out: is a directory"* ]]
    [ ! -e "$TMP/o.npy" ]
}

@test "-o '': exit 2 before the run, naming the flag" {
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o ''
    [ "$status" -eq 2 ]
    [ "$output" = "spattn: error: -o: empty file name" ]
}

@test "-o with a name of 255 characters works (the temp name is short)" {
    name=$(printf 'o%.0s' $(seq 251)).npy
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/$name" --lse-out "$TMP/l$name"
    [ "$status" -eq 1 -o "$status" -eq 2 ]    # 256 characters: too long for any file system
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/$name"
    [ "$status" -eq 0 ]
    [ -f "$TMP/$name" ]
    [ "$(ls -A "$TMP")" = "$name" ]           # no temporary left behind
}

@test "-o through a symbolic link replaces the target's content, the link stays" {
    echo old >"$TMP/real.npy"
    ln -s real.npy "$TMP/link.npy"
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/link.npy"
    [ "$status" -eq 0 ]
    [ -L "$TMP/link.npy" ]
    [ "$(head -c 6 "$TMP/real.npy" | tail -c 5)" = "NUMPY" ]
    ln -s missing.npy "$TMP/dangling.npy"
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/dangling.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"symbolic link to a missing file"* ]]
    [ -L "$TMP/dangling.npy" ] && [ ! -e "$TMP/missing.npy" ]
}

@test "--layer -o is checked before the layer runs" {
    run "$SPATTN" run "$SPEC" --device cpu --layer --batch 1 --seq-len 8 -o "$TMP"
    [ "$status" -eq 2 ]
    [[ "$output" == *"-o: is a directory"* ]]
}

# ---- flags checked on every device (issue 19)

@test "--tile is checked on the CPU too: garbage, 0x0, '' and 100x64 exit 2" {
    for t in garbage 0x0 '' 100x64 128x64:q3; do
        run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 --tile "$t"
        [ "$status" -eq 2 ] || { echo "--tile '$t': exit $status"; false; }
        [[ "$output" == *"error:"* ]]
        [[ "$output" != *"checksum"* ]]
    done
    run "$SPATTN" run "$SPEC" --device cpu --layer --batch 1 --seq-len 8 --tile garbage
    [ "$status" -eq 2 ]
}

@test "GPU-only flags on the CPU path: a warning on stderr, the run goes on" {
    run --separate-stderr "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 --gpu 3 --db /nonexistent/x.db \
        --deterministic --tile 128x64
    [ "$status" -eq 0 ]
    [[ "$output" == *"checksum"* ]]
    [ "$stderr" = "spattn: warning: --gpu, --tile, --db, --deterministic: GPU only, ignored by the CPU reference" ]
    run --separate-stderr "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8
    [ -z "$stderr" ]
    run --separate-stderr "$SPATTN" run "$SPEC" --device cpu --layer --batch 1 --seq-len 8 --gpu 1
    [ "$status" -eq 0 ]
    [[ "$stderr" == *"--gpu: GPU only, ignored by the CPU reference"* ]]
}

# ---- memory budget and huge shapes (issue 19)

@test "a legal shape too large for memory: exit 2 at once, needed vs available" {
    run timeout 20 "$SPATTN" run "$SPEC" --device cpu --seq-len 16777216
    [ "$status" -eq 2 ]
    [[ "$output" =~ the\ CPU\ reference\ run:\ needed\ [0-9.]+\ TiB\ vs\ available\ [0-9.]+\ [KMGT]iB ]]
    # tens of TiB: more than any machine here (the GPU host has 128 GiB, and a
    # d_model of 1048576 at batch 1 fitted there)
    run timeout 20 "$SPATTN" run "$SPEC" --device cpu --layer --d-model 1048576 --batch 64 --seq-len 65536
    [ "$status" -eq 2 ]
    [[ "$output" == *"the CPU layer run: needed "*" vs available "* ]]
}

@test "SPATTN_MEM_LIMIT sets the budget; a malformed one is exit 2" {
    SPATTN_MEM_LIMIT=1M run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 256
    [ "$status" -eq 2 ]
    [ "$output" = "spattn: error: the CPU reference run: needed 21.1 MiB vs available 1.0 MiB (SPATTN_MEM_LIMIT)" ]
    SPATTN_MEM_LIMIT=1G run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 256
    [ "$status" -eq 0 ]
    SPATTN_MEM_LIMIT=lots run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8
    [ "$status" -eq 2 ]
    [[ "$output" == *"SPATTN_MEM_LIMIT: 'lots' is not a size"* ]]
}

@test "--batch 65536 --seq-len 16777216: exit 2, no signed overflow (UBSan)" {
    run timeout 20 "$SPATTN" run "$SPEC" --device cpu --batch 65536 --seq-len 16777216
    [ "$status" -eq 2 ]
    [[ "$output" == *"the shape is too large"* ]]
    # the GPU commands size the problem on the host first (cmd/gpu_common.c)
    run timeout 20 "$SPATTN" check "$SPEC" --batch 65536 --seq-len 16777216
    [ "$status" -eq 2 ]
    [[ "$output" == *"the shape is too large"* ]]
}

@test "an input .npy that is a FIFO: exit 2 at once, not a hang" {
    mkfifo "$TMP/q.npy"
    run timeout 20 "$SPATTN" run "$SPEC" --device cpu --q "$TMP/q.npy" --k "$TMP/q.npy" --v "$TMP/q.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/q.npy: error: is a FIFO, not a regular file"* ]]
    run timeout 20 "$SPATTN" run "$SPEC" --device cpu --layer --batch 1 --seq-len 8 --x "$TMP/q.npy"
    [ "$status" -eq 2 ]
}

# npy_f32 FILE B N H D VALUE-EXPR: a float32 .npy of shape [B,N,H,D], element
# i = VALUE-EXPR (Python, in i), written with the standard library only.
npy_f32() {
    python3 - "$@" <<'PY'
import struct, sys
path, B, N, H, D, expr = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
n = B * N * H * D
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }" % (B, N, H, D)
hdr += " " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + "\n"
with open(path, "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode())
    f.write(struct.pack("<%df" % n, *[eval(expr) for i in range(n)]))
PY
}

# npy_vals FILE: the float32 values of a .npy, one per line.
npy_vals() {
    python3 - "$1" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
hl = struct.unpack("<H", b[8:10])[0]
body = b[10 + hl:]
for x in struct.unpack("<%df" % (len(body) // 4), body): print(repr(x))
PY
}

@test "run --pass fwdbwd on the CPU: --do in, --dq/--dk/--dv out (issue 19)" {
    # N = 1: the one key gets all the weight, so dV = dO exactly and dQ = dK = 0
    npy_f32 "$TMP/do.npy" 1 1 8 64 '(i % 7) - 3 + 0.5'
    run "$SPATTN" run "$LLAMA" --device cpu --batch 1 --seq-len 1 --pass fwdbwd --do "$TMP/do.npy" \
        --dq "$TMP/dq.npy" --dk "$TMP/dk.npy" --dv "$TMP/dv.npy" --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.pass == "fwdbwd" and .device == "cpu"'
    [ "$(npy_vals "$TMP/dv.npy")" = "$(npy_vals "$TMP/do.npy")" ]
    [ "$(npy_vals "$TMP/dq.npy" | sort -u)" = "0.0" ]
    [ "$(npy_vals "$TMP/dk.npy" | sort -u)" = "0.0" ]
    # default dO (random from the seed), and the shapes [B,N,H,D] / [B,N,KVH,D]
    run "$SPATTN" run "$LLAMA" --device cpu --batch 2 --seq-len 9 --pass fwdbwd --dq "$TMP/dq.npy" --dk "$TMP/dk.npy"
    [ "$status" -eq 0 ]
    [ "$(npy_vals "$TMP/dq.npy" | wc -l)" -eq $((2 * 9 * 8 * 64)) ]
    [ "$(npy_vals "$TMP/dq.npy" | sort -u | wc -l)" -gt 100 ]
    head -c 80 "$TMP/dk.npy" | grep -q "'shape': (2, 9, 8, 64)"
    # gradients are the CPU reference's: refused without fwdbwd or on --device gpu
    run "$SPATTN" run "$LLAMA" --device cpu --seq-len 4 --dq "$TMP/x.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--dq goes with --pass fwdbwd"* ]]
    run "$SPATTN" run "$LLAMA" --device gpu --seq-len 4 --pass fwdbwd --dv "$TMP/x.npy"
    [ "$status" -eq 2 ]
    # a dO of the wrong shape names the flag
    run "$SPATTN" run "$LLAMA" --device cpu --batch 1 --seq-len 2 --pass fwdbwd --do "$TMP/do.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--do takes [batch, seq_len, heads, head_dim] = [1, 2, 8, 64]"* ]]
}

# ---- '-' for standard input and output (issue 19) ---------------------------

@test "run -o -: the .npy on stdout, the report on stderr; two '-' outputs refused" {
    run --separate-stderr bash -c "'$SPATTN' run '$SPEC' --device cpu --batch 1 --seq-len 8 -o - >'$TMP/o.npy'"
    [ "$status" -eq 0 ]
    [ "$(head -c 6 "$TMP/o.npy" | tail -c 5)" = "NUMPY" ]
    [[ "$stderr" == *"checksum"* ]]
    "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/o2.npy" >/dev/null
    cmp "$TMP/o.npy" "$TMP/o2.npy"
    run "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o - --lse-out -
    [ "$status" -eq 2 ]
    [[ "$output" == *"-o and --lse-out name the same file"* ]]
}

@test "run --q -: one .npy input from stdin gives the same result as from the file" {
    "$SPATTN" run "$SPEC" --device cpu --batch 1 --seq-len 8 -o "$TMP/q.npy" >/dev/null
    a=$("$SPATTN" run "$SPEC" --device cpu --q "$TMP/q.npy" --k "$TMP/q.npy" --v "$TMP/q.npy" --json | jq -c .checksum)
    b=$("$SPATTN" run "$SPEC" --device cpu --q - --k "$TMP/q.npy" --v "$TMP/q.npy" --json <"$TMP/q.npy" | jq -c .checksum)
    [ -n "$a" ] && [ "$a" = "$b" ]
    c=$(cat "$TMP/q.npy" | "$SPATTN" run "$SPEC" --device cpu --q - --k "$TMP/q.npy" --v "$TMP/q.npy" --json | jq -c .checksum)
    [ "$a" = "$c" ]
    run "$SPATTN" run "$SPEC" --device cpu --q - --k - --v "$TMP/q.npy" <"$TMP/q.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--q and --k both read standard input"* ]]
}

@test "gen -o - and db export -o - write to stdout" {
    run --separate-stderr "$SPATTN" gen "$SPEC" -o -
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "/* spattn_fwd_"* ]]
    [ ! -e ./- ]
    run --separate-stderr "$SPATTN" db export --db "$TMP/t.db" -o -
    [ "$status" -eq 0 ]
    [ ! -e ./- ]
}
