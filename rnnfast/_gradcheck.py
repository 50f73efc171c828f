"""Finite-difference gradient check of any layer or model (exposed as
:func:`rnnfast.gradcheck`)."""

import numpy as np

from . import _validation as _v

__all__ = ["gradcheck", "GradcheckReport"]


class GradcheckReport:
    """Result of :func:`gradcheck`.

    Attributes
    ----------
    ok : bool
        Every checked entry satisfies ``|analytic - numeric| <= atol + rtol * |numeric|``.
    errors : dict name -> dict
        Per parameter (and ``"input"``): ``max_abs`` (max absolute difference),
        ``max_rel`` (max of ``|a - n| / max(|a|, |n|, atol)``), ``max_scaled``
        (``max_abs`` over the largest ``|numeric|`` of that array), ``n_checked``, ``ok``.
    max_abs_error, max_rel_error, max_scaled_error : float
        Over all names.
    """

    def __init__(self, errors, rtol, atol, eps):
        self.errors = errors
        self.rtol, self.atol, self.eps = rtol, atol, eps
        self.ok = all(e["ok"] for e in errors.values())
        self.max_abs_error = max((e["max_abs"] for e in errors.values()), default=0.0)
        self.max_rel_error = max((e["max_rel"] for e in errors.values()), default=0.0)
        self.max_scaled_error = max((e["max_scaled"] for e in errors.values()), default=0.0)

    def failures(self):
        return [k for k, e in self.errors.items() if not e["ok"]]

    def __bool__(self):
        return self.ok

    def __repr__(self):
        return (f"GradcheckReport(ok={self.ok}, checked={len(self.errors)}, "
                f"max_abs_error={self.max_abs_error:.3g}, max_rel_error={self.max_rel_error:.3g}"
                + (f", failures={self.failures()}" if not self.ok else "") + ")")

    def summary(self):
        lines = [repr(self)]
        for k, e in self.errors.items():
            lines.append(f"  {k:40s} n={e['n_checked']:5d} max_abs={e['max_abs']:.3e} "
                         f"max_rel={e['max_rel']:.3e} max_scaled={e['max_scaled']:.3e} "
                         f"{'ok' if e['ok'] else 'FAIL'}")
        return "\n".join(lines)


def _adapter(obj):
    """A model (Sequential or Seq2Seq) for any layer, recurrent layer or model."""
    from .layers import Layer
    from .models import Sequential, Seq2Seq, _is_recurrent
    if _is_recurrent(obj):
        obj = Sequential([obj])
    if isinstance(obj, (Sequential, Seq2Seq)):
        return obj
    if isinstance(obj, Layer):
        return Sequential([obj])
    raise TypeError(f"gradcheck: 'model_or_layer' must be an rnnfast layer, recurrent layer, "
                    f"Sequential or Seq2Seq, got {_v.describe(obj)}")


def _dropouts_off(model):
    """Disable every source of randomness (Dropout layers, recurrent inter-layer dropout);
    returns a function restoring them."""
    from .layers import Dropout
    from .models import Sequential, _is_recurrent
    saved = []

    def walk(m):
        for _, layer in m._modules():
            if isinstance(layer, Dropout) and layer.p:
                saved.append((layer, "p", layer.p))
                layer.p = 0.0
            elif _is_recurrent(layer) and layer.dropout:
                saved.append((layer, "dropout", layer.dropout))
                layer.dropout = 0.0
            elif isinstance(layer, Sequential):
                walk(layer)

    walk(model)

    def restore():
        for obj, attr, val in saved:
            setattr(obj, attr, val)
    return restore


