/* Packed (ragged) sequences (issue 18): the packing arithmetic, the --seq-lens
 * list, and the CPU reference through the public API, which must equal, bit
 * for bit, running every sequence alone (forward and backward), with an
 * empty and a one-token sequence and with a fixed band basis. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tests/check.h"
#include "include/spattn.h"
#include "runtime/packing.h"
#include "runtime/rng.h"

static void test_packing_init(void)
{
    sp_packing pk;
    sp_err e = { 0 };
    const int64_t lens[] = { 5, 0, 1, 37 };
    CHECK("valid", packing_init(&pk, lens, 4, &e) == 0);
    CHECK("total", pk.total == 43 && pk.max_len == 37 && pk.n == 4);
    CHECK("offsets", pk.cu[0] == 0 && pk.cu[1] == 5 && pk.cu[2] == 5 && pk.cu[3] == 6 && pk.cu[4] == 43);
    packing_free(&pk);
    const int64_t neg[] = { 5, -1 }, zero[] = { 0, 0 }, big[] = { (1 << 24) + 1 };
    memset(&e, 0, sizeof e);
    CHECK("negative", packing_init(&pk, neg, 2, &e) == -1 && e.code == SP_EXIT_USAGE);
    CHECK("all empty", packing_init(&pk, zero, 2, &e) == -1);
    CHECK("too long", packing_init(&pk, big, 1, &e) == -1);
    CHECK("none", packing_init(&pk, lens, 0, &e) == -1);
    /* The backward's scratch rows: every sequence's padded rows fit before the next one's. */
    const int64_t ragged[] = { 1, 127, 128, 129, 3, 0, 1000 };
    CHECK("ragged", packing_init(&pk, ragged, 7, &e) == 0);
    long long prev_end = 0;
    int ok = 1;
    for (int b = 0; b < pk.n; b++) {
        long long row = ((pk.cu[b] + 3) & ~3) + (long long)b * (128 + 4);   /* kernels/seq_bwd.cuh */
        long long pad = (pk.len[b] + 127) / 128 * 128;
        ok &= row >= prev_end && row % 4 == 0;
        prev_end = row + pad;
    }
    CHECK("scratch rows disjoint and aligned", ok && prev_end <= packing_ws_rows(pk.total, pk.n));
    /* main_sem's semaphores (issue 16): sequence b's query tiles from cu[b] / bm + b
     * (kernels/seq_bwd.cuh), before the next sequence's and within packing_sem_tiles. */
    static const int bms[] = { 32, 64, 128 };
    for (int t = 0; t < 3; t++) {
        long long end = 0;
        ok = 1;
        for (int b = 0; b < pk.n; b++) {
            long long first = pk.cu[b] / bms[t] + b, tiles = (pk.len[b] + bms[t] - 1) / bms[t];
            ok &= first >= end;
            end = first + tiles;
        }
        CHECKF(ok && end <= packing_sem_tiles(pk.total, pk.n, bms[t]), "semaphore tiles disjoint, BM %d", bms[t]);
    }
    packing_free(&pk);
    /* The same over many random packings. */
    uint64_t x = 12345;
    int bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        int64_t rl[9];
        int n = 1 + trial % 9;
        for (int b = 0; b < n; b++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            rl[b] = (int64_t)((x >> 33) % (trial % 3 ? 300 : 5));
        }
        rl[0] += 1;
        if (packing_init(&pk, rl, n, &e)) { bad++; continue; }
        for (int t = 0; t < 3; t++) {
            long long end = 0;
            for (int b = 0; b < pk.n; b++) {
                long long first = pk.cu[b] / bms[t] + b;
                bad += first < end;
                end = first + (pk.len[b] + bms[t] - 1) / bms[t];
            }
            bad += end > packing_sem_tiles(pk.total, pk.n, bms[t]);
        }
        packing_free(&pk);
    }
    CHECKF(bad == 0, "random packings: %d semaphore ranges overlap or overflow", bad);
}

static void test_parse_list(void)
{
    int64_t v[4];
    int n;
    sp_err e = { 0 };
    CHECK("list", packing_parse_list("4096,100,2000", v, 4, &n, &e) == 0 && n == 3 && v[0] == 4096 && v[2] == 2000);
    CHECK("one", packing_parse_list("7", v, 4, &n, &e) == 0 && n == 1 && v[0] == 7);
    const char *bad[] = { "", "0", "5,0", "-3", "1,,2", "1,", ",1", "a", "1 2", "12x", "99999999999" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&e, 0, sizeof e);
        CHECKF(packing_parse_list(bad[i], v, 4, &n, &e) == -1 && e.code == SP_EXIT_USAGE, "'%s' refused", bad[i]);
    }
    CHECK("too many", packing_parse_list("1,2,3,4,5", v, 4, &n, &e) == -1);
}

/* 16-bit random values for n elements. */
static uint16_t *rand16(size_t n, uint64_t seed)
{
    uint16_t *x = malloc(n * sizeof *x);
    rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, SP_BF16, n, x, NULL);
    return x;
}

