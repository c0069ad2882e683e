/* The tuning database (see db.h for the contract).
 *
 * One table, `tuned`, one row per key.  The row's fields are described once,
 * in `fields[]` below: that table drives the column lists of the generated
 * SQL, binding, reading rows back, JSON output and JSON import, so adding a
 * field means one new row there, one column in a new migration step, and one
 * member in db_row. */
#include "tuning_db/db.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "common/fileio.h"
#include "common/text.h"

struct db {
    sqlite3 *h;
    char path[4096];
    int readonly;
    sqlite3_stmt *json_stmt[2];  /* db_row_json without / with id, prepared on first use */
};

/* ---- the schema ------------------------------------------------------------ */

/* migrations[k] takes a database from user_version k to k + 1.  All pending
 * steps run in one transaction together with the new user_version, so a
 * database is never left half-migrated.  Never edit a released step: add one. */
static const char *const migrations[] = {
    /* 0 -> 1: the first schema. */
    "CREATE TABLE tuned (\n"
    "  id             INTEGER PRIMARY KEY,\n"
    "  gpu_name       TEXT    NOT NULL,\n"
    "  sm             INTEGER NOT NULL CHECK (sm > 0),\n"
    "  sm_count       INTEGER NOT NULL CHECK (sm_count > 0),\n"
    "  driver_version INTEGER NOT NULL,\n"
    "  nvrtc_version  INTEGER NOT NULL,\n"
    "  spattn_version TEXT    NOT NULL,\n"
    "  kind           TEXT    NOT NULL CHECK (kind IN ('fwd', 'bwd')),\n"
    "  signature      TEXT    NOT NULL,\n"
    "  heads          INTEGER NOT NULL,\n"
    "  kv_heads       INTEGER NOT NULL,\n"
    "  head_dim       INTEGER NOT NULL,\n"
    "  dtype          TEXT    NOT NULL CHECK (dtype IN ('bf16', 'fp16')),\n"
    "  pattern        TEXT    NOT NULL,\n"
    "  bands_hash     TEXT    NOT NULL DEFAULT '',\n"
    "  band_basis     INTEGER NOT NULL CHECK (band_basis >= 0),\n"
    "  batch          INTEGER NOT NULL CHECK (batch >= 1),\n"
    "  seq_bucket     INTEGER NOT NULL CHECK (seq_bucket >= 1),\n"
    "  tile           TEXT    NOT NULL,\n"
    "  bm             INTEGER NOT NULL,\n"
    "  bn             INTEGER NOT NULL,\n"
    "  warps          INTEGER NOT NULL,\n"
    "  stages         INTEGER NOT NULL,\n"
    "  median_ms      REAL    NOT NULL,\n"
    "  eff_tflops     REAL    NOT NULL,\n"
    "  candidates     INTEGER NOT NULL,\n"
    "  created_at     TEXT    NOT NULL,\n"
    "  UNIQUE (gpu_name, sm, sm_count, driver_version, nvrtc_version, spattn_version,\n"
    "          kind, signature, batch, seq_bucket)\n"
    ");\n",
    /* 1 -> 2: decode rows (kind 'dec') keyed by new_tokens T as well; fwd
     * and bwd rows get T = 0.  SQLite cannot change a CHECK or a UNIQUE in
     * place, so the table is rebuilt (its documented ALTER TABLE recipe);
     * ids are kept. */
    "CREATE TABLE tuned_v2 (\n"
    "  id             INTEGER PRIMARY KEY,\n"
    "  gpu_name       TEXT    NOT NULL,\n"
    "  sm             INTEGER NOT NULL CHECK (sm > 0),\n"
    "  sm_count       INTEGER NOT NULL CHECK (sm_count > 0),\n"
    "  driver_version INTEGER NOT NULL,\n"
    "  nvrtc_version  INTEGER NOT NULL,\n"
    "  spattn_version TEXT    NOT NULL,\n"
    "  kind           TEXT    NOT NULL CHECK (kind IN ('fwd', 'bwd', 'dec')),\n"
    "  signature      TEXT    NOT NULL,\n"
    "  heads          INTEGER NOT NULL,\n"
    "  kv_heads       INTEGER NOT NULL,\n"
    "  head_dim       INTEGER NOT NULL,\n"
    "  dtype          TEXT    NOT NULL CHECK (dtype IN ('bf16', 'fp16')),\n"
    "  pattern        TEXT    NOT NULL,\n"
    "  bands_hash     TEXT    NOT NULL DEFAULT '',\n"
    "  band_basis     INTEGER NOT NULL CHECK (band_basis >= 0),\n"
    "  batch          INTEGER NOT NULL CHECK (batch >= 1),\n"
    "  seq_bucket     INTEGER NOT NULL CHECK (seq_bucket >= 1),\n"
    "  new_tokens     INTEGER NOT NULL DEFAULT 0 CHECK ((kind = 'dec') = (new_tokens >= 1) AND new_tokens >= 0),\n"
    "  tile           TEXT    NOT NULL,\n"
    "  bm             INTEGER NOT NULL,\n"
    "  bn             INTEGER NOT NULL,\n"
    "  warps          INTEGER NOT NULL,\n"
    "  stages         INTEGER NOT NULL,\n"
    "  median_ms      REAL    NOT NULL,\n"
    "  eff_tflops     REAL    NOT NULL,\n"
    "  candidates     INTEGER NOT NULL,\n"
    "  created_at     TEXT    NOT NULL,\n"
    "  UNIQUE (gpu_name, sm, sm_count, driver_version, nvrtc_version, spattn_version,\n"
    "          kind, signature, batch, seq_bucket, new_tokens)\n"
    ");\n"
    "INSERT INTO tuned_v2 (id, gpu_name, sm, sm_count, driver_version, nvrtc_version, spattn_version, kind,\n"
    "  signature, heads, kv_heads, head_dim, dtype, pattern, bands_hash, band_basis, batch, seq_bucket, new_tokens,\n"
    "  tile, bm, bn, warps, stages, median_ms, eff_tflops, candidates, created_at)\n"
    "SELECT id, gpu_name, sm, sm_count, driver_version, nvrtc_version, spattn_version, kind,\n"
    "  signature, heads, kv_heads, head_dim, dtype, pattern, bands_hash, band_basis, batch, seq_bucket, 0,\n"
    "  tile, bm, bn, warps, stages, median_ms, eff_tflops, candidates, created_at FROM tuned;\n"
    "DROP TABLE tuned;\n"
    "ALTER TABLE tuned_v2 RENAME TO tuned;\n",
    /* 2 -> 3: the deterministic backward's own rows (kind 'bwd-det': the
     * backward timed with deterministic = 1, runtime/config.h); the table is
     * rebuilt as in step 2 for the CHECK, ids and rows are kept. */
    "CREATE TABLE tuned_v3 (\n"
    "  id             INTEGER PRIMARY KEY,\n"
    "  gpu_name       TEXT    NOT NULL,\n"
    "  sm             INTEGER NOT NULL CHECK (sm > 0),\n"
    "  sm_count       INTEGER NOT NULL CHECK (sm_count > 0),\n"
    "  driver_version INTEGER NOT NULL,\n"
    "  nvrtc_version  INTEGER NOT NULL,\n"
    "  spattn_version TEXT    NOT NULL,\n"
    "  kind           TEXT    NOT NULL CHECK (kind IN ('fwd', 'bwd', 'bwd-det', 'dec')),\n"
    "  signature      TEXT    NOT NULL,\n"
    "  heads          INTEGER NOT NULL,\n"
    "  kv_heads       INTEGER NOT NULL,\n"
    "  head_dim       INTEGER NOT NULL,\n"
    "  dtype          TEXT    NOT NULL CHECK (dtype IN ('bf16', 'fp16')),\n"
    "  pattern        TEXT    NOT NULL,\n"
    "  bands_hash     TEXT    NOT NULL DEFAULT '',\n"
    "  band_basis     INTEGER NOT NULL CHECK (band_basis >= 0),\n"
    "  batch          INTEGER NOT NULL CHECK (batch >= 1),\n"
    "  seq_bucket     INTEGER NOT NULL CHECK (seq_bucket >= 1),\n"
    "  new_tokens     INTEGER NOT NULL DEFAULT 0 CHECK ((kind = 'dec') = (new_tokens >= 1) AND new_tokens >= 0),\n"
    "  tile           TEXT    NOT NULL,\n"
    "  bm             INTEGER NOT NULL,\n"
    "  bn             INTEGER NOT NULL,\n"
    "  warps          INTEGER NOT NULL,\n"
    "  stages         INTEGER NOT NULL,\n"
    "  median_ms      REAL    NOT NULL,\n"
    "  eff_tflops     REAL    NOT NULL,\n"
    "  candidates     INTEGER NOT NULL,\n"
    "  created_at     TEXT    NOT NULL,\n"
    "  UNIQUE (gpu_name, sm, sm_count, driver_version, nvrtc_version, spattn_version,\n"
    "          kind, signature, batch, seq_bucket, new_tokens)\n"
    ");\n"
    "INSERT INTO tuned_v3 (id, gpu_name, sm, sm_count, driver_version, nvrtc_version, spattn_version, kind,\n"
    "  signature, heads, kv_heads, head_dim, dtype, pattern, bands_hash, band_basis, batch, seq_bucket, new_tokens,\n"
    "  tile, bm, bn, warps, stages, median_ms, eff_tflops, candidates, created_at)\n"
    "SELECT id, gpu_name, sm, sm_count, driver_version, nvrtc_version, spattn_version, kind,\n"
    "  signature, heads, kv_heads, head_dim, dtype, pattern, bands_hash, band_basis, batch, seq_bucket, new_tokens,\n"
    "  tile, bm, bn, warps, stages, median_ms, eff_tflops, candidates, created_at FROM tuned;\n"
    "DROP TABLE tuned;\n"
    "ALTER TABLE tuned_v3 RENAME TO tuned;\n",
};
_Static_assert(sizeof migrations / sizeof migrations[0] == DB_SCHEMA_VERSION,
               "one migration step per schema version");

