"""ONNX <-> rnnfast: graphs of ``RNN`` / ``LSTM`` / ``GRU`` nodes (opset 7 and later).

Reading and writing use rnnfast's own protobuf code (:mod:`._proto`); the onnx
package is never imported (an ``onnx.ModelProto`` is read through its
``SerializeToString``).

Import: every recurrent node becomes an rnnfast layer (one layer, one or two
directions); gate orders are converted (LSTM i, o, f, c -> i, f, g, o; GRU z, r, h
-> r, z, n; peepholes i, o, f -> i, f, o), ``B = [Wb, Rb]`` becomes ``bias_ih`` /
``bias_hh``.  The glue ops PyTorch's exporter puts between recurrent nodes
(Transpose, Squeeze, Unsqueeze, Reshape, Concat, Slice, Gather, Shape, Constant,
ConstantOfShape, Identity, Cast, Expand) run in NumPy.  Anything else is refused
with an error naming it.
"""

import os

import numpy as np

from .._io import atomic_write
from .. import _validation as _v
from . import _common as _c
from . import _proto as _p

__all__ = ["from_onnx", "to_onnx", "OnnxModel"]

_RECURRENT = {"RNN": 1, "GRU": 3, "LSTM": 4}
_GLUE = ("Identity", "Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat",
         "ConstantOfShape", "Transpose", "Slice", "Reshape", "Cast", "Expand")
_MIN_OPSET, _MAX_OPSET = 7, 25
_COMMON_ATTRS = {"activation_alpha", "activation_beta", "activations", "clip",
                 "direction", "hidden_size", "layout"}
_ATTRS = {"RNN": _COMMON_ATTRS, "GRU": _COMMON_ATTRS | {"linear_before_reset"},
          "LSTM": _COMMON_ATTRS | {"input_forget"}}
_N_ACTS = {"RNN": 1, "GRU": 2, "LSTM": 3}
# ONNX gate blocks -> rnnfast (PyTorch) gate blocks, and back
_ONNX2RF = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
_RF2ONNX = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}
_PEEP_ONNX2RF = (0, 2, 1)   # ONNX P = [i, o, f] -> rnnfast [i, f, o]; own inverse


def _fail(msg):
    return ValueError(f"from_onnx: {msg}")


def _read_source(model):
    owner = "from_onnx"
    if hasattr(model, "SerializeToString") and not isinstance(model, (bytes, bytearray)):
        data = model.SerializeToString()
        if not isinstance(data, bytes):
            raise TypeError(f"{owner}: SerializeToString() returned "
                            f"{_v.describe(data)}, expected bytes")
        return data
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    try:
        path = os.fspath(model)
    except TypeError:
        raise TypeError(f"{owner}: model must be a path, bytes or an onnx.ModelProto, got "
                        f"{_v.describe(model)}") from None
    with open(path, "rb") as f:
        return f.read()


def from_onnx(model, *, backend="cpu"):
    """Load an ONNX model made of ``RNN`` / ``LSTM`` / ``GRU`` nodes (and the glue ops
    exporters put between them) as an :class:`OnnxModel` that runs it with ONNX's
    conventions.

    Parameters
    ----------
    model : str, os.PathLike, bytes or onnx.ModelProto
        A file path, the serialized model, or a ModelProto (read through its
        ``SerializeToString``; onnx is not imported).
    backend : {'cpu', 'reference'}, default 'cpu'

    Returns
    -------
    OnnxModel

    Raises
    ------
    ValueError
        A malformed or truncated file, external data, an unsupported operator or
        attribute value (named), an opset outside 7-25.
    TypeError
        ``model`` of another kind.
    """
    data = _read_source(model)
    backend = _v.check_backend("from_onnx", backend)
    try:
        proto = _p.parse_model(data)
    except _p.ProtoError as exc:
        raise _fail(f"not a valid ONNX model ({exc})") from None
    return OnnxModel(proto, backend)


