"""Every user-facing check of rnnfast, and its message.

Conventions (scikit-learn / PyTorch style):

* A message names the argument, says what was expected and what came, and, where
  a fix is mechanical, how to fix it.  Messages start with the name of the caller
  (``"LSTM: ..."``, ``"rnn_forward: ..."``), passed to every check as ``owner``.
* ``TypeError`` when the *kind* of a value is wrong (a float where an int is
  needed, an integer array where a float array is needed, a list where an ndarray
  is needed); ``ValueError`` when its kind is right but its value is not (a
  negative size, a wrong shape, an unknown option, a workload too large).
* No silent casts of data: arrays must already have the computation dtype.  The
  only conversions done here are value-preserving ones (native byte order,
  contiguity) and the conversion of ``lengths`` to int64.
* Nothing here allocates memory proportional to a size the user asked for before
  that size has been checked (:func:`check_workspace`, :func:`check_param_bytes`).

This module imports nothing from rnnfast.
"""

import functools
import math
import numbers
import os

import numpy as np

__all__ = [
    "CELLS",
    "GATES",
    "BACKENDS",
    "MODE_OF_CELL",
    "check_int",
    "check_bool",
    "check_nonlinearity",
    "check_dropout",
    "check_dtype",
    "check_seed",
    "check_backend",
    "check_mode",
    "check_config",
    "check_param_bytes",
    "param_count",
    "name_list",
    "check_x",
    "check_state",
    "check_lengths",
    "check_param",
    "check_params",
    "check_grad",
    "check_dropout_masks",
    "check_workspace",
    "available_memory_bytes",
    "describe",
    "ACTIVATIONS",
    "check_onnx_options",
]

#: backend cell names, in the vocabulary of the backend contract
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
#: number of gate blocks of every cell
GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
#: PyTorch's ``mode`` string of every cell
MODE_OF_CELL = {"rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU", "lstm": "LSTM", "gru": "GRU"}
#: backend names accepted by ``backend=``
BACKENDS = ("cpu", "reference")

# ----------------------------------------------------------------------------
# helpers


def describe(value, limit=60):
    """Short description of ``value`` for messages: type and (abridged) repr."""
    if isinstance(value, np.ndarray):
        return f"a {type(value).__name__} of shape {value.shape} and dtype {value.dtype}"
    try:
        r = repr(value)
    except Exception:  # pragma: no cover - pathological __repr__
        r = "<unrepresentable>"
    if len(r) > limit:
        r = r[: limit - 3] + "..."
    if isinstance(value, (bool, np.bool_)) or value is None:
        return r
    return f"{type(value).__name__} {r}"


def _is_int(value):
    """True for Python / NumPy integers, False for bools (which are ints in Python)."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


# ----------------------------------------------------------------------------
# constructor / configuration arguments


def check_int(owner, name, value, minimum=1):
    """Return ``value`` as a Python int, checking it is a real int ``>= minimum``.

    Bools and floats (even integral ones such as ``2.0``) are rejected with a
    ``TypeError``; values below ``minimum`` with a ``ValueError``.
    """
    if not _is_int(value):
        raise TypeError(
            f"{owner}: {name!r} must be an int >= {minimum}, got {describe(value)}"
        )
    value = int(value)
    if value < minimum:
        raise ValueError(f"{owner}: {name!r} must be an int >= {minimum}, got {value}")
    return value


def check_bool(owner, name, value):
    """Return ``value`` as a Python bool, accepting only ``bool`` / ``numpy.bool_``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name!r} must be a bool, got {describe(value)}")
    return bool(value)


def check_nonlinearity(owner, value):
    """``'tanh'`` or ``'relu'``."""
    if not isinstance(value, str):
        raise TypeError(
            f"{owner}: 'nonlinearity' must be 'tanh' or 'relu', got {describe(value)}"
        )
    if value not in ("tanh", "relu"):
        raise ValueError(f"{owner}: 'nonlinearity' must be 'tanh' or 'relu', got {value!r}")
    return value


def check_dropout(owner, value):
    """A finite real number in [0, 1] (not a bool); returned as a Python float."""
    if not isinstance(value, (numbers.Real, np.floating, np.integer)) or isinstance(
        value, (bool, np.bool_)
    ):
        raise TypeError(
            f"{owner}: 'dropout' must be a float in [0, 1], got {describe(value)}"
        )
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: 'dropout' must be a float in [0, 1], got {value!r}")
    return value


