/* The subcommands.  Each lives in cmd/<name>.c with one entry point
 *     int cmd_<name>(int argc, char **argv, sp_err *e);
 * argv[0] is the command name.  It returns the exit status (SP_EXIT_*); on a
 * non-zero status with e->msg set, main prints the error.  A command that
 * reports its own failure (a FAIL table) returns SP_EXIT_FAIL with e empty. */
#ifndef SPATTN_CMD_H
#define SPATTN_CMD_H

#include "cmd/opts.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "common/fileio.h"

typedef int (*cmd_fn)(int argc, char **argv, sp_err *e);
/* The command table of cmd/main.c: up to cap names, entry points and
 * summaries, in table order; returns the count (for `spattn completion`). */
int spattn_commands(const char **names, cmd_fn *fns, const char **summaries, int cap);
int cmd_completion(int argc, char **argv, sp_err *e);
/* spattn --version [--json] (cmd/version.c). */
int cmd_version(int json);
int cmd_plan(int argc, char **argv, sp_err *e);
int cmd_gen(int argc, char **argv, sp_err *e);
int cmd_compile(int argc, char **argv, sp_err *e);
int cmd_run(int argc, char **argv, sp_err *e);
int cmd_check(int argc, char **argv, sp_err *e);
int cmd_cache(int argc, char **argv, sp_err *e);
int cmd_tune(int argc, char **argv, sp_err *e);
int cmd_db(int argc, char **argv, sp_err *e);
int cmd_bench(int argc, char **argv, sp_err *e);
int cmd_info(int argc, char **argv, sp_err *e);

/* Shared by commands (cmd/common.c). */

/* Load a spec; errors are SP_EXIT_USAGE with file:line:col. */
int cmd_load_spec(const char *path, sp_spec *spec, sp_err *e);
/* The pattern for --layer-index (-1: the spec's default pattern). */
int cmd_layer_pattern(const sp_spec *spec, int layer_index, const sp_pattern **out, sp_err *e);
/* Step 1 of common/fileio.h's output steps for a command's n outputs
 * (paths[i] NULL: not asked for; what[i]: its flag, for messages): each
 * target checked and no two the same file, before any work. */
int cmd_check_outputs(sp_out *outs, const char *const *paths, const char *const *what, int n, sp_err *e);
/* Progress on stderr: a bar on a terminal, plain lines otherwise.
 * progress_step(&p, done, total, "label"); progress_done(&p). */
typedef struct { int tty; double last; int last_pct; const char *what; } progress;
void progress_begin(progress *p, const char *what);
void progress_step(progress *p, long done, long total, const char *label);
void progress_done(progress *p);

#endif
