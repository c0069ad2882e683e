/* kernels/decode_plan.cuh: what a decode block reads, in plain C that both
 * the device (kernels/decode.cuh) and the host (runtime/decode.c: splits,
 * bytes read; the unit tests) compile, so the two cannot disagree:
 *
 *   band_layout      a head's merged intervals at length n for the built-in
 *                    layouts (local, spattn, exclusive, gapped): the formula
 *                    of codegen/bands.c's bands_head, which the unit tests
 *                    compare it with for every head, pattern and n up to
 *                    thousands.  While decoding, the bands follow each
 *                    sequence's own length (its band basis is its length,
 *                    unless the spec fixes band_basis), so the kernel
 *                    re-derives them per sequence; dense, window and custom
 *                    bands do not depend on the length and come from the
 *                    plan's band table.
 *   tile_runs_add    the union of key-tile ranges, as sorted disjoint runs
 *                    [first, last]: a block's tiles are the union over its
 *                    query rows and their heads' intervals.
 *
 * No includes: in a generated kernel it follows common.cuh; on the host it is
 * included by C files. */
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define DECODE_PLAN_FN static __device__ __forceinline__
#else
#define DECODE_PLAN_FN static inline
#endif

/* The pattern kinds of codegen/spec.h whose bands depend on the length. */
enum { BAND_LAYOUT_LOCAL = 1, BAND_LAYOUT_SPATTN = 2, BAND_LAYOUT_EXCLUSIVE = 3, BAND_LAYOUT_GAPPED = 4 };

/* Head h (of heads) at length n >= 1 with basis L = basis > 0 ? basis : n:
 * base = L / heads, extra = L % heads, width w = base + (h < extra), start
 * s = h base + min(h, extra); local [0, w + 1), spattn local and
 * [max(s, w + 1), s + w), exclusive [s, s + w), gapped [s, s + w / 2);
 * clipped to [0, n), empty ones dropped, touching ones merged.  Writes at
 * most 2 intervals to lo, hi (ascending); returns their count, or -1 for a
 * kind that is not a layout. */
DECODE_PLAN_FN int band_layout(int kind, int heads, int h, long long basis, long long n, long long *lo, long long *hi)
{
    const long long L = basis > 0 ? basis : n;
    const long long base = L / heads, extra = L % heads;
    const long long w = base + (h < extra ? 1 : 0);
    const long long s = h * base + (h < extra ? h : extra);
    const long long local_hi = w < n ? w + 1 : n;
    long long a[2], b[2];
    int m = 0;
    if (kind == BAND_LAYOUT_LOCAL || kind == BAND_LAYOUT_SPATTN) { a[m] = 0; b[m] = local_hi; ++m; }
    if (kind == BAND_LAYOUT_SPATTN) { a[m] = s > local_hi ? s : local_hi; b[m] = s + w; ++m; }
    if (kind == BAND_LAYOUT_EXCLUSIVE) { a[m] = s; b[m] = s + w; ++m; }
    if (kind == BAND_LAYOUT_GAPPED) { a[m] = s; b[m] = s + w / 2; ++m; }
    if (m == 0) return -1;
    int k = 0;
    for (int r = 0; r < m; ++r) {
        const long long x = a[r] > 0 ? a[r] : 0, y = b[r] < n ? b[r] : n;
        if (x >= y) continue;
        lo[k] = x;
        hi[k] = y;
        ++k;
    }
    if (k == 2 && lo[1] < lo[0]) {   /* never for these layouts; kept for the contract */
        long long t = lo[0]; lo[0] = lo[1]; lo[1] = t;
        t = hi[0]; hi[0] = hi[1]; hi[1] = t;
    }
    if (k == 2 && lo[1] <= hi[0]) {   /* touching or overlapping: one interval */
        hi[0] = hi[1] > hi[0] ? hi[1] : hi[0];
        k = 1;
    }
    return k;
}

/* Add tiles [a, z] to the n sorted, disjoint, non-adjacent runs
 * first[0..n), last[0..n) (room for n + 1): runs it overlaps or touches are
 * merged into one.  Returns the new count. */
DECODE_PLAN_FN int tile_runs_add(int *first, int *last, int n, int a, int z)
{
    int p = 0;
    while (p < n && last[p] + 1 < a) ++p;               /* runs wholly before [a, z] */
    int q = p;
    while (q < n && first[q] <= z + 1) {                /* runs that meet it */
        if (first[q] < a) a = first[q];
        if (last[q] > z) z = last[q];
        ++q;
    }
    const int drop = q - p;                             /* replaced by one run */
    if (drop == 0) {
        for (int r = n; r > p; --r) { first[r] = first[r - 1]; last[r] = last[r - 1]; }
    } else {
        for (int r = p + 1; r + drop - 1 < n; ++r) { first[r] = first[r + drop - 1]; last[r] = last[r + drop - 1]; }
    }
    first[p] = a;
    last[p] = z;
    return n + 1 - (drop == 0 ? 0 : drop);
}
