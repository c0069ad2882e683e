/* kernels/bwd_wgmma.cuh: the backward's main kernel on Hopper's wgmma
 * (sm_90a): the algorithm of the mma.sync main kernel (bwd_main.cuh), with
 * all five matrix products on the warpgroup MMA.
 *
 * One CTA owns BN keys of one (batch, kv head); warpgroup wg owns keys
 * 64wg..64wg+63 and keeps their dK and dV in registers (64 x HEAD_DIM fp32
 * each, the wgmma accumulators).  Per query tile of BM = 64 rows that the
 * bands bring to these keys (bwd_iter.cuh's cursor):
 *
 *     S^T  = K Q^T        wgmma SS: A = this warpgroup's K rows, B = the Q tile (both K-major)
 *     dP^T = V dO^T       wgmma SS, the same with V and dO
 *     P^T  = exp2(S^T c - lse2), masked            (per warp: bwd_parts.cuh)
 *     dV  += P^T dO       wgmma RS: A = P^T from registers, B = dO read transposed
 *     dS^T = P^T (dP^T - delta)
 *     dK  += dS^T Q       wgmma RS, B = Q read transposed
 *     dS^T -> shared memory (one of two buffers)
 *     dQ   = dS K         wgmma SS, both read transposed, during the next tile's step:
 *                          warpgroup wg computes dims wg * DQ_N.. of the tile's dQ,
 *                          stages them in shared memory (fp32), and each warp adds its
 *                          16 rows to dq_accum by bulk reduce-adds (the copy engine
 *                          adds whole rows in L2: no atomic instruction per value)
 *
 * S^T and dP^T are issued together at the top of a step (FlashAttention-3's order), so
 * that dP^T runs on the tensor cores while the warps compute P^T.
 *
 * The accumulators of a 64-row wgmma hold, per warp, exactly the m16n8
 * fragments of that warp's 16 rows, so the per-warp parts are the mma.sync
 * kernel's.  Every warpgroup issues every wgmma of every step, even where
 * its warps skip the tile (P = 0 then): wgmma on a path ptxas cannot prove
 * uniform would be serialized (C7518).  The entries (codegen/emit_bwd.c)
 * call bwd_main_body<true> (main) and <true, true> (main_sem: the same with
 * its dQ adds in a fixed order, bitwise repeatable; bwd_order.cuh). */
#pragma once
#include "wgmma.cuh"
#include "bwd_parts.cuh"
#include "tma.cuh"
#include "bwd_order.cuh"

enum : int {
    WG_KEYS = 64,                           /* keys per warpgroup: wgmma's M */
    WARPGROUPS = BN / WG_KEYS,
    DQ_N = HEAD_DIM / WARPGROUPS,           /* dims of dQ per warpgroup */
    DQ_ROW = DQ_N * 4 + 32,                 /* a staged dQ row (fp32), padded: see dq_stage */
};
static_assert(DQ_STAGE_BYTES == 0 || DQ_STAGE_BYTES == WARPGROUPS * BM * DQ_ROW + (WS_DQ_BUFS - 1) * BM * HEAD_DIM * 4,
              "kcfg_bwd_dq_stage_bytes disagrees");   /* bwd_ws.cuh's second buffer: a tile */
static_assert(BM == 64 && DS_ROW_BYTES == SW_ROW, "a dS^T row is one 128-byte swizzled row");
static_assert(BN % WG_KEYS == 0 && DQ_N % 64 == 0, "whole column blocks per warpgroup");

/* S^T = K Q^T and dP^T = V dO^T, one k16 step of dims (accumulate = 0 on the first). */
DEV void wgmma_st(float (&d)[BM / 8][4], u64 desc_a, u64 desc_b, int accumulate)
{
    wgmma_op<BM>::ss(d, desc_a, desc_b, accumulate);
}
/* dV += P^T dO and dK += dS^T Q, one k16 step of queries: A from registers, B transposed. */
DEV void wgmma_acc(float (&d)[HEAD_DIM / 8][4], const u32 (&a)[4], u64 desc_b)
{
    wgmma_op<HEAD_DIM>::rs(d, a, desc_b);
}
/* dQ = dS K, one k16 step of keys: A (dS^T stored) and B (K) both read transposed. */
DEV void wgmma_dq(float (&d)[DQ_N / 8][4], u64 desc_a, u64 desc_b, int accumulate)
{
    wgmma_op<DQ_N>::ss_t(d, desc_a, desc_b, accumulate);
}

