/* spattn plan: show the band plan of a spec at one sequence length.
 *
 * Per head: the allowed distance intervals, the allowed (i, j) pairs and
 * their share of dense causal work, and the KV tiles a kernel with tile
 * BMxBN visits (summed over query tiles), FULL ones (no mask) and PARTIAL
 * ones (masked at band edges).  Then the totals: the work ratio and the
 * ideal speedup over dense causal, and the tile counts against dense
 * causal's.  --json prints the same as one object; --svg draws each head's
 * mask so a person can see the pattern.  See spattn-plan(1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/arch.h"
#include "cmd/chart.h"
#include "cmd/cmd.h"
#include "codegen/bands.h"
#include "codegen/kcfg.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/strbuf.h"

static const opt_cmd plan_cmd = {
    "plan",
    "spattn plan SPEC --seq-len N [--arch ARCH] [--tile BMxBN] [--layer-index K] [--json] [--svg FILE]",
    "Show the band plan of SPEC at sequence length N: each head's allowed distance\n"
    "intervals, its share of dense causal work, and the tiles that the forward kernel\n"
    "for ARCH (default sm_90a) visits.",
    1, 1,
};

/* The largest seq_len a spec may list (spattn-spec(5)).  The band math goes
 * further, but summing tiles over 2^31 / 16 query tiles takes half a minute. */
#define PLAN_MAX_N (1LL << 24)

/* One head's plan. */
typedef struct {
    sp_band_list bands;
    int64_t pairs;
    bands_tile_stats tiles;
} head_plan;

/* The whole plan, as printed. */
typedef struct {
    const sp_spec *spec;
    const sp_pattern *pattern;
    int layer_index;             /* -1: the spec's default pattern */
    int64_t N;
    int bm, bn;
    char arch[16];               /* "sm_90a" */
    char config[64];             /* the default kernel's tile string, "" with --tile */
    head_plan *head;             /* spec->heads entries */
    int64_t pairs, dense_pairs;  /* summed over heads */
    bands_tile_stats tiles;      /* summed over heads (max_per_q: the max) */
    bands_tile_stats dense;      /* dense causal, summed over heads */
    double ratio;
} plan;

/* "BMxBN", each a multiple of 16 in [16, 256]. */
static int parse_tile(const char *arg, int *bm, int *bn, sp_err *e)
{
    const char *x = strchr(arg, 'x');
    if (!x) x = strchr(arg, 'X');
    if (x && x != arg && x[1]) {
        char left[32];
        size_t len = (size_t)(x - arg);
        if (len < sizeof left) {
            memcpy(left, arg, len);
            left[len] = 0;
            int64_t a, b;
            sp_err tmp = { 0 };
            if (sp_parse_i64(left, 16, 256, "BM", &a, &tmp) == 0 && sp_parse_i64(x + 1, 16, 256, "BN", &b, &tmp) == 0 &&
                a % 16 == 0 && b % 16 == 0) {
                *bm = (int)a;
                *bn = (int)b;
                return 0;
            }
        }
    }
    sp_fail(e, SP_EXIT_USAGE, "--tile '%s': expected BMxBN with BM and BN multiples of 16 in [16, 256]", arg);
    sp_hint(e, "for example --tile 128x64");
    return -1;
}

static void build_plan(plan *p)
{
    const int H = p->spec->heads;
    sp_band_list dense = { 1, { { 0, p->N } } };
    bands_tile_stats dense1;
    bands_tile_sum(&dense, p->N, p->bm, p->bn, &dense1);
    int64_t dense_pairs1 = bands_dense_pairs(p->N);

    for (int h = 0; h < H; h++) {
        head_plan *hp = &p->head[h];
        bands_head(p->pattern, H, h, p->N, &hp->bands);   /* a loaded spec is valid: cannot fail */
        hp->pairs = bands_pairs(&hp->bands, p->N);
        bands_tile_sum(&hp->bands, p->N, p->bm, p->bn, &hp->tiles);
        p->pairs += hp->pairs;
        p->dense_pairs += dense_pairs1;
        p->tiles.q_tiles += hp->tiles.q_tiles;
        p->tiles.visited += hp->tiles.visited;
        p->tiles.full += hp->tiles.full;
        p->tiles.partial += hp->tiles.partial;
        if (hp->tiles.max_per_q > p->tiles.max_per_q) p->tiles.max_per_q = hp->tiles.max_per_q;
        p->dense.q_tiles += dense1.q_tiles;
        p->dense.visited += dense1.visited;
        p->dense.full += dense1.full;
        p->dense.partial += dense1.partial;
        p->dense.max_per_q = dense1.max_per_q;
    }
    /* In double: heads x dense pairs can exceed int64 at the largest N. */
    p->ratio = (double)p->pairs / ((double)H * (double)dense_pairs1);
}

