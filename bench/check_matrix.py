#!/usr/bin/env python3
"""The GPU check matrix and the sanitizer set (issue 13).

Every case is one `spattn check` run on fresh random inputs (its own seed),
judged by the check itself: relative L2 against the float64 CPU or the cuBLAS
fp32 reference, no NaN, LSE -inf exactly where a row has no key, and the rows
that must be exactly 0 (O and dQ of a row with no key, dK and dV of a key no
query reaches) exactly 0.

The matrix (`run`):
  * families: every kernel family the GPU runs, each forced by a tile from
    the tuner's own search space (`spattn tune --list-candidates ARCH`):
        fwd-mma, fwd-wgmma, fwd-ws, bwd-mma, bwd-mma-det, bwd-wgmma, bwd-wgmma-det,
        bwd-ws, bwd-ws-det
    (the wgmma and ws ones on sm_90a only; "det" is --deterministic);
  * per family, 35 cases: all 35 (pattern, N) pairs of
        pattern  spattn exclusive gapped local dense custom window
        N        1 65 1000 4096 8193
    with dtype (bf16, fp16), head_dim (64, 128) and kv-group size (1, 4)
    cycling, so each value appears with each family;
  * the tile sweep: exclusive and gapped at N >= 4096 with every tile the
    tuner may pick, forward and backward (plain and deterministic);
  * the regressions of issue 13, named after the bugs, on several seeds;
  * decoding from a KV cache (issue 18), family "decode": `check --decode`
    over every pattern and N of the matrix, dtype, head_dim, kv-group size
    and T in {1, 4} cycling, with per-sequence lengths (rows before a
    sequence's start and rows with no key: empty), paged caches (page sizes
    16, 64, 256) and forced splits (the combine kernel) mixed in, and the
    decode tiles of the tuner's space (`--filter decode` runs these alone).
  * packed sequences (issue 18), every family: `check --seq-lens` with an
    empty-ish (1- and 2-token) sequence, odd lengths and a tile-crossing one,
    against the CPU reference and the same sequences run one by one (the
    check's "=seq" tensors); names start with "packed" (--filter packed).
  * the deterministic Hopper backwards' dQ order (issue 16 item 2), wgmma
    and ws: many contributors per query tile, shared KV tiles, empty query
    tiles with GQA at odd N, packed batches, two seeds each, every
    case also bitwise repeated; names start with "det-order" (--filter
    det-order; --filter bwd-wgmma-det or bwd-ws-det runs them with the
    family's others).
`list` prints the cases and checks that coverage without a GPU (CI runs it).

The sanitizer set (`sanitize`): memcheck, racecheck, synccheck and initcheck
on every family, on a case with whole query tiles that have no key
(exclusive, N = 333), on odd N with GQA (gapped, N = 515), on packed
sequences (`sanitize --filter packed`: spattn with GQA, lengths
300,1,129,64,2); for decode (`--filter decode`), T = 4 with short
sequences, a paged cache and three splits, and T = 1 with odd N and GQA.

    python3 bench/check_matrix.py list|run|sanitize [--arch sm_90a] [--jobs J] [--out DIR]
"""
import argparse
import concurrent.futures as cf
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SPATTN = os.environ.get("SPATTN", "./build/spattn")

PATTERNS = ["spattn", "exclusive", "gapped", "local", "dense", "custom", "window"]
# Packed batches (issue 18): a 1- and a 2-token sequence, lengths on both sides of
# the tiles (63, 64, 65, 129), one longer than the rest, and one that crosses
# the last 64-row O store of the warp-specialized kernel.
PACKED_LENS = ["1000,1,65,333,2", "129,64,63,700,1", "4096,100,1000,17"]
DTYPES = ["bf16", "fp16"]
HEAD_DIMS = [64, 128]
GROUPS = [1, 4]
SEQ_LENS = [1, 65, 1000, 4096, 8193]
FAMILIES = ["fwd-mma", "fwd-wgmma", "fwd-ws", "bwd-mma", "bwd-mma-det", "bwd-wgmma", "bwd-wgmma-det", "bwd-ws",
            "bwd-ws-det"]
