#!/usr/bin/env python3
"""The spattn package without a GPU (CI): imports, specs and plans, their
info against DESIGN.md's check values and an independent band formula,
errors with the library's messages, the CPU reference through the library
against a NumPy float64 attention at odd shapes (odd N, GQA, rows with no
key), layouts by strides, tune() through the library's fake GPU, and, where
PyTorch is installed, the torch op on CPU tensors.

    python3 python/tests/test_cpu.py       (or python3 -m unittest python/tests/test_cpu.py)

Needs numpy and build/libspattn.so (make).  Run as a script it ends with
"N passed, N failed, N skipped" (tests/run.sh adds it to make test's count).
"""
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)
import spattn  # noqa: E402
from _runner import main  # noqa: E402
from spattn.reference import from_bf16, to_bf16  # noqa: E402

try:
    import torch
except ImportError:
    torch = None
NO_TORCH = "PyTorch is not installed"


# ---- an independent float64 attention (DESIGN.md sections 1 and 4) --------------------

def band_mask(pattern, H, N, band_basis=0, window=0, intervals=None):
    """[H, N, N] allowed (i, j), from DESIGN.md section 1's table, per element
    (not through spattn.head_intervals, which the tests check separately)."""
    i = np.arange(N)[:, None]
    d = i - np.arange(N)[None, :]
    L = band_basis or N
    base, extra = L // H, L % H
    m = np.zeros((H, N, N), dtype=bool)
    for h in range(H):
        w = base + (1 if h < extra else 0)
        s = h * base + min(h, extra)
        if pattern == "custom":
            ivs = intervals[h]
        else:
            ivs = {"dense": [(0, N)], "local": [(0, w + 1)], "spattn": [(0, w + 1), (max(s, w + 1), s + w)],
                   "exclusive": [(s, s + w)], "gapped": [(s, s + w // 2)], "window": [(0, window)]}[pattern]
        for lo, hi in ivs:
            m[h] |= (d >= lo) & (d < hi)
    return m & (d >= 0)


def np_attention(q, k, v, do, mask, scale):
    """float64 forward and backward on [B, N, H, D] arrays; mask [H, N, N].
    Rows with no key: O = 0, LSE = -inf, no gradient."""
    B, N, H, D = q.shape
    G = H // k.shape[2]
    kk, vv = np.repeat(k, G, axis=2), np.repeat(v, G, axis=2)
    s = np.einsum("bihd,bjhd->bhij", q, kk) * scale
    s = np.where(mask[None], s, -np.inf)
    mx = s.max(-1, keepdims=True)
    has = np.isfinite(mx)
    e = np.where(mask[None], np.exp(s - np.where(has, mx, 0)), 0.0)
    den = e.sum(-1, keepdims=True)
    p = np.where(has, e / np.where(has, den, 1), 0.0)
    o = np.einsum("bhij,bjhd->bihd", p, vv)
    lse = np.where(has[..., 0], (mx + np.log(np.where(has, den, 1)))[..., 0], -np.inf)
    dp = np.einsum("bihd,bjhd->bhij", do, vv)
    delta = np.einsum("bihd,bihd->bhi", do, o)[..., None]
    ds = p * (dp - delta)
    dq = np.einsum("bhij,bjhd->bihd", ds, kk) * scale
    dkk = np.einsum("bhij,bihd->bjhd", ds, q) * scale
    dvv = np.einsum("bhij,bihd->bjhd", p, do)
    KVH = k.shape[2]
    dk = dkk.reshape(B, N, KVH, G, D).sum(3)
    dv = dvv.reshape(B, N, KVH, G, D).sum(3)
    return o, lse, dq, dk, dv


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-3 * math.sqrt(b.size))


def to64(x, dtype):
    """16-bit values (float16 array, or uint16 bf16 bits) as float64."""
    return from_bf16(x).astype(np.float64) if dtype == "bf16" else np.asarray(x, np.float64)


def random16(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(np.float32)
    return to_bf16(x) if dtype == "bf16" else x.astype(np.float16)


# ---- tests ----------------------------------------------------------------------------------

class TestImport(unittest.TestCase):
    def test_imports(self):
        self.assertEqual(spattn.API_VERSION, 2)
        for name in ("attention", "SPAttention", "reference_forward", "reference_backward", "tune", "Spec",
                     "SpattnError", "plan_info"):
            self.assertTrue(hasattr(spattn, name), name)

    def test_library_found_in_checkout(self):
        spattn.load_library()
        self.assertTrue(os.path.samefile(spattn.library_path(), os.environ.get("SPATTN_LIB") or
                                         os.path.join(ROOT, "build", "libspattn.so")))

    def test_bad_spattn_lib_is_named(self):
        r = subprocess.run([sys.executable, "-c", "import spattn; spattn.load_library()"], capture_output=True,
                           text=True, env={**os.environ, "SPATTN_LIB": "/nonexistent/libspattn.so",
                                           "PYTHONPATH": os.path.join(ROOT, "python")})
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/libspattn.so", r.stderr)

    @unittest.skipIf(torch is not None, "PyTorch is installed: the torch-less stubs are not in use")
    def test_attention_without_torch_says_so(self):
        with self.assertRaisesRegex(ImportError, "PyTorch"):
            spattn.attention(None, None, None)


class TestPlans(unittest.TestCase):
    def test_design_check_values(self):
        # DESIGN.md section 1: values from an independent implementation
        for pattern, H, N, ratio in (("spattn", 16, 4096, 0.176441), ("exclusive", 16, 4096, 0.062500),
                                     ("spattn", 8, 4096, 0.330429), ("spattn", 16, 16384, 0.176129)):
            info = spattn.plan_info(pattern=pattern, heads=H, head_dim=128, seq_len=N)
            self.assertAlmostEqual(info.work_ratio, ratio, places=6, msg=f"{pattern} H={H} N={N}")
            self.assertEqual(info.forward_flops, 4 * 128 * info.allowed_pairs)
            self.assertEqual(info.forward_config, "cpu-float64")
            # the struct's last fields: the deterministic backward's (ctypes mirrors spattn_plan_info)
            self.assertEqual((info.deterministic_backward_kernel, info.deterministic_backward_config),
                             ("", "cpu-float64"))

    def test_allowed_pairs_match_python_bands(self):
        custom = [[(0, 9)], [(0, 3), (40, 90)], [(500, 800)], [(1, 2), (7, 300)]]
        for pattern, H, N, kw in (("spattn", 12, 1000, {}), ("exclusive", 16, 333, {}), ("gapped", 7, 999, {}),
                                  ("local", 5, 64, {}), ("dense", 3, 1, {}), ("window", 4, 517, {"window": 100}),
                                  ("spattn", 16, 1023, {"band_basis": 8192}), ("exclusive", 8, 4097, {"band_basis": 100}),
                                  ("custom", 4, 777, {"intervals": custom})):
            info = spattn.plan_info(pattern=pattern, heads=H, head_dim=64, seq_len=N, batch=3, **kw)
            mine = sum(spattn.allowed_pairs(spattn.head_intervals(pattern, H, h, N, kw.get("band_basis", 0),
                                                                  kw.get("window", 0), kw.get("intervals")), N)
                       for h in range(H))
            self.assertEqual(info.allowed_pairs, 3 * mine, f"{pattern} H={H} N={N} {kw}")
            mask = band_mask(pattern, H, N, kw.get("band_basis", 0), kw.get("window", 0), kw.get("intervals"))
            self.assertEqual(info.allowed_pairs, 3 * int(mask.sum()), f"{pattern} H={H} N={N} {kw}: per element")

    def test_spec_file_yaml_params(self):
        f = spattn.plan_info(os.path.join(ROOT, "configs", "olmoe-1b-7b.yaml"), batch=2, seq_len=4096)
        self.assertEqual((f.heads, f.kv_heads, f.head_dim, f.dtype, f.batch), (16, 16, 128, "bf16", 2))
        self.assertAlmostEqual(f.work_ratio, 0.176441, places=6)
        text = open(os.path.join(ROOT, "configs", "gqa-32q-8kv.yaml")).read()
        y = spattn.plan_info(text, seq_len=16384)
        self.assertEqual((y.heads, y.kv_heads), (32, 8))
        s = spattn.Spec.from_file(os.path.join(ROOT, "configs", "custom-4h.yaml"))
        c = spattn.plan_info(s, seq_len=2048)
        self.assertEqual((c.heads, c.head_dim, c.dtype), (4, 64, "fp16"))
        p = spattn.plan_info(spattn.Spec.from_params(intervals=[[(0, 65)], [(0, 65), (256, 512)],
                                                                [(0, 65), (512, 1024)], [(0, 65), (1024, 2048)]]),
                             heads=4, head_dim=64, dtype="fp16", seq_len=2048)
        self.assertEqual(p.allowed_pairs, c.allowed_pairs)   # the same bands, as a file and as parameters

    def test_layers(self):
        path = os.path.join(ROOT, "configs", "hybrid-layers.yaml")
        ratio = lambda layer: spattn.plan_info(path, layer=layer, seq_len=4096).work_ratio  # noqa: E731
        self.assertEqual(ratio(1), 1.0)                                   # dense
        self.assertAlmostEqual(ratio(2), 0.176441, places=6)               # the default, spattn
        self.assertAlmostEqual(ratio(-1), 0.176441, places=6)
        local = sum(spattn.allowed_pairs(spattn.head_intervals("local", 16, h, 4096), 4096) for h in range(16))
        self.assertAlmostEqual(ratio(3), local / (16 * 4096 * 4097 / 2), places=12)
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "layer_index 99"):
            spattn.plan_info(path, layer=99)

    def test_spec_key_round_trip(self):
        for s in (spattn.Spec.from_file("configs/olmoe-1b-7b.yaml", layer=3), spattn.Spec.from_yaml("heads: 4\n"),
                  spattn.Spec.from_params("exclusive", band_basis=8192, scale=0.1),
                  spattn.Spec.from_params(intervals=[(0, 5), (9, 12)], heads=3, head_dim=64, dtype="fp16"),
                  spattn.Spec.from_params("window", window=77)):
            self.assertEqual(spattn.Spec.from_key(s.key).key, s.key, repr(s))
            self.assertEqual(spattn.Spec.from_key(s.key), s)

    def test_spec_to_yaml_plans_the_same(self):
        s = spattn.Spec.from_params(intervals=[[(0, 9)], [(3, 40), (50, 70)]], scale=0.2)
        a = spattn.plan_info(s, heads=2, head_dim=32, seq_len=100)
        b = spattn.plan_info(s.to_yaml(heads=2, head_dim=32), seq_len=100)
        self.assertEqual(a.allowed_pairs, b.allowed_pairs)


class TestErrors(unittest.TestCase):
    def test_yaml_error_names_line_and_key(self):
        with self.assertRaises(spattn.SpattnError) as e:
            spattn.plan_info(spattn.Spec.from_yaml("heads: 4\nhead_dims: 64\n", name="mine.yaml"))
        self.assertEqual(e.exception.status, 2)
        self.assertIsInstance(e.exception, ValueError)
        self.assertIn("mine.yaml:2:1", str(e.exception))
        self.assertIn("head_dims", str(e.exception))

    def test_library_messages(self):
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "kv_heads"):
            spattn.plan_info(heads=12, kv_heads=5, head_dim=64, seq_len=100)
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "seq_len"):
            spattn.plan_info(heads=4, head_dim=64, seq_len=0)
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "nonexistent"):
            spattn.plan_info("/nonexistent/x.yaml")
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "head_dim"):
            spattn.plan_info(heads=4, head_dim=48, seq_len=100)
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "sideways"):
            spattn.plan_info(pattern="sideways", heads=4, head_dim=64)
        with self.assertRaisesRegex(spattn.SpattnError, "device -7"):
            spattn.Context(-7)

    def test_python_side_errors(self):
        with self.assertRaisesRegex(ValueError, "pattern 'custom' needs intervals"):
            spattn.Spec.from_params("custom")
        with self.assertRaisesRegex(ValueError, "expected one of"):
            spattn.Spec.from_params("sideways")
        with self.assertRaisesRegex(ValueError, "either spec= or the pattern"):
            spattn.plan_info("configs/olmoe-1b-7b.yaml", pattern="dense")
        with self.assertRaisesRegex(TypeError, "spec= takes"):
            spattn.plan_info(42)

    def test_gpu_context_without_gpu(self):
        try:
            spattn.Context(0).close()
        except spattn.SpattnGPUError as e:
            self.assertEqual(e.status, 3)
            self.assertTrue(str(e).strip())


