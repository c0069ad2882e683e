/* The warp-specialized forward for sm_90a: FlashAttention-3's structure on
 * the band plan.
 *
 *   warpgroup 0, the producer (one thread issues everything): for each work
 *       item, Q by TMA into one of two Q buffers, then the K and V tiles of
 *       the item's band plan into rings of STAGES stages guarded by
 *       mbarriers (kernels/mbarrier.cuh); it runs ahead of the math by up to
 *       STAGES tiles and one whole Q tile.
 *   warpgroups 1..CONSUMERS, the consumers: 64 query rows each of the same
 *       BM-row tile.  Per KV tile: S = Q K^T (wgmma, both from shared
 *       memory), mask on PARTIAL tiles only (which: decided while S runs,
 *       ws_tile_of), online softmax, O += P V (wgmma, P from registers).
 *       Inside a warpgroup the softmax of tile it overlaps P V of tile
 *       it - 1 on the tensor cores (as in kernels of the wgmma family), and
 *       O is rescaled by tile it - 1's factors while S of tile it runs,
 *       just before P V of it - 1 is issued (FlashAttention-3's order: the
 *       rescale is off the path from P V's end to the next issue).  K is
 *       released as soon as S is done, V once P V is.  Epilogue: O / l
 *       goes into this warpgroup's own 64 rows of the Q buffer (its last S
 *       has read them), one thread stores them by TMA and frees the buffer
 *       once the store has read it; the rest of the warpgroup goes on with
 *       the next item, whose Q is already in the other buffer.
 *   ping-pong: the consumers take turns to issue their wgmma (named
 *       barriers, a token passed round), so that one's softmax runs while
 *       the other's matrix products have the tensor cores.
 *   persistent: gridDim.x <= SMs; kernels/scheduler.cuh orders the items.
 *   packed sequences (seq.cuh): an item is a query tile of one sequence;
 *       the TMA maps span the packed [total, heads, D] tensors (batch 1),
 *       so the item's rows are at start + m0.  Items past their sequence's
 *       end are skipped by every role; K and V rows past it (the next
 *       sequence's) are masked like keys past N; and O's store must not
 *       reach the next sequence: a consumer's 64 rows that cross its end
 *       are stored with ordinary 16-byte stores of the rows inside, the
 *       others by TMA (ws_epilogue).
 *
 * The registers go where the work is: setmaxnreg leaves the producer
 * PRODUCER_REGS and gives each consumer thread CONSUMER_REGS.
 *
 * Needs from the translation unit: the constants (HEAD_DIM, BM, BN, STAGES,
 * GROUP, CONSUMERS, THREADS, PRODUCER_REGS, CONSUMER_REGS, BAND_STRIDE) and
 * sp_kparams. */
#pragma once
#include "attn_wgmma.cuh"
#include "bands.cuh"
#include "softmax.cuh"
#include "mbarrier.cuh"
#include "tma.cuh"
#include "scheduler.cuh"
#include "seq.cuh"

enum : int {
    WG_THREADS = 128,
    CONSUMER_WARPS = 4 * CONSUMERS,
    COL_BLOCKS = HEAD_DIM / 64,                     /* TMA boxes per tile: 64 values wide */
    Q_BUFS = 2,                                     /* Q tiles: the current item's and the next */
    BAR_WG = 1,                                     /* named barriers: BAR_WG + c, a consumer's own */
    BAR_TURN = 4,                                   /* BAR_TURN + c: consumer c's turn at the tensor cores */
};
static_assert(THREADS == WG_THREADS * (1 + CONSUMERS), "one producer warpgroup and CONSUMERS consumers");
static_assert(BM == 64 * CONSUMERS, "each consumer owns 64 query rows");
static_assert(HEAD_DIM % 64 == 0 && BN % 16 == 0 && BN <= 256 && BM <= 256, "TMA boxes: 64 values, <= 256 rows");

