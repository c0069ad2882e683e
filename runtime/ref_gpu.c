/* The cuBLAS-built fp32 reference; the algorithm is in ref_gpu.h. */
#include "runtime/ref_gpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cublas.h"
#include "runtime/kcache.h"
#include "runtime/nvrtc.h"

/* ---- the helper kernels ---------------------------------------------------------
 *
 * Small fp32 kernels that sit between the GEMMs.  None of them is on a hot
 * path: they are written to be obviously right, not fast.  Compiled once
 * per process through the kernel cache (the source never changes, so after
 * the first run it is a cache hit).  Note nvrtc_compile uses
 * --use_fast_math: expf and logf are the approximate intrinsics, about 1e-6
 * relative, far below the bf16/fp16 bounds this reference checks. */
static const char REF_SRC[] =
"// spattn GPU reference helpers (runtime/ref_gpu.c).\n"
"typedef unsigned short u16;\n"
"typedef unsigned long long u64;\n"
"#define NEG_BIG (-3.402823466e38f)\n"
"\n"
"// Element i of a tensor of dtype t: 0 bf16, 1 fp16, 2 fp32 (refgpu_dtype).\n"
"__device__ __forceinline__ float load_elem(const void *p, long long i, int t)\n"
"{\n"
"    if (t == 0) return __uint_as_float(((unsigned)((const u16 *)p)[i]) << 16);\n"
"    if (t == 1) { float f; asm(\"cvt.f32.f16 %0, %1;\" : \"=f\"(f) : \"h\"(((const u16 *)p)[i])); return f; }\n"
"    return ((const float *)p)[i];\n"
"}\n"
"\n"
"// Is distance d = i - j inside one of the head's intervals?  band points at\n"
"// the head's row of the band table: count, then lo, hi pairs.\n"
"__device__ __forceinline__ bool allowed(const int *band, long long d)\n"
"{\n"
"    int n = band[0];\n"
"    for (int t = 0; t < n; t++)\n"
"        if (d >= band[1 + 2 * t] && d < band[2 + 2 * t]) return true;\n"
"    return false;\n"
"}\n"
"\n"
"// Block-wide reductions; every thread gets the result.  blockDim.x is a\n"
"// multiple of 32.  The first __syncthreads lets the shared slots be reused\n"
"// by the next call.\n"
"__device__ float warp_max(float v) { for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); return v; }\n"
"__device__ float warp_sum(float v) { for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }\n"
"__device__ double warp_sumd(double v) { for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }\n"
"__device__ u64 warp_sumu(u64 v) { for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o); return v; }\n"
"__device__ float block_max(float v)\n"
"{\n"
"    __shared__ float tmp[32];\n"
"    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
"    v = warp_max(v);\n"
"    __syncthreads();\n"
"    if (lane == 0) tmp[warp] = v;\n"
"    __syncthreads();\n"
"    return warp_max(lane < (int)(blockDim.x >> 5) ? tmp[lane] : NEG_BIG);\n"
"}\n"
"__device__ float block_sum(float v)\n"
"{\n"
"    __shared__ float tmp[32];\n"
"    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
"    v = warp_sum(v);\n"
"    __syncthreads();\n"
"    if (lane == 0) tmp[warp] = v;\n"
"    __syncthreads();\n"
"    return warp_sum(lane < (int)(blockDim.x >> 5) ? tmp[lane] : 0.0f);\n"
"}\n"
"\n"
"// dst[n][d] = src[n * sn + d * sd] as fp32, n < rows, d < D: one (batch,\n"
"// head) slice of an input tensor, src already pointing at its first element.\n"
"extern \"C\" __global__ void ref_gather(const void *src, int dtype, long long sn, long long sd,\n"
"                                      int rows, int D, float *dst)\n"
"{\n"
"    long long total = (long long)rows * D;\n"
"    for (long long x = blockIdx.x * (long long)blockDim.x + threadIdx.x; x < total; x += (long long)gridDim.x * blockDim.x) {\n"
"        long long n = x / D, d = x - n * D;\n"
"        dst[x] = load_elem(src, n * sn + d * sd, dtype);\n"
"    }\n"
"}\n"
"\n"
"// Masked softmax of one chunk, in place.  Block r handles query row\n"
"// i = r0 + r; S[r][c] holds scale * q_i . k_j for key j = j0 + c, c < W.\n"
"// Allowed entries become P = exp(s - max) / sum, the others 0.  lse[i]\n"
"// (when lse is not null) = max + log(sum), or -inf when no key is allowed;\n"
"// such a row is all zeros, so it yields O = 0 and no gradient.\n"
"extern \"C\" __global__ void ref_softmax(float *S, int W, int r0, int j0, const int *band, float *lse)\n"
"{\n"
"    long long i = r0 + (long long)blockIdx.x;\n"
"    float *row = S + (long long)blockIdx.x * W;\n"
"    float m = NEG_BIG, any = 0.0f;\n"
"    for (int c = threadIdx.x; c < W; c += blockDim.x)\n"
"        if (allowed(band, i - (j0 + c))) { m = fmaxf(m, row[c]); any = 1.0f; }\n"
"    m = block_max(m);\n"
"    any = block_max(any);\n"
"    if (any == 0.0f) {\n"
"        for (int c = threadIdx.x; c < W; c += blockDim.x) row[c] = 0.0f;\n"
"        if (lse && threadIdx.x == 0) lse[i] = __uint_as_float(0xff800000u);\n"
"        return;\n"
"    }\n"
"    float sum = 0.0f;\n"
"    for (int c = threadIdx.x; c < W; c += blockDim.x)\n"
"        if (allowed(band, i - (j0 + c))) sum += expf(row[c] - m);\n"
"    sum = block_sum(sum);\n"
"    float inv = 1.0f / sum;\n"
"    for (int c = threadIdx.x; c < W; c += blockDim.x)\n"
"        row[c] = allowed(band, i - (j0 + c)) ? expf(row[c] - m) * inv : 0.0f;\n"
"    if (lse && threadIdx.x == 0) lse[i] = m + logf(sum);\n"
"}\n"
"\n"
"// delta[r] = sum_d dO[r][d] * O[r][d]; one warp per row.\n"
"extern \"C\" __global__ void ref_delta(const float *dO, const float *O, int rows, int D, float *delta)\n"
"{\n"
"    int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;\n"
"    if (r >= rows) return;\n"
"    float s = 0.0f;\n"
"    for (int d = lane; d < D; d += 32) s += dO[(long long)r * D + d] * O[(long long)r * D + d];\n"
"    s = warp_sum(s);\n"
"    if (lane == 0) delta[r] = s;\n"
"}\n"
"\n"
"// dS = P * (dP - delta), in place over dP ([rows][W]).\n"
"extern \"C\" __global__ void ref_ds(const float *P, float *dP, const float *delta, int rows, int W)\n"
"{\n"
"    long long total = (long long)rows * W;\n"
"    for (long long x = blockIdx.x * (long long)blockDim.x + threadIdx.x; x < total; x += (long long)gridDim.x * blockDim.x)\n"
"        dP[x] = P[x] * (dP[x] - delta[x / W]);\n"
"}\n"
"\n"
"// Error norms of tensor a against reference b over a 4-D shape, with the\n"
"// rules of runtime/compare.c: NaN on either side -> nan count; infinities\n"
"// must match exactly (else inf mismatch) and are left out of the sums.\n"
"// stats: double diff2, double ref2, u64 nan, u64 inf_mismatch, unsigned\n"
"// max_abs (float bits; max of non-negative floats orders as unsigned).\n"
"__device__ __forceinline__ bool is_nan(float x) { return (__float_as_uint(x) & 0x7fffffffu) > 0x7f800000u; }\n"
"__device__ __forceinline__ bool is_inf(float x) { return (__float_as_uint(x) & 0x7fffffffu) == 0x7f800000u; }\n"
"extern \"C\" __global__ void ref_compare(const void *a, int ta, long long a0, long long a1, long long a2, long long a3,\n"
"                                       const void *b, int tb, long long b0, long long b1, long long b2, long long b3,\n"
"                                       long long n1, long long n2, long long n3, long long total, double *stats)\n"
"{\n"
"    double diff2 = 0.0, ref2 = 0.0;\n"
"    float maxabs = 0.0f;\n"
"    u64 nan = 0, infm = 0;\n"
"    for (long long x = blockIdx.x * (long long)blockDim.x + threadIdx.x; x < total; x += (long long)gridDim.x * blockDim.x) {\n"
"        long long i3 = x % n3, t = x / n3;\n"
"        long long i2 = t % n2; t /= n2;\n"
"        long long i1 = t % n1, i0 = t / n1;\n"
"        float va = load_elem(a, i0 * a0 + i1 * a1 + i2 * a2 + i3 * a3, ta);\n"
"        float vb = load_elem(b, i0 * b0 + i1 * b1 + i2 * b2 + i3 * b3, tb);\n"
"        if (is_nan(va) || is_nan(vb)) { nan++; continue; }\n"
"        if (is_inf(va) || is_inf(vb)) { if (!(is_inf(va) && is_inf(vb) && (va > 0.0f) == (vb > 0.0f))) infm++; continue; }\n"
"        double d = (double)va - (double)vb;\n"
"        diff2 += d * d;\n"
"        ref2 += (double)vb * (double)vb;\n"
"        maxabs = fmaxf(maxabs, (float)fabs(d));\n"
"    }\n"
"    __shared__ double sd[2][32];\n"
"    __shared__ u64 su[2][32];\n"
"    __shared__ float sm[32];\n"
"    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;\n"
"    diff2 = warp_sumd(diff2); ref2 = warp_sumd(ref2); nan = warp_sumu(nan); infm = warp_sumu(infm); maxabs = warp_max(maxabs);\n"
"    if (lane == 0) { sd[0][warp] = diff2; sd[1][warp] = ref2; su[0][warp] = nan; su[1][warp] = infm; sm[warp] = maxabs; }\n"
"    __syncthreads();\n"
"    if (warp != 0) return;\n"
"    diff2 = warp_sumd(lane < nw ? sd[0][lane] : 0.0);\n"
"    ref2 = warp_sumd(lane < nw ? sd[1][lane] : 0.0);\n"
"    nan = warp_sumu(lane < nw ? su[0][lane] : 0ull);\n"
"    infm = warp_sumu(lane < nw ? su[1][lane] : 0ull);\n"
"    maxabs = warp_max(lane < nw ? sm[lane] : 0.0f);\n"
"    if (lane == 0) {\n"
"        atomicAdd(&stats[0], diff2);\n"
"        atomicAdd(&stats[1], ref2);\n"
"        atomicAdd((u64 *)&stats[2], nan);\n"
"        atomicAdd((u64 *)&stats[3], infm);\n"
"        atomicMax((unsigned *)&stats[4], __float_as_uint(maxabs));\n"
"    }\n"
"}\n";

