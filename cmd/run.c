/* spattn run: run the attention forward of a spec once (or --iters times)
 * on one device, time it, print a checksum, optionally save O and LSE.
 *
 * The command is three steps, each a function, so a device is one branch:
 *   1. problem_load: spec, shape, the layer's bands, and the inputs (random
 *      from --seed, or --q/--k/--v .npy files), rounded to the spec's dtype
 *      and kept in both forms: 16-bit words (what a GPU kernel gets) and
 *      doubles of the same values (what the CPU reference gets);
 *   2. run_cpu (or run_gpu): fills a run_result (time, O, LSE);
 *   3. print_human / print_json and the -o / --lse-out files.
 * A GPU path adds run_gpu(opts, problem, result, e) next to run_cpu and a
 * case in pick_device; nothing else changes.
 *
 * --layer runs a whole attention layer instead (cmd/layer.c): this file
 * only parses its flags, refuses those that do not apply, picks the device
 * and hands over (run_layer_branch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "cmd/decode.h"
#include "cmd/gpu_common.h"
#include "cmd/layer.h"
#include "codegen/bands.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/mem.h"
#include "runtime/npy.h"
#include "runtime/packing.h"
#include "runtime/ref.h"
#include "runtime/rng.h"

static const opt_cmd run_cmd = {
    "run",
    "spattn run SPEC [--device auto|cpu|gpu] [--batch B] [--seq-len N | --seq-lens LIST] "
    "[--seed S | --q Q.npy --k K.npy --v V.npy] [-o OUT.npy] [--layer [--weights DIR] [--x X.npy] [--check]] [options]\n"
    "       spattn run SPEC --decode --kv-len N [--new-tokens T] [--batch B] [--kv-lens L,L,...] [--page-size P] "
    "[--q Q.npy --k K.npy --v V.npy] [-o O.npy] [options]",
    "Run the attention forward of SPEC (or, with --layer, a whole attention layer) on the GPU or the float64 "
    "CPU reference, time it and print a checksum.  --seq-lens: packed sequences, tensors [total, heads, head_dim].",
    1, 1,
};

/* ---------------------------------------------------------------------------
 * The parsed command line */

typedef struct {
    const char *spec_path;
    const char *device;              /* "auto", "cpu" or "gpu" */
    int gpu;                         /* --gpu N: device ordinal; -1 when not given (GPU 0) */
    int64_t batch, seq_len;          /* 0: from the spec (or from --q's shape) */
    const char *seq_lens;            /* --seq-lens: packed sequences (parsed into lens, n_lens) */
    int64_t *lens;
    int n_lens;
    int layer_index;                 /* -1: the spec's default pattern */
    int64_t seed;
    const char *q_path, *k_path, *v_path;
    const char *out_path, *lse_path;
    const char *do_path;             /* fwdbwd: dO from .npy (default random from seed + 7) */
    const char *dq_path, *dk_path, *dv_path;   /* fwdbwd: gradients out (CPU) */
    int iters;                       /* 0: the device's default */
    int threads;                     /* CPU threads, 0 = all online CPUs */
    int json;
    const char *tile, *db_path;      /* GPU: --tile, --db */
    int no_dense;                    /* GPU: skip the dense causal baseline */
    const char *pass;                /* fwd | fwdbwd */
    int deterministic;               /* GPU backward with dQ summed in a fixed order */
    /* --layer: a whole attention layer (cmd/layer.c) */
    int layer;
    int64_t d_model;                 /* 0: from --weights / --x, else heads * head_dim */
    const char *weights_dir, *x_path;
    int check;
} run_opts;

typedef enum { DEV_CPU, DEV_GPU } run_device;

/* ---------------------------------------------------------------------------
 * The problem: spec, shape, bands, inputs */

typedef struct {
    sp_spec spec;
    const sp_pattern *pattern;
    int B, N, H, KVH, D;
    double scale;
    sp_band_list *bands;             /* H entries: head h's intervals at N */
    int packed;                      /* --seq-lens: B sequences, N the longest, tensors [total, ...] */
    sp_packing pack;
    sp_band_list *pbands;            /* packed: B * H lists, sequence-major */
    int64_t pairs;                   /* allowed (i, j) pairs, summed over batch and heads */
    double ratio;                    /* allowed pairs / dense causal pairs */
    double flops_mult;               /* 1 for the forward, 3.5 for forward+backward */
    size_t nq, nk, nl;               /* elements of q (and o), of k (and v), of lse */
    uint16_t *q16, *k16, *v16;       /* inputs in the spec dtype, [B,N,H,D] / [B,N,KVH,D] */
    double *q, *k, *v;               /* the same values as doubles */
} run_problem;

static void problem_free(run_problem *p)
{
    free(p->bands);
    free(p->pbands);
    packing_free(&p->pack);
    free(p->q16); free(p->k16); free(p->v16);
    free(p->q); free(p->k); free(p->v);
    spec_free(&p->spec);
    memset(p, 0, sizeof *p);
}

static int alloc_inputs(run_problem *p, sp_err *e)
{
    p->q16 = malloc(p->nq * sizeof *p->q16);
    p->k16 = malloc(p->nk * sizeof *p->k16);
    p->v16 = malloc(p->nk * sizeof *p->v16);
    p->q = malloc(p->nq * sizeof *p->q);
    p->k = malloc(p->nk * sizeof *p->k);
    p->v = malloc(p->nk * sizeof *p->v);
    if (!p->q16 || !p->k16 || !p->v16 || !p->q || !p->k || !p->v)
        return sp_fail(e, SP_EXIT_FAIL, "out of memory for inputs of %zu + 2 x %zu elements", p->nq, p->nk);
    return 0;
}

/* Random inputs: one stream from the seed, q then k then v, each normal(0, 1)
 * rounded to the spec dtype.  The GPU path uploads p->q16 etc., so both
 * devices see the same numbers for the same --seed. */
