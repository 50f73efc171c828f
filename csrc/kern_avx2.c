/* Kernel variant for the avx2 instruction set; chosen at run time by dispatch.c. */
#pragma GCC target("avx2,fma")

#define RF_ISA avx2
#define RF_VBYTES 32
#define RF_MR 6
#include "kern_template.h"
