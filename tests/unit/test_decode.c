/* Decoding from a KV cache (issue 18 item 2): the CPU reference against
 * the forward it must equal, the kernels' shared plan code against the host's
 * band formulas and a brute force, the C API on a CPU context, and the decode
 * kernels compiled for sm_80 and sm_90a without spills.
 *   - ref_decode with every length N is bitwise the last T rows of
 *     ref_forward over N (T = 1 and 4, GQA, a fixed band_basis, custom,
 *     exclusive with empty rows, window);
 *   - with kv_lens, sequence b is bitwise the last T rows of the forward over
 *     its own len_b tokens (the bands follow the length), len < T included;
 *   - a paged cache with a shuffled block table is bitwise the contiguous one;
 *   - band_layout (kernels/decode_plan.cuh, what the kernel runs) equals
 *     bands_head for every layout, head and length tried;
 *   - the key tiles a block reads are exactly the tiles holding an allowed
 *     key of one of its rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/bands.h"
#include "codegen/emit.h"
#include "codegen/family.h"
#include "codegen/kcfg.h"
#include "common/half.h"
#include "include/spattn.h"
#include "kernels/decode_plan.cuh"
#include "runtime/config.h"
#include "runtime/decode.h"
#include "runtime/nvrtc.h"
#include "runtime/ref.h"
#include "runtime/rng.h"
#include "runtime/tune.h"
#include "tests/check.h"
#include "tuning_db/db.h"

/* ---- band_layout == bands_head ------------------------------------------- */

static void test_band_layout(void)
{
    static const sp_pattern_kind kinds[] = { SP_LOCAL, SP_SPATTN, SP_EXCLUSIVE, SP_GAPPED };
    static const int heads[] = { 1, 3, 8, 16, 32 };
    static const int64_t bases[] = { 0, 40, 1000 };
    int bad = 0, tried = 0;
    for (size_t k = 0; k < 4; k++)
        for (size_t hi = 0; hi < 5; hi++)
            for (size_t bi = 0; bi < 3; bi++) {
                sp_pattern p = { .kind = kinds[k], .band_basis = bases[bi] };
                if (bases[bi] && bases[bi] < heads[hi]) continue;
                for (int64_t n = 1; n <= 40000; n = n < 700 ? n + 1 : n * 3 / 2 + 1)
                    for (int h = 0; h < heads[hi]; h++) {
                        sp_band_list want;
                        bands_head(&p, heads[hi], h, n, &want);
                        long long lo[2], hx[2];
                        int c = band_layout((int)kinds[k], heads[hi], h, bases[bi], n, lo, hx);
                        int same = c == want.n;
                        for (int i = 0; same && i < c; i++) same = lo[i] == want.iv[i].lo && hx[i] == want.iv[i].hi;
                        if (!same && bad++ < 5)
                            fprintf(stderr, "  %s H %d h %d n %lld basis %lld: %d intervals, want %d\n",
                                    sp_pattern_name(kinds[k]), heads[hi], h, (long long)n, (long long)bases[bi], c, want.n);
                        tried++;
                    }
            }
    CHECKF(bad == 0, "band_layout differs from bands_head in %d of %d cases", bad, tried);
    long long lo[2], hx[2];
    CHECK("not a layout", band_layout(5, 4, 0, 0, 100, lo, hx) == -1);
}

/* ---- tile_runs_add against a bitmap --------------------------------------- */

static void test_tile_runs(void)
{
    rng r;
    rng_seed(&r, 7);
    int bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        int first[65], last[65], n = 0;
        unsigned char bits[200] = { 0 };
        int nr = 1 + (int)(rng_next(&r) % 64);
        for (int i = 0; i < nr; i++) {
            int a = (int)(rng_next(&r) % 190), z = a + (int)(rng_next(&r) % 8);
            n = tile_runs_add(first, last, n, a, z);
            for (int x = a; x <= z; x++) bits[x] = 1;
        }
        unsigned char got[200] = { 0 };
        for (int i = 0; i < n; i++) {
            if (first[i] > last[i] || (i > 0 && first[i] <= last[i - 1] + 1)) bad++;
            for (int x = first[i]; x <= last[i]; x++) got[x] = 1;
        }
        if (memcmp(bits, got, sizeof bits)) bad++;
    }
    CHECKF(bad == 0, "tile runs wrong in %d trials (not the union, unsorted, or adjacent runs left unmerged)", bad);
}

