/* kernels/bwd_ws.cuh: the warp-specialized backward main kernel (sm_90a),
 * the family bwd-ws: the default backward on sm_90a (tiles 64x128:s2:ws at
 * head_dim 128, 64x64:s3:ws at 64; checked and timed in sessions 8 and 9,
 * bench/RESULTS.md S8 and S9).  dQ is added by writer lanes of the producer
 * warpgroup, not by the consumers.
 * The math of a step is bwd_wgmma.cuh's, unchanged and in its order; what
 * changes is who loads and how the warps meet (bench/NOTES-bwd.md, item 2;
 * FlashAttention-3's backward):
 *
 *   warpgroup 0, the producer (setmaxnreg down to PRODUCER_REGS; thread 0
 *       loads, thread 32 (and 64 with WS_DQ_BUFS 2) writes dQ, the others
 *       exit): thread 0 loads the item's K and V tiles (TMA, one box of BN
 *       rows per 64-value column block), then walks the cursor
 *       (bwd_iter.cuh's bwd_cursor_next; deterministic at d64: bwd_cursor_next_desc)
 *       and, per query tile, waits until
 *       the ring's stage is empty, writes the stage's slot (mt, r, the
 *       intervals), announces the stage's bytes (arrive.expect_tx on FULL)
 *       and loads the Q and dO tiles by TMA (boxes of BM rows, the 128-byte
 *       swizzle: the sw128 tile layout the wgmma descriptors read, as
 *       fwd_ws.cuh's Q tiles) and the lse2 and delta rows by 1-D bulk
 *       copies.  After the item's last tile it takes the next item
 *       (persistent mode), writes an end slot (mt = -1, r = whether an item
 *       follows) and arrives on FULL without bytes.
 *   warpgroup 0, warp 1, lane 0: the dQ writer (FlashAttention-3's dQ
 *       writer warp): per step, adds the dQ tile the consumers staged (and
 *       named) by TMA tensor reduce-adds, frees the staging buffer once they
 *       have read it and, in deterministic mode, waits for the tile's turn
 *       before and releases it after (ws_dq_put and bwd_ws_writer say
 *       how).  The math warps never wait for an add or a turn, only for the
 *       buffer, one step later.  Where shared memory allows (WS_DQ_BUFS 2:
 *       d64 with 2 stages), two buffers and a second writer, warp 2's lane 0:
 *       writer b takes the steps s with s % 2 == b.
 *   warpgroups 1 .. BN / 64, the consumers (setmaxnreg up to CONSUMER_REGS):
 *       warpgroup c owns keys 64c .. 64c + 63 and their dK and dV, exactly
 *       as warpgroup c of bwd_wgmma.cuh; per step they wait on FULL, not on
 *       cp.async and __syncthreads, and hold no cursor and no load address.
 *
 * Work items and persistence (sessions 13 and 14): an item is one KV tile of
 * one kv head and sequence, the block of the one-item grid.  On a uniform
 * batch (p.work_count != 0: runtime/attn_bwd.c, attn_bwd_persistent) the
 * grid is one block per SM slot.  In the default mode block c takes item c,
 * then the next item of the longest-first order from a counter that pre
 * zeroes (bwd_ws_next_item): the hardware's dynamic dealing of the one-item
 * grid, without a block's launch, barrier set-up, first loads and drain
 * between two items.  The deterministic mode takes every item, its first
 * too, from the counter in the turns' order (bwd_ws_item_at), so that the
 * first unfinished item is always held by a running block.  The item's end
 * is the point: the consumers arrive on kv_empty after its last product and
 * stage dK and dV through the dS^T and dQ buffers, not K and V, so the
 * producer loads the next item's K and V, Q and dO meanwhile.  Packed
 * sequences keep the one-item grid (blockIdx.z is the sequence).  Measured
 * (bench/NOTES-bwd.md): the backward alone -3 to -5% (session 13, default),
 * the deterministic one -2 to -7% (session 14).
 * Programmatic dependent launch: main starts as pre's dependent and lets
 * convert start as its own (griddep_*: ptx.cuh); the producer (after the
 * first item's K and V) and the writers wait for pre before they read or add
 * to what it wrote.
 *
 * Barriers (mbarriers in static shared memory; iteration k of the ring uses
 * stage k % STAGES with parity (k / STAGES) & 1, mbarrier.cuh's convention;
 * the ring's iterations are the steps and each item's end slot):
 *   kv_full      count 1 (the producer's expect_tx) + the K and V bytes; a
 *                phase per item (parity item & 1), waited by every consumer
 *                before the item's first product; its arrival also
 *                publishes the item (S.item).
 *   kv_empty     count CONSUMER_THREADS: every consumer after the item's
 *                last product (its dQ); the producer waits for it before it
 *                loads the next item's K and V.
 *   full[st]     count 1 + the stage's bytes (Q, dO, lse2, delta); the
 *                producer's arrive (release) publishes the slot too; the
 *                consumers' wait (acquire) is the only wait of a step for data.
 *   empty[st]    count CONSUMER_THREADS: every consumer thread arrives
 *                after the step's wgmma_wait<0> (dV and dK read this stage's
 *                dO and Q until then; P^T and dS^T read lse2 and delta, the
 *                mask read the slot, all earlier).  Every thread, not lane 0
 *                after a __syncwarp: the threads' own reads of the slot, lse2
 *                and delta (ordinary loads) are ordered before the producer's
 *                next writes only by their own release (FlashAttention-3's
 *                consumer_release is per thread too); racecheck reported
 *                each of those reads as a WAR hazard with one arrival per
 *                warp (session 8, call 2).  The producer
 *                waits for it (opposite parity: fresh stages are free)
 *                before it writes the slot or starts a copy into the stage.
 *   dq_full[b], dq_empty[b]: dQ staging buffer b between the consumers
 *                and writer b (at ws_dq_put and ws_dq_hand).
 *   named barriers BAR_DS_FULL (2-5) and BAR_DS_OWN (6, 7): per step, a
 *                warpgroup announces its stored dS^T (bar.arrive) and, just
 *                before dQ of the previous step is issued, waits for its own
 *                warps and the other warpgroup's announcement (ws_ds_wait;
 *                the argument is at the loop).  The two warpgroups are not
 *                in lock step.
 *   named barrier BAR_DS (1), CONSUMER_THREADS: twice, after the zeroed dS^T
 *                buffer is stored, and at the end, before dK and dV are
 *                staged through the K and V tiles that every warpgroup's dQ
 *                read.
 *   Nothing else: no __syncthreads after the roles split.
 *
 * Registers: __launch_bounds__(THREADS, CTAS_PER_SM) caps the kernel at
 * 65536 / CTAS_PER_SM / THREADS at launch (168 for 384 threads: d128, one
 * block per SM); the producer gives back to PRODUCER_REGS (24) and the
 * consumers take CONSUMER_REGS (240: 128 x 24 + 256 x 240 = 128 x 168 +
 * 256 x 168, the whole pool; kcfg_ws_consumer_regs).  d64: 256 threads, one
 * consumer warpgroup, and two blocks per SM (kcfg_derive_bwd: both fit in
 * shared memory, and the second block's math fills the tensor cores while
 * the first's waits): 128 at launch, the consumers at 232 (128 x 24 +
 * 128 x 232 = 256 x 128).
 * A consumer holds what bwd_wgmma.cuh's threads hold minus the cursor, the
 * prefetch's addresses and the parameters of the loads: dK and dV (64 + 64
 * at d128), S^T and dP^T (32 + 32) or P^T, dS^T packed and dQ (16 + 16 +
 * 32).  bwd_wgmma.cuh runs at 255; three changes bring this one under 240
 * with no spill (ptxas, every pattern, 1 to 16 intervals):
 *   - dV (which reads P^T's packed registers) is waited for before dQ and
 *     dK are issued: P^T's 16 registers are free for dQ's 32.  dV was
 *     issued before dS^T was computed and has had that long to run;
 *   - the ring's stage and parity are computed from the step, not carried;
 *   - the band mask takes one interval at a time (bwd_ws_mask_t, the same
 *     entries as bwd_parts.cuh's bwd_mask_t).
 * Without them ptxas serialized the wgmma (C7512: insufficient registers).
 *
 * Deterministic mode (ORDERED: the entry main_sem): bwd_order.cuh's protocol, the
 * writer's adds of a query tile in their turn (one count per CTA and tile: the target is
 * the rank itself), in main_sem's order (KV tiles descending) or, where BN = BM (d64), its
 * mirror (KV tiles ascending, each head's query tiles walked from the last, the blocks
 * longest first as in the default mode; WS_DET_ASCENDING, bwd_ws_block_of says why).  Session
 * 8 measured the ordered kernel with the consumer warps waiting for turns
 * and completions themselves at 1.27-1.54x of the default; here only the
 * writer waits, and session 9 measured 1.04-1.18x (forward+backward).  The
 * writer's wait for its adds to complete before it releases the turn
 * serializes it (no turn or add of the next step before), so the consumers
 * could be one step ahead at most: 1.26x the default at d64, whose short
 * steps (BN 64) the writer did not keep up with.  Hence the second buffer
 * and writer where they fit (ws_dq_put): at d64 s2 the deterministic
 * forward+backward went from 0.392 to 0.365 ms (session 10, bench/NOTES-bwd.md).
 *
 * Block order (bwd_ws_block_of): on a uniform batch the default mode (and the
 * ascending deterministic one) takes the blocks tile-major, KV tile 0 of every
 * kv head and batch first, which is longest first (FlashAttention-3's LPT
 * scheduler); measured in session 10 at -4% of the backward at d64, -1% at
 * (4,16,4096,128).  Since session 16 the default mode at d128 (WS_HEAD_MAJOR)
 * takes its items head by head instead (bwd_ws_item_at says why).  Packed
 * sequences and the descending deterministic order
 * keep blockIdx's (tile, kv head, sequence).  Every
 * role reads the item's first key, kv head and sequence from shared memory
 * (S.item; the producer through ws_blk), the writers the staged tile's head
 * and batch (S.dq_head, S.dq_tb), not blockIdx.
 *
 * Packed sequences (cu_seqlens): blockIdx.z is the sequence.  The launch's
 * parameters stay kernel parameters (bwd_wgmma.cuh's copy of them into shared memory cost
 * every role registers here) and the sequence's offsets (its length, first
 * row, scratch row and first semaphore; S.n .. S.wsrow) apply to them where
 * used; the tensor maps span the packed tensors (batch 1, `total` rows).  A
 * tile's rows past the sequence's end are the next sequence's (TMA
 * zero-fills only past the tensor's end) and harmless: their lse2 is +inf,
 * so P and dS are 0 there, and the dQ rows added for them are zeros, which
 * leave the accumulator's bits unchanged (it starts at +0, and
 * round-to-nearest never turns +0 into -0); keys past the end are masked,
 * and dK and dV are written for keys below n only.
 *
 * Needs from the translation unit: the backward's constants, plus
 * PRODUCER_THREADS, PRODUCER_REGS, CONSUMER_REGS (codegen/emit_bwd.c). */
