"""The float64 CPU reference through the library's CPU context
(SPATTN_DEVICE_CPU): the same C calls as on a GPU, on host memory.  For
tests and for checking a model without a GPU; slow (O(B H N^2 D) in
float64 on the CPU threads), so keep N in the thousands at most.

Inputs are NumPy arrays or CPU torch tensors, 16-bit like the kernels:
  - numpy float16, or torch float16 / bfloat16 tensors: the dtype follows;
  - numpy uint16 bit patterns with dtype='bf16' (or 'fp16'): NumPy has no
    bfloat16 (see to_bf16 / from_bf16);
  - float32 / float64 arrays with dtype= given: rounded to that dtype first.
Outputs come back in the inputs' kind (numpy float16, uint16 bf16 bits,
float32 holding the rounded values, or torch tensors of the dtype), in q's
layout, contiguous; LSE is float32 [B, H, N].

Packed sequences (seq_lens=[...]): q, k, v (o, do) are [total, heads,
head_dim], sequence b the rows after the lengths before it, each its own
causal attention with its own bands; O and the gradients come back packed
the same way and LSE is [H, total].  The result is, bit for bit, that of
running each sequence alone.
"""
import numpy as np

from ._core import CACHE, DEVICE_CPU, check_shapes, decode_shapes, packed_key, resolve_key, _dtype_name


def to_bf16(x):
    """float32/64 array -> bf16 bit patterns (uint16), round to nearest even."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    nan = np.isnan(b.view(np.float32))
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = 0x7FC0
    return r


def from_bf16(bits):
    """bf16 bit patterns (uint16) -> float32."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


