/* cuBLAS through dlopen.  cublas_api.h gives the types and prototypes; the
 * symbols are looked up by their exported names (the _v2 ones that
 * cublas_v2.h maps the plain names to). */
#include "runtime/cublas.h"

#include <cublas_api.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLAS_FUNCS(X)                                                                       \
    X(cublasCreate_v2) X(cublasDestroy_v2) X(cublasSetStream_v2) X(cublasSetMathMode)        \
    X(cublasGetVersion_v2) X(cublasSgemmStridedBatched) X(cublasGemmEx)

static struct {
#define BLAS_MEMBER(f) __typeof__(f) *f;
    BLAS_FUNCS(BLAS_MEMBER)
#undef BLAS_MEMBER
    /* Optional (cuBLAS 11.4+): names for error messages. */
    const char *(*status_name)(cublasStatus_t);
    const char *(*status_string)(cublasStatus_t);
} B;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static sp_err load_err;

struct sp_cublas {
    cublasHandle_t h;
    int version;
};

static int blas_fail(sp_err *e, cublasStatus_t s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int blas_fail(sp_err *e, cublasStatus_t s, const char *fmt, ...)
{
    char what[512], code[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *name = B.status_name ? B.status_name(s) : NULL;
    const char *desc = B.status_string ? B.status_string(s) : NULL;
    if (!name) { snprintf(code, sizeof code, "status %d", (int)s); name = code; }
    return sp_fail(e, SP_EXIT_GPU, "cuBLAS error %s (%s) while %s", name, desc ? desc : "no description", what);
}

static void load_cublas(void)
{
    static const char *names[] = { "libcublas.so.13", "libcublas.so.12", "libcublas.so" };
    void *h = NULL;
    char first_err[300] = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !h; i++) {
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!h && !first_err[0]) {
            const char *why = dlerror();
            snprintf(first_err, sizeof first_err, "%s", why ? why : "dlopen failed");
        }
    }
    if (!h) {
        sp_fail(&load_err, SP_EXIT_GPU, "cuBLAS not found (libcublas.so.13, .so.12, .so): %s", first_err);
        sp_hint(&load_err, "the GPU reference needs cuBLAS from the CUDA toolkit on the loader path (LD_LIBRARY_PATH)");
        return;
    }
    struct { const char *name; void *slot; } syms[] = {
#define BLAS_ENTRY(f) { #f, &B.f },
        BLAS_FUNCS(BLAS_ENTRY)
#undef BLAS_ENTRY
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(h, syms[i].name);
        if (!p) {
            memset(&B, 0, sizeof B);
            sp_fail(&load_err, SP_EXIT_GPU, "the cuBLAS library lacks %s", syms[i].name);
            return;
        }
        memcpy(syms[i].slot, &p, sizeof p);
    }
    void *p = dlsym(h, "cublasGetStatusName");
    memcpy(&B.status_name, &p, sizeof p);
    p = dlsym(h, "cublasGetStatusString");
    memcpy(&B.status_string, &p, sizeof p);
}

/* A handle on g's stream in math mode `pedantic` (1: CUBLAS_PEDANTIC_MATH,
 * for references; 0: the default mode without reduced-precision
 * reductions, for timed work). */
static int open_handle(sp_gpu *g, int pedantic, sp_cublas **out, sp_err *e)
{
    *out = NULL;
    pthread_once(&load_once, load_cublas);
    if (load_err.code) {
        if (e) *e = load_err;
        return -1;
    }
    sp_cublas *b = calloc(1, sizeof *b);
    if (!b) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    cublasStatus_t s = B.cublasCreate_v2(&b->h);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return blas_fail(e, s, "creating a cuBLAS handle on %s", g->name);
    }
    /* CUstream and cudaStream_t are the same type (struct CUstream_st *). */
    s = B.cublasSetStream_v2(b->h, (cudaStream_t)g->stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
        blas_fail(e, s, "setting the cuBLAS stream");
        cublas_close(b);
        return -1;
    }
    if (pedantic) {
        /* Pedantic: no TF32, no reduced-precision shortcuts.  Older cuBLAS
         * without it defaults to true fp32 for SGEMM anyway. */
        s = B.cublasSetMathMode(b->h, CUBLAS_PEDANTIC_MATH);
        if (s != CUBLAS_STATUS_SUCCESS) s = B.cublasSetMathMode(b->h, CUBLAS_DEFAULT_MATH);
    } else {
        /* Tensor cores allowed; split-K partial sums stay fp32 too. */
        s = B.cublasSetMathMode(b->h, (cublasMath_t)(CUBLAS_DEFAULT_MATH |
                                                    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
        if (s != CUBLAS_STATUS_SUCCESS) s = B.cublasSetMathMode(b->h, CUBLAS_DEFAULT_MATH);
    }
    if (s != CUBLAS_STATUS_SUCCESS) {
        blas_fail(e, s, "setting the cuBLAS math mode");
        cublas_close(b);
        return -1;
    }
    if (B.cublasGetVersion_v2(b->h, &b->version) != CUBLAS_STATUS_SUCCESS) b->version = 0;
    *out = b;
    return 0;
}

int cublas_open(sp_gpu *g, sp_cublas **out, sp_err *e)
{
    return open_handle(g, 1, out, e);
}

int cublas_open_fast(sp_gpu *g, sp_cublas **out, sp_err *e)
{
    return open_handle(g, 0, out, e);
}

void cublas_close(sp_cublas *b)
{
    if (!b) return;
    if (b->h) B.cublasDestroy_v2(b->h);
    free(b);
}

int cublas_version(const sp_cublas *b)
{
    return b ? b->version : 0;
}

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
 * row-major matrix read column-major is its transpose: so swap the operands
 * (and m with n) and keep each one's transpose flag. */
int cublas_sgemm_rm(sp_cublas *b, int trans_a, int trans_b, int m, int n, int k, float alpha,
                    sp_dptr A, int lda, long long stride_a, sp_dptr Bm, int ldb, long long stride_b,
                    float beta, sp_dptr C, int ldc, long long stride_c, int batch, sp_err *e)
{
    if (m <= 0 || n <= 0 || batch <= 0) return 0;
    cublasStatus_t s = B.cublasSgemmStridedBatched(
        b->h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
        (const float *)(uintptr_t)Bm, ldb, stride_b, (const float *)(uintptr_t)A, lda, stride_a, &beta,
        (float *)(uintptr_t)C, ldc, stride_c, batch);
    if (s != CUBLAS_STATUS_SUCCESS)
        return blas_fail(e, s, "multiplying %dx%d by %dx%d matrices (SGEMM, batch %d)", m, k, k, n, batch);
    return 0;
}

/* The same operand swap as cublas_sgemm_rm. */
int cublas_gemm_ex_rm(sp_cublas *b, sp_dtype dtype, int trans_a, int trans_b, int m, int n, int k, float alpha,
                      sp_dptr A, int lda, sp_dptr Bm, int ldb, float beta, sp_dptr C, int ldc, sp_err *e)
{
    if (m <= 0 || n <= 0) return 0;
    cudaDataType t = dtype == SP_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cublasStatus_t s = B.cublasGemmEx(b->h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                      n, m, k, &alpha, (const void *)(uintptr_t)Bm, t, ldb,
                                      (const void *)(uintptr_t)A, t, lda, &beta, (void *)(uintptr_t)C, t, ldc,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS)
        return blas_fail(e, s, "multiplying %dx%d by %dx%d %s matrices (GemmEx, fp32 accumulation)", m, k, k, n,
                         sp_dtype_name(dtype));
    return 0;
}
