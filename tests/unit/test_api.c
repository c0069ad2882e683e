/* The public API (include/spattn.h) on a CPU context: plans from
 * parameters, YAML and files; errors as statuses with messages; forward and
 * backward against the reference called directly; layouts through strides;
 * and a GPU context on a machine without one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "include/spattn.h"
#include "runtime/ref.h"
#include "runtime/rng.h"
#include "codegen/bands.h"
#include "tests/check.h"

static spattn_context *cpu(void)
{
    spattn_context *c = NULL;
    CHECK("cpu context", spattn_context_create(SPATTN_DEVICE_CPU, &c) == SPATTN_OK && c);
    return c;
}

static void test_errors(void)
{
    spattn_context *c = cpu();
    spattn_plan *p = (spattn_plan *)1;
    spattn_params bad = { .heads = 12, .kv_heads = 5, .head_dim = 64 };
    CHECK("kv_heads must divide heads", spattn_plan_from_params(c, &bad, 1, 100, &p) == SPATTN_EINVAL && p == NULL);
    CHECK("... with a message", strstr(spattn_context_error(c), "kv_heads") != NULL);
    spattn_params ok = { .heads = 4, .head_dim = 64, .pattern = "sideways" };
    CHECK("unknown pattern", spattn_plan_from_params(c, &ok, 1, 100, &p) == SPATTN_EINVAL);
    ok.pattern = "spattn";
    CHECK("seq_len 0", spattn_plan_from_params(c, &ok, 1, 0, &p) == SPATTN_EINVAL && strstr(spattn_context_error(c), "seq_len"));
    const char *yaml = "heads: 4\nhead_dims: 64\n";
    CHECK("YAML error", spattn_plan_from_yaml(c, yaml, strlen(yaml), "mine.yaml", -1, 1, 64, &p) == SPATTN_EINVAL);
    CHECK("... names file, line and key", strstr(spattn_context_error(c), "mine.yaml:2:1") &&
                                              strstr(spattn_context_error(c), "head_dims"));
    CHECK("missing file", spattn_plan_from_file(c, "/nonexistent/x.yaml", -1, 1, 64, &p) == SPATTN_EINVAL);
    spattn_context_destroy(c);
    spattn_context *g = NULL;
    spattn_status st = spattn_context_create(0, &g);
    CHECK("GPU context: ok, or EGPU with a reason", st == SPATTN_OK || (st == SPATTN_EGPU && g && spattn_context_error(g)[0]));
    spattn_context_destroy(g);
    spattn_context *neg = NULL;
    CHECK("device -7", spattn_context_create(-7, &neg) == SPATTN_EINVAL);
    spattn_context_destroy(neg);
}

/* Forward and backward through the API equal the reference called on the
 * same (rounded) inputs, in both layouts. */