#pragma once
#include "bwd_wgmma.cuh"
#include "mbarrier.cuh"

enum : int {
    CONSUMER_THREADS = 32 * WARPS,     /* the math warpgroups: 64 keys each */
    CONSUMER_WARPS = WARPS,
    COL_BLOCKS = HEAD_DIM / 64,        /* TMA boxes per tile: 64 values wide */
    BAR_DS = 1,                        /* named barrier of the consumers (0 is __syncthreads) */
    BAR_DS_FULL = 2,                   /* 2 + 2 wg + parity: warpgroup wg's dS^T of a step stored */
    BAR_DS_OWN = 6,                    /* 6 + wg: warpgroup wg's own warps, before its dQ */
    STAGE_TX_BYTES = 2 * Q_TILE_BYTES + 2 * BM * 4,   /* Q, dO, lse2, delta of one stage */
};
static_assert(THREADS == PRODUCER_THREADS + CONSUMER_THREADS && PRODUCER_THREADS == 128,
              "one producer warpgroup, then the consumers");
static_assert(WARPGROUPS <= 2, "ws_ds_wait: one other warpgroup");
static_assert(BN % 64 == 0 && BN <= 256 && BM <= 256 && HEAD_DIM % 64 == 0, "TMA boxes: 64 values, <= 256 rows");
static_assert(BM * 4 % 16 == 0, "bulk copies of lse2 and delta: whole 16-byte units");

/* The four maps of the backward (host: runtime/attn_bwd.c, attn_bwd_tma_maps):
 * Q and dO in boxes of BM rows over the query heads, K and V in boxes of BN
 * rows over the kv heads (tma.cuh's 4-D maps). */
struct bwd_tma_maps {
    tma_map q, dout, k, v;
    tma_map dqa;   /* dq_accum [B, N, H, D] fp32, boxes of BM rows x 32 dims (128-byte swizzle) */
};

/* A work item: one KV tile of one kv head and sequence (the block of the grid, or in the
 * persistent mode one of the items a CTA takes in turn: bwd_ws_next_item). */
struct bwd_ws_item {
    int n0;        /* its first key */
    int kvh, b;    /* its kv head and sequence (bwd_ws_item_at: not blockIdx.y, .z by default) */
    int tb;        /* the TMA maps' batch coordinate: b, packed 0 */
};

/* Barriers and the ring's slots, in static shared memory. */
struct bwd_ws_shared {
    unsigned long long kv_full, kv_empty, full[STAGES], empty[STAGES];
    /* dQ staging buffer b: staged by the consumers, read by writer b */
    unsigned long long dq_full[WS_DQ_BUFS], dq_empty[WS_DQ_BUFS];
    bwd_slot slots[STAGES];
    /* item i's in item[i % 4], written by the producer once it has taken it, before the end slot
     * of item i - 1 (the first by thread 0 before the roles split): the consumers may then
     * still be in the epilogue of item i - 2, which reads that item's entry (the producer began
     * item i - 1 only after kv_empty of item i - 2, so no earlier one), but in none before. */
    bwd_ws_item item[4];
    int producer_item;   /* the producer's item (held here, not in one of its 24 registers) */
    /* This CTA's sequence (packed: blockIdx.z; kernels/seq.cuh), read where used: the
     * launch's parameters stay kernel parameters (instruction operands, no register) and
     * these offsets apply to them.  A uniform batch: n = seqlen and the rest 0 but tb = b. */
    int n;         /* its length */
    int row0;      /* its first row in the packed tensors (the TMA coordinates') */
    int semoff;    /* packed: its first query tile's semaphore, start / BM + b (seq_bwd.cuh) */
    long long wsrow;   /* packed: its first row of the lse2 / delta scratch (seq_ws_row) */
    /* buffer b's query tile (-1: no more), its head in the launch and TMA batch, with dq_full[b] */
    int dq_tile[WS_DQ_BUFS], dq_head[WS_DQ_BUFS], dq_tb[WS_DQ_BUFS];
    /* The deterministic mode's only (last, so that the default mode's offsets are unchanged):
     * buffer b's KV tile (its turn's rank), and the block's first item as thread 0 claimed it. */
    int dq_kvt[WS_DQ_BUFS];
    bwd_ws_item claimed;
};

DEV u32 bwd_ws_bar(const unsigned long long &b) { return smem_addr(&b); }

/* dst[0, bytes) = src[0, bytes) by the copy engine; the bytes complete_tx on bar.
 * dst and src 16-byte aligned, bytes a multiple of 16. */
