/* Backward kernel configs: defaults, validation, the search space, and the
 * per-kernel quantities (threads, shared memory) that the emitter writes
 * into the kernels and the launch uses.  The shared-memory formulas here are
 * the ones the generated kernels static_assert (codegen/emit_bwd.c). */
#include "codegen/kcfg_bwd.h"
#include "codegen/family.h"

#include <stdio.h>

/* Default tiles, measured on an H100 (bf16, the spattn pattern at N 4096
 * and 16384): d128 64 x 128 with 8 warps, d64 128 x 128 with 8 warps; the
 * next best were within 5 %.  In main each warp owns 16 keys and keeps
 * their dK and dV rows in registers (head_dim floats per thread) next to
 * S^T and dP^T of a step of up to 64 queries (kcfg_bwd_q_sub): at d128
 * that is 240-255 registers, without spills on sm_80 and sm_90a (checked
 * by tests/unit/test_codegen_bwd.c).  GPUs with 99 KiB of shared memory
 * per block (sm_86, sm_89) get tiles that fit it: 32 x 64 and 64 x 128. */
void kcfg_default_bwd(sp_kcfg *c, int sm)
{
    int small_smem = sm == 86 || sm == 89;
    c->stages = 2;
    c->mma = SP_MMA_SYNC;
    if (sm == 90 && (c->head_dim == 128 || c->head_dim == 64)) {
        /* Hopper: a warpgroup of 64 keys per 64 dims on wgmma (d128: two, 2
         * stages; d64: one, 3 stages), on the warp-specialized kernel (a
         * producer warpgroup loading by TMA, dQ added by TMA): its
         * forward+backward 10% (d64) to 26% faster than the wgmma kernel's
         * at the shapes of DESIGN.md (session 8, bench/NOTES-bwd.md),
         * packed sequences included (session 9). */
        c->mma = SP_MMA_WS;
        c->bm = 64;
        c->bn = c->head_dim;
        c->warps = c->bn / 16;
        c->stages = c->head_dim == 64 ? 3 : 2;
        return;
    }
    if (c->head_dim >= 128) {
        c->bm = small_smem ? 32 : 64;
        c->bn = small_smem ? 64 : 128;
    } else {
        c->bm = small_smem ? 64 : 128;
        c->bn = 128;
    }
    c->warps = c->bn / 16;
}

/* The deterministic mode's own default (a plan picks one config per mode):
 * kcfg_default_bwd's, but 2 stages for the warp-specialized kernel at d64,
 * where the second stage's shared memory leaves room for a second dQ
 * staging buffer and writer (kcfg_bwd_dq_bufs: 2).  Measured in session 10
 * (bench/NOTES-bwd.md, "Session 10, v6"): the deterministic d64 forward +
 * backward 0.392 ms at s3 against 0.365 at s2, as the turns of the dQ adds
 * then overlap two steps; in the default mode s3 stays about 1% faster. */
void kcfg_default_bwd_det(sp_kcfg *c, int sm)
{
    kcfg_default_bwd(c, sm);
    if (c->mma == SP_MMA_WS && c->head_dim == 64) c->stages = 2;
}

/* Bytes of one head_dim row in shared memory: d64 and d128 rows are whole
 * multiples of 128 bytes and XOR-swizzled (the prelude's tile_off), no padding. */
static int bwd_row_bytes(int head_dim) { return head_dim * 2; }

int kcfg_bwd_ds_bufs(const sp_kcfg *c) { return kcfg_family(c) ? kcfg_family(c)->ds_bufs : 1; }

/* dQ staging of the wgmma main kernel: each warpgroup (64 keys) stages its
 * head_dim / warpgroups dims of the query tile's dQ in fp32 rows padded by
 * 32 bytes (so that a warp's fragment stores meet no bank twice in a
 * half-warp), from which bulk reduce-adds go to the fp32 accumulator.  The
 * ws kernel's unpadded tile fits it with its 1024-byte alignment; its second
 * buffer (kcfg_bwd_dq_bufs) adds a tile. */
