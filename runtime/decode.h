/* Decoding from a KV cache on the GPU: the host side of kernels/decode.cuh.
 * What a decode launch reads (the key tiles of each block, in closed form
 * from the bands, with the kernel's own code: kernels/decode_plan.cuh), how
 * many splits share a block's tiles, the workspace, parameter packing and
 * the two launches (decode, then combine when splits > 1).
 *
 * Shapes: q, o [B, T, H, D] (the last T positions of each sequence); k, v
 * the cache, [B, N, KVH, D] or paged [num_pages, page_size, KVH, D] (then
 * the tensor's batch stride is the page stride); lse [B, H, T] (fp32).  Any
 * order of the first three dimensions through element strides, head_dim
 * contiguous, 16-byte aligned rows. */
#ifndef SPATTN_DECODE_H
#define SPATTN_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "abi/kparams_dec.h"
#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/attn.h"
#include "runtime/cu.h"

typedef struct {
    attn_tensor q, k, v, o;        /* q, o: [B, T, H, D]; k, v: the cache (sb = page stride when paged) */
    sp_dptr lse;                   /* fp32 [B, H, T] through lse_sb, lse_sh; token contiguous */
    long long lse_sb, lse_sh;
    sp_dptr bands;                 /* the band table at N (abi/bandtab.h) */
    sp_dptr kv_lens;               /* int32 [B], or 0: every sequence holds N tokens */
    sp_dptr block_table;           /* int32 [B][max_pages], or 0: contiguous cache */
    int max_pages, page_size;      /* paged: pages per sequence, tokens per page (power of two, 16..256) */
    int batch, max_len, new_tokens;   /* B, N (the cache's capacity), T (1 <= T <= N) */
    int heads, kv_heads;
    const sp_pattern *pattern;     /* for the bands that follow each sequence's length */
    float scale;
    int splits;                    /* from decode_splits */
    sp_dptr workspace;             /* decode_workspace_bytes of it when splits > 1 */
} decode_args;

/* Row blocks per kv head: ceil(GROUP * T / 16). */
int decode_row_blocks(const sp_kcfg *cfg, int new_tokens);

/* Head h's bands at sequence length len (>= 1), as the kernel derives them:
 * re-laid out at len for the built-in layouts, else bands_at_N (the plan's,
 * which do not depend on the length). */
void decode_head_bands(const sp_pattern *pat, int heads, int h, int64_t len, const sp_band_list *bands_at_N,
                       sp_band_list *out);

/* What one sequence of length len costs: the key tiles the blocks of all
 * kv heads and row blocks read (*tiles), and the key rows in them that
 * exist (< len; the rest are zero-filled, not read) (*rows): bytes read =
 * rows x head_dim x 2 bytes x 2 (K and V).  *max_tiles: the most tiles of
 * any one block.  bands_at_N: the plan's bands at the cache capacity. */
void decode_sequence_cost(const sp_kcfg *cfg, const sp_pattern *pat, const sp_band_list *bands_at_N, int new_tokens,
                          int64_t len, int64_t *tiles, int64_t *rows, int64_t *max_tiles);

/* The splits of a launch: cfg->splits if set (a tuned or a forced
 * choice); else the fewest that make the B x KVH x row blocks CTAs at least
 * two waves of two CTAs per SM (4 x sm_count; the reasoning is at the
 * code); either way each split keeps at least 2 of the most tiles any block
 * has (max_tiles), and there are at most KCFG_DEC_MAX_SPLITS. */
int decode_splits(const sp_kcfg *cfg, int sm_count, int batch, int new_tokens, int64_t max_tiles);
/* decode_splits of a launch where every sequence holds N tokens
 * (decode_sequence_cost gives max_tiles): what a plan of batch B and
 * seq_len N launches with. */
int decode_launch_splits(const sp_kcfg *cfg, const sp_pattern *pat, const sp_band_list *bands_at_N, int sm_count,
                         int batch, int new_tokens, int64_t N);

/* Workspace bytes for splits > 1 (0 for one split): the splits' O and LSE, fp32. */
size_t decode_workspace_bytes(const sp_kcfg *cfg, int batch, int heads, int new_tokens, int splits);

/* Check a against cfg and fill kp.  -1 and SP_EXIT_USAGE on a mismatch. */
int decode_pack(const sp_kcfg *cfg, const decode_args *a, sp_dec_kparams *kp, sp_err *e);

/* Pack and launch the decode kernel fn and, with splits > 1, combine, on
 * g's stream.  Does not wait. */
int decode_launch(sp_gpu *g, CUfunction fn, CUfunction combine, const sp_kcfg *cfg, const decode_args *a, sp_err *e);

#endif
