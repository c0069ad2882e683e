/* The spec loader: YAML text -> validated sp_spec (spattn-spec(5) is the
 * user's description of the format).
 *
 * Three passes over the text, each catching what the next cannot:
 *   1. bytes:  NUL bytes and invalid UTF-8 are rejected with their position
 *              (a binary file must give a clear message, never a crash);
 *   2. events: libyaml's event parser reports malformed YAML at its mark and
 *              lets us refuse anchors, aliases and extra documents, which
 *              yaml_parser_load would otherwise resolve silently;
 *   3. nodes:  yaml_parser_load builds the document; small typed getters
 *              (get_int, get_string, ...) walk it, each reporting errors at
 *              the offending node's mark.
 * Every error is SP_EXIT_USAGE with a 1-based line and column.  The first
 * error found wins; later stages can trust every field of a loaded spec. */
#include "codegen/spec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/fileio.h"

#define SPEC_MAX_BYTES  SPEC_MAX_FILE_BYTES   /* a spec is a few hundred bytes */
#define SPEC_MAX_LAYERS 65536          /* layer indices are int */
#define SPEC_MAX_SEQ    (1LL << 24)    /* 16M tokens */
#define SPEC_MAX_BATCH  65536
#define SPEC_MAX_BASIS  (1LL << 30)
#define SPEC_MAX_DIST   INT32_MAX      /* custom band distances fit an int */
#define SPEC_MAX_DEPTH  16             /* a spec nests 4 levels at most */

/* ---------------------------------------------------------------- names */

static const char *const pattern_names[] = {
    [SP_DENSE] = "dense", [SP_LOCAL] = "local", [SP_SPATTN] = "spattn",
    [SP_EXCLUSIVE] = "exclusive", [SP_GAPPED] = "gapped", [SP_CUSTOM] = "custom", [SP_WINDOW] = "window",
};
#define N_PATTERNS ((int)(sizeof pattern_names / sizeof pattern_names[0]))

const char *sp_pattern_name(sp_pattern_kind k)
{
    return (int)k >= 0 && (int)k < N_PATTERNS ? pattern_names[k] : "?";
}

int sp_pattern_from_name(const char *name, sp_pattern_kind *out)
{
    for (int k = 0; k < N_PATTERNS; k++)
        if (strcmp(name, pattern_names[k]) == 0) { *out = (sp_pattern_kind)k; return 0; }
    return -1;
}

const char *sp_dtype_name(sp_dtype t) { return t == SP_FP16 ? "fp16" : "bf16"; }
int sp_dtype_bytes(sp_dtype t) { (void)t; return 2; }

double spec_scale(const sp_spec *s)
{
    return s->softmax_scale > 0 ? s->softmax_scale : 1.0 / sqrt((double)s->head_dim);
}

const sp_pattern *spec_layer_pattern(const sp_spec *s, int layer)
{
    for (int i = 0; i < s->n_overrides; i++)
        if (layer >= s->overrides[i].first && layer <= s->overrides[i].last)
            return &s->overrides[i].pattern;
    return &s->pattern;
}

void spec_free(sp_spec *s)
{
    if (!s) return;
    free(s->pattern.custom);
    for (int i = 0; i < s->n_overrides; i++) free(s->overrides[i].pattern.custom);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------ "did you mean" */

/* Edit distance, case-insensitive, for hints on misspelt keys and values. */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            int best = diag + !same;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            diag = row[j];
            row[j] = best;
        }
    }
    return row[lb];
}

/* The candidate closest to `word`, or NULL if none is close enough to be a
 * plausible typo. */
static const char *closest(const char *word, const char *const *cands, int n)
{
    const char *best = NULL;
    int best_d = 99, limit = (int)strlen(word) / 3;
    if (limit < 2) limit = 2;
    for (int i = 0; i < n; i++) {
        if (!cands[i]) continue;
        int d = edit_distance(word, cands[i]);
        if (d < best_d) { best_d = d; best = cands[i]; }
    }
    return best_d <= limit ? best : NULL;
}

/* Names other tools use for our keys (Hugging Face configs, papers). */
static const struct { const char *alias, *key; } key_aliases[] = {
    { "num_heads", "heads" }, { "n_heads", "heads" }, { "num_attention_heads", "heads" },
    { "num_key_value_heads", "kv_heads" }, { "n_kv_heads", "kv_heads" },
    { "num_kv_heads", "kv_heads" }, { "head_size", "head_dim" }, { "d_head", "head_dim" },
    { "seqlen", "seq_len" }, { "seq", "seq_len" }, { "max_seq_len", "seq_len" },
    { "batch_size", "batch" }, { "scale", "softmax_scale" }, { "n_layers", "num_layers" },
    { "num_hidden_layers", "num_layers" }, { "basis", "band_basis" }, { "band", "bands" },
};

/* ------------------------------------------------------- node walking */

typedef struct {
    const char *file;          /* name used in messages */
    yaml_document_t *doc;
    sp_err *e;
} ctx;

