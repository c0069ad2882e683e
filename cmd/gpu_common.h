/* What the GPU commands (run, check, bench, tune) share: their common
 * options, opening a problem on the GPU, and picking the kernel config
 * (--tile, else the tuning database's nearest bucket, else the heuristic). */
#ifndef SPATTN_GPU_COMMON_H
#define SPATTN_GPU_COMMON_H

#include "cmd/opts.h"
#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/json.h"
#include "runtime/compare.h"
#include "runtime/gpu_attn.h"
#include "runtime/ref_gpu.h"
#include "tuning_db/db.h"

typedef struct {
    const char *spec_path;
    int64_t batch, seq_len;     /* 0: the spec's first */
    int layer_index;            /* -1: the spec's default pattern */
    const char *pattern;        /* override the pattern kind (not custom) */
    const char *dtype;          /* override the dtype */
    const char *layout;         /* bnhd (default) or bhnd */
    const char *tile;           /* --tile BMxBN[:wW:sS] */
    const char *bwd_tile;       /* --bwd-tile: the backward's, where it differs from --tile */
    const char *db_path;        /* --db */
    int64_t seed;
    int gpu;
    int deterministic;
    const int64_t *seq_lens;    /* packed sequences of these lengths (--seq-lens), or NULL */
    int n_seq_lens;
} gpu_opts;

/* The most sequences --seq-lens takes. */
#define CMD_MAX_SEQS 4096

/* --seq-lens TEXT -> o->seq_lens (lens: CMD_MAX_SEQS entries the caller
 * keeps); NULL text: nothing.  Exit 2 with a one-line message on a bad list. */
int gpu_opts_seq_lens(gpu_opts *o, const char *text, int64_t *lens, sp_err *e);

void gpu_opts_init(gpu_opts *o);

/* The option rows every GPU command has. */
#define GPU_OPTS_ROWS(o)                                                                                    \
    OPT_I64(0, "batch", &(o).batch, "B", "batch size (default: the spec's first)", 1, 1 << 20),               \
    OPT_I64(0, "seq-len", &(o).seq_len, "N", "sequence length (default: the spec's first)", 1, 1 << 24),      \
    OPT_INT(0, "layer-index", &(o).layer_index, "K", "use layer K's pattern (hybrid specs)", 0, 1 << 20),     \
    OPT_STRING(0, "pattern", &(o).pattern, "NAME", "override the pattern: dense, local, spattn, exclusive, gapped"), \
    OPT_STRING(0, "dtype", &(o).dtype, "TYPE", "override the dtype: bf16 or fp16"),                          \
    OPT_STRING(0, "layout", &(o).layout, "L", "tensor layout: bnhd ([B,N,H,D], default) or bhnd"),           \
    OPT_STRING(0, "tile", &(o).tile, "BMxBN[:wW:sS]", "kernel tile config (default: tuned, else heuristic)"), \
    OPT_STRING(0, "bwd-tile", &(o).bwd_tile, "BMxBN[:wW:sS]", "backward tile config (default: --tile's, else tuned, else heuristic)"), \
    OPT_STRING(0, "db", &(o).db_path, "FILE", "tuning database (default $SPATTN_DB or the cache dir)"),      \
    OPT_I64(0, "seed", &(o).seed, "S", "random seed for the inputs (default 1)", 0, INT64_MAX),               \
    OPT_INT(0, "gpu", &(o).gpu, "N", "GPU ordinal (after CUDA_VISIBLE_DEVICES)", 0, 1024),                   \
    OPT_BOOL(0, "deterministic", &(o).deterministic, "bitwise-reproducible backward (dQ summed in a fixed order)")

typedef struct {
    sp_spec spec;               /* overrides applied */
    sp_pattern pattern;         /* the layer's pattern, overrides applied */
    sp_band_list *bands;        /* spec.heads entries at N */
    int packed;                 /* packed sequences (--seq-lens): ga.pack has them */
    sp_band_list *pbands;       /* packed: n * heads lists, sequence-major (packing_bands) */
    int64_t pairs;              /* allowed pairs over batch and heads */
    double dense_pairs;         /* dense causal pairs of the same sequences, over batch and heads */
    double ratio;               /* work ratio vs dense causal */
    sp_gpu *gpu;
    sp_gpu gpu_storage;
    gpu_attn ga;
    const char *tile;           /* --tile, or NULL */
    const char *bwd_tile;       /* --bwd-tile, else --tile, or NULL */
    const char *db_path;
    int deterministic;
    char config_source[160];    /* "tuned (db: ...)", "heuristic", "--tile" */
    double eff_flops_fwd;       /* 4 * D * pairs: forward FLOPs counted on allowed pairs */
} gpu_problem;

