/* kernels/fwd_mma.cuh: the forward kernel on mma.sync (FlashAttention-2's
 * technique), sm_80 and later:
 *
 *     load Q tile (cp.async), build the band plan, prefetch STAGES-1 KV tiles
 *     Q -> registers (ldmatrix) where they fit (Q_IN_REGS)
 *     for each KV tile of the plan (ascending keys):
 *         wait for it, prefetch a later one into the freed stage
 *         per warp: SKIP / FULL / PARTIAL for its rows
 *         S = Q K^T; mask if PARTIAL; online softmax; O += P V
 *     O = O / l, LSE; write both
 *
 * Grid (ceil(N / BM), heads in the launch, batch), THREADS threads, SMEM_BYTES
 * of dynamic shared memory: the Q tile, then STAGES stages of a K and a V
 * tile, all swizzled.  Each warp owns WARP_ROWS = 16 * WM consecutive query
 * rows (WM m16 tiles: 1 or 2); in m16 tile mi a lane holds rows l/4 and
 * l/4 + 8 (the mma accumulator layout).  With WM = 2 every K and V fragment
 * read from shared memory feeds two mma instead of one, which halves the
 * shared-memory traffic per flop (the limit of the 16-row layout).
 * The kernel entry (codegen/emit_fwd.c) calls fwd_mma_kernel. */
#pragma once
#include "layout.cuh"
#include "fwd_block.cuh"
#include "mask.cuh"
#include "softmax.cuh"

/* 16 rows of Q, dims 16kc..16kc+15, as an mma A fragment (sQw: the first of the 16
 * rows).  Matrix 0: rows 0..7 x dims +0..7 (a[0]); 1: rows 8..15 x dims +0..7
 * (a[1]); 2: rows 0..7 x dims +8..15 (a[2]); 3: rows 8..15 x dims +8..15 (a[3]).  So
 * lane l points at row l % 16, chunk 2kc + l / 16. */
DEV void load_q_frag(u32 (&a)[4], u32 sQw, int kc, int lane)
{
    ldsm_x4(sQw + tile_off(lane & 15, 2 * kc + (lane >> 4)), a);
}

/* ==== S = Q K^T for one KV tile: WARP_ROWS rows x BN keys per warp ====
 * s[mi][nb] is the m16n8 accumulator of m16 tile mi, keys 8nb..8nb+7 of the tile.  K
 * is [key][dim] in shared memory, which is the "col" B operand of Q K^T as stored:
 * for n-blocks 2p and 2p+1 and dims 16kc..16kc+15, one ldmatrix.x4 reads
 *   matrix 0: keys 16p+0..7,  dims +0..7   -> b0 of n-block 2p
 *   matrix 1: keys 16p+0..7,  dims +8..15  -> b1 of n-block 2p
 *   matrix 2: keys 16p+8..15, dims +0..7   -> b0 of n-block 2p+1
 *   matrix 3: keys 16p+8..15, dims +8..15  -> b1 of n-block 2p+1
 * so lane l points at key 16p + l % 8 + 8 (l / 16), chunk 2kc + (l / 8) % 2.  Each K
 * fragment serves the warp's WM m16 tiles.  Q_IN_REGS: Q's fragments are qf (loaded
 * once); else Q is re-read from shared memory (sQw: the warp's rows), as kept in
 * registers at this head_dim it would spill. */