/* Packed forward and backward on a CPU plan vs each sequence on its own plan. */
static void packed_vs_alone(const char *yaml, const int64_t *lens, int nseq)
{
    enum { H = 4, KVH = 2, D = 32 };
    spattn_context *c;
    CHECK("cpu context", spattn_context_create(SPATTN_DEVICE_CPU, &c) == SPATTN_OK);
    spattn_plan *pp;
    CHECK("packed plan", spattn_plan_from_yaml(c, yaml, strlen(yaml), "packed", -1, 1, 64, &pp) == SPATTN_OK);
    CHECKF(spattn_plan_set_seq_lens(pp, lens, nseq) == SPATTN_OK, "set_seq_lens: %s", spattn_plan_error(pp));
    int64_t T = 0, maxl = 0;
    for (int b = 0; b < nseq; b++) { T += lens[b]; if (lens[b] > maxl) maxl = lens[b]; }
    spattn_plan_info info;
    spattn_plan_get_info(pp, &info);
    CHECK("info batch and seq_len", info.batch == nseq && info.seq_len == maxl);
    CHECK("info: both backward modes on the CPU reference",
          !strcmp(info.backward_config, "cpu-float64") && !strcmp(info.deterministic_backward_config, "cpu-float64") &&
              info.deterministic_backward_kernel[0] == 0);

    size_t nq = (size_t)T * H * D, nk = (size_t)T * KVH * D;
    uint16_t *q = rand16(nq, 1), *k = rand16(nk, 2), *v = rand16(nk, 3), *dout = rand16(nq, 4);
    uint16_t *o = calloc(nq, 2), *dq = calloc(nq, 2), *dk = calloc(nk, 2), *dv = calloc(nk, 2);
    float *lse = calloc((size_t)T * H, 4);
    spattn_tensor tq = spattn_tensor_bnhd(q, T, H, D), tk = spattn_tensor_bnhd(k, T, KVH, D);
    spattn_tensor tv = spattn_tensor_bnhd(v, T, KVH, D), to = spattn_tensor_bnhd(o, T, H, D);
    spattn_tensor tg = spattn_tensor_bnhd(dout, T, H, D), tdq = spattn_tensor_bnhd(dq, T, H, D);
    spattn_tensor tdk = spattn_tensor_bnhd(dk, T, KVH, D), tdv = spattn_tensor_bnhd(dv, T, KVH, D);
    spattn_lse tl = spattn_lse_contiguous(lse, T, H);
    CHECK("packed forward", spattn_forward(pp, &tq, &tk, &tv, &to, &tl, NULL, 0, NULL) == SPATTN_OK);
    CHECK("packed backward",
          spattn_backward(pp, &tq, &tk, &tv, &to, &tl, &tg, &tdq, &tdk, &tdv, 0, NULL, 0, NULL) == SPATTN_OK);

    int64_t row = 0;
    for (int b = 0; b < nseq; row += lens[b], b++) {
        const int64_t N = lens[b];
        if (N == 0) continue;
        spattn_plan *sp;
        CHECK("alone plan", spattn_plan_from_yaml(c, yaml, strlen(yaml), "alone", -1, 1, N, &sp) == SPATTN_OK);
        size_t sq = (size_t)N * H * D, sk = (size_t)N * KVH * D;
        uint16_t *o1 = calloc(sq, 2), *dq1 = calloc(sq, 2), *dk1 = calloc(sk, 2), *dv1 = calloc(sk, 2);
        float *lse1 = calloc((size_t)N * H, 4);
        /* The sequence's slices of the packed inputs, as a batch of one. */
        spattn_tensor sq_ = spattn_tensor_bnhd(q + (size_t)row * H * D, N, H, D);
        spattn_tensor sk_ = spattn_tensor_bnhd(k + (size_t)row * KVH * D, N, KVH, D);
        spattn_tensor sv_ = spattn_tensor_bnhd(v + (size_t)row * KVH * D, N, KVH, D);
        spattn_tensor sg_ = spattn_tensor_bnhd(dout + (size_t)row * H * D, N, H, D);
        spattn_tensor so_ = spattn_tensor_bnhd(o1, N, H, D), sdq = spattn_tensor_bnhd(dq1, N, H, D);
        spattn_tensor sdk = spattn_tensor_bnhd(dk1, N, KVH, D), sdv = spattn_tensor_bnhd(dv1, N, KVH, D);
        spattn_lse sl = spattn_lse_contiguous(lse1, N, H);
        CHECK("alone forward", spattn_forward(sp, &sq_, &sk_, &sv_, &so_, &sl, NULL, 0, NULL) == SPATTN_OK);
        CHECK("alone backward",
              spattn_backward(sp, &sq_, &sk_, &sv_, &so_, &sl, &sg_, &sdq, &sdk, &sdv, 0, NULL, 0, NULL) == SPATTN_OK);
        CHECKF(memcmp(o1, o + (size_t)row * H * D, sq * 2) == 0, "O of sequence %d (N %lld) bitwise", b, (long long)N);
        CHECKF(memcmp(dq1, dq + (size_t)row * H * D, sq * 2) == 0, "dQ of sequence %d bitwise", b);
        CHECKF(memcmp(dk1, dk + (size_t)row * KVH * D, sk * 2) == 0, "dK of sequence %d bitwise", b);
        CHECKF(memcmp(dv1, dv + (size_t)row * KVH * D, sk * 2) == 0, "dV of sequence %d bitwise", b);
        int lse_same = 1;
        for (int h = 0; h < H; h++)
            lse_same &= memcmp(lse1 + (size_t)h * N, lse + (size_t)h * T + row, (size_t)N * 4) == 0;
        CHECKF(lse_same, "LSE of sequence %d bitwise", b);
        free(o1); free(dq1); free(dk1); free(dv1); free(lse1);
        spattn_plan_destroy(sp);
    }
    /* Back to the uniform batch. */
    CHECK("unpack", spattn_plan_set_seq_lens(pp, NULL, 0) == SPATTN_OK);
    spattn_plan_get_info(pp, &info);
    CHECK("uniform again", info.batch == 1 && info.seq_len == 64 && !strcmp(info.forward_config, "cpu-float64") &&
                               !strcmp(info.deterministic_backward_config, "cpu-float64"));
    free(q); free(k); free(v); free(dout); free(o); free(dq); free(dk); free(dv); free(lse);
    spattn_plan_destroy(pp);
    spattn_context_destroy(c);
}

