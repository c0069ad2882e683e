/* The parameter struct of the generated backward kernels (pre, main,
 * main_det, dq, convert: codegen/kcfg_bwd.h), shared by the host
 * (runtime/attn_bwd.c packs it) and the generated CUDA (codegen/emit_bwd.c
 * writes the same struct into the source).  Same technique as
 * abi/kparams.h: one list of fields that both sides expand, and a size
 * check in the generated source.  Every kernel of the family takes the
 * whole struct by value and reads the fields it needs.
 *
 * Only types with the same size and alignment in host C and device C++,
 * 8-byte fields first, so both layouts agree without packing pragmas.
 *
 * Tensors (16-bit elements, head_dim contiguous) through element strides of
 * batch, sequence and head, as in the forward:
 *     q[b][i][h][:]  at q + b*q_sb + i*q_sn + h*q_sh      (q, o, dout, dq: query heads;
 *                                                           k, v, dk, dv: kv heads)
 *     lse[b][h][i]   at lse + b*lse_sb + h*lse_sh + i      (fp32, the forward's)
 * fp32 scratch the caller allocates (runtime/attn_bwd.h gives the sizes):
 *     dq_accum[b][i][h][:] at dq_accum + b*dqa_sb + i*dqa_sn + h*dqa_sh
 *                    (atomic mode, and the deterministic mode of a family whose
 *                    main orders its adds, main_sem; else 0)
 *     dq_sem[b][h][t] at dq_sem + b*sem_sb + h*sem_sh + t: int32, one per query
 *                    tile t, main_sem's semaphores (kernels/bwd_order.cuh), zeroed
 *                    by pre; 0 in every other launch
 *     delta[b][h][i], lse2[b][h][i] at + b*ws_sb + h*ws_sh + i, i < seqlen_pad
 *                    (written by the pre kernel: rowsum(dO * O), and LSE * log2(e)
 *                    with +inf for rows with no allowed key and for padding rows)
 * Head-sharded launches: blockIdx.y counts heads (kv heads in main) from
 * the launch's first; every pointer points at the launch's first head (kv
 * head for k, v, dk, dv), and `bands` is the whole band table, read at row
 * head_offset + h.
 *
 * Packed sequences (kernels/seq.cuh, seq_bwd.cuh): cu_seqlens != 0 as in
 * the forward (abi/kparams.h); every tensor, lse and dq_accum are packed
 * by rows, batch strides 0; delta and lse2 give sequence b its length
 * rounded up to ROW_PAD rows from row align4(cu[b]) + b (ROW_PAD + 4) of
 * each head (ws_sh = align4(total) + batch (ROW_PAD + 4)); seqlen and
 * seqlen_pad are the longest sequence's; dq_sem gives sequence b the
 * query tiles from cu[b] / BM + b of each head, sem_sb = 0 and sem_sh =
 * total / BM + batch (runtime/packing.h: packing_sem_tiles).
 *
 * To add a field: add one X(...) row (8-byte types before 4-byte ones).
 * The rows after `reserved` came later (issue 16: main_sem) and were added
 * at the end, `reserved` keeping them 8-byte aligned without implicit
 * padding, so that every earlier field kept its offset: the kernels that do
 * not read them changed only where they copy the whole struct. */
#ifndef SPATTN_KPARAMS_BWD_H
#define SPATTN_KPARAMS_BWD_H

