"""Keras 3 / tf.keras <-> rnnfast: ``SimpleRNN``, ``LSTM``, ``GRU`` and ``Bidirectional``.

Keras stores ``kernel`` (I, G*H) = W_ih^T, ``recurrent_kernel`` (H, G*H) = W_hh^T and
one bias; gate orders are LSTM i, f, c, o (PyTorch's) and GRU z, r, h (PyTorch: r,
z, n).  GRU ``reset_after=True`` keeps two biases, shape (2, 3H).  keras is never
imported: :func:`from_keras` reads a layer object through its ``get_config`` and
``get_weights``, :func:`from_keras_weights` the same from plain lists and dicts.

Masks: Keras carries the state through masked steps and, for a unidirectional
layer (``zero_output_for_mask=False``), repeats the last output there; rnnfast has
per-sequence lengths.  :class:`KerasRNN` takes masks that are True on a prefix of
every row (right padding, what ``Masking`` / ``mask_zero`` give for padded batches)
and reproduces Keras's outputs exactly, repeated outputs included; other masks are
refused.
"""

import numpy as np

from .. import _validation as _v
from . import _common as _c

__all__ = ["from_keras", "from_keras_weights", "to_keras_weights", "KerasRNN"]

_KERAS_CELLS = {"SimpleRNN": "rnn", "LSTM": "lstm", "GRU": "gru"}
_MERGE_MODES = ("concat", "sum", "mul", "ave", None)

# Keras activation name -> (ONNX name, alpha, beta)
_ACTIVATIONS = {
    "tanh": ("Tanh", None, None), "sigmoid": ("Sigmoid", None, None),
    "relu": ("Relu", None, None), "linear": ("Affine", 1.0, 0.0),
    "softsign": ("Softsign", None, None), "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None), "leaky_relu": ("LeakyRelu", 0.2, None),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),
}

# Keras gate blocks -> PyTorch gate blocks (block k of PyTorch = block order[k] of Keras)
_GRU_K2T = (1, 0, 2)       # Keras z, r, h -> PyTorch r, z, n (its own inverse)


def _activation(owner, where, value, keras_major=3):
    if isinstance(value, dict):   # serialized form {'class_name': ..., 'config': 'tanh'}
        value = value.get("config", value.get("class_name"))
    if value is None:
        value = "linear"
    if callable(value):
        value = getattr(value, "__name__", value)
    if not isinstance(value, str) or value not in _ACTIVATIONS:
        raise ValueError(
            f"{owner}: {where}={value!r} has no rnnfast equivalent; supported: "
            + ", ".join(sorted(_ACTIVATIONS)))
    if value == "hard_sigmoid" and keras_major < 3:
        return ("HardSigmoid", 0.2, 0.5)    # Keras 2: clip(0.2 x + 0.5, 0, 1)
    return _ACTIVATIONS[value]


def _keras_major(layer):
    """Major version of the Keras that defined ``layer`` (3 when unknown)."""
    import sys
    root = type(layer).__module__.split(".")[0]
    if root == "tf_keras":
        return 2
    mod = sys.modules.get(root)
    if root == "tensorflow":
        mod = getattr(mod, "keras", None)
    version = getattr(mod, "__version__", "3")
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 3


