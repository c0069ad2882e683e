/* spattn bench: a sweep over sequence lengths.  Per point: the spattn
 * kernel's time, this engine's dense causal kernel on the same shape and
 * buffers, the speedup, effective TFLOP/s (allowed pairs only), the work
 * ratio, the ideal speedup (1 / ratio) and the share of it reached.  Tuned
 * configs are used where the database has them.  --svg draws time and
 * speedup against N.  --seq-lens: one point, a packed batch of sequences
 * (N is the longest), against the dense kernel on the same packing. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/chart.h"
#include "cmd/cmd.h"
#include "cmd/gpu_common.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/strbuf.h"

static const opt_cmd bench_cmd = {
    "bench",
    "spattn bench SPEC [--seq-len LIST [--batch B] | --seq-lens LIST] [--pass fwd|fwdbwd] [--json|--csv] [--svg FILE] "
    "[options]",
    "Sweep sequence lengths on the GPU: spattn against this engine's dense causal kernel, with speedup,\n"
    "effective TFLOP/s, work ratio and the ideal speedup 1/ratio.",
    1, 1,
};

typedef struct {
    int64_t N;
    long long total;         /* packed: tokens of all sequences; 0 otherwise */
    double ratio, ms, dense_ms, tflops, dense_tflops;
    char kernel[260], config_source[160], gpu[256];
} bench_point;

/* One point: open the problem at N, time the spattn kernel and the dense one. */
static int bench_one(const gpu_opts *base, int64_t N, int iters, int bwd, bench_point *pt, sp_err *e)
{
    gpu_opts go = *base;
    go.seq_len = go.seq_lens ? 0 : N;   /* packed: the lengths are go.seq_lens */
    gpu_problem p;
    if (gpu_problem_open(&go, &p, e)) return -1;
    engine_kernel k = { 0 };
    int rc = -1;
    memset(pt, 0, sizeof *pt);
    pt->N = p.ga.N;
    pt->total = p.packed ? p.ga.pack.total : 0;
    pt->ratio = p.ratio;
    snprintf(pt->gpu, sizeof pt->gpu, "%s", p.gpu->name);
    if (ga_fill_random(&p.ga, (uint64_t)go.seed, e) || gpu_problem_kernel(&p, SP_KIND_FWD, &k, e)) goto out;
    snprintf(pt->config_source, sizeof pt->config_source, "%s", p.config_source);
    gpu_timing t;
    if (gpu_problem_time(&p, &k, bwd, go.deterministic, (uint64_t)go.seed + 7, iters, 1, &t, e)) goto out;
    pt->ms = t.ms;
    pt->dense_ms = t.dense_ms;
    snprintf(pt->kernel, sizeof pt->kernel, "%s", t.kernel);
    double mult = bwd ? 3.5 : 1.0;   /* forward+backward = 3.5 x forward FLOPs */
    double dense_flops = mult * 4.0 * p.spec.head_dim * p.dense_pairs;
    pt->tflops = mult * p.eff_flops_fwd / (pt->ms * 1e-3) / 1e12;
    pt->dense_tflops = dense_flops / (pt->dense_ms * 1e-3) / 1e12;
    rc = 0;
out:
    engine_unload(p.gpu, &k);
    gpu_problem_close(&p);
    return rc;
}

