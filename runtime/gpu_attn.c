#include "runtime/gpu_attn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "runtime/attn.h"
#include "runtime/attn_bwd.h"
#include "abi/bandtab.h"
#include "runtime/rng.h"

long long ga_rows(const gpu_attn *a)
{
    return a->packed ? (long long)a->pack.total : (long long)a->B * a->N;
}

void ga_strides(const gpu_attn *a, int heads, long long *sb, long long *sn, long long *sh)
{
    long long N = a->packed ? a->pack.total : a->N, D = a->D;   /* packed: one batch of total rows */
    *sb = N * heads * D;
    if (a->layout == GA_BNHD) { *sn = heads * D; *sh = D; }
    else { *sn = D; *sh = N * D; }
}

/* Shape, buffers and band table; the packing (if any) is in a already. */
static int ga_alloc(gpu_attn *a, sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, int B, int N,
                    ga_layout layout, int nsets, sp_err *e)
{
    a->g = g;
    a->B = B; a->N = N; a->H = spec->heads; a->KVH = spec->kv_heads; a->D = spec->head_dim;
    a->dtype = spec->dtype;
    a->scale = (float)spec_scale(spec);
    a->layout = layout;
    const size_t rows = (size_t)ga_rows(a);
    a->nq = rows * a->H * a->D;
    a->nk = rows * a->KVH * a->D;
    a->nlse = rows * a->H;
    size_t set_bytes = 2 * (a->nq + 2 * a->nk);
    if (nsets <= 0) {
        size_t want = 2 * (size_t)(g->l2_bytes > 0 ? g->l2_bytes : 50 << 20);
        nsets = (int)((want + set_bytes - 1) / set_bytes);
    }
    a->nsets = nsets < 1 ? 1 : nsets > GA_MAX_SETS ? GA_MAX_SETS : nsets;

    if (ga_set_bands(a, pat, e)) { ga_destroy(a); return -1; }

    for (int s = 0; s < a->nsets; s++) {
        if (cu_malloc(g, 2 * a->nq, &a->q[s], e) || cu_malloc(g, 2 * a->nk, &a->k[s], e) ||
            cu_malloc(g, 2 * a->nk, &a->v[s], e)) { ga_destroy(a); return -1; }
    }
    if (cu_malloc(g, 2 * a->nq, &a->o, e) || cu_malloc(g, 4 * a->nlse, &a->lse, e)) { ga_destroy(a); return -1; }
    return 0;
}

int ga_create(gpu_attn *a, sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, int B, int N,
              ga_layout layout, int nsets, sp_err *e)
{
    memset(a, 0, sizeof *a);
    return ga_alloc(a, g, spec, pat, B, N, layout, nsets, e);
}

int ga_create_packed(gpu_attn *a, sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, const int64_t *lens, int n,
                     int nsets, sp_err *e)
{
    memset(a, 0, sizeof *a);
    if (packing_init(&a->pack, lens, n, e)) return -1;
    a->packed = 1;
    a->g = g;
    size_t bytes = ((size_t)n + 1) * sizeof(int32_t);
    if (cu_malloc(g, bytes, &a->cu, e) || cu_upload(g, a->cu, a->pack.cu, bytes, e)) { ga_destroy(a); return -1; }
    return ga_alloc(a, g, spec, pat, n, (int)a->pack.max_len, GA_BNHD, nsets, e);
}

/* Packed: every sequence's table at its own length (packing_bandtab), in a
 * buffer made for them. */
static int ga_set_packed_bands(gpu_attn *a, const sp_pattern *pat, sp_err *e)
{
    int maxi = bandtab_max_intervals(pat, a->H), stride;
    int32_t *tab;
    if (packing_bandtab(&a->pack, pat, a->H, maxi, &tab, &stride, e)) return -1;
    size_t bytes = (size_t)a->pack.n * (size_t)stride * sizeof *tab;
    cu_free(a->g, a->bands);
    a->bands = 0;
    int rc = cu_malloc(a->g, bytes, &a->bands, e) || cu_upload(a->g, a->bands, tab, bytes, e);
    free(tab);
    if (rc) return -1;
    a->bands_sb = stride;
    a->bands_cap = a->max_intervals = maxi;
    return 0;
}

