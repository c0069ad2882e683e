/* Errors travel up as values.  A module that fails fills an sp_err and
 * returns -1; only cmd/ prints it (sp_err_print) and turns err.code into the
 * process exit status.  Messages read like a compiler's:
 *     configs/x.yaml:12:7: error: heads must divide by kv_heads (32 / 6)
 *     hint: ...                                                          */
#ifndef SPATTN_ERR_H
#define SPATTN_ERR_H

#include <stdarg.h>
#include <stdio.h>

/* Exit codes, documented in spattn(1). */
enum {
    SP_EXIT_OK    = 0, /* success */
    SP_EXIT_FAIL  = 1, /* a check or run failed (wrong result, I/O failure) */
    SP_EXIT_USAGE = 2, /* bad flags, bad spec, bad input file */
    SP_EXIT_GPU   = 3, /* GPU, driver, NVRTC or cuBLAS unavailable or failing */
};

typedef struct sp_err {
    int  code;       /* one of SP_EXIT_*; 0 while no error was recorded */
    char file[512];  /* file the error is about, "" if none */
    int  line, col;  /* 1-based position in file, 0 if unknown */
    char msg[768];
    char hint[512];  /* optional second line, "" if none */
} sp_err;

/* Record an error (code, printf-style message); returns -1 for `return sp_fail(...)`. */
int sp_fail(sp_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Same, with a file position (line/col 0 = unknown). */
int sp_fail_at(sp_err *e, int code, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Attach a hint line to the recorded error. */
void sp_hint(sp_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "file:line:col: error: msg" (or "spattn: error: msg") and the hint. */
void sp_err_print(const sp_err *e, FILE *f);
/* Reset to "no error". */
void sp_err_clear(sp_err *e);

#endif
