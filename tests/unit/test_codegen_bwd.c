/* The backward code generator and its configs: kcfg_derive_bwd's rules,
 * the candidates, kernel names, deterministic bytes, each family's kernels
 * and the launch's parts and scratch per mode, and real NVRTC compiles of
 * the default configs for sm_80 and sm_90a with zero spill bytes (every
 * pattern kind, both dtypes, both head_dims, GQA). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/emit_bwd.h"
#include "codegen/kcfg.h"
#include "codegen/kcfg_bwd.h"
#include "codegen/kernel_sources.h"
#include "codegen/spec.h"
#include "abi/kparams_bwd.h"
#include "runtime/attn_bwd.h"
#include "runtime/nvrtc.h"
#include "tests/check.h"

/* A spec from YAML text; aborts the test binary on a parse error (a bug in
 * the test itself). */
static void load(sp_spec *s, const char *yaml)
{
    sp_err e = { 0 };
    if (spec_parse(yaml, strlen(yaml), "test", s, &e)) {
        fprintf(stderr, "test spec: %s\n", e.msg);
        exit(2);
    }
}

static const char *spec_text(char *buf, size_t n, int heads, int kv_heads, int head_dim, const char *dtype,
                             const char *pattern)
{
    const char *custom = "";
    if (!strcmp(pattern, "custom")) {
        /* up to 4 intervals per head: a bigger band table than the built-in patterns */
        custom = heads == 4 ? "bands:\n  - [[0, 65]]\n  - [[0, 65], [256, 512]]\n  - [[0, 3], [10, 20], [40, 41], [100, 300]]\n"
                              "  - [[5, 6]]\n"
                            : "";
    }
    snprintf(buf, n, "name: t\nheads: %d\nkv_heads: %d\nhead_dim: %d\ndtype: %s\npattern: %s\nseq_len: 1000\n%s", heads,
             kv_heads, head_dim, dtype, pattern, custom);
    return buf;
}

/* The default backward config of a spec for GPU sm, derived. */
static int default_cfg(const sp_spec *s, int sm, sp_kcfg *c)
{
    sp_err e = { 0 };
    kcfg_for_spec(c, s, &s->pattern, SP_KIND_BWD, sm);
    kcfg_default_bwd(c, sm);
    return kcfg_derive_bwd(c, &e);
}

static void test_defaults_derive(void)
{
    static const int dims[] = { 64, 128 }, sms[] = { 80, 86, 89, 90 };
    static const char *dtypes[] = { "bf16", "fp16" };
    for (int d = 0; d < 2; d++)
        for (int t = 0; t < 2; t++)
            for (int a = 0; a < 4; a++) {
                char buf[512];
                sp_spec s;
                load(&s, spec_text(buf, sizeof buf, 16, 4, dims[d], dtypes[t], "spattn"));
                sp_kcfg c;
                CHECKF(default_cfg(&s, sms[a], &c) == 0, "default d%d %s sm_%d derives", dims[d], dtypes[t], sms[a]);
                int producer = c.mma == SP_MMA_WS ? 128 : 0;   /* sm_90 d128: the warp-specialized kernel */
                CHECKF(c.threads == 32 * c.warps + producer && c.warps == c.bn / 16, "threads %d warps %d bn %d",
                       c.threads, c.warps, c.bn);
                /* opt-in shared memory per block: 163 KiB on sm_80, 99 KiB on sm_86 / sm_89, 227 KiB on sm_90 */
                int limit = sms[a] == 80 ? 163 * 1024 : sms[a] == 90 ? 227 * 1024 : 99 * 1024;
                CHECKF(c.smem_bytes <= limit, "default d%d sm_%d: smem %d fits %d", dims[d], sms[a], c.smem_bytes, limit);
                spec_free(&s);
            }
}

/* A valid base config to break one field at a time. */
static sp_kcfg base_cfg(void)
{
    sp_kcfg c;
    memset(&c, 0, sizeof c);
    c.kind = SP_KIND_BWD;
    c.dtype = SP_BF16;
    c.head_dim = 128;
    c.heads = 16;
    c.kv_heads = 4;
    c.pattern = SP_SPATTN;
    c.max_intervals = 2;
    c.bm = 64;
    c.bn = 64;
    c.warps = 0;
    c.stages = 2;
    return c;
}

static int derives(sp_kcfg c)
{
    sp_err e = { 0 };
    int rc = kcfg_derive_bwd(&c, &e);
    if (rc) CHECKF(e.code == SP_EXIT_USAGE && e.msg[0], "a rejection names its reason (code %d)", e.code);
    return rc == 0;
}

/* The deterministic mode's default (kcfg_default_bwd_det, issue 16): on
 * sm_90 at d64 the ws kernel with 2 stages, which gives it two dQ staging
 * buffers and writers, where the default mode keeps 3 stages and one; at
 * d128 and on the other GPUs the same kernel as the default mode's. */
static void test_det_default(void)
{
    static const int dims[] = { 64, 128 }, sms[] = { 80, 86, 89, 90 };
    for (int d = 0; d < 2; d++)
        for (int a = 0; a < 4; a++) {
            char buf[512];
            sp_spec s;
            load(&s, spec_text(buf, sizeof buf, 16, 4, dims[d], "bf16", "spattn"));
            sp_kcfg def, det;
            sp_err e = { 0 };
            kcfg_for_spec(&def, &s, &s.pattern, SP_KIND_BWD, sms[a]);
            det = def;
            kcfg_default_bwd_det(&det, sms[a]);
            int ok = kcfg_derive_bwd(&def, &e) == 0 && kcfg_derive_bwd(&det, &e) == 0;
            CHECKF(ok, "d%d sm_%d: both defaults derive (%s)", dims[d], sms[a], e.msg);
            char t0[64], t1[64];
            kcfg_tile_string(&def, t0, sizeof t0);
            kcfg_tile_string(&det, t1, sizeof t1);
            if (dims[d] == 64 && sms[a] == 90) {
                CHECKF(ok && !strcmp(t0, "64x64:w4:s3:ws") && kcfg_bwd_dq_bufs(&def) == 1, "d64 sm_90 default %s, %d "
                       "dQ buffers", t0, kcfg_bwd_dq_bufs(&def));
                CHECKF(ok && !strcmp(t1, "64x64:w4:s2:ws") && kcfg_bwd_dq_bufs(&det) == 2 && det.ctas == 2,
                       "d64 sm_90 deterministic %s: %d dQ buffers, %d blocks per SM", t1, kcfg_bwd_dq_bufs(&det),
                       det.ctas);
                CHECK("d64 sm_90: two kernels", !kcfg_same_kernel(&def, &det));
            } else {
                CHECKF(ok && kcfg_same_kernel(&def, &det) && !strcmp(t0, t1), "d%d sm_%d: the same kernel (%s, %s)",
                       dims[d], sms[a], t0, t1);
            }
            spec_free(&s);
        }
    /* kcfg_same_kernel tells kinds and compiled-in problem fields apart too. */
    sp_kcfg a = base_cfg(), b;
    sp_err e = { 0 };
    CHECK("base derives", kcfg_derive_bwd(&a, &e) == 0);
    b = a;
    b.heads = 32;
    CHECK("other heads: another kernel", !kcfg_same_kernel(&a, &b));
    b = a;
    b.splits = 4;   /* a launch choice, not compiled in */
    CHECK("splits: the same kernel", kcfg_same_kernel(&a, &b));
}

