/* Band plan tests: every closed form of codegen/bands.c against brute force.
 *
 * The reference here is written independently of bands.c: membership of a
 * distance comes straight from the unclipped layout formulas of DESIGN.md
 * (no clipping, no merging), the (i, j) mask is j <= i < N with the
 * distance a member, and tile kinds come from counting allowed elements in
 * each tile with a 2-D prefix sum over that mask. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "codegen/bands.h"
#include "tests/check.h"

/* ---- the reference ------------------------------------------------------ */

typedef struct {
    sp_pattern_kind kind;
    int64_t L;                 /* basis length actually used */
    int heads;
    const sp_band_list *custom;
    int64_t window;
} ref_pattern;

/* Is distance d allowed for head h, by the table of DESIGN.md, before clipping? */
static int ref_member(const ref_pattern *r, int h, int64_t d)
{
    int64_t base = r->L / r->heads, extra = r->L % r->heads;
    int64_t w = base + (h < extra);
    int64_t s = h * base + (h < extra ? h : extra);
    switch (r->kind) {
    case SP_DENSE:     return d >= 0;
    case SP_LOCAL:     return d >= 0 && d <= w;
    case SP_SPATTN:    return (d >= 0 && d <= w) || (d >= s && d < s + w);
    case SP_EXCLUSIVE: return d >= s && d < s + w;
    case SP_GAPPED:    return d >= s && d < s + w / 2;
    case SP_WINDOW:    return d >= 0 && d < r->window;   /* [0, W) */
    case SP_CUSTOM:
        for (int k = 0; k < r->custom[h].n; k++)
            if (d >= r->custom[h].iv[k].lo && d < r->custom[h].iv[k].hi) return 1;
        return 0;
    }
    return 0;
}

/* Inclusive 2-D prefix counts of the allowed mask: P[(i)*(N+1) + j] is the
 * number of allowed (i', j') with i' < i, j' < j. */
typedef struct { int64_t N; int32_t *P; } ref_mask;

static void mask_build(ref_mask *m, const ref_pattern *r, int h, int64_t N)
{
    m->N = N;
    m->P = calloc((size_t)((N + 1) * (N + 1)), sizeof *m->P);
    char *mem = malloc((size_t)N);
    for (int64_t d = 0; d < N; d++) mem[d] = (char)ref_member(r, h, d);
    int64_t W = N + 1;
    for (int64_t i = 0; i < N; i++) {
        int32_t row = 0;
        for (int64_t j = 0; j < N; j++) {
            row += j <= i && mem[i - j];   /* the element itself: causal and a member */
            m->P[(i + 1) * W + j + 1] = m->P[i * W + j + 1] + row;
        }
    }
    free(mem);
}

/* Allowed elements in rows [i0, i1) x keys [j0, j1), clipped to N. */
static int64_t mask_count(const ref_mask *m, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    int64_t N = m->N, W = N + 1;
    if (i1 > N) i1 = N;
    if (j1 > N) j1 = N;
    if (i0 < 0) i0 = 0;
    if (j0 < 0) j0 = 0;
    if (i0 >= i1 || j0 >= j1) return 0;
    return m->P[i1 * W + j1] - m->P[i0 * W + j1] - m->P[i1 * W + j0] + m->P[i0 * W + j0];
}

static int ref_kind(const ref_mask *m, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    int64_t N = m->N;
    int64_t c = mask_count(m, i0, i1, j0, j1);
    if (c == 0) return TILE_SKIP;
    int64_t rows = (i1 < N ? i1 : N) - (i0 > 0 ? i0 : 0), cols = (j1 < N ? j1 : N) - (j0 > 0 ? j0 : 0);
    return c == rows * cols ? TILE_FULL : TILE_PARTIAL;
}

/* ---- one configuration -------------------------------------------------- */

static const char *kind_name(sp_pattern_kind k)
{
    static const char *names[] = { "dense", "local", "spattn", "exclusive", "gapped", "custom", "window" };
    return names[k];
}

/* EXPECT (tests/check.h) keeps the first mismatch of the current configuration,
 * reported once by CHECKF. */

