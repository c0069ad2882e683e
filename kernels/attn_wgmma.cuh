/* kernels/attn_wgmma.cuh: the forward's two matrix products on wgmma, for a
 * warpgroup of 64 query rows against a KV tile of BN keys: S = Q K^T (Q and
 * K from shared memory, both K-major) and O += P V (P from registers, V read
 * transposed), each issued as one commit group, and P packed from the S
 * accumulators.  Shared by the wgmma forward (fwd_wgmma.cuh) and the
 * warp-specialized one (fwd_ws.cuh).  Tiles are in wgmma.cuh's
 * 128-byte-swizzled layout; Q tiles have BM rows, K and V tiles BN. */
#pragma once
#include "wgmma.cuh"

/* S = Q K^T, one k16 step (accumulate = 0 on the first: S = Q K^T, no zeroing needed). */
DEV void wgmma_qk(float (&d)[BN / 8][4], u64 desc_a, u64 desc_b, int accumulate)
{
    wgmma_op<BN>::ss(d, desc_a, desc_b, accumulate);
}
/* O += P V, one k16 step of keys: P from registers, V transposed from shared memory. */
DEV void wgmma_pv(float (&d)[HEAD_DIM / 8][4], const u32 (&a)[4], u64 desc_b)
{
    wgmma_op<HEAD_DIM>::rs(d, a, desc_b);
}

/* Issue S = Q K^T for one KV tile as one commit group: HEAD_DIM / 16 k16 steps, step kk
 * 32 bytes into column block kk / 4 of both Q (this warpgroup's rows, dq) and K (dk). */
DEV void issue_qk(float (&s)[1][BN / 8][4], u64 dq, u64 dk)
{
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; ++kk)
        wgmma_qk(s[0], dq + (((kk >> 2) * BM * SW_ROW + (kk & 3) * 32) >> 4),
                 dk + (((kk >> 2) * BN * SW_ROW + (kk & 3) * 32) >> 4), kk > 0);
    wgmma_commit();
}

/* P (fp32, the S accumulators) packed to 16 bits: the A fragments of O += P V, keys
 * 16kc..16kc+15 from n-blocks 2kc and 2kc + 1 (mma.sync's C-to-A identity). */
DEV void pack_p(u32 (&pf)[BN / 16][4], const float (&s)[1][BN / 8][4])
{
#pragma unroll
    for (int kc = 0; kc < BN / 16; ++kc) {
        pf[kc][0] = pack2(s[0][2 * kc][0], s[0][2 * kc][1]);
        pf[kc][1] = pack2(s[0][2 * kc][2], s[0][2 * kc][3]);
        pf[kc][2] = pack2(s[0][2 * kc + 1][0], s[0][2 * kc + 1][1]);
        pf[kc][3] = pack2(s[0][2 * kc + 1][2], s[0][2 * kc + 1][3]);
    }
}

/* Issue O += P V for one KV tile (BN / 16 k16 steps of keys; V's keys 16kc.. start 16kc
 * rows into its tile) as one commit group; dv: V's descriptor. */
DEV void issue_pv(float (&acc)[1][HEAD_DIM / 8][4], const u32 (&pf)[BN / 16][4], u64 dv)
{
    regs_fence(acc[0]);
    wgmma_fence();   /* acc (rescaled) and pf were written by ordinary instructions */
#pragma unroll
    for (int kc = 0; kc < BN / 16; ++kc) wgmma_pv(acc[0], pf[kc], dv + ((kc * 16 * SW_ROW) >> 4));
    wgmma_commit();
}
