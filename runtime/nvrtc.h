/* Compiling generated CUDA C++ with NVRTC, and reading the compiler's
 * resource report.  Works without a GPU: the target architecture is a name. */
#ifndef SPATTN_NVRTC_H
#define SPATTN_NVRTC_H

#include <stddef.h>

#include "common/err.h"

typedef struct {
    char  *cubin;   /* the compiled ELF; malloc'd */
    size_t len;
    char  *log;     /* NVRTC's program log (with ptxas -v lines); malloc'd, may be "" */
} sp_compiled;

/* Resources of one kernel, from the ptxas -v report. */
typedef struct {
    int regs;
    int smem_static;    /* bytes */
    int stack_bytes;    /* stack frame */
    int spill_stores;   /* bytes */
    int spill_loads;    /* bytes */
    int wgmma_serialized; /* ptxas serialized the kernel's wgmma (C7518): a
                           * correct but slow kernel, treated like a spill */
} sp_kres;

/* The NVRTC target for compute capability sm (90 -> "sm_90a", 80 -> "sm_80").
 * sm_90 and later get their "a" variant so Hopper-only instructions compile. */
const char *nvrtc_arch_for_sm(int sm, char *buf, int n);
/* Compile src for arch ("sm_80", "sm_90a", ...) to a cubin, with -O3 and
 * ptxas -v.  On failure: SP_EXIT_FAIL and the log's first lines in the
 * message; out->log holds the whole log either way (when non-NULL). */
int nvrtc_compile(const char *src, const char *arch, sp_compiled *out, sp_err *e);
void nvrtc_compiled_free(sp_compiled *c);
/* NVRTC's version as major*1000 + minor*10 (13.0 -> 13000). */
int nvrtc_version(void);
/* Find kernel `name` in a ptxas -v log; 0 found, -1 not. */
int nvrtc_kernel_resources(const char *log, const char *name, sp_kres *out);

#endif