/* Barriers and band plans, in static shared memory. */
struct ws_shared {
    unsigned long long q_full[Q_BUFS], q_empty[Q_BUFS];
    unsigned long long k_full[STAGES], k_empty[STAGES], v_full[STAGES], v_empty[STAGES];
    band_plan plan[1 + CONSUMERS];   /* the producer's, then each consumer's own copy */
};

/* The dynamic shared memory, from a 1024-byte aligned base: two Q tiles
 * (which also stage O), the K and V rings.  Tiles are swizzled column
 * blocks (tile_off<ROWS>), as TMA writes them and wgmma reads them. */
struct ws_tiles {
    u32 q, k, v;   /* Q buffer qb at q + qb * Q_TILE_BYTES */
};

DEV ws_tiles ws_tiles_at(unsigned char *smem)
{
    ws_tiles t;
    t.q = (smem_addr(smem) + 1023u) & ~1023u;
    t.k = t.q + Q_BUFS * Q_TILE_BYTES;
    t.v = t.k + STAGES * KV_TILE_BYTES;
    return t;
}

DEV u32 bar(const unsigned long long &b) { return smem_addr(&b); }

/* A work item of the schedule, with its sequence (seq.cuh): s.start, the first row of
 * sequence w.b in the packed tensors (0 for a uniform batch), s.n its length; tb
 * the batch coordinate of the TMA maps (0 when packed: the maps have one batch). */
struct ws_item {
    work_item w;
    seq_span s;
    int tb;
};

DEV ws_item ws_item_of(const sp_kparams &p, const work_item &w)
{
    ws_item it;
    it.w = w;
    it.s = seq_span_of(p, it.w.b);
    it.tb = p.cu_seqlens ? 0 : it.w.b;
    return it;
}

/* The band plan of item w (one thread builds it): its sequence's band table row. */
DEV void ws_plan(band_plan &plan, const sp_kparams &p, const ws_item &it)
{
    const int *table = (const int *)p.bands + (long long)it.w.b * p.bands_sb;
    band_plan_build(plan, table + (p.head_offset + it.w.h) * BAND_STRIDE, it.w.m0, it.s.n);
}

/* ==== A KV tile of the plan: its first key, and whether the mask is needed ====
 * Both depend on the plan, the tile and the rows only, not on the scores, so a consumer
 * works them out right after issuing the tile's S product (ws_tile_of), while the tensor
 * cores compute S and the warp would only wait, and keeps two values (n0 and a
 * predicate) until the softmax.  Until session 11 they came after the wait for S, between
 * the two products: a loop over the plan's runs (band_tile_at: a load, a compare and a
 * branch per run), then band_tile_kind for the warpgroup's rows and for the warp's, each
 * a chain of shared-memory loads behind branches (ncu of the dense forward at
 * (1,16,16,16384,128), session 10: about 5% of the stall samples).  Now:
 *   - the dense baseline needs no load: tile it is it * BN, FULL below a bound fixed per
 *     item (ws_rows_of), one compare;
 *   - band patterns load every bound at once, unused ones too, with no branch on count
 *     (ws_bounds_of, as the backward's bwd_tile_kind), at the top of the iteration, so
 *     the values are there by the time S is issued: compares that wait on fresh loads are
 *     scheduled after the wait for S again, where the loads' latency is on the path;
 *   - one row range per warp and item decides, not two (ws_rows_of).
 * tests/unit/test_ws_kind.c checks the tiles and decisions against session 10's rule. */

/* The plan's bounds and runs in registers.  The dense plan needs none. */
struct ws_bounds {
    int count;
    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];
    int first[MAX_INTERVALS], len[MAX_INTERVALS];   /* the runs */
};

DEV ws_bounds ws_bounds_of(const band_plan &bp)
{
    ws_bounds b = {};   /* zeros where the dense plan fills nothing */
    if constexpr (!BANDS_DENSE) {
        b.count = bp.count;
#pragma unroll
        for (int k = 0; k < MAX_INTERVALS; ++k) {
            b.lo[k] = bp.lo[k];
            b.hi[k] = bp.hi[k];
            b.first[k] = bp.run_first[k];
            b.len[k] = bp.run_len[k];
        }
    }
    return b;
}

