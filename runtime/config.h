/* Which kernel config a problem runs: --tile (or an API caller's tile),
 * else the tuning database's nearest bucket for this GPU, else the
 * heuristic.  One home for that choice, so that the CLI (run, check, bench)
 * and the library's plans pick the same kernels. */
#ifndef SPATTN_CONFIG_H
#define SPATTN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/cu.h"
#include "tuning_db/db.h"

/* The tuning-database key of (spec, pattern, kind, batch, N) on GPU g. */
void config_db_key(const sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind, int batch,
                   int64_t N, db_key *key);

/* Fill c (derived) for kind: tile if not NULL, else the database at db_path
 * (NULL: the default; a missing or unreadable one means "not tuned"), else
 * the heuristic.  source (n bytes) says which: "--tile", "tuned (batch B,
 * N<=L)" or "heuristic". */
int config_pick(const sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind, int batch,
                int64_t N, const char *db_path, const char *tile, sp_kcfg *c, char *source, size_t n, sp_err *e);

#endif
