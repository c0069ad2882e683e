/* spattn run --layer: one attention layer's forward, in three stages
 * (runtime/layer.h runs them, on the GPU or the float64 CPU reference, and
 * times each):
 *
 *     x [B*N, d_model] --(Wq, Wk, Wv: 3 GEMMs)--> Q, K, V --(band attention)--> O --(Wo: GEMM)--> y
 *
 * This file holds the command's side: the inputs, the --check against the
 * CPU layer, and the report.  x and the weights are random from --seed (x
 * normal(0, 1), each W normal with std 1/sqrt(fan_in)) or read from .npy
 * files; either way rounded to the spec's dtype once, kept as 16-bit words
 * (uploaded) and as doubles of the same values (for the CPU reference and
 * --check). */
#include "cmd/layer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/gpu_common.h"
#include "codegen/bands.h"
#include "common/half.h"
#include "common/json.h"
#include "common/mem.h"
#include "runtime/compare.h"
#include "runtime/layer.h"
#include "runtime/layer_ref.h"
#include "runtime/npy.h"
#include "runtime/rng.h"

/* The weights draw from their own stream, so reading x from a file (or
 * not) leaves the random weights of a seed unchanged, and vice versa. */
#define WEIGHT_STREAM 0x9e3779b97f4a7c15ull

/* --check bounds on y's relative L2 error.  Looser than DESIGN.md's bounds
 * for one attention (bf16 1e-2, fp16 2e-3) because a layer chains three
 * roundings to the dtype (Q/K/V, O, y) and two more GEMMs on top of the
 * attention kernel's own error. */
#define CHECK_BOUND_BF16 2e-2
#define CHECK_BOUND_FP16 5e-3

enum { W_Q = LAYER_WQ, W_K = LAYER_WK, W_V = LAYER_WV, W_O = LAYER_WO, W_COUNT = LAYER_NW };
static const char *const weight_name[W_COUNT] = { "wq", "wk", "wv", "wo" };

/* ---------------------------------------------------------------------------
 * The host side: shape, bands, inputs */

typedef struct {
    gpu_problem hp;              /* host-only (gpu_problem_spec): spec, pattern, bands, pairs, ratio */
    int B, N, dm, H, KVH, D;
    int qw, kw;                  /* row widths H*D and KVH*D */
    size_t T;                    /* tokens B*N */
    sp_dtype dtype;
    size_t n[W_COUNT];           /* elements of each weight */
    uint16_t *x16, *w16[W_COUNT];
    double *x, *w[W_COUNT];
    char wpath[W_COUNT][1024];
    sp_band_list *dense_bands;   /* H entries: dense causal, for the CPU's dense layer */
} layer_host;

static void host_free(layer_host *h)
{
    free(h->x16); free(h->x);
    for (int i = 0; i < W_COUNT; i++) { free(h->w16[i]); free(h->w[i]); }
    free(h->dense_bands);
    gpu_problem_close(&h->hp);
    memset(h, 0, sizeof *h);
}

static layer_params host_params(const layer_host *h)
{
    layer_params p = { h->x, h->w[W_Q], h->w[W_K], h->w[W_V], h->w[W_O] };
    return p;
}

static layer_problem host_problem(const layer_host *h, const sp_band_list *bands, int threads)
{
    layer_problem p = { .B = h->B, .N = h->N, .d_model = h->dm, .H = h->H, .KVH = h->KVH, .D = h->D,
                        .dtype = h->dtype, .scale = spec_scale(&h->hp.spec), .bands = bands, .threads = threads };
    return p;
}

/* The model width: --d-model, else wq.npy's rows, else x.npy's last
 * dimension, else heads * head_dim (the usual transformer). */
static int pick_d_model(const layer_opts *o, const layer_host *h, const npy_array *xa, const npy_array *wa,
                        sp_err *e)
{
    int64_t dm = h->H * (int64_t)h->D;
    const char *from = NULL;
    if (o->d_model) dm = o->d_model;
    else if (o->weights_dir && wa[W_Q].ndim == 2) { dm = wa[W_Q].shape[0]; from = h->wpath[W_Q]; }
    else if (o->x_path && xa->ndim == 3) { dm = xa->shape[2]; from = o->x_path; }
    if (dm < 1 || dm > (1 << 20))
        return sp_fail_at(e, SP_EXIT_USAGE, from ? from : "", 0, 0, "d_model %lld is out of range (1 to 1048576)",
                          (long long)dm);
    return (int)dm;
}

