#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* What kind of thing a non-regular file is, for messages. */
static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device" : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* A pipe handed over as /dev/fd/N (the shell's <(...)) or as /dev/stdin
 * (`spattn plan -`): its writer exists, so reading it cannot block for ever,
 * unlike a named FIFO on disk.  The links are followed a few hops
 * (/dev/stdin -> /proc/self/fd/0 -> pipe:[N]). */
static int anonymous_pipe(const char *path)
{
    char cur[256], target[256];
    snprintf(cur, sizeof cur, "%s", path);
    for (int hop = 0; hop < 4; hop++) {
        ssize_t n = readlink(cur, target, sizeof target - 1);
        if (n < 0) return 0;
        target[n] = '\0';
        if (strncmp(target, "pipe:", 5) == 0) return 1;
        if (target[0] != '/') return 0;
        memcpy(cur, target, (size_t)n + 1);
    }
    return 0;
}

int sp_open_input(const char *path, sp_err *e)
{
    /* O_NONBLOCK: opening a FIFO for reading would wait for a writer; with
     * it the open returns at once and fstat below refuses the FIFO. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "cannot examine: %s", strerror(err));
    }
    if (!S_ISREG(st.st_mode) && !(S_ISFIFO(st.st_mode) && anonymous_pipe(path))) {
        close(fd);
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "is %s, not a regular file", kind_of(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

FILE *sp_fopen_input(const char *path, sp_err *e)
{
    int fd = sp_open_input(path, e);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "cannot open: %s", strerror(errno));
        close(fd);
    }
    return f;
}

int sp_read_file(const char *path, size_t max_bytes, char **data, size_t *len, sp_err *e)
{
    *data = NULL;
    if (len) *len = 0;
    FILE *f = sp_fopen_input(path, e);
    if (!f) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return sp_fail(e, SP_EXIT_FAIL, "out of memory reading %s", path); }
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char *p = realloc(buf, cap);
            if (!p) { free(buf); fclose(f); return sp_fail(e, SP_EXIT_FAIL, "out of memory reading %s", path); }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (max_bytes && n > max_bytes) {
            free(buf); fclose(f);
            return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "file is larger than %zu bytes", max_bytes);
        }
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "read error"); }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Output files */

/* The directory part of path ("." for a bare name) into buf. */
static int dir_of(const char *path, char *buf, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return snprintf(buf, cap, ".") >= (int)cap ? -1 : 0;
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= cap) return -1;
    memcpy(buf, path, n);
    buf[n] = '\0';
    return 0;
}

/* The absolute name that path's write lands on, for "two outputs, one
 * file": the real directory, then the base name. */
static int canonical_target(const char *path, char *out, size_t cap)
{
    char dir[PATH_MAX], real[PATH_MAX];
    if (dir_of(path, dir, sizeof dir) || !realpath(dir, real)) return -1;
    const char *slash = strrchr(path, '/');
    int n = snprintf(out, cap, "%s/%s", strcmp(real, "/") ? real : "", slash ? slash + 1 : path);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int sp_out_check(const char *path, const char *what, sp_out *out, sp_err *e)
{
    memset(out, 0, sizeof *out);
    out->path = path;
    if (!path || !*path) return sp_fail(e, SP_EXIT_USAGE, "%s: empty file name", what);
    if (strcmp(path, "-") == 0) {   /* standard output */
        snprintf(out->target, sizeof out->target, "-");
        return 0;
    }
    /* A symbolic link is written through: its target's content is
     * replaced (as a shell's '>' does), the link itself stays. */
    char target[PATH_MAX];
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (!realpath(path, target))
            return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s: symbolic link to a missing file: %s", what,
                              strerror(errno));
    } else if (snprintf(target, sizeof target, "%s", path) >= (int)sizeof target)
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s: %s", what, strerror(ENAMETOOLONG));
    if (stat(target, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s: is %s; outputs replace regular files only", what,
                              kind_of(st.st_mode));
    } else if (errno != ENOENT)
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s: %s", what, strerror(errno));
    char dir[PATH_MAX];
    if (dir_of(target, dir, sizeof dir) || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s: directory '%s' does not exist", what, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s: cannot write in directory '%s': %s", what, dir,
                          strerror(errno));
    if (canonical_target(target, out->target, sizeof out->target))
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "%s: %s", what, strerror(ENAMETOOLONG));
    return 0;
}

int sp_outs_distinct(const sp_out *outs, int n, const char *const *what, sp_err *e)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (outs[i].path && outs[j].path && strcmp(outs[i].target, outs[j].target) == 0)
                return sp_fail_at(e, SP_EXIT_USAGE, outs[i].path, 0, 0, "%s and %s name the same file", what[j],
                                  what[i]);
    return 0;
}

