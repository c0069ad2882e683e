/* run --decode and check --decode: one decoding step from a KV cache
 * (issue 18).  Q holds the last T positions of each of B sequences, K and V
 * the cache of N tokens per sequence (or pages of it through a shuffled block
 * table); sequence b holds len_b tokens (--kv-lens, default N), and its rows
 * attend with the bands at length len_b.
 *
 *   1. decode_load: spec (overrides applied), shape, lengths, inputs (random
 *      from --seed, or .npy), the paged copy of the cache;
 *   2. on the CPU the float64 reference (ref_decode), on the GPU the decode
 *      kernels (runtime/decode.c), timed;
 *   3. run: the report (time, K/V bytes read against a dense decode's, GB/s)
 *      and -o / --lse-out; check: the GPU against the reference, the empty
 *      rows exactly 0, the reference against the last T rows of the forward
 *      (bitwise, when every length is N and the forward is quick), and with
 *      --page-size the paged launch against the contiguous one (bitwise). */
#include "cmd/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "abi/bandtab.h"
#include "cmd/cmd.h"
#include "codegen/bands.h"
#include "common/fileio.h"
#include "common/half.h"
#include "common/json.h"
#include "common/mem.h"
#include "runtime/config.h"
#include "runtime/decode.h"
#include "runtime/engine.h"
#include "runtime/gpu_attn.h"
#include "runtime/npy.h"
#include "runtime/ref.h"
#include "runtime/rng.h"

/* ---------------------------------------------------------------------------
 * The problem */

typedef struct {
    gpu_problem hp;                  /* spec, pattern, bands at N (host side only) */
    int B, T, N, H, KVH, D;
    double scale;
    int32_t *lens;                   /* B entries, or NULL: all N */
    int all_n;                       /* every sequence holds N tokens */
    size_t nq, nk, nl;               /* elements of q (and o), of the contiguous k (and v), of lse */
    uint16_t *q16, *k16, *v16;       /* [B,T,H,D], [B,N,KVH,D] */
    double *q, *k, *v;
    /* paged (page_size > 0): the cache as pages [num_pages, P, KVH, D] in shuffled order */
    int P, max_pages, num_pages;
    int32_t *table;                  /* [B][max_pages] */
    uint16_t *pk16, *pv16;
    double *pk, *pv;
    size_t npk;
} dec_problem;

static void dec_free(dec_problem *p)
{
    free(p->lens);
    free(p->q16); free(p->k16); free(p->v16); free(p->q); free(p->k); free(p->v);
    free(p->table); free(p->pk16); free(p->pv16); free(p->pk); free(p->pv);
    free(p->hp.bands);
    spec_free(&p->hp.spec);
    memset(p, 0, sizeof *p);
}

/* --kv-lens "L,L,...": B lengths in 0..N. */
static int parse_lens(const char *arg, int B, int N, int32_t **out, sp_err *e)
{
    int32_t *lens = malloc((size_t)B * sizeof *lens);
    if (!lens) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    int n = 0;
    const char *s = arg;
    while (*s) {
        char *end;
        long long x = strtoll(s, &end, 10);
        if (end == s || (*end && *end != ',') || x < 0 || x > N) {
            free(lens);
            sp_fail(e, SP_EXIT_USAGE, "--kv-lens: '%s': expected %d comma-separated lengths in 0..%d (--kv-len)", arg, B, N);
            return -1;
        }
        if (n == B) { n++; break; }
        lens[n++] = (int32_t)x;
        s = *end ? end + 1 : end;
    }
    if (n != B) {
        free(lens);
        sp_fail(e, SP_EXIT_USAGE, "--kv-lens: %s lengths for batch %d", n > B ? "more" : "fewer", B);
        sp_hint(e, "give one length per sequence (--batch B)");
        return -1;
    }
    *out = lens;
    return 0;
}

int decode_check_flags(const decode_opts *o, sp_err *e)
{
    if (o->page_size && (o->page_size < 16 || o->page_size > 256 || (o->page_size & (o->page_size - 1)))) {
        sp_fail(e, SP_EXIT_USAGE, "--page-size %d: expected a power of two in 16..256", o->page_size);
        return -1;
    }
    int nfiles = (o->q_path != NULL) + (o->k_path != NULL) + (o->v_path != NULL);
    if (nfiles != 0 && nfiles != 3) {
        sp_fail(e, SP_EXIT_USAGE, "--q, --k and --v go together (%d of 3 given)", nfiles);
        sp_hint(e, "give all three input files, or none for random inputs from --seed");
        return -1;
    }
    return 0;
}

