/* The CUDA driver API through dlopen.
 *
 * cuda.h maps many entry points to versioned symbols with #defines
 * (cuMemAlloc -> cuMemAlloc_v2, cuEventElapsedTime -> cuEventElapsedTime_v2).
 * CU_FUNCS lists the functions we use by their plain names; the table's
 * member names and the strings given to dlsym are macro-expanded the same
 * way, so we always bind the symbol whose prototype cuda.h declares, and
 * __typeof__ of that prototype types the pointer. */
#include "runtime/cu.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CU_FUNCS(X)                                                                                \
    X(cuGetErrorName) X(cuGetErrorString) X(cuInit) X(cuDriverGetVersion) X(cuDeviceGetCount)      \
    X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute) X(cuDeviceTotalMem)                  \
    X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease) X(cuCtxSetCurrent)                    \
    X(cuStreamCreate) X(cuStreamDestroy) X(cuStreamSynchronize)                                    \
    X(cuMemAlloc) X(cuMemFree) X(cuMemGetInfo) X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync)           \
    X(cuMemcpyDtoDAsync) X(cuMemsetD32Async) X(cuMemsetD16Async)                                   \
    X(cuModuleLoadData) X(cuModuleUnload) X(cuModuleGetFunction) X(cuFuncGetAttribute)             \
    X(cuFuncSetAttribute) X(cuLaunchKernelEx)                                                      \
    X(cuEventCreate) X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime) X(cuEventDestroy)       \
    X(cuTensorMapEncodeTiled)

#define CU_STR_(x) #x
#define CU_STR(x) CU_STR_(x)   /* expands cuda.h's #define first: "cuMemAlloc_v2" */

static struct {
#define CU_MEMBER(f) __typeof__(f) *f;
    CU_FUNCS(CU_MEMBER)
#undef CU_MEMBER
    /* Drivers before CUDA 12.8 lack cuEventElapsedTime_v2; the plain symbol
     * has the same prototype. */
    CUresult (*event_elapsed_v1)(float *, CUevent, CUevent);
} D;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static sp_err load_err;      /* outcome of the one load + cuInit; code 0 = fine */

/* Names for when the driver cannot name its own error (a stub library, a
 * failed cuInit): the ones a user is likely to meet. */
