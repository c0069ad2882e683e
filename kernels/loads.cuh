/* kernels/loads.cuh: the forward's loads, global -> shared, asynchronous
 * (cp.async).  L is the tile layout: pad_tiles (layout.cuh, mma.sync) or
 * sw128_tiles (wgmma.cuh, whose column blocks depend on the tile's rows). */
#pragma once
#include "ptx.cuh"

/* Copy ROWS rows, from row r0 on, of a [sequence, HEAD_DIM] matrix whose rows are
 * `stride` elements apart into the tile at shared address `tile`.  Rows >= n are
 * zero-filled; their source address is clamped to row 0, which exists (n >= 1) and is
 * not read (src-size 0).  Thread tid copies chunks tid, tid + THREADS, ...: consecutive threads copy
 * consecutive 16-byte chunks of a row, so the reads coalesce. */
template <int ROWS, class L>
DEV void load_tile(u32 tile, const elem_t *g, long long stride, int r0, int n, int tid)
{
    constexpr int TOTAL = ROWS * CHUNKS, PASS_ROWS = THREADS / CHUNKS;
    if constexpr (THREADS % CHUNKS == 0 && ROWS % PASS_ROWS == 0) {
        /* Each thread keeps one chunk column and steps down PASS_ROWS rows per pass:
         * one pointer increment per copy instead of a 64-bit multiply. */
        const int row = tid / CHUNKS, chunk = tid % CHUNKS;
        const elem_t *src = g + (long long)(r0 + row) * stride + chunk * 8;
        if (r0 + ROWS <= n) {   /* every row exists: no checks (all tiles but the last) */
#pragma unroll
            for (int i = 0; i < ROWS / PASS_ROWS; ++i, src += PASS_ROWS * stride)
                cp_async_16(tile + L::template off<ROWS>(row + i * PASS_ROWS, chunk), src, true);
        } else {
#pragma unroll
            for (int i = 0; i < ROWS / PASS_ROWS; ++i, src += PASS_ROWS * stride) {
                const bool valid = r0 + row + i * PASS_ROWS < n;
                cp_async_16(tile + L::template off<ROWS>(row + i * PASS_ROWS, chunk), valid ? src : g, valid);
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < (TOTAL + THREADS - 1) / THREADS; ++i) {
            const int c = tid + i * THREADS;
            if (TOTAL % THREADS == 0 || c < TOTAL) {
                const int row = c / CHUNKS, chunk = c % CHUNKS;
                const bool valid = r0 + row < n;
                const elem_t *src = g + (valid ? (long long)(r0 + row) * stride : 0ll) + chunk * 8;
                cp_async_16(tile + L::template off<ROWS>(row, chunk), src, valid);
            }
        }
    }
}

/* One stage: the K and V tiles of keys [n0, n0 + BN). */
template <class L>
DEV void load_kv(u32 stage, const elem_t *k, long long k_sn, const elem_t *v, long long v_sn, int n0, int n,
                 int tid)
{
    load_tile<BN, L>(stage, k, k_sn, n0, n, tid);
    load_tile<BN, L>(stage + KV_TILE_BYTES, v, v_sn, n0, n, tid);
}
