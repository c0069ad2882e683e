/* Tests of the spec loader (codegen/spec.c): every shipped config loads,
 * every bad fixture fails with exit code 2 at the position and with the
 * message that tests/fixtures/bad/EXPECTED lists, and in-memory cases cover
 * defaults, edge values and robustness against junk.  Run from the
 * repository root (make test does). */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/spec.h"
#include "common/fileio.h"
#include "tests/check.h"

#define CONFIGS "configs"
#define BAD     "tests/fixtures/bad"

/* Parse a NUL-terminated string; returns spec_parse's result. */
static int parse(const char *text, sp_spec *s, sp_err *e)
{
    sp_err_clear(e);
    return spec_parse(text, strlen(text), "mem.yaml", s, e);
}

/* The text must fail with code 2 at line:col and a message containing sub. */
static void expect_error(const char *text, int line, int col, const char *sub)
{
    sp_spec s;
    sp_err e;
    int rc = parse(text, &s, &e);
    CHECKF(rc == -1 && e.code == SP_EXIT_USAGE, "expected failure for:\n%s\n(rc %d code %d)", text, rc, e.code);
    CHECKF(strstr(e.msg, sub) != NULL, "message '%s' lacks '%s'", e.msg, sub);
    CHECKF(e.line == line && e.col == col, "'%s' at %d:%d, expected %d:%d", e.msg, e.line, e.col, line, col);
    CHECKF(strcmp(e.file, "mem.yaml") == 0, "error file '%s'", e.file);
    CHECK("spec left freed", s.pattern.custom == NULL && s.n_overrides == 0);
}

static void test_configs_load(void)
{
    DIR *d = opendir(CONFIGS);
    CHECK("configs/ is readable (run from the repository root)", d != NULL);
    if (!d) return;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") != 0) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", CONFIGS, de->d_name);
        sp_spec s;
        sp_err e = { 0 };
        int rc = spec_load(path, &s, &e);
        CHECKF(rc == 0, "%s: %s:%d:%d: %s", path, e.file, e.line, e.col, e.msg);
        if (rc == 0) {
            /* The name in the file matches the file name, so listings line up. */
            char base[256];
            snprintf(base, sizeof base, "%.*s", (int)(len - 5), de->d_name);
            CHECKF(strcmp(s.name, base) == 0, "%s: name '%s' differs from file name", path, s.name);
        }
        spec_free(&s);
        n++;
    }
    closedir(d);
    CHECKF(n >= 6, "only %d configs", n);
}

static void test_olmoe(void)
{
    sp_spec s;
    sp_err e = { 0 };
    CHECK("loads", spec_load(CONFIGS "/olmoe-1b-7b.yaml", &s, &e) == 0);
    CHECK("heads", s.heads == 16 && s.kv_heads == 16 && s.head_dim == 128);
    CHECK("dtype bf16, causal", s.dtype == SP_BF16 && s.causal == 1);
    CHECK("pattern spattn, basis seq_len", s.pattern.kind == SP_SPATTN && s.pattern.band_basis == 0 &&
                                            s.pattern.custom == NULL);
    CHECK("num_layers", s.num_layers == 16 && s.n_overrides == 0);
    CHECK("shapes", s.n_batch == 1 && s.batch[0] == 4 && s.n_seq_len == 1 && s.seq_len[0] == 4096);
    CHECK("default scale", fabs(spec_scale(&s) - 1.0 / sqrt(128.0)) < 1e-15 && s.softmax_scale == 0);
    CHECK("every layer the default", spec_layer_pattern(&s, 0) == &s.pattern &&
                                      spec_layer_pattern(&s, 15) == &s.pattern);
    CHECK("path kept", strcmp(s.path, CONFIGS "/olmoe-1b-7b.yaml") == 0);
    spec_free(&s);
}

