#include "common/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t sp_utf8_seq(const unsigned char *p, size_t n)
{
    if (n == 0) return 0;
    unsigned c = p[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) { len = 2; min = 0x80; c &= 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; min = 0x800; c &= 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; min = 0x10000; c &= 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    return len;
}

const char *sp_printable(const char *s, char *out, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    while (*p && cap > 0) {
        size_t k = sp_utf8_seq(p, n);
        int ctl = *p < 0x20 || *p == 0x7f;
        if (k == 0 || ctl) {
            if (o + 5 > cap) break;
            snprintf(out + o, 5, "\\x%02x", *p);
            o += 4;
            k = 1;
        } else {
            if (o + k + 1 > cap) break;
            memcpy(out + o, p, k);
            o += k;
        }
        p += k;
        n -= k;
    }
    if (cap > 0) out[o < cap ? o : cap - 1] = '\0';
    return out;
}

int sp_json_utf8_repair(strbuf *sb, size_t from)
{
    int bad = 0;
    for (size_t i = from; i < sb->len; i++)
        if (sp_utf8_seq((const unsigned char *)sb->buf + i, sb->len - i) == 0) bad++;
    if (!bad) return 0;
    strbuf fixed = STRBUF_INIT;
    sb_add(&fixed, sb->buf, from);
    for (size_t i = from; i < sb->len;) {
        size_t k = sp_utf8_seq((const unsigned char *)sb->buf + i, sb->len - i);
        if (k == 0) { sb_puts(&fixed, "\\ufffd"); i++; }
        else { sb_add(&fixed, sb->buf + i, k); i += k; }
    }
    sb_free(sb);
    *sb = fixed;
    return bad;
}
