/* Option parsing from a table (after git's parse-options): a command lists
 * its options once as opt_def rows, and both parsing and --help come from
 * that table, so flags and their help cannot drift apart.
 *
 *     static int json; static const char *out;
 *     opt_def opts[] = {
 *         OPT_BOOL(0, "json", &json, "print one JSON object on stdout"),
 *         OPT_STRING('o', "output", &out, "FILE", "write O as .npy"),
 *         OPT_END(),
 *     };
 *     if (opts_parse(&cmd, opts, argc, argv, &pos, e)) return ...;
 */
#ifndef SPATTN_OPTS_H
#define SPATTN_OPTS_H

#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

typedef enum { OPTK_END, OPTK_BOOL, OPTK_INT, OPTK_I64, OPTK_DOUBLE, OPTK_STRING, OPTK_I64_LIST } opt_kind;

#define OPT_LIST_MAX 32
typedef struct { int n; int64_t v[OPT_LIST_MAX]; } opt_i64_list;  /* "1024,4096" or repeated flags */

typedef struct {
    char short_name;         /* 0 if none */
    const char *long_name;
    opt_kind kind;
    void *dest;              /* int*, int64_t*, double*, const char**, opt_i64_list* */
    const char *argname;     /* for help: "N", "FILE"; NULL for bools */
    const char *help;
    int64_t lo, hi;          /* range for numbers */
} opt_def;

#define OPT_BOOL(s, l, d, h)               { s, l, OPTK_BOOL, d, NULL, h, 0, 0 }
#define OPT_INT(s, l, d, a, h, lo, hi)     { s, l, OPTK_INT, d, a, h, lo, hi }
#define OPT_I64(s, l, d, a, h, lo, hi)     { s, l, OPTK_I64, d, a, h, lo, hi }
#define OPT_DOUBLE(s, l, d, a, h)          { s, l, OPTK_DOUBLE, d, a, h, 0, 0 }
#define OPT_STRING(s, l, d, a, h)          { s, l, OPTK_STRING, d, a, h, 0, 0 }
#define OPT_LIST(s, l, d, a, h, lo, hi)    { s, l, OPTK_I64_LIST, d, a, h, lo, hi }
#define OPT_END()                          { 0, NULL, OPTK_END, NULL, NULL, NULL, 0, 0 }

/* What a command is called and how its usage reads. */
typedef struct {
    const char *name;        /* "plan" */
    const char *usage;       /* "spattn plan SPEC --seq-len N [options]" */
    const char *summary;     /* one line */
    int min_pos, max_pos;    /* positional arguments allowed */
} opt_cmd;

#define OPT_MAX_POS 8
typedef struct { int n; const char *v[OPT_MAX_POS]; } opt_pos;

/* Parse argv[1..] (argv[0] is the command name).  --help/-h prints help on
 * stdout and returns 1 (the caller exits 0).  Errors: -1, e->code = 2 with a
 * hint naming `spattn CMD --help`.  Returns 0 when the command should run. */
int opts_parse(const opt_cmd *cmd, const opt_def *defs, int argc, char **argv, opt_pos *pos, sp_err *e);
/* Print the usage, summary and option table. */
void opts_help(const opt_cmd *cmd, const opt_def *defs, FILE *f);

#endif
