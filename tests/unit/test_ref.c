/* The CPU reference (runtime/ref.c) against two independent checks:
 *   - forward: a naive masked softmax over the full N x N score matrix;
 *   - backward: central finite differences of L = sum(O * W), whose
 *     gradient with respect to O is W (so dO = W).
 * Band lists are built here, from DESIGN.md's formulas, so this test does
 * not depend on codegen/bands.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/ref.h"
#include "runtime/rng.h"
#include "tests/check.h"

/* ---------------------------------------------------------------------------
 * Band lists */

typedef enum { P_DENSE, P_LOCAL, P_SPATTN, P_EXCLUSIVE, P_GAPPED, P_CUSTOM } pat;
static const char *pat_name[] = { "dense", "local", "spattn", "exclusive", "gapped", "custom" };

/* Append [lo, hi) clipped to [0, N), keeping the list sorted and merged.
 * Callers add intervals in ascending order of lo. */
static void add(sp_band_list *b, int64_t lo, int64_t hi, int64_t N)
{
    if (lo < 0) lo = 0;
    if (hi > N) hi = N;
    if (lo >= hi) return;
    if (b->n > 0 && lo <= b->iv[b->n - 1].hi) {
        if (hi > b->iv[b->n - 1].hi) b->iv[b->n - 1].hi = hi;
        return;
    }
    b->iv[b->n].lo = lo;
    b->iv[b->n].hi = hi;
    b->n++;
}

/* DESIGN.md section 1 with L = N; custom: a fixed two-band layout per head
 * with a gap, so rows near the start have no key for odd heads. */
static void layout(pat p, int H, int N, sp_band_list *out)
{
    int64_t base = N / H, extra = N % H;
    for (int h = 0; h < H; h++) {
        int64_t w = base + (h < extra ? 1 : 0);
        int64_t s = h * base + (h < extra ? h : extra);
        sp_band_list *b = &out[h];
        b->n = 0;
        switch (p) {
        case P_DENSE: add(b, 0, N, N); break;
        case P_LOCAL: add(b, 0, w + 1, N); break;
        case P_SPATTN:
            add(b, 0, w + 1, N);
            add(b, s > w + 1 ? s : w + 1, s + w, N);
            break;
        case P_EXCLUSIVE: add(b, s, s + w, N); break;
        case P_GAPPED: add(b, s, s + w / 2, N); break;
        case P_CUSTOM:
            if (h % 2 == 0) { add(b, 0, 2, N); add(b, 4, 6, N); add(b, 9, 11, N); }
            else { add(b, 1, 2, N); add(b, 3, 5, N); }
            break;
        }
    }
}

static int allows(const sp_band_list *b, int64_t d)
{
    for (int r = 0; r < b->n; r++)
        if (d >= b->iv[r].lo && d < b->iv[r].hi) return 1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Problems */

typedef struct {
    ref_problem p;
    sp_band_list bands[16];
    size_t nq, nk, nl;          /* element counts of q, k, lse */
    double *q, *k, *v, *o, *lse;
} prob;

static void prob_init(prob *t, pat pt, int B, int N, int H, int KVH, int D, uint64_t seed)
{
    memset(t, 0, sizeof *t);
    layout(pt, H, N, t->bands);
    t->p = (ref_problem){ .B = B, .N = N, .H = H, .KVH = KVH, .D = D, .scale = 1.0 / sqrt(D),
                          .bands = t->bands, .threads = 0 };
    t->nq = (size_t)B * N * H * D;
    t->nk = (size_t)B * N * KVH * D;
    t->nl = (size_t)B * H * N;
    t->q = malloc(t->nq * sizeof(double));
    t->k = malloc(t->nk * sizeof(double));
    t->v = malloc(t->nk * sizeof(double));
    t->o = malloc(t->nq * sizeof(double));
    t->lse = malloc(t->nl * sizeof(double));
    rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < t->nq; i++) t->q[i] = rng_normal(&r);
    for (size_t i = 0; i < t->nk; i++) t->k[i] = rng_normal(&r);
    for (size_t i = 0; i < t->nk; i++) t->v[i] = rng_normal(&r);
}

static void prob_free(prob *t)
{
    free(t->q); free(t->k); free(t->v); free(t->o); free(t->lse);
}

