#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int sp_read_file(const char *path, size_t max_bytes, char **data, size_t *len, sp_err *e)
{
    *data = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "is a directory, not a file");
    }
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

int sp_write_file_atomic(const char *path, const void *data, size_t len, sp_err *e)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    snprintf(tmp, plen + 32, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int err = errno;
        free(tmp);
        return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "cannot create temporary file: %s", strerror(err));
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            close(fd); unlink(tmp); free(tmp);
            return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "write failed: %s", strerror(err));
        }
        p += w;
        left -= (size_t)w;
    }
    fchmod(fd, 0644);
    if (fsync(fd) != 0 || close(fd) != 0) {
        int err = errno;
        unlink(tmp); free(tmp);
        return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "write failed: %s", strerror(err));
    }
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp); free(tmp);
        return sp_fail_at(e, SP_EXIT_FAIL, path, 0, 0, "cannot rename temporary file into place: %s", strerror(err));
    }
    free(tmp);
    return 0;
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

double sp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
