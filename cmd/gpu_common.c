#include "cmd/gpu_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "codegen/bands.h"
#include "runtime/config.h"
#include "runtime/nvrtc.h"
#include "runtime/packing.h"

void gpu_opts_init(gpu_opts *o)
{
    memset(o, 0, sizeof *o);
    o->layer_index = -1;
    o->layout = "bnhd";
    o->seed = 1;
}

int gpu_opts_seq_lens(gpu_opts *o, const char *text, int64_t *lens, sp_err *e)
{
    if (!text) return 0;
    if (packing_parse_list(text, lens, CMD_MAX_SEQS, &o->n_seq_lens, e)) return -1;
    o->seq_lens = lens;
    return 0;
}

/* --seq-lens: the packing's shape, bands and work into p (runtime/packing.h). */
static int problem_packing(const gpu_opts *o, gpu_problem *p, sp_err *e)
{
    if (o->batch || o->seq_len)
        return sp_fail(e, SP_EXIT_USAGE, "--seq-lens gives the batch and the lengths: no --batch or --seq-len with it");
    if (strcmp(o->layout, "bnhd"))
        return sp_fail(e, SP_EXIT_USAGE, "--seq-lens: packed tensors are [total, heads, head_dim]: no --layout %s",
                       o->layout);
    sp_packing pk;
    int64_t dense;
    if (packing_init(&pk, o->seq_lens, o->n_seq_lens, e)) return -1;
    int rc = packing_bands(&pk, &p->pattern, p->spec.heads, &p->pbands, &p->pairs, &dense, e);
    if (!rc) {
        p->packed = 1;
        p->dense_pairs = (double)dense;
        p->ratio = (double)p->pairs / p->dense_pairs;
        p->ga.B = pk.n;
        p->ga.N = (int)pk.max_len;
    }
    packing_free(&pk);
    return rc;
}

int gpu_problem_spec(const gpu_opts *o, gpu_problem *p, sp_err *e)
{
    memset(p, 0, sizeof *p);
    if (cmd_load_spec(o->spec_path, &p->spec, e)) return -1;
    sp_spec *s = &p->spec;
    const sp_pattern *lp;
    if (cmd_layer_pattern(s, o->layer_index, &lp, e)) goto fail;
    p->pattern = *lp;
    if (o->pattern) {
        sp_pattern_kind k;
        if (sp_pattern_from_name(o->pattern, &k) || k == SP_CUSTOM || k == SP_WINDOW) {
            sp_fail(e, SP_EXIT_USAGE, "--pattern: '%s' is not dense, local, spattn, exclusive or gapped", o->pattern);
            goto fail;
        }
        p->pattern.kind = k;
        p->pattern.custom = NULL;
    }
    if (o->dtype) {
        if (strcmp(o->dtype, "bf16") == 0) s->dtype = SP_BF16;
        else if (strcmp(o->dtype, "fp16") == 0) s->dtype = SP_FP16;
        else { sp_fail(e, SP_EXIT_USAGE, "--dtype: '%s' is not bf16 or fp16", o->dtype); goto fail; }
    }
    if (strcmp(o->layout, "bnhd") && strcmp(o->layout, "bhnd")) {
        sp_fail(e, SP_EXIT_USAGE, "--layout: '%s' is not bnhd or bhnd", o->layout);
        goto fail;
    }
    int64_t B = o->batch ? o->batch : (s->n_batch ? s->batch[0] : 1);
    int64_t N = o->seq_len ? o->seq_len : (s->n_seq_len ? s->seq_len[0] : 4096);
    if (N > (1 << 24)) { sp_fail(e, SP_EXIT_USAGE, "--seq-len %lld is too large", (long long)N); goto fail; }
    p->bands = calloc((size_t)s->heads, sizeof *p->bands);
    if (!p->bands) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto fail; }
    int64_t pairs = 0;
    for (int h = 0; h < s->heads; h++) {
        bands_head(&p->pattern, s->heads, h, N, &p->bands[h]);
        pairs += bands_pairs(&p->bands[h], N);
    }
    if (sp_mul_i64(pairs, B, &p->pairs, e)) goto fail;
    p->dense_pairs = (double)B * s->heads * (double)bands_dense_pairs(N);
    p->ratio = (double)p->pairs / p->dense_pairs;
    if (o->seq_lens && problem_packing(o, p, e)) goto fail;
    p->eff_flops_fwd = 4.0 * s->head_dim * (double)p->pairs;
    if (!p->packed) {
        p->ga.B = (int)B;
        p->ga.N = (int)N;
    }
    p->ga.H = s->heads; p->ga.KVH = s->kv_heads; p->ga.D = s->head_dim; p->ga.dtype = s->dtype;
    p->ga.layout = strcmp(o->layout, "bhnd") == 0 ? GA_BHND : GA_BNHD;
    const char *tiles[2] = { o->tile, o->bwd_tile };
    for (int i = 0; i < 2; i++) {
        if (!tiles[i]) continue;
        /* Syntax now, before any GPU work (exit 2, not 3); whether the tile
         * fits a kernel kind is kcfg_derive's call in pick_config, since the
         * forward and backward accept different tiles. */
        sp_kcfg t;
        kcfg_for_spec(&t, s, &p->pattern, i ? SP_KIND_BWD : SP_KIND_FWD, 80);
        if (kcfg_parse_tile(tiles[i], &t, e)) goto fail;
    }
    p->tile = o->tile;
    p->bwd_tile = o->bwd_tile ? o->bwd_tile : o->tile;
    p->db_path = o->db_path;
    p->deterministic = o->deterministic;
    return 0;