def _layer_spec(owner, class_name, config, weights, dtype, keras_major=3):
    """Normalise one Keras recurrent layer: cell, sizes, activations, params."""
    if class_name not in _KERAS_CELLS:
        raise TypeError(f"{owner}: expected a Keras SimpleRNN, LSTM, GRU or Bidirectional "
                        f"layer, got {class_name!r} (generic keras.layers.RNN over cells "
                        f"is not supported)")
    if not isinstance(config, dict):
        raise TypeError(f"{owner}: config must be a dict (layer.get_config()), got "
                        f"{_v.describe(config)}")
    kind = _KERAS_CELLS[class_name]
    units = config.get("units")
    if not _v._is_int(units) or units < 1:
        raise ValueError(f"{owner}: config['units'] must be an int >= 1, got {units!r}")
    units = int(units)
    use_bias = config.get("use_bias", True)
    if not isinstance(use_bias, (bool, np.bool_)):
        raise TypeError(f"{owner}: config['use_bias'] must be a bool, got {use_bias!r}")
    use_bias = bool(use_bias)
    reset_after = bool(config.get("reset_after", True)) if kind == "gru" else True
    for flag in ("go_backwards", "return_sequences", "return_state", "stateful",
                 "zero_output_for_mask", "unroll"):
        v = config.get(flag, False)
        if not isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{owner}: config[{flag!r}] must be a bool, got {v!r}")
    if config.get("stateful", False):
        raise ValueError(f"{owner}: stateful=True layers are not supported (pass the "
                         f"state explicitly with initial_state)")
    if config.get("time_major", False):
        raise ValueError(f"{owner}: time_major=True is not supported")
    act = _activation(owner, "activation", config.get("activation", "tanh"), keras_major)
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    if kind == "rnn":
        acts = [act]
    else:
        rec = _activation(owner, "recurrent_activation",
                          config.get("recurrent_activation", "sigmoid"), keras_major)
        acts = [rec, act, act] if kind == "lstm" else [rec, act]

    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"{owner}: weights must be a list of arrays (layer.get_weights()),"
                        f" got {_v.describe(weights)}")
    n_expected = 3 if use_bias else 2
    if len(weights) != n_expected:
        raise ValueError(f"{owner}: a {class_name} with use_bias={use_bias} has "
                         f"{n_expected} weights (kernel, recurrent_kernel"
                         f"{', bias' if use_bias else ''}), got {len(weights)}")
    arrs = [_c.as_float_array(owner, name, w) for name, w in
            zip(("kernel", "recurrent_kernel", "bias"), weights)]
    kernel, rec_kernel = arrs[0], arrs[1]
    if kernel.ndim != 2 or kernel.shape[1] != G * units or kernel.shape[0] < 1:
        raise ValueError(f"{owner}: kernel must have shape (input_size, {G * units}), "
                         f"got {kernel.shape}")
    if rec_kernel.shape != (units, G * units):
        raise ValueError(f"{owner}: recurrent_kernel must have shape "
                         f"{(units, G * units)}, got {rec_kernel.shape}")
    if dtype is None:
        dtype = _v.check_dtype(owner, kernel.dtype) if kernel.dtype.kind == "f" and \
            kernel.dtype.itemsize in (4, 8) else np.dtype(np.float32)
    arrs = [a.astype(dtype, copy=False) for a in arrs]
    H = units
    if kind == "gru":
        w_ih = _c.gate_blocks(arrs[0].T, _GRU_K2T, 3)
        w_hh = _c.gate_blocks(arrs[1].T, _GRU_K2T, 3)
    else:
        w_ih, w_hh = arrs[0].T, arrs[1].T
    params = {"weight_ih": np.ascontiguousarray(w_ih),
              "weight_hh": np.ascontiguousarray(w_hh)}
    if use_bias:
        b = arrs[2]
        if kind == "gru" and reset_after:
            if b.shape != (2, 3 * H):
                raise ValueError(f"{owner}: a GRU with reset_after=True has a bias of "
                                 f"shape {(2, 3 * H)}, got {b.shape}")
            b_ih = _c.gate_blocks(b[0], _GRU_K2T, 3)
            b_hh = _c.gate_blocks(b[1], _GRU_K2T, 3)
        else:
            if b.shape != (G * H,):
                raise ValueError(f"{owner}: bias must have shape {(G * H,)}, got "
                                 f"{b.shape}")
            b_ih = _c.gate_blocks(b, _GRU_K2T, 3) if kind == "gru" else b
            b_hh = np.zeros_like(b_ih)
        params["bias_ih"] = np.array(b_ih)
        params["bias_hh"] = np.array(b_hh)
    return {"kind": kind, "units": H, "input_size": kernel.shape[0], "bias": use_bias,
            "reset_after": reset_after, "acts": acts, "params": params, "dtype": dtype,
            "go_backwards": bool(config.get("go_backwards", False)),
            "return_sequences": bool(config.get("return_sequences", False)),
            "return_state": bool(config.get("return_state", False)),
            "zero_output_for_mask": bool(config.get("zero_output_for_mask", False)),
            "class_name": class_name}