/* The it-th KV tile's first key, 0 <= it < the plan's total: band_tile_at without its
 * loop.  Run r starts at plan index start_r = len[0] + ... + len[r - 1]; the tile is in
 * the last run with start_r <= it.  Unused runs (length 0) come after the used ones, where
 * start_r = total > it, so they are never picked.  The dense plan (BANDS_DENSE: the one
 * interval [0, n), n above every row) is one run from tile 0: tile it.  The producer and
 * the consumers both take their tiles from here, so they agree on the order. */
DEV int ws_tile_n0(const ws_bounds &b, int it)
{
    if constexpr (BANDS_DENSE) {
        return it * BN;
    } else {
        int tile = b.first[0] + it, start = b.len[0];
#pragma unroll
        for (int r = 1; r < MAX_INTERVALS; ++r) {
            if (it >= start) tile = b.first[r] + it - start;
            start += b.len[r];
        }
        return tile * BN;
    }
}

/* The rows whose tile kind decides a warp's mask, fixed for a work item.  The kernels of
 * the wgmma family skip the mask where the tile is FULL for the warpgroup's rows, or else
 * for the warp's (band_tile_kind each; a warpgroup past n masks every tile).  The warp's
 * rows lie inside the warpgroup's, so a tile FULL for the warpgroup is FULL for them too:
 * while the warp has a row below n its own rows decide alone; a warp past n follows its
 * warpgroup's rows (its rows are never stored; the decision is kept as it was). */
struct ws_rows {
    int lo, hi;       /* rows [lo, hi] (below n) decide */
    int n_full;       /* keys past n_full - 1 are never FULL: n, or 0 when no row decides */
    int full_tiles;   /* BANDS_DENSE: tiles 0 .. full_tiles - 1 are FULL for rows [lo, hi] */
};

DEV ws_rows ws_rows_of(int wg_row0, int row0, int n)
{
    ws_rows r;
    const bool own = row0 < n, any = wg_row0 < n;
    r.lo = own ? row0 : wg_row0;
    r.hi = min(r.lo + (own ? 15 : 63), n - 1);
    r.n_full = any ? n : 0;
    /* Dense, the interval [0, n): band_tile_kind's distances [lo - j_hi, hi - n0] lie in
     * it iff lo >= j_hi (hi - n0 < n always).  FULL also wants no key past n, so j_hi =
     * n0 + BN - 1, and lo >= n0 + BN - 1 with lo < n already gives n0 + BN <= n.  So tile
     * t is FULL iff (t + 1) * BN <= lo + 1. */
    r.full_tiles = any ? (r.lo + 1) / BN : 0;
    return r;
}

/* KV tile it of the plan: its first key and whether this warp masks its scores (not FULL
 * for the rows of ws_rows_of). */
struct ws_tile {
    int n0;
    bool mask;
};

DEV ws_tile ws_tile_of(const ws_bounds &b, int it, const ws_rows &rows)
{
    ws_tile t;
    t.n0 = ws_tile_n0(b, it);
    if constexpr (BANDS_DENSE) {
        t.mask = it >= rows.full_tiles;
    } else {
        /* band_tile_kind's FULL for a tile with no key past n (j_hi = n0 + BN - 1): one
         * interval holds the distances [lo - j_hi, hi - n0]; such an interval also meets
         * them, so `any` adds nothing. */
        const int d_lo = rows.lo - (t.n0 + BN - 1), d_hi = rows.hi - t.n0;
        bool full = false;
#pragma unroll
        for (int k = 0; k < MAX_INTERVALS; ++k) full |= (k < b.count) & (b.lo[k] <= d_lo) & (d_hi < b.hi[k]);
        /* Left alone, the compiler sinks these compares to their use, the branch on the mask
         * after the wait for S: the empty asm (volatile, so kept in order with the wgmma
         * wait) needs the result before it.  The dense test, one compare with no load, ptxas
         * issues early by itself. */
        int mask = !full | (t.n0 + BN > rows.n_full);
        asm volatile("" : "+r"(mask));
        t.mask = mask;
    }
    return t;
}