static double share(int64_t pairs, int64_t N) { return (double)pairs / (double)bands_dense_pairs(N); }

static void intervals_string(const sp_band_list *b, strbuf *sb)
{
    sb_reset(sb);
    if (b->n == 0) { sb_puts(sb, "none"); return; }
    for (int k = 0; k < b->n; k++)
        sb_printf(sb, "%s[%lld,%lld)", k ? " " : "", (long long)b->iv[k].lo, (long long)b->iv[k].hi);
}

static void basis_string(const sp_pattern *pat, char *buf, size_t n)
{
    if (pat->kind == SP_CUSTOM || pat->kind == SP_DENSE || pat->kind == SP_WINDOW) snprintf(buf, n, "none");
    else if (pat->band_basis > 0) snprintf(buf, n, "%lld", (long long)pat->band_basis);
    else snprintf(buf, n, "seq_len");
}

/* ---- human output ----------------------------------------------------------- */

static void print_human(const plan *p)
{
    const sp_spec *s = p->spec;
    char basis[32], layer[32] = "";
    basis_string(p->pattern, basis, sizeof basis);
    if (p->layer_index >= 0) snprintf(layer, sizeof layer, ", layer %d", p->layer_index);
    char tile[128];
    if (p->config[0]) snprintf(tile, sizeof tile, "tile %dx%d (%s forward kernel %s)", p->bm, p->bn, p->arch, p->config);
    else snprintf(tile, sizeof tile, "tile %dx%d (--tile)", p->bm, p->bn);
    printf("%s: %s%s, %d heads, seq_len %lld, band basis %s, %s\n", s->name, sp_pattern_name(p->pattern->kind), layer,
           s->heads, (long long)p->N, basis, tile);
    printf("%4s  %13s  %8s  %9s  %9s  %9s  %s\n", "head", "pairs", "share", "tiles", "full", "partial", "intervals");
    strbuf sb = STRBUF_INIT;
    for (int h = 0; h < s->heads; h++) {
        const head_plan *hp = &p->head[h];
        intervals_string(&hp->bands, &sb);
        printf("%4d  %13lld  %8.6f  %9lld  %9lld  %9lld  %s\n", h, (long long)hp->pairs, share(hp->pairs, p->N),
               (long long)hp->tiles.visited, (long long)hp->tiles.full, (long long)hp->tiles.partial, sb.buf);
    }
    sb_free(&sb);
    printf("work ratio %.6f (%lld of %lld dense causal pairs)\n", p->ratio, (long long)p->pairs,
           (long long)p->dense_pairs);
    if (p->ratio > 0) printf("ideal speedup %.2fx over dense causal\n", 1.0 / p->ratio);
    else printf("ideal speedup inf (no pair is allowed)\n");
    printf("tiles visited %lld (full %lld, partial %lld) of %lld dense causal (full %lld, partial %lld)\n",
           (long long)p->tiles.visited, (long long)p->tiles.full, (long long)p->tiles.partial,
           (long long)p->dense.visited, (long long)p->dense.full, (long long)p->dense.partial);
    printf("query tiles %lld per head, each visiting at most %lld KV tiles (dense causal: %lld)\n",
           (long long)((p->N + p->bm - 1) / p->bm), (long long)p->tiles.max_per_q, (long long)p->dense.max_per_q);
}

/* ---- JSON ------------------------------------------------------------------- */

