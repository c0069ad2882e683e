/* The prelude every generated kernel starts with: types, the parameter
 * struct, and small named helpers around inline PTX, each written once with
 * a comment on what it does and on its register layout; then the band
 * helpers.  Kernels are written against these helpers only, so their bodies
 * read like the algorithm (ThunderKittens' habit). */
#include "codegen/emit.h"

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
              "#include \"common.cuh\"\n\n",
              bf16 ? "bfloat16" : "float16", bf16 ? "bf16" : "f16", bf16 ? "bf16x2" : "f16x2");
    emit_kparams(out);
}

/* ---- PTX helpers: kernels/ptx.cuh ---------------------------------------- */

static void emit_ptx(strbuf *out)
{
    sb_puts(out, "#include \"ptx.cuh\"\n\n");
}

/* ---- shared-memory tiles ------------------------------------------------ */

static void emit_tile_layout(strbuf *out, const sp_kcfg *cfg)
{
    int chunks = cfg->head_dim * 2 / 16;
    sb_puts(out,
            "/* ==== Prelude: shared-memory tiles ====\n"
            " * A tile holds rows of HEAD_DIM 16-bit values; a row is CHUNKS chunks of 16 bytes (8\n"
            " * values) and ROW_BYTES apart.  ldmatrix reads one chunk from each of 8 consecutive\n"
            " * rows: were rows stored plainly, a multiple of 128 bytes apart, those 8 chunks would\n"
            " * sit in the same 4 banks and the read would serialize 8 ways. */\n");
    if (chunks % 8 == 0)
        sb_puts(out,
                "/* Swizzle: chunk c of row r is stored at chunk c ^ (r % 8), so the 8 rows' chunks land\n"
                " * in 8 different bank groups; whole 16-byte chunks stay aligned for cp.async. */\n"
                "DEV u32 tile_off(int row, int chunk) { return row * ROW_BYTES + ((chunk ^ (row & 7)) << 4); }\n\n");
    else if (chunks == 4)
        sb_puts(out,
                "/* Rows are 64 bytes: two rows share a 128-byte bank line.  Swizzle: chunk c of row r is\n"
                " * stored at chunk c ^ ((r / 2) % 4), so 8 consecutive rows cover all 8 bank groups. */\n"
                "DEV u32 tile_off(int row, int chunk) { return row * ROW_BYTES + ((chunk ^ ((row >> 1) & 3)) << 4); }\n\n");
    else
        sb_puts(out,
                "/* Padding: rows are one chunk longer than the data (an odd number of chunks), so 8\n"
                " * consecutive rows start in 8 different bank groups. */\n"
                "DEV u32 tile_off(int row, int chunk) { return row * ROW_BYTES + (chunk << 4); }\n\n");
}

void emit_prelude(strbuf *out, const sp_kcfg *cfg)
{
    emit_types(out, cfg);
    emit_ptx(out);
    /* The wgmma forward has only its own layout; the backward keeps this one for its dq kernel. */
    if (cfg->mma == SP_MMA_SYNC || cfg->kind == SP_KIND_BWD) emit_tile_layout(out, cfg);
}

/* ---- band helpers -------------------------------------------------------- */