fail:
    free(p->bands);
    free(p->pbands);
    p->bands = p->pbands = NULL;
    spec_free(&p->spec);
    return -1;
}

int gpu_problem_open(const gpu_opts *o, gpu_problem *p, sp_err *e)
{
    if (gpu_problem_spec(o, p, e)) return -1;
    p->gpu = &p->gpu_storage;
    if (cu_open(o->gpu, p->gpu, e)) goto fail;
    int B = p->ga.B, N = p->ga.N;
    ga_layout layout = p->ga.layout;
    if (p->packed ? ga_create_packed(&p->ga, p->gpu, &p->spec, &p->pattern, o->seq_lens, o->n_seq_lens, 0, e)
                  : ga_create(&p->ga, p->gpu, &p->spec, &p->pattern, B, N, layout, 0, e)) {
        cu_close(p->gpu);
        goto fail;
    }
    return 0;
fail:
    free(p->pbands);
    free(p->bands);
    spec_free(&p->spec);
    p->gpu = NULL;
    return -1;
}

void gpu_problem_close(gpu_problem *p)
{
    ga_destroy(&p->ga);
    if (p->gpu) cu_close(p->gpu);
    free(p->bands);
    free(p->pbands);
    spec_free(&p->spec);
    memset(p, 0, sizeof *p);
}

void gpu_problem_db_key(const gpu_problem *p, sp_kernel_kind kind, db_key *key)
{
    config_db_key(p->gpu, &p->spec, &p->pattern, kind, p->deterministic, p->ga.B, p->ga.N, 0, key);
}

/* --tile (the backward: --bwd-tile, else --tile; the same in both modes),
 * else the tuning database's nearest bucket, else the heuristic; the
 * backward's for its deterministic mode if deterministic (runtime/config.h). */
static int pick_config(gpu_problem *p, sp_kernel_kind kind, int deterministic, sp_kcfg *c, sp_err *e)
{
    const char *tile = kind == SP_KIND_BWD ? p->bwd_tile : p->tile;
    return config_pick(p->gpu, &p->spec, &p->pattern, kind, deterministic, p->ga.B, p->ga.N, 0, p->db_path, tile, c,
                       p->config_source, sizeof p->config_source, e);
}

/* The kernel of kind, the backward's in mode deterministic. */
static int problem_kernel(gpu_problem *p, sp_kernel_kind kind, int deterministic, engine_kernel *k, sp_err *e)
{
    sp_kcfg c;
    if (pick_config(p, kind, deterministic, &c, e)) return -1;
    return engine_load(p->gpu, &p->spec, &p->pattern, &c, k, e);
}

