/* Small helpers shared by every kernel variant. */
#ifndef RF_COMMON_H
#define RF_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static inline int64_t rf_min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline int64_t rf_gate_count(int cell) { return cell == 2 ? 4 : cell == 3 ? 3 : 1; }

/* 64-byte aligned allocation (size rounded up as aligned_alloc requires). */
static inline void *rf_aligned_alloc(size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

/* This thread's contiguous share [lo, hi) of n items; depends only on n and the team. */
static inline void rf_split(int64_t n, int64_t *lo, int64_t *hi)
{
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int64_t tid = 0, nth = 1;
#endif
    *lo = n * tid / nth;
    *hi = n * (tid + 1) / nth;
}

/* Threads worth using: no more than asked, than parallel items, or than work / grain. */
static inline int rf_threads_for(int requested, double work, double grain, int64_t items)
{
    int64_t nt = requested > 0 ? requested : 1;
    if (items < nt)
        nt = items;
    if (work / grain < (double)nt)
        nt = (int64_t)(work / grain);
    return nt < 1 ? 1 : (int)nt;
}

#endif
