/* Kernel variant for the avx512 instruction set; chosen at run time by dispatch.c. */
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")

#include <math.h>

#define REAL float
#define RF_DBL 0
#define SFX f32_avx512
#define VBYTES 64
#define GEMM_MR 12
#define RF_EXP expf
#define RF_TANH tanhf
#include "kernels_impl.h"
#undef REAL
#undef RF_DBL
#undef SFX
#undef RF_EXP
#undef RF_TANH

#define REAL double
#define RF_DBL 1
#define SFX f64_avx512
#define RF_EXP exp
#define RF_TANH tanh
#include "kernels_impl.h"

int rf_forward_avx512(const rf_fwd_args *a)
{
    return a->dtype == RF_F32 ? forward_f32_avx512(a) : forward_f64_avx512(a);
}

int64_t rf_pack_forward_size_avx512(const rf_fwd_args *a)
{
    return a->dtype == RF_F32 ? pack_forward_size_f32_avx512(a) : pack_forward_size_f64_avx512(a);
}

int rf_pack_forward_avx512(const rf_fwd_args *a, void *dst)
{
    return a->dtype == RF_F32 ? pack_forward_f32_avx512(a, dst) : pack_forward_f64_avx512(a, dst);
}

int rf_backward_avx512(const rf_bwd_args *a)
{
    return a->dtype == RF_F32 ? backward_f32_avx512(a) : backward_f64_avx512(a);
}

int rf_gemm_avx512(int dtype, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A,
                 int64_t lda, const void *B, int64_t ldb, int beta_one, void *C, int64_t ldc,
                 int nthreads)
{
    if (dtype == RF_F32)
        return gemm_f32_avx512(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads);
    return gemm_f64_avx512(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads);
}