static void test_benchmark_shapes(void)
{
    sp_spec s;
    sp_err e = { 0 };
    CHECK("llama loads", spec_load(CONFIGS "/llama-8h-d64.yaml", &s, &e) == 0);
    CHECK("llama", s.heads == 8 && s.kv_heads == 8 && s.head_dim == 64 && s.pattern.kind == SP_SPATTN &&
                   s.n_batch == 1 && s.batch[0] == 4 && s.n_seq_len == 1 && s.seq_len[0] == 4096);
    spec_free(&s);
    CHECK("gqa loads", spec_load(CONFIGS "/gqa-32q-8kv.yaml", &s, &e) == 0);
    CHECK("gqa", s.heads == 32 && s.kv_heads == 8 && s.head_dim == 128 && s.pattern.kind == SP_SPATTN &&
                 s.n_batch == 1 && s.batch[0] == 1 && s.n_seq_len == 1 && s.seq_len[0] == 16384);
    spec_free(&s);
}

static void test_hybrid(void)
{
    sp_spec s;
    sp_err e = { 0 };
    CHECK("loads", spec_load(CONFIGS "/hybrid-layers.yaml", &s, &e) == 0);
    CHECK("12 layers, 5 overrides", s.num_layers == 12 && s.n_overrides == 5);
    static const sp_pattern_kind want[12] = {
        SP_DENSE, SP_DENSE, SP_SPATTN, SP_LOCAL, SP_SPATTN, SP_EXCLUSIVE,
        SP_SPATTN, SP_LOCAL, SP_SPATTN, SP_SPATTN, SP_SPATTN, SP_LOCAL,
    };
    for (int l = 0; l < 12; l++)
        CHECKF(spec_layer_pattern(&s, l)->kind == want[l], "layer %d is %s", l,
               sp_pattern_name(spec_layer_pattern(&s, l)->kind));
    CHECK("layer 5 fixed basis", spec_layer_pattern(&s, 5)->band_basis == 8192);
    CHECK("layer 3 basis seq_len", spec_layer_pattern(&s, 3)->band_basis == 0);
    CHECK("two seq_lens", s.n_seq_len == 2 && s.seq_len[0] == 1024 && s.seq_len[1] == 4096);
    spec_free(&s);
}

static void test_custom(void)
{
    sp_spec s;
    sp_err e = { 0 };
    CHECK("loads", spec_load(CONFIGS "/custom-4h.yaml", &s, &e) == 0);
    CHECK("custom, fp16", s.pattern.kind == SP_CUSTOM && s.dtype == SP_FP16 && s.heads == 4);
    CHECK("bands present", s.pattern.custom != NULL);
    if (s.pattern.custom) {
        const sp_band_list *b = s.pattern.custom;
        CHECK("head 0", b[0].n == 1 && b[0].iv[0].lo == 0 && b[0].iv[0].hi == 65);
        CHECK("head 3", b[3].n == 2 && b[3].iv[1].lo == 1024 && b[3].iv[1].hi == 2048);
    }
    CHECK("scale given", s.softmax_scale == 0.125 && spec_scale(&s) == 0.125);
    CHECK("basis unused", s.pattern.band_basis == 0);
    spec_free(&s);
    spec_free(&s);  /* a second free is harmless */
    CHECK("freed", s.pattern.custom == NULL);
}

/* One row of tests/fixtures/bad/EXPECTED. */
typedef struct { char file[128]; int line, col; char sub[256]; } expected_row;

static int read_expected(expected_row *rows, int cap)
{
    char *text;
    size_t len;
    sp_err e = { 0 };
    if (sp_read_file(BAD "/EXPECTED", 0, &text, &len, &e) < 0) return -1;
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || !line[0]) continue;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t2) continue;
        *t1 = *t2 = '\0';
        snprintf(rows[n].file, sizeof rows[n].file, "%s", line);
        if (sscanf(t1 + 1, "%d:%d", &rows[n].line, &rows[n].col) != 2) continue;
        snprintf(rows[n].sub, sizeof rows[n].sub, "%s", t2 + 1);
        n++;
    }
    free(text);
    return n;
}

