/* The kernel cache: keys, hits, damaged entries, concurrent writers, an
 * unwritable directory, list and clear.  Real NVRTC compiles a tiny kernel
 * for sm_80 (no GPU needed). */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/kcache.h"
#include "runtime/ref_gpu.h"
#include "tests/check.h"

static const char *SRC = "extern \"C\" __global__ void spattn_test_inc(float *x) { x[threadIdx.x] += 1.0f; }\n";
static const char *SRC2 = "extern \"C\" __global__ void spattn_test_dec(float *x) { x[threadIdx.x] -= 1.0f; }\n";

static char root[256];

/* The scratch directory of this run (made on first use, so a filtered run
 * such as `test_kcache keys` works too). */
static void ensure_root(void)
{
    if (root[0]) return;
    snprintf(root, sizeof root, "/tmp/spattn-test-kcache.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); exit(1); }
}

/* A fresh empty directory under root, made the cache directory. */
static const char *fresh_cache(const char *name)
{
    static char dir[512];
    ensure_root();
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    mkdir(dir, 0755);
    setenv("SPATTN_CACHE_DIR", dir, 1);
    return dir;
}

static void entry_path(const char *dir, const char *key, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.cubin", dir, key);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

/* Same cubin bytes (the log differs between compiles: it has the compile time). */
static int same(const sp_compiled *a, const sp_compiled *b)
{
    return a->len == b->len && a->len > 0 && memcmp(a->cubin, b->cubin, a->len) == 0 && a->log && b->log;
}

static void test_dir_precedence(void)
{
    char buf[512];
    sp_err e = { 0 };
    setenv("HOME", "/h", 1);
    setenv("XDG_CACHE_HOME", "/x", 1);
    setenv("SPATTN_CACHE_DIR", "/s/kern/", 1);
    CHECK("SPATTN_CACHE_DIR wins", kcache_dir(buf, sizeof buf, &e) == 0 && strcmp(buf, "/s/kern") == 0);
    setenv("SPATTN_CACHE_DIR", "", 1);
    CHECK("empty SPATTN_CACHE_DIR is unset", kcache_dir(buf, sizeof buf, &e) == 0 && strcmp(buf, "/x/spattn/kernels") == 0);
    unsetenv("SPATTN_CACHE_DIR");
    unsetenv("XDG_CACHE_HOME");
    CHECK("HOME last", kcache_dir(buf, sizeof buf, &e) == 0 && strcmp(buf, "/h/.cache/spattn/kernels") == 0);
    unsetenv("HOME");
    CHECK("nothing set: error", kcache_dir(buf, sizeof buf, &e) == -1 && e.code == SP_EXIT_USAGE);
}

static void test_keys(void)
{
    char a[33], b[33];
    kcache_key(SRC, "sm_80", 13000, a);
    CHECK("32 hex digits", strlen(a) == 32 && strspn(a, "0123456789abcdef") == 32);
    kcache_key(SRC, "sm_80", 13000, b);
    CHECK("same inputs, same key", strcmp(a, b) == 0);
    kcache_key(SRC, "sm_86", 13000, b);
    CHECK("arch changes the key", strcmp(a, b) != 0);
    kcache_key(SRC, "sm_80", 13010, b);
    CHECK("NVRTC version changes the key", strcmp(a, b) != 0);
    kcache_key(SRC2, "sm_80", 13000, b);
    CHECK("source changes the key", strcmp(a, b) != 0);
    /* fields cannot run together: ("sm_8", "0...") vs ("sm_80", "...") */
    kcache_key("0x", "sm_8", 13000, a);
    kcache_key("x", "sm_80", 13000, b);
    CHECK("field boundaries are part of the key", strcmp(a, b) != 0);
    /* issue 14: comments are not what makes the binary */
    kcache_key("/* spec olmoe */\nint x; // heads 16\n", "sm_80", 13000, a);
    kcache_key("/* spec gqa, renamed */\nint x; // heads 32 (a longer comment)\n", "sm_80", 13000, b);
    CHECK("comments do not change the key", strcmp(a, b) == 0);
    kcache_key("/* c */\nint y; // heads 16\n", "sm_80", 13000, b);
    CHECK("code changes the key", strcmp(a, b) != 0);
    kcache_key("asm(\"/* not a comment */\");", "sm_80", 13000, a);
    kcache_key("asm(\"/* not a comment, changed */\");", "sm_80", 13000, b);
    CHECK("a comment inside a string literal is code", strcmp(a, b) != 0);
    kcache_key("char c = '\\''; /* x */ int z;", "sm_80", 13000, a);
    kcache_key("char c = '\\''; /* yy */ int z;", "sm_80", 13000, b);
    CHECK("an escaped quote does not open a string", strcmp(a, b) == 0);
    kcache_key("a/b", "sm_80", 13000, a);
    kcache_key("a/c", "sm_80", 13000, b);
    CHECK("a lone slash is code", strcmp(a, b) != 0);
}

static void test_miss_then_hit(void)
{
    const char *dir = fresh_cache("hit");
    sp_compiled c1, c2;
    kcache_info i1, i2;
    sp_err e = { 0 };
    CHECK("first get compiles", kcache_get(SRC, "sm_80", 0, "spattn_test_inc", &c1, &i1, &e) == 0);
    CHECKF(e.code == 0, "error: %s", e.msg);
    CHECK("first get is a miss", i1.hit == 0 && i1.rebuilt == 0 && i1.store_failed == 0);
    char path[700];
    entry_path(dir, i1.key, path, sizeof path);
    CHECK("entry written as <key>.cubin", file_size(path) > 256);
    CHECK("second get succeeds", kcache_get(SRC, "sm_80", 0, "spattn_test_inc", &c2, &i2, &e) == 0);
    CHECK("second get is a hit", i2.hit == 1 && strcmp(i1.key, i2.key) == 0);
    CHECK("hit returns the same cubin and log", same(&c1, &c2) && strcmp(c1.log, c2.log) == 0);
    CHECK("the log is the ptxas report", strstr(c2.log, "spattn_test_inc") != NULL);
    CHECK("cubin is an ELF", c2.len > 4 && memcmp(c2.cubin, "\177ELF", 4) == 0);
    nvrtc_compiled_free(&c2);

    kcache_get(SRC, "sm_86", 0, "spattn_test_inc", &c2, &i2, &e);
    CHECK("another arch is another entry (miss)", i2.hit == 0 && strcmp(i1.key, i2.key) != 0);
    nvrtc_compiled_free(&c2);
    /* Regression (issue 19): the key held the driver version, so a cache
     * warmed by `spattn compile` without a GPU (driver 0) never hit on the
     * GPU host.  A cubin does not depend on the driver. */
    kcache_get(SRC, "sm_80", 13000, "spattn_test_inc", &c2, &i2, &e);
    CHECK("another driver version is a hit (the key has no driver)", i2.hit == 1 && strcmp(i1.key, i2.key) == 0);
    nvrtc_compiled_free(&c2);
    nvrtc_compiled_free(&c1);
}

/* Damage the entry with `damage`, then get must rebuild it to the same bytes,
 * and the rebuilt entry must be a hit again. */
static void damaged(const char *what, void (*damage)(const char *path))
{
    const char *dir = fresh_cache("damage");
    sp_compiled good, c;
    kcache_info info;
    sp_err e = { 0 };
    if (kcache_get(SRC, "sm_80", 0, "lbl", &good, &info, &e)) { CHECKF(0, "%s: compile failed", what); return; }
    char path[700];
    entry_path(dir, info.key, path, sizeof path);
    damage(path);
    int rc = kcache_get(SRC, "sm_80", 0, "lbl", &c, &info, &e);
    CHECKF(rc == 0 && info.hit == 0 && info.rebuilt == 1, "%s: detected and rebuilt (rc %d hit %d rebuilt %d)", what,
           rc, info.hit, info.rebuilt);
    CHECKF(same(&good, &c), "%s: rebuilt result equals the original", what);
    nvrtc_compiled_free(&c);
    rc = kcache_get(SRC, "sm_80", 0, "lbl", &c, &info, &e);
    CHECKF(rc == 0 && info.hit == 1 && same(&good, &c), "%s: the rebuilt entry is whole", what);
    nvrtc_compiled_free(&c);
    nvrtc_compiled_free(&good);
}

static void truncate_half(const char *p) { if (truncate(p, file_size(p) / 2)) {} }
static void truncate_header(const char *p) { if (truncate(p, 100)) {} }
static void truncate_empty(const char *p) { if (truncate(p, 0)) {} }
static void truncate_one(const char *p) { if (truncate(p, file_size(p) - 1)) {} }
static void flip(const char *p, long off)
{
    int fd = open(p, O_RDWR);
    unsigned char b;
    if (fd < 0) return;
    if (pread(fd, &b, 1, off) == 1) { b ^= 0x40; if (pwrite(fd, &b, 1, off) != 1) {} }
    close(fd);
}
static void flip_payload(const char *p) { flip(p, file_size(p) - 300); }
static void flip_label(const char *p) { flip(p, 100); }
static void flip_magic(const char *p) { flip(p, 2); }
static void flip_length(const char *p) { flip(p, 26); }
static void garbage(const char *p)
{
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 2654435761u >> 13);
    write_bytes(p, junk, sizeof junk);
}
static void garbage_with_magic(const char *p)
{
    /* right magic and version, absurd lengths: must not be trusted or allocated */
    unsigned char h[300];
    memset(h, 0xff, sizeof h);
    memcpy(h, "SPATTNK1\001\000\000\000\000\001\000\000", 16);
    write_bytes(p, h, sizeof h);
}

static void test_damaged_entries(void)
{
    damaged("truncated to half", truncate_half);
    damaged("truncated inside the header", truncate_header);
    damaged("truncated by one byte", truncate_one);
    damaged("empty file", truncate_empty);
    damaged("flipped payload byte", flip_payload);
    damaged("flipped label byte", flip_label);
    damaged("flipped magic", flip_magic);
    damaged("flipped length field", flip_length);
    damaged("garbage file", garbage);
    damaged("garbage with the right magic", garbage_with_magic);
}

static void test_entry_is_a_directory(void)
{
    const char *dir = fresh_cache("isdir");
    char key[33], path[700];
    kcache_key(SRC, "sm_80", nvrtc_version(), key);
    entry_path(dir, key, path, sizeof path);
    mkdir(path, 0755);
    sp_compiled c;
    kcache_info info;
    sp_err e = { 0 };
    int rc = kcache_get(SRC, "sm_80", 0, "x", &c, &info, &e);
    CHECK("a directory in the entry's place: still compiles", rc == 0 && c.len > 0);
    CHECK("... and reports the failed store", info.store_failed == 1 && info.why[0]);
    nvrtc_compiled_free(&c);
    rmdir(path);
}

/* Issue 19: a FIFO in the entry's place hung kcache_get in open(2).  Now it
 * is damage like any other: removed and rebuilt.  The alarm turns a
 * regression (a hang) into a failed run instead of a stuck suite. */
static void test_entry_is_a_fifo(void)
{
    const char *dir = fresh_cache("fifo");
    char key[33], path[700];
    kcache_key(SRC, "sm_80", nvrtc_version(), key);
    entry_path(dir, key, path, sizeof path);
    CHECK("mkfifo", mkfifo(path, 0644) == 0);
    sp_compiled c;
    kcache_info info;
    sp_err e = { 0 };
    alarm(60);
    int rc = kcache_get(SRC, "sm_80", 0, "x", &c, &info, &e);
    alarm(0);
    CHECK("a FIFO in the entry's place: compiles without blocking", rc == 0 && c.len > 0);
    CHECK("... and replaces it with a regular entry", info.rebuilt == 1 && file_size(path) > 256);
    nvrtc_compiled_free(&c);
}

/* Issue 19: `cache list` read only the header, so an entry whose cubin was
 * damaged listed as valid while kcache_get would reject it. */
static void test_list_checks_the_hash(void)
{
    const char *dir = fresh_cache("flipped");
    sp_compiled c;
    kcache_info info;
    sp_err e = { 0 };
    kcache_get(SRC, "sm_80", 0, "x", &c, &info, &e);
    nvrtc_compiled_free(&c);
    char path[700];
    entry_path(dir, info.key, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    if (f) { fseek(f, 300, SEEK_SET); int b = fgetc(f); fseek(f, 300, SEEK_SET); fputc(b ^ 0x5a, f); fclose(f); }
    kcache_entry *v = NULL;
    int n = 0;
    CHECK("list succeeds", kcache_list(dir, &v, &n, &e) == 0 && n == 1);
    CHECK("a flipped cubin byte lists as damaged", n == 1 && v[0].valid == 0 && strcmp(v[0].key, info.key) == 0);
    free(v);
}

static void test_two_processes(void)
{
    const char *dir = fresh_cache("race");
    int go[2];
    if (pipe(go)) { CHECK("pipe", 0); return; }
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) < 0) _exit(3);   /* both start together when the pipe closes */
            sp_compiled out;
            kcache_info info;
            sp_err e = { 0 };
            int rc = kcache_get(SRC2, "sm_80", 0, "race", &out, &info, &e);
            _exit(rc == 0 && out.len > 0 && !info.store_failed ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]);
    int ok = 0;
    for (int k = 0; k < 2; k++) {
        int st;
        if (kids[k] > 0 && waitpid(kids[k], &st, 0) == kids[k] && WIFEXITED(st) && WEXITSTATUS(st) == 0) ok++;
    }
    CHECK("both concurrent compiles succeed", ok == 2);
    sp_compiled c;
    kcache_info info;
    sp_err e = { 0 };
    CHECK("the entry they left is whole (a hit)",
          kcache_get(SRC2, "sm_80", 0, "race", &c, &info, &e) == 0 && info.hit == 1 && info.rebuilt == 0);
    nvrtc_compiled_free(&c);
    int tmps = 0;
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));) if (strstr(de->d_name, ".tmp.") || strstr(de->d_name, ".spattn-")) tmps++;
    if (d) closedir(d);
    CHECK("no temp files left behind", tmps == 0);
}

