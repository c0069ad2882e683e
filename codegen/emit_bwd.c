/* The backward kernels: their device code is kernels/bwd_*.cuh; this emits
 * their specialization (constants, parameter struct), the includes and the
 * five entry points.  What they compute, with s = q.k the raw score,
 * c = scale * log2(e), LSE from the forward:
 *
 *     P    = exp2(s c - LSE log2 e)          (recomputed, masked to the bands)
 *     dV  += P^T dO
 *     dP   = dO V^T
 *     dS   = P * (dP - delta),  delta = rowsum(dO * O)
 *     dK  += scale * dS^T Q
 *     dQ  += scale * dS K
 *
 * main: one block per (KV tile of BN keys, kv head, batch).  Warp w owns
 * keys 16w..16w+15 of the tile for everything, so it computes S^T (keys x
 * queries) rather than S: the accumulator of P^T is then the A operand of
 * P^T dO straight from registers (as the forward's P is for P V), dK and
 * dV stay in registers for the whole block, and the only shared-memory
 * round trip is dS^T for dQ.  The block loops over the GROUP query heads of
 * its kv head (so dK, dV sum over the group in registers, in a fixed order)
 * and, per head, over the query tiles whose bands reach its keys: the
 * transpose of the forward's tile iteration (bands_q_tiles).  dQ goes to an
 * fp32 accumulator by atomic adds; convert scales and rounds it.
 * Deterministic mode on mma.sync: dq, one block per query tile, the
 * forward's iteration; it recomputes S, P, dP, dS and keeps dQ in
 * registers, so main_det can leave dQ out and no sum depends on timing.
 * Deterministic mode on wgmma: main_sem, main with its dQ adds ordered by
 * a semaphore per query tile (kernels/bwd_order.cuh), then convert.  main
 * runs on mma.sync (kernels/bwd_main.cuh) or on wgmma
 * (kernels/bwd_wgmma.cuh); pre, convert (kernels/bwd_aux.cuh) and dq
 * (kernels/bwd_dq.cuh) are the same for both. */
#include "codegen/emit_bwd.h"
#include "codegen/family.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codegen/emit.h"
#include "codegen/kcfg_bwd.h"
#include "abi/kparams_bwd.h"

/* ---- configuration and parameters -------------------------------------- */

