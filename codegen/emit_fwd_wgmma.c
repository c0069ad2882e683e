/* The Hopper forward kernel: the same algorithm as emit_fwd.c, with the
 * matrix products on wgmma (sm_90a), the warpgroup-wide asynchronous MMA
 * that reads its B operand (and here A of S = Q K^T) straight from shared
 * memory.  Called for configs with mma == SP_MMA_WGMMA.
 *
 *     load Q tile (cp.async), build the band plan, prefetch STAGES-1 KV tiles
 *     for each KV tile of the plan (ascending keys):
 *         wait for it, prefetch a later one into the freed stage
 *         per warpgroup (64 query rows): SKIP, or
 *             S = Q K^T             (wgmma, A = Q and B = K in shared memory)
 *             mask if PARTIAL; online softmax (per warp, as in emit_fwd.c)
 *             O += P V              (wgmma, A = P in registers, B = V transposed)
 *     O = O / l, LSE; write both
 *
 * Grid (ceil(N / BM), heads in the launch, batch), THREADS = 128 * BM / 64.
 * Warpgroup wg (warps 4wg..4wg+3) owns rows 64wg..64wg+63 of the query tile;
 * warp w of it owns 16 of them, and a wgmma accumulator of 64 rows holds, in
 * each warp, exactly the m16n8 fragments of that warp's 16 rows.  So the
 * mask and the softmax are emit_fwd.c's, with WM = 1.
 *
 * Shared-memory tiles use the layout wgmma reads with 128-byte swizzling: a
 * tile of ROWS rows is HEAD_DIM / 64 column blocks of ROWS x 64 values (128
 * bytes a row), each 1024-byte aligned; chunk c of row r of a block sits at
 * chunk c ^ (r % 8) of its 128 bytes.  The hardware undoes the same XOR on
 * the address bits, so one layout serves cp.async, wgmma and ldmatrix. */
#include "codegen/emit.h"

/* The 128-byte-swizzled tile layout and its offset function (shared with
 * the wgmma backward, codegen/emit_bwd_wgmma.c). */
void emit_wg_tiles(strbuf *out)
{
    sb_puts(out,
            "/* ==== Shared-memory tiles for wgmma ====\n"
            " * A tile of ROWS rows: column block cb = chunk / 8 (64 values) at cb * ROWS * 128 bytes,\n"
            " * row r of it at r * 128, chunk c % 8 at (c ^ r) % 8: the canonical \"128-byte swizzle\"\n"
            " * layout of wgmma's shared-memory operands, and free of bank conflicts for the 16-byte\n"
            " * accesses of cp.async and the epilogue.  Tiles start 1024-byte aligned. */\n"
            "enum : int { SW_ROW = 128 };                /* bytes per row of a column block */\n"
            "template <int ROWS> DEV u32 tile_off(int row, int chunk)\n"
            "{\n"
            "    return (chunk >> 3) * (ROWS * SW_ROW) + row * SW_ROW + (((chunk & 7) ^ (row & 7)) << 4);\n"
            "}\n\n");
}

static void emit_wg_layout(strbuf *out)
{
    emit_wg_tiles(out);
    sb_puts(out,
            "enum : int {\n"
            "    WG_ROWS = 64,                           /* query rows per warpgroup: wgmma's M */\n"
            "    WARPGROUPS = BM / WG_ROWS,\n"
            "    PREFETCH = STAGES - 2,                  /* KV tiles loaded ahead (see the main loop) */\n"
            "};\n"
            "static_assert(STAGES >= 3, \"the wgmma kernel keeps 2 tiles in use and loads ahead\");\n\n");
}