def _attr_value(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return a
    return default


class _Recurrent:
    """One ONNX recurrent node: attributes checked at load, layer built from W, R,
    B, P (at load when they are constants, else at every call)."""

    def __init__(self, node, opset, backend):
        self.node = node
        self.op = node.op_type
        self.backend = backend
        op = self.op
        allowed = _ATTRS[op]
        attrs = {}
        for a in node.attribute:
            if a.name not in allowed:
                raise _fail(f"{op} node {node.name!r}: attribute {a.name!r} is not "
                            f"supported (value {a.value!r})")
            if a.name in attrs:
                raise _fail(f"{op} node {node.name!r}: attribute {a.name!r} repeated")
            attrs[a.name] = a.value
        direction = attrs.get("direction", b"forward")
        if isinstance(direction, bytes):
            direction = direction.decode("utf-8", "replace")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise _fail(f"{op} node {node.name!r}: direction={direction!r} (expected "
                        f"forward, reverse or bidirectional)")
        self.direction = direction
        self.D = 2 if direction == "bidirectional" else 1
        hs = attrs.get("hidden_size")
        if hs is not None and (not isinstance(hs, int) or hs < 1):
            raise _fail(f"{op} node {node.name!r}: hidden_size={hs!r}")
        self.hidden_size = hs
        layout = attrs.get("layout", 0)
        if layout not in (0, 1):
            raise _fail(f"{op} node {node.name!r}: layout={layout!r} (expected 0 or 1)")
        self.layout = layout
        self.clip = attrs.get("clip")
        if self.clip is not None and not (isinstance(self.clip, float)
                                          and self.clip > 0 and np.isfinite(self.clip)):
            raise _fail(f"{op} node {node.name!r}: clip={self.clip!r} (expected a "
                        f"positive float)")
        self.input_forget = attrs.get("input_forget", 0)
        if self.input_forget not in (0, 1):
            raise _fail(f"{op} node {node.name!r}: input_forget={self.input_forget!r}")
        lbr = attrs.get("linear_before_reset", 0)
        if lbr not in (0, 1):
            raise _fail(f"{op} node {node.name!r}: linear_before_reset={lbr!r}")
        self.reset_after = bool(lbr)
        self.activations = self._activations(attrs)
        n_in = len(node.input)
        if n_in < 3 or n_in > (8 if op == "LSTM" else 6):
            raise _fail(f"{op} node {node.name!r} has {n_in} inputs")
        if len(node.output) > (3 if op == "LSTM" else 2):
            raise _fail(f"{op} node {node.name!r} has {len(node.output)} outputs")
        self.cached = None

    def _activations(self, attrs):
        op, node = self.op, self.node
        k = _N_ACTS[op]
        names = attrs.get("activations")
        alpha = list(attrs.get("activation_alpha") or [])
        beta = list(attrs.get("activation_beta") or [])
        if names is None:
            if alpha or beta:
                raise _fail(f"{op} node {node.name!r}: activation_alpha/beta without "
                            f"activations")
            return None
        canon = []
        for raw in names:
            s = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            c = _c.ACTIVATION_NAMES.get(s.lower())
            if c is None:
                raise _fail(f"{op} node {node.name!r}: activations contains {s!r}, "
                            f"not an ONNX activation rnnfast supports")
            canon.append(c)
        if len(canon) not in (k, k * self.D):
            raise _fail(f"{op} node {node.name!r}: activations has {len(canon)} entries, "
                        f"expected {k * self.D}")
        # ONNX Runtime consumes alpha / beta in order, only for functions taking them
        al, be = [], []
        for c in canon:
            if c in _c.ALPHA_DEFAULT:
                al.append(float(alpha.pop(0)) if alpha else None)
            else:
                al.append(None)
            if c in _c.BETA_DEFAULT:
                be.append(float(beta.pop(0)) if beta else None)
            else:
                be.append(None)
        if alpha or beta:
            raise _fail(f"{op} node {node.name!r}: activation_alpha/beta hold more "
                        f"values than the activations {canon} take")
        if len(canon) == k and self.D == 2:
            canon, al, be = canon * 2, al * 2, be * 2
        return canon, al, be

    # ---------------------------------------------------------------- build
    def build(self, W, R, B, P, dtype_check=True):
        op, node, D = self.op, self.node, self.D
        G = _RECURRENT[op]
        for name, a in (("W", W), ("R", R), ("B", B), ("P", P)):
            if a is not None and (a.dtype not in (np.float32, np.float64)):
                raise _fail(f"{op} node {node.name!r}: {name} has dtype {a.dtype}; "
                            f"rnnfast computes in float32 or float64")
        dtype = W.dtype
        if W.ndim != 3 or W.shape[0] != D or W.shape[1] % G or W.shape[1] == 0 \
                or W.shape[2] < 1:
            raise _fail(f"{op} node {node.name!r}: W must have shape ({D}, {G}*H, I), "
                        f"got {W.shape}")
        H = W.shape[1] // G
        if self.hidden_size is not None and self.hidden_size != H:
            raise _fail(f"{op} node {node.name!r}: hidden_size={self.hidden_size} but W "
                        f"has shape {W.shape}")
        I = W.shape[2]
        if R.shape != (D, G * H, H) or R.dtype != dtype:
            raise _fail(f"{op} node {node.name!r}: R must have shape {(D, G * H, H)} "
                        f"and dtype {dtype}, got {R.shape} {R.dtype}")
        if B is not None and (B.shape != (D, 2 * G * H) or B.dtype != dtype):
            raise _fail(f"{op} node {node.name!r}: B must have shape {(D, 2 * G * H)} "
                        f"and dtype {dtype}, got {B.shape} {B.dtype}")
        if P is not None and (P.shape != (D, 3 * H) or P.dtype != dtype):
            raise _fail(f"{op} node {node.name!r}: P must have shape {(D, 3 * H)} and "
                        f"dtype {dtype}, got {P.shape} {P.dtype}")
        order = _ONNX2RF[op]
        params = {}
        for d in range(D):
            params[_c.param_name("weight_ih", 0, d)] = _c.gate_blocks(W[d], order, G)
            params[_c.param_name("weight_hh", 0, d)] = _c.gate_blocks(R[d], order, G)
            if B is not None:
                params[_c.param_name("bias_ih", 0, d)] = _c.gate_blocks(B[d, :G * H],
                                                                        order, G)
                params[_c.param_name("bias_hh", 0, d)] = _c.gate_blocks(B[d, G * H:],
                                                                        order, G)
        opts = {}
        cell = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn_tanh"}[op]
        if self.activations is not None:
            names, al, be = self.activations
            if op == "RNN" and len(set(names)) == 1 and names[0] in ("Tanh", "Relu"):
                cell = "rnn_" + names[0].lower()
            elif names != _c.DEFAULT_ACTIVATIONS[cell] * D:
                opts["activations"] = names
                if any(a is not None for a in al):
                    opts["activation_alpha"] = al
                if any(b is not None for b in be):
                    opts["activation_beta"] = be
        if self.clip is not None:
            opts["clip"] = float(self.clip)
        if self.input_forget:
            opts["input_forget"] = True
        if P is not None and np.any(P):
            opts["peephole"] = True
        layer = _c.make_layer(
            "from_onnx", cell, input_size=I, hidden_size=H, bias=B is not None,
            batch_first=self.layout == 1, bidirectional=D == 2,
            reset_after=self.reset_after, dtype=dtype, backend=self.backend,
            params=params if not opts.get("peephole") else None, options=opts)
        if opts.get("peephole"):
            for d in range(D):
                params[_c.param_name("weight_peep", 0, d)] = _c.gate_blocks(
                    P[d], _PEEP_ONNX2RF, 3)
            layer.load_state_dict(params)
        layer.eval()
        return layer

    # ------------------------------------------------------------------ run
    def run(self, vals):
        """``vals``: the node's input arrays (None for absent ones)."""
        op, node = self.op, self.node
        X, W, R = vals[0], vals[1], vals[2]
        get = lambda i: vals[i] if len(vals) > i else None  # noqa: E731
        B, seq, h0, c0, P = get(3), get(4), get(5), get(6), get(7)
        if X is None or W is None or R is None:
            raise _fail(f"{op} node {node.name!r}: X, W and R are required")
        if self.cached is not None:
            layer = self.cached
        else:
            layer = self.build(W, R, B, P)
        if not isinstance(X, np.ndarray) or X.ndim != 3:
            raise ValueError(f"{op} node {node.name!r}: X must be a 3-D array, got "
                             f"{_v.describe(X)}")
        if X.dtype != layer.dtype:
            raise TypeError(f"{op} node {node.name!r}: X has dtype {X.dtype}, the "
                            f"weights {layer.dtype}")
        if self.layout == 0:
            T, N = X.shape[0], X.shape[1]
        else:
            N, T = X.shape[0], X.shape[1]
        D, H = self.D, layer.hidden_size
        lengths = None
        if seq is not None:
            if seq.dtype.kind not in "iu" or seq.shape != (N,):
                raise ValueError(f"{op} node {node.name!r}: sequence_lens must be "
                                 f"integers of shape ({N},), got {_v.describe(seq)}")
            if N and (seq.min() < 0 or seq.max() > T):
                raise ValueError(f"{op} node {node.name!r}: sequence_lens values must "
                                 f"lie in [0, {T}]")
            if not np.all(seq == T):
                lengths = seq.astype(np.int64)

        def state(a, name):
            if a is None:
                return None
            want = (D, N, H) if self.layout == 0 else (N, D, H)
            if a.shape != want or a.dtype != layer.dtype:
                raise ValueError(f"{op} node {node.name!r}: {name} must have shape {want}"
                                 f" and dtype {layer.dtype}, got {_v.describe(a)}")
            return np.ascontiguousarray(a if self.layout == 0 else a.transpose(1, 0, 2))

        h0, c0 = state(h0, "initial_h"), state(c0, "initial_c")
        if op == "LSTM":
            if h0 is None and c0 is not None:
                h0 = np.zeros_like(c0)
            if c0 is None and h0 is not None:
                c0 = np.zeros_like(h0)
            hx = None if h0 is None else (h0, c0)
        else:
            hx = h0
        X = np.ascontiguousarray(X)
        if self.direction == "reverse":
            y, h_n, c_n = _c.run_reversed(layer, X, hx, lengths)
        else:
            y, st = layer(X, hx, lengths)
            h_n, c_n = st if op == "LSTM" else (st, None)
        if self.layout == 0:
            Y = y.reshape(T, N, D, H).transpose(0, 2, 1, 3)
            Y_h, Y_c = h_n, c_n
        else:
            Y = y.reshape(N, T, D, H)
            Y_h = h_n.transpose(1, 0, 2)
            Y_c = None if c_n is None else c_n.transpose(1, 0, 2)
        outs = [np.ascontiguousarray(Y), np.ascontiguousarray(Y_h)]
        if op == "LSTM":
            outs.append(np.ascontiguousarray(Y_c))
        return outs


class OnnxModel:
    """An ONNX graph of recurrent nodes, run with rnnfast.

    Call it like an ONNX Runtime session: ``outputs = model(X)`` or ``model(X=...,
    sequence_lens=...)`` (graph inputs by position or name) returns the list of graph
    outputs in order; ``model.run(None or [names], {name: array})`` as ORT's
    ``InferenceSession.run``.  For a single recurrent node the outputs follow ONNX:
    ``Y`` ``[T, D, B, H]`` (``[B, T, D, H]`` with layout=1), ``Y_h``, ``Y_c``.

    Attributes
    ----------
    input_names, output_names : list of str
        Graph inputs that are not initializers, in order; graph outputs.
    layers : list
        One rnnfast layer per recurrent node whose weights are constants (None
        where weights are graph inputs), in node order.
    directions : list of str
        ONNX ``direction`` per recurrent node.
    """

    def __init__(self, proto, backend="cpu"):
        opset = proto.opset_import.get("", proto.opset_import.get("ai.onnx"))
        if opset is None:
            raise _fail("the model imports no default-domain opset")
        if not _MIN_OPSET <= opset <= _MAX_OPSET:
            raise _fail(f"opset {opset} is not supported (rnnfast reads opsets "
                        f"{_MIN_OPSET}-{_MAX_OPSET})")
        self.opset = opset
        g = proto.graph
        if g.has_sparse_initializer:
            raise _fail("sparse initializers are not supported")
        self._consts = {}
        for t in g.initializer:
            try:
                self._consts[t.name] = t.to_numpy("initializer")
            except _p.ProtoError as exc:
                raise _fail(str(exc)) from None
        self.input_names = [v.name for v in g.input if v.name not in self._consts]
        self.output_names = [v.name for v in g.output]
        if not self.output_names:
            raise _fail("the graph has no outputs")
        self._nodes = []
        self.layers, self.directions = [], []
        known = set(self._consts) | set(self.input_names) | {""}
        for node in g.node:
            if node.domain not in ("", "ai.onnx"):
                raise _fail(f"operator {node.domain}::{node.op_type} (node "
                            f"{node.name!r}) is not supported")
            if node.op_type not in _RECURRENT and node.op_type not in _GLUE:
                raise _fail(f"operator {node.op_type!r} (node {node.name!r}) is not "
                            f"supported; rnnfast runs RNN, LSTM, GRU and "
                            + ", ".join(_GLUE))
            for name in node.input:
                if name not in known:
                    raise _fail(f"node {node.name!r} ({node.op_type}) reads {name!r}, "
                                f"which no earlier node, input or initializer provides")
            if node.op_type in _RECURRENT:
                rec = _Recurrent(node, opset, backend)
                ins = list(node.input)

                def cget(i):
                    n = ins[i] if len(ins) > i else ""
                    return self._consts.get(n) if n else None

                def is_const(i):
                    n = ins[i] if len(ins) > i else ""
                    return (not n) or n in self._consts

                if ins[1] in self._consts and ins[2] in self._consts and \
                        is_const(3) and is_const(7):
                    rec.cached = rec.build(cget(1), cget(2), cget(3), cget(7))
                self.layers.append(rec.cached)
                self.directions.append(rec.direction)
                self._nodes.append(rec)
            else:
                self._nodes.append(node)
                if node.op_type == "Constant":
                    self._consts[node.output[0]] = self._constant(node)
            known.update(node.output)
        for name in self.output_names:
            if name not in known:
                raise _fail(f"graph output {name!r} is produced by no node")

    def __repr__(self):
        return (f"OnnxModel(inputs={self.input_names}, outputs={self.output_names}, "
                f"recurrent_nodes={len(self.layers)})")

    @staticmethod
    def _constant(node):
        a = node.attrs()
        if "value" in a and a["value"].t is not None:
            try:
                return a["value"].t.to_numpy("Constant value")
            except _p.ProtoError as exc:
                raise _fail(str(exc)) from None
        if "value_float" in a:
            return np.array(a["value_float"].value, dtype=np.float32)
        if "value_floats" in a:
            return np.array(a["value_floats"].value, dtype=np.float32)
        if "value_int" in a:
            return np.array(a["value_int"].value, dtype=np.int64)
        if "value_ints" in a:
            return np.array(a["value_ints"].value, dtype=np.int64)
        raise _fail(f"Constant node {node.name!r}: only tensor, float(s) and int(s) "
                    f"values are supported")

    # ------------------------------------------------------------------ run
    def __call__(self, *args, **kwargs):
        if len(args) > len(self.input_names):
            raise TypeError(f"OnnxModel: {len(args)} positional inputs, the graph has "
                            f"{len(self.input_names)} ({self.input_names})")
        feeds = dict(zip(self.input_names, args))
        for k, v in kwargs.items():
            if k in feeds:
                raise TypeError(f"OnnxModel: input {k!r} given twice")
            feeds[k] = v
        return self.run(None, feeds)

    def run(self, output_names, feeds):
        """Run the graph: ``feeds`` maps input names to arrays; returns the outputs
        named in ``output_names`` (all graph outputs when None), as a list."""
        if not isinstance(feeds, dict):
            raise TypeError(f"OnnxModel.run: feeds must be a dict, got "
                            f"{_v.describe(feeds)}")
        unknown = [k for k in feeds if k not in self.input_names]
        if unknown:
            raise ValueError(f"OnnxModel.run: unknown inputs {unknown}; the graph takes "
                             f"{self.input_names}")
        missing = [k for k in self.input_names if k not in feeds]
        if missing:
            raise ValueError(f"OnnxModel.run: missing inputs {missing}")
        env = dict(self._consts)
        for k, v in feeds.items():
            if not isinstance(v, np.ndarray):
                raise TypeError(f"OnnxModel.run: input {k!r} must be a numpy.ndarray, "
                                f"got {_v.describe(v)}")
            env[k] = v
        for item in self._nodes:
            if isinstance(item, _Recurrent):
                vals = [env[n] if n else None for n in item.node.input]
                outs = item.run(vals)
                names = item.node.output
            else:
                if item.op_type == "Constant":
                    continue
                vals = [env[n] if n else None for n in item.input]
                try:
                    outs = [_glue(item, vals, self.opset)]
                except (IndexError, KeyError, AttributeError, TypeError) as exc:
                    # malformed inputs or attributes of a glue node
                    raise ValueError(f"OnnxModel: {item.op_type} node {item.name!r} "
                                     f"cannot run: {type(exc).__name__}: {exc}") from None
                names = item.output[:1]
            for name, val in zip(names, outs):
                if name:
                    env[name] = val
        wanted = self.output_names if output_names is None else list(output_names)
        out = []
        for name in wanted:
            if name not in env:
                raise ValueError(f"OnnxModel.run: no output named {name!r}")
            out.append(env[name])
        return out


def _ints_of(a, what):
    a = np.asarray(a)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {a.dtype}")
    return [int(v) for v in a.reshape(-1)]


def _axis(ax, ndim, what):
    if not -ndim <= ax < max(ndim, 1):
        raise ValueError(f"{what}: axis {ax} out of range for rank {ndim}")
    return ax % ndim if ndim else 0


def _check_alloc(shape, itemsize, what):
    n = 1
    for d in shape:
        if d < 0:
            raise ValueError(f"{what}: negative dimension in {shape}")
        n *= d
    if n * itemsize > _v.available_memory_bytes():
        raise ValueError(f"{what}: shape {shape} needs more memory than is available")


def _glue(node, vals, opset):
    """Evaluate one non-recurrent node in NumPy (inputs ``vals``, None if absent)."""
    op = node.op_type
    a = node.attrs()
    attr = lambda k, d=None: a[k].value if k in a else d  # noqa: E731
    what = f"{op} node {node.name!r}"
    x = vals[0] if vals else None
    if op != "Constant" and x is None:
        raise ValueError(f"{what}: missing input")
    needs = {"Gather": 2, "Reshape": 2, "Expand": 2}.get(op, 3 if (
        op == "Slice" and opset >= 10) else 1)
    if len(vals) < needs or any(v is None for v in vals[:needs]):
        raise ValueError(f"{what}: expected at least {needs} inputs")
    if op == "Identity":
        return x
    if op == "Shape":
        shape = np.array(x.shape, dtype=np.int64)
        start, end = attr("start", 0), attr("end", None)
        return shape[start:end]
    if op == "Gather":
        idx = np.asarray(vals[1])
        if idx.dtype.kind not in "iu":
            raise ValueError(f"{what}: indices must be integers")
        ax = _axis(attr("axis", 0), x.ndim, what)
        n = x.shape[ax]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ValueError(f"{what}: index out of range [-{n}, {n})")
        return np.take(x, np.where(idx < 0, idx + n, idx), axis=ax)
    if op in ("Unsqueeze", "Squeeze"):
        axes = attr("axes") if "axes" in a else (
            _ints_of(vals[1], f"{what}: axes") if len(vals) > 1 and vals[1] is not None
            else None)
        if op == "Unsqueeze":
            if axes is None:
                raise ValueError(f"{what}: axes required")
            out_rank = x.ndim + len(axes)
            axes = sorted(_axis(v, out_rank, what) for v in axes)
            for ax in axes:
                x = np.expand_dims(x, ax)
            return x
        if axes is None:
            return np.squeeze(x)
        axes = tuple(sorted({_axis(v, x.ndim, what) for v in axes}))
        if any(x.shape[ax] != 1 for ax in axes):
            raise ValueError(f"{what}: cannot squeeze axes {axes} of shape {x.shape}")
        return np.squeeze(x, axis=axes)
    if op == "Concat":
        arrs = [v for v in vals if v is not None]
        if not arrs:
            raise ValueError(f"{what}: no inputs")
        ax = _axis(attr("axis", 0), arrs[0].ndim, what)
        try:
            return np.concatenate(arrs, axis=ax)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    if op == "ConstantOfShape":
        shape = _ints_of(x, f"{what}: shape")
        if "value" in a and a["value"].t is None:
            raise ValueError(f"{what}: value must be a tensor")
        value = a["value"].t.to_numpy("ConstantOfShape value") if "value" in a \
            else np.zeros(1, np.float32)
        if value.size != 1:
            raise ValueError(f"{what}: value must hold one element")
        _check_alloc(shape, value.dtype.itemsize, what)
        return np.full(shape, value.reshape(()), dtype=value.dtype)
    if op == "Transpose":
        perm = attr("perm", list(range(x.ndim))[::-1])
        if sorted(perm) != list(range(x.ndim)):
            raise ValueError(f"{what}: perm {perm} for rank {x.ndim}")
        return np.transpose(x, perm)
    if op == "Slice":
        if opset < 10:
            starts, ends = attr("starts", []), attr("ends", [])
            axes, steps = attr("axes"), None
        else:
            starts = _ints_of(vals[1], f"{what}: starts")
            ends = _ints_of(vals[2], f"{what}: ends")
            axes = _ints_of(vals[3], f"{what}: axes") if len(vals) > 3 and \
                vals[3] is not None else None
            steps = _ints_of(vals[4], f"{what}: steps") if len(vals) > 4 and \
                vals[4] is not None else None
        if axes is None:
            axes = list(range(len(starts)))
        if steps is None:
            steps = [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise ValueError(f"{what}: starts/ends/axes/steps lengths differ")
        sl = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            if st == 0:
                raise ValueError(f"{what}: step 0")
            ax = _axis(ax, x.ndim, what)
            n = x.shape[ax]
            # clamp as ONNX does, then let Python slicing do the rest
            s = max(-n - 1, min(n, s))
            e = max(-n - 1, min(n, e))
            if st < 0 and e < -n:
                e = None
            sl[ax] = slice(s, e, st)
        return x[tuple(sl)]
    if op == "Reshape":
        shape = _ints_of(vals[1], f"{what}: shape")
        allowzero = attr("allowzero", 0)
        out = []
        for i, d in enumerate(shape):
            if d == 0 and not allowzero:
                if i >= x.ndim:
                    raise ValueError(f"{what}: 0 at axis {i} beyond rank {x.ndim}")
                out.append(x.shape[i])
            else:
                out.append(d)
        if out.count(-1) > 1 or any(d < -1 for d in out):
            raise ValueError(f"{what}: invalid shape {shape}")
        try:
            return x.reshape(out)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    if op == "Cast":
        to = attr("to")
        dt = _p.DTYPE_OF_ONNX.get(to)
        if dt is None:
            raise ValueError(f"{what}: to={to!r} is not supported")
        return x.astype(dt.newbyteorder("="))
    if op == "Expand":
        shape = _ints_of(vals[1], f"{what}: shape")
        try:
            out_shape = np.broadcast_shapes(x.shape, tuple(shape))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
        _check_alloc(out_shape, x.dtype.itemsize, what)
        return np.array(np.broadcast_to(x, out_shape))
    raise ValueError(f"{what}: not supported")  # pragma: no cover


# ----------------------------------------------------------------------------
# export


def _activation_attrs(layer, cell, D):
    """ONNX ``activations`` / ``activation_alpha`` / ``activation_beta`` for a layer,
    or {} when the defaults hold."""
    opts = _c.layer_options(layer)
    k = {"lstm": 3, "gru": 2}.get(cell, 1)
    names = opts["activations"]
    if names is None:
        if cell == "rnn_relu":
            return {"activations": ["Relu"] * D}
        return {}
    names = [_c.ACTIVATION_NAMES.get(str(n).lower(), str(n)) for n in names]
    al = list(opts["activation_alpha"] or [None] * len(names))
    be = list(opts["activation_beta"] or [None] * len(names))
    if len(names) == k and D == 2:
        names, al, be = names * 2, al * 2, be * 2
    attrs = {"activations": names}
    alphas = [al[i] if i < len(al) and al[i] is not None else _c.ALPHA_DEFAULT[n]
              for i, n in enumerate(names) if n in _c.ALPHA_DEFAULT]
    betas = [be[i] if i < len(be) and be[i] is not None else _c.BETA_DEFAULT[n]
             for i, n in enumerate(names) if n in _c.BETA_DEFAULT]
    if alphas:
        attrs["activation_alpha"] = [float(v) for v in alphas]
    if betas:
        attrs["activation_beta"] = [float(v) for v in betas]
    return attrs


def to_onnx(layer, path=None, *, opset=17, sequence_lens=False, initial_states=False):
    """Export a layer as an ONNX model: one ``RNN`` / ``LSTM`` / ``GRU`` node per
    stacked layer (bidirectional nodes for bidirectional layers).

    Parameters
    ----------
    layer : RNN, LSTM or GRU
        Any configuration except LSTM projections (ONNX's LSTM has none).
    path : str or os.PathLike, optional
        Where to write the model (written to a temporary file in the same
        directory, then renamed over ``path``).
    opset : int, default 17
        Default-domain opset, 7 to 22.
    sequence_lens : bool, default False
        Add a graph input ``sequence_lens`` (int32, shape ``[batch]``).
    initial_states : bool, default False
        Add graph inputs ``initial_h`` (``[L*D, batch, P]``) and, for LSTM,
        ``initial_c``.

    Returns
    -------
    bytes
        The serialized ModelProto.  Graph input ``X`` has the layer's layout
        (``[T, batch, I]``, or ``[batch, T, I]`` with ``batch_first``); outputs
        ``Y`` (the layer's ``y``), ``Y_h`` (``h_n``) and, for LSTM, ``Y_c``
        (``c_n``), shaped as rnnfast returns them.  Nodes use layout 0 (ONNX
        Runtime's CPU LSTM supports no other); batch-first layers get Transpose
        nodes around them.
    """
    owner = "to_onnx"
    cell = _c.check_layer(owner, layer)
    opset = _v.check_int(owner, "opset", opset, 1)
    if not 7 <= opset <= 22:
        raise ValueError(f"{owner}: opset must be between 7 and 22, got {opset}")
    sequence_lens = _v.check_bool(owner, "sequence_lens", sequence_lens)
    initial_states = _v.check_bool(owner, "initial_states", initial_states)
    if getattr(layer, "proj_size", 0):
        raise ValueError(f"{owner}: ONNX's LSTM has no projection; cannot export "
                         f"proj_size={layer.proj_size}")
    dtype = np.dtype(layer.dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"{owner}: layer dtype {dtype} has no ONNX export")
    et = _p.ONNX_OF_DTYPE[dtype]
    op = {"lstm": "LSTM", "gru": "GRU"}.get(cell, "RNN")
    G = _RECURRENT[op]
    D = 2 if layer.bidirectional else 1
    L, H, I = layer.num_layers, layer.hidden_size, layer.input_size
    opts = _c.layer_options(layer)
    attrs = {"direction": "bidirectional" if D == 2 else "forward", "hidden_size": H}
    attrs.update(_activation_attrs(layer, cell, D))
    if opts["clip"] is not None:
        attrs["clip"] = float(opts["clip"])
    if op == "LSTM" and opts["input_forget"]:
        attrs["input_forget"] = 1
    if op == "GRU":
        attrs["linear_before_reset"] = 1 if layer.reset_after else 0
    peep = op == "LSTM" and bool(opts["peephole"])

    nodes, inits = [], []
    inputs = [("X", et, ["batch", "time", I] if layer.batch_first else
               ["time", "batch", I])]
    x = "X"
    if layer.batch_first:
        nodes.append(_p.encode_node("Transpose", ["X"], ["X_tm"], "x_to_time_major",
                                    {"perm": [1, 0, 2]}))
        x = "X_tm"
    seq = ""
    if sequence_lens:
        inputs.append(("sequence_lens", 6, ["batch"]))
        seq = "sequence_lens"
    if initial_states:
        inputs.append(("initial_h", et, [L * D, "batch", H]))
        if op == "LSTM":
            inputs.append(("initial_c", et, [L * D, "batch", H]))
    inits.append(("rf_flat_shape", np.array([0, 0, -1], dtype=np.int64)))
    order = _RF2ONNX[op]
    yh, yc = [], []
    for lyr in range(L):
        g = lambda k, d: np.asarray(getattr(layer, _c.param_name(k, lyr, d)))  # noqa
        W = np.stack([_c.gate_blocks(g("weight_ih", d), order, G) for d in range(D)])
        R = np.stack([_c.gate_blocks(g("weight_hh", d), order, G) for d in range(D)])
        names = [x, f"W_{lyr}", f"R_{lyr}", "", seq, "", "", ""]
        inits += [(f"W_{lyr}", W), (f"R_{lyr}", R)]
        if layer.bias:
            B = np.stack([np.concatenate([_c.gate_blocks(g("bias_ih", d), order, G),
                                          _c.gate_blocks(g("bias_hh", d), order, G)])
                          for d in range(D)])
            inits.append((f"B_{lyr}", B))
            names[3] = f"B_{lyr}"
        if initial_states:
            idx = f"state_index_{lyr}"
            inits.append((idx, np.arange(lyr * D, lyr * D + D, dtype=np.int64)))
            nodes.append(_p.encode_node("Gather", ["initial_h", idx], [f"h0_{lyr}"],
                                        f"initial_h_{lyr}", {"axis": 0}))
            names[5] = f"h0_{lyr}"
            if op == "LSTM":
                nodes.append(_p.encode_node("Gather", ["initial_c", idx], [f"c0_{lyr}"],
                                            f"initial_c_{lyr}", {"axis": 0}))
                names[6] = f"c0_{lyr}"
        if peep:
            Pm = np.stack([_c.gate_blocks(g("weight_peep", d), _PEEP_ONNX2RF, 3)
                           for d in range(D)])
            inits.append((f"P_{lyr}", Pm))
            names[7] = f"P_{lyr}"
        n_inputs = 8 if peep else (7 if names[6] else 6 if names[5] else
                                   5 if names[4] else 4 if names[3] else 3)
        outs = [f"Y4_{lyr}", f"Yh_{lyr}"] + ([f"Yc_{lyr}"] if op == "LSTM" else [])
        nodes.append(_p.encode_node(op, names[:n_inputs], outs, f"{op.lower()}_{lyr}",
                                    attrs))
        yh.append(outs[1])
        if op == "LSTM":
            yc.append(outs[2])
        nodes.append(_p.encode_node("Transpose", [outs[0]], [f"Yt_{lyr}"],
                                    f"transpose_{lyr}", {"perm": [0, 2, 1, 3]}))
        nodes.append(_p.encode_node("Reshape", [f"Yt_{lyr}", "rf_flat_shape"],
                                    [f"Y_{lyr}"], f"reshape_{lyr}"))
        x = f"Y_{lyr}"
    if layer.batch_first:
        nodes.append(_p.encode_node("Transpose", [x], ["Y"], "y_to_batch_first",
                                    {"perm": [1, 0, 2]}))
    else:
        nodes.append(_p.encode_node("Identity", [x], ["Y"], "y"))
    nodes.append(_p.encode_node("Concat", yh, ["Y_h"], "h_n", {"axis": 0}))
    outputs = [("Y", et, ["batch", "time", D * H] if layer.batch_first else
                ["time", "batch", D * H]), ("Y_h", et, [L * D, "batch", H])]
    if op == "LSTM":
        nodes.append(_p.encode_node("Concat", yc, ["Y_c"], "c_n", {"axis": 0}))
        outputs.append(("Y_c", et, [L * D, "batch", H]))
    data = _p.encode_model(nodes, inits, inputs, outputs, opset)
    if path is not None:
        _write_atomic(owner, path, data)
    return data


def _write_atomic(owner, path, data):
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{owner}: path must be a str or os.PathLike, got "
                        f"{_v.describe(path)}") from None
    atomic_write(path, lambda f: f.write(data))
