/* A decode problem on the GPU for the tuner (runtime/gpu_decode.h). */
#include "runtime/gpu_decode.h"

#include <stdlib.h>
#include <string.h>

#include "abi/bandtab.h"
#include "codegen/bands.h"
#include "common/half.h"
#include "common/mem.h"
#include "runtime/gpu_attn.h"
#include "runtime/ref.h"
#include "runtime/rng.h"

void gd_destroy(gpu_decode *d)
{
    if (!d->g) return;
    for (int s = 0; s < GD_MAX_SETS; s++) {
        cu_free(d->g, d->q[s]);
        cu_free(d->g, d->k[s]);
        cu_free(d->g, d->v[s]);
    }
    cu_free(d->g, d->o);
    cu_free(d->g, d->lse);
    cu_free(d->g, d->bandtab);
    cu_free(d->g, d->ws);
    free(d->bands);
    free(d->ref_o);
    free(d->ref_lse);
    memset(d, 0, sizeof *d);
}

/* Device buffers of every set, o, lse and the band table at N. */
static int alloc_device(gpu_decode *d, sp_err *e)
{
    for (int s = 0; s < d->nsets; s++)
        if (cu_malloc(d->g, 2 * d->nq, &d->q[s], e) || cu_malloc(d->g, 2 * d->nk, &d->k[s], e) ||
            cu_malloc(d->g, 2 * d->nk, &d->v[s], e))
            return -1;
    if (cu_malloc(d->g, 2 * d->nq, &d->o, e) || cu_malloc(d->g, 4 * d->nl, &d->lse, e)) return -1;
    int maxi = bandtab_max_intervals(d->pat, d->H);
    size_t tab_bytes = (size_t)d->H * BANDTAB_STRIDE(maxi) * sizeof(int32_t);
    int32_t *tab = malloc(tab_bytes);
    if (!tab) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    int rc = bandtab_fill(d->pat, d->H, d->N, maxi, tab, e) || cu_malloc(d->g, tab_bytes, &d->bandtab, e) ||
             cu_upload(d->g, d->bandtab, tab, tab_bytes, e);
    free(tab);
    return rc ? -1 : 0;
}

/* One tensor of the cache into set 0: the pool's sequences uploaded, the
 * rest copies of sequence b % pool. */
static int upload_cache(gpu_decode *d, sp_dptr dst, const uint16_t *pool16, sp_err *e)
{
    size_t seq_bytes = 2 * (size_t)d->N * d->KVH * d->D;
    if (cu_upload(d->g, dst, pool16, (size_t)d->pool * seq_bytes, e)) return -1;
    for (int b = d->pool; b < d->B; b++)
        if (cu_copy(d->g, dst + (size_t)b * seq_bytes, dst + (size_t)(b % d->pool) * seq_bytes, seq_bytes, e)) return -1;
    return 0;
}

