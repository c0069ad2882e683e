/* The warp-specialized forward's tile decisions (kernels/fwd_ws.cuh, session 11): which KV
 * tile comes at plan index it (ws_tile_n0) and whether a warp masks its scores there
 * (ws_rows_of, ws_tile_of).  A wrong "no mask" leaves disallowed scores in the softmax, and a
 * tile order that differs from the producer's reads the wrong keys, so both are checked
 * against the rule they replace, for every work item, consumer, warp and tile:
 *
 *   - session 10's consumer, transcribed line for line from kernels/bands.cuh
 *     (band_plan_build, band_tile_at, band_tile_kind) and scores_to_p's condition (FULL for
 *     the warpgroup's rows, or else for the warp's; a warpgroup past n masks);
 *   - the host's twin, codegen/bands.c: bands_kv_tiles lists the same tiles, and a tile
 *     needs no mask exactly where bands_tile_kind says FULL for the deciding rows and no key
 *     is past n;
 *   - the dense baseline's closed forms (tile it is it * BN; FULL iff (it + 1) * BN <=
 *     lo + 1) against bands_tile_kind for any row range, brute force.
 *
 * Band tables come from every pattern (bands_head: clipped and merged, as abi/bandtab.h
 * lays them out) and at random (sorted, disjoint, some reaching past n or starting beyond
 * it), for n at and around tile edges, BM of 1 to 4 consumers and BN 16 to 256. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/bands.h"
#include "runtime/rng.h"
#include "tests/check.h"

#define MAXI SP_MAX_INTERVALS

static rng gen;   /* seeded by each case that draws from it */
static uint64_t rnd(void) { return rng_next(&gen); }
static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

enum { SKIP = 0, PARTIAL = 1, FULL = 2 };

/* A kernel's shape: MAX_INTERVALS, BM (64 rows per consumer), BN, BANDS_DENSE. */
typedef struct { int maxi, bm, bn, dense; } shape;

/* ---- kernels/bands.cuh, transcribed ------------------------------------------------------ */

typedef struct {
    int count, lo[MAXI], hi[MAXI], run_first[MAXI], run_len[MAXI], total;
} plan;

/* band_plan_build: row is a band table row (count, lo_0, hi_0, ...). */
static void plan_build(plan *bp, const int32_t *row, const shape *k, int m0, int n)
{
    const int count = imin(row[0], k->maxi);
    bp->count = count;
    for (int i = 0; i < k->maxi; ++i) {
        bp->lo[i] = i < count ? row[1 + 2 * i] : 0;
        bp->hi[i] = i < count ? row[2 + 2 * i] : 0;
    }
    const int m_last = imin(m0 + k->bm, n) - 1;
    int next = 0, runs = 0, total = 0;
    for (int i = count - 1; i >= 0; --i) {
        const int j_lo = imax(m0 - (bp->hi[i] - 1), 0);
        const int j_hi = imin(m_last - bp->lo[i], n - 1);
        if (j_lo > j_hi) continue;
        const int t_end = j_hi / k->bn, t_first = imax(j_lo / k->bn, next);
        if (t_first <= t_end) {
            bp->run_first[runs] = t_first;
            bp->run_len[runs] = t_end - t_first + 1;
            total += t_end - t_first + 1;
            ++runs;
        }
        next = imax(next, t_end + 1);
    }
    for (int r = runs; r < k->maxi; ++r) { bp->run_first[r] = 0; bp->run_len[r] = 0; }
    bp->total = total;
}

/* band_tile_at */
static int plan_tile_at(const plan *bp, int it)
{
    int r = 0;
    while (it >= bp->run_len[r]) { it -= bp->run_len[r]; ++r; }
    return bp->run_first[r] + it;
}

/* band_tile_kind */
static int plan_tile_kind(const plan *bp, const shape *k, int r_lo, int r_hi, int n0, int n)
{
    const int j_hi = imin(n0 + k->bn, n) - 1;
    const int d_lo = r_lo - j_hi, d_hi = r_hi - n0;
    int any = 0, full = 0;
    for (int i = 0; i < k->maxi; ++i) {
        const int used = i < bp->count;
        any |= used & (d_lo < bp->hi[i]) & (d_hi >= bp->lo[i]);
        full |= used & (bp->lo[i] <= d_lo) & (d_hi < bp->hi[i]);
    }
    if (!any) return SKIP;
    return full && n0 + k->bn <= n ? FULL : PARTIAL;
}

