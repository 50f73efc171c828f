"""The compiled CPU backend: one layer in one direction, forward and BPTT.

Implements the backend primitive of docs/design.md (`layer_forward`, `layer_backward`)
over the C kernels in csrc/ (GIL released, OpenMP). Callers pass validated, C-contiguous,
time-major arrays of one floating dtype; this module only allocates the outputs and the
workspace (once per call, never per time step) and hands pointers to C.
"""
import threading
import weakref

import numpy as np

from .. import _config
from . import _kernels


class _Workspace:
    """Buffers reused across calls of the same shapes.

    Fresh memory is expensive: the kernel zero-fills every new page on first touch
    (measured here: ~10 us a page, 5,000 pages in one LSTM training step). Scratch
    buffers come back at the end of a call; the buffers a training cache holds come
    back when the cache is freed; large results (outputs, gradients) are leased and
    come back when the caller has dropped them. At most `max_per_key` buffers per
    (dtype, size) and `max_bytes` in all are kept, least recently returned dropped
    first (8 per key: a bidirectional GRU's step has four weight gradients of one size,
    and the previous step's are still held while the next is computed). Thread-safe.
    """

    #: outputs of at least this many bytes are leased (see `lease`); below it, np.empty
    #: (a lease costs about 5 us; a fresh MiB costs more than that to zero-fill)
    LEASE_MIN_BYTES = 1 << 20

    def __init__(self, max_bytes=1 << 30, max_per_key=8):
        self.max_bytes, self.max_per_key = max_bytes, max_per_key
        self._free = {}        # (dtype.str, size) -> [ndarray], most recent last
        self._order = []       # keys in return order, for eviction
        self._bytes = 0
        # re-entrant: a lease's buffer comes back from its __del__, which can run inside
        # a take() or give() of the same thread (a garbage collection there)
        self._lock = threading.RLock()

    def take(self, shape, dtype):
        """An uninitialised C-contiguous array (contents are whatever was left)."""
        dtype = np.dtype(dtype)
        size = 1
        for d in shape:
            size *= d
        key = (dtype.str, size)
        with self._lock:
            bucket = self._free.get(key)
            if bucket:
                buf = bucket.pop()
                self._bytes -= buf.nbytes
                self._order.remove(key)
                return buf.reshape(shape)
        return np.empty(shape, dtype)

    def lease(self, shape, dtype):
        """An uninitialised C-contiguous array for a result handed to the caller, whose
        memory comes back to the workspace once the array and every view of it are gone.

        Gradients and outputs are fresh arrays at every training step, and fresh memory
        is zero-filled by the kernel page by page; a training loop drops the previous
        step's gradients before long, so their buffers serve the next step instead. The
        array's base is a `_Lease` holding the buffer; views keep it alive, so a buffer
        is never reused while anything can still reach it."""
        dtype = np.dtype(dtype)
        size = 1
        for d in shape:
            size *= d
        if size * dtype.itemsize < self.LEASE_MIN_BYTES:
            return np.empty(shape, dtype)
        return np.asarray(_Lease(self, self.take((size,), dtype), tuple(shape)))

    def give(self, *arrays):
        with self._lock:
            for a in arrays:
                if a is None or a.size == 0:
                    continue
                base = a.reshape(-1)
                key = (a.dtype.str, a.size)
                bucket = self._free.setdefault(key, [])
                if len(bucket) >= self.max_per_key or base.nbytes > self.max_bytes:
                    continue
                bucket.append(base)
                self._order.append(key)
                self._bytes += base.nbytes
            while self._bytes > self.max_bytes and self._order:
                old = self._order.pop(0)
                buf = self._free[old].pop(0)
                self._bytes -= buf.nbytes

    def clear(self):
        """Drop every kept buffer (frees the memory)."""
        with self._lock:
            self._free.clear()
            self._order.clear()
            self._bytes = 0


class _Lease:
    """The base object of a leased array (see `_Workspace.lease`): exposes the buffer
    through the array interface and gives it back when the last array using it goes."""

    __slots__ = ("__array_interface__", "_pool", "_buf")

    def __init__(self, pool, buf, shape):
        self._pool, self._buf = pool, buf
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": buf.dtype.str,
                                    "data": (buf.__array_interface__["data"][0], False)}

    def __del__(self):
        try:
            self._pool.give(self._buf)
        except Exception:   # interpreter shutdown: the memory is freed with the buffer
            pass


