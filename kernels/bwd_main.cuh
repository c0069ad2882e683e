/* kernels/bwd_main.cuh: the backward's main kernel on mma.sync
 * (FlashAttention-2's technique).  What the backward computes, with s = q.k
 * the raw score, c = scale * log2(e), LSE from the forward:
 *
 *     P    = exp2(s c - LSE log2 e)          (recomputed, masked to the bands)
 *     dV  += P^T dO
 *     dP   = dO V^T
 *     dS   = P * (dP - delta),  delta = rowsum(dO * O)
 *     dK  += scale * dS^T Q
 *     dQ  += scale * dS K
 *
 * main: one block per (KV tile of BN keys, kv head, batch).  Warp w owns
 * keys 16w..16w+15 of the tile for everything, so it computes S^T (keys x
 * queries) rather than S: the accumulator of P^T is then the A operand of
 * P^T dO straight from registers (as the forward's P is for P V), dK and
 * dV stay in registers for the whole block, and the only shared-memory
 * round trip is dS^T for dQ.  The block loops over the GROUP query heads of
 * its kv head (so dK, dV sum over the group in registers, in a fixed order)
 * and, per head, over the query tiles whose bands reach its keys.  dQ goes
 * to an fp32 accumulator by atomic adds (convert scales and rounds it), or,
 * in deterministic mode (main_det), is left to the dq kernel (bwd_dq.cuh).
 * The entries (codegen/emit_bwd.c) call bwd_main_body<true> and <false>. */
#pragma once
#include "bwd_parts.cuh"

/* dQ (unscaled) += dS K for the query tile, by atomic adds into the fp32 accumulator (dqa:
 * head h's row 0; rows dqa_sn floats apart).  The work is (BM / 32) row blocks x (HEAD_DIM /
 * 32) column blocks; warp w takes units w, w + WARPS, ...  A 32 x 32 unit is two m16 row
 * halves x four n8 column blocks: per 16 keys 2 A and 2 B fragments feed 8 mma, fewer
 * shared-memory reads per mma than a 16 x 64 unit.
 * A = dS (queries x keys) is stored transposed (rows are keys), so its fragment comes from
 * ldmatrix.x4.trans: for the 16 queries from 16rb and keys 16kc..16kc+15, a[0] = dS[g][2t..2t+1]
 * = dS^T rows 16kc+2t.. of column 16rb+g, from the matrix rows 16kc+0-7 x chunk 2rb; a[1]
 * (queries +8) rows +0-7 x chunk 2rb+1; a[2] (keys +8) rows +8-15 x chunk 2rb; a[3] rows
 * +8-15 x chunk 2rb+1.  So lane l points at row 16kc + 8 (l / 16) + l % 8, chunk 2rb + (l / 8) % 2.
 * B = K [key][dim], transposed as in bwd_mma_cb.  acc[h][db][e]: query m0 + 32 rp + 16h + g +
 * 8 (e / 2), dim 32 cg + 8db + 2t + e % 2; rows >= n are dropped. */
DEV void bwd_dq_atomic(float *dqa, long long dqa_sn, u32 sdS, u32 sK, int m0, int n, int warp, int lane)
{
    const int g = lane >> 2, t = lane & 3;
#pragma unroll 1
    for (int u = warp; u < DQ_UNITS; u += WARPS) {
        const int rp = u / DQ_CGROUPS, cg = u % DQ_CGROUPS;
        float acc[2][DQ_COLS / 8][4];
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int db = 0; db < DQ_COLS / 8; ++db) acc[h][db][0] = acc[h][db][1] = acc[h][db][2] = acc[h][db][3] = 0.f;
#pragma unroll
        for (int kc = 0; kc < BN / 16; ++kc) {
            u32 a[2][4];
#pragma unroll
            for (int h = 0; h < 2; ++h)
                ldsm_x4_trans(sdS + bwd_ds_off(16 * kc + 8 * (lane >> 4) + (lane & 7), 2 * (2 * rp + h) + ((lane >> 3) & 1)), a[h]);
#pragma unroll
            for (int dp = 0; dp < DQ_COLS / 16; ++dp) {
                u32 b[4];
                ldsm_x4_trans(sK + tile_off(16 * kc + (lane & 15), cg * (DQ_COLS / 8) + 2 * dp + (lane >> 4)), b);
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    mma_16816(acc[h][2 * dp], a[h], b[0], b[1]);
                    mma_16816(acc[h][2 * dp + 1], a[h], b[2], b[3]);
                }
            }
        }
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int i = m0 + DQ_ROWS * rp + 16 * h + g;
            float *row = dqa + (long long)i * dqa_sn + cg * DQ_COLS + 2 * t;
