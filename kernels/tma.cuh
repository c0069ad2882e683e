/* The Tensor Memory Accelerator (sm_90): bulk tensor copies between global
 * and shared memory, described by a tensor map the host encodes with the
 * driver's cuTensorMapEncodeTiled (runtime/tma.c).
 *
 * spattn's maps are 4-D, innermost first: (head_dim, sequence, head, batch)
 * with the tensor's own element strides, so [B,N,H,D] and [B,H,N,D] and a
 * head-sharded launch's pointers all work.  A box is 64 values (128 bytes)
 * by ROWS rows of one head of one batch, written to shared memory with the
 * 128-byte swizzle: the tile_off<ROWS> layout wgmma reads, one column block
 * per copy.  Rows past the sequence end are zero-filled on loads and left
 * out on stores, so any N works with no masking of the copy itself.
 *
 * Needs: common.cuh (DEV, u32, u64). */
#pragma once
#include "common.cuh"

/* CUtensorMap: 128 opaque bytes, 64-byte aligned, passed to the kernel by
 * value as a __grid_constant__ parameter (the copy engine reads it from the
 * parameter space through its generic address). */
struct alignas(64) tma_map {
    u64 opaque[16];
};

/* The four maps of the forward (host: runtime/tma.c fills the same layout). */
struct fwd_tma_maps {
    tma_map q, k, v, o;
};

DEV void tma_prefetch_map(const tma_map &m)
{
    asm volatile("prefetch.tensormap [%0];\n" :: "l"((u64)&m) : "memory");
}

/* Load box (c0 = first value, c1 = first row, c2 = head, c3 = batch) into
 * shared memory at dst; the bytes complete_tx on mbarrier bar. */
DEV void tma_load_4d(u32 dst, const tma_map &m, u32 bar, int c0, int c1, int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5, %6}], [%2];\n"
                 :: "r"(dst), "l"((u64)&m), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}

/* Store the box at src to global memory; part of the thread's bulk group. */
DEV void tma_store_4d(const tma_map &m, u32 src, int c0, int c1, int c2, int c3)
{
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n"
                 :: "l"((u64)&m), "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}

/* Add the box at src (fp32) into global memory, elementwise, by the copy engine (the adds
 * happen in L2); rows past the map's edges are not added.  Part of the thread's bulk group. */
DEV void tma_reduce_add_4d(const tma_map &m, u32 src, int c0, int c1, int c2, int c3)
{
    asm volatile("cp.reduce.async.bulk.tensor.4d.global.shared::cta.add.tile.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n"
                 :: "l"((u64)&m), "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}

DEV void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
/* Wait until at most N of this thread's store groups still read shared
 * memory (the source may then be overwritten) ... */
template <int N> DEV void tma_store_wait_read() { asm volatile("cp.async.bulk.wait_group.read %0;\n" :: "n"(N) : "memory"); }
/* ... or are still in flight at all. */
template <int N> DEV void tma_store_wait() { asm volatile("cp.async.bulk.wait_group %0;\n" :: "n"(N) : "memory"); }

/* dst[0, bytes) += src[0, bytes) elementwise in fp32, by the copy engine
 * (a bulk reduce-add: the adds happen in L2, one request per 16 bytes, no
 * atomic instruction per value); part of the thread's bulk group.  dst and
 * src 16-byte aligned, bytes a multiple of 16. */
DEV void bulk_reduce_add_f32(float *dst, u32 src, u32 bytes)
{
    asm volatile("cp.reduce.async.bulk.global.shared::cta.bulk_group.add.f32 [%0], [%1], %2;\n"
                 :: "l"(dst), "r"(src), "r"(bytes) : "memory");
}

