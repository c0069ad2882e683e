/* The CUDA driver API, opened with dlopen("libcuda.so.1") on first use, so
 * spattn starts (and every CPU command works) on a machine with no driver.
 * cuda.h is included for its types only.  Every failure names the CUDA error
 * and what was being done, with code SP_EXIT_GPU:
 *     CUDA error CUDA_ERROR_OUT_OF_MEMORY (out of memory) while allocating 2.0 GiB
 * CUDA_VISIBLE_DEVICES is honoured by the driver itself: ordinals count the
 * visible devices only. */
#ifndef SPATTN_CU_H
#define SPATTN_CU_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct sp_gpu {
    int ordinal;            /* device index after CUDA_VISIBLE_DEVICES */
    CUdevice dev;
    CUcontext ctx;          /* the primary context (shared with cuBLAS) */
    CUstream stream;        /* all spattn work runs on this stream */
    char name[256];
    int sm;                 /* compute capability as 10*major + minor: 90 */
    int sm_count;
    int driver_version;     /* cuDriverGetVersion: 13000 */
    size_t smem_optin;      /* max dynamic shared memory per block (opt-in) */
    size_t total_mem;
    int l2_bytes;
} sp_gpu;

/* Load the driver and cuInit (once per process; later calls return the
 * first outcome).  No libcuda.so.1: "no CUDA driver (libcuda.so.1 not
 * found): ..." with a hint to use --device cpu.  Code SP_EXIT_GPU. */
int cu_init(sp_err *e);
/* The driver's CUDA version (cuDriverGetVersion: 13000).  Calls cu_init. */
int cu_driver_version(int *version, sp_err *e);
/* Number of visible devices (0 is not an error here).  Calls cu_init. */
int cu_device_count(int *n, sp_err *e);
/* Properties of device `ordinal` (name, sm, SMs, memory, L2, opt-in shared
 * memory, driver version) without creating a context; ctx and stream stay
 * NULL.  Errors if ordinal is not a visible device. */
int cu_device_query(int ordinal, sp_gpu *g, sp_err *e);

/* Load the driver, cuInit, open device `ordinal`, retain its primary
 * context, make it current on this thread and create one non-blocking
 * stream.  No driver / no device / bad ordinal: SP_EXIT_GPU. */
int cu_open(int ordinal, sp_gpu *g, sp_err *e);
/* Destroy the stream and release the primary context; safe on a g that
 * cu_open never filled or already closed (zeroed). */
void cu_close(sp_gpu *g);
/* 1 if the driver loads, cuInit succeeds and there is at least one device
 * (never fails loudly). */
int cu_probe(void);

typedef unsigned long long sp_dptr;
/* Device memory.  cu_free(g, 0) does nothing. */
int cu_malloc(sp_gpu *g, size_t bytes, sp_dptr *p, sp_err *e);
void cu_free(sp_gpu *g, sp_dptr p);
/* Copies on g->stream; both wait until the copy is complete, so the host
 * buffer may be reused (or read) on return. */
int cu_upload(sp_gpu *g, sp_dptr dst, const void *src, size_t bytes, sp_err *e);
int cu_download(sp_gpu *g, void *dst, sp_dptr src, size_t bytes, sp_err *e);
/* Device-to-device copy, queued on g->stream (does not wait). */
int cu_copy(sp_gpu *g, sp_dptr dst, sp_dptr src, size_t bytes, sp_err *e);
/* Fill count 32-bit / 16-bit words, queued on g->stream (NaN poison:
 * 0x7fc00000 / 0x7fff). */
int cu_fill32(sp_gpu *g, sp_dptr p, uint32_t value, size_t count, sp_err *e);
int cu_fill16(sp_gpu *g, sp_dptr p, uint16_t value, size_t count, sp_err *e);
/* Free and total device memory of g's device, in bytes. */
int cu_mem_info(sp_gpu *g, size_t *free_bytes, size_t *total_bytes, sp_err *e);

int cu_module_load(sp_gpu *g, const void *cubin, size_t len, CUmodule *m, sp_err *e);
void cu_module_unload(sp_gpu *g, CUmodule m);
int cu_function(CUmodule m, const char *name, CUfunction *f, sp_err *e);
/* A function attribute (CU_FUNC_ATTRIBUTE_NUM_REGS, ..._LOCAL_SIZE_BYTES...). */
int cu_func_attr(CUfunction f, CUfunction_attribute attr, int *value, sp_err *e);
/* Launch on g->stream with a 1-D block of `threads`; raises the function's
 * dynamic shared memory limit first when smem > 48 KiB (error if smem is
 * over the device's opt-in limit).  args: cuLaunchKernelEx's kernelParams. */
int cu_launch(sp_gpu *g, CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned threads,
              unsigned smem, void **args, sp_err *e);
/* The same as a programmatic dependent launch (sm_90 and later): f's blocks may start before
 * the stream's previous kernel has ended, once that kernel's blocks have run
 * griddepcontrol.launch_dependents or ended, so f must run griddepcontrol.wait (kernels/ptx.cuh,
 * griddep_wait) before it reads anything the previous kernel wrote. */
int cu_launch_dependent(sp_gpu *g, CUfunction f, const unsigned grid[3], unsigned threads, unsigned smem,
                        void **args, sp_err *e);
/* A 4-D TMA tensor map of 16-bit values (cuTensorMapEncodeTiled):
 * dims innermost first, strides of dims 1..3 in bytes (multiples of 16),
 * box in elements; 128-byte swizzle, zero fill past the edges. */
int cu_tensor_map_16bit(CUtensorMap *map, int bf16, sp_dptr base, const uint64_t dims[4],
                        const uint64_t strides_bytes[3], const uint32_t box[4], sp_err *e);
/* The same of 32-bit floats (the backward's dQ accumulator, reduced into by TMA). */
int cu_tensor_map_f32(CUtensorMap *map, sp_dptr base, const uint64_t dims[4], const uint64_t strides_bytes[3],
                      const uint32_t box[4], sp_err *e);
/* Wait for everything queued on g->stream; a kernel fault shows up here. */
int cu_sync(sp_gpu *g, sp_err *e);

/* CUDA events on g->stream, for timing. */
int cu_event_new(sp_gpu *g, CUevent *ev, sp_err *e);
int cu_event_record(sp_gpu *g, CUevent ev, sp_err *e);
int cu_event_ms(sp_gpu *g, CUevent start, CUevent stop, float *ms, sp_err *e);  /* syncs on stop */
void cu_event_free(sp_gpu *g, CUevent ev);

#endif
