/* The backward kernels (FlashAttention-2 technique on mma.sync), one emitter
 * per part, assembled by emit_bwd_kernels.  What they compute, with
 * s = q.k the raw score, c = scale * log2(e), LSE from the forward:
 *
 *     P    = exp2(s c - LSE log2 e)          (recomputed, masked to the bands)
 *     dV  += P^T dO
 *     dP   = dO V^T
 *     dS   = P * (dP - delta),  delta = rowsum(dO * O)
 *     dK  += scale * dS^T Q
 *     dQ  += scale * dS K
 *
 * main: one block per (KV tile of BN keys, kv head, batch).  Warp w owns
 * keys 16w..16w+15 of the tile for everything, so it computes S^T (keys x
 * queries) rather than S: the accumulator of P^T is then the A operand of
 * P^T dO straight from registers (as the forward's P is for P V), dK and
 * dV stay in registers for the whole block, and the only shared-memory
 * round trip is dS^T for dQ.  The block loops over the GROUP query heads of
 * its kv head (so dK, dV sum over the group in registers, in a fixed order)
 * and, per head, over the query tiles whose bands reach its keys: the
 * transpose of the forward's tile iteration (bands_q_tiles).  dQ goes to an
 * fp32 accumulator by atomic adds; convert scales and rounds it.
 * dq (deterministic mode): one block per query tile, the forward's
 * iteration; it recomputes S, P, dP, dS and keeps dQ in registers, so
 * main_det can leave dQ out and no sum depends on timing. */
#include "codegen/emit_bwd.h"
#include "codegen/emit_bwd_wgmma.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codegen/emit.h"
#include "codegen/kcfg_bwd.h"
#include "abi/kparams_bwd.h"

/* ---- configuration and parameters -------------------------------------- */

