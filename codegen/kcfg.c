/* Kernel configs: the problem a kernel is specialized to, the tile choices,
 * and what follows from them.  The shared-memory formula here is the one the
 * generated kernel static_asserts (codegen/emit_fwd.c), so the launch and
 * the kernel always agree on it. */
#include "codegen/kcfg.h"
#include "codegen/kcfg_bwd.h"
#include "codegen/family.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi/bandtab.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

/* Default forward tiles per head_dim and GPU, from measurements (bench/
 * RESULTS.md and bench/NOTES-fwd-ws.md have them; `spattn tune` picks per
 * shape).
 * sm_90 (Hopper), d64 and d128: the warp-specialized kernel
 * (kernels/fwd_ws.cuh), 128x128 with two consumer warpgroups and 2 stages
 * of K and V: on the H200 0.405 ms at (1,16,16384,128) against 0.602 for
 * the wgmma kernel, and 0.107 against 0.128 for mma.sync at (4,8,4096,64).
 * Elsewhere mma.sync:
 * 64x64 with 4 warps of 16 rows: fewer registers, two or more blocks per
 * SM, less work wasted at band edges (A100's 164 KiB per SM holds two such
 * blocks at d128).  d256 keeps Q in shared memory (see fwd_reg_estimate)
 * and, on GPUs with 99 KiB of shared memory per block (sm_86, sm_89), uses
 * BN 32.  Every default is spill-free for its architecture
 * (tests/unit/test_codegen.c checks). */
static void default_fwd_tiles(sp_kcfg *c, int sm)
{
    c->stages = 2;
    c->bm = 64;
    c->bn = 64;
    c->warps = 4;
    c->mma = SP_MMA_SYNC;
    if (sm == 90 && (c->head_dim == 128 || c->head_dim == 64)) {
        c->mma = SP_MMA_WS;
        c->bm = 128;
        c->bn = 128;
        c->warps = 8;
        c->stages = 2;
    }
    if (c->head_dim >= 256 && (sm == 86 || sm == 89)) c->bn = 32;
}

void kcfg_for_spec(sp_kcfg *c, const sp_spec *s, const sp_pattern *p, sp_kernel_kind kind, int sm)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->dtype = s->dtype;
    c->head_dim = s->head_dim;
    c->heads = s->heads;
    c->kv_heads = s->kv_heads > 0 ? s->kv_heads : s->heads;
    c->pattern = p->kind;
    c->max_intervals = bandtab_max_intervals(p, s->heads);
    c->sm = sm;
    if (kind == SP_KIND_FWD) {
        default_fwd_tiles(c, sm);
    } else if (kind == SP_KIND_DEC) {
        kcfg_default_dec(c, sm);   /* codegen/kcfg_dec.c */
    } else {
        kcfg_default_bwd(c, sm);   /* codegen/kcfg_bwd.c: the backward's own rules */
    }
}

/* Bytes per shared-memory row of head_dim 16-bit values.  Rows of a
 * multiple of 8 chunks (d64, d128, d256) and of 4 chunks (d32) are
 * XOR-swizzled and need no padding; other widths (d96: 12 chunks) get one
 * extra chunk, an odd count that spreads 8 rows over 8 bank groups. */
int kcfg_row_bytes(int head_dim)
{
    int chunks = head_dim * 2 / 16;
    return (chunks % 8 == 0 || chunks == 4) ? head_dim * 2 : head_dim * 2 + 16;
}

/* Registers a forward thread needs at least, roughly, per m16 tile it owns
 * (WM = rows per warp / 16): O accumulators (d/2), S (BN/2) and, when kept,
 * Q fragments (d/4); plus about 40 for addresses, softmax state and loads in
 * flight.  The compiler adds more for fragments it prefetches: estimates
 * up to 200 were measured spill-free at 255 registers.  Used to keep Q in
 * registers only where it fits, and to leave out candidates that would
 * surely spill. */
static int fwd_reg_estimate(const sp_kcfg *c, int q_in_regs)
{
    int wm = c->bm / c->warps / 16;
    return wm * (c->head_dim / 2 + c->bn / 2 + (q_in_regs ? c->head_dim / 4 : 0)) + 40;
}

/* Warps for a forward tile of BM rows when --tile does not say: 32 rows per
 * warp from BM 128 up (each K/V fragment read from shared memory then feeds
 * two mma, halving shared-memory traffic per flop; 4 warps or more keep
 * the loads spread), else 16. */
