/* The Hopper (wgmma) variant of the backward's main kernels, for backward
 * configs with mma == SP_MMA_WGMMA (codegen/kcfg_bwd.h).  Called by
 * emit_bwd_kernels (codegen/emit_bwd.c), which emits the rest of the
 * translation unit: constants, prelude, band helpers, the query-tile cursor
 * and the per-warp P^T / mask / dS^T parts these kernels share with the
 * mma.sync ones, and the pre, dq and convert kernels. */
#ifndef SPATTN_EMIT_BWD_WGMMA_H
#define SPATTN_EMIT_BWD_WGMMA_H

#include "codegen/kcfg.h"
#include "common/strbuf.h"

/* The tile layout, wgmma primitives and the backward's wgmma wrappers and
 * issue helpers (issue_st, issue_acc, issue_dq, pack_frags, dq_reduce). */
void emit_bwd_wg_ops(strbuf *out, const sp_kcfg *cfg);
/* bwd_main_body<WITH_DQ> on wgmma: main and main_det. */
void emit_bwd_wg_main_body(strbuf *out);

/* Shared by both main bodies (defined in codegen/emit_bwd.c): the opening
 * of bwd_main_body<WITH_DQ> up to the block's indices and the K, V and band
 * table pointers (smem, slots, tid, warp, lane, n, n0, kvh, b, key0, k, v,
 * rows). */
void emit_bwd_main_prologue(strbuf *out);
/* Step 2 of a
 * body, the prefetch of the first STAGES - 1 query tiles (cursor `cur`,
 * count `issued`) and the zeroed dK, dV accumulators. */
void emit_bwd_main_start(strbuf *out);

#endif
