/* kernels/bwd_common.cuh: what every backward kernel uses: 16-bit pairs as
 * floats, shared-memory float loads, vector atomics, the dS^T tile's layout,
 * the loads and stores of head_dim rows (for either tile layout: L is
 * pad_tiles, layout.cuh, or sw128_tiles, wgmma.cuh), and the warp GEMMs of
 * the mma.sync kernels on shared-memory tiles. */
#pragma once
#include "layout.cuh"
#include "bands.cuh"
#include "seq_bwd.cuh"

/* ==== Backward helpers ==== */

/* The two 16-bit values of a register (lower index in the lower half) as floats.  A
 * bfloat16 is the upper half of a float; a float16 is converted. */
DEV void bwd_unpack2(u32 v, float &lo, float &hi)
{
    if constexpr (ELEM_BF16) {
        lo = __uint_as_float(v << 16);
        hi = __uint_as_float(v & 0xffff0000u);
    } else {
        asm("{\n .reg .b16 l, h;\n mov.b32 {l, h}, %2;\n cvt.f32.f16 %0, l;\n cvt.f32.f16 %1, h;\n}\n"
            : "=f"(lo), "=f"(hi) : "r"(v));
    }
}

DEV float bwd_dot2(u32 a, u32 b)
{
    float a0, a1, b0, b1;
    bwd_unpack2(a, a0, a1);
    bwd_unpack2(b, b0, b1);
    return a0 * b0 + a1 * b1;
}

DEV float bwd_pos_inf() { return __int_as_float(0x7f800000); }

/* Two floats from shared memory (8-byte aligned). */
DEV float2 bwd_lds_f2(u32 addr)
{
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr));
    return v;
}

/* p[0] += x, p[1] += y in global memory, atomically (p 8-byte aligned).  A reduction
 * (no value returned) does not wait for the memory system.  Hopper adds the pair in one
 * vector reduction, earlier GPUs in two. */
DEV void bwd_red_add2(float *p, float x, float y)
{
#if __CUDA_ARCH__ >= 900
    asm volatile("red.global.add.v2.f32 [%0], {%1, %2};\n" :: "l"(p), "f"(x), "f"(y) : "memory");
#else
    atomicAdd(p, x);
    atomicAdd(p + 1, y);
#endif
}

/* The dS^T tile of main: BN rows (keys) of BM 16-bit values (queries), DS_ROW_BYTES
 * apart.  It is written as m16n8 accumulator pairs (one 32-bit word per lane: 8 rows x 4
 * words of one 16-byte chunk per instruction) and read by ldmatrix.trans (one chunk of
 * 8 consecutive rows per matrix), so chunks are XOR-swizzled like the head_dim tiles to
 * put those 8 rows in 8 different bank groups. */
DEV u32 bwd_ds_off(int row, int chunk)
{
    if constexpr (BM >= 64) return row * DS_ROW_BYTES + ((chunk ^ (row & 7)) << 4);
    /* BM = 32: 64-byte rows, two per 128-byte bank line: chunk c of row r at c ^ ((r / 2) % 4). */
    else return row * DS_ROW_BYTES + ((chunk ^ ((row >> 1) & 3)) << 4);
}

/* ==== Loads: global -> shared, asynchronous, into tiles of layout L ====
 * ROWS rows, from row r0 on, of a [sequence, HEAD_DIM] matrix whose rows are `stride`
 * elements apart, into the swizzled tile at shared address `tile`, by NT threads: thread
 * tid copies chunks tid, tid + NT, ..., so consecutive threads copy consecutive 16-byte
 * chunks of a row and the reads coalesce.  Rows >= n are zero-filled; their source
 * address is clamped to row 0, which exists (n >= 1) and is not read. */
template <int ROWS, int NT, class L = pad_tiles>
DEV void bwd_load_rows(u32 tile, const elem_t *g, long long stride, int r0, int n, int tid)
{
    constexpr int TOTAL = ROWS * CHUNKS;
#pragma unroll 1   /* rolled: unrolled, the compiler keeps every shared address in a register */
    for (int i = 0; i < (TOTAL + NT - 1) / NT; ++i) {
        const int c = tid + i * NT;
        if (TOTAL % NT == 0 || c < TOTAL) {
            const int row = c / CHUNKS, chunk = c % CHUNKS;
            const bool valid = r0 + row < n;
            const elem_t *src = g + (valid ? (long long)(r0 + row) * stride : 0ll) + chunk * 8;
            cp_async_16(tile + L::template off<ROWS>(row, chunk), src, valid);
        }
    }
}

/* ROWS consecutive floats (16-byte aligned, all readable: the scratch is padded to
 * ROW_PAD rows per head) into shared memory, plainly. */
template <int ROWS, int NT>
DEV void bwd_load_floats(u32 dst, const float *g, int tid)
{
    for (int c = tid; c < ROWS / 4; c += NT) cp_async_16(dst + 16 * c, g + 4 * c, true);
}

