/* .npy reading and writing (runtime/npy.c): round trips, the fixtures in
 * tests/fixtures/npy (made by make.py there), and files damaged here in a
 * temporary directory: every truncation of a valid file, a grown file, and
 * a header length that points past the end.  Run from the repository root
 * (make test does). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/half.h"
#include "runtime/npy.h"
#include "tests/check.h"

#define FIX "tests/fixtures/npy/"

static char tmpdir[256];

/* A path in a private temporary directory, made on first use (so any test
 * can run alone: test_npy NAME). */
static const char *tmp_path(const char *name)
{
    static char buf[512];
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/spattn-test-npy-XXXXXX");
        if (!mkdtemp(tmpdir)) snprintf(tmpdir, sizeof tmpdir, "/tmp");
    }
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

/* ---------------------------------------------------------------------------
 * Round trips */

static void test_roundtrip_f32(void)
{
    float v[2 * 3 * 5];
    for (int i = 0; i < 30; i++) v[i] = (float)(i * 0.25 - 3.0);
    npy_array a = { .dtype = NPY_F32, .ndim = 3, .shape = { 2, 3, 5 }, .count = 30, .data = v };
    sp_err e = { 0 };
    const char *p = tmp_path("f32.npy");
    CHECK("write f32", npy_write(p, &a, &e) == 0);

    npy_array b;
    int rc = npy_read(p, &b, &e);
    CHECKF(rc == 0, "read back f32: %s", e.msg);
    if (rc) return;
    CHECK("dtype f32", b.dtype == NPY_F32);
    CHECK("ndim 3", b.ndim == 3);
    CHECK("shape (2, 3, 5)", b.shape[0] == 2 && b.shape[1] == 3 && b.shape[2] == 5);
    CHECK("count 30", b.count == 30);
    CHECK("values identical", memcmp(b.data, v, sizeof v) == 0);
    CHECK("npy_get", npy_get(&b, 7) == (double)v[7]);
    npy_free(&b);

    /* The header is what numpy writes: 64-byte aligned, ends in '\n'. */
    char *raw;
    size_t len;
    CHECK("raw read", sp_read_file(p, 0, &raw, &len, &e) == 0);
    size_t hlen = (unsigned char)raw[8] | (size_t)(unsigned char)raw[9] << 8;
    CHECK("data offset is a multiple of 64", (10 + hlen) % 64 == 0);
    CHECK("header ends with newline", raw[10 + hlen - 1] == '\n');
    CHECK("header dict as numpy writes it",
          strncmp(raw + 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 5), }", 62) == 0);
    CHECK("file size", len == 10 + hlen + sizeof v);
    free(raw);
}

static void test_roundtrip_f16(void)
{
    uint16_t v[7];
    const float x[7] = { 0.0f, 1.0f, -2.5f, 65504.0f, 1e-7f, -0.0f, 3.140625f };
    for (int i = 0; i < 7; i++) v[i] = float_to_fp16(x[i]);
    npy_array a = { .dtype = NPY_F16, .ndim = 1, .shape = { 7 }, .count = 7, .data = v };
    sp_err e = { 0 };
    const char *p = tmp_path("f16.npy");
    CHECK("write f16", npy_write(p, &a, &e) == 0);
    npy_array b;
    int rc = npy_read(p, &b, &e);
    CHECKF(rc == 0, "read back f16: %s", e.msg);
    if (rc) return;
    CHECK("dtype f16", b.dtype == NPY_F16);
    CHECK("shape (7,)", b.ndim == 1 && b.shape[0] == 7);
    CHECK("bits identical", memcmp(b.data, v, sizeof v) == 0);
    CHECK("npy_get f16 1.0", npy_get(&b, 1) == 1.0);
    CHECK("npy_get f16 -2.5", npy_get(&b, 2) == -2.5);
    CHECK("npy_get f16 max", npy_get(&b, 3) == 65504.0);
    npy_free(&b);

    char *raw;
    size_t len;
    sp_read_file(p, 0, &raw, &len, &e);
    /* raw + 10: the header starts after the binary magic (which holds a NUL). */
    CHECK("1-d shape written as (7,)", len > 10 && strstr(raw + 10, "'shape': (7,), }") != NULL);
    free(raw);
}