CASES = [   # (B, N, H, KVH, D, dtype, pattern, layout, extra)
    (2, 97, 6, 2, 32, "fp16", "exclusive", "bnhd", {}),
    (1, 53, 4, 1, 64, "bf16", "spattn", "bhnd", {}),
    (3, 65, 4, 4, 32, "fp16", "gapped", "bhnd", {}),
    (1, 1, 4, 2, 32, "bf16", "dense", "bnhd", {}),
    (2, 77, 4, 2, 32, "fp16", "custom", "bhnd", {"intervals": [[(0, 9)], [(0, 3), (40, 90)], [(30, 50)], [(1, 2), (7, 30)]]}),
    (1, 91, 3, 1, 32, "bf16", "window", "bnhd", {"window": 10}),
    (2, 45, 8, 2, 32, "fp16", "exclusive", "bhnd", {"band_basis": 200, "scale": 0.3}),
]


class TestReference(unittest.TestCase):
    """The library's CPU path against np_attention, from the same 16-bit inputs."""

    def run_case(self, B, N, H, KVH, D, dt, pattern, layout, extra, seed=0):
        rng = np.random.default_rng(seed)
        shape = (lambda h: (B, h, N, D)) if layout == "bhnd" else (lambda h: (B, N, h, D))
        q, k, v, do = (random16(rng, shape(h), dt) for h in (H, KVH, KVH, H))
        kw = dict(pattern=pattern, layout=layout, **extra)
        if dt == "bf16":
            kw["dtype"] = "bf16"
        o, lse = spattn.reference_forward(q, k, v, **kw)
        dq, dk, dv = spattn.reference_backward(q, k, v, o, lse, do, **kw)
        bnhd = (lambda x: x.transpose(0, 2, 1, 3)) if layout == "bhnd" else (lambda x: x)
        mask = band_mask(pattern, H, N, extra.get("band_basis", 0), extra.get("window", 0), extra.get("intervals"))
        scale = extra.get("scale") or 1 / math.sqrt(D)
        ro, rlse, rdq, rdk, rdv = np_attention(*(bnhd(to64(x, dt)) for x in (q, k, v, do)), mask, scale)
        bound = 1e-2 if dt == "bf16" else 2e-3
        what = f"B={B} N={N} H={H} KVH={KVH} D={D} {dt} {pattern} {layout} {extra}"
        for name, ours, ref in (("O", bnhd(to64(o, dt)), ro), ("dQ", bnhd(to64(dq, dt)), rdq),
                                ("dK", bnhd(to64(dk, dt)), rdk), ("dV", bnhd(to64(dv, dt)), rdv)):
            self.assertLessEqual(rel(ours, ref), bound, f"{name}: {what}")
        finite = np.isfinite(rlse)
        np.testing.assert_array_equal(np.isfinite(lse), finite, err_msg=f"LSE -inf rows: {what}")
        self.assertTrue(np.all(lse[~finite] == -np.inf), f"LSE of empty rows is -inf: {what}")
        np.testing.assert_allclose(lse[finite], rlse[finite], rtol=1e-5, atol=1e-5, err_msg=what)
        empty = ~mask.any(-1)                     # [H, N] rows with no key
        if empty.any():
            e = empty.T[None].repeat(B, 0)        # [B, N, H]
            self.assertTrue(np.all(bnhd(to64(o, dt))[e] == 0), f"O = 0 on rows with no key: {what}")
            self.assertTrue(np.all(bnhd(to64(dq, dt))[e] == 0), f"dQ = 0 on rows with no key: {what}")
        return empty.sum()

    def test_some_case_has_rows_with_no_key(self):
        masks = (band_mask(c[6], c[2], c[1], c[8].get("band_basis", 0), c[8].get("window", 0), c[8].get("intervals"))
                 for c in CASES)
        self.assertTrue(any((~m.any(-1)).any() for m in masks))

    def test_layouts_agree_and_strided_views(self):
        rng = np.random.default_rng(3)
        B, N, H, KVH, D = 2, 61, 4, 2, 32
        q, k, v = (random16(rng, (B, N, h, D), "fp16") for h in (H, KVH, KVH))
        o1, l1 = spattn.reference_forward(q, k, v, pattern="spattn", layout="bnhd")
        o2, l2 = spattn.reference_forward(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)), pattern="spattn")
        np.testing.assert_array_equal(o1, o2.transpose(0, 2, 1, 3))
        np.testing.assert_array_equal(l1, l2)
        # q, k, v as strided views of one fused [B, N, H + 2 KVH, D] array (no copies)
        fused = np.concatenate([q, k, v], axis=2)
        o3, _ = spattn.reference_forward(fused[:, :, :H], fused[:, :, H:H + KVH], fused[:, :, H + KVH:],
                                         pattern="spattn", layout="bnhd")
        np.testing.assert_array_equal(o1, o3)

    def test_float32_inputs_round(self):
        rng = np.random.default_rng(4)
        q, k, v = (rng.standard_normal((1, 2, 33, 32)).astype(np.float32) for _ in range(3))
        o, _ = spattn.reference_forward(q, k, v, pattern="local", dtype="bf16")
        self.assertEqual(o.dtype, np.float32)
        o16, _ = spattn.reference_forward(*(to_bf16(x) for x in (q, k, v)), pattern="local", dtype="bf16")
        np.testing.assert_array_equal(o, from_bf16(o16))

    def test_bf16_conversion(self):
        x = np.array([1.0, -2.5, 3.14159, 1e-3, 65504.0, np.inf, 0.0], dtype=np.float32)
        np.testing.assert_allclose(from_bf16(to_bf16(x)), x, rtol=2 ** -8)
        self.assertEqual(to_bf16(np.array([1.00390625], np.float32))[0], 0x3F80)   # a tie rounds to even

    def test_input_errors(self):
        q = np.zeros((1, 4, 16, 32), np.float16)
        k = np.zeros((1, 2, 16, 32), np.float16)
        with self.assertRaisesRegex(ValueError, "differ in batch, sequence length or head_dim"):
            spattn.reference_forward(q, k[:, :, :8], k[:, :, :8])
        with self.assertRaisesRegex(ValueError, "must divide"):
            spattn.reference_forward(q, k[:, :1].repeat(3, 1), k[:, :1].repeat(3, 1))
        with self.assertRaisesRegex(ValueError, "v has shape"):
            spattn.reference_forward(q, k, q)
        with self.assertRaisesRegex(ValueError, "layout"):
            spattn.reference_forward(q, k, k, layout="nhbd")
        with self.assertRaisesRegex(ValueError, "has 3 dimensions; expected 4"):
            spattn.reference_forward(q[0], k, k)
        with self.assertRaisesRegex(ValueError, "dtype"):
            spattn.reference_forward(q.astype(np.float32), k, k)
        with self.assertRaisesRegex(ValueError, "bit patterns"):
            spattn.reference_forward(q.view(np.uint16), k.view(np.uint16), k.view(np.uint16))
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "spec .* has heads=16"):
            spattn.reference_forward(q, k, k, spec=os.path.join(ROOT, "configs", "olmoe-1b-7b.yaml"))
        o, lse = spattn.reference_forward(q, k, k)
        with self.assertRaisesRegex(ValueError, "lse has shape"):
            spattn.reference_backward(q, k, k, o, lse[:, :2], o)