/* A file's values rounded to the dtype, after its shape is checked. */
static int take_npy(const layer_host *h, const npy_array *a, const char *path, int ndim, const int64_t *shape,
                    const char *what, uint16_t *bits, double *val, sp_err *e)
{
    if (npy_expect_shape(a, path, ndim, shape, e)) {
        if (ndim == 2) sp_hint(e, "%s takes [%s] = [%lld, %lld]", what, strcmp(what, "wo") == 0 ?
                               "heads*head_dim, d_model" : strcmp(what, "wq") == 0 ? "d_model, heads*head_dim" :
                               "d_model, kv_heads*head_dim", (long long)shape[0], (long long)shape[1]);
        else sp_hint(e, "--x takes [batch, seq_len, d_model] = [%lld, %lld, %lld]", (long long)shape[0],
                     (long long)shape[1], (long long)shape[2]);
        return -1;
    }
    for (size_t i = 0; i < a->count; i++) val[i] = rng_round_dtype(h->dtype, npy_get(a, i), &bits[i]);
    return 0;
}

/* Host bytes a layer run allocates: x and the weights in both forms (16-bit
 * and double), y as floats; on the CPU also y as doubles and the
 * reference's Q, K, V, O and LSE in doubles (runtime/layer_ref.c). */
static uint64_t layer_bytes(const layer_host *h, size_t nx, int on_cpu)
{
    uint64_t w = 0;
    for (int i = 0; i < W_COUNT; i++) w = sp_bytes_add(w, h->n[i]);
    uint64_t b = sp_bytes_mul(sp_bytes_add(nx, w), 2 + 8);
    b = sp_bytes_add(b, sp_bytes_mul(nx, on_cpu ? 4 + 8 : 4));
    if (on_cpu) {
        uint64_t qkvo = sp_bytes_mul(h->T, 2 * (uint64_t)h->qw + 2 * (uint64_t)h->kw);
        uint64_t lse = sp_bytes_mul(h->T, (uint64_t)h->H);
        b = sp_bytes_add(b, sp_bytes_mul(sp_bytes_add(qkvo, lse), 8));
    }
    return b;
}

/* Spec, shape, bands and inputs; every input file is read and checked here,
 * before any GPU work, so a wrong shape is exit 2 on any machine. */
