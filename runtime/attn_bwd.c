/* Host glue of the backward kernels: scratch sizes, parameter packing,
 * grids, and the launch sequence of each mode. */
#include "runtime/attn_bwd.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codegen/family.h"
#include "runtime/packing.h"

/* main_sem runs (and dq_accum and the semaphores are needed) */
static int uses_sem(const sp_kcfg *cfg, const attn_bwd_args *a) { return a->deterministic && kcfg_bwd_dq_ordered(cfg); }

int attn_bwd_persistent(const sp_kcfg *cfg, const attn_bwd_args *a)
{
    return kcfg_family(cfg)->producer_threads != 0 && !a->cu_seqlens;
}

/* Bytes of main_sem's semaphores at the start of the dq_sem scratch (0 where main_sem does not
 * run); the persistent main's work counter follows them. */
static size_t sem_region_bytes(const sp_kcfg *cfg, const attn_bwd_args *a)
{
    return uses_sem(cfg, a) ? attn_bwd_sem_bytes(a, cfg->bm) : 0;
}

size_t attn_bwd_sem_bytes(const attn_bwd_args *a, int bm)
{
    long long tiles = a->cu_seqlens ? packing_sem_tiles(a->total, a->batch, bm)   /* per head */
                                    : (long long)a->batch * ((a->seqlen + bm - 1) / bm);
    return ((size_t)a->heads * (size_t)tiles * sizeof(int32_t) + 15) / 16 * 16;
}

void attn_bwd_scratch_sizes(const sp_kcfg *cfg, const attn_bwd_args *a, attn_bwd_scratch *s)
{
    size_t rows = (size_t)a->batch * (size_t)a->heads;
    int accum = !a->deterministic || uses_sem(cfg, a);
    s->dq_accum = accum ? rows * (size_t)a->seqlen * (size_t)cfg->head_dim * sizeof(float) : 0;
    s->delta = rows * (size_t)kcfg_bwd_seqlen_pad(a->seqlen) * sizeof(float);
    if (a->cu_seqlens) {   /* packed: by total tokens */
        s->dq_accum = accum ? (size_t)a->total * (size_t)a->heads * (size_t)cfg->head_dim * sizeof(float) : 0;
        s->delta = (size_t)a->heads * (size_t)packing_ws_rows(a->total, a->batch) * sizeof(float);
    }
    s->dq_sem = sem_region_bytes(cfg, a) + (attn_bwd_persistent(cfg, a) ? ATTN_BWD_WORK_COUNT_BYTES : 0);
    s->lse2 = s->delta;
}

int attn_bwd_lookup(CUmodule m, const sp_kcfg *cfg, attn_bwd_kernels *k, sp_err *e)
{
    for (int p = 0; p < BWD_PARTS; p++) {
        k->fn[p] = NULL;
        if (!kcfg_bwd_has_part(cfg, (sp_bwd_part)p)) continue;
        char name[128];
        kcfg_bwd_name(cfg, (sp_bwd_part)p, name, sizeof name);
        if (cu_function(m, name, &k->fn[p], e)) return -1;
    }
    return 0;
}

static int check_scratch(const char *what, sp_dptr p, sp_err *e)
{
    if (!p) return sp_fail(e, SP_EXIT_USAGE, "backward launch: scratch buffer %s is NULL", what);
    if (p % 16 != 0) return sp_fail(e, SP_EXIT_USAGE, "backward launch: scratch buffer %s is not 16-byte aligned", what);
    return 0;
}