for _i, _c in enumerate(CASES):   # one test per case, named after it
    setattr(TestReference, f"test_case{_i}_{_c[6]}_{_c[5]}_{_c[7]}_N{_c[1]}_H{_c[2]}kv{_c[3]}",
            lambda self, c=_c: self.run_case(*c))


class TestTune(unittest.TestCase):
    def test_tune_through_the_library_fake_gpu(self):
        with tempfile.TemporaryDirectory() as t:
            db = os.path.join(t, "tune.db")
            env = {"SPATTN_TUNE_FAKE": "1", "SPATTN_CACHE_DIR": t}
            spec = spattn.Spec.from_params("exclusive", heads=4, head_dim=64, dtype="fp16")
            rows = spattn.tune(spec, seq_lens=[1000], batches=[2], db=db, env=env)
            # "all": the forward, and the backward in both modes (the deterministic one its own rows)
            self.assertEqual([r["kind"] for r in rows], ["fwd", "bwd", "bwd-det"])
            self.assertTrue(all(r["batch"] == 2 and r["heads"] == 4 and r["tile"] for r in rows))
            self.assertTrue(all(r["gpu_name"] == "spattn fake GPU" and r["seq_bucket"] == 1024 for r in rows))
            self.assertTrue(os.path.exists(db))
            self.assertNotIn("SPATTN_TUNE_FAKE", os.environ)   # env= is for the call only
            again = spattn.tune(os.path.join(ROOT, "configs", "custom-4h.yaml"), seq_lens=[512], db=db, env=env,
                                kind="fwd")
            self.assertEqual([r["kind"] for r in again], ["fwd"])
            # up to date: nothing tuned, nothing returned; force re-tunes
            self.assertEqual(spattn.tune(spec, seq_lens=[1000], batches=[2], db=db, env=env), [])
            self.assertEqual(len(spattn.tune(spec, seq_lens=[1000], batches=[2], db=db, env=env, force=True)), 3)
            det = spattn.tune(spec, seq_lens=[1000], batches=[2], db=db, env=env, force=True, kind="bwd-det")
            self.assertEqual([r["kind"] for r in det], ["bwd-det"])
            with self.assertRaisesRegex(ValueError, "bwd-det"):
                spattn.tune(spec, db=db, env=env, kind="det")
            with self.assertRaisesRegex(spattn.SpattnInvalidError, "head_dims"):
                spattn.tune("heads: 4\nhead_dims: 64\n", db=db, env=env)
            with self.assertRaises(spattn.SpattnInvalidError):
                spattn.tune(spec, db=db, env=env, budget=0)

    def test_tune_decode_through_the_library_fake_gpu(self):
        with tempfile.TemporaryDirectory() as t:
            db = os.path.join(t, "tune.db")
            env = {"SPATTN_TUNE_FAKE": "1", "SPATTN_CACHE_DIR": t}
            spec = spattn.Spec.from_params("spattn", heads=8, kv_heads=2, head_dim=64, dtype="bf16")
            rows = spattn.tune(spec, seq_lens=[4096], batches=[4], decode=True, new_tokens=[1, 2], db=db, env=env)
            self.assertEqual([(r["kind"], r["new_tokens"], r["batch"], r["seq_bucket"]) for r in rows],
                             [("dec", 1, 4, 4096), ("dec", 2, 4, 4096)])
            for r in rows:   # a decode tile ends in its splits
                self.assertRegex(r["tile"], r"^16x[0-9]+:w[0-9]:s[0-9]:k[0-9]+$")
            # kind="dec" is the same thing: up to date now
            self.assertEqual(spattn.tune(spec, seq_lens=[4096], batches=[4], kind="dec", new_tokens=[1, 2], db=db,
                                         env=env), [])
            with self.assertRaisesRegex(ValueError, "decode=True"):
                spattn.tune(spec, decode=True, kind="fwd", db=db, env=env)
            with self.assertRaisesRegex(spattn.SpattnInvalidError, "exceeds"):
                spattn.tune(spec, seq_lens=[2], decode=True, new_tokens=[4], db=db, env=env)

    def test_tune_without_a_gpu_is_a_gpu_error(self):
        if os.environ.get("SPATTN_TUNE_FAKE", "") not in ("", "0"):
            self.skipTest("SPATTN_TUNE_FAKE is set")
        with tempfile.TemporaryDirectory() as t:
            try:
                spattn.Context(0).close()
                self.skipTest("a GPU is present")
            except spattn.SpattnGPUError:
                pass
            with self.assertRaises(spattn.SpattnGPUError):
                spattn.tune(spattn.Spec.from_params("exclusive", heads=4, head_dim=64), seq_lens=[64],
                            db=os.path.join(t, "tune.db"))

    def test_find_cli(self):
        try:
            cli = spattn.find_cli()
        except FileNotFoundError as e:
            self.skipTest(str(e))
        self.assertTrue(os.path.basename(cli).startswith("spattn"))


