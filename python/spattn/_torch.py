"""The PyTorch op: spattn::attention_fwd and spattn::attention_bwd, custom
ops over the C library with fake (meta) implementations and an autograd
formula, so that torch.compile(fullgraph=True) traces them without a graph
break and CUDA graphs capture them; and SPAttention, an attention block.

The ops take the spec as a string key (spattn._core.Spec.key), the layout
as an int (0: [B, N, H, D], 1: [B, H, N, D]) and the deterministic flag;
everything else (plans, contexts, streams) is looked up per call from the
tensors, on the device of q and PyTorch's current stream there.  A CPU
tensor runs the library's float64 reference (SPATTN_DEVICE_CPU).
"""
import os

import torch
from torch import Tensor, nn

from ._core import CACHE, Spec, check_shapes, decode_shapes, packed_key, resolve_key

_FAST = CACHE.fast          # (spec, device, layout, q.shape, k.shape, dtype) -> plan, after every check passed once
_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}

try:                                     # the raw cudaStream_t of the current stream, without a Stream object
    _raw_stream = torch._C._cuda_getCurrentRawStream
except AttributeError:                   # pragma: no cover
    def _raw_stream(device):
        return torch.cuda.current_stream(device).cuda_stream


def _strides(x, layout, gpu):
    """(data_ptr, stride_batch, stride_seq, stride_head) of a 4-d tensor, or
    None when the C call cannot take its strides as they are (head_dim not
    contiguous; on a GPU, not 16-byte aligned)."""
    s0, s1, s2, s3 = x.stride()
    p = x.data_ptr()
    if layout:
        s1, s2 = s2, s1
    if s3 != 1 and x.shape[3] > 1:
        return None
    if gpu and (p & 15 or (s0 | s1 | s2) & 7):
        # a size-1 dimension's stride never moves the pointer: any value will do
        sh = x.shape
        n = (sh[0], sh[2], sh[1]) if layout else (sh[0], sh[1], sh[2])
        s0, s1, s2 = (0 if n[0] == 1 else s0), (0 if n[1] == 1 else s1), (0 if n[2] == 1 else s2)
        if p & 15 or (s0 | s1 | s2) & 7:
            return None
    return p, s0, s1, s2


def _t(x, layout, gpu):
    """_strides of x, or of a contiguous copy of it (returned too, to keep it alive)."""
    t = _strides(x, layout, gpu)
    if t is None:
        x = x.clone(memory_format=torch.contiguous_format)
        t = _strides(x, layout, gpu)
    return t, x


def _plan(spec, q, k, v, layout):
    """The cached plan of (spec, device, shapes, dtype), else a new one after
    every check; with the device index (-1: the CPU)."""
    dev = q.get_device()
    key = (spec, dev, layout, q.shape, k.shape, q.dtype)
    p = _FAST.get(key)
    if p is None or v.shape != k.shape or v.dtype != q.dtype or k.dtype != q.dtype \
            or k.get_device() != dev or v.get_device() != dev:
        _check(q, k, v, "bhnd" if layout else "bnhd")
        if p is None:
            if dev >= 0 and torch.cuda.is_current_stream_capturing():
                raise RuntimeError("spattn: no plan for this shape yet, and a CUDA graph is being captured: run "
                                   "spattn.attention (forward and backward) once at this shape before capturing "
                                   "(a plan uploads its band table and may compile kernels), or spattn.prepare()")
            B, N, H, KVH, D = check_shapes(q.shape, k.shape, v.shape, "bhnd" if layout else "bnhd")
            p = CACHE.plan(spec, dev, B, N, H, KVH, D, _DTYPES[q.dtype])
            _FAST[key] = p
    return p, dev


