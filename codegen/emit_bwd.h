/* The backward-pass code generator: one CUDA C++ translation unit holding
 * the kernels of a backward config (codegen/kcfg_bwd.h: pre, main,
 * convert, and main_det and dq, or main_sem on wgmma), after the forward's
 * prelude and band helpers (codegen/emit.h).  FlashAttention-2 technique on
 * mma.sync m16n8k16; on wgmma, FlashAttention-3's dQ by bulk reduce-adds.
 *
 * Which kernels run (runtime/attn_bwd.c does it):
 *     atomic mode                   pre -> main -> convert
 *     deterministic mode, mma.sync  pre -> main_det -> dq
 *     deterministic mode, wgmma     pre -> main_sem -> convert
 * Both modes are in every translation unit, so one cubin serves both and
 * `--deterministic` needs no other compile.  In deterministic mode every
 * sum is taken in a fixed order (main_det and dq: no atomics at all;
 * main_sem: the reduce-adds of one query tile in descending KV-tile order,
 * kernels/bwd_order.cuh), so two runs give the same bits. */
#ifndef SPATTN_EMIT_BWD_H
#define SPATTN_EMIT_BWD_H

#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "common/strbuf.h"

/* Append the translation unit for cfg (a backward config that
 * kcfg_derive_bwd accepted) of the spec's problem with pattern pat.  The
 * kernels are extern "C" and named by kcfg_bwd_name.  Same inputs, same
 * bytes.  -1 (SP_EXIT_USAGE) if cfg is not a derived backward config. */
int emit_bwd_kernels(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e);

#endif
