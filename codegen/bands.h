/* The band plan: which (query, key) pairs each head may attend, and which
 * tiles a kernel must visit.  DESIGN.md section 1 and 3 define it; this file
 * is the one implementation of those formulas on the host.  The kernels get
 * each head's merged intervals (bands_head) as a small table and derive
 * their tile ranges from them in closed form, the same way bands_kv_tiles
 * does here, so the tests of this file cover the kernels' iteration too. */
#ifndef SPATTN_BANDS_H
#define SPATTN_BANDS_H

#include <stdint.h>

#include "codegen/spec.h"

/* Head h's allowed distance intervals at sequence length N (N >= 1): the
 * layout of DESIGN.md, clipped to [0, N), empty ones dropped, touching or
 * overlapping ones merged.  Returns 0 (out->n may be 0: no allowed key). */
int bands_head(const sp_pattern *p, int heads, int h, int64_t N, sp_band_list *out);

/* 1 if distance d is in one of the intervals. */
int bands_allows(const sp_band_list *b, int64_t d);
/* Allowed (i, j) pairs with 0 <= j <= i < N. */
int64_t bands_pairs(const sp_band_list *b, int64_t N);
/* N (N + 1) / 2. */
int64_t bands_dense_pairs(int64_t N);
/* Allowed pairs summed over heads / (heads * dense pairs). */
double bands_work_ratio(const sp_pattern *p, int heads, int64_t N);

typedef enum { TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2 } tile_kind;

/* Classify the tile pair query rows [m0, m0+bm) x keys [n0, n0+bn), rows and
 * keys clipped to N: SKIP if no pair allowed, FULL if every pair is, PARTIAL
 * otherwise. */
tile_kind bands_tile_kind(const sp_band_list *b, int64_t N, int64_t m0, int bm, int64_t n0, int bn);

typedef struct { int32_t tile; uint8_t kind; } plan_tile;  /* kind: TILE_FULL or TILE_PARTIAL */

/* KV tiles (index n0 / bn) that query tile mt must visit, ascending, no
 * duplicates, each FULL or PARTIAL.  Writes at most cap; returns the count
 * (which may exceed cap: call again with more room). */
int bands_kv_tiles(const sp_band_list *b, int64_t N, int bm, int bn, int64_t mt, plan_tile *out, int cap);
/* The transpose for the backward pass: query tiles that reach KV tile nt. */
int bands_q_tiles(const sp_band_list *b, int64_t N, int bm, int bn, int64_t nt, plan_tile *out, int cap);

#endif