def _check(q, k, v, layout):
    """dtype, device and shape checks with messages (raise before any C call)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"spattn.attention: {name} is a {type(x).__name__}, not a tensor")
        if x.dtype not in (torch.bfloat16, torch.float16):
            raise TypeError(f"spattn.attention: {name} is {x.dtype}; expected torch.bfloat16 or torch.float16")
        if x.device.type not in ("cuda", "cpu", "meta"):
            raise ValueError(f"spattn.attention: {name} is on {x.device}; expected a CUDA device (or the CPU, "
                             "where the float64 reference runs)")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"spattn.attention: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"spattn.attention: q, k, v are on different devices ({q.device}, {k.device}, {v.device})")
    check_shapes(tuple(q.shape), tuple(k.shape), tuple(v.shape), layout)


def _lse_like(plan, q, layout):
    """A [B, H, N] fp32 tensor of one element, expanded: torch.empty_like of it
    is the LSE of a call, a little cheaper than new_empty with a shape (the
    forward's host time is the op's overhead where the kernel is short)."""
    t = getattr(plan, "lse_like", None)
    if t is None:
        B, X, Y = q.shape[:3]
        t = plan.lse_like = torch.empty((), dtype=torch.float32, device=q.device).expand(B, X if layout else Y,
                                                                                          Y if layout else X)
    return t


def _fwd_impl(q, k, v, spec, layout, deterministic):
    plan, dev = _plan(spec, q, k, v, layout)
    gpu = dev >= 0
    o = torch.empty_like(q)
    lse = torch.empty_like(_lse_like(plan, q, layout), memory_format=torch.contiguous_format)
    _, H, N = lse.shape
    tq, q = _t(q, layout, gpu)
    tk, k = _t(k, layout, gpu)
    tv, v = _t(v, layout, gpu)
    to, _ = _t(o, layout, gpu)
    plan.forward(tq, tk, tv, to, (lse.data_ptr(), H * N, N), _raw_stream(dev) if gpu else 0)
    return o, lse


@torch.library.custom_op("spattn::attention_fwd", mutates_args=())
def attention_fwd(q: Tensor, k: Tensor, v: Tensor, spec: str, layout: int, deterministic: bool) -> tuple[Tensor, Tensor]:
    """O and LSE (fp32 [B, H, N]) of band attention; q, k, v in layout
    (0: [B, N, H, D], 1: [B, H, N, D]), any strides with head_dim contiguous."""
    return _fwd_impl(q, k, v, spec, layout, deterministic)


@attention_fwd.register_fake
def _(q, k, v, spec, layout, deterministic):
    if layout:
        B, H, N = q.shape[:3]
    else:
        B, N, H = q.shape[:3]
    return torch.empty_like(q), q.new_empty((B, H, N), dtype=torch.float32)


def _bwd_impl(dout, q, k, v, o, lse, spec, layout, deterministic):
    plan, dev = _plan(spec, q, k, v, layout)
    gpu = dev >= 0
    if dout.shape != q.shape or dout.dtype != q.dtype:
        raise ValueError(f"spattn: dL/dO has shape {tuple(dout.shape)} ({dout.dtype}); expected q's, "
                         f"{tuple(q.shape)} ({q.dtype})")
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    n = plan.workspace_size(True, deterministic)
    ws = q.new_empty((n,), dtype=torch.uint8) if n else None   # PyTorch's caching allocator, stream-ordered
    tq, q = _t(q, layout, gpu)
    tk, k = _t(k, layout, gpu)
    tv, v = _t(v, layout, gpu)
    to, o = _t(o, layout, gpu)
    tdo, dout = _t(dout, layout, gpu)
    if lse.stride(2) != 1:
        lse = lse.contiguous()
    plan.backward(tq, tk, tv, to, (lse.data_ptr(), lse.stride(0), lse.stride(1)), tdo, _t(dq, layout, gpu)[0],
                  _t(dk, layout, gpu)[0], _t(dv, layout, gpu)[0], deterministic,
                  ws.data_ptr() if n else 0, n, _raw_stream(dev) if gpu else 0)
    return dq, dk, dv


@torch.library.custom_op("spattn::attention_bwd", mutates_args=())
def attention_bwd(dout: Tensor, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, spec: str, layout: int,
                  deterministic: bool) -> tuple[Tensor, Tensor, Tensor]:
    """dQ, dK, dV from dL/dO and the forward's inputs, O and LSE."""
    return _bwd_impl(dout, q, k, v, o, lse, spec, layout, deterministic)


@attention_bwd.register_fake
def _(dout, q, k, v, o, lse, spec, layout, deterministic):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    q, k, v, spec, layout, deterministic = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse)
    ctx.spec, ctx.layout, ctx.deterministic = spec, layout, deterministic


