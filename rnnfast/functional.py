r"""Stateless multi-layer, bidirectional recurrent networks: forward and backward.

This module composes the one-layer, one-direction primitive of a backend
(``layer_forward`` / ``layer_backward``, see ``docs/design.md``) into PyTorch's
stacked recurrent networks:

* ``num_layers`` layers; layer ``l > 0`` reads the concatenation (feature axis) of
  layer ``l - 1``'s outputs ``[forward, reverse]``;
* optional bidirectionality (``D = 2`` directions, the reverse one processing each
  sequence from its own last valid step);
* dropout between layers (training only): layer ``l > 0`` reads
  ``input * mask / (1 - p)``;
* initial / final states stacked as ``(num_layers * D, N, P)``, index
  ``layer * D + direction``;
* per-sequence ``lengths`` (padded batches, like ``pack_padded_sequence``);
* ``batch_first`` and unbatched (2-D) inputs.

All arrays are NumPy arrays.  Nothing here loops over time steps in Python; the only
Python loops run over layers and directions.

Modes
-----
``mode`` is one of PyTorch's mode strings ``'RNN_TANH'``, ``'RNN_RELU'``,
``'LSTM'``, ``'GRU'``, or the backend's cell names ``'rnn_tanh'``, ``'rnn_relu'``,
``'lstm'``, ``'gru'``; case does not matter.

Shapes
------
``T`` time steps, ``N`` sequences, ``I`` input features, ``H = hidden_size``,
``P = proj_size`` if ``proj_size > 0`` (LSTM only) else ``H``, ``D = 2`` if
bidirectional else 1, ``L = num_layers``, ``G`` gate blocks (1 RNN, 4 LSTM, 3 GRU).

==============  ============================  ==================  ==============
array           time-major (default)          ``batch_first``     unbatched
==============  ============================  ==================  ==============
x               (T, N, I)                     (N, T, I)           (T, I)
y               (T, N, D*P)                   (N, T, D*P)         (T, D*P)
h0, h_n         (L*D, N, P)                   (L*D, N, P)         (L*D, P)
c0, c_n (LSTM)  (L*D, N, H)                   (L*D, N, H)         (L*D, H)
lengths         (N,)                          (N,)                int or (1,)
==============  ============================  ==================  ==============

Parameters (the ``params`` mapping) use PyTorch's names and shapes:
``weight_ih_l{k}`` (G*H, I) for k = 0 and (G*H, D*P) for k > 0, ``weight_hh_l{k}``
(G*H, P), ``bias_ih_l{k}`` and ``bias_hh_l{k}`` (G*H,), ``weight_hr_l{k}`` (P, H)
with projection; suffix ``_reverse`` for the reverse direction.  See
:func:`param_shapes`.

Dtypes and copies
-----------------
The computation runs in the dtype of ``x``, float32 or float64.  Every other array
(parameters, states, gradients) must have that dtype already: nothing is cast
silently, a mismatch raises ``TypeError`` saying how to convert.  Inputs may be
non-contiguous, read-only or ndarray subclasses; they are never modified.  The
arrays handed to the backend are C-contiguous and time-major: a copy is made when
the input is not already so (``batch_first``, slices, non-native byte order), and
in training mode inputs, states and parameters are always copied, so that changing
them between forward and backward cannot corrupt the gradients.
"""

import functools
from typing import NamedTuple, Optional

import numpy as np

from . import _validation as _v

__all__ = [
    "rnn_forward",
    "rnn_backward",
    "param_shapes",
    "get_backend",
    "RNNOutput",
    "RNNGradients",
    "RNNCache",
    "onnx_activation_params",
]


class RNNOutput(NamedTuple):
    """Result of :func:`rnn_forward`.

    Attributes
    ----------
    y : ndarray
        Output features of the last layer at every step, ``(T, N, D*P)``
        (``(N, T, D*P)`` with ``batch_first``, ``(T, D*P)`` unbatched); exactly 0 at
        padded steps.
    h_n : ndarray
        Final hidden state of every layer and direction, ``(L*D, N, P)``
        (``(L*D, P)`` unbatched).
    c_n : ndarray or None
        Final cell state ``(L*D, N, H)`` (``(L*D, H)`` unbatched) for LSTM, else None.
    cache : RNNCache or None
        What :func:`rnn_backward` needs; only in training mode, else None.
    """

    y: np.ndarray
    h_n: np.ndarray
    c_n: Optional[np.ndarray]
    cache: Optional["RNNCache"]