workspace = _Workspace()

__all__ = ["layer_forward", "layer_backward", "layer_forward_pair", "layer_backward_pair",
           "pack_weights"]

_CELL_CODES = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}


class _Cache:
    """What the backward of one layer and direction needs from its forward."""

    __slots__ = ("cell", "reverse", "reset_after", "dims", "lengths", "x", "h0", "c0",
                 "w_ih", "w_hh", "w_hr", "has_bias", "gates", "hs", "ws_c", "ws_m", "ws_hn",
                 "acts", "clip", "input_forget", "w_peep", "hprev", "cprev", "__weakref__")


#: C activation codes (enum rf_act in csrc/rnnfast.h)
_ACT_CODES = {"relu": 0, "tanh": 1, "sigmoid": 2, "affine": 3, "leakyrelu": 4,
              "thresholdedrelu": 5, "scaledtanh": 6, "hardsigmoid": 7, "elu": 8,
              "softsign": 9, "softplus": 10}
_DEFAULT_ACTS = {"rnn_tanh": ("tanh",), "rnn_relu": ("relu",), "gru": ("sigmoid", "tanh"),
                 "lstm": ("sigmoid", "tanh", "tanh")}


def _act_codes(cell, acts):
    """The (code, alpha, beta) triples of the kernels for `acts` (None: the defaults)."""
    if acts is None:
        return tuple((_ACT_CODES[nm], 0.0, 0.0) for nm in _DEFAULT_ACTS[cell])
    return tuple((_ACT_CODES[nm], float(al), float(be)) for nm, al, be in acts)


def _dtype_code(dtype):
    return 0 if dtype == np.float32 else 1


class PackedWeights:
    """One layer-direction's forward weights packed for this CPU's kernels.

    Build with :func:`pack_weights`; pass as ``packed=`` to :func:`layer_forward` to skip
    packing in every call. It is a snapshot: when the weights change, pack again. A pack
    is checked against the call's cell, dtype and sizes before use.
    """

    __slots__ = ("key", "data")

    def __init__(self, key, data):
        self.key, self.data = key, data


def _pack_key(cell, dtype, w_ih, w_hh, w_hr, reset_after):
    return (cell, np.dtype(dtype).str, w_ih.shape, w_hh.shape,
            None if w_hr is None else w_hr.shape, bool(reset_after) if cell == "gru" else True)


def pack_weights(cell, w_ih, w_hh, w_hr=None, reset_after=True):
    """Pack one layer-direction's forward weights (validated, C-contiguous arrays)."""
    H = w_ih.shape[0] // _GATES[cell]
    data = _kernels.pack_forward(_CELL_CODES[cell], _dtype_code(w_ih.dtype), w_ih.shape[1], H,
                                 w_hh.shape[1], w_ih, w_hh, w_hr, reset_after,
                                 _config.get_num_threads())
    return PackedWeights(_pack_key(cell, w_ih.dtype, w_ih, w_hh, w_hr, reset_after), data)


def layer_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None, lengths=None,
                  reverse=False, reset_after=True, training=False, packed=None, acts=None,
                  clip=None, input_forget=False, w_peep=None):
    """Forward of one layer in one direction; see docs/design.md for the contract.

    ``packed`` (optional) is a :class:`PackedWeights` of these same weights (unused by
    the general path). ``acts``, ``clip``, ``input_forget`` and ``w_peep`` (the ONNX
    options, see rnnfast._reference) select the general kernels when any is set.
    """
    if acts is not None or clip is not None or input_forget or w_peep is not None:
        return _forward_general(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                                reverse, reset_after, training, acts, clip, input_forget,
                                w_peep)
    kargs, finish = _prepare_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                     lengths, reverse, reset_after, training, packed,
                                     _config.get_num_threads())
    _kernels.forward(*kargs)
    return finish()


