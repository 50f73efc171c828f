/* The general recurrent path: ONNX activations (with alpha / beta), clip of the gate
 * pre-activations, LSTM coupled input-forget gate and peepholes. Forward and BPTT.
 *
 * Included twice by dispatch.c, with REAL (float or double), GSFX (name suffix) and the
 * math functions G_EXP, G_TANH, G_LOG1P, G_FABS defined. The semantics are those of
 * rnnfast/_reference.py (docs/design.md, "ONNX semantics").
 *
 * Structure: sequences are independent, so each thread owns whole batch rows and runs
 * their complete time loop; nothing is shared between threads inside the loop (no
 * barriers) and every result is bitwise independent of the thread count. The input
 * projection x W_ih^T before the loop and the weight gradients after it are one GEMM
 * each (rf_gemm). Per step and row: h W_hh^T as axpy's over the rows of a transposed
 * copy of W_hh (vectorisable, fixed summation order), then the gate epilogue, one
 * loop per gate block with the activation chosen outside the loop. All buffers are
 * allocated once per call.
 */

#define G_PASTE_(a, b) a##_##b
#define G_PASTE(a, b) G_PASTE_(a, b)
#define GN(name) G_PASTE(name, GSFX)

/* out = act(in) for the ONNX activation `code` (enum rf_act) */
static void GN(g_act)(int code, REAL al, REAL be, const REAL *restrict in, REAL *restrict out,
                    int64_t n)
{
    int64_t j;
    switch (code) {
    case RF_ACT_RELU:
        for (j = 0; j < n; j++) out[j] = in[j] > 0 ? in[j] : (in[j] != in[j] ? in[j] : 0);
        break;
    case RF_ACT_TANH:
        for (j = 0; j < n; j++) out[j] = G_TANH(in[j]);
        break;
    case RF_ACT_SIGMOID:
        for (j = 0; j < n; j++) out[j] = 1 / (1 + G_EXP(-in[j]));
        break;
    case RF_ACT_AFFINE:
        for (j = 0; j < n; j++) out[j] = al * in[j] + be;
        break;
    case RF_ACT_LEAKYRELU:
        for (j = 0; j < n; j++) out[j] = in[j] >= 0 ? in[j] : al * in[j];
        break;
    case RF_ACT_THRESHOLDEDRELU:
        for (j = 0; j < n; j++) out[j] = in[j] > al ? in[j] : 0;
        break;
    case RF_ACT_SCALEDTANH:
        for (j = 0; j < n; j++) out[j] = al * G_TANH(be * in[j]);
        break;
    case RF_ACT_HARDSIGMOID:
        for (j = 0; j < n; j++) {
            const REAL v = al * in[j] + be;
            out[j] = v < 0 ? 0 : (v > 1 ? 1 : v);
        }
        break;
    case RF_ACT_ELU:
        for (j = 0; j < n; j++) out[j] = in[j] >= 0 ? in[j] : al * (G_EXP(in[j]) - 1);
        break;
    case RF_ACT_SOFTSIGN:
        for (j = 0; j < n; j++) out[j] = in[j] / (1 + G_FABS(in[j]));
        break;
    default: /* RF_ACT_SOFTPLUS: log(1 + e^x) without overflow */
        for (j = 0; j < n; j++) {
            const REAL v = in[j];
            out[j] = v > 0 ? v + G_LOG1P(G_EXP(-v)) : G_LOG1P(G_EXP(v));
        }
        break;
    }
}

