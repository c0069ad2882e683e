/* kernels/decode.cuh: decoding from a KV cache, split-KV (FlashDecoding's
 * structure on the band plan), mma.sync so it runs on sm_80 and later:
 *
 *     one CTA: (split, kv head x row block, batch); its BM = 16 query rows are
 *         all GROUP query heads of the kv head times the T new tokens (head-major:
 *         row r = g T + t, padded to 16), so each K/V byte is read once per group
 *     rows -> positions and bands at the sequence's length (one thread per row);
 *         the key tiles = the union over rows and intervals (decode_plan.cuh),
 *         split evenly over `splits` CTAs
 *     Q -> registers; STAGES - 1 tiles in flight (16-byte cp.async, paged or not)
 *     per tile: warp w takes keys [w BN/WARPS, (w+1) BN/WARPS) of it for all 16
 *         rows: S = Q K^T, band mask, online softmax, O += P V
 *     the warps' (m, l, O) merged through shared memory; then either O and LSE
 *         (splits == 1) or the split's normalized O and LSE into the workspace,
 *         which decode_combine_kernel weights by exp(LSE_s - max) into O and LSE.
 *
 * It is memory-bound (16 rows against every key read), so the effort goes to
 * bytes: only tiles inside some row's bands are read, rows past the sequence
 * end are zero-filled (not read), several tiles are in flight.  Rows with no
 * allowed key get O = 0 and LSE = -inf (DESIGN.md; flash-attention would
 * write +inf).  The entries (codegen/emit_dec.c) call decode_kernel and
 * decode_combine_kernel. */
#pragma once
#include "ptx.cuh"
#include "layout.cuh"
#include "decode_plan.cuh"

/* The block's rows and its key tiles, built at the start (static shared memory). */
struct dec_plan {
    int pos[BM];                        /* query position i of row r; -1: padding or before the sequence */
    int cnt[BM];                        /* intervals of row r's head at the sequence's length */
    int lo[BM][MAX_INTERVALS], hi[BM][MAX_INTERVALS];
    int first[RUN_CAP + 1], last[RUN_CAP + 1];   /* key tiles: sorted disjoint runs */
    int runs, total;
};

/* The it-th key tile of the union, 0 <= it < total. */
DEV int dec_tile_at(const dec_plan &pl, int it)
{
    int r = 0;
    while (it > pl.last[r] - pl.first[r]) { it -= pl.last[r] - pl.first[r] + 1; ++r; }
    return pl.first[r] + it;
}

/* Where a sequence's K and V rows are: element offsets of token j's row of
 * kv head kvh (contiguous: b's rows; paged: through the block table). */
struct dec_cache {
    const elem_t *k, *v;                /* at batch b (contiguous) or page 0 (paged), kv head kvh */
    const int *table;                   /* this sequence's block table row, or 0 */
    long long k_sn, v_sn, k_sp, v_sp;   /* row strides; page strides when paged */
    int shift, len;                     /* log2(page size) (0: contiguous); tokens in the cache */
};

/* Keys [n0, n0 + BN) of K and V -> the stage at sK (K tile, then V tile), 16-byte
 * chunks with cp.async.  Thread tid copies chunks tid, tid + THREADS, ...: consecutive
 * threads copy consecutive chunks of a row, so reads coalesce.  Keys >= len are
 * zero-filled (source size 0: not read; their address is clamped to row 0). */
DEV void dec_load_kv(u32 sK, const dec_cache &c, int n0, int tid)
{
#pragma unroll 2   /* not fully: at d256 the addresses of 16 chunks would take the registers O needs */
    for (int i = 0; i < (BN * CHUNKS + THREADS - 1) / THREADS; ++i) {
        const int ch = tid + i * THREADS;
        if ((BN * CHUNKS) % THREADS == 0 || ch < BN * CHUNKS) {
            const int row = ch / CHUNKS, chunk = ch % CHUNKS, j = n0 + row;
            const bool valid = j < c.len;
            long long ko = 0, vo = 0;
            if (valid) {
                if (c.shift) {
                    const long long page = __ldg(c.table + (j >> c.shift)), r = j & ((1 << c.shift) - 1);
                    ko = page * c.k_sp + r * c.k_sn;
                    vo = page * c.v_sp + r * c.v_sn;
                } else {
                    ko = (long long)j * c.k_sn;
                    vo = (long long)j * c.v_sn;
                }
            }
            cp_async_16(sK + tile_off(row, chunk), c.k + ko + chunk * 8, valid);
            cp_async_16(sK + KV_TILE_BYTES + tile_off(row, chunk), c.v + vo + chunk * 8, valid);
        }
    }
}