/* The naive forward: full score matrix, mask, softmax.  o is (B,N,H,D), lse (B,H,N). */
static void naive_forward(const prob *t, double *o, double *lse)
{
    const ref_problem *p = &t->p;
    int N = p->N, H = p->H, KVH = p->KVH, D = p->D;
    double *S = malloc((size_t)N * N * sizeof *S);
    for (int b = 0; b < p->B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / KVH);
            for (int i = 0; i < N; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int d = 0; d < D; d++)
                        s += t->q[(((size_t)b * N + i) * H + h) * D + d] * t->k[(((size_t)b * N + j) * KVH + g) * D + d];
                    int ok = j <= i && allows(&p->bands[h], i - j);
                    S[(size_t)i * N + j] = ok ? s * p->scale : -INFINITY;
                }
            for (int i = 0; i < N; i++) {
                double *row = S + (size_t)i * N, mx = -INFINITY, sum = 0;
                double *oi = o + (((size_t)b * N + i) * H + h) * D;
                for (int j = 0; j < N; j++) if (row[j] > mx) mx = row[j];
                for (int d = 0; d < D; d++) oi[d] = 0;
                if (mx == -INFINITY) { lse[((size_t)b * H + h) * N + i] = -INFINITY; continue; }
                for (int j = 0; j < N; j++) sum += exp(row[j] - mx);
                for (int j = 0; j < N; j++) {
                    double pj = exp(row[j] - mx) / sum;
                    for (int d = 0; d < D; d++) oi[d] += pj * t->v[(((size_t)b * N + j) * KVH + g) * D + d];
                }
                lse[((size_t)b * H + h) * N + i] = mx + log(sum);
            }
        }
    free(S);
}

static int any_nan(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i])) return 1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Forward */

typedef struct { pat p; int B, N, H, KVH, D; } shape;

static const shape fwd_shapes[] = {
    { P_DENSE, 1, 1, 1, 1, 4 },       /* N = 1 */
    { P_DENSE, 2, 13, 2, 2, 8 },
    { P_DENSE, 1, 1, 4, 2, 8 },       /* N = 1 with GQA: every head but 0 of exclusive is empty */
    { P_LOCAL, 1, 17, 4, 4, 8 },
    { P_SPATTN, 2, 33, 4, 4, 8 },
    { P_SPATTN, 1, 64, 8, 2, 16 },    /* GQA 4:1 */
    { P_SPATTN, 1, 31, 4, 1, 8 },     /* multi-query */
    { P_EXCLUSIVE, 2, 19, 4, 2, 8 },  /* empty rows: i < s_h */
    { P_EXCLUSIVE, 1, 3, 4, 4, 4 },   /* N < H: some heads have no interval at all */
    { P_EXCLUSIVE, 1, 1, 4, 4, 4 },
    { P_GAPPED, 1, 23, 4, 2, 8 },
    { P_GAPPED, 1, 5, 4, 4, 4 },      /* w_h / 2 = 0 or 1: empty and one-wide bands */
    { P_CUSTOM, 2, 12, 2, 1, 4 },
    { P_CUSTOM, 1, 1, 2, 2, 4 },
};

static void test_forward_matches_naive(void)
{
    for (size_t c = 0; c < sizeof fwd_shapes / sizeof fwd_shapes[0]; c++) {
        const shape *s = &fwd_shapes[c];
        prob t;
        prob_init(&t, s->p, s->B, s->N, s->H, s->KVH, s->D, 100 + c);
        double *o2 = malloc(t.nq * sizeof(double)), *l2 = malloc(t.nl * sizeof(double));
        int rc = ref_forward(&t.p, t.q, t.k, t.v, t.o, t.lse);
        naive_forward(&t, o2, l2);
        CHECKF(rc == 0, "%s N=%d: ref_forward returned %d", pat_name[s->p], s->N, rc);

        double err_o = 0, err_l = 0;
        int lse_inf_mismatch = 0, empty_rows = 0, o_nonzero_in_empty = 0;
        for (size_t i = 0; i < t.nq; i++) err_o = fmax(err_o, fabs(t.o[i] - o2[i]));
        for (size_t i = 0; i < t.nl; i++) {
            if (isinf(l2[i])) {
                empty_rows++;
                if (!(isinf(t.lse[i]) && t.lse[i] < 0)) lse_inf_mismatch++;
            } else err_l = fmax(err_l, fabs(t.lse[i] - l2[i]));
        }
        /* Empty rows must have O exactly 0. */
        for (int b = 0; b < s->B; b++)
            for (int h = 0; h < s->H; h++)
                for (int i = 0; i < s->N; i++)
                    if (isinf(l2[((size_t)b * s->H + h) * s->N + i]))
                        for (int d = 0; d < s->D; d++)
                            if (t.o[(((size_t)b * s->N + i) * s->H + h) * s->D + d] != 0.0) o_nonzero_in_empty++;

        CHECKF(err_o < 1e-12, "%s B=%d N=%d H=%d KVH=%d D=%d: max |O - naive| = %g", pat_name[s->p], s->B, s->N,
               s->H, s->KVH, s->D, err_o);
        CHECKF(err_l < 1e-12, "%s N=%d: max |LSE - naive| = %g", pat_name[s->p], s->N, err_l);
        CHECKF(lse_inf_mismatch == 0, "%s N=%d: %d empty rows without LSE = -inf", pat_name[s->p], s->N,
               lse_inf_mismatch);
        CHECKF(o_nonzero_in_empty == 0, "%s N=%d: O != 0 in empty rows", pat_name[s->p], s->N);
        CHECKF(!any_nan(t.o, t.nq) && !any_nan(t.lse, t.nl), "%s N=%d: NaN in output", pat_name[s->p], s->N);
        if (s->p == P_EXCLUSIVE || s->p == P_GAPPED)
            CHECKF(empty_rows > 0, "%s N=%d: the case was meant to have empty rows", pat_name[s->p], s->N);
        free(o2); free(l2);
        prob_free(&t);
    }
}

