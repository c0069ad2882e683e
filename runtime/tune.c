/* The autotuner (runtime/tune.h): candidates compiled on a thread pool and
 * pruned by the compiler's report, each checked against a trusted result
 * (the cuBLAS reference; for decode the float64 CPU reference) and timed on
 * the GPU (or scored by the fake), the winners saved in one transaction.
 * The CLI (cmd/tune.c) and spattn_tune (runtime/api.c) are its faces. */
#include "runtime/tune.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/bands.h"
#include "common/fileio.h"
#include "runtime/compare.h"
#include "runtime/config.h"
#include "runtime/decode.h"
#include "runtime/engine.h"
#include "runtime/gpu_attn.h"
#include "runtime/gpu_decode.h"
#include "runtime/nvrtc.h"
#include "runtime/ref_gpu.h"

typedef struct {
    sp_kcfg cfg;
    int pruned;               /* 1: dropped by the resource report or compile */
    int skip;                 /* 1: not tried at the key in hand (decode: splits its launch would clamp) */
    char why[160];
    double ms;                /* median, or < 0 if not timed */
    int wrong;                /* failed the check against the trusted result */
    engine_kernel k;          /* compile result (resources) */
} candidate;

/* One run's state: the options, the GPU, the clock and the progress count
 * of the key in hand. */
typedef struct {
    const tune_opts *o;
    sp_gpu *g;
    const char *db_path;
    double deadline;
    long done, total;
} tuner;

static int stopped(const tuner *t) { return t->o->stop && *t->o->stop; }

static void news(const tuner *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void news(const tuner *t, const char *fmt, ...)
{
    if (!t->o->progress) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    tune_event ev = { TUNE_EV_MESSAGE, line, 0, 0 };
    t->o->progress(t->o->user, &ev);
}

static void step(tuner *t, const char *name)
{
    ++t->done;
    if (!t->o->progress) return;
    tune_event ev = { TUNE_EV_STEP, name, t->done, t->total };
    t->o->progress(t->o->user, &ev);
}

int tune_fake_requested(void)
{
    const char *v = getenv("SPATTN_TUNE_FAKE");
    return v && *v && strcmp(v, "0") != 0;
}

void tune_fake_gpu(sp_gpu *g)
{
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "spattn fake GPU");
    g->sm = 90;
    g->sm_count = 132;
    g->driver_version = 13000;
    g->smem_optin = 227 * 1024;
}

/* ---- compiling candidates on several threads -------------------------------- */

typedef struct {
    candidate *c;
    int n;
    int next;
    pthread_mutex_t lock;
    const char *arch;
    const sp_spec *spec;
    const sp_pattern *pat;
    int reg_limit;            /* registers per SM */
    size_t smem_limit;
} compile_pool;

static void *compile_worker(void *arg)
{
    compile_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int i = p->next++;
        pthread_mutex_unlock(&p->lock);
        if (i >= p->n) return NULL;
        candidate *c = &p->c[i];
        sp_err e = { 0 };
        if (engine_compile(p->arch, p->spec, p->pat, &c->cfg, &c->k, &e)) {
            c->pruned = 1;
            snprintf(c->why, sizeof c->why, "compile failed: %.120s", e.msg);
            continue;
        }
        const sp_kres *r = &c->k.res;
        if (r->spill_stores || r->spill_loads)
            { c->pruned = 1; snprintf(c->why, sizeof c->why, "spills %d/%d bytes", r->spill_stores, r->spill_loads); }
        else if (r->wgmma_serialized)
            { c->pruned = 1; snprintf(c->why, sizeof c->why, "wgmma serialized by ptxas (C7518)"); }
        else if ((long)r->regs * c->cfg.threads > p->reg_limit)
            { c->pruned = 1; snprintf(c->why, sizeof c->why, "%d registers x %d threads > %d", r->regs, c->cfg.threads, p->reg_limit); }
        else if ((size_t)(c->cfg.smem_bytes + r->smem_static) > p->smem_limit)
            { c->pruned = 1; snprintf(c->why, sizeof c->why, "%d bytes of shared memory > %zu", c->cfg.smem_bytes + r->smem_static, p->smem_limit); }
    }
}