static void test_derive_rejects(void)
{
    sp_kcfg c = base_cfg();
    CHECK("base config derives", derives(c));

    static const int bad_dims[] = { 32, 96, 256, 0 };
    for (int i = 0; i < 4; i++) {
        c = base_cfg();
        c.head_dim = bad_dims[i];
        CHECKF(!derives(c), "head_dim %d rejected", bad_dims[i]);
    }
    static const int bad_bm[] = { 16, 48, 96, 256, 0 };
    for (int i = 0; i < 5; i++) {
        c = base_cfg();
        c.bm = bad_bm[i];
        CHECKF(!derives(c), "BM %d rejected", bad_bm[i]);
    }
    static const int bad_bn[] = { 0, 8, 24, 144, 256 };
    for (int i = 0; i < 5; i++) {
        c = base_cfg();
        c.bn = bad_bn[i];
        CHECKF(!derives(c), "BN %d rejected", bad_bn[i]);
    }
    c = base_cfg();
    c.warps = 8;   /* BN 64 means 4 warps of 16 keys */
    CHECK("warps that do not match BN rejected", !derives(c));
    c = base_cfg();
    c.warps = 4;
    CHECK("warps that match BN accepted", derives(c));
    c = base_cfg();
    c.stages = 1;
    CHECK("1 stage rejected", !derives(c));
    c = base_cfg();
    c.stages = 4;
    CHECK("4 stages rejected", !derives(c));
    c = base_cfg();
    c.kv_heads = 5;
    CHECK("heads not a multiple of kv_heads rejected", !derives(c));
    c = base_cfg();
    c.max_intervals = 0;
    CHECK("0 intervals rejected", !derives(c));
    c = base_cfg();
    c.max_intervals = SP_MAX_INTERVALS + 1;
    CHECK("too many intervals rejected", !derives(c));
    c = base_cfg();
    c.dtype = (sp_dtype)7;
    CHECK("unknown dtype rejected", !derives(c));
    c = base_cfg();
    c.kind = SP_KIND_FWD;
    CHECK("a forward config rejected", !derives(c));
    /* d128, 128 x 128, 3 stages: 298 KB of shared memory */
    c = base_cfg();
    c.bm = 128;
    c.bn = 128;
    c.stages = 3;
    CHECK("too much shared memory rejected", !derives(c));
}

static void test_derived_fields(void)
{
    sp_kcfg c = base_cfg();
    sp_err e = { 0 };
    CHECK("derives", kcfg_derive_bwd(&c, &e) == 0);
    CHECK("warps picked from BN", c.warps == 4);
    CHECK("threads are main's", c.threads == 128 && kcfg_bwd_threads(&c, BWD_MAIN) == 128);
    CHECK("dq threads: a warp per 16 rows", kcfg_bwd_threads(&c, BWD_DQ) == 128);
    CHECK("aux threads", kcfg_bwd_threads(&c, BWD_PRE) == KCFG_BWD_AUX_THREADS &&
                             kcfg_bwd_threads(&c, BWD_CONVERT) == KCFG_BWD_AUX_THREADS);
    CHECK("row bytes", c.row_bytes == 256);
    int main_smem = kcfg_bwd_smem(&c, BWD_MAIN), det = kcfg_bwd_smem(&c, BWD_MAIN_DET), dq = kcfg_bwd_smem(&c, BWD_DQ);
    /* K, V 64 rows; Q, dO 2 x 64 rows; lse2, delta 2 x 64 floats; dS^T 64 x 64 x 2 */
    CHECK("main smem", main_smem == 128 + 2 * 64 * 256 + 2 * 2 * 64 * 256 + 2 * 2 * 64 * 4 + 64 * 64 * 2);
    CHECK("main_det smem: no dS^T tile", det == main_smem - 64 * 64 * 2);
    CHECK("dq smem", dq == 128 + 2 * 64 * 256 + 2 * 2 * 64 * 256);
    CHECK("smem_bytes is the largest", c.smem_bytes == (main_smem > dq ? main_smem : dq));
    CHECK("aux kernels use no dynamic smem", kcfg_bwd_smem(&c, BWD_PRE) == 0 && kcfg_bwd_smem(&c, BWD_CONVERT) == 0);
    CHECK("aux rows d128", kcfg_bwd_aux_rows(&c) == 8);
    CHECK("q step: 64 queries", kcfg_bwd_q_sub(&c) == 64);
    CHECK("k step: 64 keys", kcfg_bwd_k_sub(&c) == 64);
    c.head_dim = 64;
    c.bn = 128;
    c.warps = 0;
    CHECK("d64 derives", kcfg_derive_bwd(&c, &e) == 0);
    CHECK("k step: at most 64 keys", kcfg_bwd_k_sub(&c) == 64);
    c.bm = 32;
    CHECK("32-row tiles derive", kcfg_derive_bwd(&c, &e) == 0);
    CHECK("q step: the whole tile", kcfg_bwd_q_sub(&c) == 32);
    CHECK("aux rows d64", kcfg_bwd_aux_rows(&c) == 16);
    CHECK("seqlen pad 1", kcfg_bwd_seqlen_pad(1) == 128);
    CHECK("seqlen pad 128", kcfg_bwd_seqlen_pad(128) == 128);
    CHECK("seqlen pad 129", kcfg_bwd_seqlen_pad(129) == 256);
}

