/* A memory budget: commands estimate what a run will allocate and refuse
 * up front (exit status 2, "needed X vs available Y") instead of being
 * killed by the kernel's OOM killer a minute later.
 *
 * Available memory is the smallest of: MemAvailable (/proc/meminfo, else
 * sysconf(_SC_AVPHYS_PAGES)), and the cgroup's limit minus its usage
 * (v2 memory.max / memory.current, v1 memory.limit_in_bytes /
 * memory.usage_in_bytes).  $SPATTN_MEM_LIMIT (bytes, or with a K, M, G or
 * T suffix, powers of 1024) replaces all of them, for tests and for
 * machines whose limits these files do not show. */
#ifndef SPATTN_MEM_H
#define SPATTN_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Bytes this process may still allocate; *source names where the number
 * came from ("MemAvailable", "cgroup limit", "SPATTN_MEM_LIMIT").
 * -1 (SP_EXIT_USAGE) only for a malformed SPATTN_MEM_LIMIT; when nothing
 * can be read, *bytes = UINT64_MAX (no limit known). */
int sp_mem_available(uint64_t *bytes, const char **source, sp_err *e);
/* 0 if need bytes fit; else SP_EXIT_USAGE: "WHAT: needed X vs available Y". */
int sp_mem_check(uint64_t need, const char *what, sp_err *e);

/* Byte counts that saturate at UINT64_MAX instead of wrapping: an
 * estimate too large to count is simply too large. */
static inline uint64_t sp_bytes_mul(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}
static inline uint64_t sp_bytes_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

#endif
