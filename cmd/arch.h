/* --arch names for commands that compile or pick tiles without a GPU
 * (gen, compile): "sm_80", "sm_86", "sm_89", "sm_90" or "sm_90a", ...
 * Hopper and later always compile for their "a" variant (sm_90 means
 * sm_90a), as nvrtc_arch_for_sm does for a real device. */
#ifndef SPATTN_CMD_ARCH_H
#define SPATTN_CMD_ARCH_H

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "runtime/nvrtc.h"

/* Parse one architecture name into its compute capability (*sm = 90) and
 * the NVRTC target (buf: "sm_90a").  The forward kernels use mma.sync with
 * bf16, which needs sm_80 or later.  -1 and SP_EXIT_USAGE otherwise. */
static inline int arch_parse(const char *name, int *sm, char *buf, int n, sp_err *e)
{
    const char *p = name;
    if (strncmp(p, "sm_", 3) == 0) p += 3;
    else if (strncmp(p, "sm", 2) == 0) p += 2;
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || (*end && strcmp(end, "a") != 0) || v < 80 || v > 200) {
        sp_fail(e, SP_EXIT_USAGE, "unsupported --arch '%s': expected sm_80 or later (sm_80, sm_86, sm_89, sm_90, sm_90a)",
                name);
        return -1;
    }
    *sm = (int)v;
    nvrtc_arch_for_sm(*sm, buf, n);
    return 0;
}

#endif