def _new_cache(cell, reverse, reset_after, x, lengths, h0, c0, H, P):
    """A training cache holding the call's inputs. dW_ih sums over all T*N rows in one
    GEMM; the gate gradients of padded steps are zero, and the inputs there must be too
    (0 * NaN would be NaN): with lengths, the cache keeps a copy of x (from the
    workspace) with its padded rows zeroed."""
    T, N, I = x.shape
    cache = _Cache()
    cache.cell, cache.reverse, cache.reset_after = cell, bool(reverse), bool(reset_after)
    cache.dims = (T, N, I, H, P)
    cache.lengths = lengths
    x_kept = x
    if lengths is not None and N and int(lengths.min()) < T:
        x_kept = workspace.take((T, N, I), x.dtype)
        np.copyto(x_kept, x)
        x_kept[np.arange(T)[:, None] >= lengths[None, :]] = 0
    cache.x, cache.h0, cache.c0 = x_kept, h0, c0
    return cache


def _prepare_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                     reset_after, training, packed, nthreads):
    """The fast path's kernel arguments (outputs and workspace allocated) and the
    function that turns them into layer_forward's result after the kernel ran."""
    wpack = None
    if packed is not None:
        if packed.key != _pack_key(cell, x.dtype, w_ih, w_hh, w_hr, reset_after):
            raise ValueError("packed weights were made for another cell, dtype or size")
        wpack = packed.data
    T, N, I = x.shape
    H = w_ih.shape[0] // _GATES[cell]
    P = w_hh.shape[1]
    dtype = x.dtype
    lstm, gru = cell == "lstm", cell == "gru"
    y = workspace.lease((T, N, P), dtype)
    h_n = np.empty((N, P), dtype)
    c_n = np.empty((N, H), dtype) if lstm else None
    take = workspace.take
    gx = take((T, N, w_ih.shape[0]), dtype)
    ws_c = take((T, N, H), dtype) if training and lstm else None
    ws_m = take((T, N, H), dtype) if training and w_hr is not None else None
    ws_hn = take((T, N, H), dtype) if training and gru else None
    if lengths is not None:
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    kargs = (_CELL_CODES[cell], _dtype_code(dtype), T, N, I, H, P,
             x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
             bool(reverse), bool(reset_after), bool(training), int(nthreads),
             y, h_n, c_n, gx, ws_c, ws_m, ws_hn, wpack)

    def finish():
        cache = None
        if not training:
            workspace.give(gx)
        else:
            cache = _new_cache(cell, reverse, reset_after, x, lengths, h0, c0, H, P)
            x_kept = cache.x
            cache.w_ih, cache.w_hh, cache.w_hr = w_ih, w_hh, w_hr
            cache.has_bias = b_ih is not None
            hs = take((T, N, P), dtype)
            np.copyto(hs, y)
            cache.gates, cache.hs = gx, hs
            cache.ws_c, cache.ws_m, cache.ws_hn = ws_c, ws_m, ws_hn
            cache.acts = None
            # the cache's buffers go back to the workspace when the cache is freed
            weakref.finalize(cache, workspace.give, gx, hs, ws_c, ws_m, ws_hn,
                             x_kept if x_kept is not x else None)
        return y, h_n, c_n, cache

    return kargs, finish


def _pairs_directions():
    """Whether the two directions of a bidirectional layer run at once, one per thread:
    with exactly 2 or 3 threads (each direction then runs single-threaded, without a
    barrier per step; more threads are better spent inside each direction)."""
    return _kernels.openmp_enabled() and _config.get_num_threads() in (2, 3)


def _is_fast(kw):
    return (kw.get("acts") is None and kw.get("clip") is None
            and not kw.get("input_forget") and kw.get("w_peep") is None)