static int dq_stage_bytes_one(const sp_kcfg *c)
{
    if (!kcfg_family(c) || !kcfg_family(c)->dq_bulk) return 0;
    int groups = c->bn / 64;
    return groups * c->bm * (c->head_dim / groups * 4 + 32);
}

/* The ws kernel's second staging buffer: one unpadded fp32 dQ tile (bwd_ws.cuh's
 * WS_DQ_BYTES, BM x HEAD_DIM), a multiple of 1024 bytes for BM 64. */
static int ws_dq_tile_bytes(const sp_kcfg *c) { return c->bm * c->head_dim * 4; }

/* The part's shared memory with dq bytes of dQ staging (main, main_sem). */
static long bwd_smem_with(const sp_kcfg *c, sp_bwd_part part, long dq)
{
    long rb = bwd_row_bytes(c->head_dim);
    long kv = 2L * c->bn * rb;                            /* K and V tiles */
    long qdo = 2L * c->stages * c->bm * rb;               /* Q and dO tiles per stage */
    long ld = 2L * c->stages * c->bm * 4;                 /* LSE and delta rows per stage */
    /* dS^T staging for dQ; the wgmma kernel keeps two, as it computes dQ of
     * a query tile during the next tile's step. */
    long ds = (long)c->bn * c->bm * 2 * kcfg_bwd_ds_bufs(c);
    /* Slack: the kernels round the base up to 128 so the swizzle holds (the
     * wgmma main kernels to 1024, as wgmma's 128-byte swizzle needs). */
    long slack = kcfg_family(c) ? kcfg_family(c)->smem_slack : 128;
    switch (part) {
    case BWD_MAIN:
    case BWD_MAIN_SEM: return slack + kv + qdo + ld + ds + dq;
    case BWD_MAIN_DET: return slack + kv + qdo + ld;
    case BWD_DQ: return 128 + 2L * c->bm * rb + (long)c->stages * kv;
    default: return 0;
    }
}

/* Two blocks of smem dynamic bytes fit one Hopper SM: each also holds up to 1 KiB of
 * static shared memory (the stage slots, the barriers) and the 1 KiB the hardware
 * reserves.  The rule for ctas (kcfg_derive_bwd) and for the second dQ buffer. */
static int two_blocks_fit(long smem) { return 2 * (smem + 2048) <= KCFG_SM90_SMEM_PER_SM; }

/* The ws kernel's dQ staging buffers: two where the second leaves two blocks per SM
 * (kcfg_derive_bwd's rule for ctas, on main's shared memory with one buffer plus a
 * tile; not on ctas, which is derived from the shared memory that this sets). */
int kcfg_bwd_dq_bufs(const sp_kcfg *c)
{
    if (!kcfg_family(c) || !kcfg_family(c)->producer_threads || !kcfg_family(c)->dq_bulk) return 1;
    long smem = bwd_smem_with(c, BWD_MAIN, dq_stage_bytes_one(c)) + ws_dq_tile_bytes(c);
    return two_blocks_fit(smem) ? 2 : 1;
}

/* Why only where BN = BM: there a KV tile meets a query tile one step after the next tile in
 * main_sem's order, and the turns were on the chain (1.20x the default's backward at d64 s2);
 * at BN = 2 BM that order has two steps of slack and the ascending one lost (session 11). */
int kcfg_bwd_det_ascending(const sp_kcfg *c)
{
    return kcfg_family(c) && kcfg_family(c)->producer_threads && c->bn == c->bm;
}

/* Why only where BN > BM (d128): there the blocks running at once on one head keep its Q, dO
 * and dQ accumulator rows in L2 (DRAM bytes of main -26% at (1,16,16,16384,128)), which frees
 * power under the H200's cap; at BN = BM (d64) two blocks share an SM and head by head was 4%
 * slower (session 16, bench/NOTES-bwd.md). */