/* ---- the fields of a row ------------------------------------------------------ */

typedef enum { F_TEXT, F_INT, F_I64, F_REAL, F_SIGNATURE } field_type;

typedef struct {
    const char *name;   /* column name, JSON key and ":name" SQL parameter */
    field_type type;
    size_t off, size;   /* where it lives in db_row (F_SIGNATURE: computed, not stored) */
    int is_key;         /* part of the UNIQUE key */
    int since;          /* the schema version that added it: an import line without it (an export
                         * of an older spattn) reads it as 0 */
} field;

#define KEYF(t, m)  { #m, t, offsetof(db_row, key.m), sizeof(((db_row *)0)->key.m), 1, 1 }
#define SPECF(t, m) { #m, t, offsetof(db_row, key.m), sizeof(((db_row *)0)->key.m), 0, 1 }
#define VALF(t, m)  { #m, t, offsetof(db_row, m), sizeof(((db_row *)0)->m), 0, 1 }

/* In export order.  The spec fields (SPECF) are summed up by the signature,
 * which is the key column; they are stored too, for queries and humans. */
static const field fields[] = {
    KEYF(F_TEXT, gpu_name),
    KEYF(F_INT, sm),
    KEYF(F_INT, sm_count),
    KEYF(F_INT, driver_version),
    KEYF(F_INT, nvrtc_version),
    KEYF(F_TEXT, spattn_version),
    KEYF(F_TEXT, kind),
    { "signature", F_SIGNATURE, 0, 0, 1, 1 },
    SPECF(F_INT, heads),
    SPECF(F_INT, kv_heads),
    SPECF(F_INT, head_dim),
    SPECF(F_TEXT, dtype),
    SPECF(F_TEXT, pattern),
    SPECF(F_TEXT, bands_hash),
    SPECF(F_I64, band_basis),
    KEYF(F_I64, batch),
    KEYF(F_I64, seq_bucket),
    { "new_tokens", F_INT, offsetof(db_row, key.new_tokens), sizeof(int), 1, 2 },
    VALF(F_TEXT, tile),
    VALF(F_INT, bm),
    VALF(F_INT, bn),
    VALF(F_INT, warps),
    VALF(F_INT, stages),
    VALF(F_REAL, median_ms),
    VALF(F_REAL, eff_tflops),
    VALF(F_INT, candidates),
    VALF(F_TEXT, created_at),
};
#define N_FIELDS (int)(sizeof fields / sizeof fields[0])

/* "id, gpu_name, sm, ...": the SELECT list that read_row expects. */
static void sql_columns(strbuf *sb)
{
    sb_puts(sb, "id");
    for (int i = 0; i < N_FIELDS; i++) sb_printf(sb, ", %s", fields[i].name);
}

/* Bind every field of r whose ":name" parameter the statement has. */
static void bind_row(sqlite3_stmt *st, const db_row *r)
{
    char name[64], sig[256];
    int ix;
    if ((ix = sqlite3_bind_parameter_index(st, ":id"))) sqlite3_bind_int64(st, ix, r->id);
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        snprintf(name, sizeof name, ":%s", f->name);
        if (!(ix = sqlite3_bind_parameter_index(st, name))) continue;
        const char *p = (const char *)r + f->off;
        switch (f->type) {
        case F_TEXT: sqlite3_bind_text(st, ix, p, -1, SQLITE_TRANSIENT); break;
        case F_INT:  sqlite3_bind_int(st, ix, *(const int *)(const void *)p); break;
        case F_I64:  sqlite3_bind_int64(st, ix, *(const int64_t *)(const void *)p); break;
        case F_REAL: sqlite3_bind_double(st, ix, *(const double *)(const void *)p); break;
        case F_SIGNATURE:
            db_signature(&r->key, sig, sizeof sig);
            sqlite3_bind_text(st, ix, sig, -1, SQLITE_TRANSIENT);
            break;
        }
    }
}

/* Read a row selected with sql_columns(). */
static void read_row(sqlite3_stmt *st, db_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        char *p = (char *)r + f->off;
        int col = i + 1;
        switch (f->type) {
        case F_TEXT: {
            const unsigned char *t = sqlite3_column_text(st, col);
            snprintf(p, f->size, "%s", t ? (const char *)t : "");
            break;
        }
        case F_INT:  *(int *)(void *)p = sqlite3_column_int(st, col); break;
        case F_I64:  *(int64_t *)(void *)p = sqlite3_column_int64(st, col); break;
        case F_REAL: *(double *)(void *)p = sqlite3_column_double(st, col); break;
        case F_SIGNATURE: break;  /* derived from the other fields */
        }
    }
}

