/* The kernel config: every tile choice of a generated kernel in one struct
 * (flash-attention's kernel_traits).  The tuner fills the choices, kcfg_derive
 * computes what follows from them (threads, shared memory) and rejects
 * impossible combinations; emitters only read a derived config and never
 * pick a tile size themselves. */
#ifndef SPATTN_KCFG_H
#define SPATTN_KCFG_H

#include "codegen/spec.h"

/* The passes: forward, backward, and decoding from a KV cache (split-KV,
 * kernels/decode.cuh; codegen/kcfg_dec.c has its rules). */
typedef enum { SP_KIND_FWD = 0, SP_KIND_BWD = 1, SP_KIND_DEC = 2 } sp_kernel_kind;
/* The kernel families of the forward: mma.sync (sm_80 on), wgmma with every
 * warp loading and computing (sm_90a), and the warp-specialized wgmma kernel
 * (sm_90a: a TMA producer warpgroup, consumer warpgroups, persistent). */
typedef enum { SP_MMA_SYNC = 0, SP_MMA_WGMMA = 1, SP_MMA_WS = 2 } sp_mma_kind;

typedef struct {
    /* The problem, fixed by the spec (filled by kcfg_for_spec). */
    sp_kernel_kind kind;
    sp_dtype dtype;
    int head_dim;
    int heads, kv_heads;
    sp_pattern_kind pattern;
    int max_intervals;     /* most intervals any head can have: sizes the band table */
    int sm;                /* GPU architecture the config targets (80, 86, 89, 90, ...) */

    /* Tile choices: the tuner's search space. */
    int bm;                /* query rows per block (fwd) / per query tile (bwd) */
    int bn;                /* keys per KV tile */
    int warps;             /* warps per block (fwd: each owns BM / warps = 16 or 32 query rows) */
    int stages;            /* cp.async pipeline depth of K/V (fwd) or Q/dO (bwd) tiles */
    int splits;            /* decode: CTAs sharing one (batch, kv head, row block)'s key tiles;
                            * 0: chosen at launch from the GPU's SMs (runtime/decode.c).  A launch
                            * parameter, not compiled in (not in the hash or the name) */
    int mma;               /* SP_MMA_SYNC: mma.sync (sm_80 on); SP_MMA_WGMMA: Hopper's warpgroup
                            * wgmma (sm_90a only; forward, head_dim 64 and 128); SP_MMA_WS: the
                            * warp-specialized wgmma forward (sm_90a; warps counts the consumers') */

    /* Derived by kcfg_derive. */
    int threads;
    int smem_bytes;        /* dynamic shared memory per block (with 128 bytes of alignment slack) */
    int row_bytes;         /* bytes per head_dim row of a shared-memory tile (padding included) */
    int q_in_regs;         /* 1: Q fragments live in registers; 0: re-read from shared memory (where keeping them would spill) */
    int ctas;              /* blocks per SM the registers are split for (__launch_bounds__'s second argument;
                            * 0 or 1: one): 2 for the warp-specialized backward where two fit (kcfg_derive_bwd) */
} sp_kcfg;

/* Bytes per shared-memory row of head_dim 16-bit values (the mma.sync
 * layout, kernels/layout.cuh): swizzled rows need no padding, d96 gets one
 * chunk more. */
int kcfg_row_bytes(int head_dim);

/* Shared memory one block may use (H100/A100 opt-in limit: 227 KiB). */
#define KCFG_SMEM_LIMIT (227 * 1024)
/* Shared memory of one Hopper SM (H100/H200: 228 KiB), all its blocks
 * together; the hardware keeps 1 KiB of it per block. */
#define KCFG_SM90_SMEM_PER_SM (228 * 1024)

/* Fill the problem part from a spec and pattern, and the heuristic default
 * tiles for the kind and GPU architecture (sm: 80, 86, 89, 90, ...). */