static const int tile_sizes[] = { 16, 32, 64, 128 };

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Compare the tile lists of one head and tile size against the mask. */
static void check_tiles(const sp_band_list *b, const ref_mask *m, int64_t N, int bm, int bn, const char *tag)
{
    int64_t qt = (N + bm - 1) / bm, kt = (N + bn - 1) / bn;
    int *kind = malloc((size_t)(qt * kt) * sizeof *kind);
    for (int64_t mt = 0; mt < qt; mt++)
        for (int64_t nt = 0; nt < kt; nt++)
            kind[mt * kt + nt] = ref_kind(m, mt * bm, mt * bm + bm, nt * bn, nt * bn + bn);

    plan_tile *buf = malloc((size_t)(qt > kt ? qt : kt) * sizeof *buf);
    int64_t sum_visited = 0, sum_full = 0;
    for (int64_t mt = 0; mt < qt; mt++) {
        int n = bands_kv_tiles(b, N, bm, bn, mt, buf, (int)kt);
        int expect_n = 0;
        for (int64_t nt = 0; nt < kt; nt++) expect_n += kind[mt * kt + nt] != TILE_SKIP;
        EXPECT(n == expect_n, "%s bm%d bn%d q tile %lld: %d kv tiles, expected %d", tag, bm, bn, (long long)mt, n,
               expect_n);
        for (int x = 0; x < n && x < kt; x++) {
            EXPECT(x == 0 || buf[x].tile > buf[x - 1].tile, "%s bm%d bn%d q tile %lld: kv tiles not ascending", tag,
                   bm, bn, (long long)mt);
            int t = buf[x].tile;
            int want = t >= 0 && t < kt ? kind[mt * kt + t] : -1;
            EXPECT(buf[x].kind == want, "%s bm%d bn%d q tile %lld kv tile %d: kind %d, expected %d", tag, bm, bn,
                   (long long)mt, t, buf[x].kind, want);
        }
        /* Asking with less room reports the same count and writes only cap. */
        if (n > 1) {
            plan_tile small[1] = { { -7, 9 } };
            int n2 = bands_kv_tiles(b, N, bm, bn, mt, small, 1);
            EXPECT(n2 == n && small[0].tile == buf[0].tile, "%s bm%d bn%d: cap 1 gave %d", tag, bm, bn, n2);
            EXPECT(bands_kv_tiles(b, N, bm, bn, mt, NULL, 0) == n, "%s: cap 0 count differs", tag);
        }
        int64_t full, full_listed = 0;
        for (int x = 0; x < n; x++) full_listed += buf[x].kind == TILE_FULL;
        int64_t cnt = bands_kv_tile_count(b, N, bm, bn, mt, &full);
        EXPECT(cnt == n && full == full_listed, "%s bm%d bn%d q tile %lld: count %lld/%lld full, listed %d/%lld",
               tag, bm, bn, (long long)mt, (long long)cnt, (long long)full, n, (long long)full_listed);
        sum_visited += n;
        sum_full += full_listed;
    }
    bands_tile_stats st;
    bands_tile_sum(b, N, bm, bn, &st);
    EXPECT(st.q_tiles == qt && st.visited == sum_visited && st.full == sum_full &&
               st.partial == sum_visited - sum_full,
           "%s bm%d bn%d: tile sum %lld/%lld, expected %lld/%lld", tag, bm, bn, (long long)st.visited,
           (long long)st.full, (long long)sum_visited, (long long)sum_full);

    for (int64_t nt = 0; nt < kt; nt++) {
        int n = bands_q_tiles(b, N, bm, bn, nt, buf, (int)qt);
        int expect_n = 0;
        for (int64_t mt = 0; mt < qt; mt++) expect_n += kind[mt * kt + nt] != TILE_SKIP;
        EXPECT(n == expect_n, "%s bm%d bn%d kv tile %lld: %d q tiles, expected %d", tag, bm, bn, (long long)nt, n,
               expect_n);
        for (int x = 0; x < n && x < qt; x++) {
            EXPECT(x == 0 || buf[x].tile > buf[x - 1].tile, "%s bm%d bn%d kv tile %lld: q tiles not ascending", tag,
                   bm, bn, (long long)nt);
            int t = buf[x].tile;
            int want = t >= 0 && t < qt ? kind[t * kt + nt] : -1;
            EXPECT(buf[x].kind == want, "%s bm%d bn%d kv tile %lld q tile %d: kind %d, expected %d", tag, bm, bn,
                   (long long)nt, t, buf[x].kind, want);
        }
    }
    /* Past the end: nothing. */
    EXPECT(bands_kv_tiles(b, N, bm, bn, qt, buf, 1) == 0 && bands_q_tiles(b, N, bm, bn, kt, buf, 1) == 0,
           "%s: tiles past N listed", tag);

    /* bands_tile_kind on unaligned rectangles, some hanging over the edges. */
    for (int r = 0; r < 24; r++) {
        int h = 1 + (int)(rng() % 40), w = 1 + (int)(rng() % 40);
        int64_t i0 = (int64_t)(rng() % (uint64_t)(N + 8)) - 4, j0 = (int64_t)(rng() % (uint64_t)(N + 8)) - 4;
        int got = bands_tile_kind(b, N, i0, h, j0, w), want = ref_kind(m, i0, i0 + h, j0, j0 + w);
        EXPECT(got == want, "%s tile_kind rows [%lld,+%d) keys [%lld,+%d): %d, expected %d", tag, (long long)i0, h,
               (long long)j0, w, got, want);
    }
    free(buf);
    free(kind);
}