/* One input file: shape [d0, d1, heads, D], values rounded to the dtype. */
static int npy_take(const npy_array *a, const char *path, const char *what, int64_t d0, int64_t d1, int heads, int D,
                    sp_dtype dt, uint16_t *bits, double *val, sp_err *e)
{
    int64_t want[4] = { d0, d1, heads, D };
    if (npy_expect_shape(a, path, 4, want, e)) {
        sp_hint(e, "--%s takes [%lld, %lld, %d, %d]: %s", what, (long long)d0, (long long)d1, heads, D,
                what[0] == 'q' ? "[batch, new_tokens, heads, head_dim]" : "[batch, kv_len, kv_heads, head_dim]");
        return -1;
    }
    for (size_t i = 0; i < a->count; i++) {
        double x = rng_round_dtype(dt, npy_get(a, i), &bits[i]);
        if (val) val[i] = x;
    }
    return 0;
}

/* The paged copy: page b * max_pages + pg of a shuffled order holds tokens
 * [pg P, pg P + P) of sequence b; spare pages make the table's indices range
 * past B * max_pages. */
static int make_pages(dec_problem *p, uint64_t seed, sp_err *e)
{
    const int P = p->P;
    p->max_pages = (p->N + P - 1) / P;
    p->num_pages = p->B * p->max_pages + 2;
    size_t row = (size_t)p->KVH * p->D;
    p->npk = (size_t)p->num_pages * P * row;
    p->table = malloc((size_t)p->B * p->max_pages * sizeof *p->table);
    int32_t *perm = malloc((size_t)p->num_pages * sizeof *perm);
    p->pk16 = calloc(p->npk, 2);
    p->pv16 = calloc(p->npk, 2);
    if (p->k) {
        p->pk = calloc(p->npk, sizeof *p->pk);
        p->pv = calloc(p->npk, sizeof *p->pv);
    }
    if (!p->table || !perm || !p->pk16 || !p->pv16 || (p->k && (!p->pk || !p->pv))) {
        free(perm);
        return sp_fail(e, SP_EXIT_FAIL, "out of memory for the paged cache");
    }
    rng r;
    rng_seed(&r, seed + 99);
    for (int i = 0; i < p->num_pages; i++) perm[i] = i;
    for (int i = p->num_pages - 1; i > 0; i--) {
        int j = (int)(rng_next(&r) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int b = 0; b < p->B; b++)
        for (int pg = 0; pg < p->max_pages; pg++) {
            int page = perm[b * p->max_pages + pg];
            p->table[b * p->max_pages + pg] = page;
            for (int x = 0; x < P && pg * P + x < p->N; x++) {
                size_t dst = ((size_t)page * P + x) * row, src = ((size_t)b * p->N + pg * P + x) * row;
                memcpy(p->pk16 + dst, p->k16 + src, row * 2);
                memcpy(p->pv16 + dst, p->v16 + src, row * 2);
                if (p->k) {
                    memcpy(p->pk + dst, p->k + src, row * sizeof *p->pk);
                    memcpy(p->pv + dst, p->v + src, row * sizeof *p->pv);
                }
            }
        }
    free(perm);
    return 0;
}

/* need_doubles: the float64 copies too (the CPU reference); a GPU run needs the 16-bit words only. */
static int dec_load(const decode_opts *o, dec_problem *p, int need_doubles, sp_err *e)
{
    memset(p, 0, sizeof *p);
    npy_array files[3];
    memset(files, 0, sizeof files);
    int have_files = o->q_path != NULL, rc = -1;
    gpu_opts g = o->g;
    if (have_files) {
        if (npy_read(o->q_path, &files[0], e) || npy_read(o->k_path, &files[1], e) || npy_read(o->v_path, &files[2], e))
            goto out;
        for (int i = 0; i < 3; i++)
            if (files[i].ndim != 4) {
                sp_fail_at(e, SP_EXIT_USAGE, i == 0 ? o->q_path : i == 1 ? o->k_path : o->v_path, 0, 0,
                           "expected a 4-d array, got %d-d", files[i].ndim);
                goto out;
            }
        if (!g.batch) g.batch = files[0].shape[0];
        if (!g.seq_len) g.seq_len = files[1].shape[1];
    }
    g.tile = NULL;   /* a decode tile: checked below by the decode family's rules */
    if (gpu_problem_spec(&g, &p->hp, e)) goto out;
    const sp_spec *s = &p->hp.spec;
    if (o->g.tile) {   /* before any GPU work (exit 2): syntax and the decode rules (sm_90 takes what any GPU does) */
        sp_kcfg t;
        kcfg_for_spec(&t, s, &p->hp.pattern, SP_KIND_DEC, 90);
        if (kcfg_parse_tile(o->g.tile, &t, e) || kcfg_derive(&t, e)) goto out;
    }
    p->B = p->hp.ga.B;
    p->N = p->hp.ga.N;
    p->T = o->new_tokens ? o->new_tokens : have_files ? (int)files[0].shape[1] : 1;
    p->H = s->heads;
    p->KVH = s->kv_heads;
    p->D = s->head_dim;
    p->scale = spec_scale(s);
    if (p->T < 1 || p->T > p->N) {
        sp_fail(e, SP_EXIT_USAGE, "--new-tokens %d: expected 1..%d (the cache's length, --kv-len)", p->T, p->N);
        goto out;
    }
    if (o->kv_lens && parse_lens(o->kv_lens, p->B, p->N, &p->lens, e)) goto out;
    p->all_n = 1;
    for (int b = 0; p->lens && b < p->B; b++) p->all_n &= p->lens[b] == p->N;
    if (sp_mul_size(&p->nq, e, (size_t)p->B, (size_t)p->T, (size_t)p->H, (size_t)p->D, (size_t)0) ||
        sp_mul_size(&p->nk, e, (size_t)p->B, (size_t)p->N, (size_t)p->KVH, (size_t)p->D, (size_t)0))
        goto out;
    p->nl = (size_t)p->B * p->H * p->T;
    /* 16-bit and double copies of q, k, v; a paged copy of k and v too */
    uint64_t need = sp_bytes_mul(sp_bytes_add(p->nq, sp_bytes_mul(2, p->nk)), need_doubles ? 10 : 2);
    if (o->page_size) need = sp_bytes_mul(need, 2);
    if (sp_mem_check(need, "the decode's host buffers", e)) goto out;
    p->q16 = malloc(p->nq * 2); p->k16 = malloc(p->nk * 2); p->v16 = malloc(p->nk * 2);
    if (need_doubles) { p->q = malloc(p->nq * 8); p->k = malloc(p->nk * 8); p->v = malloc(p->nk * 8); }
    if (!p->q16 || !p->k16 || !p->v16 || (need_doubles && (!p->q || !p->k || !p->v))) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory for the inputs");
        goto out;
    }
    if (have_files) {
        if (npy_take(&files[0], o->q_path, "q", p->B, p->T, p->H, p->D, s->dtype, p->q16, p->q, e) ||
            npy_take(&files[1], o->k_path, "k", p->B, p->N, p->KVH, p->D, s->dtype, p->k16, p->k, e) ||
            npy_take(&files[2], o->v_path, "v", p->B, p->N, p->KVH, p->D, s->dtype, p->v16, p->v, e))
            goto out;
    } else {
        rng r;
        rng_seed(&r, (uint64_t)o->g.seed);
        rng_fill_normal(&r, s->dtype, p->nq, p->q16, p->q);
        rng_fill_normal(&r, s->dtype, p->nk, p->k16, p->k);
        rng_fill_normal(&r, s->dtype, p->nk, p->v16, p->v);
    }
    p->P = o->page_size;
    if (p->P && make_pages(p, (uint64_t)o->g.seed, e)) goto out;
    rc = 0;
out:
    for (int i = 0; i < 3; i++) npy_free(&files[i]);
    return rc;
}