static void test_names(void)
{
    sp_kcfg c = base_cfg();
    sp_err e = { 0 };
    kcfg_derive_bwd(&c, &e);
    char buf[128];
    kcfg_bwd_name(&c, BWD_MAIN, buf, sizeof buf);
    CHECKF(kernel_named(buf, "spattn_bwd_main_bf16_d128_bm64_bn64_w4_s2"), "main name %s", buf);
    kcfg_bwd_name(&c, BWD_MAIN_DET, buf, sizeof buf);
    CHECKF(kernel_named(buf, "spattn_bwd_main_det_bf16_d128_bm64_bn64_w4_s2"), "main_det name %s", buf);
    char main_name[128];
    kcfg_bwd_name(&c, BWD_MAIN, main_name, sizeof main_name);
    CHECK("the parts share the config's hash", !strcmp(main_name + strlen(main_name) - 9, buf + strlen(buf) - 9));
    c.dtype = SP_FP16;
    kcfg_bwd_name(&c, BWD_CONVERT, buf, sizeof buf);
    CHECKF(kernel_named(buf, "spattn_bwd_convert_fp16_d128_bm64_bn64_w4_s2"), "convert name %s", buf);
    CHECK("part names", !strcmp(kcfg_bwd_part_name(BWD_PRE), "pre") && !strcmp(kcfg_bwd_part_name(BWD_DQ), "dq") &&
                            !strcmp(kcfg_bwd_part_name(BWD_MAIN_SEM), "main_sem"));
    c.mma = SP_MMA_WGMMA;
    c.sm = 90;
    c.dtype = SP_BF16;
    c.bn = 128;
    c.warps = 0;
    CHECK("wgmma 64x128 derives", kcfg_derive_bwd(&c, &e) == 0);
    kcfg_bwd_name(&c, BWD_MAIN_SEM, buf, sizeof buf);
    CHECKF(kernel_named(buf, "spattn_bwd_main_sem_bf16_d128_bm64_bn128_w8_s2_wg"), "main_sem name %s", buf);
}

/* Issue 16 item 2: the deterministic mode of the wgmma family is pre -> main_sem ->
 * convert, with dq_accum and a semaphore per query tile in the scratch; the mma.sync
 * family keeps pre -> main_det -> dq and no accumulator; atomic mode is the same in
 * both.  Each family's translation unit has its mode's kernels and no others. */

/* Backward launch arguments of a [batch, 1000, 16 heads (4 kv heads), 128] problem at fake
 * device addresses: enough for grids, scratch sizes and attn_bwd_pack (nothing launches). */
static void fake_bwd_args(attn_bwd_args *a, int batch)
{
    memset(a, 0, sizeof *a);
    a->batch = batch;
    a->seqlen = 1000;
    a->heads = 16;
    a->kv_heads = 4;
    a->bands = a->lse = 0x2000;
    a->scale = 0.088f;
    const attn_tensor q = { 0x10000, 1000LL * 16 * 128, 16 * 128, 128 }, kv = { 0x20000, 1000LL * 4 * 128, 4 * 128, 128 };
    a->q = a->o = a->dout = a->dq = q;
    a->k = a->v = a->dk = a->dv = kv;
    a->dq_accum = 0x40000;
    a->delta = 0x50000;
    a->lse2 = 0x60000;
}
static void test_det_modes(void)
{
    sp_kcfg m = base_cfg(), w = base_cfg();
    sp_err e = { 0 };
    m.sm = 80;
    w.sm = 90;
    w.mma = SP_MMA_WGMMA;
    w.bn = 128;
    CHECK("configs derive", kcfg_derive_bwd(&m, &e) == 0 && kcfg_derive_bwd(&w, &e) == 0);
    CHECK("mma.sync: no ordered adds", !kcfg_bwd_dq_ordered(&m) && kcfg_bwd_dq_ordered(&w));
    CHECK("mma.sync parts", kcfg_bwd_has_part(&m, BWD_MAIN_DET) && kcfg_bwd_has_part(&m, BWD_DQ) &&
                                !kcfg_bwd_has_part(&m, BWD_MAIN_SEM));
    CHECK("wgmma parts", !kcfg_bwd_has_part(&w, BWD_MAIN_DET) && !kcfg_bwd_has_part(&w, BWD_DQ) &&
                             kcfg_bwd_has_part(&w, BWD_MAIN_SEM));
    for (int p = 0; p < BWD_PARTS; p++)
        if (p != BWD_MAIN_DET && p != BWD_DQ && p != BWD_MAIN_SEM)
            CHECKF(kcfg_bwd_has_part(&m, (sp_bwd_part)p) && kcfg_bwd_has_part(&w, (sp_bwd_part)p), "part %s in both",
                   kcfg_bwd_part_name((sp_bwd_part)p));
    CHECK("main_sem: main's threads and shared memory",
          kcfg_bwd_threads(&w, BWD_MAIN_SEM) == w.threads && kcfg_bwd_smem(&w, BWD_MAIN_SEM) == kcfg_bwd_smem(&w, BWD_MAIN));

    sp_bwd_part parts[3];
    attn_bwd_parts(&m, 0, parts);
    CHECK("mma.sync atomic", parts[0] == BWD_PRE && parts[1] == BWD_MAIN && parts[2] == BWD_CONVERT);
    attn_bwd_parts(&m, 1, parts);
    CHECK("mma.sync deterministic", parts[0] == BWD_PRE && parts[1] == BWD_MAIN_DET && parts[2] == BWD_DQ);
    attn_bwd_parts(&w, 0, parts);
    CHECK("wgmma atomic", parts[0] == BWD_PRE && parts[1] == BWD_MAIN && parts[2] == BWD_CONVERT);
    attn_bwd_parts(&w, 1, parts);
    CHECK("wgmma deterministic", parts[0] == BWD_PRE && parts[1] == BWD_MAIN_SEM && parts[2] == BWD_CONVERT);
    unsigned g0[3], g1[3];
    attn_bwd_args a;
    fake_bwd_args(&a, 3);
    attn_bwd_grid(&w, &a, BWD_MAIN, g0);
    attn_bwd_grid(&w, &a, BWD_MAIN_SEM, g1);
    CHECK("main_sem's grid is main's", !memcmp(g0, g1, sizeof g0) && g1[0] == 8 && g1[1] == 4 && g1[2] == 3);

    /* Scratch: [B, H, ceil(N / BM)] semaphores in the wgmma family's deterministic mode only. */
    attn_bwd_scratch s;
    size_t accum = (size_t)3 * 16 * 1000 * 128 * 4;
    a.deterministic = 1;
    attn_bwd_scratch_sizes(&w, &a, &s);
    CHECKF(s.dq_accum == accum && s.dq_sem == (size_t)3 * 16 * 16 * 4, "wgmma deterministic: accumulator %zu, "
           "semaphores %zu", s.dq_accum, s.dq_sem);
    attn_bwd_scratch_sizes(&m, &a, &s);
    CHECK("mma.sync deterministic: neither", s.dq_accum == 0 && s.dq_sem == 0);
    a.deterministic = 0;
    attn_bwd_scratch_sizes(&w, &a, &s);
    CHECK("wgmma atomic: accumulator, no semaphores", s.dq_accum == accum && s.dq_sem == 0);
    /* Packed (5 sequences, 1398 tokens): a head's tiles are total / BM + sequences. */
    a.deterministic = 1;
    a.cu_seqlens = 0x1000;
    a.total = 1398;
    a.batch = 5;
    attn_bwd_scratch_sizes(&w, &a, &s);
    CHECKF(s.dq_sem == (size_t)16 * (1398 / 64 + 5) * 4, "packed semaphores %zu", s.dq_sem);

    /* The packed parameters: main_sem gets both buffers and their strides, the others none. */
    a.cu_seqlens = 0;
    a.batch = 3;
    a.dq_sem = 0x70000;
    sp_bwd_kparams kp;
    w.heads = m.heads = 16;
    CHECK("pack wgmma deterministic", attn_bwd_pack(&w, &a, &kp, &e) == 0);
    CHECK("wgmma deterministic: accumulator and semaphores", kp.dq_accum == 0x40000 && kp.dq_sem == 0x70000 &&
                                                                 kp.sem_sh == 16 && kp.sem_sb == 16 * 16);
    CHECK("pack mma.sync deterministic", attn_bwd_pack(&m, &a, &kp, &e) == 0);
    CHECK("mma.sync deterministic: neither", kp.dq_accum == 0 && kp.dq_sem == 0);
    a.deterministic = 0;
    CHECK("pack wgmma atomic", attn_bwd_pack(&w, &a, &kp, &e) == 0);
    CHECK("wgmma atomic: no semaphores", kp.dq_accum == 0x40000 && kp.dq_sem == 0);
    a.deterministic = 1;
    a.dq_sem = 0;
    CHECK("main_sem without semaphores is refused", attn_bwd_pack(&w, &a, &kp, &e) == -1 && strstr(e.msg, "dq_sem"));
}

