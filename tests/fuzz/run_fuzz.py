#!/usr/bin/env python
"""Hypothesis-at-scale fuzz harness for rnnfast's public entry points.

    python tests/fuzz/run_fuzz.py --family layers --examples 100000
    python tests/fuzz/run_fuzz.py --family all --seconds 180
    python tests/fuzz/run_fuzz.py --repro layers "<spec printed with a finding>"

See tests/fuzz/README.md.  Not collected by pytest (no test_ prefix).
"""
import argparse
import ast
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zipfile

FAMILIES = ("layers", "functional", "loaders", "stream")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# The allowed ("clean") outcomes of an input besides a result.  OSError covers
# FileNotFoundError, IsADirectoryError, PermissionError.  RuntimeError is allowed only
# for the documented "backward() needs a training-mode forward" error of the layers and
# the streamer's documented refusal of a layer in training mode.
CLEAN = (ValueError, TypeError, OSError)
CLEAN_RUNTIME_MSGS = ("needs a training-mode forward", "the layer is in training mode")


def classify(exc):
    if isinstance(exc, CLEAN):
        return "clean"
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in CLEAN_RUNTIME_MSGS):
        return "clean"
    return "finding"


# ===================================================================== specs
# Every example is a plain-Python "spec" (literal_eval-able) drawn by Hypothesis and
# turned into objects by build(); a finding prints the spec, and --repro replays it.

def _np():
    import numpy as np
    return np


SIZES = [0, 1, 2, 3, 4, 5, -1, 2**31, 2**62, 2**63, 1.0, 2.5, True, None, "3", "x",
         ("np.int64", 3), ("np.int32", 2), ("np.float64", 3.0)]
DTYPES = ["float32", "float64", "float16", "int32", "int64", "complex64", "bool",
          "object", ">f8", ">f4", "longdouble"]
FILLS = ["normal", "zeros", "nan", "inf", "-inf", "huge", "tiny", "mixed"]
LAYOUTS = ["c", "f", "strided", "neg", "bcast", "readonly", "list", "scalar", "none"]


def build_value(v):
    """Materialise a spec value."""
    np = _np()
    if isinstance(v, tuple) and v and v[0] == "np.int64":
        return np.int64(v[1])
    if isinstance(v, tuple) and v and v[0] == "np.int32":
        return np.int32(v[1])
    if isinstance(v, tuple) and v and v[0] == "np.float64":
        return np.float64(v[1])
    if isinstance(v, tuple) and v and v[0] == "arr":
        return build_array(v)
    if isinstance(v, tuple) and v and v[0] == "dtype":
        try:
            return np.dtype(v[1])
        except TypeError:
            return v[1]
    if isinstance(v, tuple) and v and v[0] == "tuple":
        return tuple(build_value(x) for x in v[1:])
    if isinstance(v, tuple) and v and v[0] == "ints":
        return build_ints(v)
    return v


def build_array(spec):
    """('arr', shape, dtype, layout, fill, seed)"""
    np = _np()
    _, shape, dtype, layout, fill, seed = spec
    rng = np.random.default_rng(seed)
    if layout == "none":
        return None
    if layout == "bcast":       # zero-stride view, possibly astronomically large
        base = np.ones(1, dtype=np.dtype(dtype) if dtype != "object" else object)
        return np.broadcast_to(base, tuple(shape))
    full = tuple(2 * s if (layout == "strided" and i == 0) else s
                 for i, s in enumerate(shape))
    a = rng.standard_normal(full)
    if fill == "zeros":
        a[...] = 0
    elif fill in ("nan", "inf", "-inf") and a.size:
        a.flat[rng.integers(a.size)] = float(fill)
    elif fill == "huge":
        a *= 1e30
    elif fill == "tiny":
        a *= 1e-40
    elif fill == "mixed" and a.size:
        a.flat[rng.integers(a.size)] = np.nan
        a.flat[rng.integers(a.size)] = np.inf
        a.flat[rng.integers(a.size)] = -1e300
    with np.errstate(all="ignore"):
        a = a.astype(np.dtype(dtype) if dtype != "object" else object)
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim:
        a = a[::2]
    elif layout == "neg" and a.ndim:
        a = a[::-1]
    elif layout == "readonly":
        a.setflags(write=False)
    elif layout == "list":
        return a.tolist()
    elif layout == "scalar":
        return complex(a.ravel()[0]).real if a.size else 1.0
    return a


def build_ints(spec):
    """('ints', values, dtype, kind)"""
    np = _np()
    _, values, dtype, kind = spec
    if kind == "list":
        return list(values)
    if kind == "tuple":
        return tuple(values)
    with np.errstate(all="ignore"):
        try:
            return np.array(values, dtype=dtype)
        except OverflowError:   # out of the dtype's range: wrap, as C would
            return np.array([v % 2**64 - 2**63 for v in values], dtype=np.int64).astype(dtype)