/* One line of the enum: the text, then its comment (if any) in an aligned column. */
static void const_line(strbuf *out, const char *comment, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void const_line(strbuf *out, const char *comment, const char *fmt, ...)
{
    char text[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (comment) sb_printf(out, "    %-47s /* %s */\n", text, comment);
    else sb_printf(out, "    %s\n", text);
}

static void emit_bwd_constants(strbuf *out, const sp_kcfg *cfg)
{
    /* Not emit_constants: its static_asserts are the forward's (BM = 16
     * warps, the forward's shared memory).  An enum rather than constexpr
     * variables (NVRTC's -default-device would make those global memory).
     * The names the prelude and band helpers use (HEAD_DIM, CHUNKS,
     * ROW_BYTES, BM, BN, MAX_INTERVALS) mean the same here. */
    sb_puts(out, "/* ==== Configuration: what these kernels are specialized to ==== */\nenum : int {\n");
    const_line(out, NULL, "HEAD_DIM = %d,", cfg->head_dim);
    const_line(out, NULL, "HEADS = %d, KV_HEADS = %d,", cfg->heads, cfg->kv_heads);
    const_line(out, "query heads per kv head", "GROUP = HEADS / KV_HEADS,");
    const_line(out, NULL, "MAX_INTERVALS = %d,", cfg->max_intervals);
    const_line(out, "ints per band table row", "BAND_STRIDE = 1 + 2 * MAX_INTERVALS,");
    const_line(out, "query rows per query tile", "BM = %d,", cfg->bm);
    const_line(out, "keys per KV tile: 16 per warp of main", "BN = %d,", cfg->bn);
    const_line(out, "main and main_det", "WARPS = %d, THREADS = %d,", cfg->warps, kcfg_bwd_threads(cfg, BWD_MAIN));
    const_line(out, "Q/dO tiles in flight (main), K/V (dq)", "STAGES = %d,", cfg->stages);
    const_line(out, "16-byte chunks per row", "CHUNKS = HEAD_DIM * 2 / 16,");
    const_line(out, NULL, "ROW_BYTES = %d,", cfg->row_bytes);
    const_line(out, NULL, "Q_TILE_BYTES = BM * ROW_BYTES,");
    const_line(out, NULL, "KV_TILE_BYTES = BN * ROW_BYTES,");
    const_line(out, "a dS^T row: BM 16-bit values", "DS_ROW_BYTES = BM * 2,");
    const_line(out, "dS^T tiles of main (wgmma: this step's and the last)", "DS_BUFS = %d,", kcfg_bwd_ds_bufs(cfg));
    const_line(out, "queries per step of main (part of BM)", "Q_SUB = %d,", kcfg_bwd_q_sub(cfg));
    const_line(out, "keys per step of dq (part of BN)", "K_SUB = %d,", kcfg_bwd_k_sub(cfg));
    const_line(out, "dQ block of one warp pass in main", "DQ_ROWS = 32, DQ_COLS = 32,");
    const_line(out, NULL, "DQ_CGROUPS = HEAD_DIM / DQ_COLS,");
    const_line(out, "warp passes per query tile", "DQ_UNITS = (BM / DQ_ROWS) * DQ_CGROUPS,");
    const_line(out, "the dq kernel", "DQ_WARPS = BM / 16, DQ_THREADS = 32 * DQ_WARPS,");
    const_line(out, "pre and convert", "AUX_THREADS = %d, AUX_ROWS = AUX_THREADS / CHUNKS,", KCFG_BWD_AUX_THREADS);
    const_line(out, "delta / lse2 rows per head: a multiple", "ROW_PAD = %d,", KCFG_BWD_ROW_PAD);
    const_line(out, cfg->mma == SP_MMA_WGMMA ? "main's base is 1024-aligned (wgmma's swizzle)" : "main's base is 128-aligned",
               "MAIN_SLACK = %d,", cfg->mma == SP_MMA_WGMMA ? 1024 : 128);
    const_line(out, "dynamic shared memory of each kernel", "SMEM_MAIN = %d, SMEM_MAIN_DET = %d, SMEM_DQ = %d,",
               kcfg_bwd_smem(cfg, BWD_MAIN), kcfg_bwd_smem(cfg, BWD_MAIN_DET), kcfg_bwd_smem(cfg, BWD_DQ));
    sb_puts(out,
            "};\n"
            "#define LOG2E 1.44269504088896341f\n"
            "static_assert(SMEM_MAIN == MAIN_SLACK + 2 * KV_TILE_BYTES + 2 * STAGES * Q_TILE_BYTES + 2 * STAGES * BM * 4 + DS_BUFS * BN * DS_ROW_BYTES,\n"
            "              \"kcfg_bwd_smem disagrees\");\n"
            "static_assert(SMEM_MAIN_DET == SMEM_MAIN - DS_BUFS * BN * DS_ROW_BYTES, \"kcfg_bwd_smem disagrees\");\n"
            "static_assert(SMEM_DQ == 128 + 2 * Q_TILE_BYTES + STAGES * 2 * KV_TILE_BYTES, \"kcfg_bwd_smem disagrees\");\n"
            "static_assert(BN == 16 * WARPS && THREADS == 32 * WARPS && BM % 32 == 0 && ROW_PAD % BM == 0, \"bad tile\");\n"
            "static_assert(ROW_BYTES == HEAD_DIM * 2 && CHUNKS % 8 == 0 && 32 % CHUNKS == 0, \"rows are swizzled, not padded\");\n"
            "static_assert(STAGES >= 2 && BM % DQ_ROWS == 0 && HEAD_DIM % DQ_COLS == 0, \"bad config\");\n"
            "static_assert(BM % Q_SUB == 0 && Q_SUB % 16 == 0 && BN % K_SUB == 0 && K_SUB % 16 == 0, \"bad sub-tiles\");\n\n");
}

#define BWD_FIELD_ROW_(type, name, comment) { #type, #name, comment },
static const emit_field bwd_fields[] = { SP_BWD_KPARAMS_FIELDS(BWD_FIELD_ROW_) };
#undef BWD_FIELD_ROW_

static void emit_bwd_kparams(strbuf *out)
{
    emit_param_struct(out, "sp_bwd_kparams", "abi/kparams_bwd.h", bwd_fields,
                      sizeof bwd_fields / sizeof bwd_fields[0], sizeof(sp_bwd_kparams));
}

/* ---- helpers the prelude lacks ------------------------------------------- */

/* The loader of head_dim rows into a tile of layout `off` ("tile_off": the
 * prelude's, for mma.sync; "tile_off<ROWS>": wgmma's), named `name`. */
static void emit_bwd_load_rows(strbuf *out, const char *name, const char *off)
{
    sb_printf(out,
            "/* ==== Loads: global -> shared, asynchronous (%s layout) ====\n"
            " * ROWS rows, from row r0 on, of a [sequence, HEAD_DIM] matrix whose rows are `stride`\n"
            " * elements apart, into the swizzled tile at shared address `tile`, by NT threads: thread\n"
            " * tid copies chunks tid, tid + NT, ..., so consecutive threads copy consecutive 16-byte\n"
            " * chunks of a row and the reads coalesce.  Rows >= n are zero-filled; their source\n"
            " * address is clamped to row 0, which exists (n >= 1) and is not read. */\n"
            "template <int ROWS, int NT>\n"
            "DEV void %s(u32 tile, const elem_t *g, long long stride, int r0, int n, int tid)\n"
            "{\n"
            "    constexpr int TOTAL = ROWS * CHUNKS;\n"
            "#pragma unroll 1   /* rolled: unrolled, the compiler keeps every shared address in a register */\n"
            "    for (int i = 0; i < (TOTAL + NT - 1) / NT; ++i) {\n"
            "        const int c = tid + i * NT;\n"
            "        if (TOTAL %% NT == 0 || c < TOTAL) {\n"
            "            const int row = c / CHUNKS, chunk = c %% CHUNKS;\n"
            "            const bool valid = r0 + row < n;\n"
            "            const elem_t *src = g + (valid ? (long long)(r0 + row) * stride : 0ll) + chunk * 8;\n"
            "            cp_async_16(tile + %s(row, chunk), src, valid);\n"
            "        }\n"
            "    }\n"
            "}\n\n",
            off, name, off);
}

/* The writer of a warp's 16 accumulator rows through a staging tile of
 * layout `off` (as emit_bwd_load_rows), named `name`. */
static void emit_bwd_write_rows(strbuf *out, const char *name, const char *off)
{
    sb_printf(out,
            "/* A warp's 16 rows of fp32 accumulators (acc[db][e]: row g + 8 (e / 2), dim 8db + 2t + e %% 2)\n"
            " * times mul, as 16-bit, to rows row0.. of dst (rows `stride` elements apart; rows >= n are\n"
            " * not stored).  They go through the warp's own 16 rows of a shared tile (sW: the first;\n"
            " * the caller makes sure no one else reads them any more; layout %s), so that each lane\n"
            " * then stores whole 16-byte chunks, coalesced. */\n"
            "DEV void %s(const float (&acc)[HEAD_DIM / 8][4], float mul, u32 sW, elem_t *dst, long long stride,\n"
            "            int row0, int n, int lane)\n"
            "{\n"
            "    const int g = lane >> 2, t = lane & 3;\n"
            "#pragma unroll\n"
            "    for (int db = 0; db < HEAD_DIM / 8; ++db) {\n"
            "        st_shared_u32(sW + %s(g, db) + 4 * t, pack2(acc[db][0] * mul, acc[db][1] * mul));\n"
            "        st_shared_u32(sW + %s(g + 8, db) + 4 * t, pack2(acc[db][2] * mul, acc[db][3] * mul));\n"
            "    }\n"
            "    __syncwarp();\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < 16 * CHUNKS / 32; ++k) {\n"
            "        const int c16 = lane + 32 * k, row = c16 / CHUNKS, chunk = c16 %% CHUNKS;\n"
            "        if (row0 + row < n)\n"
            "            *(u32x4 *)(dst + (long long)(row0 + row) * stride + chunk * 8) = ld_shared_u32x4(sW + %s(row, chunk));\n"
            "    }\n"
            "}\n\n",
            off, name, off, off, off);
}


static void emit_bwd_helpers(strbuf *out, const sp_kcfg *cfg)
{
    sb_puts(out, "/* ==== Backward helpers ==== */\n\n");
    if (cfg->dtype == SP_BF16)
        sb_puts(out,
                "/* The two bfloat16 values of a register (lower index in the lower half) as floats:\n"
                " * a bfloat16 is the upper half of a float. */\n"
                "DEV void bwd_unpack2(u32 v, float &lo, float &hi)\n"
                "{\n"
                "    lo = __uint_as_float(v << 16);\n"
                "    hi = __uint_as_float(v & 0xffff0000u);\n"
                "}\n\n");
    else
        sb_puts(out,
                "/* The two float16 values of a register (lower index in the lower half) as floats. */\n"
                "DEV void bwd_unpack2(u32 v, float &lo, float &hi)\n"
                "{\n"
                "    asm(\"{\\n .reg .b16 l, h;\\n mov.b32 {l, h}, %2;\\n cvt.f32.f16 %0, l;\\n cvt.f32.f16 %1, h;\\n}\\n\"\n"
                "        : \"=f\"(lo), \"=f\"(hi) : \"r\"(v));\n"
                "}\n\n");
    sb_puts(out,
            "DEV float bwd_dot2(u32 a, u32 b)\n"
            "{\n"
            "    float a0, a1, b0, b1;\n"
            "    bwd_unpack2(a, a0, a1);\n"
            "    bwd_unpack2(b, b0, b1);\n"
            "    return a0 * b0 + a1 * b1;\n"
            "}\n\n"
            "DEV float bwd_pos_inf() { return __int_as_float(0x7f800000); }\n\n"
            "/* Two floats from shared memory (8-byte aligned). */\n"
            "DEV float2 bwd_lds_f2(u32 addr)\n"
            "{\n"
            "    float2 v;\n"
            "    asm volatile(\"ld.shared.v2.f32 {%0, %1}, [%2];\\n\" : \"=f\"(v.x), \"=f\"(v.y) : \"r\"(addr));\n"
            "    return v;\n"
            "}\n\n"
            "/* p[0] += x, p[1] += y in global memory, atomically (p 8-byte aligned).  A reduction\n"
            " * (no value returned) does not wait for the memory system.  Hopper adds the pair in one\n"
            " * vector reduction, earlier GPUs in two. */\n"
            "DEV void bwd_red_add2(float *p, float x, float y)\n"
            "{\n"
            "#if __CUDA_ARCH__ >= 900\n"
            "    asm volatile(\"red.global.add.v2.f32 [%0], {%1, %2};\\n\" :: \"l\"(p), \"f\"(x), \"f\"(y) : \"memory\");\n"
            "#else\n"
            "    atomicAdd(p, x);\n"
            "    atomicAdd(p + 1, y);\n"
            "#endif\n"
            "}\n\n");

    /* The dS^T staging tile: BN rows (keys) of BM 16-bit values (queries). */
    sb_puts(out,
            "/* The dS^T tile of main: BN rows (keys) of BM 16-bit values (queries), DS_ROW_BYTES\n"
            " * apart.  It is written as m16n8 accumulator pairs (one 32-bit word per lane: 8 rows x 4\n"
            " * words of one 16-byte chunk per instruction) and read by ldmatrix.trans (one chunk of\n"
            " * 8 consecutive rows per matrix), so chunks are XOR-swizzled like the head_dim tiles to\n"
            " * put those 8 rows in 8 different bank groups. */\n");
    if (cfg->bm >= 64)
        sb_puts(out, "DEV u32 bwd_ds_off(int row, int chunk) { return row * DS_ROW_BYTES + ((chunk ^ (row & 7)) << 4); }\n\n");
    else
        sb_puts(out,
                "/* BM = 32: 64-byte rows, two per 128-byte bank line: chunk c of row r at c ^ ((r / 2) % 4). */\n"
                "DEV u32 bwd_ds_off(int row, int chunk) { return row * DS_ROW_BYTES + ((chunk ^ ((row >> 1) & 3)) << 4); }\n\n");

    emit_bwd_load_rows(out, "bwd_load_rows", "tile_off");
    sb_puts(out,
            "/* ROWS consecutive floats (16-byte aligned, all readable: the scratch is padded to\n"
            " * ROW_PAD rows per head) into shared memory, plainly. */\n"
            "template <int ROWS, int NT>\n"
            "DEV void bwd_load_floats(u32 dst, const float *g, int tid)\n"
            "{\n"
            "    for (int c = tid; c < ROWS / 4; c += NT) cp_async_16(dst + 16 * c, g + 4 * c, true);\n"
            "}\n\n");

    sb_puts(out,
            "/* ==== Warp GEMMs on shared-memory tiles ====\n"
            " * Fragments as in mma_16816's comment; g = lane / 4, t = lane % 4.\n"
            " *\n"
            " * acc (16 x NROWS) = A B^T: A is the warp's 16 rows of a [row][HEAD_DIM] tile (sAw: its first\n"
            " * row, a multiple of 8 rows into the tile, so the swizzle of row l % 16 is the stored one),\n"
            " * B the first NROWS rows of another such tile.  acc[nb][e] is A row g + 8 (e / 2), B row\n"
            " * 8nb + 2t + e % 2.\n"
            " *   A, dims 16kc..16kc+15, one ldmatrix.x4: matrix 0 = rows 0-7 x dims +0-7 (a[0]), 1 = rows\n"
            " *   8-15 x +0-7 (a[1]), 2 = rows 0-7 x +8-15 (a[2]), 3 = rows 8-15 x +8-15 (a[3]); so lane l\n"
            " *   points at row l % 16, chunk 2kc + l / 16.\n"
            " *   B^T as the \"col\" operand: b0 = B^T[k = 2t..2t+1][n = g] = B[g][2t..2t+1], a pair within\n"
            " *   one B row: ldmatrix untransposed.  For B rows 16p..16p+15: matrix 0 = rows +0-7 x dims\n"
            " *   +0-7 (b0 of n-block 2p), 1 = rows +0-7 x +8-15 (b1 of 2p), 2 = rows +8-15 x +0-7 (b0 of\n"
            " *   2p+1), 3 = rows +8-15 x +8-15 (b1 of 2p+1); lane l points at row 16p + l % 8 + 8 (l / 16),\n"
            " *   chunk 2kc + (l / 8) % 2. */\n"
            "template <int NROWS>\n"
            "DEV void bwd_mma_abt(float (&acc)[NROWS / 8][4], u32 sAw, u32 sB, int lane)\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < NROWS / 8; ++nb) acc[nb][0] = acc[nb][1] = acc[nb][2] = acc[nb][3] = 0.f;\n"
            "#pragma unroll 1   /* rolled: fewer precomputed addresses, no spills */\n"
            "    for (int kc = 0; kc < HEAD_DIM / 16; ++kc) {\n"
            "        u32 a[4];\n"
            "        ldsm_x4(sAw + tile_off(lane & 15, 2 * kc + (lane >> 4)), a);\n"
            "#pragma unroll\n"
            "        for (int p = 0; p < NROWS / 16; ++p) {\n"
            "            u32 b[4];\n"
            "            ldsm_x4(sB + tile_off(16 * p + (lane & 7) + ((lane >> 4) << 3), 2 * kc + ((lane >> 3) & 1)), b);\n"
            "            mma_16816(acc[2 * p], a, b[0], b[1]);\n"
            "            mma_16816(acc[2 * p + 1], a, b[2], b[3]);\n"
            "        }\n"
            "    }\n"
            "}\n\n"
            "/* acc (16 x HEAD_DIM) += C B: C (16 x KROWS) is given as m16n8 accumulators (fp32, rounded\n"
            " * to 16 bits here), B is the first KROWS rows of a [row][HEAD_DIM] tile.  The accumulators\n"
            " * of n-blocks 2kc and 2kc+1, packed pairwise, are the A fragment of k-chunk kc: a[0] = row\n"
            " * g, k 2t..2t+1 = c[2kc][0..1]; a[1] = row g+8 = c[2kc][2..3]; a[2] = row g, k 2t+8.. =\n"
            " * c[2kc+1][0..1]; a[3] = c[2kc+1][2..3].  B wants two consecutive k (tile rows) of one\n"
            " * column per register, so it is read transposed: for rows 16kc.. and dims 16dp..16dp+15 one\n"
            " * ldmatrix.x4.trans reads matrix 0 = rows +0-7 x dims +0-7 (b0 of dim-block 2dp), 1 = rows\n"
            " * +8-15 x +0-7 (b1 of 2dp), 2 = rows +0-7 x +8-15 (b0 of 2dp+1), 3 = rows +8-15 x +8-15 (b1\n"
            " * of 2dp+1); lane l points at row 16kc + l % 16, chunk 2dp + l / 16.  acc[db][e] is row\n"
            " * g + 8 (e / 2), dim 8db + 2t + e % 2. */\n"
            "template <int KROWS>\n"
            "DEV void bwd_mma_cb(float (&acc)[HEAD_DIM / 8][4], const float (&c)[KROWS / 8][4], u32 sB, int lane)\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int kc = 0; kc < KROWS / 16; ++kc) {\n"
            "        const u32 a[4] = { pack2(c[2 * kc][0], c[2 * kc][1]), pack2(c[2 * kc][2], c[2 * kc][3]),\n"
            "                           pack2(c[2 * kc + 1][0], c[2 * kc + 1][1]), pack2(c[2 * kc + 1][2], c[2 * kc + 1][3]) };\n"
            "#pragma unroll\n"
            "        for (int dp = 0; dp < HEAD_DIM / 16; ++dp) {\n"
            "            u32 b[4];\n"
            "            ldsm_x4_trans(sB + tile_off(16 * kc + (lane & 15), 2 * dp + (lane >> 4)), b);\n"
            "            mma_16816(acc[2 * dp], a, b[0], b[1]);\n"
            "            mma_16816(acc[2 * dp + 1], a, b[2], b[3]);\n"
            "        }\n"
            "    }\n"
            "}\n\n");
    emit_bwd_write_rows(out, "bwd_write_rows", "tile_off");
}

/* ---- pre: delta, lse2, zeroed dQ accumulator ----------------------------- */

static void emit_bwd_pre(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_bwd_name(cfg, BWD_PRE, name, sizeof name);
    sb_printf(out,
              "/* ==== pre: what every later kernel reads per query row ====\n"
              " * Grid (seqlen_pad / AUX_ROWS, heads, batch), AUX_THREADS threads; CHUNKS consecutive\n"
              " * threads share a row, each with 8 of its values.  For every row i < seqlen_pad of head h:\n"
              " *   delta[i] = sum_d dO[i][d] O[i][d]   (fp32; 0 for rows >= n)\n"
              " *   lse2[i]  = LSE[i] log2(e)           (+inf for rows >= n and rows with LSE = -inf, which\n"
              " *                                         have no allowed key: exp2(x - inf) = 0 makes their\n"
              " *                                         P exactly 0 without a test, never NaN)\n"
              " * and, in atomic mode (dq_accum != 0), the dQ accumulator rows i < n are zeroed. */\n"
              "extern \"C\" __global__ void __launch_bounds__(AUX_THREADS) %s(const sp_bwd_kparams p)\n"
              "{\n",
              name);
    sb_puts(out,
            "    const int tid = threadIdx.x, chunk = tid % CHUNKS;\n"
            "    const int i = blockIdx.x * AUX_ROWS + tid / CHUNKS;\n"
            "    const int h = blockIdx.y, b = blockIdx.z, n = p.seqlen;\n"
            "    float sum = 0.f;\n"
            "    if (i < n) {\n"
            "        const u32x4 o = *(const u32x4 *)((const elem_t *)p.o + b * p.o_sb + h * p.o_sh + (long long)i * p.o_sn + chunk * 8);\n"
            "        const u32x4 d = *(const u32x4 *)((const elem_t *)p.dout + b * p.do_sb + h * p.do_sh + (long long)i * p.do_sn + chunk * 8);\n"
            "        sum = bwd_dot2(o.x, d.x) + bwd_dot2(o.y, d.y) + bwd_dot2(o.z, d.z) + bwd_dot2(o.w, d.w);\n"
            "    }\n"
            "    /* The row's CHUNKS threads are consecutive lanes of one warp: add up over them. */\n"
            "#pragma unroll\n"
            "    for (int off = CHUNKS / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);\n"
            "    if (chunk == 0) {\n"
            "        float l2 = bwd_pos_inf();\n"
            "        if (i < n) {\n"
            "            const float lse = ((const float *)p.lse)[b * p.lse_sb + h * p.lse_sh + i];\n"
            "            if (lse != neg_inf()) l2 = lse * LOG2E;\n"
            "        }\n"
            "        const long long w = b * p.ws_sb + h * p.ws_sh + i;\n"
            "        ((float *)p.delta)[w] = sum;\n"
            "        ((float *)p.lse2)[w] = l2;\n"
            "    }\n"
            "    if (p.dq_accum && i < n) {\n"
            "        float4 *a = (float4 *)((float *)p.dq_accum + b * p.dqa_sb + h * p.dqa_sh + (long long)i * p.dqa_sn + chunk * 8);\n"
            "        a[0] = make_float4(0.f, 0.f, 0.f, 0.f);\n"
            "        a[1] = make_float4(0.f, 0.f, 0.f, 0.f);\n"
            "    }\n"
            "}\n\n");
}

/* ---- main: per KV tile ------------------------------------------------------ */

static void emit_bwd_iteration(strbuf *out, const char *loader)
{
    sb_printf(out,
            "/* ==== main: the query tiles that reach a KV tile ====\n"
            " * The transpose of the forward's plan, mirroring bands_q_tiles() in codegen/bands.c line\n"
            " * for line, for the GROUP heads of the kv head in turn: interval [lo, hi) of a head reaches\n"
            " * rows i in [n0 + lo, n_last + hi - 1] (n_last: the tile's last key < n), clipped to n.\n"
            " * Ascending distance is ascending row, so the intervals go first to last, and `next` (the\n"
            " * first query tile this head has not visited) keeps a tile that two intervals share from\n"
            " * coming twice.  Every tile inside a range has an allowed pair, so none is SKIP.  Each\n"
            " * thread steps its own copy of the cursor (all copies agree: the inputs are the same for\n"
            " * the whole block), so every thread knows which rows to load without a barrier. */\n"
            "struct bwd_cursor {\n"
            "    int r;          /* query head within the kv group; GROUP when done */\n"
            "    int k;          /* interval of head r */\n"
            "    int t, t_end;   /* next query tile of interval k's range, and its last */\n"
            "    int next;       /* first query tile head r has not visited */\n"
            "};\n\n"
            "DEV void bwd_cursor_init(bwd_cursor &c) { c.r = 0; c.k = -1; c.t = 0; c.t_end = -1; c.next = 0; }\n\n"
            "/* The next (head r, query tile mt) that reaches keys [n0, n0 + BN); false when none is\n"
            " * left.  rows: the band table rows of the group's heads. */\n"
            "DEV bool bwd_cursor_next(bwd_cursor &c, const int *rows, int n0, int n, int &r, int &mt)\n"
            "{\n"
            "    const int n_last = min(n0 + BN, n) - 1;\n"
            "    for (;;) {\n"
            "        if (c.t <= c.t_end) {\n"
            "            r = c.r;\n"
            "            mt = c.t++;\n"
            "            return true;\n"
            "        }\n"
            "        c.next = max(c.next, c.t_end + 1);   /* interval k is done (t_end = -1: it was empty) */\n"
            "        ++c.k;\n"
            "        while (c.r < GROUP && c.k >= min(rows[c.r * BAND_STRIDE], MAX_INTERVALS)) {\n"
            "            ++c.r;                          /* head r is done: the next one starts afresh */\n"
            "            c.k = 0;\n"
            "            c.next = 0;\n"
            "        }\n"
            "        if (c.r >= GROUP) return false;\n"
            "        const int *row = rows + c.r * BAND_STRIDE;\n"
            "        const int i_lo = n0 + row[1 + 2 * c.k];\n"
            "        const int i_hi = min(n_last + row[2 + 2 * c.k] - 1, n - 1);\n"
            "        c.t_end = i_lo <= i_hi ? i_hi / BM : -1;\n"
            "        c.t = max(i_lo / BM, c.next);\n"
            "    }\n"
            "}\n\n"
            "/* A stage of main: the query tile whose Q, dO, lse2 and delta rows it holds, and that\n"
            " * head's intervals (unused slots [0, 0)).  Written by the threads that issue the loads,\n"
            " * read by everyone after the barrier that also makes the loads visible. */\n"
            "struct bwd_slot {\n"
            "    int mt;                         /* query tile: rows mt * BM .. */\n"
            "    int r;                          /* query head within the kv group */\n"
            "    int count;                      /* intervals of that head */\n"
            "    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];\n"
            "};\n\n"
            "/* How rows [i0, i0 + ni) meet keys [j0, j0 + nj), both clipped to n (codegen/bands.c:\n"
            " * bands_tile_kind): their distances fill [i0 - j_last, i_last - j0], every value between.\n"
            " *   TILE_SKIP     nothing allowed (or no row or no key below n);\n"
            " *   TILE_FULL     one interval holds the whole range and no row or key reaches n;\n"
            " *   TILE_PARTIAL  otherwise: the mask decides per element.\n"
            " * A tile with keys past n is never FULL: their zero-filled keys score 0 and would get a\n"
            " * nonzero P.  Rows past n would be harmless (their lse2 is +inf) but are PARTIAL too. */\n"
            "DEV int bwd_tile_kind(const bwd_slot &s, int i0, int ni, int j0, int nj, int n)\n"
            "{\n"
            "    const int i_last = min(i0 + ni, n) - 1, j_last = min(j0 + nj, n) - 1;\n"
            "    if (i_last < i0 || j_last < j0) return TILE_SKIP;\n"
            "    const int d_lo = i0 - j_last, d_hi = i_last - j0;\n"
            "    bool any = false, full = false;\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < MAX_INTERVALS; ++k) {\n"
            "        const bool used = k < s.count;\n"
            "        any = any || (used && d_lo < s.hi[k] && d_hi >= s.lo[k]);\n"
            "        full = full || (used && s.lo[k] <= d_lo && d_hi < s.hi[k]);\n"
            "    }\n"
            "    if (!any) return TILE_SKIP;\n"
            "    return full && i0 + ni <= n && j0 + nj <= n ? TILE_FULL : TILE_PARTIAL;\n"
            "}\n\n"
            "/* Start the loads of query tile mt of head kvh * GROUP + r into one stage (Q and dO tiles,\n"
            " * lse2 and delta rows) and fill its slot. */\n"
            "DEV void bwd_issue(const sp_bwd_kparams &p, bwd_slot &slot, u32 sQs, u32 sdOs, u32 sLs, u32 sDs, const int *rows,\n"
            "                   int b, int kvh, int r, int mt, int n, int tid)\n"
            "{\n"
            "    const int h = kvh * GROUP + r, m0 = mt * BM;\n"
            "    %s<BM, THREADS>(sQs, (const elem_t *)p.q + b * p.q_sb + h * p.q_sh, p.q_sn, m0, n, tid);\n"
            "    %s<BM, THREADS>(sdOs, (const elem_t *)p.dout + b * p.do_sb + h * p.do_sh, p.do_sn, m0, n, tid);\n"
            "    const long long w = b * p.ws_sb + h * p.ws_sh + m0;\n"
            "    bwd_load_floats<BM, THREADS>(sLs, (const float *)p.lse2 + w, tid);\n"
            "    bwd_load_floats<BM, THREADS>(sDs, (const float *)p.delta + w, tid);\n"
            "    const int *row = rows + r * BAND_STRIDE;\n"
            "    if (tid == 0) {\n"
            "        slot.mt = mt;\n"
            "        slot.r = r;\n"
            "        slot.count = min(row[0], MAX_INTERVALS);\n"
            "    }\n"
            "    if (tid < MAX_INTERVALS) {\n"
            "        slot.lo[tid] = row[1 + 2 * tid];\n"
            "        slot.hi[tid] = row[2 + 2 * tid];\n"
            "    }\n"
            "}\n\n"
            "/* The cursor's next query tile -> stage st (sQ, sdO, sL, sD: stage 0's tiles and rows) and its\n"
            " * slot, as one commit group (an empty one when no tile is left, so that wait counts stay\n"
            " * fixed); 1 if a tile was issued. */\n"
            "DEV int bwd_prefetch(const sp_bwd_kparams &p, bwd_cursor &cur, bwd_slot &slot, int st, u32 sQ, u32 sdO, u32 sL,\n"
            "                     u32 sD, const int *rows, int b, int kvh, int n0, int n, int tid)\n"
            "{\n"
            "    int r, mt;\n"
            "    const bool any = bwd_cursor_next(cur, rows, n0, n, r, mt);\n"
            "    if (any)\n"
            "        bwd_issue(p, slot, sQ + st * Q_TILE_BYTES, sdO + st * Q_TILE_BYTES, sL + st * BM * 4, sD + st * BM * 4, rows,\n"
            "                  b, kvh, r, mt, n, tid);\n"
            "    cp_async_commit();\n"
            "    return any ? 1 : 0;\n"
            "}\n\n",
              loader, loader);
}

static void emit_bwd_main_parts(strbuf *out)
{
    sb_puts(out,
            "/* ==== main: the parts of one (query sub-tile, KV tile) step, per warp ====\n"
            " * A sub-tile is QW = Q_SUB queries of the query tile (all BM of them, or a part when the\n"
            " * registers would not hold S^T and dP^T of the whole tile next to dK and dV).  The warp's\n"
            " * accumulators are keys x queries: acc[nb][e] is key j0 + 8 (e / 2) (j0 = the warp's first\n"
            " * key + g) and query i0 + 8nb + 2t + e % 2 (i0 = the sub-tile's first row).\n"
            " *\n"
            " * S^T -> P^T = exp(scale s - LSE) = exp2(s c - lse2), c = scale log2(e), lse2 the stage's row\n"
            " * (per query: element e reads lse2[8nb + 2t + e % 2]; lanes of equal t read the same word).\n"
            " * lse2 = +inf gives exp2(-inf) = 0: rows past n and rows without an allowed key get P = 0. */\n"
            "template <int QW>\n"
            "DEV void bwd_probs_t(float (&s)[QW / 8][4], u32 sL, float c, int lane)\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < QW / 8; ++nb) {\n"
            "        const float2 l = bwd_lds_f2(sL + 4 * (8 * nb + 2 * (lane & 3)));\n"
            "        s[nb][0] = exp2_approx(fmaf(s[nb][0], c, -l.x));\n"
            "        s[nb][1] = exp2_approx(fmaf(s[nb][1], c, -l.y));\n"
            "        s[nb][2] = exp2_approx(fmaf(s[nb][2], c, -l.x));\n"
            "        s[nb][3] = exp2_approx(fmaf(s[nb][3], c, -l.y));\n"
            "    }\n"
            "}\n\n"
            "/* P^T masked, on PARTIAL tiles: an entry stays if its distance i - j is allowed and its key\n"
            " * exists (j < n: keys past n were zero-filled); the others become 0.  Rows past n need no\n"
            " * test (P is 0 there already). */\n"
            "template <int QW>\n"
            "DEV void bwd_mask_t(float (&s)[QW / 8][4], const bwd_slot &sl, int i0, int j0, int n, int lane)\n"
            "{\n"
            "    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < MAX_INTERVALS; ++k) { lo[k] = sl.lo[k]; hi[k] = sl.hi[k]; }\n"
            "    const bool key0 = j0 < n, key1 = j0 + 8 < n;\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < QW / 8; ++nb)\n"
            "#pragma unroll\n"
            "        for (int e = 0; e < 2; ++e) {\n"
            "            const int i = i0 + 8 * nb + 2 * (lane & 3) + e;\n"
            "            s[nb][e] = key0 && band_allows(lo, hi, i - j0) ? s[nb][e] : 0.f;\n"
            "            s[nb][2 + e] = key1 && band_allows(lo, hi, i - j0 - 8) ? s[nb][2 + e] : 0.f;\n"
            "        }\n"
            "}\n\n"
            "/* dP^T -> dS^T = P^T (dP^T - delta), delta per query from the stage's row (as lse2). */\n"
            "template <int QW>\n"
            "DEV void bwd_dscores_t(float (&dp)[QW / 8][4], const float (&p)[QW / 8][4], u32 sD, int lane)\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < QW / 8; ++nb) {\n"
            "        const float2 d = bwd_lds_f2(sD + 4 * (8 * nb + 2 * (lane & 3)));\n"
            "        dp[nb][0] = p[nb][0] * (dp[nb][0] - d.x);\n"
            "        dp[nb][1] = p[nb][1] * (dp[nb][1] - d.y);\n"
            "        dp[nb][2] = p[nb][2] * (dp[nb][2] - d.x);\n"
            "        dp[nb][3] = p[nb][3] * (dp[nb][3] - d.y);\n"
            "    }\n"
            "}\n\n"
            "/* dS^T of the warp's 16 keys and QW queries from query c0 * 8 of the tile on -> rows 16w.. of\n"
            " * the dS^T tile, 16-bit: lane l stores the query pair 8 (c0 + nb) + 2t.. (chunk c0 + nb, bytes\n"
            " * 4t..4t+3) of keys 16w + g and 16w + g + 8.  A warp whose keys meet nothing of those queries\n"
            " * stores zeros (bwd_zero_ds): dQ reads every row. */\n"
            "template <int QW>\n"
            "DEV void bwd_store_ds(u32 sdS, const float (&ds)[QW / 8][4], int c0, int warp, int lane)\n"
            "{\n"
            "    const int r = 16 * warp + (lane >> 2), t = lane & 3;\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < QW / 8; ++nb) {\n"
            "        st_shared_u32(sdS + bwd_ds_off(r, c0 + nb) + 4 * t, pack2(ds[nb][0], ds[nb][1]));\n"
            "        st_shared_u32(sdS + bwd_ds_off(r + 8, c0 + nb) + 4 * t, pack2(ds[nb][2], ds[nb][3]));\n"
            "    }\n"
            "}\n\n"
            "template <int QW>\n"
            "DEV void bwd_zero_ds(u32 sdS, int c0, int warp, int lane)\n"
            "{\n"
            "    const int r = 16 * warp + (lane >> 2), t = lane & 3;\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < QW / 8; ++nb) {\n"
            "        st_shared_u32(sdS + bwd_ds_off(r, c0 + nb) + 4 * t, 0u);\n"
            "        st_shared_u32(sdS + bwd_ds_off(r + 8, c0 + nb) + 4 * t, 0u);\n"
            "    }\n"
            "}\n\n");
}

/* dQ of main on mma.sync (the wgmma kernel has its own, issue_dq). */
static void emit_bwd_dq_atomic(strbuf *out)
{
    sb_puts(out,
            "/* dQ (unscaled) += dS K for the query tile, by atomic adds into the fp32 accumulator (dqa:\n"
            " * head h's row 0; rows dqa_sn floats apart).  The work is (BM / 32) row blocks x (HEAD_DIM /\n"
            " * 32) column blocks; warp w takes units w, w + WARPS, ...  A 32 x 32 unit is two m16 row\n"
            " * halves x four n8 column blocks: per 16 keys 2 A and 2 B fragments feed 8 mma, fewer\n"
            " * shared-memory reads per mma than a 16 x 64 unit.\n"
            " * A = dS (queries x keys) is stored transposed (rows are keys), so its fragment comes from\n"
            " * ldmatrix.x4.trans: for the 16 queries from 16rb and keys 16kc..16kc+15, a[0] = dS[g][2t..2t+1]\n"
            " * = dS^T rows 16kc+2t.. of column 16rb+g, from the matrix rows 16kc+0-7 x chunk 2rb; a[1]\n"
            " * (queries +8) rows +0-7 x chunk 2rb+1; a[2] (keys +8) rows +8-15 x chunk 2rb; a[3] rows\n"
            " * +8-15 x chunk 2rb+1.  So lane l points at row 16kc + 8 (l / 16) + l % 8, chunk 2rb + (l / 8) % 2.\n"
            " * B = K [key][dim], transposed as in bwd_mma_cb.  acc[h][db][e]: query m0 + 32 rp + 16h + g +\n"
            " * 8 (e / 2), dim 32 cg + 8db + 2t + e % 2; rows >= n are dropped. */\n"
            "DEV void bwd_dq_atomic(float *dqa, long long dqa_sn, u32 sdS, u32 sK, int m0, int n, int warp, int lane)\n"
            "{\n"
            "    const int g = lane >> 2, t = lane & 3;\n"
            "#pragma unroll 1\n"
            "    for (int u = warp; u < DQ_UNITS; u += WARPS) {\n"
            "        const int rp = u / DQ_CGROUPS, cg = u % DQ_CGROUPS;\n"
            "        float acc[2][DQ_COLS / 8][4];\n"
            "#pragma unroll\n"
            "        for (int h = 0; h < 2; ++h)\n"
            "#pragma unroll\n"
            "            for (int db = 0; db < DQ_COLS / 8; ++db) acc[h][db][0] = acc[h][db][1] = acc[h][db][2] = acc[h][db][3] = 0.f;\n"
            "#pragma unroll\n"
            "        for (int kc = 0; kc < BN / 16; ++kc) {\n"
            "            u32 a[2][4];\n"
            "#pragma unroll\n"
            "            for (int h = 0; h < 2; ++h)\n"
            "                ldsm_x4_trans(sdS + bwd_ds_off(16 * kc + 8 * (lane >> 4) + (lane & 7), 2 * (2 * rp + h) + ((lane >> 3) & 1)), a[h]);\n"
            "#pragma unroll\n"
            "            for (int dp = 0; dp < DQ_COLS / 16; ++dp) {\n"
            "                u32 b[4];\n"
            "                ldsm_x4_trans(sK + tile_off(16 * kc + (lane & 15), cg * (DQ_COLS / 8) + 2 * dp + (lane >> 4)), b);\n"
            "#pragma unroll\n"
            "                for (int h = 0; h < 2; ++h) {\n"
            "                    mma_16816(acc[h][2 * dp], a[h], b[0], b[1]);\n"
            "                    mma_16816(acc[h][2 * dp + 1], a[h], b[2], b[3]);\n"
            "                }\n"
            "            }\n"
            "        }\n"
            "#pragma unroll\n"
            "        for (int h = 0; h < 2; ++h) {\n"
            "            const int i = m0 + DQ_ROWS * rp + 16 * h + g;\n"
            "            float *row = dqa + (long long)i * dqa_sn + cg * DQ_COLS + 2 * t;\n"
            "#pragma unroll\n"
            "            for (int db = 0; db < DQ_COLS / 8; ++db) {\n"
            "                if (i < n) bwd_red_add2(row + 8 * db, acc[h][db][0], acc[h][db][1]);\n"
            "                if (i + 8 < n) bwd_red_add2(row + 8 * dqa_sn + 8 * db, acc[h][db][2], acc[h][db][3]);\n"
            "            }\n"
            "        }\n"
            "    }\n"
            "}\n\n");
}

void emit_bwd_main_prologue(strbuf *out)
{
    sb_puts(out,
            "template <bool WITH_DQ>\n"
            "DEV void bwd_main_body(const sp_bwd_kparams &p)\n"
            "{\n"
            "    extern __shared__ unsigned char smem[];\n"
            "    __shared__ bwd_slot slots[STAGES];\n\n"
            "    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;\n"
            "    const int n = p.seqlen;\n"
            "    const int n0 = blockIdx.x * BN;             /* this block's keys: [n0, n0 + BN) */\n"
            "    const int kvh = blockIdx.y, b = blockIdx.z;\n"
            "    const int key0 = n0 + 16 * warp;            /* this warp's first key */\n"
            "    const elem_t *k = (const elem_t *)p.k + b * p.k_sb + kvh * p.k_sh;   /* key j at k + j * p.k_sn */\n"
            "    const elem_t *v = (const elem_t *)p.v + b * p.v_sb + kvh * p.v_sh;\n"
            "    const int *rows = (const int *)p.bands + (p.head_offset + kvh * GROUP) * BAND_STRIDE;\n\n");
}

void emit_bwd_main_start(strbuf *out)
{
    sb_puts(out,
            "    /* 2. Prefetch the first STAGES - 1 query tiles, one commit group each (empty groups\n"
            "     * too, so that the wait counts below stay fixed). */\n"
            "    bwd_cursor cur;\n"
            "    bwd_cursor_init(cur);\n"
            "    int issued = 0;\n"
            "#pragma unroll 1\n"
            "    for (int st = 0; st < STAGES - 1; ++st)\n"
            "        issued += bwd_prefetch(p, cur, slots[st], st, sQ, sdO, sL, sD, rows, b, kvh, n0, n, tid);\n\n"
            "    float dk[HEAD_DIM / 8][4], dv[HEAD_DIM / 8][4];\n"
            "#pragma unroll\n"
            "    for (int db = 0; db < HEAD_DIM / 8; ++db)\n"
            "#pragma unroll\n"
            "        for (int e = 0; e < 4; ++e) dk[db][e] = dv[db][e] = 0.f;\n\n");
}

static void emit_bwd_main_body(strbuf *out)
{
    sb_puts(out,
            "/* ==== main: the kernel body (WITH_DQ: main; without: main_det) ====\n"
            " * One block: keys [n0, n0 + BN) of one (batch, kv head); warp w owns keys n0 + 16w.. and\n"
            " * keeps their dK and dV rows in registers (a lane: keys g and g + 8, HEAD_DIM / 4 dims\n"
            " * each, for both).  Shared memory, from a 128-aligned base:\n"
            " *   K tile, V tile                 BN rows each, resident\n"
            " *   Q tiles, dO tiles              STAGES x BM rows each (the pipeline)\n"
            " *   lse2 rows, delta rows          STAGES x BM floats each\n"
            " *   dS^T tile                      BN x BM 16-bit values (WITH_DQ only)\n"
            " * all head_dim rows swizzled by tile_off, the dS^T rows by bwd_ds_off.\n"
            " *\n"
            " *   load K, V; prefetch the first STAGES - 1 query tiles of the cursor\n"
            " *   for each query tile (every head of the group, every tile its bands bring here):\n"
            " *       wait for it; prefetch the one STAGES - 1 ahead into the freed stage\n"
            " *       per warp and sub-tile of Q_SUB queries: SKIP / FULL / PARTIAL for its 16 keys;\n"
            " *           S^T = K Q^T; P^T; mask if PARTIAL; dV += P^T dO\n"
            " *           dP^T = V dO^T; dS^T = P^T (dP^T - delta); dK += dS^T Q\n"
            " *       WITH_DQ: dS^T -> shared; barrier; dQ += dS K (atomics)\n"
            " *   write dK * scale and dV */\n");
    emit_bwd_main_prologue(out);
    sb_puts(out,
            "    const u32 sK = (smem_addr(smem) + 127u) & ~127u;\n"
            "    const u32 sV = sK + KV_TILE_BYTES;\n"
            "    const u32 sQ = sV + KV_TILE_BYTES;          /* stage st: + st * Q_TILE_BYTES */\n"
            "    const u32 sdO = sQ + STAGES * Q_TILE_BYTES;\n"
            "    const u32 sL = sdO + STAGES * Q_TILE_BYTES; /* stage st: + st * BM * 4 */\n"
            "    const u32 sD = sL + STAGES * BM * 4;\n"
            "    const u32 sdS = sD + STAGES * BM * 4;\n"
            "    const u32 sKw = sK + warp * 16 * ROW_BYTES, sVw = sV + warp * 16 * ROW_BYTES;\n\n"
            "    /* 1. K and V tiles -> shared memory (async: they land with the first stage's group). */\n"
            "    bwd_load_rows<BN, THREADS>(sK, k, p.k_sn, n0, n, tid);\n"
            "    bwd_load_rows<BN, THREADS>(sV, v, p.v_sn, n0, n, tid);\n\n");
    emit_bwd_main_start(out);
    sb_puts(out,
            "    /* 3. The query tiles, in cursor order. */\n"
            "    int stage = 0;\n"
            "    for (int it = 0; it < issued; ++it) {\n"
            "        /* Tile it has landed: this thread's copies (wait), everyone's (barrier).  The\n"
            "         * barrier also means every warp is done with step it - 1, whose stage (and slot,\n"
            "         * and the dS^T tile) the prefetch of tile it + STAGES - 1 now reuses. */\n"
            "        cp_async_wait<STAGES - 2>();\n"
            "        __syncthreads();\n"
            "        const int freed = stage == 0 ? STAGES - 1 : stage - 1;\n"
            "        issued += bwd_prefetch(p, cur, slots[freed], freed, sQ, sdO, sL, sD, rows, b, kvh, n0, n, tid);\n\n"
            "        const bwd_slot &sl = slots[stage];\n"
            "        const int m0 = sl.mt * BM;\n"
            "#pragma unroll 1\n"
            "        for (int qs = 0; qs < BM / Q_SUB; ++qs) {\n"
            "            const int i0 = m0 + qs * Q_SUB;\n"
            "            const u32 sQq = sQ + stage * Q_TILE_BYTES + qs * Q_SUB * ROW_BYTES;\n"
            "            const u32 sdOq = sdO + stage * Q_TILE_BYTES + qs * Q_SUB * ROW_BYTES;\n"
            "            const u32 sLq = sL + (stage * BM + qs * Q_SUB) * 4, sDq = sD + (stage * BM + qs * Q_SUB) * 4;\n"
            "            const int kind = bwd_tile_kind(sl, i0, Q_SUB, key0, 16, n);   /* warp-uniform */\n"
            "            if (kind != TILE_SKIP) {\n"
            "                float s[Q_SUB / 8][4];\n"
            "                bwd_mma_abt<Q_SUB>(s, sKw, sQq, lane);                        /* S^T = K Q^T */\n"
            "                bwd_probs_t<Q_SUB>(s, sLq, p.scale_log2, lane);               /* P^T */\n"
            "                if (kind == TILE_PARTIAL) bwd_mask_t<Q_SUB>(s, sl, i0, key0 + lane / 4, n, lane);\n"
            "                bwd_mma_cb<Q_SUB>(dv, s, sdOq, lane);                         /* dV += P^T dO */\n"
            "                float dp[Q_SUB / 8][4];\n"
            "                bwd_mma_abt<Q_SUB>(dp, sVw, sdOq, lane);                      /* dP^T = V dO^T */\n"
            "                bwd_dscores_t<Q_SUB>(dp, s, sDq, lane);                       /* dS^T */\n"
            "                bwd_mma_cb<Q_SUB>(dk, dp, sQq, lane);                         /* dK += dS^T Q */\n"
            "                if constexpr (WITH_DQ) bwd_store_ds<Q_SUB>(sdS, dp, qs * Q_SUB / 8, warp, lane);\n"
            "            } else if constexpr (WITH_DQ) {\n"
            "                bwd_zero_ds<Q_SUB>(sdS, qs * Q_SUB / 8, warp, lane);\n"
            "            }\n"
            "        }\n"
            "        if constexpr (WITH_DQ) {\n"
            "            __syncthreads();   /* the whole dS^T tile is in shared memory */\n"
            "            const int h = kvh * GROUP + sl.r;\n"
            "            bwd_dq_atomic((float *)p.dq_accum + b * p.dqa_sb + h * p.dqa_sh, p.dqa_sn, sdS, sK, m0, n, warp, lane);\n"
            "        }\n"
            "        stage = stage + 1 == STAGES ? 0 : stage + 1;\n"
            "    }\n\n"
            "    /* 4. dK (times the scale: dS is the gradient of the scaled scores) and dV, staged\n"
            "     * through the warp's own rows of the K and V tiles once nobody reads those any more\n"
            "     * (dQ reads all of K) and no copy into them is in flight. */\n"
            "    cp_async_wait<0>();\n"
            "    __syncthreads();\n"
            "    bwd_write_rows(dk, p.scale, sKw, (elem_t *)p.dk + b * p.dk_sb + kvh * p.dk_sh, p.dk_sn, key0, n, lane);\n"
            "    bwd_write_rows(dv, 1.f, sVw, (elem_t *)p.dv + b * p.dv_sb + kvh * p.dv_sh, p.dv_sn, key0, n, lane);\n"
            "}\n\n");
}

static void emit_bwd_main_kernels(strbuf *out, const sp_kcfg *cfg)
{
    char name[128], name_det[128];
    kcfg_bwd_name(cfg, BWD_MAIN, name, sizeof name);
    kcfg_bwd_name(cfg, BWD_MAIN_DET, name_det, sizeof name_det);
    sb_printf(out,
              "/* main: grid (ceil(n / BN), kv heads, batch), THREADS threads, SMEM_MAIN bytes of dynamic\n"
              " * shared memory; dQ by atomic adds into dq_accum (zeroed by pre). */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const sp_bwd_kparams p)\n"
              "{\n"
              "    bwd_main_body<true>(p);\n"
              "}\n\n"
              "/* main_det: the same without dQ (the dq kernel computes it), SMEM_MAIN_DET bytes. */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const sp_bwd_kparams p)\n"
              "{\n"
              "    bwd_main_body<false>(p);\n"
              "}\n\n",
              name, name_det);
}

/* ---- dq: per query tile (deterministic mode) -------------------------------- */

static void emit_bwd_dq(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_bwd_name(cfg, BWD_DQ, name, sizeof name);
    sb_puts(out,
            "/* ==== dq: the parts, per warp ====\n"
            " * Here the accumulators are queries x keys, as in the forward, for a sub-tile of KW = K_SUB\n"
            " * keys of the KV tile: s[nb][e] is row i0 + 8 (e / 2) (i0 = the warp's first row + g) and key\n"
            " * n0 + 8nb + 2t + e % 2 (n0 = the sub-tile's first key).  l2[r], dl[r]: lse2 and delta of the\n"
            " * lane's rows i0 and i0 + 8. */\n"
            "template <int KW>\n"
            "DEV void bwd_probs(float (&s)[KW / 8][4], const float (&l2)[2], float c)\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < KW / 8; ++nb)\n"
            "#pragma unroll\n"
            "        for (int e = 0; e < 4; ++e) s[nb][e] = exp2_approx(fmaf(s[nb][e], c, -l2[e >> 1]));\n"
            "}\n\n"
            "/* As bwd_mask_t, for the forward's orientation and band plan. */\n"
            "template <int KW>\n"
            "DEV void bwd_mask(float (&s)[KW / 8][4], const band_plan &bp, int i0, int n0, int n, int lane)\n"
            "{\n"
            "    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < MAX_INTERVALS; ++k) { lo[k] = bp.lo[k]; hi[k] = bp.hi[k]; }\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < KW / 8; ++nb)\n"
            "#pragma unroll\n"
            "        for (int e = 0; e < 2; ++e) {\n"
            "            const int j = n0 + 8 * nb + 2 * (lane & 3) + e;\n"
            "            const bool key = j < n;\n"
            "            s[nb][e] = key && band_allows(lo, hi, i0 - j) ? s[nb][e] : 0.f;\n"
            "            s[nb][2 + e] = key && band_allows(lo, hi, i0 + 8 - j) ? s[nb][2 + e] : 0.f;\n"
            "        }\n"
            "}\n\n"
            "template <int KW>\n"
            "DEV void bwd_dscores(float (&dp)[KW / 8][4], const float (&p)[KW / 8][4], const float (&dl)[2])\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < KW / 8; ++nb)\n"
            "#pragma unroll\n"
            "        for (int e = 0; e < 4; ++e) dp[nb][e] = p[nb][e] * (dp[nb][e] - dl[e >> 1]);\n"
            "}\n\n");
    sb_printf(out,
              "/* ==== dq: the kernel (deterministic mode) ====\n"
              " * Grid (ceil(n / BM), heads, batch), DQ_THREADS threads, SMEM_DQ bytes of dynamic shared\n"
              " * memory: the Q and dO tiles, then STAGES stages of (K tile, V tile).  Warp w owns query\n"
              " * rows 16w.. and keeps their dQ in registers; the KV tiles are the forward's (the band\n"
              " * plan), in ascending key order, so every sum has a fixed order.\n"
              " *   for each KV tile: S = Q K^T; P; mask if PARTIAL; dP = dO V^T; dS = P (dP - delta);\n"
              " *   dQ += dS K.   Then dq = dQ * scale, 16-bit. */\n"
              "extern \"C\" __global__ void __launch_bounds__(DQ_THREADS, 1) %s(const sp_bwd_kparams p)\n"
              "{\n",
              name);
    sb_puts(out,
            "    extern __shared__ unsigned char smem[];\n"
            "    __shared__ band_plan plan;\n\n"
            "    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane >> 2;\n"
            "    const int n = p.seqlen;\n"
            "    const int m0 = (gridDim.x - 1 - blockIdx.x) * BM;   /* last query tile first: the long ones start early */\n"
            "    const int h = blockIdx.y, b = blockIdx.z, kvh = h / GROUP;\n"
            "    const elem_t *q = (const elem_t *)p.q + b * p.q_sb + h * p.q_sh;\n"
            "    const elem_t *dout = (const elem_t *)p.dout + b * p.do_sb + h * p.do_sh;\n"
            "    const elem_t *k = (const elem_t *)p.k + b * p.k_sb + kvh * p.k_sh;\n"
            "    const elem_t *v = (const elem_t *)p.v + b * p.v_sb + kvh * p.v_sh;\n\n"
            "    const u32 sQ = (smem_addr(smem) + 127u) & ~127u;\n"
            "    const u32 sdO = sQ + Q_TILE_BYTES;\n"
            "    const u32 sKV = sdO + Q_TILE_BYTES;                  /* stage st: K at + st * 2 * KV_TILE_BYTES, then V */\n"
            "    const u32 sQw = sQ + warp * 16 * ROW_BYTES, sdOw = sdO + warp * 16 * ROW_BYTES;\n\n"
            "    /* 1. Q and dO tiles (one group), the band plan of this query tile. */\n"
            "    bwd_load_rows<BM, DQ_THREADS>(sQ, q, p.q_sn, m0, n, tid);\n"
            "    bwd_load_rows<BM, DQ_THREADS>(sdO, dout, p.do_sn, m0, n, tid);\n"
            "    cp_async_commit();\n"
            "    if (tid == 0) band_plan_build(plan, (const int *)p.bands + (p.head_offset + h) * BAND_STRIDE, m0, n);\n"
            "    __syncthreads();\n"
            "    const int ntiles = plan.total;\n\n"
            "    /* 2. Prefetch the first STAGES - 1 KV tiles, one group each (empty ones too). */\n"
            "#pragma unroll\n"
            "    for (int st = 0; st < STAGES - 1; ++st) {\n"
            "        if (st < ntiles) {\n"
            "            const int n0 = band_tile_at(plan, st) * BN;\n"
            "            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES, k, p.k_sn, n0, n, tid);\n"
            "            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES + KV_TILE_BYTES, v, p.v_sn, n0, n, tid);\n"
            "        }\n"
            "        cp_async_commit();\n"
            "    }\n\n"
            "    /* 3. This lane's rows: lse2 and delta (the scratch is padded: every row of the tile\n"
            "     * exists; rows >= n hold +inf and 0). */\n"
            "    const int row0 = m0 + 16 * warp;\n"
            "    const int row_last = min(row0 + 15, n - 1);   /* rows >= n are computed but never stored */\n"
            "    const long long w = b * p.ws_sb + h * p.ws_sh + row0 + g;\n"
            "    const float l2[2] = { ((const float *)p.lse2)[w], ((const float *)p.lse2)[w + 8] };\n"
            "    const float dl[2] = { ((const float *)p.delta)[w], ((const float *)p.delta)[w + 8] };\n"
            "    float acc[HEAD_DIM / 8][4];\n"
            "#pragma unroll\n"
            "    for (int db = 0; db < HEAD_DIM / 8; ++db) acc[db][0] = acc[db][1] = acc[db][2] = acc[db][3] = 0.f;\n\n"
            "    /* 4. The KV tiles of the head's bands, ascending.  The groups: Q/dO first, then one\n"
            "     * per KV tile, so waiting for all but STAGES - 2 covers Q/dO and tile it. */\n"
            "    int stage = 0;\n"
            "    for (int it = 0; it < ntiles; ++it) {\n"
            "        cp_async_wait<STAGES - 2>();\n"
            "        __syncthreads();\n"
            "        const int ahead = it + STAGES - 1;\n"
            "        if (ahead < ntiles) {\n"
            "            const int st = stage == 0 ? STAGES - 1 : stage - 1;\n"
            "            const int n0 = band_tile_at(plan, ahead) * BN;\n"
            "            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES, k, p.k_sn, n0, n, tid);\n"
            "            bwd_load_rows<BN, DQ_THREADS>(sKV + st * 2 * KV_TILE_BYTES + KV_TILE_BYTES, v, p.v_sn, n0, n, tid);\n"
            "        }\n"
            "        cp_async_commit();\n\n"
            "        const int n0 = band_tile_at(plan, it) * BN;\n"
            "        const int kind = row0 < n ? band_tile_kind(plan, row0, row_last, n0, n) : TILE_SKIP;\n"
            "        if (kind != TILE_SKIP) {   /* warp-uniform */\n"
            "            const u32 sK = sKV + stage * 2 * KV_TILE_BYTES, sV = sK + KV_TILE_BYTES;\n"
            "#pragma unroll 1\n"
            "            for (int ks = 0; ks < BN / K_SUB; ++ks) {   /* the tile's kind holds for its parts */\n"
            "                const u32 sKk = sK + ks * K_SUB * ROW_BYTES, sVk = sV + ks * K_SUB * ROW_BYTES;\n"
            "                float s[K_SUB / 8][4];\n"
            "                bwd_mma_abt<K_SUB>(s, sQw, sKk, lane);             /* S = Q K^T */\n"
            "                bwd_probs<K_SUB>(s, l2, p.scale_log2);              /* P */\n"
            "                if (kind == TILE_PARTIAL) bwd_mask<K_SUB>(s, plan, row0 + g, n0 + ks * K_SUB, n, lane);\n"
            "                float dp[K_SUB / 8][4];\n"
            "                bwd_mma_abt<K_SUB>(dp, sdOw, sVk, lane);           /* dP = dO V^T */\n"
            "                bwd_dscores<K_SUB>(dp, s, dl);                      /* dS = P (dP - delta) */\n"
            "                bwd_mma_cb<K_SUB>(acc, dp, sKk, lane);              /* dQ += dS K */\n"
            "            }\n"
            "        }\n"
            "        stage = stage + 1 == STAGES ? 0 : stage + 1;\n"
            "    }\n\n"
            "    /* 5. dq = dQ * scale, 16-bit, through the warp's own Q rows.  The warp's rows\n"
            "     * were copied by threads of every warp (bwd_load_rows spreads a tile over the\n"
            "     * block), so a wait for this thread's copies is not enough: with ntiles == 0\n"
            "     * no wait in the loop covered Q's group, and Q's bytes could land after dq's\n"
            "     * and be stored as dq.  Wait, then a block barrier (issue 13). */\n"
            "    cp_async_wait<0>();\n"
            "    __syncthreads();\n"
            "    bwd_write_rows(acc, p.scale, sQw, (elem_t *)p.dq + b * p.dq_sb + h * p.dq_sh, p.dq_sn, row0, n, lane);\n"
            "}\n\n");
}

/* ---- convert: fp32 accumulator -> 16-bit dq ------------------------------- */

static void emit_bwd_convert(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_bwd_name(cfg, BWD_CONVERT, name, sizeof name);
    sb_printf(out,
              "/* ==== convert (atomic mode): dq = dq_accum * scale, 16-bit ====\n"
              " * Grid (ceil(n / AUX_ROWS), heads, batch), AUX_THREADS threads; CHUNKS consecutive threads\n"
              " * per row, 8 values each. */\n"
              "extern \"C\" __global__ void __launch_bounds__(AUX_THREADS) %s(const sp_bwd_kparams p)\n"
              "{\n",
              name);
    sb_puts(out,
            "    const int tid = threadIdx.x, chunk = tid % CHUNKS;\n"
            "    const int i = blockIdx.x * AUX_ROWS + tid / CHUNKS;\n"
            "    const int h = blockIdx.y, b = blockIdx.z;\n"
            "    if (i >= p.seqlen) return;\n"
            "    const float4 *a = (const float4 *)((const float *)p.dq_accum + b * p.dqa_sb + h * p.dqa_sh + (long long)i * p.dqa_sn + chunk * 8);\n"
            "    const float4 x = a[0], y = a[1];\n"
            "    const float s = p.scale;\n"
            "    const u32x4 r = { pack2(x.x * s, x.y * s), pack2(x.z * s, x.w * s), pack2(y.x * s, y.y * s), pack2(y.z * s, y.w * s) };\n"
            "    *(u32x4 *)((elem_t *)p.dq + b * p.dq_sb + h * p.dq_sh + (long long)i * p.dq_sn + chunk * 8) = r;\n"
            "}\n");
}

/* ---- the translation unit -------------------------------------------------- */

int emit_bwd_kernels(strbuf *out, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg, sp_err *e)
{
    if (cfg->kind != SP_KIND_BWD)
        return sp_fail(e, SP_EXIT_USAGE, "internal: emit_bwd_kernels needs a backward config");
    sp_kcfg check = *cfg;
    sp_err ignored = { 0 };
    if (cfg->threads <= 0 || cfg->smem_bytes <= 0 || kcfg_derive_bwd(&check, &ignored) ||
        check.smem_bytes != cfg->smem_bytes || check.threads != cfg->threads)
        return sp_fail(e, SP_EXIT_USAGE, "internal: backward kernel config not derived (call kcfg_derive_bwd first)");

    emit_header(out, spec, pat, cfg);
    sb_puts(out,
            "/* The backward pass: five kernels sharing one configuration (codegen/kcfg_bwd.h).\n"
            " *   atomic mode:         pre -> main -> convert\n"
            " *   deterministic mode:  pre -> main_det -> dq   (no atomics: bitwise repeatable)\n"
            " * The header's threads are main's, its shared memory the most any of them uses; each\n"
            " * kernel says its own at its definition. */\n\n");
    emit_bwd_constants(out, cfg);
    emit_prelude(out, cfg);
    emit_bands(out, cfg);
    emit_bwd_kparams(out);
    emit_bwd_helpers(out, cfg);
    emit_bwd_pre(out, cfg);
    if (cfg->mma == SP_MMA_WGMMA) {
        /* main and main_det on wgmma (codegen/emit_bwd_wgmma.c); dq stays on mma.sync. */
        emit_bwd_wg_ops(out, cfg);
        emit_bwd_load_rows(out, "wg_load_rows", "tile_off<ROWS>");
        emit_bwd_write_rows(out, "wg_write_rows", "tile_off<BN>");
        emit_bwd_iteration(out, "wg_load_rows");
        emit_bwd_main_parts(out);
        emit_bwd_wg_main_body(out);
    } else {
        emit_bwd_iteration(out, "bwd_load_rows");
        emit_bwd_main_parts(out);
        emit_bwd_dq_atomic(out);
        emit_bwd_main_body(out);
    }
    emit_bwd_main_kernels(out, cfg);
    emit_bwd_dq(out, cfg);
    emit_bwd_convert(out, cfg);
    return out->oom ? sp_fail(e, SP_EXIT_FAIL, "out of memory generating the kernel source") : 0;
}
