/* NumPy .npy files (format: numpy/lib/format.py, "NEP 1").
 *
 *   bytes 0-5   "\x93NUMPY"
 *   bytes 6-7   version major, minor (1.0, 2.0 or 3.0)
 *   then        header length: uint16 LE (v1) or uint32 LE (v2, v3)
 *   then        the header: a Python dict literal, e.g.
 *               {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *               padded with spaces and ended by '\n' so the data is aligned
 *   then        the data, C order, exactly prod(shape) * itemsize bytes.
 *
 * Reading trusts nothing: the header length, shape and data size are all
 * checked against the real file size before anything is allocated or read.
 * Supported dtypes: '<f2', '<f4', '<f8' ('=' means native, accepted on a
 * little-endian host).  Big-endian data ('>f4') and Fortran order are
 * refused with a hint on how to convert; this keeps the reader one
 * straight path (no byte swapping, no transposes).
 * The header parser is a small recursive-descent reader for exactly the
 * literal forms numpy writes: quoted strings, True/False, tuples of
 * non-negative integers.  Anything else is an error. */
#include "runtime/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/half.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host (every CUDA host is)"
#endif

static const char npy_magic[6] = { '\x93', 'N', 'U', 'M', 'P', 'Y' };

static size_t itemsize(npy_dtype t)
{
    return t == NPY_F16 ? 2 : t == NPY_F32 ? 4 : 8;
}

static const char *descr_of(npy_dtype t)
{
    return t == NPY_F16 ? "<f2" : t == NPY_F32 ? "<f4" : "<f8";
}

/* ---------------------------------------------------------------------------
 * Header dict parser.  Works on [p, end) with no NUL needed. */

typedef struct {
    const char *p, *end;
    const char *path;
    sp_err *e;
} hparse;

static void skip_ws(hparse *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r')) h->p++;
}

/* Expect character c (after whitespace). */
static int expect(hparse *h, char c, const char *where)
{
    skip_ws(h);
    if (h->p >= h->end || *h->p != c) {
        if (h->p >= h->end)
            return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: ended where '%c' was expected %s", c,
                              where);
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: expected '%c' %s, found '%c'", c, where,
                          *h->p);
    }
    h->p++;
    return 0;
}

/* A quoted string ('...' or "..."), no escapes (numpy never writes any in
 * these keys and values).  Copies at most cap-1 bytes into out. */
static int parse_string(hparse *h, char *out, size_t cap, const char *what)
{
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: expected a quoted %s", what);
    char q = *h->p++;
    const char *s = h->p;
    while (h->p < h->end && *h->p != q) {
        /* A NUL would end the copied string early ('<f4\0junk' read as
         * '<f4'): refused with the other characters numpy never writes. */
        if (*h->p == '\\' || *h->p == '\n' || *h->p == '\0')
            return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: unsupported character in %s", what);
        h->p++;
    }
    if (h->p >= h->end)
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: unterminated string in %s", what);
    size_t n = (size_t)(h->p - s);
    h->p++;
    if (n >= cap)
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: %s too long", what);
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

static int parse_bool(hparse *h, int *out)
{
    skip_ws(h);
    size_t left = (size_t)(h->end - h->p);
    if (left >= 4 && memcmp(h->p, "True", 4) == 0) { *out = 1; h->p += 4; return 0; }
    if (left >= 5 && memcmp(h->p, "False", 5) == 0) { *out = 0; h->p += 5; return 0; }
    return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: fortran_order must be True or False");
}

/* A dimension: decimal digits, no sign.  Refuses values above 2^62 so the
 * size arithmetic below cannot overflow on any single factor. */
static int parse_dim(hparse *h, int64_t *out)
{
    skip_ws(h);
    if (h->p < h->end && *h->p == '-')
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: negative dimension in shape");
    if (h->p >= h->end || *h->p < '0' || *h->p > '9')
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: expected a dimension in shape");
    int64_t v = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
        if (v > ((int64_t)1 << 62) / 10)
            return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: dimension too large");
        v = v * 10 + (*h->p - '0');
        h->p++;
    }
    if (h->p < h->end && *h->p == 'L') h->p++;   /* Python 2 longs: "3L" */
    *out = v;
    return 0;
}

