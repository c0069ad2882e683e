/* spattn info: what this machine offers spattn: the versions of spattn and
 * NVRTC, the CUDA driver and every visible GPU, and where the kernel cache
 * and the tuning database live.  Works without a GPU ("GPU: none (why)");
 * --require-gpu turns that into exit 3, which is how the GPU test suites
 * decide to skip.  See spattn-info(1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "common/json.h"
#include "runtime/cu.h"
#include "runtime/kcache.h"
#include "runtime/nvrtc.h"
#include "tuning_db/db.h"

static const opt_cmd info_cmd = {
    "info",
    "spattn info [--gpu N] [--require-gpu] [--json]",
    "Show spattn's and NVRTC's versions, the CUDA driver, each visible GPU, and the\n"
    "kernel cache and tuning database paths.",
    0, 0,
};

#define MAX_GPUS 64

/* What was found, gathered first so text and JSON print the same facts. */
typedef struct {
    int nvrtc;                 /* 13000 */
    int driver_ok, driver;     /* driver loaded and initialised; its CUDA version */
    int n_gpus;
    sp_gpu gpu[MAX_GPUS];
    char gpu_error[768];       /* why there is no GPU ("" if there is one) */
    char cache_dir[4096], db_path[4096];
    char cache_error[768], db_error[768];
} facts;

static void version_str(int v, char *buf, size_t n)
{
    snprintf(buf, n, "%d.%d", v / 1000, (v % 1000) / 10);
}

static void human_bytes(size_t b, char *buf, size_t n)
{
    if (b >= ((size_t)1 << 30)) snprintf(buf, n, "%.1f GiB", (double)b / (1 << 30));
    else if (b >= ((size_t)1 << 20)) snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
    else snprintf(buf, n, "%zu KiB", b / 1024);
}

/* Fill f.  Only a bad --gpu is an error (exit 3); a missing GPU is a fact. */
static int gather(facts *f, int only_gpu, sp_err *e)
{
    memset(f, 0, sizeof *f);
    f->nvrtc = nvrtc_version();
    sp_err ge = { 0 };
    int count = 0;
    if (cu_driver_version(&f->driver, &ge) == 0) {
        f->driver_ok = 1;
        cu_device_count(&count, &ge);
    }
    if (ge.code) snprintf(f->gpu_error, sizeof f->gpu_error, "%s", ge.msg);
    else if (count == 0) snprintf(f->gpu_error, sizeof f->gpu_error, "the driver reports no CUDA device");
    if (only_gpu >= 0 && f->driver_ok && only_gpu >= count && count > 0) {
        /* Same message as every other command's --gpu. */
        sp_gpu g;
        return cu_device_query(only_gpu, &g, e);
    }
    for (int i = 0; i < count && f->n_gpus < MAX_GPUS; i++) {
        if (only_gpu >= 0 && i != only_gpu) continue;
        if (cu_device_query(i, &f->gpu[f->n_gpus], &ge)) {
            snprintf(f->gpu_error, sizeof f->gpu_error, "%s", ge.msg);
            continue;
        }
        f->n_gpus++;
    }
    sp_err pe = { 0 };
    if (kcache_dir(f->cache_dir, sizeof f->cache_dir, &pe)) snprintf(f->cache_error, sizeof f->cache_error, "%s", pe.msg);
    sp_err_clear(&pe);
    if (db_path_default(f->db_path, sizeof f->db_path, &pe)) snprintf(f->db_error, sizeof f->db_error, "%s", pe.msg);
    return 0;
}

