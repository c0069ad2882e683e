/* check --seq-lens: a packed run against the same sequences run one by one
 * (issue 18 item 3).  The packed launch's outputs are already in the
 * problem's buffers; here the same kernels run again, once per sequence,
 * as a uniform batch of one on that sequence's rows of the same inputs
 * (device pointers into the packed tensors, its own band table), into
 * buffers of their own, and each output tensor of the two is compared.
 * The forward is expected to agree bit for bit (the same tiles see the same
 * values: keys past a sequence's end are masked in both); the backward too
 * with --deterministic, and within the dtype's bound with atomic dQ. */
#include <stdlib.h>
#include <string.h>

#include "cmd/gpu_common.h"
#include "runtime/attn.h"
#include "runtime/attn_bwd.h"

/* Sequence b's rows of a [total, heads, D] device tensor, as a batch of one. */
static attn_tensor seq_tensor(const gpu_attn *a, sp_dptr base, int heads, int b)
{
    attn_tensor t;
    t.sn = (long long)heads * a->D;
    t.sh = a->D;
    t.sb = a->pack.len[b] * t.sn;
    t.ptr = base + 2 * (sp_dptr)((long long)a->pack.cu[b] * t.sn);
    return t;
}

/* Compare two 16-bit device tensors (heads heads) of the problem, the second
 * as the reference; appends "<name>=seq". */
static int compare16(gpu_problem *p, const char *name, sp_dptr mine, sp_dptr alone, int heads, tensor_result *out,
                     int *n, sp_err *e)
{
    gpu_attn *a = &p->ga;
    size_t count = (size_t)ga_rows(a) * heads * a->D;
    float *x = malloc(count * sizeof *x), *y = malloc(count * sizeof *y);
    double *yd = malloc(count * sizeof *yd);
    int rc = -1;
    if (!x || !y || !yd) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    if (ga_download16(a, mine, heads, x, e) || ga_download16(a, alone, heads, y, e)) goto out;
    for (size_t i = 0; i < count; i++) yd[i] = y[i];
    cmp_result res;
    cmp_arrays(x, yd, count, &res);
    tensor_result_add(out, n, name, &res, cmp_bound(a->dtype == SP_BF16), 0);
    rc = 0;
out:
    free(x); free(y); free(yd);
    return rc;
}

/* The forward of kernel fk, sequence by sequence, into o2 and lse2 (packed layouts). */
static int forward_alone(gpu_attn *a, const engine_kernel *fk, sp_dptr o2, sp_dptr lse2, sp_err *e)
{
    for (int b = 0; b < a->pack.n; b++) {
        if (a->pack.len[b] == 0) continue;
        attn_fwd_args x;
        memset(&x, 0, sizeof x);
        x.q = seq_tensor(a, a->q[0], a->H, b);
        x.k = seq_tensor(a, a->k[0], a->KVH, b);
        x.v = seq_tensor(a, a->v[0], a->KVH, b);
        x.o = seq_tensor(a, o2, a->H, b);
        x.lse = lse2 + 4 * (sp_dptr)a->pack.cu[b];   /* [H, total]: rows of head h total apart */
        x.lse_sh = a->pack.total;
        x.lse_sb = (long long)a->H * a->pack.total;
        x.bands = a->bands + 4 * (sp_dptr)((long long)b * a->bands_sb);
        x.batch = 1;
        x.seqlen = (int)a->pack.len[b];
        x.heads = a->H;
        x.kv_heads = a->KVH;
        x.scale = a->scale;
        if (attn_fwd_launch(a->g, fk->fn, &fk->cfg, &x, e)) return -1;
    }
    return cu_sync(a->g, e);
}

/* The backward of kernels bk, sequence by sequence, from the packed run's O
 * and LSE, into dq2, dk2, dv2; scratch for the longest sequence, reused. */