int gpu_problem_kernel(gpu_problem *p, sp_kernel_kind kind, engine_kernel *k, sp_err *e)
{
    return problem_kernel(p, kind, p->deterministic, k, e);
}

int gpu_problem_dense_kernel(gpu_problem *p, sp_kernel_kind kind, int deterministic, engine_kernel *k, sp_err *e)
{
    return engine_load_dense(p->gpu, &p->spec, kind, deterministic, k, e);
}

int gpu_problem_time(gpu_problem *p, const engine_kernel *fk, int fwdbwd, int deterministic, uint64_t dout_seed,
                     int iters, int with_dense, gpu_timing *t, sp_err *e)
{
    gpu_attn *a = &p->ga;
    engine_kernel bk = { 0 }, dk = { 0 }, dbk = { 0 };
    sp_pattern dense = { .kind = SP_DENSE };
    int rc = -1;
    memset(t, 0, sizeof *t);
    snprintf(t->kernel, sizeof t->kernel, "%s", fk->name);
    if (fwdbwd) {
        if (problem_kernel(p, SP_KIND_BWD, deterministic, &bk, e) ||
            ga_alloc_backward(a, &bk.cfg, dout_seed, NULL, e) ||
            ga_time_fwdbwd(a, fk, &bk, deterministic, 5, iters, &t->ms, e)) goto out;
        snprintf(t->kernel + strlen(t->kernel), sizeof t->kernel - strlen(t->kernel), " + %s", bk.name);
    } else if (ga_time_forward(a, fk, 10, iters, &t->ms, e)) goto out;
    if (with_dense) {
        if (gpu_problem_dense_kernel(p, SP_KIND_FWD, 0, &dk, e) || ga_set_bands(a, &dense, e)) goto out;
        if (fwdbwd) {
            if (gpu_problem_dense_kernel(p, SP_KIND_BWD, deterministic, &dbk, e) ||
                ga_time_fwdbwd(a, &dk, &dbk, deterministic, 3, iters, &t->dense_ms, e)) goto out;
        } else if (ga_time_forward(a, &dk, 5, iters, &t->dense_ms, e)) goto out;
    }
    rc = 0;
out:
    engine_unload(p->gpu, &bk);
    engine_unload(p->gpu, &dk);
    engine_unload(p->gpu, &dbk);
    return rc;
}

refgpu_view gpu_problem_view(const gpu_problem *p, sp_dptr ptr, int heads)
{
    long long sb, sn, sh;
    ga_strides(&p->ga, heads, &sb, &sn, &sh);
    refgpu_view v = { ptr, refgpu_dtype_of(p->spec.dtype), { sb, sn, sh, 1 } };
    return v;
}

void gpu_problem_refgpu(const gpu_problem *p, int set, refgpu_problem *rp)
{
    const gpu_attn *a = &p->ga;
    memset(rp, 0, sizeof *rp);
    rp->B = a->B; rp->N = a->N; rp->H = a->H; rp->KVH = a->KVH; rp->D = a->D;
    rp->scale = a->scale;
    rp->bands = a->bands;
    rp->max_intervals = a->max_intervals;
    rp->q = gpu_problem_view(p, a->q[set], a->H);
    rp->k = gpu_problem_view(p, a->k[set], a->KVH);
    rp->v = gpu_problem_view(p, a->v[set], a->KVH);
    if (a->dout) rp->dout = gpu_problem_view(p, a->dout, a->H);
}

void gpu_problem_json(const gpu_problem *p, jw *w)
{
    const gpu_attn *a = &p->ga;
    jw_int(w, "batch", a->B);
    jw_int(w, "seq_len", a->N);
    if (p->packed) {   /* a->B sequences, a->N the longest */
        jw_arr(w, "seq_lens");
        for (int b = 0; b < a->pack.n; b++) jw_int(w, NULL, a->pack.len[b]);
        jw_end(w);
        jw_int(w, "total_tokens", a->pack.total);
    }
    jw_int(w, "heads", a->H);
    jw_int(w, "kv_heads", a->KVH);
    jw_int(w, "head_dim", a->D);
    jw_str(w, "dtype", sp_dtype_name(a->dtype));
    jw_str(w, "pattern", sp_pattern_name(p->pattern.kind));
    jw_str(w, "layout", a->layout == GA_BHND ? "bhnd" : "bnhd");
    jw_num(w, "work_ratio", p->ratio);
    if (p->gpu) jw_str(w, "gpu", p->gpu->name);
}