/* One head: intervals, membership, pairs, and tiles for the given sizes. */
static void check_head(const sp_pattern *p, const ref_pattern *r, int h, int64_t N, const int (*sizes)[2],
                       int n_sizes, const char *tag0)
{
    char tag[160];
    snprintf(tag, sizeof tag, "%s h%d", tag0, h);
    sp_band_list b;
    EXPECT(bands_head(p, r->heads, h, N, &b) == 0, "%s: bands_head failed", tag);
    for (int k = 0; k < b.n; k++) {
        EXPECT(b.iv[k].lo >= 0 && b.iv[k].lo < b.iv[k].hi && b.iv[k].hi <= N, "%s: interval %d [%lld,%lld) bad", tag,
               k, (long long)b.iv[k].lo, (long long)b.iv[k].hi);
        EXPECT(k == 0 || b.iv[k].lo > b.iv[k - 1].hi, "%s: intervals %d,%d not merged", tag, k - 1, k);
    }
    int64_t pairs = 0;
    for (int64_t d = -3; d < N + 3; d++) {
        int want = d >= 0 && d < N && ref_member(r, h, d);
        EXPECT(bands_allows(&b, d) == want, "%s: d=%lld allowed %d, expected %d", tag, (long long)d,
               bands_allows(&b, d), want);
        if (want) pairs += N - d;
    }
    EXPECT(bands_pairs(&b, N) == pairs, "%s: pairs %lld, expected %lld", tag, (long long)bands_pairs(&b, N),
           (long long)pairs);

    ref_mask m;
    mask_build(&m, r, h, N);
    EXPECT(mask_count(&m, 0, N, 0, N) == pairs, "%s: mask count differs from pairs", tag);
    for (int s = 0; s < n_sizes; s++) check_tiles(&b, &m, N, sizes[s][0], sizes[s][1], tag);
    free(m.P);
}

/* Custom bands for `heads` heads at length N: random lists (some touching,
 * some past N, one head empty, one with SP_MAX_INTERVALS narrow bands). */
static void make_custom(sp_band_list *c, int heads, int64_t N)
{
    for (int h = 0; h < heads; h++) {
        sp_band_list *b = &c[h];
        b->n = 0;
        if (h == 1) continue;                                  /* a head with no band */
        int want = h == heads - 1 && heads >= 3 ? SP_MAX_INTERVALS : (int)(rng() % 5);
        int narrow = want == SP_MAX_INTERVALS;
        int64_t span = N / 3 + 2;
        int64_t pos = (int64_t)(rng() % (uint64_t)(N / 4 + 2));
        if (rng() % 3 == 0) pos = 0;
        for (int k = 0; k < want; k++) {
            int64_t gap = narrow ? (int64_t)(rng() % 3) : (rng() % 4 == 0 ? 0 : 1 + (int64_t)(rng() % (uint64_t)span));
            int64_t len = narrow ? 1 + (int64_t)(rng() % 3) : 1 + (int64_t)(rng() % (uint64_t)span);
            int64_t lo = pos + (k ? gap : 0);
            b->iv[b->n++] = (sp_interval){ lo, lo + len };
            pos = lo + len;
        }
    }
}