static void test_unwritable(void)
{
    char file[512], dir[600];
    ensure_root();
    snprintf(file, sizeof file, "%s/plainfile", root);
    write_bytes(file, "x", 1);
    snprintf(dir, sizeof dir, "%s/sub", file);   /* a directory under a regular file: cannot exist */
    setenv("SPATTN_CACHE_DIR", dir, 1);
    sp_compiled c;
    kcache_info info;
    sp_err e = { 0 };
    CHECK("unwritable cache: still returns a cubin", kcache_get(SRC, "sm_80", 0, "x", &c, &info, &e) == 0 && c.len > 0);
    CHECK("unwritable cache: store_failed with a reason", info.store_failed == 1 && strlen(info.why) > 0);
    nvrtc_compiled_free(&c);

    unsetenv("SPATTN_CACHE_DIR");
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    CHECK("no cache dir at all: still returns a cubin", kcache_get(SRC, "sm_80", 0, "x", &c, &info, &e) == 0 && c.len > 0);
    CHECK("no cache dir at all: store_failed", info.store_failed == 1 && strstr(info.why, "SPATTN_CACHE_DIR"));
    nvrtc_compiled_free(&c);
}

static void test_compile_error(void)
{
    const char *dir = fresh_cache("bad");
    sp_compiled c;
    kcache_info info;
    sp_err e = { 0 };
    int rc = kcache_get("__global__ void broken( { }", "sm_80", 0, "x", &c, &info, &e);
    CHECK("a compile error fails", rc == -1 && e.code != 0);
    CHECK("... with the log", c.log && strlen(c.log) > 0);
    nvrtc_compiled_free(&c);
    kcache_entry *v;
    int n;
    CHECK("... and stores nothing", kcache_list(dir, &v, &n, &e) == 0 && n == 0);
    free(v);
}