/* Record an error at a node's position. */
__attribute__((format(printf, 3, 4)))
static int fail_at(ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof c->e->msg];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = n ? (int)n->start_mark.line + 1 : 1;
    int col = n ? (int)n->start_mark.column + 1 : 1;
    return sp_fail_at(c->e, SP_EXIT_USAGE, c->file, line, col, "%s", msg);
}

static yaml_node_t *node(ctx *c, int id) { return yaml_document_get_node(c->doc, id); }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* What a plain scalar means under the YAML 1.2 core schema.  Quoted scalars
 * are always strings: `heads: "16"` is a string, as in every YAML library. */
typedef enum { V_NULL, V_BOOL, V_INT, V_FLOAT, V_STRING, V_LIST, V_MAP } vclass;

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++) if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int is_float_text(const char *s)
{
    static const char *const special[] = { ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
                                           "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN" };
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (strcmp(s, special[i]) == 0) return 1;
    if (*s == '+' || *s == '-') s++;
    int digits = 0;
    while (*s >= '0' && *s <= '9') { s++; digits++; }
    if (*s == '.') { s++; while (*s >= '0' && *s <= '9') { s++; digits++; } }
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!all_digits(s)) return 0;
        return 1;
    }
    return *s == '\0';
}

static vclass classify(const yaml_node_t *n)
{
    if (n->type == YAML_SEQUENCE_NODE) return V_LIST;
    if (n->type == YAML_MAPPING_NODE) return V_MAP;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return V_STRING;
    const char *s = scalar(n);
    if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return V_NULL;
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") ||
        !strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return V_BOOL;
    if (all_digits(s + (*s == '+' || *s == '-'))) return V_INT;
    if (is_float_text(s)) return V_FLOAT;
    return V_STRING;
}

/* "a list", "a string ('abc')", ... for "expected X, got Y" messages. */
static const char *describe(const yaml_node_t *n, char *buf, size_t size)
{
    const char *s = n->type == YAML_SCALAR_NODE ? scalar(n) : "";
    switch (classify(n)) {
    case V_LIST:   return "a list";
    case V_MAP:    return "a mapping";
    case V_NULL:   return "nothing (null)";
    case V_BOOL:   snprintf(buf, size, "a boolean (%s)", s); return buf;
    case V_INT:    snprintf(buf, size, "an integer (%.40s)", s); return buf;
    case V_FLOAT:  snprintf(buf, size, "a number with a fraction (%.40s)", s); return buf;
    case V_STRING: snprintf(buf, size, "a string ('%.40s%s')", s, strlen(s) > 40 ? "..." : ""); return buf;
    }
    return "something else";
}

static int fail_type(ctx *c, const yaml_node_t *n, const char *key, const char *expected)
{
    char buf[96];
    return fail_at(c, n, "%s: expected %s, got %s", key, expected, describe(n, buf, sizeof buf));
}

/* An integer in [lo, hi].  Floats, strings, lists and overflowing numbers
 * are errors naming `key`. */
static int get_int(ctx *c, const yaml_node_t *n, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    if (classify(n) != V_INT) return fail_type(c, n, key, "an integer");
    errno = 0;
    char *end;
    long long v = strtoll(scalar(n), &end, 10);
    if (errno == ERANGE || *end)
        return fail_at(c, n, "%s: %.40s is out of range [%lld, %lld]", key, scalar(n), (long long)lo,
                       (long long)hi);
    if (v < lo || v > hi)
        return fail_at(c, n, "%s: %lld is out of range [%lld, %lld]", key, v, (long long)lo, (long long)hi);
    *out = v;
    return 0;
}

/* A finite number > 0 (integers are numbers too). */
static int get_positive_float(ctx *c, const yaml_node_t *n, const char *key, double *out)
{
    vclass k = classify(n);
    if (k != V_INT && k != V_FLOAT) return fail_type(c, n, key, "a number");
    errno = 0;
    double v = strtod(scalar(n), NULL);
    if (!isfinite(v) || errno == ERANGE || v <= 0)
        return fail_at(c, n, "%s: %.40s is not a positive finite number", key, scalar(n));
    *out = v;
    return 0;
}

static int get_bool(ctx *c, const yaml_node_t *n, const char *key, int *out)
{
    if (classify(n) != V_BOOL) return fail_type(c, n, key, "true or false");
    *out = (scalar(n)[0] | 0x20) == 't';
    return 0;
}

/* A non-empty string.  Plain words count even if they look like numbers
 * (`name: 7b` is fine), but null, lists and mappings do not. */
static int get_string(ctx *c, const yaml_node_t *n, const char *key, const char **out)
{
    vclass k = classify(n);
    if (k == V_LIST || k == V_MAP || k == V_NULL) return fail_type(c, n, key, "a string");
    *out = scalar(n);
    return 0;
}

