/* The CPU layer reference (runtime/layer_ref.c) against:
 *   - exact small GEMMs (integers), the 16-bit rounding, thread counts;
 *   - a naive layer written out here in loops (projections, a masked
 *     softmax over every key, the same roundings), on odd shapes, GQA, N = 1
 *     and a pattern with empty rows;
 *   - a case with a closed-form answer: Wq = 0 makes every softmax uniform,
 *     and Wv = Wo = I, so y[i] is the mean of x over row i's allowed keys. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/bands.h"
#include "runtime/layer_ref.h"
#include "runtime/rng.h"
#include "tests/check.h"

static double max_abs_diff(const double *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]);
        if (!(d <= m)) m = d;      /* NaN propagates as a failure */
    }
    return m;
}

/* ---------------------------------------------------------------------------
 * GEMM */

static void test_matmul_exact(void)
{
    const double a[] = { 1, 2, 3, 4 };             /* [2, 2] */
    const double w[] = { 5, 6, 7, 8, 9, 10 };      /* [2, 3] */
    const double want[] = { 21, 24, 27, 47, 54, 61 };
    double y[6];
    layer_matmul(a, w, 2, 2, 3, 0, SP_BF16, 1, y);
    CHECK("2x2 times 2x3", max_abs_diff(y, want, 6) == 0);
    double one[3];
    layer_matmul(a, w, 1, 2, 3, 0, SP_BF16, 4, one);   /* one row, more threads than rows */
    CHECK("rows = 1", max_abs_diff(one, want, 3) == 0);
}

static void test_matmul_round(void)
{
    /* 1 + 2^-9 is between two bf16 values (8 mantissa bits): it rounds to 1.
     * In fp16 (10 bits) it is exact. */
    const double a[] = { 1.0, 1.0 / 512 };
    const double w[] = { 1.0, 1.0 };
    double y;
    layer_matmul(a, w, 1, 2, 1, 1, SP_BF16, 1, &y);
    CHECK("bf16 rounds 1 + 2^-9 to 1", y == 1.0);
    layer_matmul(a, w, 1, 2, 1, 1, SP_FP16, 1, &y);
    CHECK("fp16 keeps 1 + 2^-9", y == 1.0 + 1.0 / 512);
    layer_matmul(a, w, 1, 2, 1, 0, SP_BF16, 1, &y);
    CHECK("round = 0 keeps the double", y == 1.0 + 1.0 / 512);
}

static void test_matmul_threads(void)
{
    /* 37 rows: blocks of 8 leave a partial last block. */
    size_t rows = 37;
    int in = 19, out = 23;
    double *a = malloc(rows * in * sizeof *a), *w = malloc((size_t)in * out * sizeof *w);
    double *y1 = malloc(rows * out * sizeof *y1), *y4 = malloc(rows * out * sizeof *y4);
    rng r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < rows * in; i++) a[i] = rng_normal(&r);
    for (size_t i = 0; i < (size_t)in * out; i++) w[i] = rng_normal(&r);
    layer_matmul(a, w, rows, in, out, 1, SP_FP16, 1, y1);
    layer_matmul(a, w, rows, in, out, 1, SP_FP16, 4, y4);
    CHECK("1 and 4 threads give the same bits", memcmp(y1, y4, rows * out * sizeof *y1) == 0);
    double want = 0;
    for (int k = 0; k < in; k++) want += a[36 * in + k] * w[k * out + 22];
    CHECK("last element", y4[36 * out + 22] == rng_round_dtype(SP_FP16, want, NULL));
    free(a); free(w); free(y1); free(y4);
}

/* ---------------------------------------------------------------------------
 * The naive layer */

typedef struct {
    int B, N, dm, H, KVH, D;
    sp_dtype dtype;
    sp_pattern_kind kind;
} shape;

typedef struct {
    double *x, *wq, *wk, *wv, *wo;
} params;