static void test_list_and_clear(void)
{
    const char *dir = fresh_cache("list");
    sp_compiled c;
    kcache_info a, b;
    sp_err e = { 0 };
    kcache_get(SRC, "sm_80", 0, "spattn_test_inc", &c, &a, &e);
    nvrtc_compiled_free(&c);
    kcache_get(SRC2, "sm_86", 12080, "spattn_test_dec", &c, &b, &e);
    nvrtc_compiled_free(&c);
    char path[700];
    snprintf(path, sizeof path, "%s/0123456789abcdef0123456789abcdef.cubin", dir);
    write_bytes(path, "junk", 4);
    snprintf(path, sizeof path, "%s/0123456789abcdef0123456789abcdef.cubin.tmp.AbC123", dir);
    write_bytes(path, "half", 4);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_bytes(path, "keep me", 7);
    snprintf(path, sizeof path, "%s/0123456789ABCDEF0123456789ABCDEF.cubin", dir);
    write_bytes(path, "upper case: not ours", 20);

    kcache_entry *v = NULL;
    int n = 0;
    CHECK("list succeeds", kcache_list(NULL, &v, &n, &e) == 0);
    CHECKF(n == 3, "three entries (two good, one damaged), got %d", n);
    int good = 0, bad = 0;
    for (int i = 0; i < n; i++) {
        if (!v[i].valid) { bad++; CHECK("damaged entry keeps its key", strcmp(v[i].key, "0123456789abcdef0123456789abcdef") == 0); continue; }
        good++;
        if (strcmp(v[i].key, a.key) == 0)
            CHECK("entry a: label, arch, versions", strcmp(v[i].label, "spattn_test_inc") == 0 &&
                  strcmp(v[i].arch, "sm_80") == 0 && v[i].driver_version == 0 && v[i].nvrtc_version == nvrtc_version());
        else if (strcmp(v[i].key, b.key) == 0)
            CHECK("entry b: label, arch, driver", strcmp(v[i].label, "spattn_test_dec") == 0 &&
                  strcmp(v[i].arch, "sm_86") == 0 && v[i].driver_version == 12080);
        else CHECK("unknown valid entry", 0);
        CHECK("size is the file size", v[i].bytes > 256 && v[i].mtime > 0);
    }
    CHECK("two valid, one damaged", good == 2 && bad == 1);
    free(v);

    int removed = -1;
    CHECK("clear succeeds", kcache_clear(dir, &removed, &e) == 0);
    CHECKF(removed == 3, "clear removed %d entries, want 3", removed);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    CHECK("clear leaves other files", file_size(path) == 7);
    snprintf(path, sizeof path, "%s/0123456789ABCDEF0123456789ABCDEF.cubin", dir);
    CHECK("clear leaves files that only look similar", file_size(path) == 20);
    snprintf(path, sizeof path, "%s/0123456789abcdef0123456789abcdef.cubin.tmp.AbC123", dir);
    CHECK("clear removes leftover temp files", file_size(path) == -1);
    CHECK("list after clear is empty", kcache_list(dir, &v, &n, &e) == 0 && n == 0);
    free(v);
    CHECK("clear again removes 0", kcache_clear(dir, &removed, &e) == 0 && removed == 0);

    snprintf(path, sizeof path, "%s/does/not/exist", root);
    CHECK("missing dir: empty list", kcache_list(path, &v, &n, &e) == 0 && n == 0);
    free(v);
    CHECK("missing dir: clear removes 0", kcache_clear(path, &removed, &e) == 0 && removed == 0);
}