int kcfg_bwd_head_major(const sp_kcfg *c)
{
    return kcfg_family(c) && kcfg_family(c)->producer_threads && c->bn > c->bm;
}

int kcfg_bwd_dq_stage_bytes(const sp_kcfg *c)
{
    return dq_stage_bytes_one(c) + (kcfg_bwd_dq_bufs(c) - 1) * ws_dq_tile_bytes(c);
}

int kcfg_bwd_smem(const sp_kcfg *c, sp_bwd_part part)
{
    return (int)bwd_smem_with(c, part, kcfg_bwd_dq_stage_bytes(c));
}

int kcfg_bwd_threads(const sp_kcfg *c, sp_bwd_part part)
{
    switch (part) {
    case BWD_MAIN:
    case BWD_MAIN_DET:
    case BWD_MAIN_SEM: return 32 * (c->bn / 16) + (kcfg_family(c) ? kcfg_family(c)->producer_threads : 0);
    case BWD_DQ: return 32 * (c->bm / 16);
    default: return KCFG_BWD_AUX_THREADS;
    }
}

int kcfg_bwd_aux_rows(const sp_kcfg *c) { return KCFG_BWD_AUX_THREADS / (c->head_dim / 8); }

int kcfg_bwd_q_sub(const sp_kcfg *c) { return c->bm < 64 ? c->bm : 64; }

int kcfg_bwd_k_sub(const sp_kcfg *c) { return c->bn < 64 ? c->bn : 64; }

long long kcfg_bwd_seqlen_pad(long long N)
{
    return (N + KCFG_BWD_ROW_PAD - 1) / KCFG_BWD_ROW_PAD * KCFG_BWD_ROW_PAD;
}

const char *kcfg_bwd_part_name(sp_bwd_part part)
{
    static const char *names[BWD_PARTS] = { "pre", "main", "main_det", "dq", "convert", "main_sem" };
    return part >= 0 && part < BWD_PARTS ? names[part] : "?";
}

int kcfg_bwd_dq_ordered(const sp_kcfg *c) { return kcfg_family(c) && kcfg_family(c)->dq_ordered; }

int kcfg_bwd_has_part(const sp_kcfg *c, sp_bwd_part part)
{
    switch (part) {
    case BWD_PRE:
    case BWD_MAIN:
    case BWD_CONVERT: return 1;
    case BWD_MAIN_DET:
    case BWD_DQ: return !kcfg_bwd_dq_ordered(c);
    case BWD_MAIN_SEM: return kcfg_bwd_dq_ordered(c);
    default: return 0;
    }
}

void kcfg_bwd_name(const sp_kcfg *c, sp_bwd_part part, char *buf, int n)
{
    char hash[9];
    kcfg_hash(c, hash);
    snprintf(buf, (size_t)n, "spattn_bwd_%s_%s_d%d_bm%d_bn%d_w%d_s%d%s_%s", kcfg_bwd_part_name(part),
             sp_dtype_name(c->dtype), c->head_dim, c->bm, c->bn, c->warps, c->stages,
             kcfg_family(c) ? kcfg_family(c)->name_suffix : "", hash);
}

void kcfg_bwd_main_name(const sp_kcfg *c, char *buf, int n) { kcfg_bwd_name(c, BWD_MAIN, buf, n); }

/* The wgmma main kernels (codegen/emit_bwd_wgmma.c): warpgroups of 64
 * keys, query tiles of 64 rows (wgmma's N for S^T; a dS^T row is then one
 * 128-byte swizzled row), and dQ split by dims over the warpgroups, one
 * 64-dim column block each. */