DEV void bulk_load(u32 dst, const void *src, u32 bytes, u32 bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
                 :: "r"(dst), "l"((u64)src), "r"(bytes), "r"(bar) : "memory");
}

/* Shared memory, from a 1024-aligned base (bwd_wgmma.cuh's layout, so the
 * descriptors are the same; TMA's 128-byte swizzle needs the 1024 too). */
struct bwd_ws_tiles {
    u32 k, v, q, dout, ds, l, d, dq;   /* stage st of q, dout at + st * Q_TILE_BYTES; of l, d at + st * BM * 4 */
};

DEV bwd_ws_tiles bwd_ws_tiles_at(unsigned char *smem)
{
    bwd_ws_tiles t;
    t.k = (smem_addr(smem) + 1023u) & ~1023u;
    t.v = t.k + KV_TILE_BYTES;
    t.q = t.v + KV_TILE_BYTES;
    t.dout = t.q + STAGES * Q_TILE_BYTES;
    t.ds = t.dout + STAGES * Q_TILE_BYTES;
    t.l = t.ds + DS_BUFS * BN * DS_ROW_BYTES;
    t.d = t.l + STAGES * BM * 4;
    /* dQ staging (ws_dq_put), 1024-aligned for the 128-byte swizzle; it fits the
     * DQ_STAGE_BYTES that the host reserves (bwd_wgmma.cuh's padded rows) with room for the
     * alignment (static_assert below). */
    t.dq = (t.d + STAGES * BM * 4 + 1023u) & ~1023u;
    return t;
}

/* A value of the item (S.item: its first key, kv head, sequence) or the producer's own (its
 * item count) for the producer, read where used: in the default order they are not blockIdx.y
 * and .z (bwd_ws_block_of; in the persistent mode not even the block's), so shared memory
 * replaces the special registers these roles read before, and the load is volatile, as the
 * mov from %ctaid was, so that no register holds it across the producer's loop (at 24
 * registers a register counts). */
DEV int ws_blk(const int &v) { return *(const volatile int *)&v; }

/* The band table rows of an item's kv head's query heads, of its sequence's table (packed:
 * bands_sb apart; a uniform batch: 0): a 32-bit offset, no sign extension. */
DEV const int *ws_rows(const sp_bwd_kparams &p, const bwd_ws_item &I)
{
    return (const int *)p.bands +
           (unsigned)(ws_blk(I.b) * p.bands_sb + (p.head_offset + ws_blk(I.kvh) * GROUP) * BAND_STRIDE);
}

/* ==== dQ: staged by the consumers, added by the writer ====
 * A step's dQ tile (BM rows x HEAD_DIM fp32) is staged as boxes of BM rows x 32 fp32 (128
 * bytes a row, the 128-byte swizzle): box 2 wg + half holds dims 64 wg + 32 half .. (the
 * consumer warpgroup wg's DQ_N = 64 dims), warp cw % 4 of the warpgroup its rows
 * 16 (cw % 4) ...  The writer (lane 0 of the producer warpgroup's warp 1) adds each box by one
 * TMA tensor reduce-add (tma.cuh's tma_reduce_add_4d; rows past n lie past the map's edge and
 * are not added): 2 x BN / 64 instructions a step, none of them in a math warp.  Before, every
 * consumer warp added its own 16 rows and waited for its adds (to read, and in deterministic
 * mode to complete, and for its turn) between its products.
 *
 * WS_DQ_BUFS buffers (kcfg_bwd_dq_bufs: 2 where two blocks per SM still fit, d64 with 2
 * stages; a second does not fit beside the ring at head_dim 128, nor beside 3 stages' at d64
 * without costing the second block), step s in buffer b = s % WS_DQ_BUFS, its use
 * u = s / WS_DQ_BUFS, and a writer per buffer.  Why two writers rather than one on two
 * buffers: in deterministic mode a writer waits for its adds to complete before it releases
 * the turn, and nothing of the next step (its turn, its adds) can start before; with one
 * writer that wait serialized every step at d64 (1.26x the default).  Two writers overlap one
 * step's completion with the next step's turn and adds: their steps are different query
 * tiles (the cursor visits each (tile, head) of a CTA once), so their turns are independent,
 * and each waits only for its own adds (bulk async-groups are per thread).  The default mode
 * runs the same code (the consumers may then be two steps ahead of a writer's reads).
 * Each buffer b has its own two mbarriers (a parity wait is valid only within one phase of
 * the waiter, so buffers cannot share them), parity u & 1:
 *   dq_full   count CONSUMER_WARPS: every consumer thread stores and makes its proxy fence
 *             (the writer's copy engine reads the stores next), the warp meets at __syncwarp
 *             (which orders its lanes' accesses before lane 0's), and lane 0 arrives: 8
 *             arrivals on the barrier a step instead of 256 (CUTLASS's epilogue does the
 *             same with a barrier of all threads and one thread's TMA store);
 *   dq_empty  count 1: the writer arrives once its adds have read the buffer; the consumers
 *             wait for it before they stage the buffer's next tile (fresh: free). */
enum : int {
    WS_DQ_BOX_BYTES = BM * 128,                      /* BM rows x 32 fp32 */
    WS_DQ_BYTES = 2 * (BN / 64) * WS_DQ_BOX_BYTES,   /* the tile: HEAD_DIM = 64 x BN / 64 dims */
};
static_assert(DQ_N == 64 && HEAD_DIM == BN, "a warpgroup's dQ is two 32-dim boxes");
static_assert(KV_TILE_BYTES <= WS_DQ_BYTES && KV_TILE_BYTES <= DS_BUFS * BN * DS_ROW_BYTES,
              "the epilogue stages dV in dQ buffer 0 and dK in the dS^T buffers");
static_assert(WS_DQ_BUFS * WS_DQ_BYTES + 1024 <= DQ_STAGE_BYTES && WS_DQ_BYTES % 1024 == 0 && WS_DQ_BUFS <= 2,
              "ws dQ staging: the buffers fit the host's reservation, each 1024-aligned");

/* The consumers' half, in two parts around the caller's proxy fence.  ws_dq_put: the warp's
 * rows of d (dQ of step s, query tile `tile`) into buffer s % WS_DQ_BUFS's boxes, once its
 * writer has read step s - WS_DQ_BUFS's (consumer thread 0 names the tile).  Then the caller's
 * fence_proxy_async (ordinary stores, read next by the copy engine), and ws_dq_hand: the
 * warp's arrive that hands the buffer over.  The fence is the caller's so that one fence
 * covers these stores and the dS^T stores that follow them in a step: a fence waits for the
 * thread's stores to complete, and two in a row (session 10) waited twice, about 7.5% of the
 * stall samples together (ncu, bench/NOTES-bwd.md). */
template <bool ORDERED>
DEV void ws_dq_put(bwd_ws_shared &S, u32 sdq, const float (&d)[DQ_N / 8][4], int s, int tile, int item,
                   int wg, int cw, int lane)
{
    const int b = (int)((u32)s % WS_DQ_BUFS);   /* the buffer, its use (u32)s / WS_DQ_BUFS */
    mbar_wait(bwd_ws_bar(S.dq_empty[b]), (((u32)s / WS_DQ_BUFS) & 1) ^ 1);   /* its last use's adds have read it */
    if (wg == 0 && cw == 0 && lane == 0) {   /* tile: mt << 8 | head in group, of item I */
        S.dq_tile[b] = tile >> 8;
        const bwd_ws_item &I = S.item[item & 3];
        S.dq_head[b] = I.kvh * GROUP + (tile & 255);
        S.dq_tb[b] = I.tb;
        if constexpr (ORDERED) S.dq_kvt[b] = (unsigned)I.n0 / BN;
    }
    const int g = lane >> 2, t = lane & 3;
    const u32 rows = sdq + (u32)b * WS_DQ_BYTES + (u32)(2 * wg) * WS_DQ_BOX_BYTES + (u32)(16 * (cw % 4)) * 128;
#pragma unroll
    for (int nb = 0; nb < DQ_N / 8; ++nb) {
        /* dims 8nb + 2t + {0, 1}: box nb / 4, 16-byte chunk 2 (nb % 4) + t / 2 of the row, which
         * the swizzle moves to chunk ^ (row % 8); rows g and g + 8 of the warp's (row % 8 = g). */
        const u32 off = (u32)(nb / 4) * WS_DQ_BOX_BYTES + (u32)(((2 * (nb % 4) + (t >> 1)) ^ g) * 16 + (t & 1) * 8);
        st_shared_v2f32(rows + off + g * 128, d[nb][0], d[nb][1]);
        st_shared_v2f32(rows + off + (g + 8) * 128, d[nb][2], d[nb][3]);
    }
}

