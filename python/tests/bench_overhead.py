#!/usr/bin/env python3
"""The op's overhead over the raw C call (issue 17: <= 5 microseconds per
call), on the GPU host.

For each shape, back-to-back calls timed with CUDA events (per call, after a
warm-up) and with the host clock:
  raw        spattn_forward through ctypes with every argument prepared once
             (the C call itself: no Python per call but the ctypes call)
  plan       spattn.Plan.forward (the ctypes layer: strides packed per call)
  attention  spattn.attention without autograd (eager: the op's implementation
             run directly: plan lookup, output allocation, the C call)
  dispatched torch.ops.spattn.attention_fwd, through PyTorch's dispatcher
  op+grad    spattn.attention on inputs that require grad (records autograd)
and forward + backward: raw spattn_forward + spattn_backward against
spattn.attention + torch.autograd.grad.  Overhead = op - raw, per call.
At a shape whose kernel outlasts the Python path the events measure the GPU
and the overhead vanishes; at a small shape the loop is bound by the host
and the events show the Python cost: both are printed.

    python3 python/tests/bench_overhead.py [--iters 200] [--shapes small,olmoe]
Exit 1 if the op's forward overhead at the olmoe shape exceeds 5 us.
"""
import argparse
import ctypes
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.normpath(os.path.join(HERE, "..")))
import spattn  # noqa: E402
from spattn import _lib  # noqa: E402

import torch  # noqa: E402

SHAPES = {"small": (1, 16, 16, 1024, 128), "olmoe": (4, 16, 16, 4096, 128), "long": (1, 16, 16, 16384, 128)}
LIMIT_US = 5.0
SPEC = spattn.Spec.from_file(os.path.join(HERE, "..", "..", "configs", "olmoe-1b-7b.yaml"))


