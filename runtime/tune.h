/* The autotuner: find a GPU's best tile config per (kind, batch, N bucket)
 * of a spec, and for decode per (batch, N bucket, T), and keep it in the
 * tuning database.  The backward is tuned per mode: the deterministic one
 * (dQ adds in turn) times the same candidates with deterministic = 1 and
 * keeps its winners as kind "bwd-det" (runtime/config.h).
 *
 * For each key:
 *   1. candidates: kcfg_candidates (tiles, warps, stages), pruned by the
 *      compiler's resource report before any launch (spills, registers x
 *      threads over the register file, shared memory over the opt-in limit);
 *      compiled on several threads, through the kernel cache, once per kind
 *      (the band table is a launch argument); decode: every tile with
 *      splits 1, 2, 3, 4, 6 and 8 (a launch parameter), less those its
 *      launch at the key would clamp (each split keeps >= 2 tiles);
 *   2. a trusted result: the cuBLAS fp32 reference on the same inputs (for
 *      decode the float64 CPU reference, runtime/gpu_decode.h);
 *   3. every candidate runs on NaN-poisoned outputs and is compared with the
 *      trusted result first: one out of bounds is rejected (and reported), so
 *      a fast wrong config never wins; survivors are timed (CUDA events,
 *      median, input sets rotated so the L2 cache does not flatter);
 *   4. the winners of all finished keys go into the database in one
 *      transaction, also after a stop, so the database is never half-written.
 * Keys the database already has for this GPU, driver, NVRTC and spattn are
 * skipped unless force.
 *
 * The fake GPU (tune_fake_gpu, opts.fake) swaps the GPU for a deterministic
 * stand-in: a fixed identity, times computed from the config, one candidate
 * deliberately wrong.  It exists so that the database side (skip, force,
 * concurrency, interruption) is tested on machines without a GPU; the CLI
 * and spattn_tune turn it on with SPATTN_TUNE_FAKE=1 (tune_fake_requested).
 *
 * Nothing here prints or exits: news goes through the progress callback,
 * errors into sp_err. */
#ifndef SPATTN_TUNE_H
#define SPATTN_TUNE_H

#include <signal.h>
#include <stdint.h>

#include "codegen/kcfg.h"
#include "codegen/spec.h"
#include "common/err.h"
#include "runtime/cu.h"
#include "tuning_db/db.h"

#define TUNE_MAX_CANDIDATES 128   /* the largest search space today: 90 (decode: 15 tiles x 6 splits) */

/* What the tuner reports while it works. */
typedef enum {
    TUNE_EV_MESSAGE,   /* message: one line of news, no "tune: " prefix and no newline */
    TUNE_EV_STEP,      /* candidate done of total of the current key; message: its name */
} tune_event_type;

typedef struct {
    tune_event_type type;
    const char *message;
    long done, total;
} tune_event;

typedef void (*tune_progress_fn)(void *user, const tune_event *ev);

typedef enum {
    TUNE_SAVED,        /* tuned: the winner is in row, and in the database */
    TUNE_UP_TO_DATE,   /* the database had the key: skipped (force re-tunes) */
    TUNE_NO_WINNER,    /* every candidate was rejected: the run stops with SP_EXIT_FAIL */
    TUNE_NOT_SAVED,    /* tuned, but the one transaction that saves the winners failed (the status says why) */
} tune_outcome;

/* What a run tunes, one entry per kind: the kernel kind, and for the
 * backward its mode (deterministic: checked and timed with deterministic =
 * 1, saved under config_kind_name's "bwd-det"). */
typedef struct {
    sp_kernel_kind kind;
    int deterministic;
} tune_kind;

/* One key's result. */
typedef struct {
    sp_kernel_kind kind;
    int deterministic;        /* the backward's deterministic mode ("bwd-det" rows) */
    int64_t batch, seq_len;
    int new_tokens;           /* decode: T; else 0 */
    tune_outcome outcome;
    db_row row;               /* TUNE_SAVED: the row written (key, tile, median_ms, eff_tflops, ...) */
    int checked, rejected, pruned;
} tune_result;

typedef struct {
    const sp_spec *spec;
    const sp_pattern *pattern;            /* the layer's pattern (points into spec or lives as long) */
    const tune_kind *kinds;               /* in order; the backward's two modes share the candidates'
                                           * compiles when one follows the other */
    int nkinds;
    const int64_t *batches, *seq_lens;    /* the keys: every kind x batch x seq_len (x new_tokens) */
    int nbatches, nseq_lens;
    const int64_t *new_tokens;            /* decode's T: every one with every (batch, seq_len); */
    int nnew_tokens;                      /* 0: T = 1 */
    double budget_s;                      /* > 0: no candidate starts after this long; inf: no limit */
    int force;                            /* re-tune keys the database has */
    int threads;                          /* compile threads (clamped to 1..32) */
    int iters;                            /* timed launches per candidate */
    int fake;                             /* the fake GPU: g is tune_fake_gpu's */
    volatile sig_atomic_t *stop;          /* NULL, or set non-zero (a signal handler): stop after the
                                           * current candidate, save the keys finished */
    tune_progress_fn progress;            /* NULL: quiet */
    void *user;
} tune_opts;

typedef struct {
    int saved, up_to_date;                /* keys */
    int checked, rejected;                /* candidates, over all keys */
    int budget_spent;                     /* keys were left because the budget ran out */
    int stopped;                          /* *stop was seen */
} tune_summary;

/* The keys of o: kinds x batches x seq_lens, decode's times new_tokens. */
int tune_key_count(const tune_opts *o);

/* Tune every key of o on g (open, or tune_fake_gpu's with o->fake) into d
 * (opened read-write).  res[0, max) gets one entry per key reached, in
 * order (kinds, batches, seq_lens, new_tokens), *nres their count (max >=
 * tune_key_count(o) holds them all).  Returns SP_EXIT_OK, or the status of the first error (e set;
 * TUNE_NO_WINNER gives SP_EXIT_FAIL with e set too): keys finished before
 * it are saved all the same.  A stop is not an error here: sum->stopped
 * says so. */
int tune_run(sp_gpu *g, db *d, const tune_opts *o, tune_result *res, int max, int *nres, tune_summary *sum,
             sp_err *e);

/* SPATTN_TUNE_FAKE is set to something other than "" and "0". */
int tune_fake_requested(void);
/* The fake GPU's identity: "spattn fake GPU", sm_90, 132 SMs. */
void tune_fake_gpu(sp_gpu *g);

#endif