/* ==== The five products of a step, each one commit group ====
 * Descriptors (smem_desc) point at a tile's first byte; a k16 step adds its byte offset / 16. */

/* d (64 keys x BM queries) = A B^T over HEAD_DIM: A = this warpgroup's 64 rows of the K or V
 * tile (da: BN-row tile), B = the Q or dO tile (db: BM-row tile).  Step kk is 32 bytes into
 * column block kk / 4 of both. */
DEV void issue_st(float (&d)[BM / 8][4], u64 da, u64 db)
{
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; ++kk)
        wgmma_st(d, da + (((kk >> 2) * BN * SW_ROW + (kk & 3) * 32) >> 4),
                 db + (((kk >> 2) * BM * SW_ROW + (kk & 3) * 32) >> 4), kk > 0);
    wgmma_commit();
}

/* The fp32 accumulators of P^T or dS^T (keys x queries), packed to 16 bits: the A fragments
 * of a product over queries, queries 16kc.. from n-blocks 2kc and 2kc + 1. */
DEV void pack_frags(u32 (&f)[BM / 16][4], const float (&s)[BM / 8][4])
{
#pragma unroll
    for (int kc = 0; kc < BM / 16; ++kc) {
        f[kc][0] = pack2(s[2 * kc][0], s[2 * kc][1]);
        f[kc][1] = pack2(s[2 * kc][2], s[2 * kc][3]);
        f[kc][2] = pack2(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        f[kc][3] = pack2(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
}

/* acc (64 keys x HEAD_DIM) += C B: C (P^T or dS^T) from registers, B = the dO or Q tile
 * read transposed (db: MN-major, column blocks BM * 128 apart); queries 16kc.. are 16kc rows
 * into it. */
DEV void issue_acc(float (&acc)[HEAD_DIM / 8][4], const u32 (&cf)[BM / 16][4], u64 db)
{
    regs_fence(acc);
    wgmma_fence();   /* cf was written by ordinary instructions */
#pragma unroll
    for (int kc = 0; kc < BM / 16; ++kc) wgmma_acc(acc, cf[kc], db + ((kc * 16 * SW_ROW) >> 4));
    wgmma_commit();
}

/* d (BM queries x DQ_N dims) = dS K over the BN keys: A = the dS^T tile (rows are keys, one
 * 128-byte row of BM queries each) read transposed, B = this warpgroup's column blocks of the
 * K tile read transposed; keys 16kk.. are 16kk rows into both. */
DEV void issue_dq(float (&d)[DQ_N / 8][4], u64 dds, u64 dk)
{
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
        wgmma_dq(d, dds + ((kk * 16 * SW_ROW) >> 4), dk + ((kk * 16 * SW_ROW) >> 4), kk > 0);
    wgmma_commit();
}

/* dS^T of the warp's 16 keys (keys 16w + g and + 8 of the tile; w the warp in the block)
 * -> its rows of a dS^T tile, from the packed A fragments of dK's product (pack_frags):
 * fragment kc holds queries 16kc.. as two 8-query chunks, each a 32-bit word per lane. */
DEV void store_ds_frags(u32 sdS, const u32 (&f)[BM / 16][4], int warp, int lane)
{
    const int r = 16 * warp + (lane >> 2), t = lane & 3;
#pragma unroll
    for (int kc = 0; kc < BM / 16; ++kc) {
        st_shared_u32(sdS + bwd_ds_off(r, 2 * kc) + 4 * t, f[kc][0]);
        st_shared_u32(sdS + bwd_ds_off(r + 8, 2 * kc) + 4 * t, f[kc][1]);
        st_shared_u32(sdS + bwd_ds_off(r, 2 * kc + 1) + 4 * t, f[kc][2]);
        st_shared_u32(sdS + bwd_ds_off(r + 8, 2 * kc + 1) + 4 * t, f[kc][3]);
    }
}

/* dQ (unscaled) += d through shared memory: the warp's 16 rows of the query tile go into
 * its rows of this warpgroup's staging tile (sdq: the warpgroup's row 0, DQ_ROW bytes a
 * row), then lanes 0..15 each add one row to the fp32 accumulator (dqa: the head's row 0,
 * dqa_sn floats a row; col0: this warpgroup's first dim) by a bulk reduce-add.  Lane l
 * holds rows i0 + l/4 and + 8 (i0: the warp's first row), dims 8nb + 2(l%4) + {0, 1}.
 * The rows are padded by 32 bytes: lane (g, t) then stores at word 8g + 2t (+ 8nb) of a
 * bank cycle, so no half-warp meets a bank twice.  Before overwriting its rows, a lane
 * waits until its own previous reduce-add has read them; rows >= n are not added.
 * dq_stage is the two halves, dq_stage_rows then dq_add_rows; main_sem puts its turn
 * between them (dq_add_in_turn). */
DEV void dq_stage_rows(u32 sdq, const float (&d)[DQ_N / 8][4], int warp_in_wg, int lane)
{
    const u32 rows = sdq + 16 * warp_in_wg * DQ_ROW;
    if (lane < 16) tma_store_wait_read<0>();   /* this lane's row of the last tile is read */
    __syncwarp();
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nb = 0; nb < DQ_N / 8; ++nb) {
        st_shared_v2f32(rows + g * DQ_ROW + (8 * nb + 2 * t) * 4, d[nb][0], d[nb][1]);
        st_shared_v2f32(rows + (g + 8) * DQ_ROW + (8 * nb + 2 * t) * 4, d[nb][2], d[nb][3]);
    }
    fence_proxy_async();   /* ordinary stores, read next by the copy engine */
}

/* The adds of the staged rows; the caller has made every lane's stores visible to the
 * warp (__syncwarp) since dq_stage_rows. */
DEV void dq_add_rows(u32 sdq, float *dqa, long long dqa_sn, int i0, int col0, int n, int warp_in_wg, int lane)
{
    const u32 rows = sdq + 16 * warp_in_wg * DQ_ROW;
    if (lane < 16 && i0 + lane < n) {
        bulk_reduce_add_f32(dqa + (long long)(i0 + lane) * dqa_sn + col0, rows + lane * DQ_ROW, DQ_N * 4);
        tma_store_commit();
    }
}

DEV void dq_stage(u32 sdq, float *dqa, long long dqa_sn, const float (&d)[DQ_N / 8][4], int i0, int col0,
                  int n, int warp_in_wg, int lane)
{
    dq_stage_rows(sdq, d, warp_in_wg, lane);
    __syncwarp();
    dq_add_rows(sdq, dqa, dqa_sn, i0, col0, n, warp_in_wg, lane);
}

/* main_sem's adds of a staged tile, in their turn (bwd_order.cuh's protocol): lane 0 waits
 * for this tile's turn; then the adds.  The tile and its rows come from the turn
 * (turn.tile: (mt << 8) | head in group).  The warp's previous adds were released at the
 * end of the step that made them. */
DEV void dq_add_in_turn(const sp_bwd_kparams &p, const bwd_dq_turn &turn, u32 sdq, int b, int kvh, int col0, int n,
                        int warp_in_wg, int lane)
{
    dq_turn_wait(turn, lane);   /* its __syncwarp publishes the staged rows too */
    const int tile = turn.tile;
    dq_add_rows(sdq, (float *)p.dq_accum + b * p.dqa_sb + (kvh * GROUP + (tile & 255)) * p.dqa_sh, p.dqa_sn,
                (tile >> 8) * BM + 16 * warp_in_wg, col0, n, warp_in_wg, lane);
}

/* ==== main on wgmma: the kernel body (WITH_DQ: main; without: main_det; WITH_DQ and
 * ORDERED: main_sem, whose dQ adds wait for their turn, bwd_order.cuh) ====
 * Shared memory, from a 1024-aligned base (every tile in the swizzled layout, tile_off):
 *   K tile, V tile                 BN rows each, resident
 *   Q tiles, dO tiles              STAGES x BM rows each (the pipeline)
 *   dS^T tiles                     DS_BUFS x BN rows of BM 16-bit values (WITH_DQ only)
 *   lse2 rows, delta rows          STAGES x BM floats each
 *
 *   load K, V; prefetch the first STAGES - 1 query tiles of the cursor
 *   for each query tile (every head of the group, every tile its bands bring here):
 *       wait for it; issue S^T and (WITH_DQ) dQ of the previous tile; prefetch the
 *       tile STAGES - 1 ahead into the freed stage while they run; P^T (mask per warp)
 *       WITH_DQ: atomic adds of the previous tile's dQ (ORDERED: in their turn)
 *       issue dP^T and dV += P^T dO; dS^T; issue dK += dS^T Q
 *       WITH_DQ: dS^T -> shared, for the next step's dQ
 *       ORDERED: the turn of this tile's adds (in the next step)
 *   WITH_DQ: dQ of the last tile (ORDERED: and the release of its turn)
 *   write dK * scale and dV */
template <bool WITH_DQ, bool ORDERED = false>
DEV void bwd_main_body(const sp_bwd_kparams &batch_p)
{
    static_assert(WITH_DQ || !ORDERED, "only dQ adds are ordered");
    extern __shared__ unsigned char smem[];
    __shared__ bwd_slot slots[STAGES];
    __shared__ bwd_dq_turn dq_turns[2];   /* ORDERED: step s's turn in entry s % 2 */
    __shared__ int dq_kv_tile;            /* ORDERED: this CTA's KV tile, read by thread 0 */

    /* Packed sequences (seq.cuh): this sequence's parameters; a KV tile past its end returns.
     * They live in shared memory, read where used: held in registers through the loop, the
     * pointers and strides that differ from the launch's pushed the kernel (dK, dV, S^T,
     * dP^T and dQ in flight at once) over 255 registers into spills. */
    __shared__ sp_bwd_kparams seq_p;
    if (threadIdx.x == 0) seq_p = seq_bwd_params(batch_p, seq_span_of(batch_p, blockIdx.z), blockIdx.z);
    __syncthreads();
    const sp_bwd_kparams &p = seq_p;
    const bwd_block blk = bwd_block_of<ORDERED>(p);   /* ORDERED: KV tiles in descending order */
    if (blk.n0 >= blk.n) return;   /* block-uniform */
    const int tid = blk.tid, warp = blk.warp, lane = blk.lane, n = blk.n, n0 = blk.n0, kvh = blk.kvh, b = blk.b;
    const int key0 = blk.key0;
    const int *rows = blk.rows;

    const int wg = warp / 4;                    /* this thread's warpgroup */
    const u32 sK = (smem_addr(smem) + 1023u) & ~1023u;
    const u32 sV = sK + KV_TILE_BYTES;
    const u32 sQ = sV + KV_TILE_BYTES;          /* stage st: + st * Q_TILE_BYTES */
    const u32 sdO = sQ + STAGES * Q_TILE_BYTES;
    const u32 sdS = sdO + STAGES * Q_TILE_BYTES;
    const u32 sL = sdS + (WITH_DQ ? DS_BUFS * BN * DS_ROW_BYTES : 0);   /* stage st: + st * BM * 4 */
    const u32 sD = sL + STAGES * BM * 4;
    /* ORDERED: the KV tile index for the turns, in shared memory: as a value (n0 / BN) the
     * compiler hoists it out of the loop into a register, and main spills. */
    if constexpr (ORDERED) {
        if (tid == 0) dq_kv_tile = n0 / BN;
    }
    const u32 sdQ = sD + STAGES * BM * 4 + wg * BM * DQ_ROW;   /* WITH_DQ: this warpgroup's dQ staging */

    /* 1., 2. K and V tiles, the first STAGES - 1 query tiles. */
    bwd_cursor cur;
    int issued = bwd_main_start<sw128_tiles>(p, blk, cur, slots, sK, sV, sQ, sdO, sL, sD);

    float dk[HEAD_DIM / 8][4], dv[HEAD_DIM / 8][4];
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[db][e] = dv[db][e] = 0.f;

    /* Descriptors: this warpgroup's K and V rows (A of S^T, dP^T: K-major); stage 0's Q and
     * dO tiles as B of S^T, dP^T (K-major) and as B of dK, dV (MN-major); the dS^T tile and
     * this warpgroup's dims of the K tile for dQ (both MN-major).  Stage st adds
     * st * Q_TILE_BYTES / 16. */
    const u64 dka = smem_desc(sK + wg * WG_KEYS * SW_ROW, 16, 1024);
    const u64 dva = smem_desc(sV + wg * WG_KEYS * SW_ROW, 16, 1024);
    const u64 dqb = smem_desc(sQ, 16, 1024), dob = smem_desc(sdO, 16, 1024);
    const u64 dqt = smem_desc(sQ, BM * SW_ROW, 1024), dot = smem_desc(sdO, BM * SW_ROW, 1024);
    const u64 dst = smem_desc(sdS, BN * SW_ROW, 1024);
    const u64 dkt = smem_desc(sK + wg * (DQ_N / 64) * BN * SW_ROW, BN * SW_ROW, 1024);

    /* 3. The query tiles, in cursor order.  dQ of step it - 1 (dS K, from the dS^T tile
     * that step left in buffer (it - 1) % 2) is computed in step it, so that nothing
     * waits on a barrier between dS^T and dQ: the one barrier per step is the one at its
     * top.  A step issues, in order,
     *     S^T, dP^T | P^T | dV | dS^T | dQ(it - 1), dK | dQ(it - 1) -> staging, reduce-add
     * so that dP^T runs while the warps compute P^T (FlashAttention-3's order), dV while
     * they compute dS^T, and dK while they stage dQ and store dS^T.  Registers: dK and dV (64 + 64 at head_dim
     * 128) with S^T and dP^T (32 + 32) at the top, or with P^T, dS^T packed and dQ
     * (16 + 16 + 32) later; issuing dQ with S^T and dP^T would need all three at once and
     * spills.  The dS^T buffer of the step before the first is zeroed (step 0's dQ
     * product is then 0, and not added). */
    if constexpr (WITH_DQ) {
        for (int w = tid; w < BN * DS_ROW_BYTES / 4; w += THREADS) st_shared_u32(sdS + BN * DS_ROW_BYTES + 4 * w, 0u);
        fence_proxy_async();
    }
    /* The previous step's query tile, as (tile << 8) | head in group: one register, not two
     * (ORDERED: its turn holds it instead). */
    static_assert(GROUP <= 256, "the head in group fits 8 bits");
    int stage = 0, prev_tile = 0;
    for (int it = 0; it < issued; ++it) {
        /* Tile it has landed: this thread's copies (wait), visible to wgmma (proxy fence),
         * everyone's (barrier).  The barrier also means every warpgroup is done with step
         * it - 1 (its wgmma waited for) and has stored that step's dS^T rows, so the
         * prefetch of tile it + STAGES - 1 may reuse step it - 1's stage and slot, and dQ
         * may read the whole dS^T tile of step it - 1. */
        cp_async_wait<STAGES - 2>();
        fence_proxy_async();
        __syncthreads();
        const u32 so = (u32)(stage * Q_TILE_BYTES) >> 4;   /* the stage, in descriptor units */
        const u32 ds_cur = (u32)((it & 1) * BN * DS_ROW_BYTES), ds_prev = (u32)(BN * DS_ROW_BYTES) - ds_cur;
        float s[BM / 8][4], dp[BM / 8][4];
        issue_st(s, dka, dqb + so);                        /* S^T = K Q^T */
        issue_st(dp, dva, dob + so);                       /* dP^T = V dO^T */
        /* The prefetch (cursor step, address math, cp.async issue) runs while the tensor
         * cores work: it writes only the freed stage and its slot. */
        const int freed = stage == 0 ? STAGES - 1 : stage - 1;
        issued += bwd_prefetch<sw128_tiles>(p, cur, slots[freed], freed, sQ, sdO, sL, sD, rows, b, kvh, n0, n, tid);
        const bwd_slot &sl = slots[stage];
        const int m0 = sl.mt * BM;
        const int kind = bwd_tile_kind(sl, m0, BM, key0, 16, n);   /* this warp's 16 keys */
        wgmma_wait<1>();                                   /* S^T is done */
        regs_fence(s);
        if (kind == TILE_SKIP) {
#pragma unroll
            for (int nb = 0; nb < BM / 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
        } else {
            bwd_probs_t<BM>(s, sL + stage * BM * 4, p.scale_log2, lane);   /* P^T */
            if (kind == TILE_PARTIAL) bwd_mask_t<BM>(s, sl, m0, key0 + lane / 4, n, lane);
        }
        u32 pf[BM / 16][4];
        pack_frags(pf, s);
        issue_acc(dv, pf, dot + so);                       /* dV += P^T dO, while the warps compute dS^T */
        wgmma_wait<1>();                                   /* dP^T is done (dV runs on) */
        regs_fence(dp);
        bwd_dscores_t<BM>(dp, s, sD + stage * BM * 4, lane);   /* dS^T = P^T (dP^T - delta) */
        u32 dsf[BM / 16][4];
        pack_frags(dsf, dp);
        float dq[DQ_N / 8][4];
        if constexpr (WITH_DQ) issue_dq(dq, dst + (ds_prev >> 4), dkt);   /* dQ of step it - 1 */
        issue_acc(dk, dsf, dqt + so);                      /* dK += dS^T Q */
        if constexpr (WITH_DQ) {
            wgmma_wait<1>();                               /* dV and dQ of step it - 1 are done */
            regs_fence(dq);
            if constexpr (ORDERED) {
                if (it > 0) {
                    dq_stage_rows(sdQ, dq, warp % 4, lane);
                    dq_add_in_turn(p, dq_turns[(it - 1) & 1], sdQ, b, kvh, wg * DQ_N, n, warp % 4, lane);
                }
            } else {
                if (it > 0)
                    dq_stage(sdQ, (float *)p.dq_accum + b * p.dqa_sb + (kvh * GROUP + (prev_tile & 255)) * p.dqa_sh,
                             p.dqa_sn, dq, (prev_tile >> 8) * BM + 16 * (warp % 4), wg * DQ_N, n, warp % 4, lane);
                prev_tile = sl.mt << 8 | sl.r;
            }
            store_ds_frags(sdS + ds_cur, dsf, warp, lane);     /* for dQ, in step it + 1 */
            fence_proxy_async();
        }
        /* dV and dK read pf, dsf and this stage's Q and dO tiles until they are done. */
        wgmma_wait<0>();
        regs_fence(dk);
        regs_fence(dv);
        /* ORDERED: the adds this step made (step it - 1's dQ) are complete by now, or nearly
         * (dK was waited for since): release their turn here rather than at the next adds,
         * so the next KV tile's turn comes a step earlier.  Then this step's turn, for its
         * adds in the next step, from its slot (which stays until the next step's prefetch),
         * by one thread for every warp. */
        if constexpr (ORDERED) {
            if (it > 0) dq_turn_release(dq_turns[(it - 1) & 1].sem, lane);
            if (tid == 0) dq_turns[it & 1] = bwd_dq_turn_of(p, sl, b, kvh, dq_kv_tile, n);
        }
        stage = stage + 1 == STAGES ? 0 : stage + 1;
    }
    /* dQ of the last step; every reduce-add has read its rows before the CTA ends. */
    if constexpr (WITH_DQ) {
        if (issued > 0) {
            __syncthreads();
            float dq[DQ_N / 8][4];
            issue_dq(dq, dst + ((((issued - 1) & 1) * BN * DS_ROW_BYTES) >> 4), dkt);
            wgmma_wait<0>();
            regs_fence(dq);
            if constexpr (ORDERED) {
                dq_stage_rows(sdQ, dq, warp % 4, lane);
                dq_add_in_turn(p, dq_turns[(issued - 1) & 1], sdQ, b, kvh, wg * DQ_N, n, warp % 4, lane);
            } else {
                dq_stage(sdQ, (float *)p.dq_accum + b * p.dqa_sb + (kvh * GROUP + (prev_tile & 255)) * p.dqa_sh,
                         p.dqa_sn, dq, (prev_tile >> 8) * BM + 16 * (warp % 4), wg * DQ_N, n, warp % 4, lane);
            }
        }
        /* The last adds: complete, and their semaphore released. */
        if constexpr (ORDERED) dq_turn_release(issued > 0 ? dq_turns[(issued - 1) & 1].sem : nullptr, lane);
        else tma_store_wait<0>();
    }

    /* 4. dK (times the scale: dS is the gradient of the scaled scores) and dV, staged
     * through the warp's own rows of the K and V tiles once nobody reads those any more
     * and no copy into them is in flight. */
    cp_async_wait<0>();
    __syncthreads();
    bwd_write_rows<sw128_tiles>(dk, p.scale, sK + warp * 16 * SW_ROW, (elem_t *)p.dk + b * p.dk_sb + kvh * p.dk_sh, p.dk_sn,
                  key0, n, lane);
    bwd_write_rows<sw128_tiles>(dv, 1.f, sV + warp * 16 * SW_ROW, (elem_t *)p.dv + b * p.dv_sb + kvh * p.dv_sh, p.dv_sn,
                  key0, n, lane);
}