/* ---- the reference: decode == the last T rows of the forward --------------- */

typedef struct {
    const char *name;
    sp_pattern_kind kind;
    int64_t basis, window;
    int H, KVH, D, N, T;
} dcase;

static const dcase cases[] = {
    { "spattn T=1", SP_SPATTN, 0, 0, 4, 4, 16, 97, 1 },
    { "spattn gqa T=4", SP_SPATTN, 0, 0, 8, 2, 16, 113, 4 },
    { "spattn fixed basis T=3", SP_SPATTN, 40, 0, 4, 2, 8, 130, 3 },
    { "exclusive gqa T=5 (empty rows)", SP_EXCLUSIVE, 0, 0, 8, 4, 8, 64, 5 },
    { "gapped T=2", SP_GAPPED, 0, 0, 4, 1, 8, 77, 2 },
    { "window T=4", SP_WINDOW, 0, 9, 2, 1, 16, 50, 4 },
    { "dense T=2", SP_DENSE, 0, 0, 2, 2, 8, 33, 2 },
    { "custom T=2", SP_CUSTOM, 0, 0, 2, 1, 8, 40, 2 },
    { "spattn group 8 T=3 (two row blocks)", SP_SPATTN, 0, 0, 8, 1, 8, 90, 3 },
};

static sp_band_list custom_bands[2] = { { 2, { { 0, 3 }, { 9, 15 } } }, { 1, { { 20, 30 } } } };

static sp_pattern case_pattern(const dcase *c)
{
    sp_pattern p = { .kind = c->kind, .band_basis = c->basis, .window = c->window };
    if (c->kind == SP_CUSTOM) p.custom = custom_bands;
    return p;
}

static double *randn(rng *r, size_t n)
{
    double *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = rng_normal(r);
    return x;
}

/* Forward over the first L tokens of sequence b of a [B, N, heads, D] array:
 * [1, L, heads, D] copies. */
static double *first_tokens(const double *x, int b, int N, int L, int heads, int D)
{
    double *y = malloc((size_t)L * heads * D * sizeof *y + 8);
    memcpy(y, x + (size_t)b * N * heads * D, (size_t)L * heads * D * sizeof *y);
    return y;
}

/* Compare decode rows of sequence b (length len) with the forward over len tokens. */
static int decode_matches_forward(const dcase *c, const sp_pattern *pat, const double *q, const double *k,
                                  const double *v, const double *o, const double *lse, int B, int b, int len)
{
    const int H = c->H, KVH = c->KVH, D = c->D, N = c->N, T = c->T;
    int bad = 0;
    if (len < 1) {
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                bad += !(isinf(lse[((size_t)b * H + h) * T + t]) && lse[((size_t)b * H + h) * T + t] < 0);
                for (int d = 0; d < D; d++) bad += o[(((size_t)b * T + t) * H + h) * D + d] != 0.0;
            }
        return bad;
    }
    /* The forward's queries: the sequence's own rows, with the decode's q at the last T positions. */
    double *fq = calloc((size_t)len * H * D, sizeof *fq);
    for (int t = 0; t < T; t++) {
        int i = len - T + t;
        if (i < 0) continue;
        memcpy(fq + (size_t)i * H * D, q + ((size_t)b * T + t) * H * D, (size_t)H * D * sizeof *fq);
    }
    double *fk = first_tokens(k, b, N, len, KVH, D), *fv = first_tokens(v, b, N, len, KVH, D);
    double *fo = malloc((size_t)len * H * D * sizeof *fo), *fl = malloc((size_t)len * H * sizeof *fl);
    sp_band_list *bl = calloc((size_t)H, sizeof *bl);
    for (int h = 0; h < H; h++) bands_head(pat, H, h, len, &bl[h]);
    ref_problem rp = { 1, len, H, KVH, D, 1.0 / sqrt(D), bl, 1 };
    ref_forward(&rp, fq, fk, fv, fo, fl);
    for (int t = 0; t < T; t++) {
        int i = len - T + t;
        for (int h = 0; h < H; h++) {
            double dl = lse[((size_t)b * H + h) * T + t];
            const double *dro = o + (((size_t)b * T + t) * H + h) * D;
            if (i < 0) {
                bad += !(isinf(dl) && dl < 0);
                for (int d = 0; d < D; d++) bad += dro[d] != 0.0;
                continue;
            }
            bad += memcmp(&dl, &fl[(size_t)h * len + i], sizeof dl) != 0;
            bad += memcmp(dro, fo + ((size_t)i * H + h) * D, (size_t)D * sizeof *dro) != 0;
        }
    }
    (void)B;
    free(fq); free(fk); free(fv); free(fo); free(fl); free(bl);
    return bad;
}

