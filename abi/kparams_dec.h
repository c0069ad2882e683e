/* The parameter struct of the generated decode kernels (decode and
 * combine: kernels/decode.cuh), shared by the host (runtime/decode.c packs
 * it) and the generated CUDA (codegen/emit_dec.c writes the same struct into
 * the source).  Same technique as abi/kparams.h: one list of fields that
 * both sides expand, and a size check in the generated source.
 *
 * Decoding: Q holds the last T positions of each sequence, K and V the
 * cache.  Sequence b has len = kv_lens[b] tokens (or max_len when kv_lens is
 * 0); query row t (0 <= t < T) is position i = len - T + t and attends keys
 * j <= i at distances i - j inside its head's bands at length len (band
 * basis len, unless the spec fixes it: the bands of the full forward over
 * len tokens, so decode equals its last T rows).  Tensors (16-bit, head_dim
 * contiguous), through element strides:
 *     q[b][t][h][:]   at q + b*q_sb + t*q_sn + h*q_sh   (o alike, with o_*)
 *     lse[b][h][t]    at lse + b*lse_sb + h*lse_sh + t  (fp32, natural log)
 *     contiguous cache (page_shift 0):
 *         k[b][j][g][:] at k + b*k_sb + j*k_sn + g*k_sh     (v alike)
 *     paged cache (page_shift = log2(page size) > 0): token j of sequence b
 *         is row j % P of page block_table[b*bt_sb + j / P]:
 *         k[b][j][g][:] at k + page*k_sb + (j % P)*k_sn + g*k_sh
 *         (k_sb is then the page stride)
 * Split-KV scratch (fp32, the caller's workspace; splits > 1 only): row
 * r = (b*heads + h)*T + t of split s:
 *     o_part[(r*splits + s)*head_dim + d]   normalized partial O of the split
 *     lse_part[r*splits + s]                its LSE; -inf if it saw no key
 * With splits == 1 the decode kernel writes O and LSE itself and combine
 * is not launched.
 *
 * Only types with the same size and alignment in host C and device C++,
 * 8-byte fields first.  To add a field: add one X(...) row. */
#ifndef SPATTN_KPARAMS_DEC_H
#define SPATTN_KPARAMS_DEC_H

/* X(type, name, comment): one row per field, in layout order. */
#define SP_DEC_KPARAMS_FIELDS(X)                                                             \
    X(unsigned long long, q, "new queries (16-bit) [B, T, H, D] through q_*")                \
    X(unsigned long long, k, "key cache (16-bit), contiguous or pages")                      \
    X(unsigned long long, v, "value cache (16-bit), same layout as k")                       \
    X(unsigned long long, o, "output (16-bit) [B, T, H, D] through o_*")                     \
    X(unsigned long long, lse, "log-sum-exp, fp32 [B, H, T]; -inf for rows with no key")     \
    X(unsigned long long, bands, "band table at max_len: int32 [heads][1 + 2*max_intervals]")\
    X(unsigned long long, kv_lens, "int32 [B] sequence lengths, or 0: all max_len")          \
    X(unsigned long long, block_table, "int32 page indices [B][bt_sb], or 0: contiguous")    \
    X(unsigned long long, o_part, "fp32 split scratch (splits > 1)")                         \
    X(unsigned long long, lse_part, "fp32 split scratch (splits > 1)")                       \
    X(long long, q_sb, "strides in elements: batch, token, head")                            \
    X(long long, q_sn, "")                                                                   \
    X(long long, q_sh, "")                                                                   \
    X(long long, k_sb, "batch stride, or page stride when paged")                            \
    X(long long, k_sn, "")                                                                   \
    X(long long, k_sh, "")                                                                   \
    X(long long, v_sb, "")                                                                   \
    X(long long, v_sn, "")                                                                   \
    X(long long, v_sh, "")                                                                   \
    X(long long, o_sb, "")                                                                   \
    X(long long, o_sn, "")                                                                   \
    X(long long, o_sh, "")                                                                   \
    X(long long, lse_sb, "lse strides (floats): batch, head; token is 1")                    \
    X(long long, lse_sh, "")                                                                 \
    X(long long, bt_sb, "block table entries per sequence (max pages)")                      \
    X(int, batch, "B")                                                                       \
    X(int, max_len, "N: the cache's capacity in tokens, the length without kv_lens")         \
    X(int, new_tokens, "T >= 1: query rows per sequence")                                    \
    X(int, heads, "query heads")                                                             \
    X(int, kv_heads, "kv heads")                                                             \
    X(int, row_blocks, "blocks of BM rows per kv head: ceil(GROUP * T / BM)")                \
    X(int, splits, "CTAs per (batch, kv head, row block) sharing its key tiles")             \
    X(int, page_shift, "log2(page size) of a paged cache, else 0")                           \
    X(int, layout, "band layout recomputed per length (kernels/band_layout.cuh), or -1")     \
    X(int, layout_basis, "> 0: the spec's fixed band basis L; 0: L = len")                   \
    X(float, scale, "softmax scale")                                                         \
    X(float, scale_log2, "scale * log2(e)")

#define SP_DEC_KPARAMS_DECLARE_(type, name, comment) type name;

/* The host's copy of the struct. */
typedef struct sp_dec_kparams {
    SP_DEC_KPARAMS_FIELDS(SP_DEC_KPARAMS_DECLARE_)
} sp_dec_kparams;

#endif
