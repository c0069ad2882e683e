#!/usr/bin/env bats
# spattn run --layer: a whole attention layer (QKV projections, attention,
# output projection).  On the CPU device the float64 layer reference runs
# and is timed; its numbers are checked here against a layer written out in
# plain Python (stdlib only).  GPU cases skip where there is no GPU.

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    LLAMA="$ROOT/configs/llama-8h-d64.yaml"       # H = KVH = 8, D = 64: d_model 512
    GQA="$ROOT/configs/gqa-32q-8kv.yaml"
    TMP=$(mktemp -d)
    # A tiny GQA spec: q rows 2 x 32 = 64 wide, k/v rows 32 wide.
    TINY="$TMP/tiny.yaml"
    printf 'name: tiny\nheads: 2\nkv_heads: 1\nhead_dim: 32\ndtype: fp16\npattern: local\nbatch: 1\nseq_len: 5\n' >"$TINY"
}

teardown() { rm -rf "$TMP"; }

needs_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1 || skip "no GPU: runs on the GPU host"; }
needs_python() { command -v python3 >/dev/null 2>&1 || skip "no python3"; }

# npy_zeros FILE "(a, b)" COUNT: a float32 .npy of zeros, written by hand.
npy_zeros() {
    local dict="{'descr': '<f4', 'fortran_order': False, 'shape': $2, }"
    local len=$(( ${#dict} + 1 ))
    local pad=$(( (64 - (10 + len) % 64) % 64 ))
    local hlen=$(( len + pad ))
    {
        printf '\x93NUMPY\x01\x00'
        printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
        printf '%s' "$dict"
        printf "%${pad}s" ''
        printf '\n'
        head -c $(( $3 * 4 )) /dev/zero
    } >"$1"
}

# tiny_weights DIR [d_model [wk_rows]]: zero weights for $TINY (wk may get a wrong shape).
tiny_weights() {
    local dm=${2:-8} wkr=${3:-${2:-8}}
    mkdir -p "$1"
    npy_zeros "$1/wq.npy" "($dm, 64)" $(( dm * 64 ))
    npy_zeros "$1/wk.npy" "($wkr, 32)" $(( wkr * 32 ))
    npy_zeros "$1/wv.npy" "($dm, 32)" $(( dm * 32 ))
    npy_zeros "$1/wo.npy" "(64, $dm)" $(( 64 * dm ))
}

# The Python side: .npy in and out, and the layer of runtime/layer_ref.h in
# plain loops (fp16 rounding through struct's 'e' format, round to nearest
# even, after float32 like the C side).
write_py() {
    cat >"$TMP/layer.py" <<'EOF'
import math, random, struct, sys

def npy_write(path, shape, vals, code):
    d = "{'descr': '<%s', 'fortran_order': False, 'shape': (%s), }" % (code, "".join("%d, " % s for s in shape))
    pad = (64 - (10 + len(d) + 1) % 64) % 64
    h = (d + " " * pad + "\n").encode()
    fmt = "<%d%s" % (len(vals), "f" if code == "f4" else "e")
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + struct.pack(fmt, *vals))

def npy_read_f32(path):
    b = open(path, "rb").read()
    hl = struct.unpack("<H", b[8:10])[0]
    n = (len(b) - 10 - hl) // 4
    return list(struct.unpack("<%df" % n, b[10 + hl:]))

def f16(x):
    x = struct.unpack("<f", struct.pack("<f", x))[0]
    return struct.unpack("<e", struct.pack("<e", x))[0]

def matmul(a, w, rows, k, n, rnd):
    out = []
    for r in range(rows):
        for c in range(n):
            s = 0.0
            for i in range(k):
                s += a[r * k + i] * w[i * n + c]
            out.append(f16(s) if rnd else s)
    return out

# The tiny spec: H 2, KVH 1, D 32, local pattern at N = 5: head h allows
# distances d <= w_h with w_0 = 3, w_1 = 2 (base 2, extra 1).
def layer(x, wq, wk, wv, wo, N, dm):
    H, KVH, D = 2, 1, 32
    w = [3, 2]
    q = matmul(x, wq, N, dm, H * D, True)
    k = matmul(x, wk, N, dm, KVH * D, True)
    v = matmul(x, wv, N, dm, KVH * D, True)
    o = [0.0] * (N * H * D)
    for i in range(N):
        for h in range(H):
            js = [j for j in range(i + 1) if i - j <= w[h]]
            s = [sum(q[(i * H + h) * D + d] * k[j * D + d] for d in range(D)) / math.sqrt(D) for j in js]
            m = max(s)
            p = [math.exp(t - m) for t in s]
            den = sum(p)
            for d in range(D):
                o[(i * H + h) * D + d] = f16(sum(p[n] / den * v[j * D + d] for n, j in enumerate(js)))
    return matmul(o, wo, N, H * D, dm, False)

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":              # make DIR DM CODE: random x and weights, and the expected y
        out, dm, code = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        r = random.Random(11)
        N = 5
        def rnd(n, std):
            return [struct.unpack("<f", struct.pack("<f", r.gauss(0, std)))[0] for _ in range(n)]
        x, wq, wk, wv, wo = rnd(N * dm, 1), rnd(dm * 64, dm ** -0.5), rnd(dm * 32, dm ** -0.5), \
            rnd(dm * 32, dm ** -0.5), rnd(64 * dm, 64 ** -0.5)
        rt = (lambda a: [f16(t) for t in a])
        npy_write(out + "/x.npy", (1, N, dm), x, code)
        npy_write(out + "/w/wq.npy", (dm, 64), wq, code)
        npy_write(out + "/w/wk.npy", (dm, 32), wk, code)
        npy_write(out + "/w/wv.npy", (dm, 32), wv, code)
        npy_write(out + "/w/wo.npy", (64, dm), wo, code)
        y = layer(rt(x), rt(wq), rt(wk), rt(wv), rt(wo), N, dm)
        npy_write(out + "/want.npy", (1, N, dm), y, "f4")
    elif cmd == "relerr":          # relerr GOT WANT: relative L2 of two float32 .npy files
        a, b = npy_read_f32(sys.argv[2]), npy_read_f32(sys.argv[3])
        assert len(a) == len(b), (len(a), len(b))
        d = math.sqrt(sum((s - t) ** 2 for s, t in zip(a, b)))
        print("%.3e" % (d / math.sqrt(sum(t * t for t in b))))
EOF
}

# ---------------------------------------------------------------------------
# The CPU layer

@test "cpu layer: exit 0 and the report lines" {
    run "$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 16
    [ "$status" -eq 0 ]
    [[ "$output" == *"spec: llama-8h-d64"* ]]
    [[ "$output" == *"layer: B=1 N=16 d_model=512 H=8 KVH=8 D=64"* ]]
    [[ "$output" == *"device: cpu (float64 reference)"* ]]
    [[ "$output" == *"inputs: x random normal(0, 1), weights random normal(0, 1/sqrt(fan_in)), seed 1"* ]]
    [[ "$output" == *"times (ms, median of 1):"* ]]
    [[ "$output" =~ qkv\ projection\ +[0-9]+\.[0-9]{4}\ +[0-9]+\.[0-9]{4} ]]
    [[ "$output" =~ attention\ +[0-9]+\.[0-9]{4}\ +[0-9]+\.[0-9]{4} ]]
    [[ "$output" =~ output\ projection\ +[0-9]+\.[0-9]{4} ]]
    [[ "$output" =~ attention\ share:\ [0-9.]+%\ \(dense\ causal\ [0-9.]+%\) ]]
    [[ "$output" =~ layer\ speedup:\ [0-9.]+x\ \(ideal\ [0-9.]+x\)\;\ attention\ [0-9.]+x ]]
    [[ "$output" =~ checksum:\ sum\ -?[0-9]\.[0-9]{6}e[-+][0-9]+,\ sum\|y\| ]]
    [[ "$output" != *"kernel:"* ]]
    [[ "$output" != *"check:"* ]]
}

@test "cpu layer --json: every field, and the numbers fit together" {
    run "$SPATTN" run "$LLAMA" --layer --device cpu --batch 2 --seq-len 9 --iters 3 --seed 4 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '
        .mode == "layer" and .spec == "llama-8h-d64" and .batch == 2 and .seq_len == 9 and .d_model == 512
        and .heads == 8 and .kv_heads == 8 and .head_dim == 64 and .pattern == "spattn" and .dtype == "bf16"
        and .device == "cpu" and .device_detail == "float64 reference" and .device_reason == null
        and .x == null and .weights == null and .seed == 4 and .iters == 3 and .kernel == null
        and .config_source == null and .check == null and .output == null
        and .flops.qkv == 2 * 18 * 512 * (512 + 2 * 512) and .flops.out_proj == 2 * 18 * 512 * 512
        and .flops.attention == 4 * 64 * .allowed_pairs
        and (.band.qkv_ms > 0) and (.band.attention_ms > 0) and (.band.out_proj_ms > 0)
        and (.band.attention_share - .band.attention_ms / .band.layer_ms | fabs) < 1e-6
        and (.dense.layer_ms > 0) and (.layer_speedup - .dense.layer_ms / .band.layer_ms | fabs) < 1e-6
        and (.attention_speedup - .dense.attention_ms / .band.attention_ms | fabs) < 1e-6
        and (.ideal_attention_speedup - 1 / .work_ratio | fabs) < 1e-6
        and .ideal_layer_speedup >= 1 and .ideal_layer_speedup <= .ideal_attention_speedup
        and (.checksum.abs_sum > 0)'
}

@test "cpu layer, one iteration: the layer time is the sum of its stages" {
    run "$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 8 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '(.band.layer_ms - (.band.qkv_ms + .band.attention_ms + .band.out_proj_ms) | fabs) < 1e-6'
}

@test "--no-dense: no dense column, nulls in JSON" {
    run "$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 8 --no-dense
    [ "$status" -eq 0 ]
    [[ "$output" != *"dense causal"* ]]
    [[ "$output" != *"layer speedup"* ]]
    run "$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 8 --no-dense --json
    echo "$output" | jq -e '.dense == null and .layer_speedup == null and .attention_speedup == null
                            and (.ideal_attention_speedup > 1)'
}

@test "same seed, same y; another seed, another y; N = 1 works" {
    a=$("$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 7 --seed 3 | grep '^checksum:')
    b=$("$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 7 --seed 3 --threads 1 | grep '^checksum:')
    c=$("$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 7 --seed 4 | grep '^checksum:')
    [ "$a" = "$b" ]
    [ "$a" != "$c" ]
    run "$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 1 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.seq_len == 1 and .allowed_pairs == 8 and (.checksum.abs_sum > 0)'
}

@test "-o writes y as float32 [B, N, d_model]; y fed back as --x sets the shape" {
    run "$SPATTN" run "$LLAMA" --layer --device cpu --batch 2 --seq-len 5 -o "$TMP/y.npy"
    [ "$status" -eq 0 ]
    [[ "$output" == *"output: $TMP/y.npy"* ]]
    head -c 128 "$TMP/y.npy" | grep -q "'descr': '<f4'"
    head -c 128 "$TMP/y.npy" | grep -q "'shape': (2, 5, 512)"
    [ "$(stat -c %s "$TMP/y.npy")" -eq $(( 128 + 2 * 5 * 512 * 4 )) ]
    run "$SPATTN" run "$LLAMA" --layer --device cpu --x "$TMP/y.npy" --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e --arg x "$TMP/y.npy" '.batch == 2 and .seq_len == 5 and .d_model == 512 and .x == $x
                                                 and .seed == 1'
}

@test "--d-model sets the model width; GQA weights are kv_heads wide" {
    run "$SPATTN" run "$GQA" --layer --device cpu --batch 1 --seq-len 4 --d-model 48 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.d_model == 48 and .heads == 32 and .kv_heads == 8
                            and .flops.qkv == 2 * 4 * 48 * (4096 + 2 * 1024) and .flops.out_proj == 2 * 4 * 4096 * 48'
}

@test "--weights and --x: y equals a layer computed independently in Python" {
    needs_python
    write_py
    mkdir -p "$TMP/in/w"
    for code in f4 f2; do
        python3 "$TMP/layer.py" make "$TMP/in" 8 "$code"
        run "$SPATTN" run "$TINY" --layer --device cpu --x "$TMP/in/x.npy" --weights "$TMP/in/w" -o "$TMP/y.npy"
        [ "$status" -eq 0 ]
        [[ "$output" == *"layer: B=1 N=5 d_model=8 H=2 KVH=1 D=32"* ]]
        [[ "$output" == *"inputs: x from $TMP/in/x.npy, weights from $TMP/in/w"* ]]
        err=$(python3 "$TMP/layer.py" relerr "$TMP/y.npy" "$TMP/in/want.npy")
        echo "$code: rel L2 $err"
        python3 -c "import sys; sys.exit(0 if float('$err') < 1e-6 else 1)"
    done
}

@test "--weights: d_model comes from wq.npy" {
    tiny_weights "$TMP/w" 12
    run "$SPATTN" run "$TINY" --layer --device cpu --weights "$TMP/w" --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e --arg w "$TMP/w" '.d_model == 12 and .weights == $w and .seed == 1 and .checksum.abs_sum == 0'
}

@test "--weights: a wrong shape is exit 2 naming the file and both shapes" {
    tiny_weights "$TMP/w" 8 9
    run "$SPATTN" run "$TINY" --layer --device cpu --weights "$TMP/w"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/w/wk.npy"* ]]
    [[ "$output" == *"has shape (9, 32), expected (8, 32)"* ]]
    [[ "$output" == *"hint: wk takes [d_model, kv_heads*head_dim] = [8, 32]"* ]]
}

@test "--weights with --d-model that disagrees: exit 2 naming wq.npy" {
    tiny_weights "$TMP/w" 8
    run "$SPATTN" run "$TINY" --layer --device cpu --weights "$TMP/w" --d-model 16
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/w/wq.npy"*"has shape (8, 64), expected (16, 64)"* ]]
}

@test "--weights: a missing file is exit 2 naming it" {
    tiny_weights "$TMP/w" 8
    rm "$TMP/w/wo.npy"
    run "$SPATTN" run "$TINY" --layer --device cpu --weights "$TMP/w"
    [ "$status" -eq 2 ]
    [[ "$output" == *"$TMP/w/wo.npy"* ]]
    [[ "$output" == *"wq.npy, wk.npy, wv.npy and wo.npy"* ]]
}

@test "--x: a 2-d file or a d_model mismatch is exit 2" {
    npy_zeros "$TMP/x2.npy" "(5, 64)" 320
    run "$SPATTN" run "$TINY" --layer --device cpu --x "$TMP/x2.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"x2.npy"*"expected a 3-d array [batch, seq_len, d_model], got 2-d"* ]]
    npy_zeros "$TMP/x3.npy" "(1, 5, 64)" 320
    run "$SPATTN" run "$TINY" --layer --device cpu --x "$TMP/x3.npy" --d-model 32
    [ "$status" -eq 2 ]
    [[ "$output" == *"has shape (1, 5, 64), expected (1, 5, 32)"* ]]
}

@test "flags that need --layer, and flags --layer refuses: exit 2" {
    for f in "--check" "--d-model 8" "--weights $TMP" "--x $TMP/x.npy"; do
        run "$SPATTN" run "$LLAMA" --device cpu --seq-len 8 $f
        [ "$status" -eq 2 ]
        [[ "$output" == *"go with --layer"* ]]
    done
    for f in "--lse-out $TMP/l.npy" "--pass fwdbwd" "--deterministic" "--q $TMP/q.npy"; do
        run "$SPATTN" run "$LLAMA" --layer --device cpu --seq-len 8 $f
        [ "$status" -eq 2 ]
        [[ "$output" == *"does not apply"* ]]
    done
}

@test "--check on the CPU is exit 2: the CPU run is the reference" {
    run "$SPATTN" run "$LLAMA" --layer --device cpu --seq-len 8 --check
    [ "$status" -eq 2 ]
    [[ "$output" == *"--check compares the GPU layer"* ]]
}

@test "--device auto without a GPU runs the CPU layer and says why" {
    if "$SPATTN" info --require-gpu >/dev/null 2>&1; then skip "a GPU is present"; fi
    run "$SPATTN" run "$LLAMA" --layer --batch 1 --seq-len 4
    [ "$status" -eq 0 ]
    [[ "$output" == *"device: cpu (float64 reference), auto: no GPU found"* ]]
}

@test "--layer --device gpu without a GPU: exit 3" {
    if "$SPATTN" info --require-gpu >/dev/null 2>&1; then skip "a GPU is present"; fi
    run "$SPATTN" run "$LLAMA" --layer --device gpu --batch 1 --seq-len 4
    [ "$status" -eq 3 ]
}

# ---------------------------------------------------------------------------
# The GPU layer

@test "gpu layer: bf16 --check passes, stages and the dense layer timed" {
    needs_gpu
    run --separate-stderr "$SPATTN" run "$LLAMA" --layer --device gpu --batch 1 --seq-len 256 --check --iters 10 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.device == "gpu" and (.kernel | type) == "string" and .iters == 10
        and (.band.qkv_ms > 0) and (.band.attention_ms > 0) and (.band.out_proj_ms > 0)
        and (.band.layer_ms >= .band.attention_ms) and (.dense.layer_ms > 0) and (.layer_speedup > 0)
        and .check.pass == true and .check.bound == 0.02 and .check.nan == 0 and (.check.rel_l2 < 0.02)'
}

@test "gpu layer: the text report has the kernel, both columns and PASS" {
    needs_gpu
    run "$SPATTN" run "$LLAMA" --layer --device gpu --batch 2 --seq-len 128 --check --iters 5
    [ "$status" -eq 0 ]
    [[ "$output" == *"kernel: spattn_fwd"* ]]
    [[ "$output" =~ layer\ +[0-9]+\.[0-9]{4}\ +[0-9]+\.[0-9]{4} ]]
    [[ "$output" =~ effective:\ qkv\ [0-9.]+,\ attention\ [0-9.]+,\ output\ [0-9.]+\ TFLOP/s ]]
    [[ "$output" =~ check:\ rel\ L2\ [0-9.]+e-[0-9]+.*PASS ]]
}

@test "gpu layer: fp16, GQA, odd N, rows with no key: --check passes" {
    needs_gpu
    printf 'name: l16\nheads: 8\nkv_heads: 2\nhead_dim: 64\ndtype: fp16\npattern: exclusive\nbatch: 1\nseq_len: 113\n' \
        >"$TMP/l16.yaml"
    run --separate-stderr "$SPATTN" run "$TMP/l16.yaml" --layer --device gpu --check --iters 3 --json --d-model 96
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.d_model == 96 and .check.pass == true and .check.bound == 0.005'
}

@test "gpu layer: y from the GPU matches the CPU layer's y (same seed) and --no-dense" {
    needs_gpu
    needs_python
    write_py
    "$SPATTN" run "$LLAMA" --layer --device cpu --batch 1 --seq-len 64 -o "$TMP/cpu.npy" >/dev/null
    run "$SPATTN" run "$LLAMA" --layer --device gpu --batch 1 --seq-len 64 --no-dense --iters 2 -o "$TMP/gpu.npy" --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.dense == null and .layer_speedup == null'
    err=$(python3 "$TMP/layer.py" relerr "$TMP/gpu.npy" "$TMP/cpu.npy")
    echo "rel L2 $err"
    python3 -c "import sys; sys.exit(0 if float('$err') < 2e-2 else 1)"
}