def _backward(ctx, do, dlse):
    # LSE is returned detached (attention(return_lse=True)): no gradient flows through it
    q, k, v, o, lse = ctx.saved_tensors
    dq, dk, dv = attention_bwd(do, q, k, v, o, lse, ctx.spec, ctx.layout, ctx.deterministic)
    return dq, dk, dv, None, None, None


attention_fwd.register_autograd(_backward, setup_context=_setup_context)


try:                                     # what _direct() asks of PyTorch's internals
    from torch.utils._python_dispatch import _get_current_dispatch_mode as _dispatch_mode
    _fn_mode = torch._C._is_torch_function_mode_enabled
    _wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    _is_compiling = torch.compiler.is_compiling
    _DIRECT = os.environ.get("SPATTN_EAGER_DIRECT", "1") != "0"
except (AttributeError, ImportError):    # pragma: no cover
    _DIRECT = False


def _direct(q, k, v):
    """Whether an eager call may run the implementations without the
    dispatcher (and, with autograd, through _Direct, a plain
    autograd.Function): plain tensors, no torch function or dispatch mode, no
    functorch transform, not under torch.compile (which sees the custom ops).
    The same implementations; what it saves is the custom op machinery's
    Python round trips, about 25 us per forward and 200 us per backward on
    torch 2.11 (bench_overhead.py)."""
    return (_DIRECT and not _is_compiling() and type(q) is torch.Tensor and type(k) is torch.Tensor
            and type(v) is torch.Tensor and not _fn_mode() and _dispatch_mode() is None
            and not (_wrapped(q) or _wrapped(k) or _wrapped(v)))


class _Direct(torch.autograd.Function):
    """Eager autograd over the same implementations as the custom ops."""

    @staticmethod
    def forward(ctx, q, k, v, spec, layout, deterministic):
        o, lse = _fwd_impl(q, k, v, spec, layout, deterministic)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.spec, ctx.layout, ctx.deterministic = spec, layout, deterministic
        ctx.mark_non_differentiable(lse)
        return o, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do, dlse):
        q, k, v, o, lse = ctx.saved_tensors
        return _bwd_impl(do, q, k, v, o, lse, ctx.spec, ctx.layout, ctx.deterministic) + (None, None, None)


def attention(q, k, v, *, spec=None, pattern=None, band_basis=0, window=0, intervals=None, scale=None, layer=-1,
              layout="bhnd", return_lse=False, deterministic=False, seq_lens=None):
    """Causal band attention (DESIGN.md section 1) of q, k, v.

    q [B, H, N, D], k and v [B, KVH, N, D] with layout="bhnd" (PyTorch's SDPA
    layout, the default), or [B, N, H, D] / [B, N, KVH, D] with
    layout="bnhd"; any strides with head_dim contiguous (no copies; a tensor
    that is not 16-byte aligned on the GPU is copied).  bf16 or fp16;
    KVH divides H (grouped-query attention).  The pattern: spec= (a
    spattn.Spec, a spec file path, or a YAML text: a string with a newline;
    layer= picks a layer's pattern), or pattern= ('spattn' by default,
    'dense', 'local', 'exclusive', 'gapped', 'window' with window=, 'custom'
    with intervals=) with band_basis= and scale=.

    Returns O in q's layout, and with return_lse=True also LSE, fp32
    [B, H, N], detached (no gradient flows through it).  Rows with no allowed
    key give O = 0, LSE = -inf and no gradient.  deterministic=True makes
    the backward bitwise repeatable.  Runs on q's device and PyTorch's current
    stream there; a CPU tensor runs the library's float64 reference.  Eager
    calls on plain tensors run the ops' implementations without the
    dispatcher (an autograd.Function when a gradient is recorded);
    torch.compile, tensor subclasses, modes and functorch get the custom ops
    (SPATTN_EAGER_DIRECT=0: always the custom ops).

    seq_lens=[n0, n1, ...]: packed (ragged) sequences, FlashAttention's
    varlen: q [total, H, D], k and v [total, KVH, D] (layout is ignored),
    sequence b the rows after the lengths before it (lengths >= 0, at least
    one >= 1), each its own causal attention with its own bands (basis its
    own length unless the spec fixes band_basis).  O is [total, H, D], LSE
    [H, total].  A plan per distinct list of lengths (cached: a training
    loop with a fixed packing pays once)."""
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    if seq_lens is not None:   # packed: a batch of one [1, total, H, D] to the op, the plan knows the lengths
        for name, x in (("q", q), ("k", k), ("v", v)):
            if x.dim() != 3:
                raise ValueError(f"spattn.attention: with seq_lens, {name} is packed [total, heads, head_dim]; "
                                 f"got shape {tuple(x.shape)}")
        key, lens = packed_key(key, seq_lens)
        if sum(lens) != q.shape[0]:
            raise ValueError(f"spattn.attention: seq_lens sum to {sum(lens)} tokens; q has {q.shape[0]} rows")
        o, lse = _attention(q[None], k[None], v[None], key, "bnhd", deterministic)
        return (o[0], lse[0].detach()) if return_lse else o[0]
    o, lse = _attention(q, k, v, key, layout, deterministic)
    if return_lse:
        return o, lse.detach()
    return o