#pragma unroll
            for (int db = 0; db < DQ_COLS / 8; ++db) {
                if (i < n) bwd_red_add2(row + 8 * db, acc[h][db][0], acc[h][db][1]);
                if (i + 8 < n) bwd_red_add2(row + 8 * dqa_sn + 8 * db, acc[h][db][2], acc[h][db][3]);
            }
        }
    }
}

/* ==== main: the kernel body (WITH_DQ: main; without: main_det) ====
 * One block: keys [n0, n0 + BN) of one (batch, kv head); warp w owns keys n0 + 16w.. and
 * keeps their dK and dV rows in registers (a lane: keys g and g + 8, HEAD_DIM / 4 dims
 * each, for both).  Shared memory, from a 128-aligned base:
 *   K tile, V tile                 BN rows each, resident
 *   Q tiles, dO tiles              STAGES x BM rows each (the pipeline)
 *   lse2 rows, delta rows          STAGES x BM floats each
 *   dS^T tile                      BN x BM 16-bit values (WITH_DQ only)
 * all head_dim rows swizzled by tile_off, the dS^T rows by bwd_ds_off.
 *
 *   load K, V; prefetch the first STAGES - 1 query tiles of the cursor
 *   for each query tile (every head of the group, every tile its bands bring here):
 *       wait for it; prefetch the one STAGES - 1 ahead into the freed stage
 *       per warp and sub-tile of Q_SUB queries: SKIP / FULL / PARTIAL for its 16 keys;
 *           S^T = K Q^T; P^T; mask if PARTIAL; dV += P^T dO
 *           dP^T = V dO^T; dS^T = P^T (dP^T - delta); dK += dS^T Q
 *       WITH_DQ: dS^T -> shared; barrier; dQ += dS K (atomics)
 *   write dK * scale and dV */