/* Load the spec (overrides applied), open the GPU (SP_EXIT_GPU if none) and
 * create the device problem with random-free buffers. */
int gpu_problem_open(const gpu_opts *o, gpu_problem *p, sp_err *e);
void gpu_problem_close(gpu_problem *p);
/* Only the host side: spec, overrides, pattern, bands, pairs (no GPU). */
int gpu_problem_spec(const gpu_opts *o, gpu_problem *p, sp_err *e);
/* Pick the config for kind (see above; the backward's for p->deterministic's
 * mode; fills p->config_source) and load it. */
int gpu_problem_kernel(gpu_problem *p, sp_kernel_kind kind, engine_kernel *k, sp_err *e);
/* The same engine's dense causal kernel of kind for the problem's shape
 * (the baseline), heuristic config (the backward's of the mode deterministic). */
int gpu_problem_dense_kernel(gpu_problem *p, sp_kernel_kind kind, int deterministic, engine_kernel *k, sp_err *e);
/* The times run and bench report: the band kernels (forward, or forward +
 * backward) and this engine's dense causal kernels on the same buffers. */
typedef struct {
    double ms;              /* band kernels, median */
    double dense_ms;        /* dense causal kernels, median; 0 when not timed */
    char kernel[260];       /* "forward name", or "forward name + backward main name" */
} gpu_timing;

/* Time fk (p's loaded forward kernel) on p's filled input sets, with
 * fwdbwd also the backward kernels p's config picks for the mode
 * deterministic (dO drawn from dout_seed), CUDA-event median of iters after
 * warm-up; then, with with_dense, the dense causal kernels.  That swaps p's
 * band table to the dense one, so it comes last. */
int gpu_problem_time(gpu_problem *p, const engine_kernel *fk, int fwdbwd, int deterministic, uint64_t dout_seed,
                     int iters, int with_dense, gpu_timing *t, sp_err *e);

/* The tuning-database key of the problem for kind (the backward: in p->deterministic's mode). */
void gpu_problem_db_key(const gpu_problem *p, sp_kernel_kind kind, db_key *key);
/* A refgpu view of a 16-bit device tensor in the problem's layout. */
refgpu_view gpu_problem_view(const gpu_problem *p, sp_dptr ptr, int heads);
/* The reference problem for input set `set`. */
void gpu_problem_refgpu(const gpu_problem *p, int set, refgpu_problem *rp);
/* Shape fields (B, N, H, KVH, D, dtype, pattern, layout, ratio, gpu) into an open JSON object. */
void gpu_problem_json(const gpu_problem *p, jw *w);

/* One compared tensor of a check. */
typedef struct {
    const char *name;
    cmp_result r;
    double bound;
    int exact;                  /* judged by cmp_must_be_zero: every element exactly 0 */
    int pass;
} tensor_result;

/* Append one compared tensor to out[*n]; exact: r is a cmp_must_be_zero
 * result (bound unused). */
void tensor_result_add(tensor_result *out, int *n, const char *name, const cmp_result *r, double bound, int exact);
/* A check's compared tensors: the "tensors" array of its JSON (into an open
 * object), or its table on stdout. */
void tensor_results_json(jw *w, const tensor_result *t, int n);
void tensor_results_print(const tensor_result *t, int n);

/* The exact-zero check of t, a float [B, N, heads, D] copy of an output:
 * kv_side 0 (O, dQ; heads = H): every row whose head allows it no key;
 * kv_side 1 (dK, dV; heads = KVH): every key that no query of the kv head's
 * group reaches.  Those elements must be exactly 0 (DESIGN.md section 1).
 * -1 (e set) only if out of memory. */
int gpu_problem_empty_rows(const gpu_problem *p, const float *t, int kv_side, cmp_result *r, sp_err *e);

/* The backward check (cmd/check_bwd.c): runs the forward kernel and the
 * backward kernels k on fresh inputs and dO, compares dQ, dK, dV with the
 * CPU (cpu_reference) or cuBLAS reference; appends to out[*n]. */
int check_bwd(gpu_problem *p, const engine_kernel *k, uint64_t seed, int cpu_reference,
              tensor_result *out, int *n, const char **reference, sp_err *e);

/* Packed problems (check --seq-lens, cmd/check_packed.c): run kernel k
 * (forward, or the backward's three) once per sequence as a batch of one on
 * that sequence's rows, and compare with the packed run's outputs in p's
 * buffers ("O=seq", "LSE=seq" or "dQ=seq", "dK=seq", "dV=seq"). */
int check_packed_alone(gpu_problem *p, const engine_kernel *k, tensor_result *out, int *n, sp_err *e);

#endif