/* ---- small helpers -------------------------------------------------------------- */

/* Fail with SQLite's message for the last error on h. */
static int fail_sqlite(db *d, sp_err *e, const char *doing)
{
    int rc = sqlite3_errcode(d->h);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return sp_fail_at(e, SP_EXIT_FAIL, d->path, 0, 0,
                          "%s: database is locked (another process held it for more than %d s)", doing,
                          DB_BUSY_TIMEOUT_MS / 1000);
    return sp_fail_at(e, SP_EXIT_FAIL, d->path, 0, 0, "%s: %s", doing, sqlite3_errmsg(d->h));
}

static int prepare(db *d, const char *sql, sqlite3_stmt **st, sp_err *e)
{
    if (sqlite3_prepare_v2(d->h, sql, -1, st, NULL) != SQLITE_OK) {
        *st = NULL;
        return fail_sqlite(d, e, "preparing a query");
    }
    return 0;
}

static int exec(db *d, const char *sql, const char *doing, sp_err *e)
{
    if (sqlite3_exec(d->h, sql, NULL, NULL, NULL) != SQLITE_OK) return fail_sqlite(d, e, doing);
    return 0;
}

/* Run a one-value query ("PRAGMA user_version") on h. */
static int query_int(sqlite3 *h, const char *sql, int64_t *out)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) { *out = sqlite3_column_int64(st, 0); rc = SQLITE_OK; }
    else if (rc == SQLITE_DONE) { *out = 0; rc = SQLITE_OK; }
    sqlite3_finalize(st);
    return rc;
}

static void utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int one_of(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (strcmp(s, *set) == 0) return 1;
    return 0;
}

static const char *const kinds[] = { "fwd", "bwd", "bwd-det", "dec", NULL };
static const char *const dtypes[] = { "bf16", "fp16", NULL };
static const char *const patterns[] = { "dense", "local", "spattn", "exclusive", "gapped", "custom", "window", NULL };

/* ---- keys ------------------------------------------------------------------------- */

int64_t db_seq_bucket(int64_t n)
{
    int64_t b = 1;
    while (b < n && b < ((int64_t)1 << 62)) b <<= 1;
    return b;
}

void db_signature(const db_key *k, char *buf, size_t n)
{
    char pat[48], basis[32];
    if (strcmp(k->pattern, "custom") == 0) snprintf(pat, sizeof pat, "custom.%s", k->bands_hash);
    else snprintf(pat, sizeof pat, "%s", k->pattern);
    if (k->band_basis == 0) snprintf(basis, sizeof basis, "N");
    else snprintf(basis, sizeof basis, "%lld", (long long)k->band_basis);
    snprintf(buf, n, "%s/h%dkv%d/d%d/%s/L=%s", pat, k->heads, k->kv_heads, k->head_dim, k->dtype, basis);
}

void db_bands_hash(const sp_band_list *bands, int heads, char out[20])
{
    /* Hash a text rendering, not the structs, so padding and int widths
     * cannot change the value. */
    strbuf sb = STRBUF_INIT;
    sb_printf(&sb, "heads=%d", heads);
    for (int h = 0; h < heads; h++) {
        sb_puts(&sb, ";");
        for (int i = 0; i < bands[h].n; i++)
            sb_printf(&sb, "%s%lld-%lld", i ? "," : "", (long long)bands[h].iv[i].lo, (long long)bands[h].iv[i].hi);
    }
    unsigned long long x = XXH64(sb.buf, sb.len, 0);
    sb_free(&sb);
    snprintf(out, 20, "%016llx", x);
}

static int is_iso_utc(const char *s)
{
    /* YYYY-MM-DDTHH:MM:SSZ */
    static const char form[] = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != sizeof form - 1) return 0;
    for (int i = 0; form[i]; i++) {
        if (form[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != form[i]) return 0;
    }
    int mon = atoi(s + 5), day = atoi(s + 8), hh = atoi(s + 11), mm = atoi(s + 14), ss = atoi(s + 17);
    return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hh < 24 && mm < 60 && ss <= 60;
}

static int is_power_of_two(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

int db_validate_row(const db_row *r, char *why, size_t n)
{
    const db_key *k = &r->key;
#define BAD(...) do { snprintf(why, n, __VA_ARGS__); return -1; } while (0)
    if (!k->gpu_name[0]) BAD("gpu_name is empty");
    if (k->sm < 10 || k->sm > 999) BAD("sm must be 10 * major + minor in [10, 999], got %d", k->sm);
    if (k->sm_count < 1 || k->sm_count > 100000) BAD("sm_count must be in [1, 100000], got %d", k->sm_count);
    if (k->driver_version < 1) BAD("driver_version must be positive, got %d", k->driver_version);
    if (k->nvrtc_version < 1) BAD("nvrtc_version must be positive, got %d", k->nvrtc_version);
    if (!k->spattn_version[0]) BAD("spattn_version is empty");
    if (!one_of(k->kind, kinds)) BAD("kind must be fwd, bwd, bwd-det or dec, got '%s'", k->kind);
    if (k->heads < 1 || k->heads > SP_MAX_HEADS) BAD("heads must be in [1, %d], got %d", SP_MAX_HEADS, k->heads);
    if (k->kv_heads < 1 || k->kv_heads > k->heads || k->heads % k->kv_heads)
        BAD("kv_heads must divide heads (%d), got %d", k->heads, k->kv_heads);
    if (k->head_dim < 8 || k->head_dim > 512 || k->head_dim % 8)
        BAD("head_dim must be a multiple of 8 in [8, 512], got %d", k->head_dim);
    if (!one_of(k->dtype, dtypes)) BAD("dtype must be bf16 or fp16, got '%s'", k->dtype);
    if (!one_of(k->pattern, patterns))
        BAD("pattern must be dense, local, spattn, exclusive, gapped or custom, got '%s'", k->pattern);
    if (strcmp(k->pattern, "custom") == 0) {
        int ok = strlen(k->bands_hash) == 16;
        for (int i = 0; ok && i < 16; i++) ok = strchr("0123456789abcdef", k->bands_hash[i]) != NULL;
        if (!ok) BAD("pattern custom needs bands_hash of 16 lowercase hex digits, got '%s'", k->bands_hash);
    } else if (k->bands_hash[0]) {
        BAD("bands_hash must be empty unless pattern is custom, got '%s'", k->bands_hash);
    }
    if (k->band_basis < 0 || k->band_basis > ((int64_t)1 << 40))
        BAD("band_basis must be in [0, 2^40], got %lld", (long long)k->band_basis);
    if (k->batch < 1 || k->batch > INT_MAX) BAD("batch must be in [1, %d], got %lld", INT_MAX, (long long)k->batch);
    if (!is_power_of_two(k->seq_bucket) || k->seq_bucket > ((int64_t)1 << 40))
        BAD("seq_bucket must be a power of two in [1, 2^40], got %lld", (long long)k->seq_bucket);
    if (strcmp(k->kind, "dec") == 0 && (k->new_tokens < 1 || k->new_tokens > DB_MAX_NEW_TOKENS))
        BAD("new_tokens of a dec row must be in [1, %d], got %d", DB_MAX_NEW_TOKENS, k->new_tokens);
    if (strcmp(k->kind, "dec") != 0 && k->new_tokens != 0)
        BAD("new_tokens must be 0 for a %s row, got %d", k->kind, k->new_tokens);
    if (r->bm < 16 || r->bm > 512 || r->bm % 16) BAD("bm must be a multiple of 16 in [16, 512], got %d", r->bm);
    if (r->bn < 16 || r->bn > 512 || r->bn % 16) BAD("bn must be a multiple of 16 in [16, 512], got %d", r->bn);
    if (r->warps < 1 || r->warps > 32) BAD("warps must be in [1, 32], got %d", r->warps);
    if (r->stages < 1 || r->stages > 8) BAD("stages must be in [1, 8], got %d", r->stages);
    /* The tile string is kcfg_tile_string's form; later emitters may append
     * ":..." choices, but the four columns must agree with its start. */
    char head[64];
    int hl = snprintf(head, sizeof head, "%dx%d:w%d:s%d", r->bm, r->bn, r->warps, r->stages);
    if (strncmp(r->tile, head, (size_t)hl) != 0 || (r->tile[hl] != '\0' && r->tile[hl] != ':'))
        BAD("tile '%s' does not match bm/bn/warps/stages (%s)", r->tile, head);
    if (!isfinite(r->median_ms) || r->median_ms <= 0) BAD("median_ms must be positive, got %g", r->median_ms);
    if (!isfinite(r->eff_tflops) || r->eff_tflops < 0) BAD("eff_tflops must be >= 0, got %g", r->eff_tflops);
    if (r->candidates < 1) BAD("candidates must be >= 1, got %d", r->candidates);
    if (r->created_at[0] && !is_iso_utc(r->created_at))
        BAD("created_at must be UTC ISO-8601 like 2026-11-25T10:00:00Z, got '%s'", r->created_at);
#undef BAD
    return 0;
}

/* ---- opening and health ------------------------------------------------------------ */

int db_path_default(char *buf, size_t n, sp_err *e)
{
    const char *env = getenv("SPATTN_DB");
    if (env && *env) {
        snprintf(buf, n, "%s", env);
        return 0;
    }
    /* The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored. */
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && xdg[0] == '/') {
        snprintf(buf, n, "%s/spattn/tune.db", xdg);
        return 0;
    }
    const char *home = getenv("HOME");
    if (home && *home) {
        snprintf(buf, n, "%s/.cache/spattn/tune.db", home);
        return 0;
    }
    sp_fail(e, SP_EXIT_USAGE, "cannot place the tuning database: HOME is not set");
    sp_hint(e, "set SPATTN_DB or pass --db FILE");
    return -1;
}