static void test_bad_fixtures(void)
{
    static expected_row rows[256];
    int n = read_expected(rows, 256);
    CHECKF(n >= 24, "EXPECTED lists %d fixtures", n);
    for (int i = 0; i < n; i++) {
        char path[400];
        snprintf(path, sizeof path, "%s/%.127s", BAD, rows[i].file);
        sp_spec s;
        sp_err e = { 0 };
        int rc = spec_load(path, &s, &e);
        CHECKF(rc == -1 && e.code == SP_EXIT_USAGE, "%s: rc %d code %d", path, rc, e.code);
        CHECKF(strcmp(e.file, path) == 0, "%s: error names file '%s'", path, e.file);
        CHECKF(e.line == rows[i].line && e.col == rows[i].col, "%s: at %d:%d, expected %d:%d (%s)", path, e.line,
               e.col, rows[i].line, rows[i].col, e.msg);
        CHECKF(strstr(e.msg, rows[i].sub) != NULL, "%s: message '%s' lacks '%s'", path, e.msg, rows[i].sub);
        spec_free(&s);
    }
    /* Every fixture is listed, so none goes unchecked. */
    DIR *d = opendir(BAD);
    CHECK("fixture dir readable", d != NULL);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") != 0) continue;
        int found = 0;
        for (int i = 0; i < n; i++) found |= strcmp(rows[i].file, de->d_name) == 0;
        CHECKF(found, "%s is not listed in EXPECTED", de->d_name);
    }
    if (d) closedir(d);
}

static void test_hints(void)
{
    sp_spec s;
    sp_err e;
    parse("heads: 16\nhead_dims: 128\n", &s, &e);
    CHECKF(strstr(e.hint, "did you mean 'head_dim'?") != NULL, "hint '%s'", e.hint);
    parse("heads: 16\nhead_dim: 128\nnum_key_value_heads: 4\n", &s, &e);
    CHECKF(strstr(e.hint, "'kv_heads'") != NULL, "alias hint '%s'", e.hint);
    parse("heads: 16\nhead_dim: 128\nzzzzzz: 4\n", &s, &e);
    CHECKF(strstr(e.hint, "known keys: name, heads") != NULL, "key list hint '%s'", e.hint);
    parse("heads: 16\nhead_dim: 128\npattern: exclusiv\n", &s, &e);
    CHECKF(strstr(e.hint, "'exclusive'") != NULL, "value hint '%s'", e.hint);
    parse("heads: 16\nhead_dim: 128\n", &s, &e);
    CHECK("no hint on success", e.hint[0] == '\0' && e.code == 0);
    spec_free(&s);
}

static void test_defaults(void)
{
    sp_spec s;
    sp_err e;
    CHECK("minimal spec", parse("heads: 4\nhead_dim: 64\n", &s, &e) == 0);
    CHECK("defaults", s.kv_heads == 4 && s.dtype == SP_BF16 && s.causal == 1 && s.pattern.kind == SP_SPATTN &&
                      s.pattern.band_basis == 0 && s.num_layers == 0 && s.n_overrides == 0 &&
                      s.n_batch == 1 && s.batch[0] == 1 && s.n_seq_len == 1 && s.seq_len[0] == 4096 &&
                      s.softmax_scale == 0);
    CHECK("name from file name", strcmp(s.name, "mem") == 0);
    spec_free(&s);

    CHECK("flow style", parse("{heads: 2, head_dim: 32, dtype: fp16, seq_len: [1, 7, 113]}", &s, &e) == 0);
    CHECK("flow values", s.heads == 2 && s.head_dim == 32 && s.dtype == SP_FP16 && s.n_seq_len == 3 &&
                         s.seq_len[2] == 113);
    spec_free(&s);

    CHECK("edges", parse("name: 'x'\nheads: 256\nkv_heads: 1\nhead_dim: 256\ncausal: True\n"
                         "softmax_scale: 1e-2\nband_basis: 256\nbatch: 65536\nseq_len: 1\n", &s, &e) == 0);
    CHECK("edge values", s.heads == 256 && s.kv_heads == 1 && s.head_dim == 256 && s.softmax_scale == 1e-2 &&
                         s.pattern.band_basis == 256 && s.batch[0] == 65536 && s.seq_len[0] == 1 &&
                         strcmp(s.name, "x") == 0);
    spec_free(&s);

    CHECK("16 shapes", parse("heads: 1\nhead_dim: 96\nseq_len: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]\n",
                             &s, &e) == 0 && s.n_seq_len == 16 && s.seq_len[15] == 16);
    spec_free(&s);

    CHECK("integer scale", parse("heads: 1\nhead_dim: 64\nsoftmax_scale: 1\n", &s, &e) == 0 &&
                           spec_scale(&s) == 1.0);
    spec_free(&s);

    /* spec_parse honours len: the text need not end in NUL. */
    const char text[] = "heads: 8\nhead_dim: 64\nGARBAGE";
    sp_err_clear(&e);
    CHECK("length respected", spec_parse(text, strlen(text) - 7, "x.yml", &s, &e) == 0 && s.heads == 8 &&
                              strcmp(s.name, "x") == 0);
    spec_free(&s);
    sp_err_clear(&e);
    CHECK("NULL text is empty", spec_parse(NULL, 0, NULL, &s, &e) == -1 && e.code == SP_EXIT_USAGE &&
                                e.line == 1);
}

