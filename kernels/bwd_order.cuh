/* kernels/bwd_order.cuh: the deterministic backward on wgmma (main_sem,
 * issue 16 item 2): main's bulk reduce-adds of dQ into the fp32
 * accumulator, put in a fixed order by a semaphore per query tile
 * (FlashAttention-3's deterministic backward).  Float addition is not
 * associative, so the atomic-mode sums depend on which CTA comes first;
 * here they do not.
 *
 * Order.  The KV tiles of one (sequence, kv head) that reach query tile mt
 * of head h add their part of its dQ in descending tile index.  In the band
 * cursor (bwd_iter.cuh) KV tile j + 1 meets a given query tile about BN / BM
 * steps before tile j does (its keys are BN later, so rows BN later start
 * its ranges), so a CTA rarely finds the one before it unfinished.  The
 * launch maps blockIdx.x to tiles in descending order (bwd_block_of
 * <true>: x = 0 is the last tile), so every CTA that a CTA waits for has a
 * smaller blockIdx.x in the same (y, z), a smaller linear block index, and
 * was dispatched before it: blocks go out in linear order, and the first
 * unfinished one waits only for finished ones.  No deadlock, whatever the
 * number of resident CTAs (tests/unit/test_dq_order.c simulates it).
 * The warp-specialized kernel (bwd_ws.cuh) takes this order at d128 and its
 * mirror where BN = BM (d64: ascending tiles, each head's query tiles from
 * the last, blocks longest first; WS_DET_ASCENDING), with the rank from
 * bwd_dq_rank_of<true>.
 *
 * Rank.  KV tile j's turn at (h, mt) is rank = the number of tiles j' > j of
 * this sequence (j' < ceil(n / BN); tiles past its end return at once and
 * are not counted) whose cursor visits (h, mt): bwd_dq_rank, in closed form,
 * the host's twin bands_dq_rank (codegen/bands.c), checked against the
 * cursor by brute force.  A CTA walks every head of its kv group, one
 * semaphore per (sequence, head, query tile), so GQA changes nothing.
 *
 * Protocol, per warp.  Warp w of warpgroup wg adds its own 16 rows and
 * DQ_N columns of a query tile, so the adds of one element come from one
 * warp per CTA; every warp of every contributing CTA counts 1 per query tile
 * (rows past n added or not), and a warp's turn at (h, mt) comes when the
 * semaphore reaches rank * WARPS: every warp of every tile before it is done.
 *     the dQ of step s (in step s + 1, or after the loop; bwd_wgmma.cuh's
 *     dq_stage_rows, then dq_add_in_turn):
 *         1. stage the rows in shared memory (once the last adds have read theirs,
 *            as in atomic mode)
 *         2. lane 0 spins (ld.acquire.gpu) until step s's semaphore reaches its
 *            target; __syncwarp; lanes 0..15 fence the async proxy and add
 *         3. at the end of step s + 1 (after its dK product is waited for) or after
 *            the last adds: lanes 0..15 wait until those adds are complete
 *            (cp.async.bulk.wait_group 0: written, not just read) and fence the async
 *            proxy; __syncwarp; lane 0 releases step s's semaphore (red.release.gpu +1)
 * The release comes at the end of the step that made the adds, not at the next adds
 * (session 7's first version: there, the next KV tile, which meets a query tile BN / BM
 * steps after this one, often waited: 1.18x-1.32x of the default's forward+backward, the
 * most at d64 where BN = BM).  By the end of the step the adds have had the dK product's
 * time to reach L2, so the wait for their completion is short.  It cannot deadlock: a CTA
 * gets from its adds of step s to their release through its own barriers and its own waits
 * only, each for CTAs with larger j, which never wait for it; and the last release comes
 * before the CTA exits.
 *
 * Where the turns come from: thread 0 computes the turn of step s (its
 * semaphore and target, its tile, and the semaphore of step s - 1) at the
 * end of step s, from its slot (which the next prefetch overwrites only
 * after the next barrier), into dq_turns[s % 2]; the adds of step s read it
 * after the barrier of step s + 1.  Two entries: a warp late in step s may
 * still read entry (s - 1) % 2 while thread 0 writes entry s % 2.  No
 * register holds a turn, or the KV tile index (dq_kv_tile), across the
 * loop, and one entry serves a step's wait and the release before it: main
 * is at 255 registers, and one more value kept through the loop spills.
 *
 * Where the semaphores live: int32 [batch][head][query tile] in the
 * backward's workspace (dq_sem, sem_sb, sem_sh; packed: per sequence from
 * tile cu[b] / BM + b), zeroed by pre before every launch of main_sem. */
#pragma once
#include "bwd_iter.cuh"
#include "tma.cuh"

