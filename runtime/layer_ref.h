/* A whole attention layer's forward on the CPU in double precision: the
 * reference that `spattn run --layer` checks the GPU against, and what
 * `--layer --device cpu` runs.  Shapes (C order; a row is one token (b, i)):
 *
 *     x  [B, N, d_model]                         Wq [d_model, H*D]
 *     Q = x Wq  [B, N, H*D]   = [B, N, H, D]     Wk [d_model, KVH*D]
 *     K = x Wk  [B, N, KVH*D] = [B, N, KVH, D]   Wv [d_model, KVH*D]
 *     V = x Wv  [B, N, KVH*D]                    Wo [H*D, d_model]
 *     O = band attention(Q, K, V)  (runtime/ref.h)   [B, N, H, D]
 *     y = O Wo  [B, N, d_model]
 *
 * No bias, no normalisation, no rotary embedding: the projections and the
 * attention only, so a layer's time splits into exactly three stages.
 *
 * The GPU keeps Q, K, V and O in the spec's 16-bit dtype between stages;
 * so does this reference: each product is computed in double and rounded
 * to the dtype once (round to nearest even), as the GPU rounds its fp32
 * accumulator once on store.  y itself stays in double: it is the exact
 * answer for the GPU's stored y to be compared with. */
#ifndef SPATTN_LAYER_REF_H
#define SPATTN_LAYER_REF_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/rng.h"

typedef struct {
    int B, N, d_model, H, KVH, D;
    sp_dtype dtype;             /* the storage of Q, K, V and O */
    double scale;               /* softmax scale (spec_scale) */
    const sp_band_list *bands;  /* H entries: head h's intervals at N */
    int threads;                /* worker threads; 0 = number of online CPUs */
} layer_problem;

/* The inputs, as doubles (normally values already rounded to the dtype). */
typedef struct {
    const double *x, *wq, *wk, *wv, *wo;
} layer_params;

/* Wall-clock time of each stage of one layer_ref_forward, in ms. */
typedef struct {
    double qkv_ms, attention_ms, out_proj_ms;
} layer_times;

/* Check the shape: every size >= 1, H a multiple of KVH, bands set, and
 * the token count B*N and every width small enough for int GEMM sizes.
 * Error: SP_EXIT_USAGE naming the offending size. */
int layer_problem_check(const layer_problem *p, sp_err *e);

/* y = a w for `rows` rows: a [rows, in], w [in, out], y [rows, out], in
 * double, threaded over blocks of rows (threads <= 0: all online CPUs; a
 * thread that cannot start only costs speed, the caller runs too).
 * round: 1 rounds every element of y to dtype (what a GPU GEMM with 16-bit
 * output stores). */
void layer_matmul(const double *a, const double *w, size_t rows, int in, int out, int round, sp_dtype dtype,
                  int threads, double *y);

/* The layer's forward: fills y [B, N, d_model]; t (may be NULL) gets each
 * stage's time.  Scratch: Q, K, V and O, allocated here.  Error (-1):
 * SP_EXIT_USAGE from layer_problem_check, SP_EXIT_FAIL out of memory. */
int layer_ref_forward(const layer_problem *p, const layer_params *w, double *y, layer_times *t, sp_err *e);

/* n normals with standard deviation `std` from r, rounded to dtype: bits
 * gets the 16-bit words (for the GPU), val the same values as doubles
 * (for the reference); either may be NULL.  Weights use std =
 * 1/sqrt(fan_in), so every projection keeps its inputs' scale. */
void layer_fill_normal(rng *r, sp_dtype dtype, size_t n, double std, uint16_t *bits, double *val);

#endif
