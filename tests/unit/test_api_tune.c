/* spattn_tune (include/spattn.h) without a GPU: a CPU context refuses it
 * (SPATTN_EGPU), a bad spec is SPATTN_EINVAL first, and on the fake GPU
 * (SPATTN_TUNE_FAKE=1) it tunes into a temporary database, whose rows then
 * read back; skip, force, progress news and a stop flag. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "include/spattn.h"
#include "runtime/config.h"
#include "runtime/tune.h"
#include "tests/check.h"
#include "tuning_db/db.h"

static const char *yaml = "name: t\nheads: 4\nhead_dim: 64\ndtype: fp16\npattern: exclusive\n";

typedef struct { int news, steps, best; long last_total; } seen;

static void on_progress(void *user, const char *message, long done, long total)
{
    seen *s = user;
    if (total > 0) { s->steps++; s->last_total = total; return; }
    s->news++;
    if (strstr(message, ": best ")) s->best++;
    (void)done;
}

static void test_cpu_context_refuses(void)
{
    unsetenv("SPATTN_TUNE_FAKE");
    spattn_context *c = NULL;
    spattn_context_create(SPATTN_DEVICE_CPU, &c);
    int n = -1;
    spattn_tune_result r[2];
    CHECK("a CPU context cannot tune", spattn_tune(c, NULL, yaml, strlen(yaml), -1, NULL, r, 2, &n) == SPATTN_EGPU && n == 0);
    CHECK("... and says it needs a GPU", strstr(spattn_context_error(c), "GPU") != NULL);
    const char *bad = "heads: 4\nhead_dims: 64\n";
    CHECK("a bad spec is EINVAL before the GPU question",
          spattn_tune(c, NULL, bad, strlen(bad), -1, NULL, r, 2, &n) == SPATTN_EINVAL &&
          strstr(spattn_context_error(c), "head_dims"));
    CHECK("no spec at all is EINVAL", spattn_tune(c, NULL, NULL, 0, -1, NULL, r, 2, &n) == SPATTN_EINVAL);
    spattn_tune_options o = { .kinds = 16 };
    CHECK("unknown kinds are EINVAL", spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 2, &n) == SPATTN_EINVAL);
    spattn_context_destroy(c);
}

/* A CPU context that tunes the fake GPU into dir/tune.db (path), dir a
 * fresh temporary directory (a mkdtemp template); NULL if none. */
static spattn_context *fake_context(char *dir, char *path, size_t n)
{
    if (!mkdtemp(dir)) { CHECK("mkdtemp", 0); return NULL; }
    snprintf(path, n, "%s/tune.db", dir);
    setenv("SPATTN_TUNE_FAKE", "1", 1);
    setenv("SPATTN_CACHE_DIR", dir, 1);
    spattn_context *c = NULL;
    spattn_context_create(SPATTN_DEVICE_CPU, &c);
    spattn_context_set_db(c, path);
    return c;
}

static void fake_done(spattn_context *c, const char *dir)
{
    spattn_context_destroy(c);
    unsetenv("SPATTN_TUNE_FAKE");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK("clean up", system(cmd) == 0);
}

