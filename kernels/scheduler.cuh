/* The tile scheduler of the persistent kernels: a launch of at most one CTA
 * per SM walks the work items (query tile, head, batch); CTA c takes items
 * c, c + gridDim.x, c + 2 gridDim.x, ...  Every role of a CTA (producer and
 * consumers) walks the same sequence on its own, so they need no
 * communication about what comes next.
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
 * Needs: common.cuh (DEV) and the constant BM. */
#pragma once
#include "common.cuh"

struct work_item {
    int m0;   /* first query row of the tile */
    int h;    /* query head within the launch */
    int b;    /* batch */
};

/* Item t of q_tiles * heads * batch (t < that product, which the host
 * checks fits an int). */
DEV work_item work_item_at(int t, int q_tiles, int heads, int batch)
{
    const int per_tile = heads * batch;
    const int round = t / per_tile, rest = t - round * per_tile;
    work_item w;
    w.m0 = (q_tiles - 1 - round) * BM;
    w.h = rest % heads;
    w.b = rest / heads;
    return w;
}