/* After every lane's ws_dq_put of step s and its proxy fence: the warp's arrive on the
 * buffer's dq_full (its lanes' stores and fences ordered before lane 0's arrive by the
 * __syncwarp). */
DEV void ws_dq_hand(bwd_ws_shared &S, int s, int lane)
{
    __syncwarp();
    if (lane == 0) mbar_arrive(bwd_ws_bar(S.dq_full[(u32)s % WS_DQ_BUFS]));
}

/* The consumers' last word, after s steps: no more tiles, to every writer, as steps s ..
 * s + WS_DQ_BUFS - 1 (each once its buffer's last adds have read it). */
DEV void ws_dq_end(bwd_ws_shared &S, int s, int ctid)
{
#pragma unroll
    for (int j = 0; j < WS_DQ_BUFS; ++j) {
        const u32 e = (u32)(s + j);
        const int b = (int)(e % WS_DQ_BUFS);
        mbar_wait(bwd_ws_bar(S.dq_empty[b]), ((e / WS_DQ_BUFS) & 1) ^ 1);
        if (ctid == 0) S.dq_tile[b] = -1;
        __syncwarp();
        if ((ctid & 31) == 0) mbar_arrive(bwd_ws_bar(S.dq_full[b]));
    }
}

/* Before buffer 0 holds anything else (the persistent epilogue stages dV there), after s
 * steps: every add staged in it has read it (the wait ws_dq_put makes for the buffer's next
 * use, whose step is s rounded up to a multiple of WS_DQ_BUFS; nothing arrives, so that use's
 * own wait then passes at once). */
DEV void ws_dq_drain(bwd_ws_shared &S, int s)
{
    const u32 e = ((u32)s + WS_DQ_BUFS - 1) / WS_DQ_BUFS;   /* buffer 0's next use */
    mbar_wait(bwd_ws_bar(S.dq_empty[0]), (e & 1) ^ 1);
}

/* ==== The writers: one thread per buffer b (lane 0 of the producer warpgroup's warp 1 + b) ====
 * Per step of its buffer: waits for the staged tile (which the consumers name: at the
 * producer warpgroup's 24 registers, a cursor of its own spilled), (ORDERED: computes its
 * rank and waits for its turn,) adds it, frees the buffer once the adds have read it, and
 * (ORDERED) releases the turn once they are complete.  The turns are bwd_order.cuh's with one
 * count per CTA and tile: target = the number of tiles before this one in the order
 * (WS_DET_ASCENDING: below it, else above it) that visit the query tile (bwd_dq_rank_of;
 * bwd_ws_block_of says which order where). */
template <bool ORDERED>
DEV void bwd_ws_writer(const sp_bwd_kparams &p, const bwd_tma_maps &tm, bwd_ws_shared &S, unsigned char *smem, int b)
{
    /* Its own values, from scratch (none carried from before the roles split: at 24 registers
     * a carried value spilled). */
    const u32 sdq = bwd_ws_tiles_at(smem).dq + (u32)b * WS_DQ_BYTES;
    griddep_wait();   /* pre's zeroed accumulator and semaphores (as the producer's) */
#pragma unroll 1
    for (int u = 0;; ++u) {   /* the buffer's use u: step u * WS_DQ_BUFS + b */
        mbar_wait(bwd_ws_bar(S.dq_full[b]), (u32)u & 1);   /* the consumers have staged it, or are done */
        const int mt = S.dq_tile[b];
        if (mt < 0) break;
        const int h = S.dq_head[b], tb = S.dq_tb[b];
        int *sem = nullptr;
        if constexpr (ORDERED) {
            /* packed: sem_sb = 0 (tb = 0), the sequence's semaphores from semoff */
            sem = (int *)p.dq_sem + tb * p.sem_sb + S.semoff + h * p.sem_sh + mt;
            /* the step's sequence (packed: one item, S.item[0]; a uniform batch: tb) and KV tile */
            const int *row = (const int *)p.bands +
                             (unsigned)((p.cu_seqlens ? ws_blk(S.item[0].b) : tb) * p.bands_sb + (p.head_offset + h) * BAND_STRIDE);
            const int target =
                bwd_dq_rank_of<WS_DET_ASCENDING>(row + 1, row + 2, 2, min(row[0], MAX_INTERVALS), mt, S.dq_kvt[b], S.n);
#pragma unroll 1
            while (ld_acquire_gpu(sem) < target) {
            }
            fence_proxy_async_global();   /* the earlier tiles' adds, before this tile's */
        }
#pragma unroll
        for (int x = 0; x < 2 * (BN / 64); ++x)
            tma_reduce_add_4d(tm.dqa, sdq + (u32)x * WS_DQ_BOX_BYTES, 32 * x, S.row0 + mt * BM, h, tb);
        tma_store_commit();
        tma_store_wait_read<0>();
        mbar_arrive(bwd_ws_bar(S.dq_empty[b]));   /* the consumers may stage the buffer's next tile */
        if constexpr (ORDERED) {
            tma_store_wait<0>();   /* the adds are complete in L2 ... */
            fence_proxy_async_global();
            red_release_gpu(sem, 1);   /* ... before the next KV tile's turn */
        }
    }
    tma_store_wait<0>();   /* every add has read its rows before the CTA ends */
}

/* Item l of the launch's order; false past the last.  A uniform batch only (the persistent
 * mode).  The default mode where WS_HEAD_MAJOR (BN > BM: d128): head by head, each (sequence,
 * kv head)'s tiles ascending (longest first within the head); session 16 measured main's DRAM
 * bytes 26% lower than tile-major at (1,16,16,16384,128) and the backward alone 1.2% faster
 * sustained, 0.5% cool in the fair harness (not faster at full clock: the gain is the power the
 * DRAM traffic no longer takes), 4% slower at d64.  Elsewhere (the default mode at d64 and the
 * ascending deterministic one): bwd_ws_block_of's longest-first order, tile-major (KV tile 0
 * of every kv head and sequence first).  The descending
 * deterministic one: the one-item grid's blockIdx order, head-major with each (sequence, kv
 * head)'s tiles from the last, which is the turns' order (main_sem's); session 14 measured
 * tile-major there 4-9% slower at d128 (the concurrent blocks then share no query tile, so
 * the Q, dO and dQ accumulator rows they read and add find no other block's in L2). */
template <bool ORDERED>
DEV bool bwd_ws_item_at(const sp_bwd_kparams &p, unsigned l, bwd_ws_item &I)
{
    const unsigned heads = (unsigned)(p.kv_heads * p.batch);
    unsigned t, r;   /* the item's tile in the order, and its (sequence, kv head) */
    if constexpr (ORDERED ? !WS_DET_ASCENDING : WS_HEAD_MAJOR) {   /* head by head */
        const unsigned tiles = (unsigned)(p.seqlen + BN - 1) / BN;
        r = l / tiles;
        const unsigned i = l - r * tiles;   /* the item's place in its head: tiles from the last if ORDERED */
        t = r < heads ? (ORDERED ? tiles - 1 - i : i) : tiles;   /* past the last: n0 >= seqlen */
        r = r < heads ? r : 0;
    } else {
        t = l / heads;
        r = l - t * heads;
    }
    I.n0 = (int)t * BN;
    I.kvh = (int)(r % (unsigned)p.kv_heads);
    I.b = I.tb = (int)(r / (unsigned)p.kv_heads);
    return I.n0 < p.seqlen;
}