int gd_create(gpu_decode *d, sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, int B, int N, int T, int nsets,
              uint64_t seed, int threads, sp_err *e)
{
    memset(d, 0, sizeof *d);
    if (B < 1 || N < 1 || T < 1 || T > N)
        return sp_fail(e, SP_EXIT_USAGE, "decode problem: batch %d, N %d, T %d: expected B, N >= 1 and 1 <= T <= N", B,
                       N, T);
    d->g = g;
    d->pat = pat;
    d->B = B; d->N = N; d->T = T;
    d->H = spec->heads; d->KVH = spec->kv_heads; d->D = spec->head_dim;
    d->dtype = spec->dtype;
    d->scale = (float)spec_scale(spec);
    d->nq = (size_t)B * T * d->H * d->D;
    d->nk = (size_t)B * N * d->KVH * d->D;
    d->nl = (size_t)B * d->H * T;
    const size_t seq = (size_t)N * d->KVH * d->D;   /* elements of one sequence's K */
    size_t fit = GD_POOL_BYTES / (2 * sizeof(double) * seq);
    d->pool = (size_t)B <= fit ? B : fit > 2 ? (int)fit : 2;
    if (d->pool > B) d->pool = B;
    if (nsets <= 0) {
        size_t want = 2 * (size_t)(g->l2_bytes > 0 ? g->l2_bytes : 50 << 20), set_bytes = 2 * (d->nq + 2 * d->nk);
        nsets = (int)((want + set_bytes - 1) / set_bytes);
    }
    d->nsets = nsets < 1 ? 1 : nsets > GD_MAX_SETS ? GD_MAX_SETS : nsets;

    const size_t npool = (size_t)d->pool * seq;
    uint64_t need = sp_bytes_add(sp_bytes_mul(npool, 2 * (2 + sizeof(double))),
                                 sp_bytes_add(sp_bytes_mul(d->nq, 2 + 2 * sizeof(double)), sp_bytes_mul(d->nl, 8)));
    if (sp_mem_check(need, "the decode's inputs and reference", e)) return -1;
    d->bands = calloc((size_t)d->H, sizeof *d->bands);
    d->ref_o = malloc(d->nq * sizeof *d->ref_o);
    d->ref_lse = malloc(d->nl * sizeof *d->ref_lse);
    uint16_t *q16 = malloc(2 * d->nq), *k16 = malloc(2 * npool), *v16 = malloc(2 * npool);
    double *q = malloc(d->nq * sizeof *q), *k = malloc(npool * sizeof *k), *v = malloc(npool * sizeof *v);
    int32_t *table = malloc((size_t)B * sizeof *table);
    int rc = -1;
    if (!d->bands || !d->ref_o || !d->ref_lse || !q16 || !k16 || !v16 || !q || !k || !v || !table) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory");
        goto out;
    }
    for (int h = 0; h < d->H; h++)
        if (bands_head(pat, d->H, h, N, &d->bands[h])) {
            sp_fail(e, SP_EXIT_USAGE, "decode problem: the bands of head %d at N = %d cannot be built", h, N);
            goto out;
        }
    rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, d->dtype, d->nq, q16, q);
    rng_fill_normal(&r, d->dtype, npool, k16, k);
    rng_fill_normal(&r, d->dtype, npool, v16, v);
    if (alloc_device(d, e) || cu_upload(g, d->q[0], q16, 2 * d->nq, e) || upload_cache(d, d->k[0], k16, e) ||
        upload_cache(d, d->v[0], v16, e))
        goto out;
    /* The other sets hold the same values at other addresses: it is the
     * addresses the L2 cache keeps. */
    for (int s = 1; s < d->nsets; s++)
        if (cu_copy(g, d->q[s], d->q[0], 2 * d->nq, e) || cu_copy(g, d->k[s], d->k[0], 2 * d->nk, e) ||
            cu_copy(g, d->v[s], d->v[0], 2 * d->nk, e))
            goto out;
    /* The reference: sequence b's one page of N tokens is pool sequence b % pool. */
    for (int b = 0; b < B; b++) table[b] = b % d->pool;
    ref_decode_problem rp = { .B = B, .T = T, .N = N, .H = d->H, .KVH = d->KVH, .D = d->D, .scale = spec_scale(spec),
                              .pattern = pat, .block_table = table, .max_pages = 1, .page_size = N,
                              .threads = threads };
    if (ref_decode(&rp, q, k, v, d->ref_o, d->ref_lse)) {
        sp_fail(e, SP_EXIT_FAIL, "the decode's CPU reference could not run");
        goto out;
    }
    rc = cu_sync(g, e);
out:
    free(q16); free(k16); free(v16); free(q); free(k); free(v); free(table);
    if (rc) gd_destroy(d);
    return rc;
}

int gd_splits(const gpu_decode *d, const sp_kcfg *c)
{
    return decode_launch_splits(c, d->pat, d->bands, d->g->sm_count, d->B, d->T, d->N);
}

