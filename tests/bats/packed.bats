#!/usr/bin/env bats
# Packed (ragged) sequences, issue 18: spattn run|check|bench --seq-lens.
# On any machine: the flags, their errors and exit codes, --json, and the CPU
# reference, whose packed run must equal the same sequences run one by one,
# bit for bit (O, LSE and the gradients).  On the GPU host: check --seq-lens
# for every kernel family (against the CPU reference and the per-sequence
# runs of the same kernel) and bench --seq-lens.

bats_require_minimum_version 1.5.0

setup() {
    SPATTN=${SPATTN:-$BATS_TEST_DIRNAME/../../build/spattn}
    ROOT="$BATS_TEST_DIRNAME/../.."
    LLAMA="$ROOT/configs/llama-8h-d64.yaml"
    OLMOE="$ROOT/configs/olmoe-1b-7b.yaml"
    GQA="$ROOT/configs/gqa-32q-8kv.yaml"
    TMP=$(mktemp -d)
    export SPATTN_CACHE_DIR="$TMP/kernels" SPATTN_DB="$TMP/tune.db"
}

teardown() { rm -rf "$TMP"; }
have_gpu() { "$SPATTN" info --require-gpu >/dev/null 2>&1; }
need_gpu() { have_gpu || skip "no GPU: runs on the GPU host"; }
needs_numpy() { python3 -c 'import numpy' 2>/dev/null || skip "no python3 with numpy"; }

# ---- the flags, anywhere ------------------------------------------------------

@test "run --seq-lens on the CPU: the packed shape and the lengths in the report" {
    run "$SPATTN" run "$LLAMA" --device cpu --seq-lens 100,1,37
    [ "$status" -eq 0 ]
    [[ "$output" == *"shape: packed 3 sequences, 138 tokens (longest 100) H=8 KVH=8 D=64"* ]]
    [[ "$output" == *"sequence lengths: 100,1,37"* ]]
}

@test "run --seq-lens --json: lengths, total tokens, and the pairs of the sequences run alone" {
    run "$SPATTN" run "$LLAMA" --device cpu --seq-lens 300,7,1,64 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.seq_lens == [300, 7, 1, 64] and .total_tokens == 372 and .batch == 4 and .seq_len == 300'
    packed=$(echo "$output" | jq '.allowed_pairs')
    sum=0
    for n in 300 7 1 64; do
        p=$("$SPATTN" run "$LLAMA" --device cpu --batch 1 --seq-len $n --json | jq '.allowed_pairs')
        sum=$((sum + p))
    done
    [ "$packed" -eq "$sum" ]
    # Each sequence's bands follow its own length: not the pairs of 4 x 300.
    whole=$("$SPATTN" run "$LLAMA" --device cpu --batch 1 --seq-len 372 --json | jq '.allowed_pairs')
    [ "$packed" -ne "$whole" ]
}

@test "run --seq-lens: bad lists exit 2 with a one-line error" {
    for bad in "" "0" "5,0" "-3" "a,b" "1,,2" "4," "1.5" "99999999999"; do
        run "$SPATTN" run "$LLAMA" --device cpu --seq-lens "$bad"
        [ "$status" -eq 2 ] || { echo "'$bad': exit $status: $output"; false; }
        [[ "$output" == *"error: --seq-lens"* ]]
        [ "$(echo "$output" | grep -c 'error:')" -eq 1 ]
    done
    many=$(python3 -c 'print(",".join(["1"] * 4097))')
    run "$SPATTN" run "$LLAMA" --device cpu --seq-lens "$many"
    [ "$status" -eq 2 ]
    [[ "$output" == *"more than 4096 lengths"* ]]
}