/* A string that must be one of `names`; a typo gets a hint. */
static int get_choice(ctx *c, const yaml_node_t *n, const char *key, const char *const *names,
                      int count, int *out)
{
    const char *s = NULL;
    if (get_string(c, n, key, &s) < 0) return -1;
    for (int i = 0; i < count; i++)
        if (names[i] && strcmp(s, names[i]) == 0) { *out = i; return 0; }
    char list[256] = "";
    for (int i = 0; i < count; i++) {
        if (!names[i]) continue;
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", names[i]);
    }
    fail_at(c, n, "%s: unknown value '%.40s' (one of: %s)", key, s, list);
    const char *near = closest(s, names, count);
    if (near) sp_hint(c->e, "did you mean '%s'?", near);
    return -1;
}

/* A node that must be a list; *items and *count describe its entries. */
static int get_list(ctx *c, const yaml_node_t *n, const char *key, yaml_node_item_t **items, int *count)
{
    if (n->type != YAML_SEQUENCE_NODE) return fail_type(c, n, key, "a list");
    *items = n->data.sequence.items.start;
    *count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    return 0;
}

/* The keys of one mapping: fields[i] gets the key and value nodes of
 * names[i] (NULL when absent).  Rejects non-mappings, non-string keys,
 * unknown keys (with a hint) and duplicate keys. */
typedef struct { yaml_node_t *key, *val; } field;

static int get_fields(ctx *c, const yaml_node_t *map, const char *where, const char *const *names,
                      int count, field *fields)
{
    memset(fields, 0, sizeof *fields * (size_t)count);
    if (map->type != YAML_MAPPING_NODE) {
        char what[80];
        snprintf(what, sizeof what, "a mapping of keys (%s, ...)", names[0]);
        return fail_type(c, map, where, what);
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        char buf[96];
        if (k->type != YAML_SCALAR_NODE || classify(k) == V_NULL)
            return fail_at(c, k, "%s%skeys must be plain words, got %s", where, where[0] ? ": " : "",
                           describe(k, buf, sizeof buf));
        const char *name = scalar(k);
        int idx = -1;
        for (int i = 0; i < count; i++)
            if (strcmp(name, names[i]) == 0) { idx = i; break; }
        if (idx < 0) {
            if (where[0]) fail_at(c, k, "%s: unknown key '%.60s'", where, name);
            else fail_at(c, k, "unknown key '%.60s'", name);
            const char *near = NULL;  /* a known alias beats a near spelling */
            for (size_t a = 0; a < sizeof key_aliases / sizeof key_aliases[0]; a++)
                for (int i = 0; i < count; i++)
                    if (!strcmp(name, key_aliases[a].alias) && !strcmp(key_aliases[a].key, names[i]))
                        near = names[i];
            if (!near) near = closest(name, names, count);
            if (near) {
                sp_hint(c->e, "did you mean '%s'?", near);
            } else {
                char list[400] = "";
                for (int i = 0; i < count; i++) {
                    size_t l = strlen(list);
                    snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", names[i]);
                }
                sp_hint(c->e, "known keys: %s", list);
            }
            return -1;
        }
        if (fields[idx].key)
            return fail_at(c, k, "%s%sduplicate key '%s' (first given at line %d)", where, where[0] ? ": " : "",
                           name, (int)fields[idx].key->start_mark.line + 1);
        fields[idx].key = k;
        fields[idx].val = v;
    }
    return 0;
}

/* Prefix a key with its place, e.g. "layers[2]" + "pattern". */
static const char *keyname(char *buf, size_t size, const char *where, const char *key)
{
    if (where[0]) snprintf(buf, size, "%s.%s", where, key);
    else snprintf(buf, size, "%s", key);
    return buf;
}

/* ---------------------------------------------------------- the parts */

/* One head's custom bands: a list of [lo, hi] pairs, sorted, disjoint. */
static int parse_band_list(ctx *c, const yaml_node_t *n, const char *key, sp_band_list *out)
{
    yaml_node_item_t *items = NULL;
    int count = 0;
    if (get_list(c, n, key, &items, &count) < 0) return -1;
    if (count > SP_MAX_INTERVALS)
        return fail_at(c, node(c, items[SP_MAX_INTERVALS]), "%s: %d intervals, at most %d per head", key,
                       count, SP_MAX_INTERVALS);
    out->n = 0;
    for (int i = 0; i < count; i++) {
        yaml_node_t *iv = node(c, items[i]);
        char ikey[160];
        snprintf(ikey, sizeof ikey, "%s[%d]", key, i);
        yaml_node_item_t *ends = NULL;
        int n_ends = 0;
        if (iv->type != YAML_SEQUENCE_NODE) return fail_type(c, iv, ikey, "an interval [lo, hi]");
        if (get_list(c, iv, ikey, &ends, &n_ends) < 0) return -1;
        if (n_ends != 2)
            return fail_at(c, iv, "%s: an interval is a pair [lo, hi], got %d numbers", ikey, n_ends);
        yaml_node_t *nlo = node(c, ends[0]), *nhi = node(c, ends[1]);
        int64_t lo, hi;
        if (classify(nlo) == V_INT && scalar(nlo)[0] == '-')
            return fail_at(c, nlo, "%s: negative distance %.40s (distances are i - j >= 0)", ikey, scalar(nlo));
        if (get_int(c, nlo, ikey, 0, SPEC_MAX_DIST, &lo) < 0) return -1;
        if (classify(nhi) == V_INT && scalar(nhi)[0] == '-')
            return fail_at(c, nhi, "%s: negative distance %.40s (distances are i - j >= 0)", ikey, scalar(nhi));
        if (get_int(c, nhi, ikey, 0, SPEC_MAX_DIST, &hi) < 0) return -1;
        if (hi <= lo)
            return fail_at(c, iv, "%s: interval [%lld, %lld] is empty (half-open: need hi > lo)", ikey,
                           (long long)lo, (long long)hi);
        if (out->n > 0) {
            const sp_interval *prev = &out->iv[out->n - 1];
            if (lo < prev->lo)
                return fail_at(c, iv, "%s: interval [%lld, %lld] is not sorted: it starts before [%lld, %lld]",
                               ikey, (long long)lo, (long long)hi, (long long)prev->lo, (long long)prev->hi);
            if (lo < prev->hi)
                return fail_at(c, iv, "%s: interval [%lld, %lld] overlaps [%lld, %lld]", ikey, (long long)lo,
                               (long long)hi, (long long)prev->lo, (long long)prev->hi);
        }
        out->iv[out->n].lo = lo;
        out->iv[out->n].hi = hi;
        out->n++;
    }
    return 0;
}

