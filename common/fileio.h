/* Whole-file reads and atomic writes.  Every file spattn writes goes through
 * sp_write_file_atomic: data goes to a temporary file in the same directory,
 * is flushed, then renamed over the target, so a reader never sees half a
 * file and a crash never destroys the old one. */
#ifndef SPATTN_FILEIO_H
#define SPATTN_FILEIO_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "common/err.h"

/* Open an input file for reading; refuses (SP_EXIT_USAGE, naming its kind)
 * anything but a regular file before a read could block on it (a named
 * FIFO, a device, a directory).  An anonymous pipe given as /dev/fd/N (the
 * shell's <(...)) is read like a file: its writer is already there.
 * Returns the descriptor, or -1. */
int sp_open_input(const char *path, sp_err *e);
/* The same as a stdio stream ("rb"); NULL on error. */
FILE *sp_fopen_input(const char *path, sp_err *e);
/* Read a whole regular file into *data (NUL-terminated, caller frees).
 * Refuses files over max_bytes (0: no limit).  Errors: code SP_EXIT_USAGE. */
int sp_read_file(const char *path, size_t max_bytes, char **data, size_t *len, sp_err *e);

/* Output files, in three steps, so that a command checks every target
 * before any work and writes all its outputs or none:
 *   1. sp_out_check each target (and sp_outs_distinct the set): an empty
 *      name, a directory, a device or FIFO, a missing or unwritable parent
 *      directory, a dangling symbolic link are SP_EXIT_USAGE errors naming
 *      the file.  A symbolic link to a regular file is written through:
 *      the target's content is replaced, the link stays.
 *   2. sp_out_stage each: the data goes to a temporary ".spattn-XXXXXX" in
 *      the target's directory (short, so any legal target name works),
 *      flushed with fsync;
 *   3. sp_outs_commit renames every temporary over its target, or
 *      sp_outs_discard removes them after a failure.
 * The path "-" is standard output (the command's request, as for `plan
 * --svg -`): its bytes are held in memory at step 2 and written at step 3,
 * after the files, so stdout too gets all or nothing. */
typedef struct {
    const char *path;          /* as given, for messages */
    char target[PATH_MAX];     /* absolute name the rename replaces (a link's target); "-": stdout */
    char tmp[PATH_MAX];        /* staged temporary file, "" if none */
    void *held;                /* "-": the staged bytes, written to stdout at commit */
    size_t held_len;
} sp_out;

int sp_out_check(const char *path, const char *what, sp_out *out, sp_err *e);
/* Refuses two outputs that land on one file; what[i] names outs[i]
 * ("-o", "--lse-out").  Entries with path NULL are skipped. */
int sp_outs_distinct(const sp_out *outs, int n, const char *const *what, sp_err *e);
int sp_out_stage(sp_out *o, const void *data, size_t len, sp_err *e);
int sp_outs_commit(sp_out *outs, int n, sp_err *e);
void sp_outs_discard(sp_out *outs, int n);
/* Check, stage and commit one file: write len bytes to path atomically. */
int sp_write_file_atomic(const char *path, const void *data, size_t len, sp_err *e);
/* mkdir -p; mode 0755. */
int sp_mkdir_p(const char *path, sp_err *e);
/* Parse a decimal integer in [lo, hi]; returns -1 with a message naming `what`. */
int sp_parse_i64(const char *s, int64_t lo, int64_t hi, const char *what, int64_t *out, sp_err *e);
/* Checked size arithmetic: a product that overflows is an SP_EXIT_USAGE
 * error ("the shape is too large"), never a wrapped value.  sp_mul_size
 * multiplies its size_t arguments up to a terminating (size_t)0 (every
 * factor must be non-zero). */
int sp_mul_i64(int64_t a, int64_t b, int64_t *out, sp_err *e);
int sp_mul_size(size_t *out, sp_err *e, ...);
/* Wall-clock seconds (monotonic). */
double sp_now(void);

#endif