enum { K_GATHER, K_SOFTMAX, K_DELTA, K_DS, K_COMPARE, K_COUNT };
static const char *const kernel_names[K_COUNT] = { "ref_gather", "ref_softmax", "ref_delta", "ref_ds", "ref_compare" };

struct refgpu {
    sp_gpu *g;
    sp_cublas *blas;
    CUmodule mod;
    CUfunction fn[K_COUNT];
    sp_dptr stats;           /* 5 x 8 bytes for ref_compare */
    int max_rows;            /* chunk limit set by refgpu_set_chunk_rows; 0 = by memory */
};

#define THREADS 256
#define SCRATCH_FLOATS ((size_t)64 << 20)   /* per R x N buffer: 256 MiB */

/* ---- small helpers ---------------------------------------------------------------- */

refgpu_view refgpu_view_bnhd(sp_dptr p, refgpu_dtype t, int64_t N, int64_t heads, int64_t D)
{
    refgpu_view v = { p, t, { N * heads * D, heads * D, D, 1 } };
    return v;
}

refgpu_view refgpu_view_bhnd(sp_dptr p, refgpu_dtype t, int64_t N, int64_t heads, int64_t D)
{
    refgpu_view v = { p, t, { heads * N * D, D, N * D, 1 } };
    return v;
}

