/* spattn: band-sparse attention kernels, generated per model and tuned per GPU.
 *
 * This file holds the command table and dispatches.  To add a command:
 *   1. write cmd/<name>.c with int cmd_<name>(int argc, char **argv, sp_err *e)
 *      (its options as an opt_def table, see cmd/opts.h) and declare it in cmd/cmd.h;
 *   2. add a row below;
 *   3. write man/spattn-<name>.1 (the meta-test in tests/bats/help.bats checks it exists
 *      and renders);
 *   4. add tests/bats/<name>.bats.                                              */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cmd/cmd.h"

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv, sp_err *e);
    const char *summary;
    const char *gpu_hint;   /* what to do instead when no GPU answers (exit 3); NULL: nothing */
} command;

static const command commands[] = {
    { "plan",    cmd_plan,    "show the band plan of a spec: intervals, work ratio, tiles", NULL },
    { "gen",     cmd_gen,     "print the generated CUDA source of a kernel", NULL },
    { "compile", cmd_compile, "compile kernels with NVRTC and report registers, shared memory, spills", NULL },
    { "run",     cmd_run,     "run the attention forward (GPU or CPU reference) and time it",
      "without a GPU, run the CPU reference: spattn run SPEC --device cpu" },
    { "check",   cmd_check,   "validate GPU kernels against a float64 or cuBLAS reference",
      "check needs a GPU; without one, 'spattn compile SPEC' builds the kernels and 'spattn run SPEC --device cpu' runs the reference" },
    { "bench",   cmd_bench,   "sweep sequence lengths: spattn vs dense causal",
      "bench times kernels on a GPU; run it on the GPU host ('spattn compile SPEC --arch ARCH' warms its kernel cache here)" },
    { "tune",    cmd_tune,    "autotune tile configs for this GPU into the tuning database",
      "tune times kernels on a GPU; run it on the GPU host (SPATTN_TUNE_FAKE=1 exercises it without one, see spattn-tune(1))" },
    { "db",      cmd_db,      "inspect, export, import or repair the tuning database", NULL },
    { "cache",   cmd_cache,   "show or clear the compiled-kernel cache", NULL },
    { "info",    cmd_info,    "show the GPU, driver, NVRTC and cache/database paths", NULL },
    { "completion", cmd_completion, "print a bash or zsh completion script", NULL },
};
#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

int spattn_commands(const char **names, cmd_fn *fns, const char **summaries, int cap)
{
    int n = 0;
    for (int i = 0; i < N_COMMANDS && n < cap; i++, n++) {
        names[n] = commands[i].name;
        fns[n] = commands[i].fn;
        summaries[n] = commands[i].summary;
    }
    return n;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: spattn [--version [--json]] [--help] COMMAND [ARGS]\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s  %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "  %-10s  %s\n", "help", "show help for a command (spattn help COMMAND)");
    fprintf(f, "\nexit status: 0 ok, 1 a check or run failed, 2 usage or spec error,\n"
               "3 GPU or CUDA unavailable or failing.  See spattn(1).\n");
}

static const command *find(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

/* Closest command by edit distance, for "did you mean". */
static const char *nearest(const char *name)
{
    const char *best = NULL;
    int best_d = 3;
    for (int i = 0; i < N_COMMANDS; i++) {
        const char *c = commands[i].name;
        int la = (int)strlen(name), lb = (int)strlen(c);
        if (la > 30 || lb > 30) continue;
        int dp[32][32];
        for (int x = 0; x <= la; x++) dp[x][0] = x;
        for (int y = 0; y <= lb; y++) dp[0][y] = y;
        for (int x = 1; x <= la; x++)
            for (int y = 1; y <= lb; y++) {
                int sub = dp[x - 1][y - 1] + (name[x - 1] != c[y - 1]);
                int del = dp[x - 1][y] + 1, ins = dp[x][y - 1] + 1;
                dp[x][y] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            }
        if (dp[la][lb] < best_d) { best_d = dp[la][lb]; best = c; }
    }
    return best;
}

static int finish(int rc)
{
    /* A full disk or closed pipe must not pass silently (git, jq do the same). */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE) fprintf(stderr, "spattn: error: writing standard output failed: %s\n", strerror(errno));
        return rc ? rc : SP_EXIT_FAIL;
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) { usage(stderr); return SP_EXIT_USAGE; }
    const char *name = argv[1];
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        int json = argc > 2 && strcmp(argv[2], "--json") == 0;
        if (argc > 2 + json) {
            fprintf(stderr, "spattn: error: --version takes only --json\n");
            return SP_EXIT_USAGE;
        }
        return finish(cmd_version(json));
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) { usage(stdout); return finish(0); }
    if (strcmp(name, "help") == 0) {
        if (argc < 3) { usage(stdout); return finish(0); }
        const command *c = find(argv[2]);
        if (!c) {
            fprintf(stderr, "spattn: error: no such command '%s'\n", argv[2]);
            return SP_EXIT_USAGE;
        }
        char *help_argv[] = { (char *)c->name, "--help", NULL };
        sp_err e = { 0 };
        return finish(c->fn(2, help_argv, &e));
    }
    const command *c = find(name);
    if (!c) {
        fprintf(stderr, "spattn: error: '%s' is not a spattn command\n", name);
        const char *n = nearest(name);
        if (n) fprintf(stderr, "hint: did you mean 'spattn %s'?\n", n);
        else fprintf(stderr, "hint: see 'spattn --help'\n");
        return SP_EXIT_USAGE;
    }
    sp_err e = { 0 };
    int rc = c->fn(argc - 1, argv + 1, &e);
    if (rc != 0 && e.msg[0]) sp_err_print(&e, stderr);
    /* The library's hint says what is wrong with the GPU; this one says what
     * this command can do without one (only run has --device cpu). */
    if (rc == SP_EXIT_GPU && c->gpu_hint) fprintf(stderr, "hint: %s\n", c->gpu_hint);
    return finish(rc);
}
