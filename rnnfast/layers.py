"""Non-recurrent building blocks for models around the compiled recurrent layers.

Every layer has the same small protocol, shared with :class:`rnnfast.models.Sequential`:

- ``y = layer(x)`` / ``layer.forward(x)``; in training mode the layer keeps what
  :meth:`backward` needs;
- ``dx = layer.backward(dy)`` returns the gradient with respect to the input (None for
  :class:`Embedding`, whose input is integer ids) and stores the parameter gradients
  in ``layer.grads`` (a dict with the names of :meth:`named_parameters`; replaced, not
  accumulated, by every backward);
- ``named_parameters()``: dict name -> the layer's own ndarray (optimizers update them
  in place); ``state_dict()`` / ``load_state_dict()``; ``train()`` / ``eval()`` /
  ``training``.

The dtype (float32 or float64) follows the parameters; inputs of another float dtype
are rejected rather than silently cast.
"""

import math
from collections import OrderedDict

import numpy as np

from . import _validation as _v

__all__ = ["Layer", "Embedding", "Linear", "Tanh", "ReLU", "Sigmoid", "Softmax",
           "Dropout", "LastStep", "RepeatVector", "LAYER_CLASSES"]


def _check_float_input(owner, name, x, dtype=None):
    """``x`` as an ndarray of a real float dtype (``dtype`` when given)."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception:
            raise TypeError(f"{owner}: {name!r} must be an array, got {_v.describe(x)}") from None
    if x.dtype.kind != "f":
        raise TypeError(f"{owner}: {name!r} must be a float array"
                        + (f" of dtype {np.dtype(dtype)}" if dtype is not None else "")
                        + f", got dtype {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{owner}: {name!r} must have dtype {np.dtype(dtype)} (the layer's), "
                        f"got {x.dtype}; convert it with .astype(np.{np.dtype(dtype).name})")
    return x


def _check_size(owner, shape, dtype, what):
    """Refuse parameters larger than the machine's memory (a ValueError, not a MemoryError
    or an overcommitted allocation)."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    limit = _v.available_memory_bytes()
    if nbytes > limit:
        raise ValueError(f"{owner}: the {what} would need {nbytes / 2**30:.3g} GiB, more than "
                         f"the {limit / 2**30:.3g} GiB of memory of this machine")


def _need_cache(owner, cache):
    if cache is None:
        raise RuntimeError(f"{owner}.backward() needs a training-mode forward first "
                           f"(call layer.train() and run the forward again)")


def _check_dy(owner, dy, shape):
    """``dy`` as a float array of exactly ``shape`` (no silent broadcasting)."""
    dy = _check_float_input(f"{owner}.backward", "dy", dy)
    if dy.shape != tuple(shape):
        raise ValueError(f"{owner}.backward: expected dy of shape {tuple(shape)} (the "
                         f"output's), got {dy.shape}")
    return dy


class Layer:
    """Base class: parameters by name, gradients, modes and state dicts.

    Subclasses set ``self._param_names`` and store each parameter as an attribute.
    """

    _param_names = ()

    def __init__(self):
        self.training = True
        self.grads = {}
        self._cache = None

    # ---------------------------------------------------------------- protocol
    def __call__(self, x, *args, **kwargs):
        return self.forward(x, *args, **kwargs)

    def forward(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dy):  # pragma: no cover - abstract
        raise NotImplementedError

    def named_parameters(self):
        """Dict name -> the layer's own parameter array (not a copy)."""
        return OrderedDict((n, getattr(self, n)) for n in self._param_names)

    def parameters(self):
        """List of the parameter arrays (the layer's own)."""
        return list(self.named_parameters().values())

    def train(self, mode=True):
        """Training mode (dropout active, backward possible); returns ``self``."""
        self.training = _v.check_bool(f"{type(self).__name__}.train", "mode", mode)
        return self

    def eval(self):
        """Inference mode (``train(False)``); returns ``self``."""
        return self.train(False)

    def state_dict(self):
        """Copies of the parameters, ``OrderedDict`` name -> ndarray."""
        return OrderedDict((n, np.array(p, copy=True)) for n, p in self.named_parameters().items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters in place from a mapping name -> array-like (same shapes)."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"{owner}: state_dict must be a mapping of names to arrays, "
                            f"got {_v.describe(state_dict)}")
        own = self.named_parameters()
        missing = [n for n in own if n not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"{owner}: missing keys {missing}, unexpected keys {unexpected}")
        staged = {}
        for n, p in own.items():
            if n not in state_dict:
                continue
            a = np.asarray(state_dict[n])
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{owner}: {n}: expected a real float array, got dtype {a.dtype}")
            if a.shape != p.shape:
                raise ValueError(f"{owner}: {n}: expected shape {p.shape}, got {a.shape}")
            staged[n] = a
        for n, a in staged.items():
            np.copyto(own[n], a, casting="unsafe")
        return missing, unexpected

    def config(self):
        """JSON-serialisable constructor arguments (used by model save/load)."""
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "dtype")
        return f"{type(self).__name__}({args})"