refgpu_dtype refgpu_dtype_of(int sp_dtype_value)
{
    return sp_dtype_value == 1 ? REFGPU_FP16 : REFGPU_BF16;
}

static size_t dtype_bytes(refgpu_dtype t) { return t == REFGPU_FP32 ? 4 : 2; }

/* Query rows per chunk: R x N floats stay within SCRATCH_FLOATS. */
static int chunk_rows(int N, int max_rows)
{
    size_t r = SCRATCH_FLOATS / (size_t)N;
    if (r > (size_t)N) r = (size_t)N;
    if (max_rows > 0 && r > (size_t)max_rows) r = (size_t)max_rows;
    return r < 1 ? 1 : (int)r;
}

void refgpu_set_chunk_rows(refgpu *r, int rows)
{
    r->max_rows = rows > 0 ? rows : 0;
}

const char *refgpu_source(void)
{
    return REF_SRC;
}

size_t refgpu_scratch_bytes(int N, int D, int backward)
{
    size_t R = (size_t)chunk_rows(N, 0), n = (size_t)N, d = (size_t)D;
    size_t floats = 3 * n * d + R * n;                      /* Q, K, V slices; S/P */
    if (backward) floats += n * d + R * n + R * d + R;      /* dO slice; dP/dS; O chunk; delta */
    return floats * sizeof(float);
}

