/* libFuzzer target: the .npy reader (runtime/npy.c).  npy_read takes a
 * path, so each input is written to an in-memory file (memfd) and read
 * back through /proc/self/fd.  Any input must be read or refused, never
 * read past its end. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("spattn-fuzz-npy", 0);
        if (fd < 0) return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return 0;
    npy_array a;
    sp_err e = { 0 };
    if (npy_read(path, &a, &e) == 0) {
        double sum = 0;
        for (size_t i = 0; i < a.count; i++) sum += npy_get(&a, i);   /* touch every element */
        (void)sum;
        npy_free(&a);
    }
    return 0;
}