/* ==== Warp GEMMs on shared-memory tiles ====
 * Fragments as in mma_16816's comment; g = lane / 4, t = lane % 4.
 *
 * acc (16 x NROWS) = A B^T: A is the warp's 16 rows of a [row][HEAD_DIM] tile (sAw: its first
 * row, a multiple of 8 rows into the tile, so the swizzle of row l % 16 is the stored one),
 * B the first NROWS rows of another such tile.  acc[nb][e] is A row g + 8 (e / 2), B row
 * 8nb + 2t + e % 2.
 *   A, dims 16kc..16kc+15, one ldmatrix.x4: matrix 0 = rows 0-7 x dims +0-7 (a[0]), 1 = rows
 *   8-15 x +0-7 (a[1]), 2 = rows 0-7 x +8-15 (a[2]), 3 = rows 8-15 x +8-15 (a[3]); so lane l
 *   points at row l % 16, chunk 2kc + l / 16.
 *   B^T as the "col" operand: b0 = B^T[k = 2t..2t+1][n = g] = B[g][2t..2t+1], a pair within
 *   one B row: ldmatrix untransposed.  For B rows 16p..16p+15: matrix 0 = rows +0-7 x dims
 *   +0-7 (b0 of n-block 2p), 1 = rows +0-7 x +8-15 (b1 of 2p), 2 = rows +8-15 x +0-7 (b0 of
 *   2p+1), 3 = rows +8-15 x +8-15 (b1 of 2p+1); lane l points at row 16p + l % 8 + 8 (l / 16),
 *   chunk 2kc + (l / 8) % 2. */
template <int NROWS>
DEV void bwd_mma_abt(float (&acc)[NROWS / 8][4], u32 sAw, u32 sB, int lane)
{
#pragma unroll
    for (int nb = 0; nb < NROWS / 8; ++nb) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.f;
#pragma unroll 1   /* rolled: fewer precomputed addresses, no spills */
    for (int kc = 0; kc < HEAD_DIM / 16; ++kc) {
        u32 a[4];
        ldsm_x4(sAw + tile_off(lane & 15, 2 * kc + (lane >> 4)), a);
#pragma unroll
        for (int p = 0; p < NROWS / 16; ++p) {
            u32 b[4];
            ldsm_x4(sB + tile_off(16 * p + (lane & 7) + ((lane >> 4) << 3), 2 * kc + ((lane >> 3) & 1)), b);
            mma_16816(acc[2 * p], a, b[0], b[1]);
            mma_16816(acc[2 * p + 1], a, b[2], b[3]);
        }
    }
}

/* acc (16 x HEAD_DIM) += C B: C (16 x KROWS) is given as m16n8 accumulators (fp32, rounded
 * to 16 bits here), B is the first KROWS rows of a [row][HEAD_DIM] tile.  The accumulators
 * of n-blocks 2kc and 2kc+1, packed pairwise, are the A fragment of k-chunk kc: a[0] = row
 * g, k 2t..2t+1 = c[2kc][0..1]; a[1] = row g+8 = c[2kc][2..3]; a[2] = row g, k 2t+8.. =
 * c[2kc+1][0..1]; a[3] = c[2kc+1][2..3].  B wants two consecutive k (tile rows) of one
 * column per register, so it is read transposed: for rows 16kc.. and dims 16dp..16dp+15 one
 * ldmatrix.x4.trans reads matrix 0 = rows +0-7 x dims +0-7 (b0 of dim-block 2dp), 1 = rows
 * +8-15 x +0-7 (b1 of 2dp), 2 = rows +0-7 x +8-15 (b0 of 2dp+1), 3 = rows +8-15 x +8-15 (b1
 * of 2dp+1); lane l points at row 16kc + l % 16, chunk 2dp + l / 16.  acc[db][e] is row
 * g + 8 (e / 2), dim 8db + 2t + e % 2. */
template <int KROWS>
DEV void bwd_mma_cb(float (&acc)[HEAD_DIM / 8][4], const float (&c)[KROWS / 8][4], u32 sB, int lane)
{
#pragma unroll
    for (int kc = 0; kc < KROWS / 16; ++kc) {
        const u32 a[4] = { pack2(c[2 * kc][0], c[2 * kc][1]), pack2(c[2 * kc][2], c[2 * kc][3]),
                           pack2(c[2 * kc + 1][0], c[2 * kc + 1][1]), pack2(c[2 * kc + 1][2], c[2 * kc + 1][3]) };
#pragma unroll
        for (int dp = 0; dp < HEAD_DIM / 16; ++dp) {
            u32 b[4];
            ldsm_x4_trans(sB + tile_off(16 * kc + (lane & 15), 2 * dp + (lane >> 4)), b);
            mma_16816(acc[2 * dp], a, b[0], b[1]);
            mma_16816(acc[2 * dp + 1], a, b[2], b[3]);
        }
    }
}

/* A warp's 16 rows of fp32 accumulators (acc[db][e]: row g + 8 (e / 2), dim 8db + 2t + e % 2)
 * times mul, as 16-bit, to rows row0.. of dst (rows `stride` elements apart; rows >= n are
 * not stored).  They go through the warp's own 16 rows of a shared tile (sW: the first;
 * the caller makes sure no one else reads them any more; layout L, tiles of BN rows), so that each lane
 * then stores whole 16-byte chunks, coalesced. */
template <class L = pad_tiles>
DEV void bwd_write_rows(const float (&acc)[HEAD_DIM / 8][4], float mul, u32 sW, elem_t *dst, long long stride,
                    int row0, int n, int lane)
{
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db) {
        st_shared_u32(sW + L::template off<BN>(g, db) + 4 * t, pack2(acc[db][0] * mul, acc[db][1] * mul));
        st_shared_u32(sW + L::template off<BN>(g + 8, db) + 4 * t, pack2(acc[db][2] * mul, acc[db][3] * mul));
    }
    __syncwarp();
#pragma unroll
    for (int k = 0; k < 16 * CHUNKS / 32; ++k) {
        const int c16 = lane + 32 * k, row = c16 / CHUNKS, chunk = c16 % CHUNKS;
        if (row0 + row < n)
            *(u32x4 *)(dst + (long long)(row0 + row) * stride + chunk * 8) = ld_shared_u32x4(sW + L::template off<BN>(row, chunk));
    }
}
