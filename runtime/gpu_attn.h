/* One attention problem on the GPU: the device buffers of a (spec, pattern,
 * B, N, layout), filled with random inputs, and the forward launched and
 * timed over them.  run, check, bench and tune all go through it, so input
 * generation, NaN poisoning, input rotation and timing are written once.
 *
 * Inputs come in `nsets` copies with different random values: timing
 * rotates through them so the L2 cache (50 MB on an H100) does not keep one
 * set warm between launches.  Host-side arrays are always in the default
 * layout [B, N, heads, D]; with layout GA_BHND the device holds
 * [B, heads, N, D] (PyTorch's SDPA layout) and the copy transposes.
 *
 * Packed sequences (ga_create_packed, runtime/packing.h): B sequences of
 * their own lengths, N the longest; every tensor is [total, heads, D] on
 * the host and the device (bnhd only), lse [H, total], and the launches
 * pass the offsets and the per-sequence band tables. */
#ifndef SPATTN_GPU_ATTN_H
#define SPATTN_GPU_ATTN_H

#include <stdint.h>

#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/cu.h"
#include "runtime/engine.h"
#include "runtime/fwd_sched.h"
#include "runtime/packing.h"

#define GA_MAX_SETS 8

typedef enum { GA_BNHD = 0, GA_BHND = 1 } ga_layout;

typedef struct {
    sp_gpu *g;
    int B, N, H, KVH, D;
    sp_dtype dtype;
    float scale;
    ga_layout layout;
    int max_intervals;             /* of the pattern whose table `bands` holds now */
    int bands_cap;                 /* max_intervals the device table has room for */
    sp_dptr bands;                 /* band table (abi/bandtab.h) for N */
    int32_t *bands_host;           /* its host copy (a uniform batch), for the work list */
    fwd_sched sched;               /* the persistent forward's work list, built on first use */
    int sched_bm, sched_bn, sched_pattern;   /* the config it was built for */
    int nsets;
    size_t nq, nk, nlse;           /* elements of q (= o), k (= v), lse */
    sp_dptr q[GA_MAX_SETS], k[GA_MAX_SETS], v[GA_MAX_SETS];
    sp_dptr o, lse;
    /* backward, allocated by ga_alloc_backward */
    sp_dptr dout, dq, dk, dv;      /* dout random; gradients 16-bit in a's layout */
    sp_dptr dq_accum, delta, lse2; /* fp32 scratch of the backward kernels (runtime/attn_bwd.h) */
    sp_dptr dq_sem;                /* int32 scratch of main_sem (0 if the config has none) */
    /* packed sequences (ga_create_packed); packed 0: a uniform batch */
    int packed;
    sp_packing pack;               /* the lengths and offsets (B = pack.n, N = pack.max_len) */
    sp_dptr cu;                    /* int32 [B + 1] on the device */
    int bands_sb;                  /* ints per sequence in `bands` */
} gpu_attn;

/* Allocate buffers for the problem and upload the band table.  nsets <= 0:
 * enough sets that their inputs exceed twice the L2 size (at most
 * GA_MAX_SETS).  Inputs are not filled yet. */
int ga_create(gpu_attn *a, sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, int B, int N,
              ga_layout layout, int nsets, sp_err *e);
/* The same for packed sequences: n lengths (runtime/packing.h's rules),
 * layout GA_BNHD. */
int ga_create_packed(gpu_attn *a, sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, const int64_t *lens, int n,
                     int nsets, sp_err *e);
void ga_destroy(gpu_attn *a);
/* Rows of every [.., heads, D] tensor: B * N, or packed the total tokens. */
long long ga_rows(const gpu_attn *a);

/* Replace the band table with pattern pat's at the problem's N (the dense
 * baseline runs on the same buffers); a->max_intervals follows. */
int ga_set_bands(gpu_attn *a, const sp_pattern *pat, sp_err *e);

/* Strides (elements) of a [B, N, heads, D] tensor in a's layout. */
void ga_strides(const gpu_attn *a, int heads, long long *sb, long long *sn, long long *sh);

/* Upload 16-bit host inputs ([B,N,H,D] / [B,N,KVH,D]) into set `set`. */
int ga_upload(gpu_attn *a, int set, const uint16_t *q, const uint16_t *k, const uint16_t *v, sp_err *e);
/* Fill every set with normal(0, 1) values rounded to the dtype, from seed
 * (set s uses seed + s); set 0 equals what rng_fill_normal gives from seed
 * for q, then k, then v. */
int ga_fill_random(gpu_attn *a, uint64_t seed, sp_err *e);
/* Write NaN into o and lse (and the gradients if allocated), so an element
 * no kernel writes fails the check. */
int ga_poison(gpu_attn *a, sp_err *e);

/* The forward of kernel k on input set `set`: o, lse. Queued, not waited. */
int ga_forward(gpu_attn *a, const engine_kernel *k, int set, sp_err *e);
/* Median time (ms) of `iters` forward launches after `warmup`, CUDA events
 * around each launch, rotating input sets. */
int ga_time_forward(gpu_attn *a, const engine_kernel *k, int warmup, int iters, double *median_ms,
                    sp_err *e);

/* Allocate the backward's buffers for config cfg (derived, kind bwd) and
 * fill dout with normal(0, 1) values from seed (host copy in dout_host if
 * not NULL: [B,N,H,D] 16-bit).  Safe to call again (no-op). */
int ga_alloc_backward(gpu_attn *a, const sp_kcfg *cfg, uint64_t seed, uint16_t *dout_host, sp_err *e);
/* Replace dout with a host [B,N,H,D] 16-bit array (after ga_alloc_backward). */
int ga_upload_dout(gpu_attn *a, const uint16_t *dout, sp_err *e);
/* The backward kernels of k (kind bwd) on input set `set`, from a->o and
 * a->lse (run ga_forward on the same set first): dq, dk, dv.  Queued. */
int ga_backward(gpu_attn *a, const engine_kernel *k, int set, int deterministic, sp_err *e);
/* Median ms of `iters` backward launches (from the o and lse in place). */
int ga_time_backward(gpu_attn *a, const engine_kernel *bk, int deterministic, int warmup, int iters, double *median_ms,
                     sp_err *e);
/* Median ms of `iters` forward+backward steps (fk then bk), as ga_time_forward. */
int ga_time_fwdbwd(gpu_attn *a, const engine_kernel *fk, const engine_kernel *bk, int deterministic, int warmup,
                   int iters, double *median_ms, sp_err *e);

/* Download o (as float, [B,N,H,D]) and lse (float [B,H,N]); either may be NULL. */
int ga_download_o(gpu_attn *a, float *o, float *lse, sp_err *e);
/* Download a 16-bit [B,N,heads,D] device tensor in a's layout as float [B,N,heads,D]. */
int ga_download16(gpu_attn *a, sp_dptr p, int heads, float *out, sp_err *e);

/* Median of n values (sorts v). */
double ga_median(double *v, int n);

/* One step of a timing on input set `set` of obj (a gpu_attn, a
 * gpu_decode), queued on the GPU's stream. */
typedef int (*ga_step_fn)(void *obj, const void *ctx, int set, sp_err *e);
/* Median ms of `iters` steps after `warmup`, rotating through nsets input
 * sets: the steps run back to back with a CUDA event between each pair, so
 * the median gap is a step's GPU time with no host overhead in it.  The
 * ga_time_* functions are this. */
int ga_time_steps(sp_gpu *g, int nsets, ga_step_fn step, void *obj, const void *ctx, int warmup, int iters,
                  double *median_ms, sp_err *e);

#endif