static int host_setup(const layer_opts *o, layer_host *h, sp_err *e)
{
    memset(h, 0, sizeof *h);
    npy_array xa, wa[W_COUNT];
    memset(&xa, 0, sizeof xa);
    memset(wa, 0, sizeof wa);
    int rc = -1;

    if (o->x_path && npy_read(o->x_path, &xa, e)) goto done;
    for (int i = 0; o->weights_dir && i < W_COUNT; i++) {
        snprintf(h->wpath[i], sizeof h->wpath[i], "%s/%s.npy", o->weights_dir, weight_name[i]);
        if (npy_read(h->wpath[i], &wa[i], e)) {
            sp_hint(e, "--weights DIR holds wq.npy, wk.npy, wv.npy and wo.npy");
            goto done;
        }
    }
    int64_t B = o->batch, N = o->seq_len;
    if (o->x_path && (!B || !N)) {   /* x sets the shape unless --batch / --seq-len do */
        if (xa.ndim != 3) {
            sp_fail_at(e, SP_EXIT_USAGE, o->x_path, 0, 0, "expected a 3-d array [batch, seq_len, d_model], got %d-d",
                       xa.ndim);
            goto done;
        }
        if (!B) B = xa.shape[0];
        if (!N) N = xa.shape[1];
        if (B < 1 || N < 1 || B > 65536 || N > (1 << 24)) {
            sp_fail_at(e, SP_EXIT_USAGE, o->x_path, 0, 0, "batch %lld and seq_len %lld: out of range", (long long)B,
                       (long long)N);
            goto done;
        }
    }
    gpu_opts go;
    gpu_opts_init(&go);
    go.spec_path = o->spec_path;
    go.batch = B;
    go.seq_len = N;
    go.layer_index = o->layer_index;
    go.tile = o->tile;
    go.db_path = o->db_path;
    go.gpu = o->gpu;
    if (gpu_problem_spec(&go, &h->hp, e)) goto done;
    const sp_spec *s = &h->hp.spec;
    h->B = h->hp.ga.B;
    h->N = h->hp.ga.N;
    h->H = s->heads;
    h->KVH = s->kv_heads;
    h->D = s->head_dim;
    h->dtype = s->dtype;
    h->qw = h->H * h->D;
    h->kw = h->KVH * h->D;
    h->T = (size_t)h->B * (size_t)h->N;
    int dm = pick_d_model(o, h, &xa, wa, e);
    if (dm < 0) goto done;
    h->dm = dm;
    layer_problem lp = host_problem(h, h->hp.bands, o->threads);
    if (layer_problem_check(&lp, e)) goto done;

    h->n[W_Q] = (size_t)dm * h->qw;
    h->n[W_K] = h->n[W_V] = (size_t)dm * h->kw;
    h->n[W_O] = (size_t)h->qw * dm;
    size_t nx;
    if (sp_mul_size(&nx, e, h->T, (size_t)dm, (size_t)0) ||
        sp_mem_check(layer_bytes(h, nx, !o->on_gpu), o->on_gpu ? "the layer's host buffers" : "the CPU layer run", e))
        goto done;
    h->x16 = malloc(h->T * dm * sizeof *h->x16);
    h->x = malloc(h->T * dm * sizeof *h->x);
    h->dense_bands = calloc((size_t)h->H, sizeof *h->dense_bands);
    int ok = h->x16 && h->x && h->dense_bands;
    for (int i = 0; i < W_COUNT; i++) {
        h->w16[i] = malloc(h->n[i] * sizeof *h->w16[i]);
        h->w[i] = malloc(h->n[i] * sizeof *h->w[i]);
        ok = ok && h->w16[i] && h->w[i];
    }
    if (!ok) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory for the layer's inputs (%zu x %d tokens, %d x %d weights)", h->T, dm,
                dm, h->qw + 2 * h->kw);
        goto done;
    }

    rng rx, rw;
    rng_seed(&rx, (uint64_t)o->seed);
    rng_seed(&rw, (uint64_t)o->seed ^ WEIGHT_STREAM);
    if (o->x_path) {
        int64_t want[3] = { h->B, h->N, dm };
        if (take_npy(h, &xa, o->x_path, 3, want, "x", h->x16, h->x, e)) goto done;
    } else
        layer_fill_normal(&rx, h->dtype, h->T * dm, 1.0, h->x16, h->x);
    const int64_t wshape[W_COUNT][2] = { { dm, h->qw }, { dm, h->kw }, { dm, h->kw }, { h->qw, dm } };
    for (int i = 0; i < W_COUNT; i++) {
        if (o->weights_dir) {
            if (take_npy(h, &wa[i], h->wpath[i], 2, wshape[i], weight_name[i], h->w16[i], h->w[i], e)) goto done;
        } else
            layer_fill_normal(&rw, h->dtype, h->n[i], 1.0 / sqrt((double)wshape[i][0]), h->w16[i], h->w[i]);
    }
    sp_pattern dense = { .kind = SP_DENSE };
    for (int i = 0; i < h->H; i++) bands_head(&dense, h->H, i, h->N, &h->dense_bands[i]);
    rc = 0;
done:
    npy_free(&xa);
    for (int i = 0; i < W_COUNT; i++) npy_free(&wa[i]);
    return rc;
}

/* ---------------------------------------------------------------------------
 * What a run produced */

typedef struct {
    char detail[160];                /* "float64 reference", or the GPU's name and arch */
    char kernel[160], config_source[160];
    int iters;
    layer_stage_ms band, dense;
    int dense_ran;
    float *y;                        /* [B, N, d_model] */
    int checked, pass;
    cmp_result cmp;
    double bound;
} layer_result;

/* ---------------------------------------------------------------------------
 * CPU: the float64 reference, timed */

static int cpu_layer(const layer_opts *o, const layer_host *h, const sp_band_list *bands, int iters,
                     layer_stage_ms *ms, double *y, sp_err *e)
{
    layer_problem lp = host_problem(h, bands, o->threads);
    layer_params w = host_params(h);
    return layer_cpu_time(&lp, &w, iters, y, ms, e);
}

