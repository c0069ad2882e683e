#include "runtime/nvrtc.h"

#include <nvrtc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/kernel_sources.h"

const char *nvrtc_arch_for_sm(int sm, char *buf, int n)
{
    snprintf(buf, (size_t)n, "sm_%d%s", sm, sm >= 90 ? "a" : "");
    return buf;
}

int nvrtc_version(void)
{
    int major = 0, minor = 0;
    if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return 0;
    return major * 1000 + minor * 10;
}

void nvrtc_compiled_free(sp_compiled *c)
{
    if (!c) return;
    free(c->cubin);
    free(c->log);
    c->cubin = c->log = NULL;
    c->len = 0;
}

/* The first few lines of a compile log, for a one-screen error message. */
static void log_head(const char *log, char *out, size_t n)
{
    size_t len = 0;
    int lines = 0;
    for (const char *p = log; *p && lines < 6 && len + 1 < n; p++) {
        out[len++] = *p;
        if (*p == '\n') lines++;
    }
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == ' ')) len--;
    out[len] = '\0';
}

int nvrtc_compile(const char *src, const char *arch, sp_compiled *out, sp_err *e)
{
    memset(out, 0, sizeof *out);
    /* Every .cuh file of kernels/ as an in-memory header: src's `#include "x.cuh"`
     * lines find them by name (codegen/kernel_sources.h). */
    enum { MAX_HEADERS = 64 };
    const char *headers[MAX_HEADERS], *names[MAX_HEADERS];
    int nh = kernel_sources_count;
    if (nh > MAX_HEADERS) return sp_fail(e, SP_EXIT_FAIL, "internal: %d kernel sources, NVRTC gets at most %d", nh, MAX_HEADERS);
    for (int i = 0; i < nh; i++) {
        headers[i] = kernel_sources[i].text;
        names[i] = kernel_sources[i].name;
    }
    nvrtcProgram prog;
    nvrtcResult r = nvrtcCreateProgram(&prog, src, KERNEL_TU_NAME, nh, headers, names);
    if (r != NVRTC_SUCCESS) return sp_fail(e, SP_EXIT_GPU, "NVRTC: cannot create program: %s", nvrtcGetErrorString(r));

    char arch_opt[64];
    snprintf(arch_opt, sizeof arch_opt, "--gpu-architecture=%s", arch);
    /* -std=c++17: generated code uses constexpr and if constexpr.
     * --ptxas-options=-v: registers, shared memory and spills into the log. */
    const char *opts[] = { arch_opt, "-std=c++17", "--use_fast_math", "-default-device",
                           "--ptxas-options=-v", "-lineinfo" };
    r = nvrtcCompileProgram(prog, (int)(sizeof opts / sizeof opts[0]), opts);

    size_t log_len = 0;
    nvrtcGetProgramLogSize(prog, &log_len);
    out->log = calloc(1, log_len + 1);
    if (out->log && log_len) nvrtcGetProgramLog(prog, out->log);

    if (r != NVRTC_SUCCESS) {
        char head[600];
        log_head(out->log ? out->log : "", head, sizeof head);
        sp_fail(e, SP_EXIT_FAIL, "NVRTC compile for %s failed: %s\n%s", arch, nvrtcGetErrorString(r), head);
        nvrtcDestroyProgram(&prog);
        return -1;
    }
    size_t n = 0;
    r = nvrtcGetCUBINSize(prog, &n);
    if (r == NVRTC_SUCCESS && n > 0) {
        out->cubin = malloc(n);
        if (!out->cubin) { nvrtcDestroyProgram(&prog); return sp_fail(e, SP_EXIT_FAIL, "out of memory"); }
        r = nvrtcGetCUBIN(prog, out->cubin);
        out->len = n;
    }
    nvrtcDestroyProgram(&prog);
    if (r != NVRTC_SUCCESS || n == 0)
        return sp_fail(e, SP_EXIT_GPU, "NVRTC produced no cubin for %s: %s", arch, nvrtcGetErrorString(r));
    return 0;
}

/* ptxas -v writes, per kernel:
 *   ptxas info    : Function properties for NAME
 *   ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
 *   ptxas info    : Used 168 registers, used 1 barriers, 16384 bytes smem, 384 bytes cmem[0]
 * (the "Used" line follows "Compiling entry function 'NAME'"). */
int nvrtc_kernel_resources(const char *log, const char *name, sp_kres *out)
{
    memset(out, 0, sizeof *out);
    if (!log) return -1;
    char key[512];
    int found = 0;
    snprintf(key, sizeof key, "Function properties for %s\n", name);
    const char *p = strstr(log, key);
    if (p) {
        p = strchr(p, '\n');
        if (p) sscanf(p + 1, "%*[^0-9]%d bytes stack frame, %d bytes spill stores, %d bytes spill loads",
                      &out->stack_bytes, &out->spill_stores, &out->spill_loads);
        found = 1;
    }
    snprintf(key, sizeof key, "Compiling entry function '%s'", name);
    p = strstr(log, key);
    if (p) {
        const char *used = strstr(p, "Used ");
        const char *next = strstr(p + 1, "Compiling entry function");
        if (used && (!next || used < next)) {
            out->regs = atoi(used + 5);
            const char *eol = strchr(used, '\n');
            const char *sm = strstr(used, "bytes smem");
            if (sm && (!eol || sm < eol)) {
                const char *q = sm - 2;
                while (q > used && *q >= '0' && *q <= '9') q--;
                out->smem_static = atoi(q + 1);
            }
        }
        found = 1;
    }
    /* "ptxas info : (C7518) Potential Performance Loss: wgmma.mma_async
     * instructions are serialized due to ... in the function 'NAME'" */
    snprintf(key, sizeof key, "'%s'", name);
    for (p = strstr(log, "instructions are serialized"); p; p = strstr(p + 1, "instructions are serialized")) {
        const char *eol = strchr(p, '\n');
        const char *fn = strstr(p, key);
        if (fn && (!eol || fn < eol)) out->wgmma_serialized = 1;
    }
    return found ? 0 : -1;
}