static int len_of(const dec_problem *p, int b) { return p->lens ? p->lens[b] : p->N; }

/* ---------------------------------------------------------------------------
 * The two devices */

typedef struct {
    int on_gpu;
    char detail[160];
    char kernel[160], config_source[160];
    int splits, iters;
    double ms;
    float *o, *lse;                  /* [B,T,H,D], [B,H,T] */
    sp_kcfg cfg;                     /* the config whose tiles the byte count uses */
} dec_result;

/* The reference, paged or not: O and LSE as doubles (o, lse), timed over iters. */
static int dec_cpu(const dec_problem *p, int paged, int threads, int iters, double *o, double *lse, double *ms,
                   sp_err *e)
{
    ref_decode_problem rp = { .B = p->B, .T = p->T, .N = p->N, .H = p->H, .KVH = p->KVH, .D = p->D,
                              .scale = p->scale, .pattern = &p->hp.pattern, .kv_lens = p->lens,
                              .block_table = paged ? p->table : NULL, .max_pages = p->max_pages,
                              .page_size = p->P, .threads = threads };
    double *times = malloc((size_t)iters * sizeof *times);
    if (!times) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    for (int it = 0; it < iters; it++) {
        double t0 = sp_now();
        if (ref_decode(&rp, p->q, paged ? p->pk : p->k, paged ? p->pv : p->v, o, lse)) {
            free(times);
            return sp_fail(e, SP_EXIT_FAIL, "the CPU reference could not run");
        }
        times[it] = (sp_now() - t0) * 1e3;
    }
    if (ms) *ms = ga_median(times, iters);
    free(times);
    return 0;
}

/* The GPU side: device buffers and the loaded kernel. */
typedef struct {
    sp_gpu g;
    int open;
    engine_kernel k;
    sp_dptr q, k_c, v_c, k_p, v_p, o, lse, lens, table, bands, ws;
    decode_args a;
} dec_gpu;

static void dec_gpu_close(dec_gpu *d)
{
    if (!d->open) return;
    sp_dptr *ptrs[] = { &d->q, &d->k_c, &d->v_c, &d->k_p, &d->v_p, &d->o, &d->lse, &d->lens, &d->table, &d->bands, &d->ws };
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) cu_free(&d->g, *ptrs[i]);
    engine_unload(&d->g, &d->k);
    cu_close(&d->g);
    d->open = 0;
}

