/* spattn run --layer: a whole attention layer's forward (cmd/layer.c).
 * cmd/run.c parses the flags, picks the device and hands over here. */
#ifndef SPATTN_CMD_LAYER_H
#define SPATTN_CMD_LAYER_H

#include <stdint.h>

#include "common/err.h"

typedef struct {
    const char *spec_path;
    int on_gpu;                  /* the device run picked: 1 GPU, 0 the float64 CPU reference */
    const char *device_reason;   /* why --device auto chose it, "" otherwise */
    int gpu;                     /* --gpu N */
    int64_t batch, seq_len;      /* 0: --x's shape, else the spec's first */
    int layer_index;             /* -1: the spec's default pattern */
    int64_t seed;
    int64_t d_model;             /* 0: --weights' wq.npy, else --x, else heads * head_dim */
    const char *weights_dir;     /* wq.npy wk.npy wv.npy wo.npy, or NULL: random */
    const char *x_path;          /* x [B, N, d_model], or NULL: random */
    const char *out_path;        /* -o: y as float32 [B, N, d_model] */
    int iters;                   /* 0: GPU 50, CPU 1 */
    int threads;                 /* CPU reference threads, 0 = all */
    int json, no_dense, check;
    const char *tile, *db_path;  /* GPU kernel config */
} layer_opts;

/* Run the layer as o says and print the report (text or JSON) on stdout.
 * Returns the exit status: 0, 1 (--check failed, or a run failure with e
 * set), 2 (usage, spec or input file; e set), 3 (GPU; e set). */
int run_layer(const layer_opts *o, sp_err *e);

#endif
