/* The forward kernel (FlashAttention-2 technique on mma.sync), one emitter
 * per part, called by emit_fwd in the algorithm's order:
 *
 *     load Q tile (cp.async), build the band plan, prefetch STAGES-1 KV tiles
 *     Q -> registers (ldmatrix)
 *     for each KV tile of the plan (ascending keys):
 *         wait for it, prefetch a later one into the freed stage
 *         per warp: SKIP / FULL / PARTIAL for its rows
 *         S = Q K^T; mask if PARTIAL; online softmax; O += P V
 *     O = O / l, LSE; write both
 *
 * Grid (ceil(N / BM), heads in the launch, batch), THREADS threads, SMEM_BYTES
 * of dynamic shared memory: the Q tile, then STAGES stages of a K and a V
 * tile, all swizzled.  Each warp owns WARP_ROWS = 16 * WM consecutive query
 * rows (WM m16 tiles: 1 or 2); in m16 tile mi a lane holds rows l/4 and
 * l/4 + 8 (the mma accumulator layout).  With WM = 2 every K and V fragment
 * read from shared memory feeds two mma instead of one, which halves the
 * shared-memory traffic per flop (the limit of the 16-row layout). */
#include "codegen/emit.h"

/* load_tile and load_kv, shared by the mma.sync and the wgmma forward; `off`
 * names the kernel's shared-memory layout function: "tile_off" (mma.sync)
 * or "tile_off<ROWS>" (wgmma's column blocks depend on the tile's rows). */
void emit_tile_loads(strbuf *out, const char *off)
{
    sb_printf(out,
            "/* ==== Loads: global -> shared, asynchronous ====\n"
            " * Copy ROWS rows, from row r0 on, of a [sequence, HEAD_DIM] matrix whose rows are\n"
            " * `stride` elements apart into the tile at shared address `tile`.  Rows >= n are\n"
            " * zero-filled; their source address is clamped to row 0, which exists (n >= 1) and is\n"
            " * not read (src-size 0).  Thread tid copies chunks tid, tid + THREADS, ...: consecutive threads copy\n"
            " * consecutive 16-byte chunks of a row, so the reads coalesce. */\n"
            "template <int ROWS>\n"
            "DEV void load_tile(u32 tile, const elem_t *g, long long stride, int r0, int n, int tid)\n"
            "{\n"
            "    constexpr int TOTAL = ROWS * CHUNKS, PASS_ROWS = THREADS / CHUNKS;\n"
            "    if constexpr (THREADS %% CHUNKS == 0 && ROWS %% PASS_ROWS == 0) {\n"
            "        /* Each thread keeps one chunk column and steps down PASS_ROWS rows per pass:\n"
            "         * one pointer increment per copy instead of a 64-bit multiply. */\n"
            "        const int row = tid / CHUNKS, chunk = tid %% CHUNKS;\n"
            "        const elem_t *src = g + (long long)(r0 + row) * stride + chunk * 8;\n"
            "        if (r0 + ROWS <= n) {   /* every row exists: no checks (all tiles but the last) */\n"
            "#pragma unroll\n"
            "            for (int i = 0; i < ROWS / PASS_ROWS; ++i, src += PASS_ROWS * stride)\n"
            "                cp_async_16(tile + %s(row + i * PASS_ROWS, chunk), src, true);\n"
            "        } else {\n"
            "#pragma unroll\n"
            "            for (int i = 0; i < ROWS / PASS_ROWS; ++i, src += PASS_ROWS * stride) {\n"
            "                const bool valid = r0 + row + i * PASS_ROWS < n;\n"
            "                cp_async_16(tile + %s(row + i * PASS_ROWS, chunk), valid ? src : g, valid);\n"
            "            }\n"
            "        }\n"
            "    } else {\n"
            "#pragma unroll\n"
            "        for (int i = 0; i < (TOTAL + THREADS - 1) / THREADS; ++i) {\n"
            "            const int c = tid + i * THREADS;\n"
            "            if (TOTAL %% THREADS == 0 || c < TOTAL) {\n"
            "                const int row = c / CHUNKS, chunk = c %% CHUNKS;\n"
            "                const bool valid = r0 + row < n;\n"
            "                const elem_t *src = g + (valid ? (long long)(r0 + row) * stride : 0ll) + chunk * 8;\n"
            "                cp_async_16(tile + %s(row, chunk), src, valid);\n"
            "            }\n"
            "        }\n"
            "    }\n"
            "}\n\n"
            "/* One stage: the K and V tiles of keys [n0, n0 + BN). */\n"
            "DEV void load_kv(u32 stage, const elem_t *k, long long k_sn, const elem_t *v, long long v_sn, int n0, int n,\n"
            "                 int tid)\n"
            "{\n"
            "    load_tile<BN>(stage, k, k_sn, n0, n, tid);\n"
            "    load_tile<BN>(stage + KV_TILE_BYTES, v, v_sn, n0, n, tid);\n"
            "}\n\n",
              off, off, off);
}