static void run_case(const dcase *c, int varying, int paged)
{
    const int B = 3, H = c->H, KVH = c->KVH, D = c->D, N = c->N, T = c->T;
    sp_pattern pat = case_pattern(c);
    rng r;
    rng_seed(&r, 11);
    double *q = randn(&r, (size_t)B * T * H * D), *k = randn(&r, (size_t)B * N * KVH * D);
    double *v = randn(&r, (size_t)B * N * KVH * D);
    double *o = malloc((size_t)B * T * H * D * sizeof *o), *lse = malloc((size_t)B * H * T * sizeof *lse);
    int32_t lens[3] = { N, varying ? N / 2 + 1 : N, varying ? T - 1 : N };   /* len < T: rows before the sequence */
    ref_decode_problem dp = { .B = B, .T = T, .N = N, .H = H, .KVH = KVH, .D = D, .scale = 1.0 / sqrt(D),
                              .pattern = &pat, .kv_lens = varying ? lens : NULL, .threads = 2 };
    CHECKF(ref_decode(&dp, q, k, v, o, lse) == 0, "%s: ref_decode failed", c->name);
    int bad = 0;
    for (int b = 0; b < B; b++) bad += decode_matches_forward(c, &pat, q, k, v, o, lse, B, b, lens[b]);
    CHECKF(bad == 0, "%s%s: %d values differ from the forward's last T rows", c->name, varying ? " (kv_lens)" : "", bad);
    if (paged) {
        /* The same cache in pages of 16 tokens, the pages in shuffled order. */
        const int P = 16, maxp = (N + P - 1) / P, np = B * maxp + 3;
        int32_t *table = malloc((size_t)B * maxp * sizeof *table), *perm = malloc((size_t)np * sizeof *perm);
        for (int i = 0; i < np; i++) perm[i] = i;
        for (int i = np - 1; i > 0; i--) {
            int j = (int)(rng_next(&r) % (uint64_t)(i + 1)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        size_t row = (size_t)KVH * D;
        double *pk = calloc((size_t)np * P * row, sizeof *pk), *pv = calloc((size_t)np * P * row, sizeof *pv);
        for (int b = 0; b < B; b++)
            for (int pg = 0; pg < maxp; pg++) {
                int page = perm[b * maxp + pg];
                table[b * maxp + pg] = page;
                for (int x = 0; x < P && pg * P + x < N; x++) {
                    memcpy(pk + ((size_t)page * P + x) * row, k + ((size_t)b * N + pg * P + x) * row, row * sizeof *pk);
                    memcpy(pv + ((size_t)page * P + x) * row, v + ((size_t)b * N + pg * P + x) * row, row * sizeof *pv);
                }
            }
        double *o2 = malloc((size_t)B * T * H * D * sizeof *o2), *l2 = malloc((size_t)B * H * T * sizeof *l2);
        dp.block_table = table;
        dp.max_pages = maxp;
        dp.page_size = P;
        CHECKF(ref_decode(&dp, q, pk, pv, o2, l2) == 0, "%s paged: ref_decode failed", c->name);
        CHECKF(memcmp(o, o2, (size_t)B * T * H * D * sizeof *o) == 0 && memcmp(lse, l2, (size_t)B * H * T * sizeof *l2) == 0,
               "%s: the paged cache (shuffled pages) differs from the contiguous one", c->name);
        free(table); free(perm); free(pk); free(pv); free(o2); free(l2);
    }
    free(q); free(k); free(v); free(o); free(lse);
}

static void test_ref_equals_forward(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 0, 0);
}

static void test_ref_kv_lens(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], 1, 0);
}

static void test_ref_paged(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i], i % 2, 1);
}

