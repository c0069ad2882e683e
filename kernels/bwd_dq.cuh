/* kernels/bwd_dq.cuh: the backward's dq kernel (deterministic mode): one
 * block per query tile, the forward's iteration; it recomputes S, P, dP and
 * dS and keeps dQ in registers, so that main_det can leave dQ out and no sum
 * depends on timing.  On mma.sync for every GPU.
 *
 * Unlike the other kernels, this one is defined here, under the name the
 * specialization gives it (BWD_DQ_ENTRY, from kcfg_bwd_name: see
 * codegen/emit_bwd.c), rather than as a body an entry calls: called, it
 * compiles to the same PTX up to the numbering of virtual registers, and
 * ptxas then allocates and schedules differently (tests/sass_same.sh). */
#pragma once
#include "bwd_common.cuh"

/* ==== dq: the parts, per warp ====
 * Here the accumulators are queries x keys, as in the forward, for a sub-tile of KW = K_SUB
 * keys of the KV tile: s[nb][e] is row i0 + 8 (e / 2) (i0 = the warp's first row + g) and key
 * n0 + 8nb + 2t + e % 2 (n0 = the sub-tile's first key).  l2[r], dl[r]: lse2 and delta of the
 * lane's rows i0 and i0 + 8. */
template <int KW>
DEV void bwd_probs(float (&s)[KW / 8][4], const float (&l2)[2], float c)
{
#pragma unroll
    for (int nb = 0; nb < KW / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[nb][e] = exp2_approx(fmaf(s[nb][e], c, -l2[e >> 1]));
}

/* As bwd_mask_t, for the forward's orientation and band plan. */
template <int KW>
DEV void bwd_mask(float (&s)[KW / 8][4], const band_plan &bp, int i0, int n0, int n, int lane)
{
    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];
#pragma unroll
    for (int k = 0; k < MAX_INTERVALS; ++k) { lo[k] = bp.lo[k]; hi[k] = bp.hi[k]; }
#pragma unroll
    for (int nb = 0; nb < KW / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int j = n0 + 8 * nb + 2 * (lane & 3) + e;
            const bool key = j < n;
            s[nb][e] = key && band_allows(lo, hi, i0 - j) ? s[nb][e] : 0.f;
            s[nb][2 + e] = key && band_allows(lo, hi, i0 + 8 - j) ? s[nb][2 + e] : 0.f;
        }
}

template <int KW>
DEV void bwd_dscores(float (&dp)[KW / 8][4], const float (&p)[KW / 8][4], const float (&dl)[2])
{
#pragma unroll
    for (int nb = 0; nb < KW / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) dp[nb][e] = p[nb][e] * (dp[nb][e] - dl[e >> 1]);
}

/* ==== dq: the kernel (deterministic mode) ====
 * Grid (ceil(n / BM), heads, batch), DQ_THREADS threads, SMEM_DQ bytes of dynamic shared
 * memory: the Q and dO tiles, then STAGES stages of (K tile, V tile).  Warp w owns query
 * rows 16w.. and keeps their dQ in registers; the KV tiles are the forward's (the band
 * plan), in ascending key order, so every sum has a fixed order.
 *   for each KV tile: S = Q K^T; P; mask if PARTIAL; dP = dO V^T; dS = P (dP - delta);
 *   dQ += dS K.   Then dq = dQ * scale, 16-bit. */