static void compile_all(compile_pool *p, int threads)
{
    pthread_t t[32];
    if (threads < 1) threads = 1;
    if (threads > 32) threads = 32;
    pthread_mutex_init(&p->lock, NULL);
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&t[started], NULL, compile_worker, p)) break;
    if (started == 0) compile_worker(p);
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    pthread_mutex_destroy(&p->lock);
}

/* ---- the fake GPU ----------------------------------------------------------- */

/* The fake backend's "time": smaller for bigger tiles and deeper pipelines,
 * with a fixed ordering, so tests can predict the winner.  The deterministic
 * backward pays 0.05 per stage on top (its adds wait for their turn; as
 * measured in session 10, fewer stages win there), so its winner differs.
 * Decode: the same in BN and stages, proportional to the cache read, best
 * at 2 splits. */
static double fake_ms(const sp_kcfg *c, int deterministic, int64_t B, int64_t N, int T)
{
    if (c->kind == SP_KIND_DEC)
        return 1e-6 * (double)B * (double)N * T * (1.0 + 16.0 / c->bn + 0.1 / c->stages) *
               (1.0 + 0.05 * abs(c->splits - 2));
    double turns = c->kind == SP_KIND_BWD && deterministic ? 0.05 * c->stages : 0;
    return 0.001 * (double)N / 1024.0 * (1.0 + 64.0 / c->bm + 32.0 / c->bn + 0.1 / c->stages + turns);
}

/* A candidate to evaluate at the key in hand. */
static int eligible(const candidate *c) { return !c->pruned && !c->skip; }

/* The fake backend's wrong candidate is the fastest on paper, which would
 * otherwise win: a fast wrong config must never win. */
static void evaluate_fake(tuner *t, candidate *c, int n, int det, int64_t B, int64_t N, int T)
{
    int fastest = -1;
    for (int i = 0; i < n; i++)
        if (eligible(&c[i]) &&
            (fastest < 0 || fake_ms(&c[i].cfg, det, B, N, T) < fake_ms(&c[fastest].cfg, det, B, N, T)))
            fastest = i;
    for (int i = 0; i < n && !stopped(t); i++) {
        if (!eligible(&c[i])) continue;
        step(t, "fake");
        if (i == fastest) {
            c[i].wrong = 1;
            char tile[64];
            kcfg_tile_string(&c[i].cfg, tile, sizeof tile);
            news(t, "rejected %s: wrong result (fake backend)", tile);
        } else c[i].ms = fake_ms(&c[i].cfg, det, B, N, T);
    }
}

/* ---- evaluating candidates on the GPU ------------------------------------------ */

/* The next candidate to evaluate from *i on (then past it): not pruned,
 * counted as a step; NULL once none is left, the budget is spent or a stop
 * is asked for. */
static candidate *next_candidate(tuner *t, candidate *c, int n, int *i)
{
    for (; *i < n && !stopped(t); ++*i) {
        if (!eligible(&c[*i])) continue;
        if (sp_now() > t->deadline) return NULL;
        char label[160];
        if (c[*i].cfg.kind == SP_KIND_DEC) snprintf(label, sizeof label, "%.120s:k%d", c[*i].k.name, c[*i].cfg.splits);
        else snprintf(label, sizeof label, "%s", c[*i].k.name);
        step(t, label);
        return &c[(*i)++];
    }
    return NULL;
}

