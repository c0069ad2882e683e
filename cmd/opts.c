#include "cmd/opts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

static const opt_def *find_long(const opt_def *defs, const char *name, size_t len)
{
    for (const opt_def *d = defs; d->kind != OPTK_END; d++)
        if (strlen(d->long_name) == len && strncmp(d->long_name, name, len) == 0) return d;
    return NULL;
}

static const opt_def *find_short(const opt_def *defs, char c)
{
    for (const opt_def *d = defs; d->kind != OPTK_END; d++)
        if (d->short_name && d->short_name == c) return d;
    return NULL;
}

static int set_value(const opt_cmd *cmd, const opt_def *d, const char *val, sp_err *e)
{
    char what[96];
    snprintf(what, sizeof what, "--%s", d->long_name);
    int64_t v;
    switch (d->kind) {
    case OPTK_INT:
        if (sp_parse_i64(val, d->lo, d->hi, what, &v, e)) goto bad;
        *(int *)d->dest = (int)v;
        return 0;
    case OPTK_I64:
        if (sp_parse_i64(val, d->lo, d->hi, what, &v, e)) goto bad;
        *(int64_t *)d->dest = v;
        return 0;
    case OPTK_DOUBLE: {
        char *end;
        errno = 0;
        double x = strtod(val, &end);
        if (!*val || *end || errno) { sp_fail(e, SP_EXIT_USAGE, "%s: '%s' is not a number", what, val); goto bad; }
        *(double *)d->dest = x;
        return 0;
    }
    case OPTK_STRING:
        *(const char **)d->dest = val;
        return 0;
    case OPTK_I64_LIST: {
        opt_i64_list *l = d->dest;
        char buf[512];
        snprintf(buf, sizeof buf, "%s", val);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (l->n >= OPT_LIST_MAX) { sp_fail(e, SP_EXIT_USAGE, "%s: more than %d values", what, OPT_LIST_MAX); goto bad; }
            if (sp_parse_i64(tok, d->lo, d->hi, what, &v, e)) goto bad;
            l->v[l->n++] = v;
        }
        if (l->n == 0) { sp_fail(e, SP_EXIT_USAGE, "%s: empty list", what); goto bad; }
        return 0;
    }
    default:
        return 0;
    }
bad:
    sp_hint(e, "see 'spattn %s --help'", cmd->name);
    return -1;
}

int opts_parse(const opt_cmd *cmd, const opt_def *defs, int argc, char **argv, opt_pos *pos, sp_err *e)
{
    pos->n = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const opt_def *d = NULL;
        const char *val = NULL;
        if (!only_pos && strcmp(a, "--") == 0) { only_pos = 1; continue; }
        if (!only_pos && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)) {
            opts_help(cmd, defs, stdout);
            return 1;
        }
        if (!only_pos && a[0] == '-' && a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            d = find_long(defs, name, len);
            if (!d) {
                sp_fail(e, SP_EXIT_USAGE, "%s: unknown option '%.*s'", cmd->name, (int)len + 2, a);
                sp_hint(e, "see 'spattn %s --help'", cmd->name);
                return -1;
            }
            if (eq) val = eq + 1;
        } else if (!only_pos && a[0] == '-' && a[1] != '\0') {
            d = find_short(defs, a[1]);
            if (!d) {
                sp_fail(e, SP_EXIT_USAGE, "%s: unknown option '-%c'", cmd->name, a[1]);
                sp_hint(e, "see 'spattn %s --help'", cmd->name);
                return -1;
            }
            if (a[2]) {
                if (d->kind == OPTK_BOOL) {
                    sp_fail(e, SP_EXIT_USAGE, "%s: option '-%c' takes no value", cmd->name, a[1]);
                    return -1;
                }
                val = a + 2;
            }
        } else {
            if (pos->n >= cmd->max_pos || pos->n >= OPT_MAX_POS) {
                sp_fail(e, SP_EXIT_USAGE, "%s: unexpected argument '%s'", cmd->name, a);
                sp_hint(e, "usage: %s", cmd->usage);
                return -1;
            }
            pos->v[pos->n++] = a;
            continue;
        }
        if (d->kind == OPTK_BOOL) {
            if (val) {
                sp_fail(e, SP_EXIT_USAGE, "%s: option '--%s' takes no value", cmd->name, d->long_name);
                return -1;
            }
            *(int *)d->dest = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) {
                sp_fail(e, SP_EXIT_USAGE, "%s: option '--%s' needs a value (%s)", cmd->name, d->long_name,
                        d->argname ? d->argname : "VALUE");
                sp_hint(e, "see 'spattn %s --help'", cmd->name);
                return -1;
            }
            val = argv[++i];
        }
        if (set_value(cmd, d, val, e)) return -1;
    }
    if (pos->n < cmd->min_pos) {
        sp_fail(e, SP_EXIT_USAGE, "%s: missing argument", cmd->name);
        sp_hint(e, "usage: %s", cmd->usage);
        return -1;
    }
    return 0;
}

void opts_help(const opt_cmd *cmd, const opt_def *defs, FILE *f)
{
    fprintf(f, "usage: %s\n\n%s\n\noptions:\n", cmd->usage, cmd->summary);
    for (const opt_def *d = defs; d->kind != OPTK_END; d++) {
        char left[80];
        int n = 0;
        if (d->short_name) n = snprintf(left, sizeof left, "-%c, ", d->short_name);
        else n = snprintf(left, sizeof left, "    ");
        n += snprintf(left + n, sizeof left - (size_t)n, "--%s", d->long_name);
        if (d->argname) snprintf(left + n, sizeof left - (size_t)n, " %s", d->argname);
        fprintf(f, "  %-28s %s\n", left, d->help);
    }
    fprintf(f, "  %-28s %s\n", "-h, --help", "show this help and exit");
}