static void print_json(const plan *p)
{
    const sp_spec *s = p->spec;
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w, NULL);
    jw_str(&w, "spec", s->name);
    jw_str(&w, "spec_path", s->path);   /* the same key as run's */
    jw_str(&w, "pattern", sp_pattern_name(p->pattern->kind));
    if (p->layer_index >= 0) jw_int(&w, "layer_index", p->layer_index);
    else jw_null(&w, "layer_index");
    /* As in the spec: "seq_len" (bands follow N), a fixed L, or null where
     * the pattern has no basis (dense, window, custom). */
    char basis[32];
    basis_string(p->pattern, basis, sizeof basis);
    if (strcmp(basis, "none") == 0) jw_null(&w, "band_basis");
    else if (p->pattern->band_basis > 0) jw_int(&w, "band_basis", p->pattern->band_basis);
    else jw_str(&w, "band_basis", "seq_len");
    jw_int(&w, "heads", s->heads);
    jw_int(&w, "kv_heads", s->kv_heads);
    jw_int(&w, "head_dim", s->head_dim);
    jw_str(&w, "dtype", sp_dtype_name(s->dtype));
    jw_int(&w, "seq_len", p->N);
    jw_obj(&w, "tile");
    jw_int(&w, "bm", p->bm);
    jw_int(&w, "bn", p->bn);
    jw_str(&w, "config", p->config[0] ? p->config : NULL);   /* null: --tile */
    jw_end(&w);
    jw_str(&w, "arch", p->arch);
    jw_arr(&w, "per_head");
    for (int h = 0; h < s->heads; h++) {
        const head_plan *hp = &p->head[h];
        jw_obj(&w, NULL);
        jw_int(&w, "head", h);
        jw_arr(&w, "intervals");
        for (int k = 0; k < hp->bands.n; k++) {
            jw_arr(&w, NULL);
            jw_int(&w, NULL, hp->bands.iv[k].lo);
            jw_int(&w, NULL, hp->bands.iv[k].hi);
            jw_end(&w);
        }
        jw_end(&w);
        jw_int(&w, "pairs", hp->pairs);
        jw_num(&w, "share", share(hp->pairs, p->N));
        jw_int(&w, "tiles", hp->tiles.visited);
        jw_int(&w, "full", hp->tiles.full);
        jw_int(&w, "partial", hp->tiles.partial);
        jw_int(&w, "max_tiles_per_q", hp->tiles.max_per_q);
        jw_end(&w);
    }
    jw_end(&w);
    jw_obj(&w, "totals");
    jw_num(&w, "work_ratio", p->ratio);
    jw_num(&w, "ideal_speedup", p->ratio > 0 ? 1.0 / p->ratio : INFINITY);   /* inf -> null */
    jw_int(&w, "pairs", p->pairs);
    jw_int(&w, "dense_pairs", p->dense_pairs);
    jw_int(&w, "tiles", p->tiles.visited);
    jw_int(&w, "full", p->tiles.full);
    jw_int(&w, "partial", p->tiles.partial);
    jw_int(&w, "dense_tiles", p->dense.visited);
    jw_int(&w, "dense_full", p->dense.full);
    jw_int(&w, "dense_partial", p->dense.partial);
    jw_int(&w, "q_tiles_per_head", (p->N + p->bm - 1) / p->bm);
    jw_end(&w);
    jw_end(&w);
    jw_finish(&w);
}

/* ---- SVG -------------------------------------------------------------------- */

#define SVG_CELLS  128   /* at most this many cells per side and head */
#define SVG_PANEL  192   /* px per head square */
#define SVG_GAP    48    /* px between panels: room for the query-axis tick labels */
#define SVG_LABEL  18    /* px above a panel ("head h") */
#define SVG_BELOW  42    /* px below a panel (key-axis tick labels, the intervals) */

static void sb_xml(strbuf *sb, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': sb_puts(sb, "&amp;"); break;
        case '<': sb_puts(sb, "&lt;"); break;
        case '>': sb_puts(sb, "&gt;"); break;
        case '"': sb_puts(sb, "&quot;"); break;
        default:  sb_add(sb, s, 1);
        }
    }
}