/* Is row i (of N) of head h empty: a query row with no key (kv_side 0), or
 * a key no query head of kv head h's group reaches (kv_side 1)?  bl: the
 * heads' bands at N. */
static int row_is_empty(const sp_band_list *bl, int kv_side, int h, int group, int64_t i, int64_t N)
{
    if (!kv_side) return !bands_row_has_key(&bl[h], i);
    for (int q = h * group; q < (h + 1) * group; q++)
        if (bands_key_is_reached(&bl[q], i, N)) return 0;
    return 1;
}

int gpu_problem_empty_rows(const gpu_problem *p, const float *t, int kv_side, cmp_result *r, sp_err *e)
{
    const gpu_attn *a = &p->ga;
    const int heads = kv_side ? a->KVH : a->H, group = a->H / a->KVH;
    const size_t nrows_max = (size_t)ga_rows(a) * (size_t)heads;
    const float **rows = malloc((nrows_max ? nrows_max : 1) * sizeof *rows);
    if (!rows) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    size_t nrows = 0;
    /* Sequence b: rows first .. first + N - 1, bands bl (packed: each its own). */
    for (int b = 0; b < a->B; b++) {
        const int64_t N = p->packed ? a->pack.len[b] : a->N;
        const size_t first = p->packed ? (size_t)a->pack.cu[b] : (size_t)b * (size_t)a->N;
        const sp_band_list *bl = p->packed ? p->pbands + (size_t)b * a->H : p->bands;
        for (int64_t i = 0; i < N; i++)
            for (int h = 0; h < heads; h++)
                if (row_is_empty(bl, kv_side, h, group, i, N))
                    rows[nrows++] = t + ((first + (size_t)i) * (size_t)heads + (size_t)h) * (size_t)a->D;
    }
    cmp_must_be_zero(rows, nrows, (size_t)a->D, r);
    free(rows);
    return 0;
}

void tensor_result_add(tensor_result *out, int *n, const char *name, const cmp_result *r, double bound, int exact)
{
    tensor_result *t = &out[(*n)++];
    t->name = name;
    t->r = *r;
    t->bound = exact ? 0.0 : bound;
    t->exact = exact;
    t->pass = cmp_pass(r, t->bound);
}

void tensor_results_json(jw *w, const tensor_result *ts, int n)
{
    jw_arr(w, "tensors");
    for (int i = 0; i < n; i++) {
        const tensor_result *t = &ts[i];
        jw_obj(w, NULL);
        jw_str(w, "name", t->name);
        jw_num(w, "rel_l2", t->r.rel_l2);
        jw_num(w, "max_abs", t->r.max_abs);
        jw_int(w, "nan", (int64_t)t->r.nan_count);
        jw_int(w, "inf_mismatch", (int64_t)t->r.inf_mismatch);
        jw_int(w, "nonzero", (int64_t)t->r.nonzero);
        jw_num(w, "bound", t->bound);
        jw_bool(w, "exact", t->exact);
        jw_bool(w, "pass", t->pass);
        jw_end(w);
    }
    jw_end(w);
}

void tensor_results_print(const tensor_result *ts, int n)
{
    /* bad: NaNs, infinities that do not match, and nonzero elements where 0 is exact */
    printf("  %-6s %-10s %-10s %-5s %-8s %s\n", "tensor", "rel_l2", "max_abs", "bad", "bound", "result");
    for (int i = 0; i < n; i++) {
        const tensor_result *t = &ts[i];
        char bound[16];
        if (t->exact) snprintf(bound, sizeof bound, "exact");
        else snprintf(bound, sizeof bound, "%.0e", t->bound);
        printf("  %-6s %-10.3e %-10.3e %-5zu %-8s %s\n", t->name, t->r.rel_l2, t->r.max_abs,
               t->r.nan_count + t->r.inf_mismatch + t->r.nonzero, bound, t->pass ? "PASS" : "FAIL");
    }
}