static void test_ref_errors(void)
{
    sp_pattern pat = { .kind = SP_SPATTN };
    int32_t lens[1] = { 9 };
    double x[64] = { 0 }, o[64], l[8];
    ref_decode_problem dp = { .B = 1, .T = 1, .N = 8, .H = 1, .KVH = 1, .D = 4, .scale = 0.5, .pattern = &pat,
                              .kv_lens = lens };
    CHECK("length over N", ref_decode(&dp, x, x, x, o, l) == -1);
    dp.kv_lens = NULL;
    dp.T = 0;
    CHECK("T = 0", ref_decode(&dp, x, x, x, o, l) == -1);
}

/* ---- the tiles a block reads ------------------------------------------------ */

static void test_tiles_brute_force(void)
{
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const dcase *c = &cases[ci];
        sp_pattern pat = case_pattern(c);
        sp_spec spec = { .heads = c->H, .kv_heads = c->KVH, .head_dim = 64, .dtype = SP_BF16, .pattern = pat };
        sp_kcfg cfg;
        kcfg_for_spec(&cfg, &spec, &pat, SP_KIND_DEC, 80);
        cfg.bn = 16;
        cfg.warps = 1;
        sp_err e = { 0 };
        CHECKF(kcfg_derive(&cfg, &e) == 0, "%s: derive: %s", c->name, e.msg);
        sp_band_list *atN = calloc((size_t)c->H, sizeof *atN);
        for (int h = 0; h < c->H; h++) bands_head(&pat, c->H, h, c->N, &atN[h]);
        for (int64_t len = 0; len <= c->N; len += 1 + len / 5) {
            int64_t tiles, rows, max_tiles, want_tiles = 0, want_rows = 0;
            decode_sequence_cost(&cfg, &pat, atN, c->T, len, &tiles, &rows, &max_tiles);
            /* brute force: per kv head and row block, the tiles with an allowed key of some row */
            int group = c->H / c->KVH, rbs = (group * c->T + 15) / 16;
            for (int g = 0; g < c->KVH; g++)
                for (int rb = 0; rb < rbs; rb++)
                    for (int64_t n0 = 0; n0 < len; n0 += 16) {
                        int hit = 0;
                        for (int r = 0; r < 16 && !hit; r++) {
                            int rg = rb * 16 + r;
                            if (rg >= group * c->T) break;
                            int h = g * group + rg / c->T;
                            int64_t i = len - c->T + rg % c->T;
                            if (i < 0) continue;
                            sp_band_list bl;
                            bands_head(&pat, c->H, h, len, &bl);
                            for (int64_t j = n0; j < n0 + 16 && j <= i; j++) hit |= bands_allows(&bl, i - j);
                        }
                        if (hit) {
                            want_tiles++;
                            want_rows += n0 + 16 <= len ? 16 : len - n0;
                        }
                    }
            CHECKF(tiles == want_tiles && rows == want_rows, "%s len %lld: %lld tiles / %lld rows, brute force %lld / %lld",
                   c->name, (long long)len, (long long)tiles, (long long)rows, (long long)want_tiles,
                   (long long)want_rows);
        }
        free(atN);
    }
}

