"""Models that train: :class:`Sequential` and :class:`Seq2Seq`, with Keras-style
``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``save`` and :func:`load`.

Data are batch first: ``x`` is ``(N, T, ...)`` for sequence models (``(N, ...)``
otherwise), ``lengths`` ``(N,)``.  The recurrent layers (:class:`rnnfast.RNN`,
:class:`~rnnfast.LSTM`, :class:`~rnnfast.GRU`) process whole sequences in compiled
code; a layer built with ``batch_first=False`` is fed transposed views, so either
layout works.  No Python runs per time step during training: per batch, one forward
and one backward call per layer.

Saving writes one ``.npz`` (weights plus a JSON description of the architecture,
no pickles) atomically; :func:`load` rebuilds the model.
"""

import json
import math
import os
import time
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from ._io import atomic_write
from . import _validation as _v
from . import losses as _losses
from . import optim as _optim
from .layers import LAYER_CLASSES, Embedding, LastStep, Layer

__all__ = ["Sequential", "Seq2Seq", "History", "TrainingDiverged", "load", "pad_sequences"]

_CONFIG_KEY = "__rnnfast_model__"
_FORMAT = "rnnfast.models"
_FORMAT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """The training loss (or gradient norm) became NaN or infinite.

    The model's weights are restored to the last ones that gave a finite loss;
    ``epoch`` and ``batch`` say where it happened, ``history`` holds what was recorded.
    """

    def __init__(self, message, epoch=None, batch=None, history=None):
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.history = history