class TestDecode(unittest.TestCase):
    """Decoding from a KV cache through the library's CPU reference: the last
    T rows of the forward, bitwise; the bands at each sequence's length; a
    paged cache; NumPy against an independent float64 attention; errors."""

    def setUp(self):
        self.rng = np.random.default_rng(5)

    def test_equals_last_rows_of_forward(self):
        for pattern, H, KVH, N, T, basis in (("spattn", 8, 2, 70, 1, 0), ("spattn", 8, 2, 70, 4, 0),
                                            ("exclusive", 4, 4, 33, 5, 0), ("spattn", 4, 1, 90, 3, 40)):
            q, k, v = (random16(self.rng, (2, N, h, 32), "bf16") for h in (H, KVH, KVH))
            o, lse = spattn.reference_forward(q, k, v, pattern=pattern, band_basis=basis, layout="bnhd", dtype="bf16")
            od, ld = spattn.reference_decode(q[:, N - T:], k, v, pattern=pattern, band_basis=basis, dtype="bf16")
            self.assertTrue(np.array_equal(o[:, N - T:], od), (pattern, T, basis))
            self.assertTrue(np.array_equal(lse[:, :, N - T:], ld), (pattern, T, basis))

    def test_kv_lens_bands_follow_each_sequence(self):
        H, KVH, N, T, D = 8, 4, 64, 2, 32
        q = random16(self.rng, (3, T, H, D), "fp16")
        k, v = (random16(self.rng, (3, N, KVH, D), "fp16") for _ in range(2))
        lens = [64, 29, 1]
        od, ld = spattn.reference_decode(q, k, v, pattern="spattn", kv_lens=lens)
        for b, L in enumerate(lens):
            # the numpy attention over the sequence's own L tokens, with the bands at L
            qf = np.zeros((1, L, H, D))
            for t in range(T):
                if L - T + t >= 0:
                    qf[0, L - T + t] = q[b, t]
            mask = band_mask("spattn", H, L)
            o, lse, *_ = np_attention(qf, to64(k[b:b + 1, :L], "fp16"), to64(v[b:b + 1, :L], "fp16"),
                                      np.zeros((1, L, H, D)), mask, 1 / math.sqrt(D))
            for t in range(T):
                i = L - T + t
                if i < 0:
                    self.assertTrue(np.all(od[b, t] == 0) and np.all(np.isneginf(ld[b, :, t])))
                else:
                    self.assertLess(rel(od[b, t].astype(np.float64), o[0, i]), 2e-3)
                    fin = np.isfinite(lse[0, :, i])
                    self.assertTrue(np.array_equal(fin, np.isfinite(ld[b, :, t])))
                    self.assertLess(np.max(np.abs(ld[b, fin, t] - lse[0, fin, i])), 1e-4)

    def test_paged_equals_contiguous(self):
        B, N, KVH, H, D, P, T = 3, 100, 2, 4, 32, 16, 2
        q = random16(self.rng, (B, T, H, D), "bf16")
        k, v = (random16(self.rng, (B, N, KVH, D), "bf16") for _ in range(2))
        maxp = (N + P - 1) // P
        perm = self.rng.permutation(B * maxp + 3).astype(np.int32)
        table = perm[:B * maxp].reshape(B, maxp)
        kp = np.zeros((B * maxp + 3, P, KVH, D), np.uint16)
        vp = np.zeros_like(kp)
        for b in range(B):
            for pg in range(maxp):
                n = min(P, N - pg * P)
                kp[table[b, pg], :n] = k[b, pg * P:pg * P + n]
                vp[table[b, pg], :n] = v[b, pg * P:pg * P + n]
        # the paged cache holds max_pages * P >= N tokens: compare at N' = 112 with lengths <= N
        lens = [100, 50, 7]
        k2 = np.zeros((B, maxp * P, KVH, D), np.uint16)
        v2 = np.zeros_like(k2)
        k2[:, :N], v2[:, :N] = k, v
        a = spattn.reference_decode(q, k2, v2, pattern="spattn", kv_lens=lens, dtype="bf16")
        b = spattn.reference_decode(q, kp, vp, pattern="spattn", kv_lens=lens, block_table=table, dtype="bf16")
        self.assertTrue(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))

    def test_decode_info(self):
        i = spattn.decode_info(os.path.join(ROOT, "configs", "olmoe-1b-7b.yaml"), batch=64, kv_len=32768)
        self.assertEqual(i.dense_bytes, 64 * 32768 * 16 * 128 * 4)
        self.assertTrue(0.1 < i.bytes / i.dense_bytes < 0.15, i)
        self.assertEqual((i.splits, i.kernel, i.config, i.config_source), (1, "", "", ""))   # CPU: no launch
        d = spattn.decode_info(pattern="dense", heads=4, head_dim=64, kv_len=1000, batch=2)
        self.assertEqual(d.bytes, d.dense_bytes)

    def test_errors(self):
        q = random16(self.rng, (1, 2, 4, 32), "fp16")
        k = random16(self.rng, (1, 50, 2, 32), "fp16")
        with self.assertRaisesRegex(ValueError, "new tokens"):
            spattn.reference_decode(random16(self.rng, (1, 60, 4, 32), "fp16"), k, k, pattern="spattn")
        with self.assertRaisesRegex(ValueError, "kv_lens"):
            spattn.reference_decode(q, k, k, pattern="spattn", kv_lens=[1, 2])
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "kv_lens\\[0\\] = 51"):
            spattn.reference_decode(q, k, k, pattern="spattn", kv_lens=[51])
        with self.assertRaisesRegex(ValueError, "power of two"):
            spattn.reference_decode(q, random16(self.rng, (4, 24, 2, 32), "fp16"), random16(self.rng, (4, 24, 2, 32), "fp16"),
                                    pattern="spattn", block_table=np.zeros((1, 3), np.int32))
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "block_table\\[0\\]\\[1\\] = 9"):
            spattn.reference_decode(q, random16(self.rng, (4, 16, 2, 32), "fp16"), random16(self.rng, (4, 16, 2, 32), "fp16"),
                                    pattern="spattn", block_table=np.array([[0, 9, 1]], np.int32))


