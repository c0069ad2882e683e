/* The benchmark's bridge: this engine's kernels on a caller's device
 * pointers and stream, so that bench/peers.py times spattn in the same
 * process, on the same tensors and stream as its peers (DESIGN.md section 5:
 * one process, one GPU).  Built as build/libspattn_bench.so by `make
 * bench-lib` and loaded with ctypes.
 *
 * It is a thin shim over what the CLI runs (cmd/gpu_common.c: spec, tuned or
 * heuristic config, kernel cache; runtime/gpu_attn.c: launches), not an API:
 * the public C API is issue 14's.  Tensors are PyTorch's [B, heads, N, D]
 * (contiguous), LSE float [B, H, N]; the problem's own buffers are swapped for
 * the caller's around each launch, and its stream for the caller's. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/gpu_common.h"

typedef struct {
    gpu_problem p;
    engine_kernel fk, bk;
    int have_fk, have_bk;
    char info[700];
} spb;

static void put_err(char *err, int errlen, const sp_err *e)
{
    if (err && errlen > 0) snprintf(err, (size_t)errlen, "%s", e->msg[0] ? e->msg : "failed");
}

void spb_close(spb *s);

/* spec: a spec file; pattern: NULL or an override (e.g. "dense"); db: NULL
 * for $SPATTN_DB.  NULL on failure, with the reason in err. */
spb *spb_open(const char *spec, const char *pattern, int batch, int seq_len, const char *db_path, char *err, int errlen)
{
    spb *s = calloc(1, sizeof *s);
    sp_err e = { 0 };
    if (!s) { snprintf(err, (size_t)errlen, "out of memory"); return NULL; }
    gpu_opts o;
    gpu_opts_init(&o);
    o.spec_path = spec;
    o.pattern = pattern;
    o.batch = batch;
    o.seq_len = seq_len;
    o.layout = "bhnd";
    o.db_path = db_path;
    if (gpu_problem_open(&o, &s->p, &e)) { put_err(err, errlen, &e); free(s); return NULL; }
    char fsrc[160], bsrc[160];
    if (gpu_problem_kernel(&s->p, SP_KIND_FWD, &s->fk, &e)) goto fail;
    s->have_fk = 1;
    snprintf(fsrc, sizeof fsrc, "%s", s->p.config_source);
    if (gpu_problem_kernel(&s->p, SP_KIND_BWD, &s->bk, &e)) goto fail;
    s->have_bk = 1;
    snprintf(bsrc, sizeof bsrc, "%s", s->p.config_source);
    if (ga_alloc_backward(&s->p.ga, &s->bk.cfg, 1, NULL, &e) || cu_sync(s->p.gpu, &e)) goto fail;
    snprintf(s->info, sizeof s->info, "fwd %s (%s); bwd %s (%s)", s->fk.name, fsrc, s->bk.name, bsrc);
    return s;
fail:
    put_err(err, errlen, &e);
    spb_close(s);
    return NULL;
}

const char *spb_info(const spb *s) { return s->info; }

/* The caller's tensors in place of the problem's set 0, o, lse and the
 * backward's buffers, and its stream; restored by swap_back. */
typedef struct { sp_dptr q, k, v, o, lse, dout, dq, dk, dv; CUstream stream; } spb_io;

static void swap(spb *s, spb_io *io)
{
    gpu_attn *a = &s->p.ga;
    spb_io keep = { a->q[0], a->k[0], a->v[0], a->o, a->lse, a->dout, a->dq, a->dk, a->dv, s->p.gpu->stream };
    if (io->q) a->q[0] = io->q;
    if (io->k) a->k[0] = io->k;
    if (io->v) a->v[0] = io->v;
    if (io->o) a->o = io->o;
    if (io->lse) a->lse = io->lse;
    if (io->dout) a->dout = io->dout;
    if (io->dq) a->dq = io->dq;
    if (io->dk) a->dk = io->dk;
    if (io->dv) a->dv = io->dv;
    s->p.gpu->stream = io->stream;
    *io = keep;
}

static void swap_back(spb *s, const spb_io *keep)
{
    gpu_attn *a = &s->p.ga;
    a->q[0] = keep->q; a->k[0] = keep->k; a->v[0] = keep->v; a->o = keep->o; a->lse = keep->lse;
    a->dout = keep->dout; a->dq = keep->dq; a->dk = keep->dk; a->dv = keep->dv;
    s->p.gpu->stream = keep->stream;
}

/* Queue the forward on stream: O and LSE.  0, or an exit code with err. */
int spb_forward(spb *s, unsigned long long q, unsigned long long k, unsigned long long v, unsigned long long o,
                unsigned long long lse, unsigned long long stream, char *err, int errlen)
{
    sp_err e = { 0 };
    spb_io io = { q, k, v, o, lse, 0, 0, 0, 0, (CUstream)(uintptr_t)stream };
    swap(s, &io);
    int rc = ga_forward(&s->p.ga, &s->fk, 0, &e);
    swap_back(s, &io);
    if (rc) put_err(err, errlen, &e);
    return rc ? (e.code ? e.code : SP_EXIT_FAIL) : 0;
}

/* Queue the backward on stream, from the forward's O and LSE: dQ, dK, dV. */
int spb_backward(spb *s, unsigned long long q, unsigned long long k, unsigned long long v, unsigned long long o,
                 unsigned long long lse, unsigned long long dout, unsigned long long dq, unsigned long long dk,
                 unsigned long long dv, int deterministic, unsigned long long stream, char *err, int errlen)
{
    sp_err e = { 0 };
    spb_io io = { q, k, v, o, lse, dout, dq, dk, dv, (CUstream)(uintptr_t)stream };
    swap(s, &io);
    int rc = ga_backward(&s->p.ga, &s->bk, 0, deterministic, &e);
    swap_back(s, &io);
    if (rc) put_err(err, errlen, &e);
    return rc ? (e.code ? e.code : SP_EXIT_FAIL) : 0;
}

void spb_close(spb *s)
{
    if (!s) return;
    if (s->have_fk) engine_unload(s->p.gpu, &s->fk);
    if (s->have_bk) engine_unload(s->p.gpu, &s->bk);
    gpu_problem_close(&s->p);
    free(s);
}
