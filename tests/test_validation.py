"""Every bad input gives the right exception type and a message naming the argument."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnnfast import functional as F
from rnnfast.nn import GRU, LSTM, RNN

# ------------------------------------------------------------------ constructors

CTOR_CASES = [
    # (class, args, kwargs, exception, message fragment)
    (LSTM, (10, 0), {}, ValueError, "LSTM: 'hidden_size' must be an int >= 1, got 0"),
    (LSTM, (10, -3), {}, ValueError, "'hidden_size' must be an int >= 1, got -3"),
    (LSTM, (10, 2.0), {}, TypeError, "'hidden_size' must be an int >= 1, got float 2.0"),
    (LSTM, (10, True), {}, TypeError, "'hidden_size' must be an int >= 1, got True"),
    (GRU, (0, 4), {}, ValueError, "GRU: 'input_size' must be an int >= 1, got 0"),
    (GRU, ("3", 4), {}, TypeError, "'input_size' must be an int >= 1, got str '3'"),
    (RNN, (3, 4, 0), {}, ValueError, "'num_layers' must be an int >= 1, got 0"),
    (RNN, (3, 4, 1.5), {}, TypeError, "'num_layers' must be an int >= 1"),
    (RNN, (3, 4), {"nonlinearity": "sigmoid"}, ValueError,
     "'nonlinearity' must be 'tanh' or 'relu', got 'sigmoid'"),
    (RNN, (3, 4), {"nonlinearity": None}, TypeError, "'nonlinearity' must be"),
    (LSTM, (3, 4), {"dropout": 1.5}, ValueError, "'dropout' must be a float in [0, 1], got 1.5"),
    (LSTM, (3, 4), {"dropout": -0.1}, ValueError, "'dropout' must be a float in [0, 1]"),
    (LSTM, (3, 4), {"dropout": float("nan")}, ValueError, "'dropout' must be a float in [0, 1]"),
    (LSTM, (3, 4), {"dropout": float("inf")}, ValueError, "'dropout'"),
    (LSTM, (3, 4), {"dropout": "0.5"}, TypeError, "'dropout' must be a float"),
    (LSTM, (3, 4), {"dropout": True}, TypeError, "'dropout' must be a float"),
    (LSTM, (3, 4), {"proj_size": 4}, ValueError,
     "'proj_size' must be an int with 0 <= proj_size < hidden_size (4), got 4"),
    (LSTM, (3, 4), {"proj_size": -1}, ValueError, "'proj_size' must be an int >= 0"),
    (LSTM, (3, 4), {"proj_size": 1.0}, TypeError, "'proj_size'"),
    (LSTM, (3, 4), {"dtype": np.float16}, ValueError,
     "'dtype' must be numpy.float32 or numpy.float64, got float16"),
    (LSTM, (3, 4), {"dtype": np.int32}, ValueError, "'dtype' must be numpy.float32"),
    (LSTM, (3, 4), {"dtype": "banana"}, TypeError, "'dtype' must be numpy.float32"),
    (LSTM, (3, 4), {"dtype": None}, TypeError, "'dtype'"),
    (LSTM, (3, 4), {"seed": -1}, ValueError, "'seed' must be None, an int >= 0"),
    (LSTM, (3, 4), {"seed": 1.0}, TypeError, "'seed' must be None, an int >= 0"),
    (LSTM, (3, 4), {"seed": np.random.RandomState(0)}, TypeError, "'seed'"),
    (LSTM, (3, 4), {"bias": 1}, TypeError, "'bias' must be a bool, got int 1"),
    (LSTM, (3, 4), {"batch_first": "yes"}, TypeError, "'batch_first' must be a bool"),
    (LSTM, (3, 4), {"bidirectional": None}, TypeError, "'bidirectional' must be a bool"),
    (GRU, (3, 4), {"reset_after": 0}, TypeError, "'reset_after' must be a bool"),
    (GRU, (3, 4), {"backend": "gpu"}, ValueError,
     "'backend' must be one of 'cpu', 'reference', got 'gpu'"),
    (GRU, (3, 4), {"backend": 3}, TypeError, "'backend'"),
    (LSTM, (10**6, 10**6), {}, ValueError, "the parameters would need"),
    (LSTM, (10**40, 4), {}, ValueError, "the parameters would need"),
    # must be rejected by arithmetic, before a per-layer list of names is built
    (RNN, (1, 1, 10**12), {}, ValueError, "the parameters would need"),
    (GRU, (1, 1, 10**9), {"bidirectional": True}, ValueError, "the parameters would need"),
]


@pytest.mark.parametrize("cls,args,kwargs,exc,fragment", CTOR_CASES)
def test_constructor_errors(cls, args, kwargs, exc, fragment):
    with pytest.raises(exc) as ei:
        cls(*args, **kwargs)
    assert fragment in str(ei.value), str(ei.value)


def test_constructor_accepts_numpy_scalars_and_dtype_spellings():
    lstm = LSTM(np.int64(3), np.int32(4), np.uint8(2), dropout=np.float32(0.25),
                dtype="float64", seed=np.int64(3), bias=np.bool_(True))
    assert lstm.hidden_size == 4 and type(lstm.hidden_size) is int
    assert lstm.dtype == np.float64 and lstm.dropout == 0.25
    assert GRU(3, 4, dtype=np.dtype("f4")).dtype == np.float32


def test_dropout_with_one_layer_warns_like_pytorch():
    with pytest.warns(UserWarning, match="num_layers greater than 1"):
        LSTM(3, 4, dropout=0.5)


def test_proj_size_only_for_lstm_in_functional():
    with pytest.raises(ValueError, match="'proj_size' is only supported for LSTM"):
        F.param_shapes("GRU", 3, 4, proj_size=2)


# -------------------------------------------------------------------- calls


@pytest.fixture
def lstm():
    return LSTM(32, 8, num_layers=2, bidirectional=True, proj_size=4, backend="reference",
                seed=0)


def _raises(exc, fragment, fn, *args, **kwargs):
    with pytest.raises(exc) as ei:
        fn(*args, **kwargs)
    msg = str(ei.value)
    assert fragment in msg, msg
    return msg


def test_x_errors(lstm):
    x = np.zeros((10, 4, 32), np.float32)
    _raises(ValueError, "LSTM: expected x of shape (T, N, 32) (time-major) but got (10, 4, 31)",
            lstm, np.zeros((10, 4, 31), np.float32))
    _raises(ValueError, "expected x of shape (T, 32) (unbatched) but got (10, 31)",
            lstm, np.zeros((10, 31), np.float32))
    lstm.batch_first = True
    _raises(ValueError, "expected x of shape (N, T, 32) (batch_first=True)",
            lstm, np.zeros((10, 4, 31), np.float32))
    _raises(ValueError, "x has no time steps (T=0", lstm, np.zeros((4, 0, 32), np.float32))
    lstm.batch_first = False
    _raises(ValueError, "x has no time steps (T=0", lstm, np.zeros((0, 4, 32), np.float32))
    _raises(ValueError, "x has no time steps (T=0", lstm, np.zeros((0, 32), np.float32))
    _raises(ValueError, "x must be 3-D (T, N, 32) (time-major) or 2-D (T, 32) (unbatched), "
            "got a 4-D array", lstm, np.zeros((1, 2, 3, 32), np.float32))
    _raises(ValueError, "got a 1-D array", lstm, np.zeros(32, np.float32))
    _raises(ValueError, "got a 0-D array", lstm, np.ones((), np.float32))
    _raises(TypeError, "x must be a numpy.ndarray", lstm, np.float32(1.0))
    _raises(TypeError, "x has dtype float64 but this LSTM has dtype float32; convert with "
            "x.astype(np.float32) or build the layer with dtype=np.float64",
            lstm, x.astype(np.float64))
    for dt in (np.int64, np.int8, np.uint16, bool, np.float16):
        _raises(TypeError, "convert with x.astype(np.float32)", lstm, x.astype(dt))
    _raises(TypeError, "complex", lstm, x.astype(np.complex64))
    _raises(TypeError, "x has dtype object", lstm, x.astype(object))
    _raises(TypeError, "x has dtype <U", lstm, np.full((10, 4, 32), "a"))
    _raises(TypeError, "x must be a numpy.ndarray of dtype float32, got list; convert with "
            "np.asarray(x, dtype=np.float32)", lstm, x.tolist())
    _raises(TypeError, "x must be a numpy.ndarray", lstm, None)
    _raises(TypeError, "x must be a numpy.ndarray", lstm, 3.0)
    _raises(TypeError, "x must be a numpy.ndarray", lstm, "abc")
    g = GRU(2, 3, dtype=np.float64, backend="reference")
    _raises(TypeError, "x has dtype float32 but this GRU has dtype float64; convert with "
            "x.astype(np.float64) or build the layer with dtype=np.float32",
            g, np.zeros((2, 1, 2), np.float32))


def test_hx_errors(lstm):
    x = np.zeros((10, 4, 32), np.float32)
    h0 = np.zeros((4, 4, 4), np.float32)
    c0 = np.zeros((4, 4, 8), np.float32)
    lstm(x, (h0, c0))  # fine
    _raises(TypeError, "hx must be a tuple (h0, c0) of two arrays for LSTM", lstm, x, h0)
    _raises(TypeError, "hx must be a tuple (h0, c0)", lstm, x, (h0,))
    _raises(ValueError, "expected h0 of shape (4, 4, 4) (num_layers * num_directions, N, "
            "proj_size), got (4, 4, 8)", lstm, x, (c0, c0))
    _raises(ValueError, "expected c0 of shape (4, 4, 8) (num_layers * num_directions, N, "
            "hidden_size), got (4, 4, 4)", lstm, x, (h0, h0))
    _raises(ValueError, "expected h0 of shape (4, 4) (num_layers * num_directions, N, "
            "proj_size) for unbatched input, got (4, 4, 4)",
            lstm, np.zeros((10, 32), np.float32), (h0, c0))
    _raises(TypeError, "h0 has dtype float64 but this LSTM has dtype float32",
            lstm, x, (h0.astype(np.float64), c0))
    _raises(TypeError, "c0 has dtype int64", lstm, x, (h0, c0.astype(np.int64)))
    _raises(TypeError, "h0 must be a numpy.ndarray", lstm, x, (h0.tolist(), c0))
    gru = GRU(3, 5, 2, backend="reference")
    _raises(ValueError, "GRU: expected hx of shape (2, 1, 5)", gru,
            np.zeros((2, 1, 3), np.float32), np.zeros((1, 1, 5), np.float32))
    _raises(ValueError, "GRU: expected hx of shape (2, 1, 5)", gru,
            np.zeros((2, 1, 3), np.float32), np.zeros((2, 5), np.float32))


def test_lengths_errors(lstm):
    x = np.zeros((10, 4, 32), np.float32)
    lstm(x, lengths=[10, 0, 3, 1])
    lstm(x, lengths=np.array([10, 0, 3, 1], np.uint8))
    lstm(x, lengths=(1, 2, 3, 4))
    lstm(np.zeros((10, 32), np.float32), lengths=7)
    lstm(np.zeros((10, 32), np.float32), lengths=[7])
    _raises(TypeError, "lengths must hold integers, got dtype float64",
            lstm, x, lengths=[10.0, 1.0, 2.0, 3.0])
    _raises(TypeError, "lengths must hold integers, got dtype bool",
            lstm, x, lengths=np.ones(4, bool))
    _raises(TypeError, "lengths must be a 1-D array of ints", lstm, x, lengths=True)
    _raises(TypeError, "lengths must hold integers", lstm, x, lengths="abcd")
    _raises(TypeError, "lengths must hold integers", lstm, x, lengths=[1, 2, None, 3])
    _raises(ValueError, "expected lengths of shape (4,) (one length per sequence), got "
            "shape (3,)", lstm, x, lengths=[1, 2, 3])
    _raises(ValueError, "expected lengths of shape (4,)", lstm, x, lengths=[[1, 2, 3, 4]])
    _raises(ValueError, "expected lengths of shape (4,)", lstm, x, lengths=4)
    _raises(ValueError, "lengths must be between 0 and T=10, got 11",
            lstm, x, lengths=[11, 1, 1, 1])
    _raises(ValueError, "lengths must be between 0 and T=10, got -1",
            lstm, x, lengths=[-1, 1, 1, 1])
    _raises(ValueError, "lengths must be between 0 and T=10, got 11",
            lstm, np.zeros((10, 32), np.float32), lengths=11)


def test_workload_too_large_rejected_before_allocation():
    """A zero-strided broadcast stands in for a huge input; nothing gets allocated."""
    gru = GRU(4, 64, 2, backend="reference")
    x = np.broadcast_to(np.zeros((1, 1, 4), np.float32), (10**6, 10**6, 4))
    _raises(ValueError, "this call would need about", gru, x)
    x = np.broadcast_to(np.zeros((1, 1, 4), np.float32), (2**29, 2**29, 4))
    _raises(ValueError, "split the sequence into chunks", gru, x)


def test_weight_errors_name_the_parameter(lstm):
    x = np.zeros((3, 2, 32), np.float32)
    lstm.weight_hh_l1_reverse = np.zeros((32, 3), np.float32)
    _raises(ValueError, "weight_hh_l1_reverse: expected shape (32, 4), got (32, 3)", lstm, x)
    lstm.weight_hh_l1_reverse = np.zeros((32, 4), np.float64)
    _raises(TypeError, "weight_hh_l1_reverse has dtype float64 but this LSTM has dtype "
            "float32", lstm, x)
    lstm.weight_hh_l1_reverse = [[0.0] * 4] * 32
    _raises(TypeError, "weight_hh_l1_reverse must be a numpy.ndarray", lstm, x)


def test_functional_errors():
    rng = np.random.default_rng(0)
    shapes = F.param_shapes("LSTM", 256, 256, num_layers=2, bidirectional=True)
    params = {k: np.zeros(s) for k, s in shapes.items()}
    x = rng.standard_normal((2, 1, 256))
    kw = dict(num_layers=2, hidden_size=256, bidirectional=True, backend="reference")
    bad = dict(params, weight_hh_l1_reverse=np.zeros((1024, 255)))
    _raises(ValueError, "rnn_forward: weight_hh_l1_reverse: expected shape (1024, 256), got "
            "(1024, 255)", F.rnn_forward, "LSTM", x, bad, **kw)
    bad = dict(params, weight_ih_l0=np.zeros((1024, 256), np.float32))
    _raises(TypeError, "weight_ih_l0 has dtype float32 but x has dtype float64",
            F.rnn_forward, "LSTM", x, bad, **kw)
    _raises(TypeError, "x has dtype int64 but it must be float32 or float64",
            F.rnn_forward, "LSTM", x.astype(np.int64), params, **kw)
    bad = {k: v for k, v in params.items() if not k.startswith("bias")}
    _raises(ValueError, "missing 'bias_ih_l0'", F.rnn_forward, "LSTM", x, bad, **kw)
    _raises(ValueError, "pass bias=False", F.rnn_forward, "LSTM", x, bad, **kw)
    _raises(ValueError, "unexpected 'bias_ih_l0'", F.rnn_forward, "LSTM", x, params,
            **kw, bias=False)
    _raises(ValueError, "unexpected 'foo'", F.rnn_forward, "LSTM", x,
            dict(params, foo=np.zeros(1)), **kw)
    _raises(TypeError, "params must be a mapping", F.rnn_forward, "LSTM", x,
            list(params.values()), **kw)
    _raises(ValueError, "the parameters would need", F.rnn_forward, "LSTM", x, params,
            **dict(kw, num_layers=10**12))
    _raises(ValueError, "the parameters would need", F.param_shapes, "GRU", 1, 1,
            num_layers=10**12)
    _raises(ValueError, "'mode' must be one of 'RNN_TANH', 'RNN_RELU', 'LSTM', 'GRU'",
            F.rnn_forward, "lstm2", x, params, **kw)
    _raises(TypeError, "'mode'", F.rnn_forward, None, x, params, **kw)
    _raises(ValueError, "'backend' must be one of", F.rnn_forward, "LSTM", x, params,
            **dict(kw, backend="cuda"))
    _raises(TypeError, "'hidden_size' must be an int", F.rnn_forward, "LSTM", x, params,
            **dict(kw, hidden_size=256.0))
    _raises(TypeError, "'training' must be a bool", F.rnn_forward, "LSTM", x, params,
            **kw, training=1)
    _raises(TypeError, "'rng' must be None, an int >= 0 or a numpy.random.Generator",
            F.rnn_forward, "LSTM", x, params, **kw, training=True, dropout=0.5, rng="x")
    _raises(ValueError, "dropout_masks given, but dropout is only applied in training",
            F.rnn_forward, "LSTM", x, params, **kw, dropout_masks=[np.ones((2, 1, 512))])
    tr = dict(kw, training=True, dropout=0.5)
    _raises(ValueError, "dropout_masks must hold 1 arrays", F.rnn_forward, "LSTM", x,
            params, **tr, dropout_masks=[])
    _raises(ValueError, "expected dropout_masks[0] of shape (2, 1, 512), got (2, 1, 511)",
            F.rnn_forward, "LSTM", x, params, **tr, dropout_masks=[np.ones((2, 1, 511))])
    _raises(TypeError, "dropout_masks must be a list", F.rnn_forward, "LSTM", x, params,
            **tr, dropout_masks=np.ones((2, 1, 512)))
    _raises(TypeError, "dropout_masks[0] must be a bool or real array", F.rnn_forward,
            "LSTM", x, params, **tr, dropout_masks=[np.ones((2, 1, 512), complex)])
    with pytest.raises(ValueError, match="'backend'"):
        F.get_backend("tpu")


def test_backward_errors():
    gru = GRU(3, 4, 2, backend="reference")
    y, h = gru(np.zeros((5, 2, 3), np.float32))
    _raises(ValueError, "GRU: expected dy of shape (5, 2, 4) (the shape of the output y: "
            "y, time-major), got (5, 2, 3)", gru.backward, np.zeros((5, 2, 3), np.float32),
            retain_cache=True)
    _raises(TypeError, "dy has dtype float64 but this GRU has dtype float32",
            gru.backward, np.zeros((5, 2, 4)), retain_cache=True)
    _raises(ValueError, "expected dh_n of shape (2, 2, 4)", gru.backward, None,
            np.zeros((2, 4), np.float32), retain_cache=True)
    _raises(TypeError, "'retain_cache' must be a bool", gru.backward, None,
            retain_cache="no")
    _raises(TypeError, "cache must be the RNNCache returned by rnn_forward",
            F.rnn_backward, {"not": "a cache"})
    shapes = F.param_shapes("GRU", 3, 4)
    params = {k: np.zeros(s) for k, s in shapes.items()}
    out = F.rnn_forward("GRU", np.zeros((2, 1, 3)), params, num_layers=1, hidden_size=4,
                        training=True, backend="reference")
    _raises(ValueError, "dc_n is only meaningful for LSTM", F.rnn_backward, out.cache,
            None, None, np.zeros((1, 1, 4)))
    _raises(TypeError, "dy has dtype float32 but the forward pass ran in float64",
            F.rnn_backward, out.cache, np.zeros((2, 1, 4), np.float32))


def test_cpu_backend_missing_is_a_clear_import_error(monkeypatch):
    import builtins
    import sys

    from rnnfast import functional
    monkeypatch.setattr(functional, "_BACKENDS", {})
    monkeypatch.delitem(sys.modules, "rnnfast._cpu", raising=False)
    real_import = builtins.__import__

    def fake_import(name, globals=None, locals=None, fromlist=(), level=0):
        if (level and fromlist and "_cpu" in fromlist) or name.endswith("_cpu"):
            raise ImportError("simulated: not built")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="backend='reference'"):
        functional.get_backend("cpu")


# -------------------------------------------------------------- hypothesis fuzzing

GARBAGE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 6), st.integers(10**12, 10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.sampled_from(["tanh", "relu", "cpu", "reference", np.float32, np.float64,
                     np.int32, "float16", object(), [], [1, 2], (1,), {}, b"x"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from([RNN, LSTM, GRU]),
       args=st.lists(GARBAGE, min_size=0, max_size=4),
       kwargs=st.dictionaries(
           st.sampled_from(["num_layers", "bias", "batch_first", "dropout", "bidirectional",
                            "dtype", "seed", "backend", "proj_size", "reset_after",
                            "nonlinearity"]),
           GARBAGE, max_size=4))
def test_constructor_garbage_only_raises_value_or_type_error(cls, args, kwargs):
    args = list(args) + [3, 4][len(args):]      # garbage in any position, >= 2 args
    own = {LSTM: "proj_size", GRU: "reset_after", RNN: "nonlinearity"}
    for c, key in own.items():
        if c is not cls:
            kwargs.pop(key, None)                    # a Python TypeError, not ours
    try:
        layer = cls(*args, **kwargs)
    except (ValueError, TypeError):
        return
    assert layer.hidden_size >= 1


def _array_strategy():
    dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int8, bool,
                              np.complex64, object, "U1"])
    shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)
    return st.builds(lambda s, d: np.zeros(s, dtype=d), shapes, dtypes)


CALL_GARBAGE = st.one_of(GARBAGE, _array_strategy(),
                         st.lists(st.integers(-2, 5), max_size=4),
                         st.lists(st.floats(), max_size=3),
                         st.tuples(_array_strategy(), _array_strategy()))


def _cpu_available():
    try:
        F.get_backend("cpu")
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("backend", [
    "reference",
    pytest.param("cpu", marks=pytest.mark.skipif(not _cpu_available(),
                                                 reason="rnnfast._cpu is not built")),
])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from([RNN, LSTM, GRU]),
       x=st.one_of(CALL_GARBAGE,
                   st.sampled_from([np.zeros((2, 3, 3), np.float32),
                                    np.zeros((2, 3), np.float32),
                                    np.zeros((2, 0, 3), np.float32)])),
       hx=st.one_of(st.none(), CALL_GARBAGE),
       lengths=st.one_of(st.none(), CALL_GARBAGE),
       training=st.booleans(), dy=st.one_of(st.none(), CALL_GARBAGE))
def test_call_garbage_only_raises_value_or_type_error(backend, cls, x, hx, lengths,
                                                     training, dy):
    layer = cls(3, 2, 2, bidirectional=True, backend=backend, seed=0)
    layer.train(training)
    try:
        layer(x, hx, lengths=lengths)
    except (ValueError, TypeError):
        return
    if training:
        try:
            layer.backward(dy)
        except (ValueError, TypeError):
            pass


@settings(max_examples=100, deadline=None)
@given(mode=st.one_of(st.sampled_from(["LSTM", "gru", "RNN_RELU", "rnn", "lstm2"]), GARBAGE),
       num_layers=GARBAGE, hidden_size=GARBAGE, proj=GARBAGE, dropout=GARBAGE,
       rng=GARBAGE)
def test_functional_garbage_only_raises_value_or_type_error(mode, num_layers, hidden_size,
                                                            proj, dropout, rng):
    x = np.zeros((2, 1, 3))
    params = {k: np.zeros(s) for k, s in F.param_shapes("LSTM", 3, 2).items()}
    try:
        F.rnn_forward(mode, x, params, num_layers=num_layers, hidden_size=hidden_size,
                      proj_size=proj, dropout=dropout, rng=rng, training=True,
                      backend="reference")
    except (ValueError, TypeError):
        pass


def test_messages_start_with_owner():
    with pytest.raises(ValueError) as ei:
        LSTM(3, 4)(np.zeros((2, 1, 5), np.float32))
    assert re.match(r"^LSTM: ", str(ei.value))
    with pytest.raises(ValueError) as ei:
        F.param_shapes("LSTM", 0, 4)
    assert re.match(r"^param_shapes: ", str(ei.value))