static const char *const cell_fill[] = {
    [0] = NULL,          /* above the diagonal: left white */
    [1] = "#e6e6e6",     /* causal but masked by the bands */
    [2] = "#8fb3e8",     /* some pairs allowed (a PARTIAL cell) */
    [3] = "#1d4f9c",     /* every pair allowed (a FULL cell) */
};

/* Cell class: 3 all allowed, 2 some, 1 none but causal, 0 none causal. */
static int cell_class(const sp_band_list *b, const sp_band_list *dense, int64_t N, int64_t i0, int64_t i1, int64_t j0,
                      int64_t j1)
{
    tile_kind k = bands_tile_kind(b, N, i0, (int)(i1 - i0), j0, (int)(j1 - j0));
    if (k == TILE_FULL) return 3;
    if (k == TILE_PARTIAL) return 2;
    return bands_tile_kind(dense, N, i0, (int)(i1 - i0), j0, (int)(j1 - j0)) != TILE_SKIP ? 1 : 0;
}

/* One head's square at (x, y): rows are queries i (top to bottom), columns
 * keys j (left to right); cell c covers [c N / C, (c + 1) N / C).  Drawn in
 * cell units under a scale transform, one path per shade, each run of equal
 * cells in a row one subpath: that keeps the file small. */
static void svg_head(strbuf *sb, const plan *p, int h, double x, double y)
{
    const int64_t N = p->N;
    const int C = N < SVG_CELLS ? (int)N : SVG_CELLS;
    const sp_band_list *b = &p->head[h].bands;
    sp_band_list dense = { 1, { { 0, N } } };
    strbuf path[4] = { STRBUF_INIT, STRBUF_INIT, STRBUF_INIT, STRBUF_INIT };

    for (int r = 0; r < C; r++) {
        int64_t i0 = r * N / C, i1 = (r + 1) * N / C;
        int run_start = 0, run_class = -1;
        for (int c = 0; c <= C; c++) {
            int cls = c < C ? cell_class(b, &dense, N, i0, i1, c * N / C, (c + 1) * N / C) : -1;
            if (cls == run_class) continue;
            if (run_class > 0) sb_printf(&path[run_class], "M%d %dh%dv1h-%dz", run_start, r, c - run_start, c - run_start);
            run_start = c;
            run_class = cls;
        }
    }
    sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"lab\">head %d</text>\n", x, y - 5, h);
    sb_printf(sb, "<g transform=\"translate(%.1f %.1f) scale(%.6g)\" shape-rendering=\"crispEdges\">\n", x, y,
              (double)SVG_PANEL / C);
    for (int k = 1; k < 4; k++) {
        if (path[k].len) sb_printf(sb, "<path fill=\"%s\" d=\"%s\"/>\n", cell_fill[k], path[k].buf);
        sb_free(&path[k]);
    }
    sb_printf(sb, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#444\"/>\n", x, y,
              SVG_PANEL, SVG_PANEL);

    /* Axis ticks at round positions: query i down the left edge, key j
     * along the bottom, both from 0 to N. */
    double t[CHART_MAX_TICKS], step;
    int nt = chart_ticks(0, (double)N, 5, t, &step);
    for (int k = 0; k < nt; k++) {
        double off = t[k] / (double)N * SVG_PANEL;
        strbuf lab = STRBUF_INIT;
        if (t[k] >= 10000 && fmod(t[k], 1000) == 0) chart_tick_label(&lab, t[k] / 1000, 1, "k");
        else chart_tick_label(&lab, t[k], step, "");
        sb_printf(sb, "<path stroke=\"#444\" d=\"M%.1f %.1fh-4M%.1f %.1fv4\"/>", x, y + off, x + off, y + SVG_PANEL);
        sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"tk\" text-anchor=\"end\">%s</text>", x - 6, y + off + 3,
                  lab.buf);
        sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"tk\" text-anchor=\"middle\">%s</text>\n", x + off,
                  y + SVG_PANEL + 13, lab.buf);
        sb_free(&lab);
    }

    /* The intervals under the square, cut to what fits; the whole list is
     * the text's tooltip. */
    strbuf iv = STRBUF_INIT, all = STRBUF_INIT;
    intervals_string(b, &iv);
    intervals_string(b, &all);
    const size_t fit = 40;
    if (iv.len > fit) {
        iv.buf[fit - 3] = 0;
        iv.len = fit - 3;
        sb_puts(&iv, "...");
    }
    sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" class=\"iv\"><title>", x, y + SVG_PANEL + 30);
    sb_xml(sb, all.buf);
    sb_puts(sb, "</title>");
    sb_xml(sb, iv.buf);
    sb_puts(sb, "</text>\n");
    sb_free(&iv);
    sb_free(&all);
}