/* A tuple: "()", "(5,)", "(2, 3)", "(2, 3,)".  ("(5)" is not a tuple in
 * Python; numpy never writes it, but it is unambiguous, so it passes.) */
static int parse_shape(hparse *h, npy_array *a)
{
    if (expect(h, '(', "to open the shape")) return -1;
    a->ndim = 0;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') { h->p++; return 0; }
        if (a->ndim >= NPY_MAX_DIMS)
            return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: more than %d dimensions",
                              NPY_MAX_DIMS);
        if (parse_dim(h, &a->shape[a->ndim])) return -1;
        a->ndim++;
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') { h->p++; continue; }
        return expect(h, ')', "to close the shape");
    }
}

static int parse_descr(hparse *h, const char *s, npy_dtype *out)
{
    if (strlen(s) != 3 || s[1] != 'f')
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0,
                          "unsupported dtype '%s': only float16, float32 and float64 ('<f2', '<f4', '<f8')", s);
    if (s[0] == '>') {
        sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "big-endian data ('%s') is not supported", s);
        sp_hint(h->e, "convert it with numpy: a.astype('<%s')", s + 1);
        return -1;
    }
    if (s[0] != '<' && s[0] != '=')   /* '|' means "no byte order": wrong for a multi-byte float */
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "unsupported dtype '%s': bad byte-order mark '%c'", s, s[0]);
    switch (s[2]) {
    case '2': *out = NPY_F16; return 0;
    case '4': *out = NPY_F32; return 0;
    case '8': *out = NPY_F64; return 0;
    }
    return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0,
                      "unsupported dtype '%s': only float16, float32 and float64 ('<f2', '<f4', '<f8')", s);
}

/* The whole dict: exactly the keys descr, fortran_order, shape, each once,
 * in any order, optional trailing comma; after '}' only whitespace. */
static int parse_header(hparse *h, npy_array *a)
{
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    char descr[32] = "";
    if (expect(h, '{', "at the start of the header")) return -1;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == '}') { h->p++; break; }
        char key[32];
        if (parse_string(h, key, sizeof key, "key")) return -1;
        int *seen = strcmp(key, "descr") == 0           ? &have_descr
                    : strcmp(key, "fortran_order") == 0 ? &have_fortran
                    : strcmp(key, "shape") == 0         ? &have_shape
                                                        : NULL;
        if (!seen) return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: unknown key '%s'", key);
        if (*seen)
            return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: key '%s' appears twice", key);
        *seen = 1;
        if (expect(h, ':', "after a key")) return -1;
        int rc = seen == &have_descr     ? parse_string(h, descr, sizeof descr, "descr")
                 : seen == &have_fortran ? parse_bool(h, &fortran)
                                         : parse_shape(h, a);
        if (rc) return -1;
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') { h->p++; continue; }
        if (expect(h, '}', "to close the header")) return -1;
        break;
    }
    skip_ws(h);
    if (h->p != h->end)
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: unexpected text after the dict");
    if (!have_descr || !have_fortran || !have_shape)
        return sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "bad .npy header: missing key '%s'",
                          !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    if (fortran) {
        sp_fail_at(h->e, SP_EXIT_USAGE, h->path, 0, 0, "Fortran-order arrays are not supported");
        sp_hint(h->e, "save a C-order copy: np.save(path, np.ascontiguousarray(a))");
        return -1;
    }
    return parse_descr(h, descr, &a->dtype);
}

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape)
{
    int n = snprintf(out, cap, "(");
    for (int d = 0; d < ndim && n < (int)cap - 24; d++)
        n += snprintf(out + n, cap - (size_t)n, d ? ", %lld" : "%lld", (long long)shape[d]);
    snprintf(out + n, cap - (size_t)n, ")");
}

/* ---------------------------------------------------------------------------
 * Reading */

static uint32_t le16(const unsigned char *b) { return (uint32_t)b[0] | (uint32_t)b[1] << 8; }
static uint32_t le32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* prod(shape) * isz, or -1 if it does not fit in 63 bits (a file that
 * large cannot exist, so the size check rejects it either way). */
