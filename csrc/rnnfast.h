/* rnnfast C kernels: the public C interface used by the Cython wrapper.
 *
 * One call computes one layer in one direction, forward or backward (BPTT), for a whole
 * sequence batch. Arrays are C-contiguous, time-major, of one floating type (float or
 * double, chosen by `dtype`). The caller (Python) validates every argument before the
 * call; kernels trust it and report only allocation failure.
 *
 * Structure (see docs/design.md):
 *   forward:  one parallel region; each thread owns a slice of hidden units, projects
 *             the inputs of every valid step for them (gx = x W_ih^T, hoisted out of the
 *             time loop; a GEMM for very large batches), then runs the time loop:
 *             recurrent product + fused gate math per step, spin barrier between steps
 *   backward: one parallel region over the reversed time loop producing the gate
 *             gradients of every step; then dX, dW_ih, dW_hh (and dW_hr) as one GEMM
 *             each over all steps, and bias gradients as column sums.
 */
#ifndef RNNFAST_H
#define RNNFAST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum rf_cell { RF_RNN_TANH = 0, RF_RNN_RELU = 1, RF_LSTM = 2, RF_GRU = 3 };
enum rf_dtype { RF_F32 = 0, RF_F64 = 1 };
enum rf_status { RF_OK = 0, RF_ENOMEM = 1 };
enum rf_isa { RF_ISA_BASE = 0, RF_ISA_AVX2 = 1, RF_ISA_AVX512 = 2 };

typedef struct {
    int cell, dtype, reverse, reset_after, training, nthreads;
    int64_t T, N, isz, H, P;     /* isz = input size; P = proj_size if projecting, else H */
    const int64_t *lengths;      /* (N,) or NULL: every length is T */
    /* inputs */
    const void *x;               /* (T, N, I) */
    const void *h0;              /* (N, P) */
    const void *c0;              /* (N, H), LSTM only */
    const void *w_ih;            /* (G*H, I) */
    const void *w_hh;            /* (G*H, P) */
    const void *b_ih, *b_hh;     /* (G*H,) or both NULL */
    const void *w_hr;            /* (P, H) or NULL */
    /* outputs */
    void *y;                     /* (T, N, P), zero at padded steps */
    void *h_n;                   /* (N, P) */
    void *c_n;                   /* (N, H), LSTM only */
    /* workspace: gx (T, N, G*H). On return in training mode it holds the activated gates
     * (LSTM i,f,g,o; GRU r,z,n); for RNN it is scratch. */
    void *gx;
    /* training-only workspace (NULL otherwise); contents on entry do not matter: */
    void *ws_c;                  /* LSTM: (T, N, H) c_t */
    void *ws_m;                  /* LSTM with projection: (T, N, H) o*tanh(c_t) */
    void *ws_hn;                 /* GRU: (T, N, H) W_hn h + b_hn (reset_after) or r*h_{t-1} */
    /* optional: the weights already packed by rf_pack_forward (NULL: pack in the call) */
    const void *wpack;
} rf_fwd_args;

typedef struct {
    int cell, dtype, reverse, reset_after, nthreads;
    int64_t T, N, isz, H, P;
    const int64_t *lengths;
    /* what the forward saw and kept */
    const void *x, *h0, *c0, *w_ih, *w_hh, *w_hr;
    int has_bias;
    const void *gates;           /* (T, N, G*H) activated gates (forward gx) */
    const void *hs;              /* (T, N, P) h_t (zero at padded steps) */
    const void *ws_c, *ws_m, *ws_hn;
    /* incoming gradients */
    const void *dy;              /* (T, N, P) */
    const void *dh_n;            /* (N, P) or NULL */
    const void *dc_n;            /* (N, H) or NULL */
    /* outputs (fully overwritten) */
    void *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh, *dw_hr;
    /* workspace; contents on entry do not matter */
    void *dgx;                   /* (T, N, G*H) gradient wrt the input-side pre-activations */
    void *dgh;                   /* GRU: (T, N, G*H) wrt the recurrent-side pre-activations */
    void *dhtot;                 /* LSTM with projection: (T, N, P) total dL/dh_t */
} rf_bwd_args;

/* ---- The general path (csrc/general_impl.h): ONNX activations, clip, LSTM input_forget
 * and peepholes. Semantics: rnnfast/_reference.py; layout notes: docs/design.md. */
enum rf_act {
    RF_ACT_RELU = 0, RF_ACT_TANH = 1, RF_ACT_SIGMOID = 2, RF_ACT_AFFINE = 3,
    RF_ACT_LEAKYRELU = 4, RF_ACT_THRESHOLDEDRELU = 5, RF_ACT_SCALEDTANH = 6,
    RF_ACT_HARDSIGMOID = 7, RF_ACT_ELU = 8, RF_ACT_SOFTSIGN = 9, RF_ACT_SOFTPLUS = 10
};