static void random_inputs(run_problem *p, uint64_t seed)
{
    rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, p->spec.dtype, p->nq, p->q16, p->q);
    rng_fill_normal(&r, p->spec.dtype, p->nk, p->k16, p->k);
    rng_fill_normal(&r, p->spec.dtype, p->nk, p->v16, p->v);
}

/* One input file, already read: its shape must be [B, N, heads, D]; its
 * values (f16, f32 or f64) are rounded to the spec dtype like random inputs. */
static int npy_input(const run_problem *p, const npy_array *a, const char *path, const char *what, int heads,
                     uint16_t *bits, double *val, sp_err *e)
{
    if (p->packed) {   /* [total, heads, D] */
        int64_t want[3] = { p->pack.total, heads, p->D };
        if (npy_expect_shape(a, path, 3, want, e)) {
            sp_hint(e, "--%s takes packed [total_tokens, %s, head_dim] = [%lld, %d, %d]", what,
                    heads == p->H ? "heads" : "kv_heads", (long long)p->pack.total, heads, p->D);
            return -1;
        }
        for (size_t i = 0; i < a->count; i++) val[i] = rng_round_dtype(p->spec.dtype, npy_get(a, i), &bits[i]);
        return 0;
    }
    int64_t want[4] = { p->B, p->N, heads, p->D };
    if (npy_expect_shape(a, path, 4, want, e)) {
        sp_hint(e, "--%s takes [batch, seq_len, %s, head_dim] = [%d, %d, %d, %d]", what,
                heads == p->H ? "heads" : "kv_heads", p->B, p->N, heads, p->D);
        return -1;
    }
    for (size_t i = 0; i < a->count; i++) val[i] = rng_round_dtype(p->spec.dtype, npy_get(a, i), &bits[i]);
    return 0;
}

/* Host bytes a run allocates: the inputs in both forms (16-bit words and
 * doubles); O and LSE as floats; on the CPU also O and LSE as doubles and
 * each reference thread's scratch row. */
static uint64_t run_bytes(const run_problem *p, int on_cpu, int threads)
{
    uint64_t in = sp_bytes_mul(sp_bytes_add(p->nq, sp_bytes_mul(2, p->nk)), 2 + 8);
    uint64_t out = sp_bytes_mul(sp_bytes_add(p->nq, p->nl), on_cpu ? 4 + 8 : 4);
    if (threads <= 0) threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t scratch = on_cpu ? sp_bytes_mul((uint64_t)(threads > 0 ? threads : 1), 8 * ((uint64_t)p->N + p->D)) : 0;
    return sp_bytes_add(sp_bytes_add(in, out), scratch);
}

/* The shape, the bands and the inputs; the spec is already loaded.  files:
 * the --q/--k/--v arrays (read), or NULL for random inputs.  Refuses a
 * shape whose buffers do not fit in memory before allocating any. */
/* --seq-lens: the packing, its bands and work, and the shapes of [total, heads, D]. */
static int problem_packed(const run_opts *o, run_problem *p, sp_err *e)
{
    if (o->batch || o->seq_len)
        return sp_fail(e, SP_EXIT_USAGE, "--seq-lens gives the batch and the lengths: no --batch or --seq-len with it");
    int64_t dense;
    if (packing_init(&p->pack, o->lens, o->n_lens, e) ||
        packing_bands(&p->pack, p->pattern, p->H, &p->pbands, &p->pairs, &dense, e))
        return -1;
    p->packed = 1;
    p->B = p->pack.n;
    p->N = (int)p->pack.max_len;
    p->ratio = (double)p->pairs / (double)dense;
    return sp_mul_size(&p->nq, e, (size_t)p->pack.total, (size_t)p->H, (size_t)p->D, (size_t)0) ||
           sp_mul_size(&p->nk, e, (size_t)p->pack.total, (size_t)p->KVH, (size_t)p->D, (size_t)0) ||
           sp_mul_size(&p->nl, e, (size_t)p->pack.total, (size_t)p->H, (size_t)0);
}

static int problem_setup(const run_opts *o, run_problem *p, const npy_array *files, int on_cpu, sp_err *e)
{
    int64_t B = o->batch ? o->batch : p->spec.batch[0];
    int64_t N = o->seq_len ? o->seq_len : p->spec.seq_len[0];
    /* Without --batch / --seq-len, input files set B and N (q's first two
     * dimensions; every dimension is checked below). */
    if (files && !o->seq_lens && (!o->batch || !o->seq_len)) {
        if (files[0].ndim != 4)
            return sp_fail_at(e, SP_EXIT_USAGE, o->q_path, 0, 0,
                              "expected a 4-d array [batch, seq_len, heads, head_dim], got %d-d", files[0].ndim);
        if (!o->batch) B = files[0].shape[0];
        if (!o->seq_len) N = files[0].shape[1];
        if (B < 1 || N < 1 || B > 65536 || N > (1 << 24))
            return sp_fail_at(e, SP_EXIT_USAGE, o->q_path, 0, 0, "batch %lld and seq_len %lld: out of range",
                              (long long)B, (long long)N);
    }
    p->B = (int)B;
    p->N = (int)N;
    p->H = p->spec.heads;
    p->KVH = p->spec.kv_heads;
    p->D = p->spec.head_dim;
    p->scale = spec_scale(&p->spec);

    p->bands = calloc((size_t)p->H, sizeof *p->bands);
    if (!p->bands) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    if (o->seq_lens) {
        if (problem_packed(o, p, e)) return -1;
        goto sized;
    }
    int64_t per_batch = 0;
    for (int h = 0; h < p->H; h++) {
        if (bands_head(p->pattern, p->H, h, N, &p->bands[h]))
            return sp_fail(e, SP_EXIT_USAGE, "cannot lay out the bands of head %d", h);
        per_batch += bands_pairs(&p->bands[h], N);
    }
    if (sp_mul_i64(per_batch, B, &p->pairs, e)) return -1;
    p->ratio = (double)per_batch / ((double)p->H * (double)bands_dense_pairs(N));

    if (sp_mul_size(&p->nq, e, (size_t)B, (size_t)N, (size_t)p->H, (size_t)p->D, (size_t)0) ||
        sp_mul_size(&p->nk, e, (size_t)B, (size_t)N, (size_t)p->KVH, (size_t)p->D, (size_t)0) ||
        sp_mul_size(&p->nl, e, (size_t)B, (size_t)p->H, (size_t)N, (size_t)0))
        return -1;
sized:
    if (sp_mem_check(run_bytes(p, on_cpu, o->threads), on_cpu ? "the CPU reference run" : "the run's host buffers", e))
        return -1;
    if (alloc_inputs(p, e)) return -1;
    if (!files) {
        random_inputs(p, (uint64_t)o->seed);
        return 0;
    }
    if (npy_input(p, &files[0], o->q_path, "q", p->H, p->q16, p->q, e)) return -1;
    if (npy_input(p, &files[1], o->k_path, "k", p->KVH, p->k16, p->k, e)) return -1;
    if (npy_input(p, &files[2], o->v_path, "v", p->KVH, p->v16, p->v, e)) return -1;
    return 0;
}

