#!/usr/bin/env python3
"""Time spattn against its peers on the same GPU, in one run.

Peers (PyTorch, present on the GPU host):
  flex        torch.compile(flex_attention) with the paper's `spattn` block mask
              (DESIGN.md: local window d <= w_h plus the head's own band)
  cudnn       SDPA dense causal, cuDNN backend
  fa2         SDPA dense causal, FlashAttention-2 backend
spattn itself is timed by `spattn run --json` (CUDA events, median) in this
same run, so every ratio compares numbers taken minutes apart on one GPU.

Usage: python3 bench/peers.py [--pass fwd|fwdbwd|both] [--shapes default|all] [--out FILE]
Prints a markdown table (also written to --out) and exits 1 if spattn's
output disagrees with FlexAttention's on the same inputs (--verify).
"""
import argparse, json, math, os, subprocess, sys, tempfile, time

import torch
import triton.testing
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

SPATTN = os.environ.get("SPATTN", os.path.join(os.path.dirname(__file__), "..", "build", "spattn"))

# (config, B, H, KVH, N, D): the forward issue's shapes (+ N = 32768 for --shapes all)
SHAPES = [
    ("configs/olmoe-1b-7b.yaml", 4, 16, 16, 4096, 128),
    ("configs/olmoe-1b-7b.yaml", 1, 16, 16, 16384, 128),
    ("configs/llama-8h-d64.yaml", 4, 8, 8, 4096, 64),
    ("configs/gqa-32q-8kv.yaml", 1, 32, 8, 16384, 128),
]
EXTRA = [("configs/olmoe-1b-7b.yaml", 1, 16, 16, 32768, 128)]


def spattn_mask_mod(H, N, device):
    """The paper's default pattern: [0, w_h] and [max(s_h, w_h+1), s_h + w_h)."""
    base, extra = N // H, N % H
    w = torch.tensor([base + (1 if h < extra else 0) for h in range(H)], device=device)
    s = torch.tensor([h * base + min(h, extra) for h in range(H)], device=device)

    def mask_mod(b, h, q_idx, kv_idx):
        d = q_idx - kv_idx
        wh, sh = w[h], s[h]
        local = (d >= 0) & (d <= wh)
        band = (d >= torch.maximum(sh, wh + 1)) & (d < sh + wh)
        return local | band
    return mask_mod