static int derive_bwd_wgmma(const sp_kcfg *c, sp_err *e)
{
    if (c->sm != 90)
        return sp_fail(e, SP_EXIT_USAGE, "wgmma tiles need sm_90a (Hopper); this config targets sm_%d", c->sm);
    if (c->bm != 64) return sp_fail(e, SP_EXIT_USAGE, "wgmma backward tile BM %d must be 64", c->bm);
    /* Each warpgroup keeps dQ of 64 dims in flight (32 registers) beside dK,
     * dV, S^T and dP^T: BN / 64 warpgroups must split head_dim into 64s. */
    if (c->bn % 64 != 0 || c->head_dim / (c->bn / 64) != 64)
        return sp_fail(e, SP_EXIT_USAGE,
                       "wgmma backward tile BN %d must be 64 keys per 64 dims of head_dim %d (BN = head_dim)",
                       c->bn, c->head_dim);
    return 0;
}

int kcfg_derive_bwd(sp_kcfg *c, sp_err *e)
{
    if (c->kind != SP_KIND_BWD || !kcfg_family(c)) return sp_fail(e, SP_EXIT_USAGE, "internal: not a backward config");
    if (c->head_dim != 64 && c->head_dim != 128)
        return sp_fail(e, SP_EXIT_USAGE, "head_dim %d is not supported by the backward kernels (64, 128)", c->head_dim);
    if (c->dtype != SP_BF16 && c->dtype != SP_FP16) return sp_fail(e, SP_EXIT_USAGE, "unknown dtype %d", (int)c->dtype);
    if (c->heads < 1 || c->kv_heads < 1 || c->heads % c->kv_heads != 0)
        return sp_fail(e, SP_EXIT_USAGE, "heads %d must be a multiple of kv_heads %d", c->heads, c->kv_heads);
    if (c->max_intervals < 1 || c->max_intervals > SP_MAX_INTERVALS)
        return sp_fail(e, SP_EXIT_USAGE, "max_intervals %d is out of range 1..%d", c->max_intervals, SP_MAX_INTERVALS);
    /* bm: the dS^T staging rows are bm / 8 chunks, swizzled for 4, 8 or 16
     * chunks; and bm must divide KCFG_BWD_ROW_PAD. */
    if (c->bm != 32 && c->bm != 64 && c->bm != 128)
        return sp_fail(e, SP_EXIT_USAGE, "backward tile BM %d must be 32, 64 or 128", c->bm);
    if (c->bn < 16 || c->bn > 128 || c->bn % 16 != 0)
        return sp_fail(e, SP_EXIT_USAGE, "backward tile BN %d must be a multiple of 16 in 16..128", c->bn);
    if (c->warps == 0) c->warps = c->bn / 16;
    if (c->warps != c->bn / 16)
        return sp_fail(e, SP_EXIT_USAGE, "backward tile BN %d needs %d warps (each warp owns 16 keys), not %d", c->bn,
                       c->bn / 16, c->warps);
    if (c->stages < 2 || c->stages > 3)
        return sp_fail(e, SP_EXIT_USAGE, "backward stages %d must be 2 or 3", c->stages);
    /* The wgmma main kernel's own rules (its family is sm_90a only). */
    if (kcfg_family(c)->hopper_only && derive_bwd_wgmma(c, e)) return -1;

    c->threads = kcfg_bwd_threads(c, BWD_MAIN);
    c->row_bytes = bwd_row_bytes(c->head_dim);
    c->q_in_regs = 0;
    int smem = 0;
    for (int part = 0; part < BWD_PARTS; part++)
        if (kcfg_bwd_has_part(c, (sp_bwd_part)part) && kcfg_bwd_smem(c, (sp_bwd_part)part) > smem)
            smem = kcfg_bwd_smem(c, (sp_bwd_part)part);
    /* 1 KiB stays free for static shared memory (the stage slots, the band plan). */
    if (smem > KCFG_SMEM_LIMIT - 1024)
        return sp_fail(e, SP_EXIT_USAGE, "backward tile %dx%d with %d stages needs %d bytes of shared memory, more than %d",
                       c->bm, c->bn, c->stages, smem, KCFG_SMEM_LIMIT - 1024);
    c->smem_bytes = smem;
    /* Two blocks per SM where two fit: the warp-specialized kernel at
     * head_dim 64 has one consumer warpgroup, which leaves the tensor cores
     * idle while it runs its softmax-like steps; a second block fills them
     * (session 9: forward+backward 21% faster at (4,8,8,4096,64)).  The
     * consumers then get (32768 - 128 x 24) / 128 = 232 registers. */
    c->ctas = kcfg_family(c)->producer_threads && two_blocks_fit(smem) ? 2 : 1;
    return 0;
}

