/* kernels/bwd_ws.cuh: the warp-specialized backward main kernel (sm_90a),
 * the family bwd-ws: the default backward on sm_90a (tiles 64x128:s2:ws at
 * head_dim 128, 64x64:s3:ws at 64; checked and timed in session 8,
 * bench/RESULTS.md S8).
 * The math of a step is bwd_wgmma.cuh's, unchanged and in its order; what
 * changes is who loads and how the warps meet (bench/NOTES-bwd.md, item 2;
 * FlashAttention-3's backward):
 *
 *   warpgroup 0, the producer (setmaxnreg down to PRODUCER_REGS; one thread
 *       works, the other 127 exit): loads the K and V tiles once (TMA, one
 *       box of BN rows per 64-value column block), then walks the cursor
 *       (bwd_iter.cuh's bwd_cursor_next) and, per query tile, waits until
 *       the ring's stage is empty, writes the stage's slot (mt, r, the
 *       intervals), announces the stage's bytes (arrive.expect_tx on FULL)
 *       and loads the Q and dO tiles by TMA (boxes of BM rows, the 128-byte
 *       swizzle: the sw128 tile layout the wgmma descriptors read, as
 *       fwd_ws.cuh's Q tiles) and the lse2 and delta rows by 1-D bulk
 *       copies.  After the last tile it writes an end slot (mt = -1) and
 *       arrives on FULL without bytes.
 *   warpgroups 1 .. BN / 64, the consumers (setmaxnreg up to CONSUMER_REGS):
 *       warpgroup c owns keys 64c .. 64c + 63 and their dK and dV, exactly
 *       as warpgroup c of bwd_wgmma.cuh; per step they wait on FULL, not on
 *       cp.async and __syncthreads, and hold no cursor and no load address.
 *
 * Barriers (mbarriers in static shared memory; iteration k of the ring uses
 * stage k % STAGES with parity (k / STAGES) & 1, mbarrier.cuh's convention):
 *   kv_full      count 1 (the producer's expect_tx) + the K and V bytes; one
 *                phase, waited (parity 0) by every consumer before its
 *                first product and, always, before the end writes dK and dV
 *                through the K and V tiles (no copy may still land there).
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
 *   named barrier BAR_DS (1), CONSUMER_THREADS: once per step, just before
 *                dQ of the previous step is issued (the argument is at the
 *                loop), and twice at the end: before the last dQ, and before
 *                dK and dV are staged through the K and V tiles that every
 *                warpgroup's dQ read.
 *   Nothing else: no __syncthreads after the roles split.
 *
 * Registers: __launch_bounds__(THREADS, 1) caps the kernel at 65536 /
 * THREADS at launch (168 for 384 threads: d128); the producer gives back to
 * PRODUCER_REGS (24) and the consumers take CONSUMER_REGS (240: 128 x 24 +
 * 256 x 240 = 128 x 168 + 256 x 168, the whole pool; kcfg_ws_consumer_regs).
 * (d64: 256 threads, one consumer warpgroup; ptxas reports 240 at launch.)
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
 * Deterministic mode (ORDERED: the entry main_sem): bwd_order.cuh's protocol,
 * as bwd_wgmma.cuh's main_sem runs it: KV tiles in descending order, each
 * warp's dQ adds of a query tile in their turn.  The producer computes each
 * step's rank (bwd_dq_rank, into S.targets; it has the time and the
 * registers), consumer thread 0 turns it into the step's turn (S.dq_turns)
 * at the end of the step, before its arrive frees the slot.
 *
 * Supported: uniform batches (no cu_seqlens: the host refuses packed
 * sequences for this family and the plans pick a :wgmma tile for them).
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
    STAGE_TX_BYTES = 2 * Q_TILE_BYTES + 2 * BM * 4,   /* Q, dO, lse2, delta of one stage */
};
static_assert(THREADS == PRODUCER_THREADS + CONSUMER_THREADS && PRODUCER_THREADS == 128,
              "one producer warpgroup, then the consumers");
static_assert(BN % 64 == 0 && BN <= 256 && BM <= 256 && HEAD_DIM % 64 == 0, "TMA boxes: 64 values, <= 256 rows");
static_assert(BM * 4 % 16 == 0, "bulk copies of lse2 and delta: whole 16-byte units");

/* The four maps of the backward (host: runtime/attn_bwd.c, attn_bwd_tma_maps):
 * Q and dO in boxes of BM rows over the query heads, K and V in boxes of BN
 * rows over the kv heads (tma.cuh's 4-D maps). */