/* The reference problem of a's input set 0 ([B, N, heads, D] tensors). */
static void ref_problem_of(const gpu_attn *a, refgpu_problem *rp)
{
    refgpu_dtype dt = refgpu_dtype_of(a->dtype);
    memset(rp, 0, sizeof *rp);
    rp->B = a->B; rp->N = a->N; rp->H = a->H; rp->KVH = a->KVH; rp->D = a->D;
    rp->scale = a->scale;
    rp->bands = a->bands;
    rp->max_intervals = a->max_intervals;
    rp->q = refgpu_view_bnhd(a->q[0], dt, a->N, a->H, a->D);
    rp->k = refgpu_view_bnhd(a->k[0], dt, a->N, a->KVH, a->D);
    rp->v = refgpu_view_bnhd(a->v[0], dt, a->N, a->KVH, a->D);
    if (a->dout) rp->dout = refgpu_view_bnhd(a->dout, dt, a->N, a->H, a->D);
}

/* Check then time every surviving forward candidate. */
static int evaluate_fwd(tuner *t, gpu_attn *a, const sp_spec *spec, const sp_pattern *pat, candidate *c, int n,
                        sp_err *e)
{
    refgpu *ref = NULL;
    sp_dptr ro = 0;
    int rc = -1;
    if (ga_fill_random(a, 1, e) || refgpu_open(a->g, &ref, e) || cu_malloc(a->g, 4 * a->nq, &ro, e)) goto out;
    refgpu_problem rp;
    ref_problem_of(a, &rp);
    if (refgpu_forward(ref, &rp, ro, 0, e)) goto out;
    double bound = cmp_bound(a->dtype == SP_BF16);
    int64_t shape[4] = { a->B, a->N, a->H, a->D };
    refgpu_view out16 = refgpu_view_bnhd(a->o, refgpu_dtype_of(a->dtype), a->N, a->H, a->D);
    refgpu_view ref32 = refgpu_view_bnhd(ro, REFGPU_FP32, a->N, a->H, a->D);
    candidate *cd;
    for (int i = 0; (cd = next_candidate(t, c, n, &i)) != NULL;) {
        engine_kernel k;
        if (engine_load(a->g, spec, pat, &cd->cfg, &k, e)) goto out;
        cmp_result res;
        int ok = ga_poison(a, e) == 0 && ga_forward(a, &k, 0, e) == 0 && cu_sync(a->g, e) == 0 &&
                 refgpu_compare(ref, shape, &out16, &ref32, &res, e) == 0;
        if (!ok) { engine_unload(a->g, &k); goto out; }
        if (!cmp_pass(&res, bound)) {
            cd->wrong = 1;
            news(t, "rejected %s: rel_l2 %.3e, %zu NaN (bound %.0e)", k.name, res.rel_l2, res.nan_count, bound);
        } else if (ga_time_forward(a, &k, 3, t->o->iters, &cd->ms, e)) {
            engine_unload(a->g, &k);
            goto out;
        }
        engine_unload(a->g, &k);
    }
    rc = 0;
out:
    cu_free(a->g, ro);
    if (ref) refgpu_close(ref);
    return rc;
}

/* The same for backward candidates in mode det (deterministic): the
 * forward runs with the config the problem would use (database, else
 * heuristic), each candidate's dQ, dK, dV are checked against the cuBLAS
 * backward, then the backward alone is timed. */