static void test_splits(void)
{
    sp_spec spec = { .heads = 16, .kv_heads = 16, .head_dim = 128, .dtype = SP_BF16, .pattern = { .kind = SP_SPATTN } };
    sp_kcfg c;
    kcfg_for_spec(&c, &spec, &spec.pattern, SP_KIND_DEC, 90);
    sp_err e = { 0 };
    CHECK("derives", kcfg_derive(&c, &e) == 0);
    CHECK("B 64 x 16 kv heads fill 132 SMs: one split", decode_splits(&c, 132, 64, 1, 100) == 1);
    int s = decode_splits(&c, 132, 1, 1, 100);
    CHECKF(s == 33, "B 1: %d splits (want 16 CTAs x splits >= 2 waves of 264, each >= 2 tiles)", s);
    /* Waves of 2 x 132 CTAs; the heuristic wants at least two (528 CTAs),
     * on either side of each threshold. */
    CHECK("B 33 x 16 kv heads = 528 CTAs: two waves, one split", decode_splits(&c, 132, 33, 1, 100) == 1);
    CHECK("B 32 x 16 = 512 CTAs, one short of two waves: 2 splits", decode_splits(&c, 132, 32, 1, 100) == 2);
    CHECK("B 17 x 16 kv heads: one wave, 2 splits", decode_splits(&c, 132, 17, 1, 100) == 2);
    CHECK("B 16 x 16 kv heads: short of a wave", decode_splits(&c, 132, 16, 1, 100) == 3);
    CHECK("B 8: two waves", decode_splits(&c, 132, 8, 1, 100) == 5);
    CHECK("no SMs reported: one SM", decode_splits(&c, 0, 1, 1, 100) == 1);
    CHECK("capped by tiles", decode_splits(&c, 132, 1, 1, 6) == 3);
    c.splits = 7;
    CHECK("config's splits", decode_splits(&c, 132, 1, 1, 100) == 7);
    CHECK("workspace 0 for one split", decode_workspace_bytes(&c, 4, 16, 1, 1) == 0);
    CHECK("workspace", decode_workspace_bytes(&c, 1, 16, 2, 3) == 16 * 2 * 3 * 128 * 4 + 16 * 2 * 3 * 4);
    char name[128];
    kcfg_name(&c, name, sizeof name);
    CHECKF(kernel_named(name, "spattn_dec_bf16_d128_bm16_bn64_w4_s3"), "kernel name %s", name);
    sp_kcfg t = c;
    CHECK("tile parses", kcfg_parse_tile("16x128:w4:s2", &t, &e) == 0 && kcfg_derive(&t, &e) == 0 && t.bn == 128);
    t = c;
    char ts[64];
    CHECK("splits in the tile", kcfg_parse_tile("16x64:w2:s4:k12", &t, &e) == 0 && kcfg_derive(&t, &e) == 0 &&
                                    t.splits == 12 && t.warps == 2 && t.stages == 4);
    kcfg_tile_string(&t, ts, sizeof ts);
    CHECKF(strcmp(ts, "16x64:w2:s4:k12") == 0, "tile string %s", ts);
    sp_kcfg f;
    kcfg_for_spec(&f, &spec, &spec.pattern, SP_KIND_FWD, 80);
    CHECK("no splits for the forward", kcfg_parse_tile("64x64:w4:s2:k2", &f, &e) != 0);
    t = c;
    CHECK("BM 32 refused", kcfg_parse_tile("32x64", &t, &e) == 0 && kcfg_derive(&t, &e) != 0);
    t = c;
    CHECK("BN not split into warps of 16 refused", kcfg_parse_tile("16x48:w2", &t, &e) == 0 && kcfg_derive(&t, &e) != 0);
    sp_kcfg cand[64];
    int n = kcfg_candidates(&c, cand, 64);
    CHECKF(n >= 6, "%d decode candidates", n);
}

/* ---- the C API on a CPU context ------------------------------------------- */

/* The splits the heuristic gives the benchmark on an H200 (132
 * SMs): B 64, N 32768, T 1. */
static void test_splits_benchmark(void)
{
    static const struct { int heads, kv_heads, want; } shapes[] = { { 16, 16, 1 }, { 32, 8, 2 } };
    for (int i = 0; i < 2; i++) {
        sp_spec spec = { .heads = shapes[i].heads, .kv_heads = shapes[i].kv_heads, .head_dim = 128, .dtype = SP_BF16,
                         .pattern = { .kind = SP_SPATTN } };
        sp_kcfg c;
        sp_err e = { 0 };
        kcfg_for_spec(&c, &spec, &spec.pattern, SP_KIND_DEC, 90);
        sp_band_list bands[32];
        for (int h = 0; h < spec.heads; h++) bands_head(&spec.pattern, spec.heads, h, 32768, &bands[h]);
        int s = kcfg_derive(&c, &e) ? -1 : decode_launch_splits(&c, &spec.pattern, bands, 132, 64, 1, 32768);
        CHECKF(s == shapes[i].want, "%d/%d heads, B 64: %d splits, want %d", shapes[i].heads, shapes[i].kv_heads, s,
               shapes[i].want);
    }
}

/* A tuned decode row in the database: the key carries T, and the row's
 * splits are used at its own (batch, N bucket, T) only. */
