/* kernels/fwd_wgmma.cuh: the Hopper forward kernel: the algorithm of
 * fwd_mma.cuh, with the matrix products on wgmma (sm_90a), the
 * warpgroup-wide asynchronous MMA that reads its B operand (and here A of
 * S = Q K^T) straight from shared memory.
 *
 *     load Q tile (cp.async), build the band plan, prefetch STAGES-2 KV tiles
 *     for each KV tile of the plan (ascending keys):
 *         wait for it, prefetch a later one into the freed stage
 *         S = Q K^T             (wgmma, A = Q and B = K in shared memory)
 *         mask unless FULL; online softmax (per warp, as in fwd_mma.cuh)
 *         O += P V              (wgmma, A = P in registers, B = V transposed)
 *     O = O / l, LSE; write both
 *
 * Grid (ceil(N / BM), heads in the launch, batch), THREADS = 128 * BM / 64.
 * Warpgroup wg (warps 4wg..4wg+3) owns rows 64wg..64wg+63 of the query tile;
 * warp w of it owns 16 of them, and a wgmma accumulator of 64 rows holds, in
 * each warp, exactly the m16n8 fragments of that warp's 16 rows.  So the
 * mask and the softmax are the mma.sync kernel's, with WM = 1.
 *
 * Shared-memory tiles use the layout wgmma reads with 128-byte swizzling
 * (wgmma.cuh): a tile of ROWS rows is HEAD_DIM / 64 column blocks of ROWS x
 * 64 values (128 bytes a row), each 1024-byte aligned; chunk c of row r of a
 * block sits at chunk c ^ (r % 8) of its 128 bytes.  The hardware undoes the
 * same XOR on the address bits, so one layout serves cp.async, wgmma and
 * ldmatrix.  The kernel entry (codegen/emit_fwd_wgmma.c) calls
 * fwd_wgmma_kernel. */
#pragma once
#include "attn_wgmma.cuh"
#include "fwd_block.cuh"
#include "mask.cuh"
#include "softmax.cuh"

enum : int {
    WG_ROWS = 64,                           /* query rows per warpgroup: wgmma's M */
    WARPGROUPS = BM / WG_ROWS,
    PREFETCH = STAGES - 2,                  /* KV tiles loaded ahead (see the main loop) */
};
static_assert(STAGES >= 3, "the wgmma kernel keeps 2 tiles in use and loads ahead");

/* ==== Epilogue: O = acc / l (16-bit) and LSE ====
 * As in the mma.sync kernel: row r of this lane is row0 + l/4 + 8r, its sum is added up
 * over the quad; LSE = (m c + log2 l) ln 2; a row with l == 0 gets O = 0 and LSE = -inf;
 * rows >= n are never stored.  O goes through the warp's own 16 rows of the Q tile
 * (trow0.. within it; the warpgroup's last wgmma reading them has completed) so each
 * lane then stores whole 16-byte chunks, coalesced. */
DEV void write_output(const float (&acc)[1][HEAD_DIM / 8][4], const float (&m)[1][2], const float (&l)[1][2],
                      float c, u32 sQ, int trow0, elem_t *o, long long o_sn, float *lse, int row0, int n, int lane)
{
    const int g = lane >> 2, t = lane & 3;
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(l[0][r]);
        inv[r] = sum > 0.f ? 1.f / sum : 0.f;
        const int i = row0 + g + 8 * r;
        if (t == 0 && i < n) lse[i] = sum > 0.f ? (m[0][r] * c + log2_approx(sum)) * LN2 : neg_inf();
    }
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db) {
        st_shared_u32(sQ + tile_off<BM>(trow0 + g, db) + 4 * t, pack2(acc[0][db][0] * inv[0], acc[0][db][1] * inv[0]));
        st_shared_u32(sQ + tile_off<BM>(trow0 + g + 8, db) + 4 * t, pack2(acc[0][db][2] * inv[1], acc[0][db][3] * inv[1]));
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < 16 * CHUNKS / 32; ++k) {
        const int c16 = lane + 32 * k, row = c16 / CHUNKS, chunk = c16 % CHUNKS;
        if (row0 + row < n)
            *(u32x4 *)(o + (long long)(row0 + row) * o_sn + chunk * 8) = ld_shared_u32x4(sQ + tile_off<BM>(trow0 + row, chunk));
    }
}

