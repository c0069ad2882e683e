/* The tuning database: the best tile config found per GPU, software stack,
 * spec and shape bucket, kept in one SQLite file (default
 * $XDG_CACHE_HOME/spattn/tune.db) so every later run, check and bench uses it.
 *
 *     db *d;
 *     if (db_open(NULL, 0, &d, e)) return -1;         // creates or migrates
 *     db_key k = {...};  k.seq_bucket = db_seq_bucket(n);
 *     int have; db_has_current(d, &k, &have, e);      // tune: skip unless --force
 *     db_put_rows(d, rows, nrows, e);                 // one transaction
 *     db_lookup_nearest(d, &k, &row, &found, e);      // run/check/bench
 *     db_close(d);
 *
 * Safety:
 * - Every write is one SQLite transaction in WAL mode: a process killed
 *   (Ctrl-C, OOM, power loss) in the middle of db_put_rows loses only that
 *   batch; the rows committed before it stay, and the file stays consistent.
 * - Writers wait for each other (busy timeout DB_BUSY_TIMEOUT_MS) rather than
 *   fail, so two `spattn tune` can share one file.
 * - A file that is not a spattn tuning database (garbage, truncated, another
 *   program's SQLite file) or has a newer schema than this spattn knows is
 *   refused at open with code SP_EXIT_USAGE and left untouched;
 *   db_recover moves a bad one aside.
 * A db handle belongs to one thread. */
#ifndef SPATTN_DB_H
#define SPATTN_DB_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/spec.h"
#include "common/err.h"
#include "common/strbuf.h"

#define DB_SCHEMA_VERSION   3        /* PRAGMA user_version this spattn writes */
#define DB_APPLICATION_ID   0x7370746e /* PRAGMA application_id: "sptn" */
#define DB_BUSY_TIMEOUT_MS  10000
#define DB_IMPORT_MAX_LINE  65536    /* bytes in one JSON line of an import (a row is ~600) */
#define DB_MAX_NEW_TOKENS   4096     /* the largest new_tokens of a decode row (run --new-tokens' bound) */

typedef struct db db;

/* What a result is valid for.  Text fields are NUL-terminated; all of them
 * take part in the key, and a tuned row is used only where every field but
 * the shape (batch, seq_bucket, new_tokens) matches (see db_lookup_nearest). */
typedef struct db_key {
    /* The GPU and software stack the timing was taken on. */
    char gpu_name[128];       /* sp_gpu.name */
    int sm;                   /* 10 * major + minor: 90 */
    int sm_count;
    int driver_version;       /* cuDriverGetVersion: 13000 */
    int nvrtc_version;        /* nvrtc_version(): 13000 */
    char spattn_version[32];  /* SPATTN_VERSION */
    char kind[8];             /* "fwd", "bwd", "bwd-det" (the backward's deterministic mode, tuned
                               * on its own: runtime/config.h) or "dec" (decoding from a KV cache) */
    /* The spec signature: what the generated kernel depends on. */
    int heads, kv_heads, head_dim;
    char dtype[8];            /* sp_dtype_name(): "bf16" or "fp16" */
    char pattern[16];         /* sp_pattern_name(): "dense" "local" "spattn" "exclusive" "gapped" "custom" */
    char bands_hash[20];      /* pattern "custom": db_bands_hash() of its bands; otherwise "" */
    int64_t band_basis;       /* sp_pattern.band_basis: 0 means L = N */
    /* The shape bucket. */
    int64_t batch;            /* >= 1 */
    int64_t seq_bucket;       /* db_seq_bucket(N): N rounded up to a power of two (decode: of the
                               * cache's length) */
    int new_tokens;           /* decode: T, the new tokens per sequence of a step (>= 1); fwd, bwd: 0 */
} db_key;

