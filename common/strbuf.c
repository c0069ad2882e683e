#include "common/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void grow(strbuf *sb, size_t extra)
{
    if (sb->len + extra + 1 <= sb->cap) return;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *p = realloc(sb->buf, cap);
    if (!p) { fputs("spattn: out of memory\n", stderr); abort(); }
    sb->buf = p;
    sb->cap = cap;
}

void sb_init(strbuf *sb) { sb->buf = NULL; sb->len = sb->cap = 0; grow(sb, 0); sb->buf[0] = '\0'; }
void sb_free(strbuf *sb) { free(sb->buf); sb->buf = NULL; sb->len = sb->cap = 0; }
void sb_reset(strbuf *sb) { if (!sb->buf) grow(sb, 0); sb->len = 0; sb->buf[0] = '\0'; }

void sb_add(strbuf *sb, const void *data, size_t n)
{
    grow(sb, n);
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
    if (n < 0) return;
    grow(sb, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

char *sb_detach(strbuf *sb, size_t *len)
{
    if (!sb->buf) grow(sb, 0);
    char *p = sb->buf;
    if (len) *len = sb->len;
    sb->buf = NULL;
    sb->len = sb->cap = 0;
    return p;
}
