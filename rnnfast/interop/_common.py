"""What every importer and exporter shares: building an rnnfast layer from a
configuration and parameters, and reading the ONNX-semantics options of a layer.

No framework is imported here.
"""

import inspect

import numpy as np

from .. import nn as _nn
from .._validation import describe

#: the options of the semantics contract, with their defaults
SEM_DEFAULTS = {"activations": None, "activation_alpha": None, "activation_beta": None,
                "clip": None, "input_forget": False, "peephole": False}

#: default activations of each cell, ONNX names, one direction
DEFAULT_ACTIVATIONS = {"rnn_tanh": ["Tanh"], "rnn_relu": ["Relu"],
                       "lstm": ["Sigmoid", "Tanh", "Tanh"], "gru": ["Sigmoid", "Tanh"]}

#: canonical spelling of the ONNX activation names
ACTIVATION_NAMES = {n.lower(): n for n in (
    "Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
    "HardSigmoid", "Elu", "Softsign", "Softplus")}

#: alpha / beta that ONNX Runtime's recurrent kernels use when a node gives none, for
#: the functions that take them (measured by the semantics work, docs/design.md; not
#: the operator-level defaults of the ONNX text)
ALPHA_DEFAULT = {"Affine": 0.0, "LeakyRelu": 0.01, "ThresholdedRelu": 0.0,
                 "ScaledTanh": 0.0, "HardSigmoid": 0.2, "Elu": 1.0}
BETA_DEFAULT = {"Affine": 0.0, "ScaledTanh": 0.0, "HardSigmoid": 0.5}

_CLASSES = {"rnn_tanh": _nn.RNN, "rnn_relu": _nn.RNN, "lstm": _nn.LSTM, "gru": _nn.GRU}


def sem_supported():
    """True when this rnnfast's layers take the ONNX-semantics options."""
    try:
        return "activations" in inspect.signature(_nn.LSTM.__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def layer_options(layer):
    """The ONNX-semantics options of ``layer`` (defaults when it has none)."""
    out = {}
    for k, default in SEM_DEFAULTS.items():
        v = getattr(layer, k, default)
        out[k] = default if v is None and default is not None else v
    return out


def has_custom_semantics(layer, cell):
    """True when ``layer`` uses any option beyond PyTorch's semantics."""
    opts = layer_options(layer)
    if opts["clip"] is not None or opts["input_forget"] or opts["peephole"]:
        return True
    acts = opts["activations"]
    if acts is None:
        return False
    D = 2 if layer.bidirectional else 1
    names = [ACTIVATION_NAMES.get(str(a).lower(), a) for a in acts]
    default = DEFAULT_ACTIVATIONS[cell]
    if names not in (default, default * D):
        return True
    # default names with explicit alpha/beta change nothing for sigmoid/tanh/relu
    return False


def make_layer(owner, cell, *, input_size, hidden_size, num_layers=1, bias=True,
               batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
               reset_after=True, dtype=np.float32, backend="cpu", params=None,
               options=None):
    """Build an rnnfast layer and load ``params`` (PyTorch names) into it.

    ``options`` holds non-default ONNX-semantics options; with an rnnfast that lacks
    them, the first one named is refused with a ValueError.
    """
    cls = _CLASSES[cell]
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first,
                  dropout=dropout, bidirectional=bidirectional, dtype=dtype,
                  backend=backend)
    if cell == "lstm":
        kwargs["proj_size"] = proj_size
    if cell.startswith("rnn"):
        kwargs["nonlinearity"] = cell[4:]
    if cell == "gru":
        kwargs["reset_after"] = reset_after
    opts = {k: v for k, v in (options or {}).items() if v != SEM_DEFAULTS.get(k)}
    if opts:
        if not sem_supported():
            name, value = next(iter(opts.items()))
            raise ValueError(
                f"{owner}: {name}={value!r} needs rnnfast's ONNX-semantics options "
                f"(activations, clip, input_forget, peephole), which this build of "
                f"rnnfast lacks")
        kwargs.update(opts)
    layer = cls(input_size, hidden_size, seed=0, **kwargs)
    if params is not None:
        layer.load_state_dict(params)
    return layer


def param_name(kind, layer, direction):
    return f"{kind}_l{layer}" + ("_reverse" if direction == 1 else "")


def check_layer(owner, layer):
    """``layer`` must be an rnnfast RNN, LSTM or GRU; return its cell name."""
    if not isinstance(layer, _nn._RNNBase):
        raise TypeError(f"{owner}: layer must be an rnnfast RNN, LSTM or GRU, got "
                        f"{describe(layer)}")
    return layer._cell if not isinstance(layer, _nn.RNN) else (
        "rnn_relu" if layer.nonlinearity == "relu" else "rnn_tanh")


def as_float_array(owner, name, value, dtype=None):
    """Array-like (tensors included, torch never imported) -> float ndarray."""
    try:
        arr = _nn._to_numpy(value)
    except Exception as exc:
        raise TypeError(f"{owner}: {name} cannot be converted to an array "
                        f"({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise TypeError(f"{owner}: {name} must be a real float array, got "
                        f"{describe(value)}")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    return arr


def gate_blocks(w, order, gates):
    """Reorder the gate blocks of ``w`` along axis 0: block ``k`` of the result is
    block ``order[k]`` of ``w`` (``gates`` blocks in all)."""
    H = w.shape[0] // gates
    return np.concatenate([w[k * H:(k + 1) * H] for k in order], axis=0)


def gate_blocks_last(w, order, gates):
    """As :func:`gate_blocks`, along the last axis."""
    H = w.shape[-1] // gates
    return np.concatenate([w[..., k * H:(k + 1) * H] for k in order], axis=-1)


def reversal_index(N, T, lengths):
    """``idx[n, t]``: the step that step ``t`` of sequence ``n`` becomes when every
    sequence is reversed within its own length (padding stays in place).  The map is
    its own inverse."""
    t = np.arange(T)[None, :]
    if lengths is None:
        return np.broadcast_to(T - 1 - t, (N, T))
    L = np.asarray(lengths, dtype=np.int64)[:, None]
    return np.where(t < L, L - 1 - t, t)


def reverse_time(a, idx, time_axis):
    """Apply :func:`reversal_index` ``idx`` (N, T) to ``a`` (time and batch axes
    0/1 in either order, features last)."""
    if time_axis == 0:
        return np.take_along_axis(a, idx.T[:, :, None], axis=0)
    return np.take_along_axis(a, idx[:, :, None], axis=1)


def run_reversed(layer, x, hx, lengths):
    """Run a unidirectional ``layer`` over every sequence backwards in time (from its
    own last valid step), as the reverse direction of a bidirectional layer does.

    Returns ``(y, h_n, c_n)``, ``y`` aligned with the original steps (0 past each
    length); ``c_n`` is None except for LSTM.
    """
    time_axis = 1 if layer.batch_first else 0
    N, T = x.shape[1 - time_axis], x.shape[time_axis]
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (N,) or lengths.dtype.kind not in "iu":
            raise ValueError(f"lengths must be integers of shape ({N},), got "
                             f"{describe(lengths)}")
        if lengths.size and (lengths.min() < 0 or lengths.max() > T):
            raise ValueError(f"lengths must lie in [0, {T}]")
    idx = reversal_index(N, T, lengths)
    xr = np.ascontiguousarray(reverse_time(x, idx, time_axis))
    y, state = layer(xr, hx, lengths)
    h_n, c_n = state if isinstance(state, tuple) else (state, None)
    return np.ascontiguousarray(reverse_time(y, idx, time_axis)), h_n, c_n
