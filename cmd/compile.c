/* spattn compile: generate and compile a spec's kernels with NVRTC (no GPU
 * needed) and report, per kernel and architecture, registers, shared
 * memory, stack and spills.  The test suite runs it with --no-spills over
 * every shipped config: a spill in a default tile config fails the build.
 *
 * Which kernels: one per distinct pattern of the spec (the default and
 * every per-layer override), or --layer-index's only, or --dense's; per
 * kind (--kind fwd|bwd|all|decode) and per --arch.  The backward's default
 * config, and its deterministic mode's where that differs (sm_90a at
 * head_dim 64: a plan loads both).
 *
 * Every cubin goes through the kernel cache (runtime/kcache.h) under the key
 * `run` and `check` look up on a GPU of that arch (the key has no driver
 * version), so a build machine without a GPU can warm a cache for one;
 * the helper kernels of check's GPU reference are stored too, once per
 * arch.  --no-cache compiles without reading or storing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/arch.h"
#include "cmd/cmd.h"
#include "codegen/emit.h"
#include "codegen/kcfg.h"
#include "codegen/family.h"
#include "codegen/kcfg_bwd.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/strbuf.h"
#include "runtime/kcache.h"
#include "runtime/nvrtc.h"
#include "runtime/ref_gpu.h"

static const opt_cmd compile_cmd = {
    "compile",
    "spattn compile SPEC [--arch ARCH[,ARCH...]] [--kind fwd|bwd|all|decode] [--tile BMxBN[:wW:sS]] [--layer-index K] "
    "[--dense] [--no-spills] [--no-cache] [--json]",
    "Compile SPEC's kernels with NVRTC (no GPU needed) and report registers, shared memory and spills.",
    1, 1,
};

#define MAX_ARCHS 8
#define MAX_PATTERNS (1 + SP_MAX_OVERRIDES)

typedef struct {
    char name[128], tile[64], arch[16];
    sp_kernel_kind kind;
    sp_pattern_kind pattern;
    int deterministic;  /* the backward's deterministic mode's own default, not the default mode's */
    int dynamic_smem;
    sp_kres res;
    double seconds;
    int cached;         /* 1: read from the kernel cache, not compiled now */
} compiled_kernel;

/* Patterns to compile: --dense's, --layer-index's, or every distinct one
 * of the spec (two are the same kernel when kind and basis agree). */
static int collect_patterns(const sp_spec *spec, int layer_index, int dense, const sp_pattern *dense_pat,
                            const sp_pattern **out, sp_err *e)
{
    if (dense) { out[0] = dense_pat; return 1; }
    if (layer_index >= 0) return cmd_layer_pattern(spec, layer_index, &out[0], e) ? -1 : 1;
    int n = 0;
    out[n++] = &spec->pattern;
    for (int i = 0; i < spec->n_overrides; i++) {
        const sp_pattern *p = &spec->overrides[i].pattern;
        int seen = 0;
        for (int j = 0; j < n; j++)
            if (out[j]->kind == p->kind && out[j]->band_basis == p->band_basis && out[j]->custom == p->custom) seen = 1;
        if (!seen) out[n++] = p;
    }
    return n;
}

/* Split --arch's comma-separated list. */
static int parse_archs(const char *list, char archs[][16], int *sms, sp_err *e)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= MAX_ARCHS) return sp_fail(e, SP_EXIT_USAGE, "compile: at most %d architectures", MAX_ARCHS);
        if (arch_parse(tok, &sms[n], archs[n], 16, e)) return -1;
        n++;
    }
    if (n == 0) return sp_fail(e, SP_EXIT_USAGE, "compile: --arch is empty");
    return n;
}

/* The kernels of cfg's translation unit and their dynamic shared memory:
 * the forward is one kernel; the backward a family (codegen/kcfg_bwd.h). */