class History:
    """What :meth:`fit` recorded: ``history`` (dict of per-epoch lists: ``"loss"``,
    ``"accuracy"``, ``"val_loss"``, ``"val_accuracy"``, ``"lr"``), ``epoch`` (indices),
    ``stopped_epoch`` and ``best_epoch`` (early stopping), ``seconds``."""

    def __init__(self):
        self.history = {}
        self.epoch = []
        self.stopped_epoch = None
        self.best_epoch = None
        self.seconds = 0.0

    def _record(self, epoch, logs):
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self):
        last = {k: (round(v[-1], 6) if isinstance(v[-1], float) else v[-1])
                for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


def _is_recurrent(layer):
    from .nn import _RNNBase
    return isinstance(layer, _RNNBase)


def _as_array(owner, name, value):
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception:
        raise TypeError(f"{owner}: {name!r} must be an array, got {_v.describe(value)}") from None


# ---------------------------------------------------------------------------
# shared training machinery


class _Trainer:
    """compile / fit / evaluate / save shared by :class:`Sequential` and :class:`Seq2Seq`.

    Subclasses provide ``_modules()`` (ordered (prefix, layer) pairs), ``_forward_batch``
    (training forward + backward of one batch, returning the loss statistics) and
    ``_eval_batch``.
    """

    _loss_name = None
    _loss_fn = None
    optimizer = None

    # ------------------------------------------------------------- parameters
    def named_parameters(self):
        """OrderedDict ``"<prefix>.<name>" -> ndarray`` (the layers' own arrays)."""
        out = OrderedDict()
        for prefix, layer in self._modules():
            for name, p in _layer_params(layer).items():
                out[f"{prefix}.{name}"] = p
        return out

    def parameters(self):
        """List of the parameter arrays (the layers' own)."""
        return list(self.named_parameters().values())

    def count_params(self):
        """Total number of parameter values."""
        return int(sum(p.size for p in self.parameters()))

    def summary(self):
        """A table of the layers with their parameter counts (a string)."""
        rows = [("layer", "type", "parameters")]
        for prefix, layer in self._modules():
            n = sum(p.size for p in _layer_params(layer).values())
            desc = type(layer).__name__
            if _is_recurrent(layer):
                desc = repr(layer)
            elif hasattr(layer, "config"):
                desc = repr(layer)
            rows.append((prefix, desc.replace("\n", " "), str(n)))
        w0 = max(len(r[0]) for r in rows)
        w1 = min(max(len(r[1]) for r in rows), 90)
        lines = [f"{r[0]:<{w0}}  {r[1][:w1]:<{w1}}  {r[2]:>12}" for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append("-" * len(lines[0]))
        lines.append(f"total parameters: {self.count_params()} ({self.dtype})")
        return "\n".join(lines)

    @property
    def grads(self):
        """Gradients of the last backward, under the names of :meth:`named_parameters`."""
        out = OrderedDict()
        for prefix, layer in self._modules():
            g = layer.grads or {}
            for name, a in g.items():
                if a is not None:
                    out[f"{prefix}.{name}"] = a
        return out

    @property
    def dtype(self):
        params = self.parameters()
        return params[0].dtype if params else np.dtype(np.float32)

    def train(self, mode=True):
        """Training mode for every layer; returns ``self``."""
        mode = _v.check_bool(f"{type(self).__name__}.train", "mode", mode)
        for _, layer in self._modules():
            layer.train(mode)
        self.training = mode
        return self

    def eval(self):
        """Inference mode for every layer; returns ``self``."""
        return self.train(False)

    def _release(self):
        """Make every recurrent layer's parameters writable again (they are locked while
        a training cache or an inference pack uses them)."""
        for _, layer in self._modules():
            if _is_recurrent(layer):
                layer.flatten_parameters()
            elif isinstance(layer, Sequential):
                layer._release()

    def state_dict(self):
        """Copies of the parameters (OrderedDict, the names of :meth:`named_parameters`)."""
        return OrderedDict((k, np.array(v, copy=True)) for k, v in self.named_parameters().items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters in place from a mapping with the names of :meth:`named_parameters`."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"{owner}: state_dict must be a mapping, got {_v.describe(state_dict)}")
        own = self.named_parameters()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict.keys() if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"{owner}: missing keys {_v.name_list(missing) if missing else '[]'}, "
                             f"unexpected keys {_v.name_list(unexpected) if unexpected else '[]'}")
        staged = {}
        for k, p in own.items():
            if k in state_dict:
                a = np.asarray(state_dict[k])
                if a.shape != p.shape:
                    raise ValueError(f"{owner}: {k}: expected shape {p.shape}, got {a.shape}")
                if a.dtype.kind not in "fiu":
                    raise TypeError(f"{owner}: {k}: expected a real array, got dtype {a.dtype}")
                staged[k] = a
        self._release()
        for k, a in staged.items():
            np.copyto(own[k], a, casting="unsafe")
        return missing, unexpected

    # ---------------------------------------------------------------- compile
    def compile(self, loss="cross_entropy", optimizer=None, clip_norm=None, clip_value=None,
                scheduler=None, metrics=None):
        """Choose the loss, optimizer, gradient clipping and learning-rate schedule.

        Parameters
        ----------
        loss : {"cross_entropy", "bce", "mse"} or callable
            ``"cross_entropy"``: the model outputs logits ``(..., C)``, ``y`` holds class
            ids; ``"bce"``: logits and 0/1 targets of the output's shape; ``"mse"``.
            Sequence outputs ``(N, T, ...)`` are masked by ``lengths``.  A callable
            ``loss(output, y) -> (loss_value, d_output)`` (mean over the batch) is used
            as is; if it has a ``lengths`` parameter it gets the batch's lengths (or
            None).
        optimizer : rnnfast.optim optimizer, optimizer name, or None
            Built over ``model.named_parameters()``; a name ("adam", "sgd", "rmsprop",
            "adamw") or None (Adam, lr 1e-3) builds one with default settings.
        clip_norm, clip_value : float, optional
            Global-norm clipping (:func:`rnnfast.optim.clip_grad_norm`) and/or element
            clipping before each step.
        scheduler : StepLR / CosineAnnealingLR, optional
            Stepped once per epoch.
        metrics : ignored (accuracy is recorded automatically for classification).
        """
        owner = f"{type(self).__name__}.compile"
        if callable(loss) and not isinstance(loss, str):
            self._loss_name, self._loss_fn = None, loss
            try:
                import inspect
                self._loss_takes_lengths = "lengths" in inspect.signature(loss).parameters
            except (TypeError, ValueError):
                self._loss_takes_lengths = False
        elif isinstance(loss, str) and loss in _losses.LOSSES:
            self._loss_name = {"softmax_cross_entropy": "cross_entropy",
                               "binary_cross_entropy_with_logits": "bce"}.get(loss, loss)
            self._loss_fn = _losses.LOSSES[loss]
        else:
            raise ValueError(f"{owner}: 'loss' must be one of {sorted(_losses.LOSSES)} or a "
                             f"callable, got {loss!r}")
        if optimizer is None:
            optimizer = _optim.Adam(self.named_parameters())
        elif isinstance(optimizer, str):
            cls = _optim.OPTIMIZERS.get(optimizer.lower())
            if cls is None:
                raise ValueError(f"{owner}: unknown optimizer {optimizer!r}; expected one of "
                                 f"{sorted(_optim.OPTIMIZERS)} or an optimizer instance")
            optimizer = cls(self.named_parameters()) if cls is not _optim.SGD else cls(
                self.named_parameters(), lr=1e-2)
        elif not isinstance(optimizer, _optim.Optimizer):
            raise TypeError(f"{owner}: 'optimizer' must be an rnnfast.optim optimizer, got "
                            f"{_v.describe(optimizer)}")
        own = self.named_parameters()
        if set(optimizer.params) != set(own) or any(
                optimizer.params[k] is not own[k] for k in own):
            raise ValueError(f"{owner}: the optimizer must be built over this model's "
                             f"named_parameters() (same names and the same arrays)")
        for name, val in (("clip_norm", clip_norm), ("clip_value", clip_value)):
            if val is not None:
                _optim._check_float(owner, name, val)
        if scheduler is not None and getattr(scheduler, "optimizer", None) is not optimizer:
            raise ValueError(f"{owner}: 'scheduler' must be built over the given optimizer")
        self.optimizer = optimizer
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.scheduler = scheduler
        return self

    def _need_compiled(self, owner):
        if self._loss_fn is None:
            raise RuntimeError(f"{owner}: call model.compile(loss=..., optimizer=...) first")

    # ------------------------------------------------------------------- loss
    def _loss(self, out, y, lengths):
        """(mean loss, d_out, loss_sum, count, correct, n_acc) for one batch."""
        name = self._loss_name
        if name is None:
            if getattr(self, "_loss_takes_lengths", False):
                res = self._loss_fn(out, y, lengths=lengths)
            else:
                res = self._loss_fn(out, y)
            try:
                loss, grad = res
            except (TypeError, ValueError):
                raise TypeError("custom loss must return (loss_value, gradient)") from None
            grad = np.asarray(grad, dtype=out.dtype)
            if grad.shape != out.shape:
                raise ValueError(f"custom loss returned a gradient of shape {grad.shape}, the "
                                 f"output has {out.shape}")
            n = out.shape[0]
            return float(loss), grad, float(loss) * n, n, 0, 0
        seq = lengths is not None and out.ndim >= 3
        lens = lengths if seq else None
        mask = None
        if seq:
            mask = np.arange(out.shape[1])[None, :] < lens[:, None]
        names = ("output", "y")
        s, g = self._loss_fn(out, y, lengths=lens, reduction="sum", _names=names)
        if name == "cross_entropy":
            count = int(mask.sum()) if seq else out.size // out.shape[-1]
            pred = np.argmax(out, axis=-1)
            hit = pred == y
            n_acc = count
        else:
            per_step = int(np.prod(out.shape[2:], dtype=np.int64)) if seq else 1
            count = int(mask.sum()) * per_step if seq else out.size
            hit = (out > 0) == (np.asarray(y) > 0.5) if name == "bce" else None
            n_acc = count if name == "bce" else 0
        correct = 0
        if hit is not None:
            if seq:
                hit = hit & mask.reshape(mask.shape + (1,) * (hit.ndim - 2))
            correct = int(hit.sum())
        if count == 0:
            return 0.0, np.zeros_like(out), 0.0, 0, 0, 0
        g /= g.dtype.type(count)
        return s / count, g, s, count, correct, n_acc

    def _classification(self):
        return self._loss_name in ("cross_entropy", "bce")

    # ---------------------------------------------------------------- updates
    def _apply_update(self):
        grads = self.grads
        if self.clip_value is not None:
            _optim.clip_grad_value(grads, self.clip_value)
        if self.clip_norm is not None:
            norm = _optim.clip_grad_norm(grads, self.clip_norm)
        else:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
        if not math.isfinite(norm):
            return norm
        self.optimizer.step(grads)
        return norm

    # -------------------------------------------------------------------- fit
    def _fit_loop(self, owner, data, n, epochs, batch_size, validation, shuffle, seed,
                  early_stopping, progress, callbacks):
        """The epoch / batch loop shared by every model."""
        epochs = _v.check_int(owner, "epochs", epochs)
        batch_size = _v.check_int(owner, "batch_size", batch_size)
        shuffle = _v.check_bool(owner, "shuffle", shuffle)
        progress = _v.check_bool(owner, "progress", progress)
        rng = _v.check_seed(owner, seed)
        es = _early_stopping(owner, early_stopping, validation is not None)
        if callbacks is None:
            callbacks = []
        elif callable(callbacks) or hasattr(callbacks, "on_epoch_end"):
            callbacks = [callbacks]
        try:
            callbacks = list(callbacks)
        except TypeError:
            raise TypeError(f"{owner}: 'callbacks' must be a list of callables, got "
                            f"{_v.describe(callbacks)}") from None
        for cb in callbacks:
            if not (callable(cb) or hasattr(cb, "on_epoch_end")):
                raise TypeError(f"{owner}: every callback must be callable(epoch, logs) or have "
                                f"on_epoch_end(epoch, logs), got {_v.describe(cb)}")
        bar_cls = _tqdm() if progress else None
        history = History()
        self.history = history
        params = self.named_parameters()
        good = {k: np.array(p, copy=True) for k, p in params.items()}
        cand = {k: np.empty_like(p) for k, p in params.items()}
        best = None
        best_value = math.inf
        waited = 0
        t_start = time.perf_counter()
        self._diverge_state = {"good": good, "cand": cand, "params": params}
        for epoch in range(epochs):
            self.train()
            if getattr(self, "stateful", False):
                self.reset_states()
            order = rng.permutation(n) if shuffle else np.arange(n)
            bar = None
            if bar_cls is not None:
                bar = bar_cls(total=n, desc=f"epoch {epoch + 1}/{epochs}", unit="seq",
                              leave=True, dynamic_ncols=True)
            tot_loss, tot_count, tot_correct, tot_acc = 0.0, 0, 0, 0
            t0 = time.perf_counter()
            try:
                for bi, start in enumerate(range(0, n, batch_size)):
                    idx = order[start:start + batch_size]
                    batch = {k: (v[idx] if v is not None else None) for k, v in data.items()}
                    for s, c, corr, na in self._train_batch(batch, epoch, bi, history):
                        tot_loss += s
                        tot_count += c
                        tot_correct += corr
                        tot_acc += na
                    if bar is not None:
                        bar.update(len(idx))
                        if tot_count:
                            bar.set_postfix(loss=f"{tot_loss / tot_count:.4f}",
                                            refresh=False)
                logs = {"loss": tot_loss / tot_count if tot_count else 0.0}
                if self._classification() and tot_acc:
                    logs["accuracy"] = tot_correct / tot_acc
                if validation is not None:
                    vlogs = self._evaluate_arrays(validation, batch_size)
                    logs.update({"val_" + k: v for k, v in vlogs.items()})
                if bar is not None:
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
            finally:
                if bar is not None:
                    bar.close()
            logs["lr"] = self.optimizer.lr
            logs["seconds"] = time.perf_counter() - t0
            history._record(epoch, logs)
            if self.scheduler is not None:
                self.scheduler.step()
            stop = False
            for cb in callbacks:
                fn = cb.on_epoch_end if hasattr(cb, "on_epoch_end") else cb
                if fn(epoch, dict(logs)) is True:
                    stop = True
            if es is not None:
                value = logs[es["monitor"]]
                if value < best_value - es["min_delta"]:
                    best_value = value
                    waited = 0
                    history.best_epoch = epoch
                    if es["restore_best_weights"]:
                        best = self.state_dict()
                else:
                    waited += 1
                    if waited >= es["patience"]:
                        history.stopped_epoch = epoch
                        stop = True
            if stop:
                break
        if es is not None and es["restore_best_weights"] and best is not None:
            self.load_state_dict(best)
        self.train()
        history.seconds = time.perf_counter() - t_start
        return history

    def _guard_begin(self):
        """Before a training forward: remember the current weights as candidates."""
        st = self._diverge_state
        for k, p in st["params"].items():
            np.copyto(st["cand"][k], p)

    def _guard_check(self, loss, epoch, batch, history, what="loss"):
        """After a forward: the candidate weights become the last good ones when the loss
        is finite; otherwise restore the last good weights and raise."""
        st = self._diverge_state
        if math.isfinite(loss):
            st["good"], st["cand"] = st["cand"], st["good"]
            return
        self._release()
        for k, p in st["params"].items():
            np.copyto(p, st["good"][k])
        raise TrainingDiverged(
            f"{type(self).__name__}.fit: the training {what} became {loss} at epoch {epoch + 1}, "
            f"batch {batch + 1}; the weights were restored to the last ones that gave a finite "
            f"loss (lower the learning rate, clip gradients with compile(clip_norm=...), or "
            f"check the data for NaN/Inf)", epoch=epoch, batch=batch, history=history)

    def _step_guarded(self, epoch, batch, history):
        norm = self._apply_update()
        if not math.isfinite(norm):
            # weights untouched (the step was skipped): they are the candidates that gave a
            # finite loss, so they are the last good ones
            st = self._diverge_state
            self._release()
            for k, p in st["params"].items():
                np.copyto(p, st["good"][k])
            raise TrainingDiverged(
                f"{type(self).__name__}.fit: the gradient norm became {norm} at epoch "
                f"{epoch + 1}, batch {batch + 1}; no step was taken and the weights are the "
                f"last ones that gave a finite loss", epoch=epoch, batch=batch, history=history)

    def _evaluate_arrays(self, data, batch_size):
        self.eval()
        stateful = getattr(self, "stateful", False)
        if stateful:
            self.stateful = False   # evaluation is stateless and leaves the states alone
        try:
            n = next(len(v) for v in data.values() if v is not None)
            tot_loss, tot_count, tot_correct, tot_acc = 0.0, 0, 0, 0
            for start in range(0, n, batch_size):
                batch = {k: (v[start:start + batch_size] if v is not None else None)
                         for k, v in data.items()}
                s, c, corr, na = self._eval_batch(batch)
                tot_loss += s
                tot_count += c
                tot_correct += corr
                tot_acc += na
        finally:
            if stateful:
                self.stateful = True
            self.train()
        logs = {"loss": tot_loss / tot_count if tot_count else 0.0}
        if self._classification() and tot_acc:
            logs["accuracy"] = tot_correct / tot_acc
        return logs

    # ------------------------------------------------------------------- save
    def save(self, path):
        """Write the architecture (JSON) and weights to one ``.npz`` at ``path``, atomically:
        a temporary file in the same directory is written, flushed and renamed over
        ``path``, so a failed save leaves an existing file intact.  No pickles."""
        owner = f"{type(self).__name__}.save"
        try:
            path = os.fspath(path)
        except TypeError:
            raise TypeError(f"{owner}: 'path' must be a str or os.PathLike, got "
                            f"{_v.describe(path)}") from None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        arrays = {k: np.ascontiguousarray(p) for k, p in self.named_parameters().items()}
        cfg = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "model": self._spec()}
        if _CONFIG_KEY in arrays:  # pragma: no cover - parameter names always hold a dot
            raise ValueError(f"{owner}: parameter name clash with {_CONFIG_KEY}")
        arrays[_CONFIG_KEY] = np.array(json.dumps(cfg))
        atomic_write(path, lambda f: np.savez(f, **arrays))
        return path


def _tqdm():
    """tqdm's class, imported only when a progress bar is asked for; None if missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def _early_stopping(owner, es, has_val):
    if es is None or es is False:
        return None
    if _v._is_int(es):
        es = {"patience": int(es)}
    if not isinstance(es, dict):
        raise TypeError(f"{owner}: 'early_stopping' must be None, a patience int or a dict, got "
                        f"{_v.describe(es)}")
    allowed = {"patience", "monitor", "min_delta", "restore_best_weights"}
    extra = set(es) - allowed
    if extra:
        raise ValueError(f"{owner}: unknown early_stopping keys {sorted(extra)}; allowed "
                         f"{sorted(allowed)}")
    out = {"patience": _v.check_int(owner, "early_stopping['patience']", es.get("patience", 3), 1),
           "monitor": es.get("monitor", "val_loss" if has_val else "loss"),
           "min_delta": float(es.get("min_delta", 0.0)),
           "restore_best_weights": _v.check_bool(owner, "early_stopping['restore_best_weights']",
                                                 es.get("restore_best_weights", True))}
    if out["monitor"] not in ("loss", "val_loss"):
        raise ValueError(f"{owner}: early_stopping['monitor'] must be 'loss' or 'val_loss', got "
                         f"{out['monitor']!r}")
    if out["monitor"] == "val_loss" and not has_val:
        raise ValueError(f"{owner}: early_stopping monitors 'val_loss', which needs "
                         f"validation_data")
    return out


def _layer_params(layer):
    if _is_recurrent(layer):
        return OrderedDict(layer.named_parameters())
    return layer.named_parameters()


# ---------------------------------------------------------------------------
# Sequential


class Sequential(_Trainer):
    """A stack of layers applied in order, trained with :meth:`fit`.

    Parameters
    ----------
    layers : list
        :mod:`rnnfast.layers` layers, recurrent layers (:class:`rnnfast.RNN`,
        :class:`~rnnfast.LSTM`, :class:`~rnnfast.GRU`) and nested :class:`Sequential`.
        Recurrent layers get ``lengths`` and pass on their output sequence ``y``
        (their final states are used only to carry state across TBPTT chunks, or
        across calls when ``stateful``).
    stateful : bool, default False
        Each forward starts from the final states of the previous one (same batch
        size; no gradient flows across calls) until :meth:`reset_states`.  ``fit``
        resets them at every epoch and whenever the batch size changes;
        ``evaluate`` runs statelessly.

    Examples
    --------
    >>> import numpy as np, rnnfast
    >>> from rnnfast.layers import Embedding, Linear, LastStep
    >>> model = rnnfast.models.Sequential([
    ...     Embedding(20, 8, seed=0), rnnfast.LSTM(8, 16, batch_first=True, seed=1),
    ...     LastStep(), Linear(16, 2, seed=2)])
    >>> model.compile("cross_entropy", rnnfast.optim.Adam(model.named_parameters(), lr=1e-2))
    ... # doctest: +ELLIPSIS
    <rnnfast.models.Sequential object at ...>
    """

    def __init__(self, layers, stateful=False):
        self.stateful = _v.check_bool("Sequential", "stateful", stateful)
        self._states = None
        if isinstance(layers, (Layer, Sequential)) or _is_recurrent(layers):
            layers = [layers]
        try:
            layers = list(layers)
        except TypeError:
            raise TypeError(f"Sequential: 'layers' must be a list of layers, got "
                            f"{_v.describe(layers)}") from None
        if not layers:
            raise ValueError("Sequential: 'layers' is empty")
        for i, layer in enumerate(layers):
            if not (isinstance(layer, (Layer, Sequential)) or _is_recurrent(layer)):
                raise TypeError(f"Sequential: layers[{i}] must be an rnnfast layer (rnnfast.layers."
                                f"*, RNN/LSTM/GRU or Sequential), got {_v.describe(layer)}")
        self.layers = layers
        self.training = True
        self._tbptt = None
        self.history = None
        # LastStep after a bidirectional layer takes the reverse half at step 0
        prev = None
        for layer in layers:
            if _is_recurrent(layer):
                prev = layer
            elif isinstance(layer, LastStep) and layer.bidirectional is None:
                layer.bidirectional = bool(prev is not None and prev.bidirectional)

    def _modules(self):
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __repr__(self):
        inner = ",\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"

    def reset_states(self):
        """Forget the states a ``stateful`` model carries."""
        self._states = None

    @property
    def recurrent_layers(self):
        return [layer for layer in self.layers if _is_recurrent(layer)]

    # ---------------------------------------------------------------- compute
    def __call__(self, x, lengths=None):
        return self.forward(x, lengths)

    def forward(self, x, lengths=None, initial_state=None, return_state=False):
        """Run every layer; returns the output (and the recurrent layers' final states,
        a list with one entry per recurrent layer, with ``return_state=True``).

        ``initial_state``: such a list (entries may be None) to start from.
        """
        states_in = initial_state
        n_rec = len(self.recurrent_layers)
        if states_in is None and self.stateful and self._states is not None:
            n = np.shape(x)[0] if np.ndim(x) else 0
            carried = _state_rows(self._states[0]) if self._states else n
            if carried != n:
                raise ValueError(f"Sequential.forward: this stateful model carries states for "
                                 f"{carried} sequences, x has {n}; call reset_states() first")
            states_in = self._states
        if states_in is not None and len(states_in) != n_rec:
            raise ValueError(f"Sequential.forward: 'initial_state' must have one entry per "
                             f"recurrent layer ({n_rec}), got {len(states_in)}")
        if lengths is not None:
            x = _as_array("Sequential.forward", "x", x)
            if x.ndim < 1:
                raise ValueError("Sequential.forward: 'x' must have a batch axis, got a scalar")
            lengths = self._check_lengths("Sequential.forward", lengths, x)
        states_out = []
        r = 0
        for layer in self.layers:
            if _is_recurrent(layer):
                hx = states_in[r] if states_in is not None else None
                if layer.batch_first:
                    x, st = layer(x, hx, lengths)
                else:
                    y, st = layer(np.swapaxes(x, 0, 1), hx, lengths)
                    x = np.swapaxes(y, 0, 1)
                states_out.append(st)
                r += 1
            elif isinstance(layer, Sequential):
                x = layer.forward(x, lengths)
            elif getattr(layer, "uses_lengths", False):
                x = layer(x, lengths)
            else:
                x = layer(x)
        if self.stateful:
            self._states = _detach(states_out)
        return (x, states_out) if return_state else x

    def backward(self, dy):
        """Backpropagate ``dy`` (gradient of the output) through every layer; fills each
        layer's ``grads`` (see :attr:`grads`) and returns the gradient with respect to
        the input (None when the first layer is an :class:`Embedding`)."""
        for layer in reversed(self.layers):
            if dy is None:
                raise ValueError("Sequential.backward: an Embedding can only be the first layer")
            if _is_recurrent(layer):
                if layer.batch_first:
                    dy = layer.backward(dy)[0]
                else:
                    dy = np.swapaxes(layer.backward(np.swapaxes(dy, 0, 1))[0], 0, 1)
            else:
                dy = layer.backward(dy)
        return dy

    # -------------------------------------------------------------- data checks
    def _check_x(self, owner, x, name="x"):
        x = _as_array(owner, name, x)
        first = self.layers[0]
        while isinstance(first, Sequential):
            first = first.layers[0]
        if isinstance(first, Embedding):
            first.check_ids(x, name=name, owner=owner)
        else:
            dt = self.dtype
            if x.dtype.kind != "f":
                raise TypeError(f"{owner}: {name!r} must be a float array of dtype {dt} (the "
                                f"model's), got dtype {x.dtype}")
            if x.dtype != dt:
                raise TypeError(f"{owner}: {name!r} has dtype {x.dtype}, the model's parameters "
                                f"{dt}; convert it with {name}.astype(np.{dt.name})")
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"{owner}: {name!r} must hold at least one sample, got shape "
                             f"{x.shape}")
        return x

    @staticmethod
    def _check_finite(owner, x, lengths, name="x"):
        """Float inputs must be finite at the valid steps (padding may hold anything)."""
        if x.dtype.kind != "f":
            return
        if lengths is not None:
            x = x[np.arange(x.shape[1])[None, :] < lengths[:, None]]
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{owner}: {name!r} holds NaN or Inf"
                             + (" at valid steps" if lengths is not None else ""))

    def _input_steps(self, x):
        """T when ``x`` is a batch of sequences (ids ``(N, T)`` for an Embedding first,
        ``(N, T, F)`` otherwise), else None (e.g. ``(N, F)`` into RepeatVector)."""
        first = self.layers[0]
        while isinstance(first, Sequential):
            first = first.layers[0]
        if isinstance(first, Embedding):
            return x.shape[1] if x.ndim >= 2 else None
        return x.shape[1] if x.ndim >= 3 else None

    def _check_lengths(self, owner, lengths, x, name="lengths"):
        """Lengths ``(N,)``; bounded by x's T for sequence input, else by the recurrent
        layers themselves (one-to-many: lengths of the generated steps)."""
        if lengths is None:
            return None
        T = self._input_steps(x)
        return _v.check_lengths(f"{owner} ({name})", lengths, x.shape[0],
                                2**62 if T is None else T, False)

    def _check_y(self, owner, y, x, lengths, name="y"):
        """Validate targets against the output the model gives on one sample."""
        y = _as_array(owner, name, y)
        if y.ndim < 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"{owner}: {name!r} must have one row per sample of x "
                             f"({x.shape[0]}), got shape {y.shape}")
        if self._loss_name is None:
            return y
        out = self._probe(x[:1], None if lengths is None else lengths[:1])
        shape = (y.shape[0],) + out.shape[1:]
        if self._loss_name == "cross_entropy":
            if y.dtype.kind not in "iu":
                raise TypeError(f"{owner}: {name!r} must hold integer class ids for "
                                f"loss='cross_entropy', got dtype {y.dtype}")
            if y.shape != shape[:-1]:
                raise ValueError(f"{owner}: {name!r} must have shape {shape[:-1]} (the output "
                                 f"{shape} without its class axis), got {y.shape}")
            C = shape[-1]
            if y.size:
                yy = y
                if lengths is not None and y.ndim >= 2:
                    yy = y[np.arange(y.shape[1])[None, :] < lengths[:, None]]
                if yy.size and (yy.min() < 0 or yy.max() >= C):
                    bad = int(yy.min()) if yy.min() < 0 else int(yy.max())
                    raise ValueError(f"{owner}: {name!r} holds class id {bad}, outside [0, {C})")
            if lengths is not None and y.ndim >= 2:
                y = np.where(np.arange(y.shape[1])[None, :] < lengths[:, None], y, 0)
        else:
            if y.dtype.kind not in "fiub":
                raise TypeError(f"{owner}: {name!r} must be numeric, got dtype {y.dtype}")
            if y.shape != shape:
                raise ValueError(f"{owner}: {name!r} must have the output's shape {shape}, got "
                                 f"{y.shape}")
            if not np.all(np.isfinite(y)):
                raise ValueError(f"{owner}: {name!r} holds NaN or Inf")
            if self._loss_name == "bce" and y.size and (y.min() < 0 or y.max() > 1):
                raise ValueError(f"{owner}: {name!r} must lie in [0, 1] for loss='bce'")
            y = y.astype(self.dtype, copy=False)
        return y

    def _probe(self, x, lengths):
        """The output for a few samples, in eval mode, leaving carried states alone."""
        was, stateful = self.training, self.stateful
        self.eval()
        self.stateful = False
        try:
            return self.forward(x, lengths)
        finally:
            self.stateful = stateful
            self.train(was)

    def _data(self, owner, x, y, lengths, names=("x", "y", "lengths")):
        x = self._check_x(owner, x, names[0])
        lengths = self._check_lengths(owner, lengths, x, names[2])
        self._check_finite(owner, x, lengths if self._input_steps(x) else None, names[0])
        y = self._check_y(owner, y, x, lengths, names[1])
        return {"x": x, "y": y, "lengths": lengths}

    # -------------------------------------------------------------------- fit
    def fit(self, x, y, lengths=None, epochs=1, batch_size=32, validation_data=None,
            shuffle=True, seed=None, tbptt=None, early_stopping=None, progress=True,
            callbacks=None):
        """Train with mini-batches; returns a :class:`History`.

        Parameters
        ----------
        x : ndarray (N, T, ...) or (N, ...)
            Token ids (when the first layer is an Embedding) or floats of the model dtype.
        y : ndarray
            Class ids of the output's shape without the class axis (cross-entropy), or
            targets of the output's shape (bce, mse).
        lengths : ints (N,), optional
            Valid steps per sequence: recurrent layers stop there, the loss ignores
            padded steps.
        epochs, batch_size : int
        validation_data : tuple ``(x_val, y_val)`` or ``(x_val, y_val, lengths_val)``
            Evaluated after every epoch ("val_loss", "val_accuracy").
        shuffle : bool; seed : int or Generator
            Batch order per epoch.
        tbptt : int or (k1, k2), optional
            Truncated BPTT for sequence-to-sequence outputs: every ``k1`` steps, an
            update from the loss of those ``k1`` steps, backpropagated through the last
            ``k2 >= k1`` steps; recurrent state carried across chunks (within a batch).
        early_stopping : int (patience) or dict
            ``{"patience": 3, "monitor": "val_loss", "min_delta": 0.0,
            "restore_best_weights": True}``.
        progress : bool
            tqdm progress bar (loss, sequences/s) when tqdm is installed.
        callbacks : list of callables ``cb(epoch, logs)`` (return True to stop) or objects
            with ``on_epoch_end(epoch, logs)``.

        Raises
        ------
        TrainingDiverged
            The loss or gradient norm became NaN/Inf; the last good weights are restored.
        """
        owner = "Sequential.fit"
        self._need_compiled(owner)
        data = self._data(owner, x, y, lengths)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise TypeError(f"{owner}: 'validation_data' must be (x_val, y_val) or (x_val, "
                                f"y_val, lengths_val), got {_v.describe(validation_data)}")
            vx, vy = validation_data[0], validation_data[1]
            vl = validation_data[2] if len(validation_data) == 3 else None
            validation = self._data(owner, vx, vy, vl, ("validation_data[0]",
                                                        "validation_data[1]",
                                                        "validation_data[2]"))
        self._tbptt = self._check_tbptt(owner, tbptt, data)
        try:
            return self._fit_loop(owner, data, data["x"].shape[0], epochs, batch_size,
                                  validation, shuffle, seed, early_stopping, progress, callbacks)
        finally:
            self._tbptt = None

    def _check_tbptt(self, owner, tbptt, data):
        if tbptt is None:
            return None
        if _v._is_int(tbptt):
            k1 = k2 = _v.check_int(owner, "tbptt", tbptt)
        else:
            try:
                k1, k2 = tbptt
            except (TypeError, ValueError):
                raise TypeError(f"{owner}: 'tbptt' must be an int k or a pair (k1, k2), got "
                                f"{_v.describe(tbptt)}") from None
            k1 = _v.check_int(owner, "tbptt[0] (k1)", k1)
            k2 = _v.check_int(owner, "tbptt[1] (k2)", k2)
        if k2 < k1:
            raise ValueError(f"{owner}: tbptt needs k2 >= k1 (every k1 steps, backpropagate "
                             f"through the last k2 steps), got k1={k1}, k2={k2}")
        rec = self.recurrent_layers
        if not rec:
            raise ValueError(f"{owner}: tbptt needs a recurrent layer")
        if any(layer.bidirectional for layer in rec):
            raise ValueError(f"{owner}: tbptt cannot carry state for bidirectional layers")
        if any(isinstance(layer, (LastStep, Sequential)) for layer in self.layers):
            raise ValueError(f"{owner}: tbptt needs per-step outputs (no LastStep or nested "
                             f"Sequential)")
        x, y = data["x"], data["y"]
        if x.ndim < 2 or y.ndim < 2 or y.shape[1] != x.shape[1]:
            raise ValueError(f"{owner}: tbptt needs per-step targets y of shape (N, T, ...) "
                             f"matching x's T={x.shape[1] if x.ndim > 1 else '?'}, got "
                             f"{y.shape}")
        return k1, k2

    def _train_batch(self, batch, epoch, bi, history):
        x, y, lengths = batch["x"], batch["y"], batch["lengths"]
        if self.stateful and self._states is not None and (
                _state_rows(self._states[0]) != x.shape[0]):
            self.reset_states()
        if self._tbptt is None:
            self._guard_begin()
            out = self.forward(x, lengths)
            loss, g, s, c, corr, na = self._loss(out, y, lengths)
            self._guard_check(loss, epoch, bi, history)
            self.backward(g)
            self._step_guarded(epoch, bi, history)
            return [(s, c, corr, na)]
        return self._train_tbptt(x, y, lengths, epoch, bi, history)

    def _train_tbptt(self, x, y, lengths, epoch, bi, history):
        """Chunks ``[c, c + k1)`` for ``c = 0, k1, 2 k1, ...`` (the last one may be
        shorter): one update each, from the loss of the chunk's steps, backpropagated
        through the window ``[c + k1 - k2, c + k1)`` (clipped to ``[0, T)``).  The state
        at a window's start is the previous window's final state (k1 == k2) or is
        recomputed by a forward without backward from the last carried state; states
        never carry gradients across windows (weights change between windows, as in any
        truncated BPTT)."""
        k1, k2 = self._tbptt
        N, T = x.shape[0], x.shape[1]
        lens = lengths if lengths is not None else np.full(N, T, dtype=np.int64)
        stats = []
        pos, state = 0, None   # `state`: the recurrent states after `pos` steps
        first = 0
        while first < T:
            e = min(first + k1, T)
            s = max(0, first + k1 - k2)
            if s > pos:
                state = self._advance(x[:, pos:s], np.clip(lens - pos, 0, s - pos), state)
                pos = s
            self._guard_begin()
            out, new_state = self.forward(x[:, s:e], np.clip(lens - s, 0, e - s), state,
                                          return_state=True)
            off = first - s
            loss, g, sm, c, corr, na = self._loss(out[:, off:], y[:, first:e],
                                                  np.clip(lens - first, 0, e - first))
            self._guard_check(loss, epoch, bi, history)
            if off:
                g = np.concatenate([np.zeros(out[:, :off].shape, out.dtype), g], axis=1)
            self.backward(g)
            self._step_guarded(epoch, bi, history)
            stats.append((sm, c, corr, na))
            if max(0, e + k1 - k2) == e:   # the next window starts where this one ended
                state, pos = _detach(new_state), e
            first = e
        return stats

    def _advance(self, x, lengths, state):
        """Forward (no cache, no dropout) from ``state`` through ``x``; the final states."""
        was = self.training
        for layer in self.recurrent_layers:
            layer.train(False)
        try:
            h = x
            r = 0
            out_states = []
            for layer in self.layers:
                if _is_recurrent(layer):
                    hx = state[r] if state is not None else None
                    if layer.batch_first:
                        h, st = layer(h, hx, lengths)
                    else:
                        yy, st = layer(np.swapaxes(h, 0, 1), hx, lengths)
                        h = np.swapaxes(yy, 0, 1)
                    out_states.append(st)
                    r += 1
                else:
                    t = layer.training
                    layer.train(False)
                    h = layer(h)
                    layer.train(t)
            return _detach(out_states)
        finally:
            for layer in self.recurrent_layers:
                layer.train(was)

    def _eval_batch(self, batch):
        out = self.forward(batch["x"], batch["lengths"])
        _, _, s, c, corr, na = self._loss(out, batch["y"], batch["lengths"])
        return s, c, corr, na

    # ---------------------------------------------------------- evaluate etc.
    def evaluate(self, x, y, lengths=None, batch_size=256):
        """Loss (and accuracy for classification) over the data, in eval mode: a dict."""
        owner = "Sequential.evaluate"
        self._need_compiled(owner)
        batch_size = _v.check_int(owner, "batch_size", batch_size)
        data = self._data(owner, x, y, lengths)
        return self._evaluate_arrays(data, batch_size)

    def predict(self, x, lengths=None, batch_size=256):
        """Outputs for ``x`` in eval mode (batched), concatenated along the first axis."""
        owner = "Sequential.predict"
        batch_size = _v.check_int(owner, "batch_size", batch_size)
        x = self._check_x(owner, x)
        lengths = self._check_lengths(owner, lengths, x)
        self._check_finite(owner, x, lengths if self._input_steps(x) else None)
        was = self.training
        self.eval()
        try:
            outs = [self.forward(x[i:i + batch_size],
                                 None if lengths is None else lengths[i:i + batch_size])
                    for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was)
        return np.concatenate(outs, axis=0)

    def _spec(self):
        spec = {"class": "Sequential", "layers": [_layer_spec(layer) for layer in self.layers]}
        if self.stateful:
            spec["stateful"] = True
        return spec


def _state_rows(state):
    return (state[0] if isinstance(state, tuple) else state).shape[1]


def _detach(states):
    """Copies of the states (so later calls cannot alias them)."""
    out = []
    for st in states:
        if isinstance(st, tuple):
            out.append(tuple(np.array(a, copy=True) for a in st))
        else:
            out.append(np.array(st, copy=True))
    return out


# ---------------------------------------------------------------------------
# Seq2Seq


class Seq2Seq(_Trainer):
    """Encoder-decoder for sequence-to-sequence tasks (token ids in, token ids out).

    The encoder (``encoder_embedding`` -> ``encoder_rnn``) reads the input; its final
    state starts the decoder (``decoder_embedding`` -> ``decoder_rnn`` -> ``head``),
    which is trained with teacher forcing (input at step t: ``bos`` for t = 0, else the
    target token t - 1) and decodes greedily in :meth:`generate`.

    The encoder's final state must have the decoder's state shape: ``encoder
    num_layers * directions == decoder num_layers`` with equal hidden (and proj)
    sizes and the same cell type.  Targets ``y`` include the end token ``eos``;
    ``y_lengths`` count it.

    Parameters
    ----------
    encoder_embedding, decoder_embedding : rnnfast.layers.Embedding
    encoder_rnn, decoder_rnn : rnnfast.RNN / LSTM / GRU (decoder unidirectional)
    head : layer or Sequential mapping decoder outputs ``(B, T, H)`` to logits
        ``(B, T, V)``
    bos, eos : int, optional
        Default start and end tokens for :meth:`fit` and :meth:`generate`.
    """

    _PARTS = ("encoder_embedding", "encoder_rnn", "decoder_embedding", "decoder_rnn", "head")

    def __init__(self, encoder_embedding, encoder_rnn, decoder_embedding, decoder_rnn, head,
                 bos=None, eos=None):
        owner = "Seq2Seq"
        for name, obj in (("encoder_embedding", encoder_embedding),
                          ("decoder_embedding", decoder_embedding)):
            if not isinstance(obj, Embedding):
                raise TypeError(f"{owner}: {name!r} must be an rnnfast.layers.Embedding, got "
                                f"{_v.describe(obj)}")
        for name, obj in (("encoder_rnn", encoder_rnn), ("decoder_rnn", decoder_rnn)):
            if not _is_recurrent(obj):
                raise TypeError(f"{owner}: {name!r} must be an rnnfast RNN, LSTM or GRU, got "
                                f"{_v.describe(obj)}")
        if not (isinstance(head, (Layer, Sequential))):
            raise TypeError(f"{owner}: 'head' must be a layer or Sequential, got "
                            f"{_v.describe(head)}")
        enc, dec = encoder_rnn, decoder_rnn
        if dec.bidirectional:
            raise ValueError(f"{owner}: 'decoder_rnn' must be unidirectional")
        if enc.mode != dec.mode:
            raise ValueError(f"{owner}: encoder and decoder must be the same cell type, got "
                             f"{enc.mode} and {dec.mode}")
        D = 2 if enc.bidirectional else 1
        if (enc.num_layers * D != dec.num_layers or enc.hidden_size != dec.hidden_size
                or enc.proj_size != dec.proj_size):
            raise ValueError(
                f"{owner}: the encoder's final state ({enc.num_layers * D} x hidden "
                f"{enc.hidden_size}) must match the decoder's initial state ({dec.num_layers} "
                f"x hidden {dec.hidden_size}): use encoder num_layers * directions == decoder "
                f"num_layers and equal hidden sizes")
        if encoder_embedding.embedding_dim != enc.input_size:
            raise ValueError(f"{owner}: encoder_embedding dim {encoder_embedding.embedding_dim} "
                             f"!= encoder_rnn input_size {enc.input_size}")
        if decoder_embedding.embedding_dim != dec.input_size:
            raise ValueError(f"{owner}: decoder_embedding dim {decoder_embedding.embedding_dim} "
                             f"!= decoder_rnn input_size {dec.input_size}")
        last = head
        while isinstance(last, Sequential):
            last = last.layers[-1]
        out_features = getattr(last, "out_features", None)
        if out_features is not None and out_features != decoder_embedding.num_embeddings:
            raise ValueError(f"{owner}: the head predicts {out_features} classes but the decoder "
                             f"vocabulary has {decoder_embedding.num_embeddings} tokens (generated "
                             f"tokens are fed back to decoder_embedding)")
        self.encoder_embedding = encoder_embedding
        self.encoder_rnn = enc
        self.decoder_embedding = decoder_embedding
        self.decoder_rnn = dec
        self.head = head
        self.bos = self._token(owner, "bos", bos) if bos is not None else None
        self.eos = self._token(owner, "eos", eos) if eos is not None else None
        self.training = True
        self.history = None

    def _token(self, owner, name, value):
        if not _v._is_int(value):
            raise TypeError(f"{owner}: {name!r} must be an int token id, got {_v.describe(value)}")
        V = self.decoder_embedding.num_embeddings
        if not 0 <= int(value) < V:
            raise ValueError(f"{owner}: {name!r} must be in [0, {V}) (the decoder vocabulary), got "
                             f"{int(value)}")
        return int(value)

    def _modules(self):
        return [(p, getattr(self, p)) for p in self._PARTS]

    def _release(self):
        for _, layer in self._modules():
            if _is_recurrent(layer):
                layer.flatten_parameters()
            elif isinstance(layer, Sequential):
                layer._release()

    @property
    def grads(self):
        out = OrderedDict()
        for prefix, layer in self._modules():
            g = layer.grads if not isinstance(layer, Sequential) else layer.grads
            for name, a in (g or {}).items():
                if a is not None:
                    out[f"{prefix}.{name}"] = a
        return out

    # ---------------------------------------------------------------- compute
    @staticmethod
    def _rnn(layer, x, hx, lengths):
        if layer.batch_first:
            return layer(x, hx, lengths)
        y, st = layer(np.swapaxes(x, 0, 1), hx, lengths)
        return np.swapaxes(y, 0, 1), st

    @staticmethod
    def _rnn_backward(layer, dy, dstate):
        if dy is not None and not layer.batch_first:
            dy = np.swapaxes(dy, 0, 1)
        if layer.mode == "LSTM":
            dx, dst, _ = layer.backward(dy, dstate[0] if dstate else None,
                                        dstate[1] if dstate else None)
        else:
            dx, dst, _ = layer.backward(dy, dstate)
        if not layer.batch_first:
            dx = np.swapaxes(dx, 0, 1)
        return dx, dst

    def encode(self, x, lengths=None):
        """The encoder's final state (``h_n`` or ``(h_n, c_n)``) for ids ``x`` ``(B, T)``."""
        e = self.encoder_embedding(x)
        _, state = self._rnn(self.encoder_rnn, e, None, lengths)
        return state

    def _head(self, h, lengths=None):
        if isinstance(self.head, Sequential):
            return self.head.forward(h, lengths)
        return self.head(h)

    def forward(self, x, y_in, lengths=None, y_lengths=None):
        """Teacher-forced logits ``(B, Ty, V)`` for decoder inputs ``y_in`` ``(B, Ty)``."""
        state = self.encode(x, lengths)
        d = self.decoder_embedding(y_in)
        h, _ = self._rnn(self.decoder_rnn, d, state, y_lengths)
        return self._head(h, y_lengths)

    def backward(self, dlogits):
        """Backpropagate the gradient of :meth:`forward`'s logits through the whole model."""
        dh = self.head.backward(dlogits)
        ddec, dstate = self._rnn_backward(self.decoder_rnn, dh, None)
        self.decoder_embedding.backward(ddec)
        denc, _ = self._rnn_backward(self.encoder_rnn, None, dstate)
        self.encoder_embedding.backward(denc)

    def _decoder_inputs(self, y, bos):
        y_in = np.empty_like(y)
        y_in[:, 0] = bos
        y_in[:, 1:] = y[:, :-1]
        return y_in

    # ------------------------------------------------------------------- data
    def _ids(self, owner, name, value, emb, lengths_name, lengths):
        value = _as_array(owner, name, value)
        if value.ndim != 2:
            raise ValueError(f"{owner}: {name!r} must be token ids of shape (N, T), got shape "
                             f"{value.shape}")
        emb.check_ids(value, name=name, owner=owner)
        lens = None
        if lengths is not None:
            lens = _v.check_lengths(f"{owner} ({lengths_name})", lengths, value.shape[0],
                                    value.shape[1], False)
        return value, lens

    def _data(self, owner, x, y, lengths, y_lengths, names=("x", "y", "lengths", "y_lengths")):
        x, lengths = self._ids(owner, names[0], x, self.encoder_embedding, names[2], lengths)
        y, y_lengths = self._ids(owner, names[1], y, self.decoder_embedding, names[3], y_lengths)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{owner}: {names[1]!r} must have one row per sample of x "
                             f"({x.shape[0]}), got {y.shape[0]}")
        return {"x": x, "y": y, "lengths": lengths, "y_lengths": y_lengths}

    # -------------------------------------------------------------------- fit
    def fit(self, x, y, lengths=None, y_lengths=None, epochs=1, batch_size=32,
            validation_data=None, shuffle=True, seed=None, early_stopping=None, progress=True,
            callbacks=None, bos=None):
        """Teacher-forced training; returns a :class:`History`.

        ``x`` ``(N, Tx)`` input ids with ``lengths``; ``y`` ``(N, Ty)`` target ids (ending in
        ``eos``) with ``y_lengths``; ``validation_data = (x, y[, lengths[, y_lengths]])``.
        Other arguments as :meth:`Sequential.fit`.
        """
        owner = "Seq2Seq.fit"
        if self._loss_fn is None:
            self.compile("cross_entropy")
        if self._loss_name != "cross_entropy":
            raise ValueError(f"{owner}: Seq2Seq trains with loss='cross_entropy'")
        bos = self._token(owner, "bos", bos) if bos is not None else self.bos
        if bos is None:
            raise ValueError(f"{owner}: give the start token: Seq2Seq(..., bos=...) or "
                             f"fit(bos=...)")
        self._bos_fit = bos
        data = self._data(owner, x, y, lengths, y_lengths)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or not 2 <= len(validation_data) <= 4:
                raise TypeError(f"{owner}: 'validation_data' must be (x, y[, lengths[, "
                                f"y_lengths]]), got {_v.describe(validation_data)}")
            vd = list(validation_data) + [None] * (4 - len(validation_data))
            validation = self._data(owner, *vd, names=(
                "validation_data[0]", "validation_data[1]", "validation_data[2]",
                "validation_data[3]"))
        return self._fit_loop(owner, data, data["x"].shape[0], epochs, batch_size, validation,
                              shuffle, seed, early_stopping, progress, callbacks)

    def _train_batch(self, batch, epoch, bi, history):
        x, y = batch["x"], batch["y"]
        ylen = batch["y_lengths"]
        self._guard_begin()
        logits = self.forward(x, self._decoder_inputs(y, self._bos_fit), batch["lengths"], ylen)
        loss, g, s, c, corr, na = self._loss(logits, y, ylen if ylen is not None else
                                             np.full(y.shape[0], y.shape[1], dtype=np.int64))
        self._guard_check(loss, epoch, bi, history)
        self.backward(g)
        self._step_guarded(epoch, bi, history)
        return [(s, c, corr, na)]

    def _eval_batch(self, batch):
        x, y = batch["x"], batch["y"]
        ylen = batch["y_lengths"]
        bos = getattr(self, "_bos_fit", None)
        if bos is None:
            bos = self.bos
        logits = self.forward(x, self._decoder_inputs(y, bos), batch["lengths"], ylen)
        _, _, s, c, corr, na = self._loss(logits, y, ylen if ylen is not None else
                                          np.full(y.shape[0], y.shape[1], dtype=np.int64))
        return s, c, corr, na

    def evaluate(self, x, y, lengths=None, y_lengths=None, batch_size=256, bos=None):
        """Teacher-forced loss and token accuracy (eval mode), a dict."""
        owner = "Seq2Seq.evaluate"
        if self._loss_fn is None:
            self.compile("cross_entropy")
        bos = self._token(owner, "bos", bos) if bos is not None else self.bos
        if bos is None:
            raise ValueError(f"{owner}: give the start token: Seq2Seq(..., bos=...) or "
                             f"evaluate(bos=...)")
        self._bos_fit = bos
        batch_size = _v.check_int(owner, "batch_size", batch_size)
        return self._evaluate_arrays(self._data(owner, x, y, lengths, y_lengths), batch_size)

    # --------------------------------------------------------------- generate
    def generate(self, x, lengths=None, max_len=50, bos=None, eos=None):
        """Greedy decoding.

        Returns
        -------
        tokens : int64 ndarray of shape (B, max_len)
            The generated ids; after a sequence's ``eos`` the row is filled with ``eos``.
        out_lengths : int64 ndarray of shape (B,)
            Tokens before (excluding) the first ``eos`` (``max_len`` if none came).
        """
        owner = "Seq2Seq.generate"
        bos = self._token(owner, "bos", bos) if bos is not None else self.bos
        eos = self._token(owner, "eos", eos) if eos is not None else self.eos
        if bos is None or eos is None:
            raise ValueError(f"{owner}: give bos and eos (here or to Seq2Seq(...))")
        max_len = _v.check_int(owner, "max_len", max_len)
        x, lengths = self._ids(owner, "x", x, self.encoder_embedding, "lengths", lengths)
        B = x.shape[0]
        was = self.training
        self.eval()
        try:
            state = self.encode(x, lengths)
            tokens = np.full((B, max_len), eos, dtype=np.int64)
            out_len = np.full(B, max_len, dtype=np.int64)
            done = np.zeros(B, dtype=bool)
            cur = np.full((B, 1), bos, dtype=np.int64)
            for t in range(max_len):   # one decoder step per token: inherent to decoding
                d = self.decoder_embedding(cur)
                h, state = self._rnn(self.decoder_rnn, d, state, None)
                logits = self._head(h)
                nxt = np.argmax(logits[:, 0], axis=-1).astype(np.int64)
                nxt[done] = eos
                tokens[:, t] = nxt
                newly = (~done) & (nxt == eos)
                out_len[newly] = t
                done |= newly
                if done.all():
                    break
                cur = nxt[:, None]
        finally:
            self.train(was)
        return tokens, out_len

    def predict(self, x, lengths=None, max_len=50, bos=None, eos=None):
        """Alias of :meth:`generate`."""
        return self.generate(x, lengths, max_len, bos, eos)

    def _spec(self):
        return {"class": "Seq2Seq", "bos": self.bos, "eos": self.eos,
                "parts": {p: _layer_spec(getattr(self, p)) for p in self._PARTS}}