static void emit_fwd_loads(strbuf *out)
{
    emit_tile_loads(out, "tile_off");
    sb_puts(out,
            "/* 16 rows of Q, dims 16kc..16kc+15, as an mma A fragment (sQw: the first of the 16\n"
            " * rows).  Matrix 0: rows 0..7 x dims +0..7 (a[0]); 1: rows 8..15 x dims +0..7\n"
            " * (a[1]); 2: rows 0..7 x dims +8..15 (a[2]); 3: rows 8..15 x dims +8..15 (a[3]).  So\n"
            " * lane l points at row l % 16, chunk 2kc + l / 16. */\n"
            "DEV void load_q_frag(u32 (&a)[4], u32 sQw, int kc, int lane)\n"
            "{\n"
            "    ldsm_x4(sQw + tile_off(lane & 15, 2 * kc + (lane >> 4)), a);\n"
            "}\n\n");
}

static void emit_fwd_qk(strbuf *out, const sp_kcfg *cfg)
{
    sb_puts(out,
            "/* ==== S = Q K^T for one KV tile: WARP_ROWS rows x BN keys per warp ====\n"
            " * s[mi][nb] is the m16n8 accumulator of m16 tile mi, keys 8nb..8nb+7 of the tile.  K\n"
            " * is [key][dim] in shared memory, which is the \"col\" B operand of Q K^T as stored:\n"
            " * for n-blocks 2p and 2p+1 and dims 16kc..16kc+15, one ldmatrix.x4 reads\n"
            " *   matrix 0: keys 16p+0..7,  dims +0..7   -> b0 of n-block 2p\n"
            " *   matrix 1: keys 16p+0..7,  dims +8..15  -> b1 of n-block 2p\n"
            " *   matrix 2: keys 16p+8..15, dims +0..7   -> b0 of n-block 2p+1\n"
            " *   matrix 3: keys 16p+8..15, dims +8..15  -> b1 of n-block 2p+1\n"
            " * so lane l points at key 16p + l % 8 + 8 (l / 16), chunk 2kc + (l / 8) % 2.  Each K\n"
            " * fragment serves the warp's WM m16 tiles. */\n");
    if (cfg->q_in_regs)
        sb_puts(out,
                "DEV void qk_tile(float (&s)[WM][BN / 8][4], const u32 (&qf)[WM][HEAD_DIM / 16][4], u32 sK, int lane)\n"
                "{\n");
    else
        sb_puts(out,
                "DEV void qk_tile(float (&s)[WM][BN / 8][4], u32 sQw, u32 sK, int lane)\n"
                "{\n");
    sb_puts(out,
            "#pragma unroll\n"
            "    for (int mi = 0; mi < WM; ++mi)\n"
            "#pragma unroll\n"
            "        for (int nb = 0; nb < BN / 8; ++nb) s[mi][nb][0] = s[mi][nb][1] = s[mi][nb][2] = s[mi][nb][3] = 0.f;\n"
            "#pragma unroll\n"
            "    for (int kc = 0; kc < HEAD_DIM / 16; ++kc) {\n");
    if (!cfg->q_in_regs)
        sb_puts(out,
                "        u32 q[WM][4];   /* Q is re-read from shared memory: kept in registers it would spill */\n"
                "#pragma unroll\n"
                "        for (int mi = 0; mi < WM; ++mi) load_q_frag(q[mi], sQw + mi * 16 * ROW_BYTES, kc, lane);\n");
    sb_printf(out,
              "#pragma unroll\n"
              "        for (int p = 0; p < BN / 16; ++p) {\n"
              "            u32 kf[4];\n"
              "            ldsm_x4(sK + tile_off(16 * p + (lane & 7) + ((lane >> 4) << 3), 2 * kc + ((lane >> 3) & 1)), kf);\n"
              "#pragma unroll\n"
              "            for (int mi = 0; mi < WM; ++mi) {\n"
              "                mma_16816(s[mi][2 * p], %s, kf[0], kf[1]);\n"
              "                mma_16816(s[mi][2 * p + 1], %s, kf[2], kf[3]);\n"
              "            }\n"
              "        }\n"
              "    }\n"
              "}\n\n",
              cfg->q_in_regs ? "qf[mi][kc]" : "q[mi]", cfg->q_in_regs ? "qf[mi][kc]" : "q[mi]");
}