DEV void qk_tile(float (&s)[WM][BN / 8][4], const u32 (&qf)[WM][HEAD_DIM / 16][4], u32 sQw, u32 sK, int lane)
{
#pragma unroll
    for (int mi = 0; mi < WM; ++mi)
#pragma unroll
        for (int nb = 0; nb < BN / 8; ++nb) s[mi][nb][0] = s[mi][nb][1] = s[mi][nb][2] = s[mi][nb][3] = 0.f;
#pragma unroll
    for (int kc = 0; kc < HEAD_DIM / 16; ++kc) {
        u32 q[WM][4];
        if constexpr (!Q_IN_REGS) {
#pragma unroll
            for (int mi = 0; mi < WM; ++mi) load_q_frag(q[mi], sQw + mi * 16 * ROW_BYTES, kc, lane);
        }
#pragma unroll
        for (int p = 0; p < BN / 16; ++p) {
            u32 kf[4];
            ldsm_x4(sK + tile_off(16 * p + (lane & 7) + ((lane >> 4) << 3), 2 * kc + ((lane >> 3) & 1)), kf);
#pragma unroll
            for (int mi = 0; mi < WM; ++mi) {
                if constexpr (Q_IN_REGS) {
                    mma_16816(s[mi][2 * p], qf[mi][kc], kf[0], kf[1]);
                    mma_16816(s[mi][2 * p + 1], qf[mi][kc], kf[2], kf[3]);
                } else {
                    mma_16816(s[mi][2 * p], q[mi], kf[0], kf[1]);
                    mma_16816(s[mi][2 * p + 1], q[mi], kf[2], kf[3]);
                }
            }
        }
    }
}

/* ==== O += P V ====
 * P comes straight from the S accumulators, with no trip through shared memory: the
 * C fragments of n-blocks 2kc and 2kc+1, packed pairwise to 16 bits, are the A fragment
 * of keys 16kc..16kc+15 (a[0] = row g, keys 2t..2t+1 = s[2kc][0..1]; a[1] = row g+8 =
 * s[2kc][2..3]; a[2] = row g, keys 2t+8.. = s[2kc+1][0..1]; a[3] = s[2kc+1][2..3]).
 * V is [key][dim]; the B operand wants two consecutive keys of one dim per register,
 * so it is read transposed: for keys 16kc.. and dims 16dp..16dp+15 one
 * ldmatrix.x4.trans reads
 *   matrix 0: keys +0..7,  dims +0..7   -> b0 of dim-block 2dp
 *   matrix 1: keys +8..15, dims +0..7   -> b1 of dim-block 2dp
 *   matrix 2: keys +0..7,  dims +8..15  -> b0 of dim-block 2dp+1
 *   matrix 3: keys +8..15, dims +8..15  -> b1 of dim-block 2dp+1
 * so lane l points at key 16kc + l % 16, chunk 2dp + l / 16.  Each V fragment serves
 * the warp's WM m16 tiles. */
DEV void pv_tile(float (&acc)[WM][HEAD_DIM / 8][4], const float (&s)[WM][BN / 8][4], u32 sV, int lane)
{
#pragma unroll
    for (int kc = 0; kc < BN / 16; ++kc) {
        u32 a[WM][4];
#pragma unroll
        for (int mi = 0; mi < WM; ++mi) {
            a[mi][0] = pack2(s[mi][2 * kc][0], s[mi][2 * kc][1]);
            a[mi][1] = pack2(s[mi][2 * kc][2], s[mi][2 * kc][3]);
            a[mi][2] = pack2(s[mi][2 * kc + 1][0], s[mi][2 * kc + 1][1]);
            a[mi][3] = pack2(s[mi][2 * kc + 1][2], s[mi][2 * kc + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < HEAD_DIM / 16; ++dp) {
            u32 vf[4];
            ldsm_x4_trans(sV + tile_off(16 * kc + (lane & 15), 2 * dp + (lane >> 4)), vf);
#pragma unroll
            for (int mi = 0; mi < WM; ++mi) {
                mma_16816(acc[mi][2 * dp], a[mi], vf[0], vf[1]);
                mma_16816(acc[mi][2 * dp + 1], a[mi], vf[2], vf[3]);
            }
        }
    }
}

/* ==== Epilogue: O = acc / l (16-bit) and LSE ====
 * Row r of m16 tile mi of this lane is row0 + 16mi + l/4 + 8r.  Its sum l is first
 * added up over the quad.  LSE = ln(sum_j exp(scale s_j)) = (m c + log2 l) ln 2,
 * natural log, fp32.  A row with l == 0 had no allowed key: O = 0 and LSE = -inf
 * (DESIGN.md asks for -inf; flash-attention writes +inf there).  Rows >= n are never
 * stored.  O goes through this warp's own rows of the Q tile in shared memory (no
 * other warp reads them), so that each lane then stores whole 16-byte chunks,
 * coalesced. */
DEV void write_output(const float (&acc)[WM][HEAD_DIM / 8][4], const float (&m)[WM][2], const float (&l)[WM][2],
                      float c, u32 sQw, elem_t *o, long long o_sn, float *lse, int row0, int n, int lane)
{
    const int g = lane >> 2, t = lane & 3;
    float inv[WM][2];
#pragma unroll
    for (int mi = 0; mi < WM; ++mi)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float sum = quad_sum(l[mi][r]);
            inv[mi][r] = sum > 0.f ? 1.f / sum : 0.f;
            const int i = row0 + 16 * mi + g + 8 * r;
            if (t == 0 && i < n) lse[i] = sum > 0.f ? (m[mi][r] * c + log2_approx(sum)) * LN2 : neg_inf();
        }
    __syncwarp();   /* every lane is past its last read of the warp's Q rows */
#pragma unroll
    for (int mi = 0; mi < WM; ++mi)
#pragma unroll
        for (int db = 0; db < HEAD_DIM / 8; ++db) {
            st_shared_u32(sQw + tile_off(16 * mi + g, db) + 4 * t,
                          pack2(acc[mi][db][0] * inv[mi][0], acc[mi][db][1] * inv[mi][0]));
            st_shared_u32(sQw + tile_off(16 * mi + g + 8, db) + 4 * t,
                          pack2(acc[mi][db][2] * inv[mi][1], acc[mi][db][3] * inv[mi][1]));
        }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < WARP_ROWS * CHUNKS / 32; ++k) {
        const int c16 = lane + 32 * k, row = c16 / CHUNKS, chunk = c16 % CHUNKS;
        if (row0 + row < n)
            *(u32x4 *)(o + (long long)(row0 + row) * o_sn + chunk * 8) = ld_shared_u32x4(sQw + tile_off(row, chunk));
    }
}

