/* kernels/ptx.cuh: small named helpers around inline PTX, each written once
 * with what it does and its register layout (ThunderKittens' habit), so the
 * kernels read like the algorithm: cp.async with zero-fill, ldmatrix,
 * mma.sync m16n8k16, float-pair packing, ex2/lg2, quad reductions, shared
 * loads and stores.  sm_80 and later. */
#pragma once
#include "common.cuh"

DEV float neg_inf() { return __int_as_float(0xff800000u); }

/* The 32-bit shared-memory address PTX's .shared instructions take. */
DEV u32 smem_addr(const void *p) { return (u32)__cvta_generic_to_shared(p); }

/* cp.async: copy 16 bytes global -> shared without passing through registers (.cg:
 * cached in L2 only).  With valid == false the source size is 0: nothing is read and
 * the 16 bytes are zero-filled, which is how rows past the sequence end become 0. */
DEV void cp_async_16(u32 dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(dst), "l"(src), "r"(valid ? 16 : 0));
}
/* Close the group of this thread's cp.async issued since the last commit. */
DEV void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Wait until at most N of this thread's groups are in flight (oldest complete first).
 * Other threads' copies are visible only after a barrier as well. */
template <int N> DEV void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory"); }

/* ldmatrix.x4: four 8x8 matrices of 16-bit values from shared memory.  Lanes 8m..8m+7
 * give the addresses of the 8 rows (16 bytes each) of matrix m.  Afterwards lane l
 * holds in r[m] row l/4, columns 2(l%4) and 2(l%4)+1 of matrix m (the lower column in
 * the lower 16 bits): exactly an mma fragment register. */
DEV void ldsm_x4(u32 addr, u32 (&r)[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
/* The same, transposed: lane l holds in r[m] rows 2(l%4) and 2(l%4)+1 of column l/4
 * of matrix m: two consecutive rows of one column, as a B operand along k wants them. */
DEV void ldsm_x4_trans(u32 addr, u32 (&r)[4])
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}

/* D += A B on the tensor cores: mma.sync m16n8k16, ELEM_PTX inputs (bf16 or f16), fp32
 * accumulators (sm_80 and later, Hopper included).  Fragments of lane l, with g = l / 4
 * (row group) and t = l % 4 (thread in the group); two 16-bit values per register, the
 * lower index in the lower half:
 *   A 16x16 (row-major): a[0] = A[g][2t..2t+1]    a[1] = A[g+8][2t..2t+1]
 *                        a[2] = A[g][2t+8..2t+9]  a[3] = A[g+8][2t+8..2t+9]
 *   B 16x8 ("col": k pairs of one column): b0 = B[2t..2t+1][g]  b1 = B[2t+8..2t+9][g]
 *   C, D 16x8 fp32: d[0..1] = D[g][2t..2t+1]  d[2..3] = D[g+8][2t..2t+1]
 * Note that the C layout of two n-adjacent m16n8 tiles, packed pairwise to 16 bits, is
 * the A layout of one m16n8k16: the forward reuses S as the A operand of P V. */
DEV void mma_16816(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." ELEM_PTX "." ELEM_PTX ".f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two floats -> one register of two elements (round to nearest even), lo in the lower half. */
DEV u32 pack2(float lo, float hi)
{
    u32 r;
    asm("cvt.rn." ELEM_PTX_X2 ".f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* 2^x and log2(x) on the special-function unit (flush denormals: 2^-inf = +0). */
DEV float exp2_approx(float x) { float y; asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x)); return y; }
DEV float log2_approx(float x) { float y; asm("lg2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x)); return y; }

/* Max and sum over the 4 lanes of a quad (lanes 4g..4g+3 hold one accumulator row). */
DEV float quad_max(float x)
{
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
DEV float quad_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

DEV void st_shared_u32(u32 addr, u32 v) { asm volatile("st.shared.u32 [%0], %1;\n" :: "r"(addr), "r"(v)); }
DEV void st_shared_v2f32(u32 addr, float x, float y)
{
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" :: "r"(addr), "f"(x), "f"(y));
}
DEV u32x4 ld_shared_u32x4(u32 addr)
{
    u32x4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
    return v;
}

/* Programmatic dependent launch (sm_90; runtime/attn_bwd.c launches main and convert with it).
 * griddep_launch_dependents: this block lets the next kernel of the stream, if launched as a
 * dependent, start its blocks (once every block of this grid has said so or ended): they take
 * SMs as ours free up, instead of after the whole grid, its memory flush and a launch.
 * griddep_wait: wait until the previous kernel of the stream has completed and its writes are
 * visible; every thread that reads what it wrote calls it first.  Both are no-ops for a
 * kernel launched the ordinary way, and before sm_90 they compile to nothing. */
DEV void griddep_launch_dependents()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
DEV void griddep_wait()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
