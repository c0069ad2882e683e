/* Tests of the kernel configs (kcfg) and the CUDA generator (emit): config
 * validation, --tile parsing, deterministic and self-contained sources, and
 * real NVRTC compiles (no GPU needed): every shipped config and every
 * pattern kind for sm_80 and sm_90a with no register spills in the default
 * tiles, and every tuner candidate at d64 and d128.
 *
 * Run from the repository root (configs/ is globbed).  The NVRTC part takes
 * about a minute on two cores; compiles run on two threads. */
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/emit.h"
#include "codegen/kcfg.h"
#include "codegen/kernel_sources.h"
#include "common/strbuf.h"
#include "runtime/attn.h"
#include "abi/kparams.h"
#include "runtime/nvrtc.h"
#include "tests/check.h"

/* A spec built in memory (the generator does not care where it came from). */
static sp_spec make_spec(int heads, int kv_heads, int head_dim, sp_dtype dtype, sp_pattern_kind kind)
{
    sp_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "test-h%d-d%d", heads, head_dim);
    s.heads = heads;
    s.kv_heads = kv_heads;
    s.head_dim = head_dim;
    s.dtype = dtype;
    s.causal = 1;
    s.pattern.kind = kind;
    s.n_batch = 1;
    s.batch[0] = 1;
    s.n_seq_len = 1;
    s.seq_len[0] = 1024;
    return s;
}

/* Custom bands for 4 heads, one of them with three intervals. */
static sp_band_list custom4[4] = {
    { 1, { { 0, 65 } } },
    { 2, { { 0, 65 }, { 256, 512 } } },
    { 3, { { 0, 5 }, { 70, 90 }, { 200, 513 } } },
    { 1, { { 1000, 2048 } } },
};

static sp_kcfg derived(const sp_spec *s, const sp_pattern *p, const char *tile, int sm)
{
    sp_kcfg c;
    sp_err e = { 0 };
    kcfg_for_spec(&c, s, p, SP_KIND_FWD, sm);
    if (tile) CHECKF(kcfg_parse_tile(tile, &c, &e) == 0, "parse %s: %s", tile, e.msg);
    CHECKF(kcfg_derive(&c, &e) == 0, "derive %s: %s", tile ? tile : "default", e.msg);
    return c;
}

/* The translation unit as `spattn gen` prints it: emitted, then flattened
 * (the kernels/ headers pasted in). */
static char *source(const sp_spec *s, const sp_pattern *p, const sp_kcfg *c)
{
    strbuf sb = STRBUF_INIT, flat = STRBUF_INIT;
    sp_err e = { 0 };
    int rc = emit_kernel(&sb, s, p, c, &e);
    CHECKF(rc == 0, "emit_kernel: %s", e.msg);
    rc = kernel_sources_flatten(&flat, sb.buf ? sb.buf : "", KERNEL_TU_NAME, &e);
    CHECKF(rc == 0, "flatten: %s", e.msg);
    sb_free(&sb);
    return sb_detach(&flat, NULL);
}

/* ---- configs ------------------------------------------------------------- */

static void test_defaults_derive(void)
{
    int dims[] = { 32, 64, 96, 128, 256 }, sms[] = { 80, 86, 89, 90 };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        for (size_t j = 0; j < sizeof sms / sizeof sms[0]; j++) {
            sp_spec s = make_spec(16, 4, dims[i], SP_BF16, SP_SPATTN);
            sp_kcfg c = derived(&s, &s.pattern, NULL, sms[j]);
            /* The warp-specialized kernel adds a producer warpgroup to its consumers' warps. */
            CHECKF(c.threads == 32 * c.warps + (c.mma == SP_MMA_WS ? 128 : 0) && c.bm % c.warps == 0,
                   "d%d sm%d threads", dims[i], sms[j]);
            CHECKF(c.bm == 16 * c.warps || c.bm == 32 * c.warps, "d%d sm%d rows per warp", dims[i], sms[j]);
            /* sm_86 and sm_89 allow 99 KiB per block. */
            int limit = (sms[j] == 86 || sms[j] == 89) ? 99 * 1024 : 227 * 1024 - 1024;
            CHECKF(c.smem_bytes <= limit, "d%d sm%d smem %d > %d", dims[i], sms[j], c.smem_bytes, limit);
            CHECK("problem fields", c.heads == 16 && c.kv_heads == 4 && c.max_intervals == 2 && c.head_dim == dims[i]);
        }
}

