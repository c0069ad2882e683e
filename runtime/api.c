/* The public C API (include/spattn.h): contexts, plans, forward and
 * backward on the caller's pointers and stream.  A thin layer over the
 * engine: spec and bands (codegen/), config choice (runtime/config.c),
 * kernels (runtime/engine.c), launches (runtime/attn*.c) and the float64
 * reference (runtime/ref.c) on a CPU context.  Errors are kept in the
 * object a call was given; nothing here prints or exits. */
#include "include/spattn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "codegen/bands.h"
#include "codegen/emit.h"
#include "common/half.h"
#include "common/strbuf.h"
#include "runtime/attn.h"
#include "runtime/attn_bwd.h"
#include "abi/bandtab.h"
#include "runtime/config.h"
#include "runtime/decode.h"
#include "runtime/engine.h"
#include "runtime/fwd_sched.h"
#include "runtime/packing.h"
#include "runtime/ref.h"
#include "runtime/tune.h"

/* The most batches or lengths one spattn_tune call takes (the CLI's lists). */
#define SP_TUNE_MAX_LIST 64

/* A kernel loaded in a context, by the hash of its source and arch: every
 * plan of the same spec and config shares it. */
typedef struct {
    XXH128_hash_t key;
    engine_kernel k;
} loaded_kernel;

struct spattn_context {
    int device;                 /* SPATTN_DEVICE_CPU or a GPU ordinal */
    sp_gpu gpu;                 /* open when device >= 0 */
    int gpu_open;
    char *db_path;              /* NULL: the default */
    loaded_kernel **kernels;    /* the in-process kernel cache */
    int nkernels, cap;
    char error[1600];
};

/* A decode config of a plan: the tuning database keys decode by T (the
 * new tokens of a step), so a plan keeps one per T it has decoded with
 * (T = 1 and a speculative step's T take two slots; a fifth T replaces the
 * oldest). */
#define PLAN_DEC_CONFIGS 4
typedef struct {
    int T;                      /* new_tokens */
    sp_kcfg cfg;                /* derived; splits as config_pick gave them (0: chosen at launch) */
    engine_kernel *k;           /* in ctx->kernels: its cfg may differ in splits, which are not compiled in */
    char src[160];              /* where cfg came from */
} plan_dec;

/* The kernels of one shape of a plan, in ctx->kernels (NULL on a CPU
 * context): the forward's, the backward's, and the backward's of the
 * deterministic mode, which has a config of its own (runtime/config.h;
 * bk_det == bk where both modes picked the same), and where each config
 * came from. */
typedef struct {
    engine_kernel *fk, *bk, *bk_det;
    char fsrc[160], bsrc[160], bsrc_det[160];
} plan_kernels;

struct spattn_plan {
    spattn_context *ctx;
    sp_spec spec;               /* the whole spec (owns custom bands) */
    sp_pattern pattern;         /* the layer's pattern (points into spec) */
    sp_band_list *bands;        /* heads entries at N */
    int B;
    int64_t N;
    int64_t pairs;              /* over batch and heads */
    double ratio;
    plan_kernels k;             /* the kernels for (B, N) */
    plan_dec dec[PLAN_DEC_CONFIGS];   /* the decode configs picked so far, one per new_tokens */
    int ndec, dnext;                  /* slots filled; the one the next T takes */
    sp_dptr bandtab;            /* device band table for N */
    fwd_sched fsched;           /* the persistent forward's work list for (B, N) */
    /* Packed sequences (spattn_plan_set_seq_lens); packed 0: a uniform batch. */
    int packed;
    sp_packing pack;
    sp_band_list *pbands;       /* pack.n * heads lists, sequence-major */
    int64_t ppairs;             /* allowed pairs over the sequences */
    double pratio;
    plan_kernels pk;            /* the kernels for (pack.n, pack.max_len) */
    sp_dptr pcu, ptab;          /* device offsets (int32 [n + 1]) and band tables */
    int bands_sb;               /* ints per sequence in ptab */
    char error[1600];
};

/* ---- errors ---------------------------------------------------------------- */

