/* spattn completion bash|zsh: a completion script for the shell, generated
 * from the commands themselves: each command's --help (rendered from its
 * option table, cmd/opts.c) gives its options and whether they take a
 * value; a usage line "spattn cache path|list|clear" or a "subcommands:"
 * section gives the words after the command.  So the script cannot drift
 * from the flags.  `make install` installs both scripts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmd.h"
#include "common/strbuf.h"

static const opt_cmd completion_cmd = {
    "completion",
    "spattn completion bash|zsh",
    "Print a completion script for bash or zsh, generated from every command's options.",
    1, 1,
};

#define MAX_OPTS  48
#define MAX_WORDS 16

typedef struct {
    char name[32];           /* "--seq-len" or "-o" */
    int takes_value;
    char help[96];
} comp_opt;

typedef struct {
    const char *name, *summary;
    int n_opts, n_words;
    comp_opt opt[MAX_OPTS];
    char word[MAX_WORDS][24];
} comp_cmd;

/* Run fn(name --help) with stdout captured into *out (a tmpfile), so help
 * text is read exactly as a user sees it. */
static int capture_help(const char *name, cmd_fn fn, strbuf *out)
{
    FILE *tmp = tmpfile();
    if (!tmp) return -1;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    if (saved < 0) { fclose(tmp); return -1; }
    dup2(fileno(tmp), STDOUT_FILENO);
    char *argv[] = { (char *)name, "--help", NULL };
    sp_err e = { 0 };
    fn(2, argv, &e);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, tmp)) > 0) sb_add(out, buf, n);
    fclose(tmp);
    return 0;
}

/* Strip what a shell-quoted or zsh-described help text cannot hold. */
static void clean_help(const char *src, char *dst, size_t n)
{
    size_t k = 0;
    for (; *src && k + 1 < n; src++) {
        char c = *src;
        if (c == '\'' || c == '"' || c == '`' || c == '$' || c == '\\') continue;
        if (c == '[') c = '(';
        if (c == ']') c = ')';
        if (c == ':') c = ' ';
        dst[k++] = c;
    }
    dst[k] = 0;
}

static void add_opt(comp_cmd *c, const char *name, size_t len, int takes_value, const char *help)
{
    if (c->n_opts >= MAX_OPTS || len >= sizeof c->opt[0].name) return;
    for (int i = 0; i < c->n_opts; i++)
        if (strlen(c->opt[i].name) == len && strncmp(c->opt[i].name, name, len) == 0) return;
    comp_opt *o = &c->opt[c->n_opts++];
    memcpy(o->name, name, len);
    o->name[len] = 0;
    o->takes_value = takes_value;
    clean_help(help, o->help, sizeof o->help);
}

static void add_word(comp_cmd *c, const char *w, size_t len)
{
    if (c->n_words >= MAX_WORDS || len == 0 || len >= sizeof c->word[0]) return;
    for (int i = 0; i < c->n_words; i++)
        if (strlen(c->word[i]) == len && strncmp(c->word[i], w, len) == 0) return;
    memcpy(c->word[c->n_words], w, len);
    c->word[c->n_words++][len] = 0;
}

/* Read options and words from one command's help text. */
static void parse_help(const char *text, comp_cmd *c)
{
    int in_subs = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char l[512];
        snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
        if (strncmp(l, "usage: spattn ", 14) == 0) {
            /* "usage: spattn cache path|list|clear ...": the alternatives */
            const char *p = strchr(l + 14, ' ');
            if (p) {
                p++;
                size_t w = strcspn(p, " [");
                if (memchr(p, '|', w))
                    for (const char *q = p; q < p + w;) {
                        size_t k = strcspn(q, "| [");
                        add_word(c, q, k);
                        q += k + 1;
                    }
            }
        } else if (strcmp(l, "subcommands:") == 0) {
            in_subs = 1;
        } else if (l[0] == 0) {
            in_subs = 0;
        } else if (in_subs && strncmp(l, "  ", 2) == 0 && l[2] != ' ') {
            add_word(c, l + 2, strcspn(l + 2, " "));
        } else if (strncmp(l, "  ", 2) == 0 && l[2 + strspn(l + 2, " ")] == '-' && strspn(l + 2, " ") <= 4) {
            /* "  -o, --output FILE           help" or "      --json    help" */
            const char *p = l + 2 + strspn(l + 2, " ");
            const char *lng = strstr(p, "--");
            if (!lng || lng - p > 4) { line += len + (end ? 1 : 0); continue; }
            size_t nl = strcspn(lng, " ");
            const char *after = lng + nl;
            int takes = after[0] == ' ' && after[1] != ' ';
            const char *help = after;
            while (*help == ' ') help++;
            if (takes) {
                help += strcspn(help, " ");
                while (*help == ' ') help++;
            }
            if (strncmp(lng, "--help", 6) == 0 && nl == 6) takes = 0;
            add_opt(c, lng, nl, takes, help);
            if (p[0] == '-' && p[1] != '-' && p[2] == ',') add_opt(c, p, 2, takes, help);
        }
        line += len + (end ? 1 : 0);
    }
}

