/* The warp-specialized forward (sm_90a): the specialization only.  The
 * kernel itself is CUDA source in kernels/fwd_ws.cuh (with mbarrier.cuh,
 * tma.cuh, scheduler.cuh and the products of attn_wgmma.cuh); this file
 * adds the constants of the config that the .cuh reads (roles and
 * registers) and the kernel's entry point under its unique name.  Called
 * for configs with mma == SP_MMA_WS (codegen/kcfg.c: derive_fwd_ws). */
#include "codegen/emit.h"

/* Registers per thread after setmaxnreg: the producer keeps few, the
 * consumers share the rest of the SM's 64K (multiples of 8, at most 240 as
 * in FlashAttention-3). */
static int consumer_regs(int consumers)
{
    int regs = (65536 - 128 * 24) / (128 * consumers) / 8 * 8;
    return regs > 240 ? 240 : regs;
}

void emit_fwd_ws(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_name(cfg, name, sizeof name);
    int consumers = cfg->bm / 64;
    sb_printf(out,
              "/* ==== The warp-specialized forward: roles and registers ==== */\n"
              "enum : int {\n"
              "    CONSUMERS = %d,                         /* math warpgroups, 64 query rows each */\n"
              "    PRODUCER_REGS = 24,                     /* registers per producer thread (setmaxnreg) */\n"
              "    CONSUMER_REGS = %d,                    /* registers per consumer thread */\n"
              "};\n\n",
              consumers, consumer_regs(consumers));
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
