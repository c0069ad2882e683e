#!/usr/bin/env python3
"""Does the forward's time follow the SM clock? (session 12)

The forward at (1,16,16,16384,128) measured 0.394 ms in some runs and 0.41-0.43 in others with
the same tensors (bench/layout_series.py), and 0.45-0.50 right after 2 ms of idle.  Here each
launch is followed by a spin kernel of a known number of cycles (torch.cuda._sleep), both timed
by events: the spin's time gives the SM clock of that moment.  Launches are grouped by that
clock and the median forward time of each group is printed; with --flush, a 256 MB memset (as
triton's do_bench does) runs before each launch.

    SPATTN_LIB=build/libspattn.so python3 bench/clock_probe.py [SHAPE] [--flush] [--seconds S]
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spattn_ctypes  # noqa: E402
from layout_probe import SHAPES  # noqa: E402

SPIN = 100_000   # cycles: about 50 us at 1.98 GHz


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    shape = int(args[0]) if args else 0
    flush = "--flush" in sys.argv
    secs = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else 3.0
    cfg, B, H, KVH, N, D = SHAPES[shape]
    ctx = spattn_ctypes.Library().context(0)
    plan = ctx.plan_file(cfg, B, N)
    q = torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
    k, v = (torch.randn(B, KVH, N, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2) for _ in range(2))
    o, lse = plan.forward(q, k, v)
    cache = torch.empty(256 << 20, dtype=torch.int8, device="cuda")
    torch.cuda.synchronize()
    rows = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < secs:
        ev = []
        for _ in range(100):
            if flush:
                cache.zero_()
            e = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
            e[0].record()
            plan.forward(q, k, v, o, lse)
            e[1].record()
            torch.cuda._sleep(SPIN)
            e[2].record()
            ev.append(e)
        torch.cuda.synchronize()
        rows += [(e[0].elapsed_time(e[1]), SPIN / (e[1].elapsed_time(e[2]) * 1e3)) for e in ev]
    groups = {}
    for ms, mhz in rows:
        groups.setdefault(int(mhz // 30) * 30, []).append(ms)
    print(f"shape {B},{H},{KVH},{N},{D} flush={flush}: {len(rows)} launches")
    for mhz in sorted(groups):
        g = sorted(groups[mhz])
        print(f"  SM clock {mhz:4d}-{mhz + 29} MHz: {len(g):5d} launches, forward median {g[len(g) // 2]:.4f} ms,"
              f" min {g[0]:.4f}")
    quarter = len(rows) // 4
    for i in range(4):
        part = rows[i * quarter:(i + 1) * quarter]
        print(f"  quarter {i}: forward median {sorted(r[0] for r in part)[quarter // 2]:.4f} ms,"
              f" clock median {sorted(r[1] for r in part)[quarter // 2]:.0f} MHz")
    plan.close()


if __name__ == "__main__":
    main()
