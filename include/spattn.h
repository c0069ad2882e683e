/* spattn: band-sparse attention kernels, generated per model and tuned per
 * GPU.  The one header a user of the library includes (man 3 spattn).
 *
 *     spattn_context *ctx;  spattn_plan *plan;
 *     spattn_context_create(0, &ctx);                  // GPU 0, in the caller's CUDA context
 *     spattn_plan_from_file(ctx, "olmoe.yaml", -1, 4, 4096, &plan);
 *     size_t ws = spattn_workspace_size(plan, 1, 0);   // allocate once, reuse
 *     spattn_forward(plan, &fwd, workspace, ws, stream);
 *     spattn_backward(plan, &bwd, workspace, ws, stream);
 *
 * A context is one device (or the CPU: SPATTN_DEVICE_CPU).  A plan is one
 * attention pattern at one (batch, sequence length): it computes the bands,
 * the work and the kernel configs (the tuning database's, else the
 * heuristic) and loads the kernels once; forward and backward then only
 * launch, on the caller's pointers and stream, and allocate nothing (so
 * they can be captured in a CUDA graph).  On a CPU context the same calls
 * take host pointers and run the float64 reference.
 *
 * Every call returns a status; on failure a one-line message is left in the
 * object the call was given (spattn_context_error, spattn_plan_error).  The
 * library never prints and never exits.  Objects are not thread-safe: use
 * one per thread, or lock.  There is no global state. */
#ifndef SPATTN_H
#define SPATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPATTN_API_VERSION 1

/* The library is built with hidden visibility; these are its exports. */
#if defined(__GNUC__)
#define SPATTN_API __attribute__((visibility("default")))
#else
#define SPATTN_API
#endif

/* The statuses are the command line's exit codes. */
typedef enum {
    SPATTN_OK = 0,
    SPATTN_FAILED = 1,     /* a run failed (out of memory, a compile failed) */
    SPATTN_EINVAL = 2,     /* bad arguments or spec */
    SPATTN_EGPU = 3,       /* no GPU, no driver, or a CUDA error */
} spattn_status;

typedef enum { SPATTN_BF16 = 0, SPATTN_FP16 = 1 } spattn_dtype;

enum { SPATTN_DEVICE_CPU = -1 };

typedef struct spattn_context spattn_context;
typedef struct spattn_plan spattn_plan;

/* ---- context ---------------------------------------------------------------
 * device >= 0: that GPU (counted after CUDA_VISIBLE_DEVICES), through its
 * primary context, the one the CUDA runtime and PyTorch use; compiled
 * kernels are kept in the disk cache ($SPATTN_CACHE_DIR, else
 * ~/.cache/spattn) and, once loaded, in the context.  SPATTN_DEVICE_CPU:
 * the float64 reference on host memory.  On failure *out is still set (NULL
 * only when out of memory) so that spattn_context_error can say why; destroy
 * it either way. */
SPATTN_API spattn_status spattn_context_create(int device, spattn_context **out);
SPATTN_API void spattn_context_destroy(spattn_context *ctx);
SPATTN_API const char *spattn_context_error(const spattn_context *ctx);
/* The tuning database plans look configs up in (default $SPATTN_DB, else
 * the cache directory's tune.db); NULL restores the default. */
SPATTN_API spattn_status spattn_context_set_db(spattn_context *ctx, const char *path);

/* ---- plan ----------------------------------------------------------------- */

/* A pattern from plain parameters (the spec keys of spattn-spec(5)). */
typedef struct {
    int heads, kv_heads, head_dim;   /* kv_heads 0: = heads */
    spattn_dtype dtype;
    const char *pattern;             /* dense, local, spattn, exclusive, gapped, window or custom; NULL: spattn */
    int64_t window;                  /* window: W, every head attends distances [0, W) */
    int64_t band_basis;              /* 0: the bands follow N; > 0: fixed length L */
    double softmax_scale;            /* 0: 1 / sqrt(head_dim) */
    const int *custom_counts;        /* custom: intervals of each head (heads entries) */
    const int64_t *custom_bands;     /* custom: [lo, hi) pairs of all heads, head 0 first */
} spattn_params;