def layer_forward_pair(kw0, kw1):
    """The two directions of one bidirectional layer: ``layer_forward(**kw0)`` and
    ``layer_forward(**kw1)``, run at once, one per thread, where that pays (see
    :func:`_pairs_directions`); otherwise one after the other. Results are bitwise the
    same either way."""
    if not (_pairs_directions() and _is_fast(kw0) and _is_fast(kw1)):
        return layer_forward(**kw0), layer_forward(**kw1)
    prepared = []
    for kw in (kw0, kw1):
        kw = dict(kw)
        for k in ("acts", "clip", "input_forget", "w_peep"):
            kw.pop(k, None)
        kw.setdefault("w_hr", None)
        kw.setdefault("lengths", None)
        kw.setdefault("reverse", False)
        kw.setdefault("reset_after", True)
        kw.setdefault("training", False)
        kw.setdefault("packed", None)
        prepared.append(_prepare_forward(nthreads=1, **kw))
    _kernels.forward_pair(prepared[0][0], prepared[1][0])
    return prepared[0][1](), prepared[1][1]()


def _forward_general(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths, reverse,
                     reset_after, training, acts, clip, input_forget, w_peep):
    """layer_forward on the general kernels (csrc/general_impl.h)."""
    T, N, I = x.shape
    H = w_ih.shape[0] // _GATES[cell]
    P = w_hh.shape[1]
    dtype = x.dtype
    lstm, gru = cell == "lstm", cell == "gru"
    codes = _act_codes(cell, acts)
    y = np.empty((T, N, P), dtype)
    h_n = np.empty((N, P), dtype)
    c_n = np.empty((N, H), dtype) if lstm else None
    take = workspace.take
    pre = take((T, N, w_ih.shape[0]), dtype)
    hprev = take((T, N, P), dtype) if training else None
    cprev = take((T, N, H), dtype) if training and lstm else None
    cs = take((T, N, H), dtype) if training and lstm else None
    ms = take((T, N, H), dtype) if training and lstm and w_hr is not None else None
    aux = take((T, N, H), dtype) if training and gru else None
    if lengths is not None:
        lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    _kernels.forward(_CELL_CODES[cell], _dtype_code(dtype), T, N, I, H, P,
                     x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, lengths,
                     reverse, reset_after, training, _config.get_num_threads(),
                     y, h_n, c_n, pre, cs, ms, aux, None, acts=codes,
                     clip=0.0 if clip is None else float(clip),
                     input_forget=bool(input_forget), w_peep=w_peep, hprev=hprev,
                     cprev=cprev)
    if not training:
        workspace.give(pre)
        return y, h_n, c_n, None
    cache = _new_cache(cell, reverse, reset_after, x, lengths, h0, c0, H, P)
    x_kept = cache.x
    cache.w_ih, cache.w_hh, cache.w_hr = w_ih, w_hh, w_hr
    cache.has_bias = b_ih is not None
    cache.gates, cache.hs = pre, None
    cache.ws_c, cache.ws_m, cache.ws_hn = cs, ms, aux
    cache.acts, cache.clip, cache.input_forget = codes, clip, bool(input_forget)
    cache.w_peep, cache.hprev, cache.cprev = w_peep, hprev, cprev
    weakref.finalize(cache, workspace.give, pre, hprev, cprev, cs, ms, aux,
                     x_kept if x_kept is not x else None)
    return y, h_n, c_n, cache


def layer_backward(cache, dy, dh_n=None, dc_n=None):
    """BPTT of one layer in one direction; see docs/design.md for the contract.

    A cache of the general kernels (ONNX options: ``cache.acts`` set) runs their
    backward, which also gives the peephole gradient ``'weight_peep'``.
    """
    kargs, general, finish = _prepare_backward(cache, dy, dh_n, dc_n,
                                               _config.get_num_threads())
    _kernels.backward(*kargs, **general)
    return finish()