@test "run --seq-lens: no --batch or --seq-len beside it, no --layer" {
    run "$SPATTN" run "$LLAMA" --device cpu --seq-lens 10,20 --batch 2
    [ "$status" -eq 2 ]
    [[ "$output" == *"--seq-lens gives the batch and the lengths"* ]]
    run "$SPATTN" run "$LLAMA" --device cpu --seq-lens 10,20 --seq-len 20
    [ "$status" -eq 2 ]
    run "$SPATTN" run "$LLAMA" --device cpu --seq-lens 10,20 --layer
    [ "$status" -eq 2 ]
    [[ "$output" == *"--seq-lens does not apply"* ]]
}

@test "check and bench --seq-lens: bad lists and conflicts exit 2 before any GPU work" {
    run "$SPATTN" check "$LLAMA" --seq-lens 10,0
    [ "$status" -eq 2 ]
    run "$SPATTN" check "$LLAMA" --seq-lens 10,20 --reference gpu
    [ "$status" -eq 2 ]
    [[ "$output" == *"CPU reference"* ]]
    run "$SPATTN" check "$LLAMA" --seq-lens 10,20 --layout bhnd
    [ "$status" -eq 2 ]
    run "$SPATTN" bench "$LLAMA" --seq-lens x
    [ "$status" -eq 2 ]
    run "$SPATTN" bench "$LLAMA" --seq-lens 10,20 --seq-len 1024
    [ "$status" -eq 2 ]
}

@test "check and bench --seq-lens without a GPU: exit 3" {
    have_gpu && skip "a GPU is present"
    run "$SPATTN" check "$LLAMA" --seq-lens 100,5
    [ "$status" -eq 3 ]
    run "$SPATTN" bench "$LLAMA" --seq-lens 100,5
    [ "$status" -eq 3 ]
}

# Packed .npy inputs [total, heads, D] for the lengths "$@" (gqa: 32 heads, 8 kv heads).
make_packed() {
    python3 - "$TMP" "$@" <<'PY'
import sys, numpy as np
tmp, lens = sys.argv[1], [int(x) for x in sys.argv[2:]]
T, rng = sum(lens), np.random.default_rng(5)
for name, heads in (("q", 32), ("k", 8), ("v", 8), ("do", 32)):
    x = rng.standard_normal((T, heads, 128)).astype(np.float32)
    np.save(f"{tmp}/{name}.npy", x)
    r = 0
    for b, n in enumerate(lens):
        np.save(f"{tmp}/{name}{b}.npy", x[r:r + n][None])   # [1, n, heads, D]
        r += n
PY
}

@test "CPU reference: a packed run equals the sequences run one by one, bitwise (O, LSE, dQ, dK, dV)" {
    needs_numpy
    lens="200 1 33 128"
    make_packed $lens
    run "$SPATTN" run "$GQA" --device cpu --seq-lens 200,1,33,128 --pass fwdbwd \
        --q "$TMP/q.npy" --k "$TMP/k.npy" --v "$TMP/v.npy" --do "$TMP/do.npy" \
        -o "$TMP/o.npy" --lse-out "$TMP/lse.npy" --dq "$TMP/dq.npy" --dk "$TMP/dk.npy" --dv "$TMP/dv.npy"
    [ "$status" -eq 0 ]
    b=0
    for n in $lens; do
        run "$SPATTN" run "$GQA" --device cpu --pass fwdbwd --q "$TMP/q$b.npy" --k "$TMP/k$b.npy" --v "$TMP/v$b.npy" \
            --do "$TMP/do$b.npy" -o "$TMP/o$b.npy" --lse-out "$TMP/lse$b.npy" --dq "$TMP/dq$b.npy" \
            --dk "$TMP/dk$b.npy" --dv "$TMP/dv$b.npy"
        [ "$status" -eq 0 ]
        b=$((b + 1))
    done
    run python3 - "$TMP" $lens <<'PY'
import sys, numpy as np
tmp, lens = sys.argv[1], [int(x) for x in sys.argv[2:]]
lse = np.load(f"{tmp}/lse.npy")
assert lse.shape == (32, sum(lens)), lse.shape
r = 0
for b, n in enumerate(lens):
    for t in ("o", "dq", "dk", "dv"):
        packed, alone = np.load(f"{tmp}/{t}.npy")[r:r + n], np.load(f"{tmp}/{t}{b}.npy")[0]
        assert packed.tobytes() == alone.tobytes(), (t, b)
    assert lse[:, r:r + n].tobytes() == np.load(f"{tmp}/lse{b}.npy")[0].tobytes(), ("lse", b)
    r += n
print("bitwise equal")
PY
    [ "$status" -eq 0 ]
    [[ "$output" == *"bitwise equal"* ]]
}

