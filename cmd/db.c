/* spattn db: inspect, export, import or repair the tuning database.
 *
 *     spattn db list|show|export|import|clear|path|recover [options] [ARG]
 *
 * Each subcommand is a function below with its own option table; the
 * database itself is tuning_db/db.h.  Reading subcommands (list, show,
 * export, path) open the file read-only and never create it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmd/cmd.h"
#include "common/fileio.h"
#include "common/json.h"
#include "common/mem.h"
#include "common/strbuf.h"
#include "common/text.h"
#include "tuning_db/db.h"

/* Every option of every subcommand; each subcommand's table names the ones it takes. */
static struct {
    const char *db;
    int json;
    const char *gpu, *kind, *pattern, *signature;
    const char *output;
} o;

#define OPT_DB     OPT_STRING(0, "db", &o.db, "FILE", "the tuning database (default: $SPATTN_DB, else $XDG_CACHE_HOME/spattn/tune.db)")
#define OPT_JSON   OPT_BOOL(0, "json", &o.json, "print JSON (rows: one object per line)")
#define OPT_FILTERS                                                                                      \
    OPT_STRING(0, "gpu", &o.gpu, "NAME", "only rows whose GPU name contains NAME (case-insensitive)"),   \
    OPT_STRING(0, "kind", &o.kind, "KIND", "only rows of this kind: fwd, bwd, bwd-det or dec (decode)"), \
    OPT_STRING(0, "pattern", &o.pattern, "NAME", "only rows of this pattern (spattn, dense, custom, ...)"), \
    OPT_STRING(0, "signature", &o.signature, "SIG", "only rows of this spec signature")

static const opt_def list_opts[] = { OPT_DB, OPT_JSON, OPT_FILTERS, OPT_END() };
static const opt_def show_opts[] = { OPT_DB, OPT_JSON, OPT_FILTERS, OPT_END() };
static const opt_def export_opts[] = {
    OPT_DB, OPT_FILTERS, OPT_STRING('o', "output", &o.output, "FILE", "write to FILE (atomically) instead of stdout"),
    OPT_END(),
};
static const opt_def plain_opts[] = { OPT_DB, OPT_JSON, OPT_END() };

typedef struct {
    opt_cmd cmd;
    const opt_def *opts;
    int (*fn)(const opt_pos *pos, sp_err *e);
} subcommand;

static int sub_list(const opt_pos *pos, sp_err *e);
static int sub_show(const opt_pos *pos, sp_err *e);
static int sub_export(const opt_pos *pos, sp_err *e);
static int sub_import(const opt_pos *pos, sp_err *e);
static int sub_clear(const opt_pos *pos, sp_err *e);
static int sub_path(const opt_pos *pos, sp_err *e);
static int sub_recover(const opt_pos *pos, sp_err *e);

static const subcommand subs[] = {
    { { "db list", "spattn db list [--db FILE] [--json] [filters]", "list tuned configs as a table", 0, 0 },
      list_opts, sub_list },
    { { "db show", "spattn db show [ID] [--db FILE] [--json] [filters]", "show every field of one row, or of the matching rows", 0, 1 },
      show_opts, sub_show },
    { { "db export", "spattn db export [-o FILE] [--db FILE] [filters]", "write rows as JSON lines", 0, 0 },
      export_opts, sub_export },
    { { "db import", "spattn db import FILE|- [--db FILE] [--json]", "add JSON lines from FILE (- for stdin), replacing rows with the same key", 1, 1 },
      plain_opts, sub_import },
    { { "db clear", "spattn db clear [--db FILE] [--json]", "remove every row", 0, 0 },
      plain_opts, sub_clear },
    { { "db path", "spattn db path [--db FILE] [--json]", "print the database path", 0, 0 },
      plain_opts, sub_path },
    { { "db recover", "spattn db recover [--db FILE] [--json]", "move a damaged database aside and start a fresh one", 0, 0 },
      plain_opts, sub_recover },
};
#define N_SUBS (int)(sizeof subs / sizeof subs[0])

