#include "runtime/compare.h"

#include <math.h>
#include <string.h>

void cmp_begin(cmp_acc *a) { a->diff2 = a->ref2 = a->max_abs = 0; a->n = a->nan_count = a->inf_mismatch = 0; }

void cmp_add(cmp_acc *a, const float *out, const double *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double o = out[i], r = ref[i];
        a->n++;
        if (isnan(o) || isnan(r)) { a->nan_count++; continue; }
        if (isinf(o) || isinf(r)) {
            if (!(isinf(o) && isinf(r) && (o > 0) == (r > 0))) a->inf_mismatch++;
            continue;
        }
        double d = o - r;
        a->diff2 += d * d;
        a->ref2 += r * r;
        if (fabs(d) > a->max_abs) a->max_abs = fabs(d);
    }
}

void cmp_end(const cmp_acc *a, cmp_result *r)
{
    r->n = a->n;
    r->nonzero = 0;
    r->nan_count = a->nan_count;
    r->inf_mismatch = a->inf_mismatch;
    r->max_abs = a->max_abs;
    /* The norm of the reference, floored at CMP_RMS_FLOOR per element: a
     * reference that is exactly zero (dQ and dK when every row has a single
     * allowed key) is judged by the RMS of the error against that floor
     * instead of dividing rounding noise by zero. */
    double floor2 = CMP_RMS_FLOOR * CMP_RMS_FLOOR * (double)(a->n - a->nan_count - a->inf_mismatch);
    double denom2 = a->ref2 > floor2 ? a->ref2 : floor2;
    r->rel_l2 = denom2 > 0 ? sqrt(a->diff2 / denom2) : 0.0;
}

void cmp_arrays(const float *out, const double *ref, size_t n, cmp_result *r)
{
    cmp_acc a;
    cmp_begin(&a);
    cmp_add(&a, out, ref, n);
    cmp_end(&a, r);
}

void cmp_must_be_zero(const float *const *rows, size_t nrows, size_t row_len, cmp_result *r)
{
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < nrows; i++)
        for (size_t j = 0; j < row_len; j++) {
            float x = rows[i][j];
            r->n++;
            if (x != 0.0f) r->nonzero++;   /* NaN != 0 too; -0 is 0 */
            double m = isnan(x) ? INFINITY : fabs((double)x);
            if (m > r->max_abs) r->max_abs = m;
        }
}

int cmp_pass(const cmp_result *r, double bound)
{
    return r->nan_count == 0 && r->inf_mismatch == 0 && r->nonzero == 0 && r->rel_l2 <= bound;
}

double cmp_bound(int is_bf16) { return is_bf16 ? 1e-2 : 2e-3; }
