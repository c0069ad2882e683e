/* spattn bench: a sweep over sequence lengths.  Per point: the spattn
 * kernel's time, this engine's dense causal kernel on the same shape and
 * buffers, the speedup, effective TFLOP/s (allowed pairs only), the work
 * ratio, the ideal speedup (1 / ratio) and the share of it reached.  Tuned
 * configs are used where the database has them.  --svg draws time and
 * speedup against N. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/gpu_common.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/strbuf.h"

static const opt_cmd bench_cmd = {
    "bench",
    "spattn bench SPEC [--seq-len LIST] [--batch B] [--pass fwd|fwdbwd] [--json|--csv] [--svg FILE] [options]",
    "Sweep sequence lengths on the GPU: spattn against this engine's dense causal kernel, with speedup,\n"
    "effective TFLOP/s, work ratio and the ideal speedup 1/ratio.",
    1, 1,
};

typedef struct {
    int64_t N;
    double ratio, ms, dense_ms, tflops, dense_tflops;
    char kernel[260], config_source[160];
} bench_point;

/* One point: open the problem at N, time the spattn kernel and the dense one. */
static int bench_one(const gpu_opts *base, int64_t N, int iters, int bwd, bench_point *pt, sp_err *e)
{
    gpu_opts go = *base;
    go.seq_len = N;
    gpu_problem p;
    if (gpu_problem_open(&go, &p, e)) return -1;
    engine_kernel k = { 0 };
    int rc = -1;
    memset(pt, 0, sizeof *pt);
    pt->N = N;
    pt->ratio = p.ratio;
    if (ga_fill_random(&p.ga, (uint64_t)go.seed, e) || gpu_problem_kernel(&p, SP_KIND_FWD, &k, e)) goto out;
    snprintf(pt->config_source, sizeof pt->config_source, "%s", p.config_source);
    gpu_timing t;
    if (gpu_problem_time(&p, &k, bwd, 0, (uint64_t)go.seed + 7, iters, 1, &t, e)) goto out;
    pt->ms = t.ms;
    pt->dense_ms = t.dense_ms;
    snprintf(pt->kernel, sizeof pt->kernel, "%s", t.kernel);
    double mult = bwd ? 3.5 : 1.0;   /* forward+backward = 3.5 x forward FLOPs */
    double dense_flops = mult * 4.0 * p.spec.head_dim * (double)p.ga.B * p.spec.heads * ((double)N * (N + 1) / 2);
    pt->tflops = mult * p.eff_flops_fwd / (pt->ms * 1e-3) / 1e12;
    pt->dense_tflops = dense_flops / (pt->dense_ms * 1e-3) / 1e12;
    rc = 0;
out:
    engine_unload(p.gpu, &k);
    gpu_problem_close(&p);
    return rc;
}

