"""The C library through ctypes: include/spattn.h, one Python object per C
object.  No torch and no numpy here: pointers, strides and shapes go in as
plain ints, so the CPU path, the torch op and the tests share this layer.

    lib = load()                               # $SPATTN_LIB, the checkout's build/, or libspattn.so.0
    ctx = Context(DEVICE_CPU)                  # or a GPU ordinal
    plan = ctx.plan_params(Params(heads=4, head_dim=64), batch=1, seq_len=100)
    plan.info.work_ratio

Every status other than SPATTN_OK raises SpattnError (or a subclass by
status) carrying the library's one-line message (spattn_context_error for
contexts and plan creation, spattn_plan_error for calls on a plan).
"""
import ctypes
import os
import struct
import threading
from dataclasses import dataclass

API_VERSION = 2          # SPATTN_API_VERSION this layer mirrors
DEVICE_CPU = -1          # SPATTN_DEVICE_CPU
BF16, FP16 = 0, 1        # spattn_dtype
DTYPE_NAMES = {BF16: "bf16", FP16: "fp16"}
OK, FAILED, EINVAL, EGPU = 0, 1, 2, 3


class SpattnError(RuntimeError):
    """A non-zero spattn_status; .status is the status (the CLI's exit code),
    the message the library's."""

    def __init__(self, message, status=FAILED):
        super().__init__(message)
        self.status = status


class SpattnInvalidError(SpattnError, ValueError):
    """SPATTN_EINVAL: a bad argument, spec or tensor."""


class SpattnGPUError(SpattnError):
    """SPATTN_EGPU: no GPU or driver, or a CUDA error."""


def error(status, message):
    """The exception for a status."""
    cls = {EINVAL: SpattnInvalidError, EGPU: SpattnGPUError}.get(status, SpattnError)
    return cls(message, status)


# ---- the structs of spattn.h -------------------------------------------------

class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("stride_batch", ctypes.c_int64), ("stride_seq", ctypes.c_int64),
                ("stride_head", ctypes.c_int64)]


class Lse(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("stride_batch", ctypes.c_int64), ("stride_head", ctypes.c_int64)]


class Params(ctypes.Structure):
    _fields_ = [("heads", ctypes.c_int), ("kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int),
                ("dtype", ctypes.c_int), ("pattern", ctypes.c_char_p), ("window", ctypes.c_int64),
                ("band_basis", ctypes.c_int64), ("softmax_scale", ctypes.c_double),
                ("custom_counts", ctypes.POINTER(ctypes.c_int)), ("custom_bands", ctypes.POINTER(ctypes.c_int64))]


class _PlanInfo(ctypes.Structure):
    _fields_ = [("batch", ctypes.c_int), ("heads", ctypes.c_int), ("kv_heads", ctypes.c_int),
                ("head_dim", ctypes.c_int), ("seq_len", ctypes.c_int64), ("dtype", ctypes.c_int),
                ("allowed_pairs", ctypes.c_int64), ("work_ratio", ctypes.c_double),
                ("forward_flops", ctypes.c_double), ("forward_kernel", ctypes.c_char * 128),
                ("backward_kernel", ctypes.c_char * 128), ("forward_config", ctypes.c_char * 160),
                ("backward_config", ctypes.c_char * 160), ("deterministic_backward_kernel", ctypes.c_char * 128),
                ("deterministic_backward_config", ctypes.c_char * 160)]


@dataclass(frozen=True)
class PlanInfo:
    """spattn_plan_info as Python values."""
    batch: int
    heads: int
    kv_heads: int
    head_dim: int
    seq_len: int
    dtype: str               # "bf16" or "fp16"
    allowed_pairs: int       # (i, j) pairs computed, over batch and heads
    work_ratio: float        # allowed pairs / dense causal pairs
    forward_flops: float     # 4 * head_dim * allowed_pairs
    forward_kernel: str      # "" on a CPU context
    backward_kernel: str
    forward_config: str      # "tuned (...)", "heuristic", "cpu-float64", ...
    backward_config: str
    deterministic_backward_kernel: str   # the deterministic mode's (a config of its own; "" on a CPU context)
    deterministic_backward_config: str


class PagedKV(ctypes.Structure):
    _fields_ = [("block_table", ctypes.c_void_p), ("max_pages", ctypes.c_int), ("page_size", ctypes.c_int),
                ("num_pages", ctypes.c_int)]


class _DecodeInfo(ctypes.Structure):
    _fields_ = [("key_rows", ctypes.c_int64), ("tiles", ctypes.c_int64), ("bytes", ctypes.c_double),
                ("dense_bytes", ctypes.c_double), ("splits", ctypes.c_int), ("kernel", ctypes.c_char * 128),
                ("config", ctypes.c_char * 64), ("config_source", ctypes.c_char * 160)]


@dataclass(frozen=True)
class DecodeInfo:
    """spattn_decode_info: what one decoding step reads, from the bands alone."""
    key_rows: int            # key rows of K and V loaded, over batch and kv heads
    tiles: int               # key tiles loaded
    bytes: float             # bytes of K and V read (key_rows x head_dim x 2 bytes x 2)
    dense_bytes: float       # a dense decode's: every cached token of every kv head
    splits: int              # CTAs sharing one block's tiles (1 on the CPU)
    kernel: str              # the decode kernel spattn.decode launches at this T; "" on the CPU
    config: str              # its tile and splits, "16x64:w4:s3:k2"; "" on the CPU
    config_source: str       # "tuned (batch 64, N<=32768, T=1)" or "heuristic"; "" on the CPU


TUNE_FWD, TUNE_BWD, TUNE_DEC, TUNE_BWD_DET = 1, 2, 4, 8  # SPATTN_TUNE_FWD, _BWD, _DEC, _BWD_DET
TUNE_SAVED, TUNE_UP_TO_DATE, TUNE_NO_WINNER, TUNE_NOT_SAVED = 0, 1, 2, 3   # spattn_tune_outcome
_TUNE_PROGRESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_long, ctypes.c_long)