static int evaluate_bwd(tuner *t, gpu_attn *a, const sp_spec *spec, const sp_pattern *pat, candidate *c, int n,
                        int det, sp_err *e)
{
    refgpu *ref = NULL;
    sp_dptr rq = 0, rk = 0, rv = 0;
    engine_kernel fk = { 0 };
    sp_kcfg fc;
    char fsrc[160];
    int rc = -1, first = -1;
    for (int i = 0; i < n && first < 0; i++) if (eligible(&c[i])) first = i;
    if (first < 0) return 0;
    if (ga_fill_random(a, 1, e) || ga_alloc_backward(a, &c[first].cfg, 8, NULL, e) ||
        config_pick(a->g, spec, pat, SP_KIND_FWD, 0, a->B, a->N, 0, t->db_path, NULL, &fc, fsrc, sizeof fsrc, e) ||
        engine_load(a->g, spec, pat, &fc, &fk, e) || refgpu_open(a->g, &ref, e) ||
        cu_malloc(a->g, 4 * a->nq, &rq, e) || cu_malloc(a->g, 4 * a->nk, &rk, e) || cu_malloc(a->g, 4 * a->nk, &rv, e))
        goto out;
    refgpu_problem rp;
    ref_problem_of(a, &rp);
    if (refgpu_backward(ref, &rp, rq, rk, rv, e)) goto out;
    double bound = cmp_bound(a->dtype == SP_BF16);
    sp_dptr mine[3] = { a->dq, a->dk, a->dv }, theirs[3] = { rq, rk, rv };
    int heads[3] = { a->H, a->KVH, a->KVH };
    candidate *cd;
    for (int i = 0; (cd = next_candidate(t, c, n, &i)) != NULL;) {
        engine_kernel k;
        if (engine_load(a->g, spec, pat, &cd->cfg, &k, e)) goto out;
        int ok = ga_poison(a, e) == 0 && ga_forward(a, &fk, 0, e) == 0 && ga_backward(a, &k, 0, det, e) == 0 &&
                 cu_sync(a->g, e) == 0;
        double worst = 0;
        size_t nans = 0;
        for (int ti = 0; ok && ti < 3; ti++) {
            int64_t shape[4] = { a->B, a->N, heads[ti], a->D };
            refgpu_view mv = refgpu_view_bnhd(mine[ti], refgpu_dtype_of(a->dtype), a->N, heads[ti], a->D);
            refgpu_view r32 = refgpu_view_bnhd(theirs[ti], REFGPU_FP32, a->N, heads[ti], a->D);
            cmp_result res;
            ok = refgpu_compare(ref, shape, &mv, &r32, &res, e) == 0;
            if (ok && !cmp_pass(&res, bound)) cd->wrong = 1;
            if (res.rel_l2 > worst) worst = res.rel_l2;
            nans += res.nan_count;
        }
        if (!ok) { engine_unload(a->g, &k); goto out; }
        if (cd->wrong)
            news(t, "rejected %s: worst rel_l2 %.3e, %zu NaN (bound %.0e)", k.name, worst, nans, bound);
        else if (ga_time_backward(a, &k, det, 3, t->o->iters, &cd->ms, e)) {
            engine_unload(a->g, &k);
            goto out;
        }
        engine_unload(a->g, &k);
    }
    rc = 0;
out:
    engine_unload(a->g, &fk);
    cu_free(a->g, rq); cu_free(a->g, rk); cu_free(a->g, rv);
    if (ref) refgpu_close(ref);
    return rc;
}

/* The same for decode candidates (tile and splits): each one's O and LSE
 * against the float64 CPU reference of the decode (runtime/gpu_decode.h),
 * then the decode (and its combine) timed. */
static int evaluate_dec(tuner *t, gpu_decode *gd, const sp_spec *spec, const sp_pattern *pat, candidate *c, int n,
                        sp_err *e)
{
    double bound = cmp_bound(spec->dtype == SP_BF16);
    candidate *cd;
    for (int i = 0; (cd = next_candidate(t, c, n, &i)) != NULL;) {
        engine_kernel k;
        if (engine_load(gd->g, spec, pat, &cd->cfg, &k, e)) return -1;
        cmp_result ro, rl;
        int rc = gd_check(gd, &k, &cd->cfg, &ro, &rl, e);
        if (!rc && (!cmp_pass(&ro, bound) || !cmp_pass(&rl, bound))) {
            cd->wrong = 1;
            news(t, "rejected %s with %d splits: O rel_l2 %.3e, LSE rel_l2 %.3e, %zu NaN (bound %.0e)", k.name,
                 cd->cfg.splits, ro.rel_l2, rl.rel_l2, ro.nan_count + rl.nan_count, bound);
        } else if (!rc)
            rc = gd_time(gd, &k, &cd->cfg, 3, t->o->iters, &cd->ms, e);
        engine_unload(gd->g, &k);
        if (rc) return -1;
    }
    return 0;
}