void emit_wgmma_op(strbuf *out, const char *name, int n, const char *type, int a_regs, int trans_ss)
{
    int nd = n / 2;
    if (a_regs)
        sb_printf(out, "DEV void %s(float (&d)[%d][4], const u32 (&a)[4], u64 desc_b)\n{\n", name, n / 8);
    else
        sb_printf(out, "DEV void %s(float (&d)[%d][4], u64 desc_a, u64 desc_b, int accumulate)\n{\n", name, n / 8);
    sb_printf(out, "    asm volatile(\"{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\n\"\n", a_regs ? nd + 5 : nd + 2);
    sb_printf(out, "                 \"wgmma.mma_async.sync.aligned.m64n%dk16.f32.%s.%s {\"\n", n, type, type);
    for (int i = 0; i < nd; i += 8) {
        sb_puts(out, "                 \"");
        for (int j = i; j < i + 8 && j < nd; j++) sb_printf(out, "%%%d%s", j, j + 1 < nd ? ", " : "");
        sb_puts(out, "\"\n");
    }
    if (a_regs)
        sb_printf(out, "                 \"}, {%%%d, %%%d, %%%d, %%%d}, %%%d, p, 1, 1, 1;\\n}\\n\"\n", nd, nd + 1, nd + 2,
                  nd + 3, nd + 4);
    else
        sb_printf(out, "                 \"}, %%%d, %%%d, p, 1, 1, %d, %d;\\n}\\n\"\n", nd, nd + 1, trans_ss, trans_ss);
    sb_puts(out, "                 :");
    for (int j = 0; j < nd; j++)
        sb_printf(out, "%s\"+f\"(d[%d][%d])%s", j % 4 == 0 ? " " : "", j / 4, j % 4,
                  j + 1 < nd ? (j % 4 == 3 ? ",\n                  " : ", ") : "\n");
    if (a_regs)
        sb_puts(out, "                 : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"l\"(desc_b), \"r\"(1));\n}\n\n");
    else
        sb_puts(out, "                 : \"l\"(desc_a), \"l\"(desc_b), \"r\"(accumulate));\n}\n\n");
}

void emit_wg_primitives(strbuf *out)
{
    sb_puts(out,
            "/* ==== wgmma: the warpgroup's asynchronous tensor-core MMA (sm_90a) ====\n"
            " * The 128 threads of a warpgroup issue it together.  It runs asynchronously: issue a\n"
            " * batch after wgmma_fence (registers written since are ordered before it), close it\n"
            " * with wgmma_commit, and read the accumulators only after wgmma_wait.  regs_fence\n"
            " * keeps the compiler from moving register accesses across those points.\n"
            " *\n"
            " * Accumulators of m64nN: in warp w of the group, lane l holds d[nb][0..1] = row\n"
            " * 16w + l/4, columns 8nb + 2(l%4) + {0, 1}, and d[nb][2..3] = the same columns of row\n"
            " * 16w + l/4 + 8: per warp, the m16n8 fragments of mma.sync.  An A fragment from\n"
            " * registers has mma.sync's m16k16 A layout for the warp's 16 rows. */\n"
            "DEV void wgmma_fence() { asm volatile(\"wgmma.fence.sync.aligned;\\n\" ::: \"memory\"); }\n"
            "DEV void wgmma_commit() { asm volatile(\"wgmma.commit_group.sync.aligned;\\n\" ::: \"memory\"); }\n"
            "template <int N> DEV void wgmma_wait() { asm volatile(\"wgmma.wait_group.sync.aligned %0;\\n\" :: \"n\"(N) : \"memory\"); }\n"
            "template <int R> DEV void regs_fence(float (&d)[R][4])\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int i = 0; i < R; ++i)\n"
            "#pragma unroll\n"
            "        for (int j = 0; j < 4; ++j) asm volatile(\"\" : \"+f\"(d[i][j]) :: \"memory\");\n"
            "}\n"
            "/* Shared memory written by cp.async (the generic proxy) is read by wgmma (the async\n"
            " * proxy): each writer fences before the barrier that publishes it. */\n"
            "DEV void fence_proxy_async() { asm volatile(\"fence.proxy.async.shared::cta;\\n\" ::: \"memory\"); }\n\n"
            "/* A shared-memory matrix descriptor for the 128-byte-swizzled layout (tile_off):\n"
            " * start address, leading and stride byte offsets (all in 16-byte units), layout type\n"
            " * 1 = 128B swizzle in bits 62-63.\n"
            " *   K-major operands (Q, K: the k16 slice is 32 contiguous bytes of each row): rows\n"
            " *   are 128 bytes apart, groups of 8 rows SBO = 1024 apart; LBO is unused.\n"
            " *   MN-major (V, read transposed: the N = dims are contiguous): 64-value column\n"
            " *   blocks LBO = BN * 128 apart, groups of 8 keys SBO = 1024 apart. */\n"
            "DEV u64 smem_desc(u32 addr, u32 lbo, u32 sbo)\n"
            "{\n"
            "    return (u64)((addr & 0x3ffffu) >> 4) | ((u64)(lbo >> 4) << 16) | ((u64)(sbo >> 4) << 32) | (1ull << 62);\n"
            "}\n\n");
}