class TuneOptions(ctypes.Structure):
    _fields_ = [("kinds", ctypes.c_int), ("batches", ctypes.POINTER(ctypes.c_int)), ("n_batches", ctypes.c_int),
                ("seq_lens", ctypes.POINTER(ctypes.c_int64)), ("n_seq_lens", ctypes.c_int),
                ("budget_s", ctypes.c_double), ("force", ctypes.c_int), ("threads", ctypes.c_int),
                ("iters", ctypes.c_int), ("stop", ctypes.POINTER(ctypes.c_int)), ("progress", _TUNE_PROGRESS),
                ("user", ctypes.c_void_p), ("new_tokens", ctypes.POINTER(ctypes.c_int)), ("n_new_tokens", ctypes.c_int)]


class TuneResult(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("batch", ctypes.c_int), ("seq_len", ctypes.c_int64),
                ("seq_bucket", ctypes.c_int64), ("outcome", ctypes.c_int), ("tile", ctypes.c_char * 64),
                ("median_ms", ctypes.c_double), ("eff_tflops", ctypes.c_double), ("checked", ctypes.c_int),
                ("rejected", ctypes.c_int), ("pruned", ctypes.c_int), ("created_at", ctypes.c_char * 32),
                ("json", ctypes.c_char * 2048), ("new_tokens", ctypes.c_int)]


# ---- loading -------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT_LIB = os.path.normpath(os.path.join(_HERE, "..", "..", "build", "libspattn.so"))
_lib = None
_lib_path = None
_load_lock = threading.Lock()


def _candidates():
    env = os.environ.get("SPATTN_LIB")
    if env:
        return [env]                      # an explicit choice is never second-guessed
    return [CHECKOUT_LIB, "libspattn.so.0", "libspattn.so"]


