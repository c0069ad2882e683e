/* Text from files and databases shown to people or written as JSON: it may
 * hold control bytes (a terminal would obey them) or bytes that are not
 * UTF-8 (a JSON reader would reject the line). */
#ifndef SPATTN_TEXT_H
#define SPATTN_TEXT_H

#include <stddef.h>

#include "common/strbuf.h"

/* Bytes in the valid UTF-8 sequence at p (1 to 4; at most n), or 0 if the
 * byte at p does not start one (overlong forms and surrogates count as
 * invalid, as RFC 3629 says). */
size_t sp_utf8_seq(const unsigned char *p, size_t n);
/* s for a terminal, into out (cap bytes, always NUL-terminated, cut
 * short if need be): control bytes and bytes that are not UTF-8 become
 * \xNN; everything else is copied.  Returns out. */
const char *sp_printable(const char *s, char *out, size_t cap);
/* Replace every byte of sb from offset `from` on that is not UTF-8 with
 * the JSON escape \ufffd (U+FFFD, the replacement character); for JSON text
 * whose strings came from outside.  Returns how many bytes were replaced. */
int sp_json_utf8_repair(strbuf *sb, size_t from);

#endif