void emit_fwd_mask(strbuf *out)
{
    sb_puts(out,
            "/* ==== The band mask, on PARTIAL tiles only ====\n"
            " * Lane l holds in s[mi][nb] rows i0 + 16mi (s[mi][nb][0..1]) and i0 + 16mi + 8\n"
            " * (s[mi][nb][2..3]), keys j = n0 + 8nb + 2(l % 4) + {0, 1}.  A score stays if its\n"
            " * distance is allowed and its key exists (j < n: keys past n were zero-filled); the\n"
            " * others become -inf. */\n"
            "DEV void mask_tile(float (&s)[WM][BN / 8][4], const band_plan &bp, int i0, int n0, int n, int lane)\n"
            "{\n"
            "    int lo[MAX_INTERVALS], hi[MAX_INTERVALS];\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < MAX_INTERVALS; ++k) { lo[k] = bp.lo[k]; hi[k] = bp.hi[k]; }\n"
            "#pragma unroll\n"
            "    for (int nb = 0; nb < BN / 8; ++nb)\n"
            "#pragma unroll\n"
            "        for (int e = 0; e < 2; ++e) {\n"
            "            const int j = n0 + 8 * nb + 2 * (lane & 3) + e;\n"
            "            const bool key = j < n;\n"
            "#pragma unroll\n"
            "            for (int mi = 0; mi < WM; ++mi) {\n"
            "                const int i = i0 + 16 * mi;\n"
            "                s[mi][nb][e] = key & band_allows(lo, hi, i - j) ? s[mi][nb][e] : neg_inf();\n"
            "                s[mi][nb][2 + e] = key & band_allows(lo, hi, i + 8 - j) ? s[mi][nb][2 + e] : neg_inf();\n"
            "            }\n"
            "        }\n"
            "}\n\n");
}

