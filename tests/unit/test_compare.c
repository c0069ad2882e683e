/* The result comparison that `check` and the tuner trust: it must fail on
 * NaN, on a wrong infinity, and on errors over the bound. */
#include <math.h>

#include "runtime/compare.h"
#include "tests/check.h"

static cmp_result compare(const float *o, const double *r, size_t n)
{
    cmp_result res;
    cmp_arrays(o, r, n, &res);
    return res;
}

static void test_exact(void)
{
    float o[3] = { 1, -2, 3 };
    double r[3] = { 1, -2, 3 };
    cmp_result c = compare(o, r, 3);
    CHECK("equal arrays: zero error", c.rel_l2 == 0 && c.max_abs == 0);
    CHECK("equal arrays pass", cmp_pass(&c, 1e-2));
}

static void test_relative(void)
{
    float o[2] = { 3.0f, 4.04f };
    double r[2] = { 3, 4 };
    cmp_result c = compare(o, r, 2);
    CHECKF(fabs(c.rel_l2 - 0.04 / 5) < 1e-6, "rel_l2 = %g, want 0.008", c.rel_l2);
    CHECK("max abs", fabs(c.max_abs - 0.04) < 1e-6);
    CHECK("passes the bf16 bound", cmp_pass(&c, cmp_bound(1)));
    CHECK("fails the fp16 bound", !cmp_pass(&c, cmp_bound(0)));
}

static void test_nan_fails(void)
{
    float o[2] = { NAN, 1 };
    double r[2] = { 1, 1 };
    cmp_result c = compare(o, r, 2);
    CHECK("NaN counted", c.nan_count == 1);
    CHECK("NaN never passes", !cmp_pass(&c, 1e9));
}

static void test_inf(void)
{
    float o[2] = { -INFINITY, 1 };
    double r[2] = { -INFINITY, 1 };
    cmp_result c = compare(o, r, 2);
    CHECK("matching -inf passes", cmp_pass(&c, 1e-6) && c.inf_mismatch == 0);
    float o2[2] = { 0, 1 };
    c = compare(o2, r, 2);
    CHECK("finite where ref is -inf fails", !cmp_pass(&c, 1e9) && c.inf_mismatch == 1);
    float o3[1] = { INFINITY };
    double r3[1] = { -INFINITY };
    c = compare(o3, r3, 1);
    CHECK("+inf vs -inf fails", c.inf_mismatch == 1);
}

static void test_zero_ref(void)
{
    float o[2] = { 0, 0 };
    double r[2] = { 0, 0 };
    cmp_result c = compare(o, r, 2);
    CHECK("zero vs zero passes", cmp_pass(&c, 1e-6));
    float o2[2] = { 1e-3f, 0 };
    c = compare(o2, r, 2);
    CHECK("nonzero vs zero ref fails", !cmp_pass(&c, 1e-2));
    /* N = 1 in fp16: dK is 0 in float64, about 1e-6 of rounding on the GPU */
    float o3[4] = { 1.4e-6f, -8e-7f, 3e-7f, -1.1e-6f };
    double r4[4] = { 0, 0, 0, 0 };
    c = compare(o3, r4, 4);
    CHECK("rounding noise on a zero reference passes fp16's bound", cmp_pass(&c, cmp_bound(0)));
    float o4[4] = { 2e-4f, -2e-4f, 2e-4f, -2e-4f };
    c = compare(o4, r4, 4);
    CHECK("an error of 2e-4 on a zero reference fails both bounds", !cmp_pass(&c, cmp_bound(0)) && !cmp_pass(&c, cmp_bound(1)));
}

/* Issue 13: rows that must be exactly 0 are judged exactly, whatever the
 * rest of the tensor: one stale value among zeros fails, NaN fails, -0 is 0. */
static void test_must_be_zero(void)
{
    float r0[4] = { 0.f, -0.f, 0.f, 0.f }, r1[4] = { 0.f, 0.f, 0.f, 0.f }, r2[4] = { 0.f, 3e-8f, 0.f, 0.f };
    const float *ok[2] = { r0, r1 }, *stale[3] = { r0, r2, r1 };
    cmp_result r;
    cmp_must_be_zero(ok, 2, 4, &r);
    CHECK("zeros pass (also -0)", cmp_pass(&r, 0.0) && r.n == 8 && r.nonzero == 0);
    cmp_must_be_zero(stale, 3, 4, &r);
    CHECK("one tiny value fails", !cmp_pass(&r, 1.0) && r.nonzero == 1 && r.max_abs > 0);
    float r3[2] = { NAN, 0.f };
    const float *nan_row[1] = { r3 };
    cmp_must_be_zero(nan_row, 1, 2, &r);
    CHECK("NaN fails", !cmp_pass(&r, 1.0) && r.nonzero == 1);
    cmp_must_be_zero(NULL, 0, 4, &r);
    CHECK("no rows: passes", cmp_pass(&r, 0.0) && r.n == 0);
}

static const test_case tests[] = {
    { "exact", test_exact }, { "relative", test_relative }, { "nan_fails", test_nan_fails },
    { "inf", test_inf }, { "zero_ref", test_zero_ref },
    { "must_be_zero", test_must_be_zero }, { 0, 0 },
};
TEST_MAIN(tests)
