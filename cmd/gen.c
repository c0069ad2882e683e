/* spattn gen: print (or write) the generated CUDA source of one kernel.
 * The steps are the pipeline's: spec -> pattern (--layer-index, --dense)
 * -> kernel config (heuristic for --arch, or --tile) -> source. */
#include <stdio.h>
#include <string.h>

#include "cmd/arch.h"
#include "cmd/cmd.h"
#include "codegen/emit.h"
#include "codegen/kcfg.h"
#include "codegen/kernel_sources.h"
#include "common/fileio.h"
#include "common/strbuf.h"

static const opt_cmd gen_cmd = {
    "gen",
    "spattn gen SPEC [--kind fwd|bwd|decode] [--tile BMxBN[:wW:sS]] [--layer-index K] [--dense] [--arch ARCH] [-o FILE.cu]",
    "Print the generated CUDA C++ source of SPEC's kernel: one self-contained translation unit for NVRTC.",
    1, 1,
};

/* "fwd" / "bwd" / "decode" -> kind; -1 with SP_EXIT_USAGE otherwise. */
static int parse_kind(const char *s, sp_kernel_kind *kind, sp_err *e)
{
    if (strcmp(s, "fwd") == 0) *kind = SP_KIND_FWD;
    else if (strcmp(s, "bwd") == 0) *kind = SP_KIND_BWD;
    else if (strcmp(s, "decode") == 0) *kind = SP_KIND_DEC;
    else return sp_fail(e, SP_EXIT_USAGE, "gen: --kind must be fwd, bwd or decode, not '%s'", s);
    if (!emit_kind_supported(*kind))
        return sp_fail(e, SP_EXIT_USAGE, "gen: %s kernels are not generated yet", s);
    return 0;
}

int cmd_gen(int argc, char **argv, sp_err *e)
{
    const char *kind_name = "fwd", *tile = NULL, *arch = "sm_90a", *out_path = NULL;
    int layer_index = -1, dense = 0;
    opt_def opts[] = {
        OPT_STRING(0, "kind", &kind_name, "KIND", "kernel kind: fwd (the default), bwd or decode (from a KV cache)"),
        OPT_STRING(0, "tile", &tile, "BMxBN[:wW:sS]", "tile config instead of the default, e.g. 128x64:w4:s2"),
        OPT_INT(0, "layer-index", &layer_index, "K", "use layer K's pattern (default: the spec's default)", 0, 1 << 20),
        OPT_BOOL(0, "dense", &dense, "generate the dense causal kernel of the spec's shape (the baseline)"),
        OPT_STRING(0, "arch", &arch, "ARCH", "GPU whose default tiles to use (default sm_90a)"),
        OPT_STRING('o', "output", &out_path, "FILE", "write the source to FILE (atomically) instead of stdout"),
        OPT_END(),
    };
    opt_pos pos;
    int rc = opts_parse(&gen_cmd, opts, argc, argv, &pos, e);
    if (rc) return rc > 0 ? SP_EXIT_OK : SP_EXIT_USAGE;

    sp_kernel_kind kind = SP_KIND_FWD;
    int sm = 90;
    char arch_buf[32];
    if (parse_kind(kind_name, &kind, e) || arch_parse(arch, &sm, arch_buf, sizeof arch_buf, e)) return SP_EXIT_USAGE;

    sp_out out;
    const char *what = "-o";
    if (cmd_check_outputs(&out, &out_path, &what, 1, e)) return SP_EXIT_USAGE;

    sp_spec spec;
    if (cmd_load_spec(pos.v[0], &spec, e)) return SP_EXIT_USAGE;
    strbuf src = STRBUF_INIT;
    rc = SP_EXIT_USAGE;
    const sp_pattern *pat;
    sp_pattern dense_pat = { .kind = SP_DENSE };
    if (dense) pat = &dense_pat;
    else if (cmd_layer_pattern(&spec, layer_index, &pat, e)) goto out;

    sp_kcfg cfg;
    kcfg_for_spec(&cfg, &spec, pat, kind, sm);
    if (tile && kcfg_parse_tile(tile, &cfg, e)) goto out;
    if (kcfg_derive(&cfg, e)) goto out;
    if (emit_kernel(&src, &spec, pat, &cfg, e)) goto out;
    /* One self-contained translation unit: the kernels/x.cuh files it includes pasted in. */
    strbuf flat = STRBUF_INIT;
    if (kernel_sources_flatten(&flat, src.buf, KERNEL_TU_NAME, e)) { sb_free(&flat); goto out; }
    sb_free(&src);
    src = flat;

    if (out_path) {
        if (sp_out_stage(&out, src.buf, src.len, e) || sp_outs_commit(&out, 1, e)) {
            rc = e->code ? e->code : SP_EXIT_FAIL;
            goto out;
        }
    } else {
        fwrite(src.buf, 1, src.len, stdout);
    }
    rc = SP_EXIT_OK;
out:
    sb_free(&src);
    spec_free(&spec);
    return rc;
}