static void test_tuned_config(void)
{
    char dir[] = "/tmp/spattn-test-decode-XXXXXX", path[128], src[160];
    if (!mkdtemp(dir)) { CHECK("mkdtemp", 0); return; }
    snprintf(path, sizeof path, "%s/tune.db", dir);
    sp_gpu g;
    tune_fake_gpu(&g);
    sp_spec spec = { .heads = 32, .kv_heads = 8, .head_dim = 128, .dtype = SP_BF16, .pattern = { .kind = SP_SPATTN } };
    db_key k;
    config_db_key(&g, &spec, &spec.pattern, SP_KIND_DEC, 0, 64, 30000, 0, &k);
    CHECK("decode key: kind dec, T < 1 taken as 1, N bucket", strcmp(k.kind, "dec") == 0 && k.new_tokens == 1 &&
                                                                  k.batch == 64 && k.seq_bucket == 32768);
    config_db_key(&g, &spec, &spec.pattern, SP_KIND_FWD, 0, 64, 30000, 4, &k);
    CHECK("forward key: T = 0", strcmp(k.kind, "fwd") == 0 && k.new_tokens == 0);

    db_row rows[2];
    memset(rows, 0, sizeof rows);
    config_db_key(&g, &spec, &spec.pattern, SP_KIND_DEC, 0, 64, 32768, 1, &rows[0].key);
    config_db_key(&g, &spec, &spec.pattern, SP_KIND_DEC, 0, 64, 32768, 4, &rows[1].key);
    snprintf(rows[0].tile, sizeof rows[0].tile, "16x128:w4:s2:k3");
    snprintf(rows[1].tile, sizeof rows[1].tile, "16x64:w4:s3:k2");
    int dims[2][4] = { { 16, 128, 4, 2 }, { 16, 64, 4, 3 } };
    for (int i = 0; i < 2; i++) {
        rows[i].bm = dims[i][0]; rows[i].bn = dims[i][1]; rows[i].warps = dims[i][2]; rows[i].stages = dims[i][3];
        rows[i].median_ms = 1;
        rows[i].candidates = 2;
    }
    db *d = NULL;
    sp_err e = { 0 };
    int ok = db_open(path, 0, &d, &e) == 0 && db_put_rows(d, rows, 2, &e) == 0;
    CHECKF(ok, "two decode rows written: %s", e.msg);
    db_close(d);
    rows[0].key.new_tokens = 0;
    char why[256];
    CHECK("a dec row needs T >= 1", db_validate_row(&rows[0], why, sizeof why) != 0 && strstr(why, "new_tokens"));

    sp_kcfg c;
    ok = config_pick(&g, &spec, &spec.pattern, SP_KIND_DEC, 0, 64, 30000, 1, path, NULL, &c, src, sizeof src, &e) == 0;
    CHECKF(ok && c.bn == 128 && c.stages == 2 && c.splits == 3 && strcmp(src, "tuned (batch 64, N<=32768, T=1)") == 0,
           "its own key: the row's tile and splits (%s)", src);
    ok = config_pick(&g, &spec, &spec.pattern, SP_KIND_DEC, 0, 32, 32768, 1, path, NULL, &c, src, sizeof src, &e) == 0;
    CHECKF(ok && c.bn == 128 && c.splits == 0 && strstr(src, "splits at launch"),
           "another batch: the tile, splits at launch (%s)", src);
    ok = config_pick(&g, &spec, &spec.pattern, SP_KIND_DEC, 0, 64, 32768, 3, path, NULL, &c, src, sizeof src, &e) == 0;
    CHECKF(ok && c.bn == 64 && c.splits == 0 && strstr(src, "T=4"), "T 3: the nearest T's row, T 4 (%s)", src);
    ok = config_pick(&g, &spec, &spec.pattern, SP_KIND_DEC, 0, 64, 32768, 4, path, NULL, &c, src, sizeof src, &e) == 0;
    CHECKF(ok && c.bn == 64 && c.splits == 2, "T 4: its row (%s)", src);
    ok = config_pick(&g, &spec, &spec.pattern, SP_KIND_FWD, 0, 64, 32768, 0, path, NULL, &c, src, sizeof src, &e) == 0;
    CHECKF(ok && strcmp(src, "heuristic") == 0, "the forward does not take decode rows (%s)", src);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK("clean up", system(cmd) == 0);
}

