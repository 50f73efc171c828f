/* Small helpers shared by every kernel variant. */
#ifndef RF_COMMON_H
#define RF_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include "rnnfast.h"
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

/* Scratch kept per thread between calls, so that a call no larger than the previous one
 * on the same thread allocates nothing (streaming inference calls the kernels once per
 * step). One buffer per slot (callers that are live at the same time use different
 * slots); a larger request replaces the buffer. The buffers are freed when the thread
 * exits. Never free() what this returns. */
#include <pthread.h>
enum { RF_SLOT_STATE, RF_SLOT_ACTIVE, RF_SLOT_GEMM_B, RF_SLOT_GEMM_A, RF_SLOT_GEN_W,
       RF_SLOT_GEN_S, RF_SLOT_PACK, RF_SCRATCH_SLOTS };
typedef struct {
    void *buf[RF_SCRATCH_SLOTS];
    size_t cap[RF_SCRATCH_SLOTS];
} rf_scratch_set;
static pthread_key_t rf_scratch_key;
static pthread_once_t rf_scratch_once = PTHREAD_ONCE_INIT;
static int rf_scratch_key_ok;

static void rf_scratch_release(void *p)
{
    rf_scratch_set *set = p;
    for (int i = 0; i < RF_SCRATCH_SLOTS; i++)
        free(set->buf[i]);
    free(set);
}

static void rf_scratch_init(void)
{
    rf_scratch_key_ok = pthread_key_create(&rf_scratch_key, rf_scratch_release) == 0;
}

/* 64-byte aligned scratch of at least `bytes` for this thread's `slot`; NULL when out of
 * memory. Contents are unspecified (as malloc's). */
static inline void *rf_scratch(int slot, size_t bytes)
{
    pthread_once(&rf_scratch_once, rf_scratch_init);
    if (!rf_scratch_key_ok)
        return NULL;
    rf_scratch_set *set = pthread_getspecific(rf_scratch_key);
    if (set == NULL) {
        set = calloc(1, sizeof *set);
        if (set == NULL || pthread_setspecific(rf_scratch_key, set) != 0) {
            free(set);
            return NULL;
        }
    }
    if (bytes == 0)
        bytes = 64;
    if (bytes > set->cap[slot]) {
        free(set->buf[slot]);
        set->buf[slot] = rf_aligned_alloc(bytes);
        set->cap[slot] = set->buf[slot] ? bytes : 0;
    }
    return set->buf[slot];
}

/* Free this thread's buffer of `slot` if it holds more than `keep` bytes: a buffer kept
 * from a larger problem must not add to the peak memory of the next, smaller one (the
 * weights a training call packs for itself, RF_SLOT_PACK, are as large as the weights;
 * measured: 11 MiB more than PyTorch's peak in a GRU H=1024 training step). */