/* The persistent mode's next item (p.work_count != 0: a uniform batch, runtime/attn_bwd.c):
 * by default CTA c takes item c first, then items gridDim.x + 0, 1, ... in the order the CTAs
 * ask for them (one counter, zeroed by pre): longest first and dealt as SMs free up, as the
 * hardware dealt the blocks of the one-item grid; the deterministic mode items 0, 1, ... from
 * the counter alone.  Else: none. */
template <bool ORDERED>
DEV bool bwd_ws_next_item(const sp_bwd_kparams &p, bwd_ws_item &I)
{
    if (!p.work_count) {
        I.n0 = 1 << 30;   /* none: past every sequence's end (the consumers' test) */
        return false;
    }
    /* gridDim.x read here, by a volatile mov: hoisted to the producer's start, ptxas spilled it.
     * The deterministic mode takes every item from the counter (bwd_ws_body says why). */
    unsigned blocks = 0;
    if (!ORDERED) asm volatile("mov.u32 %0, %%nctaid.x;\n" : "=r"(blocks));
    return bwd_ws_item_at<ORDERED>(p, blocks + (unsigned)atomicAdd((int *)p.work_count, 1), I);
}

/* ==== The producer: one thread ====
 * Query tile mt of head h = kvh * GROUP + r: rows mt * BM .. of the map's head h (rows past n
 * are zero-filled by TMA, as cp.async's zero-fill did); lse2 and delta rows mt * BM .. of the
 * head's padded scratch row (pre wrote lse2 = +inf, delta = 0 past n, up to seqlen_pad, a
 * multiple of 128 >= every tile's end: the copy never leaves the row). */
template <bool ORDERED>
DEV void bwd_ws_producer(const sp_bwd_kparams &p, const bwd_tma_maps &tm, bwd_ws_shared &S, unsigned char *smem)
{
    /* Its values from scratch or from shared memory, read where used: at 24 registers for the
     * warpgroup (the writer's path included), values held through the loop spilled. */
    const bwd_ws_tiles T = bwd_ws_tiles_at(smem);
    /* ORDERED with WS_DET_ASCENDING: each head's query tiles from the last (the order's
     * argument is at bwd_ws_block_of). */
    constexpr bool DESC = ORDERED && WS_DET_ASCENDING;
    /* ring: the ring's slots filled so far, stage ring % STAGES with parity (ring / STAGES) & 1
     * (one register for both: at 24 a register counts) */
    u32 ring = 0;
    S.producer_item = 0;
#pragma unroll 1
    for (;;) {
        const bwd_ws_item &I = S.item[ws_blk(S.producer_item) & 3];
        /* K and V: into the tiles the consumers have left (the wait for kv_empty is at the
         * previous item's end; the first item's are free) */
        mbar_arrive_expect_tx(bwd_ws_bar(S.kv_full), 2 * KV_TILE_BYTES);   /* release: the item too */
#pragma unroll
        for (int cb = 0; cb < COL_BLOCKS; ++cb) {
            tma_load_4d(T.k + cb * BN * SW_ROW, tm.k, bwd_ws_bar(S.kv_full), 64 * cb, S.row0 + ws_blk(I.n0), ws_blk(I.kvh),
                        ws_blk(I.tb));
            tma_load_4d(T.v + cb * BN * SW_ROW, tm.v, bwd_ws_bar(S.kv_full), 64 * cb, S.row0 + ws_blk(I.n0), ws_blk(I.kvh),
                        ws_blk(I.tb));
        }
        /* K and V are the caller's; what comes next (lse2, delta, the work counter) is pre's:
         * launched as its dependent (runtime/attn_bwd.c), this block may have started before
         * pre ended. */
        if (ws_blk(S.producer_item) == 0) griddep_wait();
        bwd_cursor cur;
        if (DESC) bwd_cursor_init_desc(cur);
        else bwd_cursor_init(cur);
        int r, mt;
#pragma unroll 1
        for (;;) {
            const bool any = DESC ? bwd_cursor_next_desc(cur, ws_rows(p, I), ws_blk(I.n0), S.n, r, mt)
                                  : bwd_cursor_next(cur, ws_rows(p, I), ws_blk(I.n0), S.n, r, mt);
            const u32 stage = ring % STAGES;
            mbar_wait(bwd_ws_bar(S.empty[stage]), ((ring / STAGES) & 1) ^ 1);   /* every consumer is done with it */
            bwd_slot &slot = S.slots[stage];
            const u32 full = bwd_ws_bar(S.full[stage]);
            if (!any) {
                /* The item's end slot (mt = -1; r = 1: another item follows, in item[(item + 1) % 4]).
                 * Its K and V once the consumers have left this item's (kv_empty). */
                const int item = ws_blk(S.producer_item);
                const bool more = bwd_ws_next_item<ORDERED>(p, S.item[(item + 1) & 3]);
                slot.mt = -1;
                slot.r = more;
                mbar_arrive(full);
                ++ring;
                if (!more) return;
                mbar_wait(bwd_ws_bar(S.kv_empty), (u32)(item & 1));
                *(volatile int *)&S.producer_item = item + 1;
                break;
            }
            const int *row = ws_rows(p, I) + (unsigned)(r * BAND_STRIDE);
            slot.mt = mt;
            slot.r = r;
            slot.count = min(row[0], MAX_INTERVALS);
            /* One interval at a time: all of them at once took more than the producer's 24
             * registers with four intervals (the table is in L1; the loads are hidden behind
             * the consumers' steps). */
#pragma unroll 1
            for (int k = 0; k < MAX_INTERVALS; ++k) {
                slot.lo[k] = row[1 + 2 * k];
                slot.hi[k] = row[2 + 2 * k];
            }
            mbar_arrive_expect_tx(full, STAGE_TX_BYTES);   /* release: the slot is published with the phase */
            const int h = ws_blk(I.kvh) * GROUP + r, m0 = mt * BM, tb = ws_blk(I.tb);
#pragma unroll
            for (int cb = 0; cb < COL_BLOCKS; ++cb) {
                tma_load_4d(T.q + stage * Q_TILE_BYTES + cb * BM * SW_ROW, tm.q, full, 64 * cb, S.row0 + m0, h, tb);
                tma_load_4d(T.dout + stage * Q_TILE_BYTES + cb * BM * SW_ROW, tm.dout, full, 64 * cb, S.row0 + m0, h, tb);
            }
            /* packed: ws_sb = 0 (and tb = 0), the sequence's scratch rows from wsrow */
            const long long w = tb * p.ws_sb + S.wsrow + h * p.ws_sh + m0;
            bulk_load(T.l + stage * BM * 4, (const float *)p.lse2 + w, BM * 4, full);
            bulk_load(T.d + stage * BM * 4, (const float *)p.delta + w, BM * 4, full);
            ++ring;
        }
    }
}

/* P^T masked on PARTIAL tiles: bwd_parts.cuh's bwd_mask_t, the same entries kept, but one
 * interval at a time into a bit per entry of the lane (BM / 8 x 4 = 32 of them), so that
 * only one interval is in registers beside S^T, dP^T (in flight), dK and dV: with four
 * intervals, bwd_mask_t's eight bounds pushed the consumers past their 240 registers.
 * Entry (nb, 2r + e) is bit 4nb + 2r + e: query i0 + 8nb + 2t + e, key j0 + 8r. */