template <bool WITH_DQ>
DEV void bwd_main_body(const sp_bwd_kparams &batch_p)
{
    extern __shared__ unsigned char smem[];
    __shared__ bwd_slot slots[STAGES];

    /* Packed sequences (seq.cuh): this sequence's parameters; a KV tile past its end returns. */
    const sp_bwd_kparams p = seq_bwd_params(batch_p, seq_span_of(batch_p, blockIdx.z), blockIdx.z);
    const bwd_block blk = bwd_block_of(p);
    if (blk.n0 >= blk.n) return;   /* block-uniform */
    const int tid = blk.tid, warp = blk.warp, lane = blk.lane, n = blk.n, n0 = blk.n0, kvh = blk.kvh, b = blk.b;
    const int key0 = blk.key0;
    const int *rows = blk.rows;

    const u32 sK = (smem_addr(smem) + 127u) & ~127u;
    const u32 sV = sK + KV_TILE_BYTES;
    const u32 sQ = sV + KV_TILE_BYTES;          /* stage st: + st * Q_TILE_BYTES */
    const u32 sdO = sQ + STAGES * Q_TILE_BYTES;
    const u32 sL = sdO + STAGES * Q_TILE_BYTES; /* stage st: + st * BM * 4 */
    const u32 sD = sL + STAGES * BM * 4;
    const u32 sdS = sD + STAGES * BM * 4;
    const u32 sKw = sK + warp * 16 * ROW_BYTES, sVw = sV + warp * 16 * ROW_BYTES;

    /* 1., 2. K and V tiles, the first STAGES - 1 query tiles. */
    bwd_cursor cur;
    int issued = bwd_main_start<pad_tiles>(p, blk, cur, slots, sK, sV, sQ, sdO, sL, sD);

    float dk[HEAD_DIM / 8][4], dv[HEAD_DIM / 8][4];
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[db][e] = dv[db][e] = 0.f;

    /* 3. The query tiles, in cursor order. */
    int stage = 0;
    for (int it = 0; it < issued; ++it) {
        /* Tile it has landed: this thread's copies (wait), everyone's (barrier).  The
         * barrier also means every warp is done with step it - 1, whose stage (and slot,
         * and the dS^T tile) the prefetch of tile it + STAGES - 1 now reuses. */
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int freed = stage == 0 ? STAGES - 1 : stage - 1;
        issued += bwd_prefetch<pad_tiles>(p, cur, slots[freed], freed, sQ, sdO, sL, sD, rows, b, kvh, n0, n, tid);

        const bwd_slot &sl = slots[stage];
        const int m0 = sl.mt * BM;
#pragma unroll 1
        for (int qs = 0; qs < BM / Q_SUB; ++qs) {
            const int i0 = m0 + qs * Q_SUB;
            const u32 sQq = sQ + stage * Q_TILE_BYTES + qs * Q_SUB * ROW_BYTES;
            const u32 sdOq = sdO + stage * Q_TILE_BYTES + qs * Q_SUB * ROW_BYTES;
            const u32 sLq = sL + (stage * BM + qs * Q_SUB) * 4, sDq = sD + (stage * BM + qs * Q_SUB) * 4;
            const int kind = bwd_tile_kind(sl, i0, Q_SUB, key0, 16, n);   /* warp-uniform */
            if (kind != TILE_SKIP) {
                float s[Q_SUB / 8][4];
                bwd_mma_abt<Q_SUB>(s, sKw, sQq, lane);                        /* S^T = K Q^T */
                bwd_probs_t<Q_SUB>(s, sLq, p.scale_log2, lane);               /* P^T */
                if (kind == TILE_PARTIAL) bwd_mask_t<Q_SUB>(s, sl, i0, key0 + lane / 4, n, lane);
                bwd_mma_cb<Q_SUB>(dv, s, sdOq, lane);                         /* dV += P^T dO */
                float dp[Q_SUB / 8][4];
                bwd_mma_abt<Q_SUB>(dp, sVw, sdOq, lane);                      /* dP^T = V dO^T */
                bwd_dscores_t<Q_SUB>(dp, s, sDq, lane);                       /* dS^T */
                bwd_mma_cb<Q_SUB>(dk, dp, sQq, lane);                         /* dK += dS^T Q */
                if constexpr (WITH_DQ) bwd_store_ds<Q_SUB>(sdS, dp, qs * Q_SUB / 8, warp, lane);
            } else if constexpr (WITH_DQ) {
                bwd_zero_ds<Q_SUB>(sdS, qs * Q_SUB / 8, warp, lane);
            }
        }
        if constexpr (WITH_DQ) {
            __syncthreads();   /* the whole dS^T tile is in shared memory */
            const int h = kvh * GROUP + sl.r;
            bwd_dq_atomic((float *)p.dq_accum + b * p.dqa_sb + h * p.dqa_sh, p.dqa_sn, sdS, sK, m0, n, warp, lane);
        }
        stage = stage + 1 == STAGES ? 0 : stage + 1;
    }

    /* 4. dK (times the scale: dS is the gradient of the scaled scores) and dV, staged
     * through the warp's own rows of the K and V tiles once nobody reads those any more
     * (dQ reads all of K) and no copy into them is in flight. */
    cp_async_wait<0>();
    __syncthreads();
    bwd_write_rows(dk, p.scale, sKw, (elem_t *)p.dk + b * p.dk_sb + kvh * p.dk_sh, p.dk_sn, key0, n, lane);
    bwd_write_rows(dv, 1.f, sVw, (elem_t *)p.dv + b * p.dv_sb + kvh * p.dv_sh, p.dv_sn, key0, n, lane);
}