static void test_against_reference(void)
{
    spattn_context *c = cpu();
    spattn_params prm = { .heads = 6, .kv_heads = 2, .head_dim = 32, .dtype = SPATTN_FP16, .pattern = "exclusive" };
    spattn_plan *p = NULL;
    const int B = 2, N = 97, H = 6, KVH = 2, D = 32;
    CHECK("plan", spattn_plan_from_params(c, &prm, B, N, &p) == SPATTN_OK);
    if (!p) return;
    spattn_plan_info info;
    spattn_plan_get_info(p, &info);
    CHECK("info", info.heads == H && info.kv_heads == KVH && info.head_dim == D && info.seq_len == N &&
                      info.batch == B && info.dtype == SPATTN_FP16 && fabs(info.work_ratio - 1.0 / 6) < 0.05 &&
                      info.forward_flops == 4.0 * D * (double)info.allowed_pairs);
    /* Both backward modes run the CPU reference: no kernels, one source. */
    CHECK("info: kernels and configs on the CPU", !info.forward_kernel[0] && !info.backward_kernel[0] &&
                                                      !info.deterministic_backward_kernel[0] &&
                                                      !strcmp(info.backward_config, "cpu-float64") &&
                                                      !strcmp(info.deterministic_backward_config, "cpu-float64"));
    CHECK("no workspace on the CPU", spattn_workspace_size(p, 1, 1) == 0 && spattn_workspace_size(p, 1, 0) == 0);
    size_t nq = (size_t)B * N * H * D, nk = (size_t)B * N * KVH * D, nl = (size_t)B * H * N;
    uint16_t *q = malloc(2 * nq), *k = malloc(2 * nk), *v = malloc(2 * nk), *o = malloc(2 * nq), *dout = malloc(2 * nq);
    uint16_t *dq = malloc(2 * nq), *dk = malloc(2 * nk), *dv = malloc(2 * nk), *o2 = malloc(2 * nq);
    uint16_t *qt = malloc(2 * nq), *kt = malloc(2 * nk), *vt = malloc(2 * nk);
    double *qd = malloc(8 * nq), *kd = malloc(8 * nk), *vd = malloc(8 * nk), *od = malloc(8 * nq), *ld = malloc(8 * nl);
    double *gd = malloc(8 * nq), *dqd = malloc(8 * nq), *dkd = malloc(8 * nk), *dvd = malloc(8 * nk);
    float *lse = malloc(4 * nl), *lse2 = malloc(4 * nl);
    rng r;
    rng_seed(&r, 5);
    rng_fill_normal(&r, SP_FP16, nq, q, qd);
    rng_fill_normal(&r, SP_FP16, nk, k, kd);
    rng_fill_normal(&r, SP_FP16, nk, v, vd);
    rng_fill_normal(&r, SP_FP16, nq, dout, gd);
    spattn_tensor tq = spattn_tensor_bnhd(q, N, H, D), tk = spattn_tensor_bnhd(k, N, KVH, D);
    spattn_tensor tv = spattn_tensor_bnhd(v, N, KVH, D), to = spattn_tensor_bnhd(o, N, H, D);
    spattn_tensor tdo = spattn_tensor_bnhd(dout, N, H, D), tdq = spattn_tensor_bnhd(dq, N, H, D);
    spattn_tensor tdk = spattn_tensor_bnhd(dk, N, KVH, D), tdv = spattn_tensor_bnhd(dv, N, KVH, D);
    spattn_lse tl = spattn_lse_contiguous(lse, N, H);
    CHECK("forward", spattn_forward(p, &tq, &tk, &tv, &to, &tl, NULL, 0, NULL) == SPATTN_OK);
    CHECK("backward", spattn_backward(p, &tq, &tk, &tv, &to, &tl, &tdo, &tdq, &tdk, &tdv, 0, NULL, 0, NULL) == SPATTN_OK);

    sp_band_list bands[6];
    sp_pattern pat = { .kind = SP_EXCLUSIVE };
    for (int h = 0; h < H; h++) bands_head(&pat, H, h, N, &bands[h]);
    ref_problem rp = { B, N, H, KVH, D, 1.0 / sqrt((double)D), bands, 1 };
    ref_forward(&rp, qd, kd, vd, od, ld);
    int o_same = 1, l_same = 1, empty_zero = 1;
    for (size_t i = 0; i < nq; i++) o_same &= o[i] == float_to_fp16((float)od[i]);
    for (size_t i = 0; i < nl; i++) l_same &= lse[i] == (float)ld[i];
    CHECK("O = the reference's, rounded", o_same);
    CHECK("LSE = the reference's (-inf on empty rows)", l_same);
    for (size_t i = 0; i < nq; i++) od[i] = fp16_to_float(o[i]);   /* the backward sees the 16-bit O */
    for (size_t i = 0; i < nl; i++) ld[i] = lse[i];                 /* and the fp32 LSE */
    ref_backward(&rp, qd, kd, vd, od, ld, gd, dqd, dkd, dvd);
    int g_same = 1;
    for (size_t i = 0; i < nq; i++) g_same &= dq[i] == float_to_fp16((float)dqd[i]);
    for (size_t i = 0; i < nk; i++) g_same &= dk[i] == float_to_fp16((float)dkd[i]) && dv[i] == float_to_fp16((float)dvd[i]);
    CHECK("dQ, dK, dV = the reference's, rounded", g_same);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < N; i++)
            if (!bands_row_has_key(&bands[h], i))
                for (int d = 0; d < D; d++) empty_zero &= o[((size_t)i * H + h) * D + d] == 0;
    CHECK("rows with no key: O = 0", empty_zero);

    /* The same through PyTorch's [B, H, N, D] layout (transposed copies). */
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            for (int h = 0; h < H; h++)
                memcpy(qt + (((size_t)b * H + h) * N + i) * D, q + (((size_t)b * N + i) * H + h) * D, 2 * D);
            for (int h = 0; h < KVH; h++) {
                memcpy(kt + (((size_t)b * KVH + h) * N + i) * D, k + (((size_t)b * N + i) * KVH + h) * D, 2 * D);
                memcpy(vt + (((size_t)b * KVH + h) * N + i) * D, v + (((size_t)b * N + i) * KVH + h) * D, 2 * D);
            }
        }
    spattn_tensor bq = spattn_tensor_bhnd(qt, N, H, D), bk = spattn_tensor_bhnd(kt, N, KVH, D);
    spattn_tensor bv = spattn_tensor_bhnd(vt, N, KVH, D), bo = spattn_tensor_bhnd(o2, N, H, D);
    spattn_lse bl = spattn_lse_contiguous(lse2, N, H);
    CHECK("forward, bhnd", spattn_forward(p, &bq, &bk, &bv, &bo, &bl, NULL, 0, NULL) == SPATTN_OK);
    int t_same = 1;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++)
            for (int h = 0; h < H; h++)
                t_same &= !memcmp(o2 + (((size_t)b * H + h) * N + i) * D, o + (((size_t)b * N + i) * H + h) * D, 2 * D);
    CHECK("bhnd gives the same O", t_same && !memcmp(lse, lse2, 4 * nl));
    spattn_tensor none = { 0 };
    CHECK("a missing tensor is EINVAL", spattn_forward(p, &tq, &none, &tv, &to, &tl, NULL, 0, NULL) == SPATTN_EINVAL &&
                                             strstr(spattn_plan_error(p), "k: no tensor"));
    free(q); free(k); free(v); free(o); free(dout); free(dq); free(dk); free(dv); free(o2); free(qt); free(kt); free(vt);
    free(qd); free(kd); free(vd); free(od); free(ld); free(gd); free(dqd); free(dkd); free(dvd); free(lse); free(lse2);
    spattn_plan_destroy(p);
    spattn_context_destroy(c);
}

