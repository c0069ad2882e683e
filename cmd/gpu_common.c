#include "cmd/gpu_common.h"

#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "codegen/bands.h"
#include "runtime/nvrtc.h"

void gpu_opts_init(gpu_opts *o)
{
    memset(o, 0, sizeof *o);
    o->layer_index = -1;
    o->layout = "bnhd";
    o->seed = 1;
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
    p->pairs = pairs * B;
    p->ratio = (double)pairs / ((double)s->heads * (double)bands_dense_pairs(N));
    p->eff_flops_fwd = 4.0 * s->head_dim * (double)p->pairs;
    p->ga.B = (int)B;
    p->ga.N = (int)N;
    p->ga.H = s->heads; p->ga.KVH = s->kv_heads; p->ga.D = s->head_dim; p->ga.dtype = s->dtype;
    p->ga.layout = strcmp(o->layout, "bhnd") == 0 ? GA_BHND : GA_BNHD;
    if (o->tile) {
        /* Syntax now, before any GPU work (exit 2, not 3); whether the tile
         * fits a kernel kind is kcfg_derive's call in pick_config, since the
         * forward and backward accept different tiles. */
        sp_kcfg t;
        kcfg_for_spec(&t, s, &p->pattern, SP_KIND_FWD, 80);
        if (kcfg_parse_tile(o->tile, &t, e)) goto fail;
    }
    p->tile = o->tile;
    p->db_path = o->db_path;
    p->deterministic = o->deterministic;
    return 0;
fail:
    free(p->bands);
    p->bands = NULL;
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
    if (ga_create(&p->ga, p->gpu, &p->spec, &p->pattern, B, N, layout, 0, e)) { cu_close(p->gpu); goto fail; }
    return 0;
fail:
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
    spec_free(&p->spec);
    memset(p, 0, sizeof *p);
}

void gpu_problem_db_key(const gpu_problem *p, sp_kernel_kind kind, db_key *key)
{
    memset(key, 0, sizeof *key);
    snprintf(key->gpu_name, sizeof key->gpu_name, "%.127s", p->gpu->name);
    key->sm = p->gpu->sm;
    key->sm_count = p->gpu->sm_count;
    key->driver_version = p->gpu->driver_version;
    key->nvrtc_version = nvrtc_version();
    snprintf(key->spattn_version, sizeof key->spattn_version, "%s", SPATTN_VERSION);
    snprintf(key->kind, sizeof key->kind, "%s", kind == SP_KIND_BWD ? "bwd" : "fwd");
    key->heads = p->spec.heads;
    key->kv_heads = p->spec.kv_heads;
    key->head_dim = p->spec.head_dim;
    snprintf(key->dtype, sizeof key->dtype, "%s", sp_dtype_name(p->spec.dtype));
    snprintf(key->pattern, sizeof key->pattern, "%s", sp_pattern_name(p->pattern.kind));
    if (p->pattern.kind == SP_CUSTOM) db_bands_hash(p->pattern.custom, p->spec.heads, key->bands_hash);
    key->band_basis = p->pattern.band_basis;
    if (p->pattern.kind == SP_WINDOW) key->band_basis = p->pattern.window;   /* a window's one parameter: W */
    key->batch = p->ga.B;
    key->seq_bucket = db_seq_bucket(p->ga.N);
}

/* --tile, else the tuning database's nearest bucket, else the heuristic. */
static int pick_config(gpu_problem *p, sp_kernel_kind kind, sp_kcfg *c, sp_err *e)
{
    kcfg_for_spec(c, &p->spec, &p->pattern, kind, p->gpu->sm);
    if (p->tile) {
        if (kcfg_parse_tile(p->tile, c, e)) return -1;
        snprintf(p->config_source, sizeof p->config_source, "--tile");
        return kcfg_derive(c, e);
    }
    db *d = NULL;
    sp_err dbe = { 0 };
    /* A missing or unreadable database only means "not tuned": fall back. */
    if (db_open(p->db_path, 1, &d, &dbe) == 0) {
        db_key key;
        db_row row;
        int found = 0;
        gpu_problem_db_key(p, kind, &key);
        if (db_lookup_nearest(d, &key, &row, &found, &dbe) == 0 && found) {
            sp_kcfg t = *c;
            sp_err pe = { 0 };
            if (kcfg_parse_tile(row.tile, &t, &pe) == 0 && kcfg_derive(&t, &pe) == 0) {
                *c = t;
                snprintf(p->config_source, sizeof p->config_source, "tuned (batch %lld, N<=%lld)",
                         (long long)row.key.batch, (long long)row.key.seq_bucket);
                db_close(d);
                return 0;
            }
        }
        db_close(d);
    }
    snprintf(p->config_source, sizeof p->config_source, "heuristic");
    return kcfg_derive(c, e);
}

int gpu_problem_kernel(gpu_problem *p, sp_kernel_kind kind, engine_kernel *k, sp_err *e)
{
    sp_kcfg c;
    if (pick_config(p, kind, &c, e)) return -1;
    return engine_load(p->gpu, &p->spec, &p->pattern, &c, k, e);
}

int gpu_problem_dense_kernel(gpu_problem *p, sp_kernel_kind kind, engine_kernel *k, sp_err *e)
{
    sp_pattern dense = { .kind = SP_DENSE };
    sp_kcfg c;
    kcfg_for_spec(&c, &p->spec, &dense, kind, p->gpu->sm);
    if (kcfg_derive(&c, e)) return -1;
    return engine_load(p->gpu, &p->spec, &dense, &c, k, e);
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
        if (gpu_problem_kernel(p, SP_KIND_BWD, &bk, e) || ga_alloc_backward(a, &bk.cfg, dout_seed, NULL, e) ||
            ga_time_fwdbwd(a, fk, &bk, deterministic, 5, iters, &t->ms, e)) goto out;
        snprintf(t->kernel + strlen(t->kernel), sizeof t->kernel - strlen(t->kernel), " + %s", bk.name);
    } else if (ga_time_forward(a, fk, 10, iters, &t->ms, e)) goto out;
    if (with_dense) {
        if (gpu_problem_dense_kernel(p, SP_KIND_FWD, &dk, e) || ga_set_bands(a, &dense, e)) goto out;
        if (fwdbwd) {
            if (gpu_problem_dense_kernel(p, SP_KIND_BWD, &dbk, e) ||
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
    jw_int(w, "heads", a->H);
    jw_int(w, "kv_heads", a->KVH);
    jw_int(w, "head_dim", a->D);
    jw_str(w, "dtype", sp_dtype_name(a->dtype));
    jw_str(w, "pattern", sp_pattern_name(p->pattern.kind));
    jw_str(w, "layout", a->layout == GA_BHND ? "bhnd" : "bnhd");
    jw_num(w, "work_ratio", p->ratio);
    if (p->gpu) jw_str(w, "gpu", p->gpu->name);
}