class RNNGradients(NamedTuple):
    """Result of :func:`rnn_backward`.

    Attributes
    ----------
    dx : ndarray
        Gradient with respect to ``x``, same shape and layout as ``x``; exactly 0 at
        padded steps.
    dh0 : ndarray
        Gradient with respect to the initial hidden state, shape of ``h0`` (also when
        ``hx`` was None, i.e. zeros).
    dc0 : ndarray or None
        Gradient with respect to the initial cell state (LSTM), else None.
    grads : dict of str to ndarray
        Gradient of every parameter, keyed by PyTorch's names, in PyTorch's order.
    """

    dx: np.ndarray
    dh0: np.ndarray
    dc0: Optional[np.ndarray]
    grads: dict


class RNNCache:
    """Opaque state saved by a training-mode :func:`rnn_forward` for
    :func:`rnn_backward`.

    It owns private copies of the inputs and parameters of the forward pass, so the
    caller may modify or reuse its arrays in between.  It can be used for several
    backward calls (e.g. with different output gradients).
    """

    __slots__ = (
        "cell", "dtype", "T", "N", "I", "H", "P", "L", "D", "bias", "batch_first",
        "unbatched", "layer_caches", "masks", "backend", "names", "source",
    )

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def __repr__(self):
        return (
            f"RNNCache(mode={_v.MODE_OF_CELL[self.cell]!r}, T={self.T}, N={self.N}, "
            f"num_layers={self.L}, bidirectional={self.D == 2}, dtype={self.dtype})"
        )


# ----------------------------------------------------------------------------
# configuration helpers


@functools.lru_cache(maxsize=256)
def _names(L, D, bias, proj, peep=False):
    """PyTorch's parameter names per (layer, direction), in PyTorch's order.

    Cached: the result is shared, callers must not modify it.
    """
    out = []
    for layer in range(L):
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
            names = {"weight_ih": "weight_ih" + sfx, "weight_hh": "weight_hh" + sfx}
            if bias:
                names["bias_ih"] = "bias_ih" + sfx
                names["bias_hh"] = "bias_hh" + sfx
            if proj:
                names["weight_hr"] = "weight_hr" + sfx
            if peep:
                names["weight_peep"] = "weight_peep" + sfx
            out.append(names)
    return out


@functools.lru_cache(maxsize=256)
def _shapes(cell, I, H, L, D, bias, proj, peep=False):
    """``{name: shape}`` in PyTorch's order (no validation).

    Cached: the result is shared, callers must not modify it.
    """
    G = _v.GATES[cell]
    P = proj or H
    shapes = {}
    for idx, names in enumerate(_names(L, D, bias, proj, peep)):
        layer = idx // D
        in_f = I if layer == 0 else D * P
        shapes[names["weight_ih"]] = (G * H, in_f)
        shapes[names["weight_hh"]] = (G * H, P)
        if bias:
            shapes[names["bias_ih"]] = (G * H,)
            shapes[names["bias_hh"]] = (G * H,)
        if proj:
            shapes[names["weight_hr"]] = (P, H)
        if peep:
            shapes[names["weight_peep"]] = (3 * H,)
    return shapes


def param_shapes(mode, input_size, hidden_size, *, num_layers=1, bias=True,
                 bidirectional=False, proj_size=0, peephole=False):
    """Names and shapes of the parameters of a recurrent network, PyTorch's way.

    Parameters
    ----------
    mode : str
        ``'RNN_TANH'``, ``'RNN_RELU'``, ``'LSTM'``, ``'GRU'`` (or lowercase cell names).
    input_size, hidden_size : int
        Input features ``I`` and hidden features ``H`` (both >= 1).
    num_layers : int, default 1
    bias : bool, default True
    bidirectional : bool, default False
    proj_size : int, default 0
        LSTM projection size ``P`` (``0 <= P < H``).
    peephole : bool, default False
        LSTM only: include the peephole weights ``weight_peep_l{k}`` (3*H,), gate
        order (i, f, o).

    Returns
    -------
    dict of str to tuple of int
        ``{name: shape}`` in the order of PyTorch's ``named_parameters()``, e.g.
        ``{'weight_ih_l0': (4*H, I), 'weight_hh_l0': (4*H, H), 'bias_ih_l0': (4*H,),
        ...}``.
    """
    owner = "param_shapes"
    cell = _v.check_mode(owner, mode)
    cfg = _v.check_config(owner, cell, input_size, hidden_size, num_layers, bias,
                          bidirectional, proj_size, True)
    D = 2 if cfg["bidirectional"] else 1
    opts = _v.check_onnx_options(owner, cell, cfg["bidirectional"], peephole=peephole)
    _v.check_param_bytes(owner, cell, cfg["input_size"], cfg["hidden_size"],
                         cfg["num_layers"], D, cfg["bias"], cfg["proj_size"], 4)
    return _shapes(cell, cfg["input_size"], cfg["hidden_size"], cfg["num_layers"],
                   2 if cfg["bidirectional"] else 1, cfg["bias"], cfg["proj_size"],
                   opts["peephole"])


