/* common/: output targets and staged writes, input type checks, checked
 * size products, the memory budget, text escaping (issue 19). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/strbuf.h"
#include "common/mem.h"
#include "common/text.h"
#include "tests/check.h"

static char dir[256];

static const char *path_in(const char *name)
{
    static char buf[2][512];
    static int k;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/spattn-test-common-XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    }
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void test_out_check(void)
{
    sp_out o;
    sp_err e = { 0 };
    CHECK("empty name: exit 2", sp_out_check("", "-o", &o, &e) == -1 && e.code == SP_EXIT_USAGE &&
          strcmp(e.msg, "-o: empty file name") == 0);
    CHECK("a directory: exit 2", sp_out_check(path_in(""), "-o", &o, &e) == -1 && strstr(e.msg, "is a directory"));
    CHECK("a missing directory: exit 2", sp_out_check(path_in("no/x"), "-o", &o, &e) == -1 &&
          strstr(e.msg, "does not exist"));
    mkfifo(path_in("fifo"), 0644);
    CHECK("a FIFO: exit 2", sp_out_check(path_in("fifo"), "-o", &o, &e) == -1 && strstr(e.msg, "a FIFO"));
    CHECK("/dev/null: exit 2", sp_out_check("/dev/null", "-o", &o, &e) == -1 && strstr(e.msg, "character device"));
    CHECK("a new file: fine", sp_out_check(path_in("new.txt"), "-o", &o, &e) == 0 && o.target[0] == '/');

    sp_out two[2];
    const char *what[2] = { "-o", "--lse-out" };
    sp_out_check(path_in("same"), what[0], &two[0], &e);
    char dotted[600];
    snprintf(dotted, sizeof dotted, "%s/./same", dir);
    sp_out_check(dotted, what[1], &two[1], &e);
    CHECK("one file by two names: exit 2", sp_outs_distinct(two, 2, what, &e) == -1 && strstr(e.msg, "same file"));
}

static void test_staged_writes(void)
{
    sp_out o[2];
    sp_err e = { 0 };
    CHECK("check a", sp_out_check(path_in("a.txt"), "a", &o[0], &e) == 0);
    CHECK("check b", sp_out_check(path_in("b.txt"), "b", &o[1], &e) == 0);
    CHECK("stage a", sp_out_stage(&o[0], "AAA", 3, &e) == 0);
    CHECK("stage b", sp_out_stage(&o[1], "BB", 2, &e) == 0);
    struct stat st;
    CHECK("nothing in place before the commit", stat(path_in("a.txt"), &st) != 0 && stat(path_in("b.txt"), &st) != 0);
    CHECK("the temp name is short", strlen(strrchr(o[0].tmp, '/') + 1) == 14);
    CHECK("commit", sp_outs_commit(o, 2, &e) == 0);
    CHECK("both in place", stat(path_in("a.txt"), &st) == 0 && st.st_size == 3 && stat(path_in("b.txt"), &st) == 0);

    CHECK("stage again", sp_out_check(path_in("a.txt"), "a", &o[0], &e) == 0 && sp_out_stage(&o[0], "x", 1, &e) == 0);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", o[0].tmp);
    sp_outs_discard(o, 1);
    CHECK("discard removes the temp and keeps the old file",
          stat(tmp, &st) != 0 && stat(path_in("a.txt"), &st) == 0 && st.st_size == 3);
}

static void test_open_input(void)
{
    sp_err e = { 0 };
    alarm(20);   /* a regression would block in open(2) */
    CHECK("a FIFO is refused without blocking", sp_open_input(path_in("fifo"), &e) == -1 && strstr(e.msg, "FIFO"));
    alarm(0);
    CHECK("a directory is refused", sp_open_input(dir, &e) == -1 && strstr(e.msg, "directory"));
    CHECK("a device is refused", sp_open_input("/dev/zero", &e) == -1 && strstr(e.msg, "character device"));
    int fd = sp_open_input(path_in("a.txt"), &e);
    CHECK("a regular file opens", fd >= 0);
    if (fd >= 0) close(fd);
}

static void test_checked_sizes(void)
{
    size_t n = 0;
    int64_t p = 0;
    sp_err e = { 0 };
    CHECK("a small product", sp_mul_size(&n, &e, (size_t)4, (size_t)16, (size_t)128, (size_t)0) == 0 && n == 8192);
    CHECK("an overflowing product: exit 2", sp_mul_size(&n, &e, SIZE_MAX / 2, (size_t)3, (size_t)0) == -1 &&
          e.code == SP_EXIT_USAGE);
    CHECK("int64 product", sp_mul_i64(1 << 20, 1 << 20, &p, &e) == 0 && p == (int64_t)1 << 40);
    CHECK("int64 overflow: exit 2", sp_mul_i64(396374193995776LL, 65536, &p, &e) == -1 && strstr(e.msg, "too large"));
    CHECK("bytes saturate", sp_bytes_mul(UINT64_MAX / 2, 3) == UINT64_MAX && sp_bytes_add(UINT64_MAX, 1) == UINT64_MAX);
}