#define MAX_TU_KERNELS BWD_PARTS
static int tu_kernels(const sp_kcfg *cfg, char names[][128], int *smem)
{
    if (cfg->kind == SP_KIND_DEC) {   /* the split-KV decode kernel and its combine */
        kcfg_name(cfg, names[0], 128);
        kcfg_dec_combine_name(cfg, names[1], 128);
        smem[0] = cfg->smem_bytes;
        smem[1] = 0;
        return 2;
    }
    if (cfg->kind == SP_KIND_BWD) {   /* the parts of its family (kcfg_bwd_has_part), in launch order */
        static const sp_bwd_part order[BWD_PARTS] = { BWD_PRE, BWD_MAIN, BWD_MAIN_DET, BWD_MAIN_SEM, BWD_DQ, BWD_CONVERT };
        int n = 0;
        for (int i = 0; i < BWD_PARTS; i++) {
            if (!kcfg_bwd_has_part(cfg, order[i])) continue;
            kcfg_bwd_name(cfg, order[i], names[n], 128);
            smem[n++] = kcfg_bwd_smem(cfg, order[i]);
        }
        return n;
    }
    kcfg_name(cfg, names[0], 128);
    smem[0] = cfg->smem_bytes;
    return 1;
}

/* The config of kind for sm: tile, else the heuristic (the backward's of
 * the deterministic mode if det); derived, or -1. */
static int config_of(const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind, int det, const char *tile,
                     int sm, sp_kcfg *cfg, sp_err *e)
{
    kcfg_for_spec(cfg, spec, pat, kind, sm);
    if (tile && kcfg_parse_tile(tile, cfg, e)) return -1;
    if (!tile && kind == SP_KIND_BWD && det) kcfg_default_bwd_det(cfg, sm);
    return kcfg_derive(cfg, e);
}

/* 1 if the deterministic backward's default for sm is another kernel than
 * the default mode's (without --tile); 0 also where either fails to
 * derive (compiling the default mode's says why). */
static int det_default_differs(const sp_spec *spec, const sp_pattern *pat, int sm)
{
    sp_kcfg a, b;
    sp_err e = { 0 };
    if (config_of(spec, pat, SP_KIND_BWD, 0, NULL, sm, &a, &e) ||
        config_of(spec, pat, SP_KIND_BWD, 1, NULL, sm, &b, &e))
        return 0;
    return !kcfg_same_kernel(&a, &b);
}

/* Emit and compile one translation unit; fills ks[0..] with one entry per
 * kernel in it and returns how many, or -1 on a generation or compile error
 * (the NVRTC log head is in e). */
static int compile_one(const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind, int det, const char *tile,
                       int sm, const char *arch, int use_cache, compiled_kernel *ks, sp_err *e)
{
    sp_kcfg cfg;
    if (config_of(spec, pat, kind, det, tile, sm, &cfg, e)) return -1;
    strbuf src = STRBUF_INIT;
    if (emit_kernel(&src, spec, pat, &cfg, e)) { sb_free(&src); return -1; }

    char names[MAX_TU_KERNELS][128];
    int smem[MAX_TU_KERNELS];
    int n = tu_kernels(&cfg, names, smem);
    sp_compiled out;
    kcache_info info = { 0 };
    double t0 = sp_now();
    /* The label engine_load gives (the backward's main kernel), so `cache
     * list` shows the same entry whoever stored it. */
    char label[128];
    if (kind == SP_KIND_BWD) kcfg_bwd_name(&cfg, BWD_MAIN, label, sizeof label);
    else snprintf(label, sizeof label, "%s", names[0]);
    int rc = use_cache ? kcache_get(src.buf, arch, 0, label, &out, &info, e) : nvrtc_compile(src.buf, arch, &out, e);
    double seconds = sp_now() - t0;
    sb_free(&src);
    if (rc) {
        nvrtc_compiled_free(&out);
        return -1;
    }
    if (info.store_failed) fprintf(stderr, "warning: %s: not stored in the kernel cache: %s\n", label, info.why);
    for (int i = 0; i < n; i++) {
        compiled_kernel *k = &ks[i];
        memset(k, 0, sizeof *k);
        snprintf(k->name, sizeof k->name, "%s", names[i]);
        kcfg_tile_string(&cfg, k->tile, sizeof k->tile);
        snprintf(k->arch, sizeof k->arch, "%s", arch);
        k->kind = kind;
        k->deterministic = det;
        k->pattern = pat->kind;
        k->dynamic_smem = smem[i];
        k->seconds = seconds;   /* the translation unit's */
        k->cached = info.hit;
        if (nvrtc_kernel_resources(out.log, k->name, &k->res)) {
            nvrtc_compiled_free(&out);
            return sp_fail(e, SP_EXIT_FAIL, "compile: no ptxas report for %s in the NVRTC log", k->name);
        }
    }
    nvrtc_compiled_free(&out);
    return n;
}

