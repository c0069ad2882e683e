#!/usr/bin/env python3
"""Which tensor's layout makes the forward slower back to back (session 12, RESULTS.md S11.4).

The forward at (1,16,16,16384,128) takes 0.429 ms on PyTorch's [B, H, N, D] tensors and 0.395 on
[B, N, H, D] when launched back to back, and 0.39 in both under ncu.  For each mix of layouts
(Q, K and V, O each bnhd or bhnd) this times, through the same ctypes layer:
  b2b       launches back to back (median of 60);
  alloc     the same with O and LSE allocated by each call, as bench/layout_probe.py does;
  idle      one launch after the GPU has been idle 2 ms (median of 20);
  spin      back to back with a 100 us spin kernel between launches (median of 60);
and the first five launches after idle, one by one.

    SPATTN_LIB=build/libspattn.so python3 bench/layout_series.py [SHAPE]
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spattn_ctypes  # noqa: E402
from layout_probe import SHAPES  # noqa: E402


def timed(fn, n, between=None):
    ts = []
    for _ in range(n):
        if between:
            between()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        ts.append((a, b))
    torch.cuda.synchronize()
    return [a.elapsed_time(b) for a, b in ts]


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def tensor(layout, B, N, H, D):
    """A [B, N, H, D] view of a tensor stored in that layout."""
    if layout == "bnhd":
        return torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16)
    return torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)


def main():
    shape = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    cfg, B, H, KVH, N, D = SHAPES[shape]
    ctx = spattn_ctypes.Library().context(0)
    plan = ctx.plan_file(cfg, B, N)
    spin_cycles = 200_000   # about 100 us at the H200's 1.98 GHz
    print(f"shape {B},{H},{KVH},{N},{D}  {plan.kernels}")
    mixes = [("bnhd", "bnhd", "bnhd"), ("bhnd", "bhnd", "bhnd"), ("bhnd", "bnhd", "bnhd"),
             ("bnhd", "bhnd", "bnhd"), ("bnhd", "bnhd", "bhnd"), ("bhnd", "bhnd", "bnhd")]
    for lq, lkv, lo in mixes:
        torch.manual_seed(0)
        q = tensor(lq, B, N, H, D)
        k, v = tensor(lkv, B, N, KVH, D), tensor(lkv, B, N, KVH, D)
        o = tensor(lo, B, N, H, D)
        lse = torch.empty(B, H, N, device="cuda", dtype=torch.float32)

        def fwd():
            plan.forward(q, k, v, o, lse)

        fwd()
        torch.cuda.synchronize()
        b2b = median(timed(fwd, 60))

        def idle():
            torch.cuda.synchronize()
            time.sleep(0.002)

        iso = median(timed(fwd, 20, idle))
        alloc = median(timed(lambda: plan.forward(q, k, v), 60))   # O and LSE allocated by each call
        spin = median(timed(fwd, 60, lambda: torch.cuda._sleep(spin_cycles)))
        idle()
        first = timed(fwd, 5)
        print(f"Q {lq} KV {lkv} O {lo}: b2b {b2b:.4f}  alloc {alloc:.4f}  idle {iso:.4f}  spin {spin:.4f}  first five "
              + " ".join(f"{t:.4f}" for t in first) + " ms", flush=True)
    plan.close()


if __name__ == "__main__":
    main()