static int default_fwd_warps(int bm)
{
    return bm >= 128 && bm % 32 == 0 ? bm / 32 : bm / 16;
}

/* A forward config's dynamic shared memory: the family's slack and extra
 * Q tiles (kcfg_smem_extra), the Q tile, STAGES stages of K and V; -1 with
 * an error over the limit (1 KiB stays free for static shared memory). */
static int fwd_smem(sp_kcfg *c, sp_err *e)
{
    long smem = kcfg_smem_extra(c) + (long)c->bm * c->row_bytes + (long)c->stages * 2 * c->bn * c->row_bytes;
    if (smem > KCFG_SMEM_LIMIT - 1024)
        return sp_fail(e, SP_EXIT_USAGE, "tile %dx%d with %d stages needs %ld bytes of shared memory, more than %d",
                       c->bm, c->bn, c->stages, smem, KCFG_SMEM_LIMIT - 1024);
    c->smem_bytes = (int)smem;
    return 0;
}

/* The two Hopper forwards share their tile rules: sm_90a, head_dim 64 or
 * 128, warpgroups of 4 warps owning 64 query rows each (BM 64, 128 or 192;
 * warps counts the math warps, a warp-specialized producer comes on top),
 * tiles in the 128-byte-swizzled layout wgmma reads (64-value column blocks,
 * 1024-byte aligned).  They differ in their stage range:
 *   wgmma (kernels/fwd_wgmma.cuh): reads V of tile it - 1 while tile it is
 *       current and loads ahead, so 3..5 stages;
 *   ws (kernels/fwd_ws.cuh): K and V in separate rings (K is freed before
 *       V, so 2 stages already overlap) and two Q tiles (the next item's
 *       loads during this one; O is staged in the finished one for the TMA
 *       store), 2..6 stages.  TMA boxes are at most 256 rows.
 * what: the family as messages name it. */
static int derive_fwd_hopper(sp_kcfg *c, const char *what, int min_stages, int max_stages, sp_err *e)
{
    if (c->sm != 90)
        return sp_fail(e, SP_EXIT_USAGE, "%s tiles need sm_90a (Hopper); this config targets sm_%d", what, c->sm);
    if (c->head_dim != 64 && c->head_dim != 128)
        return sp_fail(e, SP_EXIT_USAGE, "the %s forward supports head_dim 64 and 128, not %d", what, c->head_dim);
    if (c->bm != 64 && c->bm != 128 && c->bm != 192)
        return sp_fail(e, SP_EXIT_USAGE, "%s tile BM %d must be 64, 128 or 192 (warpgroups of 64 rows)", what, c->bm);
    if (c->bn < 16 || c->bn > 256 || c->bn % 16 != 0)
        return sp_fail(e, SP_EXIT_USAGE, "tile BN %d must be a multiple of 16 in 16..256", c->bn);
    if (c->warps == 0) c->warps = c->bm / 16;
    if (c->warps != c->bm / 16)
        return sp_fail(e, SP_EXIT_USAGE, "%s tile BM %d needs %d warps (a warpgroup of 4 per 64 rows), not %d", what,
                       c->bm, c->bm / 16, c->warps);
    if (c->stages < min_stages || c->stages > max_stages)
        return sp_fail(e, SP_EXIT_USAGE, "%s stages %d must be in %d..%d", what, c->stages, min_stages, max_stages);
    c->threads = 32 * c->warps + kcfg_family(c)->producer_threads;
    c->row_bytes = c->head_dim * 2;
    c->q_in_regs = 0;   /* wgmma reads Q from shared memory */
    return fwd_smem(c, e);
}

int kcfg_smem_extra(const sp_kcfg *c)
{
    const sp_family *f = kcfg_family(c);
    return f ? f->smem_slack + f->extra_q_tiles * c->bm * c->row_bytes : 0;
}

