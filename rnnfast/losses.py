"""Losses returning ``(loss_value, gradient_wrt_first_argument)``, numerically stable.

``reduction``: ``"mean"`` (over the counted elements: valid steps and targets not
equal to ``ignore_index``), ``"sum"``, or ``"none"`` (the per-element loss array; the
gradient returned is then the one of the *sum*).  Every gradient has the shape and
dtype of the first argument.  ``lengths`` (``(B,)`` ints) masks the padded steps
``t >= lengths[b]`` of sequence outputs ``(B, T, ...)``: they add nothing to the loss,
the count or the gradient.
"""

import numpy as np

from . import _validation as _v

__all__ = ["softmax_cross_entropy", "binary_cross_entropy_with_logits", "mse",
           "softmax", "log_softmax", "LOSSES"]

_REDUCTIONS = ("mean", "sum", "none")


def softmax(x, axis=-1):
    """Softmax along ``axis``, computed on ``x - max`` (no overflow)."""
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` as ``z - log(sum(exp(z)))`` with ``z = x - max``."""
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


# ---------------------------------------------------------------------------
# validation helpers


def _float_arg(owner, name, a):
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception:
            raise TypeError(f"{owner}: {name!r} must be a float array, got "
                            f"{_v.describe(a)}") from None
    if a.dtype.kind != "f":
        raise TypeError(f"{owner}: {name!r} must be a float array (float32/float64), got dtype "
                        f"{a.dtype}")
    return a


def _reduction(owner, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{owner}: 'reduction' must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _length_mask(owner, lengths, shape, name="lengths"):
    """Boolean mask of shape ``shape[:2]`` (True at valid steps), or None."""
    if lengths is None:
        return None
    if len(shape) < 2:
        raise ValueError(f"{owner}: {name!r} needs sequence outputs (B, T, ...), got shape {shape}")
    B, T = shape[0], shape[1]
    lengths = _v.check_lengths(owner, lengths, B, T, False)
    return np.arange(T)[None, :] < lengths[:, None]


def _reduce(owner, per, grad, count, reduction):
    if reduction == "mean":
        if count == 0:
            return 0.0, np.zeros_like(grad)
        grad /= grad.dtype.type(count)
        return float(np.sum(per, dtype=np.float64) / count), grad
    if reduction == "sum":
        return float(np.sum(per, dtype=np.float64)), grad
    return per, grad


# ---------------------------------------------------------------------------
# losses


def softmax_cross_entropy(logits, targets, lengths=None, ignore_index=None, reduction="mean",
                          _names=("logits", "targets")):
    """Fused log-softmax + negative log-likelihood.

    Parameters
    ----------
    logits : ndarray of shape (..., C), float
    targets : ndarray of ints, shape ``logits.shape[:-1]``, values in ``[0, C)``
        (or equal to ``ignore_index``).
    lengths : array of ints of shape (B,), optional
        For ``(B, T, C)`` logits: only steps ``t < lengths[b]`` count.
    ignore_index : int, optional
        Targets with this value count nothing.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    loss, dlogits
        ``dlogits = (softmax(logits) - onehot(targets)) * valid / count``.
    """
    owner = "softmax_cross_entropy"
    n_logits, n_targets = _names
    logits = _float_arg(owner, n_logits, logits)
    reduction = _reduction(owner, reduction)
    if logits.ndim < 1:
        raise ValueError(f"{owner}: {n_logits!r} must have a class axis (..., C), got a scalar")
    C = logits.shape[-1]
    targets = _int_targets(owner, n_targets, targets, logits.shape[:-1], C, ignore_index)
    valid = np.ones(targets.shape, dtype=bool)
    if ignore_index is not None:
        valid &= targets != ignore_index
    mask = _length_mask(owner, lengths, logits.shape)
    if mask is not None:
        if logits.ndim != 3:
            raise ValueError(f"{owner}: 'lengths' needs logits of shape (B, T, C), got "
                             f"{logits.shape}")
        valid &= mask
    safe_t = np.where(valid, targets, 0)
    z = logits - np.max(logits, axis=-1, keepdims=True)
    ez = np.exp(z)
    sez = np.sum(ez, axis=-1, keepdims=True)
    logp_t = np.take_along_axis(z, safe_t[..., None], axis=-1)[..., 0] - np.log(sez[..., 0])
    per = np.where(valid, -logp_t, 0).astype(logits.dtype, copy=False)
    grad = ez / sez
    np.put_along_axis(grad, safe_t[..., None],
                      np.take_along_axis(grad, safe_t[..., None], axis=-1) - 1, axis=-1)
    grad *= valid[..., None]
    return _reduce(owner, per, grad, int(valid.sum()), reduction)


def _int_targets(owner, name, targets, shape, C, ignore_index=None):
    if not isinstance(targets, np.ndarray):
        try:
            targets = np.asarray(targets)
        except Exception:
            raise TypeError(f"{owner}: {name!r} must be an array of integer class ids, got "
                            f"{_v.describe(targets)}") from None
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{owner}: {name!r} must hold integer class ids, got dtype {targets.dtype}")
    if targets.shape != tuple(shape):
        raise ValueError(f"{owner}: expected {name!r} of shape {tuple(shape)} (the logits' shape "
                         f"without the class axis), got {targets.shape}")
    if targets.size:
        t = targets if ignore_index is None else targets[targets != ignore_index]
        if t.size:
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= C:
                raise ValueError(f"{owner}: {name!r} holds class id {lo if lo < 0 else hi}, "
                                 f"outside [0, {C})")
    return targets


def _float_targets(owner, name, targets, shape, dtype):
    if not isinstance(targets, np.ndarray):
        try:
            targets = np.asarray(targets)
        except Exception:
            raise TypeError(f"{owner}: {name!r} must be a numeric array, got "
                            f"{_v.describe(targets)}") from None
    if targets.dtype.kind not in "fiub":
        raise TypeError(f"{owner}: {name!r} must be numeric, got dtype {targets.dtype}")
    if targets.shape != tuple(shape):
        raise ValueError(f"{owner}: expected {name!r} of shape {tuple(shape)} (the prediction's), "
                         f"got {targets.shape}")
    return targets.astype(dtype, copy=False)


def binary_cross_entropy_with_logits(logits, targets, reduction="mean", lengths=None,
                                     _names=("logits", "targets")):
    """Sigmoid + binary cross-entropy, fused: ``max(x, 0) - x t + log1p(exp(-|x|))``.

    ``targets`` has the shape of ``logits`` with values in [0, 1] (soft labels
    allowed); gradient ``sigmoid(x) - t``.  ``lengths`` masks padded steps of
    ``(B, T, ...)`` logits.
    """
    owner = "binary_cross_entropy_with_logits"
    n_logits, n_targets = _names
    x = _float_arg(owner, n_logits, logits)
    reduction = _reduction(owner, reduction)
    t = _float_targets(owner, n_targets, targets, x.shape, x.dtype)
    if t.size and (np.min(t) < 0 or np.max(t) > 1):
        raise ValueError(f"{owner}: {n_targets!r} must lie in [0, 1], got values in "
                         f"[{np.min(t)}, {np.max(t)}]")
    per = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    grad = (sig - t).astype(x.dtype, copy=False)
    count = x.size
    mask = _length_mask(owner, lengths, x.shape)
    if mask is not None:
        m = mask.reshape(mask.shape + (1,) * (x.ndim - 2))
        per = per * m
        grad = grad * m
        count = int(mask.sum()) * int(np.prod(x.shape[2:], dtype=np.int64))
    return _reduce(owner, per, grad, count, reduction)


def mse(pred, target, reduction="mean", lengths=None, _names=("pred", "target")):
    """Mean squared error ``mean((pred - target)^2)``; gradient ``2 (pred - target) / n``.

    ``lengths`` masks padded steps of ``(B, T, ...)`` predictions.
    """
    owner = "mse"
    n_pred, n_target = _names
    p = _float_arg(owner, n_pred, pred)
    reduction = _reduction(owner, reduction)
    t = _float_targets(owner, n_target, target, p.shape, p.dtype)
    diff = p - t
    per = diff * diff
    grad = 2 * diff
    count = p.size
    mask = _length_mask(owner, lengths, p.shape)
    if mask is not None:
        m = mask.reshape(mask.shape + (1,) * (p.ndim - 2))
        per = per * m
        grad = grad * m
        count = int(mask.sum()) * int(np.prod(p.shape[2:], dtype=np.int64))
    return _reduce(owner, per, grad, count, reduction)


#: names accepted by ``model.compile(loss=...)``
LOSSES = {
    "cross_entropy": softmax_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
    "bce": binary_cross_entropy_with_logits,
    "binary_cross_entropy_with_logits": binary_cross_entropy_with_logits,
    "mse": mse,
}
