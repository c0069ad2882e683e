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
 * Packed (ragged) sequences: spattn_plan_set_seq_lens(plan, lens, n) once,
 * then the same calls on [total, heads, head_dim] tensors.
 *
 * A context is one device (or the CPU: SPATTN_DEVICE_CPU).  A plan is one
 * attention pattern at one (batch, sequence length): it computes the bands,
 * the work and the kernel configs (the tuning database's, else the
 * heuristic; the backward has one per mode, default and deterministic) and
 * loads the kernels once; forward and backward then only launch, on the
 * caller's pointers and stream, and allocate nothing (so they can be
 * captured in a CUDA graph).  On a CPU context the same calls
 * take host pointers and run the float64 reference.
 *
 * Every call returns a status; on failure a one-line message is left in the
 * object the call was given (spattn_context_error, spattn_plan_error).  The
 * library never prints and never exits.  Objects are not thread-safe: use
 * one per thread, or lock.  There is no global state. */
#ifndef SPATTN_H
#define SPATTN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2: spattn_plan_info gained the deterministic backward's kernel and config (session 11) */
#define SPATTN_API_VERSION 2

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
    char forward_config[160], backward_config[160];   /* "tuned (...)", "heuristic"; "cpu-float64" on a CPU context */
    /* The backward of the deterministic mode (spattn_backward's deterministic
     * = 1) has a config of its own: the tuning database's rows of kind
     * "bwd-det", else its heuristic (on sm_90a at head_dim 64: 2 stages,
     * where the default mode's 3 are slower there); never a row tuned in
     * the other mode.  Its main kernel's name ("" on a CPU context; the
     * same as backward_kernel where both modes picked the same config) and
     * where its config came from. */
    char deterministic_backward_kernel[128];
    char deterministic_backward_config[160];
} spattn_plan_info;
SPATTN_API spattn_status spattn_plan_get_info(const spattn_plan *plan, spattn_plan_info *info);

/* ---- packed (ragged) sequences ----------------------------------------------
 * Make every later forward and backward of the plan take n_seqs sequences of
 * lengths seq_lens[0 .. n_seqs) laid end to end (FlashAttention's varlen;
 * sequence b is rows cu[b] .. cu[b] + seq_lens[b] - 1, cu[b] the sum of the
 * lengths before it): q, o, dout, dq are [total, heads, head_dim], k, v,
 * dk, dv [total, kv_heads, head_dim] (stride_seq and stride_head as usual,
 * stride_batch ignored), lse is fp32 [heads, total] (stride_head; its
 * stride_batch ignored).  Each sequence is its own causal attention from
 * position 0 with its own bands: their basis is its own length unless the
 * spec fixes band_basis.  Lengths are >= 0 (empty sequences are allowed and
 * have no rows), at least one >= 1, at most 2^24 each and 2^30 in all;
 * n_seqs 1 .. 65535.  n_seqs and the longest length need not be the plan's
 * batch and seq_len: the call picks the kernels for (n_seqs, the longest),
 * computes every sequence's band table and uploads the tables and the
 * offsets into memory the plan owns, once, so forward and backward still
 * allocate nothing (and can be captured in a CUDA graph).  The workspace
 * follows the total tokens (call spattn_workspace_size after this).  On a
 * CPU context the float64 reference runs each sequence alone, so its
 * result is bitwise that of running the sequences one by one.
 * spattn_plan_get_info then reports batch = n_seqs, seq_len = the longest,
 * allowed_pairs and work_ratio over the sequences.  seq_lens NULL and
 * n_seqs 0: back to the plan's uniform batch.  On failure the plan keeps
 * its previous packing (or none). */