int cmd_bench(int argc, char **argv, sp_err *e)
{
    gpu_opts g;
    gpu_opts_init(&g);
    opt_i64_list lens = { 0 };
    const char *pass = "fwd", *svg = NULL;
    int json = 0, csv = 0, iters = 30;
    const char *seq_lens = NULL;
    int64_t packed_lens[CMD_MAX_SEQS];
    opt_def defs[] = {
        OPT_LIST(0, "seq-len", &lens, "LIST", "sequence lengths (default 1024,2048,4096,8192,16384)", 1, 1 << 24),
        OPT_I64(0, "batch", &g.batch, "B", "batch size (default: the spec's first)", 1, 1 << 20),
        OPT_STRING(0, "seq-lens", &seq_lens, "LIST", "one point: packed sequences of these lengths (4096,100,2000)"),
        OPT_STRING(0, "pass", &pass, "PASS", "fwd (default) or fwdbwd"),
        OPT_INT(0, "iters", &iters, "N", "timed launches per point (default 30)", 1, 100000),
        OPT_BOOL(0, "json", &json, "one JSON object per point on stdout"),
        OPT_BOOL(0, "csv", &csv, "CSV on stdout"),
        OPT_STRING(0, "svg", &svg, "FILE", "draw time and speedup against N ('-': stdout, after the rows)"),
        OPT_INT(0, "layer-index", &g.layer_index, "K", "use layer K's pattern (hybrid specs)", 0, 1 << 20),
        OPT_STRING(0, "tile", &g.tile, "BMxBN[:wW:sS]", "kernel tile config (default: tuned, else heuristic)"),
        OPT_STRING(0, "bwd-tile", &g.bwd_tile, "BMxBN[:wW:sS]", "with --pass fwdbwd: the backward's tile (default: --tile's, else tuned, else heuristic)"),
        OPT_BOOL(0, "deterministic", &g.deterministic, "with --pass fwdbwd: the bitwise-reproducible backward"),
        OPT_STRING(0, "db", &g.db_path, "FILE", "tuning database (default $SPATTN_DB or the cache dir)"),
        OPT_INT(0, "gpu", &g.gpu, "N", "GPU ordinal (after CUDA_VISIBLE_DEVICES)", 0, 1024),
        OPT_END(),
    };
    opt_pos pos;
    int r = opts_parse(&bench_cmd, defs, argc, argv, &pos, e);
    if (r) return r > 0 ? SP_EXIT_OK : SP_EXIT_USAGE;
    g.spec_path = pos.v[0];
    if (strcmp(pass, "fwd") && strcmp(pass, "fwdbwd"))
        { sp_fail(e, SP_EXIT_USAGE, "--pass: '%s' is not fwd or fwdbwd", pass); return SP_EXIT_USAGE; }
    if (json && csv) { sp_fail(e, SP_EXIT_USAGE, "--json and --csv exclude each other"); return SP_EXIT_USAGE; }
    if (seq_lens && lens.n) { sp_fail(e, SP_EXIT_USAGE, "--seq-lens is one packed point: no --seq-len with it"); return SP_EXIT_USAGE; }
    if (gpu_opts_seq_lens(&g, seq_lens, packed_lens, e)) return SP_EXIT_USAGE;
    if (seq_lens) lens.v[lens.n++] = 0;   /* the one point */
    if (lens.n == 0) {
        int64_t d[] = { 1024, 2048, 4096, 8192, 16384 };
        for (int i = 0; i < 5; i++) lens.v[lens.n++] = d[i];
    }
    sp_out svg_out;
    const char *svg_what = "--svg";
    if (cmd_check_outputs(&svg_out, &svg, &svg_what, 1, e)) return SP_EXIT_USAGE;
    /* The spec is checked before any GPU work (exit 2 beats exit 3). */
    gpu_problem hp;
    if (gpu_problem_spec(&g, &hp, e)) return e->code;
    char title[256];
    snprintf(title, sizeof title, "spattn bench: %s (%s, H=%d, KVH=%d, D=%d, %s, B=%d)", hp.spec.name,
             sp_pattern_name(hp.pattern.kind), hp.spec.heads, hp.spec.kv_heads, hp.spec.head_dim,
             sp_dtype_name(hp.spec.dtype), hp.ga.B);
    gpu_problem_close(&hp);

    bench_point pts[OPT_LIST_MAX];
    progress pr;
    progress_begin(&pr, "bench");
    int bwd = strcmp(pass, "fwdbwd") == 0;
    for (int i = 0; i < lens.n; i++) {
        char label[32];
        snprintf(label, sizeof label, "N=%lld", (long long)lens.v[i]);
        progress_step(&pr, i, lens.n, label);
        if (bench_one(&g, lens.v[i], iters, bwd, &pts[i], e)) { progress_done(&pr); return e->code ? e->code : SP_EXIT_FAIL; }
        if (i == 0) {   /* the header once the GPU has answered */
        if (csv) printf("seq_len,work_ratio,spattn_ms,dense_ms,speedup,ideal_speedup,share_of_ideal,spattn_tflops,dense_tflops,kernel,config\n");
        else if (!json) printf("%-8s %-7s %-11s %-11s %-8s %-7s %-9s %-10s %s\n", "N", "ratio", "spattn ms", "dense ms",
                               "speedup", "ideal", "of ideal", "eff TF/s", "config");
        }
        const bench_point *p = &pts[i];
        double sp = p->dense_ms / p->ms, ideal = 1.0 / p->ratio;
        if (json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj(&w, NULL);
            jw_int(&w, "seq_len", p->N);
            if (p->total) {   /* packed: seq_len is the longest */
                jw_arr(&w, "seq_lens");
                for (int s = 0; s < g.n_seq_lens; s++) jw_int(&w, NULL, g.seq_lens[s]);
                jw_end(&w);
                jw_int(&w, "total_tokens", p->total);
            }
            jw_num(&w, "work_ratio", p->ratio);
            jw_num(&w, "spattn_ms", p->ms);
            jw_num(&w, "dense_ms", p->dense_ms);
            jw_num(&w, "speedup", sp);
            jw_num(&w, "ideal_speedup", ideal);
            jw_num(&w, "share_of_ideal", sp / ideal);
            jw_num(&w, "spattn_eff_tflops", p->tflops);
            jw_num(&w, "dense_tflops", p->dense_tflops);
            jw_str(&w, "kernel", p->kernel);
            jw_str(&w, "config_source", p->config_source);
            jw_end(&w);
            jw_finish(&w);
        } else if (csv)
            printf("%lld,%.6f,%.5f,%.5f,%.4f,%.4f,%.4f,%.2f,%.2f,%s,\"%s\"\n", (long long)p->N, p->ratio, p->ms, p->dense_ms, sp,
                   ideal, sp / ideal, p->tflops, p->dense_tflops, p->kernel, p->config_source);
        else
            printf("%-8lld %-7.4f %-11.4f %-11.4f %-8.2f %-7.2f %-9.0f%% %-10.1f %s\n", (long long)p->N, p->ratio, p->ms,
                   p->dense_ms, sp, ideal, 100 * sp / ideal, p->tflops, p->config_source);
        fflush(stdout);
    }
    progress_step(&pr, lens.n, lens.n, "done");
    progress_done(&pr);
    if (svg) {
        /* The title names the pass and the GPU: a chart is often seen
         * without the command that drew it. */
        char full[600];
        snprintf(full, sizeof full, "%s, %s on %s", title, bwd ? "forward+backward" : "forward", pts[0].gpu);
        chart_point cp[OPT_LIST_MAX];
        for (int i = 0; i < lens.n; i++)
            cp[i] = (chart_point){ pts[i].N, pts[i].ms, pts[i].dense_ms, pts[i].ratio };
        strbuf s = STRBUF_INIT;
        sb_init(&s);
        chart_bench_svg(&s, full, bwd ? "time per forward+backward (ms, log scale)" : "time per forward (ms, log scale)",
                        cp, lens.n);
        int rc = 0;
        if (strcmp(svg, "-") == 0) fwrite(s.buf, 1, s.len, stdout);   /* after the table: use with --json or alone */
        else rc = sp_write_file_atomic(svg, s.buf, s.len, e);
        sb_free(&s);
        if (rc) return SP_EXIT_FAIL;
    }
    return SP_EXIT_OK;
}