/* A two-panel chart: time (log) vs N, and speedup vs N with the ideal. */
static void svg_chart(strbuf *s, const char *title, const bench_point *pts, int n)
{
    const int W = 960, H = 380, pw = 380, ph = 260, top = 70;
    const int left[2] = { 70, 520 };
    double tmin = 1e30, tmax = 0, smax = 1, nmin = 1e30, nmax = 0;
    for (int i = 0; i < n; i++) {
        tmin = fmin(tmin, fmin(pts[i].ms, pts[i].dense_ms));
        tmax = fmax(tmax, fmax(pts[i].ms, pts[i].dense_ms));
        smax = fmax(smax, fmax(pts[i].dense_ms / pts[i].ms, 1.0 / pts[i].ratio));
        nmin = fmin(nmin, (double)pts[i].N);
        nmax = fmax(nmax, (double)pts[i].N);
    }
    double lx0 = log2(nmin), lx1 = log2(nmax) + (nmax == nmin ? 1 : 0);
    double ly0 = log10(tmin) - 0.1, ly1 = log10(tmax) + 0.1;
    smax *= 1.1;
#define X(panel, N) (left[panel] + (log2((double)(N)) - lx0) / (lx1 - lx0) * pw)
#define YT(ms) (top + ph - (log10(ms) - ly0) / (ly1 - ly0) * ph)
#define YS(v) (top + ph - (v) / smax * ph)
    sb_printf(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    sb_printf(s, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    sb_printf(s, "<text x=\"%d\" y=\"24\" font-size=\"16\">", 20);
    for (const char *c = title; *c; c++) {
        if (*c == '<') sb_puts(s, "&lt;"); else if (*c == '&') sb_puts(s, "&amp;"); else sb_add(s, c, 1);
    }
    sb_puts(s, "</text>\n");
    const char *ptitle[2] = { "time per forward (ms, log scale)", "speedup over dense causal" };
    for (int p = 0; p < 2; p++) {
        sb_printf(s, "<text x=\"%d\" y=\"%d\">%s</text>\n", left[p], top - 10, ptitle[p]);
        sb_printf(s, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", left[p], top, pw, ph);
        for (int i = 0; i < n; i++)
            sb_printf(s, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%lld</text>\n", X(p, pts[i].N), top + ph + 16,
                      (long long)pts[i].N);
        sb_printf(s, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">sequence length N</text>\n", left[p] + pw / 2, top + ph + 34);
    }
    for (int d = (int)floor(ly0); d <= (int)ceil(ly1); d++) {
        double v = pow(10, d);
        if (log10(v) < ly0 || log10(v) > ly1) continue;
        sb_printf(s, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", left[0] - 4, YT(v) + 4, v);
    }
    for (int t = 0; t <= 4; t++)
        sb_printf(s, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1fx</text>\n", left[1] - 4, YS(smax * t / 4) + 4, smax * t / 4);
    const char *color[3] = { "#d62728", "#1f77b4", "#999" };
    const char *label[2][2] = { { "spattn", "dense causal (same engine)" }, { "measured speedup", "ideal (1 / work ratio)" } };
    for (int series = 0; series < 2; series++) {
        sb_printf(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color[series]);
        for (int i = 0; i < n; i++)
            sb_printf(s, "%.1f,%.1f ", X(0, pts[i].N), YT(series == 0 ? pts[i].ms : pts[i].dense_ms));
        sb_puts(s, "\"/>\n");
        sb_printf(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", series ? color[2] : color[0],
                  series ? " stroke-dasharray=\"5,4\"" : "");
        for (int i = 0; i < n; i++)
            sb_printf(s, "%.1f,%.1f ", X(1, pts[i].N), YS(series == 0 ? pts[i].dense_ms / pts[i].ms : 1.0 / pts[i].ratio));
        sb_puts(s, "\"/>\n");
        for (int i = 0; i < n; i++) {
            sb_printf(s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", X(0, pts[i].N),
                      YT(series == 0 ? pts[i].ms : pts[i].dense_ms), color[series]);
        }
        /* legends: top left of the time panel, bottom right of the speedup panel (clear of the ideal line) */
        for (int p = 0; p < 2; p++)
            sb_printf(s, "<text x=\"%d\" y=\"%d\" fill=\"%s\"%s>%s</text>\n", p == 0 ? left[p] + 10 : left[p] + pw - 10,
                      p == 0 ? top + 16 + 16 * series : top + ph - 28 + 16 * series,
                      p == 0 ? color[series] : (series ? color[2] : color[0]), p == 0 ? "" : " text-anchor=\"end\"",
                      label[p][series]);
    }
    sb_puts(s, "</svg>\n");
#undef X
#undef YT
#undef YS
}

int cmd_bench(int argc, char **argv, sp_err *e)
{
    gpu_opts g;
    gpu_opts_init(&g);
    opt_i64_list lens = { 0 };
    const char *pass = "fwd", *svg = NULL;
    int json = 0, csv = 0, iters = 30;
    opt_def defs[] = {
        OPT_LIST(0, "seq-len", &lens, "LIST", "sequence lengths (default 1024,2048,4096,8192,16384)", 1, 1 << 24),
        OPT_I64(0, "batch", &g.batch, "B", "batch size (default: the spec's first)", 1, 1 << 20),
        OPT_STRING(0, "pass", &pass, "PASS", "fwd (default) or fwdbwd"),
        OPT_INT(0, "iters", &iters, "N", "timed launches per point (default 30)", 1, 100000),
        OPT_BOOL(0, "json", &json, "one JSON object per point on stdout"),
        OPT_BOOL(0, "csv", &csv, "CSV on stdout"),
        OPT_STRING(0, "svg", &svg, "FILE", "draw time and speedup against N"),
        OPT_INT(0, "layer-index", &g.layer_index, "K", "use layer K's pattern (hybrid specs)", 0, 1 << 20),
        OPT_STRING(0, "tile", &g.tile, "BMxBN[:wW:sS]", "kernel tile config (default: tuned, else heuristic)"),
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
        strbuf s = STRBUF_INIT;
        sb_init(&s);
        svg_chart(&s, title, pts, lens.n);
        int rc = sp_write_file_atomic(svg, s.buf, s.len, e);
        sb_free(&s);
        if (rc) return SP_EXIT_FAIL;
    }
    return SP_EXIT_OK;
}