void emit_wg_mma(strbuf *out, const sp_kcfg *cfg)
{
    const char *type = cfg->dtype == SP_BF16 ? "bf16" : "f16";
    emit_wg_primitives(out);
    sb_puts(out,
            "/* S = Q K^T, one k16 step (accumulate = 0 on the first: S = Q K^T, no zeroing needed). */\n");
    emit_wgmma_op(out, "wgmma_qk", cfg->bn, type, 0, 0);
    sb_puts(out, "/* O += P V, one k16 step of keys: P from registers, V transposed from shared memory. */\n");
    emit_wgmma_op(out, "wgmma_pv", cfg->head_dim, type, 1, 0);
    sb_puts(out,
            "/* Issue S = Q K^T for one KV tile as one commit group: HEAD_DIM / 16 k16 steps, step kk\n"
            " * 32 bytes into column block kk / 4 of both Q (this warpgroup's rows, dq) and K (dk). */\n"
            "DEV void issue_qk(float (&s)[1][BN / 8][4], u64 dq, u64 dk)\n"
            "{\n"
            "    wgmma_fence();\n"
            "#pragma unroll\n"
            "    for (int kk = 0; kk < HEAD_DIM / 16; ++kk)\n"
            "        wgmma_qk(s[0], dq + (((kk >> 2) * BM * SW_ROW + (kk & 3) * 32) >> 4),\n"
            "                 dk + (((kk >> 2) * BN * SW_ROW + (kk & 3) * 32) >> 4), kk > 0);\n"
            "    wgmma_commit();\n"
            "}\n\n"
            "/* P (fp32, the S accumulators) packed to 16 bits: the A fragments of O += P V, keys\n"
            " * 16kc..16kc+15 from n-blocks 2kc and 2kc + 1 (mma.sync's C-to-A identity). */\n"
            "DEV void pack_p(u32 (&pf)[BN / 16][4], const float (&s)[1][BN / 8][4])\n"
            "{\n"
            "#pragma unroll\n"
            "    for (int kc = 0; kc < BN / 16; ++kc) {\n"
            "        pf[kc][0] = pack2(s[0][2 * kc][0], s[0][2 * kc][1]);\n"
            "        pf[kc][1] = pack2(s[0][2 * kc][2], s[0][2 * kc][3]);\n"
            "        pf[kc][2] = pack2(s[0][2 * kc + 1][0], s[0][2 * kc + 1][1]);\n"
            "        pf[kc][3] = pack2(s[0][2 * kc + 1][2], s[0][2 * kc + 1][3]);\n"
            "    }\n"
            "}\n\n"
            "/* Issue O += P V for one KV tile (BN / 16 k16 steps of keys; V's keys 16kc.. start 16kc\n"
            " * rows into its tile) as one commit group; dv: V's descriptor. */\n"
            "DEV void issue_pv(float (&acc)[1][HEAD_DIM / 8][4], const u32 (&pf)[BN / 16][4], u64 dv)\n"
            "{\n"
            "    regs_fence(acc[0]);\n"
            "    wgmma_fence();   /* acc (rescaled) and pf were written by ordinary instructions */\n"
            "#pragma unroll\n"
            "    for (int kc = 0; kc < BN / 16; ++kc) wgmma_pv(acc[0], pf[kc], dv + ((kc * 16 * SW_ROW) >> 4));\n"
            "    wgmma_commit();\n"
            "}\n\n");
}

