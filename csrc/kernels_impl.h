/* The kernels, written once and compiled once per (ISA, dtype).
 *
 * Included by kern_<isa>.c, each of which sets the ISA with `#pragma GCC target` and
 * includes this file twice with REAL = float / double. Required macros:
 *   REAL      float or double
 *   SFX       name suffix, e.g. f32_avx512
 *   VBYTES    vector width in bytes (64, 32, 16)
 *   GEMM_MR   rows of the GEMM micro-kernel
 *   RF_EXP, RF_TANH   libm functions for REAL
 *
 * Every result element is computed in an order that depends only on the problem shape
 * and the ISA, never on the thread count or on pointer alignment: outputs are bitwise
 * reproducible for a given build and CPU.
 */
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "rnnfast.h"
#include "rf_common.h"

#define RF_CAT_(a, b) a##_##b
#define RF_CAT(a, b) RF_CAT_(a, b)
#define FN(name) RF_CAT(name, SFX)

typedef REAL FN(vec) __attribute__((vector_size(VBYTES)));
#define VEC FN(vec)
#define VL ((int64_t)(VBYTES / sizeof(REAL)))
#define NR (2 * VL)
#define MR GEMM_MR
/* depth of a packed block. AVX2: 512, so products with k <= 512 (the hoisted input
   projections of H <= 512 layers) run as one block and C is stored once instead of
   being reloaded and stored again per block; measured on this machine (alternating
   processes, 5-8 each, median GFLOP/s vs 384): (6400, 2048, 512) +16%,
   (3072, 1024, 1600) +14%, 2048^3 and (1600, 4096, 1024) unchanged. AVX-512's micro
   panels are twice as wide (NR = 32): 384, measured on Zen 4 (AVX-512): 512 level
   with it (0.96-1.05), 256 and below slower, MC above MR * 8 slower. Each element is
   still one FMA chain over all of k: results do not depend on KC. */
#if VBYTES == 64
#define KC 384
#else
#define KC 512
#endif
#define MC (MR * 8)
#define NCB (NR * (VBYTES == 64 ? 32 : 64))   /* 1024 float columns; see FN(gemm_blk) */

