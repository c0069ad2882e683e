/* spattn --version [--json]: the version and how this binary was built
 * (commit, compiler, the CUDA headers it was compiled against, the NVRTC it
 * runs with, libyaml and SQLite).  The commit comes from
 * $(BUILD)/gen/buildinfo.c, which the Makefile rewrites when HEAD moves. */
#include <stdio.h>
#include <string.h>

#include <cuda.h>
#include <sqlite3.h>
#include <yaml.h>

#include "cmd/cmd.h"
#include "common/json.h"
#include "runtime/nvrtc.h"

extern const char spattn_build_commit[];

static void compiler_string(char *buf, size_t n)
{
#if defined(__clang__)
    snprintf(buf, n, "clang %d.%d.%d", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
    snprintf(buf, n, "gcc %d.%d.%d", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#else
    snprintf(buf, n, "unknown");
#endif
}

static void cuda_string(int v, char *buf, size_t n)
{
    if (v > 0) snprintf(buf, n, "%d.%d", v / 1000, v % 1000 / 10);
    else snprintf(buf, n, "unavailable");
}

int cmd_version(int json)
{
    char compiler[64], cuda[16], nvrtc[16];
    compiler_string(compiler, sizeof compiler);
    cuda_string(CUDA_VERSION, cuda, sizeof cuda);
    int nv = nvrtc_version();
    cuda_string(nv, nvrtc, sizeof nvrtc);
    if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "version", SPATTN_VERSION);
        jw_str(&w, "commit", spattn_build_commit);
        jw_str(&w, "compiler", compiler);
        jw_int(&w, "cuda_version", CUDA_VERSION);
        jw_int(&w, "nvrtc_version", nv);
        jw_str(&w, "libyaml_version", yaml_get_version_string());
        jw_str(&w, "sqlite_version", sqlite3_libversion());
        jw_end(&w);
        jw_finish(&w);
        return SP_EXIT_OK;
    }
    printf("spattn %s\n", SPATTN_VERSION);
    printf("commit:   %s\n", spattn_build_commit);
    printf("compiler: %s\n", compiler);
    printf("CUDA:     %s (headers built against)\n", cuda);
    printf("NVRTC:    %s (loaded now)\n", nvrtc);
    printf("libyaml:  %s\nSQLite:   %s\n", yaml_get_version_string(), sqlite3_libversion());
    return SP_EXIT_OK;
}
