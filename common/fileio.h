/* Whole-file reads and atomic writes.  Every file spattn writes goes through
 * sp_write_file_atomic: data goes to a temporary file in the same directory,
 * is flushed, then renamed over the target, so a reader never sees half a
 * file and a crash never destroys the old one. */
#ifndef SPATTN_FILEIO_H
#define SPATTN_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Read a whole file into *data (NUL-terminated, caller frees).  Refuses
 * files over max_bytes (0: no limit).  Errors: code SP_EXIT_USAGE. */
int sp_read_file(const char *path, size_t max_bytes, char **data, size_t *len, sp_err *e);
/* Write len bytes to path atomically (temp file + fsync + rename). */
int sp_write_file_atomic(const char *path, const void *data, size_t len, sp_err *e);
/* mkdir -p; mode 0755. */
int sp_mkdir_p(const char *path, sp_err *e);
/* Parse a decimal integer in [lo, hi]; returns -1 with a message naming `what`. */
int sp_parse_i64(const char *s, int64_t lo, int64_t hi, const char *what, int64_t *out, sp_err *e);
/* Wall-clock seconds (monotonic). */
double sp_now(void);

#endif
