#!/usr/bin/env python3
"""spattn.attention on the GPU (the GPU host: PyTorch, CUDA, build/ made
here): outputs and gradients against an fp32 PyTorch reference (masked
softmax attention) at odd shapes (odd N, GQA 8q/2kv, rows with no key, both
layouts, bf16 and fp16); torch.compile(fullgraph=True) without a graph break
and without recompiling when N changes; CUDA graph capture and replay;
deterministic backward bitwise stable; errors.  Skips (with the reason)
where there is no torch or no GPU.

    python3 python/tests/test_gpu.py          (python/tests/run_gpu.sh runs it with the overhead bench)

Ends with "N passed, N failed, N skipped"; exit 1 on a failure.
"""
import math
import os
import sys
import tempfile
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)
import spattn  # noqa: E402
from _runner import main  # noqa: E402  (the counting runner)

try:
    import torch
    HAVE_GPU = torch.cuda.is_available()
    WHY = "no CUDA GPU visible to PyTorch"
except ImportError:
    torch, HAVE_GPU, WHY = None, False, "PyTorch is not installed"

OLMOE = os.path.join(ROOT, "configs", "olmoe-1b-7b.yaml")
CUSTOM = [[(0, 9)], [(0, 3), (40, 90)], [(500, 800)], [(1, 2), (7, 300)]]


def reference(q, k, v, do, layout, H, pattern, extra):
    """fp32 masked attention (the SDPA math) and its gradients by autograd, in
    q's layout; also the [H, N] rows that have a key."""
    bhnd = (lambda x: x) if layout == "bhnd" else (lambda x: x.transpose(1, 2))
    qf, kf, vf = (bhnd(t).float().detach().requires_grad_() for t in (q, k, v))
    B, _, N, D = qf.shape
    G = H // kf.shape[1]
    kk, vv = kf.repeat_interleave(G, dim=1), vf.repeat_interleave(G, dim=1)
    scale = extra.get("scale") or 1 / math.sqrt(D)
    s = torch.einsum("bhid,bhjd->bhij", qf, kk) * scale
    i = torch.arange(N, device=q.device)
    dist = i[:, None] - i[None, :]
    mask = torch.zeros(H, N, N, dtype=torch.bool, device=q.device)
    for h in range(H):
        for lo, hi in spattn.head_intervals(pattern, H, h, N, extra.get("band_basis", 0), extra.get("window", 0),
                                            extra.get("intervals")):
            mask[h] |= (dist >= lo) & (dist < hi)
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    o = torch.einsum("bhij,bhjd->bhid", p, vv)
    dq, dk, dv = torch.autograd.grad(o, (qf, kf, vf), bhnd(do).float())
    back = (lambda x: x) if layout == "bhnd" else (lambda x: x.transpose(1, 2))
    return back(o.detach()), lse.detach(), back(dq), back(dk), back(dv), mask.any(-1)


def rel(a, b):
    """Relative L2 error, the reference's norm floored at an RMS of 1e-3."""
    floor = 1e-3 * math.sqrt(b.numel())
    return ((a.float() - b.float()).norm() / max(b.float().norm().item(), floor)).item()


def make(B, N, heads, D, dtype, layout, requires_grad=True):
    shape = (B, heads, N, D) if layout == "bhnd" else (B, N, heads, D)
    return torch.randn(shape, device="cuda", dtype=dtype).requires_grad_(requires_grad)


def make_qkv(B, N, H, KVH, D, dtype, layout, requires_grad=True):
    """q, k, v of one problem (k and v with KVH heads)."""
    return (make(B, N, H, D, dtype, layout, requires_grad), make(B, N, KVH, D, dtype, layout, requires_grad),
            make(B, N, KVH, D, dtype, layout, requires_grad))