static unsigned grid_for(long long total)
{
    long long blocks = (total + THREADS - 1) / THREADS;
    if (blocks > 4096) blocks = 4096;   /* grid-stride loops cover the rest */
    return blocks < 1 ? 1 : (unsigned)blocks;
}

/* ---- open / close ------------------------------------------------------------------ */

int refgpu_open(sp_gpu *g, refgpu **out, sp_err *e)
{
    *out = NULL;
    refgpu *r = calloc(1, sizeof *r);
    if (!r) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    r->g = g;
    char arch[32];
    nvrtc_arch_for_sm(g->sm, arch, sizeof arch);
    sp_compiled c;
    if (kcache_get(REF_SRC, arch, g->driver_version, "spattn_ref_helpers", &c, NULL, e)) {
        nvrtc_compiled_free(&c);
        free(r);
        return -1;
    }
    int rc = cu_module_load(g, c.cubin, c.len, &r->mod, e);
    nvrtc_compiled_free(&c);
    if (rc) { free(r); return -1; }
    for (int k = 0; k < K_COUNT; k++)
        if (cu_function(r->mod, kernel_names[k], &r->fn[k], e)) goto fail;
    if (cu_malloc(g, 64, &r->stats, e)) goto fail;
    if (cublas_open(g, &r->blas, e)) goto fail;
    *out = r;
    return 0;
fail:
    refgpu_close(r);
    return -1;
}

void refgpu_close(refgpu *r)
{
    if (!r) return;
    cublas_close(r->blas);
    cu_free(r->g, r->stats);
    cu_module_unload(r->g, r->mod);
    free(r);
}

/* ---- the pieces of one chunk --------------------------------------------------------- */

