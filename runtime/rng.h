/* A small deterministic random number generator for test and benchmark
 * inputs: xoshiro256** seeded through splitmix64, normals by Box-Muller.
 * The bits are integer arithmetic, identical everywhere; normals add libm's
 * log, sqrt, cos and sin, so the same seed gives the same inputs in one
 * process and on one host, which is what lets `spattn run --seed S` on the
 * CPU and on the GPU start from identical inputs.  (Another C library may
 * differ in a last bit, which rarely changes a value rounded to 16 bits.) */
#ifndef SPATTN_RNG_H
#define SPATTN_RNG_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/spec.h"

typedef struct {
    uint64_t s[4];      /* xoshiro256** state, never all zero */
    int has_spare;      /* Box-Muller makes normals in pairs */
    double spare;
} rng;

/* Seed the generator; any seed (0 included) gives a valid state. */
void rng_seed(rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t rng_next(rng *r);
/* Uniform in [0, 1), 53 bits. */
double rng_uniform(rng *r);
/* Standard normal (mean 0, std 1). */
double rng_normal(rng *r);
/* n standard normals rounded to dtype: bits[i] gets the 16-bit encoding
 * (what the GPU is given) and val[i] its exact value as a double (what the
 * CPU reference is given).  Either pointer may be NULL. */
void rng_fill_normal(rng *r, sp_dtype dtype, size_t n, uint16_t *bits, double *val);

/* Round x to dtype (bf16 or fp16, nearest even) and back: the value the GPU
 * sees for x.  *bits (if not NULL) gets the 16-bit encoding. */
double rng_round_dtype(sp_dtype dtype, double x, uint16_t *bits);

#endif
