/* The persistent forward's work list (runtime/fwd_sched.c).  The kernel trusts it to hold
 * every item exactly once, split by offsets over gridDim.x CTAs: an item missing leaves rows
 * of O unwritten, one twice races on them.  So for every pattern, both tile widths, GQA,
 * batch 1 to 3, N at and around tile edges and CTA counts from 1 to the item count:
 *   - the offsets ascend from 0 to items and every item appears once;
 *   - the same inputs give the same list (the kernel's roles read it independently, and a
 *     rerun must schedule alike);
 * and the point of it: at the benchmark's shapes on 132 CTAs the busiest CTA's work (the
 * list's own cost model, rebuilt here from bands_kv_tile_count) is within 2% of the mean,
 * where the kernel's static order (CTA c: items c, c + 132, ...) is 9-16% above it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "abi/bandtab.h"
#include "codegen/bands.h"
#include "runtime/fwd_sched.h"
#include "tests/check.h"

static sp_kcfg cfg_of(sp_pattern_kind kind, int heads, int kv_heads, int head_dim, int bm, int bn)
{
    sp_kcfg c;
    memset(&c, 0, sizeof c);
    c.kind = SP_KIND_FWD;
    c.pattern = kind;
    c.heads = heads;
    c.kv_heads = kv_heads;
    c.head_dim = head_dim;
    c.bm = bm;
    c.bn = bn;
    return c;
}

/* The band table of pattern kind at N (malloc'd), its max_intervals in *maxi. */
static int32_t *table_of(sp_pattern_kind kind, int heads, int N, int *maxi)
{
    sp_pattern p = { .kind = kind, .band_basis = 0, .custom = NULL, .window = 65 };
    *maxi = bandtab_max_intervals(&p, heads);
    int32_t *tab = malloc((size_t)heads * BANDTAB_STRIDE(*maxi) * sizeof *tab);
    sp_err e = { 0 };
    if (!tab || bandtab_fill(&p, heads, N, *maxi, tab, &e)) { free(tab); return NULL; }
    return tab;
}

/* 1 if list is a partition of 0 .. items-1 over ctas CTAs. */
static int is_partition(const int32_t *list, size_t count, int ctas, long long items)
{
    if (count != (size_t)ctas + 1 + (size_t)items || list[0] != 0 || list[ctas] != items) return 0;
    for (int c = 0; c < ctas; c++)
        if (list[c + 1] < list[c]) return 0;
    char *seen = calloc((size_t)items, 1);
    int ok = seen != NULL;
    for (long long k = 0; ok && k < items; k++) {
        int32_t v = list[ctas + 1 + k];
        if (v < 0 || v >= items || seen[v]) ok = 0;
        else seen[v] = 1;
    }
    free(seen);
    return ok;
}

static void test_partition(void)
{
    static const sp_pattern_kind kinds[] = { SP_DENSE, SP_SPATTN, SP_EXCLUSIVE, SP_GAPPED, SP_LOCAL, SP_WINDOW };
    static const int ns[] = { 1, 63, 128, 129, 1000, 4096 + 17 };
    int cases = 0, bad = 0;
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++)
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
            for (int gqa = 0; gqa < 2; gqa++)
                for (int bn = 64; bn <= 128; bn += 64)
                    for (int batch = 1; batch <= 3; batch++) {
                        const int heads = 8, N = ns[ni];
                        sp_kcfg c = cfg_of(kinds[ki], heads, gqa ? 2 : heads, 128, 128, bn);
                        int maxi;
                        int32_t *tab = table_of(kinds[ki], heads, N, &maxi);
                        const long long items = (long long)((N + 127) / 128) * heads * batch;
                        const int ctas_try[] = { 1, 3, 132, (int)items };
                        for (int t = 0; t < 4 && tab; t++) {
                            int ctas = ctas_try[t] < items ? ctas_try[t] : (int)items;
                            int32_t *a = NULL, *b = NULL;
                            size_t na = 0, nb = 0;
                            sp_err e = { 0 };
                            cases++;
                            if (fwd_sched_build(&c, tab, maxi, heads, batch, N, ctas, &a, &na, &e) ||
                                fwd_sched_build(&c, tab, maxi, heads, batch, N, ctas, &b, &nb, &e) ||
                                !is_partition(a, na, ctas, items) || na != nb || memcmp(a, b, na * sizeof *a)) {
                                if (!bad++)
                                    fprintf(stderr, "  first bad case: kind %d N %d gqa %d bn %d batch %d ctas %d\n",
                                            (int)kinds[ki], N, gqa, bn, batch, ctas);
                            }
                            free(a);
                            free(b);
                        }
                        if (!tab) bad++;
                        free(tab);
                    }
    CHECK("every list is a deterministic partition of the items over the CTAs", cases > 1000 && bad == 0);
}

/* Each CTA's total under the list's cost model (runtime/fwd_sched.c's item_cost). */
static long long cost_of(const sp_kcfg *c, const int32_t *tab, int maxi, int N, long long e, int heads)
{
    const long long q_tiles = (N + c->bm - 1) / c->bm, qt = e % q_tiles, h = (e / q_tiles) % heads;
    const int32_t *row = tab + h * BANDTAB_STRIDE(maxi);
    sp_band_list b = { .n = row[0] };
    for (int k = 0; k < b.n; k++) b.iv[k] = (sp_interval){ row[1 + 2 * k], row[2 + 2 * k] };
    int64_t full = 0, tiles = bands_kv_tile_count(&b, N, c->bm, c->bn, qt, &full);
    return tiles ? 4 * tiles + (tiles - full) + 4 : 1;
}

