/* kernels/fwd_block.cuh: where a forward block works, and its start, the
 * same for every forward kernel: the Q tile and the band plan, then the
 * first KV tiles of the plan. */
#pragma once
#include "bands.cuh"
#include "loads.cuh"
#include "seq.cuh"

/* BM query rows [m0, m0 + BM) of query head h (within the launch) of batch b; kvh: its kv
 * head (grouped-query attention); q, k, v: the heads' rows (row i at q + i * p.q_sn).
 * p.seqlen = n >= 1 tokens.  The grid is (ceil(n / BM), heads in the launch, batch), the
 * last query tile first: the long ones start early.  Packed sequences (seq.cuh): b is a
 * sequence, n its length, q, k, v start at its first row and `bands` is its band table
 * row; a tile with m0 >= n is past its end (the kernel returns). */
struct fwd_block {
    int tid, warp, lane, n, m0, h, b, kvh;
    const elem_t *q, *k, *v;
    const int *bands;
};

DEV fwd_block fwd_block_of(const sp_kparams &p)
{
    fwd_block f;
    f.tid = threadIdx.x;
    f.warp = f.tid / 32;
    f.lane = f.tid % 32;
    f.n = p.seqlen;
    f.m0 = (gridDim.x - 1 - blockIdx.x) * BM;
    f.h = blockIdx.y;
    f.b = blockIdx.z;
    f.kvh = f.h / GROUP;
    const seq_span s = seq_span_of(p, f.b);
    f.n = s.n;
    f.q = (const elem_t *)p.q + f.b * p.q_sb + f.h * p.q_sh + (long long)s.start * p.q_sn;
    f.k = (const elem_t *)p.k + f.b * p.k_sb + f.kvh * p.k_sh + (long long)s.start * p.k_sn;
    f.v = (const elem_t *)p.v + f.b * p.v_sb + f.kvh * p.v_sh + (long long)s.start * p.v_sn;
    f.bands = (const int *)p.bands + (long long)f.b * p.bands_sb + (p.head_offset + f.h) * BAND_STRIDE;
    return f;
}

/* Row 0 of the block's kv head in K or V (t, with strides sb, sh, sn) of the sequence
 * whose first row is `start`; from blockIdx, so a loop can compute it where it is used. */
DEV const elem_t *fwd_kv(u64 t, long long sb, long long sh, long long sn, int start)
{
    return (const elem_t *)t + blockIdx.z * sb + (blockIdx.y / GROUP) * sh + (long long)start * sn;
}

/* Where the block's O and LSE rows start (o: head h's row 0 of its sequence, rows o_sn
 * apart; lse: its LSE row).  Called in the epilogue: the sequence's first row is read
 * again there rather than kept in registers through the main loop. */
DEV elem_t *fwd_out(const sp_kparams &p, const fwd_block &f, float *&lse)
{
    const long long first = seq_span_of(p, f.b).start;
    lse = (float *)p.lse + f.b * p.lse_sb + f.h * p.lse_sh + first;
    return (elem_t *)p.o + f.b * p.o_sb + f.h * p.o_sh + first * p.o_sn;
}

/* 1. The Q tile -> shared memory at sQ (async, one commit group); the band plan of this query
 * tile (built by thread 0; a barrier publishes it).  2. The first AHEAD KV tiles of the plan
 * into stages 0.. at sKV, one commit group each (empty groups too, so that the wait counts of
 * the main loop stay fixed); Q's group is older than all of them.  L: the tiles' layout.
 * Returns the plan's KV tile count. */
template <int AHEAD, class L>
DEV int fwd_start(const sp_kparams &p, const fwd_block &f, band_plan &plan, u32 sQ, u32 sKV)
{
    load_tile<BM, L>(sQ, f.q, p.q_sn, f.m0, f.n, f.tid);
    cp_async_commit();
    if (f.tid == 0) band_plan_build(plan, f.bands, f.m0, f.n);
    __syncthreads();
    const int ntiles = plan.total;
#pragma unroll
    for (int st = 0; st < AHEAD; ++st) {
        if (st < ntiles) load_kv<L>(sKV + st * STAGE_BYTES, f.k, p.k_sn, f.v, p.v_sn, band_tile_at(plan, st) * BN, f.n, f.tid);
        cp_async_commit();
    }
    return ntiles;
}