static void print_table(const compiled_kernel *ks, int n)
{
    printf("%-60s %-10s %-7s %5s %16s %6s %12s %8s\n", "kernel", "pattern", "arch", "regs", "smem static+dyn",
           "stack", "spill st/ld", "time");
    for (int i = 0; i < n; i++) {
        const compiled_kernel *k = &ks[i];
        char smem[48], spill[32];
        snprintf(smem, sizeof smem, "%d+%d", k->res.smem_static, k->dynamic_smem);
        snprintf(spill, sizeof spill, "%d/%d", k->res.spill_stores, k->res.spill_loads);
        char when[16];
        if (k->cached) snprintf(when, sizeof when, "cached");
        else snprintf(when, sizeof when, "%.2fs", k->seconds);
        printf("%-60s %-10s %-7s %5d %16s %6d %12s %8s\n", k->name, sp_pattern_name(k->pattern), k->arch,
               k->res.regs, smem, k->res.stack_bytes, spill, when);
    }
}

static void print_json(const sp_spec *spec, const compiled_kernel *ks, int n, int spills)
{
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w, NULL);
    jw_str(&w, "spec", spec->name);
    jw_str(&w, "spec_path", spec->path);
    jw_int(&w, "nvrtc_version", nvrtc_version());
    jw_arr(&w, "kernels");
    for (int i = 0; i < n; i++) {
        const compiled_kernel *k = &ks[i];
        jw_obj(&w, NULL);
        jw_str(&w, "name", k->name);
        jw_str(&w, "kind", kcfg_kind_name(k->kind));
        if (k->deterministic) jw_bool(&w, "deterministic", 1);   /* the deterministic mode's own default */
        jw_str(&w, "pattern", sp_pattern_name(k->pattern));
        jw_str(&w, "tile", k->tile);
        jw_str(&w, "arch", k->arch);
        jw_int(&w, "regs", k->res.regs);
        jw_int(&w, "smem_static", k->res.smem_static);
        jw_int(&w, "smem_dynamic", k->dynamic_smem);
        jw_int(&w, "stack_bytes", k->res.stack_bytes);
        jw_int(&w, "spill_stores", k->res.spill_stores);
        jw_int(&w, "spill_loads", k->res.spill_loads);
        jw_num(&w, "compile_seconds", k->seconds);
        jw_bool(&w, "cached", k->cached);
        jw_end(&w);
    }
    jw_end(&w);
    jw_bool(&w, "spills", spills > 0);
    jw_end(&w);
    jw_finish(&w);
}