def strategies():
    from hypothesis import strategies as st

    size = st.one_of(st.integers(0, 5), st.integers(0, 5), st.sampled_from(SIZES))

    def arr(shape_st, dtypes=None):
        return st.tuples(st.just("arr"), shape_st,
                         st.sampled_from(dtypes or DTYPES),
                         st.sampled_from(LAYOUTS), st.sampled_from(FILLS),
                         st.integers(0, 2**16))

    def small_shape(min_dims=0, max_dims=4):
        return st.lists(st.integers(0, 5), min_size=min_dims, max_size=max_dims).map(tuple)

    huge_shape = st.sampled_from([(10**7, 10**6, 4), (2**40, 1, 1), (1, 2**40, 3),
                                  (2**31, 2**31, 2**31)])

    def lengths_st(N, T):
        vals = st.lists(st.integers(-2, (T if isinstance(T, int) else 3) + 2) |
                        st.sampled_from([2**31, 2**63 - 1, -2**63]),
                        min_size=max(0, N - 1), max_size=N + 1)
        return st.one_of(
            st.none(),
            st.tuples(st.just("ints"), vals,
                      st.sampled_from(["int64", "int32", "uint8", "float64", "bool",
                                       "int16", "uint64"]),
                      st.sampled_from(["np", "np", "list", "tuple"])),
            st.sampled_from(["abc", 3, 1.5]))

    return st, size, arr, small_shape, huge_shape, lengths_st


def draw_layers(data):
    st, size, arr, small_shape, huge_shape, lengths_st = strategies()
    d = data.draw
    cls = d(st.sampled_from(["LSTM", "GRU", "RNN"]))
    valid = d(st.integers(0, 3)) > 0
    if valid:
        I, H = d(st.integers(1, 4)), d(st.integers(1, 4))
        L = d(st.integers(1, 2))
        kw = {"num_layers": L, "bidirectional": d(st.booleans()),
              "batch_first": d(st.booleans()), "bias": d(st.booleans()),
              "dtype": ("dtype", d(st.sampled_from(["float32", "float64"])))}
        if d(st.booleans()):
            kw["dropout"] = d(st.sampled_from([0.0, 0.5, 1.0]))
        if cls == "LSTM" and H > 1 and d(st.booleans()):
            kw["proj_size"] = d(st.integers(1, H - 1))
        if cls == "GRU" and d(st.booleans()):
            kw["reset_after"] = False
        if cls == "RNN" and d(st.booleans()):
            kw["nonlinearity"] = "relu"
        if d(st.integers(0, 2)) == 0:   # the ONNX semantics options, valid or not
            nact = {"RNN": 1, "GRU": 2, "LSTM": 3}[cls] * d(st.sampled_from([1, 1, 2]))
            names = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu",
                     "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus", "gelu", 3]
            if d(st.booleans()):
                kw["activations"] = d(st.lists(st.sampled_from(names), min_size=nact - 1,
                                               max_size=nact + 1))
                if d(st.booleans()):
                    kw["activation_alpha"] = d(st.lists(
                        st.sampled_from([None, 0.0, 0.5, -1.0, 1e30, float("nan"), "a"]),
                        max_size=nact + 1))
                if d(st.booleans()):
                    kw["activation_beta"] = d(st.lists(
                        st.sampled_from([None, 0.0, 0.5, 2.0, float("inf")]), max_size=nact))
            if d(st.booleans()):
                kw["clip"] = d(st.sampled_from([0.5, 3.0, 1e-30, 0.0, -1.0, float("nan"),
                                                float("inf"), "1", None]))
            if cls == "LSTM" or d(st.integers(0, 5)) == 0:
                if d(st.booleans()):
                    kw["input_forget"] = d(st.sampled_from([True, False, 1, "y"]))
                if d(st.booleans()):
                    kw["peephole"] = d(st.sampled_from([True, False, None]))
    else:
        I, H = d(size), d(size)
        kw = {}
        for k, vals in [("num_layers", size), ("bidirectional", st.sampled_from([True, False, 1, "yes", None])),
                        ("batch_first", st.sampled_from([True, False, 0, 2.0])),
                        ("bias", st.sampled_from([True, False, None, "no"])),
                        ("dropout", st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5, float("inf"), "0.1", None])),
                        ("dtype", st.sampled_from([("dtype", x) for x in DTYPES] + [None, "float32", "f8", 3])),
                        ("proj_size", size), ("nonlinearity", st.sampled_from(["tanh", "relu", "gelu", None])),
                        ("reset_after", st.sampled_from([True, False, 0, None])),
                        ("seed", st.sampled_from([0, -1, 2**70, "s", 1.5, None]))]:
            if d(st.booleans()):
                kw[k] = d(vals)
    calls = []
    for _ in range(d(st.integers(1, 3))):
        train = d(st.booleans())
        Iv = I if isinstance(I, int) and 0 <= I <= 5 else 3
        T, N = d(st.integers(0, 4)), d(st.integers(0, 3))
        shape_kind = d(st.integers(0, 9))
        if shape_kind <= 5:
            shape = (T, N, Iv) if d(st.integers(0, 3)) else (T, Iv)
        elif shape_kind <= 7:
            shape = d(small_shape())
        else:
            shape = d(huge_shape)
        xdt = d(st.sampled_from(["float32", "float64"] * 4 + DTYPES))
        layout = d(st.sampled_from(["c"] * 6 + LAYOUTS))
        if shape_kind > 7:
            layout = "bcast"
        x = ("arr", shape, xdt, layout, d(st.sampled_from(FILLS)), d(st.integers(0, 999)))
        hx = None
        if d(st.integers(0, 3)) == 0:
            hsh = d(small_shape(1, 3))
            h = ("arr", hsh, xdt, d(st.sampled_from(["c", "f", "strided", "list"])), "normal", 1)
            hx = ("tuple", h, h) if cls == "LSTM" and d(st.booleans()) else h
        lengths = d(lengths_st(N, T))
        dy = d(st.sampled_from(["ones", "none", "wrong", "nan", "list"]))
        dh = d(st.sampled_from(["none", "ones", "wrong"]))
        calls.append({"train": train, "x": x, "hx": hx, "lengths": lengths,
                      "backward": d(st.integers(0, 3)) > 0, "dy": dy, "dh": dh,
                      "retain": d(st.booleans())})
    return {"cls": cls, "I": I, "H": H, "kw": kw, "calls": calls}