/* `spattn db --help`: every subcommand's usage, then the union of their options. */
static void db_help(FILE *f)
{
    fprintf(f, "usage: spattn db list|show|export|import|clear|path|recover [options] [ARG]\n\n");
    fprintf(f, "inspect, export, import or repair the tuning database\n\nsubcommands:\n");
    for (int i = 0; i < N_SUBS; i++) fprintf(f, "  %-10s %s\n", subs[i].cmd.name + 3, subs[i].cmd.summary);
    fprintf(f, "\noptions:\n");
    const opt_def *seen[32];
    int nseen = 0;
    for (int i = 0; i < N_SUBS; i++)
        for (const opt_def *d = subs[i].opts; d->kind != OPTK_END; d++) {
            int dup = 0;
            for (int k = 0; k < nseen; k++) dup |= strcmp(seen[k]->long_name, d->long_name) == 0;
            if (dup || nseen == 32) continue;
            seen[nseen++] = d;
            char left[80], short_part[8] = "    ";
            if (d->short_name) snprintf(short_part, sizeof short_part, "-%c, ", d->short_name);
            snprintf(left, sizeof left, "%s--%s%s%s", short_part, d->long_name, d->argname ? " " : "",
                     d->argname ? d->argname : "");
            fprintf(f, "  %-28s %s\n", left, d->help);
        }
    fprintf(f, "  %-28s %s\n", "-h, --help", "show this help and exit");
    fprintf(f, "\nexit status: 0 ok; 1 import skipped bad lines, or show found no row;\n"
               "2 usage error, or the file is not a usable tuning database.  See spattn-db(1).\n");
}

int cmd_db(int argc, char **argv, sp_err *e)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        db_help(stdout);
        return SP_EXIT_OK;
    }
    if (argc < 2) {
        sp_fail(e, SP_EXIT_USAGE, "db: missing subcommand");
        sp_hint(e, "usage: spattn db list|show|export|import|clear|path|recover [options]");
        return SP_EXIT_USAGE;
    }
    for (int i = 0; i < N_SUBS; i++) {
        if (strcmp(argv[1], subs[i].cmd.name + 3) != 0) continue;
        memset(&o, 0, sizeof o);
        opt_pos pos;
        int rc = opts_parse(&subs[i].cmd, subs[i].opts, argc - 1, argv + 1, &pos, e);
        if (rc > 0) return SP_EXIT_OK;  /* --help */
        if (rc < 0) return SP_EXIT_USAGE;
        if (o.kind && strcmp(o.kind, "fwd") != 0 && strcmp(o.kind, "bwd") != 0 && strcmp(o.kind, "bwd-det") != 0 &&
            strcmp(o.kind, "dec") != 0) {
            sp_fail(e, SP_EXIT_USAGE, "--kind: expected fwd, bwd, bwd-det or dec, got '%s'", o.kind);
            return SP_EXIT_USAGE;
        }
        sp_pattern_kind pk;
        if (o.pattern && sp_pattern_from_name(o.pattern, &pk)) {
            sp_fail(e, SP_EXIT_USAGE, "--pattern: '%s' is not dense, local, spattn, exclusive, gapped or custom",
                    o.pattern);
            return SP_EXIT_USAGE;
        }
        return subs[i].fn(&pos, e);
    }
    sp_fail(e, SP_EXIT_USAGE, "db: unknown subcommand '%s'", argv[1]);
    sp_hint(e, "subcommands: list, show, export, import, clear, path, recover");
    return SP_EXIT_USAGE;
}

/* ---- shared pieces ---------------------------------------------------------- */

static int open_db(int readonly, db **d, sp_err *e)
{
    return db_open(o.db, readonly, d, e) ? (e->code ? e->code : SP_EXIT_FAIL) : 0;
}

static db_filter filter_from_options(void)
{
    db_filter f = { 0 };
    f.gpu = o.gpu;
    f.kind = o.kind;
    f.pattern = o.pattern;
    f.signature = o.signature;
    return f;
}

/* The matching rows, in db_list's order (caller frees *rows). */
typedef struct { db_row *rows; int n, cap; } row_vec;

static int collect(void *ctx, const db_row *r)
{
    row_vec *v = ctx;
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        db_row *g = realloc(v->rows, (size_t)v->cap * sizeof *g);
        if (!g) { perror("spattn"); exit(SP_EXIT_FAIL); }
        v->rows = g;
    }
    v->rows[v->n++] = *r;
    return 0;
}

/* Print rows as JSON lines with their ids (the `--json` form of list and show). */
static int print_json_rows(db *d, const row_vec *v, sp_err *e)
{
    strbuf sb = STRBUF_INIT;
    for (int i = 0; i < v->n; i++)
        if (db_row_json(d, &v->rows[i], 1, &sb, e)) { sb_free(&sb); return e->code; }
    fwrite(sb.buf ? sb.buf : "", 1, sb.len, stdout);
    sb_free(&sb);
    return SP_EXIT_OK;
}

/* The row's text for a terminal: control bytes (an escape sequence in a
 * GPU name would drive the terminal) and bytes that are not UTF-8 are
 * shown as \xNN. */
