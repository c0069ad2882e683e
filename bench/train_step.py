#!/usr/bin/env python3
"""A whole training step of a small GPT with attention by spattn, by
FlexAttention tuned and by dense SDPA (cuDNN), in one run on one GPU
(issue 17; the paper's headline is about 2x end to end over dense).

The model: token embedding, L pre-norm blocks (RMSNorm, a fused qkv
projection, causal attention, the output projection; RMSNorm, an MLP of 4x
d_model with GELU), a final norm and an untied head; bf16 parameters, AdamW
(fused), cross-entropy in fp32.  Defaults: 8 layers, d_model 2048, 16 heads
of 128, vocabulary 32768.  Tokens per step are held at --tokens (batch =
tokens / N), so N = 4096 runs batch 4 and N = 16384 batch 1.

Attention backends (the same model, seed and data; only the attention differs):
  spattn      spattn.attention, the paper's 'spattn' pattern (the pattern of
              configs/olmoe-1b-7b.yaml: a shared local window plus one band
              per head, bands following N), q, k, v read as strided
              [B, N, H, D] views of the qkv projection; configs from the
              tuning database (spattn tune, or --tune), else the heuristic
  flex        torch.compile(flex_attention, mode='max-autotune-no-cudagraphs')
              with the block mask of the same band mask (bench/peers.py's
              band_block_mask: create_block_mask's blocks in closed form, and
              spattn_mask_mod, computed arithmetically from h, in the partial
              blocks: no captured tables, DESIGN.md section 5)
  dense       F.scaled_dot_product_attention(is_causal=True) on cuDNN
The rest of the model runs eagerly in every case (--compile compiles the
whole model for all three).  The first --loss-steps steps (default 20) record
the loss (they are also the warm-up: compiles and autotuning happen there);
--steps more steps are timed (CUDA-synchronised wall clock); peak memory is
torch.cuda.max_memory_allocated over the timed steps.  The data are
synthetic but learnable (each token is the previous one plus a small random
step, modulo the vocabulary), the same for every backend.

    python3 bench/train_step.py                       # N = 4096 and 16384, all three backends
    python3 bench/train_step.py --quick               # a small model, N = 1024 and 2048, a few steps
    python3 bench/train_step.py --seq-lens 4096 --backends spattn,flex --steps 20

The markdown table goes to stdout (and --out), progress to stderr.  Exit 1
if a backend failed at some N, or if the spattn and Flex losses of the first
steps differ by more than --loss-tol.
"""
import argparse
import gc
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import flex_attention

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)
import spattn  # noqa: E402
from peers import band_block_mask, work_ratio  # noqa: E402  (the fair Flex mask of the peer benchmark)

BACKENDS = ("spattn", "flex", "dense")
SPEC = spattn.Spec.from_params("spattn")     # heads, head_dim, dtype from the tensors


_T0 = time.time()


def log(*a):
    print(f"[{time.time() - _T0:6.1f}s]", *a, file=sys.stderr, flush=True)


class Attention(nn.Module):
    """qkv projection, causal attention by one backend, output projection."""

    def __init__(self, d, heads, backend, block_mask, flex):
        super().__init__()
        self.h, self.dh = heads, d // heads
        self.backend, self.block_mask, self.flex = backend, block_mask, flex
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x):
        B, N, d = x.shape
        q, k, v = self.qkv(x).view(B, N, 3 * self.h, self.dh).split(self.h, dim=2)   # [B, N, H, D] views
        if self.backend == "spattn":
            o = spattn.attention(q, k, v, spec=SPEC, layout="bnhd")                  # [B, N, H, D]
        else:
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))                         # [B, H, N, D] views
            if self.backend == "flex":
                o = self.flex(q, k, v, block_mask=self.block_mask)
            else:
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            o = o.transpose(1, 2)
        return self.proj(o.reshape(B, N, d))