const char *db_health_name(db_health h)
{
    switch (h) {
    case DB_HEALTH_OK:      return "ok";
    case DB_HEALTH_MISSING: return "missing";
    case DB_HEALTH_EMPTY:   return "empty";
    case DB_HEALTH_CORRUPT: return "corrupt";
    case DB_HEALTH_FOREIGN: return "foreign";
    case DB_HEALTH_NEWER:   return "newer";
    }
    return "?";
}

static int is_damage(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT;
}

/* A table of schema version ver must have the column of every field that
 * version has, or every query (or the migration) would fail with "no such
 * column".  detail = "" when it has. */
static int missing_column(sqlite3 *h, int64_t ver, char *detail, size_t n)
{
    detail[0] = '\0';
    for (int i = 0; i < N_FIELDS; i++) {
        if (fields[i].since > ver) continue;
        char sql[160];
        int64_t has = 0;
        snprintf(sql, sizeof sql, "SELECT count(*) FROM pragma_table_info('tuned') WHERE name = '%s'", fields[i].name);
        int rc = query_int(h, sql, &has);
        if (rc != SQLITE_OK) return rc;
        if (!has) {
            snprintf(detail, n, "the table 'tuned' has no column '%s'", fields[i].name);
            return SQLITE_OK;
        }
    }
    return SQLITE_OK;
}

/* Classify the database open on h without writing to it.  Returns an SQLite
 * result code: SQLITE_OK with *out set, or an error that says nothing about
 * the file's content (I/O, permissions), left to the caller. */
static int inspect(sqlite3 *h, db_health *out, int64_t *version, char *detail, size_t n)
{
    int64_t app = 0, ver = 0, objects = 0;
    int rc = query_int(h, "PRAGMA application_id", &app);
    if (rc == SQLITE_OK) rc = query_int(h, "PRAGMA user_version", &ver);
    if (rc == SQLITE_OK) rc = query_int(h, "SELECT count(*) FROM sqlite_master", &objects);
    if (is_damage(rc)) {
        *out = DB_HEALTH_CORRUPT;
        snprintf(detail, n, "%s", sqlite3_errmsg(h));
        return SQLITE_OK;
    }
    if (rc != SQLITE_OK) return rc;
    *version = ver;
    app = (int64_t)(uint32_t)app;
    if (app == 0 && ver == 0 && objects == 0) {
        *out = DB_HEALTH_EMPTY;
        detail[0] = '\0';
        return SQLITE_OK;
    }
    if (app != DB_APPLICATION_ID) {
        *out = DB_HEALTH_FOREIGN;
        snprintf(detail, n, "an SQLite database of another program (application_id 0x%08llx)", (unsigned long long)app);
        return SQLITE_OK;
    }
    if (ver < 0) {   /* the migration steps are indexed by it */
        *out = DB_HEALTH_CORRUPT;
        snprintf(detail, n, "schema version %lld is not one spattn writes", (long long)ver);
        return SQLITE_OK;
    }
    if (ver > DB_SCHEMA_VERSION) {
        *out = DB_HEALTH_NEWER;
        snprintf(detail, n, "schema version %lld is newer than this spattn knows (%d)", (long long)ver,
                 DB_SCHEMA_VERSION);
        return SQLITE_OK;
    }
    /* Truncation and bit rot show up here rather than in the header reads. */
    sqlite3_stmt *st;
    rc = sqlite3_prepare_v2(h, "PRAGMA quick_check(1)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *r = (const char *)sqlite3_column_text(st, 0);
            if (r && strcmp(r, "ok") != 0) {
                *out = DB_HEALTH_CORRUPT;
                snprintf(detail, n, "database disk image is malformed (%s)", r);
                sqlite3_finalize(st);
                return SQLITE_OK;
            }
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
    }
    if (is_damage(rc)) {
        *out = DB_HEALTH_CORRUPT;
        snprintf(detail, n, "%s", sqlite3_errmsg(h));
        return SQLITE_OK;
    }
    if (rc != SQLITE_OK && rc != SQLITE_DONE) return rc;
    int64_t has_table = 0;
    rc = query_int(h, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'tuned'", &has_table);
    if (rc != SQLITE_OK) return rc;
    if (ver >= 1 && !has_table) {
        *out = DB_HEALTH_CORRUPT;
        snprintf(detail, n, "the table 'tuned' is missing");
        return SQLITE_OK;
    }
    /* Version 0 is a file the first migration step has not run on: any
     * table in it would make that step fail ("table tuned already exists"). */
    if (ver == 0 && objects > 0) {
        *out = DB_HEALTH_CORRUPT;
        snprintf(detail, n, "schema version 0, yet it already holds tables");
        return SQLITE_OK;
    }
    if (ver >= 1) {
        rc = missing_column(h, ver, detail, n);
        if (rc != SQLITE_OK || detail[0]) {
            *out = DB_HEALTH_CORRUPT;
            return rc;
        }
    }
    *out = DB_HEALTH_OK;
    detail[0] = '\0';
    return SQLITE_OK;
}

/* The error for a file inspect() found unusable. */
static int fail_health(const char *path, db_health h, const char *detail, sp_err *e)
{
    if (h == DB_HEALTH_NEWER) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s; the file was not touched", detail);
        sp_hint(e, "use a newer spattn, or point --db / SPATTN_DB at another file");
        return -1;
    }
    sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "not a spattn tuning database (%s)", detail);
    sp_hint(e, "'spattn db recover' moves it aside and starts a fresh database");
    return -1;
}