static const int all_sizes[16][2] = {
    { 16, 16 }, { 16, 32 }, { 16, 64 }, { 16, 128 }, { 32, 16 }, { 32, 32 }, { 32, 64 }, { 32, 128 },
    { 64, 16 }, { 64, 32 }, { 64, 64 }, { 64, 128 }, { 128, 16 }, { 128, 32 }, { 128, 64 }, { 128, 128 },
};

/* Check pattern p (heads H, length N) on the heads listed, report once. */
static void check_config(sp_pattern *p, int H, int64_t N, const int *heads_to_check, int n_heads, const int (*sizes)[2],
                         int n_sizes)
{
    ref_pattern r = { p->kind, p->band_basis > 0 ? p->band_basis : N, H, p->custom, p->window };
    char tag[128];
    snprintf(tag, sizeof tag, "%s H%d N%lld L%lld", kind_name(p->kind), H, (long long)N, (long long)r.L);
    check_n_bad = 0;
    check_first_bad[0] = 0;
    for (int x = 0; x < n_heads; x++) check_head(p, &r, heads_to_check[x], N, sizes, n_sizes, tag);
    CHECKF(check_n_bad == 0, "%s: %d mismatches, first: %s", tag, check_n_bad, check_first_bad);
}

/* Heads worth checking: all of them for small N; for large N (where the
 * mask is costly) the first, last, and those on both sides of `extra`. */
static int pick_heads(int H, int64_t N, int64_t L, int *out)
{
    if (N < 500) {
        for (int h = 0; h < H; h++) out[h] = h;
        return H;
    }
    int extra = (int)(L % H), cand[] = { 0, 1, extra - 1, extra, H / 2, H - 1 }, n = 0;
    for (int c = 0; c < 6; c++) {
        int h = cand[c], dup = 0;
        if (h < 0 || h >= H) continue;
        for (int x = 0; x < n; x++) dup |= out[x] == h;
        if (!dup) out[n++] = h;
    }
    return n;
}

/* ---- tests --------------------------------------------------------------- */

static void test_check_values(void)
{
    sp_pattern sp = { .kind = SP_SPATTN, .band_basis = 0, .custom = NULL }, ex = { .kind = SP_EXCLUSIVE, .band_basis = 0, .custom = NULL };
    CHECK("spattn H16 N4096 0.176441", fabs(bands_work_ratio(&sp, 16, 4096) - 0.176441) < 1e-6);
    CHECK("exclusive H16 N4096 0.062500", fabs(bands_work_ratio(&ex, 16, 4096) - 0.062500) < 1e-6);
    CHECK("spattn H8 N4096 0.330429", fabs(bands_work_ratio(&sp, 8, 4096) - 0.330429) < 1e-6);
    CHECK("spattn H16 N16384 0.176129", fabs(bands_work_ratio(&sp, 16, 16384) - 0.176129) < 1e-6);
    sp_pattern dn = { .kind = SP_DENSE };
    CHECK("dense ratio is 1", bands_work_ratio(&dn, 3, 1000) == 1.0);
}

