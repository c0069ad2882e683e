/* The CPU reference attention, in double precision (DESIGN.md section 1).
 *
 * Written to be read: each pass states its shapes at the top, the loops
 * follow the formulas, and the only trick is the one the kernels also use:
 * a row visits only the keys its head's bands allow.  For query row i and a
 * distance interval [lo, hi) the allowed keys are
 *     j in [i - hi + 1, i - lo], clipped to [0, i],
 * so the cost is proportional to the allowed pairs, not N^2.
 *
 * Work is split into tasks that write disjoint outputs, handed out to a few
 * pthreads through an atomic counter:
 *   forward:  one task per (batch, query head): it writes o[b,:,h,:] and lse[b,h,:];
 *   backward: one task per (batch, kv head): it owns dk[b,:,g,:] and dv[b,:,g,:]
 *             and handles every query head sharing kv head g, so it also owns
 *             dq[b,:,h,:] for those heads.  No two tasks touch the same element,
 *             so no locks and the result does not depend on the thread count. */
#include "runtime/ref.h"

#include "codegen/bands.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------
 * Small helpers */

/* The first and last allowed key (inclusive) of query row i for one interval;
 * returns 0 if the interval allows no key for this row. */
static int key_range(const sp_interval *iv, int64_t i, int64_t *j0, int64_t *j1)
{
    int64_t a = i - iv->hi + 1, b = i - iv->lo;
    if (a < 0) a = 0;
    if (b > i) b = i;   /* causal: never a key after the query */
    if (a > b) return 0;
    *j0 = a;
    *j1 = b;
    return 1;
}

/* Dot product with four partial sums: the order is fixed (so results are
 * reproducible) but the additions are independent, about 3x faster than one
 * running sum, which the OLMoE-size CPU run needs. */
static double dot(const double *x, const double *y, int n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int d = 0;
    for (; d + 4 <= n; d += 4) {
        s0 += x[d] * y[d];
        s1 += x[d + 1] * y[d + 1];
        s2 += x[d + 2] * y[d + 2];
        s3 += x[d + 3] * y[d + 3];
    }
    for (; d < n; d++) s0 += x[d] * y[d];
    return (s0 + s1) + (s2 + s3);
}

/* y += a * x */
static void axpy(double *y, double a, const double *x, int n)
{
    for (int d = 0; d < n; d++) y[d] += a * x[d];
}

static int problem_ok(const ref_problem *p)
{
    return p && p->B >= 1 && p->N >= 1 && p->H >= 1 && p->KVH >= 1 && p->D >= 1 && p->H % p->KVH == 0 &&
           p->bands;
}

/* ---------------------------------------------------------------------------
 * A tiny task pool: run(task, scratch) for task = 0..ntasks-1 on up to
 * `threads` threads (the caller is one of them). */

typedef struct pool pool;
typedef void (*task_fn)(const pool *pl, int task, double *scratch);

struct pool {
    const ref_problem *p;
    const ref_decode_problem *dp;   /* ref_decode only */
    const double *q, *k, *v, *o, *lse, *dout;
    double *o_out, *lse_out, *dq, *dk, *dv;
    task_fn fn;
    int ntasks;
    size_t scratch_len;     /* doubles of scratch per worker */
    atomic_int next;        /* next task to hand out */
    atomic_int failed;      /* a worker could not allocate its scratch */
};

static void *worker(void *arg)
{
    pool *pl = arg;
    double *scratch = malloc(pl->scratch_len * sizeof *scratch);
    if (!scratch) {
        atomic_store(&pl->failed, 1);
        return NULL;
    }
    for (;;) {
        int t = atomic_fetch_add(&pl->next, 1);
        if (t >= pl->ntasks) break;
        pl->fn(pl, t, scratch);
    }
    free(scratch);
    return NULL;
}

static int pool_run(pool *pl)
{
    int threads = pl->p->threads;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > pl->ntasks) threads = pl->ntasks;
    if (threads > 256) threads = 256;
    atomic_store(&pl->next, 0);
    atomic_store(&pl->failed, 0);

    /* A thread that cannot start is not an error: the others (and this one)
     * simply take its tasks. */
    pthread_t tid[256];
    int started = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tid[started], NULL, worker, pl) != 0) break;
        started++;
    }
    worker(pl);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    /* A worker that could not allocate took no task; the others drained the
     * queue.  Only if every worker failed is work missing. */
    if (atomic_load(&pl->failed) && atomic_load(&pl->next) < pl->ntasks) return -1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Forward
 *
 * q is (B,N,H,D), k and v are (B,N,KVH,D); o is (B,N,H,D), lse is (B,H,N).
 * Task t = (b, h).  Scratch: N scores of the current row, then D doubles
 * for the output accumulator. */