static void test_custom_bands(void)
{
    sp_spec s;
    sp_err e;
    /* Touching intervals are fine (bands_head merges them); so is a head
     * with no interval at all (its rows attend nothing). */
    CHECK("touching and empty head", parse("heads: 3\nhead_dim: 64\npattern: custom\nbands:\n"
                                           "  - [[0, 64], [64, 128]]\n  - []\n  - [[5, 6]]\n", &s, &e) == 0);
    CHECK("parsed", s.pattern.custom && s.pattern.custom[0].n == 2 && s.pattern.custom[1].n == 0 &&
                    s.pattern.custom[2].iv[0].lo == 5);
    spec_free(&s);

    char buf[2048];
    int off = snprintf(buf, sizeof buf, "heads: 1\nhead_dim: 64\npattern: custom\nbands:\n  - [");
    for (int i = 0; i < SP_MAX_INTERVALS; i++)
        off += snprintf(buf + off, sizeof buf - (size_t)off, "%s[%d, %d]", i ? ", " : "", 10 * i, 10 * i + 5);
    snprintf(buf + off, sizeof buf - (size_t)off, "]\n");
    CHECK("exactly SP_MAX_INTERVALS", parse(buf, &s, &e) == 0 && s.pattern.custom[0].n == SP_MAX_INTERVALS);
    spec_free(&s);

    expect_error("heads: 1\nhead_dim: 64\npattern: custom\nbands: [[[0, 99999999999]]]\n", 4, 14,
                 "bands[0][0]: 99999999999 is out of range");
    expect_error("heads: 1\nhead_dim: 64\npattern: custom\nbands: [[[0.5, 9]]]\n", 4, 11,
                 "bands[0][0]: expected an integer");
    expect_error("heads: 1\nhead_dim: 64\npattern: custom\nbands: 5\n", 4, 8, "bands: expected a list");
    expect_error("heads: 1\nhead_dim: 64\npattern: custom\nbands: [[[0, 4]], [[0, 4]]]\n", 4, 8,
                 "bands: 2 entries, but heads is 1");
    expect_error("heads: 2\nhead_dim: 64\npattern: custom\nbands: [[[0, 4], [2, 9]], [[0, 4]]]\n", 4, 18,
                 "bands[0][1]: interval [2, 9] overlaps [0, 4]");
    expect_error("heads: 1\nhead_dim: 64\npattern: custom\nbands: [[[4, 3]]]\n", 4, 10,
                 "bands[0][0]: interval [4, 3] is empty");
}