# ---------------------------------------------------------------------------
# data helper


def pad_sequences(sequences, maxlen=None, value=0, dtype=None):
    """Stack variable-length sequences into a batch-first array and their lengths.

    Parameters
    ----------
    sequences : list of array-likes of shape (T_i,) or (T_i, F)
        Token-id sequences or per-step feature vectors (all with the same trailing shape).
    maxlen : int, optional
        Pad (at the end) or truncate (keeping the beginning) to this length; default the
        longest sequence.
    value : scalar
        Padding value.
    dtype : dtype, optional
        Default: the sequences' common dtype.

    Returns
    -------
    padded : ndarray of shape (N, maxlen) or (N, maxlen, F)
    lengths : int64 ndarray of shape (N,)
    """
    owner = "pad_sequences"
    try:
        arrays = [np.asarray(s) for s in sequences]
    except TypeError:
        raise TypeError(f"{owner}: 'sequences' must be a list of arrays, got "
                        f"{_v.describe(sequences)}") from None
    except ValueError as exc:
        raise ValueError(f"{owner}: a sequence is not a regular array ({exc})") from None
    if not arrays:
        raise ValueError(f"{owner}: 'sequences' is empty")
    tails = {a.shape[1:] for a in arrays if a.size or a.ndim > 1}
    if not tails:
        tails = {()}
    if any(a.ndim == 0 for a in arrays) or len(tails) != 1:
        raise ValueError(f"{owner}: every sequence must have shape (T_i, ...) with the same "
                         f"trailing shape, got shapes {[a.shape for a in arrays[:5]]}...")
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    if maxlen is None:
        maxlen = int(lengths.max())
    else:
        maxlen = _v.check_int(owner, "maxlen", maxlen, 0)
    if dtype is None:   # an empty list is float64 to NumPy: it does not decide the dtype
        filled = [a for a in arrays if a.size]
        dtype = np.result_type(*filled) if filled else np.int64
    out = np.full((len(arrays), maxlen) + tails.pop(), value, dtype=dtype)
    for i, a in enumerate(arrays):
        n = min(a.shape[0], maxlen)
        out[i, :n] = a[:n]
    return out, np.minimum(lengths, maxlen)


