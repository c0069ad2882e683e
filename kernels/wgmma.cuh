/* kernels/wgmma.cuh: Hopper's warpgroup MMA (sm_90a): the 128-byte-swizzled
 * tile layout it reads, its fences and descriptors, and the m64nNk16
 * instruction for every N the kernels use (16..256 in steps of 16), as
 * wgmma_op<N>::ss / ss_t / rs. */
#pragma once
#include "ptx.cuh"

/* ==== Shared-memory tiles for wgmma ====
 * A tile of ROWS rows: column block cb = chunk / 8 (64 values) at cb * ROWS * 128 bytes,
 * row r of it at r * 128, chunk c % 8 at (c ^ r) % 8: the canonical "128-byte swizzle"
 * layout of wgmma's shared-memory operands, and free of bank conflicts for the 16-byte
 * accesses of cp.async and the epilogue.  Tiles start 1024-byte aligned. */
enum : int { SW_ROW = 128 };                /* bytes per row of a column block */
template <int ROWS> DEV u32 tile_off(int row, int chunk)
{
    return (chunk >> 3) * (ROWS * SW_ROW) + row * SW_ROW + (((chunk & 7) ^ (row & 7)) << 4);
}

/* This layout as a type, for the loaders that serve both layouts (loads.cuh,
 * bwd_common.cuh). */
struct sw128_tiles {
    template <int ROWS> DEV u32 off(int row, int chunk) { return tile_off<ROWS>(row, chunk); }
};

/* ==== wgmma: the warpgroup's asynchronous tensor-core MMA (sm_90a) ====
 * The 128 threads of a warpgroup issue it together.  It runs asynchronously: issue a
 * batch after wgmma_fence (registers written since are ordered before it), close it
 * with wgmma_commit, and read the accumulators only after wgmma_wait.  regs_fence
 * keeps the compiler from moving register accesses across those points.
 *
 * Accumulators of m64nN: in warp w of the group, lane l holds d[nb][0..1] = row
 * 16w + l/4, columns 8nb + 2(l%4) + {0, 1}, and d[nb][2..3] = the same columns of row
 * 16w + l/4 + 8: per warp, the m16n8 fragments of mma.sync.  An A fragment from
 * registers has mma.sync's m16k16 A layout for the warp's 16 rows. */
DEV void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
DEV void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> DEV void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N) : "memory"); }
template <int R> DEV void regs_fence(float (&d)[R][4])
{
#pragma unroll
    for (int i = 0; i < R; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) asm volatile("" : "+f"(d[i][j]) :: "memory");
}
/* Shared memory written by cp.async (the generic proxy) is read by wgmma (the async
 * proxy): each writer fences before the barrier that publishes it. */
DEV void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

/* A shared-memory matrix descriptor for the 128-byte-swizzled layout (tile_off):
 * start address, leading and stride byte offsets (all in 16-byte units), layout type
 * 1 = 128B swizzle in bits 62-63.
 *   K-major operands (Q, K: the k16 slice is 32 contiguous bytes of each row): rows
 *   are 128 bytes apart, groups of 8 rows SBO = 1024 apart; LBO is unused.
 *   MN-major (V, read transposed: the N = dims are contiguous): 64-value column
 *   blocks LBO = BN * 128 apart, groups of 8 keys SBO = 1024 apart. */
DEV u64 smem_desc(u32 addr, u32 lbo, u32 sbo)
{
    return (u64)((addr & 0x3ffffu) >> 4) | ((u64)(lbo >> 4) << 16) | ((u64)(sbo >> 4) << 32) | (1ull << 62);
}

/* S = Q K^T, one k16 step (accumulate = 0 on the first: S = Q K^T, no zeroing needed). */

/* ==== The m64nNk16 instructions ====
 * D (64 x N, fp32) += A B for one k16 step, ELEM_PTX inputs:
 *   wgmma_op<N>::ss(d, desc_a, desc_b, accumulate)  A and B shared-memory descriptors, both
 *                                                   K-major; accumulate == 0: D = A B
 *   wgmma_op<N>::ss_t(...)                          the same, both MN-major (read transposed)
 *   wgmma_op<N>::rs(d, a, desc_b)                   A a register fragment (mma.sync's m16k16
 *                                                   A layout for each warp's 16 rows), B
 *                                                   read transposed (MN-major)
 * d is the accumulator, d[N / 8][4] (layout above).  Inline PTX names each register of an
 * asm statement by its number, and the accumulator alone is N / 2 of them, so the
 * instruction is written out per N from three tables: WG_REGS_<N> "%0, ..., %(N/2 - 1)",
 * WG_ACC_<N> the operands d[0][0] .. d[N/8 - 1][3], and in WG_SHAPES one row per N with
 * the numbers of the operands after them (N/2 .. N/2 + 5). */
