/* Replays the fuzzers' seed corpora (tests/fuzz/corpus/NAME) through the
 * same entry points the libFuzzer targets use, in the ordinary test build,
 * so `make test` and `make asan` keep them clean between fuzzing runs; an
 * input that once crashed a fuzzer belongs in the corpus.  Run from the
 * repository root. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "tests/check.h"

#define LLVMFuzzerTestOneInput fuzz_spec_one
#include "tests/fuzz/fuzz_spec.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_npy_one
#include "tests/fuzz/fuzz_npy.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_jsonl_one
#include "tests/fuzz/fuzz_jsonl.c"
#undef LLVMFuzzerTestOneInput

static int replay(const char *name, int (*one)(const uint8_t *, size_t))
{
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fuzz/corpus/%s", name);
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "%s is readable (run from the repository root)", dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        char *data;
        size_t len;
        sp_err e = { 0 };
        if (sp_read_file(path, 1 << 20, &data, &len, &e)) { CHECKF(0, "%s: %s", path, e.msg); continue; }
        CHECKF(one((const uint8_t *)data, len) == 0, "%s", path);
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

static void test_spec_seeds(void) { CHECK("spec seeds", replay("spec", fuzz_spec_one) >= 3); }
static void test_npy_seeds(void) { CHECK("npy seeds", replay("npy", fuzz_npy_one) >= 3); }
static void test_jsonl_seeds(void) { CHECK("jsonl seeds", replay("jsonl", fuzz_jsonl_one) >= 2); }

static const test_case tests[] = {
    { "spec_seeds", test_spec_seeds },
    { "npy_seeds", test_npy_seeds },
    { "jsonl_seeds", test_jsonl_seeds },
    { 0, 0 },
};
TEST_MAIN(tests)