/* X(type, name, comment): one row per field, in layout order. */
#define SP_BWD_KPARAMS_FIELDS(X)                                                             \
    X(unsigned long long, q, "query (16-bit), at the launch's first head")                   \
    X(unsigned long long, k, "keys (16-bit), at the launch's first kv head")                 \
    X(unsigned long long, v, "values (16-bit)")                                              \
    X(unsigned long long, o, "forward output (16-bit)")                                      \
    X(unsigned long long, dout, "dL/dO (16-bit)")                                            \
    X(unsigned long long, lse, "forward log-sum-exp, fp32, natural log; -inf: empty row")    \
    X(unsigned long long, dq, "dL/dQ (16-bit), written")                                     \
    X(unsigned long long, dk, "dL/dK (16-bit), written")                                     \
    X(unsigned long long, dv, "dL/dV (16-bit), written")                                     \
    X(unsigned long long, dq_accum, "fp32 dQ accumulator (main, main_sem), else 0")          \
    X(unsigned long long, delta, "fp32 scratch: rowsum(dO * O)")                             \
    X(unsigned long long, lse2, "fp32 scratch: LSE * log2(e), +inf where P must be 0")       \
    X(unsigned long long, bands, "band table: int32 [heads][1 + 2*max_intervals]")           \
    X(unsigned long long, cu_seqlens, "packed: int32 [batch + 1] first rows; 0: uniform")    \
    X(long long, q_sb, "strides in elements: batch, sequence, head")                         \
    X(long long, q_sn, "")                                                                   \
    X(long long, q_sh, "")                                                                   \
    X(long long, k_sb, "")                                                                   \
    X(long long, k_sn, "")                                                                   \
    X(long long, k_sh, "")                                                                   \
    X(long long, v_sb, "")                                                                   \
    X(long long, v_sn, "")                                                                   \
    X(long long, v_sh, "")                                                                   \
    X(long long, o_sb, "")                                                                   \
    X(long long, o_sn, "")                                                                   \
    X(long long, o_sh, "")                                                                   \
    X(long long, do_sb, "")                                                                  \
    X(long long, do_sn, "")                                                                  \
    X(long long, do_sh, "")                                                                  \
    X(long long, dq_sb, "")                                                                  \
    X(long long, dq_sn, "")                                                                  \
    X(long long, dq_sh, "")                                                                  \
    X(long long, dk_sb, "")                                                                  \
    X(long long, dk_sn, "")                                                                  \
    X(long long, dk_sh, "")                                                                  \
    X(long long, dv_sb, "")                                                                  \
    X(long long, dv_sn, "")                                                                  \
    X(long long, dv_sh, "")                                                                  \
    X(long long, lse_sb, "lse strides (floats): batch, head; sequence is 1")                 \
    X(long long, lse_sh, "")                                                                 \
    X(long long, dqa_sb, "dq_accum strides (floats): batch, sequence, head")                 \
    X(long long, dqa_sn, "")                                                                 \
    X(long long, dqa_sh, "")                                                                 \
    X(long long, ws_sb, "delta and lse2 strides (floats): batch, head; sequence is 1")       \
    X(long long, ws_sh, "")                                                                  \
    X(int, seqlen, "N, >= 1")                                                                \
    X(int, seqlen_pad, "rows of delta / lse2 per head: N rounded up to KCFG_BWD_ROW_PAD")    \
    X(int, batch, "B")                                                                       \
    X(int, heads, "query heads in this launch")                                              \
    X(int, head_offset, "global index of the launch's first head (band table row)")          \
    X(int, kv_heads, "kv heads in this launch")                                              \
    X(int, bands_sb, "packed: band table ints per sequence; 0: one table for all")           \
    X(float, scale, "softmax scale")                                                         \
    X(float, scale_log2, "scale * log2(e)")                                                  \
    X(int, reserved, "0; aligns the fields below")                                           \
    X(unsigned long long, dq_sem, "int32 semaphores of main_sem's ordered dQ adds, else 0")  \
    X(long long, sem_sb, "dq_sem strides (ints): batch, head; query tile is 1")              \
    X(long long, sem_sh, "")                                                                  \
    X(unsigned long long, work_count, "int32: the persistent main's items taken, zeroed by pre; else 0")

#define SP_BWD_KPARAMS_DECLARE_(type, name, comment) type name;

/* The host's copy of the struct. */
typedef struct sp_bwd_kparams {
    SP_BWD_KPARAMS_FIELDS(SP_BWD_KPARAMS_DECLARE_)
} sp_bwd_kparams;

#endif
