/* The persistent forward's work list: which work items (query tile, head,
 * batch) each CTA runs, in which order, worked out on the host once per plan.
 *
 * Why: the kernel's static order (kernels/scheduler.cuh: CTA c takes items c,
 * c + G, c + 2G, ... of a longest-first order) hands CTAs very different
 * totals when items differ in length: in dense causal attention a query tile
 * m visits m + 1 KV tiles, and at (1,16,16384,128) the busiest of 132 CTAs
 * got 16% more tiles than the mean, so most SMs idled while it finished; a
 * band pattern's heads differ too (10% at the same shape).  The list here is
 * the same longest-first order dealt out by list scheduling (each item in
 * turn to the CTA with the least work so far, Graham's rule; what a dynamic
 * scheduler with an atomic counter does, without the counter or any
 * communication between a CTA's roles), with every item's cost from the band
 * plan in closed form: makespan within about 1% of the mean at the benchmark's
 * shapes (tests/unit/test_fwd_sched.c).
 *
 * Layout (int32, kernels/scheduler.cuh reads it):
 *     list[0 .. ctas]            offsets: CTA c runs entries off[c] .. off[c+1]-1
 *     list[ctas + 1 + k]         entry k: the item (b * heads + h) * q_tiles + qt,
 *                                query rows qt * BM .. (qt + 1) * BM - 1
 * Every item appears exactly once.  A uniform batch only: packed sequences
 * keep the static order. */
#ifndef SPATTN_FWD_SCHED_H
#define SPATTN_FWD_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/kcfg.h"
#include "common/err.h"
#include "runtime/cu.h"

/* The list for cfg's tiles (BM, BN, the pattern's kind for the order) over
 * the band table `bandtab` (abi/bandtab.h: heads rows of stride
 * BANDTAB_STRIDE(max_intervals), at N), for ctas CTAs (1 .. items).  *out is
 * malloc'd, *count its ints.  -1 on bad arguments (SP_EXIT_USAGE) or no
 * memory. */
int fwd_sched_build(const sp_kcfg *cfg, const int32_t *bandtab, int max_intervals, int heads, int batch, int N,
                    int ctas, int32_t **out, size_t *count, sp_err *e);

/* The list on the device, and what it was built for: the launch uses it only
 * for that many CTAs and items (runtime/attn.c). */
typedef struct {
    sp_dptr list;   /* 0: none */
    int ctas, items;
} fwd_sched;

/* Past this many items a plan keeps the static order: the list would take
 * 4 bytes an item on the device and about 24 on the host while it is built
 * (a (8, 32, 2^21) problem has 2^22 items of BM 128). */
#define FWD_SCHED_MAX_ITEMS (1 << 22)

/* Build for the persistent grid of g (attn_fwd_persistent_grid) and upload;
 * s is left empty (list 0: the kernel's static order) when cfg's family is
 * not persistent or the problem has more than FWD_SCHED_MAX_ITEMS items. */
int fwd_sched_upload(sp_gpu *g, const sp_kcfg *cfg, const int32_t *bandtab, int max_intervals, int heads,
                     int batch, int N, fwd_sched *s, sp_err *e);
void fwd_sched_free(sp_gpu *g, fwd_sched *s);

#endif
