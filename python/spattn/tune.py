"""spattn.tune: autotune a spec's kernels for this GPU into the tuning
database that plans read.

The C library has no tuning call yet (include/spattn.h: "Not yet in the
library: the tuner"), so this runs the CLI, `spattn tune SPEC --json`, in a
subprocess, with the spec as a file (a YAML text or parameters go to a
temporary file: `spattn tune -` reads standard input once per shape, so a
second shape would find it empty) and the same database
(--db, else $SPATTN_DB, else the cache directory's tune.db: the default of
both the CLI and spattn_context_set_db) and kernel cache ($SPATTN_CACHE_DIR).
The signature is meant to stay when a spattn_tune C call replaces the
subprocess.
"""
import json
import os
import shutil
import subprocess
import tempfile

from . import _lib
from ._core import CACHE, resolve_key


def find_cli():
    """The spattn binary: $SPATTN_CLI, else next to the loaded library
    (build/spattn beside build/libspattn.so, or PREFIX/bin beside PREFIX/lib),
    else on the PATH."""
    env = os.environ.get("SPATTN_CLI")
    if env:
        return env
    _lib.load()
    lib = _lib.library_path()
    if lib:
        d = os.path.dirname(lib)
        for c in (os.path.join(d, "spattn"), os.path.join(d, "..", "bin", "spattn")):
            if os.access(c, os.X_OK) and os.path.isfile(c):
                return os.path.normpath(c)
    found = shutil.which("spattn")
    if found:
        return found
    raise FileNotFoundError("spattn.tune: the spattn CLI is neither next to libspattn.so nor on the PATH "
                            "(build it with make, or set SPATTN_CLI)")


def tune(spec=None, seq_lens=(4096,), batches=(1,), *, pattern=None, band_basis=0, window=0, intervals=None,
         scale=None, heads=None, kv_heads=None, head_dim=None, dtype=None, layer=-1, kind="all", budget=None,
         force=False, iters=None, db=None, device=0, timeout=None, env=None):
    """Tune the kernels of a spec (a Spec, a spec file path, a YAML text, or
    the pattern arguments with heads/head_dim/dtype) at every (batch, seq_len)
    and store the winners in the tuning database (db, else the default).
    Returns the winners: a list of dicts, one per (kind, batch, seq_len), the
    JSON lines of `spattn tune --json` (tile, median_ms, eff_tflops, ...).
    Raises SpattnError with the CLI's last message on failure.

    Plans already cached keep the configs they were made with: call
    spattn.clear_plan_cache() to pick the tuned ones up (and recapture any
    CUDA graph that used the old plans)."""
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    s = CACHE.spec(key)
    if s.kind == "params" and (heads or s.heads) is None:
        raise ValueError("spattn.tune with pattern arguments: pass heads= and head_dim= (and dtype=, kv_heads=)")
    with tempfile.TemporaryDirectory(prefix="spattn-tune-") as tmp:
        if s.kind == "file":
            path = s.path
        else:
            path = os.path.join(tmp, (s.name or "params") + ".yaml")
            with open(path, "w") as f:
                f.write(s.to_yaml(heads, kv_heads, head_dim, dtype))
        return _run(path, s, seq_lens, batches, kind, budget, force, iters, db, device, timeout, env)


def _run(path, s, seq_lens, batches, kind, budget, force, iters, db, device, timeout, env):
    cmd = [find_cli(), "tune", path, "--json", "--kind", kind,
           "--seq-len", ",".join(str(int(n)) for n in seq_lens),
           "--batch", ",".join(str(int(b)) for b in batches), "--gpu", str(int(device))]
    if s.layer >= 0:
        cmd += ["--layer-index", str(s.layer)]
    if budget is not None:
        cmd += ["--budget", str(budget)]
    if iters is not None:
        cmd += ["--iters", str(int(iters))]
    if force:
        cmd.append("--force")
    db = db if db is not None else CACHE.db
    if db is not None:
        cmd += ["--db", os.fspath(db)]
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                       env=None if env is None else {**os.environ, **env})
    if r.returncode != 0:
        last = [ln for ln in r.stderr.splitlines() if ln.strip()][-3:]
        raise _lib.error(r.returncode if r.returncode in (1, 2, 3) else _lib.FAILED,
                         f"spattn tune (exit {r.returncode}): " + " | ".join(last))
    return [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip().startswith("{")]
