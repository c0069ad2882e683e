/* The kernels' CUDA sources (the .cuh files of kernels/), embedded into the binary at
 * build time by tools/embed.c (build/gen/kernel_sources.c), and the
 * flattening of a generated translation unit.
 *
 * codegen emits only a kernel's specialization: its constants, the types
 * that depend on them, `#include "x.cuh"` lines and the extern "C" entry
 * points.  NVRTC gets every .cuh as an in-memory header
 * (runtime/nvrtc.c); `spattn gen` and the kernel-cache key get the one
 * self-contained translation unit kernel_sources_flatten makes. */
#ifndef SPATTN_KERNEL_SOURCES_H
#define SPATTN_KERNEL_SOURCES_H

#include <stddef.h>

#include "common/err.h"
#include "common/strbuf.h"

typedef struct {
    const char *name;   /* "ptx.cuh": the name an #include uses (the file is kernels/ptx.cuh) */
    const char *text;   /* the file's bytes, NUL-terminated */
    size_t len;
} kernel_source;

/* The name of a generated translation unit, in NVRTC's messages and the
 * #line markers of a flattened one. */
#define KERNEL_TU_NAME "spattn_kernel.cu"

/* The table, in file-name order (build/gen/kernel_sources.c). */
extern const kernel_source kernel_sources[];
extern const int kernel_sources_count;

/* The source named name ("ptx.cuh"), or NULL. */
const kernel_source *kernel_source_find(const char *name);

/* Append to out the translation unit tu with every line
 * `#include "x.cuh"` replaced by x.cuh's text, recursively, each file once
 * (a second include of it becomes an empty line; `#pragma once` lines
 * become empty lines too: in a single file they would only draw a
 * warning).  #line markers before and after each file's text point the
 * compiler (and ncu's source view) at kernels/x.cuh and back at tu_name.
 * tu_name NULL: no markers (the kernel-cache key: a comment that moves the
 * lines moves no code).  Lines that include other files (<...> or unknown
 * names) stay as they are.
 * -1 (SP_EXIT_FAIL) if an include nests deeper than 16 or out runs out of
 * memory. */
int kernel_sources_flatten(strbuf *out, const char *tu, const char *tu_name, sp_err *e);

#endif