def _grad_like(np, ref, how):
    if how == "none" or ref is None:
        return None
    if how == "ones":
        return np.ones_like(ref)
    if how == "nan":
        g = np.ones_like(ref)
        if g.size:
            g.flat[0] = np.nan
        return g
    if how == "list":
        return np.ones_like(ref).tolist()
    return np.ones(ref.shape + (1,), dtype=ref.dtype)   # "wrong"


def run_layers(spec):
    np = _np()
    import rnnfast
    cls = getattr(rnnfast, spec["cls"])
    kw = {k: build_value(v) for k, v in spec["kw"].items()}
    layer = cls(build_value(spec["I"]), build_value(spec["H"]), **kw)
    for c in spec["calls"]:
        layer.train(c["train"])
        out = layer(build_value(c["x"]), hx=build_value(c["hx"]),
                    lengths=build_value(c["lengths"]))
        y, h = out
        if c["backward"]:
            dy = _grad_like(np, y, c["dy"])
            hn = h[0] if isinstance(h, tuple) else h
            dh = _grad_like(np, hn, c["dh"])
            if spec["cls"] == "LSTM":
                layer.backward(dy, dh, _grad_like(np, h[1], c["dh"]), retain_cache=c["retain"])
            else:
                layer.backward(dy, dh, retain_cache=c["retain"])
    return "ok"


def draw_functional(data):
    st, size, arr, small_shape, huge_shape, lengths_st = strategies()
    d = data.draw
    mode = d(st.sampled_from(["LSTM", "GRU", "RNN_TANH", "RNN_RELU", "lstm", "gru",
                              "rnn", "xyz", 3, None]))
    I, H = d(st.integers(1, 4)), d(st.integers(1, 4))
    L, bidir = d(st.integers(1, 2)), d(st.booleans())
    bias = d(st.booleans())
    proj = d(st.integers(1, H - 1)) if (H > 1 and mode in ("LSTM", "lstm") and
                                        d(st.booleans())) else 0
    dtype = d(st.sampled_from(["float32", "float64"]))
    T, N = d(st.integers(1, 4)), d(st.integers(0, 3))
    # params: built from param_shapes of (possibly other) config, then mutated
    pmut = d(st.lists(st.tuples(st.sampled_from(["drop", "extra", "shape", "dtype", "list",
                                                 "none", "fortran", "strided", "nan",
                                                 "scalar", "bcast_huge"]),
                                st.integers(0, 50)), max_size=3))
    params_kind = d(st.sampled_from(["dict"] * 8 + ["none", "list", "str"]))
    pseed = d(st.integers(0, 999))
    kw = {"num_layers": L, "hidden_size": H, "bias": bias, "bidirectional": bidir,
          "batch_first": d(st.booleans()), "proj_size": proj}
    if d(st.integers(0, 4)) == 0:
        kw[d(st.sampled_from(["num_layers", "hidden_size", "proj_size", "bias",
                              "reset_after", "dropout", "bidirectional"]))] = d(size)
    xdt = d(st.sampled_from([dtype] * 6 + DTYPES))
    shape = d(st.sampled_from([(T, N, I), (T, N, I), (T, I), (T, N, I + 1), (0, N, I),
                               (T, N, I, 1), ()]))
    x = ("arr", shape, xdt, d(st.sampled_from(["c"] * 6 + LAYOUTS)),
         d(st.sampled_from(FILLS)), d(st.integers(0, 999)))
    training = d(st.booleans())
    if d(st.booleans()):
        kw["dropout"] = d(st.sampled_from([0.0, 0.3, 1.0]))
    if d(st.integers(0, 4)) == 0:
        kw["rng"] = d(st.sampled_from([0, None, -1, "r", 2**70]))
    if d(st.integers(0, 5)) == 0:
        kw["dropout_masks"] = d(st.sampled_from(["none", "wrong", "ok"]))
    hx = None
    if d(st.integers(0, 3)) == 0:
        h = ("arr", d(st.sampled_from([(L * (2 if bidir else 1), N, proj or H), (1, 1, 1), (2,)])),
             dtype, d(st.sampled_from(["c", "f", "strided"])), d(st.sampled_from(FILLS)), 2)
        hx = ("tuple", h, ("arr", (L * (2 if bidir else 1), N, H), dtype, "c", "normal", 3)) \
            if d(st.booleans()) else h
    lengths = d(lengths_st(N, T))
    back = {"do": d(st.integers(0, 3)) > 0, "dy": d(st.sampled_from(["ones", "none", "wrong", "nan", "list"])),
            "dh": d(st.sampled_from(["none", "ones", "wrong"])),
            "cache": d(st.sampled_from(["ok"] * 6 + ["none", "tuple", "str"]))}
    return {"mode": mode, "I": I, "H": H, "L": L, "bidir": bidir, "bias": bias, "proj": proj,
            "dtype": dtype, "params_kind": params_kind, "pmut": pmut, "pseed": pseed,
            "kw": kw, "x": x, "hx": hx, "lengths": lengths, "training": training, "back": back}