#define WG_REGS_16 "%0, %1, %2, %3, %4, %5, %6, %7"
#define WG_REGS_32 WG_REGS_16 ", %8, %9, %10, %11, %12, %13, %14, %15"
#define WG_REGS_48 WG_REGS_32 ", %16, %17, %18, %19, %20, %21, %22, %23"
#define WG_REGS_64 WG_REGS_48 ", %24, %25, %26, %27, %28, %29, %30, %31"
#define WG_REGS_80 WG_REGS_64 ", %32, %33, %34, %35, %36, %37, %38, %39"
#define WG_REGS_96 WG_REGS_80 ", %40, %41, %42, %43, %44, %45, %46, %47"
#define WG_REGS_112 WG_REGS_96 ", %48, %49, %50, %51, %52, %53, %54, %55"
#define WG_REGS_128 WG_REGS_112 ", %56, %57, %58, %59, %60, %61, %62, %63"
#define WG_REGS_144 WG_REGS_128 ", %64, %65, %66, %67, %68, %69, %70, %71"
#define WG_REGS_160 WG_REGS_144 ", %72, %73, %74, %75, %76, %77, %78, %79"
#define WG_REGS_176 WG_REGS_160 ", %80, %81, %82, %83, %84, %85, %86, %87"
#define WG_REGS_192 WG_REGS_176 ", %88, %89, %90, %91, %92, %93, %94, %95"
#define WG_REGS_208 WG_REGS_192 ", %96, %97, %98, %99, %100, %101, %102, %103"
#define WG_REGS_224 WG_REGS_208 ", %104, %105, %106, %107, %108, %109, %110, %111"
#define WG_REGS_240 WG_REGS_224 ", %112, %113, %114, %115, %116, %117, %118, %119"
#define WG_REGS_256 WG_REGS_240 ", %120, %121, %122, %123, %124, %125, %126, %127"

#define WG_ACC_16 \
    "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), \
    "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3])
#define WG_ACC_32 WG_ACC_16, \
    "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), \
    "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3])
#define WG_ACC_48 WG_ACC_32, \
    "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), \
    "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3])
#define WG_ACC_64 WG_ACC_48, \
    "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
    "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
#define WG_ACC_80 WG_ACC_64, \
    "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), \
    "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3])
#define WG_ACC_96 WG_ACC_80, \
    "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), \
    "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3])
#define WG_ACC_112 WG_ACC_96, \
    "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), \
    "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3])
#define WG_ACC_128 WG_ACC_112, \
    "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), \
    "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
#define WG_ACC_144 WG_ACC_128, \
    "+f"(d[16][0]), "+f"(d[16][1]), "+f"(d[16][2]), "+f"(d[16][3]), \
    "+f"(d[17][0]), "+f"(d[17][1]), "+f"(d[17][2]), "+f"(d[17][3])
#define WG_ACC_160 WG_ACC_144, \
    "+f"(d[18][0]), "+f"(d[18][1]), "+f"(d[18][2]), "+f"(d[18][3]), \
    "+f"(d[19][0]), "+f"(d[19][1]), "+f"(d[19][2]), "+f"(d[19][3])
#define WG_ACC_176 WG_ACC_160, \
    "+f"(d[20][0]), "+f"(d[20][1]), "+f"(d[20][2]), "+f"(d[20][3]), \
    "+f"(d[21][0]), "+f"(d[21][1]), "+f"(d[21][2]), "+f"(d[21][3])
#define WG_ACC_192 WG_ACC_176, \
    "+f"(d[22][0]), "+f"(d[22][1]), "+f"(d[22][2]), "+f"(d[22][3]), \
    "+f"(d[23][0]), "+f"(d[23][1]), "+f"(d[23][2]), "+f"(d[23][3])