def work_ratio(H, N):
    base, extra = N // H, N % H
    pairs = 0
    for h in range(H):
        w = base + (1 if h < extra else 0)
        s = h * base + min(h, extra)
        ivs = sorted([(0, min(w + 1, N)), (max(s, w + 1), min(s + w, N))])
        merged = []
        for a, b in ivs:
            if b <= a:
                continue
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        pairs += sum((b - a) * (2 * N - a - b + 1) // 2 for a, b in merged)
    return pairs / (H * N * (N + 1) / 2)


def bench(fn, ms=400):
    return triton.testing.do_bench(fn, warmup=100, rep=ms, return_mode="median")


def run_spattn(cfg, B, N, pass_, extra=()):
    cmd = [SPATTN, "run", cfg, "--batch", str(B), "--seq-len", str(N), "--device", "gpu",
           "--iters", "50", "--json", "--pass", pass_, *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"spattn failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}", file=sys.stderr)
        return None
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pass", dest="pass_", default="fwd", choices=["fwd", "fwdbwd", "both"])
    ap.add_argument("--shapes", default="default", choices=["default", "all", "extra", "rest"])
    ap.add_argument("--peers", default="flex,cudnn,fa2")
    ap.add_argument("--no-tuned-flex", action="store_true")
    ap.add_argument("--verify", action="store_true", help="compare spattn's O with Flex's on the same inputs")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    peers = a.peers.split(",")
    passes = ["fwd", "fwdbwd"] if a.pass_ == "both" else [a.pass_]
    shapes = {"default": SHAPES, "all": SHAPES + EXTRA, "extra": EXTRA, "rest": SHAPES[3:] + EXTRA}[a.shapes]
    dev = "cuda"
    dt = torch.bfloat16
    # Each shape compiles its own Flex kernels; past dynamo's default limit of 8
    # recompiles, torch.compile silently falls back to eager flex_attention,
    # which materialises the [B, H, N, N] scores (seen: out of memory at the
    # GQA shape when it came fifth).  Raise the limit so every shape is compiled.
    torch._dynamo.config.cache_size_limit = 64
    torch._dynamo.config.accumulated_cache_size_limit = 512
    flex = torch.compile(flex_attention, dynamic=False)
    rows = []
    verify_fail = False
    print(f"# GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}", file=sys.stderr)
    for cfg, B, H, KVH, N, D in shapes:
        ratio = work_ratio(H, N)
        flops_fwd = 4 * D * ratio * H * N * (N + 1) / 2 * B
        q = torch.randn(B, H, N, D, device=dev, dtype=dt)
        k = torch.randn(B, KVH, N, D, device=dev, dtype=dt)
        v = torch.randn(B, KVH, N, D, device=dev, dtype=dt)
        # _compile=True builds the block mask without materialising the dense
        # [H, N, N] mask (which runs out of memory at H = 32, N = 16384).
        bm = create_block_mask(spattn_mask_mod(H, N, dev), B=None, H=H, Q_LEN=N, KV_LEN=N, device=dev, _compile=True)
        gqa = KVH != H
        for ps in passes:
            r = {"shape": f"{B},{H},{KVH},{N},{D}", "pass": ps, "ratio": ratio}
            sp = run_spattn(cfg, B, N, ps)
            r["spattn_ms"] = sp["median_ms"] if sp else float("nan")
            r["spattn_config"] = sp.get("config_source", "") if sp else ""
            r["spattn_dense_ms"] = sp.get("dense_median_ms", float("nan")) if sp else float("nan")
            # the built-in heuristic config, for "tuned is at least as fast as the heuristic"
            sh = run_spattn(cfg, B, N, ps, ("--db", "/tmp/spattn-no-tuning.db", "--no-dense"))
            r["spattn_heuristic_ms"] = sh["median_ms"] if sh else float("nan")
            mult = 1.0 if ps == "fwd" else 3.5
            if "flex" in peers:
                if ps == "fwd":
                    fn = lambda: flex(q, k, v, block_mask=bm, enable_gqa=gqa)
                else:
                    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                    do = torch.randn_like(q)
                    def fn():
                        o = flex(qg, kg, vg, block_mask=bm, enable_gqa=gqa)
                        o.backward(do)
                fn()
                r["flex_ms"] = bench(fn)
            for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("fa2", SDPBackend.FLASH_ATTENTION)):
                if name not in peers or gqa and name == "fa2" and False:
                    continue
                try:
                    kk = k.repeat_interleave(H // KVH, dim=1) if gqa else k
                    vv = v.repeat_interleave(H // KVH, dim=1) if gqa else v
                    if ps == "fwd":
                        def fn(kk=kk, vv=vv, backend=backend):
                            with sdpa_kernel(backend):
                                torch.nn.functional.scaled_dot_product_attention(q, kk, vv, is_causal=True)
                    else:
                        qg, kg, vg = (t.detach().requires_grad_() for t in (q, kk, vv))
                        do = torch.randn_like(q)
                        def fn(qg=qg, kg=kg, vg=vg, do=do, backend=backend):
                            with sdpa_kernel(backend):
                                torch.nn.functional.scaled_dot_product_attention(qg, kg, vg, is_causal=True).backward(do)
                    fn()
                    r[f"{name}_ms"] = bench(fn)
                except Exception as ex:  # a backend may refuse a shape
                    print(f"{name} failed at {r['shape']}: {ex}", file=sys.stderr)
                    r[f"{name}_ms"] = float("nan")
            r["spattn_eff_tflops"] = mult * flops_fwd / (r["spattn_ms"] * 1e-3) / 1e12
            if "flex_ms" in r:
                r["flex_eff_tflops"] = mult * flops_fwd / (r["flex_ms"] * 1e-3) / 1e12
                r["speedup_vs_flex"] = r["flex_ms"] / r["spattn_ms"]
            rows.append(r)
            print(json.dumps(r), file=sys.stderr)
        if a.verify:
            with tempfile.TemporaryDirectory() as td:
                import numpy as np
                qn = q[:1].float().transpose(1, 2).contiguous().cpu().numpy()
                kn = k[:1].float().transpose(1, 2).contiguous().cpu().numpy()
                vn = v[:1].float().transpose(1, 2).contiguous().cpu().numpy()
                for nm, arr in (("q", qn), ("k", kn), ("v", vn)):
                    np.save(os.path.join(td, nm + ".npy"), arr)
                out = os.path.join(td, "o.npy")
                p = subprocess.run([SPATTN, "run", cfg, "--batch", "1", "--seq-len", str(N), "--device", "gpu",
                                    "--q", td + "/q.npy", "--k", td + "/k.npy", "--v", td + "/v.npy", "-o", out,
                                    "--iters", "1"], capture_output=True, text=True)
                if p.returncode != 0:
                    print(p.stderr, file=sys.stderr); verify_fail = True; continue
                o_sp = torch.from_numpy(np.load(out)).to(dev)
                o_fx = flex(q[:1], k[:1], v[:1], block_mask=bm, enable_gqa=gqa).float().transpose(1, 2)
                rel = ((o_sp - o_fx).norm() / o_fx.norm()).item()
                ok = rel <= 1e-2
                verify_fail |= not ok
                print(f"verify {cfg} N={N}: rel L2 spattn vs flex = {rel:.3e} {'PASS' if ok else 'FAIL'}", file=sys.stderr)
        del q, k, v, bm
        torch.cuda.empty_cache()

    hdr = ("| B,H,KVH,N,D | pass | ratio | spattn ms (tuned) | spattn ms (heuristic) | spattn dense ms | flex ms | cudnn ms | "
           "fa2 ms | spattn eff TF/s | flex eff TF/s | spattn vs flex |")
    lines = [hdr, "|" + "---|" * 12]
    f = lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else (f"{x:.3f}" if isinstance(x, float) else str(x))
    for r in rows:
        lines.append(f"| {r['shape']} | {r['pass']} | {r['ratio']:.3f} | {f(r.get('spattn_ms'))} | {f(r.get('spattn_heuristic_ms'))} | {f(r.get('spattn_dense_ms'))} | "
                     f"{f(r.get('flex_ms'))} | {f(r.get('cudnn_ms'))} | {f(r.get('fa2_ms'))} | {f(r.get('spattn_eff_tflops'))} | "
                     f"{f(r.get('flex_eff_tflops'))} | {f(r.get('speedup_vs_flex'))}x |")
    table = "\n".join(lines)
    print(table)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(table + "\n")
    sys.exit(1 if verify_fail else 0)


if __name__ == "__main__":
    main()