/* `bands`: one interval list per head. */
static int parse_bands(ctx *c, const yaml_node_t *n, const char *key, int heads, sp_band_list **out)
{
    yaml_node_item_t *items = NULL;
    int count = 0;
    if (get_list(c, n, key, &items, &count) < 0) return -1;
    if (count != heads)
        return fail_at(c, n, "%s: %d entr%s, but heads is %d (one list of intervals per head)", key, count,
                       count == 1 ? "y" : "ies", heads);
    sp_band_list *b = calloc((size_t)heads, sizeof *b);
    if (!b) return sp_fail(c->e, SP_EXIT_FAIL, "out of memory");
    for (int h = 0; h < heads; h++) {
        char hkey[128];
        snprintf(hkey, sizeof hkey, "%s[%d]", key, h);
        if (parse_band_list(c, node(c, items[h]), hkey, &b[h]) < 0) { free(b); return -1; }
    }
    *out = b;
    return 0;
}

/* `bands_all_heads`: one interval list, copied to every head. */
static int parse_bands_all_heads(ctx *c, const yaml_node_t *n, const char *key, int heads, sp_band_list **out)
{
    sp_band_list one;
    if (parse_band_list(c, n, key, &one) < 0) return -1;
    sp_band_list *b = calloc((size_t)heads, sizeof *b);
    if (!b) return sp_fail(c->e, SP_EXIT_FAIL, "out of memory");
    for (int h = 0; h < heads; h++) b[h] = one;
    *out = b;
    return 0;
}

/* `band_basis`: the word seq_len (0) or a fixed length L >= heads. */
static int parse_basis(ctx *c, const yaml_node_t *n, const char *key, int heads, int64_t *out)
{
    vclass k = classify(n);
    if (k == V_STRING && strcmp(scalar(n), "seq_len") == 0) { *out = 0; return 0; }
    if (k != V_INT) return fail_type(c, n, key, "seq_len or a positive integer");
    if (get_int(c, n, key, 1, SPEC_MAX_BASIS, out) < 0) return -1;
    if (*out < heads)
        return fail_at(c, n, "%s: %lld is smaller than heads (%d): bands would be empty", key,
                       (long long)*out, heads);
    return 0;
}

/* The keys that describe a pattern, at the top level or in a layers entry
 * (any may be absent). */
typedef struct { field pattern, bands, bands_all_heads, band_basis, window; } pattern_fields;

/* A pattern from its keys.  `inherited_basis` is the band_basis that
 * built-in layouts inherit when the keys do not set one. */
