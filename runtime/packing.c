/* Packed sequences on the host (runtime/packing.h). */
#include "runtime/packing.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "abi/bandtab.h"
#include "codegen/bands.h"
#include "codegen/kcfg_bwd.h"

int packing_init(sp_packing *pk, const int64_t *lens, int n, sp_err *e)
{
    memset(pk, 0, sizeof *pk);
    if (n < 1 || n > PACKING_MAX_SEQS || !lens)
        return sp_fail(e, SP_EXIT_USAGE, "packed sequences: %d sequences, expected 1..%d", n, PACKING_MAX_SEQS);
    int64_t total = 0, max_len = 0;
    for (int b = 0; b < n; b++) {
        if (lens[b] < 0 || lens[b] > (1 << 24))
            return sp_fail(e, SP_EXIT_USAGE, "packed sequences: length %d is %lld, expected 0..2^24", b,
                           (long long)lens[b]);
        total += lens[b];
        if (lens[b] > max_len) max_len = lens[b];
        if (total > PACKING_MAX_TOKENS)
            return sp_fail(e, SP_EXIT_USAGE, "packed sequences: more than 2^30 tokens in all");
    }
    if (max_len < 1) return sp_fail(e, SP_EXIT_USAGE, "packed sequences: every sequence is empty");
    pk->len = malloc((size_t)n * sizeof *pk->len);
    pk->cu = malloc(((size_t)n + 1) * sizeof *pk->cu);
    if (!pk->len || !pk->cu) {
        packing_free(pk);
        return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    }
    pk->n = n;
    pk->cu[0] = 0;
    for (int b = 0; b < n; b++) {
        pk->len[b] = lens[b];
        pk->cu[b + 1] = (int32_t)(pk->cu[b] + lens[b]);
    }
    pk->total = total;
    pk->max_len = max_len;
    return 0;
}

void packing_free(sp_packing *pk)
{
    free(pk->len);
    free(pk->cu);
    memset(pk, 0, sizeof *pk);
}

int packing_bandtab(const sp_packing *pk, const sp_pattern *pat, int heads, int maxi, int32_t **out, int *stride,
                    sp_err *e)
{
    const int per = heads * BANDTAB_STRIDE(maxi);
    int32_t *tab = malloc((size_t)pk->n * (size_t)per * sizeof *tab);
    if (!tab) return sp_fail(e, SP_EXIT_FAIL, "out of memory for %d band tables", pk->n);
    for (int b = 0; b < pk->n; b++)
        if (bandtab_fill(pat, heads, pk->len[b] > 0 ? pk->len[b] : 1, maxi, tab + (size_t)b * per, e)) {
            free(tab);
            return -1;
        }
    *out = tab;
    *stride = per;
    return 0;
}

int packing_bands(const sp_packing *pk, const sp_pattern *pat, int heads, sp_band_list **out, int64_t *pairs,
                  int64_t *dense_pairs, sp_err *e)
{
    sp_band_list *bl = calloc((size_t)pk->n * (size_t)heads, sizeof *bl);
    if (!bl) return sp_fail(e, SP_EXIT_FAIL, "out of memory for the bands of %d sequences", pk->n);
    int64_t p = 0, d = 0;
    for (int b = 0; b < pk->n; b++) {
        const int64_t N = pk->len[b];
        if (N < 1) continue;   /* no rows: no bands, no pairs */
        for (int h = 0; h < heads; h++) {
            if (bands_head(pat, heads, h, N, &bl[(size_t)b * heads + h])) {
                free(bl);
                return sp_fail(e, SP_EXIT_USAGE, "head %d: no bands at length %lld", h, (long long)N);
            }
            p += bands_pairs(&bl[(size_t)b * heads + h], N);
        }
        d += (int64_t)heads * bands_dense_pairs(N);
    }
    *out = bl;
    if (pairs) *pairs = p;
    if (dense_pairs) *dense_pairs = d;
    return 0;
}

long long packing_ws_rows(int64_t total, int n)
{
    return ((total + 3) & ~(int64_t)3) + (long long)n * (KCFG_BWD_ROW_PAD + 4);
}

/* Sequence b's tiles end at cu[b] / bm + b + ceil(len / bm) <= (cu[b] + len) / bm + b + 1 =
 * cu[b + 1] / bm + (b + 1): the next one's start, and for the last, total / bm + n. */
long long packing_sem_tiles(int64_t total, int n, int bm) { return total / bm + n; }

int packing_parse_list(const char *text, int64_t *lens, int cap, int *n, sp_err *e)
{
    *n = 0;
    if (!text || !*text) return sp_fail(e, SP_EXIT_USAGE, "--seq-lens: empty list");
    const char *s = text;
    for (;;) {
        if (*n >= cap) return sp_fail(e, SP_EXIT_USAGE, "--seq-lens: more than %d lengths", cap);
        if (*s < '0' || *s > '9')
            return sp_fail(e, SP_EXIT_USAGE, "--seq-lens: '%s' is not a comma-separated list of lengths >= 1", text);
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (errno || v < 1 || v > (1 << 24))
            return sp_fail(e, SP_EXIT_USAGE, "--seq-lens: length %d of '%s' must be 1..2^24", *n + 1, text);
        lens[(*n)++] = v;
        if (*end == 0) return 0;
        if (*end != ',' || end[1] == 0)
            return sp_fail(e, SP_EXIT_USAGE, "--seq-lens: '%s' is not a comma-separated list of lengths >= 1", text);
        s = end + 1;
    }
}