/* Is distance d allowed for row r (its intervals in shared memory)? */
DEV bool dec_allows(const dec_plan &pl, int r, int d)
{
    bool a = false;
    const int cnt = pl.cnt[r];
#pragma unroll 1   /* a loop, not unrolled: the registers stay with O (d256) */
    for (int k = 0; k < cnt; ++k) a |= (pl.lo[r][k] <= d) & (d < pl.hi[r][k]);
    return a;
}

/* One thread per row: position and bands of row r of this block at length len.  h:
 * its global head; layout >= 0: re-derived from the length (band_layout), else the
 * plan's band table row (bands that do not depend on the length). */
DEV void dec_row_setup(dec_plan &pl, const sp_dec_kparams &p, int r, int kvh, int rb, int len)
{
    const int rg = rb * BM + r;
    int cnt = 0, pos = -1;
    if (rg < GROUP * p.new_tokens) {
        const int t = rg % p.new_tokens, h = kvh * GROUP + rg / p.new_tokens;
        pos = len - p.new_tokens + t;
        if (pos >= 0) {
            if (p.layout >= 0) {
                long long lo[2], hi[2];
                cnt = band_layout(p.layout, HEADS, h, p.layout_basis, len, lo, hi);
                for (int k = 0; k < cnt; ++k) { pl.lo[r][k] = (int)lo[k]; pl.hi[r][k] = (int)hi[k]; }
            } else {
                const int *row = (const int *)p.bands + h * BAND_STRIDE;
                cnt = min(row[0], MAX_INTERVALS);
                for (int k = 0; k < cnt; ++k) { pl.lo[r][k] = row[1 + 2 * k]; pl.hi[r][k] = row[2 + 2 * k]; }
            }
            if (cnt < 0) cnt = 0;
        } else {
            pos = -1;
        }
    }
    for (int k = cnt; k < MAX_INTERVALS; ++k) { pl.lo[r][k] = 0; pl.hi[r][k] = 0; }
    pl.cnt[r] = cnt;
    pl.pos[r] = pos;
}

/* Thread 0: the union of every row's key tiles.  Interval [lo, hi) of row i reaches
 * keys [max(i - hi + 1, 0), i - lo]. */
DEV void dec_runs_build(dec_plan &pl)
{
    int n = 0;
    for (int r = 0; r < BM; ++r) {
        const int i = pl.pos[r];
        for (int k = 0; k < pl.cnt[r]; ++k) {
            const int j_lo = max(i - pl.hi[r][k] + 1, 0), j_hi = i - pl.lo[r][k];
            if (j_lo <= j_hi) n = tile_runs_add(pl.first, pl.last, n, j_lo / BN, j_hi / BN);
        }
    }
    int total = 0;
    for (int r = 0; r < n; ++r) total += pl.last[r] - pl.first[r] + 1;
    pl.runs = n;
    pl.total = total;
}

/* ==== S = Q K^T for this warp's WARP_KEYS keys of the tile (sKw: its first key) ====
 * As in fwd_mma.cuh's qk_tile: one ldmatrix.x4 of K gives the B fragments of two
 * n8 blocks (lane l: key 16p + l % 8 + 8 (l / 16), chunk 2kc + (l / 8) % 2). */