/* A workspace large enough for c's splits (grown between launches only). */
static int reserve(gpu_decode *d, const sp_kcfg *c, sp_err *e)
{
    size_t need = decode_workspace_bytes(c, d->B, d->H, d->T, gd_splits(d, c));
    if (need <= d->ws_bytes) return 0;
    if (cu_sync(d->g, e)) return -1;
    cu_free(d->g, d->ws);
    d->ws = 0;
    d->ws_bytes = 0;
    if (cu_malloc(d->g, need, &d->ws, e)) return -1;
    d->ws_bytes = need;
    return 0;
}

int gd_launch(gpu_decode *d, const engine_kernel *k, const sp_kcfg *c, int set, sp_err *e)
{
    const long long row = (long long)d->KVH * d->D, qrow = (long long)d->H * d->D;
    decode_args a;
    memset(&a, 0, sizeof a);
    a.q = (attn_tensor){ d->q[set], d->T * qrow, qrow, d->D };
    a.o = (attn_tensor){ d->o, d->T * qrow, qrow, d->D };
    a.k = (attn_tensor){ d->k[set], d->N * row, row, d->D };
    a.v = (attn_tensor){ d->v[set], d->N * row, row, d->D };
    a.lse = d->lse;
    a.lse_sb = (long long)d->H * d->T;
    a.lse_sh = d->T;
    a.bands = d->bandtab;
    a.batch = d->B;
    a.max_len = d->N;
    a.new_tokens = d->T;
    a.heads = d->H;
    a.kv_heads = d->KVH;
    a.pattern = d->pat;
    a.scale = d->scale;
    a.splits = gd_splits(d, c);
    a.workspace = d->ws;
    if (decode_workspace_bytes(c, d->B, d->H, d->T, a.splits) > d->ws_bytes)
        return sp_fail(e, SP_EXIT_FAIL, "internal: the decode workspace was not reserved");
    return decode_launch(d->g, k->fn, k->combine, c, &a, e);
}

int gd_check(gpu_decode *d, const engine_kernel *k, const sp_kcfg *c, cmp_result *o, cmp_result *lse, sp_err *e)
{
    uint16_t *o16 = malloc(2 * d->nq);
    float *of = malloc(d->nq * sizeof *of), *lf = malloc(d->nl * sizeof *lf);
    int rc = !o16 || !of || !lf ? sp_fail(e, SP_EXIT_FAIL, "out of memory") : 0;
    /* 0x7fff is a NaN in bf16 and fp16, 0x7fc00000 in fp32: what no CTA writes fails. */
    if (!rc)
        rc = reserve(d, c, e) || cu_fill16(d->g, d->o, 0x7fff, d->nq, e) ||
             cu_fill32(d->g, d->lse, 0x7fc00000u, d->nl, e) || gd_launch(d, k, c, 0, e) || cu_sync(d->g, e) ||
             cu_download(d->g, o16, d->o, 2 * d->nq, e) || cu_download(d->g, lf, d->lse, 4 * d->nl, e);
    if (!rc) {
        for (size_t i = 0; i < d->nq; i++) of[i] = d->dtype == SP_FP16 ? fp16_to_float(o16[i]) : bf16_to_float(o16[i]);
        cmp_arrays(of, d->ref_o, d->nq, o);
        cmp_arrays(lf, d->ref_lse, d->nl, lse);
    }
    free(o16); free(of); free(lf);
    return rc ? -1 : 0;
}

typedef struct { const engine_kernel *k; const sp_kcfg *c; } dec_step;

static int step_dec(void *obj, const void *ctx, int set, sp_err *e)
{
    const dec_step *s = ctx;
    return gd_launch(obj, s->k, s->c, set, e);
}

int gd_time(gpu_decode *d, const engine_kernel *k, const sp_kcfg *c, int warmup, int iters, double *median_ms,
            sp_err *e)
{
    dec_step s = { k, c };
    if (reserve(d, c, e)) return -1;
    return ga_time_steps(d->g, d->nsets, step_dec, d, &s, warmup, iters, median_ms, e);
}
