/* One kernel variant: included by kern_<isa>.c after its `#pragma GCC target`, with
 * RF_ISA (the name suffix), RF_VBYTES (vector width in bytes) and RF_MR (GEMM
 * micro-kernel rows) defined. Compiles kernels_impl.h for float and double and the
 * entry points dispatch.c calls. */
#include <math.h>

#define RF_PASTE_(a, b) a##_##b
#define RF_PASTE(a, b) RF_PASTE_(a, b)
#define RF_ENTRY(name) RF_PASTE(name, RF_ISA)

#define REAL float
#define RF_DBL 0
#define SFX RF_PASTE(f32, RF_ISA)
#define VBYTES RF_VBYTES
#define GEMM_MR RF_MR
#define RF_EXP expf
#define RF_TANH tanhf
#include "kernels_impl.h"
#define GSFX SFX
#define G_EXP expf
#define G_TANH tanhf
#define G_LOG1P log1pf
#define G_FABS fabsf
#include "general_impl.h"
#undef GSFX
#undef G_EXP
#undef G_TANH
#undef G_LOG1P
#undef G_FABS
#undef REAL
#undef RF_DBL
#undef SFX
#undef RF_EXP
#undef RF_TANH

#define REAL double
#define RF_DBL 1
#define SFX RF_PASTE(f64, RF_ISA)
#define RF_EXP exp
#define RF_TANH tanh
#include "kernels_impl.h"
#define GSFX SFX
#define G_EXP exp
#define G_TANH tanh
#define G_LOG1P log1p
#define G_FABS fabs
#include "general_impl.h"

#define RF_F32(name) RF_PASTE(RF_PASTE(name, f32), RF_ISA)
#define RF_F64(name) RF_PASTE(RF_PASTE(name, f64), RF_ISA)

int RF_ENTRY(rf_forward)(const rf_fwd_args *a)
{
    return a->dtype == RF_F32 ? RF_F32(forward)(a) : RF_F64(forward)(a);
}

int64_t RF_ENTRY(rf_pack_forward_size)(const rf_fwd_args *a)
{
    return a->dtype == RF_F32 ? RF_F32(pack_forward_size)(a) : RF_F64(pack_forward_size)(a);
}

int RF_ENTRY(rf_pack_forward)(const rf_fwd_args *a, void *dst)
{
    return a->dtype == RF_F32 ? RF_F32(pack_forward)(a, dst) : RF_F64(pack_forward)(a, dst);
}

int RF_ENTRY(rf_backward)(const rf_bwd_args *a)
{
    return a->dtype == RF_F32 ? RF_F32(backward)(a) : RF_F64(backward)(a);
}

int RF_ENTRY(rf_gemm)(int dtype, int ta, int tb, int64_t m, int64_t n, int64_t k,
                      const void *A, int64_t lda, const void *B, int64_t ldb, int beta_one,
                      void *C, int64_t ldc, int nthreads)
{
    if (dtype == RF_F32)
        return RF_F32(gemm)(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads);
    return RF_F64(gemm)(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads);
}

double RF_ENTRY(rf_stream_read)(const void *p, int64_t nbytes, int reps, int nthreads)
{
    return RF_F32(stream_read)((const float *)p, nbytes / (int64_t)sizeof(float), reps, nthreads);
}

/* the general path (csrc/general_impl.h) of this variant */
int RF_ENTRY(rf_gen_forward)(const rf_gen_fwd_args *a)
{
    return a->dtype == RF_F32 ? RF_F32(gen_forward)(a) : RF_F64(gen_forward)(a);
}

int RF_ENTRY(rf_gen_backward)(const rf_gen_bwd_args *a)
{
    return a->dtype == RF_F32 ? RF_F32(gen_backward)(a) : RF_F64(gen_backward)(a);
}
