/* spattn cache: the compiled-kernel cache (runtime/kcache.h).
 *
 *     spattn cache path     the directory
 *     spattn cache list     each entry: key, arch, size, age, kernel name(s)
 *     spattn cache clear    remove every entry
 *
 * Entries are rebuilt on demand, so clearing is always safe.  See
 * spattn-cache(1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd/cmd.h"
#include "common/json.h"
#include "common/text.h"
#include "runtime/kcache.h"

static const opt_cmd cache_cmd = {
    "cache",
    "spattn cache path|list|clear [--json]",
    "Show or clear the compiled-kernel cache: `path` prints its directory, `list`\n"
    "its entries (key, arch, size, age, kernel), `clear` removes them all.",
    1, 1,
};

/* "108.5 KiB" */
static void human_size(size_t bytes, char *buf, size_t n)
{
    if (bytes >= ((size_t)1 << 20)) snprintf(buf, n, "%.1f MiB", (double)bytes / (1 << 20));
    else if (bytes >= 1024) snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
    else snprintf(buf, n, "%zu B", bytes);
}

/* "42s", "7m", "3h", "12d" */
static void human_age(long long s, char *buf, size_t n)
{
    if (s < 0) s = 0;
    if (s < 60) snprintf(buf, n, "%llds", s);
    else if (s < 3600) snprintf(buf, n, "%lldm", s / 60);
    else if (s < 86400) snprintf(buf, n, "%lldh", s / 3600);
    else snprintf(buf, n, "%lldd", s / 86400);
}

static int do_list(const char *dir, int json, sp_err *e)
{
    kcache_entry *v;
    int n;
    if (kcache_list(dir, &v, &n, e)) return e->code;
    time_t now = time(NULL);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += v[i].bytes;
    if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "path", dir);
        jw_int(&w, "count", n);
        jw_int(&w, "bytes", (int64_t)total);
        jw_arr(&w, "entries");
        for (int i = 0; i < n; i++) {
            jw_obj(&w, NULL);
            jw_str(&w, "key", v[i].key);
            jw_bool(&w, "valid", v[i].valid);
            jw_str(&w, "label", v[i].label);
            jw_str(&w, "arch", v[i].arch);
            jw_int(&w, "nvrtc_version", v[i].nvrtc_version);
            jw_int(&w, "driver_version", v[i].driver_version);
            jw_int(&w, "bytes", (int64_t)v[i].bytes);
            jw_int(&w, "mtime", (int64_t)v[i].mtime);
            jw_int(&w, "age_s", (int64_t)(now - v[i].mtime));
            jw_end(&w);
        }
        jw_end(&w);
        jw_end(&w);
        jw_finish(&w);
        free(v);
        return 0;
    }
    if (n == 0) {
        printf("no cached kernels in %s\n", dir);
        free(v);
        return 0;
    }
    printf("%-32s  %-7s  %10s  %5s  %s\n", "KEY", "ARCH", "SIZE", "AGE", "KERNEL");
    for (int i = 0; i < n; i++) {
        char size[32], age[32], arch[4 * KCACHE_ARCH_MAX], label[4 * KCACHE_LABEL_MAX];
        human_size(v[i].bytes, size, sizeof size);
        human_age((long long)(now - v[i].mtime), age, sizeof age);
        /* A label or arch is text from a file: escape control bytes. */
        printf("%-32s  %-7s  %10s  %5s  %s\n", v[i].key, v[i].valid ? sp_printable(v[i].arch, arch, sizeof arch) : "?",
               size, age, v[i].valid ? sp_printable(v[i].label, label, sizeof label) : "(damaged: rebuilt on next use)");
    }
    char size[32];
    human_size(total, size, sizeof size);
    printf("%d entr%s, %s in %s\n", n, n == 1 ? "y" : "ies", size, dir);
    free(v);
    return 0;
}

int cmd_cache(int argc, char **argv, sp_err *e)
{
    int json = 0;
    opt_def opts[] = {
        OPT_BOOL(0, "json", &json, "print one JSON object on stdout"),
        OPT_END(),
    };
    opt_pos pos;
    int rc = opts_parse(&cache_cmd, opts, argc, argv, &pos, e);
    if (rc) return rc > 0 ? 0 : SP_EXIT_USAGE;
    const char *action = pos.v[0];
    if (strcmp(action, "path") != 0 && strcmp(action, "list") != 0 && strcmp(action, "clear") != 0) {
        sp_fail(e, SP_EXIT_USAGE, "cache: unknown action '%s' (path, list or clear)", action);
        sp_hint(e, "usage: %s", cache_cmd.usage);
        return SP_EXIT_USAGE;
    }
    char dir[4096];
    if (kcache_dir(dir, sizeof dir, e)) return e->code;

    if (strcmp(action, "path") == 0) {
        if (json) {
            jw w;
            jw_init(&w, stdout);
            jw_obj(&w, NULL);
            jw_str(&w, "path", dir);
            jw_end(&w);
            jw_finish(&w);
        } else {
            printf("%s\n", dir);
        }
        return 0;
    }
    if (strcmp(action, "list") == 0) return do_list(dir, json, e);

    int removed;
    if (kcache_clear(dir, &removed, e)) return e->code;
    if (json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "path", dir);
        jw_int(&w, "removed", removed);
        jw_end(&w);
        jw_finish(&w);
    } else {
        printf("removed %d cached kernel%s from %s\n", removed, removed == 1 ? "" : "s", dir);
    }
    return 0;
}
