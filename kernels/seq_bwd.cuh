/* kernels/seq_bwd.cuh: packed sequences in the backward (seq.cuh says what
 * packing means): one sequence's parameters, and where its rows of the
 * delta / lse2 scratch are.  Needs: sp_bwd_kparams and ROW_PAD. */
#pragma once
#include "seq.cuh"

/* The first row of sequence b in the delta / lse2 scratch of a head: each
 * sequence gets its length rounded up to ROW_PAD rows (the kernels read
 * whole padded tiles of it), 16-byte aligned.  align4(cu[b]) + b (ROW_PAD
 * + 4) leaves sequence b at least len + ROW_PAD + 1 rows before the next:
 * the host's twin is attn_bwd_ws_rows (runtime/attn_bwd.c). */
DEV long long seq_ws_row(const sp_bwd_kparams &p, int b)
{
    const int *cu = (const int *)p.cu_seqlens;
    return (long long)((cu[b] + 3) & ~3) + (long long)b * (ROW_PAD + 4);
}

/* The backward's parameters of sequence b (s = seq_span_of(p, b)). */
DEV sp_bwd_kparams seq_bwd_params(const sp_bwd_kparams &p, const seq_span &s, int b)
{
    sp_bwd_kparams r = seq_params(p, s, b);
    if (p.cu_seqlens) {
        r.dout = seq_rows16(p.dout, s.start, p.do_sn);
        r.dq = seq_rows16(p.dq, s.start, p.dq_sn);
        r.dk = seq_rows16(p.dk, s.start, p.dk_sn);
        r.dv = seq_rows16(p.dv, s.start, p.dv_sn);
        if (p.dq_accum) r.dq_accum = p.dq_accum + 4ull * (u64)((long long)s.start * p.dqa_sn);
        /* main_sem's semaphores: sequence b's query tiles from tile start / BM + b of each head
         * (disjoint from the next sequence's: runtime/packing.h, packing_sem_tiles). */
        if (p.dq_sem) r.dq_sem = p.dq_sem + 4ull * (u64)(s.start / BM + b);
        const u64 ws = 4ull * (u64)seq_ws_row(p, b);
        r.delta = p.delta + ws;
        r.lse2 = p.lse2 + ws;
        r.seqlen_pad = (s.n + ROW_PAD - 1) / ROW_PAD * ROW_PAD;
    }
    return r;
}
