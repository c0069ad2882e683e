/* The parameter struct of the generated forward kernels, shared by the host
 * (runtime/attn.c packs it) and the generated CUDA (codegen/emit_prelude.c
 * writes the same struct into every kernel's source).  It is defined once,
 * here, as a list of fields; both sides expand that list, so they cannot
 * disagree, and the generated source static_asserts the host's sizeof.
 *
 * The kernel takes the struct by value as its only parameter.  Only types
 * with the same size and alignment in host C and device C++ appear, 8-byte
 * fields first, so the two layouts are identical without packing pragmas.
 *
 * Tensors are addressed through element strides (16-bit elements for q, k,
 * v, o; floats for lse), head_dim contiguous:
 *     q[b][i][h][:] at q + b*q_sb + i*q_sn + h*q_sh       ([B,N,H,D] or [B,H,N,D])
 *     lse[b][h][i]  at lse + b*lse_sb + h*lse_sh + i      (seq contiguous)
 * Head-sharded launches: blockIdx.y is the head within the launch; the
 * pointers q, o, lse point at the launch's first head and k, v at its first
 * kv head (so the launch must start on a kv-group boundary); `bands` is the
 * whole band table (abi/bandtab.h), read at row head_offset + blockIdx.y.
 *
 * Packed sequences (kernels/seq.cuh): cu_seqlens != 0 makes the batch B
 * sequences laid end to end, sequence b rows cu[b] .. cu[b + 1] - 1 of
 * q, k, v, o ([total, heads, D]) and lse ([heads, total]); the batch
 * strides are 0, seqlen is the longest length, and sequence b's band table
 * starts bands_sb ints after sequence b - 1's.
 *
 * To add a field: add one X(...) row (8-byte types before 4-byte ones); the
 * host struct, the generated struct and the size check follow. */
#ifndef SPATTN_KPARAMS_H
#define SPATTN_KPARAMS_H

/* X(type, name, comment): one row per field, in layout order. */
#define SP_KPARAMS_FIELDS(X)                                                          \
    X(unsigned long long, q, "query [B,N,H,D] (16-bit), at the launch's first head")  \
    X(unsigned long long, k, "keys (16-bit), at the launch's first kv head")          \
    X(unsigned long long, v, "values (16-bit), at the launch's first kv head")        \
    X(unsigned long long, o, "output (16-bit), same strides as o_*")                  \
    X(unsigned long long, lse, "log-sum-exp, fp32, natural log; -inf for empty rows") \
    X(unsigned long long, bands, "band table: int32 [heads][1 + 2*max_intervals]")    \
    X(unsigned long long, cu_seqlens, "packed: int32 [batch + 1] first rows; 0: uniform") \
    X(unsigned long long, sched, "persistent: int32 work list (runtime/fwd_sched.h); 0: static") \
    X(long long, q_sb, "q strides in elements: batch, sequence, head")                \
    X(long long, q_sn, "")                                                            \
    X(long long, q_sh, "")                                                            \
    X(long long, k_sb, "k strides")                                                   \
    X(long long, k_sn, "")                                                            \
    X(long long, k_sh, "")                                                            \
    X(long long, v_sb, "v strides")                                                   \
    X(long long, v_sn, "")                                                            \
    X(long long, v_sh, "")                                                            \
    X(long long, o_sb, "o strides")                                                   \
    X(long long, o_sn, "")                                                            \
    X(long long, o_sh, "")                                                            \
    X(long long, lse_sb, "lse strides (in floats): batch, head; sequence is 1")       \
    X(long long, lse_sh, "")                                                          \
    X(int, seqlen, "N, >= 1")                                                         \
    X(int, batch, "B (gridDim.z)")                                                    \
    X(int, heads, "query heads in this launch (gridDim.y)")                           \
    X(int, head_offset, "global index of the launch's first head (band table row)")   \
    X(int, kv_heads, "kv heads in this launch")                                       \
    X(int, bands_sb, "packed: band table ints per sequence; 0: one table for all")    \
    X(float, scale, "softmax scale")                                                  \
    X(float, scale_log2, "scale * log2(e): scores go to the exp2 domain with one FFMA")

#define SP_KPARAMS_DECLARE_(type, name, comment) type name;

/* The host's copy of the struct. */
typedef struct sp_kparams {
    SP_KPARAMS_FIELDS(SP_KPARAMS_DECLARE_)
} sp_kparams;

#endif
