"""spattn.tune: autotune a spec's kernels for this GPU into the tuning
database that plans read.

This is the C library's tuner, spattn_tune (man 3 spattn; `spattn tune` is
the CLI over the same call): the spec goes in as its file or its YAML text,
the winners land in the same database as the CLI's (db, else $SPATTN_DB,
else the cache directory's tune.db: the default of spattn_context_set_db)
and the kernels in the same cache ($SPATTN_CACHE_DIR).  The call runs on a
worker thread, so Ctrl-C (and timeout) set the tuner's stop flag: it stops
after the current candidate and saves the keys already finished.
SPATTN_TUNE_FAKE=1 (in the environment or env) tunes the library's
deterministic fake GPU, on any machine.
"""
import ctypes
import json
import os
import shutil
import subprocess
import threading

from . import _lib
from ._core import CACHE, resolve_key

_env_lock = threading.Lock()   # env= changes the process environment for the call


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
         scale=None, heads=None, kv_heads=None, head_dim=None, dtype=None, layer=-1, kind=None, decode=False,
         new_tokens=(1,), budget=None, force=False, iters=None, db=None, device=0, timeout=None, env=None):
    """Tune the kernels of a spec (a Spec, a spec file path, a YAML text, or
    the pattern arguments with heads/head_dim/dtype) at every (batch, seq_len)
    and store the winners in the tuning database (db, else the default).
    kind: "fwd", "bwd" (the backward in both modes: the deterministic one's
    winners are rows of kind "bwd-det", which spattn's deterministic backward
    uses), "bwd-det" (that mode alone) or "all" (the default: fwd and bwd),
    or "dec": the decode kernels
    of spattn.decode (tile and splits), as decode=True says; then seq_lens
    are the cache's lengths (decode's kv_len) and every T of new_tokens is a
    key too.  env: environment variables set for the call
    (SPATTN_TUNE_FAKE, SPATTN_CACHE_DIR, ...).  Returns the winners saved: a
    list of dicts, one per key tuned, the rows as `spattn db export` prints
    them (kind, tile, median_ms, eff_tflops, new_tokens, ...); keys already
    up to date are not in it.  Raises SpattnError with the library's message
    on failure, subprocess.TimeoutExpired after timeout seconds (the keys
    finished by then are saved).

        spattn.tune("configs/gqa-32q-8kv.yaml", seq_lens=[32768], batches=[64], decode=True)

    Plans already cached keep the configs they were made with: call
    spattn.clear_plan_cache() to pick the tuned ones up (and recapture any
    CUDA graph that used the old plans)."""
    key = resolve_key(spec, pattern, band_basis, window, scale, intervals, layer)
    s = CACHE.spec(key)
    if s.kind == "params" and (heads or s.heads) is None:
        raise ValueError("spattn.tune with pattern arguments: pass heads= and head_dim= (and dtype=, kv_heads=)")
    if decode and kind not in (None, "dec"):
        raise ValueError(f"spattn.tune: kind {kind!r} does not go with decode=True (the decode kernels)")
    kind = "dec" if decode else kind or "all"
    bwd = _lib.TUNE_BWD | _lib.TUNE_BWD_DET
    kinds = {"fwd": _lib.TUNE_FWD, "bwd": bwd, "bwd-det": _lib.TUNE_BWD_DET, "all": _lib.TUNE_FWD | bwd,
             "dec": _lib.TUNE_DEC}.get(kind)
    if kinds is None:
        raise ValueError(f"spattn.tune: kind {kind!r} is not fwd, bwd, bwd-det, all or dec")
    b = [int(x) for x in batches]
    n = [int(x) for x in seq_lens]
    t = [int(x) for x in new_tokens]
    opts = _lib.TuneOptions(kinds=kinds, batches=(ctypes.c_int * len(b))(*b), n_batches=len(b),
                            seq_lens=(ctypes.c_int64 * len(n))(*n), n_seq_lens=len(n),
                            budget_s=0.0 if budget is None else float(budget), force=int(bool(force)),
                            iters=0 if iters is None else int(iters), new_tokens=(ctypes.c_int * len(t))(*t),
                            n_new_tokens=len(t))
    if budget is not None and not float(budget) > 0:
        raise _lib.error(_lib.EINVAL, "spattn.tune: budget must be a positive number of seconds")
    stop = ctypes.c_int(0)
    opts.stop = ctypes.pointer(stop)
    path = s.path if s.kind == "file" else None
    text = None if path else s.to_yaml(heads, kv_heads, head_dim, dtype)
    db = db if db is not None else CACHE.db
    with _env_lock:
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            keys = len(b) * len(n) * (len(t) if kind == "dec" else bin(kinds).count("1"))
            return _call(opts, keys, path, text, s.layer, db, device, stop, timeout)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _call(opts, max_results, path, text, layer, db, device, stop, timeout):
    fake = os.environ.get("SPATTN_TUNE_FAKE", "") not in ("", "0")
    # The fake GPU needs no device: a CPU context tunes it.
    ctx = _lib.Context(_lib.DEVICE_CPU if fake else int(device), db=db)
    out = {}

    def work():
        try:
            out["r"] = ctx.tune(opts, max_results, path=path, text=text, layer=layer)
        except BaseException as e:   # handed to the calling thread
            out["e"] = e

    t = threading.Thread(target=work, name="spattn-tune", daemon=True)
    try:
        t.start()
        waited = 0.0
        while t.is_alive():
            t.join(0.1)
            waited += 0.1
            if timeout is not None and waited >= timeout and not stop.value:
                stop.value = 1
                out["timeout"] = True
    except KeyboardInterrupt:
        stop.value = 1   # the tuner saves what it finished, then returns
        t.join()
        raise
    finally:
        t.join()
        ctx.close()
    if out.get("timeout"):
        raise subprocess.TimeoutExpired("spattn_tune", timeout)
    if "e" in out:
        raise out["e"]
    res, count = out["r"]
    return [json.loads(res[i].json.decode()) for i in range(count)
            if res[i].outcome == _lib.TUNE_SAVED and res[i].json]
