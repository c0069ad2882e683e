/* spattn tune: find this GPU's best tile config per (kind, batch, N bucket)
 * and keep it in the tuning database (the backward: per mode, --kind bwd
 * tunes both, the deterministic one as kind bwd-det); with --decode, the
 * decode kernels' tile and splits per (batch, cache length bucket, new
 * tokens).  The search itself (candidates,
 * pruning, the trusted reference, checking, timing, the one transaction,
 * skip and --force, the fake GPU) is the library's: runtime/tune.h.  This
 * file holds the flags, the printing, the exit codes and Ctrl-C: the
 * handler sets the flag the tuner watches, which stops after the current
 * candidate and saves the keys already finished.
 *
 * SPATTN_TUNE_FAKE=1 swaps the GPU for the library's deterministic fake (a
 * fixed GPU identity, times computed from the config, one candidate
 * deliberately wrong), so the database side is tested on machines without
 * a GPU.  It is documented in spattn-tune(1) and never used unless set. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/arch.h"
#include "cmd/cmd.h"
#include "cmd/gpu_common.h"
#include "common/fileio.h"
#include "common/json.h"
#include "runtime/tune.h"

static const opt_cmd tune_cmd = {
    "tune",
    "spattn tune SPEC [--batch LIST] [--seq-len LIST] [--kind fwd|bwd|bwd-det|all] [--budget SECONDS] [--force] "
    "[options]\n"
    "       spattn tune SPEC --decode [--kv-len LIST] [--batch LIST] [--new-tokens LIST] [options]",
    "Autotune the kernels of SPEC for this GPU: search tile configs, reject any whose output is wrong,\n"
    "time the rest, and store the winners in the tuning database.  --decode tunes the decode kernels\n"
    "(tile and splits) for decoding steps from a KV cache.",
    1, 1,
};

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

typedef struct {
    gpu_opts g;
    opt_i64_list batches, seq_lens;
    int decode;               /* --decode: kind dec, keys batch x --kv-len x --new-tokens */
    opt_i64_list kv_lens, new_tokens;
    const char *kind;
    double budget;
    int force, json, threads, iters;
    const char *list_arch;    /* --list-candidates ARCH: print the search space, tune nothing */
} tune_opts_cli;

/* The tuner's news on stderr: "tune: ..." lines and the progress bar. */
static void on_progress(void *user, const tune_event *ev)
{
    if (ev->type == TUNE_EV_STEP) progress_step(user, ev->done, ev->total, ev->message);
    else fprintf(stderr, "tune: %s\n", ev->message);
}

/* ---- the command ------------------------------------------------------------- */

/* --kind: fwd, bwd (the backward in both modes: the default one, then the
 * deterministic one, whose winners are rows of kind bwd-det), bwd-det
 * alone, or all (fwd and bwd). */
static int parse_kinds(const char *s, tune_kind *kinds, int *n, sp_err *e)
{
    static const tune_kind fwd = { SP_KIND_FWD, 0 }, bwd = { SP_KIND_BWD, 0 }, det = { SP_KIND_BWD, 1 };
    *n = 0;
    if (strcmp(s, "fwd") == 0 || strcmp(s, "all") == 0) kinds[(*n)++] = fwd;
    if (strcmp(s, "bwd") == 0 || strcmp(s, "all") == 0) kinds[(*n)++] = bwd;
    if (strcmp(s, "bwd") == 0 || strcmp(s, "bwd-det") == 0 || strcmp(s, "all") == 0) kinds[(*n)++] = det;
    if (*n == 0) return sp_fail(e, SP_EXIT_USAGE, "--kind: '%s' is not fwd, bwd, bwd-det or all", s);
    return 0;
}

/* --list-candidates: every tile config the tuner would try for the spec on
 * arch, one per line ("fwd 128x128:w8:s3:wgmma"), or as JSON lines; no GPU.
 * The GPU check matrix (bench/check_matrix.py) runs each of them, so a tile
 * the tuner may pick is a tile that was checked.  The compiler's pruning
 * (spills, serialized wgmma) comes later and only removes entries.  Each
 * kernel kind once: the backward's two modes search the same tiles. */
