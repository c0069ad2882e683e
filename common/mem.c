#include "common/mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "123", "64K", "1.5G" -> bytes; -1 if malformed. */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0)) return -1;
    double mult = 1;
    switch (*end) {
    case 'T': case 't': mult *= 1024; /* fall through */
    case 'G': case 'g': mult *= 1024; /* fall through */
    case 'M': case 'm': mult *= 1024; /* fall through */
    case 'K': case 'k': mult *= 1024; end++; break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    v *= mult;
    *out = v >= 18446744073709549568.0 ? UINT64_MAX : (uint64_t)v;
    return 0;
}

/* The first number in a small file (cgroup files hold one), or -1 if it
 * cannot be read or says "max". */
static int read_u64(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    unsigned long long v;
    int ok = fscanf(f, "%llu", &v) == 1;
    fclose(f);
    if (!ok) return -1;
    *out = v;
    return 0;
}

/* MemAvailable from /proc/meminfo (kB), else free pages. */
static uint64_t host_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            fclose(f);
            return (uint64_t)kb * 1024;
        }
    if (f) fclose(f);
    long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : UINT64_MAX;
}

/* The cgroup's limit minus its usage (v2, then v1); UINT64_MAX if none. */
static uint64_t cgroup_available(void)
{
    static const char *const files[][2] = {
        { "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current" },
        { "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes" },
    };
    for (int i = 0; i < 2; i++) {
        uint64_t limit, used;
        if (read_u64(files[i][0], &limit) || read_u64(files[i][1], &used)) continue;
        if (limit >= ((uint64_t)1 << 60)) continue;   /* v1 writes "no limit" as a huge number */
        return limit > used ? limit - used : 0;
    }
    return UINT64_MAX;
}

int sp_mem_available(uint64_t *bytes, const char **source, sp_err *e)
{
    const char *env = getenv("SPATTN_MEM_LIMIT");
    if (env && *env) {
        if (parse_size(env, bytes))
            return sp_fail(e, SP_EXIT_USAGE, "SPATTN_MEM_LIMIT: '%s' is not a size (bytes, or with K, M, G or T)", env);
        *source = "SPATTN_MEM_LIMIT";
        return 0;
    }
    uint64_t host = host_available(), cg = cgroup_available();
    *bytes = cg < host ? cg : host;
    *source = cg < host ? "cgroup limit" : "MemAvailable";
    return 0;
}

static void human(uint64_t b, char *buf, size_t n)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 6) { v /= 1024; u++; }
    if (u == 0) snprintf(buf, n, "%llu B", (unsigned long long)b);
    else snprintf(buf, n, "%.1f %s", v, unit[u]);
}

int sp_mem_check(uint64_t need, const char *what, sp_err *e)
{
    uint64_t avail;
    const char *source;
    if (sp_mem_available(&avail, &source, e)) return -1;
    if (need <= avail) return 0;
    char n[32], a[32];
    human(need, n, sizeof n);
    human(avail, a, sizeof a);
    if (need == UINT64_MAX) snprintf(n, sizeof n, "more than 16 EiB");
    return sp_fail(e, SP_EXIT_USAGE, "%s: needed %s vs available %s (%s)", what, n, a, source);
}
