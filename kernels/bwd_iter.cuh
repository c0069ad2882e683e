/* kernels/bwd_iter.cuh: main's iteration over the query tiles that reach
 * its KV tile (the transpose of the forward's, bands_q_tiles on the host),
 * the slots of the pipeline and the loads of a step.  L: the layout of the
 * Q and dO tiles (pad_tiles or sw128_tiles). */
#pragma once
#include "bwd_common.cuh"

/* ==== main: the query tiles that reach a KV tile ====
 * The transpose of the forward's plan, mirroring bands_q_tiles() in codegen/bands.c line
 * for line, for the GROUP heads of the kv head in turn: interval [lo, hi) of a head reaches
 * rows i in [n0 + lo, n_last + hi - 1] (n_last: the tile's last key < n), clipped to n.
 * Ascending distance is ascending row, so the intervals go first to last, and `next` (the
 * first query tile this head has not visited) keeps a tile that two intervals share from
 * coming twice.  Every tile inside a range has an allowed pair, so none is SKIP.  Each
 * thread steps its own copy of the cursor (all copies agree: the inputs are the same for
 * the whole block), so every thread knows which rows to load without a barrier. */
struct bwd_cursor {
    int r;          /* query head within the kv group; GROUP when done */
    int k;          /* interval of head r */
    int t, t_end;   /* next query tile of interval k's range, and its last */
    int next;       /* first query tile head r has not visited */
};

DEV void bwd_cursor_init(bwd_cursor &c) { c.r = 0; c.k = -1; c.t = 0; c.t_end = -1; c.next = 0; }

/* The next (head r, query tile mt) that reaches keys [n0, n0 + BN); false when none is
 * left.  rows: the band table rows of the group's heads. */
DEV bool bwd_cursor_next(bwd_cursor &c, const int *rows, int n0, int n, int &r, int &mt)
{
    const int n_last = min(n0 + BN, n) - 1;
    for (;;) {
        if (c.t <= c.t_end) {
            r = c.r;
            mt = c.t++;
            return true;
        }
        c.next = max(c.next, c.t_end + 1);   /* interval k is done (t_end = -1: it was empty) */
        ++c.k;
        while (c.r < GROUP && c.k >= min(rows[c.r * BAND_STRIDE], MAX_INTERVALS)) {
            ++c.r;                          /* head r is done: the next one starts afresh */
            c.k = 0;
            c.next = 0;
        }
        if (c.r >= GROUP) return false;
        const int *row = rows + c.r * BAND_STRIDE;
        const int i_lo = n0 + row[1 + 2 * c.k];
        const int i_hi = min(n_last + row[2 + 2 * c.k] - 1, n - 1);
        c.t_end = i_lo <= i_hi ? i_hi / BM : -1;
        c.t = max(i_lo / BM, c.next);
    }
}

/* The same visits, each head's in descending query tile (the ws kernel's deterministic mode,
 * bwd_ws.cuh: there KV tile j adds after the tiles below it, and walking each head's query
 * tiles from the last lets tile j - 1 meet a query tile BN / BM steps before tile j does, as
 * the ascending walk lets tile j + 1 for main_sem's order).  The heads in ascending order,
 * each head's intervals from the last (highest rows) to the first, each range from its last
 * tile down; `next` is then the lowest query tile this head has visited, so that a tile two
 * intervals share comes once.  bwd_cursor_init_desc starts it. */
DEV void bwd_cursor_init_desc(bwd_cursor &c) { c.r = -1; c.k = 0; c.t = -1; c.t_end = 0; c.next = 0; }

DEV bool bwd_cursor_next_desc(bwd_cursor &c, const int *rows, int n0, int n, int &r, int &mt)
{
    const int n_last = min(n0 + BN, n) - 1;
    for (;;) {
        if (c.t >= c.t_end) {
            r = c.r;
            mt = c.t--;
            return true;
        }
        --c.k;
        while (c.r < GROUP && c.k < 0) {   /* head r is done: the next one starts afresh */
            ++c.r;
            c.k = c.r < GROUP ? min(rows[c.r * BAND_STRIDE], MAX_INTERVALS) - 1 : 0;
            c.next = 0x7fffffff;
        }
        if (c.r >= GROUP) return false;
        const int *row = rows + c.r * BAND_STRIDE;
        const int i_lo = n0 + row[1 + 2 * c.k];
        const int i_hi = min(n_last + row[2 + 2 * c.k] - 1, n - 1);
        /* Tiles [t_end, t], none visited yet; an empty range (t < t_end) leaves next as it is. */
        const bool any = i_lo <= i_hi;
        c.t_end = any ? i_lo / BM : c.next;
        c.t = min(any ? i_hi / BM : 0x7fffffff, c.next - 1);
        c.next = min(c.next, c.t_end);
    }
}