/* out = act'(in), the one-sided choices of the reference at kinks */
static void GN(g_act_grad)(int code, REAL al, REAL be, const REAL *restrict in,
                         REAL *restrict out, int64_t n)
{
    int64_t j;
    switch (code) {
    case RF_ACT_RELU:
        for (j = 0; j < n; j++) out[j] = in[j] > 0 ? 1 : 0;
        break;
    case RF_ACT_TANH:
        for (j = 0; j < n; j++) {
            const REAL t = G_TANH(in[j]);
            out[j] = 1 - t * t;
        }
        break;
    case RF_ACT_SIGMOID:
        for (j = 0; j < n; j++) {
            const REAL s = 1 / (1 + G_EXP(-in[j]));
            out[j] = s * (1 - s);
        }
        break;
    case RF_ACT_AFFINE:
        for (j = 0; j < n; j++) out[j] = al;
        break;
    case RF_ACT_LEAKYRELU:
        for (j = 0; j < n; j++) out[j] = in[j] > 0 ? 1 : al;
        break;
    case RF_ACT_THRESHOLDEDRELU:
        for (j = 0; j < n; j++) out[j] = in[j] > al ? 1 : 0;
        break;
    case RF_ACT_SCALEDTANH:
        for (j = 0; j < n; j++) {
            const REAL t = G_TANH(be * in[j]);
            out[j] = al * be * (1 - t * t);
        }
        break;
    case RF_ACT_HARDSIGMOID:
        for (j = 0; j < n; j++) {
            const REAL v = al * in[j] + be;
            out[j] = (v > 0 && v < 1) ? al : 0;
        }
        break;
    case RF_ACT_ELU:
        for (j = 0; j < n; j++) out[j] = in[j] > 0 ? 1 : al * G_EXP(in[j] < 0 ? in[j] : 0);
        break;
    case RF_ACT_SOFTSIGN:
        for (j = 0; j < n; j++) {
            const REAL d = 1 + G_FABS(in[j]);
            out[j] = 1 / (d * d);
        }
        break;
    default: /* RF_ACT_SOFTPLUS */
        for (j = 0; j < n; j++) out[j] = 1 / (1 + G_EXP(-in[j]));
        break;
    }
}

/* A = clip(a) (a copy when there is no clip) */
static inline void GN(g_clip)(REAL c, const REAL *restrict a, REAL *restrict A, int64_t n)
{
    int64_t j;
    if (c > 0) {
        for (j = 0; j < n; j++) A[j] = a[j] < -c ? -c : (a[j] > c ? c : a[j]);
    } else {
        for (j = 0; j < n; j++) A[j] = a[j];
    }
}

/* gate = act(clip(a)) */
static inline void GN(g_gate)(const rf_act_spec *sp, REAL c, const REAL *a, REAL *tmp,
                            REAL *out, int64_t n)
{
    GN(g_clip)(c, a, tmp, n);
    GN(g_act)(sp->code, (REAL)sp->alpha, (REAL)sp->beta, tmp, out, n);
}

/* g *= d act(clip(a)) / da: act'(clip(a)) inside [-c, c], 0 outside */
static inline void GN(g_gate_grad_mul)(const rf_act_spec *sp, REAL c, const REAL *a, REAL *tmp,
                                     REAL *tmp2, REAL *restrict g, int64_t n)
{
    int64_t j;
    GN(g_clip)(c, a, tmp, n);
    GN(g_act_grad)(sp->code, (REAL)sp->alpha, (REAL)sp->beta, tmp, tmp2, n);
    if (c > 0) {
        for (j = 0; j < n; j++) g[j] *= (a[j] >= -c && a[j] <= c) ? tmp2[j] : 0;
    } else {
        for (j = 0; j < n; j++) g[j] *= tmp2[j];
    }
}

/* out[0:n] += s * v[0:n] */
static inline void GN(g_axpy)(REAL s, const REAL *restrict v, REAL *restrict out, int64_t n)
{
    int64_t j;
    for (j = 0; j < n; j++) out[j] += s * v[j];
}

/* batch rows per block: each row of W_hh (or W_hh^T) is loaded once per block and step */
#ifndef G_RB
#define G_RB 4
#endif

static int GN(gen_threads)(int nthreads, int64_t N)
{
    int nt = nthreads > 0 ? nthreads : 1;
    if (N < nt) nt = (int)(N > 0 ? N : 1);
    return nt;
}

