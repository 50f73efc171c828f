/* Kernel variant for the base instruction set; chosen at run time by dispatch.c. */
/* x86-64 baseline (SSE2) or the compiler default elsewhere */

#include <math.h>

#define REAL float
#define RF_DBL 0
#define SFX f32_base
#define VBYTES 16
#define GEMM_MR 6
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
#define SFX f64_base
#define RF_EXP exp
#define RF_TANH tanh
#include "kernels_impl.h"

int rf_forward_base(const rf_fwd_args *a)
{
    return a->dtype == RF_F32 ? forward_f32_base(a) : forward_f64_base(a);
}

int64_t rf_pack_forward_size_base(const rf_fwd_args *a)
{
    return a->dtype == RF_F32 ? pack_forward_size_f32_base(a) : pack_forward_size_f64_base(a);
}

int rf_pack_forward_base(const rf_fwd_args *a, void *dst)
{
    return a->dtype == RF_F32 ? pack_forward_f32_base(a, dst) : pack_forward_f64_base(a, dst);
}

int rf_backward_base(const rf_bwd_args *a)
{
    return a->dtype == RF_F32 ? backward_f32_base(a) : backward_f64_base(a);
}

int rf_gemm_base(int dtype, int ta, int tb, int64_t m, int64_t n, int64_t k, const void *A,
                 int64_t lda, const void *B, int64_t ldb, int beta_one, void *C, int64_t ldc,
                 int nthreads)
{
    if (dtype == RF_F32)
        return gemm_f32_base(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads);
    return gemm_f64_base(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads);
}