static void test_layouts_by_hand(void)
{
    /* H = 4, N = 10: base 2, extra 2, widths 3 3 2 2, starts 0 3 6 8. */
    sp_pattern p = { .kind = SP_SPATTN, .band_basis = 0, .custom = NULL };
    sp_band_list b;
    bands_head(&p, 4, 0, 10, &b);
    CHECK("spattn h0: local only", b.n == 1 && b.iv[0].lo == 0 && b.iv[0].hi == 4);
    bands_head(&p, 4, 1, 10, &b);
    CHECK("spattn h1: local touches band, merged", b.n == 1 && b.iv[0].lo == 0 && b.iv[0].hi == 6);
    bands_head(&p, 4, 3, 10, &b);
    CHECK("spattn h3: two bands", b.n == 2 && b.iv[0].hi == 3 && b.iv[1].lo == 8 && b.iv[1].hi == 10);
    p.kind = SP_EXCLUSIVE;
    bands_head(&p, 4, 2, 10, &b);
    CHECK("exclusive h2", b.n == 1 && b.iv[0].lo == 6 && b.iv[0].hi == 8);
    p.kind = SP_GAPPED;
    bands_head(&p, 4, 2, 10, &b);
    CHECK("gapped h2: half of width 2", b.n == 1 && b.iv[0].lo == 6 && b.iv[0].hi == 7);
    p.kind = SP_LOCAL;
    bands_head(&p, 4, 3, 10, &b);
    CHECK("local includes d = w", b.n == 1 && b.iv[0].hi == 3);
    /* A fixed basis larger than N clips; one smaller leaves far keys out. */
    p = (sp_pattern){ .kind = SP_EXCLUSIVE, .band_basis = 400, .custom = NULL };
    bands_head(&p, 4, 3, 10, &b);
    CHECK("fixed basis 400, h3 beyond N: empty", b.n == 0);
    p = (sp_pattern){ .kind = SP_DENSE, .band_basis = 4, .custom = NULL };
    bands_head(&p, 4, 0, 10, &b);
    CHECK("dense ignores basis", b.n == 1 && b.iv[0].hi == 10);

    CHECK("bad head index", bands_head(&p, 4, 4, 10, &b) == -1 && b.n == 0);
    CHECK("N = 0 refused", bands_head(&p, 4, 0, 0, &b) == -1);
    sp_pattern c = { .kind = SP_CUSTOM, .band_basis = 0, .custom = NULL };
    CHECK("custom without bands refused", bands_head(&c, 4, 0, 10, &b) == -1);
    CHECK("work ratio of a bad pattern", bands_work_ratio(&c, 4, 10) == -1);
}

static void test_custom_merge(void)
{
    sp_band_list cb[1] = { { 4, { { 0, 3 }, { 3, 5 }, { 7, 9 }, { 20, 30 } } } };
    sp_pattern p = { .kind = SP_CUSTOM, .band_basis = 0, .custom = cb };
    sp_band_list b;
    bands_head(&p, 1, 0, 25, &b);
    CHECK("touching merged, far clipped", b.n == 3 && b.iv[0].hi == 5 && b.iv[1].lo == 7 && b.iv[2].lo == 20 &&
                                             b.iv[2].hi == 25);
    bands_head(&p, 1, 0, 8, &b);
    CHECK("clipped inside the second band", b.n == 2 && b.iv[1].lo == 7 && b.iv[1].hi == 8);
}

/* issue 19: pattern window allows distances [0, W) in every head, clipped
 * to N; the element-wise check is the brute force below. */
static void test_window(void)
{
    sp_pattern p = { .kind = SP_WINDOW, .window = 64 };
    for (int h = 0; h < 3; h++) {
        sp_band_list b;
        CHECK("window head", bands_head(&p, 3, h, 1000, &b) == 0 && b.n == 1 && b.iv[0].lo == 0 && b.iv[0].hi == 64);
        CHECK("W - 1 allowed, W not", bands_allows(&b, 63) && !bands_allows(&b, 64) && bands_allows(&b, 0));
    }
    sp_band_list b;
    CHECK("window wider than N is dense", bands_head(&p, 1, 0, 10, &b) == 0 && b.n == 1 && b.iv[0].hi == 10);
    CHECK("window wider than N: dense pairs", bands_pairs(&b, 10) == bands_dense_pairs(10));
    p.window = 1;
    CHECK("window 1: the diagonal", bands_head(&p, 1, 0, 100, &b) == 0 && bands_pairs(&b, 100) == 100);
    /* (W)(2N - W + 1) / 2 pairs: W = 256, N = 4096 */
    p.window = 256;
    CHECK("window work ratio", fabs(bands_work_ratio(&p, 8, 4096) - (256.0 * (2 * 4096 - 256 + 1) / 2) /
                                                                     (4096.0 * 4097 / 2)) < 1e-12);
    p.window = 0;
    CHECK("window 0 is a caller bug", bands_head(&p, 1, 0, 100, &b) == -1 && b.n == 0);
}