/* Session 10's scores_to_p: does warp `warp` of consumer c mask tile n0? */
static int old_mask(const plan *bp, const shape *k, int m0, int c, int warp, int n0, int n)
{
    const int wg_row0 = m0 + 64 * c, wg_last = imin(wg_row0 + 63, n - 1);
    const int row0 = wg_row0 + 16 * warp, row_last = imin(row0 + 15, n - 1);
    const int wg_kind = wg_row0 < n ? plan_tile_kind(bp, k, wg_row0, wg_last, n0, n) : SKIP;
    return wg_kind != FULL && (wg_kind == SKIP || row0 >= n || plan_tile_kind(bp, k, row0, row_last, n0, n) != FULL);
}

/* ---- kernels/fwd_ws.cuh, transcribed: ws_tile_n0, ws_rows_of, ws_tile_of ------------------ */
/* (ws_bounds_of copies the plan's fields into registers: here the plan itself.) */

static int ws_tile_n0(const plan *b, const shape *k, int it)
{
    if (k->dense) return it * k->bn;
    int tile = b->run_first[0] + it, start = b->run_len[0];
    for (int r = 1; r < k->maxi; ++r) {
        if (it >= start) tile = b->run_first[r] + it - start;
        start += b->run_len[r];
    }
    return tile * k->bn;
}

typedef struct { int lo, hi, n_full, full_tiles; } ws_rows;

/* ws_rows_of's dense rule: tiles 0 .. this - 1 are FULL for rows from lo (< n) on. */
static int ws_dense_full_tiles(int lo, int bn) { return (lo + 1) / bn; }

static ws_rows ws_rows_of(const shape *k, int wg_row0, int row0, int n)
{
    ws_rows r;
    const int own = row0 < n, any = wg_row0 < n;
    r.lo = own ? row0 : wg_row0;
    r.hi = imin(r.lo + (own ? 15 : 63), n - 1);
    r.n_full = any ? n : 0;
    r.full_tiles = any ? ws_dense_full_tiles(r.lo, k->bn) : 0;
    return r;
}

/* ws_tile_of: the mask (n0 from ws_tile_n0) */
static int ws_tile_mask(const plan *b, const shape *k, int it, const ws_rows *rows)
{
    const int n0 = ws_tile_n0(b, k, it);
    if (k->dense) return it >= rows->full_tiles;
    const int d_lo = rows->lo - (n0 + k->bn - 1), d_hi = rows->hi - n0;
    int full = 0;
    for (int i = 0; i < k->maxi; ++i) full |= (i < b->count) & (b->lo[i] <= d_lo) & (d_hi < b->hi[i]);
    return !full | (n0 + k->bn > rows->n_full);
}

/* ---- one band table row, every work item ------------------------------------------------- */

static long n_decisions;   /* (item, consumer, warp, tile) decisions compared, over all cases */

/* Every query tile of a sequence of n tokens under table row `row`: the new tile order and
 * masks against session 10's, for the generic path and, when the row is the dense one
 * ([0, n)), the closed forms too.  listed: the row is a merged band list (bands_head), so
 * the host's twin must agree as well. */
