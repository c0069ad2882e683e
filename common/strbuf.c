#include "common/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char empty[1];   /* buf of a buffer whose first allocation failed */

/* Room for extra more bytes and the NUL; -1 (and oom set) if none. */
static int grow(strbuf *sb, size_t extra)
{
    if (sb->oom) return -1;
    if (extra < SIZE_MAX - sb->len - 1 && sb->len + extra + 1 <= sb->cap) return 0;
    size_t need = extra < SIZE_MAX - sb->len - 1 ? sb->len + extra + 1 : 0;   /* 0: would overflow */
    size_t cap = sb->cap ? sb->cap : 256;
    while (need && cap < need) cap = cap <= SIZE_MAX / 2 ? cap * 2 : need;
    char *p = need ? realloc(sb->cap ? sb->buf : NULL, cap) : NULL;
    if (!p) {
        sb->oom = 1;
        if (!sb->cap) { sb->buf = empty; sb->len = 0; }
        return -1;
    }
    if (!sb->cap) p[0] = '\0';
    sb->buf = p;
    sb->cap = cap;
    return 0;
}

void sb_init(strbuf *sb) { sb->buf = NULL; sb->len = sb->cap = 0; sb->oom = 0; grow(sb, 0); }
void sb_free(strbuf *sb) { if (sb->cap) free(sb->buf); sb->buf = NULL; sb->len = sb->cap = 0; sb->oom = 0; }
void sb_reset(strbuf *sb)
{
    if (!sb->buf) grow(sb, 0);
    sb->len = 0;
    if (sb->cap) sb->buf[0] = '\0';
}

void sb_add(strbuf *sb, const void *data, size_t n)
{
    if (grow(sb, n)) return;
    memcpy(sb->buf + sb->len, data, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void sb_puts(strbuf *sb, const char *s) { sb_add(sb, s, strlen(s)); }

void sb_printf(strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || grow(sb, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

char *sb_detach(strbuf *sb, size_t *len)
{
    if (!sb->buf) grow(sb, 0);
    char *p = sb->oom ? NULL : sb->buf;
    if (sb->oom && sb->cap) free(sb->buf);
    if (len) *len = p ? sb->len : 0;
    sb->buf = NULL;
    sb->len = sb->cap = 0;
    sb->oom = 0;
    return p;
}