int cmd_compile(int argc, char **argv, sp_err *e)
{
    const char *arch_list = "sm_90a", *kind_name = "all", *tile = NULL;
    int layer_index = -1, dense = 0, no_spills = 0, no_cache = 0, json = 0;
    opt_def opts[] = {
        OPT_STRING(0, "arch", &arch_list, "ARCH[,ARCH]", "targets, e.g. sm_80,sm_90a (default sm_90a; sm_90 means sm_90a)"),
        OPT_STRING(0, "kind", &kind_name, "KIND", "fwd, bwd, all (fwd and bwd; the default) or decode"),
        OPT_STRING(0, "tile", &tile, "BMxBN[:wW:sS]", "tile config instead of the default"),
        OPT_INT(0, "layer-index", &layer_index, "K", "only layer K's pattern (default: every pattern of the spec)", 0,
                1 << 20),
        OPT_BOOL(0, "dense", &dense, "the dense causal kernel of the spec's shape instead"),
        OPT_BOOL(0, "no-spills", &no_spills, "exit 1 if any kernel spills registers or has its wgmma serialized"),
        OPT_BOOL(0, "no-cache", &no_cache, "compile without reading or storing the kernel cache"),
        OPT_BOOL(0, "json", &json, "print one JSON object on stdout"),
        OPT_END(),
    };
    opt_pos pos;
    int rc = opts_parse(&compile_cmd, opts, argc, argv, &pos, e);
    if (rc) return rc > 0 ? SP_EXIT_OK : SP_EXIT_USAGE;

    sp_kernel_kind kinds[2];
    int n_kinds = 0;
    if (strcmp(kind_name, "fwd") == 0 || strcmp(kind_name, "all") == 0) kinds[n_kinds++] = SP_KIND_FWD;
    if (strcmp(kind_name, "bwd") == 0 || strcmp(kind_name, "all") == 0) {
        if (emit_kind_supported(SP_KIND_BWD)) kinds[n_kinds++] = SP_KIND_BWD;
        else if (strcmp(kind_name, "bwd") == 0) {
            sp_fail(e, SP_EXIT_USAGE, "compile: backward kernels are not generated yet");
            return SP_EXIT_USAGE;
        }
    }
    if (strcmp(kind_name, "decode") == 0) kinds[n_kinds++] = SP_KIND_DEC;
    if (n_kinds == 0) {
        sp_fail(e, SP_EXIT_USAGE, "compile: --kind must be fwd, bwd, all or decode, not '%s'", kind_name);
        return SP_EXIT_USAGE;
    }

    char archs[MAX_ARCHS][16];
    int sms[MAX_ARCHS];
    int n_archs = parse_archs(arch_list, archs, sms, e);
    if (n_archs < 0) return SP_EXIT_USAGE;

    sp_spec spec;
    if (cmd_load_spec(pos.v[0], &spec, e)) return SP_EXIT_USAGE;
    const sp_pattern *pats[MAX_PATTERNS];
    sp_pattern dense_pat = { .kind = SP_DENSE };
    compiled_kernel *ks = NULL;
    int n = 0, spills = 0;
    int n_pats = collect_patterns(&spec, layer_index, dense, &dense_pat, pats, e);
    rc = SP_EXIT_USAGE;
    if (n_pats < 0) goto out;

    /* (n_kinds + 1): room for the deterministic backward's own default. */
    ks = calloc((size_t)(n_pats * (n_kinds + 1) * n_archs * MAX_TU_KERNELS), sizeof *ks);
    if (!ks) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); rc = SP_EXIT_FAIL; goto out; }
    for (int p = 0; p < n_pats; p++)
        for (int k = 0; k < n_kinds; k++)
            for (int a = 0; a < n_archs; a++)
                for (int det = 0; det <= (kinds[k] == SP_KIND_BWD && !tile); det++) {
                    if (det && !det_default_differs(&spec, pats[p], sms[a])) continue;
                    int got = compile_one(&spec, pats[p], kinds[k], det, tile, sms[a], archs[a], !no_cache, &ks[n], e);
                    if (got < 0) {
                        rc = e->code ? e->code : SP_EXIT_FAIL;
                        goto out;
                    }
                    for (int i = n; i < n + got; i++)
                        if (ks[i].res.spill_stores || ks[i].res.spill_loads || ks[i].res.wgmma_serialized) spills++;
                    n += got;
                }

    /* check's cuBLAS reference needs its helper kernels (runtime/ref_gpu.c)
     * on the GPU too: store them, so the warmed cache serves check whole. */
    for (int a = 0; a < n_archs && !no_cache; a++) {
        sp_compiled helpers;
        kcache_info info = { 0 };
        int hrc = kcache_get(refgpu_source(), archs[a], 0, "spattn_ref_helpers", &helpers, &info, e);
        nvrtc_compiled_free(&helpers);
        if (hrc) {
            rc = e->code ? e->code : SP_EXIT_FAIL;
            goto out;
        }
    }

    if (json) print_json(&spec, ks, n, spills);
    else print_table(ks, n);
    for (int i = 0; i < n; i++)
        if (ks[i].res.spill_stores || ks[i].res.spill_loads)
            fprintf(stderr, "%s: %s for %s spills %d bytes (stores) / %d bytes (loads)\n",
                    no_spills ? "error" : "WARNING", ks[i].name, ks[i].arch, ks[i].res.spill_stores,
                    ks[i].res.spill_loads);
    for (int i = 0; i < n; i++)
        if (ks[i].res.wgmma_serialized)
            fprintf(stderr, "%s: %s for %s: ptxas serialized its wgmma instructions (C7518), a slow kernel\n",
                    no_spills ? "error" : "WARNING", ks[i].name, ks[i].arch);
    rc = spills && no_spills ? SP_EXIT_FAIL : SP_EXIT_OK;
out:
    free(ks);
    spec_free(&spec);
    return rc;
}