static void test_derive_rejects(void)
{
    sp_spec s = make_spec(8, 8, 128, SP_FP16, SP_LOCAL);
    struct { int bm, bn, warps, stages, head_dim; const char *why; } bad[] = {
        { 128, 64, 2, 2, 128, "BM 128 with 2 warps: 64 rows per warp" },
        { 128, 64, 16, 2, 128, "BM 128 with 16 warps: 8 rows per warp" },
        { 120, 64, 0, 2, 128, "BM not a multiple of 16" },
        { 0, 64, 0, 2, 128, "BM 0" },
        { 512, 64, 0, 2, 128, "BM over 256" },
        { 64, 40, 4, 2, 128, "BN not a multiple of 16" },
        { 64, 0, 4, 2, 128, "BN 0" },
        { 64, 272, 4, 2, 128, "BN over 256" },
        { 64, 64, 4, 0, 128, "stages 0" },
        { 64, 64, 4, 5, 128, "stages 5" },
        { 256, 256, 16, 4, 128, "shared memory over 227 KiB" },
        { 64, 64, 4, 2, 80, "head_dim 80" },
        { 64, 64, 4, 2, 512, "head_dim 512" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_kcfg c;
        kcfg_for_spec(&c, &s, &s.pattern, SP_KIND_FWD, 90);
        c.mma = SP_MMA_SYNC;
        c.bm = bad[i].bm;
        c.bn = bad[i].bn;
        c.warps = bad[i].warps;
        c.stages = bad[i].stages;
        c.head_dim = bad[i].head_dim;
        sp_err e = { 0 };
        CHECKF(kcfg_derive(&c, &e) == -1 && e.code == SP_EXIT_USAGE && e.msg[0], "accepted: %s", bad[i].why);
    }
    sp_kcfg c;
    kcfg_for_spec(&c, &s, &s.pattern, SP_KIND_FWD, 90);
    c.heads = 6;
    c.kv_heads = 4;
    sp_err e = { 0 };
    CHECK("heads not a multiple of kv_heads", kcfg_derive(&c, &e) == -1);
    /* The edges that are fine: BN 16 and 256, one warp, 4 stages. */
    sp_kcfg ok;
    kcfg_for_spec(&ok, &s, &s.pattern, SP_KIND_FWD, 90);
    ok.mma = SP_MMA_SYNC;
    ok.bm = 16; ok.bn = 16; ok.warps = 1; ok.stages = 4;
    CHECK("16x16 w1 s4", kcfg_derive(&ok, &e) == 0 && ok.threads == 32);
    ok.bm = 32; ok.bn = 256; ok.warps = 0; ok.stages = 1;
    CHECK("32x256 s1, warps picked", kcfg_derive(&ok, &e) == 0 && ok.warps >= 1);
}

static void test_parse_tile(void)
{
    sp_spec s = make_spec(16, 16, 128, SP_BF16, SP_SPATTN);
    const char *good[] = { "128x64:w4:s2", "64x64:w4:s3", "128x128:w8:s2", "64x32:w2:s1", "16x16:w1:s4" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        sp_kcfg c;
        sp_err e = { 0 };
        kcfg_for_spec(&c, &s, &s.pattern, SP_KIND_FWD, 90);
        CHECKF(kcfg_parse_tile(good[i], &c, &e) == 0, "parse %s: %s", good[i], e.msg);
        char back[64];
        kcfg_tile_string(&c, back, sizeof back);
        CHECKF(strcmp(back, good[i]) == 0, "round trip %s -> %s", good[i], back);
        CHECKF(kcfg_derive(&c, &e) == 0, "derive %s: %s", good[i], e.msg);
    }
    /* Short forms: warps picked by derive, stages kept. */
    sp_kcfg c;
    sp_err e = { 0 };
    kcfg_for_spec(&c, &s, &s.pattern, SP_KIND_FWD, 90);
    c.mma = SP_MMA_SYNC;
    c.stages = 3;
    CHECK("128x64", kcfg_parse_tile("128x64", &c, &e) == 0 && c.bm == 128 && c.bn == 64 && c.warps == 0 && c.stages == 3);
    CHECK("128x64 derives", kcfg_derive(&c, &e) == 0 && c.warps > 0);
    CHECK("64x32:s1", kcfg_parse_tile("64x32:s1", &c, &e) == 0 && c.stages == 1 && c.warps == 0);
    const char *bad[] = { "", "128", "128x", "x64", "128x64:", "128x64:w", "128x64:q4", "128x64:w4:", "-128x64",
                          "128x64x2", "128x64 ", "99999x64", "128*64", "0x64" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_err be = { 0 };
        CHECKF(kcfg_parse_tile(bad[i], &c, &be) == -1 && be.code == SP_EXIT_USAGE, "accepted '%s'", bad[i]);
    }
}

static void test_name(void)
{
    sp_spec s = make_spec(16, 16, 128, SP_BF16, SP_SPATTN);
    sp_kcfg c = derived(&s, &s.pattern, "128x64:w4:s2", 90);
    char name[128];
    kcfg_name(&c, name, sizeof name);
    CHECKF(kernel_named(name, "spattn_fwd_bf16_d128_bm128_bn64_w4_s2"), "name %s", name);
    sp_spec f = make_spec(8, 8, 64, SP_FP16, SP_LOCAL);
    c = derived(&f, &f.pattern, "64x32:w4:s3", 80);
    kcfg_name(&c, name, sizeof name);
    CHECKF(kernel_named(name, "spattn_fwd_fp16_d64_bm64_bn32_w4_s3"), "name %s", name);
}

/* Issue 14 item 6: kernels that differ in what is compiled in (heads, kv
 * heads, max intervals, the dense baseline) are named apart even with the
 * same tiles, as the olmoe and gqa kernels were not; the same config gets
 * the same name on every GPU, and the pattern alone (its bands are read at
 * run time) changes nothing. */
static void test_regress_14_names_unique_per_binary(void)
{
    sp_spec olmoe = make_spec(16, 16, 128, SP_BF16, SP_SPATTN), gqa = make_spec(32, 8, 128, SP_BF16, SP_SPATTN);
    sp_spec dense = make_spec(16, 16, 128, SP_BF16, SP_DENSE), excl = make_spec(16, 16, 128, SP_BF16, SP_EXCLUSIVE);
    const char *tile = "128x128:w8:s3:wgmma";
    char a[128], b[128], c[128], d[128];
    sp_kcfg ka = derived(&olmoe, &olmoe.pattern, tile, 90), kb = derived(&gqa, &gqa.pattern, tile, 90);
    sp_kcfg kc = derived(&dense, &dense.pattern, tile, 90), kd = derived(&excl, &excl.pattern, tile, 90);
    kcfg_name(&ka, a, sizeof a);
    kcfg_name(&kb, b, sizeof b);
    kcfg_name(&kc, c, sizeof c);
    kcfg_name(&kd, d, sizeof d);
    CHECKF(strcmp(a, b) != 0 && kernel_named(a, "spattn_fwd_bf16_d128_bm128_bn128_w8_s3_wg") &&
               kernel_named(b, "spattn_fwd_bf16_d128_bm128_bn128_w8_s3_wg"), "olmoe %s and gqa %s", a, b);
    CHECKF(strcmp(a, c) != 0, "dense %s", c);
    CHECKF(ka.max_intervals != kd.max_intervals ? strcmp(a, d) != 0 : strcmp(a, d) == 0, "exclusive %s", d);
    sp_kcfg k80 = ka;
    k80.sm = 80;
    kcfg_name(&k80, d, sizeof d);
    CHECK("the name does not depend on the GPU", strcmp(a, d) == 0);
    char *src = source(&olmoe, &olmoe.pattern, &ka);
    CHECK("the source names its kernel so", src && strstr(src, a));
    free(src);
}

static void test_candidates(void)
{
    int dims[] = { 64, 128 };
    for (size_t i = 0; i < 2; i++) {
        sp_spec s = make_spec(16, 16, dims[i], SP_BF16, SP_SPATTN);
        sp_kcfg base;
        kcfg_for_spec(&base, &s, &s.pattern, SP_KIND_FWD, 90);
        sp_kcfg out[256];
        int n = kcfg_candidates(&base, out, 256);
        CHECKF(n >= 8, "d%d: only %d candidates", dims[i], n);
        int has_default = 0;
        sp_kcfg def = derived(&s, &s.pattern, NULL, 90);
        for (int k = 0; k < n; k++) {
            sp_kcfg t = out[k];
            sp_err e = { 0 };
            CHECKF(kcfg_derive(&t, &e) == 0 && t.smem_bytes == out[k].smem_bytes, "candidate %d not valid", k);
            if (t.bm == def.bm && t.bn == def.bn && t.warps == def.warps && t.stages == def.stages) has_default = 1;
            for (int j = 0; j < k; j++)
                CHECKF(memcmp(&out[j], &out[k], sizeof out[k]) != 0, "d%d duplicate candidate %d", dims[i], k);
        }
        CHECKF(has_default, "d%d: the default tile is not among the candidates", dims[i]);
        CHECK("cap respected", kcfg_candidates(&base, out, 3) == 3);
    }
}

/* The wgmma kernel's configs: sm_90a, forward, d64/d128, warpgroups of 64
 * rows, 3+ stages; the tile syntax and name; the tuner's search space. */
static void test_wgmma_configs(void)
{
    sp_spec s = make_spec(16, 16, 128, SP_BF16, SP_SPATTN);
    sp_kcfg def = derived(&s, &s.pattern, "128x128:w8:s3:wgmma", 90);
    CHECK("d128 sm_90 default is the warp-specialized kernel", derived(&s, &s.pattern, NULL, 90).mma == SP_MMA_WS);
    CHECK("d128 sm_80 default is mma.sync", derived(&s, &s.pattern, NULL, 80).mma == SP_MMA_SYNC);
    sp_spec s64 = make_spec(8, 8, 64, SP_BF16, SP_SPATTN);
    CHECK("d64 sm_90 default is the warp-specialized kernel", derived(&s64, &s64.pattern, NULL, 90).mma == SP_MMA_WS);
    sp_spec s96 = make_spec(8, 8, 96, SP_BF16, SP_SPATTN);
    CHECK("d96 sm_90 default is mma.sync", derived(&s96, &s96.pattern, NULL, 90).mma == SP_MMA_SYNC);
    sp_kcfg c = derived(&s64, &s64.pattern, "64x128:wgmma", 90);
    CHECK("64x128:wgmma derives 4 warps, 3 stages", c.mma == SP_MMA_WGMMA && c.warps == 4 && c.stages == 3 && c.threads == 128);
    CHECK("smem: 1024 slack + Q + stages x (K, V)", c.smem_bytes == 1024 + 64 * 128 + 3 * 2 * 128 * 128);
    char buf[128];
    kcfg_tile_string(&c, buf, sizeof buf);
    CHECKF(strcmp(buf, "64x128:w4:s3:wgmma") == 0, "tile string %s", buf);
    kcfg_name(&c, buf, sizeof buf);
    CHECKF(kernel_named(buf, "spattn_fwd_bf16_d64_bm64_bn128_w4_s3_wg"), "name %s", buf);
    /* Switching kind without stages: that kind's default stages. */
    sp_err e = { 0 };
    sp_kcfg t = def;
    CHECK("64x32 after a wgmma tile is mma.sync, 2 stages",
          kcfg_parse_tile("64x32", &t, &e) == 0 && t.mma == SP_MMA_SYNC && t.stages == 2);
    CHECK("128x64:s4:wgmma", kcfg_parse_tile("128x64:s4:wgmma", &t, &e) == 0 && t.mma == SP_MMA_WGMMA && t.stages == 4);
    const char *bad_syntax[] = { "128x64:wgmma:s3", "128x64:wgm", "128x64:wgmmax", "128x64wgmma" };
    for (size_t i = 0; i < sizeof bad_syntax / sizeof bad_syntax[0]; i++) {
        sp_err be = { 0 };
        CHECKF(kcfg_parse_tile(bad_syntax[i], &t, &be) == -1 && be.code == SP_EXIT_USAGE, "accepted '%s'", bad_syntax[i]);
    }
    struct { int sm, head_dim, bm, bn, warps, stages; sp_kernel_kind kind; const char *why; } bad[] = {
        { 80, 128, 128, 128, 8, 3, SP_KIND_FWD, "sm_80" },
        { 86, 128, 128, 128, 8, 3, SP_KIND_FWD, "sm_86" },
        { 90, 96, 128, 128, 8, 3, SP_KIND_FWD, "head_dim 96" },
        { 90, 256, 128, 64, 8, 3, SP_KIND_FWD, "head_dim 256" },
        { 90, 128, 96, 128, 6, 3, SP_KIND_FWD, "BM 96" },
        { 90, 128, 256, 64, 16, 3, SP_KIND_FWD, "BM 256" },
        { 90, 128, 128, 128, 4, 3, SP_KIND_FWD, "4 warps for 128 rows" },
        { 90, 128, 128, 128, 8, 2, SP_KIND_FWD, "2 stages" },
        { 90, 128, 128, 128, 8, 6, SP_KIND_FWD, "6 stages" },
        { 90, 128, 128, 40, 8, 3, SP_KIND_FWD, "BN 40" },
        { 90, 128, 128, 128, 8, 4, SP_KIND_FWD, "shared memory over the limit" },
        { 90, 128, 128, 128, 8, 2, SP_KIND_BWD, "backward BM 128" },
        { 90, 64, 64, 128, 8, 2, SP_KIND_BWD, "backward BN 128 at d64 (32 dQ dims per warpgroup)" },
        { 80, 128, 64, 128, 8, 2, SP_KIND_BWD, "backward on sm_80" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_spec bs = make_spec(16, 16, bad[i].head_dim, SP_BF16, SP_SPATTN);
        sp_kcfg b;
        kcfg_for_spec(&b, &bs, &bs.pattern, bad[i].kind, bad[i].sm);
        b.mma = SP_MMA_WGMMA;
        b.bm = bad[i].bm;
        b.bn = bad[i].bn;
        b.warps = bad[i].warps;
        b.stages = bad[i].stages;
        sp_err be = { 0 };
        CHECKF(kcfg_derive(&b, &be) == -1 && be.code == SP_EXIT_USAGE && be.msg[0], "wgmma accepted: %s", bad[i].why);
    }
    /* The tuner tries wgmma tiles on sm_90 only. */
    int sms[] = { 80, 90 };
    for (size_t k = 0; k < 2; k++) {
        sp_kcfg base;
        kcfg_for_spec(&base, &s, &s.pattern, SP_KIND_FWD, sms[k]);
        sp_kcfg out[256];
        int n = kcfg_candidates(&base, out, 256), wg = 0, sync = 0;
        for (int i = 0; i < n; i++) {
            wg += out[i].mma == SP_MMA_WGMMA;
            sync += out[i].mma == SP_MMA_SYNC;
        }
        CHECKF(sync >= 8 && (sms[k] == 90 ? wg >= 4 : wg == 0), "sm_%d: %d mma.sync and %d wgmma candidates", sms[k], sync, wg);
    }
    /* The source: wgmma in the Hopper kernel only. */
    char *a = source(&s, &s.pattern, &def);
    CHECK("wgmma source issues wgmma", a && strstr(a, "\"wgmma.mma_async.sync.aligned.m64n\" #N \"k16.f32.\" ELEM_PTX") &&
                                           strstr(a, "wgmma_op<BN>::ss(") && strstr(a, "    BN = 128,") &&
                                           strstr(a, "fence.proxy.async.shared::cta") && !strstr(a, "\n#include"));
    free(a);
    sp_kcfg ms = derived(&s, &s.pattern, "128x64:w4:s2", 90);
    a = source(&s, &s.pattern, &ms);
    CHECK("mma.sync source issues no wgmma", a && !strstr(a, "wgmma.mma_async") && strstr(a, "mma.sync.aligned.m16n8k16"));
    free(a);
}

/* The warp-specialized forward's configs: sm_90a, d64/d128, a producer
 * warpgroup besides BM / 64 consumers, 2+ stages, an O staging tile; the
 * tile syntax and name; its candidates on sm_90 only. */
static void test_ws_configs(void)
{
    sp_spec s = make_spec(16, 4, 128, SP_BF16, SP_SPATTN);
    sp_kcfg c = derived(&s, &s.pattern, "128x128:ws", 90);
    CHECK("128x128:ws: 8 consumer warps + a producer warpgroup, 2 stages",
          c.mma == SP_MMA_WS && c.warps == 8 && c.threads == 384 && c.stages == 2);
    CHECK("smem: 1024 slack + O staging + Q + stages x (K, V)",
          c.smem_bytes == 1024 + 2 * 128 * 256 + 2 * 2 * 128 * 256 && c.smem_bytes == kcfg_smem_extra(&c) + 128 * 256 + 2 * 2 * 128 * 256);
    char buf[128];
    kcfg_tile_string(&c, buf, sizeof buf);
    CHECKF(strcmp(buf, "128x128:w8:s2:ws") == 0, "tile string %s", buf);
    kcfg_name(&c, buf, sizeof buf);
    CHECKF(kernel_named(buf, "spattn_fwd_bf16_d128_bm128_bn128_w8_s2_ws"), "name %s", buf);
    sp_kcfg t = c;
    sp_err e = { 0 };
    CHECK("192x64:s3:ws parses", kcfg_parse_tile("192x64:s3:ws", &t, &e) == 0 && t.mma == SP_MMA_WS && t.stages == 3);
    CHECK("... and derives 12 consumer warps, 512 threads", kcfg_derive(&t, &e) == 0 && t.warps == 12 && t.threads == 512);
    const char *bad_syntax[] = { "128x64:ws:s3", "128x64:w", "128x64:wsx", "128x64ws" };
    for (size_t i = 0; i < sizeof bad_syntax / sizeof bad_syntax[0]; i++) {
        sp_err be = { 0 };
        CHECKF(kcfg_parse_tile(bad_syntax[i], &t, &be) == -1 && be.code == SP_EXIT_USAGE, "accepted '%s'", bad_syntax[i]);
    }
    struct { int sm, head_dim, bm, bn, warps, stages; const char *why; } bad[] = {
        { 80, 128, 128, 128, 8, 2, "sm_80" },
        { 90, 96, 128, 128, 8, 2, "head_dim 96" },
        { 90, 128, 96, 128, 6, 2, "BM 96" },
        { 90, 128, 256, 64, 16, 2, "BM 256" },
        { 90, 128, 128, 128, 4, 2, "4 warps for 128 rows" },
        { 90, 128, 128, 128, 8, 1, "1 stage" },
        { 90, 128, 128, 40, 8, 2, "BN 40" },
        { 90, 128, 128, 272, 8, 2, "BN 272 (a TMA box has at most 256 rows)" },
        { 90, 128, 128, 128, 8, 3, "shared memory over the limit" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_spec bs = make_spec(16, 16, bad[i].head_dim, SP_BF16, SP_SPATTN);
        sp_kcfg b;
        kcfg_for_spec(&b, &bs, &bs.pattern, SP_KIND_FWD, bad[i].sm);
        b.mma = SP_MMA_WS;
        b.bm = bad[i].bm;
        b.bn = bad[i].bn;
        b.warps = bad[i].warps;
        b.stages = bad[i].stages;
        sp_err be = { 0 };
        CHECKF(kcfg_derive(&b, &be) == -1 && be.code == SP_EXIT_USAGE && be.msg[0], "ws accepted: %s", bad[i].why);
    }
    int sms[] = { 80, 89, 90 };
    for (size_t k = 0; k < 3; k++) {
        sp_kcfg base;
        kcfg_for_spec(&base, &s, &s.pattern, SP_KIND_FWD, sms[k]);
        sp_kcfg out[256];
        int n = kcfg_candidates(&base, out, 256), ws = 0;
        for (int i = 0; i < n; i++) ws += out[i].mma == SP_MMA_WS;
        CHECKF(sms[k] == 90 ? ws >= 4 : ws == 0, "sm_%d: %d ws candidates", sms[k], ws);
    }
    /* The source: the specialization, then the kernel's CUDA sources. */
    char *a = source(&s, &s.pattern, &c);
    CHECK("ws source includes its .cuh and names its entry",
          a && strstr(a, "#line 1 \"kernels/fwd_ws.cuh\"") && strstr(a, "#line 1 \"kernels/tma.cuh\"") &&
              strstr(a, "CONSUMERS = 2,") && strstr(a, "spattn_fwd_bf16_d128_bm128_bn128_w8_s2_ws_") &&
              strstr(a, "__grid_constant__ fwd_tma_maps tm"));
    free(a);
}

/* ---- generated source ------------------------------------------------------ */

static void test_deterministic_selfcontained(void)
{
    sp_spec s = make_spec(16, 4, 128, SP_BF16, SP_SPATTN);
    sp_kcfg c = derived(&s, &s.pattern, NULL, 90);
    char *a = source(&s, &s.pattern, &c), *b = source(&s, &s.pattern, &c);
    CHECK("same inputs, same bytes", a && b && strcmp(a, b) == 0);
    CHECK("no #include", a && !strstr(a, "#include"));
    char name[128];
    kcfg_name(&c, name, sizeof name);
    CHECK("kernel named by its config", a && strstr(a, name));
    CHECK("extern \"C\" entry", a && strstr(a, "extern \"C\" __global__"));
    CHECK("header names the spec", a && strstr(a, s.name));
    CHECK("per-head intervals listed", a && strstr(a, "head 15:"));
    char assert_line[96];
    snprintf(assert_line, sizeof assert_line, "sizeof(sp_kparams) == %d", (int)sizeof(sp_kparams));
    CHECK("kparams size checked against the host's", a && strstr(a, assert_line));
    free(b);
    /* Any change of config changes the source. */
    sp_kcfg c2 = derived(&s, &s.pattern, "64x64:w4:s3", 90);
    b = source(&s, &s.pattern, &c2);
    CHECK("another tile, another source", a && b && strcmp(a, b) != 0);
    free(a);
    free(b);
    /* Custom bands, fp16: still no include, and one emit per call. */
    sp_spec cs = make_spec(4, 4, 64, SP_FP16, SP_CUSTOM);
    cs.pattern.custom = custom4;
    sp_kcfg cc = derived(&cs, &cs.pattern, NULL, 80);
    CHECK("custom: 3 intervals", cc.max_intervals == 3);
    a = source(&cs, &cs.pattern, &cc);
    CHECK("custom source", a && !strstr(a, "#include") && strstr(a, "#define ELEM_PTX \"f16\"") && strstr(a, "[200, 513)"));
    free(a);
}

/* Issue 13, "wrong O on query tiles with no key": a query tile whose band
 * plan has no KV tile never waited for the Q tile's cp.async group, then
 * staged O through the Q tile.  Every forward must drain its copies, and
 * (the copies of a warp's rows come from every warp) make that true of the
 * whole block, between the main loop and the epilogue. */
static void test_regress_13_fwd_empty_qtile_waits_for_q(void)
{
    static const char *tiles[] = { "64x64:w4:s2", "128x64:w4:s3", "128x128:w8:s3:wgmma", "64x64:w4:s4:wgmma" };
    for (int d = 64; d <= 128; d += 64) {
        /* The warp-specialized kernel (the sm_90 default) loads Q by TMA only for items
         * with a key; an item without one writes O = 0 directly, never through a Q tile. */
        sp_spec ws = make_spec(12, 4, d, SP_BF16, SP_EXCLUSIVE);
        sp_kcfg wc = derived(&ws, &ws.pattern, NULL, 90);
        char *wsrc = source(&ws, &ws.pattern, &wc);
        const char *empty = wsrc ? strstr(wsrc, "if (ntiles == 0) {   /* warpgroup-uniform") : NULL;
        const char *direct = empty ? strstr(empty, "ws_empty_item(p, item, c, tid_c);") : NULL;
        const char *qwait = empty ? strstr(empty, "mbar_wait(bar(S.q_full[qb])") : NULL;
        CHECKF(wc.mma == SP_MMA_WS && direct && qwait && direct < qwait, "d%d ws: empty items skip Q", d);
        free(wsrc);
        for (size_t t = 0; t < sizeof tiles / sizeof tiles[0]; t++) {
            sp_spec s = make_spec(12, 4, d, SP_BF16, SP_EXCLUSIVE);
            sp_kcfg c = derived(&s, &s.pattern, tiles[t], 90);
            char *src = source(&s, &s.pattern, &c);
            const char *loop = src ? strstr(src, "for (int it = ") : NULL;
            const char *epi = loop ? strstr(loop, "write_output(acc") : NULL;
            const char *drain = loop ? strstr(loop, "cp_async_wait<0>();") : NULL;
            CHECKF(epi && drain && drain < epi, "d%d %s: copies drained after the loop, before the epilogue", d,
                   tiles[t] ? tiles[t] : "default");
            if (c.mma == SP_MMA_WGMMA) {   /* the warpgroup's rows were copied by the whole block */
                const char *bar = drain ? strstr(drain, "__syncthreads();") : NULL;
                CHECKF(bar && bar < epi, "d%d %s: a block barrier after the drain", d, tiles[t] ? tiles[t] : "default");
            }
            free(src);
        }
    }
}

static void test_emit_rejects(void)
{
    sp_spec s = make_spec(16, 16, 128, SP_BF16, SP_SPATTN);
    sp_kcfg c;
    kcfg_for_spec(&c, &s, &s.pattern, SP_KIND_FWD, 90);   /* not derived */
    strbuf sb = STRBUF_INIT;
    sp_err e = { 0 };
    CHECK("underived config refused", emit_kernel(&sb, &s, &s.pattern, &c, &e) == -1 && e.msg[0]);
    sb_free(&sb);
    CHECK("fwd supported", emit_kind_supported(SP_KIND_FWD));
}

/* ---- kernel parameters ------------------------------------------------------ */

static void test_kparams_pack(void)
{
    sp_spec s = make_spec(32, 8, 128, SP_BF16, SP_SPATTN);
    sp_kcfg c = derived(&s, &s.pattern, NULL, 90);
    attn_fwd_args a;
    memset(&a, 0, sizeof a);
    a.q.ptr = 0x10000; a.k.ptr = 0x20000; a.v.ptr = 0x30000; a.o.ptr = 0x40000;
    a.lse = 0x50000; a.bands = 0x60000;
    a.batch = 2; a.seqlen = 1000; a.heads = 32; a.kv_heads = 8; a.scale = 0.125f;
    attn_default_strides(&a.q, ATTN_BNHD, 1000, 32, 128);
    attn_default_strides(&a.o, ATTN_BHND, 1000, 32, 128);
    attn_default_strides(&a.k, ATTN_BNHD, 1000, 8, 128);
    attn_default_strides(&a.v, ATTN_BNHD, 1000, 8, 128);
    attn_default_lse_strides(&a);
    CHECK("BNHD strides", a.q.sh == 128 && a.q.sn == 32 * 128 && a.q.sb == 1000LL * 32 * 128);
    CHECK("BHND strides", a.o.sn == 128 && a.o.sh == 1000 * 128 && a.o.sb == 32LL * 1000 * 128);
    CHECK("lse strides", a.lse_sh == 1000 && a.lse_sb == 32 * 1000);
    sp_kparams kp;
    sp_err e = { 0 };
    CHECKF(attn_fwd_pack(&c, &a, &kp, &e) == 0, "pack: %s", e.msg);
    CHECK("pointers", kp.q == 0x10000 && kp.k == 0x20000 && kp.v == 0x30000 && kp.o == 0x40000 && kp.lse == 0x50000 &&
                          kp.bands == 0x60000);
    CHECK("strides", kp.q_sn == 32 * 128 && kp.k_sn == 8 * 128 && kp.o_sh == 1000 * 128 && kp.lse_sh == 1000);
    CHECK("sizes", kp.seqlen == 1000 && kp.batch == 2 && kp.heads == 32 && kp.kv_heads == 8 && kp.head_offset == 0);
    CHECK("scale_log2", fabsf(kp.scale_log2 - 0.125f * 1.44269504f) < 1e-6f);
    unsigned grid[3];
    attn_fwd_grid(&c, &a, grid);
    CHECK("grid", grid[0] == (unsigned)((1000 + c.bm - 1) / c.bm) && grid[1] == 32 && grid[2] == 2);
    /* Head shard at a kv-group boundary: fine; inside a group: refused. */
    a.heads = 8; a.kv_heads = 2; a.head_offset = 4;
    CHECK("shard on group boundary", attn_fwd_pack(&c, &a, &kp, &e) == 0 && kp.head_offset == 4);
    a.head_offset = 2;
    CHECK("shard inside a group refused", attn_fwd_pack(&c, &a, &kp, &e) == -1);
    a.head_offset = 0; a.heads = 32; a.kv_heads = 8;
    a.q.sn = 100;   /* not a multiple of 8 elements */
    CHECK("misaligned stride refused", attn_fwd_pack(&c, &a, &kp, &e) == -1);
    a.q.sn = 32 * 128; a.k.ptr = 0x20008;
    CHECK("misaligned pointer refused", attn_fwd_pack(&c, &a, &kp, &e) == -1);
    a.k.ptr = 0x20000; a.seqlen = 0;
    CHECK("N = 0 refused", attn_fwd_pack(&c, &a, &kp, &e) == -1);
}

/* ---- NVRTC compiles ------------------------------------------------------------ */

typedef struct {
    char what[160];
    char *src;
    char name[128];
    const char *arch;
    int must_not_spill;
    /* results */
    int ok, regs, spill_st, spill_ld, serialized;
    char err[800];
} compile_job;

static compile_job *jobs;
static int n_jobs, cap_jobs, next_job;
static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;

static void add_job(const char *what, const sp_spec *s, const sp_pattern *p, const sp_kcfg *c, const char *arch,
                    int must_not_spill)
{
    if (n_jobs == cap_jobs) {
        cap_jobs = cap_jobs ? 2 * cap_jobs : 64;
        jobs = realloc(jobs, (size_t)cap_jobs * sizeof *jobs);
    }
    compile_job *j = &jobs[n_jobs++];
    memset(j, 0, sizeof *j);
    snprintf(j->what, sizeof j->what, "%s", what);
    j->src = source(s, p, c);
    kcfg_name(c, j->name, sizeof j->name);
    j->arch = arch;
    j->must_not_spill = must_not_spill;
}

static void *compile_worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&job_lock);
        int i = next_job < n_jobs ? next_job++ : -1;
        pthread_mutex_unlock(&job_lock);
        if (i < 0) return NULL;
        compile_job *j = &jobs[i];
        sp_compiled out;
        sp_err e = { 0 };
        if (!j->src || nvrtc_compile(j->src, j->arch, &out, &e)) {
            snprintf(j->err, sizeof j->err, "%s", e.msg);
        } else {
            sp_kres r;
            if (nvrtc_kernel_resources(out.log, j->name, &r) == 0) {
                j->ok = 1;
                j->regs = r.regs;
                j->spill_st = r.spill_stores;
                j->spill_ld = r.spill_loads;
                j->serialized = r.wgmma_serialized;
            } else {
                snprintf(j->err, sizeof j->err, "no ptxas report for %s", j->name);
            }
        }
        nvrtc_compiled_free(&out);
    }
}

