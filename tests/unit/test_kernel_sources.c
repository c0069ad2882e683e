/* The embedded kernel sources (kernels/ .cuh files, codegen/kernel_sources.h):
 * the table, the look-up, and the flattening `spattn gen` and the kernel
 * cache key use (each header once, #pragma once dropped, #line markers). */
#include <string.h>

#include "codegen/kernel_sources.h"
#include "runtime/kcache.h"
#include "tests/check.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_table(void)
{
    CHECK("some sources", kernel_sources_count > 0);
    for (int i = 0; i < kernel_sources_count; i++) {
        const kernel_source *k = &kernel_sources[i];
        size_t n = strlen(k->name);
        CHECKF(n > 4 && strcmp(k->name + n - 4, ".cuh") == 0 && !strchr(k->name, '/'), "%s: a bare .cuh name", k->name);
        CHECKF(strlen(k->text) == k->len && k->len > 0, "%s: length", k->name);
        CHECKF(strstr(k->text, "#pragma once") != NULL, "%s: #pragma once", k->name);
        CHECKF(i == 0 || strcmp(kernel_sources[i - 1].name, k->name) < 0, "%s: sorted", k->name);
        CHECKF(kernel_source_find(k->name) == k, "%s: found by name", k->name);
    }
    CHECK("unknown name", kernel_source_find("no_such.cuh") == NULL);
    CHECK("ptx.cuh is there", kernel_source_find("ptx.cuh") != NULL);
}

static void test_flatten(void)
{
    const char *tu = "int a;\n#include \"ptx.cuh\"\nint b;\n  #  include \"common.cuh\"\n#include <cuda_fp16.h>\n"
                     "#include \"ptx.cuh\"\nint c;";
    strbuf out = STRBUF_INIT;
    sp_err e = { 0 };
    CHECK("flattens", kernel_sources_flatten(&out, tu, "x.cu", &e) == 0 && out.buf);
    const char *f = out.buf ? out.buf : "";
    CHECK("ptx.cuh pasted once", count(f, "#line 1 \"kernels/ptx.cuh\"\n") == 1);
    CHECK("common.cuh once (ptx.cuh includes it first)", count(f, "#line 1 \"kernels/common.cuh\"\n") == 1);
    CHECK("ptx.cuh's text is there", strstr(f, "DEV void mma_16816(") != NULL);
    CHECK("back to the TU after ptx.cuh", strstr(f, "#line 3 \"x.cu\"\nint b;\n") != NULL);
    CHECK("no include of a known header left", !strstr(f, "#include \"ptx.cuh\"") && !strstr(f, "#include \"common.cuh\""));
    CHECK("other includes stay", strstr(f, "\n#include <cuda_fp16.h>\n") != NULL);
    CHECK("no #pragma once in one file", !strstr(f, "#pragma once"));
    CHECK("the TU's last line, without a newline", out.len >= 6 && strcmp(f + out.len - 6, "int c;") == 0);
    /* Each header line stays a line: the #line markers hold. */
    const kernel_source *ptx = kernel_source_find("ptx.cuh"), *common = kernel_source_find("common.cuh");
    int expect = lines(tu) + lines(ptx->text) + lines(common->text) + 2 /* ptx.cuh: #line in and out */
                 + 2 /* common.cuh, inside ptx.cuh */ - 2 /* the two includes replaced by their files */;
    CHECKF(lines(f) == expect, "line count %d, expected %d", lines(f), expect);
    sb_free(&out);
}

/* The cache key covers the headers' bytes: a TU that includes a header keys
 * differently from one that does not, and comments in the TU still do not count. */
static void test_key_covers_headers(void)
{
    char a[KCACHE_KEY_LEN + 1], b[KCACHE_KEY_LEN + 1];
    kcache_key("/* spec a */\n#include \"ptx.cuh\"\nint x; // x\n", "sm_80", 13000, a);
    kcache_key("/* spec a */\n\nint x; // x\n", "sm_80", 13000, b);
    CHECK("an included header changes the key", strcmp(a, b) != 0);
    kcache_key("/* spec b, renamed */\n#include \"ptx.cuh\"\nint x; // a longer comment\n", "sm_80", 13000, b);
    CHECK("comments around it do not", strcmp(a, b) == 0);
}

static const test_case tests[] = {
    { "table", test_table },
    { "flatten", test_flatten },
    { "key_covers_headers", test_key_covers_headers },
    { 0, 0 },
};
TEST_MAIN(tests)
