/* Packed (ragged) sequences on the host (issue 18): B sequences of their
 * own lengths laid end to end in one tensor, [total, heads, D], with int32
 * row offsets cu_seqlens (B + 1 entries, cu[0] = 0).  Each sequence is its
 * own causal attention from position 0 with its own bands (basis: its own
 * length, unless the pattern fixes band_basis).  The kernels' side is
 * kernels/seq.cuh; this is what the host computes once per packing: the
 * offsets, every sequence's band table, the work, and the backward's
 * scratch rows. */
#ifndef SPATTN_PACKING_H
#define SPATTN_PACKING_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/spec.h"
#include "common/err.h"

/* The most sequences one packing takes, and the most tokens (int32 rows,
 * with room for the kernels' row arithmetic). */
#define PACKING_MAX_SEQS 65535
#define PACKING_MAX_TOKENS (1 << 30)

typedef struct {
    int n;              /* sequences, >= 1 */
    int64_t *len;       /* n lengths, >= 0 */
    int32_t *cu;        /* n + 1 first rows: cu[0] = 0, cu[b + 1] = cu[b] + len[b] */
    int64_t total;      /* cu[n] */
    int64_t max_len;    /* the longest, >= 1 */
} sp_packing;

/* Check and copy n lengths: n in 1..PACKING_MAX_SEQS, every length >= 0 and
 * <= 2^24, at least one > 0, total <= PACKING_MAX_TOKENS.  -1 (usage) with
 * a message naming the bad entry. */
int packing_init(sp_packing *pk, const int64_t *lens, int n, sp_err *e);
void packing_free(sp_packing *pk);

/* Every sequence's band table (abi/bandtab.h) at its own length, one after
 * another: n * heads * BANDTAB_STRIDE(maxi) int32s into *out (malloc'd);
 * *stride = heads * BANDTAB_STRIDE(maxi), the kernels' bands_sb.  An empty
 * sequence gets its table at length 1 (no kernel reads it). */
int packing_bandtab(const sp_packing *pk, const sp_pattern *pat, int heads, int maxi, int32_t **out, int *stride,
                    sp_err *e);

/* Head h's bands of every sequence: n * heads lists, sequence-major
 * (out[b * heads + h]), malloc'd; allowed pairs over sequences and heads,
 * and the dense causal pairs of the same sequences (times heads). */
int packing_bands(const sp_packing *pk, const sp_pattern *pat, int heads, sp_band_list **out, int64_t *pairs,
                  int64_t *dense_pairs, sp_err *e);

/* Rows per head of the backward's delta and lse2 scratch: every sequence
 * its length rounded up to the kernels' ROW_PAD, aligned, as
 * kernels/seq_bwd.cuh's seq_ws_row lays them out. */
long long packing_ws_rows(int64_t total, int n);

/* Query tiles per head of the backward's dQ semaphores (main_sem,
 * kernels/bwd_order.cuh) for tiles of bm rows: sequence b's start at tile
 * cu[b] / bm + b (kernels/seq_bwd.cuh), ceil(len / bm) of them, before the
 * next sequence's and below total / bm + n. */
long long packing_sem_tiles(int64_t total, int n, int bm);

/* "4096,100,2000" -> lens (at most cap): decimal integers >= 1 separated
 * by commas, no blanks.  -1 (usage) with a one-line message otherwise. */
int packing_parse_list(const char *text, int64_t *lens, int cap, int *n, sp_err *e);

#endif