/* ==== The producer: one thread ==== */

/* Load one KV tile (rows n0 .. n0 + BN - 1 of kv head kvh, batch coordinate b,
 * of the map) into `ring`'s stage once the consumers have emptied it. */
DEV void ws_load_kv(u32 ring, const tma_map &map, unsigned long long *full, unsigned long long *empty, int stage,
                    u32 phase, int n0, int kvh, int b)
{
    mbar_wait(bar(empty[stage]), phase ^ 1);
    mbar_arrive_expect_tx(bar(full[stage]), KV_TILE_BYTES);
#pragma unroll
    for (int cb = 0; cb < COL_BLOCKS; ++cb)
        tma_load_4d(ring + stage * KV_TILE_BYTES + cb * BN * SW_ROW, map, bar(full[stage]), 64 * cb, n0, kvh, b);
}

DEV void ws_producer(const sp_kparams &p, const fwd_tma_maps &tm, ws_shared &S, const ws_tiles &T, int items,
                     const work_order &order)
{
    int q_count = 0, kv_count = 0;   /* Q loads and KV tiles issued so far: the rings' iterations */
    item_walk walk = item_walk_of((const void *)p.sched, items);
    for (work_item next; item_walk_next(walk, order, next);) {
        const ws_item item = ws_item_of(p, next);
        const work_item &w = item.w;
        if (w.m0 >= item.s.n) continue;   /* past a packed sequence's end: no item */
        ws_plan(S.plan[0], p, item);
        const int ntiles = S.plan[0].total;
        if (ntiles == 0) continue;   /* no key for any row: the consumers write O = 0 without Q */
        const int kvh = w.h / GROUP, row0 = item.s.start, tb = item.tb;

        const int qb = q_count % Q_BUFS;
        mbar_wait(bar(S.q_empty[qb]), ((q_count / Q_BUFS) & 1) ^ 1);   /* its O of two items ago is stored */
        mbar_arrive_expect_tx(bar(S.q_full[qb]), Q_TILE_BYTES);
#pragma unroll
        for (int cb = 0; cb < COL_BLOCKS; ++cb)
            tma_load_4d(T.q + qb * Q_TILE_BYTES + cb * BM * SW_ROW, tm.q, bar(S.q_full[qb]), 64 * cb, row0 + w.m0, w.h, tb);
        ++q_count;

#pragma unroll 1   /* without band_tile_at's loop inside, the compiler would unroll this 4 times */
        for (int it = 0; it < ntiles; ++it, ++kv_count) {
            const int stage = kv_count % STAGES, n0 = ws_tile_n0(ws_bounds_of(S.plan[0]), it);
            const u32 phase = (kv_count / STAGES) & 1;
            ws_load_kv(T.k, tm.k, S.k_full, S.k_empty, stage, phase, row0 + n0, kvh, tb);
            ws_load_kv(T.v, tm.v, S.v_full, S.v_empty, stage, phase, row0 + n0, kvh, tb);
        }
    }
}

/* ==== The consumers ==== */

/* The band mask of a PARTIAL tile, as one bit per score of the lane's row.
 * Lane l holds in s[0][nb] columns c0 + 8nb + {0, 1} (c0 = 2(l % 4)) of rows
 * i0 = row0 + l / 4 (elements 0, 1) and i0 + 8 (elements 2, 3): score 2nb + e
 * of a row, COLS = BN / 4 of them.  For each interval [lo, hi) the allowed
 * columns of row i are [A, B] = [i - hi + 1 - n0, i - lo - n0], clipped to
 * keys 0 .. n - 1; the lane's scores in columns below X number
 * cols_below(X - c0) (two in every 8), so the interval's scores are the bits
 * [cols_below(A - c0), cols_below(B + 1 - c0)).  The intervals' arithmetic
 * runs once per row; per score there is one bit test and one select (the
 * compare per interval it replaces cost about three instructions each, and
 * the consumers are bound by instruction issue: NOTES-fwd-ws.md, session 7). */