static int upload(sp_gpu *g, sp_dptr *dst, const void *src, size_t bytes, sp_err *e)
{
    return cu_malloc(g, bytes, dst, e) || cu_upload(g, *dst, src, bytes, e) ? -1 : 0;
}

static int dec_gpu_open(const decode_opts *o, const dec_problem *p, dec_gpu *d, dec_result *r, sp_err *e)
{
    memset(d, 0, sizeof *d);
    if (cu_open(o->g.gpu, &d->g, e)) return -1;
    d->open = 1;
    const sp_spec *s = &p->hp.spec;
    sp_kcfg c;
    if (config_pick(&d->g, s, &p->hp.pattern, SP_KIND_DEC, 0, p->B, p->N, p->T, o->g.db_path, o->g.tile, &c,
                    r->config_source, sizeof r->config_source, e))
        return -1;
    if (o->splits) c.splits = o->splits;
    if (engine_load(&d->g, s, &p->hp.pattern, &c, &d->k, e)) return -1;
    r->cfg = c;
    snprintf(r->kernel, sizeof r->kernel, "%s", d->k.name);
    snprintf(r->detail, sizeof r->detail, "%.100s, sm_%d", d->g.name, d->g.sm);
    int64_t tiles, rows, max_tiles;
    decode_sequence_cost(&c, &p->hp.pattern, p->hp.bands, p->T, p->N, &tiles, &rows, &max_tiles);
    r->splits = decode_splits(&c, d->g.sm_count, p->B, p->T, max_tiles);

    int maxi = c.max_intervals;
    size_t tab_bytes = (size_t)p->H * BANDTAB_STRIDE(maxi) * sizeof(int32_t);
    int32_t *tab = malloc(tab_bytes);
    if (!tab) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    int rc = bandtab_fill(&p->hp.pattern, p->H, p->N, maxi, tab, e) || upload(&d->g, &d->bands, tab, tab_bytes, e);
    free(tab);
    if (rc) return -1;
    if (upload(&d->g, &d->q, p->q16, p->nq * 2, e) || upload(&d->g, &d->k_c, p->k16, p->nk * 2, e) ||
        upload(&d->g, &d->v_c, p->v16, p->nk * 2, e) || cu_malloc(&d->g, p->nq * 2, &d->o, e) ||
        cu_malloc(&d->g, p->nl * 4, &d->lse, e))
        return -1;
    if (p->lens && upload(&d->g, &d->lens, p->lens, (size_t)p->B * 4, e)) return -1;
    if (p->P && (upload(&d->g, &d->k_p, p->pk16, p->npk * 2, e) || upload(&d->g, &d->v_p, p->pv16, p->npk * 2, e) ||
                 upload(&d->g, &d->table, p->table, (size_t)p->B * p->max_pages * 4, e)))
        return -1;
    size_t ws = decode_workspace_bytes(&c, p->B, p->H, p->T, r->splits);
    if (ws && cu_malloc(&d->g, ws, &d->ws, e)) return -1;

    decode_args *a = &d->a;
    a->q = (attn_tensor){ d->q, (long long)p->T * p->H * p->D, (long long)p->H * p->D, p->D };
    a->o = (attn_tensor){ d->o, (long long)p->T * p->H * p->D, (long long)p->H * p->D, p->D };
    a->lse = d->lse;
    a->lse_sb = (long long)p->H * p->T;
    a->lse_sh = p->T;
    a->bands = d->bands;
    a->kv_lens = d->lens;
    a->batch = p->B;
    a->max_len = p->N;
    a->new_tokens = p->T;
    a->heads = p->H;
    a->kv_heads = p->KVH;
    a->pattern = &p->hp.pattern;
    a->scale = (float)p->scale;
    a->splits = r->splits;
    a->workspace = d->ws;
    return 0;
}

/* Point the launch at the paged or the contiguous cache. */
static void dec_gpu_cache(dec_gpu *d, const dec_problem *p, int paged)
{
    decode_args *a = &d->a;
    long long row = (long long)p->KVH * p->D;
    if (paged) {
        a->k = (attn_tensor){ d->k_p, (long long)p->P * row, row, p->D };
        a->v = (attn_tensor){ d->v_p, (long long)p->P * row, row, p->D };
        a->block_table = d->table;
        a->max_pages = p->max_pages;
        a->page_size = p->P;
    } else {
        a->k = (attn_tensor){ d->k_c, (long long)p->N * row, row, p->D };
        a->v = (attn_tensor){ d->v_c, (long long)p->N * row, row, p->D };
        a->block_table = 0;
        a->max_pages = a->page_size = 0;
    }
}

static float half_to_float(sp_dtype dt, uint16_t x) { return dt == SP_FP16 ? fp16_to_float(x) : bf16_to_float(x); }