def _prepare_backward(cache, dy, dh_n, dc_n, nthreads):
    """layer_backward's kernel arguments (positional, and the general path's keywords)
    and the function that returns its result after the kernel ran."""
    c = cache
    T, N, I, H, P = c.dims
    dtype = c.x.dtype
    lstm, gru = c.cell == "lstm", c.cell == "gru"
    GH = c.w_ih.shape[0]
    lease = workspace.lease
    dx = lease((T, N, I), dtype)
    dh0 = np.empty((N, P), dtype)
    dc0 = np.empty((N, H), dtype) if lstm else None
    dw_ih = lease(c.w_ih.shape, dtype)
    dw_hh = lease(c.w_hh.shape, dtype)
    db_ih = np.empty(GH, dtype) if c.has_bias else None
    db_hh = np.empty(GH, dtype) if c.has_bias else None
    dw_hr = lease(c.w_hr.shape, dtype) if c.w_hr is not None else None
    dw_peep, general = None, {}
    if c.acts is not None:
        dw_peep = np.empty_like(c.w_peep) if c.w_peep is not None else None
        general = dict(acts=c.acts, clip=0.0 if c.clip is None else float(c.clip),
                       input_forget=c.input_forget, w_peep=c.w_peep, dw_peep=dw_peep,
                       hprev=c.hprev, cprev=c.cprev)
    take = workspace.take
    dgx = take((T, N, GH), dtype)
    dgh = take((T, N, GH), dtype) if gru and c.reset_after else None
    dhtot = take((T, N, P), dtype) if c.w_hr is not None else None
    kargs = (_CELL_CODES[c.cell], _dtype_code(dtype), T, N, I, H, P,
             c.reverse, c.reset_after, int(nthreads), c.lengths,
             c.x, c.h0, c.c0, c.w_ih, c.w_hh, c.w_hr, c.has_bias,
             c.gates, c.hs, c.ws_c, c.ws_m, c.ws_hn, dy, dh_n, dc_n,
             dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, dgx, dgh, dhtot)

    def finish():
        workspace.give(dgx, dgh, dhtot)
        grads = {"x": dx, "h0": dh0, "c0": dc0, "weight_ih": dw_ih, "weight_hh": dw_hh,
                 "bias_ih": db_ih, "bias_hh": db_hh, "weight_hr": dw_hr}
        if dw_peep is not None:
            grads["weight_peep"] = dw_peep
        return grads

    return kargs, general, finish


def layer_backward_pair(args0, args1):
    """BPTT of both directions of one bidirectional layer: ``layer_backward(*args0)`` and
    ``layer_backward(*args1)`` (each ``(cache, dy, dh_n, dc_n)``), at once, one per
    thread, where that pays; bitwise the same results as one after the other."""
    if not (_pairs_directions() and args0[0].acts is None and args1[0].acts is None):
        return layer_backward(*args0), layer_backward(*args1)
    k0, _, f0 = _prepare_backward(*args0, nthreads=1)
    k1, _, f1 = _prepare_backward(*args1, nthreads=1)
    _kernels.backward_pair(k0, k1)
    return f0(), f1()


def layer_forward_into(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reset_after,
                       packed, y, h_n, c_n, gx, nthreads, acts=None, clip=None,
                       input_forget=False, w_peep=None):
    """Inference forward of one layer, forward direction, into the caller's buffers.

    The inference path of :func:`layer_forward` without its allocations (used by
    ``rnnfast.stream``): ``y`` (T, N, P), ``h_n`` (N, P), ``c_n`` (N, H) for 'lstm' (else
    None) and the scratch ``gx`` (T, N, G*H) are C-contiguous arrays of x's dtype that
    alias none of the inputs. ``packed`` is None or a :class:`PackedWeights` the caller
    has already checked against these weights (no key check here: it would allocate).
    """
    T, N, I = x.shape
    GH = w_ih.shape[0]
    if acts is not None or clip is not None or input_forget or w_peep is not None:
        # the general kernels (ONNX options): gx is their pre-activation buffer
        _kernels.forward(_CELL_CODES[cell], 0 if x.dtype == np.float32 else 1, T, N, I,
                         GH // _GATES[cell], w_hh.shape[1], x, h0, c0, w_ih, w_hh, b_ih,
                         b_hh, w_hr, None, False, reset_after, False, nthreads,
                         y, h_n, c_n, gx, None, None, None, None,
                         acts=_act_codes(cell, acts),
                         clip=0.0 if clip is None else float(clip),
                         input_forget=bool(input_forget), w_peep=w_peep)
        return
    _kernels.forward(_CELL_CODES[cell], 0 if x.dtype == np.float32 else 1, T, N, I,
                     GH // _GATES[cell], w_hh.shape[1], x, h0, c0, w_ih, w_hh, b_ih, b_hh,
                     w_hr, None, False, reset_after, False, nthreads,
                     y, h_n, c_n, gx, None, None, None,
                     None if packed is None else packed.data)
