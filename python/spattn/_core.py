"""Specs, the plan cache and the shape checks that the NumPy path and the
torch op share.

A spec travels as a string key (Spec.key): the torch op takes it as a plain
str argument, so torch.compile sees a constant, and the op's implementation
rebuilds the Spec from the key on a cache miss (Spec.from_key).  Plans are
cached per (key, device, batch, seq_len, heads, kv_heads, head_dim, dtype):
a C plan fixes batch and seq_len (include/spattn.h).
"""
import os
import threading

from . import _lib
from ._lib import DEVICE_CPU, BF16, FP16, SpattnInvalidError

PATTERNS = ("dense", "local", "spattn", "exclusive", "gapped", "window", "custom")
LAYOUTS = ("bhnd", "bnhd")
_SEP = "\x1f"
_PACKED = "\x1epacked="   # a spec key + this + "4096,100,2000": packed sequences (packed_key)


def packed_key(key, seq_lens):
    """The key of spec key with packed sequences of lengths seq_lens: the
    tensors are then [1, total, H, D] (bnhd) to the op and the plan, with
    LSE [1, H, total].  Checks the lengths (ints >= 0, at least one > 0)."""
    lens = [int(n) for n in seq_lens]
    if not lens or any(n < 0 for n in lens) or max(lens) < 1 or any(n != m for n, m in zip(lens, seq_lens)):
        raise ValueError(f"spattn: seq_lens {list(seq_lens)!r}: expected lengths >= 0, at least one >= 1")
    return key + _PACKED + ",".join(map(str, lens)), lens


def split_packed(key):
    """(spec key, lengths or None) of a key."""
    if _PACKED not in key:
        return key, None
    k, lens = key.split(_PACKED)
    return k, [int(n) for n in lens.split(",")]


def _encode_intervals(intervals):
    """Per-head (lo, hi) lists as "lo-hi,lo-hi;lo-hi" (plain loops and str():
    torch.compile traces it to a constant)."""
    out = ""
    for h, head in enumerate(intervals):
        if h:
            out += ";"
        for i, iv in enumerate(head):
            if i:
                out += ","
            out += str(int(iv[0])) + "-" + str(int(iv[1]))
    return out


def _decode_intervals(s):
    if not s:
        return None
    return tuple(tuple(tuple(int(x) for x in iv.split("-")) for iv in head.split(",") if iv)
                 for head in s.split(";"))


