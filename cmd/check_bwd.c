/* The backward check: forward then backward kernels on fresh inputs and a
 * random dO, outputs poisoned with NaN first; dQ, dK, dV compared with the
 * float64 CPU reference or the cuBLAS fp32 reference.  With --deterministic
 * the whole step runs twice and the gradients must be bitwise identical. */
#include <stdlib.h>
#include <string.h>

#include "cmd/gpu_common.h"
#include "runtime/ref.h"
#include "runtime/rng.h"

/* dQ rows with no allowed key, dK and dV rows of keys no query reaches: all
 * exactly 0 (they get no gradient), whatever the reference's rounding. */
static int add_empty_rows(gpu_problem *p, float *got, tensor_result *out, int *n, sp_err *e)
{
    gpu_attn *a = &p->ga;
    static const char *const names[3] = { "dQ=0", "dK=0", "dV=0" };
    const sp_dptr src[3] = { a->dq, a->dk, a->dv };
    for (int t = 0; t < 3; t++) {
        cmp_result res;
        if (ga_download16(a, src[t], t == 0 ? a->H : a->KVH, got, e) ||
            gpu_problem_empty_rows(p, got, t > 0, &res, e)) return -1;
        tensor_result_add(out, n, names[t], &res, 0.0, 1);
    }
    return 0;
}

/* poison, forward, backward, wait */
static int run_step(gpu_problem *p, const engine_kernel *fk, const engine_kernel *bk, sp_err *e)
{
    gpu_attn *a = &p->ga;
    return ga_poison(a, e) || ga_forward(a, fk, 0, e) || ga_backward(a, bk, 0, p->deterministic, e) ||
           cu_sync(a->g, e) ? -1 : 0;
}

/* 1 if the gradients of two runs are bitwise equal. */
static int repeat_is_identical(gpu_problem *p, const engine_kernel *fk, const engine_kernel *bk, int *same, sp_err *e)
{
    gpu_attn *a = &p->ga;
    size_t bytes[3] = { 2 * a->nq, 2 * a->nk, 2 * a->nk };
    sp_dptr src[3] = { a->dq, a->dk, a->dv };
    unsigned char *first[3] = { 0 }, *second = NULL;
    int rc = -1;
    *same = 1;
    for (int t = 0; t < 3; t++) {
        first[t] = malloc(bytes[t]);
        if (!first[t] || cu_download(a->g, first[t], src[t], bytes[t], e)) goto out;
    }
    if (run_step(p, fk, bk, e)) goto out;
    second = malloc(bytes[0]);
    if (!second) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    for (int t = 0; t < 3; t++) {
        if (cu_download(a->g, second, src[t], bytes[t], e)) goto out;
        if (memcmp(first[t], second, bytes[t]) != 0) *same = 0;
    }
    rc = 0;
out:
    for (int t = 0; t < 3; t++) free(first[t]);
    free(second);
    return rc;
}

