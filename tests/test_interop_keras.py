"""Keras import / export: rnnfast.from_keras, from_keras_weights, to_keras_weights and
KerasRNN checked against Keras 3 (torch backend) on random weights and inputs."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

import rnnfast  # noqa: E402
from rnnfast import interop  # noqa: E402

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":   # pragma: no cover - keras imported earlier
    pytest.skip("these tests run Keras with KERAS_BACKEND=torch", allow_module_level=True)

L = keras.layers
TOL = {"float32": 3e-6, "float64": 1e-12}
T, N, F = 6, 3, 4


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _randomise(layer, rng, dtype):
    layer.build((None, T, F))
    layer.set_weights([(rng.standard_normal(w.shape) * 0.6).astype(dtype)
                       for w in layer.get_weights()])


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _check(klayer, dtype, rng, masks=True, initial_state=False):
    """Compare Keras's outputs with the imported wrapper's, with and without a mask;
    return the largest relative difference."""
    _randomise(klayer, rng, dtype)
    wrapper = rnnfast.from_keras(klayer, wrap=True)
    assert wrapper.layer.dtype == np.dtype(dtype)
    x = rng.standard_normal((N, T, F)).astype(dtype)
    worst = 0.0
    masked_worst = [0.0]
    cases = [None]
    if masks:
        cases.append(np.arange(T)[None, :] < np.array([T, 2, 0])[:, None])
    for mask in cases:
        kwargs, rkwargs = {}, {}
        if mask is not None:
            kwargs["mask"] = keras.ops.convert_to_tensor(mask)
            rkwargs["mask"] = mask
        if initial_state:
            n_states = (2 if isinstance(wrapper.layer, rnnfast.LSTM) else 1) * (
                2 if wrapper.layer.bidirectional else 1)
            st = [rng.standard_normal((N, wrapper.layer.hidden_size)).astype(dtype)
                  for _ in range(n_states)]
            kwargs["initial_state"] = [keras.ops.convert_to_tensor(s) for s in st]
            rkwargs["initial_state"] = st
        ko = _as_list(klayer(x, **kwargs))
        ro = _as_list(wrapper(x, **rkwargs))
        assert len(ko) == len(ro)
        for a, b in zip(ro, ko):
            b = keras.ops.convert_to_numpy(b)
            assert a.shape == b.shape and a.dtype == b.dtype
            if mask is not None and dtype == "float64":
                # Keras's masked loop computes in float32 somewhere: on a full-length
                # row it differs from its own unmasked float64 result by ~7e-8
                masked_worst[0] = max(masked_worst[0], _rel(a, b))
            else:
                worst = max(worst, _rel(a, b))
    tol = TOL[dtype]
    inner = getattr(klayer, "forward_layer", klayer)
    if dtype == "float64" and (type(inner).__name__ == "SimpleRNN" or (
            type(inner).__name__ == "GRU" and not inner.reset_after)):
        # Keras's own SimpleRNN and GRU(reset_after=False) are not float64-accurate
        # on the torch backend: they differ from a float64 NumPy loop of their
        # equations by 4e-8 to 2e-7 (test_keras_equations_float64_against_numpy
        # checks rnnfast there to 1e-12)
        tol = 1e-6
    assert worst < tol, (type(inner).__name__, getattr(inner, "reset_after", None), worst)
    assert masked_worst[0] < 1e-6, masked_worst
    return max(worst, masked_worst[0])


def _cells(**kw):
    return [L.SimpleRNN(5, **kw), L.LSTM(5, **kw), L.GRU(5, reset_after=True, **kw),
            L.GRU(5, reset_after=False, **kw)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_unidirectional(dtype, return_sequences, return_state, go_backwards):
    rng = np.random.default_rng(0)
    for k in _cells(return_sequences=return_sequences, return_state=return_state,
                    go_backwards=go_backwards, dtype=dtype):
        _check(k, dtype, rng, initial_state=return_state)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_bidirectional(dtype, merge_mode, return_sequences):
    rng = np.random.default_rng(1)
    for inner in _cells(return_sequences=return_sequences, return_state=True,
                        dtype=dtype):
        k = L.Bidirectional(inner, merge_mode=merge_mode, dtype=dtype)
        _check(k, dtype, rng, initial_state=True)


def test_no_bias_and_plain_layer_returned():
    rng = np.random.default_rng(2)
    k = L.LSTM(5, use_bias=False, return_sequences=True)
    _randomise(k, rng, "float32")
    layer = rnnfast.from_keras(k)
    assert isinstance(layer, rnnfast.LSTM) and layer.batch_first and not layer.bias
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    y = layer.eval()(x)[0]
    assert _rel(y, keras.ops.convert_to_numpy(k(x))) < TOL["float32"]
    # a layer whose output differs from rnnfast's comes wrapped
    assert isinstance(rnnfast.from_keras(_built(L.GRU(3))), interop.KerasRNN)


def _built(k):
    k.build((None, T, F))
    return k


@pytest.mark.parametrize("factory", [
    lambda: L.SimpleRNN(5, return_sequences=True),
    lambda: L.LSTM(5, return_sequences=True),
    lambda: L.GRU(5, return_sequences=True),
    lambda: L.GRU(5, return_sequences=True, reset_after=False),
    lambda: L.Bidirectional(L.LSTM(5, return_sequences=True)),
    lambda: L.Bidirectional(L.GRU(5, return_sequences=True, reset_after=False)),
])
def test_weights_round_trip_bitwise(factory):
    rng = np.random.default_rng(3)
    k = factory()
    _randomise(k, rng, "float32")
    weights = k.get_weights()
    layer = rnnfast.from_keras(k, wrap=False)
    back = interop.to_keras_weights(layer)
    assert len(back) == 1
    assert len(back[0]) == len(weights)
    for a, b in zip(back[0], weights):
        assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
    # and without keras objects: from the config and the weight list
    ser = {"class_name": type(k).__name__, "config": k.get_config()}
    layer2 = interop.from_keras_weights(weights, ser, wrap=False)
    for (n1, p1), (n2, p2) in zip(layer.named_parameters(), layer2.named_parameters()):
        assert n1 == n2 and np.array_equal(p1, p2)


@pytest.mark.parametrize("mode", ["RNN_TANH", "LSTM", "GRU"])
def test_export_into_keras_matches(mode):
    """rnnfast (PyTorch-style two biases, stacked) -> Keras layers via set_weights."""
    rng = np.random.default_rng(4)
    cls = {"RNN_TANH": rnnfast.RNN, "LSTM": rnnfast.LSTM, "GRU": rnnfast.GRU}[mode]
    for reset_after in ([True, False] if mode == "GRU" else [True]):
        kw = {"reset_after": reset_after} if mode == "GRU" else {}
        layer = cls(F, 5, num_layers=2, bidirectional=True, batch_first=True,
                    dtype=np.float64, seed=5, **kw).eval()
        x = rng.standard_normal((N, T, F))
        lists = interop.to_keras_weights(layer)
        h = x
        for lst in lists:
            kcls = {"RNN_TANH": L.SimpleRNN, "LSTM": L.LSTM, "GRU": L.GRU}[mode]
            inner = kcls(5, return_sequences=True, dtype="float64", **kw)
            k = L.Bidirectional(inner, dtype="float64")
            k.build((None, T, h.shape[-1]))
            k.set_weights(lst)
            h = keras.ops.convert_to_numpy(k(h))
        # Keras's SimpleRNN / GRU(reset_after=False) are float32-accurate only
        keras_exact = mode == "LSTM" or (mode == "GRU" and reset_after)
        assert _rel(layer(x)[0], h) < (1e-12 if keras_exact else 1e-6)


ACTIVATION_CASES = [
    lambda: L.LSTM(5, activation="relu", recurrent_activation="hard_sigmoid",
                   return_sequences=True),
    lambda: L.GRU(5, activation="softsign", recurrent_activation="sigmoid",
                  return_sequences=True),
    lambda: L.GRU(5, activation="elu", reset_after=False, return_state=True),
    lambda: L.SimpleRNN(5, activation="linear", return_sequences=True),
    lambda: L.SimpleRNN(5, activation="leaky_relu", go_backwards=True),
    lambda: L.Bidirectional(L.LSTM(5, activation="softplus", return_sequences=True),
                            merge_mode="ave"),
    lambda: L.SimpleRNN(5, activation="relu", return_sequences=True),  # nonlinearity
]


@pytest.mark.parametrize("index", range(len(ACTIVATION_CASES)))
def test_activations(index):
    rng = np.random.default_rng(6)
    k = ACTIVATION_CASES[index]()
    _randomise(k, rng, "float32")
    inner = getattr(k, "forward_layer", k)
    default = inner.get_config()["activation"] in ("tanh", "relu") and \
        inner.get_config().get("recurrent_activation", "sigmoid") == "sigmoid"
    if not interop._common.sem_supported() and not default:
        with pytest.raises(ValueError, match="activations="):
            rnnfast.from_keras(k)
    else:
        _check(k, "float32", rng, masks=True)


def test_keras2_hard_sigmoid():
    if not interop._common.sem_supported():
        pytest.skip("needs the layers' ONNX-semantics options")
    w = [np.zeros((2, 8), np.float32), np.zeros((2, 8), np.float32),
         np.zeros(8, np.float32)]
    cfg = {"units": 2, "recurrent_activation": "hard_sigmoid"}
    k3 = interop.from_keras_weights(w, cfg, "LSTM", wrap=False)
    k2 = interop.from_keras_weights(w, cfg, "LSTM", wrap=False, keras_version=2)
    assert k3.activation_alpha[0] == pytest.approx(1 / 6) and k2.activation_alpha[0] == 0.2
    assert k3.activation_beta[0] == k2.activation_beta[0] == 0.5


def test_refusals():
    with pytest.raises(ValueError, match="activation='gelu'"):
        rnnfast.from_keras(_built(L.SimpleRNN(3, activation="gelu")))
    with pytest.raises(TypeError, match="SimpleRNN, LSTM, GRU or Bidirectional"):
        rnnfast.from_keras(_built(L.Dense(3)))
    with pytest.raises(TypeError, match="SimpleRNN, LSTM, GRU or Bidirectional, got RNN"):
        rnnfast.from_keras(_built(L.RNN(L.LSTMCell(3))))
    w = rnnfast.from_keras(_built(L.LSTM(3)), wrap=True)
    x = np.zeros((2, T, F), np.float32)
    with pytest.raises(ValueError, match="right-padded"):
        w(x, mask=np.array([[True, False, True, True, True, True]] * 2))
    with pytest.raises(ValueError, match="initial_state must hold 2"):
        w(x, initial_state=[np.zeros((2, 3), np.float32)])
    with pytest.raises(ValueError, match="projection"):
        interop.to_keras_weights(rnnfast.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="bias must have shape"):
        interop.from_keras_weights([np.zeros((3, 12)), np.zeros((3, 12)), np.zeros(5)],
                                   {"units": 3}, "LSTM")
    with pytest.raises(ValueError, match="class_name is required"):
        interop.from_keras_weights([], {"units": 3})


def test_keras_equations_float64_against_numpy():
    """Keras's equations written out in float64 NumPy vs the imported layers."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N, T, F))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    k = L.SimpleRNN(5, dtype="float64", return_sequences=True)
    _randomise(k, rng, "float64")
    W, U, b = k.get_weights()
    h, ys = np.zeros((N, 5)), []
    for t in range(T):
        h = np.tanh(x[:, t] @ W + b + h @ U)
        ys.append(h)
    assert _rel(rnnfast.from_keras(k).eval()(x)[0], np.stack(ys, 1)) < 1e-12
    k = L.GRU(5, reset_after=False, dtype="float64", return_sequences=True)
    _randomise(k, rng, "float64")
    W, U, b = k.get_weights()
    H = 5
    h, ys = np.zeros((N, 5)), []
    for t in range(T):
        xw = x[:, t] @ W + b
        z = sig(xw[:, :H] + h @ U[:, :H])
        r = sig(xw[:, H:2 * H] + h @ U[:, H:2 * H])
        hh = np.tanh(xw[:, 2 * H:] + (r * h) @ U[:, 2 * H:])
        h = z * h + (1 - z) * hh
        ys.append(h)
    assert _rel(rnnfast.from_keras(k).eval()(x)[0], np.stack(ys, 1)) < 1e-12