/* Gather the (b, head) slice of view v into an fp32 [N][D] buffer. */
static int gather(refgpu *r, const refgpu_view *v, int b, int head, int N, int D, sp_dptr dst, sp_err *e)
{
    sp_dptr src = v->ptr + (sp_dptr)((b * v->stride[0] + head * v->stride[2]) * (int64_t)dtype_bytes(v->dtype));
    int dtype = (int)v->dtype;
    long long sn = v->stride[1], sd = v->stride[3];
    void *args[] = { &src, &dtype, &sn, &sd, &N, &D, &dst };
    return cu_launch(r->g, r->fn[K_GATHER], grid_for((long long)N * D), 1, 1, THREADS, 0, args, e);
}

typedef struct {
    int nint, lo_min, hi_max;   /* the head's intervals: count, smallest lo, largest hi */
} head_span;

/* Read the band table back and check it, so a bad table is an error here
 * rather than a wrong reference. */
static int read_bands(refgpu *r, const refgpu_problem *p, head_span *span, sp_err *e)
{
    int stride = 1 + 2 * p->max_intervals;
    size_t n = (size_t)p->H * (size_t)stride;
    int32_t *t = malloc(n * sizeof *t);
    if (!t) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    if (cu_download(r->g, t, p->bands, n * sizeof *t, e)) { free(t); return -1; }
    for (int h = 0; h < p->H; h++) {
        const int32_t *row = t + (size_t)h * stride;
        int cnt = row[0];
        if (cnt < 0 || cnt > p->max_intervals) {
            free(t);
            return sp_fail(e, SP_EXIT_FAIL, "band table: head %d has %d intervals (max %d)", h, cnt, p->max_intervals);
        }
        for (int k = 0; k < cnt; k++) {
            int lo = row[1 + 2 * k], hi = row[2 + 2 * k];
            if (lo < 0 || hi <= lo || (k > 0 && lo < row[2 * k])) {
                free(t);
                return sp_fail(e, SP_EXIT_FAIL, "band table: head %d interval %d [%d, %d) is not sorted, disjoint and non-empty",
                               h, k, lo, hi);
            }
        }
        span[h].nint = cnt;
        span[h].lo_min = cnt ? row[1] : 0;
        span[h].hi_max = cnt ? row[2 * cnt] : 0;
    }
    free(t);
    return 0;
}

/* Keys that rows [r0, r1) of a head can reach: [*j0, *j0 + *w).  At least
 * one column, so every row still passes through the softmax (which writes
 * the zero row and -inf LSE when nothing is allowed). */
static void key_window(const head_span *s, int N, int r0, int r1, int *j0, int *w)
{
    long long lo = (long long)r0 - s->hi_max + 1, hi = (long long)r1 - s->lo_min;   /* [lo, hi) */
    if (lo < 0) lo = 0;
    if (hi > N) hi = N;
    if (s->nint == 0 || hi <= lo) { lo = 0; hi = 1; }
    *j0 = (int)lo;
    *w = (int)(hi - lo);
}

static int check_problem(const refgpu_problem *p, int backward, sp_err *e)
{
    if (p->B < 1 || p->N < 1 || p->H < 1 || p->KVH < 1 || p->D < 1 || p->H % p->KVH != 0)
        return sp_fail(e, SP_EXIT_USAGE, "GPU reference: bad shape B=%d N=%d H=%d KVH=%d D=%d", p->B, p->N, p->H,
                       p->KVH, p->D);
    if (p->max_intervals < 0 || !p->bands || !p->q.ptr || !p->k.ptr || !p->v.ptr || (backward && !p->dout.ptr))
        return sp_fail(e, SP_EXIT_USAGE, "GPU reference: missing input");
    return 0;
}

/* Everything one call needs on the device, freed together. */
typedef struct {
    sp_dptr qf, kf, vf, dof;   /* fp32 [N][D] slices */
    sp_dptr s, dp;             /* [R][N] */
    sp_dptr oc, delta;         /* [R][D], [R] */
} scratch;