class _Arg:
    """One input as 16-bit bits (a numpy uint16 view, head_dim contiguous) and
    how to give results back in the caller's kind."""

    def __init__(self, x, dtype):
        self.torch_dtype = None
        self.out = "bits"          # how results go back: bits, f16 or f32
        if type(x).__module__.startswith("torch"):
            if x.device.type != "cpu":
                raise ValueError(f"spattn.reference_*: a tensor on {x.device}: the reference runs on the CPU "
                                 "(use spattn.attention on the GPU)")
            name = _dtype_name(x.dtype) if str(x.dtype) in ("torch.float16", "torch.bfloat16") else None
            if name is None:
                raise ValueError(f"spattn.reference_*: tensor dtype {x.dtype}: expected float16 or bfloat16")
            import torch
            self.torch_dtype, self.dtype = x.dtype, name
            self.bits = x.detach().view(torch.int16).numpy().view(np.uint16)
        else:
            x = np.asarray(x)
            if x.dtype == np.float16:
                if dtype not in (None, "fp16"):
                    raise ValueError(f"spattn.reference_*: a float16 array with dtype={dtype!r}")
                self.dtype, self.bits, self.out = "fp16", x.view(np.uint16), "f16"
            elif x.dtype == np.uint16:
                if dtype is None:
                    raise ValueError("spattn.reference_*: uint16 arrays are bit patterns: say dtype='bf16' or 'fp16'")
                self.dtype, self.bits = dtype, x
            elif x.dtype in (np.float32, np.float64):
                if dtype is None:
                    raise ValueError(f"spattn.reference_*: {x.dtype} arrays need dtype='bf16' or 'fp16' "
                                     "(the kernels are 16-bit; the values are rounded to it)")
                self.dtype, self.out = dtype, "f32"
                self.bits = to_bf16(x) if dtype == "bf16" else x.astype(np.float16).view(np.uint16)
            else:
                raise ValueError(f"spattn.reference_*: array dtype {x.dtype}: expected float16, uint16 "
                                 "(bf16 bits) or float32/64 with dtype=")
        if self.bits.ndim == 4 and (self.bits.strides[3] != 2 or any(s % 2 for s in self.bits.strides)):
            self.bits = np.ascontiguousarray(self.bits)

    def strides(self, layout):
        """(stride_batch, stride_seq, stride_head) in elements."""
        s = [x // 2 for x in self.bits.strides]
        return (s[0], s[2], s[1]) if layout == "bhnd" else (s[0], s[1], s[2])

    def wrap(self, bits):
        """Bits shaped like an input -> the caller's kind."""
        if self.torch_dtype is not None:
            import torch
            return torch.from_numpy(bits.view(np.int16)).view(self.torch_dtype)
        if self.out == "f16":
            return bits.view(np.float16)
        if self.out == "f32":
            return from_bf16(bits) if self.dtype == "bf16" else bits.view(np.float16).astype(np.float32)
        return bits


def _tensor(bits, layout):
    s = [x // 2 for x in bits.strides]
    st = (s[0], s[2], s[1]) if layout == "bhnd" else (s[0], s[1], s[2])
    return (bits.ctypes.data,) + st


def _packed(seq_lens, layout, *xs):
    """Packed [total, H, D] inputs as a batch of one [1, total, H, D] (bnhd)."""
    if seq_lens is None:
        return (layout,) + xs
    for x in xs:
        if len(x.shape) != 3:
            raise ValueError(f"spattn.reference_*: with seq_lens, tensors are packed [total, heads, head_dim]; "
                             f"got shape {tuple(x.shape)}")
    return ("bnhd",) + tuple(x[None] for x in xs)


def _prepare(q, k, v, dtype, layout, spec, pattern, band_basis, window, intervals, scale, layer, seq_lens=None):
    dtype = None if dtype is None else _dtype_name(dtype)
    args = [_Arg(x, dtype) for x in (q, k, v)]
    kinds = {a.dtype for a in args}
    if len(kinds) != 1:
        raise ValueError(f"spattn.reference_*: q, k, v have different dtypes ({', '.join(a.dtype for a in args)})")
    B, N, H, KVH, D = check_shapes(args[0].bits.shape, args[1].bits.shape, args[2].bits.shape, layout)
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    if seq_lens is not None:
        key = packed_key(key, seq_lens)[0]
    plan = CACHE.plan(key, DEVICE_CPU, B, N, H, KVH, D, args[0].dtype)
    return args, plan, (B, N, H, KVH, D)


def reference_forward(q, k, v, *, spec=None, pattern=None, band_basis=0, window=0, intervals=None, scale=None,
                      layer=-1, layout="bhnd", dtype=None, seq_lens=None):
    """O and LSE of band attention on the CPU (float64 inside, rounded to the
    16-bit dtype): the arguments of spattn.attention.  Rows with no allowed
    key give O = 0 and LSE = -inf.  seq_lens: packed sequences (see above)."""
    layout, q, k, v = _packed(seq_lens, layout, q, k, v)
    (qa, ka, va), plan, (B, N, H, KVH, D) = _prepare(q, k, v, dtype, layout, spec, pattern, band_basis, window,
                                                     intervals, scale, layer, seq_lens)
    o = np.empty(qa.bits.shape, dtype=np.uint16)
    lse = np.empty((B, H, N), dtype=np.float32)
    plan.forward(_tensor(qa.bits, layout), _tensor(ka.bits, layout), _tensor(va.bits, layout),
                 _tensor(o, layout), (lse.ctypes.data, H * N, N))
    o, lse = qa.wrap(o), (lse if qa.torch_dtype is None else __import__("torch").from_numpy(lse))
    return (o[0], lse[0]) if seq_lens is not None else (o, lse)


def reference_backward(q, k, v, o, lse, do, *, spec=None, pattern=None, band_basis=0, window=0, intervals=None,
                       scale=None, layer=-1, layout="bhnd", dtype=None, seq_lens=None):
    """dQ, dK, dV on the CPU from the inputs, O and LSE (as the forward gave
    them) and dL/dO, all in q's kind and layout.  seq_lens: packed sequences
    (see above; lse is then [H, total])."""
    layout, q, k, v, o, do = _packed(seq_lens, layout, q, k, v, o, do)
    if seq_lens is not None:
        lse = lse[None]
    (qa, ka, va), plan, (B, N, H, KVH, D) = _prepare(q, k, v, dtype, layout, spec, pattern, band_basis, window,
                                                     intervals, scale, layer, seq_lens)
    oa, da = _Arg(o, qa.dtype), _Arg(do, qa.dtype)
    for name, a in (("o", oa), ("do", da)):
        if a.bits.shape != qa.bits.shape or a.dtype != qa.dtype:
            raise ValueError(f"spattn.reference_backward: {name} has shape {a.bits.shape} ({a.dtype}); "
                             f"expected q's, {qa.bits.shape} ({qa.dtype})")
    lse = lse.numpy() if type(lse).__module__.startswith("torch") else np.asarray(lse)
    lse = np.ascontiguousarray(lse, dtype=np.float32)
    if lse.shape != (B, H, N):
        raise ValueError(f"spattn.reference_backward: lse has shape {lse.shape}; expected {(B, H, N)}")
    dq = np.empty(qa.bits.shape, dtype=np.uint16)
    dk = np.empty(ka.bits.shape, dtype=np.uint16)
    dv = np.empty(ka.bits.shape, dtype=np.uint16)
    t = lambda a: _tensor(a, layout)  # noqa: E731
    plan.backward(t(qa.bits), t(ka.bits), t(va.bits), t(oa.bits), (lse.ctypes.data, H * N, N), t(da.bits), t(dq),
                  t(dk), t(dv))
    grads = qa.wrap(dq), ka.wrap(dk), va.wrap(dv)
    return tuple(g[0] for g in grads) if seq_lens is not None else grads


def reference_decode(q, k_cache, v_cache, *, spec=None, pattern=None, band_basis=0, window=0, intervals=None,
                     scale=None, layer=-1, kv_lens=None, block_table=None, layout="bnhd", dtype=None):
    """One decoding step on the CPU (float64 inside, rounded to the dtype):
    the arguments of spattn.decode.  q is [B, T, H, D] (the last T positions
    of each sequence), the cache [B, N, KVH, D], or with block_table (int
    [B, max_pages]) pages [num_pages, page_size, KVH, D]; layout "bhnd" puts
    heads before tokens in both.  kv_lens: each sequence's length (default
    N).  Returns O in q's kind and layout and LSE float32 [B, H, T]; with
    every length N they equal the last T rows of reference_forward over N."""
    dtype = None if dtype is None else _dtype_name(dtype)
    args = [_Arg(x, dtype) for x in (q, k_cache, v_cache)]
    if len({a.dtype for a in args}) != 1:
        raise ValueError(f"spattn.reference_decode: q, k_cache, v_cache have different dtypes "
                         f"({', '.join(a.dtype for a in args)})")
    qa, ka, va = args
    table = None
    if block_table is not None:
        table = block_table.numpy() if type(block_table).__module__.startswith("torch") else np.asarray(block_table)
        table = np.ascontiguousarray(table, dtype=np.int32)
    B, T, N, H, KVH, D, page = decode_shapes(qa.bits.shape, ka.bits.shape, va.bits.shape, layout,
                                             None if table is None else table.shape)
    lens = None
    if kv_lens is not None:
        lens = kv_lens.numpy() if type(kv_lens).__module__.startswith("torch") else np.asarray(kv_lens)
        lens = np.ascontiguousarray(lens, dtype=np.int32)
        if lens.shape != (B,):
            raise ValueError(f"spattn.reference_decode: kv_lens has shape {lens.shape}; expected ({B},)")
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    plan = CACHE.plan(key, DEVICE_CPU, B, N, H, KVH, D, qa.dtype)
    o = np.empty(qa.bits.shape, dtype=np.uint16)
    lse = np.empty((B, H, T), dtype=np.float32)
    paged = None if table is None else (table.ctypes.data, table.shape[1], page, ka.bits.shape[0])
    plan.decode(_tensor(qa.bits, layout), _tensor(ka.bits, layout), _tensor(va.bits, layout), _tensor(o, layout),
                (lse.ctypes.data, H * T, T), T, kv_lens=0 if lens is None else lens.ctypes.data, paged=paged)
    return qa.wrap(o), (lse if qa.torch_dtype is None else __import__("torch").from_numpy(lse))