static void emit_wg_epilogue(strbuf *out)
{
    sb_puts(out,
            "/* ==== Epilogue: O = acc / l (16-bit) and LSE ====\n"
            " * As in the mma.sync kernel: row r of this lane is row0 + l/4 + 8r, its sum is added up\n"
            " * over the quad; LSE = (m c + log2 l) ln 2; a row with l == 0 gets O = 0 and LSE = -inf;\n"
            " * rows >= n are never stored.  O goes through the warp's own 16 rows of the Q tile\n"
            " * (trow0.. within it; the warpgroup's last wgmma reading them has completed) so each\n"
            " * lane then stores whole 16-byte chunks, coalesced. */\n"
            "DEV void write_output(const float (&acc)[1][HEAD_DIM / 8][4], const float (&m)[1][2], const float (&l)[1][2],\n"
            "                      float c, u32 sQ, int trow0, elem_t *o, long long o_sn, float *lse, int row0, int n, int lane)\n"
            "{\n"
            "    const int g = lane >> 2, t = lane & 3;\n"
            "    float inv[2];\n"
            "#pragma unroll\n"
            "    for (int r = 0; r < 2; ++r) {\n"
            "        const float sum = quad_sum(l[0][r]);\n"
            "        inv[r] = sum > 0.f ? 1.f / sum : 0.f;\n"
            "        const int i = row0 + g + 8 * r;\n"
            "        if (t == 0 && i < n) lse[i] = sum > 0.f ? (m[0][r] * c + log2_approx(sum)) * LN2 : neg_inf();\n"
            "    }\n"
            "#pragma unroll\n"
            "    for (int db = 0; db < HEAD_DIM / 8; ++db) {\n"
            "        st_shared_u32(sQ + tile_off<BM>(trow0 + g, db) + 4 * t, pack2(acc[0][db][0] * inv[0], acc[0][db][1] * inv[0]));\n"
            "        st_shared_u32(sQ + tile_off<BM>(trow0 + g + 8, db) + 4 * t, pack2(acc[0][db][2] * inv[1], acc[0][db][3] * inv[1]));\n"
            "    }\n"
            "    __syncwarp();\n"
            "#pragma unroll\n"
            "    for (int k = 0; k < 16 * CHUNKS / 32; ++k) {\n"
            "        const int c16 = lane + 32 * k, row = c16 / CHUNKS, chunk = c16 % CHUNKS;\n"
            "        if (row0 + row < n)\n"
            "            *(u32x4 *)(o + (long long)(row0 + row) * o_sn + chunk * 8) = ld_shared_u32x4(sQ + tile_off<BM>(trow0 + row, chunk));\n"
            "    }\n"
            "}\n\n");
}

