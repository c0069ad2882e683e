/* One attention layer's forward on the GPU or the CPU, timed per stage
 * (runtime/layer.h). */
#include "runtime/layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "runtime/config.h"
#include "runtime/cublas.h"
#include "runtime/engine.h"
#include "runtime/gpu_attn.h"

/* Medians of per-layer stage times: t holds iters rows of 4 (qkv, attn,
 * out, layer); sorted in place. */
static layer_stage_ms stage_medians(double *t, int iters)
{
    double *col = malloc((size_t)iters * sizeof *col);
    double m[4] = { NAN, NAN, NAN, NAN };
    for (int c = 0; col && c < 4; c++) {
        for (int i = 0; i < iters; i++) col[i] = t[4 * i + c];
        m[c] = ga_median(col, iters);
    }
    free(col);
    layer_stage_ms s = { m[0], m[1], m[2], m[3] };
    return s;
}

/* ---- CPU: the float64 reference, timed ----------------------------------------- */

int layer_cpu_time(const layer_problem *p, const layer_params *w, int iters, double *y, layer_stage_ms *ms,
                   sp_err *e)
{
    double *t = malloc(4 * (size_t)iters * sizeof *t);
    if (!t) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    int rc = 0;
    for (int i = 0; i < iters && !rc; i++) {
        layer_times lt;
        rc = layer_ref_forward(p, w, y, &lt, e);
        t[4 * i + 0] = lt.qkv_ms;
        t[4 * i + 1] = lt.attention_ms;
        t[4 * i + 2] = lt.out_proj_ms;
        t[4 * i + 3] = lt.qkv_ms + lt.attention_ms + lt.out_proj_ms;
    }
    if (!rc) *ms = stage_medians(t, iters);
    free(t);
    return rc;
}

/* ---- GPU --------------------------------------------------------------------------- */

typedef struct {
    const layer_gpu_job *j;
    sp_gpu *g;
    gpu_attn a;                  /* the attention problem: band table, q/k/v set 0, o */
    sp_cublas *blas;
    sp_dptr x, w[LAYER_NW], y;
    int qw, kw;                  /* row widths H*D and KVH*D */
    size_t T;                    /* tokens B*N */
} layer_gpu;

static void gpu_free(layer_gpu *L)
{
    cu_free(L->g, L->x);
    cu_free(L->g, L->y);
    for (int i = 0; i < LAYER_NW; i++) cu_free(L->g, L->w[i]);
    cublas_close(L->blas);       /* before the caller's cu_close */
    ga_destroy(&L->a);
}

/* One layer with attention kernel k, queued on the stream.  ev: NULL, or
 * four events recorded before the projections, before the attention,
 * before the output projection and after it. */
static int gpu_step(layer_gpu *L, const engine_kernel *k, const CUevent *ev, sp_err *e)
{
    gpu_attn *a = &L->a;
    sp_gpu *g = L->g;
    sp_dtype dt = L->j->spec->dtype;
    int T = (int)L->T, dm = L->j->d_model, qw = L->qw, kw = L->kw;
    if (ev && cu_event_record(g, ev[0], e)) return -1;
    if (cublas_gemm_ex_rm(L->blas, dt, 0, 0, T, qw, dm, 1.0f, L->x, dm, L->w[LAYER_WQ], qw, 0.0f, a->q[0], qw, e) ||
        cublas_gemm_ex_rm(L->blas, dt, 0, 0, T, kw, dm, 1.0f, L->x, dm, L->w[LAYER_WK], kw, 0.0f, a->k[0], kw, e) ||
        cublas_gemm_ex_rm(L->blas, dt, 0, 0, T, kw, dm, 1.0f, L->x, dm, L->w[LAYER_WV], kw, 0.0f, a->v[0], kw, e))
        return -1;
    if (ev && cu_event_record(g, ev[1], e)) return -1;
    if (ga_forward(a, k, 0, e)) return -1;
    if (ev && cu_event_record(g, ev[2], e)) return -1;
    if (cublas_gemm_ex_rm(L->blas, dt, 0, 0, T, dm, qw, 1.0f, a->o, qw, L->w[LAYER_WO], dm, 0.0f, L->y, dm, e))
        return -1;
    if (ev && cu_event_record(g, ev[3], e)) return -1;
    return 0;
}

/* Median stage times of `iters` layers after `warmup`: all layers queued
 * back to back (no host gaps measured), each with its own four events. */
