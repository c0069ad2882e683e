/* libFuzzer target: the spec parser (codegen/spec.c) on arbitrary bytes.
 * Any input must give 0 or -1 with a message, never a crash, a leak or
 * undefined behaviour.  Built and run by `make fuzz` (tests/fuzz/run.sh). */
#include <stddef.h>
#include <stdint.h>

#include "codegen/bands.h"
#include "codegen/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_spec s;
    sp_err e = { 0 };
    if (spec_parse((const char *)data, size, "fuzz.yaml", &s, &e) == 0) {
        /* A spec that loads must also plan: walk every head's bands. */
        for (int h = 0; h < s.heads; h++) {
            sp_band_list b;
            bands_head(&s.pattern, s.heads, h, 1000, &b);
            (void)bands_pairs(&b, 1000);
        }
        spec_free(&s);
    }
    return 0;
}