@test "run --seq-lens: --q must be packed [total, heads, head_dim]" {
    needs_numpy
    make_packed 10 20
    run "$SPATTN" run "$GQA" --device cpu --seq-lens 10,21 --q "$TMP/q.npy" --k "$TMP/k.npy" --v "$TMP/v.npy"
    [ "$status" -eq 2 ]
    [[ "$output" == *"packed [total_tokens, heads, head_dim] = [31, 32, 128]"* ]]
    run "$SPATTN" run "$GQA" --device cpu --seq-lens 10 --q "$TMP/q0.npy" --k "$TMP/k0.npy" --v "$TMP/v0.npy"
    [ "$status" -eq 2 ]
}

@test "a fixed band_basis: every sequence gets the same bands" {
    printf 'name: fixed\nheads: 4\nhead_dim: 64\ndtype: bf16\npattern: spattn\nband_basis: 256\n' >"$TMP/fixed.yaml"
    packed=$("$SPATTN" run "$TMP/fixed.yaml" --device cpu --seq-lens 300,100 --json | jq '.allowed_pairs')
    a=$("$SPATTN" run "$TMP/fixed.yaml" --device cpu --batch 1 --seq-len 300 --json | jq '.allowed_pairs')
    b=$("$SPATTN" run "$TMP/fixed.yaml" --device cpu --batch 1 --seq-len 100 --json | jq '.allowed_pairs')
    [ "$packed" -eq $((a + b)) ]
}

@test "the GPU check matrix has packed cases for every family (run --filter packed)" {
    command -v python3 >/dev/null || skip "no python3"
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_90a --filter packed
    [ "$status" -eq 0 ]
    for fam in fwd-mma fwd-wgmma fwd-ws bwd-mma bwd-mma-det bwd-wgmma bwd-wgmma-det; do
        echo "$output" | grep -q "^packed $fam .*lens=" || { echo "no packed $fam case"; false; }
    done
    run env SPATTN="$SPATTN" python3 "$ROOT/bench/check_matrix.py" list --arch sm_80 --filter packed
    [ "$status" -eq 0 ]
    [[ "${lines[${#lines[@]}-1]}" == *"families bwd-mma, bwd-mma-det, fwd-mma;"* ]]
}

# ---- on the GPU host --------------------------------------------------------------

# check --seq-lens "$lens" with extra args; every tensor within its bound, the
# per-sequence comparison present.
check_packed() {
    local spec=$1 lens=$2; shift 2
    run bash -c "'$SPATTN' check '$spec' --seq-lens $lens --json $* 2>'$TMP/err'"
    [ "$status" -eq 0 ] || { echo "check $lens $*: exit $status: $output $(cat "$TMP/err")"; false; }
    echo "$output" | jq -e '.ok and .reference == "cpu-float64" and (.seq_lens | length) > 0' >/dev/null
    echo "$output" | jq -e '[.tensors[].name] | any(endswith("=seq"))' >/dev/null
}

# A tile of one family from the tuner's own list: kind, then "" (mma.sync), wgmma or ws.
family_tile() {
    "$SPATTN" tune "$1" --kind "$2" --list-candidates "$ARCH" | awk '{print $2}' |
        if [ -z "$3" ]; then grep -vE ':(wgmma|ws)$'; else grep -E ":$3\$"; fi | sed -n 2p
}

