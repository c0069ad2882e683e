/* Host glue of the decode kernels (runtime/decode.h). */
#include "runtime/decode.h"

#include <string.h>

#include "codegen/bands.h"
#include "codegen/family.h"
#include "kernels/decode_plan.cuh"

int decode_row_blocks(const sp_kcfg *cfg, int new_tokens)
{
    long rows = (long)(cfg->heads / cfg->kv_heads) * new_tokens;
    return (int)((rows + cfg->bm - 1) / cfg->bm);
}

static int layout_kind(const sp_pattern *pat)
{
    switch (pat->kind) {
    case SP_LOCAL: return BAND_LAYOUT_LOCAL;
    case SP_SPATTN: return BAND_LAYOUT_SPATTN;
    case SP_EXCLUSIVE: return BAND_LAYOUT_EXCLUSIVE;
    case SP_GAPPED: return BAND_LAYOUT_GAPPED;
    default: return -1;
    }
}

void decode_head_bands(const sp_pattern *pat, int heads, int h, int64_t len, const sp_band_list *bands_at_N,
                       sp_band_list *out)
{
    int kind = layout_kind(pat);
    if (kind < 0) {
        *out = *bands_at_N;
        return;
    }
    long long lo[2], hi[2];
    int n = band_layout(kind, heads, h, pat->band_basis, len, lo, hi);
    out->n = n > 0 ? n : 0;
    for (int k = 0; k < out->n; k++) {
        out->iv[k].lo = lo[k];
        out->iv[k].hi = hi[k];
    }
}

void decode_sequence_cost(const sp_kcfg *cfg, const sp_pattern *pat, const sp_band_list *bands_at_N, int new_tokens,
                          int64_t len, int64_t *tiles, int64_t *rows, int64_t *max_tiles)
{
    const int group = cfg->heads / cfg->kv_heads, rbs = decode_row_blocks(cfg, new_tokens), BN = cfg->bn;
    int first[16 * SP_MAX_INTERVALS + 1], last[16 * SP_MAX_INTERVALS + 1];
    *tiles = *rows = *max_tiles = 0;
    for (int kvh = 0; kvh < cfg->kv_heads; kvh++)
        for (int rb = 0; rb < rbs; rb++) {
            int n = 0;
            for (int r = 0; r < cfg->bm; r++) {
                int rg = rb * cfg->bm + r;
                if (rg >= group * new_tokens) break;
                int h = kvh * group + rg / new_tokens;
                int64_t i = len - new_tokens + rg % new_tokens;
                if (i < 0) continue;
                sp_band_list bl;
                decode_head_bands(pat, cfg->heads, h, len, &bands_at_N[h], &bl);
                for (int k = 0; k < bl.n && k < cfg->max_intervals; k++) {
                    int64_t j_lo = i - bl.iv[k].hi + 1, j_hi = i - bl.iv[k].lo;
                    if (j_lo < 0) j_lo = 0;
                    if (j_lo <= j_hi) n = tile_runs_add(first, last, n, (int)(j_lo / BN), (int)(j_hi / BN));
                }
            }
            int64_t t = 0;
            for (int r = 0; r < n; r++) {
                t += last[r] - first[r] + 1;
                for (int64_t x = first[r]; x <= last[r]; x++) {
                    int64_t n0 = x * BN, end = n0 + BN < len ? n0 + BN : len;
                    *rows += end > n0 ? end - n0 : 0;
                }
            }
            *tiles += t;
            if (t > *max_tiles) *max_tiles = t;
        }
}

int decode_splits(const sp_kcfg *cfg, int sm_count, int batch, int new_tokens, int64_t max_tiles)
{
    int64_t cap = max_tiles / 2;
    if (cap > KCFG_DEC_MAX_SPLITS) cap = KCFG_DEC_MAX_SPLITS;
    if (cap < 1) cap = 1;
    if (cfg->splits > 0) return cfg->splits < cap ? cfg->splits : (int)cap;
    int64_t ctas = (int64_t)batch * cfg->kv_heads * decode_row_blocks(cfg, new_tokens);
    int64_t sms = sm_count > 0 ? sm_count : 1;
    /* Waves: two CTAs share an SM (100 KB of shared memory each at d128), so
     * a wave is 2 x SMs CTAs.  The CTAs of a decode do unequal work (each
     * head has its own bands, and a kv head reads the union of its group's),
     * so the last ones of a wave run on while the SMs around them idle.
     * With at least two waves' worth (4 x SMs CTAs) the scheduler starts
     * short CTAs behind long ones and the tail is a small part of the step;
     * with fewer, split each block's tiles until there are: the smallest s
     * with CTAs x s >= 4 x SMs.  (B 64 x 16 kv heads = 1024 CTAs on 132 SMs:
     * 1 split; B 64 x 8 kv heads = 512: 2 splits, 3.9 waves instead of 1.9;
     * B 1 x 16: 33.)  Splitting costs a combine launch and the partial
     * results (B x H x T x s rows of D floats), small against the cache. */
    int64_t s = (4 * sms + ctas - 1) / ctas;
    if (s < 1) s = 1;
    return (int)(s < cap ? s : cap);
}

