/* One attention layer's forward, timed per stage (the shapes are
 * runtime/layer_ref.h's):
 *
 *     x [B*N, d_model] --(Wq, Wk, Wv: 3 GEMMs)--> Q, K, V --(band attention)--> O --(Wo: GEMM)--> y
 *
 * On the GPU the GEMMs are cuBLAS (cublasGemmEx: 16-bit storage, fp32
 * accumulation) and the attention is the generated kernel of the config
 * config_pick chooses.  A GEMM's [B*N, heads*D] row-major output is exactly
 * the kernel's [B, N, heads, D] layout, so the projections write straight
 * into the attention's inputs and the kernel's O is the output
 * projection's input: no copies, no transposes.  Each stage is timed with
 * CUDA events around it (median over iters layers, after warm-up), then,
 * if asked, the same layer with this engine's dense causal kernel.  On the
 * CPU the float64 reference (layer_ref_forward) runs the same three stages,
 * timed by the clock.  Nothing here prints; `spattn run --layer`
 * (cmd/layer.c) reads the inputs and reports. */
#ifndef SPATTN_LAYER_H
#define SPATTN_LAYER_H

#include <stdint.h>

#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/cu.h"
#include "runtime/layer_ref.h"

enum { LAYER_WQ, LAYER_WK, LAYER_WV, LAYER_WO, LAYER_NW };

/* Median times of one layer's stages, ms; layer is the median of whole
 * layers (not the sum of the stages' medians). */
typedef struct {
    double qkv, attn, out, layer;
} layer_stage_ms;

/* A GPU layer run: shape, 16-bit inputs in the spec's dtype, config choice. */
typedef struct {
    const sp_spec *spec;
    const sp_pattern *pattern;                /* the layer's pattern */
    int B, N, d_model;
    const uint16_t *x16;                      /* [B*N, d_model] */
    const uint16_t *w16[LAYER_NW];            /* wq, wk, wv [d_model, heads*D or kv_heads*D]; wo [heads*D, d_model] */
    const char *tile, *db_path;               /* config_pick's: a tile, else the database, else the heuristic */
    int iters;                                /* timed layers */
    int with_dense;                           /* also time the layer with the dense causal kernel */
} layer_gpu_job;

typedef struct {
    char kernel[160];                         /* the attention kernel's name */
    char config_source[160];                  /* "tuned (...)", "heuristic" or "--tile" */
    layer_stage_ms band, dense;               /* dense: when dense_ran */
    int dense_ran;
} layer_gpu_result;

/* Run j on g (open): one layer on NaN-poisoned outputs, whose y [B*N,
 * d_model] comes back as floats into y, then the timed layers. */
int layer_gpu_run(sp_gpu *g, const layer_gpu_job *j, float *y, layer_gpu_result *r, sp_err *e);

/* The float64 CPU layer iters times: y from the run, median stage times. */
int layer_cpu_time(const layer_problem *p, const layer_params *w, int iters, double *y, layer_stage_ms *ms,
                   sp_err *e);

#endif
