/* spattn check: validate the GPU kernels of a spec against a reference.
 *
 * Fresh random inputs (normal, mean 0, std 1) from --seed, outputs poisoned
 * with NaN before the launch, then each output tensor compared with the
 * float64 CPU reference (small shapes) or the cuBLAS fp32 GPU reference
 * (large shapes): relative L2 and max abs error against DESIGN.md's bounds
 * (bf16 1e-2, fp16 2e-3).  Exit 1 if any tensor fails. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmd.h"
#include "cmd/decode.h"
#include "cmd/gpu_common.h"
#include "codegen/bands.h"
#include "common/half.h"
#include "common/json.h"
#include "runtime/compare.h"
#include "runtime/gpu_attn.h"
#include "runtime/ref.h"
#include "runtime/ref_gpu.h"
#include "runtime/rng.h"

static const opt_cmd check_cmd = {
    "check",
    "spattn check SPEC [--batch B] [--seq-len N | --seq-lens LIST] [--pass fwd|bwd|both] [--reference auto|cpu|gpu] "
    "[options]\n"
    "       spattn check SPEC --decode --kv-len N [--new-tokens T] [--batch B] [--kv-lens L,L,...] [--page-size P]",
    "Run the GPU kernels of SPEC on fresh random inputs and compare every output with a float64 CPU\n"
    "reference (small shapes) or a cuBLAS fp32 GPU reference (large shapes).  Exit 1 on any failure.\n"
    "--seq-lens: packed sequences, against the CPU reference and the same sequences run one by one.",
    1, 1,
};

typedef struct {
    gpu_opts g;                 /* spec, shape, device, config options shared with run/bench */
    const char *pass;           /* fwd | bwd | both */
    const char *reference;      /* auto | cpu | gpu */
    int json;
} check_opts;

#define MAX_TENSORS 12
typedef struct {
    tensor_result t[MAX_TENSORS];
    int n;
    const char *reference;      /* "cpu-float64" | "gpu-cublas-fp32" */
} check_result;

static void add_result(check_result *cr, const char *name, const cmp_result *r, double bound)
{
    tensor_result_add(cr->t, &cr->n, name, r, bound, 0);
}

/* The rows of O that must be exactly 0 (no allowed key), from a float copy. */
static int add_empty_rows(check_result *cr, const gpu_problem *p, const float *o, sp_err *e)
{
    cmp_result res;
    if (gpu_problem_empty_rows(p, o, 0, &res, e)) return -1;
    tensor_result_add(cr->t, &cr->n, "O=0", &res, 0.0, 1);
    return 0;
}

/* Small enough for the float64 CPU reference in a few seconds? */
static int cpu_reference_is_quick(const gpu_problem *p)
{
    double flops = p->eff_flops_fwd;
    return flops <= 6e9;
}

/* Forward against the CPU reference: the host keeps the exact values the
 * GPU got (rounded to the dtype) as doubles. */
static int check_fwd_cpu(gpu_problem *p, const engine_kernel *k, uint64_t seed, check_result *cr, sp_err *e)
{
    gpu_attn *a = &p->ga;
    double *q = malloc(a->nq * sizeof *q), *kk = malloc(a->nk * sizeof *kk), *v = malloc(a->nk * sizeof *v);
    uint16_t *q16 = malloc(2 * a->nq), *k16 = malloc(2 * a->nk), *v16 = malloc(2 * a->nk);
    double *o = malloc(a->nq * sizeof *o), *lse = malloc(a->nlse * sizeof *lse);
    float *go = malloc(a->nq * sizeof *go), *glse = malloc(a->nlse * sizeof *glse);
    int rc = -1;
    if (!q || !kk || !v || !q16 || !k16 || !v16 || !o || !lse || !go || !glse) {
        sp_fail(e, SP_EXIT_FAIL, "out of memory");
        goto out;
    }
    rng r;
    rng_seed(&r, seed);
    rng_fill_normal(&r, a->dtype, a->nq, q16, q);
    rng_fill_normal(&r, a->dtype, a->nk, k16, kk);
    rng_fill_normal(&r, a->dtype, a->nk, v16, v);
    if (ga_upload(a, 0, q16, k16, v16, e) || ga_poison(a, e) || ga_forward(a, k, 0, e) || cu_sync(a->g, e) ||
        ga_download_o(a, go, glse, e)) goto out;
    ref_problem rp = { a->B, a->N, a->H, a->KVH, a->D, a->scale, p->bands, 0 };
    if (p->packed ? ref_forward_packed(&rp, &a->pack, p->pbands, q, kk, v, o, lse) : ref_forward(&rp, q, kk, v, o, lse)) {
        sp_fail(e, SP_EXIT_FAIL, "CPU reference failed to start threads");
        goto out;
    }
    double bound = cmp_bound(a->dtype == SP_BF16);
    cmp_result res;
    cmp_arrays(go, o, a->nq, &res);
    add_result(cr, "O", &res, bound);
    cmp_arrays(glse, lse, a->nlse, &res);
    add_result(cr, "LSE", &res, bound);
    if (add_empty_rows(cr, p, go, e)) goto out;
    cr->reference = "cpu-float64";
    rc = 0;
out:
    free(q); free(kk); free(v); free(q16); free(k16); free(v16); free(o); free(lse); free(go); free(glse);
    return rc;
}

