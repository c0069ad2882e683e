/* The engine: from a spec, a pattern and a derived kernel config to a
 * function ready to launch on a GPU.  It composes the pipeline's middle:
 *     config -> CUDA source (codegen/emit) -> cubin (kcache: NVRTC, disk cache)
 *            -> module and function (driver API)
 * Everything above it (run, check, bench, tune) asks the engine for kernels
 * and never compiles on its own. */
#ifndef SPATTN_ENGINE_H
#define SPATTN_ENGINE_H

#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/attn_bwd.h"
#include "runtime/cu.h"
#include "runtime/nvrtc.h"

typedef struct {
    sp_kcfg cfg;             /* derived */
    char name[128];          /* kernel name (kcfg_name; the backward's main kernel for kind bwd) */
    CUmodule module;
    CUfunction fn;           /* the forward kernel (kind fwd), the decode kernel (kind dec) */
    CUfunction combine;      /* kind dec: the split-combine kernel */
    attn_bwd_kernels bwd;    /* the backward family's kernels (kind bwd) */
    int cache_hit;           /* the cubin came from the disk cache */
    double build_ms;         /* emit + compile-or-read + load */
    sp_kres res;             /* registers, smem, spills from the compile log */
} engine_kernel;

/* Emit, compile (through the kernel cache) and load the kernel of cfg for
 * g's architecture.  cfg must be derived.  Errors: SP_EXIT_FAIL for a
 * failed compile (log head in the message), SP_EXIT_GPU for driver errors. */
int engine_load(sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg,
                engine_kernel *k, sp_err *e);
/* Load this engine's dense causal kernel of kind for spec's shape, with
 * the heuristic config (the backward: its deterministic mode's if
 * deterministic): the baseline `run`, `bench` and the layer compare
 * against. */
int engine_load_dense(sp_gpu *g, const sp_spec *spec, sp_kernel_kind kind, int deterministic, engine_kernel *k,
                      sp_err *e);
/* The same without a GPU: source and cubin for `arch` (compile, tuner
 * pre-pruning).  Fills k->res and k->name; module/fn stay NULL. */
int engine_compile(const char *arch, const sp_spec *spec, const sp_pattern *pat, const sp_kcfg *cfg,
                   engine_kernel *k, sp_err *e);
void engine_unload(sp_gpu *g, engine_kernel *k);

#endif