static void check_row(const int32_t *row, const shape *k, int n, int listed, const char *tag)
{
    shape gen_k = *k, dense_k = *k;
    gen_k.dense = 0;
    dense_k.dense = 1;
    const int is_dense = row[0] == 1 && row[1] == 0 && row[2] == n;
    sp_band_list bl = { 0 };
    bl.n = imin(row[0], k->maxi);
    for (int i = 0; i < bl.n; i++) bl.iv[i] = (sp_interval){ row[1 + 2 * i], row[2 + 2 * i] };
    const int q_tiles = (n + k->bm - 1) / k->bm, kv_tiles = (n + k->bn - 1) / k->bn;
    plan_tile *list = malloc((size_t)kv_tiles * sizeof *list);
    for (int mt = 0; mt < q_tiles; mt++) {
        const int m0 = mt * k->bm;
        plan bp;
        plan_build(&bp, row, k, m0, n);
        if (listed) {
            int n_listed = bands_kv_tiles(&bl, n, k->bm, k->bn, mt, list, kv_tiles);
            EXPECT(n_listed == bp.total, "%s: query tile %d: %d tiles in the plan, %d listed", tag, mt, bp.total, n_listed);
        }
        for (int it = 0; it < bp.total; it++) {
            const int n0 = plan_tile_at(&bp, it) * k->bn;
            EXPECT(ws_tile_n0(&bp, &gen_k, it) == n0, "%s: query tile %d, plan index %d: n0 %d, band_tile_at %d", tag, mt,
                   it, ws_tile_n0(&bp, &gen_k, it), n0);
            if (is_dense)
                EXPECT(ws_tile_n0(&bp, &dense_k, it) == n0, "%s: query tile %d, plan index %d: dense n0 %d, band_tile_at %d",
                       tag, mt, it, ws_tile_n0(&bp, &dense_k, it), n0);
            if (listed)
                EXPECT(list[it].tile * k->bn == n0, "%s: query tile %d, plan index %d: tile %d, bands_kv_tiles %d", tag, mt,
                       it, n0 / k->bn, list[it].tile);
            for (int c = 0; c < k->bm / 64; c++)
                for (int warp = 0; warp < 4; warp++) {
                    const int wg_row0 = m0 + 64 * c, row0 = wg_row0 + 16 * warp;
                    const ws_rows rows = ws_rows_of(k, wg_row0, row0, n);
                    const int old = old_mask(&bp, k, m0, c, warp, n0, n);
                    const int now = ws_tile_mask(&bp, &gen_k, it, &rows);
                    EXPECT(now == old, "%s: query tile %d, consumer %d, warp %d, tile %d: mask %d, session 10's %d", tag,
                           mt, c, warp, n0 / k->bn, now, old);
                    if (is_dense) {
                        const int dense_now = ws_tile_mask(&bp, &dense_k, it, &rows);
                        EXPECT(dense_now == old, "%s: query tile %d, consumer %d, warp %d, tile %d: dense mask %d, "
                               "session 10's %d", tag, mt, c, warp, n0 / k->bn, dense_now, old);
                    }
                    if (listed) {   /* the deciding rows: the warp's, else its warpgroup's, else none */
                        int host_full = 0;
                        if (wg_row0 < n) {
                            const int r0 = row0 < n ? row0 : wg_row0, len = row0 < n ? 16 : 64;
                            host_full = bands_tile_kind(&bl, n, r0, len, n0, k->bn) == TILE_FULL && n0 + k->bn <= n;
                        }
                        EXPECT(now == !host_full, "%s: query tile %d, consumer %d, warp %d, tile %d: mask %d, "
                               "bands_tile_kind %s", tag, mt, c, warp, n0 / k->bn, now, host_full ? "FULL" : "not FULL");
                    }
                    n_decisions++;
                }
        }
    }
    free(list);
}

static const int lengths[] = { 1, 2, 15, 16, 17, 63, 64, 65, 127, 128, 129, 175, 176, 177, 191, 192, 193,
                               255, 256, 257, 333, 515, 1000, 1023, 1025, 2047, 4097 };
#define N_LENGTHS (int)(sizeof lengths / sizeof lengths[0])
static const int bms[] = { 64, 128, 192, 256 };
static const int bns[] = { 16, 48, 64, 96, 128, 176, 256 };

/* A table row from a band list (unused slots [0, 0)). */
static void row_of(int32_t *row, const sp_band_list *b)
{
    memset(row, 0, (1 + 2 * MAXI) * sizeof *row);
    row[0] = b->n;
    for (int i = 0; i < b->n; i++) {
        row[1 + 2 * i] = (int32_t)b->iv[i].lo;
        row[2 + 2 * i] = (int32_t)b->iv[i].hi;
    }
}

/* Every pattern's merged bands (as the band table holds them), at every length and tile. */
static void test_patterns(void)
{
    static sp_band_list custom[16];
    long before = n_decisions;
    for (int h = 0; h < 16; h++) {   /* local + a far band (even heads), a band beyond row 0 (odd), 3 for h % 4 == 2 */
        custom[h].n = h % 2 ? 1 : h % 4 == 2 ? 3 : 2;
        custom[h].iv[0] = h % 2 ? (sp_interval){ 40 * h + 5, 40 * h + 100 } : (sp_interval){ 0, 17 + 11 * h };
        custom[h].iv[1] = (sp_interval){ 190 + 30 * h, 190 + 30 * h + 20 + 37 * h };
        custom[h].iv[2] = (sp_interval){ 1000 + 64 * h, 1000 + 64 * h + 129 };
    }
    for (int ni = 0; ni < N_LENGTHS; ni++) {
        const int n = lengths[ni];
        for (int kind = SP_DENSE; kind <= SP_WINDOW; kind++) {
            const int heads = kind == SP_CUSTOM ? 16 : 8;
            sp_pattern p = { .kind = (sp_pattern_kind)kind, .custom = custom, .window = 65 };
            int maxi = kind == SP_SPATTN ? 2 : kind == SP_CUSTOM ? 3 : 1;   /* bandtab_max_intervals */
            for (int h = 0; h < heads; h++) {
                sp_band_list b;
                bands_head(&p, heads, h, n, &b);
                int32_t row[1 + 2 * MAXI];
                row_of(row, &b);
                for (size_t m = 0; m < sizeof bms / sizeof bms[0]; m++)
                    for (size_t j = 0; j < sizeof bns / sizeof bns[0]; j++) {
                        shape k = { maxi, bms[m], bns[j], 0 };
                        check_n_bad = 0;
                        char tag[128];
                        snprintf(tag, sizeof tag, "pattern %d head %d N %d %dx%d", kind, h, n, k.bm, k.bn);
                        check_row(row, &k, n, 1, tag);
                        CHECKF(check_n_bad == 0, "%s (%d wrong)", check_first_bad, check_n_bad);
                    }
            }
        }
    }
    CHECKF(n_decisions - before > 1000000, "decisions compared: %ld", n_decisions - before);
}

