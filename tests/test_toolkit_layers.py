"""Every layer's backward against central finite differences in float64 (through
rnnfast.gradcheck), gradcheck's own ability to fail, and the layers' input checks."""
import numpy as np
import pytest

import rnnfast
from rnnfast import gradcheck
from rnnfast.layers import (Dropout, Embedding, LastStep, Linear, ReLU, RepeatVector, Sigmoid,
                            Softmax, Tanh)
from rnnfast.models import Sequential

F64 = np.float64
RNG = np.random.default_rng(1234)


def _check(model, inputs, **kw):
    report = gradcheck(model, inputs, **kw)
    assert report.ok, report.summary()
    print(f"{report!r}")
    return report


def test_linear_gradients():
    x = RNG.standard_normal((3, 4, 5))
    r = _check(Linear(5, 3, dtype=F64, seed=0), x)
    assert set(r.errors) == {"0.weight", "0.bias", "input"}
    assert r.max_abs_error < 1e-8


def test_linear_without_bias_gradients():
    r = _check(Linear(5, 2, bias=False, dtype=F64, seed=0), RNG.standard_normal((7, 5)))
    assert set(r.errors) == {"0.weight", "input"}


@pytest.mark.parametrize("layer", [Tanh(), Sigmoid(), Softmax(), Softmax(axis=1)],
                         ids=["tanh", "sigmoid", "softmax-1", "softmax1"])
def test_activation_gradients(layer):
    model = Sequential([Linear(4, 6, dtype=F64, seed=0), layer])
    _check(model, RNG.standard_normal((3, 5, 4)))


def test_relu_gradient_away_from_kink():
    x = RNG.standard_normal((4, 6))
    x[np.abs(x) < 0.05] = 0.5   # finite differences across 0 would straddle the kink
    layer = ReLU()
    y = layer(x)
    dy = RNG.standard_normal(y.shape)
    assert np.array_equal(layer.backward(dy), np.where(x > 0, dy, 0))
    model = Sequential([Linear(6, 5, dtype=F64, seed=3), ReLU(), Linear(5, 2, dtype=F64, seed=4)])
    _check(model, x)


def test_embedding_gradients_and_padding_row():
    emb = Embedding(7, 3, padding_idx=2, dtype=F64, seed=0)
    assert np.all(emb.weight[2] == 0)
    ids = np.array([[0, 2, 2, 5], [6, 1, 2, 0]])
    model = Sequential([emb, Linear(3, 2, dtype=F64, seed=1)])
    r = _check(model, ids)
    assert "input" not in r.errors
    emb(ids)
    emb.backward(np.ones((2, 4, 3)))
    assert np.all(emb.grads["weight"][2] == 0)
    assert np.array_equal(emb.grads["weight"][0], np.full(3, 2.0))   # id 0 appears twice


def test_embedding_bad_ids():
    emb = Embedding(5, 2)
    with pytest.raises(ValueError, match="'input'.*token id 5"):
        emb(np.array([0, 5]))
    with pytest.raises(ValueError, match="'input'.*token id -1"):
        emb(np.array([[-1, 0]]))
    with pytest.raises(TypeError, match="'input'.*integer"):
        emb(np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="'input'"):
        emb(np.array(["a"]))
    with pytest.raises(ValueError, match="padding_idx"):
        Embedding(5, 2, padding_idx=5)


def test_linear_bad_inputs():
    lin = Linear(3, 2)
    with pytest.raises(ValueError, match="last axis 3"):
        lin(np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError, match="float32"):
        lin(np.zeros((2, 3), np.float64))
    with pytest.raises(TypeError, match="'input'"):
        lin(np.zeros((2, 3), np.int64))
    with pytest.raises(TypeError, match="in_features"):
        Linear(2.0, 3)
    with pytest.raises(ValueError, match="out_features"):
        Linear(2, 0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_laststep_gradients_with_lengths(bidirectional):
    H = 4
    model = Sequential([
        rnnfast.GRU(3, H, batch_first=True, bidirectional=bidirectional, dtype=F64, seed=0),
        LastStep(), Linear(H * (2 if bidirectional else 1), 2, dtype=F64, seed=1)])
    assert model[1].bidirectional is bidirectional
    x = RNG.standard_normal((4, 5, 3))
    lengths = np.array([5, 3, 1, 0])
    _check(model, (x, lengths))


def test_laststep_picks_last_valid_step():
    x = RNG.standard_normal((3, 4, 6))
    lengths = np.array([4, 2, 0])
    y = LastStep(bidirectional=False)(x, lengths)
    assert np.array_equal(y[0], x[0, 3]) and np.array_equal(y[1], x[1, 1])
    assert np.all(y[2] == 0)
    yb = LastStep(bidirectional=True)(x, lengths)
    assert np.array_equal(yb[1, :3], x[1, 1, :3]) and np.array_equal(yb[1, 3:], x[1, 0, 3:])
    # bidirectional outputs: equals (h_n forward, h_n reverse) of the layer
    gru = rnnfast.GRU(2, 3, bidirectional=True, batch_first=True, dtype=F64, seed=0)
    xs = RNG.standard_normal((3, 5, 2))
    lens = np.array([5, 3, 1])
    out, h_n = gru(xs, lengths=lens)
    last = LastStep(bidirectional=True)(out, lens)
    np.testing.assert_array_equal(last, np.concatenate([h_n[0], h_n[1]], axis=1))


def test_repeatvector_gradients():
    model = Sequential([Linear(3, 4, dtype=F64, seed=0), RepeatVector(5),
                        rnnfast.LSTM(4, 3, batch_first=True, dtype=F64, seed=1)])
    _check(model, RNG.standard_normal((2, 3)))


def test_dropout_mask_and_gradient():
    d = Dropout(0.4, seed=0)
    x = np.ones((200, 50))
    y = d(x)
    kept = y != 0
    assert abs(kept.mean() - 0.6) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.6)
    dy = RNG.standard_normal(x.shape)
    np.testing.assert_array_equal(d.backward(dy), dy * y)   # x = 1: y is the mask
    d.eval()
    assert d(x) is x
    with pytest.raises(ValueError, match="'p'"):
        Dropout(1.0)