/* Forward against the cuBLAS reference, compared on the GPU. */
static int check_fwd_gpu(gpu_problem *p, const engine_kernel *k, uint64_t seed, check_result *cr, sp_err *e)
{
    gpu_attn *a = &p->ga;
    refgpu *ref = NULL;
    sp_dptr ro = 0, rl = 0;
    float *go = NULL;
    int rc = -1;
    if (ga_fill_random(a, seed, e) || ga_poison(a, e) || ga_forward(a, k, 0, e) || cu_sync(a->g, e)) goto out;
    if (refgpu_open(a->g, &ref, e)) goto out;
    if (cu_malloc(a->g, 4 * a->nq, &ro, e) || cu_malloc(a->g, 4 * a->nlse, &rl, e)) goto out;
    refgpu_problem rp;
    gpu_problem_refgpu(p, 0, &rp);
    if (refgpu_forward(ref, &rp, ro, rl, e)) goto out;
    double bound = cmp_bound(a->dtype == SP_BF16);
    int64_t oshape[4] = { a->B, a->N, a->H, a->D }, lshape[4] = { a->B, a->H, a->N, 1 };
    refgpu_view out16 = gpu_problem_view(p, a->o, a->H);
    refgpu_view ref32 = refgpu_view_bnhd(ro, REFGPU_FP32, a->N, a->H, a->D);
    cmp_result res;
    if (refgpu_compare(ref, oshape, &out16, &ref32, &res, e)) goto out;
    add_result(cr, "O", &res, bound);
    refgpu_view l_out = { a->lse, REFGPU_FP32, { (int64_t)a->H * a->N, a->N, 1, 1 } };
    refgpu_view l_ref = { rl, REFGPU_FP32, { (int64_t)a->H * a->N, a->N, 1, 1 } };
    if (refgpu_compare(ref, lshape, &l_out, &l_ref, &res, e)) goto out;
    add_result(cr, "LSE", &res, bound);
    if (!(go = malloc(a->nq * sizeof *go))) { sp_fail(e, SP_EXIT_FAIL, "out of memory"); goto out; }
    if (ga_download_o(a, go, NULL, e) || add_empty_rows(cr, p, go, e)) goto out;
    cr->reference = "gpu-cublas-fp32";
    rc = 0;
out:
    free(go);
    cu_free(a->g, ro);
    cu_free(a->g, rl);
    if (ref) refgpu_close(ref);
    return rc;
}

static void print_result(const check_opts *o, const gpu_problem *p, const char *pass, const engine_kernel *k,
                         const check_result *cr, int ok)
{
    const gpu_attn *a = &p->ga;
    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj(&w, NULL);
        jw_str(&w, "spec", p->spec.name);
        jw_str(&w, "spec_path", p->spec.path);
        jw_str(&w, "pass", pass);
        gpu_problem_json(p, &w);
        jw_str(&w, "kernel", k->name);
        jw_str(&w, "config_source", p->config_source);
        jw_str(&w, "reference", cr->reference);
        tensor_results_json(&w, cr->t, cr->n);
        jw_bool(&w, "ok", ok);
        jw_end(&w);
        jw_finish(&w);
        return;
    }
    if (p->packed)
        printf("check %s %s: packed %d sequences (longest %d, %lld tokens) H=%d KVH=%d D=%d %s %s\n", p->spec.name, pass,
               a->B, a->N, (long long)a->pack.total, a->H, a->KVH, a->D, sp_dtype_name(a->dtype),
               sp_pattern_name(p->pattern.kind));
    else
        printf("check %s %s: B=%d N=%d H=%d KVH=%d D=%d %s %s %s\n", p->spec.name, pass, a->B, a->N, a->H, a->KVH,
               a->D, sp_dtype_name(a->dtype), sp_pattern_name(p->pattern.kind), a->layout == GA_BHND ? "bhnd" : "bnhd");
    printf("  kernel %s (%s), reference %s\n", k->name, p->config_source, cr->reference);
    tensor_results_print(cr->t, cr->n);
    printf("%s\n", ok ? "PASS" : "FAIL");
}