_BACKENDS = {}


def get_backend(backend="cpu"):
    """Import and return the backend module for ``backend``.

    Parameters
    ----------
    backend : {'cpu', 'reference'} or module
        ``'cpu'`` is the compiled backend ``rnnfast._cpu``; ``'reference'`` the pure
        NumPy oracle ``rnnfast._reference``.  An object providing ``layer_forward``
        and ``layer_backward`` is returned as is.

    Raises
    ------
    ValueError
        Unknown backend name.
    ImportError
        The compiled backend is not built / cannot be imported.
    """
    backend = _v.check_backend("get_backend", backend)
    if not isinstance(backend, str):
        return backend
    mod = _BACKENDS.get(backend)
    if mod is not None:
        return mod
    if backend == "reference":
        from . import _reference as mod
    else:
        try:
            from . import _cpu as mod
        except ImportError as exc:
            raise ImportError(
                "rnnfast: the compiled backend 'cpu' (rnnfast._cpu) cannot be imported "
                f"({exc}); build it (pip install -e . or python setup.py build_ext "
                "--inplace) or use backend='reference'"
            ) from exc
        if not hasattr(mod, "layer_forward"):
            raise ImportError(
                "rnnfast: the compiled backend 'cpu' (rnnfast._cpu) is not built: it has "
                "no layer_forward; build it (pip install -e .) or use backend='reference'"
            )
    _BACKENDS[backend] = mod
    return mod


# ----------------------------------------------------------------------------
# the stack


def _layout_shape(T, N, F, batch_first, unbatched):
    if unbatched:
        return (T, F)
    return (N, T, F) if batch_first else (T, N, F)


def _layout_meaning(batch_first, unbatched, what):
    if unbatched:
        return f"{what}, unbatched"
    return f"{what}, batch_first" if batch_first else f"{what}, time-major"


def _to_internal(a, batch_first, unbatched, copy):
    """User layout -> time-major (T, N, F) C-contiguous (a copy if ``copy``)."""
    if unbatched:
        a = a[:, None, :]
    elif batch_first:
        a = a.transpose(1, 0, 2)
    if copy:
        return np.array(a, order="C", copy=True)
    return np.ascontiguousarray(a)


def _to_user(a, batch_first, unbatched):
    """Time-major (T, N, F) -> user layout (C-contiguous; a fresh array for batch_first)."""
    if unbatched:
        return a[:, 0, :]
    if batch_first:
        return np.ascontiguousarray(a.transpose(1, 0, 2))
    return a


