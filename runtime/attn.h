/* Launching the generated forward kernel: tensors described by a device
 * pointer and element strides, the grid and shared memory taken from the
 * derived kernel config, the parameters packed into sp_kparams
 * (abi/kparams.h), the struct the kernel takes by value.
 *
 * Shapes: q, o [B, N, H, D]; k, v [B, N, KVH, D]; lse [B, H, N] (fp32), or
 * any other order of (batch, sequence, head) through the strides, head_dim
 * always contiguous.  16-bit elements, 16-byte aligned rows (the kernel
 * copies 16-byte chunks). */
#ifndef SPATTN_ATTN_H
#define SPATTN_ATTN_H

#include "codegen/kcfg.h"
#include "common/err.h"
#include "runtime/cu.h"
#include "abi/kparams.h"

/* A [batch, seq, head, head_dim] tensor on the device: element strides of
 * batch, sequence and head (head_dim is contiguous). */
typedef struct {
    sp_dptr ptr;
    long long sb, sn, sh;
} attn_tensor;

/* Set a kernel parameter struct's strides NAME_sb, NAME_sn, NAME_sh (as
 * every struct of abi/ names them) from tensor t. */
#define ATTN_SET_STRIDES(kp, name, t) \
    ((kp)->name##_sb = (t).sb, (kp)->name##_sn = (t).sn, (kp)->name##_sh = (t).sh)

typedef enum {
    ATTN_BNHD = 0,   /* [B, N, H, D]: the default (DESIGN.md section 2) */
    ATTN_BHND = 1,   /* [B, H, N, D]: PyTorch SDPA's layout */
} attn_layout;

/* Strides of a contiguous tensor of `heads` heads in layout `layout`. */
void attn_default_strides(attn_tensor *t, attn_layout layout, long long N, int heads, int head_dim);

typedef struct {
    attn_tensor q, k, v, o;     /* q, o: `heads` heads; k, v: `kv_heads` heads */
    sp_dptr lse;                /* fp32 [B, H, N] through lse_sb, lse_sh; seq contiguous */
    long long lse_sb, lse_sh;
    sp_dptr bands;              /* band table of all heads (abi/bandtab.h), for N = seqlen */
    int batch, seqlen;          /* B >= 1, N >= 1 */
    int heads;                  /* query heads in this launch (the whole model's, unless sharded) */
    int head_offset;            /* global index of the launch's first head; a multiple of heads/kv_heads */
    int kv_heads;               /* kv heads in this launch */
    float scale;                /* softmax scale */
    /* Packed sequences (runtime/packing.h, kernels/seq.cuh): cu_seqlens != 0
     * makes batch the number of sequences and seqlen the longest; q, k, v, o
     * are [total, heads, D] (batch strides ignored), lse [heads, total]
     * (lse_sb ignored), and bands holds batch tables bands_sb ints apart. */
    sp_dptr cu_seqlens;         /* int32 [batch + 1] on the device; 0: a uniform batch */
    int bands_sb;
    long long total;            /* tokens of all sequences (the TMA maps' rows) */
    /* The persistent kernel's work list (runtime/fwd_sched.h), used when it was built for
     * this launch's CTAs and items (a uniform batch); 0: the kernel's static order. */
    sp_dptr sched;
    int sched_ctas, sched_items;
} attn_fwd_args;

/* Launch-time checks shared by the forward and backward glue (`launch`
 * names which, for messages): a tensor's 16-byte alignment, and the shape
 * against the kernel config (head counts and kv groups, int32 limits, band
 * table and lse present, scale positive).  -1 and SP_EXIT_USAGE. */
int attn_check_tensor(const char *launch, const char *what, const attn_tensor *t, sp_err *e);
int attn_check_shape(const char *launch, const sp_kcfg *cfg, int batch, int seqlen, int heads, int kv_heads,
                     int head_offset, sp_dptr bands, sp_dptr lse, float scale, sp_err *e);

/* Contiguous [B, H, N] strides for lse. */
void attn_default_lse_strides(attn_fwd_args *a);

/* Check a against cfg (head counts, alignment: pointers 16-byte aligned and
 * strides multiples of 8 elements, N within int32) and fill kp.  The
 * pointers of a head-sharded launch must already point at its first head.
 * -1 and SP_EXIT_USAGE on a mismatch. */
int attn_fwd_pack(const sp_kcfg *cfg, const attn_fwd_args *a, sp_kparams *kp, sp_err *e);

/* The launch geometry: grid (ceil(N / BM), heads, batch), cfg->threads
 * threads, cfg->smem_bytes of dynamic shared memory. */
void attn_fwd_grid(const sp_kcfg *cfg, const attn_fwd_args *a, unsigned grid[3]);

/* The warp-specialized kernel's second parameter: TMA maps of q, k, v
 * (boxes of BM, BN, BN rows) and o (64 rows: one consumer's tile), the
 * layout of struct fwd_tma_maps in kernels/tma.cuh. */
typedef struct {
    CUtensorMap q, k, v, o;
} attn_fwd_tma_maps;
_Static_assert(sizeof(attn_fwd_tma_maps) == 4 * 128, "kernels/tma.cuh: fwd_tma_maps is four 128-byte maps");
int attn_fwd_maps(const sp_kcfg *cfg, const attn_fwd_args *a, attn_fwd_tma_maps *m, sp_err *e);
/* One tensor's TMA map: (head_dim, seq, heads, batch) with t's strides, a box
 * of 64 values by `rows` rows, the 128-byte swizzle (kernels/tma.cuh); the
 * backward's maps use it too (runtime/attn_bwd.c). */
int attn_tensor_map(CUtensorMap *m, const sp_kcfg *cfg, const attn_tensor *t, int seqlen, int heads, int batch,
                    int rows, sp_err *e);
/* The maps' view of packed sequences: one batch of `total` rows (the kernels
 * add each sequence's first row to their coordinates), so *rows = total,
 * *batch = 1 and each of the n tensors' batch stride spans the total (only
 * formally needed).  The forward's and the backward's maps (attn_bwd.c). */
void attn_tma_packed_view(long long total, int *rows, int *batch, attn_tensor *const *ts, int n);
/* The persistent launch's CTAs: one per SM, fewer if there are fewer work
 * items (query tiles x heads x batch, which must fit int32). */
int attn_fwd_persistent_grid(const sp_gpu *g, const sp_kcfg *cfg, const attn_fwd_args *a, unsigned *grid, sp_err *e);

/* Pack and launch fn (a kernel emitted for cfg, loaded from its cubin) on
 * g's stream.  Does not wait. */
int attn_fwd_launch(sp_gpu *g, CUfunction fn, const sp_kcfg *cfg, const attn_fwd_args *a, sp_err *e);

#endif
