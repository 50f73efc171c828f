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
#define KC 384
#define MC (MR * 8)
#define NCB (NR * 64)

static inline VEC FN(vload)(const REAL *p) { VEC v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(vstore)(REAL *p, VEC v) { memcpy(p, &v, sizeof v); }

static inline REAL FN(sigmoid)(REAL x) { return (REAL)1 / ((REAL)1 + RF_EXP(-x)); }

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
    for (int64_t ip = 0; ip < mc; ip += MR) {
        REAL *dst = buf + ip * kc;
        const int64_t mr = rf_min64(MR, mc - ip);
        if (ta) {            /* A stored (k, m): rows of the panel are contiguous */
            for (int64_t k = 0; k < kc; k++) {
                const REAL *src = A + (p0 + k) * lda + i0 + ip;
                for (int64_t i = 0; i < mr; i++)
                    dst[k * MR + i] = src[i];
                for (int64_t i = mr; i < MR; i++)
                    dst[k * MR + i] = 0;
            }
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
    if (!tb) {               /* B stored (k, n) */
        for (int64_t k = 0; k < kc; k++) {
            memcpy(dst + k * NR, B + (p0 + k) * ldb + j0, (size_t)nr * sizeof(REAL));
            for (int64_t j = nr; j < NR; j++)
                dst[k * NR + j] = 0;
        }
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

static void FN(ukernel)(int64_t kc, const REAL *restrict ap, const REAL *restrict bp,
                        REAL *restrict c, int64_t ldc, int64_t mr, int64_t nr, int accumulate)
{
    VEC acc[MR][2];
    for (int i = 0; i < MR; i++)
        acc[i][0] = acc[i][1] = (VEC){0};
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
            REAL *row = c + i * ldc;
            if (accumulate) {
                FN(vstore)(row, FN(vload)(row) + acc[i][0]);
                FN(vstore)(row + VL, FN(vload)(row + VL) + acc[i][1]);
            } else {
                FN(vstore)(row, acc[i][0]);
                FN(vstore)(row + VL, acc[i][1]);
            }
        }
        return;
    }
    REAL tile[MR][NR];
    memcpy(tile, acc, sizeof tile);
    for (int64_t i = 0; i < mr; i++)
        for (int64_t j = 0; j < nr; j++)
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i][j] : tile[i][j];
}

/* BLIS loop order: for each (NC columns, KC depth) block, the team packs op(B) once
   into a shared buffer, then splits the MC-row blocks of op(A) among threads. Each C
   element sums its k blocks in order, so results do not depend on the thread count. */
static int FN(gemm)(int ta, int tb, int64_t m, int64_t n, int64_t k, const REAL *A,
                    int64_t lda, const REAL *B, int64_t ldb, int beta_one, REAL *C,
                    int64_t ldc, int nthreads)
{
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
    REAL *bbuf = rf_aligned_alloc((size_t)nc_max * KC * sizeof(REAL));
    if (bbuf == NULL)
        return RF_ENOMEM;
    int failed = 0;
#pragma omp parallel num_threads(nt) reduction(| : failed)
    {
        REAL *abuf = rf_aligned_alloc((size_t)MC * KC * sizeof(REAL));
        failed = abuf == NULL;
        for (int64_t j0 = 0; j0 < n; j0 += NCB) {
            const int64_t nc = rf_min64(NCB, n - j0);
            const int64_t npanels = (nc + NR - 1) / NR;
            for (int64_t p0 = 0; p0 < k; p0 += KC) {
                const int64_t kc = rf_min64(KC, k - p0);
#pragma omp for schedule(static)
                for (int64_t jp = 0; jp < npanels; jp++)
                    FN(pack_b_panel)(tb, B, ldb, p0, kc, j0 + jp * NR,
                                     rf_min64(NR, nc - jp * NR), bbuf + jp * NR * kc);
#pragma omp for schedule(static)
                for (int64_t ib = 0; ib < mblocks; ib++) {
                    if (abuf == NULL)
                        continue;
                    const int64_t i0 = ib * MC, mc = rf_min64(MC, m - i0);
                    FN(pack_a)(ta, A, lda, i0, mc, p0, kc, abuf);
                    for (int64_t jp = 0; jp < npanels; jp++)
                        for (int64_t ip = 0; ip < mc; ip += MR)
                            FN(ukernel)(kc, abuf + ip * kc, bbuf + jp * NR * kc,
                                        C + (i0 + ip) * ldc + j0 + jp * NR, ldc,
                                        rf_min64(MR, mc - ip), rf_min64(NR, nc - jp * NR),
                                        beta_one || p0 > 0);
                }
            }
        }
        free(abuf);
    }
    free(bbuf);
    return failed ? RF_ENOMEM : RF_OK;
}

/* Column sums of a (m, n) row-major matrix into out[n]; fixed row order per column. */
static void FN(colsum)(int64_t m, int64_t n, const REAL *A, int64_t lda, REAL *out, int nthreads)
{
    int nt = rf_threads_for(nthreads, (double)m * n, 2.0e5, (n + 63) / 64);
#pragma omp parallel num_threads(nt)
    {
        int64_t lo, hi;
        rf_split(n, &lo, &hi);
        for (int64_t j = lo; j < hi; j++)
            out[j] = 0;
        for (int64_t i = 0; i < m; i++)
            FN(axpy)(hi - lo, (REAL)1, A + i * lda + lo, out + lo);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Forward                                                                                */

static int FN(forward)(const rf_fwd_args *a)
{
    const int cell = a->cell, training = a->training, reverse = a->reverse;
    const int lstm = cell == RF_LSTM, gru = cell == RF_GRU;
    const int gru_after = gru && a->reset_after, gru_before = gru && !a->reset_after;
    const int64_t T = a->T, N = a->N, I = a->isz, H = a->H, P = a->P;
    const int64_t G = rf_gate_count(cell), GH = G * H;
    const int proj = lstm && a->w_hr != NULL;
    const int64_t *lens = a->lengths;
    const REAL *x = a->x, *w_ih = a->w_ih, *w_hh = a->w_hh, *w_hr = a->w_hr;
    const REAL *b_ih = a->b_ih, *b_hh = a->b_hh;
    REAL *y = a->y, *gx = a->gx;
    REAL *ws_c = a->ws_c, *ws_m = a->ws_m, *ws_hn = a->ws_hn;

    if (N == 0)
        return RF_OK;
    int st = FN(gemm)(0, 1, T * N, GH, I, x, I, w_ih, I, 0, gx, GH, a->nthreads);
    if (st != RF_OK)
        return st;

    /* scratch: merged bias, GRU recurrent n bias, two h buffers, c, m (or r*h) */
    const size_t n_scratch = (size_t)(2 * GH + 2 * N * P + 2 * N * H);
    REAL *scratch = rf_aligned_alloc(n_scratch * sizeof(REAL));
    if (scratch == NULL)
        return RF_ENOMEM;
    REAL *bsum = scratch, *bhn = bsum + GH, *hA = bhn + GH, *hB = hA + N * P;
    REAL *cst = hB + N * P, *mbuf = cst + N * H;
    for (int64_t q = 0; q < GH; q++) {
        const int separate = gru_after && q >= 2 * H;   /* b_hn stays inside r*(...) */
        bsum[q] = b_ih ? b_ih[q] + (separate ? (REAL)0 : b_hh[q]) : (REAL)0;
        bhn[q] = (b_hh && separate) ? b_hh[q] : (REAL)0;
    }
    memcpy(hA, a->h0, (size_t)(N * P) * sizeof(REAL));
    if (lstm) {
        if (a->c0)
            memcpy(cst, a->c0, (size_t)(N * H) * sizeof(REAL));
        else
            memset(cst, 0, (size_t)(N * H) * sizeof(REAL));
    }

    const int nt = rf_threads_for(a->nthreads, (double)2 * N * GH * P, 6.0e4, H / 8 > 0 ? H / 8 : 1);
#pragma omp parallel num_threads(nt)
    {
        int64_t j0, j1, p0, p1;
        rf_split(H, &j0, &j1);
        rf_split(P, &p0, &p1);
        REAL *hc = hA, *hx = hB;
        for (int64_t s = 0; s < T; s++) {
            for (int64_t n = 0; n < N; n++) {
                const int64_t len = lens ? lens[n] : T;
                if (s >= len)
                    continue;
                const int64_t t = reverse ? len - 1 - s : s;
                const int64_t row = t * N + n;
                REAL *g = gx + row * GH;
                const REAL *hp = hc + n * P;
                REAL *yr = y + row * P;
                switch (cell) {
                case RF_RNN_TANH:
                case RF_RNN_RELU:
                    for (int64_t j = j0; j < j1; j++) {
                        const REAL pre = g[j] + bsum[j] + FN(dot)(w_hh + j * P, hp, P);
                        const REAL h = cell == RF_RNN_TANH ? RF_TANH(pre) : (pre < 0 ? (REAL)0 : pre);
                        hx[n * P + j] = h;
                        yr[j] = h;
                    }
                    break;
                case RF_LSTM:
                    for (int64_t j = j0; j < j1; j++) {
                        const REAL ai = g[j] + bsum[j] + FN(dot)(w_hh + j * P, hp, P);
                        const REAL af = g[H + j] + bsum[H + j] + FN(dot)(w_hh + (H + j) * P, hp, P);
                        const REAL ag = g[2 * H + j] + bsum[2 * H + j] + FN(dot)(w_hh + (2 * H + j) * P, hp, P);
                        const REAL ao = g[3 * H + j] + bsum[3 * H + j] + FN(dot)(w_hh + (3 * H + j) * P, hp, P);
                        const REAL i = FN(sigmoid)(ai), f = FN(sigmoid)(af);
                        const REAL gg = RF_TANH(ag), o = FN(sigmoid)(ao);
                        const REAL c = f * cst[n * H + j] + i * gg;
                        const REAL m = o * RF_TANH(c);
                        cst[n * H + j] = c;
                        if (training) {
                            g[j] = i, g[H + j] = f, g[2 * H + j] = gg, g[3 * H + j] = o;
                            ws_c[row * H + j] = c;
                            if (proj)
                                ws_m[row * H + j] = m;
                        }
                        if (proj) {
                            mbuf[n * H + j] = m;
                        } else {
                            hx[n * P + j] = m;
                            yr[j] = m;
                        }
                    }
                    break;
                default: /* GRU */
                    if (gru_after) {
                        for (int64_t j = j0; j < j1; j++) {
                            const REAL ar = g[j] + bsum[j] + FN(dot)(w_hh + j * P, hp, P);
                            const REAL az = g[H + j] + bsum[H + j] + FN(dot)(w_hh + (H + j) * P, hp, P);
                            const REAL hn = FN(dot)(w_hh + (2 * H + j) * P, hp, P) + bhn[2 * H + j];
                            const REAL r = FN(sigmoid)(ar), z = FN(sigmoid)(az);
                            const REAL nn = RF_TANH(g[2 * H + j] + bsum[2 * H + j] + r * hn);
                            const REAL h = ((REAL)1 - z) * nn + z * hp[j];
                            g[j] = r, g[H + j] = z, g[2 * H + j] = nn;
                            if (training)
                                ws_hn[row * H + j] = hn;
                            hx[n * P + j] = h;
                            yr[j] = h;
                        }
                    } else { /* phase A: r, z and r*h */
                        for (int64_t j = j0; j < j1; j++) {
                            const REAL ar = g[j] + bsum[j] + FN(dot)(w_hh + j * P, hp, P);
                            const REAL az = g[H + j] + bsum[H + j] + FN(dot)(w_hh + (H + j) * P, hp, P);
                            const REAL r = FN(sigmoid)(ar);
                            g[j] = r;
                            g[H + j] = FN(sigmoid)(az);
                            mbuf[n * H + j] = r * hp[j];
                        }
                    }
                    break;
                }
            }
            if (gru_before) { /* phase B: n = tanh(gx_n + W_hn (r*h)) needs all of r*h */
#pragma omp barrier
                for (int64_t n = 0; n < N; n++) {
                    const int64_t len = lens ? lens[n] : T;
                    if (s >= len)
                        continue;
                    const int64_t t = reverse ? len - 1 - s : s;
                    const int64_t row = t * N + n;
                    REAL *g = gx + row * GH;
                    const REAL *hp = hc + n * P, *rh = mbuf + n * H;
                    for (int64_t j = j0; j < j1; j++) {
                        const REAL nn = RF_TANH(g[2 * H + j] + bsum[2 * H + j] + FN(dot)(w_hh + (2 * H + j) * P, rh, H));
                        const REAL z = g[H + j];
                        const REAL h = ((REAL)1 - z) * nn + z * hp[j];
                        g[2 * H + j] = nn;
                        if (training)
                            ws_hn[row * H + j] = rh[j];
                        hx[n * P + j] = h;
                        y[row * P + j] = h;
                    }
                }
            }
            if (proj) { /* h = W_hr m needs all of m */
#pragma omp barrier
                for (int64_t n = 0; n < N; n++) {
                    const int64_t len = lens ? lens[n] : T;
                    if (s >= len)
                        continue;
                    const int64_t t = reverse ? len - 1 - s : s;
                    for (int64_t p = p0; p < p1; p++) {
                        const REAL h = FN(dot)(w_hr + p * H, mbuf + n * H, H);
                        hx[n * P + p] = h;
                        y[(t * N + n) * P + p] = h;
                    }
                }
            }
#pragma omp barrier
            REAL *tmp = hc;
            hc = hx;
            hx = tmp;
        }
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
    }
    if (lstm)
        memcpy(a->c_n, cst, (size_t)(N * H) * sizeof(REAL));
    free(scratch);
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

    const size_t n_scratch = (size_t)(2 * N * P + 3 * N * H + N * GH);
    REAL *scratch = rf_aligned_alloc((n_scratch ? n_scratch : 1) * sizeof(REAL));
    if (scratch == NULL)
        return RF_ENOMEM;
    REAL *dhA = scratch, *dhB = dhA + N * P, *dc = dhB + N * P, *dm = dc + N * H;
    REAL *drh = dm + N * H, *gfirst = drh + N * H;
    if (a->dh_n) {
        memcpy(dhA, a->dh_n, (size_t)(N * P) * sizeof(REAL));
        memcpy(dhB, a->dh_n, (size_t)(N * P) * sizeof(REAL));
    } else {
        memset(dhA, 0, (size_t)(2 * N * P) * sizeof(REAL));
    }
    if (lstm) {
        if (a->dc_n)
            memcpy(dc, a->dc_n, (size_t)(N * H) * sizeof(REAL));
        else
            memset(dc, 0, (size_t)(N * H) * sizeof(REAL));
    }

    /* rows of W_hh whose product feeds dh_{t-1} directly (GRU reset-before routes the
       candidate's gradient through r*h instead) */
    const int64_t GHrec = gru_before ? 2 * H : GH;
    const int nt = rf_threads_for(nthreads, (double)4 * N * GH * P, 6.0e4, H / 8 > 0 ? H / 8 : 1);
#pragma omp parallel num_threads(nt)
    {
        int64_t j0, j1, p0, p1;
        rf_split(H, &j0, &j1);
        rf_split(P, &p0, &p1);
        REAL *dhc = dhA, *dhx = dhB;
        for (int64_t s = T - 1; s >= 0; s--) {
            /* phase 1: dL/dh_t = carried + dy_t (this thread's P-slice) */
            for (int64_t n = 0; n < N; n++) {
                const int64_t len = lens ? lens[n] : T;
                if (s >= len)
                    continue;
                const int64_t t = reverse ? len - 1 - s : s;
                const int64_t row = t * N + n;
                for (int64_t p = p0; p < p1; p++) {
                    dhc[n * P + p] += dy[row * P + p];
                    if (proj)
                        dhtot[row * P + p] = dhc[n * P + p];
                }
            }
            if (proj) { /* dm = W_hr^T dh needs all of dh */
#pragma omp barrier
                for (int64_t n = 0; n < N; n++) {
                    const int64_t len = lens ? lens[n] : T;
                    if (s >= len)
                        continue;
                    memset(dm + n * H + j0, 0, (size_t)(j1 - j0) * sizeof(REAL));
                    for (int64_t p = 0; p < P; p++)
                        FN(axpy)(j1 - j0, dhc[n * P + p], w_hr + p * H + j0, dm + n * H + j0);
                }
            }
            /* phase 2: gate gradients of this thread's hidden units */
            for (int64_t n = 0; n < N; n++) {
                const int64_t len = lens ? lens[n] : T;
                if (s >= len)
                    continue;
                const int64_t t = reverse ? len - 1 - s : s;
                const int64_t tp = reverse ? t + 1 : t - 1;   /* previous step, if s > 0 */
                const int64_t row = t * N + n;
                const REAL *g = gates + row * GH;
                const REAL *hprev = s == 0 ? h0 + n * P : hs + (tp * N + n) * P;
                const REAL *dh = proj ? dm + n * H : dhc + n * P;
                REAL *dgo = dgx + row * GH;
                switch (cell) {
                case RF_RNN_TANH:
                    for (int64_t j = j0; j < j1; j++) {
                        const REAL h = hs[row * P + j];
                        dgo[j] = dh[j] * ((REAL)1 - h * h);
                    }
                    break;
                case RF_RNN_RELU:
                    for (int64_t j = j0; j < j1; j++)
                        dgo[j] = hs[row * P + j] > 0 ? dh[j] : (REAL)0;
                    break;
                case RF_LSTM: {
                    const REAL *cprev = s == 0 ? (c0 ? c0 + n * H : NULL) : ws_c + (tp * N + n) * H;
                    for (int64_t j = j0; j < j1; j++) {
                        const REAL i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
                        const REAL tc = RF_TANH(ws_c[row * H + j]);
                        const REAL cp = cprev ? cprev[j] : (REAL)0;
                        const REAL dct = dc[n * H + j] + dh[j] * o * ((REAL)1 - tc * tc);
                        dc[n * H + j] = dct * f;
                        dgo[j] = dct * gg * i * ((REAL)1 - i);
                        dgo[H + j] = dct * cp * f * ((REAL)1 - f);
                        dgo[2 * H + j] = dct * i * ((REAL)1 - gg * gg);
                        dgo[3 * H + j] = dh[j] * tc * o * ((REAL)1 - o);
                    }
                    break;
                }
                default: /* GRU */
                    for (int64_t j = j0; j < j1; j++) {
                        const REAL r = g[j], z = g[H + j], nn = g[2 * H + j];
                        const REAL dan = dh[j] * ((REAL)1 - z) * ((REAL)1 - nn * nn);
                        dgo[H + j] = dh[j] * (hprev[j] - nn) * z * ((REAL)1 - z);
                        dgo[2 * H + j] = dan;
                        if (gru_after) {
                            const REAL hn = ws_hn[row * H + j];
                            REAL *dgh = dgr + row * GH;
                            dgo[j] = dan * hn * r * ((REAL)1 - r);
                            dgh[j] = dgo[j];
                            dgh[H + j] = dgo[H + j];
                            dgh[2 * H + j] = dan * r;
                        }
                    }
                    break;
                }
            }
            if (gru_before) { /* d(r*h) = W_hn^T dan needs all of dan */
#pragma omp barrier
                for (int64_t n = 0; n < N; n++) {
                    const int64_t len = lens ? lens[n] : T;
                    if (s >= len)
                        continue;
                    const int64_t t = reverse ? len - 1 - s : s;
                    const int64_t tp = reverse ? t + 1 : t - 1;
                    const int64_t row = t * N + n;
                    const REAL *hprev = s == 0 ? h0 + n * P : hs + (tp * N + n) * P;
                    REAL *dgo = dgx + row * GH, *d = drh + n * H;
                    memset(d + j0, 0, (size_t)(j1 - j0) * sizeof(REAL));
                    for (int64_t j = 0; j < H; j++)
                        FN(axpy)(j1 - j0, dgo[2 * H + j], w_hh + (2 * H + j) * P + j0, d + j0);
                    for (int64_t j = j0; j < j1; j++) {
                        const REAL r = gates[row * GH + j];
                        dgo[j] = d[j] * hprev[j] * r * ((REAL)1 - r);
                    }
                }
            }
#pragma omp barrier
            /* phase 3: dL/dh_{t-1} = W_hh^T dgr (+ the direct GRU paths), P-slice */
            for (int64_t n = 0; n < N; n++) {
                const int64_t len = lens ? lens[n] : T;
                if (s >= len)
                    continue;
                const int64_t t = reverse ? len - 1 - s : s;
                const int64_t row = t * N + n;
                REAL *dst = dhx + n * P;
                const REAL *dg = dgr + row * GH;
                if (gru) {
                    const REAL *g = gates + row * GH;
                    for (int64_t k = p0; k < p1; k++)
                        dst[k] = dhc[n * P + k] * g[H + k] + (gru_before ? drh[n * H + k] * g[k] : (REAL)0);
                } else {
                    memset(dst + p0, 0, (size_t)(p1 - p0) * sizeof(REAL));
                }
                for (int64_t j = 0; j < GHrec; j++)
                    FN(axpy)(p1 - p0, dg[j], w_hh + j * P + p0, dst + p0);
            }
#pragma omp barrier
            REAL *tmp = dhc;
            dhc = dhx;
            dhx = tmp;
        }
    }
    memcpy(a->dh0, (T % 2 == 0) ? dhA : dhB, (size_t)(N * P) * sizeof(REAL));
    if (lstm && a->dc0)
        memcpy(a->dc0, dc, (size_t)(N * H) * sizeof(REAL));

    /* hoisted products over all steps */
    int st = RF_OK;
    st |= FN(gemm)(0, 0, M, I, GH, dgx, GH, w_ih, I, 0, a->dx, I, nthreads);
    st |= FN(gemm)(1, 0, GH, I, M, dgx, GH, x, I, 0, a->dw_ih, I, nthreads);
    /* dW_hh = sum_t dgr_t^T h_prev(t): each sequence's first step pairs with h0, the rest
       with hs shifted by one step (padded hs rows are zero, so they add nothing) */
    for (int64_t n = 0; n < N; n++) {
        const int64_t len = lens ? lens[n] : T;
        if (len == 0)
            memset(gfirst + n * GH, 0, (size_t)GH * sizeof(REAL));
        else
            memcpy(gfirst + n * GH, dgr + ((reverse ? len - 1 : 0) * N + n) * GH, (size_t)GH * sizeof(REAL));
    }
    st |= FN(gemm)(1, 0, GHrec, P, N, gfirst, GH, h0, P, 0, a->dw_hh, P, nthreads);
    if (T > 1) {
        if (!reverse)
            st |= FN(gemm)(1, 0, GHrec, P, (T - 1) * N, dgr + N * GH, GH, hs, P, 1, a->dw_hh, P, nthreads);
        else
            st |= FN(gemm)(1, 0, GHrec, P, (T - 1) * N, dgr, GH, hs + N * P, P, 1, a->dw_hh, P, nthreads);
    }
    if (gru_before)
        st |= FN(gemm)(1, 0, H, P, M, dgr + 2 * H, GH, ws_hn, H, 0, (REAL *)a->dw_hh + 2 * H * P, P, nthreads);
    if (proj)
        st |= FN(gemm)(1, 0, P, H, M, dhtot, P, a->ws_m, H, 0, a->dw_hr, H, nthreads);
    if (a->has_bias) {
        FN(colsum)(M, GH, dgx, GH, a->db_ih, nthreads);
        FN(colsum)(M, GH, dgr, GH, a->db_hh, nthreads);
    }
    free(scratch);
    return st ? RF_ENOMEM : RF_OK;
}

#undef VEC
#undef VL
#undef NR
#undef MR
#undef KC
#undef MC
#undef NCB
#undef FN
#undef RF_CAT
#undef RF_CAT_