static int parse_pattern(ctx *c, const char *where, const pattern_fields *f, int heads, int64_t inherited_basis,
                         sp_pattern *out)
{
    char key[96];
    int kind = SP_SPATTN;
    memset(out, 0, sizeof *out);
    if (f->pattern.val &&
        get_choice(c, f->pattern.val, keyname(key, sizeof key, where, "pattern"), pattern_names, N_PATTERNS, &kind) < 0)
        return -1;
    out->kind = (sp_pattern_kind)kind;
    const field *bands = f->bands.key ? &f->bands : &f->bands_all_heads;
    const char *bands_name = f->bands.key ? "bands" : "bands_all_heads";
    if (f->bands.key && f->bands_all_heads.key)
        return fail_at(c, f->bands_all_heads.key,
                       "%s: give either bands (a list per head) or bands_all_heads (one list for every head), not both",
                       keyname(key, sizeof key, where, "bands_all_heads"));
    if (bands->key && kind != SP_CUSTOM)
        return fail_at(c, bands->key, "%s: only used with pattern: custom (pattern is %s)",
                       keyname(key, sizeof key, where, bands_name), pattern_names[kind]);
    if (f->window.key && kind != SP_WINDOW)
        return fail_at(c, f->window.key, "%s: only used with pattern: window (pattern is %s)",
                       keyname(key, sizeof key, where, "window"), pattern_names[kind]);
    if ((kind == SP_CUSTOM || kind == SP_WINDOW) && f->band_basis.key)
        return fail_at(c, f->band_basis.key, "%s: does not apply to pattern %s (%s)",
                       keyname(key, sizeof key, where, "band_basis"), pattern_names[kind],
                       kind == SP_CUSTOM ? "custom bands are absolute distances" : "a window is absolute distances");
    if (kind == SP_CUSTOM) {
        if (!bands->key)
            return fail_at(c, f->pattern.val,
                           "%s: custom needs bands (one list of intervals per head) or bands_all_heads (one for all)",
                           keyname(key, sizeof key, where, "pattern"));
        if (f->bands.key)
            return parse_bands(c, bands->val, keyname(key, sizeof key, where, "bands"), heads, &out->custom);
        return parse_bands_all_heads(c, bands->val, keyname(key, sizeof key, where, "bands_all_heads"), heads,
                                     &out->custom);
    }
    if (kind == SP_WINDOW) {
        if (!f->window.key)
            return fail_at(c, f->pattern.val, "%s: window needs window: W (attend distances 0 to W - 1)",
                           keyname(key, sizeof key, where, "pattern"));
        keyname(key, sizeof key, where, "window");
        if (classify(f->window.val) == V_INT && scalar(f->window.val)[0] == '-')
            return fail_at(c, f->window.val, "%s: %.40s is negative (W >= 1: the token itself and the W - 1 before it)",
                           key, scalar(f->window.val));
        return get_int(c, f->window.val, key, 1, SPEC_MAX_DIST, &out->window) < 0 ? -1 : 0;
    }
    out->band_basis = inherited_basis;
    if (f->band_basis.val &&
        parse_basis(c, f->band_basis.val, keyname(key, sizeof key, where, "band_basis"), heads, &out->band_basis) < 0)
        return -1;
    return 0;
}

/* `batch` / `seq_len`: one integer or a list of 1..SP_MAX_SHAPES. */
static int parse_shapes(ctx *c, const yaml_node_t *n, const char *key, int64_t max, int64_t *vals, int *count)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        if (classify(n) != V_INT) return fail_type(c, n, key, "an integer or a list of integers");
        *count = 1;
        return get_int(c, n, key, 1, max, &vals[0]);
    }
    yaml_node_item_t *items = NULL;
    int m = 0;
    if (get_list(c, n, key, &items, &m) < 0) return -1;
    if (m == 0) return fail_at(c, n, "%s: empty list (give at least one value)", key);
    if (m > SP_MAX_SHAPES)
        return fail_at(c, node(c, items[SP_MAX_SHAPES]), "%s: %d values, at most %d", key, m, SP_MAX_SHAPES);
    for (int i = 0; i < m; i++) {
        char ikey[64];
        snprintf(ikey, sizeof ikey, "%s[%d]", key, i);
        if (get_int(c, node(c, items[i]), ikey, 1, max, &vals[i]) < 0) return -1;
    }
    *count = m;
    return 0;
}

enum { L_LAYER, L_RANGE, L_PATTERN, L_BANDS, L_BANDS_ALL, L_BASIS, L_WINDOW, L_COUNT };
static const char *const layer_keys[L_COUNT] = { "layer", "range", "pattern", "bands", "bands_all_heads",
                                                 "band_basis", "window" };

/* `layers`: per-layer overrides, each `layer: K` or `range: [first, last]`
 * with a pattern.  Ranges must lie inside num_layers (when given) and must
 * not overlap, so every layer has exactly one pattern. */