def run_functional(spec):
    np = _np()
    from rnnfast import functional as F
    s = spec
    cellname = s["mode"] if isinstance(s["mode"], str) else "LSTM"
    cellname = {"rnn": "RNN_TANH"}.get(cellname.lower(), cellname) if cellname.lower() != "xyz" else "GRU"
    shapes = F.param_shapes(cellname, s["I"], s["H"], num_layers=s["L"], bias=s["bias"],
                            bidirectional=s["bidir"], proj_size=s["proj"])
    rng = np.random.default_rng(s["pseed"])
    params = {k: rng.standard_normal(v).astype(s["dtype"]) for k, v in shapes.items()}
    names = sorted(params)
    for op, i in s["pmut"]:
        k = names[i % len(names)]
        if op in ("shape", "dtype", "list", "fortran", "strided", "nan") and not (
                isinstance(params.get(k), np.ndarray) and params[k].size < 10**6):
            continue
        if op == "drop":
            params.pop(k, None)
        elif op == "extra":
            params["weight_ih_l9"] = np.zeros((1, 1), s["dtype"])
        elif op == "shape" and k in params:
            params[k] = np.zeros(params[k].shape + (1,), s["dtype"])
        elif op == "dtype" and k in params:
            params[k] = params[k].astype(np.float16 if i % 2 else np.int32)
        elif op == "list" and k in params:
            params[k] = params[k].tolist()
        elif op == "none":
            params[k] = None
        elif op == "fortran" and k in params:
            params[k] = np.asfortranarray(params[k])
        elif op == "strided" and k in params:
            a = params[k]
            params[k] = np.repeat(a, 2, axis=-1)[..., ::2]
        elif op == "nan" and k in params and np.asarray(params[k]).size:
            a = np.array(params[k])
            a.flat[0] = np.nan
            params[k] = a
        elif op == "scalar":
            params[k] = 1.0
        elif op == "bcast_huge":
            params[k] = np.broadcast_to(np.ones(1, s["dtype"]), (2**20, 2**20))
    if s["params_kind"] == "none":
        params = None
    elif s["params_kind"] == "list":
        params = list(params.items())
    elif s["params_kind"] == "str":
        params = "params"
    kw = dict(s["kw"])
    kw = {k: build_value(v) for k, v in kw.items()}
    x = build_value(s["x"])
    if kw.get("dropout_masks") is not None:
        how = kw["dropout_masks"]
        if how == "none":
            kw["dropout_masks"] = None
        elif how == "wrong":
            kw["dropout_masks"] = [np.ones((1,))]
        else:
            xs = np.shape(x)
            D = 2 if s["bidir"] else 1
            P = s["proj"] or s["H"]
            kw["dropout_masks"] = [np.ones(xs[:-1] + (D * P,), s["dtype"])
                                   for _ in range(max(0, s["L"] - 1))]
    out = F.rnn_forward(s["mode"], x, params, hx=build_value(s["hx"]),
                        lengths=build_value(s["lengths"]), training=s["training"], **kw)
    b = s["back"]
    if b["do"]:
        cache = {"ok": out.cache, "none": None, "tuple": tuple(out), "str": "cache"}[b["cache"]]
        F.rnn_backward(cache, _grad_like(np, out.y, b["dy"]), _grad_like(np, out.h_n, b["dh"]),
                       _grad_like(np, out.c_n, b["dh"]) if out.c_n is not None else None)
    return "ok"


# ------------------------------------------------------------------ loaders
_BASES = None