static int run_cpu_layer(const layer_opts *o, const layer_host *h, layer_result *r, sp_err *e)
{
    size_t ny = h->T * h->dm;
    double *y = malloc(ny * sizeof *y);
    r->y = malloc(ny * sizeof *r->y);
    if (!y || !r->y) { free(y); return sp_fail(e, SP_EXIT_FAIL, "out of memory for y (%zu elements)", ny); }
    r->iters = o->iters > 0 ? o->iters : 1;
    snprintf(r->detail, sizeof r->detail, "float64 reference");
    int rc = cpu_layer(o, h, h->hp.bands, r->iters, &r->band, y, e);
    for (size_t i = 0; !rc && i < ny; i++) r->y[i] = (float)y[i];
    if (!rc && !o->no_dense) {
        rc = cpu_layer(o, h, h->dense_bands, r->iters, &r->dense, y, e);
        r->dense_ran = rc == 0;
    }
    free(y);
    return rc;
}

/* ---------------------------------------------------------------------------
 * GPU */

/* The float64 CPU layer on the same rounded inputs; y's rel L2 against it. */
static int check_layer(const layer_opts *o, const layer_host *h, layer_result *r, sp_err *e)
{
    size_t ny = h->T * h->dm;
    double *ref = malloc(ny * sizeof *ref);
    if (!ref) return sp_fail(e, SP_EXIT_FAIL, "out of memory for the reference y (%zu elements)", ny);
    fprintf(stderr, "spattn: --check: computing the float64 CPU layer (B=%d N=%d d_model=%d)\n", h->B, h->N, h->dm);
    layer_problem lp = host_problem(h, h->hp.bands, o->threads);
    layer_params w = host_params(h);
    int rc = layer_ref_forward(&lp, &w, ref, NULL, e);
    if (!rc) {
        cmp_arrays(r->y, ref, ny, &r->cmp);
        r->bound = h->dtype == SP_BF16 ? CHECK_BOUND_BF16 : CHECK_BOUND_FP16;
        r->pass = cmp_pass(&r->cmp, r->bound);
        r->checked = 1;
    }
    free(ref);
    return rc;
}

static int run_gpu_layer(const layer_opts *o, const layer_host *h, layer_result *r, sp_err *e)
{
    r->iters = o->iters > 0 ? o->iters : 50;
    r->y = malloc(h->T * h->dm * sizeof *r->y);
    if (!r->y) return sp_fail(e, SP_EXIT_FAIL, "out of memory for y");
    sp_gpu g;
    if (cu_open(o->gpu, &g, e)) return -1;
    snprintf(r->detail, sizeof r->detail, "%.100s, sm_%d", g.name, g.sm);
    layer_gpu_job j = { &h->hp.spec, &h->hp.pattern, h->B, h->N, h->dm, h->x16, { 0 }, o->tile, o->db_path,
                        r->iters, !o->no_dense };
    for (int i = 0; i < W_COUNT; i++) j.w16[i] = h->w16[i];
    layer_gpu_result lr;
    int rc = layer_gpu_run(&g, &j, r->y, &lr, e);
    cu_close(&g);
    if (rc) return -1;
    snprintf(r->kernel, sizeof r->kernel, "%s", lr.kernel);
    snprintf(r->config_source, sizeof r->config_source, "%s", lr.config_source);
    r->band = lr.band;
    r->dense = lr.dense;
    r->dense_ran = lr.dense_ran;
    return o->check ? check_layer(o, h, r, e) : 0;
}

/* ---------------------------------------------------------------------------
 * Output */

/* Projection FLOPs (2 per multiply-add) and the attention's (allowed pairs). */
static double qkv_flops(const layer_host *h) { return 2.0 * (double)h->T * h->dm * (h->qw + 2.0 * h->kw); }
static double out_flops(const layer_host *h) { return 2.0 * (double)h->T * h->qw * h->dm; }

/* The layer speedup if the attention took exactly ratio x the dense
 * attention's time and the projections stayed as they are.  Both sides are
 * sums of the dense stage medians (a median of whole layers is not the sum
 * of the stages' medians), so the result lies in [1, 1 / ratio]. */
static double ideal_layer_speedup(const layer_result *r, double ratio)
{
    const layer_stage_ms *d = &r->dense;
    return (d->qkv + d->out + d->attn) / (d->qkv + d->out + d->attn * ratio);
}

static void print_inputs(const layer_opts *o)
{
    printf("inputs: x ");
    if (o->x_path) printf("from %s", o->x_path);
    else printf("random normal(0, 1)");
    printf(", weights ");
    if (o->weights_dir) printf("from %s", o->weights_dir);
    else printf("random normal(0, 1/sqrt(fan_in))");
    if (!o->x_path || !o->weights_dir) printf(", seed %lld", (long long)o->seed);
    printf("\n");
}

