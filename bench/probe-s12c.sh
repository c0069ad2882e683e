#!/usr/bin/env bash
# Session 12: where the backward's time goes between its three kernels (pre: delta, lse2 and the
# zeroed dQ accumulator; main; convert: dQ to 16 bits): ncu's duration and DRAM bytes of each, at
# the benchmark's shapes, default and deterministic; and peers.py's SM clock probe.
source "$(dirname "$0")/probe-lib.sh"
export SPATTN_LIB=$PWD/build/libspattn.so
M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
M=$M,sm__warps_active.avg.pct_of_peak_sustained_active,lts__t_sector_hit_rate.pct
printf 'name: dense-16h\nheads: 16\nkv_heads: 16\nhead_dim: 128\ndtype: bf16\ncausal: true\npattern: dense\nbatch: [1]\nseq_len: [16384]\n' >/tmp/dense-16h.yaml
run_ncu() {   # name spec B N [options]
    local name=$1 spec=$2 B=$3 N=$4; shift 4
    timeout 120 ncu --clock-control none -k "regex:spattn_bwd" --launch-skip 3 --launch-count 3 --metrics "$M" \
        build/spattn bench "$spec" --batch "$B" --seq-len "$N" --pass fwdbwd --iters 2 "$@" >"$OUT/ncu-$name.log" 2>&1
    stamp "ncu $name rc=$?"
    python3 - "$OUT/ncu-$name.log" <<'PY'
import re, sys
k = None
for line in open(sys.argv[1]):
    m = re.match(r"\s+(spattn_bwd_\w+)", line)
    if m:
        k = m.group(1); print(" ", k[:40], end="")
    m = re.match(r"\s+(gpu__time_duration.sum|dram__bytes_read.sum|dram__bytes_write.sum|dram__throughput\S+|sm__warps_active\S+|lts__t_sector_hit_rate.pct)\s+(\S+)\s+([\d.,]+)", line)
    if m and k:
        print(f" {m.group(1).split('.')[0].split('__')[1][:12]}={m.group(3)}{m.group(2)}", end="")
        if m.group(1).startswith("sm__"): print()
PY
}
run_ncu olmoe16k configs/olmoe-1b-7b.yaml 1 16384
run_ncu olmoe16k-det configs/olmoe-1b-7b.yaml 1 16384 --deterministic
run_ncu olmoe4k configs/olmoe-1b-7b.yaml 4 4096
run_ncu gqa16k configs/gqa-32q-8kv.yaml 1 16384
run_ncu d64 configs/llama-8h-d64.yaml 4 4096
run_ncu dense16k /tmp/dense-16h.yaml 1 16384
python3 -c "
import sys; sys.path.insert(0, 'bench')
import torch, peers
for _ in range(3): print('sm clock idle-ish', round(peers.sm_clock_mhz()))
"
stamp done