template <int W> struct mask_word { typedef u32 type; };
template <> struct mask_word<64> { typedef unsigned long long type; };
enum : int { MASK_COLS = BN / 4, MASK_BITS = MASK_COLS <= 32 ? 32 : 64 };
typedef mask_word<MASK_BITS>::type mask_t;
static_assert(MASK_COLS <= 64, "a row's scores fit one 64-bit mask");

DEV int cols_below(int x)
{
    if (x <= 0) return 0;
    return min(2 * (x >> 3) + min(x & 7, 2), (int)MASK_COLS);
}
DEV mask_t low_bits(int k) { return k >= MASK_BITS ? ~(mask_t)0 : ((mask_t)1 << k) - 1; }

DEV void ws_mask(float (&s)[1][BN / 8][4], const band_plan &bp, int i0, int n0, int n, int lane)
{
    const int c0 = 2 * (lane & 3);
    mask_t allow[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int i = i0 + 8 * r;
        allow[r] = 0;
#pragma unroll
        for (int k = 0; k < MAX_INTERVALS; ++k) {
            const int a = max(i - bp.hi[k] + 1, 0) - n0, b = min(i - bp.lo[k], n - 1) - n0;
            const int first = cols_below(a - c0), end = cols_below(b + 1 - c0);
            if (k < bp.count && first < end) allow[r] |= low_bits(end) & ~low_bits(first);
        }
    }
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb)
#pragma unroll
        for (int e = 0; e < 2; ++e)
#pragma unroll
            for (int r = 0; r < 2; ++r)
                if (!(allow[r] & ((mask_t)1 << (2 * nb + e)))) s[0][nb][2 * r + e] = neg_inf();
}

/* Lane 0 of each warp signals a ring barrier: the warp's reads are done
 * (wgmma_wait returned, so the warpgroup's asynchronous reads are too). */
DEV void ws_release(u32 b, int lane)
{
    if (lane == 0) mbar_arrive(b);
}

/* LSE of this thread's two rows (quad lanes t == 0 write) and the factors
 * 1 / l that turn acc into O; rows with no key: LSE = -inf, O = 0. */
DEV void ws_lse(const sp_kparams &p, const ws_item &it, int row0, const float (&m)[1][2], const float (&l)[1][2],
                float (&inv)[2], int lane)
{
    const work_item &w = it.w;
    float *lse = (float *)p.lse + w.b * p.lse_sb + w.h * p.lse_sh + it.s.start;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(l[0][r]);
        inv[r] = sum > 0.f ? 1.f / sum : 0.f;
        const int i = row0 + lane / 4 + 8 * r;
        if (lane % 4 == 0 && i < it.s.n) lse[i] = sum > 0.f ? (m[0][r] * p.scale_log2 + log2_approx(sum)) * LN2 : neg_inf();
    }
}

/* O = acc / l into this warpgroup's 64 rows of Q buffer qb (its last S has
 * read them), then one thread stores them by TMA, waits until the store has
 * read them and frees the buffer for the producer.  Packed sequences: the
 * map ends at the last sequence's end, not this one's, so 64 rows that
 * cross the sequence's end would overwrite the next sequence's first rows
 * (another item's, maybe stored already).  Those rows (one tile per
 * sequence and head) go out by ordinary coalesced stores of the rows inside
 * instead, read from the same staged tile; the 128 threads then meet once
 * more before the buffer is freed. */