/* What every forward config must satisfy, whatever its family. */
static int derive_fwd_problem(sp_kcfg *c, sp_err *e)
{
    if (c->kind != SP_KIND_FWD) return sp_fail(e, SP_EXIT_USAGE, "internal: not a forward config");
    if (c->head_dim != 32 && c->head_dim != 64 && c->head_dim != 96 && c->head_dim != 128 && c->head_dim != 256)
        return sp_fail(e, SP_EXIT_USAGE, "head_dim %d is not supported by the forward kernel (32, 64, 96, 128, 256)",
                       c->head_dim);
    if (c->dtype != SP_BF16 && c->dtype != SP_FP16) return sp_fail(e, SP_EXIT_USAGE, "unknown dtype %d", (int)c->dtype);
    if (c->heads < 1 || c->kv_heads < 1 || c->heads % c->kv_heads != 0)
        return sp_fail(e, SP_EXIT_USAGE, "heads %d must be a multiple of kv_heads %d", c->heads, c->kv_heads);
    if (c->max_intervals < 1 || c->max_intervals > SP_MAX_INTERVALS)
        return sp_fail(e, SP_EXIT_USAGE, "max_intervals %d is out of range 1..%d", c->max_intervals, SP_MAX_INTERVALS);
    return 0;
}

int kcfg_derive_fwd_wgmma(sp_kcfg *c, sp_err *e)
{
    return derive_fwd_problem(c, e) || derive_fwd_hopper(c, "wgmma", 3, 5, e) ? -1 : 0;
}

int kcfg_derive_fwd_ws(sp_kcfg *c, sp_err *e)
{
    return derive_fwd_problem(c, e) || derive_fwd_hopper(c, "ws", 2, 6, e) ? -1 : 0;
}

/* The mma.sync forward (kernels/fwd_mma.cuh). */
int kcfg_derive_fwd_mma(sp_kcfg *c, sp_err *e)
{
    if (derive_fwd_problem(c, e)) return -1;
    if (c->bm < 16 || c->bm > 256 || c->bm % 16 != 0)
        return sp_fail(e, SP_EXIT_USAGE, "tile BM %d must be a multiple of 16 in 16..256", c->bm);
    if (c->bn < 16 || c->bn > 256 || c->bn % 16 != 0)
        return sp_fail(e, SP_EXIT_USAGE, "tile BN %d must be a multiple of 16 in 16..256", c->bn);
    if (c->warps == 0) c->warps = default_fwd_warps(c->bm);
    if (c->warps < 1 || (c->bm != 16 * c->warps && c->bm != 32 * c->warps))
        return sp_fail(e, SP_EXIT_USAGE, "tile BM %d with %d warps: each warp must own 16 or 32 query rows", c->bm,
                       c->warps);
    if (c->stages < 1 || c->stages > 4)
        return sp_fail(e, SP_EXIT_USAGE, "stages %d must be in 1..4", c->stages);

    c->threads = 32 * c->warps;
    c->row_bytes = kcfg_row_bytes(c->head_dim);
    c->q_in_regs = fwd_reg_estimate(c, 1) <= 200;
    /* Its family's 128 bytes of slack: the kernel rounds the dynamic shared
     * memory base up to 128 so the swizzle's bank pattern holds. */
    return fwd_smem(c, e);
}

int kcfg_derive(sp_kcfg *c, sp_err *e)
{
    const sp_family *f = kcfg_family(c);
    if (!f) return sp_fail(e, SP_EXIT_USAGE, "internal: no kernel family of kind %d and MMA %d", (int)c->kind, c->mma);
    return f->derive(c, e);
}

/* A positive decimal number at *p, advancing p; -1 if none or absurd. */
static long parse_num(const char **p)
{
    if (**p < '0' || **p > '9') return -1;
    errno = 0;
    char *end;
    long v = strtol(*p, &end, 10);
    if (errno || v < 1 || v > 4096) return -1;
    *p = end;
    return v;
}

