/* Host glue of the forward kernel: strides, parameter packing, launch. */
#include "runtime/attn.h"

#include "codegen/family.h"

#include <math.h>
#include <string.h>

void attn_default_strides(attn_tensor *t, attn_layout layout, long long N, int heads, int head_dim)
{
    if (layout == ATTN_BHND) {
        t->sn = head_dim;
        t->sh = N * head_dim;
        t->sb = (long long)heads * N * head_dim;
    } else {
        t->sh = head_dim;
        t->sn = (long long)heads * head_dim;
        t->sb = N * heads * head_dim;
    }
}

void attn_default_lse_strides(attn_fwd_args *a)
{
    a->lse_sh = a->seqlen;
    a->lse_sb = (long long)a->heads * a->seqlen;
}

/* The kernels copy rows as 16-byte chunks: every row start must be 16-byte
 * aligned, so the base and all strides (in 2-byte elements) must be too. */
int attn_check_tensor(const char *launch, const char *what, const attn_tensor *t, sp_err *e)
{
    if (!t->ptr) return sp_fail(e, SP_EXIT_USAGE, "%s launch: tensor %s is NULL", launch, what);
    if (t->ptr % 16 != 0 || t->sb % 8 != 0 || t->sn % 8 != 0 || t->sh % 8 != 0)
        return sp_fail(e, SP_EXIT_USAGE,
                       "%s launch: tensor %s is not 16-byte aligned (pointer and strides %lld, %lld, %lld "
                       "must be multiples of 8 elements)",
                       launch, what, t->sb, t->sn, t->sh);
    return 0;
}

int attn_check_shape(const char *launch, const sp_kcfg *cfg, int batch, int seqlen, int heads, int kv_heads,
                     int head_offset, sp_dptr bands, sp_dptr lse, float scale, sp_err *e)
{
    if (batch < 1 || seqlen < 1 || heads < 1 || kv_heads < 1)
        return sp_fail(e, SP_EXIT_USAGE, "%s launch: batch %d, seqlen %d, heads %d, kv_heads %d must be >= 1", launch,
                       batch, seqlen, heads, kv_heads);
    int group = cfg->heads / cfg->kv_heads;
    if (heads != kv_heads * group || head_offset < 0 || head_offset % group != 0 || head_offset + heads > cfg->heads)
        return sp_fail(e, SP_EXIT_USAGE,
                       "%s launch: heads %d (offset %d) and kv_heads %d do not fit the kernel's %d heads in groups of %d",
                       launch, heads, head_offset, kv_heads, cfg->heads, group);
    /* The band arithmetic (n0 + hi, below 2N) and padded lengths stay in int32. */
    if (batch > 65535 || heads > 65535 || seqlen > (1 << 30))
        return sp_fail(e, SP_EXIT_USAGE, "%s launch: batch %d or heads %d or seqlen %d too large", launch, batch, heads,
                       seqlen);
    if (!bands || !lse) return sp_fail(e, SP_EXIT_USAGE, "%s launch: band table or lse is NULL", launch);
    if (!(scale > 0) || !isfinite(scale))
        return sp_fail(e, SP_EXIT_USAGE, "%s launch: softmax scale %g must be positive", launch, (double)scale);
    return 0;
}

int attn_fwd_pack(const sp_kcfg *cfg, const attn_fwd_args *a, sp_kparams *kp, sp_err *e)
{
    if (cfg->kind != SP_KIND_FWD || cfg->threads <= 0)
        return sp_fail(e, SP_EXIT_USAGE, "attention launch: not a derived forward config");
    if (attn_check_shape("attention", cfg, a->batch, a->seqlen, a->heads, a->kv_heads, a->head_offset, a->bands,
                         a->lse, a->scale, e))
        return -1;
    if (attn_check_tensor("attention", "q", &a->q, e) || attn_check_tensor("attention", "k", &a->k, e) ||
        attn_check_tensor("attention", "v", &a->v, e) || attn_check_tensor("attention", "o", &a->o, e))
        return -1;
    if (a->cu_seqlens && (a->total < 1 || a->total > (1 << 30) || a->bands_sb < 0))
        return sp_fail(e, SP_EXIT_USAGE, "attention launch: packed total %lld tokens, band stride %d", a->total,
                       a->bands_sb);

    memset(kp, 0, sizeof *kp);
    kp->q = a->q.ptr;
    kp->k = a->k.ptr;
    kp->v = a->v.ptr;
    kp->o = a->o.ptr;
    kp->lse = a->lse;
    kp->bands = a->bands;
    kp->cu_seqlens = a->cu_seqlens;
    kp->bands_sb = a->cu_seqlens ? a->bands_sb : 0;
    const int packed = a->cu_seqlens != 0;   /* batch strides 0: kernels/seq.cuh moves the pointers */
    ATTN_SET_STRIDES(kp, q, a->q);
    ATTN_SET_STRIDES(kp, k, a->k);
    ATTN_SET_STRIDES(kp, v, a->v);
    ATTN_SET_STRIDES(kp, o, a->o);
    kp->lse_sb = a->lse_sb;
    kp->lse_sh = a->lse_sh;
    if (packed) kp->q_sb = kp->k_sb = kp->v_sb = kp->o_sb = kp->lse_sb = 0;
    kp->seqlen = a->seqlen;
    kp->batch = a->batch;
    kp->heads = a->heads;
    kp->head_offset = a->head_offset;
    kp->kv_heads = a->kv_heads;
    kp->scale = a->scale;
    kp->scale_log2 = (float)(a->scale * 1.4426950408889634);   /* log2(e) */
    return 0;
}