static spattn_status keep(char *buf, size_t n, const sp_err *e)
{
    if (e->file[0] && e->line) snprintf(buf, n, "%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
    else if (e->file[0]) snprintf(buf, n, "%s: %s", e->file, e->msg);
    else snprintf(buf, n, "%s", e->msg);
    return e->code ? (spattn_status)e->code : SPATTN_FAILED;
}

/* A formatted message into buf (an object's error); returns code. */
static spattn_status fail_msg(char *buf, size_t n, spattn_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static spattn_status fail_msg(char *buf, size_t n, spattn_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return code;
}
#define plan_fail(p, code, ...) fail_msg((p)->error, sizeof (p)->error, code, __VA_ARGS__)
#define ctx_fail(c, code, ...) fail_msg((c)->error, sizeof (c)->error, code, __VA_ARGS__)

const char *spattn_context_error(const spattn_context *ctx) { return ctx ? ctx->error : "no context"; }
const char *spattn_plan_error(const spattn_plan *plan) { return plan ? plan->error : "no plan"; }

/* ---- context --------------------------------------------------------------- */

spattn_status spattn_context_create(int device, spattn_context **out)
{
    spattn_context *c = calloc(1, sizeof *c);
    *out = c;
    if (!c) return SPATTN_FAILED;
    c->device = device;
    if (device == SPATTN_DEVICE_CPU) return SPATTN_OK;
    if (device < 0) {
        snprintf(c->error, sizeof c->error, "device %d: expected a GPU ordinal >= 0 or SPATTN_DEVICE_CPU", device);
        return SPATTN_EINVAL;
    }
    sp_err e = { 0 };
    if (cu_open(device, &c->gpu, &e)) return keep(c->error, sizeof c->error, &e);
    c->gpu_open = 1;
    return SPATTN_OK;
}

void spattn_context_destroy(spattn_context *ctx)
{
    if (!ctx) return;
    for (int i = 0; i < ctx->nkernels; i++) {
        engine_unload(&ctx->gpu, &ctx->kernels[i]->k);
        free(ctx->kernels[i]);
    }
    free(ctx->kernels);
    if (ctx->gpu_open) cu_close(&ctx->gpu);
    free(ctx->db_path);
    free(ctx);
}

spattn_status spattn_context_set_db(spattn_context *ctx, const char *path)
{
    char *copy = path ? strdup(path) : NULL;
    if (path && !copy) return SPATTN_FAILED;
    free(ctx->db_path);
    ctx->db_path = copy;
    return SPATTN_OK;
}

/* The kernel of cfg from the context's cache, else loaded into it. */
static int context_kernel(spattn_context *c, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg,
                          engine_kernel **out, sp_err *e)
{
    strbuf src = STRBUF_INIT;
    sb_init(&src);
    if (emit_kernel(&src, spec, pat, cfg, e)) { sb_free(&src); return -1; }
    XXH3_state_t st;
    XXH3_128bits_reset(&st);
    XXH3_128bits_update(&st, src.buf, src.len);
    XXH3_128bits_update(&st, &c->gpu.sm, sizeof c->gpu.sm);
    XXH128_hash_t key = XXH3_128bits_digest(&st);
    sb_free(&src);
    for (int i = 0; i < c->nkernels; i++)
        if (XXH128_isEqual(c->kernels[i]->key, key)) { *out = &c->kernels[i]->k; return 0; }
    if (c->nkernels == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        loaded_kernel **grown = realloc(c->kernels, (size_t)cap * sizeof *grown);
        if (!grown) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
        c->kernels = grown;
        c->cap = cap;
    }
    loaded_kernel *lk = calloc(1, sizeof *lk);
    if (!lk) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    if (engine_load(&c->gpu, spec, pat, cfg, &lk->k, e)) { free(lk); return -1; }
    lk->key = key;
    c->kernels[c->nkernels++] = lk;
    *out = &lk->k;
    return 0;
}

/* The kernels of shape (batch, N) into k: on a CPU context none (the
 * reference runs); on a GPU the configs config_pick gives, each loaded once
 * (the deterministic backward's config is often the default one's: then it
 * shares that kernel). */
static int plan_kernels_pick(spattn_context *c, const sp_spec *s, const sp_pattern *pat, int batch, int64_t N,
                             plan_kernels *k, sp_err *e)
{
    memset(k, 0, sizeof *k);
    if (c->device == SPATTN_DEVICE_CPU) {
        snprintf(k->fsrc, sizeof k->fsrc, "cpu-float64");
        snprintf(k->bsrc, sizeof k->bsrc, "cpu-float64");
        snprintf(k->bsrc_det, sizeof k->bsrc_det, "cpu-float64");
        return 0;
    }
    sp_kcfg fc, bc, dc;
    if (config_pick(&c->gpu, s, pat, SP_KIND_FWD, 0, batch, N, 0, c->db_path, NULL, &fc, k->fsrc, sizeof k->fsrc, e) ||
        config_pick(&c->gpu, s, pat, SP_KIND_BWD, 0, batch, N, 0, c->db_path, NULL, &bc, k->bsrc, sizeof k->bsrc, e) ||
        config_pick(&c->gpu, s, pat, SP_KIND_BWD, 1, batch, N, 0, c->db_path, NULL, &dc, k->bsrc_det,
                    sizeof k->bsrc_det, e) ||
        context_kernel(c, s, pat, &fc, &k->fk, e) || context_kernel(c, s, pat, &bc, &k->bk, e))
        return -1;
    if (kcfg_same_kernel(&bc, &dc)) {
        k->bk_det = k->bk;
        return 0;
    }
    return context_kernel(c, s, pat, &dc, &k->bk_det, e);
}

/* The kernels of the plan's current shape (packed or not). */
static const plan_kernels *plan_now(const spattn_plan *p) { return p->packed ? &p->pk : &p->k; }

/* ---- plan ------------------------------------------------------------------ */

static spattn_plan *plan_new(spattn_context *ctx)
{
    spattn_plan *p = calloc(1, sizeof *p);
    if (p) p->ctx = ctx;
    return p;
}

/* Bands, work, configs and kernels of a parsed spec at (B, N). */
static spattn_status plan_finish(spattn_plan *p, int layer_index, int batch, int64_t N)
{
    sp_err e = { 0 };
    sp_spec *s = &p->spec;
    if (batch < 1 || N < 1 || N > (1 << 24) || batch > (1 << 20))
        return plan_fail(p, SPATTN_EINVAL, "batch %d and seq_len %lld: expected 1..2^20 and 1..2^24", batch,
                         (long long)N);
    if (layer_index >= 0 && s->num_layers > 0 && layer_index >= s->num_layers)
        return plan_fail(p, SPATTN_EINVAL, "layer_index %d: the spec has %d layers", layer_index, s->num_layers);
    p->pattern = layer_index < 0 ? s->pattern : *spec_layer_pattern(s, layer_index);
    p->B = batch;
    p->N = N;
    p->bands = calloc((size_t)s->heads, sizeof *p->bands);
    if (!p->bands) return plan_fail(p, SPATTN_FAILED, "out of memory");
    int64_t pairs = 0;
    for (int h = 0; h < s->heads; h++) {
        if (bands_head(&p->pattern, s->heads, h, N, &p->bands[h]))
            return plan_fail(p, SPATTN_EINVAL, "head %d: no bands at N = %lld", h, (long long)N);
        pairs += bands_pairs(&p->bands[h], N);
    }
    if (__builtin_mul_overflow(pairs, (int64_t)batch, &p->pairs))
        return plan_fail(p, SPATTN_EINVAL, "batch %d x %lld allowed pairs overflows", batch, (long long)pairs);
    p->ratio = (double)pairs / ((double)s->heads * (double)bands_dense_pairs(N));
    spattn_context *c = p->ctx;
    if (plan_kernels_pick(c, s, &p->pattern, batch, N, &p->k, &e)) return keep(p->error, sizeof p->error, &e);
    if (c->device == SPATTN_DEVICE_CPU) return SPATTN_OK;
    int maxi = bandtab_max_intervals(&p->pattern, s->heads);
    size_t bytes = (size_t)s->heads * BANDTAB_STRIDE(maxi) * sizeof(int32_t);
    int32_t *tab = malloc(bytes);
    if (!tab) return plan_fail(p, SPATTN_FAILED, "out of memory");
    int rc = bandtab_fill(&p->pattern, s->heads, N, maxi, tab, &e) || cu_malloc(&c->gpu, bytes, &p->bandtab, &e) ||
             cu_upload(&c->gpu, p->bandtab, tab, bytes, &e) ||
             fwd_sched_upload(&c->gpu, &p->k.fk->cfg, tab, maxi, s->heads, batch, (int)N, &p->fsched, &e);
    free(tab);
    return rc ? keep(p->error, sizeof p->error, &e) : SPATTN_OK;
}

/* Hand the plan over, or keep its message in the context and free it. */
static spattn_status plan_done(spattn_context *ctx, spattn_plan *p, spattn_status st, spattn_plan **out)
{
    if (st == SPATTN_OK) { *out = p; return st; }
    snprintf(ctx->error, sizeof ctx->error, "%s", p->error);
    spattn_plan_destroy(p);
    *out = NULL;
    return st;
}

spattn_status spattn_plan_from_yaml(spattn_context *ctx, const char *yaml, size_t len, const char *name,
                                    int layer_index, int batch, int64_t seq_len, spattn_plan **out)
{
    spattn_plan *p = plan_new(ctx);
    if (!p) return SPATTN_FAILED;
    sp_err e = { 0 };
    spattn_status st = spec_parse(yaml, len, name ? name : "spec", &p->spec, &e)
                           ? keep(p->error, sizeof p->error, &e) : plan_finish(p, layer_index, batch, seq_len);
    return plan_done(ctx, p, st, out);
}

spattn_status spattn_plan_from_file(spattn_context *ctx, const char *path, int layer_index, int batch,
                                    int64_t seq_len, spattn_plan **out)
{
    spattn_plan *p = plan_new(ctx);
    if (!p) return SPATTN_FAILED;
    sp_err e = { 0 };
    spattn_status st = spec_load(path, &p->spec, &e) ? keep(p->error, sizeof p->error, &e)
                                                     : plan_finish(p, layer_index, batch, seq_len);
    return plan_done(ctx, p, st, out);
}

/* Parameters become a spec text, so that they pass exactly the checks a spec
 * file passes (spattn-spec(5)). */
spattn_status spattn_plan_from_params(spattn_context *ctx, const spattn_params *q, int batch, int64_t seq_len,
                                      spattn_plan **out)
{
    strbuf y = STRBUF_INIT;
    sb_init(&y);
    sb_printf(&y, "name: params\nheads: %d\nkv_heads: %d\nhead_dim: %d\ndtype: %s\npattern: %s\n", q->heads,
              q->kv_heads > 0 ? q->kv_heads : q->heads, q->head_dim, q->dtype == SPATTN_FP16 ? "fp16" : "bf16",
              q->pattern ? q->pattern : "spattn");
    if (q->band_basis > 0) sb_printf(&y, "band_basis: %lld\n", (long long)q->band_basis);
    if (q->window > 0) sb_printf(&y, "window: %lld\n", (long long)q->window);
    if (q->softmax_scale > 0) sb_printf(&y, "softmax_scale: %.17g\n", q->softmax_scale);
    if (q->custom_counts && q->custom_bands && q->heads > 0 && q->heads <= 4096) {
        sb_puts(&y, "bands:\n");
        const int64_t *iv = q->custom_bands;
        for (int h = 0; h < q->heads; h++) {
            sb_puts(&y, "  - [");
            for (int k = 0; k < q->custom_counts[h] && k < SP_MAX_INTERVALS + 1; k++, iv += 2)
                sb_printf(&y, "%s[%lld, %lld]", k ? ", " : "", (long long)iv[0], (long long)iv[1]);
            sb_puts(&y, "]\n");
        }
    }
    spattn_status st = spattn_plan_from_yaml(ctx, y.buf, y.len, "params", -1, batch, seq_len, out);
    sb_free(&y);
    return st;
}

/* Drop the plan's packing (device memory included). */
static void plan_unpack(spattn_plan *p)
{
    if (p->pcu) cu_free(&p->ctx->gpu, p->pcu);
    if (p->ptab) cu_free(&p->ctx->gpu, p->ptab);
    free(p->pbands);
    packing_free(&p->pack);
    p->packed = 0;
    p->pbands = NULL;
    p->pcu = p->ptab = 0;
    memset(&p->pk, 0, sizeof p->pk);
}

spattn_status spattn_plan_set_seq_lens(spattn_plan *p, const int64_t *seq_lens, int n_seqs)
{
    if (!p) return SPATTN_EINVAL;
    if (!seq_lens && n_seqs == 0) {
        plan_unpack(p);
        return SPATTN_OK;
    }
    sp_err e = { 0 };
    const sp_spec *s = &p->spec;
    spattn_plan q = *p;   /* the new packing is built aside: on failure p keeps its old one */
    q.packed = 1;
    q.pbands = NULL;
    q.pcu = q.ptab = 0;
    int64_t dense = 0;
    int32_t *tab = NULL;
    spattn_context *c = p->ctx;
    if (packing_init(&q.pack, seq_lens, n_seqs, &e) ||
        packing_bands(&q.pack, &p->pattern, s->heads, &q.pbands, &q.ppairs, &dense, &e))
        goto fail;
    q.pratio = (double)q.ppairs / (double)dense;
    if (plan_kernels_pick(c, s, &p->pattern, n_seqs, q.pack.max_len, &q.pk, &e)) goto fail;
    if (c->device != SPATTN_DEVICE_CPU) {
        int maxi = bandtab_max_intervals(&p->pattern, s->heads);
        if (packing_bandtab(&q.pack, &p->pattern, s->heads, maxi, &tab, &q.bands_sb, &e)) goto fail;
        size_t tab_bytes = (size_t)n_seqs * (size_t)q.bands_sb * sizeof *tab, cu_bytes = ((size_t)n_seqs + 1) * 4;
        if (cu_malloc(&c->gpu, tab_bytes, &q.ptab, &e) || cu_upload(&c->gpu, q.ptab, tab, tab_bytes, &e) ||
            cu_malloc(&c->gpu, cu_bytes, &q.pcu, &e) || cu_upload(&c->gpu, q.pcu, q.pack.cu, cu_bytes, &e))
            goto fail;
        free(tab);
    }
    plan_unpack(p);
    *p = q;
    return SPATTN_OK;
fail:
    free(tab);
    if (q.pcu) cu_free(&c->gpu, q.pcu);
    if (q.ptab) cu_free(&c->gpu, q.ptab);
    free(q.pbands);
    packing_free(&q.pack);
    return keep(p->error, sizeof p->error, &e);
}

void spattn_plan_destroy(spattn_plan *p)
{
    if (!p) return;
    plan_unpack(p);
    if (p->bandtab) cu_free(&p->ctx->gpu, p->bandtab);
    fwd_sched_free(&p->ctx->gpu, &p->fsched);
    free(p->bands);
    spec_free(&p->spec);
    free(p);
}

spattn_status spattn_plan_get_info(const spattn_plan *p, spattn_plan_info *info)
{
    memset(info, 0, sizeof *info);
    const int packed = p->packed;
    const int64_t pairs = packed ? p->ppairs : p->pairs;
    const plan_kernels *k = plan_now(p);
    info->batch = packed ? p->pack.n : p->B;
    info->heads = p->spec.heads;
    info->kv_heads = p->spec.kv_heads;
    info->head_dim = p->spec.head_dim;
    info->seq_len = packed ? p->pack.max_len : p->N;
    info->dtype = p->spec.dtype == SP_FP16 ? SPATTN_FP16 : SPATTN_BF16;
    info->allowed_pairs = pairs;
    info->work_ratio = packed ? p->pratio : p->ratio;
    info->forward_flops = 4.0 * p->spec.head_dim * (double)pairs;
    if (k->fk) snprintf(info->forward_kernel, sizeof info->forward_kernel, "%s", k->fk->name);
    if (k->bk) snprintf(info->backward_kernel, sizeof info->backward_kernel, "%s", k->bk->name);
    snprintf(info->forward_config, sizeof info->forward_config, "%s", k->fsrc);
    snprintf(info->backward_config, sizeof info->backward_config, "%s", k->bsrc);
    if (k->bk_det)
        snprintf(info->deterministic_backward_kernel, sizeof info->deterministic_backward_kernel, "%s",
                 k->bk_det->name);
    snprintf(info->deterministic_backward_config, sizeof info->deterministic_backward_config, "%s", k->bsrc_det);
    return SPATTN_OK;
}

/* ---- tensors --------------------------------------------------------------- */

spattn_tensor spattn_tensor_bnhd(void *data, int64_t seq_len, int heads, int head_dim)
{
    spattn_tensor t = { data, seq_len * heads * head_dim, (int64_t)heads * head_dim, head_dim };
    return t;
}

spattn_tensor spattn_tensor_bhnd(void *data, int64_t seq_len, int heads, int head_dim)
{
    spattn_tensor t = { data, seq_len * heads * head_dim, head_dim, seq_len * head_dim };
    return t;
}

spattn_lse spattn_lse_contiguous(float *data, int64_t seq_len, int heads)
{
    spattn_lse l = { data, seq_len * heads, seq_len };
    return l;
}

static attn_tensor dev_tensor(const spattn_tensor *t)
{
    attn_tensor a = { (sp_dptr)(uintptr_t)t->data, t->stride_batch, t->stride_seq, t->stride_head };
    return a;
}

/* ---- the backward's scratch in the workspace ------------------------------- */

/* The backward kernels of the plan's current shape (packed or not) for the
 * mode deterministic. */
static const engine_kernel *plan_bk(const spattn_plan *p, int deterministic)
{
    return deterministic ? plan_now(p)->bk_det : plan_now(p)->bk;
}

static void bwd_scratch(const spattn_plan *p, int deterministic, attn_bwd_scratch *s)
{
    attn_bwd_args a;
    memset(&a, 0, sizeof a);
    a.batch = p->packed ? p->pack.n : p->B;
    a.seqlen = (int)(p->packed ? p->pack.max_len : p->N);
    a.heads = p->spec.heads;
    a.kv_heads = p->spec.kv_heads;
    a.deterministic = deterministic;
    if (p->packed) {
        a.cu_seqlens = p->pcu;
        a.total = p->pack.total;
    }
    attn_bwd_scratch_sizes(&plan_bk(p, deterministic)->cfg, &a, s);
}

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The workspace: dq_accum, delta, lse2, dq_sem (each 16-byte aligned; absent ones 0 bytes). */
static size_t scratch_bytes(const attn_bwd_scratch *s)
{
    return align16(s->dq_accum) + align16(s->delta) + align16(s->lse2) + align16(s->dq_sem);
}

size_t spattn_workspace_size(const spattn_plan *p, int backward, int deterministic)
{
    if (!backward || !plan_bk(p, deterministic)) return 0;   /* the forward and the CPU need none */
    attn_bwd_scratch s;
    bwd_scratch(p, deterministic, &s);
    return scratch_bytes(&s);
}

/* ---- CPU context: the float64 reference on host tensors -------------------- */

static double to_double(const spattn_plan *p, uint16_t x)
{
    return p->spec.dtype == SP_FP16 ? fp16_to_float(x) : bf16_to_float(x);
}

static uint16_t from_double(const spattn_plan *p, double x)
{
    return p->spec.dtype == SP_FP16 ? float_to_fp16((float)x) : float_to_bf16((float)x);
}

/* The host tensors' shape: [B, N] rows, or packed one batch of total rows
 * (stride_batch unused then: b is 0). */
static int64_t cpu_batches(const spattn_plan *p) { return p->packed ? 1 : p->B; }
static int64_t cpu_rows(const spattn_plan *p) { return p->packed ? p->pack.total : p->N; }

/* Host tensor t (heads heads) <-> contiguous doubles [B, N, heads, D]. */
static void gather(const spattn_plan *p, const spattn_tensor *t, int heads, double *out)
{
    const uint16_t *base = t->data;
    size_t i = 0;
    for (int64_t b = 0; b < cpu_batches(p); b++)
        for (int64_t n = 0; n < cpu_rows(p); n++)
            for (int h = 0; h < heads; h++) {
                const uint16_t *row = base + b * t->stride_batch + n * t->stride_seq + h * t->stride_head;
                for (int d = 0; d < p->spec.head_dim; d++) out[i++] = to_double(p, row[d]);
            }
}

static void scatter(const spattn_plan *p, const double *in, int heads, const spattn_tensor *t)
{
    uint16_t *base = t->data;
    size_t i = 0;
    for (int64_t b = 0; b < cpu_batches(p); b++)
        for (int64_t n = 0; n < cpu_rows(p); n++)
            for (int h = 0; h < heads; h++) {
                uint16_t *row = base + b * t->stride_batch + n * t->stride_seq + h * t->stride_head;
                for (int d = 0; d < p->spec.head_dim; d++) row[d] = from_double(p, in[i++]);
            }
}

/* Host LSE <-> contiguous doubles [B, H, N]. */
static void lse_move(const spattn_plan *p, const spattn_lse *l, double *buf, int to_host)
{
    size_t i = 0;
    for (int64_t b = 0; b < cpu_batches(p); b++)
        for (int h = 0; h < p->spec.heads; h++)
            for (int64_t n = 0; n < cpu_rows(p); n++, i++) {
                float *x = l->data + b * l->stride_batch + h * l->stride_head + n;
                if (to_host) *x = (float)buf[i];
                else buf[i] = *x;
            }
}

static spattn_status cpu_run(spattn_plan *p, const spattn_tensor *q, const spattn_tensor *k,
                             const spattn_tensor *v, const spattn_tensor *o, const spattn_lse *lse,
                             const spattn_tensor *dout, const spattn_tensor *dq, const spattn_tensor *dk,
                             const spattn_tensor *dv)
{
    const sp_spec *s = &p->spec;
    size_t rows = (size_t)cpu_batches(p) * (size_t)cpu_rows(p);
    size_t nq = rows * (size_t)s->heads * (size_t)s->head_dim;
    size_t nk = rows * (size_t)s->kv_heads * (size_t)s->head_dim;
    size_t nl = rows * (size_t)s->heads;
    int bwd = dout != NULL;
    double *qd = malloc(nq * sizeof *qd), *kd = malloc(nk * sizeof *kd), *vd = malloc(nk * sizeof *vd);
    double *od = malloc(nq * sizeof *od), *ld = malloc(nl * sizeof *ld);
    double *gd = bwd ? malloc(nq * sizeof *gd) : NULL, *dqd = bwd ? malloc(nq * sizeof *dqd) : NULL;
    double *dkd = bwd ? malloc(nk * sizeof *dkd) : NULL, *dvd = bwd ? malloc(nk * sizeof *dvd) : NULL;
    spattn_status st = SPATTN_OK;
    if (!qd || !kd || !vd || !od || !ld || (bwd && (!gd || !dqd || !dkd || !dvd))) {
        st = plan_fail(p, SPATTN_FAILED, "out of memory for the CPU reference");
        goto out;
    }
    ref_problem rp = { p->B, (int)p->N, s->heads, s->kv_heads, s->head_dim, spec_scale(s), p->bands, 0 };
    gather(p, q, s->heads, qd);
    gather(p, k, s->kv_heads, kd);
    gather(p, v, s->kv_heads, vd);
    if (!bwd) {
        if (p->packed ? ref_forward_packed(&rp, &p->pack, p->pbands, qd, kd, vd, od, ld)
                      : ref_forward(&rp, qd, kd, vd, od, ld)) {
            st = plan_fail(p, SPATTN_FAILED, "CPU reference: threads");
            goto out;
        }
        scatter(p, od, s->heads, o);
        lse_move(p, lse, ld, 1);
        goto out;
    }
    /* The backward takes O and LSE as the caller has them (the forward's). */
    gather(p, o, s->heads, od);
    lse_move(p, lse, ld, 0);
    gather(p, dout, s->heads, gd);
    if (p->packed ? ref_backward_packed(&rp, &p->pack, p->pbands, qd, kd, vd, od, ld, gd, dqd, dkd, dvd)
                  : ref_backward(&rp, qd, kd, vd, od, ld, gd, dqd, dkd, dvd)) {
        st = plan_fail(p, SPATTN_FAILED, "CPU reference: threads");
        goto out;
    }
    scatter(p, dqd, s->heads, dq);
    scatter(p, dkd, s->kv_heads, dk);
    scatter(p, dvd, s->kv_heads, dv);
out:
    free(qd); free(kd); free(vd); free(od); free(ld); free(gd); free(dqd); free(dkd); free(dvd);
    return st;
}

/* ---- forward and backward -------------------------------------------------- */

static int tensors_present(spattn_plan *p, const spattn_tensor *const *t, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!t[i] || !t[i]->data) { plan_fail(p, SPATTN_EINVAL, "%s: no tensor", names[i]); return 0; }
    return 1;
}

/* The fields attn_fwd_args and attn_bwd_args share (same names in both):
 * LSE, band table and shape, from the plan. */
#define LAUNCH_SHAPE(a, p, l)                                                                            \
    do {                                                                                                 \
        (a).lse = (sp_dptr)(uintptr_t)(l)->data;                                                         \
        (a).lse_sb = (l)->stride_batch;                                                                  \
        (a).lse_sh = (l)->stride_head;                                                                   \
        (a).bands = (p)->packed ? (p)->ptab : (p)->bandtab;                                              \
        (a).batch = (p)->packed ? (p)->pack.n : (p)->B;                                                  \
        (a).seqlen = (int)((p)->packed ? (p)->pack.max_len : (p)->N);                                    \
        (a).cu_seqlens = (p)->packed ? (p)->pcu : 0;                                                     \
        (a).bands_sb = (p)->bands_sb;                                                                    \
        (a).total = (p)->pack.total;                                                                     \
        (a).heads = (p)->spec.heads; (a).kv_heads = (p)->spec.kv_heads;                                  \
        (a).scale = (float)spec_scale(&(p)->spec);                                                       \
    } while (0)

spattn_status spattn_forward(spattn_plan *p, const spattn_tensor *q, const spattn_tensor *k, const spattn_tensor *v,
                             const spattn_tensor *o, const spattn_lse *lse, void *workspace, size_t workspace_bytes,
                             void *stream)
{
    const spattn_tensor *ts[4] = { q, k, v, o };
    static const char *const names[4] = { "q", "k", "v", "o" };
    if (!tensors_present(p, ts, names, 4)) return SPATTN_EINVAL;
    if (!lse || !lse->data) return plan_fail(p, SPATTN_EINVAL, "lse: no tensor");
    (void)workspace;
    (void)workspace_bytes;
    const engine_kernel *fk = plan_now(p)->fk;
    if (!fk) return cpu_run(p, q, k, v, o, lse, NULL, NULL, NULL, NULL);
    attn_fwd_args a;
    memset(&a, 0, sizeof a);
    a.q = dev_tensor(q); a.k = dev_tensor(k); a.v = dev_tensor(v); a.o = dev_tensor(o);
    LAUNCH_SHAPE(a, p, lse);
    a.sched = p->fsched.list;   /* attn_fwd_launch drops it where it does not fit (packed, another shape) */
    a.sched_ctas = p->fsched.ctas;
    a.sched_items = p->fsched.items;
    sp_err e = { 0 };
    sp_gpu *g = &p->ctx->gpu;
    CUstream own = g->stream;
    g->stream = (CUstream)stream;   /* the caller's stream for this launch */
    int rc = attn_fwd_launch(g, fk->fn, &fk->cfg, &a, &e);
    g->stream = own;
    return rc ? keep(p->error, sizeof p->error, &e) : SPATTN_OK;
}

spattn_status spattn_backward(spattn_plan *p, const spattn_tensor *q, const spattn_tensor *k,
                              const spattn_tensor *v, const spattn_tensor *o, const spattn_lse *lse,
                              const spattn_tensor *dout, const spattn_tensor *dq, const spattn_tensor *dk,
                              const spattn_tensor *dv, int deterministic, void *workspace, size_t workspace_bytes,
                              void *stream)
{
    const spattn_tensor *ts[8] = { q, k, v, o, dout, dq, dk, dv };
    static const char *const names[8] = { "q", "k", "v", "o", "dout", "dq", "dk", "dv" };
    if (!tensors_present(p, ts, names, 8)) return SPATTN_EINVAL;
    if (!lse || !lse->data) return plan_fail(p, SPATTN_EINVAL, "lse: no tensor");
    const engine_kernel *bk = plan_bk(p, deterministic);
    if (!bk) return cpu_run(p, q, k, v, o, lse, dout, dq, dk, dv);
    attn_bwd_scratch s;
    bwd_scratch(p, deterministic, &s);
    size_t need = scratch_bytes(&s);
    if (!workspace || workspace_bytes < need)
        return plan_fail(p, SPATTN_EINVAL, "workspace: %zu bytes given, the backward needs %zu (spattn_workspace_size)",
                         workspace ? workspace_bytes : 0, need);
    attn_bwd_args a;
    memset(&a, 0, sizeof a);
    a.q = dev_tensor(q); a.k = dev_tensor(k); a.v = dev_tensor(v); a.o = dev_tensor(o); a.dout = dev_tensor(dout);
    a.dq = dev_tensor(dq); a.dk = dev_tensor(dk); a.dv = dev_tensor(dv);
    LAUNCH_SHAPE(a, p, lse);
    a.deterministic = deterministic;
    sp_dptr w = (sp_dptr)(uintptr_t)workspace;
    a.dq_accum = s.dq_accum ? w : 0;
    a.delta = w + align16(s.dq_accum);
    a.lse2 = a.delta + align16(s.delta);
    a.dq_sem = s.dq_sem ? a.lse2 + align16(s.lse2) : 0;
    sp_err e = { 0 };
    sp_gpu *g = &p->ctx->gpu;
    CUstream own = g->stream;
    g->stream = (CUstream)stream;
    int rc = attn_bwd_launch(g, &bk->bwd, &bk->cfg, &a, &e);
    g->stream = own;
    return rc ? keep(p->error, sizeof p->error, &e) : SPATTN_OK;
}

/* ---- decoding from a KV cache ---------------------------------------------- */

/* The index of the plan's decode slot for T, or -1. */
static int decode_cached(const spattn_plan *p, int T)
{
    for (int i = 0; i < p->ndec; i++)
        if (p->dec[i].T == T) return i;
    return -1;
}

/* The decode config of a GPU plan for T new tokens (tuned, else the
 * heuristic): the plan's if it has picked one for T, else config_pick's. */
static int decode_config(const spattn_plan *p, int T, sp_kcfg *c, char *src, size_t n, sp_err *e)
{
    int i = decode_cached(p, T);
    if (i >= 0) {
        *c = p->dec[i].cfg;
        snprintf(src, n, "%s", p->dec[i].src);
        return 0;
    }
    const spattn_context *ctx = p->ctx;
    return config_pick(&ctx->gpu, &p->spec, &p->pattern, SP_KIND_DEC, 0, p->B, p->N, T, ctx->db_path, NULL, c, src, n,
                       e);
}

/* The plan's decode config and kernels for T, picked and loaded on first
 * use. */
static int decode_slot(spattn_plan *p, int T, plan_dec **out, sp_err *e)
{
    int i = decode_cached(p, T);
    if (i >= 0) { *out = &p->dec[i]; return 0; }
    plan_dec d = { .T = T };
    if (decode_config(p, T, &d.cfg, d.src, sizeof d.src, e) ||
        context_kernel(p->ctx, &p->spec, &p->pattern, &d.cfg, &d.k, e))
        return -1;
    plan_dec *slot = &p->dec[p->dnext];
    p->dnext = (p->dnext + 1) % PLAN_DEC_CONFIGS;
    if (p->ndec < PLAN_DEC_CONFIGS) p->ndec++;
    *slot = d;
    *out = slot;
    return 0;
}

/* Splits of a GPU decode at T (the most tiles a block has at length N). */
static int decode_plan_splits(const spattn_plan *p, const sp_kcfg *c, int T)
{
    return decode_launch_splits(c, &p->pattern, p->bands, p->ctx->gpu.sm_count, p->B, T, p->N);
}

size_t spattn_decode_workspace_size(const spattn_plan *p, int new_tokens)
{
    if (!p || p->ctx->device == SPATTN_DEVICE_CPU || new_tokens < 1 || new_tokens > p->N) return 0;
    sp_kcfg c;
    char src[160];
    sp_err e = { 0 };
    if (decode_config(p, new_tokens, &c, src, sizeof src, &e)) return 0;
    return decode_workspace_bytes(&c, p->B, p->spec.heads, new_tokens, decode_plan_splits(p, &c, new_tokens));
}

spattn_status spattn_decode_get_info(const spattn_plan *p, const int32_t *kv_lens, int T, spattn_decode_info *info)
{
    memset(info, 0, sizeof *info);
    if (T < 1 || T > p->N) return SPATTN_EINVAL;
    sp_kcfg c;
    sp_err e = { 0 };
    int gpu = p->ctx->device != SPATTN_DEVICE_CPU;
    if (gpu) {
        if (decode_config(p, T, &c, info->config_source, sizeof info->config_source, &e)) return SPATTN_EINVAL;
    } else {   /* the tiles the GPU's heuristic config would read */
        kcfg_for_spec(&c, &p->spec, &p->pattern, SP_KIND_DEC, 90);
        if (kcfg_derive(&c, &e)) return SPATTN_EINVAL;
    }
    for (int b = 0; b < p->B; b++) {
        int64_t len = kv_lens ? kv_lens[b] : p->N, tiles, rows, max_tiles;
        if (len < 0 || len > p->N) return SPATTN_EINVAL;
        decode_sequence_cost(&c, &p->pattern, p->bands, T, len, &tiles, &rows, &max_tiles);
        info->tiles += tiles;
        info->key_rows += rows;
        info->dense_bytes += (double)len * p->spec.kv_heads * p->spec.head_dim * 4.0;
    }
    info->bytes = (double)info->key_rows * p->spec.head_dim * 4.0;
    info->splits = gpu ? decode_plan_splits(p, &c, T) : 1;
    if (gpu) {   /* what spattn_decode launches: the kernel, and the config with the splits it uses */
        kcfg_name(&c, info->kernel, sizeof info->kernel);
        c.splits = info->splits;
        kcfg_tile_string(&c, info->config, sizeof info->config);
    }
    return SPATTN_OK;
}

/* Strided 16-bit [d0, d1, heads, D] (strides of the first three) -> contiguous doubles. */
static void gather_rows(const spattn_plan *p, const uint16_t *base, int64_t d0, int64_t d1, int heads, int64_t s0,
                        int64_t s1, int64_t s2, double *out)
{
    size_t i = 0;
    for (int64_t a = 0; a < d0; a++)
        for (int64_t n = 0; n < d1; n++)
            for (int h = 0; h < heads; h++) {
                const uint16_t *row = base + a * s0 + n * s1 + h * s2;
                for (int d = 0; d < p->spec.head_dim; d++) out[i++] = to_double(p, row[d]);
            }
}

static spattn_status cpu_decode(spattn_plan *p, const spattn_tensor *q, const spattn_tensor *k, const spattn_tensor *v,
                                const int32_t *kv_lens, int T, const spattn_paged_kv *pg, const spattn_tensor *o,
                                const spattn_lse *lse)
{
    const sp_spec *s = &p->spec;
    const int H = s->heads, KVH = s->kv_heads, D = s->head_dim;
    for (int b = 0; kv_lens && b < p->B; b++)
        if (kv_lens[b] < 0 || kv_lens[b] > p->N)
            return plan_fail(p, SPATTN_EINVAL, "kv_lens[%d] = %d: expected 0..%lld (the plan's seq_len)", b, kv_lens[b],
                             (long long)p->N);
    int64_t rows0 = pg ? pg->num_pages : p->B, rows1 = pg ? pg->page_size : p->N;
    if (pg) {
        if (pg->num_pages < 1)
            return plan_fail(p, SPATTN_EINVAL, "paged: num_pages %d must be >= 1 on a CPU context", pg->num_pages);
        for (int64_t x = 0; x < (int64_t)p->B * pg->max_pages; x++) {
            int b = (int)(x / pg->max_pages);
            int64_t len = kv_lens ? kv_lens[b] : p->N;
            if ((x % pg->max_pages) * pg->page_size >= len) continue;   /* a page no token of b is in */
            if (pg->block_table[x] < 0 || pg->block_table[x] >= pg->num_pages)
                return plan_fail(p, SPATTN_EINVAL, "block_table[%d][%lld] = %d: expected a page in 0..%d", b,
                                 (long long)(x % pg->max_pages), pg->block_table[x], pg->num_pages - 1);
        }
    }
    size_t nq = (size_t)p->B * T * H * D, nk = (size_t)rows0 * rows1 * KVH * D, nl = (size_t)p->B * H * T;
    double *qd = malloc(nq * sizeof *qd), *kd = malloc(nk * sizeof *kd), *vd = malloc(nk * sizeof *vd);
    double *od = malloc(nq * sizeof *od), *ld = malloc(nl * sizeof *ld);
    spattn_status st = SPATTN_OK;
    if (!qd || !kd || !vd || !od || !ld) {
        st = plan_fail(p, SPATTN_FAILED, "out of memory for the CPU reference");
        goto out;
    }
    gather_rows(p, q->data, p->B, T, H, q->stride_batch, q->stride_seq, q->stride_head, qd);
    gather_rows(p, k->data, rows0, rows1, KVH, k->stride_batch, k->stride_seq, k->stride_head, kd);
    gather_rows(p, v->data, rows0, rows1, KVH, v->stride_batch, v->stride_seq, v->stride_head, vd);
    ref_decode_problem rp = { .B = p->B, .T = T, .N = (int)p->N, .H = H, .KVH = KVH, .D = D, .scale = spec_scale(s),
                              .pattern = &p->pattern, .kv_lens = kv_lens, .block_table = pg ? pg->block_table : NULL,
                              .max_pages = pg ? pg->max_pages : 0, .page_size = pg ? pg->page_size : 0 };
    if (ref_decode(&rp, qd, kd, vd, od, ld)) {
        st = plan_fail(p, SPATTN_FAILED, "CPU reference: threads");
        goto out;
    }
    size_t i = 0;
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                uint16_t *row = (uint16_t *)o->data + b * o->stride_batch + t * o->stride_seq + h * o->stride_head;
                for (int d = 0; d < D; d++) row[d] = from_double(p, od[i++]);
            }
    i = 0;
    for (int b = 0; b < p->B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) lse->data[b * lse->stride_batch + h * lse->stride_head + t] = (float)ld[i++];
out:
    free(qd); free(kd); free(vd); free(od); free(ld);
    return st;
}