def _attention(q, k, v, key, layout, deterministic):
    """O and LSE of spattn.attention for a resolved key."""
    if _direct(q, k, v) and (layout == "bhnd" or layout == "bnhd"):     # checked in _plan, once per shape
        lay = 1 if layout == "bhnd" else 0
        if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            return _Direct.apply(q, k, v, key, lay, bool(deterministic))
        return _fwd_impl(q, k, v, key, lay, deterministic)
    _check(q, k, v, layout)
    return attention_fwd(q, k, v, key, 1 if layout == "bhnd" else 0, bool(deterministic))


def prepare(q_shape, kv_heads=None, *, dtype=torch.bfloat16, device="cuda", spec=None, pattern=None, band_basis=0,
            window=0, intervals=None, scale=None, layer=-1, layout="bhnd"):
    """Make (and cache) the plan of a shape ahead of time, for example before
    capturing a CUDA graph: q_shape in layout, kv_heads defaulting to the
    query heads.  Returns the plan's info (kernels, configs, work ratio)."""
    B, X, Y, D = q_shape
    H = X if layout == "bhnd" else Y
    KVH = kv_heads or H
    q = torch.empty(q_shape, dtype=dtype, device=device)
    ks = (B, KVH, Y, D) if layout == "bhnd" else (B, X, KVH, D)
    k = torch.empty(ks, dtype=dtype, device=device)
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    _check(q, k, k, layout)
    plan, _ = _plan(key, q, k, k, 1 if layout == "bhnd" else 0)
    return plan.info


class SPAttention(nn.Module):
    """A transformer's causal self-attention block with band attention: a fused
    qkv projection, spattn.attention, and an output projection.  Input and
    output [B, N, d_model].  The pattern as in spattn.attention (spec= or
    pattern=, band_basis=, window=, intervals=, scale=, layer=).  q, k and v
    are read straight out of the projection's output (strided [B, N, H, D]
    views, no copies).

        attn = spattn.SPAttention(2048, heads=16, spec="configs/olmoe-1b-7b.yaml")
        y = attn(x)          # x [B, N, 2048] bf16 on the GPU
    """

    def __init__(self, d_model, heads, kv_heads=None, head_dim=None, *, spec=None, pattern=None, band_basis=0,
                 window=0, intervals=None, scale=None, layer=-1, bias=False, deterministic=False, device=None,
                 dtype=None):
        super().__init__()
        self.heads, self.kv_heads = heads, kv_heads or heads
        self.head_dim = head_dim or d_model // heads
        if spec is not None and not isinstance(spec, Spec):
            spec = Spec.from_yaml(spec) if "\n" in spec else Spec.from_file(spec, layer)
        elif spec is None:
            spec = Spec.from_params(pattern, band_basis, window, scale, intervals, heads=heads)
        elif layer >= 0 and spec.kind != "params":
            spec = Spec(spec.kind, path=spec.path, text=spec.text, name=spec.name, layer=layer)
        self.spec = spec
        self.deterministic = deterministic
        H, KVH, D = self.heads, self.kv_heads, self.head_dim
        self.qkv = nn.Linear(d_model, (H + 2 * KVH) * D, bias=bias, device=device, dtype=dtype)
        self.out = nn.Linear(H * D, d_model, bias=bias, device=device, dtype=dtype)

    def forward(self, x):
        B, N, _ = x.shape
        H, KVH, D = self.heads, self.kv_heads, self.head_dim
        q, k, v = self.qkv(x).view(B, N, H + 2 * KVH, D).split([H, KVH, KVH], dim=2)
        o = attention(q, k, v, spec=self.spec, layout="bnhd", deterministic=self.deterministic)
        return self.out(o.reshape(B, N, H * D))

    def extra_repr(self):
        return f"heads={self.heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}, spec={self.spec!r}"