/* One tuned result. */
typedef struct db_row {
    int64_t id;               /* row id in the database it came from; ignored on put */
    db_key key;
    char tile[64];            /* kcfg_tile_string(): "128x64:w8:s2" (may grow ":..." fields; a
                               * decode tile ends in its splits, "16x64:w4:s3:k2") */
    int bm, bn, warps, stages;/* the same choices as columns, for queries */
    double median_ms;         /* median kernel time of the winner */
    double eff_tflops;        /* effective TFLOP/s: allowed pairs only (decode: of its T rows) */
    int candidates;           /* configs timed for this key */
    char created_at[32];      /* UTC ISO-8601 "2026-11-25T10:00:00Z"; "" on put: now */
} db_row;

/* ---- keys ---------------------------------------------------------------- */

/* The shape bucket of a sequence length: the smallest power of two >= n
 * (n <= 1 gives 1). */
int64_t db_seq_bucket(int64_t n);
/* The canonical spec signature of k, e.g. "spattn/h16kv16/d128/bf16/L=N",
 * "custom.1f2e3d4c5b6a7988/h8kv2/d64/fp16/L=4096".  Stored beside the
 * separate columns; identical spec parts give identical strings. */
void db_signature(const db_key *k, char *buf, size_t n);
/* A stable hash of custom bands (heads lists) as 16 lowercase hex digits, for
 * db_key.bands_hash: two custom specs share tuned rows only if their bands are
 * identical. */
void db_bands_hash(const sp_band_list *bands, int heads, char out[20]);
/* Check a row's fields (vocabulary, ranges, tile string consistent with
 * bm/bn/warps/stages, created_at form if set).  0 if valid; else -1 and a
 * one-line reason in why ("bm must be a multiple of 16 in [16, 512], got 24"). */
int db_validate_row(const db_row *r, char *why, size_t n);

/* ---- opening --------------------------------------------------------------- */

/* The default database path: $SPATTN_DB, else $XDG_CACHE_HOME/spattn/tune.db,
 * else $HOME/.cache/spattn/tune.db.  -1 (SP_EXIT_USAGE) if none can be formed. */
int db_path_default(char *buf, size_t n, sp_err *e);

/* Open the database at path (NULL: db_path_default).
 * Read-write (readonly = 0): creates the file and its parent directories if
 * needed, migrates an older schema in one transaction, sets WAL.
 * Read-only: never creates the file or changes its content (writes through
 * the handle fail); a missing or empty file reads as an empty database.
 * Errors, all with e->file = the path and the file left as it was:
 *   SP_EXIT_USAGE  not a spattn tuning database (garbage, truncated, corrupt,
 *                  another program's database), or a newer schema version;
 *   SP_EXIT_FAIL   I/O (cannot create the directory, locked past the timeout). */
int db_open(const char *path, int readonly, db **out, sp_err *e);
/* Close (NULL is fine). */
void db_close(db *d);
/* The file d was opened on. */
const char *db_file(const db *d);

/* ---- the tuner and the commands that use tuned configs ------------------------ */

/* Insert or replace (same key: the new values win, the row id stays) rows
 * [0, n) in one transaction: all are written or none.  Every row is checked
 * with db_validate_row first; a bad one fails the batch (SP_EXIT_USAGE,
 * naming its index).  An empty created_at is stored as now. */
int db_put_rows(db *d, const db_row *rows, int n, sp_err *e);
/* The row with exactly this key, if any (*found = 0 otherwise). */
int db_get(db *d, const db_key *key, db_row *out, int *found, sp_err *e);
/* *yes = 1 if a row exists for exactly this key.  Because the GPU, driver,
 * NVRTC and spattn versions are part of the key, such a row is up to date:
 * `tune` skips the key unless --force. */
int db_has_current(db *d, const db_key *key, int *yes, sp_err *e);
/* The tuned row to use for key: among rows with the same GPU (name, sm, SM
 * count), driver, NVRTC and spattn versions, kind and spec signature, pick
 *   0. decode: the same new_tokens if any row has it, else the smallest
 *      |log2(new_tokens / key->new_tokens)| (fwd and bwd rows all have 0);
 *   1. the same batch if any row has it, else every batch competes;
 *   2. the smallest |log2(seq_bucket / key->seq_bucket)|;
 *   3. then the smallest |log2(batch / key->batch)|;
 *   4. ties: the larger seq_bucket, then the larger batch (long sequences are
 *      where tile choice matters most), then the newest row.
 * *found = 0 when no row qualifies (the caller uses its heuristic). */
