# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Thin nogil bridge from NumPy arrays to the C kernels in csrc/.

Callers (rnnfast._cpu) pass arrays that rnnfast.functional has already validated. The
checks here are a last line of defence against an internal bug turning into a crash:
every array is verified to be C-contiguous, of the expected dtype and of the expected
size before any pointer is handed to C. They cost well under a microsecond per array.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.string cimport memset

cnp.import_array()

cdef extern from "rnnfast.h" nogil:
    ctypedef struct rf_fwd_args:
        int cell, dtype, reverse, reset_after, training, nthreads
        int64_t T, N, isz, H, P
        const int64_t *lengths
        const void *x
        const void *h0
        const void *c0
        const void *w_ih
        const void *w_hh
        const void *b_ih
        const void *b_hh
        const void *w_hr
        void *y
        void *h_n
        void *c_n
        void *gx
        void *ws_c
        void *ws_m
        void *ws_hn
        const void *wpack
    ctypedef struct rf_bwd_args:
        int cell, dtype, reverse, reset_after, nthreads
        int64_t T, N, isz, H, P
        const int64_t *lengths
        const void *x
        const void *h0
        const void *c0
        const void *w_ih
        const void *w_hh
        const void *w_hr
        int has_bias
        const void *gates
        const void *hs
        const void *ws_c
        const void *ws_m
        const void *ws_hn
        const void *dy
        const void *dh_n
        const void *dc_n
        void *dx
        void *dh0
        void *dc0
        void *dw_ih
        void *dw_hh
        void *db_ih
        void *db_hh
        void *dw_hr
        void *dgx
        void *dgh
        void *dhtot
    ctypedef struct rf_act_spec:
        int code
        double alpha, beta
    ctypedef struct rf_gen_fwd_args:
        int cell, dtype, reverse, reset_after, training, nthreads
        int64_t T, N, isz, H, P
        const int64_t *lengths
        const void *x
        const void *h0
        const void *c0
        const void *w_ih
        const void *w_hh
        const void *b_ih
        const void *b_hh
        const void *w_hr
        const void *w_peep
        rf_act_spec acts[3]
        double clip
        int input_forget
        void *y
        void *h_n
        void *c_n
        void *pre
        void *hprev
        void *cprev
        void *cs
        void *ms
        void *aux
    ctypedef struct rf_gen_bwd_args:
        int cell, dtype, reverse, reset_after, nthreads
        int64_t T, N, isz, H, P
        const int64_t *lengths
        const void *x
        const void *w_ih
        const void *w_hh
        const void *w_hr
        const void *w_peep
        int has_bias
        rf_act_spec acts[3]
        double clip
        int input_forget
        const void *pre
        const void *hprev
        const void *cprev
        const void *cs
        const void *ms
        const void *aux
        const void *dy
        const void *dh_n
        const void *dc_n
        void *dx
        void *dh0
        void *dc0
        void *dw_ih
        void *dw_hh
        void *db_ih
        void *db_hh
        void *dw_hr
        void *dw_peep
        void *dgx
        void *dgh
        void *dhtot
    int rf_gen_forward(const rf_gen_fwd_args *a)
    int rf_gen_backward(const rf_gen_bwd_args *a)
    int rf_forward(const rf_fwd_args *a)
    int64_t rf_pack_forward_size(const rf_fwd_args *a)
    int rf_pack_forward(const rf_fwd_args *a, void *dst)
    int rf_backward(const rf_bwd_args *a)
    int rf_forward_pair(const rf_fwd_args *a0, const rf_fwd_args *a1)
    int rf_backward_pair(const rf_bwd_args *a0, const rf_bwd_args *a1)
    int rf_gemm(int dtype, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                const void *a, int64_t lda, const void *b, int64_t ldb, int beta_one,
                void *c, int64_t ldc, int nthreads)
    int rf_isa()
    double rf_stream_read(const void *p, int64_t nbytes, int reps, int nthreads)
    void rf_set_decomposition(int mode)
    int rf_get_decomposition()
    const char *rf_isa_name()
    int rf_openmp_enabled()
    int rf_openmp_max_threads()
    double rf_core_roundtrip_ns(int64_t iters, double max_s) nogil


cdef int _typenum(int dtype):
    return cnp.NPY_FLOAT32 if dtype == 0 else cnp.NPY_FLOAT64