/* ==== The kernel ====
 * One CTA: BM query rows of one (batch, head), WARPGROUPS warpgroups of 64 rows.
 * p.seqlen = n >= 1 tokens.  Packed sequences (seq.cuh): fwd_block_of finds the
 * CTA's sequence, a tile past its end returns at once, and fwd_out gives its output
 * rows. */
DEV void fwd_wgmma_kernel(const sp_kparams &p)
{
    extern __shared__ unsigned char smem[];
    __shared__ band_plan plan;

    const fwd_block blk = fwd_block_of(p);
    if (blk.m0 >= blk.n) return;   /* block-uniform: past a packed sequence's end */
    const int tid = blk.tid, warp = blk.warp, lane = blk.lane, m0 = blk.m0;
    /* The sequence (seq.cuh): its length and first row, kept in shared memory and read
     * where the loop uses them rather than held in registers through it (with packed
     * sequences they are no kernel parameters, and at its largest tiles this kernel has
     * no register to spare).  Published by fwd_start's barrier. */
    __shared__ seq_span seq;
    if (tid == 0) seq = seq_span_of(p, blockIdx.z);
    auto seq_n = [&]() { return seq.n; };
    const int wg = warp / 4;                            /* this thread's warpgroup */

    /* Shared memory: the Q tile, then STAGES stages of (K tile, V tile), each 1024-byte
     * aligned as the swizzled layout needs. */
    const u32 sQ = (smem_addr(smem) + 1023u) & ~1023u;
    const u32 sKV = sQ + Q_TILE_BYTES;

    /* 1. Q tile -> shared memory (async); the band plan of this query tile.
     * 2. The first PREFETCH KV tiles, one commit group each; the first wait in the
     * loop covers Q's group too. */
    const int ntiles = fwd_start<PREFETCH, sw128_tiles>(p, blk, plan, sQ, sKV);

    /* 3. Running state of this lane's 2 rows (WM = 1), and the warpgroup's rows. */
    float acc[1][HEAD_DIM / 8][4], m[1][2], l[1][2];
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db) acc[0][db][0] = acc[0][db][1] = acc[0][db][2] = acc[0][db][3] = 0.f;
    m[0][0] = m[0][1] = neg_inf();
    l[0][0] = l[0][1] = 0.f;
    const int wg_row0 = m0 + wg * WG_ROWS;                     /* the warpgroup's rows */
    const int trow0 = warp * 16;                               /* this warp's rows, within the tile */
    const int row0 = m0 + trow0;
    /* Descriptors of this warpgroup's Q rows, and of stage 0's K and V; other k16
     * steps and stages add byte offsets / 16 to the address field. */
    const u64 dq = smem_desc(sQ + wg * WG_ROWS * SW_ROW, 16, 1024);
    const u64 dk0 = smem_desc(sKV, 16, 1024);
    const u64 dv0 = smem_desc(sKV + KV_TILE_BYTES, BN * SW_ROW, 1024);

    /* 4. The KV tiles of the head's bands, in ascending key order, software-pipelined
     * inside the warpgroup: iteration it issues S = Q K_it and then O += P V of the
     * previous tile, both asynchronous; the softmax of tile it then runs on the CUDA
     * cores and the special-function unit while the tensor cores still work on P V.
     * Only the rescale of O waits for P V.  So V of tile it - 1 is read during
     * iteration it, and a stage is refilled PREFETCH = STAGES - 2 tiles ahead.
     * Every warpgroup runs every tile, even one its rows skip (it is then fully
     * masked, P = 0): wgmma on a path the compiler cannot prove uniform would be
     * serialized (ptxas C7518), and skips are rare band-edge tiles. */
    u32 pf[BN / 16][4];       /* P of the previous tile: the A fragments of O += P V */
    float s[1][BN / 8][4];    /* S, then P, of the current tile */

    /* Wait for tile it, in `stage`: this thread's copies (wait), made visible to wgmma
     * (proxy fence), everyone's (barrier).  The barrier also means every warpgroup is
     * past iteration it - 1, so done with tile it - 2, whose stage the prefetch of tile
     * it + PREFETCH then overwrites. */
    auto tile_landed = [&](int it, int stage) {
        cp_async_wait<PREFETCH - 1>();
        fence_proxy_async();
        __syncthreads();
        if (it + PREFETCH < ntiles)
            load_kv<sw128_tiles>(sKV + (stage + PREFETCH) % STAGES * STAGE_BYTES, fwd_kv(p.k, p.k_sb, p.k_sh, p.k_sn, seq.start),
                    p.k_sn, fwd_kv(p.v, p.v_sb, p.v_sh, p.v_sn, seq.start), p.v_sn,
                    band_tile_at(plan, it + PREFETCH) * BN, seq_n(), tid);
        cp_async_commit();
    };
    /* S of tile it (complete) -> P: the mask unless the tile fully allows this warp's
     * rows, then the online softmax; alphas: O's rescale factors. */
    auto scores_to_p = [&](int it, float (&alphas)[1][2]) {
        const int n0 = band_tile_at(plan, it) * BN, n = seq_n();
        const int wg_last = min(wg_row0 + WG_ROWS - 1, n - 1), row_last = min(row0 + 15, n - 1);
        const int wg_kind = wg_row0 < n ? band_tile_kind(plan, wg_row0, wg_last, n0, n) : TILE_SKIP;
        if (wg_kind != TILE_FULL &&
            (wg_kind == TILE_SKIP || row0 >= n || band_tile_kind(plan, row0, row_last, n0, n) != TILE_FULL))
            mask_tile(s, plan, row0 + lane / 4, n0, n, lane);
        softmax_p(s, m, l, alphas, p.scale_log2);
    };

    if (ntiles > 0) {   /* block-uniform */
        /* The first tile: S, P; nothing to add to O yet. */
        float alphas[1][2];
        tile_landed(0, 0);
        issue_qk(s, dq, dk0);
        wgmma_wait<0>();
        regs_fence(s[0]);
        scores_to_p(0, alphas);
        pack_p(pf, s);
        int stage = 1 % STAGES, pv_stage = 0;
        for (int it = 1; it < ntiles; ++it) {
            tile_landed(it, stage);
            issue_qk(s, dq, dk0 + ((u32)(stage * STAGE_BYTES) >> 4));     /* S = Q K^T, this tile */
            issue_pv(acc, pf, dv0 + ((u32)(pv_stage * STAGE_BYTES) >> 4));   /* O += P V, previous tile */
            wgmma_wait<1>();   /* S, the older group, is done; P V runs on */
            regs_fence(s[0]);
            scores_to_p(it, alphas);
            wgmma_wait<0>();   /* P V is done: O may be rescaled and pf reused */
            regs_fence(acc[0]);
            rescale_o(acc, alphas);
            pack_p(pf, s);
            pv_stage = stage;
            stage = stage + 1 == STAGES ? 0 : stage + 1;
        }
        issue_pv(acc, pf, dv0 + ((u32)(pv_stage * STAGE_BYTES) >> 4));   /* the last tile's P V */
        wgmma_wait<0>();
        regs_fence(acc[0]);
    }

    /* 5. O = acc / l and LSE (row i at o + i * p.o_sn and lse + i).  O is staged
     * through the Q tile, so every copy into it must have landed first: with ntiles
     * == 0 (every row of the tile lies before its head's band) no wait above covered
     * Q's group, and Q's bytes could land after O's and be stored as O.  Each
     * thread drains its own copies (wait), the barrier makes that true of all (a
     * warp's rows were copied by other warps' threads).  Issue 13. */
    cp_async_wait<0>();
    __syncthreads();
    float *lse;
    elem_t *o = fwd_out(p, blk, lse);
    write_output(acc, m, l, p.scale_log2, sQ, trow0, o, p.o_sn, lse, row0, seq_n(), lane);
}