# ---------------------------------------------------------------------------
# save / load


def _layer_spec(layer):
    if isinstance(layer, Sequential):
        return layer._spec()
    if _is_recurrent(layer):
        cfg = layer._config()
        keep = {k: cfg[k] for k in ("input_size", "hidden_size", "num_layers", "bias",
                                    "batch_first", "dropout", "bidirectional", "dtype",
                                    "nonlinearity", "proj_size", "reset_after") if k in cfg}
        backend = layer.backend if isinstance(layer.backend, str) else "cpu"
        return {"class": type(layer).__name__, "config": keep, "backend": backend}
    name = type(layer).__name__
    if LAYER_CLASSES.get(name) is not type(layer):
        raise TypeError(f"save: cannot save a layer of class {name} (only rnnfast.layers "
                        f"classes, recurrent layers and Sequential)")
    return {"class": name, "config": layer.config()}


def _build(spec, bad):
    from . import nn
    if not isinstance(spec, dict) or "class" not in spec:
        raise bad("malformed layer description")
    cls = spec["class"]
    if cls == "Sequential":
        layers = spec.get("layers")
        if not isinstance(layers, list) or not layers:
            raise bad("Sequential without layers")
        stateful = spec.get("stateful", False)
        if not isinstance(stateful, bool):
            raise bad("Sequential 'stateful' is not a bool")
        return Sequential([_build(s, bad) for s in layers], stateful=stateful)
    if cls == "Seq2Seq":
        parts = spec.get("parts")
        if not isinstance(parts, dict) or set(parts) != set(Seq2Seq._PARTS):
            raise bad("Seq2Seq without its five parts")
        return Seq2Seq(*[_build(parts[p], bad) for p in Seq2Seq._PARTS],
                       bos=spec.get("bos"), eos=spec.get("eos"))
    cfg = spec.get("config")
    if not isinstance(cfg, dict):
        raise bad(f"layer {cls!r} without a configuration")
    if cls in ("RNN", "LSTM", "GRU"):
        klass = getattr(nn, cls)
        kw = dict(cfg)
        backend = spec.get("backend", "cpu")
        return klass(**kw, backend=backend)
    klass = LAYER_CLASSES.get(cls)
    if klass is None:
        raise bad(f"unknown layer class {cls!r}")
    return klass(**cfg)


