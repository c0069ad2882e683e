/* The band plan (DESIGN.md sections 1 and 3).  Everything here is a closed
 * form over a head's few intervals: nothing is stored per token or per tile,
 * which is what lets the kernels do the same arithmetic on the device. */
#include "codegen/bands.h"

#include <stddef.h>

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Floor and ceiling of a / b for b > 0 and any sign of a (C division
 * truncates toward zero, which is wrong for negative a). */
static int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

/* ---- intervals ---------------------------------------------------------- */

/* Clip raw intervals to [0, N), drop empty ones, sort, merge touching or
 * overlapping ones.  raw may hold them in any order. */
static void normalize(const sp_interval *raw, int n, int64_t N, sp_band_list *out)
{
    sp_interval tmp[SP_MAX_INTERVALS];
    int m = 0;
    for (int k = 0; k < n && m < SP_MAX_INTERVALS; k++) {
        int64_t lo = max64(raw[k].lo, 0), hi = min64(raw[k].hi, N);
        if (lo >= hi) continue;
        /* insertion sort by lo: at most SP_MAX_INTERVALS entries */
        int p = m++;
        while (p > 0 && tmp[p - 1].lo > lo) { tmp[p] = tmp[p - 1]; p--; }
        tmp[p].lo = lo;
        tmp[p].hi = hi;
    }
    out->n = 0;
    for (int k = 0; k < m; k++) {
        sp_interval *last = out->n ? &out->iv[out->n - 1] : NULL;
        if (last && tmp[k].lo <= last->hi) last->hi = max64(last->hi, tmp[k].hi);
        else out->iv[out->n++] = tmp[k];
    }
}

int bands_head(const sp_pattern *p, int heads, int h, int64_t N, sp_band_list *out)
{
    out->n = 0;
    if (!p || heads < 1 || h < 0 || h >= heads || N < 1) return -1;
    if (p->kind == SP_CUSTOM) {
        if (!p->custom) return -1;
        const sp_band_list *c = &p->custom[h];
        normalize(c->iv, c->n < SP_MAX_INTERVALS ? c->n : SP_MAX_INTERVALS, N, out);
        return 0;
    }
    if (p->kind == SP_WINDOW) {
        if (p->window < 1) return -1;
        sp_interval w = { 0, p->window };     /* d in [0, W): the token and the W - 1 before it */
        normalize(&w, 1, N, out);
        return 0;
    }

    int64_t L = p->band_basis > 0 ? p->band_basis : N;
    int64_t base = L / heads, extra = L % heads;
    int64_t w = base + (h < extra ? 1 : 0);        /* band width of head h */
    int64_t s = h * base + min64(h, extra);        /* band start of head h */
    /* The local window includes d = w ("d <= w_h" in the paper's code); the
     * guard keeps w + 1 from overflowing for an absurd fixed basis. */
    int64_t local_hi = w < N ? w + 1 : N;

    sp_interval raw[2];
    int n = 0;
    switch (p->kind) {
    case SP_DENSE:
        raw[n++] = (sp_interval){ 0, N };
        break;
    case SP_LOCAL:
        raw[n++] = (sp_interval){ 0, local_hi };
        break;
    case SP_SPATTN:
        raw[n++] = (sp_interval){ 0, local_hi };
        raw[n++] = (sp_interval){ max64(s, local_hi), s + w };
        break;
    case SP_EXCLUSIVE:
        raw[n++] = (sp_interval){ s, s + w };
        break;
    case SP_GAPPED:
        raw[n++] = (sp_interval){ s, s + w / 2 };
        break;
    default:
        return -1;
    }
    normalize(raw, n, N, out);
    return 0;
}

int bands_row_has_key(const sp_band_list *b, int64_t i) { return b->n > 0 && b->iv[0].lo <= i; }

int bands_key_is_reached(const sp_band_list *b, int64_t j, int64_t N) { return b->n > 0 && j + b->iv[0].lo <= N - 1; }

int bands_allows(const sp_band_list *b, int64_t d)
{
    for (int k = 0; k < b->n; k++)
        if (b->iv[k].lo <= d && d < b->iv[k].hi) return 1;
    return 0;
}

/* Pairs with distance in [a, b), 0 <= a < b <= N: distance d occurs N - d
 * times, so the sum is (b - a)(2N - a - b + 1) / 2.  The two factors add up
 * to an odd number, so exactly one is even: halve that one first and the
 * product fits int64_t for N up to 2^32 - 1, where the unhalved one would not. */
