"""Weight initialisation, in place, on NumPy arrays and layers.

Every function takes ``rng``: None, an int seed, or a ``numpy.random.Generator`` (then
used and advanced).  Values are drawn in float64 and rounded to the array's dtype.
Functions on arrays modify the array in place and return it.
"""

import math

import numpy as np

from . import _validation as _v

__all__ = ["orthogonal_", "xavier_uniform_", "xavier_normal_", "uniform_", "normal_", "zeros_",
           "pytorch_default_", "init_recurrent_"]


def _target(owner, array, min_ndim=1):
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise TypeError(f"{owner}: 'array' must be a float ndarray (modified in place), got "
                        f"{_v.describe(array)}")
    if array.ndim < min_ndim:
        raise ValueError(f"{owner}: 'array' must have at least {min_ndim} dimensions, got "
                         f"shape {array.shape}")
    if not array.flags.writeable:
        raise ValueError(f"{owner}: 'array' is read-only (a recurrent layer locks its "
                         f"parameters during eval/packed use: call layer.flatten_parameters())")
    return array


def _rng(owner, rng):
    return _v.check_seed(owner, rng, name="rng")


def _fans(array):
    """PyTorch's fan_in / fan_out: ``(out, in, *receptive)``."""
    if array.ndim < 2:
        raise ValueError(f"fan in/out need an array of at least 2 dimensions, got shape "
                         f"{array.shape}")
    receptive = int(np.prod(array.shape[2:], dtype=np.int64))
    return array.shape[1] * receptive, array.shape[0] * receptive


def orthogonal_(array, gain=1.0, rng=None):
    """Fill with a (semi-)orthogonal matrix, times ``gain`` (Saxe et al., 2013).

    The array is viewed as ``(rows, cols) = (shape[0], prod(shape[1:]))``; with
    ``rows >= cols`` the columns are orthonormal (``W^T W = I``), else the rows
    (``W W^T = I``).  QR of a Gaussian matrix with the signs of R's diagonal folded
    into Q, which makes Q uniformly (Haar) distributed.
    """
    _target("orthogonal_", array, 2)
    g = _rng("orthogonal_", rng)
    rows = array.shape[0]
    cols = array.size // rows
    a = g.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    d = np.sign(np.diag(r))
    d[d == 0] = 1
    q *= d
    if rows < cols:
        q = q.T
    array[...] = (gain * q).reshape(array.shape)
    return array


def xavier_uniform_(array, gain=1.0, rng=None):
    """U(-a, a) with ``a = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio)."""
    _target("xavier_uniform_", array, 2)
    fan_in, fan_out = _fans(array)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    array[...] = _rng("xavier_uniform_", rng).uniform(-a, a, array.shape)
    return array