/* Poison O and LSE (NaN), launch once, download them as floats. */
static int dec_gpu_once(dec_gpu *d, const dec_problem *p, float *o, float *lse, sp_err *e)
{
    uint16_t *o16 = malloc(p->nq * 2);
    if (!o16) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    int rc = cu_fill16(&d->g, d->o, 0x7fff, p->nq, e) || cu_fill32(&d->g, d->lse, 0x7fc00000u, p->nl, e) ||
             decode_launch(&d->g, d->k.fn, d->k.combine, &d->k.cfg, &d->a, e) || cu_sync(&d->g, e) ||
             cu_download(&d->g, o16, d->o, p->nq * 2, e) || cu_download(&d->g, lse, d->lse, p->nl * 4, e);
    for (size_t i = 0; rc == 0 && i < p->nq; i++) o[i] = half_to_float(p->hp.spec.dtype, o16[i]);
    free(o16);
    return rc ? -1 : 0;
}

/* One launch, for ga_time_steps (one input set: the cache is the user's). */
static int dec_gpu_step(void *obj, const void *ctx, int set, sp_err *e)
{
    dec_gpu *d = obj;
    (void)ctx;
    (void)set;
    return decode_launch(&d->g, d->k.fn, d->k.combine, &d->k.cfg, &d->a, e);
}

/* CUDA-event median of iters back-to-back launches after 5 of warm-up (the tuner's timing). */
static int dec_gpu_time(dec_gpu *d, int iters, double *ms, sp_err *e)
{
    return ga_time_steps(&d->g, 1, dec_gpu_step, d, NULL, 5, iters, ms, e);
}

/* ---------------------------------------------------------------------------
 * What a step reads */

typedef struct { double bytes, dense_bytes; int64_t rows, tiles; } dec_bytes;

static void bytes_read(const dec_problem *p, const sp_kcfg *c, dec_bytes *out)
{
    memset(out, 0, sizeof *out);
    for (int b = 0; b < p->B; b++) {
        int64_t tiles, rows, max_tiles;
        decode_sequence_cost(c, &p->hp.pattern, p->hp.bands, p->T, len_of(p, b), &tiles, &rows, &max_tiles);
        out->rows += rows;
        out->tiles += tiles;
        out->dense_bytes += (double)len_of(p, b) * p->KVH * p->D * 4.0;
    }
    out->bytes = (double)out->rows * p->D * 4.0;
}

/* ---------------------------------------------------------------------------
 * run --decode */

static void print_lens(FILE *f, const dec_problem *p)
{
    if (!p->lens) { fprintf(f, "all %d", p->N); return; }
    for (int b = 0; b < p->B && b < 16; b++) fprintf(f, "%s%d", b ? "," : "", p->lens[b]);
    if (p->B > 16) fprintf(f, ",... (%d)", p->B);
}

/* The problem's fields of run's and check's JSON, into an open object. */
static void shape_json(jw *w, const dec_problem *p)
{
    jw_str(w, "mode", "decode");
    jw_str(w, "spec", p->hp.spec.name);
    jw_str(w, "spec_path", p->hp.spec.path);
    jw_int(w, "batch", p->B);
    jw_int(w, "kv_len", p->N);
    jw_int(w, "new_tokens", p->T);
    jw_int(w, "heads", p->H);
    jw_int(w, "kv_heads", p->KVH);
    jw_int(w, "head_dim", p->D);
    jw_str(w, "pattern", sp_pattern_name(p->hp.pattern.kind));
    jw_str(w, "dtype", sp_dtype_name(p->hp.spec.dtype));
    if (p->lens) {
        jw_arr(w, "kv_lens");
        for (int b = 0; b < p->B; b++) jw_int(w, NULL, p->lens[b]);
        jw_end(w);
    } else {
        jw_null(w, "kv_lens");
    }
    if (p->P) jw_int(w, "page_size", p->P);
    else jw_null(w, "page_size");
}