static void print_human(const layer_opts *o, const layer_host *h, const layer_result *r)
{
    const gpu_problem *p = &h->hp;
    printf("spec: %s (%s)\n", p->spec.name, p->spec.path);
    printf("layer: B=%d N=%d d_model=%d H=%d KVH=%d D=%d\n", h->B, h->N, h->dm, h->H, h->KVH, h->D);
    if (o->layer_index >= 0) printf("pattern: %s (layer %d)\n", sp_pattern_name(p->pattern.kind), o->layer_index);
    else printf("pattern: %s\n", sp_pattern_name(p->pattern.kind));
    printf("dtype: %s\n", sp_dtype_name(h->dtype));
    printf("device: %s (%s)%s%s\n", o->on_gpu ? "gpu" : "cpu", r->detail, o->device_reason[0] ? ", auto: " : "",
           o->device_reason);
    print_inputs(o);
    printf("work ratio: %.6f (%lld allowed pairs)\n", p->ratio, (long long)p->pairs);
    if (o->on_gpu) printf("kernel: %s (%s)\n", r->kernel, r->config_source);
    printf("times (ms, median of %d):\n", r->iters);
    printf("  %-20s %14s", "stage", "band");
    if (r->dense_ran) printf(" %14s", "dense causal");
    printf("\n");
    const char *names[4] = { "qkv projection", "attention", "output projection", "layer" };
    const double band[4] = { r->band.qkv, r->band.attn, r->band.out, r->band.layer };
    const double dense[4] = { r->dense.qkv, r->dense.attn, r->dense.out, r->dense.layer };
    for (int s = 0; s < 4; s++) {
        printf("  %-20s %14.4f", names[s], band[s]);
        if (r->dense_ran) printf(" %14.4f", dense[s]);
        printf("\n");
    }
    printf("attention share: %.1f%%", 100.0 * r->band.attn / r->band.layer);
    if (r->dense_ran) printf(" (dense causal %.1f%%)", 100.0 * r->dense.attn / r->dense.layer);
    printf("\n");
    if (r->dense_ran)
        printf("layer speedup: %.2fx (ideal %.2fx); attention %.2fx (ideal %.2fx)\n", r->dense.layer / r->band.layer,
               ideal_layer_speedup(r, p->ratio), r->dense.attn / r->band.attn, 1.0 / p->ratio);
    if (o->on_gpu)
        printf("effective: qkv %.1f, attention %.1f, output %.1f TFLOP/s\n", qkv_flops(h) / (r->band.qkv * 1e9),
               p->eff_flops_fwd / (r->band.attn * 1e9), out_flops(h) / (r->band.out * 1e9));
    if (r->checked)
        printf("check: rel L2 %.3e, max abs %.3e, nan %zu vs float64 CPU layer (bound %.0e): %s\n", r->cmp.rel_l2,
               r->cmp.max_abs, r->cmp.nan_count + r->cmp.inf_mismatch, r->bound, r->pass ? "PASS" : "FAIL");
    double sum = 0, abs_sum = 0;
    for (size_t i = 0; i < h->T * h->dm; i++) { sum += r->y[i]; abs_sum += fabs(r->y[i]); }
    printf("checksum: sum %.6e, sum|y| %.6e\n", sum, abs_sum);
    if (o->out_path) printf("output: %s\n", o->out_path);
}

static void json_stages(jw *w, const char *key, const layer_stage_ms *s)
{
    jw_obj(w, key);
    jw_num(w, "qkv_ms", s->qkv);
    jw_num(w, "attention_ms", s->attn);
    jw_num(w, "out_proj_ms", s->out);
    jw_num(w, "layer_ms", s->layer);
    jw_num(w, "attention_share", s->attn / s->layer);
    jw_end(w);
}