/* The result must not depend on the thread count: tasks own disjoint
 * outputs and each row is summed in a fixed order. */
static void test_thread_count_invariant(void)
{
    prob t;
    prob_init(&t, P_SPATTN, 2, 41, 4, 2, 8, 7);
    double *o1 = malloc(t.nq * sizeof(double)), *l1 = malloc(t.nl * sizeof(double));
    t.p.threads = 1;
    ref_forward(&t.p, t.q, t.k, t.v, o1, l1);
    t.p.threads = 3;
    ref_forward(&t.p, t.q, t.k, t.v, t.o, t.lse);
    CHECK("O identical with 1 and 3 threads", memcmp(o1, t.o, t.nq * sizeof(double)) == 0);
    CHECK("LSE identical with 1 and 3 threads", memcmp(l1, t.lse, t.nl * sizeof(double)) == 0);

    /* backward too */
    double *w = malloc(t.nq * sizeof(double));
    double *dq1 = malloc(t.nq * sizeof(double)), *dk1 = malloc(t.nk * sizeof(double)), *dv1 = malloc(t.nk * sizeof(double));
    double *dq2 = malloc(t.nq * sizeof(double)), *dk2 = malloc(t.nk * sizeof(double)), *dv2 = malloc(t.nk * sizeof(double));
    for (size_t i = 0; i < t.nq; i++) w[i] = sin((double)i);
    t.p.threads = 1;
    ref_backward(&t.p, t.q, t.k, t.v, t.o, t.lse, w, dq1, dk1, dv1);
    t.p.threads = 4;
    ref_backward(&t.p, t.q, t.k, t.v, t.o, t.lse, w, dq2, dk2, dv2);
    CHECK("dQ identical across thread counts", memcmp(dq1, dq2, t.nq * sizeof(double)) == 0);
    CHECK("dK identical across thread counts", memcmp(dk1, dk2, t.nk * sizeof(double)) == 0);
    CHECK("dV identical across thread counts", memcmp(dv1, dv2, t.nk * sizeof(double)) == 0);
    free(w); free(dq1); free(dk1); free(dv1); free(dq2); free(dk2); free(dv2);
    free(o1); free(l1);
    prob_free(&t);
}

static void test_bad_problem(void)
{
    sp_band_list b[3] = { { 0 } };
    ref_problem p = { .B = 1, .N = 4, .H = 3, .KVH = 2, .D = 4, .scale = 0.5, .bands = b, .threads = 1 };
    double x[64] = { 0 }, y[64], z[64];
    CHECK("H not divisible by KVH is refused", ref_forward(&p, x, x, x, y, z) == -1);
    p.KVH = 3;
    p.N = 0;
    CHECK("N = 0 is refused", ref_forward(&p, x, x, x, y, z) == -1);
}

/* ---------------------------------------------------------------------------
 * Backward vs finite differences */

static double loss(prob *t, const double *w, double *o, double *lse)
{
    ref_forward(&t->p, t->q, t->k, t->v, o, lse);
    double L = 0;
    for (size_t i = 0; i < t->nq; i++) L += o[i] * w[i];
    return L;
}

/* Relative L2 error of the analytic gradient g against central differences
 * of the loss with respect to each element of x. */