@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
def test_recurrent_layers_through_sequential(cell):
    kw = {"proj_size": 2} if cell == "LSTM" else {}
    layer = getattr(rnnfast, cell)(3, 4, num_layers=2, batch_first=False, dtype=F64, seed=0,
                                   **kw)
    out = 2 if cell == "LSTM" else 4
    model = Sequential([layer, Tanh(), Linear(out, 2, dtype=F64, seed=1)])
    x = RNG.standard_normal((3, 6, 3))     # batch first; the layer gets a transposed view
    _check(model, (x, np.array([6, 2, 4])))


def test_contract_model_embedding_bilstm_stacked_linear():
    model = Sequential([Embedding(9, 4, padding_idx=0, dtype=F64, seed=0),
                        rnnfast.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True,
                                     dtype=F64, seed=1),
                        Linear(10, 3, dtype=F64, seed=2)])
    ids = RNG.integers(0, 9, (3, 6))
    r = _check(model, (ids, np.array([6, 4, 1])))
    assert len(r.errors) == 1 + 16 + 2
    assert r.max_abs_error < 1e-7


def test_gradcheck_catches_a_wrong_gradient():
    class SlightlyWrongLinear(Linear):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["weight"] = self.grads["weight"] * 1.001   # 0.1 % off
            return dx

    x = RNG.standard_normal((4, 3))
    r = gradcheck(SlightlyWrongLinear(3, 2, dtype=F64, seed=0), x)
    assert not r.ok and r.failures() == ["0.weight"]
    assert r.errors["0.bias"]["ok"] and r.errors["input"]["ok"]
    with pytest.raises(AssertionError, match="0.weight"):
        gradcheck(SlightlyWrongLinear(3, 2, dtype=F64, seed=0), x, raise_on_failure=True)

    class WrongInputGrad(Tanh):
        def backward(self, dy):
            return dy * (1 - self._cache)   # forgot the square

    r = gradcheck(Sequential([Linear(3, 3, dtype=F64, seed=0), WrongInputGrad()]), x)
    assert not r.ok and "input" in r.failures()


def test_gradcheck_sampling_and_float32_refusal():
    model = Sequential([Linear(6, 5, dtype=F64, seed=0)])
    r = gradcheck(model, RNG.standard_normal((2, 6)), n_samples=4)
    assert r.ok and r.errors["0.weight"]["n_checked"] == 4
    with pytest.raises(ValueError, match="float64"):
        gradcheck(Linear(3, 2, seed=0), np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="model_or_layer"):
        gradcheck(object(), np.zeros(3))


def test_gradcheck_disables_and_restores_dropout():
    model = Sequential([Linear(4, 4, dtype=F64, seed=0), Dropout(0.5, seed=1),
                        rnnfast.GRU(4, 3, num_layers=2, dropout=0.3, batch_first=True,
                                    dtype=F64, seed=2)])
    _check(model, RNG.standard_normal((2, 3, 4)))
    assert model[1].p == 0.5 and model[2].dropout == 0.3


def test_layer_state_dict_round_trip():
    a, b = Linear(3, 2, seed=0), Linear(3, 2, seed=1)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.zeros(2)})
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"weight": np.zeros((2, 3))})
    with pytest.raises(RuntimeError, match="training-mode forward"):
        Linear(3, 2).backward(np.zeros((1, 2), np.float32))


@pytest.mark.parametrize("layer,x", [
    (Tanh(), np.zeros((2, 3))), (ReLU(), np.zeros((2, 3))), (Sigmoid(), np.zeros((2, 3))),
    (Softmax(), np.zeros((2, 3))), (Dropout(0.5, seed=0), np.ones((2, 3))),
    (Linear(3, 4, dtype=F64), np.zeros((2, 3))), (RepeatVector(4), np.zeros((2, 3))),
    (LastStep(False), np.zeros((2, 5, 3))), (Embedding(4, 3, dtype=F64), np.zeros((2, 5), int)),
], ids=lambda v: type(v).__name__ if not isinstance(v, np.ndarray) else str(v.shape))
def test_backward_rejects_wrong_dy_shape(layer, x):
    y = layer(x)
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.zeros(y.shape + (1,)))
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.zeros((1,) * y.ndim))    # would broadcast silently
