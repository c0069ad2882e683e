/* Band attention through the public C API (man 3 spattn): a plan from plain
 * parameters (or from the spec file given as argv[1]), then forward and
 * backward on host memory, which a CPU context runs on the float64
 * reference.  On a GPU context (spattn_context_create(0, ...)) the same
 * calls take device pointers and a stream.
 *
 *     cc band_attention.c $(pkg-config --cflags --libs spattn) -o band_attention
 *     ./band_attention [SPEC.yaml]
 *
 * Prints the plan and a few numbers; exit 0 if every row with no allowed
 * key came out as O = 0 and LSE = -inf, 1 otherwise. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spattn.h>

/* bf16 from float (round to nearest even) and back. */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Uniform values in [-1, 1) from a small generator (never zeros). */
static void fill(uint16_t *x, size_t n, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = to_bf16((float)((*state >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f);
    }
}

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "band_attention: %s: %s\n", what, why);
    return 2;
}

int main(int argc, char **argv)
{
    spattn_context *ctx;
    if (spattn_context_create(SPATTN_DEVICE_CPU, &ctx) != SPATTN_OK)
        return fail("context", ctx ? spattn_context_error(ctx) : "out of memory");

    const int batch = 2;
    const int64_t n = 300;
    spattn_plan *plan;
    spattn_status st;
    if (argc > 1) {
        st = spattn_plan_from_file(ctx, argv[1], -1, batch, n, &plan);
    } else {
        /* 12 query heads sharing 4 kv heads, each with its own exclusive band:
         * the first rows of the later heads have no key at all. */
        spattn_params p = { .heads = 12, .kv_heads = 4, .head_dim = 64, .dtype = SPATTN_BF16, .pattern = "exclusive" };
        st = spattn_plan_from_params(ctx, &p, batch, n, &plan);
    }
    if (st != SPATTN_OK) {
        int rc = fail("plan", spattn_context_error(ctx));
        spattn_context_destroy(ctx);
        return rc;
    }
    spattn_plan_info info;
    spattn_plan_get_info(plan, &info);
    printf("plan: batch %d, N %lld, %d heads (%d kv), head_dim %d: work ratio %.4f, %.3g forward FLOPs (%s)\n",
           info.batch, (long long)info.seq_len, info.heads, info.kv_heads, info.head_dim, info.work_ratio,
           info.forward_flops, info.forward_config);

    const int H = info.heads, KVH = info.kv_heads, D = info.head_dim;
    size_t nq = (size_t)batch * n * H * D, nk = (size_t)batch * n * KVH * D;
    uint16_t *q = malloc(2 * nq), *k = malloc(2 * nk), *v = malloc(2 * nk), *o = malloc(2 * nq);
    uint16_t *dout = malloc(2 * nq), *dq = malloc(2 * nq), *dk = malloc(2 * nk), *dv = malloc(2 * nk);
    float *lse = malloc(sizeof(float) * (size_t)batch * H * n);
    if (!q || !k || !v || !o || !dout || !dq || !dk || !dv || !lse) return fail("memory", "out of memory");
    uint64_t seed = 1;
    fill(q, nq, &seed);
    fill(k, nk, &seed);
    fill(v, nk, &seed);
    fill(dout, nq, &seed);

    /* [B, N, H, D] tensors, contiguous. */
    spattn_tensor tq = spattn_tensor_bnhd(q, n, H, D), tk = spattn_tensor_bnhd(k, n, KVH, D);
    spattn_tensor tv = spattn_tensor_bnhd(v, n, KVH, D), to = spattn_tensor_bnhd(o, n, H, D);
    spattn_tensor tdo = spattn_tensor_bnhd(dout, n, H, D), tdq = spattn_tensor_bnhd(dq, n, H, D);
    spattn_tensor tdk = spattn_tensor_bnhd(dk, n, KVH, D), tdv = spattn_tensor_bnhd(dv, n, KVH, D);
    spattn_lse tl = spattn_lse_contiguous(lse, n, H);
    size_t ws = spattn_workspace_size(plan, 1, 0);   /* 0 on the CPU; device memory on a GPU */
    if (spattn_forward(plan, &tq, &tk, &tv, &to, &tl, NULL, ws, NULL) != SPATTN_OK)
        return fail("forward", spattn_plan_error(plan));
    if (spattn_backward(plan, &tq, &tk, &tv, &to, &tl, &tdo, &tdq, &tdk, &tdv, 0, NULL, ws, NULL) != SPATTN_OK)
        return fail("backward", spattn_plan_error(plan));

    /* Rows with no key: LSE = -inf and O exactly 0. */
    long empty = 0, wrong = 0;
    double osum = 0, dqsum = 0;
    for (int b = 0; b < batch; b++)
        for (int64_t i = 0; i < n; i++)
            for (int h = 0; h < H; h++) {
                const uint16_t *row = o + (((size_t)b * n + i) * H + h) * D;
                float l = lse[((size_t)b * H + h) * n + i];
                int zero = 1;
                for (int d = 0; d < D; d++) {
                    zero &= from_bf16(row[d]) == 0.0f;
                    osum += fabs(from_bf16(row[d]));
                    dqsum += fabs(from_bf16(dq[(((size_t)b * n + i) * H + h) * D + d]));
                }
                if (isinf(l) && l < 0) { empty++; wrong += !zero; }
            }
    printf("forward: sum |O| = %.4f; %ld rows have no key, %ld of them not zero\n", osum, empty, wrong);
    printf("backward: sum |dQ| = %.4f\n", dqsum);
    free(q); free(k); free(v); free(o); free(dout); free(dq); free(dk); free(dv); free(lse);
    spattn_plan_destroy(plan);
    spattn_context_destroy(ctx);
    return wrong ? 1 : 0;
}