/* Where a sequence's key and value rows are: row j of one (batch, kv head)
 * at k + j * row_stride (contiguous), or, paged, row j % page_size of page
 * table[j / page_size], pages page_stride apart.  The forward's rows are
 * contiguous; a decode cache may be either. */
typedef struct {
    const double *k, *v;            /* row 0 (contiguous) or page 0 (paged), at the kv head */
    size_t row_stride, page_stride;
    const int32_t *table;           /* NULL: contiguous */
    int page_size;
} kv_rows;

static size_t kv_offset(const kv_rows *c, int64_t j)
{
    if (!c->table) return (size_t)j * c->row_stride;
    return (size_t)c->table[j / c->page_size] * c->page_stride + (size_t)(j % c->page_size) * c->row_stride;
}

/* One query row: position i, its head's intervals bl, its keys in kv.  The
 * forward and the decode both call this, so a decode row is bitwise the
 * forward's row at the same position and bands.  Scratch: score (one per
 * allowed key) and acc (D). */
static void attend_row(const double *qi, const kv_rows *kv, const sp_band_list *bl, int64_t i, double scale, int D,
                       double *score, double *acc, double *oi, double *lse)
{
    /* Pass 1: scores of the allowed keys and their maximum.  Intervals
     * are visited from the last (largest distance, smallest j) so that j
     * runs upward; the same order is used in pass 2. */
    int64_t n = 0;
    double mx = -INFINITY;
    for (int r = bl->n - 1; r >= 0; r--) {
        int64_t j0, j1;
        if (!key_range(&bl->iv[r], i, &j0, &j1)) continue;
        for (int64_t j = j0; j <= j1; j++) {
            double s = scale * dot(qi, kv->k + kv_offset(kv, j), D);
            score[n++] = s;
            if (s > mx) mx = s;
        }
    }
    if (n == 0) {
        /* No allowed key: O = 0 and LSE = -inf (DESIGN.md; FlashAttention
         * would write +inf).  Never exp(-inf - -inf) = NaN. */
        memset(oi, 0, (size_t)D * sizeof *oi);
        *lse = -INFINITY;
        return;
    }

    /* Pass 2: softmax weights (stable: relative to the row max) and the
     * weighted sum of values. */
    double sum = 0;
    memset(acc, 0, (size_t)D * sizeof *acc);
    n = 0;
    for (int r = bl->n - 1; r >= 0; r--) {
        int64_t j0, j1;
        if (!key_range(&bl->iv[r], i, &j0, &j1)) continue;
        for (int64_t j = j0; j <= j1; j++) {
            double e = exp(score[n++] - mx);
            sum += e;
            axpy(acc, e, kv->v + kv_offset(kv, j), D);
        }
    }
    for (int d = 0; d < D; d++) oi[d] = acc[d] / sum;
    *lse = mx + log(sum);
}

/* The forward and the decode: one task per (batch, query head), each with
 * scratch for N scores and D sums (attend_row). */
static int run_rows(const ref_problem *p, const ref_decode_problem *dp, task_fn fn, const double *q, const double *k,
                    const double *v, double *o, double *lse)
{
    pool pl;
    memset(&pl, 0, sizeof pl);
    pl.p = p;
    pl.dp = dp;
    pl.q = q; pl.k = k; pl.v = v;
    pl.o_out = o; pl.lse_out = lse;
    pl.fn = fn;
    pl.ntasks = p->B * p->H;
    pl.scratch_len = (size_t)p->N + (size_t)p->D;
    return pool_run(&pl);
}

static void forward_task(const pool *pl, int task, double *scratch)
{
    const ref_problem *p = pl->p;
    const int N = p->N, H = p->H, KVH = p->KVH, D = p->D;
    const int b = task / H, h = task % H;
    const int g = h / (H / KVH);
    const sp_band_list *bl = &p->bands[h];
    size_t base = ((size_t)b * N * KVH + g) * D;   /* key j of (b, g) at base + j KVH D */
    kv_rows kv = { pl->k + base, pl->v + base, (size_t)KVH * D, 0, NULL, 0 };

    for (int i = 0; i < N; i++) {
        const double *qi = pl->q + (((size_t)b * N + i) * H + h) * D;
        double *oi = pl->o_out + (((size_t)b * N + i) * H + h) * D;
        attend_row(qi, &kv, bl, i, p->scale, D, scratch, scratch + N, oi, &pl->lse_out[((size_t)b * H + h) * N + i]);
    }
}

int ref_forward(const ref_problem *p, const double *q, const double *k, const double *v,
                double *o, double *lse)
{
    if (!problem_ok(p)) return -1;
    return run_rows(p, NULL, forward_task, q, k, v, o, lse);
}

