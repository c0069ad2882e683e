#!/usr/bin/env python3
"""The public C API on the GPU (include/spattn.h through bench/spattn_ctypes.py):
forward and backward on PyTorch tensors, both layouts by strides, against
an fp32 PyTorch reference with the band mask, at odd shapes: odd N, GQA,
rows with no key, fp16 and bf16, deterministic mode (bitwise repeatable),
and a CUDA graph capture and replay of forward + backward (the calls
allocate nothing).

    python3 bench/api_check.py        (on the GPU host; exit 1 on any failure)
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spattn_ctypes  # noqa: E402


WINDOW = 100


def intervals(pattern, H, h, N, custom=None):
    """Head h's allowed distances at N (DESIGN.md section 1), as [lo, hi) pairs."""
    base, extra = N // H, N % H
    w = base + (1 if h < extra else 0)
    s = h * base + min(h, extra)
    ivs = {"dense": [(0, N)], "local": [(0, w + 1)], "window": [(0, WINDOW)], "spattn": [(0, w + 1), (max(s, w + 1), s + w)],
           "exclusive": [(s, s + w)], "gapped": [(s, s + w // 2)]}.get(pattern) if pattern != "custom" else custom[h]
    return [(max(0, lo), min(hi, N)) for lo, hi in ivs if min(hi, N) > max(0, lo)]


def reference(q, k, v, do, pattern, custom):
    """fp32 attention with the band mask; q [B, N, H, D]; empty rows -> 0."""
    B, N, H, D = q.shape
    G = H // k.shape[2]
    qf, kf, vf = (t.float().detach().requires_grad_() for t in (q, k, v))
    kk, vv = kf.repeat_interleave(G, dim=2), vf.repeat_interleave(G, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", qf, kk) / math.sqrt(D)
    i = torch.arange(N, device=q.device)
    dist = i[:, None] - i[None, :]
    mask = torch.zeros(H, N, N, dtype=torch.bool, device=q.device)
    for h in range(H):
        for lo, hi in intervals(pattern, H, h, N, custom):
            mask[h] |= (dist >= lo) & (dist < hi)
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)   # a row with no key: all -inf -> NaN -> 0
    o = torch.einsum("bhij,bjhd->bihd", p, vv)
    dq, dk, dv = torch.autograd.grad(o, (qf, kf, vf), do.float())
    return o, dq, dk, dv, mask.any(-1)   # the last: [H, N] rows that have a key


def rel(a, b):
    """Relative L2 error, the reference's norm floored at an RMS of 1e-3 per
    element as in spattn check (runtime/compare.h): at N = 1, dQ and dK are 0
    in exact arithmetic and both sides hold only rounding noise."""
    floor = 1e-3 * math.sqrt(b.numel())
    return ((a.float() - b.float()).norm() / max(b.float().norm().item(), floor)).item()


def main():
    ctx = spattn_ctypes.Library().context(0)
    cases = [   # (B, N, H, KVH, D, dtype, pattern, layout)
        (2, 333, 12, 4, 128, torch.bfloat16, "exclusive", "bnhd"),
        (1, 1000, 8, 2, 64, torch.float16, "gapped", "bhnd"),
        (3, 65, 6, 6, 64, torch.bfloat16, "spattn", "bhnd"),
        (1, 1, 4, 1, 128, torch.float16, "dense", "bnhd"),
        (2, 777, 4, 4, 128, torch.bfloat16, "custom", "bhnd"),
        (1, 2049, 16, 4, 128, torch.bfloat16, "spattn", "bnhd"),
        (2, 517, 8, 8, 64, torch.float16, "window", "bhnd"),
    ]
    custom = [[(0, 9)], [(0, 3), (40, 90)], [(500, 800)], [(1, 2), (7, 300)]]
    failures = 0
    torch.manual_seed(0)
    for B, N, H, KVH, D, dt, pattern, layout in cases:
        bound = 1e-2 if dt == torch.bfloat16 else 2e-3
        plan = ctx.plan_params(B, N, heads=H, head_dim=D, kv_heads=KVH, dtype=dt, pattern=pattern,
                               custom=custom if pattern == "custom" else None, window=WINDOW if pattern == "window" else 0)

        def make(heads):   # random [B, N, heads, D] in the case's layout, as a [B, N, heads, D] view
            t = torch.randn(B, heads, N, D, device="cuda", dtype=dt) if layout == "bhnd" else \
                torch.randn(B, N, heads, D, device="cuda", dtype=dt)
            return t.transpose(1, 2) if layout == "bhnd" else t
        q, k, v, do = make(H), make(KVH), make(KVH), make(H)
        ro, rdq, rdk, rdv, has_key = reference(q, k, v, do, pattern, custom)
        o, lse = plan.forward(q, k, v)
        dq, dk, dv = plan.backward(q, k, v, o, lse, do)
        torch.cuda.synchronize()
        errs = {"O": rel(o, ro), "dQ": rel(dq, rdq), "dK": rel(dk, rdk), "dV": rel(dv, rdv)}
        empty = ~has_key.T[None, :, :].expand(B, N, H)           # [B, N, H] rows with no key
        empty_ok = bool((o[empty] == 0).all() and (dq[empty] == 0).all() and torch.isinf(lse.transpose(1, 2)[empty]).all())
        # deterministic: two runs bitwise equal
        g1 = plan.backward(q, k, v, o, lse, do, deterministic=True)
        g2 = plan.backward(q, k, v, o, lse, do, deterministic=True)
        det_ok = all(torch.equal(a, b) for a, b in zip(g1, g2)) and rel(g1[0], rdq) <= bound
        # a CUDA graph of forward + backward (no allocation inside the calls)
        gq, gk, gv, gdo = (t.clone() for t in (q, k, v, do))
        go, glse = torch.empty_like(o), torch.empty_like(lse)
        grads = (torch.empty_like(dq), torch.empty_like(dk), torch.empty_like(dv))
        plan.backward(gq, gk, gv, o, lse, gdo, grads=grads)   # workspace allocated before capture
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.stream(s), torch.cuda.graph(graph, stream=s):
            plan.forward(gq, gk, gv, go, glse)
            plan.backward(gq, gk, gv, go, glse, gdo, grads=grads)
        torch.cuda.current_stream().wait_stream(s)
        for t, src in ((gq, make(H)), (gk, make(KVH)), (gv, make(KVH)), (gdo, make(H))):
            t.copy_(src)
        graph.replay()
        torch.cuda.synchronize()
        r2 = reference(gq, gk, gv, gdo, pattern, custom)
        graph_ok = rel(go, r2[0]) <= bound and rel(grads[0], r2[1]) <= bound and rel(grads[2], r2[3]) <= bound
        ok = all(e <= bound for e in errs.values()) and empty_ok and det_ok and graph_ok
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} B={B} N={N} H={H} KVH={KVH} D={D} {str(dt)[6:]} {pattern} {layout}: "
              + " ".join(f"{k2} {e:.1e}" for k2, e in errs.items())
              + f" (bound {bound:.0e}); empty rows {'0' if empty_ok else 'WRONG'} ({int(empty.sum())}); "
              f"deterministic {'bitwise' if det_ok else 'FAIL'}; graph replay {'ok' if graph_ok else 'FAIL'}; "
              f"{plan.kernels}", flush=True)
        plan.close()
    print(f"api_check: {len(cases) - failures}/{len(cases)} passed")
    ctx.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