static void params_random(const shape *s, uint64_t seed, params *p)
{
    size_t T = (size_t)s->B * s->N, qw = (size_t)s->H * s->D, kw = (size_t)s->KVH * s->D;
    p->x = malloc(T * s->dm * sizeof(double));
    p->wq = malloc(s->dm * qw * sizeof(double));
    p->wk = malloc(s->dm * kw * sizeof(double));
    p->wv = malloc(s->dm * kw * sizeof(double));
    p->wo = malloc(qw * s->dm * sizeof(double));
    rng r;
    rng_seed(&r, seed);
    layer_fill_normal(&r, s->dtype, T * s->dm, 1.0, NULL, p->x);
    layer_fill_normal(&r, s->dtype, s->dm * qw, 1 / sqrt(s->dm), NULL, p->wq);
    layer_fill_normal(&r, s->dtype, s->dm * kw, 1 / sqrt(s->dm), NULL, p->wk);
    layer_fill_normal(&r, s->dtype, s->dm * kw, 1 / sqrt(s->dm), NULL, p->wv);
    layer_fill_normal(&r, s->dtype, qw * s->dm, 1 / sqrt((double)qw), NULL, p->wo);
}

static void params_free(params *p)
{
    free(p->x); free(p->wq); free(p->wk); free(p->wv); free(p->wo);
}

/* y = round?(x w) for one row. */
static void naive_row(const double *x, const double *w, int in, int out, int round, sp_dtype dt, double *y)
{
    for (int c = 0; c < out; c++) {
        double s = 0;
        for (int k = 0; k < in; k++) s += x[k] * w[(size_t)k * out + c];
        y[c] = round ? rng_round_dtype(dt, s, NULL) : s;
    }
}

/* The layer with every sum written out; bands from codegen/bands.c.
 * round_mid: round Q, K, V and O to the dtype as the GPU stores them (0
 * shows that the comparison below can tell the difference). */
static void naive_layer(const shape *s, const sp_band_list *bands, double scale, const params *p, int round_mid,
                        double *y)
{
    int qw = s->H * s->D, kw = s->KVH * s->D, T = s->B * s->N;
    double *q = malloc((size_t)T * qw * sizeof *q), *k = malloc((size_t)T * kw * sizeof *k);
    double *v = malloc((size_t)T * kw * sizeof *v), *o = malloc((size_t)T * qw * sizeof *o);
    double *sc = malloc((size_t)s->N * sizeof *sc);
    for (int t = 0; t < T; t++) {
        naive_row(p->x + (size_t)t * s->dm, p->wq, s->dm, qw, round_mid, s->dtype, q + (size_t)t * qw);
        naive_row(p->x + (size_t)t * s->dm, p->wk, s->dm, kw, round_mid, s->dtype, k + (size_t)t * kw);
        naive_row(p->x + (size_t)t * s->dm, p->wv, s->dm, kw, round_mid, s->dtype, v + (size_t)t * kw);
    }
    for (int b = 0; b < s->B; b++)
        for (int i = 0; i < s->N; i++)
            for (int h = 0; h < s->H; h++) {
                int g = h / (s->H / s->KVH);
                const double *qi = q + ((size_t)(b * s->N + i) * s->H + h) * s->D;
                double mx = -INFINITY, den = 0;
                for (int j = 0; j <= i; j++) {
                    sc[j] = -INFINITY;
                    if (!bands_allows(&bands[h], i - j)) continue;
                    const double *kj = k + ((size_t)(b * s->N + j) * s->KVH + g) * s->D;
                    double dot = 0;
                    for (int d = 0; d < s->D; d++) dot += qi[d] * kj[d];
                    sc[j] = scale * dot;
                    if (sc[j] > mx) mx = sc[j];
                }
                double *oi = o + ((size_t)(b * s->N + i) * s->H + h) * s->D;
                for (int d = 0; d < s->D; d++) oi[d] = 0;
                if (mx == -INFINITY) continue;     /* no allowed key: O = 0 */
                for (int j = 0; j <= i; j++) den += sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
                for (int j = 0; j <= i; j++) {
                    if (sc[j] == -INFINITY) continue;
                    double pj = exp(sc[j] - mx) / den;
                    const double *vj = v + ((size_t)(b * s->N + j) * s->KVH + g) * s->D;
                    for (int d = 0; d < s->D; d++) oi[d] += pj * vj[d];
                }
                if (round_mid)
                    for (int d = 0; d < s->D; d++) oi[d] = rng_round_dtype(s->dtype, oi[d], NULL);
            }
    for (int t = 0; t < T; t++) naive_row(o + (size_t)t * qw, p->wo, qw, s->dm, 0, s->dtype, y + (size_t)t * s->dm);
    free(q); free(k); free(v); free(o); free(sc);
}

