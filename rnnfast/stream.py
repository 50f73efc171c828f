r"""Streaming inference: advance N independent streams by a step or a chunk of steps.

A :class:`Streamer` keeps the recurrent state of ``batch_size`` independent streams
(e.g. N audio channels, N environments of a reinforcement-learning rollout) of one
unidirectional :class:`~rnnfast.RNN`, :class:`~rnnfast.LSTM` or :class:`~rnnfast.GRU`
(stacked or not), and advances them by one step, ``x`` of shape ``(N, I)``, or by a
chunk of steps, ``x`` of shape ``(T, N, I)`` (``(N, T, I)`` with ``batch_first``)::

    >>> import numpy as np, rnnfast
    >>> lstm = rnnfast.LSTM(8, 16, num_layers=2, seed=0).eval()
    >>> s = rnnfast.Streamer(lstm, batch_size=4, max_chunk=1)
    >>> out = np.empty((4, 16), np.float32)
    >>> for t in range(3):
    ...     y = s.step(np.ones((4, 8), np.float32), out=out)   # y is out
    >>> s.h.shape, s.c.shape
    ((2, 4, 16), (2, 4, 16))

Exactness
---------
The numbers are bitwise those of one call of the layer on the whole sequence, whatever
the chunk sizes (the compiled kernels' summation order does not depend on the number of
steps or on the rest of the batch).  ``reset`` marks episode starts per stream: a
stream flagged at step ``t`` starts that step from the initial state, and its outputs
are bitwise those of a separate layer call on that episode.

Memory
------
Every buffer (state, scratch, the transposes of ``batch_first``) is allocated when the
streamer is made, for chunks of up to ``max_chunk`` steps (longer chunks are processed
``max_chunk`` steps at a time, with the same results).  Once the layer's weights are
packed (the first call), a call with ``out=`` and a boolean ``reset`` array (or None)
allocates no array; only a few short-lived Python objects (views, ints).  Without
``out=`` the output array is new.  With ``backend='reference'`` the NumPy oracle runs,
which allocates (and is not bitwise tied to the compiled kernels).
"""
import threading

import numpy as np

from . import _config
from . import _validation as _v
from . import functional as _F
from .nn import _RNNBase

__all__ = ["Streamer"]

# serialises the (rare) packing of a layer's weights by streamers sharing it
_PACK_LOCK = threading.Lock()


class _Busy:
    """Holds a streamer's lock for one call; refuses (never waits) when it is taken."""

    __slots__ = ("lock", "owner")

    def __init__(self, lock, owner):
        self.lock, self.owner = lock, owner

    def __enter__(self):
        if not self.lock.acquire(blocking=False):
            raise RuntimeError(
                f"{self.owner}: this streamer is already running a call (from another "
                f"thread); a streamer is not shareable: give each thread its own")

    def __exit__(self, *exc):
        self.lock.release()