int check_bwd(gpu_problem *p, const engine_kernel *bk, uint64_t seed, int cpu_reference,
              tensor_result *out, int *n, const char **reference, sp_err *e)
{
    gpu_attn *a = &p->ga;
    engine_kernel fk = { 0 };
    double *q = NULL, *k = NULL, *v = NULL, *dout = NULL, *o = NULL, *lse = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
    uint16_t *q16 = NULL, *k16 = NULL, *v16 = NULL, *dout16 = NULL;
    float *got = NULL;
    refgpu *ref = NULL;
    sp_dptr rq = 0, rk = 0, rv = 0;
    int rc = -1;
    double bound = cmp_bound(a->dtype == SP_BF16);
    /* The forward that feeds the backward is not the kernel under check: it
     * takes the tuned or heuristic config, so that --tile names a backward
     * tile (a wgmma backward tile such as 64x128:w8 is no forward tile). */
    const char *tile = p->tile;
    char source[sizeof p->config_source];
    memcpy(source, p->config_source, sizeof source);   /* the report names the backward's */
    p->tile = NULL;
    int frc = gpu_problem_kernel(p, SP_KIND_FWD, &fk, e);
    p->tile = tile;
    memcpy(p->config_source, source, sizeof source);
    if (frc) goto out;

    if (cpu_reference) {
        q = malloc(a->nq * sizeof *q); k = malloc(a->nk * sizeof *k); v = malloc(a->nk * sizeof *v);
        dout = malloc(a->nq * sizeof *dout); o = malloc(a->nq * sizeof *o); lse = malloc(a->nlse * sizeof *lse);
        dq = malloc(a->nq * sizeof *dq); dk = malloc(a->nk * sizeof *dk); dv = malloc(a->nk * sizeof *dv);
        q16 = malloc(2 * a->nq); k16 = malloc(2 * a->nk); v16 = malloc(2 * a->nk); dout16 = malloc(2 * a->nq);
        got = malloc(a->nq * sizeof *got);
        if (!q || !k || !v || !dout || !o || !lse || !dq || !dk || !dv || !q16 || !k16 || !v16 || !dout16 || !got) {
            sp_fail(e, SP_EXIT_FAIL, "out of memory");
            goto out;
        }
        rng r;
        rng_seed(&r, seed);
        rng_fill_normal(&r, a->dtype, a->nq, q16, q);
        rng_fill_normal(&r, a->dtype, a->nk, k16, k);
        rng_fill_normal(&r, a->dtype, a->nk, v16, v);
        rng_fill_normal(&r, a->dtype, a->nq, dout16, dout);
        if (ga_upload(a, 0, q16, k16, v16, e)) goto out;
        if (ga_alloc_backward(a, &bk->cfg, seed + 7, NULL, e) || ga_upload_dout(a, dout16, e)) goto out;
    } else {
        if (ga_fill_random(a, seed, e) || ga_alloc_backward(a, &bk->cfg, seed + 7, NULL, e)) goto out;
    }
    if (run_step(p, &fk, bk, e)) goto out;

    cmp_result res;
    if (cpu_reference) {
        ref_problem rp = { a->B, a->N, a->H, a->KVH, a->D, a->scale, p->bands, 0 };
        if (p->packed ? ref_forward_packed(&rp, &a->pack, p->pbands, q, k, v, o, lse) ||
                            ref_backward_packed(&rp, &a->pack, p->pbands, q, k, v, o, lse, dout, dq, dk, dv)
                      : ref_forward(&rp, q, k, v, o, lse) || ref_backward(&rp, q, k, v, o, lse, dout, dq, dk, dv)) {
            sp_fail(e, SP_EXIT_FAIL, "the CPU reference could not run");
            goto out;
        }
        if (ga_download16(a, a->dq, a->H, got, e)) goto out;
        cmp_arrays(got, dq, a->nq, &res);
        tensor_result_add(out, n, "dQ", &res, bound, 0);
        if (ga_download16(a, a->dk, a->KVH, got, e)) goto out;
        cmp_arrays(got, dk, a->nk, &res);
        tensor_result_add(out, n, "dK", &res, bound, 0);
        if (ga_download16(a, a->dv, a->KVH, got, e)) goto out;
        cmp_arrays(got, dv, a->nk, &res);
        tensor_result_add(out, n, "dV", &res, bound, 0);
        *reference = "cpu-float64";
    } else {
        if (refgpu_open(a->g, &ref, e)) goto out;
        if (cu_malloc(a->g, 4 * a->nq, &rq, e) || cu_malloc(a->g, 4 * a->nk, &rk, e) || cu_malloc(a->g, 4 * a->nk, &rv, e))
            goto out;
        refgpu_problem rp;
        gpu_problem_refgpu(p, 0, &rp);
        if (refgpu_backward(ref, &rp, rq, rk, rv, e)) goto out;
        const char *names[3] = { "dQ", "dK", "dV" };
        sp_dptr mine[3] = { a->dq, a->dk, a->dv }, theirs[3] = { rq, rk, rv };
        int heads[3] = { a->H, a->KVH, a->KVH };
        for (int t = 0; t < 3; t++) {
            int64_t shape[4] = { a->B, a->N, heads[t], a->D };
            refgpu_view mv = gpu_problem_view(p, mine[t], heads[t]);
            refgpu_view rv32 = refgpu_view_bnhd(theirs[t], REFGPU_FP32, a->N, heads[t], a->D);
            if (refgpu_compare(ref, shape, &mv, &rv32, &res, e)) goto out;
            tensor_result_add(out, n, names[t], &res, bound, 0);
        }
        *reference = "gpu-cublas-fp32";
    }
    if (!got && !(got = malloc(a->nq * sizeof *got))) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    if (add_empty_rows(p, got, out, n, e)) goto out;
    if (p->deterministic) {
        int same;
        if (repeat_is_identical(p, &fk, bk, &same, e)) goto out;
        cmp_result bits = { .rel_l2 = same ? 0.0 : 1.0 };
        tensor_result_add(out, n, "repeat", &bits, 0.0, 0);   /* rel_l2 0: bitwise identical across two runs */
    }
    rc = 0;
out:
    engine_unload(a->g, &fk);
    cu_free(a->g, rq); cu_free(a->g, rk); cu_free(a->g, rv);
    if (ref) refgpu_close(ref);
    free(q); free(k); free(v); free(dout); free(o); free(lse); free(dq); free(dk); free(dv);
    free(q16); free(k16); free(v16); free(dout16); free(got);
    return rc;
}