void emit_fwd_softmax(strbuf *out)
{
    sb_puts(out,
            "/* ==== Online softmax, in the exp2 domain ====\n"
            " * Per lane, m16 tile mi and row r (0: row l/4, 1: row l/4 + 8): m[mi][r] the running\n"
            " * max of the raw scores (the same in the 4 lanes of a quad), l[mi][r] this lane's\n"
            " * share of the row sum, acc[mi] the output accumulator.  With c = scale * log2(e),\n"
            " *     exp(scale (s - m)) = exp2(s c - m c): one FFMA and one ex2 per score.\n"
            " * While every key of a row so far is masked, m = -inf: the exp base is then taken as 0,\n"
            " * so exp2(-inf - 0) = 0 and no (-inf) - (-inf) = NaN appears.  softmax_p turns s into\n"
            " * P = exp2(s c - m_new c), rescales l and returns the factors exp2(m_old c - m_new c)\n"
            " * that O must be rescaled by; rescale_o applies them.  They are two steps because\n"
            " * the wgmma kernel computes P while the tensor cores still add the previous tile to O. */\n"
            "DEV void softmax_p(float (&s)[WM][BN / 8][4], float (&m)[WM][2], float (&l)[WM][2], float (&alphas)[WM][2], float c)\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int mi = 0; mi < WM; ++mi)\n"
            "#pragma unroll\n"
            "        for (int r = 0; r < 2; ++r) {\n"
            "            float mx = m[mi][r];\n"
            "#pragma unroll\n"
            "            for (int nb = 0; nb < BN / 8; ++nb) mx = fmaxf(mx, fmaxf(s[mi][nb][2 * r], s[mi][nb][2 * r + 1]));\n"
            "            mx = quad_max(mx);\n"
            "            const float base = mx == neg_inf() ? 0.f : mx * c;\n"
            "            const float alpha = exp2_approx(m[mi][r] * c - base);   /* 0 while m was -inf */\n"
            "            m[mi][r] = mx;\n"
            "            float sum = 0.f;\n"
            "#pragma unroll\n"
            "            for (int nb = 0; nb < BN / 8; ++nb) {\n"
            "                s[mi][nb][2 * r] = exp2_approx(fmaf(s[mi][nb][2 * r], c, -base));\n"
            "                s[mi][nb][2 * r + 1] = exp2_approx(fmaf(s[mi][nb][2 * r + 1], c, -base));\n"
            "                sum += s[mi][nb][2 * r] + s[mi][nb][2 * r + 1];\n"
            "            }\n"
            "            l[mi][r] = l[mi][r] * alpha + sum;\n"
            "            alphas[mi][r] = alpha;\n"
            "        }\n"
            "}\n\n"
            "/* Rescale O only where some row's max moved (warp-uniform vote): on long rows the max\n"
            " * settles after a few tiles, and the multiplies are then skipped. */\n"
            "DEV void rescale_o(float (&acc)[WM][HEAD_DIM / 8][4], const float (&alphas)[WM][2])\n"
            "{\n"
            "    bool moved = false;\n"
            "#pragma unroll\n"
            "    for (int mi = 0; mi < WM; ++mi) moved |= (alphas[mi][0] != 1.f) | (alphas[mi][1] != 1.f);\n"
            "    if (__any_sync(0xffffffffu, moved)) {\n"
            "#pragma unroll\n"
            "        for (int mi = 0; mi < WM; ++mi)\n"
            "#pragma unroll\n"
            "            for (int db = 0; db < HEAD_DIM / 8; ++db) {\n"
            "                acc[mi][db][0] *= alphas[mi][0];\n"
            "                acc[mi][db][1] *= alphas[mi][0];\n"
            "                acc[mi][db][2] *= alphas[mi][1];\n"
            "                acc[mi][db][3] *= alphas[mi][1];\n"
            "            }\n"
            "    }\n"
            "}\n\n");
}

static void emit_fwd_pv(strbuf *out)
{
    sb_puts(out,
            "/* ==== O += P V ====\n"
            " * P comes straight from the S accumulators, with no trip through shared memory: the\n"
            " * C fragments of n-blocks 2kc and 2kc+1, packed pairwise to 16 bits, are the A fragment\n"
            " * of keys 16kc..16kc+15 (a[0] = row g, keys 2t..2t+1 = s[2kc][0..1]; a[1] = row g+8 =\n"
            " * s[2kc][2..3]; a[2] = row g, keys 2t+8.. = s[2kc+1][0..1]; a[3] = s[2kc+1][2..3]).\n"
            " * V is [key][dim]; the B operand wants two consecutive keys of one dim per register,\n"
            " * so it is read transposed: for keys 16kc.. and dims 16dp..16dp+15 one\n"
            " * ldmatrix.x4.trans reads\n"
            " *   matrix 0: keys +0..7,  dims +0..7   -> b0 of dim-block 2dp\n"
            " *   matrix 1: keys +8..15, dims +0..7   -> b1 of dim-block 2dp\n"
            " *   matrix 2: keys +0..7,  dims +8..15  -> b0 of dim-block 2dp+1\n"
            " *   matrix 3: keys +8..15, dims +8..15  -> b1 of dim-block 2dp+1\n"
            " * so lane l points at key 16kc + l % 16, chunk 2dp + l / 16.  Each V fragment serves\n"
            " * the warp's WM m16 tiles. */\n"
            "DEV void pv_tile(float (&acc)[WM][HEAD_DIM / 8][4], const float (&s)[WM][BN / 8][4], u32 sV, int lane)\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int kc = 0; kc < BN / 16; ++kc) {\n"
            "        u32 a[WM][4];\n"
            "#pragma unroll\n"
            "        for (int mi = 0; mi < WM; ++mi) {\n"
            "            a[mi][0] = pack2(s[mi][2 * kc][0], s[mi][2 * kc][1]);\n"
            "            a[mi][1] = pack2(s[mi][2 * kc][2], s[mi][2 * kc][3]);\n"
            "            a[mi][2] = pack2(s[mi][2 * kc + 1][0], s[mi][2 * kc + 1][1]);\n"
            "            a[mi][3] = pack2(s[mi][2 * kc + 1][2], s[mi][2 * kc + 1][3]);\n"
            "        }\n"
            "#pragma unroll\n"
            "        for (int dp = 0; dp < HEAD_DIM / 16; ++dp) {\n"
            "            u32 vf[4];\n"
            "            ldsm_x4_trans(sV + tile_off(16 * kc + (lane & 15), 2 * dp + (lane >> 4)), vf);\n"
            "#pragma unroll\n"
            "            for (int mi = 0; mi < WM; ++mi) {\n"
            "                mma_16816(acc[mi][2 * dp], a[mi], vf[0], vf[1]);\n"
            "                mma_16816(acc[mi][2 * dp + 1], a[mi], vf[2], vf[3]);\n"
            "            }\n"
            "        }\n"
            "    }\n"
            "}\n\n");
}