#define PRINTABLE(field) do { char t_[512]; snprintf(field, sizeof field, "%s", sp_printable(field, t_, sizeof field)); } while (0)
static void printable_row(db_row *r)
{
    db_key *k = &r->key;
    PRINTABLE(k->gpu_name);
    PRINTABLE(k->spattn_version);
    PRINTABLE(k->kind);
    PRINTABLE(k->dtype);
    PRINTABLE(k->pattern);
    PRINTABLE(k->bands_hash);
    PRINTABLE(r->tile);
    PRINTABLE(r->created_at);
}

/* ---- list ----------------------------------------------------------------------- */

static int sub_list(const opt_pos *pos, sp_err *e)
{
    (void)pos;
    db *d;
    int rc = open_db(1, &d, e);
    if (rc) return rc;
    db_filter f = filter_from_options();
    row_vec v = { 0 };
    if (db_list(d, &f, collect, &v, e)) { db_close(d); free(v.rows); return e->code; }
    if (o.json) {
        rc = print_json_rows(d, &v, e);
    } else if (v.n == 0) {
        fprintf(stderr, "spattn: no tuned configs in %s\n", db_file(d));
    } else {
        /* Column widths from the data: GPU names and signatures vary a lot. */
        int wg = 3, wk = 4, ws = 4, wt = 4;
        char sig[256];
        for (int i = 0; i < v.n; i++) printable_row(&v.rows[i]);
        for (int i = 0; i < v.n; i++) {
            db_signature(&v.rows[i].key, sig, sizeof sig);
            int lg = (int)strlen(v.rows[i].key.gpu_name), ls = (int)strlen(sig), lt = (int)strlen(v.rows[i].tile);
            int lk = (int)strlen(v.rows[i].key.kind);
            if (lg > wg) wg = lg;
            if (lk > wk) wk = lk;
            if (ls > ws) ws = ls;
            if (lt > wt) wt = lt;
        }
        printf("%4s  %-*s  %-*s  %-*s  %5s  %7s  %4s  %-*s  %9s  %7s  %s\n", "ID", wg, "GPU", wk, "KIND", ws, "SPEC",
               "BATCH", "BUCKET", "T", wt, "TILE", "MS", "TF/S", "WHEN");
        for (int i = 0; i < v.n; i++) {
            const db_row *r = &v.rows[i];
            db_signature(&r->key, sig, sizeof sig);
            /* "2026-11-25T10:00:00Z" -> "2026-11-25 10:00" */
            char when[32];
            snprintf(when, sizeof when, "%.10s %.5s", r->created_at, r->created_at + (strlen(r->created_at) > 11 ? 11 : 0));
            char T[16] = "-";   /* decode's new tokens */
            if (r->key.new_tokens > 0) snprintf(T, sizeof T, "%d", r->key.new_tokens);
            printf("%4lld  %-*s  %-*s  %-*s  %5lld  %7lld  %4s  %-*s  %9.4f  %7.1f  %s\n", (long long)r->id, wg,
                   r->key.gpu_name, wk, r->key.kind, ws, sig, (long long)r->key.batch, (long long)r->key.seq_bucket, T,
                   wt, r->tile, r->median_ms, r->eff_tflops, when);
        }
    }
    free(v.rows);
    db_close(d);
    return rc;
}

/* ---- show ----------------------------------------------------------------------- */

static void print_row(const db_row *r)
{
    const db_key *k = &r->key;
    char sig[256];
    db_signature(k, sig, sizeof sig);
    printf("row %lld\n", (long long)r->id);
    printf("  gpu_name        %s\n", k->gpu_name);
    printf("  sm              %d\n", k->sm);
    printf("  sm_count        %d\n", k->sm_count);
    printf("  driver_version  %d\n", k->driver_version);
    printf("  nvrtc_version   %d\n", k->nvrtc_version);
    printf("  spattn_version  %s\n", k->spattn_version);
    printf("  kind            %s\n", k->kind);
    printf("  signature       %s\n", sig);
    printf("  heads           %d\n", k->heads);
    printf("  kv_heads        %d\n", k->kv_heads);
    printf("  head_dim        %d\n", k->head_dim);
    printf("  dtype           %s\n", k->dtype);
    printf("  pattern         %s\n", k->pattern);
    if (k->bands_hash[0]) printf("  bands_hash      %s\n", k->bands_hash);
    printf("  band_basis      %lld%s\n", (long long)k->band_basis, k->band_basis ? "" : " (L = N)");
    printf("  batch           %lld\n", (long long)k->batch);
    printf("  seq_bucket      %lld\n", (long long)k->seq_bucket);
    if (k->new_tokens) printf("  new_tokens      %d\n", k->new_tokens);
    printf("  tile            %s\n", r->tile);
    printf("  median_ms       %.6g\n", r->median_ms);
    printf("  eff_tflops      %.6g\n", r->eff_tflops);
    printf("  candidates      %d\n", r->candidates);
    printf("  created_at      %s\n", r->created_at);
}