static void run_jobs(void)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, compile_worker, NULL);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < n_jobs; i++) {
        compile_job *j = &jobs[i];
        CHECKF(j->ok, "%s (%s): compile failed: %s", j->what, j->arch, j->err);
        if (j->ok && j->must_not_spill)
            CHECKF(j->spill_st == 0 && j->spill_ld == 0, "%s %s (%s): spills %d/%d bytes at %d registers", j->what,
                   j->name, j->arch, j->spill_st, j->spill_ld, j->regs);
        if (j->ok && j->must_not_spill)
            CHECKF(!j->serialized, "%s %s (%s): ptxas serialized its wgmma (C7518)", j->what, j->name, j->arch);
        free(j->src);
    }
    free(jobs);
    jobs = NULL;
    n_jobs = cap_jobs = next_job = 0;
}

/* Every shipped config, every distinct pattern of it (default and per-layer
 * overrides), default tiles, sm_80 and sm_90a: no spills allowed. */
static void test_configs_compile(void)
{
    glob_t g;
    int rc = glob("configs/*.yaml", 0, NULL, &g);
    CHECKF(rc == 0 && g.gl_pathc >= 1, "no configs/*.yaml (run from the repository root)");
    if (rc != 0) return;
    sp_spec *specs = calloc(g.gl_pathc, sizeof *specs);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        sp_err e = { 0 };
        if (spec_load(g.gl_pathv[i], &specs[i], &e)) {
            CHECKF(0, "%s: %s", g.gl_pathv[i], e.msg);
            continue;
        }
        const sp_spec *s = &specs[i];
        const sp_pattern *pats[1 + SP_MAX_OVERRIDES];
        int n = 0;
        pats[n++] = &s->pattern;
        for (int k = 0; k < s->n_overrides; k++) {
            int seen = 0;
            for (int m = 0; m < n; m++)
                seen |= pats[m]->kind == s->overrides[k].pattern.kind && pats[m]->custom == s->overrides[k].pattern.custom;
            if (!seen) pats[n++] = &s->overrides[k].pattern;
        }
        for (int k = 0; k < n; k++) {
            char what[160];
            snprintf(what, sizeof what, "%s [%s]", g.gl_pathv[i], sp_pattern_name(pats[k]->kind));
            sp_kcfg c80 = derived(s, pats[k], NULL, 80), c90 = derived(s, pats[k], NULL, 90);
            add_job(what, s, pats[k], &c80, "sm_80", 1);
            add_job(what, s, pats[k], &c90, "sm_90a", 1);
        }
    }
    run_jobs();
    for (size_t i = 0; i < g.gl_pathc; i++) spec_free(&specs[i]);
    free(specs);
    globfree(&g);
}