static int run_pass(const check_opts *o, gpu_problem *p, const char *pass, sp_err *e)
{
    int bwd = strcmp(pass, "bwd") == 0;
    engine_kernel k;
    if (gpu_problem_kernel(p, bwd ? SP_KIND_BWD : SP_KIND_FWD, &k, e)) return -1;
    /* Packed: the CPU reference, always (it runs each sequence alone). */
    int cpu = p->packed || strcmp(o->reference, "cpu") == 0 ||
              (strcmp(o->reference, "auto") == 0 && cpu_reference_is_quick(p));
    check_result cr = { .n = 0 };
    int rc;
    if (bwd) rc = check_bwd(p, &k, (uint64_t)o->g.seed, cpu, cr.t, &cr.n, &cr.reference, e);
    else rc = cpu ? check_fwd_cpu(p, &k, (uint64_t)o->g.seed, &cr, e) : check_fwd_gpu(p, &k, (uint64_t)o->g.seed, &cr, e);
    if (!rc && p->packed) rc = check_packed_alone(p, &k, cr.t, &cr.n, e);
    engine_unload(p->gpu, &k);
    if (rc) return -1;
    int ok = 1;
    for (int i = 0; i < cr.n; i++) ok &= cr.t[i].pass;
    print_result(o, p, pass, &k, &cr, ok);
    return ok ? 0 : 1;
}

int cmd_check(int argc, char **argv, sp_err *e)
{
    check_opts o;
    memset(&o, 0, sizeof o);
    decode_opts dec;
    int decode = 0;
    memset(&dec, 0, sizeof dec);
    gpu_opts_init(&o.g);
    o.pass = "fwd";
    o.reference = "auto";
    const char *seq_lens = NULL;
    int64_t lens[CMD_MAX_SEQS];
    opt_def defs[] = {
        GPU_OPTS_ROWS(o.g),
        OPT_STRING(0, "seq-lens", &seq_lens, "LIST", "packed sequences of these lengths, e.g. 4096,100,2000 (no --batch)"),
        OPT_STRING(0, "pass", &o.pass, "PASS", "fwd, bwd or both (default fwd)"),
        OPT_STRING(0, "reference", &o.reference, "REF", "auto (CPU float64 when quick, else cuBLAS), cpu or gpu"),
        OPT_BOOL(0, "json", &o.json, "print one JSON object per pass on stdout"),
        DECODE_OPTS_ROWS(decode, dec),
        OPT_END(),
    };
    opt_pos pos;
    int r = opts_parse(&check_cmd, defs, argc, argv, &pos, e);
    if (r) return r > 0 ? SP_EXIT_OK : SP_EXIT_USAGE;
    o.g.spec_path = pos.v[0];
    if (decode) {
        const char *bad = o.g.seq_len ? "--seq-len (the cache's length is --kv-len)"
                          : strcmp(o.pass, "fwd") ? "--pass"
                          : strcmp(o.reference, "auto") && strcmp(o.reference, "cpu") ? "--reference gpu"
                          : strcmp(o.g.layout, "bnhd") ? "--layout"
                          : o.g.deterministic ? "--deterministic" : NULL;
        if (bad) {
            sp_fail(e, SP_EXIT_USAGE, "--decode: %s does not apply (decode is checked against the float64 CPU reference)", bad);
            return SP_EXIT_USAGE;
        }
        int64_t kv_len = dec.g.seq_len;
        dec.g = o.g;
        dec.g.seq_len = kv_len;
        dec.json = o.json;
        dec.on_gpu = 1;
        return decode_check(&dec, e);
    }
    if (dec.g.seq_len || dec.new_tokens || dec.kv_lens || dec.page_size || dec.splits) {
        sp_fail(e, SP_EXIT_USAGE, "--kv-len, --new-tokens, --kv-lens, --page-size and --splits go with --decode");
        return SP_EXIT_USAGE;
    }
    if (strcmp(o.pass, "fwd") && strcmp(o.pass, "bwd") && strcmp(o.pass, "both"))
        { sp_fail(e, SP_EXIT_USAGE, "--pass: '%s' is not fwd, bwd or both", o.pass); return SP_EXIT_USAGE; }
    if (strcmp(o.reference, "auto") && strcmp(o.reference, "cpu") && strcmp(o.reference, "gpu"))
        { sp_fail(e, SP_EXIT_USAGE, "--reference: '%s' is not auto, cpu or gpu", o.reference); return SP_EXIT_USAGE; }
    if (gpu_opts_seq_lens(&o.g, seq_lens, lens, e)) return SP_EXIT_USAGE;
    if (seq_lens && strcmp(o.reference, "gpu") == 0) {
        sp_fail(e, SP_EXIT_USAGE, "--seq-lens checks against the CPU reference (each sequence alone): no --reference gpu");
        return SP_EXIT_USAGE;
    }

    gpu_problem p;
    if (gpu_problem_open(&o.g, &p, e)) return e->code ? e->code : SP_EXIT_FAIL;
    int status = SP_EXIT_OK;
    const char *passes[2] = { o.pass, NULL };
    if (strcmp(o.pass, "both") == 0) { passes[0] = "fwd"; passes[1] = "bwd"; }
    for (int i = 0; i < 2 && passes[i]; i++) {
        int rc = run_pass(&o, &p, passes[i], e);
        if (rc < 0) { status = e->code ? e->code : SP_EXIT_FAIL; break; }
        if (rc > 0) status = SP_EXIT_FAIL;
    }
    gpu_problem_close(&p);
    return status;
}
