/* run --decode and check --decode (cmd/decode.c): one decoding step from a
 * KV cache, on the GPU (the split-KV decode kernels) or the float64 CPU
 * reference.  cmd/run.c and cmd/check.c parse the flags and hand over. */
#ifndef SPATTN_CMD_DECODE_H
#define SPATTN_CMD_DECODE_H

#include "cmd/gpu_common.h"
#include "cmd/opts.h"

typedef struct {
    gpu_opts g;                   /* spec, --batch, --kv-len (as seq_len), --layer-index, --pattern, --dtype,
                                   * --tile, --db, --seed, --gpu */
    int new_tokens;               /* T; 0: 1, or --q's */
    const char *kv_lens;          /* "L,L,...": each sequence's length; NULL: all N */
    int page_size;                /* 0: contiguous cache */
    int splits;                   /* 0: chosen from the GPU */
    const char *q_path, *k_path, *v_path, *out_path, *lse_path;
    int iters, threads, json;
    int on_gpu;                   /* run: the device picked; check: 1 */
    const char *device_reason;    /* run --device auto: why; else NULL */
} decode_opts;

/* The decode flags of run and check, as option rows (with decode_opts d). */
#define DECODE_OPTS_ROWS(flag, d)                                                                                   \
    OPT_BOOL(0, "decode", &(flag), "one decoding step from a KV cache: Q of the last --new-tokens positions"),    \
    OPT_I64(0, "kv-len", &(d).g.seq_len, "N", "decode: the cache's length N (default: the spec's first seq_len)", 1, \
            1 << 24),                                                                                             \
    OPT_INT(0, "new-tokens", &(d).new_tokens, "T", "decode: query positions per sequence, the last T (default 1)", 1, \
            4096),                                                                                                \
    OPT_STRING(0, "kv-lens", &(d).kv_lens, "L,L,...", "decode: each sequence's length (B entries, 0..N; default N)"), \
    OPT_INT(0, "page-size", &(d).page_size, "P", "decode: a paged cache of P-token pages (16..256, a power of two), "  \
            "pages in shuffled order", 1, 4096),                                                                  \
    OPT_INT(0, "splits", &(d).splits, "S", "decode, GPU: CTAs per (batch, kv head) (default: fill the GPU)", 1, 256)

/* Usage errors common to both: lengths, page size, T <= N, flags that do not
 * apply.  Called after parsing, before any work. */
int decode_check_flags(const decode_opts *o, sp_err *e);
int decode_run(const decode_opts *o, sp_err *e);
int decode_check(const decode_opts *o, sp_err *e);

#endif
