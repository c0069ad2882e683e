/* The CUDA code generator.  The kernels' device code lives in real CUDA
 * headers, kernels/ .cuh files (embedded at build time, codegen/kernel_sources.h);
 * emit_kernel writes only a kernel's specialization for a derived config:
 * a header comment, the constants of the spec and the config (an enum), the
 * element type, the parameter structs (from abi/), `#include "x.cuh"`
 * lines, and the extern "C" entry points, named by kcfg_name, that call
 * the kernel bodies in the headers.  NVRTC reads the headers as in-memory
 * headers; kernel_sources_flatten makes the one self-contained translation
 * unit `spattn gen` prints.  The same inputs always give the same bytes, so
 * the source can key the cubin cache and `spattn gen` output can be diffed.
 *
 * Emitters append to a strbuf and read only the config: they never choose a
 * tile size (kcfg_derive did).  The parts are public so the backward
 * emitter (and new kernel families) can reuse them. */
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
 * GROUP, MAX_INTERVALS, tile geometry, SMEM_BYTES, Q_IN_REGS, BANDS_DENSE):
 * what the kernels/ headers are written against. */
void emit_constants(strbuf *out, const sp_kcfg *cfg);
/* The element type (elem_t, ELEM_PTX, ELEM_PTX_X2, ELEM_BF16) and
 * kernels/common.cuh, the sp_kparams struct (abi/kparams.h) with its size
 * check, kernels/ptx.cuh (the PTX helpers) and, for the mma.sync kernels
 * and the backward, kernels/layout.cuh.  Needs emit_constants before it. */
void emit_prelude(strbuf *out, const sp_kcfg *cfg);
/* One row of a kernel parameter struct's X-macro field list
 * (abi/kparams.h, abi/kparams_bwd.h). */
typedef struct { const char *type, *name, *comment; } emit_field;
/* The struct `name` from fields[0..n), with a static_assert that its size is
 * host_size (the host's sizeof): host and kernel cannot drift apart. */
void emit_param_struct(strbuf *out, const char *name, const char *header, const emit_field *fields, size_t n,
                       size_t host_size);
/* `#include "bands.cuh"`: the band_plan struct, band_plan_build (the KV
 * tiles a query tile visits, mirroring bands_kv_tiles), band_tile_at,
 * band_tile_kind (SKIP / PARTIAL / FULL for a row range) and band_allows. */
void emit_bands(strbuf *out, const sp_kcfg *cfg);
/* The forward kernel on mma.sync: `#include "fwd_mma.cuh"` and the entry
 * point (kcfg_name) that calls fwd_mma_kernel; after the prelude and the
 * band helpers. */
void emit_fwd(strbuf *out, const sp_kcfg *cfg);
/* The Hopper forward (kernels/fwd_wgmma.cuh): warpgroups of 4 warps on
 * wgmma, tiles in the 128-byte-swizzled layout; for cfg->mma ==
 * SP_MMA_WGMMA, after the prelude and the band helpers. */
void emit_fwd_wgmma(strbuf *out, const sp_kcfg *cfg);
/* The warp-specialized forward (codegen/emit_fwd_ws.c, kernels/fwd_ws.cuh):
 * for cfg->mma == SP_MMA_WS, after the prelude and the band helpers. */
void emit_fwd_ws(strbuf *out, const sp_kcfg *cfg);

#endif