def _declare(lib):
    P, VP, I, I64, SZ, S = ctypes.POINTER, ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_size_t, ctypes.c_char_p
    # forward and backward take every pointer as void * (ints pass as they
    # are: no per-call struct conversion, see Plan.forward)
    sig = {
        "spattn_context_create": (I, [I, P(VP)]),
        "spattn_context_destroy": (None, [VP]),
        "spattn_context_error": (S, [VP]),
        "spattn_context_set_db": (I, [VP, S]),
        "spattn_plan_from_file": (I, [VP, S, I, I, I64, P(VP)]),
        "spattn_plan_from_yaml": (I, [VP, S, SZ, S, I, I, I64, P(VP)]),
        "spattn_plan_from_params": (I, [VP, P(Params), I, I64, P(VP)]),
        "spattn_plan_destroy": (None, [VP]),
        "spattn_plan_error": (S, [VP]),
        "spattn_plan_get_info": (I, [VP, P(_PlanInfo)]),
        "spattn_plan_set_seq_lens": (I, [VP, P(I64), I]),
        "spattn_workspace_size": (SZ, [VP, I, I]),
        "spattn_forward": (I, [VP] * 6 + [VP, SZ, VP]),
        "spattn_backward": (I, [VP] * 10 + [I, VP, SZ, VP]),
        "spattn_tune": (I, [VP, S, S, SZ, I, P(TuneOptions), P(TuneResult), I, P(I)]),
        "spattn_decode_workspace_size": (SZ, [VP, I]),
        "spattn_decode": (I, [VP] * 5 + [I, VP, VP, VP, VP, SZ, VP]),
        "spattn_decode_get_info": (I, [VP, VP, I, P(_DecodeInfo)]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args


def load():
    """The library, loaded once: $SPATTN_LIB if set, else the checkout's
    build/libspattn.so (python/../build), else the system loader's
    libspattn.so.0 (make install).  Raises OSError naming every place tried."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _load_lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            if os.sep in path and not os.path.exists(path):
                tried.append(f"{path} (no such file)")
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{path} ({e})")
                continue
            _declare(lib)
            _lib, _lib_path = lib, path
            return lib
        raise OSError("spattn: cannot load libspattn.so; tried " + "; ".join(tried) +
                      ". Build it with `make` in the checkout, `make install`, or set SPATTN_LIB to its path.")


def library_path():
    """Where the loaded library lives (resolved through /proc/self/maps when the
    system loader found it), or None before load()."""
    if _lib_path is None:
        return None
    if os.sep in _lib_path:
        return os.path.abspath(_lib_path)
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                p = line.split()[-1]
                if os.path.basename(p).startswith("libspattn.so"):
                    return p
    except OSError:
        pass
    return None


# ---- contexts and plans ---------------------------------------------------------

class _Owned:
    """A C object freed by close(): on garbage collection, or as a context manager."""

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Context(_Owned):
    """spattn_context: one device (a GPU ordinal or DEVICE_CPU).  Not
    thread-safe (the C object is not): hold .lock around calls from several
    threads; the torch op does."""

    def __init__(self, device=DEVICE_CPU, db=None):
        self.L = load()
        self.device = device
        self.lock = threading.Lock()
        self.h = ctypes.c_void_p()
        st = self.L.spattn_context_create(device, ctypes.byref(self.h))
        if st != OK:
            msg = self.L.spattn_context_error(self.h).decode() if self.h else "out of memory"
            self.close()
            raise error(st, f"spattn context on {'the CPU' if device == DEVICE_CPU else f'GPU {device}'}: {msg}")
        if db is not None:
            self.set_db(db)

    def set_db(self, path):
        """The tuning database later plans look configs up in (None: $SPATTN_DB,
        else the cache directory's tune.db, as the CLI)."""
        st = self.L.spattn_context_set_db(self.h, None if path is None else os.fspath(path).encode())
        if st != OK:
            raise error(st, "spattn_context_set_db: out of memory")

    def tune(self, opts, max_results, path=None, text=None, layer=-1):
        """spattn_tune on a spec file (path) or YAML text; returns the
        TuneResult array and how many it holds.  Raises on failure."""
        res = (TuneResult * max(1, max_results))()
        n = ctypes.c_int(0)
        b = None if text is None else (text.encode() if isinstance(text, str) else bytes(text))
        st = self.L.spattn_tune(self.h, None if path is None else os.fsencode(path), b, 0 if b is None else len(b),
                                layer, ctypes.byref(opts), res, max_results, ctypes.byref(n))
        if st != OK:
            raise error(st, f"spattn_tune: {self.L.spattn_context_error(self.h).decode()}")
        return res, n.value

    def _plan(self, st, h, what):
        if st != OK:
            raise error(st, f"{what}: {self.L.spattn_context_error(self.h).decode()}")
        return Plan(self, h)

    def plan_file(self, path, batch, seq_len, layer=-1):
        """spattn_plan_from_file."""
        h = ctypes.c_void_p()
        st = self.L.spattn_plan_from_file(self.h, os.fsencode(path), layer, batch, seq_len, ctypes.byref(h))
        return self._plan(st, h, "spattn plan")

    def plan_yaml(self, text, batch, seq_len, name="spec", layer=-1):
        """spattn_plan_from_yaml; name labels the messages."""
        b = text.encode() if isinstance(text, str) else bytes(text)
        h = ctypes.c_void_p()
        st = self.L.spattn_plan_from_yaml(self.h, b, len(b), name.encode(), layer, batch, seq_len, ctypes.byref(h))
        return self._plan(st, h, "spattn plan")

    def plan_params(self, heads, head_dim, batch, seq_len, kv_heads=0, dtype=BF16, pattern="spattn", window=0,
                    band_basis=0, softmax_scale=0.0, intervals=None):
        """spattn_plan_from_params.  intervals (pattern custom): one list of
        (lo, hi) pairs per head."""
        p = Params(heads, kv_heads, head_dim, dtype, pattern.encode() if pattern else None, window, band_basis,
                   softmax_scale or 0.0, None, None)
        if intervals is not None:
            if len(intervals) != heads:
                raise SpattnInvalidError(f"intervals: {len(intervals)} lists for {heads} heads", EINVAL)
            counts = (ctypes.c_int * heads)(*[len(c) for c in intervals])
            flat = [int(x) for c in intervals for iv in c for x in iv]
            if len(flat) != 2 * sum(counts):
                raise SpattnInvalidError("intervals: every interval is a pair (lo, hi)", EINVAL)
            bands = (ctypes.c_int64 * max(1, len(flat)))(*flat)
            p.custom_counts, p.custom_bands = counts, bands
        h = ctypes.c_void_p()
        st = self.L.spattn_plan_from_params(self.h, ctypes.byref(p), batch, seq_len, ctypes.byref(h))
        return self._plan(st, h, "spattn plan")

    def close(self):
        if self.h:
            self.L.spattn_context_destroy(self.h)
            self.h = ctypes.c_void_p()


# Four spattn_tensor (q, k, v, o) then the lse in one buffer for the forward;
# eight tensors then the lse for the backward.  Filled by one struct.pack_into
# per call, passed by address: the C structs are plain int64 fields.
_T_BYTES = ctypes.sizeof(Tensor)
_FWD = struct.Struct("=" + "Qqqq" * 4 + "Qqq")
_BWD = struct.Struct("=" + "Qqqq" * 8 + "Qqq")
assert _T_BYTES == 32 and ctypes.sizeof(Lse) == 24


class Plan(_Owned):
    """spattn_plan: one pattern at one (batch, seq_len) on one context.

    forward(q, k, v, o, lse) and backward(...) take each tensor as
    (data pointer, stride_batch, stride_seq, stride_head) in elements
    ([B, N, H, D] order of the strides, head_dim contiguous) and lse as
    (pointer, stride_batch, stride_head).  Callers check shapes: the C call
    trusts them."""

    def __init__(self, ctx, h):
        self.ctx, self.L, self.h = ctx, ctx.L, h
        self.handle = h.value                       # an int, for the per-call path
        self._read_info()
        self._fbuf = ctypes.create_string_buffer(_FWD.size)
        self._bbuf = ctypes.create_string_buffer(_BWD.size)
        fa, ba = ctypes.addressof(self._fbuf), ctypes.addressof(self._bbuf)
        self._fptr = [fa + i * _T_BYTES for i in range(5)]        # q k v o lse
        self._bptr = [ba + i * _T_BYTES for i in range(9)]        # q k v o dout dq dk dv lse
        self._fwd = self.L.spattn_forward
        self._bwd = self.L.spattn_backward
        self._ws = {}

    def _read_info(self):
        raw = _PlanInfo()
        self.L.spattn_plan_get_info(self.h, ctypes.byref(raw))
        self.info = PlanInfo(raw.batch, raw.heads, raw.kv_heads, raw.head_dim, raw.seq_len,
                             DTYPE_NAMES.get(raw.dtype, str(raw.dtype)), raw.allowed_pairs, raw.work_ratio,
                             raw.forward_flops, raw.forward_kernel.decode(), raw.backward_kernel.decode(),
                             raw.forward_config.decode(), raw.backward_config.decode(),
                             raw.deterministic_backward_kernel.decode(), raw.deterministic_backward_config.decode())

    def set_seq_lens(self, lens):
        """spattn_plan_set_seq_lens: packed sequences of these lengths ([total,
        H, D] tensors, LSE [H, total]); the info and workspace sizes follow."""
        arr = (ctypes.c_int64 * len(lens))(*lens)
        st = self.L.spattn_plan_set_seq_lens(self.h, arr, len(lens))
        if st:
            self._raise(st, "set_seq_lens")
        self._read_info()
        self._ws = {}

    def workspace_size(self, backward=True, deterministic=False):
        """spattn_workspace_size (bytes, 0 if none: the forward, the CPU)."""
        key = (bool(backward), bool(deterministic))
        n = self._ws.get(key)
        if n is None:
            n = self._ws[key] = self.L.spattn_workspace_size(self.h, int(backward), int(deterministic))
        return n

    def _raise(self, st, what):
        raise error(st, f"spattn {what} ({self.info.heads} heads, B={self.info.batch}, N={self.info.seq_len}): "
                        f"{self.L.spattn_plan_error(self.h).decode()}")

    def forward(self, q, k, v, o, lse, stream=0, workspace=0, workspace_bytes=0):
        """spattn_forward; q, k, v, o: (ptr, sb, sn, sh); lse: (ptr, sb, sh)."""
        p = self._fptr
        with self.ctx.lock:
            _FWD.pack_into(self._fbuf, 0, *q, *k, *v, *o, *lse)
            st = self._fwd(self.handle, p[0], p[1], p[2], p[3], p[4], workspace or None, workspace_bytes,
                           stream or None)
        if st:
            self._raise(st, "forward")

    def backward(self, q, k, v, o, lse, dout, dq, dk, dv, deterministic=False, workspace=0, workspace_bytes=0,
                 stream=0):
        """spattn_backward, the tensors as in forward()."""
        p = self._bptr
        with self.ctx.lock:
            _BWD.pack_into(self._bbuf, 0, *q, *k, *v, *o, *dout, *dq, *dk, *dv, *lse)
            st = self._bwd(self.handle, p[0], p[1], p[2], p[3], p[8], p[4], p[5], p[6], p[7], int(deterministic),
                           workspace or None, workspace_bytes, stream or None)
        if st:
            self._raise(st, "backward")

    def decode_workspace_size(self, new_tokens):
        """spattn_decode_workspace_size (bytes, 0 if none: one split, the CPU)."""
        return self.L.spattn_decode_workspace_size(self.h, int(new_tokens))

    def decode(self, q, k, v, o, lse, new_tokens, kv_lens=0, paged=None, workspace=0, workspace_bytes=0, stream=0):
        """spattn_decode.  q, o: (ptr, sb, sn, sh) of [B, T, H, D]; k, v: the
        cache's (ptr, sb, sn, sh), sb the page stride when paged; lse: (ptr,
        sb, sh) of [B, H, T]; kv_lens: an int32 pointer or 0; paged: None or
        (block_table pointer, max_pages, page_size, num_pages)."""
        bufs = [Tensor(*q), Tensor(*k), Tensor(*v), Tensor(*o)]
        l = Lse(*lse)
        pg = PagedKV(*paged) if paged is not None else None
        with self.ctx.lock:
            st = self.L.spattn_decode(self.h, *[ctypes.addressof(b) for b in bufs[:3]], kv_lens or None,
                                      int(new_tokens), ctypes.addressof(pg) if pg is not None else None,
                                      ctypes.addressof(bufs[3]), ctypes.addressof(l), workspace or None,
                                      workspace_bytes, stream or None)
        if st:
            self._raise(st, "decode")

    def decode_info(self, new_tokens, kv_lens=None):
        """spattn_decode_get_info: kv_lens a list of lengths (or None: all seq_len)."""
        raw = _DecodeInfo()
        arr = None if kv_lens is None else (ctypes.c_int32 * len(kv_lens))(*[int(x) for x in kv_lens])
        st = self.L.spattn_decode_get_info(self.h, arr, int(new_tokens), ctypes.byref(raw))
        if st:
            raise error(st, f"spattn_decode_get_info: new_tokens {new_tokens} or kv_lens out of range "
                            f"(1..{self.info.seq_len}, 0..{self.info.seq_len})")
        return DecodeInfo(raw.key_rows, raw.tiles, raw.bytes, raw.dense_bytes, raw.splits, raw.kernel.decode(),
                          raw.config.decode(), raw.config_source.decode())

    def close(self):
        """Destroys the plan; a no-op (the C plan is leaked, not freed into a
        closed context) once its context is closed."""
        if self.h:
            if self.ctx.h:
                self.L.spattn_plan_destroy(self.h)
            self.h = ctypes.c_void_p()
            self.handle = None
