#include "common/err.h"

#include <string.h>

static void vrecord(sp_err *e, int code, const char *file, int line, int col,
                    const char *fmt, va_list ap)
{
    if (!e) return;
    e->code = code;
    snprintf(e->file, sizeof e->file, "%s", file ? file : "");
    e->line = line;
    e->col = col;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    e->hint[0] = '\0';
}

int sp_fail(sp_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrecord(e, code, NULL, 0, 0, fmt, ap);
    va_end(ap);
    return -1;
}

int sp_fail_at(sp_err *e, int code, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrecord(e, code, file, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

void sp_hint(sp_err *e, const char *fmt, ...)
{
    if (!e) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->hint, sizeof e->hint, fmt, ap);
    va_end(ap);
}

void sp_err_print(const sp_err *e, FILE *f)
{
    if (e->file[0] && e->line > 0)
        fprintf(f, "%s:%d:%d: error: %s\n", e->file, e->line, e->col > 0 ? e->col : 1, e->msg);
    else if (e->file[0])
        fprintf(f, "%s: error: %s\n", e->file, e->msg);
    else
        fprintf(f, "spattn: error: %s\n", e->msg);
    if (e->hint[0]) fprintf(f, "hint: %s\n", e->hint);
}

void sp_err_clear(sp_err *e)
{
    memset(e, 0, sizeof *e);
}