int ga_set_bands(gpu_attn *a, const sp_pattern *pat, sp_err *e)
{
    if (a->packed) return ga_set_packed_bands(a, pat, e);
    int maxi = bandtab_max_intervals(pat, a->H);
    size_t n = (size_t)a->H * BANDTAB_STRIDE(maxi);
    int32_t *tab = malloc(n * sizeof *tab);
    if (!tab) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    int rc = bandtab_fill(pat, a->H, a->N, maxi, tab, e);
    if (!rc && maxi > a->bands_cap) {           /* grow the device table */
        cu_free(a->g, a->bands);
        a->bands = 0;
        a->bands_cap = 0;
        rc = cu_malloc(a->g, n * sizeof *tab, &a->bands, e);
        if (!rc) a->bands_cap = maxi;
    }
    if (!rc) rc = cu_upload(a->g, a->bands, tab, n * sizeof *tab, e);
    if (!rc) a->max_intervals = maxi;
    fwd_sched_free(a->g, &a->sched);   /* built for the old table */
    free(a->bands_host);
    a->bands_host = rc ? NULL : tab;
    if (rc) free(tab);
    return rc;
}

void ga_destroy(gpu_attn *a)
{
    if (!a->g) return;
    sp_dptr *all[] = { &a->bands, &a->o, &a->lse, &a->dout, &a->dq, &a->dk, &a->dv, &a->dq_accum, &a->delta, &a->lse2,
                       &a->dq_sem,
                       &a->cu };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) { cu_free(a->g, *all[i]); *all[i] = 0; }
    for (int s = 0; s < GA_MAX_SETS; s++) {
        cu_free(a->g, a->q[s]); cu_free(a->g, a->k[s]); cu_free(a->g, a->v[s]);
        a->q[s] = a->k[s] = a->v[s] = 0;
    }
    packing_free(&a->pack);
    fwd_sched_free(a->g, &a->sched);
    free(a->bands_host);
    a->bands_host = NULL;
    a->g = NULL;
}

/* Host [B,N,heads,D] -> device layout (a copy in the BHND case). */
static int upload16(gpu_attn *a, sp_dptr dst, const uint16_t *src, int heads, sp_err *e)
{
    size_t n = (size_t)ga_rows(a) * heads * a->D;
    if (a->layout == GA_BNHD) return cu_upload(a->g, dst, src, 2 * n, e);
    uint16_t *t = malloc(2 * n);
    if (!t) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    size_t D = (size_t)a->D;
    for (size_t b = 0; b < (size_t)a->B; b++)
        for (size_t i = 0; i < (size_t)a->N; i++)
            for (size_t h = 0; h < (size_t)heads; h++)
                memcpy(t + ((b * heads + h) * a->N + i) * D, src + ((b * a->N + i) * heads + h) * D, 2 * D);
    int rc = cu_upload(a->g, dst, t, 2 * n, e);
    free(t);
    return rc;
}

int ga_upload(gpu_attn *a, int set, const uint16_t *q, const uint16_t *k, const uint16_t *v, sp_err *e)
{
    if (set < 0 || set >= a->nsets) return sp_fail(e, SP_EXIT_FAIL, "input set %d out of range", set);
    if (upload16(a, a->q[set], q, a->H, e) || upload16(a, a->k[set], k, a->KVH, e) ||
        upload16(a, a->v[set], v, a->KVH, e)) return -1;
    return 0;
}