def _forward(owner, cell, x, params, *, input_size, hidden_size, num_layers, bias,
             bidirectional, batch_first, proj_size, reset_after, dtype, hx, lengths,
             dropout, training, rng, dropout_masks, backend, checked_config=False,
             checked_params=False, packs=None, copy_params=True, options=None):
    """Shared implementation of :func:`rnn_forward` and the layers of ``rnnfast.nn``.

    ``owner`` prefixes every message.  ``dtype`` None means "the dtype of x";
    ``input_size`` None means "the feature size of x".  With ``checked_config`` the
    caller guarantees the configuration arguments are already validated, with
    ``checked_params`` that ``params`` passed :func:`_validation.check_params` for this
    configuration and dtype (a layer calling again with the same arrays).  ``packs``
    (cpu backend, inference) holds one ``rnnfast._cpu.PackedWeights`` per layer and
    direction, in ``layer * D + direction`` order.  With ``copy_params=False`` a training
    call keeps references to the parameters instead of copies: the caller (a layer)
    guarantees they do not change until the cache is released.  ``options`` is the
    result of :func:`_validation.check_onnx_options` (None: the default semantics).
    """
    backend = _v.check_backend(owner, backend)
    if not checked_config:
        cfg = _v.check_config(owner, cell, input_size, hidden_size, num_layers, bias,
                              bidirectional, proj_size, reset_after, batch_first,
                              infer_input_size=input_size is None)
        hidden_size, num_layers = cfg["hidden_size"], cfg["num_layers"]
        bias, bidirectional = cfg["bias"], cfg["bidirectional"]
        batch_first, proj_size = cfg["batch_first"], cfg["proj_size"]
        reset_after = cfg["reset_after"]
        input_size = cfg.get("input_size")
    training = _v.check_bool(owner, "training", training)
    dropout = _v.check_dropout(owner, dropout)
    if options is None:
        options = _v.check_onnx_options(owner, cell, bidirectional)
    peep = options["peephole"]

    x, unbatched = _v.check_x(owner, x, input_size, dtype, batch_first)
    source = None
    if dtype is None:
        dtype = x.dtype
        source = f"x has dtype {dtype.name}"
    dtype = np.dtype(dtype)
    if unbatched:
        T, N = x.shape[0], 1
    elif batch_first:
        N, T = x.shape[0], x.shape[1]
    else:
        T, N = x.shape[0], x.shape[1]
    I = x.shape[-1]
    H, L, D = hidden_size, num_layers, 2 if bidirectional else 1
    P = proj_size or H
    is_lstm = cell == "lstm"

    # parameters: presence, shape, dtype (size first: the name list grows with L)
    if not checked_params:
        _v.check_param_bytes(owner, cell, I, H, L, D, bias, proj_size, dtype.itemsize)
        shapes = _shapes(cell, I, H, L, D, bias, proj_size, peep)
        params = _v.check_params(owner, params, shapes, dtype, source)

    # initial states
    h0 = c0 = None
    if hx is not None:
        if is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(
                    f"{owner}: hx must be a tuple (h0, c0) of two arrays for LSTM, got "
                    f"{_v.describe(hx)}"
                )
            h0 = _v.check_state(owner, "h0", hx[0], (L * D, N, P), dtype, unbatched,
                                "num_layers * num_directions, N, "
                                + ("proj_size" if proj_size else "hidden_size"), source)
            c0 = _v.check_state(owner, "c0", hx[1], (L * D, N, H), dtype, unbatched,
                                "num_layers * num_directions, N, hidden_size", source)
        else:
            h0 = _v.check_state(owner, "hx", hx, (L * D, N, P), dtype, unbatched,
                                "num_layers * num_directions, N, hidden_size", source)

    if lengths is not None:
        lengths = _v.check_lengths(owner, lengths, N, T, unbatched)

    use_dropout = training and dropout > 0 and L > 1
    masks_in = None
    mask_shapes = [_layout_shape(T, N, D * P, batch_first, unbatched)] * (L - 1)
    if isinstance(dropout_masks, (list, tuple)) and len(dropout_masks) == 0 and L == 1:
        dropout_masks = None  # nothing to mask in a single layer
    if dropout_masks is not None:
        if not use_dropout:
            raise ValueError(
                f"{owner}: dropout_masks given, but dropout is only applied in training "
                f"mode with dropout > 0 and num_layers > 1 (training={training}, "
                f"dropout={dropout}, num_layers={L})"
            )
        masks_in = _v.check_dropout_masks(owner, dropout_masks, mask_shapes)
    elif use_dropout:
        rng = _v.check_seed(owner, rng, "rng")

    _v.check_workspace(owner, T, N, I, H, proj_size, L, D, cell, dtype.itemsize, training)

    mod = get_backend(backend)

    # ---- conversion to the backend's layout (copies in training: see module doc)
    copy = training
    xt = _to_internal(x, batch_first, unbatched, copy)
    copy_w = copy and copy_params
    w = {k: (np.array(a, order="C", copy=True) if copy_w else np.ascontiguousarray(a))
         for k, a in params.items()}
    if h0 is not None:
        h0 = np.array(h0, order="C", copy=True) if copy else np.ascontiguousarray(h0)
    if c0 is not None:
        c0 = np.array(c0, order="C", copy=True) if copy else np.ascontiguousarray(c0)

    # dropout masks, time-major, already scaled by 1 / (1 - p) (0 when p == 1)
    scaled_masks = [None] * L
    if use_dropout:
        scale = 0.0 if dropout >= 1.0 else 1.0 / (1.0 - dropout)
        for layer in range(1, L):
            if masks_in is not None:
                m = _to_internal(masks_in[layer - 1], batch_first, unbatched, False)
                m = m.astype(dtype, copy=True)
            else:
                m = (rng.random((T, N, D * P)) >= dropout).astype(dtype)
            m *= dtype.type(scale)
            scaled_masks[layer] = m

    names = _names(L, D, bias, proj_size, peep)
    layer_caches = []
    h_list, c_list = [], []
    inp = xt
    ys = None
    for layer in range(L):
        if layer > 0:
            inp = ys[0] if D == 1 else _concat_directions(mod, ys)
            if scaled_masks[layer] is not None:
                if D == 1:
                    inp = inp * scaled_masks[layer]
                else:
                    inp *= scaled_masks[layer]
        ys = []
        caches = []
        calls = []
        for d in range(D):
            idx = layer * D + d
            nm = names[idx]
            h0_ld = h0[idx] if h0 is not None else np.zeros((N, P), dtype=dtype)
            c0_ld = None
            if is_lstm:
                c0_ld = c0[idx] if c0 is not None else np.zeros((N, H), dtype=dtype)
            cell_d, extra = _direction_options(cell, options, d)
            if packs is not None and not extra and cell_d == cell:
                extra["packed"] = packs[idx]
            if peep:
                extra["w_peep"] = w[nm["weight_peep"]]
            calls.append(dict(
                cell=cell_d, x=inp, h0=h0_ld, c0=c0_ld, w_ih=w[nm["weight_ih"]],
                w_hh=w[nm["weight_hh"]], b_ih=w[nm["bias_ih"]] if bias else None,
                b_hh=w[nm["bias_hh"]] if bias else None,
                w_hr=w[nm["weight_hr"]] if proj_size else None, lengths=lengths,
                reverse=(d == 1), reset_after=reset_after, training=training, **extra))
        if D == 2 and hasattr(mod, "layer_forward_pair"):
            # the backend may run both directions at once (one per core)
            results = mod.layer_forward_pair(calls[0], calls[1])
        else:
            results = [mod.layer_forward(**kw) for kw in calls]
        for y_d, hn_d, cn_d, cache_d in results:
            ys.append(y_d)
            h_list.append(hn_d)
            if is_lstm:
                c_list.append(cn_d)
            caches.append(cache_d)
        layer_caches.append(caches)

    y = ys[0] if D == 1 else _concat_directions(mod, ys)
    del ys, inp
    # fresh arrays from the backend: one layer-direction needs no copy
    h_n = h_list[0][None] if len(h_list) == 1 else np.stack(h_list)
    c_n = None
    if is_lstm:
        c_n = c_list[0][None] if len(c_list) == 1 else np.stack(c_list)

    y = _to_user(y, batch_first, unbatched)
    if unbatched:
        h_n = h_n[:, 0, :]
        if c_n is not None:
            c_n = c_n[:, 0, :]

    cache = None
    if training:
        cache = RNNCache(
            cell=cell, dtype=dtype, T=T, N=N, I=I, H=H, P=P, L=L, D=D, bias=bias,
            batch_first=batch_first, unbatched=unbatched, layer_caches=layer_caches,
            masks=scaled_masks, backend=mod, names=names,
            source=None if source is None else f"the forward pass ran in {dtype.name}",
        )
    return RNNOutput(y, h_n, c_n, cache)


