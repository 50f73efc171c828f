"""PyTorch <-> rnnfast: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` and their state dicts.

rnnfast uses PyTorch's parameter names, shapes and gate orders, so the conversion
copies arrays and the configuration.  torch is imported only by :func:`to_torch`.
"""

import re
from collections import OrderedDict

import numpy as np

from .. import _validation as _v
from . import _common as _c

__all__ = ["from_torch", "from_torch_state_dict", "to_torch_state_dict", "to_torch"]

_TORCH_MODES = {"RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu", "LSTM": "lstm",
                "GRU": "gru"}
_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")


def _float_dtype(owner, dtype, source_dtype):
    if dtype is not None:
        return _v.check_dtype(owner, dtype)
    try:
        return _v.check_dtype(owner, source_dtype)
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: the parameters have dtype {source_dtype}; rnnfast computes in "
            f"float32 or float64: pass dtype=np.float32 or np.float64 to convert") from None


def from_torch(module, *, dtype=None, backend="cpu"):
    """An rnnfast layer computing what a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` computes.

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU
        Any configuration: ``num_layers``, ``bidirectional``, ``batch_first``,
        ``bias``, ``dropout``, ``proj_size`` (LSTM), ``nonlinearity`` (RNN).
    dtype : {numpy.float32, numpy.float64}, optional
        Dtype of the new layer; by default the module's (float16 / bfloat16 modules
        need an explicit dtype).
    backend : {'cpu', 'reference'}, default 'cpu'

    Returns
    -------
    RNN, LSTM or GRU
        A new layer in the module's training / eval mode, holding copies of the
        parameters; for float32 / float64 modules they are bitwise equal.

    Raises
    ------
    TypeError
        ``module`` is not a PyTorch recurrent layer (cells ``nn.LSTMCell`` etc. are
        not layers: wrap them, or use :func:`from_torch_state_dict`).
    """
    owner = "from_torch"
    mode = getattr(module, "mode", None)
    if (not isinstance(mode, str) or mode not in _TORCH_MODES
            or not hasattr(module, "state_dict") or not hasattr(module, "hidden_size")):
        raise TypeError(f"{owner}: module must be a torch.nn.RNN, LSTM or GRU, got "
                        f"{_v.describe(module)}")
    state = module.state_dict()
    params = OrderedDict()
    for k, v in state.items():
        params[k] = _c.as_float_array(owner, f"parameter {k!r}", v)
    if not params:
        raise ValueError(f"{owner}: the module has no parameters")
    first = next(iter(params.values()))
    dtype = _float_dtype(owner, dtype, first.dtype)
    cell = _TORCH_MODES[mode]
    layer = _c.make_layer(
        owner, cell, input_size=int(module.input_size), hidden_size=int(module.hidden_size),
        num_layers=int(module.num_layers), bias=bool(module.bias),
        batch_first=bool(module.batch_first), dropout=float(module.dropout),
        bidirectional=bool(module.bidirectional),
        proj_size=int(getattr(module, "proj_size", 0) or 0), dtype=dtype, backend=backend,
        params={k: v.astype(dtype, copy=False) for k, v in params.items()})
    return layer.train(bool(getattr(module, "training", True)))


