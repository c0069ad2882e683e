/* One decoding step's problem on the GPU, for the tuner: B sequences whose
 * caches are full (N tokens each, contiguous [B, N, KVH, D]), T new tokens
 * each (q, o [B, T, H, D], lse [B, H, T]), random inputs in nsets copies
 * that timing rotates through (so the L2 cache does not keep a small cache
 * warm between launches), and the float64 CPU reference (ref_decode) of
 * set 0, which every candidate is checked against.  The launches go through
 * runtime/decode.c, as spattn_decode's do.
 *
 * The cache of the benchmark (B = 64, N = 32768, 16 kv heads, d128)
 * is 17 GB: drawing it all on the host would take minutes, and its doubles
 * would not fit.  So the K and V of `pool` distinct random sequences are
 * drawn (every sequence when their doubles fit in GD_POOL_BYTES, else 2),
 * sequence b holds pool sequence b % pool's (copied on the device), and the
 * reference reads them through a block table of one page per sequence.
 * Q is drawn for every sequence, so no two output rows are alike. */
#ifndef SPATTN_GPU_DECODE_H
#define SPATTN_GPU_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/compare.h"
#include "runtime/cu.h"
#include "runtime/decode.h"
#include "runtime/engine.h"

#define GD_MAX_SETS 8
#define GD_POOL_BYTES ((size_t)1 << 30)   /* host doubles of the pool's K and V, past 2 sequences */

typedef struct {
    sp_gpu *g;
    const sp_pattern *pat;
    int B, N, T, H, KVH, D;
    sp_dtype dtype;
    float scale;
    sp_band_list *bands;          /* H heads' bands at N (host; for the splits of a launch) */
    int nsets, pool;
    size_t nq, nk, nl;            /* elements of q (= o), of k (= v), of lse */
    sp_dptr q[GD_MAX_SETS], k[GD_MAX_SETS], v[GD_MAX_SETS];
    sp_dptr o, lse, bandtab, ws;
    size_t ws_bytes;
    double *ref_o, *ref_lse;      /* the reference of set 0: [B, T, H, D], [B, H, T] */
} gpu_decode;

/* Allocate the problem on g, draw its inputs from seed, copy them into
 * nsets sets (nsets <= 0: enough that their K and V exceed twice the L2
 * size, at most GD_MAX_SETS) and compute the reference on `threads` CPU
 * threads (0: all).  1 <= T <= N.  spec and pat must outlive d. */
int gd_create(gpu_decode *d, sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, int B, int N, int T, int nsets,
              uint64_t seed, int threads, sp_err *e);
void gd_destroy(gpu_decode *d);

/* The splits a launch of config c uses here (decode_launch_splits). */
int gd_splits(const gpu_decode *d, const sp_kcfg *c);

/* Decode with kernel k (its config's splits; c->splits 0: the heuristic's)
 * on input set `set`: o, lse.  Queued, not waited. */
int gd_launch(gpu_decode *d, const engine_kernel *k, const sp_kcfg *c, int set, sp_err *e);

/* Poison o and lse (NaN), decode set 0 with k, and compare O and LSE with
 * the reference (cmp_arrays: a NaN anywhere, an element no CTA wrote,
 * counts).  Judge with cmp_pass. */
int gd_check(gpu_decode *d, const engine_kernel *k, const sp_kcfg *c, cmp_result *o, cmp_result *lse, sp_err *e);

/* Median ms of `iters` decodes after `warmup`, rotating the input sets
 * (ga_time_steps). */
int gd_time(gpu_decode *d, const engine_kernel *k, const sp_kcfg *c, int warmup, int iters, double *median_ms,
            sp_err *e);

#endif