def _direction_options(cell, options, d):
    """The backend cell and ONNX keyword arguments of direction ``d``.

    Only non-default options are passed, so that the default semantics reach the
    backend exactly as before (the fast kernels; backends without these options).
    An RNN whose activation is plain Tanh or Relu runs as ``rnn_tanh`` / ``rnn_relu``,
    an LSTM / GRU with its default activations without ``acts``.
    """
    extra = {}
    acts = options["acts"][d]
    if acts is not None:
        names = tuple(a[0] for a in acts)
        if cell in ("rnn_tanh", "rnn_relu") and names in (("tanh",), ("relu",)):
            cell = "rnn_" + names[0]
        elif (cell, names) not in (("lstm", ("sigmoid", "tanh", "tanh")),
                                   ("gru", ("sigmoid", "tanh"))):
            extra["acts"] = acts
    if options["clip"] is not None:
        extra["clip"] = options["clip"]
    if options["input_forget"]:
        extra["input_forget"] = True
    return cell, extra


def _fresh(mod, shape, dtype):
    """A new array for a result: leased from the backend's workspace where it has one
    (its memory serves a later call once the caller has dropped it), else np.empty."""
    ws = getattr(mod, "workspace", None)
    return ws.lease(shape, dtype) if ws is not None else np.empty(shape, dtype)


def _concat_directions(mod, ys):
    """The directions' outputs side by side, (T, N, D*P)."""
    T, N, P = ys[0].shape
    return np.concatenate(ys, axis=2, out=_fresh(mod, (T, N, len(ys) * P), ys[0].dtype))