static inline int GN(gen_tid)(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int GN(gen_forward)(const rf_gen_fwd_args *a)
{
    const int cell = a->cell, lstm = cell == RF_LSTM, gru = cell == RF_GRU;
    const int64_t T = a->T, N = a->N, I = a->isz, H = a->H, P = a->P;
    const int64_t G = lstm ? 4 : (gru ? 3 : 1), GH = G * H, TN = T * N;
    const REAL clip = (REAL)a->clip;
    const REAL *x = a->x, *h0 = a->h0, *c0 = a->c0, *w_hh = a->w_hh, *w_hr = a->w_hr;
    const REAL *b_ih = a->b_ih, *b_hh = a->b_hh, *peep = a->w_peep;
    REAL *y = a->y, *h_n = a->h_n, *c_n = a->c_n, *pre = a->pre;
    REAL *hprev = a->hprev, *cprev = a->cprev, *cs = a->cs, *ms = a->ms, *aux = a->aux;
    const int training = a->training;
    const int64_t nblk = (N + G_RB - 1) / G_RB;
    const int nt = GN(gen_threads)(a->nthreads, nblk);
    const int64_t per = 6 * GH + 2 * P + 8;     /* scratch per row */
    int64_t r, j, k;
    int st = 0;

    if (TN > 0) {
        st = rf_gemm(a->dtype, 0, 1, TN, GH, I, x, I, a->w_ih, I, 0, pre, GH, a->nthreads);
        if (st) return st;
        if (b_ih)
            for (r = 0; r < TN; r++)
                for (j = 0; j < GH; j++) pre[r * GH + j] += b_ih[j];
    }
    REAL *whhT = malloc((size_t)(P * GH + (w_hr ? H * P : 0) + per * G_RB * nt + 1) *
                        sizeof(REAL));
    if (!whhT) return RF_ENOMEM;
    REAL *whrT = whhT + P * GH;
    REAL *scratch = whrT + (w_hr ? H * P : 0);
    for (j = 0; j < GH; j++)
        for (k = 0; k < P; k++) whhT[k * GH + j] = w_hh[j * P + k];
    if (w_hr)
        for (k = 0; k < P; k++)
            for (j = 0; j < H; j++) whrT[j * P + k] = w_hr[k * H + j];
    memset(y, 0, (size_t)(TN * P) * sizeof(REAL));
    if (training) {
        memset(hprev, 0, (size_t)(TN * P) * sizeof(REAL));
        if (lstm) {
            memset(cprev, 0, (size_t)(TN * H) * sizeof(REAL));
            memset(cs, 0, (size_t)(TN * H) * sizeof(REAL));
            if (w_hr) memset(ms, 0, (size_t)(TN * H) * sizeof(REAL));
        }
        if (gru) memset(aux, 0, (size_t)(TN * H) * sizeof(REAL));
    }

    const int64_t ncols = (gru && !a->reset_after) ? 2 * H : GH;
    int64_t blk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (blk = 0; blk < nblk; blk++) {
        REAL *base = scratch + per * G_RB * GN(gen_tid)();
        const int64_t n0 = blk * G_RB, nrow = N - n0 < G_RB ? N - n0 : G_RB;
        int64_t lens[G_RB], maxlen = 0, s, jj, kk, q;
        for (q = 0; q < nrow; q++) {
            const int64_t n = n0 + q;
            lens[q] = a->lengths ? a->lengths[n] : T;
            if (lens[q] > maxlen) maxlen = lens[q];
            memcpy(h_n + n * P, h0 + n * P, (size_t)P * sizeof(REAL));
            if (lstm) memcpy(c_n + n * H, c0 + n * H, (size_t)H * sizeof(REAL));
        }
        for (s = 0; s < maxlen; s++) {
          /* recurrent products of the block's active rows: gh = b_hh + h W_hh^T */
          for (q = 0; q < nrow; q++) {
              REAL *gh = base + q * per;
              if (s < lens[q])
                  for (jj = 0; jj < GH; jj++) gh[jj] = b_hh ? b_hh[jj] : 0;
          }
          for (kk = 0; kk < P; kk++) {
              const REAL *wrow = whhT + kk * GH;
              for (q = 0; q < nrow; q++)
                  if (s < lens[q])
                      GN(g_axpy)(h_n[(n0 + q) * P + kk], wrow, base + q * per, ncols);
          }
          /* the gate epilogue of every active row */
          for (q = 0; q < nrow; q++) {
            if (s >= lens[q]) continue;
            const int64_t n = n0 + q, len = lens[q];
            REAL *gh = base + q * per;
            REAL *gt = gh + GH;        /* activated gates, GH */
            REAL *tmp = gt + GH;       /* clipped pre-activations, GH */
            REAL *mbuf = tmp + GH;     /* m_t or r*h, H */
            REAL *hc = mbuf + H;       /* h(c_t), H */
            REAL *h = h_n + n * P, *c = lstm ? c_n + n * H : NULL;
            const int64_t t = a->reverse ? len - 1 - s : s, row = t * N + n;
            REAL *pa = pre + row * GH;
            if (training) memcpy(hprev + row * P, h, (size_t)P * sizeof(REAL));
            if (!lstm && !gru) {
                for (jj = 0; jj < H; jj++) pa[jj] += gh[jj];
                GN(g_gate)(&a->acts[0], clip, pa, tmp, h, H);
            } else if (lstm) {
                REAL *pi = pa, *pf = pa + H, *pg = pa + 2 * H, *po = pa + 3 * H;
                REAL *gi = gt, *gf = gt + H, *gg = gt + 2 * H, *go = gt + 3 * H;
                for (jj = 0; jj < GH; jj++) pa[jj] += gh[jj];
                if (peep)
                    for (jj = 0; jj < H; jj++) {
                        pi[jj] += peep[jj] * c[jj];
                        pf[jj] += peep[H + jj] * c[jj];
                    }
                GN(g_gate)(&a->acts[0], clip, pi, tmp, gi, H);
                if (a->input_forget)
                    for (jj = 0; jj < H; jj++) gf[jj] = 1 - gi[jj];
                else
                    GN(g_gate)(&a->acts[0], clip, pf, tmp, gf, H);
                GN(g_gate)(&a->acts[1], clip, pg, tmp, gg, H);
                if (training) memcpy(cprev + row * H, c, (size_t)H * sizeof(REAL));
                for (jj = 0; jj < H; jj++) c[jj] = gf[jj] * c[jj] + gi[jj] * gg[jj];
                if (peep)
                    for (jj = 0; jj < H; jj++) po[jj] += peep[2 * H + jj] * c[jj];
                GN(g_gate)(&a->acts[0], clip, po, tmp, go, H);
                GN(g_act)(a->acts[2].code, (REAL)a->acts[2].alpha, (REAL)a->acts[2].beta, c, hc, H);
                for (jj = 0; jj < H; jj++) mbuf[jj] = go[jj] * hc[jj];
                if (training) {
                    memcpy(cs + row * H, c, (size_t)H * sizeof(REAL));
                    if (w_hr) memcpy(ms + row * H, mbuf, (size_t)H * sizeof(REAL));
                }
                if (w_hr) {
                    for (kk = 0; kk < P; kk++) h[kk] = 0;
                    for (jj = 0; jj < H; jj++) GN(g_axpy)(mbuf[jj], whrT + jj * P, h, P);
                } else {
                    memcpy(h, mbuf, (size_t)H * sizeof(REAL));
                }
            } else { /* gru */
                REAL *pr = pa, *pz = pa + H, *pn = pa + 2 * H;
                REAL *gr = gt, *gz = gt + H, *gn = gt + 2 * H;
                for (jj = 0; jj < 2 * H; jj++) pa[jj] += gh[jj];
                GN(g_gate)(&a->acts[0], clip, pr, tmp, gr, H);
                GN(g_gate)(&a->acts[0], clip, pz, tmp, gz, H);
                if (a->reset_after) {
                    const REAL *ghn = gh + 2 * H;            /* W_hn h + b_hn */
                    if (training) memcpy(aux + row * H, ghn, (size_t)H * sizeof(REAL));
                    for (jj = 0; jj < H; jj++) pn[jj] += gr[jj] * ghn[jj];
                } else {
                    REAL *ghn = gh + 2 * H;                  /* b_hn, then + W_hn (r*h) */
                    for (jj = 0; jj < H; jj++) mbuf[jj] = gr[jj] * h[jj];
                    if (training) memcpy(aux + row * H, mbuf, (size_t)H * sizeof(REAL));
                    for (kk = 0; kk < H; kk++) GN(g_axpy)(mbuf[kk], whhT + kk * GH + 2 * H, ghn, H);
                    for (jj = 0; jj < H; jj++) pn[jj] += ghn[jj];
                }
                GN(g_gate)(&a->acts[1], clip, pn, tmp, gn, H);
                for (jj = 0; jj < H; jj++) h[jj] = (1 - gz[jj]) * gn[jj] + gz[jj] * h[jj];
            }
            memcpy(y + row * P, h, (size_t)P * sizeof(REAL));
          }
        }
    }
    free(whhT);
    return RF_OK;
}

static int GN(gen_backward)(const rf_gen_bwd_args *a)
{
    const int cell = a->cell, lstm = cell == RF_LSTM, gru = cell == RF_GRU;
    const int64_t T = a->T, N = a->N, I = a->isz, H = a->H, P = a->P;
    const int64_t G = lstm ? 4 : (gru ? 3 : 1), GH = G * H, TN = T * N;
    const REAL clip = (REAL)a->clip;
    const REAL *w_hh = a->w_hh, *w_hr = a->w_hr, *peep = a->w_peep;
    const REAL *pre = a->pre, *hprev = a->hprev, *cprev = a->cprev, *cs = a->cs;
    const REAL *aux = a->aux, *dy = a->dy, *dh_n = a->dh_n, *dc_n = a->dc_n;
    REAL *dgx = a->dgx, *dgh = a->dgh, *dhtot = a->dhtot;
    REAL *dh0 = a->dh0, *dc0 = a->dc0;
    const int64_t nblk = (N + G_RB - 1) / G_RB;
    const int nt = GN(gen_threads)(a->nthreads, nblk);
    const int64_t per = 8 * GH + 4 * P + 8;     /* scratch per row */
    int64_t r, j;
    int st = 0;

    REAL *scratch = malloc((size_t)(per * G_RB * nt) * sizeof(REAL));
    if (!scratch) return RF_ENOMEM;
    memset(dgx, 0, (size_t)(TN * GH) * sizeof(REAL));
    if (dgh) memset(dgh, 0, (size_t)(TN * GH) * sizeof(REAL));
    if (dhtot) memset(dhtot, 0, (size_t)(TN * P) * sizeof(REAL));

    const int64_t nw = (gru && !a->reset_after) ? 2 * H : GH;   /* rows of W_hh used */
    int64_t blk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1)
    for (blk = 0; blk < nblk; blk++) {
        REAL *base = scratch + per * G_RB * GN(gen_tid)();
        const int64_t n0 = blk * G_RB, nrow = N - n0 < G_RB ? N - n0 : G_RB;
        const REAL *srcs[G_RB];
        int64_t lens[G_RB], maxlen = 0, s, jj, kk, q;
        for (q = 0; q < nrow; q++) {
            const int64_t n = n0 + q;
            REAL *dh = base + q * per, *dc = dh + 3 * P + GH;
            lens[q] = a->lengths ? a->lengths[n] : T;
            if (lens[q] > maxlen) maxlen = lens[q];
            srcs[q] = NULL;
            for (kk = 0; kk < P; kk++) dh[kk] = dh_n ? dh_n[n * P + kk] : 0;
            if (lstm)
                for (jj = 0; jj < H; jj++) dc[jj] = dc_n ? dc_n[n * H + jj] : 0;
        }
        for (s = maxlen - 1; s >= 0; s--) {
          /* the gate gradients of every active row; dhp = the part of dh_{t-1} that
           * does not go through W_hh, srcs[q] = the gradients W_hh multiplies */
          for (q = 0; q < nrow; q++) {
            if (s >= lens[q]) continue;
            const int64_t n = n0 + q, len = lens[q];
            REAL *dh = base + q * per;
            REAL *dht = dh + P, *dhp = dht + P, *dm = dhp + P;   /* P, P, P, H */
            REAL *dc = dm + GH;          /* H */
            REAL *gt = dc + GH;          /* gates, GH */
            REAL *tmp = gt + GH, *tmp2 = tmp + GH, *hc = tmp2 + GH, *hg = hc + GH;
            REAL *dcp = hg + GH;         /* H */
            const int64_t t = a->reverse ? len - 1 - s : s, row = t * N + n;
            const REAL *pa = pre + row * GH, *hp = hprev + row * P;
            REAL *da = dgx + row * GH;
            for (kk = 0; kk < P; kk++) dht[kk] = dh[kk] + dy[row * P + kk];
            if (!lstm && !gru) {
                for (jj = 0; jj < H; jj++) da[jj] = dht[jj];
                GN(g_gate_grad_mul)(&a->acts[0], clip, pa, tmp, tmp2, da, H);
                for (kk = 0; kk < P; kk++) dhp[kk] = 0;
                srcs[q] = da;
            } else if (lstm) {
                const REAL *pi = pa, *pf = pa + H, *pg = pa + 2 * H, *po = pa + 3 * H;
                const REAL *c = cs + row * H, *cp = cprev + row * H;
                REAL *gi = gt, *gf = gt + H, *gg = gt + 2 * H, *go = gt + 3 * H;
                REAL *dai = da, *daf = da + H, *dag = da + 2 * H, *dao = da + 3 * H;
                if (w_hr) {
                    memcpy(dhtot + row * P, dht, (size_t)P * sizeof(REAL));
                    for (jj = 0; jj < H; jj++) dm[jj] = 0;
                    for (kk = 0; kk < P; kk++) GN(g_axpy)(dht[kk], w_hr + kk * H, dm, H);
                } else {
                    memcpy(dm, dht, (size_t)H * sizeof(REAL));
                }
                GN(g_gate)(&a->acts[0], clip, pi, tmp, gi, H);
                if (a->input_forget)
                    for (jj = 0; jj < H; jj++) gf[jj] = 1 - gi[jj];
                else
                    GN(g_gate)(&a->acts[0], clip, pf, tmp, gf, H);
                GN(g_gate)(&a->acts[1], clip, pg, tmp, gg, H);
                GN(g_gate)(&a->acts[0], clip, po, tmp, go, H);
                GN(g_act)(a->acts[2].code, (REAL)a->acts[2].alpha, (REAL)a->acts[2].beta, c, hc, H);
                GN(g_act_grad)(a->acts[2].code, (REAL)a->acts[2].alpha, (REAL)a->acts[2].beta, c, hg, H);
                for (jj = 0; jj < H; jj++) dao[jj] = dm[jj] * hc[jj];
                GN(g_gate_grad_mul)(&a->acts[0], clip, po, tmp, tmp2, dao, H);
                for (jj = 0; jj < H; jj++) {
                    REAL dct = dc[jj] + dm[jj] * go[jj] * hg[jj];
                    if (peep) dct += dao[jj] * peep[2 * H + jj];
                    dai[jj] = dct * gg[jj];
                    daf[jj] = dct * cp[jj];
                    dag[jj] = dct * gi[jj];
                    dcp[jj] = dct * gf[jj];
                }
                if (a->input_forget) {
                    for (jj = 0; jj < H; jj++) {
                        dai[jj] = dai[jj] - daf[jj];
                        daf[jj] = 0;
                    }
                } else {
                    GN(g_gate_grad_mul)(&a->acts[0], clip, pf, tmp, tmp2, daf, H);
                }
                GN(g_gate_grad_mul)(&a->acts[0], clip, pi, tmp, tmp2, dai, H);
                GN(g_gate_grad_mul)(&a->acts[1], clip, pg, tmp, tmp2, dag, H);
                if (peep)
                    for (jj = 0; jj < H; jj++)
                        dcp[jj] = dcp[jj] + dai[jj] * peep[jj] + daf[jj] * peep[H + jj];
                memcpy(dc, dcp, (size_t)H * sizeof(REAL));
                for (kk = 0; kk < P; kk++) dhp[kk] = 0;
                srcs[q] = da;
            } else { /* gru */
                const REAL *pr = pa, *pz = pa + H, *pn = pa + 2 * H;
                REAL *gr = gt, *gz = gt + H, *gn = gt + 2 * H;
                REAL *dar = da, *daz = da + H, *dan = da + 2 * H;
                GN(g_gate)(&a->acts[0], clip, pr, tmp, gr, H);
                GN(g_gate)(&a->acts[0], clip, pz, tmp, gz, H);
                GN(g_gate)(&a->acts[1], clip, pn, tmp, gn, H);
                for (jj = 0; jj < H; jj++) {
                    dan[jj] = dht[jj] * (1 - gz[jj]);
                    daz[jj] = dht[jj] * (hp[jj] - gn[jj]);
                    dhp[jj] = dht[jj] * gz[jj];
                }
                GN(g_gate_grad_mul)(&a->acts[1], clip, pn, tmp, tmp2, dan, H);
                GN(g_gate_grad_mul)(&a->acts[0], clip, pz, tmp, tmp2, daz, H);
                if (a->reset_after) {
                    const REAL *ghn = aux + row * H;
                    REAL *dg = dgh + row * GH;
                    for (jj = 0; jj < H; jj++) dar[jj] = dan[jj] * ghn[jj];
                    GN(g_gate_grad_mul)(&a->acts[0], clip, pr, tmp, tmp2, dar, H);
                    for (jj = 0; jj < 2 * H; jj++) dg[jj] = da[jj];
                    for (jj = 0; jj < H; jj++) dg[2 * H + jj] = dan[jj] * gr[jj];
                    srcs[q] = dg;
                } else {
                    REAL *drh = hc;  /* gradient into r * h_{t-1}, H */
                    for (jj = 0; jj < H; jj++) drh[jj] = 0;
                    for (jj = 0; jj < H; jj++) GN(g_axpy)(dan[jj], w_hh + (2 * H + jj) * P, drh, P);
                    for (jj = 0; jj < H; jj++) {
                        dar[jj] = drh[jj] * hp[jj];
                        dhp[jj] += drh[jj] * gr[jj];
                    }
                    GN(g_gate_grad_mul)(&a->acts[0], clip, pr, tmp, tmp2, dar, H);
                    srcs[q] = da;
                }
            }
          }
          /* dh_{t-1} = dhp + srcs W_hh for the active rows, each row of W_hh loaded once */
          for (jj = 0; jj < nw; jj++) {
              const REAL *wrow = w_hh + jj * P;
              for (q = 0; q < nrow; q++)
                  if (s < lens[q]) GN(g_axpy)(srcs[q][jj], wrow, base + q * per + 2 * P, P);
          }
          for (q = 0; q < nrow; q++)
              if (s < lens[q]) {
                  REAL *dh = base + q * per;
                  memcpy(dh, dh + 2 * P, (size_t)P * sizeof(REAL));
              }
        }
        for (q = 0; q < nrow; q++) {
            const int64_t n = n0 + q;
            REAL *dh = base + q * per, *dc = dh + 3 * P + GH;
            memcpy(dh0 + n * P, dh, (size_t)P * sizeof(REAL));
            if (lstm) memcpy(dc0 + n * H, dc, (size_t)H * sizeof(REAL));
        }
    }
    free(scratch);

    /* weight, input and bias gradients: one GEMM / column sum each over all steps */
    const REAL *dgr = (gru && a->reset_after) ? dgh : dgx;
    st |= rf_gemm(a->dtype, 0, 0, TN, I, GH, dgx, GH, a->w_ih, I, 0, a->dx, I, a->nthreads);
    st |= rf_gemm(a->dtype, 1, 0, GH, I, TN, dgx, GH, a->x, I, 0, a->dw_ih, I, a->nthreads);
    if (gru && !a->reset_after) {
        st |= rf_gemm(a->dtype, 1, 0, 2 * H, P, TN, dgx, GH, hprev, P, 0, a->dw_hh, P,
                      a->nthreads);
        st |= rf_gemm(a->dtype, 1, 0, H, P, TN, dgx + 2 * H, GH, aux, H, 0,
                      (REAL *)a->dw_hh + 2 * H * P, P, a->nthreads);
    } else {
        st |= rf_gemm(a->dtype, 1, 0, GH, P, TN, dgr, GH, hprev, P, 0, a->dw_hh, P,
                      a->nthreads);
    }
    if (w_hr)
        st |= rf_gemm(a->dtype, 1, 0, P, H, TN, dhtot, P, a->ms, H, 0, a->dw_hr, H,
                      a->nthreads);
    if (a->has_bias) {
        REAL *db_ih = a->db_ih, *db_hh = a->db_hh;
        for (j = 0; j < GH; j++) db_ih[j] = db_hh[j] = 0;
        for (r = 0; r < TN; r++)
            for (j = 0; j < GH; j++) {
                db_ih[j] += dgx[r * GH + j];
                db_hh[j] += dgr[r * GH + j];
            }
    }
    if (peep) {
        REAL *dp = a->dw_peep;
        for (j = 0; j < 3 * H; j++) dp[j] = 0;
        for (r = 0; r < TN; r++)
            for (j = 0; j < H; j++) {
                dp[j] += dgx[r * GH + j] * cprev[r * H + j];
                dp[H + j] += dgx[r * GH + H + j] * cprev[r * H + j];
                dp[2 * H + j] += dgx[r * GH + 3 * H + j] * cs[r * H + j];
            }
    }
    return st ? RF_ENOMEM : RF_OK;
}

#undef GN