def check_dtype(owner, value, name="dtype"):
    """``numpy.float32`` or ``numpy.float64`` (anything ``numpy.dtype`` accepts)."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise TypeError(
            f"{owner}: {name!r} must be numpy.float32 or numpy.float64, got {describe(value)}"
        )
    try:
        dt = np.dtype(value)
    except Exception:
        raise TypeError(
            f"{owner}: {name!r} must be numpy.float32 or numpy.float64, got {describe(value)}"
        ) from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(
            f"{owner}: {name!r} must be numpy.float32 or numpy.float64, got {dt}"
        )
    return dt


def check_seed(owner, value, name="seed"):
    """None, an int >= 0, or a ``numpy.random.Generator``; returns a Generator."""
    if value is None or isinstance(value, np.random.Generator):
        return np.random.default_rng(value)
    if not _is_int(value):
        raise TypeError(
            f"{owner}: {name!r} must be None, an int >= 0 or a numpy.random.Generator, "
            f"got {describe(value)}"
        )
    if value < 0:
        raise ValueError(
            f"{owner}: {name!r} must be None, an int >= 0 or a numpy.random.Generator, "
            f"got {int(value)}"
        )
    return np.random.default_rng(int(value))


def check_backend(owner, value):
    """``'cpu'``, ``'reference'``, or an object with layer_forward / layer_backward."""
    if isinstance(value, str):
        if value not in BACKENDS:
            raise ValueError(
                f"{owner}: 'backend' must be one of {', '.join(map(repr, BACKENDS))}, "
                f"got {value!r}"
            )
        return value
    if callable(getattr(value, "layer_forward", None)) and callable(
        getattr(value, "layer_backward", None)
    ):
        return value
    raise TypeError(
        f"{owner}: 'backend' must be 'cpu', 'reference' or a module providing "
        f"layer_forward and layer_backward, got {describe(value)}"
    )


def check_mode(owner, value):
    """Return the backend cell name of ``value``.

    Accepts PyTorch's mode strings ``'RNN_TANH'``, ``'RNN_RELU'``, ``'LSTM'``,
    ``'GRU'`` and the backend cell names ``'rnn_tanh'``, ``'rnn_relu'``, ``'lstm'``,
    ``'gru'`` (case-insensitive).
    """
    if not isinstance(value, str):
        raise TypeError(
            f"{owner}: 'mode' must be one of 'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU', "
            f"got {describe(value)}"
        )
    cell = value.lower()
    if cell not in CELLS:
        raise ValueError(
            f"{owner}: 'mode' must be one of 'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU' "
            f"(or lowercase), got {value!r}"
        )
    return cell


def check_config(owner, cell, input_size, hidden_size, num_layers, bias, bidirectional,
                 proj_size, reset_after, batch_first=False, infer_input_size=False):
    """Check a whole configuration; return the normalised values as a dict.

    With ``infer_input_size`` (the functional API, which infers it from ``x``),
    ``input_size`` is not checked and not returned.
    """
    cfg = {"cell": cell}
    if not infer_input_size:
        cfg["input_size"] = check_int(owner, "input_size", input_size, 1)
    cfg["hidden_size"] = check_int(owner, "hidden_size", hidden_size, 1)
    cfg["num_layers"] = check_int(owner, "num_layers", num_layers, 1)
    cfg["bias"] = check_bool(owner, "bias", bias)
    cfg["batch_first"] = check_bool(owner, "batch_first", batch_first)
    cfg["bidirectional"] = check_bool(owner, "bidirectional", bidirectional)
    cfg["reset_after"] = check_bool(owner, "reset_after", reset_after)
    proj = check_int(owner, "proj_size", proj_size, 0)
    if proj > 0 and cell != "lstm":
        raise ValueError(
            f"{owner}: 'proj_size' is only supported for LSTM, got proj_size={proj} "
            f"for {MODE_OF_CELL[cell]}"
        )
    if proj >= cfg["hidden_size"]:
        raise ValueError(
            f"{owner}: 'proj_size' must be an int with 0 <= proj_size < hidden_size "
            f"({cfg['hidden_size']}), got {proj}"
        )
    cfg["proj_size"] = proj
    return cfg


# ----------------------------------------------------------------------------
# memory


@functools.lru_cache(maxsize=1)
def available_memory_bytes():
    """Physical memory of the machine in bytes (2**63 - 1 when it cannot be read)."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page = os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page > 0:
            return int(pages) * int(page)
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        pass
    return 2**63 - 1