@unittest.skipIf(torch is None, NO_TORCH)
class TestTorchCPU(unittest.TestCase):
    """The torch op on CPU tensors runs the library's CPU reference: the
    custom op, its fake and its autograd formula, without a GPU."""

    def test_forward_backward_match_reference(self):
        torch.manual_seed(0)
        B, H, KVH, N, D = 2, 4, 2, 37, 32
        q = torch.randn(B, H, N, D, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(B, KVH, N, D, dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(B, KVH, N, D, dtype=torch.bfloat16, requires_grad=True)
        o, lse = spattn.attention(q, k, v, pattern="exclusive", return_lse=True)
        ro, rlse = spattn.reference_forward(q.detach(), k.detach(), v.detach(), pattern="exclusive")
        self.assertTrue(torch.equal(o.detach(), ro) and torch.equal(lse, rlse))
        do = torch.randn_like(o)
        dq, dk, dv = torch.autograd.grad(o, (q, k, v), do)
        r = spattn.reference_backward(q.detach(), k.detach(), v.detach(), ro, rlse, do, pattern="exclusive")
        for a, b in zip((dq, dk, dv), r):
            self.assertTrue(torch.equal(a, b))

    def test_custom_op_path_matches_direct_path(self):
        from unittest import mock
        q, k, v = (torch.randn(1, 2, 23, 32, dtype=torch.float16, requires_grad=True) for _ in range(3))
        res = []
        for direct in (True, False):
            with mock.patch.object(spattn._torch, "_DIRECT", direct):
                o = spattn.attention(q, k, v, pattern="exclusive")
                res.append((o,) + torch.autograd.grad(o, (q, k, v), torch.ones_like(o)))
        for a, b in zip(*res):
            self.assertTrue(torch.equal(a, b))

    def test_opcheck(self):
        q = torch.randn(1, 2, 19, 32, dtype=torch.float16, requires_grad=True)
        k = torch.randn(1, 1, 19, 32, dtype=torch.float16, requires_grad=True)
        key = spattn.Spec.from_params("spattn").key
        torch.library.opcheck(spattn.attention_fwd, (q, k, k.detach().clone().requires_grad_(), key, 1, False),
                              test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))

    def test_errors(self):
        q = torch.randn(1, 4, 16, 32, dtype=torch.float16)
        with self.assertRaisesRegex(TypeError, "float32"):
            spattn.attention(q.float(), q, q)
        with self.assertRaisesRegex(TypeError, "dtypes differ"):
            spattn.attention(q, q.bfloat16(), q)
        with self.assertRaisesRegex(ValueError, "must divide"):
            spattn.attention(q, q[:, :3], q[:, :3])
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "spec .* has heads=16"):
            spattn.attention(q, q, q, spec=os.path.join(ROOT, "configs", "olmoe-1b-7b.yaml"))

    def test_decode_matches_reference(self):
        q = torch.randn(2, 3, 4, 32, dtype=torch.bfloat16)
        k = torch.randn(2, 40, 2, 32, dtype=torch.bfloat16)
        v = torch.randn(2, 40, 2, 32, dtype=torch.bfloat16)
        o, lse = spattn.decode(q, k, v, pattern="spattn", kv_lens=[40, 9], return_lse=True)
        ro, rl = spattn.reference_decode(q, k, v, pattern="spattn", kv_lens=[40, 9])
        self.assertTrue(torch.equal(o, ro) and torch.equal(lse, rl))

    def test_module(self):
        m = spattn.SPAttention(128, heads=4, kv_heads=2, pattern="exclusive", dtype=torch.bfloat16)   # head_dim 32
        x = torch.randn(2, 21, 128, dtype=torch.bfloat16, requires_grad=True)
        y = m(x)
        y.float().square().sum().backward()
        self.assertEqual(y.shape, x.shape)
        self.assertTrue(torch.isfinite(x.grad).all())


