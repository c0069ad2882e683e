/* mbarriers, named barriers and register reallocation: the synchronization
 * of a warp-specialized kernel (sm_90), after CUTLASS's ClusterBarrier and
 * flash-attention's hopper/ pipelines.
 *
 * An mbarrier is a 64-bit object in shared memory with an expected arrival
 * count and a phase bit.  A phase completes when `count` arrivals and all
 * expected transaction bytes (TMA copies report theirs on completion) have
 * come; then the phase bit flips.  mbar_wait(bar, parity) returns once the
 * phase with that parity has completed.  A producer/consumer ring uses two
 * per stage: FULL (the producer's expect_tx, the copy's bytes) and EMPTY
 * (one arrival per consumer warp).  Iteration k of the ring uses stage
 * k % STAGES with parity (k / STAGES) & 1; the producer waits for EMPTY with
 * the opposite parity, which a fresh barrier already satisfies, so the
 * first STAGES loads start at once.
 *
 * Needs: common.cuh (DEV, u32, u64). */
#pragma once
#include "common.cuh"

DEV void mbar_init(u32 bar, u32 count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(bar), "r"(count) : "memory");
}

/* Make the initialized barriers visible to the async proxy (TMA) and to the
 * other threads; a __syncthreads() must follow. */
DEV void mbar_fence_init() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

/* One arrival that also announces `bytes` of transactions (the copies issued
 * next, which complete_tx on this barrier). */
DEV void mbar_arrive_expect_tx(u32 bar, u32 bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(bar), "r"(bytes) : "memory");
}

DEV void mbar_arrive(u32 bar) { asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(bar) : "memory"); }

/* Spin until the phase of parity `parity` has completed.  try_wait suspends
 * the thread for a while in hardware before it fails, so the loop is not a
 * hot spin.  (PTX labels are local to the braces: inlining twice is fine.) */
DEV void mbar_wait(u32 bar, u32 parity)
{
    asm volatile("{\n"
                 ".reg .pred done;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "@!done bra WAIT;\n"
                 "}\n" :: "r"(bar), "r"(parity) : "memory");
}

/* Named barriers 1..15 (0 is __syncthreads): `threads` (a multiple of 32)
 * threads of the block meet; sync waits, arrive only counts itself in. */
DEV void named_sync(int id, int threads) { asm volatile("bar.sync %0, %1;\n" :: "r"(id), "r"(threads) : "memory"); }
DEV void named_arrive(int id, int threads) { asm volatile("bar.arrive %0, %1;\n" :: "r"(id), "r"(threads) : "memory"); }

/* setmaxnreg (sm_90a): a warpgroup gives registers back (dec) or takes them
 * (inc), so that the producer runs on few and the consumers on many.  Each
 * role must be one side of a warpgroup-uniform branch, and the kernel needs a
 * register cap at entry (__launch_bounds__(THREADS, 1)); ptxas says C7508
 * when it cannot honour it. */
template <int REGS> DEV void regs_dealloc() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" :: "n"(REGS)); }
template <int REGS> DEV void regs_alloc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" :: "n"(REGS)); }