def timed(fn, iters):
    """(us per call by CUDA events, us per call by the host clock) over iters calls."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0 = time.perf_counter()
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return a.elapsed_time(b) * 1e3 / iters, (t1 - t0) * 1e6 / iters


def best_of(fns, iters, reps=7):
    """The best (noise only adds) of reps timings of each of fns, interleaved and rotated (fn 1, fn 2,
    ..., then fn 2, fn 3, ..., fn 1, ...), so that neither a drift of the GPU's
    clock nor a place in the order favours one of them."""
    runs = [[] for _ in fns]
    # Bring the GPU to its steady clock first: a cool GPU boosts higher for a moment, and
    # whichever ran first would look faster (measured: 10 us of 165 at the olmoe shape).
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        timed(fns[0], iters // 4 or 1)
    for rep in range(reps):   # each rep starts one further along: no fn always runs first
        for k in range(len(fns)):
            i = (rep + k) % len(fns)
            runs[i].append(timed(fns[i], iters))
    return [(min(x[0] for x in r), min(x[1] for x in r)) for r in runs]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--shapes", default="small,olmoe")
    a = ap.parse_args()
    print(f"# {torch.cuda.get_device_name()}  torch {torch.__version__}", file=sys.stderr)
    print("| shape B,H,KVH,N,D | pass | raw C us | plan us | attention() us | dispatched op us | op+grad us | "
          "overhead us (attention - raw) | host us/call raw / attention | <= 5 us |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    fail = False
    for name in a.shapes.split(","):
        B, H, KVH, N, D = SHAPES[name]
        torch.manual_seed(0)
        q = torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16)
        k, v = torch.randn(B, KVH, N, D, device="cuda", dtype=torch.bfloat16), torch.randn(B, KVH, N, D, device="cuda", dtype=torch.bfloat16)
        do = torch.randn_like(q)
        o = spattn.attention(q, k, v, spec=SPEC)       # makes and caches the plan
        plan = spattn._core.CACHE.fast[(SPEC.key, q.get_device(), 1, q.shape, k.shape, q.dtype)]
        lse = torch.empty(B, H, N, device="cuda", dtype=torch.float32)
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        ws_n = plan.workspace_size(True, False)
        ws = torch.empty(max(ws_n, 16), device="cuda", dtype=torch.uint8)

        def st(x):   # a [B, H, N, D] tensor as (ptr, sb, sn, sh)
            return (x.data_ptr(), x.stride(0), x.stride(2), x.stride(1))
        T = [_lib.Tensor(*st(x)) for x in (q, k, v, o, do, dq, dk, dv)]
        L = _lib.Lse(lse.data_ptr(), H * N, N)
        stream = torch.cuda.current_stream().cuda_stream
        f, bw, h = plan.L.spattn_forward, plan.L.spattn_backward, plan.handle
        pt = [ctypes.addressof(t) for t in T]
        pl = ctypes.addressof(L)

        def raw():
            f(h, pt[0], pt[1], pt[2], pt[3], pl, None, 0, stream)

        def raw_fb():
            f(h, pt[0], pt[1], pt[2], pt[3], pl, None, 0, stream)
            bw(h, pt[0], pt[1], pt[2], pt[3], pl, pt[4], pt[5], pt[6], pt[7], 0, ws.data_ptr(), ws_n, stream)

        tq, tk, tv, to = st(q), st(k), st(v), st(o)

        def via_plan():
            plan.forward(tq, tk, tv, to, (lse.data_ptr(), H * N, N), stream)

        def op():
            spattn.attention(q, k, v, spec=SPEC)

        def op_dispatch():
            torch.ops.spattn.attention_fwd(q, k, v, SPEC.key, 1, False)

        qg, kg, vg = (x.detach().requires_grad_() for x in (q, k, v))

        def op_grad():
            spattn.attention(qg, kg, vg, spec=SPEC)

        def op_fb():
            out = spattn.attention(qg, kg, vg, spec=SPEC)
            torch.autograd.grad(out, (qg, kg, vg), do)

        class Nop(torch.autograd.Function):   # the floor: autograd.grad over a Function that launches nothing
            @staticmethod
            def forward(ctx, q_, k_, v_):
                return torch.empty_like(q_)

            @staticmethod
            def backward(ctx, g):
                return torch.empty_like(qg), torch.empty_like(kg), torch.empty_like(vg)

        def nop_fb():
            torch.autograd.grad(Nop.apply(qg, kg, vg), (qg, kg, vg), do)

        from spattn import _torch as _t   # the op's two implementations, called without autograd

        def impl_fb():
            o_, lse_ = _t._fwd_impl(q, k, v, SPEC.key, 1, False)
            _t._bwd_impl(do, q, k, v, o_, lse_, SPEC.key, 1, False)

        def sdpa_fb():   # a yardstick: PyTorch's own attention op through the same autograd.grad
            out = torch.nn.functional.scaled_dot_product_attention(qg, kg, vg, is_causal=True)
            torch.autograd.grad(out, (qg, kg, vg), do)

        it = a.iters
        (r, r_host), (p, _), (o_ev, o_host), (od, _), (og, _) = best_of([raw, via_plan, op, op_dispatch, op_grad], it)
        over = o_ev - r
        ok = over <= LIMIT_US
        if name == "olmoe" and not ok:
            fail = True
        shape = f"{B},{H},{KVH},{N},{D}"
        print(f"| {shape} | fwd | {r:.1f} | {p:.1f} | {o_ev:.1f} | {od:.1f} | {og:.1f} | {over:+.1f} | {r_host:.1f} / {o_host:.1f} "
              f"| {'yes' if ok else 'NO'} |", flush=True)
        (rf, rf_host), (of, of_host) = best_of([raw_fb, op_fb], it // 2)
        (_, sd_host), (_, nop_host), (im, im_host) = best_of([sdpa_fb, nop_fb, impl_fb], it // 2)
        print(f"| {shape} | fwd+bwd | {rf:.1f} | - | - | - | {of:.1f} | {of - rf:+.1f} | {rf_host:.1f} / {of_host:.1f} "
              f"| {'yes' if of - rf <= 2 * LIMIT_US else 'NO'} (2 calls; host per step: SDPA + autograd.grad "
              f"{sd_host:.0f} us, a no-op autograd.Function + autograd.grad {nop_host:.0f} us, spattn's two "
              f"implementations without autograd {im_host:.0f} us ({im:.1f} us by events)) |",
              flush=True)
    print(f"\n# overhead = op - raw, per call, CUDA events over back-to-back calls; limit {LIMIT_US} us per call "
          "(fwd+bwd: two calls). At the small shape the host is the bottleneck, so the events show the Python cost; "
          "fwd+bwd goes through torch.autograd.grad, whose own host cost the SDPA yardstick shows.")
    print(f"bench_overhead: {'FAIL' if fail else 'ok'} (olmoe forward overhead {'>' if fail else '<='} {LIMIT_US} us)")
    return 1 if fail else 0


if __name__ == "__main__":
    sys.exit(main())
