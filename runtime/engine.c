#include "runtime/engine.h"

#include <string.h>

#include "codegen/emit.h"
#include "codegen/family.h"
#include "codegen/kcfg_bwd.h"
#include "common/fileio.h"
#include "common/strbuf.h"
#include "runtime/kcache.h"

/* Emit cfg's source and get its cubin for arch (cache, else NVRTC). */
static int build(const char *arch, int driver_version, const sp_spec *spec, const sp_pattern *pat,
                 const sp_kcfg *cfg, engine_kernel *k, sp_compiled *bin, sp_err *e)
{
    memset(k, 0, sizeof *k);
    k->cfg = *cfg;
    const sp_family *f = kcfg_family(cfg);
    if (!f) return sp_fail(e, SP_EXIT_USAGE, "internal: no kernel family for this config");
    f->entry_name(cfg, k->name, sizeof k->name);
    strbuf src = STRBUF_INIT;
    sb_init(&src);
    if (emit_kernel(&src, spec, pat, cfg, e)) { sb_free(&src); return -1; }
    kcache_info info;
    int rc = kcache_get(src.buf, arch, driver_version, k->name, bin, &info, e);
    sb_free(&src);
    if (rc) return -1;
    k->cache_hit = info.hit;
    nvrtc_kernel_resources(bin->log, k->name, &k->res);
    return 0;
}

int engine_compile(const char *arch, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg,
                   engine_kernel *k, sp_err *e)
{
    double t0 = sp_now();
    sp_compiled bin;
    if (build(arch, 0, spec, pat, cfg, k, &bin, e)) return -1;
    nvrtc_compiled_free(&bin);
    k->build_ms = 1e3 * (sp_now() - t0);
    return 0;
}

int engine_load(sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg,
                engine_kernel *k, sp_err *e)
{
    double t0 = sp_now();
    char arch[32];
    nvrtc_arch_for_sm(g->sm, arch, sizeof arch);
    sp_compiled bin;
    if (build(arch, g->driver_version, spec, pat, cfg, k, &bin, e)) return -1;
    int rc = cu_module_load(g, bin.cubin, bin.len, &k->module, e);
    nvrtc_compiled_free(&bin);
    if (rc) return -1;
    if (cfg->kind == SP_KIND_BWD ? attn_bwd_lookup(k->module, cfg, &k->bwd, e) : cu_function(k->module, k->name, &k->fn, e)) {
        cu_module_unload(g, k->module);
        k->module = NULL;
        return -1;
    }
    if (cfg->kind == SP_KIND_DEC) {
        char combine[160];
        kcfg_dec_combine_name(cfg, combine, sizeof combine);
        if (cu_function(k->module, combine, &k->combine, e)) {
            cu_module_unload(g, k->module);
            k->module = NULL;
            return -1;
        }
    }
    k->build_ms = 1e3 * (sp_now() - t0);
    return 0;
}

int engine_load_dense(sp_gpu *g, const sp_spec *spec, sp_kernel_kind kind, int deterministic, engine_kernel *k,
                      sp_err *e)
{
    sp_pattern dense = { .kind = SP_DENSE };
    sp_kcfg c;
    kcfg_for_spec(&c, spec, &dense, kind, g->sm);
    if (kind == SP_KIND_BWD && deterministic) kcfg_default_bwd_det(&c, g->sm);
    if (kcfg_derive(&c, e)) return -1;
    return engine_load(g, spec, &dense, &c, k, e);
}

void engine_unload(sp_gpu *g, engine_kernel *k)
{
    if (k->module) cu_module_unload(g, k->module);
    k->module = NULL;
    k->fn = NULL;
    k->combine = NULL;
}