def _gib(nbytes):
    return f"{nbytes / 2**30:.3g} GiB"


#: bytes counted per parameter array on top of its data (Python objects, names)
ARRAY_OVERHEAD_BYTES = 256


def param_count(cell, input_size, hidden_size, num_layers, D, bias, proj_size):
    """``(number of values, number of arrays)`` of a configuration, by arithmetic.

    Never builds per-layer structures, so it is safe for absurd ``num_layers``.
    """
    G, H = GATES[cell], hidden_size
    P = proj_size or H
    per_dir = G * H * P + (2 * G * H if bias else 0) + (P * H if proj_size else 0)
    n_arrays_per_dir = 2 + (2 if bias else 0) + (1 if proj_size else 0)
    values = D * (per_dir + G * H * input_size) + (num_layers - 1) * D * (per_dir
                                                                         + G * H * D * P)
    return values, num_layers * D * n_arrays_per_dir


def check_param_bytes(owner, cell, input_size, hidden_size, num_layers, D, bias,
                      proj_size, itemsize):
    """Reject a configuration whose parameters overflow int64 or exceed physical memory.

    Call this before building anything whose size grows with the configuration
    (parameter arrays, but also the list of parameter names).
    """
    values, arrays = param_count(cell, input_size, hidden_size, num_layers, D, bias,
                                 proj_size)
    nbytes = values * int(itemsize) + arrays * ARRAY_OVERHEAD_BYTES
    limit = min(available_memory_bytes(), 2**63 - 1)
    if nbytes > limit:
        raise ValueError(
            f"{owner}: the parameters would need {_gib(nbytes)} "
            f"({values} values in {arrays} arrays), more than the {_gib(limit)} of memory "
            f"of this machine; reduce hidden_size, input_size or num_layers"
        )


def name_list(names, limit=10):
    """``'a', 'b', ... and 7 more`` for messages."""
    names = list(names)
    shown = ", ".join(map(repr, names[:limit]))
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def check_workspace(owner, T, N, input_size, hidden_size, proj_size, num_layers, D, cell,
                    itemsize, training):
    """Reject a call whose working memory overflows int64 or exceeds physical memory.

    The estimate (Python ints, cannot overflow) counts the outputs of every layer and
    direction, the gate pre-activations, and in training the per-step states a
    backend keeps for backward.  It is deliberately generous, not exact.
    """
    H, P, G = hidden_size, (proj_size or hidden_size), GATES[cell]
    TN = int(T) * int(N)
    per_dir_out = TN * P
    per_dir_work = TN * G * H
    if training:
        per_dir_cache = TN * (int(input_size) + G * H + 2 * H + 2 * P)
        total = num_layers * D * (per_dir_out + per_dir_cache) + TN * D * P
    else:
        total = 2 * D * per_dir_out + per_dir_work + TN * int(input_size)
    nbytes = total * int(itemsize)
    limit = min(available_memory_bytes(), 2**63 - 1)
    if nbytes > limit:
        raise ValueError(
            f"{owner}: this call would need about {_gib(nbytes)} of working memory "
            f"(T={T}, N={N}, hidden_size={H}, num_layers={num_layers}"
            f"{', training' if training else ''}), more than the {_gib(limit)} of memory "
            f"of this machine; split the sequence into chunks (truncated BPTT) or use a "
            f"smaller batch"
        )


# ----------------------------------------------------------------------------
# call arguments


