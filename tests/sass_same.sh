#!/bin/sh
# tests/sass_same.sh [BASE_REV]: proof that a change of the kernel sources'
# form (issue 14: kernels as .cuh files, names unique per binary) changed no
# machine code.  For a set of kernels (every tile the tuner lists for sm_90a
# and sm_80, forward and backward, on a d128 and a d64 spec; each shipped
# spec and layer with its default tiles; fp16 and GQA; the dense baseline),
# `spattn gen` of BASE_REV (default: the parent of issue 14's kernels/ move)
# and of this tree are compiled by nvcc to cubins and disassembled
# (cuobjdump -sass when on the PATH, else the bytes of each kernel's .text
# section, read by readelf: the same machine code, without the mnemonics).
# Kernel names are normalized (the 8-hex-digit suffix of item 6 dropped) and
# the two listings must be identical.
#
#     sh tests/sass_same.sh            # BASE_REV = e8ca643
#     SASS_QUICK=1 sh tests/sass_same.sh   # default tiles only, no candidate lists
#
# Needs nvcc; builds BASE_REV from `git archive` in $BUILD/sass/src-REV and
# keeps its listings in $BUILD/sass/REV, so a rerun compiles only this tree.
# Exit 0: all identical; 1: some differ (the diffs are printed); 2: no nvcc.
set -eu

BASE_REV=${1:-e8ca643}
BUILD=${BUILD:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
NVCC=${NVCC:-nvcc}
command -v "$NVCC" >/dev/null 2>&1 || { echo "sass_same: no nvcc" >&2; exit 2; }
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

rev=$(git rev-parse --short=12 "$BASE_REV")
work="$ROOT/$BUILD/sass"
base_src="$work/src-$rev"
mkdir -p "$work"

# ---- the base binary -------------------------------------------------------
if [ ! -x "$base_src/build/spattn" ]; then
    rm -rf "$base_src" && mkdir -p "$base_src"
    git archive "$rev" | tar -x -C "$base_src"
    make -C "$base_src" -j"$JOBS" build/spattn >"$work/build-$rev.log" 2>&1 ||
        { echo "sass_same: building $rev failed (see $work/build-$rev.log)" >&2; exit 1; }
fi
BASE_BIN="$base_src/build/spattn"
# This tree's binary, copied: a rebuild during the run does not change it.
mkdir -p "$work/new-bin"
cp "${SPATTN_NEW:-$ROOT/$BUILD/spattn}" "$work/new-bin/spattn"
NEW_BIN="$work/new-bin/spattn"

# ---- the kernels: one line each, "id<TAB>spec<TAB>gen arguments" --------------
specs="$work/specs"
mkdir -p "$specs"
for f in configs/*.yaml; do cp "$f" "$specs/"; done
sed 's/^dtype: bf16/dtype: fp16/' configs/olmoe-1b-7b.yaml | sed 's/^name: .*/name: olmoe-fp16/' >"$specs/olmoe-fp16.yaml"
sed 's/^head_dim: 64.*/head_dim: 64\ndtype: fp16/' configs/llama-8h-d64.yaml | sed 's/^name: .*/name: llama-fp16/' >"$specs/llama-fp16.yaml"
sed 's/^dtype: bf16/dtype: fp16/' configs/gqa-32q-8kv.yaml | sed 's/^name: .*/name: gqa-fp16/' >"$specs/gqa-fp16.yaml"

list="$work/jobs.txt"
: >"$list"
add() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$list"; }
for s in olmoe-1b-7b llama-8h-d64 custom-4h exclusive-16h gqa-32q-8kv olmoe-fp16 llama-fp16 gqa-fp16; do
    for arch in sm_90a sm_80; do
        for kind in fwd bwd; do add "$s.$arch.$kind.default" "$s" "--arch $arch --kind $kind"; done
    done
done
for layer in 0 3 5 6; do
    for arch in sm_90a sm_80; do
        for kind in fwd bwd; do add "hybrid.L$layer.$arch.$kind" hybrid-layers "--arch $arch --kind $kind --layer-index $layer"; done
    done
done
for arch in sm_90a sm_80; do add "olmoe.dense.$arch" olmoe-1b-7b "--arch $arch --dense"; done
if [ -z "${SASS_QUICK:-}" ]; then
    for s in olmoe-1b-7b llama-8h-d64 olmoe-fp16; do
        for arch in sm_90a sm_80; do
            "$BASE_BIN" tune "$specs/$s.yaml" --list-candidates "$arch" --kind all --json |
                sed -E 's/.*"kind":"([a-z]+)".*"tile":"([^"]+)".*/\1 \2/' |
                while read -r kind tile; do
                    add "$s.$arch.$kind.$(echo "$tile" | tr ':' '_')" "$s" "--arch $arch --kind $kind --tile $tile"
                done
        done
    done
fi

# ---- gen, compile, disassemble, normalize ------------------------------------
# One kernel: $1 binary, $2 output dir, $3 id, $4 spec, $5 gen args.
one() {
    bin=$1 dir=$2 id=$3 spec=$4 args=$5
    [ -s "$dir/$id.sass" ] && return 0
    case "$args" in *sm_80*) gencode=arch=compute_80,code=sm_80 ;; *) gencode=arch=compute_90a,code=sm_90a ;; esac
    # shellcheck disable=SC2086
    "$bin" gen "$specs/$spec.yaml" $args >"$dir/$id.cu" || { echo "gen failed: $id" >"$dir/$id.sass"; return 0; }
    if ! "$NVCC" -gencode="$gencode" -cubin -w -o "$dir/$id.cubin" "$dir/$id.cu" 2>"$dir/$id.nvcc.log"; then
        echo "nvcc failed: $id" >"$dir/$id.sass"; return 0
    fi
    if command -v cuobjdump >/dev/null 2>&1; then
        cuobjdump -sass "$dir/$id.cubin" >"$dir/$id.raw"
    else
        # binutils does not know the CUDA ELF machine: readelf dumps the sections' bytes.
        for sec in $(readelf -W -S "$dir/$id.cubin" 2>/dev/null | grep -oE '\.text\.[A-Za-z0-9_]+'); do
            echo "Function : ${sec#.text.}"
            readelf -W -x "$sec" "$dir/$id.cubin" 2>/dev/null | grep -E '^ +0x'
        done >"$dir/$id.raw"
    fi
    # A listing with no machine code would compare equal to anything: count it as a failure.
    if [ "$(grep -cv '^Function : ' "$dir/$id.raw")" -lt 8 ]; then
        echo "disassembly failed: $id" >"$dir/$id.sass"; rm -f "$dir/$id.raw" "$dir/$id.cubin"; return 0
    fi
    sed -E 's/(spattn_[A-Za-z0-9_]*)_[0-9a-f]{8}\b/\1/g' "$dir/$id.raw" >"$dir/$id.sass"
    rm -f "$dir/$id.raw" "$dir/$id.cubin"
}