/* The GPU reference's helper kernels go through the cache too: they must
 * compile for Ampere and Hopper without spilling (no GPU needed). */
static void test_ref_helpers_compile(void)
{
    static const char *archs[] = { "sm_80", "sm_90a" };
    static const char *kernels[] = { "ref_gather", "ref_softmax", "ref_delta", "ref_ds", "ref_compare" };
    fresh_cache("refhelpers");
    for (int a = 0; a < 2; a++) {
        sp_compiled c;
        kcache_info info;
        sp_err e = { 0 };
        int rc = kcache_get(refgpu_source(), archs[a], 0, "spattn_ref_helpers", &c, &info, &e);
        CHECKF(rc == 0 && c.len > 0, "ref helpers compile for %s: %s", archs[a], e.msg);
        for (int k = 0; rc == 0 && k < 5; k++) {
            sp_kres res;
            CHECKF(nvrtc_kernel_resources(c.log, kernels[k], &res) == 0, "%s: %s in the ptxas report", archs[a], kernels[k]);
            CHECKF(res.spill_stores == 0 && res.spill_loads == 0, "%s: %s spills", archs[a], kernels[k]);
        }
        nvrtc_compiled_free(&c);
    }
}

static void test_teardown(void)
{
    char cmd[400];
    if (!root[0]) return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK("cleanup", system(cmd) == 0);
}

static const test_case tests[] = {
    { "dir_precedence", test_dir_precedence },
    { "keys", test_keys },
    { "miss_then_hit", test_miss_then_hit },
    { "damaged_entries", test_damaged_entries },
    { "entry_is_a_directory", test_entry_is_a_directory },
    { "entry_is_a_fifo", test_entry_is_a_fifo },
    { "list_checks_the_hash", test_list_checks_the_hash },
    { "two_processes", test_two_processes },
    { "unwritable", test_unwritable },
    { "compile_error", test_compile_error },
    { "list_and_clear", test_list_and_clear },
    { "ref_helpers_compile", test_ref_helpers_compile },
    { "teardown", test_teardown },
    { 0, 0 },
};
TEST_MAIN(tests)