/* A stage of main: the query tile whose Q, dO, lse2 and delta rows it holds, and that
 * head's intervals (unused slots [0, 0)).  Written by the threads that issue the loads,
 * read by everyone after the barrier that also makes the loads visible. */
struct bwd_slot {
    int mt;                         /* query tile: rows mt * BM .. */
    int r;                          /* query head within the kv group */
    int count;                      /* intervals of that head */
    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];
};

/* How rows [i0, i0 + ni) meet keys [j0, j0 + nj), both clipped to n (codegen/bands.c:
 * bands_tile_kind): their distances fill [i0 - j_last, i_last - j0], every value between.
 *   TILE_SKIP     nothing allowed (or no row or no key below n);
 *   TILE_FULL     one interval holds the whole range and no row or key reaches n;
 *   TILE_PARTIAL  otherwise: the mask decides per element.
 * A tile with keys past n is never FULL: their zero-filled keys score 0 and would get a
 * nonzero P.  Rows past n would be harmless (their lse2 is +inf) but are PARTIAL too. */
DEV int bwd_tile_kind(const bwd_slot &s, int i0, int ni, int j0, int nj, int n)
{
    const int i_last = min(i0 + ni, n) - 1, j_last = min(j0 + nj, n) - 1;
    if (i_last < i0 || j_last < j0) return TILE_SKIP;
    const int d_lo = i0 - j_last, d_hi = i_last - j0;
    /* Every bound loaded at once, used or not (a slot holds all MAX_INTERVALS; unused ones
     * are [0, 0)), and combined without branches: one round trip to shared memory.  With
     * `used && ...` the loads sat behind branches on count, one after the other, and in the
     * ws backward this took longer than the S^T product it overlaps (ncu, session 10: about
     * 7% of the stall samples). */
    const int count = s.count;
    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];
#pragma unroll
    for (int k = 0; k < MAX_INTERVALS; ++k) {
        lo[k] = s.lo[k];
        hi[k] = s.hi[k];
    }
    bool any = false, full = false;
#pragma unroll
    for (int k = 0; k < MAX_INTERVALS; ++k) {
        const bool used = k < count;
        any |= used & (d_lo < hi[k]) & (d_hi >= lo[k]);
        full |= used & (lo[k] <= d_lo) & (d_hi < hi[k]);
    }
    if (!any) return TILE_SKIP;
    return full && i0 + ni <= n && j0 + nj <= n ? TILE_FULL : TILE_PARTIAL;
}

/* Start the loads of query tile mt of head kvh * GROUP + r into one stage (Q and dO tiles,
 * lse2 and delta rows) and fill its slot. */
template <class L>
DEV void bwd_issue(const sp_bwd_kparams &p, bwd_slot &slot, u32 sQs, u32 sdOs, u32 sLs, u32 sDs, const int *rows,
                   int b, int kvh, int r, int mt, int n, int tid)
{
    const int h = kvh * GROUP + r, m0 = mt * BM;
    bwd_load_rows<BM, THREADS, L>(sQs, (const elem_t *)p.q + b * p.q_sb + h * p.q_sh, p.q_sn, m0, n, tid);
    bwd_load_rows<BM, THREADS, L>(sdOs, (const elem_t *)p.dout + b * p.do_sb + h * p.do_sh, p.do_sn, m0, n, tid);
    const long long w = b * p.ws_sb + h * p.ws_sh + m0;
    bwd_load_floats<BM, THREADS>(sLs, (const float *)p.lse2 + w, tid);
    bwd_load_floats<BM, THREADS>(sDs, (const float *)p.delta + w, tid);
    const int *row = rows + r * BAND_STRIDE;
    if (tid == 0) {
        slot.mt = mt;
        slot.r = r;
        slot.count = min(row[0], MAX_INTERVALS);
    }
    if (tid < MAX_INTERVALS) {
        slot.lo[tid] = row[1 + 2 * tid];
        slot.hi[tid] = row[2 + 2 * tid];
    }
}

