/* Kernel variant for the base instruction set; chosen at run time by dispatch.c. */
/* x86-64 baseline (SSE2), or the compiler default elsewhere */

#define RF_ISA base
#define RF_VBYTES 16
#define RF_MR 6
#include "kern_template.h"
