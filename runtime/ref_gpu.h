/* The GPU reference for shapes too large for the CPU one (DESIGN.md section
 * 4): attention forward and backward in fp32, built from cuBLAS SGEMMs
 * (pedantic fp32, no TF32) with small helper kernels between them (input
 * conversion, band-masked softmax, delta, dS), plus a GPU comparison of an
 * output tensor with a reference.
 *
 * Memory stays bounded: one (batch, head) at a time, query rows in chunks
 * of R rows, and for each chunk only the keys its head's bands can reach
 * (j in [r0 - max_hi + 1, r0 + R - 1 - min_lo]).  S/P and dP scratch are at
 * most R x N fp32 each, R = 64 Mi / N (so 2 x 256 MiB at N = 32768).
 *
 * Per (b, h) and chunk, with scale s and g = h / (H / KVH):
 *     S   = s * Q K^T                    (SGEMM)
 *     P   = masked softmax of S, LSE     (kernel; masked entries 0)
 *     O   = P V                          (SGEMM)
 *   backward, from dO:
 *     delta = rowsum(dO * O)             (kernel)
 *     dP  = dO V^T                       (SGEMM)
 *     dS  = P * (dP - delta)             (kernel)
 *     dQ  = s * dS K                     (SGEMM)
 *     dK += s * dS^T Q,  dV += P^T dO    (SGEMMs, beta 1: sums the query
 *                                         heads that share kv head g)
 * Rows with no allowed key: O = 0, LSE = -inf, zero gradient, never NaN.
 *
 * Band table: the layout of abi/bandtab.h, on the device:
 *     int32 table[H][1 + 2 * max_intervals]
 *     table[h][0] = count, table[h][1 + 2t] = lo_t, table[h][2 + 2t] = hi_t
 * (distances d = i - j, half-open [lo, hi), ascending, merged). */
#ifndef SPATTN_REF_GPU_H
#define SPATTN_REF_GPU_H

#include <stdint.h>

#include "common/err.h"
#include "runtime/compare.h"
#include "runtime/cu.h"

typedef enum { REFGPU_BF16 = 0, REFGPU_FP16 = 1, REFGPU_FP32 = 2 } refgpu_dtype;

/* A strided device tensor viewed as 4-D [b][n][h][d] (or any 4-D order the
 * caller picks, as long as shape and strides agree).  Strides in elements. */
typedef struct {
    sp_dptr ptr;
    refgpu_dtype dtype;
    int64_t stride[4];
} refgpu_view;

/* Default layout [B, N, heads, D]: strides (N*heads*D, heads*D, D, 1). */
refgpu_view refgpu_view_bnhd(sp_dptr p, refgpu_dtype t, int64_t N, int64_t heads, int64_t D);
/* PyTorch SDPA layout [B, heads, N, D], still indexed as [b][n][h][d]:
 * strides (heads*N*D, D, N*D, 1). */
refgpu_view refgpu_view_bhnd(sp_dptr p, refgpu_dtype t, int64_t N, int64_t heads, int64_t D);
/* REFGPU_BF16 or REFGPU_FP16 for a spec dtype (0 = SP_BF16, 1 = SP_FP16). */
refgpu_dtype refgpu_dtype_of(int sp_dtype_value);

typedef struct refgpu refgpu;

/* Compile (through the kernel cache) and load the helper kernels, open
 * cuBLAS on g.  g must stay open until refgpu_close. */
int refgpu_open(sp_gpu *g, refgpu **out, sp_err *e);
void refgpu_close(refgpu *r);

typedef struct {
    int B, N, H, KVH, D;          /* H % KVH == 0; N >= 1 */
    float scale;                  /* softmax scale (spec_scale) */
    sp_dptr bands;                /* device band table, layout above */
    int max_intervals;            /* its row stride is 1 + 2 * max_intervals */
    /* Inputs as [b][n][head][d] views, bf16 / fp16 / fp32, any strides
     * (d need not be contiguous, but is fastest so). */
    refgpu_view q;                /* [B, N, H, D] */
    refgpu_view k, v;             /* [B, N, KVH, D] */
    refgpu_view dout;             /* [B, N, H, D]; backward only */
} refgpu_problem;

/* Forward.  o: fp32 [B, N, H, D] contiguous; lse: fp32 [B, H, N].  Either
 * may be 0 (not wanted).  Returns once the results are complete. */
int refgpu_forward(refgpu *r, const refgpu_problem *p, sp_dptr o, sp_dptr lse, sp_err *e);
/* Backward from p->dout (recomputes the forward itself).  dq: fp32
 * [B, N, H, D]; dk, dv: fp32 [B, N, KVH, D], summed over the H / KVH query
 * heads of each kv head.  All three required.  Returns once complete. */
int refgpu_backward(refgpu *r, const refgpu_problem *p, sp_dptr dq, sp_dptr dk, sp_dptr dv, sp_err *e);

/* Compare `out` with `ref` over a 4-D shape, on the GPU, with the same
 * rules as runtime/compare.h's cmp_add: NaN on either side counts in
 * nan_count; infinities must match exactly (sign included) or count in
 * inf_mismatch, and matched ones are left out of the norms; rel_l2 =
 * ||out - ref|| / ||ref|| over the finite pairs, max_abs likewise.  Judge
 * the result with cmp_pass. */
int refgpu_compare(refgpu *r, const int64_t shape[4], const refgpu_view *out, const refgpu_view *ref,
                   cmp_result *res, sp_err *e);

/* Cap the query rows per chunk (0: only the memory bound).  For tests: a
 * small cap makes a small problem exercise the chunk loop. */
void refgpu_set_chunk_rows(refgpu *r, int rows);
/* The helper kernels' CUDA source (compiles without a GPU; for tests). */
const char *refgpu_source(void);

/* Host-side size check: the scratch refgpu_forward/backward would allocate
 * for N (bytes), so a caller can warn before running out of memory. */
size_t refgpu_scratch_bytes(int N, int D, int backward);

#endif