def load(path):
    """Rebuild a model written by ``model.save(path)`` (no pickles).

    Raises
    ------
    ValueError
        The file is not a valid rnnfast model file (corrupt, foreign, or inconsistent).
    FileNotFoundError
        No such file.
    """
    owner = "rnnfast.models.load"
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{owner}: 'path' must be a str or os.PathLike, got "
                        f"{_v.describe(path)}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)

    def bad(why):
        return ValueError(f"{owner}: {path!r} is not a valid rnnfast model file: {why}")

    with open(path, "rb") as f:
        try:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise bad("not an .npz archive (a single array)")
            with npz:
                if _CONFIG_KEY not in npz.files:
                    raise bad(f"no {_CONFIG_KEY!r} entry (was it written by model.save()?)")
                raw = npz[_CONFIG_KEY]
                if raw.dtype.kind != "U" or raw.shape != ():
                    raise bad(f"{_CONFIG_KEY!r} is not a JSON string")
                try:
                    cfg = json.loads(str(raw))
                except ValueError as exc:
                    raise bad(f"invalid JSON ({exc})") from None
                if not isinstance(cfg, dict) or cfg.get("format") != _FORMAT:
                    raise bad("the configuration does not come from rnnfast.models")
                fv = cfg.get("format_version")
                if not isinstance(fv, int) or fv < 1 or fv > _FORMAT_VERSION:
                    raise bad(f"unsupported format_version {fv!r}")
                try:
                    model = _build(cfg.get("model"), bad)
                except ValueError as exc:
                    if str(exc).startswith(owner):
                        raise
                    raise bad(f"invalid architecture ({exc})") from None
                except TypeError as exc:
                    raise bad(f"invalid architecture ({exc})") from None
                own = model.named_parameters()
                names = set(npz.files) - {_CONFIG_KEY}
                missing = sorted(set(own) - names)
                unexpected = sorted(names - set(own))
                if missing or unexpected:
                    raise bad(f"missing {missing}, unexpected {unexpected}")
                for k, p in own.items():
                    a = npz[k]
                    if a.shape != p.shape or a.dtype != p.dtype:
                        raise bad(f"{k}: expected shape {p.shape} and dtype {p.dtype}, got "
                                  f"{a.shape} and {a.dtype}")
                    np.copyto(p, a)
        except ValueError as exc:
            if str(exc).startswith(owner):
                raise
            raise bad(str(exc)) from None
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, KeyError,
                NotImplementedError, RuntimeError, UnicodeError) as exc:
            raise bad(f"{type(exc).__name__}: {exc}") from None
    return model
