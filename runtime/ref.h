/* The CPU reference: attention forward and backward in double precision,
 * exactly as DESIGN.md section 1 defines them, threaded over (batch, head).
 * Shapes (default layout, C order):
 *     q, o, dout, dq : [B, N, H,   D]
 *     k, v, dk, dv   : [B, N, KVH, D]
 *     lse            : [B, H, N]        natural log, scale included
 * Rows with no allowed key: o = 0, lse = -inf, no gradient. */
#ifndef SPATTN_REF_H
#define SPATTN_REF_H

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