static void scratch_free(refgpu *r, scratch *s)
{
    sp_dptr *all[] = { &s->qf, &s->kf, &s->vf, &s->dof, &s->s, &s->dp, &s->oc, &s->delta };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) { cu_free(r->g, *all[i]); *all[i] = 0; }
}

static int scratch_alloc(refgpu *r, const refgpu_problem *p, int R, int backward, scratch *s, sp_err *e)
{
    memset(s, 0, sizeof *s);
    size_t nd = (size_t)p->N * p->D * sizeof(float), rn = (size_t)R * p->N * sizeof(float);
    if (cu_malloc(r->g, nd, &s->qf, e) || cu_malloc(r->g, nd, &s->kf, e) || cu_malloc(r->g, nd, &s->vf, e) ||
        cu_malloc(r->g, rn, &s->s, e))
        goto fail;
    if (backward &&
        (cu_malloc(r->g, nd, &s->dof, e) || cu_malloc(r->g, rn, &s->dp, e) ||
         cu_malloc(r->g, (size_t)R * p->D * sizeof(float), &s->oc, e) || cu_malloc(r->g, (size_t)R * sizeof(float), &s->delta, e)))
        goto fail;
    return 0;
fail:
    scratch_free(r, s);
    return -1;
}

#define F4(x) ((sp_dptr)(x) * sizeof(float))   /* float count -> byte offset */

/* The forward of rows [r0, r0 + rows) of (b, h): P in s->s, and when asked
 * LSE into lse_bh (this (b, h)'s row of LSE) and O into o (fp32
 * [B, N, H, D]; 0 = write O chunk into s->oc instead, ld D). */
static int chunk_forward(refgpu *r, const refgpu_problem *p, const scratch *s, int b, int h, int r0, int rows, int j0, int w, sp_dptr lse_bh, sp_dptr o, int want_o, sp_err *e)
{
    int D = p->D;
    /* S[rows][w] = scale * Q[r0..][.] K[j0..][.]^T */
    if (cublas_sgemm_rm(r->blas, 0, 1, rows, w, D, p->scale, s->qf + F4((size_t)r0 * D), D, 0, s->kf + F4((size_t)j0 * D),
                        D, 0, 0.0f, s->s, w, 0, 1, e))
        return -1;
    sp_dptr band = p->bands + (sp_dptr)h * (1 + 2 * p->max_intervals) * sizeof(int32_t);
    sp_dptr sbuf = s->s;
    void *args[] = { &sbuf, &w, &r0, &j0, &band, &lse_bh };
    if (cu_launch(r->g, r->fn[K_SOFTMAX], (unsigned)rows, 1, 1, THREADS, 0, args, e)) return -1;
    if (!want_o) return 0;
    /* O[rows][D] = P[rows][w] V[j0..][.] */
    sp_dptr dst;
    int ldo;
    if (o) { dst = o + F4((((size_t)b * p->N + r0) * p->H + h) * D); ldo = p->H * D; }
    else { dst = s->oc; ldo = D; }
    return cublas_sgemm_rm(r->blas, 0, 0, rows, D, w, 1.0f, s->s, w, 0, s->vf + F4((size_t)j0 * D), D, 0, 0.0f, dst,
                           ldo, 0, 1, e);
}

/* ---- forward and backward ----------------------------------------------------------------- */