spattn_status spattn_decode(spattn_plan *p, const spattn_tensor *q, const spattn_tensor *k, const spattn_tensor *v,
                            const int32_t *kv_lens, int T, const spattn_paged_kv *pg, const spattn_tensor *o,
                            const spattn_lse *lse, void *workspace, size_t workspace_bytes, void *stream)
{
    const spattn_tensor *ts[4] = { q, k, v, o };
    static const char *const names[4] = { "q", "k_cache", "v_cache", "o" };
    if (!tensors_present(p, ts, names, 4)) return SPATTN_EINVAL;
    if (!lse || !lse->data) return plan_fail(p, SPATTN_EINVAL, "lse: no tensor");
    if (T < 1 || T > p->N)
        return plan_fail(p, SPATTN_EINVAL, "new_tokens %d: expected 1..%lld (the plan's seq_len, the cache's length)", T,
                         (long long)p->N);
    if (pg) {
        int ps = pg->page_size;
        if (ps < 16 || ps > 256 || (ps & (ps - 1)))
            return plan_fail(p, SPATTN_EINVAL, "paged: page_size %d must be a power of two in 16..256", ps);
        if (!pg->block_table) return plan_fail(p, SPATTN_EINVAL, "paged: no block_table");
        if ((int64_t)pg->max_pages * ps < p->N)
            return plan_fail(p, SPATTN_EINVAL, "paged: max_pages %d x page_size %d holds fewer than seq_len %lld tokens",
                             pg->max_pages, ps, (long long)p->N);
    }
    if (p->ctx->device == SPATTN_DEVICE_CPU) return cpu_decode(p, q, k, v, kv_lens, T, pg, o, lse);
    sp_err e = { 0 };
    plan_dec *pd;
    if (decode_slot(p, T, &pd, &e)) return keep(p->error, sizeof p->error, &e);
    const sp_kcfg *c = &pd->cfg;
    decode_args a;
    memset(&a, 0, sizeof a);
    a.splits = decode_plan_splits(p, c, T);
    size_t need = decode_workspace_bytes(c, p->B, p->spec.heads, T, a.splits);
    if (need && (!workspace || workspace_bytes < need))
        return plan_fail(p, SPATTN_EINVAL, "workspace: %zu bytes given, the decode needs %zu (spattn_decode_workspace_size)",
                         workspace ? workspace_bytes : 0, need);
    a.q = dev_tensor(q); a.k = dev_tensor(k); a.v = dev_tensor(v); a.o = dev_tensor(o);
    a.lse = (sp_dptr)(uintptr_t)lse->data;
    a.lse_sb = lse->stride_batch;
    a.lse_sh = lse->stride_head;
    a.bands = p->bandtab;
    a.kv_lens = (sp_dptr)(uintptr_t)kv_lens;
    a.block_table = pg ? (sp_dptr)(uintptr_t)pg->block_table : 0;
    a.max_pages = pg ? pg->max_pages : 0;
    a.page_size = pg ? pg->page_size : 0;
    a.batch = p->B;
    a.max_len = (int)p->N;
    a.new_tokens = T;
    a.heads = p->spec.heads;
    a.kv_heads = p->spec.kv_heads;
    a.pattern = &p->pattern;
    a.scale = (float)spec_scale(&p->spec);
    a.workspace = (sp_dptr)(uintptr_t)workspace;
    sp_gpu *g = &p->ctx->gpu;
    CUstream own = g->stream;
    g->stream = (CUstream)stream;
    int rc = decode_launch(g, pd->k->fn, pd->k->combine, c, &a, &e);
    g->stream = own;
    return rc ? keep(p->error, sizeof p->error, &e) : SPATTN_OK;
}

