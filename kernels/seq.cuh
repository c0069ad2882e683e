/* kernels/seq.cuh: packed (ragged) sequences.  With p.cu_seqlens != 0 the
 * batch is B sequences of different lengths laid end to end: q, o, dq, dO
 * are [total, H, D], k, v, dk, dv [total, KVH, D], lse [H, total], and
 * sequence b is rows cu[b] .. cu[b + 1] - 1 (int32 cu_seqlens, B + 1
 * entries, cu[0] = 0, nondecreasing; empty sequences allowed).  Each
 * sequence is its own causal attention from position 0 with its own band
 * table (row b * bands_sb + head_offset + h, in BAND_STRIDE units: p.bands
 * + b * bands_sb ints is sequence b's table).  The host sets the batch
 * strides to 0 and p.seqlen to the longest length, which sizes the grid;
 * a tile past its sequence's end is empty work: the kernel returns (or
 * skips the item) before it loads or writes anything.
 *
 * The kernels do not learn about packing beyond where a CTA or work item
 * starts: there they find their sequence (seq_span_of) and move their
 * pointers to its first row, take its length as the sequence length and
 * its band table.  The backward does it all at once (seq_bwd_params: the
 * parameters of one sequence as if it were the whole batch, so the kernel
 * bodies run unchanged); the forwards keep registers free for their main
 * loops (fwd_block.cuh: fwd_block_of, fwd_out; fwd_wgmma.cuh keeps the span
 * in shared memory; fwd_ws.cuh: ws_item).  With cu_seqlens == 0 (a uniform
 * batch) the span is (0, p.seqlen) and nothing moves.
 *
 * The backward's half is seq_bwd.cuh.  Needs: common.cuh and sp_kparams. */
#pragma once
#include "common.cuh"

/* Sequence b: its first row in the packed tensors and its length. */
struct seq_span {
    int start, n;
};

template <class P>
DEV seq_span seq_span_of(const P &p, int b)
{
    seq_span s;
    if (p.cu_seqlens) {
        const int *cu = (const int *)p.cu_seqlens;
        s.start = cu[b];
        s.n = cu[b + 1] - s.start;
    } else {
        s.start = 0;
        s.n = p.seqlen;
    }
    return s;
}

/* A 16-bit tensor's address `rows` rows (stride sn elements) further on. */
DEV u64 seq_rows16(u64 base, int rows, long long sn) { return base + 2ull * (u64)((long long)rows * sn); }

/* The parameters of sequence b (s = seq_span_of(p, b)): the fields the forward's
 * sp_kparams and the backward's sp_bwd_kparams share (the backward adds its own:
 * seq_bwd.cuh). */
template <class P>
DEV P seq_params(const P &p, const seq_span &s, int b)
{
    P r = p;
    if (p.cu_seqlens) {
        r.q = seq_rows16(p.q, s.start, p.q_sn);
        r.k = seq_rows16(p.k, s.start, p.k_sn);
        r.v = seq_rows16(p.v, s.start, p.v_sn);
        r.o = seq_rows16(p.o, s.start, p.o_sn);
        r.lse = p.lse + 4ull * (u64)s.start;
        r.bands = p.bands + 4ull * (u64)((long long)b * p.bands_sb);
        r.seqlen = s.n;
    }
    return r;
}