static double fd_rel_err(prob *t, double *x, size_t n, const double *g, const double *w, double *o, double *lse)
{
    const double eps = 1e-5;
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + eps;
        double lp = loss(t, w, o, lse);
        x[i] = x0 - eps;
        double lm = loss(t, w, o, lse);
        x[i] = x0;
        double fd = (lp - lm) / (2 * eps);
        num += (g[i] - fd) * (g[i] - fd);
        den += fd * fd;
    }
    if (den == 0) return sqrt(num);   /* all-zero gradient: absolute error */
    return sqrt(num / den);
}

static const shape bwd_shapes[] = {
    { P_DENSE, 1, 1, 2, 1, 4 },
    { P_DENSE, 1, 7, 2, 2, 4 },
    { P_SPATTN, 2, 12, 4, 4, 8 },
    { P_SPATTN, 1, 11, 4, 2, 6 },     /* GQA */
    { P_LOCAL, 2, 9, 4, 1, 4 },       /* multi-query */
    { P_EXCLUSIVE, 1, 12, 4, 2, 8 },  /* empty rows */
    { P_GAPPED, 2, 10, 2, 1, 5 },     /* empty rows, odd D */
    { P_CUSTOM, 1, 12, 2, 2, 4 },
};

static void test_backward_finite_differences(void)
{
    for (size_t c = 0; c < sizeof bwd_shapes / sizeof bwd_shapes[0]; c++) {
        const shape s = bwd_shapes[c];
        prob t;
        prob_init(&t, s.p, s.B, s.N, s.H, s.KVH, s.D, 500 + c);
        double *w = malloc(t.nq * sizeof(double));
        double *dq = malloc(t.nq * sizeof(double)), *dk = malloc(t.nk * sizeof(double)), *dv = malloc(t.nk * sizeof(double));
        double *o = malloc(t.nq * sizeof(double)), *lse = malloc(t.nl * sizeof(double));
        rng r;
        rng_seed(&r, 900 + c);
        for (size_t i = 0; i < t.nq; i++) w[i] = rng_normal(&r);
        /* Poison the outputs: every element must be written. */
        for (size_t i = 0; i < t.nq; i++) dq[i] = NAN;
        for (size_t i = 0; i < t.nk; i++) dk[i] = dv[i] = NAN;

        ref_forward(&t.p, t.q, t.k, t.v, t.o, t.lse);
        int rc = ref_backward(&t.p, t.q, t.k, t.v, t.o, t.lse, w, dq, dk, dv);
        CHECKF(rc == 0, "%s: ref_backward returned %d", pat_name[s.p], rc);
        CHECKF(!any_nan(dq, t.nq) && !any_nan(dk, t.nk) && !any_nan(dv, t.nk), "%s N=%d: NaN in gradients",
               pat_name[s.p], s.N);

        /* Empty rows: zero dQ. */
        int bad_empty = 0;
        for (int b = 0; b < s.B; b++)
            for (int h = 0; h < s.H; h++)
                for (int i = 0; i < s.N; i++)
                    if (isinf(t.lse[((size_t)b * s.H + h) * s.N + i]))
                        for (int d = 0; d < s.D; d++)
                            if (dq[(((size_t)b * s.N + i) * s.H + h) * s.D + d] != 0.0) bad_empty++;
        CHECKF(bad_empty == 0, "%s N=%d: dQ != 0 in %d elements of empty rows", pat_name[s.p], s.N, bad_empty);

        t.p.threads = 1;   /* thousands of tiny forwards: threads would only add overhead */
        double eq = fd_rel_err(&t, t.q, t.nq, dq, w, o, lse);
        double ek = fd_rel_err(&t, t.k, t.nk, dk, w, o, lse);
        double ev = fd_rel_err(&t, t.v, t.nk, dv, w, o, lse);
        CHECKF(eq < 1e-6, "%s B=%d N=%d H=%d KVH=%d D=%d: dQ rel err %g", pat_name[s.p], s.B, s.N, s.H, s.KVH, s.D, eq);
        CHECKF(ek < 1e-6, "%s B=%d N=%d H=%d KVH=%d D=%d: dK rel err %g", pat_name[s.p], s.B, s.N, s.H, s.KVH, s.D, ek);
        CHECKF(ev < 1e-6, "%s B=%d N=%d H=%d KVH=%d D=%d: dV rel err %g", pat_name[s.p], s.B, s.N, s.H, s.KVH, s.D, ev);
        free(w); free(dq); free(dk); free(dv); free(o); free(lse);
        prob_free(&t);
    }
}

static const test_case tests[] = {
    { "forward_matches_naive", test_forward_matches_naive },
    { "thread_count_invariant", test_thread_count_invariant },
    { "bad_problem", test_bad_problem },
    { "backward_finite_differences", test_backward_finite_differences },
    { 0, 0 },
};
TEST_MAIN(tests)
