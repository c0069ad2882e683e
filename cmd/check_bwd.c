/* The backward check: filled in when the backward kernels land. */
#include "cmd/gpu_common.h"

int check_bwd(gpu_problem *p, const engine_kernel *k, uint64_t seed, int cpu_reference,
              tensor_result *out, int *n, const char **reference, sp_err *e)
{
    (void)p; (void)k; (void)seed; (void)cpu_reference; (void)out; (void)n; (void)reference;
    return sp_fail(e, SP_EXIT_USAGE, "the backward kernels are not available yet");
}