/* The number of KV tiles of this sequence on one side of j whose cursor visits query tile mt
 * (n: the sequence length): BELOW false, the tiles j' > j (main_sem's order, descending tile
 * index); BELOW true, the tiles j' < j (the ws kernel's, ascending; bwd_ws.cuh).  The head's
 * intervals at lo[k * stride], hi[k * stride], k < count: a slot's arrays (stride 1) or a band
 * table row's pairs (row + 1, row + 2, stride 2).  Mirrors bands_dq_rank in codegen/bands.c line
 * for line.  Interval [lo, hi) brings the keys of tiles [max(m0 - hi + 1, 0) / BN,
 * (m_last - lo) / BN] to the tile's rows (none if m_last < lo): the transpose of the cursor's
 * ranges, the forward's KV-tile ranges.  Those ranges descend as k ascends and may share a
 * tile, so each side's bound (`next`: the lowest tile above j not yet counted; `top`: the
 * highest below j) counts each tile once, and only tiles on that side of j. */
template <bool BELOW>
DEV int bwd_dq_rank_of(const int *lo, const int *hi, int stride, int count, int mt, int j, int n)
{
    const int m0 = mt * BM, m_last = min(m0 + BM, n) - 1;
    int rank = 0;
    if constexpr (!BELOW) {
        int next = j + 1;
#pragma unroll 1
        for (int k = count - 1; k >= 0; --k) {
            const int lo_k = lo[k * stride], hi_k = hi[k * stride];
            if (m_last < lo_k) continue;   /* no key >= 0 reaches the tile's rows */
            const int t_lo = max(m0 - hi_k + 1, 0) / BN, t_hi = (m_last - lo_k) / BN;
            rank += max(t_hi - max(t_lo, next) + 1, 0);
            next = max(next, t_hi + 1);
        }
    } else {
        int top = j - 1;
#pragma unroll 1
        for (int k = 0; k < count; ++k) {
            const int lo_k = lo[k * stride], hi_k = hi[k * stride];
            if (m_last < lo_k) continue;
            const int t_lo = max(m0 - hi_k + 1, 0) / BN, t_hi = (m_last - lo_k) / BN;
            rank += max(min(t_hi, top) - t_lo + 1, 0);
            top = min(top, t_lo - 1);
        }
    }
    return rank;
}

/* main_sem's rank of KV tile j at the step in slot s: the tiles above it. */
DEV int bwd_dq_rank(const bwd_slot &s, int j, int n) { return bwd_dq_rank_of<false>(s.lo, s.hi, 1, s.count, s.mt, j, n); }

/* A step's turn: its semaphore, the count that lets this CTA's warps add, and its query
 * tile as (mt << 8) | head in group (main_sem keeps it here rather than in a register). */
struct bwd_dq_turn {
    int *sem;
    int target;
    int tile;
};

/* The turn of the step in slot s (kv head kvh, batch b, KV tile j). */
DEV bwd_dq_turn bwd_dq_turn_of(const sp_bwd_kparams &p, const bwd_slot &s, int b, int kvh, int j, int n)
{
    bwd_dq_turn t;
    t.sem = (int *)p.dq_sem + b * p.sem_sb + (kvh * GROUP + s.r) * p.sem_sh + s.mt;
    t.target = bwd_dq_rank(s, j, n) * WARPS;
    t.tile = s.mt << 8 | s.r;
    return t;
}

/* Global memory, GPU scope: a load that acquires, an add that releases. */
DEV int ld_acquire_gpu(const int *p)
{
    int v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
    return v;
}
DEV void red_release_gpu(int *p, int v)
{
    asm volatile("red.release.gpu.global.add.s32 [%0], %1;\n" :: "l"(p), "r"(v) : "memory");
}
/* Orders this thread's generic-proxy accesses to global memory with its async-proxy ones
 * (the bulk reduce-adds): after its adds completed, before the release; after the acquire
 * (and the __syncwarp that passes it on), before the next adds. */
DEV void fence_proxy_async_global() { asm volatile("fence.proxy.async.global;\n" ::: "memory"); }

/* Step 2 of the protocol (and the end of the kernel): lanes 0..15 wait for their reduce-adds
 * to complete, then lane 0 releases the semaphore they were counted on (sem; NULL before
 * the warp's first adds). */
DEV void dq_turn_release(int *sem, int lane)
{
    if (lane < 16) {
        tma_store_wait<0>();
        fence_proxy_async_global();
    }
    __syncwarp();
    if (lane == 0 && sem) red_release_gpu(sem, 1);
}

/* Step 3 of the protocol: this warp's turn at t; lanes 0..15 may add after it. */
DEV void dq_turn_wait(const bwd_dq_turn &t, int lane)
{
    if (lane == 0) {
        const int *const sem = t.sem;
        const int target = t.target;
#pragma unroll 1
        while (ld_acquire_gpu(sem) < target) {
        }
    }
    __syncwarp();
    if (lane < 16) fence_proxy_async_global();
}