CASES = [   # (B, N, H, KVH, D, dtype, pattern, layout, extra)
    (2, 333, 12, 4, 128, "bfloat16", "exclusive", "bnhd", {}),
    (1, 1000, 8, 2, 64, "float16", "gapped", "bhnd", {}),
    (1, 1000, 8, 2, 128, "bfloat16", "exclusive", "bhnd", {}),
    (3, 65, 6, 6, 64, "bfloat16", "spattn", "bhnd", {}),
    (1, 1, 4, 1, 128, "float16", "dense", "bnhd", {}),
    (2, 777, 4, 4, 128, "bfloat16", "custom", "bhnd", {"intervals": CUSTOM}),
    (1, 2049, 16, 4, 128, "bfloat16", "spattn", "bnhd", {}),
    (2, 517, 8, 8, 64, "float16", "window", "bhnd", {"window": 100}),
    (1, 1000, 8, 2, 128, "float16", "spattn", "bnhd", {"band_basis": 4096, "scale": 0.05}),
]


@unittest.skipUnless(HAVE_GPU, WHY)
class TestAgainstReference(unittest.TestCase):
    def run_case(self, B, N, H, KVH, D, dt, pattern, layout, extra):
        torch.manual_seed(N + H)
        dtype = getattr(torch, dt)
        q, k, v = make_qkv(B, N, H, KVH, D, dtype, layout)
        do = make(B, N, H, D, dtype, layout, False)
        o, lse = spattn.attention(q, k, v, pattern=pattern, layout=layout, return_lse=True, **extra)
        dq, dk, dv = torch.autograd.grad(o, (q, k, v), do)
        ro, rlse, rdq, rdk, rdv, has_key = reference(q, k, v, do, layout, H, pattern, extra)
        bound = 1e-2 if dtype == torch.bfloat16 else 2e-3
        what = f"B={B} N={N} H={H} KVH={KVH} D={D} {dt} {pattern} {layout} {extra}"
        self.assertEqual(o.shape, q.shape)
        self.assertEqual(lse.shape, (B, H, N))
        self.assertIsNone(lse.grad_fn)
        for name, a, b in (("O", o, ro), ("dQ", dq, rdq), ("dK", dk, rdk), ("dV", dv, rdv)):
            self.assertFalse(torch.isnan(a).any().item(), f"{name} has NaN: {what}")
            self.assertLessEqual(rel(a, b), bound, f"{name} rel err: {what}")
        fin = torch.isfinite(rlse)
        self.assertTrue(torch.equal(torch.isfinite(lse), fin), f"LSE -inf rows: {what}")
        self.assertTrue(bool((lse[~fin] == float("-inf")).all()), f"LSE of rows with no key is -inf: {what}")
        torch.testing.assert_close(lse[fin], rlse[fin], rtol=1e-3, atol=1e-3, msg=what)
        empty = ~has_key                                   # [H, N]
        if empty.any():
            e = empty[None].expand(B, H, N)
            ob, dqb = (x if layout == "bhnd" else x.transpose(1, 2) for x in (o, dq))
            self.assertTrue(bool((ob[e] == 0).all()), f"O = 0 on rows with no key: {what}")
            self.assertTrue(bool((dqb[e] == 0).all()), f"dQ = 0 on rows with no key: {what}")


