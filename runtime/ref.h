/* The CPU reference: attention forward and backward in double precision,
 * exactly as DESIGN.md section 1 defines them, threaded over (batch, head).
 * Shapes (default layout, C order):
 *     q, o, dout, dq : [B, N, H,   D]
 *     k, v, dk, dv   : [B, N, KVH, D]
 *     lse            : [B, H, N]        natural log, scale included
 * Rows with no allowed key: o = 0, lse = -inf, no gradient. */
#ifndef SPATTN_REF_H
#define SPATTN_REF_H

#include <stdint.h>

#include "codegen/spec.h"
#include "runtime/packing.h"

typedef struct {
    int B, N, H, KVH, D;
    double scale;
    const sp_band_list *bands;  /* H entries: head h's merged intervals at this N */
    int threads;                /* worker threads; 0 = number of online CPUs */
} ref_problem;

/* Forward: fills o and lse.  Returns 0, or -1 if threads cannot start. */
int ref_forward(const ref_problem *p, const double *q, const double *k, const double *v,
                double *o, double *lse);
/* Backward from dout (o and lse as ref_forward gave them): fills dq, dk, dv.
 * dk and dv sum over the query heads that share a kv head. */
int ref_backward(const ref_problem *p, const double *q, const double *k, const double *v,
                 const double *o, const double *lse, const double *dout,
                 double *dq, double *dk, double *dv);

/* Decode from a KV cache (DESIGN.md's attention at the last T positions):
 *     q, o : [B, T, H, D]      the new tokens' queries and outputs
 *     k, v : [B, N, KVH, D]    the cache (N: its capacity), or, with a block
 *            table, [num_pages, page_size, KVH, D]: token j of sequence b in
 *            row j % page_size of page block_table[b * max_pages + j / page_size]
 *     lse  : [B, H, T]
 * Sequence b holds len = kv_lens[b] tokens (NULL: all N; 0 <= len <= N); row
 * t is position i = len - T + t (i < 0: no key) and attends with head h's
 * bands at length len (bands_head(pattern, H, h, len): the bands follow the
 * sequence, unless the pattern fixes band_basis).  Each row runs the
 * forward's per-row code, so with len = N the result is bitwise the last T
 * rows of ref_forward over N. */
typedef struct {
    int B, T, N, H, KVH, D;
    double scale;
    const sp_pattern *pattern;
    const int32_t *kv_lens;       /* B entries or NULL */
    const int32_t *block_table;   /* B * max_pages entries, or NULL: contiguous */
    int max_pages, page_size;
    int threads;
} ref_decode_problem;

/* Fills o and lse.  -1 on bad arguments (a length outside 0..N) or if
 * threads cannot start. */
int ref_decode(const ref_decode_problem *p, const double *q, const double *k, const double *v, double *o, double *lse);

/* Packed sequences (runtime/packing.h): q, o, dout, dq [total, H, D]; k, v,
 * dk, dv [total, KVH, D]; lse [H, total].  Sequence b (rows cu[b] ..)
 * runs as the functions above with B = 1, N = its length and its own bands
 * (bands[b * H ..], from packing_bands), one after another, on pointers
 * into the packed arrays: so the result is, bit for bit, that of running
 * each sequence alone.  p->B, p->N and p->bands are not used.  Empty
 * sequences have no rows. */
int ref_forward_packed(const ref_problem *p, const sp_packing *pk, const sp_band_list *bands, const double *q,
                       const double *k, const double *v, double *o, double *lse);
int ref_backward_packed(const ref_problem *p, const sp_packing *pk, const sp_band_list *bands, const double *q,
                        const double *k, const double *v, const double *o, const double *lse, const double *dout,
                        double *dq, double *dk, double *dv);

#endif