class Spec:
    """An attention pattern: a spec file (spattn-spec(5)), a YAML text, or plain
    parameters (a pattern name, band_basis, window, softmax scale, per-head
    intervals for pattern custom).  Heads, kv_heads, head_dim and dtype of a
    parameter spec come from the tensors unless given; a file or YAML spec
    fixes them and the tensors must match.

        Spec.from_file("configs/olmoe-1b-7b.yaml")
        Spec.from_yaml("heads: 4\\nhead_dim: 64\\npattern: exclusive\\n")
        Spec.from_params("exclusive", band_basis=8192)
        Spec.from_params(intervals=[[(0, 65)], [(0, 65), (256, 512)]])   # pattern custom
    """

    def __init__(self, kind, *, path=None, text=None, name=None, layer=-1, pattern=None, band_basis=0, window=0,
                 scale=None, intervals=None, heads=None, kv_heads=None, head_dim=None, dtype=None):
        self.kind, self.path, self.text, self.name, self.layer = kind, path, text, name, int(layer)
        self.pattern, self.band_basis, self.window = pattern, int(band_basis or 0), int(window or 0)
        self.scale = None if scale is None else float(scale)
        self.intervals = None if intervals is None else tuple(tuple((int(lo), int(hi)) for lo, hi in head)
                                                              for head in intervals)
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.dtype = None if dtype is None else _dtype_name(dtype)
        if kind == "file":
            self.key = _SEP.join(("file", str(self.layer), path))
        elif kind == "yaml":
            self.key = _SEP.join(("yaml", str(self.layer), name or "spec", text))
        elif kind == "params":
            self.key = params_key(self.pattern, self.band_basis, self.window, self.scale, self.intervals)
            if heads is not None or kv_heads is not None or head_dim is not None or self.dtype is not None:
                self.key += _SEP + _SEP.join(str(x) for x in (heads, kv_heads, head_dim, self.dtype))
        else:
            raise ValueError(f"spec kind {kind!r}: expected file, yaml or params")

    # -- constructors --------------------------------------------------------
    @classmethod
    def from_file(cls, path, layer=-1):
        """A spec file; layer: that layer's pattern (-1: the spec's default)."""
        return cls("file", path=os.path.abspath(os.fspath(path)), layer=layer)

    @classmethod
    def from_yaml(cls, text, name="spec", layer=-1):
        """A spec as YAML text; name labels the library's messages."""
        return cls("yaml", text=text, name=name, layer=layer)

    @classmethod
    def from_params(cls, pattern=None, band_basis=0, window=0, scale=None, intervals=None, heads=None,
                    kv_heads=None, head_dim=None, dtype=None):
        """Plain parameters (spattn_params).  intervals: one list of (lo, hi)
        distance pairs per head, or a single list of pairs for every head;
        it implies pattern custom."""
        intervals = _per_head(intervals, heads)
        if intervals is not None:
            if pattern not in (None, "custom"):
                raise ValueError(f"intervals= with pattern {pattern!r}: intervals imply pattern 'custom'")
            pattern = "custom"
        pattern = pattern or "spattn"
        if pattern not in PATTERNS:
            raise ValueError(f"pattern {pattern!r}: expected one of {', '.join(PATTERNS)}")
        if pattern == "custom" and intervals is None:
            raise ValueError("pattern 'custom' needs intervals= (one list of (lo, hi) pairs per head)")
        if pattern == "window" and not window:
            raise ValueError("pattern 'window' needs window= (every head attends distances [0, window))")
        return cls("params", pattern=pattern, band_basis=band_basis, window=window, scale=scale, intervals=intervals,
                   heads=heads, kv_heads=kv_heads, head_dim=head_dim, dtype=dtype)

    @classmethod
    def from_key(cls, key):
        """The inverse of .key."""
        f = key.split(_SEP)
        if f[0] == "file":
            return cls("file", path=f[2], layer=int(f[1]))
        if f[0] == "yaml":
            return cls("yaml", text=_SEP.join(f[3:]), name=f[2], layer=int(f[1]))
        if f[0] == "params":
            scale = None if f[4] == "None" else float(f[4])
            extra = [None if x == "None" else x for x in f[6:10]] if len(f) > 6 else [None] * 4
            ints = [None if x is None else int(x) for x in extra[:3]]
            return cls("params", pattern=f[1], band_basis=int(f[2]), window=int(f[3]), scale=scale,
                       intervals=_decode_intervals(f[5]), heads=ints[0], kv_heads=ints[1], head_dim=ints[2],
                       dtype=extra[3])
        raise ValueError(f"not a spec key: {key[:40]!r}")

    # -- use -------------------------------------------------------------------
    def plan(self, ctx, batch, seq_len, heads=None, kv_heads=None, head_dim=None, dtype=None):
        """A C plan of this spec on ctx at (batch, seq_len); heads, kv_heads,
        head_dim and dtype fill what a parameter spec leaves open."""
        if self.kind == "file":
            return ctx.plan_file(self.path, batch, seq_len, self.layer)
        if self.kind == "yaml":
            return ctx.plan_yaml(self.text, batch, seq_len, self.name or "spec", self.layer)
        H = self.heads or heads
        if H is None or (self.head_dim or head_dim) is None:
            raise ValueError("a parameter spec needs heads and head_dim (from the tensors or the spec)")
        d = self.dtype or (dtype and _dtype_name(dtype)) or "bf16"
        return ctx.plan_params(H, self.head_dim or head_dim, batch, seq_len, kv_heads=self.kv_heads or kv_heads or 0,
                               dtype=FP16 if d == "fp16" else BF16, pattern=self.pattern, window=self.window,
                               band_basis=self.band_basis, softmax_scale=self.scale or 0.0, intervals=self.intervals)

    def to_yaml(self, heads=None, kv_heads=None, head_dim=None, dtype=None):
        """The spec as YAML text (spattn-spec(5)), for the CLI (spattn.tune)."""
        if self.kind == "file":
            with open(self.path) as f:
                return f.read()
        if self.kind == "yaml":
            return self.text
        H, D = self.heads or heads, self.head_dim or head_dim
        if H is None or D is None:
            raise ValueError("a parameter spec needs heads and head_dim for a YAML text: pass heads=, head_dim=")
        y = [f"name: params-{self.pattern}", f"heads: {H}", f"kv_heads: {self.kv_heads or kv_heads or H}",
             f"head_dim: {D}", f"dtype: {self.dtype or (dtype and _dtype_name(dtype)) or 'bf16'}",
             f"pattern: {self.pattern}"]
        if self.band_basis:
            y.append(f"band_basis: {self.band_basis}")
        if self.window:
            y.append(f"window: {self.window}")
        if self.scale:
            y.append(f"softmax_scale: {self.scale!r}")
        if self.intervals is not None:
            y.append("bands:")
            y += ["  - [" + ", ".join(f"[{lo}, {hi}]" for lo, hi in head) + "]" for head in self.intervals]
        return "\n".join(y) + "\n"

    def __eq__(self, other):
        return isinstance(other, Spec) and other.key == self.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        if self.kind == "file":
            return f"Spec.from_file({self.path!r}{'' if self.layer < 0 else f', layer={self.layer}'})"
        if self.kind == "yaml":
            return f"Spec.from_yaml(<{len(self.text)} chars>, name={self.name!r})"
        parts = [f"{self.pattern!r}"] + [f"{k}={getattr(self, k)!r}" for k in
                                         ("band_basis", "window", "scale", "intervals", "heads", "kv_heads",
                                          "head_dim", "dtype") if getattr(self, k)]
        return f"Spec.from_params({', '.join(parts)})"


