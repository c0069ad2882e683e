/* A small JSON writer for --json output (writing only: parsing JSON is done
 * by SQLite's JSON functions, see tuning_db/).  Calls nest like the document:
 *     jw w; jw_init(&w, stdout);
 *     jw_obj(&w, NULL); jw_str(&w, "pattern", "spattn"); jw_num(&w, "ratio", 0.17);
 *     jw_arr(&w, "heads"); jw_int(&w, NULL, 3); jw_end(&w);
 *     jw_end(&w); jw_finish(&w);        -> one line, then '\n'
 * Keys are ignored (pass NULL) inside arrays. */
#ifndef SPATTN_JSON_H
#define SPATTN_JSON_H

#include <stdint.h>
#include <stdio.h>

#define JW_MAX_DEPTH 32

typedef struct jw {
    FILE *f;
    int   depth;
    int   count[JW_MAX_DEPTH]; /* items written at each level, for commas */
    char  close[JW_MAX_DEPTH]; /* '}' or ']' that ends each open level */
} jw;

void jw_init(jw *w, FILE *f);
void jw_obj(jw *w, const char *key);   /* open an object */
void jw_arr(jw *w, const char *key);   /* open an array */
void jw_end(jw *w);                    /* close the innermost object or array */
void jw_str(jw *w, const char *key, const char *val);  /* NULL val -> null */
void jw_int(jw *w, const char *key, int64_t val);
void jw_num(jw *w, const char *key, double val);       /* NaN/inf -> null */
void jw_bool(jw *w, const char *key, int val);
void jw_null(jw *w, const char *key);
void jw_finish(jw *w);                 /* newline after the top-level value */
/* Write s as a JSON string literal (with quotes) to f. */
void jw_quote(FILE *f, const char *s);

#endif