/* --tile is checked on every device, so a typo fails the same way with or
 * without a GPU: its syntax, and whether it makes a forward kernel for this
 * spec on some GPU (sm_90 takes every tile any GPU does). */
static int tile_check(const run_problem *p, const char *tile, sp_err *e)
{
    sp_kcfg c;
    kcfg_for_spec(&c, &p->spec, p->pattern, SP_KIND_FWD, 90);
    return kcfg_parse_tile(tile, &c, e) || kcfg_derive(&c, e) ? -1 : 0;
}

static int problem_load(const run_opts *o, run_problem *p, int on_cpu, sp_err *e)
{
    memset(p, 0, sizeof *p);
    if (cmd_load_spec(o->spec_path, &p->spec, e)) return -1;
    if (cmd_layer_pattern(&p->spec, o->layer_index, &p->pattern, e)) return -1;
    if (o->tile && tile_check(p, o->tile, e)) return -1;

    int nfiles = (o->q_path != NULL) + (o->k_path != NULL) + (o->v_path != NULL);
    if (nfiles == 0) return problem_setup(o, p, NULL, on_cpu, e);
    if (nfiles != 3) {
        sp_fail(e, SP_EXIT_USAGE, "--q, --k and --v go together (%d of 3 given)", nfiles);
        sp_hint(e, "give all three input files, or none for random inputs from --seed");
        return -1;
    }
    npy_array files[3];
    memset(files, 0, sizeof files);
    int rc = -1;
    if (npy_read(o->q_path, &files[0], e) == 0 && npy_read(o->k_path, &files[1], e) == 0 &&
        npy_read(o->v_path, &files[2], e) == 0)
        rc = problem_setup(o, p, files, on_cpu, e);
    for (int i = 0; i < 3; i++) npy_free(&files[i]);
    return rc;
}

/* ---------------------------------------------------------------------------
 * Devices */

/* What a device run produced. */
typedef struct {
    run_device device;
    char detail[160];        /* "float64 reference", or the GPU's name and arch */
    char why[160];           /* with --device auto: why this device; else "" */
    int iters;
    double ms;               /* median time of one forward */
    float *o;                /* [B,N,H,D] */
    float *lse;              /* [B,H,N], -inf for rows with no allowed key */
    float *dq, *dk, *dv;     /* CPU --pass fwdbwd: [B,N,H,D], [B,N,KVH,D] x 2; else NULL */
    /* GPU only */
    char kernel[260];        /* generated kernel name(s) */
    char config_source[160]; /* "tuned (...)", "heuristic" or "--tile" */
    double dense_ms;         /* this engine's dense causal kernel on the same shape; 0 if not run */
} run_result;

