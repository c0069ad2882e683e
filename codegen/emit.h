/* The CUDA code generator.  emit_kernel writes one self-contained CUDA C++
 * translation unit (no #include: NVRTC gets no include path) for a derived
 * kernel config: a header comment, the prelude of small named helpers
 * (inline PTX wrapped once, each with its fragment layout), the band
 * helpers, then the kernel, whose body reads like FlashAttention-2
 * pseudocode.  The same inputs always give the same bytes, so the source
 * can key the cubin cache and `spattn gen` output can be diffed.
 *
 * Emitters append to a strbuf and read only the config: they never choose a
 * tile size (kcfg_derive did).  The parts are public so the backward
 * emitter can reuse the prelude and the band helpers. */
#ifndef SPATTN_EMIT_H
#define SPATTN_EMIT_H

#include <stddef.h>

#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "common/strbuf.h"

/* The whole translation unit for cfg (derived: kcfg_derive succeeded) of
 * the spec's problem with pattern pat.  The kernel is extern "C" and named
 * by kcfg_name.  -1 (SP_EXIT_USAGE) if cfg is not derived or its kind has
 * no emitter yet. */
int emit_kernel(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e);

/* 1 if emit_kernel can generate kernels of this kind. */
int emit_kind_supported(sp_kernel_kind kind);

/* ---- Parts, in the order a translation unit uses them ---- */

/* The opening comment: spattn version, spec name, pattern, heads, each
 * head's intervals at the spec's first seq_len, the config. */
void emit_header(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg);
/* Compile-time constants of cfg (HEAD_DIM, BM, BN, WARPS, THREADS, STAGES,
 * GROUP, MAX_INTERVALS, tile geometry, SMEM_BYTES). */
void emit_constants(strbuf *out, const sp_kcfg *cfg);
/* Types (16-bit storage, u32x4), the sp_kparams struct (abi/kparams.h)
 * with its size check, and the PTX helpers: cp.async with zero-fill,
 * commit/wait_group, ldmatrix x4 and x4.trans, mma m16n8k16 for cfg's
 * dtype, ex2/lg2, float-pair packing, quad reductions, shared-memory tile
 * offsets (swizzle).  Needs emit_constants before it. */
void emit_prelude(strbuf *out, const sp_kcfg *cfg);
/* One row of a kernel parameter struct's X-macro field list
 * (abi/kparams.h, abi/kparams_bwd.h). */
typedef struct { const char *type, *name, *comment; } emit_field;
/* The struct `name` from fields[0..n), with a static_assert that its size is
 * host_size (the host's sizeof): host and kernel cannot drift apart. */
void emit_param_struct(strbuf *out, const char *name, const char *header, const emit_field *fields, size_t n,
                       size_t host_size);
/* The band helpers: the band_plan struct, band_plan_build (the KV tiles a
 * query tile visits, mirroring bands_kv_tiles), band_tile_at,
 * band_tile_kind (SKIP / PARTIAL / FULL for a row range) and band_allows. */
void emit_bands(strbuf *out, const sp_kcfg *cfg);
/* The forward kernel and its parts (loads, S = QK^T, mask, online softmax,
 * O += PV, epilogue), after the prelude and the band helpers. */
void emit_fwd(strbuf *out, const sp_kcfg *cfg);
/* Parts of it the wgmma forward shares, written against a warp's m16
 * accumulator fragments s[WM][BN / 8][4] (the wgmma accumulator of a warp's
 * 16 rows has the same layout): mask_tile, softmax_p and rescale_o. */
void emit_fwd_mask(strbuf *out);
/* load_tile<ROWS> (cp.async, rows >= n zero-filled) and load_kv, written
 * against the layout function `off` ("tile_off" or "tile_off<ROWS>"). */
void emit_tile_loads(strbuf *out, const char *off);
void emit_fwd_softmax(strbuf *out);
/* The Hopper forward (codegen/emit_fwd_wgmma.c): warpgroups of 4 warps on
 * wgmma, tiles in the 128-byte-swizzled layout; for cfg->mma ==
 * SP_MMA_WGMMA, after the prelude and the band helpers. */
void emit_fwd_wgmma(strbuf *out, const sp_kcfg *cfg);
/* Parts of it the wgmma backward shares: the 128-byte-swizzled tile layout
 * (SW_ROW, tile_off<ROWS>), the wgmma primitives (fence, commit, wait,
 * regs_fence, fence_proxy_async, smem_desc), and one wgmma wrapper `name`:
 * D (64 x n, fp32) += A B for one k16 step.  With a_regs, A is a register
 * fragment and B is read transposed (MN-major); else both are shared-memory
 * descriptors, both K-major (trans_ss 0) or both MN-major (trans_ss 1).
 * type: "bf16" or "f16". */
void emit_wg_tiles(strbuf *out);
void emit_wg_primitives(strbuf *out);
void emit_wgmma_op(strbuf *out, const char *name, int n, const char *type, int a_regs, int trans_ss);
/* The forward's wgmma parts (primitives, wgmma_qk / wgmma_pv for cfg's BN
 * and head_dim, issue_qk, pack_p, issue_pv), shared with the
 * warp-specialized forward. */
void emit_wg_mma(strbuf *out, const sp_kcfg *cfg);
/* The warp-specialized forward (codegen/emit_fwd_ws.c, kernels/fwd_ws.cuh):
 * for cfg->mma == SP_MMA_WS, after the prelude and the band helpers. */
void emit_fwd_ws(strbuf *out, const sp_kcfg *cfg);

#endif
