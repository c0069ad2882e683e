#!/usr/bin/env python3
"""Decode from a KV cache: the issue-18 performance case (H200, bf16).

T = 1 new token per sequence, B = 64 sequences of N = 32768 cached tokens,
for the olmoe and gqa-32q-8kv specs (configs/).  For each:
  * spattn.decode (the split-KV decode kernels, through the C API on
    PyTorch's tensors and stream): the CUDA-event median time, the bytes of
    K and V it reads (spattn.decode_info: the rows of the key tiles inside
    the bands, from the bands alone) divided by the time, against the copy
    bandwidth (--copy-gbps, default 4300 GB/s, the H200's measured
    device-to-device copy; --measure-copy times a 4 GiB copy here instead);
  * dense decoding of the same cache by torch SDPA (one query against all N
    keys, GQA through enable_gqa), its time and its bytes (every key and
    value), and the speedup dense / spattn beside 1 / ratio, the speedup the
    bytes alone predict;
  * a correctness check first: spattn.decode on two sequences against SDPA
    with the band mask at N (fp32 math), rel L2 <= 1e-2.
With --tune, each spec's decode kernels are first tuned at the benchmark's
shape (spattn.tune(..., decode=True): tiles x splits, each checked against
the float64 reference, into the tuning database, $SPATTN_DB or the cache's;
--force-tune re-tunes a key the database has).  Every row names the config
spattn.decode used (tile and splits, spattn.decode_info) and where it came
from (tuned or heuristic).

    python3 bench/decode_bench.py [--batch 64] [--kv-len 32768] [--new-tokens 1] [--iters 50] [--json OUT.json]
                                  [--tune [--force-tune]]
"""
import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import spattn  # noqa: E402

SPECS = {"olmoe": (os.path.join(ROOT, "configs", "olmoe-1b-7b.yaml"), 16, 16, 128),
         "gqa-32q-8kv": (os.path.join(ROOT, "configs", "gqa-32q-8kv.yaml"), 32, 8, 128)}