/* A random table row: up to maxi sorted, disjoint intervals (maybe touching), starting
 * anywhere in [0, 2n), some reaching past n; slots past count hold [0, 0). */
static void random_row(int32_t *row, int n, int maxi)
{
    memset(row, 0, (1 + 2 * MAXI) * sizeof *row);
    int count = rnd_in(0, maxi), lo = rnd_in(0, rnd() % 3 == 0 ? 2 * n : n / 4 + 1), i = 0;
    for (; i < count; i++) {
        int w = rnd() % 4 == 0 ? rnd_in(1, 3) : rnd_in(1, n / 2 + 2);
        row[1 + 2 * i] = lo;
        row[2 + 2 * i] = lo + w;
        lo += w + rnd_in(0, n / 3 + 2);
    }
    row[0] = i;
}

/* Random tables, unmerged and unclipped: many intervals, tiles shared between them. */
static void test_random(void)
{
    rng_seed(&gen, 11);
    long before = n_decisions;
    for (int trial = 0; trial < 4000; trial++) {
        const int n = rnd() % 4 == 0 ? lengths[rnd() % N_LENGTHS] : rnd_in(1, 1500);
        const int maxi = rnd_in(1, 6);
        shape k = { maxi, 64 * rnd_in(1, 4), bns[rnd() % (sizeof bns / sizeof bns[0])], 0 };
        int32_t row[1 + 2 * MAXI];
        random_row(row, n, maxi);
        check_n_bad = 0;
        char tag[128];
        snprintf(tag, sizeof tag, "random trial %d N %d %dx%d intervals %d", trial, n, k.bm, k.bn, row[0]);
        check_row(row, &k, n, 0, tag);
        CHECKF(check_n_bad == 0, "%s (%d wrong)", check_first_bad, check_n_bad);
    }
    CHECKF(n_decisions - before > 100000, "decisions compared: %ld", n_decisions - before);
}

/* The dense closed form alone, for any row range [r_lo, r_hi] below n (not only a warp's 16
 * or a warpgroup's 64 rows): tile t is FULL iff (t + 1) * BN <= r_lo + 1, against
 * bands_tile_kind on the interval [0, n) (FULL, and no key past n). */
static void test_dense_rule(void)
{
    int wrong = 0;
    long cases = 0;
    for (int n = 1; n <= 700; n += n < 300 ? 1 : 7)
        for (size_t j = 0; j < sizeof bns / sizeof bns[0]; j++) {
            const int bn = bns[j];
            sp_band_list b = { .n = 1, .iv = { { 0, n } } };
            for (int r_lo = 0; r_lo < n; r_lo++)
                for (int len = 1; len <= 80; len += len < 20 ? 1 : 15)
                    for (int t = 0; t * bn < n; t++) {
                        const int r_hi = imin(r_lo + len, n) - 1;   /* bands_tile_kind clips the rows to n */
                        const int host = bands_tile_kind(&b, n, r_lo, len, (int64_t)t * bn, bn) == TILE_FULL &&
                                         t * bn + bn <= n;
                        ws_rows rows = { r_lo, r_hi, n, ws_dense_full_tiles(r_lo, bn) };
                        const shape k = { 1, 64, bn, 1 };
                        const int mask = ws_tile_mask(NULL, &k, t, &rows);
                        if (mask == host && wrong++ == 0)
                            fprintf(stderr, "dense N %d BN %d rows [%d, %d] tile %d: mask %d, bands_tile_kind %s\n", n,
                                    bn, r_lo, r_hi, t, mask, host ? "FULL" : "not FULL");
                        cases++;
                    }
        }
    CHECKF(wrong == 0, "dense closed form: %d of %ld wrong", wrong, cases);
    CHECKF(cases > 1000000, "dense cases: %ld", cases);
}

static const test_case tests[] = {
    { "patterns", test_patterns },
    { "random", test_random },
    { "dense_rule", test_dense_rule },
    { 0, 0 },
};

TEST_MAIN(tests)