static int parse_layers(ctx *c, const yaml_node_t *n, sp_spec *s)
{
    yaml_node_item_t *items = NULL;
    int count = 0;
    if (get_list(c, n, "layers", &items, &count) < 0) return -1;
    if (count > SP_MAX_OVERRIDES)
        return fail_at(c, node(c, items[SP_MAX_OVERRIDES]), "layers: %d overrides, at most %d", count,
                       SP_MAX_OVERRIDES);
    int64_t max_layer = s->num_layers > 0 ? s->num_layers - 1 : SPEC_MAX_LAYERS - 1;
    yaml_node_t *where_node[SP_MAX_OVERRIDES];
    for (int i = 0; i < count; i++) {
        char where[32], key[64];
        snprintf(where, sizeof where, "layers[%d]", i);
        yaml_node_t *item = node(c, items[i]);
        field f[L_COUNT];
        if (get_fields(c, item, where, layer_keys, L_COUNT, f) < 0) return -1;
        sp_layer_override *o = &s->overrides[i];
        int64_t first, last;
        if (f[L_LAYER].key && f[L_RANGE].key)
            return fail_at(c, f[L_RANGE].key, "%s: give either layer or range, not both", where);
        if (f[L_LAYER].key) {
            keyname(key, sizeof key, where, "layer");
            if (get_int(c, f[L_LAYER].val, key, 0, SPEC_MAX_LAYERS - 1, &first) < 0) return -1;
            last = first;
            where_node[i] = f[L_LAYER].val;
        } else if (f[L_RANGE].key) {
            keyname(key, sizeof key, where, "range");
            yaml_node_item_t *ends = NULL;
            int n_ends = 0;
            if (get_list(c, f[L_RANGE].val, key, &ends, &n_ends) < 0) return -1;
            if (n_ends != 2)
                return fail_at(c, f[L_RANGE].val, "%s: a range is [first, last], got %d numbers", key, n_ends);
            if (get_int(c, node(c, ends[0]), key, 0, SPEC_MAX_LAYERS - 1, &first) < 0) return -1;
            if (get_int(c, node(c, ends[1]), key, 0, SPEC_MAX_LAYERS - 1, &last) < 0) return -1;
            if (last < first)
                return fail_at(c, f[L_RANGE].val, "%s: [%lld, %lld] is backwards (need first <= last)", key,
                               (long long)first, (long long)last);
            where_node[i] = f[L_RANGE].val;
        } else {
            return fail_at(c, item, "%s: missing key 'layer' or 'range' (which layers this override is for)",
                           where);
        }
        if (last > max_layer)
            return fail_at(c, where_node[i], "%s: layer %lld is outside num_layers (%d: layers 0..%d)", key,
                           (long long)last, s->num_layers, s->num_layers - 1);
        if (!f[L_PATTERN].key)
            return fail_at(c, item, "%s: missing key 'pattern'", where);
        for (int j = 0; j < i; j++) {
            const sp_layer_override *p = &s->overrides[j];
            if (first <= p->last && p->first <= last)
                return fail_at(c, where_node[i], "%s: layers %lld..%lld overlap layers[%d] (layers %d..%d)", key,
                               (long long)first, (long long)last, j, p->first, p->last);
        }
        pattern_fields pf = { f[L_PATTERN], f[L_BANDS], f[L_BANDS_ALL], f[L_BASIS], f[L_WINDOW] };
        if (parse_pattern(c, where, &pf, s->heads, s->pattern.band_basis, &o->pattern) < 0) return -1;
        o->first = (int)first;
        o->last = (int)last;
        s->n_overrides = i + 1;  /* counted as we go, so spec_free frees what was built */
    }
    return 0;
}

/* Names are labels in output and in generated source comments: keep them
 * to characters that are safe in both. */
static int name_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr(" ._+-:()", ch) != NULL;
}

/* The default name: the file's basename without .yaml / .yml. */
static void default_name(const char *path, char *out, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 5 && !strcmp(base + len - 5, ".yaml")) len -= 5;
    else if (len > 4 && !strcmp(base + len - 4, ".yml")) len -= 4;
    if (len >= size) len = size - 1;
    for (size_t i = 0; i < len; i++) out[i] = name_char_ok(base[i]) ? base[i] : '_';
    out[len] = '\0';
    if (!out[0]) snprintf(out, size, "spec");
}

enum {
    K_NAME, K_HEADS, K_KV_HEADS, K_HEAD_DIM, K_DTYPE, K_CAUSAL, K_PATTERN, K_BANDS, K_BANDS_ALL, K_BAND_BASIS,
    K_WINDOW, K_SOFTMAX_SCALE, K_NUM_LAYERS, K_LAYERS, K_BATCH, K_SEQ_LEN, K_COUNT
};
static const char *const top_keys[K_COUNT] = {
    "name", "heads", "kv_heads", "head_dim", "dtype", "causal", "pattern", "bands", "bands_all_heads", "band_basis",
    "window", "softmax_scale", "num_layers", "layers", "batch", "seq_len",
};

/* The whole document.  Keys are read in dependency order (heads before
 * kv_heads and bands, num_layers before layers), not file order. */