/* Registers a thread needs at least, roughly, in main: dK and dV rows
 * (head_dim), S^T and dP^T (bm), about 40 for addresses and operands; in
 * dq: dQ rows (head_dim / 2), S and dP (bn), about 40.  A candidate over
 * the per-thread budget of its block size would spill. */
static int fits_registers(const sp_kcfg *c)
{
    int main_threads = kcfg_bwd_threads(c, BWD_MAIN), dq_threads = kcfg_bwd_threads(c, BWD_DQ);
    int main_budget = 65536 / main_threads, dq_budget = 65536 / dq_threads;
    if (kcfg_family(c)->producer_threads) main_budget = kcfg_ws_consumer_regs(c);   /* setmaxnreg's share */
    if (main_budget > 255) main_budget = 255;
    if (dq_budget > 255) dq_budget = 255;
    return c->head_dim + c->bm + 40 <= main_budget && c->head_dim / 2 + c->bn + 40 <= dq_budget;
}

/* Append the config c with the given kind and tile to out (cap entries) if
 * it derives and fits the register estimate; *count counts every fit, so a
 * caller can tell that cap was too small. */
static void add_candidate(const sp_kcfg *c, sp_mma_kind mma, int bm, int bn, int stages, sp_kcfg *out, int cap, int *count)
{
    sp_kcfg t = *c;
    t.kind = SP_KIND_BWD;
    t.mma = mma;
    t.bm = bm;
    t.bn = bn;
    t.stages = stages;
    t.warps = 0;
    sp_err e = { 0 };
    if (kcfg_derive_bwd(&t, &e) || !fits_registers(&t)) return;
    if (*count < cap) out[*count] = t;
    (*count)++;
}

/* mma.sync: BM and BN 32, 64 or 128, 2 or 3 stages. */
int kcfg_candidates_bwd_mma(const sp_kcfg *c, sp_kcfg *out, int cap, int count)
{
    static const int bms[] = { 32, 64, 128 }, bns[] = { 32, 64, 128 }, stages[] = { 2, 3 };
    for (size_t i = 0; i < sizeof bms / sizeof bms[0]; i++)
        for (size_t j = 0; j < sizeof bns / sizeof bns[0]; j++)
            for (size_t k = 0; k < sizeof stages / sizeof stages[0]; k++)
                add_candidate(c, SP_MMA_SYNC, bms[i], bns[j], stages[k], out, cap, &count);
    return count;
}

/* Hopper, warp-specialized (bwd-ws): the wgmma kernels' tiles with a producer warpgroup. */
int kcfg_candidates_bwd_ws(const sp_kcfg *c, sp_kcfg *out, int cap, int count)
{
    for (int stages = 2; stages <= 3; stages++) add_candidate(c, SP_MMA_WS, 64, c->head_dim, stages, out, cap, &count);
    return count;
}

/* Hopper: the wgmma main kernels, BM 64, BN = head_dim, 2 or 3 stages. */
int kcfg_candidates_bwd_wgmma(const sp_kcfg *c, sp_kcfg *out, int cap, int count)
{
    for (int stages = 2; stages <= 3; stages++) add_candidate(c, SP_MMA_WGMMA, 64, c->head_dim, stages, out, cap, &count);
    return count;
}
