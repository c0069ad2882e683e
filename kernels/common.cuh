/* kernels/common.cuh: what every kernel source uses: the 32- and 64-bit
 * words, a 16-byte chunk, and DEV, the qualifier of every device helper.
 *
 * These files are not compiled alone.  codegen (codegen/emit_*.c) writes a
 * kernel's specialization, which defines before including them:
 *   - the constants of the spec and the config as an enum (HEAD_DIM, BM, BN,
 *     WARPS, THREADS, STAGES, CHUNKS, ROW_BYTES, MAX_INTERVALS, ...);
 *   - elem_t, one value of the element type as its raw 16 bits, and
 *     ELEM_PTX / ELEM_PTX_X2, that type's name in PTX ("bf16" / "bf16x2",
 *     "f16" / "f16x2");
 *   - the kernel parameter structs (from abi/kparams.h's field lists);
 * and after them the extern "C" __global__ entry points, which call the
 * device code here.  NVRTC reads these files as in-memory headers
 * (runtime/nvrtc.c); `spattn gen` prints the translation unit with them
 * pasted in (codegen/kernel_sources.c), which nvcc compiles as it is. */
#pragma once

typedef unsigned int u32;
typedef unsigned long long u64;
struct alignas(16) u32x4 { u32 x, y, z, w; };   /* 16 bytes: 8 elements, one chunk */

#define DEV static __device__ __forceinline__
