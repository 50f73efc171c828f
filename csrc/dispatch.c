/* Run-time choice of the kernel variant: AVX-512 where the CPU has it, else AVX2 + FMA,
 * else the baseline build. One wheel runs on all of them. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "rnnfast.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define RF_DECLARE(isa)                                                                   \
    int rf_forward_##isa(const rf_fwd_args *a);                                           \
    int rf_backward_##isa(const rf_bwd_args *a);                                          \
    int64_t rf_pack_forward_size_##isa(const rf_fwd_args *a);                             \
    int rf_pack_forward_##isa(const rf_fwd_args *a, void *dst);                           \
    int rf_gemm_##isa(int, int, int, int64_t, int64_t, int64_t, const void *, int64_t,    \
                      const void *, int64_t, int, void *, int64_t, int);                   \
    int rf_gen_forward_##isa(const rf_gen_fwd_args *a);                                   \
    int rf_gen_backward_##isa(const rf_gen_bwd_args *a);                                 \
    double rf_stream_read_##isa(const void *p, int64_t nbytes, int reps, int nthreads);
#ifdef RF_HAVE_X86_VARIANTS
RF_DECLARE(avx512)
RF_DECLARE(avx2)
#endif
RF_DECLARE(base)

static int detected = -1;

int rf_decomposition_mode = RF_DECOMP_AUTO;

void rf_set_decomposition(int mode)
{
    rf_decomposition_mode = mode == RF_DECOMP_UNITS || mode == RF_DECOMP_BATCH ? mode : RF_DECOMP_AUTO;
}

int rf_get_decomposition(void) { return rf_decomposition_mode; }

int rf_isa(void)
{
    if (detected < 0) {
#ifdef RF_HAVE_X86_VARIANTS
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
            detected = RF_ISA_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            detected = RF_ISA_AVX2;
        else
#endif
            detected = RF_ISA_BASE;
#ifdef RF_WIDE_ON_AVX2
        /* test build: the avx512 variant is compiled for AVX2 (setup.py) */
        if (detected == RF_ISA_AVX2)
            detected = RF_ISA_AVX512;
#endif
        /* RNNFAST_ISA=baseline|avx2|avx512 picks a variant, only among those this CPU
           runs (never a SIGILL): for comparing variants and testing the narrower ones */
        const char *want = getenv("RNNFAST_ISA");
        if (want != NULL) {
            int w = -1;
            if (strcmp(want, "baseline") == 0)
                w = RF_ISA_BASE;
            else if (strcmp(want, "avx2") == 0)
                w = RF_ISA_AVX2;
            else if (strcmp(want, "avx512") == 0)
                w = RF_ISA_AVX512;
            if (w >= 0 && w <= detected)
                detected = w;
        }
    }
    return detected;
}

const char *rf_isa_name(void)
{
    static const char *names[] = {"baseline", "avx2", "avx512"};
    return names[rf_isa()];
}

int rf_forward(const rf_fwd_args *a)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_forward_avx512(a);
    case RF_ISA_AVX2: return rf_forward_avx2(a);
#endif
    default: return rf_forward_base(a);
    }
}

int64_t rf_pack_forward_size(const rf_fwd_args *a)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_pack_forward_size_avx512(a);
    case RF_ISA_AVX2: return rf_pack_forward_size_avx2(a);
#endif
    default: return rf_pack_forward_size_base(a);
    }
}

int rf_pack_forward(const rf_fwd_args *a, void *dst)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_pack_forward_avx512(a, dst);
    case RF_ISA_AVX2: return rf_pack_forward_avx2(a, dst);
#endif
    default: return rf_pack_forward_base(a, dst);
    }
}

int rf_backward(const rf_bwd_args *a)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_backward_avx512(a);
    case RF_ISA_AVX2: return rf_backward_avx2(a);
#endif
    default: return rf_backward_base(a);
    }
}

/* One direction per thread; a team smaller than two (OpenMP off, or the runtime's
   thread limit) runs them one after the other on what it has. */
#define RF_PAIR_BODY(type_, fn_)                                                         \
    const type_ *in[2] = {a0, a1};                                                       \
    int st[2] = {RF_OK, RF_OK};                                                          \
    int d;                                                                               \
    _Pragma("omp parallel for num_threads(2) schedule(static, 1)")                       \
    for (d = 0; d < 2; d++) {                                                            \
        type_ one = *in[d];                                                              \
        one.nthreads = 1;                                                                \
        st[d] = fn_(&one);                                                               \
    }                                                                                    \
    return st[0] != RF_OK ? st[0] : st[1];