int decode_launch_splits(const sp_kcfg *cfg, const sp_pattern *pat, const sp_band_list *bands_at_N, int sm_count,
                         int batch, int new_tokens, int64_t N)
{
    int64_t tiles, rows, max_tiles;
    decode_sequence_cost(cfg, pat, bands_at_N, new_tokens, N, &tiles, &rows, &max_tiles);
    return decode_splits(cfg, sm_count, batch, new_tokens, max_tiles);
}

static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t decode_workspace_bytes(const sp_kcfg *cfg, int batch, int heads, int new_tokens, int splits)
{
    if (splits <= 1) return 0;
    size_t rows = (size_t)batch * heads * new_tokens * splits;
    return align16(rows * cfg->head_dim * 4) + align16(rows * 4);
}

int decode_pack(const sp_kcfg *cfg, const decode_args *a, sp_dec_kparams *kp, sp_err *e)
{
    if (cfg->kind != SP_KIND_DEC || cfg->threads <= 0)
        return sp_fail(e, SP_EXIT_USAGE, "decode launch: not a derived decode config");
    if (attn_check_shape("decode", cfg, a->batch, a->max_len, a->heads, a->kv_heads, 0, a->bands, a->lse, a->scale, e))
        return -1;
    if (attn_check_tensor("decode", "q", &a->q, e) || attn_check_tensor("decode", "k", &a->k, e) ||
        attn_check_tensor("decode", "v", &a->v, e) || attn_check_tensor("decode", "o", &a->o, e))
        return -1;
    if (a->new_tokens < 1 || a->new_tokens > a->max_len)
        return sp_fail(e, SP_EXIT_USAGE, "decode launch: new_tokens %d must be in 1..%d (the cache's length)",
                       a->new_tokens, a->max_len);
    int shift = 0;
    if (a->block_table) {
        while ((1 << shift) < a->page_size) shift++;
        if (a->page_size < 16 || a->page_size > 256 || (1 << shift) != a->page_size)
            return sp_fail(e, SP_EXIT_USAGE, "decode launch: page size %d must be a power of two in 16..256",
                           a->page_size);
        if ((long long)a->max_pages * a->page_size < a->max_len)
            return sp_fail(e, SP_EXIT_USAGE, "decode launch: %d pages of %d tokens hold fewer than N = %d", a->max_pages,
                           a->page_size, a->max_len);
    }
    if (a->splits < 1 || a->splits > KCFG_DEC_MAX_SPLITS || (a->splits > 1 && !a->workspace))
        return sp_fail(e, SP_EXIT_USAGE, "decode launch: %d splits need a workspace (decode_workspace_bytes)", a->splits);
    memset(kp, 0, sizeof *kp);
    kp->q = a->q.ptr; kp->k = a->k.ptr; kp->v = a->v.ptr; kp->o = a->o.ptr;
    kp->lse = a->lse;
    kp->bands = a->bands;
    kp->kv_lens = a->kv_lens;
    kp->block_table = a->block_table;
    size_t rows = (size_t)a->batch * a->heads * a->new_tokens * a->splits;
    kp->o_part = a->splits > 1 ? a->workspace : 0;
    kp->lse_part = a->splits > 1 ? a->workspace + align16(rows * cfg->head_dim * 4) : 0;
    ATTN_SET_STRIDES(kp, q, a->q);
    ATTN_SET_STRIDES(kp, k, a->k);
    ATTN_SET_STRIDES(kp, v, a->v);
    ATTN_SET_STRIDES(kp, o, a->o);
    kp->lse_sb = a->lse_sb;
    kp->lse_sh = a->lse_sh;
    kp->bt_sb = a->block_table ? a->max_pages : 0;
    kp->batch = a->batch;
    kp->max_len = a->max_len;
    kp->new_tokens = a->new_tokens;
    kp->heads = a->heads;
    kp->kv_heads = a->kv_heads;
    kp->row_blocks = decode_row_blocks(cfg, a->new_tokens);
    kp->splits = a->splits;
    kp->page_shift = a->block_table ? shift : 0;
    kp->layout = layout_kind(a->pattern);
    kp->layout_basis = (int)(a->pattern->band_basis < 0x7fffffff ? a->pattern->band_basis : 0x7fffffff);
    kp->scale = a->scale;
    kp->scale_log2 = (float)(a->scale * 1.4426950408889634);
    return 0;
}

int decode_launch(sp_gpu *g, CUfunction fn, CUfunction combine, const sp_kcfg *cfg, const decode_args *a, sp_err *e)
{
    sp_dec_kparams kp;
    if (decode_pack(cfg, a, &kp, e)) return -1;
    long long gy = (long long)a->kv_heads * kp.row_blocks;
    if (gy > 65535) return sp_fail(e, SP_EXIT_USAGE, "decode launch: %lld kv heads x row blocks exceed 65535", gy);
    void *args[] = { &kp };
    if (cu_launch(g, fn, (unsigned)a->splits, (unsigned)gy, (unsigned)a->batch, (unsigned)cfg->threads,
                  (unsigned)cfg->smem_bytes, args, e))
        return -1;
    if (a->splits == 1) return 0;
    long long rows = (long long)a->batch * a->heads * a->new_tokens;
    return cu_launch(g, combine, (unsigned)((rows + 3) / 4), 1, 1, 128, 0, args, e);
}