/* The cursor's next query tile -> stage st (sQ, sdO, sL, sD: stage 0's tiles and rows) and its
 * slot, as one commit group (an empty one when no tile is left, so that wait counts stay
 * fixed); 1 if a tile was issued. */
template <class L>
DEV int bwd_prefetch(const sp_bwd_kparams &p, bwd_cursor &cur, bwd_slot &slot, int st, u32 sQ, u32 sdO, u32 sL,
                     u32 sD, const int *rows, int b, int kvh, int n0, int n, int tid)
{
    int r, mt;
    const bool any = bwd_cursor_next(cur, rows, n0, n, r, mt);
    if (any)
        bwd_issue<L>(p, slot, sQ + st * Q_TILE_BYTES, sdO + st * Q_TILE_BYTES, sL + st * BM * 4, sD + st * BM * 4, rows,
                  b, kvh, r, mt, n, tid);
    cp_async_commit();
    return any ? 1 : 0;
}

/* ==== main's start, the same on both MMA kinds ====
 * A block of main: keys [n0, n0 + BN) of kv head kvh in batch b (key0: this warp's first key);
 * rows: the band table rows of the kv head's GROUP query heads.  blockIdx.x counts KV tiles
 * up from the first, or with DESCENDING (main_sem, bwd_order.cuh) down from the sequence's
 * last: x = 0 is tile ceil(n / BN) - 1, and x past the sequence's tiles gets n0 = n, which
 * returns at once. */
struct bwd_block {
    int tid, warp, lane, n, n0, kvh, b, key0;
    const int *rows;
};

template <bool DESCENDING = false>
DEV bwd_block bwd_block_of(const sp_bwd_kparams &p)
{
    bwd_block k;
    k.tid = threadIdx.x;
    k.warp = k.tid / 32;
    k.lane = k.tid % 32;
    k.n = p.seqlen;
    if constexpr (DESCENDING) {
        const int tiles = (k.n + BN - 1) / BN;
        k.n0 = (int)blockIdx.x < tiles ? (tiles - 1 - (int)blockIdx.x) * BN : k.n;
    } else {
        k.n0 = blockIdx.x * BN;
    }
    k.kvh = blockIdx.y;
    k.b = blockIdx.z;
    k.key0 = k.n0 + 16 * k.warp;
    k.rows = (const int *)p.bands + (p.head_offset + k.kvh * GROUP) * BAND_STRIDE;
    return k;
}

/* 1. The block's K and V tiles -> shared memory (async: they land with the first stage's group).
 * 2. The first STAGES - 1 query tiles of the cursor (into slots and their stages), one commit
 * group each (empty groups too, so that the wait counts of the loop stay fixed).  Returns the
 * tiles issued.  L: the layout of all these tiles. */
template <class L>
DEV int bwd_main_start(const sp_bwd_kparams &p, const bwd_block &blk, bwd_cursor &cur, bwd_slot (&slots)[STAGES],
                       u32 sK, u32 sV, u32 sQ, u32 sdO, u32 sL, u32 sD)
{
    const elem_t *k = (const elem_t *)p.k + blk.b * p.k_sb + blk.kvh * p.k_sh;   /* key j at k + j * p.k_sn */
    const elem_t *v = (const elem_t *)p.v + blk.b * p.v_sb + blk.kvh * p.v_sh;
    bwd_load_rows<BN, THREADS, L>(sK, k, p.k_sn, blk.n0, blk.n, blk.tid);
    bwd_load_rows<BN, THREADS, L>(sV, v, p.v_sn, blk.n0, blk.n, blk.tid);
    bwd_cursor_init(cur);
    int issued = 0;
#pragma unroll 1
    for (int st = 0; st < STAGES - 1; ++st)
        issued += bwd_prefetch<L>(p, cur, slots[st], st, sQ, sdO, sL, sD, blk.rows, blk.b, blk.kvh, blk.n0, blk.n, blk.tid);
    return issued;
}
