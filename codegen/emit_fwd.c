/* The forward kernel on mma.sync: its device code is kernels/fwd_mma.cuh
 * (FlashAttention-2's technique, one helper per part: loads, S = Q K^T, the
 * band mask, the online softmax, O += P V, the epilogue); this emits the
 * include and the kernel's entry point, named by kcfg_name. */
#include "codegen/emit.h"

void emit_fwd(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_name(cfg, name, sizeof name);
    sb_printf(out,
              "#include \"fwd_mma.cuh\"\n\n"
              "/* ==== The kernel ====\n"
              " * Grid (ceil(N / BM), heads in the launch, batch), THREADS threads, SMEM_BYTES of\n"
              " * dynamic shared memory. */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const sp_kparams p)\n"
              "{\n"
              "    fwd_mma_kernel(p);\n"
              "}\n",
              name);
}
