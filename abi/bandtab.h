/* The kernel ABI (abi/): what the host hands a generated kernel, included
 * by codegen (which writes it into the source) and runtime (which packs
 * it) alike; codegen never includes runtime.  Here, the band table: how
 * kernels (generated ones and the cuBLAS reference) learn each head's
 * allowed distances.  For sequence length N it holds, for
 * every global head h, the merged intervals from bands_head():
 *
 *     int32 table[heads][BANDTAB_STRIDE(max_intervals)]
 *     table[h][0]          = count of intervals (0 .. max_intervals)
 *     table[h][1 + 2k]     = lo_k      (distance, inclusive)
 *     table[h][2 + 2k]     = hi_k      (distance, exclusive), ascending in k
 *
 * It is a few hundred bytes per launch: the kernels derive their tile ranges
 * from it in closed form, so nothing per-N or per-tile is stored. */
#ifndef SPATTN_BANDTAB_H
#define SPATTN_BANDTAB_H

#include <stdint.h>

#include "codegen/spec.h"
#include "common/err.h"

#define BANDTAB_STRIDE(max_intervals) (1 + 2 * (max_intervals))

/* Most intervals any head of pattern p can have after merging (>= 1). */
int bandtab_max_intervals(const sp_pattern *p, int heads);
/* Fill table (heads * BANDTAB_STRIDE(max_intervals) int32s).  -1 if a head
 * needs more than max_intervals or N exceeds int32. */
int bandtab_fill(const sp_pattern *p, int heads, int64_t N, int max_intervals, int32_t *table, sp_err *e);

#endif