def params_key(pattern, band_basis, window, scale, intervals):
    """The key of a parameter spec (kept traceable by torch.compile: f-strings
    of constants and _encode_intervals)."""
    iv = "" if intervals is None else _encode_intervals(intervals)
    return f"params{_SEP}{pattern}{_SEP}{band_basis}{_SEP}{window}{_SEP}{scale}{_SEP}{iv}"


def _per_head(intervals, heads):
    """intervals as one list per head; a flat list of pairs serves every head
    (then heads must be known, or it stays a one-entry marker resolved later)."""
    if intervals is None:
        return None
    intervals = list(intervals)
    if intervals and len(intervals[0]) == 2 and all(isinstance(x, int) for x in intervals[0]):
        if heads is None:
            raise ValueError("intervals as one list of pairs for every head: pass heads= too, "
                             "or give one list per head")
        return [intervals] * heads
    return intervals


def _dtype_name(dtype):
    """"bf16" or "fp16" from a name, a torch dtype or a numpy dtype."""
    s = str(dtype).replace("torch.", "")
    if s in ("bf16", "bfloat16"):
        return "bf16"
    if s in ("fp16", "float16", "half"):
        return "fp16"
    raise ValueError(f"dtype {dtype}: expected bf16 or fp16")


def resolve_key(spec, pattern, band_basis, window, scale, intervals, layer):
    """The spec key of attention()'s arguments: a Spec, a spec file path, a
    YAML text (a string with a newline), or the pattern arguments."""
    if spec is None:
        if intervals is not None and pattern is None:
            pattern = "custom"
        return params_key(pattern or "spattn", band_basis or 0, window or 0, scale, intervals)
    if pattern is not None or intervals is not None or band_basis or window:
        raise ValueError("spattn: give either spec= or the pattern arguments (pattern, band_basis, window, intervals)")
    if isinstance(spec, Spec):
        if scale is not None:
            raise ValueError("spattn: scale= with a Spec: set the scale in the spec (Spec.from_params(scale=...))")
        return spec.key if layer < 0 or spec.kind == "params" else Spec(spec.kind, path=spec.path, text=spec.text,
                                                                         name=spec.name, layer=layer).key
    if isinstance(spec, str):
        if scale is not None:
            raise ValueError("spattn: scale= with a spec file or YAML text: the spec's softmax_scale sets it")
        if "\n" in spec:
            return "yaml" + _SEP + str(layer) + _SEP + "spec" + _SEP + spec
        return "file" + _SEP + str(layer) + _SEP + spec
    raise TypeError(f"spattn: spec= takes a Spec, a spec file path or a YAML text, not {type(spec).__name__}")


# ---- band formulas (DESIGN.md section 1), in Python ---------------------------------