static void test_api_cpu(void)
{
    spattn_context *ctx;
    spattn_plan *plan;
    const int B = 2, H = 8, KVH = 2, D = 32, T = 3;
    int N = 70;
    spattn_context_create(SPATTN_DEVICE_CPU, &ctx);
    spattn_params prm = { .heads = H, .kv_heads = KVH, .head_dim = D, .dtype = SPATTN_BF16, .pattern = "spattn" };
    CHECK("plan", spattn_plan_from_params(ctx, &prm, B, N, &plan) == SPATTN_OK);
    rng r;
    rng_seed(&r, 3);
    size_t nq = (size_t)B * T * H * D, nk = (size_t)B * N * KVH * D;
    uint16_t *q = malloc(2 * nq), *k = malloc(2 * nk), *v = malloc(2 * nk), *o = malloc(2 * nq);
    double *qd = malloc(8 * nq), *kd = malloc(8 * nk), *vd = malloc(8 * nk), *od = malloc(8 * nq);
    float lse[B * H * T];
    double ld[B * H * T];
    rng_fill_normal(&r, SP_BF16, nq, q, qd);
    rng_fill_normal(&r, SP_BF16, nk, k, kd);
    rng_fill_normal(&r, SP_BF16, nk, v, vd);
    spattn_tensor tq = spattn_tensor_bnhd(q, T, H, D), tk = spattn_tensor_bnhd(k, N, KVH, D);
    spattn_tensor tv = spattn_tensor_bnhd(v, N, KVH, D), to = spattn_tensor_bnhd(o, T, H, D);
    spattn_lse tl = spattn_lse_contiguous(lse, T, H);
    int32_t lens[2] = { 50, 70 };
    CHECK("workspace 0 on the CPU", spattn_decode_workspace_size(plan, T) == 0);
    CHECKF(spattn_decode(plan, &tq, &tk, &tv, lens, T, NULL, &to, &tl, NULL, 0, NULL) == SPATTN_OK, "decode: %s",
           spattn_plan_error(plan));
    sp_pattern pat = { .kind = SP_SPATTN };
    ref_decode_problem dp = { .B = B, .T = T, .N = N, .H = H, .KVH = KVH, .D = D, .scale = 1.0 / sqrt(32.0), .pattern = &pat,
                              .kv_lens = lens };
    ref_decode(&dp, qd, kd, vd, od, ld);
    int bad = 0;
    for (size_t i = 0; i < nq; i++) bad += o[i] != float_to_bf16((float)od[i]);
    for (int i = 0; i < B * H * T; i++) bad += lse[i] != (float)ld[i];
    CHECKF(bad == 0, "the API's CPU decode differs from ref_decode in %d values", bad);

    /* errors: one line each, SPATTN_EINVAL */
    CHECK("T = 0", spattn_decode(plan, &tq, &tk, &tv, NULL, 0, NULL, &to, &tl, NULL, 0, NULL) == SPATTN_EINVAL);
    CHECK("T > N", spattn_decode(plan, &tq, &tk, &tv, NULL, N + 1, NULL, &to, &tl, NULL, 0, NULL) == SPATTN_EINVAL);
    int32_t badlens[2] = { 71, 3 };
    CHECK("length > N", spattn_decode(plan, &tq, &tk, &tv, badlens, T, NULL, &to, &tl, NULL, 0, NULL) == SPATTN_EINVAL);
    CHECKF(strstr(spattn_plan_error(plan), "kv_lens[0] = 71") != NULL, "message: %s", spattn_plan_error(plan));
    int32_t table[2 * 5] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    spattn_paged_kv pg = { table, 5, 24, 10 };
    CHECK("page size 24", spattn_decode(plan, &tq, &tk, &tv, NULL, T, &pg, &to, &tl, NULL, 0, NULL) == SPATTN_EINVAL);
    pg.page_size = 16;
    pg.max_pages = 4;
    CHECK("too few pages", spattn_decode(plan, &tq, &tk, &tv, NULL, T, &pg, &to, &tl, NULL, 0, NULL) == SPATTN_EINVAL);
    pg.max_pages = 5;
    table[3] = 10;
    CHECK("page out of range", spattn_decode(plan, &tq, &tk, &tv, NULL, T, &pg, &to, &tl, NULL, 0, NULL) == SPATTN_EINVAL);
    CHECKF(strstr(spattn_plan_error(plan), "block_table[0][3] = 10") != NULL, "message: %s", spattn_plan_error(plan));

    spattn_decode_info info;
    spattn_plan_destroy(plan);
    spattn_plan_from_params(ctx, &prm, B, N = 4096, &plan);
    CHECK("info", spattn_decode_get_info(plan, NULL, 1, &info) == SPATTN_OK);
    CHECKF(info.bytes > 0 && info.bytes < info.dense_bytes, "bytes %g of dense %g", info.bytes, info.dense_bytes);
    CHECK("dense bytes", info.dense_bytes == (double)B * N * KVH * D * 4);
    spattn_plan_destroy(plan);
    prm.pattern = "dense";
    spattn_plan_from_params(ctx, &prm, B, 128, &plan);
    CHECK("dense info", spattn_decode_get_info(plan, NULL, 1, &info) == SPATTN_OK && info.bytes == info.dense_bytes);
    spattn_plan_destroy(plan);
    spattn_context_destroy(ctx);
    free(q); free(k); free(v); free(o); free(qd); free(kd); free(vd); free(od);
}