struct bwd_tma_maps {
    tma_map q, dout, k, v;
    tma_map dqa;   /* dq_accum [B, N, H, D] fp32, boxes of 16 rows x 32 dims (128-byte swizzle) */
};

/* Barriers and the ring's slots, in static shared memory. */
struct bwd_ws_shared {
    unsigned long long kv_full, full[STAGES], empty[STAGES];
    bwd_slot slots[STAGES];
    int targets[STAGES];       /* ORDERED: the stage's step's turn: its rank x WARPS */
    bwd_dq_turn dq_turns[2];   /* ORDERED: step s's turn in entry s % 2 (bwd_wgmma.cuh's main_sem) */
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
    /* dQ staging (ws_dq_stage): warp cw's at + cw * WS_DQ_WARP_BYTES, 1024-aligned for the
     * 128-byte swizzle; it fits the DQ_STAGE_BYTES that the host reserves (bwd_wgmma.cuh's
     * padded rows) with room for the alignment (static_assert below). */
    t.dq = (t.d + STAGES * BM * 4 + 1023u) & ~1023u;
    return t;
}

/* ==== dQ: staged per warp, added by TMA ====
 * A warp's part of a step's dQ is 16 rows x DQ_N (64) dims: two boxes of 16 rows x 32 fp32
 * (128 bytes a row) in the 128-byte swizzle, reduce-added into dq_accum by two TMA
 * instructions of lane 0 (tma.cuh's tma_reduce_add_4d; rows past n lie past the map's edge
 * and are not added).  bwd_wgmma.cuh's dq_add_rows issues one bulk reduce-add per row from
 * lanes 0..15, and as the instruction takes its addresses in uniform registers, ptxas
 * serializes the 16 lanes (ELECT, R2UR, UBLKRED in a loop): ncu put a fifth of this
 * kernel's stall samples in that loop (session 8). */
enum : int {
    WS_DQ_BOX_BYTES = 16 * 128,                  /* 16 rows x 32 fp32 */
    WS_DQ_WARP_BYTES = 2 * WS_DQ_BOX_BYTES,      /* DQ_N = 64 dims */
};
static_assert(DQ_N == 64, "a warp's dQ is two 32-dim boxes");
static_assert(CONSUMER_WARPS * WS_DQ_WARP_BYTES + 1024 <= DQ_STAGE_BYTES, "ws dQ staging fits the host's reservation");

/* The warp's rows of d into its staging boxes, once its last adds have read them. */
DEV void ws_dq_stage(u32 sdq, const float (&d)[DQ_N / 8][4], int lane)
{
    if (lane == 0) tma_store_wait_read<0>();   /* the warp's last adds have read the boxes */
    __syncwarp();
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int nb = 0; nb < DQ_N / 8; ++nb) {
        /* dims 8nb + 2t + {0, 1}: box nb / 4, 16-byte chunk 2 (nb % 4) + t / 2 of the row, which
         * the swizzle moves to chunk ^ (row % 8); rows g and g + 8 (both row % 8 = g). */
        const u32 off = (u32)(nb / 4) * WS_DQ_BOX_BYTES + (u32)(((2 * (nb % 4) + (t >> 1)) ^ g) * 16 + (t & 1) * 8);
        st_shared_v2f32(sdq + off + g * 128, d[nb][0], d[nb][1]);
        st_shared_v2f32(sdq + off + (g + 8) * 128, d[nb][2], d[nb][3]);
    }
    fence_proxy_async();   /* ordinary stores, read next by the copy engine */
    __syncwarp();
}

/* Lane 0 adds the warp's staged boxes into rows i0.. and dims col0.. of head h. */
DEV void ws_dq_add(const tma_map &dqa, u32 sdq, int col0, int i0, int h, int b, int lane)
{
    if (lane == 0) {
        tma_reduce_add_4d(dqa, sdq, col0, i0, h, b);
        tma_reduce_add_4d(dqa, sdq + WS_DQ_BOX_BYTES, col0 + 32, i0, h, b);
        tma_store_commit();
    }
}

/* ==== The producer: one thread ====
 * Query tile mt of head h = kvh * GROUP + r: rows mt * BM .. of the map's head h (rows past n
 * are zero-filled by TMA, as cp.async's zero-fill did); lse2 and delta rows mt * BM .. of the
 * head's padded scratch row (pre wrote lse2 = +inf, delta = 0 past n, up to seqlen_pad, a
 * multiple of 128 >= every tile's end: the copy never leaves the row). */