def _check_float_array(owner, name, value, dtype, source=None):
    """``value`` must be an ndarray (subclasses welcome) of exactly ``dtype``.

    ``dtype`` None means "float32 or float64".  ``source`` says where the expected
    dtype comes from, for the message (default: ``"this <owner> has dtype ..."``).
    Returns the array as a base-class ndarray (native byte order; no copy unless
    the byte order had to be fixed).
    """
    if type(value) is np.ndarray and dtype is not None and value.dtype == dtype \
            and value.dtype.isnative:
        return value  # fast path: the common case costs one comparison
    if dtype is None:
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and \
                value.dtype.itemsize in (4, 8):
            dtype = np.dtype(f"f{value.dtype.itemsize}")
        else:
            dtype = np.dtype(np.float32)
            source = "it must be float32 or float64"
    dtype = np.dtype(dtype)
    tname = np.dtype(dtype).name
    if source is None:
        source = f"this {owner} has dtype {tname}"
    if not isinstance(value, np.ndarray):
        if hasattr(value, "__array__") or isinstance(value, (list, tuple)):
            how = f"np.asarray({name}, dtype=np.{tname})"
            if hasattr(value, "detach"):
                how = f"{name}.detach().cpu().numpy().astype(np.{tname})"
            raise TypeError(
                f"{owner}: {name} must be a numpy.ndarray of dtype {tname}, got "
                f"{type(value).__name__}; convert with {how}"
            )
        raise TypeError(
            f"{owner}: {name} must be a numpy.ndarray of dtype {tname}, got {describe(value)}"
        )
    dt = value.dtype
    if dt.kind == "f" and dt.itemsize == dtype.itemsize:
        if not dt.isnative:   # the kernels need native byte order: a copy, so size first
            nbytes = value.size * dt.itemsize
            if nbytes > available_memory_bytes():
                raise ValueError(
                    f"{owner}: {name} of shape {_shape_str(value.shape)} is in non-native "
                    f"byte order and would need a {_gib(nbytes)} native copy, more than the "
                    f"{_gib(available_memory_bytes())} of memory of this machine")
            value = value.astype(dt.newbyteorder("="))
        return value.view(np.ndarray) if type(value) is not np.ndarray else value
    kind = {
        "U": "string",
        "S": "bytes",
        "V": "structured/void",
        "M": "datetime",
        "m": "timedelta",
    }.get(dt.kind)
    what = f"dtype {dt}" + (f" ({kind})" if kind else "")
    msg = f"{owner}: {name} has {what} but {source}"
    if dt.kind in "biuf":
        msg += f"; convert with {name}.astype(np.{tname})"
        if dt.kind == "f" and source.startswith("this "):
            other = "float64" if tname == "float32" else "float32"
            if dt == np.dtype(other):
                msg += f" or build the layer with dtype=np.{other}"
    elif dt.kind == "c":
        msg += "; complex data is not supported (use the real part: np.real(...))"
    else:
        msg += f"; convert to a float array with {name}.astype(np.{tname}) if meaningful"
    raise TypeError(msg)


def check_x(owner, x, input_size, dtype, batch_first):
    """Check the input sequence.

    Returns ``(x, unbatched)`` where ``x`` is a base-class ndarray of the right dtype
    (no copy made here) and ``unbatched`` is True for 2-D input ``(T, input_size)``.
    ``input_size`` may be None (accept any feature size >= 1).
    """
    x = _check_float_array(owner, "x", x, dtype)
    feat = "input_size" if input_size is None else str(input_size)
    layout = "(N, T, {f}) (batch_first=True)" if batch_first else "(T, N, {f}) (time-major)"
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{owner}: x must be 3-D {layout.format(f=feat)} or 2-D (T, {feat}) "
            f"(unbatched), got a {x.ndim}-D array of shape {_shape_str(x.shape)}"
        )
    unbatched = x.ndim == 2
    if input_size is not None and x.shape[-1] != input_size:
        exp = f"(T, {feat}) (unbatched)" if unbatched else layout.format(f=feat)
        raise ValueError(
            f"{owner}: expected x of shape {exp} but got {_shape_str(x.shape)}"
        )
    if input_size is None and x.shape[-1] < 1:
        raise ValueError(
            f"{owner}: x must have at least one feature (last axis), got shape "
            f"{_shape_str(x.shape)}"
        )
    T = x.shape[1] if (batch_first and not unbatched) else x.shape[0]
    if T == 0:
        raise ValueError(
            f"{owner}: x has no time steps (T=0, shape {_shape_str(x.shape)}); "
            f"sequences need at least one step"
        )
    return x, unbatched


