/* Helpers shared by the command files: loading a spec, picking a layer's
 * pattern, checking output files, progress output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "common/fileio.h"

/* "-" reads the spec from standard input; messages and the default name
 * then say "stdin". */
int cmd_load_spec(const char *path, sp_spec *spec, sp_err *e)
{
    if (strcmp(path, "-") != 0) return spec_load(path, spec, e);
    char *text;
    size_t len;
    memset(spec, 0, sizeof *spec);
    if (sp_read_file("/dev/stdin", SPEC_MAX_FILE_BYTES, &text, &len, e) < 0) return -1;
    int rc = spec_parse(text, len, "stdin", spec, e);
    free(text);
    return rc;
}

int cmd_layer_pattern(const sp_spec *spec, int layer_index, const sp_pattern **out, sp_err *e)
{
    if (layer_index < 0) { *out = &spec->pattern; return 0; }
    if (spec->num_layers > 0 && layer_index >= spec->num_layers)
        return sp_fail(e, SP_EXIT_USAGE, "--layer-index %d: the spec has %d layers (0..%d)", layer_index,
                       spec->num_layers, spec->num_layers - 1);
    *out = spec_layer_pattern(spec, layer_index);
    return 0;
}

int cmd_check_outputs(sp_out *outs, const char *const *paths, const char *const *what, int n, sp_err *e)
{
    for (int i = 0; i < n; i++) {
        memset(&outs[i], 0, sizeof outs[i]);
        if (paths[i] && sp_out_check(paths[i], what[i], &outs[i], e)) return -1;
    }
    return sp_outs_distinct(outs, n, what, e);
}

void progress_begin(progress *p, const char *what)
{
    p->tty = isatty(2);
    p->last = 0;
    p->last_pct = -1;
    p->what = what;
}

/* On a terminal: one bar redrawn in place, at most 10 times a second.
 * Otherwise: a plain line per step, so logs stay readable. */
void progress_step(progress *p, long done, long total, const char *label)
{
    int pct = total > 0 ? (int)(100 * done / total) : 100;
    if (p->tty) {
        double now = sp_now();
        if (done < total && now - p->last < 0.1 && pct == p->last_pct) return;
        p->last = now;
        p->last_pct = pct;
        int filled = pct * 30 / 100;
        fprintf(stderr, "\r%s [", p->what);
        for (int i = 0; i < 30; i++) fputc(i < filled ? '#' : '.', stderr);
        fprintf(stderr, "] %ld/%ld %-40.40s", done, total, label ? label : "");
        fflush(stderr);
    } else {
        fprintf(stderr, "%s: %ld/%ld %s\n", p->what, done, total, label ? label : "");
    }
}

void progress_done(progress *p)
{
    if (p->tty) fputc('\n', stderr);
}