/* issue 19: a sliding window, and one band list for every head. */
static void test_window_and_all_heads(void)
{
    sp_spec s;
    sp_err e;
    CHECK("window parses", parse("heads: 4\nhead_dim: 64\npattern: window\nwindow: 256\n", &s, &e) == 0);
    CHECK("window kind and W", s.pattern.kind == SP_WINDOW && s.pattern.window == 256 && !s.pattern.custom &&
                               s.pattern.band_basis == 0);
    CHECK("window name", strcmp(sp_pattern_name(s.pattern.kind), "window") == 0);
    spec_free(&s);
    CHECK("window 1 (the token itself)", parse("heads: 1\nhead_dim: 64\npattern: window\nwindow: 1\n", &s, &e) == 0 &&
                                             s.pattern.window == 1);
    spec_free(&s);
    expect_error("heads: 1\nhead_dim: 64\npattern: window\n", 3, 10, "pattern: window needs window: W");
    expect_error("heads: 1\nhead_dim: 64\npattern: window\nwindow: 0\n", 4, 9, "window: 0 is out of range");
    expect_error("heads: 1\nhead_dim: 64\npattern: window\nwindow: -3\n", 4, 9, "window: -3 is negative");
    expect_error("heads: 1\nhead_dim: 64\npattern: window\nwindow: many\n", 4, 9, "window: expected an integer");
    expect_error("heads: 1\nhead_dim: 64\npattern: local\nwindow: 64\n", 4, 1,
                 "window: only used with pattern: window (pattern is local)");
    expect_error("heads: 1\nhead_dim: 64\npattern: window\nwindow: 64\nband_basis: 4096\n", 5, 1,
                 "band_basis: does not apply to pattern window");

    CHECK("bands_all_heads parses", parse("heads: 3\nhead_dim: 64\npattern: custom\n"
                                          "bands_all_heads: [[0, 65], [256, 512]]\n", &s, &e) == 0);
    int same = s.pattern.kind == SP_CUSTOM && s.pattern.custom != NULL;
    for (int h = 0; same && h < 3; h++)
        same = s.pattern.custom[h].n == 2 && s.pattern.custom[h].iv[0].lo == 0 && s.pattern.custom[h].iv[0].hi == 65 &&
               s.pattern.custom[h].iv[1].lo == 256 && s.pattern.custom[h].iv[1].hi == 512;
    CHECK("every head gets the one list", same);
    spec_free(&s);
    expect_error("heads: 2\nhead_dim: 64\npattern: custom\nbands: [[[0, 4]], [[0, 4]]]\nbands_all_heads: [[0, 4]]\n",
                 5, 1, "give either bands (a list per head) or bands_all_heads");
    expect_error("heads: 2\nhead_dim: 64\npattern: custom\nbands_all_heads: [[[0, 4]]]\n", 4, 19,
                 "bands_all_heads[0]: an interval is a pair [lo, hi], got 1 numbers");
    expect_error("heads: 2\nhead_dim: 64\npattern: spattn\nbands_all_heads: [[0, 4]]\n", 4, 1,
                 "bands_all_heads: only used with pattern: custom");
    expect_error("heads: 2\nhead_dim: 64\npattern: custom\nbands_all_heads: [[5, 9], [0, 4]]\n", 4, 27,
                 "bands_all_heads[1]: interval [0, 4] is not sorted");
    CHECK("window in a layers entry",
          parse("heads: 2\nhead_dim: 64\nnum_layers: 4\nlayers:\n  - layer: 1\n    pattern: window\n    window: 8\n"
                "  - layer: 2\n    pattern: custom\n    bands_all_heads: [[0, 2]]\n", &s, &e) == 0 &&
              s.overrides[0].pattern.kind == SP_WINDOW && s.overrides[0].pattern.window == 8 &&
              s.overrides[1].pattern.custom && s.overrides[1].pattern.custom[1].iv[0].hi == 2);
    spec_free(&s);
}

