/* kernels/softmax.cuh: the forward's online softmax, written against a warp's
 * m16 accumulator fragments s[WM][BN / 8][4] (mma.sync's, and wgmma's with
 * WM = 1). */
#pragma once
#include "ptx.cuh"

/* Online softmax, in the exp2 domain.
 * Per lane, m16 tile mi and row r (0: row l/4, 1: row l/4 + 8): m[mi][r] the running
 * max of the raw scores (the same in the 4 lanes of a quad), l[mi][r] this lane's
 * share of the row sum, acc[mi] the output accumulator.  With c = scale * log2(e),
 *     exp(scale (s - m)) = exp2(s c - m c): one FFMA and one ex2 per score.
 * While every key of a row so far is masked, m = -inf: the exp base is then taken as 0,
 * so exp2(-inf - 0) = 0 and no (-inf) - (-inf) = NaN appears.  softmax_p turns s into
 * P = exp2(s c - m_new c), rescales l and returns the factors exp2(m_old c - m_new c)
 * that O must be rescaled by; rescale_o applies them.  They are two steps because
 * the wgmma kernel computes P while the tensor cores still add the previous tile to O. */
DEV void softmax_p(float (&s)[WM][BN / 8][4], float (&m)[WM][2], float (&l)[WM][2], float (&alphas)[WM][2], float c)
{
#pragma unroll
    for (int mi = 0; mi < WM; ++mi)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = m[mi][r];
#pragma unroll
            for (int nb = 0; nb < BN / 8; ++nb) mx = fmaxf(mx, fmaxf(s[mi][nb][2 * r], s[mi][nb][2 * r + 1]));
            mx = quad_max(mx);
            const float base = mx == neg_inf() ? 0.f : mx * c;
            const float alpha = exp2_approx(m[mi][r] * c - base);   /* 0 while m was -inf */
            m[mi][r] = mx;
            float sum = 0.f;
#pragma unroll
            for (int nb = 0; nb < BN / 8; ++nb) {
                s[mi][nb][2 * r] = exp2_approx(fmaf(s[mi][nb][2 * r], c, -base));
                s[mi][nb][2 * r + 1] = exp2_approx(fmaf(s[mi][nb][2 * r + 1], c, -base));
                sum += s[mi][nb][2 * r] + s[mi][nb][2 * r + 1];
            }
            l[mi][r] = l[mi][r] * alpha + sum;
            alphas[mi][r] = alpha;
        }
}

/* Rescale O only where some row's max moved (warp-uniform vote): on long rows the max
 * settles after a few tiles, and the multiplies are then skipped. */
DEV void rescale_o(float (&acc)[WM][HEAD_DIM / 8][4], const float (&alphas)[WM][2])
{
    bool moved = false;
#pragma unroll
    for (int mi = 0; mi < WM; ++mi) moved |= (alphas[mi][0] != 1.f) | (alphas[mi][1] != 1.f);
    if (__any_sync(0xffffffffu, moved)) {
#pragma unroll
        for (int mi = 0; mi < WM; ++mi)
#pragma unroll
            for (int db = 0; db < HEAD_DIM / 8; ++db) {
                acc[mi][db][0] *= alphas[mi][0];
                acc[mi][db][1] *= alphas[mi][0];
                acc[mi][db][2] *= alphas[mi][1];
                acc[mi][db][3] *= alphas[mi][1];
            }
    }
}