def _cell_and_options(kind, acts, bidirectional):
    """rnnfast cell name and ONNX-semantics options for Keras activations."""
    names = [a[0] for a in acts]
    if kind == "rnn":
        if names[0] in ("Tanh", "Relu"):
            return "rnn_" + names[0].lower(), {}
        cell = "rnn_tanh"
    else:
        cell = kind
    if names == _c.DEFAULT_ACTIVATIONS[cell]:
        return cell, {}
    opts = {"activations": names}
    if any(a[1] is not None for a in acts):
        opts["activation_alpha"] = [a[1] for a in acts]
    if any(a[2] is not None for a in acts):
        opts["activation_beta"] = [a[2] for a in acts]
    return cell, opts


def _build(owner, specs, merge_mode, backend, wrap):
    fw = specs[0]
    bidirectional = len(specs) == 2
    if bidirectional:
        bw = specs[1]
        for key in ("kind", "units", "input_size", "bias", "reset_after", "acts"):
            if fw[key] != bw[key]:
                raise ValueError(f"{owner}: the forward and backward layers of the "
                                 f"Bidirectional differ in {key} ({fw[key]!r} vs "
                                 f"{bw[key]!r}); rnnfast needs one configuration")
        if fw["go_backwards"] or not bw["go_backwards"]:
            raise ValueError(f"{owner}: Bidirectional with a forward layer of "
                             f"go_backwards=True is not supported")
        if bw["params"]["weight_ih"].dtype != fw["params"]["weight_ih"].dtype:
            raise ValueError(f"{owner}: the two directions have different dtypes")
    cell, opts = _cell_and_options(fw["kind"], fw["acts"], bidirectional)
    params = {}
    for d, spec in enumerate(specs):
        for k, v in spec["params"].items():
            params[_c.param_name(k, 0, d)] = v
    layer = _c.make_layer(
        owner, cell, input_size=fw["input_size"], hidden_size=fw["units"],
        bias=fw["bias"], batch_first=True, bidirectional=bidirectional,
        reset_after=fw["reset_after"], dtype=fw["dtype"], backend=backend,
        params=params, options=opts)
    wrapper = KerasRNN(layer, merge_mode=merge_mode if bidirectional else "concat",
                       return_sequences=fw["return_sequences"],
                       return_state=fw["return_state"],
                       go_backwards=fw["go_backwards"] if not bidirectional else False,
                       zero_output_for_mask=fw["zero_output_for_mask"])
    plain = (fw["return_sequences"] and not fw["return_state"] and not fw["go_backwards"]
             and merge_mode == "concat")
    if wrap is None:
        wrap = not plain
    return wrapper if wrap else layer


def _normalise_merge_mode(owner, merge_mode):
    if merge_mode not in _MERGE_MODES:
        raise ValueError(f"{owner}: merge_mode must be one of 'concat', 'sum', 'mul', "
                         f"'ave' or None, got {merge_mode!r}")
    return merge_mode