run_side() {   # $1 binary, $2 output dir
    mkdir -p "$2"
    n=0
    while IFS="$(printf '\t')" read -r id spec args; do
        one "$1" "$2" "$id" "$spec" "$args" &
        n=$((n + 1))
        if [ "$n" -ge "$JOBS" ]; then wait; n=0; fi
    done <"$list"
    wait
}

tool=readelf
command -v cuobjdump >/dev/null 2>&1 && tool=cuobjdump
base_out="$work/$rev-$tool"
new_out="$work/new-$tool"
rm -rf "$new_out"
echo "sass_same: $(wc -l <"$list") kernels' translation units, base $rev vs this tree ($tool)"
run_side "$BASE_BIN" "$base_out"
[ -n "${SASS_BASE_ONLY:-}" ] && { echo "sass_same: base listings in $base_out"; exit 0; }
run_side "$NEW_BIN" "$new_out"

same=0 differ=0
while IFS="$(printf '\t')" read -r id spec args; do
    if grep -q 'failed' "$new_out/$id.sass" || ! cmp -s "$base_out/$id.sass" "$new_out/$id.sass"; then
        differ=$((differ + 1))
        echo "DIFFERS: $id ($spec $args)"
        diff "$base_out/$id.sass" "$new_out/$id.sass" | head -20 || true
    else
        same=$((same + 1))
    fi
done <"$list"
kernels=$(cat "$new_out"/*.sass | grep -c 'Function :' || true)
echo "sass_same: $same identical, $differ differ ($kernels kernels in this tree's listings)"
[ "$differ" -eq 0 ]