def xavier_normal_(array, gain=1.0, rng=None):
    """N(0, std^2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    _target("xavier_normal_", array, 2)
    fan_in, fan_out = _fans(array)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    array[...] = _rng("xavier_normal_", rng).normal(0.0, std, array.shape)
    return array


def uniform_(array, a=0.0, b=1.0, rng=None):
    """U(a, b)."""
    _target("uniform_", array, 0)
    array[...] = _rng("uniform_", rng).uniform(a, b, array.shape)
    return array


def normal_(array, mean=0.0, std=1.0, rng=None):
    """N(mean, std^2)."""
    _target("normal_", array, 0)
    array[...] = _rng("normal_", rng).normal(mean, std, array.shape)
    return array


def zeros_(array):
    """Fill with zeros."""
    _target("zeros_", array, 0)
    array[...] = 0
    return array


def _is_recurrent(layer):
    from .nn import _RNNBase
    return isinstance(layer, _RNNBase)


def pytorch_default_(layer, rng=None):
    """Re-draw a layer's parameters as PyTorch initialises them.

    Recurrent layers: every parameter U(-1/sqrt(H), 1/sqrt(H)); :class:`Linear`:
    U(-1/sqrt(in), 1/sqrt(in)); :class:`Embedding`: N(0, 1) with the padding row 0.
    Returns the layer.
    """
    from .layers import Embedding, Linear
    g = _rng("pytorch_default_", rng)
    if _is_recurrent(layer):
        layer.flatten_parameters()
        k = 1.0 / math.sqrt(layer.hidden_size)
        for _, p in layer.named_parameters():
            uniform_(p, -k, k, g)
    elif isinstance(layer, Linear):
        k = 1.0 / math.sqrt(layer.in_features)
        for p in layer.named_parameters().values():
            uniform_(p, -k, k, g)
    elif isinstance(layer, Embedding):
        normal_(layer.weight, 0.0, 1.0, g)
        if layer.padding_idx is not None:
            layer.weight[layer.padding_idx] = 0
    elif hasattr(layer, "named_parameters"):
        params = layer.named_parameters()
        if params:
            raise TypeError(f"pytorch_default_: no default initialisation known for "
                            f"{type(layer).__name__}")
    else:
        raise TypeError(f"pytorch_default_: 'layer' must be an rnnfast layer, got "
                        f"{_v.describe(layer)}")
    return layer


_WEIGHT_SCHEMES = ("orthogonal", "xavier_uniform", "xavier_normal", "pytorch")
_BIAS_SCHEMES = ("zeros", "pytorch")


def init_recurrent_(layer, weight_hh="orthogonal", weight_ih="xavier_uniform", bias="zeros",
                    forget_bias=None, rng=None):
    """Initialise an RNN/LSTM/GRU for training (the "better init" of the lectures).

    Each gate block (``H`` rows of ``weight_hh`` / ``weight_ih``) is initialised on
    its own, as one matrix of that gate: ``weight_hh="orthogonal"`` makes every
    recurrent gate block orthogonal (``W^T W = I``), which keeps the recurrent
    Jacobian's singular values near 1 early in training; ``weight_ih="xavier_uniform"``
    scales input weights by their fans.  Schemes: ``"orthogonal"``,
    ``"xavier_uniform"``, ``"xavier_normal"``, ``"pytorch"`` (weights), ``"zeros"``,
    ``"pytorch"`` (biases).  ``forget_bias`` (LSTM only, e.g. 1.0) sets the forget-gate
    part of ``bias_ih`` (``bias_hh``'s stays as chosen), a common trick against
    vanishing memory early on.  ``weight_hr`` (LSTM projection) follows ``weight_ih``'s
    scheme.  Returns the layer.
    """
    owner = "init_recurrent_"
    if not _is_recurrent(layer):
        raise TypeError(f"{owner}: 'layer' must be an rnnfast RNN, LSTM or GRU, got "
                        f"{_v.describe(layer)}")
    for name, val, allowed in (("weight_hh", weight_hh, _WEIGHT_SCHEMES),
                               ("weight_ih", weight_ih, _WEIGHT_SCHEMES),
                               ("bias", bias, _BIAS_SCHEMES)):
        if val not in allowed:
            raise ValueError(f"{owner}: {name!r} must be one of {allowed}, got {val!r}")
    if forget_bias is not None:
        if layer.mode != "LSTM":
            raise ValueError(f"{owner}: 'forget_bias' applies to LSTM layers only, got a "
                             f"{type(layer).__name__}")
        forget_bias = float(forget_bias)
    g = _rng(owner, rng)
    layer.flatten_parameters()   # parameters writable (a packed eval layer locks them)
    H = layer.hidden_size
    k = 1.0 / math.sqrt(H)

    def fill(p, scheme, blocked):
        blocks = [p[i:i + H] for i in range(0, p.shape[0], H)] if blocked else [p]
        for b in blocks:
            if scheme == "orthogonal":
                orthogonal_(b, 1.0, g)
            elif scheme == "xavier_uniform":
                xavier_uniform_(b, 1.0, g)
            elif scheme == "xavier_normal":
                xavier_normal_(b, 1.0, g)
            elif scheme == "pytorch":
                uniform_(b, -k, k, g)
            else:
                zeros_(b)

    for name, p in layer.named_parameters():
        if name.startswith("weight_hh"):
            fill(p, weight_hh, True)
        elif name.startswith("weight_ih"):
            fill(p, weight_ih, True)
        elif name.startswith("weight_hr"):
            fill(p, weight_ih, False)
        else:
            fill(p, bias, False)
            if forget_bias is not None and name.startswith("bias_ih"):
                p[H:2 * H] = forget_bias
    return layer