class Block(nn.Module):
    def __init__(self, d, heads, backend, block_mask, flex):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.attn = Attention(d, heads, backend, block_mask, flex)
        self.fc, self.out = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        return x + self.out(F.gelu(self.fc(self.n2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, d, heads, layers, backend, block_mask=None, flex=None):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, heads, backend, block_mask, flex) for _ in range(layers))
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
        for b in self.blocks:   # GPT-2's scaled init of the residual projections
            for w in (b.attn.proj.weight, b.out.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * layers))

    def forward(self, idx, targets):
        x = self.emb(idx)
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def batches(seed, B, N, vocab, device):
    """Learnable synthetic tokens: a random walk with steps in [-2, 2] modulo the vocabulary."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    while True:
        start = torch.randint(0, vocab, (B, 1), generator=g)
        steps = torch.randint(-2, 3, (B, N), generator=g)
        seq = torch.cat([start, start + steps.cumsum(1)], dim=1) % vocab      # N + 1 tokens
        yield seq[:, :-1].contiguous().to(device), seq[:, 1:].contiguous().to(device)


def run(backend, N, B, a, flex_fn):
    """(loss per warm-up step, seconds per timed step, peak bytes)."""
    dev = "cuda"
    bm = None
    if backend == "flex":
        bm = band_block_mask(a.heads, N, dev)     # create_block_mask's blocks in closed form (peers.py --check-mask)
    torch.manual_seed(a.seed)
    model = GPT(a.vocab, a.d_model, a.heads, a.layers, backend, bm, flex_fn).to(dev, torch.bfloat16)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    step_fn = model
    if a.compile:
        step_fn = torch.compile(model)
    data = batches(a.seed, B, N, a.vocab, dev)

    first = [True]

    def step():
        x, y = next(data)
        loss = step_fn(x, y)
        if first[0]:
            torch.cuda.synchronize()
            log(f"#   {backend} N={N}: first forward done")
        loss.backward()
        if first[0]:
            torch.cuda.synchronize()
            log(f"#   {backend} N={N}: first backward done")
            first[0] = False
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    losses = []
    t0 = time.time()
    for i in range(a.loss_steps):
        if i == 0:
            log(f"#   {backend} N={N}: model ready, first step (forward, backward, optimizer) ...")
        losses.append(step().item())
        if i == 0:
            log(f"#   {backend} N={N}: first step {time.time() - t0:.1f} s (compiles, autotuning), loss {losses[0]:.4f}")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    peak = torch.cuda.max_memory_allocated()
    del model, opt, step_fn, data
    return losses, dt, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-lens", default="4096,16384", help="sequence lengths N (tokens per sample, default 4096,16384)")
    ap.add_argument("--tokens", type=int, default=16384, help="tokens per step; batch = tokens / N (default 16384)")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="spattn,flex,dense (default all)")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--steps", type=int, default=10, help="timed steps after the loss steps (default 10)")
    ap.add_argument("--loss-steps", type=int, default=20, help="steps whose losses are compared (default 20; also the warm-up)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss-tol", type=float, default=0.05, help="max |loss spattn - loss flex| allowed (default 0.05)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the whole model (every backend)")
    ap.add_argument("--tune", action="store_true", help="spattn.tune the band kernels at these shapes first (minutes)")
    ap.add_argument("--quick", action="store_true", help="2 layers, d_model 1024 (8 heads of 128), N = 1024,2048, "
                                                         "4096 tokens, 3 timed and 5 loss steps")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    a = ap.parse_args()
    if a.quick:
        a.layers, a.d_model, a.heads, a.tokens, a.steps, a.loss_steps = 2, 1024, 8, 4096, 3, 5
        if a.seq_lens == ap.get_default("seq_lens"):
            a.seq_lens = "1024,2048"
    backends = a.backends.split(",")
    for b in backends:
        if b not in BACKENDS:
            ap.error(f"--backends: {b!r} is not one of {', '.join(BACKENDS)}")
    if a.d_model % a.heads or a.d_model // a.heads not in (64, 128):
        ap.error("--d-model / --heads must be a head_dim of 64 or 128")
    seq_lens = [int(n) for n in a.seq_lens.split(",")]
    for N in seq_lens:
        if a.tokens % N:
            ap.error(f"--tokens {a.tokens} is not a multiple of N = {N}")
    D = a.d_model // a.heads
    torch.backends.cuda.matmul.allow_tf32 = True
    torch._dynamo.config.cache_size_limit = 64
    log(f"# {torch.cuda.get_device_name()}  torch {torch.__version__}  spattn {spattn.library_path()}")
    log(f"# model: {a.layers} layers, d_model {a.d_model}, {a.heads} heads of {D}, MLP 4x, vocab {a.vocab}, bf16, "
        f"AdamW; {a.tokens} tokens per step")
    if a.tune and "spattn" in backends:
        log("# tuning the spattn kernels (spattn.tune) ...")
        for N in seq_lens:
            rows = spattn.tune(SPEC, seq_lens=[N], batches=[a.tokens // N], heads=a.heads, head_dim=D, dtype="bf16")
            log("#   " + "; ".join(f"{r['kind']} B={r['batch']} N={r['seq_bucket']}: {r['tile']} {r['median_ms']:.3f} ms"
                                  for r in rows))
    flex_fn = torch.compile(flex_attention, dynamic=False, mode="max-autotune-no-cudagraphs") if "flex" in backends else None
    rows, failed, diffs = [], False, {}
    for N in seq_lens:
        B = a.tokens // N
        if "spattn" in backends:
            info = spattn.prepare((B, N, a.heads, D), layout="bnhd", spec=SPEC)
            log(f"# N={N} B={B}: spattn work ratio {info.work_ratio:.4f} (the mask's: {work_ratio(a.heads, N):.4f}); "
                f"fwd {info.forward_kernel} ({info.forward_config}); bwd {info.backward_kernel} ({info.backward_config})")
        res = {}
        for backend in backends:
            log(f"# N={N} B={B} {backend} ...")
            try:
                res[backend] = run(backend, N, B, a, flex_fn)
            except torch.cuda.OutOfMemoryError as e:
                log(f"#   {backend} N={N}: out of memory: {str(e).splitlines()[0]}")
                res[backend] = None
                failed = True
            except Exception as e:   # report the row, go on with the others
                log(f"#   {backend} N={N}: {type(e).__name__}: {e}")
                res[backend] = None
                failed = True
            gc.collect()
            torch.cuda.empty_cache()
            if res[backend]:
                losses, dt, peak = res[backend]
                log(f"#   {backend} N={N}: {dt * 1e3:.1f} ms/step, {B * N / dt:,.0f} tokens/s, peak {peak / 2**30:.1f} GiB, "
                    f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        ok = {k: v for k, v in res.items() if v}
        for backend in backends:
            r = res[backend]
            if not r:
                rows.append(f"| {N} | {B} | {backend} | failed | | | | | |")
                continue
            losses, dt, peak = r
            rel = lambda other: (f"{ok[other][1] / dt:.2f}x" if other in ok and other != backend else "-")  # noqa: E731
            rows.append(f"| {N} | {B} | {backend} | {dt * 1e3:.1f} | {B * N / dt:,.0f} | {rel('flex')} | {rel('dense')} | "
                        f"{peak / 2**30:.1f} | {losses[0]:.4f} -> {losses[-1]:.4f} |")
        if "spattn" in ok and "flex" in ok:
            ls, lf = ok["spattn"][0], ok["flex"][0]
            diffs[N] = max(abs(x - y) for x, y in zip(ls, lf))
            if diffs[N] > a.loss_tol:
                failed = True
    table = [f"Training step, {a.layers} layers, d_model {a.d_model}, {a.heads} heads of {D}, MLP 4x, vocab {a.vocab}, "
             f"bf16, AdamW, {a.tokens} tokens per step ({torch.cuda.get_device_name()}, torch {torch.__version__}"
             f"{', whole model compiled' if a.compile else ''}):", "",
             "| N | batch | attention | ms / step | tokens / s | speed vs Flex tuned | speed vs dense | peak GiB | "
             f"loss step 1 -> {a.loss_steps} |",
             "|---|---|---|---|---|---|---|---|---|"] + rows
    if diffs:
        table += ["", f"Losses of the first {a.loss_steps} steps (same seed and data), spattn vs Flex tuned: max |difference| "
                  + ", ".join(f"{d:.4f} at N = {N}" for N, d in diffs.items()) + f" (tolerance {a.loss_tol})."]
    text = "\n".join(table)
    print(text, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