def from_torch_state_dict(state_dict, mode=None, *, prefix="", nonlinearity=None,
                          batch_first=False, dropout=0.0, dtype=None, backend="cpu",
                          reset_after=True):
    """An rnnfast layer from a PyTorch recurrent layer's ``state_dict``.

    Sizes come from the shapes: ``input_size``, ``hidden_size``, ``proj_size``,
    ``num_layers``, ``bidirectional``, ``bias`` and the number of gates (1 RNN,
    3 GRU, 4 LSTM).  What shapes cannot tell is a keyword.

    Parameters
    ----------
    state_dict : mapping of str to array-like
        ``module.state_dict()`` (tensors or arrays); keys ``weight_ih_l0`` ... .
    mode : {'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU'}, optional
        Checked against the shapes when given; inferred otherwise.
    prefix : str, default ''
        Only keys starting with ``prefix`` are used, with it removed (e.g.
        ``'encoder.rnn.'`` for a submodule of a model's state dict).
    nonlinearity : {'tanh', 'relu'}, optional
        For RNN (default tanh, or as ``mode`` says).
    batch_first, dropout : as the layers' arguments
    dtype : {numpy.float32, numpy.float64}, optional
        Default: the dtype of the arrays.
    backend : {'cpu', 'reference'}, default 'cpu'
    reset_after : bool, default True
        GRU only; PyTorch's GRU is ``reset_after=True``.

    Raises
    ------
    ValueError
        Names or shapes that no PyTorch recurrent layer has, naming the key.
    TypeError
        Not a mapping, or values that are not float arrays.
    """
    owner = "from_torch_state_dict"
    if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
        raise TypeError(f"{owner}: state_dict must be a mapping of names to arrays, got "
                        f"{_v.describe(state_dict)}")
    if not isinstance(prefix, str):
        raise TypeError(f"{owner}: prefix must be a str, got {_v.describe(prefix)}")
    arrays = {}
    for key in list(state_dict.keys()):
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if not _KEY.match(name):
            raise ValueError(f"{owner}: unexpected key {key!r}: expected PyTorch "
                             f"recurrent parameter names such as 'weight_ih_l0'")
        arrays[name] = _c.as_float_array(owner, f"state_dict[{key!r}]", state_dict[key])
    if "weight_ih_l0" not in arrays or "weight_hh_l0" not in arrays:
        raise ValueError(f"{owner}: state_dict lacks 'weight_ih_l0' / 'weight_hh_l0'"
                         + (f" under prefix {prefix!r}" if prefix else ""))
    w_ih, w_hh = arrays["weight_ih_l0"], arrays["weight_hh_l0"]
    if w_ih.ndim != 2 or w_hh.ndim != 2 or min(w_hh.shape) < 1 or w_ih.shape[1] < 1:
        raise ValueError(f"{owner}: weight_ih_l0 and weight_hh_l0 must be non-empty "
                         f"matrices, got shapes {w_ih.shape} and {w_hh.shape}")
    if "weight_hr_l0" in arrays:
        w_hr = arrays["weight_hr_l0"]
        if w_hr.ndim != 2:
            raise ValueError(f"{owner}: weight_hr_l0 must be a matrix, got shape "
                             f"{w_hr.shape}")
        proj_size, hidden_size = w_hr.shape
        if w_hh.shape[0] != 4 * hidden_size:
            raise ValueError(f"{owner}: with weight_hr_l0 of shape {w_hr.shape} (an LSTM "
                             f"with projection), weight_hh_l0 must have "
                             f"{4 * hidden_size} rows, got {w_hh.shape[0]}")
        gates = 4
    else:
        proj_size = 0
        hidden_size = w_hh.shape[1]
        gates, rem = divmod(w_hh.shape[0], hidden_size)
        if rem or gates not in (1, 3, 4):
            raise ValueError(f"{owner}: weight_hh_l0 of shape {w_hh.shape} is not (G*H, "
                             f"H) with G = 1 (RNN), 3 (GRU) or 4 (LSTM)")
    cells = {1: "rnn", 3: "gru", 4: "lstm"}
    cell = cells[gates]
    if mode is not None:
        want = _v.check_mode(owner, mode)
        if want.startswith("rnn") != (cell == "rnn") or (
                not want.startswith("rnn") and want != cell):
            raise ValueError(f"{owner}: mode {mode!r} does not match the shapes, which "
                             f"are those of a {cell.upper()} (weight_hh_l0 "
                             f"{w_hh.shape})")
        if want.startswith("rnn"):
            if nonlinearity is not None and nonlinearity != want[4:]:
                raise ValueError(f"{owner}: mode {mode!r} and nonlinearity "
                                 f"{nonlinearity!r} disagree")
            nonlinearity = want[4:]
    if cell == "rnn":
        cell = "rnn_" + _v.check_nonlinearity(owner, "tanh" if nonlinearity is None
                                              else nonlinearity)
    elif nonlinearity is not None:
        raise ValueError(f"{owner}: nonlinearity applies to RNN only, got "
                         f"{nonlinearity!r} for {cell.upper()}")
    num_layers = 0
    while f"weight_ih_l{num_layers}" in arrays:
        num_layers += 1
    bidirectional = "weight_ih_l0_reverse" in arrays
    bias = "bias_ih_l0" in arrays
    dtype = _float_dtype(owner, dtype, w_ih.dtype)
    return _c.make_layer(
        owner, cell, input_size=w_ih.shape[1], hidden_size=hidden_size,
        num_layers=num_layers, bias=bias, batch_first=batch_first, dropout=dropout,
        bidirectional=bidirectional, proj_size=proj_size, reset_after=reset_after,
        dtype=dtype, backend=backend,
        params={k: v.astype(dtype, copy=False) for k, v in arrays.items()})


def _check_torch_compatible(owner, layer):
    cell = _c.check_layer(owner, layer)
    if cell == "gru" and not layer.reset_after:
        raise ValueError(f"{owner}: a GRU with reset_after=False (Keras reset_after="
                         f"False, ONNX linear_before_reset=0) has no PyTorch equivalent")
    if _c.has_custom_semantics(layer, cell):
        opts = {k: v for k, v in _c.layer_options(layer).items()
                if v != _c.SEM_DEFAULTS[k]}
        raise ValueError(f"{owner}: PyTorch cannot represent the layer's ONNX options "
                         f"{opts}")
    return cell


def to_torch_state_dict(layer):
    """The layer's parameters under PyTorch's names: an ``OrderedDict`` of new NumPy
    arrays (bitwise copies), loadable with ``torch_module.load_state_dict({k:
    torch.from_numpy(v) for k, v in sd.items()})``.

    Raises
    ------
    ValueError
        For layers PyTorch cannot represent (GRU with ``reset_after=False``,
        non-default activations, clip, input_forget or peepholes).
    """
    owner = "to_torch_state_dict"
    _check_torch_compatible(owner, layer)
    return OrderedDict((name, np.array(p, copy=True)) for name, p in
                       layer.named_parameters())


def to_torch(layer):
    """A new ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` with the layer's configuration and
    parameters (same dtype), in the layer's training/eval mode.  Needs torch."""
    owner = "to_torch"
    cell = _check_torch_compatible(owner, layer)
    try:
        import torch
    except ImportError:
        raise ImportError(f"{owner} needs PyTorch (pip install torch); "
                          f"to_torch_state_dict() does not") from None
    tdtype = {np.dtype(np.float32): torch.float32,
              np.dtype(np.float64): torch.float64}[np.dtype(layer.dtype)]
    common = dict(num_layers=layer.num_layers, bias=layer.bias,
                  batch_first=layer.batch_first, dropout=layer.dropout,
                  bidirectional=layer.bidirectional, dtype=tdtype)
    if cell == "lstm":
        mod = torch.nn.LSTM(layer.input_size, layer.hidden_size,
                            proj_size=layer.proj_size, **common)
    elif cell == "gru":
        mod = torch.nn.GRU(layer.input_size, layer.hidden_size, **common)
    else:
        mod = torch.nn.RNN(layer.input_size, layer.hidden_size,
                           nonlinearity=cell[4:], **common)
    sd = to_torch_state_dict(layer)
    mod.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    mod.train(bool(layer.training))
    return mod