DEV void ws_epilogue(const sp_kparams &p, const fwd_tma_maps &tm, ws_shared &S, const ws_item &it, int c, u32 sQ,
                     int qb, const float (&acc)[1][HEAD_DIM / 8][4], const float (&m)[1][2], const float (&l)[1][2],
                     int tid_c)
{
    const work_item &w = it.w;
    const int warp = tid_c / 32, lane = tid_c % 32, g = lane >> 2, t = lane & 3;
    const int wg_row0 = w.m0 + 64 * c, n = it.s.n;
    float inv[2];
    ws_lse(p, it, wg_row0 + 16 * warp, m, l, inv, lane);
    const u32 sO = sQ + 64 * c * SW_ROW;   /* rows 64c.. of every column block of the Q tile */
    const int trow = 16 * warp + g;
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db) {
        st_shared_u32(sO + tile_off<BM>(trow, db) + 4 * t, pack2(acc[0][db][0] * inv[0], acc[0][db][1] * inv[0]));
        st_shared_u32(sO + tile_off<BM>(trow + 8, db) + 4 * t, pack2(acc[0][db][2] * inv[1], acc[0][db][3] * inv[1]));
    }
    fence_proxy_async();             /* ordinary stores, read next by the copy engine */
    named_sync(BAR_WG + c, WG_THREADS);
    if (p.cu_seqlens && n - wg_row0 < 64) {   /* warpgroup-uniform: the rows cross the sequence's end */
        elem_t *o = (elem_t *)p.o + w.h * p.o_sh + (long long)it.s.start * p.o_sn;
        for (int k = tid_c; k < 64 * CHUNKS; k += WG_THREADS) {
            const int row = k / CHUNKS, chunk = k % CHUNKS;
            if (wg_row0 + row < n)
                *(u32x4 *)(o + (long long)(wg_row0 + row) * p.o_sn + chunk * 8) = ld_shared_u32x4(sO + tile_off<BM>(row, chunk));
        }
        named_sync(BAR_WG + c, WG_THREADS);   /* every read of the buffer is done */
        if (tid_c == 0) mbar_arrive(bar(S.q_empty[qb]));
        return;
    }
    if (tid_c == 0) {
        if (wg_row0 < n) {
#pragma unroll
            for (int cb = 0; cb < COL_BLOCKS; ++cb)
                tma_store_4d(tm.o, sO + cb * BM * SW_ROW, 64 * cb, it.s.start + wg_row0, w.h, it.tb);
            tma_store_commit();
            tma_store_wait_read<0>();
        }
        mbar_arrive(bar(S.q_empty[qb]));
    }
}

/* An item none of whose rows has a key: O = 0 and LSE = -inf, stored
 * directly (there is no Q tile to stage through). */
DEV void ws_empty_item(const sp_kparams &p, const ws_item &it, int c, int tid_c)
{
    const work_item &w = it.w;
    const int wg_row0 = w.m0 + 64 * c, n = it.s.n;
    float *lse = (float *)p.lse + w.b * p.lse_sb + w.h * p.lse_sh + it.s.start;
    elem_t *o = (elem_t *)p.o + w.b * p.o_sb + w.h * p.o_sh + (long long)it.s.start * p.o_sn;
    const u32x4 zero = { 0u, 0u, 0u, 0u };
    for (int k = tid_c; k < 64 * CHUNKS; k += WG_THREADS) {
        const int i = wg_row0 + k / CHUNKS;
        if (i < n) *(u32x4 *)(o + (long long)i * p.o_sn + (k % CHUNKS) * 8) = zero;
    }
    if (tid_c < 64 && wg_row0 + tid_c < n) lse[wg_row0 + tid_c] = neg_inf();
}

/* The consumers' turns at the tensor cores (FlashAttention-3's ping-pong):
 * consumer c waits for its turn, issues its wgmma, then hands the turn to
 * the next.  Each barrier meets 2 x 128 threads: the waiting consumer and
 * the one that handed over.  Consumer 0 hands the first turn to itself. */
DEV void turn_wait(int c)
{
    if (CONSUMERS > 1) named_sync(BAR_TURN + c, 2 * WG_THREADS);
}
DEV void turn_pass(int c)
{
    if (CONSUMERS > 1) named_arrive(BAR_TURN + (c + 1) % CONSUMERS, 2 * WG_THREADS);
}

/* Consumer c (0 .. CONSUMERS-1) of the CTA: rows 64c .. 64c + 63 of every
 * query tile it is given. */
