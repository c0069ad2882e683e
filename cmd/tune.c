/* spattn tune: find this GPU's best tile config per (kind, batch, N bucket)
 * and keep it in the tuning database.
 *
 * For each key:
 *   1. candidates: kcfg_candidates (tiles, warps, stages), pruned by the
 *      compiler's resource report before any launch (spills, registers x
 *      threads over the register file, shared memory over the opt-in limit);
 *      compiled on several threads, through the kernel cache;
 *   2. a trusted result: the cuBLAS fp32 reference on the same inputs;
 *   3. every candidate runs on NaN-poisoned outputs and is compared with the
 *      trusted result first: one out of bounds is rejected (and logged), so a
 *      fast wrong config never wins; survivors are timed (CUDA events, median,
 *      input sets rotated so the L2 cache does not flatter);
 *   4. the winners of all keys go into the database in one transaction.
 * Keys already in the database for this GPU, driver, NVRTC and spattn are
 * skipped unless --force.  Ctrl-C stops after the current candidate and saves
 * the keys already finished (one transaction), so the database is never
 * half-written.
 *
 * SPATTN_TUNE_FAKE=1 swaps the GPU for a deterministic fake (a fixed GPU
 * identity, times computed from the config, one candidate deliberately
 * wrong): it exists so the database side (skip, --force, concurrency,
 * interruption) is tested on machines without a GPU.  It is documented in
 * spattn-tune(1) and never used unless set. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd/arch.h"
#include "cmd/cmd.h"
#include "cmd/gpu_common.h"
#include "codegen/bands.h"
#include "common/fileio.h"
#include "common/json.h"
#include "runtime/nvrtc.h"

static const opt_cmd tune_cmd = {
    "tune",
    "spattn tune SPEC [--batch LIST] [--seq-len LIST] [--kind fwd|bwd|all] [--budget SECONDS] [--force] [options]",
    "Autotune the kernels of SPEC for this GPU: search tile configs, reject any whose output is wrong,\n"
    "time the rest, and store the winners in the tuning database.",
    1, 1,
};

#define MAX_CANDIDATES 128   /* the largest search space today: 64 (d64 forward on sm_90) */

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

typedef struct {
    gpu_opts g;
    opt_i64_list batches, seq_lens;
    const char *kind;
    double budget;
    int force, json, threads, iters;
    const char *list_arch;    /* --list-candidates ARCH: print the search space, tune nothing */
} tune_opts;

typedef struct {
    sp_kcfg cfg;
    int pruned;               /* 1: dropped by the resource report or compile */
    char why[160];
    double ms;                /* median, or < 0 if not timed */
    int wrong;                /* failed the check against the trusted result */
    engine_kernel k;          /* compile result (resources) */
} candidate;

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

/* ---- evaluating candidates ---------------------------------------------------- */

/* The fake backend's "time": smaller for bigger tiles and deeper pipelines,
 * with a fixed ordering, so tests can predict the winner. */
static double fake_ms(const sp_kcfg *c, int64_t N)
{
    return 0.001 * (double)N / 1024.0 * (1.0 + 64.0 / c->bm + 32.0 / c->bn + 0.1 / c->stages);
}

/* The fake backend's wrong candidate: the one with the largest tiles and
 * stages, which would otherwise win: a fast wrong config must never win. */
static int fake_wrong(const sp_kcfg *c, const candidate *all, int n)
{
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!all[i].pruned && (best < 0 || fake_ms(&all[i].cfg, 1024) < fake_ms(&all[best].cfg, 1024))) best = i;
    return best >= 0 && memcmp(c, &all[best].cfg, sizeof *c) == 0;
}