static void test_candidates(void)
{
    sp_kcfg c = base_cfg(), out[64];
    c.sm = 80;
    int n = kcfg_candidates(&c, out, 64), wg = 0;
    for (int i = 0; i < n; i++) wg += out[i].mma == SP_MMA_WGMMA;
    CHECKF(wg == 0, "no wgmma candidates on sm_80 (%d)", wg);
    c.sm = 90;
    n = kcfg_candidates(&c, out, 64);
    for (int i = 0; i < n; i++) wg += out[i].mma == SP_MMA_WGMMA;
    /* 3 stages no longer fit beside the fp32 dQ staging of the bulk reduce-adds. */
    CHECKF(wg == 1, "wgmma candidates on sm_90 d128: 64x128 with 2 stages (%d)", wg);
    CHECKF(n > 4, "d128 has candidates (%d)", n);
    for (int i = 0; i < n; i++) {
        sp_kcfg t = out[i];
        sp_err e = { 0 };
        CHECKF(t.kind == SP_KIND_BWD && kcfg_derive_bwd(&t, &e) == 0 && t.smem_bytes == out[i].smem_bytes,
               "candidate %dx%d s%d derives", out[i].bm, out[i].bn, out[i].stages);
        for (int j = 0; j < i; j++)
            CHECKF(out[j].bm != t.bm || out[j].bn != t.bn || out[j].stages != t.stages || out[j].mma != t.mma,
                   "candidates distinct (%d, %d)", i, j);
    }
    /* the default is among them */
    sp_kcfg d = base_cfg();
    kcfg_default_bwd(&d, 90);
    int found = 0;
    for (int i = 0; i < n; i++)
        found |= out[i].bm == d.bm && out[i].bn == d.bn && out[i].stages == d.stages && out[i].mma == d.mma;
    CHECK("default d128 is a candidate", found);
    CHECK("cap respected", kcfg_candidates(&c, out, 2) == 2);
    c.head_dim = 64;
    n = kcfg_candidates(&c, out, 64);
    CHECKF(n > 4, "d64 has candidates (%d)", n);
    for (int i = 0; i < n; i++) {
        sp_kcfg t = out[i];
        sp_err e = { 0 };
        CHECKF(kcfg_derive_bwd(&t, &e) == 0, "d64 candidate %dx%d s%d derives", t.bm, t.bn, t.stages);
    }
}

/* emit_bwd_kernels, flattened as `spattn gen` prints it (the kernels/
 * headers pasted in); 0 or -1. */
static int emit_flat(strbuf *out, const sp_spec *s, const sp_kcfg *c, sp_err *e)
{
    strbuf tu = STRBUF_INIT;
    sb_init(&tu);
    int rc = emit_bwd_kernels(&tu, s, &s->pattern, c, e);
    if (rc == 0) rc = kernel_sources_flatten(out, tu.buf, KERNEL_TU_NAME, e);
    sb_free(&tu);
    return rc;
}