/* One line of the enum: the text, then its comment (if any) in an aligned column. */
static void const_line(strbuf *out, const char *comment, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void const_line(strbuf *out, const char *comment, const char *fmt, ...)
{
    char text[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (comment) sb_printf(out, "    %-47s /* %s */\n", text, comment);
    else sb_printf(out, "    %s\n", text);
}

static void emit_bwd_constants(strbuf *out, const sp_kcfg *cfg)
{
    /* Not emit_constants: its static_asserts are the forward's (BM = 16
     * warps, the forward's shared memory).  An enum rather than constexpr
     * variables (NVRTC's -default-device would make those global memory).
     * The names the prelude and band helpers use (HEAD_DIM, CHUNKS,
     * ROW_BYTES, BM, BN, MAX_INTERVALS) mean the same here. */
    sb_puts(out, "/* ==== Configuration: what these kernels are specialized to ==== */\nenum : int {\n");
    const_line(out, NULL, "HEAD_DIM = %d,", cfg->head_dim);
    const_line(out, NULL, "HEADS = %d, KV_HEADS = %d,", cfg->heads, cfg->kv_heads);
    const_line(out, "query heads per kv head", "GROUP = HEADS / KV_HEADS,");
    const_line(out, NULL, "MAX_INTERVALS = %d,", cfg->max_intervals);
    const_line(out, "ints per band table row", "BAND_STRIDE = 1 + 2 * MAX_INTERVALS,");
    const_line(out, "1: the dense causal baseline (one band [0, n))", "BANDS_DENSE = %d,", cfg->pattern == SP_DENSE);
    const_line(out, "query rows per query tile", "BM = %d,", cfg->bm);
    const_line(out, "keys per KV tile: 16 per warp of main", "BN = %d,", cfg->bn);
    const_line(out, "main and main_det", "WARPS = %d, THREADS = %d,", cfg->warps, kcfg_bwd_threads(cfg, BWD_MAIN));
    const_line(out, "Q/dO tiles in flight (main), K/V (dq)", "STAGES = %d,", cfg->stages);
    const_line(out, "16-byte chunks per row", "CHUNKS = HEAD_DIM * 2 / 16,");
    const_line(out, NULL, "ROW_BYTES = %d,", cfg->row_bytes);
    const_line(out, NULL, "Q_TILE_BYTES = BM * ROW_BYTES,");
    const_line(out, NULL, "KV_TILE_BYTES = BN * ROW_BYTES,");
    const_line(out, "a dS^T row: BM 16-bit values", "DS_ROW_BYTES = BM * 2,");
    const_line(out, "dS^T tiles of main (wgmma: this step's and the last)", "DS_BUFS = %d,", kcfg_bwd_ds_bufs(cfg));
    const_line(out, "queries per step of main (part of BM)", "Q_SUB = %d,", kcfg_bwd_q_sub(cfg));
    const_line(out, "keys per step of dq (part of BN)", "K_SUB = %d,", kcfg_bwd_k_sub(cfg));
    const_line(out, "dQ block of one warp pass in main", "DQ_ROWS = 32, DQ_COLS = 32,");
    const_line(out, NULL, "DQ_CGROUPS = HEAD_DIM / DQ_COLS,");
    const_line(out, "warp passes per query tile", "DQ_UNITS = (BM / DQ_ROWS) * DQ_CGROUPS,");
    const_line(out, "the dq kernel", "DQ_WARPS = BM / 16, DQ_THREADS = 32 * DQ_WARPS,");
    const_line(out, "pre and convert", "AUX_THREADS = %d, AUX_ROWS = AUX_THREADS / CHUNKS,", KCFG_BWD_AUX_THREADS);
    const_line(out, "delta / lse2 rows per head: a multiple", "ROW_PAD = %d,", KCFG_BWD_ROW_PAD);
    const_line(out, "main's base alignment (1024: wgmma's swizzle)", "MAIN_SLACK = %d,", kcfg_family(cfg)->smem_slack);
    const_line(out, "main's fp32 dQ staging for bulk reduce-adds (0: atomics)", "DQ_STAGE_BYTES = %d,",
               kcfg_bwd_dq_stage_bytes(cfg));
    const_line(out, "ws main's dQ staging buffers, a writer each (1 elsewhere)", "WS_DQ_BUFS = %d,",
               kcfg_bwd_dq_bufs(cfg));
    const_line(out, "ws main's deterministic order: 1 ascending KV tiles, 0 descending", "WS_DET_ASCENDING = %d,",
               kcfg_bwd_det_ascending(cfg));
    const_line(out, "ws main's default item order: 1 head by head, 0 tile-major", "WS_HEAD_MAJOR = %d,",
               kcfg_bwd_head_major(cfg));
    const_line(out, "dynamic shared memory of each kernel", "SMEM_MAIN = %d, SMEM_MAIN_DET = %d, SMEM_DQ = %d,",
               kcfg_bwd_smem(cfg, BWD_MAIN), kcfg_bwd_smem(cfg, BWD_MAIN_DET), kcfg_bwd_smem(cfg, BWD_DQ));
    const int producer = kcfg_family(cfg)->producer_threads;
    sb_puts(out,
            "};\n"
            "#define LOG2E 1.44269504088896341f\n"
            "static_assert(SMEM_MAIN == MAIN_SLACK + 2 * KV_TILE_BYTES + 2 * STAGES * Q_TILE_BYTES + 2 * STAGES * BM * 4 + DS_BUFS * BN * DS_ROW_BYTES\n"
            "              + DQ_STAGE_BYTES,\n"
            "              \"kcfg_bwd_smem disagrees\");\n"
            "static_assert(SMEM_MAIN_DET == SMEM_MAIN - DS_BUFS * BN * DS_ROW_BYTES - DQ_STAGE_BYTES, \"kcfg_bwd_smem disagrees\");\n"
            "static_assert(SMEM_DQ == 128 + 2 * Q_TILE_BYTES + STAGES * 2 * KV_TILE_BYTES, \"kcfg_bwd_smem disagrees\");\n");
    if (producer) {   /* the warp-specialized main (kernels/bwd_ws.cuh): its roles and registers */
        sb_printf(out,
                  "enum : int {   /* the warp-specialized main's roles and registers */\n"
                  "    PRODUCER_THREADS = %d,                  /* one warpgroup: the cursor and the TMA loads */\n"
                  "    PRODUCER_REGS = %d,                     /* registers per producer thread (setmaxnreg) */\n"
                  "    CONSUMER_REGS = %d,                    /* registers per consumer thread */\n"
                  "    CTAS_PER_SM = %d,                       /* blocks per SM the registers are split for */\n"
                  "};\n",
                  producer, KCFG_WS_PRODUCER_REGS, kcfg_ws_consumer_regs(cfg), cfg->ctas > 1 ? cfg->ctas : 1);
        sb_puts(out, "static_assert(BN == 16 * WARPS && THREADS == 32 * WARPS + PRODUCER_THREADS && BM % 32 == 0 && ROW_PAD % BM == 0,\n"
                     "              \"bad tile\");\n");
    } else {
        sb_puts(out, "static_assert(BN == 16 * WARPS && THREADS == 32 * WARPS && BM % 32 == 0 && ROW_PAD % BM == 0, \"bad tile\");\n");
    }
    sb_puts(out,
            "static_assert(ROW_BYTES == HEAD_DIM * 2 && CHUNKS % 8 == 0 && 32 % CHUNKS == 0, \"rows are swizzled, not padded\");\n"
            "static_assert(STAGES >= 2 && BM % DQ_ROWS == 0 && HEAD_DIM % DQ_COLS == 0, \"bad config\");\n"
            "static_assert(BM % Q_SUB == 0 && Q_SUB % 16 == 0 && BN % K_SUB == 0 && K_SUB % 16 == 0, \"bad sub-tiles\");\n\n");
}

#define BWD_FIELD_ROW_(type, name, comment) { #type, #name, comment },
static const emit_field bwd_fields[] = { SP_BWD_KPARAMS_FIELDS(BWD_FIELD_ROW_) };
#undef BWD_FIELD_ROW_

static void emit_bwd_kparams(strbuf *out)
{
    emit_param_struct(out, "sp_bwd_kparams", "abi/kparams_bwd.h", bwd_fields,
                      sizeof bwd_fields / sizeof bwd_fields[0], sizeof(sp_bwd_kparams));
}

/* ---- the entry points ------------------------------------------------------ */

/* One extern "C" kernel, named by kcfg_bwd_name, calling its body in the
 * kernels/ headers: `call` with the arguments (p), or with the warp-specialized
 * main's TMA maps as a second parameter (p, tm). */
static void emit_entry_maps(strbuf *out, const sp_kcfg *cfg, sp_bwd_part part, const char *comment, const char *bounds,
                            const char *call, int maps)
{
    char name[128];
    kcfg_bwd_name(cfg, part, name, sizeof name);
    sb_printf(out,
              "%s\n"
              "extern \"C\" __global__ void __launch_bounds__(%s) %s(%s)\n"
              "{\n"
              "    %s(%s);\n"
              "}\n\n",
              comment, bounds, name,
              maps ? "const __grid_constant__ sp_bwd_kparams p, const __grid_constant__ bwd_tma_maps tm"
                   : "const sp_bwd_kparams p",
              call, maps ? "p, tm" : "p");
}

static void emit_entry(strbuf *out, const sp_kcfg *cfg, sp_bwd_part part, const char *comment, const char *bounds,
                       const char *call)
{
    emit_entry_maps(out, cfg, part, comment, bounds, call, 0);
}

static void emit_bwd_entries(strbuf *out, const sp_kcfg *cfg)
{
    emit_entry(out, cfg, BWD_PRE,
               "/* pre: grid (seqlen_pad / AUX_ROWS, heads, batch), AUX_THREADS threads: delta, lse2, and\n"
               " * where main adds dQ up the zeroed dQ accumulator (and main_sem's semaphores). */",
               "AUX_THREADS", "bwd_pre_kernel");
    if (kcfg_family(cfg)->producer_threads) {
        emit_entry_maps(out, cfg, BWD_MAIN,
                        "/* main (warp-specialized): grid (ceil(n / BN), kv heads, batch), THREADS threads (a producer\n"
                        " * warpgroup, then BN / 64 consumers), SMEM_MAIN bytes of dynamic shared memory; dQ by TMA\n"
                        " * reduce-adds into dq_accum (zeroed by pre). */",
                        "THREADS, CTAS_PER_SM", "bwd_ws_body<false>", 1);
        emit_entry_maps(out, cfg, BWD_MAIN_SEM,
                        "/* main_sem (deterministic mode): main with its dQ adds in a fixed order, a semaphore per\n"
                        " * query tile (dq_sem, zeroed by pre); the same grid, KV tiles in descending order. */",
                        "THREADS, CTAS_PER_SM", "bwd_ws_body<true>", 1);
    } else {
        emit_entry(out, cfg, BWD_MAIN,
                   "/* main: grid (ceil(n / BN), kv heads, batch), THREADS threads, SMEM_MAIN bytes of dynamic\n"
                   " * shared memory; dQ by atomic adds into dq_accum (zeroed by pre). */",
                   "THREADS, 1", "bwd_main_body<true>");
    }
    if (kcfg_bwd_has_part(cfg, BWD_MAIN_DET))
        emit_entry(out, cfg, BWD_MAIN_DET,
                   "/* main_det: the same without dQ (the dq kernel computes it), SMEM_MAIN_DET bytes. */",
                   "THREADS, 1", "bwd_main_body<false>");
    if (kcfg_bwd_has_part(cfg, BWD_DQ)) {
        /* dq is defined in kernels/bwd_dq.cuh under the name given here (its comment says why). */
        char name[128];
        kcfg_bwd_name(cfg, BWD_DQ, name, sizeof name);
        sb_printf(out, "#define BWD_DQ_ENTRY %s\n#include \"bwd_dq.cuh\"\n\n", name);
    }
    if (kcfg_bwd_has_part(cfg, BWD_MAIN_SEM) && !kcfg_family(cfg)->producer_threads)
        emit_entry(out, cfg, BWD_MAIN_SEM,
                   "/* main_sem (deterministic mode): main with its dQ adds in a fixed order, a semaphore\n"
                   " * per query tile (dq_sem, zeroed by pre); the same grid, KV tiles in descending order. */",
                   "THREADS, 1", "bwd_main_body<true, true>");
    emit_entry(out, cfg, BWD_CONVERT,
               "/* convert (where main adds dQ up): grid (ceil(n / AUX_ROWS), heads, batch), AUX_THREADS threads. */",
               "AUX_THREADS", "bwd_convert_kernel");
}

/* ---- the translation unit -------------------------------------------------- */

int emit_bwd_kernels(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e)
{
    if (cfg->kind != SP_KIND_BWD)
        return sp_fail(e, SP_EXIT_USAGE, "internal: emit_bwd_kernels needs a backward config");
    sp_kcfg check = *cfg;
    sp_err ignored = { 0 };
    if (cfg->threads <= 0 || cfg->smem_bytes <= 0 || kcfg_derive_bwd(&check, &ignored) ||
        check.smem_bytes != cfg->smem_bytes || check.threads != cfg->threads)
        return sp_fail(e, SP_EXIT_USAGE, "internal: backward kernel config not derived (call kcfg_derive_bwd first)");

    emit_header(out, spec, pat, cfg);
    if (kcfg_family(cfg)->producer_threads)
        sb_puts(out, "/* The backward pass: four kernels sharing one configuration (codegen/kcfg_bwd.h).\n"
                     " *   atomic mode:         pre -> main -> convert   (main warp-specialized: kernels/bwd_ws.cuh)\n"
                     " *   deterministic mode:  pre -> main_sem -> convert   (dQ adds in a fixed order:\n"
                     " *                        bitwise repeatable)\n");
    else
        sb_puts(out, kcfg_bwd_dq_ordered(cfg)
                     ? "/* The backward pass: four kernels sharing one configuration (codegen/kcfg_bwd.h).\n"
                       " *   atomic mode:         pre -> main -> convert\n"
                       " *   deterministic mode:  pre -> main_sem -> convert   (dQ adds in a fixed order:\n"
                       " *                        bitwise repeatable)\n"
                     : "/* The backward pass: five kernels sharing one configuration (codegen/kcfg_bwd.h).\n"
                       " *   atomic mode:         pre -> main -> convert\n"
                       " *   deterministic mode:  pre -> main_det -> dq   (no atomics: bitwise repeatable)\n");
    sb_puts(out,
            " * The header's threads are main's, its shared memory the most any of them uses; each\n"
            " * kernel says its own at its definition. */\n\n");
    emit_bwd_constants(out, cfg);
    emit_prelude(out, cfg);
    emit_bands(out, cfg);
    emit_bwd_kparams(out);
    sb_printf(out,
              "#include \"bwd_aux.cuh\"\n"
              "#include \"%s\"\n\n",
              kcfg_family(cfg)->header);
    emit_bwd_entries(out, cfg);
    return out->oom ? sp_fail(e, SP_EXIT_FAIL, "out of memory generating the kernel source") : 0;
}