@unittest.skipUnless(HAVE_GPU, WHY)
class TestDecode(unittest.TestCase):
    """spattn.decode on the GPU: against the library's float64 reference on
    the CPU (same inputs) within DESIGN.md's bounds; paged == contiguous
    bitwise; the last T rows of spattn.attention; graph capture after a first
    call."""

    def cmp(self, o, lse, ro, rl, dtype, what):
        bound = 1e-2 if dtype == torch.bfloat16 else 2e-3
        self.assertFalse(torch.isnan(o).any().item(), what)
        self.assertLessEqual(rel(o.cpu(), ro), bound, what)
        fin = torch.isfinite(rl)
        self.assertTrue(torch.equal(torch.isfinite(lse.cpu()), fin), what)
        torch.testing.assert_close(lse.cpu()[fin], rl[fin], rtol=1e-3, atol=1e-3, msg=what)
        empty = ~fin
        if empty.any():
            ob = o.cpu().transpose(1, 2)                  # [B, H, T, D]
            self.assertTrue(bool((ob[empty] == 0).all()), f"O = 0 on rows with no key: {what}")

    def test_against_reference(self):
        for B, N, T, H, KVH, D, dt, pattern, lens, extra in (
                (2, 1000, 1, 16, 16, 128, "bfloat16", "spattn", None, {}),
                (3, 777, 4, 32, 8, 128, "bfloat16", "spattn", [777, 100, 2], {}),
                (2, 2049, 2, 8, 2, 64, "float16", "exclusive", [2049, 5], {}),
                (1, 4096, 1, 16, 4, 128, "bfloat16", "spattn", None, {"band_basis": 1024}),
                (4, 300, 3, 6, 6, 64, "float16", "gapped", [300, 1, 0, 150], {}),
                (1, 9000, 1, 4, 1, 128, "bfloat16", "custom", None, {"intervals": CUSTOM})):
            torch.manual_seed(N + T)
            dtype = getattr(torch, dt)
            q = torch.randn(B, T, H, D, device="cuda", dtype=dtype)
            k = torch.randn(B, N, KVH, D, device="cuda", dtype=dtype)
            v = torch.randn(B, N, KVH, D, device="cuda", dtype=dtype)
            o, lse = spattn.decode(q, k, v, pattern=pattern, kv_lens=lens, return_lse=True, **extra)
            ro, rl = spattn.reference_decode(q.cpu(), k.cpu(), v.cpu(), pattern=pattern, kv_lens=lens, **extra)
            self.cmp(o, lse, ro, rl, dtype, f"B={B} N={N} T={T} H={H} KVH={KVH} D={D} {dt} {pattern} {lens} {extra}")

    def test_paged_equals_contiguous_and_bhnd(self):
        B, N, T, H, KVH, D, P = 3, 1000, 2, 16, 4, 128, 64
        q = torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, N, KVH, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        maxp = (N + P - 1) // P
        perm = torch.randperm(B * maxp + 5, device="cuda").to(torch.int32)
        table = perm[:B * maxp].view(B, maxp).contiguous()
        kp = torch.zeros(B * maxp + 5, P, KVH, D, device="cuda", dtype=k.dtype)
        vp = torch.zeros_like(kp)
        kpad = torch.zeros(B, maxp * P, KVH, D, device="cuda", dtype=k.dtype)
        vpad = torch.zeros_like(kpad)
        kpad[:, :N], vpad[:, :N] = k, v
        kp[table.flatten().long()] = kpad.view(B * maxp, P, KVH, D)
        vp[table.flatten().long()] = vpad.view(B * maxp, P, KVH, D)
        lens = torch.tensor([1000, 333, 17], dtype=torch.int32, device="cuda")
        a = spattn.decode(q, kpad, vpad, kv_lens=lens, return_lse=True)
        b = spattn.decode(q, kp, vp, kv_lens=lens, block_table=table, return_lse=True)
        self.assertTrue(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))
        c = spattn.decode(q.transpose(1, 2), kpad.transpose(1, 2), vpad.transpose(1, 2), kv_lens=lens, layout="bhnd",
                          return_lse=True)
        self.assertTrue(torch.equal(a[0], c[0].transpose(1, 2)) and torch.equal(a[1], c[1]))

    def test_last_rows_of_attention(self):
        B, N, T, H, KVH, D = 2, 1500, 4, 16, 4, 128
        q = torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, N, KVH, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        o = spattn.attention(q, k, v, layout="bnhd")
        od = spattn.decode(q[:, N - T:], k, v)
        self.assertLessEqual(rel(od, o[:, N - T:]), 1e-2)

    def test_graph_capture(self):
        B, N, H, D = 4, 2048, 16, 128
        q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn_like(k)
        lens = torch.full((B,), N, dtype=torch.int32, device="cuda")
        eager = spattn.decode(q, k, v, kv_lens=lens)           # loads the kernels
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = spattn.decode(q, k, v, kv_lens=lens)
        lens.fill_(N - 100)
        g.replay()
        torch.cuda.synchronize()
        self.assertTrue(torch.equal(out, spattn.decode(q, k, v, kv_lens=lens)))
        self.assertFalse(torch.equal(out, eager))