static void test_fake_gpu(void)
{
    char dir[] = "/tmp/spattn-test-tune-XXXXXX", path[256];
    spattn_context *c = fake_context(dir, path, sizeof path);
    if (!c) return;
    int batches[1] = { 2 };
    int64_t lens[2] = { 1000, 64 };
    seen s = { 0 };
    spattn_tune_options o = { .kinds = SPATTN_TUNE_FWD | SPATTN_TUNE_BWD, .batches = batches, .n_batches = 1,
                              .seq_lens = lens, .n_seq_lens = 2, .progress = on_progress, .user = &s };
    spattn_tune_result r[4];
    int n = 0;
    spattn_status st = spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 4, &n);
    CHECK("fake tune succeeds", st == SPATTN_OK);
    if (st) fprintf(stderr, "  %s\n", spattn_context_error(c));
    CHECK("one result per key", n == 4);
    CHECK("fwd keys first, then bwd", n == 4 && r[0].kind == SPATTN_TUNE_FWD && r[3].kind == SPATTN_TUNE_BWD);
    CHECK("shapes in order", n == 4 && r[0].batch == 2 && r[0].seq_len == 1000 && r[0].seq_bucket == 1024 &&
                                 r[1].seq_len == 64);
    int good = 1;
    for (int i = 0; i < n; i++)
        good &= r[i].outcome == SPATTN_TUNE_SAVED && r[i].tile[0] && r[i].median_ms > 0 && r[i].eff_tflops > 0 &&
                r[i].checked > 1 && r[i].rejected == 1 && strstr(r[i].json, "\"spattn fake GPU\"") &&
                strstr(r[i].json, r[i].tile) && r[i].created_at[0];
    CHECK("every key saved with a winner, one wrong candidate rejected", good);
    CHECK("progress: steps and a best line per key", s.steps > 4 && s.best == 4 && s.last_total > 1);

    /* The row reads back from the database under the fake GPU's key. */
    db *d = NULL;
    sp_err e = { 0 };
    CHECK("database opens", db_open(path, 1, &d, &e) == 0);
    if (d) {
        sp_gpu g;
        tune_fake_gpu(&g);
        sp_spec spec;
        memset(&spec, 0, sizeof spec);
        spec_parse(yaml, strlen(yaml), "t", &spec, &e);
        db_key key;
        config_db_key(&g, &spec, &spec.pattern, SP_KIND_FWD, 0, 2, 1000, 0, &key);
        db_row row;
        int found = 0;
        CHECK("the row is there", db_get(d, &key, &row, &found, &e) == 0 && found);
        CHECK("... with the winner's tile and time", found && strcmp(row.tile, r[0].tile) == 0 &&
                                                         row.median_ms == r[0].median_ms && row.candidates == r[0].checked);
        spec_free(&spec);
        db_close(d);
    }

    /* Again: up to date; force re-tunes; few result slots. */
    n = 0;
    CHECK("second run ok", spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 4, &n) == SPATTN_OK && n == 4);
    CHECK("... every key up to date", n == 4 && r[0].outcome == SPATTN_TUNE_UP_TO_DATE &&
                                          r[3].outcome == SPATTN_TUNE_UP_TO_DATE && r[0].tile[0] == 0);
    o.force = 1;
    o.progress = NULL;
    CHECK("force with room for one result", spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 1, &n) == SPATTN_OK &&
                                                n == 1 && r[0].outcome == SPATTN_TUNE_SAVED);

    /* A stop flag already set: nothing tuned, SPATTN_FAILED. */
    volatile sig_atomic_t stop = 1;
    o.stop = &stop;
    CHECK("a stop is SPATTN_FAILED", spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 4, &n) == SPATTN_FAILED &&
                                         n == 0 && strstr(spattn_context_error(c), "stopped"));
    fake_done(c, dir);
}

/* SPATTN_TUNE_BWD | SPATTN_TUNE_BWD_DET on the fake GPU: a key per mode,
 * the deterministic one's row of kind "bwd-det" (the fake charges its turns
 * per stage, so another tile wins there), and config_pick gives each mode
 * its own row. */
