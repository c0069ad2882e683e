/* Config selection (runtime/config.h) for the backward's two modes: the
 * deterministic mode's heuristic, its own database kind "bwd-det", and that
 * a row tuned in one mode is never used for the other; an explicit tile
 * serves both.  On the fake GPU's identity (sm_90) and a temporary
 * database, no GPU needed. */
#include <stdlib.h>
#include <string.h>

#include "codegen/kcfg_bwd.h"
#include "runtime/config.h"
#include "runtime/tune.h"
#include "tests/check.h"
#include "tuning_db/db.h"

/* The temporary database's path (removed at exit). */
static const char *db_path(void)
{
    static char path[600];
    if (!path[0]) snprintf(path, sizeof path, "%s/tune.db", check_tmp_dir("config"));
    return path;
}

static void spec_d(sp_spec *s, int head_dim)
{
    memset(s, 0, sizeof *s);
    s->heads = 8;
    s->kv_heads = 8;
    s->head_dim = head_dim;
    s->dtype = SP_BF16;
    s->pattern.kind = SP_SPATTN;
}

/* config_pick's tile string and source for (kind, mode) at batch 4, N 4096. */
static int pick(const sp_spec *s, sp_kernel_kind kind, int det, const char *tile, char *got, char *src)
{
    sp_gpu g;
    tune_fake_gpu(&g);
    sp_kcfg c;
    sp_err e = { 0 };
    if (config_pick(&g, s, &s->pattern, kind, det, 4, 4096, 0, db_path(), tile, &c, src, 160, &e)) {
        snprintf(got, 64, "error: %.50s", e.msg);
        return -1;
    }
    kcfg_tile_string(&c, got, 64);
    return 0;
}

/* A backward row of kind (det: "bwd-det") with this tile at batch 4, N 4096. */
static int put_row(const sp_spec *s, int det, const char *tile, int bm, int bn, int warps, int stages)
{
    sp_gpu g;
    tune_fake_gpu(&g);
    db_row r;
    memset(&r, 0, sizeof r);
    config_db_key(&g, s, &s->pattern, SP_KIND_BWD, det, 4, 4096, 0, &r.key);
    snprintf(r.tile, sizeof r.tile, "%s", tile);
    r.bm = bm; r.bn = bn; r.warps = warps; r.stages = stages;
    r.median_ms = 1;
    r.candidates = 2;
    db *d = NULL;
    sp_err e = { 0 };
    int rc = db_open(db_path(), 0, &d, &e) || db_put_rows(d, &r, 1, &e);
    if (rc) fprintf(stderr, "  put_row: %s\n", e.msg);
    db_close(d);
    return rc;
}

static void test_kind_names(void)
{
    CHECK("bwd, deterministic: bwd-det", !strcmp(config_kind_name(SP_KIND_BWD, 1), "bwd-det"));
    CHECK("bwd", !strcmp(config_kind_name(SP_KIND_BWD, 0), "bwd"));
    CHECK("fwd and dec have one mode", !strcmp(config_kind_name(SP_KIND_FWD, 1), "fwd") &&
                                           !strcmp(config_kind_name(SP_KIND_DEC, 1), "dec"));
    sp_gpu g;
    tune_fake_gpu(&g);
    sp_spec s;
    spec_d(&s, 64);
    db_key k;
    config_db_key(&g, &s, &s.pattern, SP_KIND_BWD, 1, 4, 4000, 0, &k);
    CHECK("the deterministic backward's key", !strcmp(k.kind, "bwd-det") && k.new_tokens == 0 && k.seq_bucket == 4096);
    db_row r;
    memset(&r, 0, sizeof r);
    r.key = k;
    snprintf(r.tile, sizeof r.tile, "64x64:w4:s2:ws");
    r.bm = r.bn = 64; r.warps = 4; r.stages = 2;
    r.median_ms = 1;
    r.candidates = 1;
    char why[256] = "";
    CHECKF(db_validate_row(&r, why, sizeof why) == 0, "a bwd-det row is valid (%s)", why);
}