class TestPacked(unittest.TestCase):
    """Packed sequences (issue 18): the reference on [total, H, D] equals each
    sequence run alone, bit for bit, forward and backward (an empty and a
    one-token sequence, GQA, a fixed band basis)."""

    def check(self, lens, **pattern):
        rng = np.random.default_rng(3)
        T, H, KVH, D = sum(lens), 4, 2, 32
        q, do = (random16(rng, (T, H, D), "fp16") for _ in range(2))
        k, v = (random16(rng, (T, KVH, D), "fp16") for _ in range(2))
        o, lse = spattn.reference_forward(q, k, v, seq_lens=lens, **pattern)
        self.assertEqual(o.shape, (T, H, D))
        self.assertEqual(lse.shape, (H, T))
        dq, dk, dv = spattn.reference_backward(q, k, v, o, lse, do, seq_lens=lens, **pattern)
        r = 0
        for n in lens:
            if n:
                s = slice(r, r + n)
                o1, l1 = spattn.reference_forward(q[None, s], k[None, s], v[None, s], layout="bnhd", **pattern)
                g1 = spattn.reference_backward(q[None, s], k[None, s], v[None, s], o1, l1, do[None, s],
                                               layout="bnhd", **pattern)
                self.assertEqual(o[s].tobytes(), o1[0].tobytes(), f"O of length {n}")
                self.assertEqual(lse[:, s].tobytes(), l1[0].tobytes(), f"LSE of length {n}")
                for a, b in zip((dq, dk, dv), g1):
                    self.assertEqual(a[s].tobytes(), b[0].tobytes(), f"gradients of length {n}")
            r += n

    def test_packed_equals_alone(self):
        self.check([100, 0, 1, 37, 64])

    def test_packed_fixed_basis(self):
        self.check([50, 130, 1], pattern="spattn", band_basis=96)

    def test_packed_exclusive_rows_without_key(self):
        self.check([33, 90], pattern="exclusive")

    def test_packed_errors(self):
        x = np.zeros((10, 4, 32), np.float16)
        with self.assertRaisesRegex(ValueError, "seq_lens"):
            spattn.reference_forward(x, x, x, seq_lens=[0, 0])
        with self.assertRaisesRegex(ValueError, "packed"):
            spattn.reference_forward(x[None], x[None], x[None], seq_lens=[10])
        with self.assertRaisesRegex(ValueError, "10 rows"):
            spattn.reference_forward(x, x, x, seq_lens=[4, 5])

    @unittest.skipIf(torch is None, NO_TORCH)
    def test_packed_op_on_cpu_tensors(self):
        lens = [20, 1, 9]
        q, k, v = (torch.randn(30, 2, 32, dtype=torch.float16, requires_grad=True) for _ in range(3))
        o, lse = spattn.attention(q, k, v, seq_lens=lens, return_lse=True)
        self.assertEqual(tuple(o.shape), (30, 2, 32))
        self.assertEqual(tuple(lse.shape), (2, 30))
        o.float().sum().backward()
        r = 0
        for n in lens:
            o1 = spattn.attention(q[None, r:r + n], k[None, r:r + n], v[None, r:r + n], layout="bnhd")
            self.assertTrue(torch.equal(o[r:r + n], o1[0]))
            r += n


if __name__ == "__main__":
    sys.exit(main())
