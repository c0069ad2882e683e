/* Launching the generated backward kernels (codegen/emit_bwd.h): tensors by
 * device pointer and element strides (as runtime/attn.h for the forward),
 * the parameters packed into sp_bwd_kparams (abi/kparams_bwd.h), and
 * the kernels of one mode queued on the GPU's one stream:
 *
 *     atomic mode (default)   pre -> main -> convert
 *     deterministic mode      pre -> main_det -> dq         (mma.sync family)
 *                             pre -> main_sem -> convert    (wgmma family)
 * both bitwise repeatable (kcfg_bwd_dq_ordered says which a config runs).
 *
 * Shapes: q, o, dout, dq [B, N, H, D]; k, v, dk, dv [B, N, KVH, D]; lse
 * [B, H, N] fp32 from the forward; or any order of (batch, seq, head)
 * through the strides, head_dim contiguous.  16-bit elements, rows 16-byte
 * aligned (pointers and strides multiples of 8 elements).
 *
 * Scratch the caller allocates (attn_bwd_scratch_sizes gives the bytes;
 * contents need not be initialised: pre writes them first):
 *     dq_accum  [B, N, H, D]          fp32, atomic mode and main_sem: B*N*H*D floats
 *     delta     [B, H, N_pad]         fp32, B*H*N_pad floats, N_pad = N rounded up to 128
 *     lse2      [B, H, N_pad]         the same
 *     dq_sem    [B, H, ceil(N / BM)]  int32, main_sem only: a semaphore per query tile
 * 16-byte aligned (cu_malloc's are).  H is the heads of this launch.  A
 * buffer may be reused by later launches on the same stream. */
#ifndef SPATTN_ATTN_BWD_H
#define SPATTN_ATTN_BWD_H

#include <stddef.h>

#include "codegen/kcfg.h"
#include "codegen/kcfg_bwd.h"
#include "common/err.h"
#include "runtime/attn.h"
#include "runtime/cu.h"
#include "abi/kparams_bwd.h"

typedef struct {
    attn_tensor q, k, v, o, dout;  /* the forward's inputs and output, and dL/dO (read) */
    attn_tensor dq, dk, dv;        /* the gradients (written): dq `heads` heads, dk, dv `kv_heads` */
    sp_dptr lse;                   /* the forward's fp32 LSE through lse_sb, lse_sh; seq contiguous */
    long long lse_sb, lse_sh;
    sp_dptr bands;                 /* band table of all heads (abi/bandtab.h), for N = seqlen */
    int batch, seqlen;             /* B >= 1, N >= 1 */
    int heads;                     /* query heads in this launch */
    int head_offset;               /* global index of its first head; a multiple of heads/kv_heads */
    int kv_heads;                  /* kv heads in this launch */
    float scale;                   /* softmax scale (the forward's) */
    int deterministic;             /* 1: bitwise repeatable (main_det + dq, or main_sem) */
    sp_dptr dq_accum, delta, lse2; /* scratch (see above); dq_accum unused by main_det + dq */
    sp_dptr dq_sem;                /* scratch of main_sem (deterministic wgmma), or the persistent
                                      main's work counter (attn_bwd_persistent), else unused */
    /* Packed sequences, as in attn_fwd_args: every tensor and dq_accum
     * [total, heads, D], lse [heads, total]; delta and lse2 [heads,
     * packing_ws_rows(total, batch)]; dq_sem [heads, packing_sem_tiles(total,
     * batch, BM)] (runtime/packing.h). */
    sp_dptr cu_seqlens;            /* int32 [batch + 1]; 0: a uniform batch */
    int bands_sb;
    long long total;
} attn_bwd_args;

typedef struct {
    size_t dq_accum;   /* 0 in deterministic mode of main_det + dq */
    size_t delta;
    size_t lse2;
    size_t dq_sem;     /* main_sem's semaphores in its deterministic mode; 16 bytes (a work
                          counter) where main is persistent; else 0 */
} attn_bwd_scratch;

/* Bytes of each scratch buffer for a launch described by a (batch, seqlen,
 * heads, deterministic; packed: total, batch) with cfg's head_dim, BM and
 * family. */
