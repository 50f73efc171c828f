"""Optimizers, gradient clipping and learning-rate schedules over dicts of arrays.

An optimizer holds a dict ``name -> ndarray`` (e.g. ``model.named_parameters()``) and
``opt.step(grads)``, with a dict of gradients under the same names, updates those
arrays in place.  The update rules are PyTorch's (``torch.optim``), step for step;
``opt.lr`` may be changed at any time (the schedules do that).
"""

import math

import numpy as np

from . import _validation as _v

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "clip_grad_norm",
           "clip_grad_value", "StepLR", "CosineAnnealingLR", "OPTIMIZERS"]


def _check_float(owner, name, value, minimum=0.0, maximum=None, strict_min=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}: {name!r} must be a number, got {_v.describe(value)}")
    value = float(value)
    if not math.isfinite(value) or value < minimum or (strict_min and value == minimum) or (
            maximum is not None and value >= maximum):
        rng = f"{'>' if strict_min else '>='} {minimum}" + (
            f" and < {maximum}" if maximum is not None else "")
        raise ValueError(f"{owner}: {name!r} must be a finite number {rng}, got {value}")
    return value


def _check_params(owner, params):
    if hasattr(params, "named_parameters") and callable(params.named_parameters):
        params = params.named_parameters()
    if not hasattr(params, "items"):
        raise TypeError(f"{owner}: 'params' must be a dict name -> ndarray (e.g. "
                        f"model.named_parameters()), got {_v.describe(params)}")
    out = {}
    for name, p in params.items():
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            raise TypeError(f"{owner}: parameter {name!r} must be a float ndarray, got "
                            f"{_v.describe(p)}")
        out[name] = p
    if not out:
        raise ValueError(f"{owner}: 'params' is empty")
    return out