static void print_bash(const comp_cmd *cs, int n)
{
    printf("# bash completion for spattn, generated by 'spattn completion bash'.\n"
           "# Install: source it, or copy it to /usr/share/bash-completion/completions/spattn.\n"
           "_spattn() {\n"
           "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} opts='' words='' valued=''\n"
           "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n"
           "        COMPREPLY=( $(compgen -W '");
    for (int i = 0; i < n; i++) printf("%s ", cs[i].name);
    printf("help --version --help' -- \"$cur\") )\n        return\n    fi\n"
           "    case ${COMP_WORDS[1]} in\n");
    for (int i = 0; i < n; i++) {
        printf("    %s)\n        opts='", cs[i].name);
        for (int k = 0; k < cs[i].n_opts; k++) printf("%s%s", k ? " " : "", cs[i].opt[k].name);
        printf("'\n        valued='");
        int first = 1;
        for (int k = 0; k < cs[i].n_opts; k++)
            if (cs[i].opt[k].takes_value) { printf("%s%s", first ? "" : " ", cs[i].opt[k].name); first = 0; }
        printf("'\n        words='");
        for (int k = 0; k < cs[i].n_words; k++) printf("%s%s", k ? " " : "", cs[i].word[k]);
        printf("' ;;\n");
    }
    printf("    help)\n        words='");
    for (int i = 0; i < n; i++) printf("%s%s", i ? " " : "", cs[i].name);
    printf("' ;;\n    esac\n"
           "    # after an option that takes a value: files (specs, .npy, .svg, databases)\n"
           "    case \" $valued \" in *\" $prev \"*) COMPREPLY=( $(compgen -f -- \"$cur\") ); return ;; esac\n"
           "    if [[ $cur == -* ]]; then\n"
           "        COMPREPLY=( $(compgen -W \"$opts\" -- \"$cur\") )\n"
           "    elif [ -n \"$words\" ] && [ \"$COMP_CWORD\" -eq 2 ]; then\n"
           "        COMPREPLY=( $(compgen -W \"$words\" -- \"$cur\") )\n"
           "    else\n"
           "        COMPREPLY=( $(compgen -f -- \"$cur\") )\n"
           "    fi\n"
           "}\n"
           "complete -o filenames -o bashdefault -F _spattn spattn\n");
}

static void print_zsh(const comp_cmd *cs, int n)
{
    printf("#compdef spattn\n"
           "# zsh completion for spattn, generated by 'spattn completion zsh'.\n"
           "# Install: copy it as _spattn into a directory of $fpath.\n"
           "_spattn() {\n"
           "    local -a cmds\n"
           "    cmds=(\n");
    for (int i = 0; i < n; i++) {
        char h[128];
        clean_help(cs[i].summary, h, sizeof h);
        printf("        '%s:%s'\n", cs[i].name, h);
    }
    printf("        'help:show help for a command'\n    )\n"
           "    if (( CURRENT == 2 )); then\n"
           "        _describe -t commands 'spattn command' cmds\n"
           "        _arguments '--version[print the version and build]' '--help[show help]'\n"
           "        return\n"
           "    fi\n"
           "    local cmd=$words[2]\n"
           "    shift words; (( CURRENT-- ))\n"
           "    case $cmd in\n");
    for (int i = 0; i < n; i++) {
        printf("    %s)\n        _arguments -s", cs[i].name);
        for (int k = 0; k < cs[i].n_opts; k++) {
            const comp_opt *o = &cs[i].opt[k];
            if (o->takes_value) printf(" \\\n            '%s[%s]:value:_files'", o->name, o->help);
            else printf(" \\\n            '%s[%s]'", o->name, o->help);
        }
        if (cs[i].n_words) {
            printf(" \\\n            '1:action:(");
            for (int k = 0; k < cs[i].n_words; k++) printf("%s%s", k ? " " : "", cs[i].word[k]);
            printf(")'");
        }
        printf(" \\\n            '*:file:_files' ;;\n");
    }
    printf("    help)\n        _describe -t commands 'spattn command' cmds ;;\n"
           "    esac\n"
           "}\n"
           "_spattn \"$@\"\n");
}

int cmd_completion(int argc, char **argv, sp_err *e)
{
    opt_def opts[] = { OPT_END() };
    opt_pos pos;
    int rc = opts_parse(&completion_cmd, opts, argc, argv, &pos, e);
    if (rc) return rc > 0 ? SP_EXIT_OK : SP_EXIT_USAGE;
    const char *shell = pos.v[0];
    if (strcmp(shell, "bash") != 0 && strcmp(shell, "zsh") != 0) {
        sp_fail(e, SP_EXIT_USAGE, "completion: '%s' is not bash or zsh", shell);
        return SP_EXIT_USAGE;
    }
    const char *names[32], *summaries[32];
    cmd_fn fns[32];
    int n = spattn_commands(names, fns, summaries, 32);
    comp_cmd *cs = calloc((size_t)n, sizeof *cs);
    if (!cs) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); return SP_EXIT_FAIL; }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], "completion") == 0) {
            cs[m].name = names[i];
            cs[m].summary = summaries[i];
            add_opt(&cs[m], "--help", 6, 0, "show this help and exit");
            add_word(&cs[m], "bash", 4);
            add_word(&cs[m], "zsh", 3);
            m++;
            continue;
        }
        strbuf help = STRBUF_INIT;
        sb_init(&help);
        if (capture_help(names[i], fns[i], &help)) {
            sb_free(&help);
            free(cs);
            sp_fail(e, SP_EXIT_FAIL, "completion: cannot capture the help of %s", names[i]);
            return SP_EXIT_FAIL;
        }
        cs[m].name = names[i];
        cs[m].summary = summaries[i];
        parse_help(help.buf, &cs[m]);
        sb_free(&help);
        m++;
    }
    if (strcmp(shell, "bash") == 0) print_bash(cs, m);
    else print_zsh(cs, m);
    free(cs);
    return SP_EXIT_OK;
}