# ---------------------------------------------------------------------------
# parametrised layers


class Embedding(Layer):
    """Lookup table: integer ids of any shape -> vectors ``(..., embedding_dim)``.

    Parameters
    ----------
    num_embeddings : int
        Vocabulary size; ids must lie in ``[0, num_embeddings)``.
    embedding_dim : int
    padding_idx : int, optional
        This row starts at zero and receives no gradient (PyTorch's meaning).
    dtype : {numpy.float32, numpy.float64}, default float32
    seed : int or numpy.random.Generator, optional
        The weight is drawn from N(0, 1) (PyTorch's default).
    """

    _param_names = ("weight",)

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32,
                 seed=None):
        super().__init__()
        owner = "Embedding"
        self.num_embeddings = _v.check_int(owner, "num_embeddings", num_embeddings)
        self.embedding_dim = _v.check_int(owner, "embedding_dim", embedding_dim)
        if padding_idx is not None:
            if not _v._is_int(padding_idx):
                raise TypeError(f"{owner}: 'padding_idx' must be None or an int, got "
                                f"{_v.describe(padding_idx)}")
            padding_idx = int(padding_idx)
            if padding_idx < 0:
                padding_idx += self.num_embeddings
            if not 0 <= padding_idx < self.num_embeddings:
                raise ValueError(f"{owner}: 'padding_idx' must be in [-{self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx}")
        self.padding_idx = padding_idx
        self.dtype = _v.check_dtype(owner, dtype)
        rng = _v.check_seed(owner, seed)
        _check_size(owner, (self.num_embeddings, self.embedding_dim), self.dtype, "weight")
        shape = (self.num_embeddings, self.embedding_dim)
        self.weight = rng.standard_normal(shape).astype(self.dtype)
        if padding_idx is not None:
            self.weight[padding_idx] = 0

    def check_ids(self, ids, name="input", owner="Embedding"):
        """Return ``ids`` as an integer ndarray, raising for non-integer or out-of-range ids."""
        if not isinstance(ids, np.ndarray):
            try:
                ids = np.asarray(ids)
            except Exception:
                raise TypeError(f"{owner}: {name!r} must be an array of integer ids, got "
                                f"{_v.describe(ids)}") from None
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{owner}: {name!r} must hold integer token ids (dtype int32/int64), "
                            f"got dtype {ids.dtype}")
        if ids.size:
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num_embeddings:
                bad = lo if lo < 0 else hi
                raise ValueError(f"{owner}: {name!r} holds token id {bad}, outside the "
                                 f"vocabulary [0, {self.num_embeddings})")
        return ids

    def forward(self, x):
        ids = self.check_ids(x)
        self._cache = ids if self.training else None
        return self.weight[ids]

    def backward(self, dy):
        _need_cache("Embedding", self._cache)
        ids = self._cache
        dy = _check_float_input("Embedding.backward", "dy", dy, self.dtype)
        if dy.shape != ids.shape + (self.embedding_dim,):
            raise ValueError(f"Embedding.backward: expected dy of shape "
                             f"{ids.shape + (self.embedding_dim,)}, got {dy.shape}")
        dw = np.zeros_like(self.weight)
        np.add.at(dw, ids.reshape(-1), dy.reshape(-1, self.embedding_dim))
        if self.padding_idx is not None:
            dw[self.padding_idx] = 0
        self.grads = {"weight": dw}
        return None

    def config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim,
                "padding_idx": self.padding_idx, "dtype": self.dtype.name}


