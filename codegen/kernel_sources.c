/* The embedded kernel sources: look-up and flattening (kernel_sources.h).
 * The table itself is generated (tools/embed.c). */
#include "codegen/kernel_sources.h"

#include <stdio.h>
#include <string.h>

const kernel_source *kernel_source_find(const char *name)
{
    for (int i = 0; i < kernel_sources_count; i++)
        if (strcmp(kernel_sources[i].name, name) == 0) return &kernel_sources[i];
    return NULL;
}

enum { FLATTEN_DEPTH = 16, NAME_MAX_LEN = 128 };

static const char *skip_blanks(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
    return s;
}

/* If line [s, end) is the preprocessor directive `# word ...` (blanks
 * allowed around '#'), the rest of the line after word and its blanks; else
 * NULL. */
static const char *directive(const char *s, const char *end, const char *word)
{
    size_t n = strlen(word);
    s = skip_blanks(s, end);
    if (s == end || *s++ != '#') return NULL;
    s = skip_blanks(s, end);
    if ((size_t)(end - s) < n || strncmp(s, word, n) != 0) return NULL;
    return skip_blanks(s + n, end);
}

/* If line [s, end) is `#include "name"`, copy the name into buf and return 1. */
static int include_name(const char *s, const char *end, char *buf)
{
    s = directive(s, end, "include");
    if (!s || s == end || *s++ != '"') return 0;
    const char *q = memchr(s, '"', (size_t)(end - s));
    if (!q || q - s >= NAME_MAX_LEN || q == s) return 0;
    memcpy(buf, s, (size_t)(q - s));
    buf[q - s] = '\0';
    return 1;
}

/* Is line [s, end) `#pragma once`? */
static int pragma_once(const char *s, const char *end)
{
    s = directive(s, end, "pragma");
    if (!s || (size_t)(end - s) < 4 || strncmp(s, "once", 4) != 0) return 0;
    return skip_blanks(s + 4, end) == end;
}

typedef struct {
    strbuf *out;
    unsigned char done[256];   /* per table row: its text is in out already */
    sp_err *e;
    int markers;               /* write #line markers */
} flattener;

static int flatten_text(flattener *f, const char *text, const char *file, int depth)
{
    if (depth > FLATTEN_DEPTH)
        return sp_fail(f->e, SP_EXIT_FAIL, "kernel sources: includes nest deeper than %d (at %s)", FLATTEN_DEPTH, file);
    int line = 1;
    for (const char *s = text; *s; line++) {
        const char *nl = strchr(s, '\n');
        const char *end = nl ? nl : s + strlen(s);
        char name[NAME_MAX_LEN];
        const kernel_source *ks = include_name(s, end, name) ? kernel_source_find(name) : NULL;
        if (ks) {
            int row = (int)(ks - kernel_sources);
            if (row < (int)sizeof f->done && !f->done[row]) {
                f->done[row] = 1;
                if (f->markers) sb_printf(f->out, "#line 1 \"kernels/%s\"\n", ks->name);
                char inner[NAME_MAX_LEN + 16];
                snprintf(inner, sizeof inner, "kernels/%s", ks->name);
                if (flatten_text(f, ks->text, inner, depth + 1)) return -1;
                if (ks->len > 0 && ks->text[ks->len - 1] != '\n') sb_puts(f->out, "\n");
                if (f->markers) sb_printf(f->out, "#line %d \"%s\"\n", line + 1, file);
            } else {
                sb_puts(f->out, "\n");   /* included before: keep the line count */
            }
        } else if (depth > 0 && pragma_once(s, end)) {
            sb_puts(f->out, "\n");
        } else {
            sb_add(f->out, s, (size_t)(end - s) + (nl ? 1 : 0));
        }
        if (!nl) break;
        s = nl + 1;
    }
    return 0;
}

int kernel_sources_flatten(strbuf *out, const char *tu, const char *tu_name, sp_err *e)
{
    flattener f = { .out = out, .e = e, .markers = tu_name != NULL };
    memset(f.done, 0, sizeof f.done);
    if (flatten_text(&f, tu, tu_name ? tu_name : "", 0)) return -1;
    return out->oom ? sp_fail(e, SP_EXIT_FAIL, "out of memory flattening the kernel source") : 0;
}