DEV void ws_consumer(const sp_kparams &p, const fwd_tma_maps &tm, ws_shared &S, const ws_tiles &T, int items,
                     const work_order &order, int c)
{
    const int tid_c = threadIdx.x - WG_THREADS * (1 + c);
    const int warp = tid_c / 32, lane = tid_c % 32;
    band_plan &plan = S.plan[1 + c];
    /* Descriptors of stage 0's K and V; other stages add their byte offset / 16. */
    const u64 dk0 = smem_desc(T.k, 16, 1024);
    const u64 dv0 = smem_desc(T.v, BN * SW_ROW, 1024);
    int q_count = 0, kv_count = 0;
    if (c == 0) turn_pass(CONSUMERS - 1);   /* the first turn is consumer 0's */

    item_walk walk = item_walk_of((const void *)p.sched, items);
    for (work_item next; item_walk_next(walk, order, next);) {
        const ws_item item = ws_item_of(p, next);
        const work_item &w = item.w;
        const int n = item.s.n;   /* the item's sequence's length */
        if (w.m0 >= n) continue;  /* CTA-uniform: past a packed sequence's end, as the producer */
        if (tid_c == 32) ws_plan(plan, p, item);   /* not thread 0, which may still wait for a store */
        named_sync(BAR_WG + c, WG_THREADS);
        const int ntiles = plan.total;
        if (ntiles == 0) {   /* warpgroup-uniform; the producer loads nothing for it either */
            ws_empty_item(p, item, c, tid_c);
            named_sync(BAR_WG + c, WG_THREADS);   /* the plan is read; thread 32 may rebuild it */
            continue;
        }
        const int wg_row0 = w.m0 + 64 * c, row0 = wg_row0 + 16 * warp;
        const ws_rows rows = ws_rows_of(wg_row0, row0, n);

        float acc[1][HEAD_DIM / 8][4], m[1][2], l[1][2];
#pragma unroll
        for (int db = 0; db < HEAD_DIM / 8; ++db) acc[0][db][0] = acc[0][db][1] = acc[0][db][2] = acc[0][db][3] = 0.f;
        m[0][0] = m[0][1] = neg_inf();
        l[0][0] = l[0][1] = 0.f;

        /* S of a tile -> P: the mask unless the tile fully allows this warp's
         * rows (decided by ws_tile_of while S ran), then the online softmax. */
        auto scores_to_p = [&](float (&s)[1][BN / 8][4], const ws_tile &tile, float (&alphas)[1][2]) {
            if (tile.mask) ws_mask(s, plan, row0 + lane / 4, tile.n0, n, lane);
            softmax_p(s, m, l, alphas, p.scale_log2);
        };

        const int qb = q_count % Q_BUFS;
        const u32 sQ = T.q + qb * Q_TILE_BYTES;
        const u64 dq = smem_desc(sQ + 64 * c * SW_ROW, 16, 1024);   /* this warpgroup's Q rows */
        mbar_wait(bar(S.q_full[qb]), (q_count / Q_BUFS) & 1);
        ++q_count;
        u32 pf[BN / 16][4];       /* P of the previous tile: the A fragments of O += P V */
        float s[1][BN / 8][4];    /* S, then P, of the current tile */
        float alphas[1][2];

        int stage = kv_count % STAGES;
        u32 phase = (kv_count / STAGES) & 1;
        ws_bounds bounds = ws_bounds_of(plan);
        mbar_wait(bar(S.k_full[stage]), phase);
        turn_wait(c);
        issue_qk(s, dq, dk0 + ((u32)(stage * KV_TILE_BYTES) >> 4));
        turn_pass(c);
        ws_tile tile = ws_tile_of(bounds, 0, rows);   /* while S runs */
        wgmma_wait<0>();
        regs_fence(s[0]);
        ws_release(bar(S.k_empty[stage]), lane);
        scores_to_p(s, tile, alphas);
        pack_p(pf, s);
        int pv_stage = stage;
        u32 pv_phase = phase;
        ++kv_count;
        for (int it = 1; it < ntiles; ++it, ++kv_count) {
            stage = kv_count % STAGES;
            phase = (kv_count / STAGES) & 1;
            bounds = ws_bounds_of(plan);   /* band patterns: the loads land during the waits below */
            mbar_wait(bar(S.k_full[stage]), phase);
            mbar_wait(bar(S.v_full[pv_stage]), pv_phase);
            turn_wait(c);
            issue_qk(s, dq, dk0 + ((u32)(stage * KV_TILE_BYTES) >> 4));       /* S = Q K^T, this tile */
            rescale_o(acc, alphas);   /* the previous tile's factors, while S runs (FlashAttention-3's order) */
            issue_pv(acc, pf, dv0 + ((u32)(pv_stage * KV_TILE_BYTES) >> 4));  /* O += P V, the previous one */
            turn_pass(c);
            tile = ws_tile_of(bounds, it, rows);   /* this tile's n0 and mask, while S runs: off the path after the wait */
            wgmma_wait<1>();   /* S, the older group, is done; P V runs on */
            regs_fence(s[0]);
            ws_release(bar(S.k_empty[stage]), lane);
            scores_to_p(s, tile, alphas);
            wgmma_wait<0>();   /* P V is done: pf may be reused, V released */
            regs_fence(acc[0]);
            ws_release(bar(S.v_empty[pv_stage]), lane);
            pack_p(pf, s);
            pv_stage = stage;
            pv_phase = phase;
        }
        mbar_wait(bar(S.v_full[pv_stage]), pv_phase);
        turn_wait(c);
        rescale_o(acc, alphas);
        issue_pv(acc, pf, dv0 + ((u32)(pv_stage * KV_TILE_BYTES) >> 4));      /* the last tile's P V */
        turn_pass(c);
        wgmma_wait<0>();
        regs_fence(acc[0]);
        ws_release(bar(S.v_empty[pv_stage]), lane);
        ws_epilogue(p, tm, S, item, c, sQ, qb, acc, m, l, tid_c);
    }
    if (tid_c == 0) tma_store_wait<0>();   /* the last stores are done before the CTA ends */
}