int refgpu_forward(refgpu *r, const refgpu_problem *p, sp_dptr o, sp_dptr lse, sp_err *e)
{
    if (check_problem(p, 0, e)) return -1;
    if (!o && !lse) return 0;
    head_span *span = calloc((size_t)p->H, sizeof *span);
    if (!span) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    if (read_bands(r, p, span, e)) { free(span); return -1; }
    int R = chunk_rows(p->N, r->max_rows), group = p->H / p->KVH;
    scratch s;
    if (scratch_alloc(r, p, R, 0, &s, e)) { free(span); return -1; }
    int rc = -1;
    for (int b = 0; b < p->B; b++) {
        for (int h = 0; h < p->H; h++) {
            int g = h / group;
            if (h % group == 0 &&
                (gather(r, &p->k, b, g, p->N, p->D, s.kf, e) || gather(r, &p->v, b, g, p->N, p->D, s.vf, e)))
                goto done;
            if (gather(r, &p->q, b, h, p->N, p->D, s.qf, e)) goto done;
            sp_dptr lse_bh = lse ? lse + F4(((size_t)b * p->H + h) * p->N) : 0;
            for (int r0 = 0; r0 < p->N; r0 += R) {
                int rows = p->N - r0 < R ? p->N - r0 : R, j0, w;
                key_window(&span[h], p->N, r0, r0 + rows, &j0, &w);
                if (chunk_forward(r, p, &s, b, h, r0, rows, j0, w, lse_bh, o, o != 0, e)) goto done;
            }
        }
    }
    rc = cu_sync(r->g, e);
done:
    if (rc) { sp_err ignore; cu_sync(r->g, &ignore); }   /* let queued work finish before freeing */
    scratch_free(r, &s);
    free(span);
    return rc;
}

int refgpu_backward(refgpu *r, const refgpu_problem *p, sp_dptr dq, sp_dptr dk, sp_dptr dv, sp_err *e)
{
    if (check_problem(p, 1, e)) return -1;
    if (!dq || !dk || !dv) return sp_fail(e, SP_EXIT_USAGE, "GPU reference backward: dq, dk and dv are all required");
    head_span *span = calloc((size_t)p->H, sizeof *span);
    if (!span) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    if (read_bands(r, p, span, e)) { free(span); return -1; }
    int R = chunk_rows(p->N, r->max_rows), group = p->H / p->KVH, D = p->D;
    scratch s;
    if (scratch_alloc(r, p, R, 1, &s, e)) { free(span); return -1; }
    int rc = -1;
    size_t kv_elems = (size_t)p->B * p->N * p->KVH * D;
    /* dK and dV accumulate (beta = 1) over chunks and the heads of a group. */
    if (cu_fill32(r->g, dk, 0, kv_elems, e) || cu_fill32(r->g, dv, 0, kv_elems, e)) goto done;
    for (int b = 0; b < p->B; b++) {
        for (int h = 0; h < p->H; h++) {
            int g = h / group;
            if (h % group == 0 &&
                (gather(r, &p->k, b, g, p->N, D, s.kf, e) || gather(r, &p->v, b, g, p->N, D, s.vf, e)))
                goto done;
            if (gather(r, &p->q, b, h, p->N, D, s.qf, e) || gather(r, &p->dout, b, h, p->N, D, s.dof, e)) goto done;
            for (int r0 = 0; r0 < p->N; r0 += R) {
                int rows = p->N - r0 < R ? p->N - r0 : R, j0, w;
                key_window(&span[h], p->N, r0, r0 + rows, &j0, &w);
                /* P in s.s, O chunk in s.oc */
                if (chunk_forward(r, p, &s, b, h, r0, rows, j0, w, 0, 0, 1, e)) goto done;
                sp_dptr dof = s.dof + F4((size_t)r0 * D), kw = s.kf + F4((size_t)j0 * D), vw = s.vf + F4((size_t)j0 * D);
                sp_dptr qc = s.qf + F4((size_t)r0 * D);
                /* delta = rowsum(dO * O) */
                void *dargs[] = { &dof, &s.oc, &rows, &D, &s.delta };
                if (cu_launch(r->g, r->fn[K_DELTA], (unsigned)((rows + THREADS / 32 - 1) / (THREADS / 32)), 1, 1, THREADS,
                              0, dargs, e))
                    goto done;
                /* dP[rows][w] = dO V^T */
                if (cublas_sgemm_rm(r->blas, 0, 1, rows, w, D, 1.0f, dof, D, 0, vw, D, 0, 0.0f, s.dp, w, 0, 1, e)) goto done;
                /* dS = P * (dP - delta), over dP */
                void *sargs[] = { &s.s, &s.dp, &s.delta, &rows, &w };
                if (cu_launch(r->g, r->fn[K_DS], grid_for((long long)rows * w), 1, 1, THREADS, 0, sargs, e)) goto done;
                /* dQ[rows][D] = scale * dS K */
                sp_dptr dq_c = dq + F4((((size_t)b * p->N + r0) * p->H + h) * D);
                if (cublas_sgemm_rm(r->blas, 0, 0, rows, D, w, p->scale, s.dp, w, 0, kw, D, 0, 0.0f, dq_c, p->H * D, 0, 1, e))
                    goto done;
                /* dK[w][D] += scale * dS^T Q,  dV[w][D] += P^T dO */
                size_t kv_off = (((size_t)b * p->N + j0) * p->KVH + g) * D;
                if (cublas_sgemm_rm(r->blas, 1, 0, w, D, rows, p->scale, s.dp, w, 0, qc, D, 0, 1.0f, dk + F4(kv_off),
                                    p->KVH * D, 0, 1, e) ||
                    cublas_sgemm_rm(r->blas, 1, 0, w, D, rows, 1.0f, s.s, w, 0, dof, D, 0, 1.0f, dv + F4(kv_off),
                                    p->KVH * D, 0, 1, e))
                    goto done;
            }
        }
    }
    rc = cu_sync(r->g, e);
done:
    if (rc) { sp_err ignore; cu_sync(r->g, &ignore); }
    scratch_free(r, &s);
    free(span);
    return rc;
}