template <bool ORDERED>
DEV void bwd_ws_producer(const sp_bwd_kparams &p, const bwd_tma_maps &tm, bwd_ws_shared &S, const bwd_ws_tiles &T,
                         const int *rows, int b, int kvh, int n0, int n)
{
    mbar_arrive_expect_tx(bwd_ws_bar(S.kv_full), 2 * KV_TILE_BYTES);
#pragma unroll
    for (int cb = 0; cb < COL_BLOCKS; ++cb) {
        tma_load_4d(T.k + cb * BN * SW_ROW, tm.k, bwd_ws_bar(S.kv_full), 64 * cb, n0, kvh, b);
        tma_load_4d(T.v + cb * BN * SW_ROW, tm.v, bwd_ws_bar(S.kv_full), 64 * cb, n0, kvh, b);
    }
    bwd_cursor cur;
    bwd_cursor_init(cur);
    int stage = 0;
    u32 phase = 0;
    int r, mt;
    for (;;) {
        const bool any = bwd_cursor_next(cur, rows, n0, n, r, mt);
        mbar_wait(bwd_ws_bar(S.empty[stage]), phase ^ 1);   /* every consumer warp is done with it */
        bwd_slot &slot = S.slots[stage];
        const u32 full = bwd_ws_bar(S.full[stage]);
        if (!any) {
            slot.mt = -1;   /* the end: the consumers leave the loop */
            mbar_arrive(full);
            return;
        }
        const int *row = rows + r * BAND_STRIDE;
        slot.mt = mt;
        slot.r = r;
        slot.count = min(row[0], MAX_INTERVALS);
#pragma unroll
        for (int k = 0; k < MAX_INTERVALS; ++k) {
            slot.lo[k] = row[1 + 2 * k];
            slot.hi[k] = row[2 + 2 * k];
        }
        if constexpr (ORDERED) S.targets[stage] = bwd_dq_rank(slot, n0 / BN, n) * WARPS;
        mbar_arrive_expect_tx(full, STAGE_TX_BYTES);   /* release: the slot is published with the phase */
        const int h = kvh * GROUP + r, m0 = mt * BM;
#pragma unroll
        for (int cb = 0; cb < COL_BLOCKS; ++cb) {
            tma_load_4d(T.q + stage * Q_TILE_BYTES + cb * BM * SW_ROW, tm.q, full, 64 * cb, m0, h, b);
            tma_load_4d(T.dout + stage * Q_TILE_BYTES + cb * BM * SW_ROW, tm.dout, full, 64 * cb, m0, h, b);
        }
        const long long w = b * p.ws_sb + h * p.ws_sh + m0;
        bulk_load(T.l + stage * BM * 4, (const float *)p.lse2 + w, BM * 4, full);
        bulk_load(T.d + stage * BM * 4, (const float *)p.delta + w, BM * 4, full);
        if (++stage == STAGES) {
            stage = 0;
            phase ^= 1;
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

/* ==== The consumers ====
 * Warpgroup c (0 .. BN / 64 - 1) of the consumers, warp cw (0 .. CONSUMER_WARPS - 1) of them:
 * bwd_wgmma.cuh's warpgroup c and warp cw, step for step. */
template <bool ORDERED>
DEV void bwd_ws_consumer(const sp_bwd_kparams &p, const bwd_tma_maps &tm, bwd_ws_shared &S, const bwd_ws_tiles &T,
                         int b, int kvh, int n0, int n)
{
    const int ctid = (int)threadIdx.x - PRODUCER_THREADS, cw = ctid / 32, lane = ctid % 32, wg = cw / 4;
    const int key0 = n0 + 16 * cw;   /* this warp's first key */
    const u32 sdQ = T.dq + cw * WS_DQ_WARP_BYTES;   /* this warp's dQ staging */

    float dk[HEAD_DIM / 8][4], dv[HEAD_DIM / 8][4];
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db)
#pragma unroll
        for (int e = 0; e < 4; ++e) dk[db][e] = dv[db][e] = 0.f;

    /* Descriptors as bwd_wgmma.cuh's (stage st adds st * Q_TILE_BYTES / 16). */
    const u64 dka = smem_desc(T.k + wg * WG_KEYS * SW_ROW, 16, 1024);
    const u64 dva = smem_desc(T.v + wg * WG_KEYS * SW_ROW, 16, 1024);
    const u64 dqb = smem_desc(T.q, 16, 1024), dob = smem_desc(T.dout, 16, 1024);
    const u64 dqt = smem_desc(T.q, BM * SW_ROW, 1024), dot = smem_desc(T.dout, BM * SW_ROW, 1024);
    const u64 dst = smem_desc(T.ds, BN * SW_ROW, 1024);
    const u64 dkt = smem_desc(T.k + wg * (DQ_N / 64) * BN * SW_ROW, BN * SW_ROW, 1024);

    /* dS^T buffer 1 is "step -1's": zero, so that step 0's dQ product is 0 (and not added).
     * Published to wgmma by the fence and to the other warpgroup by step 0's BAR_DS. */
    for (int w = ctid; w < BN * DS_ROW_BYTES / 4; w += CONSUMER_THREADS) st_shared_u32(T.ds + BN * DS_ROW_BYTES + 4 * w, 0u);
    fence_proxy_async();

    mbar_wait(bwd_ws_bar(S.kv_full), 0);   /* K and V have landed */

    /* The steps.  Step it's dS^T goes to buffer it % 2 and is read by dQ(it), issued in step
     * it + 1 by both warpgroups (each reads every key's row of it).  So dQ(it - 1), issued
     * in step it, needs both warpgroups' dS^T of step it - 1 stored (and fenced for the async
     * proxy); and step it's store into buffer it % 2 needs dQ(it - 2), which read that buffer
     * in step it - 1 in both warpgroups, to be done.  Every consumer thread reaches BAR_DS of
     * step it after the whole of its step it - 1: its dS^T store and fence, and its
     * wgmma_wait<0>, which covers its warpgroup's dQ(it - 2).  One BAR_DS per step, placed
     * just before dQ(it - 1) is issued (the first of the two needs; the store comes after
     * it), gives both; S^T, dP^T, P^T, dV and dS^T of step it run before it, so one
     * warpgroup may be up to that far ahead of the other.  Step 0's BAR_DS publishes the
     * zeroed buffer 1.  The staged dQ boxes (sdQ) are each warp's own, guarded by lane 0's
     * bulk waits as in bwd_wgmma.cuh. */
    static_assert(GROUP <= 256, "the head in group fits 8 bits");
    int it = 0, prev_tile = 0;
    for (;; ++it) {
        /* The ring's position, from it (two registers fewer than carrying them: the loop is
         * at the consumers' budget). */
        const int stage = it % STAGES;
        mbar_wait(bwd_ws_bar(S.full[stage]), (u32)(it / STAGES) & 1);   /* the stage's tiles, rows and slot */
        const bwd_slot &sl = S.slots[stage];
        const int mt = sl.mt;
        if (mt < 0) break;   /* the end slot: the same for every consumer */
        const u32 so = (u32)(stage * Q_TILE_BYTES) >> 4;
        const u32 ds_cur = (u32)((it & 1) * BN * DS_ROW_BYTES), ds_prev = (u32)(BN * DS_ROW_BYTES) - ds_cur;
        float s[BM / 8][4], dp[BM / 8][4];
        issue_st(s, dka, dqb + so);                        /* S^T = K Q^T */
        issue_st(dp, dva, dob + so);                       /* dP^T = V dO^T */
        const int m0 = mt * BM;
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
        u32 dsf[BM / 16][4];
        pack_frags(dsf, dp);
        wgmma_wait<0>();                                   /* dV is done: pf's registers are free */
        named_sync(BAR_DS, CONSUMER_THREADS);              /* step it - 1 is done in every consumer */
        float dq[DQ_N / 8][4];
        issue_dq(dq, dst + (ds_prev >> 4), dkt);           /* dQ of step it - 1 */
        issue_acc(dk, dsf, dqt + so);                      /* dK += dS^T Q */
        wgmma_wait<1>();                                   /* dQ of step it - 1 is done */
        regs_fence(dq);
        if (it > 0) {
            ws_dq_stage(sdQ, dq, lane);
            if constexpr (ORDERED) dq_turn_wait(S.dq_turns[(it - 1) & 1], lane);
            const int tile = ORDERED ? S.dq_turns[(it - 1) & 1].tile : prev_tile;
            ws_dq_add(tm.dqa, sdQ, wg * DQ_N, (tile >> 8) * BM + 16 * (cw % 4), kvh * GROUP + (tile & 255), b, lane);
        }
        if constexpr (!ORDERED) prev_tile = mt << 8 | sl.r;
        store_ds_frags(T.ds + ds_cur, dsf, cw, lane);      /* for dQ, in step it + 1 */
        fence_proxy_async();
        wgmma_wait<0>();                                   /* dV, dK: done reading the stage */
        regs_fence(dk);
        regs_fence(dv);
        /* ORDERED: release the turn of the adds this step made (step it - 1's dQ), then this
         * step's turn from its slot, before the arrive below lets the producer overwrite it
         * (bwd_wgmma.cuh's main_sem says why here; the entry written is read after the next
         * BAR_DS, and was last read before this step's). */
        if constexpr (ORDERED) {
            if (it > 0) dq_turn_release(S.dq_turns[(it - 1) & 1].sem, lane);
            if (ctid == 0) {
                bwd_dq_turn &t = S.dq_turns[it & 1];
                t.sem = (int *)p.dq_sem + b * p.sem_sb + (kvh * GROUP + sl.r) * p.sem_sh + mt;
                t.target = S.targets[stage];
                t.tile = mt << 8 | sl.r;
            }
        }
        mbar_arrive(bwd_ws_bar(S.empty[stage]));   /* the producer may refill it */
    }
    /* dQ of the last step (it steps ran): its dS^T complete in both warpgroups, as above. */
    named_sync(BAR_DS, CONSUMER_THREADS);
    if (it > 0) {
        float dq[DQ_N / 8][4];
        issue_dq(dq, dst + ((((it - 1) & 1) * BN * DS_ROW_BYTES) >> 4), dkt);
        wgmma_wait<0>();
        regs_fence(dq);
        ws_dq_stage(sdQ, dq, lane);
        if constexpr (ORDERED) dq_turn_wait(S.dq_turns[(it - 1) & 1], lane);
        const int tile = ORDERED ? S.dq_turns[(it - 1) & 1].tile : prev_tile;
        ws_dq_add(tm.dqa, sdQ, wg * DQ_N, (tile >> 8) * BM + 16 * (cw % 4), kvh * GROUP + (tile & 255), b, lane);
    }
    /* Every reduce-add has read its rows before the CTA ends (ORDERED: the last adds are
     * complete and their turn released). */
    if constexpr (ORDERED) dq_turn_release(it > 0 ? S.dq_turns[(it - 1) & 1].sem : nullptr, lane);
    else tma_store_wait<0>();

    /* dK * scale and dV, staged through the warp's own rows of the K and V tiles once no
     * consumer reads them (the last dQ read every row of K's column blocks). */
    named_sync(BAR_DS, CONSUMER_THREADS);
    bwd_write_rows<sw128_tiles>(dk, p.scale, T.k + cw * 16 * SW_ROW, (elem_t *)p.dk + b * p.dk_sb + kvh * p.dk_sh,
                                p.dk_sn, key0, n, lane);
    bwd_write_rows<sw128_tiles>(dv, 1.f, T.v + cw * 16 * SW_ROW, (elem_t *)p.dv + b * p.dv_sb + kvh * p.dv_sh, p.dv_sn,
                                key0, n, lane);
}

/* ==== The kernel body: grid (ceil(n / BN), kv heads, batch), THREADS threads (ORDERED:
 * main_sem, the deterministic mode) ==== */
template <bool ORDERED>
DEV void bwd_ws_body(const sp_bwd_kparams &p, const bwd_tma_maps &tm)
{
    extern __shared__ unsigned char smem[];
    __shared__ bwd_ws_shared S;
    /* ORDERED: KV tiles in descending order (bwd_order.cuh says why), as bwd_block_of<true>. */
    const int n = p.seqlen, kvh = (int)blockIdx.y, b = (int)blockIdx.z, tiles = (n + BN - 1) / BN;
    const int n0 = !ORDERED ? (int)blockIdx.x * BN : (int)blockIdx.x < tiles ? (tiles - 1 - (int)blockIdx.x) * BN : n;
    if (n0 >= n) return;   /* block-uniform */
    const bwd_ws_tiles T = bwd_ws_tiles_at(smem);

    if (threadIdx.x == 0) {
        mbar_init(bwd_ws_bar(S.kv_full), 1);
#pragma unroll
        for (int st = 0; st < STAGES; ++st) {
            mbar_init(bwd_ws_bar(S.full[st]), 1);
            mbar_init(bwd_ws_bar(S.empty[st]), CONSUMER_THREADS);
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
        if (threadIdx.x == 0)
            bwd_ws_producer<ORDERED>(p, tm, S, T, (const int *)p.bands + (p.head_offset + kvh * GROUP) * BAND_STRIDE, b, kvh, n0,
                            n);
    } else {
        regs_alloc<CONSUMER_REGS>();
        bwd_ws_consumer<ORDERED>(p, tm, S, T, b, kvh, n0, n);
    }
}
