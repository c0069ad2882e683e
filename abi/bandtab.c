#include "abi/bandtab.h"

#include "codegen/bands.h"

int bandtab_max_intervals(const sp_pattern *p, int heads)
{
    switch (p->kind) {
    case SP_SPATTN: return 2;    /* local window + own band */
    case SP_CUSTOM: {
        int most = 1;
        for (int h = 0; h < heads; h++)
            if (p->custom[h].n > most) most = p->custom[h].n;
        return most;
    }
    default: return 1;
    }
}

int bandtab_fill(const sp_pattern *p, int heads, int64_t N, int max_intervals, int32_t *table, sp_err *e)
{
    if (N > INT32_MAX / 2) return sp_fail(e, SP_EXIT_USAGE, "sequence length %lld is too large", (long long)N);
    int stride = BANDTAB_STRIDE(max_intervals);
    for (int h = 0; h < heads; h++) {
        sp_band_list b;
        bands_head(p, heads, h, N, &b);
        if (b.n > max_intervals)
            return sp_fail(e, SP_EXIT_USAGE, "head %d has %d intervals, more than the kernel's %d", h, b.n, max_intervals);
        int32_t *row = table + (int64_t)h * stride;
        row[0] = b.n;
        for (int k = 0; k < max_intervals; k++) {
            row[1 + 2 * k] = k < b.n ? (int32_t)b.iv[k].lo : 0;
            row[2 + 2 * k] = k < b.n ? (int32_t)b.iv[k].hi : 0;
        }
    }
    return 0;
}