/* ---- one key ------------------------------------------------------------------ */

/* Keys of query row i (0 <= i) inside the bands bl. */
static int64_t row_keys(const sp_band_list *bl, int64_t i)
{
    int64_t keys = 0;
    for (int k = 0; k < bl->n; k++) {
        int64_t lo = i - bl->iv[k].hi + 1, hi = i - bl->iv[k].lo;   /* keys j in [lo, hi] */
        if (lo < 0) lo = 0;
        if (hi >= lo) keys += hi - lo + 1;
    }
    return keys;
}

/* FLOPs counted on allowed pairs, 4 * D * pairs: the forward's at (B, N),
 * or (T >= 1) a decode step's, the last T rows of each of B full
 * sequences of N tokens. */
static int flops_of(const sp_spec *s, const sp_pattern *pat, int64_t B, int64_t N, int T, double *out, sp_err *e)
{
    if (T >= 1) {
        int64_t pairs = 0;
        for (int h = 0; h < s->heads; h++) {
            sp_band_list bl;
            bands_head(pat, s->heads, h, N, &bl);
            for (int64_t i = N - T; i < N; i++) pairs += i >= 0 ? row_keys(&bl, i) : 0;
        }
        *out = 4.0 * s->head_dim * (double)pairs * (double)B;
        return 0;
    }
    int64_t pairs = 0, all;
    for (int h = 0; h < s->heads; h++) {
        sp_band_list bl;
        bands_head(pat, s->heads, h, N, &bl);
        pairs += bands_pairs(&bl, N);
    }
    if (sp_mul_i64(pairs, B, &all, e)) return -1;
    *out = 4.0 * s->head_dim * (double)all;
    return 0;
}

/* Every head's bands at N (calloc'd; NULL if out of memory). */
static sp_band_list *bands_at(const tune_opts *o, int64_t N)
{
    sp_band_list *bands = calloc((size_t)o->spec->heads, sizeof *bands);
    for (int h = 0; bands && h < o->spec->heads; h++) bands_head(o->pattern, o->spec->heads, h, N, &bands[h]);
    return bands;
}

/* GB/s of the K and V bytes a decode step with config c reads at (B, N, T)
 * in ms: memory-bound, that is its measure. */
static double decode_gbps(const tune_opts *o, const sp_kcfg *c, int64_t B, int64_t N, int T, double ms)
{
    sp_band_list *bands = bands_at(o, N);
    int64_t tiles, rows = 0, max_tiles;
    if (bands) decode_sequence_cost(c, o->pattern, bands, T, N, &tiles, &rows, &max_tiles);
    free(bands);
    return (double)rows * (double)B * o->spec->head_dim * 4.0 / (ms * 1e-3) / 1e9;
}

/* Decode: mark the candidates whose splits the launch at (B, N, T) would
 * clamp to fewer (each split keeps at least 2 of a block's tiles), so a
 * launch is timed once.  Returns how many are skipped. */
static int skip_clamped(const tuner *t, sp_kernel_kind kind, candidate *c, int n, int64_t B, int64_t N, int T)
{
    int skipped = 0;
    sp_band_list *bands = kind == SP_KIND_DEC ? bands_at(t->o, N) : NULL;
    for (int i = 0; i < n; i++) {
        c[i].skip = bands &&
                    decode_launch_splits(&c[i].cfg, t->o->pattern, bands, t->g->sm_count, (int)B, T, N) != c[i].cfg.splits;
        skipped += c[i].skip && !c[i].pruned;
    }
    free(bands);
    return skipped;
}