def median_ms(fn, iters, warmup=5, per_sample=10):
    """Median CUDA-event time of one call, over `iters` samples of
    `per_sample` back-to-back calls each (triton's do_bench does the same):
    the GPU runs the calls one after another, so the host's time between
    them (Python, the launch) is not counted as long as it is shorter than
    a call.  One event pair around a single call would count it."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(per_sample):
            fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / per_sample)
    times.sort()
    return times[len(times) // 2]


def copy_gbps():
    x = torch.empty(4 << 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    ms = median_ms(lambda: y.copy_(x), 20)
    del x, y
    return 2 * (4 << 30) / (ms * 1e-3) / 1e9     # read + write


def band_check(spec, q, k, v, H, KVH, N, T):
    """spattn.decode of the first two sequences against SDPA (fp32) with the band mask at N."""
    o = spattn.decode(q[:2], k[:2], v[:2], spec=spec)
    G = H // KVH
    qf = q[:2].transpose(1, 2).float()                                   # [2, H, T, D]
    kf = k[:2].transpose(1, 2).float().repeat_interleave(G, dim=1)       # [2, H, N, D]
    vf = v[:2].transpose(1, 2).float().repeat_interleave(G, dim=1)
    i = torch.arange(N - T, N, device="cuda")[:, None]
    d = i - torch.arange(N, device="cuda")[None, :]                      # [T, N]
    mask = torch.zeros(H, T, N, dtype=torch.bool, device="cuda")
    for h in range(H):                                                   # both specs: pattern spattn, basis N
        for lo, hi in spattn.head_intervals("spattn", H, h, N):
            mask[h] |= (d >= lo) & (d < hi)
    ref = F.scaled_dot_product_attention(qf, kf, vf, attn_mask=mask[None])
    ref = ref.transpose(1, 2)
    return ((o.float() - ref).norm() / ref.norm()).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--kv-len", type=int, default=32768)
    ap.add_argument("--new-tokens", type=int, default=1)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--copy-gbps", type=float, default=4300.0)
    ap.add_argument("--measure-copy", action="store_true")
    ap.add_argument("--specs", default="olmoe,gqa-32q-8kv")
    ap.add_argument("--json", default=None, help="also write the rows as JSON lines to this file")
    ap.add_argument("--tune", action="store_true", help="tune the decode kernels at this shape first")
    ap.add_argument("--force-tune", action="store_true", help="with --tune: re-tune keys the database has")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("decode_bench: no CUDA GPU visible to PyTorch")
        return 3
    B, N, T = a.batch, a.kv_len, a.new_tokens
    copy = copy_gbps() if a.measure_copy else a.copy_gbps
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, B={B} N={N} T={T} bf16; "
          f"copy bandwidth {copy:.0f} GB/s ({'measured' if a.measure_copy else 'given'})")
    names = a.specs.split(",")
    dev = torch.cuda.current_device()
    for name in names if a.tune else []:
        rows = spattn.tune(SPECS[name][0], seq_lens=[N], batches=[B], decode=True, new_tokens=[T],
                           force=a.force_tune, device=dev)
        print(f"# tuned {name}: " + (", ".join(f"{r['tile']} {r['median_ms']:.4f} ms of {r['candidates']} candidates"
                                             for r in rows) or "up to date in the database"), flush=True)
    spattn.clear_plan_cache()   # plans made before the tune keep their configs
    print("| spec | spattn ms | K/V read GB | GB/s | % of copy | SDPA dense ms | dense GB | dense GB/s | speedup | 1/ratio "
          "| rel L2 | config | splits |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows, ok, used = [], True, []
    for name in names:
        path, H, KVH, D = SPECS[name]
        torch.manual_seed(0)
        q = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, N, KVH, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        err = band_check(path, q, k, v, H, KVH, N, T)
        ok &= err <= 1e-2
        info = spattn.decode_info(path, batch=B, kv_len=N, new_tokens=T, device=dev)
        ms = median_ms(lambda: spattn.decode(q, k, v, spec=path), a.iters)
        # dense decoding: SDPA over all N keys ([B, H, T, D] against [B, KVH, N, D]); with T > 1 the last T
        # rows need the causal corner, which SDPA's is_causal (top-left aligned) does not give: T = 1 only
        qs, ks, vs = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        dense = lambda: F.scaled_dot_product_attention(qs, ks, vs, enable_gqa=KVH != H)  # noqa: E731
        dms = median_ms(dense, a.iters)
        dbytes = B * N * KVH * D * 2 * 2
        gbps = info.bytes / (ms * 1e-3) / 1e9
        dgbps = dbytes / (dms * 1e-3) / 1e9
        row = {"spec": name, "batch": B, "kv_len": N, "new_tokens": T, "spattn_ms": ms, "kv_bytes_read": info.bytes,
               "gbps": gbps, "copy_fraction": gbps / copy, "dense_ms": dms, "dense_bytes": dbytes, "dense_gbps": dgbps,
               "speedup": dms / ms, "inverse_ratio": info.dense_bytes / info.bytes, "splits": info.splits,
               "config": info.config, "config_source": info.config_source, "kernel": info.kernel, "rel_l2": err}
        rows.append(row)
        used.append(f"# {name}: kernel {info.kernel}, config {info.config} ({info.config_source}), "
                    f"{info.splits} split{'s' if info.splits != 1 else ''}")
        print(f"| {name} | {ms:.4f} | {info.bytes / 1e9:.3f} | {gbps:.0f} | {100 * gbps / copy:.1f}% | {dms:.4f} | "
              f"{dbytes / 1e9:.2f} | {dgbps:.0f} | {dms / ms:.2f}x | {row['inverse_ratio']:.2f}x | {err:.1e} | "
              f"{info.config} | {info.splits} |", flush=True)
        del q, k, v
        torch.cuda.empty_cache()
    print("\n".join(used))
    target = all(r["copy_fraction"] >= 0.8 for r in rows)
    print(f"# target (bytes read / time >= 80% of copy): {'met' if target else 'NOT met'}; "
          f"correctness: {'ok' if ok else 'FAILED'}")
    if a.json:
        with open(a.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