DEV void bwd_ws_mask_t(float (&s)[BM / 8][4], const bwd_slot &sl, int i0, int j0, int n, int lane)
{
    static_assert(BM / 8 * 4 == 32, "one 32-bit word holds the lane's entries");
    const int d0 = i0 + 2 * (lane & 3) - j0;   /* the distance of entry (0, 0) */
    u32 allow = 0;
    if constexpr (BANDS_DENSE) {   /* one interval [0, n): d >= 0 decides (keys >= n below) */
#pragma unroll
        for (int nb = 0; nb < BM / 8; ++nb)
#pragma unroll
            for (int x = 0; x < 4; ++x)
                if (d0 + 8 * nb + (x & 1) - 8 * (x >> 1) >= 0) allow |= 1u << (4 * nb + x);
    } else {
#pragma unroll 1
        for (int k = 0; k < MAX_INTERVALS; ++k) {   /* unused slots are [0, 0): nothing */
            const int lo = sl.lo[k], hi = sl.hi[k];
#pragma unroll
            for (int nb = 0; nb < BM / 8; ++nb)
#pragma unroll
                for (int x = 0; x < 4; ++x) {
                    const int d = d0 + 8 * nb + (x & 1) - 8 * (x >> 1);
                    if ((lo <= d) & (d < hi)) allow |= 1u << (4 * nb + x);
                }
        }
    }
    if (j0 >= n) allow &= 0xccccccccu;       /* key j0 does not exist: entries r = 0 */
    if (j0 + 8 >= n) allow &= 0x33333333u;   /* key j0 + 8: entries r = 1 */
#pragma unroll
    for (int nb = 0; nb < BM / 8; ++nb)
#pragma unroll
        for (int x = 0; x < 4; ++x) s[nb][x] = (allow >> (4 * nb + x)) & 1u ? s[nb][x] : 0.f;
}

/* Before dQ(s) is issued (in step s + 1): every row of dS^T of step s stored.  This
 * warpgroup's own four warps meet at BAR_DS_OWN + wg; the other warpgroup's rows are there
 * once it has announced step s (BAR_DS_FULL of its own, parity s & 1; the loop below says
 * why two parities). */
DEV void ws_ds_wait(int wg, int s)
{
    named_sync(BAR_DS_OWN + wg, 128);
    if (WARPGROUPS > 1) named_sync(BAR_DS_FULL + 2 * (1 - wg) + (s & 1), CONSUMER_THREADS);
}

/* ==== The consumers ====
 * Warpgroup c (0 .. BN / 64 - 1) of the consumers, warp cw (0 .. CONSUMER_WARPS - 1) of them:
 * bwd_wgmma.cuh's warpgroup c and warp cw, step for step. */