/* ---------------------------------------------------------------------------
 * Backward
 *
 * q, o, dout, dq are (B,N,H,D); k, v, dk, dv are (B,N,KVH,D); lse is (B,H,N).
 * With P = softmax(S) recomputed from lse (P_ij = exp(scale q_i.k_j - lse_i)):
 *     delta_i = sum_d dO_i * O_i           (= sum_j P_ij dP_ij)
 *     dP_ij   = dO_i . v_j
 *     dS_ij   = P_ij (dP_ij - delta_i)
 *     dq_i   += scale dS_ij k_j
 *     dk_j   += scale dS_ij q_i            (summed over the heads of kv head g)
 *     dv_j   += P_ij dO_i
 * Task t = (b, g): every query head h with h / (H/KVH) == g.  No scratch. */

static void backward_task(const pool *pl, int task, double *scratch)
{
    (void)scratch;
    const ref_problem *p = pl->p;
    const int N = p->N, H = p->H, KVH = p->KVH, D = p->D;
    const int group = H / KVH;
    const int b = task / KVH, g = task % KVH;

    for (int j = 0; j < N; j++) {
        memset(pl->dk + (((size_t)b * N + j) * KVH + g) * D, 0, (size_t)D * sizeof(double));
        memset(pl->dv + (((size_t)b * N + j) * KVH + g) * D, 0, (size_t)D * sizeof(double));
    }

    for (int h = g * group; h < (g + 1) * group; h++) {
        const sp_band_list *bl = &p->bands[h];
        for (int i = 0; i < N; i++) {
            size_t qo = (((size_t)b * N + i) * H + h) * D;
            const double *qi = pl->q + qo, *oi = pl->o + qo, *doi = pl->dout + qo;
            double *dqi = pl->dq + qo;
            double lse = pl->lse[((size_t)b * H + h) * N + i];
            memset(dqi, 0, (size_t)D * sizeof *dqi);
            if (isinf(lse) && lse < 0) continue;   /* no allowed key: no gradient */

            double delta = dot(doi, oi, D);
            for (int r = bl->n - 1; r >= 0; r--) {
                int64_t j0, j1;
                if (!key_range(&bl->iv[r], i, &j0, &j1)) continue;
                for (int64_t j = j0; j <= j1; j++) {
                    size_t ko = (((size_t)b * N + j) * KVH + g) * D;
                    const double *kj = pl->k + ko, *vj = pl->v + ko;
                    double pij = exp(p->scale * dot(qi, kj, D) - lse);
                    double dp = dot(doi, vj, D);
                    double ds = pij * (dp - delta);
                    axpy(dqi, p->scale * ds, kj, D);
                    axpy(pl->dk + ko, p->scale * ds, qi, D);
                    axpy(pl->dv + ko, pij, doi, D);
                }
            }
        }
    }
}

int ref_backward(const ref_problem *p, const double *q, const double *k, const double *v,
                 const double *o, const double *lse, const double *dout,
                 double *dq, double *dk, double *dv)
{
    if (!problem_ok(p)) return -1;
    pool pl;
    memset(&pl, 0, sizeof pl);
    pl.p = p;
    pl.q = q; pl.k = k; pl.v = v; pl.o = o; pl.lse = lse; pl.dout = dout;
    pl.dq = dq; pl.dk = dk; pl.dv = dv;
    pl.fn = backward_task;
    pl.ntasks = p->B * p->KVH;
    pl.scratch_len = 1;
    return pool_run(&pl);
}

/* ---------------------------------------------------------------------------
 * Decode from a KV cache
 *
 * q and o are (B,T,H,D), the last T positions of each sequence; k and v are
 * (B,N,KVH,D), or paged (num_pages,page_size,KVH,D) through the block table;
 * lse is (B,H,T).  Sequence b has len tokens (kv_lens[b], else N); row t is
 * position i = len - T + t, with head h's bands at length len (bands_head:
 * the full forward's over len tokens), through attend_row.  Task t = (b, h).
 * Scratch: N scores, then D. */