class Optimizer:
    """Base class: parameter dict, per-parameter state, ``step``, state dicts."""

    def __init__(self, params, lr):
        owner = type(self).__name__
        self.params = _check_params(owner, params)
        self.lr = lr
        self.state = {name: {} for name in self.params}
        self.step_count = 0

    @property
    def lr(self):
        """Learning rate used by the next :meth:`step`."""
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = _check_float(type(self).__name__, "lr", value)

    def _check_grads(self, grads):
        owner = f"{type(self).__name__}.step"
        if not hasattr(grads, "items"):
            raise TypeError(f"{owner}: 'grads' must be a dict name -> ndarray, got "
                            f"{_v.describe(grads)}")
        unknown = [k for k in grads if k not in self.params]
        if unknown:
            raise ValueError(f"{owner}: 'grads' has names that are not parameters: "
                             f"{_v.name_list(unknown)}")
        out = {}
        for name, g in grads.items():
            if g is None:
                continue
            g = np.asarray(g)
            p = self.params[name]
            if g.shape != p.shape:
                raise ValueError(f"{owner}: gradient {name!r} has shape {g.shape}, the "
                                 f"parameter {p.shape}")
            if g.dtype.kind != "f":
                raise TypeError(f"{owner}: gradient {name!r} must be a float array, got "
                                f"dtype {g.dtype}")
            out[name] = g
        return out

    def step(self, grads):
        """Update the parameters in place from ``grads`` (dict name -> ndarray); names
        missing from ``grads`` (or mapped to None) are left unchanged."""
        grads = self._check_grads(grads)
        locked = [name for name in grads if not self.params[name].flags.writeable]
        if locked:
            raise ValueError(
                f"{type(self).__name__}.step: parameters {_v.name_list(locked)} are read-only: "
                f"a recurrent layer locks its weights while a training forward awaits its "
                f"backward, or while eval mode uses packed weights; run backward first, or "
                f"call model.train() / layer.flatten_parameters()")
        self.step_count += 1
        for name, g in grads.items():
            self._update(name, self.params[name], g.astype(self.params[name].dtype, copy=False),
                         self.state[name])

    def _update(self, name, p, g, state):  # pragma: no cover - abstract
        raise NotImplementedError

    def hyperparameters(self):
        return {"lr": self.lr}

    def state_dict(self):
        """``{"hyperparameters": {...}, "step_count": int, "state": {name: {key: array}}}``
        (copies)."""
        return {"hyperparameters": dict(self.hyperparameters()), "step_count": self.step_count,
                "state": {n: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                              for k, v in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned (for the same parameter names)."""
        owner = f"{type(self).__name__}.load_state_dict"
        try:
            hp, count, state = (state_dict["hyperparameters"], state_dict["step_count"],
                                state_dict["state"])
        except (TypeError, KeyError):
            raise ValueError(f"{owner}: expected a dict with 'hyperparameters', 'step_count' "
                             f"and 'state', got {_v.describe(state_dict)}") from None
        if set(state) != set(self.params):
            raise ValueError(f"{owner}: the state is for parameters {sorted(state)}, this "
                             f"optimizer has {sorted(self.params)}")
        for name, s in state.items():
            for k, v in s.items():
                if isinstance(v, np.ndarray) and v.shape != self.params[name].shape:
                    raise ValueError(f"{owner}: state {name}.{k} has shape {v.shape}, expected "
                                     f"{self.params[name].shape}")
        for k, v in hp.items():
            setattr(self, k, v)
        self.step_count = int(count)
        self.state = {n: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                          for k, v in s.items()} for n, s in state.items()}

    def __repr__(self):
        hp = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({hp})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    ``g = grad + weight_decay * p``; with momentum ``buf = momentum * buf + (1 -
    dampening) * g`` (``buf = g`` at the first step), ``g = g + momentum * buf``
    (Nesterov) or ``g = buf``; ``p -= lr * g``.
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0,
                 dampening=0.0):
        owner = "SGD"
        self.momentum = _check_float(owner, "momentum", momentum)
        self.nesterov = _v.check_bool(owner, "nesterov", nesterov)
        self.weight_decay = _check_float(owner, "weight_decay", weight_decay)
        self.dampening = _check_float(owner, "dampening", dampening)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening 0")
        super().__init__(params, lr)

    def hyperparameters(self):
        return {"lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "dampening": self.dampening}

    def _update(self, name, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g, copy=True)
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class RMSprop(Optimizer):
    """RMSprop (PyTorch's): ``v = alpha v + (1 - alpha) g^2``; ``p -= lr g / (sqrt(v) +
    eps)``, with optional momentum, centering and L2 weight decay."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0,
                 weight_decay=0.0, centered=False):
        owner = "RMSprop"
        self.alpha = _check_float(owner, "alpha", alpha)
        self.eps = _check_float(owner, "eps", eps)
        self.momentum = _check_float(owner, "momentum", momentum)
        self.weight_decay = _check_float(owner, "weight_decay", weight_decay)
        self.centered = _v.check_bool(owner, "centered", centered)
        super().__init__(params, lr)

    def hyperparameters(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay, "centered": self.centered}

    def _update(self, name, p, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if "square_avg" not in state:
            state["square_avg"] = np.zeros_like(p)
            if self.momentum > 0:
                state["momentum_buffer"] = np.zeros_like(p)
            if self.centered:
                state["grad_avg"] = np.zeros_like(p)
        sq = state["square_avg"]
        sq *= self.alpha
        sq += (1 - self.alpha) * g * g
        if self.centered:
            ga = state["grad_avg"]
            ga += (g - ga) * (1 - self.alpha)
            avg = np.sqrt(sq - ga * ga) + self.eps
        else:
            avg = np.sqrt(sq) + self.eps
        if self.momentum > 0:
            buf = state["momentum_buffer"]
            buf *= self.momentum
            buf += g / avg
            p -= self.lr * buf
        else:
            p -= self.lr * (g / avg)


class Adam(Optimizer):
    """Adam (PyTorch's): bias-corrected first and second moments;
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``; ``weight_decay``
    is L2 added to the gradient (see :class:`AdamW` for the decoupled form)."""

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        owner = type(self).__name__
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"{owner}: 'betas' must be a pair (beta1, beta2), got "
                            f"{_v.describe(betas)}") from None
        self.betas = (_check_float(owner, "betas[0]", b1, maximum=1.0),
                      _check_float(owner, "betas[1]", b2, maximum=1.0))
        self.eps = _check_float(owner, "eps", eps)
        self.weight_decay = _check_float(owner, "weight_decay", weight_decay)
        super().__init__(params, lr)

    def hyperparameters(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _update(self, name, p, g, state):
        b1, b2 = self.betas
        if self.weight_decay:
            if self._decoupled:
                p *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (g - m) * (1 - b1)
        v *= b2
        v += (1 - b2) * g * g
        step_size = self.lr / (1 - b1 ** t)
        denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + self.eps
        p -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam
    step (PyTorch's AdamW; default ``weight_decay=1e-2``)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)


#: names accepted where an optimizer may be given by name
OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


# ---------------------------------------------------------------------------
# clipping


def _grad_arrays(owner, grads):
    if hasattr(grads, "values"):
        arrays = [g for g in grads.values() if g is not None]
    else:
        try:
            arrays = [g for g in grads if g is not None]
        except TypeError:
            raise TypeError(f"{owner}: 'grads' must be a dict or a list of arrays, got "
                            f"{_v.describe(grads)}") from None
    for g in arrays:
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError(f"{owner}: every gradient must be a float ndarray (modified in "
                            f"place), got {_v.describe(g)}")
    return arrays


def clip_grad_norm(grads, max_norm, eps=1e-6):
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: ``coef = max_norm / (total + eps)``, applied
    when below 1.  Returns the total norm before clipping (a float; inf or nan when a
    gradient is not finite, and then nothing is scaled).
    """
    owner = "clip_grad_norm"
    max_norm = _check_float(owner, "max_norm", max_norm)
    arrays = _grad_arrays(owner, grads)
    total = math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in arrays)) if arrays else 0.0
    if not math.isfinite(total):
        return total
    coef = max_norm / (total + eps)
    if coef < 1.0:
        for g in arrays:
            g *= g.dtype.type(coef)
    return total


def clip_grad_value(grads, value):
    """Clip every gradient element to ``[-value, value]`` in place."""
    value = _check_float("clip_grad_value", "value", value)
    for g in _grad_arrays("clip_grad_value", grads):
        np.clip(g, -value, value, out=g)


# ---------------------------------------------------------------------------
# schedules (call .step() once per epoch, after the epoch's optimizer steps)


class _Schedule:
    def __init__(self, optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: 'optimizer' must be an rnnfast.optim "
                            f"optimizer, got {_v.describe(optimizer)}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = [optimizer.lr]

    def step(self):
        """Advance one epoch and set the optimizer's learning rate."""
        self.last_epoch += 1
        self.optimizer.lr = self._lr_at(self.last_epoch)
        self._last_lr = [self.optimizer.lr]

    def get_last_lr(self):
        """``[lr]`` (a list, like PyTorch's, of the one parameter group)."""
        return list(self._last_lr)

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.base_lr = float(state["base_lr"])
        self.last_epoch = int(state["last_epoch"])


class StepLR(_Schedule):
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.step_size = _v.check_int("StepLR", "step_size", step_size)
        self.gamma = _check_float("StepLR", "gamma", gamma)
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        # PyTorch's chained form: multiply by gamma at every multiple of step_size
        if epoch % self.step_size == 0:
            return self.optimizer.lr * self.gamma
        return self.optimizer.lr


class CosineAnnealingLR(_Schedule):
    """``lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        self.T_max = _v.check_int("CosineAnnealingLR", "T_max", T_max)
        self.eta_min = _check_float("CosineAnnealingLR", "eta_min", eta_min)
        super().__init__(optimizer)

    def _lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * epoch / self.T_max)) / 2
