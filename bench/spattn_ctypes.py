"""The public C API (include/spattn.h, man 3 spattn) from Python through
ctypes, on PyTorch tensors and the current stream.  Used by bench/peers.py
and bench/api_check.py, beside the package python/spattn (whose structs it
uses), so that those benchmarks keep measuring the C API as they did.

    lib = Library()                       # build/libspattn.so, or $SPATTN_LIB
    ctx = lib.context(0)                  # GPU 0 (SPATTN_DEVICE_CPU = -1)
    plan = ctx.plan_file("configs/olmoe-1b-7b.yaml", batch=4, seq_len=4096)
    o, lse = plan.forward(q, k, v)        # [B, H, N, D] or [B, N, H, D]: any strides, head_dim contiguous
    dq, dk, dv = plan.backward(q, k, v, o, lse, do)
"""
import ctypes
import os
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEVICE_CPU = -1


# The structs of include/spattn.h, from the Python package (python/spattn/_lib.py).
sys.path.insert(0, os.path.join(ROOT, "python"))
from spattn._lib import Lse, Params, Tensor, _PlanInfo as PlanInfo  # noqa: E402,F401


class SpattnError(RuntimeError):
    pass


class Library:
    def __init__(self, path=None):
        lib = ctypes.CDLL(path or os.environ.get("SPATTN_LIB", os.path.join(ROOT, "build", "libspattn.so")))
        P, VP, I, I64, SZ = ctypes.POINTER, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_size_t
        sig = {
            "spattn_context_create": (I, [I, P(VP)]),
            "spattn_context_destroy": (None, [VP]),
            "spattn_context_error": (ctypes.c_char_p, [VP]),
            "spattn_plan_from_file": (I, [VP, ctypes.c_char_p, I, I, I64, P(VP)]),
            "spattn_plan_from_params": (I, [VP, P(Params), I, I64, P(VP)]),
            "spattn_plan_destroy": (None, [VP]),
            "spattn_plan_error": (ctypes.c_char_p, [VP]),
            "spattn_plan_get_info": (I, [VP, P(PlanInfo)]),
            "spattn_workspace_size": (SZ, [VP, I, I]),
            "spattn_forward": (I, [VP] + [P(Tensor)] * 4 + [P(Lse), VP, SZ, VP]),
            "spattn_backward": (I, [VP] + [P(Tensor)] * 4 + [P(Lse)] + [P(Tensor)] * 4 + [I, VP, SZ, VP]),
        }
        for name, (res, args) in sig.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        self.lib = lib

    def context(self, device=0):
        return Context(self, device)


class Context:
    def __init__(self, library, device):
        self.L = library.lib
        self.h = ctypes.c_void_p()
        st = self.L.spattn_context_create(device, ctypes.byref(self.h))
        if st != 0:
            msg = self.L.spattn_context_error(self.h).decode() if self.h else "out of memory"
            self.close()
            raise SpattnError(f"spattn context (status {st}): {msg}")

    def _plan(self, st, h):
        if st != 0:
            raise SpattnError(f"spattn plan (status {st}): {self.L.spattn_context_error(self.h).decode()}")
        return Plan(self, h)

    def plan_file(self, path, batch, seq_len, layer_index=-1):
        h = ctypes.c_void_p()
        st = self.L.spattn_plan_from_file(self.h, os.path.join(ROOT, path).encode(), layer_index, batch, seq_len,
                                          ctypes.byref(h))
        return self._plan(st, h)

    def plan_params(self, batch, seq_len, heads, head_dim, kv_heads=0, dtype=torch.bfloat16, pattern="spattn",
                    band_basis=0, softmax_scale=0.0, custom=None, window=0):
        p = Params(heads, kv_heads, head_dim, 1 if dtype == torch.float16 else 0, pattern.encode(), window, band_basis,
                   softmax_scale, None, None)
        if custom is not None:   # a list per head of (lo, hi) pairs
            counts = (ctypes.c_int * heads)(*[len(c) for c in custom])
            flat = [x for c in custom for iv in c for x in iv]
            bands = (ctypes.c_int64 * max(1, len(flat)))(*flat)
            p.custom_counts, p.custom_bands = counts, bands
        h = ctypes.c_void_p()
        return self._plan(self.L.spattn_plan_from_params(self.h, ctypes.byref(p), batch, seq_len, ctypes.byref(h)), h)

    def close(self):
        if self.h:
            self.L.spattn_context_destroy(self.h)
            self.h = None


def _tensor(t):
    """A [B, N, H, D] view (any strides, D contiguous) as a spattn_tensor."""
    assert t.stride(3) == 1, "head_dim must be contiguous"
    return Tensor(t.data_ptr(), t.stride(0), t.stride(1), t.stride(2))


class Plan:
    """Tensors are given as [B, N, H, D] views: pass x.transpose(1, 2) for a
    [B, H, N, D] tensor (no copy: the strides carry the layout)."""

    def __init__(self, ctx, h):
        self.ctx, self.L, self.h = ctx, ctx.L, h
        info = PlanInfo()
        self.L.spattn_plan_get_info(self.h, ctypes.byref(info))
        self.info = info
        self.kernels = (f"fwd {info.forward_kernel.decode()} ({info.forward_config.decode()}); "
                        f"bwd {info.backward_kernel.decode()} ({info.backward_config.decode()})")
        self.workspace = {}

    def _check(self, st, what):
        if st != 0:
            raise SpattnError(f"spattn {what} (status {st}): {self.L.spattn_plan_error(self.h).decode()}")

    def _ws(self, device, deterministic):
        n = self.L.spattn_workspace_size(self.h, 1, deterministic)
        if (device, n) not in self.workspace:
            self.workspace = {(device, n): torch.empty(max(n, 16), dtype=torch.uint8, device=device)}
        return self.workspace[(device, n)], n

    def forward(self, q, k, v, o=None, lse=None):
        """q [B, N, H, D], k, v [B, N, KVH, D] views; returns o (like q) and lse [B, H, N] fp32."""
        B, N, H, _ = q.shape
        o = torch.empty_like(q) if o is None else o
        lse = torch.empty(B, H, N, device=q.device, dtype=torch.float32) if lse is None else lse
        stream = torch.cuda.current_stream().cuda_stream if q.is_cuda else 0
        lt = Lse(lse.data_ptr(), lse.stride(0), lse.stride(1))
        st = self.L.spattn_forward(self.h, _tensor(q), _tensor(k), _tensor(v), _tensor(o), ctypes.byref(lt), None, 0,
                                   stream)
        self._check(st, "forward")
        return o, lse

    def backward(self, q, k, v, o, lse, do, deterministic=False, grads=None):
        dq, dk, dv = grads if grads is not None else (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v))
        ws, n = self._ws(q.device, int(deterministic))
        stream = torch.cuda.current_stream().cuda_stream if q.is_cuda else 0
        lt = Lse(lse.data_ptr(), lse.stride(0), lse.stride(1))
        st = self.L.spattn_backward(self.h, _tensor(q), _tensor(k), _tensor(v), _tensor(o), ctypes.byref(lt),
                                    _tensor(do), _tensor(dq), _tensor(dk), _tensor(dv), int(deterministic),
                                    ws.data_ptr(), n, stream)
        self._check(st, "backward")
        return dq, dk, dv

    def close(self):
        if self.h:
            self.L.spattn_plan_destroy(self.h)
            self.h = None
