r"""Stateful recurrent layers with PyTorch's vocabulary: :class:`RNN`, :class:`LSTM`,
:class:`GRU`.

The layers hold their parameters as NumPy arrays under PyTorch's names and shapes
(``layer.weight_ih_l0``, ``layer.bias_hh_l1_reverse``, ``layer.weight_hr_l0``...),
so a PyTorch ``state_dict`` loads as is, and compute with :mod:`rnnfast.functional`.

Quick tour::

    >>> import numpy as np
    >>> from rnnfast.nn import LSTM
    >>> lstm = LSTM(10, 20, num_layers=2, seed=0, backend='reference')
    >>> x = np.zeros((5, 3, 10), dtype=np.float32)          # (T, N, input_size)
    >>> y, (h_n, c_n) = lstm(x)                              # training mode by default
    >>> y.shape, h_n.shape, c_n.shape
    ((5, 3, 20), (2, 3, 20), (2, 3, 20))
    >>> dx, (dh0, dc0), grads = lstm.backward(np.ones_like(y))
    >>> sorted(grads)[:2]
    ['bias_hh_l0', 'bias_hh_l1']

Training and gradients
----------------------
Like PyTorch, a new layer is in training mode (``layer.training`` is True); dropout
(between layers, ``num_layers > 1``) only applies in training mode, and only a
training-mode call keeps what :meth:`backward` needs.  ``layer.eval()`` switches to
inference (no dropout, no cache kept), ``layer.train()`` back.  :meth:`backward`
returns the gradients and stores the parameter gradients in ``layer.grads``
(replacing, not accumulating, earlier ones); updating the parameters is up to you,
e.g. ``for name, p in layer.named_parameters(): p -= lr * layer.grads[name]``.

Truncated backpropagation through time
--------------------------------------
Feeding a long sequence in chunks and carrying the final state of each chunk into
the next, ``y2, h = rnn(x[t:t+k], hx=h)`` (``hx=(h, c)`` for an LSTM), computes
exactly the same forward pass as one call on the whole sequence (without lengths:
the state after a chunk is the state after its last step).  Backward of a chunk then
stops at the chunk boundary: ``dh0`` (and ``dc0``) it returns are the gradients
that would flow further back, which truncated BPTT discards.

Reproducibility
---------------
``seed`` (an int, or a ``numpy.random.Generator`` that is then used and advanced)
determines the initial parameters and then, in call order, every dropout mask.
Parameters are drawn in float64 and rounded to the layer dtype, so float32 and
float64 layers with the same seed start from the same values (up to rounding).
"""

import json
import math
import os
import warnings
import zipfile
import zlib
from collections import OrderedDict, namedtuple

import numpy as np

from ._io import atomic_write
from . import _validation as _v
from . import functional as _F

__all__ = ["RNN", "LSTM", "GRU", "load", "IncompatibleKeys"]

#: result of :meth:`load_state_dict` (same fields as PyTorch's)
IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])

_CONFIG_KEY = "__rnnfast_config__"
_FORMAT = "rnnfast.nn"
_FORMAT_VERSION = 2   # 2: ONNX options (written only when a layer has them)
_MAX_CONFIG_BYTES = 1 << 20


def _to_numpy(value):
    """Any array-like (incl. torch tensors, without importing torch) -> ndarray.

    ``np.asarray`` first; if that fails and the object has ``detach`` (a tensor that
    requires grad, on another device, or of a dtype NumPy lacks such as bfloat16),
    ``value.detach().cpu().numpy()`` and finally ``.double().numpy()``.
    """
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception:
        if not hasattr(value, "detach"):
            raise
    t = value.detach()
    if hasattr(t, "cpu"):
        t = t.cpu()
    try:
        return np.asarray(t.numpy())
    except Exception:
        if hasattr(t, "double"):
            return np.asarray(t.double().numpy())
        raise