def from_keras(layer, *, dtype=None, backend="cpu", wrap=None):
    """An rnnfast equivalent of a Keras ``SimpleRNN``, ``LSTM``, ``GRU`` or
    ``Bidirectional`` layer (Keras 3 or tf.keras; keras itself is not imported).

    Parameters
    ----------
    layer : keras layer
        Built (it has weights).  Its configuration (``units``, ``activation``,
        ``recurrent_activation``, ``use_bias``, ``reset_after``, ``go_backwards``,
        ``return_sequences``, ``return_state``, ``merge_mode``) and weights are read.
    dtype : {numpy.float32, numpy.float64}, optional
        Default: the dtype of the weights.
    backend : {'cpu', 'reference'}, default 'cpu'
    wrap : bool, optional
        True: return a :class:`KerasRNN` (Keras's call conventions); False: the bare
        rnnfast layer (``batch_first=True``); None (default): the bare layer when its
        output *is* Keras's output (``return_sequences=True``, no ``return_state``,
        no ``go_backwards``, merge mode concat), else a :class:`KerasRNN`.

    Raises
    ------
    TypeError
        Not one of these Keras layers.
    ValueError
        A configuration rnnfast cannot represent, named (e.g. an activation without
        ONNX equivalent, ``stateful=True``, directions configured differently).
    """
    owner = "from_keras"
    name = type(layer).__name__
    if name == "Bidirectional":
        merge_mode = _normalise_merge_mode(owner, getattr(layer, "merge_mode", "concat"))
        specs = [_layer_spec(owner, type(sub).__name__, sub.get_config(),
                             list(sub.get_weights()), dtype, _keras_major(sub))
                 for sub in (layer.forward_layer, layer.backward_layer)]
        return _build(owner, specs, merge_mode, backend, wrap)
    if name not in _KERAS_CELLS or not hasattr(layer, "get_config"):
        raise TypeError(f"{owner}: layer must be a Keras SimpleRNN, LSTM, GRU or "
                        f"Bidirectional, got {_v.describe(layer)}")
    spec = _layer_spec(owner, name, layer.get_config(), list(layer.get_weights()), dtype,
                       _keras_major(layer))
    return _build(owner, [spec], "concat", backend, wrap)


def from_keras_weights(weights, config, class_name=None, *, dtype=None, backend="cpu",
                       wrap=None, keras_version=3):
    """As :func:`from_keras`, from ``layer.get_weights()`` and ``layer.get_config()``
    (no keras needed).

    Parameters
    ----------
    weights : list of array-like
        ``get_weights()`` order: ``[kernel, recurrent_kernel, bias]`` (no bias when
        ``use_bias=False``); for Bidirectional the forward layer's list followed by
        the backward layer's.
    config : dict
        ``get_config()`` of the layer, or its serialized form ``{'class_name': ...,
        'config': {...}}`` (as in a model's JSON).  For Bidirectional, its config
        holds the wrapped ``layer`` (serialized), ``merge_mode`` and optionally
        ``backward_layer``.
    class_name : {'SimpleRNN', 'LSTM', 'GRU', 'Bidirectional'}, optional
        Required unless ``config`` is in serialized form.
    dtype, backend, wrap
        As :func:`from_keras`.
    keras_version : int, default 3
        Major version of the Keras that wrote the config: ``hard_sigmoid`` is
        ``clip(x/6 + 1/2)`` in Keras 3 and ``clip(0.2 x + 1/2)`` in Keras 2.
    """
    owner = "from_keras_weights"
    if keras_version not in (2, 3):
        raise ValueError(f"{owner}: keras_version must be 2 or 3, got {keras_version!r}")
    if not isinstance(config, dict):
        raise TypeError(f"{owner}: config must be a dict, got {_v.describe(config)}")
    if "class_name" in config and isinstance(config.get("config"), dict):
        if class_name is not None and class_name != config["class_name"]:
            raise ValueError(f"{owner}: class_name {class_name!r} disagrees with the "
                             f"config's {config['class_name']!r}")
        class_name, config = config["class_name"], config["config"]
    if class_name is None:
        raise ValueError(f"{owner}: class_name is required with a plain get_config() "
                         f"dict")
    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"{owner}: weights must be a list of arrays, got "
                        f"{_v.describe(weights)}")
    if class_name == "Bidirectional":
        merge_mode = _normalise_merge_mode(owner, config.get("merge_mode", "concat"))
        inner = config.get("layer")
        if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
            raise ValueError(f"{owner}: a Bidirectional config needs 'layer': "
                             f"{{'class_name': ..., 'config': {{...}}}}")
        back = config.get("backward_layer")
        if back is None:
            back = {"class_name": inner.get("class_name"),
                    "config": dict(inner["config"],
                                   go_backwards=not inner["config"].get("go_backwards",
                                                                        False))}
        elif not isinstance(back, dict) or not isinstance(back.get("config"), dict):
            raise ValueError(f"{owner}: 'backward_layer' must be a serialized layer dict")
        if len(weights) % 2:
            raise ValueError(f"{owner}: a Bidirectional has as many backward weights as "
                             f"forward ones; got {len(weights)} in all")
        half = len(weights) // 2
        specs = [_layer_spec(owner, inner.get("class_name"), inner["config"],
                             list(weights[:half]), dtype, keras_version),
                 _layer_spec(owner, back.get("class_name"), back["config"],
                             list(weights[half:]), dtype, keras_version)]
        return _build(owner, specs, merge_mode, backend, wrap)
    spec = _layer_spec(owner, class_name, config, list(weights), dtype, keras_version)
    return _build(owner, [spec], "concat", backend, wrap)