static void bands_of(const shape *s, sp_band_list *out)
{
    sp_pattern pat = { .kind = s->kind };
    for (int h = 0; h < s->H; h++) bands_head(&pat, s->H, h, s->N, &out[h]);
}

static double rel_l2(const double *out, const double *ref, size_t n)
{
    double d2 = 0, r2 = 0;
    for (size_t i = 0; i < n; i++) {
        d2 += (out[i] - ref[i]) * (out[i] - ref[i]);
        r2 += ref[i] * ref[i];
    }
    return r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
}

static int compare_with_naive(const shape *s, uint64_t seed)
{
    sp_band_list bands[16];
    bands_of(s, bands);
    params p;
    params_random(s, seed, &p);
    size_t ny = (size_t)s->B * s->N * s->dm;
    double *y = malloc(ny * sizeof *y), *want = malloc(ny * sizeof *want), *exact = malloc(ny * sizeof *exact);
    double scale = 1 / sqrt(s->D);
    layer_problem lp = { .B = s->B, .N = s->N, .d_model = s->dm, .H = s->H, .KVH = s->KVH, .D = s->D,
                         .dtype = s->dtype, .scale = scale, .bands = bands, .threads = 2 };
    layer_times t = { -1, -1, -1 };
    sp_err e = { 0 };
    int rc = layer_ref_forward(&lp, &(layer_params){ p.x, p.wq, p.wk, p.wv, p.wo }, y, &t, &e);
    naive_layer(s, bands, scale, &p, 1, want);
    naive_layer(s, bands, scale, &p, 0, exact);
    /* The reference's attention sums in another order than the naive loop,
     * so now and then a stored O element rounds to the neighbouring 16-bit
     * value: a rare one-ulp step moves y by far less than 1e-5 (rel L2),
     * while skipping the roundings moves it by about 1e-3. */
    double err = rel_l2(y, want, ny), unrounded = rel_l2(exact, want, ny);
    int ok = rc == 0 && err <= 1e-5 && unrounded > 1e-4 && t.qkv_ms >= 0 && t.attention_ms >= 0 &&
             t.out_proj_ms >= 0;
    if (!ok)
        fprintf(stderr, "  B=%d N=%d dm=%d H=%d KVH=%d D=%d %s: rc %d, rel L2 %.3e (unrounded layer %.3e)\n", s->B,
                s->N, s->dm, s->H, s->KVH, s->D, sp_pattern_name(s->kind), rc, err, unrounded);
    free(y); free(want); free(exact);
    params_free(&p);
    return ok;
}