static void test_emit_bytes(void)
{
    char buf[512];
    sp_spec s;
    load(&s, spec_text(buf, sizeof buf, 16, 4, 128, "bf16", "spattn"));
    sp_kcfg c;
    CHECK("default derives", default_cfg(&s, 90, &c) == 0);
    /* The wgmma family's unit (the warp-specialized one's entries: test_ws_family). */
    c.mma = SP_MMA_WGMMA;
    c.warps = 0;
    sp_err e0 = { 0 };
    CHECK("wgmma twin derives", kcfg_derive_bwd(&c, &e0) == 0);
    strbuf a = STRBUF_INIT, b = STRBUF_INIT;
    sb_init(&a);
    sb_init(&b);
    sp_err e = { 0 };
    CHECK("emit", emit_flat(&a, &s, &c, &e) == 0);
    CHECK("emit again", emit_flat(&b, &s, &c, &e) == 0);
    CHECK("same bytes", a.len == b.len && !memcmp(a.buf, b.buf, a.len));
    CHECK("no #include (NVRTC gets no include path)", !strstr(a.buf, "\n#include") && !strstr(a.buf, "\n #include"));
    for (int p = 0; p < BWD_PARTS; p++) {
        char name[128], decl[160];
        kcfg_bwd_name(&c, (sp_bwd_part)p, name, sizeof name);
        if (p == BWD_DQ) snprintf(decl, sizeof decl, "#define BWD_DQ_ENTRY %s\n", name);   /* kernels/bwd_dq.cuh */
        else snprintf(decl, sizeof decl, " %s(const sp_bwd_kparams p)", name);
        int has = kcfg_bwd_has_part(&c, (sp_bwd_part)p);
        CHECKF((strstr(a.buf, decl) != NULL) == has, "kernel %s %s", name, has ? "defined" : "absent");
    }
    CHECK("main_sem is main ordered", strstr(a.buf, "bwd_main_body<true, true>(p);") != NULL);
    char size_check[96];
    snprintf(size_check, sizeof size_check, "static_assert(sizeof(sp_bwd_kparams) == %d", (int)sizeof(sp_bwd_kparams));
    CHECK("host struct size checked", strstr(a.buf, size_check) != NULL);

    sp_kcfg raw = c;
    raw.smem_bytes = 0;
    sb_reset(&a);
    CHECK("an underived config is refused", emit_bwd_kernels(&a, &s, &s.pattern, &raw, &e) == -1);
    raw = c;
    raw.kind = SP_KIND_FWD;
    CHECK("a forward config is refused", emit_bwd_kernels(&a, &s, &s.pattern, &raw, &e) == -1);
    raw = c;
    raw.bn = c.bn == 128 ? 64 : 128;   /* changed after deriving: smem_bytes no longer matches */
    CHECK("a config changed after deriving is refused", emit_bwd_kernels(&a, &s, &s.pattern, &raw, &e) == -1);
    sb_free(&a);
    sb_free(&b);
    spec_free(&s);
}

/* ---- NVRTC: default configs compile for sm_80 and sm_90a without spills ---- */

typedef struct {
    int heads, kv_heads, head_dim;
    const char *dtype, *pattern;
    const char *arch;
    const char *tile;   /* NULL: the default config; else this --tile (e.g. the opt-in :ws) */
    /* results */
    int compiled, parts_found, parts_expected, spill_free;
    char what[160];
} compile_job;

static void *compile_one(void *arg)
{
    compile_job *j = arg;
    char buf[512];
    sp_spec s;
    load(&s, spec_text(buf, sizeof buf, j->heads, j->kv_heads, j->head_dim, j->dtype, j->pattern));
    sp_kcfg c;
    snprintf(j->what, sizeof j->what, "%s d%d %s H%d/%d %s", j->pattern, j->head_dim, j->dtype, j->heads, j->kv_heads,
             j->arch);
    if (default_cfg(&s, !strcmp(j->arch, "sm_80") ? 80 : 90, &c)) {
        spec_free(&s);
        return NULL;
    }
    if (j->tile) {
        sp_err te = { 0 };
        snprintf(j->what + strlen(j->what), sizeof j->what - strlen(j->what), " %s", j->tile);
        if (kcfg_parse_tile(j->tile, &c, &te) || kcfg_derive_bwd(&c, &te)) {
            fprintf(stderr, "  %s: %s\n", j->what, te.msg);
            spec_free(&s);
            return NULL;
        }
    }
    strbuf src = STRBUF_INIT;
    sb_init(&src);
    sp_err e = { 0 };
    sp_compiled out = { 0 };
    if (emit_bwd_kernels(&src, &s, &s.pattern, &c, &e) == 0 && nvrtc_compile(src.buf, j->arch, &out, &e) == 0) {
        j->compiled = 1;
        j->spill_free = 1;
        for (int p = 0; p < BWD_PARTS; p++) {
            char name[128];
            if (!kcfg_bwd_has_part(&c, (sp_bwd_part)p)) continue;
            j->parts_expected++;
            kcfg_bwd_name(&c, (sp_bwd_part)p, name, sizeof name);
            sp_kres r;
            if (nvrtc_kernel_resources(out.log, name, &r) == 0 && r.regs > 0) j->parts_found++;
            if (r.spill_stores || r.spill_loads || r.wgmma_serialized) {
                j->spill_free = 0;
                fprintf(stderr, "  %s: %s spills %d/%d bytes (%d registers)%s\n", j->what, name, r.spill_stores,
                        r.spill_loads, r.regs, r.wgmma_serialized ? ", wgmma serialized (C7518)" : "");
            }
        }
    } else {
        fprintf(stderr, "  %s: %s\n", j->what, e.msg);
    }
    nvrtc_compiled_free(&out);
    sb_free(&src);
    spec_free(&s);
    return NULL;
}

static void test_compile_no_spills(void)
{
    static const char *patterns[] = { "spattn", "dense", "exclusive", "custom" }, *dtypes[] = { "bf16", "fp16" },
                      *archs[] = { "sm_80", "sm_90a" };
    static const int dims[] = { 64, 128 };
    compile_job jobs[48];
    int n = 0;
    for (int a = 0; a < 2; a++)
        for (int d = 0; d < 2; d++) {
            for (int t = 0; t < 2; t++)
                for (int p = 0; p < 4; p++)
                    jobs[n++] = (compile_job){ 4, 4, dims[d], dtypes[t], patterns[p], archs[a], NULL, 0, 0, 0, 0, "" };
            /* grouped-query attention: 32 query heads on 8 kv heads */
            jobs[n++] = (compile_job){ 32, 8, dims[d], d ? "bf16" : "fp16", "spattn", archs[a], NULL, 0, 0, 0, 0, "" };
        }
    /* Two at a time: NVRTC is thread-safe, and the machine has two cores. */
    for (int i = 0; i < n; i += 2) {
        pthread_t th[2];
        int m = i + 1 < n ? 2 : 1;
        for (int k = 0; k < m; k++) pthread_create(&th[k], NULL, compile_one, &jobs[i + k]);
        for (int k = 0; k < m; k++) pthread_join(th[k], NULL);
    }
    for (int i = 0; i < n; i++) {
        CHECKF(jobs[i].compiled, "%s compiles", jobs[i].what);
        CHECKF(jobs[i].parts_found == jobs[i].parts_expected && jobs[i].parts_expected >= (jobs[i].tile ? 3 : 4),
               "%s: all %d kernels in the ptxas report (%d)", jobs[i].what, jobs[i].parts_expected, jobs[i].parts_found);
        CHECKF(jobs[i].spill_free, "%s: no spills", jobs[i].what);
    }
}