/* "fwd batch 4 N 4096", "dec batch 64 N 32768 T 1": a key in news. */
static void key_label(const db_key *k, int64_t B, int64_t N, char *buf, size_t n)
{
    int len = snprintf(buf, n, "%s batch %lld N %lld", k->kind, (long long)B, (long long)N);
    if (k->new_tokens > 0 && len > 0 && (size_t)len < n) snprintf(buf + len, n - (size_t)len, " T %d", k->new_tokens);
}

/* Evaluate c[0, n) at the key on the GPU (every kind its own trusted result). */
static int evaluate_gpu(tuner *t, tune_kind tk, int64_t B, int64_t N, int T, candidate *c, int n, sp_err *e)
{
    const tune_opts *o = t->o;
    int rc;
    if (tk.kind == SP_KIND_DEC) {
        gpu_decode gd;
        rc = gd_create(&gd, t->g, o->spec, o->pattern, (int)B, (int)N, T, 0, 1, o->threads, e) ||
             evaluate_dec(t, &gd, o->spec, o->pattern, c, n, e);
        gd_destroy(&gd);
        return rc ? -1 : 0;
    }
    gpu_attn a;
    memset(&a, 0, sizeof a);
    rc = ga_create(&a, t->g, o->spec, o->pattern, (int)B, (int)N, GA_BNHD, 0, e) ||
         (tk.kind == SP_KIND_BWD ? evaluate_bwd(t, &a, o->spec, o->pattern, c, n, tk.deterministic, e)
                                 : evaluate_fwd(t, &a, o->spec, o->pattern, c, n, e));
    ga_destroy(&a);
    return rc ? -1 : 0;
}

/* Search key (kind and mode tk, B, N, T) among the compiled candidates
 * c[0, n); fill r.  The winner's row is left in r->row with r->outcome
 * TUNE_SAVED; the caller saves.  *reached: r has an outcome (not so after a
 * stop, the budget or an error part-way).  T: decode's new tokens; 0 for
 * fwd, bwd. */