# Families without packed sequences (none since the warp-specialized backward takes them).
NO_PACKED = set()
HEADS = {1: (6, 6), 4: (12, 3)}   # kv-group size -> (heads, kv_heads)
NEW_TOKENS = [1, 4]               # decode: T
DECODE_TILES = [None, "16x32:w1:s2", "16x64:w2:s4", "16x128:w4:s2", "16x32:w2:s3", "16x64:w1:s3"]


def decode_args(spec_path, n, t, seed, batch, lens=None, page=None, splits=None, tile=None):
    """One `check --decode` of a decoding step: cache length n, t new tokens."""
    args = [SPATTN, "check", spec_path, "--decode", "--kv-len", str(n), "--new-tokens", str(t), "--batch",
            str(batch), "--seed", str(seed), "--json"]
    if lens:
        args += ["--kv-lens", ",".join(str(x) for x in lens)]
    if page:
        args += ["--page-size", str(page)]
    if splits:
        args += ["--splits", str(splits)]
    if tile:
        args += ["--tile", tile]
    return args


def spec_text(pattern, dtype, head_dim, group, heads=None, kv_heads=None):
    h, kvh = (heads, kv_heads) if heads else HEADS[group]
    lines = [f"heads: {h}", f"kv_heads: {kvh}", f"head_dim: {head_dim}", f"dtype: {dtype}", f"pattern: {pattern}"]
    if pattern == "window":
        lines.append("window: 333")   # a sliding window: distances [0, 333) in every head
    if pattern == "custom":
        # A local window for every head; a far band for the even heads; odd
        # heads only a band starting at 300 h + 5, so their first rows have
        # no key (whole empty query tiles at every tile size).
        lines.append("bands:")
        for i in range(h):
            if i % 2:
                lines.append(f"  - [[{300 * i + 5}, {300 * i + 400}]]")
            else:
                lines.append(f"  - [[0, {17 + i}], [{100 * (i + 1)}, {100 * (i + 1) + 50 + 7 * i}]]")
    return "\n".join(lines) + "\n"


class Specs:
    """Spec files written once per distinct text, under DIR/specs."""

    def __init__(self, root):
        self.dir = os.path.join(root, "specs")
        os.makedirs(self.dir, exist_ok=True)
        self.paths = {}

    def path(self, text, name):
        if text not in self.paths:
            p = os.path.join(self.dir, f"{name}-{len(self.paths)}.yaml")
            with open(p, "w") as f:
                f.write(text)
            self.paths[text] = p
        return self.paths[text]


_candidates = {}


def candidates(spec_path, kind, arch):
    """The tuner's tile list for (spec, kind, arch): [(tile, mma)], mma being
    the family's last word: "mma", "wgmma" or "ws"."""
    key = (spec_path, kind, arch)
    if key not in _candidates:
        out = subprocess.run([SPATTN, "tune", spec_path, "--kind", kind, "--list-candidates", arch],
                             check=True, capture_output=True, text=True).stdout
        tiles = [line.split()[1] for line in out.splitlines() if line]
        _candidates[key] = [(t, t.rsplit(":", 1)[1] if t.endswith((":wgmma", ":ws")) else "mma") for t in tiles]
    return _candidates[key]


def family_tiles(spec_path, family, arch):
    kind, mma = family.split("-")[:2]
    return [t for t, m in candidates(spec_path, kind, arch) if m == mma]


def families_for(arch):
    return FAMILIES if arch.startswith("sm_90") else [f for f in FAMILIES if f.split("-")[1] == "mma"]