static void test_layer_vs_naive(void)
{
    const shape cases[] = {
        { 2, 13, 24, 4, 2, 8, SP_BF16, SP_SPATTN },     /* odd N, GQA */
        { 1, 1, 16, 4, 4, 8, SP_BF16, SP_SPATTN },      /* N = 1 */
        { 1, 17, 12, 4, 1, 4, SP_FP16, SP_EXCLUSIVE },  /* rows with no key; one kv head */
        { 3, 9, 8, 2, 2, 16, SP_FP16, SP_DENSE },       /* d_model < H*D */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        CHECKF(compare_with_naive(&cases[c], 10 + c), "case %zu matches the naive layer", c);
}

/* Wq = 0: every allowed score is 0, so the softmax is uniform over row i's
 * allowed keys; V = x (Wv = I and x already representable), Wo = I. */
static void test_layer_uniform(void)
{
    enum { N = 11, DM = 8 };
    shape s = { 1, N, DM, 1, 1, DM, SP_BF16, SP_DENSE };
    sp_band_list bands[1];
    bands_of(&s, bands);
    double x[N * DM], zero[DM * DM], eye[DM * DM], y[N * DM];
    rng r;
    rng_seed(&r, 7);
    layer_fill_normal(&r, SP_BF16, N * DM, 1.0, NULL, x);
    memset(zero, 0, sizeof zero);
    memset(eye, 0, sizeof eye);
    for (int d = 0; d < DM; d++) eye[d * DM + d] = 1;
    layer_problem lp = { .B = 1, .N = N, .d_model = DM, .H = 1, .KVH = 1, .D = DM, .dtype = SP_BF16,
                         .scale = 0.125, .bands = bands, .threads = 1 };
    sp_err e = { 0 };
    CHECK("runs", layer_ref_forward(&lp, &(layer_params){ x, zero, eye, eye, eye }, y, NULL, &e) == 0);
    double err = 0;
    for (int i = 0; i < N; i++)
        for (int d = 0; d < DM; d++) {
            double mean = 0;
            for (int j = 0; j <= i; j++) mean += x[j * DM + d];
            mean = rng_round_dtype(SP_BF16, mean / (i + 1), NULL);   /* O is stored in bf16 */
            double diff = fabs(y[i * DM + d] - mean);
            if (diff > err) err = diff;
        }
    CHECKF(err < 1e-12, "y[i] is the running mean of x (max diff %.3e)", err);
}

static void test_problem_check(void)
{
    sp_band_list bands[4];
    layer_problem lp = { .B = 1, .N = 4, .d_model = 8, .H = 4, .KVH = 3, .D = 2, .bands = bands };
    sp_err e = { 0 };
    CHECK("H not a multiple of KVH", layer_problem_check(&lp, &e) == -1 && e.code == SP_EXIT_USAGE);
    CHECK("the message names both", strstr(e.msg, "4") && strstr(e.msg, "3"));
    lp.KVH = 2;
    sp_err_clear(&e);
    CHECK("a good shape passes", layer_problem_check(&lp, &e) == 0);
    lp.d_model = 0;
    CHECK("d_model 0", layer_problem_check(&lp, &e) == -1 && e.code == SP_EXIT_USAGE);
    lp.d_model = 8;
    lp.B = 65536;
    lp.N = 1 << 16;
    CHECK("B*N over INT_MAX", layer_problem_check(&lp, &e) == -1);
}

static void test_fill_normal(void)
{
    enum { n = 20000 };
    static double v[n], w[n];
    static uint16_t bits[n], bits1[n];
    rng r;
    rng_seed(&r, 5);
    layer_fill_normal(&r, SP_FP16, n, 0.0625, bits, v);
    double m2 = 0;
    int rounded = 1;
    for (int i = 0; i < n; i++) {
        m2 += v[i] * v[i];
        if (rng_round_dtype(SP_FP16, v[i], NULL) != v[i]) rounded = 0;
    }
    CHECKF(fabs(sqrt(m2 / n) / 0.0625 - 1) < 0.03, "std 0.0625 (got %.5f)", sqrt(m2 / n));
    CHECK("values are fp16 values", rounded);
    /* std 1 is rng_fill_normal: x drawn either way is the same. */
    rng_seed(&r, 9);
    layer_fill_normal(&r, SP_BF16, n, 1.0, bits, v);
    rng_seed(&r, 9);
    rng_fill_normal(&r, SP_BF16, n, bits1, w);
    CHECK("std 1 equals rng_fill_normal", memcmp(bits, bits1, sizeof bits) == 0 && memcmp(v, w, sizeof v) == 0);
}

static const test_case tests[] = {
    { "matmul_exact", test_matmul_exact },
    { "matmul_round", test_matmul_round },
    { "matmul_threads", test_matmul_threads },
    { "layer_vs_naive", test_layer_vs_naive },
    { "layer_uniform", test_layer_uniform },
    { "problem_check", test_problem_check },
    { "fill_normal", test_fill_normal },
    { 0, 0 },
};

TEST_MAIN(tests)