/* No database rows: each mode its heuristic; at d64 on sm_90 they differ. */
static void test_heuristics(void)
{
    sp_spec s;
    char got[64], src[160];
    spec_d(&s, 64);
    CHECK("d64 default mode", pick(&s, SP_KIND_BWD, 0, NULL, got, src) == 0 && !strcmp(got, "64x64:w4:s3:ws") &&
                                  !strcmp(src, "heuristic"));
    CHECKF(pick(&s, SP_KIND_BWD, 1, NULL, got, src) == 0 && !strcmp(got, "64x64:w4:s2:ws") && !strcmp(src, "heuristic"),
           "d64 deterministic mode: %s (%s)", got, src);
    spec_d(&s, 128);
    char det[64];
    CHECK("d128: both modes the same", pick(&s, SP_KIND_BWD, 0, NULL, got, src) == 0 &&
                                           pick(&s, SP_KIND_BWD, 1, NULL, det, src) == 0 && !strcmp(got, det) &&
                                           !strcmp(got, "64x128:w8:s2:ws"));
    CHECK("the forward ignores the flag", pick(&s, SP_KIND_FWD, 1, NULL, got, src) == 0 &&
                                              pick(&s, SP_KIND_FWD, 0, NULL, det, src) == 0 && !strcmp(got, det));
}

/* A bwd row serves the default mode only, a bwd-det row the deterministic
 * mode only. */
static void test_rows_per_mode(void)
{
    sp_spec s;
    char got[64], src[160];
    spec_d(&s, 64);
    CHECK("a bwd row", put_row(&s, 0, "128x128:w8:s2", 128, 128, 8, 2) == 0);
    CHECKF(pick(&s, SP_KIND_BWD, 0, NULL, got, src) == 0 && !strcmp(got, "128x128:w8:s2") && strstr(src, "tuned"),
           "the default mode takes it: %s (%s)", got, src);
    CHECKF(pick(&s, SP_KIND_BWD, 1, NULL, got, src) == 0 && !strcmp(got, "64x64:w4:s2:ws") && !strcmp(src, "heuristic"),
           "the deterministic mode does not (its heuristic): %s (%s)", got, src);
    CHECK("a bwd-det row", put_row(&s, 1, "64x64:w4:s3:wgmma", 64, 64, 4, 3) == 0);
    CHECKF(pick(&s, SP_KIND_BWD, 1, NULL, got, src) == 0 && !strcmp(got, "64x64:w4:s3:wgmma") &&
               !strcmp(src, "tuned (batch 4, N<=4096)"),
           "the deterministic mode takes its row: %s (%s)", got, src);
    CHECKF(pick(&s, SP_KIND_BWD, 0, NULL, got, src) == 0 && !strcmp(got, "128x128:w8:s2"),
           "the default mode keeps its own: %s (%s)", got, src);
    spec_d(&s, 128);
    CHECKF(pick(&s, SP_KIND_BWD, 1, NULL, got, src) == 0 && !strcmp(src, "heuristic"),
           "another spec's rows are not used: %s (%s)", got, src);
}

/* An explicit tile is the config of both modes, stages left out the
 * default mode's heuristic's. */
static void test_tile_serves_both(void)
{
    sp_spec s;
    char got[64], src[160], det[64];
    spec_d(&s, 64);
    CHECKF(pick(&s, SP_KIND_BWD, 0, "64x64:ws", got, src) == 0 && pick(&s, SP_KIND_BWD, 1, "64x64:ws", det, src) == 0 &&
               !strcmp(got, det) && !strcmp(got, "64x64:w4:s3:ws") && !strcmp(src, "--tile"),
           "--tile 64x64:ws: %s and %s (%s)", got, det, src);
    CHECK("a bad tile fails in the deterministic mode too", pick(&s, SP_KIND_BWD, 1, "64x96:ws", got, src) == -1);
}

static const test_case tests[] = {
    { "kind_names", test_kind_names },
    { "heuristics", test_heuristics },
    { "rows_per_mode", test_rows_per_mode },
    { "tile_serves_both", test_tile_serves_both },
    { 0, 0 },
};

TEST_MAIN(tests)
