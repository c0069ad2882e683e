/* The decode kernels (kernels/decode.cuh): their specialization (constants,
 * the parameter struct of abi/kparams_dec.h), the include and the two entry
 * points, the split-KV decode kernel (named by kcfg_name) and its combine
 * (the same name with "_combine"). */
#include <stdio.h>

#include "codegen/emit.h"
#include "codegen/family.h"
#include "abi/kparams_dec.h"

#define DEC_FIELD_ROW_(type, name, comment) { #type, #name, comment },
static const emit_field dec_fields[] = { SP_DEC_KPARAMS_FIELDS(DEC_FIELD_ROW_) };
#undef DEC_FIELD_ROW_

void kcfg_dec_combine_name(const sp_kcfg *c, char *buf, int n)
{
    char name[128];
    kcfg_name(c, name, sizeof name);
    snprintf(buf, (size_t)n, "%s_combine", name);
}

/* Not emit_constants: its static_asserts are the forward's.  An enum (NVRTC's
 * -default-device would make constexpr variables global memory).  The names
 * ptx.cuh and layout.cuh use (HEAD_DIM, CHUNKS, ROW_BYTES, ...) are the same. */
static void emit_dec_constants(strbuf *out, const sp_kcfg *cfg)
{
    sb_printf(out,
              "/* ==== Configuration: what this kernel is specialized to ==== */\n"
              "enum : int {\n"
              "    HEAD_DIM = %d,\n"
              "    HEADS = %d, KV_HEADS = %d,\n"
              "    GROUP = HEADS / KV_HEADS,               /* query heads per kv head */\n"
              "    MAX_INTERVALS = %d,\n"
              "    BAND_STRIDE = 1 + 2 * MAX_INTERVALS,    /* ints per band table row */\n"
              "    BM = %d,                                /* query rows per CTA: heads x new tokens, padded */\n"
              "    BN = %d,                                /* keys per KV tile */\n"
              "    WARPS = %d, THREADS = %d,\n"
              "    WARP_KEYS = BN / WARPS,                 /* keys of a tile per warp */\n"
              "    STAGES = %d,                            /* K/V tiles in shared memory at once */\n"
              "    CHUNKS = HEAD_DIM * 2 / 16,             /* 16-byte chunks per row */\n"
              "    ROW_BYTES = %d,\n"
              "    Q_TILE_BYTES = BM * ROW_BYTES,\n"
              "    KV_TILE_BYTES = BN * ROW_BYTES,\n"
              "    STAGE_BYTES = 2 * KV_TILE_BYTES,        /* K tile, then V tile */\n"
              "    MERGE_BYTES = %d,                    /* the warps' (m, l, O), fp32, over the stages */\n"
              "    SMEM_BYTES = %d,                    /* the launch's dynamic shared memory */\n"
              "    Q_IN_REGS = %d,                         /* 1: Q fragments live in registers; 0: re-read */\n"
              "    RUN_CAP = BM * MAX_INTERVALS,           /* most runs of key tiles a block can have */\n"
              "    COMBINE_WARPS = 4,                      /* rows per combine CTA (a warp each) */\n"
              "};\n"
              "#define LN2 0.693147180559945309f\n"
              "#define LOG2E 1.442695040888963407f\n"
              "static_assert(SMEM_BYTES == 128 + Q_TILE_BYTES + (STAGES * STAGE_BYTES > MERGE_BYTES ? STAGES * STAGE_BYTES : MERGE_BYTES),\n"
              "              \"kcfg_derive_dec disagrees\");\n"
              "static_assert(BM == 16 && WARP_KEYS %% 16 == 0 && STAGES >= 2, \"bad decode tile\");\n"
              "static_assert(MERGE_BYTES == WARPS * BM * (HEAD_DIM + 2) * 4, \"merge area\");\n\n",
              cfg->head_dim, cfg->heads, cfg->kv_heads, cfg->max_intervals, cfg->bm, cfg->bn, cfg->warps, cfg->threads,
              cfg->stages, cfg->row_bytes, kcfg_dec_merge_bytes(cfg), cfg->smem_bytes, cfg->q_in_regs);
}

int emit_dec_unit(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e)
{
    if (cfg->kind != SP_KIND_DEC)
        return sp_fail(e, SP_EXIT_USAGE, "internal: not a decode config");
    if (cfg->threads != 32 * cfg->warps || cfg->smem_bytes <= 0 || cfg->row_bytes <= 0)
        return sp_fail(e, SP_EXIT_USAGE, "internal: kernel config not derived (call kcfg_derive first)");
    char name[128], combine[160];
    kcfg_name(cfg, name, sizeof name);
    kcfg_dec_combine_name(cfg, combine, sizeof combine);
    emit_header(out, spec, pat, cfg);
    emit_dec_constants(out, cfg);
    emit_prelude(out, cfg);
    emit_param_struct(out, "sp_dec_kparams", "abi/kparams_dec.h", dec_fields, sizeof dec_fields / sizeof dec_fields[0],
                      sizeof(sp_dec_kparams));
    sb_printf(out,
              "#include \"decode.cuh\"\n\n"
              "/* ==== The kernels ====\n"
              " * decode: grid (splits, kv heads x row blocks, batch), THREADS threads, SMEM_BYTES of\n"
              " * dynamic shared memory.  combine (splits > 1 only): grid ceil(B H T / COMBINE_WARPS),\n"
              " * 32 x COMBINE_WARPS threads. */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const sp_dec_kparams p)\n"
              "{\n"
              "    decode_kernel(p);\n"
              "}\n\n"
              "extern \"C\" __global__ void __launch_bounds__(32 * COMBINE_WARPS) %s(const sp_dec_kparams p)\n"
              "{\n"
              "    decode_combine_kernel(p);\n"
              "}\n",
              name, combine);
    return out->oom ? sp_fail(e, SP_EXIT_FAIL, "out of memory generating the kernel source") : 0;
}