/* ---- tuning (runtime/tune.c) ------------------------------------------------- */

typedef struct {
    void (*fn)(void *user, const char *message, long done, long total);
    void *user;
} tune_relay;

static void tune_news(void *user, const tune_event *ev)
{
    const tune_relay *r = user;
    r->fn(r->user, ev->message, ev->type == TUNE_EV_STEP ? ev->done : 0, ev->type == TUNE_EV_STEP ? ev->total : 0);
}

static void tune_result_out(db *d, const tune_result *r, spattn_tune_result *out)
{
    memset(out, 0, sizeof *out);
    out->kind = r->kind == SP_KIND_BWD ? (r->deterministic ? SPATTN_TUNE_BWD_DET : SPATTN_TUNE_BWD)
                : r->kind == SP_KIND_DEC ? SPATTN_TUNE_DEC : SPATTN_TUNE_FWD;
    out->new_tokens = r->new_tokens;
    out->batch = (int)r->batch;
    out->seq_len = r->seq_len;
    out->seq_bucket = db_seq_bucket(r->seq_len);
    out->outcome = (spattn_tune_outcome)r->outcome;
    out->checked = r->checked;
    out->rejected = r->rejected;
    out->pruned = r->pruned;
    if (r->outcome != TUNE_SAVED && r->outcome != TUNE_NOT_SAVED) return;
    snprintf(out->tile, sizeof out->tile, "%s", r->row.tile);
    out->median_ms = r->row.median_ms;
    out->eff_tflops = r->row.eff_tflops;
    snprintf(out->created_at, sizeof out->created_at, "%s", r->row.created_at);
    strbuf sb = STRBUF_INIT;
    sb_init(&sb);
    sp_err je = { 0 };
    if (db_row_json(d, &r->row, 0, &sb, &je) == 0 && sb.len > 0 && sb.len < sizeof out->json) {
        sb.buf[sb.len - 1] = 0;   /* the newline */
        snprintf(out->json, sizeof out->json, "%s", sb.buf);
    }
    sb_free(&sb);
}