static int64_t interval_pairs(int64_t a, int64_t b, int64_t N)
{
    int64_t len = b - a, sum = 2 * N - a - b + 1;
    return len % 2 == 0 ? (len / 2) * sum : len * (sum / 2);
}

int64_t bands_pairs(const sp_band_list *b, int64_t N)
{
    int64_t total = 0;
    for (int k = 0; k < b->n; k++) {
        int64_t lo = max64(b->iv[k].lo, 0), hi = min64(b->iv[k].hi, N);
        if (lo < hi) total += interval_pairs(lo, hi, N);
    }
    return total;
}

int64_t bands_dense_pairs(int64_t N)
{
    return N < 1 ? 0 : interval_pairs(0, N, N);
}

double bands_work_ratio(const sp_pattern *p, int heads, int64_t N)
{
    double allowed = 0;
    for (int h = 0; h < heads; h++) {
        sp_band_list b;
        if (bands_head(p, heads, h, N, &b)) return -1;
        allowed += (double)bands_pairs(&b, N);
    }
    double dense = (double)heads * (double)bands_dense_pairs(N);
    return dense > 0 ? allowed / dense : -1;
}

/* ---- tiles -------------------------------------------------------------- */

tile_kind bands_tile_kind(const sp_band_list *b, int64_t N, int64_t m0, int bm, int64_t n0, int bn)
{
    int64_t i0 = max64(m0, 0), i1 = min64(m0 + bm, N);     /* rows [i0, i1) */
    int64_t j0 = max64(n0, 0), j1 = min64(n0 + bn, N);     /* keys [j0, j1) */
    if (i0 >= i1 || j0 >= j1) return TILE_SKIP;
    int64_t dmin = i0 - (j1 - 1), dmax = (i1 - 1) - j0;    /* every d between occurs */
    for (int k = 0; k < b->n; k++) {
        const sp_interval *iv = &b->iv[k];
        if (iv->hi <= dmin) continue;          /* entirely below the tile's range */
        if (iv->lo > dmax) break;              /* this and all later ones above it */
        /* The first interval that meets [dmin, dmax]: intervals are disjoint,
         * so the range is all allowed only if this one holds all of it. */
        return iv->lo <= dmin && dmax < iv->hi ? TILE_FULL : TILE_PARTIAL;
    }
    return TILE_SKIP;
}

int bands_kv_tiles(const sp_band_list *b, int64_t N, int bm, int bn, int64_t mt, plan_tile *out, int cap)
{
    int64_t m0 = mt * bm;
    if (mt < 0 || m0 >= N) return 0;
    int64_t m_last = min64(m0 + bm, N) - 1;    /* last row of the query tile */
    int count = 0;
    int64_t next = 0;                           /* first KV tile not yet visited */

    /* Descending distance is ascending key: interval [lo, hi) reaches keys
     * j in [m0 - (hi - 1), m_last - lo].  Consecutive intervals' key ranges
     * can share a tile; `next` makes each tile come once. */
    for (int k = b->n - 1; k >= 0; k--) {
        int64_t j_lo = max64(m0 - (b->iv[k].hi - 1), 0);
        int64_t j_hi = min64(m_last - b->iv[k].lo, N - 1);
        if (j_lo > j_hi) continue;
        int64_t t_end = j_hi / bn;
        for (int64_t t = max64(j_lo / bn, next); t <= t_end; t++) {
            tile_kind kind = bands_tile_kind(b, N, m0, bm, t * bn, bn);
            if (kind == TILE_SKIP) continue;    /* cannot happen inside the range; kept for safety */
            if (count < cap) out[count] = (plan_tile){ (int32_t)t, (uint8_t)kind };
            count++;
        }
        next = max64(next, t_end + 1);
    }
    return count;
}

int bands_q_tiles(const sp_band_list *b, int64_t N, int bm, int bn, int64_t nt, plan_tile *out, int cap)
{
    int64_t n0 = nt * bn;
    if (nt < 0 || n0 >= N) return 0;
    int64_t n_last = min64(n0 + bn, N) - 1;    /* last key of the KV tile */
    int count = 0;
    int64_t next = 0;                           /* first query tile not yet visited */

    /* Ascending distance is ascending row: interval [lo, hi) reaches rows
     * i in [n0 + lo, n_last + hi - 1]. */
    for (int k = 0; k < b->n; k++) {
        int64_t i_lo = n0 + b->iv[k].lo;
        int64_t i_hi = min64(n_last + b->iv[k].hi - 1, N - 1);
        if (i_lo > i_hi) continue;
        int64_t t_end = i_hi / bm;
        for (int64_t t = max64(i_lo / bm, next); t <= t_end; t++) {
            tile_kind kind = bands_tile_kind(b, N, t * bm, bm, n0, bn);
            if (kind == TILE_SKIP) continue;
            if (count < cap) out[count] = (plan_tile){ (int32_t)t, (uint8_t)kind };
            count++;
        }
        next = max64(next, t_end + 1);
    }
    return count;
}