def check_state(owner, name, value, expected_shape, dtype, unbatched, meaning, source=None):
    """Check an initial state ``h0``/``c0`` (or a state gradient) of known shape.

    ``expected_shape`` is the batched shape ``(num_layers * D, N, F)``; for unbatched
    input the expected shape is ``(num_layers * D, F)``.  Returns a base-class
    ndarray of ``dtype`` in the batched layout (a view, no copy).
    """
    value = _check_float_array(owner, name, value, dtype, source)
    L, N, F = expected_shape
    if unbatched:
        exp = (L, F)
        if value.shape != exp:
            raise ValueError(
                f"{owner}: expected {name} of shape {_shape_str(exp)} "
                f"({meaning}) for unbatched input, got {_shape_str(value.shape)}"
            )
        return value[:, None, :]
    if value.shape != tuple(expected_shape):
        raise ValueError(
            f"{owner}: expected {name} of shape {_shape_str(expected_shape)} "
            f"({meaning}), got {_shape_str(value.shape)}"
        )
    return value


def check_lengths(owner, lengths, N, T, unbatched):
    """Check per-sequence lengths; return a fresh C-contiguous int64 array of shape (N,).

    Accepts any 1-D integer array-like of length ``N`` with values in ``[0, T]``
    (lists, tuples, integer ndarrays, tensors that ``numpy.asarray`` converts).
    Bools and floats are rejected.  For unbatched input a single int is accepted
    too.
    """
    if isinstance(lengths, (bool, np.bool_)):
        raise TypeError(
            f"{owner}: lengths must be a 1-D array of ints of length N={N}, got {lengths!r}"
        )
    if hasattr(lengths, "detach") and not isinstance(lengths, np.ndarray):
        try:
            lengths = lengths.detach().cpu().numpy()
        except Exception:
            pass
    try:
        arr = np.asarray(lengths)
    except Exception:
        raise TypeError(
            f"{owner}: lengths must be a 1-D array of ints of length N={N}, "
            f"got {describe(lengths)}"
        ) from None
    if arr.dtype.kind not in "iu":
        if arr.size == 0 and arr.dtype.kind == "f" and isinstance(lengths, (list, tuple)):
            arr = arr.astype(np.int64)  # [] -> float64 by NumPy's default
        else:
            raise TypeError(
                f"{owner}: lengths must hold integers, got dtype {arr.dtype}"
                + (f" ({describe(lengths)})" if not isinstance(lengths, np.ndarray) else "")
            )
    if unbatched and arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1 or arr.shape[0] != N:
        raise ValueError(
            f"{owner}: expected lengths of shape ({N},) (one length per sequence), got "
            f"shape {_shape_str(arr.shape)}"
        )
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > T:
            bad = int(lo) if lo < 0 else int(hi)
            raise ValueError(
                f"{owner}: lengths must be between 0 and T={T}, got {bad}"
            )
    return np.array(arr, dtype=np.int64, order="C")


def check_param(owner, name, value, expected_shape, dtype, source=None):
    """Check one weight array of the functional API against its expected shape."""
    value = _check_float_array(owner, name, value, dtype, source)
    if value.shape != tuple(expected_shape):
        raise ValueError(
            f"{owner}: {name}: expected shape {_shape_str(expected_shape)}, got "
            f"{_shape_str(value.shape)}"
        )
    return value


def check_params(owner, params, shapes, dtype, source=None):
    """Check a ``{name: array}`` mapping against ``{name: shape}``; return checked dict.

    Every expected name must be present and no other name may be.
    """
    if not hasattr(params, "keys") or not hasattr(params, "__getitem__"):
        raise TypeError(
            f"{owner}: params must be a mapping of parameter names to arrays "
            f"(e.g. layer.state_dict()), got {describe(params)}"
        )
    keys = list(params.keys())
    missing = [k for k in shapes if k not in params]
    unexpected = [k for k in keys if k not in shapes]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + name_list(missing))
        if unexpected:
            parts.append("unexpected " + name_list(unexpected))
        hint = ""
        if missing and all(k.startswith("bias_") for k in missing):
            hint = " (for parameters without biases pass bias=False)"
        elif unexpected and all(k.startswith("bias_") for k in unexpected):
            hint = " (for parameters with biases pass bias=True)"
        elif missing and all(k.startswith("weight_hr_") for k in missing):
            hint = " (weight_hr_* are the LSTM projections of proj_size > 0)"
        elif unexpected and all(k.startswith("weight_hr_") for k in unexpected):
            hint = " (for an LSTM with projections pass proj_size=...)"
        elif missing and all(k.startswith("weight_peep_") for k in missing):
            hint = " (weight_peep_* are the LSTM peepholes of peephole=True)"
        elif unexpected and all(k.startswith("weight_peep_") for k in unexpected):
            hint = " (for an LSTM with peepholes pass peephole=True)"
        raise ValueError(
            f"{owner}: params do not match the configuration: " + "; ".join(parts) + hint
        )
    return {k: check_param(owner, k, params[k], shp, dtype, source)
            for k, shp in shapes.items()}