static void test_layers(void)
{
    sp_spec s;
    sp_err e;
    /* An override without band_basis inherits the default's; a custom one
     * gets its own bands. */
    CHECK("overrides", parse("heads: 2\nhead_dim: 64\nband_basis: 1024\nlayers:\n"
                             "  - {layer: 0, pattern: dense}\n"
                             "  - {range: [1, 2], pattern: local, band_basis: seq_len}\n"
                             "  - {layer: 9, pattern: custom, bands: [[[0, 8]], [[8, 16]]]}\n"
                             "  - {layer: 70000, pattern: gapped}\n", &s, &e) == -1);
    CHECK("layer index limit", strstr(e.msg, "layers[3].layer: 70000 is out of range") != NULL);
    CHECK("overrides", parse("heads: 2\nhead_dim: 64\nband_basis: 1024\nlayers:\n"
                             "  - {layer: 0, pattern: dense}\n"
                             "  - {range: [1, 2], pattern: local, band_basis: seq_len}\n"
                             "  - {layer: 9, pattern: custom, bands: [[[0, 8]], [[8, 16]]]}\n"
                             "  - {layer: 4, pattern: gapped}\n", &s, &e) == 0);
    CHECK("default basis", s.pattern.band_basis == 1024);
    CHECK("layer 0", spec_layer_pattern(&s, 0)->kind == SP_DENSE && spec_layer_pattern(&s, 0)->band_basis == 1024);
    CHECK("layers 1-2", spec_layer_pattern(&s, 2)->kind == SP_LOCAL && spec_layer_pattern(&s, 2)->band_basis == 0);
    CHECK("layer 3 default", spec_layer_pattern(&s, 3) == &s.pattern);
    CHECK("layer 4 inherits", spec_layer_pattern(&s, 4)->kind == SP_GAPPED &&
                              spec_layer_pattern(&s, 4)->band_basis == 1024);
    const sp_pattern *p9 = spec_layer_pattern(&s, 9);
    CHECK("layer 9 custom", p9->kind == SP_CUSTOM && p9->custom && p9->custom[1].iv[0].lo == 8 &&
                            p9->band_basis == 0);
    spec_free(&s);

    /* layers given before num_layers in the file are still checked against it. */
    expect_error("heads: 2\nhead_dim: 64\nlayers:\n  - {layer: 4, pattern: dense}\nnum_layers: 4\n", 4, 13,
                 "layers[0].layer: layer 4 is outside num_layers (4: layers 0..3)");
    expect_error("heads: 2\nhead_dim: 64\nlayers: {layer: 1}\n", 3, 9, "layers: expected a list");
    expect_error("heads: 2\nhead_dim: 64\nlayers: [5]\n", 3, 10, "layers[0]: expected a mapping");
    expect_error("heads: 2\nhead_dim: 64\nlayers: [{pattern: local}]\n", 3, 10,
                 "layers[0]: missing key 'layer' or 'range'");
    expect_error("heads: 2\nhead_dim: 64\nlayers: [{range: [1], pattern: local}]\n", 3, 18,
                 "layers[0].range: a range is [first, last]");
    expect_error("heads: 2\nhead_dim: 64\nlayers: [{layer: 1, pattern: local, bands: []}]\n", 3, 37,
                 "layers[0].bands: only used with pattern: custom");
    expect_error("heads: 2\nhead_dim: 64\nlayers: [{layer: 1, pattern: local, layer: 2}]\n", 3, 37,
                 "layers[0]: duplicate key 'layer'");
    expect_error("heads: 2\nhead_dim: 64\nlayers: [{layer: 1, pattern: custom, bands: [[[0, 1]]]}]\n", 3, 45,
                 "layers[0].bands: 1 entry, but heads is 2");
}