def to_keras_weights(layer):
    """The layer's weights in Keras order, ready for ``keras_layer.set_weights``.

    Returns
    -------
    list of list of ndarray
        One list per stacked layer: ``[kernel, recurrent_kernel, bias]`` (bias
        omitted when ``bias=False``); for a bidirectional layer the forward list
        followed by the backward list (what ``keras.layers.Bidirectional``
        expects).  Keras has one bias per gate where rnnfast (PyTorch) has two: the
        bias is ``b_ih + b_hh`` (bitwise ``b_ih`` when ``b_hh`` is zero, as after
        an import from Keras), except GRU ``reset_after=True``, whose (2, 3H) bias
        keeps both.  Activations are not part of the weights: configure the Keras
        layer to match.

    Raises
    ------
    ValueError
        LSTM projections, clip, input_forget or peepholes (Keras has none).
    """
    owner = "to_keras_weights"
    cell = _c.check_layer(owner, layer)
    if getattr(layer, "proj_size", 0):
        raise ValueError(f"{owner}: Keras LSTM has no projection (proj_size="
                         f"{layer.proj_size})")
    opts = _c.layer_options(layer)
    for k in ("clip", "input_forget", "peephole"):
        if opts[k] != _c.SEM_DEFAULTS[k]:
            raise ValueError(f"{owner}: Keras has no equivalent of {k}={opts[k]!r}")
    D = 2 if layer.bidirectional else 1
    out = []
    for lyr in range(layer.num_layers):
        group = []
        for d in range(D):
            g = lambda k: np.asarray(getattr(layer, _c.param_name(k, lyr, d)))  # noqa
            w_ih, w_hh = g("weight_ih"), g("weight_hh")
            if cell == "gru":
                w_ih, w_hh = (_c.gate_blocks(w, _GRU_K2T, 3) for w in (w_ih, w_hh))
            group += [np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)]
            if layer.bias:
                b_ih, b_hh = g("bias_ih"), g("bias_hh")
                if cell == "gru":
                    b_ih, b_hh = (_c.gate_blocks(b, _GRU_K2T, 3) for b in (b_ih, b_hh))
                if cell == "gru" and layer.reset_after:
                    bias = np.stack([b_ih, b_hh])
                elif not np.any(b_hh):
                    bias = np.array(b_ih, copy=True)
                else:
                    bias = b_ih + b_hh
                group.append(bias)
        out.append(group)
    return out


def _mask_to_lengths(owner, mask, N, T):
    m = np.asarray(mask)
    if m.shape != (N, T):
        raise ValueError(f"{owner}: mask must have shape {(N, T)} (batch, time), got "
                         f"{m.shape}")
    if m.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: mask must be boolean, got dtype {m.dtype}")
    m = m.astype(bool)
    lengths = m.sum(axis=1).astype(np.int64)
    prefix = np.arange(T)[None, :] < lengths[:, None]
    if not np.array_equal(m, prefix):
        bad = int(np.nonzero((m != prefix).any(axis=1))[0][0])
        raise ValueError(f"{owner}: mask row {bad} is not True on a prefix of the steps "
                         f"followed by False (right padding); rnnfast supports only "
                         f"right-padded masks")
    return lengths