static int sub_show(const opt_pos *pos, sp_err *e)
{
    db_filter f = filter_from_options();
    if (pos->n == 1) {
        int64_t id;
        if (sp_parse_i64(pos->v[0], 1, INT64_MAX, "row id", &id, e)) return SP_EXIT_USAGE;
        f.id = id;
    }
    db *d;
    int rc = open_db(1, &d, e);
    if (rc) return rc;
    row_vec v = { 0 };
    if (db_list(d, &f, collect, &v, e)) { db_close(d); free(v.rows); return e->code; }
    if (v.n == 0) {
        if (f.id) sp_fail_at(e, SP_EXIT_FAIL, db_file(d), 0, 0, "no row with id %lld", (long long)f.id);
        else sp_fail_at(e, SP_EXIT_FAIL, db_file(d), 0, 0, "no matching rows");
        rc = SP_EXIT_FAIL;
    } else if (o.json) {
        rc = print_json_rows(d, &v, e);
    } else {
        for (int i = 0; i < v.n; i++) {
            if (i) putchar('\n');
            db_row r = v.rows[i];
            printable_row(&r);
            print_row(&r);
        }
    }
    free(v.rows);
    db_close(d);
    return rc;
}

/* ---- export / import ----------------------------------------------------------- */

static int sub_export(const opt_pos *pos, sp_err *e)
{
    (void)pos;
    sp_out out;
    const char *what = "-o";
    if (cmd_check_outputs(&out, &o.output, &what, 1, e)) return SP_EXIT_USAGE;
    db *d;
    int rc = open_db(1, &d, e);
    if (rc) return rc;
    db_filter f = filter_from_options();
    strbuf sb = STRBUF_INIT;
    int n = 0;
    if (db_export_jsonl(d, &f, &sb, &n, e)) {
        rc = e->code;
    } else if (o.output) {
        if (sp_out_stage(&out, sb.buf ? sb.buf : "", sb.len, e) || sp_outs_commit(&out, 1, e)) rc = e->code;
        else fprintf(stderr, "spattn: exported %d row%s to %s\n", n, n == 1 ? "" : "s", o.output);
    } else {
        fwrite(sb.buf ? sb.buf : "", 1, sb.len, stdout);
    }
    sb_free(&sb);
    db_close(d);
    return rc;
}

/* Memory an import of `bytes` of text needs: the text, and the rows parsed
 * from it (a db_row per line; a valid line is at least a few hundred bytes,
 * so rows take at most about twice the text). */
static uint64_t import_bytes(uint64_t bytes)
{
    return sp_bytes_mul(bytes, 3);
}

/* The import's input, read as a stream so that endless or huge input is
 * refused early: a line over DB_IMPORT_MAX_LINE bytes is exit 2 naming its
 * number (`spattn db import - </dev/zero` stops after 64 KiB), and the
 * text read so far must leave room for its rows (checked every 16 MiB). */
static int read_import(FILE *f, const char *name, char **data, size_t *len, sp_err *e)
{
    strbuf sb = STRBUF_INIT;
    char buf[65536];
    size_t got, line_len = 0, next_check = 0;
    int lineno = 1;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got; i++) {
            if (buf[i] == '\n') { lineno++; line_len = 0; continue; }
            if (++line_len > DB_IMPORT_MAX_LINE) {
                sb_free(&sb);
                return sp_fail_at(e, SP_EXIT_USAGE, name, lineno, 0, "line %d is longer than %d bytes", lineno,
                                  DB_IMPORT_MAX_LINE);
            }
        }
        sb_add(&sb, buf, got);
        if (sb.len >= next_check) {
            if (sp_mem_check(import_bytes(sb.len), "the import", e)) { sb_free(&sb); return -1; }
            next_check = sb.len + ((size_t)16 << 20);
        }
    }
    if (ferror(f)) { sb_free(&sb); return sp_fail_at(e, SP_EXIT_USAGE, name, 0, 0, "read error"); }
    sb_add(&sb, "", 0);  /* allocate even when empty */
    *data = sb_detach(&sb, len);
    return *data ? 0 : sp_fail_at(e, SP_EXIT_FAIL, name, 0, 0, "out of memory reading the input");
}

