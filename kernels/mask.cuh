/* kernels/mask.cuh: the forward's band mask, written against a warp's m16
 * accumulator fragments s[WM][BN / 8][4] (the wgmma accumulator of a warp's
 * 16 rows has the same layout, WM = 1). */
#pragma once
#include "bands.cuh"

/* The band mask, on PARTIAL tiles only.
 * Lane l holds in s[mi][nb] rows i0 + 16mi (s[mi][nb][0..1]) and i0 + 16mi + 8
 * (s[mi][nb][2..3]), keys j = n0 + 8nb + 2(l % 4) + {0, 1}.  A score stays if its
 * distance is allowed and its key exists (j < n: keys past n were zero-filled); the
 * others become -inf. */
DEV void mask_tile(float (&s)[WM][BN / 8][4], const band_plan &bp, int i0, int n0, int n, int lane)
{
    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];
#pragma unroll
    for (int k = 0; k < MAX_INTERVALS; ++k) { lo[k] = bp.lo[k]; hi[k] = bp.hi[k]; }
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int j = n0 + 8 * nb + 2 * (lane & 3) + e;
            const bool key = j < n;
#pragma unroll
            for (int mi = 0; mi < WM; ++mi) {
                const int i = i0 + 16 * mi;
                s[mi][nb][e] = key & band_allows(lo, hi, i - j) ? s[mi][nb][e] : neg_inf();
                s[mi][nb][2 + e] = key & band_allows(lo, hi, i + 8 - j) ? s[mi][nb][2 + e] : neg_inf();
            }
        }
}