static void test_n1_and_small(void)
{
    for (int k = SP_DENSE; k <= SP_GAPPED; k++) {
        sp_pattern p = { .kind = (sp_pattern_kind)k };
        int64_t total = 0;
        for (int h = 0; h < 16; h++) {
            sp_band_list b;
            bands_head(&p, 16, h, 1, &b);
            total += bands_pairs(&b, 1);
            plan_tile t[2];
            int n = bands_kv_tiles(&b, 1, 16, 16, 0, t, 2);
            CHECKF(n == (b.n ? 1 : 0) && (n == 0 || t[0].kind == TILE_FULL), "%s h%d N1: %d tiles", kind_name(p.kind),
                   h, n);
        }
        /* At N = 1 only head 0 has width 1: gapped's half-band is empty. */
        int64_t want = k == SP_GAPPED ? 0 : k == SP_EXCLUSIVE ? 1 : 16;
        CHECKF(total == want, "%s N1 H16: %lld pairs, expected %lld", kind_name(p.kind), (long long)total,
               (long long)want);
    }
}

static void test_brute_force(void)
{
    static const int Hs[] = { 1, 2, 3, 5, 8, 16 };
    static const int64_t Ns[] = { 1, 2, 3, 7, 16, 63, 64, 65, 113, 127, 128, 129, 255, 1000, 1023 };
    static sp_band_list custom[16];
    int heads[16];
    for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
        int64_t N = Ns[ni];
        for (size_t hi = 0; hi < sizeof Hs / sizeof Hs[0]; hi++) {
            int H = Hs[hi];
            /* basis: N (0), and fixed ones smaller and larger than N */
            int64_t bases[] = { 0, N / 3 + 1, 3 * N + 5, 7 };
            int n_bases = N < 500 ? 4 : 2;
            for (int k = SP_DENSE; k <= SP_GAPPED; k++)
                for (int bi = 0; bi < n_bases; bi++) {
                    sp_pattern p = { .kind = (sp_pattern_kind)k, .band_basis = bases[bi] };
                    int nh = pick_heads(H, N, bases[bi] ? bases[bi] : N, heads);
                    check_config(&p, H, N, heads, nh, all_sizes, 16);
                }
            make_custom(custom, H, N);
            sp_pattern p = { .kind = SP_CUSTOM, .band_basis = 0, .custom = custom };
            int nh = pick_heads(H, N, N, heads);
            check_config(&p, H, N, heads, nh, all_sizes, 16);
            /* windows: 1, below, at and above N, and around a 64-wide tile */
            int64_t windows[] = { 1, N / 2 + 1, N, N + 3, 63, 64, 65 };
            for (size_t wi = 0; wi < sizeof windows / sizeof windows[0]; wi++) {
                sp_pattern w = { .kind = SP_WINDOW, .window = windows[wi] };
                check_config(&w, H, N, heads, nh, all_sizes, 16);
            }
        }
    }
}

/* bands_row_has_key and bands_key_is_reached against brute force over all
 * pairs: the GPU check's exact-zero rows (issue 13) come from them. */
static void test_empty_rows_and_keys(void)
{
    static const int64_t Ns[] = { 1, 2, 65, 333, 1000 };
    static sp_band_list custom[16];
    for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
        int64_t N = Ns[ni];
        for (int k = SP_DENSE; k <= SP_CUSTOM; k++) {
            int H = 12;
            make_custom(custom, H, N);
            sp_pattern p = { .kind = (sp_pattern_kind)k, .custom = k == SP_CUSTOM ? custom : NULL };
            for (int h = 0; h < H; h++) {
                sp_band_list b;
                bands_head(&p, H, h, N, &b);
                int bad = 0;
                for (int64_t x = 0; x < N; x++) {
                    int row = 0, key = 0;
                    for (int64_t y = 0; y <= x; y++) row |= bands_allows(&b, x - y);   /* row x, key y */
                    for (int64_t i = x; i < N; i++) key |= bands_allows(&b, i - x);  /* key x, row i */
                    bad += row != bands_row_has_key(&b, x) || key != bands_key_is_reached(&b, x, N);
                }
                CHECKF(bad == 0, "pattern %d H %d h %d N %lld: %d rows/keys wrong", k, H, h, (long long)N, bad);
            }
        }
    }
}

/* Band widths one below, at, and one above BN: where a band just fits a
 * tile, or just spills into the next. */