def head_intervals(pattern, heads, h, seq_len, band_basis=0, window=0, intervals=None):
    """Head h's allowed distances [lo, hi) at seq_len, clipped and merged: the
    formulas of DESIGN.md section 1 (the library's codegen/bands.c computes the
    same; the tests compare the two).  For masks outside spattn (Flex, SDPA)."""
    N = seq_len
    if pattern == "custom":
        ivs = list(intervals[h])
    elif pattern == "dense":
        ivs = [(0, N)]
    elif pattern == "window":
        ivs = [(0, window)]
    else:
        L = band_basis or N
        base, extra = L // heads, L % heads
        w = base + (1 if h < extra else 0)
        s = h * base + min(h, extra)
        ivs = {"local": [(0, w + 1)], "spattn": [(0, w + 1), (max(s, w + 1), s + w)],
               "exclusive": [(s, s + w)], "gapped": [(s, s + w // 2)]}[pattern]
    out = []
    for lo, hi in sorted((max(0, lo), min(hi, N)) for lo, hi in ivs):
        if hi <= lo:
            continue
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def allowed_pairs(ivs, seq_len):
    """(i, j) pairs of a head's merged intervals at seq_len."""
    N = seq_len
    return sum((hi - lo) * (2 * N - lo - hi + 1) // 2 for lo, hi in ivs)


# ---- contexts and plans, cached ---------------------------------------------------

class PlanCache:
    """Contexts (one per device) and plans (per spec key and shape).  Plans
    are never evicted while cached, since a captured CUDA graph may hold
    their band tables; clear() drops them all."""

    def __init__(self):
        self.contexts = {}
        self.plans = {}
        self.fast = {}          # the torch op's own keys to the same plans (spattn/_torch.py)
        self.specs = {}
        self.db = None
        self.lock = threading.Lock()

    def context(self, device):
        ctx = self.contexts.get(device)
        if ctx is None:
            with self.lock:
                ctx = self.contexts.get(device)
                if ctx is None:
                    ctx = self.contexts[device] = _lib.Context(device, db=self.db)
        return ctx

    def spec(self, key):
        s = self.specs.get(key)
        if s is None:
            s = self.specs[key] = Spec.from_key(key)
        return s

    def plan(self, key, device, batch, seq_len, heads, kv_heads, head_dim, dtype):
        """The cached plan, else a new one checked against the tensors' shape."""
        k = (key, device, batch, seq_len, heads, kv_heads, head_dim, dtype)
        p = self.plans.get(k)
        if p is not None:
            return p
        key, lens = split_packed(key)
        if lens is not None and (batch != 1 or seq_len != sum(lens)):
            raise ValueError(f"spattn: packed sequences of {sum(lens)} tokens in all; the tensors have batch "
                             f"{batch} and {seq_len} rows (expected [total, H, D])")
        spec = self.spec(key)
        ctx = self.context(device)
        with ctx.lock:
            p = self.plans.get(k)
            if p is not None:
                return p
            p = spec.plan(ctx, 1 if lens else batch, max(lens) if lens else seq_len, heads, kv_heads, head_dim, dtype)
            if lens:
                p.set_seq_lens(lens)
        i = p.info
        want = (heads, kv_heads, head_dim, _dtype_name(dtype))
        got = (i.heads, i.kv_heads, i.head_dim, i.dtype)
        if want != got:
            p.close()
            raise SpattnInvalidError(
                f"spattn: the tensors have heads={heads}, kv_heads={kv_heads}, head_dim={head_dim}, dtype "
                f"{want[3]} but the spec ({_describe(spec)}) has heads={i.heads}, kv_heads={i.kv_heads}, "
                f"head_dim={i.head_dim}, dtype {i.dtype}", _lib.EINVAL)
        self.plans[k] = p
        return p

    def set_db(self, path):
        """The tuning database of every context, present and future; cached plans
        are dropped (they keep the configs they were made with)."""
        self.db = path
        for ctx in self.contexts.values():
            ctx.set_db(path)
        self.clear()

    def clear(self):
        """Drops every cached plan (destroyed once unreferenced): a CUDA graph
        captured with them must be captured again."""
        self.plans.clear()
        self.fast.clear()


def _describe(spec):
    if spec.kind == "file":
        return spec.path
    if spec.kind == "yaml":
        return f"YAML {spec.name}"
    return f"pattern {spec.pattern}"


CACHE = PlanCache()


def check_shapes(qs, ks, vs, layout):
    """(B, N, H, KVH, D) of q, k, v shapes in layout ('bhnd' or 'bnhd'), or a
    ValueError naming the mismatch."""
    if layout not in LAYOUTS:
        raise ValueError(f"spattn: layout {layout!r}: expected 'bhnd' ([B, H, N, D]) or 'bnhd' ([B, N, H, D])")
    for name, s in (("q", qs), ("k", ks), ("v", vs)):
        if len(s) != 4:
            raise ValueError(f"spattn: {name} has {len(s)} dimensions; expected 4 ({layout_dims(layout)})")
    if layout == "bhnd":
        (B, H, N, D), (Bk, KVH, Nk, Dk) = qs, ks
    else:
        (B, N, H, D), (Bk, Nk, KVH, Dk) = qs, ks
    if tuple(vs) != tuple(ks):
        raise ValueError(f"spattn: v has shape {tuple(vs)}, k {tuple(ks)}: they must match")
    if Bk != B or Nk != N or Dk != D:
        raise ValueError(f"spattn: q {tuple(qs)} and k {tuple(ks)} ({layout_dims(layout)}) differ in batch, "
                         f"sequence length or head_dim")
    if KVH < 1 or H % KVH:
        raise ValueError(f"spattn: {H} query heads and {KVH} key/value heads: kv heads must divide the query heads")
    if D not in (32, 64, 96, 128, 256):
        raise ValueError(f"spattn: head_dim {D}: expected 32, 64, 96, 128 or 256")
    if N < 1 or B < 1:
        raise ValueError(f"spattn: batch {B} and sequence length {N}: both must be >= 1")
    return B, N, H, KVH, D


def layout_dims(layout):
    return "[B, H, N, D]" if layout == "bhnd" else "[B, N, H, D]"


def decode_shapes(qs, ks, vs, layout, table_shape=None):
    """B, T, N, H, KVH, D (and the page size, 0 if contiguous) of a decoding
    step's q [B, T, H, D] and cache [B, N, KVH, D] ("bnhd"; "bhnd": [B, H, T,
    D] and [B, KVH, N, D]); paged (table_shape = (B, max_pages)): k and v are
    pages [num_pages, page_size, KVH, D] ("bhnd": [num_pages, KVH, page_size,
    D]) and N = max_pages * page_size.  Raises ValueError naming the problem."""
    if len(qs) != 4 or len(ks) != 4 or len(vs) != 4:
        raise ValueError(f"spattn.decode: q, k_cache, v_cache must be 4-d; got {len(qs)}, {len(ks)}, {len(vs)} dims")
    if tuple(ks) != tuple(vs):
        raise ValueError(f"spattn.decode: k_cache {tuple(ks)} and v_cache {tuple(vs)} differ in shape")
    B, T, H, D = (qs[0], qs[2], qs[1], qs[3]) if layout == "bhnd" else tuple(qs)
    rows, KVH = (ks[2], ks[1]) if layout == "bhnd" else (ks[1], ks[2])
    if ks[3] != D:
        raise ValueError(f"spattn.decode: head_dim of q ({D}) and of the cache ({ks[3]}) differ")
    if KVH < 1 or H % KVH:
        raise ValueError(f"spattn.decode: q's {H} heads are not a multiple of the cache's {KVH} kv heads")
    page = 0
    if table_shape is None:
        if ks[0] != B:
            raise ValueError(f"spattn.decode: the cache holds {ks[0]} sequences, q {B}")
        N = rows
    else:
        if len(table_shape) != 2 or table_shape[0] != B:
            raise ValueError(f"spattn.decode: block_table must be [batch, max_pages] = [{B}, ...]; got "
                             f"{tuple(table_shape)}")
        page = rows
        if page < 16 or page > 256 or page & (page - 1):
            raise ValueError(f"spattn.decode: page size {page} (the pages' token dimension) must be a power of "
                             "two in 16..256")
        N = table_shape[1] * page
    if T < 1 or T > N:
        raise ValueError(f"spattn.decode: {T} new tokens for a cache of {N}: expected 1..{N}")
    return B, T, N, H, KVH, D, page
