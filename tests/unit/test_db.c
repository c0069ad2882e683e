/* The tuning database against the real SQLite: schema, upsert, nearest
 * bucket, JSON lines round trip and validation, refusal of bad and newer
 * files, recovery, and two processes writing at once. */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "tests/check.h"
#include "tuning_db/db.h"

static char dir[256];

static void remove_dir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* This run's temporary directory, made on first use, removed at exit. */
static const char *tmp_dir(void)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/spattn-test-db-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
        atexit(remove_dir);
    }
    return dir;
}

/* A path in this run's temporary directory. */
static const char *tmp_path(const char *name)
{
    tmp_dir();
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static db_key base_key(void)
{
    db_key k;
    memset(&k, 0, sizeof k);
    snprintf(k.gpu_name, sizeof k.gpu_name, "NVIDIA H100 80GB HBM3");
    k.sm = 90;
    k.sm_count = 132;
    k.driver_version = 13000;
    k.nvrtc_version = 13000;
    snprintf(k.spattn_version, sizeof k.spattn_version, "0.1.0");
    snprintf(k.kind, sizeof k.kind, "fwd");
    k.heads = 16;
    k.kv_heads = 16;
    k.head_dim = 128;
    snprintf(k.dtype, sizeof k.dtype, "bf16");
    snprintf(k.pattern, sizeof k.pattern, "spattn");
    k.batch = 4;
    k.seq_bucket = 4096;
    return k;
}

static db_row make_row(db_key k, int bm, int bn, double ms)
{
    db_row r;
    memset(&r, 0, sizeof r);
    r.key = k;
    r.bm = bm;
    r.bn = bn;
    r.warps = 4;
    r.stages = 2;
    snprintf(r.tile, sizeof r.tile, "%dx%d:w%d:s%d", bm, bn, r.warps, r.stages);
    r.median_ms = ms;
    r.eff_tflops = 123.5;
    r.candidates = 12;
    snprintf(r.created_at, sizeof r.created_at, "2026-11-25T10:00:00Z");
    return r;
}

static int count_rows(db *d)
{
    int n = 0;
    sp_err e = { 0 };
    strbuf sb = STRBUF_INIT;
    if (db_export_jsonl(d, NULL, &sb, &n, &e)) n = -1;
    sb_free(&sb);
    return n;
}

static int64_t pragma_int(const char *path, const char *sql)
{
    sqlite3 *h;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(h);
    return v;
}

static char *slurp(const char *path, size_t *len)
{
    char *data = NULL;
    sp_err e = { 0 };
    if (sp_read_file(path, 0, &data, len, &e)) return NULL;
    return data;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

/* ---- tests -------------------------------------------------------------------- */

static void test_keys(void)
{
    CHECK("bucket of 1", db_seq_bucket(1) == 1);
    CHECK("bucket of 0", db_seq_bucket(0) == 1);
    CHECK("bucket of 2", db_seq_bucket(2) == 2);
    CHECK("bucket of 3", db_seq_bucket(3) == 4);
    CHECK("bucket of 4096", db_seq_bucket(4096) == 4096);
    CHECK("bucket of 4097", db_seq_bucket(4097) == 8192);
    CHECK("bucket of 1023", db_seq_bucket(1023) == 1024);

    db_key k = base_key();
    char sig[256];
    db_signature(&k, sig, sizeof sig);
    CHECKF(strcmp(sig, "spattn/h16kv16/d128/bf16/L=N") == 0, "signature %s", sig);
    k.band_basis = 4096;
    k.kv_heads = 4;
    snprintf(k.dtype, sizeof k.dtype, "fp16");
    db_signature(&k, sig, sizeof sig);
    CHECKF(strcmp(sig, "spattn/h16kv4/d128/fp16/L=4096") == 0, "signature %s", sig);

    sp_band_list b[2] = { { 1, { { 0, 5 } } }, { 2, { { 0, 3 }, { 8, 12 } } } };
    char h1[20], h2[20];
    db_bands_hash(b, 2, h1);
    db_bands_hash(b, 2, h2);
    CHECK("bands hash is stable", strcmp(h1, h2) == 0 && strlen(h1) == 16);
    b[1].iv[1].hi = 13;
    db_bands_hash(b, 2, h2);
    CHECK("bands hash changes with the bands", strcmp(h1, h2) != 0);
    snprintf(k.pattern, sizeof k.pattern, "custom");
    snprintf(k.bands_hash, sizeof k.bands_hash, "%s", h1);
    db_signature(&k, sig, sizeof sig);
    CHECKF(strncmp(sig, "custom.", 7) == 0 && strstr(sig, h1), "custom signature %s", sig);
}

static void test_validate(void)
{
    char why[256];
    db_row r = make_row(base_key(), 128, 64, 0.25);
    CHECK("good row", db_validate_row(&r, why, sizeof why) == 0);
    db_row b = r;
    b.bm = 24;
    CHECK("bm 24 refused", db_validate_row(&b, why, sizeof why) == -1 && strstr(why, "bm"));
    b = r;
    snprintf(b.tile, sizeof b.tile, "64x64:w4:s2");
    CHECK("tile disagreeing with bm refused", db_validate_row(&b, why, sizeof why) == -1 && strstr(why, "tile"));
    b = r;
    snprintf(b.tile, sizeof b.tile, "128x64:w4:s2:x1");
    CHECK("tile with a later field accepted", db_validate_row(&b, why, sizeof why) == 0);
    b = r;
    snprintf(b.tile, sizeof b.tile, "128x64:w4:s23");
    CHECK("tile s23 vs stages 2 refused", db_validate_row(&b, why, sizeof why) == -1);
    b = r;
    b.key.seq_bucket = 3000;
    CHECK("bucket not a power of two refused", db_validate_row(&b, why, sizeof why) == -1);
    b = r;
    snprintf(b.key.kind, sizeof b.key.kind, "fw");
    CHECK("kind fw refused", db_validate_row(&b, why, sizeof why) == -1);
    b = r;
    b.key.kv_heads = 3;
    CHECK("kv_heads not dividing heads refused", db_validate_row(&b, why, sizeof why) == -1);
    b = r;
    snprintf(b.key.pattern, sizeof b.key.pattern, "custom");
    CHECK("custom without bands_hash refused", db_validate_row(&b, why, sizeof why) == -1);
    b = r;
    snprintf(b.created_at, sizeof b.created_at, "2026-13-25T10:00:00Z");
    CHECK("month 13 refused", db_validate_row(&b, why, sizeof why) == -1);
    b = r;
    b.created_at[0] = '\0';
    CHECK("empty created_at accepted (put fills it)", db_validate_row(&b, why, sizeof why) == 0);
    b = r;
    b.key.sm = 0;
    CHECK("sm 0 refused", db_validate_row(&b, why, sizeof why) == -1);
    b = r;
    b.median_ms = 0.0 / 0.0;
    CHECK("NaN median refused", db_validate_row(&b, why, sizeof why) == -1);
}

static void test_schema(void)
{
    const char *p = tmp_path("sub/dir/schema.db");
    db *d = NULL;
    sp_err e = { 0 };
    CHECK("open creates file and parents", db_open(p, 0, &d, &e) == 0 && d);
    CHECK("db_file is the path", d && strcmp(db_file(d), p) == 0);
    db_close(d);
    CHECK("user_version", pragma_int(p, "PRAGMA user_version") == DB_SCHEMA_VERSION);
    CHECK("application_id", pragma_int(p, "PRAGMA application_id") == DB_APPLICATION_ID);
    CHECK("table exists", pragma_int(p, "SELECT count(*) FROM sqlite_master WHERE name = 'tuned'") == 1);
    db_health h;
    char detail[256];
    CHECK("check_file ok", db_check_file(p, &h, detail, sizeof detail, &e) == 0 && h == DB_HEALTH_OK);
    /* Journal mode is stored in the header: bytes 18 and 19 are 2 in WAL. */
    size_t len;
    char *bytes = slurp(p, &len);
    CHECK("WAL mode", bytes && len >= 100 && bytes[18] == 2 && bytes[19] == 2);
    free(bytes);
    /* Opening again is a no-op. */
    CHECK("reopen", db_open(p, 0, &d, &e) == 0);
    db_close(d);
    CHECK("reopen read-only", db_open(p, 1, &d, &e) == 0);
    db_close(d);

    /* A zero-byte file is a fresh database. */
    const char *z = tmp_path("zero.db");
    write_bytes(z, "", 0);
    CHECK("zero-byte file opens", db_open(z, 0, &d, &e) == 0);
    db_close(d);

    /* Read-only on a missing file: empty, nothing created. */
    const char *m = tmp_path("missing/none.db");
    CHECK("read-only missing opens", db_open(m, 1, &d, &e) == 0);
    int found = 1;
    db_row r;
    db_key k = base_key();
    CHECK("read-only missing: lookup finds nothing", d && db_lookup_nearest(d, &k, &r, &found, &e) == 0 && !found);
    db_row w = make_row(k, 64, 64, 1);
    CHECK("read-only refuses writes", d && db_put_rows(d, &w, 1, &e) == -1);
    db_close(d);
    struct stat st;
    CHECK("read-only did not create the file", stat(m, &st) != 0);

    /* The default path. */
    char buf[512];
    setenv("SPATTN_DB", "/x/y.db", 1);
    CHECK("SPATTN_DB", db_path_default(buf, sizeof buf, &e) == 0 && strcmp(buf, "/x/y.db") == 0);
    unsetenv("SPATTN_DB");
    setenv("XDG_CACHE_HOME", "/c", 1);
    CHECK("XDG_CACHE_HOME", db_path_default(buf, sizeof buf, &e) == 0 && strcmp(buf, "/c/spattn/tune.db") == 0);
    setenv("XDG_CACHE_HOME", "relative", 1);
    setenv("HOME", "/h", 1);
    CHECK("relative XDG ignored", db_path_default(buf, sizeof buf, &e) == 0 && strcmp(buf, "/h/.cache/spattn/tune.db") == 0);
    unsetenv("XDG_CACHE_HOME");
    CHECK("HOME", db_path_default(buf, sizeof buf, &e) == 0 && strcmp(buf, "/h/.cache/spattn/tune.db") == 0);
}

static void test_put_lookup(void)
{
    const char *p = tmp_path("lookup.db");
    db *d = NULL;
    sp_err e = { 0 };
    if (db_open(p, 0, &d, &e)) { CHECK("open", 0); return; }
    db_key k = base_key();
    db_row rows[4];
    k.seq_bucket = 1024;  rows[0] = make_row(k, 64, 64, 0.1);
    k.seq_bucket = 4096;  rows[1] = make_row(k, 128, 64, 0.3);
    k.seq_bucket = 16384; rows[2] = make_row(k, 128, 128, 1.5);
    k.batch = 1; k.seq_bucket = 8192; rows[3] = make_row(k, 64, 32, 0.9);
    rows[3].created_at[0] = '\0';
    CHECK("put 4", db_put_rows(d, rows, 4, &e) == 0);
    CHECK("4 rows", count_rows(d) == 4);

    db_row r;
    int found = 0;
    k = base_key();
    k.seq_bucket = 4096;
    CHECK("exact bucket", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found && r.bm == 128 && r.bn == 64);
    k.seq_bucket = 2048;  /* 1 step from 1024 and 4096: tie goes to the larger bucket */
    CHECK("tie goes to larger bucket", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found && r.key.seq_bucket == 4096);
    k.seq_bucket = 8192;  /* batch 4 has 4096 and 16384 (1 step each); batch 1 has 8192 exactly */
    CHECK("same batch preferred over exact bucket", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found &&
                                                        r.key.batch == 4 && r.key.seq_bucket == 16384);
    k.seq_bucket = 1 << 20;
    CHECK("far bucket: the nearest", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found && r.key.seq_bucket == 16384);
    k.seq_bucket = 1;
    CHECK("small bucket: the nearest", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found && r.key.seq_bucket == 1024);
    k.batch = 2;
    k.seq_bucket = 8192;  /* no batch 2: every batch competes; batch 1 has 8192 */
    CHECK("other batch: nearest bucket first", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found &&
                                                  r.key.batch == 1 && r.key.seq_bucket == 8192);
    CHECK("created_at filled", found && strlen(r.created_at) == 20 && r.created_at[19] == 'Z');

    k = base_key();
    snprintf(k.kind, sizeof k.kind, "bwd");
    CHECK("other kind: none", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && !found);
    k = base_key();
    k.sm_count = 114;
    CHECK("other SM count: none", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && !found);
    k = base_key();
    snprintf(k.spattn_version, sizeof k.spattn_version, "0.2.0");
    CHECK("other spattn version: none", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && !found);
    k = base_key();
    k.head_dim = 64;
    CHECK("other spec: none", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && !found);

    int yes = 0;
    k = base_key();
    CHECK("has_current exact", db_has_current(d, &k, &yes, &e) == 0 && yes);
    k.seq_bucket = 2048;
    CHECK("has_current other bucket", db_has_current(d, &k, &yes, &e) == 0 && !yes);

    /* Upsert: same key, new values replace, id stays. */
    k = base_key();
    CHECK("get", db_get(d, &k, &r, &found, &e) == 0 && found);
    int64_t id = r.id;
    db_row nr = make_row(k, 64, 128, 0.2);
    nr.candidates = 99;
    CHECK("upsert", db_put_rows(d, &nr, 1, &e) == 0);
    CHECK("still 4 rows", count_rows(d) == 4);
    CHECK("get again", db_get(d, &k, &r, &found, &e) == 0 && found);
    CHECK("values replaced", r.bm == 64 && r.bn == 128 && r.candidates == 99 && r.median_ms == 0.2);
    CHECK("id kept", r.id == id);
    CHECK("tile replaced", strcmp(r.tile, "64x128:w4:s2") == 0);

    /* A bad row fails the whole batch. */
    db_row two[2] = { make_row(base_key(), 64, 64, 1), make_row(base_key(), 64, 64, 1) };
    two[0].key.seq_bucket = 32;
    two[1].bm = 17;
    CHECK("bad batch refused", db_put_rows(d, two, 2, &e) == -1 && e.code == SP_EXIT_USAGE && strstr(e.msg, "2 of 2"));
    CHECK("nothing of it written", count_rows(d) == 4);

    /* Filters. */
    strbuf sb = STRBUF_INIT;
    int n = 0;
    db_filter f = { .gpu = "h100" };
    CHECK("filter gpu substring", db_export_jsonl(d, &f, &sb, &n, &e) == 0 && n == 4);
    f = (db_filter){ .gpu = "A100" };
    CHECK("filter gpu none", db_export_jsonl(d, &f, &sb, &n, &e) == 0 && n == 0);
    f = (db_filter){ .kind = "bwd" };
    CHECK("filter kind", db_export_jsonl(d, &f, &sb, &n, &e) == 0 && n == 0);
    f = (db_filter){ .id = id };
    CHECK("filter id", db_export_jsonl(d, &f, &sb, &n, &e) == 0 && n == 1);
    f = (db_filter){ .signature = "spattn/h16kv16/d128/bf16/L=N" };
    CHECK("filter signature", db_export_jsonl(d, &f, &sb, &n, &e) == 0 && n == 4);
    sb_free(&sb);

    int removed = 0;
    CHECK("clear", db_clear(d, &removed, &e) == 0 && removed == 4);
    CHECK("empty after clear", count_rows(d) == 0);
    db_close(d);
}

static void test_roundtrip(void)
{
    const char *p1 = tmp_path("rt1.db"), *p2 = tmp_path("rt2.db");
    db *a = NULL, *b = NULL;
    sp_err e = { 0 };
    if (db_open(p1, 0, &a, &e) || db_open(p2, 0, &b, &e)) { CHECK("open", 0); db_close(a); return; }
    db_row rows[6];
    for (int i = 0; i < 6; i++) {
        db_key k = base_key();
        k.seq_bucket = (int64_t)1 << (10 + i);
        if (i == 5) {
            snprintf(k.pattern, sizeof k.pattern, "custom");
            snprintf(k.bands_hash, sizeof k.bands_hash, "0123456789abcdef");
            snprintf(k.gpu_name, sizeof k.gpu_name, "GPU \"quoted\" \\ name");
        }
        rows[i] = make_row(k, 64, 16 << (i % 3), 0.1 + i / 3.0);
        rows[i].eff_tflops = 1.0 / 3.0 * (i + 1);
    }
    CHECK("put", db_put_rows(a, rows, 6, &e) == 0);
    strbuf x1 = STRBUF_INIT, x2 = STRBUF_INIT;
    int n1 = 0, n2 = 0, imported = 0, rejected = 0;
    CHECK("export", db_export_jsonl(a, NULL, &x1, &n1, &e) == 0 && n1 == 6);
    CHECK("import", db_import_jsonl(b, x1.buf, x1.len, NULL, NULL, &imported, &rejected, &e) == 0 &&
                        imported == 6 && rejected == 0);
    CHECK("export again", db_export_jsonl(b, NULL, &x2, &n2, &e) == 0 && n2 == 6);
    CHECKF(x1.len == x2.len && memcmp(x1.buf, x2.buf, x1.len) == 0, "round trip differs:\n%s---\n%s", x1.buf, x2.buf);

    /* Field by field too. */
    for (int i = 0; i < 6; i++) {
        db_row r;
        int found = 0;
        db_get(b, &rows[i].key, &r, &found, &e);
        CHECKF(found && strcmp(r.tile, rows[i].tile) == 0 && r.candidates == rows[i].candidates &&
                   fabs(r.median_ms - rows[i].median_ms) < 1e-12 * rows[i].median_ms &&
                   fabs(r.eff_tflops - rows[i].eff_tflops) < 1e-12 && strcmp(r.created_at, rows[i].created_at) == 0 &&
                   strcmp(r.key.gpu_name, rows[i].key.gpu_name) == 0,
               "row %d after round trip", i);
    }
    /* A row as JSON: one object, signature included, id only when asked. */
    strbuf j = STRBUF_INIT;
    rows[0].id = 7;
    CHECK("row json", db_row_json(a, &rows[0], 1, &j, &e) == 0);
    CHECKF(strncmp(j.buf, "{\"id\":7,\"gpu_name\":", 19) == 0 && strstr(j.buf, "\"signature\":\"spattn/h16kv16/d128/bf16/L=N\"") &&
               j.buf[j.len - 1] == '\n',
           "json: %s", j.buf);
    sb_free(&j);
    sb_free(&x1);
    sb_free(&x2);
    db_close(a);
    db_close(b);
}

typedef struct { int lines[32]; char msgs[32][256]; int n; } bad_log;

static void log_bad(void *ctx, int line, const char *msg)
{
    bad_log *b = ctx;
    if (b->n < 32) { b->lines[b->n] = line; snprintf(b->msgs[b->n], 256, "%s", msg); b->n++; }
}

/* s with the first `from` replaced by `to` (caller frees). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    if (!at) return strdup(s);
    size_t a = (size_t)(at - s), lf = strlen(from), lt = strlen(to), ls = strlen(s);
    char *r = malloc(ls - lf + lt + 1);
    memcpy(r, s, a);
    memcpy(r + a, to, lt);
    memcpy(r + a + lt, at + lf, ls - a - lf + 1);
    return r;
}

static void test_import_bad(void)
{
    const char *p = tmp_path("bad.db");
    db *d = NULL;
    sp_err e = { 0 };
    if (db_open(p, 0, &d, &e)) { CHECK("open", 0); return; }
    db_row good = make_row(base_key(), 128, 64, 0.25);
    strbuf line = STRBUF_INIT, l2 = STRBUF_INIT;
    db_row_json(d, &good, 0, &line, &e);          /* each ends in '\n' */
    db_row g2 = good;
    g2.key.seq_bucket = 8192;
    db_row_json(d, &g2, 0, &l2, &e);
    /* Bad lines: the good line with one thing changed. */
    char *no_sm = replace(line.buf, "\"sm\":90,", "");
    char *wrong = replace(line.buf, "\"sm_count\":132", "\"sm_count\":\"132\"");
    char *range0 = replace(line.buf, "\"bm\":128", "\"bm\":120");
    char *range = replace(range0, "\"tile\":\"128x", "\"tile\":\"120x");
    char *kind = replace(l2.buf, "\"kind\":\"fwd\"", "\"kind\":\"fwx\"");
    char *sig = replace(l2.buf, "d128/bf16", "d128/fp16");
    strbuf in = STRBUF_INIT;
    sb_puts(&in, line.buf);                                   /* 1 good */
    sb_puts(&in, "{\"gpu_name\": \"x\", \n");                /* 2 invalid JSON */
    sb_puts(&in, "\n");                                       /* 3 blank, skipped */
    sb_puts(&in, no_sm);                                      /* 4 missing sm */
    sb_puts(&in, wrong);                                      /* 5 wrong type */
    sb_puts(&in, range);                                      /* 6 bm out of range */
    sb_puts(&in, "[1, 2, 3]\n");                              /* 7 not an object */
    sb_printf(&in, "  %.*s  \r\n", (int)l2.len - 1, l2.buf);  /* 8 good, with spaces and CR */
    sb_puts(&in, kind);                                       /* 9 bad kind */
    sb_puts(&in, sig);                                        /* 10 signature mismatch */
    sb_puts(&in, "{\"gpu_name\": null}");                     /* 11 null, no final newline */

    bad_log log = { 0 };
    int imported = 0, rejected = 0;
    CHECK("import returns 0", db_import_jsonl(d, in.buf, in.len, log_bad, &log, &imported, &rejected, &e) == 0);
    CHECKF(imported == 2 && rejected == 8, "imported %d rejected %d", imported, rejected);
    int want[] = { 2, 4, 5, 6, 7, 9, 10, 11 };
    CHECK("8 bad lines reported", log.n == 8);
    for (int i = 0; i < log.n && i < 8; i++) CHECKF(log.lines[i] == want[i], "bad line %d: got %d (%s)", i, log.lines[i], log.msgs[i]);
    if (log.n == 8) {
        CHECKF(strstr(log.msgs[0], "invalid JSON"), "msg: %s", log.msgs[0]);
        CHECKF(strstr(log.msgs[1], "missing field 'sm'"), "msg: %s", log.msgs[1]);
        CHECKF(strstr(log.msgs[2], "sm_count") && strstr(log.msgs[2], "integer"), "msg: %s", log.msgs[2]);
        CHECKF(strstr(log.msgs[3], "bm"), "msg: %s", log.msgs[3]);
        CHECKF(strstr(log.msgs[4], "object"), "msg: %s", log.msgs[4]);
        CHECKF(strstr(log.msgs[5], "kind"), "msg: %s", log.msgs[5]);
        CHECKF(strstr(log.msgs[6], "signature"), "msg: %s", log.msgs[6]);
        CHECKF(strstr(log.msgs[7], "gpu_name") && strstr(log.msgs[7], "null"), "msg: %s", log.msgs[7]);
    }
    CHECK("good rows kept", count_rows(d) == 2);
    free(no_sm); free(wrong); free(range0); free(range); free(kind); free(sig);
    sb_free(&line); sb_free(&l2); sb_free(&in);
    db_close(d);
}

static void test_newer_refused(void)
{
    const char *p = tmp_path("newer.db");
    sqlite3 *h;
    sqlite3_open(p, &h);
    char sql[256];
    snprintf(sql, sizeof sql,
             "CREATE TABLE tuned (id INTEGER PRIMARY KEY, future TEXT); INSERT INTO tuned VALUES (1, 'x');"
             "PRAGMA application_id = %d; PRAGMA user_version = %d;", DB_APPLICATION_ID, DB_SCHEMA_VERSION + 5);
    sqlite3_exec(h, sql, NULL, NULL, NULL);
    sqlite3_close(h);
    size_t len0, len1;
    char *before = slurp(p, &len0);

    db *d = NULL;
    sp_err e = { 0 };
    CHECK("newer refused read-write", db_open(p, 0, &d, &e) == -1 && !d && e.code == SP_EXIT_USAGE);
    char ver[16];
    snprintf(ver, sizeof ver, "%d", DB_SCHEMA_VERSION + 5);
    CHECKF(strstr(e.msg, "newer") && strstr(e.msg, "not touched") && strstr(e.msg, ver), "msg: %s", e.msg);
    CHECK("error names the file", strcmp(e.file, p) == 0);
    sp_err_clear(&e);
    CHECK("newer refused read-only", db_open(p, 1, &d, &e) == -1 && e.code == SP_EXIT_USAGE);
    db_health hs;
    int moved = 1;
    char aside[512];
    sp_err_clear(&e);
    CHECK("recover refuses newer", db_recover(p, &hs, &moved, aside, sizeof aside, &e) == -1 && hs == DB_HEALTH_NEWER && !moved);
    char *after = slurp(p, &len1);
    CHECK("file bytes unchanged", before && after && len0 == len1 && memcmp(before, after, len0) == 0);
    CHECK("user_version unchanged", pragma_int(p, "PRAGMA user_version") == DB_SCHEMA_VERSION + 5);
    free(before);
    free(after);
}

static void test_bad_files(void)
{
    sp_err e = { 0 };
    db *d = NULL;
    db_health h;
    char detail[256];

    const char *g = tmp_path("garbage.db");
    char junk[3000];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(i * 7 + 3);
    write_bytes(g, junk, sizeof junk);
    CHECK("garbage refused", db_open(g, 0, &d, &e) == -1 && e.code == SP_EXIT_USAGE);
    CHECKF(strstr(e.msg, "not a spattn tuning database") && strstr(e.msg, "not a database"), "msg: %s", e.msg);
    CHECK("garbage has a recover hint", strstr(e.hint, "recover") != NULL);
    size_t len;
    char *after = slurp(g, &len);
    CHECK("garbage untouched", after && len == sizeof junk && memcmp(after, junk, len) == 0);
    free(after);
    CHECK("garbage: check_file corrupt", db_check_file(g, &h, detail, sizeof detail, &e) == 0 && h == DB_HEALTH_CORRUPT);

    /* Text file: shorter than a header. */
    const char *t = tmp_path("text.db");
    write_bytes(t, "hello\n", 6);
    sp_err_clear(&e);
    CHECK("short text refused", db_open(t, 0, &d, &e) == -1 && e.code == SP_EXIT_USAGE);
    sp_err_clear(&e);
    CHECK("short text refused read-only", db_open(t, 1, &d, &e) == -1 && e.code == SP_EXIT_USAGE);

    /* Truncated: a real database with many rows, cut at several points. */
    const char *full = tmp_path("full.db");
    if (db_open(full, 0, &d, &e)) { CHECK("open full", 0); return; }
    db_row rows[300];
    for (int i = 0; i < 300; i++) {
        db_key k = base_key();
        snprintf(k.gpu_name, sizeof k.gpu_name, "GPU number %d with a fairly long name to fill pages", i);
        rows[i] = make_row(k, 64, 64, 1 + i);
    }
    db_put_rows(d, rows, 300, &e);
    db_close(d);  /* checkpoints the WAL into the file */
    size_t flen;
    char *fbytes = slurp(full, &flen);
    CHECKF(fbytes && flen > 8 * 4096, "full db is %zu bytes", flen);
    size_t cuts[] = { 50, 100, 4096, 4096 + 100, flen / 2, flen - 4096 };
    for (size_t c = 0; fbytes && c < sizeof cuts / sizeof cuts[0]; c++) {
        const char *tp = tmp_path("trunc.db");
        unlink(tp);
        write_bytes(tp, fbytes, cuts[c]);
        sp_err_clear(&e);
        d = NULL;
        int rc = db_open(tp, 0, &d, &e);
        CHECKF(rc == -1 && e.code == SP_EXIT_USAGE && strstr(e.msg, "not a spattn tuning database"),
               "truncated at %zu: rc %d code %d msg %s", cuts[c], rc, e.code, e.msg);
        db_close(d);
        CHECKF(db_check_file(tp, &h, detail, sizeof detail, &e) == 0 && h == DB_HEALTH_CORRUPT,
               "truncated at %zu: health %s", cuts[c], db_health_name(h));
    }
    free(fbytes);

    /* Another program's SQLite database. */
    const char *o = tmp_path("other.db");
    sqlite3 *s;
    sqlite3_open(o, &s);
    sqlite3_exec(s, "CREATE TABLE t (x)", NULL, NULL, NULL);
    sqlite3_close(s);
    sp_err_clear(&e);
    CHECK("foreign refused", db_open(o, 0, &d, &e) == -1 && e.code == SP_EXIT_USAGE);
    CHECK("foreign: check_file", db_check_file(o, &h, detail, sizeof detail, &e) == 0 && h == DB_HEALTH_FOREIGN);

    CHECK("directory refused", db_open(tmp_dir(), 0, &d, &e) == -1 && e.code == SP_EXIT_USAGE);
}

static void test_recover(void)
{
    sp_err e = { 0 };
    db_health h;
    int moved = 0;
    char aside[512], detail[256];

    /* A good database is left alone. */
    const char *p = tmp_path("good.db");
    db *d;
    if (db_open(p, 0, &d, &e)) { CHECK("open", 0); return; }
    db_row r = make_row(base_key(), 64, 64, 1);
    db_put_rows(d, &r, 1, &e);
    db_close(d);
    size_t l0, l1;
    char *before = slurp(p, &l0);
    CHECK("recover good: ok", db_recover(p, &h, &moved, aside, sizeof aside, &e) == 0 && h == DB_HEALTH_OK && !moved);
    char *after = slurp(p, &l1);
    CHECK("good db bytes unchanged", before && after && l0 == l1 && memcmp(before, after, l0) == 0);
    free(before);
    free(after);
    CHECK("recover missing: nothing", db_recover(tmp_path("nope.db"), &h, &moved, aside, sizeof aside, &e) == 0 &&
                                          h == DB_HEALTH_MISSING && !moved);

    /* A garbage one with its -wal and -shm is moved aside, and a fresh one made. */
    const char *g = tmp_path("rec.db");
    char wal[600], shm[600];
    snprintf(wal, sizeof wal, "%s-wal", g);
    snprintf(shm, sizeof shm, "%s-shm", g);
    write_bytes(g, "this is not sqlite at all, not even close....................................................................", 100);
    write_bytes(wal, "wal junk", 8);
    write_bytes(shm, "shm junk", 8);
    CHECK("recover garbage", db_recover(g, &h, &moved, aside, sizeof aside, &e) == 0 && h == DB_HEALTH_CORRUPT && moved);
    CHECKF(strstr(aside, ".corrupt-") != NULL, "aside %s", aside);
    size_t len;
    char *moved_bytes = slurp(aside, &len);
    CHECK("aside has the old bytes", moved_bytes && len == 100 && strncmp(moved_bytes, "this is not", 11) == 0);
    free(moved_bytes);
    char awal[600];
    snprintf(awal, sizeof awal, "%s-wal", aside);
    struct stat st;
    CHECK("-wal moved along", stat(awal, &st) == 0 && st.st_size == 8);
    CHECK("fresh db is ok", db_check_file(g, &h, detail, sizeof detail, &e) == 0 && h == DB_HEALTH_OK);
    CHECK("fresh db opens", db_open(g, 0, &d, &e) == 0);
    CHECK("fresh db is empty", count_rows(d) == 0);
    db_close(d);

    /* A second recovery in the same second does not overwrite the first aside file. */
    write_bytes(g, "garbage again.................................................................................................", 100);
    char aside2[512];
    CHECK("recover again", db_recover(g, &h, &moved, aside2, sizeof aside2, &e) == 0 && moved);
    CHECK("distinct aside names", strcmp(aside, aside2) != 0);
    CHECK("first aside still there", stat(aside, &st) == 0 && st.st_size == 100);
}

/* Two processes, each writing 200 rows in 20 transactions into one fresh file. */
static void test_concurrent_writers(void)
{
    const char *p = tmp_path("concurrent/shared.db");
    pid_t kids[2];
    for (int c = 0; c < 2; c++) {
        kids[c] = fork();
        if (kids[c] == 0) {
            sp_err e = { 0 };
            db *d;
            if (db_open(p, 0, &d, &e)) { sp_err_print(&e, stderr); _exit(10); }
            for (int t = 0; t < 20; t++) {
                db_row rows[10];
                for (int i = 0; i < 10; i++) {
                    db_key k = base_key();
                    snprintf(k.gpu_name, sizeof k.gpu_name, "writer %d row %d", c, t * 10 + i);
                    rows[i] = make_row(k, 64, 64, 1);
                }
                if (db_put_rows(d, rows, 10, &e)) { sp_err_print(&e, stderr); _exit(11); }
                if (t % 5 == 0) {  /* readers in between, as tune's skip check does */
                    int yes;
                    if (db_has_current(d, &rows[0].key, &yes, &e) || !yes) _exit(12);
                }
            }
            db_close(d);
            _exit(0);
        }
    }
    for (int c = 0; c < 2; c++) {
        int status = 0;
        waitpid(kids[c], &status, 0);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d exit status %d", c, WEXITSTATUS(status));
    }
    db *d;
    sp_err e = { 0 };
    CHECK("open after", db_open(p, 1, &d, &e) == 0);
    int n = d ? count_rows(d) : -1;
    CHECKF(n == 400, "rows after two writers: %d", n);
    db_close(d);
}

/* Decode rows: kind dec keyed by T as well (new_tokens), validated, and
 * looked up by the nearest T first. */
static void test_decode_rows(void)
{
    const char *p = tmp_path("decode.db");
    db_key k = base_key();
    snprintf(k.kind, sizeof k.kind, "dec");
    k.batch = 64;
    k.seq_bucket = 32768;
    db_row rows[3];
    int Ts[3] = { 1, 4, 16 };
    for (int i = 0; i < 3; i++) {
        k.new_tokens = Ts[i];
        rows[i] = make_row(k, 16, 32 << i, 0.5 + i);
        snprintf(rows[i].tile, sizeof rows[i].tile, "16x%d:w4:s2:k%d", 32 << i, i + 1);   /* with its splits */
    }
    char why[256];
    CHECKF(db_validate_row(&rows[0], why, sizeof why) == 0, "a dec row validates: %s", why);
    db_row bad = rows[0];
    bad.key.new_tokens = 0;
    CHECK("dec with T 0 refused", db_validate_row(&bad, why, sizeof why) != 0 && strstr(why, "new_tokens"));
    bad.key.new_tokens = DB_MAX_NEW_TOKENS + 1;
    CHECK("dec with T past the bound refused", db_validate_row(&bad, why, sizeof why) != 0);
    bad = make_row(base_key(), 64, 64, 1);
    bad.key.new_tokens = 1;
    CHECK("fwd with T 1 refused", db_validate_row(&bad, why, sizeof why) != 0 && strstr(why, "fwd"));
    db *d;
    sp_err e = { 0 };
    CHECK("open", db_open(p, 0, &d, &e) == 0);
    if (!d) return;
    db_row fwd = make_row(base_key(), 128, 64, 0.25);
    fwd.key.batch = 64;
    fwd.key.seq_bucket = 32768;
    CHECKF(db_put_rows(d, rows, 3, &e) == 0 && db_put_rows(d, &fwd, 1, &e) == 0, "put: %s", e.msg);
    CHECK("each T its own row, the forward apart", count_rows(d) == 4);
    db_row r;
    int found = 0;
    k.new_tokens = 4;
    CHECK("exact T", db_get(d, &k, &r, &found, &e) == 0 && found && strcmp(r.tile, rows[1].tile) == 0);
    k.new_tokens = 2;
    CHECK("no row at T 2", db_get(d, &k, &r, &found, &e) == 0 && !found);
    k.new_tokens = 3;
    CHECK("T 3: nearest is T 4", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found && r.key.new_tokens == 4);
    k.new_tokens = 1;
    k.batch = 8;
    CHECK("T first, then batch: T 1 at batch 8", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found &&
                                                   r.key.new_tokens == 1 && r.key.batch == 64);
    k.new_tokens = 1000;
    CHECK("T 1000: nearest is T 16", db_lookup_nearest(d, &k, &r, &found, &e) == 0 && found && r.key.new_tokens == 16);
    db_key fk = fwd.key;
    CHECK("the forward finds its own", db_lookup_nearest(d, &fk, &r, &found, &e) == 0 && found &&
                                           strcmp(r.key.kind, "fwd") == 0 && r.key.new_tokens == 0);
    db_close(d);
}

/* A database of schema 1 (before decode rows) migrates to 2 on the first
 * write: rows and ids kept, new_tokens 0, dec rows then accepted. */
static void test_migrate_v1(void)
{
    const char *p = tmp_path("v1.db");
    db *d;
    sp_err e = { 0 };
    db_row r = make_row(base_key(), 64, 64, 0.5);
    CHECK("a current database with a row", db_open(p, 0, &d, &e) == 0 && db_put_rows(d, &r, 1, &e) == 0);
    db_close(d);
    /* Turn it into what schema 1 wrote: the table without new_tokens (and
     * its old CHECK and UNIQUE), user_version 1. */
    sqlite3 *h;
    int ok = sqlite3_open(p, &h) == SQLITE_OK &&
             sqlite3_exec(h,
                          "CREATE TABLE old AS SELECT id, gpu_name, sm, sm_count, driver_version, nvrtc_version,"
                          " spattn_version, kind, signature, heads, kv_heads, head_dim, dtype, pattern, bands_hash,"
                          " band_basis, batch, seq_bucket, tile, bm, bn, warps, stages, median_ms, eff_tflops,"
                          " candidates, created_at FROM tuned;"
                          "DROP TABLE tuned; ALTER TABLE old RENAME TO tuned; PRAGMA user_version = 1;",
                          NULL, NULL, NULL) == SQLITE_OK;
    sqlite3_close(h);
    CHECK("made a schema-1 file", ok && pragma_int(p, "PRAGMA user_version") == 1);
    CHECK("read-only: refused as older, untouched", db_open(p, 1, &d, &e) == -1 && strstr(e.msg, "older"));
    sp_err_clear(&e);
    CHECKF(db_open(p, 0, &d, &e) == 0, "read-write migrates: %s", e.msg);
    CHECK("now the current schema", pragma_int(p, "PRAGMA user_version") == DB_SCHEMA_VERSION);
    if (!d) return;
    db_row got;
    int found = 0;
    CHECK("the row kept, T 0", db_get(d, &r.key, &got, &found, &e) == 0 && found && got.key.new_tokens == 0 &&
                                   strcmp(got.tile, r.tile) == 0 && got.id == 1);
    db_key k = base_key();
    snprintf(k.kind, sizeof k.kind, "dec");
    k.new_tokens = 1;
    db_row dec = make_row(k, 16, 64, 0.1);
    CHECKF(db_put_rows(d, &dec, 1, &e) == 0 && count_rows(d) == 2, "a dec row after the migration: %s", e.msg);
    db_close(d);
}

/* Count the rows of a kind (the filter of db list and export). */
static int count_kind(db *d, const char *kind)
{
    db_filter f = { .kind = kind };
    int n = 0;
    sp_err e = { 0 };
    strbuf sb = STRBUF_INIT;
    if (db_export_jsonl(d, &f, &sb, &n, &e)) n = -1;
    sb_free(&sb);
    return n;
}

/* A database of schema 2 (before the deterministic backward's rows)
 * migrates to 3 on the first write: rows and ids kept, then "bwd-det" rows
 * accepted beside the "bwd" rows of the same key, each found by its kind. */
static void test_migrate_v2(void)
{
    const char *p = tmp_path("v2.db");
    db *d;
    sp_err e = { 0 };
    db_key k = base_key();
    snprintf(k.kind, sizeof k.kind, "bwd");
    db_row rows[2] = { make_row(base_key(), 64, 64, 0.5), make_row(k, 64, 128, 0.7) };
    CHECK("a current database with two rows", db_open(p, 0, &d, &e) == 0 && db_put_rows(d, rows, 2, &e) == 0);
    db_close(d);
    /* Turn it into what schema 2 wrote: its CHECK on kind, user_version 2. */
    sqlite3 *h;
    int ok = sqlite3_open(p, &h) == SQLITE_OK &&
             sqlite3_exec(h,
                          "CREATE TABLE old (id INTEGER PRIMARY KEY, gpu_name TEXT NOT NULL, sm INTEGER NOT NULL,"
                          " sm_count INTEGER NOT NULL, driver_version INTEGER NOT NULL, nvrtc_version INTEGER NOT NULL,"
                          " spattn_version TEXT NOT NULL,"
                          " kind TEXT NOT NULL CHECK (kind IN ('fwd', 'bwd', 'dec')), signature TEXT NOT NULL,"
                          " heads INTEGER NOT NULL, kv_heads INTEGER NOT NULL, head_dim INTEGER NOT NULL,"
                          " dtype TEXT NOT NULL, pattern TEXT NOT NULL, bands_hash TEXT NOT NULL DEFAULT '',"
                          " band_basis INTEGER NOT NULL, batch INTEGER NOT NULL, seq_bucket INTEGER NOT NULL,"
                          " new_tokens INTEGER NOT NULL DEFAULT 0, tile TEXT NOT NULL, bm INTEGER NOT NULL,"
                          " bn INTEGER NOT NULL, warps INTEGER NOT NULL, stages INTEGER NOT NULL,"
                          " median_ms REAL NOT NULL, eff_tflops REAL NOT NULL, candidates INTEGER NOT NULL,"
                          " created_at TEXT NOT NULL, UNIQUE (gpu_name, sm, sm_count, driver_version, nvrtc_version,"
                          " spattn_version, kind, signature, batch, seq_bucket, new_tokens));"
                          "INSERT INTO old SELECT * FROM tuned;"
                          "DROP TABLE tuned; ALTER TABLE old RENAME TO tuned; PRAGMA user_version = 2;",
                          NULL, NULL, NULL) == SQLITE_OK;
    if (ok) ok = sqlite3_exec(h, "INSERT INTO tuned SELECT 9, gpu_name, sm, sm_count, driver_version, nvrtc_version,"
                                 " spattn_version, 'bwd-det', signature, heads, kv_heads, head_dim, dtype, pattern,"
                                 " bands_hash, band_basis, batch, seq_bucket, new_tokens, tile, bm, bn, warps, stages,"
                                 " median_ms, eff_tflops, candidates, created_at FROM tuned WHERE id = 1",
                              NULL, NULL, NULL) != SQLITE_OK;   /* the old CHECK refuses the new kind */
    sqlite3_close(h);
    CHECK("made a schema-2 file that refuses bwd-det", ok && pragma_int(p, "PRAGMA user_version") == 2);
    CHECK("read-only: refused as older", db_open(p, 1, &d, &e) == -1 && strstr(e.msg, "older"));
    sp_err_clear(&e);
    CHECKF(db_open(p, 0, &d, &e) == 0, "read-write migrates: %s", e.msg);
    CHECK("now schema 3", pragma_int(p, "PRAGMA user_version") == 3 && DB_SCHEMA_VERSION == 3);
    if (!d) return;
    db_row got;
    int found = 0;
    CHECK("the bwd row kept, its id too", db_get(d, &k, &got, &found, &e) == 0 && found && got.id == 2 &&
                                              strcmp(got.tile, rows[1].tile) == 0);
    db_key kd = k;
    snprintf(kd.kind, sizeof kd.kind, "bwd-det");
    db_row det = make_row(kd, 64, 64, 0.8);
    CHECKF(db_put_rows(d, &det, 1, &e) == 0 && count_rows(d) == 3, "a bwd-det row beside the bwd row: %s", e.msg);
    CHECK("each kind finds its own",
          db_get(d, &kd, &got, &found, &e) == 0 && found && strcmp(got.tile, det.tile) == 0 &&
              db_lookup_nearest(d, &k, &got, &found, &e) == 0 && found && strcmp(got.tile, rows[1].tile) == 0);
    CHECK("the kind filter", count_kind(d, "bwd-det") == 1 && count_kind(d, "bwd") == 1 && count_kind(d, "fwd") == 1);
    db_close(d);
}

static const test_case tests[] = {
    { "keys", test_keys },
    { "decode_rows", test_decode_rows },
    { "migrate_v1", test_migrate_v1 },
    { "migrate_v2", test_migrate_v2 },
    { "validate", test_validate },
    { "schema", test_schema },
    { "put_lookup", test_put_lookup },
    { "roundtrip", test_roundtrip },
    { "import_bad", test_import_bad },
    { "newer_refused", test_newer_refused },
    { "bad_files", test_bad_files },
    { "recover", test_recover },
    { "concurrent_writers", test_concurrent_writers },
    { 0, 0 },
};

TEST_MAIN(tests)