typedef struct { const char *file; } import_ctx;

static void report_bad(void *ctx, int line, const char *msg)
{
    const import_ctx *x = ctx;
    fprintf(stderr, "%s:%d: error: %s\n", x->file, line, msg);
}

static int sub_import(const opt_pos *pos, sp_err *e)
{
    const char *file = pos->v[0];
    int from_stdin = strcmp(file, "-") == 0;
    FILE *f = from_stdin ? stdin : sp_fopen_input(file, e);
    if (!f) return SP_EXIT_USAGE;
    struct stat st;
    /* A regular file's size says up front whether its rows fit. */
    if (!from_stdin && fstat(fileno(f), &st) == 0 &&
        sp_mem_check(import_bytes((uint64_t)st.st_size), "importing this file", e)) {
        fclose(f);
        return SP_EXIT_USAGE;
    }
    char *text;
    size_t len;
    int bad = read_import(f, from_stdin ? "<stdin>" : file, &text, &len, e);
    if (!from_stdin) fclose(f);
    if (bad) return SP_EXIT_USAGE;
    db *d;
    int rc = open_db(0, &d, e);
    if (rc) { free(text); return rc; }
    import_ctx x = { from_stdin ? "<stdin>" : file };
    int imported = 0, rejected = 0;
    if (db_import_jsonl(d, text, len, report_bad, &x, &imported, &rejected, e)) {
        rc = e->code;
    } else {
        fprintf(stderr, "spattn: imported %d row%s into %s", imported, imported == 1 ? "" : "s", db_file(d));
        if (rejected) fprintf(stderr, "; skipped %d bad line%s", rejected, rejected == 1 ? "" : "s");
        fputc('\n', stderr);
        if (o.json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj(&w, NULL);
            jw_str(&w, "path", db_file(d));
            jw_int(&w, "imported", imported);
            jw_int(&w, "rejected", rejected);
            jw_finish(&w);
        }
        rc = rejected ? SP_EXIT_FAIL : SP_EXIT_OK;
    }
    free(text);
    db_close(d);
    return rc;
}

/* ---- clear / path / recover ----------------------------------------------------- */

static int sub_clear(const opt_pos *pos, sp_err *e)
{
    (void)pos;
    db *d;
    int rc = open_db(0, &d, e);
    if (rc) return rc;
    int removed = 0;
    if (db_clear(d, &removed, e)) {
        rc = e->code;
    } else if (o.json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "path", db_file(d));
        jw_int(&w, "removed", removed);
        jw_finish(&w);
    } else {
        printf("removed %d row%s from %s\n", removed, removed == 1 ? "" : "s", db_file(d));
    }
    db_close(d);
    return rc;
}

static int sub_path(const opt_pos *pos, sp_err *e)
{
    (void)pos;
    char path[4096];
    if (o.db) snprintf(path, sizeof path, "%s", o.db);
    else if (db_path_default(path, sizeof path, e)) return e->code;
    if (!o.json) {
        printf("%s\n", path);
        return SP_EXIT_OK;
    }
    db_health h;
    char detail[256];
    if (db_check_file(path, &h, detail, sizeof detail, e)) return e->code;
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w, NULL);
    jw_str(&w, "path", path);
    jw_str(&w, "state", db_health_name(h));
    jw_str(&w, "detail", detail[0] ? detail : NULL);
    jw_int(&w, "schema_version", DB_SCHEMA_VERSION);
    jw_finish(&w);
    return SP_EXIT_OK;
}

static int sub_recover(const opt_pos *pos, sp_err *e)
{
    (void)pos;
    char path[4096], aside[4400];
    if (o.db) snprintf(path, sizeof path, "%s", o.db);
    else if (db_path_default(path, sizeof path, e)) return e->code;
    db_health was;
    int moved = 0;
    if (db_recover(path, &was, &moved, aside, sizeof aside, e)) return e->code;
    if (o.json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "path", path);
        jw_str(&w, "state", db_health_name(was));
        jw_str(&w, "moved_to", moved ? aside : NULL);
        jw_finish(&w);
    } else if (moved) {
        printf("%s: %s; moved it aside to %s and created a fresh database\n", path,
               was == DB_HEALTH_FOREIGN ? "an SQLite database of another program" : "damaged, not a usable database",
               aside);
    } else if (was == DB_HEALTH_MISSING) {
        printf("%s: no database yet, nothing to do\n", path);
    } else {
        printf("%s: database is fine, nothing to do\n", path);
    }
    return SP_EXIT_OK;
}