void attn_bwd_scratch_sizes(const sp_kcfg *cfg, const attn_bwd_args *a, attn_bwd_scratch *s);
/* Whether main runs persistent (kernels/bwd_ws.cuh: the ws family on a uniform batch, both
 * modes): a block per slot of the GPU, each taking KV tiles in turn from a work counter in the
 * dq_sem scratch (after main_sem's semaphores), which pre zeroes. */
int attn_bwd_persistent(const sp_kcfg *cfg, const attn_bwd_args *a);
/* Its grid: min(items, sm_count x cfg's blocks per SM). */
unsigned attn_bwd_persistent_blocks(const sp_kcfg *cfg, unsigned items, int sm_count);
/* Bytes of main_sem's semaphores for query tiles of bm rows (the dq_sem of
 * attn_bwd_scratch_sizes), rounded up to 16 so that the persistent main's
 * work counter after them is aligned; with the smallest bm of any config
 * (32), room for every config of the shape. */
size_t attn_bwd_sem_bytes(const attn_bwd_args *a, int bm);
/* The persistent main's work counter after them: one int, in 16 bytes. */
enum { ATTN_BWD_WORK_COUNT_BYTES = 16 };

/* The module's kernels of cfg, by kcfg_bwd_name, indexed by sp_bwd_part. */
typedef struct {
    CUfunction fn[BWD_PARTS];
} attn_bwd_kernels;

/* Look up the kernels of cfg in module m (loaded from the cubin of
 * emit_bwd_kernels' source): those kcfg_bwd_has_part names; the others'
 * entries are NULL.  SP_EXIT_GPU if one is missing. */
int attn_bwd_lookup(CUmodule m, const sp_kcfg *cfg, attn_bwd_kernels *k, sp_err *e);

/* Check a against cfg (a derived backward config: head counts and groups,
 * alignment, scratch present, N within int32) and fill kp, the scratch
 * strides included.  -1 and SP_EXIT_USAGE on a mismatch. */
int attn_bwd_pack(const sp_kcfg *cfg, const attn_bwd_args *a, sp_bwd_kparams *kp, sp_err *e);

/* The grid of one part:
 *     pre      (N_pad / aux_rows, heads, batch)
 *     main     (ceil(N / BN), kv_heads, batch)     (main_det, main_sem the same)
 *     dq       (ceil(N / BM), heads, batch)
 *     convert  (ceil(N / aux_rows), heads, batch)
 * threads: kcfg_bwd_threads; dynamic shared memory: kcfg_bwd_smem. */
void attn_bwd_grid(const sp_kcfg *cfg, const attn_bwd_args *a, sp_bwd_part part, unsigned grid[3]);

/* The parts a mode of cfg runs, in order: 3 entries. */
void attn_bwd_parts(const sp_kcfg *cfg, int deterministic, sp_bwd_part parts[3]);

/* Pack and queue the mode's three kernels on g's stream, in order.  Does
 * not wait.  Overwrites the scratch; dq, dk, dv are complete (every row
 * < N written) once the stream reaches the end. */
/* The warp-specialized main's second parameter (family bwd-ws): TMA maps of
 * q and dout (boxes of BM rows over the query heads) and k and v (BN rows
 * over the kv heads), the layout of struct bwd_tma_maps in kernels/bwd_ws.cuh.
 * Packed sequences: maps over the packed tensors (attn_tma_packed_view). */
typedef struct {
    CUtensorMap q, dout, k, v;
    CUtensorMap dqa;   /* dq_accum (fp32), boxes of BM rows x 32 dims: the dQ reduce-adds */
} attn_bwd_tma_maps;
_Static_assert(sizeof(attn_bwd_tma_maps) == 5 * 128, "kernels/bwd_ws.cuh: bwd_tma_maps is five 128-byte maps");
int attn_bwd_maps(const sp_kcfg *cfg, const attn_bwd_args *a, attn_bwd_tma_maps *m, sp_err *e);

int attn_bwd_launch(sp_gpu *g, const attn_bwd_kernels *k, const sp_kcfg *cfg, const attn_bwd_args *a, sp_err *e);

#endif
