/* Kernel configs of the backward pass.  One sp_kcfg (codegen/kcfg.h) with
 * kind SP_KIND_BWD describes a whole family of kernels that live in one
 * generated translation unit and share their tiles:
 *
 *     pre       delta = rowsum(dO * O), LSE in the exp2 domain, zeroed dQ accumulator
 *               (and main_sem's semaphores)
 *     main      per KV tile of BN keys: dK, dV in registers; dQ by fp32 atomics
 *               (bwd-ws: a producer warpgroup loads by TMA, kernels/bwd_ws.cuh)
 *     main_det  the same without dQ (deterministic mode, mma.sync family)
 *     dq        per query tile of BM rows: dQ in registers (deterministic mode,
 *               mma.sync family)
 *     convert   fp32 dQ accumulator * scale -> 16-bit dQ (atomic mode, and the
 *               deterministic mode of the wgmma family)
 *     main_sem  main with its dQ adds in a fixed order (deterministic mode of the
 *               families with dq_ordered: the wgmma one; kernels/bwd_order.cuh)
 *
 * A family's translation unit holds the parts of its two modes
 * (kcfg_bwd_has_part): pre, main, convert, and main_det and dq, or main_sem.
 *
 * The tile choices mean, for the backward:
 *     bm      query rows per query tile (the inner loop of main; dq's block)
 *     bn      keys per KV tile; main gives each warp 16 keys, so warps = bn / 16
 *             (bwd-ws: 128 producer threads besides them)
 *     stages  Q/dO tiles in flight in main, K/V tiles in flight in dq
 * The dq kernel runs bm / 16 warps (each owns 16 query rows); pre and
 * convert run KCFG_BWD_AUX_THREADS threads.  Everything else about the
 * kernels follows from these through the functions below, which both the
 * emitter (codegen/emit_bwd.c) and the launch (runtime/attn_bwd.c) call, so
 * the two cannot disagree. */
#ifndef SPATTN_KCFG_BWD_H
#define SPATTN_KCFG_BWD_H

#include "codegen/kcfg.h"
#include "common/err.h"

typedef enum {
    BWD_PRE = 0,
    BWD_MAIN,
    BWD_MAIN_DET,
    BWD_DQ,
    BWD_CONVERT,
    BWD_MAIN_SEM,
    BWD_PARTS              /* count */
} sp_bwd_part;

/* Rows of the fp32 delta / LSE scratch per (batch, head) are padded to a
 * multiple of this, so the kernels read whole query tiles (bm <= 128 and
 * bm divides 128) without bounds checks.  The padding rows hold delta = 0
 * and LSE = +inf (P = 0), written by the pre kernel. */
#define KCFG_BWD_ROW_PAD 128
/* Threads of the pre and convert kernels (each row takes head_dim / 8 of them). */
#define KCFG_BWD_AUX_THREADS 128

/* The heuristic default tiles for c's problem (head_dim, dtype: filled) on
 * GPU architecture sm (80, 86, 89, 90): sets bm, bn, warps, stages.  Chosen
 * to compile without spills on sm_80 and sm_90a (tests/unit/test_codegen_bwd.c). */
void kcfg_default_bwd(sp_kcfg *c, int sm);
/* The same for the deterministic mode (spattn_backward's deterministic = 1),
 * whose dQ adds wait for their turn: kcfg_default_bwd's tiles, but on
 * sm_90 at head_dim 64 2 stages (two dQ staging buffers and writers). */
void kcfg_default_bwd_det(sp_kcfg *c, int sm);
/* Validate the tile choices of a backward config and fill threads (the main
 * kernel's), row_bytes, q_in_regs (0) and smem_bytes (the largest dynamic
 * shared memory of the family's kernels).  warps == 0 means "pick" (bn / 16).
 * -1 and an SP_EXIT_USAGE error naming the bad choice. */
int kcfg_derive_bwd(sp_kcfg *c, sp_err *e);