int ga_fill_random(gpu_attn *a, uint64_t seed, sp_err *e)
{
    uint16_t *q = malloc(2 * a->nq), *k = malloc(2 * a->nk), *v = malloc(2 * a->nk);
    int rc = 0;
    if (!q || !k || !v) rc = sp_fail(e, SP_EXIT_FAIL, "out of memory");
    for (int s = 0; s < a->nsets && !rc; s++) {
        rng r;
        rng_seed(&r, seed + (uint64_t)s);
        rng_fill_normal(&r, a->dtype, a->nq, q, NULL);
        rng_fill_normal(&r, a->dtype, a->nk, k, NULL);
        rng_fill_normal(&r, a->dtype, a->nk, v, NULL);
        rc = ga_upload(a, s, q, k, v, e);
    }
    free(q); free(k); free(v);
    return rc;
}

int ga_poison(gpu_attn *a, sp_err *e)
{
    /* 0x7fff is a NaN in both bf16 and fp16; 0x7fc00000 is a float NaN. */
    if (cu_fill16(a->g, a->o, 0x7fff, a->nq, e) || cu_fill32(a->g, a->lse, 0x7fc00000u, a->nlse, e)) return -1;
    if (a->dq && cu_fill16(a->g, a->dq, 0x7fff, a->nq, e)) return -1;
    if (a->dk && cu_fill16(a->g, a->dk, 0x7fff, a->nk, e)) return -1;
    if (a->dv && cu_fill16(a->g, a->dv, 0x7fff, a->nk, e)) return -1;
    return 0;
}

/* A packed launch's fields (attn_fwd_args and attn_bwd_args alike); lse is [H, total]. */
static void ga_packed_args(const gpu_attn *a, sp_dptr *cu, int *bands_sb, long long *total, long long *lse_sh)
{
    *cu = a->cu;
    *bands_sb = a->bands_sb;
    *total = a->pack.total;
    *lse_sh = a->pack.total;
}

static void tensor(const gpu_attn *a, sp_dptr p, int heads, attn_tensor *t)
{
    t->ptr = p;
    ga_strides(a, heads, &t->sb, &t->sn, &t->sh);
}

/* The work list for cfg's tiles over the current band table, built the first
 * time a config asks (runtime/fwd_sched.h); kept until the table or the
 * tiles change. */
static int ga_sched(gpu_attn *a, const sp_kcfg *cfg, sp_err *e)
{
    if (!a->bands_host) return 0;
    if (a->sched.list && a->sched_bm == cfg->bm && a->sched_bn == cfg->bn && a->sched_pattern == (int)cfg->pattern)
        return 0;
    fwd_sched_free(a->g, &a->sched);
    if (fwd_sched_upload(a->g, cfg, a->bands_host, a->max_intervals, a->H, a->B, a->N, &a->sched, e)) return -1;
    a->sched_bm = cfg->bm;
    a->sched_bn = cfg->bn;
    a->sched_pattern = (int)cfg->pattern;
    return 0;
}

int ga_forward(gpu_attn *a, const engine_kernel *k, int set, sp_err *e)
{
    attn_fwd_args args;
    memset(&args, 0, sizeof args);
    args.batch = a->B; args.seqlen = a->N; args.heads = a->H; args.kv_heads = a->KVH;
    args.head_offset = 0;
    tensor(a, a->q[set], a->H, &args.q);
    tensor(a, a->k[set], a->KVH, &args.k);
    tensor(a, a->v[set], a->KVH, &args.v);
    tensor(a, a->o, a->H, &args.o);
    args.lse = a->lse;
    args.lse_sb = (long long)a->H * a->N;
    args.lse_sh = a->N;
    args.bands = a->bands;
    args.scale = a->scale;
    if (a->packed) ga_packed_args(a, &args.cu_seqlens, &args.bands_sb, &args.total, &args.lse_sh);
    else if (ga_sched(a, &k->cfg, e)) return -1;
    args.sched = a->sched.list;
    args.sched_ctas = a->sched.ctas;
    args.sched_items = a->sched.items;
    return attn_fwd_launch(a->g, k->fn, &k->cfg, &args, e);
}

