#!/usr/bin/env python3
"""Is the raw C call's lower GPU time in bench_overhead real?  At the olmoe
shape, the same spattn_forward five ways (ctypes with the stream as 0 and as
None, Plan.forward, Plan.forward with a host delay, spattn.attention), timed
by bench_overhead.best_of (interleaved, rotated, after a steady-clock
warm-up).  Session 7: without the warm-up, whichever ran first on a cool GPU
measured 10 us faster; with it, all five agree within 1.3 us.

    SPATTN_LIB=build/libspattn.so PYTHONPATH=python python3 bench/ovx.py"""
import ctypes, os, sys, time
sys.path.insert(0, "python/tests"); sys.path.insert(0, "python")
import torch, spattn
from spattn import _lib
import bench_overhead as bo
B, H, KVH, N, D = 4, 16, 16, 4096, 128
q = torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16)
k, v = torch.randn_like(q), torch.randn_like(q)
o = spattn.attention(q, k, v, spec=bo.SPEC)
plan = spattn._core.CACHE.fast[(bo.SPEC.key, q.get_device(), 1, q.shape, k.shape, q.dtype)]
lse = torch.empty(B, H, N, device="cuda", dtype=torch.float32)
st = lambda x: (x.data_ptr(), x.stride(0), x.stride(2), x.stride(1))
T = [_lib.Tensor(*st(x)) for x in (q, k, v, o)]
pt = [ctypes.addressof(t) for t in T]
L = _lib.Lse(lse.data_ptr(), H * N, N); pl = ctypes.addressof(L)
stream = torch.cuda.current_stream().cuda_stream
f, h = plan.L.spattn_forward, plan.handle
tq, tk, tv, to = st(q), st(k), st(v), st(o)
def raw(): f(h, pt[0], pt[1], pt[2], pt[3], pl, None, 0, stream)
def raw_none(): f(h, pt[0], pt[1], pt[2], pt[3], pl, None, 0, None)
def via_plan(): plan.forward(tq, tk, tv, to, (lse.data_ptr(), H * N, N), stream)
def via_plan_slow():
    plan.forward(tq, tk, tv, to, (lse.data_ptr(), H * N, N), stream); time.sleep(0)
def op(): spattn.attention(q, k, v, spec=bo.SPEC)
names = ["raw", "raw stream=None", "plan.forward", "plan.forward+sleep0", "attention"]
res = bo.best_of([raw, raw_none, via_plan, via_plan_slow, op], 300, reps=7)
print("stream", stream, "fwd argtypes", f.argtypes, "plan._fwd", plan._fwd, plan._fwd.argtypes)
for n, (ev, host) in zip(names, res):
    print(f"{n:22s} {ev:8.1f} us by events, host {host:6.1f} us")
