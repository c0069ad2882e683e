/* A growable string buffer (after git's strbuf): emitters append generated
 * CUDA source to one, commands build messages in one.  The library never
 * aborts, so an allocation failure is sticky instead: the buffer keeps what
 * it had, later appends do nothing, and sb->oom says so; whoever hands the
 * text on (emit_kernel, say) checks it once at the end. */
#ifndef SPATTN_STRBUF_H
#define SPATTN_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char  *buf;  /* always NUL-terminated once initialised */
    size_t len;
    size_t cap;  /* 0: buf is NULL or the static "" (after a failed first allocation) */
    int    oom;  /* an allocation failed: the text is incomplete */
} strbuf;

#define STRBUF_INIT { 0, 0, 0, 0 }

void sb_init(strbuf *sb);
void sb_free(strbuf *sb);
void sb_reset(strbuf *sb);                         /* len = 0, keeps memory */
void sb_add(strbuf *sb, const void *data, size_t n);
void sb_puts(strbuf *sb, const char *s);
void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *sb_detach(strbuf *sb, size_t *len);          /* caller frees; sb is reset; NULL when out of memory */

#endif