static void print_json(const facts *f)
{
    char arch[32];
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w, NULL);
    jw_str(&w, "version", SPATTN_VERSION);
    jw_int(&w, "nvrtc_version", f->nvrtc);
    jw_obj(&w, "driver");
    jw_bool(&w, "available", f->driver_ok);
    if (f->driver_ok) jw_int(&w, "version", f->driver);
    else jw_null(&w, "version");
    jw_end(&w);
    jw_arr(&w, "gpus");
    for (int i = 0; i < f->n_gpus; i++) {
        const sp_gpu *g = &f->gpu[i];
        jw_obj(&w, NULL);
        jw_int(&w, "ordinal", g->ordinal);
        jw_str(&w, "name", g->name);
        jw_int(&w, "sm", g->sm);
        jw_str(&w, "arch", nvrtc_arch_for_sm(g->sm, arch, sizeof arch));
        jw_int(&w, "sm_count", g->sm_count);
        jw_int(&w, "total_mem", (int64_t)g->total_mem);
        jw_int(&w, "l2_bytes", g->l2_bytes);
        jw_int(&w, "smem_optin", (int64_t)g->smem_optin);
        jw_end(&w);
    }
    jw_end(&w);
    if (f->n_gpus == 0) jw_str(&w, "gpu_error", f->gpu_error);
    else jw_null(&w, "gpu_error");
    jw_str(&w, "cache_dir", f->cache_error[0] ? NULL : f->cache_dir);
    jw_str(&w, "tune_db", f->db_error[0] ? NULL : f->db_path);
    jw_end(&w);
    jw_finish(&w);
}

static void print_text(const facts *f)
{
    char v[32], arch[32], mem[32], l2[32];
    printf("spattn: %s\n", SPATTN_VERSION);
    version_str(f->nvrtc, v, sizeof v);
    printf("NVRTC: %s\n", f->nvrtc ? v : "unknown");
    version_str(f->driver, v, sizeof v);
    printf("CUDA driver: %s\n", f->driver_ok ? v : strncmp(f->gpu_error, "no CUDA driver", 14) == 0 ? "none" : "not usable");
    if (f->n_gpus == 0) printf("GPU: none (%s)\n", f->gpu_error);
    for (int i = 0; i < f->n_gpus; i++) {
        const sp_gpu *g = &f->gpu[i];
        human_bytes(g->total_mem, mem, sizeof mem);
        human_bytes((size_t)g->l2_bytes, l2, sizeof l2);
        printf("GPU %d: %s, sm_%d (NVRTC target %s), %d SMs, %s, L2 %s, %zu KiB shared memory per block\n",
               g->ordinal, g->name, g->sm, nvrtc_arch_for_sm(g->sm, arch, sizeof arch), g->sm_count, mem, l2,
               g->smem_optin / 1024);
    }
    if (f->cache_error[0]) printf("kernel cache: none (%s)\n", f->cache_error);
    else printf("kernel cache: %s\n", f->cache_dir);
    if (f->db_error[0]) printf("tuning db: none (%s)\n", f->db_error);
    else printf("tuning db: %s\n", f->db_path);
}

int cmd_info(int argc, char **argv, sp_err *e)
{
    int json = 0, require = 0, gpu = -1;
    opt_def opts[] = {
        OPT_INT(0, "gpu", &gpu, "N", "show only GPU N (after CUDA_VISIBLE_DEVICES)", 0, MAX_GPUS - 1),
        OPT_BOOL(0, "require-gpu", &require, "exit 3 unless a usable GPU is present (opens it to be sure)"),
        OPT_BOOL(0, "json", &json, "print one JSON object on stdout"),
        OPT_END(),
    };
    opt_pos pos;
    int rc = opts_parse(&info_cmd, opts, argc, argv, &pos, e);
    if (rc) return rc > 0 ? 0 : SP_EXIT_USAGE;

    facts *f = malloc(sizeof *f);
    if (!f) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); return SP_EXIT_FAIL; }
    if (gather(f, gpu, e)) { free(f); return SP_EXIT_GPU; }
    if (json) print_json(f);
    else print_text(f);

    rc = 0;
    if (require) {
        if (f->n_gpus == 0) {
            sp_fail(e, SP_EXIT_GPU, "no usable GPU: %s", f->gpu_error);
            sp_hint(e, "GPU commands and tests need an NVIDIA GPU with its driver");
            rc = SP_EXIT_GPU;
        } else {
            /* A device can be listed yet unusable (exclusive mode, a fault):
             * opening its context is the real test. */
            sp_gpu g;
            if (cu_open(f->gpu[0].ordinal, &g, e)) rc = SP_EXIT_GPU;
            else cu_close(&g);
        }
    }
    free(f);
    return rc;
}