static int gpu_time(layer_gpu *L, const engine_kernel *k, int warmup, int iters, layer_stage_ms *ms, sp_err *e)
{
    sp_gpu *g = L->g;
    for (int i = 0; i < warmup; i++)
        if (gpu_step(L, k, NULL, e)) return -1;
    size_t nev = 4 * (size_t)iters;
    CUevent *ev = calloc(nev, sizeof *ev);
    double *t = malloc(nev * sizeof *t);
    int rc = (!ev || !t) ? sp_fail(e, SP_EXIT_FAIL, "out of memory") : 0;
    size_t made = 0;
    for (; !rc && made < nev; made++) rc = cu_event_new(g, &ev[made], e);
    for (int i = 0; !rc && i < iters; i++) rc = gpu_step(L, k, &ev[4 * (size_t)i], e);
    for (int i = 0; !rc && i < iters; i++) {
        const CUevent *v = &ev[4 * (size_t)i];
        float f[4];
        for (int s = 0; !rc && s < 3; s++) rc = cu_event_ms(g, v[s], v[s + 1], &f[s], e);
        if (!rc) rc = cu_event_ms(g, v[0], v[3], &f[3], e);
        for (int s = 0; !rc && s < 4; s++) t[4 * (size_t)i + s] = f[s];
    }
    if (!rc) *ms = stage_medians(t, iters);
    for (size_t i = 0; i < made; i++) cu_event_free(g, ev[i]);
    free(ev);
    free(t);
    return rc;
}

/* y from the device, 16-bit, as float. */
static int download_y(layer_gpu *L, float *y, sp_err *e)
{
    size_t n = L->T * L->j->d_model;
    uint16_t *t = malloc(n * sizeof *t);
    if (!t) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    int rc = cu_download(L->g, t, L->y, n * sizeof *t, e);
    for (size_t i = 0; !rc && i < n; i++) y[i] = L->j->spec->dtype == SP_BF16 ? bf16_to_float(t[i]) : fp16_to_float(t[i]);
    free(t);
    return rc;
}

int layer_gpu_run(sp_gpu *g, const layer_gpu_job *j, float *y, layer_gpu_result *r, sp_err *e)
{
    const sp_spec *s = j->spec;
    layer_gpu L;
    memset(&L, 0, sizeof L);
    memset(r, 0, sizeof *r);
    L.j = j;
    L.g = g;
    L.qw = s->heads * s->head_dim;
    L.kw = s->kv_heads * s->head_dim;
    L.T = (size_t)j->B * (size_t)j->N;
    size_t nw[LAYER_NW] = { (size_t)j->d_model * L.qw, (size_t)j->d_model * L.kw, (size_t)j->d_model * L.kw,
                            (size_t)L.qw * j->d_model };
    engine_kernel k, dk;
    memset(&k, 0, sizeof k);
    memset(&dk, 0, sizeof dk);
    int rc = -1;
    /* The projections write the kernel's inputs as row-major GEMM outputs:
     * that is the [B, N, heads, D] layout, and input set 0 holds them. */
    if (ga_create(&L.a, g, s, j->pattern, j->B, j->N, GA_BNHD, 0, e)) return -1;
    if (cublas_open_fast(g, &L.blas, e)) goto out;
    size_t nx = L.T * j->d_model;
    if (cu_malloc(g, 2 * nx, &L.x, e) || cu_malloc(g, 2 * nx, &L.y, e) || cu_upload(g, L.x, j->x16, 2 * nx, e))
        goto out;
    for (int i = 0; i < LAYER_NW; i++)
        if (cu_malloc(g, 2 * nw[i], &L.w[i], e) || cu_upload(g, L.w[i], j->w16[i], 2 * nw[i], e)) goto out;

    sp_kcfg c;
    if (config_pick(g, s, j->pattern, SP_KIND_FWD, 0, j->B, j->N, 0, j->db_path, j->tile, &c, r->config_source,
                    sizeof r->config_source, e) ||
        engine_load(g, s, j->pattern, &c, &k, e))
        goto out;
    snprintf(r->kernel, sizeof r->kernel, "%s", k.name);

    /* The output: NaN first, so anything no stage wrote fails a check. */
    if (ga_poison(&L.a, e) || cu_fill16(g, L.y, 0x7fff, nx, e) || gpu_step(&L, &k, NULL, e) || cu_sync(g, e) ||
        download_y(&L, y, e))
        goto out;
    if (gpu_time(&L, &k, 5, j->iters, &r->band, e)) goto out;
    if (j->with_dense) {
        sp_pattern dense = { .kind = SP_DENSE };
        if (engine_load_dense(g, s, SP_KIND_FWD, 0, &dk, e) || ga_set_bands(&L.a, &dense, e) ||
            gpu_time(&L, &dk, 5, j->iters, &r->dense, e))
            goto out;
        r->dense_ran = 1;
    }
    if (cu_sync(g, e)) goto out;
    rc = 0;
out:
    engine_unload(g, &k);
    engine_unload(g, &dk);
    gpu_free(&L);
    return rc;
}