/* The warp-specialized backward (family bwd-ws, issue 16 item 2): the
 * default at d128 on sm_90, a tuner candidate; a producer warpgroup besides
 * the wgmma warps; pre, main, main_sem (deterministic mode) and convert; the
 * launch takes packed sequences too. */
static void test_ws_family(void)
{
    sp_kcfg c = base_cfg();
    sp_err e = { 0 };
    c.sm = 90;
    CHECK("64x128:s2:ws parses", kcfg_parse_tile("64x128:s2:ws", &c, &e) == 0 && c.mma == SP_MMA_WS && c.bm == 64 &&
                                     c.bn == 128 && c.stages == 2);
    CHECKF(kcfg_derive_bwd(&c, &e) == 0, "64x128:s2:ws derives at d128: %s", e.msg);
    CHECKF(c.threads == 384 && c.warps == 8 && kcfg_bwd_threads(&c, BWD_MAIN) == 384, "threads %d warps %d", c.threads,
           c.warps);
    sp_kcfg w = c;
    w.mma = SP_MMA_WGMMA;
    CHECK("wgmma twin derives", kcfg_derive_bwd(&w, &e) == 0);
    CHECKF(c.smem_bytes == w.smem_bytes && c.smem_bytes == 202752, "the wgmma kernel's shared memory (%d)", c.smem_bytes);
    CHECK("deterministic mode by ordered adds", kcfg_bwd_dq_ordered(&c));
    CHECK("parts: pre, main, main_sem, convert",
          kcfg_bwd_has_part(&c, BWD_PRE) && kcfg_bwd_has_part(&c, BWD_MAIN) && kcfg_bwd_has_part(&c, BWD_CONVERT) &&
              !kcfg_bwd_has_part(&c, BWD_MAIN_DET) && !kcfg_bwd_has_part(&c, BWD_DQ) &&
              kcfg_bwd_has_part(&c, BWD_MAIN_SEM) && kcfg_bwd_threads(&c, BWD_MAIN_SEM) == 384);
    char name[128], wname[128];
    kcfg_bwd_name(&c, BWD_MAIN, name, sizeof name);
    kcfg_bwd_name(&w, BWD_MAIN, wname, sizeof wname);
    CHECKF(strstr(name, "_s2_ws_") && strcmp(name, wname) != 0, "name %s", name);
    char tile[64];
    kcfg_tile_string(&c, tile, sizeof tile);
    CHECKF(!strcmp(tile, "64x128:w8:s2:ws"), "tile string %s", tile);

    /* The wgmma rules hold: BM 64, BN = head_dim, sm_90a; 3 stages do not fit at d128. */
    sp_kcfg t = c;
    t.sm = 80;
    CHECK("sm_80 rejected", !derives(t));
    t = c;
    t.bn = 64;
    t.warps = 0;
    CHECK("BN 64 at d128 rejected", !derives(t));
    t = c;
    t.stages = 3;
    CHECK("3 stages at d128 rejected", !derives(t));
    t = c;
    t.head_dim = 64;
    t.bn = 64;
    t.warps = 0;
    t.stages = 3;
    CHECKF(kcfg_derive_bwd(&t, &e) == 0 && t.threads == 256, "64x64:s3:ws derives at d64 (%d threads)", t.threads);
    /* Two blocks per SM at d64 (two fit in 228 KiB), their consumers at 232 registers; one at d128. */
    CHECKF(t.ctas == 2 && kcfg_ws_consumer_regs(&t) == 232, "d64: %d blocks per SM, %d consumer registers", t.ctas,
           kcfg_ws_consumer_regs(&t));
    CHECKF(c.ctas == 1 && kcfg_ws_consumer_regs(&c) == 240, "d128: %d blocks per SM, %d consumer registers", c.ctas,
           kcfg_ws_consumer_regs(&c));
    CHECKF(w.ctas == 1, "the wgmma twin: %d blocks per SM", w.ctas);
    /* Two dQ staging buffers (and writers) where two blocks per SM still fit with the second:
     * d64 with 2 stages; not with 3 (it would cost the second block), not at d128, never in
     * the wgmma family.  The second buffer adds one unpadded fp32 tile to the reservation. */
    CHECKF(kcfg_bwd_dq_bufs(&t) == 1 && kcfg_bwd_dq_stage_bytes(&t) == 64 * (64 * 4 + 32),
           "d64 s3: %d dQ buffers, %d staging bytes", kcfg_bwd_dq_bufs(&t), kcfg_bwd_dq_stage_bytes(&t));
    CHECKF(kcfg_bwd_dq_bufs(&c) == 1 && kcfg_bwd_dq_bufs(&w) == 1, "d128: %d dQ buffers, the wgmma twin %d",
           kcfg_bwd_dq_bufs(&c), kcfg_bwd_dq_bufs(&w));
    sp_kcfg t2 = t;
    t2.stages = 2;
    CHECKF(kcfg_derive_bwd(&t2, &e) == 0 && kcfg_bwd_dq_bufs(&t2) == 2 && t2.ctas == 2 && t2.smem_bytes == 102400 &&
               kcfg_bwd_dq_stage_bytes(&t2) == 64 * (64 * 4 + 32) + 64 * 64 * 4,
           "d64 s2: %d dQ buffers, %d blocks per SM, %d bytes", kcfg_bwd_dq_bufs(&t2), t2.ctas, t2.smem_bytes);
    sp_kcfg w2 = t2;
    w2.mma = SP_MMA_WGMMA;
    CHECKF(kcfg_derive_bwd(&w2, &e) == 0 && kcfg_bwd_dq_bufs(&w2) == 1 && w2.smem_bytes == 102400 - 64 * 64 * 4,
           "d64 s2 wgmma twin: %d dQ buffers, %d bytes", kcfg_bwd_dq_bufs(&w2), w2.smem_bytes);
    /* The deterministic order: ascending where BN = BM in the ws family (d64), descending at
     * d128 and in the wgmma family (main_sem's). */
    CHECKF(kcfg_bwd_det_ascending(&t) && kcfg_bwd_det_ascending(&t2) && !kcfg_bwd_det_ascending(&c) &&
               !kcfg_bwd_det_ascending(&w) && !kcfg_bwd_det_ascending(&w2),
           "deterministic order ascending: d64 s3 %d, s2 %d, d128 %d, wgmma %d and %d", kcfg_bwd_det_ascending(&t),
           kcfg_bwd_det_ascending(&t2), kcfg_bwd_det_ascending(&c), kcfg_bwd_det_ascending(&w),
           kcfg_bwd_det_ascending(&w2));
    /* The default order: head by head where BN > BM in the ws family (d128), tile-major at d64
     * and in the wgmma family; the emitted constant says the same. */
    CHECKF(kcfg_bwd_head_major(&c) && !kcfg_bwd_head_major(&t) && !kcfg_bwd_head_major(&t2) &&
               !kcfg_bwd_head_major(&w) && !kcfg_bwd_head_major(&w2),
           "default order head by head: d128 %d, d64 s3 %d, s2 %d, wgmma %d and %d", kcfg_bwd_head_major(&c),
           kcfg_bwd_head_major(&t), kcfg_bwd_head_major(&t2), kcfg_bwd_head_major(&w), kcfg_bwd_head_major(&w2));

    /* Tuner candidates at both head_dims (d128: 2 stages; d64: 2 and 3), the default at both;
     * packed sequences included. */
    sp_kcfg out[64];
    for (int d = 64; d <= 128; d += 64) {
        t = base_cfg();
        t.sm = 90;
        t.head_dim = d;
        int n = kcfg_candidates(&t, out, 64), ws = 0;
        for (int i = 0; i < n && i < 64; i++) ws += out[i].mma == SP_MMA_WS;
        CHECKF(ws == (d == 64 ? 2 : 1), "%d :ws backward candidates at d%d", ws, d);
        sp_kcfg dflt = base_cfg();
        dflt.head_dim = d;
        kcfg_default_bwd(&dflt, 90);
        CHECKF(dflt.mma == SP_MMA_WS, "default at d%d: mma %d", d, (int)dflt.mma);
    }

    /* The launch: atomic and deterministic mode pack, and packed sequences. */
    sp_bwd_part parts[3];
    attn_bwd_parts(&c, 0, parts);
    CHECK("atomic parts", parts[0] == BWD_PRE && parts[1] == BWD_MAIN && parts[2] == BWD_CONVERT);
    attn_bwd_args a;
    fake_bwd_args(&a, 2);
    sp_bwd_kparams kp;
    /* The default mode on a uniform batch is persistent: its work counter is dq_sem's scratch
     * (16 bytes), which the pack requires; one block per SM slot, no more than the items. */
    CHECK("atomic is persistent", attn_bwd_persistent(&c, &a));
    CHECK("atomic without the counter's scratch is refused", attn_bwd_pack(&c, &a, &kp, &e) != 0 &&
                                                                  strstr(e.msg, "dq_sem"));
    a.dq_sem = 0x70000;
    CHECKF(attn_bwd_pack(&c, &a, &kp, &e) == 0 && kp.work_count == 0x70000 && kp.dq_sem == 0, "pack atomic: %s", e.msg);
    attn_bwd_scratch sc;
    attn_bwd_scratch_sizes(&c, &a, &sc);
    CHECK("atomic scratch: accumulator and the work counter", sc.dq_accum > 0 && sc.dq_sem == 16);
    CHECKF(attn_bwd_persistent_blocks(&c, 5000, 132) == 132 && attn_bwd_persistent_blocks(&c, 100, 132) == 100 &&
               attn_bwd_persistent_blocks(&c, 5000, 0) == 1,
           "persistent blocks %u %u", attn_bwd_persistent_blocks(&c, 5000, 132), attn_bwd_persistent_blocks(&c, 100, 132));
    sp_kcfg two = c;
    two.ctas = 2;
    CHECK("two blocks per SM: twice the blocks", attn_bwd_persistent_blocks(&two, 5000, 132) == 264);
    a.deterministic = 1;
    a.dq_sem = 0x70000;
    attn_bwd_parts(&c, 1, parts);
    CHECK("deterministic parts", parts[0] == BWD_PRE && parts[1] == BWD_MAIN_SEM && parts[2] == BWD_CONVERT);
    attn_bwd_scratch_sizes(&c, &a, &sc);
    CHECK("deterministic scratch: accumulator and semaphores", sc.dq_accum > 0 && sc.dq_sem > 0);
    CHECKF(attn_bwd_pack(&c, &a, &kp, &e) == 0, "pack deterministic: %s", e.msg);
    a.deterministic = 0;
    a.cu_seqlens = 0x3000;
    a.total = 1000;
    a.bands_sb = 64;
    e.msg[0] = 0;
    CHECKF(attn_bwd_pack(&c, &a, &kp, &e) == 0 && kp.cu_seqlens == 0x3000 && kp.q_sb == 0 && kp.dqa_sb == 0,
           "packed packs (batch strides 0): %s", e.msg);
    CHECK("packed is not persistent", !attn_bwd_persistent(&c, &a) && kp.work_count == 0);
    a.cu_seqlens = 0;
    a.deterministic = 1;
    /* Deterministic: persistent too, the counter after the semaphores (16-byte aligned). */
    attn_bwd_scratch_sizes(&c, &a, &sc);
    size_t sems = attn_bwd_sem_bytes(&a, c.bm);
    CHECKF(attn_bwd_persistent(&c, &a) && sc.dq_sem == sems + 16, "deterministic scratch %zu", sc.dq_sem);
    CHECKF(attn_bwd_pack(&c, &a, &kp, &e) == 0 && kp.dq_sem == 0x70000 && kp.work_count == 0x70000 + sems,
           "deterministic pack: %s", e.msg);
    a.deterministic = 0;
    sp_kcfg mma = base_cfg();
    kcfg_default_bwd(&mma, 80);
    CHECK("the mma family: not persistent", !attn_bwd_persistent(&mma, &a));

    /* The unit: the entry takes the TMA maps; the default family's is untouched. */
    char buf[512];
    sp_spec s;
    load(&s, spec_text(buf, sizeof buf, 16, 4, 128, "bf16", "spattn"));
    sp_kcfg u;
    CHECK("spec default derives", default_cfg(&s, 90, &u) == 0);
    CHECK("spec :ws derives", kcfg_parse_tile("64x128:s2:ws", &u, &e) == 0 && kcfg_derive_bwd(&u, &e) == 0);
    strbuf src = STRBUF_INIT;
    sb_init(&src);
    CHECK("emits", emit_bwd_kernels(&src, &s, &s.pattern, &u, &e) == 0);
    kcfg_bwd_name(&u, BWD_MAIN, name, sizeof name);
    const char *entry = src.buf ? strstr(src.buf, name) : NULL;
    CHECK("main takes the maps", entry && strstr(entry, "const __grid_constant__ bwd_tma_maps tm") &&
                                     strstr(entry, "bwd_ws_body<false>(p, tm)"));
    CHECK("includes bwd_ws.cuh", src.buf && strstr(src.buf, "#include \"bwd_ws.cuh\""));
    CHECK("roles and registers", src.buf && strstr(src.buf, "PRODUCER_THREADS = 128") &&
                                     strstr(src.buf, "PRODUCER_REGS = 24") && strstr(src.buf, "CONSUMER_REGS = 240") &&
                                     strstr(src.buf, "CTAS_PER_SM = 1,") && strstr(src.buf, "__launch_bounds__(THREADS, CTAS_PER_SM)"));
    char sem[128];
    kcfg_bwd_name(&u, BWD_MAIN_SEM, sem, sizeof sem);
    entry = src.buf ? strstr(src.buf, sem) : NULL;
    CHECK("main_sem takes the maps, ordered", entry && strstr(entry, "const __grid_constant__ bwd_tma_maps tm") &&
                                                  strstr(entry, "bwd_ws_body<true>(p, tm)"));
    sb_free(&src);
    spec_free(&s);
}