def check_grad(owner, name, value, expected_shape, dtype, meaning, source=None):
    """Check an output gradient (``dy``) against the shape of the output it belongs to."""
    value = _check_float_array(owner, name, value, dtype, source)
    if value.shape != tuple(expected_shape):
        raise ValueError(
            f"{owner}: expected {name} of shape {_shape_str(expected_shape)} "
            f"({meaning}), got {_shape_str(value.shape)}"
        )
    return value


def check_dropout_masks(owner, masks, expected_shapes):
    """Check explicit dropout keep-masks: a sequence of ``num_layers - 1`` arrays.

    Every mask must be a bool, integer or float ndarray of the given shape.
    Returns the list of masks as base-class ndarrays (not copied).
    """
    if isinstance(masks, np.ndarray) or not isinstance(masks, (list, tuple)):
        raise TypeError(
            f"{owner}: dropout_masks must be a list of {len(expected_shapes)} arrays "
            f"(one per layer after the first), got {describe(masks)}"
        )
    if len(masks) != len(expected_shapes):
        raise ValueError(
            f"{owner}: dropout_masks must hold {len(expected_shapes)} arrays (one per "
            f"layer after the first), got {len(masks)}"
        )
    out = []
    for k, (m, shp) in enumerate(zip(masks, expected_shapes)):
        if not isinstance(m, np.ndarray):
            raise TypeError(
                f"{owner}: dropout_masks[{k}] must be a numpy.ndarray, got {describe(m)}"
            )
        if m.dtype.kind not in "biuf":
            raise TypeError(
                f"{owner}: dropout_masks[{k}] must be a bool or real array, got dtype "
                f"{m.dtype}"
            )
        if m.shape != tuple(shp):
            raise ValueError(
                f"{owner}: expected dropout_masks[{k}] of shape {_shape_str(shp)}, got "
                f"{_shape_str(m.shape)}"
            )
        out.append(np.asarray(m))
    return out


# ----------------------------------------------------------------------------
# ONNX semantics options (docs/design.md, "ONNX semantics")

#: canonical ONNX spelling of every activation, by lowercase name
ACTIVATIONS = {n.lower(): n for n in (
    "Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
    "HardSigmoid", "Elu", "Softsign", "Softplus")}
#: ONNX Runtime's default (alpha, beta) of every activation (0 where unused), measured
#: on its CPU RNN / GRU / LSTM (docs/design.md)
ACTIVATION_DEFAULTS = {
    "relu": (0.0, 0.0), "tanh": (0.0, 0.0), "sigmoid": (0.0, 0.0),
    "affine": (0.0, 0.0), "leakyrelu": (0.01, 0.0), "thresholdedrelu": (0.0, 0.0),
    "scaledtanh": (0.0, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0),
    "softsign": (0.0, 0.0), "softplus": (0.0, 0.0),
}
#: activations per direction, and what they are for
ACTIVATION_ROLES = {
    "rnn_tanh": ("f",), "rnn_relu": ("f",), "gru": ("f (z, r)", "g (n)"),
    "lstm": ("f (i, f, o)", "g (cell candidate)", "h (output)"),
}


def _default_activations(cell):
    return {"rnn_tanh": ["Tanh"], "rnn_relu": ["Relu"], "gru": ["Sigmoid", "Tanh"],
            "lstm": ["Sigmoid", "Tanh", "Tanh"]}[cell]