static void test_memory_budget(void)
{
    sp_err e = { 0 };
    uint64_t b;
    const char *src;
    setenv("SPATTN_MEM_LIMIT", "1.5K", 1);
    CHECK("SPATTN_MEM_LIMIT with a suffix", sp_mem_available(&b, &src, &e) == 0 && b == 1536 &&
          strcmp(src, "SPATTN_MEM_LIMIT") == 0);
    CHECK("within the budget", sp_mem_check(1536, "x", &e) == 0);
    CHECK("over it: exit 2, needed vs available", sp_mem_check(2u << 20, "the test", &e) == -1 &&
          e.code == SP_EXIT_USAGE && strcmp(e.msg, "the test: needed 2.0 MiB vs available 1.5 KiB (SPATTN_MEM_LIMIT)") == 0);
    setenv("SPATTN_MEM_LIMIT", "12Q", 1);
    CHECK("a malformed limit: exit 2", sp_mem_available(&b, &src, &e) == -1 && strstr(e.msg, "'12Q' is not a size"));
    unsetenv("SPATTN_MEM_LIMIT");
    CHECK("the machine's own number", sp_mem_available(&b, &src, &e) == 0 && b > 0);
}

static void test_text(void)
{
    const unsigned char ok3[] = { 0xe2, 0x82, 0xac }, over[] = { 0xc0, 0xaf }, surr[] = { 0xed, 0xa0, 0x80 };
    CHECK("ASCII", sp_utf8_seq((const unsigned char *)"a", 1) == 1);
    CHECK("a 3-byte sequence", sp_utf8_seq(ok3, 3) == 3);
    CHECK("cut short", sp_utf8_seq(ok3, 2) == 0);
    CHECK("overlong", sp_utf8_seq(over, 2) == 0);
    CHECK("a surrogate", sp_utf8_seq(surr, 3) == 0);
    char out[64];
    CHECK("controls and bad bytes as \\xNN", strcmp(sp_printable("a\033[2J\xff\xe2\x82\xac", out, sizeof out),
                                                   "a\\x1b[2J\\xff\xe2\x82\xac") == 0);
    CHECK("cut to the buffer", strcmp(sp_printable("\001\002", out, 6), "\\x01") == 0);
    strbuf sb = STRBUF_INIT;
    sb_puts(&sb, "{\"a\":\"x\xff\"}");
    CHECK("JSON repair counts", sp_json_utf8_repair(&sb, 0) == 1);
    CHECK("JSON repair writes U+FFFD", strcmp(sb.buf, "{\"a\":\"x\\ufffd\"}") == 0);
    sb_free(&sb);
}

static void test_cleanup(void)
{
    const char *names[] = { "fifo", "a.txt", "b.txt", "new.txt", "same" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(path_in(names[i]));
    CHECK("temp dir removed", rmdir(dir) == 0);
}

/* The library never aborts: a failed allocation leaves the buffer as it was,
 * marks it, and later appends are no-ops (emit_kernel then reports it). */
static void test_strbuf_oom(void)
{
    strbuf sb = STRBUF_INIT;
    sb_init(&sb);
    sb_puts(&sb, "kept");
    char byte = 'x';
    sb_add(&sb, &byte, SIZE_MAX / 4);   /* no such allocation: fails, copies nothing */
    CHECK("marked", sb.oom == 1);
    CHECK("what it had stays", sb.len == 4 && strcmp(sb.buf, "kept") == 0);
    sb_puts(&sb, "more");
    sb_printf(&sb, "%d", 42);
    CHECK("later appends do nothing", sb.len == 4);
    CHECK("detach gives NULL", sb_detach(&sb, NULL) == NULL && sb.buf == NULL && sb.oom == 0);
    sb_init(&sb);
    sb_add(&sb, &byte, SIZE_MAX);       /* the size itself would overflow */
    CHECK("overflowing size: marked, not a loop", sb.oom == 1 && sb.len == 0);
    sb_free(&sb);
}

static const test_case tests[] = {
    { "out_check", test_out_check },
    { "staged_writes", test_staged_writes },
    { "open_input", test_open_input },
    { "checked_sizes", test_checked_sizes },
    { "memory_budget", test_memory_budget },
    { "text", test_text },
    { "strbuf_oom", test_strbuf_oom },
    { "cleanup", test_cleanup },
    { 0, 0 },
};
TEST_MAIN(tests)