/* From a spec file, or a YAML text (name: a label for messages), with layer
 * layer_index's pattern (-1: the spec's default); from parameters.  batch
 * >= 1 and seq_len >= 1 fix the shape every call of the plan runs. */
SPATTN_API spattn_status spattn_plan_from_file(spattn_context *ctx, const char *path, int layer_index, int batch,
                                    int64_t seq_len, spattn_plan **out);
SPATTN_API spattn_status spattn_plan_from_yaml(spattn_context *ctx, const char *yaml, size_t len, const char *name,
                                    int layer_index, int batch, int64_t seq_len, spattn_plan **out);
SPATTN_API spattn_status spattn_plan_from_params(spattn_context *ctx, const spattn_params *params, int batch, int64_t seq_len,
                                      spattn_plan **out);
SPATTN_API void spattn_plan_destroy(spattn_plan *plan);
SPATTN_API const char *spattn_plan_error(const spattn_plan *plan);

typedef struct {
    int batch, heads, kv_heads, head_dim;
    int64_t seq_len;
    spattn_dtype dtype;
    int64_t allowed_pairs;           /* (i, j) pairs computed, over batch and heads */
    double work_ratio;               /* allowed pairs / dense causal pairs */
    double forward_flops;            /* 4 * head_dim * allowed_pairs (backward: 2.5 times that) */
    char forward_kernel[128], backward_kernel[128];   /* "" on a CPU context */
    char forward_config[160], backward_config[160];   /* "tuned (...)", "heuristic" or "tile ..." */
} spattn_plan_info;
SPATTN_API spattn_status spattn_plan_get_info(const spattn_plan *plan, spattn_plan_info *info);

/* ---- forward and backward -------------------------------------------------
 * A tensor: [batch, seq, heads, head_dim] in any order of the first three
 * through element strides; head_dim contiguous; 16-bit (the plan's dtype);
 * on the GPU 16-byte aligned rows (data and strides multiples of 8
 * elements).  q, o, dout, dq have the plan's heads, k, v, dk, dv its
 * kv_heads.  lse: fp32 [batch, heads, seq], seq contiguous. */
typedef struct {
    void *data;
    int64_t stride_batch, stride_seq, stride_head;
} spattn_tensor;

typedef struct {
    float *data;
    int64_t stride_batch, stride_head;
} spattn_lse;

/* Contiguous strides of the two usual layouts: [B, N, H, D] (bnhd, the
 * default) and PyTorch's [B, H, N, D] (bhnd). */
SPATTN_API spattn_tensor spattn_tensor_bnhd(void *data, int64_t seq_len, int heads, int head_dim);
SPATTN_API spattn_tensor spattn_tensor_bhnd(void *data, int64_t seq_len, int heads, int head_dim);
SPATTN_API spattn_lse spattn_lse_contiguous(float *data, int64_t seq_len, int heads);

/* Bytes of workspace forward (backward = 0) or backward needs, 0 if none;
 * the same buffer serves both and every later call on the same stream.  On
 * a GPU context it is device memory, 16-byte aligned. */
SPATTN_API size_t spattn_workspace_size(const spattn_plan *plan, int backward, int deterministic);

/* O and LSE from q, k, v.  stream: a CUstream / cudaStream_t (NULL: the
 * legacy default stream); queued, not waited for.  Rows with no allowed key
 * get O = 0 and LSE = -inf. */
SPATTN_API spattn_status spattn_forward(spattn_plan *plan, const spattn_tensor *q, const spattn_tensor *k, const spattn_tensor *v,
                             const spattn_tensor *o, const spattn_lse *lse, void *workspace, size_t workspace_bytes,
                             void *stream);

/* dQ, dK, dV from the forward's inputs, O, LSE and dL/dO.  deterministic:
 * bitwise repeatable (no atomic adds into dQ). */
SPATTN_API spattn_status spattn_backward(spattn_plan *plan, const spattn_tensor *q, const spattn_tensor *k,
                              const spattn_tensor *v, const spattn_tensor *o, const spattn_lse *lse,
                              const spattn_tensor *dout, const spattn_tensor *dq, const spattn_tensor *dk,
                              const spattn_tensor *dv, int deterministic, void *workspace, size_t workspace_bytes,
                              void *stream);

#ifdef __cplusplus
}
#endif

#endif