def _check_real_list(owner, name, value, n_max):
    """None, or a list/tuple of at most ``n_max`` finite reals or None."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(
            f"{owner}: {name!r} must be None or a list of floats aligned with "
            f"'activations', got {describe(value)}"
        )
    value = list(value)
    if len(value) > n_max:
        raise ValueError(
            f"{owner}: {name!r} has {len(value)} entries, but there are only {n_max} "
            f"activations (one entry per activation, None for the default)"
        )
    out = []
    for k, v in enumerate(value):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"{owner}: {name}[{k}] must be a float or None, got {describe(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"{owner}: {name}[{k}] must be finite, got {v!r}")
        out.append(v)
    return out


def check_onnx_options(owner, cell, bidirectional, activations=None, activation_alpha=None,
                       activation_beta=None, clip=None, input_forget=False, peephole=False):
    """Check the ONNX semantics options; return a dict with the normalised values.

    Keys: ``activations`` (list of canonical names or None), ``activation_alpha`` /
    ``activation_beta`` (full lists of floats aligned with ``activations``, defaults
    filled in, or None), ``clip`` (float or None), ``input_forget``, ``peephole``
    (bools) and ``acts``: per direction a tuple of ``(lowercase name, alpha, beta)``
    triples for the backend, or None for the cell's default activations.
    """
    D = 2 if bidirectional else 1
    K = len(ACTIVATION_ROLES[cell])
    out = {"activations": None, "activation_alpha": None, "activation_beta": None}
    if activations is None:
        if activation_alpha is not None or activation_beta is not None:
            raise ValueError(
                f"{owner}: 'activation_alpha' / 'activation_beta' need 'activations' "
                f"(the list of activation names they belong to)"
            )
        acts = [None] * D
    else:
        if isinstance(activations, (str, bytes)) or not isinstance(
                activations, (list, tuple)):
            raise TypeError(
                f"{owner}: 'activations' must be None or a list of ONNX activation names, "
                f"got {describe(activations)}"
            )
        names = []
        for k, a in enumerate(activations):
            if not isinstance(a, str):
                raise TypeError(
                    f"{owner}: activations[{k}] must be an ONNX activation name (str), "
                    f"got {describe(a)}"
                )
            if a.lower() not in ACTIVATIONS:
                raise ValueError(
                    f"{owner}: activations[{k}] must be one of "
                    f"{', '.join(ACTIVATIONS.values())} (case-insensitive), got {a!r}"
                )
            names.append(ACTIVATIONS[a.lower()])
        roles = ", ".join(ACTIVATION_ROLES[cell])
        if len(names) not in (K, K * D):
            what = f"{K}" if D == 1 else f"{K} (both directions) or {2 * K} (forward then reverse)"
            raise ValueError(
                f"{owner}: 'activations' must have {what} entries for "
                f"{MODE_OF_CELL[cell]} ({roles}), got {len(names)}"
            )
        alpha = _check_real_list(owner, "activation_alpha", activation_alpha, len(names))
        beta = _check_real_list(owner, "activation_beta", activation_beta, len(names))
        full_a, full_b = [], []
        for k, nm in enumerate(names):
            da, db = ACTIVATION_DEFAULTS[nm.lower()]
            full_a.append(alpha[k] if alpha is not None and k < len(alpha)
                          and alpha[k] is not None else da)
            full_b.append(beta[k] if beta is not None and k < len(beta)
                          and beta[k] is not None else db)
        out["activations"] = names
        out["activation_alpha"], out["activation_beta"] = full_a, full_b
        triples = [(nm.lower(), a, b) for nm, a, b in zip(names, full_a, full_b)]
        if len(triples) == K:
            acts = [tuple(triples)] * D     # one list for every direction
        else:
            acts = [tuple(triples[d * K:(d + 1) * K]) for d in range(D)]
    out["acts"] = acts
    if clip is not None:
        if isinstance(clip, (bool, np.bool_)) or not isinstance(
                clip, (numbers.Real, np.floating, np.integer)):
            raise TypeError(f"{owner}: 'clip' must be None or a positive float, got {describe(clip)}")
        clip = float(clip)
        if not (clip > 0) or math.isnan(clip):
            raise ValueError(f"{owner}: 'clip' must be None or a positive float, got {clip!r}")
        if math.isinf(clip):
            clip = None  # no clamp at all
    out["clip"] = clip
    input_forget = check_bool(owner, "input_forget", input_forget)
    peephole = check_bool(owner, "peephole", peephole)
    if cell != "lstm":
        for nm, v in (("input_forget", input_forget), ("peephole", peephole)):
            if v:
                raise ValueError(
                    f"{owner}: {nm!r} is only supported for LSTM, got {nm}=True for "
                    f"{MODE_OF_CELL[cell]}"
                )
    out["input_forget"], out["peephole"] = input_forget, peephole
    return out
