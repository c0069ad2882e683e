/* A tiny test harness for the C unit tests.  Each test file defines test
 * functions and a table, and ends with TEST_MAIN(table):
 *
 *     static void test_ratio(void) { CHECK("spattn H16 ratio", fabs(r - 0.176441) < 1e-6); }
 *     static const test_case tests[] = { { "ratio", test_ratio }, { 0, 0 } };
 *     TEST_MAIN(tests)
 *
 * Every CHECK counts as one passed or failed assertion; failures print the
 * file and line.  The binary prints "N passed, N failed" last and exits 1 if
 * anything failed.  tests/run.sh adds the counts of all binaries up. */
#ifndef SPATTN_TEST_CHECK_H
#define SPATTN_TEST_CHECK_H

#include <stdio.h>
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

#define TEST_MAIN(table)                                                                   \
    int main(int argc, char **argv)                                                        \
    {                                                                                      \
        for (const test_case *t = (table); t->name; t++) {                                 \
            if (argc > 1 && !strstr(t->name, argv[1])) continue;                           \
            check_current = t->name;                                                       \
            int before = check_failed;                                                     \
            t->fn();                                                                       \
            fprintf(stderr, "%s %s\n", check_failed == before ? "ok  " : "FAIL", t->name); \
        }                                                                                  \
        printf("%d passed, %d failed\n", check_passed, check_failed);                      \
        return check_failed ? 1 : 0;                                                       \
    }

#endif