static int write_svg(const plan *p, const char *path, sp_err *e)
{
    const int H = p->spec->heads;
    int cols = 1;
    while (cols * cols < H) cols++;
    int rows = (H + cols - 1) / cols;
    const int margin = 20, top = 64, axis = 40;   /* axis: room left of the first column for tick labels */
    int cell_w = SVG_PANEL + SVG_GAP, cell_h = SVG_LABEL + SVG_PANEL + SVG_BELOW;

    /* The title sets a minimum width (16 px bold: about 10 px a
     * character), so a long spec name is never cut off. */
    strbuf title = STRBUF_INIT;
    sb_printf(&title, "%s: %s", p->spec->name, sp_pattern_name(p->pattern->kind));
    if (p->layer_index >= 0) sb_printf(&title, " (layer %d)", p->layer_index);
    sb_printf(&title, ", N = %lld, work ratio %.6f", (long long)p->N, p->ratio);
    int width = 2 * margin + axis + cols * cell_w - SVG_GAP;
    if (width < 560) width = 560;
    if (width < 2 * margin + 10 * (int)title.len) width = 2 * margin + 10 * (int)title.len;
    int height = top + rows * cell_h + 40;

    strbuf sb = STRBUF_INIT;
    sb_printf(&sb, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                   "font-family=\"sans-serif\">\n", width, height, width, height);
    sb_puts(&sb, "<style>.t{font-size:16px;font-weight:bold}.s{font-size:11px;fill:#444}"
                 ".lab{font-size:12px}.iv{font-size:9px;fill:#333}.tk{font-size:8px;fill:#444}</style>\n");
    sb_printf(&sb, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", width, height);
    sb_printf(&sb, "<text x=\"%d\" y=\"24\" class=\"t\">", margin);
    sb_xml(&sb, title.buf);
    sb_puts(&sb, "</text>\n");
    sb_free(&title);
    int cells = p->N < SVG_CELLS ? (int)p->N : SVG_CELLS;
    sb_printf(&sb, "<text x=\"%d\" y=\"42\" class=\"s\">rows: query i (0 to N, down), columns: key j (0 to N, "
                   "right); %d x %d cells per head</text>\n", margin, cells, cells);

    for (int h = 0; h < H; h++) {
        double x = margin + axis + (h % cols) * cell_w, y = top + (h / cols) * cell_h + SVG_LABEL;
        svg_head(&sb, p, h, x, y);
    }

    /* Legend. */
    static const char *const legend[] = { "every pair allowed", "some pairs allowed", "causal, masked by the bands" };
    int ly = height - 22, lx = margin;
    for (int k = 0; k < 3; k++) {
        sb_printf(&sb, "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\" stroke=\"#444\"/>", lx, ly,
                  cell_fill[3 - k]);
        sb_printf(&sb, "<text x=\"%d\" y=\"%d\" class=\"s\">%s</text>\n", lx + 17, ly + 10, legend[k]);
        lx += 40 + 6 * (int)strlen(legend[k]);
    }
    sb_puts(&sb, "</svg>\n");
    int rc = 0;
    if (strcmp(path, "-") == 0) {   /* standard output; main checks that the write succeeded */
        fwrite(sb.buf, 1, sb.len, stdout);
    } else {
        rc = sp_write_file_atomic(path, sb.buf, sb.len, e);
    }
    sb_free(&sb);
    return rc;
}

/* ---- the command ------------------------------------------------------------ */

int cmd_plan(int argc, char **argv, sp_err *e)
{
    int64_t N = 0;
    const char *tile = NULL, *arch_name = "sm_90a";
    int layer_index = -1, json = 0;
    const char *svg = NULL;
    opt_def opts[] = {
        OPT_I64(0, "seq-len", &N, "N", "sequence length (default: the spec's first seq_len)", 1, PLAN_MAX_N),
        OPT_STRING(0, "arch", &arch_name, "ARCH", "GPU whose default forward kernel's tiles to count (default sm_90a)"),
        OPT_STRING(0, "tile", &tile, "BMxBN", "count these tiles instead: multiples of 16 up to 256"),
        OPT_INT(0, "layer-index", &layer_index, "K", "plan layer K's pattern (default: the spec's default)", 0,
                1 << 20),
        OPT_BOOL(0, "json", &json, "print one JSON object on stdout"),
        OPT_STRING(0, "svg", &svg, "FILE", "draw each head's mask (query by key) into an SVG file ('-': stdout)"),
        OPT_END(),
    };
    opt_pos pos;
    int rc = opts_parse(&plan_cmd, opts, argc, argv, &pos, e);
    if (rc == 1) return SP_EXIT_OK;
    if (rc) return SP_EXIT_USAGE;

    int bm = 0, bn = 0, sm;
    char arch[16];
    if (arch_parse(arch_name, &sm, arch, sizeof arch, e)) return SP_EXIT_USAGE;
    if (tile && parse_tile(tile, &bm, &bn, e)) return SP_EXIT_USAGE;
    if (svg && json && strcmp(svg, "-") == 0) {
        sp_fail(e, SP_EXIT_USAGE, "--svg - and --json both write to standard output");
        return SP_EXIT_USAGE;
    }

    sp_out svg_out;
    const char *svg_what = "--svg";
    if (cmd_check_outputs(&svg_out, &svg, &svg_what, 1, e)) return SP_EXIT_USAGE;

    sp_spec spec;
    if (cmd_load_spec(pos.v[0], &spec, e)) return e->code ? e->code : SP_EXIT_USAGE;

    plan p = { .spec = &spec, .layer_index = layer_index, .N = N, .bm = bm, .bn = bn };
    snprintf(p.arch, sizeof p.arch, "%s", arch);
    rc = SP_EXIT_USAGE;
    if (p.N == 0) {
        if (spec.n_seq_len == 0) {
            sp_fail(e, SP_EXIT_USAGE, "%s sets no seq_len: give --seq-len N", pos.v[0]);
            goto out;
        }
        p.N = spec.seq_len[0];
    }
    if (cmd_layer_pattern(&spec, layer_index, &p.pattern, e)) goto out;
    if (!tile) {
        /* The tiles of the forward kernel that would run on arch: the
         * heuristic default (a tuned database entry may differ). */
        sp_kcfg cfg;
        kcfg_for_spec(&cfg, &spec, p.pattern, SP_KIND_FWD, sm);
        if (kcfg_derive(&cfg, e)) goto out;
        p.bm = cfg.bm;
        p.bn = cfg.bn;
        kcfg_tile_string(&cfg, p.config, sizeof p.config);
    }

    p.head = calloc((size_t)spec.heads, sizeof *p.head);
    if (!p.head) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); rc = SP_EXIT_FAIL; goto out; }
    build_plan(&p);

    int empty = 0;
    for (int h = 0; h < spec.heads; h++) empty += p.head[h].bands.n == 0;
    if (2 * empty > spec.heads)
        fprintf(stderr, "warning: %d of %d heads attend nothing at N = %lld (their bands start at or beyond N); "
                        "a larger --seq-len shows the pattern\n", empty, spec.heads, (long long)p.N);

    int svg_stdout = svg && strcmp(svg, "-") == 0;
    if (json) print_json(&p);
    else if (!svg_stdout) print_human(&p);

    rc = SP_EXIT_OK;
    if (svg) {
        if (write_svg(&p, svg, e)) rc = e->code ? e->code : SP_EXIT_FAIL;
        else if (!json && !svg_stdout) fprintf(stderr, "wrote %s\n", svg);
    }
out:
    free(p.head);
    spec_free(&spec);
    return rc;
}