/* ---- the decode kernels compile without spills (NVRTC) -------------------- */

static void test_compile_no_spills(void)
{
    static const int dims[] = { 32, 64, 96, 128, 256 };
    static const char *archs[] = { "sm_80", "sm_90a" };
    for (size_t di = 0; di < 5; di++)
        for (int gq = 0; gq < 2; gq++) {
            sp_spec spec = { .heads = 32, .kv_heads = gq ? 8 : 32, .head_dim = dims[di], .dtype = gq ? SP_FP16 : SP_BF16,
                             .pattern = { .kind = gq ? SP_CUSTOM : SP_SPATTN } };
            sp_band_list custom[32];
            for (int h = 0; h < 32; h++) custom[h] = (sp_band_list){ 3, { { 0, 5 }, { 9, 40 }, { 100, 300 } } };
            if (gq) spec.pattern.custom = custom;
            snprintf(spec.name, sizeof spec.name, "dec");
            for (int a = 0; a < 2; a++) {
                sp_kcfg c;
                kcfg_for_spec(&c, &spec, &spec.pattern, SP_KIND_DEC, a ? 90 : 80);
                sp_err e = { 0 };
                CHECKF(kcfg_derive(&c, &e) == 0, "d%d: %s", dims[di], e.msg);
                strbuf src = STRBUF_INIT;
                sb_init(&src);
                CHECKF(emit_kernel(&src, &spec, &spec.pattern, &c, &e) == 0, "emit d%d: %s", dims[di], e.msg);
                sp_compiled out;
                memset(&out, 0, sizeof out);
                int rc = nvrtc_compile(src.buf, archs[a], &out, &e);
                CHECKF(rc == 0, "d%d %s: %s", dims[di], archs[a], e.msg);
                char name[128], comb[160];
                kcfg_name(&c, name, sizeof name);
                kcfg_dec_combine_name(&c, comb, sizeof comb);
                sp_kres res, res2;
                if (rc == 0) {
                    CHECKF(nvrtc_kernel_resources(out.log, name, &res) == 0 &&
                               nvrtc_kernel_resources(out.log, comb, &res2) == 0,
                           "%s: no ptxas report", name);
                    CHECKF(res.spill_stores == 0 && res.spill_loads == 0, "%s %s spills %d/%d at %d registers", name,
                           archs[a], res.spill_stores, res.spill_loads, res.regs);
                }
                nvrtc_compiled_free(&out);
                sb_free(&src);
            }
        }
}

static const test_case tests[] = {
    { "band_layout", test_band_layout },
    { "tile_runs", test_tile_runs },
    { "ref_equals_forward", test_ref_equals_forward },
    { "ref_kv_lens", test_ref_kv_lens },
    { "ref_paged", test_ref_paged },
    { "ref_errors", test_ref_errors },
    { "tiles_brute_force", test_tiles_brute_force },
    { "splits", test_splits },
    { "splits_benchmark", test_splits_benchmark },
    { "tuned_config", test_tuned_config },
    { "api_cpu", test_api_cpu },
    { "compile_no_spills", test_compile_no_spills },
    { 0, 0 },
};
TEST_MAIN(tests)