/* Every pattern kind, both dtypes, the head dims, default tiles: no spills. */
static void test_patterns_compile(void)
{
    sp_pattern_kind kinds[] = { SP_DENSE, SP_LOCAL, SP_SPATTN, SP_EXCLUSIVE, SP_GAPPED, SP_CUSTOM };
    int dims[] = { 32, 64, 96, 128, 256 };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            /* Every kind at d64 and d128; the other head dims with spattn only. */
            if (dims[d] != 64 && dims[d] != 128 && kinds[k] != SP_SPATTN) continue;
            sp_spec s = make_spec(4, kinds[k] == SP_DENSE ? 1 : 2, dims[d], d % 2 ? SP_FP16 : SP_BF16, kinds[k]);
            if (kinds[k] == SP_CUSTOM) s.pattern.custom = custom4;
            char what[96];
            snprintf(what, sizeof what, "%s d%d", sp_pattern_name(kinds[k]), dims[d]);
            sp_kcfg c80 = derived(&s, &s.pattern, NULL, 80), c90 = derived(&s, &s.pattern, NULL, 90);
            add_job(what, &s, &s.pattern, &c80, "sm_80", 1);
            add_job(what, &s, &s.pattern, &c90, "sm_90a", 1);
            if (dims[d] == 64 || dims[d] == 128) {   /* the Hopper kernel, also where it is not the default */
                sp_kcfg wg = derived(&s, &s.pattern, "128x128:w8:s3:wgmma", 90);
                add_job(what, &s, &s.pattern, &wg, "sm_90a", 1);
                sp_kcfg ws = derived(&s, &s.pattern, "128x128:s2:ws", 90);   /* the warp-specialized one */
                add_job(what, &s, &s.pattern, &ws, "sm_90a", 1);
            }
            if (dims[d] == 256) {   /* the 99 KiB default of sm_86 / sm_89 */
                sp_kcfg c86 = derived(&s, &s.pattern, NULL, 86);
                add_job(what, &s, &s.pattern, &c86, "sm_86", 1);
            }
        }
    run_jobs();
}