def check_args(spec_path, family, tile, n, seed, batch=None, seq_lens=None):
    kind = family.split("-")[0]
    shape = ["--seq-lens", seq_lens] if seq_lens else \
        ["--seq-len", str(n), "--batch", str(batch if batch else (2 if n <= 1000 else 1))]
    args = [SPATTN, "check", spec_path, "--pass", kind] + shape[:2] + ["--seed", str(seed)] + shape[2:] + ["--json"]
    if tile:
        args += ["--tile", tile]
    if family.endswith("-det"):
        args.append("--deterministic")
    if n >= 4096 and not seq_lens:
        args += ["--reference", "gpu"]   # the float64 CPU reference would take minutes there (packed: always the CPU's)
    return args


def build_cases(root, arch, regress_only=False):
    """The matrix, the tile sweep and the regressions; with regress_only the
    regressions alone (they need no tile list, so a build from before
    --list-candidates runs them too)."""
    specs = Specs(root)
    cases = []
    seed = 1000

    def add(name, family, dims, args):
        cases.append({"name": name, "family": family, "dims": dims, "args": args})

    # 1. The coverage matrix.
    for f, family in enumerate([] if regress_only else families_for(arch)):
        for i in range(len(PATTERNS) * len(SEQ_LENS)):
            pattern, n = PATTERNS[i % len(PATTERNS)], SEQ_LENS[i % len(SEQ_LENS)]
            dtype = DTYPES[(i + f) % 2]
            head_dim = HEAD_DIMS[(i // 2 + f) % 2]
            group = GROUPS[(i // 3 + f // 2) % 2]
            sp = specs.path(spec_text(pattern, dtype, head_dim, group), f"{pattern}-{dtype}-d{head_dim}-g{group}")
            tiles = family_tiles(sp, family, arch)
            tile = tiles[(i * 7 + f) % len(tiles)]   # spread the cases over the family's tiles
            seed += 1
            dims = {"pattern": pattern, "dtype": dtype, "head_dim": head_dim, "group": group, "N": n}
            add(f"matrix {family} {pattern} {dtype} d{head_dim} g{group} N={n} tile={tile}", family, dims,
                check_args(sp, family, tile, n, seed))

    # 2. Exclusive and gapped at N >= 4096 with every tile the tuner may pick.
    for pattern, head_dim in ([] if regress_only else itertools.product(["exclusive", "gapped"], HEAD_DIMS)):
        for kind in ["fwd", "bwd"]:
            for j, (tile, mma) in enumerate(candidates(
                    specs.path(spec_text(pattern, "bf16", head_dim, 4), f"{pattern}-bf16-d{head_dim}-g4"), kind, arch)):
                dtype = DTYPES[j % 2]
                n = [4096, 8193][(j // 2) % 2]
                sp = specs.path(spec_text(pattern, dtype, head_dim, 4), f"{pattern}-{dtype}-d{head_dim}-g4")
                dets = [False, True] if kind == "bwd" else [False]
                for det in dets:
                    family = f"{kind}-{mma}{'-det' if det else ''}"
                    seed += 1
                    dims = {"pattern": pattern, "dtype": dtype, "head_dim": head_dim, "group": 4, "N": n}
                    add(f"tiles {family} {pattern} {dtype} d{head_dim} N={n} tile={tile}", family, dims,
                        check_args(sp, family, tile, n, seed))

    # 3. Decoding from a KV cache: the matrix's patterns and lengths, T = 1 and 4.
    for i in ([] if regress_only else range(2 * len(PATTERNS) * len(SEQ_LENS))):
        pattern, n = PATTERNS[i % len(PATTERNS)], SEQ_LENS[(i // 2) % len(SEQ_LENS)]
        dtype, head_dim = DTYPES[i % 2], HEAD_DIMS[(i // 2) % 2]
        group, t = GROUPS[(i // 3) % 2], min(NEW_TOKENS[(i // 5) % 2], n)
        sp = specs.path(spec_text(pattern, dtype, head_dim, group), f"{pattern}-{dtype}-d{head_dim}-g{group}")
        batch = 3 if n <= 1000 else 2
        lens = [n, max(0, n // 3), min(n, 2)][:batch] if i % 3 == 1 else None   # short sequences: empty rows
        page = [16, 64, 256][i % 3] if i % 4 == 2 else None
        splits = 3 if i % 7 == 3 else None
        tile = DECODE_TILES[i % len(DECODE_TILES)]
        seed += 1
        dims = {"pattern": pattern, "dtype": dtype, "head_dim": head_dim, "group": group, "N": n, "T": t,
                "paged": page is not None, "kv_lens": lens is not None}
        add(f"decode {pattern} {dtype} d{head_dim} g{group} N={n} T={t}{' kv_lens' if lens else ''}"
            f"{f' page={page}' if page else ''}{f' splits={splits}' if splits else ''} tile={tile or 'default'}",
            "decode", dims, decode_args(sp, n, t, seed, batch, lens, page, splits, tile))
    # 4. Packed sequences (issue 18), every family, two patterns (one with rows that have no key).
    for f, family in enumerate([] if regress_only else families_for(arch)):
        if family in NO_PACKED:
            continue
        for i, (pattern, dtype, head_dim, group) in enumerate([("spattn", "bf16", 128, 4), ("exclusive", "fp16", 64, 1)]):
            sp = specs.path(spec_text(pattern, dtype, head_dim, group), f"{pattern}-{dtype}-d{head_dim}-g{group}")
            tiles = family_tiles(sp, family, arch)
            for j, lens in enumerate(PACKED_LENS):
                tile = tiles[(3 * i + j + f) % len(tiles)]
                seed += 1
                add(f"packed {family} {pattern} {dtype} d{head_dim} g{group} lens={lens} tile={tile}", family,
                    {"pattern": pattern}, check_args(sp, family, tile, 0, seed, seq_lens=lens))

    # 5. The deterministic wgmma backward (issue 16 item 2: main_sem, dQ adds ordered by a
    #    semaphore per query tile): many contributors per query tile (dense, window), intervals
    #    that share KV tiles and heads whose first query tiles have no key (custom), empty
    #    query tiles with GQA at odd N (exclusive), and packed batches with empty-ish and
    #    tile-crossing sequences; each `check --deterministic` also runs twice and compares
    #    the gradients bit for bit ("repeat").  Names carry the family: --filter bwd-wgmma-det.
    for i, (det, (pattern, dtype, head_dim, group, n, lens)) in enumerate(
            [] if regress_only or "bwd-ws-det" not in families_for(arch) else itertools.product(["bwd-wgmma-det", "bwd-ws-det"], [
            ("dense", "bf16", 128, 4, 8193, None),
            ("dense", "fp16", 64, 1, 4097, None),
            ("window", "bf16", 128, 1, 4096, None),
            ("custom", "fp16", 64, 4, 1000, None),
            ("custom", "bf16", 128, 1, 1023, None),
            ("exclusive", "bf16", 128, 4, 333, None),
            ("gapped", "fp16", 64, 4, 515, None),
            ("spattn", "bf16", 128, 4, 0, "1000,1,65,333,2"),
            ("dense", "fp16", 64, 4, 0, "129,64,63,700,1,2049,17"),
            ("exclusive", "bf16", 64, 1, 0, "4096,100,1000,17")])):
        if lens and det in NO_PACKED:
            continue
        sp = specs.path(spec_text(pattern, dtype, head_dim, group), f"{pattern}-{dtype}-d{head_dim}-g{group}")
        tiles = family_tiles(sp, det, arch)   # named, so that a tuned mma.sync config cannot stand in
        for rep in range(2):   # two seeds, batch 3 where uniform
            seed += 1
            tile = tiles[(i + rep) % len(tiles)]
            what = f"lens={lens}" if lens else f"N={n}"
            add(f"det-order {det} {pattern} {dtype} d{head_dim} g{group} {what} tile={tile} seed {seed}", det,
                {"pattern": pattern, "dtype": dtype, "head_dim": head_dim, "group": group},
                check_args(sp, det, tile, n, seed, batch=None if lens or n > 1000 else 3, seq_lens=lens))

    # 4. The regressions of issue 13, as reported, with the default kernels.
    r1 = specs.path(spec_text("exclusive", "bf16", 128, 4, 16, 4), "regress-fwd-empty-qtile")
    r2 = specs.path(spec_text("exclusive", "fp16", 64, 3, 24, 8), "regress-det-dq-d64")
    r3 = specs.path(spec_text("gapped", "bf16", 128, 4, 8, 2), "regress-det-dq-d128")
    for s in (1, 2, 3):
        add(f"regress-13 fwd-empty-qtile (exclusive 16/4 d128 N=4096) seed {s}", "fwd-default",
            {"pattern": "exclusive"}, [SPATTN, "check", r1, "--batch", "1", "--seq-len", "4096", "--seed", str(s),
                                       "--reference", "gpu", "--json"])
        add(f"regress-13 det-dq (exclusive 24/8 d64 fp16 N=6000) seed {s}", "bwd-default-det",
            {"pattern": "exclusive"}, [SPATTN, "check", r2, "--pass", "bwd", "--deterministic", "--batch", "1",
                                       "--seq-len", "6000", "--seed", str(s), "--reference", "gpu", "--json"])
        add(f"regress-13 det-dq (gapped 8/2 d128 N=8192) seed {s}", "bwd-default-det",
            {"pattern": "gapped"}, [SPATTN, "check", r3, "--pass", "bwd", "--deterministic", "--batch", "1",
                                    "--seq-len", "8192", "--seed", str(s), "--reference", "gpu", "--json"])
    return cases


def coverage_gaps(cases, arch):
    """Values of each dimension that some family never meets."""
    gaps = []
    axes = {"pattern": PATTERNS, "dtype": DTYPES, "head_dim": HEAD_DIMS, "group": GROUPS, "N": SEQ_LENS}
    decode_axes = dict(axes, T=NEW_TOKENS, paged=[False, True], kv_lens=[False, True])
    for family in families_for(arch) + ["decode"]:
        axes_f = decode_axes if family == "decode" else axes
        seen = {k: set() for k in axes_f}
        for c in cases:
            if c["family"] == family:
                for k in axes_f:
                    if k in c["dims"]:
                        seen[k].add(c["dims"][k])
        for k, values in axes_f.items():
            for v in values:
                if v not in seen[k]:
                    gaps.append(f"{family}: {k}={v}")
    return gaps


def run_one(case, timeout):
    t0 = time.time()
    try:
        p = subprocess.run(case["args"], capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, out, err = 124, "", f"timed out after {timeout} s"
    worst = 0.0
    for line in out.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        for t in obj.get("tensors", []):
            if not t.get("exact") and t["name"] != "repeat":
                worst = max(worst, t["rel_l2"] / t["bound"] if t["bound"] else 0.0)
    return {"name": case["name"], "family": case["family"], "rc": rc, "secs": time.time() - t0,
            "worst": worst, "cmd": " ".join(case["args"]), "out": out, "err": err.strip()}


def run_all(jobs_list, jobs, log_path, timeout, label):
    results = []
    done = 0
    with open(log_path, "w") as log, cf.ThreadPoolExecutor(max_workers=jobs) as ex:
        futs = [ex.submit(fn, *a) for fn, a in jobs_list]
        for fut in cf.as_completed(futs):
            r = fut.result()
            results.append(r)
            done += 1
            status = "PASS" if r["rc"] == 0 else f"FAIL(exit {r['rc']})"
            log.write(f"{status} {r['name']} [{r['secs']:.1f}s] worst rel_l2/bound {r['worst']:.2f}\n  $ {r['cmd']}\n")
            if r["rc"] != 0:
                log.write("".join("    " + l + "\n" for l in (r["out"] + "\n" + r["err"]).strip().splitlines()[-40:]))
                print(f"FAILED: {r['name']}: {r['err'][-300:]}", flush=True)
            log.flush()
            if done % 50 == 0:
                print(f"{label}: {done}/{len(futs)} done", file=sys.stderr, flush=True)
    return results


def summary_line(label, results):
    fams = {}
    for r in results:
        ok, total = fams.get(r["family"], (0, 0))
        fams[r["family"]] = (ok + (r["rc"] == 0), total + 1)
    passed = sum(r["rc"] == 0 for r in results)
    worst = max((r["worst"] for r in results), default=0.0)
    per = ", ".join(f"{f} {ok}/{t}" for f, (ok, t) in sorted(fams.items()))
    return f"{label}: {passed}/{len(results)} passed (worst rel_l2 {worst:.2f} of its bound; {per})"


def sanitize_cases(root, arch):
    specs = Specs(root)
    a = specs.path(spec_text("exclusive", "bf16", 128, 4, 12, 3), "san-exclusive-d128")
    b = specs.path(spec_text("gapped", "fp16", 64, 4, 8, 2), "san-gapped-d64")
    c = specs.path(spec_text("spattn", "bf16", 128, 4, 16, 4), "san-packed-d128")
    cases = []
    for family in families_for(arch):
        for sp, n, what in ((a, 333, "exclusive 12/3 d128 N=333 (empty query tiles)"),
                            (b, 515, "gapped 8/2 d64 fp16 N=515 (odd N)"),
                            (c, 0, "packed spattn 16/4 d128 lens=300,1,129,64,2")):
            if family in NO_PACKED and what.startswith("packed"):
                continue
            tiles = family_tiles(sp, family, arch)
            # The family's default-sized tile: the heuristic's own where it is of the family.
            run = [tiles[len(tiles) // 2]]
            # The ws backward at d64 takes two dQ staging buffers and two writers at 2 stages
            # (kcfg_bwd_dq_bufs) and one at 3: both paths.
            if family.startswith("bwd-ws") and sp == b:
                run = tiles
            for tile in run:
                lens = what.split("lens=")[1] if what.startswith("packed") else None
                args = check_args(sp, family, tile, n, 7, batch=1, seq_lens=lens)
                args = [x for x in args if x != "--json"] + ["--reference", "cpu"]
                cases.append((family, what, tile, args))
    # The persistent ws backward (its default mode on a uniform batch): more KV tiles than
    # block slots (132 SMs; two blocks per SM at d64), so that blocks take a second item after
    # the first (its K and V loaded while the first's dK and dV are written), and with the
    # exclusive pattern items whose KV tile no query reaches.
    if "bwd-ws" in families_for(arch):
        e = specs.path(spec_text("exclusive", "bf16", 128, 1, 16, 16), "san-persistent-d128")
        f = specs.path(spec_text("exclusive", "fp16", 64, 1, 8, 8), "san-persistent-d64")
        for sp, n, what in ((e, 1100, "persistent exclusive 16/16 d128 N=1100 (144 items)"),
                            (f, 2200, "persistent exclusive 8/8 d64 fp16 N=2200 (280 items)")):
            for fam in ("bwd-ws", "bwd-ws-det"):   # both modes are persistent
                for tile in family_tiles(sp, "bwd-ws", arch):
                    args = check_args(sp, fam, tile, n, 7, batch=1)
                    cases.append((fam, what, tile, [x for x in args if x != "--json"] + ["--reference", "gpu"]))
    # decode: the split-KV kernel, its combine and the paged loads
    c = specs.path(spec_text("exclusive", "bf16", 128, 4, 12, 3), "san-exclusive-d128")
    d = specs.path(spec_text("gapped", "fp16", 64, 4, 8, 2), "san-gapped-d64")
    for sp, what, extra in ((c, "decode exclusive 12/3 d128 N=333 T=4 kv_lens paged splits (empty rows)",
                             dict(lens=[333, 20, 2], page=16, splits=3, batch=3, t=4, n=333)),
                            (d, "decode gapped 8/2 d64 fp16 N=515 T=1 (odd N)", dict(batch=2, t=1, n=515))):
        args = decode_args(sp, extra["n"], extra["t"], 7, extra["batch"], extra.get("lens"), extra.get("page"),
                           extra.get("splits"))
        cases.append(("decode", what, "default", [x for x in args if x != "--json"]))
    return cases


def sanitize_one(tool, family, what, tile, args, log_dir, timeout, filt):
    case = "packed" if what.startswith("packed") else "persistent" if what.startswith("persistent") else \
        "empty" if "exclusive" in what else "odd"
    log = os.path.join(log_dir, f"sanitize-{tool}-{family}-{case}-{tile.replace(':', '_')}.log")
    cmd = ["compute-sanitizer", "--tool", tool, "--error-exitcode", "9"] + filt
    if tool == "racecheck":
        cmd += ["--racecheck-report", "all"]
    cmd += args
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, text = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        rc, text = 124, f"timed out after {timeout} s"
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n" + text)
    # Clean: exit 0 and a summary with nothing in it.
    m = re.search(r"(ERROR SUMMARY: (\d+) error|RACECHECK SUMMARY: (\d+) hazard)", text)
    clean = rc == 0 and m is not None and re.search(r"SUMMARY: 0 ", text) is not None
    hazards = re.findall(r"RACECHECK SUMMARY: .*", text) + re.findall(r"ERROR SUMMARY: .*", text)
    return {"name": f"{tool} {family} {what} tile={tile}", "family": f"{tool}", "rc": 0 if clean else (rc or 1),
            "secs": time.time() - t0, "worst": 0.0, "cmd": " ".join(cmd), "out": "\n".join(hazards),
            "err": "" if clean else f"exit {rc}; {'; '.join(hazards) or text[-300:]}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["list", "run", "sanitize"])
    ap.add_argument("--arch", default="sm_90a", help="the GPU's arch (sets the families; default sm_90a)")
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-logs"))
    ap.add_argument("--timeout", type=int, default=300, help="seconds per case")
    ap.add_argument("--filter", default="",
                    help="run only cases whose name contains this (sanitize: whose family contains it, or whose "
                         "case starts with it: packed)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f"spattn-{a.what}-")   # the generated specs; one per invocation

    if a.what == "sanitize":
        if not shutil.which("compute-sanitizer"):
            print("sanitize: compute-sanitizer not found")
            return 1
        help_text = subprocess.run(["compute-sanitizer", "--help"], capture_output=True, text=True).stdout
        # Instrument this engine's kernels only (cuBLAS is not under test).
        filt = ["--kernel-name", "kns=spattn_"] if "--kernel-name" in help_text else []
        jobs = []
        for tool in ["memcheck", "racecheck", "synccheck", "initcheck"]:
            for family, what, tile, args in sanitize_cases(work, a.arch):
                if a.filter and a.filter not in family and not what.startswith(a.filter):
                    continue
                jobs.append((sanitize_one, (tool, family, what, tile, args, a.out, a.timeout, filt)))
        results = run_all(jobs, a.jobs, os.path.join(a.out, "sanitize.log"), a.timeout, "sanitize")
        print(summary_line("sanitizers (memcheck, racecheck, synccheck, initcheck x families x 3 cases, and decode x 2)",
                           results))
        return 0 if all(r["rc"] == 0 for r in results) else 1

    cases = build_cases(work, a.arch, regress_only=a.filter.startswith("regress"))
    if a.filter:
        cases = [c for c in cases if a.filter in c["name"]]
    gaps = coverage_gaps(cases, a.arch) if not a.filter else []
    if a.what == "list":
        for c in cases:
            print(c["name"])
        fams = sorted({c["family"] for c in cases})
        print(f"{len(cases)} cases, families {', '.join(fams)}; coverage gaps: {len(gaps)}")
        for g in gaps:
            print("gap:", g)
        return 1 if gaps else 0
    if gaps:
        print("coverage gaps:", "; ".join(gaps))
        return 1
    results = run_all([(run_one, (c, a.timeout)) for c in cases], a.jobs,
                      os.path.join(a.out, "matrix.log"), a.timeout, "matrix")
    print(summary_line("check matrix", results))
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