static void run_report(FILE *f, const decode_opts *o, const dec_problem *p, const dec_result *r, const dec_bytes *by)
{
    const sp_spec *s = &p->hp.spec;
    double sum = 0, abs_sum = 0;
    for (size_t i = 0; i < p->nq; i++) { sum += r->o[i]; abs_sum += fabs(r->o[i]); }
    double gbps = r->ms > 0 ? by->bytes / (r->ms * 1e-3) / 1e9 : 0;
    if (o->json) {
        jw w;
        jw_init(&w, f);
        jw_obj(&w, NULL);
        shape_json(&w, p);
        jw_str(&w, "device", r->on_gpu ? "gpu" : "cpu");
        jw_str(&w, "device_detail", r->detail);
        jw_str(&w, "device_reason", o->device_reason && o->device_reason[0] ? o->device_reason : NULL);
        jw_str(&w, "inputs", o->q_path ? "npy" : "random");
        if (o->q_path) jw_null(&w, "seed");
        else jw_int(&w, "seed", o->g.seed);
        jw_int(&w, "iters", r->iters);
        jw_num(&w, "median_ms", r->ms);
        if (r->on_gpu) {
            jw_str(&w, "kernel", r->kernel);
            jw_str(&w, "config_source", r->config_source);
            jw_int(&w, "splits", r->splits);
        }
        jw_int(&w, "kv_rows_read", by->rows);
        jw_num(&w, "kv_bytes_read", by->bytes);
        jw_num(&w, "kv_bytes_dense", by->dense_bytes);
        jw_num(&w, "read_ratio", by->dense_bytes > 0 ? by->bytes / by->dense_bytes : 0);
        jw_num(&w, "gbps", gbps);
        jw_obj(&w, "checksum");
        jw_num(&w, "sum", sum);
        jw_num(&w, "abs_sum", abs_sum);
        jw_end(&w);
        jw_str(&w, "output", o->out_path);
        jw_str(&w, "lse_output", o->lse_path);
        jw_end(&w);
        jw_finish(&w);
        return;
    }
    fprintf(f, "spec: %s (%s)\n", s->name, s->path);
    fprintf(f, "decode: B=%d N=%d T=%d H=%d KVH=%d D=%d, kv_lens ", p->B, p->N, p->T, p->H, p->KVH, p->D);
    print_lens(f, p);
    fprintf(f, "\n");
    if (p->P) fprintf(f, "cache: paged, %d tokens per page, %d pages in shuffled order\n", p->P, p->num_pages);
    else fprintf(f, "cache: contiguous [B, N, KVH, D]\n");
    fprintf(f, "pattern: %s, bands at each sequence's length\n", sp_pattern_name(p->hp.pattern.kind));
    fprintf(f, "dtype: %s\n", sp_dtype_name(s->dtype));
    fprintf(f, "device: %s (%s)%s%s\n", r->on_gpu ? "gpu" : "cpu", r->detail,
            o->device_reason && o->device_reason[0] ? ", auto: " : "", o->device_reason ? o->device_reason : "");
    if (o->q_path) fprintf(f, "inputs: %s, %s, %s\n", o->q_path, o->k_path, o->v_path);
    else fprintf(f, "inputs: random normal(0, 1), seed %lld\n", (long long)o->g.seed);
    if (r->on_gpu) fprintf(f, "kernel: %s (%s), %d split%s\n", r->kernel, r->config_source, r->splits, r->splits == 1 ? "" : "s");
    fprintf(f, "time: %.4f ms (median of %d)\n", r->ms, r->iters);
    fprintf(f, "K/V read: %.4g GB of a dense decode's %.4g GB (%.4f; 1/ratio %.2fx)\n", by->bytes / 1e9,
            by->dense_bytes / 1e9, by->dense_bytes > 0 ? by->bytes / by->dense_bytes : 0.0,
            by->bytes > 0 ? by->dense_bytes / by->bytes : 0.0);
    fprintf(f, "bandwidth: %.1f GB/s (K/V bytes read / time)\n", gbps);
    fprintf(f, "checksum: sum %.6e, sum|O| %.6e\n", sum, abs_sum);
    if (o->out_path) fprintf(f, "output: %s\n", o->out_path);
    if (o->lse_path) fprintf(f, "lse output: %s\n", o->lse_path);
}

int decode_run(const decode_opts *o, sp_err *e)
{
    sp_out outs[2];
    const char *paths[2] = { o->out_path, o->lse_path }, *what[2] = { "-o", "--lse-out" };
    if (decode_check_flags(o, e) || cmd_check_outputs(outs, paths, what, 2, e)) return SP_EXIT_USAGE;
    dec_problem p;
    dec_result r;
    memset(&r, 0, sizeof r);
    dec_gpu d;
    memset(&d, 0, sizeof d);
    double *od = NULL, *ld = NULL;
    int rc = -1;
    if (dec_load(o, &p, !o->on_gpu, e)) goto out;
    r.on_gpu = o->on_gpu;
    r.o = malloc(p.nq * sizeof *r.o);
    r.lse = malloc(p.nl * sizeof *r.lse);
    if (!r.o || !r.lse) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    if (o->on_gpu) {
        r.iters = o->iters > 0 ? o->iters : 50;
        if (dec_gpu_open(o, &p, &d, &r, e)) goto out;
        dec_gpu_cache(&d, &p, p.P > 0);
        if (dec_gpu_once(&d, &p, r.o, r.lse, e) || dec_gpu_time(&d, r.iters, &r.ms, e)) goto out;
    } else {
        r.iters = o->iters > 0 ? o->iters : 1;
        snprintf(r.detail, sizeof r.detail, "float64 reference");
        kcfg_for_spec(&r.cfg, &p.hp.spec, &p.hp.pattern, SP_KIND_DEC, 90);   /* the byte count of the GPU's default tiles */
        if (o->g.tile && kcfg_parse_tile(o->g.tile, &r.cfg, e)) goto out;
        if (kcfg_derive(&r.cfg, e)) goto out;
        od = malloc(p.nq * sizeof *od);
        ld = malloc(p.nl * sizeof *ld);
        if (!od || !ld) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
        if (dec_cpu(&p, p.P > 0, o->threads, r.iters, od, ld, &r.ms, e)) goto out;
        for (size_t i = 0; i < p.nq; i++) r.o[i] = (float)od[i];
        for (size_t i = 0; i < p.nl; i++) r.lse[i] = (float)ld[i];
    }
    npy_array a[2] = {
        { .dtype = NPY_F32, .ndim = 4, .shape = { p.B, p.T, p.H, p.D }, .count = p.nq, .data = r.o },
        { .dtype = NPY_F32, .ndim = 3, .shape = { p.B, p.H, p.T }, .count = p.nl, .data = r.lse },
    };
    for (int i = 0; i < 2; i++)
        if (outs[i].path && npy_stage(&outs[i], &a[i], e)) { sp_outs_discard(outs, 2); goto out; }
    if (sp_outs_commit(outs, 2, e)) { sp_outs_discard(outs, 2); goto out; }
    dec_bytes by;
    bytes_read(&p, &r.cfg, &by);
    FILE *report = stdout;
    for (int i = 0; i < 2; i++)
        if (paths[i] && strcmp(paths[i], "-") == 0) report = stderr;
    run_report(report, o, &p, &r, &by);
    rc = 0;
out:
    dec_gpu_close(&d);
    free(od); free(ld); free(r.o); free(r.lse);
    dec_free(&p);
    return rc ? (e->code ? e->code : SP_EXIT_FAIL) : SP_EXIT_OK;
}