DEV void dec_qk(float (&s)[WARP_KEYS / 8][4], const u32 (&qf)[HEAD_DIM / 16][4], u32 sQ, u32 sK, int kbase, int lane)
{
#pragma unroll
    for (int nb = 0; nb < WARP_KEYS / 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
    for (int kc = 0; kc < HEAD_DIM / 16; ++kc) {
        u32 q[4];
        if constexpr (Q_IN_REGS) {
            q[0] = qf[kc][0]; q[1] = qf[kc][1]; q[2] = qf[kc][2]; q[3] = qf[kc][3];
        } else {
            ldsm_x4(sQ + tile_off(lane & 15, 2 * kc + (lane >> 4)), q);
        }
#pragma unroll
        for (int pp = 0; pp < WARP_KEYS / 16; ++pp) {
            u32 kf[4];
            ldsm_x4(sK + tile_off(kbase + 16 * pp + (lane & 7) + ((lane >> 4) << 3), 2 * kc + ((lane >> 3) & 1)), kf);
            mma_16816(s[2 * pp], q, kf[0], kf[1]);
            mma_16816(s[2 * pp + 1], q, kf[2], kf[3]);
        }
    }
}

/* ==== O += P V (fwd_mma.cuh's pv_tile for one m16 tile): P from the S accumulators,
 * V read transposed (lane l: key 16kc + l % 16, chunk 2dp + l / 16). */
DEV void dec_pv(float (&acc)[HEAD_DIM / 8][4], const float (&s)[WARP_KEYS / 8][4], u32 sV, int kbase, int lane)
{
#pragma unroll
    for (int kc = 0; kc < WARP_KEYS / 16; ++kc) {
        u32 a[4];
        a[0] = pack2(s[2 * kc][0], s[2 * kc][1]);
        a[1] = pack2(s[2 * kc][2], s[2 * kc][3]);
        a[2] = pack2(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        a[3] = pack2(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
        for (int dp = 0; dp < HEAD_DIM / 16; ++dp) {
            u32 vf[4];
            ldsm_x4_trans(sV + tile_off(kbase + 16 * kc + (lane & 15), 2 * dp + (lane >> 4)), vf);
            mma_16816(acc[2 * dp], a, vf[0], vf[1]);
            mma_16816(acc[2 * dp + 1], a, vf[2], vf[3]);
        }
    }
}

/* ==== Band mask and online softmax (exp2 domain, as softmax.cuh) ====
 * Lane l holds rows g = l / 4 (s[nb][0..1]) and g + 8 (s[nb][2..3]), keys
 * n0 + kbase + 8nb + 2(l % 4) + {0, 1}.  A score stays if its distance is in its row's
 * bands (row positions are < len, so such a key exists); else -inf.  While every key
 * of a row so far is masked, m = -inf and the exp base is 0 (no -inf - -inf). */
DEV void dec_mask_softmax(float (&s)[WARP_KEYS / 8][4], float (&m)[2], float (&l)[2], float (&acc)[HEAD_DIM / 8][4],
                          const dec_plan &pl, int n0, int lane, float c)
{
    const int g = lane >> 2;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = g + 8 * r, i = pl.pos[row];
#pragma unroll
        for (int nb = 0; nb < WARP_KEYS / 8; ++nb)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int j = n0 + 8 * nb + 2 * (lane & 3) + e;
                if (!dec_allows(pl, row, i - j)) s[nb][2 * r + e] = neg_inf();
            }
        float mx = m[r];
#pragma unroll
        for (int nb = 0; nb < WARP_KEYS / 8; ++nb) mx = fmaxf(mx, fmaxf(s[nb][2 * r], s[nb][2 * r + 1]));
        mx = quad_max(mx);
        const float base = mx == neg_inf() ? 0.f : mx * c;
        const float alpha = exp2_approx(m[r] * c - base);
        m[r] = mx;
        float sum = 0.f;
#pragma unroll
        for (int nb = 0; nb < WARP_KEYS / 8; ++nb) {
            s[nb][2 * r] = exp2_approx(fmaf(s[nb][2 * r], c, -base));
            s[nb][2 * r + 1] = exp2_approx(fmaf(s[nb][2 * r + 1], c, -base));
            sum += s[nb][2 * r] + s[nb][2 * r + 1];
        }
        l[r] = l[r] * alpha + sum;
#pragma unroll
        for (int db = 0; db < HEAD_DIM / 8; ++db) {
            acc[db][2 * r] *= alpha;
            acc[db][2 * r + 1] *= alpha;
        }
    }
}

/* One 16-bit value (round to nearest even). */
DEV elem_t to_elem(float x) { return (elem_t)(pack2(x, 0.f) & 0xffffu); }

/* ==== The decode kernel ==== */
DEV void decode_kernel(const sp_dec_kparams &p)
{
    extern __shared__ unsigned char smem[];
    __shared__ dec_plan pl;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int split = blockIdx.x, kvh = blockIdx.y / p.row_blocks, rb = blockIdx.y % p.row_blocks, b = blockIdx.z;
    int len = p.kv_lens ? ((const int *)p.kv_lens)[b] : p.max_len;
    len = min(max(len, 0), p.max_len);   /* a bad length reads no byte outside the cache */

    const u32 sQ = (smem_addr(smem) + 127u) & ~127u;
    const u32 sKV = sQ + Q_TILE_BYTES;

    /* 1. Q rows -> shared memory (async; rows past GROUP * T zero-filled); each row's
     * position and bands. */
    const elem_t *q = (const elem_t *)p.q + b * p.q_sb;
#pragma unroll
    for (int i = 0; i < (BM * CHUNKS + THREADS - 1) / THREADS; ++i) {
        const int ch = tid + i * THREADS;
        if ((BM * CHUNKS) % THREADS == 0 || ch < BM * CHUNKS) {
            const int r = ch / CHUNKS, chunk = ch % CHUNKS, rg = rb * BM + r;
            const bool valid = rg < GROUP * p.new_tokens;
            const long long off = valid ? (rg % p.new_tokens) * p.q_sn + (kvh * GROUP + rg / p.new_tokens) * p.q_sh : 0;
            cp_async_16(sQ + tile_off(r, chunk), q + off + chunk * 8, valid);
        }
    }
    cp_async_commit();
    if (tid < BM) dec_row_setup(pl, p, tid, kvh, rb, len);
    __syncthreads();
    if (tid == 0) dec_runs_build(pl);
    __syncthreads();

    /* 2. This split's share of the tiles; the first STAGES - 1 in flight. */
    const int it0 = (int)((long long)pl.total * split / p.splits);
    const int ntiles = (int)((long long)pl.total * (split + 1) / p.splits) - it0;
    dec_cache cache;
    cache.shift = p.page_shift;
    cache.len = len;
    cache.k_sn = p.k_sn;
    cache.v_sn = p.v_sn;
    cache.k_sp = p.k_sb;
    cache.v_sp = p.v_sb;
    cache.table = p.page_shift ? (const int *)p.block_table + b * p.bt_sb : (const int *)0;
    cache.k = (const elem_t *)p.k + (p.page_shift ? 0 : b * p.k_sb) + kvh * p.k_sh;
    cache.v = (const elem_t *)p.v + (p.page_shift ? 0 : b * p.v_sb) + kvh * p.v_sh;
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (st < ntiles) dec_load_kv(sKV + st * STAGE_BYTES, cache, dec_tile_at(pl, it0 + st) * BN, tid);
        cp_async_commit();
    }

    /* 3. Q -> registers (Q_IN_REGS), as A fragments: every warp has all 16 rows. */
    cp_async_wait<STAGES - 1>();
    __syncthreads();
    u32 qf[HEAD_DIM / 16][4];
    if constexpr (Q_IN_REGS) {
#pragma unroll
        for (int kc = 0; kc < HEAD_DIM / 16; ++kc) ldsm_x4(sQ + tile_off(lane & 15, 2 * kc + (lane >> 4)), qf[kc]);
    }

    float acc[HEAD_DIM / 8][4], m[2], l[2];
#pragma unroll
    for (int db = 0; db < HEAD_DIM / 8; ++db) acc[db][0] = acc[db][1] = acc[db][2] = acc[db][3] = 0.f;
    m[0] = m[1] = neg_inf();
    l[0] = l[1] = 0.f;
    const int kbase = warp * WARP_KEYS;

    /* 4. The tiles, STAGES - 1 ahead (fwd_mma.cuh's pipeline). */
    int stage = 0;
    for (int it = 0; it < ntiles; ++it) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int ahead = it + STAGES - 1;
        if (ahead < ntiles) {
            const int st = stage == 0 ? STAGES - 1 : stage - 1;
            dec_load_kv(sKV + st * STAGE_BYTES, cache, dec_tile_at(pl, it0 + ahead) * BN, tid);
        }
        cp_async_commit();

        const int n0 = dec_tile_at(pl, it0 + it) * BN;
        const u32 sK = sKV + stage * STAGE_BYTES, sV = sK + KV_TILE_BYTES;
        float s[WARP_KEYS / 8][4];
        dec_qk(s, qf, sQ, sK, kbase, lane);
        dec_mask_softmax(s, m, l, acc, pl, n0 + kbase, lane, p.scale_log2);
        dec_pv(acc, s, sV, kbase, lane);
        stage = stage + 1 == STAGES ? 0 : stage + 1;
    }

    /* 5. Merge the warps: each leaves (m, l, O) of its 16 rows in shared memory (the
     * stages, free once every copy landed and every warp is past its last tile). */
    cp_async_wait<0>();
    __syncthreads();
    float *mo = (float *)(smem + (sKV - smem_addr(smem)));     /* [WARPS][BM][HEAD_DIM] */
    float *mm = mo + WARPS * BM * HEAD_DIM, *ml = mm + WARPS * BM;   /* [WARPS][BM] */
    {
        const int g = lane >> 2, t = lane & 3;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float sum = quad_sum(l[r]);
            if (t == 0) { mm[warp * BM + g + 8 * r] = m[r]; ml[warp * BM + g + 8 * r] = sum; }
#pragma unroll
            for (int db = 0; db < HEAD_DIM / 8; ++db) {
                float *dst = mo + (warp * BM + g + 8 * r) * HEAD_DIM + 8 * db + 2 * t;
                dst[0] = acc[db][2 * r];
                dst[1] = acc[db][2 * r + 1];
            }
        }
    }
    __syncthreads();

    /* 6. Per row and pair of dims: the warps' shares weighted by exp2((m_w - M) c). */
    const float c = p.scale_log2;
    for (int x = tid; x < BM * HEAD_DIM / 2; x += THREADS) {
        const int r = x / (HEAD_DIM / 2), d = 2 * (x % (HEAD_DIM / 2)), rg = rb * BM + r;
        if (rg >= GROUP * p.new_tokens) continue;
        const int t = rg % p.new_tokens, h = kvh * GROUP + rg / p.new_tokens;
        float M = neg_inf();
#pragma unroll
        for (int w = 0; w < WARPS; ++w) M = fmaxf(M, mm[w * BM + r]);
        float L = 0.f, o0 = 0.f, o1 = 0.f;
        if (M != neg_inf()) {
#pragma unroll
            for (int w = 0; w < WARPS; ++w) {
                const float mw = mm[w * BM + r];
                const float f = mw == neg_inf() ? 0.f : exp2_approx((mw - M) * c);
                L += f * ml[w * BM + r];
                o0 += f * mo[(w * BM + r) * HEAD_DIM + d];
                o1 += f * mo[(w * BM + r) * HEAD_DIM + d + 1];
            }
        }
        const float inv = L > 0.f ? 1.f / L : 0.f;
        const float lse = L > 0.f ? (M * c + log2_approx(L)) * LN2 : neg_inf();
        const long long row = ((long long)b * p.heads + h) * p.new_tokens + t;
        if (p.splits == 1) {
            elem_t *o = (elem_t *)p.o + b * p.o_sb + t * p.o_sn + h * p.o_sh + d;
            *(u32 *)o = pack2(o0 * inv, o1 * inv);
            if (d == 0) ((float *)p.lse)[b * p.lse_sb + h * p.lse_sh + t] = lse;
        } else {
            float *op = (float *)p.o_part + (row * p.splits + split) * HEAD_DIM + d;
            op[0] = o0 * inv;
            op[1] = o1 * inv;
            if (d == 0) ((float *)p.lse_part)[row * p.splits + split] = lse;
        }
    }
}