static int64_t data_size(const npy_array *a, uint64_t isz)
{
    uint64_t bytes = isz;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] == 0) return 0;
    for (int d = 0; d < a->ndim; d++) {
        uint64_t dim = (uint64_t)a->shape[d];
        if (bytes > (uint64_t)INT64_MAX / dim) return -1;
        bytes *= dim;
    }
    return (int64_t)bytes;
}

/* "-": standard input, copied to an anonymous temporary file first, since
 * the reader checks the header against the file's size (a pipe has none). */
static FILE *open_stdin_copy(sp_err *e)
{
    FILE *t = tmpfile();
    if (!t) { sp_fail(e, SP_EXIT_FAIL, "stdin: cannot create a temporary file: %s", strerror(errno)); return NULL; }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
        if (fwrite(buf, 1, n, t) != n) break;
    if (ferror(stdin) || ferror(t) || fflush(t) != 0 || fseek(t, 0, SEEK_SET) != 0) {
        sp_fail(e, SP_EXIT_FAIL, "stdin: cannot read standard input into a temporary file");
        fclose(t);
        return NULL;
    }
    return t;
}

int npy_read(const char *path, npy_array *a, sp_err *e)
{
    memset(a, 0, sizeof *a);
    char *hdr = NULL;
    FILE *f = strcmp(path, "-") == 0 ? open_stdin_copy(e) : sp_fopen_input(path, e);
    if (!f) return -1;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "cannot examine: %s", strerror(errno));
        goto fail;
    }
    uint64_t fsize = (uint64_t)st.st_size;

    /* Magic, version, header length. */
    unsigned char pre[12];
    size_t got = fread(pre, 1, sizeof pre, f);
    if (got < 6 || memcmp(pre, npy_magic, 6) != 0) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "not a .npy file (no \\x93NUMPY magic)");
        goto fail;
    }
    int major = got >= 8 ? pre[6] : 1;
    if (major < 1 || major > 3) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "unsupported .npy version %d.%d (1.0, 2.0 and 3.0 are known)", major,
                   pre[7]);
        goto fail;
    }
    uint64_t hstart = major == 1 ? 10 : 12;
    if (got < hstart) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "truncated .npy file (%zu bytes)", got);
        goto fail;
    }
    uint64_t hlen = major == 1 ? le16(pre + 8) : le32(pre + 8);
    if (hstart + hlen > fsize) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0,
                   "truncated .npy file: the header (%llu bytes) runs past the end of the file (%llu bytes)",
                   (unsigned long long)hlen, (unsigned long long)fsize);
        goto fail;
    }

    /* The header dict. */
    hdr = malloc(hlen ? (size_t)hlen : 1);
    if (!hdr) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory reading %s", path);
        goto fail;
    }
    if (fseek(f, (long)hstart, SEEK_SET) != 0 || fread(hdr, 1, (size_t)hlen, f) != hlen) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "read error in the .npy header");
        goto fail;
    }
    hparse h = { hdr, hdr + hlen, path, e };
    if (parse_header(&h, a)) goto fail;

    /* The data: exactly prod(shape) * itemsize bytes, no more, no less. */
    uint64_t have = fsize - hstart - hlen;
    int64_t need = data_size(a, itemsize(a->dtype));
    if (need < 0 || (uint64_t)need != have || (uint64_t)need > SIZE_MAX) {
        char shp[256];
        shape_str(shp, sizeof shp, a->ndim, a->shape);
        if (need < 0)
            sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "header shape %s is impossibly large", shp);
        else
            sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0,
                       "%s: header shape %s of '%s' needs %lld data bytes, the file has %llu",
                       (uint64_t)need > have ? "truncated data" : "extra data after the array", shp,
                       descr_of(a->dtype), (long long)need, (unsigned long long)have);
        goto fail;
    }
    a->count = (size_t)need / itemsize(a->dtype);
    a->data = malloc(need ? (size_t)need : 1);
    if (!a->data) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory reading %s", path);
        goto fail;
    }
    /* The file may have shrunk since fstat: fread tells. */
    if (fread(a->data, 1, (size_t)need, f) != (size_t)need) {
        sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "truncated .npy file: the data ended early");
        goto fail;
    }
    free(hdr);
    fclose(f);
    return 0;