static void emit_wg_kernel(strbuf *out, const sp_kcfg *cfg)
{
    char name[128];
    kcfg_name(cfg, name, sizeof name);
    sb_printf(out,
              "/* ==== The kernel ====\n"
              " * One CTA: BM query rows of one (batch, head), WARPGROUPS warpgroups of 64 rows.\n"
              " * p.seqlen = n >= 1 tokens. */\n"
              "extern \"C\" __global__ void __launch_bounds__(THREADS, 1) %s(const sp_kparams p)\n"
              "{\n",
              name);
    sb_puts(out,
            "    extern __shared__ unsigned char smem[];\n"
            "    __shared__ band_plan plan;\n\n"
            "    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;\n"
            "    const int wg = warp / 4;                            /* this thread's warpgroup */\n"
            "    const int n = p.seqlen;\n"
            "    const int m0 = (gridDim.x - 1 - blockIdx.x) * BM;   /* last query tile first: the long ones start early */\n"
            "    const int h = blockIdx.y;                           /* query head within the launch */\n"
            "    const int b = blockIdx.z;\n"
            "    const int kvh = h / GROUP;                          /* grouped-query attention: h's kv head */\n"
            "    const elem_t *q = (const elem_t *)p.q + b * p.q_sb + h * p.q_sh;   /* row i at q + i * p.q_sn */\n"
            "    const elem_t *k = (const elem_t *)p.k + b * p.k_sb + kvh * p.k_sh;\n"
            "    const elem_t *v = (const elem_t *)p.v + b * p.v_sb + kvh * p.v_sh;\n\n"
            "    /* Shared memory: the Q tile, then STAGES stages of (K tile, V tile), each 1024-byte\n"
            "     * aligned as the swizzled layout needs. */\n"
            "    const u32 sQ = (smem_addr(smem) + 1023u) & ~1023u;\n"
            "    const u32 sKV = sQ + Q_TILE_BYTES;\n\n"
            "    /* 1. Q tile -> shared memory (async); the band plan of this query tile. */\n"
            "    load_tile<BM>(sQ, q, p.q_sn, m0, n, tid);\n"
            "    cp_async_commit();\n"
            "    if (tid == 0) band_plan_build(plan, (const int *)p.bands + (p.head_offset + h) * BAND_STRIDE, m0, n);\n"
            "    __syncthreads();\n"
            "    const int ntiles = plan.total;\n\n"
            "    /* 2. Prefetch the first PREFETCH KV tiles, one commit group each (empty groups too,\n"
            "     * so that the wait counts below stay fixed).  Q's group is older than all of them, so\n"
            "     * the first wait in the loop covers it. */\n"
            "#pragma unroll\n"
            "    for (int st = 0; st < PREFETCH; ++st) {\n"
            "        if (st < ntiles) load_kv(sKV + st * STAGE_BYTES, k, p.k_sn, v, p.v_sn, band_tile_at(plan, st) * BN, n, tid);\n"
            "        cp_async_commit();\n"
            "    }\n\n"
            "    /* 3. Running state of this lane's 2 rows (WM = 1), and the warpgroup's rows. */\n"
            "    float acc[1][HEAD_DIM / 8][4], m[1][2], l[1][2];\n"
            "#pragma unroll\n"
            "    for (int db = 0; db < HEAD_DIM / 8; ++db) acc[0][db][0] = acc[0][db][1] = acc[0][db][2] = acc[0][db][3] = 0.f;\n"
            "    m[0][0] = m[0][1] = neg_inf();\n"
            "    l[0][0] = l[0][1] = 0.f;\n"
            "    const int wg_row0 = m0 + wg * WG_ROWS;                     /* the warpgroup's rows */\n"
            "    const int wg_last = min(wg_row0 + WG_ROWS - 1, n - 1);\n"
            "    const int trow0 = warp * 16;                               /* this warp's rows, within the tile */\n"
            "    const int row0 = m0 + trow0, row_last = min(row0 + 15, n - 1);\n"
            "    /* Descriptors of this warpgroup's Q rows, and of stage 0's K and V; other k16\n"
            "     * steps and stages add byte offsets / 16 to the address field. */\n"
            "    const u64 dq = smem_desc(sQ + wg * WG_ROWS * SW_ROW, 16, 1024);\n"
            "    const u64 dk0 = smem_desc(sKV, 16, 1024);\n"
            "    const u64 dv0 = smem_desc(sKV + KV_TILE_BYTES, BN * SW_ROW, 1024);\n\n"
            "    /* 4. The KV tiles of the head's bands, in ascending key order, software-pipelined\n"
            "     * inside the warpgroup: iteration it issues S = Q K_it and then O += P V of the\n"
            "     * previous tile, both asynchronous; the softmax of tile it then runs on the CUDA\n"
            "     * cores and the special-function unit while the tensor cores still work on P V.\n"
            "     * Only the rescale of O waits for P V.  So V of tile it - 1 is read during\n"
            "     * iteration it, and a stage is refilled PREFETCH = STAGES - 2 tiles ahead.\n"
            "     * Every warpgroup runs every tile, even one its rows skip (it is then fully\n"
            "     * masked, P = 0): wgmma on a path the compiler cannot prove uniform would be\n"
            "     * serialized (ptxas C7518), and skips are rare band-edge tiles. */\n"
            "    u32 pf[BN / 16][4];       /* P of the previous tile: the A fragments of O += P V */\n"
            "    float s[1][BN / 8][4];    /* S, then P, of the current tile */\n\n"
            "    /* Wait for tile it, in `stage`: this thread's copies (wait), made visible to wgmma\n"
            "     * (proxy fence), everyone's (barrier).  The barrier also means every warpgroup is\n"
            "     * past iteration it - 1, so done with tile it - 2, whose stage the prefetch of tile\n"
            "     * it + PREFETCH then overwrites. */\n"
            "    auto tile_landed = [&](int it, int stage) {\n"
            "        cp_async_wait<PREFETCH - 1>();\n"
            "        fence_proxy_async();\n"
            "        __syncthreads();\n"
            "        if (it + PREFETCH < ntiles)\n"
            "            load_kv(sKV + (stage + PREFETCH) % STAGES * STAGE_BYTES, k, p.k_sn, v, p.v_sn,\n"
            "                    band_tile_at(plan, it + PREFETCH) * BN, n, tid);\n"
            "        cp_async_commit();\n"
            "    };\n"
            "    /* S of tile it (complete) -> P: the mask unless the tile fully allows this warp's\n"
            "     * rows, then the online softmax; alphas: O's rescale factors. */\n"
            "    auto scores_to_p = [&](int it, float (&alphas)[1][2]) {\n"
            "        const int n0 = band_tile_at(plan, it) * BN;\n"
            "        const int wg_kind = wg_row0 < n ? band_tile_kind(plan, wg_row0, wg_last, n0, n) : TILE_SKIP;\n"
            "        if (wg_kind != TILE_FULL &&\n"
            "            (wg_kind == TILE_SKIP || row0 >= n || band_tile_kind(plan, row0, row_last, n0, n) != TILE_FULL))\n"
            "            mask_tile(s, plan, row0 + lane / 4, n0, n, lane);\n"
            "        softmax_p(s, m, l, alphas, p.scale_log2);\n"
            "    };\n\n"
            "    if (ntiles > 0) {   /* block-uniform */\n"
            "        /* The first tile: S, P; nothing to add to O yet. */\n"
            "        float alphas[1][2];\n"
            "        tile_landed(0, 0);\n"
            "        issue_qk(s, dq, dk0);\n"
            "        wgmma_wait<0>();\n"
            "        regs_fence(s[0]);\n"
            "        scores_to_p(0, alphas);\n"
            "        pack_p(pf, s);\n"
            "        int stage = 1 % STAGES, pv_stage = 0;\n"
            "        for (int it = 1; it < ntiles; ++it) {\n"
            "            tile_landed(it, stage);\n"
            "            issue_qk(s, dq, dk0 + ((u32)(stage * STAGE_BYTES) >> 4));     /* S = Q K^T, this tile */\n"
            "            issue_pv(acc, pf, dv0 + ((u32)(pv_stage * STAGE_BYTES) >> 4));   /* O += P V, previous tile */\n"
            "            wgmma_wait<1>();   /* S, the older group, is done; P V runs on */\n"
            "            regs_fence(s[0]);\n"
            "            scores_to_p(it, alphas);\n"
            "            wgmma_wait<0>();   /* P V is done: O may be rescaled and pf reused */\n"
            "            regs_fence(acc[0]);\n"
            "            rescale_o(acc, alphas);\n"
            "            pack_p(pf, s);\n"
            "            pv_stage = stage;\n"
            "            stage = stage + 1 == STAGES ? 0 : stage + 1;\n"
            "        }\n"
            "        issue_pv(acc, pf, dv0 + ((u32)(pv_stage * STAGE_BYTES) >> 4));   /* the last tile's P V */\n"
            "        wgmma_wait<0>();\n"
            "        regs_fence(acc[0]);\n"
            "    }\n\n"
            "    /* 5. O = acc / l and LSE (row i at o + i * p.o_sn and lse + i).  O is staged\n"
            "     * through the Q tile, so every copy into it must have landed first: with ntiles\n"
            "     * == 0 (every row of the tile lies before its head's band) no wait above covered\n"
            "     * Q's group, and Q's bytes could land after O's and be stored as O.  Each\n"
            "     * thread drains its own copies (wait), the barrier makes that true of all (a\n"
            "     * warp's rows were copied by other warps' threads).  Issue 13. */\n"
            "    cp_async_wait<0>();\n"
            "    __syncthreads();\n"
            "    elem_t *o = (elem_t *)p.o + b * p.o_sb + h * p.o_sh;\n"
            "    float *lse = (float *)p.lse + b * p.lse_sb + h * p.lse_sh;\n"
            "    write_output(acc, m, l, p.scale_log2, sQ, trow0, o, p.o_sn, lse, row0, n, lane);\n"
            "}\n");
}

void emit_fwd_wgmma(strbuf *out, const sp_kcfg *cfg)
{
    emit_wg_layout(out);
    emit_tile_loads(out, "tile_off<ROWS>");
    emit_wg_mma(out, cfg);
    emit_fwd_mask(out);
    emit_fwd_softmax(out);
    emit_wg_epilogue(out);
    emit_wg_kernel(out, cfg);
}
