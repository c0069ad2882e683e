/* The Hopper forward kernel (sm_90a): its device code is
 * kernels/fwd_wgmma.cuh (the mma.sync forward's algorithm with the matrix
 * products on wgmma, warpgroups of 64 query rows, tiles in the
 * 128-byte-swizzled layout, S of the next tile overlapping P V of the last);
 * this emits the include and the kernel's entry point.  For configs with
 * mma == SP_MMA_WGMMA. */
#include "codegen/emit.h"

void emit_fwd_wgmma(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_name(cfg, name, sizeof name);
    sb_printf(out,
              "#include \"fwd_wgmma.cuh\"\n\n"
              "/* ==== The kernel ====\n"
              " * Grid (ceil(N / BM), heads in the launch, batch), THREADS = 128 * BM / 64 threads,\n"
              " * SMEM_BYTES of dynamic shared memory. */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const sp_kparams p)\n"
              "{\n"
              "    fwd_wgmma_kernel(p);\n"
              "}\n",
              name);
}