/* ---- comparison ----------------------------------------------------------------------------- */

int refgpu_compare(refgpu *r, const int64_t shape[4], const refgpu_view *out, const refgpu_view *ref,
                   cmp_result *res, sp_err *e)
{
    memset(res, 0, sizeof *res);
    long long total = 1;
    for (int k = 0; k < 4; k++) {
        if (shape[k] < 0) return sp_fail(e, SP_EXIT_USAGE, "refgpu_compare: negative shape");
        total *= shape[k];
    }
    if (total == 0) return 0;
    if (cu_fill32(r->g, r->stats, 0, 16, e)) return -1;
    int ta = (int)out->dtype, tb = (int)ref->dtype;
    long long a0 = out->stride[0], a1 = out->stride[1], a2 = out->stride[2], a3 = out->stride[3];
    long long b0 = ref->stride[0], b1 = ref->stride[1], b2 = ref->stride[2], b3 = ref->stride[3];
    long long n1 = shape[1], n2 = shape[2], n3 = shape[3];
    sp_dptr pa = out->ptr, pb = ref->ptr, st = r->stats;
    void *args[] = { &pa, &ta, &a0, &a1, &a2, &a3, &pb, &tb, &b0, &b1, &b2, &b3, &n1, &n2, &n3, &total, &st };
    unsigned grid = grid_for(total);
    if (grid > 1024) grid = 1024;   /* fewer blocks, fewer atomics; each thread loops */
    if (cu_launch(r->g, r->fn[K_COMPARE], grid, 1, 1, THREADS, 0, args, e)) return -1;
    unsigned char buf[40];
    if (cu_download(r->g, buf, r->stats, sizeof buf, e)) return -1;
    double diff2, ref2;
    unsigned long long nan, infm;
    uint32_t maxbits;
    float maxabs;
    memcpy(&diff2, buf, 8);
    memcpy(&ref2, buf + 8, 8);
    memcpy(&nan, buf + 16, 8);
    memcpy(&infm, buf + 24, 8);
    memcpy(&maxbits, buf + 32, 4);
    memcpy(&maxabs, &maxbits, 4);
    /* The same finishing rules as the host comparison (runtime/compare.c). */
    cmp_acc acc = { diff2, ref2, maxabs, (size_t)total, (size_t)nan, (size_t)infm };
    cmp_end(&acc, res);
    return 0;
}