static void print_json(const layer_opts *o, const layer_host *h, const layer_result *r)
{
    const gpu_problem *p = &h->hp;
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w, NULL);
    jw_str(&w, "mode", "layer");
    jw_str(&w, "spec", p->spec.name);
    jw_str(&w, "spec_path", p->spec.path);
    jw_int(&w, "batch", h->B);
    jw_int(&w, "seq_len", h->N);
    jw_int(&w, "d_model", h->dm);
    jw_int(&w, "heads", h->H);
    jw_int(&w, "kv_heads", h->KVH);
    jw_int(&w, "head_dim", h->D);
    jw_str(&w, "pattern", sp_pattern_name(p->pattern.kind));
    if (o->layer_index >= 0) jw_int(&w, "layer_index", o->layer_index);
    else jw_null(&w, "layer_index");
    jw_str(&w, "dtype", sp_dtype_name(h->dtype));
    jw_str(&w, "device", o->on_gpu ? "gpu" : "cpu");
    jw_str(&w, "device_detail", r->detail);
    jw_str(&w, "device_reason", o->device_reason[0] ? o->device_reason : NULL);
    jw_str(&w, "x", o->x_path);
    jw_str(&w, "weights", o->weights_dir);
    if (o->x_path && o->weights_dir) jw_null(&w, "seed");
    else jw_int(&w, "seed", o->seed);
    jw_num(&w, "work_ratio", p->ratio);
    jw_int(&w, "allowed_pairs", p->pairs);
    jw_obj(&w, "flops");
    jw_num(&w, "qkv", qkv_flops(h));
    jw_num(&w, "attention", p->eff_flops_fwd);
    jw_num(&w, "out_proj", out_flops(h));
    jw_end(&w);
    jw_int(&w, "iters", r->iters);
    jw_str(&w, "kernel", o->on_gpu ? r->kernel : NULL);
    jw_str(&w, "config_source", o->on_gpu ? r->config_source : NULL);
    json_stages(&w, "band", &r->band);
    if (r->dense_ran) {
        json_stages(&w, "dense", &r->dense);
        jw_num(&w, "layer_speedup", r->dense.layer / r->band.layer);
        jw_num(&w, "ideal_layer_speedup", ideal_layer_speedup(r, p->ratio));
        jw_num(&w, "attention_speedup", r->dense.attn / r->band.attn);
    } else {
        jw_null(&w, "dense");
        jw_null(&w, "layer_speedup");
        jw_null(&w, "ideal_layer_speedup");
        jw_null(&w, "attention_speedup");
    }
    jw_num(&w, "ideal_attention_speedup", 1.0 / p->ratio);
    if (r->checked) {
        jw_obj(&w, "check");
        jw_str(&w, "reference", "float64 CPU layer");
        jw_num(&w, "rel_l2", r->cmp.rel_l2);
        jw_num(&w, "max_abs", r->cmp.max_abs);
        jw_int(&w, "nan", (int64_t)(r->cmp.nan_count + r->cmp.inf_mismatch));
        jw_num(&w, "bound", r->bound);
        jw_bool(&w, "pass", r->pass);
        jw_end(&w);
    } else
        jw_null(&w, "check");
    double sum = 0, abs_sum = 0;
    for (size_t i = 0; i < h->T * h->dm; i++) { sum += r->y[i]; abs_sum += fabs(r->y[i]); }
    jw_obj(&w, "checksum");
    jw_num(&w, "sum", sum);
    jw_num(&w, "abs_sum", abs_sum);
    jw_end(&w);
    jw_str(&w, "output", o->out_path);
    jw_end(&w);
    jw_finish(&w);
}

/* ---------------------------------------------------------------------------
 * The entry point */

int run_layer(const layer_opts *o, sp_err *e)
{
    if (o->check && !o->on_gpu) {
        sp_fail(e, SP_EXIT_USAGE, "--check compares the GPU layer with the float64 CPU layer; this run is on the CPU");
        sp_hint(e, "run on a GPU (--device gpu), or drop --check: the CPU run is the reference itself");
        return SP_EXIT_USAGE;
    }
    sp_out out;
    const char *what = "-o";
    if (cmd_check_outputs(&out, &o->out_path, &what, 1, e)) return SP_EXIT_USAGE;
    layer_host h;
    layer_result r;
    memset(&r, 0, sizeof r);
    int rc = host_setup(o, &h, e);
    if (rc == 0) rc = o->on_gpu ? run_gpu_layer(o, &h, &r, e) : run_cpu_layer(o, &h, &r, e);
    if (rc == 0 && o->out_path) {
        npy_array a = { .dtype = NPY_F32, .ndim = 3, .shape = { h.B, h.N, h.dm }, .count = h.T * h.dm, .data = r.y };
        rc = npy_stage(&out, &a, e) || sp_outs_commit(&out, 1, e) ? -1 : 0;
    }
    if (rc == 0) {
        if (o->json) print_json(o, &h, &r);
        else print_human(o, &h, &r);
    }
    free(r.y);
    host_free(&h);
    if (rc) return e->code ? e->code : SP_EXIT_FAIL;
    return r.checked && !r.pass ? SP_EXIT_FAIL : SP_EXIT_OK;
}
