/* kernels/bwd_parts.cuh: the per-warp parts of one step of main, on the
 * accumulators of S^T (keys x queries): P^T, its band mask, dS^T, and dS^T's
 * trip to shared memory.  The wgmma main shares them: a 64-row wgmma
 * accumulator holds each warp's m16n8 fragments. */
#pragma once
#include "bwd_iter.cuh"

/* ==== main: the parts of one (query sub-tile, KV tile) step, per warp ====
 * A sub-tile is QW = Q_SUB queries of the query tile (all BM of them, or a part when the
 * registers would not hold S^T and dP^T of the whole tile next to dK and dV).  The warp's
 * accumulators are keys x queries: acc[nb][e] is key j0 + 8 (e / 2) (j0 = the warp's first
 * key + g) and query i0 + 8nb + 2t + e % 2 (i0 = the sub-tile's first row).
 *
 * S^T -> P^T = exp(scale s - LSE) = exp2(s c - lse2), c = scale log2(e), lse2 the stage's row
 * (per query: element e reads lse2[8nb + 2t + e % 2]; lanes of equal t read the same word).
 * lse2 = +inf gives exp2(-inf) = 0: rows past n and rows without an allowed key get P = 0. */
template <int QW>
DEV void bwd_probs_t(float (&s)[QW / 8][4], u32 sL, float c, int lane)
{
#pragma unroll
    for (int nb = 0; nb < QW / 8; ++nb) {
        const float2 l = bwd_lds_f2(sL + 4 * (8 * nb + 2 * (lane & 3)));
        s[nb][0] = exp2_approx(fmaf(s[nb][0], c, -l.x));
        s[nb][1] = exp2_approx(fmaf(s[nb][1], c, -l.y));
        s[nb][2] = exp2_approx(fmaf(s[nb][2], c, -l.x));
        s[nb][3] = exp2_approx(fmaf(s[nb][3], c, -l.y));
    }
}

/* P^T masked, on PARTIAL tiles: an entry stays if its distance i - j is allowed and its key
 * exists (j < n: keys past n were zero-filled); the others become 0.  Rows past n need no
 * test (P is 0 there already). */
template <int QW>
DEV void bwd_mask_t(float (&s)[QW / 8][4], const bwd_slot &sl, int i0, int j0, int n, int lane)
{
    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];
#pragma unroll
    for (int k = 0; k < MAX_INTERVALS; ++k) { lo[k] = sl.lo[k]; hi[k] = sl.hi[k]; }
    const bool key0 = j0 < n, key1 = j0 + 8 < n;
#pragma unroll
    for (int nb = 0; nb < QW / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int i = i0 + 8 * nb + 2 * (lane & 3) + e;
            s[nb][e] = key0 && band_allows(lo, hi, i - j0) ? s[nb][e] : 0.f;
            s[nb][2 + e] = key1 && band_allows(lo, hi, i - j0 - 8) ? s[nb][2 + e] : 0.f;
        }
}

/* dP^T -> dS^T = P^T (dP^T - delta), delta per query from the stage's row (as lse2). */
template <int QW>
DEV void bwd_dscores_t(float (&dp)[QW / 8][4], const float (&p)[QW / 8][4], u32 sD, int lane)
{
#pragma unroll
    for (int nb = 0; nb < QW / 8; ++nb) {
        const float2 d = bwd_lds_f2(sD + 4 * (8 * nb + 2 * (lane & 3)));
        dp[nb][0] = p[nb][0] * (dp[nb][0] - d.x);
        dp[nb][1] = p[nb][1] * (dp[nb][1] - d.y);
        dp[nb][2] = p[nb][2] * (dp[nb][2] - d.x);
        dp[nb][3] = p[nb][3] * (dp[nb][3] - d.y);
    }
}

/* dS^T of the warp's 16 keys and QW queries from query c0 * 8 of the tile on -> rows 16w.. of
 * the dS^T tile, 16-bit: lane l stores the query pair 8 (c0 + nb) + 2t.. (chunk c0 + nb, bytes
 * 4t..4t+3) of keys 16w + g and 16w + g + 8.  A warp whose keys meet nothing of those queries
 * stores zeros (bwd_zero_ds): dQ reads every row. */
template <int QW>
DEV void bwd_store_ds(u32 sdS, const float (&ds)[QW / 8][4], int c0, int warp, int lane)
{
    const int r = 16 * warp + (lane >> 2), t = lane & 3;
#pragma unroll
    for (int nb = 0; nb < QW / 8; ++nb) {
        st_shared_u32(sdS + bwd_ds_off(r, c0 + nb) + 4 * t, pack2(ds[nb][0], ds[nb][1]));
        st_shared_u32(sdS + bwd_ds_off(r + 8, c0 + nb) + 4 * t, pack2(ds[nb][2], ds[nb][3]));
    }
}

template <int QW>
DEV void bwd_zero_ds(u32 sdS, int c0, int warp, int lane)
{
    const int r = 16 * warp + (lane >> 2), t = lane & 3;
#pragma unroll
    for (int nb = 0; nb < QW / 8; ++nb) {
        st_shared_u32(sdS + bwd_ds_off(r, c0 + nb) + 4 * t, 0u);
        st_shared_u32(sdS + bwd_ds_off(r + 8, c0 + nb) + 4 * t, 0u);
    }
}