/* ==== The kernel ====
 * One CTA: BM query rows of one (batch, head).  p.seqlen = n >= 1 tokens.  Packed
 * sequences (seq.cuh): fwd_block_of finds the CTA's sequence, a tile past its end
 * returns at once, and fwd_out gives its output rows. */
DEV void fwd_mma_kernel(const sp_kparams &p)
{
    extern __shared__ unsigned char smem[];
    __shared__ band_plan plan;

    const fwd_block blk = fwd_block_of(p);
    if (blk.m0 >= blk.n) return;   /* block-uniform: past a packed sequence's end */
    const int tid = blk.tid, warp = blk.warp, lane = blk.lane, m0 = blk.m0;
    /* The sequence (seq.cuh): its length and first row in shared memory, read where they
     * are used rather than held in registers through the loop (with packed sequences they
     * are no kernel parameters).  Published by fwd_start's barrier. */
    __shared__ seq_span seq;
    if (tid == 0) seq = seq_span_of(p, blockIdx.z);
    const int &n = seq.n;

    /* Shared memory: the Q tile, then STAGES stages of (K tile, V tile); 128-aligned so
     * the swizzle's bank pattern holds. */
    const u32 sQ = (smem_addr(smem) + 127u) & ~127u;
    const u32 sKV = sQ + Q_TILE_BYTES;
    const u32 sQw = sQ + warp * WARP_ROWS * ROW_BYTES;   /* this warp's rows of Q */

    /* 1. Q tile -> shared memory (async); the band plan of this query tile.
     * 2. The first STAGES - 1 KV tiles, one commit group each. */
    const int ntiles = fwd_start<STAGES - 1, pad_tiles>(p, blk, plan, sQ, sKV);

    /* 3. Q_IN_REGS: this warp's rows of Q -> registers, as A fragments, for the whole
     * loop.  Else Q stays in shared memory: qk_tile re-reads this warp's rows each tile
     * (kept in registers at this head_dim, they would spill). */
    cp_async_wait<STAGES - 1>();   /* the oldest group, Q, has landed */
    __syncthreads();
    u32 qf[WM][HEAD_DIM / 16][4];
    if constexpr (Q_IN_REGS) {
#pragma unroll
        for (int mi = 0; mi < WM; ++mi)
#pragma unroll
            for (int kc = 0; kc < HEAD_DIM / 16; ++kc) load_q_frag(qf[mi][kc], sQw + mi * 16 * ROW_BYTES, kc, lane);
    }

    /* 4. Running state of this lane's rows: 2 per m16 tile. */
    float acc[WM][HEAD_DIM / 8][4], m[WM][2], l[WM][2];
#pragma unroll
    for (int mi = 0; mi < WM; ++mi) {
#pragma unroll
        for (int db = 0; db < HEAD_DIM / 8; ++db) acc[mi][db][0] = acc[mi][db][1] = acc[mi][db][2] = acc[mi][db][3] = 0.f;
        m[mi][0] = m[mi][1] = neg_inf();
        l[mi][0] = l[mi][1] = 0.f;
    }
    const int row0 = m0 + warp * WARP_ROWS;           /* this warp's rows: row0 .. row0 + WARP_ROWS - 1 */
    const int row_last = min(row0 + WARP_ROWS - 1, n - 1);   /* rows >= n are computed, never stored */

    /* 5. The KV tiles of the head's bands, in ascending key order. */
    int stage = 0;
    for (int it = 0; it < ntiles; ++it) {
        if constexpr (STAGES >= 2) {
            /* Tile it has landed: this thread's copies (wait), everyone's (barrier).  The
             * barrier also means every warp is done with tile it - 1, whose stage the
             * prefetch of tile it + STAGES - 1 now overwrites. */
            cp_async_wait<STAGES - 2>();
            __syncthreads();
            const int ahead = it + STAGES - 1;
            if (ahead < ntiles) {
                const int st = stage == 0 ? STAGES - 1 : stage - 1;
                load_kv<pad_tiles>(sKV + st * STAGE_BYTES, fwd_kv(p.k, p.k_sb, p.k_sh, p.k_sn, seq.start), p.k_sn,
                                   fwd_kv(p.v, p.v_sb, p.v_sh, p.v_sn, seq.start), p.v_sn, band_tile_at(plan, ahead) * BN, n,
                                   tid);
            }
            cp_async_commit();
        } else {
            /* One stage: load tile it once every warp is done with tile it - 1, then wait. */
            __syncthreads();
            load_kv<pad_tiles>(sKV, fwd_kv(p.k, p.k_sb, p.k_sh, p.k_sn, seq.start), p.k_sn,
                               fwd_kv(p.v, p.v_sb, p.v_sh, p.v_sn, seq.start), p.v_sn, band_tile_at(plan, it) * BN, n, tid);
            cp_async_commit();
            cp_async_wait<0>();
            __syncthreads();
        }

        const int n0 = band_tile_at(plan, it) * BN;
        const int kind = row0 < n ? band_tile_kind(plan, row0, row_last, n0, n) : TILE_SKIP;
        if (kind != TILE_SKIP) {   /* warp-uniform */
            const u32 sK = sKV + stage * STAGE_BYTES, sV = sK + KV_TILE_BYTES;
            float s[WM][BN / 8][4];
            qk_tile(s, qf, sQw, sK, lane);                             /* S = Q K^T */
            if (kind == TILE_PARTIAL) mask_tile(s, plan, row0 + lane / 4, n0, n, lane);
            float alphas[WM][2];
            softmax_p(s, m, l, alphas, p.scale_log2);                  /* S -> P; rescale l */
            rescale_o(acc, alphas);
            pv_tile(acc, s, sV, lane);                                 /* O += P V */
        }
        stage = stage + 1 == STAGES ? 0 : stage + 1;
    }

    /* 6. O = acc / l and LSE (row i at o + i * p.o_sn and lse + i).  O is staged
     * through the warp's Q rows: step 3's wait and barrier covered Q's group, and
     * the prefetches past the last tile are empty groups; draining here anyway
     * keeps the rule of every kernel (no shared buffer reused, no return, while a
     * copy may be pending) true by construction, at the cost of one no-op wait. */
    cp_async_wait<0>();
    float *lse;
    elem_t *o = fwd_out(p, blk, lse);
    write_output(acc, m, l, p.scale_log2, sQw, o, p.o_sn, lse, row0, n, lane);
}