static int tune_key(tuner *t, db *d, tune_kind tk, int64_t B, int64_t N, int T, candidate *c, int n,
                    tune_result *r, int *reached, sp_err *e)
{
    *reached = 0;
    const tune_opts *o = t->o;
    const sp_kernel_kind kind = tk.kind;
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->deterministic = tk.deterministic;
    r->batch = B;
    r->seq_len = N;
    r->new_tokens = T;
    db_key key;
    config_db_key(t->g, o->spec, o->pattern, kind, tk.deterministic, (int)B, N, T, &key);
    char label[96];
    key_label(&key, B, N, label, sizeof label);
    int have = 0;
    if (db_has_current(d, &key, &have, e)) return e->code ? e->code : SP_EXIT_FAIL;
    if (have && !o->force) {
        news(t, "%s: up to date, skipped (--force re-tunes)", label);
        r->outcome = TUNE_UP_TO_DATE;
        *reached = 1;
        return SP_EXIT_OK;
    }
    double flops;
    if (flops_of(o->spec, o->pattern, B, N, T, &flops, e)) return e->code ? e->code : SP_EXIT_FAIL;
    if (kind == SP_KIND_BWD) flops *= 2.5;
    int skipped = skip_clamped(t, kind, c, n, B, N, T);
    for (int i = 0; i < n; i++) { c[i].ms = -1; c[i].wrong = 0; r->pruned += c[i].pruned; }
    t->done = 0;
    t->total = n - r->pruned - skipped;
    int status = SP_EXIT_OK;
    if (o->fake) evaluate_fake(t, c, n, tk.deterministic, B, N, T);
    else if (evaluate_gpu(t, tk, B, N, T, c, n, e))
        status = e->code ? e->code : SP_EXIT_FAIL;
    int best = -1;
    for (int i = 0; i < n; i++) {
        r->checked += c[i].ms >= 0 || c[i].wrong;
        r->rejected += c[i].wrong;
        if (c[i].ms >= 0 && (best < 0 || c[i].ms < c[best].ms)) best = i;
    }
    if (status || stopped(t)) return status;
    if (best >= 0) {
        db_row *row = &r->row;
        row->key = key;
        kcfg_tile_string(&c[best].cfg, row->tile, sizeof row->tile);
        row->bm = c[best].cfg.bm; row->bn = c[best].cfg.bn;
        row->warps = c[best].cfg.warps; row->stages = c[best].cfg.stages;
        row->median_ms = c[best].ms;
        row->eff_tflops = flops / (c[best].ms * 1e-3) / 1e12;
        row->candidates = r->checked;
        time_t now = time(NULL);
        struct tm tmv;
        strftime(row->created_at, sizeof row->created_at, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
        if (kind == SP_KIND_DEC)
            news(t, "%s: best %s %.4f ms (%.0f GB/s of K and V) of %d candidates, %d rejected", label, row->tile,
                 row->median_ms, decode_gbps(o, &c[best].cfg, B, N, T, row->median_ms), r->checked, r->rejected);
        else
            news(t, "%s: best %s %.4f ms (%.1f TF/s) of %d candidates, %d rejected", label, row->tile,
                 row->median_ms, row->eff_tflops, r->checked, r->rejected);
        r->outcome = TUNE_SAVED;
        *reached = 1;
    } else if (sp_now() <= t->deadline) {
        news(t, "%s: no candidate passed", label);
        r->outcome = TUNE_NO_WINNER;
        *reached = 1;
        sp_fail(e, SP_EXIT_FAIL, "%s: no candidate passed", label);
        return SP_EXIT_FAIL;
    }
    return SP_EXIT_OK;
}

/* ---- the run ------------------------------------------------------------------- */

/* The splits the decode tuner tries with every tile (decode_splits's
 * heuristic picks among the same few at B x KVH x row blocks CTAs near a
 * wave; more than 8 only pays for a batch of one or two, where a split is
 * short anyway). */
static const int dec_splits[] = { 1, 2, 3, 4, 6, 8 };
#define N_DEC_SPLITS (int)(sizeof dec_splits / sizeof dec_splits[0])

/* The candidates of kind, compiled and pruned (on a real GPU); 0 if none.
 * Decode: every tile with every one of dec_splits (a launch parameter:
 * each tile is compiled once). */
static int candidates_of(tuner *t, sp_kernel_kind kind, candidate *c)
{
    const tune_opts *o = t->o;
    sp_kcfg base, list[TUNE_MAX_CANDIDATES];
    int per_tile = kind == SP_KIND_DEC ? N_DEC_SPLITS : 1;
    kcfg_for_spec(&base, o->spec, o->pattern, kind, t->g->sm);
    int nc = kcfg_candidates(&base, list, TUNE_MAX_CANDIDATES / per_tile);
    if (nc <= 0) return 0;
    if (nc > TUNE_MAX_CANDIDATES / per_tile) nc = TUNE_MAX_CANDIDATES / per_tile;
    memset(c, 0, TUNE_MAX_CANDIDATES * sizeof *c);
    for (int i = 0; i < nc; i++) { c[i].cfg = list[i]; c[i].ms = -1; }
    if (!o->fake) {
        char arch[32];
        compile_pool cp = { c, nc, 0, PTHREAD_MUTEX_INITIALIZER, nvrtc_arch_for_sm(t->g->sm, arch, sizeof arch),
                            o->spec, o->pattern, 65536, t->g->smem_optin };
        news(t, "compiling %d %s candidates on %d threads", nc, kcfg_kind_name(kind), o->threads);
        compile_all(&cp, o->threads);
        for (int i = 0; i < nc; i++)
            if (c[i].pruned) news(t, "pruned %s: %s", c[i].k.name[0] ? c[i].k.name : "candidate", c[i].why);
    }
    if (per_tile == 1) return nc;
    for (int i = nc - 1; i >= 0; i--)   /* from the back: slot i * per_tile + j >= i is free or i itself */
        for (int j = per_tile - 1; j >= 0; j--) {
            c[i * per_tile + j] = c[i];
            c[i * per_tile + j].cfg.splits = dec_splits[j];
        }
    return nc * per_tile;
}

int tune_key_count(const tune_opts *o)
{
    int n = 0;
    for (int k = 0; k < o->nkinds; k++)
        n += o->nbatches * o->nseq_lens *
             (o->kinds[k].kind == SP_KIND_DEC ? (o->nnew_tokens > 0 ? o->nnew_tokens : 1) : 1);
    return n;
}

int tune_run(sp_gpu *g, db *d, const tune_opts *o, tune_result *res, int max, int *nres, tune_summary *sum,
             sp_err *e)
{
    tuner t = { o, g, db_file(d), sp_now() + o->budget_s, 0, 0 };
    memset(sum, 0, sizeof *sum);
    *nres = 0;
    int nkeys = tune_key_count(o);
    static const int64_t one = 1;
    const int64_t *Ts = o->nnew_tokens > 0 ? o->new_tokens : &one;
    db_row *rows = calloc(nkeys > 0 ? (size_t)nkeys : 1, sizeof *rows);
    candidate *cands = calloc(TUNE_MAX_CANDIDATES, sizeof *cands);
    int nrows = 0, nc = 0, status = SP_EXIT_OK;
    if (!rows || !cands) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory");
        status = SP_EXIT_FAIL;
        goto done;
    }
    for (int ki = 0; ki < o->nkinds && !stopped(&t) && !status; ki++) {
        const tune_kind tk = o->kinds[ki];
        const sp_kernel_kind kind = tk.kind;
        /* The backward's two modes search the same candidates: compiled once. */
        if (ki == 0 || o->kinds[ki - 1].kind != kind) nc = candidates_of(&t, kind, cands);
        if (nc <= 0) {
            news(&t, "no valid %s tile config for this spec; skipped",
                 kind == SP_KIND_BWD ? (tk.deterministic ? "deterministic backward" : "backward")
                 : kind == SP_KIND_DEC ? "decode" : "forward");
            continue;
        }
        int nT = kind == SP_KIND_DEC ? (o->nnew_tokens > 0 ? o->nnew_tokens : 1) : 1;
        for (int bi = 0; bi < o->nbatches && !stopped(&t) && !status; bi++)
            for (int ki2 = 0; ki2 < o->nseq_lens * nT && !stopped(&t) && !status; ki2++) {
                int si = ki2 / nT, T = kind == SP_KIND_DEC ? (int)Ts[ki2 % nT] : 0;
                if (sp_now() > t.deadline) {
                    if (!sum->budget_spent)
                        news(&t, "the --budget of %.0f s is spent; the remaining keys are not tuned", o->budget_s);
                    sum->budget_spent = 1;
                    break;
                }
                tune_result r;
                int reached;
                status = tune_key(&t, d, tk, o->batches[bi], o->seq_lens[si], T, cands, nc, &r, &reached, e);
                sum->checked += r.checked;
                sum->rejected += r.rejected;
                if (!reached) continue;
                if (r.outcome == TUNE_SAVED) rows[nrows++] = r.row;
                if (r.outcome == TUNE_UP_TO_DATE) sum->up_to_date++;
                if (*nres < max) res[(*nres)++] = r;
            }
    }
    sum->stopped = stopped(&t);
    /* One transaction for everything finished, also after a stop or error. */
    if (nrows > 0) {
        sp_err we = { 0 };
        if (db_put_rows(d, rows, nrows, &we)) {
            *e = we;
            status = we.code ? we.code : SP_EXIT_FAIL;
            for (int i = 0; i < *nres; i++)
                if (res[i].outcome == TUNE_SAVED) res[i].outcome = TUNE_NOT_SAVED;
            nrows = 0;
        }
    }
    sum->saved = nrows;
done:
    free(rows);
    free(cands);
    return status;
}