/* Busiest CTA over the mean, for the list (listed 1) or the kernel's static order of the
 * plain (unsectioned) kind: items t = c, c + ctas, ... of query tiles from the last. */
static double imbalance(sp_pattern_kind kind, int heads, int batch, int N, int listed)
{
    sp_kcfg c = cfg_of(kind, heads, heads, 128, 128, 128);
    int maxi;
    int32_t *tab = table_of(kind, heads, N, &maxi);
    const int ctas = 132;
    const long long q_tiles = (N + 127) / 128, pairs = (long long)heads * batch, items = q_tiles * pairs;
    long long *load = calloc(ctas, sizeof *load), total = 0, most = 0;
    int32_t *list = NULL;
    size_t n = 0;
    sp_err e = { 0 };
    if (!tab || !load || (listed && fwd_sched_build(&c, tab, maxi, heads, batch, N, ctas, &list, &n, &e))) {
        free(tab); free(load);
        return 99;
    }
    for (long long t = 0; t < items; t++) {
        long long item;
        int cta;
        if (listed) {
            cta = 0;
            while (list[cta + 1] <= t) cta++;
            item = list[ctas + 1 + t];
        } else {
            const long long round = t / pairs, bh = t % pairs;
            cta = (int)(t % ctas);
            item = bh * q_tiles + (q_tiles - 1 - round);
        }
        long long w = cost_of(&c, tab, maxi, N, item, heads);
        load[cta] += w;
        total += w;
    }
    for (int i = 0; i < ctas; i++) most = load[i] > most ? load[i] : most;
    free(tab); free(load); free(list);
    return (double)most * ctas / (double)total;
}

static void test_balance(void)
{
    double band16k = imbalance(SP_SPATTN, 16, 1, 16384, 1), band4k = imbalance(SP_SPATTN, 16, 4, 4096, 1);
    double dense16k = imbalance(SP_DENSE, 16, 1, 16384, 1), dense4k = imbalance(SP_DENSE, 16, 4, 4096, 1);
    fprintf(stderr, "  busiest CTA / mean: band %.4f %.4f, dense %.4f %.4f (static band %.4f, dense %.4f)\n",
            band16k, band4k, dense16k, dense4k, imbalance(SP_SPATTN, 16, 1, 16384, 0),
            imbalance(SP_DENSE, 16, 1, 16384, 0));
    CHECK("band (1,16,16384) within 2% of the mean", band16k <= 1.02);
    CHECK("band (4,16,4096) within 2% of the mean", band4k <= 1.02);
    CHECK("dense (1,16,16384) within 2% of the mean", dense16k <= 1.02);
    CHECK("dense (4,16,4096) within 2% of the mean", dense4k <= 1.02);
    CHECK("the static order is what the list improves on (band 16k)", imbalance(SP_SPATTN, 16, 1, 16384, 0) > 1.05);
}

static void test_bad_arguments(void)
{
    sp_kcfg c = cfg_of(SP_SPATTN, 16, 16, 128, 128, 128);
    int maxi;
    int32_t *tab = table_of(SP_SPATTN, 16, 1000, &maxi), *out = (int32_t *)1;
    size_t n = 7;
    sp_err e = { 0 };
    CHECK("no CTAs", fwd_sched_build(&c, tab, maxi, 16, 1, 1000, 0, &out, &n, &e) == -1 && !out && n == 0);
    CHECK("more CTAs than items", fwd_sched_build(&c, tab, maxi, 16, 1, 1000, 16 * 8 + 1, &out, &n, &e) == -1);
    CHECK("the message names the work list", strstr(e.msg, "work list") != NULL);
    CHECK("no table", fwd_sched_build(&c, NULL, maxi, 16, 1, 1000, 4, &out, &n, &e) == -1);
    c.kv_heads = 3;
    CHECK("heads not in groups", fwd_sched_build(&c, tab, maxi, 16, 1, 1000, 4, &out, &n, &e) == -1);
    free(tab);
}

/* Past FWD_SCHED_MAX_ITEMS a plan keeps the static order: no list, no device memory (the
 * upload returns before any driver call, so this runs without a GPU). */
static void test_too_many_items(void)
{
    sp_kcfg c = cfg_of(SP_DENSE, 64, 64, 128, 128, 128);
    c.mma = SP_MMA_WS;
    c.sm = 90;
    int32_t row[3] = { 1, 0, 1 << 24 };
    sp_gpu g;
    memset(&g, 0, sizeof g);
    g.sm_count = 132;
    fwd_sched s = { .list = 7, .ctas = 7, .items = 7 };
    sp_err e = { 0 };
    const int N = 1 << 20, batch = 8;   /* 8192 query tiles x 64 heads x 8: 2^22 items, then twice */
    CHECK("the cap is where the comment says", (long long)(N / 128) * 64 * batch == FWD_SCHED_MAX_ITEMS);
    CHECK("over the cap: no list, no error",
          fwd_sched_upload(&g, &c, row, 1, 64, 2 * batch, N, &s, &e) == 0 && s.list == 0 && s.items == 0);
}

static const test_case tests[] = {
    { "partition", test_partition },
    { "balance", test_balance },
    { "bad arguments", test_bad_arguments },
    { "too many items", test_too_many_items },
    { 0, 0 },
};
TEST_MAIN(tests)
