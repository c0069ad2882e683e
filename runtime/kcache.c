/* The on-disk cubin cache; the file format is described in kcache.h. */
#include "runtime/kcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "codegen/kernel_sources.h"
#include "common/fileio.h"

#ifndef SPATTN_VERSION
#define SPATTN_VERSION "0"
#endif

#define KCACHE_MAGIC    "SPATTNK1"
#define KCACHE_FORMAT   1u
#define KCACHE_MAX_FILE ((size_t)1 << 30)   /* a cubin is a few hundred KiB; anything near this is garbage */

/* ---- paths and keys ---------------------------------------------------------- */

/* snprintf into a fixed buffer where truncation is acceptable (messages) or
 * checked by the caller (paths: returns -1 if it did not fit). */
static int fmt_into(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fmt_into(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return len < 0 || (size_t)len >= n ? -1 : 0;
}

int kcache_dir(char *buf, size_t n, sp_err *e)
{
    const char *v;
    int len;
    if ((v = getenv("SPATTN_CACHE_DIR")) && *v) len = snprintf(buf, n, "%s", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v) len = snprintf(buf, n, "%s/spattn/kernels", v);
    else if ((v = getenv("HOME")) && *v) len = snprintf(buf, n, "%s/.cache/spattn/kernels", v);
    else {
        sp_fail(e, SP_EXIT_USAGE, "no kernel cache directory: none of SPATTN_CACHE_DIR, XDG_CACHE_HOME, HOME is set");
        sp_hint(e, "set SPATTN_CACHE_DIR to a writable directory");
        return -1;
    }
    if (len < 0 || (size_t)len >= n) return sp_fail(e, SP_EXIT_USAGE, "kernel cache directory path is too long");
    /* "dir/" and "dir" are the same cache; keep names tidy in messages. */
    while (len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
    return 0;
}

static void hash_str(XXH3_state_t *st, const char *s)
{
    XXH3_128bits_update(st, s, strlen(s) + 1);   /* with the NUL: fields cannot run together */
}

/* Hash what compiles, not the comments: the generated source's comments
 * name the spec, its path and its per-head intervals, none of which changes
 * the binary, so renaming a spec or editing a comment must not recompile.
 * A small scanner that knows //, block comments and string and character
 * literals (asm strings hold "/" and "*" freely). */
static void hash_code(XXH3_state_t *st, const char *s)
{
    const char *run = s;   /* start of the code not yet hashed */
    while (*s) {
        if (s[0] == '"' || s[0] == '\'') {
            char q = *s++;
            while (*s && *s != q) s += s[0] == '\\' && s[1] ? 2 : 1;
            if (*s) s++;
        } else if (s[0] == '/' && (s[1] == '/' || s[1] == '*')) {
            XXH3_128bits_update(st, run, (size_t)(s - run));
            if (s[1] == '/') {
                while (*s && *s != '\n') s++;
            } else {
                const char *end = strstr(s + 2, "*/");
                s = end ? end + 2 : s + strlen(s);
            }
            XXH3_128bits_update(st, " ", 1);   /* a comment separates tokens */
            run = s;
        } else {
            s++;
        }
    }
    XXH3_128bits_update(st, run, (size_t)(s - run));
}

void kcache_key(const char *src, const char *arch, int nvrtc_version, char out[KCACHE_KEY_LEN + 1])
{
    XXH3_state_t st;
    memset(&st, 0, sizeof st);
    XXH3_128bits_reset(&st);
    char num[64];
    hash_str(&st, "spattn-kcache-4");   /* 2: the driver version left the key; 3: comments did; 4: the kernels/ headers */
    hash_str(&st, SPATTN_VERSION);   /* NVRTC options live in the code: a new version may change them */
    hash_str(&st, arch);
    snprintf(num, sizeof num, "nvrtc %d", nvrtc_version);
    hash_str(&st, num);
    /* What NVRTC compiles: src with the kernels/x.cuh files it includes pasted in
     * (codegen/kernel_sources.h), without #line markers: like the comments, line
     * numbers change no code.  Out of memory: src and every header. */
    strbuf flat = STRBUF_INIT;
    sp_err ignored = { 0 };
    if (kernel_sources_flatten(&flat, src, NULL, &ignored) == 0) {
        hash_code(&st, flat.buf);
    } else {
        hash_code(&st, src);
        for (int i = 0; i < kernel_sources_count; i++) hash_code(&st, kernel_sources[i].text);
    }
    sb_free(&flat);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", c.digest[i]);
}

/* <32 lowercase hex>.cubin, and (tail != NULL) what follows ".cubin". */
static int entry_name(const char *name, const char **tail)
{
    for (int i = 0; i < KCACHE_KEY_LEN; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return 0;
    }
    if (strncmp(name + KCACHE_KEY_LEN, ".cubin", 6) != 0) return 0;
    if (tail) *tail = name + KCACHE_KEY_LEN + 6;
    return 1;
}

/* ---- the entry format ------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

/* NUL-padded copy of s into a fixed field (truncated to n - 1 bytes). */
static void put_str(unsigned char *p, size_t n, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    if (len > n - 1) len = n - 1;
    memset(p, 0, n);
    if (len) memcpy(p, s, len);
}

static void get_str(char *dst, const unsigned char *p, size_t n)
{
    size_t len = 0;
    while (len < n - 1 && p[len]) len++;
    memcpy(dst, p, len);
    dst[len] = '\0';
}

/* Build a whole entry in memory (caller frees). */
static unsigned char *encode(const char *key, const char *arch, const char *label, int driver_version,
                             const sp_compiled *c, size_t *size)
{
    size_t log_len = c->log ? strlen(c->log) : 0;
    size_t n = KCACHE_HEADER_BYTES + c->len + log_len;
    unsigned char *b = calloc(1, n);
    if (!b) return NULL;
    memcpy(b, KCACHE_MAGIC, 8);
    put32(b + 8, KCACHE_FORMAT);
    put32(b + 12, KCACHE_HEADER_BYTES);
    put64(b + 24, c->len);
    put64(b + 32, log_len);
    put32(b + 40, (uint32_t)nvrtc_version());
    put32(b + 44, (uint32_t)driver_version);
    memcpy(b + 48, key, KCACHE_KEY_LEN);
    put_str(b + 80, KCACHE_ARCH_MAX, arch);
    put_str(b + 96, KCACHE_LABEL_MAX, label);
    memcpy(b + KCACHE_HEADER_BYTES, c->cubin, c->len);
    if (log_len) memcpy(b + KCACHE_HEADER_BYTES + c->len, c->log, log_len);
    put64(b + 16, XXH64(b + 24, n - 24, 0));
    *size = n;
    return b;
}

/* Header fields, checked against the file size; the hash is checked by the
 * caller that needs the payload.  0 if the header is sound. */
static int decode_header(const unsigned char *b, size_t size, kcache_entry *out)
{
    memset(out, 0, sizeof *out);
    if (size < KCACHE_HEADER_BYTES || memcmp(b, KCACHE_MAGIC, 8) != 0) return -1;
    if (get32(b + 8) != KCACHE_FORMAT || get32(b + 12) != KCACHE_HEADER_BYTES) return -1;
    uint64_t cubin_len = get64(b + 24), log_len = get64(b + 32);
    if (cubin_len == 0 || cubin_len > KCACHE_MAX_FILE || log_len > KCACHE_MAX_FILE ||
        KCACHE_HEADER_BYTES + cubin_len + log_len != size)
        return -1;
    memcpy(out->key, b + 48, KCACHE_KEY_LEN);
    out->key[KCACHE_KEY_LEN] = '\0';
    for (int i = 0; i < KCACHE_KEY_LEN; i++) {
        char c = out->key[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
    }
    get_str(out->arch, b + 80, KCACHE_ARCH_MAX);
    get_str(out->label, b + 96, KCACHE_LABEL_MAX);
    out->nvrtc_version = (int)get32(b + 40);
    out->driver_version = (int)get32(b + 44);
    out->bytes = size;
    out->valid = 1;
    return 0;
}

/* A whole entry: header sound and the hash over everything after it
 * matches.  0 if so (out filled, valid = 1). */
static int verify_entry(const unsigned char *b, size_t size, kcache_entry *out)
{
    if (decode_header(b, size, out) == 0 && get64(b + 16) == XXH64(b + 24, size - 24, 0)) return 0;
    out->valid = 0;
    return -1;
}

/* Read a whole file with one size check; ENOENT is reported as *missing. */
static int read_all(const char *path, unsigned char **data, size_t *size, int *missing)
{
    *data = NULL;
    *size = 0;
    *missing = 0;
    /* O_NONBLOCK: a FIFO planted in the cache must not block the open; the
     * S_ISREG check below refuses it (and the flag is moot for a regular file). */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { *missing = errno == ENOENT; return -1; }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > KCACHE_MAX_FILE) { close(fd); return -1; }
    size_t n = (size_t)st.st_size, got = 0;
    unsigned char *b = malloc(n ? n : 1);
    if (!b) { close(fd); return -1; }
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) { free(b); return -1; }
    *data = b;
    *size = n;
    return 0;
}

/* Load and fully verify an entry.  1 hit (out filled), 0 missing, -1 damaged. */
static int load_entry(const char *path, const char *key, sp_compiled *out)
{
    unsigned char *b;
    size_t size;
    int missing;
    if (read_all(path, &b, &size, &missing)) return missing ? 0 : -1;
    kcache_entry h;
    if (verify_entry(b, size, &h) || memcmp(h.key, key, KCACHE_KEY_LEN) != 0) { free(b); return -1; }
    size_t cubin_len = (size_t)get64(b + 24), log_len = (size_t)get64(b + 32);
    out->cubin = malloc(cubin_len);
    out->log = malloc(log_len + 1);
    if (!out->cubin || !out->log) { free(b); nvrtc_compiled_free(out); return -1; }
    memcpy(out->cubin, b + KCACHE_HEADER_BYTES, cubin_len);
    memcpy(out->log, b + KCACHE_HEADER_BYTES + cubin_len, log_len);
    out->log[log_len] = '\0';
    out->len = cubin_len;
    free(b);
    return 1;
}

/* ---- get ---------------------------------------------------------------------- */

int kcache_get(const char *src, const char *arch, int driver_version, const char *label,
               sp_compiled *out, kcache_info *info, sp_err *e)
{
    kcache_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    memset(out, 0, sizeof *out);
    kcache_key(src, arch, nvrtc_version(), info->key);

    char dir[4096], path[4200];
    sp_err derr = { 0 };
    int have_dir = kcache_dir(dir, sizeof dir, &derr) == 0;
    if (have_dir) {
        if (fmt_into(path, sizeof path, "%s/%s.cubin", dir, info->key)) {
            have_dir = 0;
            sp_fail(&derr, SP_EXIT_USAGE, "kernel cache directory path is too long");
        }
    }
    if (have_dir) {
        int r = load_entry(path, info->key, out);
        if (r == 1) { info->hit = 1; return 0; }
        if (r < 0) {
            /* Damaged (truncated by a full disk, edited, another format):
             * remove it so the fresh compile below replaces it. */
            unlink(path);
            info->rebuilt = 1;
        }
    }

    if (nvrtc_compile(src, arch, out, e)) return -1;

    if (!have_dir) {
        info->store_failed = 1;
        fmt_into(info->why, sizeof info->why, "%s", derr.msg);
        return 0;
    }
    size_t size;
    unsigned char *b = encode(info->key, arch, label, driver_version, out, &size);
    sp_err werr = { 0 };
    if (!b) sp_fail(&werr, SP_EXIT_FAIL, "out of memory");
    else if (sp_mkdir_p(dir, &werr) == 0) sp_write_file_atomic(path, b, size, &werr);
    free(b);
    if (werr.code) {
        info->store_failed = 1;
        fmt_into(info->why, sizeof info->why, "cannot store in the kernel cache %s: %s%s%s", dir,
                 werr.file[0] ? werr.file : "", werr.file[0] ? ": " : "", werr.msg);
    }
    return 0;
}

/* ---- list and clear ------------------------------------------------------------ */

static int cmp_newest(const void *a, const void *b)
{
    const kcache_entry *x = a, *y = b;
    if (x->mtime != y->mtime) return x->mtime < y->mtime ? 1 : -1;
    return strcmp(x->key, y->key);
}

static int open_dir(const char *dir, char *buf, size_t n, DIR **d, sp_err *e)
{
    if (!dir) {
        if (kcache_dir(buf, n, e)) return -1;
        dir = buf;
    } else if (dir != buf) {
        snprintf(buf, n, "%s", dir);
    }
    *d = opendir(buf);
    if (!*d && errno != ENOENT)
        return sp_fail_at(e, SP_EXIT_FAIL, buf, 0, 0, "cannot read the kernel cache directory: %s", strerror(errno));
    return 0;
}

int kcache_list(const char *dir, kcache_entry **out, int *n, sp_err *e)
{
    *out = NULL;
    *n = 0;
    char path[4096];
    DIR *d;
    if (open_dir(dir, path, sizeof path, &d, e)) return -1;
    if (!d) return 0;
    size_t cap = 0, count = 0;
    kcache_entry *v = NULL;
    struct dirent *de;
    size_t dlen = strlen(path);
    while ((de = readdir(d))) {
        const char *tail;
        if (!entry_name(de->d_name, &tail) || *tail) continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            kcache_entry *nv = realloc(v, cap * sizeof *v);
            if (!nv) { free(v); closedir(d); return sp_fail(e, SP_EXIT_FAIL, "out of memory"); }
            v = nv;
        }
        char file[4200];
        if (fmt_into(file, sizeof file, "%.*s/%s", (int)dlen, path, de->d_name)) continue;
        struct stat st;
        if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) continue;   /* vanished meanwhile */
        kcache_entry *en = &v[count];
        /* The whole entry is checked, as kcache_get would: a flipped byte
         * in the cubin is as damaged as a bad header. */
        unsigned char *b = NULL;
        size_t size = 0;
        int missing, bad = read_all(file, &b, &size, &missing) || verify_entry(b, size, en) ||
                           strncmp(en->key, de->d_name, KCACHE_KEY_LEN) != 0;
        free(b);
        if (bad) {
            memset(en, 0, sizeof *en);
            memcpy(en->key, de->d_name, KCACHE_KEY_LEN);   /* damaged: list it so the user sees it */
        }
        en->bytes = (size_t)st.st_size;
        en->mtime = st.st_mtime;
        count++;
    }
    closedir(d);
    if (count) qsort(v, count, sizeof *v, cmp_newest);
    *out = v;
    *n = (int)count;
    return 0;
}

