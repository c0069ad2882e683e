/* The band plan: which (query, key) pairs each head may attend, and which
 * tiles a kernel must visit.  DESIGN.md section 1 and 3 define it; this file
 * is the one implementation of those formulas on the host.  The kernels get
 * each head's merged intervals (bands_head) as a small table and derive
 * their tile ranges from them in closed form, the same way bands_kv_tiles
 * does here, so the tests of this file cover the kernels' iteration too.
 *
 * The GPU kernels iterate exactly like bands_kv_tiles (forward: per query
 * tile, its KV tiles) and bands_q_tiles (backward: per KV tile, its query
 * tiles); the kernel emitter mirrors those two loops line for line:
 *
 *     next = 0                                  // first KV tile not yet visited
 *     for k = n-1 down to 0:                    // descending distance = ascending key
 *         j_lo = max(m0 - (hi_k - 1), 0);  j_hi = min(m_last - lo_k, N - 1)
 *         if j_lo > j_hi: continue
 *         for t = max(j_lo / BN, next) .. j_hi / BN:
 *             kind = tile_kind(t)               // FULL: no mask; PARTIAL: mask
 *             if kind != SKIP: visit(t, kind)
 *         next = max(next, j_hi / BN + 1)
 *
 * where m0 = mt * BM and m_last = min(m0 + BM, N) - 1 are the tile's first
 * and last row.  Keys come in ascending order, each tile once.
 *
 * Sizes: N (sequence length) may be up to 2^32 - 1: every pair and tile
 * count here fits int64_t, and tile indices fit int32_t, up to there (the
 * tests check 2^31 and 2^32 - 1).  Tile sizes are positive. */
#ifndef SPATTN_BANDS_H
#define SPATTN_BANDS_H

#include <stdint.h>

#include "codegen/spec.h"

/* Head h's allowed distance intervals at sequence length N (N >= 1): the
 * layout of DESIGN.md, clipped to [0, N), empty ones dropped, touching or
 * overlapping ones merged; sorted ascending.  The basis length is N unless
 * p->band_basis > 0.  Returns 0 (out->n may be 0: no allowed key); -1 with
 * out->n = 0 only on a caller bug (h not in [0, heads), N < 1, custom
 * pattern without bands). */
int bands_head(const sp_pattern *p, int heads, int h, int64_t N, sp_band_list *out);

/* Rows and keys that take part in no pair (their outputs are exactly 0):
 * query row i (0 <= i < N) has an allowed key iff some interval starts at or
 * below i; key j is reached by some query row iff j + lo <= N - 1 for some
 * interval.  Both read the smallest lo only (intervals are sorted). */
int bands_row_has_key(const sp_band_list *b, int64_t i);
int bands_key_is_reached(const sp_band_list *b, int64_t j, int64_t N);

/* 1 if distance d is in one of the intervals. */
int bands_allows(const sp_band_list *b, int64_t d);
/* Allowed (i, j) pairs with 0 <= j <= i < N, in closed form:
 * (hi - lo)(2N - lo - hi + 1) / 2 per interval clipped to [0, N). */
int64_t bands_pairs(const sp_band_list *b, int64_t N);
/* N (N + 1) / 2. */
int64_t bands_dense_pairs(int64_t N);
/* Allowed pairs summed over heads / (heads * dense pairs); -1 if a head's
 * bands cannot be built (see bands_head). */
double bands_work_ratio(const sp_pattern *p, int heads, int64_t N);

typedef enum { TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2 } tile_kind;

/* Classify the tile pair query rows [m0, m0+bm) x keys [n0, n0+bn), rows and
 * keys clipped to [0, N): SKIP if no pair allowed, FULL if every pair is,
 * PARTIAL otherwise.  A tile pair reaching above the diagonal (j > i) is
 * never FULL.  Cost: O(intervals), from the tile's distance range
 * [i_min - j_max, i_max - j_min], which is contiguous. */
tile_kind bands_tile_kind(const sp_band_list *b, int64_t N, int64_t m0, int bm, int64_t n0, int bn);

typedef struct { int32_t tile; uint8_t kind; } plan_tile;  /* kind: TILE_FULL or TILE_PARTIAL */

/* KV tiles (index n0 / bn) that query tile mt must visit, ascending, no
 * duplicates, each FULL or PARTIAL.  Writes at most cap (out may be NULL
 * when cap is 0); returns the count (which may exceed cap: call again with
 * more room).  A query tile past N, or one whose rows allow no key, yields 0. */
int bands_kv_tiles(const sp_band_list *b, int64_t N, int bm, int bn, int64_t mt, plan_tile *out, int cap);
/* The transpose for the backward pass: query tiles (index m0 / bm) that
 * reach KV tile nt, ascending, same contract.  The loop is the mirror of
 * bands_kv_tiles: intervals in ascending distance give ascending rows
 * i in [n0 + lo, n_last + hi - 1], clipped to N. */
int bands_q_tiles(const sp_band_list *b, int64_t N, int bm, int bn, int64_t nt, plan_tile *out, int cap);

/* The order of the deterministic backward's dQ adds (kernels/bwd_order.cuh,
 * whose bwd_dq_rank this mirrors line for line): the KV tiles that reach
 * query tile mt (those whose bands_q_tiles lists mt) add their part of its
 * dQ in descending tile index, and KV tile nt's rank is how many of them
 * come before it: the tiles nt' > nt, nt' < ceil(N / bn), that reach mt.
 * Closed form, the transpose of the ranges of bands_kv_tiles: interval
 * [lo, hi) brings keys of tiles [max(m0 - hi + 1, 0) / bn, (m_last - lo) /
 * bn] to the tile's rows (none if m_last < lo), ranges ascending as k
 * descends, merged by `next` as bands_kv_tiles does, and the part above nt
 * counted.  Intervals need not be clipped to N.  Meaningful for a tile
 * pair that bands_q_tiles(nt) lists (mt's rows < N); tests/unit/
 * test_dq_order.c checks it against the device cursor, brute force. */
int64_t bands_dq_rank(const sp_band_list *b, int64_t N, int bm, int bn, int64_t nt, int64_t mt);

/* The mirror order, the warp-specialized kernel's (kernels/bwd_ws.cuh, whose
 * bwd_dq_rank_of<true> this mirrors line for line): the adds in ascending
 * tile index, and KV tile nt's rank the number of tiles nt' < nt that reach
 * mt.  The same ranges, taken from the highest (k ascending), `top` the
 * highest tile below nt not yet counted. */
int64_t bands_dq_rank_below(const sp_band_list *b, int64_t N, int bm, int bn, int64_t nt, int64_t mt);

/* How many tiles bands_kv_tiles(mt) would list, and how many of them are
 * FULL (*full), without listing them: O(intervals).  For cost models and
 * `spattn plan` at large N. */
int64_t bands_kv_tile_count(const sp_band_list *b, int64_t N, int bm, int bn, int64_t mt, int64_t *full);

/* Tile work of one head summed over all query tiles. */
typedef struct {
    int64_t q_tiles;      /* ceil(N / bm) */
    int64_t visited;      /* (query tile, KV tile) pairs visited */
    int64_t full, partial;
    int64_t max_per_q;    /* most KV tiles any query tile visits */
} bands_tile_stats;

/* Sum bands_kv_tile_count over the query tiles of a head. */
void bands_tile_sum(const sp_band_list *b, int64_t N, int bm, int bn, bands_tile_stats *out);

#endif