static const char *spec_spattn = "heads: 4\nkv_heads: 2\nhead_dim: 32\ndtype: bf16\npattern: spattn\n";
static const char *spec_fixed = "heads: 4\nkv_heads: 2\nhead_dim: 32\ndtype: bf16\npattern: spattn\nband_basis: 96\n";
static const char *spec_exclusive = "heads: 4\nkv_heads: 2\nhead_dim: 32\ndtype: bf16\npattern: exclusive\n";

static void test_packed_reference(void)
{
    const int64_t lens[] = { 100, 0, 1, 37, 64, 3 };
    packed_vs_alone(spec_spattn, lens, 6);
}

static void test_packed_reference_fixed_basis(void)
{
    const int64_t lens[] = { 1, 150, 0, 33 };
    packed_vs_alone(spec_fixed, lens, 4);
}

static void test_packed_reference_exclusive(void)
{
    /* Rows with no key (O = 0, LSE = -inf) in every sequence. */
    const int64_t lens[] = { 17, 90, 2 };
    packed_vs_alone(spec_exclusive, lens, 3);
}

/* Each sequence's bands follow its own length (basis = length), unless fixed. */
static void test_bands_per_sequence(void)
{
    spattn_context *c;
    spattn_context_create(SPATTN_DEVICE_CPU, &c);
    spattn_plan *p, *q;
    spattn_plan_from_yaml(c, spec_spattn, strlen(spec_spattn), "s", -1, 1, 64, &p);
    spattn_plan_from_yaml(c, spec_spattn, strlen(spec_spattn), "s", -1, 2, 100, &q);
    const int64_t two[] = { 100, 100 }, mixed[] = { 100, 50 };
    spattn_plan_info a, b;
    CHECK("two equal", spattn_plan_set_seq_lens(p, two, 2) == SPATTN_OK);
    spattn_plan_get_info(p, &a);
    spattn_plan_get_info(q, &b);
    CHECK("packed equal lengths = uniform batch: pairs", a.allowed_pairs == b.allowed_pairs);
    CHECK("packed equal lengths = uniform batch: ratio", fabs(a.work_ratio - b.work_ratio) < 1e-12);
    CHECK("mixed", spattn_plan_set_seq_lens(p, mixed, 2) == SPATTN_OK);
    spattn_plan_info m;
    spattn_plan_get_info(p, &m);
    CHECK("mixed has fewer pairs", m.allowed_pairs < a.allowed_pairs);
    const int64_t bad[] = { 10, -2 };
    CHECK("bad lengths refused", spattn_plan_set_seq_lens(p, bad, 2) == SPATTN_EINVAL);
    CHECK("message names the length", strstr(spattn_plan_error(p), "length 1") != NULL);
    spattn_plan_get_info(p, &a);
    CHECK("a failed call keeps the packing", a.allowed_pairs == m.allowed_pairs);
    spattn_plan_destroy(p);
    spattn_plan_destroy(q);
    spattn_context_destroy(c);
}

static const test_case tests[] = {
    { "packing_init", test_packing_init },
    { "parse_list", test_parse_list },
    { "packed_reference", test_packed_reference },
    { "packed_reference_fixed_basis", test_packed_reference_fixed_basis },
    { "packed_reference_exclusive", test_packed_reference_exclusive },
    { "bands_per_sequence", test_bands_per_sequence },
    { 0, 0 },
};

TEST_MAIN(tests)