static int backward_alone(gpu_attn *a, const engine_kernel *bk, int det, sp_dptr dq2, sp_dptr dk2, sp_dptr dv2,
                          sp_err *e)
{
    attn_bwd_args x;
    memset(&x, 0, sizeof x);
    x.batch = 1;
    x.seqlen = (int)a->pack.max_len;
    x.heads = a->H;
    x.kv_heads = a->KVH;
    x.deterministic = det;
    attn_bwd_scratch s;
    attn_bwd_scratch_sizes(&bk->cfg, &x, &s);
    sp_dptr acc = 0, delta = 0, l2 = 0, sem = 0;
    int rc = -1;
    if ((s.dq_accum && cu_malloc(a->g, s.dq_accum, &acc, e)) || cu_malloc(a->g, s.delta, &delta, e) ||
        cu_malloc(a->g, s.lse2, &l2, e) || (s.dq_sem && cu_malloc(a->g, s.dq_sem, &sem, e))) goto out;
    for (int b = 0; b < a->pack.n; b++) {
        if (a->pack.len[b] == 0) continue;
        x.q = seq_tensor(a, a->q[0], a->H, b);
        x.k = seq_tensor(a, a->k[0], a->KVH, b);
        x.v = seq_tensor(a, a->v[0], a->KVH, b);
        x.o = seq_tensor(a, a->o, a->H, b);
        x.dout = seq_tensor(a, a->dout, a->H, b);
        x.dq = seq_tensor(a, dq2, a->H, b);
        x.dk = seq_tensor(a, dk2, a->KVH, b);
        x.dv = seq_tensor(a, dv2, a->KVH, b);
        x.lse = a->lse + 4 * (sp_dptr)a->pack.cu[b];
        x.lse_sh = a->pack.total;
        x.lse_sb = (long long)a->H * a->pack.total;
        x.bands = a->bands + 4 * (sp_dptr)((long long)b * a->bands_sb);
        x.seqlen = (int)a->pack.len[b];
        x.scale = a->scale;
        x.dq_accum = acc;
        x.delta = delta;
        x.lse2 = l2;
        x.dq_sem = sem;
        if (attn_bwd_launch(a->g, &bk->bwd, &bk->cfg, &x, e)) goto out;
    }
    rc = cu_sync(a->g, e);
out:
    cu_free(a->g, acc);
    cu_free(a->g, delta);
    cu_free(a->g, l2);
    cu_free(a->g, sem);
    return rc;
}

int check_packed_alone(gpu_problem *p, const engine_kernel *k, tensor_result *out, int *n, sp_err *e)
{
    gpu_attn *a = &p->ga;
    const int bwd = k->cfg.kind == SP_KIND_BWD;
    sp_dptr t0 = 0, t1 = 0, t2 = 0;
    int rc = -1;
    if (!bwd) {
        if (cu_malloc(a->g, 2 * a->nq, &t0, e) || cu_malloc(a->g, 4 * a->nlse, &t1, e) ||
            cu_fill16(a->g, t0, 0x7fff, a->nq, e) || cu_fill32(a->g, t1, 0x7fc00000u, a->nlse, e) ||
            forward_alone(a, k, t0, t1, e) || compare16(p, "O=seq", a->o, t0, a->H, out, n, e))
            goto out;
        /* LSE: as floats, -inf where both are -inf. */
        float *x = malloc(4 * a->nlse), *y = malloc(4 * a->nlse);
        double *yd = malloc(8 * a->nlse);
        int ok = x && y && yd && !cu_download(a->g, x, a->lse, 4 * a->nlse, e) &&
                 !cu_download(a->g, y, t1, 4 * a->nlse, e);
        if (ok) {
            for (size_t i = 0; i < a->nlse; i++) yd[i] = y[i];
            cmp_result res;
            cmp_arrays(x, yd, a->nlse, &res);
            tensor_result_add(out, n, "LSE=seq", &res, cmp_bound(a->dtype == SP_BF16), 0);
        } else if (!e->msg[0]) sp_fail(e, SP_EXIT_FAIL, "out of memory");
        free(x); free(y); free(yd);
        if (!ok) goto out;
    } else {
        if (cu_malloc(a->g, 2 * a->nq, &t0, e) || cu_malloc(a->g, 2 * a->nk, &t1, e) ||
            cu_malloc(a->g, 2 * a->nk, &t2, e) || cu_fill16(a->g, t0, 0x7fff, a->nq, e) ||
            cu_fill16(a->g, t1, 0x7fff, a->nk, e) || cu_fill16(a->g, t2, 0x7fff, a->nk, e) ||
            backward_alone(a, k, p->deterministic, t0, t1, t2, e) ||
            compare16(p, "dQ=seq", a->dq, t0, a->H, out, n, e) || compare16(p, "dK=seq", a->dk, t1, a->KVH, out, n, e) ||
            compare16(p, "dV=seq", a->dv, t2, a->KVH, out, n, e))
            goto out;
    }
    rc = 0;
out:
    cu_free(a->g, t0);
    cu_free(a->g, t1);
    cu_free(a->g, t2);
    return rc;
}