static void test_roundtrip_f64_and_edges(void)
{
    sp_err e = { 0 };
    double s = -1.5;
    npy_array a = { .dtype = NPY_F64, .ndim = 0, .count = 1, .data = &s };
    CHECK("write scalar", npy_write(tmp_path("scalar.npy"), &a, &e) == 0);
    npy_array b;
    CHECK("read scalar", npy_read(tmp_path("scalar.npy"), &b, &e) == 0);
    CHECK("scalar shape ()", b.ndim == 0 && b.count == 1 && npy_get(&b, 0) == -1.5);
    npy_free(&b);

    npy_array z = { .dtype = NPY_F32, .ndim = 2, .shape = { 4, 0 }, .count = 0, .data = NULL };
    CHECK("write empty array", npy_write(tmp_path("empty.npy"), &z, &e) == 0);
    CHECK("read empty array", npy_read(tmp_path("empty.npy"), &b, &e) == 0);
    CHECK("empty array shape (4, 0)", b.ndim == 2 && b.shape[0] == 4 && b.shape[1] == 0 && b.count == 0);
    npy_free(&b);

    float one = 1;
    npy_array lie = { .dtype = NPY_F32, .ndim = 1, .shape = { 2 }, .count = 1, .data = &one };
    CHECK("write refuses count != prod(shape)", npy_write(tmp_path("lie.npy"), &lie, &e) == -1);

    int64_t want[2] = { 2, 3 }, other[2] = { 3, 2 };
    npy_array g;
    CHECK("read good fixture", npy_read(FIX "good_f32_2x3.npy", &g, &e) == 0);
    CHECK("expect_shape accepts", npy_expect_shape(&g, "x.npy", 2, want, &e) == 0);
    sp_err_clear(&e);
    CHECK("expect_shape refuses", npy_expect_shape(&g, "x.npy", 2, other, &e) == -1);
    CHECKF(strstr(e.msg, "(2, 3)") && strstr(e.msg, "(3, 2)"), "expect_shape message names both shapes: %s", e.msg);
    CHECK("expect_shape: exit 2", e.code == SP_EXIT_USAGE);
    CHECK("expect_shape: names the file", strcmp(e.file, "x.npy") == 0);
    npy_free(&g);
}

/* ---------------------------------------------------------------------------
 * Fixtures */

static void test_good_fixtures(void)
{
    sp_err e = { 0 };
    npy_array a;
    struct { const char *file; npy_dtype t; int ndim; int64_t s0, s1; double v0, vlast; } good[] = {
        { "good_f32_2x3.npy", NPY_F32, 2, 2, 3, 0.0, 2.5 },
        { "good_f16_4.npy", NPY_F16, 1, 4, 0, 1.0, 65504.0 },
        { "good_f64_v2.npy", NPY_F64, 2, 1, 2, 3.25, -1e300 },
        { "good_f32_v3_native.npy", NPY_F32, 1, 3, 0, 1.0, 3.0 },
        { "good_scalar.npy", NPY_F32, 0, 0, 0, 7.0, 7.0 },
        { "good_key_order.npy", NPY_F32, 1, 2, 0, 4.0, 5.0 },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", good[i].file);
        sp_err_clear(&e);
        int rc = npy_read(path, &a, &e);
        CHECKF(rc == 0, "%s should read: %s", good[i].file, e.msg);
        if (rc) continue;
        CHECKF(a.dtype == good[i].t && a.ndim == good[i].ndim, "%s: dtype/ndim", good[i].file);
        if (a.ndim >= 1) CHECKF(a.shape[0] == good[i].s0, "%s: shape[0]", good[i].file);
        if (a.ndim >= 2) CHECKF(a.shape[1] == good[i].s1, "%s: shape[1]", good[i].file);
        CHECKF(npy_get(&a, 0) == good[i].v0 && npy_get(&a, a.count - 1) == good[i].vlast, "%s: values", good[i].file);
        npy_free(&a);
    }
    sp_err_clear(&e);
    CHECK("zero-size dim reads", npy_read(FIX "good_empty_dim.npy", &a, &e) == 0 && a.count == 0);
    npy_free(&a);
}

