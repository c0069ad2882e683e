/* The prelude every generated kernel starts with: the element type, the
 * parameter struct (generated from abi/'s field list, with a size check
 * against the host's), and the includes of the small named helpers around
 * inline PTX (kernels/ptx.cuh), the mma.sync tile layout (kernels/layout.cuh)
 * and the band helpers (kernels/bands.cuh).  Kernels are written against
 * these helpers only, so their bodies read like the algorithm
 * (ThunderKittens' habit). */
#include "codegen/emit.h"
#include "codegen/family.h"

#include <string.h>

#include "abi/bandtab.h"
#include "abi/kparams.h"

/* ---- types and parameters --------------------------------------------- */

#define KPARAM_ROW_(type, name, comment) { #type, #name, comment },
static const emit_field kparam_fields[] = { SP_KPARAMS_FIELDS(KPARAM_ROW_) };
#undef KPARAM_ROW_

void emit_param_struct(strbuf *out, const char *name, const char *header, const emit_field *fields, size_t n,
                       size_t host_size)
{
    sb_printf(out,
              "/* %s  Generated from the field list in\n"
              " * %s, the same list the host's struct comes from; the size check\n"
              " * below catches a host and a kernel built from different lists. */\n"
              "struct %s {\n",
              "The kernels' one parameter, passed by value.", header, name);
    for (size_t i = 0; i < n; i++) {
        const emit_field *f = &fields[i];
        sb_printf(out, "    %s %s;", f->type, f->name);
        int pad = 28 - (int)(strlen(f->type) + strlen(f->name));
        if (f->comment[0]) sb_printf(out, "%*s/* %s */", pad > 1 ? pad : 1, "", f->comment);
        sb_puts(out, "\n");
    }
    sb_printf(out, "};\nstatic_assert(sizeof(%s) == %zu, \"%s differs from the host's (%s)\");\n\n", name, host_size,
              name, header);
}

static void emit_kparams(strbuf *out)
{
    emit_param_struct(out, "sp_kparams", "abi/kparams.h", kparam_fields,
                      sizeof kparam_fields / sizeof kparam_fields[0], sizeof(sp_kparams));
}

static void emit_types(strbuf *out, const sp_kcfg *cfg)
{
    int bf16 = cfg->dtype == SP_BF16;
    sb_printf(out,
              "/* ==== The element type ==== */\n"
              "typedef unsigned short elem_t;   /* one %s value as its raw 16 bits: storage only */\n"
              "#define ELEM_PTX \"%s\"         /* its name in PTX: mma.sync, wgmma */\n"
              "#define ELEM_PTX_X2 \"%s\"    /* a pair of them (cvt) */\n"
              "#define ELEM_BF16 %d            /* 1: bfloat16, 0: float16 */\n"
              "#include \"common.cuh\"\n\n",
              bf16 ? "bfloat16" : "float16", bf16 ? "bf16" : "f16", bf16 ? "bf16x2" : "f16x2", bf16);
    emit_kparams(out);
}

/* ---- PTX helpers: kernels/ptx.cuh ---------------------------------------- */

static void emit_ptx(strbuf *out)
{
    sb_puts(out, "#include \"ptx.cuh\"\n\n");
}

void emit_prelude(strbuf *out, const sp_kcfg *cfg)
{
    emit_types(out, cfg);
    emit_ptx(out);
    /* The wgmma forward has only its own layout; the backward keeps this one for its dq kernel. */
    if (kcfg_family(cfg)->uses_layout) sb_puts(out, "#include \"layout.cuh\"\n");
}

/* ---- band helpers: kernels/bands.cuh ---------------------------------------- */

void emit_bands(strbuf *out, const sp_kcfg *cfg)
{
    sb_puts(out, "#include \"bands.cuh\"\n\n");
}