template <bool ORDERED>
DEV void bwd_ws_consumer(const sp_bwd_kparams &p, bwd_ws_shared &S, const bwd_ws_tiles &T, int n)
{
    const int ctid = (int)threadIdx.x - PRODUCER_THREADS, cw = ctid / 32, lane = ctid % 32, wg = cw / 4;

    /* Descriptors as bwd_wgmma.cuh's (stage st adds st * Q_TILE_BYTES / 16). */
    const u64 dka = smem_desc(T.k + wg * WG_KEYS * SW_ROW, 16, 1024);
    const u64 dva = smem_desc(T.v + wg * WG_KEYS * SW_ROW, 16, 1024);
    const u64 dqb = smem_desc(T.q, 16, 1024), dob = smem_desc(T.dout, 16, 1024);
    const u64 dqt = smem_desc(T.q, BM * SW_ROW, 1024), dot = smem_desc(T.dout, BM * SW_ROW, 1024);
    const u64 dst = smem_desc(T.ds, BN * SW_ROW, 1024);
    const u64 dkt = smem_desc(T.k + wg * (DQ_N / 64) * BN * SW_ROW, BN * SW_ROW, 1024);

    /* dS^T buffer 1 is "step -1's": zero, so that step 0's dQ product is 0 (and not added).
     * Published to wgmma by the fence and to every consumer by the BAR_DS. */
    for (int w = ctid; w < BN * DS_ROW_BYTES / 4; w += CONSUMER_THREADS) st_shared_u32(T.ds + BN * DS_ROW_BYTES + 4 * w, 0u);
    fence_proxy_async();
    named_sync(BAR_DS, CONSUMER_THREADS);

    /* The steps.  Step it's dS^T goes to buffer it % 2 and is read by dQ(it), issued in step
     * it + 1 by both warpgroups (each reads every key's row of it).  So dQ(it - 1), issued
     * in step it, needs both warpgroups' dS^T of step it - 1 stored (and fenced for the async
     * proxy); and step it's store into buffer it % 2 needs dQ(it - 2), which read that buffer
     * in step it - 1 in both warpgroups, to be done.
     *
     * The warpgroups are not held in lock step (bench/NOTES-bwd.md, session 10): a warpgroup
     * announces its dS^T of step it by a bar.arrive on BAR_DS_FULL (its own barrier, of step
     * it's parity) right after storing it, and waits, just before issuing dQ(it - 1) in step
     * it, only for the other's announcement of step it - 1 (ws_ds_wait; its own four warps
     * meet at BAR_DS_OWN).  So one warpgroup may run up to about half a step ahead of the
     * other -- S^T, dP^T, the softmax, dV and dS^T of a step -- and its tensor-core work
     * fills the other's CUDA-core phases; with one barrier of all consumers per step (until
     * session 9) they met every step at the same point and did their softmax together.
     * The announcement also covers the store of step it + 1 into buffer (it + 1) % 2: the
     * other warpgroup made it after its dQ(it - 1), which read that buffer, was done; and
     * step it + 1's store comes after this warpgroup's wait in step it + 1 for it.  Two
     * parities, because a warpgroup can announce step it + 1 before the other has waited
     * for step it (never step it + 2: that follows its own wait for the other's step it + 1,
     * made after the other's wait for step it).  Every announcement is waited for, the
     * last one after the loop.  The zeroed buffer 1 (step 0's dQ) was published above.
     * dQ of step it - 1 goes to a writer through a staging buffer (ws_dq_put: it waits
     * there only if that buffer's writer has not yet read step it - 1 - WS_DQ_BUFS's). */
    static_assert(GROUP <= 256, "the head in group fits 8 bits");
    /* The items (one, or in the persistent mode as many as the producer takes; bwd_ws_producer):
     * it counts the steps of all of them (the dS^T buffers, the announcements and the dQ
     * buffers go on from item to item); the ring's slots are the steps and each item's end
     * slot, it + item before step it of item `item`.  prev_tile < 0: the item's first step. */
    int it = 0;
#pragma unroll 1
    for (int item = 0;; ++item) {
    mbar_wait(bwd_ws_bar(S.kv_full), (u32)item & 1);   /* K and V have landed, and the item */
    const int key0 = S.item[item & 3].n0 + 16 * cw;   /* this warp's first key of the item */
    float dk[HEAD_DIM / 8][4], dv[HEAD_DIM / 8][4];
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[db][e] = dv[db][e] = 0.f;
    int prev_tile = -1;
    for (;; ++it) {
        /* The ring's position, from it and item (registers fewer than carrying them: the loop
         * is at the consumers' budget). */
        const int ring = it + item, stage = ring % STAGES;
        mbar_wait(bwd_ws_bar(S.full[stage]), (u32)(ring / STAGES) & 1);   /* the stage's tiles, rows and slot */
        const bwd_slot &sl = S.slots[stage];
        const int mt = sl.mt;
        if (mt < 0) {   /* the item's end slot: the same for every consumer */
            mbar_arrive(bwd_ws_bar(S.empty[stage]));   /* read: the producer may refill it */
            break;
        }
        const u32 so = (u32)(stage * Q_TILE_BYTES) >> 4;
        const u32 ds_cur = (u32)((it & 1) * BN * DS_ROW_BYTES), ds_prev = (u32)(BN * DS_ROW_BYTES) - ds_cur;
        const int m0 = mt * BM;
        /* A warpgroup whose 64 keys have no allowed pair with this query tile (a band's edge
         * falls in the other half of the KV tile) skips its four products and the softmax:
         * its P^T and dS^T are 0, so dV and dK gain nothing, and its rows of the dS^T tile
         * are stored as zeros for dQ, which reads every key's row.  Warp-uniform by the
         * vote, warpgroup-uniform as every warp reads the same slot.  With one warpgroup
         * (d64) the step would not have been visited: not tested (the test cost d64 3%,
         * session 13). */
        const bool wg_skip = WARPGROUPS > 1 &&
                             __all_sync(0xffffffffu, bwd_tile_kind(sl, m0, BM, key0 - 16 * (cw & 3), WG_KEYS, n) == TILE_SKIP);
        u32 dsf[BM / 16][4];
        if (!wg_skip) {
            float s[BM / 8][4], dp[BM / 8][4];
            issue_st(s, dka, dqb + so);                        /* S^T = K Q^T */
            issue_st(dp, dva, dob + so);                       /* dP^T = V dO^T */
            const int kind = bwd_tile_kind(sl, m0, BM, key0, 16, n);   /* this warp's 16 keys */
            wgmma_wait<1>();                                   /* S^T is done */
            regs_fence(s);
            if (kind == TILE_SKIP) {
#pragma unroll
                for (int nb = 0; nb < BM / 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
            } else {
                bwd_probs_t<BM>(s, T.l + stage * BM * 4, p.scale_log2, lane);   /* P^T */
                if (kind == TILE_PARTIAL) bwd_ws_mask_t(s, sl, m0, key0 + lane / 4, n, lane);
            }
            u32 pf[BM / 16][4];
            pack_frags(pf, s);
            issue_acc(dv, pf, dot + so);                       /* dV += P^T dO, while the warps compute dS^T */
            wgmma_wait<1>();                                   /* dP^T is done (dV runs on) */
            regs_fence(dp);
            bwd_dscores_t<BM>(dp, s, T.d + stage * BM * 4, lane);   /* dS^T = P^T (dP^T - delta) */
            pack_frags(dsf, dp);
            wgmma_wait<0>();                                   /* dV is done: pf's registers are free */
        } else {
#pragma unroll
            for (int kc = 0; kc < BM / 16; ++kc) dsf[kc][0] = dsf[kc][1] = dsf[kc][2] = dsf[kc][3] = 0u;
        }
        if (prev_tile >= 0) ws_ds_wait(wg, it - 1);        /* dS^T of step it - 1, both warpgroups */
        float dq[DQ_N / 8][4];
        issue_dq(dq, dst + (ds_prev >> 4), dkt);           /* dQ of step it - 1 (in an item's first step: unused;
                                                              under a branch ptxas serialized the wgmma) */
        if (!wg_skip) {
            issue_acc(dk, dsf, dqt + so);                  /* dK += dS^T Q */
            wgmma_wait<1>();                               /* dQ of step it - 1 is done */
        } else {
            wgmma_wait<0>();
        }
        regs_fence(dq);
        if (prev_tile >= 0) ws_dq_put<ORDERED>(S, T.dq, dq, it - 1, prev_tile, item, wg, cw, lane);   /* for the writer */
        store_ds_frags(T.ds + ds_cur, dsf, cw, lane);      /* for dQ, in step it + 1 */
        fence_proxy_async();                               /* both stores, for the async proxy */
        if (prev_tile >= 0) ws_dq_hand(S, it - 1, lane);   /* to the writer */
        prev_tile = mt << 8 | sl.r;
        if (WARPGROUPS > 1) named_arrive(BAR_DS_FULL + 2 * wg + (it & 1), CONSUMER_THREADS);   /* for the other warpgroup */
        wgmma_wait<0>();                                   /* dV, dK: done reading the stage */
        regs_fence(dk);
        regs_fence(dv);
        mbar_arrive(bwd_ws_bar(S.empty[stage]));   /* the producer may refill it */
    }
    /* dQ of the item's last step (step it - 1): its dS^T complete in both warpgroups, as above. */
    if (prev_tile >= 0) {
        ws_ds_wait(wg, it - 1);
        float dq[DQ_N / 8][4];
        issue_dq(dq, dst + ((((it - 1) & 1) * BN * DS_ROW_BYTES) >> 4), dkt);
        wgmma_wait<0>();
        regs_fence(dq);
        ws_dq_put<ORDERED>(S, T.dq, dq, it - 1, prev_tile, item, wg, cw, lane);
        fence_proxy_async();
        ws_dq_hand(S, it - 1, lane);
    }
    /* Nothing reads this item's K and V any more (every product is done): the producer may
     * load the next item's while this one's dK and dV are written.  Every thread arrives, as
     * on empty (the slot's reads are the thread's own). */
    mbar_arrive(bwd_ws_bar(S.kv_empty));

    /* dK * scale and dV, staged through the warp's own rows of the dS^T buffers and of dQ
     * staging buffer 0 (not K and V, which the next item's loads fill meanwhile): once no
     * consumer reads the dS^T buffers (the last dQ products of both warpgroups; BAR_DS) and
     * the writers' adds have read the staged dQ (ws_dq_drain; one thread waits and BAR_DS
     * passes it on).  Packed: the sequence's rows from row0 (batch strides 0, tb = 0).  The
     * kv head from the item (not blockIdx.y: bwd_ws_block_of). */
    if (ctid == 0) ws_dq_drain(S, it);
    named_sync(BAR_DS, CONSUMER_THREADS);
    const long long row0 = S.row0;
    const bwd_ws_item &I = S.item[item & 3];
    /* The staging addresses made here, not before the item loop, where ptxas hoisted them and
     * spilled them through it (an opaque copy of the bases, which cannot leave the loop). */
    u32 sdk = T.ds + cw * 16 * SW_ROW, sdv = T.dq + cw * 16 * SW_ROW;
    int el = lane;
    asm volatile("" : "+r"(sdk), "+r"(sdv), "+r"(el));
    bwd_write_rows<sw128_tiles>(dk, p.scale, sdk, (elem_t *)p.dk + I.tb * p.dk_sb + row0 * p.dk_sn + I.kvh * p.dk_sh,
                                p.dk_sn, key0, n, el);
    bwd_write_rows<sw128_tiles>(dv, 1.f, sdv, (elem_t *)p.dv + I.tb * p.dv_sb + row0 * p.dv_sn + I.kvh * p.dv_sh,
                                p.dv_sn, key0, n, el);
    if (S.item[(item + 1) & 3].n0 >= n) break;   /* no next item (bwd_ws_next_item) */
    /* The next item's dS^T and dQ stores go where other warps have just read their rows (and
     * its first dQ product, whose result is not used, reads the dS^T buffers: fenced). */
    fence_proxy_async();
    named_sync(BAR_DS, CONSUMER_THREADS);
    }
    ws_dq_end(S, it, ctid);   /* the writers stop */
}

/* ==== The block order: longest first ====
 * Blocks are dispatched in linear order, x fastest.  Read as (KV tile, kv head, batch),
 * blockIdx went head by head: the short KV tiles at the end of every head were spread
 * through the launch, and the last head's came last, with little left to run beside them.
 * The default mode on a uniform batch reads the linear index tile-major instead: KV tile 0
 * of every kv head and batch, then tile 1, ...  That is longest first within a head: a KV
 * tile's query rows [n0 + lo, n_last + hi - 1] (bwd_cursor_next; lo >= 0) move with n0 in
 * whole query tiles (BN is a multiple of BM) and only the end n clips them, so a later tile
 * never has more steps.  FlashAttention-3's backward does the same (its non-persistent
 * SingleTileBwdLPTScheduler remaps the block index, longest first).  The prediction (list
 * scheduling of the band plan's steps per tile on 132 SMs: the makespan -2.4% at (B 4, H 16,
 * N 4096, d128), -0.5% at (1, 16, 16384, 128), -8% at (4, 8, 4096, 64), as good as sorting
 * every tile by its steps) against session 10's measurement: -1%, within noise, -4% of the
 * backward.  The grid (attn_bwd_grid) is unchanged, and this is a bijection of its blocks.
 *
 * The deterministic mode (ORDERED) has two orders (WS_DET_ASCENDING, kcfg_bwd_det_ascending):
 *   descending (0; BN = 2 BM, d128): main_sem's (bwd_order.cuh): a KV tile's turns after the
 *       later tiles of its (sequence, kv head), blockIdx.x counting tiles down from the last
 *       (so those were dispatched first), each head's query tiles ascending, so that tile
 *       j + 1 meets a query tile BN / BM steps before tile j.  That is head by head, shortest
 *       first.
 *   ascending (1; BN = BM, d64): the mirror, since session 11: turns after the tiles below,
 *       the blocks in this longest-first order (a smaller tile index, a smaller linear index:
 *       dispatched before), each head's query tiles from the last (bwd_cursor_next_desc), so
 *       that tile j - 1, which also started earlier, meets a query tile BN / BM steps before
 *       tile j.  Where the walk is clipped at n (tiles whose rows reach the end start at the
 *       last query tile) both meet it at the same step.
 * Either way a CTA waits only for CTAs dispatched before it: the first unfinished block waits
 * for finished ones only, no deadlock whatever the number of resident CTAs
 * (tests/unit/test_dq_order.c simulates both).  Measured (session 11, bench/NOTES-bwd.md):
 * the ascending order 6-8% faster than the descending one at d64 (BN = BM: there the
 * descending order's slack is one step, and the turns were on the chain), 1.5% slower at
 * (1,16,16384,128), 8% at (4,16,4096,128), the same with GQA.
 *
 * Packed sequences (cu_seqlens) keep blockIdx: z is the sequence, and its tiles past its end
 * return at once; tile-major across sequences of other lengths is not longest first, and
 * was not simulated.  x counts KV tiles up, or down in the descending deterministic order.
 */
struct bwd_ws_block {
    int tile, kvh, b;
};
/* Since session 14 every uniform batch runs persistent (bwd_ws_item_at), so only packed
 * sequences come here and the tile-major branch below runs for no launch; it goes with the
 * next GPU-checked change of this kernel (removing it changes the measured machine code). */
template <bool ORDERED>
DEV bwd_ws_block bwd_ws_block_of(const sp_bwd_kparams &p)
{
    if ((ORDERED && !WS_DET_ASCENDING) || p.cu_seqlens) return {(int)blockIdx.x, (int)blockIdx.y, (int)blockIdx.z};
    const unsigned heads = gridDim.y * gridDim.z;   /* blocks of one KV tile */
    const unsigned l = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned t = l / heads, r = l - t * heads;
    return {(int)t, (int)(r % gridDim.y), (int)(r / gridDim.y)};
}

/* ==== The kernel body: grid (ceil(n / BN), kv heads, batch), THREADS threads (ORDERED:
 * main_sem, the deterministic mode) ==== */
template <bool ORDERED>
DEV void bwd_ws_body(const sp_bwd_kparams &p, const bwd_tma_maps &tm)
{
    extern __shared__ unsigned char smem[];
    __shared__ bwd_ws_shared S;
    griddep_launch_dependents();   /* convert's blocks may wait on SMs our last blocks leave */
    /* The block's first item.  Persistent (p.work_count, a uniform batch): item blockIdx.x of
     * the order (bwd_ws_item_at), gridDim.x < the items; the deterministic mode claims it from
     * the counter (below).  Else (packed sequences: every uniform batch is persistent) the
     * block's KV tile, kv head and sequence (bwd_ws_block_of): blockIdx.z is the sequence, n
     * its length (KV tiles past it return). */
    bwd_ws_item first;
    int b;
    if (p.work_count && ORDERED) {
        /* The deterministic mode waits for turns across blocks: every item it holds must be
         * claimed by a running block, so that the first unfinished item in the turns' order is
         * always being worked on (a block that had item blockIdx.x from the start but was not
         * yet resident -- another kernel on the SMs -- could hold up every running block).
         * So the first item too comes from the counter, once pre has zeroed it. */
        if (threadIdx.x == 0) {
            griddep_wait();
            bwd_ws_next_item<ORDERED>(p, S.claimed);   /* not item[0]: thread 0 writes that below */
        }
        __syncthreads();
        first = S.claimed;
        b = first.b;
    } else if (p.work_count) {
        bwd_ws_item_at<ORDERED>(p, blockIdx.x, first);
        b = first.b;
    } else {
        const bwd_ws_block bk = bwd_ws_block_of<ORDERED>(p);
        b = bk.b;
        const int tiles = (seq_span_of(p, b).n + BN - 1) / BN;
        /* the descending deterministic order: x = 0 is the last tile, x past the tiles returns */
        first.n0 = !ORDERED || WS_DET_ASCENDING ? bk.tile * BN : bk.tile < tiles ? (tiles - 1 - bk.tile) * BN : 1 << 30;
        first.kvh = bk.kvh;
        first.b = b;
        first.tb = p.cu_seqlens ? 0 : b;
    }
    const seq_span sp = seq_span_of(p, b);
    const int n = sp.n, n0 = first.n0;
    if (n0 >= n) return;   /* block-uniform */
    const bwd_ws_tiles T = bwd_ws_tiles_at(smem);

    if (threadIdx.x == 0) {
        S.item[0] = first;
        S.n = n;
        S.row0 = sp.start;   /* 0 for a uniform batch */
        S.semoff = p.cu_seqlens ? sp.start / BM + b : 0;
        S.wsrow = p.cu_seqlens ? seq_ws_row(p, b) : 0;
        mbar_init(bwd_ws_bar(S.kv_full), 1);
        mbar_init(bwd_ws_bar(S.kv_empty), CONSUMER_THREADS);
#pragma unroll
        for (int st = 0; st < STAGES; ++st) {
            mbar_init(bwd_ws_bar(S.full[st]), 1);
            mbar_init(bwd_ws_bar(S.empty[st]), CONSUMER_THREADS);
        }
#pragma unroll
        for (int x = 0; x < WS_DQ_BUFS; ++x) {
            mbar_init(bwd_ws_bar(S.dq_full[x]), CONSUMER_WARPS);
            mbar_init(bwd_ws_bar(S.dq_empty[x]), 1);
        }
        mbar_fence_init();
        tma_prefetch_map(tm.q);
        tma_prefetch_map(tm.dout);
        tma_prefetch_map(tm.k);
        tma_prefetch_map(tm.v);
        tma_prefetch_map(tm.dqa);
    }
    __syncthreads();

    /* The role: warpgroup-uniform (through a shuffle, so the compiler knows), so that wgmma
     * and setmaxnreg sit on uniform paths. */
    const int wg = __shfl_sync(0xffffffffu, (int)threadIdx.x / 128, 0);
    if (wg == 0) {
        regs_dealloc<PRODUCER_REGS>();
        if (threadIdx.x == 0) bwd_ws_producer<ORDERED>(p, tm, S, smem);
        else if (threadIdx.x == 32) bwd_ws_writer<ORDERED>(p, tm, S, smem, 0);
        else if (WS_DQ_BUFS > 1 && threadIdx.x == 64) bwd_ws_writer<ORDERED>(p, tm, S, smem, 1);
    } else {
        regs_alloc<CONSUMER_REGS>();
        bwd_ws_consumer<ORDERED>(p, S, T, n);
    }
}
