/* The kernel-family table (codegen/family.h). */
#include "codegen/family.h"

#include <string.h>

#include "codegen/emit.h"
#include "codegen/emit_bwd.h"
#include "codegen/kcfg_bwd.h"

const sp_family sp_families[] = {
    { .name = "fwd-mma", .kind = SP_KIND_FWD, .mma = SP_MMA_SYNC, .tile_suffix = "", .name_suffix = "",
      .default_stages = 2, .smem_slack = 128, .uses_layout = 1, .header = "fwd_mma.cuh",
      .derive = kcfg_derive_fwd_mma, .candidates = kcfg_candidates_fwd_mma, .emit = emit_fwd_unit,
      .body = emit_fwd, .entry_name = kcfg_name },
    { .name = "fwd-wgmma", .kind = SP_KIND_FWD, .mma = SP_MMA_WGMMA, .tile_suffix = ":wgmma", .name_suffix = "_wg",
      .hopper_only = 1, .default_stages = 3, .smem_slack = 1024, .header = "fwd_wgmma.cuh",
      .derive = kcfg_derive_fwd_wgmma, .candidates = kcfg_candidates_fwd_wgmma, .emit = emit_fwd_unit,
      .body = emit_fwd_wgmma, .entry_name = kcfg_name },
    { .name = "fwd-ws", .kind = SP_KIND_FWD, .mma = SP_MMA_WS, .tile_suffix = ":ws", .name_suffix = "_ws",
      .hopper_only = 1, .default_stages = 2, .producer_threads = 128, .smem_slack = 1024, .extra_q_tiles = 1,
      .persistent = 1, .header = "fwd_ws.cuh",
      .derive = kcfg_derive_fwd_ws, .candidates = kcfg_candidates_fwd_ws, .emit = emit_fwd_unit,
      .body = emit_fwd_ws, .entry_name = kcfg_name },
    { .name = "bwd-mma", .kind = SP_KIND_BWD, .mma = SP_MMA_SYNC, .tile_suffix = "", .name_suffix = "",
      .default_stages = 2, .smem_slack = 128, .ds_bufs = 1, .uses_layout = 1, .header = "bwd_main.cuh",
      .derive = kcfg_derive_bwd, .candidates = kcfg_candidates_bwd_mma, .emit = emit_bwd_kernels,
      .entry_name = kcfg_bwd_main_name },
    { .name = "bwd-wgmma", .kind = SP_KIND_BWD, .mma = SP_MMA_WGMMA, .tile_suffix = ":wgmma", .name_suffix = "_wg",
      .hopper_only = 1, .default_stages = 2, .smem_slack = 1024, .ds_bufs = 2, .dq_bulk = 1, .dq_ordered = 1,
      .uses_layout = 1, .header = "bwd_wgmma.cuh",
      .derive = kcfg_derive_bwd, .candidates = kcfg_candidates_bwd_wgmma, .emit = emit_bwd_kernels,
      .entry_name = kcfg_bwd_main_name },
    { .name = "bwd-ws", .kind = SP_KIND_BWD, .mma = SP_MMA_WS, .tile_suffix = ":ws", .name_suffix = "_ws",
      .hopper_only = 1, .default_stages = 2, .producer_threads = 128, .smem_slack = 1024, .ds_bufs = 2, .dq_bulk = 1,
      .dq_ordered = 1, .uses_layout = 1, .header = "bwd_ws.cuh",
      .derive = kcfg_derive_bwd, .candidates = kcfg_candidates_bwd_ws, .emit = emit_bwd_kernels,
      .entry_name = kcfg_bwd_main_name },
    { .name = "decode", .kind = SP_KIND_DEC, .mma = SP_MMA_SYNC, .tile_suffix = "", .name_suffix = "",
      .default_stages = 3, .smem_slack = 128, .uses_layout = 1, .header = "decode.cuh",
      .derive = kcfg_derive_dec, .candidates = kcfg_candidates_dec, .emit = emit_dec_unit,
      .entry_name = kcfg_name },
};
const int sp_family_count = (int)(sizeof sp_families / sizeof sp_families[0]);

const sp_family *kcfg_family(const sp_kcfg *c)
{
    for (int i = 0; i < sp_family_count; i++)
        if (sp_families[i].kind == c->kind && (int)sp_families[i].mma == c->mma) return &sp_families[i];
    return NULL;
}

const sp_family *family_by_suffix(sp_kernel_kind kind, const char *suffix)
{
    for (int i = 0; i < sp_family_count; i++)
        if (sp_families[i].kind == kind && strcmp(sp_families[i].tile_suffix, suffix) == 0) return &sp_families[i];
    return NULL;
}