cdef void *_ptr(object arr, str name, int typenum, Py_ssize_t size) except? NULL:
    """Pointer to a checked array's data; NULL for None."""
    if arr is None:
        return NULL
    if not cnp.PyArray_Check(arr):
        raise TypeError(f"internal: {name} must be an ndarray, got {type(arr).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if cnp.PyArray_TYPE(a) != typenum:
        raise TypeError(f"internal: {name} has dtype {a.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"internal: {name} is not C-contiguous")
    if not cnp.PyArray_ISNOTSWAPPED(a):
        raise ValueError(f"internal: {name} is not in native byte order")
    if cnp.PyArray_SIZE(a) != size:
        raise ValueError(f"internal: {name} has {cnp.PyArray_SIZE(a)} elements, expected {size}")
    return cnp.PyArray_DATA(a)


cdef void *_wptr(object arr, str name, int typenum, Py_ssize_t size) except? NULL:
    """As _ptr, for arrays the kernel writes."""
    if arr is not None and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>arr):
        raise ValueError(f"internal: {name} is read-only")
    return _ptr(arr, name, typenum, size)


cdef int _set_acts(rf_act_spec *dst, object acts, int cell) except -1:
    """Fill the 3 activation specs from ((code, alpha, beta), ...) (the cell's count)."""
    cdef int k, want = 3 if cell == 2 else (2 if cell == 3 else 1)
    if acts is None or len(acts) != want:
        raise ValueError(f"internal: acts must hold {want} (code, alpha, beta) triples")
    memset(dst, 0, 3 * sizeof(rf_act_spec))
    for k in range(want):
        code, alpha, beta = acts[k]
        if not 0 <= code <= 10:
            raise ValueError(f"internal: unknown activation code {code}")
        dst[k].code = code
        dst[k].alpha = alpha
        dst[k].beta = beta
    return 0


def forward(int cell, int dtype, int64_t T, int64_t N, int64_t I, int64_t H, int64_t P,
            x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
            bint reverse, bint reset_after, bint training, int nthreads,
            y, h_n, c_n, gx, ws_c, ws_m, ws_hn, wpack=None, *, acts=None, double clip=0.0,
            bint input_forget=False, w_peep=None, hprev=None, cprev=None):
    """Run one layer in one direction forward; see rf_fwd_args in csrc/rnnfast.h.

    `wpack`, if given, holds the weights packed by `pack_forward` for the same problem.
    With `acts` (a (code, alpha, beta) triple per activation of the cell) the general
    path rf_gen_forward runs instead (rf_gen_fwd_args): `gx` is its `pre`, `ws_c` its
    `cs`, `ws_m` its `ms`, `ws_hn` its `aux`; `clip` > 0 clamps, `w_peep` (3H,) adds
    peepholes, `hprev` (T, N, P) and `cprev` (T, N, H, LSTM) are its training buffers.
    """
    if acts is not None:
        _forward_general(cell, dtype, T, N, I, H, P, x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                         w_hr, lengths, reverse, reset_after, training, nthreads, y, h_n,
                         c_n, gx, ws_c, ws_m, ws_hn, acts, clip, input_forget, w_peep,
                         hprev, cprev)
        return
    if clip > 0 or input_forget or w_peep is not None:
        raise ValueError("internal: clip, input_forget and w_peep need acts (the general path)")
    cdef rf_fwd_args a
    cdef int st
    _fill_fwd(&a, (cell, dtype, T, N, I, H, P, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                   lengths, reverse, reset_after, training, nthreads, y, h_n, c_n, gx,
                   ws_c, ws_m, ws_hn, wpack))
    with nogil:
        st = rf_forward(&a)
    if st != 0:
        raise MemoryError("rnnfast: out of memory for the forward scratch buffers")


def forward_pair(tuple args0, tuple args1):
    """Both directions of a bidirectional layer at once, one thread each (rf_forward_pair).

    Each tuple holds the positional arguments of :func:`forward` (fast path only, up to
    and including `wpack`); the arrays of the two must not overlap where written.
    """
    cdef rf_fwd_args a0, a1
    cdef int st
    _fill_fwd(&a0, args0)
    _fill_fwd(&a1, args1)
    with nogil:
        st = rf_forward_pair(&a0, &a1)
    if st != 0:
        raise MemoryError("rnnfast: out of memory for the forward scratch buffers")


def forward_stack(int cell, int dtype, int64_t T, int64_t N, int64_t H, int64_t P,
                  bint reset_after, int nthreads, list layers, x, h0, c0, gx):
    """Inference forward of a unidirectional stack on packed weights, in one call: the
    layers' fast path (rnnfast.nn). `layers` holds per layer (I_l, w_ih, w_hh, b_ih,
    b_hh, w_hr, wpack); `x` (T, N, I_0); `h0` (L, N, P) and `c0` (L, N, H) or None
    (zeros); `gx` (T, N, G*H) scratch. Every array is checked as in `forward`. Returns
    fresh (y, h_n, c_n) of shapes (T, N, P), (L, N, P), (L, N, H) or None."""
    cdef rf_fwd_args a
    cdef int tn = _typenum(dtype)
    cdef int64_t G = 4 if cell == 2 else (3 if cell == 3 else 1)
    cdef int64_t L = len(layers), itemsize = 4 if dtype == 0 else 8, layer, I_l
    cdef int st
    cdef cnp.npy_intp dims[3]
    if L < 1 or T < 1 or N < 1:
        raise ValueError("internal: forward_stack needs L, T, N >= 1")
    cdef char *ph0 = <char *>_ptr(h0, "h0", tn, L * N * P)
    cdef char *pc0 = <char *>_ptr(c0, "c0", tn, L * N * H)
    dims[0], dims[1], dims[2] = L, N, P
    h_n = cnp.PyArray_EMPTY(3, dims, tn, 0)
    c_n = None
    if cell == 2:
        dims[2] = H
        c_n = cnp.PyArray_EMPTY(3, dims, tn, 0)
    zeros = None
    if ph0 == NULL or (cell == 2 and pc0 == NULL):
        dims[0], dims[1] = N, (H if H > P else P)
        zeros = cnp.PyArray_ZEROS(2, dims, tn, 0)
    cdef char *phn = <char *>cnp.PyArray_DATA(<cnp.ndarray>h_n)
    cdef char *pcn = <char *>cnp.PyArray_DATA(<cnp.ndarray>c_n) if c_n is not None else NULL
    cdef void *pz = cnp.PyArray_DATA(<cnp.ndarray>zeros) if zeros is not None else NULL
    cdef void *pgx = _wptr(gx, "gx", tn, T * N * G * H)
    inp = x
    y = None
    for layer in range(L):
        I_l, w_ih, w_hh, b_ih, b_hh, w_hr, wpack = layers[layer]
        dims[0], dims[1], dims[2] = T, N, P
        y = cnp.PyArray_EMPTY(3, dims, tn, 0)
        memset(&a, 0, sizeof(a))
        a.cell, a.dtype, a.reverse, a.reset_after = cell, dtype, 0, reset_after
        a.training, a.nthreads = 0, nthreads
        a.T, a.N, a.isz, a.H, a.P = T, N, I_l, H, P
        a.x = _ptr(inp, "x", tn, T * N * I_l)
        a.h0 = ph0 + layer * N * P * itemsize if ph0 != NULL else pz
        a.c0 = (pc0 + layer * N * H * itemsize if pc0 != NULL else pz) if cell == 2 else NULL
        a.w_ih = _ptr(w_ih, "w_ih", tn, G * H * I_l)
        a.w_hh = _ptr(w_hh, "w_hh", tn, G * H * P)
        a.b_ih = _ptr(b_ih, "b_ih", tn, G * H)
        a.b_hh = _ptr(b_hh, "b_hh", tn, G * H)
        a.w_hr = _ptr(w_hr, "w_hr", tn, P * H)
        if (b_ih is None) != (b_hh is None):
            raise ValueError("internal: b_ih and b_hh must both be given or both be None")
        a.y = cnp.PyArray_DATA(<cnp.ndarray>y)
        a.h_n = phn + layer * N * P * itemsize
        a.c_n = pcn + layer * N * H * itemsize if cell == 2 else NULL
        a.gx = pgx
        if wpack is not None:
            a.wpack = _ptr(wpack, "wpack", tn, rf_pack_forward_size(&a))
            if (<size_t>a.wpack) % 64 != 0:
                raise ValueError("internal: wpack is not 64-byte aligned")
        with nogil:
            st = rf_forward(&a)
        if st != 0:
            raise MemoryError("rnnfast: out of memory for the forward scratch buffers")
        inp = y
    return y, h_n, c_n


cdef int _fill_fwd(rf_fwd_args *ap, tuple args) except -1:
    """Check the arrays of a fast-path forward and fill its argument struct."""
    (cell, dtype, T, N, I, H, P, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
     reverse, reset_after, training, nthreads, y, h_n, c_n, gx, ws_c, ws_m, ws_hn,
     wpack) = args
    cdef int tn = _typenum(dtype)
    cdef int64_t G = 4 if cell == 2 else (3 if cell == 3 else 1)
    memset(ap, 0, sizeof(rf_fwd_args))
    ap.cell, ap.dtype, ap.reverse, ap.reset_after = cell, dtype, reverse, reset_after
    ap.training, ap.nthreads = training, nthreads
    ap.T, ap.N, ap.isz, ap.H, ap.P = T, N, I, H, P
    ap.lengths = <const int64_t *>_ptr(lengths, "lengths", cnp.NPY_INT64, N)
    ap.x = _ptr(x, "x", tn, T * N * I)
    ap.h0 = _ptr(h0, "h0", tn, N * P)
    ap.c0 = _ptr(c0, "c0", tn, N * H)
    ap.w_ih = _ptr(w_ih, "w_ih", tn, G * H * I)
    ap.w_hh = _ptr(w_hh, "w_hh", tn, G * H * P)
    ap.b_ih = _ptr(b_ih, "b_ih", tn, G * H)
    ap.b_hh = _ptr(b_hh, "b_hh", tn, G * H)
    ap.w_hr = _ptr(w_hr, "w_hr", tn, P * H)
    ap.y = _wptr(y, "y", tn, T * N * P)
    ap.h_n = _wptr(h_n, "h_n", tn, N * P)
    ap.c_n = _wptr(c_n, "c_n", tn, N * H)
    ap.gx = _wptr(gx, "gx", tn, T * N * G * H)
    ap.ws_c = _wptr(ws_c, "ws_c", tn, T * N * H)
    ap.ws_m = _wptr(ws_m, "ws_m", tn, T * N * H)
    ap.ws_hn = _wptr(ws_hn, "ws_hn", tn, T * N * H)
    if wpack is not None:
        ap.wpack = _ptr(wpack, "wpack", tn, rf_pack_forward_size(ap))
        if (<size_t>ap.wpack) % 64 != 0:
            raise ValueError("internal: wpack is not 64-byte aligned")
    if (b_ih is None) != (b_hh is None):
        raise ValueError("internal: b_ih and b_hh must both be given or both be None")
    if cell == 2 and (c0 is None or c_n is None):
        raise ValueError("internal: LSTM needs c0 and c_n")
    if training and ((cell == 2 and ws_c is None) or (w_hr is not None and ws_m is None)
                     or (cell == 3 and ws_hn is None)):
        raise ValueError("internal: training workspace missing")
    return 0


cdef _forward_general(int cell, int dtype, int64_t T, int64_t N, int64_t I, int64_t H,
                      int64_t P, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                      bint reverse, bint reset_after, bint training, int nthreads,
                      y, h_n, c_n, pre, cs, ms, aux, acts, double clip, bint input_forget,
                      w_peep, hprev, cprev):
    cdef rf_gen_fwd_args a
    cdef int tn = _typenum(dtype)
    cdef int64_t G = 4 if cell == 2 else (3 if cell == 3 else 1)
    cdef int st
    memset(&a, 0, sizeof(a))
    a.cell, a.dtype, a.reverse, a.reset_after = cell, dtype, reverse, reset_after
    a.training, a.nthreads = training, nthreads
    a.T, a.N, a.isz, a.H, a.P = T, N, I, H, P
    _set_acts(a.acts, acts, cell)
    a.clip = clip if clip > 0 else 0.0
    a.input_forget = input_forget and cell == 2
    a.lengths = <const int64_t *>_ptr(lengths, "lengths", cnp.NPY_INT64, N)
    a.x = _ptr(x, "x", tn, T * N * I)
    a.h0 = _ptr(h0, "h0", tn, N * P)
    a.c0 = _ptr(c0, "c0", tn, N * H)
    a.w_ih = _ptr(w_ih, "w_ih", tn, G * H * I)
    a.w_hh = _ptr(w_hh, "w_hh", tn, G * H * P)
    a.b_ih = _ptr(b_ih, "b_ih", tn, G * H)
    a.b_hh = _ptr(b_hh, "b_hh", tn, G * H)
    a.w_hr = _ptr(w_hr, "w_hr", tn, P * H)
    a.w_peep = _ptr(w_peep, "w_peep", tn, 3 * H)
    a.y = _wptr(y, "y", tn, T * N * P)
    a.h_n = _wptr(h_n, "h_n", tn, N * P)
    a.c_n = _wptr(c_n, "c_n", tn, N * H)
    a.pre = _wptr(pre, "pre", tn, T * N * G * H)
    a.hprev = _wptr(hprev, "hprev", tn, T * N * P)
    a.cprev = _wptr(cprev, "cprev", tn, T * N * H)
    a.cs = _wptr(cs, "cs", tn, T * N * H)
    a.ms = _wptr(ms, "ms", tn, T * N * H)
    a.aux = _wptr(aux, "aux", tn, T * N * H)
    if (b_ih is None) != (b_hh is None):
        raise ValueError("internal: b_ih and b_hh must both be given or both be None")
    if cell == 2 and (c0 is None or c_n is None):
        raise ValueError("internal: LSTM needs c0 and c_n")
    if w_peep is not None and cell != 2:
        raise ValueError("internal: peepholes are LSTM only")
    if pre is None:
        raise ValueError("internal: pre workspace missing")
    if training and (hprev is None or (cell == 2 and (cprev is None or cs is None))
                     or (cell == 2 and w_hr is not None and ms is None)
                     or (cell == 3 and aux is None)):
        raise ValueError("internal: training workspace missing")
    with nogil:
        st = rf_gen_forward(&a)
    if st != 0:
        raise MemoryError("rnnfast: out of memory for the forward scratch buffers")


def pack_forward(int cell, int dtype, int64_t I, int64_t H, int64_t P, w_ih, w_hh, w_hr,
                 bint reset_after, int nthreads):
    """The forward weights packed for this CPU's kernels, as a 1-D array to pass as wpack."""
    import numpy as np
    cdef rf_fwd_args a
    cdef int tn = _typenum(dtype)
    cdef int64_t G = 4 if cell == 2 else (3 if cell == 3 else 1)
    cdef int st
    memset(&a, 0, sizeof(a))
    a.cell, a.dtype, a.reset_after, a.nthreads = cell, dtype, reset_after, nthreads
    a.isz, a.H, a.P = I, H, P
    a.w_ih = _ptr(w_ih, "w_ih", tn, G * H * I)
    a.w_hh = _ptr(w_hh, "w_hh", tn, G * H * P)
    a.w_hr = _ptr(w_hr, "w_hr", tn, P * H)
    # 64-byte aligned: the kernels read the pack with aligned vector loads
    cdef int64_t n = rf_pack_forward_size(&a)
    cdef int64_t itemsize = 4 if dtype == 0 else 8
    raw = np.empty(n + 64 // itemsize, dtype=np.float32 if dtype == 0 else np.float64)
    cdef int64_t skip = ((-<int64_t>cnp.PyArray_DATA(<cnp.ndarray>raw)) % 64) // itemsize
    out = raw[skip:skip + n]
    cdef void *dst = _wptr(out, "wpack", tn, n)
    with nogil:
        st = rf_pack_forward(&a, dst)
    if st != 0:
        raise MemoryError("rnnfast: out of memory while packing weights")
    return out


def backward(int cell, int dtype, int64_t T, int64_t N, int64_t I, int64_t H, int64_t P,
             bint reverse, bint reset_after, int nthreads, lengths,
             x, h0, c0, w_ih, w_hh, w_hr, bint has_bias,
             gates, hs, ws_c, ws_m, ws_hn, dy, dh_n, dc_n,
             dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dgx, dgh, dhtot, *, acts=None,
             double clip=0.0, bint input_forget=False, w_peep=None, dw_peep=None,
             hprev=None, cprev=None):
    """Backpropagate one layer in one direction; see rf_bwd_args in csrc/rnnfast.h.

    With `acts`, the general path rf_gen_backward (rf_gen_bwd_args) of a general forward:
    `gates` is its `pre`, `ws_c` its `cs`, `ws_m` its `ms`, `ws_hn` its `aux` (`hs` is
    not used); `dw_peep` receives the peephole gradient.
    """
    if acts is not None:
        _backward_general(cell, dtype, T, N, I, H, P, reverse, reset_after, nthreads,
                          lengths, x, w_ih, w_hh, w_hr, has_bias, gates, ws_c, ws_m,
                          ws_hn, dy, dh_n, dc_n, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh,
                          dw_hr, dgx, dgh, dhtot, acts, clip, input_forget, w_peep,
                          dw_peep, hprev, cprev)
        return
    if clip > 0 or input_forget or w_peep is not None or dw_peep is not None:
        raise ValueError("internal: clip, input_forget and w_peep need acts (the general path)")
    cdef rf_bwd_args a
    cdef int st
    _fill_bwd(&a, (cell, dtype, T, N, I, H, P, reverse, reset_after, nthreads, lengths,
                   x, h0, c0, w_ih, w_hh, w_hr, has_bias, gates, hs, ws_c, ws_m, ws_hn,
                   dy, dh_n, dc_n, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dgx,
                   dgh, dhtot))
    with nogil:
        st = rf_backward(&a)
    if st != 0:
        raise MemoryError("rnnfast: out of memory for the backward scratch buffers")


def backward_pair(tuple args0, tuple args1):
    """Both directions' BPTT at once, one thread each (rf_backward_pair).

    Each tuple holds the positional arguments of :func:`backward` (fast path only).
    """
    cdef rf_bwd_args a0, a1
    cdef int st
    _fill_bwd(&a0, args0)
    _fill_bwd(&a1, args1)
    with nogil:
        st = rf_backward_pair(&a0, &a1)
    if st != 0:
        raise MemoryError("rnnfast: out of memory for the backward scratch buffers")


cdef int _fill_bwd(rf_bwd_args *ap, tuple args) except -1:
    """Check the arrays of a fast-path backward and fill its argument struct."""
    (cell, dtype, T, N, I, H, P, reverse, reset_after, nthreads, lengths, x, h0, c0,
     w_ih, w_hh, w_hr, has_bias, gates, hs, ws_c, ws_m, ws_hn, dy, dh_n, dc_n, dx, dh0,
     dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dgx, dgh, dhtot) = args
    cdef int tn = _typenum(dtype)
    cdef int64_t G = 4 if cell == 2 else (3 if cell == 3 else 1)
    memset(ap, 0, sizeof(rf_bwd_args))
    ap.cell, ap.dtype, ap.reverse, ap.reset_after, ap.nthreads = cell, dtype, reverse, reset_after, nthreads
    ap.T, ap.N, ap.isz, ap.H, ap.P = T, N, I, H, P
    ap.lengths = <const int64_t *>_ptr(lengths, "lengths", cnp.NPY_INT64, N)
    ap.x = _ptr(x, "x", tn, T * N * I)
    ap.h0 = _ptr(h0, "h0", tn, N * P)
    ap.c0 = _ptr(c0, "c0", tn, N * H)
    ap.w_ih = _ptr(w_ih, "w_ih", tn, G * H * I)
    ap.w_hh = _ptr(w_hh, "w_hh", tn, G * H * P)
    ap.w_hr = _ptr(w_hr, "w_hr", tn, P * H)
    ap.has_bias = has_bias
    ap.gates = _ptr(gates, "gates", tn, T * N * G * H)
    ap.hs = _ptr(hs, "hs", tn, T * N * P)
    ap.ws_c = _ptr(ws_c, "ws_c", tn, T * N * H)
    ap.ws_m = _ptr(ws_m, "ws_m", tn, T * N * H)
    ap.ws_hn = _ptr(ws_hn, "ws_hn", tn, T * N * H)
    ap.dy = _ptr(dy, "dy", tn, T * N * P)
    ap.dh_n = _ptr(dh_n, "dh_n", tn, N * P)
    ap.dc_n = _ptr(dc_n, "dc_n", tn, N * H)
    ap.dx = _wptr(dx, "dx", tn, T * N * I)
    ap.dh0 = _wptr(dh0, "dh0", tn, N * P)
    ap.dc0 = _wptr(dc0, "dc0", tn, N * H)
    ap.dw_ih = _wptr(dw_ih, "dw_ih", tn, G * H * I)
    ap.dw_hh = _wptr(dw_hh, "dw_hh", tn, G * H * P)
    ap.db_ih = _wptr(db_ih, "db_ih", tn, G * H)
    ap.db_hh = _wptr(db_hh, "db_hh", tn, G * H)
    ap.dw_hr = _wptr(dw_hr, "dw_hr", tn, P * H)
    ap.dgx = _wptr(dgx, "dgx", tn, T * N * G * H)
    ap.dgh = _wptr(dgh, "dgh", tn, T * N * G * H)
    ap.dhtot = _wptr(dhtot, "dhtot", tn, T * N * P)
    if has_bias and (db_ih is None or db_hh is None):
        raise ValueError("internal: bias gradients missing")
    if cell == 2 and (c0 is None or dc0 is None or ws_c is None):
        raise ValueError("internal: LSTM needs c0, dc0 and ws_c")
    if w_hr is not None and (ws_m is None or dw_hr is None or dhtot is None):
        raise ValueError("internal: projection workspace missing")
    if cell == 3 and (ws_hn is None or (reset_after and dgh is None)):
        raise ValueError("internal: GRU workspace missing")
    return 0


cdef _backward_general(int cell, int dtype, int64_t T, int64_t N, int64_t I, int64_t H,
                       int64_t P, bint reverse, bint reset_after, int nthreads, lengths,
                       x, w_ih, w_hh, w_hr, bint has_bias, pre, cs, ms, aux, dy, dh_n,
                       dc_n, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dgx, dgh,
                       dhtot, acts, double clip, bint input_forget, w_peep, dw_peep,
                       hprev, cprev):
    cdef rf_gen_bwd_args a
    cdef int tn = _typenum(dtype)
    cdef int64_t G = 4 if cell == 2 else (3 if cell == 3 else 1)
    cdef int st
    memset(&a, 0, sizeof(a))
    a.cell, a.dtype, a.reverse, a.reset_after, a.nthreads = cell, dtype, reverse, reset_after, nthreads
    a.T, a.N, a.isz, a.H, a.P = T, N, I, H, P
    _set_acts(a.acts, acts, cell)
    a.clip = clip if clip > 0 else 0.0
    a.input_forget = input_forget and cell == 2
    a.lengths = <const int64_t *>_ptr(lengths, "lengths", cnp.NPY_INT64, N)
    a.x = _ptr(x, "x", tn, T * N * I)
    a.w_ih = _ptr(w_ih, "w_ih", tn, G * H * I)
    a.w_hh = _ptr(w_hh, "w_hh", tn, G * H * P)
    a.w_hr = _ptr(w_hr, "w_hr", tn, P * H)
    a.w_peep = _ptr(w_peep, "w_peep", tn, 3 * H)
    a.has_bias = has_bias
    a.pre = _ptr(pre, "pre", tn, T * N * G * H)
    a.hprev = _ptr(hprev, "hprev", tn, T * N * P)
    a.cprev = _ptr(cprev, "cprev", tn, T * N * H)
    a.cs = _ptr(cs, "cs", tn, T * N * H)
    a.ms = _ptr(ms, "ms", tn, T * N * H)
    a.aux = _ptr(aux, "aux", tn, T * N * H)
    a.dy = _ptr(dy, "dy", tn, T * N * P)
    a.dh_n = _ptr(dh_n, "dh_n", tn, N * P)
    a.dc_n = _ptr(dc_n, "dc_n", tn, N * H)
    a.dx = _wptr(dx, "dx", tn, T * N * I)
    a.dh0 = _wptr(dh0, "dh0", tn, N * P)
    a.dc0 = _wptr(dc0, "dc0", tn, N * H)
    a.dw_ih = _wptr(dw_ih, "dw_ih", tn, G * H * I)
    a.dw_hh = _wptr(dw_hh, "dw_hh", tn, G * H * P)
    a.db_ih = _wptr(db_ih, "db_ih", tn, G * H)
    a.db_hh = _wptr(db_hh, "db_hh", tn, G * H)
    a.dw_hr = _wptr(dw_hr, "dw_hr", tn, P * H)
    a.dw_peep = _wptr(dw_peep, "dw_peep", tn, 3 * H)
    a.dgx = _wptr(dgx, "dgx", tn, T * N * G * H)
    a.dgh = _wptr(dgh, "dgh", tn, T * N * G * H)
    a.dhtot = _wptr(dhtot, "dhtot", tn, T * N * P)
    if has_bias and (db_ih is None or db_hh is None):
        raise ValueError("internal: bias gradients missing")
    if pre is None or hprev is None or dgx is None:
        raise ValueError("internal: general backward workspace missing")
    if cell == 2 and (dc0 is None or cprev is None or cs is None):
        raise ValueError("internal: LSTM needs dc0, cprev and cs")
    if (w_peep is None) != (dw_peep is None) or (w_peep is not None and cell != 2):
        raise ValueError("internal: peephole weights and gradient go together (LSTM)")
    if w_hr is not None and (ms is None or dw_hr is None or dhtot is None):
        raise ValueError("internal: projection workspace missing")
    if cell == 3 and (aux is None or (reset_after and dgh is None)):
        raise ValueError("internal: GRU workspace missing")
    with nogil:
        st = rf_gen_backward(&a)
    if st != 0:
        raise MemoryError("rnnfast: out of memory for the backward scratch buffers")


def gemm(a, b, c, bint trans_a=False, bint trans_b=False, bint accumulate=False, int nthreads=1):
    """c = (c if accumulate else 0) + op(a) @ op(b) with rnnfast's own GEMM (2-D, C-contiguous)."""
    cdef int dtype = 0 if c.dtype.itemsize == 4 else 1
    cdef int tn = _typenum(dtype)
    cdef int64_t m = c.shape[0], n = c.shape[1]
    cdef int64_t k = a.shape[0] if trans_a else a.shape[1]
    if (a.shape[1] if trans_a else a.shape[0]) != m or (b.shape[1] if trans_b else b.shape[0]) != k \
            or (b.shape[0] if trans_b else b.shape[1]) != n:
        raise ValueError("gemm: shapes do not match")
    cdef const void *pa = _ptr(a, "a", tn, a.size)
    cdef const void *pb = _ptr(b, "b", tn, b.size)
    cdef void *pc = _wptr(c, "c", tn, c.size)
    cdef int64_t lda = a.shape[1], ldb = b.shape[1]
    cdef int st
    with nogil:
        st = rf_gemm(dtype, trans_a, trans_b, m, n, k, pa, lda, pb, ldb, accumulate, pc, n,
                     nthreads)
    if st != 0:
        raise MemoryError("rnnfast: out of memory in gemm")


def stream_read(buf, int reps=1, int nthreads=1):
    """Read the float32 array `buf` `reps` times with `nthreads` threads (vector loads,
    each thread its contiguous part) and return the sum of everything read: a
    read-bandwidth probe for benchmarks."""
    if reps < 1 or nthreads < 1:
        raise ValueError("stream_read: reps and nthreads must be >= 1")
    cdef const void *p = _ptr(buf, "buf", cnp.NPY_FLOAT32, buf.size)
    cdef int64_t nbytes = buf.size * 4
    cdef double total
    with nogil:
        total = rf_stream_read(p, nbytes, reps, nthreads)
    return total


def isa_name():
    """Name of the kernel variant selected for this CPU ('avx512', 'avx2', 'baseline')."""
    return rf_isa_name().decode()


def openmp_enabled():
    """Whether the kernels were built with OpenMP."""
    return bool(rf_openmp_enabled())


def openmp_max_threads():
    """OpenMP's default team size in this process."""
    return rf_openmp_max_threads()


def core_roundtrip_ns(iters=20000, max_seconds=0.5):
    """Nanoseconds per round trip of a cache line between two threads of the OpenMP
    team (a benchmark probe: it tells whether the two cores share a die), or None
    without OpenMP, without a second CPU, or past ``max_seconds``."""
    cdef int64_t n = iters
    cdef double lim = max_seconds
    if n < 1:
        raise ValueError(f"core_roundtrip_ns: iters must be >= 1, got {iters}")
    if not lim > 0:
        raise ValueError(f"core_roundtrip_ns: max_seconds must be > 0, got {max_seconds}")
    with nogil:
        ns = rf_core_roundtrip_ns(n, lim)
    return None if ns < 0 else ns


_DECOMPOSITIONS = ("auto", "units", "batch")


def set_decomposition(str mode):
    """Force how the kernels' time loops split among threads: 'units' (each thread a
    slice of hidden units, a barrier per step), 'batch' (each thread whole sequences,
    no barrier) or 'auto' (by shape, the default). Results are bitwise the same; for
    tests and benchmarks only (process-wide, not thread-safe)."""
    if mode not in _DECOMPOSITIONS:
        raise ValueError(f"set_decomposition: mode must be one of {_DECOMPOSITIONS}, got {mode!r}")
    rf_set_decomposition(_DECOMPOSITIONS.index(mode))


def get_decomposition():
    """The mode set by :func:`set_decomposition`."""
    return _DECOMPOSITIONS[rf_get_decomposition()]