/* ---------------------------------------------------------------------------
 * check --decode */

/* Bitwise equality of two arrays of n elements of `size` bytes (float or
 * double) as an exact result: a mismatch counts as a nonzero element. */
static void exact_equal(const void *x, const void *y, size_t n, size_t size, cmp_result *r)
{
    memset(r, 0, sizeof *r);
    r->n = n;
    const unsigned char *a = x, *b = y;
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i * size, b + i * size, size)) {
            double u = size == sizeof(float) ? ((const float *)x)[i] : ((const double *)x)[i];
            double v = size == sizeof(float) ? ((const float *)y)[i] : ((const double *)y)[i];
            r->nonzero++;
            if (isfinite(u) && isfinite(v) && fabs(u - v) > r->max_abs) r->max_abs = fabs(u - v);
        }
}

/* Both halves (O, LSE) of a bitwise comparison as one result. */
static void exact_pair(const void *o1, const void *o2, size_t no, const void *l1, const void *l2, size_t nl,
                       size_t size, cmp_result *r)
{
    cmp_result rl;
    exact_equal(o1, o2, no, size, r);
    exact_equal(l1, l2, nl, size, &rl);
    r->n += rl.n;
    r->nonzero += rl.nonzero;
    if (rl.max_abs > r->max_abs) r->max_abs = rl.max_abs;
}

/* The reference decode against the last T rows of the reference forward over
 * N (every length N): the forward's queries are random but for the last T
 * rows, which are the decode's. */
static int tie_to_forward(const dec_problem *p, const double *od, const double *ld, cmp_result *res, sp_err *e)
{
    size_t nfq = (size_t)p->B * p->N * p->H * p->D;
    double *fq = malloc(nfq * sizeof *fq), *fo = malloc(nfq * sizeof *fo);
    double *fl = malloc((size_t)p->B * p->H * p->N * sizeof *fl);
    double *to = malloc(p->nq * sizeof *to), *tl = malloc(p->nl * sizeof *tl);
    int rc = -1;
    if (!fq || !fo || !fl || !to || !tl) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    rng r;
    rng_seed(&r, 12345);
    for (size_t i = 0; i < nfq; i++) fq[i] = rng_normal(&r);
    size_t row = (size_t)p->H * p->D;
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++)
            memcpy(fq + ((size_t)b * p->N + p->N - p->T + t) * row, p->q + ((size_t)b * p->T + t) * row, row * sizeof *fq);
    ref_problem rp = { p->B, p->N, p->H, p->KVH, p->D, p->scale, p->hp.bands, 0 };
    if (ref_forward(&rp, fq, p->k, p->v, fo, fl)) { sp_fail(e, SP_EXIT_FAIL, "the CPU reference could not run"); goto out; }
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < p->T; t++) {
            memcpy(to + ((size_t)b * p->T + t) * row, fo + ((size_t)b * p->N + p->N - p->T + t) * row, row * sizeof *to);
            for (int h = 0; h < p->H; h++)
                tl[((size_t)b * p->H + h) * p->T + t] = fl[((size_t)b * p->H + h) * p->N + p->N - p->T + t];
        }
    exact_pair(od, to, p->nq, ld, tl, p->nl, sizeof(double), res);
    rc = 0;
out:
    free(fq); free(fo); free(fl); free(to); free(tl);
    return rc;
}

