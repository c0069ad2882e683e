/* The warp-specialized forward (sm_90a): the specialization only.  The
 * kernel itself is CUDA source in kernels/fwd_ws.cuh (with mbarrier.cuh,
 * tma.cuh, scheduler.cuh and the products of attn_wgmma.cuh); this file
 * adds the constants of the config that the .cuh reads (roles and
 * registers) and the kernel's entry point under its unique name.  Called
 * for configs of the fwd-ws family (codegen/family.c). */
#include "codegen/emit.h"

void emit_fwd_ws(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_name(cfg, name, sizeof name);
    sb_printf(out,
              "/* ==== The warp-specialized forward: roles and registers ==== */\n"
              "enum : int {\n"
              "    CONSUMERS = %d,                         /* math warpgroups, 64 query rows each */\n"
              "    PRODUCER_REGS = %d,                     /* registers per producer thread (setmaxnreg) */\n"
              "    CONSUMER_REGS = %d,                    /* registers per consumer thread */\n"
              "};\n\n",
              cfg->bm / 64, KCFG_WS_PRODUCER_REGS, kcfg_ws_consumer_regs(cfg));
    sb_puts(out, "#include \"fwd_ws.cuh\"\n\n");
    sb_printf(out,
              "/* ==== The kernel: a persistent launch, gridDim.x <= SMs (kernels/scheduler.cuh) ==== */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const __grid_constant__ sp_kparams p,\n"
              "                                                      const __grid_constant__ fwd_tma_maps tm)\n"
              "{\n"
              "    fwd_ws(p, tm);\n"
              "}\n",
              name);
}