for _i, _c in enumerate(CASES):
    setattr(TestAgainstReference, f"test_case{_i}_{_c[6]}_{_c[5]}_{_c[7]}_N{_c[1]}_H{_c[2]}kv{_c[3]}_D{_c[4]}",
            lambda self, c=_c: self.run_case(*c))


@unittest.skipUnless(HAVE_GPU, WHY)
class TestOp(unittest.TestCase):
    def test_spec_file_and_strided_fused_qkv(self):
        # q, k, v as [B, N, H, D] views of one fused projection (no copies), with the OLMoE spec file
        torch.manual_seed(1)
        B, N, H, D = 2, 1000, 16, 128
        qkv = torch.randn(B, N, 3 * H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        q, k, v = qkv.split([H, H, H], dim=2)
        o = spattn.attention(q, k, v, spec=OLMOE, layout="bnhd")
        do = torch.randn_like(o)
        (g,) = torch.autograd.grad(o, (qkv,), do)
        ro, _, rdq, rdk, rdv, _ = reference(q, k, v, do, "bnhd", H, "spattn", {})
        self.assertLessEqual(rel(o, ro), 1e-2)
        for a, b in zip(g.split([H, H, H], dim=2), (rdq, rdk, rdv)):
            self.assertLessEqual(rel(a, b), 1e-2)
        # the same spec as a Spec object and as YAML text give the same output, bitwise
        o2 = spattn.attention(q, k, v, spec=spattn.Spec.from_file(OLMOE), layout="bnhd")
        o3 = spattn.attention(q, k, v, spec=open(OLMOE).read(), layout="bnhd")
        self.assertTrue(torch.equal(o, o2) and torch.equal(o, o3))

    def test_misaligned_input_is_copied_not_wrong(self):
        torch.manual_seed(2)
        big = torch.randn(1, 4, 300, 65, device="cuda", dtype=torch.float16)
        q = big[..., 1:]                         # data pointer 2 bytes off: not 16-byte aligned
        k = v = torch.randn(1, 4, 300, 64, device="cuda", dtype=torch.float16)
        o = spattn.attention(q, k, v, pattern="spattn")
        self.assertTrue(torch.equal(o, spattn.attention(q.contiguous(), k, v, pattern="spattn")))

    def test_current_stream(self):
        torch.manual_seed(3)
        q, k, v = (make(2, 700, 8, 64, torch.bfloat16, "bhnd", False) for _ in range(3))
        ref = spattn.attention(q, k, v, pattern="exclusive")
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            o = spattn.attention(q, k, v, pattern="exclusive")
        torch.cuda.current_stream().wait_stream(s)
        self.assertTrue(torch.equal(o, ref))

    def test_deterministic_backward_bitwise(self):
        torch.manual_seed(4)
        q, k, v = make_qkv(2, 1000, 8, 2, 128, torch.bfloat16, "bhnd")
        do = torch.randn_like(q)
        runs = []
        for _ in range(4):
            o = spattn.attention(q, k, v, pattern="exclusive", deterministic=True)
            runs.append(torch.autograd.grad(o, (q, k, v), do))
        for r in runs[1:]:
            for a, b in zip(r, runs[0]):
                self.assertTrue(torch.equal(a, b), "deterministic backward differs between runs")
        *_, rdq, rdk, rdv, _ = reference(q, k, v, do, "bhnd", 8, "exclusive", {})
        self.assertLessEqual(rel(runs[0][0], rdq), 1e-2)

    def test_deterministic_backward_has_a_config_of_its_own(self):
        # issue 16: a plan picks a backward config per mode.  With no tuned rows, on sm_90 at
        # head_dim 64 the deterministic mode's kernel has 2 stages (two dQ writers), the default
        # mode's 3; at head_dim 128 (and off sm_90) both modes share one kernel.
        sm90 = torch.cuda.get_device_capability() == (9, 0)
        with tempfile.TemporaryDirectory() as t, spattn._lib.Context(0, db=os.path.join(t, "tune.db")) as ctx:
            for d in (64, 128):
                with ctx.plan_params(8, d, 2, 1000, kv_heads=2) as p:
                    i = p.info
                    self.assertEqual((i.backward_config, i.deterministic_backward_config), ("heuristic", "heuristic"))
                    if sm90 and d == 64:
                        self.assertIn("_s3_ws_", i.backward_kernel)
                        self.assertIn("_s2_ws_", i.deterministic_backward_kernel)
                    else:
                        self.assertEqual(i.deterministic_backward_kernel, i.backward_kernel)
        # and that kernel runs: bitwise repeatable, and right
        torch.manual_seed(6)
        q, k, v = make_qkv(2, 1000, 8, 2, 64, torch.bfloat16, "bhnd")
        do = torch.randn_like(q)
        runs = [torch.autograd.grad(spattn.attention(q, k, v, pattern="exclusive", deterministic=True), (q, k, v), do)
                for _ in range(2)]
        for a, b in zip(*runs):
            self.assertTrue(torch.equal(a, b), "the d64 deterministic backward differs between runs")
        *_, rdq, rdk, rdv, _ = reference(q, k, v, do, "bhnd", 8, "exclusive", {})
        for got, want in zip(runs[0], (rdq, rdk, rdv)):
            self.assertLessEqual(rel(got, want), 1e-2)

    def test_packed_sequences_equal_one_by_one(self):
        # issue 18: [total, H, D] with seq_lens against each sequence alone through the op
        lens = [1000, 1, 65, 0, 300]
        T = sum(lens)
        q = torch.randn(T, 16, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k, v = (torch.randn(T, 4, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
        do = torch.randn_like(q)
        o, lse = spattn.attention(q, k, v, seq_lens=lens, return_lse=True, deterministic=True)
        self.assertEqual(tuple(lse.shape), (16, T))
        grads = torch.autograd.grad(o, (q, k, v), do)
        r = 0
        for n in lens:
            if n:
                s = slice(r, r + n)
                qs, ks, vs = (x.detach()[None, s].clone().requires_grad_() for x in (q, k, v))
                o1, l1 = spattn.attention(qs, ks, vs, layout="bnhd", return_lse=True, deterministic=True)
                g1 = torch.autograd.grad(o1, (qs, ks, vs), do[None, s])
                # a plan per length may pick other tiles than the packed plan: close, not bitwise
                # (spattn check --seq-lens compares the same kernel bit for bit)
                self.assertLessEqual(rel(o[s], o1[0]), 1e-2, f"O of length {n}")
                self.assertLessEqual(rel(lse[:, s], l1[0]), 1e-2, f"LSE of length {n}")
                for a, b in zip(grads, g1):
                    self.assertLessEqual(rel(a[s], b[0]), 1e-2, f"gradients of length {n}")
            r += n

    def test_module(self):
        torch.manual_seed(5)
        m = spattn.SPAttention(512, heads=8, kv_heads=2, pattern="exclusive", device="cuda", dtype=torch.bfloat16)
        x = torch.randn(2, 333, 512, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        y = m(x)
        # the same block with the fp32 reference attention
        H, KVH, D = 8, 2, 64
        q, k, v = m.qkv(x).view(2, 333, H + 2 * KVH, D).split([H, KVH, KVH], dim=2)
        ro = reference(q, k, v, torch.zeros_like(q), "bnhd", H, "exclusive", {})[0]
        ry = m.out(ro.to(torch.bfloat16).reshape(2, 333, H * D))
        self.assertLessEqual(rel(y, ry), 1e-2)
        y.float().square().mean().backward()
        self.assertTrue(torch.isfinite(x.grad).all() and torch.isfinite(m.qkv.weight.grad).all())

    def test_custom_op_path_matches_direct_path(self):
        # eager calls on plain tensors skip the dispatcher (spattn/_torch.py: _direct); the custom ops
        # (what torch.compile and modes see) must give the same bits
        torch.manual_seed(7)
        q, k, v = make_qkv(2, 1000, 8, 2, 128, torch.bfloat16, "bhnd")
        do = torch.randn_like(q)
        res = []
        for direct in (True, False):
            with mock.patch.object(spattn._torch, "_DIRECT", direct):
                o, lse = spattn.attention(q, k, v, pattern="gapped", deterministic=True, return_lse=True)
                res.append((o, lse) + torch.autograd.grad(o, (q, k, v), do))
                with torch.no_grad():
                    res[-1] += (spattn.attention(q, k, v, pattern="gapped"),)
        for a, b in zip(*res):
            self.assertTrue(torch.equal(a, b))

    def test_opcheck(self):
        q, k, v = make_qkv(1, 129, 4, 2, 64, torch.bfloat16, "bhnd")
        torch.library.opcheck(spattn.attention_fwd, (q, k, v, spattn.Spec.from_params("exclusive").key, 1, False))

    def test_errors(self):
        q = make(1, 64, 4, 64, torch.bfloat16, "bhnd", False)
        with self.assertRaisesRegex(TypeError, "float32"):
            spattn.attention(q.float(), q.float(), q.float())
        with self.assertRaisesRegex(ValueError, "different devices"):
            spattn.attention(q, q.cpu(), q)
        with self.assertRaisesRegex(ValueError, "must divide"):
            spattn.attention(q, q[:, :3], q[:, :3])
        with self.assertRaisesRegex(ValueError, "differ in batch, sequence length or head_dim"):
            spattn.attention(q, q[:, :, :32], q[:, :, :32])
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "head_dims"):
            spattn.attention(q, q, q, spec="heads: 4\nhead_dims: 64\n")
        with self.assertRaisesRegex(spattn.SpattnInvalidError, "heads=16"):
            spattn.attention(q, q, q, spec=OLMOE)
        with self.assertRaisesRegex(ValueError, "scale= with a spec file"):
            spattn.attention(q, q, q, spec=OLMOE, scale=0.1)

    def test_no_plan_while_capturing_says_so(self):
        q = make(1, 4321, 4, 64, torch.bfloat16, "bhnd", False)
        with mock.patch.object(torch.cuda, "is_current_stream_capturing", return_value=True):
            with self.assertRaisesRegex(RuntimeError, "before capturing"):
                spattn.attention(q, q, q, pattern="local")
        spattn.prepare(q.shape, pattern="local")
        with mock.patch.object(torch.cuda, "is_current_stream_capturing", return_value=True):
            spattn.attention(q, q, q, pattern="local")     # prepared: no error


@unittest.skipUnless(HAVE_GPU, WHY)
class TestCompile(unittest.TestCase):
    def setUp(self):
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()

    def check_no_breaks(self):
        c = torch._dynamo.utils.counters
        self.assertEqual(dict(c["graph_break"]), {}, "graph breaks")

    def test_fullgraph_no_recompile_when_n_changes(self):
        spec = spattn.Spec.from_file(OLMOE)

        def f(q, k, v):
            return spattn.attention(q, k, v, spec=spec)

        cf = torch.compile(f, fullgraph=True)
        outs = []
        for i, N in enumerate((1000, 1536, 333, 4096)):
            torch.manual_seed(N)
            q, k, v = (make(1, N, 16, 128, torch.bfloat16, "bhnd") for _ in range(3))
            for t in (q, k, v):
                torch._dynamo.mark_dynamic(t, 2)
            if i == 1:
                torch._dynamo.config.error_on_recompile = True
            try:
                o = cf(q, k, v)
            finally:
                torch._dynamo.config.error_on_recompile = False
            do = torch.randn_like(o)
            g = torch.autograd.grad(o, (q, k, v), do)
            eo = f(q, k, v)
            eg = torch.autograd.grad(eo, (q, k, v), do)
            self.assertTrue(torch.equal(o, eo), f"compiled O == eager O at N={N}")
            for a, b in zip(g, eg):
                self.assertLessEqual(rel(a, b), 1e-2)
            outs.append(o)
        self.check_no_breaks()
        self.assertEqual(torch._dynamo.utils.counters["stats"]["unique_graphs"], 1, "one graph for every N")

    def test_fullgraph_pattern_arguments_and_module(self):
        m = spattn.SPAttention(256, heads=4, kv_heads=2, pattern="custom",
                               intervals=[[(0, 9)], [(0, 3), (40, 90)], [(50, 80)], [(1, 2), (7, 30)]],
                               device="cuda", dtype=torch.float16)

        def f(x, q, k, v):
            a = spattn.attention(q, k, v, pattern="exclusive", band_basis=4096, scale=0.1)
            b = spattn.attention(q, k, v, intervals=[[(0, 17)], [(3, 40), (60, 90)]])
            return m(x), a + b

        cf = torch.compile(f, fullgraph=True, dynamic=True)
        for N in (300, 517):
            x = torch.randn(2, N, 256, device="cuda", dtype=torch.float16, requires_grad=True)
            q, k, v = make_qkv(2, N, 2, 1, 64, torch.float16, "bhnd")
            y, ab = cf(x, q, k, v)
            ey, eab = f(x, q, k, v)
            self.assertLessEqual(rel(y, ey), 2e-3)
            self.assertTrue(torch.equal(ab, eab))
            (y.float().sum() + ab.float().sum()).backward()
        self.check_no_breaks()


@unittest.skipUnless(HAVE_GPU, WHY)
class TestCudaGraph(unittest.TestCase):
    def capture(self, deterministic):
        torch.manual_seed(6)
        B, N, H, KVH, D = 2, 1000, 8, 2, 128
        sq, sk, sv = make_qkv(B, N, H, KVH, D, torch.bfloat16, "bnhd")
        sdo = torch.randn_like(sq)
        kw = dict(pattern="exclusive", layout="bnhd", deterministic=deterministic)

        def step():
            o = spattn.attention(sq, sk, sv, **kw)
            return (o,) + torch.autograd.grad(o, (sq, sk, sv), sdo)

        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):                 # warm-up: the plan is made outside the capture
            step()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static = step()
        fresh = [*make_qkv(B, N, H, KVH, D, torch.bfloat16, "bnhd", False), torch.randn_like(sq)]
        with torch.no_grad():
            for t, src in zip((sq, sk, sv, sdo), fresh):
                t.copy_(src)
        g.replay()
        torch.cuda.synchronize()
        eager = step()
        return static, eager, reference(sq, sk, sv, sdo, "bnhd", H, "exclusive", {})

    def test_replay_matches_eager(self):
        static, eager, ref = self.capture(False)
        self.assertTrue(torch.equal(static[0], eager[0]), "O of the replay == O of an eager call")
        for a, b, r in zip(static[1:], eager[1:], ref[2:5]):
            self.assertLessEqual(rel(a, b), 1e-2)
            self.assertLessEqual(rel(a, r), 1e-2)

    def test_replay_deterministic_bitwise(self):
        static, eager, _ = self.capture(True)
        for a, b in zip(static, eager):
            self.assertTrue(torch.equal(a, b))


if __name__ == "__main__":
    sys.exit(main())