typedef struct {
    int code;                    /* enum rf_act */
    double alpha, beta;
} rf_act_spec;

typedef struct {
    int cell, dtype, reverse, reset_after, training, nthreads;
    int64_t T, N, isz, H, P;
    const int64_t *lengths;      /* (N,) or NULL */
    const void *x, *h0, *c0, *w_ih, *w_hh, *b_ih, *b_hh, *w_hr;
    const void *w_peep;          /* LSTM (3H,) gate order i, f, o, or NULL */
    rf_act_spec acts[3];         /* rnn: f; gru: f, g; lstm: f, g, h */
    double clip;                 /* > 0: clamp gate pre-activations to [-clip, clip] */
    int input_forget;            /* LSTM: f = 1 - i */
    void *y, *h_n, *c_n;
    /* (T, N, G*H), always: on return the full gate pre-activations before the clip
     * (valid steps only), which the backward differentiates */
    void *pre;
    /* training only (NULL otherwise), zero at padded steps on return: */
    void *hprev;                 /* (T, N, P) h_{t-1} of every step */
    void *cprev, *cs;            /* LSTM (T, N, H): c_{t-1}, c_t */
    void *ms;                    /* LSTM with projection (T, N, H): m_t */
    void *aux;                   /* GRU (T, N, H): W_hn h + b_hn (reset_after) or r*h_{t-1} */
} rf_gen_fwd_args;

typedef struct {
    int cell, dtype, reverse, reset_after, nthreads;
    int64_t T, N, isz, H, P;
    const int64_t *lengths;
    const void *x;               /* (T, N, I), zero at padded steps */
    const void *w_ih, *w_hh, *w_hr, *w_peep;
    int has_bias;
    rf_act_spec acts[3];
    double clip;
    int input_forget;
    const void *pre, *hprev, *cprev, *cs, *ms, *aux;   /* from the training forward */
    const void *dy, *dh_n, *dc_n;                      /* dh_n, dc_n may be NULL */
    void *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh, *dw_hr, *dw_peep;
    void *dgx;                   /* (T, N, G*H) workspace */
    void *dgh;                   /* GRU reset_after: (T, N, G*H) workspace, else NULL */
    void *dhtot;                 /* LSTM with projection: (T, N, P) workspace, else NULL */
} rf_gen_bwd_args;

int rf_gen_forward(const rf_gen_fwd_args *a);
int rf_gen_backward(const rf_gen_bwd_args *a);

int rf_forward(const rf_fwd_args *a);
/* Packed forward weights, reusable across calls while the weights do not change: the
 * size in elements of the problem's dtype, and the packing itself (reads w_ih, w_hh, w_hr,
 * cell, reset_after, isz, H, P, dtype, nthreads of `a`). The layout belongs to the kernel
 * variant of this process (rf_isa()). */
int64_t rf_pack_forward_size(const rf_fwd_args *a);
int rf_pack_forward(const rf_fwd_args *a, void *dst);
int rf_backward(const rf_bwd_args *a);

/* The two directions of a bidirectional layer at once, one per core: a[0] and a[1] each
 * run single-threaded (their nthreads is ignored) on the two threads of one OpenMP team,
 * so neither direction synchronises per step. Results are bitwise those of rf_forward /
 * rf_backward on each (the kernels do not depend on the thread count). Returns the
 * first nonzero status. */
int rf_forward_pair(const rf_fwd_args *a0, const rf_fwd_args *a1);
int rf_backward_pair(const rf_bwd_args *a0, const rf_bwd_args *a1);

/* The decomposition of the time loop among threads: chosen by shape (AUTO, the
 * default), or forced by hidden units or by sequences of the batch. Results are bitwise
 * the same whichever is used; this exists for tests and benchmarks. Not thread-safe:
 * set it before running kernels. */
enum rf_decomposition { RF_DECOMP_AUTO = 0, RF_DECOMP_UNITS = 1, RF_DECOMP_BATCH = 2 };
void rf_set_decomposition(int mode);
int rf_get_decomposition(void);

/* C = beta*C + op(A) op(B) (+ bias per column), row-major; exposed for tests and bench. */
int rf_gemm(int dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
            const void *a, int64_t lda, const void *b, int64_t ldb, int beta_one,
            void *c, int64_t ldc, int nthreads);

/* Sum of a float32 buffer read `reps` times with `nthreads` threads (each its own
 * contiguous part): a read-bandwidth probe for benchmarks. */
double rf_stream_read(const void *p, int64_t nbytes, int reps, int nthreads);

int rf_isa(void);                 /* the kernel variant selected for this CPU */
const char *rf_isa_name(void);
int rf_openmp_enabled(void);
int rf_openmp_max_threads(void);
/* two threads of the team pass a cache line back and forth: ns per round trip, or -1 */
double rf_core_roundtrip_ns(int64_t iters, double max_s);

#ifdef __cplusplus
}
#endif
#endif