fail:
    free(hdr);
    fclose(f);
    npy_free(a);
    memset(a, 0, sizeof *a);
    return -1;
}

/* ---------------------------------------------------------------------------
 * Writing */

/* The whole file in memory (caller frees *buf). */
static int npy_encode(const char *path, const npy_array *a, unsigned char **buf, size_t *len, sp_err *e)
{
    if (a->ndim < 0 || a->ndim > NPY_MAX_DIMS)
        return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "npy_write: bad ndim %d", a->ndim);
    size_t count = 1;
    for (int d = 0; d < a->ndim; d++) {
        if (a->shape[d] < 0) return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "npy_write: negative dimension");
        if (__builtin_mul_overflow(count, (size_t)a->shape[d], &count))
            return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "npy_write: shape too large");
    }
    if (count != a->count)
        return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "npy_write: count %zu does not match the shape (%zu)", a->count,
                          count);

    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr_of(a->dtype));
    for (int d = 0; d < a->ndim; d++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, d ? ", %lld" : "%lld", (long long)a->shape[d]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", a->ndim == 1 ? "," : "");

    /* Pad with spaces so magic + length + header is a multiple of 64, as
     * numpy does; the last byte is '\n'.  v1's 16-bit length always fits. */
    size_t pre = 10, hlen = (size_t)n + 1;
    size_t total = (pre + hlen + 63) / 64 * 64;
    hlen = total - pre;
    size_t bytes, all;
    if (__builtin_mul_overflow(count, itemsize(a->dtype), &bytes) || __builtin_add_overflow(total, bytes, &all))
        return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "npy_write: array too large");
    unsigned char *b = malloc(all);
    if (!b) return sp_fail(e, SP_EXIT_FAIL, "out of memory writing %s", path);
    memcpy(b, npy_magic, 6);
    b[6] = 1;
    b[7] = 0;
    b[8] = (unsigned char)(hlen & 0xff);
    b[9] = (unsigned char)(hlen >> 8);
    memcpy(b + pre, dict, (size_t)n);
    memset(b + pre + n, ' ', hlen - (size_t)n - 1);
    b[total - 1] = '\n';
    if (bytes) memcpy(b + total, a->data, bytes);
    *buf = b;
    *len = all;
    return 0;
}

int npy_stage(sp_out *out, const npy_array *a, sp_err *e)
{
    unsigned char *buf;
    size_t len;
    if (npy_encode(out->path, a, &buf, &len, e)) return -1;
    int rc = sp_out_stage(out, buf, len, e);
    free(buf);
    return rc;
}

int npy_write(const char *path, const npy_array *a, sp_err *e)
{
    sp_out o;
    if (sp_out_check(path, "output", &o, e) || npy_stage(&o, a, e)) return -1;
    return sp_outs_commit(&o, 1, e);
}

void npy_free(npy_array *a)
{
    free(a->data);
    a->data = NULL;
    a->count = 0;
}

double npy_get(const npy_array *a, size_t i)
{
    switch (a->dtype) {
    case NPY_F16: {
        uint16_t h;
        memcpy(&h, (const char *)a->data + 2 * i, 2);
        return fp16_to_float(h);
    }
    case NPY_F32: {
        float f;
        memcpy(&f, (const char *)a->data + 4 * i, 4);
        return f;
    }
    case NPY_F64: {
        double x;
        memcpy(&x, (const char *)a->data + 8 * i, 8);
        return x;
    }
    }
    return 0;
}

int npy_expect_shape(const npy_array *a, const char *path, int ndim, const int64_t *shape, sp_err *e)
{
    int same = a->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = a->shape[d] == shape[d];
    if (same) return 0;
    char want[256], have[256];
    shape_str(want, sizeof want, ndim, shape);
    shape_str(have, sizeof have, a->ndim, a->shape);
    return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "has shape %s, expected %s", have, want);
}