class Linear(Layer):
    """``y = x W^T + b`` on the last axis of any shape (per time step on ``(B, T, H)``).

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    dtype : {numpy.float32, numpy.float64}, default float32
    seed : int or numpy.random.Generator, optional
        Weight and bias from U(-1/sqrt(in_features), 1/sqrt(in_features)) (PyTorch's
        default).
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, seed=None):
        super().__init__()
        owner = "Linear"
        self.in_features = _v.check_int(owner, "in_features", in_features)
        self.out_features = _v.check_int(owner, "out_features", out_features)
        self.bias_enabled = _v.check_bool(owner, "bias", bias)
        self.dtype = _v.check_dtype(owner, dtype)
        rng = _v.check_seed(owner, seed)
        _check_size(owner, (self.out_features, self.in_features), self.dtype, "weight")
        k = 1.0 / math.sqrt(self.in_features)
        self.weight = rng.uniform(-k, k, (self.out_features, self.in_features)).astype(self.dtype)
        if self.bias_enabled:
            self.bias = rng.uniform(-k, k, (self.out_features,)).astype(self.dtype)
            self._param_names = ("weight", "bias")
        else:
            self.bias = None
            self._param_names = ("weight",)

    def forward(self, x):
        x = _check_float_input("Linear", "input", x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input with last axis {self.in_features}, got "
                             f"shape {x.shape}")
        # one GEMM over all leading axes (a stacked matmul would call BLAS per slice)
        y = (x.reshape(-1, self.in_features) @ self.weight.T).reshape(
            x.shape[:-1] + (self.out_features,))
        if self.bias is not None:
            y += self.bias
        self._cache = x if self.training else None
        return y

    def backward(self, dy):
        _need_cache("Linear", self._cache)
        x = self._cache
        dy = _check_float_input("Linear.backward", "dy", dy, self.dtype)
        if dy.shape != x.shape[:-1] + (self.out_features,):
            raise ValueError(f"Linear.backward: expected dy of shape "
                             f"{x.shape[:-1] + (self.out_features,)}, got {dy.shape}")
        x2 = x.reshape(-1, self.in_features)
        dy2 = dy.reshape(-1, self.out_features)
        grads = {"weight": dy2.T @ x2}
        if self.bias is not None:
            grads["bias"] = dy2.sum(axis=0)
        self.grads = grads
        return (dy2 @ self.weight).reshape(x.shape)

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias_enabled, "dtype": self.dtype.name}


# ---------------------------------------------------------------------------
# element-wise and shape layers (no parameters)


class Tanh(Layer):
    """Element-wise ``tanh``."""

    def forward(self, x):
        x = _check_float_input("Tanh", "input", x)
        y = np.tanh(x)
        self._cache = y if self.training else None
        return y

    def backward(self, dy):
        _need_cache("Tanh", self._cache)
        y = self._cache
        dy = _check_dy("Tanh", dy, y.shape)
        return dy * (1 - y * y)


class ReLU(Layer):
    """Element-wise ``max(x, 0)`` (derivative 0 at 0)."""

    def forward(self, x):
        x = _check_float_input("ReLU", "input", x)
        mask = x > 0
        self._cache = mask if self.training else None
        return np.where(mask, x, np.zeros((), x.dtype))

    def backward(self, dy):
        _need_cache("ReLU", self._cache)
        dy = _check_dy("ReLU", dy, self._cache.shape)
        return np.where(self._cache, dy, np.zeros((), dy.dtype))


def _sigmoid(x):
    """Logistic function without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


class Sigmoid(Layer):
    """Element-wise logistic function."""

    def forward(self, x):
        x = _check_float_input("Sigmoid", "input", x)
        y = _sigmoid(x)
        self._cache = y if self.training else None
        return y

    def backward(self, dy):
        _need_cache("Sigmoid", self._cache)
        y = self._cache
        dy = _check_dy("Sigmoid", dy, y.shape)
        return dy * y * (1 - y)


class Softmax(Layer):
    """Softmax along ``axis`` (for probabilities; train with the fused
    :func:`rnnfast.losses.softmax_cross_entropy` on logits instead)."""

    def __init__(self, axis=-1):
        super().__init__()
        if not _v._is_int(axis):
            raise TypeError(f"Softmax: 'axis' must be an int, got {_v.describe(axis)}")
        self.axis = int(axis)

    def forward(self, x):
        from .losses import softmax
        x = _check_float_input("Softmax", "input", x)
        y = softmax(x, axis=self.axis)
        self._cache = y if self.training else None
        return y

    def backward(self, dy):
        _need_cache("Softmax", self._cache)
        y = self._cache
        dy = _check_dy("Softmax", dy, y.shape)
        return y * (dy - np.sum(dy * y, axis=self.axis, keepdims=True))

    def config(self):
        return {"axis": self.axis}