def _base_files():
    """A few valid files written by save(), as bytes (built once per process)."""
    global _BASES
    if _BASES is None:
        import numpy as np
        import rnnfast
        from rnnfast.layers import Embedding, LastStep, Linear
        layers = [rnnfast.LSTM(2, 3, num_layers=2, bidirectional=True, seed=0),
                  rnnfast.LSTM(2, 3, proj_size=2, dtype=np.float64, seed=0),
                  rnnfast.GRU(2, 2, bias=False, seed=0),
                  rnnfast.RNN(1, 2, nonlinearity="relu", batch_first=True, seed=0),
                  # format 2: a layer with the ONNX options
                  rnnfast.LSTM(2, 3, peephole=True, clip=2.0, activations=["HardSigmoid",
                               "Tanh", "Softsign"], bidirectional=True, seed=0),
                  # whole models (rnnfast.models.save: weights + JSON architecture)
                  rnnfast.Sequential([Embedding(5, 3, seed=0),
                                      rnnfast.GRU(3, 4, batch_first=True, seed=1),
                                      LastStep(), Linear(4, 2, seed=2)]),
                  rnnfast.Sequential([rnnfast.LSTM(2, 3, batch_first=True, seed=1),
                                      Linear(3, 1, seed=2)])]
        _BASES = []
        with tempfile.TemporaryDirectory() as td:
            for i, layer in enumerate(layers):
                p = os.path.join(td, f"b{i}.npz")
                layer.save(p)
                with open(p, "rb") as f:
                    _BASES.append(f.read())
    return _BASES


def _npy_bytes(header_dict_src, payload=b"", version=(1, 0)):
    hdr = header_dict_src.encode("latin1")
    pad = 64 - (10 + len(hdr) + 1) % 64
    hdr = hdr + b" " * pad + b"\n"
    if version == (1, 0):
        head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr))
    elif version == (2, 0):
        head = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(hdr))
    else:
        head = b"\x93NUMPY" + bytes(version) + struct.pack("<I", len(hdr))
    return head + hdr + payload


CRAFT_HEADERS = [
    "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (9223372036854775807,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 3), }",
    "{'descr': '<f4', 'fortran_order': True, 'shape': (4, 3), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (), }",
    "{'descr': '<U1000000000', 'fortran_order': False, 'shape': (), }",
    "{'descr': '<U8', 'fortran_order': False, 'shape': (), }",
    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
    "{'descr': '<f8', 'fortran_order': 1, 'shape': (2, 2), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': 'abc', }",
    "{'descr': '<f4', 'shape': (2,), }",
    "not a dict",
    "{'descr': '<V0', 'fortran_order': False, 'shape': (1099511627776,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1099511627776), }",
]

CFG_MUTS = [("format_version", 2**80), ("format_version", 0), ("format_version", True),
            ("format_version", 99), ("class", "Transformer"), ("class", None),
            ("input_size", 2**40), ("hidden_size", 2**62), ("hidden_size", -3),
            ("num_layers", 0), ("num_layers", 10**9), ("dtype", "object"), ("dtype", "int8"),
            ("dtype", 5), ("proj_size", 100), ("dropout", "nan"), ("bias", "x"),
            ("nonlinearity", "gelu"), ("reset_after", None), ("format", "other"),
            ("input_size", 1.5), ("hidden_size", [1]), ("bidirectional", 2)]