def _backward(owner, cache, dy, dh_n, dc_n):
    """Shared implementation of :func:`rnn_backward` and ``rnnfast.nn`` layers."""
    if not isinstance(cache, RNNCache):
        raise TypeError(
            f"{owner}: cache must be the RNNCache returned by rnn_forward(..., "
            f"training=True), got {_v.describe(cache)}"
        )
    c = cache
    T, N, L, D, P, H = c.T, c.N, c.L, c.D, c.P, c.H
    dtype, unbatched, bf = c.dtype, c.unbatched, c.batch_first
    is_lstm = c.cell == "lstm"

    y_shape = _layout_shape(T, N, D * P, bf, unbatched)
    if dy is None:
        dyt = np.zeros((T, N, D * P), dtype=dtype)
    else:
        dy = _v.check_grad(owner, "dy", dy, y_shape, dtype,
                           "the shape of the output y: " + _layout_meaning(bf, unbatched, "y"),
                           c.source)
        dyt = _to_internal(dy, bf, unbatched, False)
    if dh_n is not None:
        dh_n = _v.check_state(owner, "dh_n", dh_n, (L * D, N, P), dtype, unbatched,
                              "the shape of h_n", c.source)
        dh_n = np.ascontiguousarray(dh_n)
    if dc_n is not None:
        if not is_lstm:
            raise ValueError(
                f"{owner}: dc_n is only meaningful for LSTM, this is "
                f"{_v.MODE_OF_CELL[c.cell]}"
            )
        dc_n = _v.check_state(owner, "dc_n", dc_n, (L * D, N, H), dtype, unbatched,
                              "the shape of c_n", c.source)
        dc_n = np.ascontiguousarray(dc_n)

    mod = c.backend
    ws = getattr(mod, "workspace", None)
    per_idx = [None] * (L * D)
    dy_layer = dyt
    dx = None
    for layer in range(L - 1, -1, -1):
        dx_sum = None
        args = []
        dys = []
        for d in range(D):
            idx = layer * D + d
            if D == 1:
                dy_d = dy_layer
            else:   # each direction's half of dy, contiguous (scratch of the call)
                dy_d = ws.take((T, N, P), dtype) if ws is not None else np.empty((T, N, P), dtype)
                np.copyto(dy_d, dy_layer[:, :, d * P:(d + 1) * P])
                dys.append(dy_d)
            args.append((c.layer_caches[layer][d], dy_d,
                         None if dh_n is None else dh_n[idx],
                         None if dc_n is None else dc_n[idx]))
        if D == 2 and hasattr(mod, "layer_backward_pair"):
            results = mod.layer_backward_pair(args[0], args[1])
        else:
            results = [mod.layer_backward(*a) for a in args]
        if ws is not None:
            ws.give(*dys)
        del args, dys
        for d, g in enumerate(results):
            per_idx[layer * D + d] = g
            gx = g["x"]
            if dx_sum is None:
                dx_sum = gx
            else:
                dx_sum = np.add(dx_sum, gx, out=_fresh(mod, gx.shape, gx.dtype))
        if layer > 0:
            if c.masks[layer] is not None:
                dx_sum = dx_sum * c.masks[layer]
            dy_layer = dx_sum
        else:
            dx = dx_sum

    grads = {}
    for idx in range(L * D):
        g = per_idx[idx]
        for key, name in c.names[idx].items():
            grads[name] = g[key]
    # PyTorch's order: by layer, direction, then ih, hh, b_ih, b_hh, hr (as _names)
    dh0 = np.stack([per_idx[i]["h0"] for i in range(L * D)])
    dc0 = np.stack([per_idx[i]["c0"] for i in range(L * D)]) if is_lstm else None
    dx = _to_user(dx, bf, unbatched)
    if unbatched:
        dh0 = dh0[:, 0, :]
        if dc0 is not None:
            dc0 = dc0[:, 0, :]
    return RNNGradients(dx, dh0, dc0, grads)


# ----------------------------------------------------------------------------
# public API


def onnx_activation_params(activations, activation_alpha=None, activation_beta=None):
    """Convert ONNX's packed ``activation_alpha`` / ``activation_beta`` to rnnfast's
    aligned lists.

    In an ONNX RNN / GRU / LSTM node the alpha (beta) list holds values only for the
    activations that take an alpha (beta), in the order of ``activations``; ONNX
    Runtime consumes them so.  rnnfast's ``activation_alpha`` / ``activation_beta``
    have one entry per activation instead.  Takers of alpha: Affine, LeakyRelu,
    ThresholdedRelu, ScaledTanh, HardSigmoid, Elu; of beta: Affine, ScaledTanh,
    HardSigmoid.  Activations left without a value get ONNX Runtime's default.

    Parameters
    ----------
    activations : list of str
        ONNX activation names (case-insensitive), as in the node.
    activation_alpha, activation_beta : list of float, optional
        The node's attributes.

    Returns
    -------
    (list of float, list of float)
        ``activation_alpha`` and ``activation_beta`` aligned with ``activations``.

    Raises
    ------
    ValueError
        An unknown activation name, or more values than takers.
    """
    owner = "onnx_activation_params"
    if isinstance(activations, (str, bytes)) or not isinstance(activations, (list, tuple)):
        raise TypeError(f"{owner}: 'activations' must be a list of ONNX activation names, "
                        f"got {_v.describe(activations)}")
    names = []
    for k, a in enumerate(activations):
        if not isinstance(a, str) or a.lower() not in _v.ACTIVATIONS:
            raise ValueError(
                f"{owner}: activations[{k}] must be one of "
                f"{', '.join(_v.ACTIVATIONS.values())}, got {a!r}")
        names.append(a.lower())
    out = []
    for attr, takers, which in (
            (activation_alpha, ("affine", "leakyrelu", "thresholdedrelu", "scaledtanh",
                                "hardsigmoid", "elu"), 0),
            (activation_beta, ("affine", "scaledtanh", "hardsigmoid"), 1)):
        label = "activation_alpha" if which == 0 else "activation_beta"
        values = list(_v._check_real_list(owner, label, attr, 1 << 30) or [])
        n_takers = sum(nm in takers for nm in names)
        if len(values) > n_takers:
            raise ValueError(
                f"{owner}: {label!r} has {len(values)} values but only {n_takers} of the "
                f"activations take one")
        it = iter(values)
        aligned = []
        for nm in names:
            v = next(it, None) if nm in takers else None
            aligned.append(_v.ACTIVATION_DEFAULTS[nm][which] if v is None else v)
        out.append(aligned)
    return out[0], out[1]