static int parse_root(ctx *c, yaml_node_t *root, sp_spec *s)
{
    field f[K_COUNT];
    if (root->type != YAML_MAPPING_NODE) {
        char buf[96];
        return fail_at(c, root, "the top level must be a mapping of keys (heads: ..., head_dim: ...), got %s",
                       describe(root, buf, sizeof buf));
    }
    if (get_fields(c, root, "", top_keys, K_COUNT, f) < 0) return -1;
    int64_t v;

    if (f[K_NAME].val) {
        const char *name = NULL;
        if (get_string(c, f[K_NAME].val, "name", &name) < 0) return -1;
        size_t len = strlen(name);
        if (len == 0 || len >= sizeof s->name)
            return fail_at(c, f[K_NAME].val, "name: must be 1 to %zu characters long", sizeof s->name - 1);
        for (size_t i = 0; i < len; i++) {
            if (name_char_ok(name[i])) continue;
            char what[32];
            if (name[i] > ' ' && name[i] < 127) snprintf(what, sizeof what, "character '%c'", name[i]);
            else snprintf(what, sizeof what, "byte 0x%02x", (unsigned char)name[i]);
            return fail_at(c, f[K_NAME].val, "name: %s is not allowed (ASCII letters, digits, space and ._+-:() only)",
                           what);
        }
        memcpy(s->name, name, len + 1);
    } else {
        default_name(c->file, s->name, sizeof s->name);
    }

    if (!f[K_HEADS].val) return fail_at(c, root, "missing required key 'heads' (number of query heads)");
    if (get_int(c, f[K_HEADS].val, "heads", 1, SP_MAX_HEADS, &v) < 0) return -1;
    s->heads = (int)v;

    s->kv_heads = s->heads;
    if (f[K_KV_HEADS].val) {
        if (get_int(c, f[K_KV_HEADS].val, "kv_heads", 1, SP_MAX_HEADS, &v) < 0) return -1;
        if (s->heads % v != 0)
            return fail_at(c, f[K_KV_HEADS].val, "kv_heads: %lld does not divide heads (%d)", (long long)v, s->heads);
        s->kv_heads = (int)v;
    }

    if (!f[K_HEAD_DIM].val) return fail_at(c, root, "missing required key 'head_dim' (32, 64, 96, 128 or 256)");
    if (get_int(c, f[K_HEAD_DIM].val, "head_dim", 1, 1 << 20, &v) < 0) return -1;
    if (v != 32 && v != 64 && v != 96 && v != 128 && v != 256)
        return fail_at(c, f[K_HEAD_DIM].val, "head_dim: %lld is not supported (32, 64, 96, 128 or 256)", (long long)v);
    s->head_dim = (int)v;

    s->dtype = SP_BF16;
    if (f[K_DTYPE].val) {
        static const char *const dtypes[] = { [SP_BF16] = "bf16", [SP_FP16] = "fp16" };
        int d;
        if (get_choice(c, f[K_DTYPE].val, "dtype", dtypes, 2, &d) < 0) return -1;
        s->dtype = (sp_dtype)d;
    }

    s->causal = 1;
    if (f[K_CAUSAL].val) {
        if (get_bool(c, f[K_CAUSAL].val, "causal", &s->causal) < 0) return -1;
        if (!s->causal)
            return fail_at(c, f[K_CAUSAL].val,
                           "causal: non-causal attention is not supported (only causal: true is defined)");
    }

    if (f[K_SOFTMAX_SCALE].val &&
        get_positive_float(c, f[K_SOFTMAX_SCALE].val, "softmax_scale", &s->softmax_scale) < 0)
        return -1;

    pattern_fields pf = { f[K_PATTERN], f[K_BANDS], f[K_BANDS_ALL], f[K_BAND_BASIS], f[K_WINDOW] };
    if (parse_pattern(c, "", &pf, s->heads, 0, &s->pattern) < 0) return -1;

    if (f[K_NUM_LAYERS].val) {
        if (get_int(c, f[K_NUM_LAYERS].val, "num_layers", 1, SPEC_MAX_LAYERS, &v) < 0) return -1;
        s->num_layers = (int)v;
    }
    if (f[K_LAYERS].val && parse_layers(c, f[K_LAYERS].val, s) < 0) return -1;

    s->n_batch = 1;
    s->batch[0] = 1;
    if (f[K_BATCH].val &&
        parse_shapes(c, f[K_BATCH].val, "batch", SPEC_MAX_BATCH, s->batch, &s->n_batch) < 0)
        return -1;
    s->n_seq_len = 1;
    s->seq_len[0] = 4096;
    if (f[K_SEQ_LEN].val &&
        parse_shapes(c, f[K_SEQ_LEN].val, "seq_len", SPEC_MAX_SEQ, s->seq_len, &s->n_seq_len) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------- bytes and events */

/* 1-based line and column (in characters) of byte offset `off`. */
static void offset_pos(const char *text, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    size_t i = 0;
    if (off >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) i = 3;  /* a BOM takes no column, as in libyaml */
    for (; i < off; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') { (*line)++; *col = 1; }
        else if ((ch & 0xC0) != 0x80) (*col)++;
    }
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static int utf8_len(const unsigned char *s, size_t left)
{
    if (s[0] < 0x80) return 1;
    int n;
    unsigned min;
    unsigned cp;
    if ((s[0] & 0xE0) == 0xC0) { n = 2; cp = s[0] & 0x1F; min = 0x80; }
    else if ((s[0] & 0xF0) == 0xE0) { n = 3; cp = s[0] & 0x0F; min = 0x800; }
    else if ((s[0] & 0xF8) == 0xF0) { n = 4; cp = s[0] & 0x07; min = 0x10000; }
    else return 0;
    if ((size_t)n > left) return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;  /* overlong, surrogate */
    return n;
}

/* Pass 1: a spec is UTF-8 text.  Catches binary files before libyaml. */
static int check_text(const char *text, size_t len, const char *file, sp_err *e)
{
    for (size_t i = 0; i < len;) {
        int line, col;
        if (text[i] == '\0') {
            offset_pos(text, i, &line, &col);
            return sp_fail_at(e, SP_EXIT_USAGE, file, line, col, "the file contains a NUL byte: not a YAML text file");
        }
        int n = utf8_len((const unsigned char *)text + i, len - i);
        if (!n) {
            offset_pos(text, i, &line, &col);
            return sp_fail_at(e, SP_EXIT_USAGE, file, line, col,
                              "invalid UTF-8 byte 0x%02x: a spec must be UTF-8 text", (unsigned char)text[i]);
        }
        i += (size_t)n;
    }
    return 0;
}

/* libyaml's own error, at its mark, as "malformed YAML: ...". */
static int yaml_error(const yaml_parser_t *p, const char *text, const char *file, sp_err *e)
{
    int line = 1, col = 1;
    if (p->error == YAML_MEMORY_ERROR) return sp_fail(e, SP_EXIT_FAIL, "out of memory parsing %s", file);
    if (p->error == YAML_READER_ERROR) {
        offset_pos(text, p->problem_offset, &line, &col);
    } else {
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
    }
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->context)
        return sp_fail_at(e, SP_EXIT_USAGE, file, line, col, "malformed YAML: %s (%s at line %d, column %d)",
                          problem, p->context, (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    return sp_fail_at(e, SP_EXIT_USAGE, file, line, col, "malformed YAML: %s", problem);
}

/* Pass 2: parse the event stream once.  Reports syntax errors, and rejects
 * what the node walk could not see: anchors and aliases (the loader copies
 * them away, and nested aliases can blow up memory), tags, second documents (the
 * loader would ignore them) and deep nesting (libyaml's scanner takes time
 * quadratic in the flow nesting depth: a 1 MiB file of '[' would take
 * minutes; stopping at the first event past the limit keeps it instant). */
static int check_events(const char *text, size_t len, const char *file, sp_err *e)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = 0, docs = 0, depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) { rc = yaml_error(&p, text, file, e); break; }
        yaml_char_t *anchor = NULL, *tag = NULL;
        if (ev.type == YAML_SCALAR_EVENT) {
            anchor = ev.data.scalar.anchor;
            tag = ev.data.scalar.tag;
        } else if (ev.type == YAML_SEQUENCE_START_EVENT) {
            anchor = ev.data.sequence_start.anchor;
            tag = ev.data.sequence_start.tag;
        } else if (ev.type == YAML_MAPPING_START_EVENT) {
            anchor = ev.data.mapping_start.anchor;
            tag = ev.data.mapping_start.tag;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        if (ev.type == YAML_ALIAS_EVENT || anchor) {
            rc = sp_fail_at(e, SP_EXIT_USAGE, file, line, col,
                            "YAML anchors and aliases are not supported (found %c%.40s): write the value out",
                            anchor ? '&' : '*', anchor ? (const char *)anchor : (const char *)ev.data.alias.anchor);
        } else if (ev.type == YAML_SCALAR_EVENT &&
                   strlen((const char *)ev.data.scalar.value) != ev.data.scalar.length) {
            /* An escaped "\0" inside a quoted scalar: every getter reads the
             * value as a C string, so "dense\0!!" would pass as dense. */
            rc = sp_fail_at(e, SP_EXIT_USAGE, file, line, col, "a NUL character (\\0) inside a string");
        } else if (tag) {
            /* Types come from the value's form (16, 16.5, "16"); a tag
             * that said otherwise would be ignored, so refuse it. */
            rc = sp_fail_at(e, SP_EXIT_USAGE, file, line, col, "YAML tags are not supported (found tag %.40s)",
                            (const char *)tag);
        } else if ((ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT) &&
                   ++depth > SPEC_MAX_DEPTH) {
            rc = sp_fail_at(e, SP_EXIT_USAGE, file, line, col, "lists and mappings nested deeper than %d levels",
                            SPEC_MAX_DEPTH);
        } else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            rc = sp_fail_at(e, SP_EXIT_USAGE, file, line, col,
                            "a second YAML document: a spec file holds exactly one");
        }
        int done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc < 0 || done) break;
    }
    yaml_parser_delete(&p);
    return rc;
}