/* Every tuner candidate at d64 and d128 compiles (sm_90a; spills are the
 * tuner's to judge, not an error here). */
static void test_candidates_compile(void)
{
    int dims[] = { 64, 128 };
    for (size_t i = 0; i < 2; i++) {
        sp_spec s = make_spec(16, 16, dims[i], SP_BF16, SP_SPATTN);
        sp_kcfg base;
        kcfg_for_spec(&base, &s, &s.pattern, SP_KIND_FWD, 90);
        sp_kcfg out[256];
        int n = kcfg_candidates(&base, out, 256);
        for (int k = 0; k < n; k++) {
            char what[96], tile[64];
            kcfg_tile_string(&out[k], tile, sizeof tile);
            snprintf(what, sizeof what, "candidate d%d %s", dims[i], tile);
            add_job(what, &s, &s.pattern, &out[k], "sm_90a", 0);
        }
    }
    run_jobs();
}

static const test_case tests[] = {
    { "defaults_derive", test_defaults_derive },
    { "derive_rejects", test_derive_rejects },
    { "parse_tile", test_parse_tile },
    { "name", test_name },
    { "regress_14_names_unique_per_binary", test_regress_14_names_unique_per_binary },
    { "candidates", test_candidates },
    { "wgmma_configs", test_wgmma_configs },
    { "ws_configs", test_ws_configs },
    { "deterministic_selfcontained", test_deterministic_selfcontained },
    { "regress_13_fwd_empty_qtile_waits_for_q", test_regress_13_fwd_empty_qtile_waits_for_q },
    { "emit_rejects", test_emit_rejects },
    { "kparams_pack", test_kparams_pack },
    { "configs_compile", test_configs_compile },
    { "patterns_compile", test_patterns_compile },
    { "candidates_compile", test_candidates_compile },
    { 0, 0 },
};
TEST_MAIN(tests)
