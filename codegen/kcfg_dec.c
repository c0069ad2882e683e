/* The decode family's config rules (kernels/decode.cuh): tiles, the
 * heuristic default and the tuner's candidates.  A decode block has BM = 16
 * query rows (the GROUP heads of a kv head times the T new tokens, padded:
 * one m16 MMA tile); its WARPS warps split each key tile of BN keys, BN /
 * WARPS (a multiple of 16) each, and merge at the end through the stages'
 * shared memory. */
#include "codegen/family.h"
#include "codegen/kcfg.h"

#include <string.h>

/* Memory-bound: what matters is bytes in flight per SM.  d <= 128: BN 64
 * over 4 warps, 3 stages (2 tiles ahead; 100 KB at d128, so two CTAs share
 * an SM and overlap each other's start and merge); d256: BN 32 over 2 warps,
 * 3 stages (Q stays in shared memory: with O's 128 accumulators it would
 * spill). */
void kcfg_default_dec(sp_kcfg *c, int sm)
{
    (void)sm;
    c->mma = SP_MMA_SYNC;
    c->bm = 16;
    c->bn = 64;
    c->warps = 4;
    c->stages = 3;
    c->splits = 0;
    if (c->head_dim >= 256) {
        c->bn = 32;
        c->warps = 2;
    } else if (c->head_dim <= 64) {
        c->stages = 4;
    }
}

int kcfg_dec_merge_bytes(const sp_kcfg *c)
{
    return c->warps * c->bm * (c->head_dim + 2) * 4;
}

int kcfg_derive_dec(sp_kcfg *c, sp_err *e)
{
    if (c->kind != SP_KIND_DEC) return sp_fail(e, SP_EXIT_USAGE, "internal: not a decode config");
    if (c->head_dim != 32 && c->head_dim != 64 && c->head_dim != 96 && c->head_dim != 128 && c->head_dim != 256)
        return sp_fail(e, SP_EXIT_USAGE, "head_dim %d is not supported by the decode kernel (32, 64, 96, 128, 256)",
                       c->head_dim);
    if (c->heads < 1 || c->kv_heads < 1 || c->heads % c->kv_heads != 0)
        return sp_fail(e, SP_EXIT_USAGE, "heads %d must be a multiple of kv_heads %d", c->heads, c->kv_heads);
    if (c->max_intervals < 1 || c->max_intervals > SP_MAX_INTERVALS)
        return sp_fail(e, SP_EXIT_USAGE, "max_intervals %d is out of range 1..%d", c->max_intervals, SP_MAX_INTERVALS);
    if (c->bm != 16)
        return sp_fail(e, SP_EXIT_USAGE, "decode tile BM %d must be 16 (the query rows of one m16 MMA tile)", c->bm);
    if (c->warps == 0) c->warps = c->bn / 16 < 4 ? c->bn / 16 : 4;
    if (c->warps < 1 || c->warps > 8)
        return sp_fail(e, SP_EXIT_USAGE, "decode warps %d must be in 1..8", c->warps);
    if (c->bn < 16 || c->bn > 256 || c->bn % (16 * c->warps) != 0)
        return sp_fail(e, SP_EXIT_USAGE, "decode tile BN %d must be in 16..256 and split into %d warps of a multiple of 16 keys",
                       c->bn, c->warps);
    if (c->stages < 2 || c->stages > 8)
        return sp_fail(e, SP_EXIT_USAGE, "decode stages %d must be in 2..8", c->stages);
    if (c->splits < 0 || c->splits > KCFG_DEC_MAX_SPLITS)
        return sp_fail(e, SP_EXIT_USAGE, "decode splits %d must be in 0..%d (0: chosen at launch)", c->splits,
                       KCFG_DEC_MAX_SPLITS);
    c->threads = 32 * c->warps;
    c->row_bytes = kcfg_row_bytes(c->head_dim);
    c->q_in_regs = c->head_dim <= 128;
    long stages = (long)c->stages * 2 * c->bn * c->row_bytes, merge = kcfg_dec_merge_bytes(c);
    long smem = 128 + (long)c->bm * c->row_bytes + (stages > merge ? stages : merge);
    if (smem > KCFG_SMEM_LIMIT - 4096)
        return sp_fail(e, SP_EXIT_USAGE, "decode tile %dx%d with %d stages needs %ld bytes of shared memory, more than %d",
                       c->bm, c->bn, c->stages, smem, KCFG_SMEM_LIMIT - 4096);
    c->smem_bytes = (int)smem;
    return 0;
}

/* BN 32..128 over 1, 2 or 4 warps (16 or 32 keys each), 2..4 stages. */
int kcfg_candidates_dec(const sp_kcfg *c, sp_kcfg *out, int cap, int count)
{
    static const int bns[] = { 32, 64, 128 }, warps[] = { 1, 2, 4 }, stages[] = { 2, 3, 4 };
    for (size_t i = 0; i < sizeof bns / sizeof bns[0]; i++)
        for (size_t w = 0; w < sizeof warps / sizeof warps[0]; w++)
            for (size_t s = 0; s < sizeof stages / sizeof stages[0]; s++) {
                if (bns[i] / warps[w] > 32) continue;
                sp_kcfg t = *c;
                t.mma = SP_MMA_SYNC;
                t.bm = 16;
                t.bn = bns[i];
                t.warps = warps[w];
                t.stages = stages[s];
                sp_err e = { 0 };
                if (kcfg_derive(&t, &e)) continue;
                if (count < cap) out[count] = t;
                count++;
            }
    return count;
}