static void test_values(void)
{
    expect_error("heads: 16\nhead_dim: 128\ncausal: yes\n", 3, 9, "causal: expected true or false, got a string");
    expect_error("heads: 16\nhead_dim: 128\nsoftmax_scale: .inf\n", 3, 16, "softmax_scale: .inf is not a positive");
    expect_error("heads: 16\nhead_dim: 128\nsoftmax_scale: 0\n", 3, 16, "softmax_scale: 0 is not a positive");
    expect_error("heads: 16\nhead_dim: 128\nsoftmax_scale: fast\n", 3, 16, "softmax_scale: expected a number");
    expect_error("heads: 16\nhead_dim: 128\nname: [a]\n", 3, 7, "name: expected a string, got a list");
    expect_error("heads: 16\nhead_dim: 128\nname: ''\n", 3, 7, "name: must be 1 to 127 characters");
    expect_error("heads: 16\nhead_dim: 999999999999\n", 2, 11, "head_dim: 999999999999 is out of range");
    expect_error("heads: 16\nhead_dim: 0x80\n", 2, 11, "head_dim: expected an integer, got a string ('0x80')");
    expect_error("heads: -9223372036854775809\nhead_dim: 64\n", 1, 8, "heads: -9223372036854775809 is out of range");
    expect_error("heads: 9223372036854775807\nhead_dim: 64\n", 1, 8, "heads: 9223372036854775807 is out of range");
    expect_error("heads: 16\nkv_heads: 32\nhead_dim: 64\n", 2, 11, "kv_heads: 32 does not divide heads (16)");
    expect_error("heads: 16\nhead_dim: 64\nseq_len: 16777217\n", 3, 10, "seq_len: 16777217 is out of range");
    expect_error("heads: 16\nhead_dim: 64\nbatch: [1, [2]]\n", 3, 12, "batch[1]: expected an integer, got a list");
    expect_error("heads: 16\nhead_dim: 64\ndtype: !!str bf16\n", 3, 8, "YAML tags are not supported");
    expect_error("heads: 16\nhead_dim: 64\nx: &a 1\n", 3, 4, "anchors and aliases");
    expect_error("heads: 16\nhead_dim: 64\nlayers: *nothing\n", 3, 9, "anchors and aliases");
    expect_error("heads: 16\nhead_dim: 64\n...\n--- \nheads: 1\n", 4, 1, "a second YAML document");
    expect_error("heads: 16\nhead_dim: 64\nheads: 16\n", 3, 1, "duplicate key 'heads'");
    expect_error("\xEF\xBB\xBFheads: 0\nhead_dim: 64\n", 1, 8, "heads: 0 is out of range");   /* after a BOM */
    expect_error("# caf\xC3\xA9\nheads: 0\nhead_dim: 64\n", 2, 8, "heads: 0");
    expect_error("name: caf\xC3\xA9\nheads: 16\nhead_dim: 64\n", 1, 7, "name: byte 0xc3 is not allowed");
    expect_error("heads: 16\nhead_dim: 64\nname: a\x01\n", 3, 8, "malformed YAML: control characters");
    expect_error("\xEF\xBB\xBFname: \xFF\n", 1, 7, "invalid UTF-8 byte 0xff");
    expect_error("name: \xC0\xAF\n", 1, 7, "invalid UTF-8 byte 0xc0");                     /* overlong */
    expect_error("name: \xED\xA0\x80\n", 1, 7, "invalid UTF-8 byte 0xed");                 /* surrogate */
    expect_error("name: caf\xC3", 1, 10, "invalid UTF-8 byte 0xc3");                      /* truncated */
    expect_error("heads: 16\nhead_dim: 64\n  bad: 1\n", 3, 6, "malformed YAML");
    expect_error("heads: 'unterminated\n", 2, 1, "malformed YAML");
    expect_error("? [a, b]\n: 1\n", 1, 3, "keys must be plain words");
    expect_error("null: 1\n", 1, 1, "keys must be plain words, got nothing");
    expect_error("'null': 1\n", 1, 1, "unknown key 'null'");
    expect_error("heads: [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\n", 1, 23, "nested deeper than 16 levels");
    expect_error("~: 1\n", 1, 1, "keys must be plain words, got nothing");
}

/* Junk must never crash: deep nesting, long lines, mutated configs.  Each
 * input either loads or fails with code 2 and a position. */