void kcfg_for_spec(sp_kcfg *c, const sp_spec *s, const sp_pattern *p, sp_kernel_kind kind, int sm);
/* Validate tile choices and compute the derived fields; -1 and an error
 * (SP_EXIT_USAGE) naming the bad choice.  Forward: each warp owns 16 or 32
 * query rows (BM = 16 * warps or 32 * warps); warps == 0 means "pick"
 * (32 rows per warp from BM 128 up, else 16).  SP_KIND_BWD is not supported
 * here yet and fails. */
int kcfg_derive(sp_kcfg *c, sp_err *e);
/* Shared memory a forward config has beyond Q_TILE_BYTES + STAGES * 2 KV
 * tiles: the base's alignment slack, and the warp-specialized kernel's
 * second Q tile (the generated kernel static_asserts the total). */
int kcfg_smem_extra(const sp_kcfg *c);
/* The warp-specialized forward's registers per thread after setmaxnreg:
 * the producer warpgroup keeps KCFG_WS_PRODUCER_REGS, the consumers share
 * the rest of the block's pool (its launch registers: the 64K over c->ctas
 * blocks per SM; a multiple of 8, at most 240 as in FlashAttention-3): 240
 * with 2 consumer warpgroups, 160 with 3, 232 for the d64 backward at two
 * blocks per SM.  The emitter writes it into the kernel and the tuner
 * prunes by it.  Also the backward's (kcfg_bwd.c).  c derived. */
#define KCFG_WS_PRODUCER_REGS 24
int kcfg_ws_consumer_regs(const sp_kcfg *c);
/* Parse a --tile argument: "BMxBN" or "BMxBN:wW:sS" (e.g. 128x64:w4:s2,
 * also 128x64:s3), optionally ending in ":wgmma" (Hopper's warpgroup MMA)
 * or ":ws" (the warp-specialized wgmma forward, or backward main kernel:
 * kernels/bwd_ws.cuh); without either, mma.sync.  Stages not given keep c's value if the kernel
 * kind stays, else become that kind's default (mma.sync 2, wgmma 3); warps
 * not given become 0 (kcfg_derive picks them).  Does not derive. */
int kcfg_parse_tile(const char *arg, sp_kcfg *c, sp_err *e);
/* (Decode configs also take ":kK" after the stages: K splits, 0 when not
 * given; kcfg_tile_string writes it when set.) */
/* The kernel's name, which carries its parameters and ends in 8 hex digits
 * of kcfg_hash, so that two kernels that differ in anything compiled in
 * (heads, kv heads, max intervals, the dense baseline) are never named
 * alike: spattn_fwd_bf16_d128_bm128_bn64_w4_s2_1a2b3c4d (wgmma kernels:
 * ..._s3_wg_1a2b3c4d, warp-specialized ones ..._s2_ws_1a2b3c4d).  The one place kernel names are made: launches,
 * `compile`, `tune` and the backward parts (kcfg_bwd_name) use it. */
void kcfg_name(const sp_kcfg *c, char *buf, int n);
/* 1 if the derived configs a and b make the same kernel: same kind and
 * kcfg_name (the tiles, and kcfg_hash of everything compiled in); splits,
 * a launch choice, may differ.  A plan whose two backward modes get the
 * same config loads its kernel once. */
int kcfg_same_kernel(const sp_kcfg *a, const sp_kcfg *b);
/* "fwd", "bwd" or "dec": in kernel names, database keys and JSON (the
 * deterministic backward's database rows are "bwd-det": config_kind_name). */
const char *kcfg_kind_name(sp_kernel_kind kind);
/* 8 lowercase hex digits (XXH32) of the specialization constants of a
 * derived config: kind, dtype, head_dim, heads, kv_heads, dense or banded,
 * max_intervals, tiles, warps, stages, MMA kind (everything else emitted
 * follows from these). */
void kcfg_hash(const sp_kcfg *c, char out[9]);
/* "128x64:w4:s2" or "128x128:w8:s2:wgmma", the form kcfg_parse_tile reads. */
void kcfg_tile_string(const sp_kcfg *c, char *buf, int n);
/* The tuner's search space for c's problem: valid (derived) configs, at most
 * cap; returns the count. */
int kcfg_candidates(const sp_kcfg *c, sp_kcfg *out, int cap);

#endif