int attn_bwd_pack(const sp_kcfg *cfg, const attn_bwd_args *a, sp_bwd_kparams *kp, sp_err *e)
{
    if (cfg->kind != SP_KIND_BWD || cfg->threads <= 0 || cfg->smem_bytes <= 0)
        return sp_fail(e, SP_EXIT_USAGE, "backward launch: not a derived backward config");
    if (attn_check_shape("backward", cfg, a->batch, a->seqlen, a->heads, a->kv_heads, a->head_offset, a->bands,
                         a->lse, a->scale, e))
        return -1;
    const char *names[] = { "q", "k", "v", "o", "dout", "dq", "dk", "dv" };
    const attn_tensor *tensors[] = { &a->q, &a->k, &a->v, &a->o, &a->dout, &a->dq, &a->dk, &a->dv };
    for (int t = 0; t < 8; t++)
        if (attn_check_tensor("backward", names[t], tensors[t], e)) return -1;
    const int sem = uses_sem(cfg, a), accum = !a->deterministic || sem, persistent = attn_bwd_persistent(cfg, a);
    if (check_scratch("delta", a->delta, e) || check_scratch("lse2", a->lse2, e) ||
        (accum && check_scratch("dq_accum", a->dq_accum, e)) || ((sem || persistent) && check_scratch("dq_sem", a->dq_sem, e)))
        return -1;
    if (a->cu_seqlens && (a->total < 1 || a->total > (1 << 30) || a->bands_sb < 0))
        return sp_fail(e, SP_EXIT_USAGE, "backward launch: packed total %lld tokens, band stride %d", a->total,
                       a->bands_sb);

    long long n_pad = kcfg_bwd_seqlen_pad(a->seqlen);
    memset(kp, 0, sizeof *kp);
    kp->q = a->q.ptr;
    kp->k = a->k.ptr;
    kp->v = a->v.ptr;
    kp->o = a->o.ptr;
    kp->dout = a->dout.ptr;
    kp->lse = a->lse;
    kp->dq = a->dq.ptr;
    kp->dk = a->dk.ptr;
    kp->dv = a->dv.ptr;
    /* pre zeroes the accumulator only when it is given (0 when main_det and dq run), and
     * the semaphores only when main_sem runs. */
    kp->dq_accum = accum ? a->dq_accum : 0;
    kp->dq_sem = sem ? a->dq_sem : 0;
    /* the same scratch, after the semaphores (attn_bwd_scratch_sizes) */
    kp->work_count = persistent ? a->dq_sem + sem_region_bytes(cfg, a) : 0;
    kp->delta = a->delta;
    kp->lse2 = a->lse2;
    kp->bands = a->bands;
    ATTN_SET_STRIDES(kp, q, a->q);
    ATTN_SET_STRIDES(kp, k, a->k);
    ATTN_SET_STRIDES(kp, v, a->v);
    ATTN_SET_STRIDES(kp, o, a->o);
    ATTN_SET_STRIDES(kp, do, a->dout);
    ATTN_SET_STRIDES(kp, dq, a->dq);
    ATTN_SET_STRIDES(kp, dk, a->dk);
    ATTN_SET_STRIDES(kp, dv, a->dv);
    kp->lse_sb = a->lse_sb;
    kp->lse_sh = a->lse_sh;
    /* The scratch layouts of attn_bwd.h: dq_accum [B, N, H, D], delta and lse2 [B, H, N_pad]. */
    kp->dqa_sh = cfg->head_dim;
    kp->dqa_sn = (long long)a->heads * cfg->head_dim;
    kp->dqa_sb = (long long)a->seqlen * a->heads * cfg->head_dim;
    kp->ws_sh = n_pad;
    kp->ws_sb = (long long)a->heads * n_pad;
    kp->sem_sh = (a->seqlen + cfg->bm - 1) / cfg->bm;   /* dq_sem [B, H, query tiles] */
    kp->sem_sb = (long long)a->heads * kp->sem_sh;
    kp->cu_seqlens = a->cu_seqlens;
    if (a->cu_seqlens) {   /* packed (kernels/seq_bwd.cuh): batch strides 0, scratch by total tokens */
        kp->bands_sb = a->bands_sb;
        kp->q_sb = kp->k_sb = kp->v_sb = kp->o_sb = kp->do_sb = 0;
        kp->dq_sb = kp->dk_sb = kp->dv_sb = kp->lse_sb = kp->dqa_sb = kp->ws_sb = kp->sem_sb = 0;
        kp->ws_sh = packing_ws_rows(a->total, a->batch);
        kp->sem_sh = packing_sem_tiles(a->total, a->batch, cfg->bm);
    }
    kp->seqlen = a->seqlen;
    kp->seqlen_pad = (int)n_pad;
    kp->batch = a->batch;
    kp->heads = a->heads;
    kp->head_offset = a->head_offset;
    kp->kv_heads = a->kv_heads;
    kp->scale = a->scale;
    kp->scale_log2 = (float)(a->scale * 1.4426950408889634);   /* log2(e) */
    return 0;
}

static unsigned ceil_div_u(long long a, long long b) { return (unsigned)((a + b - 1) / b); }

void attn_bwd_grid(const sp_kcfg *cfg, const attn_bwd_args *a, sp_bwd_part part, unsigned grid[3])
{
    grid[2] = (unsigned)a->batch;
    switch (part) {
    case BWD_PRE:
        grid[0] = ceil_div_u(kcfg_bwd_seqlen_pad(a->seqlen), kcfg_bwd_aux_rows(cfg));
        grid[1] = (unsigned)a->heads;
        break;
    case BWD_MAIN:
    case BWD_MAIN_DET:
    case BWD_MAIN_SEM:   /* x: KV tiles, last first (kernels/bwd_order.cuh says why) */
        grid[0] = ceil_div_u(a->seqlen, cfg->bn);
        grid[1] = (unsigned)a->kv_heads;
        break;
    case BWD_DQ:
        grid[0] = ceil_div_u(a->seqlen, cfg->bm);
        grid[1] = (unsigned)a->heads;
        break;
    default:
        grid[0] = ceil_div_u(a->seqlen, kcfg_bwd_aux_rows(cfg));
        grid[1] = (unsigned)a->heads;
        break;
    }
}

unsigned attn_bwd_persistent_blocks(const sp_kcfg *cfg, unsigned items, int sm_count)
{
    unsigned slots = (unsigned)(sm_count > 0 ? sm_count : 1) * (unsigned)(cfg->ctas > 1 ? cfg->ctas : 1);
    return items < slots ? items : slots;
}