def decode(q, k_cache, v_cache, *, spec=None, pattern=None, band_basis=0, window=0, intervals=None, scale=None,
           layer=-1, kv_lens=None, block_table=None, layout="bnhd", return_lse=False):
    """One decoding step from a KV cache (forward only, no autograd), on q's
    device and PyTorch's current stream.

    q: [B, T, H, D], the queries of the last T positions of each sequence
    (T = 1 for plain decoding).  k_cache, v_cache: [B, N, KVH, D], or with
    block_table (int32 [B, max_pages] on q's device) pages
    [num_pages, page_size, KVH, D], page_size a power of two in 16..256
    (N = max_pages * page_size).  layout="bhnd": [B, H, T, D] and
    [B, KVH, N, D] / [num_pages, KVH, page_size, D].  kv_lens: int32 [B] on
    q's device (or a list), each sequence's length (default N); row t of
    sequence b is position kv_lens[b] - T + t and attends with the bands at
    length kv_lens[b] (they follow the sequence unless the spec fixes
    band_basis), so O equals the last T rows of spattn.attention over the
    sequence's tokens.  Returns O like q (and LSE float32 [B, H, T] with
    return_lse).  CPU tensors run the float64 reference."""
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    if layout not in ("bnhd", "bhnd"):
        raise ValueError(f"spattn.decode: layout {layout!r}: expected 'bnhd' or 'bhnd'")
    lay = 1 if layout == "bhnd" else 0
    for name, x in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"spattn.decode: {name} is a {type(x).__name__}, not a tensor")
        if x.dtype not in _DTYPES:
            raise TypeError(f"spattn.decode: {name} is {x.dtype}; expected torch.bfloat16 or torch.float16")
        if x.dtype != q.dtype or x.device != q.device:
            raise ValueError(f"spattn.decode: {name} is {x.dtype} on {x.device}, q {q.dtype} on {q.device}")
    dev = q.get_device()
    gpu = dev >= 0
    if block_table is not None:
        if not isinstance(block_table, torch.Tensor) or block_table.dtype != torch.int32 or block_table.device != q.device:
            raise TypeError("spattn.decode: block_table must be an int32 tensor on q's device")
        block_table = block_table.contiguous()
    B, T, N, H, KVH, D, page = decode_shapes(tuple(q.shape), tuple(k_cache.shape), tuple(v_cache.shape), layout,
                                             None if block_table is None else tuple(block_table.shape))
    if kv_lens is not None:
        if not isinstance(kv_lens, torch.Tensor):
            kv_lens = torch.tensor(list(kv_lens), dtype=torch.int32, device=q.device)
        if kv_lens.dtype != torch.int32 or kv_lens.device != q.device or tuple(kv_lens.shape) != (B,):
            raise TypeError(f"spattn.decode: kv_lens must be int32 [{B}] on q's device")
        kv_lens = kv_lens.contiguous()
    plan = CACHE.plan(key, dev, B, N, H, KVH, D, _DTYPES[q.dtype])
    o = torch.empty_like(q, memory_format=torch.contiguous_format)
    lse = q.new_empty((B, H, T), dtype=torch.float32)
    tq, q = _t(q, lay, gpu)
    tk, k_cache = _t(k_cache, lay, gpu)
    tv, v_cache = _t(v_cache, lay, gpu)
    to, _ = _t(o, lay, gpu)
    ws_bytes = plan.decode_workspace_size(T)
    ws = torch.empty(ws_bytes, dtype=torch.uint8, device=q.device) if ws_bytes else None
    paged = None if block_table is None else (block_table.data_ptr(), block_table.shape[1], page, k_cache.shape[0])
    plan.decode(tq, tk, tv, to, (lse.data_ptr(), H * T, T), T, kv_lens=0 if kv_lens is None else kv_lens.data_ptr(),
                paged=paged, workspace=0 if ws is None else ws.data_ptr(), workspace_bytes=ws_bytes,
                stream=_raw_stream(dev) if gpu else 0)
    return (o, lse) if return_lse else o