int kcache_clear(const char *dir, int *removed, sp_err *e)
{
    *removed = 0;
    char path[4096];
    DIR *d;
    if (open_dir(dir, path, sizeof path, &d, e)) return -1;
    if (!d) return 0;
    struct dirent *de;
    int failed = 0;
    char bad[4200] = "";
    int bad_errno = 0;
    while ((de = readdir(d))) {
        const char *tail;
        /* Temp files of sp_write_file_atomic: ".spattn-XXXXXX" now,
         * "<key>.cubin.tmp.XXXXXX" from older versions. */
        int is_tmp = strncmp(de->d_name, ".spattn-", 8) == 0 && strlen(de->d_name) == 14;
        int is_entry = 0;
        if (!is_tmp) {
            if (!entry_name(de->d_name, &tail)) continue;
            is_entry = *tail == '\0';
            if (!is_entry && strncmp(tail, ".tmp.", 5) != 0) continue;
        }
        char file[4200];
        if (fmt_into(file, sizeof file, "%s/%s", path, de->d_name)) continue;
        if (unlink(file) == 0) { if (is_entry) (*removed)++; }
        else if (errno != ENOENT) { failed++; bad_errno = errno; fmt_into(bad, sizeof bad, "%s", file); }
    }
    closedir(d);
    if (failed)
        return sp_fail_at(e, SP_EXIT_FAIL, bad, 0, 0, "cannot remove %d cache file%s: %s", failed,
                          failed == 1 ? "" : "s", strerror(bad_errno));
    return 0;
}