/* ------------------------------------------------------------- entry */

int spec_parse(const char *text, size_t len, const char *name, sp_spec *out, sp_err *e)
{
    memset(out, 0, sizeof *out);
    if (!name) name = "<spec>";
    snprintf(out->path, sizeof out->path, "%s", name);
    if (!text) {
        text = "";
        len = 0;
    }
    if (check_text(text, len, name, e) < 0 || check_events(text, len, name, e) < 0) {
        spec_free(out);
        return -1;
    }

    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) return sp_fail(e, SP_EXIT_FAIL, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        yaml_error(&p, text, name, e);
        yaml_parser_delete(&p);
        spec_free(out);
        return -1;
    }
    ctx c = { .file = name, .doc = &doc, .e = e };
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc;
    if (!root)
        rc = sp_fail_at(e, SP_EXIT_USAGE, name, 1, 1, "the spec is empty: it needs at least heads and head_dim");
    else
        rc = parse_root(&c, root, out);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    if (rc < 0) spec_free(out);
    return rc;
}

int spec_load(const char *path, sp_spec *out, sp_err *e)
{
    char *text;
    size_t len;
    memset(out, 0, sizeof *out);
    if (sp_read_file(path, SPEC_MAX_BYTES, &text, &len, e) < 0) return -1;
    int rc = spec_parse(text, len, path, out, e);
    free(text);
    return rc;
}