#define RF_SCRATCH_KEEP ((size_t)8 << 20)
static inline void rf_scratch_trim(int slot, size_t keep)
{
    if (!rf_scratch_key_ok)
        return;
    rf_scratch_set *set = pthread_getspecific(rf_scratch_key);
    if (set != NULL && set->cap[slot] > keep) {
        free(set->buf[slot]);
        set->buf[slot] = NULL;
        set->cap[slot] = 0;
    }
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


/* One core's L2 cache in bytes (512 KiB if the system does not say). */
#include <unistd.h>
static inline long rf_l2_bytes(void)
{
    static long l2 = 0;
    if (l2 == 0) {
        long v = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
        v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        l2 = v > 0 ? v : 1L << 19;
    }
    return l2;
}

/* How the time loop is split among threads: RF_DECOMP_AUTO chooses by shape (below);
 * the others force one way, for tests and benchmarks (rf_set_decomposition). */
extern int rf_decomposition_mode;

/* By sequences (each thread owns whole rows of the batch and every hidden unit, so no
 * thread waits for another inside the time loop) rather than by hidden units (each
 * thread owns a slice of units for every row; one barrier per step). By sequences,
 * every thread reads all of the recurrent weights (`wbytes`) each step instead of its
 * slice. */
static inline int rf_batch_parallel(int nthreads, int64_t N, double wbytes)
{
    if (nthreads < 2 || N < 2 || rf_decomposition_mode == RF_DECOMP_UNITS)
        return 0;
    if (rf_decomposition_mode == RF_DECOMP_BATCH)
        return 1;
    /* Measured on 2 cores (AVX2, 512 KiB L2 per core; docs/design.md): by sequences is
       7-9% faster for LSTM H=256 N=32 training (weights 1 MiB: split by units, each
       core's half fills its L2 exactly), even for H=512-1024 at N=32-64 (weights 4-12
       MiB stream from L3 either way), and 25-45% slower at N=4-8, where every core
       re-reading all the weights dominates. So: at least 16 rows per thread and weights
       within two cores' L2. */
    return N >= 16 * (int64_t)nthreads && wbytes <= 2.0 * (double)rf_l2_bytes();
}


/* Sense-reversing spin barrier for the threads of one parallel region: about 3x cheaper
 * than `omp barrier` per time step. Spins with a pause hint, then yields the CPU so an
 * oversubscribed machine (more threads than free cores) degrades gracefully. */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RF_PAUSE() _mm_pause()
#else
#define RF_PAUSE() ((void)0)
#endif
#include <sched.h>

typedef struct {
    int count;
    int sense;
    int nthreads;
    char pad[64 - 3 * sizeof(int)];
} rf_barrier;

static inline void rf_barrier_init(rf_barrier *b, int nthreads)
{
    b->count = 0;
    b->sense = 0;
    b->nthreads = nthreads;
}

static inline void rf_barrier_wait(rf_barrier *b, int *local_sense)
{
    if (b->nthreads <= 1)
        return;
    const int target = !*local_sense;
    *local_sense = target;
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == b->nthreads) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->sense, target, __ATOMIC_RELEASE);
        return;
    }
    unsigned spins = 0;
    while (__atomic_load_n(&b->sense, __ATOMIC_ACQUIRE) != target) {
        if (++spins < 2000u)    /* ~50 us of pause, then let a descheduled partner run */
            RF_PAUSE();
        else
            sched_yield();
    }
}

/* Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ) inside kernels:
 * denormals slow x86 arithmetic by 10-100x. The caller's mode is restored on exit. */
#if defined(__SSE__) || defined(__x86_64__)
typedef unsigned int rf_fpmode;
static inline rf_fpmode rf_fpmode_enter(void)
{
    const unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);
    return old;
}
static inline void rf_fpmode_leave(rf_fpmode old) { _mm_setcsr(old); }
#else
typedef int rf_fpmode;
static inline rf_fpmode rf_fpmode_enter(void) { return 0; }
static inline void rf_fpmode_leave(rf_fpmode old) { (void)old; }
#endif

static inline int64_t rf_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/* The i-th of the indices lo..hi-1 in time step s: first to last on even steps, last to
   first on odd ones, so the weights a thread reads last in one step are the first it
   reads in the next, while they are still in L2 (a cyclic sweep of a slice larger than
   L2 evicts every line before its reuse). Outputs of different indices are independent:
   the order changes no result. */
static inline int64_t rf_sweep(int64_t i, int64_t lo, int64_t hi, int64_t s)
{
    return (s & 1) ? lo + hi - 1 - i : i;
}

/* The next (at most max) unpadded rows m = t*N + n, t < lengths[n], scanning from *m. */
static inline int64_t rf_next_rows(int64_t T, int64_t N, const int64_t *lens, int64_t *m,
                                   int64_t *rows, int64_t max)
{
    int64_t nr = 0;
    for (; *m < T * N && nr < max; (*m)++) {
        const int64_t t = *m / N, n = *m % N;
        if (t < (lens ? lens[n] : T))   /* padded steps are never projected */
            rows[nr++] = *m;
    }
    return nr;
}

/* Time index of processing step s for sequence n: forward runs t = s, reverse runs each
   sequence from its own last valid step, t = len - 1 - s. */
static inline int64_t rf_step_time(const int64_t *lens, int64_t T, int64_t n, int64_t s,
                                   int reverse)
{
    return reverse ? (lens ? lens[n] : T) - 1 - s : s;
}

#endif