static void test_bad_fixtures(void)
{
    struct { const char *file, *msg; } bad[] = {
        { "bad_empty.npy", "not a .npy file" },
        { "bad_magic.npy", "not a .npy file" },
        { "bad_short.npy", "truncated" },
        { "bad_version.npy", "unsupported .npy version 4.0" },
        { "bad_header_len.npy", "runs past the end of the file" },
        { "bad_truncated_data.npy", "truncated data" },
        { "bad_extra_data.npy", "extra data" },
        { "bad_missing_shape.npy", "missing key 'shape'" },
        { "bad_unknown_key.npy", "unknown key 'x'" },
        { "bad_duplicate_key.npy", "key 'descr' appears twice" },
        { "bad_fortran.npy", "Fortran-order" },
        { "bad_big_endian.npy", "big-endian" },
        { "bad_int_dtype.npy", "unsupported dtype '<i4'" },
        { "bad_pipe_f4.npy", "byte-order mark '|'" },
        { "bad_negative_dim.npy", "negative dimension" },
        { "bad_overflow_dim.npy", "impossibly large" },
        { "bad_huge_digits.npy", "dimension too large" },
        { "bad_too_many_dims.npy", "more than 8 dimensions" },
        { "bad_unterminated.npy", "bad .npy header" },
        { "bad_trailing_text.npy", "unexpected text after the dict" },
        { "bad_no_dict.npy", "expected '{'" },
        { "bad_shape_not_tuple.npy", "expected '('" },
        { "does_not_exist.npy", "cannot open" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", bad[i].file);
        sp_err e = { 0 };
        npy_array a;
        int rc = npy_read(path, &a, &e);
        CHECKF(rc == -1, "%s should be rejected", bad[i].file);
        CHECKF(e.code == SP_EXIT_USAGE, "%s: exit code %d, want 2", bad[i].file, e.code);
        CHECKF(strcmp(e.file, path) == 0, "%s: error names the file (got '%s')", bad[i].file, e.file);
        CHECKF(strstr(e.msg, bad[i].msg) != NULL, "%s: message '%s' lacks '%s'", bad[i].file, e.msg, bad[i].msg);
        CHECKF(a.data == NULL, "%s: no data left allocated", bad[i].file);
    }
}

/* ---------------------------------------------------------------------------
 * Damaged copies of a valid file */

static void test_every_truncation_rejected(void)
{
    float v[12];
    for (int i = 0; i < 12; i++) v[i] = (float)i;
    npy_array a = { .dtype = NPY_F32, .ndim = 2, .shape = { 3, 4 }, .count = 12, .data = v };
    sp_err e = { 0 };
    const char *full = tmp_path("full.npy");
    npy_write(full, &a, &e);
    char *raw;
    size_t len;
    sp_read_file(full, 0, &raw, &len, &e);

    int accepted = 0;
    char cut[512];
    snprintf(cut, sizeof cut, "%s", tmp_path("cut.npy"));
    for (size_t n = 0; n < len; n++) {
        sp_write_file_atomic(cut, raw, n, &e);
        npy_array b;
        sp_err_clear(&e);
        if (npy_read(cut, &b, &e) == 0) { accepted++; npy_free(&b); }
        else if (e.code != SP_EXIT_USAGE) accepted++;
    }
    CHECKF(accepted == 0, "%d of %zu truncated copies were not rejected with exit 2", accepted, len);

    /* One extra byte. */
    char *grown = malloc(len + 1);
    memcpy(grown, raw, len);
    grown[len] = 0;
    sp_write_file_atomic(cut, grown, len + 1, &e);
    npy_array b;
    sp_err_clear(&e);
    CHECK("a file one byte too long is rejected", npy_read(cut, &b, &e) == -1 && strstr(e.msg, "extra data"));

    /* Header length pointing far past the end (v1: 16 bits). */
    memcpy(grown, raw, len);
    grown[8] = (char)0xff;
    grown[9] = (char)0xff;
    sp_write_file_atomic(cut, grown, len, &e);
    sp_err_clear(&e);
    CHECK("header_len past EOF is rejected", npy_read(cut, &b, &e) == -1 && strstr(e.msg, "past the end"));

    /* A header length that stops inside the dict. */
    memcpy(grown, raw, len);
    grown[8] = 20;
    grown[9] = 0;
    sp_write_file_atomic(cut, grown, len, &e);
    sp_err_clear(&e);
    CHECK("header_len cutting the dict is rejected", npy_read(cut, &b, &e) == -1 && strstr(e.msg, "bad .npy header"));

    /* Shape that lies about the size, same byte count: (4, 4) for 12 floats. */
    char *p = strstr(raw + 10, "(3, 4)");
    if (p) {
        p[1] = '4';
        sp_write_file_atomic(cut, raw, len, &e);
        sp_err_clear(&e);
        CHECK("lying shape is rejected", npy_read(cut, &b, &e) == -1 && strstr(e.msg, "truncated data"));
    }
    /* Issue 19: a NUL inside the quoted descr ('<f4\0') ended the copied
     * string early and passed as '<f4'. */
    p = strstr(raw + 10, "'<f4', ");
    if (p) {
        memcpy(p + 4, "\0',", 3);
        sp_write_file_atomic(cut, raw, len, &e);
        sp_err_clear(&e);
        CHECK("a NUL in descr is rejected", npy_read(cut, &b, &e) == -1 && strstr(e.msg, "unsupported character"));
    }
    free(grown);
    free(raw);
}

/* Issue 19: a FIFO given as an input hung in fopen before its type was
 * checked.  The alarm turns a regression into a failed run. */
static void test_fifo_refused(void)
{
    const char *path = tmp_path("fifo.npy");
    unlink(path);
    CHECK("mkfifo", mkfifo(path, 0644) == 0);
    npy_array a;
    sp_err e = { 0 };
    alarm(20);
    int rc = npy_read(path, &a, &e);
    alarm(0);
    CHECK("a FIFO is refused with exit 2, not read", rc == -1 && e.code == SP_EXIT_USAGE && strstr(e.msg, "FIFO"));
    unlink(path);
}

static void test_cleanup(void)
{
    const char *names[] = { "f32.npy", "f16.npy", "scalar.npy", "empty.npy", "full.npy", "cut.npy", "lie.npy" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i]));
    if (strcmp(tmpdir, "/tmp") != 0) CHECK("temp dir removed", rmdir(tmpdir) == 0);
}

static const test_case tests[] = {
    { "roundtrip_f32", test_roundtrip_f32 },
    { "roundtrip_f16", test_roundtrip_f16 },
    { "roundtrip_f64_and_edges", test_roundtrip_f64_and_edges },
    { "good_fixtures", test_good_fixtures },
    { "bad_fixtures", test_bad_fixtures },
    { "every_truncation_rejected", test_every_truncation_rejected },
    { "fifo_refused", test_fifo_refused },
    { "cleanup", test_cleanup },
    { 0, 0 },
};
TEST_MAIN(tests)