/* Forward FLOPs of the tie to the forward: quick enough on the CPU? */
static int forward_is_quick(const dec_problem *p)
{
    double pairs = 0;
    for (int h = 0; h < p->H; h++) pairs += (double)bands_pairs(&p->hp.bands[h], p->N);
    return 4.0 * p->D * pairs * p->B <= 3e9;
}

int decode_check(const decode_opts *o, sp_err *e)
{
    if (decode_check_flags(o, e)) return SP_EXIT_USAGE;
    dec_problem p;
    dec_result r;
    memset(&r, 0, sizeof r);
    dec_gpu d;
    memset(&d, 0, sizeof d);
    double *od = NULL, *ld = NULL;
    float *o2 = NULL, *l2 = NULL;
    int rc = -1, ok = 1;
    tensor_result t[6];
    int nt = 0;
    if (dec_load(o, &p, 1, e)) goto out;
    r.on_gpu = 1;
    r.o = malloc(p.nq * sizeof *r.o);
    r.lse = malloc(p.nl * sizeof *r.lse);
    od = malloc(p.nq * sizeof *od);
    ld = malloc(p.nl * sizeof *ld);
    if (!r.o || !r.lse || !od || !ld) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    if (dec_gpu_open(o, &p, &d, &r, e)) goto out;
    dec_gpu_cache(&d, &p, p.P > 0);
    if (dec_gpu_once(&d, &p, r.o, r.lse, e)) goto out;
    if (dec_cpu(&p, 0, o->threads, 1, od, ld, NULL, e)) goto out;
    double bound = cmp_bound(p.hp.spec.dtype == SP_BF16);
    cmp_result res;
    cmp_arrays(r.o, od, p.nq, &res);
    tensor_result_add(t, &nt, "O", &res, bound, 0);
    cmp_arrays(r.lse, ld, p.nl, &res);
    tensor_result_add(t, &nt, "LSE", &res, bound, 0);
    /* rows with no allowed key (LSE -inf in the reference): O exactly 0 */
    {
        const float **rows = malloc(p.nl * sizeof *rows);
        size_t nr = 0;
        if (!rows) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
        for (int b = 0; b < p.B; b++)
            for (int h = 0; h < p.H; h++)
                for (int tt = 0; tt < p.T; tt++)
                    if (isinf(ld[((size_t)b * p.H + h) * p.T + tt]))
                        rows[nr++] = r.o + (((size_t)b * p.T + tt) * p.H + h) * p.D;
        cmp_must_be_zero(rows, nr, (size_t)p.D, &res);
        free(rows);
        tensor_result_add(t, &nt, "O=0", &res, 0, 1);
    }
    if (p.P) {   /* the paged launch read the same values: bitwise the contiguous one */
        o2 = malloc(p.nq * sizeof *o2);
        l2 = malloc(p.nl * sizeof *l2);
        if (!o2 || !l2) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
        dec_gpu_cache(&d, &p, 0);
        if (dec_gpu_once(&d, &p, o2, l2, e)) goto out;
        exact_pair(r.o, o2, p.nq, r.lse, l2, p.nl, sizeof(float), &res);
        tensor_result_add(t, &nt, "paged", &res, 0, 1);
    }
    if ((p.all_n || !p.lens) && forward_is_quick(&p)) {
        if (tie_to_forward(&p, od, ld, &res, e)) goto out;
        tensor_result_add(t, &nt, "fwd", &res, 0, 1);
    }
    for (int i = 0; i < nt; i++) ok &= t[i].pass;
    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        shape_json(&w, &p);
        jw_str(&w, "kernel", r.kernel);
        jw_str(&w, "config_source", r.config_source);
        jw_int(&w, "splits", r.splits);
        jw_str(&w, "reference", "cpu-float64");
        tensor_results_json(&w, t, nt);
        jw_bool(&w, "ok", ok);
        jw_end(&w);
        jw_finish(&w);
    } else {
        printf("check %s decode: B=%d N=%d T=%d H=%d KVH=%d D=%d %s %s%s%s\n", p.hp.spec.name, p.B, p.N, p.T, p.H,
               p.KVH, p.D, sp_dtype_name(p.hp.spec.dtype), sp_pattern_name(p.hp.pattern.kind),
               p.lens ? " kv_lens" : "", p.P ? " paged" : "");
        printf("  kernel %s (%s), %d split%s, reference cpu-float64\n", r.kernel, r.config_source, r.splits,
               r.splits == 1 ? "" : "s");
        tensor_results_print(t, nt);
        printf("%s\n", ok ? "PASS" : "FAIL");
    }
    rc = 0;
out:
    dec_gpu_close(&d);
    free(od); free(ld); free(o2); free(l2); free(r.o); free(r.lse);
    dec_free(&p);
    if (rc) return e->code ? e->code : SP_EXIT_FAIL;
    return ok ? SP_EXIT_OK : SP_EXIT_FAIL;
}
