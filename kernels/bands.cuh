/* kernels/bands.cuh: the band helpers every kernel uses: which KV tiles a
 * query tile visits (band_plan_build, band_tile_at), how a tile meets a range
 * of rows (band_tile_kind: SKIP / PARTIAL / FULL) and whether a distance is
 * allowed (band_allows).  The host's twin is codegen/bands.c.  Needs the
 * constants MAX_INTERVALS, BM, BN and BANDS_DENSE (1: the dense causal
 * baseline, whose one interval is [0, n)). */
#pragma once
#include "ptx.cuh"

/* ==== Band helpers ====
 * A head's allowed distances d = i - j are at most MAX_INTERVALS half-open intervals
 * [lo, hi), ascending and disjoint (abi/bandtab.h: row h of the band table holds
 * count, lo_0, hi_0, lo_1, hi_1, ...; unused slots are [0, 0)).  A query tile's plan is
 * the KV tiles it visits, as one run of consecutive tiles per interval, in ascending
 * key order; it lives in shared memory, built by one thread. */
enum { TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2 };

struct band_plan {
    int count;                      /* intervals of this head */
    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];
    int run_first[MAX_INTERVALS];   /* run r: KV tiles run_first[r] .. + run_len[r] - 1 */
    int run_len[MAX_INTERVALS];
    int total;                      /* KV tiles in all runs */
};

/* The plan of query rows [m0, m0 + BM) from band table row `row`, mirroring
 * bands_kv_tiles() in codegen/bands.c line for line: interval [lo, hi) reaches keys
 * j in [m0 - (hi - 1), m_last - lo] (m_last: last row < n), clipped to [0, n).
 * Descending distance is ascending key, so intervals go from the last to the first;
 * `next` (the first tile not yet visited) keeps a tile that two intervals share from
 * being visited twice.  Tiles past a range's ends are never loaded. */
DEV void band_plan_build(band_plan &bp, const int *row, int m0, int n)
{
    const int count = min(row[0], MAX_INTERVALS);
    bp.count = count;
    for (int k = 0; k < MAX_INTERVALS; ++k) {
        bp.lo[k] = k < count ? row[1 + 2 * k] : 0;
        bp.hi[k] = k < count ? row[2 + 2 * k] : 0;
    }
    const int m_last = min(m0 + BM, n) - 1;
    int next = 0, runs = 0, total = 0;
    for (int k = count - 1; k >= 0; --k) {
        const int j_lo = max(m0 - (bp.hi[k] - 1), 0);
        const int j_hi = min(m_last - bp.lo[k], n - 1);
        if (j_lo > j_hi) continue;
        const int t_end = j_hi / BN, t_first = max(j_lo / BN, next);
        if (t_first <= t_end) {
            bp.run_first[runs] = t_first;
            bp.run_len[runs] = t_end - t_first + 1;
            total += t_end - t_first + 1;
            ++runs;
        }
        next = max(next, t_end + 1);
    }
    for (int r = runs; r < MAX_INTERVALS; ++r) { bp.run_first[r] = 0; bp.run_len[r] = 0; }
    bp.total = total;
}

/* The it-th KV tile of the plan, 0 <= it < total. */
DEV int band_tile_at(const band_plan &bp, int it)
{
    int r = 0;
    while (it >= bp.run_len[r]) { it -= bp.run_len[r]; ++r; }
    return bp.run_first[r] + it;
}

/* How query rows [r_lo, r_hi] (all < n) meet KV tile [n0, n0 + BN): their distances
 * fill [r_lo - j_hi, r_hi - n0] (j_hi: the tile's last key < n), every value between.
 *   TILE_SKIP     no interval meets that range: nothing is allowed;
 *   TILE_FULL     one interval holds all of it and no key is past n: no mask needed;
 *   TILE_PARTIAL  otherwise: the per-element mask decides.
 * A tile with keys past n (n0 + BN > n) is never FULL: its zero-filled keys score 0
 * and, unmasked, would add exp(0 - m) to the row sums. */
DEV int band_tile_kind(const band_plan &bp, int r_lo, int r_hi, int n0, int n)
{
    const int j_hi = min(n0 + BN, n) - 1;
    const int d_lo = r_lo - j_hi, d_hi = r_hi - n0;
    bool any = false, full = false;
#pragma unroll
    for (int k = 0; k < MAX_INTERVALS; ++k) {
        const bool used = k < bp.count;
        any |= used & (d_lo < bp.hi[k]) & (d_hi >= bp.lo[k]);
        full |= used & (bp.lo[k] <= d_lo) & (d_hi < bp.hi[k]);
    }
    if (!any) return TILE_SKIP;
    return full && n0 + BN <= n ? TILE_FULL : TILE_PARTIAL;
}

/* Is distance d allowed?  lo, hi: the plan's intervals copied to registers (the
 * caller tests many d); unused slots are [0, 0) and allow nothing.  Bitwise, not
 * short-circuit: predicates and selects, no branches.  Dense causal: its one interval
 * is [0, n), and keys j >= n are masked separately, so d >= 0 decides. */
DEV bool band_allows(const int (&lo)[MAX_INTERVALS], const int (&hi)[MAX_INTERVALS], int d)
{
    if constexpr (BANDS_DENSE) {
        return d >= 0;
    } else {
        bool a = false;
#pragma unroll
        for (int k = 0; k < MAX_INTERVALS; ++k) a |= (lo[k] <= d) & (d < hi[k]);
        return a;
    }
}