static int file_exists(const char *path, const char *suffix)
{
    char buf[4200];
    struct stat st;
    return snprintf(buf, sizeof buf, "%s%s", path, suffix) < (int)sizeof buf && stat(buf, &st) == 0;
}

/* Bytes 18 and 19 of the header are 2 in WAL mode (SQLite file format). */
static int header_says_wal(const char *path)
{
    unsigned char hdr[20];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(hdr, 1, sizeof hdr, f) == sizeof hdr;
    fclose(f);
    return ok && hdr[18] == 2 && hdr[19] == 2;
}

/* A connection that only reads: SQLITE_OPEN_READONLY, never a lock that
 * writes, never a file created.  When no -wal file is beside the database
 * no writer is connected and the main file holds every commit, so it is
 * opened immutable: SQLite then creates no -wal and -shm (which a read-only
 * connection could never remove again) and ignores a -journal, which a WAL
 * database never uses (junk beside it blocked every command with "not an
 * error").  The price: a writer that starts during the read is not seen.
 * Otherwise (a writer is there, or a rollback journal may be real) it reads
 * through the -wal and -shm that already exist. */
static int open_reader(const char *path, sqlite3 **h)
{
    int immutable = !file_exists(path, "-wal") && (!file_exists(path, "-journal") || header_says_wal(path));
    strbuf uri = STRBUF_INIT;
    sb_puts(&uri, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("/._-~", *p))
            sb_add(&uri, p, 1);
        else
            sb_printf(&uri, "%%%02X", *p);
    }
    sb_puts(&uri, immutable ? "?mode=ro&immutable=1" : "?mode=ro");
    int rc = sqlite3_open_v2(uri.buf, h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    sb_free(&uri);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(*h, DB_BUSY_TIMEOUT_MS);
        sqlite3_extended_result_codes(*h, 1);
    }
    return rc;
}

/* A connection that writes: the file is created if missing. */
static int open_writer(const char *path, sqlite3 **h)
{
    int rc = sqlite3_open_v2(path, h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_busy_timeout(*h, DB_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(*h, 1);
    return SQLITE_OK;
}

/* db_check_file, also giving the schema version.  It looks through a
 * read-only connection, which cannot change the file or its -wal. */
static int check_file(const char *path, db_health *h, int64_t *version, char *detail, size_t n, sp_err *e)
{
    struct stat st;
    detail[0] = '\0';
    *version = 0;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) { *h = DB_HEALTH_MISSING; return 0; }
        return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "cannot examine: %s", strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "is a directory, not a database file");
    if (!S_ISREG(st.st_mode)) return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "is not a regular file");
    if (st.st_size == 0) { *h = DB_HEALTH_EMPTY; return 0; }
    sqlite3 *s = NULL;
    int rc = open_reader(path, &s);
    if (rc == SQLITE_OK) {
        /* One read transaction for all of inspect()'s queries: with separate
         * statements, another process creating the schema could commit
         * between them (application_id still 0, tables already there) and a
         * fresh database would look like another program's. */
        rc = sqlite3_exec(s, "BEGIN", NULL, NULL, NULL);
        if (rc == SQLITE_OK) {
            rc = inspect(s, h, version, detail, n);
            sqlite3_exec(s, "COMMIT", NULL, NULL, NULL);
        }
    }
    if (rc != SQLITE_OK) {
        /* errmsg tells of the last call on s, which may have succeeded
         * ("not an error"); the code that failed is rc. */
        sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "cannot examine: %s",
                   s && sqlite3_errcode(s) != SQLITE_OK ? sqlite3_errmsg(s) : sqlite3_errstr(rc));
        sqlite3_close(s);
        return -1;
    }
    sqlite3_close(s);
    return 0;
}

int db_check_file(const char *path, db_health *h, char *detail, size_t n, sp_err *e)
{
    int64_t version;
    return check_file(path, h, &version, detail, n, e);
}

/* Apply the pending migration steps in one write transaction.  The version is
 * read again inside it: another process may have migrated meanwhile. */
static int migrate(db *d, sp_err *e)
{
    if (exec(d, "BEGIN IMMEDIATE", "starting the schema migration", e)) return -1;
    int64_t ver = 0;
    if (query_int(d->h, "PRAGMA user_version", &ver) != SQLITE_OK) goto fail;
    if (ver > DB_SCHEMA_VERSION) {
        sqlite3_exec(d->h, "ROLLBACK", NULL, NULL, NULL);
        char detail[128];
        snprintf(detail, sizeof detail, "schema version %lld is newer than this spattn knows (%d)", (long long)ver,
                 DB_SCHEMA_VERSION);
        return fail_health(d->path, DB_HEALTH_NEWER, detail, e);
    }
    if (ver < 0) {   /* changed since check_file looked: never index migrations[] with it */
        sqlite3_exec(d->h, "ROLLBACK", NULL, NULL, NULL);
        return fail_health(d->path, DB_HEALTH_CORRUPT, "negative schema version", e);
    }
    for (int64_t v = ver; v < DB_SCHEMA_VERSION; v++)
        if (sqlite3_exec(d->h, migrations[v], NULL, NULL, NULL) != SQLITE_OK) goto fail;
    if (ver < DB_SCHEMA_VERSION) {
        char sql[128];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %d", DB_APPLICATION_ID,
                 DB_SCHEMA_VERSION);
        if (sqlite3_exec(d->h, sql, NULL, NULL, NULL) != SQLITE_OK) goto fail;
    }
    if (sqlite3_exec(d->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) goto fail;
    return 0;
fail:
    fail_sqlite(d, e, "migrating the schema");
    sqlite3_exec(d->h, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* WAL lets readers run beside a writer; the mode is stored in the file.
 * Switching needs a moment of exclusive access, which a busy handler does not
 * always wait for, so retry until the busy timeout. */
static int set_wal(db *d, sp_err *e)
{
    double until = sp_now() + DB_BUSY_TIMEOUT_MS / 1000.0;
    for (;;) {
        sqlite3_stmt *st;
        int rc = sqlite3_prepare_v2(d->h, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        const char *mode = "";
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                mode = (const char *)sqlite3_column_text(st, 0);
                rc = mode && strcmp(mode, "wal") == 0 ? SQLITE_OK : SQLITE_ERROR;
            }
            sqlite3_finalize(st);
        }
        if (rc == SQLITE_OK) return 0;
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) return fail_sqlite(d, e, "setting WAL mode");
        if (sp_now() > until) return fail_sqlite(d, e, "setting WAL mode");
        usleep(20000);
    }
}