/* The :ws backward compiles for sm_90a at d128 and d64 (2 and 3 stages), bf16 and fp16, with
 * GQA, no spills and no serialized wgmma; pre, main, main_sem and convert in the ptxas report. */
static void test_ws_compile_no_spills(void)
{
    compile_job jobs[] = {
        { 16, 4, 128, "bf16", "spattn", "sm_90a", "64x128:s2:ws", 0, 0, 0, 0, "" },
        { 4, 4, 128, "fp16", "custom", "sm_90a", "64x128:s2:ws", 0, 0, 0, 0, "" },
        { 32, 8, 64, "bf16", "spattn", "sm_90a", "64x64:s2:ws", 0, 0, 0, 0, "" },
        { 4, 4, 64, "fp16", "dense", "sm_90a", "64x64:s3:ws", 0, 0, 0, 0, "" },
    };
    const int n = (int)(sizeof jobs / sizeof jobs[0]);
    for (int i = 0; i < n; i += 2) {
        pthread_t th[2];
        for (int k = 0; k < 2; k++) pthread_create(&th[k], NULL, compile_one, &jobs[i + k]);
        for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    }
    for (int i = 0; i < n; i++) {
        CHECKF(jobs[i].compiled, "%s compiles", jobs[i].what);
        CHECKF(jobs[i].parts_found == 4 && jobs[i].parts_expected == 4,
               "%s: pre, main, main_sem, convert in the ptxas report (%d)", jobs[i].what, jobs[i].parts_found);
        CHECKF(jobs[i].spill_free, "%s: no spills, wgmma not serialized", jobs[i].what);
    }
}