static void test_widths_around_bn(void)
{
    int heads[16];
    for (int t = 0; t < 4; t++) {
        int bn = tile_sizes[t];
        int sizes[4][2];
        for (int x = 0; x < 4; x++) { sizes[x][0] = tile_sizes[x]; sizes[x][1] = bn; }
        for (int delta = -1; delta <= 1; delta++)
            for (int H = 2; H <= 4; H += 2)
                for (int extra = 0; extra < 2; extra++) {
                    int64_t N = (int64_t)H * (bn + delta) + extra;   /* w_h = bn + delta (+1 for h < extra) */
                    for (int k = SP_LOCAL; k <= SP_GAPPED; k++) {
                        sp_pattern p = { .kind = (sp_pattern_kind)k };
                        int nh = pick_heads(H, N, N, heads);
                        check_config(&p, H, N, heads, nh, (const int (*)[2])sizes, 4);
                    }
                }
    }
}

/* N up to 2^31: the closed forms must not overflow. */
static void test_large_n(void)
{
    int64_t N = (int64_t)1 << 31;
    int64_t dense = bands_dense_pairs(N);
    CHECK("dense pairs at 2^31", dense == ((int64_t)1 << 61) + ((int64_t)1 << 30));
    sp_band_list all = { 1, { { 0, N } } };
    CHECK("pairs of [0, N) at 2^31", bands_pairs(&all, N) == dense);
    int64_t k = 123456789;
    sp_band_list lo = { 1, { { 0, k } } }, hi = { 1, { { k, N } } }, odd = { 1, { { 1, N } } };
    CHECK("pairs add up across a split", bands_pairs(&lo, N) + bands_pairs(&hi, N) == dense);
    CHECK("pairs of [1, N)", bands_pairs(&odd, N) == dense - N);
    /* The largest N whose dense count fits: (2^32 - 1) 2^31 = 2^63 - 2^31.
     * (b - a)(2N - a - b + 1) itself would not fit: the even factor is halved first. */
    int64_t N32 = ((int64_t)1 << 32) - 1;
    sp_band_list all32 = { 1, { { 0, N32 } } }, tail32 = { 1, { { 1, N32 } } };
    CHECK("dense pairs at 2^32 - 1", bands_dense_pairs(N32) == INT64_MAX - ((int64_t)1 << 31) + 1);
    CHECK("pairs of [0, N) at 2^32 - 1", bands_pairs(&all32, N32) == bands_dense_pairs(N32));
    CHECK("pairs of [1, N) at 2^32 - 1", bands_pairs(&tail32, N32) == bands_dense_pairs(N32) - N32);

    sp_pattern p = { .kind = SP_SPATTN, .band_basis = 0, .custom = NULL };
    double r = bands_work_ratio(&p, 16, N);
    CHECKF(r > 0.17 && r < 0.18, "spattn H16 N 2^31 ratio %f", r);

    /* Tile indices near 2^31 / bn, listed and counted alike. */
    sp_band_list b;
    bands_head(&p, 256, 255, N, &b);
    int bm = 128, bn = 128;
    plan_tile *buf = malloc(sizeof *buf * 200000);
    int64_t mts[] = { N / bm - 1, N / bm - 2, N / bm / 2 };
    for (int x = 0; x < 3; x++) {
        int n = bands_kv_tiles(&b, N, bm, bn, mts[x], buf, 200000);
        int64_t full, c = bands_kv_tile_count(&b, N, bm, bn, mts[x], &full);
        int64_t fl = 0, asc = 1;
        for (int y = 0; y < n && y < 200000; y++) {
            fl += buf[y].kind == TILE_FULL;
            if (y && buf[y].tile <= buf[y - 1].tile) asc = 0;
        }
        CHECKF(n > 0 && n <= 200000 && c == n && full == fl && asc, "q tile %lld at N 2^31: %d listed, %lld counted",
               (long long)mts[x], n, (long long)c);
        CHECKF(buf[n - 1].tile <= (int32_t)(N / bn - 1), "last tile %d in range", buf[n - 1].tile);
    }
    free(buf);
}

static const test_case tests[] = {
    { "check_values", test_check_values },
    { "layouts_by_hand", test_layouts_by_hand },
    { "custom_merge", test_custom_merge },
    { "window", test_window },
    { "n1_and_small", test_n1_and_small },
    { "brute_force", test_brute_force },
    { "empty_rows_and_keys", test_empty_rows_and_keys },
    { "widths_around_bn", test_widths_around_bn },
    { "large_n", test_large_n },
    { 0, 0 },
};

TEST_MAIN(tests)
