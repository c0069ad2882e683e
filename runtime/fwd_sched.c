/* The persistent forward's work list (runtime/fwd_sched.h says why and what). */
#include "runtime/fwd_sched.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "abi/bandtab.h"
#include "codegen/bands.h"
#include "codegen/family.h"
#include "runtime/attn.h"

/* kernels/scheduler.cuh's L2_KV_BUDGET: the dense baseline's order goes in
 * sections of (batch, head) pairs whose K and V fit in it. */
#define FWD_SCHED_L2_KV_BUDGET (32ll << 20)

/* An item's cost in quarter KV tiles: four per tile, one more for a tile
 * that needs the mask, and one tile's worth for the item itself (Q's load,
 * the first product's latency, the epilogue).  A row range with no key costs
 * one (the consumers only write O = 0). */
static long long item_cost(long long tiles, long long full)
{
    return tiles ? 4 * tiles + (tiles - full) + 4 : 1;
}

/* A min-heap of CTAs by (load, index): the next item goes to the least
 * loaded, the lowest index among equals, so the list is deterministic. */
typedef struct { long long load; int cta; } slot;

static int slot_less(const slot *a, const slot *b)
{
    return a->load < b->load || (a->load == b->load && a->cta < b->cta);
}

static void heap_down(slot *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && slot_less(&h[l], &h[m])) m = l;
        if (r < n && slot_less(&h[r], &h[m])) m = r;
        if (m == i) return;
        slot t = h[i]; h[i] = h[m]; h[m] = t;
        i = m;
    }
}

int fwd_sched_build(const sp_kcfg *cfg, const int32_t *bandtab, int max_intervals, int heads, int batch, int N,
                    int ctas, int32_t **out, size_t *count, sp_err *e)
{
    *out = NULL;
    *count = 0;
    if (!cfg || !bandtab || cfg->bm < 1 || cfg->bn < 1 || heads < 1 || batch < 1 || N < 1 || max_intervals < 1 ||
        max_intervals > SP_MAX_INTERVALS || cfg->kv_heads < 1 || cfg->heads % cfg->kv_heads)
        return sp_fail(e, SP_EXIT_USAGE, "forward work list: bad arguments (heads %d, batch %d, N %d)", heads, batch, N);
    const long long q_tiles = ((long long)N + cfg->bm - 1) / cfg->bm, pairs = (long long)heads * batch;
    const long long items = q_tiles * pairs;
    if (items > INT_MAX || ctas < 1 || ctas > items)
        return sp_fail(e, SP_EXIT_USAGE, "forward work list: %lld items over %d CTAs", items, ctas);

    /* Each (head, query tile)'s cost; the batch repeats them. */
    long long *cost = malloc((size_t)(heads * q_tiles) * sizeof *cost);
    int *owner = malloc((size_t)items * sizeof *owner);          /* the CTA of the k-th item dealt */
    int32_t *dealt = malloc((size_t)items * sizeof *dealt);      /* the k-th item dealt */
    int32_t *list = malloc(((size_t)ctas + 1 + (size_t)items) * sizeof *list);
    slot *heap = malloc((size_t)ctas * sizeof *heap);
    int *per_cta = calloc((size_t)ctas + 1, sizeof *per_cta);
    if (!cost || !owner || !dealt || !list || !heap || !per_cta) {
        free(cost); free(owner); free(dealt); free(list); free(heap); free(per_cta);
        return sp_fail(e, SP_EXIT_FAIL, "forward work list: out of memory for %lld items", items);
    }
    for (int h = 0; h < heads; h++) {
        const int32_t *row = bandtab + (size_t)h * BANDTAB_STRIDE(max_intervals);
        sp_band_list b = { .n = row[0] < 0 ? 0 : row[0] > max_intervals ? max_intervals : row[0] };
        for (int k = 0; k < b.n; k++) b.iv[k] = (sp_interval){ row[1 + 2 * k], row[2 + 2 * k] };
        for (long long qt = 0; qt < q_tiles; qt++) {
            int64_t full = 0, tiles = bands_kv_tile_count(&b, N, cfg->bm, cfg->bn, qt, &full);
            cost[h * q_tiles + qt] = item_cost(tiles, full);
        }
    }

    /* The kernel's static order (kernels/scheduler.cuh, work_item_at): query tiles from the
     * last, (batch, head) pairs within a round; the dense baseline in sections of pairs. */
    long long section = pairs;
    if (cfg->pattern == SP_DENSE) {
        const long long kv_head_bytes = (long long)N * cfg->head_dim * 2 * 2, fit = FWD_SCHED_L2_KV_BUDGET / kv_head_bytes;
        const long long group = cfg->heads / cfg->kv_heads, width = (fit > 1 ? fit : 1) * group;
        if (fit < pairs) section = width < pairs ? width : pairs;
    }
    for (int c = 0; c < ctas; c++) heap[c] = (slot){ 0, c };
    long long k = 0;
    for (long long first = 0; first < pairs; first += section) {
        const long long width = pairs - first < section ? pairs - first : section;
        for (long long round = 0; round < q_tiles; round++)
            for (long long j = 0; j < width; j++, k++) {
                const long long bh = first + j, qt = q_tiles - 1 - round;
                const long long item = bh * q_tiles + qt;
                owner[k] = heap[0].cta;
                dealt[k] = (int32_t)item;
                heap[0].load += cost[(bh % heads) * q_tiles + qt];
                heap_down(heap, ctas, 0);
            }
    }
    /* Offsets, then each CTA's items in the order they were dealt. */
    for (long long i = 0; i < items; i++) per_cta[owner[i] + 1]++;
    for (int c = 0; c < ctas; c++) per_cta[c + 1] += per_cta[c];
    for (int c = 0; c <= ctas; c++) list[c] = per_cta[c];
    for (long long i = 0; i < items; i++) list[ctas + 1 + per_cta[owner[i]]++] = dealt[i];
    free(dealt); free(cost); free(owner); free(heap); free(per_cta);
    *out = list;
    *count = (size_t)ctas + 1 + (size_t)items;
    return 0;
}

int fwd_sched_upload(sp_gpu *g, const sp_kcfg *cfg, const int32_t *bandtab, int max_intervals, int heads,
                     int batch, int N, fwd_sched *s, sp_err *e)
{
    memset(s, 0, sizeof *s);
    if (!kcfg_family(cfg)->persistent) return 0;
    attn_fwd_args a = { .seqlen = N, .heads = heads, .batch = batch };
    unsigned ctas;
    if (attn_fwd_persistent_grid(g, cfg, &a, &ctas, e)) return -1;
    if ((long long)((N + cfg->bm - 1) / cfg->bm) * heads * batch > FWD_SCHED_MAX_ITEMS) return 0;
    int32_t *list;
    size_t n;
    if (fwd_sched_build(cfg, bandtab, max_intervals, heads, batch, N, (int)ctas, &list, &n, e)) return -1;
    int rc = cu_malloc(g, n * sizeof *list, &s->list, e) || cu_upload(g, s->list, list, n * sizeof *list, e);
    free(list);
    if (rc) {
        fwd_sched_free(g, s);
        return -1;
    }
    s->ctas = (int)ctas;
    s->items = (int)(n - ctas - 1);
    return 0;
}

void fwd_sched_free(sp_gpu *g, fwd_sched *s)
{
    if (s->list) cu_free(g, s->list);
    memset(s, 0, sizeof *s);
}