static void test_robust(void)
{
    size_t n = 200000;
    char *deep = malloc(2 * n + 32);
    CHECK("malloc", deep != NULL);
    if (!deep) return;
    memcpy(deep, "heads: ", 7);
    memset(deep + 7, '[', n);
    memset(deep + 7 + n, ']', n);
    deep[7 + 2 * n] = '\0';
    sp_spec s;
    sp_err e;
    CHECK("deep nesting rejected", parse(deep, &s, &e) == -1 && e.code == SP_EXIT_USAGE && e.line >= 1);
    memset(deep, 'a', 2 * n);
    memcpy(deep + 2 * n, ": 1\n", 5);
    CHECK("long key rejected", parse(deep, &s, &e) == -1 && e.code == SP_EXIT_USAGE && e.line == 1);
    free(deep);

    char *base;
    size_t len;
    sp_err_clear(&e);
    if (sp_read_file(CONFIGS "/hybrid-layers.yaml", 0, &base, &len, &e) < 0) {
        CHECK("read hybrid-layers.yaml", 0);
        return;
    }
    char *buf = malloc(len + 1);
    CHECK("malloc", buf != NULL);
    if (!buf) { free(base); return; }
    uint32_t rng = 12345;
    int bad = 0, ok = 0;
    static const char junk[] = "[]{}:,-#&*!|>'\"%@`\t\n 0123456789\0\x80\xff";
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, base, len + 1);
        int edits = 1 + iter % 4;
        for (int k = 0; k < edits; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1664525u + 1013904223u;
            buf[at] = junk[(rng >> 8) % (sizeof junk - 1)];
        }
        sp_err_clear(&e);
        if (spec_parse(buf, len, "fuzz.yaml", &s, &e) == 0) { ok++; spec_free(&s); continue; }
        if (e.code != SP_EXIT_USAGE || e.line < 1 || e.col < 1 || !e.msg[0]) {
            bad++;
            fprintf(stderr, "fuzz %d: code %d at %d:%d: %s\n", iter, e.code, e.line, e.col, e.msg);
        }
    }
    CHECKF(bad == 0, "%d fuzzed inputs failed without a position or with the wrong code", bad);
    CHECKF(ok > 0 && ok < 3000, "fuzz: %d of 3000 loaded", ok);
    free(buf);
    free(base);
}

static void test_names(void)
{
    for (int k = SP_DENSE; k <= SP_CUSTOM; k++) {
        sp_pattern_kind back;
        CHECKF(sp_pattern_from_name(sp_pattern_name((sp_pattern_kind)k), &back) == 0 && back == (sp_pattern_kind)k,
               "round trip of pattern %d", k);
    }
    sp_pattern_kind k;
    CHECK("unknown pattern", sp_pattern_from_name("Spattn", &k) == -1);
    CHECK("dtype names", !strcmp(sp_dtype_name(SP_BF16), "bf16") && !strcmp(sp_dtype_name(SP_FP16), "fp16"));
    CHECK("dtype bytes", sp_dtype_bytes(SP_BF16) == 2 && sp_dtype_bytes(SP_FP16) == 2);
}

static void test_missing_file(void)
{
    sp_spec s;
    sp_err e = { 0 };
    CHECK("missing file", spec_load("tests/fixtures/no-such-spec.yaml", &s, &e) == -1 && e.code == SP_EXIT_USAGE &&
                          strstr(e.msg, "cannot open") && !strcmp(e.file, "tests/fixtures/no-such-spec.yaml"));
    sp_err_clear(&e);
    CHECK("directory", spec_load("configs", &s, &e) == -1 && e.code == SP_EXIT_USAGE);
    CHECK("spec zeroed", s.pattern.custom == NULL && s.heads == 0);
}

static const test_case tests[] = {
    { "configs_load", test_configs_load },
    { "olmoe", test_olmoe },
    { "benchmark_shapes", test_benchmark_shapes },
    { "hybrid", test_hybrid },
    { "custom", test_custom },
    { "bad_fixtures", test_bad_fixtures },
    { "hints", test_hints },
    { "defaults", test_defaults },
    { "custom_bands", test_custom_bands },
    { "window_and_all_heads", test_window_and_all_heads },
    { "layers", test_layers },
    { "values", test_values },
    { "robust", test_robust },
    { "names", test_names },
    { "missing_file", test_missing_file },
    { 0, 0 },
};

TEST_MAIN(tests)