gpu_arch() { ARCH=$("$SPATTN" info --json 2>/dev/null | jq -r '.gpus[0].arch'); }

@test "gpu: packed forward, every family: CPU reference, and bitwise the per-sequence runs" {
    need_gpu
    gpu_arch
    fams=("")
    [[ "$ARCH" == sm_90* ]] && fams+=(wgmma ws)
    for spec in "$LLAMA" "$GQA"; do
        for fam in "${fams[@]}"; do
            tile=$(family_tile "$spec" fwd "$fam")
            check_packed "$spec" 1000,1,65,2 "--tile $tile"
            echo "$output" | jq -e '.total_tokens == 1068 and .seq_len == 1000'
            # The same tiles see the same values: keys past a sequence's end are masked.
            echo "$output" | jq -e 'all(.tensors[] | select(.name | endswith("=seq")); .rel_l2 == 0 and .max_abs == 0)'
            check_packed "$spec" 513,200,77 "--tile $tile --dtype fp16"
        done
        check_packed "$spec" 4096,100,1000,3 ""   # the default kernel
    done
}

@test "gpu: packed backward, every family, atomic and deterministic" {
    need_gpu
    gpu_arch
    fams=("")
    [[ "$ARCH" == sm_90* ]] && fams+=(wgmma)
    for spec in "$LLAMA" "$GQA"; do
        for fam in "${fams[@]}"; do
            tile=$(family_tile "$spec" bwd "$fam")
            check_packed "$spec" 700,1,65,200 "--pass bwd --tile $tile"
            check_packed "$spec" 700,1,65,200 "--pass bwd --tile $tile --deterministic"
            # deterministic: the packed gradients are the per-sequence runs' bit for bit
            echo "$output" | jq -e 'all(.tensors[] | select(.name | endswith("=seq")); .rel_l2 == 0 and .max_abs == 0)'
            echo "$output" | jq -e '.tensors[] | select(.name == "repeat") | .pass'
        done
    done
}

@test "gpu: bench --seq-lens reports the packed point" {
    need_gpu
    run bash -c "'$SPATTN' bench '$OLMOE' --seq-lens 4096,100,1000 --iters 5 --json 2>/dev/null"
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.seq_lens == [4096, 100, 1000] and .total_tokens == 5196 and .seq_len == 4096'
    echo "$output" | jq -e '.spattn_eff_tflops > 0 and .dense_ms > 0'
}

@test "gpu: run --seq-lens on the GPU: packed .npy in and out, close to the CPU reference" {
    need_gpu
    needs_numpy
    make_packed 300 1 64
    run "$SPATTN" run "$GQA" --device gpu --seq-lens 300,1,64 --q "$TMP/q.npy" --k "$TMP/k.npy" --v "$TMP/v.npy" \
        -o "$TMP/og.npy" --lse-out "$TMP/lg.npy" --iters 3 --json
    [ "$status" -eq 0 ]
    echo "$output" | jq -e '.device == "gpu" and .seq_lens == [300, 1, 64] and .total_tokens == 365 and .eff_tflops > 0'
    run "$SPATTN" run "$GQA" --device cpu --seq-lens 300,1,64 --q "$TMP/q.npy" --k "$TMP/k.npy" --v "$TMP/v.npy" \
        -o "$TMP/oc.npy" --lse-out "$TMP/lc.npy"
    [ "$status" -eq 0 ]
    run python3 -c "
import numpy as np
g, c = np.load('$TMP/og.npy'), np.load('$TMP/oc.npy')
assert g.shape == c.shape == (365, 32, 128)
print(np.linalg.norm(g - c) / np.linalg.norm(c))
assert np.linalg.norm(g - c) <= 1e-2 * np.linalg.norm(c)
assert np.load('$TMP/lg.npy').shape == (32, 365)"
    [ "$status" -eq 0 ]
}