/* A read-only handle for a file that does not exist yet: an in-memory
 * database with the schema, so lookups simply find nothing. */
static int open_empty_memory(db *d, sp_err *e)
{
    if (sqlite3_open_v2(":memory:", &d->h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        return sp_fail(e, SP_EXIT_FAIL, "cannot open an in-memory database");
    return migrate(d, e);
}

static int open_file(db *d, int readonly, sp_err *e)
{
    /* Look before opening for real: a bad or newer file must stay exactly as it is. */
    db_health h;
    int64_t ver;
    char detail[256];
    if (check_file(d->path, &h, &ver, detail, sizeof detail, e)) return -1;
    if (h == DB_HEALTH_CORRUPT || h == DB_HEALTH_FOREIGN || h == DB_HEALTH_NEWER)
        return fail_health(d->path, h, detail, e);
    if (readonly && (h == DB_HEALTH_MISSING || h == DB_HEALTH_EMPTY)) return open_empty_memory(d, e);
    if (readonly && ver < DB_SCHEMA_VERSION) {
        sp_fail_at(e, SP_EXIT_USAGE, d->path, 0, 0, "schema version %lld is older than this spattn's (%d)",
                   (long long)ver, DB_SCHEMA_VERSION);
        sp_hint(e, "a command that writes the database (spattn tune, spattn db import) migrates it");
        return -1;
    }
    if (h == DB_HEALTH_MISSING) {
        /* Parent directories, as the default path's usually do not exist yet. */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", d->path);
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = '\0';
            if (sp_mkdir_p(dir, e)) return -1;
        }
    }
    int rc = readonly ? open_reader(d->path, &d->h) : open_writer(d->path, &d->h);
    if (rc != SQLITE_OK)
        return sp_fail_at(e, SP_EXIT_FAIL, d->path, 0, 0, "cannot open: %s",
                          d->h ? sqlite3_errmsg(d->h) : sqlite3_errstr(rc));
    if (readonly) return 0;
    if (set_wal(d, e)) return -1;
    /* migrate() reads the version again inside its transaction, so two
     * processes creating the same file at once create the schema once. */
    if (ver < DB_SCHEMA_VERSION && migrate(d, e)) return -1;
    /* NORMAL is safe in WAL mode: a crash can lose the last commit but never
     * corrupts the file. */
    return exec(d, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", "setting pragmas", e);
}

int db_open(const char *path, int readonly, db **out, sp_err *e)
{
    *out = NULL;
    db *d = calloc(1, sizeof *d);
    if (!d) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    if (path) snprintf(d->path, sizeof d->path, "%s", path);
    else if (db_path_default(d->path, sizeof d->path, e)) { free(d); return -1; }
    d->readonly = readonly;
    if (open_file(d, readonly, e)) {
        db_close(d);
        return -1;
    }
    *out = d;
    return 0;
}

void db_close(db *d)
{
    if (!d) return;
    for (int i = 0; i < 2; i++) sqlite3_finalize(d->json_stmt[i]);
    sqlite3_close(d->h);
    free(d);
}

const char *db_file(const db *d) { return d->path; }

static int need_writable(db *d, sp_err *e)
{
    if (d->readonly) return sp_fail_at(e, SP_EXIT_FAIL, d->path, 0, 0, "the database was opened read-only");
    return 0;
}

/* ---- writing ------------------------------------------------------------------------- */

int db_put_rows(db *d, const db_row *rows, int n, sp_err *e)
{
    if (need_writable(d, e)) return -1;
    if (n <= 0) return 0;
    char why[256];
    for (int i = 0; i < n; i++)
        if (db_validate_row(&rows[i], why, sizeof why))
            return sp_fail(e, SP_EXIT_USAGE, "tuning result %d of %d: %s", i + 1, n, why);

    /* INSERT INTO tuned (cols) VALUES (:cols) ON CONFLICT (key) DO UPDATE SET
     * every non-key column: the row id survives a re-tune. */
    strbuf sql = STRBUF_INIT;
    sb_puts(&sql, "INSERT INTO tuned (");
    for (int i = 0; i < N_FIELDS; i++) sb_printf(&sql, "%s%s", i ? ", " : "", fields[i].name);
    sb_puts(&sql, ") VALUES (");
    for (int i = 0; i < N_FIELDS; i++) sb_printf(&sql, "%s:%s", i ? ", " : "", fields[i].name);
    sb_puts(&sql, ") ON CONFLICT (");
    int nk = 0;
    for (int i = 0; i < N_FIELDS; i++)
        if (fields[i].is_key) sb_printf(&sql, "%s%s", nk++ ? ", " : "", fields[i].name);
    sb_puts(&sql, ") DO UPDATE SET ");
    int nv = 0;
    for (int i = 0; i < N_FIELDS; i++)
        if (!fields[i].is_key) sb_printf(&sql, "%s%s = excluded.%s", nv++ ? ", " : "", fields[i].name, fields[i].name);

    sqlite3_stmt *st = NULL;
    int rc = prepare(d, sql.buf, &st, e);
    sb_free(&sql);
    if (rc) return -1;
    /* IMMEDIATE takes the write lock now, so two writers queue on the busy
     * timeout instead of failing when a read lock would need upgrading. */
    if (exec(d, "BEGIN IMMEDIATE", "starting a write", e)) { sqlite3_finalize(st); return -1; }
    for (int i = 0; i < n; i++) {
        db_row r = rows[i];
        if (!r.created_at[0]) utc_now(r.created_at, sizeof r.created_at);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        bind_row(st, &r);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fail_sqlite(d, e, "writing tuning results");
            sqlite3_finalize(st);
            sqlite3_exec(d->h, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(d->h, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        fail_sqlite(d, e, "committing tuning results");
        sqlite3_exec(d->h, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

int db_clear(db *d, int *removed, sp_err *e)
{
    *removed = 0;
    if (need_writable(d, e)) return -1;
    if (exec(d, "DELETE FROM tuned", "clearing the database", e)) return -1;
    *removed = sqlite3_changes(d->h);
    return 0;
}

/* ---- reading ------------------------------------------------------------------------- */

/* Same GPU, software, kind and spec as :key; batch and seq_bucket left free. */
#define SAME_CONTEXT                                                                            \
    " WHERE gpu_name = :gpu_name AND sm = :sm AND sm_count = :sm_count"                         \
    " AND driver_version = :driver_version AND nvrtc_version = :nvrtc_version"                  \
    " AND spattn_version = :spattn_version AND kind = :kind AND signature = :signature"

/* Prepare "SELECT <all columns> FROM tuned <tail>" and bind key's fields. */
static int select_rows(db *d, const char *tail, const db_key *key, sqlite3_stmt **st, sp_err *e)
{
    strbuf sql = STRBUF_INIT;
    sb_puts(&sql, "SELECT ");
    sql_columns(&sql);
    sb_printf(&sql, " FROM tuned%s", tail);
    int rc = prepare(d, sql.buf, st, e);
    sb_free(&sql);
    if (rc) return -1;
    if (key) {
        db_row r;
        memset(&r, 0, sizeof r);
        r.key = *key;
        bind_row(*st, &r);
    }
    return 0;
}

int db_get(db *d, const db_key *key, db_row *out, int *found, sp_err *e)
{
    *found = 0;
    sqlite3_stmt *st;
    if (select_rows(d, SAME_CONTEXT " AND batch = :batch AND seq_bucket = :seq_bucket AND new_tokens = :new_tokens", key,
                    &st, e))
        return -1;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) { read_row(st, out); *found = 1; }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail_sqlite(d, e, "reading the database");
    return 0;
}

int db_has_current(db *d, const db_key *key, int *yes, sp_err *e)
{
    db_row r;
    return db_get(d, key, &r, yes, e);
}

static double log2_ratio(int64_t a, int64_t b)
{
    return fabs(log2((double)a / (double)b));
}

/* 1 if row a is a better match for key than row b, by db_lookup_nearest's rule. */
static int nearer(const db_key *key, const db_row *a, const db_row *b)
{
    double da, db_;
    if (a->key.new_tokens != b->key.new_tokens && key->new_tokens > 0) {   /* decode: T first */
        da = log2_ratio(a->key.new_tokens, key->new_tokens);
        db_ = log2_ratio(b->key.new_tokens, key->new_tokens);
        if (da != db_) return da < db_;
    }
    int sa = a->key.batch != key->batch, sb = b->key.batch != key->batch;
    if (sa != sb) return sa < sb;
    da = log2_ratio(a->key.seq_bucket, key->seq_bucket);
    db_ = log2_ratio(b->key.seq_bucket, key->seq_bucket);
    if (da != db_) return da < db_;
    da = log2_ratio(a->key.batch, key->batch);
    db_ = log2_ratio(b->key.batch, key->batch);
    if (da != db_) return da < db_;
    if (a->key.seq_bucket != b->key.seq_bucket) return a->key.seq_bucket > b->key.seq_bucket;
    if (a->key.batch != b->key.batch) return a->key.batch > b->key.batch;
    int c = strcmp(a->created_at, b->created_at);
    if (c) return c > 0;
    return a->id > b->id;
}

int db_lookup_nearest(db *d, const db_key *key, db_row *out, int *found, sp_err *e)
{
    *found = 0;
    if (key->seq_bucket < 1 || key->batch < 1)
        return sp_fail(e, SP_EXIT_USAGE, "db lookup: batch and seq_bucket must be >= 1");
    sqlite3_stmt *st;
    if (select_rows(d, SAME_CONTEXT, key, &st, e)) return -1;
    int rc;
    db_row r;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_row(st, &r);
        if (!*found || nearer(key, &r, out)) { *out = r; *found = 1; }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return fail_sqlite(d, e, "reading the database");
    return 0;
}

int db_list(db *d, const db_filter *f, db_row_fn fn, void *ctx, sp_err *e)
{
    sqlite3_stmt *st;
    if (select_rows(d,
                    " WHERE (:want_id = 0 OR id = :want_id)"
                    " AND (:want_gpu IS NULL OR instr(lower(gpu_name), lower(:want_gpu)) > 0)"
                    " AND (:want_kind IS NULL OR kind = :want_kind)"
                    " AND (:want_pattern IS NULL OR pattern = :want_pattern)"
                    " AND (:want_signature IS NULL OR signature = :want_signature)"
                    " ORDER BY gpu_name, kind, signature, batch, seq_bucket, new_tokens, id",
                    NULL, &st, e))
        return -1;
    db_filter none = { 0 };
    if (!f) f = &none;
    sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":want_id"), f->id);
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":want_gpu"), f->gpu, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":want_kind"), f->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":want_pattern"), f->pattern, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, sqlite3_bind_parameter_index(st, ":want_signature"), f->signature, -1, SQLITE_TRANSIENT);
    int rc;
    db_row r;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        read_row(st, &r);
        if (fn(ctx, &r)) { rc = SQLITE_DONE; break; }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return fail_sqlite(d, e, "reading the database");
    return 0;
}