def draw_loaders(data):
    from hypothesis import strategies as st
    d = data.draw
    kind = d(st.sampled_from(["truncate", "bitflip", "random", "craft_header", "craft_cfg",
                              "drop_member", "extra_member", "config_raw", "path", "compressed"]))
    spec = {"kind": kind, "base": d(st.integers(0, 6)),
            "loader": d(st.sampled_from(["LSTM", "GRU", "RNN", "nn", "models", "models"])),
            "seed": d(st.integers(0, 2**31))}
    if kind == "truncate":
        spec["frac"] = d(st.floats(0, 1))
    elif kind == "bitflip":
        spec["flips"] = d(st.integers(1, 16))
    elif kind == "random":
        spec["n"] = d(st.integers(0, 600))
        spec["zip"] = d(st.booleans())
    elif kind == "craft_header":
        spec["header"] = d(st.integers(0, len(CRAFT_HEADERS) - 1))
        spec["member"] = d(st.integers(0, 20))
        spec["version"] = d(st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
        spec["payload"] = d(st.integers(0, 64))
    elif kind == "craft_cfg":
        spec["muts"] = d(st.lists(st.integers(0, len(CFG_MUTS) - 1), min_size=1, max_size=3))
        spec["delete"] = d(st.sampled_from([None, "input_size", "dtype", "class", "format"]))
    elif kind in ("drop_member", "extra_member"):
        spec["member"] = d(st.integers(0, 20))
    elif kind == "config_raw":
        spec["raw"] = d(st.sampled_from(["{", "[]", "null", '"x"', "1e999", "{}" * 1000,
                                         '{"format": "rnnfast.nn"}', "\x00"]))
    elif kind == "path":
        spec["path"] = d(st.sampled_from(["missing", "dir", "int", "none", "bytes", "empty",
                                          "devnull", "list"]))
    return spec


def _rebuild(base, edit):
    """Unzip base, let edit(dict name -> bytes) change it, zip again."""
    zin = zipfile.ZipFile(io.BytesIO(base))
    members = {n: zin.read(n) for n in zin.namelist()}
    edit(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return out.getvalue()


def loader_input(spec, td):
    """The bytes (or the path object) of one loaders example."""
    import random
    r = random.Random(spec["seed"])
    base = _base_files()[spec["base"]]
    k = spec["kind"]
    path = os.path.join(td, "f.npz")
    if k == "truncate":
        data = base[:int(len(base) * spec["frac"])]
    elif k == "bitflip":
        b = bytearray(base)
        for _ in range(spec["flips"]):
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
        data = bytes(b)
    elif k == "random":
        data = bytes(r.randrange(256) for _ in range(spec["n"]))
        if spec["zip"]:
            data = b"PK\x03\x04" + data
    elif k == "craft_header":
        def edit(m):
            names = sorted(m)
            name = names[spec["member"] % len(names)]
            m[name] = _npy_bytes(CRAFT_HEADERS[spec["header"]], b"\x00" * spec["payload"],
                                 spec["version"])
        data = _rebuild(base, edit)
    elif k == "craft_cfg":
        def edit(m):
            import numpy as np
            cfg = json.loads(str(np.load(io.BytesIO(m["__rnnfast_config__.npy"]))
                                 if "__rnnfast_config__.npy" in m else "{}"))
            for i in spec["muts"]:
                key, val = CFG_MUTS[i]
                cfg[key] = float(val) if val == "nan" else val
            if spec["delete"]:
                cfg.pop(spec["delete"], None)
            buf = io.BytesIO()
            np.save(buf, np.array(json.dumps(cfg)))
            m["__rnnfast_config__.npy"] = buf.getvalue()
        data = _rebuild(base, edit)
    elif k == "config_raw":
        def edit(m):
            import numpy as np
            buf = io.BytesIO()
            np.save(buf, np.array(spec["raw"]))
            m["__rnnfast_config__.npy"] = buf.getvalue()
        data = _rebuild(base, edit)
    elif k == "drop_member":
        def edit(m):
            names = sorted(m)
            m.pop(names[spec["member"] % len(names)])
        data = _rebuild(base, edit)
    elif k == "extra_member":
        def edit(m):
            m[f"extra{spec['member']}.npy"] = m[sorted(m)[0]]
            m["dir/"] = b""
        data = _rebuild(base, edit)
    elif k == "compressed":
        zin = zipfile.ZipFile(io.BytesIO(base))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for n in zin.namelist():
                z.writestr(n, zin.read(n))
        data = out.getvalue()
    elif k == "path":
        p = spec["path"]
        if p == "missing":
            return os.path.join(td, "does-not-exist.npz")
        if p == "dir":
            return td
        if p == "int":
            return 3
        if p == "none":
            return None
        if p == "bytes":
            with open(path, "wb") as f:
                f.write(base)
            return path.encode()
        if p == "empty":
            return ""
        if p == "devnull":
            return os.devnull
        return [path]
    with open(path, "wb") as f:
        f.write(data)
    return path


_TD = None


def run_loaders(spec):
    global _TD
    import rnnfast
    if _TD is None:
        _TD = tempfile.mkdtemp(prefix="rnnfast-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    p = loader_input(spec, _TD)
    import numpy as np
    if spec["loader"] == "models":
        # a loaded model must also predict
        from rnnfast.layers import Embedding
        model = rnnfast.models.load(p)
        first = model.layers[0]
        if isinstance(first, Embedding):
            model.predict(np.zeros((2, 3), np.int64), np.array([3, 1]))
        else:
            model.predict(np.zeros((2, 3, first.input_size), first.dtype))
        return "ok"
    loader = rnnfast.nn.load if spec["loader"] == "nn" else getattr(rnnfast, spec["loader"]).load
    layer = loader(p)
    # a loaded layer must also run
    layer.eval()
    layer(np.zeros((2, 1, layer.input_size), layer.dtype))
    return "ok"


def draw_stream(data):
    """A layer (mostly valid), a Streamer over it (arguments sometimes wrong), then steps
    with random x / reset / out, and state edits."""
    st, size, arr, small_shape, huge_shape, lengths_st = strategies()
    d = data.draw
    cls = d(st.sampled_from(["LSTM", "GRU", "RNN"]))
    I, H, L = d(st.integers(1, 4)), d(st.integers(1, 4)), d(st.integers(1, 3))
    kw = {"num_layers": L, "batch_first": d(st.booleans()), "bias": d(st.booleans()),
          "dtype": ("dtype", d(st.sampled_from(["float32", "float64"])))}
    if d(st.integers(0, 9)) == 0:
        kw["bidirectional"] = True
    if cls == "LSTM" and H > 1 and d(st.booleans()):
        kw["proj_size"] = d(st.integers(1, H - 1))
    if cls == "GRU" and d(st.booleans()):
        kw["reset_after"] = False
    eval_mode = d(st.integers(0, 9)) > 0
    N = d(st.integers(0, 4)) if d(st.integers(0, 5)) else d(size)
    max_chunk = d(st.integers(1, 5)) if d(st.integers(0, 5)) else d(size)
    init = None
    if d(st.integers(0, 4)) == 0:
        init = ("arr", d(small_shape(1, 3)), d(st.sampled_from(["float32", "float64", "int64"])),
                "c", d(st.sampled_from(FILLS)), 1)
    xdts = ["float32", "float64"] * 4 + DTYPES
    calls = []
    for _ in range(d(st.integers(1, 4))):
        kind = d(st.sampled_from(["step", "step", "step", "reset_state", "set_state"]))
        Nv = N if isinstance(N, int) and 0 <= N <= 4 else 2
        T = d(st.integers(0, 6))
        shape_kind = d(st.integers(0, 9))
        if shape_kind <= 3:
            shape = (Nv, I)
        elif shape_kind <= 6:
            shape = (T, Nv, I) if not kw["batch_first"] else (Nv, T, I)
        elif shape_kind <= 8:
            shape = d(small_shape())
        else:
            shape = d(huge_shape)
        layout = "bcast" if shape_kind > 8 else d(st.sampled_from(["c"] * 6 + LAYOUTS))
        x = ("arr", shape, d(st.sampled_from(xdts)), layout, d(st.sampled_from(FILLS)),
             d(st.integers(0, 999)))
        reset = None
        rk = d(st.integers(0, 4))
        if rk == 1:
            # (a huge x is a broadcast view; its reset mask must not be a real array)
            rshape = shape[:-1] if len(shape) >= 2 and shape_kind <= 8 else (Nv,)
            reset = ("arr", rshape, d(st.sampled_from(["bool", "bool", "int64", "float64"])),
                     d(st.sampled_from(["c", "c", "strided", "list"])), "zeros", 3)
        elif rk == 2:
            reset = ("arr", d(small_shape(0, 3)), "bool", "c", "mixed", 4)
        elif rk == 3:
            reset = d(st.sampled_from(["yes", 1, 2.5, True]))
        out = None
        ok = d(st.integers(0, 3))
        if ok == 1:
            out = ("same_as_y",)
        elif ok == 2:
            out = ("arr", d(small_shape(1, 3)), d(st.sampled_from(xdts)),
                   d(st.sampled_from(["c", "f", "strided", "readonly"])), "zeros", 5)
        elif ok == 3:
            out = ("alias_x",)
        mask = None
        if d(st.booleans()):
            mask = ("arr", d(st.sampled_from([(Nv,), (Nv + 1,), (), (Nv, 1)])),
                    d(st.sampled_from(["bool", "int64"])), "c", "mixed", 6)
        calls.append({"kind": kind, "x": x, "reset": reset, "out": out, "mask": mask})
    return {"cls": cls, "I": I, "H": H, "kw": kw, "eval": eval_mode, "N": N,
            "max_chunk": max_chunk, "init": init, "calls": calls}


def run_stream(spec):
    np = _np()
    import rnnfast
    cls = getattr(rnnfast, spec["cls"])
    kw = {k: build_value(v) for k, v in spec["kw"].items()}
    layer = cls(spec["I"], spec["H"], seed=0, **kw)
    layer.train(not spec["eval"])
    s = rnnfast.Streamer(layer, build_value(spec["N"]), max_chunk=build_value(spec["max_chunk"]),
                         initial_state=build_value(spec["init"]))
    for c in spec["calls"]:
        if c["kind"] == "reset_state":
            s.reset_state(build_value(c["mask"]))
            continue
        if c["kind"] == "set_state":
            s.set_state(tuple(a.copy() for a in s.state) if isinstance(s.state, tuple)
                        else s.state.copy())
            continue
        x = build_value(c["x"])
        out = c["out"]
        if out == ("same_as_y",):
            xa = np.asarray(x)
            shape = xa.shape[:-1] + (s.h.shape[-1],)
            out = np.empty(shape, s.dtype) if xa.ndim and np.prod(shape) < 1e6 else None
        elif out == ("alias_x",):
            out = x
        else:
            out = build_value(out)
        s.step(x, reset=build_value(c["reset"]), out=out)
    return "ok"


DRAW = {"layers": draw_layers, "functional": draw_functional, "loaders": draw_loaders,
        "stream": draw_stream}
RUN = {"layers": run_layers, "functional": run_functional, "loaders": run_loaders,
       "stream": run_stream}


# ==================================================================== worker
def worker(family, examples, seconds, seed, progress_path):
    import numpy as np  # noqa: F401
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    import rnnfast  # noqa: F401

    import resource
    # a hard cap on the address space: a runaway allocation becomes a MemoryError
    # (reported as a finding) instead of the OOM killer taking the machine down
    cap = int(os.environ.get("RNNFAST_FUZZ_MAX_BYTES", 16 * 2**30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    warnings.simplefilter("ignore")
    np_err = _np().seterr(all="ignore")  # noqa: F841
    counts = {"inputs": 0, "results": 0, "clean": 0, "findings": 0}
    findings = {}
    t_end = time.monotonic() + seconds
    run = RUN[family]
    draw = DRAW[family]

    class _Done(Exception):
        pass

    def one(data):
        if counts["inputs"] >= examples or time.monotonic() > t_end:
            return   # no draws: Hypothesis sees a trivial, passing example
        spec = draw(data)
        text = repr(spec)
        with open(progress_path, "w") as f:   # for a crash: the input that was running
            f.write(text)
        counts["inputs"] += 1
        try:
            run(spec)
            counts["results"] += 1
        except Exception as exc:   # noqa: BLE001
            if classify(exc) == "clean":
                counts["clean"] += 1
            else:
                counts["findings"] += 1
                key = (type(exc).__name__, traceback.extract_tb(exc.__traceback__)[-1][:3])
                if key not in findings:
                    findings[key] = text
                    print(json.dumps({"finding": type(exc).__name__, "message": str(exc)[:500],
                                      "where": "%s:%d in %s" % key[1],
                                      "spec": text,
                                      "traceback": traceback.format_exc()[-2000:]}),
                          flush=True)

    chunk = 0
    while counts["inputs"] < examples and time.monotonic() < t_end:
        test = settings(max_examples=min(5000, examples), database=None, deadline=None,
                        phases=[Phase.generate], derandomize=False,
                        suppress_health_check=list(HealthCheck))(given(st.data())(one))
        test = hseed(seed * 100003 + chunk)(test)
        chunk += 1
        try:
            test()
        except Exception as exc:   # hypothesis itself complaining: report, go on
            if counts["inputs"] >= examples or time.monotonic() > t_end:
                break   # the early return at the stop confuses Hypothesis' replay
            print(json.dumps({"harness_error": repr(exc)[:500]}), flush=True)
    print(json.dumps({"summary": counts, "distinct_findings": len(findings)}), flush=True)


# ==================================================================== parent
def run_family(family, examples, seconds, seed):
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    fd, progress = tempfile.mkstemp(prefix=f"rnnfast-fuzz-{family}-", suffix=".spec")
    os.close(fd)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--worker", family,
         "--examples", str(examples), "--seconds", str(seconds), "--seed", str(seed),
         "--progress", progress], env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    summary, findings, other = None, [], []
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        if "summary" in obj:
            summary = obj
        else:
            findings.append(obj)
    print(f"== family {family}: {wall:.0f} s, exit status {proc.returncode}")
    crashed = proc.returncode != 0 or summary is None
    if summary:
        c = summary["summary"]
        print(f"   inputs {c['inputs']}  results {c['results']}  clean exceptions {c['clean']}"
              f"  findings {c['findings']} ({summary['distinct_findings']} distinct)"
              f"  [{c['inputs'] / max(wall, 1e-9) * 60:.0f} inputs/min]")
    for f in findings:
        if "finding" in f:
            print(f"   FINDING {f['finding']}: {f['message']}\n     at {f['where']}\n"
                  f"     reproduce: python tests/fuzz/run_fuzz.py --repro {family} "
                  f"{json.dumps(f['spec'])}")
        else:
            print(f"   HARNESS: {f}")
    if crashed:
        with open(progress) as fh:
            last = fh.read()
        print(f"   CRASH: the worker died (exit status {proc.returncode}"
              f"{', signal %d' % -proc.returncode if proc.returncode < 0 else ''})"
              f" while running:\n     python tests/fuzz/run_fuzz.py --repro {family} "
              f"{json.dumps(last)}")
        print("   stderr tail:\n" + proc.stderr[-3000:])
    os.unlink(progress)
    return crashed or bool(findings)


def repro(family, text):
    spec = ast.literal_eval(text)
    print("spec:", spec)
    warnings.simplefilter("ignore")
    try:
        print("result:", RUN[family](spec))
    except Exception as exc:   # noqa: BLE001
        traceback.print_exc()
        print("outcome:", classify(exc))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=FAMILIES + ("all",), default="all")
    ap.add_argument("--examples", type=int, default=100000, help="inputs per family")
    ap.add_argument("--seconds", type=float, default=float("inf"), help="time limit per family")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repro", nargs=2, metavar=("FAMILY", "SPEC"))
    ap.add_argument("--worker", choices=FAMILIES, help=argparse.SUPPRESS)
    ap.add_argument("--progress", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        worker(a.worker, a.examples, a.seconds, a.seed, a.progress)
        return 0
    if a.repro:
        if REPO not in sys.path:
            sys.path.insert(0, REPO)
        repro(*a.repro)
        return 0
    fams = FAMILIES if a.family == "all" else (a.family,)
    bad = False
    for fam in fams:
        bad |= run_family(fam, a.examples, a.seconds, a.seed)
    print("== result:", "FINDINGS (see above)" if bad else "no findings, no crash")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