/* ==== The kernel body ==== */
DEV void fwd_ws(const sp_kparams &p, const fwd_tma_maps &tm)
{
    extern __shared__ unsigned char smem[];
    __shared__ ws_shared S;
    const ws_tiles T = ws_tiles_at(smem);
    const int n = p.seqlen, q_tiles = (n + BM - 1) / BM;
    const int items = q_tiles * p.heads * p.batch;   /* the host checked it fits */
    const work_order order = work_order_make(q_tiles, p.heads, p.batch, n);

    if (threadIdx.x == 0) {
#pragma unroll
        for (int qb = 0; qb < Q_BUFS; ++qb) {
            mbar_init(bar(S.q_full[qb]), 1);
            mbar_init(bar(S.q_empty[qb]), CONSUMERS);   /* one thread per consumer, after its store */
        }
#pragma unroll
        for (int st = 0; st < STAGES; ++st) {
            mbar_init(bar(S.k_full[st]), 1);
            mbar_init(bar(S.v_full[st]), 1);
            mbar_init(bar(S.k_empty[st]), CONSUMER_WARPS);
            mbar_init(bar(S.v_empty[st]), CONSUMER_WARPS);
        }
        mbar_fence_init();
        tma_prefetch_map(tm.q);
        tma_prefetch_map(tm.k);
        tma_prefetch_map(tm.v);
        tma_prefetch_map(tm.o);
    }
    __syncthreads();

    /* The role: warpgroup-uniform (read through a shuffle so the compiler
     * knows), so that wgmma and setmaxnreg sit on uniform paths. */
    const int wg = __shfl_sync(0xffffffffu, (int)threadIdx.x / WG_THREADS, 0);
    if (wg == 0) {
        regs_dealloc<PRODUCER_REGS>();
        if (threadIdx.x == 0) ws_producer(p, tm, S, T, items, order);
    } else {
        regs_alloc<CONSUMER_REGS>();
        ws_consumer(p, tm, S, T, items, order, wg - 1);
    }
}