int rf_forward_pair(const rf_fwd_args *a0, const rf_fwd_args *a1) { RF_PAIR_BODY(rf_fwd_args, rf_forward) }

int rf_backward_pair(const rf_bwd_args *a0, const rf_bwd_args *a1) { RF_PAIR_BODY(rf_bwd_args, rf_backward) }

int rf_gemm(int dtype, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *a,
            int64_t lda, const void *b, int64_t ldb, int beta_one, void *c, int64_t ldc,
            int nthreads)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_gemm_avx512(dtype, ta, tb, m, n, k, a, lda, b, ldb, beta_one, c, ldc, nthreads);
    case RF_ISA_AVX2: return rf_gemm_avx2(dtype, ta, tb, m, n, k, a, lda, b, ldb, beta_one, c, ldc, nthreads);
#endif
    default: return rf_gemm_base(dtype, ta, tb, m, n, k, a, lda, b, ldb, beta_one, c, ldc, nthreads);
    }
}

double rf_stream_read(const void *p, int64_t nbytes, int reps, int nthreads)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_stream_read_avx512(p, nbytes, reps, nthreads);
    case RF_ISA_AVX2: return rf_stream_read_avx2(p, nbytes, reps, nthreads);
#endif
    default: return rf_stream_read_base(p, nbytes, reps, nthreads);
    }
}

int rf_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int rf_openmp_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* A probe of the core-to-core round trip: two threads of the OpenMP team hand
 * a counter back and forth through one cache line, `iters` times. Whether the host put
 * the two vCPUs on one die or on two shows here (on the benchmark machine: 60-120 ns
 * against 330-600 ns, in phases of tens of seconds), and it moves the timings of every
 * product whose threads share data. Gives up after `max_s` seconds (two threads on one
 * CPU) and returns -1, as it does without OpenMP or a second thread. */
double rf_core_roundtrip_ns(int64_t iters, double max_s)
{
#ifdef _OPENMP
    int64_t flag __attribute__((aligned(64))) = 0;   /* this call's own line */
    int abort_ = 0;
    double ns = -1;
    if (iters <= 0)
        return -1;
#pragma omp parallel num_threads(2) shared(flag, abort_, ns)
    {
        if (omp_get_num_threads() == 2) {
            const int me = omp_get_thread_num();
#pragma omp barrier
            const double t0 = omp_get_wtime();
            int64_t i = 0;
            for (; i < iters && !__atomic_load_n(&abort_, __ATOMIC_RELAXED); i++) {
                const int64_t want = me == 0 ? 2 * i + 2 : 2 * i + 1;
                if (me == 0)
                    __atomic_store_n(&flag, 2 * i + 1, __ATOMIC_RELEASE);
                for (unsigned spin = 1; __atomic_load_n(&flag, __ATOMIC_ACQUIRE) != want; spin++)
                    if ((spin & 4095) == 0 && (omp_get_wtime() - t0 > max_s
                                               || __atomic_load_n(&abort_, __ATOMIC_RELAXED))) {
                        __atomic_store_n(&abort_, 1, __ATOMIC_RELAXED);
                        break;
                    }
                if (me == 1 && !__atomic_load_n(&abort_, __ATOMIC_RELAXED))
                    __atomic_store_n(&flag, 2 * i + 2, __ATOMIC_RELEASE);
            }
            if (me == 0 && !__atomic_load_n(&abort_, __ATOMIC_RELAXED))
                ns = (omp_get_wtime() - t0) / (double)iters * 1e9;
        }
    }
    return abort_ ? -1 : ns;
#else
    (void)iters;
    (void)max_s;
    return -1;
#endif
}


/* the general path (csrc/general_impl.h), compiled per variant like the kernels */
int rf_gen_forward(const rf_gen_fwd_args *a)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_gen_forward_avx512(a);
    case RF_ISA_AVX2: return rf_gen_forward_avx2(a);
#endif
    default: return rf_gen_forward_base(a);
    }
}

int rf_gen_backward(const rf_gen_bwd_args *a)
{
    switch (rf_isa()) {
#ifdef RF_HAVE_X86_VARIANTS
    case RF_ISA_AVX512: return rf_gen_backward_avx512(a);
    case RF_ISA_AVX2: return rf_gen_backward_avx2(a);
#endif
    default: return rf_gen_backward_base(a);
    }
}
