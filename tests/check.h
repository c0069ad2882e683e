/* A tiny test harness for the C unit tests.  Each test file defines test
 * functions and a table, and ends with TEST_MAIN(table):
 *
 *     static void test_ratio(void) { CHECK("spattn H16 ratio", fabs(r - 0.176441) < 1e-6); }
 *     static const test_case tests[] = { { "ratio", test_ratio }, { 0, 0 } };
 *     TEST_MAIN(tests)
 *
 * Every CHECK counts as one passed or failed assertion; failures print the
 * file and line.  The binary prints "N passed, N failed" last and exits 1 if
 * anything failed.  tests/run.sh counts the cases (test functions) and shows
 * the assertions beside them. */
#ifndef SPATTN_TEST_CHECK_H
#define SPATTN_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name; void (*fn)(void); } test_case;

static int check_passed, check_failed;
static const char *check_current = "";

#define CHECK(what, expr)                                                                  \
    do {                                                                                   \
        if (expr) check_passed++;                                                          \
        else {                                                                             \
            check_failed++;                                                                \
            fprintf(stderr, "FAIL %s: %s (%s:%d: %s)\n", check_current, what, __FILE__,     \
                    __LINE__, #expr);                                                      \
        }                                                                                  \
    } while (0)

/* CHECKF: like CHECK with a printf-style description. */
#define CHECKF(expr, ...)                                                                  \
    do {                                                                                   \
        if (expr) check_passed++;                                                          \
        else {                                                                             \
            check_failed++;                                                                \
            fprintf(stderr, "FAIL %s (%s:%d): ", check_current, __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

/* EXPECT: for checks inside a loop over many cases, which would flood the log as
 * CHECKs: counts the failures in check_n_bad and keeps the first one's message in
 * check_first_bad; the caller resets both, runs the loop, then reports once, e.g.
 * CHECKF(check_n_bad == 0, "%s (%d wrong)", check_first_bad, check_n_bad). */
static char check_first_bad[512] __attribute__((unused));
static int check_n_bad __attribute__((unused));

#define EXPECT(cond, ...)                                                                  \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            if (check_n_bad++ == 0) snprintf(check_first_bad, sizeof check_first_bad, __VA_ARGS__); \
        }                                                                                  \
    } while (0)

/* A temporary directory of this test binary, $TMPDIR/spattn-test-NAME-XXXXXX (else
 * under /tmp), made on first use and removed with its files at exit.  Exits 1 if
 * it cannot be made. */
static char check_tmp[512] __attribute__((unused));
static inline void check_tmp_remove(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", check_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", check_tmp);
}
static inline const char *check_tmp_dir(const char *name)
{
    if (!check_tmp[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(check_tmp, sizeof check_tmp, "%s/spattn-test-%s-XXXXXX", t && *t ? t : "/tmp", name);
        if (!mkdtemp(check_tmp)) { perror("mkdtemp"); exit(1); }
        atexit(check_tmp_remove);
    }
    return check_tmp;
}

/* Is a kernel name prefix + "_" + 8 lowercase hex digits (kcfg_name's hash)? */
static inline int kernel_named(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) != 0 || name[n] != '_' || strlen(name + n + 1) != 8) return 0;
    for (const char *p = name + n + 1; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

/* TEST_MAIN: runs the cases whose name contains argv[1] (all without one).
 * With SPATTN_TEST_QUICK set (make test-quick), cases whose name contains
 * "compile" (NVRTC, seconds each) are left out.  Prints "ok"/"FAIL" per case
 * on stderr, then "cases: P passed, F failed" and "N passed, N failed" (the
 * assertions) on stdout. */
#define TEST_MAIN(table)                                                                   \
    int main(int argc, char **argv)                                                        \
    {                                                                                      \
        const char *quick = getenv("SPATTN_TEST_QUICK");                                   \
        int cases_passed = 0, cases_failed = 0;                                            \
        for (const test_case *t = (table); t->name; t++) {                                 \
            if (argc > 1 && !strstr(t->name, argv[1])) continue;                           \
            if (quick && *quick && strstr(t->name, "compile")) continue;                   \
            check_current = t->name;                                                       \
            int before = check_failed;                                                     \
            t->fn();                                                                       \
            fprintf(stderr, "%s %s\n", check_failed == before ? "ok  " : "FAIL", t->name); \
            if (check_failed == before) cases_passed++;                                    \
            else cases_failed++;                                                           \
        }                                                                                  \
        printf("cases: %d passed, %d failed\n", cases_passed, cases_failed);               \
        printf("%d passed, %d failed\n", check_passed, check_failed);                      \
        return check_failed ? 1 : 0;                                                       \
    }

#endif
