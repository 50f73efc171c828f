/* Kernel variant for the avx512 instruction set; chosen at run time by dispatch.c. */
#ifdef RF_WIDE_ON_AVX2
/* test build (setup.py RNNFAST_WIDE_ON_AVX2): the same code for AVX2 hardware */
#pragma GCC target("avx2,fma")
#else
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#endif

#define RF_ISA avx512
#define RF_VBYTES 64
#define RF_MR 12
#include "kern_template.h"
