"""spattn: band-sparse attention kernels, generated per model and tuned per
GPU, from Python (the C library build/libspattn.so through ctypes).

    import spattn
    o = spattn.attention(q, k, v, spec="configs/olmoe-1b-7b.yaml")   # PyTorch, on the GPU
    o, lse = spattn.reference_forward(q16, k16, v16, pattern="exclusive")   # NumPy, the CPU reference

Without PyTorch the package still imports: specs, plans and their info, the
CPU reference on NumPy arrays, and tune() work; attention, SPAttention and
prepare need torch (they raise ImportError naming it otherwise).
"""
import contextlib

from ._lib import (API_VERSION, DEVICE_CPU, Context, Plan, PlanInfo, SpattnError, SpattnGPUError,
                   SpattnInvalidError, load as load_library, library_path)
from ._core import CACHE as _CACHE, PATTERNS, Spec, allowed_pairs, head_intervals
from .tune import find_cli, tune

__version__ = "0.1.0"

try:
    import torch as _torch  # noqa: F401
except ImportError:         # the NumPy/CPU half of the package works without torch
    _torch = None

if _torch is not None:
    from ._torch import SPAttention, attention, attention_bwd, attention_fwd, decode, prepare
else:
    def _needs_torch(name):
        def f(*args, **kwargs):
            raise ImportError(f"spattn.{name} needs PyTorch (import torch failed); the CPU reference "
                              "(spattn.reference_forward) and spattn.plan_info work without it")
        f.__name__ = name
        return f
    attention = _needs_torch("attention")
    decode = _needs_torch("decode")
    prepare = _needs_torch("prepare")

    class SPAttention:  # noqa: D101
        def __init__(self, *a, **k):
            _needs_torch("SPAttention")()


def reference_forward(*args, **kwargs):
    from .reference import reference_forward as f
    return f(*args, **kwargs)


def reference_decode(*args, **kwargs):
    from .reference import reference_decode as f
    return f(*args, **kwargs)


def reference_backward(*args, **kwargs):
    from .reference import reference_backward as f
    return f(*args, **kwargs)


reference_forward.__doc__ = "O and LSE on the CPU through the library's float64 reference (spattn.reference)."
reference_decode.__doc__ = "One decoding step from a KV cache on the CPU through the library's float64 reference."
reference_backward.__doc__ = "dQ, dK, dV on the CPU through the library's float64 reference (spattn.reference)."


@contextlib.contextmanager
def _temporary_plan(spec, pattern, band_basis, window, scale, intervals, layer, device, batch, seq_len, heads,
                    kv_heads, head_dim, dtype):
    """A plan made for one question (plan_info, decode_info) and closed after it."""
    from ._core import resolve_key
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    s = _CACHE.spec(key)
    ctx = _CACHE.context(device)
    with ctx.lock:
        p = s.plan(ctx, batch, seq_len, heads, kv_heads, head_dim, dtype)
    try:
        yield p
    finally:
        p.close()


def plan_info(spec=None, *, batch=1, seq_len=4096, heads=None, kv_heads=None, head_dim=None, dtype="bf16",
              pattern=None, band_basis=0, window=0, intervals=None, scale=None, layer=-1, device=DEVICE_CPU):
    """The PlanInfo of a spec at (batch, seq_len): allowed pairs, work ratio,
    FLOPs, and on a GPU device the kernels and where their configs came from.
    A parameter spec needs heads and head_dim; a spec file gives its own."""
    with _temporary_plan(spec, pattern, band_basis, window, scale, intervals, layer, device, batch, seq_len, heads,
                         kv_heads, head_dim, dtype) as p:
        return p.info


def decode_info(spec=None, *, batch=1, kv_len=4096, new_tokens=1, kv_lens=None, heads=None, kv_heads=None,
                head_dim=None, dtype="bf16", pattern=None, band_basis=0, window=0, intervals=None, scale=None,
                layer=-1, device=DEVICE_CPU):
    """What one decoding step reads (spattn.DecodeInfo): the key rows and
    bytes of K and V inside the bands, a dense decode's bytes; no data
    needed.  kv_lens: a list of lengths (default kv_len each).  On a GPU
    device also what spattn.decode launches there at this new_tokens: the
    splits, the kernel, the config ("16x64:w4:s3:k2") and where it came from
    (the tuning database, spattn.tune(..., decode=True), or the heuristic)."""
    with _temporary_plan(spec, pattern, band_basis, window, scale, intervals, layer, device, batch, kv_len, heads,
                         kv_heads, head_dim, dtype) as p:
        return p.decode_info(new_tokens, None if kv_lens is None else list(kv_lens))


def set_database(path):
    """The tuning database of every plan made from now on (None: $SPATTN_DB,
    else the kernel cache directory's tune.db, as the CLI); also what tune()
    uses.  Drops the cached plans."""
    _CACHE.set_db(path)


def clear_plan_cache():
    """Drops every cached plan (they are made again on the next call, with the
    tuning database's current configs); recapture CUDA graphs that used them."""
    _CACHE.clear()


__all__ = ["API_VERSION", "DEVICE_CPU", "Context", "Plan", "PlanInfo", "Spec", "SpattnError", "SpattnGPUError",
           "SpattnInvalidError", "PATTERNS", "attention", "decode", "reference_decode", "decode_info", "SPAttention", "prepare", "reference_forward",
           "reference_backward", "plan_info", "tune", "find_cli", "set_database", "clear_plan_cache",
           "head_intervals", "allowed_pairs", "load_library", "library_path"]