/* ==== The combine kernel: one warp per (b, h, t) row, COMBINE_WARPS rows per CTA ====
 * O = sum_s w_s O_s / sum_s w_s and LSE = M + ln(sum_s w_s), w_s = exp(LSE_s - M),
 * M the largest LSE_s; every split empty: O = 0, LSE = -inf. */
DEV void decode_combine_kernel(const sp_dec_kparams &p)
{
    const int lane = threadIdx.x % 32;
    const long long row = (long long)blockIdx.x * COMBINE_WARPS + threadIdx.x / 32;
    const long long rows = (long long)p.batch * p.heads * p.new_tokens;
    if (row >= rows) return;
    const float *lp = (const float *)p.lse_part + row * p.splits;
    const float *op = (const float *)p.o_part + row * p.splits * HEAD_DIM;
    float M = neg_inf();
    for (int s = lane; s < p.splits; s += 32) M = fmaxf(M, lp[s]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    const int t = (int)(row % p.new_tokens), h = (int)(row / p.new_tokens % p.heads), b = (int)(row / ((long long)p.new_tokens * p.heads));
    float L = 0.f;
    for (int s = 0; s < p.splits; ++s) {
        const float ls = lp[s];
        L += M == neg_inf() || ls == neg_inf() ? 0.f : exp2_approx((ls - M) * LOG2E);
    }
    const float inv = L > 0.f ? 1.f / L : 0.f;
    elem_t *o = (elem_t *)p.o + b * p.o_sb + t * p.o_sn + h * p.o_sh;
    for (int d = 2 * lane; d < HEAD_DIM; d += 64) {
        float o0 = 0.f, o1 = 0.f;
        for (int s = 0; s < p.splits; ++s) {
            const float ls = lp[s];
            if (M == neg_inf() || ls == neg_inf()) continue;
            const float w = exp2_approx((ls - M) * LOG2E);
            o0 += w * op[s * HEAD_DIM + d];
            o1 += w * op[s * HEAD_DIM + d + 1];
        }
        *(u32 *)(o + d) = pack2(o0 * inv, o1 * inv);
    }
    if (lane == 0) ((float *)p.lse)[b * p.lse_sb + h * p.lse_sh + t] = L > 0.f ? M + log2_approx(L) * LN2 : neg_inf();
}
