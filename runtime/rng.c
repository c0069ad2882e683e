#include "runtime/rng.h"

#include <math.h>

#include "common/half.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void rng_seed(rng *r, uint64_t seed)
{
    /* splitmix64 output is never four zeros in a row, so the xoshiro state
     * is valid for every seed. */
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
    r->has_spare = 0;
    r->spare = 0;
}

uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double rng_normal(rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    /* u1 in (0, 1] so log(u1) is finite. */
    double u1 = 1.0 - rng_uniform(r);
    double u2 = rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586476925 * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

double rng_round_dtype(sp_dtype dtype, double x, uint16_t *bits)
{
    uint16_t b;
    double v;
    if (dtype == SP_BF16) {
        b = float_to_bf16((float)x);
        v = bf16_to_float(b);
    } else {
        b = float_to_fp16((float)x);
        v = fp16_to_float(b);
    }
    if (bits) *bits = b;
    return v;
}

void rng_fill_normal(rng *r, sp_dtype dtype, size_t n, uint16_t *bits, double *val)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t b;
        double v = rng_round_dtype(dtype, rng_normal(r), &b);
        if (bits) bits[i] = b;
        if (val) val[i] = v;
    }
}
