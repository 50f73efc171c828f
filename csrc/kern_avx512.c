/* Kernel variant for the avx512 instruction set; chosen at run time by dispatch.c. */
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")

#define RF_ISA avx512
#define RF_VBYTES 64
#define RF_MR 12
#include "kern_template.h"