SPATTN_API spattn_status spattn_plan_set_seq_lens(spattn_plan *plan, const int64_t *seq_lens, int n_seqs);

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
 * bitwise repeatable (every sum into dQ in a fixed order: on Hopper's wgmma
 * kernels the dQ adds of a query tile wait for their turn, in descending KV
 * tile order (ascending where the tile's BN = BM, head_dim 64); on the mma.sync kernels a separate dQ kernel, no atomics),
 * with the plan's deterministic backward config (spattn_plan_info).  Its
 * workspace (spattn_workspace_size(plan, 1, 1)) holds, on Hopper, the fp32
 * dQ accumulator and a semaphore per query tile as well; the default mode's,
 * the accumulator; both, on Hopper with a uniform batch, the persistent
 * kernel's work counter.  A workspace serves one backward at a time: two streams need two. */
SPATTN_API spattn_status spattn_backward(spattn_plan *plan, const spattn_tensor *q, const spattn_tensor *k,
                              const spattn_tensor *v, const spattn_tensor *o, const spattn_lse *lse,
                              const spattn_tensor *dout, const spattn_tensor *dq, const spattn_tensor *dk,
                              const spattn_tensor *dv, int deterministic, void *workspace, size_t workspace_bytes,
                              void *stream);

/* ---- decoding from a KV cache ------------------------------------------------
 * One step of decoding (or of chunked / speculative decoding): the queries
 * of the last T positions of each sequence against the sequence's cached
 * keys and values.  The plan's batch is B and its seq_len N the cache's
 * capacity.  Sequence b holds len_b = kv_lens[b] tokens (kv_lens NULL: all
 * N; 0 <= len_b <= N) and query row t (0 <= t < T) is position
 * i = len_b - T + t: it attends the keys j <= i whose distance i - j lies in
 * its head's bands AT LENGTH len_b (the bands follow the sequence as it
 * grows, band basis len_b, unless the spec fixes band_basis).  So the
 * result equals the last T rows of spattn_forward over the sequence's len_b
 * tokens.  Rows with i < 0 or no allowed key: O = 0, LSE = -inf.
 *
 *   q, o      [B, T, H, D] through strides (stride_seq: per new token)
 *   k, v      the cache: contiguous [B, N, KVH, D] through strides, or, with
 *             paged, pages [num_pages, page_size, KVH, D] (stride_batch is
 *             then the page stride): token j of sequence b is row
 *             j % page_size of page block_table[b * max_pages + j / page_size]
 *   lse       fp32 [B, H, T] (stride_batch, stride_head; tokens contiguous)
 *   kv_lens   int32 [B] on the context's device (host memory on a CPU
 *             context), or NULL
 * On the GPU a split-KV kernel reads only the key tiles inside the bands
 * (the union over a kv head's query heads and the T rows: each byte once
 * per group), split over CTAs to fill the GPU, then combines the splits;
 * the workspace holds the splits' partial results.  The tile config and
 * the splits come from the tuning database (`spattn tune --decode`, keyed by
 * batch, N and T), else from a heuristic.  The first decode call of a plan
 * at a given T picks the config and loads the decode kernels (call it once
 * per T before capturing a CUDA graph); later calls only launch.  Lengths
 * outside 0..N are clamped on the GPU and SPATTN_EINVAL on the CPU. */
typedef struct {
    const int32_t *block_table;      /* [batch][max_pages] page indices (the context's memory) */
    int max_pages;                   /* entries per sequence: max_pages * page_size >= seq_len */
    int page_size;                   /* tokens per page: a power of two in 16..256 */
    int num_pages;                   /* pages in k and v (checked against the table on a CPU context) */
} spattn_paged_kv;

/* Workspace bytes spattn_decode needs for T = new_tokens (0 if none). */
SPATTN_API size_t spattn_decode_workspace_size(const spattn_plan *plan, int new_tokens);

SPATTN_API spattn_status spattn_decode(spattn_plan *plan, const spattn_tensor *q, const spattn_tensor *k_cache,
                                       const spattn_tensor *v_cache, const int32_t *kv_lens, int new_tokens,
                                       const spattn_paged_kv *paged, const spattn_tensor *o, const spattn_lse *lse,
                                       void *workspace, size_t workspace_bytes, void *stream);

/* What one decode step reads, from the bands alone (no data, any context):
 * the key rows of K and V it loads, summed over batch and kv heads, and the
 * bytes of K and V (rows x head_dim x 2 bytes x 2) against a dense decode's
 * (every cached token of every kv head).  kv_lens: host memory, or NULL.
 * On a GPU context also what spattn_decode at this T launches (or would, on
 * its first call): kernel, config with its splits, and where the config
 * came from. */
typedef struct {
    int64_t key_rows, tiles;         /* rows and key tiles read */
    double bytes, dense_bytes;       /* K and V bytes read; a dense decode's */
    int splits;                      /* CTAs sharing a block's tiles (GPU context; 1 on the CPU) */
    char kernel[128];                /* "spattn_dec_bf16_d128_bm16_bn64_w4_s3_..."; "" on a CPU context */
    char config[64];                 /* the tile and the splits used, "16x64:w4:s3:k2"; "" on a CPU context */
    char config_source[160];         /* "tuned (batch 64, N<=32768, T=1)" or "heuristic"; "" on a CPU context */
} spattn_decode_info;
SPATTN_API spattn_status spattn_decode_get_info(const spattn_plan *plan, const int32_t *kv_lens, int new_tokens,
                                                spattn_decode_info *info);

/* ---- tuning ------------------------------------------------------------------
 * Search the tile configs of a spec's kernels on the context's GPU at every
 * (kind, batch, seq_len) key, reject any whose output differs from the
 * cuBLAS fp32 reference, time the rest, and save each key's fastest in the
 * tuning database (spattn_context_set_db's, else the default) in one
 * transaction; plans made afterwards use them (man 1 spattn-tune; the CLI's
 * `spattn tune` is this call).  Keys the database already has for this GPU,
 * driver, NVRTC and spattn are skipped unless force.  Needs a GPU context
 * (SPATTN_EGPU on a CPU one), except with the environment variable
 * SPATTN_TUNE_FAKE=1: then any context tunes a deterministic fake GPU (for
 * tests without a GPU).
 * SPATTN_TUNE_BWD tunes the backward of the default mode (dQ by atomic
 * adds), SPATTN_TUNE_BWD_DET the deterministic mode's (the same search,
 * timed with deterministic = 1, saved as its own rows, kind "bwd-det": a
 * plan's deterministic backward takes only those); the CLI's
 * `--kind bwd` is both.
 * SPATTN_TUNE_DEC tunes the decode kernels (spattn_decode) at every
 * (batch, seq_len = the cache's length N, new_tokens T) key: tiles x splits,
 * each checked against the float64 CPU reference of the decode. */
enum { SPATTN_TUNE_FWD = 1, SPATTN_TUNE_BWD = 2, SPATTN_TUNE_DEC = 4, SPATTN_TUNE_BWD_DET = 8 };

typedef struct {
    int kinds;                       /* SPATTN_TUNE_FWD | SPATTN_TUNE_BWD | SPATTN_TUNE_BWD_DET | SPATTN_TUNE_DEC;
                                      * 0: forward only */
    const int *batches;              /* n_batches sizes; NULL or 0: the spec's batch list, else 1 */
    int n_batches;
    const int64_t *seq_lens;         /* n_seq_lens lengths; NULL or 0: the spec's seq_len list, else 4096 */
    int n_seq_lens;
    double budget_s;                 /* no candidate starts after this many seconds; 0: 600; INFINITY: no limit */
    int force;                       /* re-tune keys the database already has */
    int threads;                     /* compile threads; 0: one per CPU */
    int iters;                       /* timed launches per candidate; 0: 20 */
    volatile sig_atomic_t *stop;     /* NULL, or a flag the caller may set (a SIGINT handler, another
                                      * thread): the tuner stops after the current candidate, saves the
                                      * keys finished and returns SPATTN_FAILED */
    /* NULL, or called as the tuner works: total > 0 for a step (candidate
     * done of total of the current key, message its kernel name), total = 0
     * for a line of news (message: "rejected ...", "fwd batch 1 N 4096: best
     * ..."; no newline).  From the calling thread. */
    void (*progress)(void *user, const char *message, long done, long total);
    void *user;
    const int *new_tokens;           /* SPATTN_TUNE_DEC: n_new_tokens values of T; NULL or 0: T = 1 */
    int n_new_tokens;
} spattn_tune_options;

typedef enum {
    SPATTN_TUNE_SAVED = 0,           /* tuned; the winner is in the database */
    SPATTN_TUNE_UP_TO_DATE = 1,      /* the database had the key: skipped */
    SPATTN_TUNE_NO_WINNER = 2,       /* every candidate was rejected (the call fails) */
    SPATTN_TUNE_NOT_SAVED = 3,       /* tuned, but saving the winners failed (the call fails) */
} spattn_tune_outcome;

typedef struct {
    int kind;                        /* SPATTN_TUNE_FWD, SPATTN_TUNE_BWD, SPATTN_TUNE_BWD_DET or SPATTN_TUNE_DEC */
    int batch;
    int64_t seq_len, seq_bucket;     /* the length asked for; the database's bucket (next power of two) */
    spattn_tune_outcome outcome;
    char tile[64];                   /* the winner, "128x64:w8:s2"; "" if none */
    double median_ms, eff_tflops;    /* the winner's time and TFLOP/s (allowed pairs only) */
    int checked, rejected, pruned;   /* candidates run and compared, rejected as wrong, pruned by the compiler */
    char created_at[32];             /* UTC "2026-12-01T10:00:00Z" */
    char json[2048];                 /* the row as a `spattn db export` JSON line (no newline); "" if none */
    int new_tokens;                  /* SPATTN_TUNE_DEC: T; else 0 */
} spattn_tune_result;

/* Tune the spec in the file spec_path, or (spec_path NULL) in the YAML text
 * yaml[0, yaml_len), with layer layer_index's pattern (-1: the spec's
 * default).  opts NULL: the defaults.  results[0, max_results) receives one
 * entry per key reached, in order (kinds: fwd, bwd, bwd-det, dec; then
 * batches, then lengths, then decode's new_tokens);
 * *n_results (may be NULL) their count.  Keys finished before an error or a
 * stop are saved all the same. */
SPATTN_API spattn_status spattn_tune(spattn_context *ctx, const char *spec_path, const char *yaml, size_t yaml_len,
                                     int layer_index, const spattn_tune_options *opts, spattn_tune_result *results,
                                     int max_results, int *n_results);

#ifdef __cplusplus
}
#endif

#endif