#define WG_ACC_208 WG_ACC_192, \
    "+f"(d[24][0]), "+f"(d[24][1]), "+f"(d[24][2]), "+f"(d[24][3]), \
    "+f"(d[25][0]), "+f"(d[25][1]), "+f"(d[25][2]), "+f"(d[25][3])
#define WG_ACC_224 WG_ACC_208, \
    "+f"(d[26][0]), "+f"(d[26][1]), "+f"(d[26][2]), "+f"(d[26][3]), \
    "+f"(d[27][0]), "+f"(d[27][1]), "+f"(d[27][2]), "+f"(d[27][3])
#define WG_ACC_240 WG_ACC_224, \
    "+f"(d[28][0]), "+f"(d[28][1]), "+f"(d[28][2]), "+f"(d[28][3]), \
    "+f"(d[29][0]), "+f"(d[29][1]), "+f"(d[29][2]), "+f"(d[29][3])
#define WG_ACC_256 WG_ACC_240, \
    "+f"(d[30][0]), "+f"(d[30][1]), "+f"(d[30][2]), "+f"(d[30][3]), \
    "+f"(d[31][0]), "+f"(d[31][1]), "+f"(d[31][2]), "+f"(d[31][3])

#define WG_SHAPES(X) \
    X(16, 8, 9, 10, 11, 12, 13) \
    X(32, 16, 17, 18, 19, 20, 21) \
    X(48, 24, 25, 26, 27, 28, 29) \
    X(64, 32, 33, 34, 35, 36, 37) \
    X(80, 40, 41, 42, 43, 44, 45) \
    X(96, 48, 49, 50, 51, 52, 53) \
    X(112, 56, 57, 58, 59, 60, 61) \
    X(128, 64, 65, 66, 67, 68, 69) \
    X(144, 72, 73, 74, 75, 76, 77) \
    X(160, 80, 81, 82, 83, 84, 85) \
    X(176, 88, 89, 90, 91, 92, 93) \
    X(192, 96, 97, 98, 99, 100, 101) \
    X(208, 104, 105, 106, 107, 108, 109) \
    X(224, 112, 113, 114, 115, 116, 117) \
    X(240, 120, 121, 122, 123, 124, 125) \
    X(256, 128, 129, 130, 131, 132, 133)

template <int N> struct wgmma_op;   /* defined for N = 16, 32, ..., 256 */

#define WG_DEFINE(N, A0, A1, A2, A3, A4, A5)                                                          \
    template <> struct wgmma_op<N> {                                                                 \
        DEV void ss(float (&d)[N / 8][4], u64 desc_a, u64 desc_b, int accumulate)                    \
        {                                                                                            \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #A2 ", 0;\n"                           \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." ELEM_PTX "." ELEM_PTX " {"  \
                         WG_REGS_##N "}, %" #A0 ", %" #A1 ", p, 1, 1, 0, 0;\n}\n"                     \
                         : WG_ACC_##N : "l"(desc_a), "l"(desc_b), "r"(accumulate));                  \
        }                                                                                            \
        DEV void ss_t(float (&d)[N / 8][4], u64 desc_a, u64 desc_b, int accumulate)                  \
        {                                                                                            \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #A2 ", 0;\n"                           \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." ELEM_PTX "." ELEM_PTX " {"  \
                         WG_REGS_##N "}, %" #A0 ", %" #A1 ", p, 1, 1, 1, 1;\n}\n"                     \
                         : WG_ACC_##N : "l"(desc_a), "l"(desc_b), "r"(accumulate));                  \
        }                                                                                            \
        DEV void rs(float (&d)[N / 8][4], const u32 (&a)[4], u64 desc_b)                             \
        {                                                                                            \
            asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" #A5 ", 0;\n"                           \
                         "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." ELEM_PTX "." ELEM_PTX " {"  \
                         WG_REGS_##N "}, {%" #A0 ", %" #A1 ", %" #A2 ", %" #A3 "}, %" #A4             \
                         ", p, 1, 1, 1;\n}\n"                                                        \
                         : WG_ACC_##N : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b),      \
                           "r"(1));                                                                  \
        }                                                                                            \
    };
WG_SHAPES(WG_DEFINE)
#undef WG_DEFINE
