/* Which kernel config a problem runs: --tile (or an API caller's tile),
 * else the tuning database's nearest bucket for this GPU, else the
 * heuristic.  One home for that choice, so that the CLI (run, check, bench)
 * and the library's plans pick the same kernels.
 *
 * The backward has two modes, and a config of its own for each: the
 * deterministic mode (dQ adds in a fixed order, spattn_backward's
 * deterministic = 1) runs the same kernel family with other waits, so its
 * best tile may differ (on sm_90 at head_dim 64: 2 stages, where the default
 * mode's 3 are faster).  Its config is picked with deterministic = 1: the
 * database's rows of kind "bwd-det" (timed in that mode by the tuner), else
 * its heuristic (kcfg_default_bwd_det).  A tuned "bwd" row is never used for
 * it, nor a "bwd-det" row for the default mode: each was timed in its own
 * mode, and the other mode's winner may be its slower tile. */
#ifndef SPATTN_CONFIG_H
#define SPATTN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/cu.h"
#include "tuning_db/db.h"

/* The database kind of a config: kcfg_kind_name(kind), or "bwd-det" for
 * the backward's deterministic mode (deterministic is ignored for fwd, dec). */
const char *config_kind_name(sp_kernel_kind kind, int deterministic);

/* The tuning-database key of (spec, pattern, kind and mode, batch, N, T) on
 * GPU g.  new_tokens: decode's T (the new tokens per sequence of a step; < 1
 * is taken as 1); ignored for fwd and bwd, whose keys have 0. */
void config_db_key(const sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind,
                   int deterministic, int batch, int64_t N, int new_tokens, db_key *key);

/* Fill c (derived) for kind (the backward: for its deterministic mode if
 * deterministic): tile if not NULL (the same config in both modes: stages
 * it leaves out are the default mode's heuristic's), else the database at
 * db_path (NULL: the default; a missing or unreadable one means "not
 * tuned"), else the heuristic.  source (n bytes) says which: "--tile",
 * "tuned (batch B, N<=L)" (decode: "tuned (batch B, N<=L, T=t)") or
 * "heuristic".
 * A tuned decode row carries its splits (a launch choice, ":kK" in the
 * tile); they are kept only where the row's key is this problem's (batch,
 * N bucket and T): a row of another shape lends its tiles, and the splits
 * are chosen at launch (c->splits = 0, ", splits at launch" in source). */
int config_pick(const sp_gpu *g, const sp_spec *spec, const sp_pattern *pat, sp_kernel_kind kind, int deterministic,
                int batch, int64_t N, int new_tokens, const char *db_path, const char *tile, sp_kcfg *c, char *source,
                size_t n, sp_err *e);

#endif
