/* The kernel families, one row each, like git's command table: what a
 * family's configs may be (its rules: derive), which ones the tuner tries
 * (candidates), how it shows in tile strings and kernel names, what its
 * source is (the emitter and the kernels/ header) and how it is launched.
 * Code that must behave differently per family reads its row instead of
 * testing the MMA kind:
 *
 *     fwd-mma     forward on mma.sync, sm_80 and later        kernels/fwd_mma.cuh
 *     fwd-wgmma   forward on wgmma, cp.async loads, sm_90a    kernels/fwd_wgmma.cuh
 *     fwd-ws      forward warp-specialized: TMA producer,
 *                 wgmma consumers, persistent, sm_90a         kernels/fwd_ws.cuh
 *     bwd-mma     backward (pre, main, main_det, dq,
 *                 convert) on mma.sync                        kernels/bwd_main.cuh
 *     bwd-wgmma   backward (pre, main, main_sem, convert)
 *                 with main on wgmma, sm_90a                  kernels/bwd_wgmma.cuh
 *     bwd-ws      backward (pre, main, main_sem, convert) with
 *                 main warp-specialized: TMA producer, wgmma
 *                 consumers; the default on sm_90a (packed
 *                 sequences take bwd-wgmma)                   kernels/bwd_ws.cuh
 *     decode      split-KV decode from a KV cache and its
 *                 combine, on mma.sync, sm_80 and later       kernels/decode.cuh
 *
 * A new family (a decode kernel, a warp-specialized backward) is a new row
 * and its functions. */
#ifndef SPATTN_FAMILY_H
#define SPATTN_FAMILY_H

#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "common/strbuf.h"

typedef struct sp_family {
    const char *name;             /* "fwd-ws": as bench/check_matrix.py and the docs name it */
    sp_kernel_kind kind;          /* the pass it computes */
    sp_mma_kind mma;              /* its value of sp_kcfg.mma */
    const char *tile_suffix;      /* how --tile names it: "" (mma.sync), ":wgmma", ":ws" */
    const char *name_suffix;      /* in kernel names: "", "_wg", "_ws" */
    int hopper_only;              /* 1: sm_90a only (wgmma, setmaxnreg, TMA) */
    int default_stages;           /* stages when a --tile switches to it without :sS */
    int producer_threads;         /* threads besides 32 x warps: a warp-specialized producer */
    int smem_slack;               /* alignment slack of the dynamic shared memory base */
    int extra_q_tiles;            /* Q tiles in shared memory beyond the first (forward) */
    int ds_bufs;                  /* dS^T staging buffers (backward main) */
    int dq_bulk;                  /* backward main stages dQ in shared memory for bulk reduce-adds */
    int dq_ordered;               /* deterministic backward: main_sem orders main's dQ adds
                                     (kernels/bwd_order.cuh), instead of main_det + dq */
    int persistent;               /* launch: one CTA per SM and TMA maps as a 2nd parameter */
    int uses_layout;              /* includes kernels/layout.cuh (the padded/swizzled mma.sync rows) */
    const char *header;           /* the kernels/ source of its main kernel */
    /* Check a config's tile choices and fill its derived fields. */
    int (*derive)(sp_kcfg *c, sp_err *e);
    /* Append its tuning candidates for c's problem to out (count so far,
     * at most cap kept); returns the new count. */
    int (*candidates)(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
    /* The translation unit of a derived config; for the forward families
     * emit_fwd_unit, which writes the common parts and then `body`. */
    int (*emit)(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e);
    void (*body)(strbuf *out, const sp_kcfg *cfg);
    /* The name of the entry the launch looks up first (the forward kernel,
     * or the backward's main kernel). */
    void (*entry_name)(const sp_kcfg *c, char *buf, int n);
} sp_family;

/* The rows, in the tuner's order; count. */
extern const sp_family sp_families[];
extern const int sp_family_count;

/* The row of a config (by kind and mma); NULL if none (a caller bug or an
 * uninitialised config). */
const sp_family *kcfg_family(const sp_kcfg *c);
/* The row of `kind` whose tile suffix is `suffix` ("" for mma.sync); NULL
 * if none. */
const sp_family *family_by_suffix(sp_kernel_kind kind, const char *suffix);

/* ---- The rows' functions (codegen/kcfg.c, kcfg_bwd.c, emit_*.c) ---- */
int kcfg_derive_fwd_mma(sp_kcfg *c, sp_err *e);
int kcfg_derive_fwd_wgmma(sp_kcfg *c, sp_err *e);
int kcfg_derive_fwd_ws(sp_kcfg *c, sp_err *e);
int kcfg_derive_bwd(sp_kcfg *c, sp_err *e);
int kcfg_candidates_fwd_mma(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
int kcfg_candidates_fwd_wgmma(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
int kcfg_candidates_fwd_ws(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
int kcfg_candidates_bwd_mma(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
int kcfg_candidates_bwd_wgmma(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
/* bwd-ws: the wgmma kernels' tiles with a producer warpgroup (BM 64, BN = head_dim, 2 or 3 stages). */
int kcfg_candidates_bwd_ws(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
int emit_fwd_unit(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e);
void kcfg_bwd_main_name(const sp_kcfg *c, char *buf, int n);
/* The decode family (codegen/kcfg_dec.c, codegen/emit_dec.c). */
#define KCFG_DEC_MAX_SPLITS 256
void kcfg_default_dec(sp_kcfg *c, int sm);
int kcfg_derive_dec(sp_kcfg *c, sp_err *e);
int kcfg_candidates_dec(const sp_kcfg *c, sp_kcfg *out, int cap, int count);
/* Shared memory the warps' merge takes: WARPS x BM rows of O, m and l (fp32). */
int kcfg_dec_merge_bytes(const sp_kcfg *c);
int emit_dec_unit(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e);
/* The combine kernel's name: the decode kernel's, then "_combine". */
void kcfg_dec_combine_name(const sp_kcfg *c, char *buf, int n);

#endif