/* ---- JSON lines ------------------------------------------------------------------------ */

int db_row_json(db *d, const db_row *r, int with_id, strbuf *out, sp_err *e)
{
    sqlite3_stmt **st = &d->json_stmt[with_id ? 1 : 0];
    if (!*st) {
        /* SELECT json_object('id', :id, 'gpu_name', :gpu_name, ...) */
        strbuf sql = STRBUF_INIT;
        sb_puts(&sql, "SELECT json_object(");
        if (with_id) sb_puts(&sql, "'id', :id, ");
        for (int i = 0; i < N_FIELDS; i++) sb_printf(&sql, "%s'%s', :%s", i ? ", " : "", fields[i].name, fields[i].name);
        sb_puts(&sql, ")");
        int rc = prepare(d, sql.buf, st, e);
        sb_free(&sql);
        if (rc) return -1;
    }
    sqlite3_reset(*st);
    bind_row(*st, r);
    if (sqlite3_step(*st) != SQLITE_ROW) return fail_sqlite(d, e, "writing JSON");
    /* SQLite copies text into JSON as it is; bytes that are not UTF-8 (a
     * database edited by hand) would make the line invalid JSON. */
    size_t from = out->len;
    sb_puts(out, (const char *)sqlite3_column_text(*st, 0));
    sp_json_utf8_repair(out, from);
    sb_puts(out, "\n");
    sqlite3_reset(*st);
    return 0;
}

typedef struct { db *d; strbuf *out; int count; sp_err *e; int failed; } export_ctx;

static int export_one(void *ctx, const db_row *r)
{
    export_ctx *x = ctx;
    if (db_row_json(x->d, r, 0, x->out, x->e)) { x->failed = 1; return 1; }
    x->count++;
    return 0;
}

int db_export_jsonl(db *d, const db_filter *f, strbuf *out, int *count, sp_err *e)
{
    export_ctx x = { d, out, 0, e, 0 };
    *count = 0;
    if (db_list(d, f, export_one, &x, e) || x.failed) return -1;
    *count = x.count;
    return 0;
}

/* Parse one JSON line into r with SQLite's JSON functions (st is
 * "SELECT json_type(?1, ?2), json_extract(?1, ?2)").  0 if r is a valid row;
 * else -1 with the reason in why. */
