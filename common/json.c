#include "common/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"

void jw_init(jw *w, FILE *f) { w->f = f; w->depth = 0; w->count[0] = 0; }

void jw_quote(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':  fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else if (*p < 0x80) fputc(*p, f);
            else {
                /* Strings from files and databases may not be UTF-8: such
                 * a byte becomes U+FFFD, so the output stays valid JSON. */
                size_t k = sp_utf8_seq(p, strlen((const char *)p));
                if (k == 0) fputs("\\ufffd", f);
                else { fwrite(p, 1, k, f); p += k - 1; }
            }
        }
    }
    fputc('"', f);
}

/* Comma and key before a value at the current level. */
static void item(jw *w, const char *key)
{
    if (w->count[w->depth]++ > 0) fputc(',', w->f);
    if (key && w->depth > 0) { jw_quote(w->f, key); fputc(':', w->f); }
}

static void open(jw *w, const char *key, char c)
{
    item(w, key);
    fputc(c, w->f);
    if (w->depth + 1 < JW_MAX_DEPTH) w->depth++;
    w->count[w->depth] = 0;
    w->close[w->depth] = c == '{' ? '}' : ']';
}

void jw_obj(jw *w, const char *key) { open(w, key, '{'); }
void jw_arr(jw *w, const char *key) { open(w, key, '['); }

void jw_end(jw *w)
{
    if (w->depth == 0) return;
    fputc(w->close[w->depth], w->f);
    w->depth--;
}

void jw_str(jw *w, const char *key, const char *val)
{
    item(w, key);
    if (val) jw_quote(w->f, val); else fputs("null", w->f);
}

void jw_int(jw *w, const char *key, int64_t val) { item(w, key); fprintf(w->f, "%lld", (long long)val); }

void jw_num(jw *w, const char *key, double val)
{
    item(w, key);
    if (!isfinite(val)) { fputs("null", w->f); return; }
    /* The shortest form that reads back as the same double (9 digits were
     * not always enough for a consumer to redo the arithmetic exactly). */
    char buf[32];
    for (int prec = 9; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, val);
        if (strtod(buf, NULL) == val) break;
    }
    fputs(buf, w->f);
}

void jw_bool(jw *w, const char *key, int val) { item(w, key); fputs(val ? "true" : "false", w->f); }
void jw_null(jw *w, const char *key) { item(w, key); fputs("null", w->f); }
void jw_finish(jw *w) { while (w->depth > 0) jw_end(w); fputc('\n', w->f); }