static void test_fake_deterministic(void)
{
    char dir[] = "/tmp/spattn-test-tune-XXXXXX", path[256];
    spattn_context *c = fake_context(dir, path, sizeof path);
    if (!c) return;
    int batches[1] = { 2 };
    int64_t lens[1] = { 1000 };
    spattn_tune_options o = { .kinds = SPATTN_TUNE_BWD | SPATTN_TUNE_BWD_DET, .batches = batches, .n_batches = 1,
                              .seq_lens = lens, .n_seq_lens = 1 };
    spattn_tune_result r[2];
    int n = 0;
    spattn_status st = spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 2, &n);
    CHECKF(st == SPATTN_OK && n == 2, "tune both modes: %d results (%s)", n, spattn_context_error(c));
    if (n != 2) { fake_done(c, dir); return; }
    CHECK("the default mode first, then the deterministic one",
          r[0].kind == SPATTN_TUNE_BWD && r[1].kind == SPATTN_TUNE_BWD_DET && r[0].outcome == SPATTN_TUNE_SAVED &&
              r[1].outcome == SPATTN_TUNE_SAVED);
    CHECKF(strstr(r[0].json, "\"kind\":\"bwd\"") && strstr(r[1].json, "\"kind\":\"bwd-det\""), "rows %s / %s",
           r[0].json, r[1].json);
    CHECKF(strcmp(r[0].tile, r[1].tile) != 0 && r[1].rejected == 1, "each mode its winner: %s, %s", r[0].tile,
           r[1].tile);

    sp_gpu g;
    tune_fake_gpu(&g);
    sp_spec spec;
    sp_err e = { 0 };
    memset(&spec, 0, sizeof spec);
    spec_parse(yaml, strlen(yaml), "t", &spec, &e);
    sp_kcfg k;
    char src[160], tile[64];
    int ok =
        config_pick(&g, &spec, &spec.pattern, SP_KIND_BWD, 1, 2, 1000, 0, path, NULL, &k, src, sizeof src, &e) == 0;
    kcfg_tile_string(&k, tile, sizeof tile);
    CHECKF(ok && !strcmp(tile, r[1].tile) && strstr(src, "tuned"), "the deterministic mode picks %s (%s)", tile, src);
    ok = config_pick(&g, &spec, &spec.pattern, SP_KIND_BWD, 0, 2, 1000, 0, path, NULL, &k, src, sizeof src, &e) == 0;
    kcfg_tile_string(&k, tile, sizeof tile);
    CHECKF(ok && !strcmp(tile, r[0].tile), "the default mode picks %s (%s)", tile, src);
    spec_free(&spec);

    o.kinds = SPATTN_TUNE_BWD_DET;
    CHECK("the deterministic mode alone: up to date",
          spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 2, &n) == SPATTN_OK && n == 1 &&
              r[0].kind == SPATTN_TUNE_BWD_DET && r[0].outcome == SPATTN_TUNE_UP_TO_DATE);
    fake_done(c, dir);
}

/* SPATTN_TUNE_DEC on the fake GPU: one key per (batch, seq_len, T), the
 * decode rows under T, tiles with their splits; T beyond a length and bad
 * T values are EINVAL before anything is tuned. */
static void test_fake_decode(void)
{
    char dir[] = "/tmp/spattn-test-tune-XXXXXX", path[256];
    spattn_context *c = fake_context(dir, path, sizeof path);
    if (!c) return;
    int batches[1] = { 64 }, Ts[2] = { 1, 4 };
    int64_t lens[1] = { 32768 };
    spattn_tune_options o = { .kinds = SPATTN_TUNE_DEC, .batches = batches, .n_batches = 1, .seq_lens = lens,
                              .n_seq_lens = 1, .new_tokens = Ts, .n_new_tokens = 2 };
    spattn_tune_result r[4];
    int n = 0;
    spattn_status st = spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 4, &n);
    CHECKF(st == SPATTN_OK && n == 2, "decode tune: %d results (%s)", n, spattn_context_error(c));
    int good = n == 2;
    for (int i = 0; i < n; i++)
        good &= r[i].kind == SPATTN_TUNE_DEC && r[i].new_tokens == Ts[i] && r[i].outcome == SPATTN_TUNE_SAVED &&
                strncmp(r[i].tile, "16x", 3) == 0 && strstr(r[i].tile, ":k") && r[i].rejected == 1 &&
                strstr(r[i].json, "\"kind\":\"dec\"") && r[i].seq_bucket == 32768;
    CHECK("two dec keys, T 1 and 4, tiles with their splits", good);
    n = 0;
    CHECK("again: up to date", spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 4, &n) == SPATTN_OK && n == 2 &&
                                   r[1].outcome == SPATTN_TUNE_UP_TO_DATE);
    lens[0] = 2;
    CHECK("T 4 > N 2 is EINVAL", spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 4, &n) == SPATTN_EINVAL &&
                                     strstr(spattn_context_error(c), "exceeds"));
    Ts[1] = 0;
    CHECK("T 0 is EINVAL", spattn_tune(c, NULL, yaml, strlen(yaml), -1, &o, r, 4, &n) == SPATTN_EINVAL);
    fake_done(c, dir);
}

static const test_case tests[] = {
    { "cpu_context_refuses", test_cpu_context_refuses },
    { "fake_gpu", test_fake_gpu },
    { "fake_deterministic", test_fake_deterministic },
    { "fake_decode", test_fake_decode },
    { 0, 0 },
};

TEST_MAIN(tests)
