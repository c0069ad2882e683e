#!/usr/bin/env python3
"""Where the fair harness's forward time goes (session 11): bench/peers.py passes PyTorch's
[B, H, N, D] tensors (bhnd) and flushes L2 before every call (triton's do_bench); spattn bench
passes [B, N, H, D] (bnhd), back to back.  This times spattn's forward and forward+backward
through the same ctypes layer in both layouts, with and without the flush (medians).

    SPATTN_LIB=build/libspattn.so python3 bench/layout_probe.py [--fwd-only] [--only SHAPE LAYOUT]

--only 0 bhnd: that shape (index into SHAPES) and layout alone, forward only, a few launches
(for ncu: bench/probe-s11g.sh); with --seconds S, back to back for S seconds instead (for
nvidia-smi's clocks and power beside it: bench/probe-s11i.sh).
"""
import os
import sys
import time

import torch
import triton.testing

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spattn_ctypes  # noqa: E402

SHAPES = [("configs/olmoe-1b-7b.yaml", 1, 16, 16, 16384, 128), ("configs/gqa-32q-8kv.yaml", 1, 32, 8, 16384, 128),
          ("configs/olmoe-1b-7b.yaml", 4, 16, 16, 4096, 128)]


HOST = {}   # the host's time to enqueue one call, microseconds (the last back_to_back's)


def back_to_back(fn, iters=50):
    fn()
    torch.cuda.synchronize()
    ts = []
    t0 = time.perf_counter()
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        ts.append((a, b))
    HOST["us"] = (time.perf_counter() - t0) / iters * 1e6
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) for a, b in ts)
    return t[len(t) // 2]


def flushed(fn):
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench(fn, warmup=50, rep=300, return_mode="median")


def main():
    ctx = spattn_ctypes.Library().context(0)
    dt = torch.bfloat16
    only = sys.argv[sys.argv.index("--only") + 1:][:2] if "--only" in sys.argv else None
    for i, (cfg, B, H, KVH, N, D) in enumerate(SHAPES):
        if only and i != int(only[0]):
            continue
        plan = ctx.plan_file(cfg, B, N)
        torch.manual_seed(0)
        for layout in ("bnhd", "bhnd"):
            if only and layout != only[1]:
                continue
            if layout == "bnhd":
                q, do = (torch.randn(B, N, H, D, device="cuda", dtype=dt) for _ in range(2))
                k, v = (torch.randn(B, N, KVH, D, device="cuda", dtype=dt) for _ in range(2))
            else:   # [B, H, N, D] tensors as [B, N, H, D] views, as peers.py passes them
                q, do = (torch.randn(B, H, N, D, device="cuda", dtype=dt).transpose(1, 2) for _ in range(2))
                k, v = (torch.randn(B, KVH, N, D, device="cuda", dtype=dt).transpose(1, 2) for _ in range(2))

            def fwd():
                return plan.forward(q, k, v)

            def fwdbwd(det=False):
                o, lse = plan.forward(q, k, v)
                return plan.backward(q, k, v, o, lse, do, deterministic=det)

            if only:   # a few launches for a profiler, or S seconds of them
                secs = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 0
                t0 = time.perf_counter()
                for i in range(1 << 30):
                    fwd()
                    if i % 100 == 99:
                        torch.cuda.synchronize()
                    if (i >= 7 and not secs) or (secs and time.perf_counter() - t0 > secs):
                        break
                torch.cuda.synchronize()
                continue
            row = [f"{B},{H},{KVH},{N},{D} {layout}"]
            passes = (("fwd", fwd), ("fwdbwd", fwdbwd), ("det", lambda: fwdbwd(True)))
            for name, fn in passes[:1] if "--fwd-only" in sys.argv else passes:
                b2b = back_to_back(fn)
                row.append(f"{name} {b2b:.4f} (host {HOST['us']:.0f} us a call) / flushed {flushed(fn):.4f} ms")
            print(" | ".join(row), flush=True)
        plan.close()


if __name__ == "__main__":
    main()