int64_t bands_dq_rank(const sp_band_list *b, int64_t N, int bm, int bn, int64_t nt, int64_t mt)
{
    int64_t m0 = mt * bm, m_last = min64(m0 + bm, N) - 1;
    int64_t rank = 0, next = nt + 1;            /* tiles below next: nt, below it, or counted */
    for (int k = b->n - 1; k >= 0; k--) {
        int64_t lo = b->iv[k].lo, hi = b->iv[k].hi;
        if (m_last < lo) continue;              /* no key >= 0 reaches the tile's rows */
        int64_t t_lo = max64(m0 - hi + 1, 0) / bn, t_hi = (m_last - lo) / bn;
        rank += max64(t_hi - max64(t_lo, next) + 1, 0);
        next = max64(next, t_hi + 1);
    }
    return rank;
}

int64_t bands_dq_rank_below(const sp_band_list *b, int64_t N, int bm, int bn, int64_t nt, int64_t mt)
{
    int64_t m0 = mt * bm, m_last = min64(m0 + bm, N) - 1;
    int64_t rank = 0, top = nt - 1;             /* tiles above top: nt, above it, or counted */
    for (int k = 0; k < b->n; k++) {
        int64_t lo = b->iv[k].lo, hi = b->iv[k].hi;
        if (m_last < lo) continue;              /* no key >= 0 reaches the tile's rows */
        int64_t t_lo = max64(m0 - hi + 1, 0) / bn, t_hi = (m_last - lo) / bn;
        rank += max64(min64(t_hi, top) - t_lo + 1, 0);
        top = min64(top, t_lo - 1);
    }
    return rank;
}

/* The same walk as bands_kv_tiles, counting instead of listing.  Within one
 * interval's tile range, tile t is FULL when its distance range lies inside
 * [lo, hi): its first key t*bn is close enough (m_last - t*bn < hi) and its
 * last key min(t*bn + bn, N) - 1 is far enough (m0 - that >= lo).  Both are
 * monotone in t, so the FULL tiles form one run [f0, f1].  A tile shared
 * with another interval meets both and so is never FULL, and every tile in
 * a range has an allowed pair, so none is SKIP. */
int64_t bands_kv_tile_count(const sp_band_list *b, int64_t N, int bm, int bn, int64_t mt, int64_t *full)
{
    *full = 0;
    int64_t m0 = mt * bm;
    if (mt < 0 || m0 >= N) return 0;
    int64_t m_last = min64(m0 + bm, N) - 1;
    int64_t visited = 0, next = 0;
    for (int k = b->n - 1; k >= 0; k--) {
        int64_t lo = b->iv[k].lo, hi = b->iv[k].hi;
        int64_t j_lo = max64(m0 - (hi - 1), 0), j_hi = min64(m_last - lo, N - 1);
        if (j_lo > j_hi) continue;
        int64_t t0 = max64(j_lo / bn, next), t1 = j_hi / bn;
        if (t0 <= t1) {
            visited += t1 - t0 + 1;
            int64_t f0 = max64(t0, ceil_div(m_last - hi + 1, bn));
            int64_t f1 = N - 1 <= m0 - lo ? t1 : min64(t1, floor_div(m0 - lo + 1 - bn, bn));
            if (f0 <= f1) *full += f1 - f0 + 1;
        }
        next = max64(next, t1 + 1);
    }
    return visited;
}

void bands_tile_sum(const sp_band_list *b, int64_t N, int bm, int bn, bands_tile_stats *out)
{
    *out = (bands_tile_stats){ 0 };
    if (N < 1) return;
    out->q_tiles = (N + bm - 1) / bm;
    for (int64_t mt = 0; mt < out->q_tiles; mt++) {
        int64_t full;
        int64_t v = bands_kv_tile_count(b, N, bm, bn, mt, &full);
        out->visited += v;
        out->full += full;
        out->max_per_q = max64(out->max_per_q, v);
    }
    out->partial = out->visited - out->full;
}