static void test_custom_params(void)
{
    spattn_context *c = cpu();
    int counts[2] = { 1, 2 };
    int64_t iv[6] = { 0, 8, 0, 4, 20, 30 };
    spattn_params prm = { .heads = 2, .head_dim = 64, .pattern = "custom", .custom_counts = counts, .custom_bands = iv };
    spattn_plan *p = NULL;
    CHECK("custom plan", spattn_plan_from_params(c, &prm, 1, 64, &p) == SPATTN_OK);
    spattn_plan_info info;
    if (p) spattn_plan_get_info(p, &info);
    /* head 0: [0,8) at N=64: 8*(128-8+1)/2 = 484; head 1: [0,4) 4*125/2=250 + [20,30) 10*(128-50+1)/2=395 */
    CHECK("custom pairs", p && info.allowed_pairs == 484 + 250 + 395);
    spattn_plan_destroy(p);
    int64_t bad[2] = { 10, 5 };
    int one[1] = { 1 };
    spattn_params b2 = { .heads = 1, .head_dim = 64, .pattern = "custom", .custom_counts = one, .custom_bands = bad };
    CHECK("an empty interval is EINVAL", spattn_plan_from_params(c, &b2, 1, 64, &p) == SPATTN_EINVAL);
    spattn_context_destroy(c);
}

static void test_window_params(void)
{
    spattn_context *c = cpu();
    spattn_params prm = { .heads = 4, .head_dim = 64, .pattern = "window", .window = 10 };
    spattn_plan *p = NULL;
    CHECK("window plan", spattn_plan_from_params(c, &prm, 1, 100, &p) == SPATTN_OK);
    spattn_plan_info info;
    if (p) spattn_plan_get_info(p, &info);
    /* [0, 10) at N = 100: 10 * (200 - 10 + 1) / 2 = 955 pairs per head */
    CHECK("window pairs", p && info.allowed_pairs == 4 * 955);
    spattn_plan_destroy(p);
    prm.window = 0;
    CHECK("window without W is EINVAL", spattn_plan_from_params(c, &prm, 1, 100, &p) == SPATTN_EINVAL);
    spattn_context_destroy(c);
}

static const test_case tests[] = {
    { "errors", test_errors },
    { "against_reference", test_against_reference },
    { "custom_params", test_custom_params },
    { "window_params", test_window_params },
    { 0, 0 },
};

TEST_MAIN(tests)
