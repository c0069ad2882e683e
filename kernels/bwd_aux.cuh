/* kernels/bwd_aux.cuh: the backward's two small kernels around main: pre
 * (delta, lse2 and a zeroed dQ accumulator per query row) and convert (the
 * fp32 dQ accumulator to 16 bits, where main adds dQ up).  Their entries
 * (codegen/emit_bwd.c) call bwd_pre_kernel and bwd_convert_kernel. */
#pragma once
#include "bwd_common.cuh"

/* ==== pre: what every later kernel reads per query row ====
 * Grid (seqlen_pad / AUX_ROWS, heads, batch), AUX_THREADS threads; CHUNKS consecutive
 * threads share a row, each with 8 of its values.  For every row i < seqlen_pad of head h:
 *   delta[i] = sum_d dO[i][d] O[i][d]   (fp32; 0 for rows >= n)
 *   lse2[i]  = LSE[i] log2(e)           (+inf for rows >= n and rows with LSE = -inf, which
 *                                         have no allowed key: exp2(x - inf) = 0 makes their
 *                                         P exactly 0 without a test, never NaN)
 * and, when main adds dQ up (dq_accum != 0), the dQ accumulator rows i < n are zeroed, and
 * when main_sem orders those adds (dq_sem != 0), the semaphore of every query tile < n, and
 * the persistent main's work counter (work_count != 0). */
DEV void bwd_pre_kernel(const sp_bwd_kparams &batch_p)
{
    /* Main may place its blocks as ours end (it waits for our writes: bwd_ws.cuh). */
    griddep_launch_dependents();
    if (batch_p.work_count && blockIdx.x + blockIdx.y + blockIdx.z + threadIdx.x == 0) *(int *)batch_p.work_count = 0;
    /* Packed sequences (seq.cuh): this sequence's parameters; blocks past its padded rows
     * have nothing to write. */
    const sp_bwd_kparams p = seq_bwd_params(batch_p, seq_span_of(batch_p, blockIdx.z), blockIdx.z);
    if (blockIdx.x * AUX_ROWS >= p.seqlen_pad) return;   /* block-uniform */
    const int tid = threadIdx.x, chunk = tid % CHUNKS;
    const int i = blockIdx.x * AUX_ROWS + tid / CHUNKS;
    const int h = blockIdx.y, b = blockIdx.z, n = p.seqlen;
    float sum = 0.f;
    if (i < n) {
        const u32x4 o = *(const u32x4 *)((const elem_t *)p.o + b * p.o_sb + h * p.o_sh + (long long)i * p.o_sn + chunk * 8);
        const u32x4 d = *(const u32x4 *)((const elem_t *)p.dout + b * p.do_sb + h * p.do_sh + (long long)i * p.do_sn + chunk * 8);
        sum = bwd_dot2(o.x, d.x) + bwd_dot2(o.y, d.y) + bwd_dot2(o.z, d.z) + bwd_dot2(o.w, d.w);
    }
    /* The row's CHUNKS threads are consecutive lanes of one warp: add up over them. */
#pragma unroll
    for (int off = CHUNKS / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (chunk == 0) {
        float l2 = bwd_pos_inf();
        if (i < n) {
            const float lse = ((const float *)p.lse)[b * p.lse_sb + h * p.lse_sh + i];
            if (lse != neg_inf()) l2 = lse * LOG2E;
        }
        const long long w = b * p.ws_sb + h * p.ws_sh + i;
        ((float *)p.delta)[w] = sum;
        ((float *)p.lse2)[w] = l2;
    }
    if (p.dq_accum && i < n) {
        float4 *a = (float4 *)((float *)p.dq_accum + b * p.dqa_sb + h * p.dqa_sh + (long long)i * p.dqa_sn + chunk * 8);
        a[0] = make_float4(0.f, 0.f, 0.f, 0.f);
        a[1] = make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (p.dq_sem && chunk == 0 && i < n && i % BM == 0) ((int *)p.dq_sem)[b * p.sem_sb + h * p.sem_sh + i / BM] = 0;
}

/* ==== convert (atomic mode, and main_sem's deterministic mode): dq = dq_accum * scale, 16-bit ====
 * Grid (ceil(n / AUX_ROWS), heads, batch), AUX_THREADS threads; CHUNKS consecutive threads
 * per row, 8 values each. */
DEV void bwd_convert_kernel(const sp_bwd_kparams &batch_p)
{
    griddep_wait();   /* main's adds are complete (launched as its dependent: runtime/attn_bwd.c) */
    const sp_bwd_kparams p = seq_bwd_params(batch_p, seq_span_of(batch_p, blockIdx.z), blockIdx.z);
    const int tid = threadIdx.x, chunk = tid % CHUNKS;
    const int i = blockIdx.x * AUX_ROWS + tid / CHUNKS;
    const int h = blockIdx.y, b = blockIdx.z;
    if (i >= p.seqlen) return;
    const float4 *a = (const float4 *)((const float *)p.dq_accum + b * p.dqa_sb + h * p.dqa_sh + (long long)i * p.dqa_sn + chunk * 8);
    const float4 x = a[0], y = a[1];
    const float s = p.scale;
    const u32x4 r = { pack2(x.x * s, x.y * s), pack2(x.z * s, x.w * s), pack2(y.x * s, y.y * s), pack2(y.z * s, y.w * s) };
    *(u32x4 *)((elem_t *)p.dq + b * p.dq_sb + h * p.dq_sh + (long long)i * p.dq_sn + chunk * 8) = r;
}