static int cmp_dbl(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

double ga_median(double *v, int n)
{
    if (n <= 0) return NAN;
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int ga_time_steps(sp_gpu *g, int nsets, ga_step_fn step, void *obj, const void *ctx, int warmup, int iters,
                  double *median_ms, sp_err *e)
{
    if (iters < 1) iters = 1;
    if (nsets < 1) nsets = 1;
    for (int i = 0; i < warmup; i++)
        if (step(obj, ctx, i % nsets, e)) return -1;
    CUevent *ev = calloc((size_t)iters + 1, sizeof *ev);
    double *ms = calloc((size_t)iters, sizeof *ms);
    int rc = (!ev || !ms) ? sp_fail(e, SP_EXIT_FAIL, "out of memory") : 0;
    int made = 0;
    for (; !rc && made <= iters; made++) rc = cu_event_new(g, &ev[made], e);
    for (int i = 0; !rc && i < iters; i++) {
        rc = cu_event_record(g, ev[i], e);
        if (!rc) rc = step(obj, ctx, i % nsets, e);
    }
    if (!rc) rc = cu_event_record(g, ev[iters], e);
    for (int i = 0; !rc && i < iters; i++) {
        float t;
        rc = cu_event_ms(g, ev[i], ev[i + 1], &t, e);
        ms[i] = t;
    }
    if (!rc) *median_ms = ga_median(ms, iters);
    for (int i = 0; i < made && ev; i++) cu_event_free(g, ev[i]);
    free(ev); free(ms);
    return rc;
}

static int time_steps(gpu_attn *a, ga_step_fn step, const void *ctx, int warmup, int iters, double *median_ms,
                      sp_err *e)
{
    return ga_time_steps(a->g, a->nsets, step, a, ctx, warmup, iters, median_ms, e);
}

static int step_fwd(void *a, const void *ctx, int set, sp_err *e)
{
    return ga_forward(a, ctx, set, e);
}

int ga_time_forward(gpu_attn *a, const engine_kernel *k, int warmup, int iters, double *median_ms, sp_err *e)
{
    return time_steps(a, step_fwd, k, warmup, iters, median_ms, e);
}

int ga_alloc_backward(gpu_attn *a, const sp_kcfg *cfg, uint64_t seed, uint16_t *dout_host, sp_err *e)
{
    if (a->dout) return 0;
    attn_bwd_args args;
    memset(&args, 0, sizeof args);
    args.batch = a->B; args.seqlen = a->N; args.heads = a->H; args.kv_heads = a->KVH;
    if (a->packed) ga_packed_args(a, &args.cu_seqlens, &args.bands_sb, &args.total, &args.lse_sh);
    attn_bwd_scratch s;
    attn_bwd_scratch_sizes(cfg, &args, &s);
    /* Both modes can run, with any config (a bench's dense baseline may take another family):
     * the accumulator, and semaphores for the smallest query tiles with the persistent main's
     * work counter after them (attn_bwd_scratch_sizes). */
    size_t accum = (size_t)ga_rows(a) * a->H * a->D * 4;
    s.dq_sem = attn_bwd_sem_bytes(&args, 32) + ATTN_BWD_WORK_COUNT_BYTES;
    if (cu_malloc(a->g, 2 * a->nq, &a->dout, e) || cu_malloc(a->g, 2 * a->nq, &a->dq, e) ||
        cu_malloc(a->g, 2 * a->nk, &a->dk, e) || cu_malloc(a->g, 2 * a->nk, &a->dv, e) ||
        cu_malloc(a->g, accum, &a->dq_accum, e) || cu_malloc(a->g, s.delta, &a->delta, e) ||
        cu_malloc(a->g, s.lse2, &a->lse2, e) || (s.dq_sem && cu_malloc(a->g, s.dq_sem, &a->dq_sem, e))) return -1;
    uint16_t *d = dout_host ? dout_host : malloc(2 * a->nq);
    if (!d) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, a->dtype, a->nq, d, NULL);
    int rc = upload16(a, a->dout, d, a->H, e);
    if (!dout_host) free(d);
    return rc;
}

int ga_backward(gpu_attn *a, const engine_kernel *k, int set, int deterministic, sp_err *e)
{
    attn_bwd_args args;
    memset(&args, 0, sizeof args);
    tensor(a, a->q[set], a->H, &args.q);
    tensor(a, a->k[set], a->KVH, &args.k);
    tensor(a, a->v[set], a->KVH, &args.v);
    tensor(a, a->o, a->H, &args.o);
    tensor(a, a->dout, a->H, &args.dout);
    tensor(a, a->dq, a->H, &args.dq);
    tensor(a, a->dk, a->KVH, &args.dk);
    tensor(a, a->dv, a->KVH, &args.dv);
    args.lse = a->lse;
    args.lse_sb = (long long)a->H * a->N;
    args.lse_sh = a->N;
    args.bands = a->bands;
    args.batch = a->B; args.seqlen = a->N; args.heads = a->H; args.kv_heads = a->KVH;
    args.scale = a->scale;
    args.deterministic = deterministic;
    args.dq_accum = a->dq_accum;
    args.delta = a->delta;
    args.lse2 = a->lse2;
    args.dq_sem = a->dq_sem;
    if (a->packed) ga_packed_args(a, &args.cu_seqlens, &args.bands_sb, &args.total, &args.lse_sh);
    return attn_bwd_launch(a->g, &k->bwd, &k->cfg, &args, e);
}

int ga_upload_dout(gpu_attn *a, const uint16_t *dout, sp_err *e)
{
    if (!a->dout) return sp_fail(e, SP_EXIT_FAIL, "internal: backward buffers not allocated");
    return upload16(a, a->dout, dout, a->H, e);
}

typedef struct { const engine_kernel *fk, *bk; int deterministic; } fwdbwd_ctx;

static int step_bwd(void *a, const void *ctx, int set, sp_err *e)
{
    const fwdbwd_ctx *c = ctx;
    return ga_backward(a, c->bk, set, c->deterministic, e);
}

int ga_time_backward(gpu_attn *a, const engine_kernel *bk, int deterministic, int warmup, int iters, double *median_ms,
                     sp_err *e)
{
    fwdbwd_ctx c = { NULL, bk, deterministic };
    return time_steps(a, step_bwd, &c, warmup, iters, median_ms, e);
}

static int step_fwdbwd(void *a, const void *ctx, int set, sp_err *e)
{
    const fwdbwd_ctx *c = ctx;
    if (ga_forward(a, c->fk, set, e)) return -1;
    return ga_backward(a, c->bk, set, c->deterministic, e);
}

int ga_time_fwdbwd(gpu_attn *a, const engine_kernel *fk, const engine_kernel *bk, int deterministic, int warmup,
                   int iters, double *median_ms, sp_err *e)
{
    fwdbwd_ctx c = { fk, bk, deterministic };
    return time_steps(a, step_fwdbwd, &c, warmup, iters, median_ms, e);
}

int ga_download16(gpu_attn *a, sp_dptr p, int heads, float *out, sp_err *e)
{
    size_t n = (size_t)ga_rows(a) * heads * a->D;
    uint16_t *t = malloc(2 * n);
    if (!t) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    if (cu_download(a->g, t, p, 2 * n, e)) { free(t); return -1; }
    size_t D = (size_t)a->D, B = a->packed ? 1 : (size_t)a->B, N = (size_t)(a->packed ? a->pack.total : a->N);
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < N; i++)
            for (size_t h = 0; h < (size_t)heads; h++) {
                size_t src = a->layout == GA_BNHD ? ((b * a->N + i) * heads + h) * D : ((b * heads + h) * a->N + i) * D;
                size_t dst = ((b * a->N + i) * heads + h) * D;
                for (size_t d = 0; d < D; d++)
                    out[dst + d] = a->dtype == SP_BF16 ? bf16_to_float(t[src + d]) : fp16_to_float(t[src + d]);
            }
    free(t);
    return 0;
}

int ga_download_o(gpu_attn *a, float *o, float *lse, sp_err *e)
{
    if (o && ga_download16(a, a->o, a->H, o, e)) return -1;
    if (lse && cu_download(a->g, lse, a->lse, 4 * a->nlse, e)) return -1;
    return 0;
}