/* The keys of opts (defaults from the spec) into batches, lens and (decode)
 * Ts; 0 or a status. */
static spattn_status tune_keys(spattn_context *c, const spattn_tune_options *q, const sp_spec *s, int64_t *batches,
                               int *nb, int64_t *lens, int *nl, int64_t *Ts, int *nt)
{
    *nb = *nl = *nt = 0;
    if (q->new_tokens && q->n_new_tokens > 0) {
        if (q->n_new_tokens > SP_TUNE_MAX_LIST)
            return ctx_fail(c, SPATTN_EINVAL, "n_new_tokens %d: at most %d", q->n_new_tokens, SP_TUNE_MAX_LIST);
        for (int i = 0; i < q->n_new_tokens; i++) {
            if (q->new_tokens[i] < 1 || q->new_tokens[i] > DB_MAX_NEW_TOKENS)
                return ctx_fail(c, SPATTN_EINVAL, "new_tokens[%d] = %d: expected 1..%d", i, q->new_tokens[i],
                                DB_MAX_NEW_TOKENS);
            Ts[(*nt)++] = q->new_tokens[i];
        }
    } else Ts[(*nt)++] = 1;
    if (q->batches && q->n_batches > 0) {
        if (q->n_batches > SP_TUNE_MAX_LIST) return ctx_fail(c, SPATTN_EINVAL, "n_batches %d: at most %d", q->n_batches, SP_TUNE_MAX_LIST);
        for (int i = 0; i < q->n_batches; i++) {
            if (q->batches[i] < 1 || q->batches[i] > (1 << 20))
                return ctx_fail(c, SPATTN_EINVAL, "batches[%d] = %d: expected 1..2^20", i, q->batches[i]);
            batches[(*nb)++] = q->batches[i];
        }
    } else {
        for (int i = 0; i < s->n_batch && i < SP_TUNE_MAX_LIST; i++) batches[(*nb)++] = s->batch[i];
        if (*nb == 0) batches[(*nb)++] = 1;
    }
    if (q->seq_lens && q->n_seq_lens > 0) {
        if (q->n_seq_lens > SP_TUNE_MAX_LIST) return ctx_fail(c, SPATTN_EINVAL, "n_seq_lens %d: at most %d", q->n_seq_lens, SP_TUNE_MAX_LIST);
        for (int i = 0; i < q->n_seq_lens; i++) {
            if (q->seq_lens[i] < 1 || q->seq_lens[i] > (1 << 24))
                return ctx_fail(c, SPATTN_EINVAL, "seq_lens[%d] = %lld: expected 1..2^24", i, (long long)q->seq_lens[i]);
            lens[(*nl)++] = q->seq_lens[i];
        }
    } else {
        for (int i = 0; i < s->n_seq_len && i < SP_TUNE_MAX_LIST; i++) lens[(*nl)++] = s->seq_len[i];
        if (*nl == 0) lens[(*nl)++] = 4096;
    }
    for (int i = 0; (q->kinds & SPATTN_TUNE_DEC) && i < *nt; i++)
        for (int j = 0; j < *nl; j++)
            if (Ts[i] > lens[j])
                return ctx_fail(c, SPATTN_EINVAL, "new_tokens %lld exceeds seq_len %lld (the cache's length)",
                                (long long)Ts[i], (long long)lens[j]);
    return SPATTN_OK;
}

