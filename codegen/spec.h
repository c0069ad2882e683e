/* The attention spec: what a YAML file in configs/ describes (see
 * spattn-spec(5)).  spec_load parses with libyaml and validates everything;
 * after it succeeds every field is in range and later stages need not
 * re-check. */
#ifndef SPATTN_SPEC_H
#define SPATTN_SPEC_H

#include <stdint.h>

#include "common/err.h"

#define SP_MAX_HEADS      256
#define SP_MAX_INTERVALS  16   /* per head, custom bands */
#define SP_MAX_OVERRIDES  64
#define SP_MAX_SHAPES     16

typedef enum { SP_DENSE, SP_LOCAL, SP_SPATTN, SP_EXCLUSIVE, SP_GAPPED, SP_CUSTOM, SP_WINDOW } sp_pattern_kind;
typedef enum { SP_BF16, SP_FP16 } sp_dtype;

/* Half-open interval of distances d = i - j: lo <= d < hi. */
typedef struct { int64_t lo, hi; } sp_interval;

/* A sorted list of disjoint intervals (one head's bands). */
typedef struct { int n; sp_interval iv[SP_MAX_INTERVALS]; } sp_band_list;

/* One attention pattern: the built-in layouts of DESIGN.md, a sliding
 * window, or custom bands. */
typedef struct {
    sp_pattern_kind kind;
    int64_t band_basis;     /* 0: L = N (seq_len); > 0: L fixed to this
                               (>= heads).  Always 0 for custom and unused
                               by dense. */
    sp_band_list *custom;   /* kind == SP_CUSTOM: `heads` entries, as written
                               in the spec, in absolute distances (validated:
                               sorted, disjoint (touching allowed), lo >= 0,
                               hi > lo, hi <= INT32_MAX; a head may have
                               n == 0); else NULL.  `bands_all_heads` in
                               the spec fills every head with one list. */
    int64_t window;         /* kind == SP_WINDOW: W, 1 <= W <= INT32_MAX; every
                               head attends distances [0, W) (the token and
                               the W - 1 before it); else 0 */
} sp_pattern;

/* Per-layer override: layers first..last (inclusive) use `pattern`. */
typedef struct { int first, last; sp_pattern pattern; } sp_layer_override;

typedef struct {
    char path[512];          /* file it came from, for messages */
    char name[128];
    int heads, kv_heads, head_dim;
    sp_dtype dtype;
    int causal;              /* always 1 today: only causal attention is defined */
    double softmax_scale;    /* 0: 1/sqrt(head_dim) */
    int num_layers;          /* 0 if the spec does not say */
    sp_pattern pattern;      /* default for every layer */
    int n_overrides;
    sp_layer_override overrides[SP_MAX_OVERRIDES];
    int n_batch;   int64_t batch[SP_MAX_SHAPES];    /* default shapes (>= 1 each) */
    int n_seq_len; int64_t seq_len[SP_MAX_SHAPES];
} sp_spec;

#define SPEC_MAX_FILE_BYTES (1 << 20)

/* Load and validate a spec file (at most SPEC_MAX_FILE_BYTES of UTF-8 YAML).  On error
 * fills e with file:line:column (1-based; 0:0 only when the file cannot be
 * read) and code SP_EXIT_USAGE, sometimes a hint ("did you mean ..."), and
 * leaves *out zeroed with nothing to free.  On success free with spec_free. */
int spec_load(const char *path, sp_spec *out, sp_err *e);
/* Same from memory (text need not be NUL-terminated); `name` is used as the
 * file name in messages and, without a `name:` key, for the spec's name. */
int spec_parse(const char *text, size_t len, const char *name, sp_spec *out, sp_err *e);
/* Free the custom band tables and zero *s; safe to call twice. */
void spec_free(sp_spec *s);

/* The pattern of layer `layer` (overrides first, then the default).  Layer
 * indices past num_layers are an error for the caller to check. */
const sp_pattern *spec_layer_pattern(const sp_spec *s, int layer);
/* The softmax scale actually used. */
double spec_scale(const sp_spec *s);

const char *sp_pattern_name(sp_pattern_kind k);
int sp_pattern_from_name(const char *name, sp_pattern_kind *out);  /* 0 ok, -1 unknown */
const char *sp_dtype_name(sp_dtype t);
int sp_dtype_bytes(sp_dtype t);

#endif
