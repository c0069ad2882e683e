/* The CUDA driver API, opened with dlopen("libcuda.so.1") on first use, so
 * spattn starts (and every CPU command works) on a machine with no driver.
 * cuda.h is included for its types only.  Every failure names the CUDA error
 * and what was being done, with code SP_EXIT_GPU. */
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

/* Load the driver, cuInit, open device `ordinal`, retain its primary
 * context and create a stream.  No driver / no device: SP_EXIT_GPU. */
int cu_open(int ordinal, sp_gpu *g, sp_err *e);
void cu_close(sp_gpu *g);
/* 1 if the driver loads and reports at least one device (never fails loudly). */
int cu_probe(void);

typedef unsigned long long sp_dptr;
int cu_malloc(sp_gpu *g, size_t bytes, sp_dptr *p, sp_err *e);
void cu_free(sp_gpu *g, sp_dptr p);
int cu_upload(sp_gpu *g, sp_dptr dst, const void *src, size_t bytes, sp_err *e);
int cu_download(sp_gpu *g, void *dst, sp_dptr src, size_t bytes, sp_err *e);
/* Fill count 32-bit / 16-bit words (NaN poison: 0x7fc00000 / 0x7fff). */
int cu_fill32(sp_gpu *g, sp_dptr p, uint32_t value, size_t count, sp_err *e);
int cu_fill16(sp_gpu *g, sp_dptr p, uint16_t value, size_t count, sp_err *e);

int cu_module_load(sp_gpu *g, const void *cubin, size_t len, CUmodule *m, sp_err *e);
void cu_module_unload(sp_gpu *g, CUmodule m);
int cu_function(CUmodule m, const char *name, CUfunction *f, sp_err *e);
/* Launch on g->stream; raises the function's dynamic shared memory limit
 * first when smem > 48 KiB. */
int cu_launch(sp_gpu *g, CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned threads,
              unsigned smem, void **args, sp_err *e);
int cu_sync(sp_gpu *g, sp_err *e);

/* CUDA events on g->stream, for timing. */
int cu_event_new(sp_gpu *g, CUevent *ev, sp_err *e);
int cu_event_record(sp_gpu *g, CUevent ev, sp_err *e);
int cu_event_ms(sp_gpu *g, CUevent start, CUevent stop, float *ms, sp_err *e);  /* syncs on stop */
void cu_event_free(sp_gpu *g, CUevent ev);

#endif