/* Check then time every surviving forward candidate on the GPU. */
static int evaluate_fwd(gpu_problem *p, candidate *c, int n, int iters, double deadline, progress *pr,
                        long *done, long total, sp_err *e)
{
    gpu_attn *a = &p->ga;
    refgpu *ref = NULL;
    sp_dptr ro = 0;
    int rc = -1;
    if (ga_fill_random(a, 1, e) || refgpu_open(a->g, &ref, e) || cu_malloc(a->g, 4 * a->nq, &ro, e)) goto out;
    refgpu_problem rp;
    gpu_problem_refgpu(p, 0, &rp);
    if (refgpu_forward(ref, &rp, ro, 0, e)) goto out;
    double bound = cmp_bound(a->dtype == SP_BF16);
    int64_t shape[4] = { a->B, a->N, a->H, a->D };
    refgpu_view out16 = gpu_problem_view(p, a->o, a->H);
    refgpu_view ref32 = refgpu_view_bnhd(ro, REFGPU_FP32, a->N, a->H, a->D);
    for (int i = 0; i < n && !interrupted; i++) {
        candidate *cd = &c[i];
        if (cd->pruned) continue;
        if (sp_now() > deadline) break;
        progress_step(pr, ++*done, total, cd->k.name);
        engine_kernel k;
        if (engine_load(a->g, &p->spec, &p->pattern, &cd->cfg, &k, e)) goto out;
        cmp_result res;
        int ok = ga_poison(a, e) == 0 && ga_forward(a, &k, 0, e) == 0 && cu_sync(a->g, e) == 0 &&
                 refgpu_compare(ref, shape, &out16, &ref32, &res, e) == 0;
        if (!ok) { engine_unload(a->g, &k); goto out; }
        if (!cmp_pass(&res, bound)) {
            cd->wrong = 1;
            fprintf(stderr, "tune: rejected %s: rel_l2 %.3e, %zu NaN (bound %.0e)\n", k.name, res.rel_l2,
                    res.nan_count, bound);
        } else if (ga_time_forward(a, &k, 3, iters, &cd->ms, e)) {
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

/* The same for backward candidates: the forward runs with the problem's
 * own forward kernel, each candidate's dQ, dK, dV are checked against the
 * cuBLAS backward, then the backward alone is timed. */
static int evaluate_bwd(gpu_problem *p, candidate *c, int n, int iters, double deadline, progress *pr, long *done,
                        long total, sp_err *e)
{
    gpu_attn *a = &p->ga;
    refgpu *ref = NULL;
    sp_dptr rq = 0, rk = 0, rv = 0;
    engine_kernel fk = { 0 };
    int rc = -1, first = -1;
    for (int i = 0; i < n && first < 0; i++) if (!c[i].pruned) first = i;
    if (first < 0) return 0;
    if (ga_fill_random(a, 1, e) || ga_alloc_backward(a, &c[first].cfg, 8, NULL, e) ||
        gpu_problem_kernel(p, SP_KIND_FWD, &fk, e) || refgpu_open(a->g, &ref, e) ||
        cu_malloc(a->g, 4 * a->nq, &rq, e) || cu_malloc(a->g, 4 * a->nk, &rk, e) || cu_malloc(a->g, 4 * a->nk, &rv, e))
        goto out;
    refgpu_problem rp;
    gpu_problem_refgpu(p, 0, &rp);
    if (refgpu_backward(ref, &rp, rq, rk, rv, e)) goto out;
    double bound = cmp_bound(a->dtype == SP_BF16);
    sp_dptr mine[3] = { a->dq, a->dk, a->dv }, theirs[3] = { rq, rk, rv };
    int heads[3] = { a->H, a->KVH, a->KVH };
    for (int i = 0; i < n && !interrupted; i++) {
        candidate *cd = &c[i];
        if (cd->pruned) continue;
        if (sp_now() > deadline) break;
        progress_step(pr, ++*done, total, cd->k.name);
        engine_kernel k;
        if (engine_load(a->g, &p->spec, &p->pattern, &cd->cfg, &k, e)) goto out;
        int ok = ga_poison(a, e) == 0 && ga_forward(a, &fk, 0, e) == 0 && ga_backward(a, &k, 0, 0, e) == 0 &&
                 cu_sync(a->g, e) == 0;
        double worst = 0;
        size_t nans = 0;
        for (int t = 0; ok && t < 3; t++) {
            int64_t shape[4] = { a->B, a->N, heads[t], a->D };
            refgpu_view mv = gpu_problem_view(p, mine[t], heads[t]);
            refgpu_view r32 = refgpu_view_bnhd(theirs[t], REFGPU_FP32, a->N, heads[t], a->D);
            cmp_result res;
            ok = refgpu_compare(ref, shape, &mv, &r32, &res, e) == 0;
            if (ok && !cmp_pass(&res, bound)) cd->wrong = 1;
            if (res.rel_l2 > worst) worst = res.rel_l2;
            nans += res.nan_count;
        }
        if (!ok) { engine_unload(a->g, &k); goto out; }
        if (cd->wrong)
            fprintf(stderr, "tune: rejected %s: worst rel_l2 %.3e, %zu NaN (bound %.0e)\n", k.name, worst, nans, bound);
        else if (ga_time_backward(a, &k, 0, 3, iters, &cd->ms, e)) {
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

/* ---- the command ------------------------------------------------------------- */

static int parse_kinds(const char *s, sp_kernel_kind *kinds, int *n, sp_err *e)
{
    if (strcmp(s, "fwd") == 0) { kinds[0] = SP_KIND_FWD; *n = 1; }
    else if (strcmp(s, "bwd") == 0) { kinds[0] = SP_KIND_BWD; *n = 1; }
    else if (strcmp(s, "all") == 0) { kinds[0] = SP_KIND_FWD; kinds[1] = SP_KIND_BWD; *n = 2; }
    else return sp_fail(e, SP_EXIT_USAGE, "--kind: '%s' is not fwd, bwd or all", s);
    return 0;
}

/* --list-candidates: every tile config the tuner would try for the spec on
 * arch, one per line ("fwd 128x128:w8:s3:wgmma"), or as JSON lines; no GPU.
 * The GPU check matrix (bench/check_matrix.py) runs each of them, so a tile
 * the tuner may pick is a tile that was checked.  The compiler's pruning
 * (spills, serialized wgmma) comes later and only removes entries. */
static int list_candidates(const tune_opts *o, const gpu_problem *hostp, const sp_kernel_kind *kinds, int nkinds,
                           sp_err *e)
{
    int sm;
    char arch[16];
    if (arch_parse(o->list_arch, &sm, arch, sizeof arch, e)) return SP_EXIT_USAGE;
    for (int ki = 0; ki < nkinds; ki++) {
        sp_kcfg base, list[MAX_CANDIDATES];
        kcfg_for_spec(&base, &hostp->spec, &hostp->pattern, kinds[ki], sm);
        int nc = kcfg_candidates(&base, list, MAX_CANDIDATES);
        const char *kind = kinds[ki] == SP_KIND_BWD ? "bwd" : "fwd";
        for (int i = 0; i < nc; i++) {
            char tile[64];
            kcfg_tile_string(&list[i], tile, sizeof tile);
            if (o->json) {
                jw w;
                jw_init(&w, stdout);
                jw_obj(&w, NULL);
                jw_str(&w, "kind", kind);
                jw_str(&w, "arch", arch);
                jw_str(&w, "tile", tile);
                jw_finish(&w);
            } else printf("%s %s\n", kind, tile);
        }
    }
    return SP_EXIT_OK;
}

int cmd_tune(int argc, char **argv, sp_err *e)
{
    tune_opts o;
    memset(&o, 0, sizeof o);
    gpu_opts_init(&o.g);
    o.kind = "fwd";
    o.budget = 600;
    o.iters = 20;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = ncpu > 0 ? (int)ncpu : 1;
    opt_def defs[] = {
        OPT_LIST(0, "batch", &o.batches, "LIST", "batch sizes, e.g. 1,4 (default: the spec's)", 1, 1 << 20),
        OPT_LIST(0, "seq-len", &o.seq_lens, "LIST", "sequence lengths, e.g. 4096,16384 (default: the spec's)", 1, 1 << 24),
        OPT_STRING(0, "kind", &o.kind, "KIND", "fwd, bwd or all (default fwd)"),
        OPT_DOUBLE(0, "budget", &o.budget, "SECONDS", "stop timing candidates after this long (default 600)"),
        OPT_BOOL(0, "force", &o.force, "re-tune keys the database already has"),
        OPT_INT(0, "threads", &o.threads, "T", "compile threads (default: all CPUs)", 1, 256),
        OPT_INT(0, "iters", &o.iters, "N", "timed launches per candidate (default 20)", 1, 10000),
        OPT_INT(0, "layer-index", &o.g.layer_index, "K", "tune layer K's pattern (hybrid specs)", 0, 1 << 20),
        OPT_STRING(0, "db", &o.g.db_path, "FILE", "tuning database (default $SPATTN_DB or the cache dir)"),
        OPT_INT(0, "gpu", &o.g.gpu, "N", "GPU ordinal (after CUDA_VISIBLE_DEVICES)", 0, 1024),
        OPT_BOOL(0, "json", &o.json, "print the winners as JSON lines on stdout"),
        OPT_STRING(0, "list-candidates", &o.list_arch, "ARCH",
                   "print the tile configs tried on ARCH (e.g. sm_90a) and exit; no GPU needed"),
        OPT_END(),
    };
    opt_pos pos;
    int r = opts_parse(&tune_cmd, defs, argc, argv, &pos, e);
    if (r) return r > 0 ? SP_EXIT_OK : SP_EXIT_USAGE;
    o.g.spec_path = pos.v[0];
    sp_kernel_kind kinds[2];
    int nkinds = 0;
    if (parse_kinds(o.kind, kinds, &nkinds, e)) return SP_EXIT_USAGE;
    /* !(x > 0) also refuses NaN, which compares false with everything; inf
     * is a budget that never runs out, and allowed. */
    if (!(o.budget > 0)) { sp_fail(e, SP_EXIT_USAGE, "--budget must be a positive number of seconds"); return SP_EXIT_USAGE; }
    const char *fake_env = getenv("SPATTN_TUNE_FAKE");
    int fake = fake_env && *fake_env && strcmp(fake_env, "0") != 0;

    /* Spec and shapes first: a bad spec is exit 2 before any GPU is needed. */
    gpu_problem hostp;
    if (gpu_problem_spec(&o.g, &hostp, e)) return e->code;
    if (o.batches.n == 0) {
        for (int i = 0; i < hostp.spec.n_batch && i < OPT_LIST_MAX; i++) o.batches.v[o.batches.n++] = hostp.spec.batch[i];
        if (o.batches.n == 0) o.batches.v[o.batches.n++] = 1;
    }
    if (o.seq_lens.n == 0) {
        for (int i = 0; i < hostp.spec.n_seq_len && i < OPT_LIST_MAX; i++) o.seq_lens.v[o.seq_lens.n++] = hostp.spec.seq_len[i];
        if (o.seq_lens.n == 0) o.seq_lens.v[o.seq_lens.n++] = 4096;
    }
    if (o.list_arch) {
        int rc = list_candidates(&o, &hostp, kinds, nkinds, e);
        gpu_problem_close(&hostp);
        return rc;
    }

    sp_gpu gpu;
    memset(&gpu, 0, sizeof gpu);
    if (fake) {
        snprintf(gpu.name, sizeof gpu.name, "spattn fake GPU");
        gpu.sm = 90; gpu.sm_count = 132; gpu.driver_version = 13000;
        gpu.smem_optin = 227 * 1024;
    } else if (cu_open(o.g.gpu, &gpu, e)) {
        gpu_problem_close(&hostp);
        return e->code;
    }
    db *d = NULL;
    if (db_open(o.g.db_path, 0, &d, e)) {
        if (!fake) cu_close(&gpu);
        gpu_problem_close(&hostp);
        return e->code;
    }

    signal(SIGINT, on_sigint);
    double t0 = sp_now(), deadline = t0 + o.budget;
    int nkeys = nkinds * o.batches.n * o.seq_lens.n;
    db_row *rows = calloc((size_t)nkeys, sizeof *rows);
    candidate *cands = calloc(MAX_CANDIDATES, sizeof *cands);
    int nrows = 0, status = SP_EXIT_OK, skipped = 0, rejected_total = 0, tried_total = 0, budget_spent = 0;
    if (!rows || !cands) { status = SP_EXIT_FAIL; sp_fail(e, status, "out of memory"); goto done; }
    progress pr;
    progress_begin(&pr, "tune");

    for (int ki = 0; ki < nkinds && !interrupted && !status; ki++) {
        sp_kernel_kind kind = kinds[ki];
        /* Candidates and their compiles depend on the spec and kind only
         * (the band table is a launch argument), so compile once per kind. */
        sp_kcfg base;
        kcfg_for_spec(&base, &hostp.spec, &hostp.pattern, kind, gpu.sm);
        sp_kcfg list[MAX_CANDIDATES];
        int nc = kcfg_candidates(&base, list, MAX_CANDIDATES);
        if (nc <= 0) {
            fprintf(stderr, "tune: no valid %s tile config for this spec; skipped\n", kind == SP_KIND_BWD ? "backward" : "forward");
            continue;
        }
        memset(cands, 0, MAX_CANDIDATES * sizeof *cands);
        for (int i = 0; i < nc; i++) { cands[i].cfg = list[i]; cands[i].ms = -1; }
        if (!fake) {
            char arch[32];
            compile_pool cp = { cands, nc, 0, PTHREAD_MUTEX_INITIALIZER, nvrtc_arch_for_sm(gpu.sm, arch, sizeof arch),
                                &hostp.spec, &hostp.pattern, 65536, gpu.smem_optin };
            fprintf(stderr, "tune: compiling %d %s candidates on %d threads\n", nc, kind == SP_KIND_BWD ? "bwd" : "fwd", o.threads);
            compile_all(&cp, o.threads);
            for (int i = 0; i < nc; i++)
                if (cands[i].pruned) fprintf(stderr, "tune: pruned %s: %s\n", cands[i].k.name[0] ? cands[i].k.name : "candidate", cands[i].why);
        }
        for (int bi = 0; bi < o.batches.n && !interrupted && !status; bi++)
            for (int si = 0; si < o.seq_lens.n && !interrupted && !status; si++) {
                gpu_opts go = o.g;
                go.batch = o.batches.v[bi];
                go.seq_len = o.seq_lens.v[si];
                if (sp_now() > deadline) {
                    if (!budget_spent)
                        fprintf(stderr, "tune: the --budget of %.0f s is spent; the remaining keys are not tuned\n", o.budget);
                    budget_spent = 1;
                    break;
                }
                gpu_problem p;
                if (gpu_problem_spec(&go, &p, e)) { status = e->code; break; }
                p.gpu = &gpu;
                db_key key;
                gpu_problem_db_key(&p, kind, &key);
                int have = 0;
                if (db_has_current(d, &key, &have, e)) { status = e->code; gpu_problem_close(&p); break; }
                if (have && !o.force) {
                    fprintf(stderr, "tune: %s batch %lld N %lld: up to date, skipped (--force re-tunes)\n",
                            key.kind, (long long)go.batch, (long long)go.seq_len);
                    skipped++;
                    p.gpu = NULL;
                    gpu_problem_close(&p);
                    continue;
                }
                for (int i = 0; i < nc; i++) { cands[i].ms = -1; cands[i].wrong = 0; }
                long done = 0, total = 0;
                for (int i = 0; i < nc; i++) total += !cands[i].pruned;
                if (fake) {
                    for (int i = 0; i < nc && !interrupted; i++) {
                        if (cands[i].pruned) continue;
                        progress_step(&pr, ++done, total, "fake");
                        if (fake_wrong(&cands[i].cfg, cands, nc)) {
                            cands[i].wrong = 1;
                            char t[64];
                            kcfg_tile_string(&cands[i].cfg, t, sizeof t);
                            fprintf(stderr, "tune: rejected %s: wrong result (fake backend)\n", t);
                        } else cands[i].ms = fake_ms(&cands[i].cfg, go.seq_len);
                    }
                } else {
                    if (ga_create(&p.ga, &gpu, &p.spec, &p.pattern, (int)go.batch, (int)go.seq_len, GA_BNHD, 0, e) ||
                        (kind == SP_KIND_BWD ? evaluate_bwd : evaluate_fwd)(&p, cands, nc, o.iters, deadline, &pr,
                                                                           &done, total, e)) {
                        status = e->code ? e->code : SP_EXIT_FAIL;
                    }
                    ga_destroy(&p.ga);
                }
                int best = -1, tried = 0, rejected = 0;
                for (int i = 0; i < nc; i++) {
                    tried += cands[i].ms >= 0 || cands[i].wrong;
                    rejected += cands[i].wrong;
                    if (cands[i].ms >= 0 && (best < 0 || cands[i].ms < cands[best].ms)) best = i;
                }
                tried_total += tried;
                rejected_total += rejected;
                if (best >= 0 && !status && !interrupted) {
                    db_row *row = &rows[nrows++];
                    row->key = key;
                    kcfg_tile_string(&cands[best].cfg, row->tile, sizeof row->tile);
                    row->bm = cands[best].cfg.bm; row->bn = cands[best].cfg.bn;
                    row->warps = cands[best].cfg.warps; row->stages = cands[best].cfg.stages;
                    row->median_ms = cands[best].ms;
                    double flops = p.eff_flops_fwd * (kind == SP_KIND_BWD ? 2.5 : 1.0);
                    row->eff_tflops = flops / (cands[best].ms * 1e-3) / 1e12;
                    row->candidates = tried;
                    time_t now = time(NULL);
                    struct tm tmv;
                    strftime(row->created_at, sizeof row->created_at, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
                    fprintf(stderr, "tune: %s batch %lld N %lld: best %s %.4f ms (%.1f TF/s) of %d candidates, %d rejected\n",
                            key.kind, (long long)go.batch, (long long)go.seq_len, row->tile, row->median_ms, row->eff_tflops,
                            tried, rejected);
                } else if (!status && !interrupted && sp_now() <= deadline) {
                    fprintf(stderr, "tune: %s batch %lld N %lld: no candidate passed\n", key.kind, (long long)go.batch,
                            (long long)go.seq_len);
                    status = SP_EXIT_FAIL;
                }
                p.gpu = NULL;
                gpu_problem_close(&p);
            }
    }
    progress_done(&pr);
    /* One transaction for everything finished, also after Ctrl-C. */
    if (nrows > 0) {
        sp_err we = { 0 };
        if (db_put_rows(d, rows, nrows, &we)) { *e = we; status = we.code ? we.code : SP_EXIT_FAIL; }
    }
    if (o.json) {
        for (int i = 0; i < nrows; i++) {
            strbuf sb = STRBUF_INIT;
            sb_init(&sb);
            sp_err je = { 0 };
            if (db_row_json(d, &rows[i], 0, &sb, &je) == 0) fputs(sb.buf, stdout);
            sb_free(&sb);
        }
    }
    fprintf(stderr, "tune: %d result(s) saved to %s, %d up to date, %d candidates checked, %d rejected, %.1f s%s\n",
            nrows, db_file(d), skipped, tried_total, rejected_total, sp_now() - t0, interrupted ? " (interrupted)" : "");
    if (interrupted && !status) status = SP_EXIT_FAIL;
done:
    free(rows);
    free(cands);
    db_close(d);
    if (!fake) cu_close(&gpu);
    gpu_problem_close(&hostp);
    signal(SIGINT, SIG_DFL);
    return status;
}