class Dropout(Layer):
    """Inverted dropout: in training mode zero each element with probability ``p`` and
    scale the rest by ``1 / (1 - p)``; identity in eval mode."""

    def __init__(self, p=0.5, seed=None):
        super().__init__()
        if isinstance(p, (bool, np.bool_)) or not isinstance(
                p, (int, float, np.floating, np.integer)):
            raise TypeError(f"Dropout: 'p' must be a float in [0, 1), got {_v.describe(p)}")
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: 'p' must be in [0, 1), got {p}")
        self.p = p
        self._rng = _v.check_seed("Dropout", seed)

    def forward(self, x):
        x = _check_float_input("Dropout", "input", x)
        if not self.training or self.p == 0.0:
            self._cache = 1.0 if self.training else None
            return x
        mask = (self._rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1 - self.p)
        self._cache = mask
        return x * mask

    def backward(self, dy):
        _need_cache("Dropout", self._cache)
        mask = self._cache
        if isinstance(mask, np.ndarray):
            dy = _check_dy("Dropout", dy, mask.shape)
            return dy * mask
        return dy

    def config(self):
        return {"p": self.p}


class LastStep(Layer):
    """Many-to-one adapter: each sequence's output at its last valid step.

    ``(B, T, H)`` (batch first) -> ``(B, H)``; with ``lengths`` the step
    ``lengths[b] - 1`` is taken (zeros for an empty sequence).  With
    ``bidirectional=True`` the second half of the features (the reverse direction,
    whose final state sits at step 0) is taken at step 0.  ``bidirectional=None``
    lets :class:`~rnnfast.models.Sequential` set it from the recurrent layer before it.
    """

    uses_lengths = True

    def __init__(self, bidirectional=None):
        super().__init__()
        if bidirectional is not None:
            bidirectional = _v.check_bool("LastStep", "bidirectional", bidirectional)
        self.bidirectional = bidirectional

    def forward(self, x, lengths=None):
        x = _check_float_input("LastStep", "input", x)
        if x.ndim != 3:
            raise ValueError(f"LastStep: expected input of shape (B, T, H), got {x.shape}")
        B, T, H = x.shape
        if lengths is None:
            lengths = np.full(B, T, dtype=np.int64)
        else:
            lengths = _v.check_lengths("LastStep", lengths, B, T, False)
        bidir = bool(self.bidirectional)
        if bidir and H % 2:
            raise ValueError(f"LastStep: bidirectional input needs an even feature count, got {H}")
        rows = np.arange(B)
        last = np.maximum(lengths - 1, 0)
        y = x[rows, last].copy()
        if bidir:
            y[:, H // 2:] = x[:, 0, H // 2:]
        y[lengths == 0] = 0
        self._cache = (x.shape, lengths) if self.training else None
        return y

    def backward(self, dy):
        _need_cache("LastStep", self._cache)
        shape, lengths = self._cache
        B, T, H = shape
        dy = _check_dy("LastStep", dy, (B, H))
        dx = np.zeros(shape, dtype=dy.dtype)
        rows = np.arange(B)[lengths > 0]
        last = lengths[lengths > 0] - 1
        if self.bidirectional:
            h = H // 2
            dx[rows, last, :h] = dy[rows, :h]
            dx[rows, 0, h:] += dy[rows, h:]
        else:
            dx[rows, last] = dy[rows]
        return dx

    def config(self):
        return {"bidirectional": self.bidirectional}


class RepeatVector(Layer):
    """One-to-many adapter: ``(B, F)`` -> ``(B, T, F)`` (the same vector at every step)."""

    def __init__(self, n):
        super().__init__()
        self.n = _v.check_int("RepeatVector", "n", n)
        if self.n > 2**31:
            raise ValueError(f"RepeatVector: 'n' must be at most 2**31, got {self.n}")

    def forward(self, x):
        x = _check_float_input("RepeatVector", "input", x)
        if x.ndim != 2:
            raise ValueError(f"RepeatVector: expected input of shape (B, F), got {x.shape}")
        self._cache = (x.shape[0], self.n, x.shape[1]) if self.training else None
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, dy):
        _need_cache("RepeatVector", self._cache)
        dy = _check_dy("RepeatVector", dy, self._cache)
        return dy.sum(axis=1)

    def config(self):
        return {"n": self.n}


#: classes that :func:`rnnfast.models.load` may rebuild by name
LAYER_CLASSES = {c.__name__: c for c in (Embedding, Linear, Tanh, ReLU, Sigmoid, Softmax,
                                         Dropout, LastStep, RepeatVector)}