spattn_status spattn_tune(spattn_context *c, const char *spec_path, const char *yaml, size_t yaml_len,
                          int layer_index, const spattn_tune_options *opts, spattn_tune_result *results,
                          int max_results, int *n_results)
{
    if (n_results) *n_results = 0;
    if (!c) return SPATTN_EINVAL;
    spattn_tune_options q;
    memset(&q, 0, sizeof q);
    if (opts) q = *opts;
    if (q.kinds == 0) q.kinds = SPATTN_TUNE_FWD;
    if (q.kinds & ~(SPATTN_TUNE_FWD | SPATTN_TUNE_BWD | SPATTN_TUNE_BWD_DET | SPATTN_TUNE_DEC))
        return ctx_fail(c, SPATTN_EINVAL, "kinds %d: expected a combination of SPATTN_TUNE_FWD, SPATTN_TUNE_BWD, "
                        "SPATTN_TUNE_BWD_DET and SPATTN_TUNE_DEC", q.kinds);
    if (q.budget_s == 0) q.budget_s = 600;
    if (!(q.budget_s > 0)) return ctx_fail(c, SPATTN_EINVAL, "budget_s must be a positive number of seconds");
    if (q.iters < 0 || q.threads < 0) return ctx_fail(c, SPATTN_EINVAL, "iters and threads must be >= 0");
    if (q.iters == 0) q.iters = 20;
    if (q.threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        q.threads = ncpu > 0 ? (int)ncpu : 1;
    }
    if (!spec_path && !yaml) return ctx_fail(c, SPATTN_EINVAL, "spattn_tune: no spec (a path or a YAML text)");
    if (max_results < 0 || (max_results > 0 && !results)) return ctx_fail(c, SPATTN_EINVAL, "results: none for max_results %d", max_results);

    /* The spec first: a bad one is SPATTN_EINVAL before any GPU is needed. */
    sp_err e = { 0 };
    sp_spec spec;
    memset(&spec, 0, sizeof spec);
    if (spec_path ? spec_load(spec_path, &spec, &e) : spec_parse(yaml, yaml_len, "spec", &spec, &e))
        return keep(c->error, sizeof c->error, &e);
    spattn_status st = SPATTN_OK;
    int64_t batches[SP_TUNE_MAX_LIST], lens[SP_TUNE_MAX_LIST], Ts[SP_TUNE_MAX_LIST];
    int nb, nl, nt;
    tune_result *res = NULL;
    db *d = NULL;
    if (layer_index >= 0 && spec.num_layers > 0 && layer_index >= spec.num_layers) {
        st = ctx_fail(c, SPATTN_EINVAL, "layer_index %d: the spec has %d layers", layer_index, spec.num_layers);
        goto out;
    }
    if ((st = tune_keys(c, &q, &spec, batches, &nb, lens, &nl, Ts, &nt))) goto out;
    int fake = tune_fake_requested();
    if (!fake && c->device == SPATTN_DEVICE_CPU) {
        st = ctx_fail(c, SPATTN_EGPU, "spattn_tune needs a GPU context: tuning times kernels on the GPU");
        goto out;
    }
    sp_gpu fake_gpu, *g = &c->gpu;
    if (fake) { tune_fake_gpu(&fake_gpu); g = &fake_gpu; }
    tune_kind kinds[4];
    int nkinds = 0;
    if (q.kinds & SPATTN_TUNE_FWD) kinds[nkinds++] = (tune_kind){ SP_KIND_FWD, 0 };
    if (q.kinds & SPATTN_TUNE_BWD) kinds[nkinds++] = (tune_kind){ SP_KIND_BWD, 0 };
    if (q.kinds & SPATTN_TUNE_BWD_DET) kinds[nkinds++] = (tune_kind){ SP_KIND_BWD, 1 };
    if (q.kinds & SPATTN_TUNE_DEC) kinds[nkinds++] = (tune_kind){ SP_KIND_DEC, 0 };
    const sp_pattern *pat = layer_index < 0 ? &spec.pattern : spec_layer_pattern(&spec, layer_index);
    tune_relay relay = { q.progress, q.user };
    tune_opts to = { .spec = &spec, .pattern = pat, .kinds = kinds, .nkinds = nkinds, .batches = batches,
                     .seq_lens = lens, .nbatches = nb, .nseq_lens = nl, .new_tokens = Ts, .nnew_tokens = nt,
                     .budget_s = q.budget_s, .force = q.force, .threads = q.threads, .iters = q.iters, .fake = fake,
                     .stop = q.stop, .progress = q.progress ? tune_news : NULL, .user = &relay };
    int nkeys = tune_key_count(&to), nres = 0;
    res = calloc((size_t)nkeys, sizeof *res);
    if (!res) { st = ctx_fail(c, SPATTN_FAILED, "out of memory"); goto out; }
    if (db_open(c->db_path, 0, &d, &e)) { st = keep(c->error, sizeof c->error, &e); goto out; }
    tune_summary sum;
    int rc = tune_run(g, d, &to, res, nkeys, &nres, &sum, &e);
    for (int i = 0; i < nres && i < max_results; i++) tune_result_out(d, &res[i], &results[i]);
    if (n_results) *n_results = nres < max_results ? nres : max_results;
    if (rc) st = keep(c->error, sizeof c->error, &e);
    else if (sum.stopped) st = ctx_fail(c, SPATTN_FAILED, "stopped: %d key(s) saved", sum.saved);
out:
    db_close(d);
    free(res);
    spec_free(&spec);
    return st;
}