static void emit_fwd_epilogue(strbuf *out)
{
    sb_puts(out,
            "/* ==== Epilogue: O = acc / l (16-bit) and LSE ====\n"
            " * Row r of m16 tile mi of this lane is row0 + 16mi + l/4 + 8r.  Its sum l is first\n"
            " * added up over the quad.  LSE = ln(sum_j exp(scale s_j)) = (m c + log2 l) ln 2,\n"
            " * natural log, fp32.  A row with l == 0 had no allowed key: O = 0 and LSE = -inf\n"
            " * (DESIGN.md asks for -inf; flash-attention writes +inf there).  Rows >= n are never\n"
            " * stored.  O goes through this warp's own rows of the Q tile in shared memory (no\n"
            " * other warp reads them), so that each lane then stores whole 16-byte chunks,\n"
            " * coalesced. */\n"
            "DEV void write_output(const float (&acc)[WM][HEAD_DIM / 8][4], const float (&m)[WM][2], const float (&l)[WM][2],\n"
            "                      float c, u32 sQw, elem_t *o, long long o_sn, float *lse, int row0, int n, int lane)\n"
            "{\n"
            "    const int g = lane >> 2, t = lane & 3;\n"
            "    float inv[WM][2];\n"
            "#pragma unroll\n"
            "    for (int mi = 0; mi < WM; ++mi)\n"
            "#pragma unroll\n"
            "        for (int r = 0; r < 2; ++r) {\n"
            "            const float sum = quad_sum(l[mi][r]);\n"
            "            inv[mi][r] = sum > 0.f ? 1.f / sum : 0.f;\n"
            "            const int i = row0 + 16 * mi + g + 8 * r;\n"
            "            if (t == 0 && i < n) lse[i] = sum > 0.f ? (m[mi][r] * c + log2_approx(sum)) * LN2 : neg_inf();\n"
            "        }\n"
            "    __syncwarp();   /* every lane is past its last read of the warp's Q rows */\n"
            "#pragma unroll\n"
            "    for (int mi = 0; mi < WM; ++mi)\n"
            "#pragma unroll\n"
            "        for (int db = 0; db < HEAD_DIM / 8; ++db) {\n"
            "            st_shared_u32(sQw + tile_off(16 * mi + g, db) + 4 * t,\n"
            "                          pack2(acc[mi][db][0] * inv[mi][0], acc[mi][db][1] * inv[mi][0]));\n"
            "            st_shared_u32(sQw + tile_off(16 * mi + g + 8, db) + 4 * t,\n"
            "                          pack2(acc[mi][db][2] * inv[mi][1], acc[mi][db][3] * inv[mi][1]));\n"
            "        }\n"
            "    __syncwarp();\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < WARP_ROWS * CHUNKS / 32; ++k) {\n"
            "        const int c16 = lane + 32 * k, row = c16 / CHUNKS, chunk = c16 % CHUNKS;\n"
            "        if (row0 + row < n)\n"
            "            *(u32x4 *)(o + (long long)(row0 + row) * o_sn + chunk * 8) = ld_shared_u32x4(sQw + tile_off(row, chunk));\n"
            "    }\n"
            "}\n\n");
}