class KerasRNN:
    """A rnnfast layer called with Keras's conventions.

    ``outputs = wrapper(x, initial_state=None, mask=None)`` returns what the Keras
    layer returns for the same arguments: the output (``(N, T, F)`` sequences or
    ``(N, F)`` last output), merged per ``merge_mode`` (two outputs when None), then
    the final states when ``return_state`` (``[h]`` or ``[h, c]`` per direction,
    forward first), as a list when there is more than one item.

    Attributes
    ----------
    layer : RNN, LSTM or GRU
        The rnnfast layer (``batch_first=True``), to train or save.
    merge_mode, return_sequences, return_state, go_backwards, zero_output_for_mask
        The Keras configuration being reproduced.
    """

    def __init__(self, layer, *, merge_mode="concat", return_sequences=True,
                 return_state=False, go_backwards=False, zero_output_for_mask=False):
        _c.check_layer("KerasRNN", layer)
        self.layer = layer
        self.merge_mode = _normalise_merge_mode("KerasRNN", merge_mode)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        if go_backwards and layer.bidirectional:
            raise ValueError("KerasRNN: go_backwards applies to unidirectional layers")

    def __repr__(self):
        return (f"KerasRNN({self.layer!r}, merge_mode={self.merge_mode!r}, "
                f"return_sequences={self.return_sequences}, return_state="
                f"{self.return_state}, go_backwards={self.go_backwards})")

    def __call__(self, x, initial_state=None, mask=None):
        owner = "KerasRNN"
        layer = self.layer
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise TypeError(f"{owner}: x must be an ndarray of shape (batch, time, "
                            f"features), got {_v.describe(x)}")
        N, T = x.shape[0], x.shape[1]
        lengths = None if mask is None else _mask_to_lengths(owner, mask, N, T)
        lstm = layer._cell == "lstm"
        D = 2 if layer.bidirectional else 1
        hx = None
        if initial_state is not None:
            per = 2 if lstm else 1
            if not isinstance(initial_state, (list, tuple)):
                initial_state = [initial_state]
            if len(initial_state) != per * D:
                raise ValueError(f"{owner}: initial_state must hold {per * D} arrays "
                                 f"({'[h, c]' if lstm else '[h]'} per direction), got "
                                 f"{len(initial_state)}")
            st = [np.asarray(s) for s in initial_state]
            for s in st:
                if s.ndim != 2:
                    raise ValueError(f"{owner}: initial states must have shape (batch, "
                                     f"units), got {s.shape}")
            h0 = np.stack([st[d * per] for d in range(D)])
            hx = (h0, np.stack([st[d * per + 1] for d in range(D)])) if lstm else h0
        if self.go_backwards:
            y, h_n, c_n = _c.run_reversed(layer, x, hx, lengths)
        else:
            out = layer(x, hx, lengths)
            y, state = out
            h_n, c_n = state if lstm else (state, None)
        H = layer.hidden_size
        dirs = [y[..., :H], y[..., H:]] if D == 2 else [y]
        seqs = []
        for d, yd in enumerate(dirs):
            backwards = self.go_backwards or d == 1
            if backwards:
                seq = yd[:, ::-1]      # Keras's processing order; masked steps are 0
            else:
                seq = yd
                zero = self.zero_output_for_mask or (D == 2 and self.return_sequences)
                if lengths is not None and not zero:
                    idx = np.minimum(np.arange(T)[None, :], np.maximum(lengths, 1)[:, None]
                                     - 1)
                    seq = np.take_along_axis(yd, idx[:, :, None], axis=1)
                    seq[lengths == 0] = 0
            if self.return_sequences:
                res = seq[:, ::-1] if (d == 1) else seq
            else:
                res = seq[:, -1]
            seqs.append(np.ascontiguousarray(res))
        if D == 1:
            output = seqs[0]
        elif self.merge_mode == "concat":
            output = np.concatenate(seqs, axis=-1)
        elif self.merge_mode == "sum":
            output = seqs[0] + seqs[1]
        elif self.merge_mode == "ave":
            output = (seqs[0] + seqs[1]) / np.asarray(2, dtype=seqs[0].dtype)
        elif self.merge_mode == "mul":
            output = seqs[0] * seqs[1]
        else:
            output = None
        items = list(seqs) if output is None else [output]
        if self.return_state:
            for d in range(D):
                items.append(h_n[d])
                if lstm:
                    items.append(c_n[d])
        return items if len(items) > 1 else items[0]