int kcfg_parse_tile(const char *arg, sp_kcfg *c, sp_err *e)
{
    const char *p = arg;
    long bm = parse_num(&p), bn = -1, warps = 0, stages = c->stages, splits = 0;
    const sp_family *fam = family_by_suffix(c->kind, "");
    int stages_given = 0;
    if (bm > 0 && (*p == 'x' || *p == 'X')) {
        p++;
        bn = parse_num(&p);
    }
    while (bn > 0 && *p == ':') {
        const sp_family *named = family_by_suffix(c->kind, p);   /* ":wgmma", ":ws": the last field only */
        if (named && named->tile_suffix[0]) {
            fam = named;
            p += strlen(p);
            break;
        }
        p++;
        char what = *p;
        if (what != 'w' && what != 's' && !(what == 'k' && c->kind == SP_KIND_DEC)) { bn = -1; break; }
        p++;
        long v = parse_num(&p);
        if (v < 0) { bn = -1; break; }
        if (what == 'w') warps = v;
        else if (what == 'k') splits = v;
        else { stages = v; stages_given = 1; }
    }
    if (bm < 0 || bn < 0 || *p || !fam) {
        if (c->kind == SP_KIND_DEC) {
            sp_fail(e, SP_EXIT_USAGE, "bad decode tile '%s': expected 16xBN, 16xBN:wW:sS or 16xBN:wW:sS:kK (K splits)", arg);
            sp_hint(e, "for example 16x64, 16x64:w4:s3 or 16x128:w4:s2:k8");
            return -1;
        }
        sp_fail(e, SP_EXIT_USAGE, "bad tile '%s': expected BMxBN or BMxBN:wW:sS, optionally ending in :wgmma%s", arg,
                c->kind == SP_KIND_FWD ? " or :ws" : "");
        sp_hint(e, "for example 128x64, 128x64:w4:s2, 128x128:w8:s3:wgmma or 128x128:s2:ws");
        return -1;
    }
    /* Stages not given, for another family than c's: that family's own default. */
    if (!stages_given && (int)fam->mma != c->mma) stages = fam->default_stages;
    c->bm = (int)bm;
    c->bn = (int)bn;
    c->warps = (int)warps;
    c->stages = (int)stages;
    c->splits = (int)splits;
    c->mma = fam->mma;
    return 0;
}

void kcfg_hash(const sp_kcfg *c, char out[9])
{
    char text[256];
    int len = snprintf(text, sizeof text,
                       "kind %d dtype %d head_dim %d heads %d kv_heads %d dense %d max_intervals %d "
                       "bm %d bn %d warps %d stages %d mma %d",
                       (int)c->kind, (int)c->dtype, c->head_dim, c->heads, c->kv_heads, c->pattern == SP_DENSE,
                       c->max_intervals, c->bm, c->bn, c->warps, c->stages, c->mma);
    snprintf(out, 9, "%08x", (unsigned)XXH32(text, len > 0 ? (size_t)len : 0, 0));
}

const char *kcfg_kind_name(sp_kernel_kind kind)
{
    return kind == SP_KIND_BWD ? "bwd" : kind == SP_KIND_DEC ? "dec" : "fwd";
}

void kcfg_name(const sp_kcfg *c, char *buf, int n)
{
    const sp_family *f = kcfg_family(c);
    char hash[9];
    kcfg_hash(c, hash);
    snprintf(buf, (size_t)n, "spattn_%s_%s_d%d_bm%d_bn%d_w%d_s%d%s_%s", kcfg_kind_name(c->kind),
             sp_dtype_name(c->dtype), c->head_dim, c->bm, c->bn, c->warps, c->stages,
             f ? f->name_suffix : "", hash);
}

int kcfg_same_kernel(const sp_kcfg *a, const sp_kcfg *b)
{
    char na[160], nb[160];
    kcfg_name(a, na, sizeof na);
    kcfg_name(b, nb, sizeof nb);
    return a->kind == b->kind && strcmp(na, nb) == 0;
}

void kcfg_tile_string(const sp_kcfg *c, char *buf, int n)
{
    const sp_family *f = kcfg_family(c);
    int len = snprintf(buf, (size_t)n, "%dx%d:w%d:s%d%s", c->bm, c->bn, c->warps, c->stages,
                       f ? f->tile_suffix : "");
    if (c->kind == SP_KIND_DEC && c->splits > 0 && len > 0 && len < n)
        snprintf(buf + len, (size_t)(n - len), ":k%d", c->splits);   /* decode: the splits, a launch choice */
}

/* The Hopper parts of the forward search space (sm_90 only): every BM x BN
 * x stages of the lists that derives and whose O, S and P of one warpgroup
 * row set (head_dim / 2 + BN / 2 + BN / 4 + about 40 registers) fit
 * reg_cap registers per thread. */
static int wgmma_candidates(const sp_kcfg *c, int mma, const int *bms, int nbm, const int *bns, int nbn,
                            const int (*stages)[2], int (*reg_cap)(const sp_kcfg *t), sp_kcfg *out, int cap, int count)
{
    for (int i = 0; i < nbm; i++)
        for (int j = 0; j < nbn; j++)
            for (int k = 0; k < 2; k++) {
                sp_kcfg t = *c;
                t.mma = mma;
                t.bm = bms[i];
                t.bn = bns[j];
                t.warps = 0;
                t.stages = (*stages)[k];
                sp_err e = { 0 };
                if (kcfg_derive(&t, &e)) continue;
                if (t.head_dim / 2 + t.bn / 2 + t.bn / 4 + 40 > reg_cap(&t)) continue;
                if (count < cap) out[count] = t;
                count++;
            }
    return count;
}

