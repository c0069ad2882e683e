/* The CPU layer forward (see layer_ref.h).  The GEMMs are plain row-times-
 * matrix loops in double, in i-k-j order so the inner loop runs along a
 * row of w and of y (contiguous, vectorisable); rows are handed out to
 * threads in blocks through an atomic counter, like runtime/ref.c's pool. */
#include "runtime/layer_ref.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "runtime/ref.h"

int layer_problem_check(const layer_problem *p, sp_err *e)
{
    if (p->B < 1 || p->N < 1 || p->d_model < 1 || p->H < 1 || p->KVH < 1 || p->D < 1)
        return sp_fail(e, SP_EXIT_USAGE, "layer sizes must be >= 1 (B=%d N=%d d_model=%d H=%d KVH=%d D=%d)", p->B,
                       p->N, p->d_model, p->H, p->KVH, p->D);
    if (p->H % p->KVH)
        return sp_fail(e, SP_EXIT_USAGE, "heads %d is not a multiple of kv_heads %d", p->H, p->KVH);
    if (!p->bands) return sp_fail(e, SP_EXIT_USAGE, "internal: layer problem without bands");
    /* GEMM sizes are ints (cuBLAS's m, n, k and leading dimensions). */
    if ((int64_t)p->B * p->N > INT_MAX)
        return sp_fail(e, SP_EXIT_USAGE, "batch %d x seq_len %d tokens is more than a GEMM can take", p->B, p->N);
    if ((int64_t)p->H * p->D > INT_MAX)
        return sp_fail(e, SP_EXIT_USAGE, "heads x head_dim %lld is too large", (long long)p->H * p->D);
    return 0;
}

/* ---------------------------------------------------------------------------
 * The GEMM */

#define ROWS_PER_TASK 8

typedef struct {
    const double *a, *w;
    double *y;
    size_t rows;
    int in, out, round;
    sp_dtype dtype;
    atomic_size_t next;     /* first row of the next block to hand out */
} gemm_job;

static void gemm_rows(const gemm_job *j, size_t r0, size_t r1)
{
    size_t in = (size_t)j->in, out = (size_t)j->out;
    for (size_t r = r0; r < r1; r++) {
        const double *ar = j->a + r * in;
        double *yr = j->y + r * out;
        for (size_t c = 0; c < out; c++) yr[c] = 0.0;
        for (size_t k = 0; k < in; k++) {
            double s = ar[k];
            const double *wk = j->w + k * out;
            for (size_t c = 0; c < out; c++) yr[c] += s * wk[c];
        }
        if (j->round)
            for (size_t c = 0; c < out; c++) yr[c] = rng_round_dtype(j->dtype, yr[c], NULL);
    }
}

static void *gemm_worker(void *arg)
{
    gemm_job *j = arg;
    for (;;) {
        size_t r0 = atomic_fetch_add(&j->next, ROWS_PER_TASK);
        if (r0 >= j->rows) break;
        gemm_rows(j, r0, r0 + ROWS_PER_TASK < j->rows ? r0 + ROWS_PER_TASK : j->rows);
    }
    return NULL;
}

void layer_matmul(const double *a, const double *w, size_t rows, int in, int out, int round, sp_dtype dtype,
                  int threads, double *y)
{
    gemm_job j = { .a = a, .w = w, .y = y, .rows = rows, .in = in, .out = out, .round = round, .dtype = dtype };
    atomic_init(&j.next, 0);
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    size_t tasks = (rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    if ((size_t)threads > tasks) threads = (int)(tasks ? tasks : 1);
    if (threads > 256) threads = 256;
    pthread_t tid[256];
    int started = 0;
    for (int t = 1; t < threads; t++) {
        if (pthread_create(&tid[started], NULL, gemm_worker, &j) != 0) break;
        started++;
    }
    gemm_worker(&j);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
}

/* ---------------------------------------------------------------------------
 * The layer */

int layer_ref_forward(const layer_problem *p, const layer_params *w, double *y, layer_times *t, sp_err *e)
{
    if (layer_problem_check(p, e)) return -1;
    size_t tokens = (size_t)p->B * (size_t)p->N;
    int qw = p->H * p->D, kw = p->KVH * p->D;     /* row widths of Q (and O), of K and V */
    double *q = malloc(tokens * (size_t)qw * sizeof *q);
    double *k = malloc(tokens * (size_t)kw * sizeof *k);
    double *v = malloc(tokens * (size_t)kw * sizeof *v);
    double *o = malloc(tokens * (size_t)qw * sizeof *o);
    double *lse = malloc((size_t)p->B * (size_t)p->H * (size_t)p->N * sizeof *lse);
    layer_times tt = { 0, 0, 0 };
    int rc = -1;
    if (!q || !k || !v || !o || !lse) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory for the layer reference (%zu tokens x %d)", tokens, qw + 2 * kw);
        goto done;
    }

    double t0 = sp_now();
    layer_matmul(w->x, w->wq, tokens, p->d_model, qw, 1, p->dtype, p->threads, q);
    layer_matmul(w->x, w->wk, tokens, p->d_model, kw, 1, p->dtype, p->threads, k);
    layer_matmul(w->x, w->wv, tokens, p->d_model, kw, 1, p->dtype, p->threads, v);
    double t1 = sp_now();
    ref_problem rp = { .B = p->B, .N = p->N, .H = p->H, .KVH = p->KVH, .D = p->D, .scale = p->scale,
                       .bands = p->bands, .threads = p->threads };
    if (ref_forward(&rp, q, k, v, o, lse)) {
        sp_fail(e, SP_EXIT_FAIL, "the CPU attention reference could not run (out of memory)");
        goto done;
    }
    /* The attention kernel stores O in the dtype, and the output projection reads that. */
    for (size_t i = 0; i < tokens * (size_t)qw; i++) o[i] = rng_round_dtype(p->dtype, o[i], NULL);
    double t2 = sp_now();
    layer_matmul(o, w->wo, tokens, qw, p->d_model, 0, p->dtype, p->threads, y);
    double t3 = sp_now();
    tt.qkv_ms = (t1 - t0) * 1e3;
    tt.attention_ms = (t2 - t1) * 1e3;
    tt.out_proj_ms = (t3 - t2) * 1e3;
    rc = 0;
done:
    if (t) *t = tt;
    free(q); free(k); free(v); free(o); free(lse);
    return rc;
}

void layer_fill_normal(rng *r, sp_dtype dtype, size_t n, double std, uint16_t *bits, double *val)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t b;
        double x = rng_round_dtype(dtype, std * rng_normal(r), &b);
        if (bits) bits[i] = b;
        if (val) val[i] = x;
    }
}