static void result_free(run_result *r)
{
    free(r->o);
    free(r->lse);
    free(r->dq); free(r->dk); free(r->dv);
    r->o = r->lse = r->dq = r->dk = r->dv = NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* dO for the CPU backward: from --do ([B,N,H,D], rounded to the spec dtype
 * like the inputs) or normal(0, 1) from seed + 7. */
static int cpu_dout(const run_opts *o, const run_problem *p, double *dout, sp_err *e)
{
    uint16_t *bits = malloc(p->nq * sizeof *bits);
    if (!bits) return sp_fail(e, SP_EXIT_FAIL, "out of memory for dO");
    int rc = 0;
    if (o->do_path) {
        npy_array a;
        if (npy_read(o->do_path, &a, e)) rc = -1;
        else {
            rc = npy_input(p, &a, o->do_path, "do", p->H, bits, dout, e);
            npy_free(&a);
        }
    } else {
        rng r;
        rng_seed(&r, (uint64_t)o->seed + 7);
        rng_fill_normal(&r, p->spec.dtype, p->nq, bits, dout);
    }
    free(bits);
    return rc;
}

static float *to_float(const double *x, size_t n)
{
    float *f = malloc(n * sizeof *f);
    if (f)
        for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

/* The float64 reference, timed (with --pass fwdbwd, forward then backward
 * from dO); O, LSE and the gradients converted to float for output. */
static int run_cpu(const run_opts *o, const run_problem *p, run_result *r, sp_err *e)
{
    ref_problem rp = { .B = p->B, .N = p->N, .H = p->H, .KVH = p->KVH, .D = p->D, .scale = p->scale,
                       .bands = p->bands, .threads = o->threads };
    int bwd = strcmp(o->pass, "fwdbwd") == 0;
    double *out = malloc(p->nq * sizeof *out), *lse = malloc(p->nl * sizeof *lse);
    double *dout = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
    r->o = malloc(p->nq * sizeof *r->o);
    r->lse = malloc(p->nl * sizeof *r->lse);
    r->iters = o->iters > 0 ? o->iters : 1;
    double *times = malloc((size_t)r->iters * sizeof *times);
    int rc = 0;
    if (bwd) {
        dout = malloc(p->nq * sizeof *dout);
        dq = malloc(p->nq * sizeof *dq);
        dk = malloc(p->nk * sizeof *dk);
        dv = malloc(p->nk * sizeof *dv);
    }
    if (!out || !lse || !r->o || !r->lse || !times || (bwd && (!dout || !dq || !dk || !dv))) {
        rc = sp_fail(e, SP_EXIT_FAIL, "out of memory for the CPU reference (%zu output elements)", p->nq);
        goto done;
    }
    if (bwd && cpu_dout(o, p, dout, e)) { rc = -1; goto done; }
    snprintf(r->detail, sizeof r->detail, "float64 reference");
    for (int it = 0; it < r->iters; it++) {
        double t0 = sp_now();
        int bad = p->packed ? ref_forward_packed(&rp, &p->pack, p->pbands, p->q, p->k, p->v, out, lse) ||
                                  (bwd && ref_backward_packed(&rp, &p->pack, p->pbands, p->q, p->k, p->v, out, lse,
                                                              dout, dq, dk, dv))
                            : ref_forward(&rp, p->q, p->k, p->v, out, lse) ||
                                  (bwd && ref_backward(&rp, p->q, p->k, p->v, out, lse, dout, dq, dk, dv));
        if (bad) {
            rc = sp_fail(e, SP_EXIT_FAIL, "the CPU reference could not run (out of memory)");
            goto done;
        }
        times[it] = (sp_now() - t0) * 1e3;
    }
    qsort(times, (size_t)r->iters, sizeof *times, cmp_double);
    r->ms = times[r->iters / 2];
    for (size_t i = 0; i < p->nq; i++) r->o[i] = (float)out[i];
    for (size_t i = 0; i < p->nl; i++) r->lse[i] = (float)lse[i];
    if (bwd) {
        r->dq = to_float(dq, p->nq);
        r->dk = to_float(dk, p->nk);
        r->dv = to_float(dv, p->nk);
        if (!r->dq || !r->dk || !r->dv) rc = sp_fail(e, SP_EXIT_FAIL, "out of memory for the gradients");
    }
done:
    free(out); free(lse); free(times);
    free(dout); free(dq); free(dk); free(dv);
    return rc;
}

/* The generated kernel on the GPU: the inputs of p in set 0 (what O and LSE
 * come from), more random sets to rotate through while timing, CUDA-event
 * median after warm-up; then the same engine's dense causal kernel on the
 * same shape and buffers, for the speedup. */
static int run_gpu(const run_opts *o, const run_problem *p, run_result *r, sp_err *e)
{
    gpu_opts go;
    gpu_opts_init(&go);
    go.spec_path = o->spec_path;
    go.batch = p->packed ? 0 : p->B;
    go.seq_len = p->packed ? 0 : p->N;
    go.seq_lens = p->packed ? o->lens : NULL;
    go.n_seq_lens = p->packed ? o->n_lens : 0;
    go.layer_index = o->layer_index;
    go.tile = o->tile;
    go.db_path = o->db_path;
    go.deterministic = o->deterministic;   /* the backward's config: that mode's (runtime/config.h) */
    go.gpu = o->gpu < 0 ? 0 : o->gpu;
    go.seed = o->seed + 1000;    /* the timing-only sets differ from set 0 */
    gpu_problem gp;
    if (gpu_problem_open(&go, &gp, e)) return -1;
    gpu_attn *a = &gp.ga;
    engine_kernel k = { 0 };
    int rc = -1;
    r->iters = o->iters > 0 ? o->iters : 50;
    r->o = malloc(p->nq * sizeof *r->o);
    r->lse = malloc(p->nl * sizeof *r->lse);
    if (!r->o || !r->lse) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    if (ga_fill_random(a, (uint64_t)go.seed, e) || ga_upload(a, 0, p->q16, p->k16, p->v16, e)) goto out;
    if (gpu_problem_kernel(&gp, SP_KIND_FWD, &k, e)) goto out;
    snprintf(r->config_source, sizeof r->config_source, "%s", gp.config_source);
    snprintf(r->detail, sizeof r->detail, "%.100s, sm_%d", gp.gpu->name, gp.gpu->sm);
    if (ga_poison(a, e) || ga_forward(a, &k, 0, e) || cu_sync(a->g, e) || ga_download_o(a, r->o, r->lse, e)) goto out;
    gpu_timing t;
    if (gpu_problem_time(&gp, &k, strcmp(o->pass, "fwdbwd") == 0, o->deterministic, (uint64_t)o->seed + 7, r->iters,
                         !o->no_dense, &t, e)) goto out;
    r->ms = t.ms;
    r->dense_ms = t.dense_ms;
    snprintf(r->kernel, sizeof r->kernel, "%s", t.kernel);
    rc = 0;
out:
    engine_unload(gp.gpu, &k);
    gpu_problem_close(&gp);
    return rc;
}

typedef enum { WANT_AUTO, WANT_CPU, WANT_GPU } run_want;

/* --device as given; checked before any work so a typo fails fast. */
static int parse_device(const char *s, run_want *out, sp_err *e)
{
    if (strcmp(s, "auto") == 0) *out = WANT_AUTO;
    else if (strcmp(s, "cpu") == 0) *out = WANT_CPU;
    else if (strcmp(s, "gpu") == 0) *out = WANT_GPU;
    else {
        sp_fail(e, SP_EXIT_USAGE, "--device: '%s' is not one of auto, cpu, gpu", s);
        sp_hint(e, "see 'spattn run --help'");
        return -1;
    }
    return 0;
}

/* Which device runs: cpu or gpu as asked; auto prefers the GPU and says why
 * it chose what it chose.  --device gpu with no GPU fails later, in
 * run_gpu, with the driver's own reason (exit 3). */
static int pick_device(run_want want, run_device *dev, char *why, size_t cap, sp_err *e)
{
    (void)e;
    why[0] = '\0';
    switch (want) {
    case WANT_CPU: *dev = DEV_CPU; return 0;
    case WANT_GPU: *dev = DEV_GPU; return 0;
    case WANT_AUTO: break;
    }
    if (cu_probe()) {
        *dev = DEV_GPU;
        snprintf(why, cap, "GPU found");
    } else {
        *dev = DEV_CPU;
        snprintf(why, cap, "no GPU found");
    }
    return 0;
}

/* The CPU reference has no use for the GPU's flags.  They are not errors
 * (a script may pass the same flags to every run, and --device auto picks
 * the CPU on a machine without a GPU), but a flag that does nothing is said
 * once on stderr.  --tile's value was checked in problem_load. */
static void warn_gpu_flags(const run_opts *o)
{
    char list[128] = "";
    const char *names[] = { "--gpu", "--tile", "--db", "--deterministic", "--no-dense" };
    int given[] = { o->gpu >= 0, o->tile != NULL, o->db_path != NULL, o->deterministic, o->no_dense && !o->layer };
    for (int i = 0; i < 5; i++)
        if (given[i]) snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", names[i]);
    if (list[0]) fprintf(stderr, "spattn: warning: %s: GPU only, ignored by the CPU reference\n", list);
}

/* ---------------------------------------------------------------------------
 * Output */

typedef struct { double sum, abs_sum; } checksum;

static checksum checksum_of(const float *x, size_t n)
{
    checksum c = { 0, 0 };
    for (size_t i = 0; i < n; i++) {
        c.sum += x[i];
        c.abs_sum += fabs(x[i]);
    }
    return c;
}

/* Forward FLOPs on allowed pairs; forward+backward counts 3.5 times that
 * (the FlashAttention convention, DESIGN.md). */
static double flops_of(const run_problem *p)
{
    return 4.0 * p->D * (double)p->pairs * p->flops_mult;
}

static const char *device_name(run_device d) { return d == DEV_GPU ? "gpu" : "cpu"; }

static void print_human(FILE *f, const run_opts *o, const run_problem *p, const run_result *r, checksum c)
{
    fprintf(f, "spec: %s (%s)\n", p->spec.name, p->spec.path);
    if (p->packed) {
        fprintf(f, "shape: packed %d sequences, %lld tokens (longest %d) H=%d KVH=%d D=%d\n", p->B,
                (long long)p->pack.total, p->N, p->H, p->KVH, p->D);
        fprintf(f, "sequence lengths:");
        for (int b = 0; b < p->pack.n; b++) fprintf(f, "%s%lld", b ? "," : " ", (long long)p->pack.len[b]);
        fprintf(f, "\n");
    } else
        fprintf(f, "shape: B=%d N=%d H=%d KVH=%d D=%d\n", p->B, p->N, p->H, p->KVH, p->D);
    if (o->layer_index >= 0) fprintf(f, "pattern: %s (layer %d)\n", sp_pattern_name(p->pattern->kind), o->layer_index);
    else fprintf(f, "pattern: %s\n", sp_pattern_name(p->pattern->kind));
    fprintf(f, "dtype: %s\n", sp_dtype_name(p->spec.dtype));
    fprintf(f, "device: %s (%s)%s%s\n", device_name(r->device), r->detail, r->why[0] ? ", auto: " : "", r->why);
    if (o->q_path) fprintf(f, "inputs: %s, %s, %s\n", o->q_path, o->k_path, o->v_path);
    else fprintf(f, "inputs: random normal(0, 1), seed %lld\n", (long long)o->seed);
    fprintf(f, "work ratio: %.6f (%lld allowed pairs)\n", p->ratio, (long long)p->pairs);
    if (r->device == DEV_GPU) fprintf(f, "kernel: %s (%s)\n", r->kernel, r->config_source);
    fprintf(f, "time: %.3f ms %s(median of %d)\n", r->ms, strcmp(o->pass, "fwdbwd") == 0 ? "forward+backward " : "", r->iters);
    if (r->device == DEV_GPU) {
        fprintf(f, "effective: %.1f TFLOP/s (allowed pairs only)\n", flops_of(p) / (r->ms * 1e-3) / 1e12);
        if (r->dense_ms > 0)
            fprintf(f, "dense causal (same engine): %.3f ms, speedup %.2fx (ideal %.2fx)\n", r->dense_ms,
                   r->dense_ms / r->ms, 1.0 / p->ratio);
    } else
        fprintf(f, "effective: %.3f GFLOP/s\n", r->ms > 0 ? flops_of(p) / (r->ms * 1e-3) / 1e9 : 0.0);
    fprintf(f, "checksum: sum %.6e, sum|O| %.6e\n", c.sum, c.abs_sum);
    if (o->out_path) fprintf(f, "output: %s\n", o->out_path);
    if (o->lse_path) fprintf(f, "lse output: %s\n", o->lse_path);
}

static void print_json(FILE *f, const run_opts *o, const run_problem *p, const run_result *r, checksum c)
{
    jw w;
    jw_init(&w, f);
    jw_obj(&w, NULL);
    jw_str(&w, "spec", p->spec.name);
    jw_str(&w, "spec_path", p->spec.path);
    jw_int(&w, "batch", p->B);
    jw_int(&w, "seq_len", p->N);
    if (p->packed) {   /* batch: the sequences; seq_len: the longest */
        jw_arr(&w, "seq_lens");
        for (int b = 0; b < p->pack.n; b++) jw_int(&w, NULL, p->pack.len[b]);
        jw_end(&w);
        jw_int(&w, "total_tokens", p->pack.total);
    }
    jw_int(&w, "heads", p->H);
    jw_int(&w, "kv_heads", p->KVH);
    jw_int(&w, "head_dim", p->D);
    jw_str(&w, "pattern", sp_pattern_name(p->pattern->kind));
    if (o->layer_index >= 0) jw_int(&w, "layer_index", o->layer_index);
    else jw_null(&w, "layer_index");
    jw_str(&w, "dtype", sp_dtype_name(p->spec.dtype));
    jw_str(&w, "device", device_name(r->device));
    jw_str(&w, "device_detail", r->detail);
    jw_str(&w, "device_reason", r->why[0] ? r->why : NULL);
    jw_str(&w, "inputs", o->q_path ? "npy" : "random");
    if (o->q_path) jw_null(&w, "seed");
    else jw_int(&w, "seed", o->seed);
    jw_num(&w, "work_ratio", p->ratio);
    jw_int(&w, "allowed_pairs", p->pairs);
    jw_num(&w, "flops", flops_of(p));
    jw_int(&w, "iters", r->iters);
    jw_num(&w, "median_ms", r->ms);   /* median of iters runs (one key, as in bench and the database) */
    jw_str(&w, "pass", o->pass);
    if (r->device == DEV_GPU) {
        jw_str(&w, "kernel", r->kernel);
        jw_str(&w, "config_source", r->config_source);
        jw_num(&w, "eff_tflops", flops_of(p) / (r->ms * 1e-3) / 1e12);
        if (r->dense_ms > 0) {
            jw_num(&w, "dense_median_ms", r->dense_ms);
            jw_num(&w, "speedup_vs_dense", r->dense_ms / r->ms);
        }
        jw_num(&w, "ideal_speedup", 1.0 / p->ratio);
    }
    jw_num(&w, "gflops", r->ms > 0 ? flops_of(p) / (r->ms * 1e-3) / 1e9 : 0.0);
    jw_obj(&w, "checksum");
    jw_num(&w, "sum", c.sum);
    jw_num(&w, "abs_sum", c.abs_sum);
    jw_end(&w);
    jw_str(&w, "output", o->out_path);
    jw_str(&w, "lse_output", o->lse_path);
    jw_end(&w);
    jw_finish(&w);
}

/* The outputs of a run: O, LSE, and with --pass fwdbwd dQ, dK, dV. */
enum { OUT_O, OUT_LSE, OUT_DQ, OUT_DK, OUT_DV, N_OUTS };

/* All outputs staged, then all renamed into place: a run writes every output
 * it was given or none. */
static int write_outputs(sp_out *outs, const run_problem *p, const run_result *r, sp_err *e)
{
    npy_array a[N_OUTS] = {
        { .dtype = NPY_F32, .ndim = 4, .shape = { p->B, p->N, p->H, p->D }, .count = p->nq, .data = r->o },
        { .dtype = NPY_F32, .ndim = 3, .shape = { p->B, p->H, p->N }, .count = p->nl, .data = r->lse },
        { .dtype = NPY_F32, .ndim = 4, .shape = { p->B, p->N, p->H, p->D }, .count = p->nq, .data = r->dq },
        { .dtype = NPY_F32, .ndim = 4, .shape = { p->B, p->N, p->KVH, p->D }, .count = p->nk, .data = r->dk },
        { .dtype = NPY_F32, .ndim = 4, .shape = { p->B, p->N, p->KVH, p->D }, .count = p->nk, .data = r->dv },
    };
    if (p->packed) {   /* [total, heads, D] and LSE [H, total] */
        const int64_t T = p->pack.total, heads[N_OUTS] = { p->H, 0, p->H, p->KVH, p->KVH };
        for (int i = 0; i < N_OUTS; i++) {
            a[i].ndim = i == OUT_LSE ? 2 : 3;
            int64_t s[3] = { T, heads[i], p->D };
            if (i == OUT_LSE) { s[0] = p->H; s[1] = T; }
            memcpy(a[i].shape, s, sizeof s);
        }
    }
    for (int i = 0; i < N_OUTS; i++)
        if (outs[i].path && a[i].data && npy_stage(&outs[i], &a[i], e)) {
            sp_outs_discard(outs, N_OUTS);
            return -1;
        }
    if (sp_outs_commit(outs, N_OUTS, e)) {
        sp_outs_discard(outs, N_OUTS);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * --layer: the flags that make no sense for a layer are refused, the device
 * is picked as for the attention alone, and cmd/layer.c does the rest. */

static int run_layer_branch(const run_opts *o, run_want want, sp_err *e)
{
    const char *bad = o->q_path || o->k_path || o->v_path ? "--q/--k/--v (use --x and --weights)"
                      : o->seq_lens                       ? "--seq-lens"
                      : o->lse_path                       ? "--lse-out"
                      : strcmp(o->pass, "fwd")            ? "--pass fwdbwd"
                      : o->deterministic                  ? "--deterministic"
                                                          : NULL;
    if (bad) {
        sp_fail(e, SP_EXIT_USAGE, "--layer runs the layer's forward; %s does not apply", bad);
        return SP_EXIT_USAGE;
    }
    layer_opts lo = {
        .spec_path = o->spec_path, .gpu = o->gpu < 0 ? 0 : o->gpu, .batch = o->batch, .seq_len = o->seq_len,
        .layer_index = o->layer_index, .seed = o->seed, .d_model = o->d_model, .weights_dir = o->weights_dir,
        .x_path = o->x_path, .out_path = o->out_path, .iters = o->iters, .threads = o->threads, .json = o->json,
        .no_dense = o->no_dense, .check = o->check, .tile = o->tile, .db_path = o->db_path,
    };
    run_device dev;
    char why[160];
    if (pick_device(want, &dev, why, sizeof why, e)) return e->code;
    lo.on_gpu = dev == DEV_GPU;
    if (!lo.on_gpu) warn_gpu_flags(o);
    lo.device_reason = why;
    return run_layer(&lo, e);
}

/* ---------------------------------------------------------------------------
 * --decode: one decoding step from a KV cache (cmd/decode.c).  The flags of
 * the full forward that do not apply are refused. */

static int run_decode_branch(const run_opts *o, decode_opts *d, run_want want, sp_err *e)
{
    const char *bad = o->layer                            ? "--layer"
                      : o->seq_len                        ? "--seq-len (the cache's length is --kv-len)"
                      : strcmp(o->pass, "fwd")            ? "--pass fwdbwd"
                      : o->deterministic                  ? "--deterministic"
                      : o->no_dense                       ? "--no-dense"
                      : o->do_path || o->dq_path || o->dk_path || o->dv_path ? "--do/--dq/--dk/--dv"
                      : o->d_model || o->weights_dir || o->x_path || o->check ? "--d-model/--weights/--x/--check"
                                                          : NULL;
    if (bad) {
        sp_fail(e, SP_EXIT_USAGE, "--decode: %s does not apply to a decoding step", bad);
        return SP_EXIT_USAGE;
    }
    int64_t kv_len = d->g.seq_len;   /* --kv-len's row wrote it */
    gpu_opts_init(&d->g);
    d->g.seq_len = kv_len;
    d->g.spec_path = o->spec_path;
    d->g.batch = o->batch;
    d->g.layer_index = o->layer_index;
    d->g.tile = o->tile;
    d->g.db_path = o->db_path;
    d->g.seed = o->seed;
    d->g.gpu = o->gpu < 0 ? 0 : o->gpu;
    d->q_path = o->q_path; d->k_path = o->k_path; d->v_path = o->v_path;
    d->out_path = o->out_path; d->lse_path = o->lse_path;
    d->iters = o->iters;
    d->threads = o->threads;
    d->json = o->json;
    if (decode_check_flags(d, e)) return SP_EXIT_USAGE;
    run_device dev;
    char why[160];
    if (pick_device(want, &dev, why, sizeof why, e)) return e->code;
    d->on_gpu = dev == DEV_GPU;
    d->device_reason = why;
    if (!d->on_gpu && (o->gpu >= 0 || d->splits))
        fprintf(stderr, "spattn: warning: %s: GPU only, ignored by the CPU reference\n", o->gpu >= 0 ? "--gpu" : "--splits");
    return decode_run(d, e);
}

/* ---------------------------------------------------------------------------
 * The command */

int cmd_run(int argc, char **argv, sp_err *e)
{
    run_opts o = { .device = "auto", .gpu = -1, .layer_index = -1, .seed = 1, .pass = "fwd" };
    decode_opts dec;
    int decode = 0;
    memset(&dec, 0, sizeof dec);
    opt_def defs[] = {
        OPT_STRING(0, "device", &o.device, "DEV", "auto (default: the GPU if there is one), cpu or gpu"),
        OPT_INT(0, "gpu", &o.gpu, "N", "GPU ordinal (after CUDA_VISIBLE_DEVICES)", 0, 255),
        OPT_I64(0, "batch", &o.batch, "B", "batch size (default: the spec's first batch, or --q's)", 1, 65536),
        OPT_I64(0, "seq-len", &o.seq_len, "N", "sequence length (default: the spec's first seq_len, or --q's)", 1, 1 << 24),
        OPT_STRING(0, "seq-lens", &o.seq_lens, "LIST", "packed sequences of these lengths, e.g. 4096,100,2000; "
                   "tensors [total, heads, head_dim]"),
        OPT_INT(0, "layer-index", &o.layer_index, "K", "use layer K's pattern (per-layer overrides)", 0, 65535),
        OPT_I64(0, "seed", &o.seed, "S", "seed of the random inputs (default 1)", 0, INT64_MAX),
        OPT_STRING(0, "q", &o.q_path, "FILE", "queries from .npy [B,N,H,D] (with --k and --v)"),
        OPT_STRING(0, "k", &o.k_path, "FILE", "keys from .npy [B,N,KVH,D]"),
        OPT_STRING(0, "v", &o.v_path, "FILE", "values from .npy [B,N,KVH,D]"),
        OPT_STRING('o', "output", &o.out_path, "FILE", "write O as float32 .npy [B,N,H,D] (--layer: y [B,N,d_model])"),
        OPT_STRING(0, "lse-out", &o.lse_path, "FILE", "write LSE as float32 .npy [B,H,N]"),
        OPT_INT(0, "iters", &o.iters, "N", "timed runs; the median is reported (CPU default 1)", 1, 100000),
        OPT_INT(0, "threads", &o.threads, "T", "CPU threads (default: all online CPUs)", 0, 1024),
        OPT_STRING(0, "tile", &o.tile, "BMxBN[:wW:sS]", "GPU kernel tile config (default: tuned, else heuristic)"),
        OPT_STRING(0, "db", &o.db_path, "FILE", "tuning database (default $SPATTN_DB or the cache dir)"),
        OPT_BOOL(0, "no-dense", &o.no_dense, "GPU: skip timing the dense causal baseline"),
        OPT_STRING(0, "pass", &o.pass, "PASS", "fwd (default) or fwdbwd: forward+backward (GPU or CPU reference)"),
        OPT_STRING(0, "do", &o.do_path, "FILE", "fwdbwd, CPU: dO from .npy [B,N,H,D] (default random from --seed)"),
        OPT_STRING(0, "dq", &o.dq_path, "FILE", "fwdbwd, CPU: write dQ as float32 .npy [B,N,H,D]"),
        OPT_STRING(0, "dk", &o.dk_path, "FILE", "fwdbwd, CPU: write dK as float32 .npy [B,N,KVH,D]"),
        OPT_STRING(0, "dv", &o.dv_path, "FILE", "fwdbwd, CPU: write dV as float32 .npy [B,N,KVH,D]"),
        OPT_BOOL(0, "deterministic", &o.deterministic, "GPU backward with dQ summed in a fixed order (bitwise reproducible)"),
        OPT_BOOL(0, "layer", &o.layer, "a whole layer: x -> QKV projections -> attention -> output projection"),
        OPT_I64(0, "d-model", &o.d_model, "D", "layer: model width (default: --weights' or --x's, else heads x head_dim)",
                1, 1 << 20),
        OPT_STRING(0, "weights", &o.weights_dir, "DIR", "layer: wq.npy wk.npy wv.npy wo.npy from DIR (default random)"),
        OPT_STRING(0, "x", &o.x_path, "FILE", "layer: input x from .npy [B,N,d_model] (default random)"),
        OPT_BOOL(0, "check", &o.check, "layer, GPU: compare y with the float64 CPU layer; exit 1 on FAIL"),
        DECODE_OPTS_ROWS(decode, dec),
        OPT_BOOL(0, "json", &o.json, "print one JSON object on stdout"),
        OPT_END(),
    };
    opt_pos pos;
    int prc = opts_parse(&run_cmd, defs, argc, argv, &pos, e);
    if (prc) return prc > 0 ? SP_EXIT_OK : SP_EXIT_USAGE;
    o.spec_path = pos.v[0];

    run_want want;
    if (parse_device(o.device, &want, e)) return e->code;
    int64_t lens[CMD_MAX_SEQS];
    if (o.seq_lens && packing_parse_list(o.seq_lens, lens, CMD_MAX_SEQS, &o.n_lens, e)) return SP_EXIT_USAGE;
    o.lens = lens;
    if (strcmp(o.pass, "fwd") && strcmp(o.pass, "fwdbwd")) {
        sp_fail(e, SP_EXIT_USAGE, "--pass: '%s' is not fwd or fwdbwd", o.pass);
        return SP_EXIT_USAGE;
    }
    if (decode) return run_decode_branch(&o, &dec, want, e);
    if (dec.g.seq_len || dec.new_tokens || dec.kv_lens || dec.page_size || dec.splits) {
        sp_fail(e, SP_EXIT_USAGE, "--kv-len, --new-tokens, --kv-lens, --page-size and --splits go with --decode");
        return SP_EXIT_USAGE;
    }
    if (o.layer) return run_layer_branch(&o, want, e);
    if (o.d_model || o.weights_dir || o.x_path || o.check) {
        sp_fail(e, SP_EXIT_USAGE, "--d-model, --weights, --x and --check go with --layer");
        return SP_EXIT_USAGE;
    }
    const char *grad = o.do_path ? "--do" : o.dq_path ? "--dq" : o.dk_path ? "--dk" : o.dv_path ? "--dv" : NULL;
    if (grad && strcmp(o.pass, "fwdbwd") != 0) {
        sp_fail(e, SP_EXIT_USAGE, "%s goes with --pass fwdbwd", grad);
        return SP_EXIT_USAGE;
    }
    if (grad && want == WANT_GPU) {
        sp_fail(e, SP_EXIT_USAGE, "%s: gradients are read and written on the CPU reference only", grad);
        sp_hint(e, "use --device cpu");
        return SP_EXIT_USAGE;
    }
    if (grad) want = WANT_CPU;   /* gradient files: the CPU reference, even where a GPU is */

    /* "-" is standard input for one .npy input at most. */
    const char *in_paths[4] = { o.q_path, o.k_path, o.v_path, o.do_path }, *in_what[4] = { "--q", "--k", "--v", "--do" };
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < i; j++)
            if (in_paths[i] && in_paths[j] && !strcmp(in_paths[i], "-") && !strcmp(in_paths[j], "-")) {
                sp_fail(e, SP_EXIT_USAGE, "%s and %s both read standard input ('-'); one input at most can", in_what[j],
                        in_what[i]);
                return SP_EXIT_USAGE;
            }

    sp_out outs[N_OUTS];
    const char *out_paths[N_OUTS] = { o.out_path, o.lse_path, o.dq_path, o.dk_path, o.dv_path };
    const char *out_what[N_OUTS] = { "-o", "--lse-out", "--dq", "--dk", "--dv" };
    if (cmd_check_outputs(outs, out_paths, out_what, N_OUTS, e)) return SP_EXIT_USAGE;

    run_problem p;
    run_result r;
    memset(&r, 0, sizeof r);
    /* The device first: what a run allocates depends on it. */
    int rc = pick_device(want, &r.device, r.why, sizeof r.why, e);
    if (rc == 0) rc = problem_load(&o, &p, r.device == DEV_CPU, e);
    else memset(&p, 0, sizeof p);
    p.flops_mult = strcmp(o.pass, "fwdbwd") == 0 ? 3.5 : 1.0;
    if (rc == 0 && r.device == DEV_CPU) warn_gpu_flags(&o);
    if (rc == 0) rc = r.device == DEV_GPU ? run_gpu(&o, &p, &r, e) : run_cpu(&o, &p, &r, e);
    if (rc == 0) rc = write_outputs(outs, &p, &r, e);
    if (rc == 0) {
        checksum c = checksum_of(r.o, p.nq);
        /* An output on standard output ("-") takes stdout: the report goes to stderr. */
        FILE *report = stdout;
        for (int i = 0; i < N_OUTS; i++)
            if (out_paths[i] && strcmp(out_paths[i], "-") == 0) report = stderr;
        if (o.json) print_json(report, &o, &p, &r, c);
        else print_human(report, &o, &p, &r, c);
    }
    result_free(&r);
    problem_free(&p);
    return rc ? (e->code ? e->code : SP_EXIT_FAIL) : SP_EXIT_OK;
}