/* ---- What the family's kernels need, for a derived config ---- */

/* "pre", "main", "main_det", "dq", "convert", "main_sem". */
const char *kcfg_bwd_part_name(sp_bwd_part part);
/* 1 if the part is a kernel of cfg's translation unit: main_sem in the
 * families whose deterministic mode orders main's dQ adds (sp_family's
 * dq_ordered), main_det and dq in the others; pre, main, convert in all. */
int kcfg_bwd_has_part(const sp_kcfg *c, sp_bwd_part part);
/* The deterministic mode's main kernel orders its dQ adds (main_sem), and
 * runs pre -> main_sem -> convert, with dq_accum and semaphores. */
int kcfg_bwd_dq_ordered(const sp_kcfg *c);
/* The kernel's name, the config in it and kcfg_hash last (as kcfg_name):
 * spattn_bwd_main_bf16_d128_bm64_bn64_w4_s2_1a2b3c4d */
void kcfg_bwd_name(const sp_kcfg *c, sp_bwd_part part, char *buf, int n);
/* Threads per block of the part's kernel. */
int kcfg_bwd_threads(const sp_kcfg *c, sp_bwd_part part);
/* Dynamic shared memory of the part's kernel, in bytes (0 for pre and convert). */
/* dS^T tiles main keeps in shared memory: 1 (mma.sync), 2 (wgmma). */
int kcfg_bwd_ds_bufs(const sp_kcfg *c);
int kcfg_bwd_smem(const sp_kcfg *c, sp_bwd_part part);
/* Bytes of main's dQ staging (families with dq_bulk), 0 for the others:
 * every buffer of kcfg_bwd_dq_bufs, each with its 1024-byte alignment. */
int kcfg_bwd_dq_stage_bytes(const sp_kcfg *c);
/* dQ staging buffers of the warp-specialized main (WS_DQ_BUFS, one writer
 * thread each): 2 where two blocks per SM still fit in shared memory with
 * the second, else 1 (and 1 in the other families). */
int kcfg_bwd_dq_bufs(const sp_kcfg *c);
/* The warp-specialized main's deterministic order (WS_DET_ASCENDING,
 * kernels/bwd_ws.cuh): 1, KV tiles' turns ascending (blocks longest first,
 * each head's query tiles from the last), where BN = BM (d64); 0, main_sem's
 * descending order, elsewhere and in the other families.  Measured in
 * session 11 (bench/NOTES-bwd.md): the ascending order 6-8% faster at d64,
 * 1.5% slower at (1,16,16384,128) and 8% at (4,16,4096,128). */
int kcfg_bwd_det_ascending(const sp_kcfg *c);
/* The warp-specialized main's default (atomic) item order on a uniform batch
 * (WS_HEAD_MAJOR, kernels/bwd_ws.cuh, bwd_ws_item_at): 1, head by head (every
 * KV tile of one kv head and sequence, ascending, then the next), where
 * BN > BM (d128); 0, tile-major (KV tile 0 of every kv head and sequence
 * first), elsewhere.  Measured in session 16 (bench/NOTES-bwd.md). */
int kcfg_bwd_head_major(const sp_kcfg *c);
/* Query rows per block of pre and convert: KCFG_BWD_AUX_THREADS / (head_dim / 8). */
int kcfg_bwd_aux_rows(const sp_kcfg *c);
/* Queries main handles per step (Q_SUB: bm, at most 64) and keys dq
 * handles per step (K_SUB: bn, at most 64).  A step's S and dP live in
 * registers next to the accumulators (dK and dV: head_dim floats per
 * thread in main; dQ: head_dim / 2 in dq). */
int kcfg_bwd_q_sub(const sp_kcfg *c);
int kcfg_bwd_k_sub(const sp_kcfg *c);
/* N rounded up to KCFG_BWD_ROW_PAD: the rows per head of the delta / LSE scratch. */
long long kcfg_bwd_seqlen_pad(long long N);

#endif