void attn_fwd_grid(const sp_kcfg *cfg, const attn_fwd_args *a, unsigned grid[3])
{
    grid[0] = (unsigned)((a->seqlen + cfg->bm - 1) / cfg->bm);
    grid[1] = (unsigned)a->heads;
    grid[2] = (unsigned)a->batch;
}

/* One tensor's TMA map: (head_dim, seq, heads, batch) with its strides, a
 * box of 64 values by `rows` rows (kernels/tma.cuh). */
int attn_tensor_map(CUtensorMap *m, const sp_kcfg *cfg, const attn_tensor *t, int seqlen, int heads, int batch,
                    int rows, sp_err *e)
{
    const uint64_t dims[4] = { (uint64_t)cfg->head_dim, (uint64_t)seqlen, (uint64_t)heads, (uint64_t)batch };
    const uint64_t strides[3] = { 2 * (uint64_t)t->sn, 2 * (uint64_t)t->sh, 2 * (uint64_t)t->sb };
    const uint32_t box[4] = { 64, (uint32_t)rows, 1, 1 };
    return cu_tensor_map_16bit(m, cfg->dtype == SP_BF16, t->ptr, dims, strides, box, e);
}

void attn_tma_packed_view(long long total, int *rows, int *batch, attn_tensor *const *ts, int n)
{
    *rows = (int)total;
    *batch = 1;
    for (int i = 0; i < n; i++) ts[i]->sb = ts[i]->sn * total;
}

int attn_fwd_maps(const sp_kcfg *cfg, const attn_fwd_args *a, attn_fwd_tma_maps *m, sp_err *e)
{
    memset(m, 0, sizeof *m);
    attn_tensor q = a->q, k = a->k, v = a->v, o = a->o;
    int rows = a->seqlen, batch = a->batch;
    if (a->cu_seqlens) attn_tma_packed_view(a->total, &rows, &batch, (attn_tensor *const[]){ &q, &k, &v, &o }, 4);
    if (attn_tensor_map(&m->q, cfg, &q, rows, a->heads, batch, cfg->bm, e) ||
        attn_tensor_map(&m->k, cfg, &k, rows, a->kv_heads, batch, cfg->bn, e) ||
        attn_tensor_map(&m->v, cfg, &v, rows, a->kv_heads, batch, cfg->bn, e) ||
        attn_tensor_map(&m->o, cfg, &o, rows, a->heads, batch, 64, e))
        return -1;
    return 0;
}

int attn_fwd_persistent_grid(const sp_gpu *g, const sp_kcfg *cfg, const attn_fwd_args *a, unsigned *grid, sp_err *e)
{
    long long items = (long long)((a->seqlen + cfg->bm - 1) / cfg->bm) * a->heads * a->batch;
    if (items > 0x7fffffffLL)
        return sp_fail(e, SP_EXIT_USAGE, "attention launch: %lld work items (query tiles x heads x batch) exceed int32",
                       items);
    long long sms = g->sm_count > 0 ? g->sm_count : 1;
    *grid = (unsigned)(items < sms ? items : sms);
    return 0;
}

int attn_fwd_launch(sp_gpu *g, CUfunction fn, const sp_kcfg *cfg, const attn_fwd_args *a, sp_err *e)
{
    sp_kparams kp;
    if (attn_fwd_pack(cfg, a, &kp, e)) return -1;
    if (kcfg_family(cfg)->persistent) {   /* one CTA per SM, with the TMA maps as a second parameter */
        attn_fwd_tma_maps maps;
        unsigned ctas;
        if (attn_fwd_persistent_grid(g, cfg, a, &ctas, e) || attn_fwd_maps(cfg, a, &maps, e)) return -1;
        const long long items = (long long)((a->seqlen + cfg->bm - 1) / cfg->bm) * a->heads * a->batch;
        if (a->sched && !a->cu_seqlens && a->sched_ctas == (int)ctas && a->sched_items == items)
            kp.sched = a->sched;   /* a list for another shape would skip or repeat items */
        void *args[] = { &kp, &maps };
        return cu_launch(g, fn, ctas, 1, 1, (unsigned)cfg->threads, (unsigned)cfg->smem_bytes, args, e);
    }
    unsigned grid[3];
    attn_fwd_grid(cfg, a, grid);
    void *args[] = { &kp };
    return cu_launch(g, fn, grid[0], grid[1], grid[2], (unsigned)cfg->threads, (unsigned)cfg->smem_bytes, args, e);
}