def rnn_forward(mode, x, params, *, num_layers, hidden_size, bias=True,
                bidirectional=False, batch_first=False, proj_size=0, reset_after=True,
                hx=None, lengths=None, dropout=0.0, training=False, rng=None,
                dropout_masks=None, backend="cpu", activations=None,
                activation_alpha=None, activation_beta=None, clip=None,
                input_forget=False, peephole=False):
    """Forward pass of a (multi-layer, optionally bidirectional) recurrent network.

    Parameters
    ----------
    mode : {'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU'}
        The cell (lowercase ``'rnn_tanh'``, ``'rnn_relu'``, ``'lstm'``, ``'gru'``
        accepted too).
    x : ndarray, shape (T, N, I), (N, T, I) with ``batch_first``, or (T, I)
        Input sequences, float32 or float64; the computation runs in this dtype.
        ``T >= 1``, ``N >= 0``.  A 2-D array is one unbatched sequence (whatever
        ``batch_first`` says).  Must be a ``numpy.ndarray`` (or subclass); lists and
        other array-likes are rejected, convert them with ``np.asarray(x,
        dtype=...)``.  NaN and inf propagate.
    params : mapping of str to ndarray
        Parameters under PyTorch's names (e.g. ``layer.state_dict()`` of an rnnfast
        or, after ``np.asarray``, a PyTorch layer), exactly the names of
        :func:`param_shapes`, all of the dtype of ``x``.
    num_layers : int
        Number of stacked layers ``L >= 1``.
    hidden_size : int
        Hidden features ``H >= 1``.
    bias : bool, default True
        Whether ``params`` holds ``bias_ih_*`` / ``bias_hh_*``.
    bidirectional : bool, default False
        Two directions (``D = 2``); outputs are concatenated ``[forward, reverse]``.
    batch_first : bool, default False
        ``x``, ``y`` (and ``dropout_masks``) are ``(N, T, F)``; states are not affected.
    proj_size : int, default 0
        LSTM only: project hidden states to ``P = proj_size < H`` features.
    reset_after : bool, default True
        GRU only: True is PyTorch's GRU (reset gate applied after the recurrent
        product); False is Keras' ``reset_after=False`` / ONNX
        ``linear_before_reset=0``.
    hx : ndarray or tuple of ndarray, optional
        Initial states, zeros when None.  RNN/GRU: ``h0`` of shape ``(L*D, N, P)``
        (``(L*D, P)`` unbatched).  LSTM: a tuple ``(h0, c0)`` with ``c0`` of shape
        ``(L*D, N, H)``.  Note that states are never batch-first.
    lengths : array-like of int, shape (N,), optional
        Valid length of every sequence, ``0 <= lengths[n] <= T`` (the
        ``pack_padded_sequence`` semantics; order does not matter).  Steps
        ``t >= lengths[n]`` are not computed: ``y`` is 0 there and ``h_n``/``c_n`` hold
        the state after each sequence's last valid step.
    dropout : float, default 0.0
        Dropout probability ``p`` in [0, 1] on the inputs of layers ``l > 0``;
        applied only when ``training`` is True.
    training : bool, default False
        Apply dropout and return a cache for :func:`rnn_backward`.
    rng : numpy.random.Generator or int, optional
        Source of the dropout masks (``rng.random(shape) >= p`` per layer, in layer
        order).  None draws from fresh OS entropy.
    dropout_masks : list of ndarray, optional
        Explicit keep-masks instead of random ones: ``num_layers - 1`` arrays, one
        per layer ``l >= 1``, of the shape of that layer's input in the layout of
        ``x`` (``(T, N, D*P)``, ``(N, T, D*P)`` or ``(T, D*P)``); 1 keeps, 0 drops.
        The input is multiplied by ``mask / (1 - p)``.  Only valid when dropout is
        applied.
    backend : {'cpu', 'reference'} or module, default 'cpu'
        ``'cpu'`` is the compiled backend, ``'reference'`` the NumPy oracle; an
        object providing ``layer_forward`` / ``layer_backward`` per
        ``docs/design.md`` is used as is.
    activations : list of str, optional
        ONNX activation functions (case-insensitive names: Relu, Tanh, Sigmoid,
        Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu, Softsign,
        Softplus), in ONNX order: RNN ``[f]``, GRU ``[f, g]`` (f for the z and r
        gates, g for n), LSTM ``[f, g, h]`` (f for i, f, o; g for the cell
        candidate; h for the output).  Bidirectional: one list for both directions,
        or the forward list followed by the reverse one.  None: the defaults
        (RNN: ``mode``'s nonlinearity; GRU Sigmoid, Tanh; LSTM Sigmoid, Tanh, Tanh).
    activation_alpha, activation_beta : list of float, optional
        Parameters aligned with ``activations`` (entry k belongs to
        ``activations[k]``); missing or None entries take ONNX Runtime's defaults
        (LeakyRelu alpha 0.01; ThresholdedRelu alpha 1; ScaledTanh 1, 1;
        HardSigmoid 0.2, 0.5; Elu alpha 1; Affine 1, 0).
    clip : float, optional
        Clamp every gate pre-activation to ``[-clip, clip]`` (after the biases, the
        recurrent product and the peephole terms; zero gradient where clamped).
    input_forget : bool, default False
        LSTM only: ONNX's coupled gates, ``f = 1 - i``.
    peephole : bool, default False
        LSTM only: ``params`` holds ``weight_peep_l{k}`` (3*H,) in gate order
        (i, f, o); i and f see ``P * c_{t-1}``, o sees ``P * c_t``.

    Returns
    -------
    RNNOutput
        Named tuple ``(y, h_n, c_n, cache)``; ``c_n`` is None except for LSTM,
        ``cache`` is None except in training mode.

    Raises
    ------
    TypeError
        A value of the wrong kind: non-ndarray data, a dtype other than float32 /
        float64, arrays of different dtypes, a float where an int is needed, ...
    ValueError
        A value out of range: a wrong shape, a missing or unexpected parameter,
        ``T = 0``, lengths out of ``[0, T]``, a workload larger than the memory.
    ImportError
        ``backend='cpu'`` while the compiled backend is not built.

    Examples
    --------
    >>> import numpy as np
    >>> from rnnfast import functional as F
    >>> rng = np.random.default_rng(0)
    >>> shapes = F.param_shapes('GRU', 3, 5)
    >>> params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    >>> out = F.rnn_forward('GRU', rng.standard_normal((7, 2, 3)), params,
    ...                     num_layers=1, hidden_size=5, backend='reference')
    >>> out.y.shape, out.h_n.shape
    ((7, 2, 5), (1, 2, 5))
    """
    owner = "rnn_forward"
    cell = _v.check_mode(owner, mode)
    options = _v.check_onnx_options(owner, cell, _v.check_bool(owner, "bidirectional",
                                                                bidirectional),
                                    activations, activation_alpha, activation_beta, clip,
                                    input_forget, peephole)
    return _forward(owner, cell, x, params, input_size=None, hidden_size=hidden_size,
                    num_layers=num_layers, bias=bias, bidirectional=bidirectional,
                    batch_first=batch_first, proj_size=proj_size,
                    reset_after=reset_after, dtype=None, hx=hx, lengths=lengths,
                    dropout=dropout, training=training, rng=rng,
                    dropout_masks=dropout_masks, backend=backend, options=options)