/* Issue 13, "wrong dQ in the deterministic backward": the dq kernel staged
 * dQ through the warp's Q rows after waiting for its own copies only, while
 * other warps' copies into those rows (a query tile with no KV tile: no wait
 * in the loop) could still land.  A block barrier must follow the drain, on
 * sm_80 and sm_90 (dq is in the mma.sync family's translation units only
 * since issue 16: on sm_90 that family's tile). */
static void test_regress_13_det_dq_waits_for_block(void)
{
    static const char *patterns[] = { "exclusive", "gapped" };
    for (int d = 64; d <= 128; d += 64)
        for (int sm = 80; sm <= 90; sm += 10)
            for (int pi = 0; pi < 2; pi++) {
                char buf[512];
                sp_spec s;
                load(&s, spec_text(buf, sizeof buf, 24, 8, d, "fp16", patterns[pi]));
                sp_kcfg c;
                strbuf a = STRBUF_INIT;
                sb_init(&a);
                sp_err e = { 0 };
                CHECK("default derives", default_cfg(&s, 80, &c) == 0);
                c.sm = sm;   /* the mma.sync family's tile on either */
                CHECK("derives and emits", kcfg_derive_bwd(&c, &e) == 0 && emit_flat(&a, &s, &c, &e) == 0);
                char name[128];
                kcfg_bwd_name(&c, BWD_DQ, name, sizeof name);
                const char *k = a.buf ? strstr(a.buf, name) : NULL;
                const char *epi = k ? strstr(k, "bwd_write_rows(acc, p.scale, sQw") : NULL;
                const char *drain = k && epi ? strstr(k, "    /* 5. dq") : NULL;
                const char *wait = drain ? strstr(drain, "cp_async_wait<0>();") : NULL;
                const char *bar = wait ? strstr(wait, "__syncthreads();") : NULL;
                CHECKF(epi && wait && bar && wait < epi && bar < epi, "d%d sm_%d %s: dq drains and barriers before its epilogue",
                       d, sm, patterns[pi]);
                sb_free(&a);
                spec_free(&s);
            }
}

static const test_case tests[] = {
    { "defaults_derive", test_defaults_derive },
    { "derive_rejects", test_derive_rejects },
    { "det_default", test_det_default },
    { "derived_fields", test_derived_fields },
    { "names", test_names },
    { "det_modes", test_det_modes },
    { "candidates", test_candidates },
    { "emit_bytes", test_emit_bytes },
    { "regress_13_det_dq_waits_for_block", test_regress_13_det_dq_waits_for_block },
    { "compile_no_spills", test_compile_no_spills },
    { "ws_family", test_ws_family },
    { "ws_compile_no_spills", test_ws_compile_no_spills },
    { 0, 0 },
};

TEST_MAIN(tests)