/* The wgmma kernel's threads share the 64K registers evenly, at most 255. */
static int shared_reg_cap(const sp_kcfg *t)
{
    int budget = 65536 / t->threads;
    return budget > 255 ? 255 : budget;
}

int kcfg_ws_consumer_regs(const sp_kcfg *c)
{
    /* setmaxnreg only moves registers within the block's pool, which is what
     * the block got at launch: __launch_bounds__'s cap (65536 / blocks per
     * SM / threads, at most 255, down to a multiple of 8 as ptxas allocates)
     * times its threads.  Asking for more than the pool holds hangs the
     * block (session 9: a forward at two blocks per SM whose consumers asked
     * for 112 of a 80-register launch). */
    int per_thread = 65536 / (c->ctas > 1 ? c->ctas : 1) / c->threads;
    if (per_thread > 255) per_thread = 255;
    int pool = per_thread / 8 * 8 * c->threads;
    int regs = (pool - 128 * KCFG_WS_PRODUCER_REGS) / (c->threads - 128) / 8 * 8;
    return regs > 240 ? 240 : regs;
}

/* wgmma: BM 64, 128 or 192 (1-3 warpgroups), BN 64, 96 or 128, 3 or 4 stages. */
int kcfg_candidates_fwd_wgmma(const sp_kcfg *c, sp_kcfg *out, int cap, int count)
{
    static const int bms[] = { 64, 128, 192 }, bns[] = { 64, 96, 128 }, stages[2] = { 3, 4 };
    return wgmma_candidates(c, SP_MMA_WGMMA, bms, 3, bns, 3, &stages, shared_reg_cap, out, cap, count);
}

/* ws: BM 128 or 192 (2 or 3 consumers; one would leave the tensor cores
 * idle during its softmax), BN 64 .. 176, 2 or 3 stages. */
int kcfg_candidates_fwd_ws(const sp_kcfg *c, sp_kcfg *out, int cap, int count)
{
    static const int bms[] = { 128, 192 }, bns[] = { 64, 96, 128, 176 }, stages[2] = { 2, 3 };
    return wgmma_candidates(c, SP_MMA_WS, bms, 2, bns, 4, &stages, kcfg_ws_consumer_regs, out, cap, count);
}

/* mma.sync: BM 64 .. 256 with 32 or 16 rows per warp, BN 32, 64 or 128, 2
 * or 3 stages, within the register estimate. */
int kcfg_candidates_fwd_mma(const sp_kcfg *c, sp_kcfg *out, int cap, int count)
{
    static const int bms[] = { 64, 128, 192, 256 }, rows[] = { 32, 16 }, bns[] = { 32, 64, 128 }, stages[] = { 2, 3 };
    for (size_t i = 0; i < sizeof bms / sizeof bms[0]; i++)
        for (size_t w = 0; w < sizeof rows / sizeof rows[0]; w++)
            for (size_t j = 0; j < sizeof bns / sizeof bns[0]; j++)
                for (size_t k = 0; k < sizeof stages / sizeof stages[0]; k++) {
                    if (bms[i] % rows[w] != 0) continue;
                    sp_kcfg t = *c;
                    t.mma = SP_MMA_SYNC;
                    t.bm = bms[i];
                    t.warps = bms[i] / rows[w];
                    t.bn = bns[j];
                    t.stages = stages[k];
                    sp_err e = { 0 };
                    if (kcfg_derive(&t, &e)) continue;
                    if (fwd_reg_estimate(&t, t.q_in_regs) > shared_reg_cap(&t)) continue;
                    if (count < cap) out[count] = t;
                    count++;
                }
    return count;
}

int kcfg_candidates(const sp_kcfg *c, sp_kcfg *out, int cap)
{
    int count = 0;
    for (int i = 0; i < sp_family_count; i++) {
        const sp_family *f = &sp_families[i];
        if (f->kind != c->kind || (f->hopper_only && c->sm != 90)) continue;
        count = f->candidates(c, out, cap, count);
    }
    return count < cap ? count : cap;
}