static inline VEC FN(vload)(const REAL *p) { VEC v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(vstore)(REAL *p, VEC v) { memcpy(p, &v, sizeof v); }

static inline REAL FN(sigmoid)(REAL x) { return (REAL)1 / ((REAL)1 + RF_EXP(-x)); }

/* ---- vector math ------------------------------------------------------------------ */
/* Accurate to a few ulp in both precisions (float64 must agree with libm to ~1e-15):
 * exp(x) = 2^k (1 + q(r)), r = x - k ln2 (Cody-Waite), q a Taylor polynomial to r^13
 * (double) or r^7 (float). expm1 from the same parts has no cancellation near 0, and
 * tanh(x) = sign(x) * -e / (2 + e), e = expm1(-2|x|), is accurate for tiny and huge |x|.
 * NaN propagates; inputs are clamped only where the result has already saturated. */
#if RF_DBL
typedef int64_t FN(ivec) __attribute__((vector_size(VBYTES)));
#define RF_EXP_LO (-708.0)
#define RF_EXP_HI 709.0
#define RF_MAGIC 0x1.8p52
#define RF_LN2_HI 6.93147180369123816490e-01
#define RF_LN2_LO 1.90821492927058770002e-10
#define RF_MANT 52
#define RF_BIAS 1023
#else
typedef int32_t FN(ivec) __attribute__((vector_size(VBYTES)));
#define RF_EXP_LO (-87.0f)
#define RF_EXP_HI 88.0f
#define RF_MAGIC 0x1.8p23f
#define RF_LN2_HI 0.693359375f
#define RF_LN2_LO (-2.12194440e-4f)
#define RF_MANT 23
#define RF_BIAS 127
#endif
#define IVEC FN(ivec)

static inline VEC FN(vsplat)(REAL v) { return (VEC){0} + v; }

/* lanes where mask is set take b, the others a */
static inline VEC FN(vselect)(IVEC mask, VEC b, VEC a)
{
    return (VEC)(((IVEC)a & ~mask) | ((IVEC)b & mask));
}

static inline void FN(vexp_parts)(VEC x, VEC *scale, VEC *q)
{
    x = FN(vselect)(x < RF_EXP_LO, FN(vsplat)(RF_EXP_LO), x);
    x = FN(vselect)(x > RF_EXP_HI, FN(vsplat)(RF_EXP_HI), x);
    const VEC kf = (x * (REAL)1.44269504088896340736 + RF_MAGIC) - RF_MAGIC;
    const VEC r = (x - kf * (REAL)RF_LN2_HI) - kf * (REAL)RF_LN2_LO;
#if RF_DBL
    VEC p = FN(vsplat)(1.0 / 6227020800.0);
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
#else
    VEC p = FN(vsplat)(1.0f / 5040.0f);
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
#endif
    *q = p * r;
    const IVEC ki = __builtin_convertvector(kf, IVEC);
    *scale = (VEC)((ki + RF_BIAS) << RF_MANT);
}

static inline VEC FN(vexp)(VEC x)
{
    VEC scale, q;
    FN(vexp_parts)(x, &scale, &q);
    return scale + scale * q;
}

static inline VEC FN(vsigmoid)(VEC x) { return (REAL)1 / ((REAL)1 + FN(vexp)(-x)); }

static inline VEC FN(vtanh)(VEC x)
{
    const IVEC sign = (IVEC)FN(vsplat)((REAL)-0.0);
    const VEC a = (VEC)((IVEC)x & ~sign);
    VEC scale, q;
    FN(vexp_parts)((REAL)-2 * a, &scale, &q);
    const VEC e = (scale - (REAL)1) + scale * q;          /* expm1(-2|x|) */
    const VEC t = -e / ((REAL)2 + e);
    return (VEC)((IVEC)t | ((IVEC)x & sign));
}

static inline VEC FN(vrelu)(VEC x) { return FN(vselect)(x < 0, FN(vsplat)(0), x); }

/* partial loads and stores for the last, incomplete block of units */
static inline VEC FN(vload_n)(const REAL *p, int64_t n)
{
    if (n == VL)
        return FN(vload)(p);
    VEC v = {0};
    memcpy(&v, p, (size_t)n * sizeof(REAL));
    return v;
}

static inline void FN(vstore_n)(REAL *p, VEC v, int64_t n)
{
    if (n == VL)
        FN(vstore)(p, v);
    else
        memcpy(p, &v, (size_t)n * sizeof(REAL));
}

/* ---- packed recurrent product ----------------------------------------------------- */
/* Transpose VL vectors in place (t[i][j] <-> t[j][i]) by log2(VL) perfect shuffles of
 * the rows: each round interleaves row i with row i + VL/2 (low halves into row 2i, high
 * halves into row 2i + 1). The masks are constants once the loops unroll. */
static inline void FN(transpose)(VEC t[VL])
{
    IVEC lo, hi;
    for (int j = 0; j < VL / 2; j++) {
        lo[2 * j] = j, lo[2 * j + 1] = VL + j;
        hi[2 * j] = VL / 2 + j, hi[2 * j + 1] = VL + VL / 2 + j;
    }
    for (int round = 1; round < VL; round *= 2) {
        VEC n[VL];
        for (int i = 0; i < VL / 2; i++) {
            n[2 * i] = __builtin_shuffle(t[i], t[i + VL / 2], lo);
            n[2 * i + 1] = __builtin_shuffle(t[i], t[i + VL / 2], hi);
        }
        for (int i = 0; i < VL; i++)
            t[i] = n[i];
    }
}

/* W (G gates x H units, each row of length K) is packed per block of VL units as
 * [block][k][gate][VL]: one pass over k yields all G gates of VL units, vectorised across
 * units, with every weight vector loaded once per group of batch rows. Each output sums
 * over k in a number of interleaved chains fixed by the gate count (see C1..C4 below),
 * the same for every batch size and row grouping, so a sequence's result never depends
 * on its batch. */
static void FN(pack_gates)(const REAL *W, int64_t H, int64_t K, int G, int64_t row0,
                           int64_t b0, int64_t b1, REAL *restrict dst)
{
    for (int64_t b = b0; b < b1; b++) {
        REAL *blk = dst + b * K * G * VL;
        const int64_t u0 = b * VL, nu = rf_min64(VL, H - u0);
        for (int g = 0; g < G; g++) {
            const REAL *src = W + (row0 + g * H + u0) * K;
            int64_t k = 0;
            if (nu == VL)   /* VL x VL tiles: VL rows read as vectors, written as columns */
                for (; k + VL <= K; k += VL) {
                    VEC t[VL];
                    for (int u = 0; u < VL; u++)
                        t[u] = FN(vload)(src + u * K + k);
                    FN(transpose)(t);
                    for (int kk = 0; kk < VL; kk++)
                        FN(vstore)(blk + ((k + kk) * G + g) * VL, t[kk]);
                }
            for (; k < K; k++)
                for (int64_t u = 0; u < VL; u++)
                    blk[(k * G + g) * VL + u] = u < nu ? src[u * K + k] : (REAL)0;
        }
    }
}

/* Pack columns u of W (rows row0..row0+K, leading dimension ld) as units: the products
 * of the backward (dh W_hh, dh W_hr, dan W_hn) read W transposed. Layout [block][k][VL]. */
static void FN(pack_cols)(const REAL *W, int64_t ld, int64_t row0, int64_t K, int64_t U,
                          int64_t b0, int64_t b1, REAL *restrict dst)
{
    for (int64_t b = b0; b < b1; b++) {
        REAL *blk = dst + b * K * VL;
        const int64_t u0 = b * VL, nu = u0 < U ? rf_min64(VL, U - u0) : 0;
        if (nu == VL) {   /* whole vectors (a memcpy call per VL elements cost more) */
            for (int64_t k = 0; k < K; k++)
                FN(vstore)(blk + k * VL, FN(vload)(W + (row0 + k) * ld + u0));
            continue;
        }
        for (int64_t k = 0; k < K; k++) {
            if (nu > 0)
                memcpy(blk + k * VL, W + (row0 + k) * ld + u0, (size_t)nu * sizeof(REAL));
            for (int64_t u = nu; u < VL; u++)
                blk[k * VL + u] = 0;
        }
    }
}

#define RF_TILE_NAME_(G_, NB_) FN(tile_g##G_##_nb##NB_)
#define RF_TILE_NAME(G_, NB_) RF_TILE_NAME_(G_, NB_)
#define RF_TILE(G_, NB_, C_) RF_TILE_(G_, NB_, C_)
/* C_ interleaved k-chains per output (chosen by G only, so the summation order of an
   output never depends on the batch size or on which rows share its tile) */
#define RF_TILE_(G_, NB_, C_)                                                              \
    static inline void RF_TILE_NAME_(G_, NB_)(int64_t K, const REAL *restrict wp,          \
                                              const REAL *const *hr, VEC out[][4])         \
    {                                                                                      \
        VEC acc[C_][NB_][G_];                                                              \
        for (int c = 0; c < C_; c++)                                                       \
            for (int r = 0; r < NB_; r++)                                                  \
                for (int g = 0; g < G_; g++)                                               \
                    acc[c][r][g] = (VEC){0};                                               \
        int64_t k = 0;                                                                     \
        for (; k + C_ <= K; k += C_) {                                                     \
            for (int c = 0; c < C_; c++) {                                                 \
                const REAL *w = wp + (k + c) * G_ * VL;                                    \
                for (int g = 0; g < G_; g++) {                                             \
                    const VEC wv = *(const VEC *)(w + g * VL);                             \
                    for (int r = 0; r < NB_; r++)                                          \
                        acc[c][r][g] += hr[r][k + c] * wv;                                 \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int c = 0; k < K; k++, c++) {                                                 \
            const REAL *w = wp + k * G_ * VL;                                              \
            for (int g = 0; g < G_; g++)                                                   \
                for (int r = 0; r < NB_; r++)                                              \
                    acc[c][r][g] += hr[r][k] * *(const VEC *)(w + g * VL);                 \
        }                                                                                  \
        for (int r = 0; r < NB_; r++)                                                      \
            for (int g = 0; g < G_; g++) {                                                 \
                VEC v = acc[0][r][g];                                                      \
                if (C_ == 2)                                                               \
                    v = acc[0][r][g] + acc[C_ - 1][r][g];                                  \
                if (C_ == 4)                                                               \
                    v = (acc[0][r][g] + acc[1 % C_][r][g]) + (acc[2 % C_][r][g] + acc[3 % C_][r][g]); \
                out[r][g] = v;                                                             \
            }                                                                              \
    }

/* chains per gate count, and rows per tile: accumulators (C*NB*G) + one broadcast per
   row + one weight vector must fit the register file (16 vectors AVX2, 32 AVX-512),
   or an accumulator spills and its chain runs through memory */
#define C4 1
#define C3 1
#define C2 2
#define C1 4
#if VBYTES == 64
#define NB4 6
#define NB3 6
#define NB3W 6
#define NB2 6
#define NB1 6
#else
#define NB4 3
#define NB3 3
#define NB3W 4
#define NB2 3
#define NB1 3
#endif
RF_TILE(4, 1, C4)
RF_TILE(3, 1, C3)
RF_TILE(2, 1, C2)
RF_TILE(1, 1, C1)
RF_TILE(4, NB4, C4)
RF_TILE(4, 2, C4)
RF_TILE(3, 2, C3)
RF_TILE(3, NB3, C3)
RF_TILE(2, NB2, C2)
RF_TILE(1, NB1, C1)

/* Into L2, the lines of one k row of a G-gate panel (G * VBYTES bytes): a tile that runs
   from L1 fetches the next k-slice, one row per k, while it works (gate_product_sliced) */
static inline void FN(prefetch_row)(const REAL *p, int G)
{
    for (int b = 0; b < G * VBYTES; b += 64)
        __builtin_prefetch((const char *)p + b, 0, 2);
}

/* Single-chain tiles (C = 1: LSTM and GRU gates) over a k-slice, continuing partial sums
   kept in `out`: the sum of each output is the same sequence of FMAs as one pass over k,
   so results are bitwise those of the unsliced tiles. */
#define RF_TILEK(G_, NB_) RF_TILEK_(G_, NB_)
#define RF_TILEK_(G_, NB_)                                                                 \
    static inline void FN(tilek_g##G_##_nb##NB_)(int64_t k0, int64_t k1,                   \
                                                 const REAL *restrict wp,                  \
                                                 const REAL *const *hr, VEC out[][4],      \
                                                 int init, const REAL *pf)                 \
    {                                                                                      \
        VEC acc[NB_][G_];                                                                  \
        for (int r = 0; r < NB_; r++)                                                      \
            for (int g = 0; g < G_; g++)                                                   \
                acc[r][g] = init ? out[r][g] : (VEC){0};                                   \
        for (int64_t k = k0; k < k1; k++) {                                                \
            const REAL *w = wp + k * G_ * VL;                                              \
            if (pf)                                                                        \
                FN(prefetch_row)(pf + (k - k0) * G_ * VL, G_);                             \
            for (int g = 0; g < G_; g++) {                                                 \
                const VEC wv = *(const VEC *)(w + g * VL);                                 \
                for (int r = 0; r < NB_; r++)                                              \
                    acc[r][g] += hr[r][k] * wv;                                            \
            }                                                                              \
        }                                                                                  \
        for (int r = 0; r < NB_; r++)                                                      \
            for (int g = 0; g < G_; g++)                                                   \
                out[r][g] = acc[r][g];                                                     \
    }
#define RF_TILEK_NAME_(G_, NB_) FN(tilek_g##G_##_nb##NB_)
#define RF_TILEK_NAME(G_, NB_) RF_TILEK_NAME_(G_, NB_)
RF_TILEK(4, NB4)
RF_TILEK(4, 1)
RF_TILEK(3, NB3)
RF_TILEK(3, 1)
RF_TILEK(4, 2)
RF_TILEK(3, 2)
#if NB4 > 3
/* AVX-512 (row tiles of 6): the 3 to 5 rows left over after the full tiles in one tile,
   not one by one. A row alone re-reads the block's whole panel, from L3 where the
   weights do not fit L2, so a batch of 4 read them 4 times per step. With 32 registers
   5 rows x 4 gates (20 accumulators, the gate vectors and the broadcasts) fit. Each
   output is the same single chain over k as in every other tile: no result changes. */
RF_TILEK(4, 3)
RF_TILEK(4, 4)
RF_TILEK(4, 5)
RF_TILEK(3, 3)
RF_TILEK(3, 4)
RF_TILEK(3, 5)
#define RF_LEFT_TILES 1
#else
#define RF_LEFT_TILES 0
#endif
/* the rows hr[0:nr] (3 <= nr <= 5) of one G-gate block over k0..k1 (RF_LEFT_TILES) */
static inline void FN(tilek_left)(int G, int64_t nr, int64_t k0, int64_t k1, const REAL *wp,
                                  const REAL *const *hr, VEC out[][4], int init,
                                  const REAL *pf)
{
#if RF_LEFT_TILES
    if (G == 4) {
        if (nr == 3) FN(tilek_g4_nb3)(k0, k1, wp, hr, out, init, pf);
        else if (nr == 4) FN(tilek_g4_nb4)(k0, k1, wp, hr, out, init, pf);
        else FN(tilek_g4_nb5)(k0, k1, wp, hr, out, init, pf);
    } else {
        if (nr == 3) FN(tilek_g3_nb3)(k0, k1, wp, hr, out, init, pf);
        else if (nr == 4) FN(tilek_g3_nb4)(k0, k1, wp, hr, out, init, pf);
        else FN(tilek_g3_nb5)(k0, k1, wp, hr, out, init, pf);
    }
#else
    (void)G, (void)nr, (void)k0, (void)k1, (void)wp, (void)hr, (void)out, (void)init, (void)pf;
#endif
}
#if NB3W != NB3
/* Three-gate tiles of NB3W = 4 rows (AVX2): 12 accumulators, the three weight vectors of
   the current k and one broadcast fill the 16 registers, with the row loop outside the
   gate loop so only one broadcast is live (the gate-outer form of RF_TILE needs all four
   and spills). Three weight loads and four broadcasts per 12 FMAs instead of three and
   three per 9. Each output is the same single chain over k as in RF_TILE(3, NB3, 1), so
   the row tile changes no result. */
static inline void FN(tilek_g3_w)(int64_t k0, int64_t k1, const REAL *restrict wp,
                                  const REAL *const *hr, VEC out[][4], int init,
                                  const REAL *pf)
{
    VEC acc[NB3W][3];
    for (int r = 0; r < NB3W; r++)
        for (int g = 0; g < 3; g++)
            acc[r][g] = init ? out[r][g] : (VEC){0};
    for (int64_t k = k0; k < k1; k++) {
        const REAL *w = wp + k * 3 * VL;
        if (pf)
            FN(prefetch_row)(pf + (k - k0) * 3 * VL, 3);
        const VEC w0 = *(const VEC *)w, w1 = *(const VEC *)(w + VL), w2 = *(const VEC *)(w + 2 * VL);
        for (int r = 0; r < NB3W; r++) {
            const REAL b = hr[r][k];
            acc[r][0] += b * w0;
            acc[r][1] += b * w1;
            acc[r][2] += b * w2;
        }
    }
    for (int r = 0; r < NB3W; r++)
        for (int g = 0; g < 3; g++)
            out[r][g] = acc[r][g];
}
#define RF_TILE3W(K_, wp_, hr_, out_) FN(tilek_g3_w)(0, K_, wp_, hr_, out_, 0, NULL)
#define RF_TILEK3W(k0_, k1_, wp_, hr_, out_, i_, pf_) FN(tilek_g3_w)(k0_, k1_, wp_, hr_, out_, i_, pf_)
#else
#define RF_TILE3W(K_, wp_, hr_, out_) RF_TILE_NAME(3, NB3)(K_, wp_, hr_, out_)
#define RF_TILEK3W(k0_, k1_, wp_, hr_, out_, i_, pf_) RF_TILEK_NAME(3, NB3)(k0_, k1_, wp_, hr_, out_, i_, pf_)
#endif

/* k per slice: a slice of a G-gate panel is about 16 KiB, resident in L1 */
#define RF_KSLICE (16384 / (4 * VBYTES))

/* All rows of one unit block, slice by slice, so the panel streams from L2/L3 once per
   call however many row tiles there are (G = 3 or 4 only). The slice's second tile,
   which reads the slice from L1, prefetches the next slice into L2, so that the next
   first tile does not wait on L3 (measured with rdtsc counters around the products,
   blocks of 100 calls alternating in one process: L6's products 8 of 8 blocks faster,
   by 10 % on average, on a busy host; S1 unchanged). */
static void FN(gate_product_sliced)(int G, int64_t K, const REAL *wp, const REAL *const *hr,
                                    int64_t nrows, VEC out[][4])
{
    const int64_t nb = G == 4 ? NB4 : NB3W;
    /* AVX-512: 1-3 rows left over after the 6-row tiles go with the last full
       tile's rows into two balanced tiles (7 = 4+3, 8 = 4+4, 9 = 5+4), not a
       short tile after a full one. Measured, recurrence only (I = 16), processes
       alternating, 4 rounds, new/old time: LSTM H1024 N8 0.944, N9 0.921, N14 0.983,
       N15 0.967, N20 0.985, N32 0.984; GRU H1024 N8 0.928, N9 0.928; LSTM H512 N8
       0.941, N9 0.930. Single chains over k in every tile: no result changes. */
    int64_t rend = nrows;
    if (RF_LEFT_TILES && nb == 6 && nrows > nb && nrows % nb != 0 && nrows % nb <= 3)
        rend = (nrows / nb - 1) * nb;
    for (int64_t k0 = 0; k0 < K; k0 += RF_KSLICE) {
        const int64_t k1 = rf_min64(K, k0 + RF_KSLICE);
        const REAL *next = k1 < K ? wp + k1 * G * VL : NULL;
        int tiles = 0;
#define RF_PF_ (tiles++ == 1 ? next : NULL)
        int64_t r = 0;
        for (; r + nb <= rend; r += nb) {
            if (G == 4)
                RF_TILEK_NAME(4, NB4)(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
            else if (NB3W != NB3)
                RF_TILEK3W(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
            else
                RF_TILEK_NAME(3, NB3)(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
        }
        if (G == 3 && NB3W != NB3)
            for (; r + NB3 <= nrows; r += NB3)
                RF_TILEK_NAME(3, NB3)(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
#if RF_LEFT_TILES
        if (rend != nrows) {   /* r == rend: the last nrows - r (7 to 9) rows */
            const int64_t a = (nrows - r + 1) / 2;
            FN(tilek_left)(G, a, k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
            FN(tilek_left)(G, nrows - r - a, k0, k1, wp, hr + r + a, out + r + a, k0 > 0, RF_PF_);
            r = nrows;
        }
#endif
        if (RF_LEFT_TILES && nrows - r >= 3) {
            FN(tilek_left)(G, nrows - r, k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
            r = nrows;
        }
        for (; r + 2 <= nrows; r += 2) {
            if (G == 4)
                FN(tilek_g4_nb2)(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
            else
                FN(tilek_g3_nb2)(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
        }
        for (; r < nrows; r++) {
            if (G == 4)
                FN(tilek_g4_nb1)(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
            else
                FN(tilek_g3_nb1)(k0, k1, wp, hr + r, out + r, k0 > 0, RF_PF_);
        }
#undef RF_PF_
    }
}

/* rows of nrows that gate_product covers with multi-row tiles (the rest run one by one) */
static inline int64_t FN(tiled_rows)(int G, int64_t nrows)
{
    const int64_t nb = G == 4 ? NB4 : G == 3 ? NB3W : G == 2 ? NB2 : NB1;
    int64_t full = nrows / nb * nb;
    if (G == 3 && NB3W != NB3)
        full += (nrows - full) / NB3 * NB3;
    if (RF_LEFT_TILES && (G == 3 || G == 4) && nrows - full >= 2)
        full = nrows;   /* 3-5 rows in one tile, 2 in a two-row tile (gate_product) */
    return full;
}

/* out[r][g] = sum_k hr[r][k] W[g*H + u, k] for the block's units, nrows <= RF_ROWS_MAX;
   three-gate rows go in tiles of NB3W, then NB3 */
static inline void FN(gate_product)(int G, int64_t K, const REAL *wp, const REAL *const *hr,
                                    int64_t nrows, VEC out[][4])
{
    int64_t r = 0;
    if ((G == 4 && nrows > NB4) || (G == 3 && nrows > NB3W)) {
        if (K > RF_KSLICE) {
            FN(gate_product_sliced)(G, K, wp, hr, nrows, out);
            return;
        }
    }
    switch (G) {
    case 4:
        for (; r + NB4 <= nrows; r += NB4)
            RF_TILE_NAME(4, NB4)(K, wp, hr + r, out + r);
        if (RF_LEFT_TILES && nrows - r >= 3) {
            FN(tilek_left)(4, nrows - r, 0, K, wp, hr + r, out + r, 0, NULL);
            r = nrows;
        }
        if (RF_LEFT_TILES && nrows - r == 2) {
            FN(tile_g4_nb2)(K, wp, hr + r, out + r);
            r = nrows;
        }
        for (; r < nrows; r++)
            FN(tile_g4_nb1)(K, wp, hr + r, out + r);
        break;
    case 3:
        if (NB3W != NB3)
            for (; r + NB3W <= nrows; r += NB3W)
                RF_TILE3W(K, wp, hr + r, out + r);
        for (; r + NB3 <= nrows; r += NB3)
            RF_TILE_NAME(3, NB3)(K, wp, hr + r, out + r);
        if (RF_LEFT_TILES && nrows - r >= 3) {
            FN(tilek_left)(3, nrows - r, 0, K, wp, hr + r, out + r, 0, NULL);
            r = nrows;
        }
        if (RF_LEFT_TILES && nrows - r == 2) {
            FN(tile_g3_nb2)(K, wp, hr + r, out + r);
            r = nrows;
        }
        for (; r < nrows; r++)
            FN(tile_g3_nb1)(K, wp, hr + r, out + r);
        break;
    case 2:
        for (; r + NB2 <= nrows; r += NB2)
            RF_TILE_NAME(2, NB2)(K, wp, hr + r, out + r);
        for (; r < nrows; r++)
            FN(tile_g2_nb1)(K, wp, hr + r, out + r);
        break;
    default:
        for (; r + NB1 <= nrows; r += NB1)
            RF_TILE_NAME(1, NB1)(K, wp, hr + r, out + r);
        for (; r < nrows; r++)
            FN(tile_g1_nb1)(K, wp, hr + r, out + r);
        break;
    }
}
/* One batch row against two unit blocks at once: twice the independent FMA chains for
   single rows (batch 1), with each output summed in exactly the order of RF_TILE. */
#define RF_TILE2(G_, C_) RF_TILE2_(G_, C_)
#define RF_TILE2_(G_, C_)                                                                  \
    static inline void FN(tile2_g##G_)(int64_t K, const REAL *restrict wa,                 \
                                       const REAL *restrict wb, const REAL *h,             \
                                       VEC *outa, VEC *outb)                               \
    {                                                                                      \
        VEC acc[C_][2][G_];                                                                \
        for (int c = 0; c < C_; c++)                                                       \
            for (int g = 0; g < G_; g++)                                                   \
                acc[c][0][g] = acc[c][1][g] = (VEC){0};                                    \
        int64_t k = 0;                                                                     \
        for (; k + C_ <= K; k += C_) {                                                     \
            for (int c = 0; c < C_; c++) {                                                 \
                const REAL hv = h[k + c];                                                  \
                for (int g = 0; g < G_; g++) {                                             \
                    acc[c][0][g] += hv * *(const VEC *)(wa + ((k + c) * G_ + g) * VL);     \
                    acc[c][1][g] += hv * *(const VEC *)(wb + ((k + c) * G_ + g) * VL);     \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        for (int c = 0; k < K; k++, c++)                                                   \
            for (int g = 0; g < G_; g++) {                                                 \
                acc[c][0][g] += h[k] * *(const VEC *)(wa + (k * G_ + g) * VL);             \
                acc[c][1][g] += h[k] * *(const VEC *)(wb + (k * G_ + g) * VL);             \
            }                                                                              \
        for (int b = 0; b < 2; b++)                                                        \
            for (int g = 0; g < G_; g++) {                                                 \
                VEC v = acc[0][b][g];                                                      \
                if (C_ == 2)                                                               \
                    v = acc[0][b][g] + acc[C_ - 1][b][g];                                  \
                if (C_ == 4)                                                               \
                    v = (acc[0][b][g] + acc[1 % C_][b][g]) + (acc[2 % C_][b][g] + acc[3 % C_][b][g]); \
                (b ? outb : outa)[g] = v;                                                  \
            }                                                                              \
    }
RF_TILE2(4, C4)
RF_TILE2(3, C3)
RF_TILE2(2, C2)
RF_TILE2(1, C1)

/* gate_product for two adjacent unit blocks: full row tiles per block, and the rows
   left over two blocks at a time */
static inline void FN(gate_product_pair)(int G, int64_t K, const REAL *wa, const REAL *wb,
                                         const REAL *const *hr, int64_t nrows,
                                         VEC outa[][4], VEC outb[][4])
{
    const int64_t full = FN(tiled_rows)(G, nrows);
    if (full > 0 && (G == 4 || G == 3)) {   /* one pass per block over all rows */
        FN(gate_product)(G, K, wa, hr, nrows, outa);
        FN(gate_product)(G, K, wb, hr, nrows, outb);
        return;
    }
    if (full > 0) {
        FN(gate_product)(G, K, wa, hr, full, outa);
        FN(gate_product)(G, K, wb, hr, full, outb);
    }
    for (int64_t r = full; r < nrows; r++) {
        switch (G) {
        case 4: FN(tile2_g4)(K, wa, wb, hr[r], outa[r], outb[r]); break;
        case 3: FN(tile2_g3)(K, wa, wb, hr[r], outa[r], outb[r]); break;
        case 2: FN(tile2_g2)(K, wa, wb, hr[r], outa[r], outb[r]); break;
        default: FN(tile2_g1)(K, wa, wb, hr[r], outa[r], outb[r]); break;
        }
    }
}

/* One batch row against Q_ adjacent unit blocks (G_ gates each, the blocks' panels
   `wstride` elements apart): Q_ * G_ independent FMA chains, where a row against one
   block alone has G_ and runs at the FMA latency rather than its throughput. Each
   output is one sequential chain over k, exactly as in RF_TILE with C = 1 (G = 3, 4). */
#define RF_TILEQ(G_, Q_)                                                                   \
    static inline void FN(tileq_g##G_)(int64_t K, const REAL *restrict w0,                 \
                                       int64_t wstride, const REAL *h, VEC *outq[])        \
    {                                                                                      \
        VEC acc[Q_][G_];                                                                   \
        for (int q = 0; q < Q_; q++)                                                       \
            for (int g = 0; g < G_; g++)                                                   \
                acc[q][g] = (VEC){0};                                                      \
        for (int64_t k = 0; k < K; k++) {                                                  \
            const REAL hv = h[k];                                                          \
            for (int q = 0; q < Q_; q++)                                                   \
                for (int g = 0; g < G_; g++)                                               \
                    acc[q][g] += hv * *(const VEC *)(w0 + q * wstride + (k * G_ + g) * VL); \
        }                                                                                  \
        for (int q = 0; q < Q_; q++)                                                       \
            for (int g = 0; g < G_; g++)                                                   \
                outq[q][g] = acc[q][g];                                                    \
    }
/* blocks per group: 12 accumulators (+ broadcast + weight vector) fit AVX2's 16 */
#define RF_Q4 3
#define RF_Q3 4
RF_TILEQ(4, RF_Q4)
RF_TILEQ(3, RF_Q3)
#define RF_QMAX 4
#ifndef RF_ROWS_MAX
#define RF_ROWS_MAX 24
#endif

/* The gate products of nq <= RF_QMAX adjacent unit blocks (G = 3 or 4) for a batch of
   at least one full row tile: full row tiles per block; two rows left over, a two-row
   tile per block (2 * G chains, each weight load feeding two FMAs); one row left over,
   against the whole group at once (Q * G chains instead of G). Two leftover rows went
   one by one against the group before, each re-reading the group's weights with one
   load per FMA (measured, in-process pairs, 30 rounds, new/old time: L6, N = 8 = 3+3+2,
   0.922 +- 0.029; T4 and T7, N = 32 = 24 + 3+3+2, 0.986 and 0.979 +- 0.020). Where
   the block's product is sliced over k, the two rows run inside the slices too, while
   the slice's weights are in L1 (not from L2 or L3 again after the full tiles): L6
   0.977 +- 0.021, T4 0.988 +- 0.016, T7 0.985 +- 0.014 more. The single leftover row
   stays as it was: turning 3+1 into 2+2 rows measured L5 1.08, T1 0.99, S1 1.00.
   Every output is one chain over k in every tile: results do not change. */
#if NB4 == 3 && RF_Q4 == 3
/* Four rows against three of the twelve gate vectors of a group of three LSTM unit
   blocks (vector v = 4 q + g: block q, gate g; p0..p2 point at the three vectors' k = 0
   entries, each stream advancing 4 * VL per k). 12 accumulators, three weight vectors
   and one broadcast fill the 16 registers, as in the GRU's RF_TILE3W. Each output is
   the same single chain over k as in RF_TILE(4, NB4, 1): the tile changes no result. */
static inline void FN(tile_g4x3_nb4)(int64_t K, const REAL *restrict p0,
                                     const REAL *restrict p1, const REAL *restrict p2,
                                     const REAL *const *hr, VEC *o[4][3])
{
    VEC acc[4][3];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 3; j++)
            acc[r][j] = (VEC){0};
    for (int64_t k = 0; k < K; k++) {
        const VEC w0 = *(const VEC *)(p0 + k * 4 * VL), w1 = *(const VEC *)(p1 + k * 4 * VL),
                  w2 = *(const VEC *)(p2 + k * 4 * VL);
        for (int r = 0; r < 4; r++) {
            const REAL b = hr[r][k];
            acc[r][0] += b * w0;
            acc[r][1] += b * w1;
            acc[r][2] += b * w2;
        }
    }
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 3; j++)
            *o[r][j] = acc[r][j];
}
#define RF_HAVE_G4X3 1
#else
#define RF_HAVE_G4X3 0
#endif

static inline void FN(gate_product_group)(int G, int64_t K, const REAL *w0, int64_t wstride,
                                          int64_t nq, const REAL *const *hr, int64_t nrows,
                                          VEC outg[][RF_ROWS_MAX][4])
{
    const int64_t qfull = G == 4 ? RF_Q4 : RF_Q3;
#if RF_HAVE_G4X3
    /* 4 or 7 rows of an LSTM: the first four against the group, three gate vectors
       at a time, so no row is left to run alone against the group's weights again
       (3+1 rows), and each k moves 96 bytes of weights per 12 FMAs instead of 128
       (the small-batch weights stream from L3). Measured, in-process pairs, 30
       rounds, new/old time: L5 (H512 N4) 0.956 +- 0.018, H512 N7 0.955 +- 0.015,
       H1024 N4 0.913 +- 0.029. Other batches keep the 3-row tiles: 4-row tiles
       measured N5 (4+1) 1.05, N6 (4+2) 1.08, L6 (N8, 4+4) 1.03, S1 (N64) 1.04. */
    if (G == 4 && nq == RF_Q4 && (nrows == 4 || nrows == 7)) {
        for (int j = 0; j < 4; j++) {
            const REAL *p[3];
            VEC *o[4][3];
            for (int v = 0; v < 3; v++) {
                const int q = (3 * j + v) / 4, g = (3 * j + v) % 4;
                p[v] = w0 + q * wstride + g * VL;
                for (int r = 0; r < 4; r++)
                    o[r][v] = &outg[q][r][g];
            }
            FN(tile_g4x3_nb4)(K, p[0], p[1], p[2], hr, o);
        }
        for (int64_t q = 0; nrows == 7 && q < nq; q++)
            RF_TILE_NAME(4, NB4)(K, w0 + q * wstride, hr + 4, outg[q] + 4);
        return;
    }
#endif
    const int64_t full = FN(tiled_rows)(G, nrows);
    if (nrows - full == 2 && K > RF_KSLICE) {   /* all rows slice by slice (see above) */
        for (int64_t q = 0; q < nq; q++)
            FN(gate_product_sliced)(G, K, w0 + q * wstride, hr, nrows, outg[q]);
        return;
    }
    for (int64_t q = 0; q < nq; q++)
        FN(gate_product)(G, K, w0 + q * wstride, hr, full, outg[q]);
    int64_t r = full;
    if (nrows - r == 2) {
        for (int64_t q = 0; q < nq; q++) {
            if (G == 4)
                FN(tile_g4_nb2)(K, w0 + q * wstride, hr + r, outg[q] + r);
            else
                FN(tile_g3_nb2)(K, w0 + q * wstride, hr + r, outg[q] + r);
        }
        r += 2;
    }
    for (; r < nrows; r++) {
        if (nq == qfull) {
            VEC *outq[RF_QMAX];
            for (int64_t q = 0; q < nq; q++)
                outq[q] = outg[q][r];
            if (G == 4)
                FN(tileq_g4)(K, w0, wstride, hr[r], outq);
            else
                FN(tileq_g3)(K, w0, wstride, hr[r], outq);
            continue;
        }
        int64_t q = 0;
        for (; q + 2 <= nq; q += 2) {
            if (G == 4)
                FN(tile2_g4)(K, w0 + q * wstride, w0 + (q + 1) * wstride, hr[r], outg[q][r], outg[q + 1][r]);
            else
                FN(tile2_g3)(K, w0 + q * wstride, w0 + (q + 1) * wstride, hr[r], outg[q][r], outg[q + 1][r]);
        }
        for (; q < nq; q++) {
            if (G == 4)
                FN(tile_g4_nb1)(K, w0 + q * wstride, hr + r, outg[q] + r);
            else
                FN(tile_g3_nb1)(K, w0 + q * wstride, hr + r, outg[q] + r);
        }
    }
}

/* Single-gate products (the backward's dh W, and similar): four adjacent unit blocks per
   tile so each broadcast of an input feeds four FMAs. Blocks live in separate [k][VL]
   streams `stride` elements apart; counts are padded to whole groups of four. */
#define RF_WIDE(NB_) RF_WIDE_(NB_)
#define RF_WIDE_(NB_)                                                                      \
    static inline void FN(wide_nb##NB_)(int64_t K, const REAL *restrict wp, int64_t stride, \
                                        const REAL *const *hr, VEC out[][4])               \
    {                                                                                      \
        VEC acc[NB_][4];                                                                   \
        for (int r = 0; r < NB_; r++)                                                      \
            for (int q = 0; q < 4; q++)                                                    \
                acc[r][q] = (VEC){0};                                                      \
        for (int64_t k = 0; k < K; k++) {                                                  \
            for (int q = 0; q < 4; q++) {                                                  \
                const VEC wv = *(const VEC *)(wp + q * stride + k * VL);                   \
                for (int r = 0; r < NB_; r++)                                              \
                    acc[r][q] += hr[r][k] * wv;                                            \
            }                                                                              \
        }                                                                                  \
        for (int r = 0; r < NB_; r++)                                                      \
            for (int q = 0; q < 4; q++)                                                    \
                out[r][q] = acc[r][q];                                                     \
    }
RF_WIDE(1)
RF_WIDE(NB4)
#if RF_LEFT_TILES
RF_WIDE(2)
RF_WIDE(3)
RF_WIDE(4)
RF_WIDE(5)
#endif

#define RF_WIDE_NAME_(NB_) FN(wide_nb##NB_)
#define RF_WIDE_NAME(NB_) RF_WIDE_NAME_(NB_)
static inline void FN(wide_product)(int64_t K, const REAL *wp, int64_t stride,
                                    const REAL *const *hr, int64_t nrows, VEC out[][4])
{
    int64_t r = 0;
    for (; r + NB4 <= nrows; r += NB4)
        RF_WIDE_NAME(NB4)(K, wp, stride, hr + r, out + r);
#if RF_LEFT_TILES
    /* AVX-512: the 2-5 rows left over in one tile (one pass over the panels, not one
       per row); single chains, so the same results */
    switch (nrows - r) {
    case 2: FN(wide_nb2)(K, wp, stride, hr + r, out + r); return;
    case 3: FN(wide_nb3)(K, wp, stride, hr + r, out + r); return;
    case 4: FN(wide_nb4)(K, wp, stride, hr + r, out + r); return;
    case 5: FN(wide_nb5)(K, wp, stride, hr + r, out + r); return;
    default: break;
    }
#endif
    for (; r < nrows; r++)
        FN(wide_nb1)(K, wp, stride, hr + r, out + r);
}

/* rows of nrows that the wide products cover with multi-row tiles */
static inline int64_t FN(wide_tiled_rows)(int64_t nrows)
{
    const int64_t full = nrows / NB4 * NB4;
    return RF_LEFT_TILES && nrows - full >= 2 ? nrows : full;
}

/* Q (1..4) adjacent unit blocks, single chain per output (used where results must match
   the GEMM bit for bit: the vanilla RNN's input projection). */
#define RF_WIDEQ(Q_, NB_) RF_WIDEQ_(Q_, NB_)
#define RF_WIDEQ_(Q_, NB_)                                                                 \
    static inline void FN(wideq##Q_##_nb##NB_)(int64_t K, const REAL *restrict wp,         \
                                               int64_t stride, const REAL *const *hr,      \
                                               VEC out[][4])                               \
    {                                                                                      \
        VEC acc[NB_][Q_];                                                                  \
        for (int r = 0; r < NB_; r++)                                                      \
            for (int q = 0; q < Q_; q++)                                                   \
                acc[r][q] = (VEC){0};                                                      \
        for (int64_t k = 0; k < K; k++)                                                    \
            for (int q = 0; q < Q_; q++) {                                                 \
                const VEC wv = *(const VEC *)(wp + q * stride + k * VL);                   \
                for (int r = 0; r < NB_; r++)                                              \
                    acc[r][q] += hr[r][k] * wv;                                            \
            }                                                                              \
        for (int r = 0; r < NB_; r++)                                                      \
            for (int q = 0; q < Q_; q++)                                                   \
                out[r][q] = acc[r][q];                                                     \
    }
#if RF_LEFT_TILES
#define RF_WIDEQ_SET(Q_) RF_WIDEQ(Q_, 1) RF_WIDEQ(Q_, NB4) RF_WIDEQ(Q_, 2) RF_WIDEQ(Q_, 3) \
    RF_WIDEQ(Q_, 4) RF_WIDEQ(Q_, 5)
#else
#define RF_WIDEQ_SET(Q_) RF_WIDEQ(Q_, 1) RF_WIDEQ(Q_, NB4)
#endif
RF_WIDEQ_SET(1)
RF_WIDEQ_SET(2)
RF_WIDEQ_SET(3)
#define RF_WQNAME_(Q_, NB_) FN(wideq##Q_##_nb##NB_)
#define RF_WQNAME(Q_, NB_) RF_WQNAME_(Q_, NB_)

static inline void FN(wide_product_q)(int Q, int64_t K, const REAL *wp, int64_t stride,
                                      const REAL *const *hr, int64_t nrows, VEC out[][4])
{
    if (Q == 4) {
        FN(wide_product)(K, wp, stride, hr, nrows, out);
        return;
    }
    int64_t r = 0;
    for (; r + NB4 <= nrows; r += NB4) {
        if (Q == 3) RF_WQNAME(3, NB4)(K, wp, stride, hr + r, out + r);
        else if (Q == 2) RF_WQNAME(2, NB4)(K, wp, stride, hr + r, out + r);
        else RF_WQNAME(1, NB4)(K, wp, stride, hr + r, out + r);
    }
#if RF_LEFT_TILES
#define RF_WQ_LEFT_(R_)                                                                    \
    do {                                                                                   \
        if (Q == 3) RF_WQNAME(3, R_)(K, wp, stride, hr + r, out + r);                      \
        else if (Q == 2) RF_WQNAME(2, R_)(K, wp, stride, hr + r, out + r);                 \
        else RF_WQNAME(1, R_)(K, wp, stride, hr + r, out + r);                             \
        return;                                                                            \
    } while (0)
    switch (nrows - r) {
    case 2: RF_WQ_LEFT_(2);
    case 3: RF_WQ_LEFT_(3);
    case 4: RF_WQ_LEFT_(4);
    case 5: RF_WQ_LEFT_(5);
    default: break;
    }
#undef RF_WQ_LEFT_
#endif
    for (; r < nrows; r++) {
        if (Q == 3) FN(wideq3_nb1)(K, wp, stride, hr + r, out + r);
        else if (Q == 2) FN(wideq2_nb1)(K, wp, stride, hr + r, out + r);
        else FN(wideq1_nb1)(K, wp, stride, hr + r, out + r);
    }
}


/* One row against eight adjacent single-gate unit blocks: eight independent chains
   (the leftover rows of the vanilla RNN's recurrent product, and batch 1). Each output
   is one sequential chain over k, as in RF_WIDE/RF_WIDEQ. */
static inline void FN(wide8_row)(int64_t K, const REAL *restrict wp, int64_t stride,
                                 const REAL *h, VEC out[8])
{
    VEC acc[8];
    for (int q = 0; q < 8; q++)
        acc[q] = (VEC){0};
    for (int64_t k = 0; k < K; k++) {
        const REAL hv = h[k];
        for (int q = 0; q < 8; q++)
            acc[q] += hv * *(const VEC *)(wp + q * stride + k * VL);
    }
    for (int q = 0; q < 8; q++)
        out[q] = acc[q];
}

/* The vanilla RNN's recurrent product for nq <= RF_QRNN adjacent unit blocks of the
   single-gate pack ([block][k][VL], blocks `stride` apart): full row tiles against four
   blocks at a time (each broadcast feeds four FMAs), the rows left over against all
   eight. Single chain per output, so the order never depends on the batch or the
   tiling. outg[q][r][0] receives block q, row r. */
#define RF_QRNN 8
static inline void FN(rnn_product)(int64_t K, const REAL *wp, int64_t stride, int64_t nq,
                                   const REAL *const *hr, int64_t nrows,
                                   VEC outg[][RF_ROWS_MAX][4])
{
    VEC tmp[RF_ROWS_MAX][4];
    const int64_t full = FN(wide_tiled_rows)(nrows);
    for (int64_t q0 = 0; q0 < nq && full > 0; q0 += 4) {
        const int Q = (int)rf_min64(4, nq - q0);
        FN(wide_product_q)(Q, K, wp + q0 * stride, stride, hr, full, tmp);
        for (int64_t r = 0; r < full; r++)
            for (int q = 0; q < Q; q++)
                outg[q0 + q][r][0] = tmp[r][q];
    }
    for (int64_t r = full; r < nrows; r++) {
        if (nq == 8) {
            VEC o8[8];
            FN(wide8_row)(K, wp, stride, hr[r], o8);
            for (int q = 0; q < 8; q++)
                outg[q][r][0] = o8[q];
            continue;
        }
        for (int64_t q0 = 0; q0 < nq; q0 += 4) {
            const int Q = (int)rf_min64(4, nq - q0);
            FN(wide_product_q)(Q, K, wp + q0 * stride, stride, hr + r, 1, tmp);
            for (int q = 0; q < Q; q++)
                outg[q0 + q][r][0] = tmp[0][q];
        }
    }
}

#define RF_ROWS_MAX 24

/* Dot product with a fixed summation order (four vector partial sums, then lanes). */
static inline REAL FN(dot)(const REAL *restrict a, const REAL *restrict b, int64_t n)
{
    VEC s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    int64_t k = 0;
    for (; k + 4 * VL <= n; k += 4 * VL) {
        s0 += FN(vload)(a + k) * FN(vload)(b + k);
        s1 += FN(vload)(a + k + VL) * FN(vload)(b + k + VL);
        s2 += FN(vload)(a + k + 2 * VL) * FN(vload)(b + k + 2 * VL);
        s3 += FN(vload)(a + k + 3 * VL) * FN(vload)(b + k + 3 * VL);
    }
    for (; k + VL <= n; k += VL)
        s0 += FN(vload)(a + k) * FN(vload)(b + k);
    s0 = (s0 + s1) + (s2 + s3);
    REAL r = 0;
    for (int64_t l = 0; l < VL; l++)
        r += s0[l];
    for (; k < n; k++)
        r += a[k] * b[k];
    return r;
}

/* dst[0:n] += coef * src[0:n] */
static inline void FN(axpy)(int64_t n, REAL coef, const REAL *restrict src, REAL *restrict dst)
{
    int64_t k = 0;
    for (; k + VL <= n; k += VL)
        FN(vstore)(dst + k, FN(vload)(dst + k) + coef * FN(vload)(src + k));
    for (; k < n; k++)
        dst[k] += coef * src[k];
}

/* ------------------------------------------------------------------------------------ */
/* GEMM: C = (beta_one ? C : 0) + op(A) op(B), row-major.                                 */
/* Blocked and packed; one MR x NR register tile per micro-kernel call; parallel over      */
/* C tiles so the k order of each element is independent of the thread count.            */

static void FN(pack_a)(int ta, const REAL *A, int64_t lda, int64_t i0, int64_t mc,
                       int64_t p0, int64_t kc, REAL *restrict buf)
{
    if (ta) {   /* A stored (k, m): row k holds the block's mc values side by side */
        /* Row by row, each row's values to the block's micro-panels: every line of A is
           read once. (Panel by panel read each row's 64-byte line once per panel it
           covers, kc rows lda apart; with lda a multiple of 4 KiB they all fall in one
           L1 set. Measured, in-process pairs, 16 rounds, new/old time: dW shapes
           1024x256x1600 0.956, 3072x1024x1600 0.965, 2048x512x400 0.981, 1760x1760x800
           1.000.) */
        const int64_t mfull = mc / MR * MR;
        for (int64_t k = 0; k < kc; k++) {
            const REAL *src = A + (p0 + k) * lda + i0;
            for (int64_t ip = 0; ip < mfull; ip += MR)   /* constant size: inline moves */
                memcpy(buf + ip * kc + k * MR, src + ip, MR * sizeof(REAL));
        }
        if (mfull < mc) {
            REAL *dst = buf + mfull * kc;
            const int64_t mr = mc - mfull;
            for (int64_t k = 0; k < kc; k++) {
                const REAL *src = A + (p0 + k) * lda + i0 + mfull;
                for (int64_t i = 0; i < mr; i++)
                    dst[k * MR + i] = src[i];
                for (int64_t i = mr; i < MR; i++)
                    dst[k * MR + i] = 0;
            }
        }
        return;
    }
    for (int64_t ip = 0; ip < mc; ip += MR) {
        REAL *dst = buf + ip * kc;
        const int64_t mr = rf_min64(MR, mc - ip);
        if (mr == MR) {   /* A stored (m, k), a full panel: MR row streams, VL
                                    k at a time, VL x VL blocks transposed in registers */
            const REAL *src = A + (i0 + ip) * lda + p0;
            int64_t k = 0;
            for (; k + VL <= kc; k += VL)
                for (int64_t g = 0; g < MR; g += VL) {
                    const int64_t ng = rf_min64(VL, MR - g);
                    VEC t[VL];
                    for (int64_t i = 0; i < VL; i++)
                        t[i] = i < ng ? FN(vload)(src + (g + i) * lda + k) : (VEC){0};
                    FN(transpose)(t);
                    for (int64_t j = 0; j < VL; j++)
                        FN(vstore_n)(dst + (k + j) * MR + g, t[j], ng);
                }
            for (; k < kc; k++)
                for (int64_t i = 0; i < MR; i++)
                    dst[k * MR + i] = src[i * lda + k];
        } else {             /* A stored (m, k): read each row contiguously */
            for (int64_t i = 0; i < MR; i++) {
                if (i < mr) {
                    const REAL *src = A + (i0 + ip + i) * lda + p0;
                    for (int64_t k = 0; k < kc; k++)
                        dst[k * MR + i] = src[k];
                } else {
                    for (int64_t k = 0; k < kc; k++)
                        dst[k * MR + i] = 0;
                }
            }
        }
    }
}

/* Pack one NR-wide panel of op(B) rows p0..p0+kc, columns j0..j0+nr. */
static void FN(pack_b_panel)(int tb, const REAL *B, int64_t ldb, int64_t p0, int64_t kc,
                             int64_t j0, int64_t nr, REAL *restrict dst)
{
    if (!tb && nr == NR) {   /* constant-size copies inline as two vector moves */
        for (int64_t k = 0; k < kc; k++)
            memcpy(dst + k * NR, B + (p0 + k) * ldb + j0, NR * sizeof(REAL));
    } else if (!tb) {        /* B stored (k, n) */
        for (int64_t k = 0; k < kc; k++) {
            memcpy(dst + k * NR, B + (p0 + k) * ldb + j0, (size_t)nr * sizeof(REAL));
            for (int64_t j = nr; j < NR; j++)
                dst[k * NR + j] = 0;
        }
    } else if (nr == NR) {   /* B stored (n, k), a full panel: VL x VL blocks of the
                                NR rows transposed in registers, VL k at a time */
        int64_t k = 0;
        for (; k + VL <= kc; k += VL)
            for (int64_t g = 0; g < NR; g += VL) {
                VEC t[VL];
                for (int64_t j = 0; j < VL; j++)
                    t[j] = FN(vload)(B + (j0 + g + j) * ldb + p0 + k);
                FN(transpose)(t);
                for (int64_t i = 0; i < VL; i++)
                    FN(vstore)(dst + (k + i) * NR + g, t[i]);
            }
        for (; k < kc; k++)
            for (int64_t j = 0; j < NR; j++)
                dst[k * NR + j] = B[(j0 + j) * ldb + p0 + k];
    } else {                 /* B stored (n, k): read each of the nr rows contiguously */
        for (int64_t j = 0; j < NR; j++) {
            if (j < nr) {
                const REAL *src = B + (j0 + j) * ldb + p0;
                for (int64_t k = 0; k < kc; k++)
                    dst[k * NR + j] = src[k];
            } else {
                for (int64_t k = 0; k < kc; k++)
                    dst[k * NR + j] = 0;
            }
        }
    }
}

/* Accumulating tiles start from C, so every element is one sequential FMA chain over
   all of k, across KC blocks: the same order as the single-chain gate tiles. */
static void FN(ukernel)(int64_t kc, const REAL *restrict ap, const REAL *restrict bp,
                        REAL *restrict c, int64_t ldc, int64_t mr, int64_t nr, int accumulate,
                        const REAL *cnext)
{
    /* The next call's C tile (rows ldc apart) misses every cache when C is large; ask
       for it now, a whole k loop before it is loaded or stored. */
    if (cnext != NULL)
        for (int i = 0; i < MR; i++) {
            __builtin_prefetch(cnext + i * ldc, 1, 3);
            __builtin_prefetch(cnext + i * ldc + NR - 1, 1, 3);
        }
    VEC acc[MR][2];
    if (accumulate && mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
            acc[i][0] = FN(vload)(c + i * ldc);
            acc[i][1] = FN(vload)(c + i * ldc + VL);
        }
    } else if (accumulate) {
        REAL tile[MR][NR];
        memset(tile, 0, sizeof tile);
        for (int64_t i = 0; i < mr; i++)
            for (int64_t j = 0; j < nr; j++)
                tile[i][j] = c[i * ldc + j];
        memcpy(acc, tile, sizeof tile);
    } else {
        for (int i = 0; i < MR; i++)
            acc[i][0] = acc[i][1] = (VEC){0};
    }
    for (int64_t k = 0; k < kc; k++) {
        const VEC b0 = *(const VEC *)(bp + k * NR);
        const VEC b1 = *(const VEC *)(bp + k * NR + VL);
        for (int i = 0; i < MR; i++) {
            const REAL av = ap[k * MR + i];
            acc[i][0] += av * b0;
            acc[i][1] += av * b1;
        }
    }
    if (mr == MR && nr == NR) {
        for (int i = 0; i < MR; i++) {
            FN(vstore)(c + i * ldc, acc[i][0]);
            FN(vstore)(c + i * ldc + VL, acc[i][1]);
        }
        return;
    }
    REAL tile[MR][NR];
    memcpy(tile, acc, sizeof tile);
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++)
            c[i * ldc + j] = tile[i][j];
}

/* gemm with a caller's buffer for the packed B block when `bext` holds at least
   `bext_n` elements and that is enough (a layer call whose own weight pack is not yet,
   or no longer, in use); otherwise this thread's GEMM scratch. */
static int FN(gemm_buf)(int ta, int tb, int64_t m, int64_t n, int64_t k, const REAL *A,
                        int64_t lda, const REAL *B, int64_t ldb, int beta_one, REAL *C,
                        int64_t ldc, int nthreads, REAL *bext, size_t bext_n);

static int FN(gemm)(int ta, int tb, int64_t m, int64_t n, int64_t k, const REAL *A,
                    int64_t lda, const REAL *B, int64_t ldb, int beta_one, REAL *C,
                    int64_t ldc, int nthreads)
{
    return FN(gemm_buf)(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads, NULL, 0);
}

/* BLIS loop order over (NC columns, KC depth) blocks. Each thread owns a fixed,
   balanced range of rows (whole MR tiles) and packs its own copy of each op(B) block,
   so threads share nothing they write and never wait for each other. The team used to
   pack one shared B block (NC up to NR * 256) and deal MC-row blocks out dynamically;
   C blocks then moved between cores from one k block to the next, and each B half was
   rewritten while the other core still held it. When the host puts this VM's two
   vCPUs on different dies (core-to-core round trip 350 ns instead of 90 ns, in phases
   of tens of seconds) that cost T1/T2's products up to 30 %. Measured, GFLOP/s, old /
   new, one process alternating, cross-die phase: (400, 512, 2048) 150 / 178,
   (2048, 512, 400)^T 185 / 203, (1600, 512, 2048) 190 / 199, 2048^3 195 / 200; same
   die: 190 / 197, 203 / 207, 204 / 204, 205 / 204. NC = 1024 columns: a private B
   block is 1.5 MiB (AVX-512) or 2 MiB (AVX2), in L2; AVX2 at 512 columns was 2-4 %
   slower on (6400, 2048, 512)^T and 2048^3. Where op(B) is the larger operand (n > m),
   threads own columns instead, so that neither packs all of B (L6's projection
   (200, 4096, 1024)^T: old 166, rows 162, columns 182 GFLOP/s, same die). Each C
   element sums its k blocks in order, so results depend on neither the thread count
   nor the split.
   cbs > 0: C gate-blocked, for columns j = g * cgh + u of cgh-wide gates (cgh a
   multiple of NR): element (i, j) at C + (u / NR) * cbs + i * ldc + g * NR + u % NR,
   so that the NR units of every gate of one row lie together, and the rows of one
   unit group follow each other (FN(forward)'s gx_blocked). */
static int FN(gemm_blk)(int ta, int tb, int64_t m, int64_t n, int64_t k, const REAL *A,
                        int64_t lda, const REAL *B, int64_t ldb, int beta_one, REAL *C,
                        int64_t ldc, int nthreads, REAL *bext, size_t bext_n, int64_t cgh,
                        int64_t cbs)
{
#define RF_CPOS_(i_, j_) (cbs ? C + ((j_) % cgh / NR) * cbs + (i_) * ldc + (j_) / cgh * NR \
                              + (j_) % cgh % NR                                            \
                        : C + (i_) * ldc + (j_))
    if (m <= 0 || n <= 0)
        return RF_OK;
    if (k <= 0) {
        if (!beta_one)
            for (int64_t i = 0; i < m; i++)
                memset(C + i * ldc, 0, (size_t)n * sizeof(REAL));
        return RF_OK;
    }
    const int64_t nc_max = rf_min64(NCB, (n + NR - 1) / NR * NR);
    const int64_t mblocks = (m + MC - 1) / MC;
    const int nt = rf_threads_for(nthreads, (double)2 * m * n * k, 4.0e6,
                                  rf_min64(mblocks, 1 << 20));
    const int ext_ok = bext != NULL && bext_n >= (size_t)(nc_max * KC);
    const int by_cols = nt > 1 && n > m && (n + NR - 1) / NR >= 2 * nt;
    int failed = 0;
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        const rf_fpmode fpm = rf_fpmode_enter();   /* FTZ/DAZ on every thread */
#ifdef _OPENMP
        const int tid = omp_get_thread_num();
#else
        const int tid = 0;
#endif
        REAL *abuf = rf_scratch(RF_SLOT_GEMM_A, (size_t)MC * KC * sizeof(REAL));
        REAL *bbuf = tid == 0 && ext_ok
            ? bext : rf_scratch(RF_SLOT_GEMM_B, (size_t)nc_max * KC * sizeof(REAL));
        failed = abuf == NULL || bbuf == NULL;
        /* this thread's rows (whole MR tiles) or, when op(B) is the larger operand to
           pack, its columns (whole NR panels): the same for every block, so its C tiles
           stay in its own caches from one k block to the next, and each thread packs
           the smaller operand in full and only its share of the larger */
        int64_t r0 = 0, r1 = m, c0 = 0, c1 = n;
        if (by_cols) {
            rf_split((n + NR - 1) / NR, &c0, &c1);
            c0 *= NR;
            c1 = rf_min64(c1 * NR, n);
        } else {
            rf_split((m + MR - 1) / MR, &r0, &r1);
            r0 *= MR;
            r1 = rf_min64(r1 * MR, m);
        }
        for (int64_t j0 = c0; !failed && r0 < r1 && j0 < c1; j0 += NCB) {
            const int64_t nc = rf_min64(NCB, c1 - j0);
            const int64_t npanels = (nc + NR - 1) / NR;
            for (int64_t p0 = 0; p0 < k; p0 += KC) {
                const int64_t kc = rf_min64(KC, k - p0);
                for (int64_t jp = 0; jp < npanels; jp++)
                    FN(pack_b_panel)(tb, B, ldb, p0, kc, j0 + jp * NR,
                                     rf_min64(NR, nc - jp * NR), bbuf + jp * NR * kc);
                for (int64_t i0 = r0; i0 < r1; i0 += MC) {
                    const int64_t mc = rf_min64(MC, r1 - i0);
                    FN(pack_a)(ta, A, lda, i0, mc, p0, kc, abuf);
                    for (int64_t jp = 0; jp < npanels; jp++)
                        for (int64_t ip = 0; ip < mc; ip += MR) {
                            /* the tile after this one: next rows, else the next panel's
                               first rows; a tile that is not full is not prefetched */
                            const int64_t ipn = ip + MR < mc ? ip + MR : 0;
                            const int64_t jpn = ip + MR < mc ? jp : jp + 1;
                            const REAL *cn = jpn < npanels && mc - ipn >= MR
                                && nc - jpn * NR >= NR
                                ? RF_CPOS_(i0 + ipn, j0 + jpn * NR) : NULL;
                            FN(ukernel)(kc, abuf + ip * kc, bbuf + jp * NR * kc,
                                        RF_CPOS_(i0 + ip, j0 + jp * NR), ldc,
                                        rf_min64(MR, mc - ip), rf_min64(NR, nc - jp * NR),
                                        beta_one || p0 > 0, cn);
                        }
                }
            }
        }
        rf_fpmode_leave(fpm);
    }
    return failed ? RF_ENOMEM : RF_OK;
#undef RF_CPOS_
}

static int FN(gemm_buf)(int ta, int tb, int64_t m, int64_t n, int64_t k, const REAL *A,
                        int64_t lda, const REAL *B, int64_t ldb, int beta_one, REAL *C,
                        int64_t ldc, int nthreads, REAL *bext, size_t bext_n)
{
    return FN(gemm_blk)(ta, tb, m, n, k, A, lda, B, ldb, beta_one, C, ldc, nthreads, bext,
                        bext_n, 0, 0);
}

/* Column sums of a (m, n) row-major matrix into out[n]; fixed row order per column. */
static void FN(colsum)(int64_t m, int64_t n, const REAL *A, int64_t lda, REAL *out, int nthreads)
{
    int nt = rf_threads_for(nthreads, (double)m * n, 2.0e5, (n + 63) / 64);
#pragma omp parallel num_threads(nt)
    {
        const rf_fpmode fpm = rf_fpmode_enter();
        int64_t lo, hi;
        rf_split(n, &lo, &hi);
        for (int64_t j = lo; j < hi; j++)
            out[j] = 0;
        for (int64_t i = 0; i < m; i++)
            FN(axpy)(hi - lo, (REAL)1, A + i * lda + lo, out + lo);
        rf_fpmode_leave(fpm);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Forward                                                                                */

/* Zero the rows (t, n) with t >= lengths[n] of a (T, N, width) buffer: workspaces are
   reused across calls, and the hoisted products read padded rows as zeros. */
/* Read n elements `reps` times (blocks of 8 vectors; the last thread adds the tail),
   split among the threads as the kernels split weight panels, and return their sum so
   the reads cannot be elided: the read bandwidth a kernel streaming its weights could
   reach (rnnfast bench reports the batch-1 shapes against it). */
__attribute__((unused)) static double FN(stream_read)(const REAL *p, int64_t n, int reps, int nthreads)
{
    const int64_t nblk = n / (8 * VL);
    double total = 0;
#pragma omp parallel num_threads(nthreads) reduction(+ : total)
    {
        int64_t b0, b1;
        rf_split(nblk, &b0, &b1);
        VEC s[8];
        for (int j = 0; j < 8; j++)
            s[j] = FN(vsplat)(0);
        for (int r = 0; r < reps; r++)
            for (int64_t b = b0; b < b1; b++) {
                const REAL *q = p + b * 8 * VL;
                for (int j = 0; j < 8; j++)
                    s[j] += FN(vload)(q + j * VL);
            }
        for (int j = 1; j < 8; j++)
            s[0] += s[j];
        for (int64_t l = 0; l < VL; l++)
            total += (double)s[0][l];
#ifdef _OPENMP
        const int last = omp_get_thread_num() == omp_get_num_threads() - 1;
#else
        const int last = 1;
#endif
        if (last)   /* the last thread also reads the tail */
            for (int r = 0; r < reps; r++)
                for (int64_t i = nblk * 8 * VL; i < n; i++)
                    total += (double)p[i];
    }
    return total;
}

static void FN(zero_padded)(REAL *buf, int64_t T, int64_t N, int64_t width, const int64_t *lens)
{
    if (buf == NULL || lens == NULL)
        return;
    for (int64_t n = 0; n < N; n++)
        for (int64_t t = lens[n]; t < T; t++)
            memset(buf + (t * N + n) * width, 0, (size_t)width * sizeof(REAL));
}

/* Pack everything the forward multiplies by (W_ih, the W_hh gates that read h, the GRU
 * candidate's W_hn, the LSTM projection) for unit blocks [ub0, ub1) and projection
 * blocks [pb0, pb1), into the layout of rf_pack_forward's buffer. */
/* Pack this thread's unit blocks of W_ih into `win` (unless NULL) and of the recurrent
   weights (W_hh; W_hn for GRU reset-before; W_hr's P-blocks) into `wmain`. */
static void FN(pack_forward_blocks)(const rf_fwd_args *a, int64_t ub0, int64_t ub1,
                                    int64_t pb0, int64_t pb1, REAL *win, REAL *wmain)
{
    const int lstm = a->cell == RF_LSTM, gru_before = a->cell == RF_GRU && !a->reset_after;
    const int proj = lstm && a->w_hr != NULL;
    const int64_t I = a->isz, H = a->H, P = a->P, G = rf_gate_count(a->cell);
    const int64_t nub = rf_round_up(H, VL) / VL;
    const int Gm = gru_before ? 2 : (int)G;
    REAL *wcand = wmain + nub * P * Gm * VL;
    REAL *wproj = wcand + (gru_before ? nub * H * VL : 0);
    if (win != NULL)
        FN(pack_gates)(a->w_ih, H, I, (int)G, 0, ub0, ub1, win);
    if (wmain == NULL)
        return;
    FN(pack_gates)(a->w_hh, H, P, Gm, 0, ub0, ub1, wmain);
    if (gru_before)
        FN(pack_gates)(a->w_hh, H, H, 1, 2 * H, ub0, ub1, wcand);
    if (proj)
        FN(pack_gates)(a->w_hr, P, H, 1, 0, pb0, pb1, wproj);
}

/* Elements of the forward pack for this problem (depends on the ISA's vector width). */
static int64_t FN(pack_forward_size)(const rf_fwd_args *a)
{
    const int lstm = a->cell == RF_LSTM, gru_before = a->cell == RF_GRU && !a->reset_after;
    const int64_t I = a->isz, H = a->H, P = a->P, G = rf_gate_count(a->cell);
    const int64_t nub = rf_round_up(H, VL) / VL, npb = rf_round_up(P, VL) / VL;
    const int Gm = gru_before ? 2 : (int)G;
    return nub * I * G * VL + nub * P * Gm * VL + (gru_before ? nub * H * VL : 0)
           + (lstm && a->w_hr ? npb * H * VL : 0);
}

static int FN(pack_forward)(const rf_fwd_args *a, REAL *dst)
{
    const int64_t nub = rf_round_up(a->H, VL) / VL, npb = rf_round_up(a->P, VL) / VL;
    const int nt = rf_threads_for(a->nthreads, (double)FN(pack_forward_size)(a), 1.0e5, nub);
#pragma omp parallel num_threads(nt)
    {
        int64_t ub0, ub1, pb0, pb1;
        rf_split(nub, &ub0, &ub1);
        rf_split(npb, &pb0, &pb1);
        FN(pack_forward_blocks)(a, ub0, ub1, pb0, pb1, dst,
                                dst + nub * a->isz * rf_gate_count(a->cell) * VL);
    }
    return RF_OK;
}

/* The forward's fused cell update (the "epilogue") for rows act[0:nr] of one unit block:
   the recurrent products o[r][q] of those rows plus gx and the biases, through the gates,
   into the state and the outputs. One function per cell type, outside the time loop's
   large body, so that each loop keeps its values in registers. */
typedef struct {
    int cell, training, proj, reverse;
    int64_t T, N, H, P, Hp, Pp;
    const int64_t *lens;
    const REAL *bsum, *bhn;
    REAL *gx, *y, *cst, *mbuf, *ws_c, *ws_m, *ws_hn;
    int64_t gx_bs;   /* 0, or gx in FN(forward)'s gate-blocked layout (gx_blocked) */
} FN(epi_args);

/* The out-of-line entry of an epilogue: whole vectors (every unit block but a ragged
   last one) take the body specialised for nu == VL, without the tail tests. The input
   projection comes from the gx rows, or, where `ox` is given, from ox[r][g] (computed
   in the time step itself: FN(forward)'s fuse_x). STATE_ is the
   cell's state pointers, declared (STATE_DECL_) and passed on (STATE_ARGS_). */
#define RF_EPI_OUTLINE(NAME_, STATE_DECL_, STATE_ARGS_)                                     \
    __attribute__((noinline)) static void FN(epi_##NAME_)(const FN(epi_args) *e, int64_t s, \
        RF_UNPAREN STATE_DECL_, const int64_t *act, int64_t nr, int64_t u0, VEC (*o)[4],    \
        VEC (*ox)[4])                                                                       \
    {                                                                                       \
        const int64_t nu = rf_min64(VL, e->H - u0);                                         \
        if (nu == VL)                                                                       \
            FN(epi_##NAME_##_n)(e, s, RF_UNPAREN STATE_ARGS_, act, nr, u0, o, ox, VL);      \
        else                                                                                \
            FN(epi_##NAME_##_n)(e, s, RF_UNPAREN STATE_ARGS_, act, nr, u0, o, ox, nu);      \
    }
#define RF_UNPAREN(...) __VA_ARGS__

/* gate q's input projection for row r of an epilogue (g: the row's gx at u0) */
#define RF_GX_(q_) (ox ? ox[r][q_] : FN(vload_n)(g + (q_) * qs, nu))
/* the row's gx at unit u0, and the distance between its gates (qs) */
#define RF_GX_ROW_(G_) (e->gx_bs ? e->gx + (u0 / NR) * e->gx_bs + u0 % NR + row * (G_) * NR \
                              : e->gx + row * (G_) * H + u0)

static inline __attribute__((always_inline)) void FN(epi_rnn_n)(const FN(epi_args) *e,
    int64_t s, REAL *hx, const int64_t *act, int64_t nr, int64_t u0, VEC (*o)[4],
    VEC (*ox)[4], int64_t nu)
{
    const int64_t H = e->H;
    const VEC b = FN(vload)(e->bsum + u0);
    for (int64_t r = 0; r < nr; r++) {
        const int64_t n = act[r], row = rf_step_time(e->lens, e->T, n, s, e->reverse) * e->N + n;
        const REAL *g = RF_GX_ROW_(1);
        const VEC pre = (ox ? ox[r][0] : FN(vload_n)(g, nu)) + b + o[r][0];
        const VEC h = e->cell == RF_RNN_TANH ? FN(vtanh)(pre) : FN(vrelu)(pre);
        FN(vstore)(hx + n * e->Pp + u0, h);
        FN(vstore_n)(e->y + row * e->P + u0, h, nu);
    }
}

RF_EPI_OUTLINE(rnn, (REAL *hx), (hx))

static inline __attribute__((always_inline)) void FN(epi_lstm_n)(const FN(epi_args) *e,
    int64_t s, REAL *hx, const int64_t *act, int64_t nr, int64_t u0, VEC (*o)[4],
    VEC (*ox)[4], int64_t nu)
{
    const int64_t H = e->H, Hp = e->Hp, qs = e->gx_bs ? NR : H;
    const int training = e->training, proj = e->proj;
    const VEC b0 = FN(vload)(e->bsum + u0), b1 = FN(vload)(e->bsum + Hp + u0);
    const VEC b2 = FN(vload)(e->bsum + 2 * Hp + u0), b3 = FN(vload)(e->bsum + 3 * Hp + u0);
    for (int64_t r = 0; r < nr; r++) {
        const int64_t n = act[r], row = rf_step_time(e->lens, e->T, n, s, e->reverse) * e->N + n;
        REAL *g = (REAL *)RF_GX_ROW_(4);
        const VEC i = FN(vsigmoid)(RF_GX_(0) + b0 + o[r][0]);
        const VEC f = FN(vsigmoid)(RF_GX_(1) + b1 + o[r][1]);
        const VEC gg = FN(vtanh)(RF_GX_(2) + b2 + o[r][2]);
        const VEC og = FN(vsigmoid)(RF_GX_(3) + b3 + o[r][3]);
        REAL *cp = e->cst + n * Hp + u0;
        const VEC c = f * FN(vload)(cp) + i * gg;
        const VEC m = og * FN(vtanh)(c);
        FN(vstore)(cp, c);
        if (training) {
            FN(vstore_n)(g, i, nu);
            FN(vstore_n)(g + H, f, nu);
            FN(vstore_n)(g + 2 * H, gg, nu);
            FN(vstore_n)(g + 3 * H, og, nu);
            FN(vstore_n)(e->ws_c + row * H + u0, c, nu);
            if (proj)
                FN(vstore_n)(e->ws_m + row * H + u0, m, nu);
        }
        if (proj) {
            FN(vstore)(e->mbuf + n * Hp + u0, m);
        } else {
            FN(vstore)(hx + n * e->Pp + u0, m);
            FN(vstore_n)(e->y + row * e->P + u0, m, nu);
        }
    }
}

RF_EPI_OUTLINE(lstm, (REAL *hx), (hx))

static inline __attribute__((always_inline)) void FN(epi_gru_n)(const FN(epi_args) *e,
    int64_t s, const REAL *hc, REAL *hx, const int64_t *act, int64_t nr, int64_t u0,
    VEC (*o)[4], VEC (*ox)[4], int64_t nu)
{
    const int64_t H = e->H, Hp = e->Hp, Pp = e->Pp, qs = e->gx_bs ? NR : H;
    const int training = e->training;
    const VEC b0 = FN(vload)(e->bsum + u0), b1 = FN(vload)(e->bsum + Hp + u0);
    const VEC b2 = FN(vload)(e->bsum + 2 * Hp + u0), bn = FN(vload)(e->bhn + u0);
    for (int64_t r = 0; r < nr; r++) {
        const int64_t n = act[r], row = rf_step_time(e->lens, e->T, n, s, e->reverse) * e->N + n;
        REAL *g = (REAL *)RF_GX_ROW_(3);
        const VEC r_ = FN(vsigmoid)(RF_GX_(0) + b0 + o[r][0]);
        const VEC z = FN(vsigmoid)(RF_GX_(1) + b1 + o[r][1]);
        const VEC hn = o[r][2] + bn;
        const VEC nn = FN(vtanh)(RF_GX_(2) + b2 + r_ * hn);
        const VEC h = ((REAL)1 - z) * nn + z * FN(vload)(hc + n * Pp + u0);
        if (training) {   /* the gates, for the backward */
            FN(vstore_n)(g, r_, nu);
            FN(vstore_n)(g + H, z, nu);
            FN(vstore_n)(g + 2 * H, nn, nu);
            FN(vstore_n)(e->ws_hn + row * H + u0, hn, nu);
        }
        FN(vstore)(hx + n * Pp + u0, h);
        FN(vstore_n)(e->y + row * e->P + u0, h, nu);
    }
}

RF_EPI_OUTLINE(gru, (const REAL *hc, REAL *hx), (hc, hx))

/* GRU reset-before, phase A: r, z and r*h (the candidate needs all of r*h) */
static inline __attribute__((always_inline)) void FN(epi_gru_rz_n)(const FN(epi_args) *e,
    int64_t s, const REAL *hc, const int64_t *act, int64_t nr, int64_t u0, VEC (*o)[4],
    VEC (*ox)[4], int64_t nu)
{
    (void)ox;   /* never fused: the candidate's projection is read from gx later */
    const int64_t H = e->H, GH = 3 * H, Hp = e->Hp;
    const VEC b0 = FN(vload)(e->bsum + u0), b1 = FN(vload)(e->bsum + Hp + u0);
    for (int64_t r = 0; r < nr; r++) {
        const int64_t n = act[r], row = rf_step_time(e->lens, e->T, n, s, e->reverse) * e->N + n;
        REAL *g = e->gx + row * GH + u0;
        const VEC r_ = FN(vsigmoid)(FN(vload_n)(g, nu) + b0 + o[r][0]);
        const VEC z = FN(vsigmoid)(FN(vload_n)(g + H, nu) + b1 + o[r][1]);
        FN(vstore_n)(g, r_, nu);
        FN(vstore_n)(g + H, z, nu);
        FN(vstore)(e->mbuf + n * Hp + u0, r_ * FN(vload)(hc + n * e->Pp + u0));
    }
}

RF_EPI_OUTLINE(gru_rz, (const REAL *hc), (hc))

#undef RF_GX_
#undef RF_GX_ROW_

static void FN(epilogue)(const FN(epi_args) *e, int64_t s, const REAL *hc, REAL *hx,
                         const int64_t *act, int64_t nr, int64_t u0, VEC (*o)[4],
                         VEC (*ox)[4])
{
    if (e->cell == RF_LSTM)
        FN(epi_lstm)(e, s, hx, act, nr, u0, o, ox);
    else if (e->cell == RF_GRU && e->bhn != NULL)
        FN(epi_gru)(e, s, hc, hx, act, nr, u0, o, ox);
    else if (e->cell == RF_GRU)
        FN(epi_gru_rz)(e, s, hc, act, nr, u0, o, ox);
    else
        FN(epi_rnn)(e, s, hx, act, nr, u0, o, ox);
}


/* The input projection of unit blocks ub..ub+nb-1 (nb <= 4 for the vanilla RNN's
   single-gate blocks, <= 2 for gate blocks) for the x rows hr[0:nr], stored into the gx
   rows rows[0:nr] (row width GH). */
static inline void FN(project_blocks)(int rnn, int G, int64_t I, int64_t H, const REAL *win,
                                      int64_t ub, int64_t nb, const REAL *const *hr,
                                      const int64_t *rows, int64_t nr, REAL *gx,
                                      VEC out[][4], VEC out2[][4])
{
    const int64_t GH = G * H;
    if (rnn)
        FN(wide_product_q)((int)nb, I, win + ub * I * VL, I * VL, hr, nr, out);
    else if (nb == 2)
        FN(gate_product_pair)(G, I, win + ub * I * G * VL, win + (ub + 1) * I * G * VL, hr, nr,
                              out, out2);
    else
        FN(gate_product)(G, I, win + ub * I * G * VL, hr, nr, out);
    for (int64_t q = 0; q < nb; q++) {
        const int64_t u0 = (ub + q) * VL, nu = rf_min64(VL, H - u0);
        for (int64_t r = 0; r < nr; r++) {
            REAL *g = gx + rows[r] * GH + u0;
            if (rnn)
                FN(vstore_n)(g, out[r][q], nu);
            else
                for (int gq = 0; gq < G; gq++)
                    FN(vstore_n)(g + gq * H, (q ? out2 : out)[r][gq], nu);
        }
    }
}

/* One step's products for nq adjacent unit blocks of a thread (panels wstride apart), as
   the time loop tiles them: step_q blocks per group (RF_QRNN for the vanilla RNN, qg or
   2 for the gates) */
static inline void FN(step_product)(int rnn, int G, int64_t step_q, int64_t K, const REAL *w,
                                    int64_t wstride, int64_t nq, const REAL *const *hr,
                                    int64_t nr, VEC outg[][RF_ROWS_MAX][4])
{
    if (rnn)
        FN(rnn_product)(K, w, wstride, nq, hr, nr, outg);
    else if (step_q != 2)
        FN(gate_product_group)(G, K, w, wstride, nq, hr, nr, outg);
    else if (nq == 2)
        FN(gate_product_pair)(G, K, w, w + wstride, hr, nr, outg[0], outg[1]);
    else
        FN(gate_product)(G, K, w, hr, nr, outg[0]);
}

static int FN(forward)(const rf_fwd_args *a)
{
    const int cell = a->cell, training = a->training, reverse = a->reverse;
    const int lstm = cell == RF_LSTM, gru = cell == RF_GRU;
    const int gru_after = gru && a->reset_after, gru_before = gru && !a->reset_after;
    const int64_t T = a->T, N = a->N, I = a->isz, H = a->H, P = a->P;
    const int64_t G = rf_gate_count(cell), GH = G * H;
    const int proj = lstm && a->w_hr != NULL;
    const int64_t *lens = a->lengths;
    const REAL *x = a->x, *b_ih = a->b_ih, *b_hh = a->b_hh;
    if (lens) {   /* every sequence full length: the same computation as no lengths */
        int64_t full = 1;
        for (int64_t n = 0; n < a->N && full; n++)
            full = lens[n] == a->T;
        if (full)
            lens = NULL;
    }
    REAL *y = a->y, *gx = a->gx;
    REAL *ws_c = a->ws_c, *ws_m = a->ws_m, *ws_hn = a->ws_hn;

    if (N == 0)
        return RF_OK;
    /* Large unpadded batches: the input projection as one GEMM (packed, cache-blocked).
       Its elements are single sequential chains over k, like the LSTM/GRU gate tiles and
       the RNN's wide tiles below, so the result is bitwise the same either way (batch
       invariance holds). */
    /* From 1024 rows, if the product is not tiny. Measured (in-process pairs, 30 rounds,
       GEMM/tiles time): 1600-2000 rows, T2 0.96, T5 inference 0.94, T7 and T8 0.97;
       1024 rows, GRU H256 training 0.96, RNN H512 0.94, LSTM H128 1.00 but GRU H64
       1.05 (G*H*I = 12288: packing and the GEMM's own thread split cost more than they
       save). Below 1024 rows the gate tiles are as fast or faster (T1 and T6, 400 and
       800 rows: 1.00 and 1.01; G4, 400: 1.04; batch-1 rows 1.1 to 1.6), and they need
       no packing of W_ih per call. */
    const int large = lens == NULL && (T * N >= 4096 || (T * N >= 1024 && GH * I >= 65536));
    /* Inference with a narrow input (I <= 128, or I <= 256 at 32+ rows): the input
       projection inside the time loop, per step and unit-block group, into registers the
       epilogue reads (outx), instead of into gx before the loop. gx is written and read
       back once per row either way, about as much memory traffic as the product's own
       I FMAs per element at I = 128 (from DRAM when T*N*G*H is large); inside the step,
       W_ih's panels come from L2 with W_hh's. Each element is still one chain over k from
       zero, so results do not change. Measured, in-process pairs, 12 rounds, new/old
       time (I = H): H64 N256 T50 0.76, LSTM H128 N128 T100 0.82, N16 T300 0.87, N8 T600
       0.90, N64 T10 0.92; GRU H128 N128 0.92, H256 N32 0.89; LSTM H256 N64 0.95; RNN H128
       N8 0.95. Not where it lost: one or two rows (LSTM H128 N1 T5000 1.23, GRU H256 N2
       1.29: the hoisted product reuses each weight across T*N rows, the step only across
       N); wider inputs (I = 512: S1 1.00, GRU N64 1.03, RNN N8 1.11; I = 1024 LSTM N16-32
       1.18-1.22: W_ih's share of every step then streams from L3); training, where gx
       holds the gates anyway (LSTM H256 N32 T150 1.00, H128 1.00). With lengths (in
       [T/2, T]), where the pre-loop tiles gather the valid rows: LSTM H64 N256 0.76,
       H128 N64 0.84, N8 T600 0.87, GRU H128 N128 0.77, LSTM H256 N32 0.90.
       The AVX-512 variant fuses up to I = 512 from 4 rows: measured on Zen 4 (AVX-512,
       1 MiB L2 per core, 2 threads; in-process pairs, 8 rounds, new/old time, I = H
       unless noted): LSTM H512 N64 T100 (S1) 0.975, N128 0.89, N32 0.92, N16 0.93-0.94,
       N4 0.91, N8 1.01; GRU H512 N32 0.88, N64 0.97, N8 1.02, N4 0.92; RNN H512 N64
       0.93, N8 0.99, N4 0.97; LSTM H256 I512 N64 0.97; float64 LSTM H512 N32 0.97,
       N4 0.96, GRU N16 0.90. Wider still it stops paying: LSTM H1024 N8 1.08, N32
       1.01, GRU H1024 N32 1.01 (H512 I1024 0.93-0.97, but not worth a rule).
       Below 32 rows at I > 256 it depends on the L3: each step streams the thread's
       W_ih slice again, which on a Xeon (2 MiB L2 per core, about 30 GB/s per core
       from L3) costs more than the gx round trip saves. Measured there (2 vCPUs,
       processes alternating, 3-7 rounds, pre-loop/fused time): LSTM H512 I512 N4
       (L5) 0.71-0.73, N8 0.89, N16 0.87, N64 1.01; GRU H512 N4 0.70; LSTM H1024 I512
       N8 0.92. Zen 4's gains at N4-N16 (above, 6-9 %) are the smaller stake: fusion
       at 256 < I <= 512 from 32 rows only. */
    const int fuse_x = !training && !gru_before && T > 1 && N >= 4
                       && (I <= 128 || (I <= 256 && N >= 32) || (VBYTES == 64 && I <= 512 && N >= 32));
    const int hoist_gemm = large && !fuse_x;
    /* gx_blocked: inference's hoisted projection stored gate-blocked (FN(gemm_blk)):
       for each NR units, all rows one after another, each row's gates together. The
       time step's epilogue then reads, for a tile of rows and unit blocks, a few
       contiguous runs of memory instead of G lines per row scattered G*H apart, which
       the prefetchers do not follow and which evict each other from L1 (they alias
       4 KiB apart). Same sums, same results. Training keeps the row layout: its
       epilogue stores the gates there for the backward. Measured with rdtsc counters
       (blocks of 100 calls alternating in one process): S1's epilogues 25.8M ticks per
       thread and call instead of 42.9M, the call 6 % shorter; in-process pairs, new/old
       time: S1 0.95, GRU H1024 N32 T50 0.96, GRU H512 N64 and RNN H1024 N64 0.97;
       LSTM H1024 N8 T200 unchanged (0.98-1.02). The software prefetch of the row
       layout's lines (below) is not needed: the hardware prefetchers follow the runs. */
    const int gx_blocked = hoist_gemm && !training && !gru_before && H % NR == 0;
    FN(zero_padded)(ws_m, T, N, H, lens);
    FN(zero_padded)(ws_hn, T, N, H, lens);

    /* State rows are padded to whole vectors (Hp, Pp) so the fused epilogue stores full
       vectors; the padding lanes stay exactly zero. */
    const int64_t Hp = rf_round_up(H, VL), Pp = rf_round_up(P, VL);
    const int64_t nub = Hp / VL, npb = Pp / VL;
    const int Gm = gru_before ? 2 : (int)G;      /* gates whose product reads h */
    const int64_t qg = Gm == 4 ? RF_Q4 : Gm == 3 ? RF_Q3 : 2;   /* unit blocks per group */
    /* the decomposition of the time loop (rf_decomposition in rnnfast.h): by hidden
       units (threads synchronise once per step) or by sequences (none at all) */
    const int bpar = rf_batch_parallel(a->nthreads, N, (double)GH * P * sizeof(REAL));
    const int nt = bpar ? rf_threads_for(a->nthreads, (double)2 * N * GH * P, 3.0e4, N)
                        : rf_threads_for(a->nthreads, (double)2 * N * GH * P, 3.0e4, nub);
    const size_t n_in = (size_t)(nub * I * G * VL);
    const size_t n_main = (size_t)(nub * P * Gm * VL);
    const size_t n_cand = gru_before ? (size_t)(nub * H * VL) : 0;
    const size_t n_proj = proj ? (size_t)(npb * H * VL) : 0;
    const int prepacked = a->wpack != NULL;
    /* packed per call (training, or no prepacked weights): W_ih is only read by the
       input projection, before the time loop, so the recurrent weights are packed over
       it afterwards: the buffer is the larger of the two, about the size of the
       backward's own pack, and one cached buffer serves both without growing (no
       page faults per step, no extra peak memory) */
    const size_t n_rec = n_main + n_cand + n_proj;
    const size_t n_packs = prepacked ? 0 : fuse_x ? n_in + n_rec
                           : (hoist_gemm ? n_rec : (n_in > n_rec ? n_in : n_rec));
    const size_t n_scratch = (size_t)(G * Hp + Hp + 2 * N * Pp + 2 * N * Hp);
    REAL *scratch = rf_scratch(RF_SLOT_STATE, n_scratch * sizeof(REAL));
    int64_t *act_all = rf_scratch(RF_SLOT_ACTIVE, (size_t)(nt * N) * sizeof(int64_t));
    REAL *packbuf = prepacked ? (REAL *)a->wpack : rf_scratch(RF_SLOT_PACK, n_packs * sizeof(REAL));
    if (scratch == NULL || act_all == NULL || packbuf == NULL)
        return RF_ENOMEM;
    if (hoist_gemm) {
        /* the recurrent weights are packed after the projection: until then their
           buffer holds the GEMM's packed W_ih block (no GEMM scratch of its own; the
           buffer is the caller's prepacked weights in eval, not to be written) */
        const int st = FN(gemm_blk)(0, 1, T * N, GH, I, x, I, a->w_ih, I, 0, gx,
                                    gx_blocked ? G * NR : GH, a->nthreads,
                                    prepacked ? NULL : packbuf, n_packs, gx_blocked ? H : 0,
                                    gx_blocked ? T * N * G * NR : 0);
        if (st != RF_OK)
            return st;
    }
    REAL *bsum = scratch, *bhn = bsum + G * Hp, *hA = bhn + Hp, *hB = hA + N * Pp;
    REAL *cst = hB + N * Pp, *mbuf = cst + N * Hp;
    REAL *win = packbuf;
    REAL *wmain = prepacked || fuse_x ? win + n_in : packbuf, *wcand = wmain + n_main, *wproj = wcand + n_cand;
    memset(scratch, 0, (size_t)(G * Hp + Hp + 2 * N * Pp + 2 * N * Hp) * sizeof(REAL));
    for (int64_t q = 0; q < G; q++)
        for (int64_t u = 0; u < H; u++) {
            const int64_t j = q * H + u;
            const int separate = gru_after && q == 2;   /* b_hn stays inside r*(...) */
            bsum[q * Hp + u] = b_ih ? b_ih[j] + (separate ? (REAL)0 : b_hh[j]) : (REAL)0;
            if (separate && b_hh)
                bhn[u] = b_hh[j];
        }
    for (int64_t n = 0; n < N; n++) {
        memcpy(hA + n * Pp, (const REAL *)a->h0 + n * P, (size_t)P * sizeof(REAL));
        if (lstm && a->c0)
            memcpy(cst + n * Hp, (const REAL *)a->c0 + n * H, (size_t)H * sizeof(REAL));
    }

    /* A single step with prepacked weights (a step-by-step decoder, G1): threads claim
       unit-block groups one after another, projection, recurrent product and cell
       update together, instead of owning a fixed half. Nothing needs a barrier, and a
       thread that starts late (woken from sleep, or descheduled by a busy host) only
       takes fewer groups: the step no longer waits for the slowest thread's share.
       Every output is the same chain over k as in the general path (groups of whole
       unit blocks), so results do not change. */
    const int one_step = T == 1 && prepacked && !hoist_gemm && !bpar && !gru_before && !proj
                         && lens == NULL;
    int64_t next_group = 0;
    rf_barrier bar;
    rf_barrier_init(&bar, nt);
#pragma omp parallel num_threads(nt)
    {
        const rf_fpmode fpm = rf_fpmode_enter();
        int64_t ub0, ub1, pb0, pb1, n0 = 0, n1 = N;
        rf_split(nub, &ub0, &ub1);
        rf_split(npb, &pb0, &pb1);
        /* each thread packs, and later reads, only its own unit blocks: no sync needed
           for W_ih (the recurrent pack, which overwrites it, waits for every thread's
           projection; by sequences every thread reads all blocks: one barrier after) */
        if (!prepacked && !hoist_gemm)
            FN(pack_forward_blocks)(a, ub0, ub1, pb0, pb1, win, NULL);
#ifdef _OPENMP
        int64_t *act = act_all + (int64_t)omp_get_thread_num() * N;
#else
        int64_t *act = act_all;
#endif
        int sense = 0;
        REAL *hc = hA, *hx = hB;
        const REAL *hr[RF_ROWS_MAX];
        VEC out[RF_ROWS_MAX][4], out2[RF_ROWS_MAX][4];
        VEC outg[RF_QRNN > RF_QMAX ? RF_QRNN : RF_QMAX][RF_ROWS_MAX][4];
        VEC outx[RF_QRNN > RF_QMAX ? RF_QRNN : RF_QMAX][RF_ROWS_MAX][4];
        const int rnn = !lstm && !gru;
        const FN(epi_args) ep = {cell, training, proj, reverse, T, N, H, P, Hp, Pp, lens, bsum,
                                 gru_after ? bhn : NULL, gx, y, cst, mbuf, ws_c, ws_m, ws_hn,
                                 gx_blocked ? T * N * G * NR : 0};
        if (one_step) {
            const int64_t grp = rnn ? RF_QRNN : 2;   /* unit blocks per claim */
            for (int64_t n = 0; n < N; n++)
                act[n] = n;
            for (;;) {
                const int64_t ubp = __atomic_fetch_add(&next_group, grp, __ATOMIC_RELAXED);
                if (ubp >= nub)
                    break;
                const int64_t nq = rf_min64(grp, nub - ubp);
                for (int64_t i0 = 0; i0 < N; i0 += RF_ROWS_MAX) {
                    const int64_t nr = rf_min64(RF_ROWS_MAX, N - i0);
                    /* the input projection of these rows and blocks into gx (row n of
                       the single step is gx row n) */
                    for (int64_t r = 0; r < nr; r++)
                        hr[r] = x + (i0 + r) * I;
                    for (int64_t q0 = 0; q0 < nq; q0 += rnn ? 4 : 2)
                        FN(project_blocks)(rnn, (int)G, I, H, win, ubp + q0,
                                           rf_min64(rnn ? 4 : 2, nq - q0), hr, act + i0, nr,
                                           gx, out, out2);
                    /* the recurrent product, then the cell update */
                    for (int64_t r = 0; r < nr; r++)
                        hr[r] = hc + (i0 + r) * Pp;
                    const int64_t ws = P * (rnn ? 1 : Gm) * VL;
                    FN(step_product)(rnn, Gm, rnn ? RF_QRNN : 2, P, wmain + ubp * ws, ws, nq, hr,
                                     nr, outg);
                    for (int64_t half = 0; half < nq; half++)
                        FN(epilogue)(&ep, 0, hc, hx, act + i0, nr, (ubp + half) * VL, outg[half],
                                     NULL);
                }
            }
        }
        /* the input projection of every valid step, hoisted out of the time loop; the
           thread projects the unit blocks it will own in the loop, so no barrier (the
           RNN's single-gate blocks four at a time, gate blocks in pairs) */
        const int64_t pstep = rnn ? 4 : 2;
        for (int64_t ub = ub0; !hoist_gemm && !one_step && !fuse_x && ub < ub1; ub += pstep) {
            int64_t rows[RF_ROWS_MAX];
            int64_t m = 0;
            while (m < T * N) {
                const int64_t nr = rf_next_rows(T, N, lens, &m, rows, RF_ROWS_MAX);
                for (int64_t r = 0; r < nr; r++)
                    hr[r] = x + rows[r] * I;
                FN(project_blocks)(rnn, (int)G, I, H, win, ub, rf_min64(pstep, ub1 - ub), hr,
                                   rows, nr, gx, out, out2);
            }
        }
        if (!prepacked) {
            if (!hoist_gemm && !fuse_x)
                rf_barrier_wait(&bar, &sense);   /* every projection has read W_ih */
            FN(pack_forward_blocks)(a, ub0, ub1, pb0, pb1, NULL, wmain);
        }
        if (bpar) {
            rf_barrier_wait(&bar, &sense);
            rf_split(N, &n0, &n1);
            ub0 = 0, ub1 = nub, pb0 = 0, pb1 = npb;
        }
        for (int64_t s = 0; s < (one_step ? 0 : T); s++) {
            int64_t na = 0;
            for (int64_t n = n0; n < n1; n++)
                if (!lens || s < lens[n])
                    act[na++] = n;
            /* 1. gates that read h_{t-1}, fused with the cell update. Unit blocks go
               in pairs, so that single rows still get enough independent FMA chains;
               with at least one full row tile (LSTM/GRU), in groups of qg, so that
               the rows left over after the full tiles run against the whole group */
            const int64_t rem = na % RF_ROWS_MAX, rem_tiled = FN(tiled_rows)(Gm, rem);
            const int64_t step_q = rnn ? RF_QRNN
                : (Gm >= 3 && rem_tiled > 0 && rem_tiled != rem) ? qg : 2;
            /* the groups in alternating order (rf_sweep): a slice a little larger than
               L2 then misses only by what overflows it */
            const int64_t ngroups = (ub1 - ub0 + step_q - 1) / step_q;
            for (int64_t gi = 0; gi < ngroups; gi++) {
                const int64_t ubp = ub0 + rf_sweep(gi, 0, ngroups, s) * step_q;
                const int64_t nq = rf_min64(step_q, ub1 - ubp);
                for (int64_t i0 = 0; i0 < na; i0 += RF_ROWS_MAX) {
                    const int64_t nr = rf_min64(RF_ROWS_MAX, na - i0);
                    for (int64_t r = 0; r < nr; r++)
                        hr[r] = hc + act[i0 + r] * Pp;
                    /* this tile's gx rows, while its product runs: they are read in
                       strides of the row length (4 to 8 lines per row, one row per
                       sequence), which the hardware prefetchers do not follow; in the
                       large hoisted problems gx is far larger than the caches (measured:
                       S1 -1 to -3%, T5 inference -5%; training, whose epilogue also
                       stores the gates there, and small problems, whose gx is cached,
                       gained nothing) */
                    for (int64_t r = 0; hoist_gemm && !training && !gx_blocked && r < nr; r++) {
                        const int64_t n = act[i0 + r];
                        const REAL *g = gx + (rf_step_time(lens, T, n, s, reverse) * N + n) * GH
                                        + ubp * VL;
                        for (int q = 0; q < Gm; q++) {
                            for (int64_t j = 0; j < nq * VL; j += 64 / (int64_t)sizeof(REAL))
                                __builtin_prefetch(g + q * H + j, 0, 3);
                            __builtin_prefetch(g + q * H + nq * VL - 1, 0, 3);
                        }
                    }
                    if (fuse_x) {
                        const REAL *xr[RF_ROWS_MAX];
                        for (int64_t r = 0; r < nr; r++) {
                            const int64_t n = act[i0 + r];
                            xr[r] = x + (rf_step_time(lens, T, n, s, reverse) * N + n) * I;
                        }
                        const int64_t wsx = I * (rnn ? 1 : G) * VL;
                        FN(step_product)(rnn, (int)G, step_q, I, win + ubp * wsx, wsx, nq, xr, nr,
                                         outx);
                    }
                    const int64_t ws = P * (rnn ? 1 : Gm) * VL;
                    FN(step_product)(rnn, Gm, step_q, P, wmain + ubp * ws, ws, nq, hr, nr, outg);
                    for (int64_t half = 0; half < nq; half++) {
                        const int64_t u0 = (ubp + half) * VL;
                        FN(epilogue)(&ep, s, hc, hx, act + i0, nr, u0, outg[half],
                                     fuse_x ? outx[half] : NULL);
                    }
                }
            }
            /* 2. GRU reset-before: n = tanh(gx_n + W_hn (r*h)) needs all of r*h */
            if (gru_before) {
                if (!bpar)
                    rf_barrier_wait(&bar, &sense);
                for (int64_t ui = ub0; ui < ub1; ui++) {
                    const int64_t ub = rf_sweep(ui, ub0, ub1, s);
                    const int64_t u0 = ub * VL, nu = rf_min64(VL, H - u0);
                    const REAL *wp = wcand + ub * H * VL;
                    for (int64_t i0 = 0; i0 < na; i0 += RF_ROWS_MAX) {
                        const int64_t nr = rf_min64(RF_ROWS_MAX, na - i0);
                        for (int64_t r = 0; r < nr; r++)
                            hr[r] = mbuf + act[i0 + r] * Hp;
                        FN(gate_product)(1, H, wp, hr, nr, out);
                        for (int64_t r = 0; r < nr; r++) {
                            const int64_t n = act[i0 + r];
                            const int64_t row = rf_step_time(lens, T, n, s, reverse) * N + n;
                            REAL *g = gx + row * GH;
                            const VEC nn = FN(vtanh)(FN(vload_n)(g + 2 * H + u0, nu) + FN(vload)(bsum + 2 * Hp + u0) + out[r][0]);
                            const VEC z = FN(vload_n)(g + H + u0, nu);
                            const VEC h = ((REAL)1 - z) * nn + z * FN(vload)(hc + n * Pp + u0);
                            FN(vstore_n)(g + 2 * H + u0, nn, nu);
                            if (training)
                                FN(vstore_n)(ws_hn + row * H + u0, FN(vload)(mbuf + n * Hp + u0), nu);
                            FN(vstore)(hx + n * Pp + u0, h);
                            FN(vstore_n)(y + row * P + u0, h, nu);
                        }
                    }
                }
            }
            /* 3. LSTM projection: h = W_hr m needs all of m */
            if (proj) {
                if (!bpar)
                    rf_barrier_wait(&bar, &sense);
                for (int64_t pi = pb0; pi < pb1; pi++) {
                    const int64_t pb = rf_sweep(pi, pb0, pb1, s);
                    const int64_t p0 = pb * VL, np_ = rf_min64(VL, P - p0);
                    const REAL *wp = wproj + pb * H * VL;
                    for (int64_t i0 = 0; i0 < na; i0 += RF_ROWS_MAX) {
                        const int64_t nr = rf_min64(RF_ROWS_MAX, na - i0);
                        for (int64_t r = 0; r < nr; r++)
                            hr[r] = mbuf + act[i0 + r] * Hp;
                        FN(gate_product)(1, H, wp, hr, nr, out);
                        for (int64_t r = 0; r < nr; r++) {
                            const int64_t n = act[i0 + r];
                            const int64_t row = rf_step_time(lens, T, n, s, reverse) * N + n;
                            FN(vstore)(hx + n * Pp + p0, out[r][0]);
                            FN(vstore_n)(y + row * P + p0, out[r][0], np_);
                        }
                    }
                }
            }
            if (!bpar)
                rf_barrier_wait(&bar, &sense);
            REAL *tmp = hc;
            hc = hx;
            hx = tmp;
        }
        rf_fpmode_leave(fpm);
    }

    for (int64_t n = 0; n < N; n++) {
        const int64_t len = lens ? lens[n] : T;
        REAL *hn = (REAL *)a->h_n + n * P;
        if (len == 0)
            memcpy(hn, (const REAL *)a->h0 + n * P, (size_t)P * sizeof(REAL));
        else
            memcpy(hn, y + ((reverse ? 0 : len - 1) * N + n) * P, (size_t)P * sizeof(REAL));
        for (int64_t t = len; t < T; t++)
            memset(y + (t * N + n) * P, 0, (size_t)P * sizeof(REAL));
        if (lstm)
            memcpy((REAL *)a->c_n + n * H, cst + n * Hp, (size_t)H * sizeof(REAL));
    }
    return RF_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Backward (BPTT)                                                                        */

static int FN(backward)(const rf_bwd_args *a)
{
    const int cell = a->cell, reverse = a->reverse;
    const int lstm = cell == RF_LSTM, gru = cell == RF_GRU;
    const int gru_after = gru && a->reset_after, gru_before = gru && !a->reset_after;
    const int64_t T = a->T, N = a->N, I = a->isz, H = a->H, P = a->P;
    const int64_t G = rf_gate_count(cell), GH = G * H, M = T * N;
    const int proj = lstm && a->w_hr != NULL;
    const int64_t *lens = a->lengths;
    const REAL *x = a->x, *h0 = a->h0, *c0 = a->c0, *w_ih = a->w_ih, *w_hh = a->w_hh, *w_hr = a->w_hr;
    const REAL *gates = a->gates, *hs = a->hs, *ws_c = a->ws_c, *ws_hn = a->ws_hn, *dy = a->dy;
    REAL *dgx = a->dgx, *dhtot = a->dhtot;
    /* gradient wrt the recurrent-side pre-activations; equal to dgx except GRU reset_after */
    REAL *dgr = gru_after ? (REAL *)a->dgh : dgx;
    const int nthreads = a->nthreads;
    /* rows of W_hh whose product feeds dh_{t-1} directly (GRU reset-before routes the
       candidate's gradient through r*h instead) */
    const int64_t GHrec = gru_before ? 2 * H : GH;

    const int64_t Hp = rf_round_up(H, VL), Pp = rf_round_up(P, VL);
    const int64_t nub = Hp / VL, npb = Pp / VL;
    /* products go four unit blocks at a time: block counts padded to super-blocks of 4,
       and threads own whole super-blocks, so every output's order is fixed by the shape */
    const int64_t nsu = (nub + 3) / 4, nsp = (npb + 3) / 4;
    const int bpar = rf_batch_parallel(nthreads, N, (double)(GHrec + (proj ? H : 0) + (gru_before ? H : 0)) * P * sizeof(REAL));
    const int nt = rf_threads_for(nthreads, (double)4 * N * GH * P, 3.0e4,
                                  bpar ? N : (nsu < nsp ? nsu : nsp));
    const size_t n_state = (size_t)(2 * N * Pp + 3 * N * Hp + rf_round_up(N * GH, VL));  /* packs stay aligned */
    const size_t n_t3 = (size_t)(nsp * 4 * GHrec * VL);
    const size_t n_tr = proj ? (size_t)(nsu * 4 * P * VL) : 0;
    const size_t n_tn = gru_before ? (size_t)(nsu * 4 * H * VL) : 0;
    REAL *scratch = rf_scratch(RF_SLOT_STATE, n_state * sizeof(REAL));
    int64_t *act_all = rf_scratch(RF_SLOT_ACTIVE, (size_t)(nt * (N > 0 ? N : 1)) * sizeof(int64_t));
    /* the forward's pack of the same weights is about this size: reuse its buffer,
       unless it is much larger (a different problem ran last on this thread) */
    rf_scratch_trim(RF_SLOT_PACK, (n_t3 + n_tr + n_tn) * sizeof(REAL) + RF_SCRATCH_KEEP);
    REAL *packbuf = rf_scratch(RF_SLOT_PACK, (n_t3 + n_tr + n_tn) * sizeof(REAL));
    if (scratch == NULL || act_all == NULL || packbuf == NULL)
        return RF_ENOMEM;
    memset(scratch, 0, n_state * sizeof(REAL));
    FN(zero_padded)(dgx, T, N, GH, lens);
    FN(zero_padded)(gru_after ? dgr : NULL, T, N, GH, lens);
    FN(zero_padded)(dhtot, T, N, P, lens);
    REAL *dhA = scratch, *dhB = dhA + N * Pp, *dc = dhB + N * Pp, *dm = dc + N * Hp;
    REAL *drh = dm + N * Hp, *gfirst = drh + N * Hp;
    REAL *wt3 = packbuf, *wtr = wt3 + n_t3, *wtn = wtr + n_tr;
    for (int64_t n = 0; n < N; n++) {
        if (a->dh_n) {
            memcpy(dhA + n * Pp, (const REAL *)a->dh_n + n * P, (size_t)P * sizeof(REAL));
            memcpy(dhB + n * Pp, (const REAL *)a->dh_n + n * P, (size_t)P * sizeof(REAL));
        }
        if (lstm && a->dc_n)
            memcpy(dc + n * Hp, (const REAL *)a->dc_n + n * H, (size_t)H * sizeof(REAL));
    }

    rf_barrier bar;
    rf_barrier_init(&bar, nt);
#pragma omp parallel num_threads(nt)
    {
        const rf_fpmode fpm = rf_fpmode_enter();
        int64_t su0, su1, sp0, sp1, n0 = 0, n1 = N;
        rf_split(nsu, &su0, &su1);
        rf_split(nsp, &sp0, &sp1);
        FN(pack_cols)(w_hh, P, 0, GHrec, P, sp0 * 4, sp1 * 4, wt3);
        if (proj)
            FN(pack_cols)(w_hr, H, 0, P, H, su0 * 4, su1 * 4, wtr);
        if (gru_before)
            FN(pack_cols)(w_hh, P, 2 * H, H, H, su0 * 4, su1 * 4, wtn);
        /* each thread reads only the blocks it packed itself: no barrier needed here;
           by sequences, it reads all blocks: one barrier, then none in the time loop */
#ifdef _OPENMP
        int64_t *act = act_all + (int64_t)omp_get_thread_num() * N;
#else
        int64_t *act = act_all;
#endif
        int sense = 0;
        if (bpar) {
            rf_barrier_wait(&bar, &sense);
            rf_split(N, &n0, &n1);
            su0 = 0, su1 = nsu, sp0 = 0, sp1 = nsp;
        }
        const int64_t ub0 = su0 * 4, ub1 = rf_min64(su1 * 4, nub);
        const int64_t pb0 = sp0 * 4, pb1 = rf_min64(sp1 * 4, npb);
        REAL *dhc = dhA, *dhx = dhB;
        const REAL *hr[RF_ROWS_MAX];
        VEC out[RF_ROWS_MAX][4];
        const int64_t p_lo = rf_min64(pb0 * VL, P), p_hi = rf_min64(pb1 * VL, P);
        for (int64_t s = T - 1; s >= 0; s--) {
            int64_t na = 0;
            for (int64_t n = n0; n < n1; n++)
                if (!lens || s < lens[n])
                    act[na++] = n;
            /* 1. dL/dh_t = carried + dy_t (this thread's P-blocks) */
            for (int64_t ia = 0; ia < na; ia++) {
                const int64_t n = act[ia];
                const int64_t row = rf_step_time(lens, T, n, s, reverse) * N + n;
                for (int64_t p = p_lo; p < p_hi; p += VL) {
                    const int64_t np_ = rf_min64(VL, P - p);
                    const VEC d = FN(vload)(dhc + n * Pp + p) + FN(vload_n)(dy + row * P + p, np_);
                    FN(vstore)(dhc + n * Pp + p, d);
                    if (proj)
                        FN(vstore_n)(dhtot + row * P + p, d, np_);
                }
            }
            if (proj) { /* dm = W_hr^T dh needs all of dh */
                if (!bpar)
                    rf_barrier_wait(&bar, &sense);
                for (int64_t sui = su0; sui < su1; sui++) {
                    const int64_t su = rf_sweep(sui, su0, su1, s);
                    for (int64_t i0 = 0; i0 < na; i0 += RF_ROWS_MAX) {
                        const int64_t nr = rf_min64(RF_ROWS_MAX, na - i0);
                        for (int64_t r = 0; r < nr; r++)
                            hr[r] = dhc + act[i0 + r] * Pp;
                        FN(wide_product)(P, wtr + su * 4 * P * VL, P * VL, hr, nr, out);
                        for (int64_t q = 0; q < 4 && su * 4 + q < nub; q++)
                            for (int64_t r = 0; r < nr; r++)
                                FN(vstore)(dm + act[i0 + r] * Hp + (su * 4 + q) * VL, out[r][q]);
                    }
                }
            }
            /* 2. gate gradients of this thread's unit blocks */
            for (int64_t ia = 0; ia < na; ia++) {
                const int64_t n = act[ia];
                const int64_t t = rf_step_time(lens, T, n, s, reverse), tp = reverse ? t + 1 : t - 1;
                const int64_t row = t * N + n;
                const REAL *g = gates + row * GH;
                const REAL *hprev = s == 0 ? h0 + n * P : hs + (tp * N + n) * P;
                const REAL *dhv = proj ? dm + n * Hp : dhc + n * Pp;
                REAL *dgo = dgx + row * GH;
                for (int64_t ub = ub0; ub < ub1; ub++) {
                    const int64_t u0 = ub * VL, nu = rf_min64(VL, H - u0);
                    const VEC dh = FN(vload)(dhv + u0);
                    if (cell == RF_RNN_TANH) {
                        const VEC h = FN(vload_n)(hs + row * P + u0, nu);
                        FN(vstore_n)(dgo + u0, dh * ((REAL)1 - h * h), nu);
                    } else if (cell == RF_RNN_RELU) {
                        const VEC h = FN(vload_n)(hs + row * P + u0, nu);
                        FN(vstore_n)(dgo + u0, FN(vselect)(h > 0, dh, FN(vsplat)(0)), nu);
                    } else if (lstm) {
                        const VEC i = FN(vload_n)(g + u0, nu), f = FN(vload_n)(g + H + u0, nu);
                        const VEC gg = FN(vload_n)(g + 2 * H + u0, nu), o = FN(vload_n)(g + 3 * H + u0, nu);
                        const VEC tc = FN(vtanh)(FN(vload_n)(ws_c + row * H + u0, nu));
                        const VEC cp = s == 0 ? (c0 ? FN(vload_n)(c0 + n * H + u0, nu) : FN(vsplat)(0))
                                              : FN(vload_n)(ws_c + (tp * N + n) * H + u0, nu);
                        const VEC dct = FN(vload)(dc + n * Hp + u0) + dh * o * ((REAL)1 - tc * tc);
                        FN(vstore)(dc + n * Hp + u0, dct * f);
                        FN(vstore_n)(dgo + u0, dct * gg * i * ((REAL)1 - i), nu);
                        FN(vstore_n)(dgo + H + u0, dct * cp * f * ((REAL)1 - f), nu);
                        FN(vstore_n)(dgo + 2 * H + u0, dct * i * ((REAL)1 - gg * gg), nu);
                        FN(vstore_n)(dgo + 3 * H + u0, dh * tc * o * ((REAL)1 - o), nu);
                    } else {
                        const VEC r_ = FN(vload_n)(g + u0, nu), z = FN(vload_n)(g + H + u0, nu);
                        const VEC nn = FN(vload_n)(g + 2 * H + u0, nu);
                        const VEC hp = FN(vload_n)(hprev + u0, nu);
                        const VEC dan = dh * ((REAL)1 - z) * ((REAL)1 - nn * nn);
                        const VEC daz = dh * (hp - nn) * z * ((REAL)1 - z);
                        FN(vstore_n)(dgo + H + u0, daz, nu);
                        FN(vstore_n)(dgo + 2 * H + u0, dan, nu);
                        if (gru_after) {
                            const VEC dar = dan * FN(vload_n)(ws_hn + row * H + u0, nu) * r_ * ((REAL)1 - r_);
                            REAL *dgh = dgr + row * GH;
                            FN(vstore_n)(dgo + u0, dar, nu);
                            FN(vstore_n)(dgh + u0, dar, nu);
                            FN(vstore_n)(dgh + H + u0, daz, nu);
                            FN(vstore_n)(dgh + 2 * H + u0, dan * r_, nu);
                        }
                    }
                }
            }
            if (gru_before) { /* d(r*h) = W_hn^T dan needs all of dan */
                if (!bpar)
                    rf_barrier_wait(&bar, &sense);
                for (int64_t sui = su0; sui < su1; sui++) {
                    const int64_t su = rf_sweep(sui, su0, su1, s);
                    for (int64_t i0 = 0; i0 < na; i0 += RF_ROWS_MAX) {
                        const int64_t nr = rf_min64(RF_ROWS_MAX, na - i0);
                        for (int64_t r = 0; r < nr; r++) {
                            const int64_t n = act[i0 + r];
                            hr[r] = dgx + (rf_step_time(lens, T, n, s, reverse) * N + n) * GH + 2 * H;
                        }
                        FN(wide_product)(H, wtn + su * 4 * H * VL, H * VL, hr, nr, out);
                      for (int64_t q = 0; q < 4 && su * 4 + q < nub; q++) {
                        const int64_t u0 = (su * 4 + q) * VL, nu = rf_min64(VL, H - u0);
                        for (int64_t r = 0; r < nr; r++) {
                            const int64_t n = act[i0 + r];
                            const int64_t t = rf_step_time(lens, T, n, s, reverse), tp = reverse ? t + 1 : t - 1;
                            const int64_t row = t * N + n;
                            const REAL *hprev = s == 0 ? h0 + n * P : hs + (tp * N + n) * P;
                            const VEC r_ = FN(vload_n)(gates + row * GH + u0, nu);
                            FN(vstore)(drh + n * Hp + u0, out[r][q]);
                            FN(vstore_n)(dgx + row * GH + u0,
                                         out[r][q] * FN(vload_n)(hprev + u0, nu) * r_ * ((REAL)1 - r_), nu);
                        }
                      }
                    }
                }
            }
            if (!bpar)
                rf_barrier_wait(&bar, &sense);
            /* 3. dL/dh_{t-1} = W_hh^T dgr (+ the direct GRU paths), this thread's P-blocks
               in alternating order (rf_sweep) */
            for (int64_t spi = sp0; spi < sp1; spi++) {
                const int64_t sp = rf_sweep(spi, sp0, sp1, s);
                for (int64_t i0 = 0; i0 < na; i0 += RF_ROWS_MAX) {
                    const int64_t nr = rf_min64(RF_ROWS_MAX, na - i0);
                    for (int64_t r = 0; r < nr; r++) {
                        const int64_t n = act[i0 + r];
                        hr[r] = dgr + (rf_step_time(lens, T, n, s, reverse) * N + n) * GH;
                    }
                    FN(wide_product)(GHrec, wt3 + sp * 4 * GHrec * VL, GHrec * VL, hr, nr, out);
                  for (int64_t q = 0; q < 4 && sp * 4 + q < npb; q++) {
                    const int64_t p0 = (sp * 4 + q) * VL, np_ = rf_min64(VL, P - p0);
                    for (int64_t r = 0; r < nr; r++) {
                        const int64_t n = act[i0 + r];
                        VEC d = out[r][q];
                        if (gru) {
                            const REAL *g = gates + (hr[r] - dgr);
                            d += FN(vload)(dhc + n * Pp + p0) * FN(vload_n)(g + H + p0, np_);
                            if (gru_before)
                                d += FN(vload)(drh + n * Hp + p0) * FN(vload_n)(g + p0, np_);
                        }
                        FN(vstore)(dhx + n * Pp + p0, d);
                    }
                  }
                }
            }
            if (!bpar)
                rf_barrier_wait(&bar, &sense);
            REAL *tmp = dhc;
            dhc = dhx;
            dhx = tmp;
        }
        rf_fpmode_leave(fpm);
    }
    {
        const REAL *dh_final = (T % 2 == 0) ? dhA : dhB;
        for (int64_t n = 0; n < N; n++) {
            memcpy((REAL *)a->dh0 + n * P, dh_final + n * Pp, (size_t)P * sizeof(REAL));
            if (lstm && a->dc0)
                memcpy((REAL *)a->dc0 + n * H, dc + n * Hp, (size_t)H * sizeof(REAL));
        }
    }

    /* hoisted products over all steps; the transposed weight packs of the time loop are
       no longer needed, and their buffer holds the GEMMs' packed B blocks */
    const size_t n_pack = n_t3 + n_tr + n_tn;
#define FN_GEMM(...) FN(gemm_buf)(__VA_ARGS__, packbuf, n_pack)
    int st = RF_OK;
    st |= FN_GEMM(0, 0, M, I, GH, dgx, GH, w_ih, I, 0, a->dx, I, nthreads);
    st |= FN_GEMM(1, 0, GH, I, M, dgx, GH, x, I, 0, a->dw_ih, I, nthreads);
    /* dW_hh = sum_t dgr_t^T h_prev(t): each sequence's first step pairs with h0, the rest
       with hs shifted by one step (padded hs rows are zero, so they add nothing) */
    for (int64_t n = 0; n < N; n++) {
        const int64_t len = lens ? lens[n] : T;
        if (len == 0)
            memset(gfirst + n * GH, 0, (size_t)GH * sizeof(REAL));
        else
            memcpy(gfirst + n * GH, dgr + ((reverse ? len - 1 : 0) * N + n) * GH, (size_t)GH * sizeof(REAL));
    }
    st |= FN_GEMM(1, 0, GHrec, P, N, gfirst, GH, h0, P, 0, a->dw_hh, P, nthreads);
    if (T > 1) {
        if (!reverse)
            st |= FN_GEMM(1, 0, GHrec, P, (T - 1) * N, dgr + N * GH, GH, hs, P, 1, a->dw_hh, P, nthreads);
        else
            st |= FN_GEMM(1, 0, GHrec, P, (T - 1) * N, dgr, GH, hs + N * P, P, 1, a->dw_hh, P, nthreads);
    }
    if (gru_before)
        st |= FN_GEMM(1, 0, H, P, M, dgr + 2 * H, GH, ws_hn, H, 0, (REAL *)a->dw_hh + 2 * H * P, P, nthreads);
    if (proj)
        st |= FN_GEMM(1, 0, P, H, M, dhtot, P, a->ws_m, H, 0, a->dw_hr, H, nthreads);
#undef FN_GEMM
    if (a->has_bias) {
        FN(colsum)(M, GH, dgx, GH, a->db_ih, nthreads);
        FN(colsum)(M, GH, dgr, GH, a->db_hh, nthreads);
    }
    return st ? RF_ENOMEM : RF_OK;
}

#undef VEC
#undef IVEC
#undef RF_EXP_LO
#undef RF_EXP_HI
#undef RF_MAGIC
#undef RF_LN2_HI
#undef RF_LN2_LO
#undef RF_MANT
#undef RF_BIAS
#undef NB1
#undef C1
#undef C2
#undef C3
#undef C4
#undef NB2
#undef NB3
#undef NB3W
#undef RF_TILE3W
#undef RF_TILEK3W
#undef NB4
#undef RF_TILE
#undef RF_TILEK
#undef RF_TILEK_
#undef RF_TILEK_NAME
#undef RF_TILEK_NAME_
#undef RF_KSLICE
#undef RF_WIDE
#undef RF_WIDEQ
#undef RF_WIDEQ_
#undef RF_WIDEQ_SET
#undef RF_WQNAME
#undef RF_WQNAME_
#undef RF_WIDE_NAME
#undef RF_WIDE_NAME_
#undef RF_WIDE_
#undef RF_TILE2
#undef RF_TILE2_
#undef RF_TILE_
#undef RF_TILE_NAME
#undef RF_TILE_NAME_
#undef RF_ROWS_MAX
#undef VL
#undef NR
#undef MR
#undef KC
#undef MC
#undef NCB
#undef FN
#undef RF_CAT
#undef RF_CAT_