void emit_bands(strbuf *out, const sp_kcfg *cfg)
{
    sb_puts(out,
            "/* ==== Band helpers ====\n"
            " * A head's allowed distances d = i - j are at most MAX_INTERVALS half-open intervals\n"
            " * [lo, hi), ascending and disjoint (abi/bandtab.h: row h of the band table holds\n"
            " * count, lo_0, hi_0, lo_1, hi_1, ...; unused slots are [0, 0)).  A query tile's plan is\n"
            " * the KV tiles it visits, as one run of consecutive tiles per interval, in ascending\n"
            " * key order; it lives in shared memory, built by one thread. */\n"
            "enum { TILE_SKIP = 0, TILE_PARTIAL = 1, TILE_FULL = 2 };\n\n"
            "struct band_plan {\n"
            "    int count;                      /* intervals of this head */\n"
            "    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];\n"
            "    int run_first[MAX_INTERVALS];   /* run r: KV tiles run_first[r] .. + run_len[r] - 1 */\n"
            "    int run_len[MAX_INTERVALS];\n"
            "    int total;                      /* KV tiles in all runs */\n"
            "};\n\n"
            "/* The plan of query rows [m0, m0 + BM) from band table row `row`, mirroring\n"
            " * bands_kv_tiles() in codegen/bands.c line for line: interval [lo, hi) reaches keys\n"
            " * j in [m0 - (hi - 1), m_last - lo] (m_last: last row < n), clipped to [0, n).\n"
            " * Descending distance is ascending key, so intervals go from the last to the first;\n"
            " * `next` (the first tile not yet visited) keeps a tile that two intervals share from\n"
            " * being visited twice.  Tiles past a range's ends are never loaded. */\n"
            "DEV void band_plan_build(band_plan &bp, const int *row, int m0, int n)\n"
            "{\n"
            "    const int count = min(row[0], MAX_INTERVALS);\n"
            "    bp.count = count;\n"
            "    for (int k = 0; k < MAX_INTERVALS; ++k) {\n"
            "        bp.lo[k] = k < count ? row[1 + 2 * k] : 0;\n"
            "        bp.hi[k] = k < count ? row[2 + 2 * k] : 0;\n"
            "    }\n"
            "    const int m_last = min(m0 + BM, n) - 1;\n"
            "    int next = 0, runs = 0, total = 0;\n"
            "    for (int k = count - 1; k >= 0; --k) {\n"
            "        const int j_lo = max(m0 - (bp.hi[k] - 1), 0);\n"
            "        const int j_hi = min(m_last - bp.lo[k], n - 1);\n"
            "        if (j_lo > j_hi) continue;\n"
            "        const int t_end = j_hi / BN, t_first = max(j_lo / BN, next);\n"
            "        if (t_first <= t_end) {\n"
            "            bp.run_first[runs] = t_first;\n"
            "            bp.run_len[runs] = t_end - t_first + 1;\n"
            "            total += t_end - t_first + 1;\n"
            "            ++runs;\n"
            "        }\n"
            "        next = max(next, t_end + 1);\n"
            "    }\n"
            "    for (int r = runs; r < MAX_INTERVALS; ++r) { bp.run_first[r] = 0; bp.run_len[r] = 0; }\n"
            "    bp.total = total;\n"
            "}\n\n"
            "/* The it-th KV tile of the plan, 0 <= it < total. */\n"
            "DEV int band_tile_at(const band_plan &bp, int it)\n"
            "{\n"
            "    int r = 0;\n"
            "    while (it >= bp.run_len[r]) { it -= bp.run_len[r]; ++r; }\n"
            "    return bp.run_first[r] + it;\n"
            "}\n\n"
            "/* How query rows [r_lo, r_hi] (all < n) meet KV tile [n0, n0 + BN): their distances\n"
            " * fill [r_lo - j_hi, r_hi - n0] (j_hi: the tile's last key < n), every value between.\n"
            " *   TILE_SKIP     no interval meets that range: nothing is allowed;\n"
            " *   TILE_FULL     one interval holds all of it and no key is past n: no mask needed;\n"
            " *   TILE_PARTIAL  otherwise: the per-element mask decides.\n"
            " * A tile with keys past n (n0 + BN > n) is never FULL: its zero-filled keys score 0\n"
            " * and, unmasked, would add exp(0 - m) to the row sums. */\n"
            "DEV int band_tile_kind(const band_plan &bp, int r_lo, int r_hi, int n0, int n)\n"
            "{\n"
            "    const int j_hi = min(n0 + BN, n) - 1;\n"
            "    const int d_lo = r_lo - j_hi, d_hi = r_hi - n0;\n"
            "    bool any = false, full = false;\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < MAX_INTERVALS; ++k) {\n"
            "        const bool used = k < bp.count;\n"
            "        any |= used & (d_lo < bp.hi[k]) & (d_hi >= bp.lo[k]);\n"
            "        full |= used & (bp.lo[k] <= d_lo) & (d_hi < bp.hi[k]);\n"
            "    }\n"
            "    if (!any) return TILE_SKIP;\n"
            "    return full && n0 + BN <= n ? TILE_FULL : TILE_PARTIAL;\n"
            "}\n\n");
    if (cfg->pattern == SP_DENSE)
        sb_puts(out,
                "/* Is distance d allowed?  Dense causal: its one interval is [0, n), and keys j >= n\n"
                " * are masked separately, so d >= 0 decides. */\n"
                "DEV bool band_allows(const int (&lo)[MAX_INTERVALS], const int (&hi)[MAX_INTERVALS], int d) { return d >= 0; }\n\n");
    else
        sb_puts(out,
                "/* Is distance d allowed?  lo, hi: the plan's intervals copied to registers (the\n"
                " * caller tests many d); unused slots are [0, 0) and allow nothing.  Bitwise, not\n"
                " * short-circuit: predicates and selects, no branches. */\n"
                "DEV bool band_allows(const int (&lo)[MAX_INTERVALS], const int (&hi)[MAX_INTERVALS], int d)\n"
                "{\n"
                "    bool a = false;\n"
                "#pragma unroll\n"
                "    for (int k = 0; k < MAX_INTERVALS; ++k) a |= (lo[k] <= d) & (d < hi[k]);\n"
                "    return a;\n"
                "}\n\n");
}
