/* placeholder: replaced by the spec module */
#include "codegen/spec.h"
#include <string.h>
int spec_load(const char *path, sp_spec *out, sp_err *e) { (void)out; return sp_fail_at(e, SP_EXIT_USAGE, path, 0, 0, "spec loading not implemented yet"); }
void spec_free(sp_spec *s) { (void)s; }
const sp_pattern *spec_layer_pattern(const sp_spec *s, int layer) { (void)layer; return &s->pattern; }