static void decode_task(const pool *pl, int task, double *scratch)
{
    const ref_decode_problem *dp = pl->dp;
    const int H = dp->H, KVH = dp->KVH, D = dp->D, T = dp->T;
    const int b = task / H, h = task % H;
    const int g = h / (H / KVH);
    const int64_t len = dp->kv_lens ? dp->kv_lens[b] : dp->N;
    sp_band_list bl = { 0 };
    if (len >= 1) bands_head(dp->pattern, H, h, len, &bl);
    kv_rows kv;
    kv.row_stride = (size_t)KVH * D;
    if (dp->block_table) {
        kv.table = dp->block_table + (size_t)b * dp->max_pages;
        kv.page_size = dp->page_size;
        kv.page_stride = (size_t)dp->page_size * KVH * D;
        kv.k = pl->k + (size_t)g * D;
        kv.v = pl->v + (size_t)g * D;
    } else {
        kv.table = NULL;
        kv.page_size = 0;
        kv.page_stride = 0;
        kv.k = pl->k + ((size_t)b * dp->N * KVH + g) * D;
        kv.v = pl->v + ((size_t)b * dp->N * KVH + g) * D;
    }
    for (int t = 0; t < T; t++) {
        const double *qt = pl->q + (((size_t)b * T + t) * H + h) * D;
        double *ot = pl->o_out + (((size_t)b * T + t) * H + h) * D;
        double *lse = &pl->lse_out[((size_t)b * H + h) * T + t];
        int64_t i = len - T + t;
        if (i < 0) {   /* before the sequence's first token: no key */
            memset(ot, 0, (size_t)D * sizeof *ot);
            *lse = -INFINITY;
            continue;
        }
        attend_row(qt, &kv, &bl, i, dp->scale, D, scratch, scratch + dp->N, ot, lse);
    }
}

int ref_decode(const ref_decode_problem *p, const double *q, const double *k, const double *v, double *o, double *lse)
{
    if (!p || p->B < 1 || p->T < 1 || p->N < 1 || p->H < 1 || p->KVH < 1 || p->D < 1 || p->H % p->KVH != 0 ||
        !p->pattern)
        return -1;
    if (p->block_table && (p->page_size < 1 || p->max_pages < 1)) return -1;
    for (int b = 0; p->kv_lens && b < p->B; b++)
        if (p->kv_lens[b] < 0 || p->kv_lens[b] > p->N) return -1;
    ref_problem rp = { p->B, p->N, p->H, p->KVH, p->D, p->scale, NULL, p->threads };
    return run_rows(&rp, p, decode_task, q, k, v, o, lse);
}

/* ---------------------------------------------------------------------------
 * Packed sequences: each one alone, on pointers into the packed arrays.  Only
 * LSE is laid out differently ([H, total] packed, [H, len] per sequence),
 * so it goes through a per-sequence copy. */

/* Every sequence alone: the forward (dout NULL: o_out and lse_out written)
 * or the backward (o and lse read, dq, dk, dv written).  A sequence's LSE goes
 * through ls, [H, len] as ref_forward and ref_backward have it. */
static int packed_each(const ref_problem *p, const sp_packing *pk, const sp_band_list *bands, const double *q,
                       const double *k, const double *v, double *o_out, double *lse_out, const double *o,
                       const double *lse, const double *dout, double *dq, double *dk, double *dv)
{
    double *ls = malloc(((size_t)p->H * (size_t)pk->max_len + 1) * sizeof *ls);
    if (!ls) return -1;
    int rc = 0;
    for (int b = 0; b < pk->n && !rc; b++) {
        if (pk->len[b] == 0) continue;
        ref_problem r = *p;   /* sequence b as a batch of one, with its own bands */
        r.B = 1;
        r.N = (int)pk->len[b];
        r.bands = bands + (size_t)b * p->H;
        const size_t row = (size_t)pk->cu[b], len = (size_t)pk->len[b], T = (size_t)pk->total;
        const size_t qo = row * p->H * p->D, ko = row * p->KVH * p->D;
        if (dout) {
            for (size_t h = 0; h < (size_t)p->H; h++) memcpy(ls + h * len, lse + h * T + row, len * sizeof *ls);
            rc = ref_backward(&r, q + qo, k + ko, v + ko, o + qo, ls, dout + qo, dq + qo, dk + ko, dv + ko);
        } else {
            rc = ref_forward(&r, q + qo, k + ko, v + ko, o_out + qo, ls);
            for (size_t h = 0; h < (size_t)p->H; h++) memcpy(lse_out + h * T + row, ls + h * len, len * sizeof *ls);
        }
    }
    free(ls);
    return rc;
}

int ref_forward_packed(const ref_problem *p, const sp_packing *pk, const sp_band_list *bands, const double *q,
                       const double *k, const double *v, double *o, double *lse)
{
    return packed_each(p, pk, bands, q, k, v, o, lse, NULL, NULL, NULL, NULL, NULL, NULL);
}

int ref_backward_packed(const ref_problem *p, const sp_packing *pk, const sp_band_list *bands, const double *q,
                        const double *k, const double *v, const double *o, const double *lse, const double *dout,
                        double *dq, double *dk, double *dv)
{
    return packed_each(p, pk, bands, q, k, v, NULL, NULL, o, lse, dout, dq, dk, dv);
}