static int parse_line(db *d, sqlite3_stmt *valid, sqlite3_stmt *st, const char *line, int len, db_row *r,
                      char *why, size_t n)
{
    memset(r, 0, sizeof *r);
    sqlite3_reset(valid);
    sqlite3_bind_text(valid, 1, line, len, SQLITE_STATIC);
    if (sqlite3_step(valid) != SQLITE_ROW) { snprintf(why, n, "%s", sqlite3_errmsg(d->h)); return -1; }
    int ok = sqlite3_column_int(valid, 0);
    const char *top = (const char *)sqlite3_column_text(valid, 1);
    if (!ok) { snprintf(why, n, "invalid JSON"); sqlite3_reset(valid); return -1; }
    if (!top || strcmp(top, "object") != 0) {
        snprintf(why, n, "expected a JSON object, got %s", top ? top : "nothing");
        sqlite3_reset(valid);
        return -1;
    }
    sqlite3_reset(valid);

    char sig[256] = "";
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, line, len, SQLITE_STATIC);
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        char path[80];
        snprintf(path, sizeof path, "$.%s", f->name);
        sqlite3_reset(st);
        sqlite3_bind_text(st, 2, path, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_ROW) { snprintf(why, n, "%s", sqlite3_errmsg(d->h)); return -1; }
        const char *type = (const char *)sqlite3_column_text(st, 0);
        if (!type) {
            if (f->type == F_SIGNATURE) continue;  /* optional: derived */
            if (f->since > 1) continue;            /* a newer field: 0 (the row is still validated) */
            snprintf(why, n, "missing field '%s'", f->name);
            return -1;
        }
        char *p = (char *)r + f->off;
        int is_int = strcmp(type, "integer") == 0;
        switch (f->type) {
        case F_TEXT:
        case F_SIGNATURE: {
            if (strcmp(type, "text") != 0) { snprintf(why, n, "field '%s' must be a string, got %s", f->name, type); return -1; }
            const char *t = (const char *)sqlite3_column_text(st, 1);
            size_t cap = f->type == F_TEXT ? f->size : sizeof sig;
            if (strlen(t) >= cap) {
                snprintf(why, n, "field '%s' is longer than %zu bytes", f->name, cap - 1);
                return -1;
            }
            snprintf(f->type == F_TEXT ? p : sig, cap, "%s", t);
            break;
        }
        case F_INT:
        case F_I64: {
            if (!is_int) { snprintf(why, n, "field '%s' must be an integer, got %s", f->name, type); return -1; }
            int64_t v = sqlite3_column_int64(st, 1);
            if (f->type == F_INT) {
                if (v < INT_MIN || v > INT_MAX) { snprintf(why, n, "field '%s' is out of range: %lld", f->name, (long long)v); return -1; }
                *(int *)(void *)p = (int)v;
            } else {
                *(int64_t *)(void *)p = v;
            }
            break;
        }
        case F_REAL:
            if (!is_int && strcmp(type, "real") != 0) {
                snprintf(why, n, "field '%s' must be a number, got %s", f->name, type);
                return -1;
            }
            *(double *)(void *)p = sqlite3_column_double(st, 1);
            break;
        }
    }
    sqlite3_reset(st);
    if (!r->created_at[0]) { snprintf(why, n, "created_at is empty"); return -1; }
    if (db_validate_row(r, why, n)) return -1;
    if (sig[0]) {
        char want[256];
        db_signature(&r->key, want, sizeof want);
        if (strcmp(sig, want) != 0) {
            snprintf(why, n, "signature '%.100s' does not match the fields (they give '%.100s')", sig, want);
            return -1;
        }
    }
    return 0;
}

/* A NUL byte, or the JSON escape \u0000 outside another escape: SQLite's
 * JSON functions end the decoded string there, so "GPU\u0000junk" would
 * be imported as "GPU" without a word. */
static int has_nul(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0') return 1;
        if (s[i] != '\\' || i + 1 >= n) continue;
        if (s[i + 1] == 'u' && i + 5 < n && memcmp(s + i + 2, "0000", 4) == 0) return 1;
        i++;   /* skip the escaped character, so "\\u0000" is text */
    }
    return 0;
}

int db_import_jsonl(db *d, const char *text, size_t len, db_bad_line_fn bad, void *ctx, int *imported,
                    int *rejected, sp_err *e)
{
    *imported = *rejected = 0;
    if (need_writable(d, e)) return -1;
    sqlite3_stmt *valid = NULL, *st = NULL;
    if (prepare(d, "SELECT json_valid(?1), CASE WHEN json_valid(?1) THEN json_type(?1) END", &valid, e)) return -1;
    if (prepare(d, "SELECT json_type(?1, ?2), json_extract(?1, ?2)", &st, e)) { sqlite3_finalize(valid); return -1; }

    db_row *rows = NULL;
    int nrows = 0, cap = 0, lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        const char *ls = p;
        p = nl ? nl + 1 : end;
        while (le > ls && (le[-1] == '\r' || le[-1] == ' ' || le[-1] == '\t')) le--;
        while (ls < le && (*ls == ' ' || *ls == '\t')) ls++;
        if (ls == le) continue;
        if (le - ls > INT_MAX / 2) { if (bad) bad(ctx, lineno, "line too long"); (*rejected)++; continue; }
        if (has_nul(ls, (size_t)(le - ls))) { if (bad) bad(ctx, lineno, "a NUL character in the line"); (*rejected)++; continue; }
        if (nrows == cap) {
            cap = cap ? 2 * cap : 64;
            db_row *g = realloc(rows, (size_t)cap * sizeof *rows);
            if (!g) { free(rows); sqlite3_finalize(valid); sqlite3_finalize(st); return sp_fail(e, SP_EXIT_FAIL, "out of memory"); }
            rows = g;
        }
        char why[512];
        if (parse_line(d, valid, st, ls, (int)(le - ls), &rows[nrows], why, sizeof why)) {
            if (bad) bad(ctx, lineno, why);
            (*rejected)++;
        } else {
            nrows++;
        }
    }
    sqlite3_finalize(valid);
    sqlite3_finalize(st);
    int rc = db_put_rows(d, rows, nrows, e);
    free(rows);
    if (rc == 0) *imported = nrows;
    return rc;
}

/* ---- recovery ------------------------------------------------------------------------ */

/* Rename from -> to if from exists. */
static int move_if_there(const char *from, const char *to, sp_err *e)
{
    if (rename(from, to) == 0 || errno == ENOENT) return 0;
    return sp_fail_at(e, SP_EXIT_FAIL, from, 0, 0, "cannot move aside to %s: %s", to, strerror(errno));
}

int db_recover(const char *path, db_health *was, int *moved, char *aside, size_t n, sp_err *e)
{
    char def[4096], detail[256];
    *moved = 0;
    if (n) aside[0] = '\0';
    if (!path) {
        if (db_path_default(def, sizeof def, e)) return -1;
        path = def;
    }
    if (db_check_file(path, was, detail, sizeof detail, e)) return -1;
    if (*was == DB_HEALTH_NEWER) return fail_health(path, *was, detail, e);
    if (*was != DB_HEALTH_CORRUPT && *was != DB_HEALTH_FOREIGN) return 0;

    char stamp[32], base[4200], side[4300], from[4300];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(base, sizeof base, "%s.corrupt-%s", path, stamp);
    /* Never overwrite an earlier aside file (two recoveries in one second). */
    snprintf(side, sizeof side, "%s", base);
    struct stat st;
    for (int i = 2; lstat(side, &st) == 0; i++) snprintf(side, sizeof side, "%s.%d", base, i);
    if (move_if_there(path, side, e)) return -1;
    /* The -wal and -shm files belong to the bad file; SQLite finds them by
     * name, so they keep the pairing under the new name. */
    static const char *const suffixes[] = { "-wal", "-shm", "-journal" };
    for (int i = 0; i < 3; i++) {
        char to[4400];
        snprintf(from, sizeof from, "%s%s", path, suffixes[i]);
        snprintf(to, sizeof to, "%s%s", side, suffixes[i]);
        if (move_if_there(from, to, e)) return -1;
    }
    *moved = 1;
    snprintf(aside, n, "%s", side);
    db *d;
    if (db_open(path, 0, &d, e)) return -1;
    db_close(d);
    return 0;
}