static const struct { CUresult r; const char *name, *desc; } known_errors[] = {
    { CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument" },
    { CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory" },
    { CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error" },
    { CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library" },
    { CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected" },
    { CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal" },
    { CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination" },
};

/* "CUDA error CUDA_ERROR_X (description) while <what>". */
static int cu_fail(sp_err *e, CUresult r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cu_fail(sp_err *e, CUresult r, const char *fmt, ...)
{
    const char *name = NULL, *desc = NULL;
    if (D.cuGetErrorName) D.cuGetErrorName(r, &name);
    if (D.cuGetErrorString) D.cuGetErrorString(r, &desc);
    for (size_t i = 0; i < sizeof known_errors / sizeof known_errors[0] && !name; i++)
        if (known_errors[i].r == r) { name = known_errors[i].name; if (!desc) desc = known_errors[i].desc; }
    char code[32];
    if (!name) { snprintf(code, sizeof code, "%d", (int)r); name = code; }
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    sp_fail(e, SP_EXIT_GPU, "CUDA error %s (%s) while %s", name, desc ? desc : "no description", what);
    if (r == CUDA_ERROR_NO_DEVICE || r == CUDA_ERROR_STUB_LIBRARY || r == CUDA_ERROR_INVALID_DEVICE)
        sp_hint(e, "no usable GPU: check CUDA_VISIBLE_DEVICES and nvidia-smi");
    return -1;
}

#define CU_TRY(call, ...) do { CUresult r_ = (call); if (r_ != CUDA_SUCCESS) return cu_fail(e, r_, __VA_ARGS__); } while (0)

static void load_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        sp_fail(&load_err, SP_EXIT_GPU, "no CUDA driver (libcuda.so.1 not found): %s", why ? why : "dlopen failed");
        sp_hint(&load_err, "this needs an NVIDIA GPU and its driver");
        return;
    }
    struct { const char *name; void *slot; } syms[] = {
#define CU_ENTRY(f) { CU_STR(f), &D.f },
        CU_FUNCS(CU_ENTRY)
#undef CU_ENTRY
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(h, syms[i].name);
        if (!p && strcmp(syms[i].name, "cuEventElapsedTime_v2") == 0) {
            void *old = dlsym(h, "cuEventElapsedTime");
            memcpy(&D.event_elapsed_v1, &old, sizeof old);
            if (old) continue;
        }
        if (!p) {
            memset(&D, 0, sizeof D);
            sp_fail(&load_err, SP_EXIT_GPU, "the CUDA driver libcuda.so.1 lacks %s (driver too old for CUDA 13?)",
                    syms[i].name);
            sp_hint(&load_err, "update the NVIDIA driver");
            return;   /* keep the library loaded: unloading a driver is not worth the risk */
        }
        memcpy(syms[i].slot, &p, sizeof p);
    }
    CUresult r = D.cuInit(0);
    if (r != CUDA_SUCCESS) cu_fail(&load_err, r, "initialising the CUDA driver (cuInit)");
}

int cu_init(sp_err *e)
{
    pthread_once(&load_once, load_driver);
    if (load_err.code) {
        if (e) *e = load_err;
        return -1;
    }
    return 0;
}

int cu_driver_version(int *version, sp_err *e)
{
    *version = 0;
    if (cu_init(e)) return -1;
    CU_TRY(D.cuDriverGetVersion(version), "reading the driver version");
    return 0;
}

int cu_device_count(int *n, sp_err *e)
{
    *n = 0;
    if (cu_init(e)) return -1;
    CU_TRY(D.cuDeviceGetCount(n), "counting CUDA devices");
    return 0;
}

int cu_probe(void)
{
    sp_err e = { 0 };
    int n = 0;
    return cu_device_count(&n, &e) == 0 && n > 0;
}

static int attr(CUdevice dev, CUdevice_attribute a, int *v, const char *what, sp_err *e)
{
    CU_TRY(D.cuDeviceGetAttribute(v, a, dev), "reading the device's %s", what);
    return 0;
}

int cu_device_query(int ordinal, sp_gpu *g, sp_err *e)
{
    memset(g, 0, sizeof *g);
    int n;
    if (cu_device_count(&n, e)) return -1;
    if (n == 0) {
        sp_fail(e, SP_EXIT_GPU, "no CUDA device is visible");
        sp_hint(e, "check CUDA_VISIBLE_DEVICES and nvidia-smi");
        return -1;
    }
    if (ordinal < 0 || ordinal >= n) {
        sp_fail(e, SP_EXIT_GPU, "--gpu %d: only %d CUDA device%s visible (0..%d)", ordinal, n, n == 1 ? " is" : "s are",
                n - 1);
        sp_hint(e, "CUDA_VISIBLE_DEVICES renumbers devices from 0");
        return -1;
    }
    g->ordinal = ordinal;
    CU_TRY(D.cuDeviceGet(&g->dev, ordinal), "opening CUDA device %d", ordinal);
    CU_TRY(D.cuDeviceGetName(g->name, (int)sizeof g->name, g->dev), "reading the name of device %d", ordinal);
    CU_TRY(D.cuDriverGetVersion(&g->driver_version), "reading the driver version");
    int major, minor, smem;
    if (attr(g->dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, &major, "compute capability", e) ||
        attr(g->dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, &minor, "compute capability", e) ||
        attr(g->dev, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, &g->sm_count, "SM count", e) ||
        attr(g->dev, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, &smem, "opt-in shared memory", e) ||
        attr(g->dev, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, &g->l2_bytes, "L2 size", e))
        return -1;
    g->sm = 10 * major + minor;
    g->smem_optin = (size_t)smem;
    CU_TRY(D.cuDeviceTotalMem(&g->total_mem, g->dev), "reading the memory size of device %d", ordinal);
    return 0;
}

int cu_open(int ordinal, sp_gpu *g, sp_err *e)
{
    if (cu_device_query(ordinal, g, e)) return -1;
    CUresult r = D.cuDevicePrimaryCtxRetain(&g->ctx, g->dev);
    if (r != CUDA_SUCCESS) {
        g->ctx = NULL;
        return cu_fail(e, r, "creating the context of device %d (%s)", ordinal, g->name);
    }
    r = D.cuCtxSetCurrent(g->ctx);
    if (r == CUDA_SUCCESS) r = D.cuStreamCreate(&g->stream, CU_STREAM_NON_BLOCKING);
    if (r != CUDA_SUCCESS) {
        cu_fail(e, r, "setting up device %d (%s)", ordinal, g->name);
        g->stream = NULL;
        cu_close(g);
        return -1;
    }
    return 0;
}

void cu_close(sp_gpu *g)
{
    if (!g || !D.cuInit) return;
    if (g->stream) {
        D.cuStreamSynchronize(g->stream);
        D.cuStreamDestroy(g->stream);
        g->stream = NULL;
    }
    if (g->ctx) {
        D.cuDevicePrimaryCtxRelease(g->dev);
        g->ctx = NULL;
    }
}

/* "2.0 GiB" / "512 KiB", for messages. */
static const char *human(size_t bytes, char *buf, size_t n)
{
    if (bytes >= (1u << 30)) snprintf(buf, n, "%.1f GiB", (double)bytes / (1u << 30));
    else if (bytes >= (1u << 20)) snprintf(buf, n, "%.1f MiB", (double)bytes / (1u << 20));
    else snprintf(buf, n, "%zu bytes", bytes);
    return buf;
}

int cu_malloc(sp_gpu *g, size_t bytes, sp_dptr *p, sp_err *e)
{
    (void)g;
    *p = 0;
    char h[32];
    CUdeviceptr d = 0;
    CU_TRY(D.cuMemAlloc(&d, bytes ? bytes : 1), "allocating %s of device memory", human(bytes, h, sizeof h));
    *p = (sp_dptr)d;
    return 0;
}

void cu_free(sp_gpu *g, sp_dptr p)
{
    (void)g;
    if (p && D.cuMemFree) D.cuMemFree((CUdeviceptr)p);
}

int cu_upload(sp_gpu *g, sp_dptr dst, const void *src, size_t bytes, sp_err *e)
{
    char h[32];
    if (bytes == 0) return 0;
    CU_TRY(D.cuMemcpyHtoDAsync((CUdeviceptr)dst, src, bytes, g->stream), "copying %s to the GPU",
           human(bytes, h, sizeof h));
    CU_TRY(D.cuStreamSynchronize(g->stream), "copying %s to the GPU", human(bytes, h, sizeof h));
    return 0;
}

int cu_download(sp_gpu *g, void *dst, sp_dptr src, size_t bytes, sp_err *e)
{
    char h[32];
    if (bytes == 0) return 0;
    CU_TRY(D.cuMemcpyDtoHAsync(dst, (CUdeviceptr)src, bytes, g->stream), "copying %s from the GPU",
           human(bytes, h, sizeof h));
    CU_TRY(D.cuStreamSynchronize(g->stream), "copying %s from the GPU (or running the work before it)",
           human(bytes, h, sizeof h));
    return 0;
}

int cu_copy(sp_gpu *g, sp_dptr dst, sp_dptr src, size_t bytes, sp_err *e)
{
    char h[32];
    if (bytes == 0) return 0;
    CU_TRY(D.cuMemcpyDtoDAsync((CUdeviceptr)dst, (CUdeviceptr)src, bytes, g->stream), "copying %s on the GPU",
           human(bytes, h, sizeof h));
    return 0;
}

int cu_fill32(sp_gpu *g, sp_dptr p, uint32_t value, size_t count, sp_err *e)
{
    if (count == 0) return 0;
    CU_TRY(D.cuMemsetD32Async((CUdeviceptr)p, value, count, g->stream), "filling %zu 32-bit words", count);
    return 0;
}

int cu_fill16(sp_gpu *g, sp_dptr p, uint16_t value, size_t count, sp_err *e)
{
    if (count == 0) return 0;
    CU_TRY(D.cuMemsetD16Async((CUdeviceptr)p, value, count, g->stream), "filling %zu 16-bit words", count);
    return 0;
}

int cu_mem_info(sp_gpu *g, size_t *free_bytes, size_t *total_bytes, sp_err *e)
{
    (void)g;
    CU_TRY(D.cuMemGetInfo(free_bytes, total_bytes), "reading free device memory");
    return 0;
}

int cu_module_load(sp_gpu *g, const void *cubin, size_t len, CUmodule *m, sp_err *e)
{
    (void)g; (void)len;
    *m = NULL;
    CU_TRY(D.cuModuleLoadData(m, cubin), "loading a compiled kernel module (%zu bytes)", len);
    return 0;
}

void cu_module_unload(sp_gpu *g, CUmodule m)
{
    (void)g;
    if (m && D.cuModuleUnload) D.cuModuleUnload(m);
}

int cu_function(CUmodule m, const char *name, CUfunction *f, sp_err *e)
{
    *f = NULL;
    CU_TRY(D.cuModuleGetFunction(f, m, name), "looking up kernel %s in its module", name);
    return 0;
}

int cu_func_attr(CUfunction f, CUfunction_attribute a, int *value, sp_err *e)
{
    CU_TRY(D.cuFuncGetAttribute(value, a, f), "reading kernel attribute %d", (int)a);
    return 0;
}

/* The launch, after raising f's dynamic shared memory limit where it needs more than 48 KiB;
 * dependent: with programmatic stream serialization (cu.h). */
static int launch(sp_gpu *g, CUfunction f, const unsigned grid[3], unsigned threads, unsigned smem, void **args,
                  int dependent, sp_err *e)
{
    if (smem > 48 * 1024) {
        if (g->smem_optin && smem > g->smem_optin)
            return sp_fail(e, SP_EXIT_GPU, "a kernel needs %u bytes of shared memory; %s allows at most %zu per block",
                           smem, g->name, g->smem_optin);
        CU_TRY(D.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)smem),
               "allowing %u bytes of dynamic shared memory", smem);
    }
    CUlaunchAttribute attr = { .id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION };
    attr.value.programmaticStreamSerializationAllowed = 1;
    const CUlaunchConfig c = { .gridDimX = grid[0], .gridDimY = grid[1], .gridDimZ = grid[2], .blockDimX = threads,
                               .blockDimY = 1, .blockDimZ = 1, .sharedMemBytes = smem, .hStream = g->stream,
                               .attrs = dependent ? &attr : NULL, .numAttrs = dependent ? 1u : 0u };
    CU_TRY(D.cuLaunchKernelEx(&c, f, args, NULL),
           "launching a kernel (grid %ux%ux%u, %u threads, %u bytes shared memory%s)", grid[0], grid[1], grid[2],
           threads, smem, dependent ? ", dependent launch" : "");
    return 0;
}

int cu_launch(sp_gpu *g, CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned threads,
              unsigned smem, void **args, sp_err *e)
{
    return launch(g, f, (const unsigned[3]){ gx, gy, gz }, threads, smem, args, 0, e);
}

int cu_launch_dependent(sp_gpu *g, CUfunction f, const unsigned grid[3], unsigned threads, unsigned smem,
                        void **args, sp_err *e)
{
    return launch(g, f, grid, threads, smem, args, 1, e);
}

static int tensor_map(CUtensorMap *map, CUtensorMapDataType type, sp_dptr base, const uint64_t dims[4],
                      const uint64_t strides_bytes[3], const uint32_t box[4], sp_err *e)
{
    if (cu_init(e)) return -1;
    static const cuuint32_t unit[4] = { 1, 1, 1, 1 };
    cuuint64_t d[4], st[3];
    cuuint32_t b[4];
    for (int i = 0; i < 4; i++) { d[i] = dims[i]; b[i] = box[i]; }
    for (int i = 0; i < 3; i++) st[i] = strides_bytes[i];
    CU_TRY(D.cuTensorMapEncodeTiled(map, type, 4, (void *)(uintptr_t)base, d, st, b, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                    CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                    CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
           "encoding a TMA tensor map (dims %llu x %llu x %llu x %llu, box %u x %u)", (unsigned long long)dims[0],
           (unsigned long long)dims[1], (unsigned long long)dims[2], (unsigned long long)dims[3], box[0], box[1]);
    return 0;
}

int cu_tensor_map_16bit(CUtensorMap *map, int bf16, sp_dptr base, const uint64_t dims[4],
                        const uint64_t strides_bytes[3], const uint32_t box[4], sp_err *e)
{
    return tensor_map(map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, base, dims,
                      strides_bytes, box, e);
}

int cu_tensor_map_f32(CUtensorMap *map, sp_dptr base, const uint64_t dims[4], const uint64_t strides_bytes[3],
                      const uint32_t box[4], sp_err *e)
{
    return tensor_map(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, base, dims, strides_bytes, box, e);
}

int cu_sync(sp_gpu *g, sp_err *e)
{
    CU_TRY(D.cuStreamSynchronize(g->stream), "waiting for the GPU (a kernel failed)");
    return 0;
}

int cu_event_new(sp_gpu *g, CUevent *ev, sp_err *e)
{
    (void)g;
    *ev = NULL;
    CU_TRY(D.cuEventCreate(ev, CU_EVENT_DEFAULT), "creating a CUDA event");
    return 0;
}

int cu_event_record(sp_gpu *g, CUevent ev, sp_err *e)
{
    CU_TRY(D.cuEventRecord(ev, g->stream), "recording a CUDA event");
    return 0;
}

int cu_event_ms(sp_gpu *g, CUevent start, CUevent stop, float *ms, sp_err *e)
{
    (void)g;
    *ms = 0;
    CU_TRY(D.cuEventSynchronize(stop), "waiting for a timed kernel (a kernel failed)");
    if (D.cuEventElapsedTime) CU_TRY(D.cuEventElapsedTime(ms, start, stop), "reading a CUDA event time");
    else CU_TRY(D.event_elapsed_v1(ms, start, stop), "reading a CUDA event time");
    return 0;
}

void cu_event_free(sp_gpu *g, CUevent ev)
{
    (void)g;
    if (ev && D.cuEventDestroy) D.cuEventDestroy(ev);
}
