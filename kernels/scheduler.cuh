/* The tile scheduler of the persistent kernels: a launch of at most one CTA
 * per SM walks the work items (query tile, head, batch).  With the host's
 * work list (p.sched, runtime/fwd_sched.h: the order below dealt out so that
 * every CTA gets about the same work) CTA c runs its entries of the list;
 * without one (packed sequences, launches with no plan) CTA c takes items c,
 * c + gridDim.x, c + 2 gridDim.x, ... of the order below, which hands CTAs
 * up to 16% more than the mean where items differ in length (dense causal).
 * Every role of a CTA (producer and consumers) walks the same sequence on
 * its own, so they need no communication about what comes next.
 *
 * Order: longest first.  A query row i of head h attends the keys i - d for
 * d in the head's intervals with d <= i; that set only grows with i, so in
 * every head a later query tile has at least the work of an earlier one
 * (up to the rounding of tile edges).  Items therefore go by query tile
 * from the last, and within one tile by head and batch: the work falls
 * monotonically along the sequence in each head, and the static round-robin
 * hands each CTA an item of about the same length in every round.
 *
 * Packed sequences (seq.cuh): the query tiles are those of the longest
 * sequence (p.seqlen), for every sequence; a tile past its sequence's end
 * is an empty item that every role skips at once.  The order is still
 * roughly longest first: an item's work is that of its rows' band ranges,
 * which depend on the row index and on the sequence's own bands, and a
 * shorter sequence's bands (basis its length) are no wider than a longer
 * one's, so among items of one tile index the short sequences' are the
 * short ones, and their cost of skipping is a few instructions.  Round r
 * holds the tile that is r-th from the end of the longest sequence only;
 * a sequence of length n starts contributing items when the rounds reach
 * its last tile, which is where its longest items are.
 *
 * Needs: common.cuh (DEV) and the constants BM, HEAD_DIM, GROUP and BANDS_DENSE. */
#pragma once
#include "common.cuh"

struct work_item {
    int m0;   /* first query row of the tile */
    int h;    /* query head within the launch */
    int b;    /* batch */
};

/* The order's shape: q_tiles query tiles of pairs = heads * batch (batch,
 * head) pairs, walked in sections of `section` pairs. */
struct work_order {
    int q_tiles, heads, pairs, section;
};

/* L2 locality (FlashAttention-3's tile scheduler does the same): a round of
 * the order above runs one query tile of every (head, batch) at once, so the
 * K and V of all heads are in use together; when they do not fit in L2
 * (dense attention or long bands at large N: 8 MB per head at N = 16384,
 * d128) every KV tile comes from HBM again for each query tile.  So the pairs
 * go in sections whose K and V fit in L2_KV_BUDGET (that of whole kv heads:
 * a section holds whole GQA groups), each section's items longest first,
 * one section after the other.  Small problems are one section: the plain
 * order.  Only the dense baseline (BANDS_DENSE) uses sections: there a query
 * tile reads every earlier key, and sections made it 10% faster at
 * (4,16,4096,128) in the fair benchmark; a band pattern's query tile reads
 * only its bands' keys, the plain order keeps what runs at once in L2
 * already, and sections measured 2-3% slower (bench/NOTES-fwd-ws.md, v5). */
enum : long long { L2_KV_BUDGET = 32ll << 20 };

DEV work_order work_order_make(int q_tiles, int heads, int batch, int seqlen)
{
    work_order o;
    o.q_tiles = q_tiles;
    o.heads = heads;
    o.pairs = heads * batch;
    o.section = o.pairs;
    if (BANDS_DENSE) {
        const long long kv_head_bytes = (long long)seqlen * HEAD_DIM * 2 * 2;   /* K and V, 16-bit */
        const long long kv_heads = L2_KV_BUDGET / kv_head_bytes;
        if (kv_heads < o.pairs) o.section = min((int)max(1ll, kv_heads) * GROUP, o.pairs);
    }
    return o;
}

/* Item t of q_tiles * pairs (t < that product, which the host checks fits
 * an int).  Every section but the last is `section` pairs wide. */
DEV work_item work_item_at(int t, const work_order &o)
{
    if (!BANDS_DENSE) {   /* one section */
        const int round = t / o.pairs, rest = t - round * o.pairs;
        work_item w;
        w.m0 = (o.q_tiles - 1 - round) * BM;
        w.h = rest % o.heads;
        w.b = rest / o.heads;
        return w;
    }
    const int per_section = o.section * o.q_tiles;
    const int sec = t / per_section, rest = t - sec * per_section;
    const int first = sec * o.section, width = min(o.section, o.pairs - first);
    const int round = rest / width, bh = first + (rest - round * width);
    work_item w;
    w.m0 = (o.q_tiles - 1 - round) * BM;
    w.h = bh % o.heads;
    w.b = bh / o.heads;
    return w;
}

/* A CTA's walk over its items: its entries of the host's list, or the static
 * order's items blockIdx.x, + gridDim.x, ...  Every role makes its own. */
struct item_walk {
    const int *list;   /* the CTA's first entry; 0: the static order */
    int k, end;        /* next entry (or order index) and the end */
};

DEV item_walk item_walk_of(const void *sched, int items)
{
    item_walk w;
    if (sched) {
        const int *off = (const int *)sched;
        w.list = off + gridDim.x + 1;
        w.k = __ldg(off + blockIdx.x);
        w.end = __ldg(off + blockIdx.x + 1);
    } else {
        w.list = 0;
        w.k = blockIdx.x;
        w.end = items;
    }
    return w;
}

/* The CTA's next item into w; false when it has none left.  A list entry is
 * (b * heads + h) * q_tiles + query tile. */
DEV bool item_walk_next(item_walk &walk, const work_order &o, work_item &w)
{
    if (walk.k >= walk.end) return false;
    if (walk.list) {
        const int e = __ldg(walk.list + walk.k++), bh = e / o.q_tiles;
        w.m0 = (e - bh * o.q_tiles) * BM;
        w.h = bh % o.heads;
        w.b = bh / o.heads;
    } else {
        w = work_item_at(walk.k, o);
        walk.k += gridDim.x;
    }
    return true;
}
