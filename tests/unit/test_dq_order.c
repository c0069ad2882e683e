/* The order of the deterministic backward's dQ adds (issue 16 item 2;
 * kernels/bwd_order.cuh): the closed-form rank bands_dq_rank against brute
 * force over the device cursor, and the semaphore protocol simulated to the
 * end.  A wrong rank deadlocks the GPU (a CTA waits for an add that never
 * comes) or, too small, lets two adds race, so this file is the main guard.
 *
 * The brute force runs a C transcription of kernels/bwd_iter.cuh's
 * bwd_cursor_next (line for line, over band-table rows as abi/bandtab.h lays
 * them out, for the GROUP heads of a kv head) for every KV tile j of a
 * sequence, from the last to the first, and counts, per (head, query tile),
 * the tiles already seen: the rank of j there must be that count.  Band
 * tables come from every pattern (bands_head: clipped and merged) and at
 * random (sorted, disjoint, some reaching past N or starting beyond it),
 * for N at and around tile edges, odd N, BM 32..128, BN 16..128 and GQA
 * groups of 1 to 4 heads.  The same for the ws kernel's mirror order (kernels/bwd_ws.cuh:
 * KV tiles in ascending order, each head's query tiles from the last, bwd_cursor_next_desc
 * and bands_dq_rank_below), whose descending cursor must visit what the ascending one does. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/bands.h"
#include "runtime/rng.h"
#include "tests/check.h"

#define MAXI SP_MAX_INTERVALS
#define STRIDE (1 + 2 * MAXI)
#define MAX_GROUP 4

static rng gen;   /* seeded by each case that draws from it */
static uint64_t rnd(void) { return rng_next(&gen); }
static int64_t rnd_in(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- kernels/bwd_iter.cuh's cursor, transcribed --------------------------- */

typedef struct {
    int r, k;
    int64_t t, t_end, next;
} cursor;

static void cursor_init(cursor *c) { c->r = 0; c->k = -1; c->t = 0; c->t_end = -1; c->next = 0; }

/* The next (head r, query tile mt) that reaches keys [n0, n0 + bn); 0 when none is left. */
static int cursor_next(cursor *c, const int32_t *rows, int group, int bm, int bn, int64_t n0, int64_t n, int *r,
                       int64_t *mt)
{
    const int64_t n_last = min64(n0 + bn, n) - 1;
    for (;;) {
        if (c->t <= c->t_end) {
            *r = c->r;
            *mt = c->t++;
            return 1;
        }
        c->next = max64(c->next, c->t_end + 1);
        ++c->k;
        while (c->r < group && c->k >= min64(rows[c->r * STRIDE], MAXI)) {
            ++c->r;
            c->k = 0;
            c->next = 0;
        }
        if (c->r >= group) return 0;
        const int32_t *row = rows + c->r * STRIDE;
        const int64_t i_lo = n0 + row[1 + 2 * c->k];
        const int64_t i_hi = min64(n_last + row[2 + 2 * c->k] - 1, n - 1);
        c->t_end = i_lo <= i_hi ? i_hi / bm : -1;
        c->t = max64(i_lo / bm, c->next);
    }
}

/* kernels/bwd_iter.cuh's bwd_cursor_next_desc (the ws kernel's deterministic walk: each
 * head's query tiles from the last), transcribed. */
static void cursor_init_desc(cursor *c) { c->r = -1; c->k = 0; c->t = -1; c->t_end = 0; c->next = 0; }

static int cursor_next_desc(cursor *c, const int32_t *rows, int group, int bm, int bn, int64_t n0, int64_t n, int *r,
                            int64_t *mt)
{
    const int64_t n_last = min64(n0 + bn, n) - 1;
    for (;;) {
        if (c->t >= c->t_end) {
            *r = c->r;
            *mt = c->t--;
            return 1;
        }
        --c->k;
        while (c->r < group && c->k < 0) {
            ++c->r;
            c->k = c->r < group ? (int)min64(rows[c->r * STRIDE], MAXI) - 1 : 0;
            c->next = 0x7fffffff;
        }
        if (c->r >= group) return 0;
        const int32_t *row = rows + c->r * STRIDE;
        const int64_t i_lo = n0 + row[1 + 2 * c->k];
        const int64_t i_hi = min64(n_last + row[2 + 2 * c->k] - 1, n - 1);
        const int any = i_lo <= i_hi;
        c->t_end = any ? i_lo / bm : c->next;
        c->t = min64(any ? i_hi / bm : 0x7fffffff, c->next - 1);
        c->next = min64(c->next, c->t_end);
    }
}

/* The two deterministic orders: main_sem's (wgmma: later KV tiles first, each head's query
 * tiles ascending) and the ws kernel's mirror (earlier tiles first, query tiles descending). */
typedef enum { ORDER_SEM = 0, ORDER_WS = 1 } dq_order;

static void order_init(dq_order o, cursor *c)
{
    if (o == ORDER_WS) cursor_init_desc(c);
    else cursor_init(c);
}
static int order_next(dq_order o, cursor *c, const int32_t *rows, int group, int bm, int bn, int64_t n0, int64_t n,
                      int *r, int64_t *mt)
{
    return o == ORDER_WS ? cursor_next_desc(c, rows, group, bm, bn, n0, n, r, mt)
                         : cursor_next(c, rows, group, bm, bn, n0, n, r, mt);
}
static int64_t order_rank(dq_order o, const sp_band_list *b, int64_t n, int bm, int bn, int64_t j, int64_t mt)
{
    return o == ORDER_WS ? bands_dq_rank_below(b, n, bm, bn, j, mt) : bands_dq_rank(b, n, bm, bn, j, mt);
}

/* A band-table row as the band list bands_dq_rank takes (unclipped, as the kernel reads it). */
static sp_band_list row_list(const int32_t *row)
{
    sp_band_list b = { 0 };
    b.n = (int)min64(row[0], MAXI);
    for (int k = 0; k < b.n; k++) b.iv[k] = (sp_interval){ row[1 + 2 * k], row[2 + 2 * k] };
    return b;
}

/* ---- one configuration ---------------------------------------------------- */

static int n_ranked;   /* visits ranked, over all configurations */

/* Every KV tile of a sequence of n tokens, last first: its visits come from the cursor, each
 * (r, mt) at most once per tile, and its rank at each is the number of later tiles that
 * visited it.  listed: the heads' bands are merged and clipped (bands_head), so the visits
 * must also be exactly bands_q_tiles's list. */
static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Do both cursors visit the same (head, query tile) pairs of KV tile j?  vis: nv visits
 * (r * qt + mt) of one of them, sorted here; the other's are recounted. */
static int same_visits(const int32_t *rows, int group, int64_t n, int bm, int bn, int64_t j, dq_order other,
                       int64_t *vis, int64_t nv)
{
    const int64_t qt = (n + bm - 1) / bm;
    int64_t *mine = malloc((size_t)(group * qt + 1) * sizeof *mine), m = 0, mt;
    cursor c;
    order_init(other, &c);
    int r, same = 1;
    while (m < group * qt + 1 && order_next(other, &c, rows, group, bm, bn, j * bn, n, &r, &mt)) mine[m++] = r * qt + mt;
    qsort(vis, (size_t)nv, sizeof *vis, cmp64);
    qsort(mine, (size_t)m, sizeof *mine, cmp64);
    same = m == nv;
    for (int64_t i = 0; same && i < nv; i++) same = vis[i] == mine[i];
    free(mine);
    return same;
}

static void check_ranks(const int32_t *rows, int group, int64_t n, int bm, int bn, int listed, const char *tag,
                        dq_order o)
{
    const int64_t nt = (n + bn - 1) / bn, qt = (n + bm - 1) / bm;
    int64_t *seen = calloc((size_t)(group * qt), sizeof *seen), *stamp = malloc((size_t)(group * qt) * sizeof *stamp);
    int64_t *visits = malloc((size_t)(group * qt) * sizeof *visits);
    plan_tile *list = malloc((size_t)qt * sizeof *list);
    for (int64_t i = 0; i < group * qt; i++) stamp[i] = -1;
    sp_band_list bl[MAX_GROUP];
    for (int r = 0; r < group; r++) bl[r] = row_list(rows + r * STRIDE);
    for (int64_t x = 0; x < nt; x++) {
        const int64_t j = o == ORDER_WS ? x : nt - 1 - x;   /* the order's first tile first */
        cursor c;
        order_init(o, &c);
        int r;
        int64_t mt, nv = 0;
        while (nv < group * qt && order_next(o, &c, rows, group, bm, bn, j * bn, n, &r, &mt)) {
            EXPECT(mt >= 0 && mt < qt, "%s: tile %lld visits query tile %lld of %lld", tag, (long long)j, (long long)mt,
                   (long long)qt);
            if (mt < 0 || mt >= qt) break;
            int64_t *s = &stamp[r * qt + mt];
            EXPECT(*s != j, "%s: tile %lld visits (head %d, query tile %lld) twice", tag, (long long)j, r, (long long)mt);
            *s = j;
            visits[nv++] = r * qt + mt;
            int64_t rank = order_rank(o, &bl[r], n, bm, bn, j, mt);
            EXPECT(rank == seen[r * qt + mt], "%s: tile %lld, head %d, query tile %lld: rank %lld, brute force %lld", tag,
                   (long long)j, r, (long long)mt, (long long)rank, (long long)seen[r * qt + mt]);
            seen[r * qt + mt]++;
            n_ranked++;
        }
        /* The cursor's visits of head r, in order, are bands_q_tiles's list of tile j (the ws
         * order: that list from its end).  Unlisted (random tables): the two cursors' sets agree. */
        for (int h = 0; listed && h < group; h++) {
            int n_listed = bands_q_tiles(&bl[h], n, bm, bn, j, list, (int)qt), at = 0, same = 1;
            for (int64_t v = 0; v < nv; v++)
                if (visits[v] / qt == h) {
                    int i = o == ORDER_WS ? n_listed - 1 - at : at;
                    same &= at < n_listed && list[i].tile == visits[v] % qt;
                    at++;
                }
            EXPECT(same && at == n_listed, "%s: tile %lld head %d: the cursor's visits differ from bands_q_tiles", tag,
                   (long long)j, h);
        }
        if (o == ORDER_WS)
            EXPECT(same_visits(rows, group, n, bm, bn, j, ORDER_SEM, visits, nv),
                   "%s: tile %lld: the descending cursor's visits differ from the ascending one's", tag, (long long)j);
    }
    free(seen);
    free(stamp);
    free(visits);
    free(list);
}

/* A random table row: up to maxi sorted, disjoint, non-touching intervals (merged tables never
 * touch), starting anywhere in [0, 2n), some reaching past n. */
static void random_row(int32_t *row, int64_t n, int maxi)
{
    memset(row, 0, STRIDE * sizeof *row);
    int count = (int)rnd_in(0, maxi);
    int64_t lo = rnd_in(0, rnd() % 3 == 0 ? 2 * n : n / 4 + 1);
    int k = 0;
    for (; k < count; k++) {
        int64_t w = rnd() % 4 == 0 ? rnd_in(1, 3) : rnd_in(1, n / 2 + 2);
        row[1 + 2 * k] = (int32_t)lo;
        row[2 + 2 * k] = (int32_t)(lo + w);
        lo += w + rnd_in(1, n / 3 + 2);
    }
    row[0] = k;
}

static const int64_t lengths[] = { 1, 2, 15, 63, 64, 65, 127, 128, 129, 191, 333, 515, 1000, 1023, 1025 };
static const int tiles[][2] = { { 64, 128 }, { 64, 64 }, { 32, 64 }, { 128, 128 }, { 64, 16 }, { 32, 48 }, { 128, 64 } };
#define N_TILES (int)(sizeof tiles / sizeof tiles[0])

/* Every pattern's merged bands, at every length and tile, in kv groups of 1, 2 and 4 heads. */
static void test_rank_patterns(void)
{
    static sp_band_list custom[8];
    for (size_t ni = 0; ni < sizeof lengths / sizeof lengths[0]; ni++) {
        int64_t n = lengths[ni];
        for (int h = 0; h < 8; h++) {   /* local + a far band (even heads), a band beyond row 0 (odd) */
            custom[h].n = h % 2 ? 1 : 2;
            custom[h].iv[0] = h % 2 ? (sp_interval){ 40 * h + 5, 40 * h + 100 } : (sp_interval){ 0, 17 + h };
            custom[h].iv[1] = (sp_interval){ 30 * (h + 1), 30 * (h + 1) + 20 + 7 * h };
        }
        for (int kind = SP_DENSE; kind <= SP_WINDOW; kind++) {
            sp_pattern p = { .kind = (sp_pattern_kind)kind, .custom = custom, .window = 65 };
            for (int group = 1; group <= MAX_GROUP; group *= 2) {
                int heads = 8;
                for (int t = 0; t < N_TILES; t++) {
                    int bm = tiles[t][0], bn = tiles[t][1];
                    for (int kvh = 0; kvh < heads / group; kvh++) {
                        int32_t rows[MAX_GROUP * STRIDE];
                        memset(rows, 0, sizeof rows);
                        for (int r = 0; r < group; r++) {
                            sp_band_list b;
                            bands_head(&p, heads, kvh * group + r, n, &b);
                            rows[r * STRIDE] = b.n;
                            for (int k = 0; k < b.n; k++) {
                                rows[r * STRIDE + 1 + 2 * k] = (int32_t)b.iv[k].lo;
                                rows[r * STRIDE + 2 + 2 * k] = (int32_t)b.iv[k].hi;
                            }
                        }
                        check_n_bad = 0;
                        char tag[128];
                        snprintf(tag, sizeof tag, "pattern %d N %lld %dx%d group %d kv head %d", kind, (long long)n, bm,
                                 bn, group, kvh);
                        check_ranks(rows, group, n, bm, bn, 1, tag, ORDER_SEM);
                        check_ranks(rows, group, n, bm, bn, 1, tag, ORDER_WS);
                        CHECKF(check_n_bad == 0, "%s (%d wrong)", check_first_bad, check_n_bad);
                    }
                }
            }
        }
    }
}

/* Random tables: many intervals, tiles shared between intervals, intervals past n. */
static void test_rank_random(void)
{
    rng_seed(&gen, 16);
    n_ranked = 0;
    for (int trial = 0; trial < 3000; trial++) {
        int64_t n = trial % 3 ? lengths[rnd() % (sizeof lengths / sizeof lengths[0])] : rnd_in(1, 2100);
        int t = (int)(rnd() % N_TILES), group = 1 << (rnd() % 3);
        int maxi = trial % 5 == 0 ? MAXI : (int)rnd_in(1, 4);
        int32_t rows[MAX_GROUP * STRIDE];
        for (int r = 0; r < group; r++) random_row(rows + r * STRIDE, n, maxi);
        check_n_bad = 0;
        char tag[160];
        snprintf(tag, sizeof tag, "random trial %d N %lld %dx%d group %d", trial, (long long)n, tiles[t][0], tiles[t][1],
                 group);
        check_ranks(rows, group, n, tiles[t][0], tiles[t][1], 0, tag, ORDER_SEM);
        check_ranks(rows, group, n, tiles[t][0], tiles[t][1], 0, tag, ORDER_WS);
        CHECKF(check_n_bad == 0, "%s (%d wrong)", check_first_bad, check_n_bad);
    }
    CHECKF(n_ranked > 100000, "the random tables ranked %d visits", n_ranked);
}

/* Hand-made cases: two intervals sharing a KV tile (counted once), a tile whose only
 * contributors are above it, the last tile (rank 0 everywhere), N = 1. */
static void test_rank_by_hand(void)
{
    /* Intervals [0, 10) and [20, 40), BM 64, BN 64, N 200: query tile 1 (rows 64..127) gets
     * keys from tiles 0..1 through [0, 10) (keys 54..127) and 0..1 through [20, 40) (keys
     * 25..107): tiles 0 and 1 once each.  Tile 0's rank is 1 (tile 1 above it), tile 1's 0. */
    sp_band_list b = { 2, { { 0, 10 }, { 20, 40 } } };
    CHECK("shared tile counted once (tile 0)", bands_dq_rank(&b, 200, 64, 64, 0, 1) == 1);
    CHECK("shared tile counted once (tile 1)", bands_dq_rank(&b, 200, 64, 64, 1, 1) == 0);
    /* Dense at N 1000, BM 64, BN 128: query tile 15 (rows 960..999) gets every tile 0..7. */
    sp_band_list d = { 1, { { 0, 1000 } } };
    for (int j = 0; j < 8; j++) CHECKF(bands_dq_rank(&d, 1000, 64, 128, j, 15) == 7 - j, "dense tile %d", j);
    CHECK("N = 1", bands_dq_rank(&d, 1, 64, 64, 0, 0) == 0);
    /* A far band [300, 400) at N 1000, BM 64, BN 64: rows 960..999 take keys 561..699,
     * tiles 8..10; tile 8 waits for 9 and 10. */
    sp_band_list far = { 1, { { 300, 400 } } };
    CHECK("far band", bands_dq_rank(&far, 1000, 64, 64, 8, 15) == 2 && bands_dq_rank(&far, 1000, 64, 64, 10, 15) == 0);
    /* The ws order counts the tiles below instead: the mirror images of the same cases. */
    CHECK("below: shared tile counted once (tile 0)", bands_dq_rank_below(&b, 200, 64, 64, 0, 1) == 0);
    CHECK("below: shared tile counted once (tile 1)", bands_dq_rank_below(&b, 200, 64, 64, 1, 1) == 1);
    for (int j = 0; j < 8; j++) CHECKF(bands_dq_rank_below(&d, 1000, 64, 128, j, 15) == j, "below: dense tile %d", j);
    CHECK("below: far band", bands_dq_rank_below(&far, 1000, 64, 64, 8, 15) == 0 &&
                                 bands_dq_rank_below(&far, 1000, 64, 64, 10, 15) == 2);
}

/* ---- the protocol, simulated -------------------------------------------------
 * CTAs of a packed batch (sequences of their own lengths; blockIdx (x, y, z) = (tile,
 * kv head, sequence), x fastest), launched in linear order into at most `resident`
 * slots, KV tile j = tiles - 1 - x (x past the sequence's tiles: returns).  A CTA's
 * events, one per cursor step s then one at the end, as bwd_order.cuh runs them per
 * warp (one warp stands for all: every warp of a CTA does the same):
 *     step s:  release the semaphore of step s - 1; wait until sem(step s) >= rank(s); add
 *     end:     release the semaphore of the last step
 * (the model releases step s - 1 only once the wait of step s passes, later than the
 * kernel does, at the end of the step that made the adds: semaphores only grow, so an
 * earlier release can only let more CTAs move).
 * Any resident CTA that can move moves (picked at random); none can and some are left:
 * deadlock.  A persistent kernel whose blocks claim their items from a counter in this order
 * (the deterministic ws kernel, kernels/bwd_ws.cuh's bwd_ws_item_at: blockIdx's order, every
 * item claimed) is the same model: a block that ends an item and claims the next is a CTA that
 * ends and the next launched into its slot.  The
 * ws kernel's mirror order (ORDER_WS) runs the same protocol with KV tile
 * j = x, blocks tile-major on a uniform batch (bwd_ws_block_of), its descending cursor and
 * bands_dq_rank_below.  Each (sequence, head, query tile) must see its adds in the order's
 * j (descending; ORDER_WS ascending), and end
 * with its semaphore at the number of contributors. */
typedef struct {
    int z, y, x;
    int64_t steps;       /* cursor steps */
    int64_t *sem_of;     /* semaphore index of each step */
    int64_t *rank_of;
    int64_t pc;          /* next event: 0..steps (steps: the final release) */
    int done;
} sim_cta;

static int simulate(const int64_t *lens, int nseq, int kv_heads, int group, const int32_t *rows_all, int bm, int bn,
                    int resident, const char *tag, dq_order o, int tile_major)
{
    int64_t max_len = 0, qt_total = 0;
    for (int b = 0; b < nseq; b++) max_len = max64(max_len, lens[b]);
    int64_t gx = (max_len + bn - 1) / bn;
    int64_t heads = (int64_t)kv_heads * group;
    int64_t *qt_base = malloc((size_t)nseq * sizeof *qt_base);
    for (int b = 0; b < nseq; b++) {
        qt_base[b] = qt_total;
        qt_total += heads * ((lens[b] + bm - 1) / bm);
    }
    int64_t *sem = calloc((size_t)qt_total + 1, sizeof *sem), *last_j = malloc(((size_t)qt_total + 1) * sizeof *last_j),
            *contributors = calloc((size_t)qt_total + 1, sizeof *contributors);
    for (int64_t i = 0; i <= qt_total; i++) last_j[i] = o == ORDER_WS ? -1 : INT64_MAX;
    int64_t ncta = gx * kv_heads * nseq;
    sim_cta *ctas = calloc((size_t)ncta, sizeof *ctas);
    int ok = 1;
    for (int64_t id = 0; id < ncta; id++) {
        sim_cta *c = &ctas[id];
        if (tile_major) {   /* bwd_ws_block_of on a uniform batch: KV tile 0 of every head first */
            int64_t per_tile = (int64_t)kv_heads * nseq;
            c->x = (int)(id / per_tile);
            c->y = (int)(id % per_tile % kv_heads);
            c->z = (int)(id % per_tile / kv_heads);
        } else {
            c->x = (int)(id % gx);
            c->y = (int)(id / gx % kv_heads);
            c->z = (int)(id / gx / kv_heads);
        }
        int64_t n = lens[c->z], nt = (n + bn - 1) / bn, qt = (n + bm - 1) / bm;
        if (c->x >= nt) continue;   /* past the sequence: no steps, returns at once */
        int64_t j = o == ORDER_WS ? c->x : nt - 1 - c->x;
        const int32_t *rows = rows_all + ((int64_t)c->z * heads + (int64_t)c->y * group) * STRIDE;
        c->sem_of = malloc((size_t)(group * qt + 1) * sizeof *c->sem_of);
        c->rank_of = malloc((size_t)(group * qt + 1) * sizeof *c->rank_of);
        cursor cur;
        order_init(o, &cur);
        int r;
        int64_t mt;
        while (order_next(o, &cur, rows, group, bm, bn, j * bn, n, &r, &mt) && c->steps < group * qt) {
            sp_band_list bl = row_list(rows + r * STRIDE);
            int64_t s = qt_base[c->z] + ((int64_t)c->y * group + r) * qt + mt;
            c->sem_of[c->steps] = s;
            c->rank_of[c->steps] = order_rank(o, &bl, n, bm, bn, j, mt);
            contributors[s]++;
            c->steps++;
        }
    }
    int64_t next_launch = 0, finished = 0;
    int64_t *slot = malloc((size_t)resident * sizeof *slot);
    int used = 0;
    for (;;) {
        while (used < resident && next_launch < ncta) slot[used++] = next_launch++;
        if (used == 0) break;
        /* the CTAs that can move, one picked at random */
        int movable[64], nm = 0;
        for (int i = 0; i < used && nm < 64; i++) {
            sim_cta *c = &ctas[slot[i]];
            if (c->pc >= c->steps || sem[c->sem_of[c->pc]] >= c->rank_of[c->pc]) movable[nm++] = i;
        }
        if (nm == 0) {
            ok = 0;
            fprintf(stderr, "  %s: deadlock with %d resident CTAs\n", tag, used);
            break;
        }
        int i = movable[rnd() % (uint64_t)nm];
        sim_cta *c = &ctas[slot[i]];
        if (c->pc > 0) sem[c->sem_of[c->pc - 1]]++;   /* the deferred release of the last step */
        if (c->pc < c->steps) {
            int64_t s = c->sem_of[c->pc], j = o == ORDER_WS ? c->x : (lens[c->z] + bn - 1) / bn - 1 - c->x;
            if (o == ORDER_WS ? !(j > last_j[s]) : !(j < last_j[s])) ok = 0;   /* adds in the order's j */
            last_j[s] = j;
            c->pc++;
        } else {
            c->done = 1;
            finished++;
            slot[i] = slot[--used];
        }
    }
    for (int64_t s = 0; s < qt_total; s++) ok &= sem[s] == contributors[s];
    for (int64_t id = 0; id < ncta; id++) {
        ok &= ctas[id].done || ctas[id].steps == 0 ? 1 : 0;
        free(ctas[id].sem_of);
        free(ctas[id].rank_of);
    }
    (void)finished;
    free(ctas); free(slot); free(sem); free(last_j); free(contributors); free(qt_base);
    return ok;
}

static void test_protocol(void)
{
    rng_seed(&gen, 17);
    static const int64_t uniform[] = { 1000, 1000 }, ragged[] = { 1000, 1, 65, 333, 2 }, more[] = { 129, 64, 63, 700, 1 };
    struct { const int64_t *lens; int n; } batches[] = { { uniform, 2 }, { ragged, 5 }, { more, 5 } };
    for (int bi = 0; bi < 3; bi++)
        for (int t = 0; t < 4; t++)
            for (int group = 1; group <= 4; group *= 2)
                for (int trial = 0; trial < 6; trial++) {
                    int kv_heads = 2, bm = tiles[t][0], bn = tiles[t][1];
                    int nseq = batches[bi].n;
                    int32_t *rows = calloc((size_t)nseq * kv_heads * group * STRIDE, sizeof *rows);
                    for (int b = 0; b < nseq; b++)
                        for (int h = 0; h < kv_heads * group; h++)
                            random_row(rows + ((int64_t)b * kv_heads * group + h) * STRIDE, batches[bi].lens[b],
                                       trial == 0 ? 1 : 4);
                    if (trial == 1)   /* dense: the most contributors, every tile waits for all above it */
                        for (int b = 0; b < nseq; b++)
                            for (int h = 0; h < kv_heads * group; h++) {
                                int32_t *row = rows + ((int64_t)b * kv_heads * group + h) * STRIDE;
                                memset(row, 0, STRIDE * sizeof *row);
                                row[0] = 1;
                                row[2] = (int32_t)batches[bi].lens[b];
                            }
                    static const int residents[] = { 1, 2, 5, 64 };
                    for (int ri = 0; ri < 4; ri++) {
                        char tag[128];
                        snprintf(tag, sizeof tag, "batch %d %dx%d group %d trial %d resident %d", bi, bm, bn, group, trial,
                                 residents[ri]);
                        CHECKF(simulate(batches[bi].lens, nseq, kv_heads, group, rows, bm, bn, residents[ri], tag,
                                        ORDER_SEM, 0),
                               "%s: finishes, adds in descending tile order, every semaphore at its count "
                               "(the one-item grid, and the persistent ws kernel's claims)", tag);
                        /* the ws kernel: tile-major on the uniform batch, blockIdx when packed */
                        CHECKF(simulate(batches[bi].lens, nseq, kv_heads, group, rows, bm, bn, residents[ri], tag,
                                        ORDER_WS, bi == 0),
                               "%s (ws order): finishes, adds in ascending tile order, every semaphore at its count", tag);
                    }
                    free(rows);
                }
}

static const test_case tests[] = {
    { "rank_by_hand", test_rank_by_hand },
    { "rank_patterns", test_rank_patterns },
    { "rank_random", test_rank_random },
    { "protocol", test_protocol },
    { 0, 0 },
};

TEST_MAIN(tests)