static void emit_fwd_kernel(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_name(cfg, name, sizeof name);
    sb_printf(out,
              "/* ==== The kernel ====\n"
              " * One CTA: BM query rows of one (batch, head).  p.seqlen = n >= 1 tokens. */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const sp_kparams p)\n"
              "{\n",
              name);
    sb_puts(out,
            "    extern __shared__ unsigned char smem[];\n"
            "    __shared__ band_plan plan;\n\n"
            "    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;\n"
            "    const int n = p.seqlen;\n"
            "    const int m0 = (gridDim.x - 1 - blockIdx.x) * BM;   /* last query tile first: the long ones start early */\n"
            "    const int h = blockIdx.y;                           /* query head within the launch */\n"
            "    const int b = blockIdx.z;\n"
            "    const int kvh = h / GROUP;                          /* grouped-query attention: h's kv head */\n"
            "    const elem_t *q = (const elem_t *)p.q + b * p.q_sb + h * p.q_sh;   /* row i at q + i * p.q_sn */\n"
            "    const elem_t *k = (const elem_t *)p.k + b * p.k_sb + kvh * p.k_sh;\n"
            "    const elem_t *v = (const elem_t *)p.v + b * p.v_sb + kvh * p.v_sh;\n"
            "\n"
            "    /* Shared memory: the Q tile, then STAGES stages of (K tile, V tile); 128-aligned so\n"
            "     * the swizzle's bank pattern holds. */\n"
            "    const u32 sQ = (smem_addr(smem) + 127u) & ~127u;\n"
            "    const u32 sKV = sQ + Q_TILE_BYTES;\n"
            "    const u32 sQw = sQ + warp * WARP_ROWS * ROW_BYTES;   /* this warp's rows of Q */\n\n"
            "    /* 1. Q tile -> shared memory (async); the band plan of this query tile. */\n"
            "    load_tile<BM>(sQ, q, p.q_sn, m0, n, tid);\n"
            "    cp_async_commit();\n"
            "    if (tid == 0) band_plan_build(plan, (const int *)p.bands + (p.head_offset + h) * BAND_STRIDE, m0, n);\n"
            "    __syncthreads();\n"
            "    const int ntiles = plan.total;\n\n"
            "    /* 2. Prefetch the first STAGES - 1 KV tiles, one commit group each (empty groups too,\n"
            "     * so that the wait counts below stay fixed). */\n"
            "#pragma unroll\n"
            "    for (int st = 0; st < STAGES - 1; ++st) {\n"
            "        if (st < ntiles) load_kv(sKV + st * STAGE_BYTES, k, p.k_sn, v, p.v_sn, band_tile_at(plan, st) * BN, n, tid);\n"
            "        cp_async_commit();\n"
            "    }\n\n");
    if (cfg->q_in_regs)
        sb_puts(out,
                "    /* 3. This warp's rows of Q -> registers, as A fragments, for the whole loop. */\n"
                "    cp_async_wait<STAGES - 1>();   /* the oldest group, Q, has landed */\n"
                "    __syncthreads();\n"
                "    u32 qf[WM][HEAD_DIM / 16][4];\n"
                "#pragma unroll\n"
                "    for (int mi = 0; mi < WM; ++mi)\n"
                "#pragma unroll\n"
                "        for (int kc = 0; kc < HEAD_DIM / 16; ++kc) load_q_frag(qf[mi][kc], sQw + mi * 16 * ROW_BYTES, kc, lane);\n\n");
    else
        sb_puts(out,
                "    /* 3. Q stays in shared memory: qk_tile re-reads this warp's rows each tile (kept in\n"
                "     * registers at this head_dim, they would spill). */\n"
                "    cp_async_wait<STAGES - 1>();   /* the oldest group, Q, has landed */\n"
                "    __syncthreads();\n\n");
    sb_puts(out,
            "    /* 4. Running state of this lane's rows: 2 per m16 tile. */\n"
            "    float acc[WM][HEAD_DIM / 8][4], m[WM][2], l[WM][2];\n"
            "#pragma unroll\n"
            "    for (int mi = 0; mi < WM; ++mi) {\n"
            "#pragma unroll\n"
            "        for (int db = 0; db < HEAD_DIM / 8; ++db) acc[mi][db][0] = acc[mi][db][1] = acc[mi][db][2] = acc[mi][db][3] = 0.f;\n"
            "        m[mi][0] = m[mi][1] = neg_inf();\n"
            "        l[mi][0] = l[mi][1] = 0.f;\n"
            "    }\n"
            "    const int row0 = m0 + warp * WARP_ROWS;           /* this warp's rows: row0 .. row0 + WARP_ROWS - 1 */\n"
            "    const int row_last = min(row0 + WARP_ROWS - 1, n - 1);   /* rows >= n are computed, never stored */\n\n"
            "    /* 5. The KV tiles of the head's bands, in ascending key order. */\n"
            "    int stage = 0;\n"
            "    for (int it = 0; it < ntiles; ++it) {\n");
    if (cfg->stages >= 2)
        sb_puts(out,
                "        /* Tile it has landed: this thread's copies (wait), everyone's (barrier).  The\n"
                "         * barrier also means every warp is done with tile it - 1, whose stage the\n"
                "         * prefetch of tile it + STAGES - 1 now overwrites. */\n"
                "        cp_async_wait<STAGES - 2>();\n"
                "        __syncthreads();\n"
                "        const int ahead = it + STAGES - 1;\n"
                "        if (ahead < ntiles) {\n"
                "            const int st = stage == 0 ? STAGES - 1 : stage - 1;\n"
                "            load_kv(sKV + st * STAGE_BYTES, k, p.k_sn, v, p.v_sn, band_tile_at(plan, ahead) * BN, n, tid);\n"
                "        }\n"
                "        cp_async_commit();\n\n");
    else
        sb_puts(out,
                "        /* One stage: load tile it once every warp is done with tile it - 1, then wait. */\n"
                "        __syncthreads();\n"
                "        load_kv(sKV, k, p.k_sn, v, p.v_sn, band_tile_at(plan, it) * BN, n, tid);\n"
                "        cp_async_commit();\n"
                "        cp_async_wait<0>();\n"
                "        __syncthreads();\n\n");
    sb_printf(out,
              "        const int n0 = band_tile_at(plan, it) * BN;\n"
              "        const int kind = row0 < n ? band_tile_kind(plan, row0, row_last, n0, n) : TILE_SKIP;\n"
              "        if (kind != TILE_SKIP) {   /* warp-uniform */\n"
              "            const u32 sK = sKV + stage * STAGE_BYTES, sV = sK + KV_TILE_BYTES;\n"
              "            float s[WM][BN / 8][4];\n"
              "            qk_tile(s, %s, sK, lane);                                  /* S = Q K^T */\n"
              "            if (kind == TILE_PARTIAL) mask_tile(s, plan, row0 + lane / 4, n0, n, lane);\n"
              "            float alphas[WM][2];\n"
              "            softmax_p(s, m, l, alphas, p.scale_log2);                  /* S -> P; rescale l */\n"
              "            rescale_o(acc, alphas);\n"
              "            pv_tile(acc, s, sV, lane);                                 /* O += P V */\n"
              "        }\n"
              "        stage = stage + 1 == STAGES ? 0 : stage + 1;\n"
              "    }\n\n"
              "    /* 6. O = acc / l and LSE (row i at o + i * p.o_sn and lse + i).  O is staged\n"
              "     * through the warp's Q rows: step 3's wait and barrier covered Q's group, and\n"
              "     * the prefetches past the last tile are empty groups; draining here anyway\n"
              "     * keeps the rule of every kernel (no shared buffer reused, no return, while a\n"
              "     * copy may be pending) true by construction, at the cost of one no-op wait. */\n"
              "    cp_async_wait<0>();\n"
              "    elem_t *o = (elem_t *)p.o + b * p.o_sb + h * p.o_sh;\n"
              "    float *lse = (float *)p.lse + b * p.lse_sb + h * p.lse_sh;\n"
              "    write_output(acc, m, l, p.scale_log2, sQw, o, p.o_sn, lse, row0, n, lane);\n"
              "}\n",
              cfg->q_in_regs ? "qf" : "sQw");
}

void emit_fwd(strbuf *out, const sp_kcfg *cfg)
{
    emit_fwd_loads(out);
    emit_fwd_qk(out, cfg);
    emit_fwd_mask(out);
    emit_fwd_softmax(out);
    emit_fwd_pv(out);
    emit_fwd_epilogue(out);
    emit_fwd_kernel(out, cfg);
}