static int list_candidates(const tune_opts_cli *o, const gpu_problem *hostp, const tune_kind *kinds, int nkinds,
                           sp_err *e)
{
    int sm;
    char arch[16];
    if (arch_parse(o->list_arch, &sm, arch, sizeof arch, e)) return SP_EXIT_USAGE;
    for (int ki = 0; ki < nkinds; ki++) {
        if (ki > 0 && kinds[ki - 1].kind == kinds[ki].kind) continue;
        sp_kcfg base, list[TUNE_MAX_CANDIDATES];
        kcfg_for_spec(&base, &hostp->spec, &hostp->pattern, kinds[ki].kind, sm);
        int nc = kcfg_candidates(&base, list, TUNE_MAX_CANDIDATES);
        const char *kind = kcfg_kind_name(kinds[ki].kind);
        for (int i = 0; i < nc; i++) {
            char tile[64];
            kcfg_tile_string(&list[i], tile, sizeof tile);   /* decode: the tiles; each is tried with splits 1..8 */
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

/* --decode and the flags that go with it: kind dec, the cache lengths as
 * the lengths of the keys; 0 or SP_EXIT_USAGE. */
static int decode_flags(tune_opts_cli *o, tune_kind *kinds, int *nkinds, sp_err *e)
{
    if (!o->decode) {
        if (o->kv_lens.n || o->new_tokens.n)
            return sp_fail(e, SP_EXIT_USAGE, "--kv-len and --new-tokens go with --decode");
        return 0;
    }
    const char *bad = o->kind ? "--kind (--decode tunes the decode kernels)"
                      : o->seq_lens.n ? "--seq-len (the cache's length is --kv-len)" : NULL;
    if (bad) return sp_fail(e, SP_EXIT_USAGE, "--decode: %s does not apply", bad);
    kinds[0] = (tune_kind){ SP_KIND_DEC, 0 };
    *nkinds = 1;
    o->seq_lens = o->kv_lens;
    if (o->new_tokens.n == 0) o->new_tokens.v[o->new_tokens.n++] = 1;
    return 0;
}

int cmd_tune(int argc, char **argv, sp_err *e)
{
    tune_opts_cli o;
    memset(&o, 0, sizeof o);
    gpu_opts_init(&o.g);
    o.budget = 600;
    o.iters = 20;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = ncpu > 0 ? (int)ncpu : 1;
    opt_def defs[] = {
        OPT_LIST(0, "batch", &o.batches, "LIST", "batch sizes, e.g. 1,4 (default: the spec's)", 1, 1 << 20),
        OPT_LIST(0, "seq-len", &o.seq_lens, "LIST", "sequence lengths, e.g. 4096,16384 (default: the spec's)", 1, 1 << 24),
        OPT_STRING(0, "kind", &o.kind, "KIND", "fwd, bwd (both modes of the backward), bwd-det (the deterministic "
                   "one) or all (default fwd)"),
        OPT_BOOL(0, "decode", &o.decode, "tune the decode kernels (tile and splits) instead: keys batch x --kv-len "
                 "x --new-tokens"),
        OPT_LIST(0, "kv-len", &o.kv_lens, "LIST", "decode: the cache's lengths N, e.g. 32768 (default: the spec's "
                 "seq_len)", 1, 1 << 24),
        OPT_LIST(0, "new-tokens", &o.new_tokens, "LIST", "decode: new tokens T per sequence of a step (default 1)", 1,
                 DB_MAX_NEW_TOKENS),
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
    tune_kind kinds[3];
    int nkinds = 0;
    if (decode_flags(&o, kinds, &nkinds, e)) return SP_EXIT_USAGE;
    if (!o.decode && parse_kinds(o.kind ? o.kind : "fwd", kinds, &nkinds, e)) return SP_EXIT_USAGE;
    /* !(x > 0) also refuses NaN, which compares false with everything; inf
     * is a budget that never runs out, and allowed. */
    if (!(o.budget > 0)) { sp_fail(e, SP_EXIT_USAGE, "--budget must be a positive number of seconds"); return SP_EXIT_USAGE; }
    int fake = tune_fake_requested();

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
    for (int i = 0; o.decode && i < o.new_tokens.n; i++)
        for (int j = 0; j < o.seq_lens.n; j++)
            if (o.new_tokens.v[i] > o.seq_lens.v[j]) {
                sp_fail(e, SP_EXIT_USAGE, "--new-tokens %lld: more than the cache's length %lld (--kv-len)",
                        (long long)o.new_tokens.v[i], (long long)o.seq_lens.v[j]);
                gpu_problem_close(&hostp);
                return SP_EXIT_USAGE;
            }
    if (o.list_arch) {
        int rc = list_candidates(&o, &hostp, kinds, nkinds, e);
        gpu_problem_close(&hostp);
        return rc;
    }

    /* The spec is read once (hostp), also from standard input: every key
     * tunes that one spec. */
    sp_gpu gpu;
    memset(&gpu, 0, sizeof gpu);
    if (fake) tune_fake_gpu(&gpu);
    else if (cu_open(o.g.gpu, &gpu, e)) {
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
    double t0 = sp_now();
    progress pr;
    tune_opts to = { .spec = &hostp.spec, .pattern = &hostp.pattern, .kinds = kinds, .nkinds = nkinds,
                     .batches = o.batches.v, .seq_lens = o.seq_lens.v, .nbatches = o.batches.n,
                     .nseq_lens = o.seq_lens.n, .new_tokens = o.new_tokens.v, .nnew_tokens = o.new_tokens.n,
                     .budget_s = o.budget, .force = o.force, .threads = o.threads, .iters = o.iters, .fake = fake,
                     .stop = &interrupted, .progress = on_progress, .user = &pr };
    int nkeys = tune_key_count(&to), nres = 0, status;
    tune_result *res = calloc((size_t)nkeys, sizeof *res);
    tune_summary sum = { 0 };
    if (!res) { status = SP_EXIT_FAIL; sp_fail(e, status, "out of memory"); goto done; }
    progress_begin(&pr, "tune");
    status = tune_run(&gpu, d, &to, res, nkeys, &nres, &sum, e);
    progress_done(&pr);
    /* "no candidate passed" was printed as the tuner's news already. */
    if (nres > 0 && res[nres - 1].outcome == TUNE_NO_WINNER && strstr(e->msg, "no candidate passed"))
        memset(e, 0, sizeof *e);
    if (o.json) {
        for (int i = 0; i < nres; i++) {
            if (res[i].outcome != TUNE_SAVED) continue;
            strbuf sb = STRBUF_INIT;
            sb_init(&sb);
            sp_err je = { 0 };
            if (db_row_json(d, &res[i].row, 0, &sb, &je) == 0) fputs(sb.buf, stdout);
            sb_free(&sb);
        }
    }
    fprintf(stderr, "tune: %d result(s) saved to %s, %d up to date, %d candidates checked, %d rejected, %.1f s%s\n",
            sum.saved, db_file(d), sum.up_to_date, sum.checked, sum.rejected, sp_now() - t0,
            interrupted ? " (interrupted)" : "");
    if (interrupted && !status) status = SP_EXIT_FAIL;
done:
    free(res);
    db_close(d);
    if (!fake) cu_close(&gpu);
    gpu_problem_close(&hostp);
    signal(SIGINT, SIG_DFL);
    return status;
}