class _RNNBase:
    """Shared machinery of :class:`RNN`, :class:`LSTM` and :class:`GRU`."""

    _default_mode = None  # set by subclasses

    # ------------------------------------------------------------------ setup
    def _setup(self, mode, input_size, hidden_size, num_layers, bias, batch_first,
               dropout, bidirectional, proj_size, reset_after, nonlinearity, dtype,
               seed, backend, init=True, onnx=None):
        name = type(self).__name__
        cell = mode.lower()
        cfg = _v.check_config(name, cell, input_size, hidden_size, num_layers, bias,
                              bidirectional, proj_size, reset_after, batch_first)
        options = _v.check_onnx_options(name, cell, cfg["bidirectional"], **(onnx or {}))
        dropout = _v.check_dropout(name, dropout)
        dtype = _v.check_dtype(name, dtype)
        rng = _v.check_seed(name, seed)
        backend = _v.check_backend(name, backend)
        if dropout > 0 and cfg["num_layers"] == 1:
            warnings.warn(
                f"{name}: dropout option adds dropout after all but last recurrent "
                f"layer, so non-zero dropout expects num_layers greater than 1, but got "
                f"dropout={dropout} and num_layers=1",
                UserWarning, stacklevel=3)
        D = 2 if cfg["bidirectional"] else 1
        _v.check_param_bytes(name, cell, cfg["input_size"], cfg["hidden_size"],
                             cfg["num_layers"], D, cfg["bias"], cfg["proj_size"],
                             dtype.itemsize)
        shapes = _F._shapes(cell, cfg["input_size"], cfg["hidden_size"],
                            cfg["num_layers"], D, cfg["bias"], cfg["proj_size"],
                            options["peephole"])

        self._mode = _v.MODE_OF_CELL[cell]
        self.input_size = cfg["input_size"]
        self.hidden_size = cfg["hidden_size"]
        self.num_layers = cfg["num_layers"]
        self.bias = cfg["bias"]
        self.batch_first = cfg["batch_first"]
        self.dropout = dropout
        self.bidirectional = cfg["bidirectional"]
        self.proj_size = cfg["proj_size"]
        self.reset_after = cfg["reset_after"]
        if nonlinearity is not None:
            self.nonlinearity = nonlinearity
        # ONNX semantics options (read-only after construction: they shape the
        # parameters and the saved configuration)
        self._options = options
        self.dtype = dtype
        self._backend = backend
        self._rng = rng
        self.training = True
        self.grads = None
        self._cache = None
        self._cache_state = "none"  # 'none' | 'eval' | 'ready' | 'released'
        self._param_names = tuple(shapes)
        self._param_shapes = shapes
        self._checked_sig = None   # signature of the parameters last validated
        self._packs = None         # inference: weights packed for the compiled kernels
        self._locked = []          # parameters made read-only while _packs is in use
        self._fast = None          # inference fast path (see _forward_fast)
        if init:
            self.reset_parameters()

    # -------------------------------------------------------------- attributes
    @property
    def backend(self):
        """Backend used by calls: ``'cpu'`` (compiled) or ``'reference'`` (NumPy)."""
        return self._backend

    @backend.setter
    def backend(self, value):
        self._release_packs()
        self._backend = _v.check_backend(type(self).__name__, value)

    @property
    def mode(self):
        """PyTorch's mode string: ``'RNN_TANH'``, ``'RNN_RELU'``, ``'LSTM'`` or ``'GRU'``."""
        return self._mode

    @property
    def activations(self):
        """ONNX activation names (a copy), or None for the defaults."""
        a = self._options["activations"]
        return None if a is None else list(a)

    @property
    def activation_alpha(self):
        """Alpha of every activation, defaults filled in (a copy), or None."""
        a = self._options["activation_alpha"]
        return None if a is None else list(a)

    @property
    def activation_beta(self):
        """Beta of every activation, defaults filled in (a copy), or None."""
        a = self._options["activation_beta"]
        return None if a is None else list(a)

    @property
    def clip(self):
        """Clamp of the gate pre-activations (float), or None."""
        return self._options["clip"]

    @property
    def input_forget(self):
        """LSTM coupled input-forget gate (``f = 1 - i``)."""
        return self._options["input_forget"]

    @property
    def peephole(self):
        """LSTM peepholes (parameters ``weight_peep_l{k}``)."""
        return self._options["peephole"]

    def _default_semantics(self):
        o = self._options
        return (o["activations"] is None and o["clip"] is None and not o["input_forget"]
                and not o["peephole"])

    def _onnx_config(self):
        """The non-default ONNX options, as constructor keyword arguments."""
        o, out = self._options, {}
        if o["activations"] is not None:
            out["activations"] = list(o["activations"])
            out["activation_alpha"] = list(o["activation_alpha"])
            out["activation_beta"] = list(o["activation_beta"])
        if o["clip"] is not None:
            out["clip"] = o["clip"]
        if o["input_forget"]:
            out["input_forget"] = True
        if o["peephole"]:
            out["peephole"] = True
        return out

    @property
    def _cell(self):
        return self.mode.lower()

    def reset_parameters(self):
        """Re-draw every parameter from U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

        PyTorch's default initialisation; values come from the layer's random
        generator (see ``seed``), in the order of :meth:`named_parameters`.
        """
        self._release_packs()
        k = 1.0 / math.sqrt(self.hidden_size)
        for name in self._param_names:
            shape = self._param_shapes[name]
            if name.startswith("weight_peep"):
                # peepholes start at zero (no random draw: the other parameters are
                # those of the same layer without peepholes)
                setattr(self, name, np.zeros(shape, dtype=self.dtype))
                continue
            setattr(self, name, self._rng.uniform(-k, k, size=shape).astype(self.dtype))

    def named_parameters(self):
        """Iterate over ``(name, array)`` pairs in PyTorch's order.

        The arrays are the layer's own (not copies): modifying them in place updates
        the layer.
        """
        for name in self._param_names:
            yield name, getattr(self, name)

    def parameters(self):
        """Iterate over the parameter arrays in PyTorch's order (the layer's own)."""
        for _, p in self.named_parameters():
            yield p

    @property
    def all_weights(self):
        """Parameters grouped per (layer, direction), like PyTorch's ``all_weights``."""
        D = 2 if self.bidirectional else 1
        groups = _F._names(self.num_layers, D, self.bias, self.proj_size, self.peephole)
        return [[getattr(self, n) for n in g.values()] for g in groups]

    def flatten_parameters(self):
        """Drop the packed copy of the weights (repacked at the next inference call) and
        make the parameters writable again; PyTorch code calls it harmlessly."""
        self._release_packs()

    def train(self, mode=True):
        """Set training mode (dropout active, backward possible); returns ``self``.

        Leaving inference mode drops the packed weights and makes the parameters
        writable again.  A training-mode call makes the parameters read-only until
        :meth:`backward` releases its cache (the backward needs the weights the forward
        used; PyTorch likewise refuses in-place edits of parameters a pending backward
        needs), so update weights after ``backward``, as usual.
        """
        self.training = _v.check_bool(f"{type(self).__name__}.train", "mode", mode)
        if self.training:
            self._release_packs()
        return self

    def eval(self):
        """Set inference mode (``train(False)``); returns ``self``.

        In inference mode the compiled backend packs the weights once, at the first
        call, and reuses the pack in every later call.  While a pack is in use the
        parameter arrays are read-only, so an in-place change cannot leave the pack
        stale (it raises instead).  To change weights, call :meth:`train`,
        :meth:`flatten_parameters` or :meth:`load_state_dict` first, or assign new
        arrays to the attributes (that repacks at the next call).
        """
        return self.train(False)

    def _release_packs(self):
        for arr in self._locked:
            arr.flags.writeable = True
        self._locked = []
        self._packs = None
        self._fast = None

    # ------------------------------------------------------------------ compute
    def _params(self):
        return {name: getattr(self, name) for name in self._param_names}

    def _make_packs(self, cell, params):
        """Pack every layer-direction's weights once for inference calls, and lock the
        parameters (read-only) for as long as the pack is used."""
        from . import _cpu
        D = 2 if self.bidirectional else 1
        packs = []
        def native(a):  # C-contiguous, native byte order (a copy only when needed)
            return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("="))

        for nm in _F._names(self.num_layers, D, self.bias, self.proj_size):
            packs.append(_cpu.pack_weights(
                cell, native(params[nm["weight_ih"]]), native(params[nm["weight_hh"]]),
                native(params[nm["weight_hr"]]) if self.proj_size else None,
                self.reset_after))
        self._lock_params(params)
        self._packs = packs
        return packs

    def _lock_params(self, params):
        for arr in params.values():
            if isinstance(arr, np.ndarray) and arr.flags.writeable:
                arr.flags.writeable = False
                self._locked.append(arr)

    # Inference fast path. A call's cost at small sizes is Python: the general path
    # validates the configuration, every parameter and the inputs in about 35 us. Once
    # an eval-mode call has validated and packed the weights, later calls with the
    # same parameter arrays and configuration, and inputs that are plainly valid
    # (ndarrays of the layer's dtype, C-contiguous, the right sizes, no lengths), go
    # straight to the kernels: the same kernel calls with the same arguments, so the
    # same bits. Anything else takes the general path, with its errors.
    _FAST_SCRATCH_MAX = 1 << 16   # gx scratch up to this many bytes: np.empty, not the pool

    def __setattr__(self, name, value):
        # any public attribute (a parameter, training, batch_first, nonlinearity, the
        # backend, ...) may change what a call does: the fast path is rebuilt after the
        # next validated call
        if name[0] != "_":
            self.__dict__["_fast"] = None
        object.__setattr__(self, name, value)

    def _build_fast(self, cell, params, packs):
        """Record what _forward_fast needs after a validated eval call (or nothing)."""
        from . import _config, _cpu
        if self.bidirectional or packs is None or not self._default_semantics():
            return
        dtype = np.dtype(self.dtype)
        for a in params.values():
            if (type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous):
                return
        G = _cpu._GATES[cell]
        H, P = self.hidden_size, self.proj_size or self.hidden_size
        layers = []
        for layer, nm in enumerate(_F._names(self.num_layers, 1, self.bias,
                                             self.proj_size)):
            layers.append((self.input_size if layer == 0 else P,
                           params[nm["weight_ih"]], params[nm["weight_hh"]],
                           params[nm["bias_ih"]] if self.bias else None,
                           params[nm["bias_hh"]] if self.bias else None,
                           params[nm["weight_hr"]] if self.proj_size else None,
                           packs[layer].data))
        self._fast = (_cpu._CELL_CODES[cell], _cpu._dtype_code(dtype), dtype, G, H, P,
                      len(layers), self.input_size, layers, bool(self.reset_after),
                      _cpu._kernels.forward_stack, _config.get_num_threads,
                      _cpu.workspace)

    def _forward_fast(self, x, hx):
        """The eval-mode forward for plainly valid inputs, or None (general path).

        Only reached while ``self._fast`` is set: after a validated eval-mode call with
        packed weights, and with no public attribute set since (``__setattr__``)."""
        (code, dtc, dtype, G, H, P, L, I0, layers, reset_after, kstack, nthreads,
         ws) = self._fast
        # (dtype identity: NumPy's native builtin dtypes are singletons; anything else,
        # a byte-swapped dtype say, just takes the general path)
        if type(x) is not np.ndarray or x.dtype is not dtype or not x.flags.c_contiguous:
            return None
        shape = x.shape
        unbatched = len(shape) == 2
        if unbatched:
            T, I = shape
            N = 1
            x = x.reshape(T, 1, I)
        elif len(shape) == 3 and not self.batch_first:
            T, N, I = shape
        else:
            return None
        if I != I0 or T == 0 or N == 0 or T * N * (G * H + P) > (1 << 24):
            return None   # (the general path checks huge sizes against the memory)
        h0 = c0 = None
        if hx is not None:
            if code == 2:
                if type(hx) is not tuple and type(hx) is not list or len(hx) != 2:
                    return None
                h0, c0 = hx
                if (type(c0) is not np.ndarray or c0.dtype is not dtype
                        or c0.shape != ((L, H) if unbatched else (L, N, H))
                        or not c0.flags.c_contiguous):
                    return None
            else:
                h0 = hx
            if (type(h0) is not np.ndarray or h0.dtype is not dtype
                    or h0.shape != ((L, P) if unbatched else (L, N, P))
                    or not h0.flags.c_contiguous):
                return None
            if unbatched:
                h0 = h0.reshape(L, 1, P)
                c0 = c0.reshape(L, 1, H) if code == 2 else None
        nbytes = T * N * G * H * dtype.itemsize
        small = nbytes <= self._FAST_SCRATCH_MAX
        gx = np.empty((T, N, G * H), dtype) if small else ws.take((T, N, G * H), dtype)
        try:
            y, h_n, c_n = kstack(code, dtc, T, N, H, P, reset_after, nthreads(), layers,
                                 x, h0, c0, gx)
        finally:
            if not small:
                ws.give(gx)
        self._cache = None
        self._cache_state = "eval"
        if unbatched:
            return _F.RNNOutput(y.reshape(T, P), h_n.reshape(L, P),
                                None if c_n is None else c_n.reshape(L, H), None)
        return _F.RNNOutput(y, h_n, c_n, None)

    def _forward(self, x, hx, lengths):
        if lengths is None and self._fast is not None and not self.training:
            out = self._forward_fast(x, hx)
            if out is not None:
                return out
        owner = type(self).__name__
        cell = self._cell
        if cell.startswith("rnn"):
            nl = _v.check_nonlinearity(owner, self.nonlinearity)
            cell = "rnn_" + nl
        training = _v.check_bool(owner, "training", self.training)
        self._cache = None
        self._cache_state = "none"
        params = self._params()
        # the same validated arrays (identity, shape, dtype, layout) need no new check
        sig = tuple((id(a), getattr(a, "shape", None), getattr(a, "dtype", None),
                     getattr(getattr(a, "flags", None), "c_contiguous", None))
                    for a in params.values())
        checked = sig == self._checked_sig
        if not checked:
            self._release_packs()
        packs = None
        if training:
            self._release_packs()
        elif self._backend == "cpu" and checked and self._default_semantics():
            packs = self._packs or self._make_packs(cell, params)
        out = _F._forward(
            owner, cell, x, params, input_size=self.input_size,
            hidden_size=self.hidden_size, num_layers=self.num_layers, bias=self.bias,
            bidirectional=self.bidirectional, batch_first=self.batch_first,
            proj_size=self.proj_size, reset_after=self.reset_after, dtype=self.dtype,
            hx=hx, lengths=lengths, dropout=self.dropout, training=training,
            rng=self._rng, dropout_masks=None, backend=self._backend,
            checked_config=True, checked_params=checked, packs=packs,
            copy_params=not training, options=self._options)
        self._checked_sig = sig
        if packs is not None and self._fast is None:
            self._build_fast(cell, params, packs)
        if training:
            # backward reads the weights this forward used: they stay read-only until
            # the cache is released (as PyTorch refuses in-place edits of parameters a
            # pending backward needs) instead of being copied at every call
            self._lock_params(params)
        self._cache = out.cache
        self._cache_state = "ready" if training else "eval"
        return out

    def _backward(self, dy, dh_n, dc_n, retain_cache):
        owner = type(self).__name__
        retain_cache = _v.check_bool(owner, "retain_cache", retain_cache)
        if self._cache is None:
            why = {
                "none": "no forward has run yet",
                "eval": "the last forward ran in eval mode (call layer.train() before "
                        "the forward)",
                "released": "the cache of the last forward was released by a previous "
                            "backward(); pass retain_cache=True to call backward more "
                            "than once",
            }[self._cache_state]
            raise RuntimeError(f"{owner}.backward() needs a training-mode forward: {why}")
        g = _F._backward(owner, self._cache, dy, dh_n, dc_n)
        if not retain_cache:
            self._cache = None
            self._cache_state = "released"
            self._release_packs()   # parameters writable again (e.g. for an SGD step)
        self.grads = g.grads
        return g

    def __call__(self, x, hx=None, lengths=None):
        return self.forward(x, hx, lengths)

    # ------------------------------------------------------------- state dicts
    def state_dict(self):
        """Copies of the parameters, ``OrderedDict`` name -> ndarray (PyTorch's order)."""
        return OrderedDict((n, np.array(p, copy=True)) for n, p in self.named_parameters())

    def load_state_dict(self, state_dict, strict=True):
        """Copy parameters from a mapping of names to array-likes.

        Parameters
        ----------
        state_dict : mapping of str to array-like
            E.g. ``torch_lstm.state_dict()`` (tensors are converted with
            ``np.asarray``, or ``.detach().cpu().numpy()`` when needed; torch is never
            imported), ``np.load('file.npz')``, or another layer's state dict.
            Values are cast to the layer dtype; integer values are accepted, bool,
            complex, string and object values are not.
        strict : bool, default True
            Require exactly the layer's parameter names.  With False, missing and
            unexpected names are skipped and reported in the result.

        Returns
        -------
        IncompatibleKeys
            Named tuple ``(missing_keys, unexpected_keys)`` (empty lists when strict).

        Raises
        ------
        ValueError
            Listing *every* missing, unexpected (strict) or mis-shaped key; nothing
            is loaded then.
        TypeError
            Not a mapping, or values that cannot be converted to a float array.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        strict = _v.check_bool(owner, "strict", strict)
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"{owner}: state_dict must be a mapping of parameter names to arrays, "
                f"got {_v.describe(state_dict)}")
        keys = list(state_dict.keys())
        key_set = set(keys)
        missing = [n for n in self._param_names if n not in key_set]
        unexpected = [k for k in keys if k not in self._param_shapes]
        problems, type_problems = [], []
        arrays = {}
        for name in self._param_names:
            if name not in key_set:
                continue
            raw = state_dict[name]
            try:
                arr = _to_numpy(raw)
            except Exception as exc:
                type_problems.append(
                    f"{name}: cannot convert {type(raw).__name__} to an array ({exc})")
                continue
            if arr.dtype.kind not in "fiu":
                type_problems.append(
                    f"{name}: expected a real float array, got dtype {arr.dtype}")
                continue
            expected = self._param_shapes[name]
            if arr.shape != expected:
                problems.append(f"{name}: expected shape {expected}, got {arr.shape}")
                continue
            arrays[name] = arr
        if strict:
            if missing:
                problems.insert(0, "missing keys: " + _v.name_list(missing))
            if unexpected:
                problems.insert(1 if missing else 0,
                                "unexpected keys: " + _v.name_list(unexpected))
        if problems or type_problems:
            msg = (f"{owner}: cannot load the state dict into {self!r}: "
                   + "; ".join(problems + type_problems))
            raise (ValueError if problems else TypeError)(msg)
        self._release_packs()
        for name, arr in arrays.items():
            cur = getattr(self, name, None)
            if (isinstance(cur, np.ndarray) and cur.shape == arr.shape
                    and cur.dtype == self.dtype and cur.flags.writeable
                    and type(cur) is np.ndarray):
                np.copyto(cur, arr, casting="unsafe")   # keep references valid
            else:
                setattr(self, name, np.array(arr, dtype=self.dtype, order="C"))
        return IncompatibleKeys([] if strict else missing, [] if strict else unexpected)

    # ------------------------------------------------------------- save / load
    def _config(self):
        cfg = {
            "format": _FORMAT,
            "format_version": 1,      # 2 below when the layer has ONNX options
            "class": type(self).__name__,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "batch_first": self.batch_first,
            "dropout": self.dropout,
            "bidirectional": self.bidirectional,
            "dtype": self.dtype.name,
        }
        if isinstance(self, RNN):
            cfg["nonlinearity"] = self.nonlinearity
        if isinstance(self, LSTM):
            cfg["proj_size"] = self.proj_size
        if isinstance(self, GRU):
            cfg["reset_after"] = self.reset_after
        onnx = self._onnx_config()
        if onnx:
            # readers of format 1 would ignore these keys and compute something else
            cfg["format_version"] = 2
            cfg.update(onnx)
        try:
            from ._version import __version__
            cfg["rnnfast_version"] = __version__
        except Exception:  # pragma: no cover
            pass
        return cfg

    def save(self, path):
        """Save configuration and parameters to an ``.npz`` file at exactly ``path``.

        The file holds one array per parameter plus the configuration as a JSON
        string (key ``'__rnnfast_config__'``); no pickles.  It is written to a
        temporary file in the same directory and then renamed over ``path``, so an
        existing file is never left half-written.  Load it with :meth:`load`.
        """
        owner = f"{type(self).__name__}.save"
        try:
            path = os.fspath(path)
        except TypeError:
            raise TypeError(f"{owner}: path must be a str or os.PathLike, got "
                            f"{_v.describe(path)}") from None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        arrays = {}
        for name, p in self.named_parameters():
            p = _to_numpy(p)
            if p.shape != self._param_shapes[name] or p.dtype != self.dtype:
                raise ValueError(
                    f"{owner}: parameter {name} has shape {p.shape} and dtype {p.dtype}, "
                    f"expected {self._param_shapes[name]} and {self.dtype}")
            arrays[name] = np.ascontiguousarray(p)
        arrays[_CONFIG_KEY] = np.array(json.dumps(self._config()))
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path, *, backend="cpu", seed=None):
        """Load a layer written by :meth:`save`.

        Parameters
        ----------
        path : str or os.PathLike
        backend : {'cpu', 'reference'}, default 'cpu'
        seed : int or numpy.random.Generator, optional
            Seeds the dropout masks of the loaded layer.

        Returns
        -------
        RNN, LSTM or GRU
            In training mode, like a new layer.  Called on a subclass (e.g.
            ``LSTM.load``), the file must hold that class; :func:`rnnfast.nn.load`
            accepts any.

        Raises
        ------
        ValueError
            The file is not an rnnfast ``.npz`` file, is corrupt, or holds another
            class.  Array shapes are checked against the configuration from the
            file headers before any array is read.
        OSError
            The file cannot be opened (e.g. FileNotFoundError).
        """
        return _load(path, cls, backend=backend, seed=seed)

    # ------------------------------------------------------------------- repr
    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        for k, v in self._onnx_config().items():
            s += f", {k}={v!r}"
        return s

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


def _load(path, cls, backend="cpu", seed=None):
    owner = f"{cls.__name__}.load" if cls is not _RNNBase else "load"
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{owner}: path must be a str or os.PathLike, got "
                        f"{_v.describe(path)}") from None
    if isinstance(path, bytes):   # zipfile would take bytes for file contents
        path = os.fsdecode(path)

    def bad(why):
        return ValueError(f"{owner}: {path!r} is not a valid rnnfast layer file: {why}")

    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise bad(f"not an .npz (zip) archive ({exc})") from None
    except (EOFError, ValueError, NotImplementedError) as exc:
        # NotImplementedError: zipfile's word for an unknown version or compression
        raise bad(f"unreadable archive ({exc})") from None
    with zf:
        members = {}
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                members[info.filename[:-4]] = info
        if _CONFIG_KEY not in members:
            raise bad(f"no {_CONFIG_KEY!r} entry (was it written by rnnfast's save()?)")

        def read_member(key, expected_shape=None, expected_dtype=None, max_bytes=None):
            info = members[key]
            if max_bytes is not None and info.file_size > max_bytes:
                raise bad(f"entry {key!r} is too large ({info.file_size} bytes)")
            try:
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, fortran, dt = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran, dt = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise bad(f"entry {key!r} has unsupported .npy version {version}")
                    if expected_shape is not None and tuple(shape) != tuple(expected_shape):
                        raise bad(f"{key}: expected shape {tuple(expected_shape)}, got "
                                  f"{tuple(shape)}")
                    if expected_dtype is not None and dt != expected_dtype:
                        raise bad(f"{key}: expected dtype {expected_dtype}, got {dt}")
                    if dt.hasobject:
                        raise bad(f"entry {key!r} holds Python objects")
                    nbytes = math.prod(shape) * dt.itemsize
                    if nbytes > info.file_size:
                        raise bad(f"entry {key!r} is truncated")
                    data = f.read(nbytes + 1)
                if len(data) != nbytes:
                    raise bad(f"entry {key!r} is truncated or has trailing data")
                arr = np.frombuffer(data, dtype=dt)
                if fortran:
                    arr = arr.reshape(shape[::-1]).T
                else:
                    arr = arr.reshape(shape)
                return np.array(arr, order="C")
            except ValueError as exc:
                if str(exc).startswith(f"{owner}:"):
                    raise
                raise bad(f"entry {key!r} is corrupt ({exc})") from None
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error,
                    NotImplementedError, RuntimeError) as exc:
                # RuntimeError: zipfile's word for an entry flagged as encrypted
                raise bad(f"entry {key!r} is corrupt ({exc})") from None

        raw_cfg = read_member(_CONFIG_KEY, max_bytes=_MAX_CONFIG_BYTES)
        if raw_cfg.dtype.kind != "U" or raw_cfg.shape != ():
            raise bad(f"{_CONFIG_KEY!r} is not a JSON string")
        try:
            cfg = json.loads(str(raw_cfg))
        except ValueError as exc:
            raise bad(f"{_CONFIG_KEY!r} is not valid JSON ({exc})") from None
        if not isinstance(cfg, dict) or cfg.get("format") != _FORMAT:
            raise bad("the configuration does not come from rnnfast.nn")
        fv = cfg.get("format_version")
        if not isinstance(fv, int) or isinstance(fv, bool) or fv < 1:
            raise bad(f"invalid format_version {fv!r}")
        if fv > _FORMAT_VERSION:
            raise bad(f"format_version {fv} was written by a newer rnnfast (this one reads "
                      f"up to {_FORMAT_VERSION}); upgrade rnnfast")
        classes = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}
        klass = classes.get(cfg.get("class"))
        if klass is None:
            raise bad(f"unknown layer class {cfg.get('class')!r}")
        if cls is not _RNNBase and klass is not cls:
            raise ValueError(
                f"{owner}: {path!r} holds a {klass.__name__}, not a {cls.__name__}; use "
                f"{klass.__name__}.load() or rnnfast.nn.load()")
        known = {"input_size", "hidden_size", "num_layers", "bias", "batch_first",
                 "dropout", "bidirectional", "dtype", "nonlinearity", "proj_size",
                 "reset_after"}
        onnx_keys = ("activations", "activation_alpha", "activation_beta", "clip",
                     "input_forget", "peephole")
        onnx = {k: cfg[k] for k in onnx_keys if k in cfg}
        kwargs = {k: v for k, v in cfg.items() if k in known}
        required = {"input_size", "hidden_size", "num_layers", "bias", "batch_first",
                    "dropout", "bidirectional", "dtype"}
        if not required <= set(kwargs):
            raise bad("the configuration lacks " + ", ".join(sorted(required - set(kwargs))))
        layer = klass.__new__(klass)
        try:
            layer._setup(
                klass._default_mode if klass is not RNN else (
                    "RNN_RELU" if kwargs.get("nonlinearity") == "relu" else "RNN_TANH"),
                kwargs["input_size"], kwargs["hidden_size"], kwargs["num_layers"],
                kwargs["bias"], kwargs["batch_first"], kwargs["dropout"],
                kwargs["bidirectional"], kwargs.get("proj_size", 0),
                kwargs.get("reset_after", True),
                _v.check_nonlinearity(klass.__name__, kwargs.get("nonlinearity", "tanh"))
                if klass is RNN else None,
                kwargs["dtype"], seed, backend, init=False, onnx=onnx)
        except (TypeError, ValueError) as exc:
            raise bad(f"invalid configuration ({exc})") from None
        expected = layer._param_shapes
        missing = [n for n in expected if n not in members]
        unexpected = [k for k in members if k not in expected and k != _CONFIG_KEY]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append("missing " + _v.name_list(missing))
            if unexpected:
                parts.append("unexpected " + _v.name_list(unexpected))
            raise bad("; ".join(parts))
        for name, shape in expected.items():
            setattr(layer, name, read_member(name, shape, layer.dtype))
    return layer


def load(path, *, backend="cpu", seed=None):
    """Load an :class:`RNN`, :class:`LSTM` or :class:`GRU` saved with ``save()``.

    See :meth:`LSTM.load`; this function accepts a file of any of the three classes.
    """
    return _load(path, _RNNBase, backend=backend, seed=seed)


class RNN(_RNNBase):
    r"""Elman RNN with tanh or ReLU, PyTorch's ``torch.nn.RNN`` over NumPy.

    ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``, stacked ``num_layers``
    times, optionally bidirectional.

    Parameters
    ----------
    input_size : int
        Features of the input ``I``.
    hidden_size : int
        Features of the hidden state ``H``.
    num_layers : int, default 1
    nonlinearity : {'tanh', 'relu'}, default 'tanh'
    bias : bool, default True
    batch_first : bool, default False
        Input and output are ``(N, T, F)`` instead of ``(T, N, F)`` (states are not
        affected).
    dropout : float, default 0.0
        Dropout on the inputs of layers after the first, in training mode only.
    bidirectional : bool, default False
    dtype : {numpy.float32, numpy.float64}, keyword-only, default float32
    seed : int or numpy.random.Generator, keyword-only, optional
        Initial parameters and dropout masks.
    backend : {'cpu', 'reference'}, keyword-only, default 'cpu'
    activations, activation_alpha, activation_beta, clip : keyword-only, optional
        ONNX semantics (see :func:`rnnfast.functional.rnn_forward`): activation
        functions by ONNX name, their parameters aligned with them, and a clamp of the
        gate pre-activations.
    input_forget, peephole : keyword-only, default False
        LSTM only (True raises ValueError here).

    Attributes
    ----------
    weight_ih_l[k], weight_hh_l[k], bias_ih_l[k], bias_hh_l[k] : ndarray
        PyTorch's names and shapes; ``_reverse`` suffix for the reverse direction.
    training : bool
    grads : dict or None
        Parameter gradients of the last :meth:`backward`.

    Notes
    -----
    ``y, h_n = rnn(x, hx=None, lengths=None)``: ``x`` of shape ``(T, N, I)``
    (``(N, T, I)`` with batch_first, ``(T, I)`` unbatched) and the layer dtype;
    ``hx`` ``(num_layers * D, N, H)``; ``lengths`` ``(N,)`` ints in ``[0, T]``.
    See :func:`rnnfast.functional.rnn_forward`.
    """

    _default_mode = "RNN_TANH"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh",
                 bias=True, batch_first=False, dropout=0.0, bidirectional=False, *,
                 dtype=np.float32, seed=None, backend="cpu", activations=None,
                 activation_alpha=None, activation_beta=None, clip=None,
                 input_forget=False, peephole=False):
        nl = _v.check_nonlinearity("RNN", nonlinearity)
        self._setup("RNN_TANH" if nl == "tanh" else "RNN_RELU", input_size, hidden_size,
                    num_layers, bias, batch_first, dropout, bidirectional, 0, True, nl,
                    dtype, seed, backend,
                    onnx=dict(activations=activations, activation_alpha=activation_alpha,
                              activation_beta=activation_beta, clip=clip,
                              input_forget=input_forget, peephole=peephole))

    @property
    def mode(self):
        """``'RNN_TANH'`` or ``'RNN_RELU'``, following ``nonlinearity``."""
        return "RNN_RELU" if getattr(self, "nonlinearity", "tanh") == "relu" else "RNN_TANH"

    def forward(self, x, hx=None, lengths=None):
        """Run the network: returns ``(y, h_n)``; see the class docstring."""
        out = self._forward(x, hx, lengths)
        return out.y, out.h_n

    def backward(self, dy, dh_n=None, *, retain_cache=False):
        """Gradients of the last training-mode call.

        Parameters
        ----------
        dy : ndarray or None
            Gradient with respect to ``y`` (shape of ``y``); None means zeros.
        dh_n : ndarray, optional
            Gradient with respect to ``h_n``.
        retain_cache : bool, default False
            Keep the forward's cache to call backward again (like PyTorch's
            ``retain_graph``).

        Returns
        -------
        dx, dh0, grads
            Gradients with respect to ``x`` and ``hx`` and a dict of parameter
            gradients (also stored as ``self.grads``).
        """
        g = self._backward(dy, dh_n, None, retain_cache)
        return g.dx, g.dh0, g.grads

    def extra_repr(self):
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s


class LSTM(_RNNBase):
    r"""Long short-term memory, PyTorch's ``torch.nn.LSTM`` over NumPy.

    Gates ``i, f, g, o`` (in that order in the weight blocks); ``c_t = f c_{t-1} + i
    g``, ``h_t = o tanh(c_t)``, projected by ``W_hr`` when ``proj_size > 0``.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int, default 1
    bias : bool, default True
    batch_first : bool, default False
    dropout : float, default 0.0
    bidirectional : bool, default False
    proj_size : int, default 0
        Project ``h_t`` to ``proj_size`` features (``0 <= proj_size < hidden_size``).
    dtype, seed, backend : keyword-only
        As for :class:`RNN`.
    activations, activation_alpha, activation_beta, clip : keyword-only, optional
        ONNX semantics (see :func:`rnnfast.functional.rnn_forward`): activation
        functions by ONNX name, their parameters aligned with them, and a clamp of the
        gate pre-activations.
    input_forget : bool, keyword-only, default False
        ONNX's coupled input-forget gate, ``f = 1 - i``.
    peephole : bool, keyword-only, default False
        Peephole parameters ``weight_peep_l{k}`` (3 * hidden_size,), gate order
        (i, f, o), initialised to zeros: i and f see ``P * c_{t-1}``, o sees
        ``P * c_t``.

    Notes
    -----
    ``y, (h_n, c_n) = lstm(x, hx=None, lengths=None)`` with ``hx = (h0, c0)``,
    ``h0`` ``(num_layers * D, N, P)`` and ``c0`` ``(num_layers * D, N, H)``.
    """

    _default_mode = "LSTM"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, *,
                 dtype=np.float32, seed=None, backend="cpu", activations=None,
                 activation_alpha=None, activation_beta=None, clip=None,
                 input_forget=False, peephole=False):
        self._setup("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                    dropout, bidirectional, proj_size, True, None, dtype, seed, backend,
                    onnx=dict(activations=activations, activation_alpha=activation_alpha,
                              activation_beta=activation_beta, clip=clip,
                              input_forget=input_forget, peephole=peephole))

    def forward(self, x, hx=None, lengths=None):
        """Run the network: returns ``(y, (h_n, c_n))``; see the class docstring."""
        out = self._forward(x, hx, lengths)
        return out.y, (out.h_n, out.c_n)

    def backward(self, dy, dh_n=None, dc_n=None, *, retain_cache=False):
        """Gradients of the last training-mode call.

        Parameters
        ----------
        dy : ndarray or None
            Gradient with respect to ``y``; None means zeros.
        dh_n, dc_n : ndarray, optional
            Gradients with respect to ``h_n`` and ``c_n``; ``dh_n`` may also be the
            tuple ``(dh_n, dc_n)``.
        retain_cache : bool, default False
            Keep the forward's cache to call backward again.

        Returns
        -------
        dx, (dh0, dc0), grads
        """
        if isinstance(dh_n, tuple) and dc_n is None:
            if len(dh_n) != 2:
                raise TypeError(
                    f"LSTM: dh_n must be an array or a tuple (dh_n, dc_n), got a tuple "
                    f"of {len(dh_n)} items")
            dh_n, dc_n = dh_n
        g = self._backward(dy, dh_n, dc_n, retain_cache)
        return g.dx, (g.dh0, g.dc0), g.grads


class GRU(_RNNBase):
    r"""Gated recurrent unit, PyTorch's ``torch.nn.GRU`` over NumPy.

    Gates ``r, z, n`` (in that order in the weight blocks); ``h_t = (1 - z) n + z
    h_{t-1}``.

    Parameters
    ----------
    input_size, hidden_size : int
    num_layers : int, default 1
    bias : bool, default True
    batch_first : bool, default False
    dropout : float, default 0.0
    bidirectional : bool, default False
    reset_after : bool, keyword-only, default True
        True: PyTorch's GRU, ``n = tanh(W_in x + b_in + r (W_hn h + b_hn))``.
        False: Keras ``reset_after=False`` / ONNX ``linear_before_reset=0``,
        ``n = tanh(W_in x + b_in + W_hn (r h) + b_hn)``.
    dtype, seed, backend : keyword-only
        As for :class:`RNN`.
    activations, activation_alpha, activation_beta, clip : keyword-only, optional
        ONNX semantics (see :func:`rnnfast.functional.rnn_forward`): activation
        functions by ONNX name, their parameters aligned with them, and a clamp of the
        gate pre-activations.
    input_forget, peephole : keyword-only, default False
        LSTM only (True raises ValueError here).

    Notes
    -----
    ``y, h_n = gru(x, hx=None, lengths=None)``, as :class:`RNN`.
    """

    _default_mode = "GRU"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *,
                 reset_after=True, dtype=np.float32, seed=None, backend="cpu",
                 activations=None, activation_alpha=None, activation_beta=None, clip=None,
                 input_forget=False, peephole=False):
        self._setup("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                    dropout, bidirectional, 0, reset_after, None, dtype, seed, backend,
                    onnx=dict(activations=activations, activation_alpha=activation_alpha,
                              activation_beta=activation_beta, clip=clip,
                              input_forget=input_forget, peephole=peephole))

    def forward(self, x, hx=None, lengths=None):
        """Run the network: returns ``(y, h_n)``; see the class docstring."""
        out = self._forward(x, hx, lengths)
        return out.y, out.h_n

    def backward(self, dy, dh_n=None, *, retain_cache=False):
        """Gradients of the last training-mode call: ``(dx, dh0, grads)``.

        See :meth:`RNN.backward`.
        """
        g = self._backward(dy, dh_n, None, retain_cache)
        return g.dx, g.dh0, g.grads

    def extra_repr(self):
        s = super().extra_repr()
        if self.reset_after is not True:
            s += ", reset_after=False"
        return s