int db_lookup_nearest(db *d, const db_key *key, db_row *out, int *found, sp_err *e);

/* ---- listing, export, import ------------------------------------------------ */

/* Which rows db_list and db_export_jsonl visit; zero / NULL fields match all. */
typedef struct db_filter {
    int64_t id;               /* exactly this row */
    const char *gpu;          /* GPU name contains this, case-insensitive */
    const char *kind;         /* "fwd" | "bwd" | "bwd-det" | "dec" */
    const char *pattern;      /* pattern name */
    const char *signature;    /* exact spec signature */
} db_filter;

/* Called once per row; a non-zero return stops the walk (db_list returns 0). */
typedef int (*db_row_fn)(void *ctx, const db_row *row);
/* Visit matching rows in a stable order: GPU, kind, signature, batch,
 * seq_bucket, id. */
int db_list(db *d, const db_filter *f, db_row_fn fn, void *ctx, sp_err *e);
/* Append row r as one JSON object and '\n' to out: the fields of db_key and
 * db_row under their C names, plus "signature", plus "id" if with_id.  This is
 * the line format of export, import and `db list --json`.  Numbers are
 * written by SQLite (reals with 15 significant digits), so export -> import
 * -> export gives identical bytes. */
int db_row_json(db *d, const db_row *r, int with_id, strbuf *out, sp_err *e);
/* Append every matching row to out as JSON lines (without ids: ids are
 * local to one file); *count = rows written. */
int db_export_jsonl(db *d, const db_filter *f, strbuf *out, int *count, sp_err *e);

/* Called for each rejected line of an import: 1-based line number and a
 * reason such as "missing field 'sm'" or "invalid JSON". */
typedef void (*db_bad_line_fn)(void *ctx, int line, const char *msg);
/* Import JSON lines (text[0, len), the db_row_json format; "id" and
 * "signature" are optional, other unknown fields are ignored, blank lines
 * skipped).  JSON is parsed by SQLite's JSON functions.  Each line is
 * validated alone; bad lines go to bad() and are skipped, good ones are
 * upserted together in one transaction.  *imported and *rejected count
 * lines.  Returns -1 only if the database write itself fails. */
int db_import_jsonl(db *d, const char *text, size_t len, db_bad_line_fn bad, void *ctx,
                    int *imported, int *rejected, sp_err *e);
/* Delete every row in one transaction; *removed = how many. */
int db_clear(db *d, int *removed, sp_err *e);

/* ---- health and recovery ---------------------------------------------------- */

typedef enum {
    DB_HEALTH_OK,       /* a spattn tuning database this spattn can use */
    DB_HEALTH_MISSING,  /* no file */
    DB_HEALTH_EMPTY,    /* an empty file or an empty SQLite database: fine, initialised on first write */
    DB_HEALTH_CORRUPT,  /* not an SQLite database, truncated, or fails quick_check */
    DB_HEALTH_FOREIGN,  /* a valid SQLite database of another program */
    DB_HEALTH_NEWER,    /* a spattn tuning database with a newer schema: never touched */
} db_health;

/* Name of a health state for messages: "ok", "corrupt", ... */
const char *db_health_name(db_health h);
/* Inspect the file at path without changing it.  *h is the state; detail
 * gets a short explanation for the bad states ("file is not a database",
 * "schema version 7, this spattn knows 1").  -1 only if the file cannot be
 * examined at all (permissions, a directory). */
int db_check_file(const char *path, db_health *h, char *detail, size_t n, sp_err *e);
/* Repair the file at path (NULL: default).  OK, EMPTY and MISSING: nothing
 * is done (*moved = 0).  CORRUPT and FOREIGN: the file and its -wal/-shm are
 * renamed to PATH.corrupt-YYYYMMDDTHHMMSSZ (aside gets that name) and a fresh
 * database is created (*moved = 1).  NEWER: refused, SP_EXIT_USAGE, nothing
 * touched.  *was gets the state found. */
int db_recover(const char *path, db_health *was, int *moved, char *aside, size_t n, sp_err *e);

#endif