extern "C" __global__ void __launch_bounds__(DQ_THREADS, 1) BWD_DQ_ENTRY(const sp_bwd_kparams batch_p)
{
    extern __shared__ unsigned char smem[];
    __shared__ band_plan plan;

    /* Packed sequences (seq.cuh): this sequence's parameters; a query tile past its end returns. */
    const sp_bwd_kparams p = seq_bwd_params(batch_p, seq_span_of(batch_p, blockIdx.z), blockIdx.z);
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane >> 2;
    const int n = p.seqlen;
    const int m0 = (gridDim.x - 1 - blockIdx.x) * BM;   /* last query tile first: the long ones start early */
    if (m0 >= n) return;   /* block-uniform */
    const int h = blockIdx.y, b = blockIdx.z, kvh = h / GROUP;
    const elem_t *q = (const elem_t *)p.q + b * p.q_sb + h * p.q_sh;
    const elem_t *dout = (const elem_t *)p.dout + b * p.do_sb + h * p.do_sh;
    const elem_t *k = (const elem_t *)p.k + b * p.k_sb + kvh * p.k_sh;
    const elem_t *v = (const elem_t *)p.v + b * p.v_sb + kvh * p.v_sh;

    const u32 sQ = (smem_addr(smem) + 127u) & ~127u;
    const u32 sdO = sQ + Q_TILE_BYTES;
    const u32 sKV = sdO + Q_TILE_BYTES;                  /* stage st: K at + st * 2 * KV_TILE_BYTES, then V */
    const u32 sQw = sQ + warp * 16 * ROW_BYTES, sdOw = sdO + warp * 16 * ROW_BYTES;

    /* 1. Q and dO tiles (one group), the band plan of this query tile. */
    bwd_load_rows<BM, DQ_THREADS>(sQ, q, p.q_sn, m0, n, tid);
    bwd_load_rows<BM, DQ_THREADS>(sdO, dout, p.do_sn, m0, n, tid);
    cp_async_commit();
    if (tid == 0) band_plan_build(plan, (const int *)p.bands + (p.head_offset + h) * BAND_STRIDE, m0, n);
    __syncthreads();
    const int ntiles = plan.total;

    /* 2. Prefetch the first STAGES - 1 KV tiles, one group each (empty ones too). */
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < ntiles) {
            const int n0 = band_tile_at(plan, st) * BN;
            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES, k, p.k_sn, n0, n, tid);
            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES + KV_TILE_BYTES, v, p.v_sn, n0, n, tid);
        }
        cp_async_commit();
    }

    /* 3. This lane's rows: lse2 and delta (the scratch is padded: every row of the tile
     * exists; rows >= n hold +inf and 0). */
    const int row0 = m0 + 16 * warp;
    const int row_last = min(row0 + 15, n - 1);   /* rows >= n are computed but never stored */
    const long long w = b * p.ws_sb + h * p.ws_sh + row0 + g;
    const float l2[2] = { ((const float *)p.lse2)[w], ((const float *)p.lse2)[w + 8] };
    const float dl[2] = { ((const float *)p.delta)[w], ((const float *)p.delta)[w + 8] };
    float acc[HEAD_DIM / 8][4];
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db) acc[db][0] = acc[db][1] = acc[db][2] = acc[db][3] = 0.f;

    /* 4. The KV tiles of the head's bands, ascending.  The groups: Q/dO first, then one
     * per KV tile, so waiting for all but STAGES - 2 covers Q/dO and tile it. */
    int stage = 0;
    for (int it = 0; it < ntiles; ++it) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int ahead = it + STAGES - 1;
        if (ahead < ntiles) {
            const int st = stage == 0 ? STAGES - 1 : stage - 1;
            const int n0 = band_tile_at(plan, ahead) * BN;
            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES, k, p.k_sn, n0, n, tid);
            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES + KV_TILE_BYTES, v, p.v_sn, n0, n, tid);
        }
        cp_async_commit();

        const int n0 = band_tile_at(plan, it) * BN;
        const int kind = row0 < n ? band_tile_kind(plan, row0, row_last, n0, n) : TILE_SKIP;
        if (kind != TILE_SKIP) {   /* warp-uniform */
            const u32 sK = sKV + stage * 2 * KV_TILE_BYTES, sV = sK + KV_TILE_BYTES;
#pragma unroll 1
            for (int ks = 0; ks < BN / K_SUB; ++ks) {   /* the tile's kind holds for its parts */
                const u32 sKk = sK + ks * K_SUB * ROW_BYTES, sVk = sV + ks * K_SUB * ROW_BYTES;
                float s[K_SUB / 8][4];
                bwd_mma_abt<K_SUB>(s, sQw, sKk, lane);             /* S = Q K^T */
                bwd_probs<K_SUB>(s, l2, p.scale_log2);              /* P */
                if (kind == TILE_PARTIAL) bwd_mask<K_SUB>(s, plan, row0 + g, n0 + ks * K_SUB, n, lane);
                float dp[K_SUB / 8][4];
                bwd_mma_abt<K_SUB>(dp, sdOw, sVk, lane);           /* dP = dO V^T */
                bwd_dscores<K_SUB>(dp, s, dl);                      /* dS = P (dP - delta) */
                bwd_mma_cb<K_SUB>(acc, dp, sKk, lane);              /* dQ += dS K */
            }
        }
        stage = stage + 1 == STAGES ? 0 : stage + 1;
    }

    /* 5. dq = dQ * scale, 16-bit, through the warp's own Q rows.  The warp's rows
     * were copied by threads of every warp (bwd_load_rows spreads a tile over the
     * block), so a wait for this thread's copies is not enough: with ntiles == 0
     * no wait in the loop covered Q's group, and Q's bytes could land after dq's
     * and be stored as dq.  Wait, then a block barrier (issue 13). */
    cp_async_wait<0>();
    __syncthreads();
    bwd_write_rows(acc, p.scale, sQw, (elem_t *)p.dq + b * p.dq_sb + h * p.dq_sh, p.dq_sn, row0, n, lane);
}