int sp_out_stage(sp_out *o, const void *data, size_t len, sp_err *e)
{
    if (strcmp(o->target, "-") == 0) {
        free(o->held);
        o->held = malloc(len ? len : 1);
        if (!o->held) return sp_fail(e, SP_EXIT_FAIL, "out of memory holding %zu bytes for standard output", len);
        memcpy(o->held, data, len);
        o->held_len = len;
        return 0;
    }
    /* A short temp name in the target's directory: the rename stays on one
     * file system, and a target name of NAME_MAX bytes still fits. */
    char dir[PATH_MAX];
    if (dir_of(o->target, dir, sizeof dir) ||
        snprintf(o->tmp, sizeof o->tmp, "%s/.spattn-XXXXXX", dir) >= (int)sizeof o->tmp)
        return sp_fail_at(e, SP_EXIT_FAIL, o->path, 0, 0, "%s", strerror(ENAMETOOLONG));
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int err = errno;
        o->tmp[0] = '\0';
        return sp_fail_at(e, SP_EXIT_FAIL, o->path, 0, 0, "cannot create temporary file: %s", strerror(err));
    }
    const char *p = data;
    size_t left = len;
    int err = 0;
    while (left > 0 && !err) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) { err = errno; break; }
        p += w;
        left -= (size_t)w;
    }
    fchmod(fd, 0644);
    if (!err && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && !err) err = errno;
    if (err) {
        unlink(o->tmp);
        o->tmp[0] = '\0';
        return sp_fail_at(e, SP_EXIT_FAIL, o->path, 0, 0, "write failed: %s", strerror(err));
    }
    return 0;
}

int sp_outs_commit(sp_out *outs, int n, sp_err *e)
{
    for (int i = 0; i < n; i++) {
        if (!outs[i].tmp[0]) continue;
        if (rename(outs[i].tmp, outs[i].target) != 0) {
            int err = errno;
            sp_outs_discard(outs, n);
            return sp_fail_at(e, SP_EXIT_FAIL, outs[i].path, 0, 0, "cannot rename temporary file into place: %s",
                              strerror(err));
        }
        outs[i].tmp[0] = '\0';
    }
    for (int i = 0; i < n; i++) {   /* standard output last, once every file is in place */
        if (!outs[i].held) continue;
        size_t w = fwrite(outs[i].held, 1, outs[i].held_len, stdout);
        int bad = w != outs[i].held_len || fflush(stdout) != 0;
        free(outs[i].held);
        outs[i].held = NULL;
        if (bad) return sp_fail(e, SP_EXIT_FAIL, "%s: cannot write standard output: %s", outs[i].path, strerror(errno));
    }
    return 0;
}

void sp_outs_discard(sp_out *outs, int n)
{
    for (int i = 0; i < n; i++) {
        if (outs[i].tmp[0]) {
            unlink(outs[i].tmp);
            outs[i].tmp[0] = '\0';
        }
        free(outs[i].held);
        outs[i].held = NULL;
    }
}

int sp_write_file_atomic(const char *path, const void *data, size_t len, sp_err *e)
{
    sp_out o;
    if (sp_out_check(path, "output", &o, e) || sp_out_stage(&o, data, len, e)) return -1;
    return sp_outs_commit(&o, 1, e);
}

int sp_mkdir_p(const char *path, sp_err *e)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf) return sp_fail(e, SP_EXIT_USAGE, "path too long: %s", path);
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return sp_fail_at(e, SP_EXIT_FAIL, buf, 0, 0, "cannot create directory: %s", strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return sp_fail_at(e, SP_EXIT_FAIL, buf, 0, 0, "cannot create directory: %s", strerror(errno));
    return 0;
}

int sp_parse_i64(const char *s, int64_t lo, int64_t hi, const char *what, int64_t *out, sp_err *e)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno)
        return sp_fail(e, SP_EXIT_USAGE, "%s: '%s' is not an integer", what, s);
    if (v < lo || v > hi)
        return sp_fail(e, SP_EXIT_USAGE, "%s: %lld is out of range [%lld, %lld]", what, v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

int sp_mul_i64(int64_t a, int64_t b, int64_t *out, sp_err *e)
{
    if (__builtin_mul_overflow(a, b, out))
        return sp_fail(e, SP_EXIT_USAGE, "the shape is too large: %lld x %lld overflows 64 bits", (long long)a,
                       (long long)b);
    return 0;
}

int sp_mul_size(size_t *out, sp_err *e, ...)
{
    va_list ap;
    va_start(ap, e);
    size_t r = 1, f;
    int over = 0;
    while ((f = va_arg(ap, size_t)) != 0) over |= __builtin_mul_overflow(r, f, &r);
    va_end(ap);
    if (over) return sp_fail(e, SP_EXIT_USAGE, "the shape is too large: its size overflows %zu bits", 8 * sizeof r);
    *out = r;
    return 0;
}

double sp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
