/* NumPy .npy files: version 1.0-3.0 headers, little-endian float16 / float32
 * (and float64 for reading), C order.  Reading never trusts the header: a
 * shape that does not match the file size, a truncated file or a lying
 * header is an error (SP_EXIT_USAGE), never a read past the end. */
#ifndef SPATTN_NPY_H
#define SPATTN_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/fileio.h"

typedef enum { NPY_F16, NPY_F32, NPY_F64 } npy_dtype;

#define NPY_MAX_DIMS 8
typedef struct {
    npy_dtype dtype;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t count;   /* product of shape */
    void *data;     /* count elements of dtype */
} npy_array;

int npy_read(const char *path, npy_array *a, sp_err *e);
/* Atomic write (temp file + rename).  dtype NPY_F16 or NPY_F32 (or F64). */
int npy_write(const char *path, const npy_array *a, sp_err *e);
/* Step 2 of common/fileio.h's output steps: a's file into out's temporary
 * (out checked by sp_out_check; sp_outs_commit puts it in place). */
int npy_stage(sp_out *out, const npy_array *a, sp_err *e);
void npy_free(npy_array *a);
/* Element i as double, whatever the dtype. */
double npy_get(const npy_array *a, size_t i);
/* Check a's shape equals `shape`; the error names `what` and both shapes. */
int npy_expect_shape(const npy_array *a, const char *path, int ndim, const int64_t *shape, sp_err *e);

#endif
