/* cuBLAS through dlopen ("libcublas.so.13", else .so.12, else .so), opened
 * on first use, for the fp32 GPU reference (runtime/ref_gpu.h) and the
 * projections of a whole attention layer (spattn run --layer).  A
 * cublas_open handle runs on the sp_gpu's stream and context, in
 * CUBLAS_PEDANTIC_MATH: true fp32 products, never TF32, whatever
 * NVIDIA_TF32_OVERRIDE says, because a reference must be more precise than
 * what it checks; cublas_open_fast gives one in the default mode, for GEMMs
 * that are timed as part of a model.  Errors: SP_EXIT_GPU,
 *     cuBLAS error CUBLAS_STATUS_EXECUTION_FAILED (...) while <what> */
#ifndef SPATTN_CUBLAS_H
#define SPATTN_CUBLAS_H

#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/cu.h"

typedef struct sp_cublas sp_cublas;

/* Load cuBLAS, create a handle on g's context and stream, set pedantic fp32
 * math.  g must be open (cu_open) and its context current on this thread. */
int cublas_open(sp_gpu *g, sp_cublas **out, sp_err *e);
/* The same, but in cuBLAS's default math mode, for GEMMs that are part of
 * the work being timed (spattn run --layer) rather than a reference: 16-bit
 * GEMMs may use tensor cores, still accumulating in fp32 (reduced-precision
 * split-K reductions are disallowed), and fp32 GEMMs may use TF32 only if
 * NVIDIA_TF32_OVERRIDE asks for it. */
int cublas_open_fast(sp_gpu *g, sp_cublas **out, sp_err *e);
/* Destroy the handle (NULL is fine).  Call before cu_close. */
void cublas_close(sp_cublas *b);

/* Row-major, strided-batched fp32 GEMM: for i in [0, batch)
 *
 *     C_i = alpha * op(A_i) * op(B_i) + beta * C_i
 *
 * with C_i m x n, op(A_i) m x k, op(B_i) k x n; op(X) = X, or X^T when
 * trans_X is 1.  Matrices are row-major: lda, ldb, ldc are elements per
 * row of A, B, C as stored (before op); X_i starts stride_x elements after
 * X_{i-1}.  With beta == 0, C is not read (NaN in it is fine).  Queued on
 * g's stream; returns before the GEMM finishes. */
int cublas_sgemm_rm(sp_cublas *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                    sp_dptr A, int lda, long long stride_a, sp_dptr B, int ldb, long long stride_b,
                    float beta, sp_dptr C, int ldc, long long stride_c, int batch, sp_err *e);

/* Row-major GEMM on 16-bit storage with fp32 accumulation (cublasGemmEx,
 * CUBLAS_COMPUTE_32F):
 *
 *     C = alpha * op(A) * op(B) + beta * C
 *
 * A, B and C all hold dtype (bf16: CUDA_R_16BF, fp16: CUDA_R_16F); the
 * products are summed in fp32 and C is rounded to dtype once, on store.
 * Shapes, lda/ldb/ldc and trans_* as for cublas_sgemm_rm; alpha and beta
 * are fp32.  Open the handle with cublas_open_fast to let cuBLAS use tensor
 * cores (a cublas_open handle is pedantic and may be far slower).  Queued
 * on g's stream; returns before the GEMM finishes. */
int cublas_gemm_ex_rm(sp_cublas *b, sp_dtype dtype, int trans_a, int trans_b, int m, int n, int k, float alpha,
                      sp_dptr A, int lda, sp_dptr B, int ldb, float beta, sp_dptr C, int ldc, sp_err *e);

/* The cuBLAS version in use (cublasGetVersion: 130000 for 13.0.0), 0 if
 * not loaded. */
int cublas_version(const sp_cublas *b);

#endif