def rnn_backward(cache, dy=None, dh_n=None, dc_n=None):
    """Backward pass (backpropagation through time) of :func:`rnn_forward`.

    Parameters
    ----------
    cache : RNNCache
        ``rnn_forward(..., training=True).cache``.  Not modified; may be reused.
    dy : ndarray, optional
        Gradient of the loss with respect to ``y``, same shape and layout as ``y``;
        None means zeros (e.g. a loss on ``h_n`` only).  Ignored at padded steps.
    dh_n : ndarray, optional
        Gradient with respect to ``h_n``, shape of ``h_n``; None means zeros.
    dc_n : ndarray, optional
        LSTM only: gradient with respect to ``c_n``, shape of ``c_n``.

    Returns
    -------
    RNNGradients
        Named tuple ``(dx, dh0, dc0, grads)``: gradients with respect to ``x``
        (layout of ``x``, 0 at padded steps), ``h0`` and ``c0`` (shapes of ``h_n`` /
        ``c_n``; ``dc0`` None except for LSTM), and ``grads``, a dict of the gradient
        of every parameter keyed by PyTorch's names.  Dropout masks of the forward pass
        are applied.  All arrays are fresh and in the dtype of the forward pass.
    """
    return _backward("rnn_backward", cache, dy, dh_n, dc_n)