void attn_bwd_parts(const sp_kcfg *cfg, int deterministic, sp_bwd_part parts[3])
{
    int det_split = deterministic && !kcfg_bwd_dq_ordered(cfg);   /* main_det + dq */
    parts[0] = BWD_PRE;
    parts[1] = !deterministic ? BWD_MAIN : det_split ? BWD_MAIN_DET : BWD_MAIN_SEM;
    parts[2] = det_split ? BWD_DQ : BWD_CONVERT;
}

int attn_bwd_maps(const sp_kcfg *cfg, const attn_bwd_args *a, attn_bwd_tma_maps *m, sp_err *e)
{
    memset(m, 0, sizeof *m);
    attn_tensor q = a->q, dout = a->dout, k = a->k, v = a->v;
    int rows = a->seqlen, batch = a->batch;
    if (a->cu_seqlens) attn_tma_packed_view(a->total, &rows, &batch, (attn_tensor *const[]){ &q, &dout, &k, &v }, 4);
    if (attn_tensor_map(&m->q, cfg, &q, rows, a->heads, batch, cfg->bm, e) ||
        attn_tensor_map(&m->dout, cfg, &dout, rows, a->heads, batch, cfg->bm, e) ||
        attn_tensor_map(&m->k, cfg, &k, rows, a->kv_heads, batch, cfg->bn, e) ||
        attn_tensor_map(&m->v, cfg, &v, rows, a->kv_heads, batch, cfg->bn, e))
        return -1;
    /* dq_accum [B, N, H, D] fp32 (attn_bwd_pack's strides): a query tile's BM rows x 32 dims
     * per box (the dQ writer's, kernels/bwd_ws.cuh), 128 bytes wide for the 128-byte swizzle. */
    const uint64_t dims[4] = { (uint64_t)cfg->head_dim, (uint64_t)rows, (uint64_t)a->heads, (uint64_t)batch };
    const uint64_t row = 4 * (uint64_t)a->heads * (uint64_t)cfg->head_dim;   /* packed: [total, H, D] */
    const uint64_t strides[3] = { row, 4 * (uint64_t)cfg->head_dim, row * (uint64_t)rows };
    const uint32_t box[4] = { 32, (uint32_t)cfg->bm, 1, 1 };
    return cu_tensor_map_f32(&m->dqa, a->dq_accum, dims, strides, box, e);
}

int attn_bwd_launch(sp_gpu *g, const attn_bwd_kernels *k, const sp_kcfg *cfg, const attn_bwd_args *a, sp_err *e)
{
    sp_bwd_kparams kp;
    if (attn_bwd_pack(cfg, a, &kp, e)) return -1;
    /* The warp-specialized main (bwd-ws) takes the TMA maps as a second parameter. */
    const int maps_needed = kcfg_family(cfg)->producer_threads != 0;
    attn_bwd_tma_maps maps;
    if (maps_needed && attn_bwd_maps(cfg, a, &maps, e)) return -1;
    sp_bwd_part parts[3];
    attn_bwd_parts(cfg, a->deterministic, parts);
    for (int i = 0; i < 3; i++) {
        if (!k->fn[parts[i]])
            return sp_fail(e, SP_EXIT_USAGE, "internal: backward kernel %s not loaded", kcfg_bwd_part_name(parts[i]));
        unsigned grid[3];
        attn_bwd_grid(cfg, a, parts[i], grid);
        if ((parts[i] == BWD_MAIN || parts[i] == BWD_MAIN_SEM) && kp.work_count) {   /* persistent: a block per slot of the GPU */
            grid[0] = attn_bwd_persistent_blocks(cfg, grid[0] * grid[1] * grid[2], g->sm_count);
            grid[1] = grid[2] = 1;
        }
        void *args[] = { &kp, &maps };
        if (!maps_needed || (parts[i] != BWD_MAIN && parts[i] != BWD_MAIN_SEM)) args[1] = NULL;   /* pre, convert: one */
        /* On sm_90a (the ws family) main and convert start as dependents of the kernel before
         * them, whose blocks let them (griddepcontrol, kernels/ptx.cuh): main's blocks take SMs
         * as pre's end and load K and V meanwhile, convert's wait on the SMs main's last blocks
         * leave, and neither waits for a launch.  Each waits (griddep_wait) before it reads
         * what the kernel before wrote.  The deterministic split (main_det, dq) stays ordinary. */
        const int dependent = maps_needed && (parts[i] == BWD_MAIN || parts[i] == BWD_MAIN_SEM || parts[i] == BWD_CONVERT);
        const unsigned threads = (unsigned)kcfg_bwd_threads(cfg, parts[i]), smem = (unsigned)kcfg_bwd_smem(cfg, parts[i]);
        if (dependent ? cu_launch_dependent(g, k->fn[parts[i]], grid, threads, smem, args, e)
                      : cu_launch(g, k->fn[parts[i]], grid[0], grid[1], grid[2], threads, smem, args, e))
            return -1;
    }
    return 0;
}