def gradcheck(model_or_layer, inputs, loss_fn=None, eps=1e-6, rtol=1e-6, atol=1e-8,
              n_samples=None, seed=0, check_input=True, raise_on_failure=False):
    """Compare a model's analytic gradients with central finite differences.

    Parameters
    ----------
    model_or_layer : rnnfast layer, RNN/LSTM/GRU, Sequential or Seq2Seq
        Its parameters must be float64 (finite differences in float32 are too coarse).
        Dropout is switched off for the check.  An Embedding's padding row is not
        compared with finite differences (it gets no gradient by definition); its
        gradient must be exactly zero.
    inputs : ndarray, or tuple
        ``x``; or ``(x, lengths)`` for Sequential / layers (``x`` batch first for
        Sequential, the layer's own layout for a bare recurrent layer); for Seq2Seq
        ``(x, y_in, lengths, y_lengths)`` (teacher-forced decoder inputs).
    loss_fn : callable ``output -> (loss, d_output)``, optional
        Default: ``sum(output * R)`` with a fixed random ``R`` (seeded), which checks
        every output entry with a distinct weight.
    eps : float
        Step of the central difference ``(L(p + eps) - L(p - eps)) / (2 eps)``.
    rtol, atol : float
        An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
    n_samples : int, optional
        Check at most this many randomly chosen entries per parameter (all by default).
    check_input : bool
        Also check the gradient with respect to a float input ``x``.
    raise_on_failure : bool
        Raise AssertionError with the summary instead of returning a failing report.

    Returns
    -------
    GradcheckReport
    """
    from .models import Seq2Seq
    model = _adapter(model_or_layer)
    params = model.named_parameters()
    for name, p in params.items():
        if p.dtype != np.float64:
            raise ValueError(f"gradcheck: parameter {name!r} is {p.dtype}; finite differences "
                             f"need float64 (build the layers with dtype=np.float64)")
    from .optim import _check_float
    eps = _check_float("gradcheck", "eps", eps, strict_min=True)
    rtol = _check_float("gradcheck", "rtol", rtol)
    atol = _check_float("gradcheck", "atol", atol)
    if n_samples is not None:
        n_samples = _v.check_int("gradcheck", "n_samples", n_samples)
    rng = _v.check_seed("gradcheck", seed)
    if isinstance(inputs, tuple):
        args = list(inputs)
    else:
        args = [inputs]
    x = np.asarray(args[0])
    from .models import _is_recurrent
    if _is_recurrent(model_or_layer) and not model_or_layer.batch_first and x.ndim == 3:
        # the wrapping Sequential is batch first; the user gave the layer's (T, N, I)
        x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
        args[0] = x
    s2s = isinstance(model, Seq2Seq)

    def forward():
        if s2s:
            return model.forward(*args)
        return model.forward(args[0], *args[1:2])

    restore = _dropouts_off(model)
    was = model.training
    stateful = getattr(model, "stateful", False)
    model.stateful = False   # every evaluation must start from the same state
    try:
        model.train()
        out = forward()
        R = rng.standard_normal(out.shape)
        if loss_fn is None:
            def loss_fn(o):
                return float(np.sum(o * R)), R.copy()
        loss, g = loss_fn(out)
        dx = model.backward(np.asarray(g, dtype=out.dtype))
        analytic = {k: np.array(v, copy=True) for k, v in model.grads.items()}
        model._release()

        def loss_at():
            o = forward()
            model._release()
            return float(loss_fn(o)[0])

        frozen = _frozen_rows(model)
        errors = {}
        for name, p in params.items():
            a = analytic.get(name)
            if a is None:
                a = np.zeros_like(p)
            errors[name] = _check_array(p, a, loss_at, eps, rtol, atol, n_samples, rng,
                                        skip_row=frozen.get(name))
        if check_input and not s2s and x.dtype.kind == "f" and dx is not None:
            if x.dtype != np.float64:
                raise ValueError(f"gradcheck: the input is {x.dtype}; use float64")
            xin = np.array(x, copy=True)
            args[0] = xin
            errors["input"] = _check_array(xin, np.asarray(dx), loss_at, eps, rtol, atol,
                                           n_samples, rng)
    finally:
        restore()
        model.stateful = stateful
        model._release()
        model.train(was)
    report = GradcheckReport(errors, rtol, atol, eps)
    if raise_on_failure and not report.ok:
        raise AssertionError("gradcheck failed:\n" + report.summary())
    return report


def _frozen_rows(model, prefix=""):
    """``{param name: row}`` for Embedding padding rows, which get no gradient by
    definition (PyTorch's padding_idx) although the forward uses them."""
    from .layers import Embedding
    from .models import Sequential
    out = {}
    for name, layer in model._modules():
        if isinstance(layer, Embedding) and layer.padding_idx is not None:
            out[f"{prefix}{name}.weight"] = layer.padding_idx
        elif isinstance(layer, Sequential):
            out.update(_frozen_rows(layer, f"{prefix}{name}."))
    return out


def _check_array(p, analytic, loss_at, eps, rtol, atol, n_samples, rng, skip_row=None):
    flat = p.reshape(-1)
    if not np.shares_memory(flat, p):   # pragma: no cover - parameters are contiguous
        raise ValueError("gradcheck: parameters must be contiguous arrays")
    idx = np.arange(flat.size)
    if skip_row is not None:   # padding row of an Embedding: its gradient must be 0
        row = np.arange(flat.size) // p.shape[1] == skip_row
        if np.any(analytic.reshape(-1)[row] != 0):
            bad = float(np.max(np.abs(analytic.reshape(-1)[row])))
            return {"max_abs": bad, "max_rel": 1.0, "max_scaled": 1.0,
                    "n_checked": int(row.sum()), "ok": False}
        idx = idx[~row]
    if n_samples is not None and n_samples < flat.size:
        idx = rng.choice(flat.size, size=int(n_samples), replace=False)
    a_flat = analytic.reshape(-1)
    max_abs = max_rel = scale = 0.0
    ok = True
    for i in idx:
        old = flat[i]
        flat[i] = old + eps
        lp = loss_at()
        flat[i] = old - eps
        lm = loss_at()
        flat[i] = old
        num = (lp - lm) / (2 * eps)
        an = float(a_flat[i])
        diff = abs(an - num)
        scale = max(scale, abs(num))
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(abs(an), abs(num), atol))
        if not diff <= atol + rtol * abs(num):
            ok = False
    return {"max_abs": max_abs, "max_rel": max_rel,
            "max_scaled": max_abs / scale if scale > 0 else max_abs,
            "n_checked": int(len(idx)), "ok": ok}