class Streamer:
    """Step-by-step inference over ``batch_size`` independent streams of one layer.

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        A unidirectional layer in eval mode (``layer.eval()``).  Its weights are used
        live: changing them (see :meth:`rnnfast.LSTM.eval` for how) is picked up at the
        next call, never silently ignored.
    batch_size : int >= 1
        Number of streams ``N``.
    max_chunk : int >= 1, default 1
        Longest chunk the preallocated buffers hold; longer chunks are split.
    initial_state : ndarray or tuple of ndarray, optional
        The state a stream starts from (at creation, after a reset): like the layer's
        ``hx``, ``h0`` of shape ``(num_layers, N, P)`` (``(h0, c0)`` for an LSTM,
        ``c0`` of shape ``(num_layers, N, H)``), or ``(num_layers, F)`` for the same
        state in every stream.  Zeros when None.  Copied.

    Attributes
    ----------
    h : ndarray of shape (num_layers, N, P)
        Read-only view of the current hidden state (always the same array; it changes
        as the streams advance).
    c : ndarray of shape (num_layers, N, H) or None
        Read-only view of the current cell state (LSTM), else None.
    state : ndarray or tuple
        ``h``, or ``(h, c)`` for an LSTM: what the layer takes as ``hx``.

    Notes
    -----
    Threads: streamers sharing one layer may step concurrently (the kernels release the
    GIL); one streamer is not shareable: a call while another call on the same streamer
    is running raises RuntimeError (give each thread its own streamer).  Do not change
    the layer's weights while a call is running.

    The layer must be in eval mode: streaming is inference (no dropout, no gradients);
    a call on a layer in training mode raises RuntimeError.  Bidirectional layers
    cannot stream (the reverse direction needs the future) and raise ValueError.
    """

    def __init__(self, layer, batch_size, max_chunk=1, *, initial_state=None):
        owner = "Streamer"
        if not isinstance(layer, _RNNBase):
            raise TypeError(f"{owner}: layer must be an rnnfast RNN, LSTM or GRU, got "
                            f"{_v.describe(layer)}")
        if layer.bidirectional:
            raise ValueError(
                f"{owner}: cannot stream a bidirectional layer ({layer!r}): its reverse "
                f"direction reads the sequence from its end, which a stream does not have "
                f"yet; run the layer on whole sequences instead")
        self._check_eval(layer, owner)
        N = _v.check_int(owner, "batch_size", batch_size)
        T = _v.check_int(owner, "max_chunk", max_chunk)
        dtype = np.dtype(layer.dtype)
        L, H = layer.num_layers, layer.hidden_size
        P = layer.proj_size or H
        I = layer.input_size
        self._layer = layer
        self._cell = self._cell_of(layer)
        self._lstm = self._cell == "lstm"
        G = _v.GATES[self._cell]
        self._n, self._max_chunk, self._dtype = N, T, dtype
        self._dims = (L, N, I, H, P)
        _v.check_workspace(owner, T, N, max(I, P), H, layer.proj_size, L, 1, self._cell,
                           dtype.itemsize, False)
        self._busy = threading.Lock()

        # state (stable arrays: the public views never go stale) and its initial value
        # one block, so that one bounds check tells whether an array overlaps any of it
        nh, nc = L * N * P, (L * N * H if self._lstm else 0)
        self._block = np.zeros(2 * (nh + nc), dtype)
        self._h = self._block[:nh].reshape(L, N, P)
        self._h0 = self._block[nh:2 * nh].reshape(L, N, P)
        self._c = self._block[2 * nh:2 * nh + nc].reshape(L, N, H) if self._lstm else None
        self._c0 = self._block[2 * nh + nc:].reshape(L, N, H) if self._lstm else None
        self._x_source = f"the streamer's layer has dtype {dtype.name}"
        self._h_l = list(self._h)
        self._c_l = list(self._c) if self._lstm else [None] * L
        # the kernel writes the final state here, never into its own input
        self._hn = np.empty((N, P), dtype)
        self._cn = np.empty((N, H), dtype) if self._lstm else None
        self._gx = np.empty((T, N, G * H), dtype)
        self._ybuf = [np.empty((T, N, P), dtype) for _ in range(min(L - 1, 2))]
        self._xbuf = np.empty((T, N, I), dtype)      # batch_first / strided inputs
        self._obuf = np.empty((T, N, P), dtype)      # batch_first outputs
        self._rbuf = np.empty((T, N), bool)          # a piece's reset mask, time-major
        self._h_ro = self._h.view()
        self._h_ro.flags.writeable = False
        self._c_ro = None
        if self._lstm:
            self._c_ro = self._c.view()
            self._c_ro.flags.writeable = False
        self._state = (self._h_ro, self._c_ro) if self._lstm else self._h_ro

        # weights: (re)read from the layer when it changes them
        self._packs = None
        self._params = None      # [(name, array)] as read from the layer
        self._weights = None     # per layer: (w_ih, w_hh, b_ih, b_hh, w_hr, pack)
        self._backend = None
        if initial_state is not None:
            self.set_initial_state(initial_state)
            self.reset_state()

    # ----------------------------------------------------------------- state API
    def reset_state(self, mask=None):
        """Put streams back to the initial state: all of them (``mask`` None) or those
        where the boolean ``mask`` of shape ``(N,)`` is True."""
        owner = "Streamer.reset_state"
        with self._guard(owner):
            if mask is None:
                np.copyto(self._h, self._h0)
                if self._lstm:
                    np.copyto(self._c, self._c0)
                return
            m = self._check_mask(owner, "mask", mask, (self._n,), "(N,)")
            self._apply_reset(m)

    def set_state(self, state):
        """Set the current state of every stream: ``h`` of shape ``(num_layers, N, P)``,
        or ``(h, c)`` for an LSTM (``c`` of shape ``(num_layers, N, H)``); copied."""
        owner = "Streamer.set_state"
        h, c = self._check_state(owner, "state", state, allow_shared=False)
        with self._guard(owner):
            np.copyto(self._h, h)
            if self._lstm:
                np.copyto(self._c, c)

    def set_initial_state(self, state):
        """Set the state streams start from after a reset (like ``initial_state``).

        The current state is not changed (call :meth:`reset_state` for that)."""
        owner = "Streamer.set_initial_state"
        h, c = self._check_state(owner, "state", state, allow_shared=True)
        with self._guard(owner):
            np.copyto(self._h0, h)
            if self._lstm:
                np.copyto(self._c0, c)

    @property
    def initial_state(self):
        """Read-only copy-free view(s) of the initial state (``h0`` or ``(h0, c0)``)."""
        h0 = self._h0.view()
        h0.flags.writeable = False
        if not self._lstm:
            return h0
        c0 = self._c0.view()
        c0.flags.writeable = False
        return h0, c0

    @property
    def h(self):
        """Read-only view of the hidden state, (num_layers, N, P); always this array."""
        return self._h_ro

    @property
    def c(self):
        """Read-only view of the cell state (LSTM), (num_layers, N, H); else None."""
        return self._c_ro

    @property
    def state(self):
        """``h``, or ``(h, c)`` for an LSTM (what the layer takes as ``hx``)."""
        return self._state

    @property
    def layer(self):
        """The layer streamed."""
        return self._layer

    @property
    def batch_size(self):
        """Number of streams ``N``."""
        return self._n

    @property
    def max_chunk(self):
        """Longest chunk the buffers hold (longer chunks are split)."""
        return self._max_chunk

    @property
    def dtype(self):
        """The layer's dtype: inputs, outputs and states have it."""
        return self._dtype

    def __repr__(self):
        return (f"Streamer({self._layer!r}, batch_size={self.batch_size}, "
                f"max_chunk={self.max_chunk})")

    # ---------------------------------------------------------------------- step
    def step(self, x, reset=None, out=None):
        """Advance every stream by one step or a chunk of steps.

        Parameters
        ----------
        x : ndarray of shape (N, I), or (T, N, I) ((N, T, I) with batch_first)
            Input of one step (2-D) or of a chunk of ``T >= 1`` steps (3-D), in the
            layer's dtype (no casting; NaN and inf propagate as in the layer).
        reset : ndarray of bool, optional
            Episode starts: shape ``(N,)`` for one step, ``(T, N)`` (``(N, T)`` with
            batch_first) for a chunk.  A stream flagged at step ``t`` starts that step
            from the initial state.
        out : ndarray, optional
            Where to write the outputs: the shape ``y`` has (``(N, P)`` for one step,
            ``(T, N, P)`` / ``(N, T, P)`` for a chunk), the layer's dtype, C-contiguous,
            writeable, sharing no memory with ``x`` or ``reset``.

        Returns
        -------
        ndarray
            The last layer's output at every step (``out`` when given).
        """
        owner = "Streamer.step"
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(
                f"{owner}: this streamer is already running a call (from another "
                f"thread); a streamer is not shareable: give each thread its own")
        try:
            return self._step(owner, x, reset, out)
        finally:
            self._busy.release()

    __call__ = step

    def _step(self, owner, x, reset, out):
        layer = self._layer
        self._check_eval(layer, owner)
        self._refresh_weights(owner)
        L, N, I, H, P = self._dims
        bf = layer.batch_first
        x = _v._check_float_array(owner, "x", x, self._dtype, self._x_source)
        if np.may_share_memory(x, self._block):
            raise ValueError(f"{owner}: x shares memory with the streamer's state; pass a "
                             f"copy")
        single = x.ndim == 2
        if single:
            if x.shape[0] != N or x.shape[1] != I:
                raise ValueError(
                    f"{owner}: expected x of shape ({N}, {I}) (one step: batch_size, "
                    f"input_size) or a 3-D chunk, got {_v._shape_str(x.shape)}")
            T = 1
        elif x.ndim == 3:
            T = x.shape[1] if bf else x.shape[0]
            exp = (N, T, I) if bf else (T, N, I)
            if x.shape[0] != exp[0] or x.shape[1] != exp[1] or x.shape[2] != I or T < 1:
                lay = "(N, T, input_size) (batch_first)" if bf else \
                    "(T, N, input_size) (time-major)"
                raise ValueError(
                    f"{owner}: expected x of shape {lay} with N={N}, input_size={I} and "
                    f"T >= 1, got {_v._shape_str(x.shape)}")
        else:
            raise ValueError(
                f"{owner}: x must be 2-D (N, input_size) for one step or 3-D for a chunk, "
                f"got a {x.ndim}-D array of shape {_v._shape_str(x.shape)}")
        if reset is not None:
            if single:
                reset = self._check_mask(owner, "reset", reset, (N,), "(N,) for one step")
            else:
                reset = self._check_mask(owner, "reset", reset, (N, T) if bf else (T, N),
                                         "(N, T) (batch_first)" if bf else "(T, N)")
        if out is None:
            shape = (N, P) if single else ((N, T, P) if bf else (T, N, P))
            # a huge (e.g. broadcast) x must not turn into a huge allocation here
            nbytes = int(np.prod(shape, dtype=object)) * self._dtype.itemsize
            limit = _v.available_memory_bytes()
            if nbytes > limit:
                raise ValueError(
                    f"{owner}: the output of this call would take {nbytes / 2**30:.3g} GiB, "
                    f"more than the {limit / 2**30:.3g} GiB of memory of this machine "
                    f"(x of shape {_v._shape_str(x.shape)}); feed fewer steps per call")
            out = np.empty(shape, self._dtype)
        else:
            self._check_out(owner, out, x, reset, single, T, bf)

        # time-major views of one piece [t0, t1) of the chunk
        x_direct = single or (not bf and x.flags.c_contiguous)
        out_direct = single or not bf
        nthreads = _config.get_num_threads()
        t0 = 0
        while t0 < T:
            t1 = min(T, t0 + self._max_chunk)
            if reset is None or self._n == 0:
                self._run(x, out, t0, t1, single, bf, x_direct, out_direct, nthreads)
            else:
                # the piece's mask, copied time-major; the reset steps are found with
                # argmax over contiguous rows (reductions like any() would allocate)
                n, N = t1 - t0, self._n
                rb = self._rbuf[:n]
                if single:
                    np.copyto(rb[0], reset)
                elif bf:
                    np.copyto(rb, reset[:, t0:t1].T)
                else:
                    np.copyto(rb, reset[t0:t1])
                s0 = 0
                while s0 < n:   # one pass per segment between reset steps
                    row = rb[s0]
                    if row[row.argmax()]:
                        self._apply_reset(row)
                    s1 = n
                    if s0 + 1 < n:
                        rest = rb[s0 + 1:].reshape(-1)
                        k = int(rest.argmax())
                        if rest[k]:
                            s1 = s0 + 1 + k // N
                    self._run(x, out, t0 + s0, t0 + s1, single, bf, x_direct, out_direct,
                              nthreads)
                    s0 = s1
            t0 = t1
        return out

    def _run(self, x, out, t0, t1, single, bf, x_direct, out_direct, nthreads):
        """All layers over steps [t0, t1) of the call (no resets inside)."""
        L = self._dims[0]
        n = t1 - t0
        if single:
            xin = x[None] if x.flags.c_contiguous else None
            if xin is None:
                xin = self._xbuf[:1]
                np.copyto(xin[0], x)
        elif x_direct:
            xin = x[t0:t1]
        else:
            xin = self._xbuf[:n]
            np.copyto(xin, x[:, t0:t1].transpose(1, 0, 2) if bf else x[t0:t1])
        gx = self._gx[:n]
        cell, lstm, ref = self._cell, self._lstm, self._backend == "reference"
        for l in range(L):
            last = l == L - 1
            if not last:
                y = self._ybuf[l % 2][:n]
            elif single:
                y = out[None]
            elif out_direct:
                y = out[t0:t1]
            else:
                y = self._obuf[:n]
            w_ih, w_hh, b_ih, b_hh, w_hr, pack, cell, kw = self._weights[l]
            h_l, c_l = self._h_l[l], self._c_l[l]
            if ref:
                from . import _reference
                ry, rh, rc, _ = _reference.layer_forward(
                    cell, xin, h_l, c_l, w_ih, w_hh, b_ih, b_hh, w_hr=w_hr,
                    reset_after=self._layer.reset_after, **kw)
                np.copyto(y, ry)
                np.copyto(self._hn, rh)
                if lstm:
                    np.copyto(self._cn, rc)
            else:
                self._cpu.layer_forward_into(
                    cell, xin, h_l, c_l, w_ih, w_hh, b_ih, b_hh, w_hr,
                    self._layer.reset_after, pack, y, self._hn, self._cn, gx, nthreads,
                    **kw)
            np.copyto(h_l, self._hn)
            if lstm:
                np.copyto(c_l, self._cn)
            xin = y
        if not single and not out_direct:
            np.copyto(out[:, t0:t1], self._obuf[:n].transpose(1, 0, 2))

    # ------------------------------------------------------------------ helpers
    def _apply_reset(self, m):
        """Streams where the (N,) bool ``m`` is True back to the initial state."""
        where = m[None, :, None]
        np.copyto(self._h, self._h0, where=where)
        if self._lstm:
            np.copyto(self._c, self._c0, where=where)

    def _guard(self, owner):
        return _Busy(self._busy, owner)

    @staticmethod
    def _cell_of(layer):
        cell = layer.mode.lower()
        if cell.startswith("rnn"):
            cell = "rnn_" + _v.check_nonlinearity(type(layer).__name__, layer.nonlinearity)
        return cell

    @staticmethod
    def _check_eval(layer, owner):
        if layer.training:
            raise RuntimeError(
                f"{owner}: the layer is in training mode; call layer.eval() first "
                f"(streaming is inference: no dropout, no gradients)")

    def _refresh_weights(self, owner):
        """Use the layer's current weights: the fast path checks, without allocating,
        that nothing changed since the last call; otherwise the weights are validated
        and packed again (as the layer's own eval-mode call does)."""
        layer = self._layer
        params = self._params
        # (backend 'reference': no pack locks the parameters, so re-read at every call;
        # the general kernels of the ONNX options use no pack but the same locks)
        if params is not None and layer._backend == "cpu" and self._backend == "cpu" \
                and layer.mode == self._mode and layer.reset_after is self._reset_after \
                and layer._packs is self._packs:
            for name, arr in params:
                if getattr(layer, name, None) is not arr:
                    break
            else:
                return
        with _PACK_LOCK:
            self._reload_weights(owner)

    def _reload_weights(self, owner):
        layer = self._layer
        cell = self._cell_of(layer)
        if cell != self._cell:
            raise ValueError(
                f"{owner}: the layer's mode changed from {self._cell!r} to {cell!r} "
                f"after the streamer was made; make a new streamer")
        L, N, I, H, P = self._dims
        backend = layer._backend
        if backend not in ("cpu", "reference"):
            raise ValueError(f"{owner}: the layer's backend {backend!r} cannot stream "
                             f"(use 'cpu' or 'reference')")
        params = layer._params()
        sig = tuple((id(a), getattr(a, "shape", None), getattr(a, "dtype", None),
                     getattr(getattr(a, "flags", None), "c_contiguous", None))
                    for a in params.values())
        peep = layer._options["peephole"]
        shapes = _F._shapes(cell, I, H, L, 1, layer.bias, layer.proj_size, peep)
        # validated every time (cheap, rare): a failure leaves nothing half-updated
        checked = _v.check_params(type(layer).__name__, params, shapes, self._dtype)
        packs = None
        if backend == "cpu":
            from . import _cpu
            self._cpu = _cpu
            if sig != layer._checked_sig:
                layer._release_packs()
            packs = layer._packs or layer._make_packs(cell, params)
            layer._checked_sig = sig
        names = _F._names(L, 1, layer.bias, layer.proj_size, peep)
        # the ONNX options (activations, clip, input_forget, peepholes) as the layer's own
        # call passes them: only non-default ones, which select the general kernels
        cell_d, extra = _F._direction_options(cell, layer._options, 0)
        weights = []
        for idx, nm in enumerate(names):
            def native(key):
                if key not in nm:
                    return None
                a = checked[nm[key]]
                return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))
            kw = dict(extra)
            if peep:
                kw["w_peep"] = native("weight_peep")
            pack = packs[idx] if packs is not None and not kw and cell_d == cell else None
            weights.append((native("weight_ih"), native("weight_hh"), native("bias_ih"),
                            native("bias_hh"), native("weight_hr"), pack, cell_d, kw))
        self._weights = weights
        self._packs = packs
        self._backend = backend
        self._mode = layer.mode
        self._reset_after = layer.reset_after
        self._params = [(name, params[name]) for name in params]

    def _check_mask(self, owner, name, mask, shape, meaning):
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            raise TypeError(
                f"{owner}: {name} must be None or a numpy.ndarray of dtype bool and shape "
                f"{meaning}, got {_v.describe(mask)}"
                + ("; convert with np.asarray(..., dtype=bool)"
                   if isinstance(mask, (np.ndarray, list, tuple)) else ""))
        if mask.shape != shape:
            raise ValueError(
                f"{owner}: expected {name} of shape {_v._shape_str(shape)} ({meaning}), "
                f"got {_v._shape_str(mask.shape)}")
        return mask

    def _check_out(self, owner, out, x, reset, single, T, bf):
        L, N, I, H, P = self._dims
        exp = (N, P) if single else ((N, T, P) if bf else (T, N, P))
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{owner}: out must be None or a numpy.ndarray, got "
                            f"{_v.describe(out)}")
        if out.dtype != self._dtype or not out.dtype.isnative:
            raise TypeError(
                f"{owner}: out must have the layer's dtype {self.dtype.name} (native byte "
                f"order), got {out.dtype}")
        if out.shape != exp:
            raise ValueError(
                f"{owner}: expected out of shape {_v._shape_str(exp)}, got "
                f"{_v._shape_str(out.shape)}")
        if not out.flags.c_contiguous:
            raise ValueError(f"{owner}: out must be C-contiguous "
                             f"(np.empty({_v._shape_str(exp)}, dtype=...))")
        if not out.flags.writeable:
            raise ValueError(f"{owner}: out is read-only")
        for other, what in ((x, "x"), (reset, "reset")):
            if other is not None and np.may_share_memory(out, other) \
                    and np.shares_memory(out, other):
                raise ValueError(f"{owner}: out shares memory with {what}; pass a separate "
                                 f"array")
        if np.may_share_memory(out, self._block):
            raise ValueError(f"{owner}: out shares memory with the streamer's state")

    def _check_state(self, owner, name, state, allow_shared):
        L, N, I, H, P = self._dims
        lstm = self._lstm
        if lstm:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise TypeError(f"{owner}: {name} must be a tuple (h, c) of two arrays for "
                                f"an LSTM, got {_v.describe(state)}")
            h, c = state
        else:
            h, c = state, None
        src = self._x_source

        def one(what, value, F, meaning):
            value = _v._check_float_array(owner, what, value, self._dtype, src)
            if value.shape == (L, N, F):
                return value
            if allow_shared and value.shape == (L, F):
                return value[:, None, :]
            extra = f" or ({L}, {F}) (the same for every stream)" if allow_shared else ""
            raise ValueError(
                f"{owner}: expected {what} of shape ({L}, {N}, {F}) (num_layers, "
                f"batch_size, {meaning}){extra}, got {_v._shape_str(value.shape)}")

        h = one("h" if lstm else name, h, P, "proj_size" if self._layer.proj_size
                else "hidden_size")
        if lstm:
            c = one("c", c, H, "hidden_size")
        return h, c
