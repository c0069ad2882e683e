#include "runtime/config.h"

#include <stdio.h>
#include <string.h>

#include "codegen/kcfg_bwd.h"
#include "runtime/nvrtc.h"

const char *config_kind_name(sp_kernel_kind kind, int deterministic)
{
    return kind == SP_KIND_BWD && deterministic ? "bwd-det" : kcfg_kind_name(kind);
}

void config_db_key(const sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind,
                   int deterministic, int batch, int64_t N, int new_tokens, db_key *key)
{
    memset(key, 0, sizeof *key);
    snprintf(key->gpu_name, sizeof key->gpu_name, "%.127s", g->name);
    key->sm = g->sm;
    key->sm_count = g->sm_count;
    key->driver_version = g->driver_version;
    key->nvrtc_version = nvrtc_version();
    snprintf(key->spattn_version, sizeof key->spattn_version, "%s", SPATTN_VERSION);
    snprintf(key->kind, sizeof key->kind, "%s", config_kind_name(kind, deterministic));
    key->heads = spec->heads;
    key->kv_heads = spec->kv_heads;
    key->head_dim = spec->head_dim;
    snprintf(key->dtype, sizeof key->dtype, "%s", sp_dtype_name(spec->dtype));
    snprintf(key->pattern, sizeof key->pattern, "%s", sp_pattern_name(pat->kind));
    if (pat->kind == SP_CUSTOM) db_bands_hash(pat->custom, spec->heads, key->bands_hash);
    key->band_basis = pat->band_basis;
    if (pat->kind == SP_WINDOW) key->band_basis = pat->window;   /* a window's one parameter: W */
    key->batch = batch;
    key->seq_bucket = db_seq_bucket(N);
    key->new_tokens = kind == SP_KIND_DEC ? (new_tokens > 1 ? new_tokens : 1) : 0;
}

int config_pick(const sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind, int deterministic,
                int batch, int64_t N, int new_tokens, const char *db_path, const char *tile, sp_kcfg *c, char *source,
                size_t n, sp_err *e)
{
    kcfg_for_spec(c, spec, pat, kind, g->sm);
    if (tile) {   /* the same config in both modes of the backward */
        if (kcfg_parse_tile(tile, c, e)) return -1;
        snprintf(source, n, "--tile");
        return kcfg_derive(c, e);
    }
    if (kind == SP_KIND_BWD && deterministic) kcfg_default_bwd_det(c, g->sm);
    db *d = NULL;
    sp_err dbe = { 0 };
    /* A missing or unreadable database only means "not tuned": fall back. */
    if (db_open(db_path, 1, &d, &dbe) == 0) {
        db_key key;
        db_row row;
        int found = 0;
        config_db_key(g, spec, pat, kind, deterministic, batch, N, new_tokens, &key);
        if (db_lookup_nearest(d, &key, &row, &found, &dbe) == 0 && found) {
            sp_kcfg t = *c;
            sp_err pe = { 0 };
            if (kcfg_parse_tile(row.tile, &t, &pe) == 0 && kcfg_derive(&t, &pe) == 0) {
                /* Splits fit the shape they were timed at: B x KVH x row
                 * blocks CTAs, each N / BN tiles long. */
                int lend = kind == SP_KIND_DEC && t.splits > 0 &&
                           (row.key.batch != key.batch || row.key.seq_bucket != key.seq_bucket ||
                            row.key.new_tokens != key.new_tokens);
                if (lend) t.splits = 0;
                *c = t;
                if (kind == SP_KIND_DEC)
                    snprintf(source, n, "tuned (batch %lld, N<=%lld, T=%d%s)", (long long)row.key.batch,
                             (long long)row.key.seq_bucket, row.key.new_tokens, lend ? ", splits at launch" : "");
                else
                    snprintf(source, n, "tuned (batch %lld, N<=%lld)", (long long)row.key.batch,
                             (long long)row.key.seq_bucket);
                db_close(d);
                return 0;
            }
        }
        db_close(d);
    }
    snprintf(source, n, "heuristic");
    return kcfg_derive(c, e);
}
